//! Spawners: how a single-user server is started, watched and stopped.
//!
//! The hub owns the lifecycle (state machine, readiness probe, routes, database);
//! a [`Spawner`] only knows how to run one server process somewhere and how to
//! find it again from its saved [`SpawnState`] after a hub restart.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub mod cgroup;
mod local;
pub mod mounts;
pub mod quota;
pub mod system_user;

pub use local::{process_alive, process_start_time, tail_log, LocalOptions, LocalProcessSpawner};

/// The `PATH` of a server, after its environment's own `bin/`: the system's directories only,
/// never the hub's own `PATH` (which may hold the operator's private tools, as
/// `/root/.cargo/bin`).
pub const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Resource limits of a server (KubeSpawner's `mem_limit`, `mem_guarantee`, `cpu_limit`,
/// `cpu_guarantee`). Memory in bytes, CPU in millicores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub mem_limit: Option<u64>,
    pub mem_guarantee: Option<u64>,
    pub cpu_limit: Option<u64>,
    pub cpu_guarantee: Option<u64>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

/// A folder shown at `target` (absolute, usually inside the home): a bind mount of `source`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// Run the server as a Unix account of its own (created if missing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemUser {
    /// The account, e.g. `jupyter-alice` (see [`system_user::account_name`]).
    pub account: String,
    /// Run with this group as the primary group instead of the account's own (admins get the
    /// group that may write to the shared folder).
    pub group: Option<String>,
}

/// Memory as people write it: `1G`, `512M`, `1.5G`, else bytes.
pub fn format_bytes(bytes: u64) -> String {
    for (unit, factor) in [
        ("T", 1u64 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ] {
        if bytes >= factor {
            if bytes.is_multiple_of(factor) {
                return format!("{}{unit}", bytes / factor);
            }
            let s = format!("{:.2}", bytes as f64 / factor as f64);
            return format!("{}{unit}", s.trim_end_matches('0').trim_end_matches('.'));
        }
    }
    bytes.to_string()
}

/// Everything needed to launch one server. Built by the hub from config (protocol §5).
#[derive(Clone, Debug)]
pub struct LaunchSpec {
    /// Owner's user name.
    pub user: String,
    /// `""` for the default server.
    pub server_name: String,
    /// Program and arguments, e.g. `[".../bin/jupyterhub-singleuser"]`.
    pub cmd: Vec<String>,
    /// Environment for the server (protocol §5.1). The spawner adds
    /// `JUPYTERHUB_SERVICE_URL` once it has chosen where the server listens.
    pub env: BTreeMap<String, String>,
    /// URL prefix the server is served under, e.g. `/user/alice/`.
    pub service_prefix: String,
    /// Working directory and `HOME` for the server; created if missing.
    pub home_dir: PathBuf,
    /// Where stdout and stderr of the server go (appended).
    pub log_path: PathBuf,
    /// Memory and CPU limits (cgroups), if any.
    pub limits: Limits,
    /// Run as this Unix account instead of the hub's own user.
    pub system_user: Option<SystemUser>,
    /// Folders shown in the home (shared folders).
    pub mounts: Vec<Mount>,
    /// Most bytes the home may hold (`singleuser.storage.capacity`), as a project quota where
    /// the filesystem has them.
    pub storage_capacity: Option<u64>,
}

/// What a spawner persists about a started server, so a restarted hub can find it.
/// Opaque to the hub: stored as JSON in the servers table.
pub type SpawnState = serde_json::Value;

/// The result of a successful [`Spawner::start`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Started {
    /// Where the proxy should send requests, e.g. `http://127.0.0.1:47123` (no path).
    pub target: String,
    /// State to persist; handed back to `poll` and `stop`.
    pub state: SpawnState,
}

/// Whether a server process is still there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollStatus {
    Running,
    /// Exited, with its exit code when known.
    Exited(Option<i32>),
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("could not start `{program}` for {user}: {source}. Check that `singleuser.cmd` names an installed program (or set `hubfleet.local.python_env`)")]
    Exec {
        program: String,
        user: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not prepare {what} at {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no free port for the server: {0}")]
    NoPort(std::io::Error),
    #[error("saved server state is not understood ({0}); the server is treated as stopped")]
    BadState(String),
    #[error("{0}")]
    Other(String),
}

#[async_trait]
pub trait Spawner: Send + Sync + 'static {
    /// Start the server and return where it listens. Must not wait for readiness:
    /// the hub probes the server itself.
    async fn start(&self, spec: &LaunchSpec) -> Result<Started, SpawnError>;

    /// Is the server described by `state` still running?
    async fn poll(&self, state: &SpawnState) -> Result<PollStatus, SpawnError>;

    /// Stop the server: a polite signal first, a forced one after `grace`.
    /// Stopping a server that is already gone is not an error.
    async fn stop(&self, state: &SpawnState, grace: Duration) -> Result<(), SpawnError>;

    /// Why a server that is no longer running ended, when the spawner knows better than an
    /// exit code (e.g. `killed: memory limit 1G reached`). The reason is also written to the
    /// server's log. `None` when there is nothing to say.
    async fn exit_reason(&self, _state: &SpawnState) -> Option<String> {
        None
    }

    /// How many processes of a running server the kernel has killed at its memory limit (a
    /// kernel that grew too big, while the server itself lives on). `None` when the spawner
    /// cannot tell (no memory limit, no cgroup).
    async fn memory_kills(&self, _state: &SpawnState) -> Option<MemoryKills> {
        None
    }

    /// At the hub's start, after servers that still run were found again (`running`): remove
    /// what servers that are gone left behind (e.g. their cgroups, when a hub was killed
    /// outright). What was removed, for the log.
    async fn clean_up_leftovers(&self, _running: &[SpawnState]) -> Vec<String> {
        Vec::new()
    }
}

/// Processes of a server killed at its memory limit, counted since the server started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryKills {
    pub count: u64,
    /// The limit, in bytes, when known.
    pub limit: Option<u64>,
}

impl MemoryKills {
    /// What the server's log and the admin page say about one of these kills.
    pub fn message(&self) -> String {
        match self.limit {
            Some(limit) => format!(
                "a process of this server was killed: memory limit {} reached",
                format_bytes(limit)
            ),
            None => "a process of this server was killed: out of memory".to_string(),
        }
    }
}
