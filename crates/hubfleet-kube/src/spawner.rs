//! KubeSpawner's settings (its traitlets) for one server, and how they change: config first
//! (`c.KubeSpawner` over `c.Spawner`), then overrides (groups, the profile and its options), each
//! as KubeSpawner's `_apply_overrides` does it (a mapping merges into a mapping setting, with
//! `null` deleting a key; anything else replaces).

use std::collections::BTreeMap;

use serde_yaml_ng::{Mapping, Value};

use crate::error::KubeError;
use crate::python;
use crate::slug::{escape_slug, is_valid_object_name, multi_slug, safe_slug};

/// One setting and where it came from (a values key, a profile), for messages.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Setting {
    pub(crate) value: Value,
    pub(crate) from: String,
}

/// Config of the two traitlets sections a KubeSpawner reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct SpawnerConfig {
    /// `c.Spawner`.
    pub(crate) spawner: BTreeMap<String, Setting>,
    /// `c.KubeSpawner` (wins over `c.Spawner`).
    pub(crate) kube: BTreeMap<String, Setting>,
}

impl SpawnerConfig {
    pub(crate) fn set_kube(&mut self, name: &str, value: Value, from: &str) {
        self.kube.insert(
            name.to_owned(),
            Setting {
                value,
                from: from.to_owned(),
            },
        );
    }

    pub(crate) fn set_spawner(&mut self, name: &str, value: Value, from: &str) {
        self.spawner.insert(
            name.to_owned(),
            Setting {
                value,
                from: from.to_owned(),
            },
        );
    }

    /// The configured value of `name` (`c.KubeSpawner` first), if any.
    pub(crate) fn get(&self, name: &str) -> Option<&Setting> {
        self.kube.get(name).or_else(|| self.spawner.get(name))
    }

    /// The configured value of `name`, else its default.
    pub(crate) fn value(&self, name: &str) -> Value {
        self.get(name)
            .map(|s| s.value.clone())
            .or_else(|| default_of(name))
            .unwrap_or(Value::Null)
    }
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap_or(Value::Null)
}

/// KubeSpawner 7.1's default of a setting that changes the pod (and of the few others read here).
pub(crate) fn default_of(name: &str) -> Option<Value> {
    let text = match name {
        "cmd" | "image_pull_policy" | "uid" | "gid" | "fs_gid" | "working_dir" | "cpu_limit"
        | "cpu_guarantee" | "mem_limit" | "mem_guarantee" | "service_account"
        | "automount_service_account_token" | "scheduler_name" | "storage_capacity"
        | "storage_class" => "null",
        "args" | "image_pull_secrets" | "supplemental_gids" | "volumes" | "volume_mounts"
        | "init_containers" | "extra_containers" | "tolerations" | "node_affinity_preferred"
        | "node_affinity_required" | "pod_affinity_preferred" | "pod_affinity_required"
        | "pod_anti_affinity_preferred" | "pod_anti_affinity_required" | "profile_list"
        | "oauth_client_allowed_scopes" | "env_keep" => "[]",
        "node_selector" | "container_security_context" | "pod_security_context"
        | "environment" | "extra_labels" | "extra_annotations" | "extra_resource_limits"
        | "extra_resource_guarantees" | "lifecycle_hooks" | "extra_container_config"
        | "extra_pod_config" | "storage_selector" | "storage_extra_labels"
        | "storage_extra_annotations" | "group_overrides" => "{}",
        "image" => "quay.io/jupyterhub/singleuser:latest",
        "privileged" | "allow_privilege_escalation" | "storage_pvc_ensure" | "debug"
        | "disable_user_config" | "enable_user_namespaces" => "false",
        "priority_class_name" | "default_url" | "notebook_dir" => "''",
        "common_labels" => "{app.kubernetes.io/name: jupyterhub, app.kubernetes.io/managed-by: kubespawner, app: jupyterhub, heritage: jupyterhub}",
        "component_label" => "singleuser-server",
        "pod_name_template" => "jupyter-{user_server}",
        "pvc_name_template" => "claim-{user_server}",
        "storage_access_modes" => "[ReadWriteOnce]",
        "slug_scheme" => "safe",
        "port" => "0",
        "ip" => "0.0.0.0",
        _ => return None,
    };
    Some(yaml(text))
}

