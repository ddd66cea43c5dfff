//! The Binder-style hub (`binderhub-service:`), end to end: a local git repository whose
//! `requirements.txt` names `pyjokes` (a small pure-Python package that is not in the base test
//! environment: the test checks) is launched from its binder URL in Chromium, its environment
//! built with pip from PyPI, and lands in real JupyterLab with the notebook open, where the
//! import runs in a kernel. The same URL again finds the environment built (no `building`
//! events); a repository whose requirements name a package that does not exist shows pip's error
//! and leaves no server and no environment behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Mode, TestHub, TokenClient};
use reqwest::Method;

/// A package that is on PyPI, pure Python and small, and not in the base environment.
const PACKAGE: &str = "pyjokes";
const NOTEBOOK: &str = "jokes.ipynb";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/browser")
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(["-c", "user.name=test", "-c", "user.email=test@example.org"])
        .args(args)
        .current_dir(dir)
        .status()
        .expect("git is needed");
    assert!(status.success(), "git {args:?} failed");
}

/// A git repository with `files` committed on branch `main`.
fn repository(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "binder test"]);
}

fn notebook(code: &str) -> String {
    serde_json::json!({
        "cells": [{"cell_type": "code", "execution_count": null, "metadata": {}, "outputs": [],
                   "source": [code]}],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4, "nbformat_minor": 5
    })
    .to_string()
}

fn escape(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Read an event stream to its end (`ready` or `failed`): every event's JSON.
async fn events(url: &str) -> Vec<serde_json::Value> {
    events_with(&common::client_builder().build().unwrap(), url).await
}

/// [`events`] with a given client (its cookies).
async fn events_with(client: &reqwest::Client, url: &str) -> Vec<serde_json::Value> {
    let mut stream = EventStream::open(client, url).await;
    stream
        .until(|e| matches!(e["phase"].as_str(), Some("ready" | "failed")))
        .await
}

/// An event stream read as far as a test needs.
struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    async fn open(client: &reqwest::Client, url: &str) -> EventStream {
        let response = client.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        EventStream {
            response,
            buffer: String::new(),
        }
    }

    /// The events up to and including the first that `stop` accepts (or the stream's end).
    async fn until(&mut self, stop: impl Fn(&serde_json::Value) -> bool) -> Vec<serde_json::Value> {
        let mut events = Vec::new();
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                for line in block.lines() {
                    if let Some(data) = line.strip_prefix("data:") {
                        let event: serde_json::Value = serde_json::from_str(data.trim()).unwrap();
                        let last = stop(&event);
                        events.push(event);
                        if last {
                            return events;
                        }
                    }
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(600), self.response.chunk())
                .await
                .expect("the event stream went quiet for 10 minutes")
                .unwrap();
            match chunk {
                Some(chunk) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                None => return events,
            }
        }
    }
}

fn phases(events: &[serde_json::Value]) -> Vec<String> {
    let mut phases: Vec<String> = Vec::new();
    for e in events {
        let phase = e["phase"].as_str().unwrap_or_default().to_owned();
        if phases.last() != Some(&phase) {
            phases.push(phase);
        }
    }
    phases
}

