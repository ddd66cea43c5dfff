//! KubeSpawner's `get_pod_manifest`, `make_pod`, `get_pvc_manifest` and `make_pvc`, over the
//! spawner's settings: the manifest is built as the JSON KubeSpawner sends, then read into
//! k8s-openapi's types.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value as Json};
use serde_yaml_ng::{Mapping, Value};

use crate::error::KubeError;
use crate::python;
use crate::slug::{is_valid_label, safe_slug};
use crate::spawner::Spawner;

/// The tag that marks a container hubfleet made itself (z2jh's `block-cloud-metadata`): used as
/// it is, without template expansion, as KubeSpawner treats model objects.
pub(crate) const MODEL_TAG: &str = "!hubfleet-model";

/// The KubeSpawner and JupyterHub versions whose behaviour is modelled, as KubeSpawner writes
/// them in its annotations.
pub const KUBESPAWNER_VERSION: &str = "7.1.0";
/// See [`KUBESPAWNER_VERSION`].
pub const JUPYTERHUB_VERSION: &str = "5.5.0";

/// `snake_case` → `camelCase` (the Kubernetes client maps a model's attribute names so).
fn camel(key: &str) -> String {
    if !key.contains('_') {
        return key.to_owned();
    }
    let mut out = String::new();
    let mut up = false;
    for c in key.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.push(c.to_ascii_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// YAML → JSON (keys as strings, tags dropped).
pub(crate) fn to_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!(i)
            } else if let Some(u) = n.as_u64() {
                json!(u)
            } else {
                json!(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => Json::String(s.clone()),
        Value::Sequence(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                out.insert(python::str_of(k), to_json(v));
            }
            Json::Object(out)
        }
        Value::Tagged(t) => to_json(&t.value),
    }
}

/// A Kubernetes object given as a mapping, as KubeSpawner's `get_k8s_model` reads it: its own
/// keys may be `snake_case` or `camelCase`; what is below them is kept as written.
pub(crate) fn model(value: &Value, from: &str) -> Result<Json, KubeError> {
    let Json::Object(map) = to_json(value) else {
        return Err(KubeError::invalid(from, "each item must be a mapping"));
    };
    Ok(Json::Object(
        map.into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (camel(&k), v))
            .collect(),
    ))
}

/// The environment KubeSpawner gives the notebook container, before sorting: name → value
/// (a string, or a mapping like `{valueFrom: …}`).
pub(crate) type Env = Mapping;

/// Python's `fmt_ip_url`: IPv6 addresses in brackets.
fn fmt_ip_url(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    }
}

