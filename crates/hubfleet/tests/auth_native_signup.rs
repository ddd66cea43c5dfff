//! NativeAuthenticator sign-up, admin approval and password change, driven through the real
//! binary's pages with a cookie jar, as a browser would.

mod common;

#[path = "support/users_cli.rs"]
mod users_cli;

use common::{Browser, TestHub};
use reqwest::Method;

fn native_hub(native_keys: &str) -> TestHub {
    TestHub::start(&format!(
        "hub:\n  config:\n    JupyterHub:\n      authenticator_class: native\n    Authenticator:\n      admin_users: [boss]\n    NativeAuthenticator:\n{native_keys}"
    ))
}

/// The XSRF token of the form on `page`.
async fn xsrf_from(browser: &Browser, page: &str) -> String {
    let response = browser.client.get(browser.url(page)).send().await.unwrap();
    assert_eq!(response.status(), 200, "{page}");
    common::page_xsrf(&response.text().await.unwrap()).expect("the form has _xsrf")
}

async fn sign_up(browser: &Browser, name: &str, password: &str, again: &str) -> (u16, String) {
    let xsrf = xsrf_from(browser, "/hub/signup").await;
    let response = browser
        .no_redirects()
        .post(browser.url("/hub/signup"))
        .form(&[
            ("username", name),
            ("signup_password", password),
            ("signup_password_confirmation", again),
            ("_xsrf", xsrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn sign_up_needs_approval_and_password_rules_apply() {
    let hub = native_hub("      minimum_password_length: 10\n      check_common_password: true\n");
    let login_page = reqwest::get(hub.url("/hub/login"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(login_page.contains("href=\"/hub/signup\""), "{login_page}");

    // The admin's password is set by the operator (`admin_users` names never sign up).
    users_cli::add_user(&hub.config, "boss", "boss-password-1");
    let boss = Browser::new(&hub);
    boss.login("boss", "boss-password-1").await;

    // Password rules, mismatches and a forged form.
    let ann = Browser::new(&hub);
    let (status, page) = sign_up(&ann, "ann", "short", "short").await;
    assert_eq!(status, 400);
    assert!(page.contains("at least 10 characters"), "{page}");
    let (status, page) = sign_up(&ann, "ann", "password123", "password123").await;
    assert_eq!(status, 400);
    assert!(page.contains("too common"), "{page}");
    let (status, page) = sign_up(&ann, "ann", "ann-password-1", "ann-password-2").await;
    assert_eq!(status, 400);
    assert!(page.contains("not the same"), "{page}");
    let forged = reqwest::Client::new()
        .post(hub.url("/hub/signup"))
        .form(&[
            ("username", "eve"),
            ("signup_password", "eve-password-1"),
            ("signup_password_confirmation", "eve-password-1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    // A real sign-up waits for approval: no login yet.
    let (status, page) = sign_up(&ann, "Ann", "ann-password-1", "ann-password-1").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("sent to the administrators"), "{page}");
    let (status, page) = sign_up(
        &Browser::new(&hub),
        "ann",
        "other-password-9",
        "other-password-9",
    )
    .await;
    assert_eq!(status, 400);
    assert!(page.contains("taken"), "{page}");
    let refused = ann.login_response("ann", "ann-password-1", None).await;
    assert_ne!(refused.status(), 302);

    // Only admins see the list; approving needs the XSRF token.
    let list = ann
        .client
        .get(hub.url("/hub/authorize"))
        .send()
        .await
        .unwrap();
    assert!(
        list.url().path().starts_with("/hub/login"),
        "{}",
        list.url()
    );
    let list = boss
        .client
        .get(hub.url("/hub/authorize"))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let text = list.text().await.unwrap();
    assert!(text.contains("<td>ann</td>"), "{text}");
    let no_xsrf = boss
        .no_redirects()
        .post(hub.url("/hub/authorize/ann"))
        .form(&[("_xsrf", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(no_xsrf.status(), 403);
    let approved = boss
        .no_redirects()
        .post(hub.url("/hub/authorize/ann"))
        .form(&[("_xsrf", boss.hub_xsrf())])
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), 200);
    assert!(approved
        .text()
        .await
        .unwrap()
        .contains("ann can now sign in"));
    ann.login("ann", "ann-password-1").await;

    // ann changes her password: the old one is needed, the rules apply, then only the new
    // one works.
    let change = |old: &'static str, new: &'static str| ann.change_password(old, new);
    let (status, page) = change("not-my-password", "ann-password-2").await;
    assert_eq!(status, 400);
    assert!(page.contains("current password is not right"), "{page}");
    let (status, page) = change("ann-password-1", "qwertyuiop").await;
    assert_eq!(status, 400);
    assert!(page.contains("too common"), "{page}");
    let (status, page) = change("ann-password-1", "ann-password-2").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("has been changed"), "{page}");
    assert_ne!(
        Browser::new(&hub)
            .login_response("ann", "ann-password-1", None)
            .await
            .status(),
        302
    );
    Browser::new(&hub).login("ann", "ann-password-2").await;

    // Discarding a sign-up.
    sign_up(&Browser::new(&hub), "cy", "cy-password-1", "cy-password-1").await;
    let discarded = boss
        .no_redirects()
        .post(hub.url("/hub/authorize/cy/discard"))
        .form(&[("_xsrf", boss.hub_xsrf())])
        .send()
        .await
        .unwrap();
    assert!(discarded.text().await.unwrap().contains("was discarded"));
    assert_ne!(
        Browser::new(&hub)
            .login_response("cy", "cy-password-1", None)
            .await
            .status(),
        302
    );
}

#[tokio::test]
async fn open_signup_logs_in_at_once_and_signup_can_be_disabled() {
    let hub = native_hub("      open_signup: true\n");
    let dee = Browser::new(&hub);
    let (status, page) = sign_up(&dee, "dee", "pw", "pw").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("you can sign in now"), "{page}");
    dee.login("dee", "pw").await;

    let closed = native_hub("      enable_signup: false\n");
    let page = reqwest::get(closed.url("/hub/signup")).await.unwrap();
    assert_eq!(page.status(), 404);
    let login = reqwest::get(closed.url("/hub/login"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!login.contains("/hub/signup"), "{login}");
}

#[tokio::test]
async fn sign_up_cannot_take_an_existing_account() {
    let hub = native_hub("      open_signup: true\n");
    // boss is in `admin_users`: the hub created the user, without a password.
    let (status, page) = sign_up(&Browser::new(&hub), "boss", "mine-now-1", "mine-now-1").await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("The user name boss is taken"), "{page}");
    assert_eq!(
        Browser::new(&hub)
            .login_response("boss", "mine-now-1", None)
            .await
            .status(),
        403
    );

    // An admin adds ann through the API; she has no password yet, and nobody else may set one.
    users_cli::add_user(&hub.config, "boss", "boss-password-1");
    let boss = Browser::new(&hub);
    boss.login("boss", "boss-password-1").await;
    let (status, body) = boss.call(Method::POST, "/hub/api/users/ann", None).await;
    assert_eq!(status, 201, "{body}");
    let (status, page) = sign_up(&Browser::new(&hub), "Ann", "mine-now-1", "mine-now-1").await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("The user name ann is taken"), "{page}");
    assert_eq!(
        Browser::new(&hub)
            .login_response("ann", "mine-now-1", None)
            .await
            .status(),
        403
    );

    // A new name still signs up at once.
    let (status, page) = sign_up(&Browser::new(&hub), "cy", "cy-password-1", "cy-password-1").await;
    assert_eq!(status, 200, "{page}");
    Browser::new(&hub).login("cy", "cy-password-1").await;
}
