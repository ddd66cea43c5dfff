//! Storage and isolation, against the real binary, with a stand-in server that reports what
//! it can do from inside:
//! - a file in a home survives stop, start and a hub restart;
//! - `~/shared` is read-only (bind mount) and `~/shared-readwrite` is writable for admins;
//! - with `hubfleet.local.system_users`, each server runs as `jupyter-<name>`, cannot read
//!   another user's home (mode 0700) and gets no variable of the hub beyond the protocol's.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use common::{Browser, TestHub};
use reqwest::Method;

const STAND_IN: &str = r#"
import os, pathlib, http.server, subprocess
home = pathlib.Path(os.environ["HOME"])
report = home / "report.txt"
lines = []
persist = home / "persist.txt"
if not persist.exists():
    persist.write_text("written at the first start\n")
try:
    (home / "shared" / ("from-" + os.environ["JUPYTERHUB_USER"])).write_text("x")
    lines.append("shared=rw")
except OSError as e:
    lines.append("shared=%s" % e.strerror)
notice = home / "shared" / "notice.txt"
if notice.exists():
    lines.append("notice=" + notice.read_text().strip())
if (home / "shared-readwrite").exists():
    try:
        (home / "shared-readwrite" / "notice.txt").write_text("hello from an admin\n")
        lines.append("shared-readwrite=rw")
    except OSError as e:
        lines.append("shared-readwrite=%s" % e.strerror)
other = os.environ.get("OTHER_USER")
if other and other != os.environ["JUPYTERHUB_USER"]:
    try:
        os.listdir(home.parent / other)
        lines.append("other=readable")
    except OSError as e:
        lines.append("other=%s" % e.strerror)
(home / "secret.txt").write_text("mine\n")
lines.append("whoami=" + subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip())
report.write_text("\n".join(lines) + "\n")
(home / "env.txt").write_text("\n".join(sorted(os.environ)) + "\n")
url = os.environ["JUPYTERHUB_SERVICE_URL"]
port = int(url.rsplit(":", 1)[1].split("/")[0])
http.server.HTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler).serve_forever()
"#;

fn report(hub: &TestHub, user: &str) -> String {
    std::fs::read_to_string(hub.data_dir().join("homes").join(user).join("report.txt"))
        .unwrap_or_default()
}

async fn start(b: &Browser, user: &str) {
    let (status, body) = b
        .call(Method::POST, &format!("/hub/api/users/{user}/server"), None)
        .await;
    assert!(status == 201 || status == 202, "{status} {body}");
    let model = b.wait_ready(user, Duration::from_secs(30)).await;
    assert_eq!(model["server"], format!("/user/{user}/"), "{model}");
}

async fn stop(b: &Browser, user: &str) {
    let (status, body) = b
        .call(
            Method::DELETE,
            &format!("/hub/api/users/{user}/server"),
            None,
        )
        .await;
    assert!(status == 204 || status == 202, "{status} {body}");
}

fn hub_with(extra_singleuser: &str, hubfleet_extra: &str, script_dir: &std::path::Path) -> TestHub {
    hub_with_services(extra_singleuser, hubfleet_extra, script_dir, "")
}

