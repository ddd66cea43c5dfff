//! z2jh keys that hubfleet's model does not take, and what to say about each.
//!
//! These tables are the single place that lists them. When a file holds a key the model does not
//! know, the loader looks it up here:
//! - an [`IgnoredKey`] (Kubernetes-only settings and the like) is accepted with one warning that
//!   says why it has no effect;
//! - an [`UnsupportedKey`] is an error that says why, and which hubfleet key to use instead when
//!   there is one (`hub.config.Spawner.mem_limit` → `singleuser.memory.limit`);
//! - any other key is an error, with a "did you mean" suggestion, so that a typo or a z2jh feature
//!   hubfleet lacks never goes unnoticed.
//!
//! The tables are consulted only for keys the model rejects: once hubfleet supports a key (e.g.
//! `proxy.https`), its entry here simply stops applying. A key set to nothing (`null`, `{}`, `[]`,
//! `""`, `false`, or a section switched off with `enabled: false`) is accepted silently: it asks
//! for nothing, even on Kubernetes.

use serde_yaml_ng::Value;

/// A z2jh key that hubfleet accepts and ignores, with one warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IgnoredKey {
    /// Dotted z2jh key path, e.g. `hub.image`. Everything below it is covered too.
    pub key: &'static str,
    /// Why it has no effect here.
    pub reason: &'static str,
    /// A Kubernetes setting: it will apply once hubfleet runs on Kubernetes.
    pub kubernetes: bool,
}

/// A key hubfleet refuses, saying why and what to use instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsupportedKey {
    /// Dotted key path, e.g. `hub.config.Spawner.mem_limit`.
    pub key: &'static str,
    /// Why hubfleet does not read it.
    pub reason: &'static str,
    /// The hubfleet key (or other means) that does the same, written for the message, e.g.
    /// "`singleuser.memory.limit`".
    pub instead: Option<&'static str>,
    /// A value that asks for nothing more than hubfleet already does (`hub.baseUrl: /`): accepted
    /// silently.
    pub harmless_value: Option<&'static str>,
}

const fn k8s(key: &'static str, reason: &'static str) -> IgnoredKey {
    IgnoredKey {
        key,
        reason,
        kubernetes: true,
    }
}

const fn ignored(key: &'static str, reason: &'static str) -> IgnoredKey {
    IgnoredKey {
        key,
        reason,
        kubernetes: false,
    }
}

const fn moved(key: &'static str, instead: &'static str) -> UnsupportedKey {
    UnsupportedKey {
        key,
        reason: "hubfleet reads this setting from its own key",
        instead: Some(instead),
        harmless_value: None,
    }
}

const fn missing(key: &'static str, reason: &'static str) -> UnsupportedKey {
    UnsupportedKey {
        key,
        reason,
        instead: None,
        harmless_value: None,
    }
}

/// Why `singleuser.storage.*` (except `capacity`, the home's quota) has no effect.
const HOMES_ARE_LOCAL: &str =
    "homes are directories under hubfleet.local.homes_dir; only singleuser.storage.capacity (a quota) is used";
const HUB_PLACEMENT: &str = "which Kubernetes nodes the hub pod runs on";
const USER_PLACEMENT: &str = "which Kubernetes nodes user pods run on";

/// The warning text of `hub.extraConfig`: what covers the usual snippets.
pub const EXTRA_CONFIG_REASON: &str =
    "it is Python for jupyterhub_config.py, which hubfleet does not run. \
     The usual snippets have keys of their own: `hub.templateVars` (c.JupyterHub.template_vars), \
     `hub.loadRoles` (load_roles), `hub.services` (services), \
     `hub.config.JupyterHub.load_groups` (load_groups), `singleuser.profileList` (profile_list), \
     `singleuser.extraEnv` (c.Spawner.environment), `singleuser.memory` and `singleuser.cpu` \
     (limits), `singleuser.defaultUrl`, `hub.config.<Authenticator class>` (authenticator \
     settings); move each snippet to its key";

