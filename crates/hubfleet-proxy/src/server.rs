//! The accept loop, request dispatch, HTTP forwarding and upgrade tunnelling.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::body::ProxyBody;
use crate::routes::{Entry, Target};
use crate::{ProxyError, ProxyOptions, RouteTable};

/// How long in-flight requests may keep running after `shutdown` fires.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

type UpstreamClient = Client<HttpConnector, Incoming>;

struct Shared {
    table: RouteTable,
    hub: Option<axum::Router>,
    client: UpstreamClient,
    /// The proxy's own port, pre-rendered for X-Forwarded-Port.
    port_value: HeaderValue,
}

/// Per-connection facts, computed once per TCP connection rather than per request.
#[derive(Clone)]
struct Peer {
    addr: SocketAddr,
    ip_value: HeaderValue,
}

fn upstream_client() -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    // A black-holed upstream should turn into a 503, not a hung request.
    connector.set_connect_timeout(Some(Duration::from_secs(10)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_timer(TokioTimer::new())
        .build(connector)
}

/// Serve the proxy on `listener` until `shutdown` resolves.
///
/// After `shutdown` the listener is closed, idle keep-alive connections are closed, and in-flight
/// requests get a few seconds to finish. Already-upgraded (WebSocket) tunnels are left running.
pub async fn serve(
    listener: TcpListener,
    table: RouteTable,
    options: ProxyOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let local_port = listener.local_addr()?.port();
    let shared = Arc::new(Shared {
        table,
        hub: options.hub,
        client: upstream_client(),
        port_value: HeaderValue::from(local_port),
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.keep_alive(true).timer(TokioTimer::new());

    // Connections hold a receiver; `closed()` on the sender tells us when all have finished.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let mut shutdown = pin!(shutdown);
    tracing::info!(port = local_port, "proxy listening");
    loop {
        let (stream, addr) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            res = listener.accept() => match res {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually per-connection (ECONNABORTED) or fd exhaustion: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        // Small proxied writes (websocket frames, SSE events) must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let peer = Peer {
            addr,
            ip_value: HeaderValue::from_str(&addr.ip().to_canonical().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
        };
        let st = shared.clone();
        let svc = hyper::service::service_fn(move |req| {
            let st = st.clone();
            let peer = peer.clone();
            async move { Ok::<_, Infallible>(handle(&st, &peer, req).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut conn = pin!(conn);
            let res = tokio::select! {
                res = conn.as_mut() => res,
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = res {
                tracing::debug!(peer = %addr, error = %e, "client connection ended with error");
            }
        });
    }
    drop(listener);
    drop(stop_rx);
    stop_tx.send_replace(());
    if tokio::time::timeout(SHUTDOWN_GRACE, stop_tx.closed())
        .await
        .is_err()
    {
        tracing::debug!("proxy shutdown grace period elapsed with connections still open");
    }
    tracing::info!(port = local_port, "proxy stopped");
    Ok(())
}

async fn handle(st: &Shared, peer: &Peer, mut req: Request<Incoming>) -> Response<ProxyBody> {
    let Some(entry) = st.table.lookup_entry(req.uri().path()) else {
        return match &st.hub {
            Some(hub) => to_hub(hub, st, peer, req).await,
            None => simple(StatusCode::NOT_FOUND, "Not Found\n".to_owned()),
        };
    };
    match &entry.parsed {
        Target::Http {
            authority,
            path_prefix,
        } => {
            entry.touch_coarse();
            let uri = match upstream_uri(authority, path_prefix, req.uri()) {
                Ok(uri) => uri,
                Err(e) => {
                    tracing::warn!(prefix = %entry.prefix, error = %e, "cannot build upstream URI");
                    return simple(StatusCode::BAD_REQUEST, "Bad Request\n".to_owned());
                }
            };
            *req.uri_mut() = uri;
            forward(st, peer, req, entry).await
        }
        Target::Hub => match &st.hub {
            Some(hub) => {
                entry.touch_coarse();
                to_hub(hub, st, peer, req).await
            }
            None => {
                tracing::warn!(prefix = %entry.prefix, "route targets the hub but no hub is configured");
                unavailable(&entry.prefix)
            }
        },
        Target::Invalid(e) => {
            tracing::warn!(prefix = %entry.prefix, error = %e, "request for route with unusable target");
            unavailable(&entry.prefix)
        }
    }
}

/// Dispatch to the in-process hub router. The hub sees the same X-Forwarded-* headers an upstream
/// would (as a hub behind CHP does), plus the real peer address as `ConnectInfo`.
async fn to_hub(
    hub: &axum::Router,
    st: &Shared,
    peer: &Peer,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    add_forwarded_headers(req.headers_mut(), peer, &st.port_value);
    req.extensions_mut().insert(ConnectInfo(peer.addr));
    let req = req.map(axum::body::Body::new);
    match hub.clone().oneshot(req).await {
        Ok(resp) => resp.map(ProxyBody::Hub),
        Err(never) => match never {},
    }
}

/// Full original path and query, behind the target's own path prefix (if any).
fn upstream_uri(authority: &Authority, path_prefix: &str, orig: &Uri) -> Result<Uri, ProxyError> {
    let orig_pq = orig.path_and_query();
    let path_and_query = if path_prefix.is_empty() {
        orig_pq
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"))
    } else {
        let pq = orig_pq.map_or("/", PathAndQuery::as_str);
        PathAndQuery::try_from(format!("{path_prefix}{pq}")).map_err(http::Error::from)?
    };
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority.clone());
    parts.path_and_query = Some(path_and_query);
    Ok(Uri::from_parts(parts).map_err(http::Error::from)?)
}

async fn forward(
    st: &Shared,
    peer: &Peer,
    mut req: Request<Incoming>,
    entry: Arc<Entry>,
) -> Response<ProxyBody> {
    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let headers = req.headers_mut();
    strip_hop_by_hop(headers, upgrade);
    add_forwarded_headers(headers, peer, &st.port_value);
    // Upstream always speaks HTTP/1.1 so pooled connections stay keep-alive.
    *req.version_mut() = Version::HTTP_11;

    let mut resp = match st.client.request(req).await {
        Ok(resp) => resp,
        Err(e) => {
            let e = ProxyError::from(e);
            tracing::warn!(prefix = %entry.prefix, target = %entry.target, error = %error_chain(&e),
                "upstream not reachable");
            return unavailable(&entry.prefix);
        }
    };

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            tracing::warn!(prefix = %entry.prefix, "upstream switched protocols without being asked");
            return simple(StatusCode::BAD_GATEWAY, "Bad Gateway\n".to_owned());
        };
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(tunnel(client_upgrade, upstream_upgrade, entry));
        // The 101 keeps Upgrade/Connection and e.g. Sec-WebSocket-Accept exactly as sent.
        let (parts, _) = resp.into_parts();
        return Response::from_parts(parts, ProxyBody::empty());
    }

    strip_hop_by_hop(resp.headers_mut(), false);
    resp.map(|body| ProxyBody::Upstream { body, entry })
}

/// Splice an upgraded client connection to the upgraded upstream connection.
async fn tunnel(client: OnUpgrade, upstream: OnUpgrade, entry: Arc<Entry>) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(prefix = %entry.prefix, error = %e, "upgrade failed");
            return;
        }
    };
    entry.touch_coarse();
    let prefix = entry.prefix.clone();
    let mut client = Activity {
        io: TokioIo::new(client),
        entry,
    };
    let mut upstream = TokioIo::new(upstream);
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => {
            tracing::debug!(%prefix, bytes_up = up, bytes_down = down, "upgraded connection closed")
        }
        Err(e) => tracing::debug!(%prefix, error = %e, "upgraded connection ended with error"),
    }
}

