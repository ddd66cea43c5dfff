//! `hubfleet import` (a `users.json` and `homes.tar.zst` from `hubfleet export`) and
//! `hubfleet migrate from-jupyterhub` (a running upstream JupyterHub, through its REST API).
//! Both read what the source has into a [`UsersFile`], compare it with the hub's store and
//! config ([`plan`]), print the plan and apply it unless `--dry-run`: one diff engine, so a
//! second run finds nothing to change.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use hubfleet_config::{AuthenticatorKind, HubConfig};
use hubfleet_store::{RoleMembers, Store, StoredRole};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::hub_data::{self, GroupRecord, RoleRecord, UserRecord, UsersFile, DEFAULT_ROLES};

/// The file that roles go to when the hub's config does not have them as the source does:
/// a config layer (`--config hub.yaml --config imported-roles.yaml`), since a hub loads its
/// roles from `hub.loadRoles` at every start and drops the others, as upstream does.
const ROLES_FILE: &str = "imported-roles.yaml";

#[derive(Args)]
pub struct ImportArgs {
    /// The directory `hubfleet export` wrote (its `users.json`, and `homes.tar.zst` if there).
    #[arg(long)]
    from: PathBuf,
    /// The hub's config file; several are layered as with `serve`.
    #[arg(long, short, required = true)]
    config: Vec<PathBuf>,
    /// Print what would change, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Where roles go for `hub.loadRoles` (default: `imported-roles.yaml` beside the first
    /// config file).
    #[arg(long)]
    roles_file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum MigrateFrom {
    /// Copy users, groups, memberships, admin flags and custom roles' holders from a running
    /// JupyterHub (2.0 or later) through its REST API. Tokens and passwords are not copied.
    FromJupyterhub(FromJupyterHubArgs),
}

#[derive(Args)]
pub struct FromJupyterHubArgs {
    /// The JupyterHub's address, e.g. https://hub.example.org (or with a base URL).
    #[arg(long)]
    url: String,
    /// An API token of the JupyterHub with the scopes `list:users`, `read:users`,
    /// `read:roles:users`, `list:groups`, `read:groups`, `read:roles:groups` (an admin's
    /// token has them).
    #[arg(long, env = "JUPYTERHUB_API_TOKEN", hide_env_values = true)]
    token: String,
    /// The hub's config file; several are layered as with `serve`.
    #[arg(long, short, required = true)]
    config: Vec<PathBuf>,
    /// Print what would change, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Where roles go for `hub.loadRoles` (default: `imported-roles.yaml` beside the first
    /// config file).
    #[arg(long)]
    roles_file: Option<PathBuf>,
    /// Items asked for per page (the JupyterHub may give fewer: `api_page_max_limit`).
    #[arg(long, default_value_t = 200)]
    page_size: u32,
}

pub async fn import(args: ImportArgs) -> Result<()> {
    let users_path = args.from.join("users.json");
    let homes_path = args.from.join("homes.tar.zst");
    if !users_path.exists() && !homes_path.exists() {
        bail!(
            "{} has neither users.json nor homes.tar.zst; give --from the directory that \
             `hubfleet export --out DIR` wrote",
            args.from.display()
        );
    }
    let config = crate::check_cmd::load(&args.config)?;
    let roles_file = roles_file(&args.config, args.roles_file.as_deref());
    if users_path.exists() {
        let source = hub_data::read_users_json(&users_path)?;
        let undefined = hub_data::undefined_names(&source);
        if !undefined.is_empty() {
            bail!(
                "{}: these users are named but not listed in `users`: {}; nothing was changed",
                users_path.display(),
                undefined.join(", ")
            );
        }
        let store = crate::open_store(&config).await?;
        let result = sync(
            &config,
            &args.config,
            &store,
            &source,
            &roles_file,
            args.dry_run,
        )
        .await;
        store.close().await;
        result?;
    } else {
        println!(
            "no users.json in {}: users left as they are",
            args.from.display()
        );
    }
    if homes_path.exists() {
        let homes_dir = hub_data::homes_dir(&config);
        if args.dry_run {
            let summary = hub_data::check_homes_archive(&homes_path)?;
            println!(
                "homes: would restore {} into {} (files there would be replaced by the archive's)",
                hub_data::describe(&summary),
                homes_dir.display()
            );
        } else {
            let spinner = spinner("restoring homes");
            // With system_users a home goes to its user's account on this machine (uids
            // differ between machines); homes of users without one yet go to root until the
            // account is made at their first start. Never the archive's uids: here they may
            // be someone else's account.
            let accounts = crate::private_files::system_accounts(&config);
            let account_of = |home: &str| {
                let name = hubfleet_spawn::system_user::account_name(home);
                match accounts.usable(&name) {
                    Ok(account) => account.map(|a| (a.uid.as_raw(), a.gid.as_raw())),
                    Err(e) => {
                        eprintln!("warning: looking up {name}: {e}; {home}'s files go to root until {home}'s first start");
                        None
                    }
                }
            };
            let owners = if config.hubfleet.local.system_users {
                hub_data::RestoredOwners::ByHome(&account_of)
            } else {
                hub_data::RestoredOwners::HomesDirOwner
            };
            let summary = hub_data::restore_homes(&homes_path, &homes_dir, owners)?;
            spinner.finish_and_clear();
            println!(
                "homes: restored {} into {}{}",
                hub_data::describe(&summary),
                homes_dir.display(),
                if !nix::unistd::geteuid().is_root() {
                    " (owned by you: run as root to give them to their users)"
                } else if config.hubfleet.local.system_users {
                    " (owned by the users' accounts)"
                } else {
                    " (owned by the homes directory's owner)"
                }
            );
            if !summary.skipped.is_empty() {
                for skipped in &summary.skipped {
                    eprintln!("  {skipped}");
                }
                bail!(
                    "{} of the archive's entries were not restored (listed above); the others \
                     were. Move away what is in their way on disk and run the import again",
                    summary.skipped.len()
                );
            }
        }
    } else {
        println!(
            "no homes.tar.zst in {}: homes left as they are",
            args.from.display()
        );
    }
    if args.dry_run {
        println!("dry run: nothing was changed");
    }
    Ok(())
}

pub async fn migrate(from: MigrateFrom) -> Result<()> {
    let MigrateFrom::FromJupyterhub(args) = from;
    let config = crate::check_cmd::load(&args.config)?;
    let roles_file = roles_file(&args.config, args.roles_file.as_deref());
    let upstream = Upstream::new(&args.url, &args.token, args.page_size)?;
    let source = upstream.read().await?;
    println!(
        "{}: {}, {}, {}, {} held",
        upstream.base,
        plural(source.users.len(), "user"),
        plural(source.users.iter().filter(|u| u.admin).count(), "admin"),
        plural(source.groups.len(), "group"),
        plural(source.roles.len(), "custom role"),
    );
    let store = crate::open_store(&config).await?;
    let result = sync(
        &config,
        &args.config,
        &store,
        &source,
        &roles_file,
        args.dry_run,
    )
    .await;
    store.close().await;
    result?;
    if args.dry_run {
        println!("dry run: nothing was changed");
    }
    println!("{}", login_advice(&config));
    Ok(())
}

/// `1 user`, `2 users`.
fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

fn roles_file(configs: &[PathBuf], given: Option<&Path>) -> PathBuf {
    match given {
        Some(path) => path.to_path_buf(),
        None => configs
            .first()
            .and_then(|c| c.parent())
            .unwrap_or(Path::new("."))
            .join(ROLES_FILE),
    }
}

/// Plan, print, apply.
async fn sync(
    config: &HubConfig,
    config_paths: &[PathBuf],
    store: &Store,
    source: &UsersFile,
    roles_file: &Path,
    dry_run: bool,
) -> Result<()> {
    let current = hub_data::read_users(store).await?;
    let plan = plan(source, &current, config, roles_file)?;
    for warning in &plan.warnings {
        eprintln!("warning: {warning}");
    }
    if plan.is_empty() {
        println!("nothing to change: the hub already has these users, groups and roles");
    } else {
        println!("{}:", if dry_run { "would change" } else { "changing" });
        for line in plan.describe() {
            println!("  {line}");
        }
        if !dry_run {
            apply(store, &plan).await?;
            println!("done: {}", plan.summary());
        }
    }
    if !plan.roles_in_config.is_empty() && !layered(config_paths, roles_file) {
        println!(
            "the hub loads roles from its config at each start: run it with `--config {}` \
             after its other config files",
            roles_file.display()
        );
    }
    Ok(())
}

/// Whether the roles file is among the config files given.
fn layered(config_paths: &[PathBuf], roles_file: &Path) -> bool {
    let wanted = std::path::absolute(roles_file).ok();
    config_paths
        .iter()
        .any(|path| std::path::absolute(path).ok() == wanted)
}

/// What to change so that the hub has the source's users, groups and roles.
#[derive(Debug, Default)]
pub struct Plan {
    pub create_users: Vec<UserRecord>,
    /// `(user, admin)`.
    pub set_admin: Vec<(String, bool)>,
    pub create_groups: Vec<GroupRecord>,
    pub set_properties: Vec<GroupRecord>,
    /// `(group, users to add, users to remove)`.
    pub members: Vec<(String, Vec<String>, Vec<String>)>,
    /// Roles to store with exactly these holders (scopes resolved).
    pub put_roles: Vec<RoleRecord>,
    /// Every custom role of the source, as `hub.loadRoles` must have it.
    pub roles_in_config: Vec<RoleRecord>,
    /// Write the roles file (the config does not have the roles as the source does and the
    /// file does not say so yet).
    pub write_roles_file: Option<PathBuf>,
    pub warnings: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create_users.is_empty()
            && self.set_admin.is_empty()
            && self.create_groups.is_empty()
            && self.set_properties.is_empty()
            && self.members.is_empty()
            && self.put_roles.is_empty()
            && self.write_roles_file.is_none()
    }

