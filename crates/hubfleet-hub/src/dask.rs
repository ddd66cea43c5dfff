//! The Dask hub (`dask-gateway:` values): the real `dask-gateway-server` as a managed hub
//! service at `/services/<name>/`, the settings users' servers get so that `Gateway()` works
//! with no arguments, and the clusters the admin page and `/hub/metrics` show.
//!
//! Address layout (three local ports, see `docs/flavours.md`):
//! - `api`: the gateway's private API (`DaskGateway.address`), for its own proxy only;
//! - `http`: the gateway's HTTP proxy (`Proxy.address`), the service's URL: hubfleet's proxy
//!   forwards `/services/<name>/` there (full path, so `Proxy.prefix` is that path);
//! - `scheduler`: the gateway's TCP proxy (`Proxy.tcp_address`): schedulers speak TLS over
//!   `gateway://`, which an HTTP proxy cannot carry, so clients connect to it directly.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hubfleet_config::dask::{BackendKind, DaskGateway};
use hubfleet_config::HubConfig;
use hubfleet_store::{NewToken, User};
use serde::Serialize;

use crate::services::ServiceDefinition;
use crate::{AppState, HubError, RoleDefinition, Settings};

/// How long a token the hub uses to list a user's clusters lives (it never leaves the hub).
const LISTING_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Users whose clusters are asked for at once.
const LISTING_CONCURRENCY: usize = 8;
/// How long one question to the gateway may take.
const GATEWAY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long every user's clusters, once asked for, serve the admin page and metrics scrapes:
/// a scrape every few seconds then costs one round of questions (one per user) per interval.
const LISTING_CACHE_LIFETIME: Duration = Duration::from_secs(10);
/// The most of a scheduler's `identity.json` the hub reads (a few workers' worth is a few
/// KiB; anything beyond is not a scheduler's answer).
const IDENTITY_MAX_BYTES: usize = 64 * 1024;
/// The most of the gateway's cluster listing the hub reads for one user.
const CLUSTERS_MAX_BYTES: usize = 4 * 1024 * 1024;

/// The gateway as this hub runs it.
#[derive(Debug)]
pub struct Gateway {
    pub service_name: String,
    pub api_address: SocketAddr,
    pub http_address: SocketAddr,
    pub scheduler_address: SocketAddr,
    pub backend: BackendKind,
    python_env: PathBuf,
    config_path: PathBuf,
    values: DaskGateway,
    /// Per user: a token scoped to the gateway only, for listing their clusters.
    listing_tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// Every user's clusters, shared by the admin page and metrics for a few seconds.
    listing_cache: SharedCache<Listing>,
    /// The Unix accounts `LocalBackend` may run clusters as: the local spawner's.
    accounts: hubfleet_spawn::system_user::SystemAccounts,
    /// For the gateway's API and schedulers' pages; never follows a redirect (a scheduler is
    /// its user's code).
    client: reqwest::Client,
}

/// LocalBackend looks a cluster's user name up as a Unix account; hubfleet's accounts are
/// `hubfleet_spawn::system_user::account_name` of the hub's name (`alice` → `jupyter-alice`),
/// written again here in Python (a test in this module holds the two together).
const LOCAL_BACKEND_ACCOUNTS: &str = r#"
import pwd
from dask_gateway_server.backends import local as _local

def _account(name):
    escaped = ""
    for b in name.encode():
        if 97 <= b <= 122 or 48 <= b <= 57 or (b == 45 and escaped):
            escaped += chr(b)
        else:
            escaped += "_%02x" % b
    room = 32 - len("jupyter-")
    if len(escaped) > room:
        h = 0xCBF29CE484222325
        for b in name.encode():
            h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
        escaped = escaped[: room - 17] + "-" + "%016x" % h
    return "jupyter-" + escaped

