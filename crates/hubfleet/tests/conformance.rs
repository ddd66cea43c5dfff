//! Conformance with JupyterHub's REST API spec: schemathesis (from PyPI) generates
//! requests from the upstream spec and checks every answer for server errors, status
//! codes, content types and response schemas. Where the spec is wrong compared with
//! upstream's code, tests/conformance/run_schemathesis.py adjusts a copy of the spec,
//! and docs/api-conformance.md gives the upstream code line for each adjustment.
//!
//! Needs `schemathesis` in `$HUBFLEET_PYTHON_ENV` (scripts/requirements-test.txt) and
//! the shared reference material (`$HUBFLEET_SHARED_DIR`, default `../shared`).
//! `HUBFLEET_CONFORMANCE_EXAMPLES` (default 25) and `HUBFLEET_CONFORMANCE_SEED` tune a run.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{admin_hub, admin_token, fake_singleuser, TokenClient};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The upstream spec, from the shared reference material.
fn upstream_spec() -> PathBuf {
    let shared = std::env::var_os("HUBFLEET_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("../../../shared"));
    let spec = shared.join("spec/jupyterhub-rest-api.yml");
    assert!(
        spec.is_file(),
        "the upstream REST API spec is missing: {} does not exist. Point HUBFLEET_SHARED_DIR at \
         the shared reference directory (the one holding spec/jupyterhub-rest-api.yml)",
        spec.display()
    );
    spec
}

/// The venv's Python, which must have schemathesis.
fn python_with_schemathesis() -> PathBuf {
    let env = common::python_env();
    assert!(
        env.join("bin/schemathesis").exists(),
        "schemathesis is not installed in {}: run `{}/bin/pip install schemathesis` \
         (scripts/requirements-test.txt lists it; scripts/test installs it)",
        env.display(),
        env.display()
    );
    env.join("bin/python")
}

/// A hub with named servers, a stand-in single-user server (fast starts), no culler,
/// and an admin service whose token the run uses: the run deletes users and tokens
/// at random, but it cannot delete a service from the configuration.
fn conformance_hub(service_token: &str) -> common::TestHub {
    admin_hub(&format!(
        "  allowNamedServers: true\n  services:\n    conformance:\n      admin: true\n      \
         apiToken: {service_token}\nsingleuser:\n  cmd: {}\n  startTimeout: 20\ncull:\n  enabled: false\n",
        fake_singleuser()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_api_conforms_to_the_upstream_spec() {
    let spec = upstream_spec();
    let python = python_with_schemathesis();
    let service_token = format!("conformance-{}", uuid::Uuid::new_v4().simple());
    let hub = conformance_hub(&service_token);
    // An admin user's token too: `GET /user` answers a user model for it.
    let (_browser, user_token) = admin_token(&hub, None).await;

    let examples = std::env::var("HUBFLEET_CONFORMANCE_EXAMPLES").unwrap_or_else(|_| "25".into());
    let work = hub.dir.path().join("schemathesis");
    std::fs::create_dir_all(&work).unwrap();
    let mut command = Command::new(&python);
    command
        .current_dir(&work) // schemathesis keeps a cache in its working directory
        .arg(manifest_dir().join("tests/conformance/run_schemathesis.py"))
        .arg("--spec")
        .arg(&spec)
        .args(["--url", &hub.url("/hub/api")])
        .args(["--token", &service_token])
        .args(["--user-token", &user_token])
        .arg("--doc")
        .arg(manifest_dir().join("../../docs/api-conformance.md"))
        .arg("--work")
        .arg(&work)
        .args(["--max-examples", &examples]);
    if let Ok(seed) = std::env::var("HUBFLEET_CONFORMANCE_SEED") {
        command.args(["--seed", &seed]);
    }
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let log = hub.log();
    let log_tail: Vec<&str> = log.lines().rev().take(60).collect();
    assert!(
        output.status.success(),
        "schemathesis found problems (exit {:?}); set HUBFLEET_CONFORMANCE_SEED to the seed shown \
         to replay the run.\n--- schemathesis ---\n{stdout}\n{stderr}\n--- hub log (last lines, \
         newest first) ---\n{}",
        output.status.code(),
        log_tail.join("\n")
    );
    // A run that tested nothing would pass too: make sure it ran the whole API.
    assert!(
        stdout.contains("Selected: 53/54") && stdout.contains("passed"),
        "schemathesis did not run the expected operations:\n{stdout}\n{stderr}"
    );
    assert!(
        !log.contains("panicked"),
        "the hub panicked during the run:\n{log}"
    );
}

/// `POST /hub/api/shutdown` (left out of the schemathesis run): 202 with the message
/// of the spec, then the hub process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_202_and_the_hub_exits() {
    let service_token = format!("conformance-{}", uuid::Uuid::new_v4().simple());
    let mut hub = conformance_hub(&service_token);
    let client = TokenClient::new(&hub, &service_token);
    let (status, body) = client
        .call(reqwest::Method::POST, "/hub/api/shutdown", None)
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["message"], "Shutting down Hub", "{body}");
    let exit = hub.wait_exit(Duration::from_secs(20));
    assert!(
        exit.is_some(),
        "the hub still runs 20 s after POST /hub/api/shutdown; log:\n{}",
        hub.log()
    );
}
