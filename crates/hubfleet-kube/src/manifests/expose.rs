//! The Services (`hub`, `proxy-public`, and `proxy-api` with a separate proxy) and the Ingress,
//! as z2jh's `hub/service.yaml`, `proxy/service.yaml` and `ingress.yaml` make them.

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::networking::v1::{HTTPIngressPath, Ingress, IngressTLS};
use serde_json::{json, Map, Value as Json};

use super::{
    flag, fragment, json_at, list, mapping, object, text, Cx, HUB_SERVICE_PORT, PROXY_API_PORT,
};
use crate::KubeError;

/// Copy the scalar at `key` into `target[field]` when it is set.
fn copy(cx: &Cx, target: &mut Map<String, Json>, field: &str, key: &str) {
    let value = json_at(cx.values, key);
    let empty = match &value {
        Json::Null => true,
        Json::String(s) => s.is_empty(),
        Json::Array(a) => a.is_empty(),
        _ => false,
    };
    if !empty {
        target.insert(field.into(), value);
    }
}

fn extra_ports(cx: &Cx, key: &str) -> Result<Vec<Json>, KubeError> {
    Ok(match fragment::<Vec<ServicePort>>(cx.values, key)? {
        Some(Json::Array(ports)) => ports,
        _ => Vec::new(),
    })
}

/// The hub's, the public and (with a separate proxy) the proxy API's Services.
pub(crate) fn services(cx: &Cx) -> Result<Vec<Service>, KubeError> {
    let values = cx.values;
    let base = text(values, "hub.baseUrl")?.unwrap_or_else(|| "/".into());
    let base = base.trim_end_matches('/');

    // hub
    let mut annotations = Map::new();
    annotations.insert("prometheus.io/scrape".into(), json!("true"));
    annotations.insert(
        "prometheus.io/path".into(),
        json!(format!("{base}/hub/metrics")),
    );
    annotations.insert(
        "prometheus.io/port".into(),
        json!(HUB_SERVICE_PORT.to_string()),
    );
    annotations.extend(mapping(values, "hub.service.annotations")?);
    let mut meta = cx.metadata(&cx.names.hub(), "hub");
    meta["annotations"] = Json::Object(annotations);
    let mut port = Map::new();
    port.insert("name".into(), json!("hub"));
    port.insert("port".into(), json!(HUB_SERVICE_PORT));
    port.insert("targetPort".into(), json!("http"));
    copy(cx, &mut port, "nodePort", "hub.service.ports.nodePort");
    copy(
        cx,
        &mut port,
        "appProtocol",
        "hub.service.ports.appProtocol",
    );
    let mut ports = vec![Json::Object(port)];
    ports.extend(extra_ports(cx, "hub.service.extraPorts")?);
    let mut spec = Map::new();
    copy(cx, &mut spec, "type", "hub.service.type");
    spec.insert("selector".into(), cx.match_labels("hub"));
    spec.insert("ports".into(), Json::Array(ports));
    copy(
        cx,
        &mut spec,
        "loadBalancerIP",
        "hub.service.loadBalancerIP",
    );
    copy(
        cx,
        &mut spec,
        "ipFamilyPolicy",
        "hub.service.ipFamilyPolicy",
    );
    copy(cx, &mut spec, "ipFamilies", "hub.service.ipFamilies");
    let mut out = vec![object::<Service>(
        "hub.service",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}),
    )?];

    // proxy-api: only a separate proxy has the REST API
    if cx.separate_proxy {
        let mut spec = Map::new();
        spec.insert("selector".into(), cx.match_labels("proxy"));
        spec.insert(
            "ports".into(),
            json!([{"port": PROXY_API_PORT, "targetPort": "api"}]),
        );
        copy(
            cx,
            &mut spec,
            "ipFamilyPolicy",
            "proxy.service.ipFamilyPolicy",
        );
        copy(cx, &mut spec, "ipFamilies", "proxy.service.ipFamilies");
        out.push(object(
            "the proxy-api Service",
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": cx.metadata(&cx.names.proxy_api(), "proxy-api"),
                "spec": spec,
            }),
        )?);
    }

    // proxy-public: the proxy, in the hub's pod or its own
    let mut meta = cx.metadata(&cx.names.proxy_public(), "proxy-public");
    for (k, v) in mapping(values, "proxy.service.labels")? {
        meta["labels"][k] = v;
    }
    let annotations = mapping(values, "proxy.service.annotations")?;
    if !annotations.is_empty() {
        meta["annotations"] = Json::Object(annotations);
    }
    let mut ports = Vec::new();
    // TLS ends in front of the hub (`offload`, the only kind rendered): 443 goes to plain http.
    if flag(values, "proxy.https.enabled")? {
        let mut https = Map::new();
        https.insert("name".into(), json!("https"));
        https.insert("port".into(), json!(443));
        https.insert("targetPort".into(), json!("http"));
        copy(cx, &mut https, "nodePort", "proxy.service.nodePorts.https");
        ports.push(Json::Object(https));
    }
    if !flag(values, "proxy.service.disableHttpPort")? {
        let mut http = Map::new();
        http.insert("name".into(), json!("http"));
        http.insert("port".into(), json!(80));
        http.insert("targetPort".into(), json!("http"));
        copy(cx, &mut http, "nodePort", "proxy.service.nodePorts.http");
        ports.push(Json::Object(http));
    }
    ports.extend(extra_ports(cx, "proxy.service.extraPorts")?);
    let mut spec = Map::new();
    spec.insert("selector".into(), cx.match_labels(cx.proxy_component()));
    spec.insert("ports".into(), Json::Array(ports));
    copy(cx, &mut spec, "type", "proxy.service.type");
    copy(
        cx,
        &mut spec,
        "loadBalancerIP",
        "proxy.service.loadBalancerIP",
    );
    copy(
        cx,
        &mut spec,
        "ipFamilyPolicy",
        "proxy.service.ipFamilyPolicy",
    );
    copy(cx, &mut spec, "ipFamilies", "proxy.service.ipFamilies");
    if text(values, "proxy.service.type")?.as_deref() == Some("LoadBalancer") {
        copy(
            cx,
            &mut spec,
            "loadBalancerSourceRanges",
            "proxy.service.loadBalancerSourceRanges",
        );
    }
    copy(cx, &mut spec, "externalIPs", "proxy.service.externalIPs");
    out.push(object(
        "proxy.service",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}),
    )?);
    Ok(out)
}

