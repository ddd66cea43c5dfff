//! Folders shown inside a user's home (2i2c's `shared`, `shared-readwrite`): bind mounts,
//! read-only where asked (which holds even for a server running as root). Where mounting is
//! not possible (no privilege), a symbolic link is made instead, with a warning: it is only as
//! read-only as the folder's permissions.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::Mount;

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
