//! The seam between the hub and a spawner, with a stand-in spawner (as a Kubernetes spawner
//! would be): what the hub hands it at a start, that a start it refuses is a 400 with nothing
//! recorded, that the progress it reports reaches the progress stream (SSE) and the server's
//! row in order, between the hub's own steps, and that a restarted hub hands it the running
//! servers back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use hubfleet_auth::{AccessPolicy, DummyAuthenticator};
use hubfleet_hub::{Hub, Settings};
use hubfleet_spawn::{
    LaunchSpec, PollStatus, ProgressSender, ServerLog, ServerRef, SpawnError, SpawnProgress,
    SpawnState, Spawner, Started,
};
use hubfleet_store::{NewToken, Phase, Store};
use serde_json::{json, Value};
use tokio::sync::Notify;

/// A spawner that runs nothing: its "server" is a tiny HTTP server of the test's, and its start
/// reports progress as a pod's would, waiting where the test tells it to.
struct StandIn {
    /// Where the "server" answers.
    target: String,
    /// The specs of the starts asked for.
    specs: Mutex<Vec<LaunchSpec>>,
    /// Servers handed back after a restart.
    adopted: Mutex<Vec<(ServerRef, SpawnState)>>,
    /// Notified when a start begins.
    entered: Notify,
    /// The start reports its progress once this is notified …
    go: Notify,
    /// … and returns once this is.
    finish: Notify,
}

impl StandIn {
    fn new(target: String) -> Arc<StandIn> {
        Arc::new(StandIn {
            target,
            specs: Mutex::default(),
            adopted: Mutex::default(),
            entered: Notify::new(),
            go: Notify::new(),
            finish: Notify::new(),
        })
    }
}

/// What the stand-in reports during a start, in order.
const SPAWNER_EVENTS: [&str; 4] = [
    "Pod scheduled on node-1",
    "Pulling image pangeo/pangeo-notebook:2024.01 (40 %)",
    "Pulling image pangeo/pangeo-notebook:2024.01 (100 %)",
    "Container started",
];

#[async_trait]
impl Spawner for StandIn {
    async fn check(&self, spec: &LaunchSpec) -> Result<(), SpawnError> {
        if spec.resources.gpus > 1 {
            return Err(SpawnError::Refused(format!(
                "no node has {} GPUs",
                spec.resources.gpus
            )));
        }
        Ok(())
    }

    async fn start(
        &self,
        spec: &LaunchSpec,
        progress: &ProgressSender,
    ) -> Result<Started, SpawnError> {
        self.specs.lock().unwrap().push(spec.clone());
        self.entered.notify_one();
        self.go.notified().await;
        for (i, message) in SPAWNER_EVENTS.iter().enumerate() {
            let event = SpawnProgress::new(*message);
            progress.send(match i {
                1 => event.with_percent(40),
                2 => event.with_percent(100),
                _ => event,
            });
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.finish.notified().await;
        // What comes after `start` returned belongs to no step: it is dropped.
        let late = progress.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            late.send(SpawnProgress::new("too late"));
        });
        Ok(Started {
            target: self.target.clone(),
            state: json!({ "pod": "jupyter-alice" }),
        })
    }

    async fn poll(&self, _state: &SpawnState) -> Result<PollStatus, SpawnError> {
        Ok(PollStatus::Running)
    }

    async fn stop(&self, _state: &SpawnState, _grace: Duration) -> Result<(), SpawnError> {
        Ok(())
    }

    async fn adopt(&self, server: &ServerRef, state: &SpawnState) {
        self.adopted
            .lock()
            .unwrap()
            .push((server.clone(), state.clone()));
    }

    async fn log_tail(
        &self,
        server: &ServerRef,
        _state: Option<&SpawnState>,
        _max_bytes: u64,
    ) -> Option<ServerLog> {
        Some(ServerLog {
            text: "pod log\n".into(),
            source: format!("pod jupyter-{}", server.user),
        })
    }
}

/// A "server" answering every request with 200.
async fn serve_anything() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

