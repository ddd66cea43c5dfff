//! `hubfleet fleet supervise`: what runs one hub of the local target. It starts the hub's
//! `hubfleet serve` and starts it again, with a backoff, whenever it exits on its own (a crash,
//! a kill, the OOM killer); SIGTERM (from `fleet stop`, a `deploy` that restarts or removes the
//! hub) stops the hub and then the supervisor. Its state is `supervisor.json` in the hub's
//! directory (see docs/fleet.md, "How it runs").

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tokio::signal::unix::{signal, SignalKind};

use crate::fleet_local::{hub_health_ok, process_start, serve_command};

/// The first wait before starting a hub that died again; doubled at each crash in a row.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A hub that ran this long before it died starts again after [`FIRST_BACKOFF`].
const RAN_WELL: Duration = Duration::from_secs(60);
/// How long the hub has to stop on SIGTERM before it is killed (less than the 15 s `fleet`
/// gives the supervisor, so the supervisor always outlives its hub).
const STOP_GRACE: Duration = Duration::from_secs(10);

/// `hubs/<cluster>/<hub>/supervisor.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SupervisorState {
    /// The supervisor's pid and start time.
    pub pid: i32,
    pub start_time: u64,
    /// The hub's `hubfleet serve` (0 while it waits to start it again).
    pub serve_pid: i32,
    pub serve_start_time: u64,
    /// How many times the hub was started again after it died on its own.
    pub restarts: u32,
    /// How the hub last died, and when (UTC).
    pub last_exit: Option<String>,
    pub last_exit_at: Option<String>,
}

impl SupervisorState {
    pub fn file(hub_dir: &Path) -> PathBuf {
        hub_dir.join("supervisor.json")
    }

    pub fn read(hub_dir: &Path) -> Option<SupervisorState> {
        let text = std::fs::read_to_string(Self::file(hub_dir)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Whether the supervisor itself runs.
    pub fn alive(&self) -> bool {
        process_start(self.pid) == Some(self.start_time)
    }

    /// Whether the hub's `hubfleet serve` runs.
    pub fn serve_alive(&self) -> bool {
        process_start(self.serve_pid) == Some(self.serve_start_time)
    }

    fn write(&self, hub_dir: &Path) -> Result<()> {
        let path = Self::file(hub_dir);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn say(what: &str) {
    eprintln!("{} hubfleet fleet supervise: {what}", now());
}

/// Run `fleet supervise`: false when the hub exited by itself (not killed by a signal) before it
/// ever answered (nothing to restart: its config or environment is wrong; the log says why).
pub fn run(hub_dir: &Path, port: u16) -> Result<bool> {
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(supervise(hub_dir.to_path_buf(), port))
    })
}

/// SIGTERM to the hub, SIGKILL after [`STOP_GRACE`]; waits for it.
async fn stop_child(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        say("the hub did not stop within 10 s of SIGTERM: killed");
        let _ = child.kill().await;
    }
}

async fn supervise(hub_dir: PathBuf, port: u16) -> Result<bool> {
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let exe = std::env::current_exe()
        .context("cannot find hubfleet's own executable")?
        .display()
        .to_string();
    let me = std::process::id() as i32;
    let mut state = SupervisorState {
        pid: me,
        start_time: process_start(me).unwrap_or_default(),
        serve_pid: 0,
        serve_start_time: 0,
        restarts: 0,
        last_exit: None,
        last_exit_at: None,
    };
    let mut backoff = FIRST_BACKOFF;
    let mut answered = false;
    loop {
        let command = serve_command(&exe, &hub_dir);
        let mut child = tokio::process::Command::new(&command[0])
            .args(&command[1..])
            .stdin(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start `{}`", command.join(" ")))?;
        let pid = child.id().unwrap_or_default() as i32;
        state.serve_pid = pid;
        state.serve_start_time = process_start(pid).unwrap_or_default();
        state.write(&hub_dir)?;
        let started = Instant::now();
        let status = loop {
            tokio::select! {
                status = child.wait() => break status?,
                _ = term.recv() => {
                    stop_child(&mut child).await;
                    return Ok(true);
                }
                _ = int.recv() => {
                    stop_child(&mut child).await;
                    return Ok(true);
                }
                _ = tokio::time::sleep(Duration::from_millis(200)), if !answered => {
                    answered = tokio::task::spawn_blocking(move || hub_health_ok(port))
                        .await
                        .unwrap_or(false);
                }
            }
        };
        // A hub killed by a signal is always started again; one that exited by itself before it
        // ever answered has a config or environment it refuses (its log says why).
        if !answered && std::os::unix::process::ExitStatusExt::signal(&status).is_none() {
            say(&format!(
                "the hub (pid {pid}) exited ({status}) before it ever answered /hub/health: not started again"
            ));
            return Ok(false);
        }
        if started.elapsed() >= RAN_WELL {
            backoff = FIRST_BACKOFF;
        }
        state.restarts += 1;
        state.serve_pid = 0;
        state.serve_start_time = 0;
        state.last_exit = Some(status.to_string());
        state.last_exit_at = Some(now());
        state.write(&hub_dir)?;
        say(&format!(
            "the hub (pid {pid}) exited on its own ({status}); starting it again in {} s (restart {})",
            backoff.as_secs(),
            state.restarts
        ));
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = term.recv() => return Ok(true),
            _ = int.recv() => return Ok(true),
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
