//! End to end with the real `jupyterhub-singleuser` (JupyterLab) from PyPI: log in,
//! start, OAuth through our proxy, run `1+1` on a kernel over its WebSocket, stop. Each test
//! runs with users' servers on the hub's origin (upstream's default) and on hosts of their own
//! (`subdomain_host`, ours).

mod common;

use std::time::Duration;

use common::{Browser, Mode, TestHub};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const DUMMY_HUB: &str = "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\nsingleuser:\n  defaultUrl: /lab\n";

/// Open JupyterLab through the proxy: the single-user server sends us through the
/// hub's OAuth flow and back; the cookie jar carries each cookie to its path.
/// With subdomains the link on the hub's host leads to the user's own host.
async fn open_lab(browser: &Browser, user: &str) {
    let lab = browser
        .client
        .get(browser.url(&format!("/user/{user}/lab")))
        .send()
        .await
        .unwrap();
    assert_eq!(lab.status(), 200, "JupyterLab page: {}", lab.url());
    let lab_url = browser.user_url(user, &format!("/user/{user}/lab"));
    assert_eq!(lab.url().path(), url::Url::parse(&lab_url).unwrap().path());
    let server_root = browser.user_url(user, &format!("/user/{user}/"));
    assert_eq!(
        lab.url().host_str(),
        url::Url::parse(&server_root).unwrap().host_str(),
        "JupyterLab is served from the user's host"
    );
    let body = lab.text().await.unwrap();
    assert!(
        body.contains("jupyter-config-data"),
        "not a JupyterLab page: {body:.300}"
    );
    assert!(
        browser
            .cookie_at(&server_root, &format!("jupyterhub-user-{user}"))
            .is_some(),
        "the single-user server set its OAuth cookie"
    );
    // The hub's login never reaches the user's server (with subdomains: not even its host).
    let sent_to_server = browser.cookie_header(&format!("/user/{user}/"));
    let sent_to_server = if browser.url("") == browser.user_url(user, "") {
        sent_to_server
    } else {
        browser.cookie_header_at(&server_root)
    };
    assert!(
        !sent_to_server.contains("jupyterhub-hub-login"),
        "{sent_to_server}"
    );
}

