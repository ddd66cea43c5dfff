//! Export: a hub's values as values for upstream Zero to JupyterHub (z2jh), with the secrets
//! apart and a README that says how to install them and what does not carry over.
//!
//! Pure functions: the caller layers the hub's files (a single hub's `--config` files, or a
//! fleet hub's chart defaults, jsonnet and files with sops decrypted) and says which keys came
//! from sops files; [`export`] translates, [`readme`] writes the README.
//!
//! What is translated, and how:
//! - basehub's `custom.homepage.templateVars` → `hub.templateVars.custom` and
//!   `hub.templatePaths` (z2jh's own keys for JupyterHub's `template_vars`/`template_paths`,
//!   which basehub's `01-custom-theme` snippet set by hand; that snippet is left out);
//! - basehub's 2i2c staff lists (`custom.2i2c`) → `hub.config.Authenticator.admin_users`;
//! - `hubfleet:` keys by [`HUBFLEET_KEYS`]: a z2jh key where there is one, else a note or a
//!   drop with its reason;
//! - basehub settings outside `jupyterhub:` (NFS, Dask Gateway, BinderHub, …) are dropped with
//!   [`BASEHUB_OUTSIDE_KEYS`]' reasons.

use std::collections::BTreeMap;

use serde_json::Value as Json;
use serde_yaml_ng::{Mapping, Value};

/// The z2jh chart version the values are checked against: the one basehub pins (its
/// `Chart.yaml`), whose hub files are those of the z2jh the schema comes from (a test checks
/// both against the shared fixtures).
pub const Z2JH_CHART_VERSION: &str = "4.3.3";
/// z2jh's Helm repository.
pub const Z2JH_HELM_REPO: &str = "https://hub.jupyter.org/helm-chart/";
/// Where basehub's hub pod mounts the homepage templates it fetches with git.
pub const BASEHUB_TEMPLATES_DIR: &str = "/usr/local/share/jupyterhub/custom_templates";
/// The text that starts every placeholder for a secret that could not be decrypted.
pub const CHANGE_ME: &str = "CHANGE-ME";

