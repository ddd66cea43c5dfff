//! Isolation by Unix accounts (TLJH's model): each hub user's server runs as the account
//! `jupyter-<escaped name>`, created with `useradd` on first spawn, with a mode-0700 home that
//! the account owns.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use nix::unistd::{Gid, Group, Uid, User};

use crate::SpawnError;

/// The longest Unix account name `useradd` accepts.
const MAX_ACCOUNT: usize = 32;
const PREFIX: &str = "jupyter-";

/// The Unix account of a hub user: `jupyter-` and the name with everything but `a-z`, `0-9`
/// and `-` written as `_xx` (so distinct names never share an account). Too long names are cut
/// and end with a hash of the whole name.
pub fn account_name(user: &str) -> String {
    let mut escaped = String::new();
    for b in user.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || (b == b'-' && !escaped.is_empty()) {
            escaped.push(b as char);
        } else {
            escaped.push_str(&format!("_{b:02x}"));
        }
    }
    let room = MAX_ACCOUNT - PREFIX.len();
    if escaped.len() > room {
        // FNV-1a, 64 bits: stable across releases (unlike std's hasher).
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in user.bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        let hex = format!("{hash:016x}");
        let keep = room - hex.len() - 1;
        escaped = format!("{}-{hex}", &escaped[..keep]);
    }
    format!("{PREFIX}{escaped}")
}

/// A Unix account to run as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Account {
    pub uid: Uid,
    pub gid: Gid,
}

fn run(program: &str, args: &[&str]) -> Result<(), SpawnError> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| SpawnError::Other(format!("could not run {program}: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(SpawnError::Other(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// The group `name`, created if missing.
pub fn ensure_group(name: &str) -> Result<Gid, SpawnError> {
    if let Some(group) = Group::from_name(name).map_err(|e| SpawnError::Other(e.to_string()))? {
        return Ok(group.gid);
    }
    run("groupadd", &["--force", name])?;
    Group::from_name(name)
        .map_err(|e| SpawnError::Other(e.to_string()))?
        .map(|g| g.gid)
        .ok_or_else(|| SpawnError::Other(format!("group {name} missing after groupadd")))
}

/// The account `name` with home `home`, created with `useradd` if missing. The home is created,
/// owned by the account (recursively, the first time it changes hands) and made mode 0700.
pub fn ensure_account(name: &str, home: &Path) -> Result<Account, SpawnError> {
    let lookup = || User::from_name(name).map_err(|e| SpawnError::Other(e.to_string()));
    let user = match lookup()? {
        Some(user) => user,
        None => {
            let home_text = home.to_str().ok_or_else(|| {
                SpawnError::Other(format!("home {} is not valid UTF-8", home.display()))
            })?;
            run(
                "useradd",
                &[
                    "--no-create-home",
                    "--home-dir",
                    home_text,
                    "--shell",
                    "/bin/bash",
                    "--user-group",
                    "--comment",
                    "hubfleet user",
                    name,
                ],
            )?;
            tracing::info!(account = name, "created a Unix account");
            lookup()?
                .ok_or_else(|| SpawnError::Other(format!("account {name} missing after useradd")))?
        }
    };
    if user.uid.is_root() {
        return Err(SpawnError::Other(format!(
            "account {name} is root; refusing to run a user's server as root"
        )));
    }
    std::fs::create_dir_all(home).map_err(|source| SpawnError::Io {
        what: "home directory",
        path: home.to_path_buf(),
        source,
    })?;
    let io = |source| SpawnError::Io {
        what: "home directory",
        path: home.to_path_buf(),
        source,
    };
    let meta = std::fs::symlink_metadata(home).map_err(io)?;
    use std::os::unix::fs::MetadataExt;
    if meta.uid() != user.uid.as_raw() {
        chown_tree(home, user.uid.as_raw(), user.gid.as_raw()).map_err(io)?;
    }
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    check_reachable(home, name)?;
    Ok(Account {
        uid: user.uid,
        gid: user.gid,
    })
}

/// `lchown` everything below `dir` (symbolic links themselves, never their targets), staying
/// on `dir`'s file system (bind mounts inside a home are left alone).
fn chown_tree(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::symlink_metadata(dir)?.dev();
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current)? {
            let entry = entry?;
            let meta = std::fs::symlink_metadata(entry.path())?;
            if meta.dev() != dev {
                continue;
            }
            std::os::unix::fs::lchown(entry.path(), Some(uid), Some(gid))?;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(())
}

/// Every directory above `home` must let others through (`o+x`), or the account cannot reach
/// its own home.
fn check_reachable(home: &Path, account: &str) -> Result<(), SpawnError> {
    for dir in home.ancestors().skip(1) {
        if dir.as_os_str().is_empty() {
            continue;
        }
        let Ok(meta) = std::fs::metadata(dir) else {
            continue;
        };
        if meta.permissions().mode() & 0o001 == 0 {
            return Err(SpawnError::Other(format!(
                "{} is not reachable by {account}: {} lets others no access (mode {:o}); make it traversable (`chmod o+x {}`) or put the homes elsewhere (hubfleet.local.homes_dir)",
                home.display(),
                dir.display(),
                meta.permissions().mode() & 0o7777,
                dir.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_are_safe_and_distinct() {
        assert_eq!(account_name("alice"), "jupyter-alice");
        assert_eq!(account_name("a.b"), "jupyter-a_2eb");
        assert_eq!(account_name("a_2eb"), "jupyter-a_5f2eb");
        assert_eq!(account_name("-x"), "jupyter-_2dx");
        assert_eq!(account_name("Root"), "jupyter-_52oot");
        let long = account_name("a-very-long-user-name-from-an-identity-provider");
        assert!(long.len() <= 32, "{long}");
        assert_ne!(
            long,
            account_name("a-very-long-user-name-from-an-identity-provider2")
        );
        for name in ["alice", "a.b", "x@example.org", "ünï"] {
            let a = account_name(name);
            assert!(a
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'));
        }
    }
}
