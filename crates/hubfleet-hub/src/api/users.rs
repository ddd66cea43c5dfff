//! Users, their servers, activity and spawn progress.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDateTime, Utc};
use futures_util::stream::{self, Stream, StreamExt};
use hubfleet_rbac::Target;
use hubfleet_store::{Phase, Server, ServerState, User, UserQuery, UserSort, VisibleUsers};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{empty, iso, isoformat, parse_body, query_flag, Args, Caller, Page, PageQuery};
use crate::access::{self, Membership};
use crate::identity::{Identity, Owner};
use crate::lifecycle::{ProgressEvent, SpawnOutcome, StartResult};
use crate::{urls, AppState, HubError, Settings};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/hub/api/user", get(whoami))
        .route("/hub/api/users", get(list_users).post(create_users))
        .route(
            "/hub/api/users/{name}",
            get(get_user)
                .post(create_user)
                .patch(edit_user)
                .delete(delete_user),
        )
        .route("/hub/api/users/{name}/activity", post(activity))
        .route("/hub/api/users/{name}/admin-access", post(admin_access))
        .route(
            "/hub/api/users/{name}/server",
            get(get_default_server)
                .post(start_default)
                .delete(stop_default),
        )
        .route(
            "/hub/api/users/{name}/server/progress",
            get(progress_default),
        )
        .route(
            "/hub/api/users/{name}/servers/{server}",
            get(get_named_server)
                .put(create_named)
                .post(start_named)
                .patch(edit_named)
                .delete(stop_named),
        )
        .route(
            "/hub/api/users/{name}/servers/{server}/progress",
            get(progress_named),
        )
}

pub async fn user_named(state: &AppState, name: &str) -> Result<User, HubError> {
    state
        .store
        .user_by_name(name)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("No such user: {name}")))
}

/// The server model of protocol §2.3.2.
pub fn server_model(settings: &Settings, user: &User, server: &Server, with_state: bool) -> Value {
    // With subdomains `url` is the full URL on the user's host, as upstream's `server_url`.
    let url = settings.server_url(&user.name, &server.name);
    let full_url = url.contains("://").then(|| url.clone());
    let progress = settings.with_base(&progress_url(&user.name, &server.name));
    let full_progress_url = match settings.hub_origin().as_str() {
        "" => None,
        origin => Some(format!("{origin}{progress}")),
    };
    let (ready, pending) = match server.phase {
        Phase::Ready => (true, Value::Null),
        Phase::Starting => (false, json!("spawn")),
        Phase::Stopping => (false, json!("stop")),
        Phase::Stopped => (false, Value::Null),
    };
    let mut model = json!({
        "name": server.name,
        "display_name": if server.display_name.is_empty() { server.name.clone() } else { server.display_name.clone() },
        "full_name": format!("{}/{}", user.name, server.name),
        "last_activity": iso(server.last_activity),
        "started": iso(server.started),
        "pending": pending,
        "ready": ready,
        "stopped": server.phase == Phase::Stopped,
        "url": url,
        "user_options": server.user_options,
        "progress_url": progress,
        "full_url": full_url,
        "full_progress_url": full_progress_url,
    });
    if with_state {
        let mut state = server.spawn_state.clone().unwrap_or_else(|| json!({}));
        // A stopped server has no spawner state; admins still see why it ended
        // (e.g. "killed: memory limit 1G reached").
        if let (Phase::Stopped, Some(reason), Some(map)) =
            (server.phase, &server.failed_reason, state.as_object_mut())
        {
            map.insert("failed_reason".into(), json!(reason));
        }
        model["state"] = state;
    }
    model
}

fn progress_url(user: &str, server: &str) -> String {
    if server.is_empty() {
        format!("/hub/api/users/{}/server/progress", urls::escape_path(user))
    } else {
        format!(
            "/hub/api/users/{}/servers/{}/progress",
            urls::escape_path(user),
            urls::escape_path(server)
        )
    }
}

/// What a user model is built from; loaded once per user (or per page of users).
pub struct UserParts {
    pub user: User,
    pub servers: Vec<Server>,
    pub groups: Vec<String>,
    pub roles: Vec<String>,
    pub auth_state: Option<Value>,
}

pub async fn load_parts(
    state: &AppState,
    user: User,
    with_auth_state: bool,
) -> Result<UserParts, HubError> {
    parts_named(state, &user.name, with_auth_state).await
}

