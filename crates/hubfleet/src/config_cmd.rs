//! `hubfleet config`: `diff`, what a reload of these files would change in the running hub, and
//! `dump`, the environments as the hub has them now written back as values.
//!
//! `diff`: the running hub writes the configuration it runs with to its data directory
//! (`effective-config.yaml`, 0600: it holds secrets) at start and after each reload; the files
//! are compared with it. Reading it needs the same access as the hub's data, no API token.
//!
//! `hubfleet config dump`: the profiles and local environments as the hub has them now (from its
//! database, with what admins changed in the admin panel), written back as values YAML, so the
//! changes can be committed to the hub's repository and replicated.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use hubfleet_config::reload::changes;
use hubfleet_config::{ConfigSource, HubConfig};
use hubfleet_hub::reload::EFFECTIVE_CONFIG_FILE;
use hubfleet_store::EnvKind;
use serde_yaml_ng::{Mapping, Value};

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
    /// Write the current profiles (`singleuser.profileList`) and local environments
    /// (`hubfleet.local.environments`) from the hub's database as values YAML. Layered after
    /// the hub's own files (`--config hub.yaml --config environments.yaml`) it gives the hub's
    /// environments as they are now: the list replaces the file's, environments deleted in the
    /// admin panel are `null` (deleted, as Helm reads values).
    Dump {
        /// The hub's config file (for the database); several are layered as with `serve`.
        #[arg(long, short, required = true)]
        config: Vec<PathBuf>,
        /// Where to write (default: standard output). Written with mode 0644.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

pub async fn run(action: ConfigAction) -> std::process::ExitCode {
    match action {
        ConfigAction::Diff { config, data_dir } => match diff(&config, data_dir) {
            Ok(false) => std::process::ExitCode::SUCCESS,
            Ok(true) => std::process::ExitCode::from(1),
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::from(2)
            }
        },
        ConfigAction::Dump { config, output } => match dump_to(&config, output).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
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

/// Write the store's environments as values YAML to `output`, or standard output.
async fn dump_to(config: &[PathBuf], output: Option<PathBuf>) -> Result<()> {
    let hub = hubfleet_config::HubConfig::from_paths(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = hubfleet_store::Store::connect(&hub.database_url()).await?;
    let yaml = dump(&store, &hub).await?;
    match output {
        Some(path) => {
            std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{yaml}"),
    }
    Ok(())
}

fn to_yaml(value: &serde_json::Value) -> Value {
    serde_yaml_ng::to_value(value).unwrap_or(Value::Null)
}

/// The values document of the store's environments.
pub async fn dump(
    store: &hubfleet_store::Store,
    config: &hubfleet_config::HubConfig,
) -> Result<String> {
    let profiles: Vec<Value> = store
        .environments(EnvKind::Profile)
        .await?
        .iter()
        // Hidden profiles are offered to no one: as if they were not in the list.
        .filter(|p| !p.hidden)
        .map(|p| to_yaml(&p.data))
        .collect();
    let mut environments = Mapping::new();
    for e in store.all_environments(EnvKind::Environment).await? {
        let in_config = config
            .hubfleet
            .local
            .environments
            .iter()
            .any(|(n, _)| *n == e.name);
        if e.deleted {
            // Only a file's own entry needs deleting; others were never there.
            if in_config {
                environments.insert(Value::String(e.name.clone()), Value::Null);
            }
            continue;
        }
        environments.insert(Value::String(e.name.clone()), to_yaml(&e.data));
    }
    let mut local = Mapping::new();
    local.insert("environments".into(), Value::Mapping(environments));
    let mut hubfleet = Mapping::new();
    hubfleet.insert("local".into(), Value::Mapping(local));
    let mut singleuser = Mapping::new();
    singleuser.insert("profileList".into(), Value::Sequence(profiles));
    let mut doc = Mapping::new();
    doc.insert("singleuser".into(), Value::Mapping(singleuser));
    doc.insert("hubfleet".into(), Value::Mapping(hubfleet));
    let body = serde_yaml_ng::to_string(&Value::Mapping(doc))?;
    Ok(format!(
        "# Profiles and local environments of this hub as they are now (hubfleet config dump).\n\
         # Layer after the hub's config: hubfleet serve --config hub.yaml --config this.yaml\n{body}"
    ))
}
