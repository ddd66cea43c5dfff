//! The Dask hub flavour, end to end with real peers: `hubfleet serve` runs the real
//! `dask-gateway-server` (PyPI) as a managed service; alice logs in, starts JupyterLab
//! (jupyterhub-singleuser) and, in its kernel, `Gateway().new_cluster()` with no arguments,
//! scales to 2 workers, computes, and shuts the cluster down. Meanwhile the admin page (in
//! Chromium) and `/hub/metrics` see the cluster, and bob can neither see nor stop it.
//!
//! Needs `HUBFLEET_DASK_ENV`: a venv with `scripts/requirements-dask.txt` (`scripts/test` makes
//! `.venv-dask`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;

use common::{Browser, Mode, TestHub};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const DASK_HUB: &str = "hub:
  config:
    JupyterHub:
      authenticator_class: dummy
    Authenticator:
      admin_users: [admin]
singleuser:
  defaultUrl: /lab
dask-gateway:
  enabled: true
  gateway:
    prefix: /services/dask-gateway
    auth:
      type: jupyterhub
    backend:
      worker:
        cores: {limit: 1}
        memory: {limit: 512M}
    clusterManager:
      idleTimeout: 600
      clusterMaxWorkers: 2
";

fn dask_env() -> PathBuf {
    let path = std::env::var_os("HUBFLEET_DASK_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!("HUBFLEET_DASK_ENV is not set: point it at a venv with scripts/requirements-dask.txt installed (scripts/test makes .venv-dask)")
        });
    for program in ["jupyterhub-singleuser", "dask-gateway-server", "dask"] {
        assert!(
            path.join("bin").join(program).exists(),
            "{} has no bin/{program}: pip install -r scripts/requirements-dask.txt into it",
            path.display()
        );
    }
    path
}

/// The gateway's packages in a venv of the system's Python, which users' accounts can run.
fn dask_system_env() -> PathBuf {
    let env = std::env::var_os("HUBFLEET_DASK_SYSTEM_ENV")
        .map(PathBuf::from)
        .expect("HUBFLEET_DASK_SYSTEM_ENV is not set: a venv of /usr/bin/python3 with dask-gateway-server[local], dask-gateway and distributed (scripts/test makes .venv-dask-system)");
    assert!(
        env.join("bin/dask").exists(),
        "{} has no bin/dask",
        env.display()
    );
    env
}

/// Run `code` in a new kernel of `user`'s server (REST to start it, then the kernel WebSocket
/// through the hub's proxy); the `text/plain` of its last expression, or a panic with the
/// kernel's traceback.
async fn execute(browser: &Browser, hub: &TestHub, user: &str, code: &str) -> String {
    let (mut socket, _) = common::kernel_socket(browser, hub, user).await;
    let (msg_id, execute_request) = common::execute_request(user, code);
    socket
        .send(Message::text(execute_request.to_string()))
        .await
        .unwrap();
    // Starting a cluster and its workers takes a while on a shared machine: a generous bound,
    // only there so that a hang fails rather than blocks.
    let result = tokio::time::timeout(Duration::from_secs(300), async {
        while let Some(message) = socket.next().await {
            let Ok(Message::Text(text)) = message else {
                continue;
            };
            let reply: serde_json::Value = serde_json::from_str(&text).unwrap();
            if reply["parent_header"]["msg_id"] != msg_id {
                continue;
            }
            match reply["msg_type"].as_str() {
                Some("execute_result") => {
                    return reply["content"]["data"]["text/plain"]
                        .as_str()
                        .unwrap()
                        .to_string()
                }
                Some("error") => panic!(
                    "the kernel raised {}: {}\n{}\n--- hub log ---\n{}\n--- gateway log ---\n{}",
                    reply["content"]["ename"],
                    reply["content"]["evalue"],
                    reply["content"]["traceback"],
                    tail(&hub.log()),
                    tail(&gateway_log(hub))
                ),
                _ => {}
            }
        }
        panic!("kernel WebSocket closed before an execute_result");
    })
    .await
    .expect("no execute_result within 300 s");
    let _ = socket.close(None).await;
    result
}

fn gateway_log(hub: &TestHub) -> String {
    std::fs::read_to_string(hub.data_dir().join("logs/service-dask-gateway.log"))
        .unwrap_or_default()
}

fn tail(text: &str) -> String {
    let start = text.len().saturating_sub(6000);
    text[text.floor_char_boundary(start)..].to_string()
}

