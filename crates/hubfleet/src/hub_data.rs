//! A hub's people and files, in the two portable files that `hubfleet export` writes and
//! `hubfleet import` reads: `users.json` (users, groups, memberships, admin flags, roles and
//! who holds them) and `homes.tar.zst` (the users' home directories, owners and modes kept).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use hubfleet_config::HubConfig;
use hubfleet_store::Store;
use serde::{Deserialize, Serialize};

/// The `format` of the users file this version writes and reads.
pub const USERS_FORMAT: &str = "hubfleet-users/1";

/// `users.json`: who is on a hub. Passwords, tokens and sessions are never in it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    /// [`USERS_FORMAT`].
    pub format: String,
    pub users: Vec<UserRecord>,
    #[serde(default)]
    pub groups: Vec<GroupRecord>,
    /// Custom roles (not the default `user`, `admin`, `server`, `token`).
    #[serde(default)]
    pub roles: Vec<RoleRecord>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    pub name: String,
    #[serde(default)]
    pub admin: bool,
    /// The groups the user is in (the same facts as [`GroupRecord::users`], for readers).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Custom roles given to the user directly.
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRecord {
    pub name: String,
    #[serde(default)]
    pub properties: serde_json::Map<String, serde_json::Value>,
    /// Members (what an import makes true).
    #[serde(default)]
    pub users: Vec<String>,
    /// Custom roles given to the group.
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRecord {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// `None` when the source does not say (JupyterHub's REST API has no roles endpoint: the
    /// scopes then come from the target hub's `hub.loadRoles`).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Holders (what an import makes true).
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The roles every hub has; never copied (admins are the `admin` flag).
pub const DEFAULT_ROLES: [&str; 4] = ["user", "admin", "server", "token"];

/// Read the people of a hub from its store.
pub async fn read_users(store: &Store) -> Result<UsersFile> {
    let users = store.list_users().await?;
    let memberships = store.all_memberships().await?;
    let mut direct_roles = store.all_direct_roles().await?;
    let (groups, _) = store.list_groups(0, i64::MAX, None).await?;
    let mut group_records = Vec::with_capacity(groups.len());
    for group in groups {
        group_records.push(GroupRecord {
            roles: custom(store.roles_of_group(group.id).await?),
            name: group.name,
            properties: group.properties,
            users: group.users,
        });
    }
    let user_records = users
        .into_iter()
        .map(|user| {
            let mut groups = memberships.get(&user.name).cloned().unwrap_or_default();
            groups.sort();
            UserRecord {
                roles: custom(direct_roles.remove(&user.id).unwrap_or_default()),
                groups,
                admin: user.admin,
                name: user.name,
            }
        })
        .collect();
    let roles = store
        .roles_with_members()
        .await?
        .into_iter()
        .filter(|(role, _)| !DEFAULT_ROLES.contains(&role.name.as_str()))
        .map(|(role, members)| RoleRecord {
            name: role.name,
            description: role.description,
            scopes: Some(role.scopes),
            users: members.users,
            groups: members.groups,
        })
        .collect();
    let mut file = UsersFile {
        format: USERS_FORMAT.to_string(),
        users: user_records,
        groups: group_records,
        roles,
    };
    file.users.sort_by(|a, b| a.name.cmp(&b.name));
    file.groups.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(file)
}

fn custom(mut roles: Vec<String>) -> Vec<String> {
    roles.retain(|r| !DEFAULT_ROLES.contains(&r.as_str()));
    roles.sort();
    roles
}

/// Write the hub's `users.json` (see [`UsersFile`]) to `path`: for `hubfleet export`, read
/// back by `hubfleet import`.
pub async fn write_users_json(store: &Store, path: &Path) -> Result<UsersFile> {
    let users = read_users(store).await?;
    let mut text = serde_json::to_string_pretty(&users)?;
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(users)
}

/// Read and check a `users.json`.
pub fn read_users_json(path: &Path) -> Result<UsersFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let users: UsersFile = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}:{}:{}: {e}; the file should be one that `hubfleet export` wrote",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    if users.format != USERS_FORMAT {
        bail!(
            "{}: format `{}` is not one this hubfleet reads (`{USERS_FORMAT}`); import it with the \
             hubfleet version that exported it, or a newer one",
            path.display(),
            users.format
        );
    }
    Ok(users)
}

