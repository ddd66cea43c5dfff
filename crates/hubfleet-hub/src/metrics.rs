//! Prometheus metrics under JupyterHub's names, labels and label values (`jupyterhub/metrics.py`
//! of 6.1.1, with prometheus_client's process metrics), so JupyterHub's Grafana dashboards and
//! alerts that filter on them keep working.

use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::{AppState, HubError};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    handler: &'static str,
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterStatusLabel {
    status: String,
}

/// The Dask gateway's cluster statuses, each a series from the start.
const DASK_STATUSES: [&str; 5] = ["PENDING", "RUNNING", "STOPPING", "STOPPED", "FAILED"];

type GaugeI = Gauge<i64, std::sync::atomic::AtomicI64>;

/// How a start ended, as upstream's `ServerSpawnStatus`: `failure` is a start refused on
/// purpose (a limit, a policy), `error` one that went wrong (the process exited, a timeout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnStatus {
    Success,
    Failure,
    Error,
}

impl SpawnStatus {
    fn as_str(self) -> &'static str {
        match self {
            SpawnStatus::Success => "success",
            SpawnStatus::Failure => "failure",
            SpawnStatus::Error => "error",
        }
    }
}

/// `reason` values of upstream's `ServerSpawnFailureReason`, and the one its handler gives a
/// server whose process exited before it answered.
pub mod spawn_reason {
    pub const NONE: &str = "";
    pub const THROTTLED: &str = "throttled";
    pub const TOO_MANY_USERS: &str = "too-many-users";
    pub const ALREADY_PENDING: &str = "already-pending";
    pub const EXITED: &str = "exited";
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Histogram>,
    spawn_duration: Family<SpawnLabels, Histogram>,
    stop_duration: Family<StatusLabel, Histogram>,
    poll_duration: Family<StatusLabel, Histogram>,
    proxy_add: Family<StatusLabel, Histogram>,
    proxy_delete: Family<StatusLabel, Histogram>,
    proxy_poll: Histogram,
    login_duration: Family<StatusLabel, Histogram>,
    logout_duration: Histogram,
    startup_duration: Histogram,
    init_spawners_duration: Histogram,
    check_routes_duration: Histogram,
    event_loop_interval: Histogram,
    csp_reports: Counter,
    running_servers: GaugeI,
    total_users: GaugeI,
    active_users: Family<PeriodLabel, GaugeI>,
    /// `hubfleet_dask_clusters{status}` (ours), on Dask hubs only.
    dask_clusters: Option<Family<ClusterStatusLabel, GaugeI>>,
}