/// [`hub_with`], with `hub.services` (lines indented four spaces).
fn hub_with_services(
    extra_singleuser: &str,
    hubfleet_extra: &str,
    script_dir: &std::path::Path,
    services: &str,
) -> TestHub {
    let script = script_dir.join("stand_in.py");
    std::fs::write(&script, STAND_IN).unwrap();
    std::fs::set_permissions(script_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let services = if services.is_empty() {
        String::new()
    } else {
        format!("  services:\n{services}")
    };
    let yaml = format!(
        "hub:\n{services}  config:\n    JupyterHub:\n      authenticator_class: dummy\n    Authenticator:\n      admin_users: [st-admin, iso-admin]\nsingleuser:\n  cmd: [python3, {}]\n{extra_singleuser}",
        script.display()
    );
    // The accounts of system users must be able to run the environment's Python: the test
    // environment's may live under /root (pyenv), so they get one of the system's.
    let python_env = if hubfleet_extra.contains("system_users") {
        common::system_python_env(script_dir)
    } else {
        common::python_env()
    };
    TestHub::start_with(&yaml, hubfleet_extra, &python_env)
}

#[tokio::test(flavor = "multi_thread")]
async fn homes_persist_and_shared_is_read_only() {
    let scripts = tempfile::tempdir().unwrap();
    let mut hub = hub_with("", "", scripts.path());
    let admin = Browser::new(&hub);
    admin.login("st-admin", "x").await;
    let alice = Browser::new(&hub);
    alice.login("st-alice", "x").await;

    start(&admin, "st-admin").await;
    start(&alice, "st-alice").await;
    let alice_report = report(&hub, "st-alice");
    assert!(
        alice_report.contains("shared=Read-only file system"),
        "{alice_report}"
    );
    assert!(!alice_report.contains("shared-readwrite"), "{alice_report}");
    let admin_report = report(&hub, "st-admin");
    assert!(
        admin_report.contains("shared-readwrite=rw"),
        "{admin_report}"
    );
    assert!(
        admin_report.contains("shared=Read-only file system"),
        "{admin_report}"
    );
    // What the admin wrote is what users read (alice started after the admin).
    assert!(
        alice_report.contains("notice=hello from an admin"),
        "{alice_report}"
    );
    assert!(hub.data_dir().join("shared/notice.txt").exists());
    // The mounts live in the servers' own mount namespaces: nothing on the host to leak.
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let homes = hub.data_dir().join("homes");
    assert!(
        !host_mounts.contains(&*homes.to_string_lossy()),
        "{host_mounts}"
    );

    // The home survives a stop and a start, and a hub restart.
    let persist = hub.data_dir().join("homes/st-alice/persist.txt");
    let first = std::fs::metadata(&persist).unwrap().mtime_nsec();
    std::fs::write(hub.data_dir().join("homes/st-alice/mine.txt"), "notebook\n").unwrap();
    stop(&alice, "st-alice").await;
    start(&alice, "st-alice").await;
    hub.kill();
    hub.launch();
    let model = alice.user_model("st-alice").await;
    assert_eq!(model["server"], "/user/st-alice/", "re-adopted: {model}");
    stop(&alice, "st-alice").await;
    start(&alice, "st-alice").await;
    assert_eq!(std::fs::metadata(&persist).unwrap().mtime_nsec(), first);
    assert_eq!(
        std::fs::read_to_string(hub.data_dir().join("homes/st-alice/mine.txt")).unwrap(),
        "notebook\n"
    );
    stop(&alice, "st-alice").await;
    stop(&admin, "st-admin").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn system_users_are_isolated() {
    let _accounts = common::fresh_system_accounts(&["iso-alice", "iso-bob"]);
    let scripts = tempfile::tempdir().unwrap();
    let hub = hub_with(
        "  extraEnv:\n    OTHER_USER: iso-bob\n",
        "    system_users: true\n",
        scripts.path(),
    );
    // The homes must be reachable by the accounts (a temporary directory is mode 0700).
    std::fs::set_permissions(hub.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bob = Browser::new(&hub);
    bob.login("iso-bob", "x").await;
    start(&bob, "iso-bob").await;
    let bob_home = hub.data_dir().join("homes/iso-bob");
    let meta = std::fs::metadata(&bob_home).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    assert_eq!(user_name(meta.uid()), "jupyter-iso-bob");
    assert!(bob_home.join("secret.txt").exists());
    assert!(report(&hub, "iso-bob").contains("whoami=jupyter-iso-bob"));

    // alice's server tries to read bob's home, as the stand-in does at start.
    let alice = Browser::new(&hub);
    alice.login("iso-alice", "x").await;
    start(&alice, "iso-alice").await;
    let r = report(&hub, "iso-alice");
    assert!(r.contains("whoami=jupyter-iso-alice"), "{r}");
    assert!(r.contains("other=Permission denied"), "{r}");
    // Only the protocol's variables and a few basics: nothing else of the hub's.
    let env = std::fs::read_to_string(hub.data_dir().join("homes/iso-alice/env.txt")).unwrap();
    for name in env.lines() {
        let allowed = name.starts_with("JUPYTERHUB_")
            || matches!(
                name,
                "JPY_API_TOKEN"
                    | "PATH"
                    | "HOME"
                    | "USER"
                    | "SHELL"
                    | "LANG"
                    | "LC_ALL"
                    | "LC_CTYPE"
                    | "VIRTUAL_ENV"
                    | "OTHER_USER"
                    // Set by the shell that makes the mounts.
                    | "PWD"
                    // Upstream's `env_keep` (no secrets).
                    | "LD_LIBRARY_PATH"
                    | "PYTHONPATH"
                    | "CONDA_ROOT"
                    | "CONDA_DEFAULT_ENV"
                    | "JUPYTERHUB_SINGLEUSER_APP"
            );
        assert!(
            allowed,
            "unexpected variable {name} in a user's server: {env}"
        );
    }
    stop(&alice, "iso-alice").await;
    stop(&bob, "iso-bob").await;
}

fn user_name(uid: u32) -> String {
    let out = std::process::Command::new("id")
        .args(["-un", &uid.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Run `args` as the Unix account `account` (its own uid and group, no others): (ok, stderr).
fn as_account(account: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("setpriv")
        .args([
            &format!("--reuid={account}"),
            &format!("--regid={account}"),
            "--clear-groups",
            "--",
        ])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn group_name(gid: u32) -> String {
    let out = std::process::Command::new("getent")
        .args(["group", &gid.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split(':')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// F5: the accounts of system users cannot read the hub's database, its logs or other users'
/// logs (each reads only its own), also when an older hub left the data dir readable.
#[tokio::test(flavor = "multi_thread")]
async fn system_users_cannot_read_the_hubs_files() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: system users need root");
        return;
    }
    let _accounts = common::fresh_system_accounts(&["f5-one", "f5-two"]);
    let scripts = tempfile::tempdir().unwrap();
    let mut hub = hub_with_services(
        "",
        "    system_users: true\n",
        scripts.path(),
        "    keeper:\n      command: [/bin/sh, -c, 'echo keeper up; exec sleep 600']\n",
    );
    // The homes must be reachable by the accounts (a temporary directory is mode 0700).
    std::fs::set_permissions(hub.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let one = Browser::new(&hub);
    one.login("f5-one", "x").await;
    start(&one, "f5-one").await;
    let two = Browser::new(&hub);
    two.login("f5-two", "x").await;
    start(&two, "f5-two").await;
    assert!(report(&hub, "f5-one").contains("whoami=jupyter-f5-one"));

    let data = hub.data_dir();
    let database = data.join("hubfleet.sqlite");
    let service_log = data.join("logs/service-keeper.log");
    let pid_file = data.join("services/keeper.pid");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !(pid_file.exists() && service_log.exists()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the service did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let check = |hub: &TestHub| {
        let refused = |path: &std::path::Path| {
            let (ok, stderr) = as_account("jupyter-f5-one", &["cat", path.to_str().unwrap()]);
            assert!(
                !ok && stderr.contains("Permission denied"),
                "jupyter-f5-one could read {}: {stderr}",
                path.display()
            );
        };
        refused(&database);
        refused(&data.join("hubfleet.sqlite-wal"));
        refused(&data.join("logs/f5-two.log"));
        refused(&service_log);
        refused(&pid_file);
        refused(&hub.dir.path().join("hub.log"));
        let (ok, _) = as_account("jupyter-f5-one", &["ls", data.to_str().unwrap()]);
        assert!(!ok, "jupyter-f5-one could list the data dir");
        let (ok, _) = as_account(
            "jupyter-f5-one",
            &["ls", data.join("logs").to_str().unwrap()],
        );
        assert!(!ok, "jupyter-f5-one could list the logs");
        // Its own log and home stay within reach.
        let own_log = data.join("logs/f5-one.log");
        let (ok, stderr) = as_account("jupyter-f5-one", &["cat", own_log.to_str().unwrap()]);
        assert!(ok, "jupyter-f5-one cannot read its own log: {stderr}");
        let home = data.join("homes/f5-one");
        let (ok, stderr) = as_account("jupyter-f5-one", &["ls", home.to_str().unwrap()]);
        assert!(ok, "jupyter-f5-one cannot reach its home: {stderr}");

        for (path, expected) in [
            (data.clone(), 0o711),
            (data.join("logs"), 0o711),
            (data.join("homes"), 0o711),
            (data.join("services"), 0o700),
            (database.clone(), 0o600),
            (data.join("hubfleet.sqlite-wal"), 0o600),
            (data.join("hubfleet.sqlite-shm"), 0o600),
            (service_log.clone(), 0o600),
            (pid_file.clone(), 0o600),
            (data.join("logs/f5-one.log"), 0o640),
            (data.join("logs/f5-two.log"), 0o640),
        ] {
            assert_eq!(mode(&path), expected, "mode of {}", path.display());
        }
        let log_group = std::fs::metadata(data.join("logs/f5-one.log"))
            .unwrap()
            .gid();
        assert_eq!(group_name(log_group), "jupyter-f5-one");
        assert_eq!(mode(&hub.dir.path().join("hub.log")) & 0o007, 0);
    };
    check(&hub);

    // A data dir left readable (as an older hub made it) is made private at the next start.
    hub.kill();
    for (path, loose) in [
        (data.clone(), 0o755),
        (data.join("logs"), 0o755),
        (data.join("homes"), 0o755),
        (data.join("services"), 0o755),
        (database.clone(), 0o644),
        (data.join("hubfleet.sqlite-wal"), 0o644),
        (data.join("hubfleet.sqlite-shm"), 0o644),
        (service_log.clone(), 0o644),
        (pid_file.clone(), 0o644),
        (data.join("logs/f5-one.log"), 0o644),
        (data.join("logs/f5-two.log"), 0o644),
        (hub.dir.path().join("hub.log"), 0o644),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(loose)).unwrap();
    }
    hub.launch();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while mode(&pid_file) != 0o600 {
        assert!(
            std::time::Instant::now() < deadline,
            "pid file not rewritten"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check(&hub);
    stop(&one, "f5-one").await;
    stop(&two, "f5-two").await;
}
