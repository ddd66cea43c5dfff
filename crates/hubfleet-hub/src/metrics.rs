//! Prometheus metrics under JupyterHub's names and labels (`jupyterhub/metrics.py`),
//! so existing JupyterHub Grafana dashboards keep working.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::{AppState, HubError};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    handler: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SpawnLabels {
    status: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeriodLabel {
    period: &'static str,
}

type GaugeI = Gauge<i64, std::sync::atomic::AtomicI64>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Histogram>,
    spawn_duration: Family<SpawnLabels, Histogram>,
    stop_duration: Family<StatusLabel, Histogram>,
    poll_duration: Family<StatusLabel, Histogram>,
    proxy_add: Family<StatusLabel, Histogram>,
    proxy_delete: Family<StatusLabel, Histogram>,
    login_duration: Family<StatusLabel, Histogram>,
    logout_duration: Histogram,
    startup_duration: Histogram,
    init_spawners_duration: Histogram,
    check_routes_duration: Histogram,
    csp_reports: Counter,
    running_servers: GaugeI,
    total_users: GaugeI,
    active_users: Family<PeriodLabel, GaugeI>,
}

const SPAWN_BUCKETS: [f64; 12] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0,
];
const STOP_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn spawn_histogram() -> Histogram {
    Histogram::new(SPAWN_BUCKETS)
}

fn stop_histogram() -> Histogram {
    Histogram::new(STOP_BUCKETS)
}

fn default_histogram() -> Histogram {
    Histogram::new(DEFAULT_BUCKETS)
}

fn histogram_family<L>(constructor: fn() -> Histogram) -> Family<L, Histogram>
where
    L: Clone + std::hash::Hash + Eq,
{
    Family::new_with_constructor(constructor)
}

const DEFAULT_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("jupyterhub");
        let requests = histogram_family::<RequestLabels>(default_histogram);
        registry.register(
            "request_duration_seconds",
            "Request duration for all HTTP requests",
            requests.clone(),
        );
        let spawn_duration = histogram_family::<SpawnLabels>(spawn_histogram);
        registry.register(
            "server_spawn_duration_seconds",
            "Time taken for server spawning operation",
            spawn_duration.clone(),
        );
        let stop_duration = histogram_family::<StatusLabel>(stop_histogram);
        registry.register(
            "server_stop_seconds",
            "Time taken for server stopping operation",
            stop_duration.clone(),
        );
        let poll_duration = histogram_family::<StatusLabel>(default_histogram);
        registry.register(
            "server_poll_duration_seconds",
            "Time taken to poll if server is running",
            poll_duration.clone(),
        );
        let proxy_add = histogram_family::<StatusLabel>(default_histogram);
        registry.register(
            "proxy_add_duration_seconds",
            "Time taken for adding a user to the proxy",
            proxy_add.clone(),
        );
        let proxy_delete = histogram_family::<StatusLabel>(default_histogram);
        registry.register(
            "proxy_delete_duration_seconds",
            "Time taken for deleting a user from the proxy",
            proxy_delete.clone(),
        );
        let login_duration = histogram_family::<StatusLabel>(default_histogram);
        registry.register(
            "login_duration_seconds",
            "Time taken for logging in",
            login_duration.clone(),
        );
        let logout_duration = default_histogram();
        registry.register(
            "logout_duration_seconds",
            "Time taken for logging out",
            logout_duration.clone(),
        );
        let startup_duration = default_histogram();
        registry.register(
            "hub_startup_duration_seconds",
            "Time taken for Hub to start",
            startup_duration.clone(),
        );
        let init_spawners_duration = default_histogram();
        registry.register(
            "init_spawners_duration_seconds",
            "Time taken for spawners to initialize",
            init_spawners_duration.clone(),
        );
        let check_routes_duration = default_histogram();
        registry.register(
            "check_routes_duration_seconds",
            "Time taken to validate all routes in proxy",
            check_routes_duration.clone(),
        );
        let csp_reports = Counter::default();
        registry.register(
            "csp_reports",
            "Number of CSP reports received",
            csp_reports.clone(),
        );
        let running_servers = GaugeI::default();
        registry.register(
            "running_servers",
            "The number of user servers currently running",
            running_servers.clone(),
        );
        let total_users = GaugeI::default();
        registry.register("total_users", "Total number of users", total_users.clone());
        let active_users = Family::<PeriodLabel, GaugeI>::default();
        registry.register(
            "active_users",
            "Number of users who were active in the given time period",
            active_users.clone(),
        );

        // Labelled series exist at zero from the start, as upstream pre-creates them.
        for status in ["success", "failure", "error"] {
            let _ = spawn_duration.get_or_create(&SpawnLabels { status, reason: "" });
        }
        for status in ["success", "failure"] {
            let _ = stop_duration.get_or_create(&StatusLabel { status });
            let _ = proxy_add.get_or_create(&StatusLabel { status });
            let _ = proxy_delete.get_or_create(&StatusLabel { status });
            let _ = login_duration.get_or_create(&StatusLabel { status });
        }
        for status in ["running", "stopped"] {
            let _ = poll_duration.get_or_create(&StatusLabel { status });
        }
        for period in ["24h", "7d", "30d"] {
            let _ = active_users.get_or_create(&PeriodLabel { period });
        }
        Metrics {
            registry,
            requests,
            spawn_duration,
            stop_duration,
            poll_duration,
            proxy_add,
            proxy_delete,
            login_duration,
            logout_duration,
            startup_duration,
            init_spawners_duration,
            check_routes_duration,
            csp_reports,
            running_servers,
            total_users,
            active_users,
        }
    }
}