/// Upstream's buckets (metrics.py); `+Inf` is implied.
const SPAWN_BUCKETS: [f64; 12] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0,
];
const DEFAULT_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
const EVENT_LOOP_BUCKETS: [f64; 15] = [
    0.05, 0.055, 0.06, 0.065, 0.07, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

fn spawn_histogram() -> Histogram {
    Histogram::new(SPAWN_BUCKETS)
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

/// Upstream's `ServerPollStatus` and `LoginStatus` are enums without `__str__`, so their label
/// values are the enum members' names.
const POLL_RUNNING: &str = "ServerPollStatus.running";
const POLL_STOPPED: &str = "ServerPollStatus.stopped";
const LOGIN_SUCCESS: &str = "LoginStatus.success";
const LOGIN_FAILURE: &str = "LoginStatus.failure";

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = histogram_family::<RequestLabels>(default_histogram);
        registry.register(
            "jupyterhub_request_duration_seconds",
            "Request duration for all HTTP requests",
            requests.clone(),
        );
        let spawn_duration = histogram_family::<SpawnLabels>(spawn_histogram);
        registry.register(
            "jupyterhub_server_spawn_duration_seconds",
            "Time taken for server spawning operation",
            spawn_duration.clone(),
        );
        let running_servers = GaugeI::default();
        registry.register(
            "jupyterhub_running_servers",
            "The number of user servers currently running",
            running_servers.clone(),
        );
        let total_users = GaugeI::default();
        registry.register(
            "jupyterhub_total_users",
            "Total number of users",
            total_users.clone(),
        );
        let active_users = Family::<PeriodLabel, GaugeI>::default();
        registry.register(
            "jupyterhub_active_users",
            "Number of users who were active in the given time period",
            active_users.clone(),
        );
        let check_routes_duration = default_histogram();
        registry.register(
            "jupyterhub_check_routes_duration_seconds",
            "Time taken to validate all routes in proxy",
            check_routes_duration.clone(),
        );
        let startup_duration = default_histogram();
        registry.register(
            "jupyterhub_hub_startup_duration_seconds",
            "Time taken for Hub to start",
            startup_duration.clone(),
        );
        let init_spawners_duration = default_histogram();
        registry.register(
            "jupyterhub_init_spawners_duration_seconds",
            "Time taken for spawners to initialize",
            init_spawners_duration.clone(),
        );
        let proxy_poll = default_histogram();
        registry.register(
            "jupyterhub_proxy_poll_duration_seconds",
            "Duration for polling all routes from proxy",
            proxy_poll.clone(),
        );
        let login_duration = histogram_family::<StatusLabel>(default_histogram);
        registry.register(
            "jupyterhub_login_duration_seconds",
            "duration for all authentication attempts",
            login_duration.clone(),
        );
        let logout_duration = default_histogram();
        registry.register(
            "jupyterhub_logout_duration_seconds",
            "duration for all logout requests",
            logout_duration.clone(),
        );
        let csp_reports = Counter::default();
        registry.register(
            "jupyterhub_csp_reports",
            "content security policy violation reports",
            csp_reports.clone(),
        );
        let proxy_add = histogram_family::<StatusLabel>(default_histogram);
        registry.register(
            "jupyterhub_proxy_add_duration_seconds",
            "Duration for adding user routes to proxy",
            proxy_add.clone(),
        );
        let poll_duration = histogram_family::<StatusLabel>(default_histogram);
        registry.register(
            "jupyterhub_server_poll_duration_seconds",
            "Time taken to poll if server is running",
            poll_duration.clone(),
        );
        let stop_duration = histogram_family::<StatusLabel>(default_histogram);
        registry.register(
            "jupyterhub_server_stop_seconds",
            "Time taken for server stopping operation",
            stop_duration.clone(),
        );
        let proxy_delete = histogram_family::<StatusLabel>(default_histogram);
        registry.register(
            "jupyterhub_proxy_delete_duration_seconds",
            "Duration for deleting user routes from proxy",
            proxy_delete.clone(),
        );
        let event_loop_interval = Histogram::new(EVENT_LOOP_BUCKETS);
        registry.register(
            "jupyterhub_event_loop_interval_seconds",
            "Distribution of measured event loop intervals",
            event_loop_interval.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector));

        // Labelled series exist at zero from the start, as upstream pre-creates them (for
        // alerts on `increase(…)`), with the same label values.
        for status in [
            SpawnStatus::Success,
            SpawnStatus::Failure,
            SpawnStatus::Error,
        ] {
            let _ = spawn_duration.get_or_create(&SpawnLabels {
                status: status.as_str(),
                reason: spawn_reason::NONE,
            });
        }
        for reason in [
            spawn_reason::THROTTLED,
            spawn_reason::TOO_MANY_USERS,
            spawn_reason::ALREADY_PENDING,
        ] {
            let _ = spawn_duration.get_or_create(&SpawnLabels {
                status: SpawnStatus::Failure.as_str(),
                reason,
            });
        }
        for status in ["success", "failure"] {
            let _ = stop_duration.get_or_create(&StatusLabel { status });
            let _ = proxy_add.get_or_create(&StatusLabel { status });
            let _ = proxy_delete.get_or_create(&StatusLabel { status });
        }
        for status in [POLL_RUNNING, POLL_STOPPED] {
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
            proxy_poll,
            login_duration,
            logout_duration,
            startup_duration,
            init_spawners_duration,
            check_routes_duration,
            event_loop_interval,
            csp_reports,
            running_servers,
            total_users,
            active_users,
            dask_clusters: None,
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
    pub fn spawn_duration(&self, seconds: f64, status: SpawnStatus, reason: &'static str) {
        self.spawn_duration
            .get_or_create(&SpawnLabels {
                status: status.as_str(),
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
        let status = if running { POLL_RUNNING } else { POLL_STOPPED };
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

    pub fn proxy_poll(&self, seconds: f64) {
        self.proxy_poll.observe(seconds);
    }

    pub fn login(&self, seconds: f64, success: bool) {
        let status = if success {
            LOGIN_SUCCESS
        } else {
            LOGIN_FAILURE
        };
        self.login_duration
            .get_or_create(&StatusLabel { status })
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

    pub fn request(&self, method: &str, handler: &'static str, code: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                handler,
                code,
            })
            .observe(seconds);
    }

    /// Count the Dask gateway's clusters (`hubfleet_dask_clusters{status}`; not upstream's).
    pub fn with_dask_clusters(&mut self) {
        let family = Family::<ClusterStatusLabel, GaugeI>::default();
        self.registry.register(
            "hubfleet_dask_clusters",
            "Dask clusters of the hub's Dask gateway, by status",
            family.clone(),
        );
        for status in DASK_STATUSES {
            let _ = family.get_or_create(&ClusterStatusLabel {
                status: status.to_owned(),
            });
        }
        self.dask_clusters = Some(family);
    }

    /// Gauges read from the database when scraped.
    pub async fn refresh(&self, state: &AppState) -> Result<(), HubError> {
        if let (Some(family), Some(gateway)) = (&self.dask_clusters, &state.settings().dask_gateway)
        {
            let listing = gateway.all_clusters(state).await?;
            // A partial answer would count too few: the gauges keep their last full count.
            if listing.failed.is_empty() {
                set_dask_clusters(family, &listing.rows);
            }
        }
        let counts = state.store.server_counts().await?;
        self.running_servers.set(counts.active);
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

    /// The exposition in `format`.
    pub fn render(&self, format: Format) -> String {
        let mut open_metrics = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut open_metrics, &self.registry);
        match format {
            Format::OpenMetrics => without_help_periods(&open_metrics),
            Format::Text => prometheus_text(&open_metrics),
        }
    }
}

/// How often the runtime's responsiveness is measured, as upstream's
/// `event_loop_interval_resolution`.
const EVENT_LOOP_RESOLUTION: Duration = Duration::from_millis(50);

/// Measure how late a timer wakes up, as upstream's `_measure_event_loop_interval`: a runtime
/// whose threads are all busy (or blocked) shows as intervals above the resolution.
pub async fn watch_event_loop(state: AppState) {
    let mut last = Instant::now();
    loop {
        tokio::time::sleep(EVENT_LOOP_RESOLUTION).await;
        let now = Instant::now();
        let tick = now - last;
        last = now;
        let delay = if tick < 2 * EVENT_LOOP_RESOLUTION {
            EVENT_LOOP_RESOLUTION
        } else {
            tick - EVENT_LOOP_RESOLUTION
        };
        if delay >= Duration::from_secs(1) {
            tracing::warn!(
                "the hub's runtime was unresponsive for at least {:.2} s",
                delay.as_secs_f64()
            );
        }
        state
            .settings()
            .metrics
            .event_loop_interval
            .observe(delay.as_secs_f64());
    }
}

// ---------------------------------------------------------------------------------------------
// Process metrics (prometheus_client's `ProcessCollector`)
// ---------------------------------------------------------------------------------------------

/// `process_*` from `/proc/self`, read at each scrape, as Python's prometheus_client reports
/// them for upstream's hub.
#[derive(Debug)]
struct ProcessCollector;

struct ProcessStat {
    cpu_seconds: f64,
    start_time_seconds: f64,
    virtual_bytes: f64,
    resident_bytes: f64,
}

fn process_stat() -> Option<ProcessStat> {
    use nix::unistd::{sysconf, SysconfVar};
    let ticks = sysconf(SysconfVar::CLK_TCK).ok().flatten()? as f64;
    let page = sysconf(SysconfVar::PAGE_SIZE).ok().flatten()? as f64;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces), from field 3 on.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<f64>().ok())?;
    Some(ProcessStat {
        cpu_seconds: (field(14)? + field(15)?) / ticks,
        start_time_seconds: boot_time + field(22)? / ticks,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * page,
    })
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        fn gauge(
            encoder: &mut DescriptorEncoder,
            name: &str,
            help: &str,
            value: f64,
        ) -> Result<(), std::fmt::Error> {
            let gauge = ConstGauge::new(value);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)
        }
        if let Some(stat) = process_stat() {
            gauge(
                &mut encoder,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                stat.virtual_bytes,
            )?;
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                stat.resident_bytes,
            )?;
            gauge(
                &mut encoder,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                stat.start_time_seconds,
            )?;
            let cpu = ConstCounter::new(stat.cpu_seconds);
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                cpu.metric_type(),
            )?;
            cpu.encode(metric)?;
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors",
                dir.count() as f64,
            )?;
        }
        if let Ok((soft, _)) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors",
                soft as f64,
            )?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Exposition formats
