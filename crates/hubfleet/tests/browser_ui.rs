//! The pages in a real browser: Debian's Chromium driven by playwright-core (Node scripts in
//! `fixtures/browser`, `npm ci` there is done by `scripts/test`), axe-core on every page at
//! 1280×800 and 390×844, CSP violations and script errors counted as failures. The user's
//! journey runs real JupyterLab; the admin scenarios use a stand-in server. Screenshots go to
//! `target/screenshots/`; with `HUBFLEET_SCREENSHOTS=docs` they replace the README's in
//! `docs/screenshots/` (a plain test run leaves the tree clean).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fake_singleuser, Browser, Mode, TestHub, TokenClient};

#[path = "support/users_cli.rs"]
mod users_cli;
use reqwest::Method;
use serde_json::json;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/browser")
}

fn screenshots() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if std::env::var("HUBFLEET_SCREENSHOTS").as_deref() == Ok("docs") {
        repo.join("docs/screenshots")
    } else {
        repo.join("target/screenshots")
    }
}

/// Run one scenario against the hub; its output is printed, a failure shows the hub's log.
fn scenario(hub: &TestHub, script: &str) {
    scenario_with(hub, script, &[]);
}

/// [`scenario`] with more environment for the script.
fn scenario_with(hub: &TestHub, script: &str, env: &[(&str, &str)]) {
    let dir = fixture();
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "{}/node_modules is missing: run `npm ci` there (scripts/test does)",
        dir.display()
    );
    let chromium =
        std::env::var("HUBFLEET_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's `chromium` (.ci/run does) or set HUBFLEET_CHROMIUM"
    );
    let output = Command::new("node")
        .arg(dir.join(script))
        .current_dir(&dir)
        .env("HUB_URL", hub.url(""))
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOT_DIR", screenshots())
        .env(
            "USER_HOSTS",
            if hub.mode == Mode::Subdomains {
                "1"
            } else {
                "0"
            },
        )
        .envs(env.iter().copied())
        .output()
        .expect("node is needed for the browser tests");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{stderr}\n--- hub log (end) ---\n{}",
        tail(&hub.log(), 6000)
    );
}

fn tail(text: &str, max: usize) -> &str {
    let start = text.len().saturating_sub(max);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    &text[start..]
}

const BRANDING: &str = r#"  templateVars:
    announcement: "Scheduled maintenance on <strong>Saturday</strong> from 8:00 to 10:00 UTC."
    announcement_login: "Welcome! Sign in with any name during the workshop."
custom:
  homepage:
    templateVars:
      org:
        name: Example Community
        url: https://example.org
        logo_url: /hub/static/logo.svg
      designed_by: {name: 2i2c, url: "https://2i2c.org"}
      operated_by: {name: 2i2c, url: "https://2i2c.org"}
      funded_by: {name: Example Foundation, url: "https://example.org/funders"}
"#;

/// On users' own hosts (`subdomain_host`, our default).
#[tokio::test(flavor = "multi_thread")]
async fn user_journey_in_jupyterlab() {
    user_journey(Mode::Subdomains).await;
}

/// On the hub's origin (upstream's default).
#[tokio::test(flavor = "multi_thread")]
async fn user_journey_in_jupyterlab_on_the_hubs_origin() {
    user_journey(Mode::Paths).await;
}

