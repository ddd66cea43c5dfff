//! Groups: CRUD, members and properties (protocol §2.2, §2.3.3; upstream
//! `apihandlers/groups.py`).

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use hubfleet_rbac::{FilterKind, ScopeFilters, Target};
use hubfleet_store::{Group, GroupError, StoreError};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{empty, parse_body, Args, Caller, Page, PageQuery};
use crate::identity::{Identity, Owner};
use crate::{access, AppState, HubError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/hub/api/groups", get(list_groups).post(create_groups))
        .route(
            "/hub/api/groups/{name}",
            get(get_group).post(create_group).delete(delete_group),
        )
        .route(
            "/hub/api/groups/{name}/users",
            post(add_members).delete(remove_members),
        )
        .route("/hub/api/groups/{name}/properties", put(set_properties))
}

/// Who is calling, for the logs.
pub(crate) fn caller_name(me: &Identity) -> &str {
    match &me.owner {
        Owner::User(user) => &user.name,
        Owner::Service(service) => &service.name,
    }
}

/// The group model of protocol §2.3.3 with only the keys `keys` allows.
pub async fn group_model(
    state: &AppState,
    group: &Group,
    keys: &BTreeSet<&'static str>,
) -> Result<Value, HubError> {
    let mut model = Map::new();
    for key in keys {
        let value = match *key {
            "kind" => json!("group"),
            "name" => json!(group.name),
            "users" => json!(group.users),
            "properties" => Value::Object(group.properties.clone()),
            "roles" => json!(state.store.roles_of_group(group.id).await?),
            _ => continue,
        };
        model.insert((*key).to_string(), value);
    }
    Ok(Value::Object(model))
}

/// The model as the caller may see it.
async fn model_for(
    state: &AppState,
    scopes: &BTreeSet<String>,
    group: &Group,
) -> Result<Value, HubError> {
    let keys = hubfleet_rbac::group_model_keys(scopes, &group.name);
    group_model(state, group, &keys).await
}

pub async fn group_named(state: &AppState, name: &str) -> Result<Group, HubError> {
    state
        .store
        .group(name)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("No such group: {name}")))
}

/// User names as the authenticator normalizes them; a name that cannot be a user
/// is reported like an unknown one.
fn normalize_users(users: &[String]) -> Result<Vec<String>, HubError> {
    users
        .iter()
        .map(|u| {
            hubfleet_auth::normalize_username(u)
                .map_err(|_| HubError::BadRequest(format!("No such user: {u}")))
        })
        .collect()
}

/// A name that can be addressed as `/groups/{name}`.
fn check_group_name(name: &str) -> Result<(), HubError> {
    if name.is_empty() || name.contains('/') || name.chars().any(char::is_control) {
        return Err(HubError::BadRequest(format!(
            "Invalid group name {name:?}: it must be non-empty, without '/' or control characters"
        )));
    }
    Ok(())
}

fn group_error(e: GroupError) -> HubError {
    match e {
        GroupError::NoSuchUser(name) => HubError::BadRequest(format!("No such user: {name}")),
        GroupError::NoSuchGroup(name) => HubError::NotFound(format!("No such group: {name}")),
        GroupError::Store(StoreError::Conflict { name, .. }) => {
            HubError::Conflict(format!("Group {name} already exists"))
        }
        GroupError::Store(e) => e.into(),
    }
}

async fn list_groups(
    State(state): State<AppState>,
    Caller(me): Caller,
    headers: HeaderMap,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    Args(query): Args<PageQuery>,
) -> Result<Response, HubError> {
    access::check_any(&me.scopes, &["list:groups"])?;
    let page = Page::from_request(&headers, &query)?;
    let parsed = me.scopes.parsed();
    let only: Option<Vec<String>> = match parsed.get("list:groups") {
        None | Some(ScopeFilters::All) => None,
        Some(ScopeFilters::Only(filters)) => {
            // Only `!group=` filters can select groups; any other would list all of them.
            if filters.keys().any(|kind| *kind != FilterKind::Group) {
                tracing::warn!(caller = %caller_name(&me), "list:groups with a filter other than !group=");
                return Err(HubError::Forbidden(
                    "list:groups is only allowed with !group= filters".into(),
                ));
            }
            Some(
                filters
                    .get(&FilterKind::Group)
                    .map(|names| names.iter().cloned().collect())
                    .unwrap_or_default(),
            )
        }
    };
    let (groups, total) = state
        .store
        .list_groups(page.offset, page.limit, only.as_deref())
        .await?;
    let mut items = Vec::with_capacity(groups.len());
    for group in &groups {
        items.push(model_for(&state, &me.scopes, group).await?);
    }
    Ok(page.respond(items, total, &headers, &uri))
}

/// `POST /groups` (undocumented upstream): several groups with the same members.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateGroups {
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    users: Vec<String>,
    /// Accepted and ignored, as upstream (`_group_model_types`).
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    roles: Option<Vec<String>>,
}