/// What becomes of a `hubfleet:` key in an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Turned into z2jh keys (or used for the README's steps): how.
    Translated(&'static str),
    /// Left out: why.
    Dropped(&'static str),
}

/// Every `hubfleet:` key (a key covers the keys under it) and what the export does with it.
pub const HUBFLEET_KEYS: &[(&str, Fate)] = &[
    ("listen", Fate::Dropped("z2jh's proxy listens on its `proxy-public` Service (`proxy.service`); the address of this machine means nothing in a cluster")),
    ("data_dir", Fate::Dropped("z2jh keeps the hub's database on the hub's PVC (`hub.db`) and homes on users' PVCs; users and homes move with users.json and homes.tar.zst")),
    ("spawner", Fate::Dropped("z2jh always starts servers as pods with KubeSpawner")),
    ("local.python_env", Fate::Dropped("a virtual environment on this machine; on z2jh the server's software is the image `singleuser.image`")),
    ("local.environments", Fate::Translated("each local environment is listed in a note: build an image with its packages and set it as `singleuser.image` (or a profile's `kubespawner_override.image`)")),
    ("local.system_users", Fate::Dropped("Unix accounts on this machine; on z2jh each server runs as `singleuser.uid` in its own pod")),
    ("local.existing_system_users", Fate::Dropped("Unix accounts on this machine; pods have none")),
    ("local.allow_root", Fate::Dropped("a rule for servers run as processes of this machine; pods run as `singleuser.uid`")),
    ("local.homes_dir", Fate::Dropped("homes on z2jh are PVCs (`singleuser.storage`); the files move with homes.tar.zst")),
    ("local.shared_dir", Fate::Dropped("a folder on this machine; on z2jh share a volume with `singleuser.storage.extraVolumes`/`extraVolumeMounts`")),
    ("local.gpus", Fate::Translated("a note: on z2jh a profile asks for GPUs with `kubespawner_override.extra_resource_limits: {nvidia.com/gpu: N}` and the cluster's device plugin assigns them")),
    ("public_url", Fate::Translated("its host name is the one in the README's DNS and TLS steps (`ingress.hosts`, `proxy.https.hosts`)")),
    ("environments", Fate::Dropped("how admins edit environments in hubfleet's admin panel; upstream's profiles are `singleuser.profileList` in the values: run `hubfleet config dump` and export with its output as the last `--config` to carry the panel's changes over")),
    ("culler", Fate::Dropped("z2jh always runs jupyterhub-idle-culler as a hub service when `cull.enabled`")),
    ("auth.oidc_issuer", Fate::Dropped("OAuthenticator needs the endpoints themselves: set `hub.config.GenericOAuthenticator.authorize_url`, `token_url` and `userdata_url` from the issuer's `/.well-known/openid-configuration`")),
    ("auth.login_announcement", Fate::Translated("`hub.templateVars.announcement_login`, which upstream's login page shows")),
    ("auth.login_logo_url", Fate::Dropped("upstream takes a logo file in the hub's image (`hub.config.JupyterHub.logo_file`, with `hub.extraFiles`), not a URL")),
    ("auth.max_failed_logins", Fate::Dropped("upstream JupyterHub has no login lockout (NativeAuthenticator's `allowed_failed_logins` is one for its own logins)")),
    ("auth.max_failed_logins_per_ip", Fate::Dropped("upstream JupyterHub has no lockout by address")),
    ("auth.lockout_seconds", Fate::Dropped("upstream JupyterHub has no login lockout (NativeAuthenticator: `seconds_before_next_try`)")),
    ("http_redirect_listen", Fate::Dropped("z2jh's proxy sends HTTP to HTTPS itself with `proxy.https.enabled`")),
    ("api_rate_limit", Fate::Dropped("upstream JupyterHub has no per-user API rate limit")),
    ("kubernetes.separate_proxy", Fate::Dropped("z2jh always runs the proxy as a pod of its own")),
    ("kubernetes.namespace", Fate::Translated("the namespace of the README's `helm upgrade --install --namespace`")),
    ("kubernetes.chart_values", Fate::Dropped("Helm lays the values on the chart's own defaults")),
    ("kubernetes.hub_connect_url", Fate::Dropped("z2jh's pods reach the hub at its `hub` Service")),
];

/// basehub settings outside `jupyterhub:` (and daskhub's outside `basehub.jupyterhub:`), and
/// why the z2jh chart does not carry them. Keys not listed get [`OTHER_BASEHUB_KEY`].
pub const BASEHUB_OUTSIDE_KEYS: &[(&str, &str)] = &[
    ("nfs", "basehub makes an NFS PersistentVolume and PVC for homes; create them yourself (the pods' mounts of the `home-nfs` claim are in values.yaml)"),
    ("jupyterhub-home-nfs", "an in-cluster NFS server chart (2i2c's jupyterhub-home-nfs); install it beside z2jh or create the PVC the pods mount"),
    ("inClusterNFS", "an in-cluster NFS server of basehub's templates; create the NFS server and PVC yourself"),
    ("dask-gateway", "Dask Gateway is a chart of its own (https://helm.dask.org, `dask-gateway`): install it beside z2jh"),
    ("binderhub-service", "BinderHub is a chart of its own (2i2c's binderhub-service); install it beside z2jh"),
    ("userServiceAccount", "basehub's Kubernetes ServiceAccount bound to cloud IAM; create it yourself (`singleuser.serviceAccountName` is in values.yaml)"),
    ("jupyterhub-groups-exporter", "a Prometheus exporter chart of 2i2c's; not part of z2jh"),
    ("nodePlaceholder", "basehub's placeholder pods; z2jh's equivalent is `scheduling.userPlaceholder`"),
    ("global", "Helm globals of basehub's sub-charts"),
];

/// Why 2i2c's compute usage quotas are dropped.
const USAGE_QUOTAS: &str = "2i2c's compute usage quotas (`jupyterhub_usage_quotas`): need 2i2c's hub image, its Prometheus and the objects basehub's templates make (`usage-quotas-config`, `prometheus-auth`)";

/// z2jh keys that basehub sets but that need what only basehub's templates (or 2i2c's hub
/// image) provide: left out, with why. Besides these, `hub.extraConfig` snippets that import
/// `jupyterhub_usage_quotas` and the hub's volume `usage-quotas` (and its mounts) go too.
pub const BASEHUB_ONLY_KEYS: &[(&str, &str)] = &[
    ("hub.config.UsageQuotaManager", USAGE_QUOTAS),
    ("hub.config.UsageViewer", USAGE_QUOTAS),
    ("hub.services.usage-quota", USAGE_QUOTAS),
    ("hub.loadRoles.usage-quota-service", USAGE_QUOTAS),
    ("hub.extraEnv.JUPYTERHUB_USAGE_QUOTAS_METRICS_TOKEN", USAGE_QUOTAS),
    ("hub.extraEnv.JUPYTERHUB_USAGE_QUOTAS_PROMETHEUS_USERNAME", USAGE_QUOTAS),
    ("hub.extraEnv.JUPYTERHUB_USAGE_QUOTAS_PROMETHEUS_PASSWORD", USAGE_QUOTAS),
    ("hub.extraEnv.BASEHUB_K8S_DIST", "read from the ConfigMap `basehub-cluster-info` that basehub's templates make (for Dask Gateway's options); the hub would not start without it"),
];

/// The ConfigMap basehub makes for the homepage's git init containers, and which of
/// `custom.homepage` each of its keys holds.
const TEMPLATES_CONFIG_MAP: &str = "hub-custom-templates-config";
const TEMPLATES_CONFIG_KEYS: &[(&str, &str)] = &[
    ("GIT_REPO_URL", "gitRepoUrl"),
    ("GIT_REPO_BRANCH", "gitRepoBranch"),
];

/// Why any other basehub key outside `jupyterhub:` is dropped.
pub const OTHER_BASEHUB_KEY: &str =
    "a setting of basehub's own templates, outside z2jh's values; z2jh has no equivalent";

/// Keys of z2jh's values that are secrets wherever they are set (`*` is any one key).
pub const SECRET_KEYS: &[&str] = &[
    "hub.cookieSecret",
    "hub.config.JupyterHub.cookie_secret",
    "hub.config.CryptKeeper.keys",
    "hub.config.*.client_secret",
    "hub.config.*.password",
    "hub.config.*.user_password",
    "hub.config.*.admin_password",
    // ConfigurableHTTPProxy's API token.
    "hub.config.*.auth_token",
    "hub.extraEnv.JUPYTERHUB_CRYPT_KEY",
    "hub.extraEnv.CONFIGPROXY_AUTH_TOKEN",
    "hub.db.password",
    "hub.services.*.apiToken",
    "hub.services.*.api_token",
    "proxy.secretToken",
    "proxy.https.manual.key",
];

/// A key a sops file sets, in the z2jh values: decrypted, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SopsKey {
    /// The key's path in the z2jh values.
    pub path: Vec<String>,
    /// The file it is set in.
    pub file: String,
    /// `None` when decrypted; else why it could not be.
    pub not_decrypted: Option<String>,
}

/// A key left out of values.yaml, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dropped {
    /// The dotted key, as in the hub's files.
    pub key: String,
    /// Why.
    pub reason: String,
}

/// A key turned into z2jh keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// The dotted key, as in the hub's files.
    pub from: String,
    /// What became of it.
    pub to: String,
}

/// What goes into an export's files.
#[derive(Debug, Clone)]
pub struct Export {
    /// values.yaml: no secrets.
    pub values: Value,
    /// secrets.values.yaml: the secrets, decrypted or [`CHANGE_ME`] placeholders.
    pub secrets: Value,
    /// Keys left out.
    pub dropped: Vec<Dropped>,
    /// Keys translated.
    pub translated: Vec<Translated>,
    /// Things the operator must do by hand (environments to build images for, …).
    pub notes: Vec<String>,
    /// Secrets that could not be decrypted: their keys.
    pub placeholders: Vec<String>,
    /// The host name users reach the hub at, if known.
    pub host: Option<String>,
    /// The namespace to install into, if the config says.
    pub namespace: Option<String>,
}

