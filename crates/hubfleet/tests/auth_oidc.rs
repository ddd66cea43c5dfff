//! `generic-oauth` against a real OpenID Provider: npm `oidc-provider` (OpenID Certified),
//! started by each test on 127.0.0.1 from `tests/fixtures/oidc` (`scripts/test` runs
//! `npm ci` there). The browser side runs through every redirect with a cookie jar.

mod common;
mod oidc_fixture;

use std::time::Duration;

use common::{free_port, Browser, TestHub};
use oidc_fixture::{location, to_callback, Provider};
use reqwest::StatusCode;

fn hub_yaml(extra_class_keys: &str) -> String {
    format!(
        "hub:
  config:
    JupyterHub:
      authenticator_class: generic-oauth
    Authenticator:
      manage_groups: true
      enable_auth_state: true
    GenericOAuthenticator:
      client_id: hubfleet
      client_secret: hubfleet-test-secret
      username_claim: [preferred_username, sub]
      scope: [openid, email, profile, groups]
      allowed_groups: [students]
      admin_groups: [staff]
      login_service: Example IdP
{extra_class_keys}"
    )
}

/// `enable_auth_state` needs an encryption key.
const CRYPT_KEY: (&str, &str) = (
    "JUPYTERHUB_CRYPT_KEY",
    "0f0e0d0c0b0a09080706050403020100f0e0d0c0b0a090807060504030201000",
);

fn start_hub(provider_port: u16, extra_class_keys: &str) -> TestHub {
    TestHub::start_with_env(
        &hub_yaml(extra_class_keys),
        &format!("  auth:\n    oidc_issuer: http://127.0.0.1:{provider_port}\n    login_announcement: Use your Example account\n"),
        &common::python_env(),
        &[CRYPT_KEY],
    )
}

async fn login(
    browser: &Browser,
    hub: &TestHub,
    user: &str,
    next: Option<&str>,
) -> reqwest::Response {
    let callback = to_callback(browser, hub, user, next).await;
    browser.no_redirects().get(callback).send().await.unwrap()
}

/// The user's REST API model, as the logged-in browser sees it.
async fn model_of(browser: &Browser, hub: &TestHub, user: &str) -> serde_json::Value {
    // The home page sets the XSRF cookie the API needs.
    let home = browser
        .client
        .get(hub.url("/hub/home"))
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), 200);
    browser.user_model(user).await
}

