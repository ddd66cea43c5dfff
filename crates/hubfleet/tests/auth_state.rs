//! auth_state encrypted at rest with `JUPYTERHUB_CRYPT_KEY`, as JupyterHub does: the real
//! binary, its SQLite file read back, and upstream's own `jupyterhub.crypto` (from the test
//! Python environment) decrypting what the hub stored.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{admin_token, python_env, TestHub, TokenClient};
use reqwest::Method;
use serde_json::json;

const KEY_A: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const KEY_B: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";
const KEY_C: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";

const YAML: &str = "hub:
  config:
    JupyterHub:
      authenticator_class: dummy
    Authenticator:
      admin_users: [admin]
      enable_auth_state: true
";

fn database_file(data_dir: &Path) -> PathBuf {
    std::fs::read_dir(data_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "sqlite"))
        .unwrap_or_else(|| panic!("no .sqlite file in {}", data_dir.display()))
}

/// Run Python from the test environment (it has jupyterhub) and return its stdout.
fn python(script: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(python_env().join("bin/python"))
        .arg("-c")
        .arg(script)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The `auth_state` column of a user, as stored.
fn stored_auth_state(hub: &TestHub, user: &str) -> String {
    let db = database_file(&hub.data_dir());
    python(
        "import sqlite3, sys\n\
         row = sqlite3.connect(sys.argv[1]).execute('SELECT auth_state FROM users WHERE name = ?', (sys.argv[2],)).fetchone()\n\
         print(row[0] if row and row[0] is not None else '<NULL>')",
        &[db.to_str().unwrap(), user],
        &[],
    )
}

/// Decrypt a stored value with JupyterHub's own CryptKeeper and the given key list.
fn upstream_decrypt(stored: &str, keys: &str) -> serde_json::Value {
    let text = python(
        "import sys, json\n\
         from jupyterhub.crypto import CryptKeeper\n\
         ck = CryptKeeper.instance()\n\
         print(json.dumps(ck._decrypt(sys.argv[1].encode())))",
        &[stored],
        &[("JUPYTERHUB_CRYPT_KEY", keys)],
    );
    serde_json::from_str(&text).unwrap()
}

fn with_key(hub: &mut TestHub, keys: &str) {
    hub.kill();
    hub.env = vec![("JUPYTERHUB_CRYPT_KEY".into(), keys.into())];
    hub.launch();
}

#[tokio::test]
async fn encrypted_at_rest_readable_by_upstream_and_keys_rotate() {
    let mut hub =
        TestHub::start_with_env(YAML, "", &python_env(), &[("JUPYTERHUB_CRYPT_KEY", KEY_A)]);
    let (_browser, token) = admin_token(&hub, None).await;
    let admin = TokenClient::new(&hub, &token);
    let state = json!({"access_token": "gho_secret-access-token", "refresh_token": "r-123"});
    let (status, body) = admin
        .call(
            Method::POST,
            "/hub/api/users/alice",
            Some(json!({ "auth_state": state })),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // In the database: a Fernet token, not the plaintext; upstream decrypts it.
    let stored = stored_auth_state(&hub, "alice");
    assert!(stored.starts_with("gAAAAA"), "{stored}");
    assert!(!stored.contains("secret-access-token"), "{stored}");
    assert_eq!(upstream_decrypt(&stored, KEY_A), state);

    // `admin:auth_state` reads it; a token without that scope does not see it.
    let (status, model) = admin.call(Method::GET, "/hub/api/users/alice", None).await;
    assert_eq!(status, 200);
    assert_eq!(model["auth_state"], state, "{model}");
    let (_, limited) = admin
        .call(
            Method::POST,
            "/hub/api/users/admin/tokens",
            Some(json!({ "scopes": ["read:users"] })),
        )
        .await;
    let limited = TokenClient::new(&hub, limited["token"].as_str().unwrap());
    let (status, model) = limited
        .call(Method::GET, "/hub/api/users/alice", None)
        .await;
    assert_eq!(status, 200);
    assert!(model.get("auth_state").is_none(), "{model}");

    // Rotation: a new key first, the old one after it. The row is re-encrypted with the
    // new key at start-up and still reads the same.
    with_key(&mut hub, &format!("{KEY_B};{KEY_A}"));
    // A new client: the old one's pooled connections went with the old process.
    let admin = TokenClient::new(&hub, &token);
    let (status, model) = admin.call(Method::GET, "/hub/api/users/alice", None).await;
    assert_eq!(status, 200);
    assert_eq!(model["auth_state"], state, "{model}");
    let rotated = stored_auth_state(&hub, "alice");
    assert_ne!(rotated, stored);
    assert_eq!(upstream_decrypt(&rotated, KEY_B), state);
    assert!(
        hub.log()
            .contains("re-encrypted auth_state with the first key"),
        "{}",
        hub.log()
    );

    // Only the old key left: what the new one made reads as empty, with a clear warning,
    // and the hub keeps serving.
    with_key(&mut hub, KEY_C);
    let admin = TokenClient::new(&hub, &token);
    let (status, model) = admin.call(Method::GET, "/hub/api/users/alice", None).await;
    assert_eq!(status, 200, "{model}");
    assert!(model["auth_state"].is_null(), "{model}");
    let log = hub.log();
    assert!(
        log.contains("cannot be decrypted with any key in JUPYTERHUB_CRYPT_KEY"),
        "{log}"
    );
    assert!(
        log.contains("was encrypted with a key that is not in"),
        "{log}"
    );
    // New state is written with the key there is.
    let (status, _) = admin
        .call(
            Method::PATCH,
            "/hub/api/users/alice",
            Some(json!({ "auth_state": {"n": 1} })),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        upstream_decrypt(&stored_auth_state(&hub, "alice"), KEY_C),
        json!({"n": 1})
    );
}

#[tokio::test]
async fn rows_in_clear_from_older_versions_are_encrypted_at_start() {
    // An older hub (no encryption) left auth_state in clear.
    let mut hub = common::admin_hub("");
    let (_browser, token) = admin_token(&hub, None).await;
    let admin = TokenClient::new(&hub, &token);
    // Without a key the hub refuses to store auth_state rather than keep it in clear.
    let (status, body) = admin
        .call(
            Method::POST,
            "/hub/api/users/bob",
            Some(json!({ "auth_state": {"access_token": "x"} })),
        )
        .await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("openssl rand -hex 32"),
        "{body}"
    );
    hub.kill();
    let db = database_file(&hub.data_dir());
    python(
        "import sqlite3, sys\n\
         c = sqlite3.connect(sys.argv[1])\n\
         c.execute(\"INSERT INTO users (name, admin, created, auth_state) VALUES ('carol', 0, 0, '{\\\"access_token\\\": \\\"old-plain-token\\\"}')\")\n\
         c.commit()",
        &[db.to_str().unwrap()],
        &[],
    );
    assert!(stored_auth_state(&hub, "carol").contains("old-plain-token"));

    with_key(&mut hub, KEY_A);
    let admin = TokenClient::new(&hub, &token);
    let stored = stored_auth_state(&hub, "carol");
    assert!(!stored.contains("old-plain-token"), "{stored}");
    assert_eq!(
        upstream_decrypt(&stored, KEY_A),
        json!({"access_token": "old-plain-token"})
    );
    assert!(hub.log().contains("encrypted auth_state stored in clear"));
    let (status, model) = admin.call(Method::GET, "/hub/api/users/carol", None).await;
    assert_eq!(status, 200);
    assert_eq!(model["auth_state"]["access_token"], "old-plain-token");
}

/// Run `hubfleet serve` expecting it to fail at start-up; its output.
fn failed_start(yaml: &str, key: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hub.yaml");
    std::fs::write(
        &config,
        format!(
            "{yaml}hubfleet:\n  listen: 127.0.0.1:{}\n  data_dir: {}\n  local:\n    allow_root: true\n",
            common::free_port(),
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_hubfleet"));
    command
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("JUPYTERHUB_CRYPT_KEY");
    if let Some(key) = key {
        command.env("JUPYTERHUB_CRYPT_KEY", key);
    }
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the hub started although it should not have");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn enable_auth_state_needs_a_valid_key() {
    let out = failed_start(YAML, None);
    assert!(
        out.contains("JUPYTERHUB_CRYPT_KEY is not set") && out.contains("openssl rand -hex 32"),
        "{out}"
    );
    let out = failed_start(YAML, Some(&format!("{KEY_A};not-a-key")));
    assert!(
        out.contains("key 2 is 9 bytes") && out.contains("must be 32 bytes"),
        "{out}"
    );
}
