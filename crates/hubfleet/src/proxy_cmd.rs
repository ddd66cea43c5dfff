//! `hubfleet proxy`: the proxy on its own, a drop-in for configurable-http-proxy (CHP): the same
//! flags, the same REST API and auth token (`CONFIGPROXY_AUTH_TOKEN`), so upstream JupyterHub can
//! run it with `c.ConfigurableHTTPProxy.command = ["hubfleet", "proxy"]`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hubfleet_proxy::{
    ApiOptions, ClientCerts, HeaderName, HeaderValue, Listener, Metrics, ProxyOptions, RouteTable,
    ServeConfig, Tls, UpstreamTls,
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
    /// Unix socket for the proxy to listen on, instead of --ip and --port.
    #[arg(long, conflicts_with_all = ["ip", "port"])]
    pub socket: Option<PathBuf>,
    /// Inward-facing IP for API requests.
    #[arg(long, default_value = "localhost")]
    pub api_ip: String,
    /// Inward-facing port for API requests (default: --port + 1).
    #[arg(long)]
    pub api_port: Option<u16>,
    /// Unix socket for the API to listen on, instead of --api-ip and --api-port.
    #[arg(long, conflicts_with_all = ["api_ip", "api_port"])]
    pub api_socket: Option<PathBuf>,
    /// Default proxy target (proto://host[:port]), stored as the route "/".
    #[arg(long)]
    pub default_target: Option<String>,
    /// Server for error pages: errors are answered with GET <error-target>/<code>?url=<url>.
    #[arg(long, conflicts_with = "error_path")]
    pub error_target: Option<String>,
    /// Directory of error pages: errors are answered with <code>.html, else error.html, from it.
    /// With neither this nor --error-target, built-in HTML pages.
    #[arg(long)]
    pub error_path: Option<PathBuf>,
    /// With TLS on the public port, offer only HTTP/1.1 (HTTP/2 is offered by default;
    /// upstreams always get HTTP/1.1).
    #[arg(long)]
    pub no_http2: bool,
    /// TLS key (PEM) for the public port; needs --ssl-cert. Reloaded on SIGHUP.
    #[arg(long, requires = "ssl_cert")]
    pub ssl_key: Option<PathBuf>,
    /// TLS certificate chain (PEM) for the public port; needs --ssl-key. Reloaded on SIGHUP.
    #[arg(long, requires = "ssl_key")]
    pub ssl_cert: Option<PathBuf>,
    /// CA bundle (PEM) that client certificates on the public port must chain to.
    #[arg(long)]
    pub ssl_ca: Option<PathBuf>,
    /// Ask clients of the public port for a certificate (needs --ssl-ca).
    #[arg(long)]
    pub ssl_request_cert: bool,
    /// With --ssl-request-cert: refuse clients without a valid certificate.
    #[arg(long)]
    pub ssl_reject_unauthorized: bool,
    /// Not supported (rustls negotiates TLS 1.2 or 1.3); given, the proxy exits with an error.
    #[arg(long, value_name = "PROTOCOL")]
    pub ssl_protocol: Option<String>,
    /// Not supported (rustls uses its own modern cipher suites); given, the proxy exits with an error.
    #[arg(long, value_name = "CIPHERS")]
    pub ssl_ciphers: Option<String>,
    /// Not supported (RC4 is never offered); given, the proxy exits with an error.
    #[arg(long)]
    pub ssl_allow_rc4: bool,
    /// Not supported (no finite-field Diffie-Hellman in rustls); given, the proxy exits with an error.
    #[arg(long, value_name = "DHPARAM_FILE")]
    pub ssl_dhparam: Option<PathBuf>,
    /// TLS key (PEM) for the API; needs --api-ssl-cert. Reloaded on SIGHUP.
    #[arg(long, requires = "api_ssl_cert")]
    pub api_ssl_key: Option<PathBuf>,
    /// TLS certificate chain (PEM) for the API; needs --api-ssl-key.
    #[arg(long, requires = "api_ssl_key")]
    pub api_ssl_cert: Option<PathBuf>,
    /// CA bundle (PEM) that client certificates on the API must chain to.
    #[arg(long)]
    pub api_ssl_ca: Option<PathBuf>,
    /// Ask API clients for a certificate (needs --api-ssl-ca).
    #[arg(long)]
    pub api_ssl_request_cert: bool,
    /// With --api-ssl-request-cert: refuse API clients without a valid certificate.
    #[arg(long)]
    pub api_ssl_reject_unauthorized: bool,
    /// Key (PEM) of the certificate presented to https:// targets; needs --client-ssl-cert.
    #[arg(long, requires = "client_ssl_cert")]
    pub client_ssl_key: Option<PathBuf>,
    /// Certificate (PEM) presented to https:// targets; needs --client-ssl-key.
    #[arg(long, requires = "client_ssl_key")]
    pub client_ssl_cert: Option<PathBuf>,
    /// CA bundle (PEM) that https:// targets' certificates must chain to (default: the
    /// Mozilla roots).
    #[arg(long)]
    pub client_ssl_ca: Option<PathBuf>,
    /// Accepted as CHP does and without effect: it describes a server, and targets are servers.
    #[arg(long)]
    pub client_ssl_request_cert: bool,
    /// Accepted as CHP does and without effect: target certificates are always verified
    /// (unless --insecure).
    #[arg(long)]
    pub client_ssl_reject_unauthorized: bool,
    /// Also listen for plain HTTP on this port and redirect it to https (needs --ssl-key).
    #[arg(long)]
    pub redirect_port: Option<u16>,
    /// The https port that --redirect-port redirects to (default: --port).
    #[arg(long, requires = "redirect_port")]
    pub redirect_to: Option<u16>,
    /// Don't put a target's own path in front of the request path.
    #[arg(long)]
    pub no_prepend_path: bool,
    /// Don't include the routing prefix in the path sent to the target.
    #[arg(long)]
    pub no_include_prefix: bool,
    /// Rewrite the host:port of redirects' Location headers that point at the target to the
    /// host the client asked for.
    #[arg(long)]
    pub auto_rewrite: bool,
    /// Send targets their own host:port as Host, instead of the client's.
    #[arg(long)]
    pub change_origin: bool,
    /// Rewrite the scheme of redirects' Location headers that point at the target (http or https).
    #[arg(long, value_name = "PROTO", value_parser = ["http", "https"])]
    pub protocol_rewrite: Option<String>,
    /// Not supported (routes are kept in memory, as with CHP's default); given, the proxy exits
    /// with an error.
    #[arg(long, value_name = "STORAGE_CLASS")]
    pub storage_backend: Option<String>,
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
    /// Unix socket for the metrics server, instead of --metrics-ip and --metrics-port.
    #[arg(long, conflicts_with_all = ["metrics_ip", "metrics_port"])]
    pub metrics_socket: Option<PathBuf>,
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
    /// Don't verify the certificates of https:// targets.
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

