//! The Kubernetes objects that run one hub (`hubfleet render k8s`), from the merged z2jh values,
//! shaped and named as z2jh's chart shapes and names them, so that the user pods of
//! [`pod_for`](crate::pod_for) fit the NetworkPolicies and Services here.
//!
//! What differs from the chart: the hub's pod runs `hubfleet serve` (with the proxy inside it,
//! unless `hubfleet.kubernetes.separate_proxy`), listens on [`HUB_PORT`], and reads its config
//! from [`CONFIG_DIR`]: `values.yaml` (the values, in the hub Secret, as z2jh keeps them: they
//! hold OAuth client secrets) under `hubfleet.yaml` (what this module decides: spawner, listen
//! address, data directory; in the ConfigMap). Secrets the values do not give are derived from a
//! seed ([`ManifestOptions::secret_seed`]), so the output never depends on time or chance.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value as Json};
use serde_yaml_ng::Value;

use hubfleet_config::values::Values;

use crate::names::ChartNames;
use crate::pod::to_json as yaml_to_json;
use crate::{HelmRelease, KubeError};

mod expose;
mod netpol;
mod secrets;
mod typed;
mod workloads;
pub mod yaml;

pub use secrets::SecretSeed;

/// Where the default hub image lives; the tag is hubfleet's version ([`default_image`]).
pub const DEFAULT_IMAGE_REPOSITORY: &str = "ghcr.io/hubfleet/hubfleet";
/// The port `hubfleet serve` listens on in the hub's pod (hub and built-in proxy).
pub const HUB_PORT: i32 = 8000;
/// The hub Service's port, as z2jh's (users' servers reach the hub's API there).
pub const HUB_SERVICE_PORT: i32 = 8081;
/// The separate proxy's REST API port, as z2jh's.
pub const PROXY_API_PORT: i32 = 8001;
/// The port of users' servers, as KubeSpawner's default.
pub const SINGLEUSER_PORT: i32 = 8888;
/// Where the hub's config files are in its pod.
pub const CONFIG_DIR: &str = "/etc/hubfleet";
/// Where the hub's volume is mounted in its pod (the SQLite PVC, or an emptyDir).
pub const VOLUME_DIR: &str = "/srv/hubfleet";
/// Where the hub keeps its state: a directory the hub makes on its volume (the volume's own
/// root belongs to root, and the hub must own its data directory).
pub const DATA_DIR: &str = "/srv/hubfleet/data";
/// The values file (in the hub Secret).
pub const VALUES_FILE: &str = "values.yaml";
/// The settings `render k8s` decides (in the hub ConfigMap), layered over [`VALUES_FILE`].
pub const OVERLAY_FILE: &str = "hubfleet.yaml";

/// The image the hub runs unless `hub.image` names a hubfleet image.
pub fn default_image() -> String {
    format!("{DEFAULT_IMAGE_REPOSITORY}:{}", env!("CARGO_PKG_VERSION"))
}

/// What the values do not say.
#[derive(Debug, Clone)]
pub struct ManifestOptions {
    /// The chart and release (`--release-name`, `--namespace`).
    pub release: HelmRelease,
    /// Derives the secrets the values do not give; `None`: they must all be given.
    pub secret_seed: Option<SecretSeed>,
    /// The hub's image when `hub.image` is not a hubfleet image ([`default_image`]).
    pub default_image: String,
}

/// One rendered object.
#[derive(Debug, Clone, PartialEq)]
pub enum HubObject {
    NetworkPolicy(NetworkPolicy),
    ServiceAccount(ServiceAccount),
    Secret(Secret),
    ConfigMap(ConfigMap),
    PersistentVolumeClaim(PersistentVolumeClaim),
    Role(Role),
    RoleBinding(RoleBinding),
    Service(Service),
    /// Boxed: a Deployment is several times larger than the other objects.
    Deployment(Box<Deployment>),
    Ingress(Ingress),
}

