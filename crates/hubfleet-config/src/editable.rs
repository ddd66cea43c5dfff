//! Profiles and local environments edited outside the values file (the admin panel, the REST
//! API), checked by the config loader itself: the objects are put into a small values document
//! (`singleuser.profileList`, `hubfleet.local.environments`, `hubfleet.local.gpus`) and loaded
//! as a config file would be, so every check the loader makes of a profile applies, with the
//! same messages. Problems come back per object, with the field they are about.

use serde_json::{json, Map, Value};

use crate::profiles::{EnvironmentConfig, Profile};
use crate::{ConfigError, ConfigSource, HubConfig};

/// One problem of an edited object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldProblem {
    /// Which object: the index in the list given (profiles), or the environment's name.
    pub object: String,
    /// The field inside the object, dotted (`kubespawner_override.mem_guarantee`); empty for
    /// the object as a whole.
    pub field: String,
    /// Why it is refused.
    pub message: String,
}

impl std::fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// What the objects become once checked.
#[derive(Debug, Clone)]
pub struct CheckedEnvironments {
    pub profiles: Vec<Profile>,
    pub environments: Vec<(String, EnvironmentConfig)>,
}

/// Split the loader's key (`singleuser.profileList[2].kubespawner_override.mem_limit`) into the
/// object (`2`) and the field inside it.
fn locate(key: &str) -> (String, String) {
    if let Some(rest) = key.strip_prefix("singleuser.profileList[") {
        if let Some((index, field)) = rest.split_once(']') {
            return (index.to_string(), field.trim_start_matches('.').to_string());
        }
    }
    if let Some(rest) = key.strip_prefix("hubfleet.local.environments.") {
        // Environment names may hold dots; the loader quotes nothing, so the field is what
        // follows a known field name.
        for field in ["path", "cmd", "env"] {
            if let Some(name) = rest.strip_suffix(&format!(".{field}")) {
                return (name.to_string(), field.to_string());
            }
            if let Some((name, _)) = rest.split_once(&format!(".{field}.")) {
                let inner = &rest[name.len() + 1..];
                return (name.to_string(), inner.to_string());
            }
        }
        return (rest.to_string(), String::new());
    }
    (String::new(), key.to_string())
}

/// Check `profiles` (each a `singleuser.profileList` entry as JSON) and `environments` (name →
/// a `hubfleet.local.environments` entry) together, as the loader would, with `gpus` as
/// `hubfleet.local.gpus`. All problems at once, or the typed objects.
pub fn check(
    profiles: &[Value],
    environments: &[(String, Value)],
    gpus: &[u32],
) -> Result<CheckedEnvironments, Vec<FieldProblem>> {
    let mut envs = Map::new();
    for (name, env) in environments {
        envs.insert(name.clone(), env.clone());
    }
    let doc = json!({
        "singleuser": {"profileList": profiles},
        "hubfleet": {"local": {"environments": envs, "gpus": gpus}},
    });
    let yaml = match serde_yaml_ng::to_string(&doc) {
        Ok(y) => y,
        Err(e) => {
            return Err(vec![FieldProblem {
                object: String::new(),
                field: String::new(),
                message: format!("cannot be written as values: {e}"),
            }])
        }
    };
    let report = HubConfig::check(vec![ConfigSource::text("environments", &yaml)]);
    if report.errors.is_empty() {
        if let Some(config) = report.config {
            return Ok(CheckedEnvironments {
                profiles: config.singleuser.profile_list,
                environments: config.hubfleet.local.environments,
            });
        }
    }
    let problems = report
        .errors
        .into_iter()
        .map(|e| match e {
            ConfigError::Invalid { key, message, .. } => {
                let key = key.unwrap_or_default();
                let (object, field) = locate(&key);
                // The loader's message starts with the full key; the field says it already.
                let message = message
                    .strip_prefix(&format!("{key}: "))
                    .unwrap_or(&message)
                    .to_string();
                FieldProblem {
                    object,
                    field,
                    message,
                }
            }
            other => FieldProblem {
                object: String::new(),
                field: String::new(),
                message: other.to_string(),
            },
        })
        .collect();
    Err(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_the_object_and_the_field() {
        let envs = vec![("py".to_string(), json!({"cmd": ["x"]}))];
        let good = json!({"display_name": "Small", "kubespawner_override": {"image": "py", "mem_limit": "1G"}});
        let checked = check(std::slice::from_ref(&good), &envs, &[]).unwrap();
        assert_eq!(checked.profiles[0].slug, "small");
        assert_eq!(checked.profiles[0].overrides.mem_limit, Some(Some(1 << 30)));

        let bad = json!({"display_name": "Big", "kubespawner_override": {"mem_limit": "1G", "mem_guarantee": "2G", "image": "nope"}});
        let problems = check(&[good, bad], &envs, &[]).unwrap_err();
        let guarantee = problems
            .iter()
            .find(|p| p.field == "kubespawner_override.mem_guarantee")
            .unwrap_or_else(|| panic!("{problems:?}"));
        assert_eq!(guarantee.object, "1");
        assert!(
            guarantee.message.contains("above the limit"),
            "{guarantee:?}"
        );
        let image = problems
            .iter()
            .find(|p| p.field == "kubespawner_override.image")
            .unwrap_or_else(|| panic!("{problems:?}"));
        assert!(image.message.contains("not one of"), "{image:?}");

        let typo = json!({"display_name": "T", "kubespawner_override": {"mem_limit": "lots"}});
        let problems = check(&[typo], &envs, &[]).unwrap_err();
        assert!(
            problems.iter().any(
                |p| p.field.starts_with("kubespawner_override") && p.message.contains("memory")
            ),
            "{problems:?}"
        );
    }
}
