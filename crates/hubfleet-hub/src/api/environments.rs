//! Profiles and local environments (hubfleet's own API, not upstream's): list, get, create,
//! update, duplicate, hide, delete, history and restore, under `/hub/api/environments`.
//! Scope `admin:environments`; with `!group=<g>` filters, only profiles limited to groups
//! all within them (before and after the change). Local environments need it unfiltered.
//! Cookie writes are XSRF-checked by [`Caller`]. See docs/environments.md.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hubfleet_rbac::ScopeFilters;
use hubfleet_store::{
    EnvChange, EnvKind, EnvironmentState, NewBuild, StoreError, StoredEnvironment,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::groups::caller_name;
use super::{parse_body, Caller};
use crate::environments::{profile_name, SOURCE_CONFIG, SOURCE_UI};
use crate::identity::Identity;
use crate::{AppState, HubError};

pub const SCOPE: &str = "admin:environments";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/hub/api/environments", get(list))
        .route("/hub/api/environments/{kind}", post(create))
        .route(
            "/hub/api/environments/{kind}/{name}",
            get(get_one).put(update).delete(delete),
        )
        .route(
            "/hub/api/environments/{kind}/{name}/duplicate",
            post(duplicate),
        )
        .route("/hub/api/environments/{kind}/{name}/hide", post(hide))
        .route("/hub/api/environments/{kind}/{name}/history", get(history))
        .route("/hub/api/environments/{kind}/{name}/restore", post(restore))
        .route(
            "/hub/api/environments/{kind}/{name}/build",
            get(build_status).post(build),
        )
}

fn kind_of(segment: &str) -> Result<EnvKind, HubError> {
    match segment {
        "profiles" => Ok(EnvKind::Profile),
        "local" => Ok(EnvKind::Environment),
        other => Err(HubError::NotFound(format!(
            "No such kind of environment: {other} (use `profiles` or `local`)"
        ))),
    }
}

/// The caller's `admin:environments`, or 403.
fn filters(me: &Identity) -> Result<ScopeFilters, HubError> {
    me.scopes.parsed().get(SCOPE).cloned().ok_or_else(|| {
        HubError::Forbidden(format!(
            "Action is not authorized with current scopes; requires any of [{SCOPE}]"
        ))
    })
}

fn allowed_groups(data: &Value) -> Option<Vec<String>> {
    data.get("allowed_groups")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|g| g.as_str().map(str::to_string))
                .collect()
        })
}

/// May the caller change an object whose data is `data`?
fn covers(filters: &ScopeFilters, kind: EnvKind, data: &Value) -> bool {
    match kind {
        EnvKind::Profile => filters.covers_profile_groups(allowed_groups(data).as_deref()),
        EnvKind::Environment => matches!(filters, ScopeFilters::All),
    }
}