impl HubObject {
    /// Helm's install order of kinds: what others refer to comes first.
    fn rank(&self) -> u8 {
        match self {
            HubObject::NetworkPolicy(_) => 0,
            HubObject::ServiceAccount(_) => 1,
            HubObject::Secret(_) => 2,
            HubObject::ConfigMap(_) => 3,
            HubObject::PersistentVolumeClaim(_) => 4,
            HubObject::Role(_) => 5,
            HubObject::RoleBinding(_) => 6,
            HubObject::Service(_) => 7,
            HubObject::Deployment(_) => 8,
            HubObject::Ingress(_) => 9,
        }
    }

    /// `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            HubObject::NetworkPolicy(_) => "NetworkPolicy",
            HubObject::ServiceAccount(_) => "ServiceAccount",
            HubObject::Secret(_) => "Secret",
            HubObject::ConfigMap(_) => "ConfigMap",
            HubObject::PersistentVolumeClaim(_) => "PersistentVolumeClaim",
            HubObject::Role(_) => "Role",
            HubObject::RoleBinding(_) => "RoleBinding",
            HubObject::Service(_) => "Service",
            HubObject::Deployment(_) => "Deployment",
            HubObject::Ingress(_) => "Ingress",
        }
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        let meta = match self {
            HubObject::NetworkPolicy(o) => &o.metadata,
            HubObject::ServiceAccount(o) => &o.metadata,
            HubObject::Secret(o) => &o.metadata,
            HubObject::ConfigMap(o) => &o.metadata,
            HubObject::PersistentVolumeClaim(o) => &o.metadata,
            HubObject::Role(o) => &o.metadata,
            HubObject::RoleBinding(o) => &o.metadata,
            HubObject::Service(o) => &o.metadata,
            HubObject::Deployment(o) => &o.metadata,
            HubObject::Ingress(o) => &o.metadata,
        };
        meta.name.as_deref().unwrap_or("")
    }

    /// The object as the API takes it (`apiVersion` and `kind` first).
    pub fn to_json(&self) -> Json {
        match self {
            HubObject::NetworkPolicy(o) => typed::to_json(o),
            HubObject::ServiceAccount(o) => typed::to_json(o),
            HubObject::Secret(o) => typed::to_json(o),
            HubObject::ConfigMap(o) => typed::to_json(o),
            HubObject::PersistentVolumeClaim(o) => typed::to_json(o),
            HubObject::Role(o) => typed::to_json(o),
            HubObject::RoleBinding(o) => typed::to_json(o),
            HubObject::Service(o) => typed::to_json(o),
            HubObject::Deployment(o) => typed::to_json(o),
            HubObject::Ingress(o) => typed::to_json(o),
        }
    }
}

/// What [`hub_manifests`] built.
#[derive(Debug, Clone)]
pub struct HubManifests {
    /// In Helm's install order, then by name.
    pub objects: Vec<HubObject>,
    /// The values file the hub reads (`values.yaml` in the Secret).
    pub hub_values: Value,
    /// The settings layered over it (`hubfleet.yaml` in the ConfigMap).
    pub hub_overlay: Value,
    /// Things worth telling the operator: settings not rendered, secrets derived.
    pub notes: Vec<String>,
}

impl HubManifests {
    /// Every object as YAML, `---`-separated, in order.
    pub fn to_yaml(&self) -> Result<String, KubeError> {
        let mut out = String::new();
        for object in &self.objects {
            out.push_str("---\n");
            out.push_str(&yaml::to_yaml(&object.to_json()));
        }
        Ok(out)
    }

    /// The object of `kind` named `name`.
    pub fn get(&self, kind: &str, name: &str) -> Option<&HubObject> {
        self.objects
            .iter()
            .find(|o| o.kind() == kind && o.name() == name)
    }
}

