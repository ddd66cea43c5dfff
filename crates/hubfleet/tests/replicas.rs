//! Two hub replicas on one PostgreSQL database: a start driven by one is followed, in the
//! progress stream and the REST API, through the other.
//!
//! Needs HUBFLEET_TEST_POSTGRES_URL (`scripts/postgres.sh start` prints one; `.ci/run`
//! sets it).

mod common;

use std::time::Duration;

use common::{python_env, TestHub, TokenClient};
use sqlx::Executor;

const TOKEN: &str = "replica-test-token-0123456789abcdef";

/// A fresh database on the test PostgreSQL server.
async fn fresh_database() -> String {
    let base = std::env::var("HUBFLEET_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "HUBFLEET_TEST_POSTGRES_URL is not set: start a server with \
             `scripts/postgres.sh start` and export the URL it prints (.ci/run does this)"
        )
    });
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL server at {base}: {e}"));
    let name = format!("hubfleet_replicas_{}", std::process::id());
    for statement in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin.execute(statement.as_str()).await.unwrap();
    }
    let (root, _) = base.rsplit_once('/').expect("URL has a database part");
    format!("{root}/{name}")
}

fn replica_config(db_url: &str) -> String {
    // The server takes a few seconds to answer, so the start is seen in progress.
    format!(
        "hub:\n  db:\n    type: postgres\n    url: {db_url}\n  services:\n    ops:\n      admin: true\n      apiToken: {TOKEN}\n  config:\n    JupyterHub:\n      authenticator_class: dummy\nsingleuser:\n  cmd: [/bin/sh, -c, 'sleep 3; port=${{JUPYTERHUB_SERVICE_URL##*:}}; port=${{port%%/*}}; exec python3 -m http.server --bind 127.0.0.1 $port']\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_of_a_start_driven_by_another_replica() {
    let db_url = fresh_database().await;
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
