use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::*;
use crate::{pod_for, ServerFacts, UserFacts, UserOptions};

/// The parts of z2jh's defaults these tests need, and a user image.
const VALUES: &str = r#"
hub:
  db: {type: sqlite-pvc, pvc: {accessModes: [ReadWriteOnce], storage: 1Gi, storageClassName: fast, subPath: db}}
  networkPolicy:
    enabled: true
    egressAllowRules: {dnsPortsKubeSystemNamespace: true, nonPrivateIPs: true}
  serviceAccount: {create: true}
  livenessProbe: {enabled: true, initialDelaySeconds: 300, periodSeconds: 10}
  readinessProbe: {enabled: false}
  image: {name: quay.io/jupyterhub/k8s-hub, tag: "4.3.3"}
  deploymentStrategy: {type: Recreate}
  baseUrl: /jupyter/
rbac: {create: true}
proxy:
  service: {type: LoadBalancer, loadBalancerSourceRanges: [10.0.0.0/8]}
  chp:
    networkPolicy: {enabled: true, allowedIngressPorts: [http, https]}
singleuser:
  networkPolicy:
    enabled: true
    egressAllowRules: {cloudMetadataServer: false, privateIPs: false, nonPrivateIPs: true, dnsPortsKubeSystemNamespace: true}
  extraLabels: {hub.jupyter.org/network-access-hub: "true"}
  image: {name: jupyter/base-notebook, tag: latest}
  cloudMetadata: {ip: 169.254.169.254}
"#;

fn values(extra: &str) -> Values {
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(VALUES).unwrap();
    let extra: serde_yaml_ng::Value = serde_yaml_ng::from_str(extra).unwrap();
    if !extra.is_null() {
        hubfleet_config::values::merge_files(&mut doc, extra);
    }
    Values::new(doc)
}

fn release() -> HelmRelease {
    HelmRelease {
        chart_name: "jupyterhub".into(),
        chart_version: "4.3.3".into(),
        app_version: "5.5.0".into(),
        release_name: "staging".into(),
        namespace: "hubs".into(),
    }
}

fn options(seed: &str) -> ManifestOptions {
    ManifestOptions {
        release: release(),
        secret_seed: Some(SecretSeed::new(seed.as_bytes(), "seed").unwrap()),
        default_image: default_image(),
    }
}

fn render(extra: &str) -> HubManifests {
    hub_manifests(&values(extra), &options("0123456789abcdef0123456789abcdef")).unwrap()
}

fn render_err(extra: &str) -> String {
    hub_manifests(&values(extra), &options("0123456789abcdef0123456789abcdef"))
        .unwrap_err()
        .to_string()
}

