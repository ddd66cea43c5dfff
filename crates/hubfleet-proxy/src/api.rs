//! configurable-http-proxy's REST API (`/api/routes`), on its own listener.
//!
//! Behaviour follows CHP 5 (`lib/configproxy.js`): `Authorization: token <t>` when a token is
//! set (else 403, empty body); `^/api/routes(/.*)?$` only (else 404); methods other than GET,
//! POST and DELETE get 405 "Method not supported"; path arguments are percent-decoded; a POSTed
//! body is kept as the route's data and returned by GET with `target` and `last_activity`.

use std::future::Future;

use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};
use subtle_eq::ct_eq;

use crate::listen::{serve_router, Listener};
use crate::metrics::Metrics;
use crate::routes::normalize;
use crate::tls::Tls;
use crate::{Route, RouteTable};

/// Largest POST body accepted (route data is a few hundred bytes).
const MAX_BODY: usize = 1 << 20;

/// How the API server behaves.
#[derive(Clone, Debug, Default)]
pub struct ApiOptions {
    /// `CONFIGPROXY_AUTH_TOKEN`; `None` (or empty) leaves the API open, as CHP does.
    pub auth_token: Option<String>,
    /// CHP's `--host-routing`: a POSTed route's first segment is its host, stored as `host`.
    pub host_routing: bool,
    /// Counted when given.
    pub metrics: Option<Metrics>,
    /// Serve over TLS (CHP's `--api-ssl-key`/`--api-ssl-cert`, with client certificates as
    /// `--api-ssl-request-cert`/`--api-ssl-reject-unauthorized` say).
    pub tls: Option<Tls>,
}

#[derive(Clone)]
struct Api {
    table: RouteTable,
    options: ApiOptions,
}

/// The API as an axum router (for embedding or tests).
pub fn api_router(table: RouteTable, options: ApiOptions) -> axum::Router {
    axum::Router::new()
        .fallback(handle)
        .with_state(Api { table, options })
}

/// Serve the API on `listener` until `shutdown` resolves.
pub async fn serve_api(
    listener: impl Into<Listener>,
    table: RouteTable,
    options: ApiOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = options.tls.clone();
    serve_router(listener.into(), tls, api_router(table, options), shutdown).await
}

