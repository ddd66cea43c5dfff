//! The hub itself: version and info, services, the proxy's routes, shutdown.

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hubfleet_rbac::Target;
use hubfleet_store::Service;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{parse_body, Args, Caller, Page, PageQuery};
use crate::access;
use crate::{AppState, HubError, JUPYTERHUB_VERSION};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/hub/api", get(root))
        .route("/hub/api/", get(root))
        .route("/hub/api/info", get(info))
        .route("/hub/api/services", get(list_services))
        .route(
            "/hub/api/services/{name}",
            get(get_service).post(create_service).delete(delete_service),
        )
        .route(
            "/hub/api/proxy",
            get(get_proxy).post(sync_proxy).patch(patch_proxy),
        )
        .route("/hub/api/shutdown", post(shutdown))
        .route("/hub/api/config/reload", post(reload_config))
        .route("/hub/api/metrics", get(metrics))
}

async fn root() -> Response {
    (
        [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")],
        Json(json!({ "version": JUPYTERHUB_VERSION })),
    )
        .into_response()
}

async fn info(State(state): State<AppState>, Caller(me): Caller) -> Result<Response, HubError> {
    access::check(&state, &me.scopes, &["read:hub"], &Target::None).await?;
    let version = env!("CARGO_PKG_VERSION");
    Ok(Json(json!({
        "version": JUPYTERHUB_VERSION,
        "python": format!("none: hubfleet {version} is written in Rust"),
        "sys_executable": std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default(),
        "authenticator": { "class": format!("hubfleet.{}", state.authenticator().kind()), "version": version },
        "spawner": { "class": "hubfleet.local", "version": version },
    }))
    .into_response())
}

/// The service model of protocol §2.3.4, with the keys `held` may read.
pub async fn service_model(
    state: &AppState,
    held: &BTreeSet<String>,
    service: &Service,
) -> Result<Map<String, Value>, HubError> {
    let keys = hubfleet_rbac::service_model_keys(held, &service.name);
    let roles: Vec<String> = {
        let mut roles: Vec<String> = state
            .store
            .roles_of_service(service.id)
            .await?
            .into_iter()
            .map(|r| r.name)
            .collect();
        if service.admin {
            roles.push("admin".into());
        }
        roles.sort();
        roles
    };
    let (command, pid) = state.services.process_info(&service.name);
    let prefix = if service.url.is_empty() {
        String::new()
    } else {
        format!("/services/{}/", service.name)
    };
    let mut model = Map::new();
    let mut put = |key: &'static str, value: Value| {
        if keys.contains(key) {
            model.insert(key.to_string(), value);
        }
    };
    put("kind", json!("service"));
    put("name", json!(service.name));
    put("admin", json!(service.admin));
    put("roles", json!(roles));
    put("url", json!(service.url));
    put("prefix", json!(prefix));
    // Upstream's `Service.command` is a list, `[]` when the hub does not start it.
    put("command", json!(command));
    put("pid", json!(pid.unwrap_or(0)));
    put("info", service.info.clone());
    put("display", json!(service.display));
    Ok(model)
}

/// `GET /services`: an object keyed by name, as the code returns (the spec says a list).
async fn list_services(
    State(state): State<AppState>,
    Caller(me): Caller,
) -> Result<Response, HubError> {
    access::check_any(&me.scopes, &["list:services"])?;
    let parsed = me.scopes.parsed();
    let mut all = Map::new();
    for service in state.store.list_services().await? {
        if parsed.covers(
            "list:services",
            &Target::Service(&service.name),
            &hubfleet_rbac::NoGroups,
        ) {
            all.insert(
                service.name.clone(),
                Value::Object(service_model(&state, &me.scopes, &service).await?),
            );
        }
    }
    Ok(Json(Value::Object(all)).into_response())
}

async fn get_service(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
) -> Result<Response, HubError> {
    access::check(
        &state,
        &me.scopes,
        &["read:services", "read:services:name", "read:roles:services"],
        &Target::Service(&name),
    )
    .await?;
    let service = state
        .store
        .service_by_name(&name)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("No such service: {name}")))?;
    Ok(Json(Value::Object(
        service_model(&state, &me.scopes, &service).await?,
    ))
    .into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ServiceSpec {
    name: Option<String>,
    #[serde(default)]
    admin: bool,
    url: Option<String>,
    api_token: Option<String>,
    info: Option<Map<String, Value>>,
    display: Option<bool>,
    oauth_client_allowed_scopes: Option<Vec<String>>,
    oauth_no_confirm: Option<bool>,
    oauth_client_id: Option<String>,
    oauth_redirect_uri: Option<String>,
    command: Option<Value>,
}

fn valid_service_name(name: &str) -> Result<(), HubError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(HubError::BadRequest(format!(
            "Invalid service name {name:?}: use letters, digits, '-', '_' and '.'"
        )))
    }
}