def _usable_account(name):
    # The local spawner's rule (hubfleet_spawn::system_user::SystemAccounts): only accounts
    # the hub made (in its record, with their uid) or the operator listed. An existing
    # `jupyter-<name>` is otherwise someone else's, whose files a cluster would run with.
    account = _account(name)
    try:
        entry = pwd.getpwnam(account)
    except KeyError:
        raise PermissionError(
            f"no Unix account {account} for hub user {name!r}: start their server once "
            "(the hub makes the account), then start the cluster again"
        ) from None
    if entry.pw_uid == 0:
        raise PermissionError(f"refusing to run the Dask cluster of hub user {name!r} as {account}: it is root")
    if account in _EXISTING_ACCOUNTS:
        return entry
    try:
        with open(_ACCOUNTS_RECORD) as record:
            made = [line.split() for line in record if not line.startswith('#')]
    except FileNotFoundError:
        made = []
    if [account, str(entry.pw_uid)] in made:
        return entry
    raise PermissionError(
        f"refusing to run the Dask cluster of hub user {name!r} as the Unix account {account} "
        f"(uid {entry.pw_uid}): this hub did not create it (it is not in {_ACCOUNTS_RECORD}) "
        "and hubfleet.local.existing_system_users does not list it. If it is meant for this "
        "user, list it there; otherwise remove or rename that account"
    )

_local.getpwnam = _usable_account

# dask-gateway-server 2026.3.0 adds the TLS files to the paths it chowns one character at a
# time (`paths.extend(path)`), which chowns "/" to the cluster's user. Chown only whole paths
# under the clusters' directory, and the TLS files themselves.
import os as _os

def _set_file_permissions(self, paths, username):
    root = _os.path.realpath(self.clusters_directory) + _os.sep
    whole = [p for p in paths if len(p) > 1 and _os.path.realpath(p).startswith(root)]
    for p in list(whole):
        if _os.path.basename(p) == ".certs":
            whole += [_os.path.join(p, f) for f in _os.listdir(p)]
    account = _local.getpwnam(username)
    for p in whole:
        _os.chown(p, account.pw_uid, account.pw_gid)

_local.LocalBackend.set_file_permissions = _set_file_permissions
"#;

/// Every user's clusters, and the users the gateway did not answer for (`user: error`).
#[derive(Debug, Default, Clone)]
pub struct Listing {
    pub rows: Vec<ClusterRow>,
    pub failed: Vec<String>,
}

/// One cluster, as the admin page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterRow {
    pub user: String,
    pub name: String,
    pub status: String,
    /// `None` when the scheduler did not say (not running yet).
    pub workers: Option<u64>,
    pub threads: Option<u64>,
    pub memory: Option<String>,
}

