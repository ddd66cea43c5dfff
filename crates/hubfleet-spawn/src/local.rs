//! [`LocalProcessSpawner`]: runs each single-user server as a local process of
//! the hub's own user, like JupyterHub's `LocalProcessSpawner` (protocol §5.1, §6).
//!
//! * What a server gets on this machine is decided here, from [`LocalOptions`]: its home
//!   (`<homes_dir>/<user>`), its log (`<logs_dir>/<user>[--<server>].log`), its Unix account
//!   (with `system_users`), the shared folders in its home, its cgroup and its GPUs.
//! * The server gets a fresh environment (`env_clear`): only the variables named
//!   in [`LocalOptions::env_keep`] are copied from the hub, plus `USER`/`SHELL`,
//!   `HOME`, the spec's own variables, `JUPYTERHUB_SERVICE_URL` and, with GPUs configured,
//!   `CUDA_VISIBLE_DEVICES`/`NVIDIA_VISIBLE_DEVICES`. Secrets of the hub such as
//!   `CONFIGPROXY_AUTH_TOKEN` therefore never leak into user servers.
//! * The server runs in its own process group, so it outlives the hub and is not
//!   hit by a Ctrl-C sent to the hub's terminal.
//! * The persisted state is `{"pid", "pgid", "start_time", "port", "ip", "user", "server",
//!   "log", "gpus", …}`;
//!   `start_time` (field 22 of `/proc/<pid>/stat`) guards against pid reuse: a
//!   pid whose start time differs is another process and is never signalled.
//! * Processes this spawner started are reaped by a background task, so there
//!   are no zombies and their exit codes are known. Processes found again after a
//!   hub restart are watched through `/proc` only.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde_json::json;
use tokio::sync::watch;

use crate::cgroup::Cgroup;
use crate::gpus::GpuPool;
use crate::mounts::Mount;
use crate::{
    format_bytes, mounts, system_user, LaunchSpec, MemoryKills, Owner, PollStatus, ProgressSender,
    ServerLog, ServerRef, SpawnError, SpawnState, Spawner, Started,
};

/// How often `stop` looks whether the process is gone.
const STOP_POLL: Duration = Duration::from_millis(50);
/// How long `stop` waits for a process to vanish after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How long `poll` waits for the reaper when it sees an unreaped zombie child.
const REAP_WAIT: Duration = Duration::from_secs(1);
/// Exit records of own children are forgotten this long after the exit.
const EXIT_RECORD_TTL: Duration = Duration::from_secs(3600);

/// Empty server cgroups younger than this are left at start-up: a start (maybe another hub's
/// on this machine) is about to move its server in.
const STALE_CGROUP_AGE: Duration = Duration::from_secs(60);

/// Variables never copied from the hub's environment, even if listed in `env_keep`.
const NEVER_KEEP: &[&str] = &["CONFIGPROXY_AUTH_TOKEN"];

/// Options of the [`LocalProcessSpawner`]: everything about this machine that servers get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalOptions {
    /// Address servers listen on (default `127.0.0.1`).
    pub ip: IpAddr,
    /// Variables copied from the hub's environment into the server's
    /// (JupyterHub's `LocalProcessSpawner.env_keep`, without `PATH`). `CONFIGPROXY_AUTH_TOKEN`
    /// is never copied. A server whose spec sets no `PATH` gets [`crate::SYSTEM_PATH`].
    pub env_keep: Vec<String>,
    /// Run servers as root when the hub is root and the spec names no system user
    /// (`hubfleet.local.allow_root`); jupyter programs then get `--allow-root`. Without it such a
    /// start is refused.
    pub allow_root: bool,
    /// With system users: which existing accounts servers may run as.
    pub system_accounts: system_user::SystemAccounts,
    /// Run each user's server as a Unix account of their own, `jupyter-<name>`
    /// (`hubfleet.local.system_users`).
    pub system_users: bool,
    /// Where servers' logs go: `<logs_dir>/<user>.log`, `<user>--<server>.log`.
    pub logs_dir: PathBuf,
    /// Where homes live: `<homes_dir>/<user>` (`hubfleet.local.homes_dir`).
    pub homes_dir: PathBuf,
    /// The folder shown in every home as `shared` (read-only; admins also get it read-write as
    /// `shared-readwrite`): `hubfleet.local.shared_dir`. `None`: no shared folder.
    pub shared_dir: Option<PathBuf>,
    /// GPU device indices servers may be given (`hubfleet.local.gpus`).
    pub gpus: Vec<u32>,
}

