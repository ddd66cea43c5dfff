//! hubfleet-kube: the pod (and PVC) a user's server gets on Kubernetes, built from z2jh values as
//! KubeSpawner 7.1 builds it under z2jh's hub config. Pure functions: values and facts in,
//! k8s-openapi objects out; `hubfleet render pod` and the Kubernetes spawner call the same
//! [`render`].
//!
//! ```
//! use std::collections::BTreeMap;
//! use hubfleet_config::values::Values;
//! use hubfleet_kube::{pod_for, ServerFacts, UserFacts, UserOptions};
//!
//! let values = Values::new(serde_yaml_ng::from_str(
//!     "singleuser: {image: {name: jupyter/base-notebook, tag: latest}, uid: 1000}",
//! ).unwrap());
//! let user = UserFacts::named("alice");
//! let (pod, pvc) = pod_for(&values, &user, &ServerFacts::default(), &UserOptions::default(),
//!     &BTreeMap::new()).unwrap();
//! assert_eq!(pod.metadata.name.as_deref(), Some("jupyter-alice"));
//! assert!(pvc.is_none());
//! ```
//!
//! What it models, in order (as `User.spawn` and `KubeSpawner._start` run): z2jh's mapping of the
//! values to KubeSpawner's settings, `hub.config.KubeSpawner`/`Spawner` passed
//! through, basehub's `hub.extraConfig` snippets done natively, `group_overrides`,
//! the profile and its options, the PVC, and `get_pod_manifest`.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use serde_yaml_ng::{Mapping, Value};

use hubfleet_config::values::Values;

mod basehub;
pub mod compare;
mod error;
pub mod export;
mod hub_config;
pub mod manifests;
mod names;
mod pod;
mod profiles;
mod python;
pub mod slug;
mod spawner;

pub use error::KubeError;
pub use names::ChartNames;
pub use pod::{JUPYTERHUB_VERSION, KUBESPAWNER_VERSION};

use hub_config::HubSetup;
use spawner::Spawner;

/// Placeholder for the server's API token in [`hub_env`] (the reference tool prints the same).
pub const API_TOKEN_PLACEHOLDER: &str = "<JUPYTERHUB_API_TOKEN>";

/// Who the server is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFacts {
    /// The hub's user name (after any normalisation by the authenticator).
    pub name: String,
    /// The user's id in the hub (`{userid}` in templates).
    pub id: u64,
    /// An admin of the hub. Users in `admin_users` of the authenticator's config count too.
    pub admin: bool,
    /// The hub groups the user is in. Members of `JupyterHub.load_groups` count too.
    pub groups: Vec<String>,
}

impl UserFacts {
    /// A user who is no admin and in no group, with id 1.
    pub fn named(name: &str) -> UserFacts {
        UserFacts {
            name: name.to_owned(),
            id: 1,
            admin: false,
            groups: Vec::new(),
        }
    }
}

/// Which server of the user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerFacts {
    /// The server's name: empty for the default server.
    pub name: String,
}

/// What the user chose on the spawn form or sent to the API: `profile`, each profile option's
/// choice (`image: pangeo`), unlisted choices (`image--unlisted-choice: repo/img:tag`), and any
/// other key (BinderHub's `token`, `image`, `repo_url`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserOptions(pub BTreeMap<String, Value>);

impl UserOptions {
    /// The option `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// Set option `key` to a string.
    pub fn set(&mut self, key: &str, value: &str) {
        self.0
            .insert(key.to_owned(), Value::String(value.to_owned()));
    }

    /// Options from a JSON object (BinderHub's launch options).
    pub fn from_json(json: &serde_json::Value) -> Result<UserOptions, KubeError> {
        let serde_json::Value::Object(map) = json else {
            return Err(KubeError::UserOptions(
                "user options must be a JSON object".into(),
            ));
        };
        let mut out = BTreeMap::new();
        for (k, v) in map {
            let v: Value = serde_yaml_ng::to_value(v)
                .map_err(|e| KubeError::UserOptions(format!("user option {k}: {e}")))?;
            out.insert(k.clone(), v);
        }
        Ok(UserOptions(out))
    }
}