/// A Python string (the kernel's output is `repr` of the last expression).
fn unquote(text: &str) -> String {
    text.trim_matches('\'').to_string()
}

/// Log `user` in and start their JupyterLab; the browser then holds the server's cookies.
async fn lab(hub: &TestHub, user: &str) -> Browser {
    let browser = Browser::new(hub);
    browser.login(user, "any").await;
    browser.start_server(user, Duration::from_secs(120)).await;
    browser.wait_ready(user, Duration::from_secs(120)).await;
    let lab = browser
        .client
        .get(browser.url(&format!("/user/{user}/lab")))
        .send()
        .await
        .unwrap();
    assert_eq!(lab.status(), 200, "JupyterLab: {}", lab.url());
    browser
}

/// A token of `user`'s with `scopes`, made through the API with their login.
async fn user_token(browser: &Browser, user: &str, scopes: Option<&[&str]>) -> String {
    let mut body = serde_json::json!({"note": "flavour_dask"});
    if let Some(scopes) = scopes {
        body["scopes"] = serde_json::json!(scopes);
    }
    let xsrf = browser.xsrf().await;
    let reply: serde_json::Value = browser
        .client
        .post(browser.url(&format!("/hub/api/users/{user}/tokens")))
        .header("X-XSRFToken", xsrf)
        .json(&body)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    reply["token"].as_str().unwrap().to_string()
}

/// The gateway's API through the hub's proxy (on the service's own host with subdomains), as
/// a dask-gateway client elsewhere calls it.
fn gateway_call(
    hub: &TestHub,
    method: reqwest::Method,
    path: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    let origin = match hub.mode {
        Mode::Paths => hub.url(""),
        Mode::Subdomains => format!("http://dask-gateway--service.localhost:{}", hub.port),
    };
    common::client_builder()
        .build()
        .unwrap()
        .request(
            method,
            format!("{origin}/services/dask-gateway/api/v1/{path}"),
        )
        .header("Authorization", format!("jupyterhub {token}"))
}

