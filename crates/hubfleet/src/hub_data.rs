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
    let mut builder = homes_builder(encoder);
    let mut summary = HomesSummary::default();
    if homes_dir.is_dir() {
        let homes = rustix::fs::open(
            homes_dir,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(std::io::Error::from)
        .with_context(|| format!("opening {}", homes_dir.display()))?;
        for name in folder_names(&homes, homes_dir)? {
            let home = name.to_string_lossy().into_owned();
            let Some(seen) = entry_meta(&homes, &name, homes_dir)? else {
                continue;
            };
            if !seen.is_dir() {
                continue;
            }
            if add_entry(
                &mut builder,
                &homes,
                &name,
                &seen,
                Path::new(&home),
                None,
                &mut summary,
            )? {
                summary.homes.push(home);
            }
        }
    }
    builder
        .into_inner()
        .and_then(|encoder| encoder.finish())
        .and_then(|mut file| file.flush())
        .with_context(|| format!("finishing {}", out.display()))?;
    Ok(summary)
}

fn homes_builder<W: Write>(out: W) -> tar::Builder<W> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    builder
}

/// The names in an open folder, sorted (without `.` and `..`).
fn folder_names(dir: &std::os::fd::OwnedFd, shown: &Path) -> Result<Vec<std::ffi::OsString>> {
    use std::os::unix::ffi::OsStrExt;
    let listing = || -> std::io::Result<Vec<std::ffi::OsString>> {
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(std::ffi::OsStr::from_bytes(name).to_owned());
            }
        }
        Ok(names)
    };
    let mut names = listing().with_context(|| format!("listing {}", shown.display()))?;
    names.sort();
    Ok(names)
}

/// What `name` in `dir` is, the name itself (a link is not followed): opened `O_PATH`, never
/// read. `None`: it went away since the folder was listed.
fn entry_meta(
    dir: &std::os::fd::OwnedFd,
    name: &std::ffi::OsStr,
    shown: &Path,
) -> Result<Option<std::fs::Metadata>> {
    use rustix::fs::{Mode, OFlags};
    match rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(File::from(fd).metadata().with_context(|| {
            format!("reading {}", shown.join(name).display())
        })?)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(std::io::Error::from(e))
            .with_context(|| format!("reading {}", shown.join(name).display())),
    }
}

