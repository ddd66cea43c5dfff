//! The hub's secrets and config files: the Secret (the values the hub reads, the generated
//! secrets, as z2jh's `hub/secret.yaml`), the ConfigMap (what `render k8s` decides), and the
//! image pull Secret.
//!
//! A secret the values give is used as given. One they do not give is derived, never drawn at
//! random: HMAC-SHA256 keyed by a seed the operator keeps, over the namespace, the release and
//! the secret's name. So every render of the same hub gives the same Secret (`kubectl apply`
//! changes nothing, nobody is logged out, auth_state stays readable), two hubs never share a
//! secret, and nothing is stored anywhere but the seed. z2jh instead reads the old Secret back
//! from the cluster (`lookup`), which a render without a cluster cannot do.

use std::collections::BTreeMap;

use base64::Engine;
use hmac::{Hmac, Mac};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::ByteString;
use serde_json::json;
use serde_yaml_ng::{Mapping, Value};
use sha2::Sha256;

use super::{flag, text, Cx, DATA_DIR, HUB_PORT, HUB_SERVICE_PORT, OVERLAY_FILE, VALUES_FILE};
use crate::KubeError;

/// The Secret key of the crypt key (z2jh's name), handed to the hub as `JUPYTERHUB_CRYPT_KEY`.
pub(crate) const CRYPT_KEY_KEY: &str = "hub.config.CryptKeeper.keys";
/// The Secret key of the proxy's API token (z2jh's name), as `CONFIGPROXY_AUTH_TOKEN`.
pub(crate) const PROXY_TOKEN_KEY: &str = "hub.config.ConfigurableHTTPProxy.auth_token";
const COOKIE_SECRET_KEY: &str = "hub.config.JupyterHub.cookie_secret";
/// Shortest seed accepted, in bytes.
const MIN_SEED_BYTES: usize = 16;

/// The operator's seed for derived secrets (`--secret-seed-file`): at least 16 bytes, e.g. the
/// output of `openssl rand -hex 32`. Surrounding whitespace is not part of it.
#[derive(Clone)]
pub struct SecretSeed(Vec<u8>);

impl std::fmt::Debug for SecretSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretSeed(…)")
    }
}

impl SecretSeed {
    /// A seed from the bytes of its file; `source` names it in errors.
    pub fn new(bytes: &[u8], source: &str) -> Result<SecretSeed, KubeError> {
        let trimmed = bytes.trim_ascii();
        if trimmed.len() < MIN_SEED_BYTES {
            return Err(KubeError::SecretSeed(format!(
                "{source}: a seed needs at least {MIN_SEED_BYTES} bytes (this one has {}); make one with `openssl rand -hex 32 > {source}`",
                trimmed.len()
            )));
        }
        Ok(SecretSeed(trimmed.to_vec()))
    }