/// Undocumented upstream: add a service at run time (no `command`: only external services).
async fn create_service(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, HubError> {
    access::check(
        &state,
        &me.scopes,
        &["admin:services"],
        &Target::Service(&name),
    )
    .await?;
    valid_service_name(&name)?;
    let spec: ServiceSpec = parse_body(&body)?.unwrap_or_default();
    if spec.command.is_some() {
        return Err(HubError::BadRequest(
            "Managed services (with a command) can only be defined in the config file".into(),
        ));
    }
    if spec.name.as_deref().is_some_and(|n| n != name) {
        return Err(HubError::BadRequest(
            "the name in the body differs from the URL".into(),
        ));
    }
    if state.store.service_by_name(&name).await?.is_some() {
        return Err(HubError::Conflict(format!("Service {name} already exists")));
    }
    if spec.admin && !me.scopes.contains("admin:users") {
        return Err(HubError::Forbidden(
            "Only admins can create admin services".into(),
        ));
    }
    if let Some(url) = &spec.url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(HubError::BadRequest(format!(
                "service url {url:?} must be http(s)://host:port"
            )));
        }
    }
    let _ = (
        spec.oauth_client_allowed_scopes,
        spec.oauth_no_confirm,
        spec.oauth_client_id,
        spec.oauth_redirect_uri,
    );
    let service = state
        .services
        .add(
            &state,
            crate::services::ServiceDefinition {
                name: name.clone(),
                admin: spec.admin,
                url: spec.url.unwrap_or_default(),
                api_token: spec.api_token,
                info: Value::Object(spec.info.unwrap_or_default()),
                display: spec.display.unwrap_or(true),
                command: Vec::new(),
                environment: Default::default(),
                from_config: false,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Value::Object(
            service_model(&state, &me.scopes, &service).await?,
        )),
    )
        .into_response())
}

async fn delete_service(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
) -> Result<Response, HubError> {
    access::check(
        &state,
        &me.scopes,
        &["admin:services"],
        &Target::Service(&name),
    )
    .await?;
    let service = state
        .store
        .service_by_name(&name)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("No such service: {name}")))?;
    if service.from_config {
        return Err(HubError::MethodNotAllowed(format!(
            "Service {name} is defined in the config file: remove it there"
        )));
    }
    state.services.remove(&state, &service).await?;
    Ok(StatusCode::OK.into_response())
}

async fn get_proxy(
    State(state): State<AppState>,
    Caller(me): Caller,
    Args(query): Args<PageQuery>,
    headers: HeaderMap,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
) -> Result<Response, HubError> {
    access::check(&state, &me.scopes, &["proxy"], &Target::None).await?;
    let page = Page::from_request(&headers, &query)?;
    let routes: Vec<(String, Value)> = state
        .routes
        .all()
        .into_iter()
        .filter(|(_, route)| route.data.get("jupyterhub") == Some(&Value::Bool(true)))
        .map(|(path, route)| {
            // Host routes are written as upstream's proxies write them: `host/path/`.
            let routespec = if path == "/" {
                path
            } else if state.settings().subdomain_host.is_some() {
                format!("{}/", path.trim_start_matches('/'))
            } else {
                format!("{path}/")
            };
            let mut data = route.data.clone();
            data.insert(
                "last_activity".into(),
                json!(super::isoformat(route.last_activity)),
            );
            let target = if route.target == hubfleet_proxy::HUB_TARGET {
                state.settings().internal_base_url.clone()
            } else {
                route.target.clone()
            };
            (
                routespec.clone(),
                json!({ "routespec": routespec, "target": target, "data": data }),
            )
        })
        .collect();
    if page.paginated {
        let total = routes.len() as i64;
        let items = routes
            .into_iter()
            .skip(page.offset as usize)
            .take(page.limit as usize)
            .map(|(_, v)| v)
            .collect();
        return Ok(page.respond(items, total, &headers, &uri));
    }
    Ok(Json(Value::Object(routes.into_iter().collect())).into_response())
}

