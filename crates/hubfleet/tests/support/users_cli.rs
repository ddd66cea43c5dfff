//! `hubfleet users add NAME --password-stdin`, as an operator sets a native account's
//! password (used by tests that need a user with a known password).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Create `name` (or reset its password) in the hub configured by `config`.
pub fn add_user(config: &Path, name: &str, password: &str) {
    let mut add = Command::new(env!("CARGO_BIN_EXE_hubfleet"))
        .args(["users", "--config"])
        .arg(config)
        .args(["add", name, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    assert!(add.wait().unwrap().success(), "hubfleet users add {name}");
}