/// The objects that run one hub from `values` (merged as for `render pod`, without `Chart` and
/// `Release`: they come from `options`).
pub fn hub_manifests(
    values: &Values,
    options: &ManifestOptions,
) -> Result<HubManifests, KubeError> {
    let mut cx = Cx::new(values, &options.release)?;
    for (key, why) in [
        ("hub.extraFiles", "files z2jh mounts into its hub's pod"),
        ("hub.existingSecret", "the hub Secret made here holds the hub's secrets; give them in the values (hub.cookieSecret, hub.config.CryptKeeper.keys, …)"),
        ("hub.pdb.enabled", "PodDisruptionBudgets are not rendered"),
        ("proxy.chp.pdb.enabled", "PodDisruptionBudgets are not rendered"),
        ("httpRoute.enabled", "Gateway API routes are not rendered; use `ingress`"),
        ("prePuller.hook.enabled", "image pullers are not rendered"),
        ("prePuller.continuous.enabled", "image pullers are not rendered"),
    ] {
        cx.not_rendered(key, why);
    }
    let image = cx.hub_image(&options.default_image)?;
    let secrets = secrets::Secrets::collect(&cx, options.secret_seed.as_ref())?;
    let (hub_values, hub_overlay) = secrets::hub_config(&mut cx, &secrets)?;
    let secret = secrets::hub_secret(&cx, &secrets, &hub_values)?;
    let config_map = secrets::hub_config_map(&cx, &hub_overlay)?;
    let checksums = workloads::Checksums::of(&config_map, &secret);

    let mut objects = vec![HubObject::Secret(secret), HubObject::ConfigMap(config_map)];
    if let Some(pull) = secrets::image_pull_secret(&cx)? {
        objects.push(HubObject::Secret(pull));
    }
    if let Some(files) = secrets::singleuser_secret(&cx)? {
        objects.push(HubObject::Secret(files));
    }
    objects.extend(workloads::service_account_and_rbac(&cx)?);
    if let Some(pvc) = workloads::hub_pvc(&cx)? {
        objects.push(HubObject::PersistentVolumeClaim(pvc));
    }
    objects.push(HubObject::Deployment(Box::new(workloads::hub_deployment(
        &mut cx, &image, &checksums, &secrets,
    )?)));
    if cx.separate_proxy {
        objects.push(HubObject::Deployment(Box::new(
            workloads::proxy_deployment(&cx, &image, &secrets)?,
        )));
    }
    objects.extend(expose::services(&cx)?.into_iter().map(HubObject::Service));
    if let Some(ingress) = expose::ingress(&cx)? {
        objects.push(HubObject::Ingress(ingress));
    }
    objects.extend(
        netpol::network_policies(&cx)?
            .into_iter()
            .map(HubObject::NetworkPolicy),
    );
    objects.sort_by(|a, b| (a.rank(), a.name()).cmp(&(b.rank(), b.name())));

    let mut notes = cx.notes;
    notes.extend(secrets.notes);
    notes.sort();
    notes.dedup();
    Ok(HubManifests {
        objects,
        hub_values,
        hub_overlay,
        notes,
    })
}

/// The values and what follows from them for every object.
pub(crate) struct Cx<'a> {
    pub(crate) values: &'a Values,
    pub(crate) release: &'a HelmRelease,
    pub(crate) names: ChartNames,
    /// z2jh's `app` label (`nameOverride`, else the chart's name).
    app: String,
    /// z2jh's `chart` label.
    chart: String,
    pub(crate) separate_proxy: bool,
    pub(crate) notes: Vec<String>,
}

/// The label values of this module's objects where z2jh's say `Helm`: they are not Helm's.
const MANAGED_BY: &str = "hubfleet";

