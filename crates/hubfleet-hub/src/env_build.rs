//! Building a local Python environment: a venv with the base packages (jupyterhub, jupyterlab)
//! and the requested ones installed by pip. Used by `hubfleet env create` and by the admin
//! panel's "Build new version", whose builds and logs are kept in the database
//! (`environment_builds`) for the page to follow from any replica, also after a restart.
//!
//! Each build made from the admin panel goes into a directory of its own, so servers running on
//! the previous version keep it until they restart.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hubfleet_store::environment_builds::{cap_build_log, BUILD_LOG_LIMIT};
use hubfleet_store::{EnvironmentBuild, Store, StoreError};
use serde_json::{json, Value};

/// The packages every environment gets, so that it can run a server.
pub const BASE_PACKAGES: &[&str] = &["jupyterhub", "jupyterlab"];

/// The requirements of a build, kept in its directory.
pub const REQUIREMENTS_FILE: &str = "hubfleet-requirements.txt";

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot run `{python} -m venv`: {source}; is Python 3 installed?")]
    NoPython {
        python: String,
        source: std::io::Error,
    },
    #[error("`{python} -m venv {}` failed: {stderr}; on Debian/Ubuntu install python3-venv", venv.display())]
    Venv {
        python: String,
        venv: PathBuf,
        stderr: String,
    },
    #[error("pip could not install {packages} into {}:\n{stderr}", venv.display())]
    Pip {
        packages: String,
        venv: PathBuf,
        stderr: String,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A home of a build's own, removed when dropped: pip's cache and config, and what a package's
/// `setup.py` writes to `~`, stay out of the hub's home.
struct BuildHome(PathBuf);

impl BuildHome {
    fn new() -> std::io::Result<BuildHome> {
        use std::os::unix::fs::DirBuilderExt;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "hubfleet-build-home-{}-{stamp}",
            std::process::id()
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(BuildHome(dir))
    }
}

impl Drop for BuildHome {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Variables of the hub's environment a build keeps: what programs need to run and to find
/// text encodings, and the package index, proxy and certificate settings operators give pip.
/// Everything else (`HUBFLEET_*`, `JUPYTERHUB_*`, crypt keys, tokens, cloud credentials) stays
/// out of a repository's `setup.py` and `postBuild`. `LC_*` are kept too.
pub const BUILD_ENV_ALLOWED: &[&str] = &[
    "PATH",
    "LANG",
    "LANGUAGE",
    "TMPDIR",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_TRUSTED_HOST",
    "PIP_CERT",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
];

/// The whole environment of a build (admin-panel environments, binder repositories): the
/// hub's [`BUILD_ENV_ALLOWED`] and `LC_*` variables, and `HOME`. A package's `setup.py` or a
/// `postBuild` runs in it, and must not see the hub's secrets (`JUPYTERHUB_CRYPT_KEY`, tokens,
/// database URLs, cloud credentials).
pub fn build_environment(home: &Path) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    let mut env: Vec<_> = std::env::vars_os()
        .filter(|(name, _)| {
            name.to_str()
                .is_some_and(|name| BUILD_ENV_ALLOWED.contains(&name) || name.starts_with("LC_"))
        })
        .collect();
    if std::env::var_os("PATH").is_none() {
        env.push(("PATH".into(), hubfleet_spawn::SYSTEM_PATH.into()));
    }
    env.push(("HOME".into(), home.into()));
    env
}

/// A command of a build, in [`build_environment`].
fn build_command(program: impl AsRef<std::ffi::OsStr>, home: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .envs(build_environment(home))
        .stdin(Stdio::null());
    cmd
}

/// Make (or reuse) the venv at `venv` with `python`, and pip-install the base packages and
/// `packages` into it. Every line pip writes (stdout and stderr) goes to `log`, as it comes.
/// Both run with [`build_command`]'s environment and a temporary `HOME`.
pub fn build_venv(
    python: &str,
    venv: &Path,
    base: &[String],
    packages: &[String],
    log: &mut dyn FnMut(&str),
) -> Result<(), BuildError> {
    let home = BuildHome::new()?;
    if !venv.join("bin/python").exists() {
        log(&format!(
            "creating a Python environment in {}",
            venv.display()
        ));
        if let Some(parent) = venv.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let output = build_command(python, &home.0)
            .args(["-m", "venv"])
            .arg(venv)
            .output()
            .map_err(|source| BuildError::NoPython {
                python: python.to_string(),
                source,
            })?;
        if !output.status.success() {
            return Err(BuildError::Venv {
                python: python.to_string(),
                venv: venv.to_path_buf(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    let wanted: Vec<String> = base
        .iter()
        .chain(packages)
        .filter(|p| seen.insert((*p).clone()))
        .cloned()
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    log(&format!("pip install {}", wanted.join(" ")));
    let mut child = build_command(venv.join("bin/pip"), &home.0)
        .args([
            "install",
            "--progress-bar",
            "off",
            "--disable-pip-version-check",
        ])
        .args(&wanted)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<(bool, String)>();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        let tx = lines_tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send((false, line));
            }
        }));
    }
    if let Some(err) = child.stderr.take() {
        let tx = lines_tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send((true, line));
            }
        }));
    }
    drop(lines_tx);
    let mut errors = String::new();
    for (is_err, line) in lines_rx {
        if is_err {
            errors.push_str(&line);
            errors.push('\n');
        }
        if !line.trim().is_empty() {
            log(&line);
        }
    }
    for reader in readers {
        let _ = reader.join();
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(BuildError::Pip {
            packages: wanted.join(" "),
            venv: venv.to_path_buf(),
            stderr: errors.trim().to_string(),
        });
    }
    Ok(())
}