    /// One line per change, long lists shortened.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let admins: Vec<String> = names(self.create_users.iter().filter(|u| u.admin));
        let others: Vec<String> = names(self.create_users.iter().filter(|u| !u.admin));
        if !admins.is_empty() {
            lines.push(format!("create {} (admin)", counted(&admins, "user")));
        }
        if !others.is_empty() {
            lines.push(format!("create {}", counted(&others, "user")));
        }
        for (user, admin) in &self.set_admin {
            lines.push(format!(
                "{} {user} an admin",
                if *admin { "make" } else { "no longer make" }
            ));
        }
        for group in &self.create_groups {
            lines.push(format!(
                "create group {} with {}",
                group.name,
                counted(&group.users, "member")
            ));
        }
        for group in &self.set_properties {
            lines.push(format!(
                "set group {}'s properties to {}",
                group.name,
                Value::Object(group.properties.clone())
            ));
        }
        for (group, add, remove) in &self.members {
            if !add.is_empty() {
                lines.push(format!("add to group {group}: {}", counted(add, "user")));
            }
            if !remove.is_empty() {
                lines.push(format!(
                    "remove from group {group}: {}",
                    counted(remove, "user")
                ));
            }
        }
        for role in &self.put_roles {
            lines.push(format!(
                "give role {} to {} and {}",
                role.name,
                counted(&role.users, "user"),
                counted(&role.groups, "group")
            ));
        }
        if let Some(path) = &self.write_roles_file {
            let names: Vec<String> = names_of(&self.roles_in_config);
            lines.push(format!(
                "write {} to {} (hub.loadRoles)",
                counted(&names, "role"),
                path.display()
            ));
        }
        lines
    }

    pub fn summary(&self) -> String {
        let memberships: usize = self
            .members
            .iter()
            .map(|(_, add, remove)| add.len() + remove.len())
            .sum();
        let mut parts: Vec<String> = [
            (self.create_users.len(), "user", "created"),
            (self.set_admin.len(), "admin flag", "set"),
            (self.create_groups.len(), "group", "created"),
            (self.set_properties.len(), "group property set", "replaced"),
            (memberships, "membership", "changed"),
            (self.put_roles.len(), "role", "given"),
        ]
        .into_iter()
        .filter(|(n, _, _)| *n > 0)
        .map(|(n, what, done)| format!("{} {done}", plural(n, what)))
        .collect();
        if self.write_roles_file.is_some() {
            parts.push("roles file written".into());
        }
        parts.join(", ")
    }
}

