//! Password logins slow down and stop after repeated failures; blocked users; temporary
//! users (tmpauthenticator); the login page's announcement.

mod common;

use common::{Browser, TestHub};

fn dummy_hub(auth_extra: &str) -> TestHub {
    TestHub::start_with(
        "hub:
  config:
    JupyterHub:
      authenticator_class: dummy
    DummyAuthenticator:
      password: right-one
    Authenticator:
      blocked_users: [Mallory]
",
        &format!("  auth:\n    login_announcement: Workshop today at 10\n{auth_extra}"),
        &common::python_env(),
    )
}

#[tokio::test]
async fn failed_logins_lock_out_the_user_and_the_address() {
    let hub = dummy_hub(
        "    max_failed_logins: 3\n    max_failed_logins_per_ip: 6\n    lockout_seconds: 30\n",
    );
    let browser = Browser::new(&hub);
    let page = browser
        .client
        .get(hub.url("/hub/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Workshop today at 10"), "{page}");

    let started = std::time::Instant::now();
    for _ in 0..3 {
        let r = browser.login_response("alice", "wrong", None).await;
        assert_eq!(r.status(), 403);
    }
    // Each failure is answered more slowly (100 ms, 200 ms, 300 ms).
    assert!(started.elapsed() >= std::time::Duration::from_millis(600));
    // Locked out now, even with the right password.
    let r = browser.login_response("alice", "right-one", None).await;
    assert_eq!(r.status(), 429);
    assert!(r.text().await.unwrap().contains("Too many failed logins"));
    // Another user from the same address still gets in…
    browser.login("bob", "right-one").await;
    // …until the address itself has failed too often.
    for user in ["c1", "c2", "c3"] {
        assert_eq!(
            browser.login_response(user, "wrong", None).await.status(),
            403
        );
    }
    let r = browser.login_response("dora", "right-one", None).await;
    assert_eq!(r.status(), 429, "per-address limit");
}

#[tokio::test]
async fn blocked_users_cannot_log_in() {
    let hub = dummy_hub("");
    let browser = Browser::new(&hub);
    let r = browser.login_response("mallory", "right-one", None).await;
    assert_eq!(r.status(), 403);
    browser.login("alice", "right-one").await;
}

#[tokio::test]
async fn temporary_users_skip_the_login_page() {
    let hub = TestHub::start("hub:\n  config:\n    JupyterHub:\n      authenticator_class: tmp\n");
    let mut names = Vec::new();
    for _ in 0..2 {
        let browser = Browser::new(&hub);
        let r = browser
            .no_redirects()
            .get(hub.url("/hub/login?next=%2Fhub%2Fhome"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        assert_eq!(r.headers()["location"], "/hub/tmplogin?next=%2Fhub%2Fhome");
        let r = browser
            .no_redirects()
            .get(hub.url("/hub/tmplogin?next=%2Fhub%2Fhome"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        assert_eq!(r.headers()["location"], "/hub/home");
        let home = browser
            .client
            .get(hub.url("/hub/home"))
            .send()
            .await
            .unwrap();
        assert_eq!(home.status(), 200);
        assert!(home.url().path() == "/hub/home");
        let (status, me) = browser
            .call(reqwest::Method::GET, "/hub/api/user", None)
            .await;
        assert_eq!(status, 200, "{me}");
        names.push(me["name"].as_str().unwrap().to_string());
    }
    assert_ne!(names[0], names[1], "each visitor is a new user");
}
