//! The accept loop, request dispatch, HTTP forwarding, error pages and upgrade tunnelling.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode, Version};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::body::ProxyBody;
use crate::listen::{Listener, Stream, HANDSHAKE_TIMEOUT};
use crate::metrics::Metrics;
use crate::path::routing_key;
use crate::pool::Pool;
use crate::routes::{Entry, Target, Upstream};
use crate::tls::{Tls, UpstreamTls};
use crate::{ProxyError, ProxyOptions, RouteTable};

/// How long in-flight requests may keep running after `shutdown` fires.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often an HTTP/2 client is pinged, and how long its answer may take.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Fetching an error page from `--error-target` must finish within this.
const ERROR_PAGE_TIMEOUT: Duration = Duration::from_secs(5);

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

type ErrorPageClient = Client<HttpConnector, Empty<Bytes>>;

/// Everything about how [`serve_with`] behaves beyond the route table. `Default` gives the
/// values `hubfleet proxy` uses when no flag says otherwise.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// CHP's `--host-routing`: route on `/<host><path>` so `/alice.hub.example` is a route.
    pub host_routing: bool,
    /// CHP's `--error-target`: errors (404 no route, 503 upstream down, 504 upstream silent)
    /// are answered with the body of `GET {error_target}/{code}?url={original url}`.
    pub error_target: Option<String>,
    /// CHP's `--error-path`: errors are answered with `{error_path}/{code}.html`, else
    /// `{error_path}/error.html` (used when there is no `error_target`).
    pub error_path: Option<PathBuf>,
    /// CHP's `--change-origin`: the upstream gets the target's host:port as `Host`.
    pub change_origin: bool,
    /// CHP's `--auto-rewrite`: in redirects (201, 301, 302, 307, 308) whose `Location` points at
    /// the target's host:port, that host:port becomes the one the client asked for (`Host`).
    pub auto_rewrite: bool,
    /// CHP's `--protocol-rewrite`: the scheme of such `Location`s becomes this ("http"/"https").
    pub protocol_rewrite: Option<String>,
    /// CHP's default `includePrefix`: the route's prefix stays in the upstream path.
    /// `--no-include-prefix` turns it off.
    pub include_prefix: bool,
    /// CHP's default `prependPath`: a target's own path goes in front of the request path.
    /// `--no-prepend-path` turns it off.
    pub prepend_path: bool,
    /// How `https://` targets are verified, and the client certificate presented to them.
    pub upstream_tls: UpstreamTls,
    /// Add `X-Forwarded-For/-Proto/-Host/-Port` (CHP's default; `--no-x-forward` turns it off).
    pub x_forward: bool,
    /// Extra request headers for every upstream (CHP's `--custom-header`).
    pub custom_headers: Vec<(HeaderName, HeaderValue)>,
    /// Connecting to an upstream must succeed within this, else 503.
    pub connect_timeout: Duration,
    /// An upstream must send its response head within this after the request, else 504
    /// (CHP's `--proxy-timeout`).
    pub upstream_timeout: Option<Duration>,
    /// A client must send a request's complete head within this, and an idle keep-alive
    /// connection is closed after it (CHP's `--timeout` / `--keep-alive-timeout`).
    pub client_timeout: Duration,
    /// A WebSocket (or other upgraded) tunnel with no bytes either way for this long is closed.
    pub websocket_idle_timeout: Option<Duration>,
    /// Largest request head accepted (431 above it).
    pub max_header_size: usize,
    /// Idle pooled connections kept per upstream.
    pub pool_max_idle_per_host: usize,
    /// Idle pooled upstream connections are closed after this.
    pub pool_idle_timeout: Duration,
    /// Client connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Terminate TLS on the public port.
    pub tls: Option<Tls>,
    /// With `tls`, also serve plain HTTP to connections from this machine (the loopback, or the
    /// listener's own address), told apart by their first byte: users' servers reach the hub's
    /// API at `http://<listen>/hub/api`. Plain HTTP from elsewhere is sent to https.
    pub plain_http_from_this_machine: bool,
    /// Where the proxy counts what it does.
    pub metrics: Metrics,
    /// 0: serve on the caller's runtime. N > 0: N threads, each with its own single-threaded
    /// runtime and upstream pool (thread per core, as nginx's workers); accepted connections
    /// are handed to them round robin, so a request never crosses threads.
    pub threads: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            host_routing: false,
            error_target: None,
            error_path: None,
            change_origin: false,
            auto_rewrite: false,
            protocol_rewrite: None,
            include_prefix: true,
            prepend_path: true,
            upstream_tls: UpstreamTls::default(),
            x_forward: true,
            custom_headers: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            upstream_timeout: Some(Duration::from_secs(300)),
            client_timeout: Duration::from_secs(60),
            websocket_idle_timeout: Some(Duration::from_secs(3600)),
            max_header_size: 64 * 1024,
            pool_max_idle_per_host: 256,
            pool_idle_timeout: Duration::from_secs(30),
            max_connections: 100_000,
            tls: None,
            plain_http_from_this_machine: false,
            metrics: Metrics::new(),
            threads: 0,
        }
    }
}

