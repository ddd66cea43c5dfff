//! Memory limits with cgroups, against the real binary: a server (a stand-in Python program)
//! that allocates past its profile's limit is killed, and the hub says so on the home page and
//! in the server's log; another user's server keeps running.
//!
//! Needs a writable cgroup hierarchy (v1 memory controller or v2), as on the CI machines.

mod common;

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