/// The z2jh keys hubfleet ignores on purpose (one warning each). Keep in sync with
/// docs/configuration.md ("Keys ignored on purpose").
pub const IGNORED_KEYS: &[IgnoredKey] = &[
    // Top level.
    ignored("enabled", "a switch for Helm charts that depend on z2jh's chart; there is no chart here"),
    k8s("fullnameOverride", "names of the chart's Kubernetes objects"),
    k8s("nameOverride", "names of the chart's Kubernetes objects"),
    k8s("imagePullSecret", "credentials Kubernetes pulls the chart's container images with"),
    k8s("imagePullSecrets", "credentials Kubernetes pulls the chart's container images with"),
    k8s("scheduling", "placement of user pods on Kubernetes nodes (user scheduler, placeholder pods, node affinity)"),
    k8s("prePuller", "pulls container images onto Kubernetes nodes ahead of time; local environments (hubfleet.local.environments) are already on this machine"),
    k8s("ingress", "a Kubernetes Ingress in front of the hub; here people reach hubfleet.listen (or hubfleet.public_url behind a reverse proxy of your own)"),
    k8s("httpRoute", "a Gateway API route in front of the hub; here people reach hubfleet.listen"),
    k8s("rbac", "Kubernetes RBAC objects for the chart's pods (JupyterHub's own roles are hub.loadRoles)"),
    ignored("debug", "it turns on the hub pod's debug logs; set `RUST_LOG=debug` in the hub's environment instead"),
    ignored("global", "Helm values shared with parent charts"),
    // hub.
    k8s("hub.revisionHistoryLimit", "the history kept by the hub's Kubernetes Deployment"),
    k8s("hub.extraFiles", "files mounted into the hub's container; put files on this machine and point at them (e.g. hub.templatePaths)"),
    k8s("hub.command", "the hub container's command; this hub runs as `hubfleet serve`"),
    k8s("hub.args", "the hub container's arguments; this hub runs as `hubfleet serve`"),
    k8s("hub.image", "the hub's container image; this hub is the hubfleet program"),
    k8s("hub.networkPolicy", "the hub pod's NetworkPolicy; use this machine's firewall"),
    k8s("hub.labels", "labels of the hub's Kubernetes objects"),
    k8s("hub.annotations", "annotations of the hub's Kubernetes objects"),
    k8s("hub.initContainers", "init containers of the hub pod"),
    k8s("hub.extraContainers", "sidecar containers of the hub pod"),
    k8s("hub.extraVolumes", "volumes of the hub pod"),
    k8s("hub.extraVolumeMounts", "volumes of the hub pod"),
    ignored("hub.extraConfig", EXTRA_CONFIG_REASON),
    k8s("hub.fsGid", "the group of the hub's files in its container"),
    k8s("hub.service", "the hub's Kubernetes Service"),
    k8s("hub.pdb", "the hub pod's PodDisruptionBudget"),
    k8s("hub.existingSecret", "a Kubernetes Secret with the hub's secrets; put them in hub.cookieSecret and in the hub's environment (JUPYTERHUB_CRYPT_KEY)"),
    k8s("hub.nodeSelector", HUB_PLACEMENT),
    k8s("hub.tolerations", HUB_PLACEMENT),
    k8s("hub.podSecurityContext", "the user and privileges of the hub's container; run `hubfleet serve` as the account you want"),
    k8s("hub.containerSecurityContext", "the user and privileges of the hub's container; run `hubfleet serve` as the account you want"),
    k8s("hub.deploymentStrategy", "how Kubernetes replaces the hub pod"),
    k8s("hub.livenessProbe", "Kubernetes' health check of the hub pod; hubfleet answers /hub/health for your own"),
    k8s("hub.readinessProbe", "Kubernetes' health check of the hub pod; hubfleet answers /hub/health for your own"),
    k8s("hub.resources", "CPU and memory requests of the hub pod"),
    k8s("hub.lifecycle", "lifecycle hooks of the hub's container"),
    k8s("hub.serviceAccount", "the hub pod's Kubernetes service account"),
    k8s("hub.extraPodSpec", "more fields of the hub pod"),
    ignored("hub.consecutiveFailureLimit", "hubfleet keeps running after failed starts (each is logged, shown to its user and kept in the usage ledger); z2jh uses it to have Kubernetes restart a failing hub"),
    k8s("hub.db.pvc", "storage is a file in hubfleet.data_dir here, not a PersistentVolumeClaim"),
    ignored("hub.db.upgrade", "hubfleet upgrades its own database schema at startup"),
    k8s("hub.config.KubeSpawner", "KubeSpawner's own settings (pods, volumes, node selection)"),
    // proxy.
    ignored("proxy.secretToken", "the built-in proxy needs no token"),
    k8s("proxy.annotations", "annotations of the proxy's Kubernetes objects"),
    k8s("proxy.labels", "labels of the proxy's Kubernetes objects"),
    k8s("proxy.deploymentStrategy", "how Kubernetes replaces the proxy pod"),
    k8s("proxy.service", "the proxy-public Kubernetes Service (load balancer, node ports); here the proxy listens on hubfleet.listen"),
    ignored("proxy.chp", "settings of the configurable-http-proxy pod; hubfleet's proxy is built into the hub and listens on hubfleet.listen"),
    ignored("proxy.traefik", "the Traefik pod that terminates TLS for z2jh; hubfleet does not run Traefik"),
    k8s("proxy.secretSync", "copies Let's Encrypt certificates into a Kubernetes Secret"),
    // singleuser.
    k8s("singleuser.networkPolicy", "the NetworkPolicy of user pods; use this machine's firewall"),
    k8s("singleuser.podNameTemplate", "names of user pods"),
    k8s("singleuser.initContainers", "init containers of user pods"),
    k8s("singleuser.extraFiles", "files mounted into user pods"),
    k8s("singleuser.nodeSelector", USER_PLACEMENT),
    k8s("singleuser.extraTolerations", USER_PLACEMENT),
    k8s("singleuser.extraNodeAffinity", USER_PLACEMENT),
    k8s("singleuser.extraPodAffinity", USER_PLACEMENT),
    k8s("singleuser.extraPodAntiAffinity", USER_PLACEMENT),
    k8s("singleuser.cloudMetadata", "an init container that blocks user pods from the cloud's metadata server; on a cloud machine, block 169.254.169.254 for the servers' accounts in the firewall"),
    k8s("singleuser.networkTools", "the image of the init container that blocks the metadata server"),
    k8s("singleuser.events", "Kubernetes events shown while a pod starts"),
    k8s("singleuser.extraAnnotations", "annotations of user pods"),
    k8s("singleuser.extraLabels", "labels of user pods"),
    k8s("singleuser.extraContainers", "sidecar containers of user pods"),
    k8s("singleuser.extraPodConfig", "more fields of user pods"),
    k8s("singleuser.extraResource", "extra resource requests of user pods; GPUs come from hubfleet.local.gpus and a profile's `extra_resource_limits`"),
    k8s("singleuser.uid", "the user id a server runs as in its container; here servers run as the hub's account, or with hubfleet.local.system_users as an account of their own"),
    k8s("singleuser.fsGid", "the group id of a server's files in its container; with hubfleet.local.system_users each user has an account and group of their own"),
    k8s("singleuser.lifecycleHooks", "postStart/preStop hooks of user containers (e.g. gitpuller); run such steps from singleuser.cmd"),
    k8s("singleuser.serviceAccountName", "the Kubernetes service account of user pods"),
    k8s("singleuser.allowPrivilegeEscalation", "a container security setting of user pods"),
    ignored("singleuser.storage.type", HOMES_ARE_LOCAL),
    ignored("singleuser.storage.extraLabels", HOMES_ARE_LOCAL),
    ignored("singleuser.storage.extraVolumes", HOMES_ARE_LOCAL),
    ignored("singleuser.storage.extraVolumeMounts", HOMES_ARE_LOCAL),
    ignored("singleuser.storage.static", HOMES_ARE_LOCAL),
    ignored("singleuser.storage.homeMountPath", HOMES_ARE_LOCAL),
    ignored("singleuser.storage.dynamic", HOMES_ARE_LOCAL),
    // custom (2i2c).
    ignored("custom.homepage.gitRepoUrl", "templates are not fetched from git; put them in a directory listed in hub.templatePaths"),
    ignored("custom.homepage.gitRepoBranch", "templates are not fetched from git; put them in a directory listed in hub.templatePaths"),
];

