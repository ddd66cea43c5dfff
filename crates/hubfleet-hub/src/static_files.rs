//! The pages' CSS and JavaScript, embedded in the binary and served at `/hub/static/…`.
//! Pages link them with `?v=<hash of all assets>`; such URLs are cached for a year, since a
//! new build changes the hash. Nothing is loaded from another site.

use std::sync::OnceLock;

use axum::extract::{Path, RawQuery};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use crate::AppState;

const ASSETS: &[(&str, &str, &str)] = &[
    (
        "hub.css",
        "text/css; charset=utf-8",
        include_str!("../static/hub.css"),
    ),
    ("common.js", JS, include_str!("../static/common.js")),
    ("admin.js", JS, include_str!("../static/admin.js")),
    ("home.js", JS, include_str!("../static/home.js")),
    ("token.js", JS, include_str!("../static/token.js")),
    ("spawn.js", JS, include_str!("../static/spawn.js")),
    ("binder.js", JS, include_str!("../static/binder.js")),
    (
        "logo.svg",
        "image/svg+xml",
        include_str!("../static/logo.svg"),
    ),
];

const JS: &str = "text/javascript; charset=utf-8";

pub fn routes() -> Router<AppState> {
    Router::new().route("/hub/static/{*path}", get(serve))
}

/// A short hash of every asset: the `?v=` of asset URLs.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut hash = Sha256::new();
        for (name, _, body) in ASSETS {
            hash.update(name.as_bytes());
            hash.update(body.as_bytes());
        }
        hex::encode(&hash.finalize()[..6])
    })
}

async fn serve(
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some((_, content_type, body)) = ASSETS.iter().find(|(name, _, _)| *name == path) else {
        return (StatusCode::NOT_FOUND, "No such file").into_response();
    };
    let etag = format!("\"{}\"", version());
    let versioned = query
        .as_deref()
        .is_some_and(|q| q == format!("v={}", version()));
    let cache = if versioned {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag)
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
            *body,
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, etag);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The Content-Security-Policy of every page: scripts, styles, fonts and requests only from
/// the hub itself; images also from the configured logos' origins.
/// `form_targets`: where the hub's forms may lead besides the hub (browsers apply
/// `form-action` to the redirects after a POST too, e.g. the OAuth confirmation's redirect to a
/// server on its user's host).
pub fn page_csp(image_origins: &[String], form_targets: &[String], report_uri: &str) -> String {
    let mut img = String::from("'self' data:");
    for origin in image_origins {
        img.push(' ');
        img.push_str(origin);
    }
    let mut form = String::from("'self'");
    for target in form_targets {
        form.push(' ');
        form.push_str(target);
    }
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src {img}; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action {form}; \
         frame-ancestors 'none'; report-uri {report_uri}"
    )
}
