//! `hubfleet fleet supervise`, what runs each hub of the local target: a hub killed with
//! SIGKILL is started again; SIGTERM stops the hub and the supervisor; a hub that exits before
//! it ever answered (and was not killed) is not started again. (The fleet around it: tests/fleet_local.rs.)

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, live_process_start};

const BIN: &str = env!("CARGO_BIN_EXE_hubfleet");

/// The supervisor, killed (with its hub) if the test fails.
struct Supervisor {
    child: Child,
    dir: std::path::PathBuf,
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(pid) = state(&self.dir)["serve_pid"].as_i64() {
            if pid > 0 && live_process_start(pid as i32).is_some() {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
}

fn supervise(dir: &Path, port: u16) -> Supervisor {
    let log = std::fs::File::create(dir.join("hub.log")).unwrap();
    let child = Command::new(BIN)
        .args(["fleet", "supervise", "--hub-dir"])
        .arg(dir)
        .args(["--port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    Supervisor {
        child,
        dir: dir.to_path_buf(),
    }
}

fn state(dir: &Path) -> serde_json::Value {
    std::fs::read_to_string(dir.join("supervisor.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn hub_config(dir: &Path, port: u16, extra: &str) {
    let allow_root = if nix::unistd::geteuid().is_root() {
        "  local:\n    allow_root: true\n"
    } else {
        ""
    };
    std::fs::write(
        dir.join("hub.yaml"),
        format!(
            "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\nhubfleet:\n  listen: 127.0.0.1:{port}\n  data_dir: {}\n{allow_root}{extra}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("secret.yaml"), "{}\n").unwrap();
}

fn answers(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.write_all(b"GET /hub/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// Poll `cond` (a guard against hanging, not a timing assertion).
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_killed_hub_is_started_again_and_sigterm_stops_both() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = free_port();
    hub_config(dir, port, "");
    let mut sup = supervise(dir, port);
    wait_for("the hub answers", || answers(port));
    let first = state(dir);
    assert_eq!(first["restarts"], 0);
    assert_eq!(first["pid"], sup.child.id());
    let serve = first["serve_pid"].as_i64().unwrap() as i32;

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(serve),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("the hub is started again", || {
        let s = state(dir);
        let pid = s["serve_pid"].as_i64().unwrap_or(0) as i32;
        s["restarts"] == 1 && pid != 0 && pid != serve && answers(port)
    });
    let after = state(dir);
    assert!(
        after["last_exit"].as_str().unwrap().contains("SIGKILL"),
        "{after}"
    );
    let log = std::fs::read_to_string(dir.join("hub.log")).unwrap();
    assert!(log.contains("exited on its own"), "{log}");

    let serve = after["serve_pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sup.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = sup.child.wait().unwrap();
    assert!(status.success(), "{status}");
    wait_for("the hub stopped", || live_process_start(serve).is_none());
    assert_eq!(state(dir)["restarts"], 1, "not started again after SIGTERM");
}

#[test]
fn a_hub_that_never_answered_is_not_started_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = free_port();
    // A config the hub refuses at start.
    hub_config(dir, port, "  no_such_key: 1\n");
    let mut sup = supervise(dir, port);
    let status = sup.child.wait().unwrap();
    assert!(!status.success());
    assert_eq!(state(dir)["restarts"], 0);
    let log = std::fs::read_to_string(dir.join("hub.log")).unwrap();
    assert!(log.contains("before it ever answered"), "{log}");
    assert!(log.contains("no_such_key"), "{log}");
}