fn status(success: bool) -> &'static str {
    if success {
        "success"
    } else {
        "failure"
    }
}

impl Metrics {
    pub fn spawn_duration(&self, seconds: f64, success: bool, reason: &'static str) {
        self.spawn_duration
            .get_or_create(&SpawnLabels {
                status: status(success),
                reason,
            })
            .observe(seconds);
    }

    pub fn stop_duration(&self, seconds: f64, success: bool) {
        self.stop_duration
            .get_or_create(&StatusLabel {
                status: status(success),
            })
            .observe(seconds);
    }

    pub fn poll_duration(&self, seconds: f64, running: bool) {
        let status = if running { "running" } else { "stopped" };
        self.poll_duration
            .get_or_create(&StatusLabel { status })
            .observe(seconds);
    }

    pub fn proxy_add(&self, seconds: f64) {
        self.proxy_add
            .get_or_create(&StatusLabel { status: "success" })
            .observe(seconds);
    }

    pub fn proxy_delete(&self, seconds: f64) {
        self.proxy_delete
            .get_or_create(&StatusLabel { status: "success" })
            .observe(seconds);
    }

    pub fn login(&self, seconds: f64, success: bool) {
        self.login_duration
            .get_or_create(&StatusLabel {
                status: status(success),
            })
            .observe(seconds);
    }

    pub fn logout(&self, seconds: f64) {
        self.logout_duration.observe(seconds);
    }

    pub fn startup(&self, seconds: f64) {
        self.startup_duration.observe(seconds);
    }

    pub fn init_spawners(&self, seconds: f64) {
        self.init_spawners_duration.observe(seconds);
    }

    pub fn check_routes(&self, seconds: f64) {
        self.check_routes_duration.observe(seconds);
    }

    pub fn csp_report(&self) {
        self.csp_reports.inc();
    }

