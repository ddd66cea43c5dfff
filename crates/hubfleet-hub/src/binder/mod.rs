//! A Binder-style hub (`binderhub-service:`): BinderHub's launch URLs and event stream, served
//! by the hub on the local spawner.
//!
//! - `GET /hub/binder/v2/<provider>/<spec>[?urlpath=|labpath=]`: the launch page, which follows
//!   the event stream, shows the build log and opens the server when it is ready;
//! - `GET /hub/binder/build/<provider>/<spec>`: the event stream (SSE) of `{"phase", "message"}`
//!   events, phases `waiting`, `fetching`, `building`, `built`, `launching`, `ready` (with `url`
//!   and `token`) and `failed`, as BinderHub sends them.
//!
//! Without `config.BinderHub.auth_enabled` a visitor who is not logged in gets a temporary user
//! (`binder-<random>`) when the event stream starts (the page alone makes none), deleted once its server has stopped (the idle culler stops it); a
//! logged-in user launches into their server `binder`.

pub mod build;
pub mod spec;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use hubfleet_store::{NewToken, Phase, ServerUpdate, User};
use minijinja::context;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;

use crate::identity;
use crate::pages::{error_page, page_response};
use crate::{AppState, HubError};
use spec::{RepoSpec, SpecRules};

/// The name temporary users' names start with.
pub const TEMPORARY_PREFIX: &str = "binder-";
/// The server a logged-in user launches into.
pub const LOGGED_IN_SERVER: &str = "binder";

/// `binderhub-service:` as the hub uses it.
#[derive(Clone, Debug)]
pub struct BinderSettings {
    pub data_dir: PathBuf,
    /// The environment builds layer on (`hubfleet.local.python_env`).
    pub base_env: PathBuf,
    pub auth_enabled: bool,
    pub rules: SpecRules,
    pub concurrent_builds: usize,
    pub build_timeout: Duration,
    pub postbuild_timeout: Duration,
    pub disk_limit: Option<u64>,
    /// Temporary users at once (`binderhub-service.hubfleet.max_temporary_users`).
    pub max_temporary_users: usize,
    /// The account builds run as (`binderhub-service.hubfleet.build_user`, on a root hub);
    /// none: the hub's own.
    pub build_account: Option<BuildAccount>,
}

/// An unprivileged Unix account that builds run as.
#[derive(Clone, Debug)]
pub struct BuildAccount {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl BinderSettings {
    pub fn environments_dir(&self) -> PathBuf {
        self.data_dir.join("binder/environments")
    }

    pub fn building_dir(&self) -> PathBuf {
        self.data_dir.join("binder/building")
    }

    pub fn environment_dir(&self, key: &str) -> PathBuf {
        self.environments_dir().join(key)
    }
}

/// The builder and settings, shared by the handlers.
#[derive(Clone)]
pub struct Binder {
    pub settings: Arc<BinderSettings>,
    pub builder: build::Builder,
    /// Users with a launch under way (a build can take minutes): not deleted meanwhile.
    launching: Arc<std::sync::Mutex<std::collections::HashSet<i64>>>,
    /// Held while counting temporary users and making one, so two visitors at once cannot
    /// both take the last place.
    making_temporary: Arc<tokio::sync::Mutex<()>>,
}

/// Takes a user out of [`Binder::launching`] when the launch ends, however it ends.
struct Launching(Binder, i64);

impl Drop for Launching {
    fn drop(&mut self) {
        self.0.launching.lock().expect("launching").remove(&self.1);
    }
}

impl Binder {
    pub fn new(settings: BinderSettings) -> Binder {
        let settings = Arc::new(settings);
        Binder {
            builder: build::Builder::new(settings.clone()),
            settings,
            launching: Arc::default(),
            making_temporary: Arc::default(),
        }
    }
}

/// One event of the stream, as BinderHub sends them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BinderEvent {
    pub phase: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(rename = "imageName", skip_serializing_if = "Option::is_none")]
    pub image_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binder_ref_url: Option<String>,
}

