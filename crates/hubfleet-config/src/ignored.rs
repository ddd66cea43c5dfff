//! z2jh keys that hubfleet accepts and ignores on purpose.
//!
//! This table is the single place that lists them. A key listed here (with everything below it)
//! is removed from the document before it is checked, and reported with `tracing::warn!` and a
//! [`ConfigWarning`](crate::ConfigWarning). Every other key that hubfleet does not know is an
//! error, so that a typo or a not-yet-supported z2jh feature never goes unnoticed.

use serde_yaml_ng::Value;

/// One ignored-on-purpose key: dotted z2jh path and the reason it has no effect here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IgnoredKey {
    /// Dotted z2jh key path, e.g. `singleuser.image`.
    pub key: &'static str,
    /// Why hubfleet does not need it.
    pub reason: &'static str,
}

/// Why `singleuser.storage.*` (except `capacity`, the home's quota) has no effect.
const HOMES_ARE_LOCAL: &str =
    "homes are directories under hubfleet.local.homes_dir; only singleuser.storage.capacity (a quota) is used";

/// The z2jh keys hubfleet ignores on purpose. Keep in sync with docs/configuration.md.
pub const IGNORED_KEYS: &[IgnoredKey] = &[
    IgnoredKey {
        key: "proxy.secretToken",
        reason: "the built-in proxy needs no token",
    },
    IgnoredKey {
        key: "hub.db.pvc",
        reason: "storage is a file in hubfleet.data_dir here, not a PersistentVolumeClaim",
    },
    IgnoredKey {
        key: "hub.db.upgrade",
        reason: "hubfleet upgrades its own database schema at startup",
    },
    IgnoredKey {
        key: "custom.homepage.gitRepoUrl",
        reason: "templates are not fetched from git; put them in a directory listed in hub.templatePaths",
    },
    IgnoredKey {
        key: "custom.homepage.gitRepoBranch",
        reason: "templates are not fetched from git; put them in a directory listed in hub.templatePaths",
    },
    IgnoredKey {
        key: "singleuser.storage.type",
        reason: HOMES_ARE_LOCAL,
    },
    IgnoredKey {
        key: "singleuser.storage.extraLabels",
        reason: HOMES_ARE_LOCAL,
    },
    IgnoredKey {
        key: "singleuser.storage.extraVolumes",
        reason: HOMES_ARE_LOCAL,
    },
    IgnoredKey {
        key: "singleuser.storage.extraVolumeMounts",
        reason: HOMES_ARE_LOCAL,
    },
    IgnoredKey {
        key: "singleuser.storage.static",
        reason: HOMES_ARE_LOCAL,
    },
    IgnoredKey {
        key: "singleuser.storage.homeMountPath",
        reason: HOMES_ARE_LOCAL,
    },
    IgnoredKey {
        key: "singleuser.storage.dynamic",
        reason: HOMES_ARE_LOCAL,
    },
];

/// Remove every ignored key present in `doc`; return the ones found (in table order).
///
/// Mappings that become empty only because an ignored key was removed from them (`proxy:` holding
/// just `secretToken`) are removed too, so that they are not reported as unknown keys.
pub(crate) fn strip(doc: &mut Value) -> Vec<IgnoredKey> {
    let mut found = Vec::new();
    for entry in IGNORED_KEYS {
        let segs: Vec<&str> = entry.key.split('.').collect();
        if remove_path(doc, &segs) {
            found.push(*entry);
        }
    }
    found
}

/// Remove `segs` from `node`; returns whether it was present. Parents emptied by the removal are
/// removed as well.
fn remove_path(node: &mut Value, segs: &[&str]) -> bool {
    let Some((first, rest)) = segs.split_first() else {
        return false;
    };
    let Value::Mapping(map) = node else {
        return false;
    };
    if rest.is_empty() {
        return map.shift_remove(*first).is_some();
    }
    let Some(child) = map.get_mut(*first) else {
        return false;
    };
    let removed = remove_path(child, rest);
    if removed && matches!(child, Value::Mapping(m) if m.is_empty()) {
        map.shift_remove(*first);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml_ng::from_str(s).unwrap()
    }

    #[test]
    fn strips_listed_keys_and_emptied_parents() {
        let mut doc = yaml(
            "proxy:\n  secretToken: abc\nsingleuser:\n  storage:\n    type: x\n  defaultUrl: /lab\n",
        );
        let found = strip(&mut doc);
        let keys: Vec<_> = found.iter().map(|k| k.key).collect();
        assert_eq!(keys, ["proxy.secretToken", "singleuser.storage.type"]);
        assert_eq!(doc, yaml("singleuser:\n  defaultUrl: /lab\n"));
    }

    #[test]
    fn keeps_parents_that_were_already_empty_or_have_other_keys() {
        let mut doc = yaml("proxy:\n  secretToken: abc\n  https: {}\n");
        strip(&mut doc);
        assert_eq!(doc, yaml("proxy:\n  https: {}\n"));
        let mut doc = yaml("proxy: {}\n");
        assert!(strip(&mut doc).is_empty());
        assert_eq!(doc, yaml("proxy: {}\n"));
    }

    #[test]
    fn table_is_well_formed() {
        for (i, entry) in IGNORED_KEYS.iter().enumerate() {
            assert!(entry.key.split('.').all(|s| !s.is_empty()), "{}", entry.key);
            assert!(!entry.reason.is_empty());
            assert!(
                IGNORED_KEYS[..i].iter().all(|e| e.key != entry.key),
                "duplicate {}",
                entry.key
            );
        }
    }
}
