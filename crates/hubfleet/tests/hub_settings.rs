//! The hub keys a pasted z2jh file brings, through the real binary, with upstream's semantics:
//! `hub.cookieSecret` (a change logs everyone out), `hub.extraEnv`, `load_groups`,
//! `redirectToServer`, `shutdownOnLogout`, `authenticatePrometheus`.

mod common;

use std::time::{Duration, Instant};

use common::{admin_token, Browser, TestHub, TokenClient};
use reqwest::Method;
use serde_json::json;

const DUMMY: &str = "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n    Authenticator:\n      admin_users: [admin]\n";
const SECRET_A: &str = "8c5d2f6a0b1e4c7d9f3a5b6c8d0e2f4a6b8c0d2e4f6a8b0c2d4e6f8a0b2c4d6e";
const SECRET_B: &str = "1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a7988";

/// A stand-in server that writes its environment to `~/server-env`, then serves.
const ENV_DUMPING_SERVER: &str = "[/bin/sh, -c, 'env > \"$HOME/server-env\"; port=${JUPYTERHUB_SERVICE_URL##*:}; port=${port%%/*}; exec python3 -m http.server --bind 127.0.0.1 $port']";

async fn status(browser: &Browser, path: &str) -> u16 {
    browser.api(Method::GET, path).await.status().as_u16()
}