async fn sync_proxy(
    State(state): State<AppState>,
    Caller(me): Caller,
) -> Result<Response, HubError> {
    access::check(&state, &me.scopes, &["proxy"], &Target::None).await?;
    state.lifecycle.check_routes().await?;
    state.services.check_routes(&state).await?;
    Ok(StatusCode::OK.into_response())
}

#[derive(Deserialize, Default)]
struct ProxyPatch {
    api_url: Option<Value>,
    auth_token: Option<Value>,
    ip: Option<Value>,
    port: Option<Value>,
    protocol: Option<Value>,
}

/// The proxy is built in: there is nothing to re-target, but the routes are re-checked.
async fn patch_proxy(
    State(state): State<AppState>,
    Caller(me): Caller,
    body: Bytes,
) -> Result<Response, HubError> {
    access::check(&state, &me.scopes, &["proxy"], &Target::None).await?;
    let patch: ProxyPatch = parse_body::<Value>(&body)?
        .map(|v| {
            if !v.is_object() {
                return Err(HubError::BadRequest(
                    "the body must be a JSON object".into(),
                ));
            }
            serde_json::from_value(v).map_err(|e| HubError::BadRequest(e.to_string()))
        })
        .transpose()?
        .unwrap_or_default();
    let _ = (
        patch.api_url,
        patch.auth_token,
        patch.ip,
        patch.port,
        patch.protocol,
    );
    state.lifecycle.check_routes().await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /hub/api/config/reload` (scope `admin:hub`, hubfleet's own): read the config files
/// again, and with replicas (PostgreSQL) ask every replica to reload its own; the JSON summary
/// says what applies now, what needs a restart, and why files were refused (400, with
/// `file:line:column`), and `replicas` how each replica's reload went.
async fn reload_config(
    State(state): State<AppState>,
    Caller(me): Caller,
) -> Result<Response, HubError> {
    access::check(&state, &me.scopes, &["admin:hub"], &Target::None).await?;
    let Some(reloader) = crate::reload::reloader(&state).await else {
        return Err(HubError::Conflict(
            "this hub was not started from config files (`hubfleet serve --config`): nothing to reload"
                .into(),
        ));
    };
    let summary = reloader.reload(&state).await;
    // Every replica reloads its own files; the answer says how each went.
    let summary = crate::reload::forward(&state, summary).await;
    let status = if summary.ok {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok((status, Json(summary)).into_response())
}

#[derive(Deserialize, Default)]
struct ShutdownRequest {
    proxy: Option<Value>,
    servers: Option<Value>,
}

async fn shutdown(
    State(state): State<AppState>,
    Caller(me): Caller,
    body: Bytes,
) -> Result<Response, HubError> {
    access::check(&state, &me.scopes, &["shutdown"], &Target::None).await?;
    let request: ShutdownRequest = match parse_body::<Value>(&body)? {
        None => ShutdownRequest::default(),
        Some(Value::Object(map)) => serde_json::from_value(Value::Object(map))
            .map_err(|e| HubError::BadRequest(e.to_string()))?,
        Some(_) => {
            return Err(HubError::BadRequest(
                "the body must be a JSON object".into(),
            ))
        }
    };
    let flag = |name: &str, value: &Option<Value>| -> Result<bool, HubError> {
        match value {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(HubError::BadRequest(format!(
                "{name} must be true or false, not {other}"
            ))),
        }
    };
    let _proxy = flag("proxy", &request.proxy)?;
    let servers = flag("servers", &request.servers)?;
    let state2 = state.clone();
    tokio::spawn(async move {
        if servers {
            if let Err(e) = state2.lifecycle.stop_all().await {
                tracing::warn!(error = %e, "stopping servers for shutdown");
            }
        }
        state2.services.stop_all().await;
        state2.shutdown.notify_waiters();
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "message": "Shutting down Hub" })),
    )
        .into_response())
}

/// Prometheus metrics (scope `read:metrics`; open to all with `authenticate_prometheus: false`).
pub async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    caller: Result<Caller, HubError>,
) -> Result<Response, HubError> {
    if state.settings().authenticate_prometheus {
        let Caller(me) = caller?;
        access::check(&state, &me.scopes, &["read:metrics"], &Target::None).await?;
    }
    state.settings().metrics.refresh(&state).await?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (format, content_type) = crate::metrics::negotiate(accept);
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::VARY, "Accept"),
        ],
        state.settings().metrics.render(format),
    )
        .into_response())
}
