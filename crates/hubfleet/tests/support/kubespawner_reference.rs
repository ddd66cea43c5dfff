//! The KubeSpawner reference tool of the shared material and `hubfleet render pod`, run with one
//! command line (for `kube_pod_reference.rs` and `export_values.rs`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

/// The shared reference material (`$HUBFLEET_SHARED_DIR`).
pub fn shared_dir() -> PathBuf {
    let dir = std::env::var_os("HUBFLEET_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    assert!(
        dir.join("tools/kubespawner-reference/kubespawner_reference.py")
            .is_file()
            && dir.join("fixtures/2i2c-infrastructure").is_dir(),
        "the shared reference material is missing: {} should hold tools/kubespawner-reference and \
         fixtures/2i2c-infrastructure. Point HUBFLEET_SHARED_DIR at it (default: ../shared beside \
         the repository)",
        dir.display()
    );
    dir
}

/// The reference tool's Python (`$HUBFLEET_KUBESPAWNER_ENV`), checked to have its packages.
pub fn reference_python() -> PathBuf {
    let env = std::env::var_os("HUBFLEET_KUBESPAWNER_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
            "HUBFLEET_KUBESPAWNER_ENV is not set: point it at a Python venv with the reference \
             tool's packages (jupyterhub==5.5.0 jupyterhub-kubespawner==7.1.0 \
             kubernetes-asyncio==36.1.0 traitlets==5.15.1 pyyaml oauthenticator \
             jupyterhub-fancy-profiles); scripts/test creates one in .venv-kubespawner"
        )
        });
    let python = env.join("bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import kubespawner, jupyterhub, kubernetes_asyncio, oauthenticator, jupyterhub_fancy_profiles"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{} lacks the reference tool's packages: pip install 'jupyterhub==5.5.0' \
         'jupyterhub-kubespawner==7.1.0' 'kubernetes-asyncio==36.1.0' 'traitlets==5.15.1' pyyaml \
         oauthenticator jupyterhub-fancy-profiles",
        env.display()
    );
    python
}

/// What the reference printed, or its error. It runs through `fixtures/kubespawner_exact_urls.py`,
/// which gives it JupyterHub's own users' URLs with `subdomain_host` (the tool approximates
/// them); without `subdomain_host` the tool runs as it is.
pub fn reference(python: &Path, shared: &Path, args: &[String]) -> Result<Json, String> {
    let out = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/kubespawner_exact_urls.py"
        ))
        .arg(shared.join("tools/kubespawner-reference/kubespawner_reference.py"))
        .args(args)
        .arg("--pvc")
        .output()
        .expect("run the reference tool");
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("reference output is not JSON: {e}"))
}

/// What `hubfleet render pod --pvc` printed, or its error.
pub fn ours(args: &[String]) -> Result<Json, String> {
    let out = hubfleet(&[args, &[s("--pvc")]].concat());
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err
            .lines()
            .rfind(|l| l.starts_with("error"))
            .unwrap_or("")
            .to_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("hubfleet output is not JSON: {e}"))
}

/// `hubfleet render pod ARGS`.
pub fn hubfleet(args: &[String]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hubfleet"))
        .args(["render", "pod"])
        .args(args)
        .env("HUBFLEET_SHARED_DIR", shared_dir())
        .output()
        .expect("run hubfleet")
}

/// A short account of how two values differ.
pub fn describe(a: &Json, b: &Json) -> String {
    let (a, b) = (a.to_string(), b.to_string());
    let cut = |s: &str| {
        if s.len() > 400 {
            format!("{}…", &s[..400])
        } else {
            s.to_owned()
        }
    };
    format!("KubeSpawner {} / hubfleet {}", cut(&a), cut(&b))
}

/// The chart version basehub pins (the reference's `run_2i2c_examples.py` uses the same).
pub const BASEHUB_Z2JH_VERSION: &str = "4.3.3";

/// An owned string.
pub fn s(x: &str) -> String {
    x.to_owned()
}

/// The command line of a 2i2c hub, as `run_2i2c_examples.py` builds it.
pub fn hub_args(
    fixture: &Path,
    cluster_dir: &Path,
    cluster: &str,
    hub: &Yaml,
) -> (String, Vec<String>) {
    let hub_name = hub["name"].as_str().expect("a hub has a name");
    let chart = hub
        .get("helm_chart")
        .and_then(Yaml::as_str)
        .unwrap_or("basehub");
    let name = format!("{cluster}--{hub_name}");
    let mut args = vec![
        s("--chart-version"),
        s(BASEHUB_Z2JH_VERSION),
        s("--release-name"),
        s(hub_name),
        s("--unwrap"),
        s("jupyterhub"),
        s("--values"),
        fixture
            .join("helm-charts/basehub/values.yaml")
            .display()
            .to_string(),
    ];
    if chart == "daskhub" {
        args.extend([s("--unwrap"), s("basehub.jupyterhub")]);
    }
    for file in hub
        .get("helm_chart_values_files")
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(Yaml::as_str)
    {
        // sops-encrypted and jsonnet files are left out by both (hubfleet notes the skip)
        if file.starts_with("enc-") || file.contains(".secret.") || file.ends_with(".jsonnet") {
            continue;
        }
        args.extend([s("--values"), cluster_dir.join(file).display().to_string()]);
    }
    // Every profile of LEAP's hubs is limited to groups (basehub's 05-profile-groups).
    if cluster == "leap" && (hub_name == "staging" || hub_name == "prod") {
        args.extend([s("--group"), s("leap-stc:leap-pangeo-full-access")]);
    }
    if hub_name.contains("binder") {
        args.extend([
            s("--user-options-json"),
            s(r#"{"token": "<BINDER_LAUNCH_TOKEN>", "image": "quay.io/example/binder-image:abc123", "repo_url": "https://github.com/example/repo"}"#),
        ]);
    }
    (name, args)
}
