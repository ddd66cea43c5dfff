//! The spawner's real kube-rs code (client, watcher, reflectors) against the stand-in for the
//! Kubernetes API server (`hubfleet-kube-standin`, a test double, not a cluster).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use hubfleet_config::values::{self, Values};
use hubfleet_kube_spawner::{KubeOptions, KubernetesSpawner};
use hubfleet_kube_standin::{KubeStandin, StandinOptions};
use hubfleet_spawn::{
    LaunchSpec, Owner, PollStatus, ProgressSender, ServerRef, SpawnError, Spawner,
};

const NS: &str = "hubs";

/// z2jh's chart defaults (from the shared reference material) under `yaml`.
fn z2jh_values(yaml: &str) -> Values {
    let shared = std::env::var_os("HUBFLEET_SHARED_DIR")
        .map(PathBuf::from)
        .expect("HUBFLEET_SHARED_DIR: the shared material with fixtures/zero-to-jupyterhub");
    let chart = shared.join("fixtures/zero-to-jupyterhub/jupyterhub/values.yaml");
    let defaults = values::parse_yaml("chart", &std::fs::read_to_string(chart).unwrap()).unwrap();
    let user = match values::parse_yaml("test", yaml).unwrap() {
        serde_yaml_ng::Value::Null => serde_yaml_ng::Value::Mapping(Default::default()),
        user => user,
    };
    let mut merged = values::coalesce(user, &defaults);
    values::drop_top_level_nulls(&mut merged);
    Values::new(merged)
}

