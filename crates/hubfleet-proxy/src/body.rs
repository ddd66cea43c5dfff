//! One response body type for everything the proxy answers with, without boxing upstream bodies.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::pool::Lease;
use crate::routes::Entry;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) enum ProxyBody {
    /// Streamed from the upstream server; each data frame counts as route activity.
    Upstream {
        body: Incoming,
        entry: Arc<Entry>,
        /// The pooled connection, returned when the body has ended cleanly.
        lease: Option<Lease>,
    },
    /// Produced by the in-process hub router.
    Hub(axum::body::Body),
    /// Relayed without activity accounting (error pages from `--error-target`).
    Plain(Incoming),
    /// Small proxy-generated responses (errors, 101 switching protocols).
    Full(Full<Bytes>),
}

impl ProxyBody {
    pub(crate) fn empty() -> Self {
        ProxyBody::Full(Full::new(Bytes::new()))
    }

    pub(crate) fn text(s: impl Into<Bytes>) -> Self {
        ProxyBody::Full(Full::new(s.into()))
    }
}

// Every variant is Unpin, so plain `Pin::new` projection is enough (no pin-project, no unsafe).
impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Upstream { body, entry, lease } => match Pin::new(body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if frame.is_data() {
                        entry.touch_coarse();
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => {
                    // The connection is in an unknown state: never reuse it.
                    lease.take();
                    Poll::Ready(Some(Err(e.into())))
                }
                Poll::Ready(None) => {
                    if let (Some(l), Some(upstream)) = (lease.take(), entry.upstream()) {
                        l.release(upstream);
                    }
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            },
            ProxyBody::Hub(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            ProxyBody::Plain(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            ProxyBody::Full(b) => Pin::new(b).poll_frame(cx).map_err(|e| match e {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream { body, .. } => body.is_end_stream(),
            ProxyBody::Hub(b) => b.is_end_stream(),
            ProxyBody::Plain(b) => b.is_end_stream(),
            ProxyBody::Full(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream { body, .. } => body.size_hint(),
            ProxyBody::Hub(b) => b.size_hint(),
            ProxyBody::Plain(b) => b.size_hint(),
            ProxyBody::Full(b) => b.size_hint(),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // A body that was complete without being polled to its end (empty bodies: 204, 304,
        // HEAD) still leaves a reusable connection. Anything cut short closes it.
        if let ProxyBody::Upstream { body, lease, entry } = self {
            if body.is_end_stream() {
                if let (Some(l), Some(upstream)) = (lease.take(), entry.upstream()) {
                    l.release(upstream);
                }
            }
        }
    }
}
