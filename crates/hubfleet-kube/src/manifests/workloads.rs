//! The hub's Deployment (and the separate proxy's), its PVC, service account and RBAC, as z2jh's
//! `hub/*.yaml` and `proxy/deployment.yaml` make them, running hubfleet.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMap, Container, Lifecycle, LocalObjectReference, PersistentVolumeClaim,
    PodSecurityContext, Secret, SecurityContext, Toleration, Volume, VolumeMount,
};
use serde_json::{json, Map, Value as Json};
use serde_yaml_ng::Value;
use sha2::{Digest, Sha256};

use super::secrets::{Secrets, CRYPT_KEY_KEY, PROXY_TOKEN_KEY};
use super::{
    flag, fragment, json_at, list, mapping, object, resources, text, Cx, HubObject, CONFIG_DIR,
    HUB_PORT, HUB_SERVICE_PORT, OVERLAY_FILE, PROXY_API_PORT, VALUES_FILE, VOLUME_DIR,
};
use crate::KubeError;

/// Checksums of the hub's config, in its pod's annotations: a changed config restarts the hub
/// (as z2jh's `checksum/config-map` and `checksum/secret`).
pub(crate) struct Checksums {
    config_map: String,
    secret: String,
}

impl Checksums {
    pub(crate) fn of(config_map: &ConfigMap, secret: &Secret) -> Checksums {
        let sum = |json: Json| hex::encode(Sha256::digest(json.to_string().as_bytes()));
        Checksums {
            config_map: sum(super::typed::to_json(&config_map.data)),
            secret: sum(super::typed::to_json(&secret.data)),
        }
    }
}

/// The hub's ServiceAccount (`hub.serviceAccount.create`), Role and RoleBinding (`rbac.create`):
/// what the Kubernetes spawner does in the namespace.
pub(crate) fn service_account_and_rbac(cx: &Cx) -> Result<Vec<HubObject>, KubeError> {
    let mut out = Vec::new();
    let create = flag(cx.values, "hub.serviceAccount.create")?;
    let account = service_account_name(cx)?;
    if create {
        let mut meta = cx.metadata(&account, "hub");
        let annotations = mapping(cx.values, "hub.serviceAccount.annotations")?;
        if !annotations.is_empty() {
            meta["annotations"] = Json::Object(annotations);
        }
        out.push(HubObject::ServiceAccount(object(
            "the hub's ServiceAccount",
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}),
        )?));
    }
    if flag(cx.values, "rbac.create")? {
        let name = cx.names.hub();
        out.push(HubObject::Role(object(
            "the hub's Role",
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": cx.metadata(&name, "hub"),
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["pods", "persistentvolumeclaims"],
                        "verbs": ["get", "watch", "list", "create", "delete"],
                    },
                    {
                        "apiGroups": [""],
                        "resources": ["events"],
                        "verbs": ["get", "watch", "list"],
                    },
                ],
            }),
        )?));
        out.push(HubObject::RoleBinding(object(
            "the hub's RoleBinding",
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": cx.metadata(&name, "hub"),
                "subjects": [{
                    "kind": "ServiceAccount",
                    "name": account,
                    "namespace": cx.release.namespace,
                }],
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": name,
                },
            }),
        )?));
    }
    Ok(out)
}

/// `jupyterhub.hub-serviceaccount.fullname`.
fn service_account_name(cx: &Cx) -> Result<String, KubeError> {
    let name = text(cx.values, "hub.serviceAccount.name")?;
    Ok(if flag(cx.values, "hub.serviceAccount.create")? {
        name.unwrap_or_else(|| cx.names.hub())
    } else {
        name.unwrap_or_else(|| "default".into())
    })
}

fn sqlite_pvc(cx: &Cx) -> Result<bool, KubeError> {
    Ok(text(cx.values, "hub.db.type")?.as_deref() == Some("sqlite-pvc"))
}

