//! `hubfleet config diff`: what a reload of these files would change in the running hub.
//!
//! The running hub writes the configuration it runs with to its data directory
//! (`effective-config.yaml`, 0600: it holds secrets) at start and after each reload; the files
//! are compared with it. Reading it needs the same access as the hub's data, no API token.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use hubfleet_config::reload::changes;
use hubfleet_config::{ConfigSource, HubConfig};
use hubfleet_hub::reload::EFFECTIVE_CONFIG_FILE;

#[derive(Subcommand)]
pub enum ConfigAction {
    /// Show which keys of these files differ from what the running hub uses, grouped as
    /// "applies live" and "restart needed". Exit 0: no difference, 1: differences, 2: error.
    Diff {
        /// The hub's config file(s), layered as with `serve`.
        #[arg(long, short, required = true)]
        config: Vec<PathBuf>,
        /// The running hub's data directory (default: the one the config names).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

pub fn run(action: ConfigAction) -> std::process::ExitCode {
    let ConfigAction::Diff { config, data_dir } = action;
    match diff(&config, data_dir) {
        Ok(false) => std::process::ExitCode::SUCCESS,
        Ok(true) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Print the differences; `true` when there are some.
fn diff(paths: &[PathBuf], data_dir: Option<PathBuf>) -> Result<bool> {
    let new = crate::check_cmd::load(paths)?;
    let data_dir = data_dir.unwrap_or_else(|| new.data_dir());
    let snapshot = data_dir.join(EFFECTIVE_CONFIG_FILE);
    let text = match std::fs::read_to_string(&snapshot) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} does not exist: no hub has run with this data directory since live reload came \
             (start it with `hubfleet serve`), or give the running hub's with --data-dir",
            snapshot.display()
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read {}", snapshot.display()));
        }
    };
    let running = HubConfig::check(vec![ConfigSource {
        label: snapshot.display().to_string(),
        text,
        path: new.source.clone(),
        under: Vec::new(),
    }])
    .into_result()
    .map_err(|e| anyhow::anyhow!("the running hub's config snapshot: {e}"))?;
    let found = changes(&running, &new);
    if found.is_empty() {
        println!("No changes: the running hub uses this configuration.");
        return Ok(false);
    }
    let (live, restart): (Vec<_>, Vec<_>) = found.iter().partition(|c| c.live);
    if !live.is_empty() {
        println!(
            "Applies live (on reload: the file watch, SIGHUP or POST /hub/api/config/reload):"
        );
        for change in &live {
            println!("  {}", change.key);
        }
    }
    if !restart.is_empty() {
        println!("Restart needed (the hub keeps the old value until it restarts):");
        for change in &restart {
            println!("  {}", change.key);
        }
    }
    Ok(true)
}