fn names<'a>(users: impl Iterator<Item = &'a UserRecord>) -> Vec<String> {
    users.map(|u| u.name.clone()).collect()
}

fn names_of(roles: &[RoleRecord]) -> Vec<String> {
    roles.iter().map(|r| r.name.clone()).collect()
}

/// `3 users (a, b, c)`; past 8 names, the first 8 and `…`.
fn counted(names: &[String], what: &str) -> String {
    let shown: Vec<&str> = names.iter().take(8).map(String::as_str).collect();
    let more = if names.len() > 8 { ", …" } else { "" };
    format!(
        "{} {what}{}{}",
        names.len(),
        if names.len() == 1 { "" } else { "s" },
        if names.is_empty() {
            String::new()
        } else {
            format!(" ({}{more})", shown.join(", "))
        }
    )
}

fn sorted(list: &[String]) -> Vec<String> {
    let set: BTreeSet<&String> = list.iter().collect();
    set.into_iter().cloned().collect()
}

/// Compare the source with the hub (its store as `current`, its config's `hub.loadRoles`).
/// Users only in the hub are left alone; the source's groups and roles get exactly the
/// source's members.
pub fn plan(
    source: &UsersFile,
    current: &UsersFile,
    config: &HubConfig,
    roles_file: &Path,
) -> Result<Plan> {
    let mut plan = Plan::default();
    let existing: BTreeMap<&str, &UserRecord> =
        current.users.iter().map(|u| (u.name.as_str(), u)).collect();
    let mut known: BTreeSet<String> = existing.keys().map(|n| n.to_string()).collect();
    for user in &source.users {
        if hubfleet_auth::normalize_username(&user.name)
            .ok()
            .as_deref()
            != Some(&user.name)
        {
            plan.warnings.push(format!(
                "user `{}` left out: hubfleet names are lowercase, without `/` or a leading `.`",
                user.name
            ));
            continue;
        }
        match existing.get(user.name.as_str()) {
            None => plan.create_users.push(user.clone()),
            Some(have) if have.admin != user.admin => {
                plan.set_admin.push((user.name.clone(), user.admin))
            }
            Some(_) => {}
        }
        known.insert(user.name.clone());
    }
    let groups: BTreeMap<&str, &GroupRecord> = current
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g))
        .collect();
    for group in &source.groups {
        let mut wanted = sorted(&group.users);
        wanted.retain(|u| {
            let ok = known.contains(u);
            if !ok {
                plan.warnings.push(format!(
                    "group {}: member `{u}` left out (not a user of the source)",
                    group.name
                ));
            }
            ok
        });
        match groups.get(group.name.as_str()) {
            None => plan.create_groups.push(GroupRecord {
                users: wanted,
                ..group.clone()
            }),
            Some(have) => {
                if have.properties != group.properties {
                    plan.set_properties.push(group.clone());
                }
                let have_users = sorted(&have.users);
                let add: Vec<String> = wanted
                    .iter()
                    .filter(|u| !have_users.contains(u))
                    .cloned()
                    .collect();
                let remove: Vec<String> = have_users
                    .iter()
                    .filter(|u| !wanted.contains(u))
                    .cloned()
                    .collect();
                if !add.is_empty() || !remove.is_empty() {
                    plan.members.push((group.name.clone(), add, remove));
                }
            }
        }
    }
    let stored: BTreeMap<&str, &RoleRecord> =
        current.roles.iter().map(|r| (r.name.as_str(), r)).collect();
    for role in &source.roles {
        if DEFAULT_ROLES.contains(&role.name.as_str()) {
            continue;
        }
        let configured = config.hub.load_roles.get(&role.name);
        let scopes = match (&role.scopes, configured) {
            (Some(scopes), _) => scopes.clone(),
            (None, Some(configured)) => configured.scopes.clone(),
            (None, None) => match stored.get(role.name.as_str()) {
                Some(have) => have.scopes.clone().unwrap_or_default(),
                None => {
                    plan.warnings.push(format!(
                        "role {}: its scopes are not known (JupyterHub's API does not show them) \
                         and hub.loadRoles does not define it: its holders are copied, but it \
                         grants nothing until you add its `scopes` (from your jupyterhub_config.py \
                         or values.yaml) to hub.loadRoles.{} in {}",
                        role.name,
                        role.name,
                        roles_file.display()
                    ));
                    Vec::new()
                }
            },
        };
        let description = if role.description.is_empty() {
            configured
                .and_then(|c| c.description.clone())
                .unwrap_or_default()
        } else {
            role.description.clone()
        };
        let mut users = sorted(&role.users);
        users.retain(|u| known.contains(u));
        let group_names: BTreeSet<&str> = source
            .groups
            .iter()
            .map(|g| g.name.as_str())
            .chain(current.groups.iter().map(|g| g.name.as_str()))
            .collect();
        let mut role_groups = sorted(&role.groups);
        role_groups.retain(|g| group_names.contains(g.as_str()));
        let wanted = RoleRecord {
            name: role.name.clone(),
            description,
            scopes: Some(sorted(&scopes)),
            users,
            groups: role_groups,
        };
        let in_store = stored.get(role.name.as_str()).map(|have| RoleRecord {
            scopes: have.scopes.as_deref().map(sorted),
            users: sorted(&have.users),
            groups: sorted(&have.groups),
            ..(*have).clone()
        });
        if in_store.as_ref() != Some(&wanted) {
            plan.put_roles.push(wanted.clone());
        }
        plan.roles_in_config.push(wanted);
    }
    if !plan.roles_in_config.is_empty() {
        let configured_as_wanted = plan.roles_in_config.iter().all(|role| {
            config.hub.load_roles.get(&role.name).is_some_and(|c| {
                sorted(&c.scopes) == role.scopes.clone().unwrap_or_default()
                    && sorted(&c.users) == role.users
                    && sorted(&c.groups) == role.groups
                    && c.description.clone().unwrap_or_default() == role.description
            })
        });
        let file_as_wanted = std::fs::read_to_string(roles_file).ok()
            == Some(roles_yaml(&plan.roles_in_config, roles_file)?);
        if !configured_as_wanted && !file_as_wanted {
            plan.write_roles_file = Some(roles_file.to_path_buf());
        }
    }
    Ok(plan)
}