/// The fate of the `hubfleet:` key `dotted` (by its longest listed prefix).
pub fn hubfleet_fate(dotted: &str) -> Option<Fate> {
    hubfleet_entry(dotted).map(|(_, f)| f)
}

/// The entry of [`HUBFLEET_KEYS`] that covers `dotted`: its key and fate.
fn hubfleet_entry(dotted: &str) -> Option<(&'static str, Fate)> {
    HUBFLEET_KEYS
        .iter()
        .filter(|(k, _)| dotted == *k || dotted.starts_with(&format!("{k}.")))
        .max_by_key(|(k, _)| k.len())
        .copied()
}

fn key(s: &str) -> Value {
    Value::String(s.to_owned())
}

fn get_path<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut v = doc;
    for p in path {
        v = v.as_mapping()?.get(p.as_str())?;
    }
    Some(v)
}

/// Remove `path` from `doc`, and the mappings it leaves empty; the value removed.
fn take_path(doc: &mut Value, path: &[String]) -> Option<Value> {
    let (first, rest) = path.split_first()?;
    let map = doc.as_mapping_mut()?;
    if rest.is_empty() {
        return map.shift_remove(first.as_str());
    }
    let child = map.get_mut(first.as_str())?;
    let taken = take_path(child, rest)?;
    if child.as_mapping().is_some_and(Mapping::is_empty) {
        map.shift_remove(first.as_str());
    }
    Some(taken)
}

/// Set `path` in `doc`, making mappings on the way.
fn set_path(doc: &mut Value, path: &[String], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        *doc = value;
        return;
    };
    if !doc.is_mapping() {
        *doc = Value::Mapping(Mapping::new());
    }
    let map = doc.as_mapping_mut().expect("made a mapping above");
    if rest.is_empty() {
        map.insert(key(first), value);
        return;
    }
    let child = map
        .entry(key(first))
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    set_path(child, rest, value);
}

fn path_of(dotted: &str) -> Vec<String> {
    dotted.split('.').map(str::to_owned).collect()
}

