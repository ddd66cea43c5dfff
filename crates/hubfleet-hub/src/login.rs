//! Logging in through another site (OAuth / OpenID Connect: `/hub/oauth_login`,
//! `/hub/oauth_callback`), temporary users (`/hub/tmplogin`), and what every successful
//! login does: create or update the user (admin flag, groups, auth_state), start a session
//! and set the cookies.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use chrono::Utc;
use hubfleet_auth::{AuthError, Decision, PendingLogin, UserInfo};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::identity;
use crate::pages::{error_page, found};
use crate::{urls, AppState, HubError};

/// oauthenticator's cookie name, holding what [`PendingLogin`] needs.
pub const STATE_COOKIE: &str = "oauthenticator-state";
/// How long a browser may take at the provider.
const STATE_MAX_AGE: i64 = 600;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/hub/oauth_login", get(oauth_login))
        .route("/hub/oauth_callback", get(oauth_callback))
        .route("/hub/tmplogin", get(tmp_login))
}

/// Where the login page's button (or `auto_login`) sends the browser, if not to the form.
pub fn login_url(state: &AppState) -> Option<&'static str> {
    if state.authenticator().redirect_login().is_some() {
        Some("/hub/oauth_login")
    } else if state.authenticator().temporary_users() {
        Some("/hub/tmplogin")
    } else {
        None
    }
}

/// `url` with `?next=` when there is one.
pub fn with_next(url: &str, next: Option<&str>) -> String {
    match next {
        Some(next) => format!(
            "{url}?next={}",
            url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
        ),
        None => url.to_owned(),
    }
}

/// What the login page shows besides the form: the button of a redirect login, the
/// announcement and the logo.
pub fn login_page_context(state: &AppState, next: Option<&str>) -> minijinja::Value {
    let authenticator = state.authenticator();
    let options = authenticator.options();
    let login_service = state
        .authenticator()
        .redirect_login()
        .map(|r| r.login_service().to_owned())
        .or_else(|| {
            state
                .authenticator()
                .temporary_users()
                .then(|| "a temporary account".to_owned())
        });
    minijinja::context! {
        login_service,
        login_url => login_url(state).map(|u| state.settings().with_base(&with_next(u, next))),
        announcement => options.announcement.clone(),
        logo_url => options.logo_url.clone(),
        signup_url => state
            .authenticator()
            .native_accounts()
            .filter(|a| a.settings.enable_signup)
            .map(|_| state.settings().with_base("/hub/signup")),
        login_disabled => state.authenticator().login_disabled().then_some(true),
    }
}

/// With `auto_login`, the login page is skipped.
pub fn auto_login_redirect(state: &AppState, next: Option<&str>) -> Option<Response> {
    if !state.authenticator().options().auto_login {
        return None;
    }
    login_url(state).map(|u| found(&with_next(u, next)))
}

/// The client's address, as the built-in proxy saw it.
pub fn client_ip(connect: Option<&ConnectInfo<SocketAddr>>) -> Option<std::net::IpAddr> {
    connect.map(|c| c.0.ip())
}

fn state_cookie_clear(state: &AppState) -> HeaderValue {
    state.settings().cookies().clear(STATE_COOKIE, "/hub/")
}

fn refusal_page(state: &AppState, status: StatusCode, title: &str, message: &str) -> Response {
    let mut response = error_page(state, status, title, message, None);
    response
        .headers_mut()
        .append(header::SET_COOKIE, state_cookie_clear(state));
    response
}

fn callback_url(state: &AppState, headers: &HeaderMap) -> Result<String, String> {
    if let Some(url) = state
        .authenticator()
        .redirect_login()
        .and_then(|r| r.callback_url())
    {
        return Ok(url.to_owned());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .ok_or_else(|| {
            "the request has no usable Host header; set `oauth_callback_url`".to_owned()
        })?;
    let scheme = if state.settings().secure_cookies {
        "https"
    } else {
        "http"
    };
    Ok(format!(
        "{scheme}://{host}{}",
        state.settings().with_base("/hub/oauth_callback")
    ))
}

#[derive(Deserialize, Default)]
struct NextQuery {
    next: Option<String>,
}

async fn oauth_login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
) -> Result<Response, HubError> {
    let next = query.next.as_deref().and_then(urls::safe_next);
    let authenticator = state.authenticator();
    let Some(redirect) = authenticator.redirect_login() else {
        return Ok(error_page(
            &state,
            StatusCode::NOT_FOUND,
            "Not Found",
            "This hub does not log in through another site; use the login page.",
            None,
        ));
    };
    if let Some(me) = identity::from_cookie(&state, &headers).await? {
        return Ok(found(&or_landing(&state, next, me.user()).await?));
    }
    let callback = match callback_url(&state, &headers) {
        Ok(url) => url,
        Err(message) => {
            return Ok(error_page(
                &state,
                StatusCode::BAD_REQUEST,
                "Cannot log in",
                &message,
                None,
            ))
        }
    };
    let (url, pending) = match redirect.start(&callback, next).await {
        Ok(started) => started,
        Err(e) => return Ok(login_error(&state, e)),
    };
    let value = serde_json::to_vec(&pending).unwrap_or_default();
    let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value);
    let mut response = found(&url);
    response.headers_mut().append(
        header::SET_COOKIE,
        state
            .settings()
            .cookies()
            .set(STATE_COOKIE, &value, "/hub/", Some(STATE_MAX_AGE)),
    );
    Ok(response)
}