struct Shared {
    table: RouteTable,
    hub: Option<axum::Router>,
    hub_error_page: String,
    pool: Arc<Pool>,
    error_client: ErrorPageClient,
    config: ServeConfig,
    /// The proxy's own port, pre-rendered for X-Forwarded-Port.
    port_value: HeaderValue,
    proto_value: HeaderValue,
}

/// Per-connection facts, computed once per connection rather than per request.
#[derive(Clone)]
struct Peer {
    /// None over a unix socket.
    addr: Option<SocketAddr>,
    ip_value: Option<HeaderValue>,
    /// X-Forwarded-Proto: how this connection reached us.
    proto: HeaderValue,
}

fn connector(config: &ServeConfig) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(config.connect_timeout));
    connector
}

fn error_page_client(config: &ServeConfig) -> ErrorPageClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(config.pool_idle_timeout)
        .pool_max_idle_per_host(4)
        .pool_timer(TokioTimer::new())
        .build(connector(config))
}

/// Serve the proxy on `listener` until `shutdown` resolves, with default settings.
///
/// After `shutdown` the listener is closed, idle keep-alive connections are closed, and in-flight
/// requests get a few seconds to finish. Already-upgraded (WebSocket) tunnels are left running.
pub async fn serve(
    listener: impl Into<Listener>,
    table: RouteTable,
    options: ProxyOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with(listener, table, options, ServeConfig::default(), shutdown).await
}

/// [`serve`], with every setting given.
pub async fn serve_with(
    listener: impl Into<Listener>,
    table: RouteTable,
    options: ProxyOptions,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let listener = listener.into();
    // X-Forwarded-Port over a unix socket: the port a browser would use for the scheme.
    let local_port = listener
        .port()
        .unwrap_or(if config.tls.is_some() { 443 } else { 80 });
    let limit = Arc::new(Semaphore::new(config.max_connections.max(1)));
    // Connections hold a receiver; `closed()` on the sender tells us when all have finished.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let (exit_tx, exit_rx) = tokio::sync::watch::channel(false);
    let local = (config.threads == 0).then(|| Worker::new(&table, &options, &config, local_port));
    // Thread per core: each worker has its own runtime and upstream pool; this task only
    // accepts and hands each connection, round robin, to a worker, so keep-alive connections
    // spread evenly and no request ever crosses threads.
    let mut threads = Vec::new();
    let mut senders = Vec::new();
    for i in 0..config.threads {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
        senders.push(tx);
        let (table, options, config) = (table.clone(), options.clone(), config.clone());
        let mut exit = exit_rx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("proxy-{i}"))
            .spawn(move || -> io::Result<()> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let worker = Worker::new(&table, &options, &config, local_port);
                    while let Some(job) = rx.recv().await {
                        let adopted = match job.stream {
                            StdStream::Tcp(s) => {
                                tokio::net::TcpStream::from_std(s).map(Stream::Tcp)
                            }
                            StdStream::Unix(s) => {
                                tokio::net::UnixStream::from_std(s).map(Stream::Unix)
                            }
                        };
                        match adopted {
                            Ok(stream) => worker.spawn(stream, job.addr, job.permit, job.stop),
                            Err(e) => tracing::warn!(error = %e, "cannot adopt connection"),
                        }
                    }
                    // Keep serving open connections until the acceptor says exit.
                    let _ = exit.wait_for(|e| *e).await;
                    worker.stop();
                });
                Ok(())
            })?;
        threads.push(thread);
    }

    let mut shutdown = pin!(shutdown);
    tracing::info!(
        on = %listener.describe(),
        tls = config.tls.is_some(),
        threads = config.threads,
        "proxy listening"
    );
    let mut next = 0usize;
    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
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
        if let Some(worker) = &local {
            worker.spawn(stream, addr, permit, stop_rx.clone());
            continue;
        }
        let stream = match stream {
            Stream::Tcp(s) => s.into_std().map(StdStream::Tcp),
            Stream::Unix(s) => s.into_std().map(StdStream::Unix),
        };
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand over connection");
                continue;
            }
        };
        next = (next + 1) % senders.len();
        let job = Job {
            stream,
            addr,
            permit,
            stop: stop_rx.clone(),
        };
        if senders[next].send(job).is_err() {
            tracing::error!(worker = next, "proxy worker is gone");
        }
    }
    drop(listener);
    drop(senders);
    drop(stop_rx);
    stop_tx.send_replace(());
    if tokio::time::timeout(SHUTDOWN_GRACE, stop_tx.closed())
        .await
        .is_err()
    {
        tracing::debug!("proxy shutdown grace period elapsed with connections still open");
    }
    if let Some(worker) = &local {
        worker.stop();
    }
    let _ = exit_tx.send(true);
    if !threads.is_empty() {
        let joined = tokio::task::spawn_blocking(move || {
            threads
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|_| Err(io::Error::other("proxy worker panicked")))
                })
                .collect::<io::Result<Vec<()>>>()
        })
        .await
        .map_err(io::Error::other)?;
        joined?;
    }
    tracing::info!("proxy stopped");
    Ok(())
}

/// An accepted connection on its way to a worker thread.
struct Job {
    stream: StdStream,
    addr: Option<SocketAddr>,
    permit: OwnedSemaphorePermit,
    stop: tokio::sync::watch::Receiver<()>,
}

