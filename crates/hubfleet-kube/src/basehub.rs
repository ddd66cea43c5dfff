//! 2i2c's basehub chart ships Python in `hub.extraConfig` that changes user pods. hubfleet runs
//! no Python; it recognizes basehub's snippets by their keys and does what they do, natively:
//!
//! - `0-binderspawnermixin` + `02-basehub-spawner` with `custom.binderhubUI.enabled`: the
//!   BinderHub spawner (image and `BINDER_*` env from the launch's options, the NotebookApp
//!   arguments when `BinderSpawnerMixin.auth_enabled` is false, a launch token required);
//! - `02-basehub-spawner`: for admins, `custom.singleuserAdmin` (`extraEnv`,
//!   `serviceAccountName`, `extraVolumeMounts`); for everyone, the `block-nfs-access` init
//!   container that drops traffic to NFS ports;
//! - `04-per-user-disk`: the PVCs of `custom.singleuser.extraPVCs`;
//! - `05-profile-groups`: profiles, choices and unlisted choices limited by `allowed_groups`;
//! - `daskhub-01-add-dask-gateway-values` with `custom.daskhubSetup.enabled`: `/lab`, the
//!   proxy-access label and the `DASK_GATEWAY__*` env;
//! - `03-2i2c-add-staff-user-ids-to-admin-users`: 2i2c's staff ids added to the admins.
//!
//! The other basehub snippets do not change pods. Any other snippet is Python hubfleet does not
//! run: it is named in the notes.

use serde_yaml_ng::{Mapping, Value};

use hubfleet_config::values::Values;

use crate::error::KubeError;
use crate::python;
use crate::spawner::{Spawner, SpawnerConfig};

/// basehub snippets that leave pods as they are (themes, login hooks, the spawn form).
const NO_POD_EFFECT: &[&str] = &[
    "01-custom-theme",
    "06-salted-username",
    "07-enable-fancy-profiles",
    "08-auth-state-groups",
    "09-2i2c-add-staff-gh-team",
    "10-skip_refresh_for_test_user.py",
];

/// The ports the `block-nfs-access` init container closes (NFS, mountd, portmapper).
const NFS_PORTS: [u16; 3] = [2049, 20048, 111];
/// The image of basehub's `block-nfs-access` init container.
const NETWORK_TOOLS_IMAGE: &str = "quay.io/jupyterhub/k8s-network-tools:4.1.0";
/// The user that 2i2c's health checks spawn as; the group filter lets it through.
const HEALTH_CHECK_USER: &str = "deployment-service-check";

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

fn s(text: &str) -> Value {
    Value::String(text.to_owned())
}

/// Which of basehub's snippets are in the values, and their settings.
#[derive(Debug, Clone, Default)]
pub(crate) struct Basehub {
    /// `02-basehub-spawner`: `custom.singleuserAdmin` and `block-nfs-access`.
    pub(crate) spawner: bool,
    /// `custom.singleuserAdmin`, when the spawner snippet is there.
    pub(crate) admin: Option<Value>,
    /// The BinderHub spawner: `BinderSpawnerMixin.auth_enabled` and `cors_allow_origin`.
    pub(crate) binder: Option<(bool, String)>,
    /// `05-profile-groups`.
    pub(crate) profile_groups: bool,
    /// `04-per-user-disk`: (name template, storage class, capacity) of each extra PVC.
    pub(crate) extra_pvcs: Vec<(String, Value, Value)>,
}