fn json_of(m: &HubManifests, kind: &str, name: &str) -> Json {
    m.get(kind, name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
        .to_json()
}

/// `selector` (matchLabels) selects a pod with `labels`.
fn selects(selector: &Json, labels: &BTreeMap<String, String>) -> bool {
    string_map(selector)
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
}

fn secret_data(m: &HubManifests, key: &str) -> String {
    let Some(HubObject::Secret(secret)) = m.get("Secret", "staging-jupyterhub-hub") else {
        panic!("no hub Secret");
    };
    String::from_utf8(secret.data.as_ref().unwrap()[key].0.clone()).unwrap()
}

#[test]
fn users_pods_fit_the_policies_and_services() {
    let m = render("");
    let with_release = crate::with_release(&values(""), &release());
    let (pod, _) = pod_for(
        &with_release,
        &UserFacts::named("alice"),
        &ServerFacts::default(),
        &UserOptions::default(),
        &BTreeMap::new(),
    )
    .unwrap();
    let user_labels = pod.metadata.labels.clone().unwrap();

    let hub = json_of(&m, "Deployment", "staging-jupyterhub-hub");
    let hub_labels = string_map(&hub["spec"]["template"]["metadata"]["labels"]);
    assert!(selects(
        &hub["spec"]["selector"]["matchLabels"],
        &hub_labels
    ));

    let singleuser = json_of(&m, "NetworkPolicy", "staging-jupyterhub-singleuser");
    assert!(selects(
        &singleuser["spec"]["podSelector"]["matchLabels"],
        &user_labels
    ));
    assert!(!selects(
        &singleuser["spec"]["podSelector"]["matchLabels"],
        &hub_labels
    ));
    // the hub (and its proxy) may reach users' servers; users' servers may reach the hub
    let from_hub = &singleuser["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"];
    assert!(selects(from_hub, &hub_labels), "{from_hub}");
    let to_hub = &singleuser["spec"]["egress"][0];
    assert!(selects(
        &to_hub["to"][0]["podSelector"]["matchLabels"],
        &hub_labels
    ));
    assert_eq!(to_hub["ports"][0]["port"], HUB_PORT);

    let hub_policy = json_of(&m, "NetworkPolicy", "staging-jupyterhub-hub");
    assert!(selects(
        &hub_policy["spec"]["podSelector"]["matchLabels"],
        &hub_labels
    ));
    let from_users = &hub_policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"];
    assert!(selects(from_users, &user_labels), "{from_users}");
    let to_users = &hub_policy["spec"]["egress"][0];
    assert!(selects(
        &to_users["to"][0]["podSelector"]["matchLabels"],
        &user_labels
    ));
    assert_eq!(to_users["ports"][0]["port"], SINGLEUSER_PORT);

    // the proxy runs in the hub's pod: its policy (public ports) selects that pod
    let proxy_policy = json_of(&m, "NetworkPolicy", "staging-jupyterhub-proxy");
    assert!(selects(
        &proxy_policy["spec"]["podSelector"]["matchLabels"],
        &hub_labels
    ));
    assert_eq!(
        proxy_policy["spec"]["ingress"][0]["ports"],
        serde_json::json!([{"port": "http"}, {"port": "https"}])
    );
    for name in ["staging-jupyterhub-hub", "staging-jupyterhub-proxy-public"] {
        let service = json_of(&m, "Service", name);
        assert!(selects(&service["spec"]["selector"], &hub_labels), "{name}");
        assert_eq!(service["metadata"]["namespace"], "hubs");
    }
    assert!(m.get("Service", "staging-jupyterhub-proxy-api").is_none());
    let public = json_of(&m, "Service", "staging-jupyterhub-proxy-public");
    assert_eq!(public["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(public["spec"]["loadBalancerSourceRanges"][0], "10.0.0.0/8");
    assert_eq!(
        json_of(&m, "Service", "staging-jupyterhub-hub")["metadata"]["annotations"]
            ["prometheus.io/path"],
        "/jupyter/hub/metrics"
    );

    // DNS, then the internet without private ranges and the metadata server
    let egress = &singleuser["spec"]["egress"];
    assert_eq!(egress[1]["ports"][0]["port"], 53);
    assert_eq!(
        egress[2]["to"][0]["ipBlock"]["except"][3],
        "169.254.169.254/32"
    );
}

#[test]
fn the_hub_runs_hubfleet_with_its_config_and_probes() {
    let m = render("");
    let hub = json_of(&m, "Deployment", "staging-jupyterhub-hub");
    let pod = &hub["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["image"], default_image());
    assert_eq!(
        container["args"],
        serde_json::json!([
            "serve",
            "--config",
            "/etc/hubfleet/values.yaml",
            "--config",
            "/etc/hubfleet/hubfleet.yaml"
        ])
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"],
        "/jupyter/hub/health"
    );
    assert!(container.get("readinessProbe").is_none());
    assert_eq!(container["ports"][0]["containerPort"], HUB_PORT);
    assert_eq!(pod["serviceAccountName"], "staging-jupyterhub-hub");
    assert_eq!(
        pod["volumes"][1]["persistentVolumeClaim"]["claimName"],
        "staging-jupyterhub-hub-db-dir"
    );
    assert_eq!(container["volumeMounts"][1]["subPath"], "db");
    let env: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        env,
        ["HELM_RELEASE_NAME", "POD_NAMESPACE", "JUPYTERHUB_CRYPT_KEY"]
    );
    assert!(m
        .notes
        .iter()
        .any(|n| n.contains("hub.image `quay.io/jupyterhub/k8s-hub` is not a hubfleet image")));

    // a hubfleet image is used as given
    let m = render("hub: {image: {name: registry.example.org/hubfleet, tag: '1.2'}, extraEnv: {TZ: UTC, TOKEN: {valueFrom: {secretKeyRef: {name: s, key: k}}}}}");
    let container = &json_of(&m, "Deployment", "staging-jupyterhub-hub")["spec"]["template"]
        ["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example.org/hubfleet:1.2");
    let env = container["env"].as_array().unwrap();
    assert_eq!(env[3]["name"], "TOKEN");
    assert_eq!(env[3]["valueFrom"]["secretKeyRef"]["key"], "k");
    assert_eq!(env[4], serde_json::json!({"name": "TZ", "value": "UTC"}));
    assert!(is_hubfleet_image("ghcr.io/hubfleet/hubfleet@sha256:abc"));
    assert!(!is_hubfleet_image("quay.io/hubfleet-org/k8s-hub"));
}

#[test]
fn hub_config_is_what_hubfleet_serve_reads_on_kubernetes() {
    let m = render("hub: {config: {CryptKeeper: {keys: [aa]}}, services: {grader: {url: 'http://grader:8000'}, given: {apiToken: a-given-token}}}");
    let values_yaml = secret_data(&m, VALUES_FILE);
    let overlay = secrets::yaml_text(&m.hub_overlay);
    let Some(HubObject::ConfigMap(cm)) = m.get("ConfigMap", "staging-jupyterhub-hub") else {
        panic!("no ConfigMap");
    };
    assert_eq!(cm.data.as_ref().unwrap()[OVERLAY_FILE], overlay);
    let report = hubfleet_config::HubConfig::check(vec![
        hubfleet_config::ConfigSource::text(VALUES_FILE, &values_yaml),
        hubfleet_config::ConfigSource::text(OVERLAY_FILE, &overlay),
    ]);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let config = report.config.unwrap();
    assert_eq!(
        config.hubfleet.spawner,
        hubfleet_config::SpawnerKind::Kubernetes
    );
    assert_eq!(config.hubfleet.listen.port(), HUB_PORT as u16);
    assert_eq!(
        config.hubfleet.kubernetes.hub_connect_url.as_deref(),
        Some("http://staging-jupyterhub-hub:8081"),
        "pods reach the hub through its Service"
    );
    assert_eq!(config.data_dir(), std::path::PathBuf::from(DATA_DIR));
    assert_eq!(
        config.values.get("Release.Name").and_then(|v| v.as_str()),
        Some("staging")
    );
    // secrets: the cookie secret is in the values, the crypt key given (and moved to the env),
    // the grader's token derived and the given one kept
    let cookie = secret_data(&m, "hub.config.JupyterHub.cookie_secret");
    assert_eq!(cookie.len(), 64);
    assert!(values_yaml.contains(&format!("cookieSecret: {cookie}")));
    assert_eq!(secret_data(&m, "hub.config.CryptKeeper.keys"), "aa");
    assert!(!values_yaml.contains("CryptKeeper"));
    assert_eq!(
        secret_data(&m, "hub.services.given.apiToken"),
        "a-given-token"
    );
    let grader = secret_data(&m, "hub.services.grader.apiToken");
    assert!(values_yaml.contains(&grader));
    // z2jh's user scheduler is not made: users' pods must not wait for it
    assert!(config
        .values
        .get("scheduling.userScheduler.enabled")
        .is_none_or(|v| v.as_bool() == Some(false)));
}

#[test]
fn secrets_are_stable_derived_or_given() {
    let a = render("").to_yaml().unwrap();
    assert_eq!(a, render("").to_yaml().unwrap());
    let other = hub_manifests(&values(""), &options("fedcba9876543210fedcba9876543210"))
        .unwrap()
        .to_yaml()
        .unwrap();
    assert_ne!(a, other);
    let given = "hub: {cookieSecret: 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff, config: {CryptKeeper: {keys: [k1, k2]}}}";
    let no_seed = ManifestOptions {
        secret_seed: None,
        ..options("0123456789abcdef0123456789abcdef")
    };
    let m = hub_manifests(&values(given), &no_seed).unwrap();
    assert_eq!(
        secret_data(&m, "hub.config.JupyterHub.cookie_secret"),
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
    );
    assert_eq!(secret_data(&m, "hub.config.CryptKeeper.keys"), "k1;k2");
    let e = hub_manifests(&values(""), &no_seed)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("hub.cookieSecret is not set, and no seed was given")
            && e.contains("--secret-seed-file"),
        "{e}"
    );
}

#[test]
fn database_storage() {
    let m = render("");
    let Some(HubObject::PersistentVolumeClaim(pvc)) =
        m.get("PersistentVolumeClaim", "staging-jupyterhub-hub-db-dir")
    else {
        panic!("no PVC");
    };
    let spec = pvc.spec.as_ref().unwrap();
    assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(
        spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0,
        "1Gi"
    );
    let m = render("hub: {db: {type: postgres, url: 'postgresql://hub:pw@db:5432/hub'}}");
    assert!(m
        .objects
        .iter()
        .all(|o| o.kind() != "PersistentVolumeClaim"));
    let hub = json_of(&m, "Deployment", "staging-jupyterhub-hub");
    assert_eq!(
        hub["spec"]["template"]["spec"]["volumes"][1],
        serde_json::json!({"name": "pvc", "emptyDir": {}})
    );
    assert!(
        hub["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][1]
            .get("subPath")
            .is_none()
    );
}

#[test]
fn a_separate_proxy() {
    let m = render("hubfleet: {kubernetes: {separate_proxy: true}}\nproxy: {secretToken: a-token-for-the-proxy}");
    let proxy = json_of(&m, "Deployment", "staging-jupyterhub-proxy");
    let proxy_labels = string_map(&proxy["spec"]["template"]["metadata"]["labels"]);
    let container = &proxy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["args"][0], "proxy");
    assert!(container["args"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!(
            "--default-target=http://staging-jupyterhub-hub:8081"
        )));
    assert_eq!(
        container["env"][0]["valueFrom"]["secretKeyRef"]["key"],
        "hub.config.ConfigurableHTTPProxy.auth_token"
    );
    assert_eq!(
        secret_data(&m, "hub.config.ConfigurableHTTPProxy.auth_token"),
        "a-token-for-the-proxy"
    );
    for name in [
        "staging-jupyterhub-proxy-public",
        "staging-jupyterhub-proxy-api",
    ] {
        assert!(selects(
            &json_of(&m, "Service", name)["spec"]["selector"],
            &proxy_labels
        ));
    }
    let policy = json_of(&m, "NetworkPolicy", "staging-jupyterhub-proxy");
    assert!(selects(
        &policy["spec"]["podSelector"]["matchLabels"],
        &proxy_labels
    ));
    let hub_env = &json_of(&m, "Deployment", "staging-jupyterhub-hub")["spec"]["template"]["spec"]
        ["containers"][0]["env"];
    assert!(hub_env
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "CONFIGPROXY_AUTH_TOKEN"));
    // The hub drives that proxy through its API Service.
    let chp = &m.hub_overlay["hub"]["config"]["ConfigurableHTTPProxy"];
    assert_eq!(
        chp["api_url"].as_str(),
        Some("http://staging-jupyterhub-proxy-api:8001")
    );
    assert_eq!(chp["should_start"].as_bool(), Some(false));
    assert_eq!(
        m.hub_overlay["hubfleet"]["kubernetes"]["separate_proxy"].as_bool(),
        Some(true)
    );
}

#[test]
fn ingress_from_z2jh_keys() {
    assert!(render("").get("Ingress", "staging-jupyterhub").is_none());
    let m = render(
        r#"
ingress:
  enabled: true
  ingressClassName: nginx
  annotations: {cert-manager.io/cluster-issuer: letsencrypt}
  hosts: [hub.example.org, other.example.org]
  pathType: Prefix
  tls: [{hosts: [hub.example.org], secretName: hub-tls}]
proxy: {https: {enabled: true, type: offload}}
"#,
    );
    let ingress = json_of(&m, "Ingress", "staging-jupyterhub");
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    assert_eq!(ingress["spec"]["rules"][1]["host"], "other.example.org");
    let path = &ingress["spec"]["rules"][0]["http"]["paths"][0];
    assert_eq!(path["path"], "/jupyter/");
    assert_eq!(
        path["backend"]["service"]["name"],
        "staging-jupyterhub-proxy-public"
    );
    assert_eq!(ingress["spec"]["tls"][0]["secretName"], "hub-tls");
    assert_eq!(
        ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"],
        "letsencrypt"
    );
    let public = json_of(&m, "Service", "staging-jupyterhub-proxy-public");
    assert_eq!(public["spec"]["ports"][0]["name"], "https");
    assert_eq!(public["spec"]["ports"][0]["targetPort"], "http");
}

#[test]
fn bad_input_names_the_key() {
    for (extra, start) in [
        (
            "hub: {tolerations: [{key: a, efect: NoSchedule}]}",
            "hub.tolerations[0].efect: unknown field",
        ),
        (
            "hub: {nodeSelector: [a]}",
            "hub.nodeSelector: expected a mapping",
        ),
        (
            "hub: {extraEnv: {N: 3}}",
            "hub.extraEnv.N: expected a string or a mapping",
        ),
        (
            "hub: {resources: {requests: {cpu: [1]}}}",
            "hub.resources.requests.cpu: invalid type",
        ),
        (
            "proxy: {https: {enabled: true, type: letsencrypt}}",
            "proxy.https.type: `letsencrypt`: on Kubernetes, TLS ends in front of the hub",
        ),
        (
            "ingress: {enabled: yes-please}",
            "ingress.enabled: expected true or false",
        ),
        (
            "hubfleet: {kubernetes: {separate_proxy: 1}}",
            "hubfleet.kubernetes.separate_proxy: expected true or false",
        ),
    ] {
        let e = render_err(extra);
        assert!(e.starts_with(start), "{extra}: {e}");
    }
    let bad_namespace = ManifestOptions {
        release: HelmRelease {
            namespace: "Hub_1".into(),
            ..release()
        },
        ..options("0123456789abcdef0123456789abcdef")
    };
    let e = hub_manifests(&values(""), &bad_namespace)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("--namespace: `Hub_1` is not a valid name"),
        "{e}"
    );
    assert!(is_dns_label("hub-1") && !is_dns_label("-hub") && !is_dns_label(&"a".repeat(64)));
    // numbers are quantities, as Kubernetes reads them
    let m = render("hub: {resources: {requests: {cpu: 0.5, memory: 1Gi}}}");
    let hub = json_of(&m, "Deployment", "staging-jupyterhub-hub");
    assert_eq!(
        hub["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "0.5"
    );
}

#[test]
fn users_files_in_the_singleuser_secret() {
    assert!(render("")
        .get("Secret", "staging-jupyterhub-singleuser")
        .is_none());
    let m = render(
        r#"
singleuser:
  extraFiles:
    motd: {mountPath: /etc/motd, stringData: "hello\n"}
    settings: {mountPath: /etc/jupyter/settings.json, data: {a: 1}}
    logo: {mountPath: /srv/logo.png, binaryData: "aGk=\n"}
"#,
    );
    let Some(HubObject::Secret(secret)) = m.get("Secret", "staging-jupyterhub-singleuser") else {
        panic!("no singleuser Secret");
    };
    let data = secret.data.as_ref().unwrap();
    assert_eq!(data["motd"].0, b"hello\n");
    assert_eq!(data["settings"].0, br#"{"a":1}"#);
    assert_eq!(data["logo"].0, b"hi");
    let e = render_err("singleuser: {extraFiles: {x: {mountPath: /x.toml, data: {a: 1}}}}");
    assert!(
        e.starts_with("singleuser.extraFiles.x.data: `/x.toml`"),
        "{e}"
    );
    let e = render_err("singleuser: {extraFiles: {x: {stringData: a}}}");
    assert!(
        e.starts_with("singleuser.extraFiles.x: needs `mountPath`"),
        "{e}"
    );
}
