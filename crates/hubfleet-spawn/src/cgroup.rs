//! Memory and CPU limits with cgroups: v2 where the unified hierarchy has the `memory`
//! controller, else v1 (`/sys/fs/cgroup/memory`, `/sys/fs/cgroup/cpu`).
//!
//! Each server gets its own group `hubfleet/<name>`; the server's process is moved into it
//! right after it is started, and everything it starts later (kernels, terminals) inherits
//! it. At the memory limit the kernel's OOM killer kills a process of the group (no swap:
//! `memory.memsw.limit_in_bytes` / `memory.swap.max` are set too); [`Cgroup::oom_kills`] tells
//! whether that happened, so the hub can say "killed: memory limit 1G reached".

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Limits;

const ROOT: &str = "/sys/fs/cgroup";
const PARENT: &str = "hubfleet";
/// CFS period for CPU limits.
const PERIOD_US: u64 = 100_000;

/// The cgroup of one server: its directories (one per v1 controller, one for v2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    pub version: u8,
    /// v1: memory (if any) then cpu (if any); v2: the one group.
    pub paths: Vec<PathBuf>,
    /// Memory limit in bytes, for the "killed" message.
    pub mem_limit: Option<u64>,
}

/// Which cgroup hierarchy this machine offers, if any we can use.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Hierarchy {
    V2,
    V1 { memory: bool, cpu: bool },
    None,
}

fn detect() -> Hierarchy {
    let root = Path::new(ROOT);
    if let Ok(controllers) = std::fs::read_to_string(root.join("cgroup.controllers")) {
        if controllers.split_whitespace().any(|c| c == "memory") {
            return Hierarchy::V2;
        }
    }
    let memory = root.join("memory/cgroup.procs").exists();
    let cpu = root.join("cpu/cgroup.procs").exists();
    if memory || cpu {
        Hierarchy::V1 { memory, cpu }
    } else {
        Hierarchy::None
    }
}

/// A file name for the group: letters, digits and `-`; anything else as `_xx`.
pub(crate) fn escape(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("writing {value:?} to {}: {e}", path.display()))
}

impl Cgroup {
    /// Create the group `hubfleet/<name>` with `limits`. `Ok(None)` when no limit is set;
    /// `Err` (a warning for the operator: the limits are not enforced) when cgroups cannot be
    /// used here.
    pub fn create(name: &str, limits: &Limits) -> Result<Option<Cgroup>, String> {
        if limits.is_empty() {
            return Ok(None);
        }
        let name = escape(name);
        let wants_mem = limits.mem_limit.is_some() || limits.mem_guarantee.is_some();
        let wants_cpu = limits.cpu_limit.is_some() || limits.cpu_guarantee.is_some();
        match detect() {
            Hierarchy::None => Err(format!(
                "no cgroup hierarchy is mounted at {ROOT}: memory and CPU limits are not enforced"
            )),
            Hierarchy::V2 => {
                let root = Path::new(ROOT);
                let parent = root.join(PARENT);
                std::fs::create_dir_all(&parent)
                    .map_err(|e| format!("creating {}: {e}", parent.display()))?;
                // Let the children of / and of hubfleet/ use the controllers.
                let _ = write(&root.join("cgroup.subtree_control"), "+memory +cpu");
                let _ = write(&parent.join("cgroup.subtree_control"), "+memory +cpu");
                let dir = parent.join(&name);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("creating {}: {e}", dir.display()))?;
                let group = Cgroup {
                    version: 2,
                    paths: vec![dir.clone()],
                    mem_limit: limits.mem_limit,
                };
                let result = (|| {
                    if let Some(limit) = limits.mem_limit {
                        write(&dir.join("memory.max"), &limit.to_string())?;
                        if dir.join("memory.swap.max").exists() {
                            write(&dir.join("memory.swap.max"), "0")?;
                        }
                        // No `memory.oom.group`: as with v1, the OOM killer takes the biggest
                        // process (usually the kernel that grew), and the server lives on.
                    }
                    if let Some(guarantee) = limits.mem_guarantee {
                        write(&dir.join("memory.low"), &guarantee.to_string())?;
                    }
                    if let Some(milli) = limits.cpu_limit {
                        let quota = (milli * PERIOD_US / 1000).max(1000);
                        write(&dir.join("cpu.max"), &format!("{quota} {PERIOD_US}"))?;
                    }
                    if let Some(milli) = limits.cpu_guarantee {
                        // cpu.weight is 1..10000, 100 for one CPU's worth.
                        let weight = (milli / 10).clamp(1, 10_000);
                        write(&dir.join("cpu.weight"), &weight.to_string())?;
                    }
                    Ok(())
                })();
                match result {
                    Ok(()) => Ok(Some(group)),
                    Err(e) => {
                        group.remove();
                        Err(e)
                    }
                }
            }
            Hierarchy::V1 { memory, cpu } => {
                if wants_mem && !memory || wants_cpu && !cpu {
                    return Err(format!(
                        "the cgroup v1 {} controller is not mounted under {ROOT}: limits are not enforced",
                        if wants_mem && !memory { "memory" } else { "cpu" }
                    ));
                }
                let mut group = Cgroup {
                    version: 1,
                    paths: Vec::new(),
                    mem_limit: limits.mem_limit,
                };
                let result = (|| {
                    if wants_mem {
                        let dir = Path::new(ROOT).join("memory").join(PARENT).join(&name);
                        std::fs::create_dir_all(&dir)
                            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
                        group.paths.push(dir.clone());
                        if let Some(limit) = limits.mem_limit {
                            write(&dir.join("memory.limit_in_bytes"), &limit.to_string())?;
                            // No swap beyond the limit (when swap accounting is on).
                            let memsw = dir.join("memory.memsw.limit_in_bytes");
                            if memsw.exists() {
                                write(&memsw, &limit.to_string())?;
                            }
                        }
                        if let Some(guarantee) = limits.mem_guarantee {
                            write(
                                &dir.join("memory.soft_limit_in_bytes"),
                                &guarantee.to_string(),
                            )?;
                        }
                    }
                    if wants_cpu {
                        let dir = Path::new(ROOT).join("cpu").join(PARENT).join(&name);
                        std::fs::create_dir_all(&dir)
                            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
                        group.paths.push(dir.clone());
                        if let Some(milli) = limits.cpu_limit {
                            write(&dir.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
                            let quota = (milli * PERIOD_US / 1000).max(1000);
                            write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
                        }
                        if let Some(milli) = limits.cpu_guarantee {
                            let shares = (milli * 1024 / 1000).max(2);
                            write(&dir.join("cpu.shares"), &shares.to_string())?;
                        }
                    }
                    Ok(())
                })();
                match result {
                    Ok(()) => Ok(Some(group)),
                    Err(e) => {
                        group.remove();
                        Err(e)
                    }
                }
            }
        }
    }

