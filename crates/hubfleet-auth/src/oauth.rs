//! Redirect-based login (oauthenticator's classes): `generic-oauth` (OpenID Connect with
//! discovery, or plain OAuth 2.0), `github`, `cilogon` and `google`.
//!
//! The hub sends the browser to [`RedirectLogin::start`]'s URL and keeps the returned
//! [`PendingLogin`] in a short-lived HttpOnly cookie; at the callback it checks `state`
//! against the cookie and calls [`RedirectLogin::finish`], which exchanges the code (with the
//! PKCE verifier), verifies the ID token (signature against the provider's keys, issuer,
//! audience, expiry, nonce) when there is one, reads the user's details and applies the
//! [`AccessPolicy`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use hubfleet_config::{OAuthProvider, OAuthSettings};
use hubfleet_store::Store;
use openidconnect::core::{CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, TokenUrl, UserInfoUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::policy::{AccessPolicy, Decision};
use crate::{normalize_username, AuthError, UserInfo};

/// What the hub keeps (in a cookie) between sending the browser away and its return.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    #[serde(default)]
    pub pkce_verifier: Option<String>,
    pub redirect_uri: String,
    #[serde(default)]
    pub next: Option<String>,
}

/// A login that goes through another site.
#[async_trait]
pub trait RedirectLogin: Send + Sync {
    /// The name on the login button ("Sign in with …").
    fn login_service(&self) -> &str;
    /// The configured `oauth_callback_url`, if any.
    fn callback_url(&self) -> Option<&str>;
    /// Where to send the browser, and what to remember until it comes back.
    async fn start(
        &self,
        redirect_uri: &str,
        next: Option<String>,
    ) -> Result<(String, PendingLogin), AuthError>;
    /// Finish with the `code` the provider returned (state already checked by the caller).
    async fn finish(&self, code: &str, pending: &PendingLogin) -> Result<Decision, AuthError>;
    /// Where to send the browser after logging out of the hub (`logout_redirect_url`).
    fn logout_redirect_url(&self) -> Option<&str> {
        None
    }
}

fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn provider_error(what: &str, e: impl std::fmt::Display) -> AuthError {
    AuthError::Provider(format!("{what}: {e}"))
}

/// `fnmatch` as CILogon's `allowed_domains` uses it: `*` and `?`, case-insensitive.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) => a == b && go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    go(&p, &t)
}

/// `a.b.c` inside a JSON value.
fn dotted<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, key| v.get(key))
}