/// Until the gateway answers through the hub (the hub starts it in the background).
async fn wait_for_gateway(hub: &TestHub, token: &str) {
    for _ in 0..240 {
        let up = gateway_call(hub, reqwest::Method::GET, "clusters/", token)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if up {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!(
        "the gateway never answered; its log:\n{}",
        tail(&gateway_log(hub))
    );
}

fn browser_scenario(hub: &TestHub, script: &str, env: &[(&str, &str)]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/browser");
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
        .env("SCREENSHOT_DIR", "")
        .envs(env.iter().copied())
        .output()
        .expect("node is needed for the browser tests");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{}\n--- hub log ---\n{}",
        String::from_utf8_lossy(&output.stderr),
        tail(&hub.log())
    );
}

/// The count of `hubfleet_dask_clusters{status="<status>"}` in the hub's metrics.
async fn clusters_metric(admin: &Browser, status: &str) -> i64 {
    let text = admin
        .client
        .get(admin.url("/hub/metrics"))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("hubfleet_dask_clusters{{status=\"{status}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .unwrap_or_else(|| panic!("no {series} in the metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notebook_starts_a_dask_cluster_through_the_hubs_gateway() {
    dask_journey(Mode::Paths).await;
}

/// The same with users (and services) on hosts of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notebook_starts_a_dask_cluster_with_subdomains() {
    dask_journey(Mode::Subdomains).await;
}

async fn dask_journey(mode: Mode) {
    let mut hub = TestHub::start_mode(mode, DASK_HUB, "", &dask_env(), &[]);
    let alice = lab(&hub, "alice").await;

    // The server got daskhub's settings; the client needs nothing else.
    let env = execute(
        &alice,
        &hub,
        "alice",
        "import os, json; json.dumps({k: v for k, v in os.environ.items() if k.startswith('DASK_GATEWAY__')})",
    )
    .await;
    let env: serde_json::Value = serde_json::from_str(&unquote(&env)).unwrap();
    assert_eq!(env["DASK_GATEWAY__AUTH__TYPE"], "jupyterhub");
    let address = env["DASK_GATEWAY__ADDRESS"].as_str().unwrap();
    assert!(
        address.starts_with("http://127.0.0.1:") && address.ends_with("/services/dask-gateway"),
        "{env}"
    );
    let public = env["DASK_GATEWAY__PUBLIC_ADDRESS"].as_str().unwrap();
    match mode {
        Mode::Paths => {
            assert_eq!(address, hub.url("/services/dask-gateway"));
            assert_eq!(public, "/services/dask-gateway/");
        }
        Mode::Subdomains => assert_eq!(
            public,
            format!(
                "http://dask-gateway--service.localhost:{}/services/dask-gateway/",
                hub.port
            )
        ),
    }
    assert!(
        env["DASK_GATEWAY__PROXY_ADDRESS"]
            .as_str()
            .unwrap()
            .starts_with("gateway://127.0.0.1:"),
        "{env}"
    );

    // A cluster, 2 workers, a computation; the cluster stays up for the checks below.
    let out = execute(
        &alice,
        &hub,
        "alice",
        "import json
from dask_gateway import Gateway
import dask.array as da
cluster = Gateway().new_cluster()
cluster.scale(2)
client = cluster.get_client()
client.wait_for_workers(2, timeout=240)
total = int(da.ones((1000, 1000)).sum().compute())
json.dumps({'name': cluster.name, 'total': total, 'workers': len(client.scheduler_info()['workers'])})",
    )
    .await;
    let out: serde_json::Value = serde_json::from_str(&unquote(&out)).unwrap();
    assert_eq!(out["total"], 1_000_000);
    assert_eq!(out["workers"], 2);
    let cluster = out["name"].as_str().unwrap().to_string();

    // The admin page (Chromium) and the metrics see it.
    let admin = Browser::new(&hub);
    admin.login("admin", "any").await;
    let page = admin
        .client
        .get(admin.url("/hub/admin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("data-user=\"alice\" data-cluster=\"{cluster}\"")),
        "the admin page lists alice's cluster:\n{page}"
    );
    browser_scenario(
        &hub,
        "dask_admin.mjs",
        &[("CLUSTER", &cluster), ("OWNER", "alice"), ("WORKERS", "2")],
    );
    assert_eq!(clusters_metric(&admin, "RUNNING").await, 1);

    // bob, with a token that reaches the gateway: he sees none of alice's clusters and can
    // neither read nor stop hers.
    let bob = Browser::new(&hub);
    bob.login("bob", "any").await;
    let bob_token = user_token(&bob, "bob", None).await;
    let list = gateway_call(&hub, reqwest::Method::GET, "clusters/", &bob_token)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200, "bob is a gateway user");
    let list: serde_json::Value = list.json().await.unwrap();
    assert_eq!(list, serde_json::json!({}), "bob sees no cluster");
    let get = gateway_call(
        &hub,
        reqwest::Method::GET,
        &format!("clusters/{cluster}"),
        &bob_token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(get.status(), 403, "bob cannot read alice's cluster");
    let stop = gateway_call(
        &hub,
        reqwest::Method::DELETE,
        &format!("clusters/{cluster}"),
        &bob_token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(stop.status(), 403, "bob cannot stop alice's cluster");
    // A token of bob's without the gateway's scope is turned away.
    let narrow = user_token(&bob, "bob", Some(&["read:users!user=bob"])).await;
    let refused = gateway_call(&hub, reqwest::Method::GET, "clusters/", &narrow)
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        401,
        "no access:services!service=dask-gateway"
    );

    // The hub dies and comes back: the gateway it starts again finds alice's cluster (clusters
    // outlive the hub, as servers do).
    hub.kill();
    hub.launch();

    // alice's cluster is still hers and running; she shuts it down. (Her request may reach
    // the gateway before it is back: the client retries, as a person would.)
    let out = execute(
        &alice,
        &hub,
        "alice",
        &format!(
            "import json, time
from dask_gateway import Gateway
g = Gateway()
for attempt in range(120):
    try:
        before = [c.status.name for c in g.list_clusters()]
        break
    except Exception:
        time.sleep(0.5)
g.connect('{cluster}').shutdown()
after = g.list_clusters()
json.dumps({{'before': before, 'after': len(after)}})"
        ),
    )
    .await;
    let out: serde_json::Value = serde_json::from_str(&unquote(&out)).unwrap();
    assert_eq!(out, serde_json::json!({"before": ["RUNNING"], "after": 0}));
    assert_eq!(clusters_metric(&admin, "RUNNING").await, 0);
}

/// On Kubernetes the gateway is the upstream chart's: `render k8s` writes that chart's values
/// (auth through the hub, the token the hub Secret holds, the limits) and the hub's side (the
/// service, the users' scope), and renders no gateway objects of its own.
#[test]
fn render_k8s_names_the_upstream_chart_and_its_values() {
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("hub.yaml");
    std::fs::write(
        &values,
        "dask-gateway:
  enabled: true
  gateway:
    backend:
      scheduler:
        memory: {request: 4G, limit: 4G}
    clusterManager:
      clusterMaxWorkers: 10
",
    )
    .unwrap();
    let seed = dir.path().join("seed");
    std::fs::write(&seed, "a-seed-for-the-dask-render-test-0123456789").unwrap();
    let chart_values = dir.path().join("dask-gateway.values.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_hubfleet"))
        .args(["render", "k8s", "--namespace", "hubs", "-f"])
        .arg(&values)
        .arg("--secret-seed-file")
        .arg(&seed)
        .arg("--dask-gateway-values")
        .arg(&chart_values)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("helm upgrade --install jupyterhub-dask-gateway dask-gateway --repo https://helm.dask.org --version 2026.3.0 --namespace hubs"),
        "{stderr}"
    );
    let chart: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&chart_values).unwrap()).unwrap();
    assert_eq!(chart["gateway"]["prefix"], "/services/dask-gateway");
    assert_eq!(chart["gateway"]["auth"]["type"], "jupyterhub");
    assert_eq!(
        chart["gateway"]["auth"]["jupyterhub"]["apiTokenFromSecretKey"],
        "hub.services.dask-gateway.apiToken"
    );
    assert_eq!(
        chart["gateway"]["backend"]["scheduler"]["memory"]["limit"],
        "4G"
    );
    assert!(chart["gateway"]["extraConfig"]["hubfleet-cluster-limits"]
        .as_str()
        .unwrap()
        .contains("c.ClusterConfig.cluster_max_workers = 10"));
    assert!(chart.get("enabled").is_none() && chart.get("local").is_none());

    let manifests = String::from_utf8(out.stdout).unwrap();
    assert!(
        manifests.contains("hub.services.dask-gateway.apiToken:"),
        "the hub Secret holds the gateway's token"
    );
    // The hub's config, from the hub Secret's `values.yaml`.
    let hub_values = serde_yaml_ng::Deserializer::from_str(&manifests)
        .map(|doc| serde_yaml_ng::Value::deserialize(doc).unwrap())
        .find_map(|doc| {
            let data = doc.get("data")?.get("values.yaml")?.as_str()?.to_owned();
            (doc["kind"] == "Secret").then_some(data)
        })
        .expect("a hub Secret with values.yaml");
    use base64::Engine;
    let hub_values = base64::engine::general_purpose::STANDARD
        .decode(hub_values)
        .unwrap();
    let hub: serde_yaml_ng::Value = serde_yaml_ng::from_slice(&hub_values).unwrap();
    assert_eq!(
        hub["hub"]["services"]["dask-gateway"]["url"],
        "http://traefik-jupyterhub-dask-gateway.hubs",
        "the hub routes the service to the chart's traefik"
    );
    let user_scopes = hub["hub"]["loadRoles"]["user"]["scopes"]
        .as_sequence()
        .unwrap();
    assert!(
        user_scopes
            .iter()
            .any(|s| s == "access:services!service=dask-gateway")
            && user_scopes.iter().any(|s| s == "self"),
        "users may use the gateway: {user_scopes:?}"
    );
    assert!(
        hub.get("dask-gateway").is_none(),
        "the hub pod does not run a gateway itself"
    );
}