/// The leaf paths of a document (mappings are walked; anything else is a leaf).
pub fn leaf_paths(doc: &Value) -> Vec<Vec<String>> {
    fn walk(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match v.as_mapping() {
            Some(m) if !m.is_empty() => {
                for (k, child) in m {
                    let k = match k {
                        Value::String(s) => s.clone(),
                        other => serde_yaml_ng::to_string(other)
                            .unwrap_or_default()
                            .trim()
                            .to_owned(),
                    };
                    at.push(k);
                    walk(child, at, out);
                    at.pop();
                }
            }
            _ => {
                if !at.is_empty() {
                    out.push(at.clone());
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(doc, &mut Vec::new(), &mut out);
    out
}

/// Whether `path` matches the [`SECRET_KEYS`] pattern `pattern`.
fn matches_pattern(path: &[String], pattern: &str) -> bool {
    let parts: Vec<&str> = pattern.split('.').collect();
    path.len() >= parts.len()
        && parts
            .iter()
            .zip(path)
            .all(|(p, k)| *p == "*" || *p == k.as_str())
}

/// Translate a hub's z2jh values (`values`, unwrapped, with `hubfleet:` for a single hub) into
/// an export. `sops` lists the keys that sops files set; they all go to the secrets.
pub fn export(values: Value, sops: &[SopsKey]) -> Export {
    let mut values = match values {
        v @ Value::Mapping(_) => v,
        _ => Value::Mapping(Mapping::new()),
    };
    let mut out = Export {
        values: Value::Null,
        secrets: Value::Mapping(Mapping::new()),
        dropped: Vec::new(),
        translated: Vec::new(),
        notes: Vec::new(),
        placeholders: Vec::new(),
        host: None,
        namespace: None,
    };
    // Facts Helm gives the hub; a values file does not set them.
    for facts in ["Chart", "Release"] {
        if take_path(&mut values, &[facts.to_owned()]).is_some() {
            out.dropped.push(Dropped {
                key: facts.to_owned(),
                reason: "set by Helm at install time, not by values".into(),
            });
        }
    }
    // A single hub's flavours sit beside z2jh's keys; on Kubernetes each is a chart of its own.
    // (A fleet hub's, beside `jupyterhub:`, are basehub's outside keys, dropped below.)
    let fleet_layout = values.get("jupyterhub").is_some() || values.get("basehub").is_some();
    for flavour in ["dask-gateway", "binderhub-service"]
        .into_iter()
        .filter(|_| !fleet_layout)
    {
        if take_path(&mut values, &[flavour.to_owned()]).is_some() {
            let reason = BASEHUB_OUTSIDE_KEYS
                .iter()
                .find(|(key, _)| *key == flavour)
                .map(|(_, why)| *why)
                .unwrap_or_default();
            out.dropped.push(Dropped {
                key: flavour.to_owned(),
                reason: format!(
                    "{reason} (`hubfleet render k8s --{}-values FILE` writes its values)",
                    if flavour == "dask-gateway" {
                        "dask-gateway"
                    } else {
                        "binderhub"
                    }
                ),
            });
        }
    }
    if let Some(hubfleet) = take_path(&mut values, &["hubfleet".to_owned()]) {
        translate_hubfleet(&hubfleet, &mut values, &mut out);
    }
    translate_basehub(&mut values, &mut out);
    drop_basehub_only(&mut values, &mut out);

    // Secrets: what sops files set, then the keys that are secrets anywhere.
    let mut secret_paths: Vec<(Vec<String>, Option<String>)> = Vec::new();
    for s in sops {
        let placeholder = s.not_decrypted.as_ref().map(|why| {
            format!(
                "{CHANGE_ME}: {} is encrypted in {} ({why}); decrypt it (`sops -d {}`) and put the value here",
                s.path.join("."),
                s.file,
                s.file
            )
        });
        secret_paths.push((s.path.clone(), placeholder));
    }
    for path in leaf_paths(&values) {
        if SECRET_KEYS.iter().any(|p| matches_pattern(&path, p)) {
            secret_paths.push((path, None));
        }
    }
    for (path, placeholder) in secret_paths {
        // A secret left unset (z2jh's defaults) stays as it is: the chart generates it.
        if get_path(&values, &path).is_none_or(Value::is_null) {
            continue;
        }
        let Some(value) = take_path(&mut values, &path) else {
            continue;
        };
        let dotted = path.join(".");
        let value = match placeholder {
            Some(p) => {
                out.placeholders.push(dotted);
                // A text gets the placeholder; a flag or number keeps the stand-in of its type
                // (a text there would read as true), and the README and the file's head say.
                if value.is_string() {
                    Value::String(p)
                } else {
                    value
                }
            }
            None => value,
        };
        set_path(&mut out.secrets, &path, value);
    }
    split_db_url(&mut values, &mut out);
    out.placeholders.sort();
    out.placeholders.dedup();
    out.dropped.sort();
    out.dropped.dedup();
    out.values = values;
    out
}

/// `hub.db.url` with a password in it (`postgresql://user:secret@host/db`): values.yaml keeps
/// the URL without the password and secrets.values.yaml the whole URL, which Helm's later
/// `--values` file puts in its place. Works for every `hub.db.type` (upstream reads
/// `hub.db.password` for postgres and mysql only). A URL that does not parse but could hold
/// a password (an `@` after a `:`) goes to the secrets whole.
fn split_db_url(values: &mut Value, out: &mut Export) {
    let path = path_of("hub.db.url");
    let Some(Value::String(text)) = get_path(values, &path).cloned() else {
        return;
    };
    match url::Url::parse(&text) {
        Ok(parsed) if parsed.password().is_some() => {
            let mut shown = parsed.clone();
            // Only a URL that can have a password can lose it.
            let _ = shown.set_password(None);
            set_path(values, &path, Value::String(shown.to_string()));
            set_path(&mut out.secrets, &path, Value::String(text));
        }
        Ok(_) => {}
        Err(_) => {
            let rest = text.split_once("://").map_or(text.as_str(), |(_, r)| r);
            if rest
                .find(':')
                .zip(rest.rfind('@'))
                .is_some_and(|(c, a)| c < a)
            {
                take_path(values, &path);
                set_path(&mut out.secrets, &path, Value::String(text));
            }
        }
    }
}

fn translate_hubfleet(hubfleet: &Value, values: &mut Value, out: &mut Export) {
    for path in leaf_paths(hubfleet) {
        let dotted = path.join(".");
        let value = get_path(hubfleet, &path).cloned().unwrap_or(Value::Null);
        let Some((entry, fate)) = hubfleet_entry(&dotted) else {
            out.dropped.push(Dropped {
                key: format!("hubfleet.{dotted}"),
                reason: "not a hubfleet setting the export knows".into(),
            });
            continue;
        };
        let from = format!("hubfleet.{entry}");
        let first = !out.dropped.iter().any(|d| d.key == from)
            && !out.translated.iter().any(|t| t.from == from);
        match fate {
            Fate::Dropped(why) => {
                if first {
                    out.dropped.push(Dropped {
                        key: from,
                        reason: why.into(),
                    });
                }
                continue;
            }
            Fate::Translated(how) => {
                if first {
                    out.translated.push(Translated {
                        from,
                        to: how.to_owned(),
                    });
                }
            }
        }
        match entry {
            "auth.login_announcement" => {
                let to = path_of("hub.templateVars.announcement_login");
                if get_path(values, &to).is_none() {
                    set_path(values, &to, value);
                }
            }
            "public_url" => out.host = value.as_str().and_then(url_host).map(str::to_owned),
            "kubernetes.namespace" => out.namespace = value.as_str().map(str::to_owned),
            "local.environments" if first => {
                let names: Vec<String> = hubfleet
                    .get("local")
                    .and_then(|l| l.get("environments"))
                    .and_then(Value::as_mapping)
                    .map(|m| m.keys().filter_map(Value::as_str).map(str::to_owned).collect())
                    .unwrap_or_default();
                out.notes.push(format!(
                    "local environments ({}) are Python environments on this machine: build an image with each one's packages and set it as `singleuser.image` (or the profile's `kubespawner_override.image` that named it)",
                    names.join(", ")
                ));
            }
            "local.gpus" if first => out.notes.push("GPUs: give the profiles that need one `kubespawner_override.extra_resource_limits: {nvidia.com/gpu: 1}` and run NVIDIA's device plugin in the cluster".into()),
            _ => {}
        }
    }
}

/// The host of an `http(s)://host[:port]/…` URL.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = host.split(':').next()?;
    (!host.is_empty()).then_some(host)
}

fn translate_basehub(values: &mut Value, out: &mut Export) {
    // The homepage's variables: z2jh's `hub.templateVars`/`templatePaths` do what basehub's
    // snippet does, so the snippet (which would read the moved key as null) goes.
    let template_vars_path = path_of("custom.homepage.templateVars");
    if let Some(vars) = take_path(values, &template_vars_path) {
        set_path(values, &path_of("hub.templateVars.custom"), vars);
        let paths = path_of("hub.templatePaths");
        let mut list: Vec<Value> = get_path(values, &paths)
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        if !list
            .iter()
            .any(|p| p.as_str() == Some(BASEHUB_TEMPLATES_DIR))
        {
            list.insert(0, key(BASEHUB_TEMPLATES_DIR));
        }
        set_path(values, &paths, Value::Sequence(list));
        let removed = remove_snippets(values, "custom.homepage.templateVars");
        out.translated.push(Translated {
            from: "custom.homepage.templateVars".into(),
            to: format!(
                "`hub.templateVars.custom` and `hub.templatePaths: [{BASEHUB_TEMPLATES_DIR}]` (the templates themselves come from `custom.homepage.gitRepoUrl` through the hub's git init container, which stays){}",
                if removed.is_empty() {
                    String::new()
                } else {
                    format!("; replaces `hub.extraConfig.{}`", removed.join("`, `hub.extraConfig."))
                }
            ),
        });
    }
    // 2i2c's staff as admins.
    if let Some(staff) = take_path(values, &path_of("custom.2i2c")) {
        let add = staff
            .get("add_staff_user_ids_to_admin_users")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let kind = staff
            .get("add_staff_user_ids_of_type")
            .and_then(Value::as_str)
            .unwrap_or("");
        let removed = remove_snippets(values, "add_staff_user_ids_to_admin_users");
        let snippets = if removed.is_empty() {
            String::new()
        } else {
            format!(
                "; replaces `hub.extraConfig.{}`",
                removed.join("`, `hub.extraConfig.")
            )
        };
        if add {
            let ids: Vec<Value> = staff
                .get(format!("staff_{kind}_ids").as_str())
                .and_then(Value::as_sequence)
                .cloned()
                .unwrap_or_default();
            let admins_path = path_of("hub.config.Authenticator.admin_users");
            let mut admins = ids.clone();
            for a in get_path(values, &admins_path)
                .and_then(Value::as_sequence)
                .cloned()
                .unwrap_or_default()
            {
                if !admins.contains(&a) {
                    admins.push(a);
                }
            }
            set_path(values, &admins_path, Value::Sequence(admins));
            out.translated.push(Translated {
                from: "custom.2i2c".into(),
                to: format!(
                    "the {} 2i2c staff ids of type `{kind}` added to `hub.config.Authenticator.admin_users`{snippets}",
                    ids.len()
                ),
            });
        } else {
            out.dropped.push(Dropped {
                key: "custom.2i2c".into(),
                reason: format!(
                    "2i2c's staff lists, not made admins on this hub (`add_staff_user_ids_to_admin_users` is false){snippets}"
                ),
            });
        }
    }
}

/// Leave out what needs basehub's own templates ([`BASEHUB_ONLY_KEYS`]), and give the homepage's
/// git containers their settings as values instead of from basehub's ConfigMap.
fn drop_basehub_only(values: &mut Value, out: &mut Export) {
    for (dotted, why) in BASEHUB_ONLY_KEYS {
        if take_path(values, &path_of(dotted)).is_some() {
            out.dropped.push(Dropped {
                key: (*dotted).to_owned(),
                reason: (*why).to_owned(),
            });
        }
    }
    for name in remove_snippets(values, "jupyterhub_usage_quotas") {
        out.dropped.push(Dropped {
            key: format!("hub.extraConfig.{name}"),
            reason: USAGE_QUOTAS.to_owned(),
        });
    }
    let volume = "usage-quotas";
    for list in ["extraVolumes", "extraVolumeMounts"] {
        let Some(items) = values
            .get_mut("hub")
            .and_then(|h| h.get_mut(list))
            .and_then(Value::as_sequence_mut)
        else {
            continue;
        };
        let before = items.len();
        items.retain(|v| v.get("name").and_then(Value::as_str) != Some(volume));
        if items.len() != before {
            out.dropped.push(Dropped {
                key: format!("hub.{list}[name={volume}]"),
                reason: USAGE_QUOTAS.to_owned(),
            });
        }
    }
    let homepage = values
        .get("custom")
        .and_then(|c| c.get("homepage"))
        .cloned()
        .unwrap_or(Value::Null);
    let mut replaced = Vec::new();
    for list in ["initContainers", "extraContainers"] {
        let Some(containers) = values
            .get_mut("hub")
            .and_then(|h| h.get_mut(list))
            .and_then(Value::as_sequence_mut)
        else {
            continue;
        };
        for container in containers.iter_mut() {
            let Some(env) = container.get_mut("env").and_then(Value::as_sequence_mut) else {
                continue;
            };
            for var in env.iter_mut() {
                let from_map = var
                    .get("valueFrom")
                    .and_then(|v| v.get("configMapKeyRef"))
                    .filter(|r| r.get("name").and_then(Value::as_str) == Some(TEMPLATES_CONFIG_MAP))
                    .and_then(|r| r.get("key"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let Some(map_key) = from_map else { continue };
                let Some((_, custom_key)) =
                    TEMPLATES_CONFIG_KEYS.iter().find(|(k, _)| *k == map_key)
                else {
                    continue;
                };
                let value = homepage.get(*custom_key).cloned().unwrap_or(Value::Null);
                if let Some(m) = var.as_mapping_mut() {
                    m.shift_remove("valueFrom");
                    m.insert(key("value"), value);
                }
                replaced.push(format!("{map_key} (`custom.homepage.{custom_key}`)"));
            }
        }
    }
    if !replaced.is_empty() {
        replaced.sort();
        replaced.dedup();
        out.translated.push(Translated {
            from: format!("the ConfigMap `{TEMPLATES_CONFIG_MAP}` of basehub's templates"),
            to: format!(
                "the homepage's git containers get {} as values",
                replaced.join(", ")
            ),
        });
    }
}

/// Remove the `hub.extraConfig` snippets whose code mentions `needle`; their names.
fn remove_snippets(values: &mut Value, needle: &str) -> Vec<String> {
    let Some(snippets) = values
        .get_mut("hub")
        .and_then(|h| h.get_mut("extraConfig"))
        .and_then(Value::as_mapping_mut)
    else {
        return Vec::new();
    };
    let names: Vec<String> = snippets
        .iter()
        .filter(|(_, code)| code.as_str().is_some_and(|c| c.contains(needle)))
        .filter_map(|(k, _)| k.as_str().map(str::to_owned))
        .collect();
    for n in &names {
        snippets.shift_remove(n.as_str());
    }
    names
}

/// The basehub settings outside the z2jh values (`jupyterhub_key`: `jupyterhub` or
/// `basehub.jupyterhub`) that the hub's files change from the chart's `defaults`, two levels
/// deep (`nfs.enabled`), each with why it is dropped.
pub fn basehub_outside(chart_doc: &Value, defaults: &Value, jupyterhub_key: &str) -> Vec<Dropped> {
    let skip = path_of(jupyterhub_key);
    let mut out = Vec::new();
    for path in leaf_paths(chart_doc) {
        if path.starts_with(&skip) {
            continue;
        }
        // daskhub: basehub's defaults are under `basehub:`
        let default_path: &[String] = if skip.len() > 1 && path.first() == skip.first() {
            &path[1..]
        } else {
            &path
        };
        if get_path(chart_doc, &path) == get_path(defaults, default_path) {
            continue;
        }
        let depth = if default_path.len() < path.len() {
            3
        } else {
            2
        };
        let shown: Vec<String> = path.iter().take(depth).cloned().collect();
        let dotted = shown.join(".");
        let top = default_path.first().map(String::as_str).unwrap_or("");
        let reason = BASEHUB_OUTSIDE_KEYS
            .iter()
            .find(|(k, _)| *k == top)
            .map_or(OTHER_BASEHUB_KEY, |(_, r)| r);
        if !out.iter().any(|d: &Dropped| d.key == dotted) {
            out.push(Dropped {
                key: dotted,
                reason: reason.to_owned(),
            });
        }
    }
    out.sort();
    out
}

/// What the README says besides the export itself.
#[derive(Debug, Clone, Default)]
pub struct ReadmeFacts {
    /// `cluster/hub`, or the config file.
    pub hub: String,
    /// The Helm release (and default namespace).
    pub release: String,
    /// Differences between the pods (computed; see [`pod_differences`](crate::compare)).
    pub pod_differences: Vec<String>,
    /// The user and server the pods were compared for.
    pub pods_compared_for: String,
    /// Why the pods could not be compared, if they could not.
    pub pods_not_compared: Option<String>,
    /// The users.json / homes.tar.zst section, when the hub's data was exported.
    pub hub_data: Option<String>,
}

/// The heading of the section on users and homes (filled by the hub data export).
pub const HUB_DATA_HEADING: &str = "## Users and home directories";

/// The export's README.md.
pub fn readme(export: &Export, facts: &ReadmeFacts) -> String {
    let namespace = export
        .namespace
        .clone()
        .unwrap_or_else(|| facts.release.clone());
    let host = export
        .host
        .clone()
        .unwrap_or_else(|| "hub.example.org".to_owned());
    let mut s = String::new();
    let p = |s: &mut String, line: &str| {
        s.push_str(line);
        s.push('\n');
    };
    p(
        &mut s,
        &format!("# {} on upstream Zero to JupyterHub", facts.hub),
    );
    p(&mut s, "");
    p(&mut s, &format!("Exported by `hubfleet export`: values for the z2jh Helm chart, version **{Z2JH_CHART_VERSION}** (hubfleet's tests check exports against that chart's `values.schema.yaml` and the real KubeSpawner)."));
    p(&mut s, "");
    p(
        &mut s,
        "- `values.yaml`: the hub's settings as z2jh values; no secrets.",
    );
    p(
        &mut s,
        "- `secrets.values.yaml` (mode 0600): the secrets; keep it out of version control.",
    );
    if !export.placeholders.is_empty() {
        p(&mut s, &format!("  {} secrets could not be decrypted here and are placeholders starting `{CHANGE_ME}:`; fill them in before installing:", export.placeholders.len()));
        for k in &export.placeholders {
            p(&mut s, &format!("  - `{k}`"));
        }
    }
    p(&mut s, "");
    p(&mut s, "## Install");
    p(&mut s, "");
    p(&mut s, "```bash");
    p(
        &mut s,
        &format!("helm repo add jupyterhub {Z2JH_HELM_REPO}"),
    );
    p(&mut s, "helm repo update");
    p(&mut s, &format!("helm upgrade --install {} jupyterhub/jupyterhub --version {Z2JH_CHART_VERSION} --namespace {namespace} --create-namespace --values values.yaml --values secrets.values.yaml", facts.release));
    p(&mut s, "```");
    p(&mut s, "");
    p(&mut s, "## DNS and TLS");
    p(&mut s, "");
    p(&mut s, &format!("1. Find the public address: `kubectl --namespace {namespace} get service proxy-public` (EXTERNAL-IP), or your ingress controller's if `ingress.enabled`."));
    p(&mut s, &format!("2. Point `{host}` at it: an A (or CNAME) record. If the hub gives users hosts of their own (`hub.config.JupyterHub.subdomain_host`), add a wildcard record `*.{host}` too."));
    p(&mut s, &format!("3. TLS: either z2jh's Let's Encrypt (`proxy.https.enabled: true`, `proxy.https.hosts: [{host}]`, `proxy.https.letsencrypt.contactEmail: you@example.org`), or an ingress with cert-manager (`ingress.enabled: true`, `ingress.hosts: [{host}]`, `ingress.tls`). Add them to values.yaml and run the `helm upgrade` again."));
    p(&mut s, "4. Update the OAuth application's callback URL to `https://HOST/hub/oauth_callback` if the host changed.");
    p(&mut s, "");
    if !export.translated.is_empty() {
        p(&mut s, "## Translated");
        p(&mut s, "");
        for t in &export.translated {
            p(&mut s, &format!("- `{}` → {}", t.from, t.to));
        }
        p(&mut s, "");
    }
    if !export.notes.is_empty() {
        p(&mut s, "## To do by hand");
        p(&mut s, "");
        for n in &export.notes {
            p(&mut s, &format!("- {n}"));
        }
        p(&mut s, "");
    }
    p(&mut s, "## What does not carry over");
    p(&mut s, "");
    if export.dropped.is_empty() {
        p(&mut s, "Nothing: every key has a z2jh equivalent.");
    }
    for d in &export.dropped {
        p(&mut s, &format!("- `{}`: {}", d.key, d.reason));
    }
    p(&mut s, "");
    p(&mut s, "## The same pods");
    p(&mut s, "");
    p(&mut s, &format!("hubfleet's pod from the hub's own files is compared, field by field, with its pod from these values (which `hubfleet`'s tests check against the real KubeSpawner's), for {}.", facts.pods_compared_for));
    if let Some(why) = &facts.pods_not_compared {
        p(&mut s, &format!("Here they could not be compared: {why}."));
    } else if facts.pod_differences.is_empty() {
        p(&mut s, "No field differs.");
    } else {
        p(&mut s, "Fields that differ:");
        p(&mut s, "");
        for d in &facts.pod_differences {
            p(&mut s, &format!("- {d}"));
        }
    }
    p(&mut s, "");
    p(&mut s, HUB_DATA_HEADING);
    p(&mut s, "");
    match &facts.hub_data {
        Some(text) => p(&mut s, text.trim_end()),
        None => p(
            &mut s,
            "This export has no users.json or homes.tar.zst: the hub's data was not read.",
        ),
    }
    s
}

/// The fields of two pods (`v1 List`s of the pod and its PVCs, as `render pod --pvc` prints
/// them) that differ, by [`crate::compare::pod_fields`].
pub fn differing_fields(a: &Json, b: &Json) -> Vec<&'static str> {
    let (a, b): (BTreeMap<_, _>, BTreeMap<_, _>) =
        (crate::compare::pod_fields(a), crate::compare::pod_fields(b));
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, _)| *k)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml_ng::from_str(s).unwrap()
    }

    #[test]
    fn a_single_hubs_flavours_are_charts_of_their_own() {
        let e = export(
            yaml("dask-gateway: {enabled: true}\nbinderhub-service: {enabled: true}\nhub: {}\n"),
            &[],
        );
        assert!(e.values.get("dask-gateway").is_none());
        assert!(e.values.get("binderhub-service").is_none());
        let dropped: Vec<&str> = e.dropped.iter().map(|d| d.key.as_str()).collect();
        assert!(dropped.contains(&"dask-gateway") && dropped.contains(&"binderhub-service"));
        assert!(e
            .dropped
            .iter()
            .any(|d| d.reason.contains("--dask-gateway-values")));
    }

    #[test]
    fn every_documented_hubfleet_key_has_a_fate() {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md"),
        )
        .unwrap();
        // `hubfleet.` at the top of a key, not a section's own `hubfleet:` (binderhub-service's)
        let re = regex::Regex::new(r"(^|[^.\w-])hubfleet\.([a-z_]+(?:\.[a-z_]+)*)").unwrap();
        let mut missing: Vec<String> = re
            .captures_iter(&doc)
            .map(|c| c[2].trim_end_matches('.').to_owned())
            // `hubfleet.sqlite` is the database's file name; a section (`local`) is its keys
            .filter(|k| k != "sqlite")
            .filter(|k| {
                hubfleet_fate(k).is_none()
                    && !HUBFLEET_KEYS
                        .iter()
                        .any(|(t, _)| t.starts_with(&format!("{k}.")))
            })
            .collect();
        missing.sort();
        missing.dedup();
        assert!(
            missing.is_empty(),
            "hubfleet keys documented in docs/configuration.md with no entry in HUBFLEET_KEYS: {missing:?}"
        );
        for (k, fate) in HUBFLEET_KEYS {
            let (Fate::Dropped(why) | Fate::Translated(why)) = fate;
            assert!(why.len() > 20, "{k}: say why");
        }
    }

    #[test]
    fn hubfleet_keys_are_translated_or_dropped_with_reasons() {
        let e = export(
            yaml(
                "hub: {config: {JupyterHub: {authenticator_class: native}}}\nhubfleet:\n  listen: 127.0.0.1:8000\n  public_url: https://hub.example.org/\n  auth: {login_announcement: Welcome}\n  local: {system_users: true, environments: {pangeo: {python_env: /opt/p}}}\n  kubernetes: {namespace: science}\n  made_up: 1\n",
            ),
            &[],
        );
        assert!(e.values.get("hubfleet").is_none());
        assert_eq!(
            e.values["hub"]["templateVars"]["announcement_login"].as_str(),
            Some("Welcome")
        );
        assert_eq!(e.host.as_deref(), Some("hub.example.org"));
        assert_eq!(e.namespace.as_deref(), Some("science"));
        let dropped: Vec<&str> = e.dropped.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(
            dropped,
            [
                "hubfleet.listen",
                "hubfleet.local.system_users",
                "hubfleet.made_up"
            ]
        );
        assert!(e.notes[0].contains("pangeo") && e.notes[0].contains("singleuser.image"));
    }

    #[test]
    fn secrets_leave_the_values() {
        let e = export(
            yaml("hub:\n  cookieSecret: abc\n  config:\n    GitHubOAuthenticator: {client_id: id, client_secret: s3cret}\n  services: {grader: {apiToken: t0k}}\nproxy: {secretToken: p}\nsingleuser: {image: {name: x}}\n"),
            &[SopsKey {
                path: path_of("singleuser.image.name"),
                file: "enc-x.secret.values.yaml".into(),
                not_decrypted: Some("GCP KMS".into()),
            }],
        );
        let text = serde_yaml_ng::to_string(&e.values).unwrap();
        for secret in ["abc", "s3cret", "t0k", "secretToken", "image"] {
            assert!(!text.contains(secret), "{secret} left in values: {text}");
        }
        assert!(text.contains("client_id"));
        assert_eq!(
            e.secrets["hub"]["config"]["GitHubOAuthenticator"]["client_secret"].as_str(),
            Some("s3cret")
        );
        assert!(e.secrets["singleuser"]["image"]["name"]
            .as_str()
            .unwrap()
            .starts_with(
                "CHANGE-ME: singleuser.image.name is encrypted in enc-x.secret.values.yaml"
            ));
        assert_eq!(e.placeholders, ["singleuser.image.name"]);
    }

    /// A database password inside `hub.db.url` is a secret: values.yaml has the URL without
    /// it, secrets.values.yaml the whole URL (which Helm layers over it).
    #[test]
    fn a_password_in_the_database_url_is_a_secret() {
        let e = export(
            yaml("hub:\n  db:\n    type: postgres\n    url: 'postgresql://hub:s3cr%40t@db.example.org:5432/jupyterhub?sslmode=require'\n"),
            &[],
        );
        let text = serde_yaml_ng::to_string(&e.values).unwrap();
        assert!(
            !text.contains("s3cr"),
            "the password left in values: {text}"
        );
        assert_eq!(
            e.values["hub"]["db"]["url"].as_str(),
            Some("postgresql://hub@db.example.org:5432/jupyterhub?sslmode=require")
        );
        assert_eq!(
            e.secrets["hub"]["db"]["url"].as_str(),
            Some("postgresql://hub:s3cr%40t@db.example.org:5432/jupyterhub?sslmode=require")
        );
        // Without a password nothing moves; a URL that does not parse but may hold one moves
        // whole.
        for (url, public) in [
            ("postgresql://hub@db/jupyterhub", true),
            ("sqlite:///srv/jupyterhub.sqlite", true),
            ("mysql+pymysql://hub:pw@[bad/jupyterhub", false),
        ] {
            let e = export(yaml(&format!("hub:\n  db:\n    url: '{url}'\n")), &[]);
            assert_eq!(
                e.values["hub"]["db"]["url"].as_str().is_some(),
                public,
                "{url}"
            );
            assert_eq!(
                e.secrets["hub"]["db"]["url"].as_str().is_some(),
                !public,
                "{url}"
            );
        }
    }

    #[test]
    fn basehub_homepage_and_staff() {
        let e = export(
            yaml("custom:\n  homepage: {gitRepoUrl: u, templateVars: {org: {name: X}}}\n  2i2c: {add_staff_user_ids_to_admin_users: true, add_staff_user_ids_of_type: github, staff_github_ids: [a, b]}\nhub:\n  config: {Authenticator: {admin_users: [c, a]}}\n  extraConfig:\n    01-custom-theme: \"c.JupyterHub.template_vars.update({'custom': get_config('custom.homepage.templateVars')})\"\n    03-staff: 'get_config(\"custom.2i2c.add_staff_user_ids_to_admin_users\")'\n    04-other: pass\n"),
            &[],
        );
        assert_eq!(
            e.values["hub"]["templateVars"]["custom"]["org"]["name"].as_str(),
            Some("X")
        );
        assert_eq!(
            e.values["hub"]["templatePaths"][0].as_str(),
            Some(BASEHUB_TEMPLATES_DIR)
        );
        let admins: Vec<&str> = e.values["hub"]["config"]["Authenticator"]["admin_users"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(admins, ["a", "b", "c"]);
        let snippets: Vec<&str> = e.values["hub"]["extraConfig"]
            .as_mapping()
            .unwrap()
            .keys()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(snippets, ["04-other"]);
        assert_eq!(
            e.values["custom"]["homepage"]["gitRepoUrl"].as_str(),
            Some("u")
        );
    }

    #[test]
    fn outside_keys_that_differ_from_the_chart() {
        let defaults =
            yaml("nfs: {enabled: false}\njupyterhub: {}\ndask-gateway: {enabled: false}\n");
        let hub = yaml("basehub: {nfs: {enabled: true}, jupyterhub: {hub: {}}, dask-gateway: {enabled: false}}\ndask-gateway: {gateway: {x: 1}}\n");
        let d = basehub_outside(&hub, &defaults, "basehub.jupyterhub");
        let keys: Vec<&str> = d.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["basehub.nfs.enabled", "dask-gateway.gateway"]);
        assert!(d[0].reason.contains("NFS"));
    }

    #[test]
    fn readme_has_the_commands() {
        let e = export(yaml("hub: {}"), &[]);
        let r = readme(
            &e,
            &ReadmeFacts {
                hub: "demo".into(),
                release: "demo".into(),
                ..Default::default()
            },
        );
        assert!(r.contains("helm repo add jupyterhub https://hub.jupyter.org/helm-chart/"));
        assert!(r.contains("--version 4.3.3 --namespace demo --create-namespace --values values.yaml --values secrets.values.yaml"));
        assert!(r.contains(HUB_DATA_HEADING));
    }
}

