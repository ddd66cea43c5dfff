//! What the stand-in does in place of a scheduler, a kubelet and a container runtime: a pod is
//! scheduled (or not), its images pulled (or not), its server container run, and on deletion
//! stopped within its grace period, each step a change of the pod's status and a pod event.
//!
//! The server container runs either in process (a tiny HTTP server on the pod's IP that
//! answers like a single-user server's readiness probe) or as a local process: the container's
//! command with the pod's environment, as a stand-in for the image.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;
use tokio::sync::oneshot;

use crate::cluster::{memory_bytes, now, Kind};
use crate::Inner;

/// The one node of the stand-in.
pub const NODE: &str = "standin-node";
/// The server container, as KubeSpawner names it.
const SERVER_CONTAINER: &str = "notebook";
/// Most of a pod's log kept.
const LOG_LIMIT: usize = 1 << 20;

/// How the server container of a running pod is run.
#[derive(Clone, Debug, Default)]
pub enum Containers {
    /// An HTTP server inside the stand-in, on the pod's IP and port, that answers every path
    /// with 200 (`…/api` with a version, as jupyter-server does): cheap enough for hundreds of
    /// pods.
    #[default]
    InProcess,
    /// The container's command and arguments as a local process, with the pod's environment
    /// (`JUPYTERHUB_SERVICE_URL` on the pod's IP), `PATH` set to `path` and `HOME` to a
    /// directory of its own under `homes`; `extra_args` appended (e.g. `--allow-root`).
    Processes {
        path: String,
        homes: PathBuf,
        extra_args: Vec<String>,
    },
}

/// A running server container.
pub(crate) enum Runtime {
    InProcess(oneshot::Sender<()>),
    Process(i32),
}

impl Runtime {
    /// Ask the container to stop (SIGTERM for a process).
    fn terminate(self) -> Option<i32> {
        match self {
            Runtime::InProcess(stop) => {
                let _ = stop.send(());
                None
            }
            Runtime::Process(pid) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
                Some(pid)
            }
        }
    }
}

impl Inner {
    /// Record a pod event (as the kubelet or the scheduler would).
    pub(crate) fn pod_event(&self, pod: &Value, kind: &str, reason: &str, message: &str) {
        let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let source = if reason == "Scheduled" || reason == "FailedScheduling" {
            "default-scheduler"
        } else {
            "kubelet"
        };
        let at = now();
        let mut cluster = self.lock();
        let seq = cluster.rv + 1;
        let event = json!({
            "kind": "Event",
            "apiVersion": "v1",
            "metadata": {
                "name": format!("{name}.{seq:016x}"),
                "namespace": namespace,
                "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": at,
            },
            "involvedObject": {
                "kind": "Pod",
                "apiVersion": "v1",
                "namespace": namespace,
                "name": name,
                "uid": pod["metadata"]["uid"],
                "fieldPath": if source == "kubelet" { "spec.containers{notebook}" } else { "" },
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": source, "host": NODE},
            "firstTimestamp": at,
            "lastTimestamp": at,
            "count": 1,
            "reportingComponent": source,
            "reportingInstance": NODE,
        });
        let change = cluster.put(Kind::Event, event, "ADDED");
        let _ = self.changes.send(change);
    }

    /// Change the pod `namespace/name` if it is still the one with `uid` and not being deleted;
    /// the pod as changed.
    pub(crate) fn update_pod(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        change: impl FnOnce(&mut Value),
    ) -> Option<Value> {
        let mut cluster = self.lock();
        let key = (Kind::Pod, namespace.to_string(), name.to_string());
        let pod = cluster.objects.get(&key)?;
        if pod["metadata"]["uid"].as_str() != Some(uid)
            || !pod["metadata"]["deletionTimestamp"].is_null()
        {
            return None;
        }
        let mut pod = pod.clone();
        change(&mut pod);
        let changed = cluster.put(Kind::Pod, pod.clone(), "MODIFIED");
        let _ = self.changes.send(changed);
        Some(pod)
    }

    pub(crate) fn log_line(&self, uid: &str, line: &str) {
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        let log = logs.entry(uid.to_string()).or_default();
        log.push_str(line.trim_end_matches('\n'));
        log.push('\n');
        if log.len() > LOG_LIMIT {
            let cut = log.len() - LOG_LIMIT;
            let cut = (cut..log.len())
                .find(|i| log.is_char_boundary(*i))
                .unwrap_or(0);
            log.drain(..cut);
        }
    }

    fn next_ip(&self) -> IpAddr {
        let mut cluster_ips = self.ips.lock().unwrap_or_else(|e| e.into_inner());
        let n = *cluster_ips;
        *cluster_ips += 1;
        let [a, b] = self.ip_prefix;
        let third = b.wrapping_add((n / 250) as u8);
        IpAddr::from([127, a, third, (n % 250) as u8 + 1])
    }
}

/// Memory the pod asks for, summed over its containers.
fn requested_memory(pod: &Value) -> u64 {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| memory_bytes(&c["resources"]["requests"]["memory"]))
        .sum()
}