    /// 64 hex digits for `purpose` of the hub `release` in `namespace`.
    fn derive(&self, namespace: &str, release: &str, purpose: &str) -> String {
        // The key accepts any length; this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(format!("hubfleet/render-k8s/v1\n{namespace}\n{release}\n{purpose}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// The hub's secrets, given or derived.
pub(crate) struct Secrets {
    pub(crate) cookie_secret: String,
    /// `None` when `hub.extraEnv` sets `JUPYTERHUB_CRYPT_KEY` itself.
    pub(crate) crypt_keys: Option<String>,
    /// Only with a separate proxy.
    pub(crate) proxy_token: Option<String>,
    /// Service name → API token, for services whose token was derived.
    pub(crate) derived_service_tokens: BTreeMap<String, String>,
    /// Every service's token, by Secret key (`hub.services.<name>.apiToken`).
    pub(crate) service_tokens: BTreeMap<String, String>,
    pub(crate) notes: Vec<String>,
}

impl Secrets {
    pub(crate) fn collect(cx: &Cx, seed: Option<&SecretSeed>) -> Result<Secrets, KubeError> {
        let values = cx.values;
        let mut derived = Vec::new();
        let mut derive = |purpose: &str, keys: &str| -> Result<String, KubeError> {
            let Some(seed) = seed else {
                return Err(KubeError::SecretSeed(format!(
                    "{keys} is not set, and no seed was given to derive it from: pass --secret-seed-file FILE \
                     (make it once with `openssl rand -hex 32 > FILE` and keep it: the same seed gives the same secrets at every render), \
                     or set {keys}"
                )));
            };
            derived.push(purpose.to_owned());
            Ok(seed.derive(&cx.release.namespace, &cx.release.release_name, purpose))
        };

        let cookie_secret = match (
            text(values, "hub.cookieSecret")?,
            text(values, "hub.config.JupyterHub.cookie_secret")?,
        ) {
            (Some(given), _) | (None, Some(given)) => given,
            (None, None) => derive(COOKIE_SECRET_KEY, "hub.cookieSecret")?,
        };
        let crypt_keys = if extra_env_sets(values, "JUPYTERHUB_CRYPT_KEY") {
            None
        } else {
            match values.get_set("hub.config.CryptKeeper.keys") {
                Some(Value::Sequence(keys)) if !keys.is_empty() => Some(
                    keys.iter()
                        .map(crate::python::str_of)
                        .collect::<Vec<_>>()
                        .join(";"),
                ),
                Some(Value::String(keys)) if !keys.is_empty() => Some(keys.clone()),
                Some(Value::Sequence(_) | Value::String(_)) | None => Some(derive(
                    CRYPT_KEY_KEY,
                    "hub.config.CryptKeeper.keys (or JUPYTERHUB_CRYPT_KEY in hub.extraEnv)",
                )?),
                Some(_) => {
                    return Err(KubeError::invalid(
                        "hub.config.CryptKeeper.keys",
                        "expected a list of keys (hex, `openssl rand -hex 32`)",
                    ))
                }
            }
        };
        let proxy_token = if cx.separate_proxy {
            Some(
                match (
                    text(values, "hub.config.ConfigurableHTTPProxy.auth_token")?,
                    text(values, "proxy.secretToken")?,
                ) {
                    (Some(given), _) | (None, Some(given)) => given,
                    (None, None) => derive(PROXY_TOKEN_KEY, "proxy.secretToken")?,
                },
            )
        } else {
            None
        };
        let mut derived_service_tokens = BTreeMap::new();
        let mut service_tokens = BTreeMap::new();
        let services = super::mapping(values, "hub.services")?;
        for (name, service) in &services {
            let given = ["api_token", "apiToken"].iter().find_map(|k| {
                service
                    .get(*k)
                    .and_then(|t| t.as_str())
                    .filter(|t| !t.is_empty())
            });
            let token = match given {
                Some(token) => token.to_owned(),
                None => {
                    let token = derive(
                        &format!("hub.services.{name}.apiToken"),
                        &format!("hub.services.{name}.apiToken"),
                    )?;
                    derived_service_tokens.insert(name.clone(), token.clone());
                    token
                }
            };
            service_tokens.insert(format!("hub.services.{name}.apiToken"), token);
        }
        let notes = if derived.is_empty() {
            Vec::new()
        } else {
            vec![format!(
                "derived from the secret seed (stable across renders): {}",
                derived.join(", ")
            )]
        };
        Ok(Secrets {
            cookie_secret,
            crypt_keys,
            proxy_token,
            derived_service_tokens,
            service_tokens,
            notes,
        })
    }
}

/// `hub.extraEnv` sets `name` (mapping or list form).
fn extra_env_sets(values: &hubfleet_config::values::Values, name: &str) -> bool {
    match values.get_set("hub.extraEnv") {
        Some(Value::Mapping(m)) => m.contains_key(name),
        Some(Value::Sequence(items)) => items
            .iter()
            .any(|i| i.get("name").and_then(Value::as_str) == Some(name)),
        _ => false,
    }
}

fn key(text: &str) -> Value {
    Value::String(text.to_owned())
}

/// The mapping at `path` in `doc`, made when missing (a non-mapping in the way is replaced).
fn mapping_at<'d>(doc: &'d mut Value, path: &[&str]) -> &'d mut Mapping {
    let mut here = doc;
    for part in path {
        if !here.is_mapping() {
            *here = Value::Mapping(Mapping::new());
        }
        let map = match here {
            Value::Mapping(m) => m,
            _ => unreachable!("made a mapping above"),
        };
        here = map
            .entry(key(part))
            .or_insert_with(|| Value::Mapping(Mapping::new()));
    }
    if !here.is_mapping() {
        *here = Value::Mapping(Mapping::new());
    }
    match here {
        Value::Mapping(m) => m,
        _ => unreachable!("made a mapping above"),
    }
}