/// The SQLite database's PVC (`hub.db.type: sqlite-pvc`, `hub.db.pvc.*`).
pub(crate) fn hub_pvc(cx: &Cx) -> Result<Option<PersistentVolumeClaim>, KubeError> {
    if !sqlite_pvc(cx)? {
        return Ok(None);
    }
    let mut meta = cx.metadata(&cx.names.hub_pvc(), "hub");
    let annotations = mapping(cx.values, "hub.db.pvc.annotations")?;
    if !annotations.is_empty() {
        meta["annotations"] = Json::Object(annotations);
    }
    let mut spec = Map::new();
    let selector = mapping(cx.values, "hub.db.pvc.selector")?;
    if !selector.is_empty() {
        spec.insert("selector".into(), Json::Object(selector));
    }
    // z2jh: a string, even "", is passed on ("" asks for no storage class); null is left out.
    if let Some(Value::String(class)) = cx.values.get("hub.db.pvc.storageClassName") {
        spec.insert("storageClassName".into(), json!(class));
    }
    spec.insert(
        "accessModes".into(),
        Json::Array(list(cx.values, "hub.db.pvc.accessModes")?),
    );
    let storage = text(cx.values, "hub.db.pvc.storage")?.unwrap_or_else(|| "1Gi".into());
    spec.insert(
        "resources".into(),
        json!({"requests": {"storage": storage}}),
    );
    object(
        "hub.db.pvc",
        json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": meta,
            "spec": spec,
        }),
    )
    .map(Some)
}

/// `jupyterhub.imagePullSecrets`: the image's pull secrets, the chart's, and the image pull
/// Secret made from `imagePullSecret`.
fn image_pull_secrets(cx: &Cx, image_key: &str) -> Result<Vec<Json>, KubeError> {
    let mut names: Vec<Json> = list(cx.values, &format!("{image_key}.pullSecrets"))?;
    names.extend(list(cx.values, "imagePullSecrets")?);
    if flag(cx.values, "imagePullSecret.create")?
        && flag(cx.values, "imagePullSecret.automaticReferenceInjection")?
    {
        names.push(json!(cx.names.image_pull_secret()));
    }
    let mut out: Vec<Json> = Vec::new();
    for name in names {
        let reference = match name {
            Json::String(s) => json!({ "name": s }),
            other => other,
        };
        if !out.contains(&reference) {
            out.push(reference);
        }
    }
    let checked: Vec<LocalObjectReference> = super::typed::typed(
        &format!("{image_key}.pullSecrets (with imagePullSecrets)"),
        &Json::Array(out),
    )?;
    Ok(checked.iter().map(super::typed::to_json).collect())
}

/// z2jh's `jupyterhub.extraEnv`: a list as it is; a mapping's strings as values and its
/// mappings as entries named by their key (sorted, as Helm ranges over maps).
fn extra_env(cx: &Cx, key: &str) -> Result<Vec<Json>, KubeError> {
    let entries = match cx.values.get_set(key) {
        None => Vec::new(),
        Some(Value::Sequence(_)) => list(cx.values, key)?,
        Some(Value::Mapping(_)) => {
            let mut sorted: Vec<(String, Json)> = mapping(cx.values, key)?.into_iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            let mut out = Vec::new();
            for (name, value) in sorted {
                out.push(match value {
                    Json::String(s) => json!({"name": name, "value": s}),
                    Json::Object(mut entry) => {
                        entry.entry("name").or_insert(json!(name));
                        Json::Object(entry)
                    }
                    _ => {
                        return Err(KubeError::invalid(
                            format!("{key}.{name}"),
                            "expected a string or a mapping (`valueFrom: …`), as z2jh: quote numbers and booleans",
                        ))
                    }
                });
            }
            out
        }
        Some(_) => {
            return Err(KubeError::invalid(
                key,
                "expected a mapping of names to values, or a list of `{name, value}`",
            ))
        }
    };
    let checked: Vec<k8s_openapi::api::core::v1::EnvVar> =
        super::typed::typed(key, &Json::Array(entries))?;
    Ok(checked.iter().map(super::typed::to_json).collect())
}

