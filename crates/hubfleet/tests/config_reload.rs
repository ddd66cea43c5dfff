//! Live config reload, against the real binary (`hubfleet serve`): the file watch, SIGHUP and
//! `POST /hub/api/config/reload` (scope `admin:hub`); what applies live (profiles, the
//! announcement, admin_users, a managed service, the culler), what needs a restart (the listen
//! address), what is refused (an invalid file, with file:line), `hubfleet config diff`; and a
//! user's server keeps running throughout. Users' servers are the stand-in `fake_singleuser`
//! (a Python HTTP server): the hub's behaviour is under test, not JupyterLab's.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{admin_token, fake_singleuser, Browser, TestHub, TokenClient};
use reqwest::Method;
use serde_json::{json, Value};

/// The bound for a change of the file to show.
const LIVE_BOUND: Duration = Duration::from_secs(2);
/// How long other things (a server start, a service restart) may take here.
const SLOW: Duration = Duration::from_secs(30);

fn profiles(names: &[&str]) -> String {
    let mut yaml = String::from("  profileList:\n");
    for name in names {
        yaml.push_str(&format!(
            "    - display_name: {name} machine\n      slug: {}\n",
            name.to_lowercase()
        ));
    }
    yaml
}

fn base_config(profile_yaml: &str) -> String {
    format!(
        "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n    Authenticator:\n      admin_users: [admin]\n  templateVars:\n    announcement: Welcome to the first config\nsingleuser:\n  cmd: {}\n{profile_yaml}",
        fake_singleuser()
    )
}

/// Replace the config file as editors do: write a new file and rename it over the old one.
fn replace_config(hub: &TestHub, edit: impl FnOnce(&str) -> String) {
    let old = std::fs::read_to_string(&hub.config).unwrap();
    let new = edit(&old);
    assert_ne!(old, new, "the edit must change the file");
    let tmp = hub.config.with_extension("yaml.new");
    std::fs::write(&tmp, new).unwrap();
    std::fs::rename(&tmp, &hub.config).unwrap();
}

