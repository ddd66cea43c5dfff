//! Our defaults agree with z2jh's own values.yaml, and the shipped example file loads.
//!
//! The z2jh chart is found through `hubfleet_config::fixtures` (`$HUBFLEET_SHARED_DIR`, else
//! `<workspace>/../shared`); a missing fixtures directory fails the test with instructions.

use std::path::Path;

use hubfleet_config::{fixtures, HubConfig};
use serde_yaml_ng::Value;

fn z2jh_values() -> Value {
    let path = fixtures::fixture("zero-to-jupyterhub/jupyterhub/values.yaml")
        .unwrap_or_else(|msg| panic!("{msg}"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn get<'a>(v: &'a Value, dotted: &str) -> &'a Value {
    dotted.split('.').fold(v, |node, key| {
        node.get(key)
            .unwrap_or_else(|| panic!("z2jh values.yaml has no `{dotted}`"))
    })
}

#[test]
fn singleuser_defaults_match_z2jh() {
    let values = z2jh_values();
    let ours = HubConfig::default();

    let start_timeout = get(&values, "singleuser.startTimeout")
        .as_u64()
        .expect("singleuser.startTimeout is an integer in z2jh");
    assert_eq!(ours.singleuser.start_timeout.as_secs(), start_timeout);

    let default_url = get(&values, "singleuser.defaultUrl");
    assert_eq!(
        ours.singleuser.default_url.as_deref(),
        default_url.as_str(),
        "z2jh singleuser.defaultUrl is {default_url:?}"
    );

    // z2jh's `cmd` default is the command we run when `cmd` is unset.
    let cmd = get(&values, "singleuser.cmd").as_str().expect("a string");
    assert_eq!(ours.singleuser.command(), [cmd]);

    // And z2jh's hub.db.type default is ours.
    let db_type = get(&values, "hub.db.type").as_str().expect("a string");
    assert_eq!(ours.hub.db.kind.as_str(), db_type);
}

#[test]
fn ignored_keys_exist_in_z2jh() {
    let values = z2jh_values();
    for entry in hubfleet_config::IGNORED_KEYS {
        get(&values, entry.key);
    }
}

#[test]
fn documented_example_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/hub.yaml");
    let config = HubConfig::from_path(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert_eq!(
        config.data_dir(),
        path.parent()
            .unwrap()
            .canonicalize()
            .unwrap()
            .join("hubfleet-data")
    );
}

#[test]
fn docs_list_every_ignored_key() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for entry in hubfleet_config::IGNORED_KEYS {
        assert!(
            doc.contains(&format!("| `{}` |", entry.key)),
            "docs/configuration.md does not list ignored key `{}`",
            entry.key
        );
    }
}