fn container_status(container: &Value, state: Value, ready: bool) -> Value {
    json!({
        "name": container["name"],
        "image": container["image"],
        "imageID": "",
        "ready": ready,
        "started": ready,
        "restartCount": 0,
        "state": state,
    })
}

fn condition(kind: &str, status: bool, reason: Option<&str>, message: Option<&str>) -> Value {
    let mut c = json!({
        "type": kind,
        "status": if status { "True" } else { "False" },
        "lastTransitionTime": now(),
    });
    if let Some(reason) = reason {
        c["reason"] = json!(reason);
    }
    if let Some(message) = message {
        c["message"] = json!(message);
    }
    c
}

/// Drive a new pod to Running, or to where it gets stuck.
pub(crate) async fn run_pod(inner: Arc<Inner>, pod: Value) {
    let namespace = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let name = pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let uid = pod["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let step = inner.options.step;
    let update = |change: &dyn Fn(&mut Value)| inner.update_pod(&namespace, &name, &uid, change);

    tokio::time::sleep(step).await;
    // Scheduling: the node's memory and labels.
    let selector = pod["spec"]["nodeSelector"].as_object().cloned();
    let unschedulable = if requested_memory(&pod) > inner.options.node_memory {
        Some("0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.")
    } else if selector.is_some_and(|s| {
        s.iter()
            .any(|(k, v)| inner.options.node_labels.get(k).map(String::as_str) != v.as_str())
    }) {
        Some("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.")
    } else {
        None
    };
    if let Some(message) = unschedulable {
        let Some(pod) = update(&|p| {
            p["status"]["conditions"] = json!([condition(
                "PodScheduled",
                false,
                Some("Unschedulable"),
                Some(message)
            )]);
        }) else {
            return;
        };
        inner.pod_event(&pod, "Warning", "FailedScheduling", message);
        return;
    }
    let ip = inner.next_ip();
    let Some(pod) = update(&|p| {
        p["spec"]["nodeName"] = json!(NODE);
        p["status"]["hostIP"] = json!("127.0.0.1");
        p["status"]["podIP"] = json!(ip.to_string());
        p["status"]["podIPs"] = json!([{"ip": ip.to_string()}]);
        p["status"]["startTime"] = json!(now());
        p["status"]["conditions"] = json!([
            condition("PodScheduled", true, None, None),
            condition("Initialized", false, Some("ContainersNotInitialized"), None),
            condition("Ready", false, Some("ContainersNotReady"), None),
        ]);
        let waiting = |c: &Value| {
            container_status(c, json!({"waiting": {"reason": "PodInitializing"}}), false)
        };
        p["status"]["initContainerStatuses"] = json!(p["spec"]["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(waiting)
            .collect::<Vec<_>>());
        p["status"]["containerStatuses"] = json!(p["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(waiting)
            .collect::<Vec<_>>());
    }) else {
        return;
    };
    inner.pod_event(
        &pod,
        "Normal",
        "Scheduled",
        &format!("Successfully assigned {namespace}/{name} to {NODE}"),
    );

    // Init containers run to completion (their images are taken as present).
    let inits = pod["spec"]["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (i, init) in inits.iter().enumerate() {
        let cname = init["name"].as_str().unwrap_or_default();
        inner.pod_event(
            &pod,
            "Normal",
            "Pulled",
            &format!(
                "Container image {} already present on machine",
                init["image"]
            ),
        );
        inner.pod_event(
            &pod,
            "Normal",
            "Created",
            &format!("Created container {cname}"),
        );
        inner.pod_event(
            &pod,
            "Normal",
            "Started",
            &format!("Started container {cname}"),
        );
        let at = now();
        if update(&|p| {
            p["status"]["initContainerStatuses"][i] = container_status(
                init,
                json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": at, "finishedAt": at}}),
                false,
            );
        })
        .is_none()
        {
            return;
        }
    }

    // Images: pulled, or stuck in ImagePullBackOff.
    let containers = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (i, container) in containers.iter().enumerate() {
        let image = container["image"].as_str().unwrap_or_default().to_string();
        inner.pod_event(
            &pod,
            "Normal",
            "Pulling",
            &format!("Pulling image \"{image}\""),
        );
        tokio::time::sleep(step).await;
        if inner.is_missing(&image) {
            let error = format!(
                "rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": {image}: not found"
            );
            inner.pod_event(
                &pod,
                "Warning",
                "Failed",
                &format!("Failed to pull image \"{image}\": {error}"),
            );
            inner.pod_event(&pod, "Warning", "Failed", "Error: ErrImagePull");
            update(&|p| {
                p["status"]["containerStatuses"][i]["state"] =
                    json!({"waiting": {"reason": "ErrImagePull", "message": error}});
            });
            tokio::time::sleep(step).await;
            inner.pod_event(
                &pod,
                "Normal",
                "BackOff",
                &format!("Back-off pulling image \"{image}\""),
            );
            inner.pod_event(&pod, "Warning", "Failed", "Error: ImagePullBackOff");
            update(&|p| {
                p["status"]["containerStatuses"][i]["state"] = json!({"waiting": {
                    "reason": "ImagePullBackOff",
                    "message": format!("Back-off pulling image \"{image}\": ErrImagePull: {image}: not found"),
                }});
            });
            return;
        }
        inner.pod_event(
            &pod,
            "Normal",
            "Pulled",
            &format!(
                "Successfully pulled image \"{image}\" in {}ms",
                step.as_millis()
            ),
        );
    }

    // Run: the server container for real (in process or as a process), the others as ready.
    for container in &containers {
        let cname = container["name"].as_str().unwrap_or_default();
        inner.pod_event(
            &pod,
            "Normal",
            "Created",
            &format!("Created container {cname}"),
        );
        if cname == SERVER_CONTAINER {
            let runtime = match start_container(&inner, &pod, container, ip).await {
                Ok(runtime) => runtime,
                Err(message) => {
                    inner.log_line(&uid, &message);
                    let at = now();
                    update(&|p| {
                        p["status"]["phase"] = json!("Failed");
                        p["status"]["containerStatuses"][0]["state"] = json!({"terminated": {
                            "exitCode": 128, "reason": "StartError", "message": message,
                            "startedAt": at, "finishedAt": at}});
                    });
                    inner.pod_event(&pod, "Warning", "Failed", &format!("Error: {message}"));
                    return;
                }
            };
            inner
                .runtimes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(uid.clone(), runtime);
        }
        inner.pod_event(
            &pod,
            "Normal",
            "Started",
            &format!("Started container {cname}"),
        );
    }
    let at = now();
    let running = update(&|p| {
        p["status"]["phase"] = json!("Running");
        p["status"]["conditions"] = json!([
            condition("PodScheduled", true, None, None),
            condition("Initialized", true, None, None),
            condition("ContainersReady", true, None, None),
            condition("Ready", true, None, None),
        ]);
        p["status"]["containerStatuses"] = json!(containers
            .iter()
            .map(|c| container_status(c, json!({"running": {"startedAt": at}}), true))
            .collect::<Vec<_>>());
    });
    if running.is_none() {
        // Deleted meanwhile: the deletion stops what was started.
        if let Some(runtime) = inner.take_runtime(&uid) {
            runtime.terminate();
        }
    }
}

impl Inner {
    pub(crate) fn take_runtime(&self, uid: &str) -> Option<Runtime> {
        self.runtimes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid)
    }

    fn is_missing(&self, image: &str) -> bool {
        self.missing_images
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|m| m == image)
    }

    /// Stop the pod's server container within `grace` (SIGKILL after it, for a process).
    pub(crate) async fn stop_container(&self, uid: &str, grace: Duration) {
        let Some(runtime) = self.take_runtime(uid) else {
            return;
        };
        match runtime.terminate() {
            None => tokio::time::sleep(self.options.stop_time.min(grace)).await,
            Some(pid) => {
                let deadline = tokio::time::Instant::now() + grace;
                while tokio::time::Instant::now() < deadline && process_alive(pid) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                if process_alive(pid) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        self.log_line(uid, "[stand-in] container stopped");
    }
}

fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The port the server container listens on.
fn container_port(container: &Value) -> u16 {
    container["ports"][0]["containerPort"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(8888)
}

async fn start_container(
    inner: &Arc<Inner>,
    pod: &Value,
    container: &Value,
    ip: IpAddr,
) -> Result<Runtime, String> {
    let uid = pod["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let port = container_port(container);
    match &inner.options.containers {
        Containers::InProcess => {
            let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, port))
                .await
                .map_err(|e| format!("cannot listen on {ip}:{port}: {e}"))?;
            let (stop, stopped) = oneshot::channel::<()>();
            let log_inner = inner.clone();
            let log_uid = uid.clone();
            let name = pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
                let inner = log_inner.clone();
                let uid = log_uid.clone();
                let name = name.clone();
                async move {
                    inner.log_line(&uid, &format!("[stand-in] GET {uri} 200"));
                    if uri.path().ends_with("/api") {
                        axum::Json(json!({"version": "2.0.0"})).into_response()
                    } else {
                        format!("stand-in server of pod {name}\n").into_response()
                    }
                }
            });
            inner.log_line(
                &uid,
                &format!("[stand-in] server container listening on {ip}:{port}"),
            );
            tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
            Ok(Runtime::InProcess(stop))
        }
        Containers::Processes {
            path,
            homes,
            extra_args,
        } => {
            let mut argv: Vec<String> = [&container["command"], &container["args"]]
                .into_iter()
                .filter_map(|v| v.as_array())
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect();
            argv.extend(extra_args.iter().cloned());
            let Some(program) = argv.first().cloned() else {
                return Err(
                    "the container has no command (the image's entrypoint is not modelled)".into(),
                );
            };
            let name = pod["metadata"]["name"].as_str().unwrap_or_default();
            let home = homes.join(name);
            std::fs::create_dir_all(&home).map_err(|e| format!("{}: {e}", home.display()))?;
            let env = container_env(pod, container, ip, port);
            let mut command = tokio::process::Command::new(&program);
            command
                .args(&argv[1..])
                .env_clear()
                .envs(env)
                .env("PATH", path)
                .env("HOME", &home)
                .current_dir(&home)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .kill_on_drop(false);
            let mut child = command
                .spawn()
                .map_err(|e| format!("cannot run {program}: {e}"))?;
            let pid = child
                .id()
                .and_then(|p| i32::try_from(p).ok())
                .ok_or("the container's process has no pid")?;
            for output in [
                child
                    .stdout
                    .take()
                    .map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
                child
                    .stderr
                    .take()
                    .map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            ]
            .into_iter()
            .flatten()
            {
                let inner = inner.clone();
                let uid = uid.clone();
                tokio::spawn(async move {
                    let mut lines = tokio::io::BufReader::new(output).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        inner.log_line(&uid, &line);
                    }
                });
            }
            let watcher = inner.clone();
            let namespace = pod["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let pod_name = name.to_string();
            tokio::spawn(async move {
                let code = child
                    .wait()
                    .await
                    .ok()
                    .and_then(|s| s.code())
                    .unwrap_or(137);
                // Ended on its own (a deletion has taken the runtime first).
                if watcher.take_runtime(&uid).is_some() {
                    let at = now();
                    let reason = if code == 0 { "Completed" } else { "Error" };
                    watcher.update_pod(&namespace, &pod_name, &uid, |p| {
                        p["status"]["phase"] =
                            json!(if code == 0 { "Succeeded" } else { "Failed" });
                        p["status"]["containerStatuses"][0]["ready"] = json!(false);
                        p["status"]["containerStatuses"][0]["state"] = json!({"terminated": {
                            "exitCode": code, "reason": reason, "finishedAt": at}});
                    });
                }
            });
            Ok(Runtime::Process(pid))
        }
    }
}

/// The container's environment as the kubelet makes it: literal values, and the `fieldRef`s a
/// pod can name; `JUPYTERHUB_SERVICE_URL` on the pod's IP (where `0.0.0.0` would listen).
fn container_env(
    pod: &Value,
    container: &Value,
    ip: IpAddr,
    port: u16,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for var in container["env"].as_array().into_iter().flatten() {
        let Some(name) = var["name"].as_str() else {
            continue;
        };
        let value = if let Some(value) = var["value"].as_str() {
            Some(value.to_string())
        } else {
            match var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.name") => pod["metadata"]["name"].as_str().map(str::to_string),
                Some("metadata.namespace") => {
                    pod["metadata"]["namespace"].as_str().map(str::to_string)
                }
                Some("status.podIP") => Some(ip.to_string()),
                Some("spec.nodeName") => Some(NODE.to_string()),
                _ => None,
            }
        };
        if let Some(value) = value {
            env.insert(name.to_string(), value);
        }
    }
    if let Some(url) = env.get_mut("JUPYTERHUB_SERVICE_URL") {
        let path = url
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()))
            .unwrap_or_else(|| "/".to_string());
        *url = format!("http://{ip}:{port}{path}");
    }
    env
}
