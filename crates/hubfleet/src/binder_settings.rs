//! `binderhub-service:` as the hub's [`BinderSettings`].

use std::time::Duration;

use anyhow::{bail, Result};
use hubfleet_config::{HubConfig, SpawnerKind};
use hubfleet_hub::binder::spec::SpecRules;
use hubfleet_hub::binder::{BinderSettings, BuildAccount};

pub fn binder_settings(config: &HubConfig) -> Result<Option<BinderSettings>> {
    let binder = &config.binderhub_service;
    if !binder.enabled {
        return Ok(None);
    }
    if config.hubfleet.spawner == SpawnerKind::Kubernetes {
        // Pods run images: building them is repo2docker's and a registry's job, which the
        // upstream binderhub-service chart does beside the hub (`hubfleet render k8s`).
        tracing::warn!(
            "binderhub-service: on Kubernetes the upstream binderhub-service chart builds images \
             with repo2docker and pushes them to a registry; this hub serves no /hub/binder/ \
             launches there (see `hubfleet render k8s`)"
        );
        return Ok(None);
    }
    let Some(base_env) = config.python_env() else {
        bail!(
            "binderhub-service.enabled needs hubfleet.local.python_env: each repository's environment is built on that Python environment (with jupyterhub and jupyterlab); set it, e.g. to the venv `hubfleet demo` makes"
        );
    };
    if !base_env.join("bin/python").exists() {
        bail!(
            "binderhub-service.enabled: hubfleet.local.python_env ({}) has no bin/python; builds need it",
            base_env.display()
        );
    }
    let traits = &binder.config.binder_hub;
    // Each temporary user would get a Unix account, which nothing removes when the user is
    // deleted: every anonymous visitor would leave one on the machine.
    if !traits.auth_enabled && config.hubfleet.local.system_users {
        bail!(
            "binderhub-service with BinderHub.auth_enabled: false and \
             hubfleet.local.system_users: every anonymous visitor would get a Unix account \
             (jupyter-binder-…) that is never removed. Set \
             binderhub-service.config.BinderHub.auth_enabled: true (launches by logged-in \
             users only), or run the binder hub without hubfleet.local.system_users"
        );
    }
    // Builds run a repository's own code (setup.py, build backends, postBuild), with no
    // container around them as upstream has: on a root hub, as an unprivileged account.
    let root = nix::unistd::geteuid().is_root();
    let build_account = match &binder.hubfleet.build_user {
        Some(name) if !root => bail!(
            "binderhub-service.hubfleet.build_user ({name}): only a hub running as root can run \
             builds as another account; this one runs them as its own. Remove the key, or run \
             the hub as root (with hubfleet.local.system_users)"
        ),
        Some(name) => Some(build_account(name)?),
        None => None,
    };
    if config.hubfleet.local.system_users && root && build_account.is_none() {
        bail!(
            "binderhub-service.enabled with hubfleet.local.system_users: the hub runs as root, \
             and builds run a repository's setup.py and postBuild. Name an unprivileged account \
             for them in binderhub-service.hubfleet.build_user (made e.g. with `useradd \
             --system --no-create-home hubfleet-build`), or run the binder hub as an \
             unprivileged account without system_users (docs/flavours.md#binder-style-hub)"
        );
    }
    // A launch link starts a build on a plain GET (as BinderHub's do), so a link on another
    // site can make a logged-in visitor build it: only repositories the operator trusts build.
    if binder.hubfleet.allowed_specs.is_empty() {
        bail!(
            "binderhub-service: builds run a repository's own code as the hub's account, and \
             any link can start one: list the repositories you trust in \
             binderhub-service.hubfleet.allowed_specs (e.g. ['^gh/my-org/'])"
        );
    }
    if !traits.auth_enabled && !binder.hubfleet.allow_anonymous_launches {
        bail!(
            "binderhub-service: with BinderHub.auth_enabled: false anyone who reaches the hub \
             gets a server (with a terminal) running as the hub's account, which can read the \
             hub's database and config. Set binderhub-service.config.BinderHub.auth_enabled: \
             true, or, on a throwaway machine only, \
             binderhub-service.hubfleet.allow_anonymous_launches: true"
        );
    }
    let rules = SpecRules::new(&traits.banned_specs, &binder.hubfleet.allowed_specs)
        .map_err(|e| anyhow::anyhow!("binderhub-service: {e}"))?;
    Ok(Some(BinderSettings {
        data_dir: config.data_dir(),
        base_env,
        auth_enabled: traits.auth_enabled,
        rules,
        concurrent_builds: traits.concurrent_build_limit as usize,
        build_timeout: Duration::from_secs(binder.hubfleet.build_timeout),
        postbuild_timeout: Duration::from_secs(binder.hubfleet.postbuild_timeout),
        disk_limit: binder.hubfleet.disk_limit_bytes(),
        max_temporary_users: binder.hubfleet.max_temporary_users as usize,
        build_account,
    }))
}

/// `build_user`'s account: it must exist and not be root.
fn build_account(name: &str) -> Result<BuildAccount> {
    let user = nix::unistd::User::from_name(name)
        .map_err(|e| anyhow::anyhow!("binderhub-service.hubfleet.build_user: looking up {name}: {e}"))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "binderhub-service.hubfleet.build_user: there is no account `{name}` on this machine; make one for builds (e.g. `useradd --system --no-create-home {name}`)"
            )
        })?;
    if user.uid.is_root() || user.gid.as_raw() == 0 {
        bail!(
            "binderhub-service.hubfleet.build_user: `{name}` is root or in root's group, which is what it is there to avoid; name an unprivileged account"
        );
    }
    Ok(BuildAccount {
        name: name.to_owned(),
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    })
}

