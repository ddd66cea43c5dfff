//! GPUs and storage quotas of the local spawner, against the real binary.
//!
//! GPUs: 2i2c's GPU profiles ask with `extra_resource_limits: {nvidia.com/gpu: "1"}`; the hub
//! gives out the device indices of `hubfleet.local.gpus` (fake ones here: no GPU is needed) as
//! `CUDA_VISIBLE_DEVICES`, refuses a start it cannot serve, and takes them back at stop.
//!
//! Quotas: `singleuser.storage.capacity` becomes a project quota on the home where the
//! filesystem has project quotas; elsewhere (most test machines) the hub says so at start-up
//! and in the server's state.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{admin_token, Browser, TestHub, TokenClient};
use reqwest::Method;
use serde_json::{json, Value};

/// A stand-in server that writes its environment to `$HOME/env.txt`, then serves HTTP.
const ENV_WRITING_SERVER: &str = "[/bin/sh, -c, 'env > \"$HOME/env.txt\"; port=${JUPYTERHUB_SERVICE_URL##*:}; port=${port%%/*}; exec python3 -m http.server --bind 127.0.0.1 $port']";

fn config(extra_singleuser: &str) -> String {
    format!(
        r#"hub:
  config:
    JupyterHub:
      authenticator_class: dummy
    Authenticator:
      admin_users: [admin]
singleuser:
  cmd: {ENV_WRITING_SERVER}
  profileList:
    - display_name: CPU only
      slug: cpu
      default: true
    - display_name: NVIDIA Tesla T4, ~16 GB, ~4 CPUs
      slug: gpu
      kubespawner_override:
        mem_limit: 1G
        node_selector: {{node.kubernetes.io/instance-type: g4dn.xlarge}}
        extra_resource_limits:
          nvidia.com/gpu: '1'
{extra_singleuser}"#
    )
}

fn env_of(hub: &TestHub, user: &str) -> String {
    let path = hub.data_dir().join("homes").join(user).join("env.txt");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn var<'a>(env: &'a str, name: &str) -> Option<&'a str> {
    env.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
}

async fn start(browser: &Browser, user: &str, profile: &str) -> (u16, Value) {
    browser
        .call(
            Method::POST,
            &format!("/hub/api/users/{user}/server"),
            Some(json!({ "profile": profile })),
        )
        .await
}

