//! Two hub replicas on one PostgreSQL database: a start driven by one is followed, in the
//! progress stream and the REST API, through the other.
//!
//! Needs HUBFLEET_TEST_POSTGRES_URL (`scripts/postgres.sh start` prints one; `.ci/run`
//! sets it).

mod common;

use std::time::Duration;

use common::{python_env, TestHub, TokenClient};
#[path = "support/api_load.rs"]
mod api_load;

const TOKEN: &str = "replica-test-token-0123456789abcdef";

fn replica_config(db_url: &str) -> String {
    // The server takes a few seconds to answer, so the start is seen in progress.
    format!(
        "hub:\n  db:\n    type: postgres\n    url: {db_url}\n  services:\n    ops:\n      admin: true\n      apiToken: {TOKEN}\n  config:\n    JupyterHub:\n      authenticator_class: dummy\nsingleuser:\n  cmd: [/bin/sh, -c, 'sleep 3; port=${{JUPYTERHUB_SERVICE_URL##*:}}; port=${{port%%/*}}; exec python3 -m http.server --bind 127.0.0.1 $port']\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_of_a_start_driven_by_another_replica() {
    let db_url = common::fresh_postgres_database("replicas_progress").await;
    let config = replica_config(&db_url);
    let driving = TestHub::start_with(&config, "", &python_env());
    let watching = TestHub::start_with(&config, "", &python_env());
    let driver = TokenClient::new(&driving, TOKEN);
    let watcher = TokenClient::new(&watching, TOKEN);

    let (status, body) = driver
        .call(reqwest::Method::POST, "/hub/api/users/ada", None)
        .await;
    assert_eq!(status, 201, "{body}");
    // The start answers once the server is up (201) or after 10 s (202): follow it
    // meanwhile through the other replica.
    let starting = tokio::spawn(async move {
        driver
            .call(reqwest::Method::POST, "/hub/api/users/ada/server", None)
            .await
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, model) = watcher
            .call(reqwest::Method::GET, "/hub/api/users/ada", None)
            .await;
        if model["servers"][""]["pending"] == "spawn" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the start never showed: {model}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The other replica is not driving this start: its stream comes from the row.
    let response = watcher
        .client
        .get(watching.url("/hub/api/users/ada/server/progress"))
        .header("Authorization", format!("token {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "log:\n{}", watching.log());
    let text = tokio::time::timeout(Duration::from_secs(60), response.text())
        .await
        .expect("the progress stream ends once the server is ready")
        .unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    let last = events.last().unwrap_or_else(|| panic!("no events: {text}"));
    assert_eq!(last["ready"], true, "{text}");
    assert_eq!(last["url"], "/user/ada/", "{text}");
    assert!(
        events.len() >= 2
            && events[..events.len() - 1]
                .iter()
                .all(|e| e["ready"].is_null()),
        "steps before the final event: {text}"
    );

    let (status, body) = starting.await.unwrap();
    assert!(status == 201 || status == 202, "{status} {body}");

    // Both replicas report the same server model.
    let (_, model) = watcher
        .call(reqwest::Method::GET, "/hub/api/users/ada", None)
        .await;
    assert_eq!(model["servers"][""]["ready"], true, "{model}");
}

/// The processes of `user`'s servers, whichever replica started them (each has a home under
/// its own data dir).
fn server_processes(hubs: &[&TestHub], user: &str) -> Vec<i32> {
    hubs.iter().flat_map(|hub| hub.server_pids(user)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn starts_and_stops_through_two_replicas_never_run_a_server_twice() {
    use api_load::{call, client, server_state, TOKEN};
    let db_url = common::fresh_postgres_database("replicas_twice").await;
    let config = format!(
        "hub:\n  db:\n    type: postgres\n    url: {db_url}\n  services:\n    ops:\n      admin: true\n      apiToken: {TOKEN}\n  config:\n    JupyterHub:\n      authenticator_class: dummy\nsingleuser:\n  cmd: {}\n  extraEnv:\n    TINY_SERVER_DELAY: '2'\n",
        api_load::tiny_server_cmd()
    );
    let a = TestHub::start_with(&config, "", &python_env());
    let b = TestHub::start_with(&config, "", &python_env());
    let (base_a, base_b) = (a.direct_url(""), b.direct_url(""));
    let http = client();
    for user in ["ada", "bob"] {
        let (status, body) = call(
            &http,
            &base_a,
            reqwest::Method::POST,
            &format!("/hub/api/users/{user}"),
            None,
        )
        .await
        .unwrap();
        assert_eq!(status, 201, "{body}");
    }

    // Two starts of one server at once, one through each replica: one server runs.
    let path = "/hub/api/users/ada/server";
    let (first, second) = tokio::join!(
        call(&http, &base_a, reqwest::Method::POST, path, None),
        call(&http, &base_b, reqwest::Method::POST, path, None)
    );
    let statuses = [first.unwrap().0, second.unwrap().0];
    assert!(
        statuses.iter().all(|s| [201, 202, 400].contains(s)),
        "{statuses:?}\n{}\n{}",
        a.log(),
        b.log()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while server_state(&http, &base_b, "ada").await != "ready" {
        assert!(
            std::time::Instant::now() < deadline,
            "ada never ready\n{}\n{}",
            a.log(),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        server_processes(&[&a, &b], "ada").len(),
        1,
        "one process for ada"
    );

    // A stop through one replica while the other is starting the server: the start is
    // cancelled there, nothing runs, and the server can start again.
    let starting = {
        let (http, base_a) = (http.clone(), base_a.clone());
        tokio::spawn(async move {
            call(
                &http,
                &base_a,
                reqwest::Method::POST,
                "/hub/api/users/bob/server",
                None,
            )
            .await
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while server_state(&http, &base_b, "bob").await != "pending" {
        assert!(
            std::time::Instant::now() < deadline,
            "bob's start never showed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = call(
        &http,
        &base_b,
        reqwest::Method::DELETE,
        "/hub/api/users/bob/server",
        None,
    )
    .await
    .unwrap();
    assert!(status == 204 || status == 202, "{status} {body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while server_state(&http, &base_a, "bob").await != "stopped" {
        assert!(
            std::time::Instant::now() < deadline,
            "bob's server never stopped\n{}\n{}",
            a.log(),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = starting.await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !server_processes(&[&a, &b], "bob").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "bob's process outlived the stop\n{}",
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        a.log().contains("Spawn cancelled"),
        "the replica starting it cancelled:\n{}",
        a.log()
    );
    let (status, body) = call(
        &http,
        &base_b,
        reqwest::Method::POST,
        "/hub/api/users/bob/server",
        None,
    )
    .await
    .unwrap();
    assert!(status == 201 || status == 202, "{status} {body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while server_state(&http, &base_a, "bob").await != "ready" {
        assert!(
            std::time::Instant::now() < deadline,
            "bob never ready again\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        server_processes(&[&a, &b], "bob").len(),
        1,
        "one process for bob"
    );

    // A service added through one replica gets its route on the other; removed, it goes.
    let (status, body) = call(
        &http,
        &base_a,
        reqwest::Method::POST,
        "/hub/api/services/web",
        Some(serde_json::json!({ "url": "http://127.0.0.1:9" })),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let has_route = |base: String| {
        let http = http.clone();
        async move {
            let (_, routes) = call(&http, &base, reqwest::Method::GET, "/hub/api/proxy", None)
                .await
                .unwrap();
            routes.get("/services/web/").is_some()
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !has_route(base_b.clone()).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the service's route never reached the other replica\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = call(
        &http,
        &base_a,
        reqwest::Method::DELETE,
        "/hub/api/services/web",
        None,
    )
    .await
    .unwrap();
    assert!(status == 200 || status == 204, "{status} {body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while has_route(base_b.clone()).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the service's route stayed on the other replica"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `POST /hub/api/config/reload` on one replica makes every replica reload its own files, and
/// the answer says how each went; a build run by one replica is read, log and all, through the
/// other (builds live in the database).
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_through_one_replica_reloads_every_replica() {
    let db_url = common::fresh_postgres_database("replicas_reload").await;
    let config = replica_config(&db_url).replacen(
        "hub:\n",
        "hub:\n  templateVars:\n    announcement: Welcome to the first config\n",
        1,
    );
    // Not watched: only the forwarded reload can apply the edits.
    let no_watch = [("HUBFLEET_NO_WATCH", "true")];
    let small_builds = "  environments:\n    build_packages: []\n";
    let asked = TestHub::start_with_env(&config, small_builds, &python_env(), &no_watch);
    let other = TestHub::start_with_env(&config, small_builds, &python_env(), &no_watch);
    let api = TokenClient::new(&asked, TOKEN);
    let other_api = TokenClient::new(&other, TOKEN);
    let home = |hub: &TestHub| {
        let browser = common::Browser::new(hub);
        async move {
            browser.login("ada", "x").await;
            let response = browser
                .client
                .get(browser.url("/hub/home"))
                .send()
                .await
                .unwrap();
            response.text().await.unwrap()
        }
    };
    assert!(home(&other).await.contains("Welcome to the first config"));

    // Each replica has its own file; each gets its own edit.
    for (hub, words) in [
        (&asked, "Maintenance at noon"),
        (&other, "Maintenance at one"),
    ] {
        let text = std::fs::read_to_string(&hub.config).unwrap();
        std::fs::write(
            &hub.config,
            text.replace("Welcome to the first config", words),
        )
        .unwrap();
    }
    let (status, summary) = api
        .call(reqwest::Method::POST, "/hub/api/config/reload", None)
        .await;
    assert_eq!(status, 200, "{summary}\nlog:\n{}", other.log());
    let replicas = summary["replicas"].as_array().expect("replicas");
    assert_eq!(replicas.len(), 2, "{summary}");
    assert_eq!(summary["unanswered"], serde_json::Value::Null, "{summary}");
    let names: Vec<&str> = replicas
        .iter()
        .map(|r| r["replica"].as_str().unwrap())
        .collect();
    assert!(names[0].ends_with(&format!(":{}", asked.port)), "{names:?}");
    assert!(names[1].ends_with(&format!(":{}", other.port)), "{names:?}");
    for replica in replicas {
        assert_eq!(replica["ok"], true, "{summary}");
        assert_eq!(
            replica["applied"],
            serde_json::json!(["hub.templateVars.announcement"]),
            "{summary}"
        );
    }
    assert!(home(&asked).await.contains("Maintenance at noon"));
    assert!(
        home(&other).await.contains("Maintenance at one"),
        "log:\n{}",
        other.log()
    );

    // A build on one replica, followed to its end through the other.
    let (status, body) = api
        .call(
            reqwest::Method::POST,
            "/hub/api/environments/local/stats/build",
            Some(serde_json::json!({"requirements": "six"})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let built = loop {
        let (status, body) = other_api
            .call(
                reqwest::Method::GET,
                "/hub/api/environments/local/stats/build",
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_ne!(body["state"], "none", "{body}");
        if body["state"] != "running" {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(built["state"], "succeeded", "{built}");
    assert!(
        built["replica"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{}", asked.port)),
        "{built}"
    );
    assert!(
        built["log"]
            .as_str()
            .unwrap()
            .contains("Successfully installed six"),
        "{built}"
    );
    // The other replica refuses a second build of it while one runs: the record is shared.
    let (status, _) = api
        .call(
            reqwest::Method::POST,
            "/hub/api/environments/local/stats/build",
            Some(serde_json::json!({"requirements": "six"})),
        )
        .await;
    assert_eq!(status, 202);
    let (status, body) = other_api
        .call(
            reqwest::Method::POST,
            "/hub/api/environments/local/stats/build",
            Some(serde_json::json!({"requirements": "six"})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
}
