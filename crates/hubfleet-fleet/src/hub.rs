//! One hub's values: the chart's defaults, the chart's `values.jsonnet`, then the files
//! `cluster.yaml` lists, layered as helm layers them; and every check of them.

use std::path::PathBuf;
use std::sync::LazyLock;

use hubfleet_config::values;
use hubfleet_config::{ConfigError, ConfigSource, ConfigWarning, HubConfig, KeyPositions, KeySeg};
use regex::Regex;
use serde_json::Value as Json;
use serde_yaml_ng::{Mapping, Value};

use crate::finding::{Finding, Kind};
use crate::repo::{Cluster, HubEntry, Repo};
use crate::schema::{self, Locate};
use crate::secrets::Keyring;
use crate::sops;

/// Top-level keys of the cluster's support chart (monitoring, ingress, autoscaling): they do
/// not belong in a hub's values.
pub const SUPPORT_CHART_KEYS: &[&str] = &[
    "grafana",
    "prometheus",
    "ingress-nginx",
    "cluster-autoscaler",
    "cert-manager",
    "prometheusIngressAuthSecret",
    "prometheus-blackbox-exporter",
    "aws-ce-grafana-backend",
    "gcpFilestoreBackups",
    "redirects",
    "calico",
    "nvidiaDevicePlugin",
    "support-pre-metadata",
    "grafana-dashboards",
    "cryptnono",
    "kube-state-metrics",
    "jupyterhub-cost-monitoring",
];

/// basehub keys that only a Kubernetes add-on can honour on the local target: the key whose
/// truth turns it on, and why. (`binderhub-service` and `dask-gateway` are not: a local hub
/// runs them itself, [`LOCAL_SECTIONS`].)
pub const KUBERNETES_ADD_ONS: &[(&str, &str)] = &[
    ("nfs.enabled", "home directories on an NFS PersistentVolume; on the local target homes are directories under the fleet data directory"),
    ("jupyterhub-home-nfs.enabled", "an in-cluster NFS server on a cloud disk with its quota enforcer; on the local target homes are directories under the fleet data directory"),
    ("inClusterNFS.enabled", "an in-cluster NFS server; on the local target homes are directories under the fleet data directory"),
    ("nodePlaceholder.enabled", "placeholder pods that keep a node warm; there are no nodes on the local target"),
    ("userServiceAccount.enabled", "a Kubernetes service account bound to cloud IAM (scratch buckets); local servers run with the account of the user"),
    ("jupyterhub-groups-exporter.enabled", "a Prometheus exporter deployed beside the hub"),
];

/// Sections beside `jupyterhub:` in basehub's values that a local hub runs itself: when
/// enabled, the fleet's local target puts them into the hub's config
/// (docs/flavours.md).
pub const LOCAL_SECTIONS: &[&str] = &["binderhub-service", "dask-gateway"];

/// Python of a local section that only the chart's own layers set is the chart's
/// Kubernetes setup (basehub's `optionHandler` offers cloud instance types through
/// `KubeClusterConfig` and reads `BASEHUB_K8S_DIST`): the local target leaves those entries
/// out. The section and the path of its map of entries.
pub const CHART_ONLY_LEFT_OUT: &[(&str, &[&str])] =
    &[("dask-gateway", &["gateway", "extraConfig"])];

/// Whether a layer is the chart's own (its defaults or its jsonnet), not the cluster's files.
pub fn is_chart_layer(layer: &Layer) -> bool {
    layer.is_chart()
}

/// Where a layer comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The chart's `values.yaml`.
    Chart,
    /// The chart's `values.jsonnet`.
    ChartJsonnet,
    /// A listed YAML (or JSON) file.
    File,
    /// A listed `.jsonnet` file.
    Jsonnet,
    /// A listed sops file that was decrypted.
    Decrypted,
    /// A listed sops file that could not be decrypted here: its keys, with placeholder values.
    Encrypted(String),
}