fn string_list(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn claim_str(user: &Value, claim: &str) -> Option<String> {
    match user.get(claim)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The payload of a JWT, without checking it (used only for a token already verified, or
/// one received directly from the token endpoint with `userdata_from_id_token`).
fn jwt_payload(jwt: &str) -> Result<Value, AuthError> {
    let part = jwt
        .split('.')
        .nth(1)
        .ok_or_else(|| AuthError::Rejected("the ID token is not a JWT".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| AuthError::Rejected("the ID token is not a JWT".into()))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| AuthError::Rejected("the ID token's claims are not JSON".into()))
}

const DISCOVERY_TTL: Duration = Duration::from_secs(3600);

/// `generic-oauth`, `github`, `cilogon` or `google`.
pub struct OAuthAuthenticator {
    kind: &'static str,
    login_service: String,
    settings: OAuthSettings,
    policy: AccessPolicy,
    store: Store,
    http: reqwest::Client,
    discovered: tokio::sync::Mutex<Option<(Instant, CoreProviderMetadata)>>,
}

impl OAuthAuthenticator {
    pub fn new(
        kind: &'static str,
        login_service: String,
        settings: OAuthSettings,
        policy: AccessPolicy,
        store: Store,
    ) -> Result<Self, AuthError> {
        let http = reqwest::Client::builder()
            // Never follow redirects from the provider's endpoints (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .user_agent("hubfleet")
            .build()
            .map_err(|e| AuthError::Config(format!("HTTP client: {e}")))?;
        Ok(OAuthAuthenticator {
            kind,
            login_service,
            settings,
            policy,
            store,
            http,
            discovered: tokio::sync::Mutex::new(None),
        })
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    fn issuer(&self) -> Option<&str> {
        match &self.settings.provider {
            OAuthProvider::Generic { issuer, .. } => issuer.as_deref(),
            OAuthProvider::CILogon { issuer, .. } | OAuthProvider::Google { issuer, .. } => {
                Some(issuer)
            }
            OAuthProvider::GitHub { .. } => None,
        }
    }

    /// The provider's discovery document (cached for an hour), with configured endpoint
    /// overrides applied.
    async fn metadata(&self, issuer: &str) -> Result<CoreProviderMetadata, AuthError> {
        let mut cache = self.discovered.lock().await;
        if let Some((at, meta)) = cache.as_ref() {
            if at.elapsed() < DISCOVERY_TTL {
                return Ok(meta.clone());
            }
        }
        let issuer_url = IssuerUrl::new(issuer.to_owned())
            .map_err(|e| AuthError::Config(format!("OIDC issuer `{issuer}`: {e}")))?;
        let mut meta = CoreProviderMetadata::discover_async(issuer_url, &self.http)
            .await
            .map_err(|e| {
                provider_error(
                    &format!("cannot read the OpenID configuration of {issuer}"),
                    error_chain(&e),
                )
            })?;
        if let OAuthProvider::Generic {
            authorize_url,
            token_url,
            userdata_url,
            ..
        } = &self.settings.provider
        {
            if let Some(u) = authorize_url {
                meta = meta.set_authorization_endpoint(
                    AuthUrl::new(u.clone()).map_err(|e| AuthError::Config(e.to_string()))?,
                );
            }
            if let Some(u) = token_url {
                meta = meta.set_token_endpoint(Some(
                    TokenUrl::new(u.clone()).map_err(|e| AuthError::Config(e.to_string()))?,
                ));
            }
            if let Some(u) = userdata_url {
                meta = meta.set_userinfo_endpoint(Some(
                    UserInfoUrl::new(u.clone()).map_err(|e| AuthError::Config(e.to_string()))?,
                ));
            }
        }
        *cache = Some((Instant::now(), meta.clone()));
        Ok(meta)
    }

    fn plain_endpoints(&self) -> Result<(String, String), AuthError> {
        match &self.settings.provider {
            OAuthProvider::GitHub { github_url, .. } => Ok((
                format!("{github_url}/login/oauth/authorize"),
                format!("{github_url}/login/oauth/access_token"),
            )),
            OAuthProvider::Generic {
                authorize_url: Some(a),
                token_url: Some(t),
                ..
            } => Ok((a.clone(), t.clone())),
            _ => Err(AuthError::Config(
                "no authorize_url/token_url configured".into(),
            )),
        }
    }

    fn extra_token_params(&self) -> BTreeMap<String, String> {
        match &self.settings.provider {
            OAuthProvider::Generic { token_params, .. } => token_params.clone(),
            _ => BTreeMap::new(),
        }
    }

    fn auth_type(&self) -> AuthType {
        match &self.settings.provider {
            OAuthProvider::Generic {
                basic_auth: true, ..
            } => AuthType::BasicAuth,
            _ => AuthType::RequestBody,
        }
    }

    async fn get_json(
        &self,
        url: &str,
        access_token: &str,
        what: &str,
    ) -> Result<(reqwest::StatusCode, Value), AuthError> {
        let response = self
            .http
            .get(url)
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| provider_error(what, error_chain(&e)))?;
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Ok((status, value))
    }

    async fn userdata(&self, url: &str, access_token: &str) -> Result<Value, AuthError> {
        let (status, value) = self
            .get_json(url, access_token, "reading the user's details")
            .await?;
        if !status.is_success() || !value.is_object() {
            return Err(AuthError::Provider(format!(
                "the identity provider answered {status} when asked for the user's details"
            )));
        }
        Ok(value)
    }

    /// Exchange the code; returns the whole token response as JSON.
    async fn exchange(&self, code: &str, pending: &PendingLogin) -> Result<Value, AuthError> {
        let client_id = ClientId::new(self.settings.client_id.clone());
        let secret = self
            .settings
            .client_secret
            .as_ref()
            .map(|s| ClientSecret::new(s.expose().to_owned()));
        let redirect = RedirectUrl::new(pending.redirect_uri.clone())
            .map_err(|e| AuthError::Config(format!("callback URL: {e}")))?;
        let verifier = pending.pkce_verifier.clone().map(PkceCodeVerifier::new);
        let params = self.extra_token_params();
        if let Some(issuer) = self.issuer() {
            let meta = self.metadata(issuer).await?;
            let client = CoreClient::from_provider_metadata(meta, client_id, secret)
                .set_redirect_uri(redirect)
                .set_auth_type(self.auth_type());
            let mut request = client
                .exchange_code(AuthorizationCode::new(code.to_owned()))
                .map_err(|e| AuthError::Config(format!("token endpoint: {e}")))?;
            if let Some(v) = verifier {
                request = request.set_pkce_verifier(v);
            }
            for (k, v) in params {
                request = request.add_extra_param(k, v);
            }
            let token = request
                .request_async(&self.http)
                .await
                .map_err(token_error)?;
            let id_token = openidconnect::TokenResponse::id_token(&token).ok_or_else(|| {
                AuthError::Rejected("the identity provider returned no ID token".into())
            })?;
            let nonce = Nonce::new(pending.nonce.clone());
            let verifier = client.id_token_verifier();
            id_token.claims(&verifier, &nonce).map_err(|e| {
                AuthError::Rejected(format!("the ID token was refused: {}", error_chain(&e)))
            })?;
            return Ok(token_json(&token, token.access_token().secret()));
        }
        let (auth_url, token_url) = self.plain_endpoints()?;
        let mut client =
            oauth2::basic::BasicClient::new(oauth2::ClientId::new(self.settings.client_id.clone()))
                .set_auth_uri(
                    oauth2::AuthUrl::new(auth_url).map_err(|e| AuthError::Config(e.to_string()))?,
                )
                .set_token_uri(
                    oauth2::TokenUrl::new(token_url)
                        .map_err(|e| AuthError::Config(e.to_string()))?,
                )
                .set_redirect_uri(
                    oauth2::RedirectUrl::new(pending.redirect_uri.clone())
                        .map_err(|e| AuthError::Config(e.to_string()))?,
                )
                .set_auth_type(match self.auth_type() {
                    AuthType::BasicAuth => oauth2::AuthType::BasicAuth,
                    _ => oauth2::AuthType::RequestBody,
                });
        if let Some(s) = &self.settings.client_secret {
            client = client.set_client_secret(oauth2::ClientSecret::new(s.expose().to_owned()));
        }
        let mut request = client.exchange_code(oauth2::AuthorizationCode::new(code.to_owned()));
        if let Some(v) = pending.pkce_verifier.clone() {
            request = request.set_pkce_verifier(oauth2::PkceCodeVerifier::new(v));
        }
        for (k, v) in params {
            request = request.add_extra_param(k, v);
        }
        let token = request
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        Ok(token_json(
            &token,
            oauth2::TokenResponse::access_token(&token).secret(),
        ))
    }

    /// The user's details (oauthenticator's `oauth_user`).
    async fn user_info(&self, token: &Value) -> Result<Value, AuthError> {
        let access_token = token["access_token"].as_str().unwrap_or_default();
        match &self.settings.provider {
            OAuthProvider::GitHub { github_api, .. } => {
                self.userdata(&format!("{github_api}/user"), access_token)
                    .await
            }
            OAuthProvider::Generic {
                issuer: None,
                userdata_url,
                userdata_from_id_token,
                ..
            } => {
                if *userdata_from_id_token {
                    let id_token = token["id_token"].as_str().ok_or_else(|| {
                        AuthError::Rejected("the identity provider returned no ID token".into())
                    })?;
                    jwt_payload(id_token)
                } else {
                    let url = userdata_url
                        .as_deref()
                        .ok_or_else(|| AuthError::Config("no userdata_url".into()))?;
                    self.userdata(url, access_token).await
                }
            }
            OAuthProvider::Generic { .. }
            | OAuthProvider::CILogon { .. }
            | OAuthProvider::Google { .. } => {
                // The ID token was verified in `exchange`; its claims come first, the
                // userinfo endpoint's (same subject) on top.
                let mut claims = jwt_payload(token["id_token"].as_str().unwrap_or_default())?;
                let from_id_token_only = matches!(
                    &self.settings.provider,
                    OAuthProvider::Generic {
                        userdata_from_id_token: true,
                        ..
                    }
                );
                let issuer = self.issuer().unwrap_or_default().to_owned();
                let meta = self.metadata(&issuer).await?;
                if let (false, Some(url)) = (from_id_token_only, meta.userinfo_endpoint()) {
                    let info = self.userdata(url.as_str(), access_token).await?;
                    if info.get("sub") != claims.get("sub") {
                        return Err(AuthError::Rejected(
                            "the userinfo endpoint described another user than the ID token".into(),
                        ));
                    }
                    if let (Some(c), Some(i)) = (claims.as_object_mut(), info.as_object()) {
                        for (k, v) in i {
                            c.insert(k.clone(), v.clone());
                        }
                    }
                }
                Ok(claims)
            }
        }
    }

    fn username(&self, user: &Value) -> Result<String, AuthError> {
        let raw = match &self.settings.provider {
            OAuthProvider::GitHub { .. } => claim_str(user, "login"),
            OAuthProvider::Generic { username_claim, .. } => {
                let found = username_claim.iter().find_map(|c| claim_str(user, c));
                if found.is_none() {
                    return Err(AuthError::Rejected(format!(
                        "the identity provider sent no `{}` for this user (hub.config.GenericOAuthenticator.username_claim)",
                        username_claim.join("` or `")
                    )));
                }
                found
            }
            OAuthProvider::Google {
                hosted_domain,
                username_claim,
                ..
            } => {
                let mut name = username_claim
                    .iter()
                    .find_map(|c| claim_str(user, c))
                    .ok_or_else(|| {
                        AuthError::Rejected(format!(
                            "Google sent no `{}` for this user (hub.config.GoogleOAuthenticator.username_claim)",
                            username_claim.join("` or `")
                        ))
                    })?;
                // As oauthenticator: with a single hosted domain, its accounts are named
                // without it.
                if let [domain] = hosted_domain.as_slice() {
                    if let Some((local, at)) = name.rsplit_once('@') {
                        if at.eq_ignore_ascii_case(domain) {
                            name = local.to_owned();
                        }
                    }
                }
                Some(name)
            }
            OAuthProvider::CILogon { idps, .. } => {
                let idp = claim_str(user, "idp")
                    .ok_or_else(|| AuthError::Rejected("CILogon sent no `idp` claim".into()))?;
                let conf = idps.get(&idp).ok_or_else(|| {
                    let shown = match claim_str(user, "idp_name") {
                        Some(name) => format!("{name} ({idp})"),
                        None => idp.clone(),
                    };
                    AuthError::Refused(format!(
                        "Logging in through {shown} is not allowed on this hub: choose one of the identity providers it accepts."
                    ))
                })?;
                let d = &conf.username_derivation;
                let claim = d.username_claim.as_deref().unwrap_or("email");
                let mut name = claim_str(user, claim).ok_or_else(|| {
                    AuthError::Rejected(format!(
                        "{idp} sent no `{claim}` for this user (username_derivation.username_claim)"
                    ))
                })?;
                match (d.action.as_deref(), &d.domain, &d.prefix) {
                    (Some("strip_idp_domain"), Some(domain), _) => {
                        let suffix = format!("@{}", domain.to_lowercase());
                        if name.to_lowercase().ends_with(&suffix) {
                            name.truncate(name.len() - suffix.len());
                        }
                    }
                    (Some("prefix"), _, Some(prefix)) => name = format!("{prefix}:{name}"),
                    _ => {}
                }
                Some(name)
            }
        };
        let raw = raw
            .ok_or_else(|| AuthError::Rejected("the identity provider sent no user name".into()))?;
        normalize_username(&raw)
    }

    /// GitHub: the user's teams as `org:team`, all pages (bounded).
    async fn github_teams(&self, api: &str, access_token: &str) -> Result<Vec<Value>, AuthError> {
        let mut teams = Vec::new();
        for page in 1..=20 {
            let (status, value) = self
                .get_json(
                    &format!("{api}/user/teams?per_page=100&page={page}"),
                    access_token,
                    "reading the user's GitHub teams",
                )
                .await?;
            if !status.is_success() {
                return Err(AuthError::Provider(format!(
                    "GitHub answered {status} when asked for the user's teams (the app needs the `read:org` scope)"
                )));
            }
            let items = value.as_array().cloned().unwrap_or_default();
            let n = items.len();
            teams.extend(items);
            if n < 100 {
                break;
            }
        }
        Ok(teams)
    }

    async fn github_member(
        &self,
        api: &str,
        org_team: &str,
        user: &str,
        access_token: &str,
    ) -> Result<bool, AuthError> {
        let esc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        match org_team.split_once(':') {
            Some((org, team)) => {
                let url = format!(
                    "{api}/orgs/{}/teams/{}/memberships/{}",
                    esc(org),
                    esc(team),
                    esc(user)
                );
                let (status, value) = self
                    .get_json(&url, access_token, "checking GitHub team membership")
                    .await?;
                Ok(status == reqwest::StatusCode::OK && value["state"] == "active")
            }
            None => {
                let url = format!("{api}/orgs/{}/members/{}", esc(org_team), esc(user));
                let (status, _) = self
                    .get_json(
                        &url,
                        access_token,
                        "checking GitHub organization membership",
                    )
                    .await?;
                Ok(status == reqwest::StatusCode::NO_CONTENT)
            }
        }
    }
}

/// The messages of an error and its sources, joined.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn token_error<RE, T>(e: oauth2::RequestTokenError<RE, T>) -> AuthError
where
    RE: std::error::Error + 'static,
    T: oauth2::ErrorResponse + 'static,
{
    match e {
        oauth2::RequestTokenError::ServerResponse(r) => AuthError::Rejected(format!(
            "the identity provider refused the login code ({r}); it may have been used already or have expired: please log in again"
        )),
        oauth2::RequestTokenError::Request(r) => {
            provider_error("cannot reach the identity provider's token endpoint", error_chain(&r))
        }
        oauth2::RequestTokenError::Parse(p, _) => AuthError::Rejected(format!(
            "the identity provider's token response was not understood ({p}); the login code may have been refused"
        )),
        oauth2::RequestTokenError::Other(o) => AuthError::Provider(o),
    }
}

#[async_trait]
impl RedirectLogin for OAuthAuthenticator {
    fn login_service(&self) -> &str {
        &self.login_service
    }

    fn callback_url(&self) -> Option<&str> {
        self.settings.callback_url.as_deref()
    }

    fn logout_redirect_url(&self) -> Option<&str> {
        self.settings.logout_redirect_url.as_deref()
    }

    async fn start(
        &self,
        redirect_uri: &str,
        next: Option<String>,
    ) -> Result<(String, PendingLogin), AuthError> {
        let authorize = match self.issuer() {
            Some(issuer) => self
                .metadata(issuer)
                .await?
                .authorization_endpoint()
                .url()
                .clone(),
            None => url::Url::parse(&self.plain_endpoints()?.0)
                .map_err(|e| AuthError::Config(format!("authorize_url: {e}")))?,
        };
        let state = random_token();
        let nonce = random_token();
        let mut url = authorize;
        let mut pkce_verifier = None;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.settings.client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("state", &state);
            if !self.settings.scope.is_empty() {
                q.append_pair("scope", &self.settings.scope.join(" "));
            }
            if self.issuer().is_some() {
                q.append_pair("nonce", &nonce);
            }
            if self.settings.enable_pkce {
                let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
                q.append_pair("code_challenge", challenge.as_str())
                    .append_pair("code_challenge_method", "S256");
                pkce_verifier = Some(verifier.secret().clone());
            }
            match &self.settings.provider {
                OAuthProvider::Generic {
                    extra_authorize_params,
                    ..
                } => {
                    for (k, v) in extra_authorize_params {
                        q.append_pair(k, v);
                    }
                }
                OAuthProvider::CILogon {
                    idps,
                    shown_idps,
                    skin,
                    ..
                } => {
                    let shown: Vec<&str> = if shown_idps.is_empty() {
                        idps.keys().map(String::as_str).collect()
                    } else {
                        shown_idps.iter().map(String::as_str).collect()
                    };
                    if !shown.is_empty() {
                        q.append_pair("selected_idp", &shown.join(","));
                    }
                    if let Some(skin) = skin {
                        q.append_pair("skin", skin);
                    }
                }
                OAuthProvider::Google {
                    hosted_domain,
                    extra_authorize_params,
                    ..
                } => {
                    // Google's account chooser then offers only that organisation's
                    // accounts; the `hd` claim is still checked at the callback.
                    if let [domain] = hosted_domain.as_slice() {
                        if !extra_authorize_params.contains_key("hd") {
                            q.append_pair("hd", domain);
                        }
                    }
                    for (k, v) in extra_authorize_params {
                        q.append_pair(k, v);
                    }
                }
                OAuthProvider::GitHub { .. } => {}
            }
        }
        Ok((
            url.to_string(),
            PendingLogin {
                state,
                nonce,
                pkce_verifier,
                redirect_uri: redirect_uri.to_owned(),
                next,
            },
        ))
    }

    async fn finish(&self, code: &str, pending: &PendingLogin) -> Result<Decision, AuthError> {
        let token = self.exchange(code, pending).await?;
        let user = self.user_info(&token).await?;
        self.decide(token, user).await
    }
}

impl OAuthAuthenticator {
    /// From the token response and the user's details: the auth_state, the groups and
    /// whether the user may log in.
    async fn decide(&self, token: Value, user: Value) -> Result<Decision, AuthError> {
        if let Some(why) = self.restriction(&user) {
            tracing::warn!(reason = %why, "login refused by the provider's restrictions");
            return Ok(Decision::Refused(
                self.settings.custom_403_message.clone().unwrap_or(why),
            ));
        }
        let name = match self.username(&user) {
            Ok(name) => name,
            Err(AuthError::Refused(message)) => return Ok(Decision::Refused(message)),
            Err(e) => return Err(e),
        };
        let access_token = token["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let scope = match &token["scope"] {
            Value::String(s) if s.contains(' ') => json!(s.split(' ').collect::<Vec<_>>()),
            Value::String(s) if s.contains(',') => json!(s.split(',').collect::<Vec<_>>()),
            Value::String(s) => json!([s]),
            other => other.clone(),
        };
        let mut auth_state = json!({
            "access_token": access_token,
            "refresh_token": token.get("refresh_token").cloned().unwrap_or(Value::Null),
            "id_token": token.get("id_token").cloned().unwrap_or(Value::Null),
            "scope": scope,
            "token_response": token,
            "oauth_user": user,
        });
        let mut groups = None;
        let mut extra_allowed = false;
        // Why the authenticator's own rules did not let the user in, when that is the reason
        // for a refusal (says more than "not allowed").
        let mut own_rule_refusal = None;
        match &self.settings.provider {
            OAuthProvider::GitHub {
                github_api,
                allowed_organizations,
                populate_teams_in_auth_state,
                ..
            } => {
                if *populate_teams_in_auth_state || self.policy.manage_groups {
                    let teams = self.github_teams(github_api, &access_token).await?;
                    if self.policy.manage_groups {
                        groups = Some(
                            teams
                                .iter()
                                .filter_map(|t| {
                                    Some(format!(
                                        "{}:{}",
                                        t["organization"]["login"].as_str()?,
                                        t["slug"].as_str()?
                                    ))
                                })
                                .collect(),
                        );
                    }
                    if *populate_teams_in_auth_state {
                        auth_state["teams"] = Value::Array(teams);
                    }
                }
                let login = user["login"].as_str().unwrap_or(&name).to_owned();
                for org_team in allowed_organizations {
                    if self
                        .github_member(github_api, org_team, &login, &access_token)
                        .await?
                    {
                        tracing::debug!(user = %name, %org_team, "allowed as a member");
                        extra_allowed = true;
                        break;
                    }
                }
            }
            OAuthProvider::Google { .. } => {}
            OAuthProvider::Generic { groups_key, .. } => {
                if self.policy.manage_groups {
                    groups = Some(
                        dotted(&auth_state, groups_key)
                            .map(string_list)
                            .unwrap_or_default(),
                    );
                }
            }
            OAuthProvider::CILogon {
                idps, groups_key, ..
            } => {
                if self.policy.manage_groups {
                    if let Some(key) = groups_key {
                        groups = Some(
                            dotted(&auth_state, key)
                                .map(string_list)
                                .unwrap_or_default(),
                        );
                    }
                }
                let idp = user["idp"].as_str().unwrap_or_default();
                if let Some(conf) = idps.get(idp) {
                    if conf.allow_all == Some(true) {
                        extra_allowed = true;
                    } else if let Some(domains) = &conf.allowed_domains {
                        let source = match &conf.allowed_domains_claim {
                            Some(claim) => claim_str(&user, claim),
                            None => conf
                                .username_derivation
                                .username_claim
                                .as_deref()
                                .and_then(|c| claim_str(&user, c)),
                        };
                        let domain = source
                            .as_deref()
                            .and_then(|s| s.rsplit_once('@'))
                            .map(|(_, domain)| domain.to_lowercase());
                        extra_allowed = domain
                            .as_deref()
                            .is_some_and(|domain| domains.iter().any(|d| glob_match(d, domain)));
                        if !extra_allowed {
                            let idp_shown = claim_str(&user, "idp_name").unwrap_or(idp.to_owned());
                            own_rule_refusal = Some(match domain {
                                Some(domain) => format!(
                                    "{name}: accounts of {idp_shown} in the domain {domain} are not allowed on this hub (allowed: {}).",
                                    domains.join(", ")
                                ),
                                None => format!(
                                    "{name}: {idp_shown} did not say which domain your account is in, so this hub cannot allow it."
                                ),
                            });
                        }
                    }
                }
            }
        }
        let info = UserInfo {
            name,
            admin: None,
            groups,
            auth_state: Some(auth_state),
        };
        let blocked = self.policy.is_blocked(&info.name);
        let decision = self.policy.decide(&self.store, info, extra_allowed).await?;
        Ok(
            match (
                decision,
                &self.settings.custom_403_message,
                own_rule_refusal,
            ) {
                (Decision::Refused(_), Some(custom), _) => Decision::Refused(custom.clone()),
                (Decision::Refused(_), None, Some(why)) if !blocked => Decision::Refused(why),
                (d, _, _) => d,
            },
        )
    }
}

impl OAuthAuthenticator {
    /// Rules that refuse a login whatever the allow settings say (oauthenticator checks
    /// them before `allow_all` or `admin_users`): for Google, a verified email and, with
    /// `hosted_domain`, a Workspace account (`hd` claim) of one of those domains. The `hd`
    /// claim, not the email's domain, shows that the organisation controls the account.
    fn restriction(&self, user: &Value) -> Option<String> {
        let OAuthProvider::Google { hosted_domain, .. } = &self.settings.provider else {
            return None;
        };
        let email = claim_str(user, "email").unwrap_or_default();
        if user["email_verified"] != Value::Bool(true) {
            return Some(format!(
                "Google has not verified the email address {email}, so it cannot log in to this hub."
            ));
        }
        if hosted_domain.is_empty() {
            return None;
        }
        let hd = claim_str(user, "hd").map(|d| d.to_lowercase());
        if hd.as_ref().is_some_and(|hd| hosted_domain.contains(hd)) {
            return None;
        }
        Some(format!(
            "{email} is not an account of {}: this hub only accepts Google accounts of {}.",
            hosted_domain.join(" or "),
            if hosted_domain.len() == 1 {
                "that organisation"
            } else {
                "those organisations"
            }
        ))
    }
}

/// Seconds since the epoch.
fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// An access token this close to its expiry counts as expired.
const EXPIRY_MARGIN_SECS: f64 = 30.0;

/// A token response as JSON (what auth_state keeps as `token_response`), with the access
/// token in clear and, when the provider said `expires_in`, `expires_at` (epoch seconds) so
/// that a refresh can tell when it has expired.
fn token_json(token: &impl Serialize, access_token: &str) -> Value {
    let mut raw = serde_json::to_value(token).unwrap_or(Value::Null);
    if let Some(obj) = raw.as_object_mut() {
        obj.insert("access_token".into(), access_token.into());
        if let Some(expires_in) = obj.get("expires_in").and_then(Value::as_f64) {
            obj.insert(
                "expires_at".into(),
                json!((now_secs() + expires_in).floor()),
            );
        }
    }
    raw
}

impl OAuthAuthenticator {
    /// oauthenticator's `refresh_user`: read the user anew with the stored access token,
    /// first getting a new one with the refresh token when it has expired (or when the
    /// provider no longer accepts it). The user must log in again when that fails, or when
    /// the provider's answer no longer lets them in.
    pub async fn refresh_user(
        &self,
        name: &str,
        auth_state: Option<&Value>,
    ) -> Result<crate::Refresh, AuthError> {
        use crate::Refresh;
        // No auth_state (never logged in through the provider, or it could not be
        // decrypted): nothing to check with.
        let Some(state) = auth_state.filter(|s| s.is_object()) else {
            return Ok(Refresh::Valid);
        };
        let refresh_token = state["refresh_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        let mut token = state
            .get("token_response")
            .filter(|t| t.is_object())
            .cloned()
            .unwrap_or_else(|| json!({}));
        token["access_token"] = state["access_token"].clone();
        let expired = token["expires_at"]
            .as_f64()
            .is_some_and(|at| at <= now_secs() + EXPIRY_MARGIN_SECS);
        let mut refreshed = false;
        if expired {
            let Some(rt) = &refresh_token else {
                return Ok(Refresh::LoginRequired(
                    "the access token has expired and the provider gave no refresh token".into(),
                ));
            };
            token = match self.refresh_grant(rt).await {
                Ok(t) => t,
                Err(e) => return Ok(Refresh::LoginRequired(e.to_string())),
            };
            refreshed = true;
        }
        let user = match self.current_user_info(&token, state, refreshed).await {
            Ok(user) => user,
            Err(first) => match (&refresh_token, refreshed) {
                // Access tokens can be revoked before they expire: try the refresh token.
                (Some(rt), false) => {
                    tracing::info!(user = %name, error = %first, "the access token was refused; using the refresh token");
                    token = match self.refresh_grant(rt).await {
                        Ok(t) => t,
                        Err(e) => return Ok(Refresh::LoginRequired(e.to_string())),
                    };
                    refreshed = true;
                    match self.current_user_info(&token, state, refreshed).await {
                        Ok(user) => user,
                        Err(e) => return Ok(Refresh::LoginRequired(e.to_string())),
                    }
                }
                _ => return Ok(Refresh::LoginRequired(first.to_string())),
            },
        };
        if let Some(obj) = token.as_object_mut() {
            // Providers that do not rotate refresh tokens leave them out of the answer.
            if obj.get("refresh_token").is_none_or(Value::is_null) {
                if let Some(rt) = &refresh_token {
                    obj.insert("refresh_token".into(), rt.clone().into());
                }
            }
            if obj.get("id_token").is_none_or(Value::is_null) {
                obj.insert("id_token".into(), state["id_token"].clone());
            }
        }
        if refreshed {
            tracing::info!(user = %name, "got a new access token with the refresh token");
        }
        Ok(match self.decide(token, user).await? {
            Decision::Allowed(info) if info.name == name => Refresh::Updated(info),
            Decision::Allowed(info) => Refresh::LoginRequired(format!(
                "the identity provider now names this user {}",
                info.name
            )),
            Decision::Refused(message) => Refresh::LoginRequired(message),
        })
    }

    /// The user's details as the provider gives them now, with `token`'s access token.
    async fn current_user_info(
        &self,
        token: &Value,
        state: &Value,
        refreshed: bool,
    ) -> Result<Value, AuthError> {
        let Some(issuer) = self.issuer().map(str::to_owned) else {
            return self.user_info(token).await;
        };
        // OpenID Connect: the verified claims of the login, updated from the userinfo
        // endpoint for the same subject.
        let mut claims = state["oauth_user"].clone();
        let from_id_token_only = matches!(
            &self.settings.provider,
            OAuthProvider::Generic {
                userdata_from_id_token: true,
                ..
            }
        );
        let meta = self.metadata(&issuer).await?;
        match (from_id_token_only, meta.userinfo_endpoint()) {
            (false, Some(url)) => {
                let access_token = token["access_token"].as_str().unwrap_or_default();
                let info = self.userdata(url.as_str(), access_token).await?;
                if info.get("sub") != claims.get("sub") {
                    return Err(AuthError::Rejected(
                        "the userinfo endpoint described another user than the login".into(),
                    ));
                }
                if let (Some(c), Some(i)) = (claims.as_object_mut(), info.as_object()) {
                    for (k, v) in i {
                        c.insert(k.clone(), v.clone());
                    }
                }
                Ok(claims)
            }
            // Nothing to ask: a successful refresh grant is the check.
            _ if refreshed => Ok(claims),
            _ => Err(AuthError::Rejected(
                "the provider has no userinfo endpoint to check the access token with".into(),
            )),
        }
    }

    /// The `refresh_token` grant at the token endpoint.
    async fn refresh_grant(&self, refresh_token: &str) -> Result<Value, AuthError> {
        let refused = |e: &dyn std::error::Error| {
            AuthError::Rejected(format!(
                "the identity provider refused the refresh token ({}): please log in again",
                error_chain(e)
            ))
        };
        let client_id = self.settings.client_id.clone();
        let secret = self
            .settings
            .client_secret
            .as_ref()
            .map(|s| s.expose().to_owned());
        if let Some(issuer) = self.issuer() {
            let meta = self.metadata(issuer).await?;
            let client = CoreClient::from_provider_metadata(
                meta,
                ClientId::new(client_id),
                secret.map(ClientSecret::new),
            )
            .set_auth_type(self.auth_type());
            let token = client
                .exchange_refresh_token(&openidconnect::RefreshToken::new(refresh_token.to_owned()))
                .map_err(|e| AuthError::Config(format!("token endpoint: {e}")))?
                .request_async(&self.http)
                .await
                .map_err(|e| refused(&e))?;
            // A new ID token must be as valid as the first one (no nonce on refresh).
            if let Some(id_token) = openidconnect::TokenResponse::id_token(&token) {
                id_token
                    .claims(&client.id_token_verifier(), |_: Option<&Nonce>| Ok(()))
                    .map_err(|e| {
                        AuthError::Rejected(format!(
                            "the refreshed ID token was refused: {}",
                            error_chain(&e)
                        ))
                    })?;
            }
            return Ok(token_json(&token, token.access_token().secret()));
        }
        let (auth_url, token_url) = self.plain_endpoints()?;
        let mut client = oauth2::basic::BasicClient::new(oauth2::ClientId::new(client_id))
            .set_auth_uri(
                oauth2::AuthUrl::new(auth_url).map_err(|e| AuthError::Config(e.to_string()))?,
            )
            .set_token_uri(
                oauth2::TokenUrl::new(token_url).map_err(|e| AuthError::Config(e.to_string()))?,
            )
            .set_auth_type(match self.auth_type() {
                AuthType::BasicAuth => oauth2::AuthType::BasicAuth,
                _ => oauth2::AuthType::RequestBody,
            });
        if let Some(s) = secret {
            client = client.set_client_secret(oauth2::ClientSecret::new(s));
        }
        let token = client
            .exchange_refresh_token(&oauth2::RefreshToken::new(refresh_token.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| refused(&e))?;
        Ok(token_json(
            &token,
            oauth2::TokenResponse::access_token(&token).secret(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_fnmatch() {
        assert!(glob_match("mtu.edu", "MTU.edu"));
        assert!(glob_match("*.utoronto.ca", "mail.utoronto.ca"));
        assert!(!glob_match("*.utoronto.ca", "utoronto.ca.evil.org"));
        assert!(glob_match("u?.edu", "uw.edu"));
        assert!(!glob_match("mtu.edu", "xmtu.edu"));
    }

    #[test]
    fn dotted_paths_and_group_lists() {
        let v = json!({"oauth_user": {"realm": {"roles": ["a", "b"]}, "g": "one"}});
        assert_eq!(
            string_list(dotted(&v, "oauth_user.realm.roles").unwrap()),
            ["a", "b"]
        );
        assert_eq!(string_list(dotted(&v, "oauth_user.g").unwrap()), ["one"]);
        assert!(dotted(&v, "oauth_user.missing").is_none());
    }

    #[test]
    fn jwt_payloads_decode() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"x"}"#);
        assert_eq!(jwt_payload(&format!("h.{payload}.s")).unwrap()["sub"], "x");
        assert!(jwt_payload("nonsense").is_err());
    }
}