/// JupyterHub's `Spawner.get_env` (the spawner's part) and KubeSpawner's `get_env`.
pub(crate) fn environment(
    spawner: &Spawner,
    hub_env: &BTreeMap<String, String>,
    server_base_url: &str,
    user_options: &crate::UserOptions,
    binder: bool,
) -> Result<Env, KubeError> {
    let mut env = Mapping::new();
    let put = |env: &mut Mapping, k: &str, v: String| {
        env.insert(Value::String(k.to_owned()), Value::String(v));
    };
    for (k, v) in hub_env {
        put(&mut env, k, v.clone());
    }
    let port = effective_port(spawner)?;
    let ip = spawner.string("ip")?.unwrap_or_default();
    put(
        &mut env,
        "JUPYTERHUB_SERVICE_URL",
        format!("http://{}:{port}{server_base_url}", fmt_ip_url(&ip)),
    );
    if let Some(m) = spawner.bytes("mem_limit")?.filter(|m| *m != 0) {
        put(&mut env, "MEM_LIMIT", m.to_string());
    }
    if let Some(m) = spawner.bytes("mem_guarantee")?.filter(|m| *m != 0) {
        put(&mut env, "MEM_GUARANTEE", m.to_string());
    }
    if let Some(c) = spawner.float("cpu_limit")?.filter(|c| *c != 0.0) {
        put(&mut env, "CPU_LIMIT", python::float_repr(c));
    }
    if let Some(c) = spawner.float("cpu_guarantee")?.filter(|c| *c != 0.0) {
        put(&mut env, "CPU_GUARANTEE", python::float_repr(c));
    }
    // Spawner.format_string: {username} and {base_url}
    let format_string = |name: &str| -> Result<Option<String>, KubeError> {
        let Some(template) = spawner.string(name)?.filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let lookup = |f: &str| match f {
            "username" => Some(spawner.user_name.clone()),
            "base_url" => Some(server_base_url.to_owned()),
            _ => None,
        };
        python::format(&template, &lookup, false)
            .map(Some)
            .map_err(|e| KubeError::invalid(spawner.from(name), e.0))
    };
    if let Some(dir) = format_string("notebook_dir")? {
        put(&mut env, "JUPYTERHUB_ROOT_DIR", dir);
    }
    if let Some(url) = format_string("default_url")? {
        put(&mut env, "JUPYTERHUB_DEFAULT_URL", url);
    }
    if spawner.flag("debug")?.unwrap_or(false) {
        put(&mut env, "JUPYTERHUB_DEBUG", "1".into());
    }
    if spawner.flag("disable_user_config")?.unwrap_or(false) {
        put(&mut env, "JUPYTERHUB_DISABLE_USER_CONFIG", "1".into());
    }
    let environment = spawner.mapping("environment")?;
    // Spawner.get_env takes them as they are; KubeSpawner then sets the expanded strings, lists
    // and mappings over them.
    for (k, v) in &environment {
        env.insert(k.clone(), v.clone());
    }
    let image = spawner.string("image")?.unwrap_or_default();
    put(&mut env, "JUPYTER_IMAGE_SPEC", image.clone());
    put(&mut env, "JUPYTER_IMAGE", image);
    let from = spawner.from("environment");
    for (k, v) in &environment {
        if matches!(v, Value::String(_) | Value::Sequence(_) | Value::Mapping(_)) {
            env.insert(k.clone(), spawner.expand_all(v, &from)?);
        }
    }
    if binder {
        if let Some(repo) = user_options.get("repo_url") {
            env.insert(Value::String("BINDER_REPO_URL".into()), repo.clone());
        }
        for key in [
            "binder_ref_url",
            "binder_launch_host",
            "binder_persistent_request",
            "binder_request",
        ] {
            if let Some(v) = user_options.get(key) {
                env.insert(Value::String(key.to_uppercase()), v.clone());
            }
        }
    }
    Ok(env)
}

/// KubeSpawner's port: `port` when set, else 8888.
pub(crate) fn effective_port(spawner: &Spawner) -> Result<i64, KubeError> {
    Ok(match spawner.int("port")? {
        Some(0) | None => 8888,
        Some(p) => p,
    })
}

/// `make_pod`'s ordering of env vars: those whose `$(NAME)` references are already defined come
/// first, by key, round after round; whatever is left (cycles) last, by key.
fn sorted_env(env: &Env) -> Result<Vec<Json>, KubeError> {
    struct Var {
        key: String,
        name: String,
        deps: BTreeSet<String>,
        json: Json,
    }
    let reference = regex::Regex::new(r"\$\(([^\)]+)\)").expect("a valid pattern");
    let mut unsorted: Vec<Var> = Vec::new();
    for (k, v) in env {
        let key = python::str_of(k);
        let json = match v {
            Value::Mapping(_) => {
                let mut m = model(v, &format!("environment.{key}"))?;
                if m.get("name").is_none() {
                    m["name"] = Json::String(key.clone());
                }
                m
            }
            Value::Null => json!({ "name": key }),
            Value::String(s) => json!({ "name": key, "value": s }),
            other => json!({ "name": key, "value": python::str_of(other) }),
        };
        let name = json["name"].as_str().unwrap_or(&key).to_owned();
        let deps = match json.get("value").and_then(Json::as_str) {
            Some(value) if !value.is_empty() => reference
                .captures_iter(value)
                .map(|c| c[1].to_owned())
                .filter(|d| *d != name)
                .collect(),
            _ => BTreeSet::new(),
        };
        // a later key with the same name replaces the earlier one (a dict keyed by name)
        unsorted.retain(|v| v.name != name);
        unsorted.push(Var {
            key,
            name,
            deps,
            json,
        });
    }
    let mut sorted: Vec<Var> = Vec::new();
    loop {
        let resolved: BTreeSet<String> = sorted.iter().map(|v| v.name.clone()).collect();
        let (mut ready, rest): (Vec<Var>, Vec<Var>) = unsorted
            .into_iter()
            .partition(|v| v.deps.is_subset(&resolved));
        unsorted = rest;
        if ready.is_empty() {
            unsorted.sort_by(|a, b| a.key.cmp(&b.key));
            sorted.extend(unsorted);
            break;
        }
        ready.sort_by(|a, b| a.key.cmp(&b.key));
        sorted.extend(ready);
    }
    Ok(sorted.into_iter().map(|v| v.json).collect())
}

