//! `hubfleet migrate from-jupyterhub` against a real upstream JupyterHub (6, from the test
//! venv) holding 250 users, 5 groups (one with properties), 2 admins and a custom role held by
//! users and a group. Upstream pages its lists by 40, so the migration must follow the pages.
//! After the migration both hubs are read through their REST APIs and must agree on users,
//! admin flags, groups, members, properties and role holders; a second run changes nothing;
//! `--dry-run` changes nothing; a token without the scopes and a dead address fail clearly.

mod common;
#[path = "support/people_api.rs"]
mod people_api;
#[path = "support/upstream_jupyterhub.rs"]
mod upstream_jupyterhub;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use common::{Run, TestHub};
use people_api::Api;
use reqwest::Method;
use serde_json::json;
use upstream_jupyterhub::UpstreamHub;

const TOKEN: &str = "migrate-test-token-0123456789abcdef";
const WEAK_TOKEN: &str = "migrate-weak-token-0123456789abcdef";
const PAGE: usize = 40;

const GROUPS: [&str; 5] = ["staff", "physics", "chemistry", "biology", "alumni"];

fn upstream_config() -> String {
    format!(
        r#"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {{"user000", "user001"}}
c.JupyterHub.api_page_default_limit = {PAGE}
c.JupyterHub.api_page_max_limit = {PAGE}
c.JupyterHub.services = [
    {{"name": "tester", "api_token": "{TOKEN}"}},
    {{"name": "weak", "api_token": "{WEAK_TOKEN}"}},
]
c.JupyterHub.load_roles = [
    {{"name": "tester", "scopes": ["admin:users", "admin:groups"], "services": ["tester"]}},
    # Only admins may take the admin flag away (the test does, upstream).
    {{"name": "admin", "services": ["tester"]}},
    {{"name": "weak", "scopes": ["list:users", "read:users"], "services": ["weak"]}},
    {{
        "name": "course-staff",
        "description": "Teaching assistants",
        "scopes": ["admin-ui", "list:users", "read:users", "admin:servers"],
        "users": ["user007", "user042"],
        "groups": ["staff"],
    }},
]
"#
    )
}

/// hubfleet's side: the role's scopes carried over in `hub.loadRoles` (JupyterHub's API does
/// not show scopes), its holders left to the migration.
const HUBFLEET_CONFIG: &str = r#"
hub:
  services:
    tester:
      apiToken: migrate-test-token-0123456789abcdef
  loadRoles:
    tester:
      scopes: [admin:users, admin:groups]
      services: [tester]
    course-staff:
      description: Teaching assistants
      scopes: [admin-ui, list:users, read:users, admin:servers]
  config:
    JupyterHub:
      authenticator_class: dummy
    Authenticator:
      allow_all: true
"#;

fn user(i: usize) -> String {
    format!("user{i:03}")
}

/// The members of each group: overlapping, one of them empty of admins.
fn members(group: &str) -> Vec<String> {
    let range: Vec<usize> = match group {
        "staff" => (0..10).collect(),
        "physics" => (10..100).collect(),
        "chemistry" => (100..180).collect(),
        "biology" => (180..250).collect(),
        _ => (0..250).step_by(7).collect(),
    };
    range.into_iter().map(user).collect()
}

