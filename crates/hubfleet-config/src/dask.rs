//! `dask-gateway:` — daskhub's section (the values of the upstream `dask-gateway` Helm chart).
//! With `enabled: true`, `hubfleet serve` runs the real `dask-gateway-server` as a managed hub
//! service at `/services/dask-gateway/` (see `docs/flavours.md`, "Dask hub").
//!
//! Read here: `enabled`, `gateway.prefix`, `gateway.auth` (only `jupyterhub`),
//! `gateway.backend.{scheduler,worker}.{cores,memory}` (`request`/`limit`),
//! `gateway.backend.worker.threads`, `gateway.extraConfig`, `gateway.loglevel`, and
//! `gateway.clusterManager` (hubfleet's typed spelling of `ClusterConfig`'s limits). The chart's
//! Kubernetes keys (images, pod config, traefik, controller, RBAC) are ignored with a warning
//! each ([`IGNORED`]); anything else is an error.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

use crate::ignored::IgnoredKey;
use crate::load::{Ctx, Findings};
use crate::HubConfig;

/// The service name (and route `/services/<name>/`) daskhub uses.
pub const DEFAULT_SERVICE_NAME: &str = "dask-gateway";

/// The chart's keys that only mean something on Kubernetes: accepted with a warning.
pub(crate) const IGNORED: &[IgnoredKey] = &[
    k8s("dask-gateway.gateway.image", "the gateway's container image; here dask-gateway-server runs from hubfleet.local.python_env"),
    k8s("dask-gateway.gateway.imagePullSecrets", "pulling the gateway's image"),
    k8s("dask-gateway.gateway.replicas", "gateway pod replicas"),
    k8s("dask-gateway.gateway.annotations", "annotations of the gateway's Kubernetes objects"),
    k8s("dask-gateway.gateway.resources", "the gateway pod's resources"),
    k8s("dask-gateway.gateway.env", "the gateway pod's environment"),
    k8s("dask-gateway.gateway.nodeSelector", "placement of the gateway pod"),
    k8s("dask-gateway.gateway.affinity", "placement of the gateway pod"),
    k8s("dask-gateway.gateway.tolerations", "placement of the gateway pod"),
    k8s("dask-gateway.gateway.service", "the gateway's Kubernetes Service"),
    k8s("dask-gateway.gateway.livenessProbe", "the gateway pod's probes"),
    k8s("dask-gateway.gateway.readinessProbe", "the gateway pod's probes"),
    k8s("dask-gateway.gateway.backend.image", "the image of scheduler and worker pods; here they run in hubfleet.local.python_env"),
    k8s("dask-gateway.gateway.backend.imagePullSecrets", "pulling the scheduler and worker image"),
    k8s("dask-gateway.gateway.backend.namespace", "the namespace of scheduler and worker pods"),
    k8s("dask-gateway.gateway.backend.environment", "the environment of scheduler and worker pods"),
    k8s("dask-gateway.gateway.backend.scheduler.extraPodConfig", "scheduler pod settings"),
    k8s("dask-gateway.gateway.backend.scheduler.extraContainerConfig", "scheduler container settings"),
    k8s("dask-gateway.gateway.backend.worker.extraPodConfig", "worker pod settings"),
    k8s("dask-gateway.gateway.backend.worker.extraContainerConfig", "worker container settings"),
    k8s("dask-gateway.controller", "the controller that cleans up the gateway's Kubernetes objects"),
    k8s("dask-gateway.traefik", "the chart's traefik; here hubfleet's proxy routes the gateway's HTTP API and the gateway's own proxy serves the scheduler port"),
    k8s("dask-gateway.rbac", "the gateway's Kubernetes service accounts and roles"),
    k8s("dask-gateway.global", "Helm's global values"),
    k8s("dask-gateway.fullnameOverride", "the names of the chart's Kubernetes objects"),
    k8s("dask-gateway.nameOverride", "the names of the chart's Kubernetes objects"),
    IgnoredKey {
        key: "dask-gateway.gateway.auth.jupyterhub.apiToken",
        reason: "the gateway gets a service API token of its own at every start (stored hashed)",
        kubernetes: false,
    },
    IgnoredKey {
        key: "dask-gateway.gateway.auth.jupyterhub.apiUrl",
        reason: "the gateway reaches the hub's API at the address users' servers use",
        kubernetes: false,
    },
];

const fn k8s(key: &'static str, reason: &'static str) -> IgnoredKey {
    IgnoredKey {
        key,
        reason,
        kubernetes: true,
    }
}

/// `dask-gateway:`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaskGateway {
    /// `dask-gateway.enabled` (off by default, as basehub's values).
    pub enabled: bool,
    /// `dask-gateway.gateway`.
    pub gateway: Gateway,
    /// `dask-gateway.local`: hubfleet's own keys (addresses and backend on one machine).
    pub local: Local,
}

