//! Building a local Python environment: a venv with the base packages (jupyterhub, jupyterlab)
//! and the requested ones installed by pip. Used by `hubfleet env create` and by the admin
//! panel's "Build new version", which keeps each build's log for the page to follow.
//!
//! Each build made from the admin panel goes into a directory of its own, so servers running on
//! the previous version keep it until they restart.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

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

/// Make (or reuse) the venv at `venv` with `python`, and pip-install the base packages and
/// `packages` into it. Every line pip writes (stdout and stderr) goes to `log`, as it comes.
pub fn build_venv(
    python: &str,
    venv: &Path,
    base: &[String],
    packages: &[String],
    log: &mut dyn FnMut(&str),
) -> Result<(), BuildError> {
    if !venv.join("bin/python").exists() {
        log(&format!(
            "creating a Python environment in {}",
            venv.display()
        ));
        if let Some(parent) = venv.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let output = Command::new(python)
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
    let mut child = Command::new(venv.join("bin/pip"))
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

/// Where a build of environment `name` stands.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildStatus {
    /// `running`, `succeeded` or `failed`.
    pub state: &'static str,
    pub directory: PathBuf,
    pub requirements: Vec<String>,
    pub log: String,
    /// Why it failed (pip's error).
    pub error: Option<String>,
    /// The environment's version that the build made.
    pub version: Option<i64>,
}

/// The builds of this hub process, by environment name (the last one of each).
#[derive(Debug, Clone, Default)]
pub struct Builds(Arc<Mutex<BTreeMap<String, BuildStatus>>>);

impl Builds {
    pub fn get(&self, name: &str) -> Option<BuildStatus> {
        self.0.lock().ok()?.get(name).cloned()
    }

    /// Record a new build of `name`; `false` when one is still running.
    pub fn begin(&self, name: &str, status: BuildStatus) -> bool {
        let Ok(mut map) = self.0.lock() else {
            return false;
        };
        if map.get(name).is_some_and(|b| b.state == "running") {
            return false;
        }
        map.insert(name.to_string(), status);
        true
    }

    pub fn update(&self, name: &str, change: impl FnOnce(&mut BuildStatus)) {
        if let Ok(mut map) = self.0.lock() {
            if let Some(b) = map.get_mut(name) {
                change(b);
            }
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
