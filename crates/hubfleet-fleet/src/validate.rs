//! `fleet validate`: every cluster, every hub.

use std::collections::BTreeSet;

use hubfleet_config::ConfigWarning;

use crate::finding::{Finding, Kind};
use crate::hub;
use crate::repo::Repo;
use crate::secrets::Keyring;
use crate::FleetError;

/// What `validate` found.
#[derive(Debug, Default)]
pub struct Report {
    /// Clusters read.
    pub clusters: usize,
    /// Hubs checked.
    pub hubs: usize,
    /// Findings, in cluster then file order, each once.
    pub findings: Vec<Finding>,
    /// z2jh keys that hubfleet accepts and ignores, by hub.
    pub ignored: Vec<(String, ConfigWarning)>,
}

impl Report {
    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.kind == Kind::Error)
    }
}

/// Validate the clusters named in `only` (all when empty); `progress` is told each hub as it
/// is checked (`cluster/hub`), after it was told the total.
pub fn validate(
    repo: &Repo,
    only: &[String],
    keys: &Keyring,
    total: &dyn Fn(usize),
    progress: &dyn Fn(&str),
) -> Result<Report, FleetError> {
    let names = if only.is_empty() {
        repo.cluster_names()?
    } else {
        only.to_vec()
    };
    let mut report = Report::default();
    let mut clusters = Vec::new();
    for name in &names {
        let (cluster, findings) = repo.cluster(name)?;
        report.findings.extend(findings);
        clusters.push(cluster);
    }
    total(clusters.iter().map(|c| c.hubs.len()).sum());
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for cluster in &clusters {
        report.clusters += 1;
        for hub in &cluster.hubs {
            progress(&format!("{}/{}", cluster.name, hub.name));
            let values = hub::load(repo, cluster, hub, keys);
            report.hubs += 1;
            for f in values.findings {
                // A file shared by several hubs is reported once for what is about the file.
                let id = format!(
                    "{}|{}|{}|{:?}|{}",
                    f.kind as u8, f.file, f.line, f.key, f.message
                );
                if !seen.insert(id) {
                    continue;
                }
                report.findings.push(f);
            }
            for w in values.warnings {
                report
                    .ignored
                    .push((format!("{}/{}", cluster.name, hub.name), w));
            }
        }
        support_files(repo, cluster, keys, &mut report, &mut seen);
        other_secrets(repo, cluster, keys, &mut report, &mut seen);
    }
    Ok(report)
}

/// The support chart's files: they exist, and their keys are the support chart's.
fn support_files(
    repo: &Repo,
    cluster: &crate::repo::Cluster,
    keys: &Keyring,
    report: &mut Report,
    seen: &mut BTreeSet<String>,
) {
    for (n, file) in cluster.support_files.iter().enumerate() {
        let path = cluster.dir.join(file);
        if !path.is_file() {
            report.findings.push(
                Finding::error(
                    &cluster.file,
                    cluster.pos(&[
                        hubfleet_config::KeySeg::Key("support"),
                        hubfleet_config::KeySeg::Key("helm_chart_values_files"),
                        hubfleet_config::KeySeg::Index(n),
                    ]),
                    format!("support values file `{file}` does not exist; create it or take it out of the list"),
                )
                .key(format!("support.helm_chart_values_files[{n}]"))
                .at(&cluster.name, None),
            );
            continue;
        }
        match hub::yaml_layer(repo, &path, hub::Source::File, vec![]) {
            Ok(layer) => {
                let encrypted = crate::sops::recipients(&layer.doc);
                if let Some(r) = &encrypted {
                    if keys.decrypt_doc(&layer.label, &layer.text).is_err()
                        && seen.insert(layer.label.clone())
                    {
                        report.findings.push(
                            Finding::error(
                                &layer.label,
                                (1, 1),
                                format!(
                                    "encrypted with sops to {}; not decrypted here",
                                    r.describe()
                                ),
                            )
                            .kind(Kind::Encrypted)
                            .at(&cluster.name, None),
                        );
                    }
                }
                let top: Vec<String> = layer
                    .doc
                    .as_mapping()
                    .map(|m| {
                        m.keys()
                            .filter_map(|k| k.as_str())
                            .filter(|k| *k != "sops")
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                report.findings.push(
                    Finding::error(
                        &layer.label,
                        (1, 1),
                        format!(
                            "values of the cluster's support chart (cluster monitoring and ingress; not deployed by hubfleet): {}",
                            if top.is_empty() { "no keys".to_owned() } else { top.join(", ") }
                        ),
                    )
                    .kind(Kind::SupportChart)
                    .at(&cluster.name, None),
                );
            }
            Err(f) => report.findings.push(f.at(&cluster.name, None)),
        }
    }
}

/// Encrypted files of the cluster that no hub lists (deployer credentials, tokens): reported
/// once each when they cannot be decrypted here.
fn other_secrets(
    repo: &Repo,
    cluster: &crate::repo::Cluster,
    keys: &Keyring,
    report: &mut Report,
    seen: &mut BTreeSet<String>,
) {
    let Ok(entries) = std::fs::read_dir(&cluster.dir) else {
        return;
    };
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("enc-"))
        })
        .collect();
    paths.sort();
    for path in paths {
        let label = repo.rel(&path);
        if seen.contains(&label)
            || report
                .findings
                .iter()
                .any(|f| f.file == label && f.kind == Kind::Encrypted)
        {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(doc) = hubfleet_config::values::parse_yaml(&label, &text) else {
            continue;
        };
        match crate::sops::recipients(&doc) {
            Some(r) => {
                if let Err(why) = keys.decrypt_doc(&label, &text) {
                    seen.insert(label.clone());
                    report.findings.push(
                        Finding::error(&label, (1, 1), format!("encrypted with sops to {}; not decrypted here ({why})", r.describe()))
                            .kind(Kind::Encrypted)
                            .at(&cluster.name, None),
                    );
                }
            }
            None => report.findings.push(
                Finding::error(&label, (1, 1), "named `enc-*` but not sops-encrypted: encrypt it (`hubfleet fleet secrets encrypt FILE`) before committing it")
                    .at(&cluster.name, None),
            ),
        }
    }
}
