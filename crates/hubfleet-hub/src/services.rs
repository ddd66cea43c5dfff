//! JupyterHub services: external ones (a URL) and managed ones (a command the hub
//! runs, restarts when it dies, and stops on shutdown), their API tokens, OAuth
//! clients and proxy routes at `/services/<name>/`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hubfleet_store::{NewToken, OAuthClient, Service};
use serde_json::Value;

use crate::{AppState, HubError};

/// A service as configured (`hub.services`) or added through the API.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceDefinition {
    pub name: String,
    pub admin: bool,
    pub url: String,
    pub api_token: Option<String>,
    pub info: Value,
    pub display: bool,
    /// Empty for external services.
    pub command: Vec<String>,
    pub environment: BTreeMap<String, String>,
    pub from_config: bool,
}

#[derive(Default)]
struct Running {
    command: Vec<String>,
    pid: Option<u32>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
}

/// The managed services of this hub process.
#[derive(Clone, Default)]
pub struct Services {
    running: Arc<Mutex<HashMap<String, Running>>>,
}

fn route_data(name: &str) -> serde_json::Map<String, Value> {
    let mut data = serde_json::Map::new();
    data.insert("service".into(), name.into());
    data.insert("jupyterhub".into(), true.into());
    data
}

/// `scheme://host:port` of a URL, for the proxy target.
fn origin(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?;
    let port = parsed.port_or_known_default()?;
    Some(format!("{}://{host}:{port}", parsed.scheme()))
}

impl Services {
    /// `(command, pid)` of a managed service, for the service model.
    pub fn process_info(&self, name: &str) -> (Vec<String>, Option<u32>) {
        let running = self.running.lock().expect("services lock");
        running
            .get(name)
            .map(|r| (r.command.clone(), r.pid))
            .unwrap_or_default()
    }

    /// Register a service: database row, API token, OAuth client, route; start it if managed.
    pub async fn add(
        &self,
        state: &AppState,
        definition: ServiceDefinition,
    ) -> Result<Service, HubError> {
        let client_id = format!("service-{}", definition.name);
        let has_url = !definition.url.is_empty();
        let service = state
            .store
            .upsert_service(&Service {
                id: 0,
                name: definition.name.clone(),
                admin: definition.admin,
                url: definition.url.clone(),
                display: definition.display,
                info: definition.info.clone(),
                oauth_client_id: has_url.then(|| client_id.clone()),
                from_config: definition.from_config,
            })
            .await?;
        // A configured token is kept as given; a managed service without one gets a new
        // token at every start (below).
        let token = match &definition.api_token {
            Some(token) => {
                let known = state.store.find_token(token).await?;
                if known
                    .as_ref()
                    .is_none_or(|t| t.service_id != Some(service.id))
                {
                    state
                        .store
                        .insert_token(
                            token,
                            &NewToken {
                                user_id: None,
                                service_id: Some(service.id),
                                server_id: None,
                                client_id: "jupyterhub",
                                session_id: None,
                                scopes: &["inherit".to_string()],
                                note: "Service API token from the config file",
                                expires_at: None,
                            },
                        )
                        .await?;
                }
                Some(token.clone())
            }
            None if !definition.command.is_empty() => {
                let token = hubfleet_store::new_token();
                state
                    .store
                    .insert_token(
                        &token,
                        &NewToken {
                            user_id: None,
                            service_id: Some(service.id),
                            server_id: None,
                            client_id: "jupyterhub",
                            session_id: None,
                            scopes: &["inherit".to_string()],
                            note: "Managed service token",
                            expires_at: None,
                        },
                    )
                    .await?;
                Some(token)
            }
            None => None,
        };
        if has_url {
            if let Some(secret) = &token {
                state
                    .store
                    .upsert_oauth_client(
                        &OAuthClient {
                            identifier: client_id,
                            redirect_uri: format!(
                                "{}{}",
                                state.settings().service_origin(&definition.name),
                                state.settings().with_base(&format!(
                                    "/services/{}/oauth_callback",
                                    definition.name
                                ))
                            ),
                            description: format!("JupyterHub service {}", definition.name),
                            allowed_scopes: vec![format!(
                                "access:services!service={}",
                                definition.name
                            )],
                            server_id: None,
                        },
                        secret,
                    )
                    .await?;
            }
            if let Some(target) = origin(&definition.url) {
                state.routes.add(
                    &state.settings().service_route_spec(&definition.name),
                    &target,
                    route_data(&definition.name),
                );
            }
        }
        if !definition.command.is_empty() {
            let token = token.unwrap_or_default();
            self.supervise(state, &definition, token);
        }
        if has_url {
            notify_replicas(state, &definition.name).await;
        }
        Ok(service)
    }