/// Archive `name` of the open folder `dir` as `archive_name`, and what a folder holds. `seen`
/// is what the name was when looked at; every file and folder is opened relative to `dir`
/// with `O_NOFOLLOW` and read through that handle, so a name swapped for a symbolic link in
/// the meantime (a running server's user pointing it at `/etc/shadow` or another home) is
/// never followed: it is left out and listed in [`HomesSummary::skipped`]. Links are archived
/// as links. `device`: the home's filesystem (`None`: this is the home). `Ok(false)`: left out.
fn add_entry<W: Write>(
    builder: &mut tar::Builder<W>,
    dir: &std::os::fd::OwnedFd,
    name: &std::ffi::OsStr,
    seen: &std::fs::Metadata,
    archive_name: &Path,
    device: Option<u64>,
    summary: &mut HomesSummary,
) -> Result<bool> {
    use rustix::fs::{Mode, OFlags};
    use std::os::unix::fs::FileTypeExt;
    let kind = seen.file_type();
    let changed = |summary: &mut HomesSummary| {
        summary.skipped.push(format!(
            "{} (changed while it was read; not followed)",
            archive_name.display()
        ));
        Ok(false)
    };
    let context = || format!("archiving {}", archive_name.display());
    if kind.is_socket() {
        summary
            .skipped
            .push(format!("{} (a socket)", archive_name.display()));
        return Ok(false);
    }
    if kind.is_symlink() {
        let target = match rustix::fs::readlinkat(dir, name, Vec::new()) {
            Ok(target) => target,
            // No longer a link.
            Err(rustix::io::Errno::INVAL) => return changed(summary),
            Err(e) => return Err(std::io::Error::from(e)).with_context(context),
        };
        let target = {
            use std::os::unix::ffi::OsStrExt;
            PathBuf::from(std::ffi::OsStr::from_bytes(target.as_bytes()))
        };
        let mut header = header_of(seen);
        builder
            .append_link(&mut header, archive_name, target)
            .with_context(context)?;
        summary.entries += 1;
        return Ok(true);
    }
    if !kind.is_file() && !kind.is_dir() {
        // A fifo or device: its header only, nothing opened.
        let mut header = header_of(seen);
        let dev_id = seen.rdev();
        let major = ((dev_id >> 32) & 0xffff_f000) | ((dev_id >> 8) & 0x0000_0fff);
        let minor = ((dev_id >> 12) & 0xffff_ff00) | (dev_id & 0x0000_00ff);
        header
            .set_device_major(major as u32)
            .with_context(context)?;
        header
            .set_device_minor(minor as u32)
            .with_context(context)?;
        builder
            .append_data(&mut header, archive_name, std::io::empty())
            .with_context(context)?;
        summary.entries += 1;
        return Ok(true);
    }
    // NONBLOCK: a name swapped for a fifo must not hang the export.
    let flags = OFlags::RDONLY
        | OFlags::NOFOLLOW
        | OFlags::NOCTTY
        | OFlags::NONBLOCK
        | OFlags::CLOEXEC
        | if kind.is_dir() {
            OFlags::DIRECTORY
        } else {
            OFlags::empty()
        };
    let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        // A link (ELOOP), or no longer a folder (ENOTDIR): not followed.
        Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => return changed(summary),
        Err(e) => return Err(std::io::Error::from(e)).with_context(context),
    };
    let file = File::from(fd);
    let meta = file.metadata().with_context(context)?;
    if meta.file_type().is_file() != kind.is_file() || meta.is_dir() != kind.is_dir() {
        return changed(summary);
    }
    let mut header = header_of(&meta);
    if kind.is_file() {
        // Exactly the size in the header, however the file grows or shrinks meanwhile.
        let size = meta.len();
        let content = (&file).take(size).chain(std::io::repeat(0)).take(size);
        builder
            .append_data(&mut header, archive_name, content)
            .with_context(context)?;
        summary.entries += 1;
        summary.bytes += size;
        return Ok(true);
    }
    builder
        .append_data(&mut header, archive_name, std::io::empty())
        .with_context(context)?;
    summary.entries += 1;
    let device = device.unwrap_or(meta.dev());
    if meta.dev() != device {
        summary.skipped.push(format!(
            "{}/ contents (another filesystem mounted there)",
            archive_name.display()
        ));
        return Ok(true);
    }
    let folder = std::os::fd::OwnedFd::from(file);
    let home_root = archive_name.components().count() == 1;
    for child in folder_names(&folder, archive_name)? {
        if home_root && MOUNTED_IN_HOMES.iter().any(|m| child == *m) {
            summary.skipped.push(format!(
                "{}/{} (the hub's shared folder, mounted into homes)",
                archive_name.display(),
                child.to_string_lossy()
            ));
            continue;
        }
        let child_name = archive_name.join(&child);
        let Some(child_seen) = entry_meta(&folder, &child, &child_name)? else {
            continue;
        };
        add_entry(
            builder,
            &folder,
            &child,
            &child_seen,
            &child_name,
            Some(device),
            summary,
        )?;
    }
    Ok(true)
}

/// A tar header for what `meta` describes: numeric owner, mode, time (as
/// `tar::HeaderMode::Complete` keeps them).
fn header_of(meta: &std::fs::Metadata) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
    header
}