/// A security context given as a mapping: its keys must be Kubernetes' camelCase names.
fn security_context(spawner: &Spawner, name: &str) -> Result<Map<String, Json>, KubeError> {
    let value = spawner.mapping(name)?;
    let mut out = Map::new();
    for (k, v) in &value {
        let k = python::str_of(k);
        if k.contains('_') {
            return Err(KubeError::invalid(
                spawner.from(name),
                format!("keys must be Kubernetes' camelCase names, got '{k}'"),
            ));
        }
        out.insert(k, to_json(v));
    }
    Ok(out)
}

fn list_of_models(items: &[Value], from: &str) -> Result<Vec<Json>, KubeError> {
    items
        .iter()
        .enumerate()
        .map(|(i, v)| model(v, &format!("{from}[{i}]")))
        .collect()
}

fn expanded_models(spawner: &Spawner, name: &str) -> Result<Vec<Json>, KubeError> {
    let from = spawner.from(name);
    let items = spawner.sorted_values(name)?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        // containers hubfleet made itself are used as they are
        let item = match item {
            Value::Tagged(t) if t.tag == MODEL_TAG => t.value.clone(),
            other => spawner.expand_all(other, &from)?,
        };
        out.push(model(&item, &format!("{from}[{i}]"))?);
    }
    Ok(out)
}

/// A quantity as KubeSpawner sends it: a float for CPUs, bytes for memory, anything else as
/// given.
fn quantity(v: &Value) -> Json {
    match v {
        Value::String(s) => Json::String(s.clone()),
        Value::Number(n) if n.is_f64() => {
            Json::String(python::float_repr(n.as_f64().unwrap_or(0.0)))
        }
        Value::Number(n) => Json::String(n.to_string()),
        other => Json::String(python::str_of(other)),
    }
}

/// KubeSpawner's `update_k8s_model`: each key of `changes` (snake or camel case) replaces that
/// field of `target`.
fn update_model(target: &mut Json, changes: &Mapping) {
    for (k, v) in changes {
        let key = camel(&python::str_of(k));
        target[&key] = to_json(v);
    }
}

/// The labels KubeSpawner gives everything it makes for a user (`_build_common_labels`).
pub(crate) fn common_labels(
    spawner: &Spawner,
    extra: &Mapping,
) -> Result<Map<String, Json>, KubeError> {
    let mut labels = Map::new();
    labels.insert(
        "hub.jupyter.org/username".into(),
        Json::String(safe_slug(&spawner.user_name, is_valid_label, None)),
    );
    for (k, v) in extra {
        labels.insert(python::str_of(k), Json::String(python::str_of(v)));
    }
    for (k, v) in spawner.mapping("common_labels")? {
        labels.insert(python::str_of(&k), Json::String(python::str_of(&v)));
    }
    Ok(labels)
}

/// `_build_common_annotations`.
pub(crate) fn common_annotations(spawner: &Spawner, extra: &Mapping) -> Map<String, Json> {
    let mut annotations = Map::new();
    annotations.insert(
        "hub.jupyter.org/username".into(),
        Json::String(spawner.user_name.clone()),
    );
    if !spawner.server_name.is_empty() {
        annotations.insert(
            "hub.jupyter.org/servername".into(),
            Json::String(spawner.server_name.clone()),
        );
    }
    annotations.insert(
        "hub.jupyter.org/kubespawner-version".into(),
        Json::String(KUBESPAWNER_VERSION.into()),
    );
    annotations.insert(
        "hub.jupyter.org/jupyterhub-version".into(),
        Json::String(JUPYTERHUB_VERSION.into()),
    );
    for (k, v) in extra {
        annotations.insert(python::str_of(k), Json::String(python::str_of(v)));
    }
    annotations
}

fn expanded_mapping(spawner: &Spawner, name: &str) -> Result<Mapping, KubeError> {
    let value = Value::Mapping(spawner.mapping(name)?);
    match spawner.expand_all(&value, &spawner.from(name))? {
        Value::Mapping(m) => Ok(m),
        _ => Ok(Mapping::new()),
    }
}