impl LocalOptions {
    /// The defaults for a hub whose data directory is `data_dir`: logs, homes and the shared
    /// folder under it.
    pub fn new(data_dir: &Path) -> Self {
        LocalOptions {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            env_keep: [
                "LANG",
                "LC_ALL",
                "LD_LIBRARY_PATH",
                "PYTHONPATH",
                "VIRTUAL_ENV",
                "CONDA_ROOT",
                "CONDA_DEFAULT_ENV",
                "JUPYTERHUB_SINGLEUSER_APP",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            allow_root: false,
            system_accounts: Default::default(),
            system_users: false,
            logs_dir: data_dir.join("logs"),
            homes_dir: data_dir.join("homes"),
            shared_dir: Some(data_dir.join("shared")),
            gpus: Vec::new(),
        }
    }
}

/// Run the server as a Unix account of its own (created if missing).
#[derive(Clone, Debug, PartialEq, Eq)]
struct SystemUser {
    /// The account, e.g. `jupyter-alice` (see [`system_user::account_name`]).
    account: String,
    /// Run with this group as the primary group instead of the account's own (admins get the
    /// group that may write to the shared folder).
    group: Option<String>,
}

/// Exit of an own child: the exit code (negative signal number when killed by a
/// signal, like Python's `Popen.returncode`; `None` if unknown) and when it was seen.
type ExitRecord = Option<(Option<i32>, Instant)>;

/// A process this spawner started; its `Child` lives in the reaper task.
struct OwnChild {
    start_time: u64,
    exit: watch::Receiver<ExitRecord>,
}

/// Starts single-user servers as local processes. See the module docs.
pub struct LocalProcessSpawner {
    options: LocalOptions,
    children: Arc<Mutex<HashMap<i32, OwnChild>>>,
    gpus: GpuPool,
}

impl LocalProcessSpawner {
    pub fn new(options: LocalOptions) -> Self {
        LocalProcessSpawner {
            gpus: GpuPool::new(options.gpus.clone()),
            options,
            children: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn options(&self) -> &LocalOptions {
        &self.options
    }

    /// A user's home (shared by their servers).
    pub fn home_dir(&self, home: &str) -> PathBuf {
        self.options.homes_dir.join(home)
    }

    /// Where a server's output goes.
    pub fn log_path(&self, server: &ServerRef) -> PathBuf {
        let file = if server.server.is_empty() {
            format!("{}.log", server.user)
        } else {
            format!("{}--{}.log", server.user, server.server)
        };
        self.options.logs_dir.join(file)
    }

    /// The GPU devices `server` holds now.
    pub fn gpus_held_by(&self, server: &ServerRef) -> Vec<u32> {
        self.gpus.held_by(server)
    }

    /// With `singleuser.storage.capacity`: why quotas cannot be enforced on the homes, if they
    /// cannot (said once at start-up; each server's state says it again).
    pub fn quota_problem(&self, capacity: u64) -> Option<String> {
        match crate::quota::support(&self.options.homes_dir) {
            crate::quota::QuotaSupport::Unsupported(why) => {
                Some(crate::quota::not_enforced(capacity, &why))
            }
            _ => None,
        }
    }

    /// The Unix account a user's server runs as, with `system_users`.
    fn system_user(&self, owner: &Owner) -> Option<SystemUser> {
        self.options.system_users.then(|| SystemUser {
            account: system_user::account_name(&owner.name),
            group: owner
                .admin
                .then(|| system_user::SHARED_WRITERS_GROUP.to_string()),
        })
    }

    /// 2i2c's folders in a home: `shared` (read-only) for everyone, `shared-readwrite` for
    /// admins.
    fn mounts(&self, home: &Path, admin: bool) -> Vec<Mount> {
        let Some(shared) = &self.options.shared_dir else {
            return Vec::new();
        };
        let mut mounts = vec![Mount {
            source: shared.clone(),
            target: home.join("shared"),
            read_only: true,
        }];
        if admin {
            mounts.push(Mount {
                source: shared.clone(),
                target: home.join("shared-readwrite"),
                read_only: false,
            });
        }
        mounts
    }

    /// The shared folder exists; with system users it is owned by root and
    /// [`system_user::SHARED_WRITERS_GROUP`], mode 2775 (admins' servers run with that group),
    /// so users only read it.
    fn prepare_shared(&self) -> Result<(), String> {
        let Some(shared) = &self.options.shared_dir else {
            return Ok(());
        };
        std::fs::create_dir_all(shared).map_err(|e| format!("{}: {e}", shared.display()))?;
        if self.options.system_users {
            let gid = system_user::ensure_group(system_user::SHARED_WRITERS_GROUP)
                .map_err(|e| e.to_string())?;
            std::os::unix::fs::chown(shared, Some(0), Some(gid.as_raw()))
                .map_err(|e| format!("{}: {e}", shared.display()))?;
            std::fs::set_permissions(shared, std::fs::Permissions::from_mode(0o2775))
                .map_err(|e| format!("{}: {e}", shared.display()))?;
        }
        Ok(())
    }

    /// The environment of a server: kept hub variables, `USER`/`SHELL`, the
    /// spec's variables, `HOME`, `JUPYTERHUB_SERVICE_URL` and the GPUs it may see.
    fn build_env(
        &self,
        spec: &LaunchSpec,
        home_dir: &Path,
        service_url: &str,
        gpus: &[u32],
    ) -> Vec<(String, std::ffi::OsString)> {
        let mut env: Vec<(String, std::ffi::OsString)> = Vec::new();
        let mut set = |k: &str, v: std::ffi::OsString| {
            env.retain(|(key, _)| key != k);
            env.push((k.to_string(), v));
        };
        for key in &self.options.env_keep {
            if NEVER_KEEP.contains(&key.as_str()) {
                continue;
            }
            if let Some(v) = std::env::var_os(key) {
                set(key, v);
            }
        }
        for key in ["USER", "SHELL"] {
            if let Some(v) = std::env::var_os(key) {
                set(key, v);
            }
        }
        if !self.options.env_keep.iter().any(|k| k == "PATH") {
            set("PATH", crate::SYSTEM_PATH.into());
        }
        for (k, v) in &spec.env {
            set(k, v.into());
        }
        // Only the devices given to this server; an empty list hides every GPU.
        if self.gpus.configured() {
            let visible = gpus
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let nvidia = if gpus.is_empty() {
                "void".to_string()
            } else {
                visible.clone()
            };
            set("CUDA_VISIBLE_DEVICES", visible.into());
            set("NVIDIA_VISIBLE_DEVICES", nvidia.into());
        }
        set("HOME", home_dir.as_os_str().to_owned());
        set("JUPYTERHUB_SERVICE_URL", service_url.into());
        env
    }

    /// Looks up an own child by pid and start time.
    fn own_child(&self, pid: i32, start_time: u64) -> Option<watch::Receiver<ExitRecord>> {
        let children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        children
            .get(&pid)
            .filter(|c| c.start_time == start_time)
            .map(|c| c.exit.clone())
    }

    fn forget_old_exits(&self) {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        children.retain(|_, c| match *c.exit.borrow() {
            Some((_, at)) => at.elapsed() < EXIT_RECORD_TTL,
            None => true,
        });
    }
}

/// What the saved state says about a server process.
#[derive(Clone, Copy, Debug)]
struct Saved {
    pid: i32,
    pgid: i32,
    start_time: u64,
}

fn parse_state(state: &SpawnState) -> Result<Saved, SpawnError> {
    let field = |name: &str| -> Result<u64, SpawnError> {
        state
            .get(name)
            .ok_or_else(|| SpawnError::BadState(format!("missing `{name}`")))?
            .as_u64()
            .ok_or_else(|| SpawnError::BadState(format!("`{name}` is not a non-negative integer")))
    };
    let pid_of = |name: &str, v: u64| -> Result<i32, SpawnError> {
        match i32::try_from(v) {
            Ok(p) if p > 1 => Ok(p),
            _ => Err(SpawnError::BadState(format!(
                "`{name}` {v} is not a valid pid"
            ))),
        }
    };
    let pid = pid_of("pid", field("pid")?)?;
    let pgid = pid_of("pgid", field("pgid")?)?;
    let start_time = field("start_time")?;
    Ok(Saved {
        pid,
        pgid,
        start_time,
    })
}

/// State letter and start time (clock ticks since boot) of a process from
/// `/proc/<pid>/stat`, or `None` if there is no such process.
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses `/proc/<pid>/stat`: the command (field 2) is in parentheses and may
/// itself contain spaces and parentheses, so fields are counted after the last `)`.
fn parse_stat(text: &str) -> Option<(char, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 (state), so field 22 (starttime) is `fields[19]`.
    let state = fields.first()?.chars().next()?;
    let start_time = fields.get(19)?.parse().ok()?;
    Some((state, start_time))
}

/// Is the process with this pid the one we started, and not yet dead?
fn proc_alive(pid: i32, start_time: u64) -> bool {
    matches!(proc_stat(pid), Some((state, st)) if st == start_time && state != 'Z' && state != 'X')
}

/// A process's start time (clock ticks since boot, `/proc/<pid>/stat` field 22): with the pid,
/// it names one process even after the pid is reused.
pub fn process_start_time(pid: i32) -> Option<u64> {
    proc_stat(pid).map(|(_, start_time)| start_time)
}

/// Is the process `pid` started at `start_time` still there (and not a zombie)?
pub fn process_alive(pid: i32, start_time: u64) -> bool {
    proc_alive(pid, start_time)
}

/// Sends `sig` to the process group and to the process itself. Errors (already
/// gone, group changed) are ignored: the caller checks what is left.
fn signal_server(saved: &Saved, sig: Signal) {
    if let Err(e) = killpg(Pid::from_raw(saved.pgid), sig) {
        if e != Errno::ESRCH {
            tracing::debug!(pgid = saved.pgid, ?sig, error = %e, "signalling process group failed");
        }
    }
    if let Err(e) = kill(Pid::from_raw(saved.pid), sig) {
        if e != Errno::ESRCH {
            tracing::debug!(pid = saved.pid, ?sig, error = %e, "signalling process failed");
        }
    }
}

/// Does the server's process group still have members although its leader is
/// gone? Only if no *other* process now holds the group's id as its pid (then
/// the id may have been reused for a new group, which must not be touched).
fn leftover_group(saved: &Saved) -> bool {
    if saved.pgid == saved.pid {
        if let Some((_, st)) = proc_stat(saved.pgid) {
            if st != saved.start_time {
                return false;
            }
        }
    } else if proc_stat(saved.pgid).is_some() {
        return false;
    }
    killpg(Pid::from_raw(saved.pgid), None).is_ok()
}

fn exit_code(status: std::process::ExitStatus) -> Option<i32> {
    status.code().or_else(|| status.signal().map(|s| -s))
}

fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// How long a port handed to a server is not handed to another: longer than any server takes
/// to listen on it. Once it listens, the kernel does not offer the port again anyway.
const PORT_RESERVATION: Duration = Duration::from_secs(15 * 60);

/// Ports recently handed to servers, with when.
static HANDED_OUT: Mutex<Option<HashMap<u16, Instant>>> = Mutex::new(None);

/// A port for a new server: one the kernel says is free, and that was not handed to another
/// server that may not listen on it yet. The kernel may offer a port again as soon as the probe
/// that found it closes, so with many servers starting at once two of them could get the same
/// port, and the second would fail with "Address already in use".
pub fn free_port(ip: IpAddr) -> Result<u16, SpawnError> {
    free_port_at(ip, Instant::now())
}

fn free_port_at(ip: IpAddr, now: Instant) -> Result<u16, SpawnError> {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = guard.get_or_insert_with(HashMap::new);
    handed_out.retain(|_, at| now.saturating_duration_since(*at) < PORT_RESERVATION);
    // Probes stay open until one gives a new port, so that the kernel offers another each time.
    let mut probes = Vec::new();
    for _ in 0..64 {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).map_err(SpawnError::NoPort)?;
        let port = listener.local_addr().map_err(SpawnError::NoPort)?.port();
        if let std::collections::hash_map::Entry::Vacant(entry) = handed_out.entry(port) {
            entry.insert(now);
            return Ok(port);
        }
        probes.push(listener);
    }
    // Every probe gave a port still reserved: take the last one rather than fail the start.
    let port = probes
        .last()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.port())
        .unwrap_or_default();
    handed_out.insert(port, now);
    Ok(port)
}

impl LocalProcessSpawner {
    /// Is the server alive? Own children: not yet reaped (waiting briefly for the
    /// reaper if the process is already a zombie). Others: via `/proc`.
    async fn status(&self, saved: &Saved) -> PollStatus {
        if let Some(mut exit) = self.own_child(saved.pid, saved.start_time) {
            if let Some((code, _)) = *exit.borrow() {
                return PollStatus::Exited(code);
            }
            if proc_alive(saved.pid, saved.start_time) {
                return PollStatus::Running;
            }
            // A zombie (or already reaped): the reaper is about to record the code.
            let waited = tokio::time::timeout(REAP_WAIT, exit.wait_for(|e| e.is_some())).await;
            return match waited {
                Ok(Ok(record)) => PollStatus::Exited(record.and_then(|(code, _)| code)),
                _ => PollStatus::Exited(None),
            };
        }
        if proc_alive(saved.pid, saved.start_time) {
            PollStatus::Running
        } else {
            PollStatus::Exited(None)
        }
    }

