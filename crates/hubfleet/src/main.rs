//! The `hubfleet` command: run a hub (`serve`, `demo`) and manage its users.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use hubfleet_auth::DynAuthenticator;
use hubfleet_config::{CullerKind, HubConfig, SpawnerKind};
use hubfleet_hub::reload::ReloadListener;
use hubfleet_hub::{Hub, Settings};
use hubfleet_kube_spawner::{KubeOptions, KubernetesSpawner};
use hubfleet_spawn::{LocalOptions, LocalProcessSpawner, Spawner};
use hubfleet_store::Store;

mod backup_cmd;
mod binder_settings;
mod check_cmd;
mod config_cmd;
mod config_watch;
mod env_cmd;
mod export_cmd;
mod fleet_cmd;
mod fleet_deploy;
mod fleet_local;
mod fleet_supervise;
mod hub_data;
mod migrate_cmd;
mod preflight;
mod private_files;
mod proxy_cmd;
mod render_cmd;
mod render_dask;
mod start_checks;
mod users_cmd;

/// mimalloc rather than glibc's malloc. A burst (1,000 spawns at once, their progress streams
/// and proxied requests) spreads over glibc's per-thread arenas, which keep the freed memory:
/// measured with 1,000 running servers, glibc held 115 MB for 15 MB in use (RSS 117-136 MiB),
/// and even `malloc_trim` left 79 MiB. mimalloc is built without its `MADV_HUGEPAGE` advice
/// (feature `no_thp`): with it, where THP is `madvise`, its arenas were backed by 2 MiB pages
/// and the same hub held 36 MiB idle and 108 MiB with 1,000 servers (27 and 68 without).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay`, numbered as in the `mi_option_e` of the `mimalloc.h` (v3) that
/// `libmimalloc-sys` builds (the numbers stay put across versions: retired options keep theirs).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc purges freed pages 1 s after they empty by default, and only when the freeing
/// thread allocates again, so a hub that goes quiet after a burst keeps them: purged at once
/// instead. `MIMALLOC_PURGE_DELAY` still wins when set.
#[allow(unsafe_code)]
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: `mi_option_set` stores an integer in mimalloc's option table, which it
        // reads (atomically) on each purge; any value is valid.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
}

#[derive(Parser)]
#[command(
    name = "hubfleet",
    version,
    about = "A JupyterHub-compatible hub, proxy and fleet tool"
)]
struct Cli {
    /// Log format: human-readable text, or JSON lines for machines.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a hub from config files (Zero to JupyterHub values format).
    Serve {
        /// The hub's config file. Give it several times to layer files as Helm does: mappings
        /// merge, lists are replaced, later files win, `null` deletes a key.
        #[arg(long, short, required = true)]
        config: Vec<PathBuf>,
        /// Do not watch the config files (where file events do not arrive, e.g. some network
        /// file systems): reload with SIGHUP or `POST /hub/api/config/reload` instead.
        #[arg(long, env = "HUBFLEET_NO_WATCH")]
        no_watch: bool,
    },
    /// Check config files and list every problem: exit 0 when clean (or with warnings only),
    /// 1 with errors, 2 with warnings only and `--strict`.
    Check {
        /// The hub's config file; several are layered as with `serve`.
        #[arg(long, short, required = true)]
        config: Vec<PathBuf>,
        /// Warnings fail the check too (exit 2).
        #[arg(long)]
        strict: bool,
    },
    /// Run a working hub on this machine, creating what it needs in ./hubfleet-data.
    Demo {
        #[arg(long, default_value = "hubfleet-data")]
        data_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: SocketAddr,
        /// A Python environment that has jupyterhub and jupyterlab; made in the data dir if not given.
        #[arg(long, env = "HUBFLEET_PYTHON_ENV")]
        python_env: Option<PathBuf>,
    },
    /// Run the proxy alone, as a drop-in for configurable-http-proxy.
    #[command(version)]
    Proxy(proxy_cmd::ProxyArgs),
    /// Build local environments that profiles can use (`hubfleet.local.environments`).
    Env {
        /// The hub's config file (for the data directory).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The demo data dir, when there is no config file.
        #[arg(long, default_value = "hubfleet-data")]
        data_dir: PathBuf,
        #[command(subcommand)]
        action: env_cmd::EnvAction,
    },
    /// Copy the hub's database consistently while it runs (SQLite or PostgreSQL).
    Backup(backup_cmd::BackupArgs),
    /// Render what a hub would create on Kubernetes, from z2jh values (no cluster needed).
    Render {
        #[command(subcommand)]
        what: render_cmd::RenderWhat,
    },
    /// Write a hub's values for upstream Zero to JupyterHub (values.yaml, secrets.values.yaml,
    /// README.md) into a directory: docs/leaving.md.
    Export(export_cmd::ExportArgs),
    /// Many hubs from one repository laid out as 2i2c's infrastructure: validate, render, secrets, plan, deploy, health, status, stop.
    Fleet(fleet_cmd::FleetArgs),
    /// The hub's config: `diff` shows what a reload would change; `dump` writes the profiles
    /// and local environments from the database (with the admin panel's changes) back as values.
    Config {
        #[command(subcommand)]
        action: config_cmd::ConfigAction,
    },
    /// Manage the hub's users: list, add, remove, admin, approve.
    Users {
        /// The hub's config file (for the database location); before or after the action.
        /// Several are layered as with `serve`.
        #[arg(long, short, global = true)]
        config: Vec<PathBuf>,
        /// The demo data dir, when there is no config file.
        #[arg(long, default_value = "hubfleet-data", global = true)]
        data_dir: PathBuf,
        #[command(subcommand)]
        action: users_cmd::UsersAction,
    },
    /// Bring in the users, groups, roles and homes that `hubfleet export` wrote (idempotent).
    Import(migrate_cmd::ImportArgs),
    /// Bring in the users, groups and roles of another hub: `migrate from-jupyterhub`.
    Migrate {
        #[command(subcommand)]
        from: migrate_cmd::MigrateFrom,
    },
}

fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // Colours only on a terminal: log files and journald get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// When this process began, for `jupyterhub_hub_startup_duration_seconds`.
static PROCESS_STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

fn main() -> std::process::ExitCode {
    PROCESS_STARTED.get_or_init(std::time::Instant::now);
    tune_allocator();
    // systemd's `AmbientCapabilities=CAP_NET_BIND_SERVICE` lets the hub bind ports 443 and 80;
    // the ambient set would also pass it on to every program the hub starts (users' servers).
    // Cleared here, before any thread exists (capabilities are per thread): the hub keeps the
    // capability in its own effective set, its children do not get it.
    let ambient_cleared = caps::clear(None, caps::CapSet::Ambient);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(ambient_cleared))
}

async fn run(ambient_cleared: Result<(), caps::errors::CapsError>) -> std::process::ExitCode {
    // The matches too: `render pod` reads the order of `--values` and `--unwrap`.
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Command::Render { what } = cli.command {
        return render_cmd::run(what, Some(&matches));
    }
    if let Command::Fleet(args) = cli.command {
        return fleet_cmd::run(args);
    }
    let default_filter = match &cli.command {
        Command::Proxy(args) => match proxy_cmd::log_filter(&args.flags.log_level) {
            Ok(filter) => filter,
            Err(e) => {
                eprintln!("error: {e:#}");
                return std::process::ExitCode::from(2);
            }
        },
        _ => "info,sqlx=warn,hyper=warn",
    };
    init_logging(cli.log_format, default_filter);
    if let Err(e) = ambient_cleared {
        tracing::warn!(error = %e, "cannot clear the ambient capabilities: programs the hub starts may inherit them");
    }
    let result = match cli.command {
        Command::Check { config, strict } => return check_cmd::run(&config, strict),
        Command::Config { action } => return config_cmd::run(action).await,
        Command::Serve { config, no_watch } => serve(&config, !no_watch).await,
        Command::Demo {
            data_dir,
            listen,
            python_env,
        } => demo(&data_dir, listen, python_env).await,
        Command::Proxy(args) => proxy_cmd::run(args).await,
        Command::Backup(args) => backup_cmd::run(args).await,
        Command::Env {
            config,
            data_dir,
            action,
        } => config
            .as_deref()
            .map(load_config)
            .transpose()
            .and_then(|c| env_cmd::run(c.as_ref(), &data_dir, action)),
        Command::Users {
            config,
            data_dir,
            action,
        } => users_cmd::run(&config, &data_dir, action).await,
        Command::Import(args) => migrate_cmd::import(args).await,
        Command::Migrate { from } => migrate_cmd::migrate(from).await,
        Command::Render { what } => return render_cmd::run(what, None),
        Command::Fleet(args) => return fleet_cmd::run(args),
        Command::Export(args) => export_cmd::run(&args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn load_config(path: &Path) -> Result<HubConfig> {
    // The error already names file, line and key; add nothing that hides it.
    HubConfig::from_path(path).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn open_store(config: &HubConfig) -> Result<Store> {
    private_files::secure_data_dir(config)?;
    Ok(Store::connect(&config.database_url()).await?)
}

fn authenticator(config: &HubConfig, store: &Store) -> Result<DynAuthenticator> {
    Ok(hubfleet_auth::from_config(config, store)?)
}

fn settings(config: &HubConfig) -> Result<Settings> {
    let mut settings = Settings::new(config.hubfleet.listen, config.data_dir());
    if let Some((origin, _)) = hub_connect_origin(config) {
        settings.internal_base_url = origin;
    }
    settings.external_proxy = external_proxy(config)?;
    settings.cmd = config.singleuser.cmd.clone();
    settings.python_env = config.python_env();
    settings.default_url = config.singleuser.default_url.clone();
    settings.extra_env = config.singleuser.extra_env.clone();
    settings.start_timeout = config.singleuser.start_timeout;
    settings.spawn_options = env_cmd::spawn_options(config);
    settings.environments = hubfleet_hub::environments::EnvironmentSettings {
        allow_ui_overrides: config.hubfleet.environments.allow_ui_overrides,
        gpus: config.hubfleet.local.gpus.clone(),
        python: config
            .hubfleet
            .environments
            .python
            .clone()
            .unwrap_or_else(|| "python3".into()),
        build_packages: config
            .hubfleet
            .environments
            .build_packages
            .clone()
            .unwrap_or_else(|| {
                hubfleet_hub::env_build::BASE_PACKAGES
                    .iter()
                    .map(|p| p.to_string())
                    .collect()
            }),
    };
    settings.binder = binder_settings::binder_settings(config)?;
    settings.pages = hubfleet_hub::PageSettings {
        template_paths: config
            .hub
            .template_paths
            .iter()
            .map(|p| config.resolve_path(p))
            .collect(),
        template_vars: config.hub.template_vars.clone(),
        homepage: config.custom.homepage.template_vars.clone(),
    };
    settings.subdomain_host = config
        .hub
        .config
        .jupyterhub
        .subdomain_host
        .as_deref()
        .map(hubfleet_hub::urls::SubdomainHost::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("hub.config.JupyterHub.subdomain_host: {e}"))?;
    settings.base_url = config.hub.base_url.as_str().to_owned();
    settings.secure_cookies = config.reached_over_https();
    settings.https = https_options(config);
    // Logins normalise names to lower case, as JupyterHub does.
    settings.admin_users = config
        .auth_settings()
        .admin_users
        .iter()
        .map(|n| n.trim().to_lowercase())
        .collect();
    settings.cookie_secret = config.hub.cookie_secret.clone();
    settings.redirect_to_server = config.redirect_to_server();
    settings.shutdown_on_logout = config.shutdown_on_logout();
    settings.authenticate_prometheus = config.authenticate_prometheus();
    settings.kept_env = config.hub_env_kept();
    settings.groups = config
        .hub
        .config
        .jupyterhub
        .load_groups
        .iter()
        .map(|(name, group)| hubfleet_hub::GroupDefinition {
            name: name.clone(),
            users: group.users.clone(),
            properties: group.properties.clone(),
        })
        .collect();
    settings.allow_named_servers = config.allow_named_servers();
    settings.named_server_limit_per_user = i64::from(config.named_server_limit_per_user());
    settings.concurrent_spawn_limit = config.concurrent_spawn_limit();
    settings.active_server_limit = config.active_server_limit();
    let rate = &config.hubfleet.api_rate_limit;
    settings.api_rate_limit = Arc::new(hubfleet_hub::rate_limit::ApiRateLimiter::new(
        rate.per_second,
        rate.burst,
    ));
    if let Some(started) = PROCESS_STARTED.get() {
        settings.process_started = *started;
    }
    settings.services = config
        .hub
        .services
        .iter()
        .map(
            |(name, service)| hubfleet_hub::services::ServiceDefinition {
                name: name.clone(),
                admin: service.admin,
                url: service.url.clone().unwrap_or_default(),
                api_token: service.api_token.clone(),
                info: serde_json::Value::Object(service.info.clone()),
                display: service.display,
                command: service.command.clone().unwrap_or_default(),
                environment: service.environment.clone(),
                from_config: true,
            },
        )
        .collect();
    settings.roles = config
        .hub
        .load_roles
        .iter()
        .map(|(name, role)| hubfleet_hub::RoleDefinition {
            name: name.clone(),
            description: role.description.clone().unwrap_or_default(),
            scopes: role.scopes.clone(),
            users: role.users.clone(),
            groups: role.groups.clone(),
            services: role.services.clone(),
        })
        .collect();
    // The Dask hub flavour (`dask-gateway:`).
    if let Some(gateway) = hubfleet_hub::dask::Gateway::from_config(config)? {
        gateway.grant_access(&mut settings.roles);
        // The settings are new here, their metrics not shared yet (a reload keeps the running
        // hub's, and `dask-gateway` needs a restart).
        if let Some(metrics) = std::sync::Arc::get_mut(&mut settings.metrics) {
            metrics.with_dask_clusters();
        }
        settings.dask_gateway = Some(std::sync::Arc::new(gateway));
    }
    if config.cull.enabled {
        let python = config.python_env().map(|venv| venv.join("bin/python"));
        let has_idle_culler = python.as_ref().is_some_and(|python| {
            std::process::Command::new(python)
                .args(["-c", "import jupyterhub_idle_culler"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        let idle_culler_python = match config.hubfleet.culler {
            CullerKind::Builtin => None,
            CullerKind::IdleCuller | CullerKind::Auto if has_idle_culler => python,
            CullerKind::IdleCuller => {
                tracing::warn!("hubfleet.culler is idle-culler but jupyterhub-idle-culler is not installed in hubfleet.local.python_env: using the built-in culler");
                None
            }
            CullerKind::Auto => None,
        };
        settings.culler = Some(hubfleet_hub::culler::CullSettings {
            timeout: config.cull.timeout,
            every: config.cull.every,
            max_age: config.cull.max_age,
            users: config.cull.users,
            admin_users: config.cull.admin_users,
            remove_named_servers: config.cull.remove_named_servers,
            concurrency: config.cull.concurrency,
            idle_culler_python,
        });
    }
    Ok(settings)
}

/// `hub.config.ConfigurableHTTPProxy.api_url`: the separate proxy the hub drives, with its token
/// (`auth_token`, else `CONFIGPROXY_AUTH_TOKEN` in the hub's environment, as upstream).
fn external_proxy(
    config: &HubConfig,
) -> Result<Option<hubfleet_hub::external_proxy::ExternalProxy>> {
    let chp = &config.hub.config.configurable_http_proxy;
    let Some(api_url) = &chp.api_url else {
        return Ok(None);
    };
    let token = chp
        .auth_token
        .clone()
        .or_else(|| std::env::var("CONFIGPROXY_AUTH_TOKEN").ok())
        .filter(|t| !t.is_empty());
    let Some(auth_token) = token else {
        bail!(
            "hub.config.ConfigurableHTTPProxy.api_url is set but the proxy's API token is not: \
             set hub.config.ConfigurableHTTPProxy.auth_token, or CONFIGPROXY_AUTH_TOKEN in the \
             hub's environment (the same token the proxy was started with)"
        );
    };
    if matches!(
        config.https_mode(),
        hubfleet_config::HttpsMode::Terminate(_)
    ) {
        bail!(
            "proxy.https with hub.config.ConfigurableHTTPProxy.api_url: with a separate proxy, \
             TLS ends at that proxy (`hubfleet proxy --ssl-cert … --ssl-key …`), not at the hub"
        );
    }
    Ok(Some(hubfleet_hub::external_proxy::ExternalProxy {
        api_url: api_url.clone(),
        auth_token,
    }))
}

/// Where users' servers and services reach the hub's API, when not at the address it listens
/// on: the origin (`scheme://host[:port]`, the path is the hub's own) of, first to be set,
/// `hub.config.JupyterHub.hub_connect_url`, `hubfleet.kubernetes.hub_connect_url` (with the
/// kubernetes spawner), and `hubfleet.public_url` when the database is PostgreSQL (replicas
/// behind a load balancer). With the key it came from.
fn hub_connect_origin(config: &HubConfig) -> Option<(String, &'static str)> {
    let kubernetes = (config.hubfleet.spawner == SpawnerKind::Kubernetes)
        .then_some(config.hubfleet.kubernetes.hub_connect_url.as_deref())
        .flatten();
    let replicated = config.hub.db.kind == hubfleet_config::DbType::Postgres;
    let public = replicated
        .then_some(config.hubfleet.public_url.as_deref())
        .flatten();
    [
        (
            config.hub.config.jupyterhub.hub_connect_url.as_deref(),
            "hub.config.JupyterHub.hub_connect_url",
        ),
        (kubernetes, "hubfleet.kubernetes.hub_connect_url"),
        (public, "hubfleet.public_url"),
    ]
    .into_iter()
    .find_map(|(url, key)| Some((url_origin(url?)?, key)))
}

/// `scheme://host[:port]` of an absolute URL (checked when the config was loaded).
fn url_origin(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    match parsed.origin() {
        origin @ url::Origin::Tuple(..) => Some(origin.ascii_serialization()),
        url::Origin::Opaque(_) => None,
    }
}

/// `proxy.https` as the hub serves it, when the hub ends TLS itself.
fn https_options(config: &HubConfig) -> Option<hubfleet_hub::https::HttpsOptions> {
    let hubfleet_config::HttpsMode::Terminate(https) = config.https_mode() else {
        return None;
    };
    // The URL users open, when the config says it: its host and (https) port.
    let public = [
        config.hub.config.jupyterhub.subdomain_host.as_deref(),
        config.hubfleet.public_url.as_deref(),
    ]
    .into_iter()
    .flatten()
    .find_map(|u| url::Url::parse(u).ok());
    Some(hubfleet_hub::https::HttpsOptions {
        certificate: https.certificate,
        hosts: https.hosts,
        redirect_listen: https.redirect_listen,
        public_port: public
            .as_ref()
            .and_then(url::Url::port_or_known_default)
            .unwrap_or(config.hubfleet.listen.port()),
        hub_host: public.and_then(|u| u.host_str().map(str::to_ascii_lowercase)),
        redirect_listener: None,
    })
}

/// The hub, and what must follow its config reloads (the Kubernetes spawner's values).
async fn start_hub(config: &HubConfig) -> Result<(Hub, Vec<ReloadListener>)> {
    preflight::check(config)?;
    let mut settings = settings(config)?;
    match hub_connect_origin(config) {
        Some((url, key)) => {
            tracing::info!(%url, from = key, "users' servers and services reach the hub's API here")
        }
        None if config.hub.db.kind == hubfleet_config::DbType::Postgres => tracing::warn!(
            "users' servers reach the hub's API at this replica's own address {}: with several \
             replicas, set hub.config.JupyterHub.hub_connect_url (or hubfleet.public_url) to the \
             load balancer's, so that servers keep reaching the hub when this replica stops",
            settings.internal_base_url
        ),
        None => {}
    }
    // The ports are bound here and kept; nothing is created before these checks pass.
    let listener = start_checks::check(config, &mut settings)?;
    let store = open_store(config).await?;
    let store = hubfleet_auth::with_auth_state_keys(
        store,
        config.auth_settings().enable_auth_state,
        config.hub_env(hubfleet_store::CRYPT_KEY_ENV).as_deref(),
    )
    .await?;
    hubfleet_hub::environments::sync_environments_from_config(&store, config).await?;
    let auth = authenticator(config, &store)?;
    let mut listeners: Vec<ReloadListener> = Vec::new();
    let spawner: Arc<dyn Spawner> = match config.hubfleet.spawner {
        SpawnerKind::Local => {
            let spawner = local_spawner(config);
            if let Some(problem) = config
                .singleuser
                .storage
                .capacity
                .and_then(|capacity| spawner.quota_problem(capacity))
            {
                tracing::warn!("{problem}; servers start without it");
            }
            Arc::new(spawner)
        }
        SpawnerKind::Kubernetes => {
            let spawner = Arc::new(kubernetes_spawner(config).await?);
            let follows = spawner.clone();
            // A reload's `singleuser.image`, `cpu`, `memory`, … reach the next pod.
            listeners.push(Arc::new(move |config: &HubConfig| {
                match kubernetes_values(config) {
                    Ok(values) => follows.set_values(values, config.singleuser.start_timeout),
                    Err(e) => tracing::error!(error = %format!("{e:#}"), "config reload: the kubernetes spawner keeps its values"),
                }
            }));
            spawner
        }
    };
    let hub = Hub::start_on(listener, settings, store, auth, spawner).await?;
    Ok((hub, listeners))
}

/// The `kubernetes` spawner: the config's values (over the chart's defaults, when
/// `hubfleet.kubernetes.chart_values` names them), the cluster as `kube::Config::infer` finds
/// it.
async fn kubernetes_spawner(config: &HubConfig) -> Result<KubernetesSpawner> {
    let spawner = KubernetesSpawner::connect(KubeOptions {
        namespace: config.hubfleet.kubernetes.namespace.clone(),
        values: kubernetes_values(config)?,
        start_timeout: config.singleuser.start_timeout,
    })
    .await?;
    tracing::info!(namespace = %spawner.namespace(), "users' servers run as pods");
    Ok(spawner)
}

/// The values users' pods are built from: the config's, over the chart's defaults when
/// `hubfleet.kubernetes.chart_values` names them.
fn kubernetes_values(config: &HubConfig) -> Result<hubfleet_config::values::Values> {
    let kubernetes = &config.hubfleet.kubernetes;
    Ok(match &kubernetes.chart_values {
        Some(path) => {
            let path = config.resolve_path(path);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "hubfleet.kubernetes.chart_values: reading the chart's defaults {}",
                    path.display()
                )
            })?;
            let defaults = hubfleet_config::values::parse_yaml(&path.display().to_string(), &text)?;
            let mut merged =
                hubfleet_config::values::coalesce(config.values.as_value().clone(), &defaults);
            hubfleet_config::values::drop_top_level_nulls(&mut merged);
            hubfleet_config::values::Values::new(merged)
        }
        None => config.values.clone(),
    })
}

/// The local spawner with `hubfleet.local.*`: where homes, logs and the shared folder are,
/// accounts, GPUs.
fn local_spawner(config: &HubConfig) -> LocalProcessSpawner {
    let local = &config.hubfleet.local;
    let data_dir = config.data_dir();
    let defaults = LocalOptions::new(&data_dir);
    LocalProcessSpawner::new(LocalOptions {
        allow_root: local.allow_root,
        system_accounts: private_files::system_accounts(config),
        system_users: local.system_users,
        homes_dir: hub_data::homes_dir(config),
        shared_dir: local
            .shared_dir
            .as_deref()
            .map(|p| config.resolve_path(p))
            .or(defaults.shared_dir.clone()),
        gpus: local.gpus.clone(),
        ..defaults
    })
}

/// Wait for Ctrl-C or SIGTERM, then stop serving; servers keep running. SIGHUP reads the
/// certificate files and the config files again; a change of the config files (`watch`)
/// reloads them too.
async fn run_until_signal(hub: Hub, mut watch: Option<config_watch::ConfigWatch>) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let api_shutdown = hub.shutdown_requested();
    tokio::pin!(api_shutdown);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = &mut api_shutdown => break,
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reading the certificate and config files again");
                hub.reload_certificate();
                hub.reload_config().await;
            }
            _ = config_changed(&mut watch) => {
                tracing::info!("the config files changed: reloading them");
                hub.reload_config().await;
            }
        }
    }
    tracing::info!(
        "shutting down; running servers keep running and are re-adopted at the next start"
    );
    hub.stop().await;
    Ok(())
}

async fn config_changed(watch: &mut Option<config_watch::ConfigWatch>) {
    match watch {
        Some(watch) => watch.changed().await,
        None => std::future::pending().await,
    }
}

/// Where people open the hub: the subdomain host's origin, else the address it listens on,
/// under `hub.baseUrl`.
fn hub_url(config: &HubConfig, hub: &Hub) -> String {
    let base = config.hub.base_url.as_str();
    let scheme = match config.https_mode() {
        hubfleet_config::HttpsMode::Terminate(_) => "https",
        _ => "http",
    };
    match &config.hub.config.jupyterhub.subdomain_host {
        Some(host) => format!("{}{base}", host.trim_end_matches('/')),
        None => format!("{scheme}://{}{base}", hub.addr),
    }
}

async fn serve(config_paths: &[PathBuf], watch_files: bool) -> Result<()> {
    let config = check_cmd::load(config_paths)?;
    let (hub, listeners) = start_hub(&config).await?;
    tracing::info!(url = %hub_url(&config, &hub), "hub is ready");
    let watch = if watch_files {
        match config_watch::ConfigWatch::start(config_paths) {
            Ok(watch) => Some(watch),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "config files are not watched: reload with SIGHUP or POST /hub/api/config/reload");
                None
            }
        }
    } else {
        None
    };
    let reloader = hub.enable_config_reload(
        config_paths.to_vec(),
        config,
        // As at start: the same checks, the same settings.
        Arc::new(|config: &HubConfig| {
            preflight::check(config)
                .and_then(|()| settings(config))
                .map_err(|e| format!("{e:#}"))
        }),
        Arc::new(|config: &HubConfig, store: &Store| {
            authenticator(config, store).map_err(|e| format!("{e:#}"))
        }),
    );
    for listener in listeners {
        reloader.on_reload(listener);
    }
    run_until_signal(hub, watch).await
}

