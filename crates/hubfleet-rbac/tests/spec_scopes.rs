//! The scope table agrees with JupyterHub's REST API spec (`rest-api.yml`, 6.0.0b2):
//! every scope listed under `components.securitySchemes.oauth2.flows.authorizationCode.scopes`
//! is known, with the same description, and the crate knows no scope the spec lacks.

use std::path::PathBuf;

use hubfleet_rbac::{is_known_scope, scope_definition, Scope, SCOPE_DEFINITIONS};

fn shared_dir() -> PathBuf {
    match std::env::var_os("HUBFLEET_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

fn spec_scopes() -> Vec<(String, String)> {
    let path = shared_dir().join("spec/jupyterhub-rest-api.yml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "shared reference material not found at {}: put it there or set HUBFLEET_SHARED_DIR",
            path.display()
        )
    });
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
    let scopes = doc
        .get("components")
        .and_then(|v| v.get("securitySchemes"))
        .and_then(|v| v.get("oauth2"))
        .and_then(|v| v.get("flows"))
        .and_then(|v| v.get("authorizationCode"))
        .and_then(|v| v.get("scopes"))
        .and_then(|v| v.as_mapping())
        .unwrap_or_else(|| {
            panic!(
                "{}: no components.securitySchemes.oauth2.flows.authorizationCode.scopes",
                path.display()
            )
        });
    scopes
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().expect("scope name is a string").to_string(),
                v.as_str()
                    .expect("scope description is a string")
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn every_spec_scope_is_known() {
    let spec = spec_scopes();
    assert!(spec.len() >= 40, "suspiciously few scopes: {}", spec.len());
    let unknown: Vec<&str> = spec
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| !is_known_scope(name))
        .collect();
    assert!(
        unknown.is_empty(),
        "scopes in rest-api.yml unknown to the crate: {unknown:?}"
    );
    for (name, _) in &spec {
        assert!(Scope::parse(name).is_ok(), "{name} does not parse");
    }
}

#[test]
fn spec_and_table_agree() {
    let spec = spec_scopes();
    for (name, description) in &spec {
        let def = scope_definition(name).unwrap_or_else(|| panic!("unknown {name}"));
        assert_eq!(def.doc_description(), description, "description of {name}");
    }
    let spec_names: Vec<&str> = spec.iter().map(|(n, _)| n.as_str()).collect();
    let table_names: Vec<&str> = SCOPE_DEFINITIONS
        .iter()
        .map(|d| d.name)
        .filter(|n| !hubfleet_rbac::HUBFLEET_SCOPES.contains(n))
        .collect();
    // same scopes, in the same (upstream) order
    assert_eq!(spec_names, table_names);
}