/// A `Spawner` (or `KubeSpawner`) trait and the hubfleet key that does the same.
macro_rules! spawner_traits {
    ($class:literal) => {
        [
            moved(concat!("hub.config.", $class, ".mem_limit"), "`singleuser.memory.limit`"),
            moved(concat!("hub.config.", $class, ".mem_guarantee"), "`singleuser.memory.guarantee`"),
            moved(concat!("hub.config.", $class, ".cpu_limit"), "`singleuser.cpu.limit`"),
            moved(concat!("hub.config.", $class, ".cpu_guarantee"), "`singleuser.cpu.guarantee`"),
            moved(concat!("hub.config.", $class, ".default_url"), "`singleuser.defaultUrl`"),
            moved(concat!("hub.config.", $class, ".cmd"), "`singleuser.cmd`"),
            moved(concat!("hub.config.", $class, ".args"), "`singleuser.cmd` (a list: the program, then its arguments)"),
            moved(concat!("hub.config.", $class, ".environment"), "`singleuser.extraEnv`"),
            moved(concat!("hub.config.", $class, ".start_timeout"), "`singleuser.startTimeout`"),
            moved(concat!("hub.config.", $class, ".http_timeout"), "`singleuser.startTimeout` (it bounds the whole start, the wait for the server to answer included)"),
            moved(concat!("hub.config.", $class, ".image"), "`singleuser.image` (mapped to hubfleet.local.environments)"),
            moved(concat!("hub.config.", $class, ".profile_list"), "`singleuser.profileList`"),
        ]
    };
}