    pub fn request(&self, method: &str, handler: &str, code: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                handler: handler.to_string(),
                code,
            })
            .observe(seconds);
    }

    /// Gauges read from the database when scraped.
    pub async fn refresh(&self, state: &AppState) -> Result<(), HubError> {
        let active = state.store.active_servers().await?;
        self.running_servers.set(active.len() as i64);
        self.total_users.set(state.store.count_users().await?);
        let now = chrono::Utc::now();
        for (period, days) in [("24h", 1), ("7d", 7), ("30d", 30)] {
            let n = state
                .store
                .count_active_users(now - chrono::Duration::days(days))
                .await?;
            self.active_users
                .get_or_create(&PeriodLabel { period })
                .set(n);
        }
        Ok(())
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// JupyterHub's handler class for a route, so `handler` labels match upstream dashboards.
pub fn handler_name(route: &str) -> &'static str {
    match route {
        "/hub/api" | "/hub/api/" => "jupyterhub.apihandlers.hub.RootAPIHandler",
        "/hub/api/info" => "jupyterhub.apihandlers.hub.InfoAPIHandler",
        "/hub/api/user" => "jupyterhub.apihandlers.users.SelfAPIHandler",
        "/hub/api/users" => "jupyterhub.apihandlers.users.UserListAPIHandler",
        "/hub/api/users/{name}" => "jupyterhub.apihandlers.users.UserAPIHandler",
        "/hub/api/users/{name}/activity" => "jupyterhub.apihandlers.users.ActivityAPIHandler",
        "/hub/api/users/{name}/server" | "/hub/api/users/{name}/servers/{server}" => {
            "jupyterhub.apihandlers.users.UserServerAPIHandler"
        }
        "/hub/api/users/{name}/server/progress"
        | "/hub/api/users/{name}/servers/{server}/progress" => {
            "jupyterhub.apihandlers.users.SpawnProgressAPIHandler"
        }
        "/hub/api/users/{name}/tokens" => "jupyterhub.apihandlers.users.UserTokenListAPIHandler",
        "/hub/api/users/{name}/tokens/{token_id}" => {
            "jupyterhub.apihandlers.users.UserTokenAPIHandler"
        }
        "/hub/api/groups" => "jupyterhub.apihandlers.groups.GroupListAPIHandler",
        "/hub/api/groups/{name}" => "jupyterhub.apihandlers.groups.GroupAPIHandler",
        "/hub/api/services" => "jupyterhub.apihandlers.services.ServiceListAPIHandler",
        "/hub/api/services/{name}" => "jupyterhub.apihandlers.services.ServiceAPIHandler",
        "/hub/api/proxy" => "jupyterhub.apihandlers.proxy.ProxyAPIHandler",
        "/hub/api/oauth2/authorize" => "jupyterhub.apihandlers.auth.OAuthAuthorizeHandler",
        "/hub/api/oauth2/token" => "jupyterhub.apihandlers.auth.OAuthTokenHandler",
        "/hub/login" => "jupyterhub.handlers.login.LoginHandler",
        "/hub/logout" => "jupyterhub.handlers.login.LogoutHandler",
        "/hub/home" => "jupyterhub.handlers.pages.HomeHandler",
        "/hub/spawn" | "/hub/spawn/{user}" => "jupyterhub.handlers.pages.SpawnHandler",
        "/hub/spawn-pending/{user}" => "jupyterhub.handlers.pages.SpawnPendingHandler",
        "/hub/health" | "/hub/api/health" => "jupyterhub.handlers.base.HealthCheckHandler",
        "/hub/metrics" | "/hub/api/metrics" => "jupyterhub.handlers.metrics.MetricsHandler",
        r if r.starts_with("/hub/user/") => "jupyterhub.handlers.base.UserUrlHandler",
        r if r.starts_with("/hub/user-redirect/") => "jupyterhub.handlers.base.UserRedirectHandler",
        _ => "hubfleet.other",
    }
}

/// Records `jupyterhub_request_duration_seconds` for every hub request.
pub async fn track_requests(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let handler = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| handler_name(p.as_str()))
        .unwrap_or("jupyterhub.handlers.pages.Template404");
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    state
        .settings
        .metrics
        .request(&method, handler, status, seconds);
    // An access log as JupyterHub writes one (no query: it may carry an XSRF token).
    let ms = seconds * 1000.0;
    if path.starts_with("/hub/api") || status >= 400 {
        tracing::info!(target: "hubfleet::access", status, "{method} {path} {ms:.1}ms");
    } else {
        tracing::debug!(target: "hubfleet::access", status, "{method} {path} {ms:.1}ms");
    }
    response
}