fn has_singleuser(venv: &Path) -> bool {
    venv.join("bin/jupyterhub-singleuser").exists() && venv.join("bin/jupyter-lab").exists()
}

/// Create a venv with jupyterhub and jupyterlab, showing pip's progress.
fn create_python_env(venv: &Path) -> Result<()> {
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner.set_message(format!(
        "Creating a Python environment in {}",
        venv.display()
    ));
    let status = std::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(venv)
        .status()
        .context("running `python3 -m venv`: is Python 3 installed?")?;
    if !status.success() {
        bail!(
            "`python3 -m venv {}` failed; on Debian/Ubuntu install python3-venv",
            venv.display()
        );
    }
    spinner.set_message(
        "Installing jupyterhub and jupyterlab with pip (a few minutes the first time)",
    );
    let mut child = std::process::Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--progress-bar",
            "off",
            "jupyterhub",
            "jupyterlab",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("running pip")?;
    if let Some(out) = child.stdout.take() {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let line = line.trim();
            if !line.is_empty() {
                spinner.set_message(line.chars().take(100).collect::<String>());
            }
        }
    }
    let status = child.wait()?;
    spinner.finish_and_clear();
    if !status.success() {
        bail!(
            "pip could not install jupyterhub and jupyterlab into {}; see its output above",
            venv.display()
        );
    }
    eprintln!("Python environment ready in {}", venv.display());
    Ok(())
}