impl<'a> Cx<'a> {
    fn new(values: &'a Values, release: &'a HelmRelease) -> Result<Cx<'a>, KubeError> {
        // Both end up in names and label values: DNS labels, as Kubernetes requires there.
        for (flag, name) in [
            ("--namespace", &release.namespace),
            ("--release-name", &release.release_name),
        ] {
            if !is_dns_label(name) {
                return Err(KubeError::invalid(
                    flag,
                    format!("`{name}` is not a valid name: at most 63 lower-case letters, digits and `-`, starting and ending with a letter or digit"),
                ));
            }
        }
        let names = ChartNames::new(values, &release.chart_name, &release.release_name);
        let app = text(values, "nameOverride")?.unwrap_or_else(|| release.chart_name.clone());
        let app: String = app.chars().take(63).collect();
        let chart = format!(
            "{}-{}",
            release.chart_name,
            release.chart_version.replace('+', "_")
        );
        let separate_proxy = flag(values, "hubfleet.kubernetes.separate_proxy")?;
        Ok(Cx {
            values,
            release,
            names,
            app: app.trim_end_matches('-').to_owned(),
            chart,
            separate_proxy,
            notes: Vec::new(),
        })
    }

    /// `jupyterhub.labels`: the legacy and the modern labels of an object.
    pub(crate) fn labels(&self, component: &str) -> Json {
        json!({
            "component": component,
            "app.kubernetes.io/component": component,
            "app": self.app,
            "release": self.release.release_name,
            "chart": self.chart,
            "heritage": MANAGED_BY,
            "app.kubernetes.io/name": self.app,
            "app.kubernetes.io/instance": self.release.release_name,
            "helm.sh/chart": self.chart,
            "app.kubernetes.io/managed-by": MANAGED_BY,
        })
    }

    /// `jupyterhub.matchLabels`: what selectors match (user pods carry these too).
    pub(crate) fn match_labels(&self, component: &str) -> Json {
        json!({
            "component": component,
            "app": self.app,
            "release": self.release.release_name,
        })
    }

    /// `jupyterhub.matchLabelsLegacyAndModern`: a pod template's labels.
    pub(crate) fn pod_labels(&self, component: &str) -> Json {
        json!({
            "component": component,
            "app": self.app,
            "release": self.release.release_name,
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/name": self.app,
            "app.kubernetes.io/instance": self.release.release_name,
        })
    }

    /// `metadata` of an object.
    pub(crate) fn metadata(&self, name: &str, component: &str) -> Json {
        json!({
            "name": name,
            "namespace": self.release.namespace,
            "labels": self.labels(component),
        })
    }

    /// The component of the pod that runs the proxy.
    pub(crate) fn proxy_component(&self) -> &'static str {
        if self.separate_proxy {
            "proxy"
        } else {
            "hub"
        }
    }

    /// `hub.image` when it is a hubfleet image, else `default`.
    fn hub_image(&mut self, default: &str) -> Result<String, KubeError> {
        let name = text(self.values, "hub.image.name")?;
        let tag = text(self.values, "hub.image.tag")?;
        match name {
            Some(name) if is_hubfleet_image(&name) => Ok(match tag {
                Some(tag) => format!("{name}:{tag}"),
                None => name,
            }),
            Some(name) => {
                self.notes.push(format!(
                    "hub.image `{name}` is not a hubfleet image: the hub runs `{default}` (set hub.image.name to a hubfleet image to choose another)"
                ));
                Ok(default.to_owned())
            }
            None => Ok(default.to_owned()),
        }
    }

    /// Tell the operator that `key` is set but not rendered, and why.
    pub(crate) fn not_rendered(&mut self, key: &str, why: &str) {
        let set = match self.values.get_set(key) {
            None | Some(Value::Bool(false)) => false,
            Some(Value::Mapping(m)) => !m.is_empty(),
            Some(Value::Sequence(s)) => !s.is_empty(),
            Some(Value::String(s)) => !s.is_empty(),
            Some(_) => true,
        };
        if set {
            self.notes.push(format!("{key}: not rendered: {why}"));
        }
    }
}

