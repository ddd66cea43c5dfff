//! Isolation by Unix accounts (TLJH's model): each hub user's server runs as the account
//! `jupyter-<escaped name>`, created with `useradd` on first spawn, with a mode-0700 home that
//! the account owns.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::unistd::{Gid, Group, Uid, User};

use crate::SpawnError;

/// The group whose members may write to the shared folder (admins, with system users).
pub const SHARED_WRITERS_GROUP: &str = "jupyterhub-admins";

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

/// What the gecos field of the accounts the hub makes says.
const COMMENT: &str = "hubfleet user";

/// Which existing Unix accounts the hub may run servers as: those it created itself (recorded,
/// with their uid, in a root-only file of the data dir) and those the operator lists
/// (`hubfleet.local.existing_system_users`). Any other account of that name is someone
/// else's: taking it would hand a user's files to it, or its files to a user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SystemAccounts {
    /// The record of accounts the hub created (`<data_dir>/system-accounts`); `None`: no
    /// record, so only listed accounts and new ones are used (and new ones are not remembered).
    pub record: Option<PathBuf>,
    /// Accounts the operator allows although the hub did not create them.
    pub existing: Vec<String>,
}

/// The record's file name in the hub's data directory.
pub const ACCOUNTS_RECORD: &str = "system-accounts";

impl SystemAccounts {
    /// The accounts of a hub whose data directory is `data_dir`
    /// (`<data_dir>/system-accounts`), and those the operator lists.
    pub fn of_data_dir(data_dir: &Path, existing: &[String]) -> SystemAccounts {
        SystemAccounts {
            record: Some(data_dir.join(ACCOUNTS_RECORD)),
            existing: existing.to_vec(),
        }
    }
}

/// One writer of the record at a time within this process (appends of one line are atomic
/// between processes).
static RECORD_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl SystemAccounts {
    /// Whether the record says the hub created `name` with this uid (an account deleted and
    /// made again by someone else has another uid, mostly; the name alone is not proof).
    fn created(&self, name: &str, uid: Uid) -> Result<bool, SpawnError> {
        let Some(record) = &self.record else {
            return Ok(false);
        };
        let text = match std::fs::read_to_string(record) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(source) => {
                return Err(SpawnError::Io {
                    what: "record of the hub's Unix accounts",
                    path: record.clone(),
                    source,
                })
            }
        };
        let uid = uid.as_raw().to_string();
        Ok(text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .any(|line| line.split_whitespace().eq([name, uid.as_str()])))
    }

    /// Note that the hub created (or adopted, see [`made_by_an_older_hub`]) `name`.
    pub fn remember(&self, name: &str, uid: Uid) -> Result<(), SpawnError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let Some(record) = &self.record else {
            return Ok(());
        };
        let _guard = RECORD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let io = |source| SpawnError::Io {
            what: "record of the hub's Unix accounts",
            path: record.clone(),
            source,
        };
        let fresh = !record.exists();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(record)
            .map_err(io)?;
        let mut text = String::new();
        if fresh {
            text.push_str(
                "# Unix accounts hubfleet created for users' servers (name uid); only these, and\n\
                 # those in hubfleet.local.existing_system_users, are used. Keep this file.\n",
            );
        }
        text.push_str(&format!("{name} {}\n", uid.as_raw()));
        file.write_all(text.as_bytes()).map_err(io)
    }
}

impl SystemAccounts {
    /// The existing account `name`, if the hub may run servers as it (it made it, or the
    /// operator lists it); `None` when there is no such account or it is someone else's.
    /// Nothing is created or recorded.
    pub fn usable(&self, name: &str) -> Result<Option<Account>, SpawnError> {
        let Some(user) = User::from_name(name).map_err(|e| SpawnError::Other(e.to_string()))?
        else {
            return Ok(None);
        };
        if user.uid.is_root() {
            return Ok(None);
        }
        let listed = self.existing.iter().any(|listed| listed == name);
        Ok(
            (listed || self.created(name, user.uid)?).then_some(Account {
                uid: user.uid,
                gid: user.gid,
            }),
        )
    }
}

/// An account an older hubfleet made, before it kept a record: `useradd` gave it the hub's
/// comment and this very home, which nothing else would choose.
fn made_by_an_older_hub(user: &User, home: &Path) -> bool {
    user.gecos.to_str() == Ok(COMMENT) && user.dir == home
}