/// Start a kernel and run `code` over the kernel WebSocket, through the proxy.
async fn execute(browser: &Browser, hub: &TestHub, user: &str, code: &str) -> String {
    // To the hub's port, with the host the browser would use (its own, with subdomains).
    let (mut socket, response) = common::kernel_socket(browser, hub, user).await;
    assert_eq!(response.status(), 101);

    let (msg_id, execute_request) = common::execute_request(user, code);
    socket
        .send(Message::text(execute_request.to_string()))
        .await
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(message) = socket.next().await {
            let Ok(Message::Text(text)) = message else {
                continue;
            };
            let reply: serde_json::Value = serde_json::from_str(&text).unwrap();
            if reply["parent_header"]["msg_id"] == msg_id && reply["msg_type"] == "execute_result" {
                return reply["content"]["data"]["text/plain"]
                    .as_str()
                    .unwrap()
                    .to_string();
            }
        }
        panic!("kernel WebSocket closed before an execute_result");
    })
    .await
    .expect("no execute_result within 60 s");
    let _ = socket.close(None).await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_in_start_jupyterlab_run_a_kernel_and_stop() {
    lab_journey(Mode::Paths, DUMMY_HUB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_in_start_jupyterlab_run_a_kernel_and_stop_on_the_users_host() {
    lab_journey(Mode::Subdomains, DUMMY_HUB).await;
}

/// Everything under `hub.baseUrl` (upstream's `base_url`): the hub at `/jupyter/hub/`, the
/// server at `/jupyter/user/alice/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jupyterlab_under_a_base_url() {
    lab_journey(Mode::Paths, BASE_URL_HUB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jupyterlab_under_a_base_url_on_the_users_host() {
    lab_journey(Mode::Subdomains, BASE_URL_HUB).await;
}

const BASE_URL_HUB: &str = "hub:\n  baseUrl: /jupyter/\n  config:\n    JupyterHub:\n      authenticator_class: dummy\nsingleuser:\n  defaultUrl: /lab\n";

async fn lab_journey(mode: Mode, yaml: &str) {
    let hub = TestHub::start_in(mode, yaml);
    let browser = Browser::new(&hub);
    browser.login("alice", "any").await;

    // Press Start: the hub starts the server and shows progress.
    let start = browser
        .no_redirects()
        .get(browser.url("/hub/spawn"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 302);
    let pending = start.headers()["location"].to_str().unwrap().to_string();
    let server_url = hub.server_url("alice", "/user/alice/");
    assert!(
        pending == format!("{}/hub/spawn-pending/alice", hub.prefix) || pending == server_url,
        "{pending}"
    );
    let model = browser.wait_ready("alice", Duration::from_secs(120)).await;
    assert_eq!(model["server"], server_url, "log:\n{}", hub.log());
    let pids = hub.server_pids("alice");
    assert!(!pids.is_empty(), "a server process runs in alice's home");

    open_lab(&browser, "alice").await;

    let status = browser
        .client
        .get(browser.user_url("alice", "/user/alice/api/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    let status: serde_json::Value = status.json().await.unwrap();
    assert!(
        status.get("started").is_some(),
        "jupyter-server status: {status}"
    );

    assert_eq!(execute(&browser, &hub, "alice", "1+1").await, "2");

    // Stop: process and route are gone, and the URL falls through to the hub.
    let stop = browser
        .api(reqwest::Method::DELETE, "/hub/api/users/alice/server")
        .await;
    assert_eq!(stop.status(), 204, "{}", stop.text().await.unwrap());
    for pid in &pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} still runs"
        );
    }
    assert!(
        hub.server_pids("alice").is_empty(),
        "server processes left: {:?}",
        hub.server_pids("alice")
    );
    let gone = browser
        .no_redirects()
        .get(browser.user_url("alice", "/user/alice/api/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 302);
    // With subdomains, to the hub's own host (the user's host has no hub).
    let hub_side = match mode {
        Mode::Paths => format!("{}/hub/user/alice/api/status", hub.prefix),
        Mode::Subdomains => hub.url("/hub/user/alice/api/status"),
    };
    assert_eq!(gone.headers()["location"], hub_side.as_str());
    let gone = browser
        .client
        .get(browser.user_url("alice", "/user/alice/api/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 424);
    let model = browser.user_model("alice").await;
    assert!(
        model["server"].is_null() && model["servers"] == serde_json::json!({}),
        "{model}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_restart_leaves_servers_running_and_restores_routes() {
    restart_journey(Mode::Paths).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_restart_restores_routes_on_users_hosts() {
    restart_journey(Mode::Subdomains).await;
}

async fn restart_journey(mode: Mode) {
    let mut hub = TestHub::start_in(mode, DUMMY_HUB);
    let browser = Browser::new(&hub);
    browser.login("carol", "any").await;
    let model = browser
        .start_server("carol", Duration::from_secs(120))
        .await;
    assert_eq!(
        model["server"],
        hub.server_url("carol", "/user/carol/"),
        "log:\n{}",
        hub.log()
    );
    open_lab(&browser, "carol").await;
    // The server's main process: the lowest pid in carol's home (JupyterLab may
    // run short-lived helpers there too, so compare that one process only).
    let server_pid = *hub
        .server_pids("carol")
        .iter()
        .min()
        .expect("a server process");
    let alive = |pid: i32| std::path::Path::new(&format!("/proc/{pid}")).exists();

    // The hub dies without any chance to clean up.
    hub.kill();
    assert!(
        alive(server_pid),
        "the server is untouched by the hub's death"
    );
    assert!(
        browser
            .client
            .get(browser.user_url("carol", "/user/carol/api"))
            .send()
            .await
            .is_err(),
        "nothing answers while the hub (and its proxy) is down"
    );

    hub.launch();
    let api = browser
        .client
        .get(browser.user_url("carol", "/user/carol/api"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        api.status(),
        200,
        "the route is back after restart; log:\n{}",
        hub.log()
    );
    assert!(api
        .json::<serde_json::Value>()
        .await
        .unwrap()
        .get("version")
        .is_some());
    // The browser's OAuth cookie and session still work: the tokens are in the database.
    let status = browser
        .client
        .get(browser.user_url("carol", "/user/carol/api/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    assert!(alive(server_pid), "the same process serves");
    assert!(hub.server_pids("carol").contains(&server_pid));
    assert!(
        hub.log().contains("re-adopted a running server"),
        "{}",
        hub.log()
    );
}

/// `jupyterhub-singleuser` 5.x (no PKCE, older extension) against the same hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jupyterhub_singleuser_5x_works_too() {
    singleuser_5x(Mode::Paths).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jupyterhub_singleuser_5x_works_on_users_hosts() {
    singleuser_5x(Mode::Subdomains).await;
}

async fn singleuser_5x(mode: Mode) {
    let venv = std::env::var_os("HUBFLEET_PYTHON_ENV_JH5")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "HUBFLEET_PYTHON_ENV_JH5 is not set: point it at a venv with `jupyterhub>=5,<6` and \
                 jupyterlab (`scripts/test` creates .venv-jh5 and sets it)"
            )
        });
    let version = std::process::Command::new(venv.join("bin/python"))
        .args(["-c", "import jupyterhub; print(jupyterhub.__version__)"])
        .output()
        .expect("the 5.x venv has python");
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    assert!(
        version.starts_with("5."),
        "{} has jupyterhub {version}, not 5.x",
        venv.display()
    );

    let hub = TestHub::start_mode(mode, DUMMY_HUB, "", &venv, &[]);
    let browser = Browser::new(&hub);
    browser.login("dana", "any").await;
    let model = browser.start_server("dana", Duration::from_secs(120)).await;
    assert_eq!(
        model["server"],
        hub.server_url("dana", "/user/dana/"),
        "log:\n{}",
        hub.log()
    );
    open_lab(&browser, "dana").await;
    assert_eq!(execute(&browser, &hub, "dana", "6*7").await, "42");
    let log = std::fs::read_to_string(hub.data_dir().join("logs/dana.log")).unwrap();
    assert!(
        log.contains(&version) || log.contains("jupyterhub"),
        "{log}"
    );
}
