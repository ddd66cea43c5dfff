//! Profiles and local environments kept in the database as versioned objects
//! (`hubfleet_store::environments`): seeded from the values file, edited in the admin panel, read
//! by every start. See docs/environments.md.
//!
//! The config's ones are written by [`sync_environments_from_config`] only (at start, and by a
//! config reload), as versions authored by `config`; they are read-only in the UI unless
//! `hubfleet.environments.allow_ui_overrides`. Once overridden in the UI (source `ui`), a config
//! change leaves them alone.

use std::collections::BTreeSet;

use hubfleet_config::profiles::{slugify, Profile};
use hubfleet_config::HubConfig;
use hubfleet_store::{EnvChange, EnvKind, EnvironmentState, Store, StoreError, StoredEnvironment};
use serde_json::Value;

use crate::profiles::{Environment, SpawnOptions};
use crate::Settings;

/// Who config-made versions are authored by.
pub const CONFIG_AUTHOR: &str = "config";
/// `source` of objects seeded from the values file.
pub const SOURCE_CONFIG: &str = "config";
/// `source` of objects made or overridden in the admin panel or the API.
pub const SOURCE_UI: &str = "ui";

/// How profiles and environments may be edited, from the config.
#[derive(Debug, Default, Clone)]
pub struct EnvironmentSettings {
    /// `hubfleet.environments.allow_ui_overrides`.
    pub allow_ui_overrides: bool,
    /// `hubfleet.local.gpus`, for the checks of a profile's GPUs.
    pub gpus: Vec<u32>,
    /// The Python that builds local environments made in the admin panel.
    pub python: String,
    /// What every build installs before its requirements (`jupyterhub`, `jupyterlab`).
    pub build_packages: Vec<String>,
}

/// What [`sync_environments_from_config`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// `profile/<name>` or `environment/<name>` written as a new version.
    pub changed: Vec<String>,
    /// Config-defined objects left alone because an admin overrode them in the UI.
    pub overridden: Vec<String>,
}

fn yaml_to_json(value: &serde_yaml_ng::Value) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Seed the store with the profiles (`singleuser.profileList`) and local environments
/// (`hubfleet.local.environments`) of `config`, as `source: config`. Idempotent: with the same
/// config nothing is written; with a changed one, each changed object gets a new version by
/// `config`, and config-defined objects no longer in the config are deleted (history kept).
/// Objects overridden in the UI (source `ui`) are left alone.
pub async fn sync_environments_from_config(
    store: &Store,
    config: &HubConfig,
) -> Result<SyncReport, StoreError> {
    let mut report = SyncReport::default();
    // The entries as written (the values document), named as the loader named them.
    let raw_profiles: Vec<Value> = match config.values.get("singleuser.profileList") {
        Some(serde_yaml_ng::Value::Sequence(items)) => items.iter().map(yaml_to_json).collect(),
        _ => Vec::new(),
    };
    let profiles: Vec<(String, Value)> = config
        .singleuser
        .profile_list
        .iter()
        .zip(raw_profiles)
        .map(|(p, raw)| (p.slug.clone(), raw))
        .collect();
    let raw_envs = config.values.get("hubfleet.local.environments");
    let environments: Vec<(String, Value)> = config
        .hubfleet
        .local
        .environments
        .iter()
        .map(|(name, _)| {
            let raw = raw_envs
                .and_then(|m| m.get(name.as_str()))
                .map(yaml_to_json)
                .unwrap_or(Value::Null);
            (name.clone(), raw)
        })
        .collect();
    for (kind, wanted) in [
        (EnvKind::Profile, profiles),
        (EnvKind::Environment, environments),
    ] {
        let existing = store.all_environments(kind).await?;
        let names: BTreeSet<&str> = wanted.iter().map(|(n, _)| n.as_str()).collect();
        for (position, (name, data)) in wanted.iter().enumerate() {
            let current = existing.iter().find(|e| &e.name == name);
            if current.is_some_and(|c| c.source == SOURCE_UI && !c.deleted) {
                report.overridden.push(format!("{}/{name}", kind.as_str()));
                continue;
            }
            let state = EnvironmentState {
                source: SOURCE_CONFIG.into(),
                hidden: false,
                deleted: false,
                data: data.clone(),
            };
            let change = EnvChange {
                author: CONFIG_AUTHOR,
                action: "config",
                comment: "from the values file",
            };
            let put =
                || store.put_environment(kind, name, &state, Some(position as i64), None, &change);
            // Replicas starting together seed together: the one that loses the race finds the
            // same state written, which is a no-op the second time.
            let written = match put().await {
                Err(StoreError::Conflict { .. }) => put().await?,
                other => other?,
            };
            if current.is_none_or(|c| c.version != written.version) {
                report.changed.push(format!("{}/{name}", kind.as_str()));
            }
        }
        for gone in existing
            .iter()
            .filter(|e| e.source == SOURCE_CONFIG && !e.deleted && !names.contains(e.name.as_str()))
        {
            let state = EnvironmentState {
                source: SOURCE_CONFIG.into(),
                hidden: gone.hidden,
                deleted: true,
                data: gone.data.clone(),
            };
            store
                .put_environment(
                    kind,
                    &gone.name,
                    &state,
                    None,
                    None,
                    &EnvChange {
                        author: CONFIG_AUTHOR,
                        action: "delete",
                        comment: "removed from the values file",
                    },
                )
                .await?;
            report
                .changed
                .push(format!("{}/{}", kind.as_str(), gone.name));
        }
    }
    if !report.changed.is_empty() {
        tracing::info!(changed = ?report.changed, "profiles and environments updated from the config");
    }
    if !report.overridden.is_empty() {
        tracing::info!(overridden = ?report.overridden, "config-defined profiles and environments overridden in the admin panel were left as they are");
    }
    Ok(report)
}