const PROFILES: &str = r#"
singleuser:
  image: {name: jupyter/base-notebook, tag: latest}
  profileList:
    - display_name: Small
      slug: small
      default: true
    - display_name: One GPU
      slug: gpu
      kubespawner_override:
        image: pangeo/pangeo-notebook:2024.01
        mem_limit: 4G
        cpu_guarantee: 0.5
        extra_resource_limits: {nvidia.com/gpu: "1", example.com/fpga: 2}
    - display_name: Two GPUs
      slug: big
      kubespawner_override:
        extra_resource_limits: {nvidia.com/gpu: "2"}
"#;

fn settings(data_dir: &std::path::Path) -> Settings {
    let mut settings = Settings::new("127.0.0.1:0".parse().unwrap(), data_dir.to_path_buf());
    let config = hubfleet_config::HubConfig::from_yaml_str(PROFILES, "profiles.yaml").unwrap();
    settings.spawn_options.image = config.singleuser.image.spec.clone();
    settings.start_timeout = Duration::from_secs(30);
    settings
}

async fn start_hub(dir: &std::path::Path, store: &Store, spawner: Arc<StandIn>) -> Hub {
    let auth = Arc::new(DummyAuthenticator::new(None, AccessPolicy::default()));
    // Starts read the profiles from the store, seeded from the config as `serve` does.
    let config = hubfleet_config::HubConfig::from_yaml_str(PROFILES, "profiles.yaml").unwrap();
    hubfleet_hub::environments::sync_environments_from_config(store, &config)
        .await
        .unwrap();
    Hub::start(settings(dir), store.clone(), auth, spawner)
        .await
        .unwrap()
}

/// An API token of `user` (a new user, in group `scientists`).
async fn token_of(store: &Store, user: &str) -> String {
    let created = store.create_user(user, false).await.unwrap();
    store
        .create_group("scientists", &[user.to_string()])
        .await
        .unwrap();
    let token = hubfleet_store::new_token();
    store
        .insert_token(
            &token,
            &NewToken {
                user_id: Some(created.id),
                service_id: None,
                server_id: None,
                client_id: "jupyterhub",
                session_id: None,
                scopes: &["inherit".to_string()],
                note: "test",
                expires_at: None,
            },
        )
        .await
        .unwrap();
    token
}

