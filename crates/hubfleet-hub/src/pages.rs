//! The pages people use: login, home, spawn, spawn-pending, and the redirects
//! that bring a browser from a server URL back through login and spawn.

use std::time::Duration;

use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use hubfleet_auth::Credentials;
use hubfleet_store::{Phase, User};
use minijinja::context;
use serde::Deserialize;

use crate::identity::{self, PageUser};
use crate::{urls, AppState, HubError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/hub",
            get(|| async { redirect(StatusCode::MOVED_PERMANENTLY, "/hub/") }),
        )
        .route("/hub/", get(hub_root))
        .route("/hub/login", get(login_page).post(login_submit))
        .route("/hub/logout", get(logout))
        .route("/hub/home", get(home))
        .route("/hub/token", get(token_page))
        .route("/hub/spawn", get(spawn_mine))
        .route("/hub/spawn/{user}", get(spawn_for))
        .route("/hub/spawn/{user}/{server}", get(spawn_named))
        .route("/hub/spawn-pending/{user}", get(spawn_pending))
        .route(
            "/hub/spawn-pending/{user}/{server}",
            get(spawn_pending_named),
        )
        .route("/hub/user/{user}", get(user_url_root).post(user_url_root))
        .route("/hub/user/{user}/", get(user_url_root).post(user_url_root))
        .route(
            "/hub/user/{user}/{*path}",
            get(user_url)
                .post(user_url)
                .put(user_url)
                .patch(user_url)
                .delete(user_url),
        )
        .route("/hub/user-redirect/{*path}", get(user_redirect))
        .route("/hub/error/{code}", get(proxy_error))
}

#[derive(Deserialize, Default)]
pub struct NextQuery {
    next: Option<String>,
}

fn html(status: StatusCode, body: String) -> Response {
    (status, Html(body)).into_response()
}

/// 302 to the login page, remembering where to go after.
pub fn login_redirect(next: &str) -> Response {
    let next = url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>();
    found(&format!("/hub/login?next={next}")).into_response()
}

pub fn error_page(
    state: &AppState,
    status: StatusCode,
    title: &str,
    message: &str,
    log: Option<String>,
) -> Response {
    let body = state.templates().render(
        "error.html",
        context! { status => status.as_u16(), title, message, log, retry => log.as_ref().map(|_| state.settings().with_base("/hub/spawn")) },
    );
    html(status, body)
}

/// The page a proxy shows for its own errors (CHP's `--error-target` asks for
/// `/hub/error/{code}?url=…`). Answered 200: the proxy sends it under the original status.
async fn proxy_error(State(state): State<AppState>, Path(code): Path<String>) -> Response {
    let status = code
        .parse::<u16>()
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok());
    let Some(status) = status else {
        return error_page(
            &state,
            StatusCode::NOT_FOUND,
            "Not Found",
            "No such error page.",
            None,
        );
    };
    let title = status.canonical_reason().unwrap_or("Unknown HTTP Error");
    let message = if status == StatusCode::SERVICE_UNAVAILABLE {
        "Your server appears to be down. Try restarting it from the hub."
    } else {
        ""
    };
    let body = state.templates().render(
        "error.html",
        context! { status => status.as_u16(), title, message, home => true },
    );
    html(StatusCode::OK, body)
}