fn new_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..16)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

async fn demo(data_dir: &Path, listen: SocketAddr, python_env: Option<PathBuf>) -> Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let data_dir = std::path::absolute(data_dir)?;
    let venv = match python_env {
        Some(venv) => std::path::absolute(venv)?,
        None => data_dir.join("python-env"),
    };
    if !has_singleuser(&venv) {
        let target = venv.clone();
        tokio::task::spawn_blocking(move || create_python_env(&target)).await??;
    }
    let mut config = HubConfig::default_for_demo(&data_dir);
    config.hubfleet.listen = listen;
    // Each user on a host of their own, even on a laptop: browsers resolve `*.localhost` to
    // this machine. (Listening on another machine's address, the hub warns instead: a real
    // domain needs wildcard DNS, see docs/security.md.)
    if listen.ip().is_loopback() || listen.ip().is_unspecified() {
        config.hub.config.jupyterhub.subdomain_host =
            Some(format!("http://localhost:{}", listen.port()));
    }
    config.hubfleet.local.python_env = Some(venv);
    config.singleuser.default_url = Some("/lab".into());
    // A laptop demo as root: servers run as root, said below (system users would need useradd).
    let as_root = nix::unistd::geteuid().is_root();
    config.hubfleet.local.allow_root = as_root;

    let store = open_store(&config).await?;
    let admin_password = match store.user_by_name("admin").await? {
        Some(user) if store.password_hash(user.id).await?.is_some() => None,
        existing => {
            let user = match existing {
                Some(user) => user,
                None => store.create_user("admin", true).await?,
            };
            let password = new_password();
            let hash = hubfleet_auth::hash_password(&password).await?;
            store.set_password_hash(user.id, Some(&hash)).await?;
            Some(password)
        }
    };
    store.close().await;
    let (hub, _) = start_hub(&config).await?;
    let login = match admin_password {
        Some(password) => format!(
            "Log in as `admin` with password: {password}\n(shown only now; `hubfleet users add admin` makes a new one)"
        ),
        None => "Log in as `admin` with the password printed on the first run\n(`hubfleet users add admin` makes a new one)".to_string(),
    };
    let root_note = if as_root {
        "Running as root, so users' servers run as root too (hubfleet.local.allow_root); for a hub other people use, run it as an unprivileged user or turn on hubfleet.local.system_users.\n"
    } else {
        ""
    };
    // The hub keeps running even if nobody reads its standard output any more.
    let _ = writeln!(
        std::io::stdout(),
        "\nhubfleet is running at {}\n{root_note}{login}\nAdd people with `hubfleet users add NAME`. Press Ctrl-C to stop.",
        hub_url(&config, &hub)
    );
    run_until_signal(hub, None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(yaml: &str) -> Option<(String, &'static str)> {
        hub_connect_origin(&HubConfig::from_yaml_str(yaml, "t.yaml").unwrap())
    }

    #[test]
    fn where_servers_reach_the_hub() {
        // Nothing set: the address the hub listens on.
        assert_eq!(origin(""), None);
        // hub_connect_url: its origin (upstream puts the hub's own path on it).
        let jh = "hub:\n  config:\n    JupyterHub:\n      hub_connect_url: http://lb.internal:8000/some/path\n";
        assert_eq!(
            origin(jh),
            Some((
                "http://lb.internal:8000".into(),
                "hub.config.JupyterHub.hub_connect_url"
            ))
        );
        // public_url only with PostgreSQL (replicas): with SQLite servers keep the direct
        // address.
        let public = "hubfleet:\n  public_url: https://hub.example.org/\n";
        assert_eq!(origin(public), None);
        let postgres = "hub:\n  db:\n    type: postgres\n    url: postgresql://db/hub\n";
        assert_eq!(
            origin(&format!("{postgres}{public}")),
            Some(("https://hub.example.org".into(), "hubfleet.public_url"))
        );
        // hub_connect_url wins over public_url, and over the kubernetes key.
        let both = format!(
            "hub:\n  db:\n    type: postgres\n    url: postgresql://db/hub\n  config:\n    JupyterHub:\n      hub_connect_url: http://lb:80\n{public}"
        );
        assert_eq!(origin(&both).unwrap().0, "http://lb");
        let kube = "hubfleet:\n  spawner: kubernetes\n  kubernetes:\n    hub_connect_url: http://hub:8081\n";
        assert_eq!(
            origin(kube),
            Some((
                "http://hub:8081".into(),
                "hubfleet.kubernetes.hub_connect_url"
            ))
        );
        let kube_and_jh = format!(
            "{kube}hub:\n  config:\n    JupyterHub:\n      hub_connect_url: http://lb:8000\n"
        );
        assert_eq!(origin(&kube_and_jh).unwrap().0, "http://lb:8000");
    }
}
