//! What z2jh's `jupyterhub_config.py` makes of the values: KubeSpawner's config (from
//! `singleuser.*`, `scheduling.*`, `imagePullSecret*`, the chart's names and labels), the hub's
//! URLs, `hub.config` passed through, and which `hub.extraConfig` snippets are there.

use serde_yaml_ng::{Mapping, Value};

use hubfleet_config::values::Values;

use crate::basehub::Basehub;
use crate::error::KubeError;
use crate::names::ChartNames;
use crate::python;
use crate::spawner::SpawnerConfig;

/// The hub as z2jh configures it, for the spawner.
#[derive(Debug, Clone)]
pub(crate) struct HubSetup {
    pub(crate) config: SpawnerConfig,
    pub(crate) namespace: String,
    /// `JupyterHub.base_url`, with leading and trailing slash.
    pub(crate) base_url: String,
    /// `JupyterHub.hub_connect_url`: `http://<hub service>:8081`.
    pub(crate) hub_connect_url: String,
    pub(crate) admin_access: bool,
    pub(crate) subdomain_host: String,
    pub(crate) public_url: String,
    pub(crate) cookie_host_prefix_enabled: bool,
    pub(crate) cookie_options: Option<Value>,
    /// `admin_users` of the authenticator's config sections.
    pub(crate) admin_users: Vec<String>,
    /// `JupyterHub.load_groups`: group → members.
    pub(crate) load_groups: Vec<(String, Vec<String>)>,
    pub(crate) basehub: Basehub,
    pub(crate) notes: Vec<String>,
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Sequence(s)) => !s.is_empty(),
        Some(Value::Mapping(m)) => !m.is_empty(),
        Some(Value::Tagged(_)) => true,
    }
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap_or(Value::Null)
}

fn s(text: &str) -> Value {
    Value::String(text.to_owned())
}

/// z2jh's `camelCaseify`: `extra_labels` → `extraLabels`.
fn camel(snake: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for c in snake.chars() {
        if c == '_' {
            up = true;
        } else if up && c.is_ascii_lowercase() {
            out.push(c.to_ascii_uppercase());
            up = false;
        } else {
            if up {
                out.push('_');
            }
            out.push(c);
            up = false;
        }
    }
    out
}

/// The authenticator's traitlets section for `JupyterHub.authenticator_class`.
fn authenticator_section(class: &str) -> Option<&'static str> {
    Some(match class {
        "github"
        | "oauthenticator.GitHubOAuthenticator"
        | "oauthenticator.github.GitHubOAuthenticator" => "GitHubOAuthenticator",
        "generic-oauth"
        | "generic"
        | "oauthenticator.generic.GenericOAuthenticator"
        | "oauthenticator.GenericOAuthenticator" => "GenericOAuthenticator",
        "cilogon"
        | "oauthenticator.CILogonOAuthenticator"
        | "oauthenticator.cilogon.CILogonOAuthenticator" => "CILogonOAuthenticator",
        "google"
        | "oauthenticator.GoogleOAuthenticator"
        | "oauthenticator.google.GoogleOAuthenticator" => "GoogleOAuthenticator",
        "gitlab" => "GitLabOAuthenticator",
        "azuread" => "AzureAdOAuthenticator",
        "auth0" => "Auth0OAuthenticator",
        "dummy" => "DummyAuthenticator",
        "native" => "NativeAuthenticator",
        _ => return None,
    })
}