/// The account `name` with home `home`, created with `useradd` if missing. The home is created,
/// owned by the account (recursively, the first time it changes hands) and made mode 0700.
/// An account that exists already is used only when `accounts` allows it; otherwise the start
/// is refused before anything is created or changes hands.
pub fn ensure_account(
    name: &str,
    home: &Path,
    accounts: &SystemAccounts,
) -> Result<Account, SpawnError> {
    let lookup = || User::from_name(name).map_err(|e| SpawnError::Other(e.to_string()));
    let user = match lookup()? {
        Some(user) => {
            if user.uid.is_root() {
                return Err(SpawnError::Other(format!(
                    "account {name} is root; refusing to run a user's server as root"
                )));
            }
            if accounts.created(name, user.uid)? {
                user
            } else if accounts.existing.iter().any(|listed| listed == name) {
                tracing::info!(
                    account = name,
                    "using an existing Unix account, as hubfleet.local.existing_system_users allows"
                );
                user
            } else if made_by_an_older_hub(&user, home) && accounts.record.is_some() {
                accounts.remember(name, user.uid)?;
                tracing::info!(
                    account = name,
                    "recorded a Unix account an older hubfleet created"
                );
                user
            } else {
                return Err(SpawnError::Other(format!(
                    "the Unix account {name} already exists on this machine (uid {}, home {}) and \
                     this hub did not create it, so it will not run a user's server as that \
                     account nor give it {}. If {name} is meant for this user, list it in \
                     hubfleet.local.existing_system_users; otherwise remove or rename that account \
                     (userdel {name}) and start the server again",
                    user.uid,
                    user.dir.display(),
                    home.display()
                )));
            }
        }
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
                    COMMENT,
                    name,
                ],
            )?;
            tracing::info!(account = name, "created a Unix account");
            let user = lookup()?.ok_or_else(|| {
                SpawnError::Other(format!("account {name} missing after useradd"))
            })?;
            if user.uid.is_root() {
                return Err(SpawnError::Other(format!(
                    "account {name} is root; refusing to run a user's server as root"
                )));
            }
            accounts.remember(name, user.uid)?;
            user
        }
    };
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

/// Why the servers' accounts cannot run a program: a directory on the way that does not let
/// other accounts in, or a file they may not execute (or, for a `#!` script, read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreachable {
    /// The file being reached (the program, a link's target or a script's interpreter).
    pub file: PathBuf,
    /// What stops other accounts.
    pub blocked_at: PathBuf,
    /// Its permission bits.
    pub mode: u32,
    /// What others would need there: `o+x` or `o+r`.
    pub needs: &'static str,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.file == self.blocked_at {
            write!(
                f,
                "{} is mode {:o}, and other accounts need {} on it",
                self.file.display(),
                self.mode,
                self.needs
            )
        } else {
            write!(
                f,
                "{} lies behind {} (mode {:o}), which other accounts may not enter ({} is missing)",
                self.file.display(),
                self.blocked_at.display(),
                self.mode,
                self.needs
            )
        }
    }
}

/// Symbolic links followed before giving up (the kernel's limit).
const MAX_LINKS: usize = 40;
/// `#!` interpreters followed (the kernel allows a few levels).
const MAX_INTERPRETERS: usize = 4;

fn mode_of(meta: &std::fs::Metadata) -> u32 {
    meta.permissions().mode() & 0o7777
}

/// `path` resolved as the kernel resolves it for an account that is not the owner and not in
/// the group: every directory passed through, also those a symbolic link leads through, must
/// let others in (`o+x`). The real path, or `None` when nothing is there.
fn resolve_as_other(path: &Path) -> Result<Option<PathBuf>, Unreachable> {
    use std::path::Component;
    let path = &std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut pending: std::collections::VecDeque<std::ffi::OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut current = PathBuf::from("/");
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            current.pop();
            continue;
        }
        let next = current.join(&name);
        let Ok(meta) = std::fs::symlink_metadata(&next) else {
            return Ok(None);
        };
        // Looking up `name` in `current` needs search permission there.
        let dir_meta = std::fs::metadata(&current).map_err(|_| Unreachable {
            file: path.to_path_buf(),
            blocked_at: current.clone(),
            mode: 0,
            needs: "o+x",
        })?;
        if mode_of(&dir_meta) & 0o001 == 0 {
            return Err(Unreachable {
                file: path.to_path_buf(),
                blocked_at: current,
                mode: mode_of(&dir_meta),
                needs: "o+x",
            });
        }
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Ok(None);
            }
            let Ok(target) = std::fs::read_link(&next) else {
                return Ok(None);
            };
            if target.is_absolute() {
                current = PathBuf::from("/");
            }
            for part in target.components().rev() {
                match part {
                    Component::Normal(n) => pending.push_front(n.to_os_string()),
                    Component::ParentDir => pending.push_front("..".into()),
                    _ => {}
                }
            }
        } else {
            current = next;
        }
    }
    Ok(Some(current))
}