enum StdStream {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

/// Serves connections on the runtime it was made on, with its own upstream pool.
struct Worker {
    shared: Arc<Shared>,
    builder: hyper::server::conn::http1::Builder,
    reaper: tokio::task::JoinHandle<()>,
}

impl Worker {
    fn new(
        table: &RouteTable,
        options: &ProxyOptions,
        config: &ServeConfig,
        local_port: u16,
    ) -> Worker {
        let mut builder = hyper::server::conn::http1::Builder::new();
        // One write(2) of head and body copied together beats writev(2) for the small
        // responses that dominate (measured with bench/proxy's CPU time per request).
        builder
            .keep_alive(true)
            .writev(false)
            .timer(TokioTimer::new())
            .header_read_timeout(config.client_timeout)
            .max_header_size(config.max_header_size)
            .max_buf_size(config.max_header_size.max(8192) + 8192);
        let shared = Arc::new(Shared {
            table: table.clone(),
            hub: options.hub.clone(),
            hub_error_page: match options.hub_base_url.trim_matches('/') {
                "" => "/hub/error/".to_owned(),
                base => format!("/{base}/hub/error/"),
            },
            pool: Arc::new(Pool::new(
                config.pool_max_idle_per_host,
                config.pool_idle_timeout,
                config.connect_timeout,
                config.upstream_tls.connector(),
            )),
            error_client: error_page_client(config),
            proto_value: HeaderValue::from_static(if config.tls.is_some() {
                "https"
            } else {
                "http"
            }),
            config: config.clone(),
            port_value: HeaderValue::from(local_port),
        });
        let reaper = {
            let pool = shared.pool.clone();
            let every = (config.pool_idle_timeout / 2).max(Duration::from_millis(100));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    pool.reap();
                }
            })
        };
        Worker {
            shared,
            builder,
            reaper,
        }
    }

    fn stop(&self) {
        self.reaper.abort();
    }

    fn spawn(
        &self,
        stream: Stream,
        addr: Option<SocketAddr>,
        permit: OwnedSemaphorePermit,
        stop: tokio::sync::watch::Receiver<()>,
    ) {
        let mut peer = Peer {
            addr,
            ip_value: addr.map(|a| {
                HeaderValue::from_str(&a.ip().to_canonical().to_string())
                    .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
            }),
            proto: self.shared.proto_value.clone(),
        };
        let st = self.shared.clone();
        let builder = self.builder.clone();
        let guard = st.config.metrics.connection_opened();
        tokio::spawn(async move {
            let _permit = permit;
            let _guard = guard;
            match stream {
                Stream::Tcp(s) => {
                    // Small proxied writes (websocket frames, SSE events) must not wait for Nagle.
                    let _ = s.set_nodelay(true);
                    if st.config.tls.is_none() || !st.config.plain_http_from_this_machine {
                        return accept_connection(st, builder, s, peer, stop).await;
                    }
                    match first_byte(&s).await {
                        // A TLS handshake starts with a handshake record (RFC 8446 §5.1).
                        Some(0x16) => accept_connection(st, builder, s, peer, stop).await,
                        Some(_) if from_this_machine(&s) => {
                            peer.proto = HeaderValue::from_static("http");
                            serve_connection(st, builder, s, peer, stop).await
                        }
                        Some(_) => redirect_to_https(builder, s).await,
                        None => {}
                    }
                }
                Stream::Unix(s) => accept_connection(st, builder, s, peer, stop).await,
            }
        });
    }
}

/// The connection's first byte, without taking it; None if it closed or sent nothing in time.
async fn first_byte(stream: &tokio::net::TcpStream) -> Option<u8> {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut byte)).await {
        Ok(Ok(1)) => Some(byte[0]),
        _ => None,
    }
}

/// From the loopback, or from this machine's own address to itself (what a server reaching
/// `http://<listen address>` sends).
fn from_this_machine(stream: &tokio::net::TcpStream) -> bool {
    match (stream.peer_addr(), stream.local_addr()) {
        (Ok(peer), Ok(local)) => {
            let peer = peer.ip().to_canonical();
            peer.is_loopback() || peer == local.ip().to_canonical()
        }
        _ => false,
    }
}

/// Plain HTTP on the HTTPS port from elsewhere: a 301 to the same host (and port) and path over
/// https, and the connection closed.
async fn redirect_to_https<I>(builder: hyper::server::conn::http1::Builder, io: I)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.is_empty() && !h.contains(['/', '@', '\\', ' ']));
        let mut resp = match host {
            Some(host) => {
                let path = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
                let mut resp = simple(
                    StatusCode::MOVED_PERMANENTLY,
                    "This port serves HTTPS.\n".to_owned(),
                );
                if let Ok(location) = HeaderValue::from_str(&format!("https://{host}{path}")) {
                    resp.headers_mut().insert(header::LOCATION, location);
                }
                resp
            }
            None => simple(
                StatusCode::BAD_REQUEST,
                "This port serves HTTPS.\n".to_owned(),
            ),
        };
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        Ok::<_, Infallible>(resp)
    });
    if let Err(e) = builder.serve_connection(TokioIo::new(io), svc).await {
        tracing::debug!(error = %e, "plain HTTP connection on the HTTPS port ended with error");
    }
}