/// With `system_users` on a root hub, the gateway's `LocalBackend` runs a user's cluster as
/// that user's own Unix account (`jupyter-<name>`), not as the hub's. Needs
/// `HUBFLEET_DASK_SYSTEM_ENV`: the gateway's packages in a venv of the system's Python, which
/// users' accounts can run (`scripts/test` makes `.venv-dask-system`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_run_as_their_users_accounts_with_system_users() {
    use std::os::unix::fs::PermissionsExt;
    assert!(
        nix::unistd::geteuid().is_root(),
        "system users need root (CI runs the tests as root)"
    );
    let env = dask_system_env();
    let user = format!("dask{}", std::process::id());
    let _accounts = common::fresh_system_accounts(&[&user]);
    let stand_in = "[/bin/sh, -c, 'port=${JUPYTERHUB_SERVICE_URL##*:}; port=${port%%/*}; exec /usr/bin/python3 -m http.server --bind 127.0.0.1 $port']";
    let hub = TestHub::start_with(
        &format!(
            "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\nsingleuser:\n  cmd: {stand_in}\ndask-gateway:\n  enabled: true\n"
        ),
        "    system_users: true\n",
        &env,
    );
    // The accounts reach their homes and clusters through the test's directory (0700).
    std::fs::set_permissions(hub.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let browser = Browser::new(&hub);
    browser.login(&user, "any").await;
    browser.start_server(&user, Duration::from_secs(60)).await;
    browser.wait_ready(&user, Duration::from_secs(60)).await;
    let account = nix::unistd::User::from_name(&format!("jupyter-{user}"))
        .unwrap()
        .expect("the hub made the account");
    let token = user_token(&browser, &user, None).await;
    wait_for_gateway(&hub, &token).await;

    let made = gateway_call(&hub, reqwest::Method::POST, "clusters/", &token)
        .json(&serde_json::json!({"cluster_options": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201, "{}", tail(&gateway_log(&hub)));
    let made: serde_json::Value = made.json().await.unwrap();
    let cluster = made["name"].as_str().unwrap().to_string();
    // `?wait` answers once the cluster is past PENDING, or after a while: ask again then.
    let mut running = serde_json::Value::Null;
    for _ in 0..12 {
        running = gateway_call(
            &hub,
            reqwest::Method::GET,
            &format!("clusters/{cluster}?wait"),
            &token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        if running["status"] != "PENDING" {
            break;
        }
    }
    assert_eq!(
        running["status"],
        "RUNNING",
        "{running}\n--- gateway log ---\n{}",
        tail(&gateway_log(&hub))
    );
    let clusters_dir = hub.data_dir().join("dask-gateway/clusters");
    let schedulers = common::processes_in(&clusters_dir);
    assert!(
        !schedulers.is_empty(),
        "the scheduler works in its cluster's directory"
    );
    for pid in schedulers {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap();
        assert_eq!(
            uid,
            account.uid.to_string(),
            "process {pid} runs as the user's account"
        );
    }
    let stopped = gateway_call(
        &hub,
        reqwest::Method::DELETE,
        &format!("clusters/{cluster}"),
        &token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(stopped.status(), 204);
    // dask-gateway-server 2026.3.0's own LocalBackend chowns "/" to the user; the hub's
    // config must keep it from doing so.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata("/").unwrap().uid(),
        0,
        "/ is still root's"
    );
}

/// With `system_users`, a `jupyter-<name>` account that the hub did not make (someone else's,
/// made before the user ever started a server) never runs that user's cluster: the gateway
/// refuses it as the local spawner refuses to run a server as it, and says why in its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_never_run_as_an_account_the_hub_did_not_make() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "system users need root (CI runs the tests as root)"
    );
    let env = dask_system_env();
    let user = format!("daskx{}", std::process::id());
    let _accounts = common::fresh_system_accounts(&[&user]);
    let account = hubfleet_spawn::system_user::account_name(&user);
    let made = std::process::Command::new("useradd")
        .args(["--no-create-home", "--user-group", &account])
        .status()
        .unwrap();
    assert!(made.success(), "useradd {account}");
    let stranger = nix::unistd::User::from_name(&account).unwrap().unwrap();
    let hub = TestHub::start_with(
        "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\ndask-gateway:\n  enabled: true\n",
        "    system_users: true\n",
        &env,
    );
    let browser = Browser::new(&hub);
    browser.login(&user, "any").await;
    let token = user_token(&browser, &user, None).await;
    wait_for_gateway(&hub, &token).await;

    let made = gateway_call(&hub, reqwest::Method::POST, "clusters/", &token)
        .json(&serde_json::json!({"cluster_options": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201, "{}", tail(&gateway_log(&hub)));
    let made: serde_json::Value = made.json().await.unwrap();
    let cluster = made["name"].as_str().unwrap().to_string();
    let mut status = serde_json::Value::Null;
    for _ in 0..12 {
        let reply: serde_json::Value = gateway_call(
            &hub,
            reqwest::Method::GET,
            &format!("clusters/{cluster}?wait"),
            &token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        status = reply["status"].clone();
        if !matches!(status.as_str(), Some("PENDING" | "STOPPING")) {
            break;
        }
    }
    let log = gateway_log(&hub);
    assert_eq!(status, "FAILED", "{}", tail(&log));
    assert!(
        log.contains(&format!(
            "refusing to run the Dask cluster of hub user '{user}' as the Unix account {account}"
        )) && log.contains("this hub did not create it"),
        "{}",
        tail(&log)
    );
    for pid in common::processes_in(&hub.data_dir().join("dask-gateway/clusters")) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        assert!(
            !status
                .lines()
                .any(|l| l.starts_with("Uid:") && l.contains(&stranger.uid.to_string())),
            "process {pid} runs as {account}"
        );
    }
}