    /// Waits until the server is gone or `limit` has passed; true if gone.
    async fn wait_gone(&self, saved: &Saved, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let own = self.own_child(saved.pid, saved.start_time);
        loop {
            let gone = match &own {
                // Own children are gone once reaped (so no zombie is left in /proc).
                Some(exit) => exit.borrow().is_some(),
                None => !proc_alive(saved.pid, saved.start_time),
            };
            if gone {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            tokio::time::sleep(STOP_POLL.min(deadline - now)).await;
        }
    }
}

/// Devices set aside for a start: given back unless the start went through.
struct GpuReservation<'a> {
    pool: &'a GpuPool,
    server: ServerRef,
    devices: Vec<u32>,
    kept: bool,
}

impl GpuReservation<'_> {
    fn keep(mut self) -> Vec<u32> {
        self.kept = true;
        std::mem::take(&mut self.devices)
    }
}

impl Drop for GpuReservation<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.pool.release(Some(&self.server), &self.devices);
        }
    }
}

#[async_trait]
impl Spawner for LocalProcessSpawner {
    async fn check(&self, spec: &LaunchSpec) -> Result<(), SpawnError> {
        self.gpus
            .check(&spec.server(), spec.resources.gpus)
            .map_err(SpawnError::Refused)
    }

    async fn start(
        &self,
        spec: &LaunchSpec,
        _progress: &ProgressSender,
    ) -> Result<Started, SpawnError> {
        let user = &spec.owner.name;
        let Some(program) = spec.cmd.first() else {
            return Err(SpawnError::Other(format!(
                "no command configured to start the server of {user}"
            )));
        };
        self.forget_old_exits();
        let system_user = self.system_user(&spec.owner);
        let as_root = system_user.is_none() && nix::unistd::geteuid().is_root();
        if as_root && !self.options.allow_root {
            return Err(SpawnError::Other(format!(
                "refusing to run the server of {user} as root: run the hub as an unprivileged user, turn on hubfleet.local.system_users, or allow it with hubfleet.local.allow_root: true"
            )));
        }
        // Before anything is made: a start that cannot have its GPUs does nothing.
        let server = spec.server();
        let gpus = GpuReservation {
            devices: self
                .gpus
                .reserve(&server, spec.resources.gpus)
                .map_err(SpawnError::Refused)?,
            pool: &self.gpus,
            server: server.clone(),
            kept: false,
        };
        let home_dir = self.home_dir(&spec.storage.home);
        let log_path = self.log_path(&server);
        self.prepare_shared()
            .map_err(|e| SpawnError::Other(format!("could not prepare the shared folder: {e}")))?;

        // The account's own group (before an admin's server switches to the writers' group):
        // its members, the account alone, may read the server's log.
        let mut log_reader_group = None;
        let account = match &system_user {
            Some(system_user) => {
                let mut account = system_user::ensure_account(
                    &system_user.account,
                    &home_dir,
                    &self.options.system_accounts,
                )?;
                log_reader_group = Some(account.gid);
                if let Some(group) = &system_user.group {
                    account.gid = system_user::ensure_group(group)?;
                }
                Some(account)
            }
            None => None,
        };
        // After the account check: a refused account leaves nothing behind.
        std::fs::create_dir_all(&home_dir).map_err(|source| SpawnError::Io {
            what: "home directory",
            path: home_dir.clone(),
            source,
        })?;
        if let Some(parent) = log_path.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Accounts open their own log by name but may not list the others'.
            let mode = if log_reader_group.is_some() {
                0o711
            } else {
                0o700
            };
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(parent)
                .map_err(|source| SpawnError::Io {
                    what: "log directory",
                    path: parent.to_path_buf(),
                    source,
                })?;
        }
        let log_err = |source| SpawnError::Io {
            what: "log file",
            path: log_path.clone(),
            source,
        };
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log_path)
            .map_err(log_err)?;
        // Also a log left by an older hub: readable by the hub and the server's owner only.
        let log_mode = match log_reader_group {
            Some(gid) => {
                std::os::unix::fs::fchown(&log, None, Some(gid.as_raw())).map_err(log_err)?;
                0o640
            }
            None => 0o600,
        };
        log.set_permissions(std::fs::Permissions::from_mode(log_mode))
            .map_err(log_err)?;
        let log2 = log.try_clone().map_err(log_err)?;
        let mut warn_log = log.try_clone().map_err(log_err)?;
        let mut warn = |message: &str| {
            tracing::warn!(%user, server = %spec.server_name, "{message}");
            let _ = writeln!(warn_log, "[hubfleet] warning: {message}");
        };

        // After the account exists and owns the home: tagging files must not change owners.
        let storage = spec.storage.capacity.map(|capacity| {
            match crate::quota::apply(&home_dir, capacity) {
                Ok(applied) => json!({
                    "capacity": capacity,
                    "enforced": true,
                    "project": applied.project,
                }),
                Err(why) => {
                    // The hub's log says it once at start-up; the server's log each time.
                    let message = crate::quota::not_enforced(capacity, &why);
                    tracing::debug!(%user, "{message}");
                    if let Ok(mut log) = log.try_clone() {
                        let _ = writeln!(log, "[hubfleet] warning: {message}");
                    }
                    json!({ "capacity": capacity, "enforced": false, "reason": message })
                }
            }
        });

        let ip = self.options.ip;
        let port = free_port(ip)?;
        let host = url_host(ip);
        let target = format!("http://{host}:{port}");
        let service_url = format!("{target}{}", spec.service_prefix);

        let group_name = format!("{user}--{}--{port}", spec.server_name);
        let limits = spec.resources.limits;
        let group = match Cgroup::create(&group_name, &limits) {
            Ok(group) => group,
            Err(e) => {
                warn(&e);
                None
            }
        };

        let mut args: Vec<String> = spec.cmd[1..].to_vec();
        let is_jupyter = Path::new(program)
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("jupyter"));
        // jupyter-server refuses root without --allow-root; only the explicit opt-in gets it (a
        // system user is never root).
        if is_jupyter && as_root && !args.iter().any(|a| a == "--allow-root") {
            args.push("--allow-root".to_string());
        }

        let mut env = self.build_env(spec, &home_dir, &service_url, &gpus.devices);
        if let Some(system_user) = &system_user {
            env.retain(|(k, _)| k != "USER" && k != "SHELL");
            env.push(("USER".into(), system_user.account.clone().into()));
            env.push(("SHELL".into(), "/bin/bash".into()));
        }
        let ids = account.map(|a| (a.uid.as_raw(), a.gid.as_raw()));
        let shared_mounts = self.mounts(&home_dir, spec.owner.admin);
        let wrapped = mounts::in_namespace(&shared_mounts, ids, program, &args);
        let mounted = if wrapped.is_some() {
            Vec::new()
        } else {
            let (mounted, mount_warnings) = mounts::apply(&shared_mounts);
            for w in &mount_warnings {
                warn(w);
            }
            mounted
        };
        let mut cmd = match &wrapped {
            // Mounts in the server's own namespace; the account is switched to last.
            Some((unshare, wrapped_args)) => {
                let mut cmd = tokio::process::Command::new(unshare);
                cmd.args(wrapped_args);
                cmd
            }
            None => {
                let mut cmd = tokio::process::Command::new(program);
                if let Some(account) = account {
                    // std drops the supplementary groups when it changes the uid.
                    cmd.uid(account.uid.as_raw()).gid(account.gid.as_raw());
                }
                cmd.args(&args);
                cmd
            }
        };
        cmd.env_clear()
            .envs(env)
            .current_dir(&home_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .process_group(0)
            .kill_on_drop(false);
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(source) => {
                mounts::remove(&mounted);
                if let Some(group) = &group {
                    group.remove();
                }
                return Err(SpawnError::Exec {
                    program: program.clone(),
                    user: user.clone(),
                    source,
                });
            }
        };
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| SpawnError::Other("started process has no pid".into()))?;
        // The child is not reaped before `wait` is called, so /proc/<pid> exists.
        let start_time = match proc_stat(pid) {
            Some((_, st)) => st,
            None => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(SpawnError::Other(format!(
                    "cannot read /proc/{pid}/stat of the started server"
                )));
            }
        };

        let group = match group {
            Some(group) => match group.add(pid) {
                Ok(()) => Some(group),
                Err(e) => {
                    warn(&format!("limits are not enforced: {e}"));
                    group.remove();
                    None
                }
            },
            None => None,
        };

        let (tx, rx) = watch::channel(None);
        self.children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                pid,
                OwnChild {
                    start_time,
                    exit: rx,
                },
            );
        let exited_user = user.clone();
        tokio::spawn(async move {
            let code = match child.wait().await {
                Ok(status) => exit_code(status),
                Err(e) => {
                    tracing::warn!(pid, error = %e, "waiting for the server process failed");
                    None
                }
            };
            tracing::info!(pid, user = %exited_user, ?code, "server process exited");
            let _ = tx.send(Some((code, Instant::now())));
        });

        let gpus = gpus.keep();
        tracing::info!(
            %user,
            server = %spec.server_name,
            pid,
            port,
            program = %program,
            log = %log_path.display(),
            ?gpus,
            "started server process"
        );
        Ok(Started {
            target,
            state: json!({
                "pid": pid,
                "pgid": pid,
                "start_time": start_time,
                "port": port,
                "ip": ip.to_string(),
                "user": user,
                "server": spec.server_name,
                "log": log_path,
                "cgroup": group,
                "mounts": mounted,
                "limits": limits,
                "storage": storage,
                "gpus": gpus,
            }),
        })
    }

    async fn poll(&self, state: &SpawnState) -> Result<PollStatus, SpawnError> {
        let saved = parse_state(state)?;
        Ok(self.status(&saved).await)
    }

    async fn stop(&self, state: &SpawnState, grace: Duration) -> Result<(), SpawnError> {
        let saved = parse_state(state)?;
        if self.status(&saved).await != PollStatus::Running {
            clean_up(state).await;
            self.release_gpus(state);
            return Ok(());
        }
        signal_server(&saved, Signal::SIGTERM);
        if !self.wait_gone(&saved, grace).await {
            tracing::warn!(
                pid = saved.pid,
                grace_ms = grace.as_millis() as u64,
                "server did not stop after SIGTERM; sending SIGKILL"
            );
            // Checked again right before signalling: never kill a reused pid.
            if proc_alive(saved.pid, saved.start_time) {
                signal_server(&saved, Signal::SIGKILL);
            }
            if !self.wait_gone(&saved, KILL_WAIT).await {
                return Err(SpawnError::Other(format!(
                    "server process {} is still there {}s after SIGKILL",
                    saved.pid,
                    KILL_WAIT.as_secs()
                )));
            }
        } else if leftover_group(&saved) {
            // The leader is gone but members of its group remain: they belong to
            // the stopped server (a pgid cannot be reused while its group exists).
            tracing::debug!(
                pgid = saved.pgid,
                "killing leftovers of the server's process group"
            );
            let _ = killpg(Pid::from_raw(saved.pgid), Signal::SIGKILL);
        }
        clean_up(state).await;
        self.release_gpus(state);
        tracing::info!(pid = saved.pid, "stopped server process");
        Ok(())
    }

    async fn adopt(&self, server: &ServerRef, state: &SpawnState) {
        let devices = saved_gpus(state);
        if !devices.is_empty() {
            self.gpus.adopt(server, &devices);
            tracing::info!(user = %server.user, server = %server.server, gpus = ?devices, "a re-adopted server keeps its GPUs");
        }
    }

    async fn log_tail(
        &self,
        server: &ServerRef,
        state: Option<&SpawnState>,
        max_bytes: u64,
    ) -> Option<ServerLog> {
        let path = state
            .and_then(saved_log)
            .unwrap_or_else(|| self.log_path(server));
        let text = tail_log(&path, max_bytes).ok()?;
        Some(ServerLog {
            text,
            source: path.display().to_string(),
        })
    }

    async fn note_in_log(&self, state: &SpawnState, line: &str) {
        let Some(path) = saved_log(state) else {
            return;
        };
        let written = OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut file| writeln!(file, "{}", line.trim_end_matches('\n')));
        if let Err(e) = written {
            tracing::warn!(log = %path.display(), error = %e, "writing to a server's log");
        }
    }

    async fn exit_reason(&self, state: &SpawnState) -> Option<String> {
        let group = saved_cgroup(state)?;
        // Kills the hub already noted (kernels, while the server ran) did not end the server.
        if group.oom_kills() <= noted_memory_kills(state) {
            return None;
        }
        let reason = match group.mem_limit {
            Some(limit) => format!("killed: memory limit {} reached", format_bytes(limit)),
            None => "killed: out of memory".to_string(),
        };
        if let Some(log) = saved_log(state) {
            if let Ok(mut file) = OpenOptions::new().append(true).open(log) {
                let _ = writeln!(file, "[hubfleet] {reason}");
            }
        }
        Some(reason)
    }

    async fn clean_up_leftovers(&self, running: &[SpawnState]) -> Vec<String> {
        let keep: Vec<std::path::PathBuf> = running
            .iter()
            .filter_map(saved_cgroup)
            .flat_map(|group| group.paths)
            .collect();
        crate::cgroup::remove_stale(&keep, STALE_CGROUP_AGE)
            .into_iter()
            .map(|dir| dir.display().to_string())
            .collect()
    }

    async fn memory_kills(&self, state: &SpawnState) -> Option<MemoryKills> {
        let group = saved_cgroup(state)?;
        group.mem_limit?;
        Some(MemoryKills {
            count: group.oom_kills(),
            limit: group.mem_limit,
        })
    }
}