/// TLS handshake when configured, then HTTP.
async fn accept_connection<I>(
    st: Arc<Shared>,
    builder: hyper::server::conn::http1::Builder,
    io: I,
    peer: Peer,
    stop: tokio::sync::watch::Receiver<()>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match st.config.tls.as_ref().map(Tls::acceptor) {
        None => serve_connection(st, builder, io, peer, stop).await,
        Some(acceptor) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                Ok(Ok(tls)) if tls.get_ref().1.alpn_protocol() == Some(b"h2") => {
                    serve_h2(st, tls, peer, stop).await
                }
                Ok(Ok(tls)) => serve_connection(st, builder, tls, peer, stop).await,
                Ok(Err(e)) => {
                    tracing::debug!(peer = ?peer.addr, error = %e, "TLS handshake failed")
                }
                Err(_) => tracing::debug!(peer = ?peer.addr, "TLS handshake timed out"),
            }
        }
    }
}

async fn serve_connection<I>(
    st: Arc<Shared>,
    builder: hyper::server::conn::http1::Builder,
    io: I,
    peer: Peer,
    mut stop: tokio::sync::watch::Receiver<()>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let addr = peer.addr;
    let svc = hyper::service::service_fn(move |req| {
        let st = st.clone();
        let peer = peer.clone();
        async move { Ok::<_, Infallible>(handle(&st, &peer, req).await) }
    });
    let conn = builder
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    let mut conn = pin!(conn);
    let res = tokio::select! {
        res = conn.as_mut() => res,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = res {
        tracing::debug!(peer = ?addr, error = %e, "client connection ended with error");
    }
}

/// HTTP/2 from a client that chose it in ALPN (upstreams still get HTTP/1.1). WebSockets stay on
/// HTTP/1.1: without SETTINGS_ENABLE_CONNECT_PROTOCOL browsers open a separate connection for
/// them. A connection that sends no request within `client_timeout` of opening is dropped; one
/// idle that long afterwards is closed with GOAWAY, letting its open streams finish.
async fn serve_h2<I>(st: Arc<Shared>, io: I, peer: Peer, mut stop: tokio::sync::watch::Receiver<()>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let addr = peer.addr;
    let idle = st.config.client_timeout;
    let requests = Arc::new(tokio::sync::Notify::new());
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(st.config.max_header_size).unwrap_or(u32::MAX))
        // Pings find peers that went away without closing (a laptop lid, a dropped network).
        .keep_alive_interval(Some(H2_PING_INTERVAL))
        .keep_alive_timeout(H2_PING_TIMEOUT);
    let svc = {
        let requests = requests.clone();
        hyper::service::service_fn(move |mut req: Request<Incoming>| {
            requests.notify_one();
            // HTTP/2 names the host in `:authority`; routing and upstreams read `Host`.
            if !req.headers().contains_key(header::HOST) {
                let authority = req.uri().authority().map(|a| a.as_str());
                if let Some(host) = authority.and_then(|a| HeaderValue::from_str(a).ok()) {
                    req.headers_mut().insert(header::HOST, host);
                }
            }
            join_cookie_fields(req.headers_mut());
            let st = st.clone();
            let peer = peer.clone();
            async move { Ok::<_, Infallible>(handle(&st, &peer, req).await) }
        })
    };
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    let mut conn = pin!(conn);
    let mut served = false;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(peer = ?addr, error = %e, "HTTP/2 client connection ended with error");
                }
                return;
            }
            _ = stop.changed() => break,
            () = requests.notified() => served = true,
            () = tokio::time::sleep(idle) => {
                if !served {
                    tracing::debug!(peer = ?addr, "HTTP/2 connection sent no request; dropped");
                    return;
                }
                break;
            }
        }
    }
    conn.as_mut().graceful_shutdown();
    if let Err(e) = conn.await {
        tracing::debug!(peer = ?addr, error = %e, "HTTP/2 client connection ended with error");
    }
}