    pub async fn remove(&self, state: &AppState, service: &Service) -> Result<(), HubError> {
        self.stop(&service.name);
        state
            .routes
            .remove(&state.settings().service_route_spec(&service.name));
        if let Some(client) = &service.oauth_client_id {
            state.store.delete_oauth_client(client).await?;
        }
        state.store.delete_service(service.id).await?;
        notify_replicas(state, &service.name).await;
        Ok(())
    }

    /// Make the services' routes match the database: re-add those of services with a URL
    /// (added through another replica too), drop those of services that are gone.
    pub async fn check_routes(&self, state: &AppState) -> Result<(), HubError> {
        let mut expected = std::collections::BTreeSet::new();
        for service in state.store.list_services().await? {
            if let Some(target) = origin(&service.url) {
                let prefix = state.settings().service_route_spec(&service.name);
                expected.insert(hubfleet_proxy::normalize_route(&prefix).into_owned());
                if state.routes.get(&prefix).is_none_or(|r| r.target != target) {
                    state
                        .routes
                        .add(&prefix, &target, route_data(&service.name));
                }
            }
        }
        for (path, route) in state.routes.all() {
            if route.data.contains_key("service") && !expected.contains(&path) {
                tracing::info!(route = %path, "removing the route of a service that is gone");
                state.routes.remove(&path);
            }
        }
        Ok(())
    }

    fn stop(&self, name: &str) {
        let mut running = self.running.lock().expect("services lock");
        if let Some(entry) = running.remove(name) {
            if let Some(stop) = entry.stop {
                let _ = stop.send(true);
            }
        }
    }

