//! Live config reload (`hubfleet serve` on a file change, SIGHUP, `POST /hub/api/config/reload`).
//! A reload asked through the API is forwarded to the other replicas ([`forward`]).
//!
//! The files are loaded and checked as at start-up; nothing changes when they have a problem.
//! Keys that apply live (`hubfleet_config::reload::LIVE_KEYS`) get new [`Settings`] swapped in,
//! and what the hub made from them at start (admins, groups, roles, services, the culler) is
//! made again. Keys that need a restart keep their values. Running servers are not touched.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hubfleet_config::reload::{changes, effective, is_authenticator_key, ConfigChange};
use hubfleet_config::HubConfig;
use hubfleet_store::cluster::{
    ReloadRequest, NOTIFY_PAYLOAD_LIMIT, RELOADED_CHANNEL, RELOAD_CHANNEL,
};
use serde::{Deserialize, Serialize};

use crate::services::ServiceDefinition;
use crate::{AppState, Settings};

/// Makes the hub's settings from a configuration (the binary's `settings`, as at start-up).
pub type SettingsBuilder = Arc<dyn Fn(&HubConfig) -> Result<Settings, String> + Send + Sync>;

/// Makes the authenticator from a configuration, as at start-up.
pub type AuthenticatorBuilder = Arc<
    dyn Fn(&HubConfig, &hubfleet_store::Store) -> Result<hubfleet_auth::DynAuthenticator, String>
        + Send
        + Sync,
>;

/// Told the configuration a reload took (the effective one: keys that need a restart as they
/// were), once the hub's own settings are swapped in: for parts made outside the hub from the
/// config (the Kubernetes spawner's values).
pub type ReloadListener = Arc<dyn Fn(&HubConfig) + Send + Sync>;

/// The file, in the data directory, holding the configuration the hub runs with (the merged
/// values, with the keys that need a restart as at start): `hubfleet config diff` reads it.
pub const EFFECTIVE_CONFIG_FILE: &str = "effective-config.yaml";

/// What a reload did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReloadSummary {
    /// The new configuration was taken (possibly with nothing to change).
    pub ok: bool,
    /// Keys whose new values the hub uses now.
    pub applied: Vec<String>,
    /// Keys that changed but keep their old values until the hub restarts.
    pub restart_needed: Vec<String>,
    /// Why the files were refused (`file:line:column: problem`), or what failed while applying.
    pub errors: Vec<String>,
    /// With replicas (PostgreSQL): how the reload went on each, this one first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaReload>,
    /// Replicas that run but did not answer in time ([`FORWARD_WAIT`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unanswered: Vec<String>,
}

/// How a reload went on one replica.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplicaReload {
    pub replica: String,
    pub ok: bool,
    pub applied: Vec<String>,
    pub restart_needed: Vec<String>,
    pub errors: Vec<String>,
}

/// A replica's answer to a forwarded reload.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Answer {
    request: String,
    #[serde(flatten)]
    reload: ReplicaReload,
}

/// How long the replica that was asked waits for the others' answers.
pub const FORWARD_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

impl ReplicaReload {
    fn of(replica: &str, summary: &ReloadSummary) -> Self {
        ReplicaReload {
            replica: replica.to_string(),
            ok: summary.ok,
            applied: summary.applied.clone(),
            restart_needed: summary.restart_needed.clone(),
            errors: summary.errors.clone(),
        }
    }
}

/// After this replica reloaded on request (the API): ask every other replica on the database
/// to reload its own files, and wait (at most [`FORWARD_WAIT`]) for their answers, which are
/// added to `summary`. Nothing on SQLite (one hub).
pub async fn forward(state: &AppState, mut summary: ReloadSummary) -> ReloadSummary {
    if state.store.backend() != hubfleet_store::Backend::Postgres {
        return summary;
    }
    let me = state.lifecycle.replica().to_string();
    // Before asking: no answer may come before this replica listens for it.
    let mut answers = state.reload_answers.subscribe();
    summary.replicas.push(ReplicaReload::of(&me, &summary));
    let mut waiting: std::collections::BTreeSet<String> = match state.store.live_replicas().await {
        Ok(replicas) => replicas.into_iter().filter(|r| *r != me).collect(),
        Err(e) => {
            summary
                .errors
                .push(format!("cannot tell which other replicas run: {e}"));
            return summary;
        }
    };
    let request = ReloadRequest {
        request: hubfleet_store::new_token(),
        from: me.clone(),
    };
    let payload = serde_json::to_string(&request).unwrap_or_default();
    if let Err(e) = state.store.notify_replicas(RELOAD_CHANNEL, &payload).await {
        summary
            .errors
            .push(format!("cannot ask the other replicas to reload: {e}"));
        summary.unanswered = waiting.into_iter().collect();
        return summary;
    }
    tracing::info!(replicas = ?waiting, "asked the other replicas to reload their config files");
    let deadline = tokio::time::Instant::now() + FORWARD_WAIT;
    while !waiting.is_empty() {
        match tokio::time::timeout_at(deadline, answers.recv()).await {
            Ok(Ok(text)) => {
                let Ok(answer) = serde_json::from_str::<Answer>(&text) else {
                    continue;
                };
                if answer.request == request.request && waiting.remove(&answer.reload.replica) {
                    summary.replicas.push(answer.reload);
                }
            }
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) | Err(_) => break,
        }
    }
    if !waiting.is_empty() {
        tracing::warn!(replicas = ?waiting, "replicas did not say whether they reloaded");
    }
    summary.unanswered = waiting.into_iter().collect();
    summary
}

