//! [`LaunchSpec`]: what a start asks for, in terms any backend understands. Each spawner turns
//! it into its own objects (a process with a home, log and cgroup; a pod and its PVC).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Resource limits of a server (KubeSpawner's `mem_limit`, `mem_guarantee`, `cpu_limit`,
/// `cpu_guarantee`). Memory in bytes, CPU in millicores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub mem_limit: Option<u64>,
    pub mem_guarantee: Option<u64>,
    pub cpu_limit: Option<u64>,
    pub cpu_guarantee: Option<u64>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

/// The Kubernetes resource name of NVIDIA GPUs, as in `extra_resource_limits`.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// A server, by its owner's name and its own (`""` for the default server).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerRef {
    pub user: String,
    pub server: String,
}

impl ServerRef {
    pub fn new(user: &str, server: &str) -> Self {
        ServerRef {
            user: user.to_string(),
            server: server.to_string(),
        }
    }
}

/// Whose server it is, as the hub knows them at the start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    pub name: String,
    /// The user's id in the hub's database (KubeSpawner's `{userid}`).
    pub id: i64,
    pub admin: bool,
    /// The hub groups the user is in.
    pub groups: Vec<String>,
}

/// The outcome of a user's profile choices (KubeSpawner's `profile_list` with
/// `kubespawner_override`s applied in order), worked out by the hub.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResolvedProfile {
    /// The chosen profile's slug and display name.
    pub profile: Option<(String, String)>,
    /// Option name → chosen choice key, or the free text for an unlisted choice.
    pub choices: BTreeMap<String, String>,
    pub image: Option<String>,
    pub limits: Limits,
    pub default_url: Option<String>,
    /// Variables from the overrides and the local environment.
    pub env: BTreeMap<String, String>,
    /// The local environment the image maps to (`hubfleet.local.environments`).
    pub environment: Option<String>,
    /// Kubernetes-only overrides in effect, as written (`node_selector`,
    /// `extra_resource_limits`, …).
    pub kubernetes: BTreeMap<String, Value>,
    /// GPUs asked for (`extra_resource_limits: {nvidia.com/gpu: N}`).
    pub gpus: u32,
}

impl ResolvedProfile {
    /// What the server model's `state` shows admins.
    pub fn summary(&self) -> Value {
        let cpus = |milli: u64| milli as f64 / 1000.0;
        json!({
            "profile": self.profile.as_ref().map(|(slug, _)| slug),
            "profile_display_name": self.profile.as_ref().map(|(_, name)| name),
            "options": self.choices,
            "image": self.image,
            "environment": self.environment,
            "limits": {
                "mem_limit": self.limits.mem_limit,
                "mem_guarantee": self.limits.mem_guarantee,
                "cpu_limit": self.limits.cpu_limit.map(cpus),
                "cpu_guarantee": self.limits.cpu_guarantee.map(cpus),
                "gpus": self.gpus,
            },
        })
    }

    /// The resources of `extra_resource_limits` (or `_guarantees`) other than GPUs, as
    /// Kubernetes quantities.
    fn extra_resources(&self, key: &str) -> BTreeMap<String, String> {
        let Some(Value::Object(map)) = self.kubernetes.get(key) else {
            return BTreeMap::new();
        };
        map.iter()
            .filter(|(name, _)| name.as_str() != GPU_RESOURCE)
            .map(|(name, value)| {
                let quantity = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (name.clone(), quantity)
            })
            .collect()
    }

    /// What the server gets of memory, CPU, GPUs and other resources.
    pub fn resources(&self) -> Resources {
        Resources {
            limits: self.limits,
            gpus: self.gpus,
            extra_limits: self.extra_resources("extra_resource_limits"),
            extra_guarantees: self.extra_resources("extra_resource_guarantees"),
        }
    }
}