/// Where the local spawner keeps homes (`<homes_dir>/<user>`): `hubfleet.local.homes_dir`,
/// by default `<data_dir>/homes`. The same with `system_users` (each home is then owned by
/// the user's account).
pub fn homes_dir(config: &HubConfig) -> PathBuf {
    config
        .hubfleet
        .local
        .homes_dir
        .as_deref()
        .map(|p| config.resolve_path(p))
        .unwrap_or_else(|| config.data_dir().join("homes"))
}

/// What went into (or would come out of) a homes archive.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HomesSummary {
    /// The homes (user names), sorted.
    pub homes: Vec<String>,
    /// Entries: directories, files, links.
    pub entries: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Paths left out, with why (sockets; mount points' contents).
    pub skipped: Vec<String>,
}

/// Folders the local spawner mounts into homes (the shared folder): their contents are not
/// the user's.
const MOUNTED_IN_HOMES: [&str; 2] = ["shared", "shared-readwrite"];

/// Write every home under `homes_dir` to `out` as `homes.tar.zst`: a tar archive (entries
/// `<user>/…`, numeric owners, modes and times kept, symbolic links as links) compressed with
/// zstd, streamed from disk to disk. Restore it with `hubfleet import` or the commands of
/// [`restore_instructions`]. A home that changes while it is read (a running server) is
/// archived as read.
pub fn write_homes_archive(homes_dir: &Path, out: &Path) -> Result<HomesSummary> {
    // 0600: homes hold people's private files (keys, tokens in their configs).
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("creating {}", out.display()))?;
    std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o600))?;
    let encoder = zstd::Encoder::new(BufWriter::new(file), 3)?;
    let mut builder = tar::Builder::new(encoder);
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    let mut summary = HomesSummary::default();
    if homes_dir.is_dir() {
        let mut homes: Vec<_> = std::fs::read_dir(homes_dir)
            .with_context(|| format!("listing {}", homes_dir.display()))?
            .collect::<std::io::Result<_>>()?;
        homes.sort_by_key(|e| e.file_name());
        for home in homes {
            let meta = home.path().symlink_metadata()?;
            if !meta.is_dir() {
                continue;
            }
            let name = home.file_name().to_string_lossy().into_owned();
            add_tree(
                &mut builder,
                &home.path(),
                Path::new(&name),
                meta.dev(),
                true,
                &mut summary,
            )?;
            summary.homes.push(name);
        }
    }
    builder
        .into_inner()
        .and_then(|encoder| encoder.finish())
        .and_then(|mut file| file.flush())
        .with_context(|| format!("finishing {}", out.display()))?;
    Ok(summary)
}

fn add_tree<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &Path,
    name: &Path,
    device: u64,
    home_root: bool,
    summary: &mut HomesSummary,
) -> Result<()> {
    let meta = path
        .symlink_metadata()
        .with_context(|| format!("reading {}", path.display()))?;
    let kind = meta.file_type();
    if std::os::unix::fs::FileTypeExt::is_socket(&kind) {
        summary
            .skipped
            .push(format!("{} (a socket)", name.display()));
        return Ok(());
    }
    builder
        .append_path_with_name(path, name)
        .with_context(|| format!("archiving {}", path.display()))?;
    summary.entries += 1;
    if kind.is_file() {
        summary.bytes += meta.len();
    }
    if !kind.is_dir() {
        return Ok(());
    }
    if meta.dev() != device {
        summary.skipped.push(format!(
            "{}/ contents (another filesystem mounted there)",
            name.display()
        ));
        return Ok(());
    }
    let mut children: Vec<_> = std::fs::read_dir(path)
        .with_context(|| format!("listing {}", path.display()))?
        .collect::<std::io::Result<_>>()?;
    children.sort_by_key(|e| e.file_name());
    for child in children {
        let file_name = child.file_name();
        if home_root && MOUNTED_IN_HOMES.iter().any(|m| file_name == *m) {
            summary.skipped.push(format!(
                "{}/{} (the hub's shared folder, mounted into homes)",
                name.display(),
                file_name.to_string_lossy()
            ));
            continue;
        }
        add_tree(
            builder,
            &child.path(),
            &name.join(&file_name),
            device,
            false,
            summary,
        )?;
    }
    Ok(())
}