async fn bind(what: &str, ip: &str, port: u16) -> Result<Listener> {
    let addr = resolve(ip, port).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}"))?;
    Ok(Listener::Tcp(listener))
}

fn bind_unix(what: &str, path: &std::path::Path) -> Result<Listener> {
    Listener::bind_unix(path)
        .with_context(|| format!("cannot listen for {what} on unix socket {}", path.display()))
}

/// CHP flags that name things rustls or this proxy do not have: refuse them rather than
/// run with a setting silently ignored.
fn refuse_unsupported(args: &ProxyFlags) -> Result<()> {
    let unsupported = [
        (args.ssl_protocol.is_some(), "--ssl-protocol", "rustls negotiates TLS 1.2 or 1.3 and nothing older"),
        (args.ssl_ciphers.is_some(), "--ssl-ciphers", "rustls uses its own fixed set of modern cipher suites"),
        (args.ssl_allow_rc4, "--ssl-allow-rc4", "RC4 is never offered"),
        (args.ssl_dhparam.is_some(), "--ssl-dhparam", "rustls has no finite-field Diffie-Hellman; it uses ECDHE"),
        (args.storage_backend.is_some(), "--storage-backend", "routes are kept in memory (CHP's default MemoryStore); external storage classes are Node.js modules"),
    ];
    for (given, flag, why) in unsupported {
        if given {
            bail!("{flag} is not supported by hubfleet proxy: {why}");
        }
    }
    // CHP decrypts keys with these; rustls reads only unencrypted PEM keys.
    for var in [
        "CONFIGPROXY_SSL_KEY_PASSPHRASE",
        "CONFIGPROXY_API_SSL_KEY_PASSPHRASE",
    ] {
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            bail!(
                "{var} is not supported by hubfleet proxy: encrypted keys cannot be read; \
                 decrypt the key first (openssl pkey -in KEY -out PLAIN_KEY)"
            );
        }
    }
    Ok(())
}