/// The pip requirements of a text as people write them: one per line, `#` comments and blank
/// lines left out.
pub fn requirement_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split(" #").next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// How long a running build may go without its replica saying it is at work before another
/// replica takes it for interrupted (its replica died and has not started again).
pub const BUILD_SILENCE: Duration = Duration::from_secs(120);

/// How often a running build's log is written to the database (and its replica says it is
/// alive, even when pip is quiet).
const LOG_FLUSH: Duration = Duration::from_millis(500);
const ALIVE_EVERY: Duration = Duration::from_secs(15);

/// A build as the API shows it.
pub fn build_model(build: &EnvironmentBuild) -> Value {
    json!({
        "id": build.id,
        "state": build.status,
        "environment": build.environment,
        "directory": build.directory,
        "requirements": build.requirements,
        "log": build.log,
        "error": build.error,
        "version": build.version,
        "author": build.author,
        "replica": build.replica,
        "started": build.started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "finished": build.finished.map(|f| f.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    })
}

/// The log of a running build: lines are added in memory (from pip's threads) and written to
/// the database by [`BuildLog::follow`], so that every replica can show it as it grows.
#[derive(Clone, Debug, Default)]
pub struct BuildLog(Arc<Mutex<(String, bool)>>);

impl BuildLog {
    pub fn push(&self, line: &str) {
        if let Ok(mut log) = self.0.lock() {
            log.0.push_str(line);
            log.0.push('\n');
            // Keep memory bounded too: the database keeps no more.
            if log.0.len() > 2 * BUILD_LOG_LIMIT {
                log.0 = cap_build_log(&log.0);
            }
            log.1 = true;
        }
    }

    pub fn text(&self) -> String {
        self.0.lock().map(|l| l.0.clone()).unwrap_or_default()
    }

    /// The text, when it changed since the last call.
    fn take_changed(&self) -> Option<String> {
        let mut log = self.0.lock().ok()?;
        if !log.1 {
            return None;
        }
        log.1 = false;
        Some(log.0.clone())
    }

    /// Write the log of build `id` to the store as it grows, until `done` resolves.
    pub async fn follow(&self, store: &Store, id: i64, done: tokio::sync::oneshot::Receiver<()>) {
        let mut done = done;
        let mut last_write = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = &mut done => return,
                _ = tokio::time::sleep(LOG_FLUSH) => {}
            }
            let text = match self.take_changed() {
                Some(text) => text,
                None if last_write.elapsed() >= ALIVE_EVERY => self.text(),
                None => continue,
            };
            if let Err(e) = store.write_build_log(id, &text).await {
                tracing::warn!(build = id, error = %e, "writing a build's log");
            }
            last_write = std::time::Instant::now();
        }
    }
}

/// Where the builds of local environment `name` go: `<data_dir>/environments/<name>/`.
pub fn builds_dir(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("environments").join(name)
}

