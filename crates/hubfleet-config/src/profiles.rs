//! What each user gets: `singleuser.profileList` (KubeSpawner's profiles), `singleuser.image`,
//! `singleuser.memory` / `singleuser.cpu`, and the local spawner's environments, isolation and
//! storage (`hubfleet.local.*`).
//!
//! Profiles follow KubeSpawner's `profile_list`: each profile has a `display_name`, an optional
//! `slug` (derived from the display name when missing), `description`, `default`,
//! `allowed_groups`, a `kubespawner_override` and `profile_options`, each option with `choices`
//! and an optional `unlisted_choice` (free text checked by `validation_regex`, substituted for
//! `{value}` in its `kubespawner_override`).
//!
//! Overrides the local spawner understands: `image` (a key of `hubfleet.local.environments`),
//! `mem_limit`, `mem_guarantee`, `cpu_limit`, `cpu_guarantee`, `default_url` and `environment`.
//! Kubernetes-only overrides (`node_selector`, `tolerations`, …) are kept for the Kubernetes
//! spawner and reported as having no effect locally. Any other key is an error naming it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::load::Ctx;
use crate::locate::{KeyPath, Seg};
use crate::HubConfig;

// ---------------------------------------------------------------------------------------------
// Quantities
// ---------------------------------------------------------------------------------------------

/// Parse a memory size as KubeSpawner's `ByteSpecification` does: a number of bytes, or a number
/// with a suffix `K`, `M`, `G`, `T` (powers of 1024; `Ki`, `Mi`, `Gi`, `Ti` too). Fractions are
/// allowed (`7.234G`).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad = || {
        format!("`{text}` is not a memory size; write bytes (`1073741824`) or a number with K, M, G or T (`512M`, `1G`, `1.5G`)")
    };
    let (number, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let factor: u64 = match unit {
        "" => 1,
        "K" | "Ki" => 1 << 10,
        "M" | "Mi" => 1 << 20,
        "G" | "Gi" => 1 << 30,
        "T" | "Ti" => 1 << 40,
        _ => return Err(bad()),
    };
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    if !value.is_finite() || value < 0.0 {
        return Err(bad());
    }
    let bytes = value * factor as f64;
    if bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes.round() as u64)
}

/// Memory as people write it: `1G`, `512M`, `1.5G`, else bytes.
pub fn format_bytes(bytes: u64) -> String {
    for (unit, factor) in [
        ("T", 1u64 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ] {
        if bytes >= factor {
            let v = bytes as f64 / factor as f64;
            if bytes.is_multiple_of(factor) {
                return format!("{}{unit}", bytes / factor);
            }
            let s = format!("{v:.2}");
            let s = s.trim_end_matches('0').trim_end_matches('.');
            return format!("{s}{unit}");
        }
    }
    bytes.to_string()
}

/// Parse CPUs: a number (`0.5`, `2`) or Kubernetes' millicores (`500m`). Returns millicores.
pub fn parse_cpu(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad = || format!("`{text}` is not a number of CPUs; write e.g. `0.5`, `2` or `500m`");
    let value: f64 = match t.strip_suffix('m') {
        Some(milli) => milli.trim().parse::<f64>().map_err(|_| bad())? / 1000.0,
        None => t.parse().map_err(|_| bad())?,
    };
    if !value.is_finite() || !(0.0..=1e9).contains(&value) {
        return Err(bad());
    }
    Ok((value * 1000.0).round() as u64)
}

/// CPUs as people write them: `0.5`, `2`.
pub fn format_cpu(millicores: u64) -> String {
    if millicores.is_multiple_of(1000) {
        (millicores / 1000).to_string()
    } else {
        let s = format!("{:.3}", millicores as f64 / 1000.0);
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A scalar read as text (numbers as written).
fn scalar_text<'de, D: Deserializer<'de>>(
    d: D,
    expecting: &'static str,
) -> Result<Option<String>, D::Error> {
    struct V(&'static str);
    impl Visitor<'_> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V(expecting))
}

const MEM_EXPECTING: &str = "a memory size such as `1G`, `512M` or a number of bytes";
const CPU_EXPECTING: &str = "a number of CPUs such as `0.5` or `2`";

fn opt_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    scalar_text(d, MEM_EXPECTING)?
        .map(|t| parse_bytes(&t).map_err(de::Error::custom))
        .transpose()
}

fn opt_cpu<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    scalar_text(d, CPU_EXPECTING)?
        .map(|t| parse_cpu(&t).map_err(de::Error::custom))
        .transpose()
}

/// An override that may be given as `null` to unset (`Some(None)`), or not given (`None`).
fn set_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    opt_bytes(d).map(Some)
}

fn set_cpu<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    opt_cpu(d).map(Some)
}