/// The hub's reloader. `hubfleet serve` sets it just after the hub starts listening: a request
/// in that moment waits for it (briefly) rather than being told there is nothing to reload.
pub async fn reloader(state: &AppState) -> Option<Arc<ConfigReloader>> {
    const STARTING: std::time::Duration = std::time::Duration::from_secs(30);
    const WAIT: std::time::Duration = std::time::Duration::from_secs(2);
    let waited = std::time::Instant::now();
    loop {
        if let Some(reloader) = state.config_reloader.get() {
            return Some(reloader.clone());
        }
        if state.settings().process_started.elapsed() > STARTING || waited.elapsed() > WAIT {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Another replica asked: reload this replica's own files and say how it went.
pub async fn answer_forwarded(state: &AppState, request: &ReloadRequest) {
    let summary = match reloader(state).await {
        Some(reloader) => reloader.reload(state).await,
        None => refused(vec![
            "this replica was not started from config files (`hubfleet serve --config`)".into(),
        ]),
    };
    let mut answer = Answer {
        request: request.request.clone(),
        reload: ReplicaReload::of(state.lifecycle.replica(), &summary),
    };
    let mut payload = serde_json::to_string(&answer).unwrap_or_default();
    if payload.len() > NOTIFY_PAYLOAD_LIMIT {
        // A notification is small: the whole story is in this replica's log.
        let count = answer.reload.errors.len();
        answer.reload.errors = vec![format!(
            "{count} problem(s): see the log of replica {}",
            answer.reload.replica
        )];
        answer.reload.applied.truncate(20);
        answer.reload.restart_needed.truncate(20);
        payload = serde_json::to_string(&answer).unwrap_or_default();
    }
    if let Err(e) = state
        .store
        .notify_replicas(RELOADED_CHANNEL, &payload)
        .await
    {
        tracing::warn!(error = %e, "telling the replica that asked how the reload went");
    }
}

/// Reloads the configuration from its files, one reload at a time.
pub struct ConfigReloader {
    paths: Vec<PathBuf>,
    /// The configuration in use (the effective one). Held during a reload.
    current: tokio::sync::Mutex<HubConfig>,
    build: SettingsBuilder,
    build_authenticator: AuthenticatorBuilder,
    listeners: std::sync::Mutex<Vec<ReloadListener>>,
}

impl ConfigReloader {
    pub fn new(
        paths: Vec<PathBuf>,
        current: HubConfig,
        build: SettingsBuilder,
        build_authenticator: AuthenticatorBuilder,
    ) -> Self {
        ConfigReloader {
            paths,
            current: tokio::sync::Mutex::new(current),
            build,
            build_authenticator,
            listeners: std::sync::Mutex::default(),
        }
    }

    /// Call `listener` after each reload that applied something.
    pub fn on_reload(&self, listener: ReloadListener) {
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(listener);
    }

    /// The files this hub was started with.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Read the files again and apply what changed.
    pub async fn reload(&self, state: &AppState) -> ReloadSummary {
        let mut current = self.current.lock().await;
        let report = HubConfig::check_paths(&self.paths);
        if !report.errors.is_empty() {
            let errors: Vec<String> = report.errors.iter().map(|e| e.to_string()).collect();
            for error in &errors {
                tracing::error!(%error, "config reload refused; the hub keeps its configuration");
            }
            return refused(errors);
        }
        report.log_warnings();
        let Some(new) = report.config else {
            return refused(vec!["the configuration could not be read".into()]);
        };
        let found = changes(&current, &new);
        let (applied, restart_needed) = split(&found);
        for key in &restart_needed {
            tracing::warn!(%key, "changed in the config, but needs a restart: the hub keeps the old value");
        }
        if applied.is_empty() {
            return ReloadSummary {
                ok: true,
                applied,
                restart_needed,
                errors: Vec::new(),
                ..Default::default()
            };
        }
        let next = match effective(&current, &new) {
            Ok(config) => config,
            Err(e) => return refused(vec![e.to_string()]),
        };
        let old_settings = state.settings();
        let mut settings = match (self.build)(&next) {
            Ok(settings) => settings,
            Err(e) => {
                tracing::error!(error = %e, "config reload refused; the hub keeps its configuration");
                return refused(vec![e]);
            }
        };
        let templates = match crate::templates::Templates::load(&settings.pages, &settings.base_url)
        {
            Ok(templates) => templates,
            Err(e) => return refused(vec![format!("hub.templatePaths: {e}")]),
        };
        let authenticator = if applied.iter().any(|key| is_authenticator_key(key)) {
            match (self.build_authenticator)(&next, &state.store) {
                Ok(authenticator) => Some(authenticator),
                Err(e) => return refused(vec![e]),
            }
        } else {
            None
        };
        keep_runtime_parts(&mut settings, &old_settings);
        let settings = Arc::new(settings);
        state.shared_settings.replace(settings.clone());
        state.shared_templates.store(Arc::new(templates));
        if let Some(authenticator) = authenticator {
            state.shared_authenticator.store(Arc::new(authenticator));
        }
        // A new logo's origin may show on the pages now.
        state
            .page_csp
            .store(Arc::new(crate::page_csp(&settings, &state.authenticator())));
        write_snapshot(&settings.data_dir, &next);
        let errors = apply(state, &old_settings, &settings, &next).await;
        let listeners = self
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for listener in listeners {
            listener(&next);
        }
        *current = next;
        tracing::info!(applied = ?applied, "config reloaded");
        ReloadSummary {
            ok: errors.is_empty(),
            applied,
            restart_needed,
            errors,
            ..Default::default()
        }
    }
}

fn refused(errors: Vec<String>) -> ReloadSummary {
    ReloadSummary {
        ok: false,
        errors,
        ..Default::default()
    }
}

fn split(found: &[ConfigChange]) -> (Vec<String>, Vec<String>) {
    let (live, restart): (Vec<_>, Vec<_>) = found.iter().partition(|c| c.live);
    (
        live.into_iter().map(|c| c.key.clone()).collect(),
        restart.into_iter().map(|c| c.key.clone()).collect(),
    )
}

/// What lives as long as the process, whatever the config says: the metrics, the rate limiter's
/// buckets (unless its rates changed), the start time; HTTPS was taken at start.
fn keep_runtime_parts(settings: &mut Settings, old: &Settings) {
    settings.metrics = old.metrics.clone();
    settings.process_started = old.process_started;
    settings.https = None;
    // `dask-gateway` needs a restart: the running gateway (its tokens and listing cache) stays.
    settings.dask_gateway = old.dask_gateway.clone();
    // So does `binderhub-service`: launches keep the settings the running builder has.
    settings.binder = old.binder.clone();
    if settings.api_rate_limit.rates() == old.api_rate_limit.rates() {
        settings.api_rate_limit = old.api_rate_limit.clone();
    }
}

/// Make again what the hub made from its config at start. Errors are collected, not fatal: the
/// new settings are in use already.
async fn apply(
    state: &AppState,
    old: &Settings,
    new: &Settings,
    config: &HubConfig,
) -> Vec<String> {
    let mut errors = Vec::new();
    let mut check = |what: &str, result: Result<(), crate::HubError>| {
        if let Err(e) = result {
            tracing::error!(error = %e, "config reload: {what}");
            errors.push(format!("{what}: {e}"));
        }
    };
    check("admin_users", crate::ensure_admins(state).await);
    check(
        "load_groups",
        crate::config_groups::load(state).await.map(|_| ()),
    );
    check("hub.loadRoles", crate::load_roles(state).await);
    check(
        "hub.services",
        sync_services(state, &old.services, &new.services).await,
    );
    check("cull", restart_culler(state, old, new).await);
    // Config-defined profiles and local environments are versioned objects in the database: a
    // changed one becomes a new version authored by "config"; those made in the admin panel stay.
    check(
        "environments",
        crate::environments::sync_environments_from_config(&state.store, config)
            .await
            .map(|_| ())
            .map_err(Into::into),
    );
    errors
}

/// Start the services that are new, restart those whose definition changed, stop those gone.
async fn sync_services(
    state: &AppState,
    old: &[ServiceDefinition],
    new: &[ServiceDefinition],
) -> Result<(), crate::HubError> {
    for gone in old.iter().filter(|o| !new.iter().any(|n| n.name == o.name)) {
        if let Some(service) = state.store.service_by_name(&gone.name).await? {
            tracing::info!(service = %gone.name, "config reload: removing service");
            state.services.remove(state, &service).await?;
        }
    }
    for definition in new {
        match old.iter().find(|o| o.name == definition.name) {
            Some(before) if before == definition => {}
            before => {
                let what = if before.is_some() {
                    "restarting changed"
                } else {
                    "adding"
                };
                tracing::info!(service = %definition.name, "config reload: {what} service");
                state.services.add(state, definition.clone()).await?;
            }
        }
    }
    Ok(())
}

/// A culler whose settings changed is stopped and started with the new ones.
async fn restart_culler(
    state: &AppState,
    old: &Settings,
    new: &Settings,
) -> Result<(), crate::HubError> {
    if old.culler == new.culler {
        return Ok(());
    }
    crate::culler::stop(state).await?;
    if let Some(cull) = new.culler.clone() {
        crate::culler::start(state, cull).await?;
    }
    Ok(())
}

/// Write the configuration in use to the data directory (0600: it holds secrets).
pub fn write_snapshot(data_dir: &Path, config: &HubConfig) {
    let path = data_dir.join(EFFECTIVE_CONFIG_FILE);
    let result = serde_yaml_ng::to_string(config.values.as_value())
        .map_err(std::io::Error::other)
        .and_then(|text| crate::private_file::write(&path, text.as_bytes()));
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the effective config snapshot");
    }
}
