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

/// z2jh's schema (`values.schema.yaml`): every key the chart knows, `values.yaml` or not.
fn z2jh_schema() -> Value {
    let path = fixtures::fixture("zero-to-jupyterhub/jupyterhub/values.schema.yaml")
        .unwrap_or_else(|msg| panic!("{msg}"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Whether z2jh's schema has the dotted key.
fn in_schema(schema: &Value, dotted: &str) -> bool {
    dotted
        .split('.')
        .try_fold(schema, |node, key| node.get("properties")?.get(key))
        .is_some()
}

#[test]
fn ignored_and_refused_keys_exist_in_z2jh() {
    let schema = z2jh_schema();
    let keys = hubfleet_config::IGNORED_KEYS
        .iter()
        .map(|k| k.key)
        .chain(hubfleet_config::unsupported_keys().map(|k| k.key));
    // `custom` is z2jh's free-form section (2i2c's keys under it are not in the chart), and
    // `hub.config` holds traitlets classes, which the chart does not list.
    for key in keys.filter(|k| !k.starts_with("custom.") && !k.starts_with("hub.config.")) {
        assert!(in_schema(&schema, key), "z2jh's schema has no `{key}`");
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
fn docs_list_every_ignored_and_refused_key() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for entry in hubfleet_config::IGNORED_KEYS {
        assert!(
            doc.contains(&format!("| `{}` |", entry.key)),
            "docs/configuration.md does not list ignored key `{}`",
            entry.key
        );
    }
    for entry in hubfleet_config::unsupported_keys() {
        // Spawner traits are listed once for the three classes.
        let listed = match entry.key.split_once("Spawner.") {
            Some((_, name)) => format!("| `{name}` |"),
            None => format!("| `{}` |", entry.key),
        };
        assert!(
            doc.contains(&listed),
            "docs/configuration.md does not list refused key `{}`",
            entry.key
        );
    }
}

#[test]
fn cull_and_named_server_defaults_match_z2jh() {
    let values = z2jh_values();
    let ours = HubConfig::default();
    let cull = get(&values, "cull");
    let int = |k: &str| get(cull, k).as_u64().expect("an integer");
    let flag = |k: &str| get(cull, k).as_bool().expect("a boolean");
    assert_eq!(ours.cull.enabled, flag("enabled"));
    assert_eq!(ours.cull.users, flag("users"));
    assert_eq!(ours.cull.admin_users, flag("adminUsers"));
    assert_eq!(ours.cull.remove_named_servers, flag("removeNamedServers"));
    assert_eq!(ours.cull.timeout, int("timeout"));
    assert_eq!(ours.cull.every, int("every"));
    assert_eq!(u64::from(ours.cull.concurrency), int("concurrency"));
    assert_eq!(ours.cull.max_age, int("maxAge"));
    // Every key of z2jh's `cull:` is supported.
    let keys: Vec<&str> = cull
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "enabled",
            "users",
            "adminUsers",
            "removeNamedServers",
            "timeout",
            "every",
            "concurrency",
            "maxAge"
        ]
    );

    assert_eq!(
        Some(ours.allow_named_servers()),
        get(&values, "hub.allowNamedServers").as_bool()
    );
    assert!(get(&values, "hub.namedServerLimitPerUser").is_null());
    assert_eq!(ours.hub.named_server_limit_per_user, None);
    assert_eq!(ours.named_server_limit_per_user(), 0);
    assert_eq!(
        get(&values, "hub.services"),
        &Value::Mapping(Default::default())
    );
    assert_eq!(
        get(&values, "hub.loadRoles"),
        &Value::Mapping(Default::default())
    );
}

/// The `hub.services`, `hub.loadRoles`, named-server and `cull` settings of z2jh's values.yaml
/// and of every real 2i2c values file load as they are.
#[test]
fn real_services_roles_and_cull_settings_load() {
    let root = fixtures::fixture("").unwrap_or_else(|e| panic!("{e}"));
    let mut files = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                // Jinja templates, not values files.
                if path.file_name().is_some_and(|n| n != "templates") {
                    dirs.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    let (mut services, mut roles, mut culls) = (0, 0, 0);
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let Ok(doc) = serde_yaml_ng::from_str::<Value>(&text) else {
            continue;
        };
        // The z2jh chart's values are at the top, under `jupyterhub:` (2i2c's basehub chart),
        // or under `basehub.jupyterhub:` (2i2c's daskhub files).
        let roots = [
            Some(&doc),
            doc.get("jupyterhub"),
            doc.get("basehub").and_then(|b| b.get("jupyterhub")),
        ];
        for root in roots.into_iter().flatten() {
            let mut hub = serde_yaml_ng::Mapping::new();
            if let Some(h) = root.get("hub") {
                for key in [
                    "services",
                    "loadRoles",
                    "allowNamedServers",
                    "namedServerLimitPerUser",
                ] {
                    if let Some(v) = h.get(key) {
                        hub.insert(key.into(), v.clone());
                    }
                }
            }
            let mut out = serde_yaml_ng::Mapping::new();
            if !hub.is_empty() {
                out.insert("hub".into(), Value::Mapping(hub));
            }
            if let Some(c) = root.get("cull") {
                out.insert("cull".into(), c.clone());
            }
            if out.is_empty() {
                continue;
            }
            let yaml = serde_yaml_ng::to_string(&out).unwrap();
            let config = HubConfig::from_yaml_str(&yaml, &file.display().to_string())
                .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
            services += config.hub.services.len();
            roles += config.hub.load_roles.len();
            culls += usize::from(out.contains_key("cull"));
        }
    }
    assert!(services >= 5, "only {services} services loaded");
    assert!(roles >= 10, "only {roles} roles loaded");
    assert!(culls >= 2, "only {culls} cull sections loaded");
}
