//! What a config reload changes: the keys whose merged values differ between two loads, each
//! marked as applied live or needing a restart, and the configuration a running hub takes
//! (the new one, with the keys that need a restart kept as they were).

use serde_yaml_ng::{Mapping, Value};

use crate::{ConfigError, ConfigSource, HubConfig};

/// Keys (dotted, with everything under them) a running hub applies without a restart. Any other
/// key that changes is reported as needing one, and the hub keeps its old value until then.
pub const LIVE_KEYS: &[&str] = &[
    "singleuser.profileList",
    "singleuser.cmd",
    "singleuser.defaultUrl",
    "singleuser.extraEnv",
    "singleuser.startTimeout",
    "singleuser.cpu",
    "singleuser.memory",
    "singleuser.image",
    "singleuser.storage.capacity",
    "hub.templateVars",
    "hub.templatePaths",
    "custom.homepage",
    "hub.loadRoles",
    "hub.services",
    "hub.config.JupyterHub.load_groups",
    "hub.config.JupyterHub.allow_named_servers",
    "hub.config.JupyterHub.named_server_limit_per_user",
    "hub.config.JupyterHub.redirect_to_server",
    "hub.config.JupyterHub.shutdown_on_logout",
    "hub.config.JupyterHub.authenticate_prometheus",
    "hub.config.JupyterHub.concurrent_spawn_limit",
    "hub.config.JupyterHub.active_server_limit",
    "hub.allowNamedServers",
    "hub.namedServerLimitPerUser",
    "hub.redirectToServer",
    "hub.shutdownOnLogout",
    "hub.authenticatePrometheus",
    "hub.concurrentSpawnLimit",
    "hub.activeServerLimit",
    "cull",
    "hubfleet.culler",
    "hubfleet.api_rate_limit",
    "hubfleet.local.environments",
];

/// Settings of the authenticator (under `hub.config.<any class>`) that apply live: who may log
/// in and who is an admin. Nobody has to log in again for them.
pub const LIVE_AUTHENTICATOR_KEYS: &[&str] = &[
    "admin_users",
    "allowed_users",
    "blocked_users",
    "allow_all",
    "allow_existing_users",
];

/// Whether `key` is a setting of the authenticator (`hub.config.<class>.…`, not `JupyterHub`).
pub fn is_authenticator_key(key: &str) -> bool {
    let mut parts = key.splitn(4, '.');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some("hub"), Some("config"), Some(class), Some(_))
            if class != "JupyterHub" && class != "ConfigurableHTTPProxy"
    )
}

/// One key whose value differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    /// Dotted key path (`singleuser.profileList`, `hubfleet.listen`).
    pub key: String,
    /// Applied by a running hub; `false`: needs a restart.
    pub live: bool,
}

