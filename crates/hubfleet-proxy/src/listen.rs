//! Listening on TCP or on a unix socket (CHP's `--socket`, `--api-socket`, `--metrics-socket`),
//! and serving an axum router on either, with optional TLS (the API's `--api-ssl-*`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::tls::Tls;

/// A TLS handshake must finish within this.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a server accepts connections.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixSocket),
}

/// A bound unix socket; its file is removed when it is dropped.
#[derive(Debug)]
pub struct UnixSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl From<TcpListener> for Listener {
    fn from(l: TcpListener) -> Self {
        Listener::Tcp(l)
    }
}

/// An accepted connection.
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Listener {
    /// Listen on the unix socket `path`. A socket file left behind by a process that is gone is
    /// replaced; one that still accepts connections is an error (address in use).
    pub fn bind_unix(path: &Path) -> io::Result<Listener> {
        use std::os::unix::fs::FileTypeExt;
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by another process", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        Ok(Listener::Unix(UnixSocket {
            listener,
            path: path.to_owned(),
        }))
    }

    /// The TCP port, if this is a TCP listener.
    pub fn port(&self) -> Option<u16> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok().map(|a| a.port()),
            Listener::Unix(_) => None,
        }
    }

    /// For logs: `ip:port` or the socket path.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map_or_else(|e| e.to_string(), |a| a.to_string()),
            Listener::Unix(u) => u.path.display().to_string(),
        }
    }

    /// The next connection and, over TCP, the peer's address.
    pub(crate) async fn accept(&self) -> io::Result<(Stream, Option<SocketAddr>)> {
        match self {
            Listener::Tcp(l) => {
                let (s, addr) = l.accept().await?;
                Ok((Stream::Tcp(s), Some(addr)))
            }
            Listener::Unix(u) => {
                let (s, _) = u.listener.accept().await?;
                Ok((Stream::Unix(s), None))
            }
        }
    }
}

/// Serve `router` on `listener` (over TLS when given) until `shutdown` resolves; open
/// connections then get a few seconds to finish. For the API, metrics and redirect servers.
pub(crate) async fn serve_router(
    listener: Listener,
    tls: Option<Tls>,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(60));
    loop {
        let (stream, addr) = tokio::select! {
            () = &mut shutdown => break,
            res = listener.accept() => match res {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        let http = http.clone();
        let tls = tls.as_ref().map(Tls::acceptor);
        if let Stream::Tcp(s) = &stream {
            // A response head and body must not wait for each other's ACK (Nagle).
            let _ = s.set_nodelay(true);
        }
        tokio::spawn(async move {
            match (stream, tls) {
                (Stream::Tcp(s), None) => serve_one(http, watcher, service, s).await,
                (Stream::Unix(s), None) => serve_one(http, watcher, service, s).await,
                (Stream::Tcp(s), Some(acceptor)) => {
                    if let Some(t) = handshake(&acceptor, s, addr).await {
                        serve_one(http, watcher, service, t).await;
                    }
                }
                (Stream::Unix(s), Some(acceptor)) => {
                    if let Some(t) = handshake(&acceptor, s, addr).await {
                        serve_one(http, watcher, service, t).await;
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("grace period elapsed with connections still open");
    }
    Ok(())
}

async fn handshake<I: AsyncRead + AsyncWrite + Unpin>(
    acceptor: &tokio_rustls::TlsAcceptor,
    io: I,
    peer: Option<SocketAddr>,
) -> Option<tokio_rustls::server::TlsStream<I>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::info!(?peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(?peer, "TLS handshake timed out");
            None
        }
    }
}

async fn serve_one<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    http: hyper::server::conn::http1::Builder,
    watcher: hyper_util::server::graceful::Watcher,
    service: TowerToHyperService<axum::Router>,
    io: I,
) {
    let conn = http.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with error");
    }
}

/// CHP's `--redirect-port`: answer every request with a 301 to the same host and URL over
/// https on `https_port` (no port in the URL when it is 443); 400 without a `Host`.
pub async fn serve_https_redirect(
    listener: impl Into<Listener>,
    https_port: u16,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_https_redirect_with(listener, https_port, axum::Router::new(), shutdown).await
}

/// [`serve_https_redirect`], answering the requests that `routes` has a route for itself (the
/// hub's ACME HTTP-01 challenges, which must be served over plain HTTP).
pub async fn serve_https_redirect_with(
    listener: impl Into<Listener>,
    https_port: u16,
    routes: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    use axum::http::{header, StatusCode, Uri};
    use axum::response::IntoResponse;
    let app = routes.fallback(move |uri: Uri, headers: axum::http::HeaderMap| async move {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| h.rsplit_once(':').filter(|(_, p)| !p.contains(']')).map_or(h, |(name, _)| name))
            .filter(|h| !h.is_empty());
        let Some(host) = host else {
            return (
                StatusCode::BAD_REQUEST,
                format!("This server is HTTPS-only on port {https_port}, but an HTTP request was made and the host could not be determined from the request."),
            )
                .into_response();
        };
        let port = if https_port == 443 {
            String::new()
        } else {
            format!(":{https_port}")
        };
        let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
        (
            StatusCode::MOVED_PERMANENTLY,
            [(header::LOCATION, format!("https://{host}{port}{path}"))],
        )
            .into_response()
    });
    serve_router(listener.into(), None, app, shutdown).await
}
