//! What `serve` checks after the configuration and before it creates anything: the port is free
//! (it is bound here and kept), the directories it will make can be made, the auth_state key is
//! usable and the template overrides parse; with `proxy.https`, the redirect port is free (bound
//! and kept too) and a `manual` or `secret` certificate can be used. Every problem is reported
//! at once; only when there is none does the hub create its data directory and open its
//! database.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use hubfleet_config::HubConfig;
use hubfleet_hub::Settings;

/// Check everything; the bound listener when all is well (the redirect listener of
/// `proxy.https` goes into `settings.https`).
pub fn check(config: &HubConfig, settings: &mut Settings) -> Result<std::net::TcpListener> {
    let mut problems = Vec::new();
    let listener = match hubfleet_hub::bind(config.hubfleet.listen) {
        Ok(listener) => Some(listener),
        Err(e) => {
            problems.push(format!("hubfleet.listen: {e}"));
            None
        }
    };
    if let Some(https) = settings.https.as_mut() {
        if let Some(addr) = https.redirect_listen {
            match hubfleet_hub::https::bind_redirect(addr) {
                Ok(bound) => https.redirect_listener = Some(bound),
                Err(e) => problems.push(e.to_string()),
            }
        }
        if let Err(e) = hubfleet_hub::https::check_certificate(https) {
            problems.push(e.to_string());
        }
    }
    problems.extend(path_problems(config));
    if let Err(e) = auth_state_key(config) {
        problems.push(e);
    }
    if let Err(e) = hubfleet_hub::check_pages(&settings.pages) {
        problems.push(e.to_string());
    }
    match (listener, problems.is_empty()) {
        (Some(listener), true) => Ok(listener),
        _ => bail!(
            "the hub cannot start here; nothing was created:\n{}",
            problems
                .iter()
                .map(|p| format!("  {p}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// The directories the hub makes at start must be makeable; the data directory, when it
/// exists, must be the hub account's (its files are made private at every start).
fn path_problems(config: &HubConfig) -> Vec<String> {
    let data_dir = config.data_dir();
    let mut problems = Vec::new();
    let mut dirs: Vec<(&str, PathBuf)> = vec![("hubfleet.data_dir", data_dir.clone())];
    let local = &config.hubfleet.local;
    if let Some(homes) = &local.homes_dir {
        dirs.push(("hubfleet.local.homes_dir", config.resolve_path(homes)));
    }
    if let Some(shared) = &local.shared_dir {
        dirs.push(("hubfleet.local.shared_dir", config.resolve_path(shared)));
    }
    if let Some(parent) = config.sqlite_path().as_deref().and_then(Path::parent) {
        if !parent.starts_with(&data_dir) {
            dirs.push(("hub.db.url", parent.to_path_buf()));
        }
    }
    for (key, dir) in dirs {
        if let Err(why) = makeable_dir(&dir) {
            problems.push(format!("{key}: {why}"));
        }
    }
    if let Ok(meta) = std::fs::metadata(&data_dir) {
        let me = nix::unistd::geteuid().as_raw();
        if meta.is_dir() && meta.uid() != me {
            problems.push(format!(
                "hubfleet.data_dir: {} belongs to uid {}, not to the hub's account (uid {me}); the hub makes its files private at every start, so it must own the directory (`chown -R` it, or run the hub as its owner)",
                data_dir.display(),
                meta.uid()
            ));
        }
    }
    for (i, dir) in config.hub.template_paths.iter().enumerate() {
        let dir = config.resolve_path(dir);
        if !dir.is_dir() {
            problems.push(format!(
                "hub.templatePaths[{i}]: {} is not a directory",
                dir.display()
            ));
        }
    }
    problems
}

/// `dir` exists as a directory, or can be made: its nearest existing ancestor is a directory
/// this account may write to.
fn makeable_dir(dir: &Path) -> Result<(), String> {
    if dir.exists() {
        return if dir.is_dir() {
            Ok(())
        } else {
            Err(format!("{} exists and is not a directory", dir.display()))
        };
    }
    let Some(ancestor) = dir.ancestors().skip(1).find(|a| a.exists()) else {
        return Err(format!("{} cannot be made", dir.display()));
    };
    if !ancestor.is_dir() {
        return Err(format!(
            "{} cannot be made: {} is not a directory",
            dir.display(),
            ancestor.display()
        ));
    }
    let writable = nix::unistd::access(
        ancestor,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
    );
    match writable {
        Ok(()) => Ok(()),
        Err(e) => Err(format!(
            "{} cannot be made: this account may not write to {} ({e}); make it there first, or choose another path",
            dir.display(),
            ancestor.display()
        )),
    }
}

/// With `enable_auth_state` the key must be set; when set, it must be a valid key list.
fn auth_state_key(config: &HubConfig) -> Result<(), String> {
    let env = hubfleet_store::CRYPT_KEY_ENV;
    match config.hub_env(env).filter(|k| !k.trim().is_empty()) {
        Some(keys) => hubfleet_store::CryptKeeper::from_keys(&keys)
            .map(|_| ())
            .map_err(|e| format!("{env} (in the hub's environment or hub.extraEnv): {e}")),
        None if config.auth_settings().enable_auth_state => Err(format!(
            "enable_auth_state is true, but {env} is not set (in the hub's environment or in hub.extraEnv). \
             auth_state holds the identity provider's tokens and is only kept encrypted: make a key with \
             `openssl rand -hex 32` and keep it (stored auth_state cannot be read without it)"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_that_can_be_made() {
        let dir = tempfile::tempdir().unwrap();
        assert!(makeable_dir(dir.path()).is_ok());
        assert!(makeable_dir(&dir.path().join("a/b/c")).is_ok());
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(makeable_dir(&file)
            .unwrap_err()
            .contains("is not a directory"));
        assert!(makeable_dir(&file.join("below"))
            .unwrap_err()
            .contains("is not a directory"));
    }
}
