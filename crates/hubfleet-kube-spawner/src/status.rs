//! What a pod's status and events say, for people: pure functions over k8s-openapi objects, so
//! the rules are tested without a cluster.

use k8s_openapi::api::core::v1::{ContainerState, ContainerStatus, Event, Pod};

use hubfleet_spawn::SpawnProgress;

/// The container that runs the server, as KubeSpawner names it.
pub const SERVER_CONTAINER: &str = "notebook";

/// Waiting reasons that only say a container is on its way.
const ON_THE_WAY: &[&str] = &["ContainerCreating", "PodInitializing"];

/// KubeSpawner's `is_pod_running`: phase Running, an IP, not being deleted, every container
/// ready.
pub fn is_running(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    status.phase.as_deref() == Some("Running")
        && status.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty())
        && pod.metadata.deletion_timestamp.is_none()
        && status
            .container_statuses
            .as_ref()
            .is_some_and(|all| !all.is_empty() && all.iter().all(|c| c.ready))
}

fn server_container(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == SERVER_CONTAINER)
}

/// The server container's exit code when it has ended (KubeSpawner's `poll`), or the pod is
/// done (`Failed`, `Succeeded`: `None` when no container says more).
pub fn ended(pod: &Pod) -> Option<Option<i32>> {
    let terminated = server_container(pod)
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref());
    if let Some(terminated) = terminated {
        return Some(Some(terminated.exit_code));
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Failed" | "Succeeded")).then_some(None)
}

/// Why a server that ended ended, when it is worth more than an exit code: the kernel killed
/// it at its memory limit (`OOMKilled`, now or before the container's last restart), or the
/// node evicted the pod.
pub fn exit_reason(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    if status.reason.as_deref() == Some("Evicted") {
        let why = status.message.as_deref().unwrap_or("by its node");
        return Some(format!("evicted: {why}"));
    }
    let container = server_container(pod)?;
    let oom = [container.state.as_ref(), container.last_state.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|s| s.terminated.as_ref())
        .any(|t| t.reason.as_deref() == Some("OOMKilled"));
    if !oom {
        return None;
    }
    Some(match memory_limit(pod) {
        Some(limit) => format!("killed: memory limit {limit} reached (OOMKilled)"),
        None => "killed: out of memory (OOMKilled)".to_string(),
    })
}

/// The server container's memory limit, as people write it (`1G`; KubeSpawner writes bytes).
fn memory_limit(pod: &Pod) -> Option<String> {
    let container = pod
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == SERVER_CONTAINER)?;
    let limits = container.resources.as_ref()?.limits.as_ref()?;
    let quantity = &limits.get("memory")?.0;
    Some(match quantity.parse::<u64>() {
        Ok(bytes) => hubfleet_spawn::format_bytes(bytes),
        Err(_) => quantity.clone(),
    })
}

/// A container that waits for something other than its turn: `ImagePullBackOff: …`.
fn stuck_container(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let containers = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    containers
        .filter_map(|c| {
            c.state
                .as_ref()
                .and_then(|s: &ContainerState| s.waiting.as_ref())
        })
        .find_map(|waiting| {
            let reason = waiting.reason.as_deref()?;
            if ON_THE_WAY.contains(&reason) {
                return None;
            }
            Some(match waiting.message.as_deref() {
                Some(message) if !message.is_empty() => format!("{reason}: {message}"),
                _ => reason.to_string(),
            })
        })
}

/// A pod that no node takes: `Unschedulable: 0/3 nodes are available: …`.
fn unscheduled(pod: &Pod) -> Option<String> {
    let condition = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
    let reason = condition.reason.as_deref().unwrap_or("Unschedulable");
    Some(match condition.message.as_deref() {
        Some(message) if !message.is_empty() => format!("{reason}: {message}"),
        _ => reason.to_string(),
    })
}

/// `reason: message` of an event.
pub fn event_text(event: &Event) -> String {
    let message = event.message.as_deref().unwrap_or("").trim();
    match event.reason.as_deref() {
        Some(reason) if !message.is_empty() => format!("{reason}: {message}"),
        Some(reason) => reason.to_string(),
        None => message.to_string(),
    }
}

/// Why a pod has not started: what its containers wait for, else why no node takes it, else
/// its last warning, else its last event.
pub fn why_not_running(pod: Option<&Pod>, events: &[Event]) -> String {
    if let Some(pod) = pod {
        if let Some(reason) = stuck_container(pod).or_else(|| unscheduled(pod)) {
            return reason;
        }
    }
    let warning = events
        .iter()
        .rev()
        .find(|e| e.type_.as_deref() == Some("Warning"));
    if let Some(event) = warning.or_else(|| events.last()) {
        return event_text(event);
    }
    match pod
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.phase.as_deref())
    {
        Some(phase) => format!("the pod is {phase}"),
        None => "the pod was not created".to_string(),
    }
}

/// Why a pod that ended before it was running ended.
pub fn why_ended(pod: &Pod, events: &[Event]) -> String {
    if let Some(reason) = exit_reason(pod) {
        return reason;
    }
    let terminated = server_container(pod)
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref());
    match terminated {
        Some(t) => {
            let reason = t.reason.as_deref().unwrap_or("Error");
            match t.message.as_deref().filter(|m| !m.is_empty()) {
                Some(message) => format!("{reason} (exit status {}): {message}", t.exit_code),
                None => format!("{reason} (exit status {})", t.exit_code),
            }
        }
        None => why_not_running(Some(pod), events),
    }
}