/// Write `users.json` and, when the hub has its homes directory here, `homes.tar.zst` into
/// `out`, saying on stdout what was written. Returns the same, in Markdown, for a README.
pub async fn write_people(store: &Store, config: &HubConfig, out: &Path) -> Result<String> {
    let users = write_users_json(store, &out.join("users.json")).await?;
    println!(
        "wrote {}: {} users, {} groups, {} roles",
        out.join("users.json").display(),
        users.users.len(),
        users.groups.len(),
        users.roles.len()
    );
    let mut text = format!(
        "`users.json`: {} users, {} groups, {} roles (no passwords, tokens or sessions).\n",
        users.users.len(),
        users.groups.len(),
        users.roles.len()
    );
    let homes = homes_dir(config);
    if homes.is_dir() {
        let summary = write_homes_archive(&homes, &out.join("homes.tar.zst"))?;
        text.push_str(&format!(
            "`homes.tar.zst`: {} from {}.\n",
            describe(&summary),
            homes.display()
        ));
        println!(
            "wrote {} (0600): {} from {}",
            out.join("homes.tar.zst").display(),
            describe(&summary),
            homes.display()
        );
        for skipped in &summary.skipped {
            text.push_str(&format!("- left out: {skipped}\n"));
            println!("  left out: {skipped}");
        }
    } else {
        let missing = format!(
            "No homes.tar.zst: the hub has no homes directory on this machine ({}).",
            homes.display()
        );
        println!("{missing}");
        text.push_str(&missing);
        text.push('\n');
    }
    Ok(text)
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

/// Who owns restored files when the import runs as root. Never the archive's numeric owners:
/// they are another machine's uids, which here may be root or someone else's account.
pub enum RestoredOwners<'a> {
    /// Every file goes to the owner of the homes directory (without `system_users` servers
    /// run as the hub's own account).
    HomesDirOwner,
    /// Every file of home `<user>` goes to the account this gives (uid, gid), e.g. the user's
    /// `jupyter-<name>` account; `None` (no account here yet): to the importing process's own
    /// (root), until the user's first start makes the account and gives it the home.
    ByHome(&'a dyn Fn(&str) -> Option<(u32, u32)>),
}

/// Restore `homes.tar.zst` into `homes_dir` after checking it ([`check_homes_archive`]):
/// modes and times kept; owners set when run as root (see [`RestoredOwners`]). Files
/// already there are replaced by the archive's; others are left.
///
/// Every path is opened below its user's home one name at a time with `openat2`
/// (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), so a symbolic link already on disk (a home
/// being restored over) is never followed: an entry that would go through one is not
/// restored and is listed in [`HomesSummary::skipped`] with why. The archive's own links are
/// made as links and never followed either.
pub fn restore_homes(
    archive: &Path,
    homes_dir: &Path,
    owners: RestoredOwners<'_>,
) -> Result<HomesSummary> {
    let mut summary = check_homes_archive(archive)?;
    std::fs::create_dir_all(homes_dir)
        .with_context(|| format!("creating {}", homes_dir.display()))?;
    let homes = File::open(homes_dir)
        .map(std::os::fd::OwnedFd::from)
        .with_context(|| format!("opening {}", homes_dir.display()))?;
    beneath::check_supported(&homes, homes_dir)?;
    let keep_owners = nix::unistd::geteuid().is_root();
    let homes_owner = File::open(homes_dir)
        .and_then(|f| f.metadata())
        .map(|m| (m.uid(), m.gid()))
        .with_context(|| format!("reading {}", homes_dir.display()))?;
    let own = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    let mut owner_of_home: BTreeMap<String, Option<(u32, u32)>> = BTreeMap::new();
    let mut folders = Vec::new();
    let mut tar = open_archive(archive)?;
    for entry in tar
        .entries()
        .with_context(|| format!("reading {}", archive.display()))?
    {
        let mut entry = entry.with_context(|| format!("reading {}", archive.display()))?;
        let path = entry.path()?.into_owned();
        let parts: Vec<std::ffi::OsString> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(name) => Some(name.to_owned()),
                _ => None,
            })
            .collect();
        // Checked above; but the file is read twice, so never index blindly.
        let Some(home) = parts.first().map(|h| h.to_string_lossy().into_owned()) else {
            summary.skipped.push(format!(
                "{} (not restored: its path is empty)",
                path.display()
            ));
            continue;
        };
        let header = entry.header();
        let owner = if !keep_owners {
            None
        } else {
            match &owners {
                RestoredOwners::HomesDirOwner => Some(homes_owner),
                RestoredOwners::ByHome(account) => Some(
                    owner_of_home
                        .entry(home.clone())
                        .or_insert_with(|| account(&home))
                        .unwrap_or(own),
                ),
            }
        };
        let meta = beneath::Meta {
            // Never setuid or setgid: run as root, a restored file could run as its
            // owner.
            mode: header.mode()? & 0o7777 & !0o6000,
            owner,
            mtime: header.mtime().unwrap_or(0),
        };
        let kind = header.entry_type();
        let link = entry.link_name()?.map(|l| l.into_owned());
        let outcome = match kind {
            tar::EntryType::Directory => {
                let made = beneath::make_folder(&homes, &parts, &meta);
                if made.is_ok() {
                    folders.push((parts.clone(), meta));
                }
                made
            }
            kind if kind.is_file() => beneath::write_file(&homes, &parts, &mut entry, &meta),
            tar::EntryType::Symlink => match &link {
                Some(target) => beneath::make_symlink(&homes, &parts, target, &meta),
                None => Err(beneath::Blocked::Skip("a link without a target".into())),
            },
            tar::EntryType::Link => match &link {
                Some(target) => {
                    let target: Vec<std::ffi::OsString> = target
                        .components()
                        .filter_map(|c| match c {
                            Component::Normal(name) => Some(name.to_owned()),
                            _ => None,
                        })
                        .collect();
                    beneath::make_hard_link(&homes, &parts, &target, &meta)
                }
                None => Err(beneath::Blocked::Skip(
                    "a hard link without a target".into(),
                )),
            },
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            other => Err(beneath::Blocked::Skip(format!(
                "it is a {other:?} entry, which a restore leaves out"
            ))),
        };
        match outcome {
            Ok(()) => {}
            Err(beneath::Blocked::Skip(why)) => summary
                .skipped
                .push(format!("{} (not restored: {why})", path.display())),
            Err(beneath::Blocked::Fail(e)) => {
                return Err(e).with_context(|| {
                    format!(
                        "restoring `{}` from {} into {}",
                        path.display(),
                        archive.display(),
                        homes_dir.display()
                    )
                })
            }
        }
    }
    // Folders' modes and times last (as tar does): a read-only folder must take its files
    // first, and writing them changes its time.
    for (parts, meta) in folders.iter().rev() {
        if let Err(blocked) = beneath::set_folder_meta(&homes, parts, meta) {
            let path: PathBuf = parts.iter().collect();
            match blocked {
                beneath::Blocked::Skip(why) => summary.skipped.push(format!(
                    "{} (mode and time not restored: {why})",
                    path.display()
                )),
                beneath::Blocked::Fail(e) => {
                    return Err(e).with_context(|| format!("restoring `{}`", path.display()))
                }
            }
        }
    }
    Ok(summary)
}

