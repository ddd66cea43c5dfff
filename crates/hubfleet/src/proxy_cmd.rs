//! `hubfleet proxy`: the proxy on its own, a drop-in for configurable-http-proxy (CHP): the same
//! flags, the same REST API and auth token (`CONFIGPROXY_AUTH_TOKEN`), so upstream JupyterHub can
//! run it with `c.ConfigurableHTTPProxy.command = ["hubfleet", "proxy"]`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hubfleet_proxy::{
    ApiOptions, HeaderName, HeaderValue, Metrics, ProxyOptions, RouteTable, ServeConfig, Tls,
};
use tokio::sync::watch;

/// The flags, boxed so the CLI's command enum stays small.
#[derive(clap::Args, Debug)]
pub struct ProxyArgs {
    #[command(flatten)]
    pub flags: Box<ProxyFlags>,
}

/// configurable-http-proxy's flags (and a few of our own).
#[derive(clap::Args, Debug)]
pub struct ProxyFlags {
    /// Public-facing IP of the proxy ("" or "*" for every interface).
    #[arg(long, default_value = "")]
    pub ip: String,
    /// Public-facing port of the proxy.
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Inward-facing IP for API requests.
    #[arg(long, default_value = "localhost")]
    pub api_ip: String,
    /// Inward-facing port for API requests (default: --port + 1).
    #[arg(long)]
    pub api_port: Option<u16>,
    /// Default proxy target (proto://host[:port]), stored as the route "/".
    #[arg(long)]
    pub default_target: Option<String>,
    /// Server for error pages: errors are answered with GET <error-target>/<code>?url=<url>.
    #[arg(long)]
    pub error_target: Option<String>,
    /// TLS key (PEM) for the public port; needs --ssl-cert. Reloaded on SIGHUP.
    #[arg(long, requires = "ssl_cert")]
    pub ssl_key: Option<PathBuf>,
    /// TLS certificate chain (PEM) for the public port; needs --ssl-key. Reloaded on SIGHUP.
    #[arg(long, requires = "ssl_key")]
    pub ssl_cert: Option<PathBuf>,
    /// Log level (debug, info, warn, error). RUST_LOG, when set, wins.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Use host routing (host as first level of path).
    #[arg(long)]
    pub host_routing: bool,
    /// IP for the metrics server.
    #[arg(long, default_value = "")]
    pub metrics_ip: String,
    /// Port of the metrics server (GET /metrics). Defaults to no metrics server.
    #[arg(long)]
    pub metrics_port: Option<u16>,
    /// Write our PID to a file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Don't add 'X-Forwarded-' headers to proxied requests.
    #[arg(long)]
    pub no_x_forward: bool,
    /// Custom header to add to proxied requests ("name: value"); may be repeated.
    #[arg(long, value_name = "HEADER")]
    pub custom_header: Vec<String>,
    /// Timeout (in millis) for a client to send a request head; idle keep-alive connections
    /// are closed after it as well. Default 60000.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Timeout (in millis) when proxy receives no response from target (504). Default 300000.
    #[arg(long)]
    pub proxy_timeout: Option<u64>,
    /// Timeout (in millis) for idle keep-alive connections (the smaller of this and --timeout).
    #[arg(long)]
    pub keep_alive_timeout: Option<u64>,
    /// Accepted for compatibility; targets are plain http.
    #[arg(long)]
    pub insecure: bool,
    /// Timeout (in millis) to connect to a target (503 after it). Default 10000.
    #[arg(long)]
    pub connect_timeout: Option<u64>,
    /// Close a WebSocket with no traffic either way for this many seconds (0: never).
    #[arg(long, default_value_t = 3600)]
    pub websocket_idle_timeout: u64,
    /// Worker threads, each with its own event loop and upstream pool (0: one per CPU).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Client connections served at once; more wait in the listen backlog.
    #[arg(long, default_value_t = 100_000)]
    pub max_connections: usize,
}

/// CHP's addresses: "" and "*" mean every interface, "localhost" loopback.
async fn resolve(ip: &str, port: u16) -> Result<SocketAddr> {
    match ip {
        "" | "*" => return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)),
        "localhost" => return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
        _ => {}
    }
    if let Ok(addr) = ip.trim_start_matches('[').trim_end_matches(']').parse() {
        return Ok(SocketAddr::new(addr, port));
    }
    tokio::net::lookup_host((ip, port))
        .await
        .with_context(|| format!("cannot resolve {ip:?}"))?
        .next()
        .with_context(|| format!("{ip:?} has no address"))
}

async fn bind(what: &str, ip: &str, port: u16) -> Result<tokio::net::TcpListener> {
    let addr = resolve(ip, port).await?;
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}"))
}

fn custom_headers(raw: &[String]) -> Result<Vec<(HeaderName, HeaderValue)>> {
    raw.iter()
        .map(|h| hubfleet_proxy::parse_custom_header(h).context("--custom-header"))
        .collect()
}