async fn populate(upstream: &Api) {
    // JupyterHub made the admins (admin_users) and user007 and user042 (the role's).
    let others: Vec<String> = (0..250)
        .filter(|i| ![0, 1, 7, 42].contains(i))
        .map(user)
        .collect();
    let (status, body) = upstream
        .call(Method::POST, "/users", Some(json!({"usernames": others})))
        .await;
    assert_eq!(status, 201, "{body}");
    for group in GROUPS {
        let (status, body) = if group == "staff" {
            // Made by JupyterHub for the role.
            upstream
                .call(
                    Method::POST,
                    "/groups/staff/users",
                    Some(json!({"users": members(group)})),
                )
                .await
        } else {
            upstream
                .call(
                    Method::POST,
                    &format!("/groups/{group}"),
                    Some(json!({"users": members(group)})),
                )
                .await
        };
        assert!(status == 200 || status == 201, "{group}: {status} {body}");
    }
    let (status, body) = upstream
        .call(
            Method::PUT,
            "/groups/physics/properties",
            Some(json!({"building": "B", "lab": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Python's plain HTTP server (404 pages in HTML for /hub/api), stopped on drop.
struct NotAHub {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl NotAHub {
    fn start() -> NotAHub {
        let dir = tempfile::tempdir().unwrap();
        let port = common::free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "http.server did not listen"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        NotAHub {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for NotAHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn migrate(url: &str, token: &str, configs: &[&Path], extra: &[&str]) -> Run {
    let mut args: Vec<&OsStr> = ["migrate", "from-jupyterhub", "--url", url, "--token", token]
        .into_iter()
        .map(OsStr::new)
        .collect();
    for config in configs {
        args.extend([OsStr::new("--config"), config.as_os_str()]);
    }
    args.extend(extra.iter().map(OsStr::new));
    common::run_hubfleet(args)
}

fn users_list(config: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_hubfleet"))
        .args(["users", "--config"])
        .arg(config)
        .arg("list")
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jupyterhub_moves_in_and_both_hubs_agree() {
    let mut upstream = UpstreamHub::start(&upstream_config(), &[]);
    upstream.wait_up().await;
    let upstream_api = Api::new(upstream.url(), TOKEN);
    populate(&upstream_api).await;
    let url = upstream.url();

    let mut ours = TestHub::start(HUBFLEET_CONFIG);
    ours.kill();
    let config = ours.config.clone();
    let roles_file = config.parent().unwrap().join("imported-roles.yaml");

    // A token without the scopes to read groups and roles: refused, saying which are missing.
    let weak = migrate(&url, WEAK_TOKEN, &[&config], &[]);
    assert!(!weak.ok, "{}", weak.stdout);
    for scope in ["list:groups", "read:roles:users", "read:roles:groups"] {
        assert!(weak.stderr.contains(scope), "{scope}: {}", weak.stderr);
    }
    // Nothing listens there.
    let dead = migrate(
        &format!("http://127.0.0.1:{}", common::free_port()),
        TOKEN,
        &[&config],
        &[],
    );
    assert!(
        !dead.ok && dead.stderr.contains("cannot reach"),
        "{}",
        dead.stderr
    );

    // Something that is not a JupyterHub: a plain web server.
    let not_a_hub = NotAHub::start();
    let wrong = migrate(&not_a_hub.url(), TOKEN, &[&config], &[]);
    assert!(
        !wrong.ok && wrong.stderr.contains("is --url a JupyterHub?"),
        "{}",
        wrong.stderr
    );
    drop(not_a_hub);

    let dry = migrate(&url, TOKEN, &[&config], &["--dry-run"]);
    assert!(dry.ok, "{}\n{}", dry.stdout, dry.stderr);
    assert!(dry.stdout.contains("would change"), "{}", dry.stdout);
    assert!(
        dry.stdout
            .contains("create 2 users (user000, user001) (admin)"),
        "{}",
        dry.stdout
    );
    assert!(dry.stdout.contains("create 248 users"), "{}", dry.stdout);
    assert!(
        dry.stdout.contains("dry run: nothing was changed"),
        "{}",
        dry.stdout
    );
    assert_eq!(users_list(&config), "", "--dry-run created users");
    assert!(
        !roles_file.exists(),
        "--dry-run wrote {}",
        roles_file.display()
    );

    let first = migrate(&url, TOKEN, &[&config], &[]);
    assert!(first.ok, "{}\n{}", first.stdout, first.stderr);
    println!("first run:\n{}{}", first.stdout, first.stderr);
    assert!(
        first.stdout.contains("done: 250 users created"),
        "{}",
        first.stdout
    );
    assert!(
        first
            .stdout
            .contains("Tokens and passwords were not copied"),
        "{}",
        first.stdout
    );
    assert!(
        first
            .stdout
            .contains(&format!("--config {}", roles_file.display())),
        "{}",
        first.stdout
    );
    assert!(roles_file.exists());

    // Again, with the roles file layered as the output says: nothing to do.
    let again = migrate(&url, TOKEN, &[&config, &roles_file], &[]);
    assert!(again.ok, "{}\n{}", again.stdout, again.stderr);
    println!("second run:\n{}{}", again.stdout, again.stderr);
    assert!(
        again.stdout.contains("nothing to change"),
        "{}",
        again.stdout
    );
    assert!(!again.stdout.contains("changing"), "{}", again.stdout);

    ours.extra_configs = vec![roles_file.clone()];
    ours.launch();
    let ours_api = Api::new(ours.direct_url(""), TOKEN);
    let (their_users, their_groups) = upstream_api.people().await;
    let (our_users, our_groups) = ours_api.people().await;
    assert_eq!(their_users.len(), 250);
    assert_eq!(their_groups.len(), 5);
    assert_eq!(
        their_users["user007"]["roles"],
        json!(["course-staff", "user"]),
        "upstream's role holders as set up"
    );
    for (name, theirs) in &their_users {
        assert_eq!(our_users.get(name), Some(theirs), "user {name}");
    }
    assert_eq!(our_users.len(), their_users.len(), "users only in hubfleet");
    assert_eq!(our_groups, their_groups);

    // Upstream changes: a member leaves a group, an admin is no longer one. The next run
    // brings exactly that (while hubfleet runs), and the hubs agree again.
    let (status, body) = upstream_api
        .call(
            Method::DELETE,
            "/groups/alumni/users",
            Some(json!({"users": ["user007"]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = upstream_api
        .call(
            Method::PATCH,
            "/users/user001",
            Some(json!({"admin": false})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let update = migrate(&url, TOKEN, &[&config, &roles_file], &[]);
    assert!(update.ok, "{}\n{}", update.stdout, update.stderr);
    assert!(
        update
            .stdout
            .contains("remove from group alumni: 1 user (user007)")
            && update.stdout.contains("no longer make user001 an admin")
            && update
                .stdout
                .contains("done: 1 admin flag set, 1 membership changed"),
        "{}",
        update.stdout
    );
    ours.kill();
    ours.launch();
    let (their_users, their_groups) = upstream_api.people().await;
    let (our_users, our_groups) = ours_api.people().await;
    assert_eq!(our_users["user001"]["admin"], json!(false));
    assert_eq!(our_users, their_users);
    assert_eq!(our_groups, their_groups);
}