/// Can an account that is neither owner nor in the group execute the file `path`? `Ok(false)`
/// when there is no such file. Scripts must also be readable, and their `#!` interpreter (or,
/// for `#!/usr/bin/env NAME`, NAME on `search_path`) runnable in turn.
fn file_runnable_by_others(
    path: &Path,
    search_path: &str,
    depth: usize,
) -> Result<bool, Unreachable> {
    let Some(real) = resolve_as_other(path)? else {
        return Ok(false);
    };
    let Ok(meta) = std::fs::metadata(&real) else {
        return Ok(false);
    };
    if !meta.is_file() {
        return Ok(false);
    }
    let blocked = |needs| Unreachable {
        file: path.to_path_buf(),
        blocked_at: real.clone(),
        mode: mode_of(&meta),
        needs,
    };
    if mode_of(&meta) & 0o001 == 0 {
        return Err(blocked("o+x"));
    }
    let Some(interpreter_line) = shebang(&real) else {
        return Ok(true);
    };
    if mode_of(&meta) & 0o004 == 0 {
        return Err(blocked("o+r"));
    }
    if depth >= MAX_INTERPRETERS {
        return Ok(true);
    }
    let mut words = interpreter_line.split_whitespace();
    let Some(interpreter) = words.next() else {
        return Ok(true);
    };
    if Path::new(interpreter).file_name() == Some(std::ffi::OsStr::new("env")) {
        if let Some(name) = words.find(|w| !w.starts_with('-') && !w.contains('=')) {
            return program_runnable_by_others(name, search_path, depth + 1);
        }
    }
    file_runnable_by_others(Path::new(interpreter), search_path, depth + 1)
}

/// The interpreter line of a `#!` script, if `path` is one.
fn shebang(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    let rest = head[..n].strip_prefix(b"#!")?;
    let line = rest.split(|&b| b == b'\n').next()?;
    Some(String::from_utf8_lossy(line).trim().to_string())
}

fn program_runnable_by_others(
    program: &str,
    search_path: &str,
    depth: usize,
) -> Result<bool, Unreachable> {
    if program.contains('/') {
        return file_runnable_by_others(Path::new(program), search_path, depth);
    }
    // As execvp: the first candidate that runs wins; one that cannot is skipped, and reported
    // only when no other runs.
    let mut first_blocked = None;
    for dir in search_path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = std::path::absolute(Path::new(dir).join(program))
            .unwrap_or_else(|_| Path::new(dir).join(program));
        match file_runnable_by_others(&candidate, search_path, depth) {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            Err(blocked) => {
                first_blocked.get_or_insert(blocked);
            }
        }
    }
    match first_blocked {
        Some(blocked) => Err(blocked),
        None => Ok(false),
    }
}