fn set_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    scalar_text(d, "a string").map(Some)
}

fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    scalar_text(d, "a string")
}

fn text_or_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(scalar_text(d, "a string")?.unwrap_or_default())
}

fn bool_or_false<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(false))
}

fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    Option::<Vec<String>>::deserialize(d)
}

/// `NAME: value` with scalar values (numbers and booleans as written); `null` → empty.
fn env_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping of variable names to values, such as `{MY_VAR: value}`")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                if key.is_empty() || key.contains('=') || key.contains('\0') {
                    return Err(de::Error::custom(format!(
                        "`{key}` is not a valid environment variable name"
                    )));
                }
                let value: EnvValue = map.next_value()?;
                out.insert(key, value.0);
            }
            Ok(out)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
    }
    d.deserialize_any(V)
}

struct EnvValue(String);

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match scalar_text(d, "a literal value (string, number or boolean)") {
            Ok(Some(v)) => Ok(EnvValue(v)),
            Ok(None) => Err(de::Error::custom(
                "the variable has no value; write `\"\"` for an empty value",
            )),
            Err(e) => Err(e),
        }
    }
}

/// A mapping kept in file order; `null` → empty; a `null` entry is the entry's default.
fn ordered<'de, D, T>(d: D) -> Result<Vec<(String, T)>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    struct V<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for V<T> {
        type Value = Vec<(String, T)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping of names to settings")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out: Vec<(String, T)> = Vec::new();
            while let Some(key) = map.next_key::<String>()? {
                let value: Option<T> = map.next_value()?;
                out.push((key, value.unwrap_or_default()));
            }
            Ok(out)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
    }
    d.deserialize_any(V(std::marker::PhantomData))
}

// ---------------------------------------------------------------------------------------------
// singleuser.image / memory / cpu
// ---------------------------------------------------------------------------------------------

/// `singleuser.image`: z2jh's `{name, tag}` (a plain string is accepted too).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageConfig {
    /// `name:tag`, or `name` when there is no tag; `None` when no name is given.
    pub spec: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
struct RawImage {
    #[serde(deserialize_with = "opt_text")]
    name: Option<String>,
    #[serde(deserialize_with = "opt_text")]
    tag: Option<String>,
    /// Kubernetes only; accepted.
    #[allow(dead_code)]
    pull_policy: Option<serde_yaml_ng::Value>,
    /// Kubernetes only; accepted.
    #[allow(dead_code)]
    pull_secrets: Option<serde_yaml_ng::Value>,
}

impl<'de> Deserialize<'de> for ImageConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_yaml_ng::Value::deserialize(d)?;
        match value {
            serde_yaml_ng::Value::Null => Ok(ImageConfig::default()),
            serde_yaml_ng::Value::String(s) => Ok(ImageConfig { spec: Some(s) }),
            serde_yaml_ng::Value::Mapping(_) => {
                let raw: RawImage = serde_yaml_ng::from_value(value).map_err(de::Error::custom)?;
                let spec = match (raw.name, raw.tag) {
                    (Some(n), Some(t)) if !t.is_empty() => Some(format!("{n}:{t}")),
                    (Some(n), _) => Some(n),
                    (None, _) => None,
                };
                Ok(ImageConfig { spec })
            }
            _ => Err(de::Error::custom(
                "expected `{name: ..., tag: ...}` or an image name such as `python-3.12`",
            )),
        }
    }
}

/// `singleuser.memory` / `singleuser.cpu`: `limit` and `guarantee`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Bytes.
    #[serde(deserialize_with = "opt_bytes")]
    pub limit: Option<u64>,
    /// Bytes.
    #[serde(deserialize_with = "opt_bytes")]
    pub guarantee: Option<u64>,
}

/// `singleuser.cpu`, in millicores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CpuConfig {
    #[serde(deserialize_with = "opt_cpu")]
    pub limit: Option<u64>,
    #[serde(deserialize_with = "opt_cpu")]
    pub guarantee: Option<u64>,
}

/// `singleuser.storage`: only `capacity` means something locally (a quota on the home).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Bytes (`10Gi`, as z2jh's PVC size).
    #[serde(deserialize_with = "opt_bytes")]
    pub capacity: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// Profiles
// ---------------------------------------------------------------------------------------------