/// The user named `name` with everything their model needs, in one database round trip.
pub async fn parts_named(
    state: &AppState,
    name: &str,
    with_auth_state: bool,
) -> Result<UserParts, HubError> {
    let view = state
        .store
        .user_view(name, with_auth_state)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("No such user: {name}")))?;
    let mut roles = vec!["user".to_string()];
    if view.user.admin {
        roles.push("admin".to_string());
    }
    roles.extend(view.roles);
    roles.sort();
    roles.dedup();
    Ok(UserParts {
        user: view.user,
        servers: view.servers,
        groups: view.groups,
        roles,
        auth_state: view.auth_state,
    })
}

/// The user model of protocol §2.3.1, with only the keys `held` may read.
pub fn user_model(
    settings: &Settings,
    held: &hubfleet_rbac::HeldScopes,
    membership: &Membership,
    parts: &UserParts,
    include_stopped: bool,
) -> Map<String, Value> {
    let user = &parts.user;
    let keys = access::user_model_keys(held, &user.name, membership);
    let default = parts.servers.iter().find(|s| s.name.is_empty());
    let mut model = Map::new();
    let mut put = |key: &'static str, value: Value| {
        if keys.contains(key) {
            model.insert(key.to_string(), value);
        }
    };
    put("kind", json!("user"));
    put("name", json!(user.name));
    put("admin", json!(user.admin));
    put("roles", json!(parts.roles));
    put("groups", json!(parts.groups));
    put(
        "server",
        match default {
            Some(s) if s.phase == Phase::Ready => json!(settings.server_url(&user.name, "")),
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
    put(
        "auth_state",
        parts.auth_state.clone().unwrap_or(Value::Null),
    );
    if keys.contains("servers") {
        let parsed = held.parsed();
        let visible: Map<String, Value> = parts
            .servers
            .iter()
            .filter(|s| include_stopped || s.phase != Phase::Stopped)
            .filter(|s| {
                parsed.covers(
                    "read:servers",
                    &Target::Server(&user.name, &s.name),
                    membership,
                )
            })
            .map(|s| {
                let with_state = parsed.covers(
                    "admin:server_state",
                    &Target::Server(&user.name, &s.name),
                    membership,
                );
                (s.name.clone(), server_model(settings, user, s, with_state))
            })
            .collect();
        model.insert("servers".into(), Value::Object(visible));
    }
    model
}

fn membership_of(parts: &UserParts) -> Membership {
    BTreeMap::from([(parts.user.name.clone(), parts.groups.clone())])
}

async fn whoami(State(state): State<AppState>, Caller(me): Caller) -> Result<Response, HubError> {
    let mut widened = (*me.scopes).clone();
    widened.extend(access::identify_scopes(&me.owner));
    let widened = hubfleet_rbac::HeldScopes::new(widened);
    let mut model = match &me.owner {
        Owner::User(user) => {
            let parts = load_parts(&state, user.clone(), false).await?;
            user_model(
                &state.settings(),
                &widened,
                &membership_of(&parts),
                &parts,
                false,
            )
        }
        Owner::Service(service) => super::hub::service_model(&state, &widened, service).await?,
    };
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

#[derive(Deserialize, Default)]
struct ListQuery {
    state: Option<String>,
    sort: Option<String>,
    name_filter: Option<String>,
    include_stopped_servers: Option<String>,
    #[serde(flatten)]
    page: PageQuery,
}

async fn list_users(
    State(state): State<AppState>,
    Caller(me): Caller,
    Args(query): Args<ListQuery>,
    headers: HeaderMap,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
) -> Result<Response, HubError> {
    access::check_any(&me.scopes, &["list:users"])?;
    let page = Page::from_request(&headers, &query.page)?;
    let server_state = match query.state.as_deref() {
        None | Some("") => None,
        Some("active") => Some(ServerState::Active),
        Some("ready") => Some(ServerState::Ready),
        Some("inactive") => Some(ServerState::Inactive),
        Some(other) => {
            return Err(HubError::BadRequest(format!(
                "Unrecognized state filter: {other:?}; use active, ready or inactive"
            )))
        }
    };
    let (sort, descending) = match query.sort.as_deref() {
        None | Some("") => (UserSort::Id, false),
        Some(s) => {
            let (descending, key) = match s.strip_prefix('-') {
                Some(key) => (true, key),
                None => (false, s),
            };
            let sort = match key {
                "id" => UserSort::Id,
                "name" => UserSort::Name,
                "last_activity" => UserSort::LastActivity,
                other => {
                    return Err(HubError::BadRequest(format!(
                        "Unrecognized sort: {other:?}; use id, name or last_activity (prefix - for descending)"
                    )))
                }
            };
            (sort, descending)
        }
    };
    // A filtered `list:users` sees only the users its filters cover (a user by its name
    // or a group it is in; other filter kinds cover no user): the database pages and
    // counts only those.
    let parsed = me.scopes.parsed();
    let visible = match parsed.get("list:users") {
        Some(hubfleet_rbac::ScopeFilters::Only(filters)) => {
            let named = |kind| {
                filters
                    .get(&kind)
                    .map(|names: &std::collections::BTreeSet<String>| {
                        names.iter().cloned().collect()
                    })
                    .unwrap_or_default()
            };
            Some(VisibleUsers {
                users: named(hubfleet_rbac::FilterKind::User),
                groups: named(hubfleet_rbac::FilterKind::Group),
            })
        }
        _ => None,
    };
    let membership = if me.scopes.iter().any(|s| s.contains("!group=")) {
        state.store.all_memberships().await?
    } else {
        Membership::new()
    };
    let user_query = UserQuery {
        state: server_state,
        name_filter: query.name_filter.clone().filter(|f| !f.is_empty()),
        sort,
        descending,
        offset: page.offset,
        limit: page.limit,
        visible,
    };
    let (users, total) = state.store.query_users(&user_query).await?;
    let include_stopped = query_flag(query.include_stopped_servers.as_deref());
    let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    let mut servers = state.store.servers_of_users(&ids).await?;
    let memberships = if membership.is_empty() {
        state.store.all_memberships().await?
    } else {
        membership
    };
    let stored_roles = state.store.all_direct_roles().await?;
    let items = users
        .into_iter()
        .map(|user| {
            let mut roles = vec!["user".to_string()];
            if user.admin {
                roles.push("admin".to_string());
            }
            roles.extend(stored_roles.get(&user.id).cloned().unwrap_or_default());
            roles.sort();
            roles.dedup();
            let parts = UserParts {
                servers: servers.remove(&user.id).unwrap_or_default(),
                groups: memberships.get(&user.name).cloned().unwrap_or_default(),
                roles,
                auth_state: None,
                user,
            };
            Value::Object(user_model(
                &state.settings(),
                &me.scopes,
                &memberships,
                &parts,
                include_stopped,
            ))
        })
        .collect();
    Ok(page.respond(items, total, &headers, &uri))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUsers {
    usernames: Vec<String>,
    #[serde(default)]
    admin: bool,
}

fn valid_name(name: &str) -> Result<String, HubError> {
    hubfleet_auth::normalize_username(name).map_err(|e| HubError::BadRequest(e.to_string()))
}

async fn create_users(
    State(state): State<AppState>,
    Caller(me): Caller,
    body: Bytes,
) -> Result<Response, HubError> {
    access::check(&state, &me.scopes, &["admin:users"], &Target::None).await?;
    let request: CreateUsers = parse_body(&body)?
        .ok_or_else(|| HubError::BadRequest("body must be {\"usernames\": [...]}".into()))?;
    if request.admin && !is_admin(&me) {
        return Err(HubError::Forbidden(
            "Only admins can create admin users".into(),
        ));
    }
    let names = request
        .usernames
        .iter()
        .map(|n| valid_name(n))
        .collect::<Result<Vec<_>, _>>()?;
    if names.is_empty() {
        return Err(HubError::BadRequest(
            "Must specify at least one user to create".into(),
        ));
    }
    for name in &names {
        admin_name_guard(&state, &me, name)?;
    }
    let created = state.store.create_users(&names, request.admin).await?;
    if created.is_empty() {
        return Err(HubError::Conflict(format!(
            "All {} users already exist",
            names.len()
        )));
    }
    let mut models = Vec::new();
    for user in created {
        let parts = load_parts(&state, user, false).await?;
        models.push(Value::Object(user_model(
            &state.settings(),
            &me.scopes,
            &membership_of(&parts),
            &parts,
            false,
        )));
    }
    Ok((StatusCode::CREATED, Json(Value::Array(models))).into_response())
}

/// Whether the caller is an admin (the admin flag of the user or service behind the token
/// or cookie), as upstream's `current_user.admin`. `admin:users` alone is not enough for
/// what would make someone an admin: that is the admin role's power.
fn is_admin(me: &Identity) -> bool {
    match &me.owner {
        Owner::User(user) => user.admin,
        Owner::Service(service) => service.admin,
    }
}

/// Whether `name` is listed in `admin_users`: whoever holds it becomes an admin at the
/// hub's next start.
fn is_configured_admin(state: &AppState, name: &str) -> bool {
    state
        .settings()
        .admin_users
        .iter()
        .any(|admin| admin == name)
}

/// Whether `user` is an admin account: an admin now, or holding an `admin_users` name.
fn is_admin_account(state: &AppState, user: &User) -> bool {
    user.admin || is_configured_admin(state, &user.name)
}

/// Only admins may create or rename a user to a name in `admin_users`.
fn admin_name_guard(state: &AppState, me: &Identity, name: &str) -> Result<(), HubError> {
    if is_configured_admin(state, name) && !is_admin(me) {
        return Err(HubError::Forbidden(format!(
            "Only admins can give a user the name {name}: it is listed in admin_users, so the \
             hub makes that user an admin"
        )));
    }
    Ok(())
}

#[derive(Deserialize, Default)]
struct UserQueryParams {
    include_stopped_servers: Option<String>,
}

async fn get_user(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
    Args(query): Args<UserQueryParams>,
) -> Result<Response, HubError> {
    access::check(
        &state,
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
    )
    .await?;
    let with_auth_state = access::check(
        &state,
        &me.scopes,
        &["admin:auth_state"],
        &Target::User(&name),
    )
    .await
    .is_ok();
    let parts = parts_named(&state, &name, with_auth_state).await?;
    let include_stopped = query_flag(query.include_stopped_servers.as_deref());
    Ok(Json(Value::Object(user_model(
        &state.settings(),
        &me.scopes,
        &membership_of(&parts),
        &parts,
        include_stopped,
    )))
    .into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    #[serde(default)]
    admin: Option<bool>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    groups: Option<Vec<String>>,
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(default)]
    auth_state: Option<Value>,
}

async fn create_user(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, HubError> {
    access::check(&state, &me.scopes, &["admin:users"], &Target::User(&name)).await?;
    let request: CreateUser = parse_body(&body)?.unwrap_or_default();
    let name = valid_name(&name)?;
    let admin = request.admin.unwrap_or(false);
    if admin && !is_admin(&me) {
        return Err(HubError::Forbidden(
            "Only admins can create admin users".into(),
        ));
    }
    admin_name_guard(&state, &me, &name)?;
    if state.store.user_by_name(&name).await?.is_some() {
        return Err(HubError::Conflict(format!("User {name} already exists")));
    }
    let user = state.store.create_user(&name, admin).await?;
    if let Some(auth_state) = &request.auth_state {
        state
            .store
            .set_auth_state(user.id, Some(auth_state))
            .await?;
    }
    let _ = (request.name, request.groups, request.roles);
    let parts = load_parts(&state, user, false).await?;
    Ok((
        StatusCode::CREATED,
        Json(Value::Object(user_model(
            &state.settings(),
            &me.scopes,
            &membership_of(&parts),
            &parts,
            false,
        ))),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditUser {
    name: Option<String>,
    admin: Option<bool>,
    auth_state: Option<Value>,
}

async fn edit_user(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, HubError> {
    access::check(&state, &me.scopes, &["admin:users"], &Target::User(&name)).await?;
    let user = user_named(&state, &name).await?;
    let request: EditUser = parse_body(&body)?
        .ok_or_else(|| HubError::BadRequest("body must be a JSON object".into()))?;
    if !is_admin(&me) {
        if is_admin_account(&state, &user) {
            return Err(HubError::Forbidden(format!(
                "Only admins can modify the admin user {name}"
            )));
        }
        if request.admin == Some(true) {
            return Err(HubError::Forbidden(
                "Only admins can grant admin permissions".into(),
            ));
        }
    }
    let new_name = request.name.as_deref().map(valid_name).transpose()?;
    if let Some(new_name) = &new_name {
        if *new_name != user.name {
            admin_name_guard(&state, &me, new_name)?;
        }
        if *new_name != user.name && state.store.user_by_name(new_name).await?.is_some() {
            return Err(HubError::BadRequest(format!(
                "User {new_name} already exists, username must be unique"
            )));
        }
        if *new_name != user.name
            && state
                .store
                .servers_of(user.id)
                .await?
                .iter()
                .any(|s| s.phase != Phase::Stopped)
        {
            return Err(HubError::BadRequest(format!(
                "{name} has running servers; stop them before renaming"
            )));
        }
    }
    if let Some(admin) = request.admin {
        state.store.set_admin(user.id, admin).await?;
    }
    if let Some(auth_state) = &request.auth_state {
        state
            .store
            .set_auth_state(user.id, Some(auth_state))
            .await?;
    }
    if let Some(new_name) = &new_name {
        if *new_name != user.name {
            state.store.rename_user(user.id, new_name).await?;
        }
    }
    let user = state
        .store
        .user_by_id(user.id)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("No such user: {name}")))?;
    let parts = load_parts(&state, user, true).await?;
    let mut scopes = (*me.scopes).clone();
    scopes.insert(format!("admin:auth_state!user={}", parts.user.name));
    let scopes = hubfleet_rbac::HeldScopes::new(scopes);
    Ok(Json(Value::Object(user_model(
        &state.settings(),
        &scopes,
        &membership_of(&parts),
        &parts,
        false,
    )))
    .into_response())
}

async fn delete_user(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
) -> Result<Response, HubError> {
    access::check(&state, &me.scopes, &["delete:users"], &Target::User(&name)).await?;
    let user = user_named(&state, &name).await?;
    // Deleting an admin frees its name for a new user, which `admin_users` would promote.
    if is_admin_account(&state, &user) && !is_admin(&me) {
        return Err(HubError::Forbidden(format!(
            "Only admins can delete the admin user {name}"
        )));
    }
    if me.user().is_some_and(|u| u.id == user.id) {
        return Err(HubError::BadRequest("Cannot delete yourself!".into()));
    }
    for server in state.store.servers_of(user.id).await? {
        if server.phase == Phase::Starting || server.phase == Phase::Stopping {
            return Err(HubError::BadRequest(format!(
                "{name}'s server {} is {}; try again when it is done",
                server.name,
                if server.phase == Phase::Starting {
                    "starting"
                } else {
                    "stopping"
                }
            )));
        }
        if server.phase == Phase::Ready {
            state.lifecycle.stop(&user, &server.name).await?;
        }
    }
    state.store.delete_user(user.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivityBody {
    last_activity: Option<String>,
    servers: Option<BTreeMap<String, ServerActivity>>,
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
    Caller(me): Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, HubError> {
    access::check(
        &state,
        &me.scopes,
        &["users:activity"],
        &Target::User(&name),
    )
    .await?;
    let body: ActivityBody = parse_body(&body)?
        .ok_or_else(|| HubError::BadRequest("body must be a JSON object".into()))?;
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

async fn admin_access(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
) -> Result<Response, HubError> {
    access::check(&state, &me.scopes, &["servers"], &Target::User(&name)).await?;
    user_named(&state, &name).await?;
    Ok(StatusCode::OK.into_response())
}

// ---- servers ----

/// `user` may start the named server `server_name`: named servers are on, the name is valid,
/// and a new one stays within `named_server_limit_per_user`.
pub(crate) async fn admit_named_server(
    state: &AppState,
    user: &User,
    server_name: &str,
) -> Result<(), HubError> {
    if !state.settings().allow_named_servers {
        return Err(HubError::BadRequest(
            "Named servers are not enabled (hub.allowNamedServers)".into(),
        ));
    }
    valid_server_name(server_name)?;
    let existing = state.store.server(user.id, server_name).await?;
    let limit = state.settings().named_server_limit_per_user;
    if existing.is_none() && limit > 0 && state.store.count_named_servers(user.id).await? >= limit {
        return Err(HubError::BadRequest(format!(
            "User {} already has the maximum of {limit} named servers. One must be deleted before a new server can be created",
            user.name
        )));
    }
    Ok(())
}

/// Server names (6.0): 1–30 characters of `[a-z0-9]` and single hyphens, starting with a letter.
fn valid_server_name(name: &str) -> Result<(), HubError> {
    let ok = !name.is_empty()
        && name.len() <= 30
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(HubError::BadRequest(format!(
            "Invalid server name {name:?}: use 1-30 lowercase letters, digits and single hyphens, starting with a letter"
        )))
    }
}

/// 6.0 `ServerRequest`: `display_name` and/or `user_options`, else the whole body is `user_options`.
fn server_request(body: &[u8]) -> Result<(Option<String>, Option<Value>), HubError> {
    let Some(value) = parse_body::<Value>(body)? else {
        return Ok((None, None));
    };
    let Value::Object(map) = value else {
        return Err(HubError::BadRequest(
            "the body must be a JSON object".into(),
        ));
    };
    if map
        .keys()
        .all(|k| k == "display_name" || k == "user_options")
        && !map.is_empty()
    {
        let display = match map.get("display_name") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(HubError::BadRequest("display_name must be a string".into())),
        };
        let options = match map.get("user_options") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(_) => {
                return Err(HubError::BadRequest(
                    "user_options must be an object".into(),
                ))
            }
        };
        return Ok((display, options));
    }
    Ok((None, Some(Value::Object(map))))
}

async fn start(
    state: &AppState,
    me: &Identity,
    name: &str,
    server_name: &str,
    body: &[u8],
) -> Result<Response, HubError> {
    access::check(
        state,
        &me.scopes,
        &["start:servers", "servers"],
        &Target::Server(name, server_name),
    )
    .await?;
    let user = user_named(state, name).await?;
    if !server_name.is_empty() {
        admit_named_server(state, &user, server_name).await?;
    }
    let (display_name, options) = server_request(body)?;
    if display_name.is_some() || options.is_some() {
        let server = state.store.ensure_server(user.id, server_name).await?;
        if server.phase == Phase::Stopped {
            state
                .store
                .edit_server(server.id, None, display_name.as_deref(), options.as_ref())
                .await?;
        }
    }
    crate::auth_refresh::before_spawn(state, &user).await?;
    match state.lifecycle.spawn(&user, server_name).await? {
        SpawnOutcome::AlreadyRunning => Err(HubError::BadRequest(format!(
            "{name}'s server {server_name} is already running"
        ))),
        SpawnOutcome::AlreadyPending => Ok(empty(StatusCode::ACCEPTED)),
        SpawnOutcome::Started => {
            // slow_spawn_timeout: 201 when ready within 10 s, else 202.
            match state
                .lifecycle
                .wait_ready(name, server_name, Duration::from_secs(10))
                .await
            {
                StartResult::Ready => Ok(empty(StatusCode::CREATED)),
                StartResult::Pending => Ok(empty(StatusCode::ACCEPTED)),
                StartResult::Failed(reason) => Err(HubError::SpawnFailed(reason)),
            }
        }
    }
}

async fn stop(
    state: &AppState,
    me: &Identity,
    name: &str,
    server_name: &str,
    remove: bool,
) -> Result<Response, HubError> {
    access::check(
        state,
        &me.scopes,
        &["delete:servers", "servers"],
        &Target::Server(name, server_name),
    )
    .await?;
    let user = user_named(state, name).await?;
    if remove && server_name.is_empty() {
        return Err(HubError::BadRequest(
            "Cannot remove the default server".into(),
        ));
    }
    let server = state.store.server(user.id, server_name).await?;
    let Some(server) = server else {
        return Err(HubError::NotFound(format!(
            "{name} has no server named {server_name:?}"
        )));
    };
    if server.phase == Phase::Stopped && !remove && !server_name.is_empty() {
        // Stopping a stopped named server is a no-op, as upstream.
        return Ok(empty(StatusCode::NO_CONTENT));
    }
    let lifecycle = state.lifecycle.clone();
    let store = state.store.clone();
    let server_name = server_name.to_string();
    let stopping = tokio::spawn(async move {
        lifecycle.stop(&user, &server_name).await?;
        if remove {
            store.delete_server(server.id).await?;
        }
        Ok::<(), HubError>(())
    });
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

/// Check `required` on the server, then load its owner and row (404 when either is missing).
async fn checked_server(
    state: &AppState,
    me: &Identity,
    required: &[&str],
    name: &str,
    server_name: &str,
) -> Result<(User, Server), HubError> {
    access::check(
        state,
        &me.scopes,
        required,
        &Target::Server(name, server_name),
    )
    .await?;
    let user = user_named(state, name).await?;
    let server = state
        .store
        .server(user.id, server_name)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("{name} has no server named {server_name:?}")))?;
    Ok((user, server))
}

async fn server_of(
    state: &AppState,
    me: &Identity,
    name: &str,
    server_name: &str,
) -> Result<Response, HubError> {
    let (user, server) = checked_server(state, me, &["read:servers"], name, server_name).await?;
    let with_state = access::check(
        state,
        &me.scopes,
        &["admin:server_state"],
        &Target::Server(name, server_name),
    )
    .await
    .is_ok();
    Ok(Json(server_model(&state.settings(), &user, &server, with_state)).into_response())
}

async fn get_default_server(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
) -> Result<Response, HubError> {
    server_of(&state, &me, &name, "").await
}

async fn get_named_server(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path((name, server)): Path<(String, String)>,
) -> Result<Response, HubError> {
    server_of(&state, &me, &name, &server).await
}

async fn start_default(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, HubError> {
    start(&state, &me, &name, "", &body).await
}

async fn start_named(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path((name, server)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, HubError> {
    start(&state, &me, &name, &server, &body).await
}

async fn stop_default(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
) -> Result<Response, HubError> {
    stop(&state, &me, &name, "", false).await
}

#[derive(Deserialize, Default)]
struct StopBody {
    #[serde(default)]
    remove: bool,
}

async fn stop_named(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path((name, server)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, HubError> {
    let request: StopBody = parse_body(&body)?.unwrap_or_default();
    stop(&state, &me, &name, &server, request.remove).await
}

/// 6.0 `PUT`: create a named server without starting it.
async fn create_named(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path((name, server_name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, HubError> {
    access::check(
        &state,
        &me.scopes,
        &["start:servers", "servers"],
        &Target::Server(&name, &server_name),
    )
    .await?;
    let user = user_named(&state, &name).await?;
    if !state.settings().allow_named_servers {
        return Err(HubError::BadRequest(
            "Named servers are not enabled (hub.allowNamedServers)".into(),
        ));
    }
    valid_server_name(&server_name)?;
    if state.store.server(user.id, &server_name).await?.is_some() {
        return Err(HubError::Conflict(format!(
            "{name} already has a server named {server_name}"
        )));
    }
    let limit = state.settings().named_server_limit_per_user;
    if limit > 0 && state.store.count_named_servers(user.id).await? >= limit {
        return Err(HubError::BadRequest(format!(
            "User {name} already has the maximum of {limit} named servers"
        )));
    }
    let (display_name, options) = server_request(&body)?;
    let server = state.store.ensure_server(user.id, &server_name).await?;
    state
        .store
        .edit_server(server.id, None, display_name.as_deref(), options.as_ref())
        .await?;
    let server = state
        .store
        .server(user.id, &server_name)
        .await?
        .ok_or_else(|| HubError::NotFound(server_name.clone()))?;
    Ok((
        StatusCode::CREATED,
        Json(server_model(&state.settings(), &user, &server, false)),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditServer {
    name: Option<String>,
    display_name: Option<String>,
    user_options: Option<Value>,
}

/// 6.0 `PATCH`: rename a stopped server or change its display name and options.
async fn edit_named(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path((name, server_name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, HubError> {
    let (user, server) = checked_server(
        &state,
        &me,
        &["start:servers", "servers"],
        &name,
        &server_name,
    )
    .await?;
    let request: EditServer =
        parse_body(&body)?.ok_or_else(|| HubError::BadRequest("nothing to change".into()))?;
    if request.name.is_none() && request.display_name.is_none() && request.user_options.is_none() {
        return Err(HubError::BadRequest(
            "nothing to change: give name, display_name or user_options".into(),
        ));
    }
    if server.phase != Phase::Stopped {
        return Err(HubError::BadRequest(format!(
            "Server {server_name} is active; stop it first"
        )));
    }
    if let Some(new) = &request.name {
        if server_name.is_empty() {
            return Err(HubError::BadRequest(
                "The default server cannot be renamed".into(),
            ));
        }
        valid_server_name(new)?;
        if *new != server_name && state.store.server(user.id, new).await?.is_some() {
            return Err(HubError::Conflict(format!(
                "{name} already has a server named {new}"
            )));
        }
    }
    if let Some(options) = &request.user_options {
        if !options.is_object() && !options.is_null() {
            return Err(HubError::BadRequest(
                "user_options must be an object".into(),
            ));
        }
    }
    state
        .store
        .edit_server(
            server.id,
            request.name.as_deref(),
            request.display_name.as_deref(),
            request.user_options.as_ref(),
        )
        .await?;
    let final_name = request.name.unwrap_or(server_name);
    let server = state
        .store
        .server(user.id, &final_name)
        .await?
        .ok_or_else(|| HubError::NotFound(final_name.clone()))?;
    Ok(Json(server_model(&state.settings(), &user, &server, false)).into_response())
}

fn sse_event(event: &ProgressEvent) -> Event {
    Event::default().data(serde_json::to_string(event).unwrap_or_default())
}

async fn progress(
    state: &AppState,
    me: &Identity,
    name: &str,
    server_name: &str,
) -> Result<Response, HubError> {
    let (_, server) = checked_server(state, me, &["read:servers"], name, server_name).await?;
    let prefix = state.settings().server_url(name, server_name);
    type Events = std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;
    let events: Events = match (server.phase, state.lifecycle.progress(name, server_name)) {
        (Phase::Ready, _) => Box::pin(stream::once(async move {
            Ok(sse_event(&ProgressEvent::ready_at(&prefix)))
        })),
        (Phase::Starting, Some(rx)) => Box::pin(follow(rx)),
        (Phase::Starting, None) => Box::pin(follow_row(state.clone(), server.id, prefix)),
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

async fn progress_default(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
) -> Result<Response, HubError> {
    progress(&state, &me, &name, "").await
}

async fn progress_named(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path((name, server)): Path<(String, String)>,
) -> Result<Response, HubError> {
    progress(&state, &me, &name, &server).await
}

/// How often a start driven elsewhere is looked at.
const ROW_POLL: Duration = Duration::from_millis(500);

/// A start this hub is not driving (another replica is, or this hub was restarted during
/// it): events made from the server's row, polled, ending when it is ready or stopped.
fn follow_row(
    state: AppState,
    server_id: i64,
    prefix: String,
) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    stream::unfold(Some((state, None::<String>)), move |polling| {
        let prefix = prefix.clone();
        async move {
            let (state, mut last_detail) = polling?;
            loop {
                let row = match state.store.server_by_id(server_id).await {
                    Ok(row) => row,
                    Err(e) => {
                        let event = ProgressEvent::failed(&format!(
                            "could not read the server's state: {e}"
                        ));
                        return Some((sse_event(&event), None));
                    }
                };
                let Some(row) = row else {
                    return Some((
                        sse_event(&ProgressEvent::failed("the server was deleted")),
                        None,
                    ));
                };
                match row.phase {
                    Phase::Ready => {
                        return Some((sse_event(&ProgressEvent::ready_at(&prefix)), None))
                    }
                    Phase::Stopped | Phase::Stopping => {
                        let reason = row
                            .failed_reason
                            .unwrap_or_else(|| "the server was stopped".into());
                        return Some((sse_event(&ProgressEvent::failed(&reason)), None));
                    }
                    Phase::Starting => {
                        let detail = row.phase_detail.unwrap_or_else(|| "requested".into());
                        if last_detail.as_deref() != Some(detail.as_str()) {
                            let event = ProgressEvent::from_phase_detail(&detail);
                            last_detail = Some(detail);
                            return Some((sse_event(&event), Some((state, last_detail))));
                        }
                    }
                }
                tokio::time::sleep(ROW_POLL).await;
            }
        }
    })
    .map(Ok)
}

/// Every event of a start, as server-sent events.
fn follow(
    rx: tokio::sync::watch::Receiver<Vec<ProgressEvent>>,
) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    progress_events(rx).map(|e| Ok(sse_event(&e)))
}

/// Every event of a start, from the first, ending after the final one.
pub(crate) fn progress_events(
    rx: tokio::sync::watch::Receiver<Vec<ProgressEvent>>,
) -> impl Stream<Item = ProgressEvent> + Send {
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
    .flat_map(stream::iter)
}