/// The memory kills the hub has already noted in the server's state (`oom_kills`).
fn noted_memory_kills(state: &SpawnState) -> u64 {
    state.get("oom_kills").and_then(|n| n.as_u64()).unwrap_or(0)
}

/// The server's log, as its state records it.
fn saved_log(state: &SpawnState) -> Option<PathBuf> {
    state.get("log")?.as_str().map(PathBuf::from)
}

/// The GPU devices the server was given.
fn saved_gpus(state: &SpawnState) -> Vec<u32> {
    state
        .get("gpus")
        .and_then(|gpus| serde_json::from_value(gpus.clone()).ok())
        .unwrap_or_default()
}

/// Whose server the state is of (`None` in states saved before it was recorded).
fn saved_server(state: &SpawnState) -> Option<ServerRef> {
    Some(ServerRef::new(
        state.get("user")?.as_str()?,
        state.get("server")?.as_str()?,
    ))
}

impl LocalProcessSpawner {
    fn release_gpus(&self, state: &SpawnState) {
        let devices = saved_gpus(state);
        if !devices.is_empty() {
            self.gpus.release(saved_server(state).as_ref(), &devices);
        }
    }
}

fn saved_cgroup(state: &SpawnState) -> Option<Cgroup> {
    serde_json::from_value(state.get("cgroup")?.clone()).ok()
}