/// A login that failed: a page saying why, never a 500 for what the provider did.
fn login_error(state: &AppState, e: AuthError) -> Response {
    let (status, title) = match &e {
        AuthError::Provider(_) => (StatusCode::BAD_GATEWAY, "The identity provider failed"),
        AuthError::Rejected(_) => (StatusCode::FORBIDDEN, "Login failed"),
        AuthError::Refused(_) => (StatusCode::FORBIDDEN, "Not allowed"),
        AuthError::InvalidName(_) => (StatusCode::FORBIDDEN, "Login failed"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "Login failed"),
    };
    tracing::warn!(error = %e, "login failed");
    let message = match status {
        StatusCode::INTERNAL_SERVER_ERROR => "The hub could not complete the login. Please try again; if it keeps failing, tell the hub's administrators.".to_owned(),
        _ => e.to_string(),
    };
    let mut response = refusal_page(state, status, title, &message);
    if let Ok(v) = HeaderValue::from_str("no-store") {
        response.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    response
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn oauth_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, HubError> {
    let authenticator = state.authenticator();
    let Some(redirect) = authenticator.redirect_login() else {
        return Ok(error_page(
            &state,
            StatusCode::NOT_FOUND,
            "Not Found",
            "This hub does not log in through another site.",
            None,
        ));
    };
    let Ok(Query(query)) = query else {
        return Ok(refusal_page(
            &state,
            StatusCode::BAD_REQUEST,
            "Bad login callback",
            "The login callback's parameters could not be read. Please log in again.",
        ));
    };
    if let Some(error) = &query.error {
        let message = query.error_description.as_deref().unwrap_or(error);
        return Ok(refusal_page(
            &state,
            StatusCode::FORBIDDEN,
            "Login failed",
            &format!("The identity provider did not log you in: {message}"),
        ));
    }
    let pending = state
        .settings()
        .cookies()
        .get(&headers, STATE_COOKIE)
        .and_then(|v| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(v)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<PendingLogin>(&bytes).ok());
    let Some(pending) = pending else {
        return Ok(refusal_page(
            &state,
            StatusCode::BAD_REQUEST,
            "Login expired",
            "OAuth state missing from cookies: the login took too long, was started in another browser, or cookies are blocked. Please log in again.",
        ));
    };
    let url_state = query.state.as_deref().unwrap_or_default();
    if url_state.is_empty() || !bool::from(url_state.as_bytes().ct_eq(pending.state.as_bytes())) {
        tracing::warn!("OAuth state mismatch");
        return Ok(refusal_page(
            &state,
            StatusCode::BAD_REQUEST,
            "Login refused",
            "OAuth state mismatch: this login was not started by this browser. Please log in again.",
        ));
    }
    let Some(code) = query.code.as_deref().filter(|c| !c.is_empty()) else {
        return Ok(refusal_page(
            &state,
            StatusCode::BAD_REQUEST,
            "Login refused",
            "OAuth callback made without a code. Please log in again.",
        ));
    };
    let started = std::time::Instant::now();
    let login = |success: bool| {
        state
            .settings()
            .metrics
            .login(started.elapsed().as_secs_f64(), success)
    };
    match redirect.finish(code, &pending).await {
        Ok(Decision::Allowed(info)) => {
            let next = pending.next.as_deref().and_then(urls::safe_next);
            let mut response = complete_login(&state, info, next.as_deref()).await?;
            login(true);
            response
                .headers_mut()
                .append(header::SET_COOKIE, state_cookie_clear(&state));
            Ok(response)
        }
        Ok(Decision::Refused(message)) => {
            login(false);
            Ok(refusal_page(
                &state,
                StatusCode::FORBIDDEN,
                "Not allowed",
                &message,
            ))
        }
        Err(e) => {
            login(false);
            Ok(login_error(&state, e))
        }
    }
}

/// tmpauthenticator: a new user for this visitor.
async fn tmp_login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
) -> Result<Response, HubError> {
    let next = query.next.as_deref().and_then(urls::safe_next);
    if !state.authenticator().temporary_users() {
        return Ok(error_page(
            &state,
            StatusCode::NOT_FOUND,
            "Not Found",
            "This hub has no temporary users.",
            None,
        ));
    }
    if let Some(me) = identity::from_cookie(&state, &headers).await? {
        return Ok(found(&or_landing(&state, next, me.user()).await?));
    }
    let started = std::time::Instant::now();
    let name = uuid::Uuid::new_v4().simple().to_string();
    let response =
        complete_login(&state, UserInfo::named(name, Some(false)), next.as_deref()).await?;
    state
        .settings()
        .metrics
        .login(started.elapsed().as_secs_f64(), true);
    Ok(response)
}

/// Make the groups of `user` exactly `groups` (creating groups as needed).
pub(crate) async fn sync_groups(
    state: &AppState,
    user: &hubfleet_store::User,
    groups: &[String],
) -> Result<(), HubError> {
    let wanted: std::collections::BTreeSet<&str> = groups
        .iter()
        .map(|g| g.trim())
        .filter(|g| !g.is_empty() && g.len() <= 255)
        .collect();
    let current = state.store.groups_of_user(user.id).await?;
    let me = [user.name.clone()];
    let group_error = |e: hubfleet_store::GroupError| match e {
        hubfleet_store::GroupError::Store(e) => HubError::Store(e),
        other => HubError::Conflict(other.to_string()),
    };
    for group in &wanted {
        if current.iter().any(|c| c == group) {
            continue;
        }
        if state.store.group(group).await?.is_none() {
            match state.store.create_group(group, &me).await {
                Ok(_) => continue,
                Err(hubfleet_store::GroupError::Store(hubfleet_store::StoreError::Conflict {
                    ..
                })) => {}
                Err(e) => return Err(group_error(e)),
            }
        }
        state
            .store
            .add_group_members(group, &me)
            .await
            .map_err(group_error)?;
    }
    for group in current {
        if !wanted.contains(group.as_str()) {
            state
                .store
                .remove_group_members(&group, &me)
                .await
                .map_err(group_error)?;
        }
    }
    Ok(())
}

/// Where a logged-in browser goes when nothing asked for a page (upstream's `get_next_url`):
/// with `redirect_to_server`, the user's server (its start page when it is not running), else
/// the home page.
pub(crate) async fn landing(
    state: &AppState,
    user: Option<&hubfleet_store::User>,
) -> Result<String, HubError> {
    let Some(user) = user.filter(|_| state.settings().redirect_to_server) else {
        return Ok("/hub/home".to_owned());
    };
    let active = state
        .store
        .server(user.id, "")
        .await?
        .is_some_and(|server| {
            matches!(
                server.phase,
                hubfleet_store::Phase::Starting | hubfleet_store::Phase::Ready
            )
        });
    Ok(if active {
        state.settings().server_url(&user.name, "")
    } else {
        "/hub/spawn".to_owned()
    })
}

/// `next` when there is one, else [`landing`].
pub(crate) async fn or_landing(
    state: &AppState,
    next: Option<String>,
    user: Option<&hubfleet_store::User>,
) -> Result<String, HubError> {
    match next {
        Some(next) => Ok(next),
        None => landing(state, user).await,
    }
}

/// After a successful login: the user is created or updated (admin flag; with
/// `manage_groups` their groups; with `enable_auth_state` their auth_state), a session is
/// stored and the login cookies set; the browser goes to `next` (already checked
/// same-site) or home.
pub async fn complete_login(
    state: &AppState,
    info: UserInfo,
    next: Option<&str>,
) -> Result<Response, HubError> {
    let user = match state.store.user_by_name(&info.name).await? {
        Some(user) => user,
        None => match state
            .store
            .create_user(&info.name, info.admin.unwrap_or(false))
            .await
        {
            Ok(user) => user,
            // Two first logins at once: the other one created the user.
            Err(hubfleet_store::StoreError::Conflict { .. }) => state
                .store
                .user_by_name(&info.name)
                .await?
                .ok_or_else(|| HubError::NotFound(info.name.clone()))?,
            Err(e) => return Err(e.into()),
        },
    };
    if let Some(admin) = info.admin {
        if admin != user.admin {
            state.store.set_admin(user.id, admin).await?;
        }
    }
    let authenticator = state.authenticator();
    let options = authenticator.options();
    if options.manage_groups {
        if let Some(groups) = &info.groups {
            sync_groups(state, &user, groups).await?;
        }
    }
    if options.enable_auth_state {
        if let Some(auth_state) = &info.auth_state {
            state
                .store
                .set_auth_state(user.id, Some(auth_state))
                .await?;
        }
    }
    let session = start_session(state, &user, identity::LOGIN_DAYS).await?;
    state.store.touch_user(user.id, Utc::now()).await?;
    crate::auth_refresh::logged_in(state, &user);
    tracing::info!(user = %user.name, groups = ?info.groups, "logged in");
    let next = match next {
        Some(next) => state.settings().browser_location(next),
        None => landing(state, Some(&user)).await?,
    };
    let mut response = found(&next);
    for cookie in session {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response.into_response())
}

/// A new login session of `days` for `user`: stored, and its two cookies (the login cookie
/// for `/hub/`, the session cookie for the whole site) to set.
pub async fn start_session(
    state: &AppState,
    user: &hubfleet_store::User,
    days: i64,
) -> Result<[HeaderValue; 2], HubError> {
    let secret = hubfleet_store::new_token();
    let session_id = hubfleet_store::new_token();
    let expires = Utc::now() + chrono::Duration::days(days);
    state
        .store
        .create_session(user.id, &session_id, &secret, expires)
        .await?;
    let cookies = state.settings().cookies();
    Ok([
        cookies.set(identity::LOGIN_COOKIE, &secret, "/hub/", Some(days * 86400)),
        cookies.set(identity::SESSION_COOKIE, &session_id, "/", None),
    ])
}
