//! `cilogon` end to end. CILogon itself cannot be reached from the tests, so the OpenID
//! Provider fixture (`tests/fixtures/oidc`, npm `oidc-provider`, OpenID Certified) stands in
//! for it: CILogon is an OpenID Provider, and the fixture issues CILogon's claims (`idp`,
//! `idp_name`, `eppn`, `oidc` with the scope `org.cilogon.userinfo`) for its users. The hub
//! is the real binary with `authenticator_class: cilogon`; only the issuer is pointed at the
//! stand-in (`hubfleet.auth.oidc_issuer`, instead of `https://cilogon.org`).

mod common;
mod oidc_fixture;

use common::{free_port, Browser, TestHub};
use oidc_fixture::{last_authorize, location, login, refused, Provider};

const UNIVERSITY: &str = "https://idp.university.example/idp/shibboleth";
const ORCID: &str = "http://orcid.org/oauth/authorize";

fn start_hub(provider_port: u16) -> TestHub {
    TestHub::start_with(
        &format!(
            "hub:
  config:
    JupyterHub:
      authenticator_class: cilogon
    CILogonOAuthenticator:
      client_id: hubfleet
      client_secret: hubfleet-test-secret
      admin_users: [orcid:0000-0002-1825-0097]
      allowed_idps:
        {UNIVERSITY}:
          default: true
          username_derivation:
            username_claim: eppn
            action: strip_idp_domain
            domain: university.example
          allowed_domains: [university.example]
        {ORCID}:
          username_derivation:
            username_claim: oidc
            action: prefix
            prefix: orcid
          allow_all: true
"
        ),
        &format!("  auth:\n    oidc_issuer: http://127.0.0.1:{provider_port}\n"),
        &common::python_env(),
    )
}

#[tokio::test]
async fn cilogon_idps_username_derivation_and_allowed_domains() {
    let provider_port = free_port();
    let hub = start_hub(provider_port);
    let provider = Provider::start(provider_port, &[hub.url("/hub/oauth_callback")]);

    // The login page names CILogon.
    let page = reqwest::get(hub.url("/hub/login"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Sign in with CILogon"), "{page}");

    // The authorize request asks for CILogon's scopes and restricts the IdP list to the
    // allowed ones with `selected_idp`, as CILogon expects.
    let browser = Browser::new(&hub);
    let start = browser
        .no_redirects()
        .get(hub.url("/hub/oauth_login"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 302, "{}", hub.log());
    let authorize = reqwest::Url::parse(&location(&start)).unwrap();
    assert_eq!(authorize.path(), "/auth");
    let query: std::collections::HashMap<String, String> =
        authorize.query_pairs().into_owned().collect();
    let mut selected: Vec<&str> = query["selected_idp"].split(',').collect();
    selected.sort();
    assert_eq!(selected, [ORCID, UNIVERSITY], "{authorize}");
    assert_eq!(query["scope"], "openid email org.cilogon.userinfo");
    // The provider received it as sent.
    browser.client.get(authorize.as_str()).send().await.unwrap();
    let received = last_authorize(&provider).await;
    assert_eq!(received["selected_idp"], query["selected_idp"].as_str());

    // dave, from the university: eppn `Dave@University.example`, domain stripped.
    let dave = Browser::new(&hub);
    let done = login(&dave, &hub, "dave").await;
    assert_eq!(done.status(), 302, "{}", hub.log());
    assert_eq!(location(&done), "/hub/home");
    dave.client.get(hub.url("/hub/home")).send().await.unwrap();
    let model = dave.user_model("dave").await;
    assert_eq!(model["name"], "dave", "{model}");
    assert_eq!(model["admin"], false, "{model}");

    // erin, through ORCID: `orcid:<ORCID iD>`, an admin by `admin_users`.
    let erin = Browser::new(&hub);
    let done = login(&erin, &hub, "erin").await;
    assert_eq!(done.status(), 302, "{}", hub.log());
    erin.client.get(hub.url("/hub/home")).send().await.unwrap();
    let model = erin.user_model("orcid:0000-0002-1825-0097").await;
    assert_eq!(model["admin"], true, "{model}");

    // frank: the university's IdP, but an account in a domain it does not allow.
    refused(
        &hub,
        "frank",
        "accounts of University Example in the domain visitor.example are not allowed on this hub (allowed: university.example)",
    )
    .await;

    // grace: Google through CILogon, an IdP this hub does not accept (a crafted authorize
    // URL can reach it even though `selected_idp` hides it).
    refused(
        &hub,
        "grace",
        "Logging in through Google (http://google.com/accounts/o8/id) is not allowed on this hub",
    )
    .await;
}
