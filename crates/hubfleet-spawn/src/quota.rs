//! Per-user storage quotas (`singleuser.storage.capacity`) as filesystem project quotas on
//! each home.
//!
//! A project quota limits the blocks of every file tagged with a project id, wherever it is
//! written below a directory that carries the id with the inherit flag. Each home gets its own
//! project (its inode number, unique on its filesystem, so nothing needs to be stored). Two
//! filesystems have them: XFS mounted with `prjquota` (set with `xfs_quota`) and ext4 with the
//! `project` and `quota` features mounted with `prjquota` (set with `chattr -p` and
//! `setquota -P`, from e2fsprogs and quota-tools). Anywhere else the quota cannot be enforced:
//! [`QuotaSupport::Unsupported`] says why, and the server starts anyway.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::format_bytes;

const XFS_MAGIC: i64 = 0x5846_5342;
const EXT4_MAGIC: i64 = 0xEF53;

/// Whether quotas can be set below a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuotaSupport {
    Xfs {
        mount_point: PathBuf,
    },
    Ext4 {
        mount_point: PathBuf,
    },
    /// Why not, for people: "ext4 at /srv/homes has no project quotas (…)".
    Unsupported(String),
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, PartialEq, Eq)]
struct MountEntry {
    mount_point: PathBuf,
    fs_type: String,
    /// Per-mount and per-superblock options together.
    options: Vec<String>,
}

/// Unescapes mountinfo's octal escapes (`\040` is a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if let Some(v) = field
                .get(i + 1..i + 4)
                .and_then(|octal| u8::from_str_radix(octal, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            let mut options: Vec<String> = left.get(5)?.split(',').map(String::from).collect();
            options.extend(right.get(2).unwrap_or(&"").split(',').map(String::from));
            Some(MountEntry {
                mount_point: PathBuf::from(unescape(left.get(4)?)),
                fs_type: right.first()?.to_string(),
                options,
            })
        })
        .collect()
}

/// The mount that holds `path` (absolute, symbolic links resolved): the last-mounted entry
/// with the longest mount point above it.
fn mount_of<'a>(mounts: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| path.starts_with(&m.mount_point))
        .max_by_key(|(i, m)| (m.mount_point.components().count(), *i))
        .map(|(_, m)| m)
}

fn has_tool(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
}

/// Can quotas be set on homes below `dir`? `dir` is created if missing.
pub fn support(dir: &Path) -> QuotaSupport {
    if let Err(e) = std::fs::create_dir_all(dir) {
        return QuotaSupport::Unsupported(format!("{} cannot be created: {e}", dir.display()));
    }
    let real = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let magic = match nix::sys::statfs::statfs(&real) {
        // `f_type`'s integer type differs between platforms.
        #[allow(clippy::unnecessary_cast)]
        Ok(stat) => stat.filesystem_type().0 as i64,
        Err(e) => {
            return QuotaSupport::Unsupported(format!("statfs({}) failed: {e}", real.display()))
        }
    };
    let mounts =
        parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default());
    let mount = mount_of(&mounts, &real);
    let fs_name = mount.map_or_else(|| format!("filesystem {magic:#x}"), |m| m.fs_type.clone());
    let at = format!("{fs_name} at {}", real.display());
    let Some(mount) = mount.filter(|_| magic == XFS_MAGIC || magic == EXT4_MAGIC) else {
        return QuotaSupport::Unsupported(format!(
            "{at} has no project quotas (they need XFS or ext4 mounted with prjquota)"
        ));
    };
    let prjquota = mount
        .options
        .iter()
        .any(|o| matches!(o.as_str(), "prjquota" | "pquota" | "pqnoenforce"));
    if !prjquota {
        return QuotaSupport::Unsupported(format!(
            "{at} has no project quotas (mount {} with prjquota)",
            mount.mount_point.display()
        ));
    }
    let mount_point = mount.mount_point.clone();
    if magic == XFS_MAGIC {
        if !has_tool("xfs_quota") {
            return QuotaSupport::Unsupported(format!(
                "{at} has project quotas but xfs_quota is not installed (package xfsprogs)"
            ));
        }
        QuotaSupport::Xfs { mount_point }
    } else {
        if !has_tool("setquota") || !has_tool("chattr") {
            return QuotaSupport::Unsupported(format!(
                "{at} has project quotas but setquota or chattr is not installed (packages quota, e2fsprogs)"
            ));
        }
        QuotaSupport::Ext4 { mount_point }
    }
}