/// The README's steps to restore `homes.tar.zst` by hand (without hubfleet), e.g. into the
/// home volume of a Zero to JupyterHub deployment.
pub fn restore_instructions() -> String {
    "\
`homes.tar.zst` holds one directory per user (`<user>/…`), with numeric owners, modes and
times. To restore the homes into a hubfleet hub, with its users and groups:

    hubfleet import --from DIR --config hub.yaml

To restore them by hand (as root, so that owners are kept), into the directory that holds
the homes (for Zero to JupyterHub: the volume mounted at `/home/jovyan` holds one home, so
restore each `<user>/` into that user's volume):

    mkdir -p /srv/homes
    zstd -dc homes.tar.zst | tar -x --numeric-owner --same-permissions -C /srv/homes

Zero to JupyterHub runs servers as uid 1000 by default (`singleuser.uid`); if the homes
came from `hubfleet.local.system_users`, give them to that uid after restoring:
`chown -R 1000:100 /srv/homes/<user>`.
"
    .to_string()
}

/// Why an entry of a homes archive is refused.
fn entry_problem(
    path: &Path,
    link: Option<&Path>,
    links_seen: &BTreeSet<PathBuf>,
) -> Option<String> {
    let mut depth = 0usize;
    for component in path.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => return Some("its path goes up with `..`".into()),
            Component::RootDir | Component::Prefix(_) => {
                return Some("its path is absolute".into())
            }
        }
    }
    if depth == 0 {
        return Some("its path is empty".into());
    }
    // Writing below a link of the archive would write wherever the link points.
    let mut prefix = PathBuf::new();
    for component in path.components() {
        if links_seen.contains(&prefix) && !prefix.as_os_str().is_empty() {
            return Some(format!("it lies below the link {}", prefix.display()));
        }
        prefix.push(component);
    }
    if let Some(target) = link {
        if target.is_absolute() {
            return Some(format!(
                "it links to the absolute path {} (outside the home)",
                target.display()
            ));
        }
        if depth < 2 {
            return Some("a whole home is a link".into());
        }
        // Followed from the link's folder, the home itself being level 0.
        let mut level = depth as i64 - 2;
        for component in target.components() {
            match component {
                Component::ParentDir => level -= 1,
                Component::Normal(_) => level += 1,
                _ => {}
            }
            if level < 0 {
                return Some(format!(
                    "it links to {}, outside the home",
                    target.display()
                ));
            }
        }
    }
    None
}

/// Read `homes.tar.zst` through, checking every entry; nothing is written. An entry that
/// would land outside the homes directory (absolute, `..`, below a link, a link or hard link
/// out of its home) is an error naming it.
pub fn check_homes_archive(archive: &Path) -> Result<HomesSummary> {
    let mut tar = open_archive(archive)?;
    let mut summary = HomesSummary::default();
    let mut homes = BTreeSet::new();
    let mut links = BTreeSet::new();
    for entry in tar
        .entries()
        .with_context(|| format!("reading {}", archive.display()))?
    {
        let entry = entry.with_context(|| format!("reading {}", archive.display()))?;
        let path = entry.path()?.into_owned();
        let kind = entry.header().entry_type();
        let link = match kind {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                entry.link_name()?.map(|l| l.into_owned())
            }
            _ => None,
        };
        let problem = match (kind, &link) {
            (tar::EntryType::Char | tar::EntryType::Block, _) => {
                Some("it is a device file, which no home holds".to_string())
            }
            (tar::EntryType::Link, Some(target))
                if target.components().next() != path.components().next() =>
            {
                Some(format!(
                    "it is a hard link to {}, in another home",
                    target.display()
                ))
            }
            (tar::EntryType::Link, Some(target)) => entry_problem(target, None, &links)
                .map(|p| format!("it is a hard link to {} and {p}", target.display()))
                .or_else(|| entry_problem(&path, None, &links)),
            _ => entry_problem(&path, link.as_deref(), &links),
        };
        if let Some(problem) = problem {
            bail!(
                "{}: refusing the entry `{}`: {problem}. Nothing was restored; the archive \
                 was not written by `hubfleet export`, or was changed",
                archive.display(),
                path.display()
            );
        }
        if kind == tar::EntryType::Symlink {
            links.insert(path.clone());
        }
        if let Some(Component::Normal(home)) = path.components().next() {
            homes.insert(home.to_string_lossy().into_owned());
        }
        summary.entries += 1;
        if kind.is_file() {
            summary.bytes += entry.size();
        }
    }
    summary.homes = homes.into_iter().collect();
    Ok(summary)
}

