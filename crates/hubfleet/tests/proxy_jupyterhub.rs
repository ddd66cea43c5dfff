//! A real peer drives `hubfleet proxy`: upstream JupyterHub (from PyPI, in the test venv) runs
//! it as its proxy (`c.ConfigurableHTTPProxy.command = [<hubfleet>, "proxy"]`), spawns a real
//! `jupyterhub-singleuser` with SimpleLocalProcessSpawner, and we reach the server's
//! `/user/<name>/api/status` and run a kernel over its WebSocket through our proxy. Stopping the
//! server must delete its route.

#[path = "proxy_common.rs"]
mod proxy_common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use proxy_common::{client, free_port};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const API_TOKEN: &str = "test-service-token-0123456789abcdef";
const PROXY_TOKEN: &str = "test-proxy-token-0123456789abcdef";

fn python_env() -> PathBuf {
    let path = std::env::var_os("HUBFLEET_PYTHON_ENV")
        .map(PathBuf::from)
        .expect("HUBFLEET_PYTHON_ENV must point at a venv with jupyterhub and jupyterlab");
    assert!(
        path.join("bin/jupyterhub").exists(),
        "{} has no bin/jupyterhub",
        path.display()
    );
    path
}

struct Hub {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    api_port: u16,
}

impl Hub {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("jupyterhub.log")).unwrap_or_default()
    }
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
    fn proxy_api(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/api/routes{path}", self.api_port)
    }
    async fn routes(&self) -> Value {
        client()
            .get(self.proxy_api(""))
            .header("Authorization", format!("token {PROXY_TOKEN}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
    fn proxy_pid(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join("proxy.pid"))
            .ok()
            .map(|s| s.trim().to_owned())
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let proxy_pid = self.proxy_pid();
        if let Some(mut child) = self.child.take() {
            // SIGTERM lets JupyterHub stop its servers and its proxy.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(pid) = proxy_pid {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
    }
}

fn start_jupyterhub() -> Hub {
    start_jupyterhub_with(false)
}

/// JupyterHub, with `internal_ssl` (TLS with client certificates between hub, proxy and
/// servers) when asked.
fn start_jupyterhub_with(internal_ssl: bool) -> Hub {
    let venv = python_env();
    let dir = tempfile::tempdir().unwrap();
    let (port, hub_port, api_port) = (free_port(), free_port(), free_port());
    let d = dir.path().display();
    let config = format!(
        r#"
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{d}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{d}/cookie_secret"
c.ConfigurableHTTPProxy.api_url = "{api_scheme}://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.command = ["{bin}", "proxy"]
c.ConfigurableHTTPProxy.auth_token = "{PROXY_TOKEN}"
c.ConfigurableHTTPProxy.pid_file = "{d}/proxy.pid"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{d}/homes/{{username}}"
c.Spawner.cmd = ["{venv}/bin/jupyterhub-singleuser"]
c.Spawner.args = ["--allow-root"]
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
c.JupyterHub.services = [{{"name": "tester", "api_token": "{API_TOKEN}"}}]
c.JupyterHub.load_roles = [{{
    "name": "tester",
    "scopes": ["admin:users", "admin:servers", "access:servers", "read:users"],
    "services": ["tester"],
}}]
c.JupyterHub.internal_ssl = {internal_ssl}
c.JupyterHub.internal_certs_location = "{d}/internal-ssl"
"#,
        api_scheme = if internal_ssl { "https" } else { "http" },
        internal_ssl = if internal_ssl { "True" } else { "False" },
        bin = env!("CARGO_BIN_EXE_hubfleet"),
        venv = venv.display(),
    );
    let config_path = dir.path().join("jupyterhub_config.py");
    std::fs::write(&config_path, config).unwrap();
    let log = std::fs::File::create(dir.path().join("jupyterhub.log")).unwrap();
    let path = format!(
        "{}/bin:{}",
        venv.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let child = Command::new(venv.join("bin/jupyterhub"))
        .arg("-f")
        .arg(&config_path)
        .current_dir(dir.path())
        .env("PATH", path)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    Hub {
        child: Some(child),
        dir,
        port,
        api_port,
    }
}

async fn wait_for<T, F, Fut>(hub: &Hub, what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; JupyterHub log:\n{}",
            hub.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn token() -> String {
    format!("token {API_TOKEN}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_jupyterhub_runs_with_hubfleet_proxy() {
    let hub = start_jupyterhub();
    let c = client();

    // The hub API, through our proxy (the "/" route JupyterHub adds).
    let info: Value = wait_for(&hub, "the hub API through the proxy", 60, || async {
        let resp = c.get(hub.url("/hub/api/")).send().await.ok()?;
        if resp.status() != 200 {
            return None;
        }
        resp.json().await.ok()
    })
    .await;
    assert!(info["version"].as_str().unwrap().starts_with('6'), "{info}");
    let routes = hub.routes().await;
    assert_eq!(routes["/"]["hub"], true, "{routes}");
    assert_eq!(routes["/"]["jupyterhub"], true);

    // Create alice and start her server through the hub API.
    let resp = c
        .post(hub.url("/hub/api/users/alice"))
        .header("Authorization", token())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let resp = c
        .post(hub.url("/hub/api/users/alice/server"))
        .header("Authorization", token())
        .send()
        .await
        .unwrap();
    assert!(
        [201, 202].contains(&resp.status().as_u16()),
        "{}",
        resp.text().await.unwrap()
    );
    wait_for(&hub, "alice's server to be ready", 90, || async {
        let user: Value = c
            .get(hub.url("/hub/api/users/alice"))
            .header("Authorization", token())
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (user["servers"][""]["ready"] == true).then_some(())
    })
    .await;

    // JupyterHub added her route to our proxy, with its data.
    let routes = hub.routes().await;
    let route = &routes["/user/alice"];
    assert_eq!(route["user"], "alice", "{routes}");
    assert_eq!(route["server_name"], "");
    assert_eq!(route["jupyterhub"], true);
    assert!(route["target"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1:"));

    // The single-user server's API, through our proxy.
    let resp = c
        .get(hub.url("/user/alice/api/status"))
        .header("Authorization", token())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let status: Value = resp.json().await.unwrap();
    assert!(status.get("started").is_some(), "{status}");

    // A kernel, driven over its WebSocket through our proxy.
    let kernel: Value = c
        .post(hub.url("/user/alice/api/kernels"))
        .header("Authorization", token())
        .json(&json!({"name": "python3"}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let kernel_id = kernel["id"].as_str().unwrap();
    let mut request = format!(
        "ws://127.0.0.1:{}/user/alice/api/kernels/{kernel_id}/channels",
        hub.port
    )
    .into_client_request()
    .unwrap();
    request
        .headers_mut()
        .insert("authorization", token().parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), 101);
    let msg_id = uuid::Uuid::new_v4().to_string();
    let execute = json!({
        "header": {
            "msg_id": msg_id, "username": "alice", "session": uuid::Uuid::new_v4().to_string(),
            "msg_type": "execute_request", "version": "5.3", "date": "2026-01-01T00:00:00Z",
        },
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {
            "code": "6*7", "silent": false, "store_history": false,
            "user_expressions": {}, "allow_stdin": false, "stop_on_error": true,
        },
    });
    socket
        .send(Message::text(execute.to_string()))
        .await
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(message) = socket.next().await {
            let Ok(Message::Text(text)) = message else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text).unwrap();
            if reply["parent_header"]["msg_id"] == msg_id.as_str()
                && reply["msg_type"] == "execute_result"
            {
                return reply["content"]["data"]["text/plain"].clone();
            }
        }
        panic!("kernel WebSocket closed before an execute_result");
    })
    .await
    .expect("no execute_result within 60 s");
    assert_eq!(result, "42");
    let _ = socket.close(None).await;

    // The kernel traffic counted as activity on her route.
    let before =
        chrono::DateTime::parse_from_rfc3339(route["last_activity"].as_str().unwrap()).unwrap();
    let routes = hub.routes().await;
    let after = chrono::DateTime::parse_from_rfc3339(
        routes["/user/alice"]["last_activity"].as_str().unwrap(),
    )
    .unwrap();
    assert!(after > before, "{before} → {after}");

    // Stop the server: JupyterHub deletes her route from our proxy.
    let resp = c
        .delete(hub.url("/hub/api/users/alice/server"))
        .header("Authorization", token())
        .send()
        .await
        .unwrap();
    assert!([202, 204].contains(&resp.status().as_u16()));
    wait_for(&hub, "alice's route to be deleted", 60, || async {
        let routes = hub.routes().await;
        routes.get("/user/alice").is_none().then_some(())
    })
    .await;
    // Her URL now reaches the hub (the "/" route), not a dead server.
    let resp = c
        .get(hub.url("/user/alice/api/status"))
        .header("Authorization", token())
        .send()
        .await
        .unwrap();
    assert!(
        [302, 424].contains(&resp.status().as_u16()),
        "a stopped server's URL must reach the hub, got {}",
        resp.status()
    );
    assert!(hub.log().contains("Starting proxy"), "{}", hub.log());
}

/// JupyterHub's `internal_ssl`: it passes our proxy `--api-ssl-*` (mutual TLS on the REST API,
/// which the hub then uses with its own certificate) and `--client-ssl-*` (the proxy's
/// certificate and CA for the https:// targets: the hub itself and the single-user servers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_jupyterhub_internal_ssl_through_hubfleet_proxy() {
    let hub = start_jupyterhub_with(true);
    let c = client();

    // The hub API through our proxy: the proxy reached the hub's https:// target with its
    // client certificate, after the hub added the route over the mutual-TLS API.
    let info: Value = wait_for(&hub, "the hub API through the proxy", 90, || async {
        let resp = c.get(hub.url("/hub/api/")).send().await.ok()?;
        if resp.status() != 200 {
            return None;
        }
        resp.json().await.ok()
    })
    .await;
    assert!(info["version"].as_str().unwrap().starts_with('6'), "{info}");
    // The API speaks TLS only, and only with a client certificate from the hub's CAs.
    assert!(c
        .get(hub.proxy_api(""))
        .send()
        .await
        .map_or(true, |r| r.status() != 200));
    let no_cert = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let https_api = hub.proxy_api("").replace("http://", "https://");
    assert!(no_cert.get(&https_api).send().await.is_err());

    let resp = c
        .post(hub.url("/hub/api/users/alice"))
        .header("Authorization", token())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let resp = c
        .post(hub.url("/hub/api/users/alice/server"))
        .header("Authorization", token())
        .send()
        .await
        .unwrap();
    assert!([201, 202].contains(&resp.status().as_u16()));
    wait_for(&hub, "alice's server to be ready", 90, || async {
        let user: Value = c
            .get(hub.url("/hub/api/users/alice"))
            .header("Authorization", token())
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (user["servers"][""]["ready"] == true).then_some(())
    })
    .await;

    // Her https:// server, through our proxy.
    let resp = c
        .get(hub.url("/user/alice/api/status"))
        .header("Authorization", token())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", hub.log());
    let status: Value = resp.json().await.unwrap();
    assert!(status.get("started").is_some(), "{status}");
    let user: Value = c
        .get(hub.url("/hub/api/users/alice"))
        .header("Authorization", token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(user["servers"][""]["url"].as_str().is_some(), "{user}");
    assert!(
        hub.log().contains("https://127.0.0.1:"),
        "targets are https: {}",
        hub.log()
    );
}