/// The venv directory of environment `name` that each running server uses, as their starts
/// recorded it. `None` when a running server's directory is not known (started by an older
/// hub, or still starting): then no directory may be taken for unused.
pub async fn directories_in_use(
    store: &Store,
    name: &str,
) -> Result<Option<BTreeSet<PathBuf>>, StoreError> {
    let mut used = BTreeSet::new();
    for (_, server) in store.active_servers().await? {
        let profile = server.spawn_state.as_ref().and_then(|s| s.get("profile"));
        let Some(profile) = profile else {
            return Ok(None);
        };
        match profile.get("environment_path").and_then(Value::as_str) {
            Some(path) => {
                used.insert(PathBuf::from(path));
            }
            None if profile.get("environment").and_then(Value::as_str) == Some(name) => {
                return Ok(None)
            }
            None => {}
        }
    }
    Ok(Some(used))
}

/// Remove the build directories (`build-*`) of environment `name` but those in `keep` and those
/// that running servers use. What was removed, and what was kept because servers use it.
pub async fn remove_old_builds(
    store: &Store,
    data_dir: &Path,
    name: &str,
    keep: &[PathBuf],
) -> Result<OldBuilds, StoreError> {
    let Some(used) = directories_in_use(store, name).await? else {
        return Ok(OldBuilds {
            unknown_use: true,
            ..Default::default()
        });
    };
    let mut old = OldBuilds::default();
    let Ok(entries) = std::fs::read_dir(builds_dir(data_dir, name)) else {
        return Ok(old);
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("build-"))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for dir in dirs {
        if keep.contains(&dir) {
            continue;
        }
        if used.contains(&dir) {
            old.in_use.push(dir);
            continue;
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => old.removed.push(dir),
            Err(e) => old.errors.push(format!("{}: {e}", dir.display())),
        }
    }
    Ok(old)
}

/// What [`remove_old_builds`] did.
#[derive(Debug, Default)]
pub struct OldBuilds {
    pub removed: Vec<PathBuf>,
    /// Kept: running servers use them.
    pub in_use: Vec<PathBuf>,
    pub errors: Vec<String>,
    /// Nothing was removed: a running server's directory is not known.
    pub unknown_use: bool,
}

impl OldBuilds {
    /// For the build's log.
    pub fn describe(&self) -> Vec<String> {
        let names = |dirs: &[PathBuf]| {
            dirs.iter()
                .map(|d| {
                    d.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut lines = Vec::new();
        if self.unknown_use {
            lines.push("old build directories kept: a running server's environment directory is not known (started before this hub version, or starting now); they are removed after a later build".to_string());
        }
        if !self.removed.is_empty() {
            lines.push(format!(
                "removed old build directories that no running server uses: {}",
                names(&self.removed)
            ));
        }
        if !self.in_use.is_empty() {
            lines.push(format!(
                "kept old build directories that running servers use: {}",
                names(&self.in_use)
            ));
        }
        for error in &self.errors {
            lines.push(format!("could not remove an old build directory: {error}"));
        }
        lines
    }
}

/// Builds running on `replica` (if given: at its start, those it was running when it stopped)
/// or on a replica silent for [`BUILD_SILENCE`] are marked failed, and their half-made
/// directories go.
pub async fn fail_stale(
    store: &Store,
    replica: Option<&str>,
    data_dir: &Path,
) -> Result<(), StoreError> {
    let silent_since = chrono::Utc::now() - BUILD_SILENCE;
    for build in store.fail_interrupted_builds(replica, silent_since).await? {
        if replica == Some(build.replica.as_str()) {
            tracing::warn!(environment = %build.environment, build = build.id, directory = %build.directory, "a build of a local environment was interrupted by a hub restart: marked failed");
        } else {
            tracing::warn!(environment = %build.environment, build = build.id, replica = %build.replica, "a build's replica went silent: marked failed");
        }
        remove_half_made(data_dir, &build);
    }
    Ok(())
}

/// Remove the directory of a build that did not finish, if it is one of ours.
pub fn remove_half_made(data_dir: &Path, build: &EnvironmentBuild) {
    let dir = PathBuf::from(&build.directory);
    if dir.starts_with(builds_dir(data_dir, &build.environment)) && dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(directory = %dir.display(), error = %e, "removing the directory of an interrupted build");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_skip_comments_and_blank_lines() {
        assert_eq!(
            requirement_lines("# data\nnumpy>=1.26\n\n pandas==2.2  # tables\n"),
            vec!["numpy>=1.26", "pandas==2.2"]
        );
    }
}