/// Whether a change of `key` applies without a restart.
pub fn applies_live(key: &str) -> bool {
    if is_authenticator_key(key) {
        let name = key.split('.').nth(3).unwrap_or_default();
        return LIVE_AUTHENTICATOR_KEYS.contains(&name);
    }
    LIVE_KEYS.iter().any(|live| {
        key == *live
            || key
                .strip_prefix(live)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// The keys whose values differ between two merged documents. Mappings are compared key by key;
/// anything else (lists included: `singleuser.profileList`) is one value.
pub fn changes(old: &HubConfig, new: &HubConfig) -> Vec<ConfigChange> {
    let mut keys = Vec::new();
    diff(
        "",
        Some(old.values.as_value()),
        Some(new.values.as_value()),
        &mut keys,
    );
    keys.into_iter()
        .map(|key| ConfigChange {
            live: applies_live(&key),
            key,
        })
        .collect()
}

fn diff(path: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<String>) {
    match (old, new) {
        (Some(Value::Mapping(a)), Some(Value::Mapping(b))) => {
            let mut names: Vec<String> = a.keys().chain(b.keys()).map(key_name).collect();
            names.sort();
            names.dedup();
            for name in names {
                let child = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                diff(&child, get(a, &name), get(b, &name), out);
            }
        }
        (a, b) if a != b => out.push(path.to_owned()),
        _ => {}
    }
}

fn key_name(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

fn get<'a>(map: &'a Mapping, name: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(k, _)| key_name(k) == name)
        .map(|(_, v)| v)
}

/// The configuration a running hub takes from `new`: the same, except that the keys that need a
/// restart keep their values from `old`. `new` was checked already; this only re-reads it.
pub fn effective(old: &HubConfig, new: &HubConfig) -> Result<HubConfig, ConfigError> {
    let restart: Vec<String> = changes(old, new)
        .into_iter()
        .filter(|c| !c.live)
        .map(|c| c.key)
        .collect();
    if restart.is_empty() {
        return Ok(new.clone());
    }
    let mut doc = new.values.as_value().clone();
    for key in &restart {
        let parts: Vec<&str> = key.split('.').collect();
        set_path(&mut doc, &parts, old.values.get(key).cloned());
    }
    let text = serde_yaml_ng::to_string(&doc).map_err(|e| ConfigError::Invalid {
        file: "<effective config>".into(),
        line: 1,
        column: 1,
        key: None,
        message: e.to_string(),
    })?;
    let mut config = HubConfig::check(vec![ConfigSource {
        label: "<effective config: the new files with the keys that need a restart as before>"
            .into(),
        text,
        path: new.source.clone(),
        under: Vec::new(),
    }])
    .into_result()?;
    config.warnings = new.warnings.clone();
    Ok(config)
}

/// Set (or, with `None`, remove) the value at a key path, making mappings on the way.
fn set_path(doc: &mut Value, parts: &[&str], value: Option<Value>) {
    let Some((first, rest)) = parts.split_first() else {
        return;
    };
    if !doc.is_mapping() {
        *doc = Value::Mapping(Mapping::new());
    }
    let Value::Mapping(map) = doc else {
        return;
    };
    let key = Value::String((*first).to_owned());
    if rest.is_empty() {
        match value {
            Some(v) => {
                map.insert(key, v);
            }
            None => {
                map.remove(&key);
            }
        }
        return;
    }
    if value.is_none() && !map.contains_key(&key) {
        return;
    }
    let child = map
        .entry(key)
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    set_path(child, rest, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> HubConfig {
        HubConfig::from_yaml_str(yaml, "test.yaml").unwrap()
    }

    #[test]
    fn changed_keys_are_marked_live_or_restart() {
        let old = load("hubfleet:\n  listen: 127.0.0.1:8000\nhub:\n  templateVars:\n    a: 1\n");
        let new = load(
            "hubfleet:\n  listen: 127.0.0.1:9000\nhub:\n  templateVars:\n    a: 2\ncull:\n  timeout: 60\n",
        );
        let found = changes(&old, &new);
        let as_pairs: Vec<(&str, bool)> = found.iter().map(|c| (c.key.as_str(), c.live)).collect();
        assert_eq!(
            as_pairs,
            vec![
                ("cull", true),
                ("hub.templateVars.a", true),
                ("hubfleet.listen", false)
            ]
        );
        assert!(changes(&old, &old).is_empty());
    }

    #[test]
    fn live_keys_match_on_whole_segments() {
        assert!(applies_live("cull.timeout"));
        assert!(applies_live("singleuser.profileList"));
        assert!(!applies_live("culler"));
        assert!(!applies_live("hub.db.url"));
        assert!(!applies_live("hub.servicesX"));
        assert!(applies_live("hub.config.Authenticator.allowed_users"));
        assert!(applies_live(
            "hub.config.GitHubOAuthenticator.allowed_users"
        ));
        assert!(!applies_live(
            "hub.config.GitHubOAuthenticator.client_secret"
        ));
        assert!(!applies_live("hub.config.Authenticator.max_failed_logins"));
        assert!(applies_live("hub.config.JupyterHub.load_groups.x"));
        assert!(!applies_live("hub.config.JupyterHub.subdomain_host"));
    }

    #[test]
    fn the_effective_config_keeps_what_needs_a_restart() {
        let old = load("hubfleet:\n  listen: 127.0.0.1:8000\nhub:\n  templateVars:\n    a: 1\n");
        let new = load("hubfleet:\n  listen: 127.0.0.1:9000\nhub:\n  templateVars:\n    a: 2\n");
        let effective = effective(&old, &new).unwrap();
        assert_eq!(effective.hubfleet.listen, old.hubfleet.listen);
        assert_eq!(effective.hub.template_vars, new.hub.template_vars);
        // A restart key that the new file drops stays as it was too.
        let dropped = load("hub:\n  templateVars:\n    a: 3\n");
        assert_eq!(
            super::effective(&old, &dropped).unwrap().hubfleet.listen,
            old.hubfleet.listen
        );
    }
}
