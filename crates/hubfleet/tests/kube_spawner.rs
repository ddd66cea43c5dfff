//! `hubfleet.spawner: kubernetes` through the real `hubfleet` binary, against the stand-in for
//! the Kubernetes API server (`hubfleet-kube-standin`: a test double that serves pods, PVCs and
//! events over HTTP and simulates scheduling, pulls, running and deletion; not a cluster). The
//! hub finds it through `KUBECONFIG`, as kube-rs does.
//!
//! Needs HUBFLEET_SHARED_DIR (z2jh's chart defaults, for realistic pods). Pods' server
//! containers run inside the stand-in (an HTTP server on the pod's loopback IP, port 8888),
//! except in `a_real_singleuser_server_runs_in_a_pod`, which runs `jupyterhub-singleuser` from
//! HUBFLEET_PYTHON_ENV.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{python_env, Browser, TestHub, TokenClient};
use hubfleet_kube_standin::{Containers, KubeStandin, StandinOptions};
use reqwest::Method;
use serde_json::Value;

const TOKEN: &str = "kube-spawner-test-token-0123456789abcdef";
const NS: &str = "hubs";

fn chart_values() -> PathBuf {
    let shared = std::env::var_os("HUBFLEET_SHARED_DIR")
        .map(PathBuf::from)
        .expect("HUBFLEET_SHARED_DIR: the shared material with fixtures/zero-to-jupyterhub");
    shared.join("fixtures/zero-to-jupyterhub/jupyterhub/values.yaml")
}

/// A hub with the kubernetes spawner on the stand-in, an admin service token and dummy login;
/// `singleuser` is the YAML of that section (indented two spaces).
fn kube_hub(standin: &KubeStandin, singleuser: &str) -> TestHub {
    kube_hub_with(standin, "", singleuser)
}

/// As [`kube_hub`], with more of `hub:` (`hub_extra`: YAML lines indented two spaces).
fn kube_hub_with(standin: &KubeStandin, hub_extra: &str, singleuser: &str) -> TestHub {
    let dir = tempfile::tempdir().unwrap().keep();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, standin.kubeconfig("default")).unwrap();
    let yaml = format!(
        "hub:\n{hub_extra}  services:\n    ops:\n      admin: true\n      apiToken: {TOKEN}\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n    Authenticator:\n      admin_users: [alice]\nsingleuser:\n{singleuser}\n"
    );
    let extra = format!(
        "  spawner: kubernetes\n  kubernetes:\n    namespace: {NS}\n    chart_values: {}\n",
        chart_values().display()
    );
    let kubeconfig = kubeconfig.display().to_string();
    tokio::task::block_in_place(|| {
        TestHub::start_with_env(
            &yaml,
            &extra,
            &python_env(),
            &[("KUBECONFIG", kubeconfig.as_str())],
        )
    })
}

fn relaunch(hub: &mut TestHub) {
    tokio::task::block_in_place(|| hub.launch());
}

async fn start(client: &TokenClient, user: &str, options: Value) {
    let (status, body) = client
        .call(Method::POST, &format!("/hub/api/users/{user}"), None)
        .await;
    assert!(status == 201 || status == 409, "{status} {body}");
    // The API answers when the server is ready (or after 10 s): follow the start meanwhile.
    let starter = TokenClient {
        client: client.client.clone(),
        base: client.base.clone(),
        token: client.token.clone(),
    };
    let path = format!("/hub/api/users/{user}/server");
    tokio::spawn(async move {
        let (status, body) = starter.call(Method::POST, &path, Some(options)).await;
        assert!(
            status == 201 || status == 202 || status == 500,
            "{status} {body}"
        );
    });
    until(client, user, Duration::from_secs(10), |model| {
        model["servers"][""]["pending"] == "spawn" || ready(model)
    })
    .await;
}