/// Settings hubfleet reads to build the pod.
const POD_SETTINGS: &[&str] = &[
    "cmd",
    "args",
    "image",
    "image_pull_policy",
    "image_pull_secrets",
    "node_selector",
    "uid",
    "gid",
    "fs_gid",
    "supplemental_gids",
    "privileged",
    "allow_privilege_escalation",
    "container_security_context",
    "pod_security_context",
    "environment",
    "volumes",
    "volume_mounts",
    "working_dir",
    "extra_labels",
    "extra_annotations",
    "cpu_limit",
    "cpu_guarantee",
    "mem_limit",
    "mem_guarantee",
    "extra_resource_limits",
    "extra_resource_guarantees",
    "lifecycle_hooks",
    "init_containers",
    "service_account",
    "automount_service_account_token",
    "extra_container_config",
    "extra_pod_config",
    "extra_containers",
    "scheduler_name",
    "tolerations",
    "node_affinity_preferred",
    "node_affinity_required",
    "pod_affinity_preferred",
    "pod_affinity_required",
    "pod_anti_affinity_preferred",
    "pod_anti_affinity_required",
    "priority_class_name",
    "common_labels",
    "component_label",
    "pod_name_template",
    "pvc_name_template",
    "storage_pvc_ensure",
    "storage_class",
    "storage_access_modes",
    "storage_capacity",
    "storage_selector",
    "storage_extra_labels",
    "storage_extra_annotations",
    "slug_scheme",
    "port",
    "ip",
    "default_url",
    "notebook_dir",
    "debug",
    "disable_user_config",
    "profile_list",
    "group_overrides",
    "oauth_client_allowed_scopes",
    "namespace",
];

/// Settings that exist but do not change the pod (timeouts, hooks run in Python, the form).
const OTHER_SETTINGS: &[&str] = &[
    "http_timeout",
    "start_timeout",
    "events_enabled",
    "consecutive_failure_limit",
    "profile_form_template",
    "additional_profile_form_template_paths",
    "options_form",
    "options_from_form",
    "poll_interval",
    "poll_jitter",
    "delete_grace_period",
    "delete_pvc",
    "delete_stopped_pods",
    "k8s_api_host",
    "k8s_api_ssl_ca_cert",
    "k8s_api_verify_ssl",
    "k8s_api_request_timeout",
    "k8s_api_request_retry_timeout",
    "k8s_api_threadpool_workers",
    "slow_spawn_message",
    "slow_spawn_message_frequency",
    "slow_spawn_message_threshold",
    "remember_pvc_name",
    "handle_legacy_names",
    "dns_name_template",
    "user_namespace_template",
    "user_namespace_labels",
    "user_namespace_annotations",
    "oauth_roles",
    "server_token_scopes",
    "pre_spawn_hook",
    "post_stop_hook",
    "modify_pod_hook",
    "after_pod_created_hook",
    "auth_state_hook",
    "progress_ready_hook",
    "get_pod_url",
    "pod_connect_ip",
    "ssl_alt_names",
    "ssl_alt_names_include_local",
    "secret_name_template",
    "secret_mount_path",
    "services_enabled",
    "hub_connect_ip",
    "hub_connect_port",
    "hub_connect_url",
    "env_keep",
    "cpu_limit",
    "mem_limit",
];

/// What hubfleet makes of a KubeSpawner setting it meets in config or an override.
pub(crate) fn known_setting(name: &str) -> bool {
    POD_SETTINGS.contains(&name) || OTHER_SETTINGS.contains(&name)
}

/// The settings of one server's spawner.
#[derive(Debug, Clone)]
pub(crate) struct Spawner {
    settings: BTreeMap<String, Setting>,
    /// What was set that hubfleet does not model, for the caller to report.
    pub(crate) notes: Vec<String>,
    pub(crate) user_name: String,
    pub(crate) user_id: u64,
    pub(crate) user_admin: bool,
    pub(crate) user_groups: Vec<String>,
    pub(crate) server_name: String,
    pub(crate) hub_namespace: String,
    /// Fixed when the spawner is made, from the config's templates (as KubeSpawner's
    /// `__init__`): later overrides of the templates do not change them.
    pub(crate) pod_name: String,
    pub(crate) pvc_name: String,
}