fn open_archive(archive: &Path) -> Result<tar::Archive<impl Read>> {
    let file = File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let decoder = zstd::Decoder::new(file)
        .with_context(|| format!("{}: not a zstd file", archive.display()))?;
    Ok(tar::Archive::new(decoder))
}

/// Restore `homes.tar.zst` into `homes_dir` after checking it ([`check_homes_archive`]):
/// modes and times kept; owners (numeric) kept when run as root. Files already there are
/// replaced by the archive's; others are left.
pub fn restore_homes(archive: &Path, homes_dir: &Path) -> Result<HomesSummary> {
    let summary = check_homes_archive(archive)?;
    std::fs::create_dir_all(homes_dir)
        .with_context(|| format!("creating {}", homes_dir.display()))?;
    let mut tar = open_archive(archive)?;
    tar.set_preserve_permissions(true);
    // Never setuid or setgid: with owners kept, an archive's file could run as its owner.
    tar.set_mask(0o6000);
    tar.set_preserve_mtime(true);
    tar.set_preserve_ownerships(nix::unistd::geteuid().is_root());
    tar.set_overwrite(true);
    tar.unpack(homes_dir).with_context(|| {
        format!(
            "restoring {} into {}",
            archive.display(),
            homes_dir.display()
        )
    })?;
    Ok(summary)
}

/// Counts of a homes summary for people: `3 homes, 41 entries, 1.2 MB`.
pub fn describe(summary: &HomesSummary) -> String {
    format!(
        "{} home{}, {} entries, {} bytes",
        summary.homes.len(),
        if summary.homes.len() == 1 { "" } else { "s" },
        summary.entries,
        summary.bytes
    )
}

/// Names in `users.json` that are used but not defined, for a clear error before writing.
pub fn undefined_names(users: &UsersFile) -> Vec<String> {
    let names: BTreeSet<&str> = users.users.iter().map(|u| u.name.as_str()).collect();
    let mut missing = BTreeMap::new();
    for group in &users.groups {
        for user in &group.users {
            if !names.contains(user.as_str()) {
                missing.insert(user.clone(), format!("group {}", group.name));
            }
        }
    }
    missing
        .into_iter()
        .map(|(user, place)| format!("{user} (a member of {place})"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(path: &str, link: Option<&str>) -> Option<String> {
        entry_problem(Path::new(path), link.map(Path::new), &BTreeSet::new())
    }

    #[test]
    fn entries_that_leave_the_homes_are_refused() {
        assert_eq!(problem("alice/notes.txt", None), None);
        assert!(problem("/etc/passwd", None).unwrap().contains("absolute"));
        assert!(problem("alice/../../etc", None).unwrap().contains(".."));
        assert_eq!(problem("alice/latest", Some("data/run1")), None);
        assert_eq!(problem("alice/data/up", Some("../notes.txt")), None);
        assert!(problem("alice/out", Some("../bob/x"))
            .unwrap()
            .contains("outside"));
        assert!(problem("alice/out", Some("../../etc"))
            .unwrap()
            .contains("outside"));
        assert!(problem("alice/abs", Some("/etc/shadow"))
            .unwrap()
            .contains("absolute"));
        let links: BTreeSet<PathBuf> = [PathBuf::from("alice/link")].into();
        assert!(entry_problem(Path::new("alice/link/passwd"), None, &links)
            .unwrap()
            .contains("below the link"));
    }
}