async fn location(browser: &Browser, path: &str) -> String {
    let response = browser
        .no_redirects()
        .get(browser.url(path))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302, "{path}");
    response.headers()["location"].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_cookie_secret_logs_everyone_out() {
    let mut hub = TestHub::start(&format!("{DUMMY}  cookieSecret: {SECRET_A}\n"));
    let alice = Browser::new(&hub);
    alice.login("alice", "x").await;
    assert_eq!(status(&alice, "/hub/api/user").await, 200);
    // Forms carry tokens keyed by the secret; they work.
    let (code, _) = alice
        .call(
            Method::POST,
            "/hub/api/users/alice/tokens",
            Some(json!({"note": "t"})),
        )
        .await;
    assert_eq!(code, 201);

    // A restart with the same secret keeps everyone logged in.
    hub.kill();
    hub.launch();
    assert_eq!(status(&alice, "/hub/api/user").await, 200);
    assert!(!hub.log().contains("hub.cookieSecret changed"));

    // Another secret: every login session has ended.
    let config = std::fs::read_to_string(&hub.config).unwrap();
    std::fs::write(&hub.config, config.replace(SECRET_A, SECRET_B)).unwrap();
    hub.kill();
    hub.launch();
    assert_eq!(status(&alice, "/hub/api/user").await, 403);
    assert!(location(&alice, "/hub/home")
        .await
        .starts_with("/hub/login"));
    let log = hub.log();
    assert!(
        log.contains("hub.cookieSecret changed since the last start: every login session has ended, everyone logs in again")
            && log.contains("sessions=1"),
        "{log}"
    );
    // Logging in again works, with the new secret.
    alice.login("alice", "x").await;
    assert_eq!(status(&alice, "/hub/api/user").await, 200);
    let (code, _) = alice
        .call(
            Method::POST,
            "/hub/api/users/alice/tokens",
            Some(json!({"note": "t"})),
        )
        .await;
    assert_eq!(code, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_extra_env_is_the_hubs_environment() {
    let crypt_key = "0".repeat(64);
    let hub = TestHub::start_with_env(
        &format!(
            "{DUMMY}      enable_auth_state: true\n  extraEnv:\n    JUPYTERHUB_CRYPT_KEY: \"{crypt_key}\"\n    LANG: xx_TEST.UTF-8\n    OAUTH_EXTRA: only-for-extraConfig\nsingleuser:\n  cmd: {ENV_DUMPING_SERVER}\n"
        ),
        "",
        &common::python_env(),
        // The key comes from hub.extraEnv alone.
        &[("JUPYTERHUB_CRYPT_KEY", "")],
    );
    let log = hub.log();
    assert!(
        log.contains("auth_state is encrypted with JUPYTERHUB_CRYPT_KEY"),
        "{log}"
    );
    assert!(
        log.contains("`OAUTH_EXTRA` has no effect"),
        "no warning about the unused variable:\n{log}"
    );

    let alice = Browser::new(&hub);
    alice.login("alice", "x").await;
    let model = alice.start_server("alice", Duration::from_secs(30)).await;
    assert!(!model["server"].is_null(), "{model}");
    let env = std::fs::read_to_string(hub.data_dir().join("homes/alice/server-env")).unwrap();
    // Passed on as the hub's own LANG would be (upstream's env_keep); the rest is not.
    assert!(env.lines().any(|l| l == "LANG=xx_TEST.UTF-8"), "{env}");
    assert!(
        !env.contains("OAUTH_EXTRA") && !env.contains("JUPYTERHUB_CRYPT_KEY"),
        "{env}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_groups_makes_groups_and_only_adds() {
    let mut hub = TestHub::start(
        "hub:
  config:
    Authenticator:
      admin_users: [admin]
    JupyterHub:
      authenticator_class: dummy
      load_groups:
        students:
          users: [Alice, bob]
          properties: {course: intro}
        staff: [carol]
",
    );
    let (_admin, token) = admin_token(&hub, None).await;
    let api = TokenClient::new(&hub, &token);
    let (code, students) = api
        .call(Method::GET, "/hub/api/groups/students", None)
        .await;
    assert_eq!(code, 200, "{students}");
    assert_eq!(students["users"], json!(["alice", "bob"]));
    assert_eq!(students["properties"], json!({"course": "intro"}));
    let (_, staff) = api.call(Method::GET, "/hub/api/groups/staff", None).await;
    assert_eq!(staff["users"], json!(["carol"]));
    let (code, bob) = api.call(Method::GET, "/hub/api/users/bob", None).await;
    assert_eq!(code, 200);
    assert_eq!(bob["groups"], json!(["students"]));
    assert!(hub
        .log()
        .contains("list form `group: [users]` is deprecated"));

    // Someone added through the API stays; someone left out of the file stays; new properties
    // replace the old ones.
    let (code, _) = api.call(Method::POST, "/hub/api/users/dave", None).await;
    assert_eq!(code, 201);
    let (code, _) = api
        .call(
            Method::POST,
            "/hub/api/groups/students/users",
            Some(json!({"users": ["dave"]})),
        )
        .await;
    assert_eq!(code, 200);
    let config = std::fs::read_to_string(&hub.config).unwrap();
    let config = config
        .replace("users: [Alice, bob]", "users: [alice]")
        .replace("{course: intro}", "{course: advanced}");
    std::fs::write(&hub.config, config).unwrap();
    hub.kill();
    hub.launch();
    let api = TokenClient::new(&hub, &token);
    let (_, students) = api
        .call(Method::GET, "/hub/api/groups/students", None)
        .await;
    assert_eq!(students["users"], json!(["alice", "bob", "dave"]));
    assert_eq!(students["properties"], json!({"course": "advanced"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_to_server_sends_people_to_their_server() {
    let hub = TestHub::start(&format!(
        "{DUMMY}  redirectToServer: true\nsingleuser:\n  cmd: {}\n",
        common::fake_singleuser()
    ));
    let alice = Browser::new(&hub);
    // Not running: to its start page.
    let response = alice.login_response("alice", "x", None).await;
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()["location"], "/hub/spawn");
    alice.learn_xsrf().await;
    assert_eq!(location(&alice, "/hub/").await, "/hub/spawn");
    // A page asked for still wins.
    let bob = Browser::new(&hub);
    let response = bob.login_response("bob", "x", Some("/hub/token")).await;
    assert_eq!(response.headers()["location"], "/hub/token");

    // Running: to the server.
    let model = alice.start_server("alice", Duration::from_secs(30)).await;
    assert!(!model["server"].is_null(), "{model}");
    assert_eq!(location(&alice, "/hub/").await, "/user/alice/");
    assert_eq!(location(&alice, "/hub/login").await, "/user/alice/");
    // Metrics need a token by default.
    let anonymous = reqwest::get(hub.url("/hub/metrics")).await.unwrap();
    assert_eq!(anonymous.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_on_logout_stops_the_users_servers() {
    let hub = TestHub::start(&format!(
        "{DUMMY}  shutdownOnLogout: true\n  authenticatePrometheus: false\n  allowNamedServers: true\nsingleuser:\n  cmd: {}\n",
        common::fake_singleuser()
    ));
    let alice = Browser::new(&hub);
    alice.login("alice", "x").await;
    let model = alice.start_server("alice", Duration::from_secs(30)).await;
    assert!(!model["server"].is_null(), "{model}");
    let (code, _) = alice
        .call(Method::POST, "/hub/api/users/alice/servers/second", None)
        .await;
    assert!(code == 201 || code == 202, "{code}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while alice.user_model("alice").await["servers"]["second"]["ready"] != json!(true) {
        assert!(Instant::now() < deadline, "the named server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!hub.server_pids("alice").is_empty());

    // Metrics answer without a token (authenticatePrometheus: false).
    let metrics = reqwest::get(hub.url("/hub/metrics")).await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics
        .text()
        .await
        .unwrap()
        .contains("jupyterhub_running_servers 2"));

    let response = alice
        .no_redirects()
        .get(alice.url("/hub/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    // Both servers are stopped.
    let (_admin, token) = admin_token(&hub, None).await;
    let api = TokenClient::new(&hub, &token);
    let (_, alice_model) = api.call(Method::GET, "/hub/api/users/alice", None).await;
    assert_eq!(alice_model["servers"], json!({}), "{alice_model}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !hub.server_pids("alice").is_empty() {
        assert!(Instant::now() < deadline, "server processes are left");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(hub.log().contains("stopping server at logout"));
}
