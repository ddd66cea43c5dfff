//! Findings of the security review, driven through the real binary: every password check
//! (login form, token API, change-password page) shares the login lockout; over-long user
//! names are refused at once and kept out of the log; `admin:users` cannot make its holder
//! an admin through a name in `admin_users`.

mod common;

use std::time::{Duration, Instant};

use common::{admin_token, status_json, Browser, TestHub, TokenClient};
use reqwest::Method;
use serde_json::json;

/// A hub with native accounts and the given `hubfleet.auth` limiter keys.
fn native_hub(auth_keys: &str) -> TestHub {
    TestHub::start_with(
        "hub:\n  config:\n    JupyterHub:\n      authenticator_class: native\n",
        &format!("  auth:\n{auth_keys}"),
        &common::python_env(),
    )
}

#[path = "support/users_cli.rs"]
mod users_cli;

fn add_user(hub: &TestHub, name: &str, password: &str) {
    users_cli::add_user(&hub.config, name, password);
}

/// `POST /hub/api/users/{name}/tokens` with `{"auth": {...}}` and no credentials: status,
/// `Retry-After` and the JSON body.
async fn token_by_password(
    hub: &TestHub,
    name: &str,
    password: &str,
) -> (u16, Option<String>, serde_json::Value) {
    // The path's user is the login's, unless that cannot be a URL (an over-long name).
    let path_name = if name.len() > 255 { "someone" } else { name };
    let response = reqwest::Client::new()
        .post(hub.url(&format!("/hub/api/users/{path_name}/tokens")))
        .json(&json!({ "auth": { "username": name, "password": password } }))
        .send()
        .await
        .unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let (status, body) = status_json(response).await;
    (status, retry_after, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_api_logins_share_the_login_lockout() {
    let hub = native_hub(
        "    max_failed_logins: 3\n    max_failed_logins_per_ip: 0\n    lockout_seconds: 60\n",
    );
    for name in ["dora", "eve", "fay"] {
        add_user(&hub, name, &format!("{name}-password-1"));
    }

    // The login form locks dora out…
    let browser = Browser::new(&hub);
    for _ in 0..3 {
        let r = browser.login_response("dora", "wrong", None).await;
        assert_eq!(r.status(), 403);
    }
    assert_eq!(
        browser
            .login_response("dora", "dora-password-1", None)
            .await
            .status(),
        429
    );
    // …and the token API honours it: guesses are not even tried, nor is the right password.
    for _ in 0..10 {
        let (status, _, body) = token_by_password(&hub, "dora", "guess").await;
        assert_eq!(status, 429, "{body}");
    }
    let (status, retry_after, body) = token_by_password(&hub, "dora", "dora-password-1").await;
    assert_eq!(status, 429, "the right password while locked out: {body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("Too many failed logins"), "{message}");
    assert!(message.contains("Try again in"), "{message}");
    let retry_after: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");

    // Failures through the API count, each answered later than the last, and lock the
    // form too.
    let started = Instant::now();
    for _ in 0..3 {
        let (status, _, body) = token_by_password(&hub, "eve", "wrong").await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["message"], "Invalid username or password");
    }
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(
        token_by_password(&hub, "eve", "eve-password-1").await.0,
        429
    );
    assert_eq!(
        Browser::new(&hub)
            .login_response("eve", "eve-password-1", None)
            .await
            .status(),
        429
    );

    // A success clears the count.
    for _ in 0..2 {
        assert_eq!(token_by_password(&hub, "fay", "wrong").await.0, 403);
    }
    let (status, _, token) = token_by_password(&hub, "fay", "fay-password-1").await;
    assert_eq!(status, 201, "{token}");
    for _ in 0..2 {
        assert_eq!(token_by_password(&hub, "fay", "wrong").await.0, 403);
    }
    assert_eq!(
        token_by_password(&hub, "fay", "fay-password-1").await.0,
        201
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_password_shares_the_login_lockout() {
    let hub = native_hub(
        "    max_failed_logins: 3\n    max_failed_logins_per_ip: 0\n    lockout_seconds: 60\n",
    );
    add_user(&hub, "gus", "gus-password-1");
    let gus = Browser::new(&hub);
    gus.login("gus", "gus-password-1").await;
    let page = gus
        .client
        .get(hub.url("/hub/change-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let change = |old: &'static str| gus.change_password(old, "gus-password-2");
    // Someone with gus's session guesses his password…
    for _ in 0..3 {
        let (status, page) = change("guess").await;
        assert_eq!(status, 400);
        assert!(page.contains("current password is not right"), "{page}");
    }
    // …and is stopped, even with the right one; the login form is locked for gus too.
    let (status, page) = change("gus-password-1").await;
    assert_eq!(status, 429, "{page}");
    assert!(page.contains("Too many failed logins"), "{page}");
    assert_eq!(
        Browser::new(&hub)
            .login_response("gus", "gus-password-1", None)
            .await
            .status(),
        429
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_user_names_are_refused_at_once_and_kept_out_of_the_log() {
    let hub = native_hub("    max_failed_logins: 5\n    max_failed_logins_per_ip: 0\n");
    let long_name = format!("longname{}", "x".repeat(300_000));
    let log_before = hub.log().len();

    let browser = Browser::new(&hub);
    for _ in 0..10 {
        let started = Instant::now();
        let r = browser.login_response(&long_name, "pw", None).await;
        assert_eq!(r.status(), 400);
        let page = r.text().await.unwrap();
        assert!(page.contains("user name is too long"), "{}", &page[..2000]);
        assert!(page.len() < 100_000, "the name is not shown again");
        assert!(started.elapsed() < Duration::from_secs(1));

        let started = Instant::now();
        let (status, _, body) = token_by_password(&hub, &long_name, "pw").await;
        assert_eq!(status, 400);
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("user name is too long"), "{message}");
        assert!(message.contains("at most 255"), "{message}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    // A name that tries to forge a log line fails like any wrong login, escaped in the log.
    let r = browser
        .login_response("eve\nFORGED hubfleet line", "pw", None)
        .await;
    assert_eq!(r.status(), 403);

    let log = hub.log();
    let written = &log[log_before..];
    assert!(
        !written.contains(&"x".repeat(100)),
        "the long name is in the log ({} bytes written)",
        written.len()
    );
    assert!(
        written.len() < 20_000,
        "{} bytes of log for 20 refusals",
        written.len()
    );
    assert!(written.contains("user name too long"), "{written}");
    assert!(written.contains("…(300008 chars)"), "{written}");
    assert!(
        !written.lines().any(|l| l.starts_with("FORGED")),
        "{written}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_users_scope_cannot_take_an_admin_name() {
    let mut hub = TestHub::start(
        "hub:
  config:
    JupyterHub:
      authenticator_class: dummy
    Authenticator:
      admin_users: [admin, alice]
  loadRoles:
    user-managers:
      users: [umgr]
      scopes: [admin:users]
",
    );
    let (_admin_browser, admin_secret) = admin_token(&hub, None).await;
    let admin = TokenClient::new(&hub, &admin_secret);
    for name in ["alice", "umgr", "bob"] {
        Browser::new(&hub).login(name, "x").await;
    }
    let umgr_browser = Browser::new(&hub);
    umgr_browser.login("umgr", "x").await;
    let (status, token) = umgr_browser
        .call(
            Method::POST,
            "/hub/api/users/umgr/tokens",
            Some(json!({ "note": "umgr" })),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    let umgr = TokenClient::new(&hub, token["token"].as_str().unwrap());

    // The reproduction: delete the configured admin, take the name…
    let (status, body) = umgr
        .call(Method::DELETE, "/hub/api/users/alice", None)
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("Only admins"),
        "{body}"
    );
    // (an admin may delete alice; then the name is free)
    let (status, body) = admin
        .call(Method::DELETE, "/hub/api/users/alice", None)
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = umgr
        .call(
            Method::PATCH,
            "/hub/api/users/umgr",
            Some(json!({ "name": "alice" })),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("admin_users"),
        "{body}"
    );
    // …or create a user by that name and mint its token, one user or several at once.
    let (status, body) = umgr.call(Method::POST, "/hub/api/users/alice", None).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = umgr
        .call(
            Method::POST,
            "/hub/api/users",
            Some(json!({ "usernames": ["carl", "alice"] })),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = admin.call(Method::GET, "/hub/api/users/carl", None).await;
    assert_eq!(status, 404, "nothing created");
    // Other admins, and the admin flag, are out of reach as well.
    let (status, body) = umgr
        .call(
            Method::PATCH,
            "/hub/api/users/admin",
            Some(json!({ "name": "admin2" })),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = umgr
        .call(
            Method::PATCH,
            "/hub/api/users/bob",
            Some(json!({ "admin": true })),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("grant admin"),
        "{body}"
    );
    // What admin:users is for still works.
    let (status, body) = umgr
        .call(
            Method::PATCH,
            "/hub/api/users/bob",
            Some(json!({ "name": "robert" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = umgr.call(Method::POST, "/hub/api/users/carl", None).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = umgr.call(Method::DELETE, "/hub/api/users/carl", None).await;
    assert_eq!(status, 204, "{body}");

    // After a restart, umgr's token is still umgr's, not an admin's.
    hub.kill();
    hub.launch();
    let (status, me) = umgr.call(Method::GET, "/hub/api/user", None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["name"], "umgr");
    assert_eq!(me["admin"], false);
    let (status, alice) = admin.call(Method::GET, "/hub/api/users/alice", None).await;
    assert_eq!(status, 200, "{alice}");
    assert_eq!(alice["admin"], true);
}

/// Issue 13, hole 1: with `shared-password`, the workshop's user password opened the account of
/// an `admin_users` name (and cleared its admin flag, so the instructor's open session got 403).
/// An admin name, and an account made admin in the hub, log in only with the admin password;
/// a try with the user password changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_user_password_never_opens_an_admin_account() {
    const USER_PASSWORD: &str = "workshop-2026";
    const ADMIN_PASSWORD: &str = "instructors-only-0123456789abcdefgh";
    let hub = TestHub::start(&format!(
        "hub:\n  config:\n    JupyterHub:\n      authenticator_class: shared-password\n    \
         Authenticator:\n      admin_users: [instructor]\n      allow_all: true\n    SharedPasswordAuthenticator:\n      \
         user_password: {USER_PASSWORD}\n      admin_password: {ADMIN_PASSWORD}\n"
    ));
    let instructor = Browser::new(&hub);
    instructor.login("instructor", ADMIN_PASSWORD).await;
    let (status, users) = instructor.call(Method::GET, "/hub/api/users", None).await;
    assert_eq!(status, 200, "{users}");

    // A participant makes a helper an admin of the hub (not in admin_users).
    let helper = Browser::new(&hub);
    helper.login("helper", USER_PASSWORD).await;
    let (status, body) = instructor
        .call(
            Method::PATCH,
            "/hub/api/users/helper",
            Some(json!({"admin": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    for name in ["instructor", "Instructor", "helper"] {
        let intruder = Browser::new(&hub);
        let response = intruder.login_response(name, USER_PASSWORD, None).await;
        let cookies = common::set_cookies(&response);
        assert_eq!(
            response.status(),
            403,
            "the user password opened the admin account {name}: {cookies:?}"
        );
        assert!(
            !cookies
                .iter()
                .any(|c| c.starts_with("jupyterhub-hub-login=")),
            "a session for {name}: {cookies:?}"
        );
    }
    // Nothing changed: both are still admins, and the instructor's session still works.
    let (status, users) = instructor.call(Method::GET, "/hub/api/users", None).await;
    assert_eq!(status, 200, "the instructor lost the admin page: {users}");
    for name in ["instructor", "helper"] {
        let (status, model) = instructor
            .call(Method::GET, &format!("/hub/api/users/{name}"), None)
            .await;
        assert_eq!((status, &model["admin"]), (200, &json!(true)), "{model}");
    }
    // The admin password opens both admin accounts; the user password still opens the others'.
    Browser::new(&hub).login("helper", ADMIN_PASSWORD).await;
    Browser::new(&hub).login("student", USER_PASSWORD).await;
    assert_eq!(
        Browser::new(&hub)
            .login_response("student", ADMIN_PASSWORD, None)
            .await
            .status(),
        403,
        "the admin password is for admin names only"
    );
}