/// The logged-in user of a page request, or a redirect to the login page.
async fn page_user(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Result<PageUser, Response>, HubError> {
    match identity::page_user(state, headers).await? {
        Some(identity) => Ok(Ok(identity)),
        None => {
            let next = uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/hub/home");
            Ok(Err(login_redirect(next)))
        }
    }
}

macro_rules! logged_in {
    ($state:expr, $headers:expr, $uri:expr) => {
        match page_user(&$state, &$headers, &$uri).await? {
            Ok(identity) => identity,
            Err(redirect) => return Ok(redirect),
        }
    };
}

/// A page with its XSRF cookie (when new), never cached: pages show live state.
pub(crate) fn page_response(
    status: StatusCode,
    body: String,
    cookie: Option<HeaderValue>,
) -> Response {
    let mut response = with_cookie(html(status, body), cookie);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn with_cookie(mut response: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

fn login_form(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    next: Option<&str>,
    username: &str,
    error: Option<&str>,
) -> Response {
    let (xsrf, set) = identity::xsrf_token(state, headers, None);
    let hint = match state.authenticator().kind() {
        "dummy" => Some("Development mode: any password is accepted unless one is configured."),
        _ => None,
    };
    let extra = crate::login::login_page_context(state, next);
    // Only the keys that have a value: a `none` would hide the global of the same name
    // (`hub.templateVars`' `announcement`, 2i2c's logo). `hubfleet.auth.login_announcement`
    // is shown as the login page's announcement.
    let mut values: Vec<(&str, minijinja::Value)> = Vec::new();
    for (key, as_key) in [
        ("login_service", "login_service"),
        ("login_url", "login_url"),
        ("logo_url", "logo_url"),
        ("signup_url", "signup_url"),
        ("login_disabled", "login_disabled"),
        ("announcement", "announcement_login"),
    ] {
        if let Ok(value) = extra.get_attr(key) {
            if !value.is_undefined() && !value.is_none() {
                values.push((as_key, value));
            }
        }
    }
    let extra = minijinja::Value::from_iter(values);
    let body = state.templates().render(
        "login.html",
        context! { xsrf, next, username, error, hint, ..extra },
    );
    let mut response = with_cookie(html(status, body), set);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
) -> Result<Response, HubError> {
    let next = query.next.as_deref().and_then(urls::safe_next);
    if let Some(me) = identity::from_cookie(&state, &headers).await? {
        let to = crate::login::or_landing(&state, next, me.user()).await?;
        return Ok(found(&to).into_response());
    }
    if let Some(redirect) = crate::login::auto_login_redirect(&state, next.as_deref()) {
        return Ok(redirect);
    }
    // 2i2c's `redirect_to`: the community's own page stands in for the login page (it links
    // to the login itself); a login on the way to somewhere (`next`) still shows the form.
    if let Some(page) = state.settings().pages.homepage.redirect_to.as_deref() {
        if next.is_none() {
            return Ok(found(page));
        }
    }
    Ok(login_form(
        &state,
        &headers,
        StatusCode::OK,
        next.as_deref(),
        "",
        None,
    ))
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(rename = "_xsrf", default)]
    xsrf: String,
}

async fn login_submit(
    State(state): State<AppState>,
    connect: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
    Form(form): Form<LoginForm>,
) -> Result<Response, HubError> {
    let next = query.next.as_deref().and_then(urls::safe_next);
    // The form's token is the anonymous one; someone already logged in may send their
    // session's (the login page sends them on, so their form came from another page).
    let session = identity::page_user(&state, &headers)
        .await?
        .and_then(|me| me.identity.session_id);
    let xsrf_ok = identity::xsrf_ok(&state, &headers, None, Some(&form.xsrf))
        || session.is_some_and(|s| identity::xsrf_ok(&state, &headers, Some(&s), Some(&form.xsrf)));
    let refused = |message: &str| {
        login_form(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            next.as_deref(),
            &form.username,
            Some(message),
        )
    };
    if !xsrf_ok {
        return Ok(refused(
            "Your login form expired or came from another site. Please try again.",
        ));
    }
    use crate::password_login::{self, Outcome, Refusal};
    let ip = crate::login::client_ip(connect.as_ref().map(|c| &c.0));
    let credentials = Credentials {
        username: form.username.clone(),
        password: form.password,
    };
    let login_started = std::time::Instant::now();
    let failed = || {
        state
            .settings()
            .metrics
            .login(login_started.elapsed().as_secs_f64(), false)
    };
    let info = match password_login::check_password(&state, &credentials, ip, "login form").await? {
        Outcome::Accepted(info) => info,
        Outcome::Wrong => {
            failed();
            return Ok(refused("Invalid username or password"));
        }
        Outcome::NotAllowed(why) => {
            failed();
            return Ok(refused(&why));
        }
        Outcome::Refused(refusal) => {
            failed();
            let (status, username) = match &refusal {
                // A name that long is not shown again.
                Refusal::NameTooLong(_) => (StatusCode::BAD_REQUEST, ""),
                Refusal::LockedOut(_) => (StatusCode::TOO_MANY_REQUESTS, form.username.as_str()),
            };
            let mut page = login_form(
                &state,
                &headers,
                status,
                next.as_deref(),
                username,
                Some(&refusal.message()),
            );
            if let Refusal::LockedOut(wait) = refusal {
                page.headers_mut().insert(
                    header::RETRY_AFTER,
                    password_login::retry_seconds(wait).into(),
                );
            }
            return Ok(page);
        }
    };
    let response = crate::login::complete_login(&state, info, next.as_deref()).await?;
    state
        .settings()
        .metrics
        .login(login_started.elapsed().as_secs_f64(), true);
    Ok(response)
}

/// `/hub/`: home, or with `redirect_to_server` a logged-in user's server.
async fn hub_root(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, HubError> {
    let me = identity::page_user(&state, &headers).await?;
    let to = crate::login::landing(&state, me.as_ref().map(|me| &me.user)).await?;
    Ok(found(&to).into_response())
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, HubError> {
    let started = std::time::Instant::now();
    let hub_cookies = state.settings().cookies();
    if state.settings().shutdown_on_logout {
        if let Some(me) = identity::page_user(&state, &headers).await? {
            stop_running_servers(&state, &me.user).await;
        }
    }
    if let Some(secret) = hub_cookies.get(&headers, identity::LOGIN_COOKIE) {
        state.store.end_session(secret).await?;
    }
    let after = state
        .authenticator()
        .redirect_login()
        .and_then(|r| r.logout_redirect_url())
        .unwrap_or("/hub/login")
        .to_owned();
    let mut response = found(&after).into_response();
    let cookies = response.headers_mut();
    for (name, path) in [
        (identity::LOGIN_COOKIE, "/hub/"),
        (identity::SESSION_COOKIE, "/"),
        (identity::XSRF_COOKIE, "/hub/"),
        ("jupyterhub-services", "/services"),
    ] {
        cookies.append(header::SET_COOKIE, hub_cookies.clear(name, path));
    }
    state
        .settings()
        .metrics
        .logout(started.elapsed().as_secs_f64());
    Ok(response)
}

/// `shutdown_on_logout`: stop the user's running servers (not those starting or stopping, as
/// upstream). A server that fails to stop does not keep the user logged in.
async fn stop_running_servers(state: &AppState, user: &hubfleet_store::User) {
    let servers = match state.store.servers_of(user.id).await {
        Ok(servers) => servers,
        Err(e) => {
            tracing::warn!(user = %user.name, error = %e, "logout: listing servers to stop");
            return;
        }
    };
    let running = servers
        .iter()
        .filter(|server| server.phase == hubfleet_store::Phase::Ready);
    let stops = running.map(|server| async move {
        tracing::info!(user = %user.name, server = %server.name, "stopping server at logout");
        if let Err(e) = state.lifecycle.stop(user, &server.name).await {
            tracing::warn!(user = %user.name, server = %server.name, error = %e, "logout: stopping server");
        }
    });
    futures_util::future::join_all(stops).await;
}

async fn home(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, HubError> {
    let me = logged_in!(state, headers, uri);
    let mut stored = state
        .store
        .servers_of_users(&[me.user.id])
        .await?
        .remove(&me.user.id)
        .unwrap_or_default();
    stored.sort_by(|a, b| a.name.cmp(&b.name));
    let named_servers = state.settings().allow_named_servers;
    let mut servers = Vec::new();
    if !stored.iter().any(|s| s.name.is_empty()) {
        servers.push(context! { name => "", phase => "stopped", label => "stopped" });
    }
    for server in &stored {
        if !server.name.is_empty() && !named_servers {
            continue;
        }
        let phase = server.phase.as_str();
        servers.push(context! {
            name => server.name,
            phase,
            label => match phase { "ready" => "running", other => other },
            failed => server.failed_reason.as_deref().map(first_line),
            last_activity => server.last_activity.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()),
            url => state.settings().server_url(&me.user.name, &server.name),
        });
    }
    let named_count = stored.iter().filter(|s| !s.name.is_empty()).count();
    // Sharing needs the `shares` scope (upstream's default `user` role does not have it).
    let can_share = me.identity.scopes.parsed().get("shares").is_some();
    let (xsrf, set) = identity::xsrf_token(&state, &headers, me.session());
    let body = state.templates().render(
        "home.html",
        context! {
            servers, named_servers, named_count, can_share,
            named_limit => state.settings().named_server_limit_per_user,
            xsrf, ..crate::templates::nav(&me)
        },
    );
    Ok(page_response(StatusCode::OK, body, set))
}

/// `/hub/token`: the user's API tokens (the list and changes go through the REST API).
async fn token_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, HubError> {
    let me = logged_in!(state, headers, uri);
    let (xsrf, set) = identity::xsrf_token(&state, &headers, me.session());
    let body = state.templates().render(
        "token.html",
        context! { xsrf, ..crate::templates::nav(&me) },
    );
    Ok(page_response(StatusCode::OK, body, set))
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

/// The user a page acts on: yourself, or anyone for an admin.
pub(crate) async fn target_user(
    state: &AppState,
    me: &PageUser,
    name: &str,
) -> Result<User, HubError> {
    if name == me.user.name {
        return Ok(me.user.clone());
    }
    crate::access::check(
        state,
        &me.identity.scopes,
        &["servers"],
        &hubfleet_rbac::Target::Server(name, ""),
    )
    .await?;
    state
        .store
        .user_by_name(name)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("No such user: {name}")))
}

async fn spawn_mine(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<NextQuery>,
) -> Result<Response, HubError> {
    let me = logged_in!(state, headers, uri);
    let user = me.user.clone();
    form_or_spawn(state, &headers, &me, user, "", query.next).await
}

/// `GET /hub/spawn…`: the options form when there is one to fill in, else the start itself.
async fn form_or_spawn(
    state: AppState,
    headers: &HeaderMap,
    me: &PageUser,
    user: User,
    server_name: &str,
    next: Option<String>,
) -> Result<Response, HubError> {
    let form =
        crate::spawn_page::options_form(&state, headers, me, &user, server_name, next.as_deref());
    if let Some(page) = form.await? {
        return Ok(page);
    }
    // A link on another site (or an `<img>`) must not start servers: without proof that the
    // hub's own pages (or the person) asked, show the Start button instead.
    if !identity::same_origin_navigation(headers) {
        return crate::spawn_page::confirm_start(&state, headers, me, &user, server_name, next)
            .await;
    }
    spawn_page(state, user, server_name, next).await
}

async fn spawn_for(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<NextQuery>,
) -> Result<Response, HubError> {
    let me = logged_in!(state, headers, uri);
    let user = match target_user(&state, &me, &name).await {
        Ok(user) => user,
        Err(e) => {
            return Ok(error_page(
                &state,
                e.status(),
                "Cannot start this server",
                &e.to_string(),
                None,
            ))
        }
    };
    form_or_spawn(state, &headers, &me, user, "", query.next).await
}

/// `GET /hub/spawn/<user>/<server>`: a named server, created here if it is new.
async fn spawn_named(
    State(state): State<AppState>,
    Path((name, server_name)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<NextQuery>,
) -> Result<Response, HubError> {
    let me = logged_in!(state, headers, uri);
    let admitted = match target_user(&state, &me, &name).await {
        Ok(user) => crate::api::users::admit_named_server(&state, &user, &server_name)
            .await
            .map(|()| user),
        Err(e) => Err(e),
    };
    match admitted {
        Ok(user) => form_or_spawn(state, &headers, &me, user, &server_name, query.next).await,
        Err(e) => Ok(error_page(
            &state,
            e.status(),
            "Cannot start this server",
            &e.to_string(),
            None,
        )),
    }
}

fn pending_url(user: &str, server_name: &str, next: Option<&str>) -> String {
    let mut url = format!("/hub/spawn-pending/{}", urls::escape_path(user));
    if !server_name.is_empty() {
        url.push('/');
        url.push_str(&urls::escape_path(server_name));
    }
    if let Some(next) = next {
        url.push_str("?next=");
        url.extend(url::form_urlencoded::byte_serialize(next.as_bytes()));
    }
    url
}

/// Start the server (if needed), wait up to a second, then show progress.
pub(crate) async fn spawn_page(
    state: AppState,
    user: User,
    server_name: &str,
    next: Option<String>,
) -> Result<Response, HubError> {
    let next = next
        .as_deref()
        .and_then(urls::safe_next)
        .map(|next| state.settings().browser_location(&next));
    let server_url = state.settings().server_url(&user.name, server_name);
    if let Err(e) = crate::auth_refresh::before_spawn(&state, &user).await {
        return Ok(error_page(
            &state,
            e.status(),
            "Cannot start now",
            &e.to_string(),
            None,
        ));
    }
    match state.lifecycle.spawn(&user, server_name).await {
        Ok(crate::lifecycle::SpawnOutcome::AlreadyRunning) => {
            return Ok(found(next.as_deref().unwrap_or(&server_url)).into_response())
        }
        Ok(_) => {}
        Err(e @ HubError::BadRequest(_)) => {
            return Ok(error_page(
                &state,
                StatusCode::BAD_REQUEST,
                "Cannot start now",
                &e.to_string(),
                None,
            ))
        }
        Err(e @ (HubError::SpawnThrottled(_) | HubError::ActiveServerLimit)) => {
            // Upstream's error page, status and `Retry-After` for its spawn limits.
            let mut page = error_page(
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests",
                &e.to_string(),
                None,
            );
            if let Some(seconds) = e.retry_after() {
                page.headers_mut()
                    .insert(header::RETRY_AFTER, seconds.into());
            }
            return Ok(page);
        }
        Err(e) => return Err(e),
    }
    if state
        .lifecycle
        .wait_ready(&user.name, server_name, Duration::from_secs(1))
        .await
        == crate::lifecycle::StartResult::Ready
    {
        return Ok(found(next.as_deref().unwrap_or(&server_url)).into_response());
    }
    Ok(found(&pending_url(&user.name, server_name, next.as_deref())).into_response())
}

async fn spawn_pending(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<NextQuery>,
) -> Result<Response, HubError> {
    let me = logged_in!(state, headers, uri);
    pending_page(state, &headers, &me, &name, "", query.next).await
}

async fn spawn_pending_named(
    State(state): State<AppState>,
    Path((name, server_name)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<NextQuery>,
) -> Result<Response, HubError> {
    let me = logged_in!(state, headers, uri);
    pending_page(state, &headers, &me, &name, &server_name, query.next).await
}

/// How much of a server's log the failed-spawn page shows.
const FAILED_SPAWN_LOG_BYTES: u64 = 4000;

/// `/hub/spawn-pending/<user>[/<server>]`: progress while starting, the log if the start
/// failed, and on to the server once it is ready.
async fn pending_page(
    state: AppState,
    headers: &HeaderMap,
    me: &PageUser,
    name: &str,
    server_name: &str,
    next: Option<String>,
) -> Result<Response, HubError> {
    let user = match target_user(&state, me, name).await {
        Ok(user) => user,
        Err(e) => {
            return Ok(error_page(
                &state,
                e.status(),
                "Not your server",
                &e.to_string(),
                None,
            ))
        }
    };
    let next = next.as_deref().and_then(urls::safe_next);
    let server_url = state.settings().server_url(&user.name, server_name);
    let server = state.store.server(user.id, server_name).await?;
    match server
        .as_ref()
        .map(|s| (s.phase, s.failed_reason.as_deref()))
    {
        Some((Phase::Ready, _)) => Ok(found(
            &next
                .as_deref()
                .map(|next| state.settings().browser_location(next))
                .unwrap_or(server_url),
        )
        .into_response()),
        Some((Phase::Starting, _)) => {
            let (xsrf, set) = identity::xsrf_token(&state, headers, me.session());
            let server_api = if server_name.is_empty() {
                "server".to_string()
            } else {
                format!("servers/{}", urls::escape_path(server_name))
            };
            let progress_url = state.settings().with_base(&format!(
                "/hub/api/users/{}/{server_api}/progress?_xsrf={xsrf}",
                urls::escape_path(&user.name)
            ));
            let next = next.map(|next| state.settings().browser_location(&next));
            let body = state.templates().render(
                "spawn_pending.html",
                context! { progress_url, next, xsrf, server_name, ..crate::templates::nav(me) },
            );
            Ok(page_response(StatusCode::OK, body, set))
        }
        Some((Phase::Stopped, Some(reason))) => {
            let (summary, log) = match reason.split_once("\n") {
                Some((summary, log)) => (summary.to_string(), Some(log.to_string())),
                None => (reason.to_string(), None),
            };
            let log = match log {
                Some(log) => Some(log),
                None => state
                    .lifecycle
                    .log_tail(&user, server_name, FAILED_SPAWN_LOG_BYTES)
                    .await?
                    .map(|log| log.text),
            };
            Ok(error_page(
                &state,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Spawn failed",
                &format!("Spawn failed: {summary}"),
                log,
            ))
        }
        Some((Phase::Stopping, _)) => Ok(error_page(
            &state,
            StatusCode::ACCEPTED,
            "Stopping",
            "Your server is stopping. Reload this page in a few seconds to start it again.",
            None,
        )),
        _ => Ok(not_running(
            &state,
            &state.settings().server_prefix(&user.name, server_name),
            &user.name,
            server_name,
        )),
    }
}

fn not_running(state: &AppState, path: &str, user: &str, server_name: &str) -> Response {
    let spawn_url = format!(
        "{}?next={}",
        state.settings().with_base(&spawn_path(user, server_name)),
        url::form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>()
    );
    let body = state
        .templates()
        .render("not_running.html", context! { user, path, spawn_url });
    html(StatusCode::FAILED_DEPENDENCY, body)
}

async fn user_url_root(
    state: State<AppState>,
    Path(name): Path<String>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    query: RawQuery,
) -> Result<Response, HubError> {
    user_url_inner(state, name, String::new(), method, headers, uri, query).await
}

async fn user_url(
    state: State<AppState>,
    Path((name, path)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    query: RawQuery,
) -> Result<Response, HubError> {
    user_url_inner(state, name, path, method, headers, uri, query).await
}

/// `/hub/user/<name>/…`: reached when the proxy has no route for `/user/<name>/…`
/// (protocol §1, `UserUrlHandler`).
async fn user_url_inner(
    State(state): State<AppState>,
    name: String,
    path: String,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Result<Response, HubError> {
    // Rebuild from the raw (still percent-encoded) path: `%23`, `%3F` or `%2F` in a
    // file name must survive the round trip.
    let raw_rest = uri
        .path()
        .strip_prefix("/hub/user/")
        .and_then(|rest| rest.split_once('/'))
        .map(|(_, rest)| rest)
        .unwrap_or("");
    let server_path = format!("{}{}", state.settings().server_prefix(&name, ""), raw_rest);
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"))
        || path.split('/').any(|segment| segment == "api");
    let not_running_json = |server_name: &str| {
        let message = format!(
            "JupyterHub server no longer running at {server_path}. Restart the server at {}",
            state.settings().with_base(&spawn_path(&name, server_name))
        );
        crate::api::json_error(StatusCode::FAILED_DEPENDENCY, &message)
    };
    // `/user/<name>/<server>/…` may be a named server: the first segment, when more follows.
    let candidate = path
        .split_once('/')
        .map(|(first, _)| first)
        .filter(|first| state.settings().allow_named_servers && !first.is_empty());
    let me = match identity::identify(&state, &Method::GET, &headers, None).await? {
        Some(me) => me,
        None if method == Method::GET && !wants_json => {
            return Ok(login_redirect(
                uri.path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/hub/home"),
            ));
        }
        None => {
            return Err(HubError::Forbidden(
                hubfleet_rbac::MISSING_CREDENTIALS_MESSAGE.into(),
            ))
        }
    };
    let mut allowed = false;
    for server_name in std::iter::once("").chain(candidate) {
        let target = hubfleet_rbac::Target::Server(&name, server_name);
        allowed |= crate::access::check(&state, &me.scopes, &["access:servers"], &target)
            .await
            .is_ok();
    }
    if !allowed {
        return Err(HubError::NotFound(format!(
            "No access to the server at {server_path}"
        )));
    }
    let Some(user) = state.store.user_by_name(&name).await? else {
        return Err(HubError::NotFound(format!("No such user: {name}")));
    };
    let mut server_name = "";
    let mut server = None;
    if let Some(candidate) = candidate {
        server = state.store.server(user.id, candidate).await?;
        if server.is_some() {
            server_name = candidate;
        }
    }
    if server.is_none() {
        server = state.store.server(user.id, "").await?;
    }
    let phase = server.as_ref().map(|s| s.phase).unwrap_or(Phase::Stopped);
    let failed = server.as_ref().is_some_and(|s| s.failed_reason.is_some());
    if phase == Phase::Ready {
        // The route exists now; send the browser back, guarding against loops.
        let redirects: u32 = url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "redirects")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        if redirects >= 4 {
            return Err(HubError::SpawnFailed("Redirect loop detected.".into()));
        }
        let rest: Vec<(String, String)> =
            url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
                .filter(|(k, _)| k != "redirects")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        let target = {
            let mut ser = url::form_urlencoded::Serializer::new(String::new());
            ser.extend_pairs(rest);
            ser.append_pair("redirects", &(redirects + 1).to_string());
            format!(
                "{}?{}",
                state.settings().browser_location(&server_path),
                ser.finish()
            )
        };
        tokio::time::sleep(Duration::from_millis(100 * u64::from(redirects))).await;
        return Ok(found(&target).into_response());
    }
    if method != Method::GET || wants_json {
        return Ok(not_running_json(server_name));
    }
    let full = match &query {
        Some(q) => format!("{server_path}?{q}"),
        None => server_path.clone(),
    };
    if phase == Phase::Starting || failed {
        return Ok(see_other(&pending_url(&name, server_name, Some(&full))));
    }
    Ok(not_running(&state, &full, &name, server_name))
}

/// `/hub/spawn/<user>[/<server>]`.
fn spawn_path(user: &str, server_name: &str) -> String {
    let mut path = format!("/hub/spawn/{}", urls::escape_path(user));
    if !server_name.is_empty() {
        path.push('/');
        path.push_str(&urls::escape_path(server_name));
    }
    path
}

/// 302 Found, as JupyterHub redirects (axum's `Redirect::to` is a 303).
pub fn found(location: &str) -> Response {
    redirect(StatusCode::FOUND, location)
}

fn see_other(location: &str) -> Response {
    redirect(StatusCode::SEE_OTHER, location)
}

fn redirect(status: StatusCode, location: &str) -> Response {
    // `//host/…` and `/\host/…` are other sites to a browser: never send one there.
    let location = if location.starts_with("//") || location.starts_with("/\\") {
        format!("/{}", location.trim_start_matches(['/', '\\']))
    } else {
        location.to_owned()
    };
    match HeaderValue::from_str(&location) {
        Ok(value) => (status, [(header::LOCATION, value)]).into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "invalid redirect target").into_response(),
    }
}

/// `/hub/user-redirect/<path>`: the same path on the logged-in user's server,
/// starting it first if needed (nbgitpuller links rely on this).
async fn user_redirect(
    State(state): State<AppState>,
    Path(path): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Result<Response, HubError> {
    let me = logged_in!(state, headers, uri);
    let mut next = format!(
        "{}{}",
        state.settings().server_prefix(&me.user.name, ""),
        urls::escape_full_path(&path)
    );
    if let Some(query) = query {
        next.push('?');
        next.push_str(&query);
    }
    let next = url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>();
    Ok(found(&format!("/hub/spawn?next={next}")).into_response())
}

/// Anything the router does not know. Outside `/hub/` it is a server URL that
/// has no route (the server is not running): send it to `/hub/…` as JupyterHub does.
pub async fn fallback(State(state): State<AppState>, uri: Uri) -> Response {
    let path = uri.path();
    if path == "/" {
        return found("/hub/").into_response();
    }
    if path.starts_with("//") || path.contains('\\') {
        // Browsers never send these; redirecting them would make a link to another site.
        return error_page(
            &state,
            StatusCode::NOT_FOUND,
            "Not Found",
            "There is no page here.",
            None,
        );
    }
    if path.starts_with("/hub/api/") {
        return crate::api::json_error(StatusCode::NOT_FOUND, "Not found");
    }
    if !path.starts_with("/hub/") {
        // `/user/<name>` and `/services/<name>` get their trailing slash first.
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if segments.len() == 2
            && matches!(segments[0], "user" | "services")
            && !segments[1].is_empty()
        {
            return redirect(StatusCode::MOVED_PERMANENTLY, &format!("{path}/"));
        }
        let target = match uri.query() {
            Some(q) => format!("/hub{path}?{q}"),
            None => format!("/hub{path}"),
        };
        return found(&target).into_response();
    }
    error_page(
        &state,
        StatusCode::NOT_FOUND,
        "Not Found",
        &format!("There is no page at {path}."),
        None,
    )
}

/// With subdomains, users' and services' hosts (`alice.hub.example.org`) are theirs alone: the
/// hub serves nothing there. A request that reaches the hub on such a host (no route: the server
/// is not running, or the path is another user's) goes to the hub's own host, as upstream's
/// `PrefixRedirectHandler` does. Static assets stay, for the proxy's error pages.
pub(crate) async fn keep_users_hosts_for_users(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(sub) = &state.settings().subdomain_host else {
        return next.run(request).await;
    };
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or_default();
    let path = request.uri().path();
    if !sub.is_under(host) || path.starts_with("/hub/static/") {
        return next.run(request).await;
    }
    let query = request
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let on_hub = if path.starts_with("/hub/") || path == "/hub" {
        format!("{path}{query}")
    } else if path == "/" {
        "/hub/".to_owned()
    } else {
        format!("/hub{path}{query}")
    };
    if path.starts_with("/hub/api/") || (path.starts_with("/hub/") && !is_read(request.method())) {
        return crate::api::json_error(
            StatusCode::NOT_FOUND,
            &format!(
                "The hub is at {}{}; it answers nothing on users' hosts",
                sub.hub_origin(),
                state.settings().with_base("/hub/")
            ),
        );
    }
    let hub_path = if on_hub.starts_with("//") {
        format!("/{}", on_hub.trim_start_matches('/'))
    } else {
        on_hub
    };
    found(&format!(
        "{}{}",
        sub.hub_origin(),
        state.settings().with_base(&hub_path)
    ))
}

fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
}

/// Under `hub.baseUrl`, the hub's code writes paths as if at `/` (`/hub/home`): redirects go
/// back under the base URL here.
pub(crate) async fn redirects_under_base_url(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    if state.settings().base_url == "/" {
        return response;
    }
    let moved = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|location| state.settings().with_base(location));
    if let Some(location) = moved.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}