/// The chosen profile: what the user sent, and what the hub made of it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProfileChoice {
    /// The user options as given (KubeSpawner's `user_options`: `{"profile": <slug>,
    /// <option>: <choice>, "<option>--unlisted-choice": <text>}`); `{}` for none.
    pub user_options: Value,
    pub resolved: ResolvedProfile,
    /// The profiles offered at this start, each as written in `singleuser.profileList` (the
    /// hub's store: from the values file or made in the admin panel; hidden ones left out), in
    /// order. A backend that applies the choice itself (Kubernetes: KubeSpawner's
    /// `profile_list`) reads them here rather than from the file it was started with. `None`:
    /// the hub did not say (the backend's own config applies).
    pub offered: Option<Vec<Value>>,
}

impl ProfileChoice {
    /// The chosen profile's slug, if the hub has profiles.
    pub fn slug(&self) -> Option<&str> {
        self.resolved
            .profile
            .as_ref()
            .map(|(slug, _)| slug.as_str())
    }
}

/// What the server may use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// Memory and CPU limits and guarantees.
    pub limits: Limits,
    /// GPUs: devices of `hubfleet.local.gpus` given out by the local spawner, an
    /// `nvidia.com/gpu` limit on Kubernetes.
    pub gpus: u32,
    /// Other resources of `extra_resource_limits` (GPUs are [`Resources::gpus`]), as
    /// quantities: `{"example.com/fpga": "1"}`.
    pub extra_limits: BTreeMap<String, String>,
    /// `extra_resource_guarantees`, without GPUs.
    pub extra_guarantees: BTreeMap<String, String>,
}

/// The server's storage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Storage {
    /// Whose home the server gets: its owner's name (a user's servers share one home). Where
    /// it lives is the backend's: `<homes_dir>/<home>` locally, the user's PVC on Kubernetes.
    pub home: String,
    /// Most bytes the home may hold (`singleuser.storage.capacity`): a project quota locally,
    /// the PVC's size on Kubernetes.
    pub capacity: Option<u64>,
}

/// Everything a backend needs to start one server. Built by the hub from its config and the
/// user's choices (protocol §5); nothing in it is specific to one backend.
#[derive(Clone, Debug, Default)]
pub struct LaunchSpec {
    pub owner: Owner,
    /// `""` for the default server.
    pub server_name: String,
    pub profile: ProfileChoice,
    /// Program and arguments, e.g. `[".../bin/jupyterhub-singleuser"]`.
    pub cmd: Vec<String>,
    /// The image as configured (`singleuser.image`, or a profile's
    /// `kubespawner_override.image`): a container image on Kubernetes; locally, the name of an
    /// environment, already applied to `cmd` and `env` by the hub.
    pub image: Option<String>,
    pub resources: Resources,
    pub storage: Storage,
    /// Environment for the server (protocol §5.1). The spawner adds
    /// `JUPYTERHUB_SERVICE_URL` once it knows where the server listens.
    pub env: BTreeMap<String, String>,
    /// URL prefix the server is served under, e.g. `/user/alice/`.
    pub service_prefix: String,
    /// KubeSpawner's labels for the server (`hub.jupyter.org/username`, `…/servername`), with
    /// values valid as Kubernetes labels. The local spawner has no use for them.
    pub labels: BTreeMap<String, String>,
    /// KubeSpawner's annotations (`hub.jupyter.org/username`, `…/servername`: the names as
    /// they are).
    pub annotations: BTreeMap<String, String>,
}

impl LaunchSpec {
    pub fn server(&self) -> ServerRef {
        ServerRef::new(&self.owner.name, &self.server_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_keep_gpus_apart_from_other_extra_resources() {
        let resolved = ResolvedProfile {
            gpus: 2,
            kubernetes: BTreeMap::from([
                (
                    "extra_resource_limits".to_string(),
                    json!({"nvidia.com/gpu": "2", "example.com/fpga": 1}),
                ),
                (
                    "extra_resource_guarantees".to_string(),
                    json!({"example.com/fpga": "1"}),
                ),
            ]),
            ..Default::default()
        };
        let resources = resolved.resources();
        assert_eq!(resources.gpus, 2);
        assert_eq!(
            resources.extra_limits,
            BTreeMap::from([("example.com/fpga".to_string(), "1".to_string())])
        );
        assert_eq!(resources.extra_guarantees, resources.extra_limits);
        assert_eq!(ResolvedProfile::default().resources(), Resources::default());
    }
}
