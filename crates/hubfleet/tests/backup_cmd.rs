//! `hubfleet backup`, run as the operator runs it against a running hub: a consistent copy of
//! the database (SQLite's `VACUUM INTO`, PostgreSQL's `pg_dump`) that a hub restored from it
//! starts on, with its users and tokens working; an existing file is replaced only with
//! `--force`.

mod common;

#[path = "support/users_cli.rs"]
mod users_cli;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fake_singleuser, Browser, TestHub, TokenClient};
use reqwest::Method;
use serde_json::json;

/// Run `hubfleet <args>`: success, standard output, standard error.
fn hubfleet(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hubfleet"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn backup(config: &Path, out: &Path, force: bool) -> (bool, String, String) {
    let mut args = vec![
        "backup",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    if force {
        args.push("--force");
    }
    hubfleet(&args)
}

fn native_yaml(db: &str) -> String {
    format!(
        "hub:\n{db}  config:\n    JupyterHub:\n      authenticator_class: native\nsingleuser:\n  cmd: {}\n",
        fake_singleuser()
    )
}

/// ann (password `ann-password-1`) with an API token; the token.
async fn user_with_token(hub: &TestHub) -> String {
    users_cli::add_user(&hub.config, "ann", "ann-password-1");
    let ann = Browser::new(hub);
    ann.login("ann", "ann-password-1").await;
    let (status, token) = ann
        .call(
            Method::POST,
            "/hub/api/users/ann/tokens",
            Some(json!({"note": "before the backup"})),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    token["token"].as_str().unwrap().to_string()
}

/// The restored hub knows ann, her password and her token.
async fn restored_hub_works(hub: &TestHub, token: &str) {
    Browser::new(hub).login("ann", "ann-password-1").await;
    let (status, me) = TokenClient::new(hub, token)
        .call(Method::GET, "/hub/api/user", None)
        .await;
    assert_eq!((status, &me["name"]), (200, &json!("ann")), "{me}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_a_running_hub_restores_its_users_and_tokens() {
    let mut hub = TestHub::start(&native_yaml(""));
    let token = user_with_token(&hub).await;
    let backups = tempfile::tempdir().unwrap();
    let out = backups.path().join("hub-backup.sqlite");

    let (ok, stdout, stderr) = backup(&hub.config, &out, false);
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with(&format!("backup written to {} (", out.display())),
        "{stdout}"
    );
    // It holds every token hash: the hub's account alone may read it.
    let mode = std::fs::metadata(&out).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // An existing file is replaced only with --force; nothing is left half-written.
    let (ok, _, stderr) = backup(&hub.config, &out, false);
    assert!(!ok);
    assert!(
        stderr.contains("exists; pass --force to replace it"),
        "{stderr}"
    );
    users_cli::add_user(&hub.config, "bea", "bea-password-1");
    let (ok, _, stderr) = backup(&hub.config, &out, true);
    assert!(ok, "{stderr}");
    let leftovers: Vec<PathBuf> = std::fs::read_dir(backups.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p != &out)
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Written after the backup: gone once it is restored.
    users_cli::add_user(&hub.config, "late", "late-password-1");

    // Restore as docs/operations.md says: stop the hub, put the file back (without the old
    // database's -wal and -shm), start.
    hub.kill();
    let database = hub.data_dir().join("hubfleet.sqlite");
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{side}", database.display()));
    }
    std::fs::copy(&out, &database).unwrap();
    hub.launch();
    restored_hub_works(&hub, &token).await;
    Browser::new(&hub).login("bea", "bea-password-1").await;
    let (ok, list, stderr) = hubfleet(&["users", "list", "--config", hub.config.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(!list.lines().any(|l| l == "late"), "{list}");

    // Bad input: no database (a config of a hub that never ran), a directory.
    let fresh = tempfile::tempdir().unwrap();
    let config = fresh.path().join("hub.yaml");
    std::fs::write(
        &config,
        format!(
            "hubfleet:\n  data_dir: {}\n",
            fresh.path().join("data").display()
        ),
    )
    .unwrap();
    let (ok, _, stderr) = backup(&config, &fresh.path().join("x.sqlite"), false);
    assert!(!ok);
    assert!(stderr.contains("there is no database at"), "{stderr}");
    assert!(!fresh.path().join("x.sqlite").exists());
    let (ok, _, stderr) = backup(&hub.config, backups.path(), true);
    assert!(!ok);
    assert!(stderr.contains("is a directory"), "{stderr}");
}

/// The newest `/usr/lib/postgresql/*/bin/<program>`, else `<program>` on PATH.
fn postgres_program(program: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.flatten()
                .map(|e| e.path().join("bin").join(program))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| PathBuf::from(program))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_backup_restores_with_pg_restore() {
    let source = common::fresh_postgres_database("backup_source").await;
    let hub = TestHub::start(&native_yaml(&format!(
        "  db:\n    type: postgres\n    url: {source}\n"
    )));
    let token = user_with_token(&hub).await;
    let backups = tempfile::tempdir().unwrap();
    let out = backups.path().join("hub.pgdump");
    let (ok, stdout, stderr) = backup(&hub.config, &out, false);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("backup written to"), "{stdout}");
    drop(hub);

    let target = common::fresh_postgres_database("backup_target").await;
    let restore = Command::new(postgres_program("pg_restore"))
        .args(["--no-owner", "--exit-on-error", "--dbname", &target])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        restore.status.success(),
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
    let hub = TestHub::start(&native_yaml(&format!(
        "  db:\n    type: postgres\n    url: {target}\n"
    )));
    restored_hub_works(&hub, &token).await;
}