#[cfg(test)]
mod basehub_only_tests {
    use super::*;

    #[test]
    fn what_needs_basehubs_templates_goes() {
        let doc: Value = serde_yaml_ng::from_str(
            "custom: {homepage: {gitRepoUrl: https://g/x, gitRepoBranch: main}}\nhub:\n  extraEnv:\n    KEEP: 1\n    BASEHUB_K8S_DIST: {valueFrom: {configMapKeyRef: {name: basehub-cluster-info, key: K8S_DIST}}}\n  extraConfig: {11-q: 'from jupyterhub_usage_quotas import x', 12-k: pass}\n  extraVolumes: [{name: usage-quotas}, {name: keep}]\n  extraVolumeMounts: [{name: usage-quotas}]\n  initContainers:\n  - name: clone\n    env: [{name: GIT_REPO_URL, valueFrom: {configMapKeyRef: {name: hub-custom-templates-config, key: GIT_REPO_URL}}}]\n",
        )
        .unwrap();
        let e = export(doc, &[]);
        let text = serde_yaml_ng::to_string(&e.values).unwrap();
        assert!(!text.contains("configMapKeyRef"), "{text}");
        assert!(
            !text.contains("usage-quotas") && !text.contains("11-q"),
            "{text}"
        );
        assert!(
            text.contains("value: https://g/x") && text.contains("KEEP"),
            "{text}"
        );
        let keys: Vec<&str> = e.dropped.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "hub.extraConfig.11-q",
                "hub.extraEnv.BASEHUB_K8S_DIST",
                "hub.extraVolumeMounts[name=usage-quotas]",
                "hub.extraVolumes[name=usage-quotas]"
            ]
        );
    }
}
