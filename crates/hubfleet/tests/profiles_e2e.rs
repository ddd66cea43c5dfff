//! Profiles end to end, against the real binary: three profiles (one limited to a group, one
//! with an unlisted choice); each user sees exactly their profiles on the server-options page;
//! a choice reaches the spawned server's environment (the environment's variables, the image,
//! the limits); forbidden or invalid choices are refused with a message and nothing starts.
//! The stand-in server writes its environment to `$HOME/env.txt`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Browser, TestHub};
use reqwest::Method;
use serde_json::json;

/// A stand-in server: dumps its environment, then serves HTTP on the hub's port.
fn stand_in(tag: &str) -> String {
    format!(
        "[/bin/sh, -c, 'echo STARTED_WITH={tag} >> \"$HOME/env.txt\"; env >> \"$HOME/env.txt\"; port=${{JUPYTERHUB_SERVICE_URL##*:}}; port=${{port%%/*}}; exec python3 -m http.server --bind 127.0.0.1 $port']"
    )
}

fn config() -> (String, String) {
    let yaml = r#"hub:
  config:
    JupyterHub:
      authenticator_class: dummy
    Authenticator:
      admin_users: [admin]
singleuser:
  memory:
    guarantee: 64M
  profileList:
    - display_name: Small notebook
      slug: small
      description: For everyday work.
      kubespawner_override:
        image: env-a
        mem_limit: 512M
        cpu_limit: 1
        environment:
          PROFILE_VAR: small
    - display_name: GPU machine
      slug: gpu
      allowed_groups: [gpu-users]
      kubespawner_override:
        image: env-b
        mem_limit: 1G
        node_selector: {gpu: "yes"}
    - display_name: Bring your own environment
      slug: byo
      profile_options:
        image:
          display_name: Environment
          unlisted_choice:
            enabled: true
            display_name: Other environment
            validation_regex: '^env-[a-z]+$'
            validation_message: 'Must be env-<name>'
            kubespawner_override:
              image: '{value}'
              environment:
                CHOSEN: '{value}'
          choices:
            a:
              display_name: Environment A
              default: true
              kubespawner_override:
                image: env-a
"#
    .to_string();
    let extra = format!(
        "    environments:\n      env-a:\n        cmd: {}\n        env:\n          ENV_NAME: a\n      env-b:\n        cmd: {}\n        env:\n          ENV_NAME: b\n      env-c:\n        cmd: {}\n        env:\n          ENV_NAME: c\n",
        stand_in("a"),
        stand_in("b"),
        stand_in("c")
    );
    (yaml, extra)
}