/// Whether the servers' accounts (`system_users`) can run `program`: a path, or a name looked up
/// on `search_path` as `execvp` does. Symbolic links and `#!` interpreters are followed, and only
/// the permission bits for "other" count: the accounts own nothing outside their homes and are
/// in no group but their own. A program that is not there at all is not this check's business
/// (the start says so); `Ok(())` then.
pub fn check_runnable_by_accounts(program: &str, search_path: &str) -> Result<(), Unreachable> {
    program_runnable_by_others(program, search_path, 0).map(|_| ())
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

    #[test]
    fn the_record_names_accounts_with_their_uid() {
        let dir = tempfile::tempdir().unwrap();
        let accounts = SystemAccounts {
            record: Some(dir.path().join("system-accounts")),
            existing: Vec::new(),
        };
        let uid = Uid::from_raw(4242);
        assert!(!accounts.created("jupyter-bob", uid).unwrap());
        accounts.remember("jupyter-bob", uid).unwrap();
        accounts
            .remember("jupyter-ann", Uid::from_raw(4243))
            .unwrap();
        assert!(accounts.created("jupyter-bob", uid).unwrap());
        // Same name, another uid: an account made again by someone else.
        assert!(!accounts
            .created("jupyter-bob", Uid::from_raw(4243))
            .unwrap());
        assert!(!accounts.created("jupyter-bo", uid).unwrap());
        let text = std::fs::read_to_string(dir.path().join("system-accounts")).unwrap();
        assert!(
            text.starts_with("# Unix accounts hubfleet created"),
            "{text}"
        );
        assert!(
            text.ends_with("jupyter-bob 4242\njupyter-ann 4243\n"),
            "{text}"
        );
        let mode = std::fs::metadata(dir.path().join("system-accounts"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn programs_behind_closed_directories_are_found_out() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let set_mode = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        set_mode(root, 0o755);
        // A Python under a private directory (as pyenv's under /root), and a venv that links to it.
        let private = root.join("private");
        std::fs::create_dir_all(private.join("bin")).unwrap();
        let python = private.join("bin/python3.11");
        std::fs::write(&python, "ELF").unwrap();
        set_mode(&python, 0o755);
        set_mode(&private.join("bin"), 0o755);
        set_mode(&private, 0o700);
        let venv = root.join("venv/bin");
        std::fs::create_dir_all(&venv).unwrap();
        set_mode(&root.join("venv"), 0o755);
        set_mode(&venv, 0o755);
        symlink("../../private/bin/python3.11", venv.join("python3")).unwrap();
        let script = venv.join("jupyterhub-singleuser");
        std::fs::write(
            &script,
            format!("#!{}\nimport sys\n", venv.join("python3").display()),
        )
        .unwrap();
        set_mode(&script, 0o755);

        let err = check_runnable_by_accounts(script.to_str().unwrap(), "").unwrap_err();
        assert_eq!(err.file, venv.join("python3"));
        assert_eq!(err.blocked_at, private);
        assert_eq!((err.mode, err.needs), (0o700, "o+x"));
        assert!(
            err.to_string()
                .contains("(mode 700), which other accounts may not enter"),
            "{err}"
        );

        // Opened up, the same chain runs.
        set_mode(&private, 0o711);
        check_runnable_by_accounts(script.to_str().unwrap(), "").unwrap();
        // A script others cannot read cannot be interpreted for them.
        set_mode(&script, 0o711);
        let err = check_runnable_by_accounts(script.to_str().unwrap(), "").unwrap_err();
        assert_eq!((err.blocked_at.clone(), err.needs), (script.clone(), "o+r"));
        set_mode(&script, 0o755);
        // A file only its owner may execute.
        set_mode(&python, 0o744);
        let err = check_runnable_by_accounts(python.to_str().unwrap(), "").unwrap_err();
        assert_eq!((err.mode, err.needs), (0o744, "o+x"));
        set_mode(&python, 0o755);

        // `#!/usr/bin/env python3` looks the name up on PATH, as execvp does: a blocked
        // candidate is skipped when a later one runs, and reported when none does.
        set_mode(&private, 0o700);
        let open_bin = root.join("open-bin");
        std::fs::create_dir_all(&open_bin).unwrap();
        set_mode(&open_bin, 0o755);
        let env_script = root.join("tool");
        std::fs::write(&env_script, "#!/usr/bin/env python3\n").unwrap();
        set_mode(&env_script, 0o755);
        let venv_only = venv.display().to_string();
        let err = check_runnable_by_accounts(env_script.to_str().unwrap(), &venv_only).unwrap_err();
        assert_eq!(err.blocked_at, private);
        std::fs::write(open_bin.join("python3"), "ELF").unwrap();
        set_mode(&open_bin.join("python3"), 0o755);
        let both = format!("{}:{}", venv.display(), open_bin.display());
        check_runnable_by_accounts(env_script.to_str().unwrap(), &both).unwrap();
        check_runnable_by_accounts("python3", &both).unwrap();
        assert!(check_runnable_by_accounts("python3", &venv_only).is_err());
        // Missing programs are the start's business, not this check's.
        check_runnable_by_accounts("no-such-program", &both).unwrap();
        check_runnable_by_accounts(root.join("missing").to_str().unwrap(), "").unwrap();
    }
}