/// After the server is gone: end what is left in its cgroup and remove it; undo its mounts.
async fn clean_up(state: &SpawnState) {
    if let Some(group) = saved_cgroup(state) {
        for _ in 0..50 {
            let pids = group.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        group.remove();
    }
    let mounted: Vec<std::path::PathBuf> = state
        .get("mounts")
        .and_then(|m| serde_json::from_value(m.clone()).ok())
        .unwrap_or_default();
    mounts::remove(&mounted);
}

/// The end of a log file: at most the last `max_bytes` bytes, starting at a line
/// boundary (a cut first line is dropped unless it is the only one), decoded as
/// lossy UTF-8. Used to show why a server failed to start.
pub fn tail_log(path: &Path, max_bytes: u64) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(max_bytes);
    // Read one byte more when cutting, to see whether the cut is at a line start.
    let from = start.saturating_sub(1);
    file.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::with_capacity((len - from) as usize);
    file.take(len - from).read_to_end(&mut buf)?;
    let mut text: &[u8] = &buf;
    if start > 0 && !text.is_empty() {
        let cut_at_line_start = text[0] == b'\n';
        text = &text[1..];
        if !cut_at_line_start {
            if let Some(nl) = text.iter().position(|&b| b == b'\n') {
                if nl + 1 < text.len() {
                    text = &text[nl + 1..];
                }
            }
        }
    }
    Ok(String::from_utf8_lossy(text).into_owned())
}

