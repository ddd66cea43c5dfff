//! The JupyterHub REST API (`/hub/api/…`), protocol §2. One module per resource;
//! this one holds what they share: who is calling, errors, bodies, pagination.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::identity::{self, Identity};
use crate::{AppState, HubError};

pub mod environments;
pub mod groups;
pub mod hub;
pub mod shares;
pub mod tokens;
pub mod users;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(users::routes())
        .merge(tokens::routes())
        .merge(hub::routes())
        .merge(groups::routes())
        .merge(shares::routes())
        .merge(environments::routes())
        .route("/hub/api/{*rest}", axum::routing::any(not_found))
}

pub fn json_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "status": status.as_u16(), "message": message })),
    )
        .into_response()
}

async fn not_found(uri: Uri) -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        &format!("No such API endpoint: {}", uri.path()),
    )
}

/// JupyterHub's timestamp form: naive UTC ISO 8601 with a `Z`, microseconds only when non-zero.
pub fn isoformat(t: DateTime<Utc>) -> String {
    if t.timestamp_subsec_micros() == 0 {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }
}

pub fn iso(t: Option<DateTime<Utc>>) -> Value {
    t.map(|t| Value::String(isoformat(t)))
        .unwrap_or(Value::Null)
}

/// The authenticated caller of an API request, or 403 "Missing or invalid
/// credentials." (never 401: `jupyterhub-singleuser` relies on it).
pub struct Caller(pub Identity);

impl FromRequestParts<AppState> for Caller {
    type Rejection = HubError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let xsrf = parts.uri.query().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "_xsrf")
                .map(|(_, v)| v.into_owned())
        });
        caller(state, &parts.method, &parts.headers, xsrf.as_deref())
            .await
            .map(Caller)
    }
}

pub async fn caller(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    xsrf: Option<&str>,
) -> Result<Identity, HubError> {
    let me = identity::identify(state, method, headers, xsrf)
        .await?
        .ok_or_else(|| HubError::Forbidden(hubfleet_rbac::MISSING_CREDENTIALS_MESSAGE.into()))?;
    // `hubfleet.api_rate_limit`: users who are not admins, whatever their credential, except
    // the token the hub gave a server of theirs (its activity and access checks are the hub's
    // own machinery, not requests the user makes).
    let servers_own_token = me
        .token
        .as_ref()
        .is_some_and(|t| t.server_id.is_some() && t.client_id == "jupyterhub");
    if let identity::Owner::User(user) = &me.owner {
        if !user.admin && !servers_own_token {
            state
                .settings()
                .api_rate_limit
                .take(user.id)
                .map_err(HubError::RateLimited)?;
        }
    }
    Ok(me)
}

/// A JSON body: empty means `None`; anything unparseable (or with unknown fields,
/// for types that deny them) is a 400 naming the problem.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<Option<T>, HubError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| HubError::BadRequest(format!("Invalid JSON in body of request: {e}")))
}

/// Query arguments read as tornado's `get_argument` reads them: when a name is
/// repeated, the last value counts (axum's `Query` would refuse the request).
pub struct Args<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Args<T> {
    type Rejection = HubError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let mut last: Vec<(String, String)> = Vec::new();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match last.iter_mut().find(|(key, _)| *key == k) {
                Some(pair) => pair.1 = v.into_owned(),
                None => last.push((k.into_owned(), v.into_owned())),
            }
        }
        let deduped = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&last)
            .finish();
        let uri: Uri = format!("/?{deduped}")
            .parse()
            .map_err(|_| HubError::BadRequest("Invalid query string".into()))?;
        axum::extract::Query::<T>::try_from_uri(&uri)
            .map(|q| Args(q.0))
            .map_err(|e| HubError::BadRequest(format!("Invalid query string: {}", e.body_text())))
    }
}

/// `offset`/`limit` pagination (protocol §2.1).
#[derive(Clone, Copy, Debug)]
pub struct Page {
    pub offset: i64,
    pub limit: i64,
    /// The client asked for `application/jupyterhub-pagination+json`.
    pub paginated: bool,
}

pub const PAGE_DEFAULT_LIMIT: i64 = 50;
pub const PAGE_MAX_LIMIT: i64 = 200;

#[derive(Deserialize, Default)]
pub struct PageQuery {
    pub offset: Option<String>,
    pub limit: Option<String>,
}

impl Page {
    pub fn from_request(headers: &HeaderMap, query: &PageQuery) -> Result<Page, HubError> {
        let paginated = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| {
                v.trim()
                    .starts_with("application/jupyterhub-pagination+json")
            });
        let number = |name: &str, value: &Option<String>| -> Result<Option<i64>, HubError> {
            value
                .as_deref()
                .map(|v| {
                    v.trim().parse::<i64>().map_err(|_| {
                        HubError::BadRequest(format!("{name} must be an integer, not {v:?}"))
                    })
                })
                .transpose()
        };
        // As upstream: `abs(int(x))`, then the limit clamped to [1, max].
        let offset = number("offset", &query.offset)?
            .unwrap_or(0)
            .saturating_abs();
        let default = if paginated {
            PAGE_DEFAULT_LIMIT
        } else {
            PAGE_MAX_LIMIT
        };
        let limit = number("limit", &query.limit)?
            .unwrap_or(default)
            .saturating_abs()
            .clamp(1, PAGE_MAX_LIMIT);
        Ok(Page {
            offset,
            limit,
            paginated,
        })
    }

    /// The bare list, or `{items, _pagination}` with an absolute `next.url` built
    /// from the request (the idle culler follows it as is).
    pub fn respond(
        &self,
        items: Vec<Value>,
        total: i64,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Response {
        if !self.paginated {
            return Json(Value::Array(items)).into_response();
        }
        let next_offset = self.offset + self.limit;
        let next = if next_offset < total {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            let proto = headers
                .get("x-forwarded-proto")
                .and_then(|h| h.to_str().ok())
                .and_then(|p| p.split(',').next())
                .unwrap_or("http");
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
                if k != "offset" && k != "limit" {
                    query.append_pair(&k, &v);
                }
            }
            query.append_pair("offset", &next_offset.to_string());
            query.append_pair("limit", &self.limit.to_string());
            json!({
                "offset": next_offset,
                "limit": self.limit,
                "url": format!("{proto}://{host}{}?{}", uri.path(), query.finish()),
            })
        } else {
            Value::Null
        };
        Json(json!({
            "items": items,
            "_pagination": { "offset": self.offset, "limit": self.limit, "total": total, "next": next },
        }))
        .into_response()
    }
}

/// An empty `text/plain` answer, as JupyterHub gives for server start/stop.
pub fn empty(status: StatusCode) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], "").into_response()
}

/// `true` unless the value is `0`, `false` or absent (JupyterHub's flag parsing);
/// an empty value (`?include_stopped_servers`) counts as true.
pub fn query_flag(value: Option<&str>) -> bool {
    match value {
        None => false,
        Some(v) => !matches!(v.to_ascii_lowercase().as_str(), "0" | "false"),
    }
}