const SPAWNER_TRAITS: [UnsupportedKey; 12] = spawner_traits!("Spawner");
const LOCAL_SPAWNER_TRAITS: [UnsupportedKey; 12] = spawner_traits!("LocalProcessSpawner");
const KUBESPAWNER_TRAITS: [UnsupportedKey; 12] = spawner_traits!("KubeSpawner");

/// Keys hubfleet refuses with a reason (and, where it has one, the key to use instead).
const OTHER_UNSUPPORTED: &[UnsupportedKey] = &[
    UnsupportedKey {
        key: "hub.db.password",
        reason: "hubfleet reads the database password from the database URL",
        instead: Some("`hub.db.url` (`postgresql://user:password@host:5432/db`)"),
        harmless_value: None,
    },
    moved("hub.config.JupyterHub.template_vars", "`hub.templateVars`"),
    moved("hub.config.JupyterHub.template_paths", "`hub.templatePaths`"),
    moved("hub.config.JupyterHub.load_roles", "`hub.loadRoles` (a mapping from role name to role)"),
    moved("hub.config.JupyterHub.services", "`hub.services` (a mapping from service name to service)"),
    moved("hub.config.JupyterHub.cookie_secret", "`hub.cookieSecret` (hex)"),
    moved("hub.config.JupyterHub.db_url", "`hub.db.url`"),
    moved("hub.config.JupyterHub.bind_url", "`hubfleet.listen` (and `hubfleet.public_url` when people reach the hub at another URL)"),
    moved("hub.config.JupyterHub.ip", "`hubfleet.listen`"),
    moved("hub.config.JupyterHub.port", "`hubfleet.listen`"),
    moved("hub.config.JupyterHub.hub_bind_url", "`hubfleet.listen` (the hub is served by its own proxy)"),
    moved("hub.config.JupyterHub.hub_ip", "`hubfleet.listen` (the hub is served by its own proxy)"),
    moved("hub.config.JupyterHub.hub_port", "`hubfleet.listen` (the hub is served by its own proxy)"),
    moved("hub.config.JupyterHub.public_url", "`hubfleet.public_url`"),
    moved("hub.config.JupyterHub.spawner_class", "`hubfleet.spawner`"),
    moved("hub.config.JupyterHub.log_level", "`RUST_LOG` in the hub's environment (e.g. `RUST_LOG=debug`)"),
    moved("hub.config.JupyterHub.extra_log_file", "the hub's standard error (`hubfleet serve … 2>>hub.log`)"),
    moved("hub.config.JupyterHub.base_url", "`hub.baseUrl`"),
    UnsupportedKey {
        key: "hub.config.JupyterHub.cleanup_servers",
        reason: "hubfleet never stops users' servers when it exits; it finds them again at its next start (`false` is accepted)",
        instead: None,
        harmless_value: Some("false"),
    },
    missing("hub.config.JupyterHub.tornado_settings", "hubfleet is not built on Tornado"),
    moved("hub.config.CryptKeeper.keys", "`JUPYTERHUB_CRYPT_KEY` in the hub's environment or in `hub.extraEnv`"),
];

