//! `hubfleet users list|add|remove|admin|approve`, run as the operator runs them, against the
//! database of a running hub: `--config` before or after the action, admins and pending
//! sign-ups in the list, clear errors for unknown names, and a removal that never leaves half
//! a user behind (refused while a server runs, unless `--force` stops it first).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{fake_singleuser, Browser, TestHub};
use reqwest::Method;

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

/// `hubfleet users <action…> --config FILE`, which must succeed; its output.
fn users_ok(config: &Path, action: &[&str]) -> String {
    let mut args = vec!["users"];
    args.extend_from_slice(action);
    args.extend(["--config", config.to_str().unwrap()]);
    let (ok, stdout, stderr) = hubfleet(&args);
    assert!(ok, "hubfleet {args:?} failed: {stderr}");
    stdout
}

/// The same, which must fail; its error.
fn users_err(config: &Path, action: &[&str]) -> String {
    let mut args = vec!["users"];
    args.extend_from_slice(action);
    args.extend(["--config", config.to_str().unwrap()]);
    let (ok, stdout, stderr) = hubfleet(&args);
    assert!(!ok, "hubfleet {args:?} succeeded: {stdout}");
    stderr
}

async fn sign_up(hub: &TestHub, name: &str, password: &str) {
    let browser = Browser::new(hub);
    let page = browser
        .client
        .get(browser.url("/hub/signup"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let xsrf = common::page_xsrf(&page).expect("the sign-up form has _xsrf");
    let response = browser
        .no_redirects()
        .post(browser.url("/hub/signup"))
        .form(&[
            ("username", name),
            ("signup_password", password),
            ("signup_password_confirmation", password),
            ("_xsrf", xsrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_listed_added_promoted_approved_and_removed() {
    let hub = TestHub::start(&format!(
        "hub:\n  config:\n    JupyterHub:\n      authenticator_class: native\n    \
         Authenticator:\n      admin_users: [boss]\nsingleuser:\n  cmd: {}\n",
        fake_singleuser()
    ));
    let config = hub.config.as_path();
    let config_arg = config.to_str().unwrap();

    // `--config` after the action, and (as before) before it.
    let added = users_ok(config, &["add", "ann"]);
    let ann_password = added.trim().strip_prefix("ann: ").unwrap().to_string();
    let (ok, _, stderr) = hubfleet(&["users", "--config", config_arg, "add", "bob", "--admin"]);
    assert!(ok, "{stderr}");
    sign_up(&hub, "cyd", "cyd-password-1").await;

    let list = users_ok(config, &["list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines.contains(&"ann"), "{list}");
    assert!(lines.contains(&"bob (admin)"), "{list}");
    assert!(lines.contains(&"boss (admin)"), "{list}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("cyd (pending approval, signed up ")),
        "{list}"
    );

    // Admin, and back.
    assert_eq!(users_ok(config, &["admin", "ann"]), "ann: now an admin\n");
    assert!(users_ok(config, &["list"])
        .lines()
        .any(|l| l == "ann (admin)"));
    assert_eq!(
        users_ok(config, &["admin", "ann", "--revoke"]),
        "ann: no longer an admin\n"
    );
    let warning = {
        let (ok, _, stderr) = hubfleet(&["users", "admin", "boss", "--revoke", "-c", config_arg]);
        assert!(ok, "{stderr}");
        stderr
    };
    assert!(warning.contains("boss is in admin_users"), "{warning}");
    users_ok(config, &["admin", "boss"]);

    // Approve the sign-up: cyd logs in with her own password.
    let e = users_err(config, &["admin", "cyd"]);
    assert!(e.contains("cyd is a sign-up waiting for approval"), "{e}");
    assert_eq!(
        users_ok(config, &["approve", "Cyd"]),
        "cyd: approved; they can log in with the password they chose\n"
    );
    Browser::new(&hub).login("cyd", "cyd-password-1").await;
    let e = users_err(config, &["approve", "cyd"]);
    assert!(e.contains("cyd is already a user"), "{e}");

    // Unknown names are errors that say where to look.
    for action in [
        &["admin", "ghost"][..],
        &["admin", "ghost", "--revoke"],
        &["remove", "ghost"],
        &["approve", "ghost"],
    ] {
        let e = users_err(config, action);
        assert!(
            e.contains("ghost") && e.contains("`hubfleet users list` shows them"),
            "{action:?}: {e}"
        );
    }

    // A pending sign-up is discarded by `remove`.
    sign_up(&hub, "dee", "dee-password-1").await;
    assert_eq!(
        users_ok(config, &["remove", "dee"]),
        "dee: pending sign-up discarded\n"
    );

    // A running server refuses the removal; --force stops it first, and the hub drops its route.
    let ann = Browser::new(&hub);
    ann.login("ann", &ann_password).await;
    let (status, body) = ann
        .call(Method::POST, "/hub/api/users/ann/server", None)
        .await;
    assert!(status == 201 || status == 202, "{status} {body}");
    let model = ann.wait_ready("ann", Duration::from_secs(30)).await;
    assert_eq!(model["server"], "/user/ann/", "{model}");
    let pids = hub.server_pids("ann");
    assert!(!pids.is_empty());
    let e = users_err(config, &["remove", "ann"]);
    assert!(
        e.contains("ann's the default server is running; nothing was removed")
            && e.contains("--force"),
        "{e}"
    );
    assert!(users_ok(config, &["list"]).lines().any(|l| l == "ann"));
    let removed = users_ok(config, &["remove", "ann", "--force"]);
    assert_eq!(
        removed,
        "ann: stopped the default server\nann: removed (their home and, with system_users, their Unix account are kept)\n"
    );
    assert!(hub.server_pids("ann").is_empty(), "the server still runs");
    assert!(!users_ok(config, &["list"]).lines().any(|l| l == "ann"));
    // Her session ends once the hub's identity cache (10 s) sees the change.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = ann
            .no_redirects()
            .get(hub.url("/hub/api/user"))
            .send()
            .await
            .unwrap();
        if response.status() == 403 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ann's session outlived her: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The running hub forgets the server's route at its next check (every 10 s).
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let response = ann
            .no_redirects()
            .get(hub.url("/user/ann/"))
            .send()
            .await
            .unwrap();
        // No route: the hub answers (a redirect to /hub/user/ann/), not the proxy's 503.
        if response.status() == 302 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the route of ann's stopped server stayed: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