mod subtle_eq {
    /// Compare without an early exit, so timing does not reveal how much of a token matched.
    pub(super) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// CHP's `/token\s+(\S+)/` on the Authorization header.
fn presented_token(auth: &str) -> Option<&str> {
    let mut rest = auth;
    while let Some(i) = rest.find("token") {
        let after = &rest[i + "token".len()..];
        let trimmed = after.trim_start();
        if trimmed.len() < after.len() && !trimmed.is_empty() {
            return trimmed.split_whitespace().next();
        }
        rest = after;
    }
    None
}

fn plain(status: StatusCode, msg: impl Into<String>) -> Response {
    let msg = msg.into();
    let msg = if msg.is_empty() {
        status.canonical_reason().unwrap_or("").to_owned()
    } else {
        msg
    };
    (status, msg).into_response()
}

fn json(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// A route as CHP returns it: its data, `target`, and `last_activity` (ISO 8601, ms, `Z`).
fn route_json(route: &Route) -> Value {
    let mut m = route.data.clone();
    m.insert("target".into(), Value::from(route.target.clone()));
    m.insert(
        "last_activity".into(),
        Value::from(
            route
                .last_activity
                .to_rfc3339_opts(SecondsFormat::Millis, true),
        ),
    );
    Value::Object(m)
}

/// What JavaScript's `Date.parse` accepts in practice from clients: RFC 3339 / ISO 8601 with a
/// zone, without one (taken as UTC), or a bare date.
fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

async fn handle(State(api): State<Api>, req: Request) -> Response {
    if let Some(m) = &api.options.metrics {
        m.api_request();
    }
    route_request(&api, req).await
}

async fn route_request(api: &Api, req: Request) -> Response {
    if let Some(expected) = api.options.auth_token.as_deref().filter(|t| !t.is_empty()) {
        let ok = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(presented_token)
            .is_some_and(|t| ct_eq(t.as_bytes(), expected.as_bytes()));
        if !ok {
            tracing::debug!("rejecting API request without a valid token");
            return StatusCode::FORBIDDEN.into_response();
        }
    }
    let raw_path = req.uri().path();
    let Some(rest) = raw_path.strip_prefix("/api/routes") else {
        return plain(StatusCode::NOT_FOUND, "");
    };
    if !(rest.is_empty() || rest.starts_with('/')) {
        return plain(StatusCode::NOT_FOUND, "");
    }
    let arg = if rest.is_empty() {
        None
    } else {
        match percent_decode_str(rest).decode_utf8() {
            Ok(s) => Some(s.into_owned()),
            Err(_) => return plain(StatusCode::BAD_REQUEST, "Path is not UTF-8"),
        }
    };
    let method = req.method().clone();
    let query = req.uri().query().map(str::to_owned);
    match method {
        Method::GET => get_routes(api, arg.as_deref(), query.as_deref()),
        Method::POST => {
            let body = match to_bytes(req.into_body(), MAX_BODY).await {
                Ok(b) => b,
                Err(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "Body too large"),
            };
            post_route(api, arg.as_deref().unwrap_or("/"), &body)
        }
        Method::DELETE => delete_route(api, arg.as_deref().unwrap_or("/")),
        _ => plain(StatusCode::METHOD_NOT_ALLOWED, "Method not supported"),
    }
}

fn get_routes(api: &Api, arg: Option<&str>, query: Option<&str>) -> Response {
    if let Some(path) = arg.filter(|p| !p.is_empty() && *p != "/") {
        return match api.table.get(path) {
            Some(route) => json(StatusCode::OK, &route_json(&route)),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    let mut inactive_since = None;
    if let Some(q) = query {
        let params: Vec<(String, String)> = serde_urlencoded_pairs(q);
        let value = params
            .iter()
            .find(|(k, v)| k == "inactiveSince" && !v.is_empty())
            .or_else(|| {
                params
                    .iter()
                    .find(|(k, v)| k == "inactive_since" && !v.is_empty())
            })
            .map(|(_, v)| v.as_str());
        if let Some(v) = value {
            match parse_timestamp(v) {
                Some(t) => inactive_since = Some(t),
                None => {
                    return plain(
                        StatusCode::BAD_REQUEST,
                        format!("Invalid datestamp '{v}' must be ISO8601."),
                    )
                }
            }
        }
    }
    let mut out = Map::new();
    for (prefix, route) in api.table.all() {
        if inactive_since.is_some_and(|t| route.last_activity >= t) {
            continue;
        }
        out.insert(prefix, route_json(&route));
    }
    json(StatusCode::OK, &Value::Object(out))
}

/// `application/x-www-form-urlencoded` pairs of a query string.
fn serde_urlencoded_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

fn post_route(api: &Api, path: &str, body: &[u8]) -> Response {
    let data: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("Body not valid JSON: {e}")),
    };
    let mut data = match data {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let Some(Value::String(target)) = data.remove("target") else {
        tracing::warn!(%path, "bad POST data: no string 'target'");
        return plain(StatusCode::BAD_REQUEST, "Must specify 'target' as string");
    };
    // Clients cannot set the activity clock; it is the proxy's.
    data.remove("last_activity");
    let key = normalize(path);
    if api.options.host_routing && key != "/" {
        if let Some(host) = key.split('/').nth(1) {
            data.insert("host".into(), Value::from(host));
        }
    }
    tracing::info!(prefix = %key, %target, "adding route");
    api.table.add(&key, &target, data);
    StatusCode::CREATED.into_response()
}

fn delete_route(api: &Api, path: &str) -> Response {
    if api.table.remove(path) {
        tracing::info!(prefix = %normalize(path), "removed route");
        StatusCode::NO_CONTENT.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_regex_like_chp() {
        assert_eq!(presented_token("token abc"), Some("abc"));
        assert_eq!(presented_token("token   abc  def"), Some("abc"));
        assert_eq!(presented_token("xtoken abc"), Some("abc"));
        assert_eq!(presented_token("Bearer abc"), None);
        assert_eq!(presented_token("Token abc"), None);
        assert_eq!(presented_token("tokenabc"), None);
        assert_eq!(presented_token("token "), None);
    }

    #[test]
    fn timestamps() {
        let t = parse_timestamp("2026-08-20T10:05:00.123Z").unwrap();
        assert_eq!(t.timestamp_millis() % 1000, 123);
        assert!(parse_timestamp("2026-08-20T10:05:00+02:00").is_some());
        assert!(parse_timestamp("2026-08-20T10:05:00").is_some());
        assert!(parse_timestamp("2026-08-20").is_some());
        assert!(parse_timestamp("yesterday").is_none());
        assert!(parse_timestamp("").is_none());
    }
}