/// Run a browser scenario; its stdout (for the lines it reports).
fn scenario(hub: &TestHub, script: &str, env: &[(&str, &str)]) -> String {
    let dir = fixture();
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "{}/node_modules is missing: run `npm ci` there (scripts/test does)",
        dir.display()
    );
    let chromium =
        std::env::var("HUBFLEET_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let output = Command::new("node")
        .arg(dir.join(script))
        .current_dir(&dir)
        .env("HUB_URL", hub.url(""))
        .env("CHROMIUM", &chromium)
        .env(
            "SCREENSHOT_DIR",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots"),
        )
        .envs(env.iter().copied())
        .output()
        .expect("node is needed for the browser tests");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    let log = hub.log();
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{stderr}\n--- hub log (end) ---\n{}",
        &log[log.len().saturating_sub(8000)..]
    );
    stdout
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn binder_launch_build_cache_and_failure() {
    let python = common::python_env();
    let has_package = Command::new(python.join("bin/python"))
        .args(["-c", &format!("import {PACKAGE}")])
        .output()
        .unwrap()
        .status
        .success();
    assert!(
        !has_package,
        "{PACKAGE} is in the base environment {}: the test would not show a build installing it",
        python.display()
    );
    let repos = tempfile::tempdir().unwrap();
    let good = repos.path().join("jokes");
    repository(
        &good,
        &[
            ("requirements.txt", &format!("{PACKAGE}\n")),
            (
                NOTEBOOK,
                &notebook(
                    "import pyjokes\nprint('imported', pyjokes.__name__, 'from', pyjokes.__file__)",
                ),
            ),
        ],
    );
    let bad = repos.path().join("broken");
    repository(
        &bad,
        &[("requirements.txt", "hubfleet-no-such-package-4c1d9e\n")],
    );
    let allowed = allowed_spec(repos.path());
    let hub = TestHub::start_in(
        Mode::Subdomains,
        &common::admin_yaml(&format!(
            "singleuser:\n  defaultUrl: /lab\nbinderhub-service:\n  enabled: true\n  config:\n    BinderHub:\n      banned_specs: ['^gh/banned/']\n  hubfleet:\n    allow_anonymous_launches: true\n    allowed_specs: ['{allowed}', '^gh/']\n"
        )),
    );
    let good_spec = format!("git/{}/main", escape(&good.display().to_string()));
    let bad_spec = format!("git/{}/main", escape(&bad.display().to_string()));

    // 1. In Chromium: the build's events, then JupyterLab with the notebook, the import run.
    let out = scenario(
        &hub,
        "binder.mjs",
        &[
            (
                "BINDER_PATH",
                &format!("/hub/binder/v2/{good_spec}?labpath={NOTEBOOK}"),
            ),
            ("NOTEBOOK", NOTEBOOK),
            ("EXPECT_OUTPUT", "imported pyjokes from"),
        ],
    );
    let seen: Vec<String> = out
        .lines()
        .find_map(|l| l.strip_prefix("PHASES "))
        .map(|l| serde_json::from_str(l).unwrap())
        .expect("the scenario reports the phases it saw");
    assert_eq!(
        seen,
        ["fetching", "building", "built", "launching", "ready"],
        "the page showed each phase in order"
    );
    assert_eq!(seen.last().map(String::as_str), Some("ready"), "{seen:?}");
    let installed = out.contains(&format!("Successfully installed {PACKAGE}"));
    assert!(installed, "pip's output is on the page:\n{out}");
    let environments = hub.data_dir().join("binder/environments");
    assert_eq!(entries(&environments).len(), 1, "one environment built");

    // 2. The same URL again: the environment is found, nothing is built.
    let again = events(&hub.direct_url(&format!("/hub/binder/build/{good_spec}"))).await;
    let again_phases = phases(&again);
    assert!(
        !again_phases.contains(&"building".into()),
        "a second launch built again: {again_phases:?}"
    );
    assert_eq!(
        again_phases,
        ["fetching", "built", "launching", "ready"],
        "{again:#?}"
    );
    let built = again.iter().find(|e| e["phase"] == "built").unwrap();
    assert!(
        built["message"].as_str().unwrap().contains("Found built"),
        "{built}"
    );
    let ready = again.last().unwrap();
    assert!(
        ready["url"].as_str().unwrap().contains("/user/binder-"),
        "{ready}"
    );
    assert!(!ready["token"].as_str().unwrap().is_empty(), "{ready}");
    assert_eq!(entries(&environments).len(), 1, "no second environment");

    // 3. Refusals are clear, before anything is made.
    let refused = events(&hub.direct_url("/hub/binder/build/gh/banned/repo/main")).await;
    assert_eq!(phases(&refused), ["failed"]);
    assert!(
        refused[0]["message"]
            .as_str()
            .unwrap()
            .contains("banned_specs"),
        "{refused:?}"
    );
    let conda = repos.path().join("conda");
    repository(&conda, &[("environment.yml", "dependencies: [numpy]\n")]);
    let conda_events = events(&hub.direct_url(&format!(
        "/hub/binder/build/git/{}/main",
        escape(&conda.display().to_string())
    )))
    .await;
    let conda_failure = conda_events.last().unwrap()["message"].as_str().unwrap();
    assert!(conda_failure.contains("conda"), "{conda_events:?}");

    // 4. A repository that does not build: pip's error on the page, nothing left behind.
    let (_, token) = common::admin_token(&hub, None).await;
    let admin = TokenClient::new(&hub, &token);
    let names = |users: &serde_json::Value| -> Vec<String> {
        users
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, before) = admin.call(Method::GET, "/hub/api/users", None).await;
    let before = names(&before);
    scenario(
        &hub,
        "binder_failure.mjs",
        &[
            ("BINDER_PATH", &format!("/hub/binder/v2/{bad_spec}")),
            ("EXPECT_ERROR", "hubfleet-no-such-package-4c1d9e"),
        ],
    );
    let (_, users) = admin.call(Method::GET, "/hub/api/users", None).await;
    let new: Vec<&serde_json::Value> = users
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| !before.contains(&u["name"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(new.len(), 1, "one temporary user for the launch: {new:?}");
    let failed_user = new[0];
    assert_eq!(
        failed_user["servers"],
        serde_json::json!({}),
        "no server for the failed launch: {failed_user}"
    );
    assert_eq!(
        entries(&environments).len(),
        1,
        "no environment from the failure"
    );
    assert!(
        entries(&hub.data_dir().join("binder/building")).is_empty(),
        "no half-made build left"
    );
}

/// `allowed_specs` entry for the git repositories under `dir`.
fn allowed_spec(dir: &Path) -> String {
    format!("^git/{}", regex_escape(&escape(&dir.display().to_string())))
}

/// Dummy login, no admin.
const DUMMY_HUB: &str = "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n";

/// `binderhub-service` with anonymous launches of `allowed` specs; `extra` goes on under `hubfleet:`.
fn anonymous_binder(allowed: &str, extra: &str) -> String {
    format!(
        "binderhub-service:\n  enabled: true\n  hubfleet:\n    allow_anonymous_launches: true\n    allowed_specs: ['{allowed}']\n{extra}"
    )
}

/// `text` as a literal in a regular expression.
fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

/// An ephemeral server that goes idle is culled (z2jh's `cull:`, the built-in culler here), and
/// its temporary user is deleted with it.
#[tokio::test(flavor = "multi_thread")]
async fn idle_binder_servers_are_culled_and_their_users_deleted() {
    let repos = tempfile::tempdir().unwrap();
    let plain = repos.path().join("plain");
    repository(&plain, &[("README.md", "Nothing to install.\n")]);
    let allowed = allowed_spec(repos.path());
    let hub = TestHub::start_with(
        &common::admin_yaml(&format!(
            "cull:\n  enabled: true\n  timeout: 3\n  every: 2\n{}",
            anonymous_binder(&allowed, "")
        )),
        "  culler: builtin\n",
        &common::python_env(),
    );
    let launched = events(&hub.direct_url(&format!(
        "/hub/binder/build/git/{}/main",
        escape(&plain.display().to_string())
    )))
    .await;
    let ready = launched.last().unwrap();
    assert_eq!(ready["phase"], "ready", "{launched:#?}\n{}", hub.log());
    let url = ready["url"].as_str().unwrap();
    let user = url
        .split('/')
        .skip_while(|s| *s != "user")
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(user.starts_with("binder-"), "{url}");
    let (_, token) = common::admin_token(&hub, None).await;
    let admin = TokenClient::new(&hub, &token);
    let (status, model) = admin
        .call(Method::GET, &format!("/hub/api/users/{user}"), None)
        .await;
    assert_eq!(status, 200, "{model}");
    assert!(!model["servers"][""].is_null(), "the server runs: {model}");
    // Culled after 3 s idle, then deleted by the next round of the reaper (every 10 s).
    let since = std::time::Instant::now();
    loop {
        let (status, _) = admin
            .call(Method::GET, &format!("/hub/api/users/{user}"), None)
            .await;
        if status == 404 {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(120),
            "{user} still exists after 120 s; hub log:\n{}",
            hub.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let log = hub.log();
    assert!(log.contains("culling idle server"), "{log}");
    assert!(log.contains("temporary binder user deleted"), "{log}");
    assert!(
        hub.server_pids(&user).is_empty(),
        "the server process is gone"
    );
}

/// With `auth_enabled`, only logged-in users launch, each into their own server `binder`.
#[tokio::test(flavor = "multi_thread")]
async fn with_auth_the_logged_in_user_launches() {
    let repos = tempfile::tempdir().unwrap();
    let plain = repos.path().join("plain");
    repository(&plain, &[("README.md", "Nothing to install.\n")]);
    let allowed = allowed_spec(repos.path());
    let hub = TestHub::start(&format!(
        "{DUMMY_HUB}binderhub-service:\n  enabled: true\n  config:\n    BinderHub:\n      auth_enabled: true\n  hubfleet:\n    allowed_specs: ['{allowed}']\n"
    ));
    let spec = format!("git/{}/main", escape(&plain.display().to_string()));
    // Not logged in: the page sends to the login page, the stream refuses.
    let anonymous = common::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = anonymous
        .get(hub.url(&format!("/hub/binder/v2/{spec}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 302);
    let location = page.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("/hub/login?next="), "{location}");
    let refused = events_with(&anonymous, &hub.url(&format!("/hub/binder/build/{spec}"))).await;
    assert_eq!(phases(&refused), ["failed"], "{refused:?}");
    assert!(
        refused[0]["message"].as_str().unwrap().contains("log in"),
        "{refused:?}"
    );
    // Logged in: alice's own server `binder`, no temporary user.
    let alice = common::Browser::new(&hub);
    alice.login("alice", "x").await;
    let launched = events_with(
        &alice.client,
        &hub.url(&format!("/hub/binder/build/{spec}")),
    )
    .await;
    let ready = launched.last().unwrap();
    assert_eq!(ready["phase"], "ready", "{launched:#?}\n{}", hub.log());
    assert!(
        ready["url"]
            .as_str()
            .unwrap()
            .ends_with("/user/alice/binder/"),
        "{ready}"
    );
    let model = alice.user_model("alice").await;
    assert!(!model["servers"]["binder"].is_null(), "{model}");
    assert!(!hub.log().contains("temporary binder user created"));
}

/// Two launches of one commit at once: one builds, the other waits for that build and finds it
/// built (one environment). `postBuild` runs, and one that outlives `postbuild_timeout` fails
/// the build.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_launches_share_one_build_and_postbuild_is_limited() {
    let repos = tempfile::tempdir().unwrap();
    let gate = repos.path().join("gate");
    let started = repos.path().join("postbuild-started");
    let shared = repos.path().join("shared");
    repository(
        &shared,
        &[(
            "postBuild",
            &format!(
                "touch '{}'\nwhile [ ! -e '{}' ]; do sleep 0.1; done\necho postBuild done\n",
                started.display(),
                gate.display()
            ),
        )],
    );
    let slow = repos.path().join("slow");
    repository(&slow, &[("postBuild", "echo sleeping\nsleep 600\n")]);
    let allowed = allowed_spec(repos.path());
    let hub = TestHub::start(&format!(
        "{DUMMY_HUB}{}",
        anonymous_binder(&allowed, "    postbuild_timeout: 10\n")
    ));
    let url = hub.url(&format!(
        "/hub/binder/build/git/{}/main",
        escape(&shared.display().to_string())
    ));
    let client = || common::client_builder().build().unwrap();
    let (first_client, second_client) = (client(), client());
    let mut first = EventStream::open(&first_client, &url).await;
    let mut first_events = first
        .until(|e| {
            e["message"]
                .as_str()
                .unwrap_or_default()
                .contains("Running postBuild")
        })
        .await;
    let mut second = EventStream::open(&second_client, &url).await;
    let mut second_events = second.until(|e| e["phase"] == "waiting").await;
    assert_eq!(
        second_events.last().map(|e| e["phase"].clone()),
        Some("waiting".into()),
        "the second launch waits for the first build: {second_events:?}"
    );
    std::fs::write(&gate, "").unwrap();
    let done = |e: &serde_json::Value| matches!(e["phase"].as_str(), Some("ready" | "failed"));
    first_events.extend(first.until(done).await);
    second_events.extend(second.until(done).await);
    assert_eq!(
        first_events.last().unwrap()["phase"],
        "ready",
        "{first_events:#?}"
    );
    assert_eq!(
        second_events.last().unwrap()["phase"],
        "ready",
        "{second_events:#?}"
    );
    assert!(
        first_events
            .iter()
            .any(|e| e["message"] == "postBuild done\n"),
        "postBuild's output is in the log: {first_events:#?}"
    );
    assert!(
        !phases(&second_events).contains(&"building".into()),
        "{second_events:#?}"
    );
    let environments = entries(&hub.data_dir().join("binder/environments"));
    assert_eq!(environments.len(), 1, "{environments:?}");

    let slow_events = events(&hub.url(&format!(
        "/hub/binder/build/git/{}/main",
        escape(&slow.display().to_string())
    )))
    .await;
    let failure = slow_events.last().unwrap();
    assert_eq!(failure["phase"], "failed", "{slow_events:#?}");
    assert!(
        failure["message"]
            .as_str()
            .unwrap()
            .contains("postbuild_timeout"),
        "{failure}"
    );
    assert_eq!(
        entries(&hub.data_dir().join("binder/environments")).len(),
        1
    );
    assert!(entries(&hub.data_dir().join("binder/building")).is_empty());
}

/// A build that would take the environments past `environments_disk_limit` fails, saying so,
/// and keeps nothing.
#[tokio::test(flavor = "multi_thread")]
async fn environments_disk_limit_refuses_a_build() {
    let repos = tempfile::tempdir().unwrap();
    let plain = repos.path().join("plain");
    repository(&plain, &[("README.md", "Nothing to install.\n")]);
    let allowed = allowed_spec(repos.path());
    // A venv and a checkout take more than 4 KB whatever they hold.
    let hub = TestHub::start(&format!(
        "{DUMMY_HUB}{}",
        anonymous_binder(&allowed, "    environments_disk_limit: 4K\n")
    ));
    let launched = events(&hub.url(&format!(
        "/hub/binder/build/git/{}/main",
        escape(&plain.display().to_string())
    )))
    .await;
    let failure = launched.last().unwrap();
    assert_eq!(failure["phase"], "failed", "{launched:#?}");
    assert!(
        failure["message"]
            .as_str()
            .unwrap()
            .contains("environments_disk_limit"),
        "{failure}"
    );
    assert!(entries(&hub.data_dir().join("binder/environments")).is_empty());
    assert!(entries(&hub.data_dir().join("binder/building")).is_empty());
}

/// A visitor who comes back is the same temporary user: the same link again (a reload) opens
/// the server it started, another repository replaces that server. Over
/// `max_temporary_users` a new visitor is told so, on the page and in the event stream, and
/// nothing is made. Users are counted through the REST API.
#[tokio::test(flavor = "multi_thread")]
async fn returning_visitors_keep_their_temporary_user_and_the_cap_holds() {
    let repos = tempfile::tempdir().unwrap();
    let first_repo = repos.path().join("first");
    repository(&first_repo, &[("README.md", "The first repository.\n")]);
    let second_repo = repos.path().join("second");
    repository(&second_repo, &[("README.md", "The second repository.\n")]);
    let allowed = allowed_spec(repos.path());
    let hub = common::admin_hub(&anonymous_binder(&allowed, "    max_temporary_users: 1\n"));
    let (_, token) = common::admin_token(&hub, None).await;
    let admin = TokenClient::new(&hub, &token);
    let temporary_users = || async {
        let (status, users) = admin.call(Method::GET, "/hub/api/users", None).await;
        assert_eq!(status, 200, "{users}");
        users
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["name"].as_str().unwrap().starts_with("binder-"))
            .cloned()
            .collect::<Vec<serde_json::Value>>()
    };
    let spec = |repo: &Path| format!("git/{}/main", escape(&repo.display().to_string()));
    let visitor = common::Browser::new(&hub);
    let launch = |browser: &common::Browser, repo: &Path| {
        let (client, page, stream) = (
            browser.client.clone(),
            hub.url(&format!("/hub/binder/v2/{}", spec(repo))),
            hub.url(&format!("/hub/binder/build/{}", spec(repo))),
        );
        async move {
            let page = client.get(&page).send().await.unwrap();
            let status = page.status().as_u16();
            let body = page.text().await.unwrap();
            (status, body, events_with(&client, &stream).await)
        }
    };

    // The first launch makes one temporary user with one server.
    let (status, body, first) = launch(&visitor, &first_repo).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(first.last().unwrap()["phase"], "ready", "{first:#?}");
    let users = temporary_users().await;
    assert_eq!(users.len(), 1, "{users:#?}");
    let name = users[0]["name"].as_str().unwrap().to_owned();
    let server = &users[0]["servers"][""];
    assert_eq!(server["ready"], true, "{server}");
    let started = server["started"].clone();
    let pids = hub.server_pids(&name);
    assert!(!pids.is_empty(), "the server runs in the home");

    // A reload: the same user, and the server already running is opened, not started again.
    let (status, body, again) = launch(&visitor, &first_repo).await;
    assert_eq!(status, 200, "{body}");
    let ready = again.last().unwrap();
    assert_eq!(ready["phase"], "ready", "{again:#?}");
    assert!(
        ready["url"]
            .as_str()
            .unwrap()
            .contains(&format!("/user/{name}/")),
        "{ready}"
    );
    assert!(
        again.iter().any(|e| e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("already runs this commit")),
        "{again:#?}"
    );
    let users = temporary_users().await;
    assert_eq!(users.len(), 1, "a reload made another user: {users:#?}");
    assert_eq!(users[0]["name"], name.as_str());
    assert_eq!(users[0]["servers"][""]["started"], started, "not restarted");
    // The server's process (the first in its home; short-lived children it starts come and
    // go) still runs.
    let server_pid = pids.iter().min().unwrap();
    let now = hub.server_pids(&name);
    assert!(
        now.contains(server_pid),
        "the same server process: {pids:?} before, {now:?} now"
    );

    // Another repository: still the same user, whose server now runs the new one.
    let (status, body, other) = launch(&visitor, &second_repo).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(other.last().unwrap()["phase"], "ready", "{other:#?}");
    assert!(
        other
            .iter()
            .any(|e| e["message"] == "Stopping your previous binder server\n"),
        "{other:#?}"
    );
    let users = temporary_users().await;
    assert_eq!(
        users.len(),
        1,
        "another repository made another user: {users:#?}"
    );
    assert_eq!(users[0]["name"], name.as_str());
    let new_pids = hub.server_pids(&name);
    assert!(!new_pids.is_empty(), "the new server runs");
    assert!(
        new_pids.iter().all(|p| !pids.contains(p)),
        "the old server was stopped: {pids:?} then {new_pids:?}"
    );

    // A second visitor, over max_temporary_users: 1, is told so and nothing is made.
    let stranger = common::Browser::new(&hub);
    let (status, body, refused) = launch(&stranger, &first_repo).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("max_temporary_users"), "{body}");
    assert_eq!(phases(&refused), ["failed"], "{refused:#?}");
    assert!(
        refused[0]["message"]
            .as_str()
            .unwrap()
            .contains("max_temporary_users"),
        "{refused:#?}"
    );
    let users = temporary_users().await;
    assert_eq!(users.len(), 1, "{users:#?}");
    assert_eq!(users[0]["name"], name.as_str());
}

/// Fetching the launch page makes no temporary user (crawlers and link previews fetch it):
/// only the event stream, a launch, does. With `max_temporary_users: 1`, two visitors who only
/// open the page leave the place to a third who launches.
#[tokio::test(flavor = "multi_thread")]
async fn the_launch_page_alone_makes_no_temporary_user() {
    let repos = tempfile::tempdir().unwrap();
    let repo = repos.path().join("repo");
    repository(&repo, &[("README.md", "A repository.\n")]);
    let allowed = allowed_spec(repos.path());
    let hub = common::admin_hub(&anonymous_binder(&allowed, "    max_temporary_users: 1\n"));
    let (_, token) = common::admin_token(&hub, None).await;
    let admin = TokenClient::new(&hub, &token);
    let spec = format!("git/{}/main", escape(&repo.display().to_string()));
    for _ in 0..2 {
        let previewer = common::Browser::new(&hub);
        let page = previewer
            .client
            .get(hub.url(&format!("/hub/binder/v2/{spec}")))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status().as_u16(), 200);
        assert!(
            page.headers().get("set-cookie").is_none(),
            "{:?}",
            page.headers()
        );
    }
    let (status, users) = admin.call(Method::GET, "/hub/api/users", None).await;
    assert_eq!(status, 200, "{users}");
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with("binder-")), "{names:?}");

    let visitor = common::Browser::new(&hub);
    let page = visitor
        .client
        .get(hub.url(&format!("/hub/binder/v2/{spec}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let launched = events_with(
        &visitor.client,
        &hub.url(&format!("/hub/binder/build/{spec}")),
    )
    .await;
    assert_eq!(launched.last().unwrap()["phase"], "ready", "{launched:#?}");
}

/// A build runs with an empty environment but for an allow-list: the hub's secrets (here
/// `JUPYTERHUB_CRYPT_KEY`, a `HUBFLEET_*` variable and a token of no known prefix) do not
/// reach `postBuild`, while PATH works, pip's index setting passes and HOME is the build's.
#[tokio::test(flavor = "multi_thread")]
async fn builds_get_only_allowed_environment_variables() {
    let repos = tempfile::tempdir().unwrap();
    let repo = repos.path().join("envdump");
    repository(
        &repo,
        &[(
            "postBuild",
            "env > \"$VIRTUAL_ENV/build-env.txt\"\npython -c 'import sys; print(sys.prefix)' > \"$VIRTUAL_ENV/build-python.txt\"\n",
        )],
    );
    let allowed = allowed_spec(repos.path());
    let crypt_key = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let secrets = [
        ("JUPYTERHUB_CRYPT_KEY", crypt_key),
        ("HUBFLEET_BINDER_TEST_SECRET", "hub-secret-7d41"),
        ("MY_CLOUD_TOKEN", "cloud-token-93be"),
    ];
    let mut env = secrets.to_vec();
    env.push(("PIP_INDEX_URL", "https://pypi.org/simple"));
    let hub = TestHub::start_with_env(
        &format!("{DUMMY_HUB}{}", anonymous_binder(&allowed, "")),
        "",
        &common::python_env(),
        &env,
    );
    let launched = events(&hub.url(&format!(
        "/hub/binder/build/git/{}/main",
        escape(&repo.display().to_string())
    )))
    .await;
    assert_eq!(
        launched.last().unwrap()["phase"],
        "ready",
        "{launched:#?}\n{}",
        hub.log()
    );
    let environments = hub.data_dir().join("binder/environments");
    let built = entries(&environments);
    assert_eq!(built.len(), 1, "{built:?}");
    let venv = environments.join(&built[0]).join("env");
    let dumped = std::fs::read_to_string(venv.join("build-env.txt")).unwrap();
    let vars: std::collections::BTreeMap<&str, &str> =
        dumped.lines().filter_map(|l| l.split_once('=')).collect();
    for (name, value) in secrets {
        assert!(
            !vars.contains_key(name) && !dumped.contains(value),
            "{name} reached postBuild:\n{dumped}"
        );
    }
    assert!(!vars.keys().any(|k| k.starts_with("HUBFLEET_")), "{dumped}");
    assert_eq!(vars.get("PIP_INDEX_URL"), Some(&"https://pypi.org/simple"));
    let home = vars.get("HOME").expect("HOME is set");
    assert!(
        home.contains("/binder/building/"),
        "HOME is the build's: {home}"
    );
    assert!(
        !Path::new(&environments.join(&built[0]))
            .join("home")
            .exists(),
        "the build's HOME is not kept"
    );
    // PATH works: `python` is the environment's own.
    let python = std::fs::read_to_string(venv.join("build-python.txt")).unwrap();
    assert!(
        python.trim().ends_with("/env") && python.contains("/binder/building/"),
        "{python}"
    );
}

/// A Unix account made for the test, deleted when dropped.
struct TestAccount(String);

impl TestAccount {
    fn new(name: &str) -> TestAccount {
        let _ = Command::new("userdel").arg(name).output();
        let made = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(name)
            .status()
            .expect("useradd is needed");
        assert!(made.success(), "useradd {name} failed");
        TestAccount(name.to_owned())
    }

    fn uid(&self) -> u32 {
        nix::unistd::User::from_name(&self.0)
            .unwrap()
            .unwrap()
            .uid
            .as_raw()
    }
}

impl Drop for TestAccount {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).output();
    }
}

