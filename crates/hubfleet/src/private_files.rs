//! The hub's own files are private to the hub's account: the database (and SQLite's `-wal`,
//! `-shm`, `-journal`), the logs, the services' pid files, the ACME account and certificate keys
//! (`tls/`). Made so before the database is opened, also in a data dir an older hub left with
//! looser modes; files are created with their mode given, so no umask loosens them.
//!
//! With `hubfleet.local.system_users` the servers' accounts must still pass through the data dir
//! to their homes, the shared folder and the environments `hubfleet env create` makes there, and
//! through `logs/` to their own server's log: those directories are 0711 (enter a known name,
//! list nothing) and everything sensitive in them 0600 (a server's log 0640, group: its account).
//! Without system users every server runs as the hub's account, and they are 0700.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};
use hubfleet_config::HubConfig;

/// Create the data dir if needed and make the hub's files in it private.
pub fn secure_data_dir(config: &HubConfig) -> Result<()> {
    let data_dir = config.data_dir();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let system_users = config.hubfleet.local.system_users;
    let passage = if system_users { 0o711 } else { 0o700 };
    set_mode(&data_dir, passage)?;
    let logs = data_dir.join("logs");
    make_dir(&logs, passage)?;
    for entry in read_dir(&logs)? {
        private_log(&entry)?;
    }
    let services = data_dir.join("services");
    if services.is_dir() {
        set_mode(&services, 0o700)?;
        for entry in read_dir(&services)? {
            set_mode(&entry, 0o600)?;
        }
    }
    // The ACME account key and the certificate's private key (`proxy.https`).
    let tls = data_dir.join("tls");
    if tls.is_dir() {
        set_mode(&tls, 0o700)?;
        for entry in read_dir(&tls)? {
            set_mode(&entry, 0o600)?;
        }
    }
    // Homes in the data dir: no account may list who has one.
    if config.hubfleet.local.homes_dir.is_none() {
        make_dir(&data_dir.join("homes"), passage)?;
    }
    if let Some(database) = config.sqlite_path() {
        private_database(&database)?;
    }
    if data_dir
        .join(hubfleet_spawn::system_user::ACCOUNTS_RECORD)
        .is_file()
    {
        set_mode(
            &data_dir.join(hubfleet_spawn::system_user::ACCOUNTS_RECORD),
            0o600,
        )?;
    }
    private_stderr();
    Ok(())
}

/// Which existing Unix accounts users' servers may run as: those recorded in
/// `<data_dir>/system-accounts` (per machine, like the accounts themselves, so it is a file and
/// not a database row; it outlives a restored database) and `existing_system_users`.
pub fn system_accounts(config: &HubConfig) -> hubfleet_spawn::system_user::SystemAccounts {
    hubfleet_spawn::system_user::SystemAccounts::of_data_dir(
        &config.data_dir(),
        &config.hubfleet.local.existing_system_users,
    )
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| {
            format!(
                "making {} mode {mode:o} (the hub's account must own its data directory and the files in it)",
                path.display()
            )
        })
}

fn make_dir(dir: &Path, mode: u32) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    set_mode(dir, mode)
}

/// Regular files in `dir` (links are left alone: chmod would follow them).
fn read_dir(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    Ok(entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .collect())
}

/// A log others may not read; its group keeps reading only when the spawner gave it to a
/// server's account (not the hub's own group).
fn private_log(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o7777;
    let given_to_account = meta.gid() != nix::unistd::getegid().as_raw();
    let private = if given_to_account {
        mode & !0o037
    } else {
        mode & !0o077
    };
    if private != mode {
        set_mode(path, private)?;
    }
    Ok(())
}

/// The SQLite file, made 0600 before SQLite opens it: SQLite gives the `-wal`, `-shm` and
/// `-journal` files it creates the database file's mode.
fn private_database(database: &Path) -> Result<()> {
    if !database.exists() && database.parent().is_some_and(Path::is_dir) {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(database)
            .with_context(|| format!("creating the database {}", database.display()))?;
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        let path = Path::new(&name);
        if path.is_file() {
            set_mode(path, 0o600)?;
        }
    }
    Ok(())
}

/// When the hub's standard error is a file (`hubfleet serve 2>> hub.log`), that file is the hub's
/// log: other accounts may not read it. The operator's owner and group bits are kept.
fn private_stderr() {
    let stderr = Path::new("/proc/self/fd/2");
    let Ok(meta) = std::fs::metadata(stderr) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o7777;
    if !meta.is_file() || mode & 0o007 == 0 {
        return;
    }
    if let Err(e) = std::fs::set_permissions(stderr, std::fs::Permissions::from_mode(mode & !0o007))
    {
        tracing::warn!(error = %e, "the hub's log file is readable by every account and could not be made private; chmod o-rwx it");
    }
}