/// A stored profile as the spawner reads it (its slug is its name). `None` when it no longer
/// parses (it was checked when saved; a newer hubfleet may read it differently): logged.
pub fn profile_of(stored: &StoredEnvironment) -> Option<Profile> {
    match serde_json::from_value::<Profile>(stored.data.clone()) {
        Ok(mut profile) => {
            profile.slug = stored.name.clone();
            Some(profile)
        }
        Err(e) => {
            tracing::warn!(profile = %stored.name, error = %e, "a stored profile does not parse; it is not offered");
            None
        }
    }
}

/// The spawn options of a start or an options page now: the settings' limits and storage,
/// the profiles from the store (hidden ones left out), the config's environments with those
/// made in the UI over them.
pub async fn spawn_options(store: &Store, settings: &Settings) -> Result<SpawnOptions, StoreError> {
    let mut options = settings.spawn_options.clone();
    let mut profiles = Vec::new();
    let mut as_written = Vec::new();
    for stored in store.environments(EnvKind::Profile).await? {
        if stored.hidden {
            continue;
        }
        let Some(profile) = profile_of(&stored) else {
            continue;
        };
        profiles.push(profile);
        // Named as the hub names it: a spawner deriving the slug again could derive another.
        let mut data = stored.data;
        if let Value::Object(map) = &mut data {
            map.insert("slug".into(), Value::String(stored.name));
        }
        as_written.push(data);
    }
    options.profiles = profiles;
    options.profiles_as_written = Some(as_written);
    for stored in store.environments(EnvKind::Environment).await? {
        if stored.source != SOURCE_UI {
            continue;
        }
        let Ok(env) =
            serde_json::from_value::<hubfleet_config::profiles::EnvironmentConfig>(stored.data)
        else {
            continue;
        };
        let environment = Environment {
            path: env.path,
            cmd: env.cmd,
            env: env.env,
        };
        match options
            .environments
            .iter_mut()
            .find(|(n, _)| *n == stored.name)
        {
            Some((_, e)) => *e = environment,
            None => options.environments.push((stored.name, environment)),
        }
    }
    Ok(options)
}

