//! Idle culling (z2jh's `cull:`): the real `jupyterhub-idle-culler` as a managed
//! service when it is installed, or the same rules in Rust.

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use hubfleet_store::Phase;

use crate::services::ServiceDefinition;
use crate::{AppState, HubError, RoleDefinition};

#[derive(Clone, Debug, PartialEq)]
pub struct CullSettings {
    /// Seconds of inactivity after which a server is stopped.
    pub timeout: u64,
    /// Seconds between two rounds.
    pub every: u64,
    /// Stop servers older than this many seconds whatever their activity (0: never).
    pub max_age: u64,
    /// Also delete users who have been inactive for `timeout`.
    pub users: bool,
    /// With `users`: admins too.
    pub admin_users: bool,
    /// Delete named servers' records after stopping them.
    pub remove_named_servers: bool,
    pub concurrency: u32,
    /// Run `python -m jupyterhub_idle_culler` with this Python; `None`: the built-in culler.
    pub idle_culler_python: Option<PathBuf>,
}

/// The service and role z2jh defines for the culler.
pub const SERVICE_NAME: &str = "idle-culler";

/// Whether the culler is the `idle-culler` service (its role and service row are the hub's).
pub fn runs_as_service(settings: &crate::Settings) -> bool {
    settings
        .culler
        .as_ref()
        .is_some_and(|cull| cull.idle_culler_python.is_some())
}

pub async fn start(state: &AppState, cull: CullSettings) -> Result<(), HubError> {
    match &cull.idle_culler_python {
        Some(python) => start_idle_culler(state, &cull, python).await,
        None => {
            tracing::info!(
                timeout = cull.timeout,
                every = cull.every,
                "built-in idle culler enabled"
            );
            let task_state = state.clone();
            let state = state.clone();
            let task = tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(cull.every.max(1)));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    // With replicas, one culls: the leader.
                    if !state.leader.is_leader() {
                        continue;
                    }
                    if let Err(e) = cull_once(&state, &cull).await {
                        tracing::warn!(error = %e, "culling idle servers");
                    }
                }
            });
            let previous = task_state
                .culler_task
                .lock()
                .expect("culler lock")
                .replace(task.abort_handle());
            if let Some(previous) = previous {
                previous.abort();
            }
            Ok(())
        }
    }
}

/// Stop the culler (a config reload changed or removed it): the built-in task, or the
/// `idle-culler` service.
pub async fn stop(state: &AppState) -> Result<(), HubError> {
    if let Some(task) = state.culler_task.lock().expect("culler lock").take() {
        task.abort();
    }
    if let Some(service) = state.store.service_by_name(SERVICE_NAME).await? {
        state.services.remove(state, &service).await?;
    }
    Ok(())
}

async fn start_idle_culler(
    state: &AppState,
    cull: &CullSettings,
    python: &std::path::Path,
) -> Result<(), HubError> {
    let mut command = vec![
        python.display().to_string(),
        "-m".into(),
        "jupyterhub_idle_culler".into(),
        format!("--timeout={}", cull.timeout),
        format!("--cull-every={}", cull.every),
        format!("--concurrency={}", cull.concurrency),
        format!("--max-age={}", cull.max_age),
    ];
    if cull.users {
        command.push("--cull-users".into());
        command.push(format!("--cull-admin-users={}", cull.admin_users));
    }
    if cull.remove_named_servers {
        command.push("--remove-named-servers".into());
    }
    let mut scopes = vec![
        "list:users",
        "read:users:activity",
        "read:servers",
        "delete:servers",
    ];
    if cull.users {
        scopes.push("admin:users");
    }
    let service = state
        .services
        .add(
            state,
            ServiceDefinition {
                name: SERVICE_NAME.into(),
                command,
                display: false,
                from_config: true,
                ..Default::default()
            },
        )
        .await?;
    let role = RoleDefinition {
        name: SERVICE_NAME.into(),
        description: "Cull idle servers (z2jh's idle-culler service)".into(),
        scopes: scopes.into_iter().map(String::from).collect(),
        services: vec![service.name.clone()],
        ..Default::default()
    };
    state
        .store
        .put_role(
            &hubfleet_store::StoredRole {
                name: role.name,
                description: role.description,
                scopes: role.scopes,
            },
            &hubfleet_store::RoleMembers {
                services: role.services,
                ..Default::default()
            },
        )
        .await?;
    tracing::info!(
        timeout = cull.timeout,
        every = cull.every,
        "jupyterhub-idle-culler runs as a managed service"
    );
    Ok(())
}

/// One round of the built-in culler, with jupyterhub-idle-culler's rules.
pub async fn cull_once(state: &AppState, cull: &CullSettings) -> Result<usize, HubError> {
    state.lifecycle.import_proxy_activity().await?;
    let now = Utc::now();
    let timeout = chrono::Duration::seconds(cull.timeout as i64);
    let max_age = chrono::Duration::seconds(cull.max_age as i64);
    let mut culled = 0;
    for (user_name, server) in state.store.active_servers().await? {
        if server.phase != Phase::Ready {
            continue;
        }
        let Some(since) = server.last_activity.or(server.started) else {
            continue;
        };
        let inactive = now - since;
        let age = server.started.map(|s| now - s).unwrap_or_default();
        let too_old = cull.max_age > 0 && age >= max_age;
        if inactive < timeout && !too_old {
            continue;
        }
        let Some(user) = state.store.user_by_name(&user_name).await? else {
            continue;
        };
        tracing::info!(user = %user_name, server = %server.name, inactive_seconds = inactive.num_seconds(), "culling idle server");
        state.lifecycle.stop(&user, &server.name).await?;
        let _ = state
            .store
            .append_event(
                &user_name,
                &server.name,
                "culled",
                &serde_json::json!({ "inactive_seconds": inactive.num_seconds() }),
            )
            .await;
        if cull.remove_named_servers && !server.name.is_empty() {
            state.store.delete_server(server.id).await?;
        }
        culled += 1;
    }
    if cull.users {
        for user in state.store.list_users().await? {
            if user.admin && !cull.admin_users {
                continue;
            }
            let servers = state.store.servers_of(user.id).await?;
            if servers.iter().any(|s| s.phase != Phase::Stopped) {
                continue;
            }
            let since = user.last_activity.unwrap_or(user.created);
            if now - since >= timeout {
                tracing::info!(user = %user.name, "culling idle user");
                state.store.delete_user(user.id).await?;
                culled += 1;
            }
        }
    }
    Ok(culled)
}