/// HTTP/2 clients may send each cookie as a `cookie` field of its own (browsers do); before the
/// request goes on as HTTP/1.1 they must become one `Cookie` header joined with "; " (RFC 9113
/// §8.2.3): an HTTP/1.1 server reading several (Tornado joins them with ",") loses them.
fn join_cookie_fields(headers: &mut HeaderMap) {
    let mut fields = headers.get_all(header::COOKIE).iter();
    if fields.nth(1).is_none() {
        return;
    }
    let joined = headers
        .get_all(header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect::<Vec<_>>()
        .join(&b"; "[..]);
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

async fn handle(st: &Shared, peer: &Peer, req: Request<Incoming>) -> Response<ProxyBody> {
    let started = Instant::now();
    let upgrade = is_upgrade(req.headers());
    if upgrade {
        st.config.metrics.websocket_request();
    }
    let resp = dispatch(st, peer, req, upgrade).await;
    st.config
        .metrics
        .response(resp.status().as_u16(), started.elapsed().as_secs_f64());
    resp
}

async fn dispatch(
    st: &Shared,
    peer: &Peer,
    mut req: Request<Incoming>,
    upgrade: bool,
) -> Response<ProxyBody> {
    if req.uri().path() == "/_chp_healthz" {
        let mut resp = Response::new(ProxyBody::text(r#"{"status":"OK"}"#));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return resp;
    }
    let key = match routing_key(
        req.uri().path(),
        st.config.host_routing.then_some(req.headers()),
    ) {
        Ok(k) => k,
        Err(bad) => {
            tracing::warn!(path = %req.uri().path(), reason = bad.reason(), "bad request path");
            // A client sending this is not a browser; do not keep its connection.
            let mut resp = simple(
                StatusCode::BAD_REQUEST,
                format!("Bad Request: {}\n", bad.reason()),
            );
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return resp;
        }
    };
    let Some(entry) = st.table.lookup_entry(&key) else {
        drop(key);
        return match &st.hub {
            Some(hub) => to_hub(hub, st, peer, req).await,
            None => error_page(st, StatusCode::NOT_FOUND, req.uri(), upgrade).await,
        };
    };
    drop(key);
    match &entry.parsed {
        Target::Http {
            upstream,
            path_prefix,
        } => {
            let path_prefix = if st.config.prepend_path {
                path_prefix
            } else {
                ""
            };
            // Without the prefix: drop the route's path segments (not its host segment).
            let strip = if st.config.include_prefix {
                0
            } else {
                crate::routes::segment_count(&entry.prefix)
                    .saturating_sub(usize::from(st.config.host_routing))
            };
            let uri = match upstream_uri(path_prefix, req.uri(), strip) {
                Ok(uri) => uri,
                Err(e) => {
                    tracing::warn!(prefix = %entry.prefix, error = %e, "cannot build upstream URI");
                    return simple(StatusCode::BAD_REQUEST, "Bad Request\n".to_owned());
                }
            };
            let orig = std::mem::replace(req.uri_mut(), uri);
            if !req.headers().contains_key(header::HOST) {
                if let Ok(host) = HeaderValue::from_str(target_host(upstream)) {
                    req.headers_mut().insert(header::HOST, host);
                }
            }
            forward(st, peer, req, entry, orig, upgrade).await
        }
        Target::Hub => match &st.hub {
            Some(hub) => {
                entry.touch_coarse();
                to_hub(hub, st, peer, req).await
            }
            None => {
                tracing::warn!(prefix = %entry.prefix, "route targets the hub but no hub is configured");
                error_page(st, StatusCode::SERVICE_UNAVAILABLE, req.uri(), upgrade).await
            }
        },
        Target::Invalid(e) => {
            tracing::warn!(prefix = %entry.prefix, error = %e, "request for route with unusable target");
            error_page(st, StatusCode::SERVICE_UNAVAILABLE, req.uri(), upgrade).await
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
    add_forwarded_headers(req.headers_mut(), peer, &st.port_value, &peer.proto);
    if let Some(addr) = peer.addr {
        req.extensions_mut().insert(ConnectInfo(addr));
    }
    let req = req.map(axum::body::Body::new);
    match hub.clone().oneshot(req).await {
        Ok(resp) => resp.map(ProxyBody::Hub),
        Err(never) => match never {},
    }
}

/// The origin-form request target upstream: the original path (less its first `strip`
/// segments) and query, behind the target's own path prefix (if any).
fn upstream_uri(path_prefix: &str, orig: &Uri, strip: usize) -> Result<Uri, ProxyError> {
    if strip > 0 {
        let mut rest = orig.path();
        for _ in 0..strip {
            let trimmed = rest.trim_start_matches('/');
            rest = &trimmed[trimmed.find('/').unwrap_or(trimmed.len())..];
        }
        let path = if rest.is_empty() { "/" } else { rest };
        let query = orig.query().map(|q| format!("?{q}")).unwrap_or_default();
        let pq = PathAndQuery::try_from(format!("{path_prefix}{path}{query}"))
            .map_err(http::Error::from)?;
        return Ok(Uri::from(pq));
    }
    let orig_pq = orig.path_and_query();
    let path_and_query = if path_prefix.is_empty() {
        orig_pq
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"))
    } else {
        let pq = orig_pq.map_or("/", PathAndQuery::as_str);
        PathAndQuery::try_from(format!("{path_prefix}{pq}")).map_err(http::Error::from)?
    };
    Ok(Uri::from(path_and_query))
}

async fn forward(
    st: &Shared,
    peer: &Peer,
    mut req: Request<Incoming>,
    entry: Arc<Entry>,
    orig: Uri,
    upgrade: bool,
) -> Response<ProxyBody> {
    // Borrowed from the entry rather than cloned: its bytes are shared by every thread.
    let Some(upstream) = entry.upstream() else {
        // dispatch() forwards only routes with an upstream.
        return simple(StatusCode::BAD_GATEWAY, "Bad Gateway\n".to_owned());
    };
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    // `--auto-rewrite` needs the host the client asked for, before `--change-origin`.
    let client_host = if st.config.auto_rewrite {
        req.headers().get(header::HOST).cloned()
    } else {
        None
    };
    let headers = req.headers_mut();
    strip_hop_by_hop(headers, upgrade);
    if st.config.x_forward {
        add_forwarded_headers(headers, peer, &st.port_value, &peer.proto);
    }
    for (name, value) in &st.config.custom_headers {
        headers.insert(name.clone(), value.clone());
    }
    if st.config.change_origin {
        if let Ok(host) = HeaderValue::from_str(target_host(upstream)) {
            headers.insert(header::HOST, host);
        }
    }
    // Upstream always speaks HTTP/1.1 so pooled connections stay keep-alive.
    *req.version_mut() = Version::HTTP_11;

    let sent = st.pool.send(upstream, req);
    let result = match st.config.upstream_timeout {
        Some(limit) => match tokio::time::timeout(limit, sent).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(prefix = %entry.prefix, target = %entry.target, "upstream did not answer in time");
                st.config.metrics.upstream_error("timeout");
                return error_page(st, StatusCode::GATEWAY_TIMEOUT, &orig, upgrade).await;
            }
        },
        None => sent.await,
    };
    let (mut resp, lease) = match result {
        Ok(pair) => pair,
        Err(e) => {
            tracing::warn!(prefix = %entry.prefix, target = %entry.target, error = %error_chain(&e),
                "upstream not reachable");
            st.config.metrics.upstream_error("connect");
            return error_page(st, StatusCode::SERVICE_UNAVAILABLE, &orig, upgrade).await;
        }
    };
    if resp.status().as_u16() < 300 {
        entry.touch_coarse();
    }

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            tracing::warn!(prefix = %entry.prefix, "upstream switched protocols without being asked");
            return simple(StatusCode::BAD_GATEWAY, "Bad Gateway\n".to_owned());
        };
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(tunnel(
            client_upgrade,
            upstream_upgrade,
            entry,
            st.config.websocket_idle_timeout,
            st.config.metrics.clone(),
        ));
        // The 101 keeps Upgrade/Connection and e.g. Sec-WebSocket-Accept exactly as sent.
        let (parts, _) = resp.into_parts();
        return Response::from_parts(parts, ProxyBody::empty());
    }

    strip_hop_by_hop(resp.headers_mut(), false);
    if st.config.auto_rewrite || st.config.protocol_rewrite.is_some() {
        rewrite_location(&st.config, &mut resp, upstream, client_host.as_ref());
    }
    resp.map(|body| ProxyBody::Upstream {
        body,
        entry,
        lease: Some(lease),
    })
}

/// The `Host` a target is asked with when the client sent none, or with `--change-origin`.
fn target_host(upstream: &Upstream) -> &str {
    match upstream {
        Upstream::Http(a) | Upstream::Https(a) => a.as_str(),
        Upstream::Unix(_) => "localhost",
    }
}

/// As node-http-proxy's `setRedirectHostRewrite` (CHP's `--auto-rewrite`, `--protocol-rewrite`):
/// a redirect's absolute `Location` on the target's own host:port gets the client's host
/// and/or the given scheme.
fn rewrite_location<B>(
    config: &ServeConfig,
    resp: &mut Response<B>,
    upstream: &Upstream,
    client_host: Option<&HeaderValue>,
) {
    if !matches!(resp.status().as_u16(), 201 | 301 | 302 | 307 | 308) {
        return;
    }
    let (Upstream::Http(target) | Upstream::Https(target)) = upstream else {
        return;
    };
    let Some(location) = resp
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<Uri>().ok())
    else {
        return;
    };
    let (Some(scheme), Some(authority)) = (location.scheme_str(), location.authority()) else {
        return;
    };
    if !authority.as_str().eq_ignore_ascii_case(target.as_str()) {
        return;
    }
    let host = match (
        config.auto_rewrite,
        client_host.and_then(|h| h.to_str().ok()),
    ) {
        (true, Some(h)) => h,
        _ => authority.as_str(),
    };
    let scheme = config.protocol_rewrite.as_deref().unwrap_or(scheme);
    let pq = location.path_and_query().map_or("/", PathAndQuery::as_str);
    if let Ok(v) = HeaderValue::from_str(&format!("{scheme}://{host}{pq}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
}

/// An error answered as CHP does: with `--error-target`, the body of
/// `GET {error_target}/{code}?url={original url}` (its content type and encoding kept) under the
/// original status; with `--error-path`, the file `{code}.html` or `error.html` there; otherwise
/// (or when that fails) the status's reason phrase. Upgrade requests get the bare status.
async fn error_page(
    st: &Shared,
    code: StatusCode,
    orig: &Uri,
    upgrade: bool,
) -> Response<ProxyBody> {
    let reason = code.canonical_reason().unwrap_or("Error");
    if upgrade {
        let mut resp = Response::new(ProxyBody::empty());
        *resp.status_mut() = code;
        return resp;
    }
    if let Some(base) = &st.config.error_target {
        let original = orig.path_and_query().map_or("/", PathAndQuery::as_str);
        let sep = if base.ends_with('/') { "" } else { "/" };
        let url = format!(
            "{base}{sep}{}?url={}",
            code.as_u16(),
            utf8_percent_encode(original, NON_ALPHANUMERIC)
        );
        match url.parse::<Uri>() {
            Ok(uri) => {
                let fetch = st.error_client.get(uri);
                match tokio::time::timeout(ERROR_PAGE_TIMEOUT, fetch).await {
                    Ok(Ok(page)) => {
                        let (parts, body) = page.into_parts();
                        let mut resp = Response::new(ProxyBody::Plain(body));
                        *resp.status_mut() = code;
                        for name in [header::CONTENT_TYPE, header::CONTENT_ENCODING] {
                            if let Some(v) = parts.headers.get(&name) {
                                resp.headers_mut().insert(name, v.clone());
                            }
                        }
                        return resp;
                    }
                    Ok(Err(e)) => {
                        tracing::error!(%url, error = %error_chain(&e), "failed to get custom error page")
                    }
                    Err(_) => tracing::error!(%url, "custom error page timed out"),
                }
            }
            Err(e) => tracing::error!(%url, error = %e, "bad error target URL"),
        }
    } else if let Some(dir) = &st.config.error_path {
        if let Some(page) = error_file(dir, code).await {
            return html_page(code, page);
        }
    } else if let Some(hub) = &st.hub {
        return hub_error_page(hub, &st.hub_error_page, code, orig).await;
    } else {
        return html_page(code, builtin_error_page(code));
    }
    simple(code, reason.to_owned())
}

fn html_page(code: StatusCode, page: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::text(page));
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    resp
}

/// With neither `--error-target` nor `--error-path`, CHP answers from the HTML pages it ships;
/// these are ours.
fn builtin_error_page(code: StatusCode) -> String {
    let reason = code.canonical_reason().unwrap_or("Error");
    let explanation = match code {
        StatusCode::NOT_FOUND => "No route matches this URL.",
        StatusCode::SERVICE_UNAVAILABLE => "The service behind this URL is not answering.",
        StatusCode::GATEWAY_TIMEOUT => "The service behind this URL did not answer in time.",
        _ => "The proxy could not complete this request.",
    };
    let code = code.as_u16();
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{code}: {reason}</title></head>\n\
         <body>\n<h1>{code}: {reason}</h1>\n<p>{explanation}</p>\n<hr>\n<p>hubfleet proxy</p>\n</body>\n</html>\n"
    )
}

/// The in-process hub's own error page (`/hub/error/{code}`, as JupyterHub sets CHP's
/// `--error-target`), under the original status.
async fn hub_error_page(
    hub: &axum::Router,
    error_page: &str,
    code: StatusCode,
    orig: &Uri,
) -> Response<ProxyBody> {
    let original = orig.path_and_query().map_or("/", PathAndQuery::as_str);
    let uri = format!(
        "{error_page}{}?url={}",
        code.as_u16(),
        utf8_percent_encode(original, NON_ALPHANUMERIC)
    );
    let mut req = Request::new(axum::body::Body::empty());
    match uri.parse() {
        Ok(uri) => *req.uri_mut() = uri,
        Err(_) => return html_page(code, builtin_error_page(code)),
    }
    match hub.clone().oneshot(req).await {
        Ok(page) => {
            let (mut parts, body) = page.into_parts();
            parts.status = code;
            Response::from_parts(parts, ProxyBody::Hub(body))
        }
        Err(never) => match never {},
    }
}

/// `{dir}/{code}.html`, else `{dir}/error.html`.
async fn error_file(dir: &std::path::Path, code: StatusCode) -> Option<Vec<u8>> {
    for name in [format!("{}.html", code.as_u16()), "error.html".to_owned()] {
        let path = dir.join(&name);
        match tokio::fs::read(&path).await {
            Ok(page) => return Some(page),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::debug!(path = %path.display(), "no error page file")
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read error page file")
            }
        }
    }
    None
}