const _: () = {
    const fn is_spawner<T: Spawner>() {}
    is_spawner::<LocalProcessSpawner>()
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_handed_out_are_not_handed_out_again_before_they_are_bound() {
        // None of these ports is listened on, so the kernel is free to offer each again.
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let now = Instant::now();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..500 {
            let port = free_port_at(ip, now).unwrap();
            assert_ne!(port, 0);
            assert!(seen.insert(port), "port {port} handed out twice");
        }
    }

    #[test]
    fn stat_parsing_handles_odd_command_names() {
        let line = "1234 (we ird) (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100 0 0";
        assert_eq!(parse_stat(line), Some(('S', 987654)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn own_stat_is_readable() {
        let pid = std::process::id() as i32;
        let (state, st) = proc_stat(pid).expect("own /proc entry");
        assert!(state == 'R' || state == 'S', "{state}");
        assert!(st > 0);
        assert!(proc_alive(pid, st));
        assert!(!proc_alive(pid, st + 1));
    }

    #[test]
    fn state_validation() {
        assert!(matches!(
            parse_state(&json!({})),
            Err(SpawnError::BadState(_))
        ));
        assert!(matches!(
            parse_state(&json!({"pid": 5, "pgid": 5})),
            Err(SpawnError::BadState(_))
        ));
        assert!(matches!(
            parse_state(&json!({"pid": 1, "pgid": 1, "start_time": 3})),
            Err(SpawnError::BadState(_))
        ));
        assert!(matches!(
            parse_state(&json!({"pid": "x", "pgid": 5, "start_time": 3})),
            Err(SpawnError::BadState(_))
        ));
        let s = parse_state(&json!({"pid": 5, "pgid": 6, "start_time": 3})).unwrap();
        assert_eq!((s.pid, s.pgid, s.start_time), (5, 6, 3));
    }

    fn spec(user: &str, env: &[(&str, &str)]) -> LaunchSpec {
        LaunchSpec {
            owner: Owner {
                name: user.into(),
                ..Default::default()
            },
            cmd: vec!["x".into()],
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            service_prefix: format!("/user/{user}/"),
            ..Default::default()
        }
    }

    #[test]
    fn env_is_built_from_keep_list_and_spec() {
        let spawner = LocalProcessSpawner::new(LocalOptions {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            env_keep: vec!["PATH".into(), "CONFIGPROXY_AUTH_TOKEN".into()],
            ..LocalOptions::new(Path::new("/data"))
        });
        let spec = spec("alice", &[("PATH", "/custom"), ("HOME", "/ignored")]);
        let built: HashMap<String, std::ffi::OsString> = spawner
            .build_env(
                &spec,
                Path::new("/home/alice"),
                "http://h:1/user/alice/",
                &[],
            )
            .into_iter()
            .collect();
        assert_eq!(built["PATH"], "/custom");
        assert_eq!(built["HOME"], "/home/alice");
        assert_eq!(built["JUPYTERHUB_SERVICE_URL"], "http://h:1/user/alice/");
        assert!(!built.contains_key("CONFIGPROXY_AUTH_TOKEN"));
        assert!(!built.contains_key("CUDA_VISIBLE_DEVICES"), "no GPUs here");
    }

    #[test]
    fn servers_get_the_system_path_not_the_hubs() {
        let spawner = LocalProcessSpawner::new(LocalOptions::new(Path::new("/data")));
        let built: HashMap<String, std::ffi::OsString> = spawner
            .build_env(
                &spec("ada", &[]),
                Path::new("/h"),
                "http://h:1/user/ada/",
                &[],
            )
            .into_iter()
            .collect();
        assert_eq!(built["PATH"], crate::SYSTEM_PATH);
    }

    #[test]
    fn servers_see_only_their_gpus() {
        let spawner = LocalProcessSpawner::new(LocalOptions {
            gpus: vec![0, 1, 2],
            ..LocalOptions::new(Path::new("/data"))
        });
        // A variable of the spec does not widen what the server sees.
        let spec = spec("ada", &[("CUDA_VISIBLE_DEVICES", "0,1,2")]);
        let visible = |gpus: &[u32]| {
            let env: HashMap<String, std::ffi::OsString> = spawner
                .build_env(&spec, Path::new("/h"), "http://h:1/", gpus)
                .into_iter()
                .collect();
            (
                env["CUDA_VISIBLE_DEVICES"].clone(),
                env["NVIDIA_VISIBLE_DEVICES"].clone(),
            )
        };
        assert_eq!(visible(&[1, 2]), ("1,2".into(), "1,2".into()));
        assert_eq!(visible(&[]), ("".into(), "void".into()));
    }

    #[test]
    fn homes_and_logs_are_the_spawners() {
        let spawner = LocalProcessSpawner::new(LocalOptions {
            homes_dir: PathBuf::from("/homes"),
            ..LocalOptions::new(Path::new("/data"))
        });
        assert_eq!(spawner.home_dir("ada"), Path::new("/homes/ada"));
        assert_eq!(
            spawner.log_path(&ServerRef::new("ada", "")),
            Path::new("/data/logs/ada.log")
        );
        assert_eq!(
            spawner.log_path(&ServerRef::new("ada", "gpu")),
            Path::new("/data/logs/ada--gpu.log")
        );
        let admin = Owner {
            name: "ada".into(),
            admin: true,
            ..Default::default()
        };
        assert_eq!(spawner.system_user(&admin), None);
        let mounts = spawner.mounts(Path::new("/homes/ada"), true);
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].source, Path::new("/data/shared"));
        assert_eq!(mounts[0].target, Path::new("/homes/ada/shared"));
        assert!(mounts[0].read_only && !mounts[1].read_only);
        assert_eq!(spawner.mounts(Path::new("/h"), false).len(), 1);
        let with_accounts = LocalProcessSpawner::new(LocalOptions {
            system_users: true,
            ..LocalOptions::new(Path::new("/data"))
        });
        assert_eq!(
            with_accounts.system_user(&admin),
            Some(SystemUser {
                account: "jupyter-ada".into(),
                group: Some(system_user::SHARED_WRITERS_GROUP.into()),
            })
        );
    }

    #[test]
    fn url_host_brackets_ipv6() {
        assert_eq!(url_host("127.0.0.1".parse().unwrap()), "127.0.0.1");
        assert_eq!(url_host("::1".parse().unwrap()), "[::1]");
    }

    #[test]
    fn tail_log_starts_at_line_boundary() {
        let dir = std::env::temp_dir().join(format!("hubfleet-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        std::fs::write(&path, "first line\nsecond line\nthird\n").unwrap();
        assert_eq!(
            tail_log(&path, 1000).unwrap(),
            "first line\nsecond line\nthird\n"
        );
        // Cut inside "second line": that partial line is dropped.
        assert_eq!(tail_log(&path, 15).unwrap(), "third\n");
        // Cut exactly at a line start: the line is kept.
        assert_eq!(tail_log(&path, 18).unwrap(), "second line\nthird\n");
        // A single long line is kept even if cut.
        std::fs::write(&path, "abcdefghij").unwrap();
        assert_eq!(tail_log(&path, 4).unwrap(), "ghij");
        assert_eq!(tail_log(&path, 0).unwrap(), "");
        std::fs::write(&path, b"ok \xff\n").unwrap();
        assert_eq!(tail_log(&path, 100).unwrap(), "ok \u{fffd}\n");
        assert!(tail_log(&dir.join("missing"), 10).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