impl Gateway {
    /// The gateway of `config`, or `None` when `dask-gateway.enabled` is off. Unset ports are
    /// free ones picked now.
    pub fn from_config(config: &HubConfig) -> Result<Option<Gateway>, HubError> {
        let values = &config.dask_gateway;
        if !values.enabled {
            return Ok(None);
        }
        let python_env = config.python_env().ok_or_else(|| {
            HubError::Config(
                "dask-gateway.enabled needs hubfleet.local.python_env (a Python environment with dask-gateway-server[local])".into(),
            )
        })?;
        for program in ["dask-gateway-server", "dask"] {
            let path = python_env.join("bin").join(program);
            if !path.exists() {
                return Err(HubError::Config(format!(
                    "dask-gateway.enabled: {} is missing; install the gateway into hubfleet.local.python_env ({}): pip install 'dask-gateway-server[local]' distributed dask-gateway",
                    path.display(),
                    python_env.display()
                )));
            }
        }
        let data_dir = config.data_dir().join("dask-gateway");
        // Ports picked once are kept (schedulers call back to the gateway's API, and running
        // servers hold the scheduler address), so a restarted hub's gateway keeps its clusters.
        let remembered_path = data_dir.join("addresses.json");
        let remembered: BTreeMap<String, SocketAddr> = std::fs::read_to_string(&remembered_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let mut picked = BTreeMap::new();
        let mut pick = |key: &str, set: Option<SocketAddr>| -> Result<SocketAddr, HubError> {
            let addr = match set.or_else(|| remembered.get(key).copied()) {
                Some(addr) => addr,
                None => free_port()?,
            };
            picked.insert(key.to_owned(), addr);
            Ok(addr)
        };
        let api_address = pick("api", values.local.api_address)?;
        let http_address = pick("http", values.local.http_address)?;
        let scheduler_address = pick("scheduler", values.local.scheduler_address)?;
        crate::private_file::write(
            &remembered_path,
            serde_json::to_string(&picked)
                .unwrap_or_default()
                .as_bytes(),
        )
        .map_err(|e| HubError::Config(format!("{}: {e}", remembered_path.display())))?;
        let backend = match values.local.backend {
            BackendKind::Auto
                if config.hubfleet.local.system_users && nix::unistd::geteuid().is_root() =>
            {
                BackendKind::Local
            }
            BackendKind::Auto => BackendKind::UnsafeLocal,
            chosen => chosen,
        };
        Ok(Some(Gateway {
            service_name: values.service_name().to_owned(),
            api_address,
            http_address,
            scheduler_address,
            backend,
            python_env,
            config_path: data_dir.join("dask_gateway_config.py"),
            values: values.clone(),
            listing_tokens: Mutex::new(HashMap::new()),
            listing_cache: SharedCache::new(LISTING_CACHE_LIFETIME, Box::new(Instant::now)),
            accounts: hubfleet_spawn::system_user::SystemAccounts::of_data_dir(
                &config.data_dir(),
                &config.hubfleet.local.existing_system_users,
            ),
            client: reqwest::Client::builder()
                .timeout(GATEWAY_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| HubError::Config(format!("the Dask gateway's HTTP client: {e}")))?,
        }))
    }

    /// The scope a token needs for the gateway to accept it (`use_service_access_scopes`).
    pub fn access_scope(&self) -> String {
        format!("access:services!service={}", self.service_name)
    }

    /// Every user holds the access scope: add it to the `user` role (`hub.loadRoles.user`, or
    /// upstream's default `self`), as daskhub setups do.
    pub fn grant_access(&self, roles: &mut Vec<RoleDefinition>) {
        let scope = self.access_scope();
        match roles.iter_mut().find(|r| r.name == "user") {
            Some(role) if !role.scopes.contains(&scope) => role.scopes.push(scope),
            Some(_) => {}
            None => roles.push(RoleDefinition {
                name: "user".into(),
                description: "Standard user privileges, and the Dask gateway".into(),
                scopes: vec!["self".into(), scope],
                ..Default::default()
            }),
        }
    }

    /// The service path: `/services/dask-gateway` (under the base URL), without the final `/`.
    fn prefix(&self, settings: &Settings) -> String {
        settings
            .with_base(&format!("/services/{}/", self.service_name))
            .trim_end_matches('/')
            .to_owned()
    }

    /// What users' servers get, as daskhub sets it (`daskhub-01-add-dask-gateway-values`):
    /// the API through the hub's proxy, as daskhub's `proxy-public`. With subdomains the
    /// service is on a host of its own, which servers may not resolve: they call the gateway's
    /// HTTP proxy on this machine instead, and dashboard links take the service's host.
    pub fn server_env(&self, settings: &Settings) -> BTreeMap<String, String> {
        let prefix = self.prefix(settings);
        let (address, public) = match &settings.subdomain_host {
            Some(_) => (
                format!("http://{}{prefix}", self.http_address),
                format!("{}{prefix}/", settings.service_origin(&self.service_name)),
            ),
            None => (
                format!("{}{prefix}", settings.internal_base_url),
                format!("{prefix}/"),
            ),
        };
        BTreeMap::from([
            ("DASK_GATEWAY__ADDRESS".into(), address),
            (
                "DASK_GATEWAY__PROXY_ADDRESS".into(),
                format!("gateway://{}", self.scheduler_address),
            ),
            ("DASK_GATEWAY__PUBLIC_ADDRESS".into(), public),
            ("DASK_GATEWAY__AUTH__TYPE".into(), "jupyterhub".into()),
        ])
    }

    /// The gateway's config file, generated from the values.
    pub fn config_text(&self, settings: &Settings) -> String {
        let g = &self.values.gateway;
        let dask = self.python_env.join("bin/dask").display().to_string();
        let mut out = String::from(
            "# Generated by hubfleet from the dask-gateway: values at every start; do not edit.\n",
        );
        let mut set = |key: &str, value: String| out.push_str(&format!("c.{key} = {value}\n"));
        set("DaskGateway.address", py_str(&self.api_address.to_string()));
        set("Proxy.address", py_str(&self.http_address.to_string()));
        set(
            "Proxy.tcp_address",
            py_str(&self.scheduler_address.to_string()),
        );
        set("Proxy.prefix", py_str(&self.prefix(settings)));
        set(
            "DaskGateway.authenticator_class",
            py_str("dask_gateway_server.auth.JupyterHubAuthenticator"),
        );
        set(
            "JupyterHubAuthenticator.jupyterhub_service_name",
            py_str(&self.service_name),
        );
        let backend = match self.backend {
            BackendKind::Local => "dask_gateway_server.backends.local.LocalBackend",
            _ => "dask_gateway_server.backends.local.UnsafeLocalBackend",
        };
        set("DaskGateway.backend_class", py_str(backend));
        // Clusters are kept in a database, so that they outlive the gateway (and the hub), as
        // users' servers do; its secrets are encrypted with DASK_GATEWAY_ENCRYPT_KEYS.
        set(
            "DBBackendBase.db_url",
            py_str(&format!(
                "sqlite:///{}",
                self.state_dir().join("gateway.sqlite").display()
            )),
        );
        set("DBBackendBase.stop_clusters_on_shutdown", "False".into());
        set(
            "LocalBackend.clusters_directory",
            py_str(&self.clusters_dir().display().to_string()),
        );
        let level = g.loglevel.as_deref().unwrap_or("INFO").to_uppercase();
        set("DaskGateway.log_level", py_str(&level));
        set(
            "ClusterConfig.scheduler_cmd",
            format!("[{}, \"scheduler\"]", py_str(&dask)),
        );
        set(
            "ClusterConfig.worker_cmd",
            format!("[{}, \"worker\"]", py_str(&dask)),
        );
        let scheduler = &g.backend.scheduler;
        let worker = &g.backend.worker;
        // The local backend takes whole cores and one memory size: the limit, else the request.
        let cores = |c: &hubfleet_config::dask::Cores| {
            c.limit
                .or(c.request)
                .map(|m| m.div_ceil(1000).max(1).to_string())
        };
        let memory =
            |m: &hubfleet_config::dask::Memory| m.limit.clone().or_else(|| m.request.clone());
        if let Some(v) = cores(&scheduler.cores) {
            set("ClusterConfig.scheduler_cores", v);
        }
        if let Some(v) = memory(&scheduler.memory) {
            set("ClusterConfig.scheduler_memory", py_str(&v));
        }
        if let Some(v) = cores(&worker.cores) {
            set("ClusterConfig.worker_cores", v);
        }
        if let Some(v) = memory(&worker.memory) {
            set("ClusterConfig.worker_memory", py_str(&v));
        }
        if let Some(v) = worker.threads {
            set("ClusterConfig.worker_threads", v.to_string());
        }
        for (key, value) in g.cluster_manager.cluster_config() {
            set(key, value);
        }
        if self.backend == BackendKind::Local {
            let record = self
                .accounts
                .record
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            out.push_str(&format!(
                "\n_ACCOUNTS_RECORD = {}\n_EXISTING_ACCOUNTS = {}\n",
                py_str(&record),
                serde_json::to_string(&self.accounts.existing).unwrap_or_else(|_| "[]".into())
            ));
            out.push_str(LOCAL_BACKEND_ACCOUNTS);
        }
        for (name, code) in &g.extra_config {
            out.push_str(&format!(
                "\n# dask-gateway.gateway.extraConfig.{name}\n{code}\n"
            ));
        }
        out
    }

    fn state_dir(&self) -> PathBuf {
        self.config_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    fn clusters_dir(&self) -> PathBuf {
        self.state_dir().join("clusters")
    }

    /// The key the gateway encrypts its database's secrets with: made once (32 random bytes,
    /// base64), kept 0600 in the data directory.
    fn encrypt_key(&self) -> std::io::Result<String> {
        use base64::Engine;
        let path = self.state_dir().join("encrypt-key");
        if let Ok(key) = std::fs::read_to_string(&path) {
            if !key.trim().is_empty() {
                return Ok(key.trim().to_owned());
            }
        }
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
        let key = base64::engine::general_purpose::URL_SAFE.encode(bytes);
        crate::private_file::write(&path, key.as_bytes())?;
        Ok(key)
    }

    /// The managed service that runs the gateway.
    pub fn service(&self, encrypt_key: String) -> ServiceDefinition {
        ServiceDefinition {
            environment: BTreeMap::from([("DASK_GATEWAY_ENCRYPT_KEYS".to_owned(), encrypt_key)]),
            name: self.service_name.clone(),
            url: format!("http://{}", self.http_address),
            command: vec![
                self.python_env
                    .join("bin/dask-gateway-server")
                    .display()
                    .to_string(),
                "--config".into(),
                self.config_path.display().to_string(),
            ],
            display: false,
            info: serde_json::json!({"flavour": "daskhub"}),
            from_config: true,
            ..Default::default()
        }
    }

    /// Where hubfleet's proxy sends the gateway's HTTP API; what the hub itself queries.
    fn api_base(&self, settings: &Settings) -> String {
        format!("http://{}{}", self.http_address, self.prefix(settings))
    }

    /// A token of `user`'s that only reaches the gateway, made once an hour and kept in memory.
    async fn listing_token(&self, state: &AppState, user: &User) -> Result<String, HubError> {
        if let Some((token, made)) = self
            .listing_tokens
            .lock()
            .expect("dask tokens lock")
            .get(&user.name)
        {
            if made.elapsed() < LISTING_TOKEN_LIFETIME - Duration::from_secs(60) {
                return Ok(token.clone());
            }
        }
        let token = hubfleet_store::new_token();
        let expires = chrono::Utc::now()
            + chrono::Duration::from_std(LISTING_TOKEN_LIFETIME).unwrap_or_default();
        state
            .store
            .insert_token(
                &token,
                &NewToken {
                    user_id: Some(user.id),
                    service_id: None,
                    server_id: None,
                    client_id: "jupyterhub",
                    session_id: None,
                    scopes: &[self.access_scope()],
                    note: "hubfleet: the admin page's view of this user's Dask clusters",
                    expires_at: Some(expires),
                },
            )
            .await?;
        self.listing_tokens
            .lock()
            .expect("dask tokens lock")
            .insert(user.name.clone(), (token.clone(), Instant::now()));
        Ok(token)
    }

    /// `user`'s clusters, asked of the gateway with their own identity (its API lists only the
    /// caller's clusters).
    pub async fn clusters_of(
        &self,
        state: &AppState,
        user: &User,
    ) -> Result<Vec<ClusterRow>, HubError> {
        let token = self.listing_token(state, user).await?;
        let base = self.api_base(&state.settings());
        let client = &self.client;
        let reply = client
            .get(format!("{base}/api/v1/clusters/"))
            .header("Authorization", format!("jupyterhub {token}"))
            .send()
            .await
            .map_err(|e| gateway_error(&e))?;
        if !reply.status().is_success() {
            return Err(HubError::Config(format!(
                "the Dask gateway answered {} listing {}'s clusters",
                reply.status(),
                user.name
            )));
        }
        let body = read_capped(reply, CLUSTERS_MAX_BYTES)
            .await
            .map_err(|e| HubError::Config(format!("listing {}'s Dask clusters: {e}", user.name)))?;
        let clusters: BTreeMap<String, serde_json::Value> =
            serde_json::from_slice(&body).map_err(|e| {
                HubError::Config(format!(
                    "the Dask gateway's listing of {}'s clusters is not its JSON: {e}",
                    user.name
                ))
            })?;
        let mut rows = Vec::new();
        for (name, cluster) in clusters {
            let status = cluster["status"].as_str().unwrap_or("").to_owned();
            let mut row = ClusterRow {
                user: user.name.clone(),
                name: name.clone(),
                status: status.clone(),
                workers: None,
                threads: None,
                memory: None,
            };
            if status == "RUNNING" {
                // The scheduler's own account of its workers, through the gateway's dashboard
                // route.
                match scheduler_identity(client, &base, &name).await {
                    Err(e) => tracing::warn!(
                        user = %user.name, cluster = %name, error = %e,
                        "reading a Dask scheduler's identity.json: its workers are not shown"
                    ),
                    Ok(identity) => {
                        if let Some(workers) = identity["workers"].as_object() {
                            row.workers = Some(workers.len() as u64);
                            row.threads = Some(
                                workers
                                    .values()
                                    .filter_map(|w| w["nthreads"].as_u64())
                                    .sum(),
                            );
                            let bytes: u64 = workers
                                .values()
                                .filter_map(|w| w["memory_limit"].as_u64())
                                .sum();
                            row.memory = Some(hubfleet_config::profiles::format_bytes(bytes));
                        }
                    }
                }
            }
            rows.push(row);
        }
        Ok(rows)
    }

    /// Every user's clusters, as asked of the gateway at most [`LISTING_CACHE_LIFETIME`] ago:
    /// the admin page and every metrics scrape share one round of questions.
    pub async fn all_clusters(&self, state: &AppState) -> Result<Listing, HubError> {
        self.listing_cache
            .get_or_refresh(|| self.ask_all_clusters(state))
            .await
    }

    /// Every user's clusters, a few users at a time. One request per user: the gateway has no
    /// listing of everyone's. Users the gateway could not answer for are counted in `failed`
    /// (and logged), so that a gateway that is down does not look like one without clusters.
    async fn ask_all_clusters(&self, state: &AppState) -> Result<Listing, HubError> {
        use futures_util::StreamExt;
        let users = state.store.list_users().await?;
        let answers: Vec<Result<Vec<ClusterRow>, String>> = futures_util::stream::iter(users)
            .map(|user| async move {
                self.clusters_of(state, &user).await.map_err(|e| {
                    tracing::warn!(user = %user.name, error = %e, "listing Dask clusters");
                    format!("{}: {e}", user.name)
                })
            })
            .buffer_unordered(LISTING_CONCURRENCY)
            .collect()
            .await;
        let mut listing = Listing::default();
        for answer in answers {
            match answer {
                Ok(mut rows) => listing.rows.append(&mut rows),
                Err(e) => listing.failed.push(e),
            }
        }
        listing
            .rows
            .sort_by(|a, b| (&a.user, &a.name).cmp(&(&b.user, &b.name)));
        listing.failed.sort();
        Ok(listing)
    }
}

/// A scheduler's own account of its workers, through the gateway's dashboard route.
async fn scheduler_identity(
    client: &reqwest::Client,
    base: &str,
    cluster: &str,
) -> Result<serde_json::Value, String> {
    let reply = client
        .get(format!("{base}/clusters/{cluster}/json/identity.json"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !reply.status().is_success() {
        return Err(format!("the scheduler answered {}", reply.status()));
    }
    let body = read_capped(reply, IDENTITY_MAX_BYTES).await?;
    serde_json::from_slice(&body).map_err(|e| format!("not the scheduler's JSON: {e}"))
}

/// An answer's body, refused once it grows beyond `cap` bytes (never held whole in memory
/// beyond that): what a cluster's scheduler sends is its user's to choose.
async fn read_capped(mut reply: reqwest::Response, cap: usize) -> Result<Vec<u8>, String> {
    if reply.content_length().is_some_and(|n| n > cap as u64) {
        return Err(format!(
            "the answer of {} is larger than {} KiB; not read",
            reply.url().path(),
            cap / 1024
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = reply.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > cap {
            return Err(format!(
                "the answer of {} is larger than {} KiB; not read",
                reply.url().path(),
                cap / 1024
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A value every caller shares for `lifetime` after it was made: the first caller after
/// that makes it again while the others wait for it (one refresh at a time). Failures are
/// not kept.
pub(crate) struct SharedCache<T> {
    lifetime: Duration,
    clock: Box<dyn Fn() -> Instant + Send + Sync>,
    slot: tokio::sync::Mutex<Option<(Instant, T)>>,
}

impl<T> std::fmt::Debug for SharedCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCache")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl<T: Clone> SharedCache<T> {
    pub(crate) fn new(lifetime: Duration, clock: Box<dyn Fn() -> Instant + Send + Sync>) -> Self {
        SharedCache {
            lifetime,
            clock,
            slot: tokio::sync::Mutex::new(None),
        }
    }

    pub(crate) async fn get_or_refresh<F, Fut, E>(&self, refresh: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let mut slot = self.slot.lock().await;
        let now = (self.clock)();
        if let Some((made, value)) = slot.as_ref() {
            if now.saturating_duration_since(*made) < self.lifetime {
                return Ok(value.clone());
            }
        }
        let value = refresh().await?;
        *slot = Some(((self.clock)(), value.clone()));
        Ok(value)
    }
}

fn gateway_error(e: &reqwest::Error) -> HubError {
    HubError::Config(format!("the Dask gateway did not answer: {e}"))
}

/// A Python string literal (JSON's escapes are Python's for these).
fn py_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// A local port, never one handed to a server that may not listen on it yet (the spawner's
/// reservations).
fn free_port() -> Result<SocketAddr, HubError> {
    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    hubfleet_spawn::free_port(ip)
        .map(|port| SocketAddr::new(ip, port))
        .map_err(|e| HubError::Config(format!("no free local port for the Dask gateway: {e}")))
}

/// Write the gateway's config (0600, in a 0700 directory) and start it as a managed service.
pub async fn start(state: &AppState, gateway: &Gateway) -> Result<(), HubError> {
    crate::private_file::write(
        &gateway.config_path,
        gateway.config_text(&state.settings()).as_bytes(),
    )
    .map_err(|e| {
        HubError::Config(format!(
            "writing the Dask gateway's config {}: {e}",
            gateway.config_path.display()
        ))
    })?;
    std::fs::create_dir_all(gateway.clusters_dir()).map_err(|e| {
        HubError::Config(format!("making {}: {e}", gateway.clusters_dir().display()))
    })?;
    if gateway.backend == BackendKind::Local {
        // Users' accounts pass through to their clusters' own directories (0700, theirs);
        // they can list neither directory.
        use std::os::unix::fs::PermissionsExt;
        for dir in [gateway.state_dir(), gateway.clusters_dir()] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
                .map_err(|e| HubError::Config(format!("making {} passable: {e}", dir.display())))?;
        }
    }
    let key = gateway
        .encrypt_key()
        .map_err(|e| HubError::Config(format!("the Dask gateway's encryption key: {e}")))?;
    state.services.add(state, gateway.service(key)).await?;
    tracing::info!(
        service = %gateway.service_name,
        http = %gateway.http_address,
        scheduler = %gateway.scheduler_address,
        backend = ?gateway.backend,
        "dask-gateway-server runs as a managed service"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::SharedCache;

    /// A scrape within the lifetime reuses the last listing; callers at once share one
    /// refresh; a failure is not kept. The clock is the test's, moved by hand.
    #[tokio::test]
    async fn the_listing_is_asked_for_once_per_lifetime() {
        let start = Instant::now();
        let now = Arc::new(std::sync::Mutex::new(start));
        let clock = {
            let now = now.clone();
            Box::new(move || *now.lock().unwrap())
        };
        let cache = SharedCache::<usize>::new(Duration::from_secs(10), clock);
        let asked = AtomicUsize::new(0);
        let ask = || async { Ok::<_, String>(asked.fetch_add(1, Ordering::SeqCst) + 1) };
        assert_eq!(cache.get_or_refresh(ask).await, Ok(1));
        *now.lock().unwrap() = start + Duration::from_secs(9);
        assert_eq!(cache.get_or_refresh(ask).await, Ok(1), "still fresh");
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        *now.lock().unwrap() = start + Duration::from_secs(10);
        let together =
            futures_util::future::join_all((0..5).map(|_| cache.get_or_refresh(ask))).await;
        assert_eq!(together, vec![Ok(2); 5], "five scrapes at once, one round");
        assert_eq!(asked.load(Ordering::SeqCst), 2);
        *now.lock().unwrap() = start + Duration::from_secs(25);
        let failed = cache
            .get_or_refresh(|| async { Err::<usize, _>("gateway down".to_string()) })
            .await;
        assert_eq!(failed, Err("gateway down".to_string()));
        assert_eq!(
            cache.get_or_refresh(ask).await,
            Ok(3),
            "a failure is not kept"
        );
    }

    /// A scheduler's answer beyond the cap is refused, whether it says its length or streams.
    #[tokio::test]
    async fn scheduler_answers_are_read_with_a_cap() {
        use axum::routing::get;
        let big = vec![b' '; super::IDENTITY_MAX_BYTES + 1];
        let streamed = big.clone();
        let app = axum::Router::new()
            .route("/small", get(|| async { r#"{"workers": {}}"# }))
            .route("/big", get(move || async move { big }))
            .route(
                "/streamed",
                get(move || async move {
                    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                        streamed.chunks(4096).map(|c| Ok(c.to_vec())).collect();
                    axum::body::Body::from_stream(futures_util::stream::iter(chunks))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = reqwest::Client::new();
        let read = |path: &'static str| {
            let client = client.clone();
            async move {
                let reply = client
                    .get(format!("http://{address}{path}"))
                    .send()
                    .await
                    .unwrap();
                super::read_capped(reply, super::IDENTITY_MAX_BYTES).await
            }
        };
        assert_eq!(
            read("/small").await.unwrap(),
            br#"{"workers": {}}"#.to_vec()
        );
        for path in ["/big", "/streamed"] {
            let error = read(path).await.unwrap_err();
            assert!(
                error.contains(path) && error.contains("larger than 64 KiB"),
                "{error}"
            );
        }
    }

    /// LocalBackend runs clusters only as accounts the local spawner may use: recorded by it
    /// (name and uid) or listed by the operator. The accounts are the script's stand-ins for
    /// `pwd`; the record is written by the spawner's own code.
    #[test]
    fn local_backend_uses_only_the_hubs_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let accounts = hubfleet_spawn::system_user::SystemAccounts::of_data_dir(
            dir.path(),
            &["jupyter-dee".to_owned()],
        );
        accounts
            .remember("jupyter-alice", nix::unistd::Uid::from_raw(4242))
            .unwrap();
        accounts
            .remember("jupyter-carol", nix::unistd::Uid::from_raw(6000))
            .unwrap();
        let script = format!(
            "_ACCOUNTS_RECORD = {}\n_EXISTING_ACCOUNTS = {}\n{}\n{}",
            super::py_str(&accounts.record.clone().unwrap().display().to_string()),
            serde_json::to_string(&accounts.existing).unwrap(),
            python_before_dask_gateway(),
            r#"
import json, types
uids = {"jupyter-alice": 4242, "jupyter-bob": 5000, "jupyter-carol": 6001, "jupyter-dee": 7000, "jupyter-root": 0}
def fake(account):
    if account not in uids:
        raise KeyError(account)
    return types.SimpleNamespace(pw_uid=uids[account], pw_gid=uids[account])
pwd.getpwnam = fake
out = {}
for name in ["alice", "bob", "carol", "dee", "eve", "root"]:
    try:
        out[name] = _usable_account(name).pw_uid
    except PermissionError as e:
        out[name] = str(e)
print(json.dumps(out))
"#
        );
        let out = std::process::Command::new("python3")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out["alice"], 4242, "made by the hub");
        assert_eq!(out["dee"], 7000, "listed by the operator");
        for (name, why) in [
            ("bob", "this hub did not create it"),
            ("carol", "this hub did not create it"),
            ("eve", "no Unix account jupyter-eve"),
            ("root", "it is root"),
        ] {
            let refusal = out[name].as_str().unwrap_or_default();
            assert!(refusal.contains(why), "{name}: {}", out[name]);
        }
        assert!(out["bob"]
            .as_str()
            .unwrap()
            .contains("hubfleet.local.existing_system_users"));
    }

    /// The account mapping of [`super::LOCAL_BACKEND_ACCOUNTS`], without the gateway's imports.
    fn python_before_dask_gateway() -> String {
        super::LOCAL_BACKEND_ACCOUNTS
            .lines()
            .take_while(|l| !l.starts_with("_local."))
            .filter(|l| !l.contains("dask_gateway_server"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The Python account mapping of LocalBackend gives the accounts the local spawner makes.
    #[test]
    fn local_backend_accounts_match_the_spawners() {
        let names = [
            "alice",
            "Alice",
            "-x",
            "a.b@example.org",
            "someone-with-a-very-long-name-indeed",
            "é",
        ];
        let script = format!(
            "{}\nimport json, sys\nprint(json.dumps([_account(n) for n in json.load(sys.stdin)]))\n",
            super::LOCAL_BACKEND_ACCOUNTS
                .lines()
                .take_while(|l| !l.starts_with("_local."))
                .filter(|l| !l.contains("dask_gateway_server"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let mut child = std::process::Command::new("python3")
            .args(["-c", &script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(serde_json::to_string(&names).unwrap().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let python: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
        let rust: Vec<String> = names
            .iter()
            .map(|n| hubfleet_spawn::system_user::account_name(n))
            .collect();
        assert_eq!(python, rust);
    }
}
