//! The hub: a JupyterHub-compatible web application (axum) behind the built-in proxy.
//!
//! `Hub::start` connects the store, re-adopts running servers, and serves the
//! proxy on the public address; the proxy hands `/hub/…` (and anything without
//! a route) to this crate's router in-process.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hubfleet_auth::DynAuthenticator;
use hubfleet_proxy::{RouteTable, HUB_TARGET};
use hubfleet_spawn::Spawner;
use hubfleet_store::Store;

mod access;
mod acme;
mod admin;
mod api;
mod auth_refresh;
pub mod binder;
pub mod cluster;
mod config_groups;
mod cookie_secret;
pub mod culler;
pub mod dask;
pub mod env_build;
pub mod environments;
pub mod external_proxy;
pub mod https;
mod identity;
pub mod lifecycle;
mod login;
pub mod metrics;
mod native_pages;
mod oauth;
mod pages;
mod password_login;
mod private_file;
pub mod profiles;
pub mod rate_limit;
pub mod reload;
pub mod services;
mod spawn_page;
mod static_files;
mod templates;
pub mod urls;

pub use lifecycle::Lifecycle;
pub use templates::PageSettings;

/// The JupyterHub version we speak, sent as `X-JupyterHub-Version` (must be PEP 440:
/// `jupyterhub-singleuser` parses it at start-up).
pub const JUPYTERHUB_VERSION: &str = "6.1.1";

/// What the hub needs from its configuration, resolved to absolute values.
pub struct Settings {
    /// Public address of the proxy (where people connect).
    pub listen: SocketAddr,
    /// Base URL servers use to reach the hub API, e.g. `http://127.0.0.1:8000`.
    pub internal_base_url: String,
    pub data_dir: PathBuf,
    pub cmd: Option<Vec<String>>,
    pub python_env: Option<PathBuf>,
    pub default_url: Option<String>,
    pub extra_env: BTreeMap<String, String>,
    pub start_timeout: Duration,
    /// Secure cookies when people reach the hub over https.
    pub secure_cookies: bool,
    /// Each user's servers on a host of their own (`hub.config.JupyterHub.subdomain_host`).
    pub subdomain_host: Option<urls::SubdomainHost>,
    /// Where everything is served (`hub.baseUrl`): starts and ends with `/`.
    pub base_url: String,
    pub admin_users: Vec<String>,
    pub allow_named_servers: bool,
    /// 0 means no limit.
    pub named_server_limit_per_user: i64,
    /// `hub.services`, started (or registered) at start-up.
    pub services: Vec<services::ServiceDefinition>,
    /// `hub.loadRoles`.
    pub roles: Vec<RoleDefinition>,
    pub culler: Option<culler::CullSettings>,
    /// Shared by every version of the settings a reload makes.
    pub metrics: Arc<metrics::Metrics>,
    /// Profiles, limits, environments and storage of user servers.
    pub spawn_options: profiles::SpawnOptions,
    /// How profiles and environments may be edited (`hubfleet.environments`).
    pub environments: environments::EnvironmentSettings,
    /// Template overrides and variables (branding, announcements).
    pub pages: PageSettings,
    /// `hub.cookieSecret`: keys XSRF tokens; when it changes, every login session ends at start.
    pub cookie_secret: Option<hubfleet_config::CookieSecret>,
    /// After login (and at `/hub/`), go to the user's server rather than the home page.
    pub redirect_to_server: bool,
    /// Logging out stops the user's running servers.
    pub shutdown_on_logout: bool,
    /// `/hub/metrics` needs a token with `read:metrics`.
    pub authenticate_prometheus: bool,
    /// `hub.config.JupyterHub.load_groups`, made at start.
    pub groups: Vec<GroupDefinition>,
    /// Variables of `hub.extraEnv` passed on to servers and services instead of the process's
    /// (upstream's `env_keep`: `PATH`, `LANG`, …).
    pub kept_env: BTreeMap<String, String>,
    /// HTTPS on `listen` (`proxy.https`), when the hub ends TLS itself.
    pub https: Option<https::HttpsOptions>,
    /// Starts in progress at once before more are refused with 429 (0: no limit).
    pub concurrent_spawn_limit: u32,
    /// Servers not stopped before starts are refused with 429 (0: no limit).
    pub active_server_limit: u32,
    /// `hubfleet.api_rate_limit`.
    pub api_rate_limit: Arc<rate_limit::ApiRateLimiter>,
    /// When the hub process began starting, for `jupyterhub_hub_startup_duration_seconds`.
    pub process_started: std::time::Instant,
    /// A separate proxy the hub drives through its REST API
    /// (`hub.config.ConfigurableHTTPProxy.api_url`); `None`: the built-in proxy on `listen`.
    pub external_proxy: Option<external_proxy::ExternalProxy>,
    /// `dask-gateway:`: the Dask gateway run as a managed service.
    pub dask_gateway: Option<Arc<dask::Gateway>>,
    /// `binderhub-service:`: launch repositories at `/hub/binder/v2/…`.
    pub binder: Option<binder::BinderSettings>,
}