impl BinderEvent {
    pub fn new(phase: &str, message: impl Into<String>) -> BinderEvent {
        BinderEvent {
            phase: phase.to_owned(),
            message: message.into(),
            ..Default::default()
        }
    }

    fn failed(message: &str) -> BinderEvent {
        BinderEvent::new("failed", format!("{}\n", message.trim_end()))
    }
}

/// What a server launched from a repository runs: kept in its `user_options` under `binder`.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct LaunchOptions {
    environment: String,
    repo_dir: String,
    repo_url: String,
    commit: String,
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/hub/binder/v2/{provider}/{*spec}", get(launch_page))
        .route("/hub/binder/build/{provider}/{*spec}", get(event_stream))
}

#[derive(Deserialize, Default)]
struct PageQuery {
    urlpath: Option<String>,
    labpath: Option<String>,
}

/// The spec as sent: axum's path extractor unescapes, and the `git` provider's URL must stay
/// escaped until it is split from the ref.
fn raw_spec(uri: &axum::http::Uri, kind: &str, provider: &str) -> String {
    let prefix = format!("/hub/binder/{kind}/{provider}/");
    let path = uri.path();
    match path.find(&prefix) {
        Some(i) => path[i + prefix.len()..].to_owned(),
        None => String::new(),
    }
}

/// A path inside the server (no scheme, host, `..` or backslash): never a way elsewhere.
fn safe_inner_path(path: &str) -> bool {
    !path.contains("://")
        && !path.starts_with("//")
        && !path.contains('\\')
        && !path.split('/').any(|s| s == ".." || s == ".")
        && !path.chars().any(|c| c.is_control())
}

fn check_spec(
    binder: &Binder,
    provider: &str,
    raw: &str,
) -> Result<RepoSpec, (StatusCode, String)> {
    let spec = spec::parse(provider, raw).map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    if let Some(refusal) = binder.settings.rules.refusal(&spec) {
        return Err((StatusCode::FORBIDDEN, refusal));
    }
    Ok(spec)
}

fn binder_of(state: &AppState) -> Result<&Binder, HubError> {
    state.binder.as_ref().ok_or_else(|| {
        HubError::NotFound(
            "this hub launches no repositories (binderhub-service.enabled is off)".into(),
        )
    })
}