/// KubeSpawner overrides that only mean something on Kubernetes: kept (for the Kubernetes
/// spawner), reported as having no effect with the local spawner.
pub const KUBERNETES_ONLY_OVERRIDES: &[&str] = &[
    "node_selector",
    "tolerations",
    "extra_resource_limits",
    "extra_resource_guarantees",
    "image_pull_policy",
    "image_pull_secrets",
    "working_dir",
    "extra_pod_config",
    "extra_container_config",
    "init_containers",
    "volumes",
    "volume_mounts",
    "extra_labels",
    "extra_annotations",
    "lifecycle_hooks",
    "service_account",
    "uid",
    "gid",
    "fs_gid",
    "supplemental_gids",
    "node_affinity_required",
    "node_affinity_preferred",
];

/// The Kubernetes resource name of NVIDIA GPUs, as in `extra_resource_limits`.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// A `kubespawner_override`. `None` = not given; `Some(None)` = given as `null` (unset).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Overrides {
    /// `image`: a key of `hubfleet.local.environments` (or, unmapped, just `JUPYTER_IMAGE`).
    pub image: Option<String>,
    pub mem_limit: Option<Option<u64>>,
    pub mem_guarantee: Option<Option<u64>>,
    pub cpu_limit: Option<Option<u64>>,
    pub cpu_guarantee: Option<Option<u64>>,
    pub default_url: Option<Option<String>>,
    /// Merged into the server's environment.
    pub environment: BTreeMap<String, String>,
    /// Kubernetes-only keys, as written.
    pub kubernetes: BTreeMap<String, serde_json::Value>,
}

impl Overrides {
    /// Apply `other` on top of `self` (later wins; `environment` merges).
    pub fn apply(&mut self, other: &Overrides) {
        if other.image.is_some() {
            self.image.clone_from(&other.image);
        }
        for (mine, theirs) in [
            (&mut self.mem_limit, other.mem_limit),
            (&mut self.mem_guarantee, other.mem_guarantee),
            (&mut self.cpu_limit, other.cpu_limit),
            (&mut self.cpu_guarantee, other.cpu_guarantee),
        ] {
            if theirs.is_some() {
                *mine = theirs;
            }
        }
        if other.default_url.is_some() {
            self.default_url.clone_from(&other.default_url);
        }
        for (k, v) in &other.environment {
            self.environment.insert(k.clone(), v.clone());
        }
        for (k, v) in &other.kubernetes {
            self.kubernetes.insert(k.clone(), v.clone());
        }
    }

    /// The GPUs asked for with `extra_resource_limits: {nvidia.com/gpu: N}` (2i2c's GPU
    /// profiles): `Ok(None)` when not asked; `Err` when N is not a whole number.
    pub fn gpu_request(&self) -> Result<Option<u32>, String> {
        let Some(value) = self
            .kubernetes
            .get("extra_resource_limits")
            .and_then(|limits| limits.get(GPU_RESOURCE))
        else {
            return Ok(None);
        };
        let count = match value {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        count
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                format!("`{value}` is not a number of GPUs; write a whole number such as \"1\"")
            })
    }

    /// Replace `{value}` in the string overrides (for an unlisted choice).
    pub fn with_value(&self, value: &str) -> Overrides {
        let sub = |s: &str| s.replace("{value}", value);
        let mut out = self.clone();
        out.image = self.image.as_deref().map(sub);
        out.default_url = self.default_url.as_ref().map(|u| u.as_deref().map(sub));
        out.environment = self
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), sub(v)))
            .collect();
        out
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawOverrides {
    #[serde(deserialize_with = "opt_text")]
    image: Option<String>,
    #[serde(deserialize_with = "set_bytes")]
    mem_limit: Option<Option<u64>>,
    #[serde(deserialize_with = "set_bytes")]
    mem_guarantee: Option<Option<u64>>,
    #[serde(deserialize_with = "set_cpu")]
    cpu_limit: Option<Option<u64>>,
    #[serde(deserialize_with = "set_cpu")]
    cpu_guarantee: Option<Option<u64>>,
    #[serde(deserialize_with = "set_string")]
    default_url: Option<Option<String>>,
    #[serde(deserialize_with = "env_map")]
    environment: BTreeMap<String, String>,
    node_selector: Option<serde_yaml_ng::Value>,
    tolerations: Option<serde_yaml_ng::Value>,
    extra_resource_limits: Option<serde_yaml_ng::Value>,
    extra_resource_guarantees: Option<serde_yaml_ng::Value>,
    image_pull_policy: Option<serde_yaml_ng::Value>,
    image_pull_secrets: Option<serde_yaml_ng::Value>,
    working_dir: Option<serde_yaml_ng::Value>,
    extra_pod_config: Option<serde_yaml_ng::Value>,
    extra_container_config: Option<serde_yaml_ng::Value>,
    init_containers: Option<serde_yaml_ng::Value>,
    volumes: Option<serde_yaml_ng::Value>,
    volume_mounts: Option<serde_yaml_ng::Value>,
    extra_labels: Option<serde_yaml_ng::Value>,
    extra_annotations: Option<serde_yaml_ng::Value>,
    lifecycle_hooks: Option<serde_yaml_ng::Value>,
    service_account: Option<serde_yaml_ng::Value>,
    uid: Option<serde_yaml_ng::Value>,
    gid: Option<serde_yaml_ng::Value>,
    fs_gid: Option<serde_yaml_ng::Value>,
    supplemental_gids: Option<serde_yaml_ng::Value>,
    node_affinity_required: Option<serde_yaml_ng::Value>,
    node_affinity_preferred: Option<serde_yaml_ng::Value>,
}