/// `dask-gateway.gateway`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct Gateway {
    /// `prefix`: must be `/services/<service name>` (the chart's default `/` does not work
    /// behind the hub's proxy). `None` when unset.
    pub prefix: Option<String>,
    /// `loglevel` (`INFO` by default, as the chart).
    pub loglevel: Option<String>,
    pub auth: Auth,
    pub backend: Backend,
    /// `gateway.extraConfig`: Python run after the generated config, in key order (as the chart).
    pub extra_config: BTreeMap<String, String>,
    /// `gateway.clusterManager`: the limits of every cluster (`ClusterConfig`).
    pub cluster_manager: ClusterManager,
}

/// `dask-gateway.gateway.auth`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// `type`: only `jupyterhub` (also when unset).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub jupyterhub: AuthJupyterHub,
}

/// `dask-gateway.gateway.auth.jupyterhub`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct AuthJupyterHub {
    /// The hub service's name (`dask-gateway` by default).
    pub jupyterhub_service_name: Option<String>,
}

/// `dask-gateway.gateway.backend`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Backend {
    pub scheduler: Process,
    pub worker: Worker,
}

/// `dask-gateway.gateway.backend.scheduler`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Process {
    pub cores: Cores,
    pub memory: Memory,
}

/// `dask-gateway.gateway.backend.worker`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Worker {
    pub cores: Cores,
    pub memory: Memory,
    /// Threads per worker (default: the worker's cores).
    pub threads: Option<u32>,
}

/// `cores: {request, limit}` in millicores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cores {
    #[serde(deserialize_with = "opt_cpu")]
    pub request: Option<u64>,
    #[serde(deserialize_with = "opt_cpu")]
    pub limit: Option<u64>,
}

/// `memory: {request, limit}`, as written (dask reads `4G` as 4×10⁹ and `4Gi` as 4×2³⁰), after
/// a check that it is a memory size.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Memory {
    #[serde(deserialize_with = "opt_memory_text")]
    pub request: Option<String>,
    #[serde(deserialize_with = "opt_memory_text")]
    pub limit: Option<String>,
}

/// `dask-gateway.gateway.clusterManager`: `ClusterConfig`'s limits.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct ClusterManager {
    /// Seconds without activity before a cluster is stopped (`ClusterConfig.idle_timeout`;
    /// 0 never).
    pub idle_timeout: Option<u32>,
    /// Cores of a cluster, scheduler included (`cluster_max_cores`), in millicores.
    #[serde(deserialize_with = "opt_cpu")]
    pub cluster_max_cores: Option<u64>,
    /// Memory of a cluster (`cluster_max_memory`), as written.
    #[serde(deserialize_with = "opt_memory_text")]
    pub cluster_max_memory: Option<String>,
    /// Workers of a cluster (`cluster_max_workers`).
    pub cluster_max_workers: Option<u32>,
}

impl ClusterManager {
    /// The limits as dask-gateway's `ClusterConfig` settings: (trait, Python literal). The
    /// hub's generated config and the upstream chart's `extraConfig` both write these.
    pub fn cluster_config(&self) -> Vec<(&'static str, String)> {
        let mut settings = Vec::new();
        if let Some(v) = self.idle_timeout {
            settings.push(("ClusterConfig.idle_timeout", v.to_string()));
        }
        if let Some(v) = self.cluster_max_cores {
            settings.push((
                "ClusterConfig.cluster_max_cores",
                (v as f64 / 1000.0).to_string(),
            ));
        }
        if let Some(v) = &self.cluster_max_memory {
            let quoted = serde_json::to_string(v).expect("a string serialises");
            settings.push(("ClusterConfig.cluster_max_memory", quoted));
        }
        if let Some(v) = self.cluster_max_workers {
            settings.push(("ClusterConfig.cluster_max_workers", v.to_string()));
        }
        settings
    }
}

/// `dask-gateway.local`: where the gateway listens on this machine and how it runs clusters.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Local {
    /// The gateway's private API (`DaskGateway.address`); a free port when unset.
    #[serde(deserialize_with = "crate::https::opt_socket_addr")]
    pub api_address: Option<SocketAddr>,
    /// The gateway's HTTP proxy (`Proxy.address`), the service's URL that hubfleet's proxy
    /// forwards `/services/dask-gateway/` to; a free port when unset.
    #[serde(deserialize_with = "crate::https::opt_socket_addr")]
    pub http_address: Option<SocketAddr>,
    /// The scheduler proxy (`Proxy.tcp_address`), which users' clients connect to directly
    /// (`DASK_GATEWAY__PROXY_ADDRESS`); a free port when unset. Set it on a hub whose servers
    /// must keep their clusters across hub restarts.
    #[serde(deserialize_with = "crate::https::opt_socket_addr")]
    pub scheduler_address: Option<SocketAddr>,
    /// `auto` (default), `local` or `unsafe-local`.
    pub backend: BackendKind,
}

/// Which of dask-gateway-server's local backends runs clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// `local` when `hubfleet.local.system_users` is on and the hub runs as root, else
    /// `unsafe-local`.
    #[default]
    Auto,
    /// `LocalBackend`: each cluster runs as its user's Unix account.
    Local,
    /// `UnsafeLocalBackend`: clusters run as the hub's own account.
    UnsafeLocal,
}

