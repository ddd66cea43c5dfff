//! Who is asking: the login cookie or an API token, their scopes, cookies and XSRF.

use axum::http::{header, HeaderMap, HeaderValue, Method};
use chrono::{DateTime, Utc};
use hubfleet_store::{Service, Token, User};
use subtle::ConstantTimeEq;

use crate::{AppState, HubError};

pub const LOGIN_COOKIE: &str = "jupyterhub-hub-login";
pub const SESSION_COOKIE: &str = "jupyterhub-session-id";
pub const XSRF_COOKIE: &str = "_xsrf";
/// How long a login lasts (JupyterHub's `cookie_max_age_days`).
pub const LOGIN_DAYS: i64 = 14;

/// Who holds a credential.
#[derive(Clone, Debug)]
pub enum Owner {
    User(User),
    Service(Service),
}

/// An authenticated request.
#[derive(Clone, Debug)]
pub struct Identity {
    pub owner: Owner,
    /// Expanded scopes the request holds.
    pub scopes: hubfleet_rbac::HeldScopes,
    /// The token used, when authenticated by token.
    pub token: Option<Token>,
    /// The browser session (`jupyterhub-session-id`), if any.
    pub session_id: Option<String>,
}

impl Identity {
    /// The user behind the request, if it is a user (not a service).
    pub fn user(&self) -> Option<&User> {
        match &self.owner {
            Owner::User(user) => Some(user),
            Owner::Service(_) => None,
        }
    }
}

/// A logged-in browser: always a user.
#[derive(Clone, Debug)]
pub struct PageUser {
    pub user: User,
    pub identity: Identity,
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// `Authorization: token X` or `bearer X` (case-insensitive), as JupyterHub parses it.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(char::is_whitespace)?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer"))
        .then_some(token)
        .filter(|t| !t.is_empty() && !t.contains(char::is_whitespace))
}

/// How the hub names and scopes its cookies. They are always host-only (no `Domain`), so they
/// never reach users' hosts. With https subdomains they also take the `__Host-` prefix, which
/// makes browsers refuse any such cookie that the hub's own host did not set itself (a user's
/// host cannot plant one); the prefix requires `Path=/`.
#[derive(Clone, Debug)]
pub struct HubCookies {
    host_prefix: bool,
    secure: bool,
    /// `hub.baseUrl`: cookie paths are under it.
    base_url: String,
}

impl HubCookies {
    pub fn new(settings: &crate::Settings) -> HubCookies {
        let host_prefix = settings
            .subdomain_host
            .as_ref()
            .is_some_and(|sub| sub.is_https());
        HubCookies {
            host_prefix,
            secure: settings.secure_cookies || host_prefix,
            base_url: settings.base_url.clone(),
        }
    }

    /// The cookie's name as sent: `jupyterhub-hub-login` or `__Host-jupyterhub-hub-login`.
    pub fn name(&self, base: &str) -> String {
        if self.host_prefix {
            format!("__Host-{base}")
        } else {
            base.to_owned()
        }
    }

    /// `path` under the base URL, unless the `__Host-` prefix requires `/`.
    pub fn path(&self, path: &str) -> String {
        if self.host_prefix {
            "/".to_owned()
        } else if self.base_url == "/" {
            path.to_owned()
        } else {
            format!("{}{}", self.base_url, path.trim_start_matches('/'))
        }
    }

    pub fn get<'h>(&self, headers: &'h HeaderMap, base: &str) -> Option<&'h str> {
        cookie(headers, &self.name(base))
    }

    pub fn set(&self, base: &str, value: &str, path: &str, max_age: Option<i64>) -> HeaderValue {
        set_cookie(
            &self.name(base),
            value,
            &self.path(path),
            max_age,
            self.secure,
        )
    }

    pub fn clear(&self, base: &str, path: &str) -> HeaderValue {
        clear_cookie(&self.name(base), &self.path(path), self.secure)
    }
}

