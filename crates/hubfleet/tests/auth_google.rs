//! `google` end to end. Google cannot be reached from the tests, so the OpenID Provider
//! fixture (`tests/fixtures/oidc`, npm `oidc-provider`, OpenID Certified) stands in for
//! `https://accounts.google.com`: it issues Google's claims (`email`, `email_verified`, `hd`
//! for Workspace accounts) with the `email` scope. The hub is the real binary with
//! `authenticator_class: google`; only the issuer is pointed at the stand-in
//! (`hubfleet.auth.oidc_issuer`).

mod common;
mod oidc_fixture;

use common::{free_port, Browser, TestHub};
use oidc_fixture::{last_authorize, location, login, refused, Provider};

#[tokio::test]
async fn google_hosted_domain_and_verified_email() {
    let provider_port = free_port();
    // As 2i2c's Google hubs: `hosted_domain` restricts, `allow_all` allows.
    let hub = TestHub::start_with(
        "hub:
  config:
    JupyterHub:
      authenticator_class: google
    GoogleOAuthenticator:
      client_id: hubfleet
      client_secret: hubfleet-test-secret
      hosted_domain: [school.example]
      username_claim: email
      allow_all: true
      admin_users: [henry]
",
        &format!("  auth:\n    oidc_issuer: http://127.0.0.1:{provider_port}\n"),
        &common::python_env(),
    );
    let provider = Provider::start(provider_port, &[hub.url("/hub/oauth_callback")]);

    let page = reqwest::get(hub.url("/hub/login"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Sign in with Google"), "{page}");

    // henry, a Workspace account of school.example: named without the domain, an admin.
    let henry = Browser::new(&hub);
    let done = login(&henry, &hub, "henry").await;
    assert_eq!(done.status(), 302, "{}", hub.log());
    assert_eq!(location(&done), "/hub/home");
    // The authorize request asked for Google's scopes and told the account chooser the domain.
    let authorize = last_authorize(&provider).await;
    assert_eq!(authorize["scope"], "openid email", "{authorize}");
    assert_eq!(authorize["hd"], "school.example", "{authorize}");
    henry.client.get(hub.url("/hub/home")).send().await.unwrap();
    let model = henry.user_model("henry").await;
    assert_eq!(model["name"], "henry", "{model}");
    assert_eq!(model["admin"], true, "{model}");

    // ivy: a gmail.com account, not of the hosted domain, refused although `allow_all`.
    refused(
        &hub,
        "ivy",
        "ivy@gmail.com is not an account of school.example",
    )
    .await;
    // jack: the right `hd`, but an email Google has not verified.
    refused(
        &hub,
        "jack",
        "Google has not verified the email address jack@school.example",
    )
    .await;
}
