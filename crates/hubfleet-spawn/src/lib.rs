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

mod local;

pub use local::{tail_log, LocalOptions, LocalProcessSpawner};

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
}