/// Take `path` out of `doc`, and its parent when that is left empty.
fn remove_at(doc: &mut Value, path: &[&str]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut here = &mut *doc;
    for part in parents {
        match here.get_mut(*part) {
            Some(next) => here = next,
            None => return,
        }
    }
    if let Value::Mapping(m) = here {
        m.remove(*last);
        if m.is_empty() && !parents.is_empty() {
            remove_at(doc, parents);
        }
    }
}

/// The two files the hub reads: the values (with `Chart`, `Release`, the secrets it reads from
/// its config, and what this hub cannot use switched off), and the overlay.
pub(crate) fn hub_config(cx: &mut Cx, secrets: &Secrets) -> Result<(Value, Value), KubeError> {
    let https = flag(cx.values, "proxy.https.enabled")?;
    let https_type = text(cx.values, "proxy.https.type")?.unwrap_or_else(|| "letsencrypt".into());
    if https && https_type != "offload" {
        return Err(KubeError::invalid(
            "proxy.https.type",
            format!(
                "`{https_type}`: on Kubernetes, TLS ends in front of the hub: at the Ingress (`ingress.tls`) or a load balancer; \
                 set `proxy.https.type: offload` (or `proxy.https.enabled: false`)"
            ),
        ));
    }

    let mut doc = crate::with_release(cx.values, cx.release).into_value();
    mapping_at(&mut doc, &["hub"]).insert(key("cookieSecret"), key(&secrets.cookie_secret));
    remove_at(&mut doc, &["hub", "config", "JupyterHub", "cookie_secret"]);
    // The hub reads it from JUPYTERHUB_CRYPT_KEY (the Secret, through its environment).
    remove_at(&mut doc, &["hub", "config", "CryptKeeper", "keys"]);
    for (name, token) in &secrets.derived_service_tokens {
        mapping_at(&mut doc, &["hub", "services", name]).insert(key("apiToken"), key(token));
    }
    // Users' pods would name a scheduler and priority classes this render does not make.
    for (switch, why) in [
        (
            "userScheduler",
            "z2jh's user scheduler is not rendered: users' pods use the cluster's default scheduler",
        ),
        (
            "podPriority",
            "z2jh's priority classes are not rendered: users' pods get the default priority",
        ),
        (
            "userPlaceholder",
            "z2jh's placeholder pods are not rendered",
        ),
    ] {
        let path = format!("scheduling.{switch}.enabled");
        if flag(cx.values, &path)? {
            cx.notes.push(format!("{path}: switched off: {why}"));
            mapping_at(&mut doc, &["scheduling", switch]).insert(key("enabled"), Value::Bool(false));
        }
    }

    let overlay: Value = serde_yaml_ng::from_str(&format!(
        "hubfleet:\n  spawner: kubernetes\n  listen: \"0.0.0.0:{HUB_PORT}\"\n  data_dir: {DATA_DIR}\n  kubernetes:\n    separate_proxy: {}\n    hub_connect_url: \"http://{}:{HUB_SERVICE_PORT}\"\n",
        cx.separate_proxy,
        // users' pods reach the hub's API through its Service, as z2jh's hub_connect_url
        cx.names.hub(),
    ))
    .map_err(|e| KubeError::invalid("hubfleet", format!("overlay: {e}")))?;
    let overlay = if cx.separate_proxy {
        // The hub drives the proxy pod through its API Service; the token reaches the hub as
        // CONFIGPROXY_AUTH_TOKEN (from the Secret).
        let proxy: Value = serde_yaml_ng::from_str(&format!(
            "hub:\n  config:\n    ConfigurableHTTPProxy:\n      api_url: \"http://{}:{}\"\n      should_start: false\n",
            cx.names.proxy_api(),
            super::PROXY_API_PORT,
        ))
        .map_err(|e| KubeError::invalid("hubfleet", format!("overlay: {e}")))?;
        let mut merged = overlay;
        if let (Value::Mapping(into), Value::Mapping(from)) = (&mut merged, proxy) {
            into.extend(from);
        }
        merged
    } else {
        overlay
    };
    Ok((doc, overlay))
}

