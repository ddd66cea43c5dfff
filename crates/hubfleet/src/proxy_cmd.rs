//! `hubfleet proxy`: the built-in proxy on its own, with configurable-http-proxy's flags.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result};
use hubfleet_proxy::{ProxyOptions, RouteTable};

#[derive(clap::Args, Debug)]
pub struct ProxyArgs {
    /// Public-facing IP of the proxy.
    #[arg(long, default_value = "0.0.0.0")]
    pub ip: IpAddr,
    /// Public-facing port of the proxy.
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Default proxy target (proto://host[:port]).
    #[arg(long)]
    pub default_target: Option<String>,
}

pub async fn run(args: ProxyArgs) -> Result<()> {
    let routes = RouteTable::new();
    if let Some(target) = &args.default_target {
        routes
            .try_add("/", target, serde_json::Map::new())
            .with_context(|| format!("--default-target {target}"))?;
    }
    let addr = SocketAddr::new(args.ip, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(%addr, "proxy ready");
    hubfleet_proxy::serve(listener, routes, ProxyOptions::default(), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
