//! A server's life: requested → starting(step) → ready → stopping → stopped.
//!
//! The database row is the truth (phase, target, spawner state); the proxy
//! route and the progress stream are derived from it. Every step that fails
//! undoes what came before it, so a failed start leaves no process, route,
//! token or OAuth client behind.
//!
//! How a server runs (process or pod, home, log, GPUs) is the [`Spawner`]'s: the lifecycle
//! hands it a [`LaunchSpec`] and shows the progress it reports between its own steps.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use hubfleet_proxy::RouteTable;
use hubfleet_spawn::{
    LaunchSpec, Owner, PollStatus, ProfileChoice, ProgressSender, ServerRef, SpawnError,
    SpawnProgress, Spawner, Started, Storage,
};
use hubfleet_store::{NewToken, OAuthClient, Phase, Server, ServerUpdate, Store, User};
use serde::Serialize;
use tokio::sync::watch;

use crate::metrics::{spawn_reason, SpawnStatus};
use crate::urls;
use crate::{HubError, Settings};

/// One event of the spawn progress stream (protocol §2.4).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ProgressEvent {
    pub progress: u8,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl ProgressEvent {
    fn step(progress: u8, message: impl Into<String>) -> Self {
        ProgressEvent {
            progress,
            message: message.into(),
            html_message: None,
            ready: None,
            failed: None,
            url: None,
        }
    }

    /// The event for a start step known only from the server's row (a start driven by
    /// another hub replica, or by this hub before it restarted).
    pub fn from_phase_detail(detail: &str) -> Self {
        let (progress, message) = match detail {
            "requested" => (0, "Server requested"),
            "allocating" => (SPAWNER_STARTS, "Starting the server process"),
            "waiting for HTTP" => (
                SPAWNER_STARTED,
                "Server process started; waiting for it to answer",
            ),
            "adding route" => (90, "Server is up; adding its route"),
            // The spawner's own progress ("pulling image"), between those two.
            other => (SPAWNER_STARTS + 1, other),
        };
        ProgressEvent::step(progress, message)
    }

    pub fn is_final(&self) -> bool {
        self.ready.is_some() || self.failed.is_some()
    }

    pub fn ready_at(url: &str) -> Self {
        let escaped = minijinja::HtmlEscape(url).to_string();
        ProgressEvent {
            progress: 100,
            message: format!("Server ready at {url}"),
            html_message: Some(format!(
                "Server ready at <a href=\"{escaped}\">{escaped}</a>"
            )),
            ready: Some(true),
            failed: None,
            url: Some(url.to_string()),
        }
    }

    pub fn failed(reason: &str) -> Self {
        ProgressEvent {
            progress: 100,
            message: format!("Spawn failed: {reason}"),
            html_message: None,
            ready: None,
            failed: Some(true),
            url: None,
        }
    }
}

type ServerKey = (String, String);

/// What `spawn` found or did.
#[derive(Debug, PartialEq, Eq)]
pub enum SpawnOutcome {
    Started,
    AlreadyPending,
    AlreadyRunning,
}

/// How a start ended, as far as a waiter saw.
#[derive(Debug, PartialEq, Eq)]
pub enum StartResult {
    Ready,
    Failed(String),
    /// Still starting when the wait ended.
    Pending,
}

/// Serialises the operations on one server inside this hub: a start holds the
/// lock for its whole run; a stop cancels the start and then takes the lock.
#[derive(Default)]
struct ServerOp {
    lock: tokio::sync::Mutex<()>,
    cancel: AtomicBool,
    /// The cancel came from the database (a stop through another replica): the start cleans
    /// up itself, as no stop here waits for the lock.
    remote_cancel: AtomicBool,
}

#[derive(Clone)]
pub struct Lifecycle {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    spawner: Arc<dyn Spawner>,
    routes: RouteTable,
    settings: crate::SharedSettings,
    /// Progress of starts this hub drives, for the SSE stream. A server with no
    /// entry here is reported from its database row.
    progress: Mutex<HashMap<ServerKey, watch::Sender<Vec<ProgressEvent>>>>,
    ops: Mutex<HashMap<ServerKey, Arc<ServerOp>>>,
    /// Identifies this hub replica as a lease owner: its host and address, the same across
    /// restarts, so that a replica started again takes back what it held.
    replica: String,
    /// Held from counting servers for the spawn limits until the start is recorded, so two
    /// starts never both take the last place (within this hub; replicas may overshoot a little).
    admission: tokio::sync::Mutex<()>,
}

/// How long a start or stop holds a server's lease without renewing it; the replica driving a
/// start renews it every [`LEASE_RENEWAL`]. A replica that dies leaves its leases to expire,
/// and then another finishes (cleans up) what it was doing.
const LEASE: chrono::Duration = chrono::Duration::seconds(30);
const LEASE_RENEWAL: Duration = Duration::from_secs(10);
/// How often a replica driving a start looks whether a stop came through another one.
const REMOTE_STOP_CHECK: Duration = Duration::from_secs(1);
/// How much longer than the start timeout a spawner's `start` may take before the hub gives up
/// on it: spawners that keep the timeout themselves report first, with their reason.
const SPAWNER_GRACE: Duration = Duration::from_secs(10);
/// Time a server gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The progress (percent) of a start when the spawner is asked to start the server, and when
/// it has; the spawner's own events fall in between.
const SPAWNER_STARTS: u8 = 10;
const SPAWNER_STARTED: u8 = 40;
/// How much of a server's log a failed start shows.
const FAILED_START_LOG_BYTES: u64 = 2000;

