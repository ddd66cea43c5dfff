//! `hubfleet config dump`: the profiles and local environments as the hub has them now (from its
//! database, with what admins changed in the admin panel), written back as values YAML, so the
//! changes can be committed to the hub's repository and replicated.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use hubfleet_store::EnvKind;
use serde_yaml_ng::{Mapping, Value};

#[derive(Subcommand)]
pub enum ConfigAction {
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

pub async fn run(action: ConfigAction) -> Result<()> {
    match action {
        ConfigAction::Dump { config, output } => {
            let hub = hubfleet_config::HubConfig::from_paths(&config)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let store = hubfleet_store::Store::connect(&hub.database_url()).await?;
            let yaml = dump(&store, &hub).await?;
            match output {
                Some(path) => std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{yaml}"),
            }
            Ok(())
        }
    }
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
