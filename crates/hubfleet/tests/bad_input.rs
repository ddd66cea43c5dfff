//! Bad input gets a clear answer and leaves no half-state behind.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{fake_singleuser, Browser, TestHub};

fn dummy_hub_with_cmd(cmd: &str) -> String {
    format!(
        "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\nsingleuser:\n  cmd: {cmd}\n  startTimeout: 20\n"
    )
}

fn run_serve(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    std::fs::write(&path, config).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_hubfleet"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn malformed_config_is_reported_with_file_and_line() {
    let (ok, stderr) = run_serve("hub:\n  config:\n    Authenticator:\n      admin_user: [x]\n");
    assert!(!ok);
    assert!(stderr.contains("broken.yaml:4"), "{stderr}");
    assert!(
        stderr.contains("hub.config.Authenticator.admin_user"),
        "{stderr}"
    );
    assert!(
        stderr.contains("admin_users"),
        "suggests the right key: {stderr}"
    );

    let (ok, stderr) = run_serve("hub:\n  db:\n    type: sqlite-pvc\n   url: x\n");
    assert!(!ok);
    assert!(stderr.contains("broken.yaml:4"), "{stderr}");

    let (ok, stderr) = run_serve("singleuser:\n  startTimeout: soon\n");
    assert!(!ok);
    assert!(
        stderr.contains("broken.yaml:2") && stderr.contains("startTimeout"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_refused_with_native_accounts() {
    let hub =
        TestHub::start("hub:\n  config:\n    JupyterHub:\n      authenticator_class: native\n");
    let mut add = Command::new(env!("CARGO_BIN_EXE_hubfleet"))
        .args(["users", "--config"])
        .arg(&hub.config)
        .args(["add", "dora", "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    add.stdin
        .take()
        .unwrap()
        .write_all(b"correct-horse\n")
        .unwrap();
    assert!(add.wait().unwrap().success());

    let browser = Browser::new(&hub);
    let refused = browser.login_response("dora", "wrong-horse", None).await;
    assert_eq!(refused.status(), 403);
    assert!(refused
        .headers()
        .get_all("set-cookie")
        .iter()
        .all(|c| !c.to_str().unwrap().starts_with("jupyterhub-hub-login")));
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("Invalid username or password"));
    let refused = browser
        .login_response("nobody", "correct-horse", None)
        .await;
    assert_eq!(refused.status(), 403);

    let accepted = browser.login_response("Dora", "correct-horse", None).await;
    assert_eq!(accepted.status(), 302);
    let cookies = common::set_cookies(&accepted);
    let login = cookies
        .iter()
        .find(|c| c.starts_with("jupyterhub-hub-login="))
        .expect("login cookie");
    assert!(
        login.contains("HttpOnly")
            && login.contains("SameSite=Lax")
            && login.contains("Path=/hub/"),
        "{login}"
    );
    let session = cookies
        .iter()
        .find(|c| c.starts_with("jupyterhub-session-id="))
        .expect("session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("Path=/;"),
        "{session}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_form_without_xsrf_is_refused() {
    let hub =
        TestHub::start("hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .post(hub.url("/hub/login"))
        .form(&[("username", "eve"), ("password", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_pointing_elsewhere_is_ignored() {
    let hub =
        TestHub::start("hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n");
    let browser = Browser::new(&hub);
    for evil in [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
    ] {
        let response = browser.login_response("erin", "x", Some(evil)).await;
        assert_eq!(response.status(), 302);
        assert_eq!(response.headers()["location"], "/hub/home", "next={evil}");
    }
    let response = browser
        .login_response("erin", "x", Some("/hub/spawn?x=1"))
        .await;
    assert_eq!(response.headers()["location"], "/hub/spawn?x=1");
    // Already logged in: the login page honours only same-site next too.
    let response = browser
        .no_redirects()
        .get(browser.url("/hub/login?next=https%3A%2F%2Fevil.example%2F"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["location"], "/hub/home");
}

/// Nothing of a failed start remains: no process, route, OAuth client or pending state.
async fn assert_no_half_state(hub: &TestHub, browser: &Browser, user: &str) {
    assert!(
        hub.server_pids(user).is_empty(),
        "processes left: {:?}",
        hub.server_pids(user)
    );
    let model = browser.user_model(user).await;
    assert!(
        model["server"].is_null() && model["pending"].is_null(),
        "{model}"
    );
    assert_eq!(model["servers"], serde_json::json!({}), "{model}");
    let route = browser
        .no_redirects()
        .get(browser.url(&format!("/user/{user}/x")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        route.headers()["location"],
        format!("/hub/user/{user}/x"),
        "no route is left"
    );
    let authorize = browser
        .no_redirects()
        .get(browser.url(&format!(
            "/hub/api/oauth2/authorize?client_id=jupyterhub-user-{user}&redirect_uri=/user/{user}/oauth_callback&response_type=code"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(authorize.status(), 400, "the OAuth client is gone");
}

async fn failed_spawn_page(browser: &Browser, user: &str) -> String {
    let started = browser
        .no_redirects()
        .get(browser.url("/hub/spawn"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 302);
    browser.wait_ready(user, Duration::from_secs(30)).await;
    let page = browser
        .client
        .get(browser.url(&format!("/hub/spawn-pending/{user}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 500);
    page.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_of_a_missing_program_fails_cleanly() {
    let hub = TestHub::start(&dummy_hub_with_cmd("[/nonexistent/jupyterhub-singleuser]"));
    let browser = Browser::new(&hub);
    browser.login("fay", "x").await;
    let page = failed_spawn_page(&browser, "fay").await;
    assert!(page.contains("Spawn failed"), "{page}");
    assert!(
        page.contains("/nonexistent/jupyterhub-singleuser"),
        "names the program: {page}"
    );
    assert_no_half_state(&hub, &browser, "fay").await;
    // The progress stream reports the failure too.
    let progress = browser
        .client
        .get(browser.url(&format!(
            "/hub/api/users/fay/server/progress?_xsrf={}",
            browser.hub_xsrf()
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(progress.contains("\"failed\":true"), "{progress}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_that_exits_at_once_shows_the_log_tail() {
    let hub = TestHub::start(&dummy_hub_with_cmd(
        "[/bin/sh, -c, 'echo boom-marker-42 >&2; exit 3']",
    ));
    let browser = Browser::new(&hub);
    browser.login("gil", "x").await;
    let page = failed_spawn_page(&browser, "gil").await;
    assert!(page.contains("exited with status 3"), "{page}");
    assert!(
        page.contains("boom-marker-42"),
        "shows the log tail: {page}"
    );
    assert_no_half_state(&hub, &browser, "gil").await;
    // The home page says what happened and offers a new start.
    let home = browser
        .client
        .get(browser.url("/hub/home"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        home.contains("Last start failed: the server process exited with status 3")
            && home.contains(r#"id="start" href="/hub/spawn""#),
        "{home}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_requests_with_unregistered_redirects_are_rejected() {
    let hub = TestHub::start(&dummy_hub_with_cmd(&fake_singleuser()));
    let browser = Browser::new(&hub);
    browser.login("hal", "x").await;
    let model = browser.start_server("hal", Duration::from_secs(30)).await;
    assert_eq!(model["server"], "/user/hal/", "log:\n{}", hub.log());

    let authorize = |redirect: &str| {
        browser.no_redirects().get(browser.url(&format!(
            "/hub/api/oauth2/authorize?client_id=jupyterhub-user-hal&redirect_uri={}&response_type=code&state=s1",
            common::url_escape(redirect)
        )))
    };
    for evil in [
        "https://evil.example/cb",
        "/user/hal/oauth_callback/../../evil",
        "/user/hal/oauth_callback?x=1",
    ] {
        let response = authorize(evil).send().await.unwrap();
        assert_eq!(response.status(), 400, "redirect_uri={evil}");
        assert!(response.headers().get("location").is_none());
    }
    let response = authorize("/user/hal/oauth_callback").send().await.unwrap();
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with("/user/hal/oauth_callback?code=") && location.ends_with("&state=s1"),
        "{location}"
    );

    // Unknown clients and logged-out browsers get nothing either.
    let response = browser.no_redirects().get(browser.url(
        "/hub/api/oauth2/authorize?client_id=jupyterhub-user-nobody&redirect_uri=/user/nobody/oauth_callback&response_type=code",
    )).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let stranger = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = stranger.get(hub.url("/hub/api/oauth2/authorize?client_id=jupyterhub-user-hal&redirect_uri=/user/hal/oauth_callback&response_type=code")).send().await.unwrap();
    assert_eq!(response.status(), 302);
    assert!(response.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/hub/login?next="));

    // Another user cannot get a code for hal's server.
    let other = Browser::new(&hub);
    other.login("ivy", "x").await;
    let response = other.no_redirects().get(other.url(
        "/hub/api/oauth2/authorize?client_id=jupyterhub-user-hal&redirect_uri=/user/hal/oauth_callback&response_type=code",
    )).send().await.unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_confirm_before_their_browser_authorizes_another_users_server() {
    let hub = TestHub::start(&format!(
        "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n    Authenticator:\n      admin_users: [root]\nsingleuser:\n  cmd: {}\n",
        fake_singleuser()
    ));
    let owner = Browser::new(&hub);
    owner.login("kit", "x").await;
    owner
        .client
        .get(owner.url("/hub/spawn"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        owner.wait_ready("kit", Duration::from_secs(30)).await["server"],
        "/user/kit/"
    );

    let admin = Browser::new(&hub);
    admin.login("root", "x").await;
    let url = admin.url("/hub/api/oauth2/authorize?client_id=jupyterhub-user-kit&redirect_uri=/user/kit/oauth_callback&response_type=code&state=s9");
    let page = admin.no_redirects().get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200, "a confirmation page, not a code");
    assert!(page.text().await.unwrap().contains("Authorize"));
    // A forged confirmation (no XSRF token) gets nothing.
    let forged = admin
        .no_redirects()
        .post(&url)
        .form(&[("_xsrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(forged.headers().get("location").is_none());
    let confirmed = admin
        .no_redirects()
        .post(&url)
        .form(&[("_xsrf", admin.hub_xsrf())])
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 302);
    let location = confirmed.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with("/user/kit/oauth_callback?code=") && location.ends_with("&state=s9"),
        "{location}"
    );
    // The owner is never asked.
    let own = owner.no_redirects().get(&url).send().await.unwrap();
    assert_eq!(own.status(), 302);
}