    /// Move a process into the group.
    pub fn add(&self, pid: i32) -> Result<(), String> {
        for dir in &self.paths {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Processes still in the group.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for dir in &self.paths {
            if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// How many processes the OOM killer killed in the group (0 if unknown).
    pub fn oom_kills(&self) -> u64 {
        let (file, key) = match self.version {
            2 => ("memory.events", "oom_kill"),
            _ => ("memory.oom_control", "oom_kill"),
        };
        self.paths
            .iter()
            .filter_map(|dir| std::fs::read_to_string(dir.join(file)).ok())
            .flat_map(|text| {
                text.lines()
                    .filter_map(|line| {
                        let (k, v) = line.split_once(' ')?;
                        (k == key).then(|| v.trim().parse::<u64>().ok()).flatten()
                    })
                    .collect::<Vec<_>>()
            })
            .sum()
    }

    /// Remove the group's directories (the group must be empty). Errors are logged.
    pub fn remove(&self) {
        for dir in &self.paths {
            if let Err(e) = std::fs::remove_dir(dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(cgroup = %dir.display(), error = %e, "removing a server's cgroup");
                }
            }
        }
    }
}

/// Where the servers' groups live: the v2 parent, and the v1 parents of each controller.
fn parents() -> Vec<PathBuf> {
    let root = Path::new(ROOT);
    [
        root.join(PARENT),
        root.join("memory").join(PARENT),
        root.join("cpu").join(PARENT),
    ]
    .into_iter()
    .filter(|p| p.is_dir())
    .collect()
}

/// Remove the servers' groups that a hub killed outright left behind: every group under
/// `hubfleet/` that holds no process, is not in `keep` (the groups of servers that still run)
/// and is older than `min_age`. The parent is shared by every hub on the machine, and a group
/// is empty for a moment while a start (this hub's or another's) moves its server in: the age
/// leaves those alone. An empty group limits nothing, so removing one is never harmful.
/// The groups removed.
pub fn remove_stale(keep: &[PathBuf], min_age: std::time::Duration) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for parent in parents() {
        let Ok(entries) = std::fs::read_dir(&parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if !meta.is_dir() || keep.contains(&dir) {
                continue;
            }
            let young = meta
                .modified()
                .ok()
                .and_then(|at| at.elapsed().ok())
                .is_none_or(|age| age < min_age);
            let empty = std::fs::read_to_string(dir.join("cgroup.procs"))
                .is_ok_and(|procs| procs.trim().is_empty());
            if young || !empty {
                continue;
            }
            // Fails (and is left) if a process moved in meanwhile or it has groups inside.
            match std::fs::remove_dir(&dir) {
                Ok(()) => removed.push(dir),
                Err(e) => {
                    tracing::debug!(cgroup = %dir.display(), error = %e, "left a server's cgroup")
                }
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped() {
        assert_eq!(escape("alice"), "alice");
        assert_eq!(escape("a/b c"), "a_2fb_20c");
        assert_eq!(escape(".."), "_2e_2e");
    }

    #[test]
    fn no_limits_no_group() {
        assert_eq!(Cgroup::create("x", &Limits::default()).unwrap(), None);
    }
}