fn refuse_uncovered(
    filters: &ScopeFilters,
    kind: EnvKind,
    name: &str,
    data: &Value,
) -> Result<(), HubError> {
    if covers(filters, kind, data) {
        return Ok(());
    }
    let held = match filters {
        ScopeFilters::All => String::new(),
        ScopeFilters::Only(f) => f
            .get(&hubfleet_rbac::FilterKind::Group)
            .map(|g| g.iter().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_default(),
    };
    let why = match kind {
        EnvKind::Environment => {
            "local environments are changed with an unfiltered admin:environments".to_string()
        }
        EnvKind::Profile => match allowed_groups(data) {
            Some(g) if !g.is_empty() => format!("it is for groups {}", g.join(", ")),
            _ => "it is open to everyone (no allowed_groups)".to_string(),
        },
    };
    Err(HubError::Forbidden(format!(
        "Your admin:environments is limited to groups [{held}]: you cannot change `{name}`, {why}"
    )))
}

/// What a group-limited admin may set in a `kubespawner_override` (top level, a choice's, an
/// unlisted choice's): resources and placement. Every other key (`image`, `environment`,
/// `lifecycle_hooks`, `init_containers`, `extra_*_config`, `volumes`, `uid`, …) changes what
/// runs in members' servers, as them.
const RESOURCE_OVERRIDES: &[&str] = &[
    "mem_limit",
    "mem_guarantee",
    "cpu_limit",
    "cpu_guarantee",
    "extra_resource_limits",
    "extra_resource_guarantees",
    "node_selector",
    "tolerations",
];

/// Display fields a group-limited admin may change (`allowed_groups` within their filters is
/// checked by [`refuse_uncovered`]).
const PROFILE_DISPLAY: &[&str] = &[
    "display_name",
    "slug",
    "description",
    "default",
    "allowed_groups",
];
const OPTION_DISPLAY: &[&str] = &["display_name"];
const CHOICE_DISPLAY: &[&str] = &[
    "display_name",
    "slug",
    "description",
    "default",
    "allowed_groups",
];
const UNLISTED_DISPLAY: &[&str] = &[
    "display_name",
    "description",
    "display_name_in_choices",
    "description_in_choices",
    "validation_message",
];

/// A profile's fields by path (`kubespawner_override.image`).
type Fields = std::collections::BTreeMap<String, Value>;

/// Walks a field that has parts of its own (path, key, value); false: take it whole.
type Nested = dyn FnMut(&str, &str, &Value, &mut Fields) -> bool;

/// Everything of a profile's `data` but resources and display fields, by its path (`null` is
/// as absent). Missing choices count as empty, so adding or removing one that overrides more
/// than resources is a change too.
fn runtime_fields(data: &Value) -> Fields {
    fn overrides(prefix: &str, value: &Value, out: &mut Fields) {
        match value.as_object() {
            Some(map) => {
                for (key, v) in map {
                    if !RESOURCE_OVERRIDES.contains(&key.as_str()) && !v.is_null() {
                        out.insert(format!("{prefix}.{key}"), v.clone());
                    }
                }
            }
            None if !value.is_null() => {
                out.insert(prefix.to_string(), value.clone());
            }
            None => {}
        }
    }
    fn fields(
        prefix: &str,
        value: &Value,
        display: &[&str],
        out: &mut Fields,
        nested: &mut Nested,
    ) {
        let Some(map) = value.as_object() else {
            if !value.is_null() {
                out.insert(prefix.to_string(), value.clone());
            }
            return;
        };
        for (key, v) in map {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            if display.contains(&key.as_str()) || v.is_null() || nested(&path, key, v, out) {
                continue;
            }
            out.insert(path, v.clone());
        }
    }
    fn choice(path: &str, key: &str, v: &Value, out: &mut Fields) -> bool {
        if key == "kubespawner_override" {
            overrides(path, v, out);
            return true;
        }
        false
    }
    fn option(path: &str, key: &str, v: &Value, out: &mut Fields) -> bool {
        match key {
            "choices" => match v.as_object() {
                Some(choices) => {
                    for (name, c) in choices {
                        fields(
                            &format!("{path}.{name}"),
                            c,
                            CHOICE_DISPLAY,
                            out,
                            &mut choice,
                        );
                    }
                    true
                }
                None => false,
            },
            "unlisted_choice" => {
                fields(path, v, UNLISTED_DISPLAY, out, &mut choice);
                true
            }
            _ => false,
        }
    }
    let mut out = Fields::new();
    fields(
        "",
        data,
        PROFILE_DISPLAY,
        &mut out,
        &mut |path, key, v, out| match key {
            "kubespawner_override" => {
                overrides(path, v, out);
                true
            }
            "profile_options" => match v.as_object() {
                Some(options) => {
                    for (name, o) in options {
                        fields(
                            &format!("{path}.{name}"),
                            o,
                            OPTION_DISPLAY,
                            out,
                            &mut option,
                        );
                    }
                    true
                }
                None => false,
            },
            _ => false,
        },
    );
    out
}

/// A group-limited admin may change only resources and display fields: the rest of a profile
/// (its image, environment, hooks, containers, volumes, ids, at the top level, in each choice
/// and in unlisted choices) decides what runs in members' servers. `before` is the object's
/// data before the change (`None` for a new object).
fn refuse_runtime_changes(
    filters: &ScopeFilters,
    kind: EnvKind,
    before: Option<&Value>,
    after: &Value,
) -> Result<(), HubError> {
    if matches!(filters, ScopeFilters::All) || kind != EnvKind::Profile {
        return Ok(());
    }
    let before = before.map(runtime_fields).unwrap_or_default();
    let after = runtime_fields(after);
    let changed = before
        .keys()
        .chain(after.keys())
        .find(|key| before.get(*key) != after.get(*key));
    if let Some(key) = changed {
        return Err(HubError::Forbidden(format!(
            "Your admin:environments is limited to groups: `{key}` (what runs in members' servers) \
             is changed with an unfiltered admin:environments; a filtered one changes only \
             display fields and resources ({})",
            RESOURCE_OVERRIDES.join(", ")
        )));
    }
    Ok(())
}

fn model(state: &AppState, filters: &ScopeFilters, e: &StoredEnvironment) -> Value {
    let read_only = e.source == SOURCE_CONFIG && !state.settings().environments.allow_ui_overrides;
    json!({
        "kind": e.kind,
        "name": e.name,
        "source": e.source,
        "hidden": e.hidden,
        "version": e.version,
        "data": e.data,
        "read_only": read_only,
        "can_edit": !read_only && covers(filters, e.kind, &e.data),
    })
}

async fn current(
    state: &AppState,
    kind: EnvKind,
    name: &str,
) -> Result<StoredEnvironment, HubError> {
    state
        .store
        .environment(kind, name)
        .await?
        .filter(|e| !e.deleted)
        .ok_or_else(|| HubError::NotFound(format!("No such {}: {name}", kind.as_str())))
}

/// The current object, when the caller may change it: not config-defined (unless overrides
/// are allowed) and within the caller's group filters.
async fn changeable(
    state: &AppState,
    filters: &ScopeFilters,
    kind: EnvKind,
    name: &str,
) -> Result<StoredEnvironment, HubError> {
    let old = current(state, kind, name).await?;
    refuse_read_only(state, &old)?;
    refuse_uncovered(filters, kind, name, &old.data)?;
    Ok(old)
}

/// Config-defined objects are read-only unless the config allows overrides.
fn refuse_read_only(state: &AppState, e: &StoredEnvironment) -> Result<(), HubError> {
    if e.source == SOURCE_CONFIG && !state.settings().environments.allow_ui_overrides {
        return Err(HubError::Forbidden(format!(
            "`{}` is defined in the values file (source: config): change it there, or set hubfleet.environments.allow_ui_overrides: true to allow changes in the admin panel",
            e.name
        )));
    }
    Ok(())
}

fn validation_response(problems: Vec<Value>) -> Response {
    let summary = problems
        .iter()
        .map(|p| {
            let field = p["field"].as_str().unwrap_or_default();
            let message = p["message"].as_str().unwrap_or_default();
            if field.is_empty() {
                message.to_string()
            } else {
                format!("{field}: {message}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"status": 400, "message": summary, "problems": problems})),
    )
        .into_response()
}

/// Check `data` as `name` among the other objects with the config loader's checks. `Err`: the
/// 400 response naming each field and why.
async fn check(
    state: &AppState,
    kind: EnvKind,
    name: &str,
    data: &Value,
) -> Result<Result<(), Response>, HubError> {
    if name.is_empty() || name.contains('/') || name.chars().any(char::is_control) {
        return Ok(Err(validation_response(vec![json!({
            "field": if kind == EnvKind::Profile { "slug" } else { "name" },
            "message": format!("{name:?} is not a usable name: it must be non-empty, without '/' or control characters"),
        })])));
    }
    if !data.is_object() {
        return Ok(Err(validation_response(vec![json!({
            "field": "", "message": "must be a mapping (a JSON object) of the entry's fields",
        })])));
    }
    let mut profiles: Vec<(String, Value)> = state
        .store
        .environments(EnvKind::Profile)
        .await?
        .into_iter()
        .map(|e| (e.name, e.data))
        .collect();
    let mut environments: Vec<(String, Value)> = state
        .store
        .environments(EnvKind::Environment)
        .await?
        .into_iter()
        .map(|e| (e.name, e.data))
        .collect();
    let list = match kind {
        EnvKind::Profile => &mut profiles,
        EnvKind::Environment => &mut environments,
    };
    let mut data = data.clone();
    if kind == EnvKind::Profile {
        data["slug"] = Value::String(name.to_string());
    }
    let index = match list.iter().position(|(n, _)| n == name) {
        Some(i) => {
            list[i].1 = data;
            i
        }
        None => {
            list.push((name.to_string(), data));
            list.len() - 1
        }
    };
    // Only the profiles need their slugs written; the names are the keys.
    let profile_values: Vec<Value> = profiles
        .iter()
        .map(|(n, d)| {
            let mut d = d.clone();
            if d.is_object() {
                d["slug"] = Value::String(n.clone());
            }
            d
        })
        .collect();
    match hubfleet_config::editable::check(
        &profile_values,
        &environments,
        &state.settings().environments.gpus,
    ) {
        Ok(_) => Ok(Ok(())),
        Err(problems) => {
            let mine = match kind {
                EnvKind::Profile => index.to_string(),
                EnvKind::Environment => name.to_string(),
            };
            let mut out = Vec::new();
            for p in problems {
                if p.object == mine || p.object.is_empty() {
                    out.push(json!({"field": p.field, "message": p.message}));
                } else {
                    // Another object became invalid with this change (e.g. its image is gone).
                    let other = p
                        .object
                        .parse::<usize>()
                        .ok()
                        .and_then(|i| profiles.get(i).map(|(n, _)| format!("profile `{n}`")))
                        .unwrap_or_else(|| format!("environment `{}`", p.object));
                    out.push(
                        json!({"field": p.field, "message": format!("{other}: {}", p.message)}),
                    );
                }
            }
            Ok(Err(validation_response(out)))
        }
    }
}

async fn list(State(state): State<AppState>, Caller(me): Caller) -> Result<Response, HubError> {
    let filters = filters(&me)?;
    let profiles = state.store.environments(EnvKind::Profile).await?;
    let environments = state.store.environments(EnvKind::Environment).await?;
    Ok(Json(json!({
        "profiles": profiles.iter().map(|e| model(&state, &filters, e)).collect::<Vec<_>>(),
        "environments": environments.iter().map(|e| model(&state, &filters, e)).collect::<Vec<_>>(),
        "allow_ui_overrides": state.settings().environments.allow_ui_overrides,
        "unfiltered": matches!(filters, ScopeFilters::All),
    }))
    .into_response())
}

async fn get_one(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path((kind, name)): Path<(String, String)>,
) -> Result<Response, HubError> {
    let filters = filters(&me)?;
    let e = current(&state, kind_of(&kind)?, &name).await?;
    Ok(Json(model(&state, &filters, &e)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Write {
    /// The entry as it would be written in the values file.
    data: Value,
    /// A local environment's name (profiles take theirs from `slug` / `display_name`).
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    comment: String,
    /// The version the change was made on; a conflict when it is no longer the latest.
    #[serde(default)]
    version: Option<i64>,
}

fn store_error(e: StoreError) -> HubError {
    match e {
        StoreError::Conflict { what, name } => HubError::Conflict(format!("A {what} {name}")),
        e => e.into(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn save(
    state: &AppState,
    me: &Identity,
    kind: EnvKind,
    name: &str,
    new: EnvironmentState,
    expect: Option<i64>,
    action: &str,
    comment: &str,
) -> Result<StoredEnvironment, HubError> {
    let saved = state
        .store
        .put_environment(
            kind,
            name,
            &new,
            None,
            expect,
            &EnvChange {
                author: caller_name(me),
                action,
                comment,
            },
        )
        .await
        .map_err(store_error)?;
    tracing::info!(caller = %caller_name(me), kind = kind.as_str(), %name, action, version = saved.version, "environment changed");
    Ok(saved)
}

async fn create(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(kind): Path<String>,
    body: Bytes,
) -> Result<Response, HubError> {
    let filters = filters(&me)?;
    let kind = kind_of(&kind)?;
    let request = parse_body::<Write>(&body)?
        .ok_or_else(|| HubError::BadRequest("Give the new entry as {\"data\": {...}}".into()))?;
    let name = match kind {
        EnvKind::Profile => profile_name(&request.data),
        EnvKind::Environment => request.name.clone().unwrap_or_default(),
    };
    refuse_uncovered(&filters, kind, &name, &request.data)?;
    refuse_runtime_changes(&filters, kind, None, &request.data)?;
    if let Some(existing) = state.store.environment(kind, &name).await? {
        if !existing.deleted {
            return Err(HubError::Conflict(format!(
                "A {} named `{name}` exists already: choose another {}",
                kind.as_str(),
                if kind == EnvKind::Profile {
                    "slug"
                } else {
                    "name"
                }
            )));
        }
    }
    if let Err(response) = check(&state, kind, &name, &request.data).await? {
        return Ok(response);
    }
    let mut data = request.data;
    if kind == EnvKind::Profile {
        data["slug"] = Value::String(name.clone());
    }
    let saved = save(
        &state,
        &me,
        kind,
        &name,
        EnvironmentState {
            source: SOURCE_UI.into(),
            hidden: false,
            deleted: false,
            data,
        },
        None,
        "create",
        &request.comment,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(model(&state, &filters, &saved))).into_response())
}

async fn update(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path((kind, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, HubError> {
    let filters = filters(&me)?;
    let kind = kind_of(&kind)?;
    let request = parse_body::<Write>(&body)?
        .ok_or_else(|| HubError::BadRequest("Give the entry as {\"data\": {...}}".into()))?;
    let old = changeable(&state, &filters, kind, &name).await?;
    refuse_uncovered(&filters, kind, &name, &request.data)?;
    refuse_runtime_changes(&filters, kind, Some(&old.data), &request.data)?;
    let mut data = request.data;
    if kind == EnvKind::Profile {
        if let Some(slug) = data.get("slug").and_then(Value::as_str) {
            if slug != name {
                return Ok(validation_response(vec![json!({
                    "field": "slug",
                    "message": format!("a profile's slug cannot change (it is what users' saved choices name); duplicate `{name}` to make one with slug `{slug}`"),
                })]));
            }
        }
        // Not an object: `check` answers 400 below.
        if let Some(fields) = data.as_object_mut() {
            fields.insert("slug".into(), Value::String(name.clone()));
        }
    }
    if let Err(response) = check(&state, kind, &name, &data).await? {
        return Ok(response);
    }
    let saved = save(
        &state,
        &me,
        kind,
        &name,
        EnvironmentState {
            source: SOURCE_UI.into(),
            hidden: old.hidden,
            deleted: false,
            data,
        },
        request.version,
        "update",
        &request.comment,
    )
    .await?;
    Ok(Json(model(&state, &filters, &saved)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Duplicate {
    /// The copy's slug (profiles) or name; default `<name>-copy`.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    comment: String,
}

async fn duplicate(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path((kind, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, HubError> {
    let filters = filters(&me)?;
    let kind = kind_of(&kind)?;
    let request = parse_body::<Duplicate>(&body)?.unwrap_or_default();
    let old = current(&state, kind, &name).await?;
    let new_name = request.name.unwrap_or_else(|| format!("{name}-copy"));
    let mut data = old.data.clone();
    if kind == EnvKind::Profile {
        data["slug"] = Value::String(new_name.clone());
        let display = request.display_name.unwrap_or_else(|| {
            format!(
                "{} (copy)",
                old.data["display_name"].as_str().unwrap_or(&name)
            )
        });
        data["display_name"] = Value::String(display);
        // A copy is never the default: there is one.
        if let Some(map) = data.as_object_mut() {
            map.remove("default");
        }
    }
    refuse_uncovered(&filters, kind, &new_name, &data)?;
    if state
        .store
        .environment(kind, &new_name)
        .await?
        .is_some_and(|e| !e.deleted)
    {
        return Err(HubError::Conflict(format!(
            "A {} named `{new_name}` exists already",
            kind.as_str()
        )));
    }
    if let Err(response) = check(&state, kind, &new_name, &data).await? {
        return Ok(response);
    }
    let comment = if request.comment.is_empty() {
        format!("copy of `{name}` version {}", old.version)
    } else {
        request.comment
    };
    let saved = save(
        &state,
        &me,
        kind,
        &new_name,
        EnvironmentState {
            source: SOURCE_UI.into(),
            hidden: false,
            deleted: false,
            data,
        },
        None,
        "duplicate",
        &comment,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(model(&state, &filters, &saved))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Hide {
    hidden: bool,
    #[serde(default)]
    comment: String,
}

async fn hide(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path((kind, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, HubError> {
    let filters = filters(&me)?;
    let kind = kind_of(&kind)?;
    let request = parse_body::<Hide>(&body)?
        .ok_or_else(|| HubError::BadRequest("Give {\"hidden\": true} or false".into()))?;
    let old = changeable(&state, &filters, kind, &name).await?;
    let saved = save(
        &state,
        &me,
        kind,
        &name,
        EnvironmentState {
            source: SOURCE_UI.into(),
            hidden: request.hidden,
            deleted: false,
            data: old.data,
        },
        None,
        if request.hidden { "hide" } else { "show" },
        &request.comment,
    )
    .await?;
    Ok(Json(model(&state, &filters, &saved)).into_response())
}

#[derive(Deserialize, Default)]
struct DeleteQuery {
    #[serde(default)]
    comment: String,
}

async fn delete(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path((kind, name)): Path<(String, String)>,
    super::Args(query): super::Args<DeleteQuery>,
) -> Result<Response, HubError> {
    let filters = filters(&me)?;
    let kind = kind_of(&kind)?;
    let old = changeable(&state, &filters, kind, &name).await?;
    if kind == EnvKind::Environment {
        // A profile that names it would no longer start.
        let users: Vec<String> = state
            .store
            .environments(EnvKind::Profile)
            .await?
            .into_iter()
            .filter(|p| {
                p.data
                    .to_string()
                    .contains(&format!("\"image\":\"{name}\""))
            })
            .map(|p| p.name)
            .collect();
        if !users.is_empty() {
            return Err(HubError::Conflict(format!(
                "Environment `{name}` is the image of profile(s) {}: change them first",
                users.join(", ")
            )));
        }
    }
    save(
        &state,
        &me,
        kind,
        &name,
        EnvironmentState {
            source: SOURCE_UI.into(),
            hidden: old.hidden,
            deleted: true,
            data: old.data,
        },
        None,
        "delete",
        &query.comment,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn history(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path((kind, name)): Path<(String, String)>,
) -> Result<Response, HubError> {
    filters(&me)?;
    let kind = kind_of(&kind)?;
    let versions = state.store.environment_history(kind, &name).await?;
    if versions.is_empty() {
        return Err(HubError::NotFound(format!(
            "No such {}: {name}",
            kind.as_str()
        )));
    }
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            json!({
                "version": v.version,
                "author": v.author,
                "created": super::isoformat(v.created),
                "action": v.action,
                "comment": v.comment,
                "diff": v.diff,
                "hidden": v.hidden,
                "deleted": v.deleted,
                "data": v.data,
            })
        })
        .collect();
    Ok(Json(json!({"name": name, "kind": kind, "versions": versions})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Restore {
    version: i64,
    #[serde(default)]
    comment: String,
}

async fn restore(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path((kind, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, HubError> {
    let filters = filters(&me)?;
    let kind = kind_of(&kind)?;
    let request = parse_body::<Restore>(&body)?
        .ok_or_else(|| HubError::BadRequest("Give {\"version\": N}".into()))?;
    let now = state
        .store
        .environment(kind, &name)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("No such {}: {name}", kind.as_str())))?;
    refuse_read_only(&state, &now)?;
    let versions = state.store.environment_history(kind, &name).await?;
    let old = versions
        .iter()
        .find(|v| v.version == request.version)
        .ok_or_else(|| {
            HubError::NotFound(format!(
                "`{name}` has no version {} (it has 1 to {})",
                request.version, now.version
            ))
        })?;
    refuse_uncovered(&filters, kind, &name, &now.data)?;
    refuse_uncovered(&filters, kind, &name, &old.data)?;
    refuse_runtime_changes(&filters, kind, Some(&now.data), &old.data)?;
    if let Err(response) = check(&state, kind, &name, &old.data).await? {
        return Ok(response);
    }
    let comment = if request.comment.is_empty() {
        format!("restored version {}", old.version)
    } else {
        format!("restored version {}: {}", old.version, request.comment)
    };
    let saved = save(
        &state,
        &me,
        kind,
        &name,
        EnvironmentState {
            source: SOURCE_UI.into(),
            hidden: old.hidden,
            deleted: false,
            data: old.data.clone(),
        },
        None,
        "restore",
        &comment,
    )
    .await?;
    Ok(Json(model(&state, &filters, &saved)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Build {
    /// pip requirements, one per line.
    requirements: String,
    #[serde(default)]
    comment: String,
}

/// A name that is safe as a directory name and a YAML key (as `hubfleet env create`).
fn usable_environment_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// `POST …/local/{name}/build`: build a new version of a local environment (a new venv with
/// the requirements) in the background; `GET` the same path follows its log. The environment
/// points at the new venv only once the build succeeds: running servers keep the old one.
async fn build(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path((kind, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, HubError> {
    let filters = filters(&me)?;
    let kind = kind_of(&kind)?;
    if kind != EnvKind::Environment {
        return Err(HubError::NotFound(
            "Only local environments are built: POST /hub/api/environments/local/<name>/build"
                .into(),
        ));
    }
    refuse_uncovered(&filters, kind, &name, &Value::Null)?;
    let request = parse_body::<Build>(&body)?.ok_or_else(|| {
        HubError::BadRequest("Give {\"requirements\": \"numpy\\npandas==2.2\"}".into())
    })?;
    if !usable_environment_name(&name) {
        return Ok(validation_response(vec![json!({
            "field": "name",
            "message": format!("`{name}` is not a usable environment name: use letters, digits, `-`, `_`, `.` and `:` (e.g. `python-3.12`)"),
        })]));
    }
    let requirements = crate::env_build::requirement_lines(&request.requirements);
    if let Some(option) = requirements.iter().find(|r| r.starts_with('-')) {
        return Ok(validation_response(vec![json!({
            "field": "requirements",
            "message": format!("`{option}`: pip options are not accepted here, only requirements such as `numpy>=1.26`"),
        })]));
    }
    // Packages from the index only: not URLs, VCS checkouts or paths on the hub's machine.
    if let Some(source) = requirements.iter().find(|r| {
        r.contains("://") || r.contains('@') || r.starts_with(['.', '/', '~']) || r.contains("git+")
    }) {
        return Ok(validation_response(vec![json!({
            "field": "requirements",
            "message": format!("`{source}`: only packages from the package index are accepted here (a name and a version, such as `numpy>=1.26`), not URLs, VCS checkouts or paths"),
        })]));
    }
    let existing = state
        .store
        .environment(kind, &name)
        .await?
        .filter(|e| !e.deleted);
    if let Some(e) = &existing {
        refuse_read_only(&state, e)?;
        if e.data.get("cmd").is_some() {
            return Err(HubError::Conflict(format!(
                "`{name}` runs a command (`cmd`), not a Python environment: it cannot be built"
            )));
        }
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f");
    let data_dir = state.settings().data_dir.clone();
    let directory = crate::env_build::builds_dir(&data_dir, &name).join(format!("build-{stamp}"));
    let previous = existing
        .as_ref()
        .and_then(|e| e.data.get("path"))
        .and_then(Value::as_str)
        .map(std::path::PathBuf::from);
    // A build whose replica died long ago (and has not started again) no longer blocks.
    crate::env_build::fail_stale(&state.store, None, &data_dir).await?;
    let started_on = existing.as_ref().map(|e| e.version);
    let author = caller_name(&me).to_string();
    let directory_text = directory.display().to_string();
    let record = match state
        .store
        .begin_environment_build(&NewBuild {
            environment: &name,
            author: &author,
            replica: state.lifecycle.replica(),
            directory: &directory_text,
            requirements: &requirements,
        })
        .await
    {
        Ok(record) => record,
        Err(StoreError::Conflict { .. }) => {
            return Err(HubError::Conflict(format!(
                "A build of `{name}` is running: wait for it to finish"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(caller = %author, environment = %name, build = record.id, directory = %directory.display(), "building a local environment");
    let task_state = state.clone();
    let comment = request.comment;
    let id = record.id;
    tokio::spawn(async move {
        let state = task_state;
        let log = crate::env_build::BuildLog::default();
        let (done, done_rx) = tokio::sync::oneshot::channel();
        let follower = {
            let (log, store) = (log.clone(), state.store.clone());
            tokio::spawn(async move { log.follow(&store, id, done_rx).await })
        };
        let (python, base) = (
            state.settings().environments.python.clone(),
            state.settings().environments.build_packages.clone(),
        );
        let dir = directory.clone();
        let reqs = requirements.clone();
        let pip_log = log.clone();
        let result = tokio::task::spawn_blocking(move || {
            let built = crate::env_build::build_venv(&python, &dir, &base, &reqs, &mut |line| {
                pip_log.push(line)
            });
            if built.is_ok() {
                std::fs::write(
                    dir.join(crate::env_build::REQUIREMENTS_FILE),
                    reqs.join("\n") + "\n",
                )?;
            }
            built
        })
        .await;
        let outcome = match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("the build stopped: {e}")),
        };
        let (status, version, error) = match outcome {
            Ok(()) => {
                let comment = if comment.is_empty() {
                    format!("built with: {}", requirements.join(", "))
                } else {
                    comment
                };
                let saved = save_build(
                    &state,
                    &name,
                    &directory,
                    started_on,
                    &log,
                    &EnvChange {
                        author: &author,
                        action: "build",
                        comment: &comment,
                    },
                )
                .await;
                match saved {
                    Ok(saved) => {
                        tracing::info!(environment = %name, version = saved.version, "local environment built");
                        log.push(&format!("built: version {} of {name}", saved.version));
                        // The new directory and the one before it (to go back to) stay.
                        let keep: Vec<_> = std::iter::once(directory.clone())
                            .chain(previous.clone())
                            .collect();
                        match crate::env_build::remove_old_builds(
                            &state.store,
                            &data_dir,
                            &name,
                            &keep,
                        )
                        .await
                        {
                            Ok(old) => {
                                for line in old.describe() {
                                    tracing::info!(environment = %name, "{line}");
                                    log.push(&line);
                                }
                            }
                            Err(e) => log.push(&format!(
                                "old build directories kept: cannot tell which running servers use them: {e}"
                            )),
                        }
                        ("succeeded", Some(saved.version), None)
                    }
                    Err(e) => {
                        let error = format!("built, but not recorded: {e}");
                        log.push(&format!("failed: {error}"));
                        ("failed", None, Some(error))
                    }
                }
            }
            Err(error) => {
                tracing::warn!(environment = %name, %error, "building a local environment failed");
                // Nothing points at the half-made venv.
                let _ = std::fs::remove_dir_all(&directory);
                log.push(&format!("failed: {error}"));
                ("failed", None, Some(error))
            }
        };
        let _ = done.send(());
        let _ = follower.await;
        if let Err(e) = state
            .store
            .finish_environment_build(id, status, version, error.as_deref(), &log.text())
            .await
        {
            tracing::error!(environment = %name, build = id, error = %e, "recording the end of a build");
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(crate::env_build::build_model(&record)),
    )
        .into_response())
}

/// Point environment `name` at the build in `directory`: its latest version with only `path`
/// replaced (its `env`, `hidden` and an edit saved during the build stay). Saved against the
/// version just read, again on a conflict with a change made meanwhile.
async fn save_build(
    state: &AppState,
    name: &str,
    directory: &std::path::Path,
    started_on: Option<i64>,
    log: &crate::env_build::BuildLog,
    change: &EnvChange<'_>,
) -> Result<StoredEnvironment, StoreError> {
    let path = Value::String(directory.display().to_string());
    let mut tries = 0;
    loop {
        tries += 1;
        let latest = state
            .store
            .environment(EnvKind::Environment, name)
            .await?
            .filter(|e| !e.deleted);
        let (mut data, hidden, expect) = match &latest {
            Some(e) => (e.data.clone(), e.hidden, Some(e.version)),
            None => (json!({}), false, None),
        };
        if let (Some(start), Some(now)) = (started_on, expect) {
            if start != now && tries == 1 {
                log.push(&format!(
                    "`{name}` was changed during the build (version {start} → {now}): the new path goes onto version {now}"
                ));
            }
        }
        if !data.is_object() {
            data = json!({});
        }
        data["path"] = path.clone();
        let saved = state
            .store
            .put_environment(
                EnvKind::Environment,
                name,
                &EnvironmentState {
                    source: SOURCE_UI.into(),
                    hidden,
                    deleted: false,
                    data,
                },
                None,
                expect,
                change,
            )
            .await;
        match saved {
            // Changed between the read and the write: read it again.
            Err(StoreError::Conflict { .. }) if tries < 5 => continue,
            other => return other,
        }
    }
}

async fn build_status(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path((kind, name)): Path<(String, String)>,
) -> Result<Response, HubError> {
    filters(&me)?;
    if kind_of(&kind)? != EnvKind::Environment {
        return Err(HubError::NotFound(
            "Only local environments are built".into(),
        ));
    }
    if let Some(build) = state.store.last_environment_build(&name).await? {
        return Ok(Json(crate::env_build::build_model(&build)).into_response());
    }
    // Never built here: the requirements of the current version, if it was built.
    let current = current(&state, EnvKind::Environment, &name).await?;
    let requirements = current
        .data
        .get("path")
        .and_then(Value::as_str)
        .and_then(|p| {
            std::fs::read_to_string(
                std::path::Path::new(p).join(crate::env_build::REQUIREMENTS_FILE),
            )
            .ok()
        })
        .map(|t| crate::env_build::requirement_lines(&t))
        .unwrap_or_default();
    Ok(Json(json!({"state": "none", "requirements": requirements, "log": "", "version": current.version})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited() -> ScopeFilters {
        let mut only = std::collections::BTreeMap::new();
        only.insert(
            hubfleet_rbac::FilterKind::Group,
            std::collections::BTreeSet::from(["class-a".to_string()]),
        );
        ScopeFilters::Only(only)
    }

    #[test]
    fn filtered_admins_change_resources_and_display_fields_only() {
        let before = json!({
            "display_name": "A", "allowed_groups": ["class-a"],
            "kubespawner_override": {"mem_limit": "1G", "image": "py"},
            "profile_options": {"size": {"display_name": "Size", "choices": {
                "small": {"display_name": "Small", "kubespawner_override": {"cpu_limit": 1}},
            }}},
        });
        let resources = json!({
            "display_name": "B", "description": "new", "allowed_groups": ["class-a"],
            "kubespawner_override": {"mem_limit": "2G", "image": "py", "tolerations": []},
            "profile_options": {"size": {"display_name": "Sizes", "choices": {
                "small": {"display_name": "S", "default": true, "kubespawner_override": {"cpu_limit": 2}},
                "big": {"display_name": "Big", "kubespawner_override": {"mem_limit": "8G"}},
            }}},
        });
        let f = limited();
        assert!(refuse_runtime_changes(&f, EnvKind::Profile, Some(&before), &resources).is_ok());
        for (after, key) in [
            (
                json!({"display_name": "A", "kubespawner_override": {"mem_limit": "1G"}}),
                "kubespawner_override.image",
            ),
            (
                json!({"display_name": "A", "kubespawner_override": {"image": "py", "uid": 0}}),
                "kubespawner_override.uid",
            ),
            (
                json!({"display_name": "A", "kubespawner_override": {"image": "py"},
                       "profile_options": {"v": {"unlisted_choice": {"enabled": true,
                           "kubespawner_override": {"image": "{value}"}}}}}),
                "profile_options.v.unlisted_choice.enabled",
            ),
        ] {
            match refuse_runtime_changes(&f, EnvKind::Profile, Some(&before), &after) {
                Err(HubError::Forbidden(m)) => assert!(m.contains(&format!("`{key}`")), "{m}"),
                other => panic!("{after}: {other:?}"),
            }
        }
        // Unfiltered: anything.
        let after = json!({"kubespawner_override": {"lifecycle_hooks": {}}});
        assert!(refuse_runtime_changes(&ScopeFilters::All, EnvKind::Profile, None, &after).is_ok());
        assert!(refuse_runtime_changes(&f, EnvKind::Profile, None, &after).is_err());
    }
}