impl Spawner {
    pub(crate) fn new(
        config: &SpawnerConfig,
        user: &crate::UserFacts,
        server_name: &str,
        hub_namespace: &str,
    ) -> Result<Spawner, KubeError> {
        let mut settings = BTreeMap::new();
        let mut notes = Vec::new();
        for (section, map) in [("Spawner", &config.spawner), ("KubeSpawner", &config.kube)] {
            for (name, setting) in map {
                let name = deprecated_name(name);
                if !known_setting(&name) {
                    notes.push(format!(
                        "{}: {section}.{name} is not a KubeSpawner setting hubfleet knows; it is left out",
                        setting.from
                    ));
                }
                settings.insert(name, setting.clone());
            }
        }
        let mut spawner = Spawner {
            settings,
            notes,
            user_name: user.name.clone(),
            user_id: user.id,
            user_admin: user.admin,
            user_groups: user.groups.clone(),
            server_name: server_name.to_owned(),
            hub_namespace: hub_namespace.to_owned(),
            pod_name: String::new(),
            pvc_name: String::new(),
        };
        spawner.pod_name = spawner.expand_setting("pod_name_template")?;
        spawner.pvc_name = spawner.expand_setting("pvc_name_template")?;
        Ok(spawner)
    }

    fn expand_setting(&self, name: &str) -> Result<String, KubeError> {
        let template = self.string(name)?.unwrap_or_default();
        self.expand(&template)
            .map_err(|e| KubeError::invalid(self.from(name), e))
    }

    /// The current value of `name`.
    pub(crate) fn get(&self, name: &str) -> Value {
        self.settings
            .get(name)
            .map(|s| s.value.clone())
            .or_else(|| default_of(name))
            .unwrap_or(Value::Null)
    }

    /// Where the value of `name` came from, for messages.
    pub(crate) fn from(&self, name: &str) -> String {
        self.settings
            .get(name)
            .map(|s| s.from.clone())
            .unwrap_or_else(|| format!("KubeSpawner.{name}"))
    }

    pub(crate) fn set(&mut self, name: &str, value: Value, from: &str) {
        self.settings.insert(
            name.to_owned(),
            Setting {
                value,
                from: from.to_owned(),
            },
        );
    }

    /// KubeSpawner's `_apply_overrides`: a mapping merges into a mapping setting (`null` deletes
    /// a key), anything else replaces the setting.
    pub(crate) fn apply_overrides(&mut self, overrides: &Mapping, from: &str) {
        for (key, value) in overrides {
            let name = python::str_of(key);
            let from_key = format!("{from}.{name}");
            if !known_setting(&name) {
                self.notes.push(format!(
                    "{from_key}: not a KubeSpawner setting hubfleet knows; it is left out"
                ));
            }
            match (value, self.get(&name)) {
                (Value::Mapping(changes), Value::Mapping(mut current)) => {
                    recursive_update(&mut current, changes);
                    self.set(&name, Value::Mapping(current), &from_key);
                }
                _ => self.set(&name, value.clone(), &from_key),
            }
        }
    }

    /// A string setting (`None` when unset or `null`).
    pub(crate) fn string(&self, name: &str) -> Result<Option<String>, KubeError> {
        match self.get(name) {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            v @ (Value::Number(_) | Value::Bool(_)) => Ok(Some(python::str_of(&v))),
            _ => Err(KubeError::invalid(self.from(name), "must be a string")),
        }
    }