// ---------------------------------------------------------------------------------------------

/// The body of `/hub/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
    /// Prometheus' text format (0.0.4, which 1.0.0 is with our names).
    Text,
}

/// The format and `Content-Type` for an `Accept` header, as prometheus_client's
/// `choose_encoder` picks them: the first OpenMetrics entry without a version or with one of
/// at least 1.0.0, else the first `text/plain` with a version of at least 1.0.0, else text
/// 0.0.4. Quality values are not weighed (neither does prometheus_client).
pub fn negotiate(accept: Option<&str>) -> (Format, &'static str) {
    for entry in accept.unwrap_or_default().split(',') {
        let mut parts = entry.split(';');
        let media = parts.next().unwrap_or_default().trim();
        let version = parts.find_map(|p| {
            let (key, value) = p.split_once('=')?;
            (key.trim() == "version").then(|| value.trim())
        });
        let at_least_1 = version.is_some_and(|v| {
            let major = v.split('.').next().and_then(|m| m.parse::<u32>().ok());
            major.is_some_and(|m| m >= 1)
        });
        match media {
            "application/openmetrics-text" if version.is_none() => {
                return (
                    Format::OpenMetrics,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
            }
            "application/openmetrics-text" if at_least_1 => return (
                Format::OpenMetrics,
                "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores",
            ),
            "text/plain" if at_least_1 => {
                return (
                    Format::Text,
                    "text/plain; version=1.0.0; charset=utf-8; escaping=underscores",
                )
            }
            _ => {}
        }
    }
    (Format::Text, "text/plain; version=0.0.4; charset=utf-8")
}

/// prometheus-client ends every HELP text with a period; upstream's have none.
fn help_line(line: &str) -> &str {
    if line.starts_with("# HELP ") {
        line.strip_suffix('.').unwrap_or(line)
    } else {
        line
    }
}

fn without_help_periods(open_metrics: &str) -> String {
    let mut out = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        out.push_str(help_line(line));
        out.push('\n');
    }
    out
}