/// A config file's text, read the same by the hub's YAML 1.1 reader as it was meant.
pub(crate) fn yaml_text(doc: &Value) -> String {
    super::yaml::to_yaml(&crate::pod::to_json(doc))
}

/// The hub Secret (z2jh's keys, `values.yaml` the hub's config).
pub(crate) fn hub_secret(
    cx: &Cx,
    secrets: &Secrets,
    hub_values: &Value,
) -> Result<Secret, KubeError> {
    let mut data = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        data.insert(k.to_owned(), ByteString(v.as_bytes().to_vec()));
    };
    put(VALUES_FILE, &yaml_text(hub_values));
    put(COOKIE_SECRET_KEY, &secrets.cookie_secret);
    if let Some(keys) = &secrets.crypt_keys {
        put(CRYPT_KEY_KEY, keys);
    }
    if let Some(token) = &secrets.proxy_token {
        put(PROXY_TOKEN_KEY, token);
    }
    for (k, token) in &secrets.service_tokens {
        put(k, token);
    }
    let mut secret: Secret = super::object(
        "the hub Secret",
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": cx.metadata(&cx.names.hub(), "hub"),
            "type": "Opaque",
        }),
    )?;
    secret.data = Some(data);
    Ok(secret)
}

/// The hub ConfigMap: the overlay.
pub(crate) fn hub_config_map(cx: &Cx, overlay: &Value) -> Result<ConfigMap, KubeError> {
    super::object(
        "the hub ConfigMap",
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": cx.metadata(&cx.names.hub(), "hub"),
            "data": { OVERLAY_FILE: yaml_text(overlay) },
        }),
    )
}

/// z2jh's `image-pull-secret` (`imagePullSecret.create`): credentials for the chart's and the
/// users' images.
pub(crate) fn image_pull_secret(cx: &Cx) -> Result<Option<Secret>, KubeError> {
    if !flag(cx.values, "imagePullSecret.create")? {
        return Ok(None);
    }
    let field = |k: &str| text(cx.values, &format!("imagePullSecret.{k}"));
    let registry = field("registry")?.unwrap_or_else(|| "https://index.docker.io/v1/".into());
    let username = field("username")?.unwrap_or_default();
    let password = field("password")?.unwrap_or_default();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut entry = json!({
        "username": username,
        "password": password,
        "auth": b64.encode(format!("{username}:{password}")),
    });
    if let Some(email) = field("email")? {
        entry["email"] = json!(email);
    }
    let config = json!({ "auths": { registry: entry } });
    let mut secret: Secret = super::object(
        "the image pull Secret",
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": cx.metadata(&cx.names.image_pull_secret(), "image-pull-secret"),
            "type": "kubernetes.io/dockerconfigjson",
        }),
    )?;
    secret.data = Some(BTreeMap::from([(
        ".dockerconfigjson".to_owned(),
        ByteString(config.to_string().into_bytes()),
    )]));
    Ok(Some(secret))
}