impl Source {
    /// A word for it.
    pub fn name(&self) -> &'static str {
        match self {
            Source::Chart => "chart defaults",
            Source::ChartJsonnet => "chart jsonnet",
            Source::File => "values",
            Source::Jsonnet => "jsonnet",
            Source::Decrypted => "sops, decrypted",
            Source::Encrypted(_) => "sops, not decrypted: keys only",
        }
    }
}

/// One file of a hub's values.
#[derive(Debug)]
pub struct Layer {
    /// The file, relative to the repository.
    pub label: String,
    /// The file.
    pub path: PathBuf,
    /// What it is.
    pub source: Source,
    /// Keys the document is nested under when layered (`basehub` for basehub's defaults on a
    /// daskhub).
    pub prefix: Vec<String>,
    /// The document (for sops files: decrypted, or with placeholders).
    pub doc: Value,
    /// YAML text of the document whose lines are those of the file (for jsonnet: the rendered
    /// values, whose lines are not the source's).
    pub text: String,
    positions: KeyPositions,
    /// The jsonnet source, to find lines in.
    jsonnet_source: Option<String>,
}

impl Layer {
    fn is_chart(&self) -> bool {
        matches!(self.source, Source::Chart | Source::ChartJsonnet)
    }

    /// The position of exactly `segs` (a path of the layered document), if this file sets it.
    fn exact(&self, segs: &[KeySeg<'_>]) -> Option<(usize, usize)> {
        let rest = strip_prefix(segs, &self.prefix)?;
        match &self.jsonnet_source {
            Some(source) => {
                self.positions.exact(rest)?;
                let mut line = 1;
                for seg in rest {
                    if let KeySeg::Key(k) = seg {
                        line = crate::jsonnet::key_line(source, k, line).unwrap_or(line);
                    }
                }
                Some((line, 1))
            }
            None => self.positions.exact(rest),
        }
    }
}

fn strip_prefix<'a, 'b>(segs: &'a [KeySeg<'b>], prefix: &[String]) -> Option<&'a [KeySeg<'b>]> {
    if segs.len() < prefix.len() {
        return None;
    }
    for (s, p) in segs.iter().zip(prefix) {
        if *s != KeySeg::Key(p) {
            return None;
        }
    }
    Some(&segs[prefix.len()..])
}

/// The layers, for locating a key path: the last file that sets it, else the last that sets
/// its closest enclosing key.
struct Layers<'a>(&'a [Layer]);

impl Locate for Layers<'_> {
    fn locate(&self, segs: &[KeySeg<'_>]) -> (String, (usize, usize)) {
        for len in (1..=segs.len()).rev() {
            for layer in self.0.iter().rev() {
                if let Some(pos) = layer.exact(&segs[..len]) {
                    return (layer.label.clone(), pos);
                }
            }
        }
        let last = self.0.last().map(|l| l.label.clone()).unwrap_or_default();
        (last, (1, 1))
    }
}

/// A hub's values, layered, with what the checks found.
#[derive(Debug)]
pub struct HubValues {
    /// The files, in the order they were layered.
    pub layers: Vec<Layer>,
    /// The layered document (as the chart sees it: for daskhub, basehub's values are under
    /// `basehub:`).
    pub merged: Value,
    /// The hub's configuration as hubfleet reads it (the z2jh values under `jupyterhub:`),
    /// when it has no errors.
    pub config: Option<HubConfig>,
    /// What the checks found.
    pub findings: Vec<Finding>,
    /// z2jh keys hubfleet accepts and ignores (with the reason).
    pub warnings: Vec<ConfigWarning>,
}

static ENC: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#""?ENC\[AES256_GCM,data:[^,\]]*,iv:[^,\]]*,tag:[^,\]]*,type:(\w+)\]"?"#)
        .expect("a valid regex")
});

/// The text of a sops file with each encrypted value replaced by a placeholder of its type, on
/// the same line (so that its keys can be checked without its values).
pub fn placeholders(text: &str) -> String {
    ENC.replace_all(text, |c: &regex::Captures<'_>| match &c[1] {
        "int" => "0".to_owned(),
        "float" => "0.0".to_owned(),
        "bool" => "false".to_owned(),
        _ => "\"encrypted-value\"".to_owned(),
    })
    .into_owned()
}