async fn client(standin: &KubeStandin) -> kube::Client {
    let config = kube::config::Kubeconfig::from_yaml(&standin.kubeconfig(NS)).unwrap();
    let config =
        kube::Config::from_custom_kubeconfig(config, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap();
    kube::Client::try_from(config).unwrap()
}

async fn spawner(standin: &KubeStandin, yaml: &str, timeout: Duration) -> KubernetesSpawner {
    let spawner = KubernetesSpawner::with_client(
        client(standin).await,
        NS,
        KubeOptions {
            namespace: None,
            values: z2jh_values(yaml),
            start_timeout: timeout,
        },
    );
    tokio::time::timeout(Duration::from_secs(10), spawner.synced())
        .await
        .expect("the watches list within 10 s");
    spawner
}

fn spec(user: &str) -> LaunchSpec {
    LaunchSpec {
        owner: Owner {
            name: user.into(),
            id: 7,
            admin: false,
            groups: vec![],
        },
        env: BTreeMap::from([
            ("JUPYTERHUB_API_TOKEN".into(), "secret".into()),
            ("PATH".into(), "/root/venv/bin".into()),
        ]),
        service_prefix: format!("/user/{user}/"),
        profile: hubfleet_spawn::ProfileChoice {
            user_options: serde_json::json!({}),
            ..Default::default()
        },
        ..LaunchSpec::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_reports_events_and_stop_keeps_the_claim() {
    let standin = KubeStandin::start(StandinOptions::default()).await;
    let spawner = spawner(&standin, "", Duration::from_secs(20)).await;
    let (progress, mut events) = ProgressSender::channel();
    let started = spawner.start(&spec("alice"), &progress).await.unwrap();
    drop(progress);
    let mut messages = Vec::new();
    while let Some(event) = events.recv().await {
        messages.push(event.message);
    }
    let text = messages.join("\n");
    let pod = standin.pod(NS, "jupyter-alice").unwrap();
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
    assert!(
        started.target.starts_with("http://127."),
        "{}",
        started.target
    );
    assert!(started.target.ends_with(":8888"), "{}", started.target);
    let answer = reqwest::get(format!("{}/user/alice/api", started.target))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    let env = pod["spec"]["containers"][0]["env"].to_string();
    assert!(env.contains("JUPYTERHUB_API_TOKEN"), "{env}");
    assert!(
        !env.contains("/root/venv/bin"),
        "the hub's PATH leaked: {env}"
    );
    assert!(standin.pvc(NS, "claim-alice").is_some());
    assert_eq!(
        spawner.poll(&started.state).await.unwrap(),
        PollStatus::Running
    );

    let log = spawner
        .log_tail(&ServerRef::new("alice", ""), None, 10_000)
        .await
        .unwrap();
    assert!(log.text.contains("GET /user/alice/api 200"), "{}", log.text);
    assert_eq!(log.source, "pod hubs/jupyter-alice");

    spawner
        .stop(&started.state, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(standin.pod(NS, "jupyter-alice").is_none());
    assert!(
        standin.pvc(NS, "claim-alice").is_some(),
        "the claim is kept"
    );
    assert_eq!(
        spawner.poll(&started.state).await.unwrap(),
        PollStatus::Exited(None)
    );
    let killing = standin.count("delete pods");
    assert_eq!(killing, 1);

    // A start again uses the claim that is there.
    let again = spawner
        .start(&spec("alice"), &ProgressSender::discard())
        .await
        .unwrap();
    assert_eq!(standin.count("create persistentvolumeclaims"), 2);
    spawner.stop(&again.state, Duration::ZERO).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_fails_the_start_with_its_reason() {
    let standin = KubeStandin::start(StandinOptions::default()).await;
    standin.missing_image("example.org/nope:1");
    let spawner = spawner(
        &standin,
        "singleuser: {image: {name: example.org/nope, tag: '1'}}",
        Duration::from_secs(2),
    )
    .await;
    let error = spawner
        .start(&spec("bob"), &ProgressSender::discard())
        .await
        .unwrap_err();
    let SpawnError::Other(message) = error else {
        panic!("{error:?}")
    };
    assert_eq!(
        message,
        "the pod jupyter-bob did not start within 2 s (singleuser.startTimeout): ImagePullBackOff: \
         Back-off pulling image \"example.org/nope:1\": ErrImagePull: example.org/nope:1: not found"
    );
    assert!(
        standin.pod(NS, "jupyter-bob").is_none(),
        "the failed pod is removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unschedulable_pod_says_why() {
    let standin = KubeStandin::start(StandinOptions::default()).await;
    let spawner = spawner(
        &standin,
        "singleuser: {memory: {guarantee: 100T}}",
        Duration::from_secs(1),
    )
    .await;
    let (progress, mut events) = ProgressSender::channel();
    let error = spawner.start(&spec("carol"), &progress).await.unwrap_err();
    drop(progress);
    assert!(
        error
            .to_string()
            .contains("(singleuser.startTimeout): Unschedulable: 0/1 nodes are available: 1 Insufficient memory."),
        "{error}"
    );
    let mut messages = Vec::new();
    while let Some(event) = events.recv().await {
        messages.push(event.message);
    }
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("FailedScheduling: 0/1 nodes")),
        "{messages:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_kills_are_the_exit_reason_and_a_new_spawner_adopts_running_pods() {
    let standin = KubeStandin::start(StandinOptions::default()).await;
    let first = spawner(
        &standin,
        "singleuser: {memory: {limit: 1G}}",
        Duration::from_secs(20),
    )
    .await;
    let dave = first
        .start(&spec("dave"), &ProgressSender::discard())
        .await
        .unwrap();
    let erin = first
        .start(&spec("erin"), &ProgressSender::discard())
        .await
        .unwrap();
    drop(first);

    // As after a hub restart: a new spawner finds both from their states, by watching.
    let lists = standin.count("list pods");
    let second = spawner(
        &standin,
        "singleuser: {memory: {limit: 1G}}",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(second.poll(&dave.state).await.unwrap(), PollStatus::Running);
    assert_eq!(second.poll(&erin.state).await.unwrap(), PollStatus::Running);
    assert_eq!(
        standin.count("list pods"),
        lists + 1,
        "one list, then the watch"
    );

    assert!(standin.oom_kill(NS, "jupyter-dave"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while second.poll(&dave.state).await.unwrap() == PollStatus::Running {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        second.poll(&dave.state).await.unwrap(),
        PollStatus::Exited(Some(137))
    );
    assert_eq!(
        second.exit_reason(&dave.state).await.as_deref(),
        Some("killed: memory limit 1G reached (OOMKilled)")
    );
    assert_eq!(second.exit_reason(&erin.state).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_is_too_old_lists_again() {
    let standin = KubeStandin::start(StandinOptions::default()).await;
    let spawner = spawner(&standin, "", Duration::from_secs(20)).await;
    let frank = spawner
        .start(&spec("frank"), &ProgressSender::discard())
        .await
        .unwrap();
    let lists = standin.count("list pods");

    // The API server goes away; meanwhile the pod is deleted and the history compacted.
    standin.pause_watches();
    assert!(standin.delete_pod_now(NS, "jupyter-frank"));
    standin.compact();
    standin.resume_watches();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while spawner.poll(&frank.state).await.unwrap() == PollStatus::Running {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the deletion was never seen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(standin.count("gone") >= 1, "{:?}", standin.counts());
    assert_eq!(
        standin.count("list pods"),
        lists + 1,
        "{:?}",
        standin.counts()
    );
}

/// The pod image of `user`'s server in the stand-in.
fn pod_image(standin: &KubeStandin, user: &str) -> String {
    let pod = standin.pod(NS, &format!("jupyter-{user}")).unwrap();
    pod["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hubs_profiles_and_new_values_make_the_next_pod() {
    let standin = KubeStandin::start(StandinOptions::default()).await;
    let yaml = "singleuser:\n  image: {name: example/base, tag: '1'}\n  profileList:\n    - {display_name: From the file, slug: file}\n";
    let spawner = spawner(&standin, yaml, Duration::from_secs(20)).await;

    // The hub offers other profiles than the file's (made in its admin panel): they apply.
    let mut spec = spec("alice");
    spec.profile.user_options = serde_json::json!({"profile": "ui-made"});
    spec.profile.offered = Some(vec![serde_json::json!({
        "display_name": "Made in the UI",
        "slug": "ui-made",
        "kubespawner_override": {"image": "example/ui:2"},
    })]);
    let (progress, _events) = ProgressSender::channel();
    let started = spawner.start(&spec, &progress).await.unwrap();
    assert_eq!(pod_image(&standin, "alice"), "example/ui:2");
    spawner
        .stop(&started.state, Duration::from_secs(1))
        .await
        .unwrap();

    // The file's profile is not among them: refused as KubeSpawner refuses an unknown one.
    spec.profile.user_options = serde_json::json!({"profile": "file"});
    match spawner.check(&spec).await {
        Err(SpawnError::Refused(message)) => assert!(message.contains("file"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }

    // New values (a config reload's) make the next pod; without profiles from the hub, the
    // file's apply.
    spawner.set_values(
        z2jh_values("singleuser:\n  image: {name: example/base, tag: '2'}\n"),
        Duration::from_secs(20),
    );
    let (progress, _events) = ProgressSender::channel();
    spawner.start(&self::spec("bob"), &progress).await.unwrap();
    assert_eq!(pod_image(&standin, "bob"), "example/base:2");
}
