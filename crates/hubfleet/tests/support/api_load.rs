//! Helpers of the tests that drive a hub with a load of API calls and requests to users'
//! servers (`ha.rs`, `faults.rs`): each call with the admin service's token [`TOKEN`].
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The API token of the `ops` admin service the configs of these tests define.
pub const TOKEN: &str = "load-test-token-0123456789abcdef01";

/// `singleuser.cmd` running `support/tiny_server.py`.
pub fn tiny_server_cmd() -> String {
    format!(
        "[python3, {}]",
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/support/tiny_server.py")
            .display()
    )
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// `method path` (with a JSON body) with the admin service's token; the status and JSON body,
/// or the error.
pub async fn call(
    client: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(u16, serde_json::Value), String> {
    let mut request = client
        .request(method, format!("{base}{path}"))
        .header("Authorization", format!("token {TOKEN}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(|e| e.to_string())?;
    Ok((status, serde_json::from_str(&text).unwrap_or(text.into())))
}

/// The server's state as the REST API says: `ready`, `pending`, or `stopped`.
pub async fn server_state(client: &reqwest::Client, base: &str, user: &str) -> String {
    match call(
        client,
        base,
        reqwest::Method::GET,
        &format!("/hub/api/users/{user}"),
        None,
    )
    .await
    {
        Ok((200, model)) => {
            let server = &model["servers"][""];
            if server["ready"] == true {
                "ready".into()
            } else if server["pending"].is_string() {
                "pending".into()
            } else {
                "stopped".into()
            }
        }
        other => format!("unknown: {other:?}"),
    }
}

/// Start `user`'s server through `base` and wait (generously) until the API says it is
/// ready.
pub async fn start_and_wait(
    client: &reqwest::Client,
    base: &str,
    user: &str,
) -> Result<(), String> {
    let path = format!("/hub/api/users/{user}/server");
    match call(client, base, reqwest::Method::POST, &path, None).await? {
        (201 | 202 | 400, _) => {}
        other => return Err(format!("start of {user}: {other:?}")),
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match server_state(client, base, user).await.as_str() {
            "ready" => return Ok(()),
            "stopped" => return Err(format!("{user}'s start failed")),
            _ => {}
        }
        if Instant::now() > deadline {
            return Err(format!("{user}'s server was not ready within 60 s"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Through the load balancer: the server answers, and it reached the hub's API itself.
/// Make `users` and start their servers, all at once, until each is ready.
pub async fn create_and_start_all(
    client: &reqwest::Client,
    base: &str,
    users: &[String],
) -> Result<(), String> {
    match call(
        client,
        base,
        reqwest::Method::POST,
        "/hub/api/users",
        Some(serde_json::json!({ "usernames": users })),
    )
    .await?
    {
        (201, _) => {}
        other => return Err(format!("creating the users: {other:?}")),
    }
    let starts: Vec<_> = users
        .iter()
        .map(|user| {
            let (client, base, user) = (client.clone(), base.to_string(), user.clone());
            tokio::spawn(async move { start_and_wait(&client, &base, &user).await })
        })
        .collect();
    for start in starts {
        start.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

pub async fn server_answers(client: &reqwest::Client, lb: &str, user: &str) -> Result<(), String> {
    let response = client
        .get(format!("{lb}/user/{user}/"))
        .header("Authorization", format!("token {TOKEN}"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    match status {
        200 => Ok(()),
        _ => Err(format!("{user}'s server: {status} {body}")),
    }
}

#[derive(Default)]
pub struct Tally {
    pub ok: AtomicUsize,
    pub failed: AtomicUsize,
    pub failures: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    pub fn note(&self, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::SeqCst);
                self.failures.lock().unwrap().push(e);
            }
        }
    }
}