fn without_sops(mut doc: Value) -> Value {
    if let Value::Mapping(m) = &mut doc {
        m.shift_remove("sops");
    }
    doc
}

fn wrap(doc: Value, prefix: &[String]) -> Value {
    prefix.iter().rev().fold(doc, |inner, key| {
        let mut m = Mapping::new();
        m.insert(Value::String(key.clone()), inner);
        Value::Mapping(m)
    })
}

/// The jsonnet variables 2i2c's deployer gives a hub's jsonnet files.
pub fn jsonnet_vars(cluster: &Cluster, hub: &HubEntry) -> Vec<(&'static str, String)> {
    let account = cluster
        .doc
        .pointer("/aws/account")
        .map(|v| match v {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        })
        .or_else(|| {
            cluster
                .doc
                .pointer("/gcp/project")
                .and_then(Json::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let cluster_name = cluster
        .doc
        .pointer("/aws/clusterName")
        .or_else(|| cluster.doc.pointer("/gcp/cluster"))
        .and_then(Json::as_str)
        .unwrap_or(&cluster.name)
        .to_owned();
    vec![
        ("VARS_2I2C_HUB_NAME", hub.name.clone()),
        ("VARS_2I2C_CLUSTER_NAME", cluster_name),
        ("VARS_2I2C_PROVIDER", cluster.provider.clone()),
        ("VARS_2I2C_HUB_DOMAIN", hub.domain.clone()),
        ("VARS_2I2C_ACCOUNT_ID", account),
    ]
}

/// Read and check one hub's values.
pub fn load(repo: &Repo, cluster: &Cluster, hub: &HubEntry, keys: &Keyring) -> HubValues {
    let mut findings = Vec::new();
    let mut layers = Vec::new();
    let at = |f: Finding| f.at(&cluster.name, Some(&hub.name));
    let chart_dir = repo.chart_dir(&hub.helm_chart);
    let daskhub = hub.helm_chart == "daskhub";
    let chart_prefix: Vec<String> = if daskhub {
        vec!["basehub".into()]
    } else {
        vec![]
    };
    if !chart_dir.is_dir() {
        findings.push(
            at(Finding::error(
                &cluster.file,
                cluster.pos(&[
                    KeySeg::Key("hubs"),
                    KeySeg::Index(hub.index),
                    KeySeg::Key("helm_chart"),
                ]),
                format!(
                    "no chart `{}` in helm-charts/ (charts: basehub, daskhub)",
                    hub.helm_chart
                ),
            ))
            .key(format!("hubs[{}].helm_chart", hub.index)),
        );
    }
    // basehub's defaults (daskhub has none of its own: they are basehub's, under `basehub:`).
    let defaults = repo.chart_dir("basehub").join("values.yaml");
    if defaults.is_file() {
        match yaml_layer(repo, &defaults, Source::Chart, chart_prefix.clone()) {
            Ok(layer) => layers.push(layer),
            Err(f) => findings.push(at(f)),
        }
    }
    let vars = jsonnet_vars(cluster, hub);
    let chart_jsonnet = chart_dir.join("values.jsonnet");
    if chart_jsonnet.is_file() {
        match jsonnet_layer(repo, &chart_jsonnet, &vars, Source::ChartJsonnet) {
            Ok(layer) => layers.push(layer),
            Err(f) => findings.push(at(f)),
        }
    }
    for (n, file) in hub.values_files.iter().enumerate() {
        let path = cluster.dir.join(file);
        let list_pos = cluster.pos(&[
            KeySeg::Key("hubs"),
            KeySeg::Index(hub.index),
            KeySeg::Key("helm_chart_values_files"),
            KeySeg::Index(n),
        ]);
        if !path.is_file() {
            findings.push(at(Finding::error(
                &cluster.file,
                list_pos,
                format!(
                    "values file `{file}` does not exist (looked for {}); create it or take it out of the list",
                    repo.rel(&path)
                ),
            )
            .key(format!("hubs[{}].helm_chart_values_files[{n}]", hub.index))));
            continue;
        }
        let layer = if file.ends_with(".jsonnet") {
            jsonnet_layer(repo, &path, &vars, Source::Jsonnet)
        } else {
            yaml_layer(repo, &path, Source::File, vec![]).and_then(|l| secret_layer(l, keys))
        };
        match layer {
            Ok(layer) => {
                if let Source::Encrypted(why) = &layer.source {
                    findings.push(at(
                        Finding::error(&layer.label, (1, 1), why.clone()).kind(Kind::Encrypted)
                    ));
                }
                if file.contains("secret") && matches!(layer.source, Source::File) {
                    findings.push(at(Finding::error(
                        &layer.label,
                        (1, 1),
                        "the file's name says it is secret but it is not sops-encrypted; encrypt it with `hubfleet fleet secrets encrypt FILE`",
                    )));
                }
                support_keys_in_hub_file(&layer, &mut findings, &at);
                layers.push(layer);
            }
            Err(f) => findings.push(at(f)),
        }
    }
    // A file that could not be read leaves the rest incomplete: checking the merged values
    // would only report consequences.
    let incomplete = findings.iter().any(|f| f.kind == Kind::Error);
    let mut merged = Value::Null;
    for layer in &layers {
        let doc = wrap(layer.doc.clone(), &layer.prefix);
        if merged.is_null() {
            merged = doc;
        } else {
            values::merge_files(&mut merged, doc);
        }
    }
    if merged.is_null() {
        merged = Value::Mapping(Mapping::new());
    }
    // basehub's own keys, against its schema.
    let basehub_doc = if daskhub {
        merged.get("basehub").cloned().unwrap_or(Value::Null)
    } else {
        merged.clone()
    };
    let basehub_json: Json = serde_json::to_value(&basehub_doc).unwrap_or(Json::Null);
    let mut custom_keys: Vec<String> = Vec::new();
    if let Some(result) =
        schema::values_schema(&repo.chart_dir("basehub"), repo).filter(|_| !incomplete)
    {
        match result {
            Ok(s) => {
                custom_keys = s.keys_at("/properties/jupyterhub/properties/custom/properties");
                let located = Prefixed {
                    layers: Layers(&layers),
                    prefix: chart_prefix.clone(),
                };
                for f in schema::check_with(&s, &basehub_json, &located, &chart_prefix.join(".")) {
                    // A support chart key has its own finding.
                    if f.key
                        .as_deref()
                        .is_some_and(|k| SUPPORT_CHART_KEYS.contains(&k))
                    {
                        continue;
                    }
                    findings.push(at(f));
                }
            }
            Err(f) => findings.push(at(f)),
        }
    }
    // The z2jh values, with hubfleet's strict loader.
    let jupyterhub_key = hub.jupyterhub_key();
    let sources: Vec<ConfigSource> = layers
        .iter()
        .map(|l| {
            let under: Vec<&str> = jupyterhub_key.split('.').skip(l.prefix.len()).collect();
            let mut source = ConfigSource::text(&l.label, &l.text).under(&under.join("."));
            source.path = Some(l.path.clone());
            source
        })
        .collect();
    let report = if incomplete {
        hubfleet_config::ConfigReport {
            config: None,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    } else {
        HubConfig::check(sources)
    };
    let chart_labels: Vec<&str> = layers
        .iter()
        .filter(|l| l.is_chart())
        .map(|l| l.label.as_str())
        .collect();
    let encrypted_labels: Vec<&str> = layers
        .iter()
        .filter(|l| matches!(l.source, Source::Encrypted(_)))
        .map(|l| l.label.as_str())
        .collect();
    for error in report.errors {
        let ConfigError::Invalid {
            file,
            line,
            column,
            key,
            message,
        } = error
        else {
            findings.push(at(Finding::error("", (1, 1), error.to_string())));
            continue;
        };
        // The chart's own settings are the chart's matter: `render` shows what is used.
        if chart_labels.contains(&file.as_str()) {
            continue;
        }
        // basehub's keys under `custom:` are checked by its schema, and read natively.
        if let Some(k) = &key {
            if let Some(rest) = k.strip_prefix("custom.") {
                let first = rest.split(['.', '[']).next().unwrap_or_default();
                if custom_keys.iter().any(|c| c == first) {
                    continue;
                }
            }
        }
        // basehub's BinderHub spawner settings: for binderhub-service, on Kubernetes.
        if key.as_deref().is_some_and(|k| {
            k == "hub.config.BinderSpawnerMixin" || k.starts_with("hub.config.BinderSpawnerMixin.")
        }) {
            findings.push(at(Finding::error(&file, (line, column), "the BinderHub spawner's settings (basehub's binderhub-service): used with BinderHub on Kubernetes; a local hub spawns without them")
                .kind(Kind::KubernetesAddOn)
                .key(format!("{jupyterhub_key}.hub.config.BinderSpawnerMixin"))));
            continue;
        }
        // Settings the hub refuses on its own: left out of the deployed config, and listed.
        if let Some(k) = &key {
            if let Some(u) = hubfleet_config::unsupported_keys().find(|u| u.key == k) {
                let instead = u
                    .instead
                    .map(|i| format!("; instead: {i}"))
                    .unwrap_or_default();
                findings.push(at(Finding::error(
                    &file,
                    (line, column),
                    format!(
                        "{}{instead}; the fleet leaves it out of the hub's config",
                        u.reason
                    ),
                )
                .kind(Kind::Unsupported)
                .key(format!("{jupyterhub_key}.{k}"))));
                continue;
            }
        }
        // The values of an encrypted file are placeholders: only its keys can be wrong.
        if encrypted_labels.contains(&file.as_str()) && !message.contains("unknown key") {
            continue;
        }
        let (line, column) = match layers
            .iter()
            .find(|l| l.label == file && l.jsonnet_source.is_some())
        {
            Some(layer) => {
                let segs: Vec<&str> = key.as_deref().unwrap_or_default().split('.').collect();
                let segs: Vec<KeySeg<'_>> = segs.iter().map(|s| KeySeg::Key(s)).collect();
                let mut full: Vec<KeySeg<'_>> =
                    jupyterhub_key.split('.').map(KeySeg::Key).collect();
                full.extend(segs);
                Layers(std::slice::from_ref(layer)).locate(&full).1
            }
            None => (line, column),
        };
        let full_key = key.map(|k| format!("{jupyterhub_key}.{k}"));
        let message = match &full_key {
            Some(k) => message
                .strip_prefix(&format!("{}: ", &k[jupyterhub_key.len() + 1..]))
                .unwrap_or(&message)
                .to_owned(),
            None => message,
        };
        let mut f = Finding::error(file, (line, column), message);
        if let Some(k) = full_key {
            f = f.key(k);
        }
        findings.push(at(f));
    }
    let warnings = report
        .warnings
        .into_iter()
        .filter(|w| !chart_labels.contains(&w.file.as_str()))
        .collect();
    // Keys only a Kubernetes add-on honours on the local target.
    let located = Prefixed {
        layers: Layers(&layers),
        prefix: chart_prefix.clone(),
    };
    for (key, reason) in KUBERNETES_ADD_ONS {
        let on = values::Values::new(basehub_doc.clone())
            .get_set(key)
            .is_some_and(|v| v.as_bool() == Some(true));
        if on {
            let segs: Vec<KeySeg<'_>> = key.split('.').map(KeySeg::Key).collect();
            let (file, pos) = located.locate(&segs);
            findings.push(at(Finding::error(file, pos, *reason)
                .kind(Kind::KubernetesAddOn)
                .key(*key)));
        }
    }
    HubValues {
        layers,
        merged,
        config: report.config,
        findings,
        warnings,
    }
}

/// Locate paths of basehub's document in layers nested under `prefix`.
struct Prefixed<'a> {
    layers: Layers<'a>,
    prefix: Vec<String>,
}

impl Locate for Prefixed<'_> {
    fn locate(&self, segs: &[KeySeg<'_>]) -> (String, (usize, usize)) {
        let mut full: Vec<KeySeg<'_>> = self.prefix.iter().map(|p| KeySeg::Key(p)).collect();
        full.extend_from_slice(segs);
        self.layers.locate(&full)
    }
}

fn support_keys_in_hub_file(
    layer: &Layer,
    findings: &mut Vec<Finding>,
    at: &dyn Fn(Finding) -> Finding,
) {
    let Some(map) = layer.doc.as_mapping() else {
        return;
    };
    for key in map.keys().filter_map(Value::as_str) {
        if SUPPORT_CHART_KEYS.contains(&key) {
            let pos = layer.positions.find(&[KeySeg::Key(key)]);
            findings.push(at(Finding::error(
                &layer.label,
                pos,
                "belongs to the cluster's support chart, not to a hub: move it to a file listed under `support.helm_chart_values_files` in cluster.yaml",
            )
            .key(key)));
        }
    }
}

/// Read a YAML (or JSON) file as a layer.
pub fn yaml_layer(
    repo: &Repo,
    path: &std::path::Path,
    source: Source,
    prefix: Vec<String>,
) -> Result<Layer, Finding> {
    let label = repo.rel(path);
    let text = std::fs::read_to_string(path)
        .map_err(|e| Finding::error(&label, (1, 1), format!("cannot read the file: {e}")))?;
    let doc = values::parse_yaml(&label, &text).map_err(|e| match &e {
        values::ValuesError::Yaml {
            line,
            column,
            message,
            ..
        } => Finding::error(&label, (*line, *column), format!("invalid YAML: {message}")),
        _ => Finding::error(&label, (1, 1), e.to_string()),
    })?;
    if !(doc.is_mapping() || doc.is_null()) {
        return Err(Finding::error(
            &label,
            (1, 1),
            "a values file must be a mapping of keys (`jupyterhub:`, `nfs:`, …)",
        ));
    }
    let positions = KeyPositions::of(&text);
    Ok(Layer {
        label,
        path: path.to_path_buf(),
        source,
        prefix,
        doc,
        text,
        positions,
        jsonnet_source: None,
    })
}

/// A YAML layer that may be a sops file: decrypted with `keys`, or its keys with placeholders.
fn secret_layer(mut layer: Layer, keys: &Keyring) -> Result<Layer, Finding> {
    let Some(recipients) = sops::recipients(&layer.doc) else {
        return Ok(layer);
    };
    match keys.decrypt_doc(&layer.label, &layer.text) {
        Ok(plain) => {
            layer.source = Source::Decrypted;
            layer.doc = without_sops(plain);
            layer.text = placeholders(&layer.text);
        }
        Err(why) => {
            layer.text = placeholders(&layer.text);
            let doc = values::parse_yaml(&layer.label, &layer.text).unwrap_or(Value::Null);
            layer.doc = without_sops(doc);
            layer.source = Source::Encrypted(format!(
                "encrypted with sops to {}; not decrypted here ({why}): its keys were checked, its values were not",
                recipients.describe()
            ));
        }
    }
    Ok(layer)
}

/// Render a jsonnet file as a layer.
fn jsonnet_layer(
    repo: &Repo,
    path: &std::path::Path,
    vars: &[(&str, String)],
    source: Source,
) -> Result<Layer, Finding> {
    let label = repo.rel(path);
    let json = crate::jsonnet::render(path, &label, vars)?;
    let doc: Value = serde_yaml_ng::to_value(&json).unwrap_or(Value::Null);
    let text = serde_yaml_ng::to_string(&doc).unwrap_or_default();
    let positions = KeyPositions::of(&text);
    let jsonnet_source = std::fs::read_to_string(path).ok().map(|s| {
        // A link that lost its link: find lines in the file it points to.
        let t = s.trim();
        if !t.contains('\n') && t.ends_with("sonnet") {
            path.parent()
                .and_then(|d| std::fs::read_to_string(d.join(t)).ok())
                .unwrap_or(s)
        } else {
            s
        }
    });
    Ok(Layer {
        label,
        path: path.to_path_buf(),
        source,
        prefix: vec![],
        doc,
        text,
        positions,
        jsonnet_source,
    })
}
