//! The `profileList` of every 2i2c values file in the shared fixtures parses: each gives a
//! working profile list, or an error that names the unsupported key. Prints the counts.

use hubfleet_config::{fixtures, HubConfig};
use serde_yaml_ng::Value;

/// Where basehub and daskhub keep z2jh's `singleuser`.
const PREFIXES: &[&[&str]] = &[
    &["jupyterhub", "singleuser"],
    &["basehub", "jupyterhub", "singleuser"],
    &["singleuser"],
];

fn find<'a>(doc: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |node, key| node.get(*key))
}

#[test]
fn every_2i2c_profile_list_parses_or_names_the_unsupported_key() {
    let clusters = fixtures::fixture("2i2c-infrastructure/config/clusters")
        .unwrap_or_else(|msg| panic!("{msg}"));
    let mut files: Vec<_> = std::fs::read_dir(&clusters)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .flat_map(|cluster| std::fs::read_dir(cluster.path()).unwrap().flatten())
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".values.yaml"))
        .collect();
    files.sort();
    assert!(files.len() > 20, "only {} values files found", files.len());
    let (mut with_list, mut working, mut profiles, mut refused) = (0, 0, 0, Vec::new());
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let doc: Value =
            serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let Some(list) = PREFIXES
            .iter()
            .find_map(|p| find(&doc, p).and_then(|s| s.get("profileList")))
        else {
            continue;
        };
        with_list += 1;
        let mut root = serde_yaml_ng::Mapping::new();
        let mut singleuser = serde_yaml_ng::Mapping::new();
        singleuser.insert("profileList".into(), list.clone());
        root.insert("singleuser".into(), Value::Mapping(singleuser));
        let yaml = serde_yaml_ng::to_string(&Value::Mapping(root)).unwrap();
        let name = path.strip_prefix(&clusters).unwrap().display().to_string();
        match HubConfig::from_yaml_str(&yaml, &name) {
            Ok(config) => {
                working += 1;
                profiles += config.singleuser.profile_list.len();
                for p in &config.singleuser.profile_list {
                    assert!(!p.slug.is_empty(), "{name}: a profile without a slug");
                }
                println!(
                    "{name}: {} profiles ({} warnings)",
                    config.singleuser.profile_list.len(),
                    config.warnings.len()
                );
            }
            Err(e) => {
                let message = e.to_string();
                assert!(
                    e.key()
                        .is_some_and(|k| k.starts_with("singleuser.profileList")),
                    "{name}: the error does not name a key: {message}"
                );
                println!("{name}: refused: {message}");
                refused.push(message);
            }
        }
    }
    println!(
        "{} values files, {with_list} with a profileList: {working} working ({profiles} profiles), {} refused",
        files.len(),
        refused.len()
    );
    assert_eq!(working + refused.len(), with_list);
    assert!(
        with_list >= 10,
        "expected the 2i2c files with profile lists"
    );
}