    /// A boolean setting.
    pub(crate) fn flag(&self, name: &str) -> Result<Option<bool>, KubeError> {
        match self.get(name) {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(b)),
            _ => Err(KubeError::invalid(self.from(name), "must be true or false")),
        }
    }

    /// A mapping setting (empty when unset).
    pub(crate) fn mapping(&self, name: &str) -> Result<Mapping, KubeError> {
        match self.get(name) {
            Value::Null => Ok(Mapping::new()),
            Value::Mapping(m) => Ok(m),
            _ => Err(KubeError::invalid(
                self.from(name),
                "must be a mapping of keys to values",
            )),
        }
    }

    /// A list-or-mapping setting as a list: a mapping gives its values sorted by key
    /// (KubeSpawner's `_sorted_dict_values`).
    pub(crate) fn sorted_values(&self, name: &str) -> Result<Vec<Value>, KubeError> {
        match self.get(name) {
            Value::Null => Ok(Vec::new()),
            Value::Sequence(items) => Ok(items),
            Value::Mapping(m) => {
                let mut entries: Vec<(String, Value)> = m
                    .into_iter()
                    .map(|(k, v)| (python::str_of(&k), v))
                    .collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(entries.into_iter().map(|(_, v)| v).collect())
            }
            _ => Err(KubeError::invalid(
                self.from(name),
                "must be a list, or a mapping whose values are used in the order of its keys",
            )),
        }
    }

    /// A number setting as `f64` (`cpu_limit`: KubeSpawner's `Float`).
    pub(crate) fn float(&self, name: &str) -> Result<Option<f64>, KubeError> {
        match self.get(name) {
            Value::Null => Ok(None),
            Value::Number(n) => Ok(n.as_f64()),
            Value::String(s) => s.trim().parse::<f64>().map(Some).map_err(|_| {
                KubeError::invalid(
                    self.from(name),
                    format!("{s:?} is not a number of CPUs (e.g. 0.5 or 2)"),
                )
            }),
            _ => Err(KubeError::invalid(self.from(name), "must be a number")),
        }
    }

    /// A memory setting in bytes (JupyterHub's `ByteSpecification`: a number of bytes, or a
    /// number with `K`, `M`, `G` or `T`, each 1024 times the one before).
    pub(crate) fn bytes(&self, name: &str) -> Result<Option<i64>, KubeError> {
        match self.get(name) {
            Value::Null => Ok(None),
            Value::Number(n) => Ok(n.as_i64().or_else(|| n.as_f64().map(|f| f.trunc() as i64))),
            Value::String(s) => byte_specification(&s).map(Some).ok_or_else(|| {
                KubeError::invalid(
                    self.from(name),
                    format!("{s:?} is not a valid memory specification: give bytes, or a number with suffix K, M, G or T (e.g. 512M, 1.5G)"),
                )
            }),
            _ => Err(KubeError::invalid(self.from(name), "must be a number of bytes or a string like 1G")),
        }
    }

    /// An integer setting (`uid`, `fs_gid`, `port`).
    pub(crate) fn int(&self, name: &str) -> Result<Option<i64>, KubeError> {
        match self.get(name) {
            Value::Null => Ok(None),
            Value::Number(n) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| KubeError::invalid(self.from(name), "must be a whole number")),
            Value::String(s) => s.trim().parse().map(Some).map_err(|_| {
                KubeError::invalid(self.from(name), format!("{s:?} is not a whole number"))
            }),
            _ => Err(KubeError::invalid(
                self.from(name),
                "must be a whole number",
            )),
        }
    }

    /// The names a template can use (KubeSpawner's `_expand_user_properties`).
    fn template_field(&self, field: &str) -> Option<String> {
        const MAX: usize = 48;
        let raw_server = self.server_name.as_str();
        let safe_server = if raw_server.is_empty() {
            String::new()
        } else {
            safe_slug(raw_server, is_valid_object_name, Some(MAX))
        };
        let safe_user = safe_slug(&self.user_name, is_valid_object_name, Some(MAX));
        let safe_user_server = if safe_user.len() + safe_server.len() + 2 > MAX {
            multi_slug(&[&self.user_name, raw_server], MAX)
        } else if raw_server.is_empty() {
            safe_user.clone()
        } else {
            format!("{safe_user}--{safe_server}")
        };
        let escaped_user = escape_slug(&self.user_name);
        let escaped_server = escape_slug(raw_server);
        let escape_scheme = matches!(self.get("slug_scheme"), Value::String(s) if s == "escape");
        let value = match field {
            "userid" => self.user_id.to_string(),
            "unescaped_username" => self.user_name.clone(),
            "unescaped_servername" => raw_server.to_owned(),
            "hubnamespace" => {
                if self.hub_namespace == "default" {
                    "user".into()
                } else {
                    self.hub_namespace.clone()
                }
            }
            "username" if escape_scheme => escaped_user,
            "servername" if escape_scheme => escaped_server,
            "user_server" if escape_scheme => {
                if raw_server.is_empty() {
                    escaped_user
                } else {
                    format!("{escaped_user}--{escaped_server}")
                }
            }
            "username" | "safe_username" => safe_user,
            "servername" | "safe_servername" => safe_server,
            "user_server" | "safe_user_server" => safe_user_server,
            "escaped_username" => escaped_user,
            "escaped_servername" => escaped_server,
            "escaped_user_server" => format!("{escaped_user}--{escaped_server}"),
            "pod_name" => non_empty_or(&self.pod_name, "pod_name_unavailable!"),
            "pvc_name" => non_empty_or(&self.pvc_name, "pvc_name_unavailable!"),
            "namespace" => self.namespace(),
            _ => return None,
        };
        Some(value)
    }

    /// The namespace of the pod.
    pub(crate) fn namespace(&self) -> String {
        match self.get("namespace") {
            Value::String(s) if !s.is_empty() => s,
            _ => self.hub_namespace.clone(),
        }
    }

    /// A template with the user's names filled in; a trailing `-` left by an empty server name
    /// is dropped.
    pub(crate) fn expand(&self, template: &str) -> Result<String, String> {
        let rendered =
            python::format(template, &|f| self.template_field(f), false).map_err(|e| e.0)?;
        if template.ends_with('-') {
            Ok(rendered)
        } else {
            Ok(rendered.trim_end_matches('-').to_owned())
        }
    }

    /// `_expand_all`: every string in `value` expanded (mapping keys are not).
    pub(crate) fn expand_all(&self, value: &Value, from: &str) -> Result<Value, KubeError> {
        Ok(match value {
            Value::String(s) => {
                Value::String(self.expand(s).map_err(|e| KubeError::invalid(from, e))?)
            }
            Value::Sequence(items) => Value::Sequence(
                items
                    .iter()
                    .map(|i| self.expand_all(i, from))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Mapping(map) => {
                let mut out = Mapping::new();
                for (k, v) in map {
                    out.insert(k.clone(), self.expand_all(v, from)?);
                }
                Value::Mapping(out)
            }
            other => other.clone(),
        })
    }
}

