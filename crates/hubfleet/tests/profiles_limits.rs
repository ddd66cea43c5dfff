//! Memory limits with cgroups, against the real binary: a server (a stand-in Python program)
//! that allocates past its profile's limit is killed, and the hub says so on the home page and
//! in the server's log; another user's server keeps running.
//!
//! Also: a kernel killed at the limit while its server runs is reported, and cgroups a killed hub
//! left are removed at the next start.
//!
//! Needs a writable cgroup hierarchy (v1 memory controller or v2), as on the CI machines.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{admin_token, Browser, TestHub, TokenClient};
use reqwest::Method;
use serde_json::json;

const STAND_IN: &str = r#"
import os, threading, time, http.server
url = os.environ["JUPYTERHUB_SERVICE_URL"]
port = int(url.rsplit(":", 1)[1].split("/")[0])
server = http.server.HTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler)
threading.Thread(target=server.serve_forever, daemon=True).start()
if os.environ.get("ALLOC") == "1":
    time.sleep(1.5)
    hog = []
    while True:
        hog.append(b"x" * (8 << 20))
        time.sleep(0.01)
while True:
    time.sleep(3600)
"#;

fn cgroups_usable() -> bool {
    std::path::Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists()
        || std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|c| c.contains("memory"))
}

#[tokio::test(flavor = "multi_thread")]
async fn server_over_its_memory_limit_is_killed_and_reported() {
    assert!(
        cgroups_usable(),
        "this test needs a cgroup memory controller under /sys/fs/cgroup"
    );
    let scripts = tempfile::tempdir().unwrap();
    let script = scripts.path().join("stand_in.py");
    std::fs::write(&script, STAND_IN).unwrap();
    let yaml = format!(
        r#"hub:
  config:
    JupyterHub:
      authenticator_class: dummy
    Authenticator:
      admin_users: [admin]
singleuser:
  cmd: [python3, {script}]
  profileList:
    - display_name: Hog
      slug: hog
      kubespawner_override:
        mem_limit: 100M
        environment: {{ALLOC: "1"}}
    - display_name: Calm
      slug: calm
      kubespawner_override:
        mem_limit: 200M
        cpu_limit: 0.5
"#,
        script = script.display()
    );
    let hub = TestHub::start(&yaml);
    let alice = Browser::new(&hub);
    alice.login("mem-alice", "x").await;
    let bob = Browser::new(&hub);
    bob.login("mem-bob", "x").await;

    let (status, body) = bob
        .call(
            Method::POST,
            "/hub/api/users/mem-bob/server",
            Some(json!({"profile": "calm"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let bob_pids = hub.server_pids("mem-bob");
    assert!(!bob_pids.is_empty());
    let (status, body) = alice
        .call(
            Method::POST,
            "/hub/api/users/mem-alice/server",
            Some(json!({"profile": "hog"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // The hub notices within its poll interval (10 s).
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let model = alice.user_model("mem-alice").await;
        if model["server"].is_null() && model["pending"].is_null() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "mem-alice's server was not stopped: {model}\n{}",
            hub.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let home = alice
        .client
        .get(alice.url("/hub/home"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        home.contains("killed: memory limit 100M reached"),
        "home page: {home}\nhub log: {}",
        hub.log()
    );
    // Admins see the reason in the stopped server's model (`state`, admin:server_state).
    let (_admin, token) = admin_token(&hub, None).await;
    let admin = TokenClient::new(&hub, &token);
    let (status, model) = admin
        .call(
            Method::GET,
            "/hub/api/users/mem-alice?include_stopped_servers=1",
            None,
        )
        .await;
    assert_eq!(status, 200, "{model}");
    let stopped = &model["servers"][""];
    assert_eq!(stopped["stopped"], true, "{model}");
    assert_eq!(
        stopped["state"]["failed_reason"], "killed: memory limit 100M reached",
        "{model}"
    );
    // Without admin:server_state (the owner), no state.
    let (_, own) = alice
        .call(
            Method::GET,
            "/hub/api/users/mem-alice?include_stopped_servers=1",
            None,
        )
        .await;
    assert!(own["servers"][""].get("state").is_none(), "{own}");
    // A running server's state shows its profile, choices and limits.
    let (status, model) = admin
        .call(Method::GET, "/hub/api/users/mem-bob", None)
        .await;
    assert_eq!(status, 200, "{model}");
    let profile = &model["servers"][""]["state"]["profile"];
    assert_eq!(profile["profile"], "calm", "{model}");
    assert_eq!(profile["limits"]["mem_limit"], 200u64 << 20, "{model}");
    assert_eq!(profile["limits"]["cpu_limit"], 0.5, "{model}");
    assert_eq!(model["servers"][""]["user_options"]["profile"], "calm");

    let log = std::fs::read_to_string(hub.data_dir().join("logs/mem-alice.log")).unwrap();
    assert!(log.contains("killed: memory limit 100M reached"), "{log}");
    assert!(hub.server_pids("mem-alice").is_empty());

    // Bob's server was not touched.
    let model = bob.user_model("mem-bob").await;
    assert_eq!(model["server"], "/user/mem-bob/", "{model}");
    assert_eq!(hub.server_pids("mem-bob"), bob_pids);
    let r = reqwest::get(hub.url("/user/mem-bob/")).await.unwrap();
    assert!(r.status().as_u16() < 500);
    // Its limits are in its cgroup and its environment.
    let groups = std::fs::read_to_string(format!("/proc/{}/cgroup", bob_pids[0])).unwrap();
    assert!(groups.contains("hubfleet/mem-bob"), "{groups}");
    let env = std::fs::read(format!("/proc/{}/environ", bob_pids[0])).unwrap();
    let env = String::from_utf8_lossy(&env);
    assert!(
        env.contains(&format!("MEM_LIMIT={}", 200u64 << 20)),
        "{env}"
    );
    assert!(env.contains("CPU_LIMIT=0.5"), "{env}");

    // Stopping removes the cgroup.
    let (status, _) = bob
        .call(Method::DELETE, "/hub/api/users/mem-bob/server", None)
        .await;
    assert!(status == 204 || status == 202);
    let leftover = std::fs::read_dir("/sys/fs/cgroup/memory/hubfleet")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("mem-bob"))
        })
        .unwrap_or(false);
    assert!(!leftover, "the cgroup of a stopped server is removed");
}

/// A stand-in server whose "kernel" (a child process) allocates past the server's limit.
const KERNEL_HOG: &str = r#"
import os, subprocess, sys, http.server
hog = "import time\nhog = []\ntime.sleep(1)\nwhile True:\n    hog.append(b'x' * (8 << 20))\n    time.sleep(0.01)\n"
subprocess.Popen([sys.executable, "-c", hog])
url = os.environ["JUPYTERHUB_SERVICE_URL"]
port = int(url.rsplit(":", 1)[1].split("/")[0])
http.server.HTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler).serve_forever()
"#;

/// Issue 13: a kernel killed at the memory limit, while the server runs on, leaves a line in
/// the server's log and shows in the admin view (`state.oom_kills`, `state.last_oom_kill`).
#[tokio::test(flavor = "multi_thread")]
async fn a_kernel_killed_at_the_memory_limit_is_reported_while_the_server_runs() {
    assert!(
        cgroups_usable(),
        "this test needs a cgroup memory controller under /sys/fs/cgroup"
    );
    let scripts = tempfile::tempdir().unwrap();
    let script = scripts.path().join("kernel_hog.py");
    std::fs::write(&script, KERNEL_HOG).unwrap();
    let hub = TestHub::start(&format!(
        "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n    Authenticator:\n      admin_users: [admin]\nsingleuser:\n  cmd: [python3, {}]\n  memory:\n    limit: 100M\n",
        script.display()
    ));
    let (_admin, token) = admin_token(&hub, None).await;
    let admin = TokenClient::new(&hub, &token);
    let user = Browser::new(&hub);
    user.login("oom-kai", "x").await;
    let (status, body) = user
        .call(Method::POST, "/hub/api/users/oom-kai/server", None)
        .await;
    assert_eq!(status, 201, "{body}");

    // The hub's poller (every 10 s) notices the kill.
    let deadline = Instant::now() + Duration::from_secs(40);
    let state = loop {
        let (status, model) = admin
            .call(Method::GET, "/hub/api/users/oom-kai", None)
            .await;
        assert_eq!(status, 200, "{model}");
        let server = &model["servers"][""];
        assert_eq!(server["ready"], true, "the server itself died: {model}");
        if server["state"]["oom_kills"].as_u64().unwrap_or(0) >= 1 {
            break server["state"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no memory kill noted: {model}\nhub log:\n{}",
            hub.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        state["last_oom_kill"]["message"],
        "a process of this server was killed: memory limit 100M reached",
        "{state}"
    );
    assert!(state["last_oom_kill"]["at"].is_string(), "{state}");
    let log = std::fs::read_to_string(hub.data_dir().join("logs/oom-kai.log")).unwrap();
    assert!(
        log.lines().any(|l| l.starts_with("[hubfleet] ")
            && l.ends_with("a process of this server was killed: memory limit 100M reached")),
        "{log}"
    );
    assert!(
        hub.log()
            .contains("a process of this server was killed: memory limit 100M reached"),
        "the hub's log says it too"
    );
    // The server runs on, and answers.
    let server_pid = state["pid"].as_i64().unwrap() as i32;
    assert!(hub.server_pids("oom-kai").contains(&server_pid));
    let r = reqwest::get(hub.url("/user/oom-kai/")).await.unwrap();
    assert!(r.status().as_u16() < 500, "{}", r.status());
    // Said once per kill, not at every poll.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let log = std::fs::read_to_string(hub.data_dir().join("logs/oom-kai.log")).unwrap();
    assert_eq!(log.matches("was killed: memory limit").count(), 1, "{log}");
    // A stop after such a kill is a stop, not a failure.
    let (status, _) = user
        .call(Method::DELETE, "/hub/api/users/oom-kai/server", None)
        .await;
    assert!(status == 204 || status == 202);
}

/// The directories of the servers' cgroups whose names start with `prefix` (v1: memory and cpu
/// controllers; v2: the one group).
fn cgroups_named(prefix: &str) -> Vec<std::path::PathBuf> {
    [
        "/sys/fs/cgroup/hubfleet",
        "/sys/fs/cgroup/memory/hubfleet",
        "/sys/fs/cgroup/cpu/hubfleet",
    ]
    .iter()
    .filter_map(|parent| std::fs::read_dir(parent).ok())
    .flat_map(|entries| entries.flatten())
    .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
    .map(|e| e.path())
    .collect()
}

/// Where this machine keeps the servers' memory groups.
fn memory_parent() -> std::path::PathBuf {
    if std::path::Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists() {
        "/sys/fs/cgroup/memory/hubfleet".into()
    } else {
        "/sys/fs/cgroup/hubfleet".into()
    }
}

/// Issue 13: cgroups left by a hub that was killed outright are removed at the next start; a
/// live server's group stays (it is re-adopted), and so does a group made a moment ago (a start
/// in progress, maybe another hub's).
#[tokio::test(flavor = "multi_thread")]
async fn cgroups_left_by_a_killed_hub_are_removed_at_start() {
    assert!(
        cgroups_usable(),
        "this test needs a cgroup memory controller under /sys/fs/cgroup"
    );
    let tag = std::process::id();
    let (live, dead) = (format!("cg-live{tag}"), format!("cg-dead{tag}"));
    let mut hub = TestHub::start(&format!(
        "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\nsingleuser:\n  cmd: {}\n  memory:\n    limit: 200M\n",
        common::fake_singleuser()
    ));
    for user in [&live, &dead] {
        let browser = Browser::new(&hub);
        browser.login(user, "x").await;
        let (status, body) = browser
            .call(Method::POST, &format!("/hub/api/users/{user}/server"), None)
            .await;
        assert_eq!(status, 201, "{body}");
        assert!(
            !cgroups_named(&format!("{user}--")).is_empty(),
            "no cgroup for {user}"
        );
    }
    // A group a killed hub made for a start it never recorded (old), and one a start is about to
    // use (new).
    let parent = memory_parent();
    let orphan = parent.join(format!("cg-orphan{tag}----1"));
    let fresh = parent.join(format!("cg-fresh{tag}----2"));
    std::fs::create_dir(&orphan).unwrap();
    std::fs::create_dir(&fresh).unwrap();
    let aged = Command::new("touch")
        .args(["-d", "5 minutes ago"])
        .arg(&orphan)
        .status()
        .unwrap();
    assert!(aged.success());

    // The hub dies outright; dead's server dies while it is down.
    hub.kill();
    for pid in hub.server_pids(&dead) {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !hub.server_pids(&dead).is_empty() {
        assert!(Instant::now() < deadline, "{dead}'s server did not die");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    hub.launch();

    assert!(
        cgroups_named(&format!("{dead}--")).is_empty(),
        "{dead}'s cgroup stayed"
    );
    assert!(
        !orphan.exists(),
        "the orphaned cgroup stayed:\n{}",
        hub.log()
    );
    assert!(fresh.exists(), "a cgroup made a moment ago was removed");
    let live_groups = cgroups_named(&format!("{live}--"));
    assert!(
        !live_groups.is_empty(),
        "the live server's cgroup was removed"
    );
    let pids = hub.server_pids(&live);
    assert!(!pids.is_empty());
    let groups = std::fs::read_to_string(format!("/proc/{}/cgroup", pids[0])).unwrap();
    assert!(groups.contains(&format!("hubfleet/{live}--")), "{groups}");
    let browser = Browser::new(&hub);
    browser.login(&live, "x").await;
    assert_eq!(
        browser.user_model(&live).await["server"],
        format!("/user/{live}/"),
        "re-adopted"
    );
    std::fs::remove_dir(&fresh).unwrap();
    // Stopped, the live server's group goes too (nothing left on the machine).
    let (status, _) = browser
        .call(
            Method::DELETE,
            &format!("/hub/api/users/{live}/server"),
            None,
        )
        .await;
    assert!(status == 204 || status == 202);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cgroups_named(&format!("{live}--")).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the stopped server's cgroup stayed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
