//! The repository: `config/clusters/<cluster>/cluster.yaml`, each listing its hubs and their
//! values files, and the charts under `helm-charts/`.

use std::path::{Path, PathBuf};

use hubfleet_config::{KeyPositions, KeySeg};
use serde_json::Value as Json;

use crate::finding::Finding;
use crate::schema;
use crate::FleetError;

/// Folders under `config/clusters/` that are not clusters.
const NOT_CLUSTERS: &[&str] = &["templates"];

/// A checkout of the infrastructure repository.
#[derive(Debug, Clone)]
pub struct Repo {
    /// The directory that holds `config/clusters/`.
    pub root: PathBuf,
}

impl Repo {
    /// The repository at `dir` or in one of its parents.
    pub fn find(dir: &Path) -> Result<Repo, FleetError> {
        let start = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let mut at = Some(start.as_path());
        while let Some(d) = at {
            if d.join("config/clusters").is_dir() {
                return Ok(Repo {
                    root: d.to_path_buf(),
                });
            }
            at = d.parent();
        }
        Err(FleetError::NoRepo { start })
    }

    /// The names of the clusters, sorted.
    pub fn cluster_names(&self) -> Result<Vec<String>, FleetError> {
        let dir = self.root.join("config/clusters");
        let entries = std::fs::read_dir(&dir).map_err(|source| FleetError::Read {
            path: dir.clone(),
            source,
        })?;
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().join("cluster.yaml").is_file())
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| !NOT_CLUSTERS.contains(&n.as_str()))
            .collect();
        names.sort();
        Ok(names)
    }

    /// A path relative to the root, for messages.
    pub fn rel(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// The chart directory `helm-charts/<chart>`.
    pub fn chart_dir(&self, chart: &str) -> PathBuf {
        self.root.join("helm-charts").join(chart)
    }

    /// The cluster schema (`src/deployer/commands/validate/cluster.schema.yaml`), if the
    /// repository has it.
    pub fn cluster_schema_path(&self) -> PathBuf {
        self.root
            .join("src/deployer/commands/validate/cluster.schema.yaml")
    }

    /// Read `config/clusters/<name>/cluster.yaml`: the cluster, and the problems of the file
    /// (schema, hub names) as findings.
    pub fn cluster(&self, name: &str) -> Result<(Cluster, Vec<Finding>), FleetError> {
        let dir = self.root.join("config/clusters").join(name);
        let file = dir.join("cluster.yaml");
        if !file.is_file() {
            return Err(FleetError::UnknownCluster {
                name: name.to_owned(),
                known: self.cluster_names()?.join(", "),
            });
        }
        let text = std::fs::read_to_string(&file).map_err(|source| FleetError::Read {
            path: file.clone(),
            source,
        })?;
        let label = self.rel(&file);
        let mut findings = Vec::new();
        let doc = match hubfleet_config::values::parse_yaml(&label, &text) {
            Ok(doc) => doc,
            Err(e) => {
                findings
                    .push(Finding::error(&label, yaml_error_pos(&e), e.to_string()).at(name, None));
                serde_yaml_ng::Value::Null
            }
        };
        let json: Json = serde_json::to_value(&doc).unwrap_or(Json::Null);
        let positions = KeyPositions::of(&text);
        if !json.is_null() {
            match schema::cluster_schema(self) {
                Ok(cluster_schema) => {
                    for f in schema::check(&cluster_schema, &json, &label, &positions, "") {
                        findings.push(f.at(name, None));
                    }
                }
                Err(f) => findings.push(f.at(name, None)),
            }
        }
        let cluster = Cluster::from_json(name, dir, label.clone(), &json, positions);
        // Names must be unique: they are namespaces and data directories.
        for (i, hub) in cluster.hubs.iter().enumerate() {
            if let Some(first) = cluster.hubs[..i].iter().find(|h| h.name == hub.name) {
                findings.push(
                    Finding::error(
                        &label,
                        cluster.pos(&[KeySeg::Key("hubs"), KeySeg::Index(i), KeySeg::Key("name")]),
                        format!(
                            "hub `{}` is listed twice (first as hubs[{}]); hub names are namespaces and must be unique in a cluster",
                            hub.name, first.index
                        ),
                    )
                    .key(format!("hubs[{i}].name"))
                    .at(name, Some(&hub.name)),
                );
            }
        }
        if let Some(n) = json.get("name").and_then(Json::as_str) {
            if n != name {
                findings.push(
                    Finding::error(
                        &label,
                        cluster.pos(&[KeySeg::Key("name")]),
                        format!("the cluster's name `{n}` is not its folder's name `{name}`; make them the same"),
                    )
                    .key("name")
                    .at(name, None),
                );
            }
        }
        Ok((cluster, findings))
    }
}

