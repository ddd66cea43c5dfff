//! `binderhub-service:`: a Binder-style hub, as 2i2c's binder hubs configure the
//! `binderhub-service` chart beside the hub's values.
//!
//! On this machine the hub itself answers BinderHub's URLs (`/hub/binder/v2/…`) and builds each
//! repository's environment with pip. The chart's own keys (`config.BinderHub.*` and the other
//! traitlets classes, ingress, registry credentials, …) are kept as written: `render k8s` hands
//! them to the upstream chart, which builds images with repo2docker and pushes them to a
//! registry. `binderhub-service.hubfleet` holds the limits of local builds, which the upstream
//! chart does not have.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::load::{Ctx, Findings};
use crate::HubConfig;

const SECTION: &str = "binderhub-service";

/// Each temporary user has a server running a repository's code on this machine: a few dozen
/// is what one machine serves, and the cap stops a script from making users without end.
pub const DEFAULT_MAX_TEMPORARY_USERS: u32 = 20;

/// `binderhub-service:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct BinderhubService {
    /// Turns the Binder-style hub on.
    pub enabled: bool,
    /// Traitlets config of BinderHub (`config.BinderHub.*`, `config.DockerRegistry.*`, …).
    pub config: BinderTraitlets,
    /// hubfleet's own settings of local builds (not passed to the upstream chart).
    pub hubfleet: LocalBuilds,
    /// The chart's other keys (ingress, networkPolicy, buildPodsRegistryCredentials, extraEnv,
    /// custom, …): Kubernetes only, rendered for the upstream chart as written.
    #[serde(flatten)]
    pub chart: BTreeMap<String, Value>,
}

/// `binderhub-service.config`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct BinderTraitlets {
    #[serde(rename = "BinderHub")]
    pub binder_hub: BinderHubTraits,
    /// Other classes (`DockerRegistry`, `KubernetesBuildExecutor`, …): Kubernetes only.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// `binderhub-service.config.BinderHub`: the traits a local hub reads; the rest are kept.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct BinderHubTraits {
    /// Regular expressions on `<provider>/<spec>` (`gh/org/repo/main`) that may not launch.
    pub banned_specs: Vec<String>,
    /// Launches need a logged-in user (their server); without it each launch gets a temporary
    /// user that is deleted when its server stops.
    pub auth_enabled: bool,
    /// Builds at once; more wait their turn.
    pub concurrent_build_limit: u32,
    /// Everything else (`hub_url`, `image_prefix`, `base_url`, …): Kubernetes only.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl Default for BinderHubTraits {
    fn default() -> Self {
        BinderHubTraits {
            banned_specs: Vec::new(),
            auth_enabled: false,
            concurrent_build_limit: 2,
            other: BTreeMap::new(),
        }
    }
}

/// `binderhub-service.hubfleet`: limits of builds on this machine.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalBuilds {
    /// Regular expressions on `<provider>/<spec>`: only matching specs launch (required).
    pub allowed_specs: Vec<String>,
    /// Let visitors who are not logged in launch (`BinderHub.auth_enabled: false`): each gets a
    /// server that runs as the hub's account.
    pub allow_anonymous_launches: bool,
    /// Seconds a whole build (fetch, pip, postBuild) may take.
    pub build_timeout: u64,
    /// Seconds `postBuild` may take.
    pub postbuild_timeout: u64,
    /// Disk all built environments together may use (`10G`, `500M`); none: no limit.
    pub environments_disk_limit: Option<String>,
    /// Temporary users (anonymous visitors) at once; a visitor over it gets a message and
    /// nothing is made.
    pub max_temporary_users: u32,
    /// An unprivileged Unix account builds run as, on a hub running as root (required with
    /// `system_users`).
    pub build_user: Option<String>,
}

impl Default for LocalBuilds {
    fn default() -> Self {
        LocalBuilds {
            allowed_specs: Vec::new(),
            allow_anonymous_launches: false,
            build_timeout: 900,
            postbuild_timeout: 300,
            environments_disk_limit: None,
            max_temporary_users: DEFAULT_MAX_TEMPORARY_USERS,
            build_user: None,
        }
    }
}

