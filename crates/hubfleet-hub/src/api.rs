//! The JupyterHub REST API (`/hub/api/…`): the part a single-user server and the
//! hub's own pages need.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDateTime, Utc};
use futures_util::stream::{self, Stream, StreamExt};
use hubfleet_rbac::Target;
use hubfleet_store::{Phase, Server, User};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::access;
use crate::identity::{self, Identity};
use crate::lifecycle::{ProgressEvent, SpawnOutcome};
use crate::{urls, AppState, HubError, JUPYTERHUB_VERSION};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/hub/api", get(info))
        .route("/hub/api/", get(info))
        .route("/hub/api/user", get(whoami))
        .route("/hub/api/users/{name}", get(get_user))
        .route("/hub/api/users/{name}/activity", post(activity))
        .route(
            "/hub/api/users/{name}/server",
            post(start_server).delete(stop_server),
        )
        .route("/hub/api/users/{name}/server/progress", get(progress))
        .route("/hub/api/metrics", get(metrics))
        .route("/hub/api/{*rest}", axum::routing::any(not_found))
}

pub fn json_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "status": status.as_u16(), "message": message })),
    )
        .into_response()
}

/// JupyterHub's timestamp form: naive UTC ISO 8601 with a `Z`, microseconds only when non-zero.
pub fn isoformat(t: DateTime<Utc>) -> String {
    if t.timestamp_subsec_micros() == 0 {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }
}

fn iso(t: Option<DateTime<Utc>>) -> Value {
    t.map(|t| Value::String(isoformat(t)))
        .unwrap_or(Value::Null)
}

#[derive(Deserialize, Default)]
pub struct XsrfQuery {
    #[serde(rename = "_xsrf")]
    pub xsrf: Option<String>,
}

/// The caller, or 403 "Missing or invalid credentials." (never 401: singleuser relies on it).
async fn caller(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    query: &XsrfQuery,
) -> Result<Identity, HubError> {
    identity::identify(state, method, headers, query.xsrf.as_deref())
        .await?
        .ok_or_else(|| HubError::Forbidden(hubfleet_rbac::MISSING_CREDENTIALS_MESSAGE.into()))
}

async fn user_named(state: &AppState, name: &str) -> Result<User, HubError> {
    state
        .store
        .user_by_name(name)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("No such user: {name}")))
}

async fn info(State(_): State<AppState>) -> Response {
    (
        [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")],
        Json(json!({ "version": JUPYTERHUB_VERSION })),
    )
        .into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        &format!("No such API endpoint: {}", uri.path()),
    )
}

/// The server model of protocol §2.3.2.
pub fn server_model(user: &User, server: &Server) -> Value {
    let prefix = urls::server_prefix(&user.name, &server.name);
    let (ready, pending) = match server.phase {
        Phase::Ready => (true, Value::Null),
        Phase::Starting => (false, json!("spawn")),
        Phase::Stopping => (false, json!("stop")),
        Phase::Stopped => (false, Value::Null),
    };
    let progress_url = if server.name.is_empty() {
        format!(
            "/hub/api/users/{}/server/progress",
            urls::escape_path(&user.name)
        )
    } else {
        format!(
            "/hub/api/users/{}/servers/{}/progress",
            urls::escape_path(&user.name),
            urls::escape_path(&server.name)
        )
    };
    json!({
        "name": server.name,
        "display_name": server.name,
        "full_name": format!("{}/{}", user.name, server.name),
        "last_activity": iso(server.last_activity),
        "started": iso(server.started),
        "pending": pending,
        "ready": ready,
        "stopped": server.phase == Phase::Stopped,
        "url": prefix,
        "user_options": server.user_options,
        "progress_url": progress_url,
        "full_url": Value::Null,
        "full_progress_url": Value::Null,
    })
}

/// The user model of protocol §2.3.1, with only the keys the caller may read.
async fn user_model(
    state: &AppState,
    held: &Identity,
    user: &User,
) -> Result<Map<String, Value>, HubError> {
    let keys = access::user_model_keys(&held.scopes, &user.name);
    let servers = state.store.servers_of(user.id).await?;
    let default = servers.iter().find(|s| s.name.is_empty());
    let mut model = Map::new();
    let mut put = |key: &'static str, value: Value| {
        if keys.contains(key) {
            model.insert(key.to_string(), value);
        }
    };
    put("kind", json!("user"));
    put("name", json!(user.name));
    put("admin", json!(user.admin));
    put(
        "roles",
        json!(if user.admin {
            vec!["admin", "user"]
        } else {
            vec!["user"]
        }),
    );
    put("groups", json!([]));
    put(
        "server",
        match default {
            Some(s) if s.phase == Phase::Ready => json!(urls::server_prefix(&user.name, "")),
            _ => Value::Null,
        },
    );
    put(
        "pending",
        match default.map(|s| s.phase) {
            Some(Phase::Starting) => json!("spawn"),
            Some(Phase::Stopping) => json!("stop"),
            _ => Value::Null,
        },
    );
    put("created", json!(isoformat(user.created)));
    put("last_activity", iso(user.last_activity));
    put("user_info", Value::Null);
    if keys.contains("servers") {
        let visible: Map<String, Value> = servers
            .iter()
            .filter(|s| s.phase != Phase::Stopped)
            .filter(|s| {
                access::check(
                    &held.scopes,
                    &["read:servers"],
                    &Target::Server(&user.name, &s.name),
                )
                .is_ok()
            })
            .map(|s| (s.name.clone(), server_model(user, s)))
            .collect();
        model.insert("servers".into(), Value::Object(visible));
    }
    Ok(model)
}