/// A venv of the system's Python that every account can run, borrowing the packages of the
/// test environment (jupyterhub, JupyterLab): the same Python minor version, so the same ABI.
fn system_base_env(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let test_env = common::python_env();
    let base = dir.join("system-base");
    let made = Command::new("/usr/bin/python3")
        .args(["-m", "venv", "--without-pip"])
        .arg(&base)
        .status()
        .expect("/usr/bin/python3 is needed");
    assert!(made.success());
    let lib = std::fs::read_dir(base.join("lib"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .file_name();
    let site = base.join("lib").join(&lib).join("site-packages");
    let borrowed = test_env.join("lib").join(&lib).join("site-packages");
    assert!(
        borrowed.is_dir(),
        "{} has no {}: the test environment's Python is not the system's minor version",
        test_env.display(),
        borrowed.display()
    );
    std::fs::remove_dir_all(&site).unwrap();
    std::os::unix::fs::symlink(&borrowed, &site).unwrap();
    for shared in ["share", "etc"] {
        std::os::unix::fs::symlink(test_env.join(shared), base.join(shared)).unwrap();
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    base
}

/// On a root hub with `system_users`, builds run as `build_user` (an unprivileged account, not
/// root), what they keep is root's (a later build cannot change it), and the launched server
/// runs as the user's own account.
#[tokio::test(flavor = "multi_thread")]
async fn with_system_users_builds_run_as_the_build_account() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert!(
        nix::unistd::geteuid().is_root(),
        "system users need root (CI runs the tests as root)"
    );
    let pid = std::process::id();
    let user = format!("bind{pid}");
    let _accounts = common::fresh_system_accounts(&[&user]);
    let builder = TestAccount::new(&format!("hfbuild{pid}"));
    let repos = tempfile::tempdir().unwrap();
    std::fs::set_permissions(repos.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let repo = repos.path().join("whoami");
    repository(
        &repo,
        &[(
            "postBuild",
            "id -u > \"$VIRTUAL_ENV/build-uid.txt\"\nchmod 0777 \"$VIRTUAL_ENV/build-uid.txt\"\necho built > \"$HOME/dotfile\"\n",
        )],
    );
    let base = system_base_env(&repos.path().join("base"));
    let allowed = allowed_spec(repos.path());
    let hub = TestHub::start_with(
        &format!(
            "{DUMMY_HUB}binderhub-service:\n  enabled: true\n  config:\n    BinderHub:\n      auth_enabled: true\n  hubfleet:\n    allowed_specs: ['{allowed}']\n    build_user: {}\n",
            builder.0
        ),
        "    system_users: true\n",
        &base,
    );
    // The accounts reach their homes and the environments through the test's directory.
    std::fs::set_permissions(hub.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let browser = common::Browser::new(&hub);
    browser.login(&user, "x").await;
    let launched = events_with(
        &browser.client,
        &hub.url(&format!(
            "/hub/binder/build/git/{}/main",
            escape(&repo.display().to_string())
        )),
    )
    .await;
    let log = hub.log();
    assert_eq!(
        launched.last().unwrap()["phase"],
        "ready",
        "{launched:#?}\n{}",
        &log[log.len().saturating_sub(6000)..]
    );
    let environments = hub.data_dir().join("binder/environments");
    let built = entries(&environments);
    assert_eq!(built.len(), 1, "{built:?}");
    let kept = environments.join(&built[0]);
    let uid = std::fs::read_to_string(kept.join("env/build-uid.txt")).unwrap();
    assert_eq!(
        uid.trim(),
        builder.uid().to_string(),
        "postBuild ran as the build account"
    );
    for path in [
        kept.clone(),
        kept.join("env/build-uid.txt"),
        kept.join("repo"),
    ] {
        let metadata = std::fs::metadata(&path).unwrap();
        assert_eq!(metadata.uid(), 0, "{} is root's", path.display());
        assert_eq!(
            metadata.permissions().mode() & 0o022,
            0,
            "{} is writable by root only",
            path.display()
        );
    }
    let account = nix::unistd::User::from_name(&format!("jupyter-{user}"))
        .unwrap()
        .expect("the hub made the user's account");
    let pids = hub.server_pids(&user);
    assert!(!pids.is_empty(), "the server runs");
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let real_uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap();
        assert_eq!(real_uid, account.uid.as_raw().to_string(), "{status}");
    }
}
