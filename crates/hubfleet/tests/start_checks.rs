//! What `hubfleet serve` checks before it opens its database or binds its port:
//! - a hub running as root does not run users' servers as root unless told to
//!   (`hubfleet.local.allow_root`), or gives each user an account (`system_users`);
//! - with `system_users`, every program a server runs can be reached by the accounts.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestHub;

const DUMMY: &str = "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n";

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Run `hubfleet serve` with `yaml` plus `listen`/`data_dir` and `local_extra` (lines under
/// `hubfleet.local:`), expecting it to exit during start-up: (success, stderr, data dir).
fn serve_until_exit(dir: &Path, local_extra: &str) -> (bool, String) {
    let config = dir.join("hub.yaml");
    std::fs::write(
        &config,
        format!(
            "{DUMMY}hubfleet:\n  listen: 127.0.0.1:{}\n  data_dir: {}\n  local:\n{local_extra}",
            common::free_port(),
            dir.join("data").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubfleet"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the hub started although it should not have");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn root_hub_without_system_users_needs_the_explicit_opt_in() {
    if !is_root() {
        eprintln!("skipped: only a hub running as root refuses");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ok, stderr) = serve_until_exit(dir.path(), "    python_env: /nonexistent\n");
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("the hub runs as root and hubfleet.local.system_users is off")
            && stderr.contains("Run the hub as an unprivileged user")
            && stderr.contains("turn on `hubfleet.local.system_users: true`")
            && stderr.contains("hubfleet.local.allow_root: true"),
        "{stderr}"
    );
    // Refused before anything was made.
    assert!(!dir.path().join("data").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_hub_with_the_opt_in_starts_and_warns() {
    // The harness adds `allow_root: true` when the tests run as root.
    let hub = TestHub::start(&format!(
        "{DUMMY}singleuser:\n  cmd: {}\n",
        common::fake_singleuser()
    ));
    let log = hub.log();
    if is_root() {
        assert!(
            log.contains("hubfleet.local.allow_root: the hub runs as root, so every user's server runs as root"),
            "{log}"
        );
    } else {
        assert!(!log.contains("allow_root"), "{log}");
    }
}

/// A fake Python environment whose interpreter is a link into `private/` (as a pyenv Python under
/// /root), with `jupyterhub-singleuser` a script run by that interpreter.
fn venv_behind(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let private = dir.join("private");
    std::fs::create_dir_all(&private).unwrap();
    std::os::unix::fs::symlink("/bin/sh", private.join("python3.11")).unwrap();
    let venv = dir.join("venv");
    std::fs::create_dir_all(venv.join("bin")).unwrap();
    std::os::unix::fs::symlink(private.join("python3.11"), venv.join("bin/python3")).unwrap();
    let script = venv.join("bin/jupyterhub-singleuser");
    std::fs::write(
        &script,
        format!("#!{}\nexit 1\n", venv.join("bin/python3").display()),
    )
    .unwrap();
    for (path, mode) in [
        (dir, 0o755),
        (venv.as_path(), 0o755),
        (&venv.join("bin"), 0o755),
        (&script, 0o755),
        (&private, 0o700),
    ] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    (venv, private)
}

#[test]
fn system_users_need_an_interpreter_the_accounts_can_reach() {
    let dir = tempfile::tempdir().unwrap();
    let (venv, private) = venv_behind(dir.path());
    let (ok, stderr) = serve_until_exit(
        dir.path(),
        &format!(
            "    system_users: true\n    python_env: {}\n",
            venv.display()
        ),
    );
    assert!(!ok, "{stderr}");
    let expected = format!(
        "hubfleet.local.python_env: `{}` cannot be run by the servers' Unix accounts (hubfleet.local.system_users): {} lies behind {} (mode 700), which other accounts may not enter",
        venv.join("bin/jupyterhub-singleuser").display(),
        venv.join("bin/python3").display(),
        private.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(
        stderr.contains("under /usr or /opt")
            && stderr.contains(&format!("chmod o+x {}", private.display())),
        "{stderr}"
    );
    assert!(!dir.path().join("data").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_users_with_a_reachable_interpreter_start() {
    let dir = tempfile::tempdir().unwrap();
    let (venv, private) = venv_behind(dir.path());
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o755)).unwrap();
    let hub = TestHub::start_with(DUMMY, "    system_users: true\n", &venv);
    assert!(!hub.log().contains("cannot be run"), "{}", hub.log());
}
