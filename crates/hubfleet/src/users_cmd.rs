//! `hubfleet users`: the operator's view of the hub's accounts, straight on its database (the
//! hub may be running): list them with their admin and pending status, add one (or set a
//! password), remove one, make or unmake an admin, approve a sign-up.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use hubfleet_config::HubConfig;
use hubfleet_store::{Phase, Store, StoreError, User};

#[derive(Subcommand)]
pub enum UsersAction {
    /// Create a user (or reset their password) and print a new password.
    Add {
        name: String,
        #[arg(long)]
        admin: bool,
        /// Read the password from standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users, with admins and sign-ups waiting for approval marked.
    List,
    /// Delete a user (their servers' records, tokens and sessions; not their home), or discard
    /// a pending sign-up.
    Remove {
        name: String,
        /// Stop the user's running servers first (else a running server refuses the removal).
        #[arg(long)]
        force: bool,
    },
    /// Make a user an admin, or with --revoke take it away.
    Admin {
        name: String,
        #[arg(long)]
        revoke: bool,
    },
    /// Approve a pending sign-up (native accounts): the account is created with its password.
    Approve { name: String },
    /// Write `users.json` (users, groups, admin flags, roles) and `homes.tar.zst` (homes,
    /// owners and modes kept) into a directory, for `hubfleet import` on another hub.
    Export {
        /// The directory to write (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

pub async fn run(config_paths: &[PathBuf], data_dir: &Path, action: UsersAction) -> Result<()> {
    let config = if config_paths.is_empty() {
        HubConfig::default_for_demo(&std::path::absolute(data_dir)?)
    } else {
        crate::check_cmd::load(config_paths)?
    };
    let store = crate::open_store(&config).await?;
    let result = act(&config, &store, action).await;
    store.close().await;
    result
}

async fn act(config: &HubConfig, store: &Store, action: UsersAction) -> Result<()> {
    match action {
        UsersAction::List => list(store).await,
        UsersAction::Add {
            name,
            admin,
            password_stdin,
        } => add(store, &name, admin, password_stdin).await,
        UsersAction::Remove { name, force } => remove(config, store, &name, force).await,
        UsersAction::Admin { name, revoke } => set_admin(config, store, &name, !revoke).await,
        UsersAction::Approve { name } => approve(store, &name).await,
        UsersAction::Export { out } => export(config, store, &out).await,
    }
}

fn normalize(name: &str) -> Result<String> {
    Ok(hubfleet_auth::normalize_username(name)?)
}

/// The user `name`, or an error that says how to find the right name.
async fn existing_user(store: &Store, name: &str) -> Result<User> {
    if let Some(user) = store.user_by_name(name).await? {
        return Ok(user);
    }
    if store.signup_exists(name).await? {
        bail!(
            "{name} is a sign-up waiting for approval, not a user yet: approve it with `hubfleet users approve {name}`"
        );
    }
    bail!("there is no user named {name}; `hubfleet users list` shows them")
}

async fn export(config: &HubConfig, store: &Store, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    crate::hub_data::write_people(store, config, out).await?;
    println!("\n{}", crate::hub_data::restore_instructions());
    Ok(())
}

async fn list(store: &Store) -> Result<()> {
    for user in store.list_users().await? {
        println!("{}{}", user.name, if user.admin { " (admin)" } else { "" });
    }
    for signup in store.signups().await? {
        println!(
            "{} (pending approval, signed up {})",
            signup.name,
            signup.created.format("%Y-%m-%d %H:%M UTC")
        );
    }
    Ok(())
}

async fn add(store: &Store, name: &str, admin: bool, password_stdin: bool) -> Result<()> {
    let name = normalize(name)?;
    let (password, generated) = if password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        (line.trim_end_matches(['\n', '\r']).to_string(), false)
    } else {
        (crate::new_password(), true)
    };
    if password.len() < 8 {
        bail!("passwords must have at least 8 characters");
    }
    let user = match store.user_by_name(&name).await? {
        Some(user) => user,
        None => store.create_user(&name, admin).await?,
    };
    if admin && !user.admin {
        store.set_admin(user.id, true).await?;
    }
    let hash = hubfleet_auth::hash_password(&password).await?;
    store.set_password_hash(user.id, Some(&hash)).await?;
    if generated {
        println!("{name}: {password}");
    } else {
        println!("{name}: password set");
    }
    Ok(())
}

/// A server's name for people: `default` or `named`.
fn server_label(name: &str) -> String {
    if name.is_empty() {
        "the default server".to_string()
    } else {
        format!("the server `{name}`")
    }
}

async fn remove(config: &HubConfig, store: &Store, name: &str, force: bool) -> Result<()> {
    let name = normalize(name)?;
    let Some(user) = store.user_by_name(&name).await? else {
        if store.discard_signup(&name).await? {
            println!("{name}: pending sign-up discarded");
            return Ok(());
        }
        bail!("there is no user named {name}; `hubfleet users list` shows them");
    };
    let servers = store.servers_of(user.id).await?;
    if let Some(busy) = servers
        .iter()
        .find(|s| matches!(s.phase, Phase::Starting | Phase::Stopping))
    {
        bail!(
            "{name}'s {} is {}; nothing was removed. Try again when it is done",
            server_label(&busy.name),
            busy.phase.as_str()
        );
    }
    let running: Vec<_> = servers.iter().filter(|s| s.phase == Phase::Ready).collect();
    if !running.is_empty() && !force {
        let labels: Vec<String> = running.iter().map(|s| server_label(&s.name)).collect();
        bail!(
            "{name}'s {} {} running; nothing was removed. Stop {} first (the admin page, or \
             `DELETE /hub/api/users/{name}`, which stops the servers and removes the user), or \
             pass --force to stop {} here",
            labels.join(" and "),
            if labels.len() == 1 { "is" } else { "are" },
            if labels.len() == 1 { "it" } else { "them" },
            if labels.len() == 1 { "it" } else { "them" },
        );
    }
    if !running.is_empty() {
        // The hub's own steps: process ended, its cgroup and mounts undone, its token and OAuth
        // client deleted, the row stopped. A running hub drops the route at its next check.
        let lifecycle = lifecycle(config, store)?;
        for server in running {
            lifecycle
                .stop(&user, &server.name)
                .await
                .with_context(|| format!("stopping {name}'s {}", server_label(&server.name)))?;
            println!("{name}: stopped {}", server_label(&server.name));
        }
    }
    if !store.delete_user_if_stopped(user.id).await? {
        bail!(
            "a server of {name} was started meanwhile; nothing was removed. Try again (with --force to stop it)"
        );
    }
    println!("{name}: removed (their home and, with system_users, their Unix account are kept)");
    if is_configured_admin(config, &name) {
        eprintln!(
            "warning: {name} is in admin_users, so the hub creates it again at its next start; remove it from admin_users too"
        );
    }
    Ok(())
}

fn is_configured_admin(config: &HubConfig, name: &str) -> bool {
    config
        .auth_settings()
        .admin_users
        .iter()
        .any(|admin| admin.trim().to_lowercase() == name)
}

/// The lifecycle of the hub's servers, as the hub builds it (no routes: this process serves
/// nothing).
fn lifecycle(config: &HubConfig, store: &Store) -> Result<hubfleet_hub::lifecycle::Lifecycle> {
    let settings = Arc::new(crate::settings(config)?);
    let spawner = Arc::new(crate::local_spawner(config));
    Ok(hubfleet_hub::lifecycle::Lifecycle::new(
        store.clone(),
        spawner,
        hubfleet_proxy::RouteTable::new(),
        settings,
    ))
}

async fn set_admin(config: &HubConfig, store: &Store, name: &str, admin: bool) -> Result<()> {
    let name = normalize(name)?;
    let user = existing_user(store, &name).await?;
    if user.admin == admin {
        println!(
            "{name}: already {}",
            if admin { "an admin" } else { "not an admin" }
        );
    } else {
        store.set_admin(user.id, admin).await?;
        println!(
            "{name}: {}",
            if admin {
                "now an admin"
            } else {
                "no longer an admin"
            }
        );
    }
    if !admin && is_configured_admin(config, &name) {
        eprintln!(
            "warning: {name} is in admin_users, so the hub makes it an admin again at its next start; remove it from admin_users too"
        );
    }
    Ok(())
}

async fn approve(store: &Store, name: &str) -> Result<()> {
    let name = normalize(name)?;
    match store.approve_signup(&name).await {
        Ok(Some(_)) => {
            println!("{name}: approved; they can log in with the password they chose");
            Ok(())
        }
        Ok(None) if store.user_by_name(&name).await?.is_some() => {
            bail!("{name} is already a user; there is no sign-up of theirs to approve")
        }
        Ok(None) => bail!(
            "there is no pending sign-up named {name}; `hubfleet users list` shows them"
        ),
        Err(StoreError::Conflict { .. }) => bail!(
            "a user named {name} exists by now, so their sign-up cannot make the account; the sign-up was discarded"
        ),
        Err(e) => Err(e.into()),
    }
}