    pub async fn stop_all(&self) {
        let names: Vec<String> = self
            .running
            .lock()
            .expect("services lock")
            .keys()
            .cloned()
            .collect();
        for name in names {
            self.stop(&name);
        }
        // Give the supervisors a moment to deliver SIGTERM.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    /// Run the command, restarting it (with back-off) when it exits, until stopped.
    fn supervise(&self, state: &AppState, definition: &ServiceDefinition, token: String) {
        self.stop(&definition.name);
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        self.running.lock().expect("services lock").insert(
            definition.name.clone(),
            Running {
                command: definition.command.clone(),
                pid: None,
                stop: Some(stop_tx),
            },
        );
        let env = service_env(state, definition, &token);
        let log_path = state
            .settings()
            .data_dir
            .join("logs")
            .join(format!("service-{}.log", definition.name));
        let pid_file = state
            .settings()
            .data_dir
            .join("services")
            .join(format!("{}.pid", definition.name));
        let definition = definition.clone();
        let running = self.running.clone();
        let mut leader = state.leader.clone();
        tokio::spawn(async move {
            end_orphan(&definition.name, &pid_file).await;
            let mut backoff = Duration::from_secs(1);
            loop {
                // With replicas, managed services run on the leader only.
                if !leader.is_leader() {
                    tracing::info!(service = %definition.name, "service waits for this replica to lead");
                    tokio::select! {
                        _ = leader.until_leader() => {}
                        _ = stop_rx.changed() => return,
                    }
                }
                let child = spawn_service(&definition, &env, &log_path);
                let mut child = match child {
                    Ok(child) => child,
                    Err(e) => {
                        tracing::error!(service = %definition.name, error = %e, "cannot start service");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = stop_rx.changed() => return,
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                        continue;
                    }
                };
                let pid = child.id();
                if let Some(entry) = running
                    .lock()
                    .expect("services lock")
                    .get_mut(&definition.name)
                {
                    entry.pid = pid;
                }
                tracing::info!(service = %definition.name, ?pid, "service started");
                if let Some(pid) = pid {
                    record_pid(&pid_file, pid);
                }
                let started = std::time::Instant::now();
                // Stopped, or no longer the leader: end the process.
                let stopped = tokio::select! {
                    status = child.wait() => {
                        tracing::warn!(service = %definition.name, ?status, "service exited; restarting");
                        if started.elapsed() > Duration::from_secs(60) {
                            backoff = Duration::from_secs(1);
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = stop_rx.changed() => return,
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                        continue;
                    }
                    _ = stop_rx.changed() => true,
                    _ = leader.until_not_leader() => false,
                };
                if let Some(pid) = pid {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
                if tokio::time::timeout(Duration::from_secs(5), child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.kill().await;
                }
                let _ = std::fs::remove_file(&pid_file);
                if stopped {
                    tracing::info!(service = %definition.name, "service stopped");
                    return;
                }
                tracing::info!(service = %definition.name, "service stopped: another replica leads now");
            }
        });
    }
}

/// Tell the other replicas that a service's route changed (PostgreSQL only).
async fn notify_replicas(state: &AppState, name: &str) {
    if let Err(e) = state.store.notify_route_changed("services", name).await {
        tracing::warn!(service = name, error = %e, "telling the other replicas about a service's route");
    }
}

/// Note which process runs a service (pid and start time), so that a hub started after this
/// one was killed outright can end it rather than run a second copy beside it.
fn record_pid(pid_file: &std::path::Path, pid: u32) {
    use std::io::Write;
    let Ok(pid) = i32::try_from(pid) else { return };
    let Some(start_time) = hubfleet_spawn::process_start_time(pid) else {
        return;
    };
    let written = pid_file
        .parent()
        .map_or(Ok(()), private_dir)
        .and_then(|()| {
            let mut file = private_file(pid_file, false)?;
            file.write_all(format!("{pid} {start_time}\n").as_bytes())
        });
    if let Err(e) = written {
        tracing::warn!(path = %pid_file.display(), error = %e, "cannot record the service's pid");
    }
}

/// A directory of the hub's own (mode 0700).
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// A file only the hub's account may read (mode 0600, also when it was there before), opened to
/// append or to replace.
fn private_file(path: &Path, append: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// End the copy of a service that a previous hub process left running (it was killed before
/// it could stop its services): SIGTERM, and SIGKILL after 5 s.
async fn end_orphan(name: &str, pid_file: &std::path::Path) {
    let Ok(text) = std::fs::read_to_string(pid_file) else {
        return;
    };
    let mut fields = text.split_whitespace().map(str::parse::<i64>);
    let (Some(Ok(pid)), Some(Ok(start_time))) = (fields.next(), fields.next()) else {
        return;
    };
    let (Ok(pid), Ok(start_time)) = (i32::try_from(pid), u64::try_from(start_time)) else {
        return;
    };
    if !hubfleet_spawn::process_alive(pid, start_time) {
        return;
    }
    tracing::warn!(service = %name, pid, "ending the copy of this service left running by a previous hub process");
    let target = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM);
    for _ in 0..50 {
        if !hubfleet_spawn::process_alive(pid, start_time) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGKILL);
}

fn spawn_service(
    definition: &ServiceDefinition,
    env: &BTreeMap<String, String>,
    log_path: &Path,
) -> std::io::Result<tokio::process::Child> {
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let log = private_file(log_path, true)?;
    let mut command = tokio::process::Command::new(&definition.command[0]);
    command
        .args(&definition.command[1..])
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    command.spawn()
}

/// The environment of a managed service (protocol §5.1, "Managed services"). Unlike users'
/// servers, services keep the hub's `PATH`: they are the operator's programs, run as the hub's
/// own account (as upstream's managed services, which inherit its `env_keep`).
fn service_env(
    state: &AppState,
    definition: &ServiceDefinition,
    token: &str,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for key in [
        "PATH",
        "LANG",
        "LC_ALL",
        "HOME",
        "USER",
        "SHELL",
        "PYTHONPATH",
        "VIRTUAL_ENV",
        "LD_LIBRARY_PATH",
        "CONDA_ROOT",
        "CONDA_DEFAULT_ENV",
        "JUPYTERHUB_SINGLEUSER_APP",
    ] {
        // `hub.extraEnv` stands for the hub's own environment.
        let value = state.settings().kept_env.get(key).cloned();
        if let Some(value) = value.or_else(|| std::env::var(key).ok()) {
            env.insert(key.to_string(), value);
        }
    }
    if let Some(venv) = &state.settings().python_env {
        let path = env.get("PATH").cloned().unwrap_or_default();
        env.insert("PATH".into(), format!("{}/bin:{path}", venv.display()));
        env.insert("VIRTUAL_ENV".into(), venv.display().to_string());
    }
    let api_url = state.settings().api_url();
    let name = &definition.name;
    let mut set = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    set("JUPYTERHUB_API_TOKEN", token.to_string());
    set("JPY_API_TOKEN", token.to_string());
    set("JUPYTERHUB_API_URL", api_url);
    set("JUPYTERHUB_BASE_URL", state.settings().base_url.clone());
    set("JUPYTERHUB_SERVICE_NAME", name.clone());
    set("JUPYTERHUB_CLIENT_ID", format!("service-{name}"));
    set("JUPYTERHUB_HOST", state.settings().hub_origin());
    set("JUPYTERHUB_USER", String::new());
    set(
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES",
        serde_json::to_string(&[
            "access:services".to_string(),
            format!("access:services!service={name}"),
        ])
        .unwrap_or_default(),
    );
    set("JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES", "[]".into());
    if !definition.url.is_empty() {
        set("JUPYTERHUB_SERVICE_URL", definition.url.clone());
        set(
            "JUPYTERHUB_SERVICE_PREFIX",
            state.settings().with_base(&format!("/services/{name}/")),
        );
        set(
            "JUPYTERHUB_OAUTH_CALLBACK_URL",
            format!(
                "{}{}",
                state.settings().service_origin(name),
                state
                    .settings()
                    .with_base(&format!("/services/{name}/oauth_callback"))
            ),
        );
    }
    for (k, v) in &definition.environment {
        set(k, v.clone());
    }
    env
}