/// The roles file: a config layer with `hub.loadRoles` (other roles it already had kept).
fn roles_yaml(roles: &[RoleRecord], path: &Path) -> Result<String> {
    let mut load_roles = serde_yaml_ng::Mapping::new();
    if let Ok(text) = std::fs::read_to_string(path) {
        let old: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
            .with_context(|| format!("{}: not YAML; move it away", path.display()))?;
        if let Some(serde_yaml_ng::Value::Mapping(old)) =
            old.get("hub").and_then(|hub| hub.get("loadRoles"))
        {
            load_roles = old.clone();
        }
    }
    for role in roles {
        let value = serde_json::json!({
            "description": role.description,
            "scopes": role.scopes.clone().unwrap_or_default(),
            "users": role.users,
            "groups": role.groups,
        });
        load_roles.insert(
            serde_yaml_ng::Value::String(role.name.clone()),
            serde_yaml_ng::to_value(value)?,
        );
    }
    let doc = serde_json::json!({ "hub": { "loadRoles": load_roles } });
    Ok(format!(
        "# Roles copied by `hubfleet import` / `hubfleet migrate`: a config layer. Give it after\n\
         # the hub's other config files: hubfleet serve --config hub.yaml --config {}\n{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        serde_yaml_ng::to_string(&doc)?
    ))
}