/// `jupyterhub.coreAffinity` (`scheduling.corePods.nodeAffinity.matchNodePurpose`).
fn core_affinity(cx: &Cx) -> Result<Option<Json>, KubeError> {
    let purpose = text(
        cx.values,
        "scheduling.corePods.nodeAffinity.matchNodePurpose",
    )?;
    let term = json!({"matchExpressions": [{
        "key": "hub.jupyter.org/node-purpose",
        "operator": "In",
        "values": ["core"],
    }]});
    let affinity = match purpose.as_deref() {
        Some("require") => json!({"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]},
        }}),
        Some("prefer") => json!({"nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": term}],
        }}),
        _ => return Ok(None),
    };
    let checked: Affinity = super::typed::typed("scheduling.corePods.nodeAffinity", &affinity)?;
    Ok(Some(super::typed::to_json(&checked)))
}

/// `scheduling.corePods.tolerations` then the pod's own.
fn tolerations(cx: &Cx, key: &str) -> Result<Vec<Json>, KubeError> {
    let mut out = Vec::new();
    for k in ["scheduling.corePods.tolerations", key] {
        if let Some(Json::Array(items)) = fragment::<Vec<Toleration>>(cx.values, k)? {
            out.extend(items);
        }
    }
    Ok(out)
}

/// A probe from `key` (`hub.livenessProbe`) when it is enabled.
fn probe(cx: &Cx, key: &str, path: &str, port: &str) -> Result<Option<Json>, KubeError> {
    if !flag(cx.values, &format!("{key}.enabled"))? {
        return Ok(None);
    }
    let mut probe = json!({"httpGet": {"path": path, "port": port}});
    for field in [
        "initialDelaySeconds",
        "periodSeconds",
        "timeoutSeconds",
        "failureThreshold",
    ] {
        let value = json_at(cx.values, &format!("{key}.{field}"));
        if !value.is_null() {
            probe[field] = value;
        }
    }
    let checked: k8s_openapi::api::core::v1::Probe = super::typed::typed(key, &probe)?;
    Ok(Some(super::typed::to_json(&checked)))
}

/// Set `field` of `target` to `value` unless it is `None` or empty.
fn put(target: &mut Map<String, Json>, field: &str, value: Option<Json>) {
    match value {
        None | Some(Json::Null) => {}
        Some(Json::Array(a)) if a.is_empty() => {}
        Some(Json::Object(o)) if o.is_empty() => {}
        Some(v) => {
            target.insert(field.into(), v);
        }
    }
}

/// `hub.baseUrl` without its trailing `/` (`""` for `/`).
fn base_path(cx: &Cx) -> Result<String, KubeError> {
    Ok(text(cx.values, "hub.baseUrl")?
        .unwrap_or_else(|| "/".into())
        .trim_end_matches('/')
        .to_owned())
}