impl LocalBuilds {
    /// [`LocalBuilds::environments_disk_limit`] in bytes (checked at load).
    pub fn disk_limit_bytes(&self) -> Option<u64> {
        self.environments_disk_limit
            .as_deref()
            .and_then(|text| crate::profiles::parse_bytes(text).ok())
    }
}

/// Patterns that do not compile, sizes that do not parse, timeouts of zero.
pub(crate) fn check(config: &HubConfig, ctx: &Ctx<'_>, f: &mut Findings) {
    let binder = &config.binderhub_service;
    let patterns = [
        (
            "binderhub-service.config.BinderHub.banned_specs",
            &binder.config.binder_hub.banned_specs,
        ),
        (
            "binderhub-service.hubfleet.allowed_specs",
            &binder.hubfleet.allowed_specs,
        ),
    ];
    for (key, list) in patterns {
        for (i, pattern) in list.iter().enumerate() {
            if let Err(e) = regex::Regex::new(pattern) {
                f.error(ctx.at_item(
                    key,
                    i,
                    format!("`{pattern}` is not a regular expression: {e}"),
                ));
            }
        }
    }
    if let Some(text) = &binder.hubfleet.environments_disk_limit {
        if let Err(e) = crate::profiles::parse_bytes(text) {
            f.error(ctx.at_key(
                "binderhub-service.hubfleet.environments_disk_limit",
                format!("{e} (write e.g. `10G` or `500M`)"),
            ));
        }
    }
    for (key, value) in [
        ("build_timeout", binder.hubfleet.build_timeout),
        ("postbuild_timeout", binder.hubfleet.postbuild_timeout),
    ] {
        if value == 0 {
            f.error(ctx.at_key(
                &format!("{SECTION}.hubfleet.{key}"),
                "must be at least 1 (seconds)",
            ));
        }
    }
    if binder.hubfleet.max_temporary_users == 0 {
        f.error(ctx.at_key(
            "binderhub-service.hubfleet.max_temporary_users",
            "must be at least 1: with 0 no visitor could launch (for launches by logged-in users only, set config.BinderHub.auth_enabled: true)",
        ));
    }
    if binder.config.binder_hub.concurrent_build_limit == 0 {
        f.error(ctx.at_key(
            "binderhub-service.config.BinderHub.concurrent_build_limit",
            "must be at least 1: with 0 no build could ever run",
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::HubConfig;

    #[test]
    fn reads_2i2c_keys_and_local_limits() {
        let config = HubConfig::from_yaml_str(
            "binderhub-service:\n  enabled: true\n  networkPolicy:\n    enabled: true\n  config:\n    BinderHub:\n      auth_enabled: true\n      image_prefix: quay.io/x/\n      banned_specs: ['^gh/evil/.*']\n    DockerRegistry:\n      url: https://quay.io\n  hubfleet:\n    allowed_specs: ['^git/']\n    environments_disk_limit: 2G\n",
            "inline.yaml",
        )
        .unwrap();
        let b = &config.binderhub_service;
        assert!(b.enabled && b.config.binder_hub.auth_enabled);
        assert_eq!(b.config.binder_hub.banned_specs, ["^gh/evil/.*"]);
        assert!(b.config.binder_hub.other.contains_key("image_prefix"));
        assert!(b.config.other.contains_key("DockerRegistry"));
        assert!(b.chart.contains_key("networkPolicy"));
        assert_eq!(b.hubfleet.disk_limit_bytes(), Some(2 << 30));
        assert_eq!(
            b.hubfleet.max_temporary_users,
            super::DEFAULT_MAX_TEMPORARY_USERS
        );
    }

    #[test]
    fn bad_patterns_and_sizes_are_located() {
        let report = HubConfig::check(vec![crate::ConfigSource::text(
            "inline.yaml",
            "binderhub-service:\n  config:\n    BinderHub:\n      banned_specs: ['(']\n  hubfleet:\n    environments_disk_limit: lots\n    build_timout: 3\n    max_temporary_users: 0\n",
        )]);
        let err = report
            .errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(err.contains("inline.yaml:4"), "{err}");
        assert!(err.contains("not a regular expression"), "{err}");
        assert!(err.contains("environments_disk_limit"), "{err}");
        assert!(err.contains("build_timout"), "{err}");
        assert!(err.contains("max_temporary_users"), "{err}");
    }
}