async fn user_journey(mode: Mode) {
    let yaml = format!(
        r#"hub:
  allowNamedServers: true
  config:
    JupyterHub:
      authenticator_class: dummy
    Authenticator:
      admin_users: [admin]
  loadRoles:
    user:
      scopes: [self, "shares!user", "read:users:name", "read:groups:name"]
{BRANDING}singleuser:
  defaultUrl: /lab
  profileList:
    - display_name: Small
      slug: small
      description: For everyday work.
      default: true
      kubespawner_override:
        environment: {{SIZE: small}}
    - display_name: Large
      slug: large
      description: For bigger data.
      kubespawner_override:
        environment: {{SIZE: large}}
"#
    );
    let hub = TestHub::start_in(mode, &yaml);
    let (_, token) = common::admin_token(&hub, None).await;
    let client = TokenClient::new(&hub, &token);
    let (status, body) = client
        .call(
            Method::POST,
            "/hub/api/users",
            Some(json!({"usernames": ["alice", "bob"]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    scenario(&hub, "user.mjs");
    // The profile picked in the browser is the one the server was started with.
    let (status, alice) = client
        .call(
            Method::GET,
            "/hub/api/users/alice?include_stopped_servers=1",
            None,
        )
        .await;
    assert_eq!(status, 200, "{alice}");
    assert_eq!(
        alice["servers"][""]["user_options"]["profile"], "large",
        "{alice}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_panel() {
    let hub = TestHub::start_in(Mode::Subdomains, &format!(
        "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n    Authenticator:\n      admin_users: [admin]\n{BRANDING}singleuser:\n  cmd: {}\n",
        fake_singleuser()
    ));
    scenario(&hub, "admin.mjs");
    // What the browser did is in the hub: ann in group x, cat renamed and deleted, ben stopped.
    let (_, token) = common::admin_token(&hub, None).await;
    let client = TokenClient::new(&hub, &token);
    let (_, group) = client.call(Method::GET, "/hub/api/groups/x", None).await;
    assert_eq!(group["users"], json!(["ann"]), "{group}");
    assert_eq!(group["properties"], json!({"course": "intro"}), "{group}");
    let (status, _) = client.call(Method::GET, "/hub/api/users/cathy", None).await;
    assert_eq!(status, 404);
    let (_, ben) = client.call(Method::GET, "/hub/api/users/ben", None).await;
    assert_eq!(ben["servers"], json!({}), "{ben}");
}

#[tokio::test(flavor = "multi_thread")]
async fn filtered_admin_sees_only_their_group() {
    let hub = TestHub::start(&format!(
        r#"hub:
  config:
    JupyterHub:
      authenticator_class: dummy
    Authenticator:
      admin_users: [admin]
  loadRoles:
    group-x-admin:
      scopes: ["admin-ui", "admin:users!group=x", "admin:servers!group=x"]
      users: [leader]
singleuser:
  cmd: {}
"#,
        fake_singleuser()
    ));
    let browser = Browser::new(&hub);
    browser.login("admin", "x").await;
    let (status, body) = browser
        .call(
            Method::POST,
            "/hub/api/users",
            Some(json!({"usernames": ["ann", "ben", "carl", "dora", "leader"]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = browser.call(Method::POST, "/hub/api/groups/x", None).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = browser
        .call(
            Method::POST,
            "/hub/api/groups/x/users",
            Some(json!({"users": ["ann", "ben"]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    scenario(&hub, "filtered_admin.mjs");
}

const ISOLATION_HUB: &str = "hub:\n  allowNamedServers: true\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n    Authenticator:\n      admin_users: [admin]\nsingleuser:\n  defaultUrl: /lab\n";

/// Finding F1 of the security review, as it was reproduced: a page planted in mallory's own
/// server (her `~/.jupyter/jupyter_server_config.py` adds it) is opened by an admin. Returns the
/// hub with mallory's server running, after the admin's visit.
async fn planted_page_visited_by_an_admin(mode: Mode) -> (TestHub, TokenClient) {
    let hub = TestHub::start_in(mode, ISOLATION_HUB);
    let (_, token) = common::admin_token(&hub, None).await;
    let client = TokenClient::new(&hub, &token);
    let (status, body) = client
        .call(Method::POST, "/hub/api/users/mallory", None)
        .await;
    assert_eq!(status, 201, "{body}");
    let config_dir = hub.data_dir().join("homes/mallory/.jupyter");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::copy(
        fixture().join("../evil_jupyter_server_config.py"),
        config_dir.join("jupyter_server_config.py"),
    )
    .unwrap();
    let (status, body) = client
        .call(Method::POST, "/hub/api/users/mallory/server", None)
        .await;
    assert!(status == 201 || status == 202, "{status} {body}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (_, mallory) = client
            .call(Method::GET, "/hub/api/users/mallory", None)
            .await;
        if !mallory["server"].is_null() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "mallory's server did not start: {mallory}\n{}",
            hub.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    scenario(&hub, "isolation.mjs");
    (hub, client)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_users_page_cannot_act_for_its_visitors() {
    let (_hub, client) = planted_page_visited_by_an_admin(Mode::Subdomains).await;
    let (_, mallory) = client
        .call(Method::GET, "/hub/api/users/mallory", None)
        .await;
    assert_eq!(
        mallory["admin"], false,
        "mallory made herself an admin: {mallory}"
    );
    let (_, tokens) = client
        .call(Method::GET, "/hub/api/users/admin/tokens", None)
        .await;
    assert!(
        !tokens.to_string().contains("taken by mallory"),
        "a token was made for the admin: {tokens}"
    );
    let (status, _) = client
        .call(Method::GET, "/hub/api/users/planted", None)
        .await;
    assert_eq!(status, 404, "the planted XSRF cookie created a user");
    let (_, admin) = client
        .call(
            Method::GET,
            "/hub/api/users/admin?include_stopped_servers=1",
            None,
        )
        .await;
    assert!(
        admin["servers"].get("pwned").is_none(),
        "a cross-site image started a server: {admin}"
    );
}

/// Without `subdomain_host` (upstream's default), the same page does take the admin's powers:
/// this is what the warning at start says, and it shows that the test above can fail.
#[tokio::test(flavor = "multi_thread")]
async fn on_the_hubs_origin_a_users_page_acts_for_its_visitors() {
    let (hub, client) = planted_page_visited_by_an_admin(Mode::Paths).await;
    let (_, mallory) = client
        .call(Method::GET, "/hub/api/users/mallory", None)
        .await;
    assert_eq!(mallory["admin"], true, "the attack did not work: {mallory}");
    assert!(
        hub.log().contains("users' servers share the hub's origin"),
        "the hub warned at start"
    );
}

/// Issue 13's class: sign-up and approval, and a TA limited to one section.
#[tokio::test(flavor = "multi_thread")]
async fn a_class_with_sign_up_approval_and_a_section_ta() {
    let hub = TestHub::start_in(
        Mode::Subdomains,
        &format!(
            r#"hub:
  config:
    JupyterHub:
      authenticator_class: native
    Authenticator:
      admin_users: [prof]
    NativeAuthenticator:
      open_signup: false
  loadRoles:
    section-ta:
      scopes: ["admin-ui", "admin:users!group=sec1", "admin:servers!group=sec1", "list:groups!group=sec1", "groups!group=sec1"]
      users: [ta]
singleuser:
  cmd: {}
"#,
            fake_singleuser()
        ),
    );
    for (name, password) in [("prof", "prof-password-1"), ("ta", "ta-password-1")] {
        users_cli::add_user(&hub.config, name, password);
    }
    let prof = Browser::new(&hub);
    prof.login("prof", "prof-password-1").await;
    for group in ["sec1", "sec2"] {
        let (status, body) = prof
            .call(Method::POST, &format!("/hub/api/groups/{group}"), None)
            .await;
        assert_eq!(status, 201, "{body}");
    }
    scenario(&hub, "class.mjs");
    let (_, stu) = prof.call(Method::GET, "/hub/api/users/stu", None).await;
    assert_eq!(stu["groups"], json!(["sec1"]), "{stu}");
}

/// Issue 13's workshop: a shared password for participants, the admin password for the
/// instructor's name only.
#[tokio::test(flavor = "multi_thread")]
async fn a_workshop_with_a_shared_password() {
    let hub = TestHub::start_in(
        Mode::Subdomains,
        &format!(
            r#"hub:
  config:
    JupyterHub:
      authenticator_class: shared-password
    Authenticator:
      admin_users: [instructor]
      allow_all: true
    SharedPasswordAuthenticator:
      user_password: workshop-2026
      admin_password: leader-only-password-for-the-2026-workshop
singleuser:
  cmd: {}
"#,
            fake_singleuser()
        ),
    );
    scenario(&hub, "workshop.mjs");
    let (_, token) = common::admin_token_with(
        &hub,
        "instructor",
        "leader-only-password-for-the-2026-workshop",
        None,
    )
    .await;
    let client = TokenClient::new(&hub, &token);
    let (_, instructor) = client
        .call(Method::GET, "/hub/api/users/instructor", None)
        .await;
    assert_eq!(instructor["admin"], true, "{instructor}");
    let (_, pat) = client.call(Method::GET, "/hub/api/users/pat", None).await;
    assert_eq!(pat["admin"], false, "{pat}");
}

/// Issue 19: profiles changed in the admin panel's Environments tab (environments.mjs); what
/// the browser did is checked in the hub: ann's server runs with the profile's memory limit,
/// read from its cgroup, and bob may not start the profile through the API.
#[tokio::test(flavor = "multi_thread")]
async fn environments_in_the_admin_panel() {
    assert!(
        common::cgroups_usable(),
        "this test needs a cgroup memory controller under /sys/fs/cgroup"
    );
    let hub = TestHub::start_with(
        &common::admin_yaml(&format!(
            r#"{}singleuser:
  cmd: {}
  profileList:
    - display_name: Standard
      slug: standard
      default: true
      kubespawner_override: {{mem_limit: 1G}}
"#,
            common::CLASS_A_TEACHER,
            fake_singleuser()
        )),
        // Builds install only what they are asked (the scenario's fails in pip).
        "  environments:\n    build_packages: []\n",
        &common::python_env(),
    );
    let admin = Browser::new(&hub);
    admin.login("admin", "x").await;
    let (status, body) = admin
        .call(
            Method::POST,
            "/hub/api/users",
            Some(json!({"usernames": ["ann", "bob", "teacher"]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    for (group, member) in [("class-a", "ann"), ("class-b", "bob")] {
        let (status, body) = admin
            .call(Method::POST, &format!("/hub/api/groups/{group}"), None)
            .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = admin
            .call(
                Method::POST,
                &format!("/hub/api/groups/{group}/users"),
                Some(json!({ "users": [member] })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = admin
        .call(
            Method::POST,
            "/hub/api/environments/profiles",
            Some(json!({"data": {"display_name": "Class B", "allowed_groups": ["class-b"]}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    scenario(&hub, "environments.mjs");

    let ann = Browser::new(&hub);
    ann.login("ann", "x").await;
    let model = ann
        .wait_ready("ann", std::time::Duration::from_secs(30))
        .await;
    assert_eq!(model["server"], "/user/ann/", "{model}");
    assert_eq!(
        model["servers"][""]["user_options"]["profile"], "class-a",
        "{model}"
    );
    let pids = hub.server_pids("ann");
    assert!(!pids.is_empty(), "ann's server has no process");
    assert_eq!(common::cgroup_memory_limit(pids[0]), 300 << 20);
    let bob = Browser::new(&hub);
    bob.login("bob", "x").await;
    let (status, body) = bob
        .call(
            Method::POST,
            "/hub/api/users/bob/server",
            Some(json!({"profile": "class-a"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("not available"),
        "{body}"
    );
}
