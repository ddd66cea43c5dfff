//! `hubfleet env …`: local environments for profiles (`hubfleet.local.environments`), and the
//! mapping of the profile/limit/environment/storage config to the hub's settings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Subcommand;
use hubfleet_config::HubConfig;
use hubfleet_hub::profiles::{Environment, SpawnOptions};
use hubfleet_spawn::Limits;

#[derive(Subcommand)]
pub enum EnvAction {
    /// Build a Python environment (a venv with jupyterhub, jupyterlab and PACKAGES) that a
    /// profile's `image` can name, and print the config lines that register it.
    Create {
        /// The environment's name: what `kubespawner_override.image` (or `singleuser.image`)
        /// says to use it.
        name: String,
        /// More packages to install with pip (e.g. `numpy pandas==2.2`).
        #[arg(long, num_args = 1..)]
        packages: Vec<String>,
        /// Where to create it (default: `<data_dir>/environments/NAME`).
        #[arg(long)]
        path: Option<PathBuf>,
        /// The Python to build it with.
        #[arg(long, default_value = "python3")]
        python: String,
    },
}

/// Names that are safe as a directory name and as a YAML key without quoting surprises.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/'))
        && !name.split('/').any(|seg| seg.is_empty() || seg == "..")
}

pub fn run(config: Option<&HubConfig>, data_dir: &Path, action: EnvAction) -> Result<()> {
    match action {
        EnvAction::Create {
            name,
            packages,
            path,
            python,
        } => {
            if !valid_name(&name) {
                bail!("`{name}` is not a usable environment name: use letters, digits, `-`, `_`, `.`, `:` and `/` (e.g. `python-3.12` or `pangeo/pangeo-notebook:2024.01`)");
            }
            let data_dir = match config {
                Some(c) => c.data_dir(),
                None => std::path::absolute(data_dir)?,
            };
            let target = match path {
                Some(p) => std::path::absolute(p)?,
                None => data_dir
                    .join("environments")
                    .join(name.replace(['/', ':'], "_")),
            };
            if target.join("bin/jupyterhub-singleuser").exists() {
                eprintln!(
                    "{} already has jupyterhub-singleuser: installing the packages into it",
                    target.display()
                );
            } else if target.exists()
                && std::fs::read_dir(&target)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(true)
            {
                bail!(
                    "{} exists and is not an environment made by hubfleet; choose another --path",
                    target.display()
                );
            }
            create(&python, &target, &packages)?;
            println!("Environment `{name}` is ready in {}.", target.display());
            println!("Add it to the hub's config (then restart the hub):\n");
            println!(
                "hubfleet:\n  local:\n    environments:\n      {name:?}:\n        path: {}",
                target.display()
            );
            Ok(())
        }
    }
}

/// Make the venv and install into it (the build the admin panel uses too), showing progress
/// on one line.
fn create(python: &str, venv: &Path, packages: &[String]) -> Result<()> {
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.enable_steady_tick(Duration::from_millis(120));
    let base: Vec<String> = hubfleet_hub::env_build::BASE_PACKAGES
        .iter()
        .map(|p| p.to_string())
        .collect();
    let result = hubfleet_hub::env_build::build_venv(python, venv, &base, packages, &mut |line| {
        spinner.set_message(line.chars().take(100).collect::<String>())
    });
    spinner.finish_and_clear();
    Ok(result?)
}

/// `singleuser.profileList`, `.image`, `.memory`, `.cpu`, `.storage` and
/// `hubfleet.local.environments` as the hub's [`SpawnOptions`] (the rest of `hubfleet.local` is
/// the local spawner's: `local_spawner`).
pub fn spawn_options(config: &HubConfig) -> SpawnOptions {
    let local = &config.hubfleet.local;
    SpawnOptions {
        profiles: config.singleuser.profile_list.clone(),
        image: config.singleuser.image.spec.clone(),
        limits: Limits {
            mem_limit: config.singleuser.memory.limit,
            mem_guarantee: config.singleuser.memory.guarantee,
            cpu_limit: config.singleuser.cpu.limit,
            cpu_guarantee: config.singleuser.cpu.guarantee,
        },
        environments: local
            .environments
            .iter()
            .map(|(name, e)| {
                (
                    name.clone(),
                    Environment {
                        path: e.path.as_deref().map(|p| config.resolve_path(p)),
                        cmd: e.cmd.clone(),
                        env: e.env.clone(),
                    },
                )
            })
            .collect(),
        storage_capacity: config.singleuser.storage.capacity,
        profiles_as_written: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("python-3.12"));
        assert!(valid_name("pangeo/pangeo-notebook:2024.01"));
        assert!(!valid_name("../x"));
        assert!(!valid_name("a//b"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a b"));
        assert!(!valid_name(""));
    }
}