/// The hub: `hubfleet serve` reading its two config files, its data on the PVC (or an emptyDir
/// with PostgreSQL), secrets in its environment.
pub(crate) fn hub_deployment(
    cx: &mut Cx,
    image: &str,
    checksums: &Checksums,
    secrets: &Secrets,
) -> Result<Deployment, KubeError> {
    let values = cx.values;
    let hub = cx.names.hub();
    let hubfleet_image =
        super::is_hubfleet_image(&text(values, "hub.image.name")?.unwrap_or_default());

    let mut labels = cx.pod_labels("hub");
    for access in ["proxy-api", "proxy-http", "singleuser"] {
        labels[format!("hub.jupyter.org/network-access-{access}")] = json!("true");
    }
    for (k, v) in mapping(values, "hub.labels")? {
        labels[k] = v;
    }
    let mut annotations = json!({
        "checksum/config-map": checksums.config_map,
        "checksum/secret": checksums.secret,
    });
    for (k, v) in mapping(values, "hub.annotations")? {
        annotations[k] = v;
    }

    let mut env = vec![
        json!({"name": "HELM_RELEASE_NAME", "value": cx.release.release_name}),
        json!({"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}),
    ];
    if secrets.crypt_keys.is_some() {
        env.push(json!({"name": "JUPYTERHUB_CRYPT_KEY", "valueFrom": {"secretKeyRef": {"name": hub, "key": CRYPT_KEY_KEY}}}));
    }
    if secrets.proxy_token.is_some() {
        env.push(json!({"name": "CONFIGPROXY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": hub, "key": PROXY_TOKEN_KEY}}}));
    }
    if flag(values, "debug.enabled")? {
        env.push(json!({"name": "RUST_LOG", "value": "debug"}));
    }
    env.extend(extra_env(cx, "hub.extraEnv")?);

    let data_volume = if sqlite_pvc(cx)? {
        json!({"name": "pvc", "persistentVolumeClaim": {"claimName": cx.names.hub_pvc()}})
    } else {
        json!({"name": "pvc", "emptyDir": {}})
    };
    let mut data_mount = json!({"name": "pvc", "mountPath": VOLUME_DIR});
    if let Some(sub_path) = text(values, "hub.db.pvc.subPath")? {
        if sqlite_pvc(cx)? {
            data_mount["subPath"] = json!(sub_path);
        }
    }
    let mut volumes = vec![
        json!({"name": "config", "projected": {"sources": [
            {"secret": {"name": hub, "items": [{"key": VALUES_FILE, "path": VALUES_FILE}]}},
            {"configMap": {"name": hub, "items": [{"key": OVERLAY_FILE, "path": OVERLAY_FILE}]}},
        ]}}),
        data_volume,
    ];
    if let Some(Json::Array(extra)) = fragment::<Vec<Volume>>(values, "hub.extraVolumes")? {
        volumes.extend(extra);
    }
    let mut mounts = vec![
        json!({"name": "config", "mountPath": CONFIG_DIR, "readOnly": true}),
        data_mount,
    ];
    if let Some(Json::Array(extra)) = fragment::<Vec<VolumeMount>>(values, "hub.extraVolumeMounts")?
    {
        mounts.extend(extra);
    }

    let mut args = vec![
        json!("serve"),
        json!("--config"),
        json!(format!("{CONFIG_DIR}/{VALUES_FILE}")),
        json!("--config"),
        json!(format!("{CONFIG_DIR}/{OVERLAY_FILE}")),
    ];
    let mut command = None;
    let (given_command, given_args) = (list(values, "hub.command")?, list(values, "hub.args")?);
    if hubfleet_image {
        if !given_args.is_empty() {
            args = given_args;
        }
        if !given_command.is_empty() {
            command = Some(Json::Array(given_command));
        }
    } else if !given_args.is_empty() || !given_command.is_empty() {
        cx.notes.push(
            "hub.command, hub.args: not used: they are for z2jh's hub image, and the hub runs hubfleet's".into(),
        );
    }

    let base = base_path(cx)?;
    let health = format!("{base}/hub/health");
    let mut container = Map::new();
    container.insert("name".into(), json!("hub"));
    container.insert("image".into(), json!(image));
    put(&mut container, "command", command);
    container.insert("args".into(), Json::Array(args));
    container.insert("volumeMounts".into(), Json::Array(mounts));
    put(
        &mut container,
        "resources",
        resources(values, "hub.resources")?,
    );
    put(
        &mut container,
        "imagePullPolicy",
        text(values, "hub.image.pullPolicy")?.map(Json::String),
    );
    put(
        &mut container,
        "securityContext",
        fragment::<SecurityContext>(values, "hub.containerSecurityContext")?,
    );
    put(
        &mut container,
        "lifecycle",
        fragment::<Lifecycle>(values, "hub.lifecycle")?,
    );
    container.insert("env".into(), Json::Array(env));
    container.insert(
        "ports".into(),
        json!([{"name": "http", "containerPort": HUB_PORT}]),
    );
    put(
        &mut container,
        "livenessProbe",
        probe(cx, "hub.livenessProbe", &health, "http")?,
    );
    put(
        &mut container,
        "readinessProbe",
        probe(cx, "hub.readinessProbe", &health, "http")?,
    );

    let mut containers = vec![Json::Object(container)];
    if let Some(Json::Array(extra)) = fragment::<Vec<Container>>(values, "hub.extraContainers")? {
        containers.extend(extra);
    }

    let mut pod = Map::new();
    put(
        &mut pod,
        "nodeSelector",
        Some(Json::Object(mapping(values, "hub.nodeSelector")?)),
    );
    put(
        &mut pod,
        "tolerations",
        Some(Json::Array(tolerations(cx, "hub.tolerations")?)),
    );
    put(&mut pod, "affinity", core_affinity(cx)?);
    pod.insert("volumes".into(), Json::Array(volumes));
    let account = service_account_name(cx)?;
    pod.insert("serviceAccountName".into(), json!(account));
    put(
        &mut pod,
        "securityContext",
        fragment::<PodSecurityContext>(values, "hub.podSecurityContext")?,
    );
    put(
        &mut pod,
        "imagePullSecrets",
        Some(Json::Array(image_pull_secrets(cx, "hub.image")?)),
    );
    put(
        &mut pod,
        "initContainers",
        fragment::<Vec<Container>>(values, "hub.initContainers")?,
    );
    pod.insert("containers".into(), Json::Array(containers));
    for (k, v) in mapping(values, "hub.extraPodSpec")? {
        pod.insert(k, v);
    }

    let mut spec = Map::new();
    put(
        &mut spec,
        "revisionHistoryLimit",
        Some(json_at(values, "hub.revisionHistoryLimit")),
    );
    spec.insert("replicas".into(), json!(1));
    spec.insert(
        "selector".into(),
        json!({"matchLabels": cx.match_labels("hub")}),
    );
    put(
        &mut spec,
        "strategy",
        fragment::<DeploymentStrategy>(values, "hub.deploymentStrategy")?,
    );
    spec.insert(
        "template".into(),
        json!({"metadata": {"labels": labels, "annotations": annotations}, "spec": pod}),
    );
    let deployment = object(
        "the hub's Deployment (hub.extraPodSpec and the keys above)",
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": cx.metadata(&hub, "hub"),
            "spec": spec,
        }),
    )?;
    Ok(deployment)
}