#[tokio::test]
async fn allowed_groups_admin_groups_and_next() {
    let provider_port = free_port();
    let hub = start_hub(provider_port, "");
    let _provider = Provider::start(provider_port, &[hub.url("/hub/oauth_callback")]);

    // The login page shows the button and the announcement, not a password form.
    let page = reqwest::get(hub.url("/hub/login"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Sign in with Example IdP"), "{page}");
    assert!(page.contains("Use your Example account"), "{page}");
    assert!(!page.contains("type=\"password\""), "{page}");

    // alice: in `staff` (admin group) and `students` (allowed group).
    let alice = Browser::new(&hub);
    let done = login(&alice, &hub, "alice", Some("/hub/home?from=oidc")).await;
    assert_eq!(done.status(), 302, "{}", hub.log());
    assert_eq!(location(&done), "/hub/home?from=oidc");
    let cookies: Vec<String> = done
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let login_cookie = cookies
        .iter()
        .find(|c| c.starts_with("jupyterhub-hub-login="))
        .expect("login cookie");
    assert!(
        login_cookie.contains("HttpOnly")
            && login_cookie.contains("SameSite=Lax")
            && login_cookie.contains("Path=/hub/"),
        "{login_cookie}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("oauthenticator-state=;")),
        "state cookie cleared: {cookies:?}"
    );
    let model = model_of(&alice, &hub, "alice").await;
    assert_eq!(model["admin"], true, "{model}");
    assert_eq!(
        model["groups"],
        serde_json::json!(["staff", "students"]),
        "{model}"
    );

    // bob: a student, not an admin.
    let bob = Browser::new(&hub);
    let done = login(&bob, &hub, "bob", Some("https://evil.example/steal")).await;
    assert_eq!(done.status(), 302);
    assert_eq!(
        location(&done),
        "/hub/home",
        "off-site next must be dropped"
    );
    let model = model_of(&bob, &hub, "bob").await;
    assert_eq!(model["admin"], false, "{model}");
    assert_eq!(model["groups"], serde_json::json!(["students"]), "{model}");

    // carol: in no allowed group.
    let carol = Browser::new(&hub);
    let refused = login(&carol, &hub, "carol", None).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let text = refused.text().await.unwrap();
    assert!(text.contains("not in an allowed group"), "{text}");
    assert!(carol.cookie("/hub/", "jupyterhub-hub-login").is_none());
}

#[tokio::test]
async fn state_must_match_and_codes_cannot_be_replayed() {
    let provider_port = free_port();
    let hub = start_hub(provider_port, "");
    let _provider = Provider::start(provider_port, &[hub.url("/hub/oauth_callback")]);

    // A forged state.
    let browser = Browser::new(&hub);
    let callback = to_callback(&browser, &hub, "bob", None).await;
    let mut forged = reqwest::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = forged
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                "forged".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    let response = browser
        .no_redirects()
        .get(forged.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("OAuth state mismatch"));

    // The callback in another browser (login CSRF): no state cookie there.
    let other = Browser::new(&hub);
    let response = other.no_redirects().get(&callback).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("OAuth state missing"));

    // A real login, then the same code again with the same state cookie.
    let browser = Browser::new(&hub);
    let callback = to_callback(&browser, &hub, "bob", None).await;
    let state_cookie = browser
        .cookie("/hub/", "oauthenticator-state")
        .expect("state cookie");
    let ok = browser.no_redirects().get(&callback).send().await.unwrap();
    assert_eq!(ok.status(), 302, "{}", hub.log());
    let replayer = Browser::new(&hub);
    replayer.jar.add_cookie_str(
        &format!("oauthenticator-state={state_cookie}; Path=/hub/"),
        &reqwest::Url::parse(&hub.url("/hub/")).unwrap(),
    );
    let replay = replayer.no_redirects().get(&callback).send().await.unwrap();
    assert_eq!(replay.status(), StatusCode::FORBIDDEN);
    let text = replay.text().await.unwrap();
    assert!(text.contains("refused the login code"), "{text}");
    assert!(replayer.cookie("/hub/", "jupyterhub-hub-login").is_none());
}

#[tokio::test]
async fn tampered_id_tokens_are_refused() {
    // The token endpoint is replaced by the fixture's tampering proxy, which forwards to the
    // real one and alters the ID token: the hub must verify it.
    let provider_port = free_port();
    let modes = ["badsig", "nosig", "aud", "expired"];
    let hubs: Vec<TestHub> = modes
        .iter()
        .map(|mode| {
            start_hub(
                provider_port,
                &format!("      token_url: http://127.0.0.1:{provider_port}/tamper/{mode}/token\n"),
            )
        })
        .collect();
    let uris: Vec<String> = hubs.iter().map(|h| h.url("/hub/oauth_callback")).collect();
    let provider = Provider::start(provider_port, &uris);
    for (mode, hub) in modes.iter().zip(&hubs) {
        let browser = Browser::new(hub);
        let response = login(&browser, hub, "alice", None).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{mode}: {text}\n{}",
            provider.log()
        );
        assert!(text.contains("ID token was refused"), "{mode}: {text}");
        assert!(
            browser.cookie("/hub/", "jupyterhub-hub-login").is_none(),
            "{mode}"
        );
    }
    let _ = provider.url("/");
}