/// The notes `render k8s` prints for a `binderhub-service:` section, and the values the
/// upstream `binderhub-service` chart takes (the section without hubfleet's own `hubfleet:`
/// key), when the section is enabled.
pub fn kubernetes_binder(
    values: &serde_yaml_ng::Value,
) -> Option<(Vec<String>, serde_yaml_ng::Value)> {
    let section = values.get("binderhub-service")?;
    let enabled = section.get("enabled").and_then(|e| e.as_bool()) == Some(true);
    if !enabled {
        return None;
    }
    let mut upstream = section.clone();
    if let Some(map) = upstream.as_mapping_mut() {
        map.remove("hubfleet");
    }
    let prefix = section
        .get("config")
        .and_then(|c| c.get("BinderHub"))
        .and_then(|b| b.get("image_prefix"))
        .and_then(|p| p.as_str());
    let mut notes = vec![
        "binderhub-service: on Kubernetes each repository becomes an image: building it needs repo2docker (BinderHub's build pods) and a container registry to push to; hubfleet's local pip builds do not run there. Install the upstream `binderhub-service` chart beside the hub with the values --binderhub-values writes (the section without `hubfleet:`).".to_owned(),
    ];
    match prefix {
        Some(prefix) => notes.push(format!(
            "binderhub-service: images will be pushed under `{prefix}` (config.BinderHub.image_prefix); give the chart the registry's credentials (buildPodsRegistryCredentials / config.DockerRegistry)"
        )),
        None => notes.push(
            "binderhub-service: config.BinderHub.image_prefix is not set: the upstream chart needs a registry to push to (e.g. `quay.io/<org>/binder-`)".to_owned(),
        ),
    }
    notes.push(
        "binderhub-service: the hub needs the service `binder` (hub.services.binder with an apiToken, as 2i2c's binder hubs set it) for the chart to launch servers through the REST API".to_owned(),
    );
    Some((notes, upstream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_values_drop_hubfleets_keys() {
        let values: serde_yaml_ng::Value = serde_yaml_ng::from_str(
            "binderhub-service:\n  enabled: true\n  config:\n    BinderHub:\n      image_prefix: quay.io/x/binder-\n  hubfleet:\n    build_timeout: 60\n",
        )
        .unwrap();
        let (notes, upstream) = kubernetes_binder(&values).unwrap();
        assert!(notes[0].contains("repo2docker"));
        assert!(notes[1].contains("quay.io/x/binder-"));
        assert!(upstream.get("hubfleet").is_none());
        assert_eq!(
            upstream["config"]["BinderHub"]["image_prefix"].as_str(),
            Some("quay.io/x/binder-")
        );
        let off: serde_yaml_ng::Value =
            serde_yaml_ng::from_str("binderhub-service:\n  enabled: false\n").unwrap();
        assert!(kubernetes_binder(&off).is_none());
    }

    /// Builds need an allow-list; anonymous launches need the opt-in besides.
    #[test]
    fn launches_need_an_allow_list_and_anonymous_ones_an_opt_in() {
        let venv = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(venv.path().join("bin")).unwrap();
        std::fs::write(venv.path().join("bin/python"), "").unwrap();
        let config = |binder: &str| {
            let yaml = format!(
                "hubfleet:\n  local:\n    python_env: {}\nbinderhub-service:\n  enabled: true\n{binder}",
                venv.path().display()
            );
            HubConfig::from_yaml_str(&yaml, "t.yaml").unwrap()
        };
        let logged_in = "  config:\n    BinderHub:\n      auth_enabled: true\n";
        let refused = binder_settings(&config(logged_in)).unwrap_err().to_string();
        assert!(refused.contains("allowed_specs"), "{refused}");
        let listed = "  hubfleet:\n    allowed_specs: ['^gh/my-org/']\n";
        let refused = binder_settings(&config(listed)).unwrap_err().to_string();
        assert!(refused.contains("allow_anonymous_launches"), "{refused}");
        assert!(binder_settings(&config(&format!("{logged_in}{listed}")))
            .unwrap()
            .is_some());
        let anonymous =
            "  hubfleet:\n    allowed_specs: ['^gh/my-org/']\n    allow_anonymous_launches: true\n";
        assert!(binder_settings(&config(anonymous)).unwrap().is_some());
    }

    /// Anonymous launches on a hub with system_users would leave a Unix account per visitor.
    #[test]
    fn anonymous_launches_with_system_users_are_refused() {
        let venv = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(venv.path().join("bin")).unwrap();
        std::fs::write(venv.path().join("bin/python"), "").unwrap();
        let yaml = format!(
            "hubfleet:\n  local:\n    python_env: {}\n    system_users: true\nbinderhub-service:\n  enabled: true\n  hubfleet:\n    allowed_specs: ['^gh/my-org/']\n    allow_anonymous_launches: true\n",
            venv.path().display()
        );
        let config = HubConfig::from_yaml_str(&yaml, "t.yaml").unwrap();
        let refused = binder_settings(&config).unwrap_err().to_string();
        assert!(
            refused.contains("system_users")
                && refused.contains("never removed")
                && refused.contains("auth_enabled: true"),
            "{refused}"
        );
    }
}
