//! Checks made at start, before the hub opens its database or binds its port: users' servers
//! never run as root by accident, and with system users every program a server runs is
//! reachable by the servers' accounts.

use anyhow::{bail, Result};
use hubfleet_config::{HubConfig, SpawnerKind};

/// Stop with what to change when the config cannot run safely on this machine.
pub fn check(config: &HubConfig) -> Result<()> {
    check_kubernetes(config)?;
    // Pods run elsewhere, as the image's user: nothing of this machine's to check.
    if config.hubfleet.spawner == SpawnerKind::Kubernetes {
        return Ok(());
    }
    check_root(config, nix::unistd::geteuid().is_root())?;
    if config.hubfleet.local.system_users {
        check_programs(config)?;
    }
    Ok(())
}

/// A proxy in a pod of its own (`hubfleet.kubernetes.separate_proxy`) that the hub has no API
/// address for: a clear stop rather than a hub whose users' routes never reach the proxy.
fn check_kubernetes(config: &HubConfig) -> Result<()> {
    let drives_a_proxy = config.hub.config.configurable_http_proxy.api_url.is_some();
    if config.hubfleet.kubernetes.separate_proxy && !drives_a_proxy {
        bail!(
            "hubfleet.kubernetes.separate_proxy: the proxy runs in a pod of its own, but the hub does not know \
             its API: set hub.config.ConfigurableHTTPProxy.api_url (`hubfleet render k8s` writes it, with \
             the token as CONFIGPROXY_AUTH_TOKEN), or remove separate_proxy to run the proxy inside the hub's pod"
        );
    }
    Ok(())
}

fn check_root(config: &HubConfig, is_root: bool) -> Result<()> {
    let local = &config.hubfleet.local;
    if !is_root || local.system_users {
        return Ok(());
    }
    if !local.allow_root {
        bail!(
            "the hub runs as root and hubfleet.local.system_users is off, so every user's server would run as root. \
             Run the hub as an unprivileged user, or turn on `hubfleet.local.system_users: true` (each server runs as its own Unix account). \
             To run users' servers as root anyway (a machine or container of your own), set `hubfleet.local.allow_root: true`"
        );
    }
    tracing::warn!(
        "hubfleet.local.allow_root: the hub runs as root, so every user's server runs as root (jupyter-server with --allow-root) and can read and change everything on this machine, the hub's database included; turn on hubfleet.local.system_users to give each user an account of their own"
    );
    Ok(())
}

/// With system users, each server's program (and a Python environment's interpreter) must be
/// reachable by an account that owns nothing: else every start (or every kernel) fails later.
fn check_programs(config: &HubConfig) -> Result<()> {
    let mut settings = hubfleet_hub::Settings::new(config.hubfleet.listen, config.data_dir());
    settings.cmd = config.singleuser.cmd.clone();
    settings.python_env = config.python_env();
    settings.spawn_options = crate::env_cmd::spawn_options(config);
    for program in hubfleet_hub::profiles::server_programs(&settings) {
        if let Err(why) = hubfleet_spawn::system_user::check_runnable_by_accounts(
            &program.program,
            &program.search_path,
        ) {
            bail!(
                "{}: `{}` cannot be run by the servers' Unix accounts (hubfleet.local.system_users): {why}. \
                 Install it where every account can reach it (for Python: under /usr or /opt, and make the environment with that Python), \
                 or let other accounts through (`chmod {} {}`)",
                program.key,
                program.program,
                why.needs,
                why.blocked_at.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> HubConfig {
        HubConfig::from_yaml_str(yaml, "t.yaml").unwrap()
    }

    #[test]
    fn a_separate_proxy_needs_its_api_url() {
        assert!(check_kubernetes(&config("")).is_ok());
        assert!(check_kubernetes(&config("hubfleet: {spawner: kubernetes}")).is_ok());
        let err = check_kubernetes(&config("hubfleet: {kubernetes: {separate_proxy: true}}"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("hubfleet.kubernetes.separate_proxy:"),
            "{err}"
        );
        assert!(check_kubernetes(&config(
            "hubfleet: {kubernetes: {separate_proxy: true}}\nhub: {config: {ConfigurableHTTPProxy: {api_url: 'http://proxy-api:8001', should_start: false}}}"
        ))
        .is_ok());
    }

    #[test]
    fn root_needs_system_users_or_the_opt_in() {
        let plain = config("");
        assert!(check_root(&plain, false).is_ok());
        let err = check_root(&plain, true).unwrap_err().to_string();
        assert!(
            err.contains("Run the hub as an unprivileged user")
                && err.contains("hubfleet.local.system_users: true")
                && err.contains("hubfleet.local.allow_root: true"),
            "{err}"
        );
        assert!(check_root(&config("hubfleet:\n  local:\n    allow_root: true\n"), true).is_ok());
        assert!(check_root(
            &config("hubfleet:\n  local:\n    system_users: true\n"),
            true
        )
        .is_ok());
    }
}