async fn whoami(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<XsrfQuery>,
) -> Result<Response, HubError> {
    let me = caller(&state, &method, &headers, &query).await?;
    // The owner may always identify themselves (protocol §2.3.6).
    let mut widened = me.clone();
    widened.scopes.extend(access::identify_scopes(&me.user));
    let mut model = user_model(&state, &widened, &me.user).await?;
    model.insert(
        "token_id".into(),
        me.token
            .as_ref()
            .map(|t| json!(format!("a{}", t.id)))
            .unwrap_or(Value::Null),
    );
    model.insert("session_id".into(), json!(me.session_id));
    model.insert("scopes".into(), json!(me.scopes.iter().collect::<Vec<_>>()));
    Ok(Json(Value::Object(model)).into_response())
}

async fn get_user(
    State(state): State<AppState>,
    Path(name): Path<String>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<XsrfQuery>,
) -> Result<Response, HubError> {
    let me = caller(&state, &method, &headers, &query).await?;
    access::check(
        &me.scopes,
        &[
            "read:users",
            "read:users:name",
            "read:servers",
            "read:users:activity",
            "read:users:groups",
            "read:roles:users",
            "admin:auth_state",
        ],
        &Target::User(&name),
    )?;
    let user = user_named(&state, &name).await?;
    Ok(Json(Value::Object(user_model(&state, &me, &user).await?)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivityBody {
    last_activity: Option<String>,
    servers: Option<std::collections::BTreeMap<String, ServerActivity>>,
}

#[derive(Deserialize)]
struct ServerActivity {
    last_activity: String,
}

/// Parse an ISO 8601 timestamp; naive ones are UTC (dateutil's reading).
fn parse_time(text: &str) -> Result<DateTime<Utc>, HubError> {
    let bad = || {
        HubError::BadRequest(format!(
            "Invalid timestamp: {text:?}; use ISO 8601, e.g. 2026-08-20T10:05:00Z"
        ))
    };
    let time = DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDateTime::parse_from_str(text.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S%.f")
                .map(|t| t.and_utc())
        })
        .map_err(|_| bad())?;
    if time > Utc::now() + chrono::Duration::minutes(59) {
        return Err(HubError::BadRequest(format!(
            "last_activity {text} is in the future; check the server's clock"
        )));
    }
    Ok(time)
}

async fn activity(
    State(state): State<AppState>,
    Path(name): Path<String>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<XsrfQuery>,
    body: axum::body::Bytes,
) -> Result<Response, HubError> {
    let me = caller(&state, &method, &headers, &query).await?;
    access::check(&me.scopes, &["users:activity"], &Target::User(&name))?;
    let body: ActivityBody = serde_json::from_slice(&body)
        .map_err(|e| HubError::BadRequest(format!("Invalid JSON in body of request: {e}")))?;
    if body.last_activity.is_none() && body.servers.is_none() {
        return Err(HubError::BadRequest(
            "body has neither `last_activity` nor `servers`".into(),
        ));
    }
    let user = user_named(&state, &name).await?;
    let mut updates = Vec::new();
    for (server_name, activity) in body.servers.iter().flatten() {
        let server = state
            .store
            .server(user.id, server_name)
            .await?
            .ok_or_else(|| {
                HubError::BadRequest(format!("No such server '{server_name}' for user {name}"))
            })?;
        updates.push((server.id, parse_time(&activity.last_activity)?));
    }
    let user_time = body.last_activity.as_deref().map(parse_time).transpose()?;
    for (server_id, at) in updates {
        state.store.touch_server(server_id, at).await?;
    }
    if let Some(at) = user_time {
        state.store.touch_user(user.id, at).await?;
    }
    Ok(StatusCode::OK.into_response())
}

fn empty(status: StatusCode) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], "").into_response()
}

