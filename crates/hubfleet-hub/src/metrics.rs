//! Prometheus metrics under JupyterHub's names, so existing dashboards keep working.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SpawnLabels {
    status: &'static str,
    reason: &'static str,
}

pub struct Metrics {
    registry: Registry,
    spawn_duration: Family<SpawnLabels, Histogram>,
    pub running_servers: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub total_users: Gauge<i64, std::sync::atomic::AtomicI64>,
}

const SPAWN_BUCKETS: [f64; 12] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0,
];

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("jupyterhub");
        let spawn_duration = Family::<SpawnLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(SPAWN_BUCKETS)
        });
        registry.register(
            "server_spawn_duration_seconds",
            "Time taken for server spawning operation",
            spawn_duration.clone(),
        );
        let running_servers = Gauge::default();
        registry.register(
            "running_servers",
            "The number of user servers currently running",
            running_servers.clone(),
        );
        let total_users = Gauge::default();
        registry.register("total_users", "Total number of users", total_users.clone());
        // Labelled series exist at zero from the start, as upstream pre-creates them.
        for status in ["success", "failure"] {
            let _ = spawn_duration.get_or_create(&SpawnLabels { status, reason: "" });
        }
        Metrics {
            registry,
            spawn_duration,
            running_servers,
            total_users,
        }
    }
}

impl Metrics {
    pub fn spawn_duration(&self, seconds: f64, success: bool) {
        let status = if success { "success" } else { "failure" };
        self.spawn_duration
            .get_or_create(&SpawnLabels { status, reason: "" })
            .observe(seconds);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