/// `get_pod_manifest` + `make_pod`, as JSON.
pub(crate) fn pod_manifest(
    spawner: &Spawner,
    env: &Env,
    args: Vec<String>,
) -> Result<Json, KubeError> {
    let cmd = match spawner.get("cmd") {
        Value::Null => None,
        Value::String(s) => Some(vec![s]),
        Value::Sequence(items) => Some(items.iter().map(python::str_of).collect()),
        _ => {
            return Err(KubeError::invalid(
                spawner.from("cmd"),
                "must be a command: a string or a list of strings",
            ))
        }
    };
    // an empty command is "the image's own"
    let real_cmd = cmd.filter(|c| !c.is_empty()).map(|mut c| {
        c.extend(args);
        c
    });

    let extra_labels = expanded_mapping(spawner, "extra_labels")?;
    let mut labels = common_labels(spawner, &extra_labels)?;
    let component = spawner.string("component_label")?.unwrap_or_default();
    labels.insert(
        "app.kubernetes.io/component".into(),
        Json::String(component.clone()),
    );
    labels.insert("component".into(), Json::String(component));
    labels.insert(
        "hub.jupyter.org/servername".into(),
        Json::String(safe_slug(&spawner.server_name, is_valid_label, None)),
    );
    let annotations = common_annotations(spawner, &expanded_mapping(spawner, "extra_annotations")?);

    let mut spec = Map::new();
    spec.insert("containers".into(), json!([]));
    spec.insert("restartPolicy".into(), json!("OnFailure"));
    let pull_secrets: Vec<Json> = match spawner.get("image_pull_secrets") {
        Value::String(s) => vec![json!({ "name": s })],
        Value::Sequence(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(json!({ "name": s })),
                other => model(other, &spawner.from("image_pull_secrets")),
            })
            .collect::<Result<_, _>>()?,
        Value::Null => Vec::new(),
        _ => {
            return Err(KubeError::invalid(
                spawner.from("image_pull_secrets"),
                "must be a list of secret names",
            ))
        }
    };
    spec.insert("imagePullSecrets".into(), Json::Array(pull_secrets));
    let node_selector = spawner.mapping("node_selector")?;
    if !node_selector.is_empty() {
        spec.insert(
            "nodeSelector".into(),
            to_json(&Value::Mapping(node_selector)),
        );
    }

    let mut psc = Map::new();
    if let Some(g) = spawner.int("fs_gid")? {
        psc.insert("fsGroup".into(), json!(g));
    }
    let supplemental = spawner.sorted_values("supplemental_gids")?;
    if !supplemental.is_empty() {
        let gids: Vec<i64> = supplemental
            .iter()
            .map(|g| {
                g.as_i64().ok_or_else(|| {
                    KubeError::invalid(spawner.from("supplemental_gids"), "must be whole numbers")
                })
            })
            .collect::<Result<_, _>>()?;
        psc.insert("supplementalGroups".into(), json!(gids));
    }
    psc.extend(security_context(spawner, "pod_security_context")?);
    if !psc.is_empty() {
        spec.insert("securityContext".into(), Json::Object(psc));
    }
    let mut csc = Map::new();
    if let Some(u) = spawner.int("uid")? {
        csc.insert("runAsUser".into(), json!(u));
    }
    if let Some(g) = spawner.int("gid")? {
        csc.insert("runAsGroup".into(), json!(g));
    }
    if spawner.flag("privileged")?.unwrap_or(false) {
        csc.insert("privileged".into(), json!(true));
    }
    if let Some(a) = spawner.flag("allow_privilege_escalation")? {
        csc.insert("allowPrivilegeEscalation".into(), json!(a));
    }
    csc.extend(security_context(spawner, "container_security_context")?);

    let port = effective_port(spawner)?;
    let mut container = Map::new();
    container.insert("name".into(), json!("notebook"));
    container.insert("image".into(), json!(spawner.string("image")?));
    if let Some(dir) = spawner.string("working_dir")? {
        let dir = spawner
            .expand(&dir)
            .map_err(|e| KubeError::invalid(spawner.from("working_dir"), e))?;
        container.insert("workingDir".into(), json!(dir));
    }
    container.insert(
        "ports".into(),
        json!([{ "name": "notebook-port", "containerPort": port }]),
    );
    container.insert("env".into(), Json::Array(sorted_env(env)?));
    if let Some(cmd) = real_cmd {
        container.insert("args".into(), json!(cmd));
    }
    if let Some(policy) = spawner.string("image_pull_policy")? {
        container.insert("imagePullPolicy".into(), json!(policy));
    }
    let hooks = spawner.mapping("lifecycle_hooks")?;
    let lifecycle = if hooks.is_empty() {
        json!({})
    } else {
        model(&Value::Mapping(hooks), &spawner.from("lifecycle_hooks"))?
    };
    container.insert("lifecycle".into(), lifecycle);

    let mut requests = Map::new();
    if let Some(c) = spawner.float("cpu_guarantee")?.filter(|c| *c != 0.0) {
        requests.insert("cpu".into(), Json::String(python::float_repr(c)));
    }
    if let Some(m) = spawner.bytes("mem_guarantee")?.filter(|m| *m != 0) {
        requests.insert("memory".into(), Json::String(m.to_string()));
    }
    for (k, v) in spawner.mapping("extra_resource_guarantees")? {
        requests.insert(python::str_of(&k), quantity(&v));
    }
    let mut limits = Map::new();
    if let Some(c) = spawner.float("cpu_limit")?.filter(|c| *c != 0.0) {
        limits.insert("cpu".into(), Json::String(python::float_repr(c)));
    }
    if let Some(m) = spawner.bytes("mem_limit")?.filter(|m| *m != 0) {
        limits.insert("memory".into(), Json::String(m.to_string()));
    }
    for (k, v) in spawner.mapping("extra_resource_limits")? {
        limits.insert(python::str_of(&k), quantity(&v));
    }
    container.insert(
        "resources".into(),
        json!({ "requests": requests, "limits": limits }),
    );

    let mounts_from = spawner.from("volume_mounts");
    let mounts = spawner.expand_all(
        &Value::Sequence(spawner.sorted_values("volume_mounts")?),
        &mounts_from,
    )?;
    let mounts = list_of_models(
        mounts.as_sequence().map(Vec::as_slice).unwrap_or(&[]),
        &mounts_from,
    )?;
    container.insert("volumeMounts".into(), Json::Array(mounts));
    if !csc.is_empty() {
        container.insert("securityContext".into(), Json::Object(csc));
    }
    let mut container = Json::Object(container);
    let extra_container_config = spawner.mapping("extra_container_config")?;
    update_model(&mut container, &extra_container_config);

    if let Some(sa) = spawner.string("service_account")? {
        let sa = spawner
            .expand(&sa)
            .map_err(|e| KubeError::invalid(spawner.from("service_account"), e))?;
        spec.insert("serviceAccountName".into(), json!(sa));
    }
    match spawner.flag("automount_service_account_token")? {
        None if spawner.string("service_account")?.is_none() => {
            spec.insert("automountServiceAccountToken".into(), json!(false));
        }
        None => {}
        Some(a) => {
            spec.insert("automountServiceAccountToken".into(), json!(a));
        }
    }

    let mut containers = vec![container];
    containers.extend(expanded_models(spawner, "extra_containers")?);
    spec.insert("containers".into(), Json::Array(containers));
    let tolerations = spawner.sorted_values("tolerations")?;
    if !tolerations.is_empty() {
        spec.insert(
            "tolerations".into(),
            Json::Array(list_of_models(&tolerations, &spawner.from("tolerations"))?),
        );
    }
    let init = expanded_models(spawner, "init_containers")?;
    if !init.is_empty() {
        spec.insert("initContainers".into(), Json::Array(init));
    }
    let volumes_from = spawner.from("volumes");
    let volumes = spawner.expand_all(
        &Value::Sequence(spawner.sorted_values("volumes")?),
        &volumes_from,
    )?;
    let volumes = list_of_models(
        volumes.as_sequence().map(Vec::as_slice).unwrap_or(&[]),
        &volumes_from,
    )?;
    spec.insert("volumes".into(), Json::Array(volumes));
    if let Some(name) = spawner.string("scheduler_name")?.filter(|s| !s.is_empty()) {
        spec.insert("schedulerName".into(), json!(name));
    }

    let terms = |name: &str| -> Result<Vec<Json>, KubeError> {
        list_of_models(&spawner.sorted_values(name)?, &spawner.from(name))
    };
    let mut affinity = Map::new();
    let (np, nr) = (
        terms("node_affinity_preferred")?,
        terms("node_affinity_required")?,
    );
    if !np.is_empty() || !nr.is_empty() {
        let mut node = Map::new();
        if !np.is_empty() {
            node.insert(
                "preferredDuringSchedulingIgnoredDuringExecution".into(),
                Json::Array(np),
            );
        }
        if !nr.is_empty() {
            node.insert(
                "requiredDuringSchedulingIgnoredDuringExecution".into(),
                json!({ "nodeSelectorTerms": nr }),
            );
        }
        affinity.insert("nodeAffinity".into(), Json::Object(node));
    }
    for (kind, preferred, required) in [
        (
            "podAffinity",
            "pod_affinity_preferred",
            "pod_affinity_required",
        ),
        (
            "podAntiAffinity",
            "pod_anti_affinity_preferred",
            "pod_anti_affinity_required",
        ),
    ] {
        let (p, r) = (terms(preferred)?, terms(required)?);
        if p.is_empty() && r.is_empty() {
            continue;
        }
        let mut part = Map::new();
        if !p.is_empty() {
            part.insert(
                "preferredDuringSchedulingIgnoredDuringExecution".into(),
                Json::Array(p),
            );
        }
        if !r.is_empty() {
            part.insert(
                "requiredDuringSchedulingIgnoredDuringExecution".into(),
                Json::Array(r),
            );
        }
        affinity.insert(kind.into(), Json::Object(part));
    }
    if !affinity.is_empty() {
        spec.insert("affinity".into(), Json::Object(affinity));
    }
    if let Some(p) = spawner
        .string("priority_class_name")?
        .filter(|s| !s.is_empty())
    {
        spec.insert("priorityClassName".into(), json!(p));
    }
    let mut spec = Json::Object(spec);
    let extra_pod_config = expanded_mapping(spawner, "extra_pod_config")?;
    update_model(&mut spec, &extra_pod_config);

    Ok(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": spawner.pod_name,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    }))
}

