//! Logins that fail say why, once the password was right: a sign-up awaiting approval, or no
//! rule that lets the person in (and the hub warns at start when no rule lets anyone in).

mod common;

use common::{Browser, TestHub};

#[path = "support/users_cli.rs"]
mod users_cli;

async fn login_page(browser: &Browser, user: &str, password: &str) -> (u16, String) {
    let response = browser.login_response(user, password, None).await;
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_up_awaiting_approval_is_told_so() {
    let hub = TestHub::start(
        "hub:\n  config:\n    JupyterHub:\n      authenticator_class: native\n    Authenticator:\n      admin_users: [boss]\n",
    );
    let sam = Browser::new(&hub);
    let form = sam
        .client
        .get(hub.url("/hub/signup"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let xsrf = common::page_xsrf(&form).unwrap();
    let signed = sam
        .no_redirects()
        .post(hub.url("/hub/signup"))
        .form(&[
            ("username", "sam"),
            ("signup_password", "sam-password-1"),
            ("signup_password_confirmation", "sam-password-1"),
            ("_xsrf", xsrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 200);
    let (status, page) = login_page(&sam, "sam", "sam-password-1").await;
    assert_eq!(status, 403);
    assert!(page.contains("awaiting approval"), "{page}");
    // Only the sign-up's own password learns that it is pending.
    let (status, page) = login_page(&sam, "sam", "a-guess-123").await;
    assert_eq!(status, 403);
    assert!(page.contains("Invalid username or password"), "{page}");
    assert!(!page.contains("awaiting approval"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_allowed_is_said_at_start_and_at_login() {
    let hub = TestHub::start(
        "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n    Authenticator:\n      admin_users: [teacher]\n      allow_all: false\n",
    );
    assert!(
        hub.log().contains("nobody but the admins can log in"),
        "{}",
        hub.log()
    );
    let eve = Browser::new(&hub);
    let (status, page) = login_page(&eve, "eve", "x").await;
    assert_eq!(status, 403);
    assert!(page.contains("nobody is allowed in yet"), "{page}");
    // The admin still gets in.
    Browser::new(&hub).login("teacher", "x").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_not_in_allowed_users_is_told_so() {
    let hub = TestHub::start(
        "hub:\n  config:\n    JupyterHub:\n      authenticator_class: native\n    Authenticator:\n      admin_users: [boss]\n      allowed_users: [ann]\n      allow_existing_users: false\n",
    );
    users_cli::add_user(&hub.config, "zed", "zed-password-1");
    let zed = Browser::new(&hub);
    let (status, page) = login_page(&zed, "zed", "zed-password-1").await;
    assert_eq!(status, 403);
    assert!(
        page.contains("zed is not allowed to use this hub"),
        "{page}"
    );
    assert!(
        !hub.log().contains("nobody but the admins"),
        "{}",
        hub.log()
    );
    // A wrong password says nothing about who is allowed.
    let (_, page) = login_page(&zed, "zed", "wrong-password").await;
    assert!(page.contains("Invalid username or password"), "{page}");
}

/// A workshop configured without `allow_all`: participants with the right workshop password are
/// told why they cannot log in (the instructor still can, with the admin password).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workshop_without_allow_all_says_why() {
    let hub = TestHub::start(
        "hub:\n  config:\n    JupyterHub:\n      authenticator_class: shared-password\n    Authenticator:\n      admin_users: [instructor]\n    SharedPasswordAuthenticator:\n      user_password: workshop-2026\n      admin_password: leader-only-password-for-the-2026-workshop\n",
    );
    assert!(
        hub.log().contains("nobody but the admins can log in"),
        "{}",
        hub.log()
    );
    let pat = Browser::new(&hub);
    let (status, page) = login_page(&pat, "pat", "workshop-2026").await;
    assert_eq!(status, 403);
    assert!(page.contains("nobody is allowed in yet"), "{page}");
    let (_, page) = login_page(&pat, "pat", "not-the-password").await;
    assert!(page.contains("Invalid username or password"), "{page}");
    Browser::new(&hub)
        .login("instructor", "leader-only-password-for-the-2026-workshop")
        .await;
}