/// What [`render`] built.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The pod KubeSpawner would create.
    pub pod: Pod,
    /// The PVCs it (or basehub's `pre_spawn_hook`) would create: basehub's extra PVCs first, then
    /// the user's home PVC with `singleuser.storage.type: dynamic`.
    pub pvcs: Vec<PersistentVolumeClaim>,
    /// The pod as JSON, before it was read into [`Pod`] (what `render pod` prints).
    pub pod_json: serde_json::Value,
    /// The PVCs as JSON.
    pub pvcs_json: Vec<serde_json::Value>,
    /// Things worth telling the operator: Python snippets not run, settings not modelled.
    pub notes: Vec<String>,
}

/// The Helm release facts z2jh's hub sees (`Chart`, `Release` in its values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmRelease {
    /// `Chart.Name` (`jupyterhub`).
    pub chart_name: String,
    /// `Chart.Version` (`4.3.3`).
    pub chart_version: String,
    /// `Chart.AppVersion`.
    pub app_version: String,
    /// `Release.Name`.
    pub release_name: String,
    /// `Release.Namespace`.
    pub namespace: String,
}

/// `values` with `Chart` and `Release` added, as z2jh's `hub/secret.yaml` gives them to the hub.
pub fn with_release(values: &Values, release: &HelmRelease) -> Values {
    let mut doc = values.as_value().clone();
    if let Value::Mapping(map) = &mut doc {
        let text = |s: &str| Value::String(s.to_owned());
        let mut chart = Mapping::new();
        chart.insert(text("Name"), text(&release.chart_name));
        chart.insert(text("Version"), text(&release.chart_version));
        chart.insert(text("AppVersion"), text(&release.app_version));
        let mut rel = Mapping::new();
        rel.insert(text("Name"), text(&release.release_name));
        rel.insert(text("Namespace"), text(&release.namespace));
        rel.insert(text("Service"), text("Helm"));
        map.insert(text("Chart"), Value::Mapping(chart));
        map.insert(text("Release"), Value::Mapping(rel));
    }
    Values::new(doc)
}

fn user_with_hub_facts(setup: &HubSetup, user: &UserFacts) -> UserFacts {
    let mut user = user.clone();
    user.admin = user.admin || setup.admin_users.contains(&user.name);
    for (group, members) in &setup.load_groups {
        if members.contains(&user.name) && !user.groups.contains(group) {
            user.groups.push(group.clone());
        }
    }
    user
}

/// The server's URL prefix (`/user/alice/`, `/user/alice/lab1/`).
fn server_base_url(setup: &HubSetup, user: &UserFacts, server: &ServerFacts) -> String {
    let user_url = python::url_path_join(&[
        &setup.base_url,
        "user",
        &python::quote(&user.name, "@~"),
        "/",
    ]);
    python::url_path_join(&[&user_url, &python::quote(&server.name, "@~"), "/"])
}