/// Splice an upgraded client connection to the upgraded upstream connection, until either side
/// closes or nothing moves for `idle`.
async fn tunnel(
    client: OnUpgrade,
    upstream: OnUpgrade,
    entry: Arc<Entry>,
    idle: Option<Duration>,
    metrics: Metrics,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(prefix = %entry.prefix, error = %e, "upgrade failed");
            return;
        }
    };
    let _open = metrics.websocket_opened();
    entry.touch_coarse();
    let prefix = entry.prefix.clone();
    let start = Instant::now();
    let last_io = Arc::new(AtomicU64::new(0));
    let mut client = Activity {
        io: TokioIo::new(client),
        entry,
        start,
        last_io: last_io.clone(),
    };
    let mut upstream = TokioIo::new(upstream);
    let copy = crate::copy::copy_bidirectional(&mut client, &mut upstream);
    let watchdog = async {
        let Some(idle) = idle else {
            return std::future::pending().await;
        };
        loop {
            let last = start + Duration::from_millis(last_io.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    tokio::select! {
        res = copy => match res {
            Ok((up, down)) => {
                tracing::debug!(%prefix, bytes_up = up, bytes_down = down, "upgraded connection closed")
            }
            Err(e) => tracing::debug!(%prefix, error = %e, "upgraded connection ended with error"),
        },
        () = watchdog => tracing::debug!(%prefix, "upgraded connection closed after idle timeout"),
    }
}

/// Client side of a tunnel; every chunk in either direction counts as route activity and
/// resets the idle clock.
struct Activity {
    io: TokioIo<Upgraded>,
    entry: Arc<Entry>,
    start: Instant,
    /// Milliseconds after `start` of the last byte moved.
    last_io: Arc<AtomicU64>,
}

impl Activity {
    fn moved(&self) {
        self.entry.touch_coarse();
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_io.store(ms, Ordering::Relaxed);
    }
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
            this.moved();
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
            this.moved();
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
            this.moved();
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
    // One pass over the names finds which are there: most messages carry none or only
    // `Connection`, so this saves most of eight hash lookups per message.
    const CONNECTION: u8 = 1;
    const UPGRADE: u8 = 2;
    let others: [(u8, &HeaderName); 5] = [
        (4, &KEEP_ALIVE),
        (8, &PROXY_CONNECTION),
        (16, &header::TE),
        (32, &header::TRAILER),
        (64, &header::TRANSFER_ENCODING),
    ];
    let mut found = 0u8;
    for name in headers.keys() {
        if name == header::CONNECTION {
            found |= CONNECTION;
        } else if name == header::UPGRADE {
            found |= UPGRADE;
        } else if let Some((bit, _)) = others.iter().find(|(_, n)| *n == name) {
            found |= bit;
        }
    }
    if found == 0 && !keep_upgrade {
        return;
    }
    if let Some(conn) = headers.get(header::CONNECTION) {
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
    for (bit, name) in others {
        if found & bit != 0 {
            headers.remove(name);
        }
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        if found & CONNECTION != 0 {
            headers.remove(header::CONNECTION);
        }
        if found & UPGRADE != 0 {
            headers.remove(header::UPGRADE);
        }
    }
}

/// As CHP (node-http-proxy `xfwd`): append to X-Forwarded-For/-Proto/-Port, keep an existing
/// X-Forwarded-Host or else use Host.
fn add_forwarded_headers(
    headers: &mut HeaderMap,
    peer: &Peer,
    port_value: &HeaderValue,
    proto_value: &HeaderValue,
) {
    if let Some(ip) = &peer.ip_value {
        append_list(headers, &X_FORWARDED_FOR, ip);
    }
    append_list(headers, &X_FORWARDED_PROTO, proto_value);
    append_list(headers, &X_FORWARDED_PORT, port_value);
    if let Some(host) = headers.get(header::HOST).cloned() {
        if let header::Entry::Vacant(slot) = headers.entry(&X_FORWARDED_HOST) {
            slot.insert(host);
        }
    }
}

/// Append `value` to the comma-separated list in `name` (one hash lookup when it is absent).
fn append_list(headers: &mut HeaderMap, name: &HeaderName, value: &HeaderValue) {
    let mut slot = match headers.entry(name) {
        header::Entry::Vacant(slot) => {
            slot.insert(value.clone());
            return;
        }
        header::Entry::Occupied(slot) => slot,
    };
    let mut combined = Vec::new();
    for prev in slot.iter() {
        combined.extend_from_slice(prev.as_bytes());
        combined.extend_from_slice(b", ");
    }
    combined.extend_from_slice(value.as_bytes());
    // Only fails with odd bytes in the client's header; replace rather than fail.
    let joined = HeaderValue::from_bytes(&combined).unwrap_or_else(|_| value.clone());
    slot.insert(joined);
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
            addr: Some("[::ffff:10.0.0.7]:5555".parse().unwrap()),
            ip_value: Some(HeaderValue::from_static("10.0.0.7")),
            proto: HeaderValue::from_static("http"),
        }
    }

    #[tokio::test]
    async fn plain_http_from_elsewhere_on_the_https_port_is_sent_to_https() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(4096);
        tokio::spawn(redirect_to_https(
            hyper::server::conn::http1::Builder::new(),
            server,
        ));
        client
            .write_all(b"GET /hub/login?next=%2F HTTP/1.1\r\nHost: hub.example.org:8443\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        client.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 301"), "{response}");
        assert!(
            response.contains("location: https://hub.example.org:8443/hub/login?next=%2F\r\n"),
            "{response}"
        );
        assert!(response.contains("connection: close"), "{response}");
    }

    #[test]
    fn http2_cookie_fields_become_one_header() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1".parse().unwrap());
        h.append(header::COOKIE, "b=2; c=3".parse().unwrap());
        join_cookie_fields(&mut h);
        let all: Vec<_> = h.get_all(header::COOKIE).iter().collect();
        assert_eq!(all, ["a=1; b=2; c=3"]);
        let mut one = HeaderMap::new();
        one.insert(header::COOKIE, "a=1".parse().unwrap());
        join_cookie_fields(&mut one);
        assert_eq!(one[header::COOKIE], "a=1");
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
        add_forwarded_headers(&mut h, &peer(), &port, &HeaderValue::from_static("http"));
        assert_eq!(h["x-forwarded-for"], "10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-port"], "8000");
        assert_eq!(h["x-forwarded-host"], "hub.example:8000");

        let mut h = HeaderMap::new();
        h.insert(header::HOST, "inner:8000".parse().unwrap());
        h.append("x-forwarded-for", "1.1.1.1".parse().unwrap());
        h.append("x-forwarded-for", "2.2.2.2".parse().unwrap());
        h.insert("x-forwarded-host", "outer.example".parse().unwrap());
        add_forwarded_headers(&mut h, &peer(), &port, &HeaderValue::from_static("http"));
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.0.0.7");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-host"], "outer.example");
    }

    #[test]
    fn upstream_uri_keeps_full_path_and_query() {
        let orig: Uri = "/user/alice/api/status?x=1".parse().unwrap();
        assert_eq!(
            upstream_uri("", &orig, 0).unwrap(),
            "/user/alice/api/status?x=1"
        );
        assert_eq!(
            upstream_uri("/base", &orig, 0).unwrap(),
            "/base/user/alice/api/status?x=1"
        );
        assert_eq!(upstream_uri("", &orig, 2).unwrap(), "/api/status?x=1");
        assert_eq!(upstream_uri("/b", &orig, 4).unwrap(), "/b/?x=1");
    }
}