impl<'de> Deserialize<'de> for Overrides {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Option::<RawOverrides>::deserialize(d)?.unwrap_or_default();
        let mut kubernetes = BTreeMap::new();
        for (key, value) in [
            ("node_selector", raw.node_selector),
            ("tolerations", raw.tolerations),
            ("extra_resource_limits", raw.extra_resource_limits),
            ("extra_resource_guarantees", raw.extra_resource_guarantees),
            ("image_pull_policy", raw.image_pull_policy),
            ("image_pull_secrets", raw.image_pull_secrets),
            ("working_dir", raw.working_dir),
            ("extra_pod_config", raw.extra_pod_config),
            ("extra_container_config", raw.extra_container_config),
            ("init_containers", raw.init_containers),
            ("volumes", raw.volumes),
            ("volume_mounts", raw.volume_mounts),
            ("extra_labels", raw.extra_labels),
            ("extra_annotations", raw.extra_annotations),
            ("lifecycle_hooks", raw.lifecycle_hooks),
            ("service_account", raw.service_account),
            ("uid", raw.uid),
            ("gid", raw.gid),
            ("fs_gid", raw.fs_gid),
            ("supplemental_gids", raw.supplemental_gids),
            ("node_affinity_required", raw.node_affinity_required),
            ("node_affinity_preferred", raw.node_affinity_preferred),
        ] {
            if let Some(v) = value {
                let json = serde_json::to_value(&v).unwrap_or(serde_json::Value::Null);
                kubernetes.insert(key.to_owned(), json);
            }
        }
        Ok(Overrides {
            image: raw.image,
            mem_limit: raw.mem_limit,
            mem_guarantee: raw.mem_guarantee,
            cpu_limit: raw.cpu_limit,
            cpu_guarantee: raw.cpu_guarantee,
            default_url: raw.default_url,
            environment: raw.environment,
            kubernetes,
        })
    }
}

/// One entry of `singleuser.profileList`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Profile {
    pub display_name: String,
    /// Given, or derived from `display_name` as KubeSpawner does.
    pub slug: String,
    pub description: String,
    /// As written; [`profile_defaults`] decides which profile is the default.
    pub default: bool,
    /// `None`: everyone may use it.
    pub allowed_groups: Option<Vec<String>>,
    pub overrides: Overrides,
    /// `profile_options`, in file order.
    pub options: Vec<(String, ProfileOption)>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawProfile {
    #[serde(deserialize_with = "text_or_empty")]
    display_name: String,
    #[serde(deserialize_with = "opt_text")]
    slug: Option<String>,
    #[serde(deserialize_with = "text_or_empty")]
    description: String,
    #[serde(deserialize_with = "bool_or_false")]
    default: bool,
    #[serde(deserialize_with = "string_list")]
    allowed_groups: Option<Vec<String>>,
    kubespawner_override: Overrides,
    #[serde(deserialize_with = "ordered")]
    profile_options: Vec<(String, ProfileOption)>,
}

impl<'de> Deserialize<'de> for Profile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawProfile::deserialize(d)?;
        if raw.display_name.trim().is_empty() {
            return Err(de::Error::custom(
                "a profile needs a `display_name` (the name people see on the server options page)",
            ));
        }
        let slug = match raw.slug {
            Some(s) if !s.trim().is_empty() => s,
            _ => slugify(&raw.display_name),
        };
        Ok(Profile {
            display_name: raw.display_name,
            slug,
            description: raw.description,
            default: raw.default,
            allowed_groups: raw.allowed_groups,
            overrides: raw.kubespawner_override,
            options: raw.profile_options,
        })
    }
}

