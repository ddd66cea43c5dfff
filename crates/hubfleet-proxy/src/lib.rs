//! hubfleet-proxy: an HTTP + WebSocket reverse proxy, a drop-in for configurable-http-proxy
//! (CHP), usable in process (the hub's own front door) or alone (`hubfleet proxy`).
//!
//! A [`RouteTable`] maps path prefixes to targets (a trie on path segments); [`serve`] /
//! [`serve_with`] accept HTTP/1.1 (optionally TLS) connections and forward each request to the
//! target of its longest matching prefix, keeping the full original path (CHP's
//! `includePrefix=true`). Routes whose target is [`HUB_TARGET`] (and, when a hub is configured,
//! requests matching no route) are answered in-process by the hub's axum `Router`.
//! [`serve_api`] is CHP's REST API on its own listener; [`serve_metrics`] exposes [`Metrics`].
//!
//! Activity: a route's `last_activity` moves when an upstream answers with a status below 300,
//! on every response body chunk streamed from the upstream, and on every chunk flowing through
//! an upgraded (WebSocket) connection in either direction. Data-path updates have millisecond
//! resolution.

mod api;
mod body;
mod copy;
mod listen;
mod metrics;
mod path;
mod pool;
mod routes;
mod server;
mod tls;

pub use api::{api_router, serve_api, ApiOptions};
pub use listen::{serve_https_redirect, serve_https_redirect_with, Listener};
pub use metrics::{open_fds, resident_bytes, serve_metrics, Metrics};
pub use routes::{normalize as normalize_route, Route, RouteTable};
pub use server::{serve, serve_with, ServeConfig};
pub use tls::{ClientCerts, Tls, UpstreamTls};

pub use http::{HeaderName, HeaderValue};

/// The target of the route that the hub itself serves (normally the "/" route).
pub const HUB_TARGET: &str = "hub:";

/// How [`serve`] answers requests that are not forwarded over TCP.
#[derive(Clone, Debug, Default)]
pub struct ProxyOptions {
    /// Requests whose longest match is a route with target [`HUB_TARGET`], or that match no route
    /// at all, are handed to this in-process service instead of being forwarded over TCP.
    pub hub: Option<axum::Router>,
    /// Where the hub serves its pages (JupyterHub's `base_url`, `/` when empty): the hub's own
    /// error page is `<hub_base_url>hub/error/<code>`.
    pub hub_base_url: String,
}

/// Everything public in this crate that can fail.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A route target that is neither `http(s)://host:port[/path]`, `http+unix://<socket>[/path]`
    /// nor [`HUB_TARGET`].
    #[error("invalid proxy target {target:?}: {reason}")]
    InvalidTarget {
        target: String,
        reason: &'static str,
    },
    /// The upstream URI could not be built from the target and request path.
    #[error("invalid upstream URI: {0}")]
    Uri(#[from] http::Error),
    /// Connecting to or talking with the upstream server failed.
    #[error("upstream request failed: {0}")]
    Upstream(#[from] hyper_util::client::legacy::Error),
    /// A TLS certificate or key file could not be used.
    #[error("TLS file {}: {reason}", path.display())]
    Tls {
        path: std::path::PathBuf,
        reason: String,
    },
    /// A certificate or key given as PEM text could not be used.
    #[error("TLS certificate {what}: {reason}")]
    TlsCertificate { what: String, reason: String },
    /// A `--custom-header` that is not `name: value`.
    #[error("custom header {0:?}: expected \"name: value\" with a valid name and value")]
    CustomHeader(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Parse CHP's `--custom-header` form, `name: value`.
pub fn parse_custom_header(raw: &str) -> Result<(HeaderName, HeaderValue), ProxyError> {
    let bad = || ProxyError::CustomHeader(raw.to_owned());
    let (name, value) = raw.split_once(':').ok_or_else(bad)?;
    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
    let value = HeaderValue::from_str(value.trim()).map_err(|_| bad())?;
    Ok((name, value))
}

/// Raise this process's soft limit on open files to its hard limit, so that many idle
/// WebSockets (two descriptors each) do not run into the usual default of 1024. Returns the
/// limit now in force.
pub fn raise_fd_limit() -> Result<u64, ProxyError> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(std::io::Error::from)?;
    }
    Ok(hard)
}
