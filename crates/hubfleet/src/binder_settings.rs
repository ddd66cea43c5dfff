//! `binderhub-service:` as the hub's [`BinderSettings`].

use std::time::Duration;

use anyhow::{bail, Result};
use hubfleet_config::HubConfig;
use hubfleet_hub::binder::spec::SpecRules;
use hubfleet_hub::binder::BinderSettings;

pub fn binder_settings(config: &HubConfig) -> Result<Option<BinderSettings>> {
    let binder = &config.binderhub_service;
    if !binder.enabled {
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
    }))
}