impl Basehub {
    pub(crate) fn from_values(
        values: &Values,
        config: &mut SpawnerConfig,
        admin_users: &mut Vec<String>,
        notes: &mut Vec<String>,
    ) -> Result<Basehub, KubeError> {
        let snippets: Vec<String> = match values.get("hub.extraConfig") {
            Some(Value::Mapping(m)) => {
                let mut keys: Vec<String> = m.keys().map(python::str_of).collect();
                keys.sort();
                keys
            }
            _ => Vec::new(),
        };
        let has = |k: &str| snippets.iter().any(|s| s == k);
        let mut basehub = Basehub::default();
        // In z2jh's order: snippets run sorted by key.
        for key in &snippets {
            match key.as_str() {
                "0-binderspawnermixin" => {}
                "02-basehub-spawner" => {
                    basehub.spawner = true;
                    basehub.admin = values
                        .get("custom.singleuserAdmin")
                        .filter(|v| truthy(Some(v)))
                        .cloned();
                    if truthy(values.get("custom.binderhubUI.enabled")) {
                        if !has("0-binderspawnermixin") {
                            return Err(KubeError::invalid(
                                "hub.extraConfig.02-basehub-spawner",
                                "custom.binderhubUI.enabled needs basehub's `0-binderspawnermixin` snippet",
                            ));
                        }
                        let section = values.get("hub.config.BinderSpawnerMixin");
                        let auth = section
                            .and_then(|m| m.get("auth_enabled"))
                            .is_some_and(|v| truthy(Some(v)));
                        let cors = section
                            .and_then(|m| m.get("cors_allow_origin"))
                            .map(python::str_of)
                            .unwrap_or_default();
                        basehub.binder = Some((auth, cors));
                    }
                }
                "03-2i2c-add-staff-user-ids-to-admin-users" => {
                    if truthy(values.get("custom.2i2c.add_staff_user_ids_to_admin_users")) {
                        let kind = values
                            .get("custom.2i2c.add_staff_user_ids_of_type")
                            .map(python::str_of)
                            .unwrap_or_default();
                        if let Some(Value::Sequence(ids)) =
                            values.get(&format!("custom.2i2c.staff_{kind}_ids"))
                        {
                            admin_users.extend(ids.iter().map(python::str_of));
                        }
                    }
                }
                "04-per-user-disk" => {
                    if let Some(Value::Sequence(pvcs)) = values.get("custom.singleuser.extraPVCs") {
                        for (i, p) in pvcs.iter().enumerate() {
                            let field = |f: &str| {
                                p.get(f).cloned().ok_or_else(|| {
                                    KubeError::invalid(
                                        format!("custom.singleuser.extraPVCs[{i}]"),
                                        format!("needs `{f}` (name, class and capacity)"),
                                    )
                                })
                            };
                            basehub.extra_pvcs.push((
                                python::str_of(&field("name")?),
                                field("class")?,
                                field("capacity")?,
                            ));
                        }
                    }
                }
                "05-profile-groups" => {
                    basehub.profile_groups = truthy(Some(&config.value("profile_list")));
                }
                "daskhub-01-add-dask-gateway-values" => {
                    if truthy(values.get("custom.daskhubSetup.enabled")) {
                        daskhub_setup(values, config)?;
                    }
                }
                k if NO_POD_EFFECT.contains(&k) => {}
                other => notes.push(format!(
                    "hub.extraConfig.{other}: Python, which hubfleet does not run; if it changes pods, set what it sets with values instead"
                )),
            }
        }
        Ok(basehub)
    }

    /// `BaseHubSpawner.start` for admins, before KubeSpawner's start.
    pub(crate) fn before_start(&self, spawner: &mut Spawner) -> Result<(), KubeError> {
        let Some(admin) = self.admin.as_ref().filter(|_| spawner.user_admin) else {
            return Ok(());
        };
        if let Some(env) = admin.get("extraEnv").filter(|v| truthy(Some(v))) {
            let Value::Mapping(env) = env else {
                return Err(KubeError::invalid(
                    "custom.singleuserAdmin.extraEnv",
                    "must be a mapping of names to values",
                ));
            };
            let mut current = spawner.mapping("environment")?;
            for (k, v) in env {
                current.insert(k.clone(), v.clone());
            }
            spawner.set(
                "environment",
                Value::Mapping(current),
                "custom.singleuserAdmin.extraEnv",
            );
        }
        if let Some(sa) = admin.get("serviceAccountName").filter(|v| truthy(Some(v))) {
            spawner.set(
                "service_account",
                sa.clone(),
                "custom.singleuserAdmin.serviceAccountName",
            );
        }
        Ok(())
    }