/// A group from the config file (`hub.config.JupyterHub.load_groups`).
#[derive(Clone, Debug, Default)]
pub struct GroupDefinition {
    pub name: String,
    pub users: Vec<String>,
    /// `None` leaves the group's properties as they are.
    pub properties: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A role from the config file (`hub.loadRoles`).
#[derive(Clone, Debug, Default)]
pub struct RoleDefinition {
    pub name: String,
    pub description: String,
    pub scopes: Vec<String>,
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub services: Vec<String>,
}

impl Settings {
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        let host = if listen.ip().is_unspecified() {
            SocketAddr::new([127, 0, 0, 1].into(), listen.port())
        } else {
            listen
        };
        Settings {
            listen,
            internal_base_url: format!("http://{host}"),
            data_dir,
            cmd: None,
            python_env: None,
            default_url: None,
            extra_env: BTreeMap::new(),
            start_timeout: Duration::from_secs(300),
            secure_cookies: false,
            subdomain_host: None,
            base_url: "/".to_owned(),
            admin_users: Vec::new(),
            allow_named_servers: false,
            named_server_limit_per_user: 0,
            services: Vec::new(),
            roles: Vec::new(),
            culler: None,
            metrics: Arc::new(metrics::Metrics::default()),
            spawn_options: profiles::SpawnOptions::default(),
            environments: environments::EnvironmentSettings::default(),
            pages: PageSettings::default(),
            cookie_secret: None,
            redirect_to_server: false,
            shutdown_on_logout: false,
            authenticate_prometheus: true,
            groups: Vec::new(),
            kept_env: BTreeMap::new(),
            https: None,
            concurrent_spawn_limit: hubfleet_config::DEFAULT_CONCURRENT_SPAWN_LIMIT,
            active_server_limit: 0,
            api_rate_limit: Arc::new(rate_limit::ApiRateLimiter::new(
                hubfleet_config::DEFAULT_API_RATE_PER_SECOND,
                hubfleet_config::DEFAULT_API_RATE_BURST,
            )),
            process_started: std::time::Instant::now(),
            external_proxy: None,
            dask_gateway: None,
            binder: None,
        }
    }

    /// The single-user command: `singleuser.cmd`, else `jupyterhub-singleuser` from
    /// the configured Python environment, else from `PATH`.
    pub fn command(&self) -> Vec<String> {
        if let Some(cmd) = &self.cmd {
            return cmd.clone();
        }
        match &self.python_env {
            Some(venv) => vec![venv.join("bin/jupyterhub-singleuser").display().to_string()],
            None => vec!["jupyterhub-singleuser".to_string()],
        }
    }

    pub fn server_env(
        &self,
        user: &hubfleet_store::User,
        server_name: &str,
        api_token: &str,
        access_scope: &str,
    ) -> BTreeMap<String, String> {
        lifecycle::server_env(self, user, server_name, api_token, access_scope)
    }

    /// `path` (absolute, as the hub's code writes it: `/hub/home`, `/user/alice/`) under the
    /// base URL: `/jupyter/hub/home`. Paths already under it, and anything that is not an
    /// absolute path (`https://…`, `//…`), are kept.
    pub fn with_base(&self, path: &str) -> String {
        let base = self.base_url.as_str();
        let under = path.starts_with(base) || path == base.trim_end_matches('/');
        if base == "/" || under || !path.starts_with('/') || path.starts_with("//") {
            path.to_owned()
        } else {
            format!("{base}{}", &path[1..])
        }
    }

    /// A server's path prefix: `/user/alice/`, under the base URL.
    pub fn server_prefix(&self, user: &str, server: &str) -> String {
        self.with_base(&urls::server_prefix(user, server))
    }

    /// The hub's API as servers and services reach it: `http://127.0.0.1:8000/hub/api`.
    pub fn api_url(&self) -> String {
        format!("{}{}", self.internal_base_url, self.with_base("/hub/api"))
    }