/// The part of the server's environment that JupyterHub sets (its `Spawner.get_env` before the
/// spawner's own settings), as z2jh's hub would give it: the API token (`api_token`, e.g.
/// [`API_TOKEN_PLACEHOLDER`]), the OAuth client and scopes, the hub's and the server's URLs.
pub fn hub_env(
    values: &Values,
    user: &UserFacts,
    server: &ServerFacts,
    api_token: &str,
) -> Result<BTreeMap<String, String>, KubeError> {
    let setup = HubSetup::from_values(values)?;
    let user = user_with_hub_facts(&setup, user);
    let mut env = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        env.insert(k.to_owned(), v);
    };
    put("JUPYTERHUB_API_TOKEN", api_token.to_owned());
    put("JPY_API_TOKEN", api_token.to_owned());
    if setup.admin_access {
        put("JUPYTERHUB_ADMIN_ACCESS", "1".into());
    }
    let mut client_id = format!("jupyterhub-user-{}", python::quote(&user.name, "/"));
    if !server.name.is_empty() {
        client_id = format!("{client_id}-{}", python::quote(&server.name, "/"));
    }
    put("JUPYTERHUB_CLIENT_ID", client_id);
    if let Some(options) = &setup.cookie_options {
        put("JUPYTERHUB_COOKIE_OPTIONS", python::json_dumps(options));
    }
    put(
        "JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED",
        if setup.cookie_host_prefix_enabled {
            "1"
        } else {
            "0"
        }
        .into(),
    );
    let public = PublicUrls::of(&setup)?;
    put("JUPYTERHUB_HOST", public.hub_host());
    // The user's URL: a full one on a host of their own with `subdomain_host`.
    let user_url = format!(
        "{}{}",
        public.user_host(&user.name),
        python::url_path_join(&[
            &setup.base_url,
            "user",
            &python::quote(&user.name, "@~"),
            "/",
        ])
    );
    put(
        "JUPYTERHUB_OAUTH_CALLBACK_URL",
        python::url_path_join(&[
            &user_url,
            &python::quote(&server.name, "@~"),
            "oauth_callback",
        ]),
    );
    let scopes = Value::Sequence(vec![
        Value::String(format!(
            "access:servers!server={}/{}",
            user.name, server.name
        )),
        Value::String(format!("access:servers!user={}", user.name)),
    ]);
    put("JUPYTERHUB_OAUTH_SCOPES", python::json_dumps(&scopes));
    put(
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES",
        python::json_dumps(&scopes),
    );
    let allowed = setup.config.value("oauth_client_allowed_scopes");
    put(
        "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES",
        python::json_dumps(&match allowed {
            Value::Null => Value::Sequence(Vec::new()),
            v => v,
        }),
    );
    put("JUPYTERHUB_USER", user.name.clone());
    put("JUPYTERHUB_SERVER_NAME", server.name.clone());
    let hub_prefix = python::url_path_join(&[&setup.base_url, "hub/"]);
    let api_url = python::url_path_join(&[&setup.hub_connect_url, &format!("{hub_prefix}api")]);
    put(
        "JUPYTERHUB_ACTIVITY_URL",
        python::url_path_join(&[
            &api_url,
            "users",
            &python::quote(&user.name, "@~"),
            "activity",
        ]),
    );
    put("JUPYTERHUB_API_URL", api_url);
    put("JUPYTERHUB_BASE_URL", setup.base_url.clone());
    put(
        "JUPYTERHUB_SERVICE_PREFIX",
        server_base_url(&setup, &user, server),
    );
    // `User.public_url`: the server's URL when it is a full one (subdomains), else on the
    // public URL's host, else nothing.
    let server_url = if server.name.is_empty() {
        user_url
    } else {
        python::url_path_join(&[&user_url, &python::quote(&server.name, "@~"), "/"])
    };
    let public_url = if server_url.contains("://") {
        server_url
    } else {
        public
            .origin()
            .map(|origin| format!("{origin}{server_url}"))
            .unwrap_or_default()
    };
    put("JUPYTERHUB_PUBLIC_URL", public_url);
    put(
        "JUPYTERHUB_PUBLIC_HUB_URL",
        public
            .origin()
            .map(|origin| format!("{origin}{hub_prefix}"))
            .unwrap_or_default(),
    );
    Ok(env)
}

/// The hub's public URLs as JupyterHub 5 works them out: `JupyterHub.public_url` (validated as
/// upstream does), else `subdomain_host` + `base_url`; users' hosts under `subdomain_host`.
struct PublicUrls {
    /// `JupyterHub.public_url` in effect (`""`: none).
    public_url: String,
    /// `JupyterHub.subdomain_host` (with `https://` added when it has no scheme).
    subdomain_host: String,
}

impl PublicUrls {
    fn of(setup: &HubSetup) -> Result<PublicUrls, KubeError> {
        let mut subdomain_host = setup.subdomain_host.clone();
        if !subdomain_host.is_empty() && !subdomain_host.contains("://") {
            subdomain_host.insert_str(0, "https://");
        }
        let public_url = if setup.public_url.is_empty() {
            if subdomain_host.is_empty() {
                String::new()
            } else {
                validated_public_url(
                    &format!("{subdomain_host}{}", setup.base_url),
                    &setup.base_url,
                )?
            }
        } else {
            validated_public_url(&setup.public_url, &setup.base_url)?
        };
        Ok(PublicUrls {
            public_url,
            subdomain_host,
        })
    }

    /// `scheme://host[:port]` of the public URL.
    fn origin(&self) -> Option<String> {
        url_origin(&self.public_url)
    }

