//! Issue 13, hole 2: with `hubfleet.local.system_users`, an account `jupyter-<name>` that
//! already existed on the machine (home elsewhere) was used for hub user `<name>`, and the new
//! home handed to it. The hub now uses only accounts it created itself (recorded in
//! `<data_dir>/system-accounts`, across restarts) and those listed in
//! `hubfleet.local.existing_system_users`; any other start is refused, naming the account and
//! the key, and nothing changes hands.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Browser, TestHub};
use reqwest::Method;

/// The stand-in server: says who it runs as, then serves.
const STAND_IN: &str = "[/bin/sh, -c, 'id -un > \"$HOME/whoami\"; port=${JUPYTERHUB_SERVICE_URL##*:}; port=${port%%/*}; exec python3 -m http.server --bind 127.0.0.1 $port']";

fn useradd(account: &str, home: &Path) -> u32 {
    let status = Command::new("useradd")
        .args(["--home-dir", home.to_str().unwrap(), "--create-home"])
        .args(["--comment", "someone else's account", account])
        .status()
        .unwrap();
    assert!(status.success(), "useradd {account}");
    let user = nix::unistd::User::from_name(account).unwrap().unwrap();
    let theirs = home.join("theirs.txt");
    std::fs::write(&theirs, "not the hub's\n").unwrap();
    std::os::unix::fs::chown(&theirs, Some(user.uid.as_raw()), Some(user.gid.as_raw())).unwrap();
    user.uid.as_raw()
}

/// POST a start and wait for its end: `Ok(())` when ready, `Err(message)` when it failed.
async fn start(browser: &Browser, user: &str) -> Result<(), String> {
    let (status, body) = browser
        .call(Method::POST, &format!("/hub/api/users/{user}/server"), None)
        .await;
    if status >= 400 {
        return Err(format!("{status} {body}"));
    }
    let model = browser.wait_ready(user, Duration::from_secs(30)).await;
    if model["server"].is_null() {
        return Err(format!("not started: {model}"));
    }
    Ok(())
}

async fn stop(browser: &Browser, user: &str) {
    let (status, body) = browser
        .call(
            Method::DELETE,
            &format!("/hub/api/users/{user}/server"),
            None,
        )
        .await;
    assert!(status == 204 || status == 202, "{status} {body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !browser.user_model(user).await["servers"]
        .as_object()
        .is_some_and(|s| s.is_empty())
    {
        assert!(std::time::Instant::now() < deadline, "{user} did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_run_only_as_accounts_the_hub_made_or_the_operator_listed() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "system users need root (CI runs the tests as root)"
    );
    // Names of this run only: the accounts are the machine's.
    let tag = std::process::id();
    let (taken, made) = (format!("taken{tag}"), format!("made{tag}"));
    let taken_account = format!("jupyter-{taken}");
    let _accounts = common::fresh_system_accounts(&[&taken, &made]);
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::set_permissions(elsewhere.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let taken_home = elsewhere.path().join("taken");
    let taken_uid = useradd(&taken_account, &taken_home);

    let scratch = tempfile::tempdir().unwrap();
    let python_env = common::system_python_env(scratch.path());
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let yaml = format!(
        "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\nsingleuser:\n  cmd: {STAND_IN}\n"
    );
    let mut hub = TestHub::start_with(&yaml, "    system_users: true\n", &python_env);
    // The homes must be reachable by the accounts (a temporary directory is mode 0700).
    std::fs::set_permissions(hub.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let homes = hub.data_dir().join("homes");

    // Someone else's account: refused, with the account and the key named; nothing is chowned.
    let someone = Browser::new(&hub);
    someone.login(&taken, "x").await;
    let refusal = start(&someone, &taken).await.err().unwrap_or_else(|| {
        let whoami = std::fs::read_to_string(homes.join(&taken).join("whoami"));
        panic!("a server ran as an account the hub did not make: {whoami:?}")
    });
    assert!(
        refusal.contains(&format!("{taken_account} already exists"))
            && refusal.contains("hubfleet.local.existing_system_users"),
        "{refusal}"
    );
    assert!(
        !homes.join(&taken).exists(),
        "a home was made for a refused account"
    );
    let theirs = std::fs::metadata(taken_home.join("theirs.txt")).unwrap();
    assert_eq!(theirs.uid(), taken_uid);

    // An account the hub makes is recorded, and used again after a restart.
    let new_user = Browser::new(&hub);
    new_user.login(&made, "x").await;
    start(&new_user, &made).await.unwrap();
    stop(&new_user, &made).await;
    let made_uid = nix::unistd::User::from_name(&format!("jupyter-{made}"))
        .unwrap()
        .expect("the hub made the account")
        .uid
        .as_raw();
    let record_path = hub.data_dir().join("system-accounts");
    let record = std::fs::read_to_string(&record_path).unwrap();
    assert!(
        record
            .lines()
            .any(|l| l == format!("jupyter-{made} {made_uid}")),
        "{record}"
    );
    assert!(!record.contains(&taken), "{record}");
    assert_eq!(
        std::fs::metadata(&record_path).unwrap().mode() & 0o777,
        0o600
    );
    hub.kill();
    hub.launch();
    start(&new_user, &made).await.unwrap();
    stop(&new_user, &made).await;
    // Still refused after the restart…
    assert!(start(&someone, &taken).await.is_err());

    // …until the operator lists the account for this user.
    let mut config = std::fs::read_to_string(&hub.config).unwrap();
    config.push_str(&format!("    existing_system_users: [{taken_account}]\n"));
    std::fs::write(&hub.config, config).unwrap();
    hub.kill();
    hub.launch();
    start(&someone, &taken).await.unwrap();
    let home = homes.join(&taken);
    assert_eq!(std::fs::metadata(&home).unwrap().uid(), taken_uid);
    assert_eq!(
        std::fs::read_to_string(home.join("whoami")).unwrap().trim(),
        taken_account
    );
    stop(&someone, &taken).await;
}
