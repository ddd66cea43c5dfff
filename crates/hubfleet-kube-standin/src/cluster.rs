//! The stand-in's state: objects by kind, namespace and name, one resource version counter for
//! all of them (as etcd's revision), and the history of changes that watches resume from.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{json, Value};

/// Changes kept for watches to resume from; older ones are compacted away (a watch from before
/// them gets 410 Gone).
const HISTORY: usize = 200_000;

/// The kinds of object the stand-in serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Pod,
    PersistentVolumeClaim,
    Event,
}

impl Kind {
    /// From the plural resource name of a URL.
    pub fn from_resource(resource: &str) -> Option<Kind> {
        match resource {
            "pods" => Some(Kind::Pod),
            "persistentvolumeclaims" => Some(Kind::PersistentVolumeClaim),
            "events" => Some(Kind::Event),
            _ => None,
        }
    }

    pub fn resource(self) -> &'static str {
        match self {
            Kind::Pod => "pods",
            Kind::PersistentVolumeClaim => "persistentvolumeclaims",
            Kind::Event => "events",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::PersistentVolumeClaim => "PersistentVolumeClaim",
            Kind::Event => "Event",
        }
    }
}

/// One change, as a watch sends it.
#[derive(Clone, Debug)]
pub struct Change {
    pub rv: u64,
    pub kind: Kind,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind_of_change: &'static str,
    pub object: Arc<Value>,
}

pub type Key = (Kind, String, String);

#[derive(Default)]
pub struct Cluster {
    /// The last resource version handed out.
    pub rv: u64,
    /// The oldest resource version a watch may resume from.
    pub floor: u64,
    pub objects: BTreeMap<Key, Value>,
    pub history: VecDeque<Change>,
}

impl Cluster {
    /// Store `object` (its `resourceVersion` set) and record the change.
    pub fn put(&mut self, kind: Kind, mut object: Value, change: &'static str) -> Change {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let key = key_of(kind, &object);
        self.objects.insert(key, object.clone());
        self.record(kind, object, change)
    }

    /// Remove an object and record its deletion.
    pub fn remove(&mut self, key: &Key) -> Option<Change> {
        let mut object = self.objects.remove(key)?;
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        Some(self.record(key.0, object, "DELETED"))
    }

    fn record(&mut self, kind: Kind, object: Value, change: &'static str) -> Change {
        let change = Change {
            rv: self.rv,
            kind,
            kind_of_change: change,
            object: Arc::new(object),
        };
        self.history.push_back(change.clone());
        while self.history.len() > HISTORY {
            if let Some(old) = self.history.pop_front() {
                self.floor = old.rv;
            }
        }
        change
    }

    /// Forget the history: watches from before now get 410 Gone. A revision is used up, as
    /// other writes in a real cluster would, so every watcher is behind the new floor.
    pub fn compact(&mut self) {
        self.rv += 1;
        self.floor = self.rv;
        self.history.clear();
    }
}

pub fn key_of(kind: Kind, object: &Value) -> Key {
    let text = |key: &str| {
        object["metadata"][key]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    (kind, text("namespace"), text("name"))
}

/// A label selector of equality terms: `a=b`, `a==b`, `a!=b`, `a`, `!a`.
pub fn labels_match(selector: Option<&str>, object: &Value) -> bool {
    let Some(selector) = selector.filter(|s| !s.trim().is_empty()) else {
        return true;
    };
    let labels = &object["metadata"]["labels"];
    selector.split(',').all(|term| {
        let term = term.trim();
        if let Some((key, value)) = term.split_once("!=") {
            labels[key.trim()].as_str() != Some(value.trim())
        } else if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
            labels[key.trim()].as_str() == Some(value.trim())
        } else if let Some(key) = term.strip_prefix('!') {
            labels[key.trim()].is_null()
        } else {
            !labels[term].is_null()
        }
    })
}

/// A field selector of `path=value` / `path!=value` terms over the object's JSON
/// (`involvedObject.kind=Pod`, `metadata.name=x`, `status.phase=Running`).
pub fn fields_match(selector: Option<&str>, object: &Value) -> bool {
    let Some(selector) = selector.filter(|s| !s.trim().is_empty()) else {
        return true;
    };
    let at = |path: &str| {
        let mut node = object;
        for part in path.trim().split('.') {
            node = &node[part];
        }
        node.as_str().unwrap_or_default().to_string()
    };
    selector.split(',').all(|term| {
        if let Some((path, value)) = term.split_once("!=") {
            at(path) != value.trim()
        } else if let Some((path, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
            at(path) == value.trim()
        } else {
            true
        }
    })
}

/// A memory quantity in bytes (`1G`, `512Mi`, `1073741824`), as Kubernetes reads it.
pub fn memory_bytes(quantity: &Value) -> u64 {
    let text = match quantity {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return 0,
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().unwrap_or(0.0);
    let factor: f64 = match suffix {
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        _ => 1.0,
    };
    (number * factor) as u64
}

/// `{"kind": "Status", …}` as the API server writes failures.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

/// The time as the API server writes it.
pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let pod = json!({"metadata": {"labels": {"component": "singleuser-server", "release": "a"}},
            "involvedObject": {"kind": "Pod"}});
        assert!(labels_match(
            Some("component=singleuser-server,release=a"),
            &pod
        ));
        assert!(!labels_match(
            Some("component=singleuser-server,release=b"),
            &pod
        ));
        assert!(labels_match(Some("release!=b,component"), &pod));
        assert!(!labels_match(Some("!component"), &pod));
        assert!(fields_match(Some("involvedObject.kind=Pod"), &pod));
        assert!(!fields_match(Some("involvedObject.kind=Node"), &pod));
    }

    #[test]
    fn quantities() {
        assert_eq!(memory_bytes(&json!("1Gi")), 1 << 30);
        assert_eq!(memory_bytes(&json!("1G")), 1_000_000_000);
        assert_eq!(memory_bytes(&json!(1073741824)), 1 << 30);
        assert_eq!(memory_bytes(&json!("1.5Ki")), 1536);
    }

    #[test]
    fn compaction_puts_every_watcher_behind() {
        let mut cluster = Cluster::default();
        cluster.put(
            Kind::Pod,
            json!({"metadata": {"name": "a", "namespace": "n"}}),
            "ADDED",
        );
        let seen = cluster.rv;
        cluster.compact();
        assert!(seen < cluster.floor);
        assert!(cluster.history.is_empty());
    }
}