    /// `Hub.public_host` (`JUPYTERHUB_HOST`).
    fn hub_host(&self) -> String {
        self.origin().unwrap_or_else(|| self.subdomain_host.clone())
    }

    /// `User.host`: `scheme://<user's label>.<domain>[:port]` with `subdomain_host`, else `""`
    /// (the user's URL is then a path).
    fn user_host(&self, user: &str) -> String {
        let Some((scheme, rest)) = self.subdomain_host.split_once("://") else {
            return String::new();
        };
        let netloc = rest.split('/').next().unwrap_or("");
        let (_, port) = split_port(netloc);
        let source = if self.public_url.is_empty() {
            netloc.to_owned()
        } else {
            let (_, rest) = self.public_url.split_once("://").unwrap_or(("", ""));
            rest.split('/').next().unwrap_or("").to_owned()
        };
        // urlparse's `hostname`: no port, lower-cased.
        let domain = split_port(&source).0.to_lowercase();
        let label = dns_label(user);
        match port {
            Some(port) => format!("{scheme}://{label}.{domain}:{port}"),
            None => format!("{scheme}://{label}.{domain}"),
        }
    }
}

/// `JupyterHub._validate_public_url`: a trailing slash, `base_url` added when there is no path
/// (a path that is not `base_url` is an error), `https://` when there is no scheme.
fn validated_public_url(url: &str, base_url: &str) -> Result<String, KubeError> {
    let mut url = url.to_owned();
    if !url.ends_with('/') {
        url.push('/');
    }
    if !url.ends_with(base_url) {
        let path = url
            .split_once("://")
            .map_or(url.as_str(), |(_, rest)| rest)
            .split_once('/')
            .map_or("", |(_, path)| path);
        if path.trim_matches('/').is_empty() {
            url = format!("{}{base_url}", url.trim_end_matches('/'));
        } else {
            return Err(KubeError::invalid(
                "hub.config.JupyterHub.public_url",
                format!("{url:?} must include base_url: {base_url:?}"),
            ));
        }
    }
    if !url.contains("://") {
        url.insert_str(0, "https://");
    }
    Ok(url)
}

/// `host[:port]` → (host, port).
fn split_port(netloc: &str) -> (&str, Option<&str>) {
    if netloc.starts_with('[') {
        return match netloc.split_once("]:") {
            Some((host, port)) => (&netloc[..host.len() + 1], Some(port)),
            None => (netloc, None),
        };
    }
    match netloc.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() => (host, Some(port)),
        Some((host, _)) => (host, None),
        None => (netloc, None),
    }
}

/// JupyterHub 5's `_strict_dns_safe_encode` (its default `subdomain_hook_idna`): the name when it
/// is a DNS label (any case), else its IDNA form when that is one, else `u-<stub>--<hash>`.
fn dns_label(name: &str) -> String {
    fn safe(label: &str) -> bool {
        !label.is_empty()
            && label.len() <= 63
            && !label.chars().all(|c| c.is_ascii_digit())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    }
    if name.contains("--") {
        return trim_and_hash(name);
    }
    if safe(name) {
        return name.to_owned();
    }
    // Python's `idna.encode` refuses capitals (IDNA 2008) where UTS 46 would lower-case them,
    // and dots make several labels: both end in the hash.
    if !name.contains('.') && name.to_lowercase() == name {
        if let Ok(encoded) = idna::domain_to_ascii_strict(name) {
            if encoded != name && safe(&encoded) {
                return encoded;
            }
        }
    }
    trim_and_hash(name)
}

/// `u-` + up to 8 of the name's lower-cased `[a-z0-9]` (`x` when none) + `--` + 7 hex of its
/// SHA-256.
fn trim_and_hash(name: &str) -> String {
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(name.as_bytes()));
    let stub: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .take(8)
        .collect();
    let stub = if stub.is_empty() {
        "x".to_owned()
    } else {
        stub
    };
    format!("u-{stub}--{}", &hash[..7])
}

/// `scheme://host[:port]` of a URL, if it has one.
fn url_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next().unwrap_or("");
    (!host.is_empty()).then(|| format!("{scheme}://{host}"))
}