impl HubSetup {
    /// Read `values` (with `Chart` and `Release` in them, as z2jh's hub Secret has).
    pub(crate) fn from_values(values: &Values) -> Result<HubSetup, KubeError> {
        let text = |key: &str| values.get_set(key).map(python::str_of);
        let chart_name = text("Chart.Name").unwrap_or_else(|| "jupyterhub".into());
        let release = text("Release.Name").unwrap_or_else(|| "jupyterhub".into());
        let namespace = text("Release.Namespace").unwrap_or_else(|| release.clone());
        let names = ChartNames::new(values, &chart_name, &release);
        let mut config = SpawnerConfig::default();
        let mut notes = Vec::new();

        // common labels (z2jh's jupyterhub.commonLabels, managed-by kubespawner)
        let mut labels = Mapping::new();
        let app = match values.get("nameOverride") {
            Some(v) => python::str_of(v),
            None => values
                .get("Chart.Name")
                .map(python::str_of)
                .unwrap_or_else(|| "jupyterhub".into()),
        };
        labels.insert(s("app.kubernetes.io/name"), s(&app));
        labels.insert(s("app"), s(&app));
        if let Some(r) = values.get_set("Release.Name").filter(|v| truthy(Some(v))) {
            let r = python::str_of(r);
            labels.insert(s("app.kubernetes.io/instance"), s(&r));
            labels.insert(s("release"), s(&r));
        }
        if let (Some(name), Some(version)) = (
            values.get_set("Chart.Name").filter(|v| truthy(Some(v))),
            values.get_set("Chart.Version").filter(|v| truthy(Some(v))),
        ) {
            let chart = format!(
                "{}-{}",
                python::str_of(name),
                python::str_of(version).replace('+', "_")
            );
            labels.insert(s("helm.sh/chart"), s(&chart));
            labels.insert(s("chart"), s(&chart));
        }
        labels.insert(s("app.kubernetes.io/managed-by"), s("kubespawner"));
        config.set_kube(
            "common_labels",
            Value::Mapping(labels),
            "the chart's labels",
        );
        config.set_kube("namespace", s(&namespace), "Release.Namespace");

        let set_if = |config: &mut SpawnerConfig, trait_name: &str, key: &str| {
            if let Some(v) = values.get_set(key) {
                config.set_kube(trait_name, v.clone(), key);
            }
        };
        for (trait_name, key) in [
            ("pod_name_template", None),
            ("start_timeout", None),
            ("image_pull_policy", Some("image.pullPolicy")),
            ("events_enabled", Some("events")),
            ("extra_labels", None),
            ("extra_annotations", None),
            ("uid", None),
            ("fs_gid", None),
            ("service_account", Some("serviceAccountName")),
            ("storage_extra_labels", Some("storage.extraLabels")),
            ("node_selector", None),
            ("node_affinity_required", Some("extraNodeAffinity.required")),
            (
                "node_affinity_preferred",
                Some("extraNodeAffinity.preferred"),
            ),
            ("pod_affinity_required", Some("extraPodAffinity.required")),
            ("pod_affinity_preferred", Some("extraPodAffinity.preferred")),
            (
                "pod_anti_affinity_required",
                Some("extraPodAntiAffinity.required"),
            ),
            (
                "pod_anti_affinity_preferred",
                Some("extraPodAntiAffinity.preferred"),
            ),
            ("lifecycle_hooks", None),
            ("init_containers", None),
            ("extra_containers", None),
            ("mem_limit", Some("memory.limit")),
            ("mem_guarantee", Some("memory.guarantee")),
            ("cpu_limit", Some("cpu.limit")),
            ("cpu_guarantee", Some("cpu.guarantee")),
            ("extra_resource_limits", Some("extraResource.limits")),
            (
                "extra_resource_guarantees",
                Some("extraResource.guarantees"),
            ),
            ("environment", Some("extraEnv")),
            ("profile_list", None),
            ("extra_pod_config", None),
        ] {
            let key = match key {
                Some(k) => format!("singleuser.{k}"),
                None => format!("singleuser.{}", camel(trait_name)),
            };
            set_if(&mut config, trait_name, &key);
        }

        if let Some(name) = values
            .get_set("singleuser.image.name")
            .filter(|v| truthy(Some(v)))
        {
            let mut image = python::str_of(name);
            if let Some(tag) = values
                .get_set("singleuser.image.tag")
                .filter(|v| truthy(Some(v)))
            {
                image = format!("{image}:{}", python::str_of(tag));
            }
            config.set_kube("image", s(&image), "singleuser.image.name");
        }
        config.set_kube(
            "allow_privilege_escalation",
            values
                .get("singleuser.allowPrivilegeEscalation")
                .cloned()
                .unwrap_or(Value::Null),
            "singleuser.allowPrivilegeEscalation",
        );

        let mut pull_secrets = Vec::new();
        if truthy(values.get("imagePullSecret.automaticReferenceInjection"))
            && truthy(values.get("imagePullSecret.create"))
        {
            pull_secrets.push(s(&names.image_pull_secret()));
        }
        for key in ["imagePullSecrets", "singleuser.image.pullSecrets"] {
            match values.get(key) {
                Some(Value::Sequence(items)) => pull_secrets.extend(items.iter().cloned()),
                None | Some(Value::Null) => {}
                Some(v) if !truthy(Some(v)) => {}
                Some(_) => return Err(KubeError::invalid(key, "must be a list of secret names")),
            }
        }
        if !pull_secrets.is_empty() {
            config.set_kube(
                "image_pull_secrets",
                Value::Sequence(pull_secrets),
                "singleuser.image.pullSecrets",
            );
        }

        if truthy(values.get("scheduling.userScheduler.enabled")) {
            config.set_kube(
                "scheduler_name",
                s(&names.user_scheduler()),
                "scheduling.userScheduler.enabled",
            );
        }
        if truthy(values.get("scheduling.podPriority.enabled")) {
            config.set_kube(
                "priority_class_name",
                s(&names.priority()),
                "scheduling.podPriority.enabled",
            );
        }

        let purpose_key = "scheduling.userPods.nodeAffinity.matchNodePurpose";
        if let Some(purpose) = values.get_set(purpose_key).filter(|v| truthy(Some(v))) {
            let term = yaml("{matchExpressions: [{key: hub.jupyter.org/node-purpose, operator: In, values: [user]}]}");
            let purpose = python::str_of(purpose);
            let (trait_name, item) = match purpose.as_str() {
                "prefer" => {
                    let mut m = Mapping::new();
                    m.insert(s("weight"), Value::Number(100.into()));
                    m.insert(s("preference"), term);
                    ("node_affinity_preferred", Some(Value::Mapping(m)))
                }
                "require" => ("node_affinity_required", Some(term)),
                "ignore" => ("", None),
                other => {
                    return Err(KubeError::invalid(
                        purpose_key,
                        format!("unrecognized value {other:?}; use prefer, require or ignore"),
                    ))
                }
            };
            if let Some(item) = item {
                let mut list = match config.value(trait_name) {
                    Value::Sequence(l) => l,
                    Value::Null => Vec::new(),
                    _ => {
                        return Err(KubeError::invalid(
                            format!(
                                "singleuser.extraNodeAffinity.{}",
                                trait_name.rsplit('_').next().unwrap_or("")
                            ),
                            "must be a list",
                        ))
                    }
                };
                list.push(item);
                let from = config
                    .get(trait_name)
                    .map(|s| s.from.clone())
                    .unwrap_or_else(|| purpose_key.to_owned());
                config.set_kube(trait_name, Value::Sequence(list), &from);
            }
        }

        let mut tolerations = Vec::new();
        for key in [
            "scheduling.userPods.tolerations",
            "singleuser.extraTolerations",
        ] {
            match values.get(key) {
                Some(Value::Sequence(items)) => tolerations.extend(items.iter().cloned()),
                None | Some(Value::Null) => {}
                Some(_) => return Err(KubeError::invalid(key, "must be a list of tolerations")),
            }
        }
        if !tolerations.is_empty() {
            config.set_kube(
                "tolerations",
                Value::Sequence(tolerations),
                "singleuser.extraTolerations",
            );
        }

        storage(values, &names, &mut config)?;

        // `singleuser.cmd` set to null is an explicit "use the image's command".
        if let Some(cmd) = values.get("singleuser.cmd") {
            config.set_spawner("cmd", cmd.clone(), "singleuser.cmd");
        }
        if let Some(url) = values.get_set("singleuser.defaultUrl") {
            config.set_spawner("default_url", url.clone(), "singleuser.defaultUrl");
        }

        if matches!(
            values.get("singleuser.cloudMetadata.blockWithIptables"),
            Some(Value::Bool(true))
        ) {
            let image = format!(
                "{}:{}",
                text("singleuser.networkTools.image.name").unwrap_or_else(|| "None".into()),
                text("singleuser.networkTools.image.tag").unwrap_or_else(|| "None".into())
            );
            let ip = text("singleuser.cloudMetadata.ip").unwrap_or_default();
            let mut container: Mapping = serde_yaml_ng::from_str(&format!(
                "name: block-cloud-metadata\nimage: {image:?}\ncommand: [iptables, --append, OUTPUT, --protocol, tcp, --destination, {ip:?}, --destination-port, '80', --jump, DROP]\nsecurityContext: {{privileged: true, runAsUser: 0, capabilities: {{add: [NET_ADMIN]}}}}\n"
            ))
            .map_err(|e| KubeError::invalid("singleuser.cloudMetadata", e.to_string()))?;
            if let Some(resources) = values.get_set("singleuser.networkTools.resources") {
                container.insert(s("resources"), resources.clone());
            }
            let mut list =
                match config.value("init_containers") {
                    Value::Sequence(l) => l,
                    Value::Null => Vec::new(),
                    _ => return Err(KubeError::invalid(
                        "singleuser.initContainers",
                        "must be a list when singleuser.cloudMetadata.blockWithIptables is true",
                    )),
                };
            // Kept apart from the values' containers: they are not template-expanded.
            list.push(Value::Tagged(Box::new(serde_yaml_ng::value::TaggedValue {
                tag: serde_yaml_ng::value::Tag::new(crate::pod::MODEL_TAG),
                value: Value::Mapping(container),
            })));
            config.set_kube(
                "init_containers",
                Value::Sequence(list),
                "singleuser.initContainers",
            );
        }

        if truthy(values.get("debug.enabled")) {
            config.set_spawner("debug", Value::Bool(true), "debug.enabled");
        }

        let mut base_url = text("hub.baseUrl").unwrap_or_else(|| "/".into());
        let mut admin_access = true;
        let mut subdomain_host = String::new();
        let mut public_url = String::new();
        let mut cookie_host_prefix_enabled = false;
        let mut cookie_options = None;
        let mut admin_users = Vec::new();
        let mut load_groups = Vec::new();
        let hub_config = match values.get("hub.config") {
            Some(Value::Mapping(m)) => m.clone(),
            _ => Mapping::new(),
        };
        let authenticator_class = hub_config
            .get("JupyterHub")
            .and_then(|j| j.get("authenticator_class"))
            .map(python::str_of)
            .unwrap_or_default();
        let auth_section = authenticator_section(&authenticator_class);
        for (section, cfg) in &hub_config {
            let section = python::str_of(section);
            let Value::Mapping(cfg) = cfg else { continue };
            let from = |k: &str| format!("hub.config.{section}.{k}");
            match section.as_str() {
                "KubeSpawner" => {
                    for (k, v) in cfg {
                        let k = python::str_of(k);
                        config.set_kube(&k, v.clone(), &from(&k));
                    }
                }
                "Spawner" => {
                    for (k, v) in cfg {
                        let k = python::str_of(k);
                        config.set_spawner(&k, v.clone(), &from(&k));
                    }
                }
                "JupyterHub" => {
                    for (k, v) in cfg {
                        match python::str_of(k).as_str() {
                            "base_url" => base_url = python::str_of(v),
                            "admin_access" => admin_access = truthy(Some(v)),
                            "subdomain_host" => subdomain_host = python::str_of(v),
                            "public_url" => public_url = python::str_of(v),
                            "cookie_host_prefix_enabled" => {
                                cookie_host_prefix_enabled = truthy(Some(v))
                            }
                            "tornado_settings" => {
                                cookie_options =
                                    v.get("cookie_options").filter(|c| truthy(Some(c))).cloned()
                            }
                            "load_groups" => {
                                if let Value::Mapping(groups) = v {
                                    for (g, spec) in groups {
                                        let members = match spec {
                                            Value::Mapping(m) => m.get("users").cloned(),
                                            other => Some(other.clone()),
                                        };
                                        let members = match members {
                                            Some(Value::Sequence(l)) => {
                                                l.iter().map(python::str_of).collect()
                                            }
                                            _ => Vec::new(),
                                        };
                                        load_groups.push((python::str_of(g), members));
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
            let reads_admins = section == "Authenticator"
                || section == "OAuthenticator"
                || auth_section == Some(section.as_str());
            if reads_admins {
                if let Some(Value::Sequence(users)) = cfg.get("admin_users") {
                    admin_users.extend(users.iter().map(python::str_of));
                }
            }
        }
        if !base_url.starts_with('/') {
            base_url.insert(0, '/');
        }
        if !base_url.ends_with('/') {
            base_url.push('/');
        }

        let basehub = Basehub::from_values(values, &mut config, &mut admin_users, &mut notes)?;

        Ok(HubSetup {
            config,
            hub_connect_url: format!("http://{}:8081", names.hub()),
            namespace,
            base_url,
            admin_access,
            subdomain_host,
            public_url,
            cookie_host_prefix_enabled,
            cookie_options,
            admin_users,
            load_groups,
            basehub,
            notes,
        })
    }
}

/// `singleuser.storage`, `singleuser.extraFiles` and the extra volumes, as z2jh turns them into
/// KubeSpawner's `volumes` and `volume_mounts` (mappings, used in the order of their keys).
fn storage(
    values: &Values,
    names: &ChartNames,
    config: &mut SpawnerConfig,
) -> Result<(), KubeError> {
    let mut volumes = Mapping::new();
    let mut mounts = Mapping::new();
    let get = |key: &str| values.get(key).cloned().unwrap_or(Value::Null);
    let mount = |name: &str, sub_path: Value| {
        let mut m = Mapping::new();
        m.insert(s("mountPath"), get("singleuser.storage.homeMountPath"));
        m.insert(s("name"), s(name));
        m.insert(s("subPath"), sub_path);
        Value::Mapping(m)
    };
    let claim = |name: &str, claim: Value| {
        let mut pvc = Mapping::new();
        pvc.insert(s("claimName"), claim);
        let mut m = Mapping::new();
        m.insert(s("name"), s(name));
        m.insert(s("persistentVolumeClaim"), Value::Mapping(pvc));
        Value::Mapping(m)
    };
    match values
        .get("singleuser.storage.type")
        .map(python::str_of)
        .as_deref()
    {
        Some("dynamic") => {
            if let Some(t) = values
                .get_set("singleuser.storage.dynamic.pvcNameTemplate")
                .filter(|v| truthy(Some(v)))
            {
                config.set_kube(
                    "pvc_name_template",
                    t.clone(),
                    "singleuser.storage.dynamic.pvcNameTemplate",
                );
            }
            let volume_name = python::str_of(&get("singleuser.storage.dynamic.volumeNameTemplate"));
            config.set_kube(
                "storage_pvc_ensure",
                Value::Bool(true),
                "singleuser.storage.type",
            );
            for (trait_name, key) in [
                ("storage_class", "singleuser.storage.dynamic.storageClass"),
                (
                    "storage_access_modes",
                    "singleuser.storage.dynamic.storageAccessModes",
                ),
                ("storage_capacity", "singleuser.storage.capacity"),
            ] {
                if let Some(v) = values.get_set(key) {
                    config.set_kube(trait_name, v.clone(), key);
                }
            }
            volumes.insert(s(&volume_name), claim(&volume_name, s("{pvc_name}")));
            mounts.insert(
                s(&volume_name),
                mount(&volume_name, get("singleuser.storage.dynamic.subPath")),
            );
        }
        Some("static") => {
            volumes.insert(
                s("home"),
                claim("home", get("singleuser.storage.static.pvcName")),
            );
            mounts.insert(
                s("home"),
                mount("home", get("singleuser.storage.static.subPath")),
            );
        }
        _ => {}
    }

    if let Some(Value::Mapping(files)) = values
        .get("singleuser.extraFiles")
        .filter(|v| truthy(Some(v)))
    {
        let mut items = Vec::new();
        for (file_key, details) in files {
            let mut item = Mapping::new();
            item.insert(s("key"), file_key.clone());
            item.insert(s("path"), file_key.clone());
            if let Some(mode) = details.get("mode") {
                item.insert(s("mode"), mode.clone());
            }
            items.push(Value::Mapping(item));
        }
        let mut secret = Mapping::new();
        secret.insert(s("secretName"), s(&names.singleuser()));
        secret.insert(s("items"), Value::Sequence(items));
        let mut volume = Mapping::new();
        volume.insert(s("name"), s("files"));
        volume.insert(s("secret"), Value::Mapping(secret));
        volumes.insert(s("files"), Value::Mapping(volume));
        for (idx, (file_key, details)) in files.iter().enumerate() {
            let Some(path) = details.get("mountPath") else {
                return Err(KubeError::invalid(
                    format!("singleuser.extraFiles.{}", python::str_of(file_key)),
                    "needs a `mountPath`",
                ));
            };
            let mut m = Mapping::new();
            m.insert(s("mountPath"), path.clone());
            m.insert(s("subPath"), file_key.clone());
            m.insert(s("name"), s("files"));
            mounts.insert(s(&format!("{idx}-files")), Value::Mapping(m));
        }
    }

    match values.get("singleuser.storage.extraVolumes") {
        Some(Value::Mapping(m)) => {
            for (k, v) in m {
                volumes.insert(k.clone(), v.clone());
            }
        }
        Some(Value::Sequence(list)) => {
            for (i, v) in list.iter().enumerate() {
                let Some(name) = v.get("name") else {
                    return Err(KubeError::invalid(
                        format!("singleuser.storage.extraVolumes[{i}]"),
                        "a volume needs a `name`",
                    ));
                };
                volumes.insert(name.clone(), v.clone());
            }
        }
        _ => {}
    }
    match values.get("singleuser.storage.extraVolumeMounts") {
        Some(Value::Mapping(m)) => {
            for (k, v) in m {
                mounts.insert(k.clone(), v.clone());
            }
        }
        Some(Value::Sequence(list)) => {
            for (i, v) in list.iter().enumerate() {
                let Some(name) = v.get("name") else {
                    return Err(KubeError::invalid(
                        format!("singleuser.storage.extraVolumeMounts[{i}]"),
                        "a volume mount needs a `name`",
                    ));
                };
                mounts.insert(s(&format!("{i}-{}", python::str_of(name))), v.clone());
            }
        }
        _ => {}
    }
    config.set_kube("volumes", Value::Mapping(volumes), "singleuser.storage");
    config.set_kube(
        "volume_mounts",
        Value::Mapping(mounts),
        "singleuser.storage",
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_case_as_z2jh() {
        assert_eq!(camel("extra_pod_config"), "extraPodConfig");
        assert_eq!(camel("uid"), "uid");
        assert_eq!(camel("fs_gid"), "fsGid");
    }
}
