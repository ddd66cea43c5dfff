//! **A stand-in for the Kubernetes API server, for tests.** It is not Kubernetes: it serves the
//! core/v1 endpoints the `kubernetes` spawner uses, for pods, PersistentVolumeClaims and
//! events, over plain HTTP on loopback, so the spawner's real kube-rs code (client, watcher,
//! reflector) can be tested where no API server can run.
//!
//! What it does:
//! - create, get, delete, list (with `labelSelector`, `fieldSelector`, `limit`/`continue`) and
//!   watch (`?watch=1`: chunked JSON lines) under `/api/v1/namespaces/{ns}/{resource}`, and
//!   `…/pods/{name}/log`;
//! - one resource version for everything (etcd's revision), watches that resume from one,
//!   bookmarks when asked (`allowWatchBookmarks`), `410 Gone` (an `ERROR` event, as the real
//!   server sends it) for a resource version older than its history, and `timeoutSeconds`;
//! - in place of a scheduler and kubelet ([`kubelet`]): scheduling against one node's memory
//!   and labels (else `Unschedulable` and a `FailedScheduling` event), image pulls (images
//!   named with [`KubeStandin::missing_image`] end in `ImagePullBackOff`), init containers, the
//!   server container run in process or as a local process, an OOM kill on request, graceful
//!   deletion (`deletionTimestamp`, then gone once the container stopped within the grace
//!   period) and uid preconditions;
//! - it counts the requests it gets, by verb and resource ([`KubeStandin::counts`]).
//!
//! What it does not do: authentication, admission, other kinds and API groups, patch and
//! update, server-side apply, restarts of containers (`restartPolicy` is taken as `Never`: an
//! ended container ends the pod), image entrypoints, volumes, and consistent snapshots across
//! list pages.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, watch};

mod cluster;
pub mod kubelet;

use cluster::{fields_match, key_of, labels_match, now, status, Change, Cluster, Kind};
pub use kubelet::{Containers, NODE};

/// How the stand-in behaves.
#[derive(Clone, Debug)]
pub struct StandinOptions {
    /// The time between two steps of a pod's start (scheduled, pulled, running).
    pub step: Duration,
    /// How often open watches that asked for bookmarks get one.
    pub bookmark_every: Duration,
    /// The node's allocatable memory, in bytes.
    pub node_memory: u64,
    /// The node's labels, for `nodeSelector`.
    pub node_labels: BTreeMap<String, String>,
    /// How the server container runs.
    pub containers: Containers,
    /// How long an in-process server container takes to stop.
    pub stop_time: Duration,
}

impl Default for StandinOptions {
    fn default() -> Self {
        StandinOptions {
            step: Duration::from_millis(100),
            bookmark_every: Duration::from_secs(5),
            node_memory: 64 << 30,
            node_labels: BTreeMap::from([
                ("kubernetes.io/hostname".to_string(), NODE.to_string()),
                (
                    "hub.jupyter.org/node-purpose".to_string(),
                    "user".to_string(),
                ),
            ]),
            containers: Containers::InProcess,
            stop_time: Duration::from_millis(200),
        }
    }
}

pub(crate) struct Inner {
    cluster: Mutex<Cluster>,
    changes: broadcast::Sender<Change>,
    counts: Mutex<BTreeMap<String, u64>>,
    /// Bumped to end every open watch.
    watch_generation: watch::Sender<u64>,
    /// While true, watch requests wait.
    paused: watch::Sender<bool>,
    open_watches: Mutex<usize>,
    options: StandinOptions,
    missing_images: Mutex<Vec<String>>,
    runtimes: Mutex<HashMap<String, kubelet::Runtime>>,
    logs: Mutex<HashMap<String, String>>,
    ips: Mutex<u32>,
    /// Pod IPs are 127.<a>.<b>.<n>: a range of this stand-in's own on loopback.
    ip_prefix: [u8; 2],
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self, what: String) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(what)
            .or_default() += 1;
    }
}