/// RFC 1123 label, as Kubernetes checks namespaces and label values.
fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// An image whose repository's last path segment is hubfleet's (`ghcr.io/hubfleet/hubfleet`,
/// `registry.example.org/team/hubfleet-custom`).
fn is_hubfleet_image(name: &str) -> bool {
    let repository = name.split('@').next().unwrap_or(name);
    let last = repository.rsplit('/').next().unwrap_or(repository);
    let last = last.split(':').next().unwrap_or(last);
    last.starts_with("hubfleet")
}

/// The value at `key` as JSON (`null` when missing).
pub(crate) fn json_at(values: &Values, key: &str) -> Json {
    values.get(key).map(yaml_to_json).unwrap_or(Json::Null)
}

/// A boolean at `key` (missing or `null`: false).
pub(crate) fn flag(values: &Values, key: &str) -> Result<bool, KubeError> {
    match values.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(KubeError::invalid(
            key,
            format!("expected true or false, not {}", short(other)),
        )),
    }
}

/// A scalar at `key` as text, as Helm prints it; missing, `null` and `""`: `None`.
pub(crate) fn text(values: &Values, key: &str) -> Result<Option<String>, KubeError> {
    match values.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(other) => Err(KubeError::invalid(
            key,
            format!("expected a string, not {}", short(other)),
        )),
    }
}

/// A mapping at `key` as JSON (missing or `null`: empty).
pub(crate) fn mapping(values: &Values, key: &str) -> Result<Map<String, Json>, KubeError> {
    match json_at(values, key) {
        Json::Null => Ok(Map::new()),
        Json::Object(m) => Ok(m),
        other => Err(KubeError::invalid(
            key,
            format!("expected a mapping, not {}", short_json(&other)),
        )),
    }
}

/// A list at `key` as JSON (missing or `null`: empty).
pub(crate) fn list(values: &Values, key: &str) -> Result<Vec<Json>, KubeError> {
    match json_at(values, key) {
        Json::Null => Ok(Vec::new()),
        Json::Array(items) => Ok(items),
        other => Err(KubeError::invalid(
            key,
            format!("expected a list, not {}", short_json(&other)),
        )),
    }
}

/// The Kubernetes type `T` given at `key` (missing or `null`: `None`), checked strictly, as JSON
/// to put into an object.
pub(crate) fn fragment<T: DeserializeOwned + Serialize>(
    values: &Values,
    key: &str,
) -> Result<Option<Json>, KubeError> {
    let json = json_at(values, key);
    if json.is_null() {
        return Ok(None);
    }
    let value: T = typed::typed(key, &json)?;
    Ok(Some(typed::to_json(&value)))
}

/// A whole object built here, checked as `T`.
pub(crate) fn object<T: DeserializeOwned + Serialize>(
    what: &str,
    json: Json,
) -> Result<T, KubeError> {
    typed::typed(what, &json)
}

/// `resources` as Kubernetes takes them: numbers become quantities (`cpu: 0.5` → `"0.5"`).
pub(crate) fn resources(values: &Values, key: &str) -> Result<Option<Json>, KubeError> {
    let mut json = json_at(values, key);
    if let Json::Object(sections) = &mut json {
        for section in sections.values_mut() {
            if let Json::Object(quantities) = section {
                for quantity in quantities.values_mut() {
                    if let Json::Number(n) = quantity {
                        *quantity = Json::String(n.to_string());
                    }
                }
            }
        }
        if sections.is_empty() {
            return Ok(None);
        }
    }
    if json.is_null() {
        return Ok(None);
    }
    let checked: k8s_openapi::api::core::v1::ResourceRequirements = typed::typed(key, &json)?;
    Ok(Some(typed::to_json(&checked)))
}

/// A short description of a value for errors (values may hold secrets: never the value).
fn short(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn short_json(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a mapping",
    }
}

/// Labels as a map of strings, for tests and selectors.
pub fn string_map(json: &Json) -> BTreeMap<String, String> {
    json.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