/// The name a new profile gets: its `slug`, else its display name made a slug.
pub fn profile_name(data: &Value) -> String {
    match data.get("slug").and_then(Value::as_str) {
        Some(slug) if !slug.trim().is_empty() => slug.to_string(),
        _ => slugify(
            data.get("display_name")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sync_is_idempotent_and_follows_config_changes() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let yaml = |limit: &str| {
            format!(
                r#"
singleuser:
  profileList:
    - display_name: Small
      kubespawner_override: {{mem_limit: {limit}, image: py}}
    - display_name: Other
      slug: other
hubfleet:
  local:
    environments:
      py: {{cmd: [x]}}
"#
            )
        };
        let config = HubConfig::from_yaml_str(&yaml("1G"), "t.yaml").unwrap();
        let first = sync_environments_from_config(&store, &config)
            .await
            .unwrap();
        assert_eq!(
            first.changed,
            vec!["profile/small", "profile/other", "environment/py"]
        );
        let again = sync_environments_from_config(&store, &config)
            .await
            .unwrap();
        assert!(again.changed.is_empty(), "{again:?}");

        let changed = HubConfig::from_yaml_str(&yaml("2G"), "t.yaml").unwrap();
        let report = sync_environments_from_config(&store, &changed)
            .await
            .unwrap();
        assert_eq!(report.changed, vec!["profile/small"]);
        let history = store
            .environment_history(EnvKind::Profile, "small")
            .await
            .unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].author, CONFIG_AUTHOR);
        assert!(history[0].diff.contains("mem_limit"), "{}", history[0].diff);

        let settings = Settings::new("127.0.0.1:0".parse().unwrap(), "/tmp".into());
        let options = spawn_options(&store, &settings).await.unwrap();
        assert_eq!(options.profiles.len(), 2);
        assert_eq!(options.profiles[0].overrides.mem_limit, Some(Some(2 << 30)));

        let fewer = HubConfig::from_yaml_str(
            "singleuser:\n  profileList:\n    - {display_name: Other, slug: other}\n",
            "t.yaml",
        )
        .unwrap();
        let report = sync_environments_from_config(&store, &fewer).await.unwrap();
        assert_eq!(report.changed, vec!["profile/small", "environment/py"]);
        let options = spawn_options(&store, &settings).await.unwrap();
        assert_eq!(options.profiles.len(), 1);
    }

    #[tokio::test]
    async fn a_profile_overridden_in_the_ui_is_left_alone_by_config_changes() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let yaml = |limit: &str| {
            format!("singleuser:\n  profileList:\n    - {{display_name: Small, kubespawner_override: {{mem_limit: {limit}}}}}\n")
        };
        let config = HubConfig::from_yaml_str(&yaml("1G"), "t.yaml").unwrap();
        sync_environments_from_config(&store, &config)
            .await
            .unwrap();
        let edited = EnvironmentState {
            source: SOURCE_UI.into(),
            hidden: false,
            deleted: false,
            data: serde_json::json!({"display_name": "Small", "kubespawner_override": {"mem_limit": "3G"}}),
        };
        store
            .put_environment(
                EnvKind::Profile,
                "small",
                &edited,
                None,
                None,
                &EnvChange {
                    author: "admin",
                    action: "update",
                    comment: "",
                },
            )
            .await
            .unwrap();
        let changed = HubConfig::from_yaml_str(&yaml("2G"), "t.yaml").unwrap();
        let report = sync_environments_from_config(&store, &changed)
            .await
            .unwrap();
        assert!(report.changed.is_empty(), "{report:?}");
        assert_eq!(report.overridden, vec!["profile/small"]);
        let now = store
            .environment(EnvKind::Profile, "small")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(now.data["kubespawner_override"]["mem_limit"], "3G");
        assert_eq!(now.version, 2);
    }
}
