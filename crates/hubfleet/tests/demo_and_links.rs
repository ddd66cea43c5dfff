//! `hubfleet demo` (the README's command) and links that go through login and spawn.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{fake_singleuser, free_port, processes_in, python_env, Browser, TestHub};

/// Run `hubfleet demo` until it prints its login line; returns (child, stdout lines).
fn start_demo(data_dir: &std::path::Path, port: u16) -> (std::process::Child, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubfleet"))
        .args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data_dir)
        .env("HUBFLEET_PYTHON_ENV", python_env())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "demo exited early: {lines:?}"
        );
        let done = line.starts_with("Log in as");
        lines.push(line.trim_end().to_string());
        if done {
            break;
        }
    }
    (child, lines)
}

fn stop(mut child: std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "demo exits cleanly on SIGTERM: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prints_admin_password_once_and_reuses_everything() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hubfleet-data");
    let port = free_port();
    let (child, lines) = start_demo(&data, port);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("http://localhost:{port}/"))),
        "the demo is at localhost, its users on hosts of their own: {lines:?}"
    );
    // As root (the README's first command on many machines) the demo still starts, and says
    // that servers run as root.
    let root_note = lines.iter().any(|l| {
        l.starts_with(
            "Running as root, so users' servers run as root too (hubfleet.local.allow_root)",
        )
    });
    assert_eq!(root_note, nix::unistd::geteuid().is_root(), "{lines:?}");
    let password = lines
        .iter()
        .find_map(|l| l.strip_prefix("Log in as `admin` with password: "))
        .unwrap_or_else(|| panic!("no password line in {lines:?}"))
        .to_string();

    let base = || common::BaseUrl {
        hub: format!("http://localhost:{port}"),
        user_hosts_port: Some(port),
        prefix: String::new(),
    };
    let browser = Browser::new(base());
    assert_eq!(
        browser
            .login_response("admin", "wrong-password", None)
            .await
            .status(),
        403
    );
    browser.login("admin", &password).await;
    let model = browser.user_model("admin").await;
    assert_eq!(model["admin"], true);
    // Users' hosts are not the hub's: a hub page asked for there goes to the hub's host.
    let elsewhere = browser
        .no_redirects()
        .get(browser.user_url("alice", "/hub/home"))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 302);
    assert_eq!(
        elsewhere.headers()["location"],
        format!("http://localhost:{port}/hub/home").as_str()
    );
    stop(child);
    assert!(data.join("hubfleet.sqlite").exists());

    // Second run: same data, no new password, the old one still works.
    let (child, lines) = start_demo(&data, port);
    assert!(
        !lines.iter().any(|l| l.contains("with password:")),
        "{lines:?}"
    );
    let browser = Browser::new(base());
    browser.login("admin", &password).await;
    stop(child);
    assert!(processes_in(&data).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_redirect_links_go_through_login_and_spawn() {
    let hub = TestHub::start(&format!(
        "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\nsingleuser:\n  cmd: {}\n",
        fake_singleuser()
    ));
    let browser = Browser::new(&hub);
    // Logged out: the link leads to the login page, remembering where it was going.
    let link = "/hub/user-redirect/git-pull?repo=https%3A%2F%2Fexample.org%2Fr.git&urlpath=lab";
    let first = browser
        .no_redirects()
        .get(browser.url(link))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 302);
    let login = first.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        login,
        format!("/hub/login?next={}", common::url_escape(link))
    );

    // Log in with that next; then the browser follows the redirects to the server.
    let response = browser.login_response("jo", "x", Some(link)).await;
    assert_eq!(response.headers()["location"], link);
    let landed = browser.client.get(browser.url(link)).send().await.unwrap();
    assert_eq!(
        landed.url().path(),
        "/user/jo/git-pull",
        "ends on the user's server"
    );
    assert_eq!(
        landed.url().query(),
        Some("repo=https%3A%2F%2Fexample.org%2Fr.git&urlpath=lab")
    );
    // The stand-in server answered (404 from python's http.server: it has no such file).
    assert_eq!(landed.status(), 404);
    let model = browser.wait_ready("jo", Duration::from_secs(10)).await;
    assert_eq!(model["server"], "/user/jo/");
}