/// OpenMetrics text as Prometheus' text format: no `# EOF` or `# UNIT`, and a counter's
/// family named with its `_total` suffix, as its samples are.
fn prometheus_text(open_metrics: &str) -> String {
    let lines: Vec<&str> = open_metrics.lines().collect();
    let counters: std::collections::HashSet<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len());
    for line in lines {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let line = help_line(line);
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|tag| {
            let rest = line.strip_prefix(tag)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{tag}{name}_total {tail}"))
        });
        match renamed {
            Some(renamed) => out.push_str(&renamed),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// JupyterHub's handler class (module and name) for a route, so `handler` labels match
/// upstream's dashboards. Pages of the authenticators are named after the packages upstream
/// uses for them (oauthenticator, nativeauthenticator, tmpauthenticator).
pub fn handler_name(route: &str) -> &'static str {
    match route {
        "/hub/api" | "/hub/api/" => "jupyterhub.apihandlers.hub.RootAPIHandler",
        "/hub/api/info" => "jupyterhub.apihandlers.hub.InfoAPIHandler",
        "/hub/api/shutdown" => "jupyterhub.apihandlers.hub.ShutdownAPIHandler",
        "/hub/api/proxy" => "jupyterhub.apihandlers.proxy.ProxyAPIHandler",
        "/hub/api/user" => "jupyterhub.apihandlers.users.SelfAPIHandler",
        "/hub/api/users" => "jupyterhub.apihandlers.users.UserListAPIHandler",
        "/hub/api/users/{name}" => "jupyterhub.apihandlers.users.UserAPIHandler",
        "/hub/api/users/{name}/activity" => "jupyterhub.apihandlers.users.ActivityAPIHandler",
        "/hub/api/users/{name}/admin-access" => {
            "jupyterhub.apihandlers.users.UserAdminAccessAPIHandler"
        }
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
        "/hub/api/authorizations/token" | "/hub/api/authorizations/token/{token}" => {
            "jupyterhub.apihandlers.auth.TokenAPIHandler"
        }
        "/hub/api/authorizations/cookie/{name}"
        | "/hub/api/authorizations/cookie/{name}/{value}" => {
            "jupyterhub.apihandlers.auth.CookieAPIHandler"
        }
        "/hub/api/oauth2/authorize" => "jupyterhub.apihandlers.auth.OAuthAuthorizeHandler",
        "/hub/api/oauth2/token" => "jupyterhub.apihandlers.auth.OAuthTokenHandler",
        "/hub/api/groups" => "jupyterhub.apihandlers.groups.GroupListAPIHandler",
        "/hub/api/groups/{name}" => "jupyterhub.apihandlers.groups.GroupAPIHandler",
        "/hub/api/groups/{name}/users" => "jupyterhub.apihandlers.groups.GroupUsersAPIHandler",
        "/hub/api/groups/{name}/properties" => {
            "jupyterhub.apihandlers.groups.GroupPropertiesAPIHandler"
        }
        "/hub/api/services" => "jupyterhub.apihandlers.services.ServiceListAPIHandler",
        "/hub/api/services/{name}" => "jupyterhub.apihandlers.services.ServiceAPIHandler",
        "/hub/api/users/{name}/shared" => "jupyterhub.apihandlers.shares.UserShareListAPIHandler",
        "/hub/api/groups/{name}/shared" => "jupyterhub.apihandlers.shares.GroupShareListAPIHandler",
        r if r.starts_with("/hub/api/users/{name}/shared/") => {
            "jupyterhub.apihandlers.shares.UserShareAPIHandler"
        }
        r if r.starts_with("/hub/api/groups/{name}/shared/") => {
            "jupyterhub.apihandlers.shares.GroupShareAPIHandler"
        }
        r if r.starts_with("/hub/api/shares/") => {
            "jupyterhub.apihandlers.shares.ServerShareAPIHandler"
        }
        r if r.starts_with("/hub/api/share-codes/") => {
            "jupyterhub.apihandlers.shares.ServerShareCodeAPIHandler"
        }
        "/hub/api/{*rest}" => "jupyterhub.apihandlers.base.API404",
        "/hub" => "jupyterhub.handlers.base.PrefixRedirectHandler",
        "/hub/" => "jupyterhub.handlers.pages.RootHandler",
        "/hub/login" => "jupyterhub.handlers.login.LoginHandler",
        "/hub/logout" => "jupyterhub.handlers.login.LogoutHandler",
        "/hub/home" => "jupyterhub.handlers.pages.HomeHandler",
        "/hub/admin" => "jupyterhub.handlers.pages.AdminHandler",
        "/hub/token" => "jupyterhub.handlers.pages.TokenPageHandler",
        "/hub/accept-share" => "jupyterhub.handlers.pages.AcceptShareHandler",
        "/hub/error/{code}" => "jupyterhub.handlers.pages.ProxyErrorHandler",
        "/hub/spawn" | "/hub/spawn/{user}" | "/hub/spawn/{user}/{server}" => {
            "jupyterhub.handlers.pages.SpawnHandler"
        }
        "/hub/spawn-pending/{user}" | "/hub/spawn-pending/{user}/{server}" => {
            "jupyterhub.handlers.pages.SpawnPendingHandler"
        }
        "/hub/health" | "/hub/api/health" => "jupyterhub.handlers.pages.HealthCheckHandler",
        "/hub/metrics" | "/hub/api/metrics" => "jupyterhub.handlers.metrics.MetricsHandler",
        "/hub/security/csp-report" => "jupyterhub.handlers.base.CSPReportHandler",
        "/hub/static/{*path}" => "jupyterhub.handlers.static.CacheControlStaticFilesHandler",
        r if r.starts_with("/hub/user/") => "jupyterhub.handlers.base.UserUrlHandler",
        r if r.starts_with("/hub/user-redirect/") => "jupyterhub.handlers.base.UserRedirectHandler",
        "/hub/oauth_login" => "oauthenticator.oauth2.OAuthLoginHandler",
        "/hub/oauth_callback" => "oauthenticator.oauth2.OAuthCallbackHandler",
        "/hub/tmplogin" => "tmpauthenticator.TmpAuthenticateHandler",
        "/hub/signup" => "nativeauthenticator.handlers.SignUpHandler",
        "/hub/authorize" => "nativeauthenticator.handlers.AuthorizationAreaHandler",
        "/hub/authorize/{name}" => "nativeauthenticator.handlers.ToggleAuthorizationHandler",
        "/hub/authorize/{name}/discard" => "nativeauthenticator.handlers.DiscardHandler",
        "/hub/change-password" => "nativeauthenticator.handlers.ChangePasswordHandler",
        r if r.starts_with("/hub/admin/log/") => "hubfleet.handlers.AdminLogHandler",
        _ => "hubfleet.other",
    }
}