/// Client side of a tunnel; every chunk in either direction counts as route activity.
struct Activity {
    io: TokioIo<Upgraded>,
    entry: Arc<Entry>,
}

impl AsyncRead for Activity {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.entry.touch_coarse();
        }
        res
    }
}

impl AsyncWrite for Activity {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            this.entry.touch_coarse();
        }
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            this.entry.touch_coarse();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

/// Drop hop-by-hop headers, including any named in `Connection` (RFC 9110 §7.6.1).
/// For upgrades, `Upgrade` survives and `Connection` is reduced to exactly "upgrade".
fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    if let Some(conn) = headers.get(header::CONNECTION) {
        // Common case ("keep-alive", "close", "upgrade") needs no allocation.
        let named: Vec<HeaderName> = conn
            .to_str()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|t| {
                !t.is_empty()
                    && !t.eq_ignore_ascii_case("keep-alive")
                    && !t.eq_ignore_ascii_case("close")
                    && !t.eq_ignore_ascii_case("upgrade")
            })
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .filter(|n| n != header::HOST)
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(header::TE);
    headers.remove(header::TRAILER);
    headers.remove(header::TRANSFER_ENCODING);
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}

/// As CHP (node-http-proxy `xfwd`): append to X-Forwarded-For/-Proto/-Port, keep an existing
/// X-Forwarded-Host or else use Host.
fn add_forwarded_headers(headers: &mut HeaderMap, peer: &Peer, port_value: &HeaderValue) {
    append_list(headers, &X_FORWARDED_FOR, &peer.ip_value);
    append_list(
        headers,
        &X_FORWARDED_PROTO,
        &HeaderValue::from_static("http"),
    );
    append_list(headers, &X_FORWARDED_PORT, port_value);
    if !headers.contains_key(&X_FORWARDED_HOST) {
        if let Some(host) = headers.get(header::HOST).cloned() {
            headers.insert(X_FORWARDED_HOST.clone(), host);
        }
    }
}

