//! Limits that protect the hub, through the real binary: upstream's spawn limits on the pages
//! (`concurrent_spawn_limit`, `active_server_limit`: 429 with upstream's messages, and
//! `Retry-After` when throttled) and the per-user API rate limit (`hubfleet.api_rate_limit`).
//! The API side of the spawn limits is compared with upstream JupyterHub in
//! `metrics_upstream.rs`.

mod common;

use std::time::{Duration, Instant};

use common::{admin_token, Browser, TestHub, TokenClient};

#[path = "support/api_load.rs"]
mod api_load;
use reqwest::Method;
use serde_json::json;

/// A plain HTTP server on the hub's port; `slow`'s takes 3 s to listen.
const SERVER: &str = r#"[/bin/sh, -c, 'port=${JUPYTERHUB_SERVICE_URL##*:}; port=${port%%/*}; [ "$JUPYTERHUB_USER" = slow ] && sleep 3; exec python3 -m http.server --bind 127.0.0.1 $port']"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_pages_answer_429_over_the_limits() {
    // Upstream's spellings, under hub.config.JupyterHub.
    let hub = TestHub::start(&format!(
        "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n      \
         concurrent_spawn_limit: 1\n      active_server_limit: 2\n    Authenticator:\n      \
         admin_users: [admin]\nsingleuser:\n  cmd: {SERVER}\n  startTimeout: 20\ncull:\n  enabled: false\n"
    ));
    let slow = Browser::new(&hub);
    slow.login("slow", "x").await;
    let alice = Browser::new(&hub);
    alice.login("alice", "x").await;
    let bob = Browser::new(&hub);
    bob.login("bob", "x").await;

    // While `slow` starts, the only place is taken.
    let started = slow
        .no_redirects()
        .get(slow.url("/hub/spawn"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 302);
    let throttled = alice
        .no_redirects()
        .get(alice.url("/hub/spawn"))
        .send()
        .await
        .unwrap();
    assert_eq!(throttled.status(), 429, "{}", hub.log());
    let retry: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((30..=60).contains(&retry), "Retry-After: {retry}");
    let page = throttled.text().await.unwrap();
    assert!(
        page.contains("Too many users trying to log in right now. Try again in"),
        "{page}"
    );
    assert!(alice.user_model("alice").await["pending"].is_null());

    // Once it is up, there is room for one more server, not two.
    slow.wait_ready("slow", Duration::from_secs(30)).await;
    let model = alice.start_server("alice", Duration::from_secs(30)).await;
    assert!(!model["server"].is_null(), "{model}");
    let over = bob
        .no_redirects()
        .get(bob.url("/hub/spawn"))
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), 429);
    assert!(over.headers().get("retry-after").is_none());
    let page = over.text().await.unwrap();
    assert!(
        page.contains("Active user limit exceeded. Try again in a few minutes."),
        "{page}"
    );

    // Stopping one makes room again.
    let (status, _) = alice
        .call(Method::DELETE, "/hub/api/users/alice/server", None)
        .await;
    assert!(status == 202 || status == 204, "{status}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !alice.user_model("alice").await["server"].is_null() {
        assert!(Instant::now() < deadline, "alice's server did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let model = bob.start_server("bob", Duration::from_secs(30)).await;
    assert!(!model["server"].is_null(), "{model}\n{}", hub.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_requests_of_a_user_are_rate_limited() {
    let hub = TestHub::start_with(
        "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n    \
         Authenticator:\n      admin_users: [admin]\n  services:\n    robot:\n      \
         apiToken: robot-token-0123456789abcdef\n      admin: true\ncull:\n  enabled: false\n",
        "  api_rate_limit:\n    per_second: 1\n    burst: 5\n",
        &common::python_env(),
    );
    let alice = Browser::new(&hub);
    alice.login("alice", "x").await;
    let (status, token) = alice
        .call(
            Method::POST,
            "/hub/api/users/alice/tokens",
            Some(json!({ "note": "script" })),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    let script = TokenClient::new(&hub, token["token"].as_str().unwrap());

    // The burst, then 429 with Retry-After: her token and her browser share one bucket.
    let mut refused = None;
    for _ in 0..10 {
        let response = script
            .request(Method::GET, "/hub/api/user")
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            refused = Some(response);
            break;
        }
        assert_eq!(response.status(), 200);
    }
    let refused = refused.expect("a user's requests beyond the burst are refused");
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["status"], 429);
    assert_eq!(
        body["message"],
        "Too many API requests. Try again in 1 seconds."
    );
    assert_eq!(alice.api(Method::GET, "/hub/api/user").await.status(), 429);

    // Another user, admins and services have buckets of their own or none.
    let bob = Browser::new(&hub);
    bob.login("bob", "x").await;
    assert_eq!(bob.api(Method::GET, "/hub/api/user").await.status(), 200);
    let (_admin, admin_secret) = admin_token(&hub, None).await;
    let admin = TokenClient::new(&hub, &admin_secret);
    let robot = TokenClient::new(&hub, "robot-token-0123456789abcdef");
    for _ in 0..20 {
        let (status, _) = admin.call(Method::GET, "/hub/api/users/alice", None).await;
        assert_eq!(status, 200);
        let (status, _) = robot.call(Method::GET, "/hub/api/users/alice", None).await;
        assert_eq!(status, 200);
    }

    // The bucket refills at `per_second`.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _) = script.call(Method::GET, "/hub/api/user", None).await;
    assert_eq!(status, 200);
}

/// A user's server posts its activity with the token the hub gave it: the hub's own machinery,
/// not the user's requests, so the user's bucket does not limit it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_own_token_is_not_rate_limited() {
    let (hub, http, base) = alice_running_on_a_rate_limited_hub(&api_load::tiny_server_cmd()).await;
    // Each request to the tiny server makes it post activity to the hub first.
    for _ in 0..20 {
        if let Err(e) = api_load::server_answers(&http, &base, "alice").await {
            panic!("{e}\n{}", hub.log());
        }
    }
}

/// The token the rate limit does not count can do nothing but its server's own work: a user
/// who reads it from their server's environment gets no unthrottled access to anything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_own_token_grants_nothing_beyond_its_server() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("server-token");
    let tiny = api_load::tiny_server_cmd();
    let tiny_script = tiny.trim_start_matches("[python3, ").trim_end_matches(']');
    let cmd = format!(
        "[sh, -c, 'printenv JUPYTERHUB_API_TOKEN > {}; exec python3 {}', sh]",
        token_file.display(),
        tiny_script
    );
    let (hub, _http, _base) = alice_running_on_a_rate_limited_hub(&cmd).await;
    let token = std::fs::read_to_string(&token_file).unwrap();
    let server = TokenClient::new(&hub, token.trim());
    for (method, path) in [
        (Method::GET, "/hub/api/users/bob"),
        (Method::GET, "/hub/api/users"),
        (Method::POST, "/hub/api/users/alice/tokens"),
        (Method::POST, "/hub/api/users/bob/activity"),
        (Method::DELETE, "/hub/api/users/alice/server"),
    ] {
        let (status, body) = server.call(method.clone(), path, None).await;
        // 404 where upstream hides whether the user exists
        assert!(
            status == 403 || status == 404,
            "{method} {path} with the server's token: {status} {body}"
        );
    }
}

/// A hub limiting each user to 1 API request a second (burst 5), whose servers run `cmd`
/// (YAML), with alice's server running; the hub, a client and the hub's URL.
async fn alice_running_on_a_rate_limited_hub(cmd: &str) -> (TestHub, reqwest::Client, String) {
    let hub = TestHub::start_with(
        &format!(
            "hub:\n  services:\n    ops:\n      admin: true\n      apiToken: {}\n  config:\n    JupyterHub:\n      authenticator_class: dummy\nsingleuser:\n  cmd: {cmd}\ncull:\n  enabled: false\n",
            api_load::TOKEN,
        ),
        "  api_rate_limit:\n    per_second: 1\n    burst: 5\n",
        &common::python_env(),
    );
    let http = api_load::client();
    let base = hub.direct_url("");
    let (status, body) = api_load::call(&http, &base, Method::POST, "/hub/api/users/alice", None)
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    api_load::start_and_wait(&http, &base, "alice")
        .await
        .unwrap();
    (hub, http, base)
}
