//! hubfleet-proxy: an in-process HTTP + WebSocket reverse proxy, the library counterpart of
//! configurable-http-proxy (CHP).
//!
//! A [`RouteTable`] maps path prefixes to targets; [`serve`] accepts HTTP/1.1 connections and
//! forwards each request to the target of its longest matching prefix, keeping the full original
//! path (CHP's `includePrefix=true`). Routes whose target is [`HUB_TARGET`] (and, when a hub is
//! configured, requests matching no route) are answered in-process by the hub's axum `Router`.
//!
//! Activity: a route's `last_activity` moves on every proxied request (any status), on every
//! response body chunk streamed from the upstream, and on every chunk flowing through an upgraded
//! (WebSocket) connection in either direction. Data-path updates have millisecond resolution.

mod body;
mod routes;
mod server;

pub use routes::{Route, RouteTable};
pub use server::serve;

/// The target of the route that the hub itself serves (normally the "/" route).
pub const HUB_TARGET: &str = "hub:";

/// How [`serve`] answers requests that are not forwarded over TCP.
#[derive(Clone, Debug, Default)]
pub struct ProxyOptions {
    /// Requests whose longest match is a route with target [`HUB_TARGET`], or that match no route
    /// at all, are handed to this in-process service instead of being forwarded over TCP.
    pub hub: Option<axum::Router>,
}

/// Everything public in this crate that can fail.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A route target that is neither `http://host:port[/path]` nor [`HUB_TARGET`].
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
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
