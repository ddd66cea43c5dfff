//! Spawners: how a single-user server is started, watched and stopped.
//!
//! The hub owns the lifecycle (state machine, leases, tokens, OAuth clients, routes, the
//! readiness probe, the ledger, progress); a [`Spawner`] is the only one that knows how a
//! server runs: it turns a [`LaunchSpec`] into its own objects (a local process with its home,
//! log, account, mounts, cgroup and GPUs; a pod), reports progress while it starts, and finds
//! the server again from its saved [`SpawnState`] after a hub restart.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub mod cgroup;
mod gpus;
mod local;
pub mod mounts;
mod progress;
pub mod quota;
mod spec;
pub mod system_user;

pub use local::{
    free_port, process_alive, process_start_time, tail_log, LocalOptions, LocalProcessSpawner,
};
pub use progress::{ProgressSender, SpawnProgress};
pub use spec::{
    LaunchSpec, Limits, Owner, ProfileChoice, ResolvedProfile, Resources, ServerRef, Storage,
    GPU_RESOURCE,
};

/// The `PATH` of a server, after its environment's own `bin/`: the system's directories only,
/// never the hub's own `PATH` (which may hold the operator's private tools, as
/// `/root/.cargo/bin`).
pub const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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
    /// The start cannot be served as asked (e.g. more GPUs than are free): the user's to fix,
    /// so the hub answers 400 when it learns it before the start is recorded.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Other(String),
}

/// The end of a server's log, for the admin log viewer and the failed-spawn page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerLog {
    pub text: String,
    /// Where it comes from, for people: a file's path, a pod's name.
    pub source: String,
}

#[async_trait]
pub trait Spawner: Send + Sync + 'static {
    /// Can this start be served, now? Called before the hub records anything: a
    /// [`SpawnError::Refused`] is a 400 and nothing starts. Reserves nothing: `start` checks
    /// again (its spec then also has the hub's environment: token, URLs).
    async fn check(&self, _spec: &LaunchSpec) -> Result<(), SpawnError> {
        Ok(())
    }

    /// Start the server and return where it listens, reporting steps worth showing to
    /// `progress` as it goes. Must not wait for the server to answer: the hub probes it itself.
    /// A failed start leaves nothing behind.
    async fn start(
        &self,
        spec: &LaunchSpec,
        progress: &ProgressSender,
    ) -> Result<Started, SpawnError>;

    /// Is the server described by `state` still running?
    async fn poll(&self, state: &SpawnState) -> Result<PollStatus, SpawnError>;

    /// Stop the server: a polite signal first, a forced one after `grace`; free what it held.
    /// Stopping a server that is already gone is not an error.
    async fn stop(&self, state: &SpawnState, grace: Duration) -> Result<(), SpawnError>;

    /// At the hub's start, for each server that still runs, before any new start: take back
    /// what it holds (the local spawner's GPUs).
    async fn adopt(&self, _server: &ServerRef, _state: &SpawnState) {}

    /// At most the last `max_bytes` of the server's log (`state`: the running server's, when
    /// there is one). `None` when there is no log.
    async fn log_tail(
        &self,
        _server: &ServerRef,
        _state: Option<&SpawnState>,
        _max_bytes: u64,
    ) -> Option<ServerLog> {
        None
    }

    /// Add a line of the hub's to the server's log (e.g. that a kernel was killed at the
    /// memory limit), where the backend keeps one.
    async fn note_in_log(&self, _state: &SpawnState, _line: &str) {}

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