/// Writing below one user's home without following symbolic links: every name is opened with
/// `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` relative to the folder above it.
mod beneath {
    use std::ffi::OsString;
    use std::fs::File;
    use std::os::fd::{AsFd, OwnedFd};
    use std::path::{Path, PathBuf};

    use anyhow::anyhow;
    use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
    use rustix::io::Errno;

    /// Why an entry was not written.
    pub enum Blocked {
        /// This entry only (a link or file on disk in the way): reported, the rest goes on.
        Skip(String),
        /// Something wrong with the machine (permissions, a full disk): the import stops.
        Fail(anyhow::Error),
    }

    /// What an entry's header says of it.
    pub struct Meta {
        pub mode: u32,
        /// `Some` when run as root.
        pub owner: Option<(u32, u32)>,
        pub mtime: u64,
    }

    const RESOLVE: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_SYMLINKS);

    fn shown(parts: &[OsString]) -> String {
        parts.iter().collect::<PathBuf>().display().to_string()
    }

    fn blocked(errno: Errno, parts: &[OsString]) -> Blocked {
        let at = shown(parts);
        match errno {
            Errno::LOOP => Blocked::Skip(format!(
                "{at} is a symbolic link on disk, which an import never follows; move it away \
                 and import again"
            )),
            Errno::NOTDIR => Blocked::Skip(format!("{at} is not a folder on disk")),
            Errno::XDEV => Blocked::Skip(format!("{at} leads out of the home")),
            Errno::ISDIR | Errno::NOTEMPTY => {
                Blocked::Skip(format!("{at} is a folder on disk, the archive's is not"))
            }
            other => Blocked::Fail(anyhow!("{at}: {}", std::io::Error::from(other))),
        }
    }

    fn open(dir: impl AsFd, name: &OsString, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
        rustix::fs::openat2(
            dir,
            name.as_os_str(),
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            mode,
            RESOLVE,
        )
    }

    /// The kernel must offer `openat2` (Linux 5.6 or later, and not filtered out by a
    /// container's seccomp profile): without it an import would have to follow links.
    pub fn check_supported(homes: &OwnedFd, homes_dir: &Path) -> anyhow::Result<()> {
        match open(
            homes,
            &".".into(),
            OFlags::DIRECTORY | OFlags::PATH,
            Mode::empty(),
        ) {
            Ok(_) => Ok(()),
            Err(e @ (Errno::NOSYS | Errno::PERM | Errno::INVAL | Errno::TOOBIG)) => Err(anyhow!(
                "restoring homes into {} needs the openat2 system call (Linux 5.6 or later), \
                 which this system refuses ({}); without it an import could follow a symbolic \
                 link out of a home. Nothing was restored: run the import on a newer kernel \
                 (or outside the container that filters it), or restore the homes by hand \
                 (`zstd -dc homes.tar.zst | tar -x --numeric-owner -C {}`) into empty homes",
                homes_dir.display(),
                std::io::Error::from(e),
                homes_dir.display()
            )),
            Err(e) => Err(anyhow!(
                "opening {}: {}",
                homes_dir.display(),
                std::io::Error::from(e)
            )),
        }
    }

    /// The folder `parts` below the homes, one name at a time. With `create`, missing ones
    /// are made: mode 0700 until their own entry's mode is set at the end; owned by `owner`
    /// (the entry's) when that is given, for archives without folder entries.
    fn folder(
        homes: &OwnedFd,
        parts: &[OsString],
        create: Option<Option<(u32, u32)>>,
    ) -> Result<OwnedFd, Blocked> {
        let flags = OFlags::DIRECTORY | OFlags::RDONLY;
        let mut current =
            open(homes, &".".into(), flags, Mode::empty()).map_err(|e| blocked(e, &[]))?;
        for (depth, name) in parts.iter().enumerate() {
            let next = match open(&current, name, flags, Mode::empty()) {
                Err(Errno::NOENT) if create.is_some() => {
                    match rustix::fs::mkdirat(
                        &current,
                        name.as_os_str(),
                        Mode::from_raw_mode(0o700),
                    ) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(blocked(e, &parts[..=depth])),
                    }
                    let made = open(&current, name, flags, Mode::empty());
                    if let (Ok(fd), Some(Some(owner))) = (&made, create) {
                        let meta = Meta {
                            mode: 0o700,
                            owner: Some(owner),
                            mtime: 0,
                        };
                        set_owner(fd, &meta, &parts[..=depth])?;
                    }
                    made
                }
                // O_DIRECTORY | O_NOFOLLOW on a link says "not a folder": say which it is.
                Err(Errno::NOTDIR) if is_symlink(&current, name) => Err(Errno::LOOP),
                other => other,
            };
            current = next.map_err(|e| blocked(e, &parts[..=depth]))?;
        }
        Ok(current)
    }

    fn is_symlink(dir: &OwnedFd, name: &OsString) -> bool {
        rustix::fs::statat(dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|stat| {
            rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Symlink
        })
    }

    fn parent_and_name(
        homes: &OwnedFd,
        parts: &[OsString],
        owner: Option<(u32, u32)>,
    ) -> Result<(OwnedFd, OsString), Blocked> {
        let (name, above) = parts.split_last().expect("checked: entries have a path");
        if above.is_empty() {
            return Err(Blocked::Skip("a home must be a folder".into()));
        }
        Ok((folder(homes, above, Some(owner))?, name.clone()))
    }

    /// Take away a file or link that is in the way (never a folder, never followed).
    fn clear(dir: &OwnedFd, name: &OsString, parts: &[OsString]) -> Result<(), Blocked> {
        match rustix::fs::unlinkat(dir, name.as_os_str(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(blocked(e, parts)),
        }
    }

    fn times(mtime: u64) -> Timestamps {
        let at = Timespec {
            tv_sec: mtime.min(i64::MAX as u64) as i64,
            tv_nsec: 0,
        };
        Timestamps {
            last_access: at,
            last_modification: at,
        }
    }

    fn fail(parts: &[OsString]) -> impl FnOnce(Errno) -> Blocked + '_ {
        move |e| Blocked::Fail(anyhow!("{}: {}", shown(parts), std::io::Error::from(e)))
    }

    fn set_owner(fd: &OwnedFd, meta: &Meta, parts: &[OsString]) -> Result<(), Blocked> {
        if let Some((uid, gid)) = meta.owner {
            rustix::fs::fchown(
                fd,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )
            .map_err(fail(parts))?;
        }
        Ok(())
    }

    pub fn make_folder(homes: &OwnedFd, parts: &[OsString], meta: &Meta) -> Result<(), Blocked> {
        folder(homes, parts, Some(meta.owner)).map(drop)
    }

    /// A folder's owner, mode and time, once its contents are in.
    pub fn set_folder_meta(
        homes: &OwnedFd,
        parts: &[OsString],
        meta: &Meta,
    ) -> Result<(), Blocked> {
        let fd = folder(homes, parts, None)?;
        set_owner(&fd, meta, parts)?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(meta.mode)).map_err(fail(parts))?;
        rustix::fs::futimens(&fd, &times(meta.mtime)).map_err(fail(parts))
    }

    /// A new file (what was there is unlinked first, so that a hard link on disk is never
    /// written through) with the entry's content.
    pub fn write_file(
        homes: &OwnedFd,
        parts: &[OsString],
        content: &mut impl std::io::Read,
        meta: &Meta,
    ) -> Result<(), Blocked> {
        let (dir, name) = parent_and_name(homes, parts, meta.owner)?;
        clear(&dir, &name, parts)?;
        let fd = open(
            &dir,
            &name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| blocked(e, parts))?;
        let mut file = File::from(fd);
        std::io::copy(content, &mut file)
            .map_err(|e| Blocked::Fail(anyhow!("{}: {e}", shown(parts))))?;
        let fd = OwnedFd::from(file);
        set_owner(&fd, meta, parts)?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(meta.mode)).map_err(fail(parts))?;
        rustix::fs::futimens(&fd, &times(meta.mtime)).map_err(fail(parts))
    }

    /// The archive's symbolic link, made as a link (its target is never opened).
    pub fn make_symlink(
        homes: &OwnedFd,
        parts: &[OsString],
        target: &Path,
        meta: &Meta,
    ) -> Result<(), Blocked> {
        let (dir, name) = parent_and_name(homes, parts, meta.owner)?;
        clear(&dir, &name, parts)?;
        rustix::fs::symlinkat(target, &dir, name.as_os_str()).map_err(|e| blocked(e, parts))?;
        if let Some((uid, gid)) = meta.owner {
            rustix::fs::chownat(
                &dir,
                name.as_os_str(),
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(fail(parts))?;
        }
        rustix::fs::utimensat(
            &dir,
            name.as_os_str(),
            &times(meta.mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(fail(parts))
    }

    /// A hard link to an entry restored before it (in the same home: checked).
    pub fn make_hard_link(
        homes: &OwnedFd,
        parts: &[OsString],
        target: &[OsString],
        meta: &Meta,
    ) -> Result<(), Blocked> {
        let (dir, name) = parent_and_name(homes, parts, meta.owner)?;
        let (target_name, target_above) = target
            .split_last()
            .ok_or_else(|| Blocked::Skip("a hard link without a target".into()))?;
        let target_dir = folder(homes, target_above, None)?;
        clear(&dir, &name, parts)?;
        // No AT_SYMLINK_FOLLOW: a link on disk at the target is linked, not followed.
        rustix::fs::linkat(
            &target_dir,
            target_name.as_os_str(),
            &dir,
            name.as_os_str(),
            AtFlags::empty(),
        )
        .map_err(|e| blocked(e, parts))
    }
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

#[cfg(test)]
mod export_tests {
    use super::*;
    use std::os::fd::OwnedFd;

    const SECRET: &[u8] = b"root:$6$not-hers:19000::::::";

    /// Archive `name` of `dir` as `alice/<name>`, `seen` being what it was when looked at;
    /// the archive's entries (path, type, content).
    fn archive_one(
        dir: &Path,
        name: &str,
        seen: &std::fs::Metadata,
    ) -> Vec<(String, tar::EntryType, Vec<u8>)> {
        let fd = OwnedFd::from(File::open(dir).unwrap());
        let mut builder = homes_builder(Vec::new());
        let mut summary = HomesSummary::default();
        let _ = add_entry(
            &mut builder,
            &fd,
            std::ffi::OsStr::new(name),
            seen,
            &Path::new("alice").join(name),
            Some(seen.dev()),
            &mut summary,
        );
        let bytes = builder.into_inner().unwrap();
        entries_of(tar::Archive::new(&bytes[..]))
    }

    fn entries_of(mut archive: tar::Archive<impl Read>) -> Vec<(String, tar::EntryType, Vec<u8>)> {
        let mut out = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            out.push((
                entry.path().unwrap().display().to_string(),
                entry.header().entry_type(),
                content,
            ));
        }
        out
    }

    fn holds_secret(entries: &[(String, tar::EntryType, Vec<u8>)]) -> bool {
        entries
            .iter()
            .any(|(_, _, content)| content.windows(SECRET.len()).any(|w| w == SECRET))
    }

    #[test]
    fn a_file_swapped_for_a_link_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("shadow");
        std::fs::write(&outside, SECRET).unwrap();
        let home = tmp.path().join("alice");
        std::fs::create_dir(&home).unwrap();
        let notes = home.join("notes.txt");
        std::fs::write(&notes, b"mine").unwrap();
        let seen = notes.symlink_metadata().unwrap();
        // The swap, between the look and the read.
        std::fs::remove_file(&notes).unwrap();
        std::os::unix::fs::symlink(&outside, &notes).unwrap();

        let entries = archive_one(&home, "notes.txt", &seen);
        assert!(!holds_secret(&entries), "{entries:?}");
        for (_, kind, content) in &entries {
            assert!(
                *kind == tar::EntryType::Symlink || content.is_empty(),
                "{entries:?}"
            );
        }
    }

    #[test]
    fn a_folder_swapped_for_a_link_is_not_descended() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("bob");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("id_ed25519"), SECRET).unwrap();
        let home = tmp.path().join("alice");
        let data = home.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let seen = data.symlink_metadata().unwrap();
        std::fs::remove_dir(&data).unwrap();
        std::os::unix::fs::symlink(&outside, &data).unwrap();

        let entries = archive_one(&home, "data", &seen);
        assert!(!holds_secret(&entries), "{entries:?}");
        assert!(
            entries
                .iter()
                .all(|(path, _, _)| !path.starts_with("alice/data/")),
            "{entries:?}"
        );
    }

    #[test]
    fn homes_are_archived_with_links_as_links() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("shadow"), SECRET).unwrap();
        let homes = tmp.path().join("homes");
        std::fs::create_dir_all(homes.join("alice/data")).unwrap();
        std::fs::write(homes.join("alice/data/run1.csv"), b"1,2\n").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("shadow"), homes.join("alice/out")).unwrap();
        let out = tmp.path().join("homes.tar.zst");

        let summary = write_homes_archive(&homes, &out).unwrap();
        assert_eq!(summary.homes, ["alice"]);
        assert_eq!(summary.entries, 4);
        assert_eq!(summary.bytes, 4);
        let entries = entries_of(open_archive(&out).unwrap());
        assert!(!holds_secret(&entries), "{entries:?}");
        let kinds: Vec<_> = entries
            .iter()
            .map(|(path, kind, content)| (path.as_str(), *kind, content.as_slice()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("alice", tar::EntryType::Directory, &b""[..]),
                ("alice/data", tar::EntryType::Directory, b""),
                ("alice/data/run1.csv", tar::EntryType::Regular, b"1,2\n"),
                ("alice/out", tar::EntryType::Symlink, b""),
            ]
        );
    }
}