/// Poll `check` until it holds or `bound` passes; `false` then.
async fn within<F, Fut>(bound: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + bound;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn page(browser: &Browser, path: &str) -> String {
    let response = browser.client.get(browser.url(path)).send().await.unwrap();
    response.text().await.unwrap()
}

async fn reload(client: &TokenClient) -> (u16, Value) {
    client
        .call(Method::POST, "/hub/api/config/reload", None)
        .await
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The managed service `ticker`'s pid (from its model) once `wanted`, else the last seen.
async fn service_pid_until(
    api: &TokenClient,
    bound: Duration,
    wanted: impl Fn(i32) -> bool,
) -> i32 {
    let deadline = Instant::now() + bound;
    loop {
        let (_, model) = api
            .call(Method::GET, "/hub/api/services/ticker", None)
            .await;
        let pid = model["pid"].as_i64().unwrap_or(0) as i32;
        if wanted(pid) || Instant::now() >= deadline {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn hubfleet(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hubfleet"))
        .args(args)
        .output()
        .unwrap()
}

fn environ(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', "\n"))
        .unwrap_or_default()
}

/// The file watch: a new profile shows within 2 s while alice's server runs on (same pid,
/// still reachable); an invalid edit is refused with file:line, in the log and from the API,
/// and the hub serves on with the old profiles; a new listen address needs a restart.
#[tokio::test(flavor = "multi_thread")]
async fn edits_of_the_watched_file_apply_live_and_bad_ones_are_refused() {
    let hub = TestHub::start(&base_config(&profiles(&["Small"])));
    let (_admin, token) = admin_token(&hub, None).await;
    let api = TokenClient::new(&hub, &token);
    let (status, body) = api.call(Method::POST, "/hub/api/users/alice", None).await;
    assert_eq!(status, 201, "{body}");

    let (status, body) = api
        .call(
            Method::POST,
            "/hub/api/users/alice/server",
            Some(json!({"profile": "small"})),
        )
        .await;
    assert!(status == 201 || status == 202, "{status} {body}");
    let started = within(SLOW, || async {
        let (_, user) = api.call(Method::GET, "/hub/api/users/alice", None).await;
        user["servers"][""]["ready"] == json!(true)
    })
    .await;
    assert!(started, "alice's server did not start; log:\n{}", hub.log());
    let pids = hub.server_pids("alice");
    assert!(!pids.is_empty(), "no server process for alice");
    // The stand-in (Python's http.server) answers, through the proxy: its `Server` header.
    let server_reachable = || async {
        reqwest::get(hub.direct_url("/user/alice/"))
            .await
            .is_ok_and(|r| {
                r.headers()
                    .get("server")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("SimpleHTTP"))
            })
    };
    assert!(server_reachable().await);

    let bob = Browser::new(&hub);
    bob.login("bob", "x").await;
    let options = page(&bob, "/hub/spawn").await;
    assert!(options.contains("Small machine"), "{options}");
    assert!(!options.contains("Large machine"), "{options}");

    replace_config(&hub, |old| {
        old.replace(&profiles(&["Small"]), &profiles(&["Small", "Large"]))
    });
    let shown = within(LIVE_BOUND, || async {
        page(&bob, "/hub/spawn").await.contains("Large machine")
    })
    .await;
    assert!(
        shown,
        "the new profile did not show within {LIVE_BOUND:?}; log:\n{}",
        hub.log()
    );
    assert_eq!(hub.server_pids("alice"), pids, "alice's server was touched");
    assert!(
        server_reachable().await,
        "alice's server is not reachable after the reload"
    );

    // An invalid edit: a misspelt key, on a line of its own.
    replace_config(&hub, |old| {
        old.replace(
            "  templateVars:\n",
            "  templateVarz:\n    x: 1\n  templateVars:\n",
        )
    });
    let bad_line = std::fs::read_to_string(&hub.config)
        .unwrap()
        .lines()
        .position(|l| l.contains("templateVarz"))
        .unwrap()
        + 1;
    let config_name = hub.config.display().to_string();
    let located = format!("{config_name}:{bad_line}:");
    let logged = within(SLOW, || async {
        hub.log()
            .lines()
            .any(|l| l.contains("config reload refused") && l.contains(&located))
    })
    .await;
    assert!(
        logged,
        "no refusal naming {located} in the log:\n{}",
        hub.log()
    );
    let (status, summary) = reload(&api).await;
    assert_eq!(status, 400, "{summary}");
    assert_eq!(summary["ok"], json!(false), "{summary}");
    let errors = strings(&summary["errors"]);
    assert!(
        errors
            .iter()
            .any(|e| e.contains(&located) && e.contains("templateVarz")),
        "{summary}"
    );
    // The hub serves on, with what it had.
    let options = page(&bob, "/hub/spawn").await;
    assert!(options.contains("Large machine"), "{options}");
    assert!(server_reachable().await);

    // Fixed, with a new listen address: that one needs a restart, the hub stays where it is.
    let other_port = common::free_port();
    replace_config(&hub, |old| {
        old.replace("  templateVarz:\n    x: 1\n", "").replace(
            &format!("listen: 127.0.0.1:{}", hub.port),
            &format!("listen: 127.0.0.1:{other_port}"),
        )
    });
    let (status, summary) = reload(&api).await;
    assert_eq!(status, 200, "{summary}");
    assert!(
        strings(&summary["restart_needed"]).contains(&"hubfleet.listen".to_string()),
        "{summary}"
    );
    assert!(strings(&summary["applied"]).is_empty(), "{summary}");
    assert!(
        hub.log().contains("hubfleet.listen"),
        "the log does not say the listen address needs a restart"
    );
    let (status, _) = api.call(Method::GET, "/hub/api/users/alice", None).await;
    assert_eq!(status, 200, "the hub stopped answering on its address");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", other_port)).is_err(),
        "the hub listens on the new address without a restart"
    );
    assert_eq!(hub.server_pids("alice"), pids, "alice's server was touched");
}

/// Without the file watch (`HUBFLEET_NO_WATCH`): `config diff` shows the pending change, grouped;
/// the API needs `admin:hub`; SIGHUP applies the announcement; an API reload makes a new admin,
/// blocks a user (the authenticator's lists), restarts a managed service whose definition
/// changed, and restarts the culler.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_and_the_api_reload_and_config_diff_shows_what_would_change() {
    let service = "  services:\n    ticker:\n      command: [python3, -c, 'import time; time.sleep(3600)']\n      environment:\n        TICKER_VERSION: one\n";
    let yaml =
        base_config(&profiles(&["Small"])).replacen("hub:\n", &format!("hub:\n{service}"), 1)
            + "cull:\n  enabled: true\n  timeout: 3600\n  every: 600\n";
    let mut hub = TestHub::start_with_env(
        &yaml,
        "  culler: builtin\n",
        &common::python_env(),
        &[("HUBFLEET_NO_WATCH", "true")],
    );
    let hub_pid = hub.pid().unwrap() as i32;
    let (admin, token) = admin_token(&hub, None).await;
    let api = TokenClient::new(&hub, &token);
    let config = hub.config.display().to_string();

    // Nothing differs yet (once the hub, which listens first, has written what it runs with).
    let snapshot = hub.data_dir().join("effective-config.yaml");
    assert!(within(SLOW, || async { snapshot.exists() }).await);
    let out = hubfleet(&["config", "diff", "--config", &config]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("No changes"));

    // The scope: admin's token has it, one without admin:hub is refused.
    let (status, summary) = reload(&api).await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["applied"], json!([]), "{summary}");
    let (_, narrow) = common::admin_token_with(&hub, "admin", "x", Some(&["read:users"])).await;
    let (status, body) = reload(&TokenClient::new(&hub, &narrow)).await;
    assert_eq!(status, 403, "{body}");

    // Announcement changed (live) and a new listen address (restart): diff shows both.
    replace_config(&hub, |old| {
        old.replace("Welcome to the first config", "Maintenance at noon")
            .replace(
                &format!("listen: 127.0.0.1:{}", hub.port),
                "listen: 127.0.0.1:1",
            )
    });
    let out = hubfleet(&["config", "diff", "--config", &config]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let live_at = text.find("Applies live").expect(&text);
    let restart_at = text.find("Restart needed").expect(&text);
    let announcement_at = text.find("hub.templateVars.announcement").expect(&text);
    let listen_at = text.find("hubfleet.listen").expect(&text);
    assert!(
        live_at < announcement_at && announcement_at < restart_at && restart_at < listen_at,
        "{text}"
    );
    // Not watched: nothing applied yet.
    assert!(page(&admin, "/hub/home")
        .await
        .contains("Welcome to the first config"));

    // SIGHUP applies it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(hub_pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let shown = within(SLOW, || async {
        page(&admin, "/hub/home")
            .await
            .contains("Maintenance at noon")
    })
    .await;
    assert!(
        shown,
        "SIGHUP did not apply the announcement; log:\n{}",
        hub.log()
    );
    // The announcement shows as soon as the pages are swapped; the reload ends after.
    let finished = within(SLOW, || async { hub.log().contains("config reloaded") }).await;
    assert!(finished, "the reload did not finish; log:\n{}", hub.log());
    let out = hubfleet(&["config", "diff", "--config", &config]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!text.contains("hub.templateVars"), "{text}");
    assert!(text.contains("hubfleet.listen"), "{text}");

    // admin_users, the service's definition and the culler's timeout, through the API.
    let (_, carol) = api.call(Method::GET, "/hub/api/users/carol", None).await;
    assert_ne!(carol["admin"], json!(true), "{carol}");
    let old_service = service_pid_until(&api, SLOW, |pid| pid != 0).await;
    assert!(
        old_service != 0,
        "the managed service did not start; log:\n{}",
        hub.log()
    );
    assert!(environ(old_service).contains("TICKER_VERSION=one"));
    let dave_logs_in = || async {
        Browser::new(&hub)
            .login_response("dave", "x", None)
            .await
            .status()
            == 302
    };
    assert!(dave_logs_in().await, "dave cannot log in before the reload");
    replace_config(&hub, |old| {
        old.replace(
            "admin_users: [admin]",
            "admin_users: [admin, carol]\n      blocked_users: [dave]",
        )
        .replace("TICKER_VERSION: one", "TICKER_VERSION: two")
        .replace("timeout: 3600", "timeout: 1800")
    });
    let (status, summary) = reload(&api).await;
    assert_eq!(status, 200, "{summary}");
    let applied = strings(&summary["applied"]);
    for key in [
        "hub.config.Authenticator.admin_users",
        "hub.config.Authenticator.blocked_users",
        "hub.services.ticker.environment.TICKER_VERSION",
        "cull.timeout",
    ] {
        assert!(applied.contains(&key.to_string()), "{key}: {summary}");
    }
    assert!(
        strings(&summary["restart_needed"]).contains(&"hubfleet.listen".to_string()),
        "{summary}"
    );
    let (_, carol) = api.call(Method::GET, "/hub/api/users/carol", None).await;
    assert_eq!(carol["admin"], json!(true), "{carol}");
    // The authenticator's allow-lists: dave is blocked now, without a restart.
    assert!(
        !dave_logs_in().await,
        "dave still logs in after being blocked"
    );
    let new_service = service_pid_until(&api, SLOW, |pid| pid != 0 && pid != old_service).await;
    assert!(
        new_service != 0 && new_service != old_service,
        "the service was not restarted; log:\n{}",
        hub.log()
    );
    assert!(
        environ(new_service).contains("TICKER_VERSION=two"),
        "{}",
        environ(new_service)
    );
    assert!(
        !Path::new(&format!("/proc/{old_service}")).exists()
            || std::fs::read_to_string(format!("/proc/{old_service}/stat"))
                .is_ok_and(|s| s.contains(") Z ")),
        "the old service process still runs"
    );
    let culler_restarted = hub
        .log()
        .lines()
        .any(|l| l.contains("built-in idle culler enabled") && l.contains("timeout=1800"));
    assert!(culler_restarted, "culler not restarted:\n{}", hub.log());
    hub.kill();
}