/// The sentence people see when a quota is not enforced.
pub fn not_enforced(capacity: u64, why: &str) -> String {
    format!(
        "storage quota {} not enforced: {why}",
        format_bytes(capacity)
    )
}

/// A quota in effect: the home's project id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    pub project: u32,
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("`{program}` could not run: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The project id of a home: its inode number (unique on its filesystem), folded into the
/// 32 bits project ids have.
fn project_id(home: &Path) -> Result<u32, String> {
    let ino = std::fs::metadata(home)
        .map_err(|e| format!("{}: {e}", home.display()))?
        .ino();
    let folded = (ino ^ (ino >> 32)) as u32;
    // 0 is "no project".
    Ok(folded.max(1))
}

/// Limit `home` (an existing directory) to `capacity` bytes. `Err`: why it is not enforced.
pub fn apply(home: &Path, capacity: u64) -> Result<Applied, String> {
    let homes = home.parent().unwrap_or(home);
    let project = project_id(home)?;
    let id = project.to_string();
    let kib = capacity.div_ceil(1024).max(1);
    let home_text = home.display().to_string();
    match support(homes) {
        QuotaSupport::Unsupported(why) => return Err(why),
        QuotaSupport::Xfs { mount_point } => {
            let mount = mount_point.display().to_string();
            run(
                "xfs_quota",
                &[
                    "-x",
                    "-c",
                    &format!("project -s -p {home_text} {id}"),
                    "-c",
                    &format!("limit -p bhard={kib}k {id}"),
                    &mount,
                ],
            )?;
        }
        QuotaSupport::Ext4 { mount_point } => {
            // Tag what is already there and let new files inherit the project.
            run("chattr", &["-R", "+P", "-p", &id, &home_text])?;
            let mount = mount_point.display().to_string();
            run(
                "setquota",
                &["-P", &id, "0", &kib.to_string(), "0", "0", &mount],
            )?;
        }
    }
    Ok(Applied { project })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 7:0 / /srv/homes rw,relatime shared:2 - xfs /dev/loop0 rw,attr2,inode64,prjquota
41 22 7:1 / /srv/my\\040data rw - ext4 /dev/loop1 rw,prjquota
42 40 0:5 / /srv/homes/tmp rw - tmpfs tmpfs rw
";

    #[test]
    fn finds_the_mount_of_a_path_and_its_options() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts.len(), 4);
        let m = mount_of(&mounts, Path::new("/srv/homes/alice")).unwrap();
        assert_eq!(m.fs_type, "xfs");
        assert!(m.options.iter().any(|o| o == "prjquota"));
        assert_eq!(
            mount_of(&mounts, Path::new("/srv/homes/tmp/x"))
                .unwrap()
                .fs_type,
            "tmpfs"
        );
        assert_eq!(
            mount_of(&mounts, Path::new("/srv/my data/bob"))
                .unwrap()
                .mount_point,
            PathBuf::from("/srv/my data")
        );
        assert_eq!(
            mount_of(&mounts, Path::new("/etc")).unwrap().fs_type,
            "ext4"
        );
        // `/srv/homesick` is not below `/srv/homes`.
        assert_eq!(
            mount_of(&mounts, Path::new("/srv/homesick"))
                .unwrap()
                .mount_point,
            PathBuf::from("/")
        );
    }

    #[test]
    fn without_project_quotas_the_reason_names_the_filesystem_and_path() {
        let dir = std::env::temp_dir().join(format!("hubfleet-quota-{}", std::process::id()));
        let support = support(&dir);
        let real = std::fs::canonicalize(&dir).unwrap();
        std::fs::remove_dir(&dir).unwrap();
        match support {
            QuotaSupport::Unsupported(why) => {
                assert!(why.contains("has no project quotas"), "{why}");
                assert!(why.contains(&real.display().to_string()), "{why}");
            }
            // A machine whose temp directory has project quotas: nothing to check here.
            other => eprintln!("temp dir supports quotas: {other:?}"),
        }
        assert_eq!(
            not_enforced(10 << 30, "tmpfs at /x has no project quotas"),
            "storage quota 10G not enforced: tmpfs at /x has no project quotas"
        );
    }
}