fn non_empty_or(s: &str, fallback: &str) -> String {
    if s.is_empty() {
        fallback.to_owned()
    } else {
        s.to_owned()
    }
}

/// KubeSpawner 0.9 renamed `singleuser_image_spec` and friends by dropping their prefix, and
/// `image_spec` became `image`.
fn deprecated_name(name: &str) -> String {
    if name == "image_spec" {
        return "image".into();
    }
    const OLD: &[&str] = &[
        "singleuser_working_dir",
        "singleuser_service_account",
        "singleuser_extra_labels",
        "singleuser_extra_annotations",
        "singleuser_image_spec",
        "singleuser_image_pull_secrets",
        "singleuser_node_selector",
        "singleuser_uid",
        "singleuser_fs_gid",
        "singleuser_supplemental_gids",
        "singleuser_privileged",
        "singleuser_allow_privilege_escalation",
        "singleuser_lifecycle_hooks",
        "singleuser_extra_pod_config",
        "singleuser_init_containers",
        "singleuser_extra_container_config",
        "singleuser_extra_containers",
        "singleuser_image_pull_policy",
    ];
    if OLD.contains(&name) {
        let new = &name["singleuser_".len()..];
        return if new == "image_spec" {
            "image".into()
        } else {
            new.to_owned()
        };
    }
    name.to_owned()
}

/// `recursive_update` of KubeSpawner's utils: mappings merge, `null` deletes a key.
pub(crate) fn recursive_update(target: &mut Mapping, changes: &Mapping) {
    for (k, v) in changes {
        match v {
            Value::Mapping(inner) => {
                let slot = target
                    .entry(k.clone())
                    .or_insert_with(|| Value::Mapping(Mapping::new()));
                if !slot.is_mapping() {
                    // Python would fail here; a mapping replacing a scalar is the useful reading.
                    *slot = Value::Mapping(Mapping::new());
                }
                if let Value::Mapping(t) = slot {
                    recursive_update(t, inner);
                }
            }
            Value::Null => {
                target.shift_remove(k);
            }
            other => {
                target.insert(k.clone(), other.clone());
            }
        }
    }
}

/// JupyterHub's `ByteSpecification`: `"1.5G"` is `int(1.5 * 1024**3)`.
pub(crate) fn byte_specification(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    let (number, suffix) = s.split_at(s.len().checked_sub(1)?);
    let unit: f64 = match suffix {
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        "T" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let n: f64 = number.trim().parse().ok()?;
    Some((n * unit) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_specifications_as_jupyterhub() {
        assert_eq!(byte_specification("1G"), Some(1073741824));
        assert_eq!(byte_specification("3.635G"), Some(3903051530));
        assert_eq!(byte_specification("256M"), Some(268435456));
        assert_eq!(byte_specification("1024"), Some(1024));
        assert_eq!(byte_specification("1Gi"), None);
    }

    #[test]
    fn overrides_merge_mappings() {
        let mut m: Mapping = serde_yaml_ng::from_str("a: 1\nb: {c: 2, d: 3}\n").unwrap();
        let changes: Mapping = serde_yaml_ng::from_str("b: {c: null, e: 4}\nf: 5\n").unwrap();
        recursive_update(&mut m, &changes);
        let want: Mapping = serde_yaml_ng::from_str("a: 1\nb: {d: 3, e: 4}\nf: 5\n").unwrap();
        assert_eq!(m, want);
    }
}