fn yaml_error_pos(e: &hubfleet_config::values::ValuesError) -> (usize, usize) {
    match e {
        hubfleet_config::values::ValuesError::Yaml { line, column, .. } => (*line, *column),
        _ => (1, 1),
    }
}

/// Where a cluster runs its hubs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `provider: local`: this machine.
    Local,
    /// Any other provider: a Kubernetes cluster.
    Kubernetes,
}

/// One `config/clusters/<name>/cluster.yaml`.
#[derive(Debug)]
pub struct Cluster {
    /// The folder's name.
    pub name: String,
    /// The folder.
    pub dir: PathBuf,
    /// `cluster.yaml`, relative to the repository.
    pub file: String,
    /// `provider:`.
    pub provider: String,
    /// The hubs, in file order.
    pub hubs: Vec<HubEntry>,
    /// `support.helm_chart_values_files`.
    pub support_files: Vec<String>,
    /// The positions of the keys of `cluster.yaml`.
    positions: KeyPositions,
    /// The document.
    pub doc: Json,
}

/// One item of `hubs:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubEntry {
    /// Its place in `hubs:`.
    pub index: usize,
    /// `name` (the namespace, the release, the data directory).
    pub name: String,
    /// `display_name`.
    pub display_name: Option<String>,
    /// `domain`.
    pub domain: String,
    /// `helm_chart`: `basehub` or `daskhub`.
    pub helm_chart: String,
    /// `helm_chart_values_files`, as written (relative to the cluster's folder).
    pub values_files: Vec<String>,
}

impl HubEntry {
    /// A staging hub: its name says so (as 2i2c's deployer and jsonnet decide).
    pub fn is_staging(&self) -> bool {
        self.name.contains("staging")
    }

    /// The subtree of its values files that holds the z2jh values.
    pub fn jupyterhub_key(&self) -> &'static str {
        if self.helm_chart == "daskhub" {
            "basehub.jupyterhub"
        } else {
            "jupyterhub"
        }
    }
}

impl Cluster {
    fn from_json(
        name: &str,
        dir: PathBuf,
        file: String,
        doc: &Json,
        positions: KeyPositions,
    ) -> Cluster {
        let s = |v: Option<&Json>| v.and_then(Json::as_str).unwrap_or_default().to_owned();
        let strings = |v: Option<&Json>| -> Vec<String> {
            v.and_then(Json::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let hubs = doc
            .get("hubs")
            .and_then(Json::as_array)
            .map(|hubs| {
                hubs.iter()
                    .enumerate()
                    .map(|(index, h)| HubEntry {
                        index,
                        name: s(h.get("name")),
                        display_name: h
                            .get("display_name")
                            .and_then(Json::as_str)
                            .map(str::to_owned),
                        domain: s(h.get("domain")),
                        helm_chart: s(h.get("helm_chart")),
                        values_files: strings(h.get("helm_chart_values_files")),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Cluster {
            name: name.to_owned(),
            dir,
            file,
            provider: s(doc.get("provider")),
            hubs,
            support_files: strings(
                doc.get("support")
                    .and_then(|s| s.get("helm_chart_values_files")),
            ),
            positions,
            doc: doc.clone(),
        }
    }

    /// Where the target of this cluster is.
    pub fn target(&self) -> Target {
        if self.provider == "local" {
            Target::Local
        } else {
            Target::Kubernetes
        }
    }

    /// The (line, column) of a key path of `cluster.yaml`.
    pub fn pos(&self, segs: &[KeySeg<'_>]) -> (usize, usize) {
        self.positions.find(segs)
    }

    /// The hub called `name`.
    pub fn hub(&self, name: &str) -> Result<&HubEntry, FleetError> {
        self.hubs
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| FleetError::UnknownHub {
                hub: name.to_owned(),
                file: self.file.clone(),
                known: self
                    .hubs
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}