/// The Ingress to `proxy-public` (`ingress.enabled`).
pub(crate) fn ingress(cx: &Cx) -> Result<Option<Ingress>, KubeError> {
    let values = cx.values;
    if !flag(values, "ingress.enabled")? {
        return Ok(None);
    }
    let mut meta = cx.metadata(&cx.names.ingress(), "ingress");
    let annotations = mapping(values, "ingress.annotations")?;
    if !annotations.is_empty() {
        meta["annotations"] = Json::Object(annotations);
    }
    let base = text(values, "hub.baseUrl")?.unwrap_or_else(|| "/".into());
    let path = format!(
        "{}/{}",
        base.trim_end_matches('/'),
        text(values, "ingress.pathSuffix")?.unwrap_or_default()
    );
    let path_type = text(values, "ingress.pathType")?.unwrap_or_else(|| "Prefix".into());
    let extra_paths = match fragment::<Vec<HTTPIngressPath>>(values, "ingress.extraPaths")? {
        Some(Json::Array(paths)) => paths,
        _ => Vec::new(),
    };
    let mut hosts: Vec<Json> = list(values, "ingress.hosts")?;
    if hosts.is_empty() {
        hosts.push(json!(""));
    }
    let mut rules = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let Json::String(host) = host else {
            return Err(KubeError::invalid(
                format!("ingress.hosts[{i}]"),
                "expected a host name",
            ));
        };
        let mut paths = vec![json!({
            "path": path,
            "pathType": path_type,
            "backend": {"service": {"name": cx.names.proxy_public(), "port": {"name": "http"}}},
        })];
        paths.extend(extra_paths.iter().cloned());
        let mut rule = json!({"http": {"paths": paths}});
        if !host.is_empty() {
            rule["host"] = json!(host);
        }
        rules.push(rule);
    }
    let mut spec = Map::new();
    copy(
        cx,
        &mut spec,
        "ingressClassName",
        "ingress.ingressClassName",
    );
    spec.insert("rules".into(), Json::Array(rules));
    if let Some(tls) = fragment::<Vec<IngressTLS>>(values, "ingress.tls")? {
        if tls.as_array().is_some_and(|t| !t.is_empty()) {
            spec.insert("tls".into(), tls);
        }
    }
    object(
        "ingress",
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": meta,
            "spec": spec,
        }),
    )
    .map(Some)
}