/// What a PVC is made of (`make_pvc`'s arguments).
pub(crate) struct PvcSpec<'a> {
    pub(crate) name: &'a str,
    /// `singleuser-storage` for the home PVC (KubeSpawner), another for basehub's extra ones.
    pub(crate) component: &'a str,
    pub(crate) extra_labels: &'a Mapping,
    pub(crate) extra_annotations: &'a Mapping,
    pub(crate) storage_class: &'a Value,
    pub(crate) access_modes: &'a Value,
    pub(crate) selector: &'a Mapping,
    pub(crate) storage: &'a Value,
}

/// `make_pvc` with the labels and annotations KubeSpawner gives a user's PVC.
pub(crate) fn pvc_manifest(spawner: &Spawner, pvc: &PvcSpec<'_>) -> Result<Json, KubeError> {
    let mut labels = common_labels(spawner, pvc.extra_labels)?;
    labels.extend(component_labels(spawner, pvc.component)?);
    let mut annotations = common_annotations(spawner, pvc.extra_annotations);
    let mut spec = Map::new();
    spec.insert("accessModes".into(), to_json(pvc.access_modes));
    let storage = match pvc.storage {
        Value::Null => Json::Null,
        v => quantity(v),
    };
    spec.insert(
        "resources".into(),
        json!({ "requests": { "storage": storage } }),
    );
    if !pvc.storage_class.is_null() {
        let class = python::str_of(pvc.storage_class);
        annotations.insert(
            "volume.beta.kubernetes.io/storage-class".into(),
            json!(class),
        );
        spec.insert("storageClassName".into(), json!(class));
    }
    if !pvc.selector.is_empty() {
        spec.insert(
            "selector".into(),
            to_json(&Value::Mapping(pvc.selector.clone())),
        );
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": { "name": pvc.name, "labels": labels, "annotations": annotations },
        "spec": spec,
    }))
}

fn component_labels(spawner: &Spawner, component: &str) -> Result<Map<String, Json>, KubeError> {
    let mut m = Map::new();
    if component == "singleuser-storage" {
        let label = spawner.string("component_label")?.unwrap_or_default();
        m.insert("app.kubernetes.io/component".into(), Json::String(label));
    }
    m.insert("component".into(), Json::String(component.to_owned()));
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_sorted_as_kubespawner() {
        let env: Mapping = serde_yaml_ng::from_str(
            "B: $(A)x\nA: a\nC: $(D)\nD: $(C)\nE: {valueFrom: {secretKeyRef: {name: s, key: k}}}\n",
        )
        .unwrap();
        let sorted = sorted_env(&env).unwrap();
        let names: Vec<&str> = sorted.iter().map(|e| e["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["A", "E", "B", "C", "D"]);
        assert_eq!(sorted[1]["valueFrom"]["secretKeyRef"]["key"], "k");
    }

    #[test]
    fn camel_case_keys() {
        assert_eq!(camel("value_from"), "valueFrom");
        assert_eq!(camel("mountPath"), "mountPath");
    }
}