/// The log filter for CHP's `--log-level` (RUST_LOG, when set, wins).
pub fn log_filter(level: &str) -> Result<&'static str> {
    Ok(match level.to_ascii_lowercase().as_str() {
        "info" => "info",
        "debug" | "trace" => "debug,hyper=info,hyper_util=info",
        "warn" | "warning" => "warn",
        "error" | "critical" => "error",
        other => bail!("--log-level {other:?}: expected debug, info, warn or error"),
    })
}

pub async fn run(args: ProxyArgs) -> Result<()> {
    let args = *args.flags;
    match hubfleet_proxy::raise_fd_limit() {
        Ok(n) => tracing::debug!(limit = n, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }

    let routes = RouteTable::new();
    if let Some(target) = &args.default_target {
        routes
            .try_add("/", target, serde_json::Map::new())
            .with_context(|| format!("--default-target {target}"))?;
    }
    let tls = match (&args.ssl_cert, &args.ssl_key) {
        (Some(cert), Some(key)) => {
            Some(Tls::from_files(cert, key).context("--ssl-cert/--ssl-key")?)
        }
        _ => None,
    };
    let ms = Duration::from_millis;
    let metrics = Metrics::new();
    let defaults = ServeConfig::default();
    let client_timeout = [args.timeout, args.keep_alive_timeout]
        .into_iter()
        .flatten()
        .min()
        .map(ms)
        .unwrap_or(defaults.client_timeout);
    let config = ServeConfig {
        host_routing: args.host_routing,
        error_target: args.error_target.clone(),
        x_forward: !args.no_x_forward,
        custom_headers: custom_headers(&args.custom_header)?,
        connect_timeout: args
            .connect_timeout
            .map(ms)
            .unwrap_or(defaults.connect_timeout),
        upstream_timeout: args.proxy_timeout.map(ms).or(defaults.upstream_timeout),
        client_timeout,
        websocket_idle_timeout: (args.websocket_idle_timeout > 0)
            .then(|| Duration::from_secs(args.websocket_idle_timeout)),
        max_connections: args.max_connections,
        tls: tls.clone(),
        metrics: metrics.clone(),
        threads: match args.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        },
        ..defaults
    };

    let public = bind("the proxy", &args.ip, args.port).await?;
    let api_port = match args.api_port {
        Some(p) => p,
        None => args
            .port
            .checked_add(1)
            .context("--port 65535 needs an --api-port")?,
    };
    let api = bind("the API", &args.api_ip, api_port).await?;
    let metrics_listener = match args.metrics_port {
        Some(p) => Some(bind("metrics", &args.metrics_ip, p).await?),
        None => None,
    };
    if let Some(path) = &args.pid_file {
        std::fs::write(path, std::process::id().to_string())
            .with_context(|| format!("cannot write --pid-file {}", path.display()))?;
    }
    let auth_token = std::env::var("CONFIGPROXY_AUTH_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    if auth_token.is_none() {
        tracing::warn!("REST API is not authenticated: CONFIGPROXY_AUTH_TOKEN is not set");
    }
    tracing::info!(
        proxy = %public.local_addr()?,
        api = %api.local_addr()?,
        metrics = ?metrics_listener.as_ref().and_then(|l| l.local_addr().ok()),
        tls = tls.is_some(),
        "proxy ready"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(hubfleet_proxy::serve_with(
        public,
        routes.clone(),
        ProxyOptions::default(),
        config,
        stopped(stop_rx.clone()),
    ));
    tasks.spawn(hubfleet_proxy::serve_api(
        api,
        routes.clone(),
        ApiOptions {
            auth_token,
            host_routing: args.host_routing,
            metrics: Some(metrics.clone()),
        },
        stopped(stop_rx.clone()),
    ));
    if let Some(listener) = metrics_listener {
        tasks.spawn(hubfleet_proxy::serve_metrics(
            listener,
            routes.clone(),
            metrics,
            stopped(stop_rx.clone()),
        ));
    }

    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let outcome = loop {
        tokio::select! {
            _ = term.recv() => break Ok(()),
            _ = int.recv() => break Ok(()),
            _ = hup.recv() => match &tls {
                Some(tls) => match tls.reload() {
                    Ok(()) => tracing::info!("SIGHUP: reloaded TLS certificate and key"),
                    Err(e) => tracing::error!(error = %e, "SIGHUP: TLS reload failed; keeping the old certificate"),
                },
                None => tracing::info!("SIGHUP: nothing to reload (no TLS)"),
            },
            Some(res) = tasks.join_next() => {
                // A server returned before we asked it to: that is fatal.
                break match res {
                    Ok(Ok(())) => Err(anyhow::anyhow!("a proxy listener stopped unexpectedly")),
                    Ok(Err(e)) => Err(e).context("proxy listener failed"),
                    Err(e) => Err(e).context("proxy task panicked"),
                };
            }
        }
    };
    tracing::info!("proxy shutting down");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if let Some(path) = &args.pid_file {
        let _ = std::fs::remove_file(path);
    }
    outcome
}
