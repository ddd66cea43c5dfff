//! Idle culling: the real `jupyterhub-idle-culler` (a managed service speaking the
//! REST API, as z2jh runs it) and the built-in culler, with the same config.

mod common;

use std::time::{Duration, Instant};

use common::{fake_singleuser, python_env, Browser, TestHub};

fn culling_hub(culler: &str) -> TestHub {
    TestHub::start_with(
        &format!(
            "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\nsingleuser:\n  cmd: {}\ncull:\n  enabled: true\n  timeout: 3\n  every: 2\n",
            fake_singleuser()
        ),
        &format!("  culler: {culler}\n"),
        &python_env(),
    )
}

/// Start a server for `user` and wait until the culler stops it.
async fn culled(hub: &TestHub, user: &str) -> Duration {
    let browser = Browser::new(hub);
    browser.login(user, "x").await;
    let model = browser.start_server(user, Duration::from_secs(30)).await;
    assert_eq!(
        model["server"],
        format!("/user/{user}/"),
        "log:\n{}",
        hub.log()
    );
    let ready = Instant::now();
    loop {
        let model = browser.user_model(user).await;
        if model["server"].is_null() && model["pending"].is_null() {
            break;
        }
        assert!(
            ready.elapsed() < Duration::from_secs(60),
            "not culled within 60 s; hub log:\n{}\nculler log:\n{}",
            hub.log(),
            std::fs::read_to_string(hub.data_dir().join("logs/service-idle-culler.log"))
                .unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        hub.server_pids(user).is_empty(),
        "the server process is gone"
    );
    ready.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jupyterhub_idle_culler_culls_idle_servers() {
    let hub = culling_hub("idle-culler");
    let after = culled(&hub, "sleepy").await;
    assert!(
        after >= Duration::from_secs(2),
        "culled only after the timeout: {after:?}"
    );
    // The culler's own calls were answered 2xx: it lists ready users and stops the server.
    let log = hub.log();
    let api_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("/hub/api/users"))
        .collect();
    assert!(
        api_lines
            .iter()
            .any(|l| l.contains("GET /hub/api/users") && l.contains("status=200")),
        "no listing by the culler in the hub log:\n{log}"
    );
    assert!(
        api_lines
            .iter()
            .any(|l| l.contains("DELETE /hub/api/users/sleepy/server") && l.contains("status=204")),
        "no stop by the culler in the hub log:\n{log}"
    );
    assert!(
        !api_lines
            .iter()
            .any(|l| l.contains("status=4") || l.contains("status=5")),
        "the culler got errors:\n{}",
        api_lines.join("\n")
    );
    let culler_log =
        std::fs::read_to_string(hub.data_dir().join("logs/service-idle-culler.log")).unwrap();
    assert!(
        culler_log.contains("sleepy"),
        "the culler names the server it culled:\n{culler_log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_culler_culls_idle_servers() {
    let hub = culling_hub("builtin");
    let after = culled(&hub, "drowsy").await;
    assert!(
        after >= Duration::from_secs(2),
        "culled only after the timeout: {after:?}"
    );
    assert!(hub.log().contains("culling idle server"), "{}", hub.log());
    assert!(!hub.data_dir().join("logs/service-idle-culler.log").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_servers_are_not_culled() {
    let hub = culling_hub("builtin");
    let browser = Browser::new(&hub);
    browser.login("busy", "x").await;
    browser.start_server("busy", Duration::from_secs(30)).await;
    // Traffic through the proxy counts as activity.
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        browser
            .client
            .get(browser.url("/user/busy/"))
            .send()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let model = browser.user_model("busy").await;
    assert_eq!(
        model["server"],
        "/user/busy/",
        "an active server survives: {}",
        hub.log()
    );
}

/// A hub killed outright cannot stop its managed services, so its culler lives on; the next
/// hub on the same data ends that copy instead of running a second one beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_hub_ends_the_culler_a_killed_hub_left() {
    let mut hub = culling_hub("idle-culler");
    let data = hub.data_dir();
    let culler = |data: &std::path::Path| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(pid) = common::service_pids(data).first() {
                return *pid;
            }
            assert!(
                Instant::now() < deadline,
                "no live culler in services/*.pid"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let first = culler(&data);
    hub.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A zombie (killed, not yet reaped by init) counts as gone.
    let alive = |pid: i32| common::live_process_start(pid).is_some();
    assert!(alive(first), "the culler outlives a hub killed outright");

    hub.launch();
    let deadline = Instant::now() + Duration::from_secs(15);
    while alive(first) {
        assert!(
            Instant::now() < deadline,
            "the restarted hub left the old culler {first} running; log:\n{}",
            hub.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = culler(&data);
    assert_ne!(first, second);
    assert!(hub.log().contains("left running by a previous hub process"));
}

/// A config reload that leaves `cull` alone (here a new announcement, by SIGHUP) keeps the
/// culler service's role: the culler still culls after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_culler_keeps_its_role_through_a_config_reload() {
    let hub = culling_hub("idle-culler");
    // serve takes reloads (and SIGHUP) once it has written what it runs with.
    let snapshot = hub.data_dir().join("effective-config.yaml");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !snapshot.exists() {
        assert!(Instant::now() < deadline, "no {}", snapshot.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = std::fs::read_to_string(&hub.config).unwrap();
    let edited = text.replacen(
        "hub:\n",
        "hub:\n  templateVars:\n    announcement: Reloaded\n",
        1,
    );
    assert_ne!(text, edited);
    std::fs::write(&hub.config, edited).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(hub.pid().unwrap() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !hub.log().contains("config reloaded") {
        assert!(Instant::now() < deadline, "no reload; log:\n{}", hub.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    culled(&hub, "after-reload").await;
}