/// The profile list this user may choose from, initialized as KubeSpawner shows it (slugs,
/// defaults, options), as JSON like the reference tool's `--list-profiles`.
pub fn profiles_for(values: &Values, user: &UserFacts) -> Result<serde_json::Value, KubeError> {
    let setup = HubSetup::from_values(values)?;
    let user = user_with_hub_facts(&setup, user);
    let spawner = Spawner::new(&setup.config, &user, "", &setup.namespace)?;
    let raw = spawner.sorted_values("profile_list")?;
    let raw = setup.basehub.filter_profiles(&spawner, raw)?;
    let list = profiles::initialize(&raw, "singleuser.profileList")?;
    Ok(profiles::summary(&list))
}

/// Build the pod (and PVCs) for `user`'s server `server` with the chosen `options`, from `values`
/// (the merged values, with `Chart` and `Release`: see [`with_release`]). `env` is the hub's
/// part of the environment ([`hub_env`]); the spawner's part is added here.
pub fn render(
    values: &Values,
    user: &UserFacts,
    server: &ServerFacts,
    options: &UserOptions,
    env: &BTreeMap<String, String>,
) -> Result<Rendered, KubeError> {
    let setup = HubSetup::from_values(values)?;
    let user = user_with_hub_facts(&setup, user);
    let mut spawner = Spawner::new(&setup.config, &user, &server.name, &setup.namespace)?;
    let mut notes = setup.notes.clone();

    // apply_group_overrides
    let overrides = spawner.mapping("group_overrides")?;
    let mut keys: Vec<(String, Value)> = overrides
        .into_iter()
        .map(|(k, v)| (python::str_of(&k), v))
        .collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, go) in keys {
        let from = format!("group_overrides.{key}");
        let groups: Vec<String> = match go.get("groups") {
            Some(Value::Sequence(g)) => g.iter().map(python::str_of).collect(),
            _ => {
                return Err(KubeError::invalid(
                    &from,
                    "needs `groups`: a list of group names",
                ))
            }
        };
        if groups.iter().any(|g| user.groups.contains(g)) {
            let Some(Value::Mapping(o)) = go.get("spawner_override") else {
                return Err(KubeError::invalid(
                    &from,
                    "needs `spawner_override`: a mapping of settings",
                ));
            };
            spawner.apply_overrides(o, &format!("{from}.spawner_override"));
        }
    }

    // pre_spawn_hook: basehub's extra PVCs
    let mut pvcs_json = Vec::new();
    for (template, class, capacity) in &setup.basehub.extra_pvcs {
        let name = spawner
            .expand(template)
            .map_err(|e| KubeError::invalid("custom.singleuser.extraPVCs", e))?;
        let mut component = Mapping::new();
        component.insert(
            Value::String("component".into()),
            Value::String("extra-pvc".into()),
        );
        pvcs_json.push(pod::pvc_manifest(
            &spawner,
            &pod::PvcSpec {
                name: &name,
                component: "extra-pvc",
                extra_labels: &component,
                extra_annotations: &Mapping::new(),
                storage_class: class,
                access_modes: &Value::Sequence(vec![Value::String("ReadWriteOnce".into())]),
                selector: &Mapping::new(),
                storage: capacity,
            },
        )?);
    }

    // start(): basehub for admins, the binder image, then KubeSpawner's own start
    setup.basehub.before_start(&mut spawner)?;
    let binder = setup.basehub.binder.clone();
    if let Some((auth_enabled, _)) = &binder {
        if !auth_enabled {
            if options.get("token").is_none() {
                return Err(KubeError::Refused("token required".into()));
            }
            if options.get("image").is_none() {
                return Err(KubeError::Refused("image required".into()));
            }
        }
        if let Some(image) = options.get("image") {
            spawner.set("image", image.clone(), "the launch's image");
        }
    }
    let raw = spawner.sorted_values("profile_list")?;
    let raw = setup.basehub.filter_profiles(&spawner, raw)?;
    let list = profiles::initialize(&raw, "singleuser.profileList")?;
    profiles::load(&mut spawner, &list, options, "singleuser.profileList")?;

    if spawner.flag("storage_pvc_ensure")?.unwrap_or(false) {
        let extra_labels = match spawner.expand_all(
            &Value::Mapping(spawner.mapping("storage_extra_labels")?),
            &spawner.from("storage_extra_labels"),
        )? {
            Value::Mapping(m) => m,
            _ => Mapping::new(),
        };
        let extra_annotations = match spawner.expand_all(
            &Value::Mapping(spawner.mapping("storage_extra_annotations")?),
            &spawner.from("storage_extra_annotations"),
        )? {
            Value::Mapping(m) => m,
            _ => Mapping::new(),
        };
        let selector = match spawner.expand_all(
            &Value::Mapping(spawner.mapping("storage_selector")?),
            &spawner.from("storage_selector"),
        )? {
            Value::Mapping(m) => m,
            _ => Mapping::new(),
        };
        pvcs_json.push(pod::pvc_manifest(
            &spawner,
            &pod::PvcSpec {
                name: &spawner.pvc_name,
                component: "singleuser-storage",
                extra_labels: &extra_labels,
                extra_annotations: &extra_annotations,
                storage_class: &spawner.get("storage_class"),
                access_modes: &spawner.get("storage_access_modes"),
                selector: &selector,
                storage: &spawner.get("storage_capacity"),
            },
        )?);
    }

    let base_url = server_base_url(&setup, &user, server);
    let environment = pod::environment(&spawner, env, &base_url, options, binder.is_some())?;
    let args = match &binder {
        Some((false, cors)) => binder_args(&spawner, &base_url, options, cors)?,
        _ => spawner
            .sorted_values("args")?
            .iter()
            .map(python::str_of)
            .collect(),
    };
    let mut pod_json = pod::pod_manifest(&spawner, &environment, args)?;
    setup.basehub.modify_pod(&spawner, &mut pod_json)?;
    notes.extend(spawner.notes.iter().cloned());

    let pod: Pod = serde_json::from_value(pod_json.clone())
        .map_err(|e| KubeError::invalid("the pod", format!("not a valid Pod: {e}")))?;
    let pvcs = pvcs_json
        .iter()
        .map(|p| {
            serde_json::from_value(p.clone()).map_err(|e| {
                KubeError::invalid("the PVC", format!("not a valid PersistentVolumeClaim: {e}"))
            })
        })
        .collect::<Result<Vec<PersistentVolumeClaim>, _>>()?;
    notes.sort();
    notes.dedup();
    Ok(Rendered {
        pod,
        pvcs,
        pod_json,
        pvcs_json,
        notes,
    })
}