    /// The proxy route of a server: `/user/alice/`, or `alice.hub.example.org/user/alice/`
    /// with subdomains.
    pub fn route_spec(&self, user: &str, server: &str) -> String {
        let prefix = self.server_prefix(user, server);
        match &self.subdomain_host {
            Some(sub) => format!("{}{prefix}", sub.user_domain(user)),
            None => prefix,
        }
    }

    /// Where people reach a server: `/user/alice/`, or the full URL on the user's own host.
    pub fn server_url(&self, user: &str, server: &str) -> String {
        let prefix = self.server_prefix(user, server);
        match &self.subdomain_host {
            Some(sub) => format!("{}{prefix}", sub.user_origin(user)),
            None => prefix,
        }
    }

    /// A same-site path the hub redirects a browser to, made absolute when it is a user's
    /// server path and users have hosts of their own (`/user/alice/lab` →
    /// `http://alice.localhost:8000/user/alice/lab`); any other path is kept.
    pub fn browser_location(&self, path: &str) -> String {
        let path = self.with_base(path);
        let Some(sub) = &self.subdomain_host else {
            return path;
        };
        let users = self.with_base("/user/");
        let Some(rest) = path.strip_prefix(users.as_str()) else {
            return path;
        };
        let escaped = rest.split(['/', '?', '#']).next().unwrap_or_default();
        match percent_encoding::percent_decode_str(escaped).decode_utf8() {
            Ok(name) if !name.is_empty() => format!("{}{path}", sub.user_origin(&name)),
            _ => path,
        }
    }

    /// The proxy route of a service with a URL: `/services/x/`, or on its own host.
    pub fn service_route_spec(&self, name: &str) -> String {
        let prefix = self.with_base(&format!("/services/{name}/"));
        match &self.subdomain_host {
            Some(sub) => format!("{}{prefix}", sub.service_domain(name)),
            None => prefix,
        }
    }

    /// `scheme://host[:port]` of a service's pages, when services have hosts of their own.
    pub fn service_origin(&self, name: &str) -> String {
        self.subdomain_host
            .as_ref()
            .map(|sub| sub.service_origin(name))
            .unwrap_or_default()
    }

    /// `scheme://host[:port]` of the hub's pages, when users have hosts of their own.
    pub fn hub_origin(&self) -> String {
        self.subdomain_host
            .as_ref()
            .map(|sub| sub.hub_origin())
            .unwrap_or_default()
    }

    /// Names, paths and flags of the hub's own cookies.
    pub(crate) fn cookies(&self) -> identity::HubCookies {
        identity::HubCookies::new(self)
    }
}

/// The hub's settings as a config reload may replace them: readers take the current version
/// (an atomic load, no lock) and keep it for as long as they need a consistent view.
#[derive(Clone)]
pub struct SharedSettings(Arc<arc_swap::ArcSwap<Settings>>);

impl SharedSettings {
    pub fn new(settings: Arc<Settings>) -> Self {
        SharedSettings(Arc::new(arc_swap::ArcSwap::new(settings)))
    }

    /// The settings now.
    pub fn current(&self) -> Arc<Settings> {
        self.0.load_full()
    }

    pub(crate) fn replace(&self, settings: Arc<Settings>) {
        self.0.store(settings);
    }
}

impl From<Arc<Settings>> for SharedSettings {
    fn from(settings: Arc<Settings>) -> Self {
        SharedSettings::new(settings)
    }
}

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// Read with [`AppState::settings`].
    pub shared_settings: SharedSettings,
    /// Read with [`AppState::authenticator`]; a reload may replace it (allow-lists).
    pub(crate) shared_authenticator: Arc<arc_swap::ArcSwap<DynAuthenticator>>,
    /// The authenticator the hub started with: its failed-login counts and native accounts'
    /// settings serve every later one (a reload keeps those settings, which need a restart,
    /// so lockouts survive it).
    pub(crate) started_authenticator: DynAuthenticator,
    pub lifecycle: Lifecycle,
    pub routes: RouteTable,
    /// Read with [`AppState::templates`]; rebuilt when a reload changes the pages' settings.
    pub(crate) shared_templates: Arc<arc_swap::ArcSwap<templates::Templates>>,
    pub services: services::Services,
    /// Signs XSRF tokens (the hub's secret `xsrf`, shared by replicas through the database).
    pub xsrf_key: identity::XsrfKey,
    /// Notified when the hub should exit (`POST /hub/api/shutdown`).
    pub shutdown: Arc<tokio::sync::Notify>,
    /// Whether this replica runs the idle culler and managed services now.
    pub leader: cluster::Leadership,
    /// The built-in culler's task, stopped when a config reload changes the culler.
    pub(crate) culler_task: Arc<std::sync::Mutex<Option<tokio::task::AbortHandle>>>,
    /// Set by `hubfleet serve` (a hub started from files): reloads them.
    pub config_reloader: Arc<std::sync::OnceLock<Arc<reload::ConfigReloader>>>,
    /// The pages' Content-Security-Policy ([`page_csp`]), made again by config reloads.
    pub(crate) page_csp: Arc<arc_swap::ArcSwap<axum::http::HeaderValue>>,
    /// Other replicas' answers to reloads forwarded to them (PostgreSQL), as they come.
    pub reload_answers: tokio::sync::broadcast::Sender<String>,
    /// Builds and launches of repositories, when `binderhub-service` is enabled.
    pub binder: Option<binder::Binder>,
}

