//! hubfleet-kube-spawner: the `kubernetes` spawner. Users' servers run as pods, with
//! KubeSpawner's semantics: the pod and the home PVC come from [`hubfleet_kube::pod_for`] (the
//! same code as `hubfleet render pod`), the PVC is created when missing and kept at stop, the
//! server's target is `http://<pod IP>:<port>`, and a start waits for the pod to run within
//! `singleuser.startTimeout`, reporting its events as progress.
//!
//! It scales without polling: one reflector over the hub's user pods and one over pod events
//! ([`watch`]) are shared by all servers, and `poll`, the wait for a start and the exit reasons
//! read their stores. A hub with thousands of running servers makes no API calls at rest.
//!
//! A crate of its own, beside `hubfleet-kube`, which stays pure (values in, objects out) and
//! free of a client, a runtime and the spawner trait.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hubfleet_config::values::Values;
use hubfleet_kube::{KubeError, ServerFacts, UserFacts, UserOptions};
use hubfleet_spawn::{
    LaunchSpec, PollStatus, ProgressSender, ServerLog, ServerRef, SpawnError, SpawnProgress,
    SpawnState, Spawner, Started,
};
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, LogParams, PostParams, Preconditions};
use kube::Api;
use serde_json::json;
use serde_yaml_ng::{Mapping, Value};

pub mod status;
mod watch;

use watch::Watches;

/// KubeSpawner's `port` when the pod names none.
const DEFAULT_PORT: i32 = 8888;
/// How many times a start deletes a pod that is in its way before it gives up.
const CREATE_ATTEMPTS: u32 = 4;
/// How long a stop waits for a deleted pod to go, beyond its grace period.
const GONE_MARGIN: Duration = Duration::from_secs(30);
/// Lines of a pod's log asked for by `log_tail` (then cut to its byte budget).
const LOG_LINES: i64 = 400;
/// How long a start that saw its pod run waits for the events of its last steps.
const EVENT_CATCH_UP: Duration = Duration::from_secs(2);