fn append_list(headers: &mut HeaderMap, name: &HeaderName, value: &HeaderValue) {
    let mut combined = Vec::new();
    for prev in headers.get_all(name) {
        combined.extend_from_slice(prev.as_bytes());
        combined.extend_from_slice(b", ");
    }
    if combined.is_empty() {
        headers.insert(name.clone(), value.clone());
        return;
    }
    combined.extend_from_slice(value.as_bytes());
    match HeaderValue::from_bytes(&combined) {
        Ok(v) => {
            headers.insert(name.clone(), v);
        }
        // Only reachable with odd bytes in the client's header; replace rather than fail.
        Err(_) => {
            headers.insert(name.clone(), value.clone());
        }
    }
}

fn simple(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::text(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// CHP answers 503 when the target cannot be reached.
fn unavailable(prefix: &str) -> Response<ProxyBody> {
    simple(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("Service Unavailable: the server at {prefix} is not reachable\n"),
    )
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Peer {
        Peer {
            addr: "[::ffff:10.0.0.7]:5555".parse().unwrap(),
            ip_value: HeaderValue::from_static("10.0.0.7"),
        }
    }

    #[test]
    fn hop_by_hop_headers_are_stripped() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, X-Secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert(header::TE, "trailers".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert("proxy-connection", "keep-alive".parse().unwrap());
        h.insert(header::HOST, "example.org".parse().unwrap());
        h.insert("x-keep", "yes".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        let names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(h.contains_key(header::HOST) && h.contains_key("x-keep"));
    }

    #[test]
    fn upgrade_keeps_upgrade_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, Upgrade".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h[header::UPGRADE], "websocket");
        assert!(!h.contains_key("keep-alive"));

        let mut plain = HeaderMap::new();
        plain.insert(header::CONNECTION, "keep-alive".parse().unwrap());
        assert!(!is_upgrade(&plain));
    }

    #[test]
    fn forwarded_headers_append_like_chp() {
        let port = HeaderValue::from(8000u16);
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "hub.example:8000".parse().unwrap());
        add_forwarded_headers(&mut h, &peer(), &port);
        assert_eq!(h["x-forwarded-for"], "10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-port"], "8000");
        assert_eq!(h["x-forwarded-host"], "hub.example:8000");

        let mut h = HeaderMap::new();
        h.insert(header::HOST, "inner:8000".parse().unwrap());
        h.append("x-forwarded-for", "1.1.1.1".parse().unwrap());
        h.append("x-forwarded-for", "2.2.2.2".parse().unwrap());
        h.insert("x-forwarded-host", "outer.example".parse().unwrap());
        add_forwarded_headers(&mut h, &peer(), &port);
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.0.0.7");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-host"], "outer.example");
    }

    #[test]
    fn upstream_uri_keeps_full_path_and_query() {
        let auth: Authority = "127.0.0.1:5000".parse().unwrap();
        let orig: Uri = "/user/alice/api/status?x=1".parse().unwrap();
        assert_eq!(
            upstream_uri(&auth, "", &orig).unwrap(),
            "http://127.0.0.1:5000/user/alice/api/status?x=1"
        );
        assert_eq!(
            upstream_uri(&auth, "/base", &orig).unwrap(),
            "http://127.0.0.1:5000/base/user/alice/api/status?x=1"
        );
    }
}