/// A pod event as a step of the start ("Pulling image …" at 40 %).
pub fn progress_of(event: &Event) -> SpawnProgress {
    let message = event.message.as_deref().unwrap_or("").trim();
    let (text, percent) = match event.reason.as_deref() {
        Some("Scheduled") => (format!("Pod scheduled: {message}"), Some(20)),
        Some("Pulling") => (message.to_string(), Some(40)),
        Some("Pulled") => (message.to_string(), Some(70)),
        Some("Created") => (message.to_string(), Some(80)),
        Some("Started") => (message.to_string(), Some(90)),
        _ => (event_text(event), None),
    };
    let progress = SpawnProgress::new(text);
    match percent {
        Some(percent) => progress.with_percent(percent),
        None => progress,
    }
}

/// Events in the order they happened: by their last time, then as the API server recorded
/// them (resource versions are opaque, but increase with etcd's revision in practice).
pub fn in_order(events: &mut [Event]) {
    let when = |e: &Event| {
        e.last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or_else(|| e.event_time.as_ref().map(|t| t.0))
            .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
    };
    let revision = |e: &Event| {
        e.metadata
            .resource_version
            .as_deref()
            .and_then(|rv| rv.parse::<u64>().ok())
            .unwrap_or(0)
    };
    events.sort_by(|a, b| when(a).cmp(&when(b)).then(revision(a).cmp(&revision(b))));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "jupyter-alice"},
            "spec": {"containers": [{"name": "notebook", "image": "x",
                "resources": {"limits": {"memory": "1G"}}}]},
            "status": status,
        }))
        .unwrap()
    }

    fn event(kind: &str, reason: &str, message: &str, rv: &str) -> Event {
        serde_json::from_value(json!({
            "metadata": {"name": format!("e{rv}"), "resourceVersion": rv},
            "involvedObject": {"kind": "Pod", "name": "jupyter-alice"},
            "type": kind, "reason": reason, "message": message,
        }))
        .unwrap()
    }

    #[test]
    fn running_needs_an_ip_and_every_container_ready() {
        let ready = json!({"phase": "Running", "podIP": "10.0.0.5",
            "containerStatuses": [{"name": "notebook", "ready": true, "restartCount": 0, "image": "x", "imageID": ""}]});
        assert!(is_running(&pod(ready.clone())));
        let mut no_ip = ready.clone();
        no_ip["podIP"] = json!(null);
        assert!(!is_running(&pod(no_ip)));
        let mut unready = ready;
        unready["containerStatuses"][0]["ready"] = json!(false);
        assert!(!is_running(&pod(unready)));
        assert!(!is_running(&pod(json!({"phase": "Pending"}))));
    }

    #[test]
    fn a_stuck_image_pull_is_the_reason_before_any_event() {
        let stuck = pod(json!({"phase": "Pending", "containerStatuses": [{
            "name": "notebook", "ready": false, "restartCount": 0, "image": "nope", "imageID": "",
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"nope\": not found"}}}]}));
        let events = [event("Normal", "Pulling", "Pulling image \"nope\"", "3")];
        assert_eq!(
            why_not_running(Some(&stuck), &events),
            "ImagePullBackOff: Back-off pulling image \"nope\": not found"
        );
    }

    #[test]
    fn unschedulable_pods_say_why_no_node_takes_them() {
        let pending = pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient memory."}]}),
        );
        assert_eq!(
            why_not_running(Some(&pending), &[]),
            "Unschedulable: 0/1 nodes are available: 1 Insufficient memory."
        );
    }

    #[test]
    fn otherwise_the_last_warning_then_the_last_event() {
        let mut events = vec![
            event("Warning", "FailedMount", "no volume", "2"),
            event("Normal", "Scheduled", "assigned", "1"),
            event("Normal", "Pulling", "Pulling image \"x\"", "3"),
        ];
        in_order(&mut events);
        assert_eq!(why_not_running(None, &events), "FailedMount: no volume");
        assert_eq!(why_not_running(None, &events[..1]), "Scheduled: assigned");
        assert_eq!(why_not_running(None, &[]), "the pod was not created");
    }

    #[test]
    fn oom_kills_name_the_limit() {
        let killed = pod(json!({"phase": "Failed", "containerStatuses": [{
            "name": "notebook", "ready": false, "restartCount": 0, "image": "x", "imageID": "",
            "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}));
        assert_eq!(ended(&killed), Some(Some(137)));
        assert_eq!(
            exit_reason(&killed).as_deref(),
            Some("killed: memory limit 1G reached (OOMKilled)")
        );
        let evicted = pod(
            json!({"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}),
        );
        assert_eq!(ended(&evicted), Some(None));
        assert_eq!(
            exit_reason(&evicted).as_deref(),
            Some("evicted: The node was low on resource: memory.")
        );
        let fine = pod(json!({"phase": "Running"}));
        assert_eq!(ended(&fine), None);
        assert_eq!(exit_reason(&fine), None);
    }

    #[test]
    fn events_become_steps_with_percentages() {
        let pulling = progress_of(&event(
            "Normal",
            "Pulling",
            "Pulling image \"jupyter/x:1\"",
            "1",
        ));
        assert_eq!(pulling.message, "Pulling image \"jupyter/x:1\"");
        assert_eq!(pulling.percent, Some(40));
        let warning = progress_of(&event("Warning", "FailedScheduling", "0/1 nodes", "2"));
        assert_eq!(warning.message, "FailedScheduling: 0/1 nodes");
        assert_eq!(warning.percent, None);
    }
}