fn env_of(hub: &TestHub, user: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(hub.data_dir().join("homes").join(user).join("env.txt"))
        .unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn login(hub: &TestHub, user: &str) -> Browser {
    let b = Browser::new(hub);
    b.login(user, "x").await;
    b
}

async fn form(b: &Browser) -> String {
    let r = b.client.get(b.url("/hub/spawn")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

async fn submit(b: &Browser, fields: &[(&str, &str)]) -> (u16, String) {
    let mut all = vec![("_xsrf".to_string(), b.hub_xsrf())];
    all.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let r = b
        .no_redirects()
        .post(b.url("/hub/spawn"))
        .form(&all)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

async fn not_running(b: &Browser, user: &str) {
    let model = b.user_model(user).await;
    assert!(model["server"].is_null(), "{model}");
    assert!(model["pending"].is_null(), "{model}");
}

#[tokio::test(flavor = "multi_thread")]
async fn three_profiles_groups_choices_and_refusals() {
    let (yaml, extra) = config();
    let hub = TestHub::start_with(&yaml, &extra, &common::python_env());
    let admin = login(&hub, "admin").await;
    let alice = login(&hub, "alice").await;
    let bob = login(&hub, "bob").await;
    let (status, body) = admin
        .call(
            Method::POST,
            "/hub/api/groups/gpu-users",
            Some(json!({"users": ["bob"]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // Each user sees exactly the profiles they may use.
    let page = form(&alice).await;
    assert!(page.contains("Small notebook"), "{page}");
    assert!(page.contains("Bring your own environment"));
    assert!(
        !page.contains("GPU machine"),
        "alice must not see the GPU profile"
    );
    assert!(!page.contains("value=\"gpu\""));
    assert!(
        page.contains("Memory up to 512M"),
        "resources are explained"
    );
    assert!(
        page.contains("pattern=\"env-[a-z]+\""),
        "live validation of the free text"
    );
    assert!(page.contains("name=\"profile-option-byo--image--unlisted-choice\""));
    let page = form(&bob).await;
    for name in [
        "Small notebook",
        "GPU machine",
        "Bring your own environment",
    ] {
        assert!(page.contains(name), "bob sees {name}");
    }

    // Forbidden and invalid choices: a message, nothing started.
    let (status, page) = submit(&alice, &[("profile", "gpu")]).await;
    assert_eq!(status, 400);
    assert!(page.contains("not available to you"), "{page}");
    not_running(&alice, "alice").await;
    let (status, page) = submit(
        &alice,
        &[
            ("profile", "byo"),
            ("profile-option-byo--image", "unlisted_choice"),
            ("profile-option-byo--image--unlisted-choice", "rm -rf /"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert!(page.contains("Must be env-&lt;name&gt;"), "{page}");
    assert!(
        page.contains("value=\"rm -rf "),
        "the form keeps what was typed"
    );
    let (status, page) = submit(
        &alice,
        &[
            ("profile", "byo"),
            ("profile-option-byo--image", "unlisted_choice"),
            ("profile-option-byo--image--unlisted-choice", "env-zzz"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        page.contains("no local environment is named `env-zzz`"),
        "{page}"
    );
    let (status, page) = submit(
        &alice,
        &[("profile", "byo"), ("profile-option-byo--image", "nope")],
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        page.contains("`nope` is not a choice of Environment"),
        "{page}"
    );
    not_running(&alice, "alice").await;
    assert!(hub.server_pids("alice").is_empty());
    assert!(!hub.data_dir().join("homes/alice/env.txt").exists());

    // The unlisted choice, through the form: environment c.
    let (status, _) = submit(
        &alice,
        &[
            ("profile", "byo"),
            ("profile-option-byo--image", "unlisted_choice"),
            ("profile-option-byo--image--unlisted-choice", "env-c"),
        ],
    )
    .await;
    assert_eq!(status, 302);
    let model = alice.wait_ready("alice", Duration::from_secs(30)).await;
    assert_eq!(model["server"], "/user/alice/", "{model}");
    let env = env_of(&hub, "alice");
    assert_eq!(env["STARTED_WITH"], "c");
    assert_eq!(env["ENV_NAME"], "c");
    assert_eq!(env["CHOSEN"], "env-c");
    assert_eq!(env["JUPYTER_IMAGE"], "env-c");
    assert_eq!(env["MEM_GUARANTEE"], (64u64 << 20).to_string());
    assert!(!env.contains_key("MEM_LIMIT"));
    assert_eq!(
        alice.user_model("alice").await["servers"][""]["user_options"],
        json!({"profile": "byo", "image": "unlisted_choice", "image--unlisted-choice": "env-c"})
    );

    // The group-limited profile through the REST API (user_options as upstream).
    let (status, body) = bob
        .call(
            Method::POST,
            "/hub/api/users/bob/server",
            Some(json!({"profile": "gpu"})),
        )
        .await;
    assert!(status == 201 || status == 202, "{status} {body}");
    bob.wait_ready("bob", Duration::from_secs(30)).await;
    let env = env_of(&hub, "bob");
    assert_eq!(env["ENV_NAME"], "b");
    assert_eq!(env["MEM_LIMIT"], (1u64 << 30).to_string());
    assert_eq!(env["JUPYTER_IMAGE_SPEC"], "env-b");
    // Admins see the profile, the options and the limits in the server's state.
    let (status, model) = admin
        .call(
            Method::GET,
            "/hub/api/users/bob?include_stopped_servers",
            None,
        )
        .await;
    assert_eq!(status, 200, "{model}");
    let state = &model["servers"][""]["state"]["profile"];
    assert_eq!(state["profile"], "gpu", "{model}");
    assert_eq!(state["limits"]["mem_limit"], 1u64 << 30, "{model}");

    // The API refuses what the form refuses, and starts nothing.
    let (status, _) = alice
        .call(Method::DELETE, "/hub/api/users/alice/server", None)
        .await;
    assert!(status == 204 || status == 202);
    for (options, message) in [
        (json!({"profile": "gpu"}), "not available to you"),
        (json!({"profile": "nope"}), "there is no profile `nope`"),
        (
            json!({"profile": "byo", "image--unlisted-choice": "../../etc"}),
            "Must be env-<name>",
        ),
        (json!({"profile": "byo", "image": 5}), "must be a string"),
    ] {
        let (status, body) = alice
            .call(
                Method::POST,
                "/hub/api/users/alice/server",
                Some(options.clone()),
            )
            .await;
        assert_eq!(status, 400, "{options}: {body}");
        assert!(
            body["message"].as_str().unwrap_or("").contains(message),
            "{options}: {body}"
        );
        not_running(&alice, "alice").await;
    }
    // Without options: the default profile (the first alice may use).
    std::fs::remove_file(hub.data_dir().join("homes/alice/env.txt")).unwrap();
    let (status, body) = alice
        .call(
            Method::POST,
            "/hub/api/users/alice/server",
            Some(json!({"user_options": {}})),
        )
        .await;
    assert!(status == 201 || status == 202, "{status} {body}");
    alice.wait_ready("alice", Duration::from_secs(30)).await;
    let env = env_of(&hub, "alice");
    assert_eq!(env["ENV_NAME"], "a");
    assert_eq!(env["PROFILE_VAR"], "small");
    assert_eq!(env["MEM_LIMIT"], (512u64 << 20).to_string());
    assert_eq!(env["CPU_LIMIT"], "1.0");
}

#[test]
fn unknown_environment_is_a_config_error_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.yaml");
    std::fs::write(
        &path,
        "singleuser:\n  profileList:\n    - display_name: A\n      kubespawner_override:\n        image: missing-env\nhubfleet:\n  local:\n    environments:\n      env-a:\n        cmd: [x]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubfleet"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("hub.yaml:5:9: singleuser.profileList[0].kubespawner_override.image: image `missing-env` is not one of hubfleet.local.environments (`env-a`)"),
        "{err}"
    );
}

/// Named servers get the same options form as the default one, at upstream's URLs
/// (`/hub/spawn/<user>/<server>`, `/hub/spawn-pending/<user>/<server>`), within the limit.
#[tokio::test(flavor = "multi_thread")]
async fn named_servers_get_the_options_form_too() {
    let (yaml, extra) = config();
    let yaml = yaml.replacen(
        "hub:\n",
        "hub:\n  allowNamedServers: true\n  namedServerLimitPerUser: 1\n",
        1,
    );
    let hub = TestHub::start_with(&yaml, &extra, &common::python_env());
    let bob = login(&hub, "bob").await;

    let r = bob
        .client
        .get(bob.url("/hub/spawn/bob/box"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains(r#"action="/hub/spawn/bob/box""#), "{page}");
    assert!(page.contains("Named server <strong>box</strong>"), "{page}");
    assert!(page.contains("name=\"profile-option-byo--image--unlisted-choice\""));

    let fields = [
        ("_xsrf".to_string(), bob.hub_xsrf()),
        ("profile".into(), "byo".into()),
        ("profile-option-byo--image".into(), "unlisted_choice".into()),
        (
            "profile-option-byo--image--unlisted-choice".into(),
            "env-c".into(),
        ),
    ];
    let r = bob
        .no_redirects()
        .post(bob.url("/hub/spawn/bob/box"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "{}", r.text().await.unwrap());
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location == "/user/bob/box/" || location == "/hub/spawn-pending/bob/box",
        "{location}"
    );
    // Only the named server started, with the chosen environment.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let model = loop {
        let model = bob.user_model("bob").await;
        if model["servers"]["box"]["ready"] == true {
            break model;
        }
        assert!(std::time::Instant::now() < deadline, "{model}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(model["server"].is_null(), "{model}");
    assert_eq!(
        model["servers"]["box"]["user_options"],
        json!({"profile": "byo", "image": "unlisted_choice", "image--unlisted-choice": "env-c"})
    );
    let env = env_of(&hub, "bob");
    assert_eq!(env["ENV_NAME"], "c");
    assert_eq!(env["JUPYTERHUB_SERVER_NAME"], "box");
    // Its pending page, once ready, sends the browser on to it.
    let r = bob
        .no_redirects()
        .get(bob.url("/hub/spawn-pending/bob/box"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/user/bob/box/");

    // A second named server is over the limit of one; a bad name is refused; both as pages.
    let r = bob
        .client
        .get(bob.url("/hub/spawn/bob/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("already has the maximum of 1 named servers"));
    let r = bob
        .client
        .get(bob.url("/hub/spawn/bob/Bad_Name"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Invalid server name"));

    // Stopped, its URL leads back to its own spawn page.
    let (status, body) = bob
        .call(Method::DELETE, "/hub/api/users/bob/servers/box", None)
        .await;
    assert!(status == 202 || status == 204, "{status} {body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while bob.user_model("bob").await["servers"]["box"]["ready"] == true {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = bob
        .client
        .get(bob.url("/hub/user/bob/box/lab"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 424);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("/hub/spawn/bob/box?next=%2Fuser%2Fbob%2Fbox%2Flab"),
        "{page}"
    );
}
