//! `render k8s` for a Dask hub (`dask-gateway.enabled`): the gateway is not rendered as objects
//! of ours. It is installed with the upstream `dask-gateway` Helm chart (as daskhub depends on
//! it), with values made here from the `dask-gateway:` section; the hub's values get the service
//! the gateway registers as, and the scope users need. See docs/kubernetes.md, "Dask hub".

use hubfleet_config::dask::{DaskGateway, DEFAULT_SERVICE_NAME};
use hubfleet_config::values::Values;
use serde_yaml_ng::{Mapping, Value};

/// The chart daskhub depends on, and the version the local gateway is tested with.
pub const CHART_REPO: &str = "https://helm.dask.org";
pub const CHART_NAME: &str = "dask-gateway";
pub const CHART_VERSION: &str = "2026.3.0";

/// What `render k8s` says and writes for the gateway.
pub struct GatewayChart {
    /// Values for the upstream chart.
    pub values: Value,
    /// The Helm release to install it as (its traefik Service is `traefik-<release>`).
    pub release: String,
}

/// Take `dask-gateway:` out of the hub's values (on Kubernetes the hub does not run the gateway)
/// and add what the hub needs to know of it. `None` on hubs without the gateway.
pub fn prepare(
    merged: Values,
    release: &str,
    namespace: &str,
) -> anyhow::Result<(Values, Option<GatewayChart>)> {
    let enabled = merged
        .get("dask-gateway.enabled")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !enabled {
        return Ok((merged, None));
    }
    let mut doc = merged.into_value();
    let section = doc
        .as_mapping_mut()
        .and_then(|m| m.remove("dask-gateway"))
        .unwrap_or(Value::Null);
    let typed: DaskGateway = serde_yaml_ng::from_value(strip_unread(&section))
        .map_err(|e| anyhow::anyhow!("dask-gateway: {e} (`hubfleet check` says where)"))?;
    let name = typed.service_name().to_owned();
    let gateway_release = format!("{release}-{CHART_NAME}");
    // The hub registers the gateway as a service (its token goes in the hub Secret under
    // `hub.services.<name>.apiToken`, which the chart reads) and routes /services/<name>/ to
    // the chart's traefik.
    let service = entry(entry(entry(&mut doc, "hub"), "services"), &name);
    let service = service.as_mapping_mut().expect("a mapping");
    service
        .entry("url".into())
        .or_insert_with(|| format!("http://traefik-{gateway_release}.{namespace}").into());
    service
        .entry("display".into())
        .or_insert(Value::Bool(false));
    let scope = format!("access:services!service={name}");
    let role = entry(entry(entry(&mut doc, "hub"), "loadRoles"), "user");
    let scopes = role
        .as_mapping_mut()
        .expect("a mapping")
        .entry("scopes".into())
        .or_insert_with(|| Value::Sequence(vec!["self".into()]));
    if let Some(list) = scopes.as_sequence_mut() {
        if !list.iter().any(|s| s.as_str() == Some(scope.as_str())) {
            list.push(scope.into());
        }
    }
    Ok((
        Values::new(doc),
        Some(GatewayChart {
            values: chart_values(&section, &typed, &name),
            release: gateway_release,
        }),
    ))
}

/// The section without what only hubfleet reads and what the typed model ignores (Kubernetes
/// keys), for reading `service_name` and the limits.
fn strip_unread(section: &Value) -> Value {
    let mut out = Mapping::new();
    if let Some(gateway) = section.get("gateway") {
        let mut g = Mapping::new();
        for key in ["auth", "clusterManager", "prefix"] {
            if let Some(v) = gateway.get(key) {
                let v = if key == "auth" {
                    let mut a = Mapping::new();
                    if let Some(j) = v
                        .get("jupyterhub")
                        .and_then(|j| j.get("jupyterhubServiceName"))
                    {
                        let mut jm = Mapping::new();
                        jm.insert("jupyterhubServiceName".into(), j.clone());
                        a.insert("jupyterhub".into(), Value::Mapping(jm));
                    }
                    Value::Mapping(a)
                } else {
                    v.clone()
                };
                g.insert(key.into(), v);
            }
        }
        out.insert("gateway".into(), Value::Mapping(g));
    }
    Value::Mapping(out)
}

/// The chart's values: the section as given (it is the chart's), without `enabled` and
/// hubfleet's `local`; the prefix and JupyterHub auth the hub needs; `clusterManager` (ours) as
/// `extraConfig`.
fn chart_values(section: &Value, typed: &DaskGateway, name: &str) -> Value {
    let mut values = section.clone();
    if let Some(m) = values.as_mapping_mut() {
        m.remove("enabled");
        m.remove("local");
    }
    let gateway = entry(&mut values, "gateway");
    gateway
        .as_mapping_mut()
        .expect("a mapping")
        .insert("prefix".into(), format!("/services/{name}").into());
    let code: String = typed
        .gateway
        .cluster_manager
        .cluster_config()
        .into_iter()
        .map(|(key, value)| format!("c.{key} = {value}\n"))
        .collect();
    let gm = gateway.as_mapping_mut().expect("a mapping");
    gm.remove("clusterManager");
    if !code.is_empty() {
        let extra = gm
            .entry("extraConfig".into())
            .or_insert_with(|| Value::Mapping(Mapping::new()));
        if let Some(extra) = extra.as_mapping_mut() {
            extra.insert("hubfleet-cluster-limits".into(), code.into());
        }
    }
    let auth = entry(gateway, "auth");
    auth.as_mapping_mut()
        .expect("a mapping")
        .insert("type".into(), "jupyterhub".into());
    let jupyterhub = entry(auth, "jupyterhub");
    let jm = jupyterhub.as_mapping_mut().expect("a mapping");
    // z2jh's hub Service, and the token the hub Secret holds for the service.
    jm.insert("apiUrl".into(), "http://hub:8081/hub/api".into());
    jm.insert("apiTokenFromSecretName".into(), "hub".into());
    jm.insert(
        "apiTokenFromSecretKey".into(),
        format!("hub.services.{name}.apiToken").into(),
    );
    if name != DEFAULT_SERVICE_NAME {
        jm.insert("jupyterhubServiceName".into(), name.into());
    }
    let traefik = entry(entry(&mut values, "traefik"), "service");
    traefik
        .as_mapping_mut()
        .expect("a mapping")
        .entry("type".into())
        .or_insert_with(|| "ClusterIP".into());
    values
}

/// The mapping at `key` of `value` (made, or replacing a non-mapping).
fn entry<'a>(value: &'a mut Value, key: &str) -> &'a mut Value {
    if !value.is_mapping() {
        *value = Value::Mapping(Mapping::new());
    }
    let map = value.as_mapping_mut().expect("a mapping");
    let slot = map
        .entry(key.into())
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if !slot.is_mapping() {
        *slot = Value::Mapping(Mapping::new());
    }
    slot
}

/// The `helm` command that installs the gateway with `values_file`.
pub fn helm_command(chart: &GatewayChart, namespace: &str, values_file: &str) -> String {
    format!(
        "helm upgrade --install {} {CHART_NAME} --repo {CHART_REPO} --version {CHART_VERSION} --namespace {namespace} --values {values_file}",
        chart.release
    )
}
