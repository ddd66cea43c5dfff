//! `hubfleet serve` watches its config files and reloads them when they change.
//!
//! The directories holding the files are watched, not the files: editors and `kubectl`'s
//! ConfigMap mounts replace a file by renaming another over it (or swap a `..data` symlink),
//! which a watch on the file itself stops seeing after the first time.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Changes closer together than this make one reload (an editor's save is several events).
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// A watch on the config files: [`ConfigWatch::changed`] resolves once after files changed.
pub struct ConfigWatch {
    _watcher: notify::RecommendedWatcher,
    events: mpsc::Receiver<()>,
}

impl ConfigWatch {
    pub fn start(paths: &[PathBuf]) -> Result<ConfigWatch> {
        let mut dirs = BTreeSet::new();
        let mut names: BTreeSet<OsString> = BTreeSet::new();
        for path in paths {
            let path = std::path::absolute(path)
                .with_context(|| format!("config file {}", path.display()))?;
            let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
            if let Some(name) = path.file_name() {
                names.insert(name.to_owned());
            }
            dirs.insert(dir);
        }
        let (tx, events) = mpsc::channel(1);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if matches!(event.kind, EventKind::Access(_)) {
                    return;
                }
                let ours = event.paths.iter().any(|p| {
                    p.file_name()
                        .is_some_and(|n| names.contains(n) || n.to_string_lossy().starts_with(".."))
                });
                if ours {
                    // Full: a reload is pending already.
                    let _ = tx.try_send(());
                }
            })
            .context("cannot watch the config files")?;
        for dir in &dirs {
            watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .with_context(|| format!("cannot watch {} for config changes", dir.display()))?;
        }
        Ok(ConfigWatch {
            _watcher: watcher,
            events,
        })
    }

    /// Wait for a change, then for the files to be quiet for [`DEBOUNCE`].
    pub async fn changed(&mut self) {
        if self.events.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
        while tokio::time::timeout(DEBOUNCE, self.events.recv())
            .await
            .is_ok_and(|e| e.is_some())
        {}
    }
}