/// The `data:` payloads of an SSE body so far.
fn sse_events(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|data| serde_json::from_str(data.trim()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spawners_progress_reaches_the_stream_in_order_between_the_hubs_steps() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("hub.sqlite").display()
    );
    let store = Store::connect(&url).await.unwrap();
    let spawner = StandIn::new(serve_anything().await);
    let hub = start_hub(dir.path(), &store, spawner.clone()).await;
    let base = format!("http://{}", hub.addr);
    let token = token_of(&store, "alice").await;
    let client = reqwest::Client::new();
    let api = |path: &str| format!("{base}/hub/api/users/alice/{path}");

    // The spawner refuses a start it cannot serve: a 400 before anything is recorded.
    let response = client
        .post(api("server"))
        .header("Authorization", format!("token {token}"))
        .json(&json!({"profile": "big"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], "no node has 2 GPUs", "{body}");
    assert!(spawner.specs.lock().unwrap().is_empty());
    let user = store.user_by_name("alice").await.unwrap().unwrap();
    let row = store.server(user.id, "").await.unwrap().unwrap();
    assert_eq!(row.phase, Phase::Stopped);

    let start = tokio::spawn({
        let (client, url, token) = (client.clone(), api("server"), token.clone());
        async move {
            client
                .post(url)
                .header("Authorization", format!("token {token}"))
                .json(&json!({"profile": "gpu"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    spawner.entered.notified().await;

    // What the hub hands the spawner: who, which profile, what it resolved to.
    let spec = spawner.specs.lock().unwrap()[0].clone();
    assert_eq!(spec.owner.name, "alice");
    assert_eq!(spec.owner.id, user.id);
    assert!(!spec.owner.admin);
    assert_eq!(spec.owner.groups, ["scientists"]);
    assert_eq!(spec.server_name, "");
    assert_eq!(spec.profile.user_options, json!({"profile": "gpu"}));
    assert_eq!(spec.profile.slug(), Some("gpu"));
    assert_eq!(
        spec.image.as_deref(),
        Some("pangeo/pangeo-notebook:2024.01")
    );
    assert_eq!(spec.resources.gpus, 1);
    assert_eq!(spec.resources.limits.mem_limit, Some(4 << 30));
    assert_eq!(spec.resources.limits.cpu_guarantee, Some(500));
    assert_eq!(spec.resources.extra_limits["example.com/fpga"], "2");
    assert_eq!(spec.storage.home, "alice");
    assert_eq!(spec.service_prefix, "/user/alice/");
    assert_eq!(spec.env["JUPYTERHUB_USER"], "alice");
    assert_eq!(spec.env["JUPYTER_IMAGE"], "pangeo/pangeo-notebook:2024.01");
    assert!(spec.env.contains_key("JUPYTERHUB_API_TOKEN"));
    assert_eq!(spec.labels["hub.jupyter.org/username"], "alice");
    assert_eq!(spec.labels["hub.jupyter.org/servername"], "");
    assert_eq!(spec.annotations["hub.jupyter.org/username"], "alice");
    assert!(!spec.annotations.contains_key("hub.jupyter.org/servername"));

    // Follow the start while the spawner works.
    let response = client
        .get(api("server/progress"))
        .header("Authorization", format!("token {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    spawner.go.notify_one();
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while !body.contains("Container started") {
            let chunk = stream.next().await.expect("the stream goes on").unwrap();
            body.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no \"Container started\" within 20 s: {body}"));
    // The row says what the spawner said last (other replicas follow the start from it); it
    // is written right after the event is sent.
    let mut row = store.server(user.id, "").await.unwrap().unwrap();
    for _ in 0..100 {
        if row.phase_detail.as_deref() == Some("Container started") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        row = store.server(user.id, "").await.unwrap().unwrap();
    }
    assert_eq!(row.phase, Phase::Starting);
    assert_eq!(row.phase_detail.as_deref(), Some("Container started"));
    spawner.finish.notify_one();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(chunk) = stream.next().await {
            body.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the stream did not end within 20 s: {body}"));
    assert_eq!(start.await.unwrap(), 201);

    let events = sse_events(&body);
    let messages: Vec<&str> = events
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    let mut expected = vec!["Server requested", "Starting the server process"];
    expected.extend(SPAWNER_EVENTS);
    assert_eq!(messages[..expected.len()], expected[..], "{body}");
    assert!(
        messages[expected.len()].starts_with("Server process started; waiting for it to answer"),
        "{body}"
    );
    assert_eq!(
        messages[expected.len() + 1],
        "Server is up; adding its route"
    );
    assert_eq!(events.last().unwrap()["ready"], true, "{body}");
    assert_eq!(messages.len(), expected.len() + 3, "{body}");
    let progress: Vec<u64> = events
        .iter()
        .map(|e| e["progress"].as_u64().unwrap())
        .collect();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    // The spawner's events fall between the hub's steps around the start (10 and 40).
    assert!(
        progress[2..6].iter().all(|p| (10..40).contains(p)),
        "{progress:?}"
    );
    assert!(
        progress[3] > progress[2] && progress[4] > progress[3],
        "{progress:?}"
    );

    // The spawner's log is the admin log viewer's.
    let row = store.server(user.id, "").await.unwrap().unwrap();
    assert_eq!(row.phase, Phase::Ready);
    let log = hub.state.lifecycle.log_tail(&user, "", 100).await.unwrap();
    assert_eq!(log.unwrap().source, "pod jupyter-alice");

    // A restarted hub hands the running server back to its spawner.
    hub.stop().await;
    let spawner = StandIn::new(spawner.target.clone());
    let hub = start_hub(dir.path(), &store, spawner.clone()).await;
    let adopted = spawner.adopted.lock().unwrap().clone();
    assert_eq!(adopted.len(), 1);
    assert_eq!(adopted[0].0, ServerRef::new("alice", ""));
    assert_eq!(adopted[0].1["pod"], "jupyter-alice");
    hub.stop().await;
}