/// Make the plan true, with a progress bar on a terminal.
async fn apply(store: &Store, plan: &Plan) -> Result<()> {
    let steps = plan.create_users.len()
        + plan.set_admin.len()
        + plan.create_groups.len()
        + plan.set_properties.len()
        + plan.members.len()
        + plan.put_roles.len();
    let progress = ProgressBar::new(steps as u64).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress.set_message("applying");
    for admin in [true, false] {
        let batch: Vec<String> = names(plan.create_users.iter().filter(|u| u.admin == admin));
        for chunk in batch.chunks(100) {
            store.create_users(chunk, admin).await?;
            progress.inc(chunk.len() as u64);
        }
    }
    for (name, admin) in &plan.set_admin {
        let user = store
            .user_by_name(name)
            .await?
            .with_context(|| format!("user {name} vanished while importing"))?;
        store.set_admin(user.id, *admin).await?;
        progress.inc(1);
    }
    for group in &plan.create_groups {
        store
            .create_group(&group.name, &group.users)
            .await
            .with_context(|| format!("creating group {}", group.name))?;
        if !group.properties.is_empty() {
            store
                .set_group_properties(&group.name, &group.properties)
                .await?;
        }
        progress.inc(1);
    }
    for group in &plan.set_properties {
        store
            .set_group_properties(&group.name, &group.properties)
            .await?;
        progress.inc(1);
    }
    for (group, add, remove) in &plan.members {
        store
            .add_group_members(group, add)
            .await
            .with_context(|| format!("adding members to group {group}"))?;
        store
            .remove_group_members(group, remove)
            .await
            .with_context(|| format!("removing members from group {group}"))?;
        progress.inc(1);
    }
    if !plan.put_roles.is_empty() {
        // Services holding a role are the config's, kept as they are.
        let services: BTreeMap<String, Vec<String>> = store
            .roles_with_members()
            .await?
            .into_iter()
            .map(|(role, members)| (role.name, members.services))
            .collect();
        for role in &plan.put_roles {
            store
                .put_role(
                    &StoredRole {
                        name: role.name.clone(),
                        description: role.description.clone(),
                        scopes: role.scopes.clone().unwrap_or_default(),
                    },
                    &RoleMembers {
                        users: role.users.clone(),
                        groups: role.groups.clone(),
                        services: services.get(&role.name).cloned().unwrap_or_default(),
                    },
                )
                .await?;
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    if let Some(path) = &plan.write_roles_file {
        let text = roles_yaml(&plan.roles_in_config, path)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// How people log in after a migration, for the hub's authenticator.
fn login_advice(config: &HubConfig) -> String {
    let kind = config.hub.config.jupyterhub.authenticator_class;
    let how = match kind {
        AuthenticatorKind::Native => {
            "this hub keeps its own passwords (native): give each person one with \
             `hubfleet users add NAME` (it prints a new password) and send it to them; they \
             can change it after logging in"
        }
        AuthenticatorKind::Dummy | AuthenticatorKind::SharedPassword => {
            "people log in with the same username (and this hub's password, if it has one)"
        }
        AuthenticatorKind::Tmp => {
            "this hub gives each visitor a new temporary user: the copied users cannot log in"
        }
        AuthenticatorKind::Null => {
            "nobody logs in to this hub (null authenticator): make new API tokens for the \
             services that used the old ones"
        }
        _ if kind.is_oauth() => {
            "people log in as before through the same identity provider: their usernames are \
             the same identities, as long as this hub's OAuth settings (username claim, allowed \
             organizations) match the old hub's"
        }
        _ => "people log in through this hub's authenticator with the same usernames",
    };
    format!(
        "Tokens and passwords were not copied: API tokens must be made again (the /hub/token \
         page). Logging in: {how}."
    )
}

fn spinner(message: &'static str) -> ProgressBar {
    let spinner = ProgressBar::new_spinner();
    spinner.set_message(message);
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner
}

/// The scopes `hubfleet migrate from-jupyterhub` reads with.
const NEEDED_SCOPES: [&str; 6] = [
    "list:users",
    "read:users",
    "read:roles:users",
    "list:groups",
    "read:groups",
    "read:roles:groups",
];

/// A running JupyterHub's REST API.
struct Upstream {
    /// Where `/hub/api` is below: `https://hub.example.org` or `…/base`.
    base: String,
    token: String,
    page_size: u32,
    client: reqwest::Client,
}

impl Upstream {
    fn new(url: &str, token: &str, page_size: u32) -> Result<Upstream> {
        let parsed = url::Url::parse(url).with_context(|| {
            format!("--url {url}: not a URL; give the hub's address, e.g. https://hub.example.org")
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!("--url {url}: give an http:// or https:// address");
        }
        let mut base = url.trim_end_matches('/').to_string();
        for suffix in ["/hub/api", "/hub"] {
            if let Some(stripped) = base.strip_suffix(suffix) {
                base = stripped.to_string();
                break;
            }
        }
        if token.trim().is_empty() {
            bail!("--token is empty: give an API token of the JupyterHub (an admin's, from its /hub/token page)");
        }
        Ok(Upstream {
            base,
            token: token.trim().to_string(),
            page_size: page_size.max(1),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
        })
    }

    async fn get(&self, path: &str) -> Result<(reqwest::StatusCode, Value)> {
        let url = format!("{}/hub/api{path}", self.base);
        let response = self
            .client
            .get(&url)
            .header("Authorization", format!("token {}", self.token))
            .header("Accept", "application/jupyterhub-pagination+json")
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot reach {url}: {e}; check --url (the JupyterHub's public address)"
                )
            })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).map_err(|_| {
            anyhow::anyhow!(
                "{url} answered {status} with something other than JSON: is --url a \
                 JupyterHub? (its /hub/api answers with its version)"
            )
        })?;
        Ok((status, body))
    }

    /// Everything the migration copies.
    async fn read(&self) -> Result<UsersFile> {
        let (status, about) = self.get("/").await?;
        let version = about.get("version").and_then(Value::as_str);
        if !status.is_success() || version.is_none() {
            bail!(
                "{}/hub/api answered {status} without a JupyterHub version: is --url a JupyterHub?",
                self.base
            );
        }
        let version = version.unwrap_or_default().to_string();
        let major: u32 = version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if major < 2 {
            bail!(
                "the JupyterHub at {} is version {version}; migrating needs 2.0 or later (roles \
                 and paginated lists): upgrade it first",
                self.base
            );
        }
        self.check_token().await?;
        let users = self.list("users").await?;
        let groups = self.list("groups").await?;
        Ok(from_models(&users, &groups))
    }

    /// The token is valid and has [`NEEDED_SCOPES`]; else say which are missing.
    async fn check_token(&self) -> Result<()> {
        let (status, me) = self.get("/user").await?;
        if status == reqwest::StatusCode::FORBIDDEN || status == reqwest::StatusCode::UNAUTHORIZED {
            bail!(
                "the JupyterHub at {} refused the token ({status}): it is not valid there, or \
                 expired; make one on its /hub/token page as an admin",
                self.base
            );
        }
        if !status.is_success() {
            bail!("{}/hub/api/user answered {status}: {me}", self.base);
        }
        if let Some(scopes) = me.get("scopes").and_then(Value::as_array) {
            let have: BTreeSet<&str> = scopes.iter().filter_map(Value::as_str).collect();
            let missing: Vec<&str> = NEEDED_SCOPES
                .iter()
                .copied()
                .filter(|s| !have.contains(s))
                .collect();
            if !missing.is_empty() {
                bail!(
                    "the token lacks the scopes {} (it needs {}): use an admin's token, or one \
                     of a role with the scopes `admin:users` and `admin:groups`",
                    missing.join(", "),
                    NEEDED_SCOPES.join(", ")
                );
            }
        }
        Ok(())
    }

    /// Every item of a list, page by page (`offset`/`limit`, following `_pagination.next`).
    async fn list(&self, what: &str) -> Result<Vec<Value>> {
        let progress = ProgressBar::new(0).with_style(
            ProgressStyle::with_template("reading {msg} [{bar:30}] {pos}/{len}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        progress.set_message(what.to_string());
        let mut items = Vec::new();
        let mut offset: u64 = 0;
        loop {
            let (status, page) = self
                .get(&format!("/{what}?offset={offset}&limit={}", self.page_size))
                .await?;
            if status == reqwest::StatusCode::FORBIDDEN {
                bail!(
                    "the JupyterHub refused to list {what} (403): the token needs the scopes {}",
                    NEEDED_SCOPES.join(", ")
                );
            }
            if !status.is_success() {
                bail!("{}/hub/api/{what} answered {status}: {page}", self.base);
            }
            let Some(page_items) = page.get("items").and_then(Value::as_array) else {
                bail!(
                    "{}/hub/api/{what} did not answer with a page of items as JupyterHub 2+ \
                     does: is --url a JupyterHub?",
                    self.base
                );
            };
            items.extend(page_items.iter().cloned());
            let pagination = page.get("_pagination");
            if let Some(total) = pagination
                .and_then(|p| p.get("total"))
                .and_then(Value::as_u64)
            {
                progress.set_length(total);
            }
            progress.set_position(items.len() as u64);
            let next = pagination
                .and_then(|p| p.get("next"))
                .and_then(|n| n.get("offset"))
                .and_then(Value::as_u64);
            match next {
                Some(next) if next > offset => offset = next,
                Some(_) => bail!(
                    "{}/hub/api/{what}: the next page's offset does not move on; stopping",
                    self.base
                ),
                None => break,
            }
        }
        progress.finish_and_clear();
        Ok(items)
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    let mut list: Vec<String> = value
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    list.sort();
    list
}

/// A [`UsersFile`] from JupyterHub's user and group models; custom roles' holders from the
/// models' `roles` (JupyterHub's API does not list roles, nor their scopes).
fn from_models(users: &[Value], groups: &[Value]) -> UsersFile {
    let mut user_records = Vec::new();
    let mut holders: Vec<(String, String, bool)> = Vec::new();
    for user in users {
        let Some(name) = user.get("name").and_then(Value::as_str) else {
            continue;
        };
        let custom: Vec<String> = strings(user.get("roles"))
            .into_iter()
            .filter(|r| !DEFAULT_ROLES.contains(&r.as_str()))
            .collect();
        for r in &custom {
            holders.push((r.clone(), name.to_string(), true));
        }
        user_records.push(UserRecord {
            name: name.to_string(),
            admin: user.get("admin").and_then(Value::as_bool).unwrap_or(false),
            groups: strings(user.get("groups")),
            roles: custom,
        });
    }
    let mut group_records = Vec::new();
    for group in groups {
        let Some(name) = group.get("name").and_then(Value::as_str) else {
            continue;
        };
        let custom: Vec<String> = strings(group.get("roles"))
            .into_iter()
            .filter(|r| !DEFAULT_ROLES.contains(&r.as_str()))
            .collect();
        for r in &custom {
            holders.push((r.clone(), name.to_string(), false));
        }
        group_records.push(GroupRecord {
            name: name.to_string(),
            properties: group
                .get("properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            users: strings(group.get("users")),
            roles: custom,
        });
    }
    let mut roles: BTreeMap<String, RoleRecord> = BTreeMap::new();
    for (role, holder, is_user) in holders {
        let record = roles.entry(role.clone()).or_insert_with(|| RoleRecord {
            name: role,
            ..Default::default()
        });
        if is_user {
            record.users.push(holder);
        } else {
            record.groups.push(holder);
        }
    }
    user_records.sort_by(|a, b| a.name.cmp(&b.name));
    group_records.sort_by(|a, b| a.name.cmp(&b.name));
    UsersFile {
        format: hub_data::USERS_FORMAT.to_string(),
        users: user_records,
        groups: group_records,
        roles: roles.into_values().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, admin: bool) -> UserRecord {
        UserRecord {
            name: name.into(),
            admin,
            ..Default::default()
        }
    }

    fn group(name: &str, users: &[&str]) -> GroupRecord {
        GroupRecord {
            name: name.into(),
            users: users.iter().map(|u| u.to_string()).collect(),
            ..Default::default()
        }
    }

    fn file(users: Vec<UserRecord>, groups: Vec<GroupRecord>, roles: Vec<RoleRecord>) -> UsersFile {
        UsersFile {
            format: hub_data::USERS_FORMAT.into(),
            users,
            groups,
            roles,
        }
    }

    #[test]
    fn the_plan_makes_the_sources_groups_exact_and_leaves_other_users() {
        let roles_file = Path::new("/nonexistent/imported-roles.yaml");
        let current = file(
            vec![user("ada", false), user("bob", false), user("local", true)],
            vec![group("staff", &["ada", "bob"])],
            vec![],
        );
        let role = RoleRecord {
            name: "ta".into(),
            users: vec!["cy".into()],
            groups: vec!["staff".into()],
            ..Default::default()
        };
        let mut staff = group("staff", &["ada", "cy"]);
        staff.properties.insert("room".into(), 12.into());
        let source = file(
            vec![user("ada", true), user("bob", false), user("cy", false)],
            vec![staff, group("new", &["ghost", "bob"])],
            vec![role],
        );
        let mut config = HubConfig::default();
        config.hub.load_roles.insert(
            "ta".into(),
            hubfleet_config::RoleConfig {
                scopes: vec!["list:users".into()],
                ..Default::default()
            },
        );
        let plan = plan(&source, &current, &config, roles_file).unwrap();
        assert_eq!(names(plan.create_users.iter()), ["cy"]);
        assert_eq!(plan.set_admin, [("ada".to_string(), true)]);
        assert_eq!(plan.create_groups.len(), 1);
        assert_eq!(
            plan.create_groups[0].users,
            ["bob"],
            "unknown `ghost` left out"
        );
        assert!(plan.warnings.iter().any(|w| w.contains("ghost")));
        assert_eq!(plan.set_properties.len(), 1);
        assert_eq!(
            plan.members,
            [(
                "staff".to_string(),
                vec!["cy".to_string()],
                vec!["bob".to_string()]
            )]
        );
        assert_eq!(plan.put_roles.len(), 1);
        assert_eq!(
            plan.put_roles[0].scopes.as_deref(),
            Some(&["list:users".to_string()][..]),
            "scopes from hub.loadRoles when the source has none"
        );
        assert_eq!(plan.write_roles_file.as_deref(), Some(roles_file));
        assert!(!plan.is_empty());

        // Once applied (the hub as the source says), nothing is left to do.
        let mut applied = source.clone();
        applied.users.push(user("local", true));
        applied.groups[1].users = vec!["bob".into()];
        applied.roles[0].scopes = Some(vec!["list:users".into()]);
        config.hub.load_roles.get_mut("ta").unwrap().users = vec!["cy".into()];
        config.hub.load_roles.get_mut("ta").unwrap().groups = vec!["staff".into()];
        let again = super::plan(&source, &applied, &config, roles_file).unwrap();
        assert!(again.is_empty(), "{:?}", again.describe());
    }

    #[test]
    fn role_holders_come_from_the_user_and_group_models() {
        let users = [
            serde_json::json!({"name": "ada", "admin": true, "groups": ["staff"], "roles": ["admin", "user", "ta"]}),
            serde_json::json!({"name": "bob", "admin": false, "groups": [], "roles": ["user"]}),
        ];
        let groups = [
            serde_json::json!({"name": "staff", "users": ["ada"], "roles": ["ta"], "properties": {"a": 1}}),
        ];
        let source = from_models(&users, &groups);
        assert_eq!(source.users.len(), 2);
        assert!(source.users[0].admin);
        assert_eq!(
            source.users[0].roles,
            ["ta"],
            "default roles are not copied"
        );
        assert_eq!(source.roles.len(), 1);
        assert_eq!(source.roles[0].users, ["ada"]);
        assert_eq!(source.roles[0].groups, ["staff"]);
        assert_eq!(source.roles[0].scopes, None);
        assert_eq!(source.groups[0].properties["a"], 1);
    }
}