    /// basehub's `modify_pod_hook`: admins' extra mounts on the notebook container, and the
    /// `block-nfs-access` init container for everyone.
    pub(crate) fn modify_pod(
        &self,
        spawner: &Spawner,
        pod: &mut serde_json::Value,
    ) -> Result<(), KubeError> {
        if !self.spawner {
            return Ok(());
        }
        let spec = &mut pod["spec"];
        if spec.get("initContainers").is_none_or(|v| v.is_null()) {
            spec["initContainers"] = serde_json::json!([]);
        }
        if let Some(admin) = self.admin.as_ref().filter(|_| spawner.user_admin) {
            let mounts: Vec<Value> = match admin.get("extraVolumeMounts") {
                Some(Value::Mapping(m)) => m.values().filter(|v| !v.is_null()).cloned().collect(),
                // `extraVolumeMounts: null` removes basehub's default; Python trips over it
                // when basehub's values are layered as a file, Helm drops the key.
                None | Some(Value::Null) => Vec::new(),
                Some(_) => {
                    return Err(KubeError::invalid(
                        "custom.singleuserAdmin.extraVolumeMounts",
                        "must be a mapping of names to volume mounts",
                    ))
                }
            };
            let containers = spec["containers"].as_array_mut();
            let notebook = containers
                .and_then(|c| c.iter_mut().find(|c| c["name"] == "notebook"))
                .ok_or_else(|| {
                    KubeError::Refused(
                        "No container named 'notebook' found in pod definition".into(),
                    )
                })?;
            let list = notebook["volumeMounts"].as_array_mut();
            let mut added = Vec::new();
            for m in mounts {
                added.push(crate::pod::model(
                    &m,
                    "custom.singleuserAdmin.extraVolumeMounts",
                )?);
            }
            match list {
                Some(list) => list.extend(added),
                None => notebook["volumeMounts"] = serde_json::Value::Array(added),
            }
        }
        let mut commands = Vec::new();
        for protocol in ["tcp", "udp"] {
            for port in NFS_PORTS {
                commands.push(format!(
                    "iptables --append OUTPUT --protocol {protocol} --destination-port {port} --jump DROP"
                ));
            }
        }
        let block = serde_json::json!({
            "name": "block-nfs-access",
            "image": NETWORK_TOOLS_IMAGE,
            "securityContext": {
                "runAsUser": 0,
                "privileged": true,
                "capabilities": {"add": ["NET_ADMIN"]},
            },
            "command": ["/bin/sh", "-c", commands.join(" && ")],
        });
        if let Some(list) = spec["initContainers"].as_array_mut() {
            list.push(block);
        }
        Ok(())
    }

    /// The `05-profile-groups` filter over the configured profile list.
    pub(crate) fn filter_profiles(
        &self,
        spawner: &Spawner,
        list: Vec<Value>,
    ) -> Result<Vec<Value>, KubeError> {
        if !self.profile_groups || spawner.user_name == HEALTH_CHECK_USER {
            return Ok(list);
        }
        let groups: Vec<String> = spawner.user_groups.iter().map(|g| casefold(g)).collect();
        let any_of = |allowed: &Value, fold: bool| -> bool {
            match allowed {
                Value::Sequence(items) => items.iter().any(|g| {
                    let g = python::str_of(g);
                    let g = if fold { casefold(&g) } else { g };
                    groups.contains(&g)
                }),
                _ => false,
            }
        };
        let mut allowed_profiles = Vec::new();
        for profile in list {
            let Value::Mapping(mut profile) = profile else {
                allowed_profiles.push(profile);
                continue;
            };
            if let Some(Value::Mapping(options)) = profile.get_mut("profile_options") {
                for (_, po) in options.iter_mut() {
                    let Value::Mapping(po) = po else { continue };
                    let drop_unlisted = matches!(
                        po.get("unlisted_choice"),
                        Some(Value::Mapping(u)) if u.get("allowed_groups").is_some_and(|a| !any_of(a, false))
                    );
                    if drop_unlisted {
                        po.shift_remove("unlisted_choice");
                    }
                    if let Some(Value::Mapping(choices)) = po.get("choices") {
                        let mut kept = Mapping::new();
                        for (k, c) in choices {
                            let keep = match c.get("allowed_groups") {
                                None => true,
                                Some(a) => any_of(a, true),
                            };
                            if keep {
                                kept.insert(k.clone(), c.clone());
                            }
                        }
                        po.insert(s("choices"), Value::Mapping(kept));
                    }
                }
            }
            let keep = match profile.get("allowed_groups") {
                None => true,
                Some(a) => any_of(a, true),
            };
            if keep {
                allowed_profiles.push(Value::Mapping(profile));
            }
        }
        if allowed_profiles.is_empty() {
            return Err(KubeError::Refused(format!(
                "Your JupyterHub group membership is insufficient to launch any server profiles. JupyterHub groups you are a member of are {}.",
                groups.join(", ")
            )));
        }
        Ok(allowed_profiles)
    }
}