/// The pod and the user's home PVC (when storage is dynamic) for the Kubernetes spawner; see
/// [`render`].
pub fn pod_for(
    values: &Values,
    user: &UserFacts,
    server: &ServerFacts,
    options: &UserOptions,
    env: &BTreeMap<String, String>,
) -> Result<(Pod, Option<PersistentVolumeClaim>), KubeError> {
    let rendered = render(values, user, server, options, env)?;
    let pvc = rendered.pvcs.into_iter().last();
    Ok((rendered.pod, pvc))
}

/// `BinderSpawnerMixin.get_args` without authentication: the NotebookApp (and ServerApp)
/// arguments with the launch's token.
fn binder_args(
    spawner: &Spawner,
    base_url: &str,
    options: &UserOptions,
    cors: &str,
) -> Result<Vec<String>, KubeError> {
    let token = options.get("token").map(python::str_of).unwrap_or_default();
    let mut args = vec![
        "--ip=0.0.0.0".to_owned(),
        format!("--port={}", pod::effective_port(spawner)?),
        format!("--NotebookApp.base_url={base_url}"),
        format!("--NotebookApp.token={token}"),
        "--NotebookApp.trust_xheaders=True".to_owned(),
    ];
    if let Some(url) = spawner.string("default_url")?.filter(|s| !s.is_empty()) {
        args.push(format!("--NotebookApp.default_url={url}"));
    }
    if !cors.is_empty() {
        args.push(format!("--NotebookApp.allow_origin={cors}"));
    }
    if cors == "*" {
        args.push("--NotebookApp.allow_origin_pat=.*".into());
    }
    args.extend(spawner.sorted_values("args")?.iter().map(python::str_of));
    let server_app: Vec<String> = args
        .iter()
        .filter_map(|a| {
            a.strip_prefix("--NotebookApp.")
                .map(|rest| format!("--ServerApp.{rest}"))
        })
        .collect();
    args.extend(server_app);
    Ok(args)
}