impl AppState {
    /// The settings now (a config reload may replace them between two calls).
    pub fn settings(&self) -> Arc<Settings> {
        self.shared_settings.current()
    }

    /// The authenticator now (a config reload may replace it).
    pub fn authenticator(&self) -> DynAuthenticator {
        self.shared_authenticator.load().as_ref().clone()
    }

    pub(crate) fn templates(&self) -> Arc<templates::Templates> {
        self.shared_templates.load_full()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Store(#[from] hubfleet_store::StoreError),
    #[error(transparent)]
    Auth(#[from] hubfleet_auth::AuthError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    SpawnFailed(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// Too many failed logins: 429 with `Retry-After`.
    #[error("{}", password_login::lockout_message(*.0))]
    LockedOut(Duration),
    /// `concurrent_spawn_limit` reached: 429 with `Retry-After` (seconds), upstream's message.
    #[error("Too many users trying to log in right now. Try again in {}.", lifecycle::human_retry(*.0))]
    SpawnThrottled(u64),
    /// `active_server_limit` reached: 429, upstream's message.
    #[error("Active user limit exceeded. Try again in a few minutes.")]
    ActiveServerLimit,
    /// `hubfleet.api_rate_limit`: 429 with `Retry-After`.
    #[error("{}", rate_limit::message(*.0))]
    RateLimited(Duration),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(
        "cannot listen on {addr}: {source}. Is another hub running there? Change `hubfleet.listen`"
    )]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Https(#[from] https::HttpsError),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl HubError {
    pub fn status(&self) -> StatusCode {
        match self {
            HubError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HubError::NotFound(_) => StatusCode::NOT_FOUND,
            HubError::Forbidden(_) => StatusCode::FORBIDDEN,
            HubError::Conflict(_) => StatusCode::CONFLICT,
            HubError::SpawnFailed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            HubError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            HubError::LockedOut(_)
            | HubError::SpawnThrottled(_)
            | HubError::ActiveServerLimit
            | HubError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            _ if self.database_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The database cannot be reached or written for now (see
    /// [`hubfleet_store::StoreError::is_unavailable`]): a 503 the client may retry.
    pub fn database_unavailable(&self) -> bool {
        match self {
            HubError::Store(e) | HubError::Auth(hubfleet_auth::AuthError::Store(e)) => {
                e.is_unavailable()
            }
            _ => false,
        }
    }
}

/// Seconds a client is asked to wait when the database is unavailable.
const DATABASE_RETRY_SECONDS: u32 = 5;

/// API errors are JSON `{"status", "message"}` as JupyterHub writes them.
impl IntoResponse for HubError {
    fn into_response(self) -> Response {
        let status = self.status();
        let unavailable = self.database_unavailable();
        let message = if unavailable {
            format!(
                "The hub's database is unavailable for now; try again in a few seconds ({self})"
            )
        } else {
            self.to_string()
        };
        if unavailable {
            tracing::warn!(error = %self, "request failed: the database is unavailable");
        } else if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut response = api::json_error(status, &message);
        let retry_after = if unavailable {
            Some(u64::from(DATABASE_RETRY_SECONDS))
        } else {
            self.retry_after()
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl HubError {
    /// Seconds for `Retry-After`, for the errors that say when to try again.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            HubError::LockedOut(wait) | HubError::RateLimited(wait) => {
                Some(password_login::retry_seconds(*wait))
            }
            HubError::SpawnThrottled(seconds) => Some(*seconds),
            _ => None,
        }
    }
}

/// A running hub: the proxy on the public address, the hub behind it.
pub struct Hub {
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    https: Option<https::Running>,
}

impl Hub {
    /// Bind, restore running servers and serve. Returns once the hub answers.
    pub async fn start(
        settings: Settings,
        store: Store,
        authenticator: DynAuthenticator,
        spawner: Arc<dyn Spawner>,
    ) -> Result<Hub, HubError> {
        // Bind first: a port that is taken stops the hub before it creates anything, adopts
        // servers or starts services.
        let listener = bind(settings.listen)?;
        Hub::start_on(listener, settings, store, authenticator, spawner).await
    }

    /// [`Hub::start`] on a listener bound beforehand (see [`bind`]); connections wait in its
    /// backlog until the hub serves.
    pub async fn start_on(
        listener: std::net::TcpListener,
        mut settings: Settings,
        store: Store,
        authenticator: DynAuthenticator,
        spawner: Arc<dyn Spawner>,
    ) -> Result<Hub, HubError> {
        let listen_error = |source| HubError::Listen {
            addr: settings.listen,
            source,
        };
        listener.set_nonblocking(true).map_err(listen_error)?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(listen_error)?;
        let addr = listener.local_addr().map_err(listen_error)?;
        for dir in [settings.data_dir.clone(), settings.data_dir.join("logs")] {
            std::fs::create_dir_all(&dir)
                .map_err(|source| HubError::DataDir { path: dir, source })?;
        }
        let (shutdown, mut shutdown_rx) = tokio::sync::watch::channel(false);
        // The certificate comes before the rest: without one the hub does not start.
        let https = match settings.https.take() {
            Some(options) => {
                let users_domain = settings.subdomain_host.as_ref().map(|s| s.domain());
                Some(
                    https::start(
                        options,
                        &settings.data_dir,
                        users_domain,
                        shutdown_rx.clone(),
                    )
                    .await?,
                )
            }
            None => None,
        };
        match &settings.subdomain_host {
            Some(sub) => tracing::info!(
                hub = %sub.hub_origin(),
                users = %format!("<user>.{}", sub.domain()),
                "each user's servers are on a host of their own"
            ),
            None => tracing::warn!(
                "users' servers share the hub's origin: a page served by one user's server can act \
                 as anyone who opens it, admins included. Set hub.config.JupyterHub.subdomain_host \
                 (e.g. http://localhost:{} on this machine, or https://hub.example.org with a \
                 wildcard DNS record and certificate) to give each user a host of their own",
                settings.listen.port()
            ),
        }
        let settings = Arc::new(settings);
        let routes = RouteTable::new();
        routes.add(
            "/",
            HUB_TARGET,
            serde_json::Map::from_iter([
                ("hub".into(), true.into()),
                ("jupyterhub".into(), true.into()),
            ]),
        );
        let shared_settings = SharedSettings::new(settings.clone());
        let lifecycle = Lifecycle::new(
            store.clone(),
            spawner,
            routes.clone(),
            shared_settings.clone(),
        );
        let leader = cluster::Leadership::elect(&store, lifecycle.replica()).await;
        let pages_csp = page_csp(&settings, &authenticator);
        let state = AppState {
            store: store.clone(),
            shared_settings,
            shared_authenticator: Arc::new(arc_swap::ArcSwap::from_pointee(authenticator.clone())),
            started_authenticator: authenticator,
            lifecycle: lifecycle.clone(),
            routes: routes.clone(),
            shared_templates: Arc::new(arc_swap::ArcSwap::from_pointee(
                templates::Templates::load(&settings.pages, &settings.base_url)?,
            )),
            services: services::Services::default(),
            xsrf_key: cookie_secret::xsrf_key(&settings, &store).await?,
            shutdown: Arc::new(tokio::sync::Notify::new()),
            leader,
            culler_task: Arc::default(),
            config_reloader: Arc::default(),
            reload_answers: tokio::sync::broadcast::channel(64).0,
            page_csp: Arc::new(arc_swap::ArcSwap::from_pointee(pages_csp)),
            binder: settings.binder.clone().map(binder::Binder::new),
        };
        ensure_admins(&state).await?;
        config_groups::load(&state).await?;
        // Builds this replica ran when it stopped will never finish.
        env_build::fail_stale(&store, Some(lifecycle.replica()), &settings.data_dir).await?;
        // Servers keep running while the hub is down: find them again before serving.
        let (adopted, cleaned) = lifecycle.restore().await?;
        if adopted + cleaned > 0 {
            tracing::info!(adopted, cleaned, "checked servers from the previous run");
        }
        for leftover in lifecycle.clean_up_leftovers().await? {
            tracing::info!(%leftover, "removed what a server that is gone left behind");
        }
        let stale = store.delete_stale_oauth_clients().await?;
        if stale > 0 {
            tracing::info!(
                stale,
                "removed OAuth clients of servers that are not running"
            );
        }
        start_services(&state).await?;
        if let Some(gateway) = state.settings().dask_gateway.clone() {
            dask::start(&state, &gateway).await?;
        }
        load_roles(&state).await?;
        if let Some(cull) = state.settings().culler.clone() {
            culler::start(&state, cull).await?;
        }
        if state.binder.is_some() {
            binder::start_reaper(state.clone());
        }
        let app = router(state.clone());
        // With subdomains the proxy routes on host and path (`alice.localhost/user/alice/`);
        // the hub's own route `/` still catches every host. With HTTPS, users' servers still
        // reach the API at `http://<listen>/hub/api` from this machine.
        let proxy_config = hubfleet_proxy::ServeConfig {
            host_routing: state.settings().subdomain_host.is_some(),
            tls: https.as_ref().map(|h| h.tls.clone()),
            plain_http_from_this_machine: https.is_some(),
            ..Default::default()
        };
        // With a separate proxy, users' routes go there; this listener serves only the hub.
        let served = match &state.settings().external_proxy {
            Some(proxy) => {
                external_proxy::start(
                    proxy.clone(),
                    routes.clone(),
                    state.settings().internal_base_url.clone(),
                );
                let hub_only = RouteTable::new();
                if let Some(hub) = routes.get("/") {
                    hub_only.add("/", HUB_TARGET, hub.data);
                }
                hub_only
            }
            None => routes.clone(),
        };
        let server = tokio::spawn(hubfleet_proxy::serve_with(
            listener,
            served,
            hubfleet_proxy::ProxyOptions {
                hub: Some(app),
                hub_base_url: state.settings().base_url.clone(),
            },
            proxy_config,
            async move {
                let _ = shutdown_rx.wait_for(|stop| *stop).await;
            },
        ));
        spawn_background(state.clone());
        tokio::spawn(metrics::watch_event_loop(state.clone()));
        state
            .settings()
            .metrics
            .startup(state.settings().process_started.elapsed().as_secs_f64());
        cluster::follow_route_changes(state.clone());
        Ok(Hub {
            addr,
            state,
            shutdown,
            server,
            https,
        })
    }

    /// SIGHUP: read the certificate files again (`proxy.https.type: secret`).
    pub fn reload_certificate(&self) {
        if let Some(https) = &self.https {
            https.reload();
        }
    }

    /// Stop serving. Running servers are left running, to be re-adopted.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        let _ = self
            .state
            .store
            .say_gone(self.state.lifecycle.replica())
            .await;
        // Another replica may lead at once (nothing if this one did not).
        let _ = self
            .state
            .store
            .release_hub_lease(
                hubfleet_store::cluster::LEADER,
                self.state.lifecycle.replica(),
            )
            .await;
    }

    /// Reload the config from `paths` on demand (SIGHUP, the API); `current` is what the hub
    /// was started with, `build` and `build_authenticator` make settings and the authenticator
    /// from a config as at start.
    pub fn enable_config_reload(
        &self,
        paths: Vec<PathBuf>,
        current: hubfleet_config::HubConfig,
        build: reload::SettingsBuilder,
        build_authenticator: reload::AuthenticatorBuilder,
    ) -> Arc<reload::ConfigReloader> {
        reload::write_snapshot(&self.state.settings().data_dir, &current);
        let reloader = Arc::new(reload::ConfigReloader::new(
            paths,
            current,
            build,
            build_authenticator,
        ));
        let _ = self.state.config_reloader.set(reloader.clone());
        reloader
    }

    /// Reload the config files now (without reloader: nothing to do).
    pub async fn reload_config(&self) -> Option<reload::ReloadSummary> {
        let reloader = self.state.config_reloader.get()?.clone();
        Some(reloader.reload(&self.state).await)
    }

    /// Resolves when the API asked the hub to shut down.
    pub fn shutdown_requested(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let notify = self.state.shutdown.clone();
        async move { notify.notified().await }
    }
}

/// Bind the hub's public address (before anything else happens at start).
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, HubError> {
    std::net::TcpListener::bind(addr).map_err(|source| HubError::Listen { addr, source })
}

/// Whether the configured pages can be built: template overrides are readable and parse.
pub fn check_pages(pages: &PageSettings) -> Result<(), HubError> {
    templates::Templates::load(pages, "/").map(|_| ())
}

/// Users in `admin_users` exist and are admins.
async fn ensure_admins(state: &AppState) -> Result<(), HubError> {
    for name in &state.settings().admin_users {
        match state.store.user_by_name(name).await? {
            Some(user) if !user.admin => state.store.set_admin(user.id, true).await?,
            Some(_) => {}
            None => {
                state.store.create_user(name, true).await?;
            }
        }
    }
    Ok(())
}

/// Register configured services (and forget those removed from the config).
async fn start_services(state: &AppState) -> Result<(), HubError> {
    let settings = state.settings();
    let mut configured: Vec<&str> = settings.services.iter().map(|s| s.name.as_str()).collect();
    // The hub's own services are registered by what runs them; deleting their rows here would
    // end their tokens, also for the copy another replica runs.
    if culler::runs_as_service(&settings) {
        configured.push(culler::SERVICE_NAME);
    }
    if let Some(gateway) = &settings.dask_gateway {
        configured.push(&gateway.service_name);
    }
    for stale in state.store.list_services().await? {
        if stale.from_config && !configured.contains(&stale.name.as_str()) {
            state.services.remove(state, &stale).await?;
        }
    }
    for definition in &settings.services {
        state.services.add(state, definition.clone()).await?;
    }
    Ok(())
}

/// Store `hub.loadRoles`, checking their scopes; roles removed from the config go.
async fn load_roles(state: &AppState) -> Result<(), HubError> {
    let mut names = Vec::new();
    for role in &state.settings().roles {
        if role.name == "admin" {
            return Err(HubError::Config(
                "the `admin` role cannot be redefined in hub.loadRoles".into(),
            ));
        }
        hubfleet_rbac::validate_role_name(&role.name)
            .map_err(|e| HubError::Config(format!("hub.loadRoles.{}: {e}", role.name)))?;
        hubfleet_rbac::check_scopes_exist(&role.scopes, &hubfleet_rbac::CustomScopes::default())
            .map_err(|e| HubError::Config(format!("hub.loadRoles.{}.scopes: {e}", role.name)))?;
        state
            .store
            .put_role(
                &hubfleet_store::StoredRole {
                    name: role.name.clone(),
                    description: role.description.clone(),
                    scopes: role.scopes.clone(),
                },
                &hubfleet_store::RoleMembers {
                    users: role.users.clone(),
                    groups: role.groups.clone(),
                    services: role.services.clone(),
                },
            )
            .await?;
        names.push(role.name.clone());
    }
    // The culler service's role is the hub's own (culler::start puts it), not loadRoles'.
    if culler::runs_as_service(&state.settings()) {
        names.push(culler::SERVICE_NAME.to_owned());
    }
    state.store.delete_roles_except(&names).await?;
    Ok(())
}

/// Periodic work: notice servers that died, import proxy activity, purge expired secrets.
fn spawn_background(state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        let mut rounds: u64 = 0;
        loop {
            tick.tick().await;
            rounds += 1;
            if let Err(e) = state.lifecycle.poll_all().await {
                tracing::warn!(error = %e, "polling servers");
            }
            // Servers stopped by another process (`hubfleet users remove --force`, a replica)
            // lose their routes here.
            if let Err(e) = state.lifecycle.check_routes().await {
                tracing::warn!(error = %e, "checking routes");
            }
            // Services added or removed through another replica.
            if state.store.backend() == hubfleet_store::Backend::Postgres {
                if let Err(e) = state.services.check_routes(&state).await {
                    tracing::warn!(error = %e, "checking services' routes");
                }
            }
            if rounds.is_multiple_of(6) {
                if let Err(e) = state.lifecycle.import_proxy_activity().await {
                    tracing::warn!(error = %e, "importing proxy activity");
                }
            }
            if rounds.is_multiple_of(360) {
                if let Err(e) = state.store.purge_expired().await {
                    tracing::warn!(error = %e, "purging expired tokens");
                }
                if let Err(e) = state.store.purge_expired_share_codes().await {
                    tracing::warn!(error = %e, "purging expired share codes");
                }
            }
        }
    });
}

fn router(state: AppState) -> axum::Router {
    use axum::extract::State;
    use axum::routing::{get, post};
    let app = axum::Router::new()
        .merge(api::routes())
        .merge(oauth::routes())
        .merge(pages::routes())
        .merge(login::routes())
        .merge(native_pages::routes())
        .merge(spawn_page::routes())
        .merge(admin::routes())
        .merge(binder::routes())
        .merge(static_files::routes())
        .route("/hub/health", get(|| async { StatusCode::OK }))
        .route("/hub/api/health", get(|| async { StatusCode::OK }))
        .route("/hub/metrics", get(api::hub::metrics))
        .route(
            "/hub/security/csp-report",
            post(|State(state): State<AppState>| async move {
                state.settings().metrics.csp_report();
                StatusCode::OK
            }),
        )
        .route_layer(axum::middleware::from_fn(metrics::name_handler))
        .fallback(pages::fallback)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            pages::keep_users_hosts_for_users,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            pages::redirects_under_base_url,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.page_csp.clone(),
            common_headers,
        ))
        .layer(axum::middleware::from_fn(api_errors_as_json))
        .layer(axum::extract::DefaultBodyLimit::max(1024 * 1024))
        // Outermost: every request the hub answers is counted, routed or not.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track_requests,
        ))
        .with_state(state.clone());
    // Under `hub.baseUrl`, handlers see paths without it (`/hub/home`); what they write is put
    // back under it (redirects by `redirects_under_base_url`, pages by the `base_url` global).
    match state.settings().base_url.trim_end_matches('/') {
        "" => app,
        base => {
            let home = state.settings().with_base("/hub/");
            axum::Router::new()
                .nest(base, app)
                .fallback(move |uri: axum::http::Uri| {
                    let home = home.clone();
                    async move {
                        if uri.path() == "/" {
                            pages::found(&home)
                        } else {
                            (
                                StatusCode::NOT_FOUND,
                                format!("Not found: this hub is at {home}\n"),
                            )
                                .into_response()
                        }
                    }
                })
        }
    }
}