/// A `Set-Cookie` value: always HttpOnly and SameSite=Lax, scoped to `path`.
pub fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age: Option<i64>,
    secure: bool,
) -> HeaderValue {
    let mut cookie = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        cookie.push_str("; Secure");
    }
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub fn clear_cookie(name: &str, path: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}=; Path={path}; HttpOnly; SameSite=Lax; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The user behind the login cookie, if it is valid.
pub async fn from_cookie(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Identity>, HubError> {
    let Some(secret) = state.settings().cookies().get(headers, LOGIN_COOKIE) else {
        return Ok(None);
    };
    match cached(state, "session", secret, load_from_cookie(state, secret)).await? {
        Some(identity) => crate::auth_refresh::checked(state, identity).await,
        None => Ok(None),
    }
}

async fn load_from_cookie(
    state: &AppState,
    secret: &str,
) -> Result<Option<(Identity, Option<DateTime<Utc>>)>, HubError> {
    let Some(session) = state.store.session(secret).await? else {
        return Ok(None);
    };
    touch_user(state, &session.user).await;
    let expires = Some(session.expires_at);
    Ok(Some((
        Identity {
            scopes: crate::access::user_scopes(state, &session.user)
                .await?
                .into(),
            owner: Owner::User(session.user),
            token: None,
            session_id: Some(session.session_id),
        },
        expires,
    )))
}

/// The logged-in user of a page.
pub async fn page_user(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<PageUser>, HubError> {
    Ok(from_cookie(state, headers).await?.and_then(|identity| {
        identity
            .user()
            .cloned()
            .map(|user| PageUser { user, identity })
    }))
}

/// The owner of the `Authorization` token, if it is valid.
pub async fn from_token(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Identity>, HubError> {
    let Some(secret) = bearer_token(headers) else {
        return Ok(None);
    };
    match cached(state, "token", secret, load_from_token(state, secret)).await? {
        Some(identity) => crate::auth_refresh::checked(state, identity).await,
        None => Ok(None),
    }
}

async fn load_from_token(
    state: &AppState,
    secret: &str,
) -> Result<Option<(Identity, Option<DateTime<Utc>>)>, HubError> {
    let Some(token) = state.store.find_token(secret).await? else {
        return Ok(None);
    };
    let owner = match (token.user_id, token.service_id) {
        (Some(user_id), _) => match state.store.user_by_id(user_id).await? {
            Some(user) => Owner::User(user),
            None => return Ok(None),
        },
        (None, Some(service_id)) => match state.store.service_by_id(service_id).await? {
            Some(service) => Owner::Service(service),
            None => return Ok(None),
        },
        (None, None) => return Ok(None),
    };
    let now = Utc::now();
    if token
        .last_activity
        .is_none_or(|t| now - t > chrono::Duration::seconds(30))
    {
        let _ = state.store.touch_token(token.id, now).await;
    }
    // A server's own token does not count as its user being active (protocol §3.1).
    if let Owner::User(user) = &owner {
        if !token.note.starts_with("Server at ") {
            touch_user(state, user).await;
        }
    }
    let expires = token.expires_at;
    Ok(Some((
        Identity {
            scopes: crate::access::token_scopes(state, &token, &owner)
                .await?
                .into(),
            session_id: token.session_id.clone(),
            owner,
            token: Some(token),
        },
        expires,
    )))
}

/// How long an authentication result may be reused. Any change to users, tokens,
/// roles, groups, shares or services ends it at once (the store's generation).
const CACHE_SECONDS: u64 = 10;
const CACHE_ENTRIES: usize = 10_000;

struct CacheEntry {
    generation: u64,
    loaded: std::time::Instant,
    expires: Option<DateTime<Utc>>,
    identity: Identity,
}

/// Recent authentication results, keyed by a hash of the credential (never the
/// credential itself), so that a busy API client costs no database round trip.
fn auth_cache() -> &'static std::sync::Mutex<std::collections::HashMap<[u8; 32], CacheEntry>> {
    static CACHE: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<[u8; 32], CacheEntry>>,
    > = std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

async fn cached(
    state: &AppState,
    kind: &str,
    secret: &str,
    load: impl std::future::Future<Output = Result<Option<(Identity, Option<DateTime<Utc>>)>, HubError>>,
) -> Result<Option<Identity>, HubError> {
    use sha2::Digest;
    let key: [u8; 32] = sha2::Sha256::new()
        .chain_update(kind.as_bytes())
        .chain_update([0u8])
        .chain_update(secret.as_bytes())
        .finalize()
        .into();
    let generation = state.store.generation();
    {
        let cache = auth_cache().lock().expect("auth cache lock");
        if let Some(entry) = cache.get(&key) {
            let fresh = entry.generation == generation
                && entry.loaded.elapsed().as_secs() < CACHE_SECONDS
                && entry.expires.is_none_or(|e| e > Utc::now());
            if fresh {
                return Ok(Some(entry.identity.clone()));
            }
        }
    }
    let Some((identity, expires)) = load.await? else {
        return Ok(None);
    };
    let mut cache = auth_cache().lock().expect("auth cache lock");
    if cache.len() >= CACHE_ENTRIES {
        cache.clear();
    }
    cache.insert(
        key,
        CacheEntry {
            generation,
            loaded: std::time::Instant::now(),
            expires,
            identity: identity.clone(),
        },
    );
    Ok(Some(identity))
}

/// Record activity at most every 30 s per user, as JupyterHub's `activity_resolution`.
async fn touch_user(state: &AppState, user: &User) {
    let now = Utc::now();
    if user
        .last_activity
        .is_none_or(|t| now - t > chrono::Duration::seconds(30))
    {
        let _ = state.store.touch_user(user.id, now).await;
    }
}

/// Token first, then cookie. A cookie-authenticated write must carry the XSRF token.
pub async fn identify(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    query_xsrf: Option<&str>,
) -> Result<Option<Identity>, HubError> {
    if headers.contains_key(header::AUTHORIZATION) {
        return from_token(state, headers).await;
    }
    let Some(identity) = from_cookie(state, headers).await? else {
        return Ok(None);
    };
    if needs_xsrf(method, headers)
        && !xsrf_ok(state, headers, identity.session_id.as_deref(), query_xsrf)
    {
        return Err(HubError::Forbidden(
            "XSRF check failed: cookie-authenticated requests must send the _xsrf token".into(),
        ));
    }
    Ok(Some(identity))
}

/// Cookie-authenticated API requests need the token, except plain navigation
/// (protocol §3.4): a GET without `Sec-Fetch-Mode`, or one that is `navigate`.
fn needs_xsrf(method: &Method, headers: &HeaderMap) -> bool {
    let mode = headers.get("sec-fetch-mode").and_then(|v| v.to_str().ok());
    let safe_method = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    !(safe_method && matches!(mode, None | Some("navigate") | Some("websocket")))
}

/// The key XSRF tokens are signed with: the hub's secret `xsrf` from the database, so that
/// every replica accepts the tokens of the others.
#[derive(Clone)]
pub struct XsrfKey(std::sync::Arc<Vec<u8>>);

impl XsrfKey {
    pub fn new(secret: Vec<u8>) -> XsrfKey {
        XsrfKey(std::sync::Arc::new(secret))
    }

    fn sign(&self, binding: &str, value: &str) -> String {
        use base64::Engine;
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.0)
            .expect("HMAC takes keys of any length");
        mac.update(binding.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

impl std::fmt::Debug for XsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("XsrfKey(..)")
    }
}

/// What a token is bound to: the login session when there is one, else a random value in the
/// `_xsrf` cookie together with the browser's User-Agent (the login and sign-up forms). A value
/// that someone else can plant in the cookie (a user's host, an on-path attacker over plain
/// HTTP) is worth nothing: without the hub's key no one can make the matching token.
fn expected_xsrf(state: &AppState, headers: &HeaderMap, session: Option<&str>) -> Option<String> {
    let key = &state.xsrf_key;
    match session {
        Some(session) => Some(key.sign("session", session)),
        None => {
            let nonce = state
                .settings()
                .cookies()
                .get(headers, XSRF_COOKIE)
                .filter(|n| is_nonce(n))?;
            Some(key.sign("anonymous", &format!("{nonce}\0{}", user_agent(headers))))
        }
    }
}

fn is_nonce(value: &str) -> bool {
    value.len() == 32 && value.chars().all(|c| c.is_ascii_hexdigit())
}

fn user_agent(headers: &HeaderMap) -> &str {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// A request another site started (Fetch metadata, sent by every current browser). Users'
/// hosts count as other sites: they are the hub's siblings, `same-site` but not same-origin.
pub fn from_another_site(headers: &HeaderMap) -> bool {
    matches!(
        headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()),
        Some("cross-site" | "same-site")
    )
}

/// A navigation that the hub's own pages started (`same-origin`), or the person did, typing
/// the address or opening a bookmark (`none`). Anything else (another site, a user's host, a
/// client that does not say) is no proof that they meant it.
pub fn same_origin_navigation(headers: &HeaderMap) -> bool {
    matches!(
        headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()),
        Some("same-origin" | "none")
    )
}

/// Whether the submitted token (query, form field or header) is the one for this request's
/// login session (`session`), or for an anonymous form, for its `_xsrf` cookie; and the request
/// did not come from another site.
pub fn xsrf_ok(
    state: &AppState,
    headers: &HeaderMap,
    session: Option<&str>,
    submitted: Option<&str>,
) -> bool {
    if from_another_site(headers) {
        return false;
    }
    let Some(expected) = expected_xsrf(state, headers, session) else {
        return false;
    };
    let submitted = submitted.or_else(|| {
        headers
            .get("x-xsrftoken")
            .or_else(|| headers.get("x-csrftoken"))
            .and_then(|v| v.to_str().ok())
    });
    match submitted {
        Some(token) => expected.as_bytes().ct_eq(token.as_bytes()).into(),
        None => false,
    }
}

/// The XSRF token for a page, and the cookie to set when an anonymous visitor has none yet.
/// `session` is the login session (`Identity::session_id`) of a logged-in page.
pub fn xsrf_token(
    state: &AppState,
    headers: &HeaderMap,
    session: Option<&str>,
) -> (String, Option<HeaderValue>) {
    if let Some(session) = session {
        return (state.xsrf_key.sign("session", session), None);
    }
    let cookies = state.settings().cookies();
    let existing = cookies.get(headers, XSRF_COOKIE).filter(|n| is_nonce(n));
    let (nonce, set) = match existing {
        Some(nonce) => (nonce.to_owned(), None),
        None => {
            let nonce = hubfleet_store::new_token();
            let set = cookies.set(XSRF_COOKIE, &nonce, "/hub/", None);
            (nonce, Some(set))
        }
    };
    let token = state
        .xsrf_key
        .sign("anonymous", &format!("{nonce}\0{}", user_agent(headers)));
    (token, set)
}

impl PageUser {
    pub fn session(&self) -> Option<&str> {
        self.identity.session_id.as_deref()
    }
}