/// Python's `str.casefold` for the group names 2i2c uses (`org:team`).
fn casefold(s: &str) -> String {
    s.to_lowercase()
}

/// `daskhub-01-add-dask-gateway-values`: what a daskhub's user pods need to reach the gateway.
fn daskhub_setup(values: &Values, config: &mut SpawnerConfig) -> Result<(), KubeError> {
    const FROM: &str = "hub.extraConfig.daskhub-01-add-dask-gateway-values";
    config.set_spawner("default_url", s("/lab"), FROM);
    let mut labels = match config.value("extra_labels") {
        Value::Mapping(m) => m,
        _ => Mapping::new(),
    };
    labels.insert(s("hub.jupyter.org/network-access-proxy-http"), s("true"));
    let labels_from = config
        .get("extra_labels")
        .map(|s| s.from.clone())
        .unwrap_or_else(|| FROM.to_owned());
    config.set_kube("extra_labels", Value::Mapping(labels), &labels_from);

    let release = values
        .get_set("Release.Name")
        .map(python::str_of)
        .unwrap_or_default();
    let namespace = values
        .get_set("Release.Namespace")
        .map(python::str_of)
        .unwrap_or_else(|| release.clone());
    let https = values.get("proxy.https");
    let enabled = https
        .and_then(|h| h.get("enabled"))
        .is_some_and(|v| truthy(Some(v)));
    let kind = https
        .and_then(|h| h.get("type"))
        .map(python::str_of)
        .unwrap_or_default();
    let hosts = https
        .and_then(|h| h.get("hosts"))
        .is_some_and(|v| truthy(Some(v)));
    // The proxy-http Service exists with letsencrypt (and hosts) or offloaded TLS.
    let proxy_http = enabled && ((kind == "letsencrypt" && hosts) || kind == "offload");
    let gateway = if proxy_http {
        let fullname = crate::names::ChartNames::new(
            values,
            &values
                .get_set("Chart.Name")
                .map(python::str_of)
                .unwrap_or_else(|| "jupyterhub".into()),
            &release,
        )
        .fullname;
        let service = if fullname.is_empty() {
            "proxy-http".to_owned()
        } else {
            format!("{fullname}-proxy-http")
        };
        format!("http://{service}:8000/services/dask-gateway/")
    } else {
        "http://proxy-public/services/dask-gateway".to_owned()
    };
    let mut env = match config.value("environment") {
        Value::Mapping(m) => m,
        Value::Null => Mapping::new(),
        _ => {
            return Err(KubeError::invalid(
                "singleuser.extraEnv",
                "must be a mapping",
            ))
        }
    };
    let set_default = |env: &mut Mapping, k: &str, v: String| {
        if !env.contains_key(k) {
            env.insert(s(k), Value::String(v));
        }
    };
    set_default(&mut env, "DASK_GATEWAY__ADDRESS", gateway);
    set_default(
        &mut env,
        "DASK_GATEWAY__PROXY_ADDRESS",
        format!("gateway://traefik-{release}-dask-gateway.{namespace}:80"),
    );
    set_default(
        &mut env,
        "DASK_GATEWAY__PUBLIC_ADDRESS",
        "/services/dask-gateway/".into(),
    );
    set_default(&mut env, "DASK_GATEWAY__AUTH__TYPE", "jupyterhub".into());
    env.insert(
        s("DASK_GATEWAY__CLUSTER__OPTIONS__IMAGE"),
        s("{{JUPYTER_IMAGE_SPEC}}"),
    );
    env.insert(
        s("DASK_GATEWAY__CLUSTER__OPTIONS__ENVIRONMENT"),
        s(r#"{{"SCRATCH_BUCKET": "$(SCRATCH_BUCKET)", "PANGEO_SCRATCH": "$(PANGEO_SCRATCH)"}}"#),
    );
    env.insert(
        s("DASK_DISTRIBUTED__DASHBOARD__LINK"),
        s("{{JUPYTERHUB_SERVICE_PREFIX}}proxy/{{port}}/status"),
    );
    let env_from = config
        .get("environment")
        .map(|s| s.from.clone())
        .unwrap_or_else(|| FROM.to_owned());
    config.set_kube("environment", Value::Mapping(env), &env_from);
    Ok(())
}