/// KubeSpawner's slug for a profile without one: lowercase, runs of other characters as `-`.
pub fn slugify(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

/// One of a profile's `profile_options`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileOption {
    #[serde(deserialize_with = "text_or_empty")]
    pub display_name: String,
    /// In file order.
    #[serde(deserialize_with = "ordered")]
    pub choices: Vec<(String, Choice)>,
    pub unlisted_choice: Option<UnlistedChoice>,
    /// jupyterhub-fancy-profiles' image building (needs BinderHub): accepted, no effect.
    #[serde(deserialize_with = "dynamic_building")]
    pub dynamic_image_building: bool,
}

fn dynamic_building<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Raw {
        #[serde(deserialize_with = "bool_or_false")]
        enabled: bool,
    }
    Ok(Option::<Raw>::deserialize(d)?.unwrap_or_default().enabled)
}

/// One of an option's `choices`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Choice {
    #[serde(deserialize_with = "text_or_empty")]
    pub display_name: String,
    #[serde(deserialize_with = "text_or_empty")]
    pub description: String,
    #[serde(deserialize_with = "bool_or_false")]
    pub default: bool,
    /// fancy-profiles spelling; accepted.
    #[serde(deserialize_with = "opt_text")]
    pub slug: Option<String>,
    /// `None`: everyone may pick it; else members of these groups only.
    #[serde(deserialize_with = "string_list")]
    pub allowed_groups: Option<Vec<String>>,
    pub kubespawner_override: Overrides,
}

/// An option's `unlisted_choice`: free text, checked by `validation_regex`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnlistedChoice {
    #[serde(deserialize_with = "bool_or_false")]
    pub enabled: bool,
    #[serde(deserialize_with = "text_or_empty")]
    pub display_name: String,
    #[serde(deserialize_with = "text_or_empty")]
    pub description: String,
    #[serde(deserialize_with = "opt_text")]
    pub display_name_in_choices: Option<String>,
    #[serde(deserialize_with = "opt_text")]
    pub description_in_choices: Option<String>,
    #[serde(deserialize_with = "opt_text")]
    pub validation_regex: Option<String>,
    #[serde(deserialize_with = "opt_text")]
    pub validation_message: Option<String>,
    /// `{value}` in its strings is replaced by what the user typed.
    pub kubespawner_override: Overrides,
}

/// `singleuser.profileList`: `null` → empty.
pub(crate) fn profile_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Profile>, D::Error> {
    Ok(Option::<Vec<Profile>>::deserialize(d)?.unwrap_or_default())
}

/// The index of the default profile among `profiles`: the first with `default: true`, else the
/// first (KubeSpawner's rule).
pub fn default_index<T>(items: &[T], is_default: impl Fn(&T) -> bool) -> usize {
    items.iter().position(is_default).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// hubfleet.local: environments, isolation, storage
// ---------------------------------------------------------------------------------------------

/// One entry of `hubfleet.local.environments`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvironmentConfig {
    /// A Python venv or conda prefix: its `bin/` holds `jupyterhub-singleuser`. Resolved like
    /// `data_dir`.
    #[serde(deserialize_with = "opt_path")]
    pub path: Option<PathBuf>,
    /// A command that starts the server instead.
    #[serde(deserialize_with = "opt_command")]
    pub cmd: Option<Vec<String>>,
    /// Variables added to the server's environment.
    #[serde(deserialize_with = "env_map")]
    pub env: BTreeMap<String, String>,
}

fn opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    Ok(scalar_text(d, "a path")?.map(PathBuf::from))
}

fn opt_command<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Cmd {
        One(String),
        Many(Vec<String>),
    }
    match Option::<Cmd>::deserialize(d)? {
        None => Ok(None),
        Some(Cmd::One(s)) if s.trim().is_empty() => Err(de::Error::custom("the command is empty")),
        Some(Cmd::One(s)) => Ok(Some(vec![s])),
        Some(Cmd::Many(v)) if v.first().is_none_or(|p| p.trim().is_empty()) => Err(
            de::Error::custom("the command list is empty or its program is empty"),
        ),
        Some(Cmd::Many(v)) => Ok(Some(v)),
    }
}

/// `hubfleet.local.environments`: `null` → empty, in file order.
pub(crate) fn environments<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, EnvironmentConfig)>, D::Error> {
    ordered(d)
}

// ---------------------------------------------------------------------------------------------
// Checks (run by validate.rs)
// ---------------------------------------------------------------------------------------------

fn key_path(segs: &[Seg]) -> KeyPath {
    KeyPath(segs.to_vec())
}

fn k(s: &str) -> Seg {
    Seg::Key(s.to_owned())
}