/// The handler of a request no route took, as upstream's catch-alls name them: outside
/// `/hub/` a redirect into it (`AddSlashHandler` for `/user/<name>`), under `/hub/api/` its
/// 404, and any other page `Template404`.
pub fn unrouted_handler_name(path: &str, status: u16) -> &'static str {
    if path.starts_with("/hub/api/") {
        return "jupyterhub.apihandlers.base.API404";
    }
    if path.starts_with("/hub/") {
        return if (300..400).contains(&status) {
            "jupyterhub.handlers.base.PrefixRedirectHandler"
        } else {
            "jupyterhub.handlers.base.Template404"
        };
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segments.len() == 2 && matches!(segments[0], "user" | "services") && !segments[1].is_empty()
    {
        return "jupyterhub.handlers.base.AddSlashHandler";
    }
    "jupyterhub.handlers.base.PrefixRedirectHandler"
}

/// The handler that served a routed request, left in the response for [`track_requests`].
#[derive(Clone, Copy, Debug)]
struct HandlerName(&'static str);

/// Notes which route served a request (a route layer: it sees the matched route).
pub async fn name_handler(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let handler = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| handler_name(p.as_str()));
    let mut response = next.run(request).await;
    if let Some(handler) = handler {
        response.extensions_mut().insert(HandlerName(handler));
    }
    response
}