async fn stop(browser: &Browser, user: &str) {
    let (status, body) = browser
        .call(
            Method::DELETE,
            &format!("/hub/api/users/{user}/server"),
            None,
        )
        .await;
    assert!(status == 204 || status == 202, "{status} {body}");
    for _ in 0..100 {
        let model = browser.user_model(user).await;
        if model["server"].is_null() && model["pending"].is_null() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{user}'s server did not stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn gpus_are_given_out_refused_when_taken_and_released_at_stop() {
    let hub = TestHub::start_with(&config(""), "    gpus: [0]\n", &common::python_env());
    let alice = Browser::new(&hub);
    alice.login("gpu-alice", "x").await;
    let bob = Browser::new(&hub);
    bob.login("gpu-bob", "x").await;

    let (status, body) = start(&alice, "gpu-alice", "gpu").await;
    assert_eq!(status, 201, "{body}\n{}", hub.log());
    let env = env_of(&hub, "gpu-alice");
    assert_eq!(var(&env, "CUDA_VISIBLE_DEVICES"), Some("0"), "{env}");
    assert_eq!(var(&env, "NVIDIA_VISIBLE_DEVICES"), Some("0"), "{env}");

    // The only GPU is taken: bob's GPU start is refused and nothing starts.
    let (status, body) = start(&bob, "gpu-bob", "gpu").await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("asks for 1 GPU, but only 0 of the hub's 1 GPU(s) are free"),
        "{body}"
    );
    let model = bob.user_model("gpu-bob").await;
    assert!(
        model["server"].is_null() && model["pending"].is_null(),
        "{model}"
    );
    assert!(hub.server_pids("gpu-bob").is_empty());
    assert!(!hub.data_dir().join("homes/gpu-bob/env.txt").exists());

    // A server without a GPU sees none.
    let (status, body) = start(&bob, "gpu-bob", "cpu").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        var(&env_of(&hub, "gpu-bob"), "CUDA_VISIBLE_DEVICES"),
        Some("")
    );
    stop(&bob, "gpu-bob").await;

    // Admins see the devices in the server's state.
    let (_admin, token) = admin_token(&hub, None).await;
    let admin = TokenClient::new(&hub, &token);
    let (_, model) = admin
        .call(Method::GET, "/hub/api/users/gpu-alice", None)
        .await;
    let state = &model["servers"][""]["state"];
    assert_eq!(state["gpus"], json!([0]), "{model}");
    assert_eq!(state["profile"]["limits"]["gpus"], 1, "{model}");

    // Once alice's server stops, its GPU is free again.
    stop(&alice, "gpu-alice").await;
    std::fs::remove_file(hub.data_dir().join("homes/gpu-bob/env.txt")).unwrap();
    let (status, body) = start(&bob, "gpu-bob", "gpu").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        var(&env_of(&hub, "gpu-bob"), "CUDA_VISIBLE_DEVICES"),
        Some("0")
    );
    stop(&bob, "gpu-bob").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_hub_leaves_a_running_servers_gpus_with_it() {
    let mut hub = TestHub::start_with(&config(""), "    gpus: [0]\n", &common::python_env());
    let alice = Browser::new(&hub);
    alice.login("restart-alice", "x").await;
    let bob = Browser::new(&hub);
    bob.login("restart-bob", "x").await;
    let (status, body) = start(&alice, "restart-alice", "gpu").await;
    assert_eq!(status, 201, "{body}\n{}", hub.log());

    // Killed outright, as a crash would: alice's server keeps running, and the next hub
    // finds it again with its GPU (the spawner takes it back from the server's state).
    hub.kill();
    hub.launch();
    let (status, body) = start(&bob, "restart-bob", "gpu").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("only 0 of the hub's 1 GPU(s) are free"),
        "{body}"
    );
    assert!(hub.server_pids("restart-bob").is_empty());

    stop(&alice, "restart-alice").await;
    let (status, body) = start(&bob, "restart-bob", "gpu").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        var(&env_of(&hub, "restart-bob"), "CUDA_VISIBLE_DEVICES"),
        Some("0")
    );
    stop(&bob, "restart-bob").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gpu_profile_on_a_hub_without_gpus_is_refused_with_a_reason() {
    let hub = TestHub::start(&config(""));
    assert!(
        hub.log()
            .contains("asks for 1 GPU(s) but hubfleet.local.gpus lists 0"),
        "{}",
        hub.log()
    );
    let alice = Browser::new(&hub);
    alice.login("nogpu-alice", "x").await;
    let (status, body) = start(&alice, "nogpu-alice", "gpu").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("this hub has none (hubfleet.local.gpus is empty)"),
        "{body}"
    );
    assert!(hub.server_pids("nogpu-alice").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quota_that_cannot_be_enforced_is_reported_and_servers_still_start() {
    let hub = TestHub::start(&config(
        "  storage:\n    type: dynamic\n    capacity: 10Gi\n",
    ));
    let (_admin, token) = admin_token(&hub, None).await;
    let admin = TokenClient::new(&hub, &token);
    let (status, body) = admin
        .call(Method::POST, "/hub/api/users/quota-alice", None)
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = admin
        .call(Method::POST, "/hub/api/users/quota-alice/server", None)
        .await;
    assert_eq!(status, 201, "{body}\n{}", hub.log());
    let (_, model) = admin
        .call(Method::GET, "/hub/api/users/quota-alice", None)
        .await;
    let storage = &model["servers"][""]["state"]["storage"];
    assert_eq!(storage["capacity"], 10u64 << 30, "{model}");
    if storage["enforced"] == true {
        eprintln!("the homes' filesystem has project quotas: enforced, nothing to report");
        assert!(storage["project"].as_u64().is_some_and(|p| p > 0));
        return;
    }
    let reason = storage["reason"].as_str().unwrap_or_default();
    eprintln!("reported: {reason}");
    assert!(
        reason.starts_with("storage quota 10G not enforced: ")
            && reason.contains("has no project quotas"),
        "{model}"
    );
    // Said once at start-up, and in the server's log.
    let log = hub.log();
    let at_start = log
        .lines()
        .filter(|l| l.contains("storage quota 10G not enforced"))
        .count();
    assert_eq!(at_start, 1, "{log}");
    let server_log = std::fs::read_to_string(hub.data_dir().join("logs/quota-alice.log")).unwrap();
    assert!(server_log.contains(reason), "{server_log}");
}

/// A loop-mounted ext4 with project quotas, when this machine allows it (root, a kernel with
/// quota support, quota-tools); `Err` says why not.
fn quota_filesystem(dir: &Path) -> Result<PathBuf, String> {
    let image = dir.join("homes.img");
    let mount = dir.join("mnt");
    std::fs::create_dir_all(&mount).map_err(|e| e.to_string())?;
    let run = |program: &str, args: &[&str]| -> Result<(), String> {
        let out = std::process::Command::new(program)
            .args(args)
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    let image_text = image.display().to_string();
    run("truncate", &["-s", "64M", &image_text])?;
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-O",
            "quota,project",
            "-E",
            "quotatype=prjquota",
            &image_text,
        ],
    )?;
    run(
        "mount",
        &[
            "-o",
            "loop,prjquota",
            &image_text,
            &mount.display().to_string(),
        ],
    )?;
    Ok(mount)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quota_is_enforced_on_a_filesystem_with_project_quotas() {
    let scratch = tempfile::tempdir().unwrap();
    let mount = match quota_filesystem(scratch.path()) {
        Ok(mount) => mount,
        Err(why) => {
            eprintln!("skipped: no filesystem with project quotas here: {why}");
            return;
        }
    };
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(mount.clone());
    let writer = "[/bin/sh, -c, 'dd if=/dev/zero of=\"$HOME/big\" bs=1M count=8 2> \"$HOME/dd.txt\"; port=${JUPYTERHUB_SERVICE_URL##*:}; port=${port%%/*}; exec python3 -m http.server --bind 127.0.0.1 $port']";
    let yaml = format!(
        "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n    Authenticator:\n      admin_users: [admin]\nsingleuser:\n  cmd: {writer}\n  storage:\n    capacity: 2M\n"
    );
    let hub = TestHub::start_with(
        &yaml,
        &format!("    homes_dir: {}\n", mount.display()),
        &common::python_env(),
    );
    let (_admin, token) = admin_token(&hub, None).await;
    let admin = TokenClient::new(&hub, &token);
    let (status, body) = admin
        .call(Method::POST, "/hub/api/users/admin/server", None)
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, model) = admin.call(Method::GET, "/hub/api/users/admin", None).await;
    let storage = &model["servers"][""]["state"]["storage"];
    if storage["enforced"] != true {
        eprintln!("skipped: the quota could not be set here: {storage}");
        return;
    }
    let written = std::fs::metadata(mount.join("admin/big")).map_or(0, |m| m.len());
    assert!(written <= 2 << 20, "wrote {written} bytes past a 2M quota");
    let (status, _) = admin
        .call(Method::DELETE, "/hub/api/users/admin/server", None)
        .await;
    assert!(status == 204 || status == 202);
}