#[tokio::test]
async fn auto_login_goes_straight_to_the_provider() {
    let provider_port = free_port();
    let hub = TestHub::start_with_env(
        &hub_yaml("      auto_login: true\n"),
        &format!("  auth:\n    oidc_issuer: http://127.0.0.1:{provider_port}\n"),
        &common::python_env(),
        &[CRYPT_KEY],
    );
    let browser = Browser::new(&hub);
    let response = browser
        .no_redirects()
        .get(hub.url("/hub/login?next=%2Fhub%2Fspawn"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(location(&response), "/hub/oauth_login?next=%2Fhub%2Fspawn");
    // The provider is down: a clear 502 page, not a 500.
    let response = browser
        .no_redirects()
        .get(hub.url("/hub/oauth_login"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("OpenID configuration"));
}

/// Revoke a token at the provider (RFC 7009), as an administrator of the provider would.
async fn revoke(provider: &Provider, token: &str) {
    let response = reqwest::Client::new()
        .post(provider.url("/token/revocation"))
        .form(&[
            ("token", token),
            ("client_id", "hubfleet"),
            ("client_secret", "hubfleet-test-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", provider.log());
}

fn refresh_hub(provider_port: u16, authenticator_keys: &str) -> TestHub {
    TestHub::start_with_env(
        &format!(
            "{}singleuser:\n  cmd: {}\n",
            hub_yaml(authenticator_keys),
            common::fake_singleuser()
        ),
        &format!("  auth:\n    oidc_issuer: http://127.0.0.1:{provider_port}\n"),
        &common::python_env(),
        &[CRYPT_KEY],
    )
}

/// The auth_state of `user`, read with an admin's token (`admin:auth_state`).
async fn auth_state_of(hub: &TestHub, admin_token: &str, user: &str) -> serde_json::Value {
    let (status, model) = common::TokenClient::new(hub, admin_token)
        .call(
            reqwest::Method::GET,
            &format!("/hub/api/users/{user}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{model}");
    model["auth_state"].clone()
}

#[tokio::test]
async fn auth_refresh_age_renews_tokens_and_logs_out_when_refresh_fails() {
    let provider_port = free_port();
    let hub = refresh_hub(provider_port, "      auth_refresh_age: 1\n");
    let provider = Provider::start_with_env(
        provider_port,
        &[hub.url("/hub/oauth_callback")],
        &[("ACCESS_TOKEN_TTL", "20")],
    );

    // alice (admin through `staff`) reads auth_state with a token; bob is the subject.
    let alice = Browser::new(&hub);
    assert_eq!(login(&alice, &hub, "alice", None).await.status(), 302);
    model_of(&alice, &hub, "alice").await;
    let (status, token) = alice
        .call(
            reqwest::Method::POST,
            "/hub/api/users/alice/tokens",
            Some(serde_json::json!({"note": "test"})),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    let admin_token = token["token"].as_str().unwrap().to_string();

    let bob = Browser::new(&hub);
    assert_eq!(login(&bob, &hub, "bob", None).await.status(), 302);
    model_of(&bob, &hub, "bob").await;
    let first = auth_state_of(&hub, &admin_token, "bob").await;
    let access_1 = first["access_token"].as_str().unwrap().to_string();
    let refresh_1 = first["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_string();
    assert!(first["token_response"]["expires_at"].is_number(), "{first}");

    // Stale after 1 s: bob's next request checks with the provider. The access token
    // (20 s) is within the hub's 30 s margin of expiry, so a new one is fetched with the
    // refresh token, and bob stays logged in.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        bob.api(reqwest::Method::GET, "/hub/api/users/bob")
            .await
            .status(),
        200,
        "{}",
        hub.log()
    );
    let second = auth_state_of(&hub, &admin_token, "bob").await;
    let access_2 = second["access_token"].as_str().unwrap().to_string();
    assert_ne!(access_2, access_1, "{second}");
    assert_eq!(second["oauth_user"]["sub"], "bob");
    assert_eq!(
        second["oauth_user"]["groups"],
        serde_json::json!(["students"])
    );
    assert!(hub
        .log()
        .contains("got a new access token with the refresh token"));

    // Everything revoked: bob must log in again. The API refuses him, pages send him to
    // the login page.
    revoke(
        &provider,
        second["refresh_token"].as_str().unwrap_or(&refresh_1),
    )
    .await;
    revoke(&provider, &access_2).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let response = bob.api(reqwest::Method::GET, "/hub/api/users/bob").await;
    assert_eq!(response.status(), 403);
    let home = bob
        .no_redirects()
        .get(hub.url("/hub/home"))
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), 302);
    assert!(
        location(&home).starts_with("/hub/login"),
        "{}",
        location(&home)
    );
    assert!(hub.log().contains("login required"), "{}", hub.log());

    // Logging in again works at once and brings new tokens.
    assert_eq!(login(&bob, &hub, "bob", None).await.status(), 302);
    assert_eq!(
        bob.api(reqwest::Method::GET, "/hub/api/users/bob")
            .await
            .status(),
        200,
        "{}",
        hub.log()
    );
    let third = auth_state_of(&hub, &admin_token, "bob").await;
    assert_ne!(third["access_token"], access_2.as_str());
}

#[tokio::test]
async fn refresh_pre_spawn_refuses_a_start_until_login() {
    let provider_port = free_port();
    // No periodic checks: only the one before each start.
    let hub = refresh_hub(
        provider_port,
        "      auth_refresh_age: 0\n      refresh_pre_spawn: true\n",
    );
    let provider = Provider::start(provider_port, &[hub.url("/hub/oauth_callback")]);
    let bob = Browser::new(&hub);
    assert_eq!(login(&bob, &hub, "bob", None).await.status(), 302);
    model_of(&bob, &hub, "bob").await;

    // A start with a valid login goes ahead (the check passes), then stop it.
    let (status, body) = bob
        .call(reqwest::Method::POST, "/hub/api/users/bob/server", None)
        .await;
    assert!(
        status == 201 || status == 202,
        "{status} {body}\n{}",
        hub.log()
    );
    bob.wait_ready("bob", Duration::from_secs(30)).await;
    let (status, body) = bob
        .call(reqwest::Method::DELETE, "/hub/api/users/bob/server", None)
        .await;
    assert!(status == 204 || status == 202, "{status} {body}");
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The provider revokes bob's grant: pages and the API still work (no periodic
    // checks), but a start checks first and is refused.
    // bob's tokens, read by alice (an admin through `staff`).
    let alice = Browser::new(&hub);
    assert_eq!(login(&alice, &hub, "alice", None).await.status(), 302);
    model_of(&alice, &hub, "alice").await;
    let (_, bob_model) = alice
        .call(reqwest::Method::GET, "/hub/api/users/bob", None)
        .await;
    let state = &bob_model["auth_state"];
    revoke(
        &provider,
        state["refresh_token"].as_str().expect("refresh token"),
    )
    .await;
    revoke(&provider, state["access_token"].as_str().unwrap()).await;
    assert_eq!(
        bob.api(reqwest::Method::GET, "/hub/api/users/bob")
            .await
            .status(),
        200,
        "{}",
        hub.log()
    );
    let (status, body) = bob
        .call(reqwest::Method::POST, "/hub/api/users/bob/server", None)
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("auth has expired for bob, login again"),
        "{body}"
    );
    // The spawn page says the same, as a page.
    let page = bob
        .no_redirects()
        .get(hub.url("/hub/spawn"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 403, "{}", hub.log());
    assert!(page.text().await.unwrap().contains("auth has expired"));

    // After logging out and in again the start goes ahead.
    let logout = bob.client.get(hub.url("/hub/logout")).send().await.unwrap();
    assert!(logout.status().is_success(), "{}", logout.status());
    assert_eq!(login(&bob, &hub, "bob", None).await.status(), 302);
    let (status, body) = bob
        .call(reqwest::Method::POST, "/hub/api/users/bob/server", None)
        .await;
    assert!(status == 201 || status == 202, "{status} {body}");
}