/// The Content-Security-Policy of the hub's pages: images from the hub and from the origins of
/// the configured logos (the branding's and the login page's), forms to the hub and, with
/// subdomains, users' hosts. Made at start and again at each config reload.
pub(crate) fn page_csp(
    settings: &Settings,
    authenticator: &DynAuthenticator,
) -> axum::http::HeaderValue {
    let login_logo = authenticator.options().logo_url.clone();
    let image_origins = settings
        .pages
        .image_origins(login_logo.as_deref().as_slice());
    // With subdomains, forms (login, spawn, OAuth confirmation) may end on users' hosts.
    let form_targets: Vec<String> = settings
        .subdomain_host
        .iter()
        .map(|sub| sub.any_user_origin())
        .collect();
    axum::http::HeaderValue::from_str(&static_files::page_csp(
        &image_origins,
        &form_targets,
        &settings.with_base("/hub/security/csp-report"),
    ))
    .unwrap_or(axum::http::HeaderValue::from_static(
        "default-src 'self'; frame-ancestors 'none'",
    ))
}

/// Headers every hub response carries (protocol §1, §3.3).
async fn common_headers(
    axum::extract::State(page_csp): axum::extract::State<
        Arc<arc_swap::ArcSwap<axum::http::HeaderValue>>,
    >,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let is_api = request.uri().path().starts_with("/hub/api");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        "x-jupyterhub-version",
        axum::http::HeaderValue::from_static(JUPYTERHUB_VERSION),
    );
    // Pages under /hub/api/ (the OAuth confirmation) load the hub's CSS like any page.
    let is_page = headers
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    let csp = if is_api && !is_page {
        axum::http::HeaderValue::from_static("frame-ancestors 'none'; default-src 'none'")
    } else {
        page_csp.load().as_ref().clone()
    };
    headers.entry("content-security-policy").or_insert(csp);
    response
}

/// Errors the framework produces itself (413 body too large, 405, 415, 422 from
/// extractors) become JupyterHub's JSON `{"status", "message"}` on API paths;
/// API preflight requests get their 200.
async fn api_errors_as_json(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let is_api = request.uri().path().starts_with("/hub/api");
    if is_api && request.method() == axum::http::Method::OPTIONS {
        return (
            StatusCode::OK,
            [(
                axum::http::header::ACCESS_CONTROL_ALLOW_HEADERS,
                "accept, content-type, authorization",
            )],
        )
            .into_response();
    }
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/event-stream"));
    if !is_api || !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "Request body too large (the limit is 1 MiB)".to_string(),
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed".to_string(),
        _ if text.trim().is_empty() => status.canonical_reason().unwrap_or("Error").to_string(),
        _ => text.trim().to_string(),
    };
    api::json_error(status, &message)
}

/// Resolve `path` against `base` unless it is absolute.
pub fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}
