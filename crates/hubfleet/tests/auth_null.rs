//! `authenticator_class: "null"` (nullauthenticator, as 2i2c's binder hubs use it): nobody
//! logs in, the login page says so, and the hub is used through the REST API with tokens.

mod common;

use common::{Browser, TestHub, TokenClient};

const BINDER_TOKEN: &str = "binder-service-token-0123456789abcdef";

#[tokio::test]
async fn null_authenticator_disables_login_and_tokens_still_work() {
    let hub = TestHub::start(&format!(
        "hub:
  config:
    JupyterHub:
      authenticator_class: 'null'
  services:
    binder:
      api_token: {BINDER_TOKEN}
  loadRoles:
    binder:
      services: [binder]
      scopes: [servers, admin:users]
"
    ));

    // The login page says logging in is off, and offers no form or button.
    let browser = Browser::new(&hub);
    let page = browser
        .client
        .get(hub.url("/hub/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let text = page.text().await.unwrap();
    assert!(
        text.contains("Logging in is disabled on this hub"),
        "{text}"
    );
    assert!(text.contains("API tokens only"), "{text}");
    assert!(!text.contains("type=\"password\""), "{text}");
    assert!(!text.contains("login_service_button"), "{text}");

    // A login posted anyway is refused, and sets no login cookie.
    let response = browser.login_response("alice", "anything", None).await;
    assert_eq!(response.status(), 403);
    assert!(browser.cookie("/hub/", "jupyterhub-hub-login").is_none());
    // There is no provider to go to.
    let response = browser
        .no_redirects()
        .get(hub.url("/hub/oauth_login"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    // The binder service's token works: it creates users and reads them.
    let binder = TokenClient::new(&hub, BINDER_TOKEN);
    let (status, body) = binder
        .call(reqwest::Method::POST, "/hub/api/users/alice", None)
        .await;
    assert_eq!(status, 201, "{body}\n{}", hub.log());
    let (status, body) = binder
        .call(reqwest::Method::GET, "/hub/api/users/alice", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "alice");
}
