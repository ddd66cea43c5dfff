//! The proxy's own Prometheus metrics, and the small server that exposes them.
//!
//! What every request counts (status class, latency) goes into per-thread shards of plain
//! atomics, summed when scraped: two worker threads never write the same cache line, where one
//! shared histogram took a write lock per request. Gauges that describe the process (routes,
//! open file descriptors, resident memory) are read when scraped.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::RouteTable;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Upper bounds (seconds) of the latency histogram's buckets, below +Inf.
const LATENCY_BOUNDS: [f64; 15] = [
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Shards of the per-request counters; threads are spread over them.
const SHARDS: usize = 16;

/// One thread's share of the per-request counters, alone on its cache lines.
#[repr(align(128))]
#[derive(Default)]
struct Shard {
    by_class: [AtomicU64; 5],
    /// Per bucket (not cumulative); the last is +Inf.
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

/// Requests by status class and their latency, sharded per thread.
#[derive(Default)]
struct RequestStats {
    shards: [Shard; SHARDS],
}

thread_local! {
    static SHARD: Cell<Option<usize>> = const { Cell::new(None) };
}

impl RequestStats {
    fn shard(&self) -> &Shard {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let i = SHARD.with(|s| {
            s.get().unwrap_or_else(|| {
                let i = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
                s.set(Some(i));
                i
            })
        });
        &self.shards[i]
    }

    fn record(&self, class: usize, seconds: f64) {
        let shard = self.shard();
        shard.by_class[class].fetch_add(1, Ordering::Relaxed);
        let bucket = LATENCY_BOUNDS
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(LATENCY_BOUNDS.len());
        shard.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        shard
            .sum_nanos
            .fetch_add((seconds * 1e9) as u64, Ordering::Relaxed);
    }

    fn class_total(&self, class: usize) -> u64 {
        self.shards
            .iter()
            .map(|s| s.by_class[class].load(Ordering::Relaxed))
            .sum()
    }
}

/// `requests{code="2xx"}`: the status-class counters, summed over shards.
#[derive(Clone, Debug)]
struct ClassCounters(Arc<RequestStats>);

/// `request_duration_seconds`: the latency histogram, summed over shards.
#[derive(Clone, Debug)]
struct LatencyHistogram(Arc<RequestStats>);

impl std::fmt::Debug for RequestStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestStats")
    }
}

impl TypedMetric for ClassCounters {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for ClassCounters {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (i, code) in CLASSES.iter().enumerate() {
            let labels = CodeLabel { code };
            encoder
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&self.0.class_total(i), None)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let shards = &self.0.shards;
        let bounds = LATENCY_BOUNDS.iter().copied().chain([f64::MAX]);
        let buckets: Vec<(f64, u64)> = bounds
            .enumerate()
            .map(|(i, bound)| {
                let n = shards.iter().map(|s| s.buckets[i].load(Ordering::Relaxed));
                (bound, n.sum())
            })
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let nanos: u64 = shards
            .iter()
            .map(|s| s.sum_nanos.load(Ordering::Relaxed))
            .sum();
        encoder.encode_histogram::<NoLabelSet>(nanos as f64 / 1e9, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Every metric the proxy keeps. Cheap to clone; clones share the same values.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: Arc<RequestStats>,
    websocket_requests: Counter,
    api_requests: Counter,
    upstream_errors: Family<KindLabel, Counter>,
    open_connections: Gauge,
    websockets: Gauge,
    routes: Gauge,
    open_fds: Gauge,
    rss: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Decrements a gauge when dropped: an open connection or tunnel, counted while it lives.
pub(crate) struct GaugeGuard(Gauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hubfleet_proxy");
        let requests = Arc::new(RequestStats::default());
        registry.register(
            "requests",
            "Requests answered on the public port, by status class (websocket upgrades as 1xx)",
            ClassCounters(requests.clone()),
        );
        let websocket_requests = Counter::default();
        registry.register(
            "websocket_requests",
            "Upgrade (WebSocket) requests received",
            websocket_requests.clone(),
        );
        let api_requests = Counter::default();
        registry.register(
            "api_requests",
            "Requests to the REST API",
            api_requests.clone(),
        );
        let upstream_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "upstream_errors",
            "Requests whose upstream failed: connect (503) or timeout (504)",
            upstream_errors.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from receiving a request to sending the response head",
            LatencyHistogram(requests.clone()),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Client connections open on the public port",
            open_connections.clone(),
        );
        let websockets = Gauge::default();
        registry.register(
            "websockets",
            "Upgraded (WebSocket) tunnels open",
            websockets.clone(),
        );
        let routes = Gauge::default();
        registry.register("routes", "Routes in the table", routes.clone());
        let open_fds = Gauge::default();
        registry.register(
            "open_fds",
            "File descriptors open in this process",
            open_fds.clone(),
        );
        let rss = Gauge::default();
        registry.register(
            "resident_memory_bytes",
            "Resident set size of this process",
            rss.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                websocket_requests,
                api_requests,
                upstream_errors,
                open_connections,
                websockets,
                routes,
                open_fds,
                rss,
            }),
        }
    }

    pub(crate) fn response(&self, status: u16, seconds: f64) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.inner.requests.record(class, seconds);
    }

    pub(crate) fn websocket_request(&self) {
        self.inner.websocket_requests.inc();
    }

    pub(crate) fn api_request(&self) {
        self.inner.api_requests.inc();
    }

    pub(crate) fn upstream_error(&self, kind: &'static str) {
        self.inner
            .upstream_errors
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    pub(crate) fn connection_opened(&self) -> GaugeGuard {
        self.inner.open_connections.inc();
        GaugeGuard(self.inner.open_connections.clone())
    }

    pub(crate) fn websocket_opened(&self) -> GaugeGuard {
        self.inner.websockets.inc();
        GaugeGuard(self.inner.websockets.clone())
    }

    /// The Prometheus text exposition of every metric, with the process gauges read now.
    pub fn render(&self, table: &RouteTable) -> String {
        self.inner.routes.set(table.len() as i64);
        if let Some(n) = open_fds() {
            self.inner.open_fds.set(n);
        }
        if let Some(n) = resident_bytes() {
            self.inner.rss.set(n);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }
}

/// Open file descriptors, from `/proc/self/fd` (Linux).
pub fn open_fds() -> Option<i64> {
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as i64)
}

/// Resident set size in bytes, from `/proc/self/statm` (Linux, assuming 4 KiB pages).
pub fn resident_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Serve `GET /metrics` on `listener` until `shutdown` resolves (CHP's `--metrics-port`).
pub async fn serve_metrics(
    listener: impl Into<crate::Listener>,
    table: RouteTable,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = metrics.render(&table);
            async move {
                (
                    StatusCode::OK,
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    body,
                )
                    .into_response()
            }
        }),
    );
    crate::listen::serve_router(listener.into(), None, app, shutdown).await
}
