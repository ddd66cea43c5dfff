//! The pieces of a pod that are compared with KubeSpawner's (by `tests/kube_pod_reference.rs`,
//! the export's tests, and the export's README): image, command, env, resources, volumes,
//! scheduling, … each a JSON value, so that two pods can be compared field by field.

use std::collections::BTreeMap;

use serde_json::Value as Json;

/// `null`s dropped (the Kubernetes client leaves out unset fields; nested ones may show as null).
pub fn without_nulls(v: &Json) -> Json {
    match v {
        Json::Object(m) => Json::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Json::Array(a) => Json::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Quantities: KubeSpawner sends numbers (`1073741824`, `0.5`), the Kubernetes types strings.
pub fn quantities(v: &Json) -> Json {
    match v {
        Json::Object(m) => {
            Json::Object(m.iter().map(|(k, v)| (k.clone(), quantities(v))).collect())
        }
        Json::Number(n) => Json::from(n.as_f64().unwrap_or(0.0)),
        Json::String(s) => s
            .parse::<f64>()
            .map(Json::from)
            .unwrap_or_else(|_| Json::String(s.clone())),
        other => other.clone(),
    }
}

/// The fields compared, each a piece of the pod (or the PVCs).
pub fn pod_fields(doc: &Json) -> BTreeMap<&'static str, Json> {
    let items = doc["items"].as_array().cloned().unwrap_or_default();
    let pod = without_nulls(items.first().unwrap_or(&Json::Null));
    let spec = &pod["spec"];
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    let notebook = containers
        .iter()
        .find(|c| c["name"] == "notebook")
        .cloned()
        .unwrap_or(Json::Null);
    let pick = |v: &Json, keys: &[&str]| -> Json {
        Json::Object(
            keys.iter()
                .filter_map(|k| v.get(*k).map(|x| (k.to_string(), x.clone())))
                .collect(),
        )
    };
    let mut env = notebook["env"].clone();
    for e in env.as_array_mut().into_iter().flatten() {
        if matches!(
            e["name"].as_str(),
            Some("JUPYTERHUB_API_TOKEN" | "JPY_API_TOKEN")
        ) {
            e["value"] = Json::String("<token>".into());
        }
    }
    let mut out = BTreeMap::new();
    out.insert("image", pick(&notebook, &["image", "imagePullPolicy"]));
    out.insert(
        "command and args",
        pick(&notebook, &["command", "args", "workingDir", "ports"]),
    );
    out.insert("env", env);
    out.insert("resources", quantities(&notebook["resources"]));
    out.insert("volumes", spec["volumes"].clone());
    out.insert("volume mounts", notebook["volumeMounts"].clone());
    out.insert(
        "scheduling",
        pick(
            spec,
            &[
                "nodeSelector",
                "tolerations",
                "affinity",
                "schedulerName",
                "priorityClassName",
            ],
        ),
    );
    out.insert(
        "security context",
        Json::Array(vec![
            spec["securityContext"].clone(),
            notebook["securityContext"].clone(),
        ]),
    );
    out.insert("init containers", spec["initContainers"].clone());
    out.insert("lifecycle hooks", notebook["lifecycle"].clone());
    out.insert(
        "service account",
        pick(
            spec,
            &["serviceAccountName", "automountServiceAccountToken"],
        ),
    );
    out.insert(
        "extra containers",
        Json::Array(
            containers
                .iter()
                .filter(|c| c["name"] != "notebook")
                .cloned()
                .collect(),
        ),
    );
    out.insert("labels", pod["metadata"]["labels"].clone());
    out.insert("annotations", pod["metadata"]["annotations"].clone());
    out.insert("name", pod["metadata"]["name"].clone());
    out.insert(
        "pod spec (the rest)",
        pick(spec, &["restartPolicy", "imagePullSecrets"]),
    );
    let pvcs: Vec<Json> = items
        .iter()
        .skip(1)
        .map(|p| quantities(&without_nulls(p)))
        .collect();
    out.insert("pvcs", Json::Array(pvcs));
    out
}