/// Where the `kubespawner_override` of something lives, and the override itself.
struct Site<'a> {
    path: Vec<Seg>,
    overrides: &'a Overrides,
    /// Unlisted choices: `{value}` stands for what the user types.
    templated: bool,
}

/// `hubfleet.local.existing_system_users`: each entry an account the hub would use
/// (`jupyter-…`, as `useradd` accepts it), listed once.
fn check_existing_system_users(
    local: &crate::model::LocalSpawnerConfig,
    ctx: &Ctx<'_>,
    f: &mut crate::load::Findings,
) {
    for (i, account) in local.existing_system_users.iter().enumerate() {
        let at = key_path(&[
            k("hubfleet"),
            k("local"),
            k("existing_system_users"),
            Seg::Index(i),
        ]);
        let valid = account.len() <= 32
            && account.starts_with("jupyter-")
            && account
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            f.error(ctx.at_key_path(
                &at,
                format!(
                    "`{account}` is not an account the hub would use: users' servers run as `jupyter-<name>` (at most 32 characters of a-z, 0-9, `-` and `_`), e.g. `jupyter-bob` for bob"
                ),
            ));
        } else if local.existing_system_users[..i].contains(account) {
            f.error(ctx.at_key_path(
                &at,
                format!("`{account}` is listed twice; list each account once"),
            ));
        }
    }
    if !local.existing_system_users.is_empty() && !local.system_users {
        f.warn(ctx.warning(
            "hubfleet.local.existing_system_users",
            "has no effect without `hubfleet.local.system_users: true`",
        ));
    }
}