impl Lifecycle {
    pub fn new(
        store: Store,
        spawner: Arc<dyn Spawner>,
        routes: RouteTable,
        settings: impl Into<crate::SharedSettings>,
    ) -> Self {
        let settings = settings.into();
        let settings_listen = settings.current().listen;
        Lifecycle {
            inner: Arc::new(Inner {
                store,
                spawner,
                routes,
                settings,
                progress: Mutex::new(HashMap::new()),
                ops: Mutex::new(HashMap::new()),
                replica: replica_id(settings_listen),
                admission: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// This replica's name as a lease owner (`<host>/<listen address>`).
    pub fn replica(&self) -> &str {
        &self.inner.replica
    }

    fn replicated(&self) -> bool {
        self.inner.store.backend() == hubfleet_store::Backend::Postgres
    }

    fn op(&self, user: &str, server: &str) -> Arc<ServerOp> {
        self.inner
            .ops
            .lock()
            .expect("ops lock")
            .entry(key(user, server))
            .or_default()
            .clone()
    }

    /// Request a start. Returns once the request is recorded; the start goes on in
    /// the background, and [`Lifecycle::wait_ready`] or the progress stream follow it.
    pub async fn spawn(&self, user: &User, server_name: &str) -> Result<SpawnOutcome, HubError> {
        let requested = Instant::now();
        let inner = &self.inner;
        let server = inner.store.ensure_server(user.id, server_name).await?;
        if server.phase == Phase::Stopped {
            // Refuse bad profile choices, and starts the spawner cannot serve (GPUs that are
            // not free), before anything is recorded or started.
            let spec = self
                .launch_spec(user, &server, BTreeMap::new())
                .await?
                .map_err(HubError::BadRequest)?;
            inner.spawner.check(&spec).await.map_err(|e| match e {
                SpawnError::Refused(message) => HubError::BadRequest(message),
                other => HubError::SpawnFailed(other.to_string()),
            })?;
        }
        let limited = server.phase == Phase::Stopped
            && (inner.settings.current().concurrent_spawn_limit > 0
                || inner.settings.current().active_server_limit > 0);
        let admission = match limited {
            true => Some(inner.admission.lock().await),
            false => None,
        };
        if limited {
            self.admit(requested).await?;
        }
        let began = inner
            .store
            .begin_start(server.id, &inner.replica, Utc::now() + LEASE)
            .await?;
        drop(admission);
        if !began {
            let current = inner.store.server(user.id, server_name).await?;
            return match current.map(|s| s.phase) {
                Some(Phase::Ready) => Ok(SpawnOutcome::AlreadyRunning),
                Some(Phase::Stopping) => Err(HubError::BadRequest(format!(
                    "{} is stopping; try again in a few seconds",
                    display_name(&user.name, server_name)
                ))),
                // Starting here or on another replica (which holds the lease).
                _ => Ok(SpawnOutcome::AlreadyPending),
            };
        }
        let op = self.op(&user.name, server_name);
        op.cancel.store(false, Ordering::SeqCst);
        let (tx, _) = watch::channel(vec![ProgressEvent::step(0, "Server requested")]);
        inner
            .progress
            .lock()
            .expect("progress lock")
            .insert(key(&user.name, server_name), tx);
        // Bookkeeping is best-effort: the start must go on once it is recorded.
        let _ = inner.store.touch_user(user.id, Utc::now()).await;
        let _ = inner
            .store
            .append_event(&user.name, server_name, "requested", &serde_json::json!({}))
            .await;
        let this = self.clone();
        let user = user.clone();
        tokio::spawn(async move {
            let _guard = op.lock.lock().await;
            let name = server.name.clone();
            // A stop may have come (and finished) before this task got the lock.
            let current = this.inner.store.server(user.id, &name).await.ok().flatten();
            let phase = current.as_ref().map(|s| s.phase);
            if op.cancel.load(Ordering::SeqCst) || phase != Some(Phase::Starting) {
                if phase == Some(Phase::Stopping) && !op.cancel.load(Ordering::SeqCst) {
                    // Stopped through another replica, which waits for this one to clean up.
                    let _ = this.tear_down(&user.name, server.id, None, "stopped").await;
                }
                this.emit(&user.name, &name, ProgressEvent::failed("Spawn cancelled"));
                return;
            }
            let started = Instant::now();
            let watch = this.watch_start(&user, &server, &op);
            let outcome = this.run_spawn(&user, &server, &op).await;
            watch.abort();
            match outcome {
                Ok(url) => {
                    tracing::info!(user = %user.name, server = %name, seconds = started.elapsed().as_secs_f64(), "server ready");
                    this.emit(&user.name, &name, ProgressEvent::ready_at(&url));
                }
                Err(reason) => {
                    tracing::warn!(user = %user.name, server = %name, %reason, "spawn failed");
                    this.emit(&user.name, &name, ProgressEvent::failed(&reason));
                }
            }
            let _ = this
                .inner
                .store
                .release_lease(server.id, &this.inner.replica)
                .await;
        });
        Ok(SpawnOutcome::Started)
    }

    /// Upstream's spawn limits (`BaseHandler.spawn_single_user`): too many starts in progress
    /// is a 429 with a random `Retry-After` of 30 to 60 s; too many servers not stopped a 429
    /// without. Each refusal is a `failure` in the spawn histogram, with its reason.
    async fn admit(&self, requested: Instant) -> Result<(), HubError> {
        let settings = &self.inner.settings.current();
        let counts = self.inner.store.server_counts().await?;
        let refuse = |reason: &'static str, error: HubError| {
            settings.metrics.spawn_duration(
                requested.elapsed().as_secs_f64(),
                SpawnStatus::Failure,
                reason,
            );
            Err(error)
        };
        let spawn_limit = i64::from(settings.concurrent_spawn_limit);
        if spawn_limit > 0 && counts.starting >= spawn_limit {
            let retry = rand::Rng::gen_range(&mut rand::thread_rng(), SPAWN_RETRY_RANGE);
            tracing::warn!(
                pending = counts.starting,
                "{} pending spawns, throttling. Suggested retry in {retry} seconds.",
                counts.starting
            );
            return refuse(spawn_reason::THROTTLED, HubError::SpawnThrottled(retry));
        }
        let active_limit = i64::from(settings.active_server_limit);
        if active_limit > 0 && counts.active >= active_limit {
            tracing::info!(
                active = counts.active,
                "{} servers active, no space available",
                counts.active
            );
            return refuse(spawn_reason::TOO_MANY_USERS, HubError::ActiveServerLimit);
        }
        Ok(())
    }

    /// While a start runs: renew its lease, and (with replicas) cancel it when the row says
    /// a stop came through another replica.
    fn watch_start(
        &self,
        user: &User,
        server: &Server,
        op: &Arc<ServerOp>,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        let (user_id, name, server_id) = (user.id, server.name.clone(), server.id);
        let op = op.clone();
        let check = if self.replicated() {
            REMOTE_STOP_CHECK
        } else {
            LEASE_RENEWAL
        };
        tokio::spawn(async move {
            let store = &this.inner.store;
            let mut renewed = Instant::now();
            loop {
                tokio::time::sleep(check).await;
                if renewed.elapsed() >= LEASE_RENEWAL {
                    renewed = Instant::now();
                    if let Err(e) = store
                        .acquire_lease(server_id, &this.inner.replica, Utc::now() + LEASE)
                        .await
                    {
                        tracing::warn!(server = %name, error = %e, "renewing a start's lease");
                    }
                }
                if !this.replicated() {
                    continue;
                }
                if let Ok(Some(current)) = store.server(user_id, &name).await {
                    if current.phase == Phase::Stopping {
                        // A stop here sets `cancel` before it writes the row.
                        if !op.cancel.swap(true, Ordering::SeqCst) {
                            op.remote_cancel.store(true, Ordering::SeqCst);
                        }
                        return;
                    }
                }
            }
        })
    }

    fn emit(&self, user: &str, server: &str, event: ProgressEvent) {
        if let Some(tx) = self
            .inner
            .progress
            .lock()
            .expect("progress lock")
            .get(&key(user, server))
        {
            tx.send_modify(|events| events.push(event));
        }
    }

    async fn step(&self, user: &str, server: &Server, progress: u8, detail: &str, message: String) {
        self.emit(user, &server.name, ProgressEvent::step(progress, message));
        let _ = self
            .inner
            .store
            .update_server(
                server.id,
                &ServerUpdate {
                    phase_detail: Some(Some(detail.to_string())),
                    ..Default::default()
                },
            )
            .await;
    }

    /// A spawner's progress event, as a step of the start: its message, at a point between
    /// the hub's steps around `Spawner::start` (never going back).
    async fn spawner_step(&self, user: &str, server: &Server, event: SpawnProgress) {
        let last = self
            .inner
            .progress
            .lock()
            .expect("progress lock")
            .get(&key(user, &server.name))
            .and_then(|tx| tx.borrow().last().map(|e| e.progress))
            .unwrap_or(SPAWNER_STARTS);
        let span = u16::from(SPAWNER_STARTED - SPAWNER_STARTS - 1);
        let progress = match event.percent {
            Some(percent) => SPAWNER_STARTS + (u16::from(percent.min(100)) * span / 100) as u8,
            None => last,
        };
        let message = event.message;
        self.step(user, server, progress.max(last), &message, message.clone())
            .await;
    }

    /// [`Spawner::start`], with the progress the spawner reports shown as it comes, in order,
    /// and all of it before the hub's next step.
    async fn start_reporting(
        &self,
        user: &str,
        server: &Server,
        spec: &LaunchSpec,
    ) -> Result<Started, SpawnError> {
        let (sender, mut events) = ProgressSender::channel();
        let start = self.inner.spawner.start(spec, &sender);
        tokio::pin!(start);
        let result = loop {
            tokio::select! {
                biased;
                Some(event) = events.recv() => self.spawner_step(user, server, event).await,
                result = &mut start => break result,
            }
        };
        // What the spawner sends from now on belongs to no step of this start.
        events.close();
        while let Ok(event) = events.try_recv() {
            self.spawner_step(user, server, event).await;
        }
        result
    }

    /// What a start of `server` asks for: the user's profile choices, checked against their
    /// groups (`Err` inside: the message for the user), as a launch spec with `env` (the
    /// hub's part of the server's environment) completed by the profile.
    async fn launch_spec(
        &self,
        user: &User,
        server: &Server,
        mut env: BTreeMap<String, String>,
    ) -> Result<Result<LaunchSpec, String>, HubError> {
        let settings = &self.inner.settings.current();
        let options = &crate::environments::spawn_options(&self.inner.store, settings).await?;
        let groups = self.inner.store.groups_of_user(user.id).await?;
        let resolved = match crate::profiles::resolve(options, &groups, &server.user_options) {
            Ok(resolved) => resolved,
            Err(message) => return Ok(Err(message)),
        };
        let mut cmd = settings.command();
        crate::profiles::apply(
            options,
            &resolved,
            settings.cmd.as_ref(),
            &mut cmd,
            &mut env,
        );
        if let Err(message) =
            crate::binder::apply_launch(settings, &server.user_options, &mut cmd, &mut env)
        {
            return Ok(Err(message));
        }
        let (labels, annotations) = kubespawner_metadata(&user.name, &server.name);
        let user_options = match &server.user_options {
            serde_json::Value::Null => serde_json::json!({}),
            given => given.clone(),
        };
        Ok(Ok(LaunchSpec {
            owner: Owner {
                name: user.name.clone(),
                id: user.id,
                admin: user.admin,
                groups,
            },
            server_name: server.name.clone(),
            cmd,
            image: resolved.image.clone(),
            resources: resolved.resources(),
            storage: Storage {
                home: user.name.clone(),
                capacity: options.storage_capacity,
            },
            env,
            service_prefix: settings.server_prefix(&user.name, &server.name),
            labels,
            annotations,
            profile: ProfileChoice {
                user_options,
                resolved,
                offered: options.profiles_as_written.clone(),
            },
        }))
    }

    /// Follow a start: the events so far, then each new one. `None` when this hub
    /// is not driving a start of that server.
    pub fn progress(
        &self,
        user: &str,
        server: &str,
    ) -> Option<watch::Receiver<Vec<ProgressEvent>>> {
        self.inner
            .progress
            .lock()
            .expect("progress lock")
            .get(&key(user, server))
            .map(|tx| tx.subscribe())
    }

    /// The end of a server's log, as its spawner keeps it (while it runs, from its state).
    pub async fn log_tail(
        &self,
        user: &User,
        server_name: &str,
        max_bytes: u64,
    ) -> Result<Option<hubfleet_spawn::ServerLog>, HubError> {
        let state = self
            .inner
            .store
            .server(user.id, server_name)
            .await?
            .and_then(|server| server.spawn_state);
        Ok(self
            .inner
            .spawner
            .log_tail(
                &ServerRef::new(&user.name, server_name),
                state.as_ref(),
                max_bytes,
            )
            .await)
    }

    /// Wait up to `timeout` for a start to finish.
    pub async fn wait_ready(&self, user: &str, server: &str, timeout: Duration) -> StartResult {
        let Some(mut rx) = self.progress(user, server) else {
            return StartResult::Pending;
        };
        let done = tokio::time::timeout(timeout, async {
            loop {
                if let Some(last) = rx.borrow_and_update().last() {
                    if last.ready == Some(true) {
                        return StartResult::Ready;
                    }
                    if last.failed == Some(true) {
                        return StartResult::Failed(last.message.clone());
                    }
                }
                if rx.changed().await.is_err() {
                    return StartResult::Pending;
                }
            }
        })
        .await;
        done.unwrap_or(StartResult::Pending)
    }

    /// The steps of a start. On failure, undo them and return the reason people see.
    async fn run_spawn(
        &self,
        user: &User,
        server: &Server,
        op: &ServerOp,
    ) -> Result<String, String> {
        let inner = &self.inner;
        let settings = &inner.settings.current();
        let prefix = settings.server_prefix(&user.name, &server.name);
        let route = settings.route_spec(&user.name, &server.name);
        let client_id = urls::oauth_client_id(&user.name, &server.name);
        let started_at = Instant::now();
        let cancelled = || op.cancel.load(Ordering::SeqCst);

        let result: Result<String, StartFailure> = async {
            // The server's own API token, which is also its OAuth client secret.
            let api_token = hubfleet_store::new_token();
            let mut server_scopes = vec![
                format!("access:servers!server={}/{}", user.name, server.name),
                format!("users:activity!user={}", user.name),
            ];
            // The Dask gateway accepts the server's token (`Gateway()` in a notebook).
            if let Some(gateway) = &settings.dask_gateway {
                server_scopes.push(gateway.access_scope());
            }
            inner
                .store
                .insert_token(
                    &api_token,
                    &NewToken {
                        user_id: Some(user.id),
                        service_id: None,
                        server_id: Some(server.id),
                        client_id: "jupyterhub",
                        session_id: None,
                        scopes: &server_scopes,
                        note: &format!("Server at {prefix}"),
                        expires_at: None,
                    },
                )
                .await
                .map_err(|e| format!("could not create the server's API token: {e}"))?;
            let access_scope = format!("access:servers!server={}/{}", user.name, server.name);
            inner
                .store
                .upsert_oauth_client(
                    &OAuthClient {
                        identifier: client_id.clone(),
                        redirect_uri: format!(
                            "{}oauth_callback",
                            settings.server_url(&user.name, &server.name)
                        ),
                        description: format!("Server at {prefix}"),
                        allowed_scopes: vec![access_scope.clone()],
                        server_id: Some(server.id),
                    },
                    &api_token,
                )
                .await
                .map_err(|e| format!("could not register the server's OAuth client: {e}"))?;
            if cancelled() {
                return Err("Spawn cancelled".to_string().into());
            }

            let env = settings.server_env(user, &server.name, &api_token, &access_scope);
            let spec = self
                .launch_spec(user, server, env)
                .await
                .map_err(|e| e.to_string())??;
            self.step(
                &user.name,
                server,
                SPAWNER_STARTS,
                "allocating",
                "Starting the server process".into(),
            )
            .await;
            // A spawner whose start never returns (an API that stops answering) is bound by
            // the start timeout too, with a grace for spawners that keep that timeout themselves
            // and say why the start did not finish (the kubernetes spawner).
            let deadline = started_at + settings.start_timeout;
            let spawner_deadline = deadline + SPAWNER_GRACE;
            let starting = self.start_reporting(&user.name, server, &spec);
            let mut started =
                match tokio::time::timeout_at(spawner_deadline.into(), starting).await {
                    Ok(started) => started.map_err(|e| match e {
                        SpawnError::Refused(_) => StartFailure::refused(e.to_string()),
                        other => StartFailure::from(other.to_string()),
                    })?,
                    Err(_) => {
                        return Err(StartFailure::from(format!(
                            "the spawner did not start the server within the start timeout ({} s, singleuser.startTimeout, and {} s more)",
                            settings.start_timeout.as_secs(),
                            SPAWNER_GRACE.as_secs()
                        )))
                    }
                };
            if let Some(state) = started.state.as_object_mut() {
                // For admins: the server model's `state` shows what the server got.
                let mut profile = spec.profile.resolved.summary();
                // Which build of a local environment it runs: old builds in use are kept.
                let prefix = ["VIRTUAL_ENV", "CONDA_PREFIX"]
                    .iter()
                    .find_map(|k| spec.env.get(*k));
                if let (Some(prefix), Some(_)) = (prefix, &spec.profile.resolved.environment) {
                    profile["environment_path"] = prefix.clone().into();
                }
                state.insert("profile".into(), profile);
            }
            let saved = inner
                .store
                .update_server(
                    server.id,
                    &ServerUpdate {
                        target: Some(Some(started.target.clone())),
                        spawn_state: Some(Some(started.state.clone())),
                        ..Default::default()
                    },
                )
                .await;
            if let Err(e) = saved {
                // The tear-down finds the process through the saved state, which is not there:
                // stop it here, or it would run on with nobody knowing of it.
                if let Err(stop) = inner.spawner.stop(&started.state, STOP_GRACE).await {
                    tracing::warn!(user = %user.name, server = %server.name, error = %stop, "stopping the server process");
                }
                return Err(format!("could not save the server's state: {e}").into());
            }
            self.step(
                &user.name,
                server,
                SPAWNER_STARTED,
                "waiting for HTTP",
                format!(
                    "Server process started; waiting for it to answer at {}",
                    started.target
                ),
            )
            .await;

            let up = wait_up(
                &*inner.spawner,
                &started.state,
                &started.target,
                &prefix,
                deadline,
                &op.cancel,
            )
            .await;
            if let Err(mut failure) = up {
                if cancelled() {
                    return Err(failure);
                }
                let log = inner
                    .spawner
                    .log_tail(&spec.server(), Some(&started.state), FAILED_START_LOG_BYTES)
                    .await;
                if let Some(log) = log.filter(|log| !log.text.trim().is_empty()) {
                    failure.reason = format!(
                        "{}. The server's log ends with:\n{}",
                        failure.reason, log.text
                    );
                }
                return Err(failure);
            }

            self.step(
                &user.name,
                server,
                90,
                "adding route",
                "Server is up; adding its route".into(),
            )
            .await;
            let route_started = Instant::now();
            inner.routes.add(
                &route,
                &started.target,
                route_data(&user.name, &server.name),
            );
            settings
                .metrics
                .proxy_add(route_started.elapsed().as_secs_f64());
            let ready = inner
                .store
                .finish_start(server.id)
                .await
                .map_err(|e| format!("could not record the server as ready: {e}"))?;
            if !ready {
                // Stopped meanwhile through another replica: undo this start here.
                if !op.cancel.swap(true, Ordering::SeqCst) {
                    op.remote_cancel.store(true, Ordering::SeqCst);
                }
                return Err("Spawn cancelled".to_string().into());
            }
            if let Err(e) = inner
                .store
                .notify_route_changed(&user.name, &server.name)
                .await
            {
                tracing::warn!(error = %e, "telling the other replicas about a new route");
            }
            Ok::<_, StartFailure>(settings.server_url(&user.name, &server.name))
        }
        .await;

        match result {
            Ok(url) => {
                let seconds = started_at.elapsed().as_secs_f64();
                settings
                    .metrics
                    .spawn_duration(seconds, SpawnStatus::Success, spawn_reason::NONE);
                let _ = inner
                    .store
                    .append_event(
                        &user.name,
                        &server.name,
                        "ready",
                        &serde_json::json!({ "seconds": seconds }),
                    )
                    .await;
                Ok(url)
            }
            Err(_) if cancelled() => {
                if op.remote_cancel.swap(false, Ordering::SeqCst) {
                    // Stopped through another replica, which waits for this one to clean up.
                    if let Err(e) = self.tear_down(&user.name, server.id, None, "stopped").await {
                        tracing::error!(user = %user.name, error = %e, "cleaning up a start stopped through another replica");
                    }
                    op.cancel.store(false, Ordering::SeqCst);
                }
                // Else the stop that cancelled this start cleans up once we let go of the lock.
                Err("Spawn cancelled".to_string())
            }
            Err(failure) => {
                let (status, why) = failure.metric_labels();
                settings
                    .metrics
                    .spawn_duration(started_at.elapsed().as_secs_f64(), status, why);
                let reason = failure.reason;
                if let Err(e) = self
                    .tear_down(&user.name, server.id, Some(&reason), "failed")
                    .await
                {
                    tracing::error!(user = %user.name, error = %e, "cleaning up after a failed spawn");
                }
                Err(reason)
            }
        }
    }

    /// Stop a server (cancelling its start if it is starting) and remove everything
    /// it had. Idempotent.
    pub async fn stop(&self, user: &User, server_name: &str) -> Result<(), HubError> {
        let Some(server) = self.inner.store.server(user.id, server_name).await? else {
            return Ok(());
        };
        if server.phase == Phase::Stopped {
            return Ok(());
        }
        let op = self.op(&user.name, server_name);
        op.cancel.store(true, Ordering::SeqCst);
        let store = &self.inner.store;
        let replica = &self.inner.replica;
        let mut leased = store
            .acquire_lease(server.id, replica, Utc::now() + LEASE)
            .await?;
        store
            .update_server(
                server.id,
                &ServerUpdate {
                    phase: Some(Phase::Stopping),
                    phase_detail: Some(Some("stopping".into())),
                    ..Default::default()
                },
            )
            .await?;
        let started = Instant::now();
        // Another replica is starting it: it sees `stopping` and cleans up; if it dies
        // instead, its lease runs out and this stop goes on.
        while !leased {
            tokio::time::sleep(Duration::from_millis(250)).await;
            match store.server(user.id, server_name).await? {
                Some(current) if current.phase != Phase::Stopped => {}
                _ => {
                    op.cancel.store(false, Ordering::SeqCst);
                    return Ok(());
                }
            }
            leased = store
                .acquire_lease(server.id, replica, Utc::now() + LEASE)
                .await?;
        }
        let _guard = op.lock.lock().await;
        let result = self.tear_down(&user.name, server.id, None, "stopped").await;
        op.cancel.store(false, Ordering::SeqCst);
        self.inner
            .settings
            .current()
            .metrics
            .stop_duration(started.elapsed().as_secs_f64(), result.is_ok());
        result
    }

    /// Stop every server (for `POST /shutdown` with `servers: true`).
    pub async fn stop_all(&self) -> Result<(), HubError> {
        for (user_name, server) in self.inner.store.active_servers().await? {
            if let Some(user) = self.inner.store.user_by_name(&user_name).await? {
                self.stop(&user, &server.name).await?;
            }
        }
        Ok(())
    }

    /// Remove route, process, server token and OAuth client; mark stopped. Every
    /// step is attempted even if an earlier one failed, and the row always ends
    /// `stopped` if the database allows it.
    async fn tear_down(
        &self,
        user_name: &str,
        server_id: i64,
        failed_reason: Option<&str>,
        event: &str,
    ) -> Result<(), HubError> {
        let inner = &self.inner;
        let Some(user) = inner.store.user_by_name(user_name).await? else {
            return Ok(());
        };
        let servers = inner.store.servers_of(user.id).await?;
        let Some(server) = servers.into_iter().find(|s| s.id == server_id) else {
            return Ok(());
        };
        let route = inner.settings.current().route_spec(user_name, &server.name);
        let route_started = Instant::now();
        if inner.routes.remove(&route) {
            inner
                .settings
                .current()
                .metrics
                .proxy_delete(route_started.elapsed().as_secs_f64());
        }
        if let Some(state) = &server.spawn_state {
            if let Err(e) = inner.spawner.stop(state, STOP_GRACE).await {
                tracing::warn!(user = user_name, server = %server.name, error = %e, "stopping the server process");
            }
        }
        let mut first_error: Option<HubError> = None;
        let mut note = |result: Result<(), hubfleet_store::StoreError>| {
            if let Err(e) = result {
                tracing::error!(user = user_name, error = %e, "cleaning up a server");
                first_error.get_or_insert(e.into());
            }
        };
        match inner.store.tokens_of(user.id).await {
            Ok(tokens) => {
                for token in tokens
                    .into_iter()
                    .filter(|t| t.server_id == Some(server.id))
                {
                    note(inner.store.delete_token(token.id).await.map(|_| ()));
                }
            }
            Err(e) => note(Err(e)),
        }
        note(
            inner
                .store
                .delete_oauth_client(&urls::oauth_client_id(user_name, &server.name))
                .await,
        );
        let now = Utc::now();
        note(
            inner
                .store
                .update_server(
                    server.id,
                    &ServerUpdate {
                        phase: Some(Phase::Stopped),
                        phase_detail: Some(None),
                        target: Some(None),
                        spawn_state: Some(None),
                        started: Some(None),
                        last_activity: Some(Some(now)),
                        failed_reason: Some(failed_reason.map(str::to_string)),
                        ..Default::default()
                    },
                )
                .await,
        );
        note(inner.store.release_lease(server.id, &inner.replica).await);
        if let Err(e) = inner
            .store
            .notify_route_changed(user_name, &server.name)
            .await
        {
            tracing::warn!(error = %e, "telling the other replicas about a removed route");
        }
        let _ = inner.store.touch_user(user.id, now).await;
        let detail = match failed_reason {
            Some(reason) => serde_json::json!({ "reason": reason }),
            None => serde_json::json!({}),
        };
        let _ = inner
            .store
            .append_event(user_name, &server.name, event, &detail)
            .await;
        if failed_reason.is_none() {
            inner
                .progress
                .lock()
                .expect("progress lock")
                .remove(&key(user_name, &server.name));
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// After a hub (re)start, before serving: re-adopt servers whose process still
    /// runs and restore their routes; clean up those that died while the hub was
    /// down and starts that the restart interrupted.
    pub async fn restore(&self) -> Result<(usize, usize), HubError> {
        let started = Instant::now();
        let active = self.inner.store.active_servers().await?;
        let checks = active.into_iter().map(|(user_name, server)| {
            let this = self.clone();
            async move {
                let alive = server.phase == Phase::Ready && this.process_running(&server).await;
                if let (true, Some(target), Some(state)) = (alive, &server.target, &server.spawn_state) {
                    // What it holds (GPUs) is taken back before anything new starts.
                    this.inner
                        .spawner
                        .adopt(&ServerRef::new(&user_name, &server.name), state)
                        .await;
                    let route = this.inner.settings.current().route_spec(&user_name, &server.name);
                    this.inner.routes.add(&route, target, route_data(&user_name, &server.name));
                    let _ = this.inner.store.release_lease(server.id, "").await;
                    tracing::info!(user = %user_name, server = %server.name, "re-adopted a running server");
                    Some(true)
                } else {
                    // With replicas, a start or stop that another live replica drives is its
                    // own: leave it.
                    if this.replicated() && !this.take_over(&server).await {
                        return None;
                    }
                    let reason = (server.phase == Phase::Starting)
                        .then_some("the hub restarted while the server was starting; start it again");
                    tracing::info!(user = %user_name, server = %server.name, phase = server.phase.as_str(), "server stopped while the hub was down");
                    if let Err(e) = this.tear_down(&user_name, server.id, reason, "stopped").await {
                        tracing::error!(user = %user_name, error = %e, "cleaning up a stopped server");
                    }
                    // The previous hub process held the lease: it is gone.
                    let _ = this.inner.store.force_release_lease(server.id).await;
                    Some(false)
                }
            }
        });
        let results = futures_util::future::join_all(checks).await;
        let adopted = results.iter().filter(|r| **r == Some(true)).count();
        let cleaned = results.iter().filter(|r| **r == Some(false)).count();
        self.inner
            .settings
            .current()
            .metrics
            .init_spawners(started.elapsed().as_secs_f64());
        Ok((adopted, cleaned))
    }

    /// Take the lease of a server whose start or stop nobody alive drives (no lease, an
    /// expired one, or this replica's from before it restarted): true when this replica may
    /// now clean it up.
    async fn take_over(&self, server: &Server) -> bool {
        let store = &self.inner.store;
        let free = match store.server_lease(server.id).await {
            Ok(None) => true,
            Ok(Some((owner, until))) => owner == self.inner.replica || until < Utc::now(),
            Err(_) => false,
        };
        free && store
            .acquire_lease(server.id, &self.inner.replica, Utc::now() + LEASE)
            .await
            .unwrap_or(false)
    }

    /// After [`Lifecycle::restore`]: let the spawner remove what servers that are gone left
    /// behind (cgroups of a hub killed outright), keeping what running servers use.
    pub async fn clean_up_leftovers(&self) -> Result<Vec<String>, HubError> {
        let active = self.inner.store.active_servers().await?;
        if self.replicated() && active.iter().any(|(_, s)| s.phase != Phase::Ready) {
            // Another replica may be starting a server whose state is not saved yet.
            return Ok(Vec::new());
        }
        let running: Vec<hubfleet_spawn::SpawnState> = active
            .into_iter()
            .filter_map(|(_, server)| server.spawn_state)
            .collect();
        Ok(self.inner.spawner.clean_up_leftovers(&running).await)
    }

    /// A start or stop nobody drives any more: its lease (taken at its beginning, renewed
    /// while it runs) expired. Takes the lease when so.
    async fn stranded(&self, server: &Server) -> bool {
        let store = &self.inner.store;
        let expired = match store.server_lease(server.id).await {
            Ok(Some((_, until))) => until < Utc::now(),
            // A stop takes the lease before it marks the server; a start with it.
            Ok(None) => false,
            Err(_) => false,
        };
        expired
            && store
                .acquire_lease(server.id, &self.inner.replica, Utc::now() + LEASE)
                .await
                .unwrap_or(false)
    }

    async fn process_running(&self, server: &Server) -> bool {
        let Some(state) = &server.spawn_state else {
            return false;
        };
        let started = Instant::now();
        let running = matches!(
            self.inner.spawner.poll(state).await,
            Ok(PollStatus::Running)
        );
        self.inner
            .settings
            .current()
            .metrics
            .poll_duration(started.elapsed().as_secs_f64(), running);
        running
    }

    /// Find ready servers whose process has gone, and clean them up. Servers busy
    /// with a start or stop in this hub are left to that operation.
    pub async fn poll_all(&self) -> Result<(), HubError> {
        for (user_name, server) in self.inner.store.active_servers().await? {
            let op = self.op(&user_name, &server.name);
            let Ok(_guard) = op.lock.try_lock() else {
                continue;
            };
            if server.phase != Phase::Ready {
                // A start or stop whose replica died (its lease ran out): finish it here.
                if self.replicated() && self.stranded(&server).await {
                    tracing::warn!(user = %user_name, server = %server.name, phase = server.phase.as_str(), "the replica driving this server's start or stop is gone: cleaning up");
                    let reason = (server.phase == Phase::Starting)
                        .then_some("the hub replica starting it stopped; start it again");
                    self.tear_down(&user_name, server.id, reason, "stopped")
                        .await?;
                }
                continue;
            }
            // Re-read under the lock: the snapshot may be stale.
            let Some(user) = self.inner.store.user_by_name(&user_name).await? else {
                continue;
            };
            let Some(current) = self.inner.store.server(user.id, &server.name).await? else {
                continue;
            };
            if current.phase != Phase::Ready || current.spawn_state != server.spawn_state {
                continue;
            }
            if !self.process_running(&current).await {
                // Of several replicas that see it, one cleans up.
                if !self
                    .inner
                    .store
                    .acquire_lease(current.id, &self.inner.replica, Utc::now() + LEASE)
                    .await?
                {
                    continue;
                }
                let reason = match &current.spawn_state {
                    Some(state) => self.inner.spawner.exit_reason(state).await,
                    None => None,
                };
                tracing::warn!(user = %user_name, server = %server.name, reason = reason.as_deref().unwrap_or("exited"), "server exited on its own");
                self.tear_down(&user_name, current.id, reason.as_deref(), "exited")
                    .await?;
            } else {
                self.note_memory_kills(&user_name, &current).await?;
            }
        }
        Ok(())
    }

    /// A running server whose processes (a kernel) the kernel killed at its memory limit since
    /// the last look: a line in its log and the hub's, a ledger event, and `oom_kills` and
    /// `last_oom_kill` in its state for the admin page.
    async fn note_memory_kills(&self, user_name: &str, server: &Server) -> Result<(), HubError> {
        let Some(state) = &server.spawn_state else {
            return Ok(());
        };
        let Some(kills) = self.inner.spawner.memory_kills(state).await else {
            return Ok(());
        };
        let noted = state.get("oom_kills").and_then(|n| n.as_u64()).unwrap_or(0);
        // A server killed itself is the next poll's business (its exit reason).
        if kills.count <= noted || !self.process_running(server).await {
            return Ok(());
        }
        let now = Utc::now();
        let message = kills.message();
        let new = kills.count - noted;
        let at = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let log_line = match new {
            1 => format!("[hubfleet] {at} {message}"),
            n => format!("[hubfleet] {at} {message} ({n} processes)"),
        };
        self.inner.spawner.note_in_log(state, &log_line).await;
        tracing::warn!(user = %user_name, server = %server.name, count = kills.count, "{message}");
        let mut updated = state.clone();
        if let Some(map) = updated.as_object_mut() {
            map.insert("oom_kills".into(), kills.count.into());
            map.insert(
                "last_oom_kill".into(),
                serde_json::json!({ "at": at, "message": message }),
            );
        }
        self.inner
            .store
            .update_server(
                server.id,
                &ServerUpdate {
                    spawn_state: Some(Some(updated)),
                    ..Default::default()
                },
            )
            .await?;
        let _ = self
            .inner
            .store
            .append_event(
                user_name,
                &server.name,
                "oom_kill",
                &serde_json::json!({ "count": kills.count, "limit": kills.limit }),
            )
            .await;
        Ok(())
    }

    /// Make the proxy's routes match the database: add missing routes of ready
    /// servers, fix wrong targets, drop routes of servers that are not ready.
    pub async fn check_routes(&self) -> Result<(), HubError> {
        let started = Instant::now();
        let mut expected = std::collections::BTreeSet::new();
        for (user_name, server) in self.inner.store.active_servers().await? {
            if server.phase != Phase::Ready {
                // Pending starts add their route themselves.
                let route = self
                    .inner
                    .settings
                    .current()
                    .route_spec(&user_name, &server.name);
                expected.insert(hubfleet_proxy::normalize_route(&route).into_owned());
                continue;
            }
            let Some(target) = &server.target else {
                continue;
            };
            let route = self
                .inner
                .settings
                .current()
                .route_spec(&user_name, &server.name);
            expected.insert(hubfleet_proxy::normalize_route(&route).into_owned());
            if self
                .inner
                .routes
                .get(&route)
                .is_none_or(|r| &r.target != target)
            {
                self.inner
                    .routes
                    .add(&route, target, route_data(&user_name, &server.name));
            }
        }
        let poll_started = Instant::now();
        let routes = self.inner.routes.all();
        self.inner
            .settings
            .current()
            .metrics
            .proxy_poll(poll_started.elapsed().as_secs_f64());
        for (path, route) in routes {
            if route.data.contains_key("user") && !expected.contains(&path) {
                tracing::info!(route = %path, "removing a route with no ready server");
                self.inner.routes.remove(&path);
            }
        }
        self.inner
            .settings
            .current()
            .metrics
            .check_routes(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Copy the proxy's per-route activity into the servers and users tables.
    pub async fn import_proxy_activity(&self) -> Result<(), HubError> {
        let routes = self.inner.routes.all();
        for (user_name, server) in self.inner.store.active_servers().await? {
            let spec = self
                .inner
                .settings
                .current()
                .route_spec(&user_name, &server.name);
            let Some(route) = routes.get(hubfleet_proxy::normalize_route(&spec).as_ref()) else {
                continue;
            };
            let at = route.last_activity;
            if server.last_activity.is_none_or(|seen| seen < at) {
                self.inner.store.touch_server(server.id, at).await?;
                self.inner.store.touch_user(server.user_id, at).await?;
            }
        }
        Ok(())
    }
}

/// Why a start failed: what people see, and how the spawn histogram counts it.
#[derive(Debug)]
struct StartFailure {
    reason: String,
    kind: FailureKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureKind {
    /// Something went wrong (upstream's `error`, reason `""`): a timeout, the spawner failed.
    Error,
    /// The server's process exited before it answered (upstream's `error`, reason `exited`).
    Exited,
    /// The spawner refused the start on purpose (upstream's `failure` of a `SpawnException`).
    Refused,
}

impl From<String> for StartFailure {
    fn from(reason: String) -> Self {
        StartFailure {
            reason,
            kind: FailureKind::Error,
        }
    }
}

impl StartFailure {
    fn exited(reason: String) -> Self {
        StartFailure {
            reason,
            kind: FailureKind::Exited,
        }
    }

    fn refused(reason: String) -> Self {
        StartFailure {
            reason,
            kind: FailureKind::Refused,
        }
    }

    /// `status` and `reason` in `jupyterhub_server_spawn_duration_seconds`, as upstream 6.1.1.
    fn metric_labels(&self) -> (SpawnStatus, &'static str) {
        match self.kind {
            FailureKind::Error => (SpawnStatus::Error, spawn_reason::NONE),
            FailureKind::Exited => (SpawnStatus::Error, spawn_reason::EXITED),
            FailureKind::Refused => (SpawnStatus::Failure, spawn_reason::NONE),
        }
    }
}

/// The range `Retry-After` is drawn from when starts are throttled (upstream's
/// `spawn_throttle_retry_range`).
const SPAWN_RETRY_RANGE: std::ops::RangeInclusive<u64> = 30..=60;

/// A `Retry-After` in words, rounded as upstream's page says it: up to 90 s up to the next
/// 10 seconds, beyond to whole minutes.
pub fn human_retry(seconds: u64) -> String {
    if seconds <= 90 {
        format!("{}0 seconds", seconds.div_ceil(10))
    } else {
        format!("{} minutes", (seconds as f64 / 60.0).round())
    }
}

/// `<host>/<listen address>`: one name per replica, kept across its restarts.
fn replica_id(listen: std::net::SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}/{listen}")
}

fn key(user: &str, server: &str) -> ServerKey {
    (user.to_string(), server.to_string())
}

fn display_name(user: &str, server: &str) -> String {
    if server.is_empty() {
        format!("{user}'s server")
    } else {
        format!("{user}'s server `{server}`")
    }
}

/// KubeSpawner's labels and annotations of a user's server: the names as label values (made
/// valid as KubeSpawner 7 makes them), and as they are.
fn kubespawner_metadata(
    user: &str,
    server: &str,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    use hubfleet_kube::slug::{is_valid_label, safe_slug};
    let labels = BTreeMap::from([
        (
            "hub.jupyter.org/username".to_string(),
            safe_slug(user, is_valid_label, None),
        ),
        (
            "hub.jupyter.org/servername".to_string(),
            safe_slug(server, is_valid_label, None),
        ),
    ]);
    let mut annotations =
        BTreeMap::from([("hub.jupyter.org/username".to_string(), user.to_string())]);
    if !server.is_empty() {
        annotations.insert("hub.jupyter.org/servername".to_string(), server.to_string());
    }
    (labels, annotations)
}

fn route_data(user: &str, server: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut data = serde_json::Map::new();
    data.insert("user".into(), user.into());
    data.insert("server_name".into(), server.into());
    data.insert("jupyterhub".into(), true.into());
    data
}

/// Probe `GET <target><prefix>api` until any status below 500 (protocol §6.2.3),
/// failing early if the process exits.
async fn wait_up(
    spawner: &dyn Spawner,
    state: &hubfleet_spawn::SpawnState,
    target: &str,
    prefix: &str,
    deadline: Instant,
    cancel: &AtomicBool,
) -> Result<(), StartFailure> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("{}{}api", target.trim_end_matches('/'), prefix);
    // A local probe is cheap: poll often, so a ready server is noticed within 100 ms
    // (upstream backs off to 5 s, which adds seconds to many spawns).
    let mut wait = Duration::from_millis(20);
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Err("Spawn cancelled".to_string().into());
        }
        if let Ok(PollStatus::Exited(code)) = spawner.poll(state).await {
            if let Some(reason) = spawner.exit_reason(state).await {
                return Err(StartFailure::exited(format!(
                    "the server process was {reason} before it was ready"
                )));
            }
            return Err(StartFailure::exited(match code {
                Some(code) => {
                    format!("the server process exited with status {code} before it was ready")
                }
                None => "the server process exited before it was ready".to_string(),
            }));
        }
        if let Ok(response) = client.get(&url).send().await {
            if response.status().as_u16() < 500 {
                return Ok(());
            }
        }
        if Instant::now() + wait > deadline {
            return Err(format!(
                "the server did not answer at {url} within the start timeout (singleuser.startTimeout)"
            )
            .into());
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(100));
    }
}

/// The environment of protocol §5.1.
pub fn server_env(
    settings: &Settings,
    user: &User,
    server_name: &str,
    api_token: &str,
    access_scope: &str,
) -> BTreeMap<String, String> {
    let prefix = settings.server_prefix(&user.name, server_name);
    let api_url = settings.api_url();
    let access_scopes = serde_json::to_string(&[
        access_scope.to_string(),
        format!("access:servers!user={}", user.name),
    ])
    .unwrap_or_default();
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    set("JUPYTERHUB_API_TOKEN", api_token.to_string());
    set("JPY_API_TOKEN", api_token.to_string());
    set(
        "JUPYTERHUB_CLIENT_ID",
        urls::oauth_client_id(&user.name, server_name),
    );
    set(
        "JUPYTERHUB_ACTIVITY_URL",
        format!("{api_url}/users/{}/activity", urls::escape_path(&user.name)),
    );
    set("JUPYTERHUB_API_URL", api_url);
    set("JUPYTERHUB_BASE_URL", settings.base_url.clone());
    set("JUPYTERHUB_SERVICE_PREFIX", prefix.clone());
    set(
        "JUPYTERHUB_OAUTH_CALLBACK_URL",
        format!(
            "{}oauth_callback",
            settings.server_url(&user.name, server_name)
        ),
    );
    set("JUPYTERHUB_OAUTH_ACCESS_SCOPES", access_scopes.clone());
    set("JUPYTERHUB_OAUTH_SCOPES", access_scopes);
    set("JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES", "[]".into());
    set("JUPYTERHUB_USER", user.name.clone());
    set("JUPYTERHUB_SERVER_NAME", server_name.to_string());
    // With subdomains, the server sends browsers to the hub's host for login and links
    // (upstream's `hub.public_host`), and its own cookies may take the `__Host-` prefix.
    let hub_origin = settings.hub_origin();
    let public_url = match &settings.subdomain_host {
        Some(_) => settings.server_url(&user.name, server_name),
        None => String::new(),
    };
    let public_hub_url = match hub_origin.as_str() {
        "" => String::new(),
        origin => format!("{origin}/hub/"),
    };
    let host_prefix = settings
        .subdomain_host
        .as_ref()
        .is_some_and(|sub| sub.is_https());
    set("JUPYTERHUB_HOST", hub_origin);
    set("JUPYTERHUB_PUBLIC_URL", public_url);
    set("JUPYTERHUB_PUBLIC_HUB_URL", public_hub_url);
    set(
        "JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED",
        if host_prefix { "1" } else { "0" }.into(),
    );
    if let Some(default_url) = &settings.default_url {
        set("JUPYTERHUB_DEFAULT_URL", default_url.clone());
    }
    if let Some(gateway) = &settings.dask_gateway {
        for (k, v) in gateway.server_env(settings) {
            set(&k, v);
        }
    }
    // `hub.extraEnv`'s `LANG`, … stand for the hub's own (upstream's `env_keep`); its `PATH`
    // does not: a server's is its environment's and the system's.
    for (k, v) in &settings.kept_env {
        set(k, v.clone());
    }
    set(
        "PATH",
        crate::profiles::server_path(settings.python_env.as_deref()),
    );
    if let Some(venv) = &settings.python_env {
        set("VIRTUAL_ENV", venv.display().to_string());
    }
    for (k, v) in &settings.extra_env {
        set(k, v.clone());
    }
    env
}