/// Every key hubfleet refuses with a reason.
pub fn unsupported_keys() -> impl Iterator<Item = &'static UnsupportedKey> {
    OTHER_UNSUPPORTED
        .iter()
        .chain(SPAWNER_TRAITS.iter())
        .chain(LOCAL_SPAWNER_TRAITS.iter())
        .chain(KUBESPAWNER_TRAITS.iter())
}

/// Every key hubfleet ignores: the table above and those of the flavours' sections.
fn ignored_keys() -> impl Iterator<Item = &'static IgnoredKey> {
    IGNORED_KEYS.iter().chain(crate::dask::IGNORED.iter())
}

/// What the tables say about one key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rule {
    Ignored(&'static IgnoredKey),
    Unsupported(&'static UnsupportedKey),
}

/// The rule for exactly `dotted`.
pub(crate) fn rule_for(dotted: &str) -> Option<Rule> {
    ignored_keys()
        .find(|k| k.key == dotted)
        .map(Rule::Ignored)
        .or_else(|| {
            unsupported_keys()
                .find(|k| k.key == dotted)
                .map(Rule::Unsupported)
        })
}

/// The names of the keys directly below `dotted` that have rules of their own or rules below
/// them (`proxy` → `secretToken`, `chp`, …).
pub(crate) fn children_with_rules(dotted: &str) -> Vec<&'static str> {
    let prefix = format!("{dotted}.");
    let mut names: Vec<&'static str> = ignored_keys()
        .map(|k| k.key)
        .chain(unsupported_keys().map(|k| k.key))
        .filter_map(|key| key.strip_prefix(prefix.as_str()))
        .map(|rest| rest.split('.').next().unwrap_or(rest))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Whether `value` asks for nothing: `null`, `""`, `[]`, `{}`, `false`, a mapping switched off
/// with `enabled: false`, or a mapping of such values.
pub(crate) fn is_inert(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Sequence(items) => items.is_empty(),
        Value::Mapping(map) => {
            map.get("enabled") == Some(&Value::Bool(false)) || map.values().all(is_inert)
        }
        Value::Number(_) => false,
        Value::Tagged(tagged) => is_inert(&tagged.value),
    }
}

/// The text of a scalar as YAML shows it, for [`UnsupportedKey::harmless_value`].
pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml_ng::from_str(s).unwrap()
    }

    #[test]
    fn tables_are_well_formed() {
        let mut keys: Vec<&str> = IGNORED_KEYS
            .iter()
            .map(|k| k.key)
            .chain(unsupported_keys().map(|k| k.key))
            .collect();
        for key in &keys {
            assert!(key.split('.').all(|s| !s.is_empty()), "{key}");
        }
        for entry in IGNORED_KEYS {
            assert!(!entry.reason.is_empty());
        }
        for entry in unsupported_keys() {
            assert!(!entry.reason.is_empty(), "{}", entry.key);
        }
        let n = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), n, "a key is listed twice");
    }

    #[test]
    fn children_with_rules_are_one_level_down() {
        let proxy = children_with_rules("proxy");
        assert!(proxy.contains(&"secretToken") && proxy.contains(&"chp"));
        assert_eq!(
            children_with_rules("hub.db"),
            ["password", "pvc", "upgrade"]
        );
        assert!(children_with_rules("hub.config.Spawner").contains(&"mem_limit"));
        assert!(children_with_rules("nothing").is_empty());
    }

    #[test]
    fn inert_values() {
        for inert in [
            "null",
            "''",
            "[]",
            "{}",
            "false",
            "{enabled: false, hosts: [a]}",
            "{a: {}, b: null, c: []}",
        ] {
            assert!(is_inert(&yaml(inert)), "{inert}");
        }
        for live in ["0", "x", "[a]", "{a: 1}", "{enabled: true}", "true"] {
            assert!(!is_inert(&yaml(live)), "{live}");
        }
    }
}