/// Checks of profiles, limits, images and environments.
pub(crate) fn check(config: &HubConfig, ctx: &Ctx<'_>, f: &mut crate::load::Findings) {
    let su = &config.singleuser;
    let local = &config.hubfleet.local;

    // Environments.
    for (name, env) in &local.environments {
        let at = key_path(&[k("hubfleet"), k("local"), k("environments"), k(name)]);
        match (&env.path, &env.cmd) {
            (Some(_), Some(_)) => f.error(ctx.at_key_path(
                &at,
                "has both `path` and `cmd`; give one: `path` (a Python environment) or `cmd` (a command)",
            )),
            (None, None) => f.error(ctx.at_key_path(
                &at,
                "needs `path` (a Python venv or conda prefix whose bin/ holds jupyterhub-singleuser) or `cmd`",
            )),
            (Some(p), None) => {
                let resolved = config.resolve_path(p);
                if !resolved.join("bin").is_dir() {
                    f.warn(ctx.warning_at(
                        &at.child("path"),
                        format!(
                            "{} has no bin/ directory (yet); servers using this environment will fail to start until it exists (`hubfleet env create {name}` builds one)",
                            resolved.display()
                        ),
                    ));
                }
            }
            (None, Some(_)) => {}
        }
    }

    check_existing_system_users(local, ctx, f);

    if local.allow_root && local.system_users {
        f.warn(ctx.warning(
            "hubfleet.local.allow_root",
            "has no effect: with `hubfleet.local.system_users` every server runs as its own account, never as root",
        ));
    }

    // GPUs: each device once.
    for (i, gpu) in local.gpus.iter().enumerate() {
        if local.gpus[..i].contains(gpu) {
            f.error(ctx.at_key_path(
                &key_path(&[k("hubfleet"), k("local"), k("gpus"), Seg::Index(i)]),
                format!("GPU {gpu} is listed twice; list each device index once"),
            ));
        }
    }

    // Limits.
    check_limits(
        f,
        ctx,
        (
            su.memory.limit,
            su.memory.guarantee,
            key_path(&[k("singleuser"), k("memory"), k("guarantee")]),
        ),
        (
            su.cpu.limit,
            su.cpu.guarantee,
            key_path(&[k("singleuser"), k("cpu"), k("guarantee")]),
        ),
    );

    // Profiles.
    let base = [k("singleuser"), k("profileList")];
    let mut sites: Vec<Site<'_>> = Vec::new();
    let mut seen_slugs: BTreeMap<&str, usize> = BTreeMap::new();
    let mut default_seen: Option<usize> = None;
    for (i, profile) in su.profile_list.iter().enumerate() {
        let mut at = base.to_vec();
        at.push(Seg::Index(i));
        if let Some(first) = seen_slugs.insert(profile.slug.as_str(), i) {
            let field = if ctx.has_key_path(&key_path(&at).child("slug")) {
                "slug"
            } else {
                "display_name"
            };
            f.error(ctx.at_key_path(
                &key_path(&at).child(field),
                format!(
                    "profile slug `{}` is also the slug of profile {first}; give each profile its own `slug`",
                    profile.slug
                ),
            ));
        }
        if profile.default {
            match default_seen {
                Some(first) => f.error(ctx.at_key_path(
                    &key_path(&at).child("default"),
                    format!("profile {first} is already the default; only one profile may have `default: true`"),
                )),
                None => default_seen = Some(i),
            }
        }
        if let Some(groups) = &profile.allowed_groups {
            if let Some(j) = groups.iter().position(|g| g.trim().is_empty()) {
                let mut p = at.clone();
                p.push(k("allowed_groups"));
                p.push(Seg::Index(j));
                f.error(ctx.at_key_path(&key_path(&p), "is an empty group name"));
            }
        }
        let mut ko = at.clone();
        ko.push(k("kubespawner_override"));
        sites.push(Site {
            path: ko,
            overrides: &profile.overrides,
            templated: false,
        });
        for (name, option) in &profile.options {
            let mut op = at.clone();
            op.push(k("profile_options"));
            op.push(k(name));
            let unlisted = option.unlisted_choice.as_ref().filter(|u| u.enabled);
            if option.choices.is_empty() && unlisted.is_none() {
                f.error(ctx.at_key_path(
                    &key_path(&op),
                    format!("option `{name}` has no `choices` and no enabled `unlisted_choice`: give at least one choice"),
                ));
            }
            if option.dynamic_image_building {
                f.warn(ctx.warning_at(
                    &key_path(&op).child("dynamic_image_building"),
                    "has no effect: building images needs BinderHub, which hubfleet does not run; the other choices work",
                ));
            }
            let mut default_choice: Option<&str> = None;
            for (choice_name, choice) in &option.choices {
                let mut cp = op.clone();
                cp.push(k("choices"));
                cp.push(k(choice_name));
                if choice_name.ends_with("--unlisted-choice") || choice_name == "unlisted_choice" {
                    f.error(ctx.at_key_path(
                        &key_path(&cp),
                        "this choice name is reserved for the unlisted choice; rename it",
                    ));
                }
                if choice.default {
                    match default_choice {
                        Some(first) => f.error(ctx.at_key_path(
                            &key_path(&cp).child("default"),
                            format!("choice `{first}` is already the default of option `{name}`; only one choice may have `default: true`"),
                        )),
                        None => default_choice = Some(choice_name),
                    }
                }
                cp.push(k("kubespawner_override"));
                sites.push(Site {
                    path: cp,
                    overrides: &choice.kubespawner_override,
                    templated: false,
                });
            }
            if let Some(unlisted) = &option.unlisted_choice {
                let mut up = op.clone();
                up.push(k("unlisted_choice"));
                if let Some(re) = &unlisted.validation_regex {
                    if let Err(e) = regex::Regex::new(re) {
                        f.error(ctx.at_key_path(
                            &key_path(&up).child("validation_regex"),
                            format!("`{re}` is not a valid regular expression: {e}"),
                        ));
                    }
                }
                up.push(k("kubespawner_override"));
                sites.push(Site {
                    path: up,
                    overrides: &unlisted.kubespawner_override,
                    templated: true,
                });
            }
        }
    }

    // Overrides: limits consistent, Kubernetes-only keys reported, images mapped.
    for site in &sites {
        let o = site.overrides;
        check_limits(
            f,
            ctx,
            (
                o.mem_limit.flatten(),
                o.mem_guarantee.flatten(),
                key_path(&site.path).child("mem_guarantee"),
            ),
            (
                o.cpu_limit.flatten(),
                o.cpu_guarantee.flatten(),
                key_path(&site.path).child("cpu_guarantee"),
            ),
        );
        let gpus_at = key_path(&site.path)
            .child("extra_resource_limits")
            .child(GPU_RESOURCE);
        match o.gpu_request() {
            Err(e) => f.error(ctx.at_key_path(&gpus_at, e)),
            Ok(Some(n)) if n as usize > local.gpus.len() => f.warn(ctx.warning_at(
                &gpus_at,
                format!(
                    "asks for {n} GPU(s) but hubfleet.local.gpus lists {}: starts that ask for it will be refused",
                    local.gpus.len()
                ),
            )),
            Ok(_) => {}
        }
        for (key, value) in &o.kubernetes {
            // GPUs are given out locally too (`hubfleet.local.gpus`).
            let only_gpus = key == "extra_resource_limits"
                && value
                    .as_object()
                    .is_some_and(|m| m.keys().all(|k| k == GPU_RESOURCE));
            if only_gpus {
                continue;
            }
            f.warn(ctx.warning_at(
                &key_path(&site.path).child(key),
                "has no effect with the local spawner (it is kept for the Kubernetes spawner)",
            ));
        }
    }
    let env_names: Vec<&str> = local.environments.iter().map(|(n, _)| n.as_str()).collect();
    let mut images: Vec<(KeyPath, &str, bool)> = Vec::new();
    if let Some(image) = su.image.spec.as_deref() {
        images.push((key_path(&[k("singleuser"), k("image")]), image, false));
    }
    for site in &sites {
        if let Some(image) = site.overrides.image.as_deref() {
            images.push((key_path(&site.path).child("image"), image, site.templated));
        }
    }
    for (at, image, templated) in images {
        if templated && image.contains("{value}") {
            // Checked when a user types a value.
            continue;
        }
        if env_names.is_empty() {
            f.warn(ctx.warning_at(
                &at,
                format!(
                    "image `{image}` is not mapped to a local environment (hubfleet.local.environments is empty): servers run in hubfleet.local.python_env, with JUPYTER_IMAGE={image}"
                ),
            ));
        } else if !env_names.contains(&image) {
            f.error(ctx.at_key_path(
                &at,
                format!(
                    "image `{image}` is not one of hubfleet.local.environments ({}); add an environment named `{image}` or fix the name",
                    env_names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
}

/// A guarantee above its limit is an error (as Kubernetes refuses it). `mem_at` / `cpu_at`: where
/// the guarantees are written.
fn check_limits(
    f: &mut crate::load::Findings,
    ctx: &Ctx<'_>,
    (mem_limit, mem_guarantee, mem_at): (Option<u64>, Option<u64>, KeyPath),
    (cpu_limit, cpu_guarantee, cpu_at): (Option<u64>, Option<u64>, KeyPath),
) {
    if let (Some(l), Some(g)) = (mem_limit, mem_guarantee) {
        if g > l {
            f.error(ctx.at_key_path(
                &mem_at,
                format!(
                    "the memory guarantee {} is above the limit {}",
                    format_bytes(g),
                    format_bytes(l)
                ),
            ));
        }
    }
    if let (Some(l), Some(g)) = (cpu_limit, cpu_guarantee) {
        if g > l {
            f.error(ctx.at_key_path(
                &cpu_at,
                format!(
                    "the CPU guarantee {} is above the limit {}",
                    format_cpu(g),
                    format_cpu(l)
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        assert_eq!(parse_bytes("1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512M").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1Gi").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("1991244775").unwrap(), 1991244775);
        assert_eq!(
            parse_bytes("7.234G").unwrap(),
            (7.234 * (1u64 << 30) as f64).round() as u64
        );
        assert!(parse_bytes("1X").is_err());
        assert!(parse_bytes("-1G").is_err());
        assert!(parse_bytes("G").is_err());
        assert_eq!(format_bytes(1 << 30), "1G");
        assert_eq!(format_bytes(3 << 29), "1.5G");
        assert_eq!(format_bytes(100 << 20), "100M");
        assert_eq!(format_bytes(12), "12");
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpu("0.5").unwrap(), 500);
        assert_eq!(parse_cpu("2").unwrap(), 2000);
        assert_eq!(parse_cpu("250m").unwrap(), 250);
        assert!(parse_cpu("lots").is_err());
        assert_eq!(format_cpu(500), "0.5");
        assert_eq!(format_cpu(2000), "2");
        assert_eq!(format_cpu(2328), "2.328");
    }

    #[test]
    fn slugs() {
        assert_eq!(
            slugify("Something without a slug"),
            "something-without-a-slug"
        );
        assert_eq!(
            slugify("Shared Small: 1-4 CPU, 8-32 GB"),
            "shared-small-1-4-cpu-8-32-gb"
        );
    }

    #[test]
    fn overrides_apply_and_template() {
        let mut a = Overrides {
            image: Some("a".into()),
            mem_limit: Some(Some(1)),
            environment: [("X".to_string(), "1".to_string())].into(),
            ..Default::default()
        };
        let b = Overrides {
            mem_limit: Some(None),
            environment: [("Y".to_string(), "{value}".to_string())].into(),
            image: Some("img-{value}".into()),
            ..Default::default()
        };
        a.apply(&b.with_value("v"));
        assert_eq!(a.image.as_deref(), Some("img-v"));
        assert_eq!(a.mem_limit, Some(None));
        assert_eq!(a.environment["X"], "1");
        assert_eq!(a.environment["Y"], "v");
    }
}