/// The Content-Security-Policy's image origins follow the config: a changed logo URL shows
/// without a restart, and the old logo's origin is no longer allowed.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_updates_the_pages_image_origins() {
    let branding = |origin: &str| {
        format!("custom:\n  homepage:\n    templateVars:\n      org: {{name: Example, logo_url: '{origin}/logo.png'}}\n")
    };
    let (old_origin, new_origin) = ("https://old-logos.example.org", "https://logos.example.org");
    let hub = TestHub::start_with_env(
        &format!("{}{}", base_config(""), branding(old_origin)),
        "",
        &common::python_env(),
        &[("HUBFLEET_NO_WATCH", "true")],
    );
    let (_, token) = admin_token(&hub, None).await;
    let api = TokenClient::new(&hub, &token);
    let image_sources = || async {
        let response = reqwest::get(hub.url("/hub/login")).await.unwrap();
        let csp = response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        csp.split(';')
            .map(str::trim)
            .find_map(|d| d.strip_prefix("img-src "))
            .unwrap_or_else(|| panic!("no img-src in {csp}"))
            .to_string()
    };
    let sources = image_sources().await;
    assert!(sources.contains(old_origin), "{sources}");
    assert!(!sources.contains(new_origin), "{sources}");

    replace_config(&hub, |old| {
        old.replace(&branding(old_origin), &branding(new_origin))
    });
    let (status, summary) = reload(&api).await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(
        summary["applied"],
        json!(["custom.homepage.templateVars.org.logo_url"]),
        "{summary}"
    );
    let sources = image_sources().await;
    assert!(sources.contains(new_origin), "{sources}");
    assert!(!sources.contains(old_origin), "{sources}");
    let page = reqwest::get(hub.url("/hub/login"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&format!("{new_origin}/logo.png")), "{page}");
}