/// The progress stream of `user`'s start, to its end.
async fn progress(client: &TokenClient, user: &str) -> Vec<Value> {
    let response = client
        .request(
            Method::GET,
            &format!("/hub/api/users/{user}/server/progress"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(60), response.text())
        .await
        .expect("the progress stream ends")
        .unwrap();
    text.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

async fn model(client: &TokenClient, user: &str) -> Value {
    let (status, model) = client
        .call(Method::GET, &format!("/hub/api/users/{user}"), None)
        .await;
    assert_eq!(status, 200, "{model}");
    model
}

/// Until `check` holds of `user`'s model, for at most `limit`.
async fn until(
    client: &TokenClient,
    user: &str,
    limit: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let model = model(client, user).await;
        if check(&model) {
            return model;
        }
        assert!(Instant::now() < deadline, "not in {limit:?}: {model}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ready(model: &Value) -> bool {
    model["servers"][""]["ready"] == true
}

fn stopped(model: &Value) -> bool {
    model["servers"].as_object().is_some_and(|s| s.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_is_a_pod_with_progress_and_a_kept_claim() {
    // Steps slow enough for the progress stream to be opened while the pod starts; events
    // that reach the hub after the pod is seen running still make it to the stream.
    let standin = KubeStandin::start(StandinOptions {
        step: Duration::from_millis(400),
        event_watch_lag: Duration::from_millis(250),
        ..StandinOptions::default()
    })
    .await;
    let hub = kube_hub(&standin, "  startTimeout: 60");
    let client = TokenClient::new(&hub, TOKEN);

    start(&client, "alice", serde_json::json!({})).await;
    let events = progress(&client, "alice").await;
    let messages: Vec<&str> = events
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    let text = messages.join("\n");
    let pod = standin.pod(NS, "jupyter-alice").expect("the pod");
    let image = pod["spec"]["containers"][0]["image"].as_str().unwrap();
    for expected in [
        "Creating pod jupyter-alice".to_string(),
        "Pod scheduled: Successfully assigned hubs/jupyter-alice to standin-node".to_string(),
        format!("Pulling image \"{image}\""),
        format!("Successfully pulled image \"{image}\""),
        "Started container notebook".to_string(),
    ] {
        assert!(text.contains(&expected), "{expected:?} not in:\n{text}");
    }
    let last = events.last().unwrap();
    assert_eq!(last["ready"], true, "{text}");
    let percents: Vec<u64> = events
        .iter()
        .filter_map(|e| e["progress"].as_u64())
        .collect();
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");

    // The pod is KubeSpawner's, with the hub's token and URLs, on the z2jh chart's defaults.
    assert_eq!(pod["metadata"]["labels"]["component"], "singleuser-server");
    let env: BTreeMap<String, String> = pod["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| {
            Some((
                v["name"].as_str()?.to_string(),
                v["value"].as_str()?.to_string(),
            ))
        })
        .collect();
    assert_eq!(env["JUPYTERHUB_SERVICE_PREFIX"], "/user/alice/");
    assert_eq!(env["JUPYTERHUB_API_URL"], hub.direct_url("/hub/api"));
    assert!(env["JUPYTERHUB_API_TOKEN"].len() >= 32);
    assert!(
        !env.contains_key("VIRTUAL_ENV"),
        "the hub's Python leaked into the pod"
    );
    assert!(standin.pvc(NS, "claim-alice").is_some());

    // The proxy sends the user's requests to the pod's IP.
    let model = model(&client, "alice").await;
    assert!(ready(&model), "{model}");
    let ip = pod["status"]["podIP"].as_str().unwrap().to_string();
    let answer = reqwest::get(hub.direct_url("/user/alice/api"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let (status, routes) = client.call(Method::GET, "/hub/api/proxy", None).await;
    assert_eq!(status, 200, "{routes}");
    assert_eq!(
        routes["/user/alice/"]["target"],
        format!("http://{ip}:8888")
    );

    // Stop: the pod is deleted with a grace period (deletionTimestamp, then gone); the claim
    // stays for the next start.
    let (status, body) = client
        .call(Method::DELETE, "/hub/api/users/alice/server", None)
        .await;
    assert!(status == 204 || status == 202, "{status} {body}");
    until(&client, "alice", Duration::from_secs(20), stopped).await;
    assert!(standin.pod(NS, "jupyter-alice").is_none());
    assert!(
        standin.pvc(NS, "claim-alice").is_some(),
        "the home claim is kept"
    );
    let killing = standin.events_of(NS, "jupyter-alice");
    assert!(
        killing.iter().any(|e| e["reason"] == "Killing"),
        "the pod was stopped gracefully: {killing:?}"
    );
    assert_eq!(standin.count("delete pods"), 1, "{:?}", standin.counts());
    assert_eq!(standin.count("delete persistentvolumeclaims"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_limits_hold_for_pods() {
    // Pods that take a few seconds to start, so that one is pending while others are asked for.
    let standin = KubeStandin::start(StandinOptions {
        step: Duration::from_millis(800),
        ..StandinOptions::default()
    })
    .await;
    // z2jh's spellings, over the chart's defaults (64 and none).
    let hub = kube_hub_with(
        &standin,
        "  concurrentSpawnLimit: 1\n  activeServerLimit: 2\n",
        "  startTimeout: 60",
    );
    let client = TokenClient::new(&hub, TOKEN);
    for user in ["alice", "bob", "carol"] {
        let (status, body) = client
            .call(Method::POST, &format!("/hub/api/users/{user}"), None)
            .await;
        assert!(status == 201 || status == 409, "{status} {body}");
    }

    // While alice's pod starts, the only place is taken: 429 with Retry-After, and no pod.
    start(&client, "alice", serde_json::json!({})).await;
    let throttled = client
        .request(Method::POST, "/hub/api/users/bob/server")
        .send()
        .await
        .unwrap();
    assert_eq!(throttled.status(), 429, "{}", hub.log());
    let retry: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((30..=60).contains(&retry), "Retry-After: {retry}");
    let body: Value = throttled.json().await.unwrap();
    assert_eq!(body["status"], 429);
    assert!(standin.pod(NS, "jupyter-bob").is_none());
    assert!(model(&client, "bob").await["pending"].is_null());

    // Once it runs, there is room for one more server, not two.
    until(&client, "alice", Duration::from_secs(30), ready).await;
    start(&client, "bob", serde_json::json!({})).await;
    until(&client, "bob", Duration::from_secs(30), ready).await;
    let over = client
        .request(Method::POST, "/hub/api/users/carol/server")
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), 429);
    assert!(over.headers().get("retry-after").is_none());
    assert!(standin.pod(NS, "jupyter-carol").is_none());
    assert_eq!(standin.count("create pods"), 2, "{:?}", standin.counts());

    // Stopping one makes room again; the refused starts left nothing behind.
    let (status, body) = client
        .call(Method::DELETE, "/hub/api/users/alice/server", None)
        .await;
    assert!(status == 204 || status == 202, "{status} {body}");
    until(&client, "alice", Duration::from_secs(20), stopped).await;
    start(&client, "carol", serde_json::json!({})).await;
    until(&client, "carol", Duration::from_secs(30), ready).await;
    assert!(standin.pod(NS, "jupyter-carol").is_some());

    // The refusals are upstream's `failure`s with their reasons.
    let metrics = client
        .request(Method::GET, "/hub/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in ["throttled", "too-many-users"] {
        let label = format!("reason=\"{reason}\"");
        let counted = metrics.lines().any(|line| {
            line.starts_with("jupyterhub_server_spawn_duration_seconds_count{")
                && line.contains(&label)
                && line.contains("status=\"failure\"")
                && line.ends_with(" 1")
        });
        assert!(counted, "no failure {label} counted once in:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_starts_and_ended_servers_say_why() {
    let standin = KubeStandin::start(StandinOptions::default()).await;
    standin.missing_image("example.org/nope:1");
    let hub = kube_hub(
        &standin,
        "  startTimeout: 3\n  memory:\n    limit: 1G\n  profileList:\n    - display_name: Default\n      slug: default\n      default: true\n    - display_name: Broken image\n      slug: broken-image\n      kubespawner_override:\n        image: example.org/nope:1\n    - display_name: Too big\n      slug: too-big\n      kubespawner_override:\n        mem_guarantee: 100T\n        mem_limit: 100T",
    );
    let client = TokenClient::new(&hub, TOKEN);

    // An image that cannot be pulled: the start fails at the timeout with the pull's reason,
    // in the progress stream, the admin's view of the server and the spawn page.
    start(
        &client,
        "bob",
        serde_json::json!({"profile": "broken-image"}),
    )
    .await;
    let events = progress(&client, "bob").await;
    let last = events.last().unwrap();
    let expected = "the pod jupyter-bob did not start within 3 s (singleuser.startTimeout): \
                    ImagePullBackOff: Back-off pulling image \"example.org/nope:1\": ErrImagePull: \
                    example.org/nope:1: not found";
    assert_eq!(last["failed"], true, "{events:?}");
    assert_eq!(last["message"], format!("Spawn failed: {expected}"));
    assert!(
        events.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Failed: Failed to pull image"))),
        "the pull's failure was shown while it happened: {events:?}"
    );
    let bob = until(&client, "bob", Duration::from_secs(10), stopped).await;
    assert!(bob["pending"].is_null(), "{bob}");
    assert!(
        standin.pod(NS, "jupyter-bob").is_none(),
        "a failed start leaves no pod"
    );
    let (_, with_state) = client
        .call(
            Method::GET,
            "/hub/api/users/bob?include_stopped_servers=1",
            None,
        )
        .await;
    let state = with_state["servers"][""]["state"]["failed_reason"].clone();
    assert_eq!(state, expected, "{with_state}");
    let browser = Browser::new(&hub);
    browser.login("bob", "any").await;
    let page = browser
        .client
        .get(hub.url("/hub/spawn-pending/bob"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("ImagePullBackOff: Back-off pulling image"),
        "{page}"
    );

    // A pod no node can take.
    start(&client, "carol", serde_json::json!({"profile": "too-big"})).await;
    let events = progress(&client, "carol").await;
    let last = events.last().unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        last.ends_with(
            "(singleuser.startTimeout): Unschedulable: 0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        ),
        "{last}"
    );

    // A running server killed at its memory limit: the hub's poll (every 10 s, from the
    // watch's store) finds it ended, and says why.
    start(&client, "dave", serde_json::json!({})).await;
    until(&client, "dave", Duration::from_secs(20), ready).await;
    assert!(standin.oom_kill(NS, "jupyter-dave"));
    until(&client, "dave", Duration::from_secs(25), stopped).await;
    let (_, dave) = client
        .call(
            Method::GET,
            "/hub/api/users/dave?include_stopped_servers=1",
            None,
        )
        .await;
    assert_eq!(
        dave["servers"][""]["state"]["failed_reason"],
        "killed: memory limit 1G reached (OOMKilled)",
        "{dave}"
    );
    assert!(
        standin.pod(NS, "jupyter-dave").is_none(),
        "the ended pod is deleted"
    );
}

/// How many servers the scale test runs (`HUBFLEET_KUBE_SCALE_SERVERS`, default 200).
fn scale() -> usize {
    std::env::var("HUBFLEET_KUBE_SCALE_SERVERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200)
}

/// API calls other than the open watches: list, get, create, delete, log.
fn calls(counts: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    counts
        .iter()
        .filter(|(k, _)| !k.starts_with("watch "))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_servers_cost_no_calls_at_rest_and_survive_a_hub_restart() {
    let standin = KubeStandin::start(StandinOptions {
        step: Duration::from_millis(20),
        bookmark_every: Duration::from_secs(5),
        ..StandinOptions::default()
    })
    .await;
    let mut hub = kube_hub(&standin, "  startTimeout: 120");
    let client = TokenClient::new(&hub, TOKEN);
    let n = scale();
    let users: Vec<String> = (0..n).map(|i| format!("user{i:04}")).collect();
    let (status, body) = client
        .call(
            Method::POST,
            "/hub/api/users",
            Some(serde_json::json!({ "usernames": users })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let began = Instant::now();
    for chunk in users.chunks(25) {
        let starts = chunk.iter().map(|user| {
            let client = &client;
            async move {
                let (status, body) = client
                    .call(Method::POST, &format!("/hub/api/users/{user}/server"), None)
                    .await;
                assert!(status == 201 || status == 202, "{user}: {status} {body}");
            }
        });
        futures_util::future::join_all(starts).await;
    }
    for user in &users {
        until(&client, user, Duration::from_secs(120), ready).await;
    }
    eprintln!(
        "{n} servers ready in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    assert_eq!(standin.count("create pods"), n as u64);

    // At rest: the hub polls every server every 10 s, reconciles routes and imports activity,
    // all from the watch's store. A quiet minute costs no API call: only the two watches stay
    // open (bookmarks keep them fresh).
    let before = standin.counts();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let after = standin.counts();
    eprintln!("requests before the quiet minute: {before:?}\nafter it: {after:?}");
    assert_eq!(calls(&before), calls(&after), "API calls at rest");
    assert_eq!(
        before.get("watch pods"),
        after.get("watch pods"),
        "no watch reopened"
    );
    assert_eq!(before.get("watch events"), after.get("watch events"));
    assert_eq!(standin.open_watches(), 2);

    // A hub killed outright and started again finds every pod through one list and re-adopts
    // them: nothing is created again, and the servers keep their routes.
    hub.kill();
    let lists = standin.count("list pods");
    relaunch(&mut hub);
    for user in &users {
        until(&client, user, Duration::from_secs(30), ready).await;
    }
    assert_eq!(standin.count("create pods"), n as u64, "no pod made again");
    assert_eq!(standin.count("delete pods"), 0);
    assert_eq!(
        standin.count("list pods"),
        lists + 1,
        "{:?}",
        standin.counts()
    );
    assert!(hub.log().contains("re-adopted a running server"));
    let answer = reqwest::get(hub.direct_url(&format!("/user/{}/api", users[n - 1])))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    // The API server goes away; meanwhile a pod is deleted and its history compacted. The
    // watch resumes from a version that is gone (410), lists again and the hub sees the pod
    // gone at its next poll.
    let lists = standin.count("list pods");
    standin.pause_watches();
    assert!(standin.delete_pod_now(NS, "jupyter-user0000"));
    standin.compact();
    standin.resume_watches();
    until(&client, "user0000", Duration::from_secs(25), stopped).await;
    assert!(standin.count("gone") >= 1, "{:?}", standin.counts());
    assert_eq!(
        standin.count("list pods"),
        lists + 1,
        "{:?}",
        standin.counts()
    );
    until(&client, "user0001", Duration::from_secs(1), ready).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_singleuser_server_runs_in_a_pod() {
    let homes = tempfile::tempdir().unwrap();
    let venv = python_env();
    let mut extra_args = Vec::new();
    if nix::unistd::geteuid().is_root() {
        extra_args.push("--allow-root".to_string());
    }
    let standin = KubeStandin::start(StandinOptions {
        containers: Containers::Processes {
            path: format!("{}/bin:{}", venv.display(), hubfleet_spawn::SYSTEM_PATH),
            homes: homes.path().to_path_buf(),
            extra_args,
        },
        ..StandinOptions::default()
    })
    .await;
    let hub = kube_hub(&standin, "  startTimeout: 60");
    let browser = Browser::new(&hub);
    browser.login("alice", "any").await;
    let model = browser.start_server("alice", Duration::from_secs(60)).await;
    assert_eq!(model["server"], "/user/alice/", "{model}\n{}", hub.log());

    // Through the proxy to the pod's jupyter-server, logged in by OAuth with the hub.
    let lab = browser
        .client
        .get(hub.url("/user/alice/lab"))
        .send()
        .await
        .unwrap();
    assert_eq!(lab.status(), 200, "JupyterLab page: {}", lab.url());
    assert!(lab.text().await.unwrap().contains("jupyter-config-data"));
    let response = browser
        .client
        .get(hub.url("/user/alice/api/status"))
        .send()
        .await
        .unwrap();
    let pod_log = reqwest::get(format!(
        "{}/api/v1/namespaces/{NS}/pods/jupyter-alice/log",
        standin.url()
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert_eq!(response.status(), 200, "the pod's log:\n{pod_log}");
    let status: Value = response.json().await.unwrap();
    assert!(status["started"].is_string(), "{status}");

    // The admin's log viewer reads the pod's log (`Api::logs`).
    let page = browser
        .client
        .get(hub.url("/hub/admin/log/alice"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Jupyter Server"), "{page}");
    assert!(page.contains("pod hubs/jupyter-alice"), "{page}");
    let client = TokenClient::new(&hub, TOKEN);
    let (status, _) = client
        .call(Method::DELETE, "/hub/api/users/alice/server", None)
        .await;
    assert!(status == 204 || status == 202);
    until(&client, "alice", Duration::from_secs(30), stopped).await;
    assert!(standin.pod(NS, "jupyter-alice").is_none());
}

/// The server container of `user`'s pod in the stand-in: its image, its resources, its env
/// (literal values).
fn server_container(
    standin: &KubeStandin,
    user: &str,
) -> (String, Value, BTreeMap<String, String>) {
    let pod = standin
        .pod(NS, &format!("jupyter-{user}"))
        .unwrap_or_else(|| panic!("no pod for {user}"));
    let container = pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "notebook")
        .cloned()
        .expect("the notebook container");
    let env = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            Some((
                v["name"].as_str()?.to_string(),
                v["value"].as_str()?.to_string(),
            ))
        })
        .collect();
    (
        container["image"].as_str().unwrap_or_default().to_string(),
        container["resources"].clone(),
        env,
    )
}

/// A quantity as the pod has it (a string, or a number as KubeSpawner may send it).
fn quantity(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn stop(client: &TokenClient, user: &str) {
    let (status, body) = client
        .call(
            Method::DELETE,
            &format!("/hub/api/users/{user}/server"),
            None,
        )
        .await;
    assert!(status == 204 || status == 202, "{status} {body}");
    until(client, user, Duration::from_secs(20), stopped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_made_and_edited_through_the_api_shape_the_next_pod() {
    let standin = KubeStandin::start(StandinOptions::default()).await;
    let hub = kube_hub(
        &standin,
        "  startTimeout: 60\n  image: {name: quay.io/example/base, tag: \"1.0\"}\n  profileList:\n    - {display_name: Standard, slug: standard, default: true}",
    );
    let client = TokenClient::new(&hub, TOKEN);

    // A profile the values file does not have, with an option, made through the REST API.
    let profile = |image: &str, flavour: &str| {
        serde_json::json!({
            "display_name": "Bigger",
            "slug": "bigger",
            "kubespawner_override": {
                "image": image,
                "mem_limit": "2G",
                "cpu_limit": 1.5,
                "environment": {"FLAVOUR": flavour},
            },
            "profile_options": {
                "size": {
                    "display_name": "Size",
                    "choices": {
                        "small": {"display_name": "Small", "kubespawner_override": {"mem_guarantee": "512M"}},
                        "large": {"display_name": "Large", "kubespawner_override": {"mem_guarantee": "1G", "cpu_guarantee": 1}},
                    },
                },
            },
        })
    };
    let (status, body) = client
        .call(
            Method::POST,
            "/hub/api/environments/profiles",
            Some(serde_json::json!({"data": profile("quay.io/example/bigger:2.0", "first")})),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let options = serde_json::json!({"profile": "bigger", "size": "large"});
    start(&client, "alice", options.clone()).await;
    let model = until(&client, "alice", Duration::from_secs(30), |m| {
        ready(m) || stopped(m)
    })
    .await;
    assert!(ready(&model), "{model}\n{}", hub.log());
    let (image, resources, env) = server_container(&standin, "alice");
    assert_eq!(image, "quay.io/example/bigger:2.0");
    assert_eq!(
        quantity(&resources["limits"]["memory"]),
        (2u64 << 30).to_string(),
        "{resources}"
    );
    assert_eq!(quantity(&resources["limits"]["cpu"]), "1.5", "{resources}");
    assert_eq!(
        quantity(&resources["requests"]["memory"]),
        (1u64 << 30).to_string(),
        "the choice's override: {resources}"
    );
    assert_eq!(
        quantity(&resources["requests"]["cpu"]),
        "1.0",
        "{resources}"
    );
    assert_eq!(env["FLAVOUR"], "first");
    assert_eq!(env["JUPYTER_IMAGE"], "quay.io/example/bigger:2.0");
    assert_eq!(env["MEM_LIMIT"], (2u64 << 30).to_string());
    stop(&client, "alice").await;

    // Edited: the next pod follows, with no restart.
    let (status, body) = client
        .call(
            Method::PUT,
            "/hub/api/environments/profiles/bigger",
            Some(serde_json::json!({"data": profile("quay.io/example/bigger:3.0", "second")})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    start(&client, "alice", options).await;
    until(&client, "alice", Duration::from_secs(30), ready).await;
    let (image, _, env) = server_container(&standin, "alice");
    assert_eq!(image, "quay.io/example/bigger:3.0");
    assert_eq!(env["FLAVOUR"], "second");
    stop(&client, "alice").await;

    // Hidden: offered to no one, so a start asking for it is refused, and no pod is made.
    let (status, body) = client
        .call(
            Method::POST,
            "/hub/api/environments/profiles/bigger/hide",
            Some(serde_json::json!({"hidden": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let creates = standin.count("create pods");
    let (status, body) = client
        .call(
            Method::POST,
            "/hub/api/users/alice/server",
            Some(serde_json::json!({"profile": "bigger"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(standin.count("create pods"), creates);

    // The config's profile still gives the values' image.
    start(&client, "alice", serde_json::json!({"profile": "standard"})).await;
    until(&client, "alice", Duration::from_secs(30), ready).await;
    let (image, _, env) = server_container(&standin, "alice");
    assert_eq!(image, "quay.io/example/base:1.0");
    assert!(!env.contains_key("FLAVOUR"), "{env:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloads_image_and_limits_reach_the_next_pod() {
    let standin = KubeStandin::start(StandinOptions::default()).await;
    let singleuser = |tag: &str, memory: &str, variable: &str| {
        format!(
            "  startTimeout: 60\n  image: {{name: quay.io/example/base, tag: \"{tag}\"}}\n  memory: {{limit: {memory}}}\n  extraEnv: {{FROM_VALUES: {variable}}}"
        )
    };
    let hub = kube_hub(&standin, &singleuser("1.0", "1G", "before"));
    let client = TokenClient::new(&hub, TOKEN);
    start(&client, "alice", serde_json::json!({})).await;
    until(&client, "alice", Duration::from_secs(30), ready).await;
    let (image, resources, env) = server_container(&standin, "alice");
    assert_eq!(image, "quay.io/example/base:1.0");
    assert_eq!(
        quantity(&resources["limits"]["memory"]),
        (1u64 << 30).to_string()
    );
    assert_eq!(env["FROM_VALUES"], "before");

    // The file changes; a reload applies it live.
    let text = std::fs::read_to_string(&hub.config).unwrap();
    let changed = text.replace(
        &singleuser("1.0", "1G", "before"),
        &singleuser("1.1", "3G", "after"),
    );
    assert_ne!(text, changed);
    std::fs::write(&hub.config, changed).unwrap();
    let (status, summary) = client
        .call(Method::POST, "/hub/api/config/reload", None)
        .await;
    assert_eq!(status, 200, "{summary}");
    let applied: Vec<&str> = summary["applied"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for key in ["singleuser.image.tag", "singleuser.memory.limit"] {
        assert!(applied.contains(&key), "{key} not applied: {summary}");
    }
    assert!(
        summary["restart_needed"].as_array().unwrap().is_empty(),
        "{summary}"
    );

    // The running pod is left as it is; the next one gets the new values.
    let (image, _, _) = server_container(&standin, "alice");
    assert_eq!(image, "quay.io/example/base:1.0");
    stop(&client, "alice").await;
    start(&client, "alice", serde_json::json!({})).await;
    until(&client, "alice", Duration::from_secs(30), ready).await;
    let (image, resources, env) = server_container(&standin, "alice");
    assert_eq!(image, "quay.io/example/base:1.1");
    assert_eq!(
        quantity(&resources["limits"]["memory"]),
        (3u64 << 30).to_string()
    );
    assert_eq!(env["FROM_VALUES"], "after");
    assert_eq!(env["JUPYTER_IMAGE"], "quay.io/example/base:1.1");
}
