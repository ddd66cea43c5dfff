//! Every hub in 2i2c's infrastructure repository (../shared/fixtures/2i2c-infrastructure):
//! its authenticator settings, merged over the hub's values files as the deployer merges
//! them (maps merge, lists replace, later files win), either load as a working config or
//! fail with an error naming the key that is not supported.

use std::path::Path;

use hubfleet_config::{fixtures, AuthenticatorKind, HubConfig};
use serde_yaml_ng::{Mapping, Value};

fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Mapping(a), Value::Mapping(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (slot, other) => *slot = other.clone(),
    }
}

/// The `hub.config` of a values file (basehub nests z2jh under `jupyterhub:`, daskhub and
/// binderhub one level deeper).
fn hub_config(doc: &Value) -> Option<&Value> {
    for path in [
        &["jupyterhub"][..],
        &["basehub", "jupyterhub"],
        &["binderhub", "jupyterhub"],
        &[],
    ] {
        let mut v = doc;
        for key in path {
            match v.get(*key) {
                Some(x) => v = x,
                None => break,
            }
        }
        if let Some(config) = v.get("hub").and_then(|h| h.get("config")) {
            return Some(config);
        }
    }
    None
}

/// Only the authenticator part: `JupyterHub.authenticator_class` and every
/// `*Authenticator*` class.
fn auth_part(config: &Value) -> Value {
    let mut out = Mapping::new();
    if let Some(map) = config.as_mapping() {
        for (k, v) in map {
            let Some(name) = k.as_str() else { continue };
            if name.contains("Authenticator") {
                out.insert(k.clone(), v.clone());
            } else if name == "JupyterHub" {
                if let Some(class) = v.get("authenticator_class") {
                    let mut jh = Mapping::new();
                    jh.insert("authenticator_class".into(), class.clone());
                    out.insert(k.clone(), Value::Mapping(jh));
                }
            }
        }
    }
    Value::Mapping(out)
}

struct Outcome {
    hub: String,
    result: Result<AuthenticatorKind, (Option<String>, String)>,
}

fn check_cluster(dir: &Path, outcomes: &mut Vec<Outcome>) {
    let cluster: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join("cluster.yaml")).unwrap())
            .unwrap();
    let Some(hubs) = cluster.get("hubs").and_then(Value::as_sequence) else {
        return;
    };
    for hub in hubs {
        let name = hub["name"].as_str().unwrap_or("?");
        let mut merged = Value::Mapping(Mapping::new());
        let mut any = false;
        for file in hub["helm_chart_values_files"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            let path = dir.join(file.as_str().unwrap());
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let doc: Value = serde_yaml_ng::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if let Some(config) = hub_config(&doc) {
                let part = auth_part(config);
                if part.as_mapping().is_some_and(|m| !m.is_empty()) {
                    any = true;
                    merge(&mut merged, &part);
                }
            }
        }
        if !any {
            continue;
        }
        let mut doc = Mapping::new();
        let mut hub_map = Mapping::new();
        hub_map.insert("config".into(), merged);
        doc.insert("hub".into(), Value::Mapping(hub_map));
        let yaml = serde_yaml_ng::to_string(&Value::Mapping(doc)).unwrap();
        let label = format!("{}/{name}", dir.file_name().unwrap().to_string_lossy());
        let result = match HubConfig::from_yaml_str(&yaml, &label) {
            Ok(config) => Ok(config.hub.config.jupyterhub.authenticator_class),
            Err(e) => Err((e.key().map(str::to_owned), e.to_string())),
        };
        outcomes.push(Outcome { hub: label, result });
    }
}

#[test]
fn every_hub_authenticator_loads_or_names_the_unsupported_key() {
    let clusters = fixtures::fixture("2i2c-infrastructure/config/clusters").unwrap();
    let mut outcomes = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(&clusters)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("cluster.yaml").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        check_cluster(&dir, &mut outcomes);
    }
    assert!(outcomes.len() >= 10, "only {} hubs found", outcomes.len());
    let mut loaded = 0;
    for o in &outcomes {
        match &o.result {
            Ok(kind) => {
                loaded += 1;
                println!("{:32} ok: {kind}", o.hub);
            }
            Err((key, message)) => {
                let key = key
                    .as_deref()
                    .unwrap_or_else(|| panic!("{}: error names no key: {message}", o.hub));
                assert!(key.starts_with("hub.config."), "{}: {message}", o.hub);
                println!("{:32} unsupported `{key}`: {message}", o.hub);
            }
        }
    }
    // GitHub organisation/team hubs are the common case and must all load.
    for o in &outcomes {
        if o.hub.starts_with("leap/")
            || o.hub.starts_with("nasa-veda/") && !o.hub.contains("binder")
        {
            assert_eq!(
                o.result.as_ref().ok(),
                Some(&AuthenticatorKind::GitHub),
                "{}",
                o.hub
            );
        }
    }
    // Binder hubs use nullauthenticator; the workshop hub spells its shared password
    // `password` (read as `user_password`, with a warning).
    for (hub, kind) in [
        ("nasa-veda/binder", AuthenticatorKind::Null),
        ("opensci/small-binder", AuthenticatorKind::Null),
        ("projectpythia/pythia-binder", AuthenticatorKind::Null),
        ("opensci/climaterisk", AuthenticatorKind::SharedPassword),
    ] {
        let o = outcomes.iter().find(|o| o.hub == hub).unwrap();
        assert_eq!(o.result.as_ref().ok(), Some(&kind), "{hub}");
    }
    assert_eq!(
        loaded,
        outcomes.len(),
        "every hub's authenticator config loads"
    );
}