async fn start_server(
    State(state): State<AppState>,
    Path(name): Path<String>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<XsrfQuery>,
) -> Result<Response, HubError> {
    let me = caller(&state, &method, &headers, &query).await?;
    access::check(
        &me.scopes,
        &["start:servers", "servers"],
        &Target::Server(&name, ""),
    )?;
    let user = user_named(&state, &name).await?;
    match state.lifecycle.spawn(&user, "").await? {
        SpawnOutcome::AlreadyRunning => Err(HubError::BadRequest(format!(
            "{name}'s server is already running"
        ))),
        SpawnOutcome::AlreadyPending => Ok(empty(StatusCode::ACCEPTED)),
        SpawnOutcome::Started => {
            // JupyterHub's slow_spawn_timeout: 201 if ready within 10 s, else 202.
            if state
                .lifecycle
                .wait_ready(&name, "", Duration::from_secs(10))
                .await
            {
                Ok(empty(StatusCode::CREATED))
            } else {
                Ok(empty(StatusCode::ACCEPTED))
            }
        }
    }
}

async fn stop_server(
    State(state): State<AppState>,
    Path(name): Path<String>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<XsrfQuery>,
) -> Result<Response, HubError> {
    let me = caller(&state, &method, &headers, &query).await?;
    access::check(
        &me.scopes,
        &["delete:servers", "servers"],
        &Target::Server(&name, ""),
    )?;
    let user = user_named(&state, &name).await?;
    let lifecycle = state.lifecycle.clone();
    let stopping = tokio::spawn(async move { lifecycle.stop(&user, "").await });
    // slow_stop_timeout: 204 when stopped within 10 s, else 202 and the stop goes on.
    match tokio::time::timeout(Duration::from_secs(10), stopping).await {
        Ok(Ok(result)) => {
            result?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        Ok(Err(e)) => Err(HubError::BadRequest(format!("stopping failed: {e}"))),
        Err(_) => Ok(empty(StatusCode::ACCEPTED)),
    }
}

fn sse_event(event: &ProgressEvent) -> Event {
    Event::default().data(serde_json::to_string(event).unwrap_or_default())
}

async fn progress(
    State(state): State<AppState>,
    Path(name): Path<String>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<XsrfQuery>,
) -> Result<Response, HubError> {
    let me = caller(&state, &method, &headers, &query).await?;
    access::check(&me.scopes, &["read:servers"], &Target::Server(&name, ""))?;
    let user = user_named(&state, &name).await?;
    let server = state
        .store
        .server(user.id, "")
        .await?
        .ok_or_else(|| HubError::NotFound(format!("{name} has no server")))?;
    let prefix = urls::server_prefix(&name, "");
    let events: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> =
        match (server.phase, state.lifecycle.progress(&name, "")) {
            (Phase::Ready, _) => Box::pin(stream::once(async move {
                Ok(sse_event(&ProgressEvent::ready_at(&prefix)))
            })),
            (Phase::Starting, Some(rx)) => Box::pin(follow(rx)),
            (Phase::Stopped, _) if server.failed_reason.is_some() => {
                let reason = server.failed_reason.clone().unwrap_or_default();
                Box::pin(stream::once(async move {
                    Ok(sse_event(&ProgressEvent::failed(&reason)))
                }))
            }
            _ => return Err(HubError::BadRequest(format!("{name} is not starting..."))),
        };
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(8)))
        .into_response())
}

/// Every event of a start, from the first, ending after the final one.
fn follow(
    rx: tokio::sync::watch::Receiver<Vec<ProgressEvent>>,
) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    stream::unfold((rx, 0usize, false), |(mut rx, sent, done)| async move {
        if done {
            return None;
        }
        loop {
            let fresh: Vec<ProgressEvent> =
                rx.borrow_and_update().iter().skip(sent).cloned().collect();
            if !fresh.is_empty() {
                let finished = fresh.iter().any(ProgressEvent::is_final);
                let n = fresh.len();
                return Some((fresh, (rx, sent + n, finished)));
            }
            if rx.changed().await.is_err() {
                return None;
            }
        }
    })
    .flat_map(|batch| stream::iter(batch.into_iter().map(|e| Ok(sse_event(&e)))))
}

pub async fn metrics(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<XsrfQuery>,
) -> Result<Response, HubError> {
    let me = caller(&state, &method, &headers, &query).await?;
    access::check(&me.scopes, &["read:metrics"], &Target::None)?;
    let active = state.store.active_servers().await?;
    state
        .settings
        .metrics
        .running_servers
        .set(active.len() as i64);
    state
        .settings
        .metrics
        .total_users
        .set(state.store.count_users().await?);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.settings.metrics.render(),
    )
        .into_response())
}