async fn create_groups(
    State(state): State<AppState>,
    Caller(me): Caller,
    body: Bytes,
) -> Result<Response, HubError> {
    access::check(&state, &me.scopes, &["admin:groups"], &Target::None).await?;
    let request = parse_body::<CreateGroups>(&body)?
        .filter(|r| !r.groups.is_empty())
        .ok_or_else(|| HubError::BadRequest("Must specify at least one group to create".into()))?;
    for name in &request.groups {
        check_group_name(name)?;
    }
    let users = normalize_users(&request.users)?;
    let created = state
        .store
        .create_groups(&request.groups, &users)
        .await
        .map_err(group_error)?;
    tracing::info!(caller = %caller_name(&me), groups = ?request.groups, users = users.len(), "created groups");
    let mut models = Vec::with_capacity(created.len());
    for group in &created {
        models.push(model_for(&state, &me.scopes, group).await?);
    }
    Ok((StatusCode::CREATED, Json(Value::Array(models))).into_response())
}

async fn get_group(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
) -> Result<Response, HubError> {
    access::check(
        &state,
        &me.scopes,
        &["read:groups", "read:groups:name", "read:roles:groups"],
        &Target::Group(&name),
    )
    .await?;
    let group = group_named(&state, &name).await?;
    Ok(Json(model_for(&state, &me.scopes, &group).await?).into_response())
}

/// The group model a request may send (`_group_model_types`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GroupBody {
    #[serde(default)]
    users: Option<Vec<String>>,
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    roles: Option<Vec<String>>,
}

async fn create_group(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, HubError> {
    access::check(&state, &me.scopes, &["admin:groups"], &Target::Group(&name)).await?;
    let request = parse_body::<GroupBody>(&body)?.unwrap_or_default();
    check_group_name(&name)?;
    let users = normalize_users(&request.users.unwrap_or_default())?;
    let group = state
        .store
        .create_group(&name, &users)
        .await
        .map_err(group_error)?;
    tracing::info!(caller = %caller_name(&me), group = %name, users = users.len(), "created group");
    let model = model_for(&state, &me.scopes, &group).await?;
    Ok((StatusCode::CREATED, Json(model)).into_response())
}

async fn delete_group(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
) -> Result<Response, HubError> {
    access::check(
        &state,
        &me.scopes,
        &["delete:groups"],
        &Target::Group(&name),
    )
    .await?;
    if !state.store.delete_group(&name).await? {
        return Err(HubError::NotFound(format!("No such group: {name}")));
    }
    tracing::info!(caller = %caller_name(&me), group = %name, "deleted group");
    Ok(empty(StatusCode::NO_CONTENT))
}

/// The members named by a `/groups/{name}/users` body.
fn members_of(body: &Bytes, verb: &str) -> Result<Vec<String>, HubError> {
    let request = parse_body::<GroupBody>(body)?
        .ok_or_else(|| HubError::BadRequest("Invalid JSON data: None".into()))?;
    let users = request
        .users
        .ok_or_else(|| HubError::BadRequest(format!("Must specify users to {verb}")))?;
    normalize_users(&users)
}

async fn add_members(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, HubError> {
    change_members(state, me, name, body, true).await
}

async fn remove_members(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, HubError> {
    change_members(state, me, name, body, false).await
}

/// `POST` (add) or `DELETE` (remove) `/groups/{name}/users`.
async fn change_members(
    state: AppState,
    me: crate::identity::Identity,
    name: String,
    body: Bytes,
    add: bool,
) -> Result<Response, HubError> {
    access::check(&state, &me.scopes, &["groups"], &Target::Group(&name)).await?;
    group_named(&state, &name).await?;
    let users = members_of(&body, if add { "add" } else { "delete" })?;
    let changed = if add {
        state.store.add_group_members(&name, &users).await
    } else {
        state.store.remove_group_members(&name, &users).await
    };
    let group = changed.map_err(group_error)?;
    let action = if add { "added" } else { "removed" };
    tracing::info!(caller = %caller_name(&me), group = %name, ?users, "{action} group members");
    Ok(Json(model_for(&state, &me.scopes, &group).await?).into_response())
}

async fn set_properties(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, HubError> {
    access::check(&state, &me.scopes, &["groups"], &Target::Group(&name)).await?;
    group_named(&state, &name).await?;
    let Some(Value::Object(properties)) = parse_body::<Value>(&body)? else {
        return Err(HubError::BadRequest(
            "Must specify properties (a JSON object)".into(),
        ));
    };
    let group = state
        .store
        .set_group_properties(&name, &properties)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("No such group: {name}")))?;
    tracing::info!(caller = %caller_name(&me), group = %name, "updated group properties");
    Ok(Json(model_for(&state, &me.scopes, &group).await?).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_must_be_addressable() {
        assert!(check_group_name("students-2026").is_ok());
        assert!(check_group_name("Ünï code").is_ok());
        for bad in ["", "a/b", "tab\there"] {
            assert!(check_group_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn store_errors_become_the_right_statuses() {
        let conflict = group_error(GroupError::Store(StoreError::Conflict {
            what: "group",
            name: "g".into(),
        }));
        assert_eq!(conflict.status(), StatusCode::CONFLICT);
        assert_eq!(conflict.to_string(), "Group g already exists");
        assert_eq!(
            group_error(GroupError::NoSuchUser("x".into())).status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            group_error(GroupError::NoSuchGroup("x".into())).status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn bodies_refuse_unknown_fields() {
        assert!(parse_body::<GroupBody>(br#"{"users": ["a"], "admin": true}"#).is_err());
        assert!(parse_body::<GroupBody>(br#"{"users": "a"}"#).is_err());
        assert!(parse_body::<CreateGroups>(br#"{"groups": ["a"], "users": []}"#).is_ok());
        assert!(parse_body::<GroupBody>(b"  ").unwrap().is_none());
    }
}