/// z2jh's `singleuser` Secret: the files of `singleuser.extraFiles`, which KubeSpawner mounts
/// into users' pods (`stringData` as it is, `binaryData` decoded, `data` written as YAML or JSON
/// by the file's extension).
pub(crate) fn singleuser_secret(cx: &Cx) -> Result<Option<Secret>, KubeError> {
    let files = super::mapping(cx.values, "singleuser.extraFiles")?;
    if files.is_empty() {
        return Ok(None);
    }
    let mut data = BTreeMap::new();
    for (name, file) in &files {
        let key = format!("singleuser.extraFiles.{name}");
        let field = |f: &str| file.get(f).filter(|v| !v.is_null());
        let mount_path = field("mountPath").and_then(|v| v.as_str()).ok_or_else(|| {
            KubeError::invalid(
                &key,
                "needs `mountPath`, where the file appears in users' pods",
            )
        })?;
        let given: Vec<&str> = ["data", "stringData", "binaryData"]
            .into_iter()
            .filter(|f| field(f).is_some())
            .collect();
        let bytes = match given.as_slice() {
            ["stringData"] => field("stringData")
                .and_then(|v| v.as_str())
                .ok_or_else(|| KubeError::invalid(format!("{key}.stringData"), "expected text"))?
                .as_bytes()
                .to_vec(),
            ["binaryData"] => {
                let text: String = field("binaryData")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| {
                        KubeError::invalid(format!("{key}.binaryData"), "expected base64 text")
                    })?
                    .split_whitespace()
                    .collect();
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| {
                        KubeError::invalid(format!("{key}.binaryData"), format!("not base64: {e}"))
                    })?
            }
            ["data"] => {
                let value = field("data").cloned().unwrap_or_default();
                let extension = mount_path.rsplit('.').next().unwrap_or("");
                match extension {
                    "yaml" | "yml" => serde_yaml_ng::to_string(&value)
                        .map_err(|e| KubeError::invalid(format!("{key}.data"), e.to_string()))?
                        .into_bytes(),
                    "json" => value.to_string().into_bytes(),
                    _ => {
                        return Err(KubeError::invalid(
                            format!("{key}.data"),
                            format!("`{mount_path}`: `data` is written as YAML (.yaml, .yml) or JSON (.json) by the file's extension; give other files as `stringData`"),
                        ))
                    }
                }
            }
            _ => {
                return Err(KubeError::invalid(
                    &key,
                    "needs exactly one of `data`, `stringData` and `binaryData`",
                ))
            }
        };
        data.insert(name.clone(), ByteString(bytes));
    }
    let mut secret: Secret = super::object(
        "the singleuser Secret",
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": cx.metadata(&cx.names.singleuser(), "singleuser"),
            "type": "Opaque",
        }),
    )?;
    secret.data = Some(data);
    Ok(Some(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_secrets_depend_on_seed_namespace_release_and_purpose() {
        let seed = SecretSeed::new(b"0123456789abcdef0123456789abcdef\n", "seed").unwrap();
        let a = seed.derive("ns", "hub", "cookie");
        assert_eq!(a.len(), 64);
        assert_eq!(a, seed.derive("ns", "hub", "cookie"));
        assert_ne!(a, seed.derive("ns2", "hub", "cookie"));
        assert_ne!(a, seed.derive("ns", "hub2", "cookie"));
        assert_ne!(a, seed.derive("ns", "hub", "crypt"));
        let other = SecretSeed::new(b"fedcba9876543210fedcba9876543210", "seed").unwrap();
        assert_ne!(a, other.derive("ns", "hub", "cookie"));
        let e = SecretSeed::new(b" short \n", "seed.txt")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("seed.txt: a seed needs at least 16 bytes (this one has 5)"),
            "{e}"
        );
    }

    #[test]
    fn paths_made_and_removed() {
        let mut doc: Value =
            serde_yaml_ng::from_str("hub: {config: {CryptKeeper: {keys: [a]}, X: 1}}").unwrap();
        remove_at(&mut doc, &["hub", "config", "CryptKeeper", "keys"]);
        assert_eq!(
            doc,
            serde_yaml_ng::from_str::<Value>("hub: {config: {X: 1}}").unwrap()
        );
        mapping_at(&mut doc, &["hub", "services", "a"]).insert(key("apiToken"), key("t"));
        assert_eq!(doc["hub"]["services"]["a"]["apiToken"], key("t"));
    }
}