/// A running stand-in. Dropping it stops its HTTP server (pods' in-process servers stop with
/// the runtime; process containers are ended by [`KubeStandin::kill_containers`]).
pub struct KubeStandin {
    addr: SocketAddr,
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl KubeStandin {
    /// Start on a free loopback port.
    pub async fn start(options: StandinOptions) -> KubeStandin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the Kubernetes API stand-in");
        let addr = listener.local_addr().expect("its address");
        let (changes, _) = broadcast::channel(65_536);
        let prefix = {
            use rand::Rng;
            let mut rng = rand::thread_rng();
            [rng.gen_range(1..=250u8), rng.gen_range(0..=200u8)]
        };
        let inner = Arc::new(Inner {
            cluster: Mutex::new(Cluster::default()),
            changes,
            counts: Mutex::new(BTreeMap::new()),
            watch_generation: watch::channel(0).0,
            paused: watch::channel(false).0,
            open_watches: Mutex::new(0),
            options,
            missing_images: Mutex::new(Vec::new()),
            runtimes: Mutex::new(HashMap::new()),
            logs: Mutex::new(HashMap::new()),
            ips: Mutex::new(0),
            ip_prefix: prefix,
        });
        let app = Router::new()
            .route(
                "/api/v1/namespaces/{ns}/{resource}",
                get(list_or_watch).post(create),
            )
            .route(
                "/api/v1/namespaces/{ns}/{resource}/{name}",
                get(get_one).delete(delete),
            )
            .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pod_log))
            .fallback(|uri: axum::http::Uri| async move {
                json_response(
                    StatusCode::NOT_FOUND,
                    &status(
                        404,
                        "NotFound",
                        &format!("the stand-in does not serve {uri}"),
                    ),
                )
            })
            .with_state(inner.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        KubeStandin {
            addr,
            inner,
            server,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig that points at the stand-in, with `namespace` as the context's.
    pub fn kubeconfig(&self, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: {}\n\
             users:\n- name: standin\n  user: {{}}\ncontexts:\n- name: standin\n  context:\n    \
             cluster: standin\n    user: standin\n    namespace: {namespace}\ncurrent-context: standin\n",
            self.url()
        )
    }

    /// Requests so far, by `"<verb> <resource>"` (`"list pods"`, `"watch events"`, `"get
    /// persistentvolumeclaims"`, `"create pods"`, `"delete pods"`, `"log pods"`).
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.inner
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// One count of [`KubeStandin::counts`].
    pub fn count(&self, what: &str) -> u64 {
        self.counts().get(what).copied().unwrap_or(0)
    }

    /// Watches open now.
    pub fn open_watches(&self) -> usize {
        *self
            .inner
            .open_watches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn object(&self, kind: Kind, namespace: &str, name: &str) -> Option<Value> {
        self.inner
            .lock()
            .objects
            .get(&(kind, namespace.to_string(), name.to_string()))
            .cloned()
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<Value> {
        self.object(Kind::Pod, namespace, name)
    }

    pub fn pvc(&self, namespace: &str, name: &str) -> Option<Value> {
        self.object(Kind::PersistentVolumeClaim, namespace, name)
    }

    /// Every pod in `namespace`.
    pub fn pods(&self, namespace: &str) -> Vec<Value> {
        self.inner
            .lock()
            .objects
            .iter()
            .filter(|((kind, ns, _), _)| *kind == Kind::Pod && ns == namespace)
            .map(|(_, pod)| pod.clone())
            .collect()
    }

    /// The events about the pod `name`, as recorded.
    pub fn events_of(&self, namespace: &str, name: &str) -> Vec<Value> {
        self.inner
            .lock()
            .objects
            .iter()
            .filter(|((kind, ns, _), e)| {
                *kind == Kind::Event
                    && ns == namespace
                    && e["involvedObject"]["name"].as_str() == Some(name)
            })
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// Pulls of `image` fail with "not found" (then `ImagePullBackOff`).
    pub fn missing_image(&self, image: &str) {
        self.inner
            .missing_images
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(image.to_string());
    }

    /// The kernel kills the pod's server container at its memory limit: the container ends
    /// `OOMKilled` (137) and, with no restart, the pod is `Failed`. False if there is no such
    /// running pod.
    pub fn oom_kill(&self, namespace: &str, name: &str) -> bool {
        let Some(pod) = self.pod(namespace, name) else {
            return false;
        };
        let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
        if let Some(runtime) = self.inner.take_runtime(uid) {
            if let kubelet::Runtime::Process(pid) = runtime {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            } else if let kubelet::Runtime::InProcess(stop) = runtime {
                let _ = stop.send(());
            }
        }
        self.inner
            .log_line(uid, "[stand-in] killed by the kernel: memory limit reached");
        let at = now();
        self.inner
            .update_pod(namespace, name, uid, |p| {
                p["status"]["phase"] = json!("Failed");
                for c in p["status"]["containerStatuses"]
                    .as_array_mut()
                    .into_iter()
                    .flatten()
                {
                    if c["name"] == "notebook" {
                        c["ready"] = json!(false);
                        c["started"] = json!(false);
                        c["state"] = json!({"terminated": {"exitCode": 137, "reason": "OOMKilled",
                            "finishedAt": at}});
                    }
                }
                if let Some(conditions) = p["status"]["conditions"].as_array_mut() {
                    for c in conditions {
                        if c["type"] == "Ready" || c["type"] == "ContainersReady" {
                            c["status"] = json!("False");
                        }
                    }
                }
            })
            .is_some()
    }

    /// End watches now and hold new ones until [`KubeStandin::resume_watches`] (as an API
    /// server that restarts).
    pub fn pause_watches(&self) {
        self.inner.paused.send_replace(true);
        self.inner.watch_generation.send_modify(|g| *g += 1);
    }

    pub fn resume_watches(&self) {
        self.inner.paused.send_replace(false);
    }

    /// Forget the history: a watch that resumes from before now gets 410 Gone, and its client
    /// must list again.
    pub fn compact(&self) {
        self.inner.lock().compact();
    }

    /// Delete a pod at once, as `kubectl delete pod --grace-period=0 --force` would (not
    /// through the API, so not counted).
    pub fn delete_pod_now(&self, namespace: &str, name: &str) -> bool {
        let Some(pod) = self.pod(namespace, name) else {
            return false;
        };
        let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
        if let Some(runtime) = self.inner.take_runtime(uid) {
            if let kubelet::Runtime::InProcess(stop) = runtime {
                let _ = stop.send(());
            } else if let kubelet::Runtime::Process(pid) = runtime {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        remove(&self.inner, &(Kind::Pod, namespace.into(), name.into()))
    }

    /// Kill every process container (tests call it at the end).
    pub fn kill_containers(&self) {
        let runtimes: Vec<kubelet::Runtime> = self
            .inner
            .runtimes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, r)| r)
            .collect();
        for runtime in runtimes {
            match runtime {
                kubelet::Runtime::Process(pid) => {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                kubelet::Runtime::InProcess(stop) => {
                    let _ = stop.send(());
                }
            }
        }
    }
}

impl Drop for KubeStandin {
    fn drop(&mut self) {
        self.kill_containers();
        self.inner.watch_generation.send_modify(|g| *g += 1);
        self.server.abort();
    }
}

fn remove(inner: &Inner, key: &cluster::Key) -> bool {
    let mut cluster = inner.lock();
    match cluster.remove(key) {
        Some(change) => {
            let _ = inner.changes.send(change);
            true
        }
        None => false,
    }
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn failure(code: u16, reason: &str, message: &str) -> Response {
    json_response(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &status(code, reason, message),
    )
}

fn unknown_resource(resource: &str) -> Response {
    failure(
        404,
        "NotFound",
        &format!("the server could not find the requested resource ({resource})"),
    )
}

type Params = HashMap<String, String>;

fn flag(params: &Params, key: &str) -> bool {
    params
        .get(key)
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

fn matches(
    params: &Params,
    kind: Kind,
    namespace: &str,
    change_kind: Kind,
    object: &Value,
) -> bool {
    change_kind == kind
        && object["metadata"]["namespace"].as_str() == Some(namespace)
        && labels_match(params.get("labelSelector").map(String::as_str), object)
        && fields_match(params.get("fieldSelector").map(String::as_str), object)
}

async fn list_or_watch(
    State(inner): State<Arc<Inner>>,
    Path((namespace, resource)): Path<(String, String)>,
    Query(params): Query<Params>,
) -> Response {
    let Some(kind) = Kind::from_resource(&resource) else {
        return unknown_resource(&resource);
    };
    if flag(&params, "watch") {
        return watch(inner, kind, namespace, params).await;
    }
    inner.count(format!("list {resource}"));
    let cluster = inner.lock();
    let mut items: Vec<&Value> = cluster
        .objects
        .iter()
        .filter(|((k, _, _), object)| matches(&params, kind, &namespace, *k, object))
        .map(|(_, object)| object)
        .collect();
    let offset: usize = params
        .get("continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let limit: usize = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    items = items.into_iter().skip(offset).collect();
    let more = items.len() > limit;
    items.truncate(limit);
    let mut metadata = json!({"resourceVersion": cluster.rv.to_string()});
    if more {
        metadata["continue"] = json!((offset + limit).to_string());
    }
    json_response(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", kind.name()),
            "apiVersion": "v1",
            "metadata": metadata,
            "items": items,
        }),
    )
}

/// One line of a watch stream.
fn watch_line(kind_of_change: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind_of_change, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

async fn watch(inner: Arc<Inner>, kind: Kind, namespace: String, params: Params) -> Response {
    inner.count(format!("watch {}", kind.resource()));
    let mut paused = inner.paused.subscribe();
    let _ = paused.wait_for(|p| !*p).await;
    let since: u64 = params
        .get("resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0);
    let bookmarks = flag(&params, "allowWatchBookmarks");
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::convert::Infallible>>(1024);
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();

    // Under the lock: what to replay, and the live changes from right after it.
    let (replay, mut changes, mut seen) = {
        let cluster = inner.lock();
        if since > 0 && since < cluster.floor {
            inner.count("gone".to_string());
            let gone = status(
                410,
                "Expired",
                &format!("too old resource version: {since} ({})", cluster.floor),
            );
            let _ = tx.try_send(Ok(watch_line("ERROR", &gone)));
            return response;
        }
        let replay: Vec<Bytes> = if since == 0 {
            cluster
                .objects
                .iter()
                .filter(|((k, _, _), object)| matches(&params, kind, &namespace, *k, object))
                .map(|(_, object)| watch_line("ADDED", object))
                .collect()
        } else {
            cluster
                .history
                .iter()
                .filter(|c| c.rv > since && matches(&params, kind, &namespace, c.kind, &c.object))
                .map(|c| watch_line(c.kind_of_change, &c.object))
                .collect()
        };
        (replay, inner.changes.subscribe(), cluster.rv)
    };
    let mut generation = inner.watch_generation.subscribe();
    generation.borrow_and_update();
    *inner.open_watches.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut bookmark = tokio::time::interval(inner.options.bookmark_every);
        bookmark.tick().await;
        let mut open = true;
        for line in replay {
            if tx.send(Ok(line)).await.is_err() {
                open = false;
                break;
            }
        }
        while open {
            tokio::select! {
                // An ended watch sends nothing more, even what is already queued.
                biased;
                _ = generation.changed() => open = false,
                change = changes.recv() => match change {
                    Ok(change) => {
                        seen = seen.max(change.rv);
                        if matches(&params, kind, &namespace, change.kind, &change.object) {
                            open = tx.send(Ok(watch_line(change.kind_of_change, &change.object))).await.is_ok();
                        }
                    }
                    // Fell behind: end the stream; the client resumes from what it saw.
                    Err(_) => open = false,
                },
                _ = bookmark.tick(), if bookmarks => {
                    let mark = json!({
                        "kind": kind.name(),
                        "apiVersion": "v1",
                        "metadata": {"resourceVersion": seen.to_string()},
                    });
                    open = tx.send(Ok(watch_line("BOOKMARK", &mark))).await.is_ok();
                }
                _ = tokio::time::sleep_until(deadline) => open = false,
            }
        }
        *inner.open_watches.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
    });
    response
}

async fn get_one(
    State(inner): State<Arc<Inner>>,
    Path((namespace, resource, name)): Path<(String, String, String)>,
) -> Response {
    let Some(kind) = Kind::from_resource(&resource) else {
        return unknown_resource(&resource);
    };
    inner.count(format!("get {resource}"));
    let object = inner
        .lock()
        .objects
        .get(&(kind, namespace, name.clone()))
        .cloned();
    match object {
        Some(object) => json_response(StatusCode::OK, &object),
        None => failure(404, "NotFound", &format!("{resource} \"{name}\" not found")),
    }
}

async fn create(
    State(inner): State<Arc<Inner>>,
    Path((namespace, resource)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Some(kind) = Kind::from_resource(&resource) else {
        return unknown_resource(&resource);
    };
    inner.count(format!("create {resource}"));
    let Ok(mut object) = serde_json::from_slice::<Value>(&body) else {
        return failure(400, "BadRequest", "the body is not a JSON object");
    };
    let Some(name) = object["metadata"]["name"].as_str().map(str::to_string) else {
        return failure(422, "Invalid", "metadata.name: Required value");
    };
    match object["metadata"]["namespace"].as_str() {
        Some(ns) if ns != namespace => return failure(
            400,
            "BadRequest",
            "the namespace of the provided object does not match the namespace sent on the request",
        ),
        _ => object["metadata"]["namespace"] = json!(namespace),
    }
    object["kind"] = json!(kind.name());
    object["apiVersion"] = json!("v1");
    object["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    object["metadata"]["creationTimestamp"] = json!(now());
    match kind {
        Kind::Pod => {
            object["status"] = json!({"phase": "Pending", "qosClass": "Burstable"});
        }
        Kind::PersistentVolumeClaim => object["status"] = json!({"phase": "Pending"}),
        Kind::Event => {}
    }
    let created = {
        let mut cluster = inner.lock();
        if cluster.objects.contains_key(&key_of(kind, &object)) {
            return failure(
                409,
                "AlreadyExists",
                &format!("{resource} \"{name}\" already exists"),
            );
        }
        let change = cluster.put(kind, object, "ADDED");
        let created = (*change.object).clone();
        let _ = inner.changes.send(change);
        created
    };
    match kind {
        Kind::Pod => {
            tokio::spawn(kubelet::run_pod(inner.clone(), created.clone()));
        }
        Kind::PersistentVolumeClaim => {
            let inner = inner.clone();
            let bound = created.clone();
            tokio::spawn(async move {
                tokio::time::sleep(inner.options.step).await;
                let mut cluster = inner.lock();
                let key = key_of(Kind::PersistentVolumeClaim, &bound);
                if let Some(mut pvc) = cluster.objects.get(&key).cloned() {
                    pvc["status"]["phase"] = json!("Bound");
                    let change = cluster.put(Kind::PersistentVolumeClaim, pvc, "MODIFIED");
                    let _ = inner.changes.send(change);
                }
            });
        }
        Kind::Event => {}
    }
    json_response(StatusCode::CREATED, &created)
}

async fn delete(
    State(inner): State<Arc<Inner>>,
    Path((namespace, resource, name)): Path<(String, String, String)>,
    Query(params): Query<Params>,
    body: Bytes,
) -> Response {
    let Some(kind) = Kind::from_resource(&resource) else {
        return unknown_resource(&resource);
    };
    inner.count(format!("delete {resource}"));
    let options: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let key = (kind, namespace.clone(), name.clone());
    let Some(object) = inner.lock().objects.get(&key).cloned() else {
        return failure(404, "NotFound", &format!("{resource} \"{name}\" not found"));
    };
    let uid = object["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if let Some(wanted) = options["preconditions"]["uid"].as_str() {
        if wanted != uid {
            return failure(
                409,
                "Conflict",
                &format!(
                    "Precondition failed: UID in precondition: {wanted}, UID in object meta: {uid}"
                ),
            );
        }
    }
    if kind != Kind::Pod {
        remove(&inner, &key);
        return json_response(StatusCode::OK, &object);
    }
    if !object["metadata"]["deletionTimestamp"].is_null() {
        return json_response(StatusCode::OK, &object);
    }
    let grace = options["gracePeriodSeconds"]
        .as_u64()
        .or_else(|| {
            params
                .get("gracePeriodSeconds")
                .and_then(|g| g.parse().ok())
        })
        .or_else(|| object["spec"]["terminationGracePeriodSeconds"].as_u64())
        .unwrap_or(30);
    let scheduled = !object["spec"]["nodeName"].is_null();
    if grace == 0 || !scheduled {
        if let Some(runtime) = inner.take_runtime(&uid) {
            if let kubelet::Runtime::Process(pid) = runtime {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            } else if let kubelet::Runtime::InProcess(stop) = runtime {
                let _ = stop.send(());
            }
        }
        remove(&inner, &key);
        return json_response(StatusCode::OK, &object);
    }
    // Graceful: marked, the container stopped within the grace period, then gone.
    let at = chrono::Utc::now() + chrono::Duration::seconds(grace as i64);
    let marked = {
        let mut cluster = inner.lock();
        let mut pod = object.clone();
        pod["metadata"]["deletionTimestamp"] = json!(at.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        pod["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        let change = cluster.put(Kind::Pod, pod, "MODIFIED");
        let marked = (*change.object).clone();
        let _ = inner.changes.send(change);
        marked
    };
    inner.pod_event(&marked, "Normal", "Killing", "Stopping container notebook");
    let stopper = inner.clone();
    tokio::spawn(async move {
        stopper
            .stop_container(&uid, Duration::from_secs(grace))
            .await;
        remove(&stopper, &key);
    });
    json_response(StatusCode::OK, &marked)
}

async fn pod_log(
    State(inner): State<Arc<Inner>>,
    Path((namespace, name)): Path<(String, String)>,
    Query(params): Query<Params>,
) -> Response {
    inner.count("log pods".to_string());
    let Some(pod) = inner
        .lock()
        .objects
        .get(&(Kind::Pod, namespace, name.clone()))
        .cloned()
    else {
        return failure(404, "NotFound", &format!("pods \"{name}\" not found"));
    };
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let text = inner
        .logs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(uid)
        .cloned();
    let Some(text) = text else {
        return failure(
            400,
            "BadRequest",
            &format!("container \"notebook\" in pod \"{name}\" is waiting to start"),
        );
    };
    let text = match params
        .get("tailLines")
        .and_then(|n| n.parse::<usize>().ok())
    {
        Some(n) => {
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(n);
            let mut tail = lines[from..].join("\n");
            tail.push('\n');
            tail
        }
        None => text,
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], text).into_response()
}