/// Which client certificates a TLS listener asks for, from CHP's `--*-ssl-ca`,
/// `--*-ssl-request-cert` and `--*-ssl-reject-unauthorized`.
fn client_certs(
    prefix: &str,
    ca: Option<&PathBuf>,
    request: bool,
    reject: bool,
) -> Result<ClientCerts> {
    if !request {
        return Ok(ClientCerts::None);
    }
    let Some(ca) = ca.cloned() else {
        bail!("--{prefix}-request-cert needs --{prefix}-ca, the CA that client certificates must chain to");
    };
    Ok(if reject {
        ClientCerts::Required { ca }
    } else {
        ClientCerts::Optional { ca }
    })
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
    refuse_unsupported(&args)?;
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
            let clients = client_certs(
                "ssl",
                args.ssl_ca.as_ref(),
                args.ssl_request_cert,
                args.ssl_reject_unauthorized,
            )?;
            let tls = Tls::with_client_certs(cert, key, clients).context("--ssl-cert/--ssl-key")?;
            Some(if args.no_http2 {
                tls
            } else {
                tls.with_http2().context("--ssl-cert/--ssl-key")?
            })
        }
        _ => None,
    };
    let api_tls = match (&args.api_ssl_cert, &args.api_ssl_key) {
        (Some(cert), Some(key)) => {
            let clients = client_certs(
                "api-ssl",
                args.api_ssl_ca.as_ref(),
                args.api_ssl_request_cert,
                args.api_ssl_reject_unauthorized,
            )?;
            Some(
                Tls::with_client_certs(cert, key, clients)
                    .context("--api-ssl-cert/--api-ssl-key")?,
            )
        }
        _ => None,
    };
    let identity = args
        .client_ssl_cert
        .as_deref()
        .zip(args.client_ssl_key.as_deref());
    let upstream_tls = UpstreamTls::new(args.client_ssl_ca.as_deref(), identity, args.insecure)
        .context("--client-ssl-*")?;
    if args.insecure {
        tracing::warn!("--insecure: certificates of https:// targets are not verified");
    }
    if args.redirect_port.is_some() {
        if tls.is_none() {
            bail!("--redirect-port redirects to https and needs --ssl-key and --ssl-cert");
        }
        if args.socket.is_some() && args.redirect_to.is_none() {
            bail!("--redirect-port with --socket needs --redirect-to, the https port to send clients to");
        }
    }
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
        error_path: args.error_path.clone(),
        change_origin: args.change_origin,
        auto_rewrite: args.auto_rewrite,
        protocol_rewrite: args.protocol_rewrite.clone(),
        include_prefix: !args.no_include_prefix,
        prepend_path: !args.no_prepend_path,
        upstream_tls,
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

    let public = match &args.socket {
        Some(path) => bind_unix("the proxy", path)?,
        None => bind("the proxy", &args.ip, args.port).await?,
    };
    let api = match &args.api_socket {
        Some(path) => bind_unix("the API", path)?,
        None => {
            // As CHP: --port + 1, or 8001 when the proxy listens on a socket.
            let api_port = match (args.api_port, &args.socket) {
                (Some(p), _) => p,
                (None, Some(_)) => 8001,
                (None, None) => args
                    .port
                    .checked_add(1)
                    .context("--port 65535 needs an --api-port")?,
            };
            bind("the API", &args.api_ip, api_port).await?
        }
    };
    let metrics_listener = match (&args.metrics_socket, args.metrics_port) {
        (Some(path), _) => Some(bind_unix("metrics", path)?),
        (None, Some(p)) => Some(bind("metrics", &args.metrics_ip, p).await?),
        (None, None) => None,
    };
    let redirect_listener = match args.redirect_port {
        Some(p) => Some(bind("the https redirect", &args.ip, p).await?),
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
        proxy = %public.describe(),
        api = %api.describe(),
        metrics = ?metrics_listener.as_ref().map(Listener::describe),
        redirect = ?redirect_listener.as_ref().map(Listener::describe),
        tls = tls.is_some(),
        api_tls = api_tls.is_some(),
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
            tls: api_tls.clone(),
        },
        stopped(stop_rx.clone()),
    ));
    if let Some(listener) = redirect_listener {
        let https_port = args.redirect_to.unwrap_or(args.port);
        tasks.spawn(hubfleet_proxy::serve_https_redirect(
            listener,
            https_port,
            stopped(stop_rx.clone()),
        ));
    }
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
            _ = hup.recv() => {
                let all = [("proxy", &tls), ("API", &api_tls)];
                for (what, tls) in all.into_iter().filter_map(|(w, t)| Some((w, t.as_ref()?))) {
                    match tls.reload() {
                        Ok(()) => tracing::info!(listener = what, "SIGHUP: reloaded TLS certificate and key"),
                        Err(e) => tracing::error!(listener = what, error = %e, "SIGHUP: TLS reload failed; keeping the old certificate"),
                    }
                }
                if tls.is_none() && api_tls.is_none() {
                    tracing::info!("SIGHUP: nothing to reload (no TLS)");
                }
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