async fn launch_page(
    State(state): State<AppState>,
    UrlPath((provider, _)): UrlPath<(String, String)>,
    Query(query): Query<PageQuery>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Response, HubError> {
    let binder = binder_of(&state)?;
    let raw = raw_spec(&uri, "v2", &provider);
    let spec = match check_spec(binder, &provider, &raw) {
        Ok(spec) => spec,
        Err((status, message)) => {
            return Ok(error_page(
                &state,
                status,
                "Cannot launch this repository",
                &message,
                None,
            ))
        }
    };
    for path in [&query.urlpath, &query.labpath].into_iter().flatten() {
        if !safe_inner_path(path) {
            return Ok(error_page(
                &state,
                StatusCode::BAD_REQUEST,
                "Cannot launch this repository",
                &format!("`{path}` is not a path inside the server: give a relative path such as `lab/tree/index.ipynb`"),
                None,
            ));
        }
    }
    // The page makes no user: crawlers and link previews fetch it too. The event stream does.
    let user = match visitor(&state, binder, &headers, false).await? {
        Visitor::Known(user) => Some(user.name),
        // (`New` is only made when asked.)
        Visitor::Anonymous | Visitor::New(..) => None,
        Visitor::MustLogIn => {
            let next = state.settings().with_base(&format!(
                "{}{}",
                uri.path(),
                uri.query().map(|q| format!("?{q}")).unwrap_or_default()
            ));
            return Ok(crate::pages::login_redirect(&next));
        }
        Visitor::Full(message) => {
            return Ok(error_page(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                "This hub is full",
                &message,
                None,
            ))
        }
    };
    let build_url = state
        .settings()
        .with_base(&format!("/hub/binder/build/{provider}/{raw}"));
    let body = state.templates().render(
        "binder.html",
        context! {
            repo => spec.url.clone(),
            ref => spec.git_ref.clone(),
            provider => spec.provider.clone(),
            build_url,
            urlpath => query.urlpath,
            labpath => query.labpath,
            user,
        },
    );
    Ok(page_response(StatusCode::OK, body, None))
}

fn is_temporary(name: &str) -> bool {
    name.strip_prefix(TEMPORARY_PREFIX)
        .is_some_and(|rest| rest.len() == 16 && rest.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Who a launch is for.
enum Visitor {
    /// A logged-in user, or the temporary user this browser already has (its cookie).
    Known(User),
    /// A temporary user made for this visitor, and the cookies that log the browser in.
    New(User, Vec<HeaderValue>),
    /// A visitor who would get a temporary user, asked without making one (there is room).
    Anonymous,
    /// `auth_enabled`, and the visitor is not logged in as a user of the hub.
    MustLogIn,
    /// As many temporary users as `max_temporary_users` allows exist: why nothing was made.
    Full(String),
}

/// The user a request launches as. A temporary user who comes back (a reload, another link)
/// is the same user, so reloading cannot make users and servers without end. A new temporary
/// user is made only when `make` (the event stream: a launch); otherwise only the cap is asked.
async fn visitor(
    state: &AppState,
    binder: &Binder,
    headers: &HeaderMap,
    make: bool,
) -> Result<Visitor, HubError> {
    let me = identity::page_user(state, headers).await?;
    Ok(match me {
        Some(me) if !is_temporary(&me.user.name) => Visitor::Known(me.user),
        _ if binder.settings.auth_enabled => Visitor::MustLogIn,
        Some(me) => Visitor::Known(me.user),
        None if !make => match full(state, binder).await? {
            Some(message) => Visitor::Full(message),
            None => Visitor::Anonymous,
        },
        None => match temporary_user(state, binder).await? {
            Ok((user, cookies)) => Visitor::New(user, cookies),
            Err(message) => Visitor::Full(message),
        },
    })
}

/// Temporary users that exist (running, launching, or stopped and not yet deleted).
async fn temporary_users(state: &AppState, cap: usize) -> Result<Vec<User>, HubError> {
    let query = hubfleet_store::UserQuery {
        name_filter: Some(TEMPORARY_PREFIX.to_owned()),
        // `name_filter` matches anywhere in the name: leave room for other names with it.
        limit: (cap as i64).saturating_mul(4).max(1000),
        ..Default::default()
    };
    let (users, _) = state.store.query_users(&query).await?;
    Ok(users
        .into_iter()
        .filter(|u| is_temporary(&u.name))
        .collect())
}

/// Why a new visitor gets no temporary user, when there are `max_temporary_users` already.
async fn full(state: &AppState, binder: &Binder) -> Result<Option<String>, HubError> {
    let cap = binder.settings.max_temporary_users;
    let existing = temporary_users(state, cap).await?.len();
    if existing < cap {
        return Ok(None);
    }
    tracing::warn!(
        existing,
        cap,
        "binder launch refused: too many temporary users"
    );
    Ok(Some(format!(
        "This hub has as many visitors launching repositories as it allows ({cap}, binderhub-service.hubfleet.max_temporary_users). Try again in a few minutes: servers that are left idle are stopped and their places freed."
    )))
}

/// A new temporary user, logged in (the user and the login cookies), or, when there are
/// `max_temporary_users` already, why none was made.
async fn temporary_user(
    state: &AppState,
    binder: &Binder,
) -> Result<Result<(User, Vec<HeaderValue>), String>, HubError> {
    let _making = binder.making_temporary.lock().await;
    if let Some(message) = full(state, binder).await? {
        return Ok(Err(message));
    }
    let name = format!(
        "{TEMPORARY_PREFIX}{}",
        &hex::encode(rand::random::<[u8; 8]>())
    );
    let user = state.store.create_user(&name, false).await?;
    // A temporary user lives as long as its server; a day bounds a forgotten session.
    let session = crate::login::start_session(state, &user, 1).await?;
    tracing::info!(user = %name, "temporary binder user created");
    Ok(Ok((user, session.into())))
}

async fn event_stream(
    State(state): State<AppState>,
    UrlPath((provider, _)): UrlPath<(String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Response, HubError> {
    let binder = binder_of(&state)?.clone();
    let raw = raw_spec(&uri, "build", &provider);
    let (tx, rx) = mpsc::unbounded_channel::<BinderEvent>();
    let mut cookies = Vec::new();
    match check_spec(&binder, &provider, &raw) {
        Err((_, message)) => {
            tx.send(BinderEvent::failed(&message)).ok();
        }
        Ok(spec) => {
            let user = match visitor(&state, &binder, &headers, true).await? {
                Visitor::Known(user) => Some(user),
                Visitor::Anonymous => {
                    // (Only when not asked to make a user.)
                    tx.send(BinderEvent::failed("no user to launch as")).ok();
                    None
                }
                Visitor::New(user, set) => {
                    cookies = set;
                    Some(user)
                }
                Visitor::MustLogIn => {
                    tx.send(BinderEvent::failed(
                        "this hub launches repositories for logged-in users: log in first",
                    ))
                    .ok();
                    None
                }
                Visitor::Full(message) => {
                    tx.send(BinderEvent::failed(&message)).ok();
                    None
                }
            };
            if let Some(user) = user {
                // The launch goes on if the page goes away: the build is cached either way.
                binder.launching.lock().expect("launching").insert(user.id);
                let launching = Launching(binder.clone(), user.id);
                tokio::spawn(async move {
                    let _launching = launching;
                    if let Err(message) = launch(&state, &binder, &spec, &user, &tx).await {
                        tracing::info!(user = %user.name, repo = %spec.url, error = %message, "binder launch failed");
                        tx.send(BinderEvent::failed(&message)).ok();
                    }
                });
            }
        }
    }
    let events = UnboundedReceiverStream::new(rx).map(|event| {
        Ok::<_, std::convert::Infallible>(
            Event::default().data(serde_json::to_string(&event).unwrap_or_default()),
        )
    });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for cookie in cookies {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// Build (or find) the environment, start the server in it and send `ready`.
async fn launch(
    state: &AppState,
    binder: &Binder,
    spec: &RepoSpec,
    user: &User,
    tx: &mpsc::UnboundedSender<BinderEvent>,
) -> Result<(), String> {
    let built = binder.builder.build(spec, tx).await?;
    let mut event = BinderEvent::new(
        "built",
        match built.fresh {
            true => "Built the environment, launching...\n",
            false => "Found built environment, launching...\n",
        },
    );
    event.image_name = Some(built.key.clone());
    tx.send(event).ok();
    let server_name = if is_temporary(&user.name) {
        ""
    } else {
        LOGGED_IN_SERVER
    };
    let db = |e: hubfleet_store::StoreError| format!("the hub's database: {e}");
    let existing = state.store.server(user.id, server_name).await.map_err(db)?;
    let running_this = existing.as_ref().is_some_and(|server| {
        matches!(server.phase, Phase::Ready | Phase::Starting)
            && runs_launch(&server.user_options, &spec.url, &built.commit)
    });
    if running_this {
        // A reload, or the same link again: the server it started is the one to open.
        tx.send(BinderEvent::new(
            "launching",
            "Your server already runs this commit: opening it\n",
        ))
        .ok();
    } else {
        start_server(state, spec, user, server_name, &built, existing, tx).await?;
    }
    send_ready(state, spec, user, server_name, built, tx).await
}

/// Whether a server's `user_options` are a launch of `url` at `commit`.
fn runs_launch(user_options: &serde_json::Value, url: &str, commit: &str) -> bool {
    user_options
        .get("binder")
        .and_then(|o| serde_json::from_value::<LaunchOptions>(o.clone()).ok())
        .is_some_and(|o| o.repo_url == url && o.commit == commit)
}

/// Start `server_name` in the built environment; a server of another launch is stopped first
/// (a user has one binder server, running the last repository they launched).
async fn start_server(
    state: &AppState,
    spec: &RepoSpec,
    user: &User,
    server_name: &str,
    built: &build::Built,
    existing: Option<hubfleet_store::Server>,
    tx: &mpsc::UnboundedSender<BinderEvent>,
) -> Result<(), String> {
    let db = |e: hubfleet_store::StoreError| format!("the hub's database: {e}");
    let lifecycle = &state.lifecycle;
    if existing.is_some_and(|server| server.phase != Phase::Stopped) {
        tx.send(BinderEvent::new(
            "launching",
            "Stopping your previous binder server\n",
        ))
        .ok();
        lifecycle
            .stop(user, server_name)
            .await
            .map_err(|e| e.to_string())?;
    }
    let server = state
        .store
        .ensure_server(user.id, server_name)
        .await
        .map_err(db)?;
    let options = LaunchOptions {
        environment: built.key.clone(),
        repo_dir: spec.dir_name(),
        repo_url: spec.url.clone(),
        commit: built.commit.clone(),
    };
    state
        .store
        .update_server(
            server.id,
            &ServerUpdate {
                user_options: Some(serde_json::json!({ "binder": options })),
                ..Default::default()
            },
        )
        .await
        .map_err(db)?;
    tx.send(BinderEvent::new("launching", "Launching server...\n"))
        .ok();
    // Subscribe before the start can finish, so no event is missed.
    lifecycle
        .spawn(user, server_name)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(progress) = lifecycle.progress(&user.name, server_name) {
        let mut events = std::pin::pin!(crate::api::users::progress_events(progress));
        // The final event is `send_ready`'s to tell.
        while let Some(e) = events.next().await {
            if !e.is_final() {
                tx.send(BinderEvent::new("launching", format!("{}\n", e.message)))
                    .ok();
            }
        }
    }
    Ok(())
}

/// Wait for the server to be ready, then send `ready` with its URL and a token for it.
async fn send_ready(
    state: &AppState,
    spec: &RepoSpec,
    user: &User,
    server_name: &str,
    built: build::Built,
    tx: &mpsc::UnboundedSender<BinderEvent>,
) -> Result<(), String> {
    let db = |e: hubfleet_store::StoreError| format!("the hub's database: {e}");
    let lifecycle = &state.lifecycle;
    let start = lifecycle
        .wait_ready(&user.name, server_name, state.settings().start_timeout)
        .await;
    let server = state.store.server(user.id, server_name).await.map_err(db)?;
    if !server.as_ref().is_some_and(|s| s.phase == Phase::Ready) {
        let reason = server
            .and_then(|s| s.failed_reason)
            .unwrap_or_else(|| format!("{start:?}"));
        return Err(format!("the server did not start: {reason}"));
    }
    let token = hubfleet_store::new_token();
    let scopes = vec![format!(
        "access:servers!server={}/{}",
        user.name, server_name
    )];
    state
        .store
        .insert_token(
            &token,
            &NewToken {
                user_id: Some(user.id),
                service_id: None,
                server_id: None,
                client_id: "jupyterhub",
                session_id: None,
                scopes: &scopes,
                note: "binder launch",
                expires_at: Some(Utc::now() + chrono::Duration::days(1)),
            },
        )
        .await
        .map_err(db)?;
    let url = state.settings().server_url(&user.name, server_name);
    let mut event = BinderEvent::new("ready", format!("server running at {url}\n"));
    event.url = Some(url);
    event.token = Some(token);
    event.image_name = Some(built.key);
    event.repo_url = Some(spec.url.clone());
    event.binder_ref_url = Some(built.commit);
    tx.send(event).ok();
    Ok(())
}

/// For a server launched from a repository (its `user_options.binder`): the environment's start
/// script (which copies the checkout into the home once and starts jupyterhub-singleuser
/// there), with the built environment first on `PATH` and the base environment's Jupyter data.
pub(crate) fn apply_launch(
    settings: &crate::Settings,
    user_options: &serde_json::Value,
    cmd: &mut Vec<String>,
    env: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    let Some(options) = user_options.get("binder") else {
        return Ok(());
    };
    let Some(binder) = &settings.binder else {
        return Err("this server was launched from a repository, and binderhub-service is no longer enabled".into());
    };
    let options: LaunchOptions = serde_json::from_value(options.clone())
        .map_err(|e| format!("user option `binder` is not a launch made by this hub: {e}"))?;
    let key_ok = options.environment.len() == 32
        && options.environment.chars().all(|c| c.is_ascii_hexdigit());
    let dir_ok = !options.repo_dir.is_empty()
        && !options.repo_dir.starts_with('.')
        && options
            .repo_dir
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let dir = binder.environment_dir(&options.environment);
    if !key_ok || !dir_ok || !build::is_built(&dir) {
        return Err(format!(
            "the environment {} of this binder server is gone; launch the repository again",
            options.environment
        ));
    }
    let venv = dir.join("env");
    let base = &binder.base_env;
    // The start script the build wrote; arguments a configured command had are kept.
    let extra: Vec<String> = cmd.iter().skip(1).cloned().collect();
    *cmd = vec![venv.join("bin/jupyterhub-singleuser").display().to_string()];
    cmd.extend(extra);
    env.insert("BINDER_REPO_DIR".into(), options.repo_dir.clone());
    env.insert("PATH".into(), crate::profiles::server_path(Some(&venv)));
    env.insert("VIRTUAL_ENV".into(), venv.display().to_string());
    // The venv's prefix has no Jupyter data: JupyterLab's assets and the server extensions'
    // config are the base environment's.
    env.insert(
        "JUPYTER_PATH".into(),
        base.join("share/jupyter").display().to_string(),
    );
    env.insert(
        "JUPYTER_CONFIG_PATH".into(),
        base.join("etc/jupyter").display().to_string(),
    );
    env.insert(
        "JUPYTERLAB_DIR".into(),
        base.join("share/jupyter/lab").display().to_string(),
    );
    env.insert("BINDER_REPO_URL".into(), options.repo_url);
    env.insert("BINDER_REF".into(), options.commit);
    Ok(())
}

/// Delete temporary users whose servers have stopped (culled, or stopped by themselves).
pub fn start_reaper(state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            if !state.leader.is_leader() {
                continue;
            }
            if let Err(e) = reap_once(&state).await {
                tracing::warn!(error = %e, "deleting temporary binder users");
            }
        }
    });
}

/// One round of [`start_reaper`]: temporary users with no launch under way and no server that
/// is not stopped (those without any server once they are a minute old).
pub async fn reap_once(state: &AppState) -> Result<usize, HubError> {
    let mut deleted = 0;
    let Some(binder) = &state.binder else {
        return Ok(0);
    };
    let users = temporary_users(state, binder.settings.max_temporary_users).await?;
    for user in users {
        let launching = binder
            .launching
            .lock()
            .expect("launching")
            .contains(&user.id);
        if launching {
            continue;
        }
        // A user just made by a launch has no server yet, and this replica cannot see launches
        // under way on another replica (its `launching`): give such a user a minute.
        let young = Utc::now() - user.created < chrono::Duration::minutes(1);
        if young && state.store.servers_of(user.id).await?.is_empty() {
            continue;
        }
        if state.store.delete_user_if_stopped(user.id).await? {
            tracing::info!(user = %user.name, "temporary binder user deleted: its server stopped");
            deleted += 1;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names() {
        assert!(is_temporary("binder-0123456789abcdef"));
        assert!(!is_temporary("binder-alice"));
        assert!(!is_temporary("alice"));
    }

    #[test]
    fn inner_paths() {
        assert!(safe_inner_path("lab/tree/index.ipynb"));
        assert!(safe_inner_path("/tree"));
        assert!(!safe_inner_path("../../hub/admin"));
        assert!(!safe_inner_path("https://evil.example/"));
        assert!(!safe_inner_path("//evil.example"));
    }
}