/// Records `jupyterhub_request_duration_seconds` for every request the hub answers, routed or
/// not, and writes the access log.
pub async fn track_requests(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let handler = response
        .extensions()
        .get::<HandlerName>()
        .map(|h| h.0)
        .unwrap_or_else(|| unrouted_handler_name(&path, status));
    let seconds = started.elapsed().as_secs_f64();
    state
        .settings()
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

/// `hubfleet_dask_clusters{status}` from a full listing.
fn set_dask_clusters(
    family: &Family<ClusterStatusLabel, GaugeI>,
    clusters: &[crate::dask::ClusterRow],
) {
    for status in DASK_STATUSES {
        let n = clusters.iter().filter(|c| c.status == status).count();
        family
            .get_or_create(&ClusterStatusLabel {
                status: status.to_owned(),
            })
            .set(n as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_choose_formats_as_prometheus_client() {
        // Prometheus 2.x and 3.x ask for OpenMetrics first.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(prometheus)).0, Format::OpenMetrics);
        assert_eq!(
            negotiate(Some("application/openmetrics-text")),
            (
                Format::OpenMetrics,
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            )
        );
        // An OpenMetrics version below 1.0.0 is passed over.
        assert_eq!(
            negotiate(Some("application/openmetrics-text; version=0.0.1")),
            (Format::Text, "text/plain; version=0.0.4; charset=utf-8")
        );
        assert_eq!(
            negotiate(Some("text/plain;version=1.0.0")).1,
            "text/plain; version=1.0.0; charset=utf-8; escaping=underscores"
        );
        for plain in [None, Some(""), Some("*/*"), Some("text/plain")] {
            assert_eq!(
                negotiate(plain),
                (Format::Text, "text/plain; version=0.0.4; charset=utf-8")
            );
        }
    }

    #[test]
    fn text_format_names_counter_families_with_total() {
        let metrics = Metrics::default();
        metrics.csp_report();
        let text = metrics.render(Format::Text);
        assert!(
            text.contains(
                "# HELP jupyterhub_csp_reports_total content security policy violation reports\n"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE jupyterhub_csp_reports_total counter\n"));
        assert!(text.contains("\njupyterhub_csp_reports_total 1\n"));
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"));
        assert!(!text.contains("# EOF"));
        let open = metrics.render(Format::OpenMetrics);
        assert!(open.contains("# TYPE jupyterhub_csp_reports counter\n"));
        assert!(open.contains(
            "# HELP jupyterhub_running_servers The number of user servers currently running\n"
        ));
        assert!(open.ends_with("# EOF\n"));
    }

    #[test]
    fn unrouted_requests_are_named_as_upstream_catch_alls() {
        assert_eq!(
            unrouted_handler_name("/hub/nope", 404),
            "jupyterhub.handlers.base.Template404"
        );
        assert_eq!(
            unrouted_handler_name("/hub/api/nope", 404),
            "jupyterhub.apihandlers.base.API404"
        );
        assert_eq!(
            unrouted_handler_name("/user/alice", 301),
            "jupyterhub.handlers.base.AddSlashHandler"
        );
        assert_eq!(
            unrouted_handler_name("/user/alice/lab", 302),
            "jupyterhub.handlers.base.PrefixRedirectHandler"
        );
        assert_eq!(
            handler_name("/hub/admin"),
            "jupyterhub.handlers.pages.AdminHandler"
        );
    }
}
