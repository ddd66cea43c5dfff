//! The two watches every server shares: a reflector over the hub's user pods and one over the
//! events about pods in the namespace. `poll`, the wait for a pod to run and the exit reasons
//! read their stores, so servers at rest cost no API calls; only the two open watches remain.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often a wait for the first list says it is still waiting.
const SYNC_NAG: Duration = Duration::from_secs(30);

/// The shared watches of one spawner. Dropping it ends them.
pub(crate) struct Watches {
    pub pods: Store<Pod>,
    pub events: Store<Event>,
    namespace: String,
    /// Bumped after each change either store took in.
    changed: watch::Receiver<u64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Watches {
    /// Start watching the pods that match `pod_selector` (and the pod events) in `namespace`.
    pub fn start(client: kube::Client, namespace: &str, pod_selector: &str) -> Watches {
        let (notify, changed) = watch::channel(0u64);
        let notify = Arc::new(notify);
        let (pods, pod_task) = reflect(
            Api::<Pod>::namespaced(client.clone(), namespace),
            watcher::Config::default().labels(pod_selector),
            notify.clone(),
            "pods",
        );
        let (events, event_task) = reflect(
            Api::<Event>::namespaced(client, namespace),
            watcher::Config::default().fields("involvedObject.kind=Pod"),
            notify,
            "events",
        );
        Watches {
            pods,
            events,
            namespace: namespace.to_string(),
            changed,
            tasks: vec![pod_task, event_task],
        }
    }

    /// A receiver that sees each change of the stores.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.clone()
    }

    /// Until both stores hold a first full list. Says so in the log while it waits (the API
    /// server may be unreachable): guessing instead would stop servers that still run.
    pub async fn synced(&self) {
        loop {
            let both = async {
                let _ = self.pods.wait_until_ready().await;
                let _ = self.events.wait_until_ready().await;
            };
            if tokio::time::timeout(SYNC_NAG, both).await.is_ok() {
                return;
            }
            tracing::warn!(
                namespace = %self.namespace,
                "still waiting for the first list of user pods from the Kubernetes API"
            );
        }
    }

    /// The pod `name`, when it is the one with `uid` (a pod made again under the same name is
    /// another server's).
    pub fn pod(&self, name: &str, uid: Option<&str>) -> Option<Arc<Pod>> {
        let pod = self
            .pods
            .get(&ObjectRef::new(name).within(&self.namespace))?;
        match uid {
            Some(uid) if pod.metadata.uid.as_deref() != Some(uid) => None,
            _ => Some(pod),
        }
    }

    /// The events about the pod `name` (with `uid`, when known), in the order they happened.
    pub fn events_of(&self, name: &str, uid: Option<&str>) -> Vec<Event> {
        let mut events: Vec<Event> = self
            .events
            .state()
            .iter()
            .filter(|e| {
                let about = &e.involved_object;
                about.name.as_deref() == Some(name)
                    && (uid.is_none() || about.uid.is_none() || about.uid.as_deref() == uid)
            })
            .map(|e| (**e).clone())
            .collect();
        crate::status::in_order(&mut events);
        events
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A reflector over `api` in a task of its own: a list, then one watch that resumes from the
/// last resource version (bookmarks keep it fresh), listing again only when the API server
/// answers 410 Gone. Errors are retried with backoff, never fatal.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    notify: Arc<watch::Sender<u64>>,
    what: &'static str,
) -> (Store<K>, JoinHandle<()>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => {
                    if matches!(event, watcher::Event::Init) {
                        tracing::debug!(what, "listing");
                    }
                    notify.send_modify(|n| *n = n.wrapping_add(1));
                }
                Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                    tracing::info!(
                        what,
                        "the watch fell too far behind (410 Gone); listing again"
                    );
                }
                Err(e) => tracing::warn!(what, error = %e, "watching the Kubernetes API; retrying"),
            }
        }
    });
    (reader, task)
}
