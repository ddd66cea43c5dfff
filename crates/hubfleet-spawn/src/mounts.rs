//! Folders shown inside a user's home (2i2c's `shared`, `shared-readwrite`): bind mounts,
//! read-only where asked (which holds even for a server running as root).
//!
//! When the hub runs as root, the mounts are made in a mount namespace of the server's own
//! ([`in_namespace`]: the server is started through `unshare --mount`, which mounts and then
//! `exec`s it, keeping its pid): they vanish with the server, however it ends, and the host's
//! mount table never sees them. Otherwise ([`apply`]) they are made on the host and removed at
//! stop, or, without the privilege to mount, replaced by symbolic links, with a warning (only as
//! read-only as the folder's permissions).

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// A folder shown at `target` (absolute, usually inside the home): a bind mount of `source`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// The shell run inside the new namespace: `<source> <target> <ro|rw>`… `--` `<command>`.
const NAMESPACE_SCRIPT: &str = r#"set -e
while [ "$1" != "--" ]; do
  mount --bind "$1" "$2"
  if [ "$3" = ro ]; then mount -o remount,bind,ro "$2"; fi
  shift 3
done
shift
exec "$@""#;

fn find_program(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

/// The command that starts `program args` in a mount namespace of its own with `mounts`
/// made, switching to `account` (uid, gid) last; `None` when that is not possible here (not
/// root, or no `unshare`/`mount`/`setpriv`), or there is nothing to mount.
pub fn in_namespace(
    mounts: &[Mount],
    account: Option<(u32, u32)>,
    program: &str,
    args: &[String],
) -> Option<(String, Vec<String>)> {
    if mounts.is_empty() || !nix::unistd::geteuid().is_root() {
        return None;
    }
    let unshare = find_program("unshare")?;
    find_program("mount")?;
    let setpriv = match account {
        Some(_) => Some(find_program("setpriv")?),
        None => None,
    };
    let mut out: Vec<String> = vec![
        "--mount".into(),
        "--propagation".into(),
        "private".into(),
        "--".into(),
        "/bin/sh".into(),
        "-c".into(),
        NAMESPACE_SCRIPT.into(),
        "hubfleet-mounts".into(),
    ];
    for m in mounts {
        if std::fs::create_dir_all(&m.source).is_err() {
            return None;
        }
        if std::fs::symlink_metadata(&m.target).is_ok_and(|meta| meta.file_type().is_symlink()) {
            let _ = std::fs::remove_file(&m.target);
        }
        if std::fs::create_dir_all(&m.target).is_err() {
            return None;
        }
        out.push(m.source.to_str()?.to_owned());
        out.push(m.target.to_str()?.to_owned());
        out.push(if m.read_only { "ro" } else { "rw" }.into());
    }
    out.push("--".into());
    if let (Some(setpriv), Some((uid, gid))) = (setpriv, account) {
        out.push(setpriv.to_str()?.to_owned());
        out.extend([
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--clear-groups".into(),
            "--".into(),
        ]);
    }
    out.push(program.to_owned());
    out.extend(args.iter().cloned());
    Some((unshare.to_str()?.to_owned(), out))
}

/// Whether `path` is a mount point, from `/proc/self/mountinfo` (field 5; spaces are `\040`).
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = path.to_string_lossy().replace(' ', "\\040");
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|point| point == wanted)
}

/// Set up `mounts`; returns the targets that were bind-mounted (to unmount at stop) and
/// warnings.
pub fn apply(mounts: &[Mount]) -> (Vec<PathBuf>, Vec<String>) {
    let mut mounted = Vec::new();
    let mut warnings = Vec::new();
    for m in mounts {
        if let Err(e) = std::fs::create_dir_all(&m.source) {
            warnings.push(format!("cannot create {}: {e}", m.source.display()));
            continue;
        }
        // A leftover symlink from a run without mount privilege: replace it.
        if std::fs::symlink_metadata(&m.target).is_ok_and(|meta| meta.file_type().is_symlink()) {
            let _ = std::fs::remove_file(&m.target);
        }
        if is_mount_point(&m.target) {
            // Still mounted (a server found again after a restart, or a crash).
            let _ = umount2(&m.target, MntFlags::MNT_DETACH);
        }
        if let Err(e) = std::fs::create_dir_all(&m.target) {
            warnings.push(format!("cannot create {}: {e}", m.target.display()));
            continue;
        }
        let bound = mount(
            Some(&m.source),
            &m.target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        );
        let result = bound.and_then(|()| {
            if m.read_only {
                mount(
                    None::<&str>,
                    &m.target,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                    None::<&str>,
                )
                .inspect_err(|_| {
                    let _ = umount2(&m.target, MntFlags::MNT_DETACH);
                })
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) => mounted.push(m.target.clone()),
            Err(e) => {
                let _ = std::fs::remove_dir(&m.target);
                match std::os::unix::fs::symlink(&m.source, &m.target) {
                    Ok(()) => warnings.push(format!(
                        "cannot bind-mount {} at {} ({e}); made a symbolic link instead{}",
                        m.source.display(),
                        m.target.display(),
                        if m.read_only {
                            ", which is read-only only as far as the folder's permissions say"
                        } else {
                            ""
                        }
                    )),
                    Err(e2) => warnings.push(format!(
                        "cannot bind-mount ({e}) or link ({e2}) {} at {}",
                        m.source.display(),
                        m.target.display()
                    )),
                }
            }
        }
    }
    (mounted, warnings)
}

/// Undo [`apply`]: detach the mounts (lazily, so busy ones go once unused).
pub fn remove(targets: &[PathBuf]) {
    for target in targets {
        if is_mount_point(target) {
            if let Err(e) = umount2(target, MntFlags::MNT_DETACH) {
                tracing::warn!(target = %target.display(), error = %e, "unmounting a shared folder");
            }
        }
    }
}
