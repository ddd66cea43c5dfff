//! Upstream HTTP/1.1 connections, pooled per target and bounded.
//!
//! A connection is taken for one request and comes back to the pool only when its response
//! ended cleanly (so a long stream never blocks another request behind it); anything else
//! (errors, upgrades, responses abandoned half way) closes it. At most `max_idle` idle
//! connections are kept per target, and idle ones are closed after `idle_timeout` by a reaper.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::routes::Upstream;

type Sender = SendRequest<Incoming>;

/// Why an upstream request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("connect to {upstream:?}: {source}")]
    Connect {
        upstream: Upstream,
        source: io::Error,
    },
    #[error("connect to {0:?}: timed out")]
    ConnectTimeout(Upstream),
    #[error("TLS handshake with {upstream:?}: {source}")]
    Tls {
        upstream: Upstream,
        source: io::Error,
    },
    #[error("HTTP exchange failed: {0}")]
    Http(#[from] hyper::Error),
}

pub(crate) struct Pool {
    idle: Mutex<HashMap<Upstream, Vec<(Sender, Instant)>>>,
    max_idle: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
    /// For `https://` targets.
    tls: TlsConnector,
}

/// A connection lent for one request; returned by [`Lease::release`].
pub(crate) struct Lease {
    pool: Arc<Pool>,
    sender: Sender,
}

impl Lease {
    /// The response ended cleanly: the connection to `upstream` (the one it was lent for) may
    /// serve another request.
    pub(crate) fn release(self, upstream: &Upstream) {
        self.pool.put(upstream, self.sender);
    }
}

impl Pool {
    pub(crate) fn new(
        max_idle: usize,
        idle_timeout: Duration,
        connect_timeout: Duration,
        tls: TlsConnector,
    ) -> Self {
        Pool {
            idle: Mutex::new(HashMap::new()),
            max_idle,
            idle_timeout,
            connect_timeout,
            tls,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Upstream, Vec<(Sender, Instant)>>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self, upstream: &Upstream) -> Option<Sender> {
        let mut idle = self.lock();
        let list = idle.get_mut(upstream)?;
        let now = Instant::now();
        while let Some((sender, since)) = list.pop() {
            if !sender.is_closed() && now.duration_since(since) < self.idle_timeout {
                return Some(sender);
            }
        }
        idle.remove(upstream);
        None
    }

    fn put(&self, upstream: &Upstream, sender: Sender) {
        if sender.is_closed() || self.max_idle == 0 {
            return;
        }
        let mut idle = self.lock();
        // The key is cloned only for a new upstream: its bytes are shared with other threads.
        let list = match idle.get_mut(upstream) {
            Some(list) => list,
            None => idle.entry(upstream.clone()).or_default(),
        };
        if list.len() < self.max_idle {
            list.push((sender, Instant::now()));
        }
    }

    /// Close idle connections that are past their time or already closed by the upstream.
    pub(crate) fn reap(&self) {
        let now = Instant::now();
        self.lock().retain(|_, list| {
            list.retain(|(s, since)| {
                !s.is_closed() && now.duration_since(*since) < self.idle_timeout
            });
            !list.is_empty()
        });
    }

    async fn connect(&self, upstream: &Upstream) -> Result<Sender, UpstreamError> {
        let connect_err = |source| UpstreamError::Connect {
            upstream: upstream.clone(),
            source,
        };
        let timed_out = |_| UpstreamError::ConnectTimeout(upstream.clone());
        match upstream {
            Upstream::Http(authority) | Upstream::Https(authority) => {
                let port = authority.port_u16().unwrap_or(match upstream {
                    Upstream::Https(_) => 443,
                    _ => 80,
                });
                let host = authority
                    .host()
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                let stream =
                    tokio::time::timeout(self.connect_timeout, TcpStream::connect((host, port)))
                        .await
                        .map_err(timed_out)?
                        .map_err(connect_err)?;
                let _ = stream.set_nodelay(true);
                if let Upstream::Http(_) = upstream {
                    return handshake(stream).await;
                }
                let name =
                    rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| {
                        UpstreamError::Tls {
                            upstream: upstream.clone(),
                            source: io::Error::new(io::ErrorKind::InvalidInput, e),
                        }
                    })?;
                let tls =
                    tokio::time::timeout(self.connect_timeout, self.tls.connect(name, stream))
                        .await
                        .map_err(timed_out)?
                        .map_err(|source| UpstreamError::Tls {
                            upstream: upstream.clone(),
                            source,
                        })?;
                handshake(tls).await
            }
            Upstream::Unix(path) => {
                let stream = tokio::time::timeout(self.connect_timeout, UnixStream::connect(path))
                    .await
                    .map_err(timed_out)?
                    .map_err(connect_err)?;
                handshake(stream).await
            }
        }
    }

    /// Send `req` (origin-form URI) to `authority`, on a pooled connection when one is idle.
    pub(crate) async fn send(
        self: &Arc<Self>,
        upstream: &Upstream,
        mut req: Request<Incoming>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        // A pooled connection may have been closed by the upstream in the meantime; hyper then
        // hands the unsent request back and we try the next one (or a new connection).
        while let Some(mut sender) = self.take(upstream) {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, self.lease(sender))),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(e.into_error().into()),
                },
            }
        }
        let mut sender = self.connect(upstream).await?;
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        Ok((resp, self.lease(sender)))
    }

    fn lease(self: &Arc<Self>, sender: Sender) -> Lease {
        Lease {
            pool: self.clone(),
            sender,
        }
    }
}

/// HTTP/1.1 over `io`, with the connection driven by its own task.
async fn handshake<I>(io: I) -> Result<Sender, UpstreamError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // As on the server side: one copied write beats writev for small requests.
    let (sender, conn) = http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(io))
        .await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with error");
        }
    });
    Ok(sender)
}