/// Why the spawner could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum KubeSpawnerError {
    #[error("cannot find a Kubernetes API server to talk to: {0}. In a pod the service account is used; elsewhere point KUBECONFIG at a kubeconfig file")]
    Config(#[from] kube::config::InferConfigError),
    #[error("cannot make a Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// What the spawner is built from.
#[derive(Clone, Debug)]
pub struct KubeOptions {
    /// Where pods go (`hubfleet.kubernetes.namespace`); `None`: the client's default, which in a
    /// pod is the pod's own namespace (its service account's `namespace` file) and otherwise the
    /// kubeconfig context's (else `default`).
    pub namespace: Option<String>,
    /// The merged z2jh values (`HubConfig::values`, laid over the chart's defaults when they
    /// are given). `Release` is added when missing, with the spawner's namespace.
    pub values: Values,
    /// How long a pod may take to run (`singleuser.startTimeout`, KubeSpawner's
    /// `start_timeout`).
    pub start_timeout: Duration,
}

/// The `kubernetes` spawner. See the crate documentation.
pub struct KubernetesSpawner {
    namespace: String,
    /// The values pods are built from: those of the start, then of each config reload
    /// ([`KubernetesSpawner::set_values`]), so `singleuser.image`, `cpu`, `memory`, … reach the
    /// next pod without a restart.
    values: RwLock<Arc<Values>>,
    /// `singleuser.startTimeout`, in seconds (a reload changes it for later starts).
    start_timeout_secs: AtomicU64,
    pods: Api<Pod>,
    pvcs: Api<PersistentVolumeClaim>,
    watches: Watches,
}

impl KubernetesSpawner {
    /// Connect as `kube::Config::infer` does (in-cluster service account, else `KUBECONFIG` or
    /// `~/.kube/config`) and start the shared watches. Needs a Tokio runtime.
    pub async fn connect(options: KubeOptions) -> Result<KubernetesSpawner, KubeSpawnerError> {
        let config = kube::Config::infer().await?;
        let namespace = options
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = kube::Client::try_from(config)?;
        Ok(KubernetesSpawner::with_client(client, &namespace, options))
    }

    /// [`KubernetesSpawner::connect`] with a client of the caller's, in `namespace`.
    pub fn with_client(
        client: kube::Client,
        namespace: &str,
        options: KubeOptions,
    ) -> KubernetesSpawner {
        let values = with_release(options.values, namespace);
        let selector = pod_selector(&values);
        tracing::info!(%namespace, %selector, "watching user pods");
        KubernetesSpawner {
            namespace: namespace.to_string(),
            start_timeout_secs: AtomicU64::new(options.start_timeout.as_secs()),
            pods: Api::namespaced(client.clone(), namespace),
            pvcs: Api::namespaced(client.clone(), namespace),
            watches: Watches::start(client, namespace, &selector),
            values: RwLock::new(Arc::new(values)),
        }
    }

    /// Build the pods of later starts from `values` (a config reload's; `Release` is added as
    /// at start). Running pods are not touched; the pod selector stays the start's (the
    /// release's labels need a restart, as every `Release` change).
    pub fn set_values(&self, values: Values, start_timeout: Duration) {
        let values = with_release(values, &self.namespace);
        *self.values.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(values);
        self.start_timeout_secs
            .store(start_timeout.as_secs(), Ordering::Relaxed);
    }

    fn start_timeout(&self) -> Duration {
        Duration::from_secs(self.start_timeout_secs.load(Ordering::Relaxed))
    }

    /// The values a start uses now, with the profiles the hub offers at this start (its
    /// store's) as `singleuser.profileList` when it gives them.
    fn values_for(&self, spec: &LaunchSpec) -> Result<Arc<Values>, SpawnError> {
        let values = self
            .values
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(offered) = &spec.profile.offered else {
            return Ok(values);
        };
        let list = serde_yaml_ng::to_value(offered).map_err(|e| {
            SpawnError::Other(format!("the hub's profiles cannot be read as values: {e}"))
        })?;
        let mut doc = values.as_value().clone();
        if !doc.is_mapping() {
            doc = Value::Mapping(Mapping::new());
        }
        if let Value::Mapping(root) = &mut doc {
            let singleuser = root
                .entry("singleuser".into())
                .or_insert_with(|| Value::Mapping(Mapping::new()));
            if !singleuser.is_mapping() {
                *singleuser = Value::Mapping(Mapping::new());
            }
            if let Value::Mapping(singleuser) = singleuser {
                singleuser.insert("profileList".into(), list);
            }
        }
        Ok(Arc::new(Values::new(doc)))
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Until the shared watches hold their first lists.
    pub async fn synced(&self) {
        self.watches.synced().await
    }

    /// The pod and home PVC of a start, as KubeSpawner would make them.
    fn build(&self, spec: &LaunchSpec) -> Result<(Pod, Option<PersistentVolumeClaim>), SpawnError> {
        let user = UserFacts {
            name: spec.owner.name.clone(),
            id: u64::try_from(spec.owner.id).unwrap_or_default(),
            admin: spec.owner.admin,
            groups: spec.owner.groups.clone(),
        };
        let server = ServerFacts {
            name: spec.server_name.clone(),
        };
        let options = UserOptions::from_json(&spec.profile.user_options).map_err(refusal)?;
        let values = self.values_for(spec)?;
        let (mut pod, pvc) =
            hubfleet_kube::pod_for(&values, &user, &server, &options, &hub_env(spec))
                .map_err(refusal)?;
        pod.metadata.namespace = Some(self.namespace.clone());
        let pvc = pvc.map(|mut pvc| {
            pvc.metadata.namespace = Some(self.namespace.clone());
            pvc
        });
        Ok((pod, pvc))
    }

    /// Create the home PVC unless it exists (KubeSpawner's `storage_pvc_ensure`).
    async fn ensure_pvc(&self, pvc: &PersistentVolumeClaim) -> Result<(), SpawnError> {
        let name = pvc.metadata.name.clone().unwrap_or_default();
        match self.pvcs.create(&PostParams::default(), pvc).await {
            Ok(_) => {
                tracing::info!(pvc = %name, "created the home volume claim");
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(e) => Err(SpawnError::Other(format!(
                "could not create the volume claim {name}: {e}"
            ))),
        }
    }

    /// Create the pod; one left by an earlier server of that name is deleted first, as
    /// KubeSpawner does. Returns the new pod's uid.
    async fn create_pod(&self, pod: &Pod, progress: &ProgressSender) -> Result<String, SpawnError> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        for _ in 0..CREATE_ATTEMPTS {
            match self.pods.create(&PostParams::default(), pod).await {
                Ok(created) => return Ok(created.metadata.uid.unwrap_or_default()),
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    progress.send(SpawnProgress::new(format!(
                        "Removing an earlier pod {name}"
                    )));
                    tracing::info!(pod = %name, "found an earlier pod by that name; deleting it");
                    let old = self.watches.pod(&name, None);
                    let uid = old.as_ref().and_then(|p| p.metadata.uid.clone());
                    self.delete_and_wait(&name, uid.as_deref(), Duration::ZERO)
                        .await?;
                }
                Err(e) => {
                    return Err(SpawnError::Other(format!(
                        "could not create the pod {name}: {e}"
                    )))
                }
            }
        }
        Err(SpawnError::Other(format!(
            "could not create the pod {name}: an earlier pod by that name is still there"
        )))
    }

    /// Delete the pod (only the one with `uid`, when given) with a grace period, and wait until
    /// the watch sees it gone.
    async fn delete_and_wait(
        &self,
        name: &str,
        uid: Option<&str>,
        grace: Duration,
    ) -> Result<(), SpawnError> {
        let params = DeleteParams {
            grace_period_seconds: Some(u32::try_from(grace.as_secs()).unwrap_or(u32::MAX)),
            preconditions: uid.map(|uid| Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.pods.delete(name, &params).await {
            Ok(_) => {}
            // Gone already, or the name is another pod's now (the uid precondition failed).
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
                return Ok(())
            }
            Err(e) => {
                return Err(SpawnError::Other(format!(
                    "could not delete the pod {name}: {e}"
                )))
            }
        }
        let limit = grace + GONE_MARGIN;
        let mut changes = self.watches.changes();
        let gone = tokio::time::timeout(limit, async {
            loop {
                let still = match uid {
                    Some(uid) => self.watches.pod(name, Some(uid)).is_some(),
                    None => self.watches.pod(name, None).is_some(),
                };
                if !still || changes.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        match gone {
            Ok(()) => Ok(()),
            Err(_) => Err(SpawnError::Other(format!(
                "the pod {name} was still there {} s after it was deleted",
                limit.as_secs()
            ))),
        }
    }

    /// Until the pod runs (KubeSpawner's `is_pod_running`), sending its events as progress.
    /// `Err`: why it did not, for people.
    async fn wait_running(
        &self,
        name: &str,
        uid: &str,
        progress: &ProgressSender,
    ) -> Result<Arc<Pod>, String> {
        let start_timeout = self.start_timeout();
        let deadline = tokio::time::Instant::now() + start_timeout;
        let mut changes = self.watches.changes();
        let mut told: HashSet<(String, i32)> = HashSet::new();
        loop {
            changes.borrow_and_update();
            let pod = self.watches.pod(name, Some(uid));
            let events = self.watches.events_of(name, Some(uid));
            tell_new_events(&events, &mut told, progress);
            if let Some(pod) = &pod {
                if status::is_running(pod) {
                    self.catch_up_on_events(name, uid, &mut told, progress)
                        .await;
                    return Ok(pod.clone());
                }
                if status::ended(pod).is_some() {
                    return Err(format!(
                        "the pod {name} ended before it was running: {}",
                        status::why_ended(pod, &events)
                    ));
                }
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() {
                    return Err("the watch of user pods ended".to_string());
                },
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(format!(
                        "the pod {name} did not start within {} s (singleuser.startTimeout): {}",
                        start_timeout.as_secs(),
                        status::why_not_running(pod.as_deref(), &events)
                    ));
                }
            }
        }
    }

    /// The two watches deliver on their own: the pod may be seen running before the events of
    /// its last steps ("Started container …"). Forward those too, waiting a little for them.
    async fn catch_up_on_events(
        &self,
        name: &str,
        uid: &str,
        told: &mut HashSet<(String, i32)>,
        progress: &ProgressSender,
    ) {
        let deadline = tokio::time::Instant::now() + EVENT_CATCH_UP;
        let mut changes = self.watches.changes();
        loop {
            changes.borrow_and_update();
            let events = self.watches.events_of(name, Some(uid));
            tell_new_events(&events, told, progress);
            if events.iter().any(status::is_container_started) {
                return;
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    /// The pod of `server`: from its state, else by the annotations KubeSpawner puts on it.
    fn pod_of(&self, server: &ServerRef, state: Option<&SpawnState>) -> Option<String> {
        if let Some(saved) = state.and_then(|s| Saved::from_state(s).ok()) {
            return Some(saved.pod);
        }
        let found = self.watches.pods.find(|pod| {
            let annotations = pod.metadata.annotations.as_ref();
            let annotation = |key: &str| annotations.and_then(|a| a.get(key)).map(String::as_str);
            annotation("hub.jupyter.org/username") == Some(server.user.as_str())
                && annotation("hub.jupyter.org/servername").unwrap_or("") == server.server
        })?;
        found.metadata.name.clone()
    }
}

/// A pod as the server's state records it.
struct Saved {
    pod: String,
    uid: Option<String>,
}

impl Saved {
    fn from_state(state: &SpawnState) -> Result<Saved, SpawnError> {
        let pod = state
            .get("pod")
            .and_then(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                SpawnError::BadState("no `pod` in a Kubernetes server's state".into())
            })?;
        Ok(Saved {
            pod: pod.to_string(),
            uid: state
                .get("uid")
                .and_then(|u| u.as_str())
                .filter(|u| !u.is_empty())
                .map(str::to_string),
        })
    }
}

/// Values the hub's rules refuse (a profile or choice the user may not have) are the user's to
/// fix; anything else is the config's.
fn refusal(error: KubeError) -> SpawnError {
    match error {
        KubeError::UserOptions(message) | KubeError::Refused(message) => {
            SpawnError::Refused(message)
        }
        other => SpawnError::Other(format!("the pod cannot be built from the values: {other}")),
    }
}

/// The hub's part of the pod's environment (protocol §5.1): the `JUPYTERHUB_*` variables and
/// the token. What the local spawner needs besides (`PATH`, the hub's Python environment) is
/// this machine's and means nothing in an image; the pod's own come from the values.
fn hub_env(spec: &LaunchSpec) -> BTreeMap<String, String> {
    spec.env
        .iter()
        .filter(|(k, _)| k.starts_with("JUPYTERHUB_") || k.starts_with("JPY_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `values` with `Release` (as z2jh's hub Secret has it) when it has none: the release
/// `jupyterhub` in the spawner's namespace.
fn with_release(values: Values, namespace: &str) -> Values {
    if values.get("Release").is_some() {
        return values;
    }
    let mut doc = values.into_value();
    if doc.is_null() {
        doc = Value::Mapping(Mapping::new());
    }
    if let Value::Mapping(map) = &mut doc {
        let mut release = Mapping::new();
        release.insert("Name".into(), "jupyterhub".into());
        release.insert("Namespace".into(), namespace.into());
        release.insert("Service".into(), "Helm".into());
        map.insert("Release".into(), Value::Mapping(release));
    }
    Values::new(doc)
}

/// KubeSpawner's pod reflector selector: `component=singleuser-server`, with the `app` and
/// `release` labels of this hub's pods (read from a pod built for nobody, so they are the
/// labels the pods get), so two hubs in one namespace do not see each other's pods.
fn pod_selector(values: &Values) -> String {
    let probe = hubfleet_kube::pod_for(
        values,
        &UserFacts::named("hubfleet-label-probe"),
        &ServerFacts::default(),
        &UserOptions::default(),
        &BTreeMap::new(),
    );
    let labels = probe
        .ok()
        .and_then(|(pod, _)| pod.metadata.labels)
        .unwrap_or_default();
    let mut selector = vec![format!(
        "component={}",
        labels
            .get("component")
            .map(String::as_str)
            .unwrap_or("singleuser-server")
    )];
    for key in ["app", "release"] {
        if let Some(value) = labels.get(key) {
            selector.push(format!("{key}={value}"));
        }
    }
    selector.join(",")
}

/// The port the server listens on: the server container's `notebook-port` (KubeSpawner's
/// `port`).
fn server_port(pod: &Pod) -> i32 {
    pod.spec
        .as_ref()
        .and_then(|spec| {
            spec.containers
                .iter()
                .find(|c| c.name == status::SERVER_CONTAINER)
        })
        .and_then(|c| c.ports.as_ref())
        .and_then(|ports| ports.first())
        .map(|p| p.container_port)
        .unwrap_or(DEFAULT_PORT)
}

fn url_host(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}

/// The last `max_bytes` of `text`, from a line's start.
fn tail(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_string();
    }
    let mut start = text.len() - max_bytes;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let cut = &text[start..];
    match cut.find('\n') {
        Some(nl) if nl + 1 < cut.len() => cut[nl + 1..].to_string(),
        _ => cut.to_string(),
    }
}

#[async_trait]
impl Spawner for KubernetesSpawner {
    async fn check(&self, spec: &LaunchSpec) -> Result<(), SpawnError> {
        self.build(spec).map(|_| ())
    }

    async fn start(
        &self,
        spec: &LaunchSpec,
        progress: &ProgressSender,
    ) -> Result<Started, SpawnError> {
        let (pod, pvc) = self.build(spec)?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        let port = server_port(&pod);
        let started = Instant::now();
        if let Some(pvc) = &pvc {
            self.ensure_pvc(pvc).await?;
        }
        progress.send(SpawnProgress::new(format!("Creating pod {name}")).with_percent(5));
        let uid = self.create_pod(&pod, progress).await?;
        let running = match self.wait_running(&name, &uid, progress).await {
            Ok(pod) => pod,
            Err(reason) => {
                // A failed start leaves no pod behind (the PVC stays, as at every stop).
                if let Err(e) = self
                    .delete_and_wait(&name, Some(&uid), Duration::ZERO)
                    .await
                {
                    tracing::warn!(pod = %name, error = %e, "removing the pod of a failed start");
                }
                return Err(SpawnError::Other(reason));
            }
        };
        let ip = running
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_default();
        tracing::info!(
            user = %spec.owner.name,
            server = %spec.server_name,
            pod = %name,
            %ip,
            seconds = started.elapsed().as_secs_f64(),
            "pod running"
        );
        Ok(Started {
            target: format!("http://{}:{port}", url_host(&ip)),
            state: json!({
                "namespace": self.namespace,
                "pod": name,
                "uid": uid,
                "ip": ip,
                "port": port,
                "pvc": pvc.and_then(|p| p.metadata.name),
                "user": spec.owner.name,
                "server": spec.server_name,
            }),
        })
    }

    async fn poll(&self, state: &SpawnState) -> Result<PollStatus, SpawnError> {
        let saved = Saved::from_state(state)?;
        // A hub that has just started has not seen the pods yet: wait rather than guess.
        self.watches.synced().await;
        let Some(pod) = self.watches.pod(&saved.pod, saved.uid.as_deref()) else {
            return Ok(PollStatus::Exited(None));
        };
        if pod.metadata.deletion_timestamp.is_some() {
            return Ok(PollStatus::Exited(None));
        }
        Ok(match status::ended(&pod) {
            Some(code) => PollStatus::Exited(code),
            None => PollStatus::Running,
        })
    }

    async fn stop(&self, state: &SpawnState, grace: Duration) -> Result<(), SpawnError> {
        let saved = Saved::from_state(state)?;
        self.delete_and_wait(&saved.pod, saved.uid.as_deref(), grace)
            .await?;
        tracing::info!(pod = %saved.pod, "deleted the pod");
        Ok(())
    }

    async fn adopt(&self, server: &ServerRef, state: &SpawnState) {
        // The shared watch follows every pod already; nothing is held per server.
        if let Ok(saved) = Saved::from_state(state) {
            tracing::debug!(user = %server.user, server = %server.server, pod = %saved.pod, "pod re-adopted");
        }
    }

    async fn log_tail(
        &self,
        server: &ServerRef,
        state: Option<&SpawnState>,
        max_bytes: u64,
    ) -> Option<ServerLog> {
        let name = self.pod_of(server, state)?;
        let params = LogParams {
            container: Some(status::SERVER_CONTAINER.to_string()),
            tail_lines: Some(LOG_LINES),
            ..LogParams::default()
        };
        match self.pods.logs(&name, &params).await {
            Ok(text) => Some(ServerLog {
                text: tail(&text, usize::try_from(max_bytes).unwrap_or(usize::MAX)),
                source: format!("pod {}/{name}", self.namespace),
            }),
            Err(e) => {
                tracing::debug!(pod = %name, error = %e, "no log from the pod");
                None
            }
        }
    }

    async fn exit_reason(&self, state: &SpawnState) -> Option<String> {
        let saved = Saved::from_state(state).ok()?;
        let pod = self.watches.pod(&saved.pod, saved.uid.as_deref())?;
        status::exit_reason(&pod)
    }
}

/// Send each event not told yet (an event counted again is news).
fn tell_new_events(events: &[Event], told: &mut HashSet<(String, i32)>, progress: &ProgressSender) {
    for event in events {
        let key = (
            event.metadata.name.clone().unwrap_or_default(),
            event.count.unwrap_or(1),
        );
        if told.insert(key) {
            progress.send(status::progress_of(event));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_start_at_a_line() {
        assert_eq!(tail("one\ntwo\nthree\n", 100), "one\ntwo\nthree\n");
        assert_eq!(tail("one\ntwo\nthree\n", 9), "three\n");
        assert_eq!(tail("éé", 3), "é");
    }

    #[test]
    fn only_the_hubs_variables_go_into_the_pod() {
        let spec = LaunchSpec {
            env: BTreeMap::from([
                ("JUPYTERHUB_API_TOKEN".to_string(), "t".to_string()),
                ("JPY_API_TOKEN".to_string(), "t".to_string()),
                ("PATH".to_string(), "/root/venv/bin".to_string()),
                ("VIRTUAL_ENV".to_string(), "/root/venv".to_string()),
            ]),
            ..LaunchSpec::default()
        };
        let env = hub_env(&spec);
        assert_eq!(
            env.keys().collect::<Vec<_>>(),
            ["JPY_API_TOKEN", "JUPYTERHUB_API_TOKEN"]
        );
    }

    #[test]
    fn the_selector_is_kubespawners_with_the_release() {
        let values = with_release(Values::new(Value::Null), "hubs");
        assert_eq!(values.get("Release.Namespace"), Some(&Value::from("hubs")));
        assert_eq!(
            pod_selector(&values),
            "component=singleuser-server,app=jupyterhub,release=jupyterhub"
        );
    }
}
