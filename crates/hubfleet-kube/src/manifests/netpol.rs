//! NetworkPolicies as z2jh's `hub/netpol.yaml`, `proxy/netpol.yaml` and
//! `singleuser/netpol.yaml` make them, with the `networkPolicy.*` keys of each. Two differences,
//! both from hubfleet's layout: the hub's pod listens on [`HUB_PORT`] (z2jh's on 8081), and
//! with the proxy inside the hub's pod the `proxy` policy selects the hub's pod (policies add
//! up, so that pod is open as both). Rules to autohttps (Traefik) pods are left out: there are
//! none.

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule,
};
use serde_json::{json, Value as Json};

use super::{flag, fragment, list, object, text, Cx, HUB_PORT, PROXY_API_PORT, SINGLEUSER_PORT};
use crate::KubeError;

const PRIVATE_RANGES: [&str; 3] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];

/// The policies whose `<key>.enabled` is true.
pub(crate) fn network_policies(cx: &Cx) -> Result<Vec<NetworkPolicy>, KubeError> {
    let mut out = Vec::new();
    if flag(cx.values, "hub.networkPolicy.enabled")? {
        out.push(hub_policy(cx)?);
    }
    if flag(cx.values, "proxy.chp.networkPolicy.enabled")? {
        out.push(proxy_policy(cx)?);
    }
    if flag(cx.values, "singleuser.networkPolicy.enabled")? {
        out.push(singleuser_policy(cx)?);
    }
    Ok(out)
}

/// Traffic from pods labelled `label: "true"` (and, with `interNamespaceAccessLabels: accept`,
/// from such pods and from every pod of namespaces so labelled).
fn labelled_sources(cx: &Cx, key: &str, label: &str) -> Result<Json, KubeError> {
    let accept =
        text(cx.values, &format!("{key}.interNamespaceAccessLabels"))?.as_deref() == Some("accept");
    let mut pods = json!({"podSelector": {"matchLabels": {label: "true"}}});
    Ok(if accept {
        pods["namespaceSelector"] = json!({"matchLabels": {}});
        json!([pods, {"namespaceSelector": {"matchLabels": {label: "true"}}}])
    } else {
        json!([pods])
    })
}

/// The rules every policy starts its ingress with: `allowedIngressPorts` from anywhere.
fn open_ports(cx: &Cx, key: &str) -> Result<Vec<Json>, KubeError> {
    let ports = list(cx.values, &format!("{key}.allowedIngressPorts"))?;
    Ok(if ports.is_empty() {
        Vec::new()
    } else {
        vec![json!({"ports": ports.into_iter().map(|p| json!({"port": p})).collect::<Vec<_>>()})]
    })
}

/// The operator's own rules at `<key>.ingress` / `<key>.egress`.
fn own_rules<T>(cx: &Cx, key: &str) -> Result<Vec<Json>, KubeError>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    Ok(match fragment::<Vec<T>>(cx.values, key)? {
        Some(Json::Array(rules)) => rules,
        _ => Vec::new(),
    })
}

/// `jupyterhub.networkPolicy.renderEgressRules`: DNS, the internet, private ranges and the
/// cloud metadata server, as `<key>.egressAllowRules` says, then `<key>.egress`.
fn egress_rules(cx: &Cx, key: &str) -> Result<Vec<Json>, KubeError> {
    let allow = |rule: &str| flag(cx.values, &format!("{key}.egressAllowRules.{rule}"));
    let metadata_ip =
        text(cx.values, "singleuser.cloudMetadata.ip")?.unwrap_or_else(|| "169.254.169.254".into());
    let metadata = format!("{metadata_ip}/32");
    let private_blocks: Vec<Json> = PRIVATE_RANGES
        .iter()
        .map(|cidr| json!({"ipBlock": {"cidr": cidr}}))
        .collect();
    let mut rules = Vec::new();
    let dns_metadata = allow("dnsPortsCloudMetadataServer")?;
    let dns_kube_system = allow("dnsPortsKubeSystemNamespace")?;
    let dns_private = allow("dnsPortsPrivateIPs")?;
    if dns_metadata || dns_kube_system || dns_private {
        let mut to = Vec::new();
        if dns_metadata {
            to.push(json!({"ipBlock": {"cidr": metadata}}));
        }
        if dns_kube_system {
            to.push(json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}));
        }
        if dns_private {
            to.extend(private_blocks.iter().cloned());
        }
        rules.push(json!({
            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
            "to": to,
        }));
    }
    if allow("nonPrivateIPs")? {
        let mut except: Vec<Json> = PRIVATE_RANGES.iter().map(|c| json!(c)).collect();
        except.push(json!(metadata));
        rules.push(json!({"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": except}}]}));
    }
    if allow("privateIPs")? {
        rules.push(json!({"to": private_blocks}));
    }
    if allow("cloudMetadataServer")? {
        rules.push(json!({"to": [{"ipBlock": {"cidr": metadata}}]}));
    }
    rules.extend(own_rules::<NetworkPolicyEgressRule>(
        cx,
        &format!("{key}.egress"),
    )?);
    Ok(rules)
}