impl DaskGateway {
    /// The hub service's name (`gateway.auth.jupyterhub.jupyterhubServiceName`).
    pub fn service_name(&self) -> &str {
        self.gateway
            .auth
            .jupyterhub
            .jupyterhub_service_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(DEFAULT_SERVICE_NAME)
    }
}

/// A scalar as text (numbers as written), `None` for `null`.
fn scalar<'de, D: serde::Deserializer<'de>>(d: D, what: &str) -> Result<Option<String>, D::Error> {
    use serde::de::Error;
    match Option::<serde_yaml_ng::Value>::deserialize(d)? {
        None | Some(serde_yaml_ng::Value::Null) => Ok(None),
        Some(serde_yaml_ng::Value::String(s)) => Ok(Some(s)),
        Some(serde_yaml_ng::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(D::Error::custom(format!("expected {what}"))),
    }
}

fn opt_cpu<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    scalar(d, "a number of CPUs such as `0.5` or `2`")?
        .map(|t| crate::profiles::parse_cpu(&t).map_err(serde::de::Error::custom))
        .transpose()
}

fn opt_memory_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = scalar(d, "a memory size such as `1G` or `512M`")?;
    if let Some(t) = &text {
        crate::profiles::parse_bytes(t).map_err(serde::de::Error::custom)?;
    }
    Ok(text)
}

/// Checks across keys: the prefix, the auth type, the limits against each other.
pub(crate) fn check(config: &HubConfig, ctx: &Ctx<'_>, f: &mut Findings) {
    let dask = &config.dask_gateway;
    if !dask.enabled {
        return;
    }
    let name = dask.service_name();
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        f.error(ctx.at_key(
            "dask-gateway.gateway.auth.jupyterhub.jupyterhubServiceName",
            format!("`{name}` is not a service name; use letters, digits, `-` and `_` (daskhub uses `dask-gateway`)"),
        ));
    }
    if config.hub.services.contains_key(name) {
        f.error(ctx.at_key(
            "dask-gateway.enabled",
            format!("hub.services already has a service `{name}`; the Dask gateway runs as that service itself: remove it from hub.services"),
        ));
    }
    let want = format!("/services/{name}");
    if let Some(prefix) = &dask.gateway.prefix {
        if prefix.trim_end_matches('/') != want {
            f.error(ctx.at_key(
                "dask-gateway.gateway.prefix",
                format!("`{prefix}`: the gateway is reached through the hub at `{want}`; set `prefix: {want}` (or leave it out)"),
            ));
        }
    }
    if let Some(kind) = &dask.gateway.auth.kind {
        if kind != "jupyterhub" {
            f.error(ctx.at_key(
                "dask-gateway.gateway.auth.type",
                format!("`{kind}`: hubfleet runs the gateway with JupyterHub authentication only; set `type: jupyterhub`"),
            ));
        }
    }
    for (which, process) in [
        (
            "scheduler",
            (
                &dask.gateway.backend.scheduler.cores,
                &dask.gateway.backend.scheduler.memory,
            ),
        ),
        (
            "worker",
            (
                &dask.gateway.backend.worker.cores,
                &dask.gateway.backend.worker.memory,
            ),
        ),
    ] {
        let (cores, memory) = process;
        if let (Some(request), Some(limit)) = (cores.request, cores.limit) {
            if request > limit {
                f.error(ctx.at_key(
                    &format!("dask-gateway.gateway.backend.{which}.cores.request"),
                    format!(
                        "the request ({}) is above the limit ({}); lower it or raise `cores.limit`",
                        crate::profiles::format_cpu(request),
                        crate::profiles::format_cpu(limit)
                    ),
                ));
            }
        }
        let bytes = |t: &Option<String>| {
            t.as_deref()
                .and_then(|t| crate::profiles::parse_bytes(t).ok())
        };
        if let (Some(request), Some(limit)) = (bytes(&memory.request), bytes(&memory.limit)) {
            if request > limit {
                f.error(ctx.at_key(
                    &format!("dask-gateway.gateway.backend.{which}.memory.request"),
                    format!("the request ({}) is above the limit ({}); lower it or raise `memory.limit`", memory.request.as_deref().unwrap_or_default(), memory.limit.as_deref().unwrap_or_default()),
                ));
            }
        }
    }
    if dask.local.backend == BackendKind::Local && !config.hubfleet.local.system_users {
        f.error(ctx.at_key(
            "dask-gateway.local.backend",
            "`local` runs each cluster as its user's Unix account, which exists only with hubfleet.local.system_users: turn that on, or use `unsafe-local` (or `auto`)",
        ));
    }
    if config.python_env().is_none() {
        f.error(ctx.at_key(
            "dask-gateway.enabled",
            "the gateway runs `dask-gateway-server` from hubfleet.local.python_env, which is not set; set it to a Python environment with dask-gateway-server[local] and distributed installed",
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::HubConfig;

    #[test]
    fn defaults_are_off() {
        let config = HubConfig::from_yaml_str("hub: {}\n", "t.yaml").unwrap();
        assert!(!config.dask_gateway.enabled);
        assert_eq!(config.dask_gateway.service_name(), "dask-gateway");
    }
}