/// z2jh's `proxy` Deployment running `hubfleet proxy` with CHP's flags
/// (`hubfleet.kubernetes.separate_proxy`); `proxy.chp.*` as z2jh reads them.
pub(crate) fn proxy_deployment(
    cx: &Cx,
    image: &str,
    secrets: &Secrets,
) -> Result<Deployment, KubeError> {
    let values = cx.values;
    let hub_url = format!("http://{}:{HUB_SERVICE_PORT}", cx.names.hub());
    let mut labels = cx.pod_labels("proxy");
    for access in ["hub", "singleuser"] {
        labels[format!("hub.jupyter.org/network-access-{access}")] = json!("true");
    }
    for (k, v) in mapping(values, "proxy.labels")? {
        labels[k] = v;
    }
    let token = secrets.proxy_token.as_deref().unwrap_or_default();
    let token_sum = hex::encode(Sha256::digest(token.as_bytes()));
    let mut annotations = json!({"checksum/auth-token": &token_sum[..4]});
    for (k, v) in mapping(values, "proxy.annotations")? {
        annotations[k] = v;
    }
    let default_target =
        text(values, "proxy.chp.defaultTarget")?.unwrap_or_else(|| hub_url.clone());
    let error_target =
        text(values, "proxy.chp.errorTarget")?.unwrap_or_else(|| format!("{hub_url}/hub/error"));
    let mut args = vec![
        json!("proxy"),
        json!("--ip="),
        json!("--api-ip="),
        json!(format!("--api-port={PROXY_API_PORT}")),
        json!(format!("--default-target={default_target}")),
        json!(format!("--error-target={error_target}")),
        json!(format!("--port={HUB_PORT}")),
    ];
    if flag(values, "debug.enabled")? {
        args.push(json!("--log-level=debug"));
    }
    if text(values, "hub.config.JupyterHub.subdomain_host")?.is_some() {
        args.push(json!("--host-routing"));
    }
    args.extend(list(values, "proxy.chp.extraCommandLineFlags")?);
    let mut env = vec![
        json!({"name": "CONFIGPROXY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": cx.names.hub(), "key": PROXY_TOKEN_KEY}}}),
    ];
    env.extend(extra_env(cx, "proxy.chp.extraEnv")?);

    let mut container = Map::new();
    container.insert("name".into(), json!("proxy"));
    container.insert("image".into(), json!(image));
    container.insert("args".into(), Json::Array(args));
    put(
        &mut container,
        "resources",
        resources(values, "proxy.chp.resources")?,
    );
    container.insert("env".into(), Json::Array(env));
    put(
        &mut container,
        "imagePullPolicy",
        text(values, "hub.image.pullPolicy")?.map(Json::String),
    );
    container.insert(
        "ports".into(),
        json!([
            {"name": "http", "containerPort": HUB_PORT},
            {"name": "api", "containerPort": PROXY_API_PORT},
        ]),
    );
    put(
        &mut container,
        "livenessProbe",
        probe(cx, "proxy.chp.livenessProbe", "/_chp_healthz", "http")?,
    );
    put(
        &mut container,
        "readinessProbe",
        probe(cx, "proxy.chp.readinessProbe", "/_chp_healthz", "http")?,
    );
    put(
        &mut container,
        "securityContext",
        fragment::<SecurityContext>(values, "proxy.chp.containerSecurityContext")?,
    );

    let mut pod = Map::new();
    pod.insert("terminationGracePeriodSeconds".into(), json!(60));
    put(
        &mut pod,
        "nodeSelector",
        Some(Json::Object(mapping(values, "proxy.chp.nodeSelector")?)),
    );
    put(
        &mut pod,
        "tolerations",
        Some(Json::Array(tolerations(cx, "proxy.chp.tolerations")?)),
    );
    put(&mut pod, "affinity", core_affinity(cx)?);
    put(
        &mut pod,
        "imagePullSecrets",
        Some(Json::Array(image_pull_secrets(cx, "hub.image")?)),
    );
    pod.insert("containers".into(), json!([Json::Object(container)]));
    for (k, v) in mapping(values, "proxy.chp.extraPodSpec")? {
        pod.insert(k, v);
    }

    let mut spec = Map::new();
    put(
        &mut spec,
        "revisionHistoryLimit",
        Some(json_at(values, "proxy.chp.revisionHistoryLimit")),
    );
    spec.insert("replicas".into(), json!(1));
    spec.insert(
        "selector".into(),
        json!({"matchLabels": cx.match_labels("proxy")}),
    );
    put(
        &mut spec,
        "strategy",
        fragment::<DeploymentStrategy>(values, "proxy.deploymentStrategy")?,
    );
    spec.insert(
        "template".into(),
        json!({"metadata": {"labels": labels, "annotations": annotations}, "spec": pod}),
    );
    object(
        "the proxy's Deployment (proxy.chp.extraPodSpec and the keys above)",
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": cx.metadata(&cx.names.proxy(), "proxy"),
            "spec": spec,
        }),
    )
}