/// Egress to the pods of `component` on `port`.
fn to_component(cx: &Cx, component: &str, port: i32) -> Json {
    json!({
        "to": [{"podSelector": {"matchLabels": cx.match_labels(component)}}],
        "ports": [{"port": port}],
    })
}

/// A policy named `name`, labelled as z2jh labels its `component`'s objects, for the pods of
/// `selects`.
fn policy(
    cx: &Cx,
    name: &str,
    component: &str,
    selects: &str,
    ingress: Vec<Json>,
    egress: Vec<Json>,
) -> Result<NetworkPolicy, KubeError> {
    object(
        &format!("the {name} NetworkPolicy"),
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": cx.metadata(name, component),
            "spec": {
                "podSelector": {"matchLabels": cx.match_labels(selects)},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": ingress,
                "egress": egress,
            },
        }),
    )
}

fn hub_policy(cx: &Cx) -> Result<NetworkPolicy, KubeError> {
    let key = "hub.networkPolicy";
    let mut ingress = open_ports(cx, key)?;
    ingress.push(json!({
        "ports": [{"port": "http"}],
        "from": labelled_sources(cx, key, "hub.jupyter.org/network-access-hub")?,
    }));
    ingress.extend(own_rules::<NetworkPolicyIngressRule>(
        cx,
        &format!("{key}.ingress"),
    )?);
    let mut egress = Vec::new();
    if cx.separate_proxy {
        egress.push(to_component(cx, "proxy", PROXY_API_PORT));
    }
    egress.push(to_component(cx, "singleuser-server", SINGLEUSER_PORT));
    egress.extend(egress_rules(cx, key)?);
    policy(cx, &cx.names.hub(), "hub", "hub", ingress, egress)
}

fn proxy_policy(cx: &Cx) -> Result<NetworkPolicy, KubeError> {
    let key = "proxy.chp.networkPolicy";
    let mut ingress = open_ports(cx, key)?;
    ingress.push(json!({
        "ports": [{"port": "http"}],
        "from": labelled_sources(cx, key, "hub.jupyter.org/network-access-proxy-http")?,
    }));
    if cx.separate_proxy {
        ingress.push(json!({
            "ports": [{"port": "api"}],
            "from": labelled_sources(cx, key, "hub.jupyter.org/network-access-proxy-api")?,
        }));
    }
    ingress.extend(own_rules::<NetworkPolicyIngressRule>(
        cx,
        &format!("{key}.ingress"),
    )?);
    let mut egress = vec![
        to_component(cx, "hub", HUB_PORT),
        to_component(cx, "singleuser-server", SINGLEUSER_PORT),
    ];
    egress.extend(egress_rules(cx, key)?);
    policy(
        cx,
        &cx.names.proxy(),
        "proxy",
        cx.proxy_component(),
        ingress,
        egress,
    )
}

fn singleuser_policy(cx: &Cx) -> Result<NetworkPolicy, KubeError> {
    let key = "singleuser.networkPolicy";
    let mut ingress = open_ports(cx, key)?;
    ingress.push(json!({
        "ports": [{"port": "notebook-port"}],
        "from": labelled_sources(cx, key, "hub.jupyter.org/network-access-singleuser")?,
    }));
    ingress.extend(own_rules::<NetworkPolicyIngressRule>(
        cx,
        &format!("{key}.ingress"),
    )?);
    let mut egress = vec![to_component(cx, "hub", HUB_PORT)];
    if cx.separate_proxy {
        egress.push(to_component(cx, "proxy", HUB_PORT));
    }
    egress.extend(egress_rules(cx, key)?);
    policy(
        cx,
        &cx.names.singleuser(),
        "singleuser",
        "singleuser-server",
        ingress,
        egress,
    )
}
