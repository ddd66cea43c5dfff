//! The hub's database: schema, migrations and typed queries.
//!
//! One code path serves SQLite (the default, one file in the data dir, WAL) and
//! PostgreSQL (for several hub replicas), through `sqlx::Any`. Queries use `$n`
//! placeholders in order of first use, which both engines accept.
//!
//! Secrets (API tokens, OAuth client secrets and codes, login sessions) never
//! reach the database in clear: see [`secret`].

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

pub mod auth_state;
pub mod backup;
mod changes;
pub mod cluster;
mod cookie_secret;
pub mod environment_builds;
pub mod environments;
pub mod groups;
pub mod roles;
pub mod secret;
pub mod shares;
pub mod signups;
pub mod user_view;
pub mod users;

pub use auth_state::{AuthStateError, CryptKeeper, CryptKeyError, ResealReport, CRYPT_KEY_ENV};
pub use environment_builds::{EnvironmentBuild, NewBuild};
pub use environments::{
    EnvChange, EnvKind, EnvironmentState, EnvironmentVersion, StoredEnvironment,
};
pub use groups::{Group, GroupError};
pub use roles::{RoleMembers, StoredRole};
pub use secret::new_token;
pub use shares::{Grantee, Share, ShareCode, ShareCodeQuery, ShareQuery, ShareWith, SharedServer};
pub use signups::Signup;
pub use user_view::UserView;
pub use users::{ServerState, UserQuery, UserSort, VisibleUsers};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL `{0}` is not supported: use sqlite://PATH or postgresql://…")]
    UnsupportedUrl(String),
    #[error("cannot connect to the database at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot bring the database schema up to date: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{what} `{name}` already exists")]
    Conflict { what: &'static str, name: String },
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error(
        "auth_state is stored encrypted and {} is not set: {}",
        auth_state::CRYPT_KEY_ENV,
        auth_state::KEY_HINT
    )]
    NoCryptKey,
    #[error("corrupt {what} in the database: {detail}")]
    Corrupt { what: &'static str, detail: String },
}

impl StoreError {
    /// The database cannot be reached or cannot write for now (a restart, a lost connection,
    /// a full disk), as opposed to a request it refuses: worth trying again later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Connect { .. } => true,
            StoreError::Sql(e) => is_unavailable(e),
            _ => false,
        }
    }
}

/// See [`StoreError::is_unavailable`].
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            match code.parse::<i64>() {
                // SQLite's (extended) result codes: BUSY, LOCKED, IOERR, FULL, CANTOPEN.
                Ok(n) => matches!(n & 0xff, 5 | 6 | 10 | 13 | 14),
                // PostgreSQL's SQLSTATE: connection exceptions, insufficient resources (a
                // full disk), shutting down or starting up.
                Err(_) => {
                    code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
                }
            }
        }
        _ => false,
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Moved by writes, so that caches can tell they are stale (see [`changes`]).
    counters: std::sync::Arc<changes::Counters>,
    /// Recently read user views, for the REST API's hottest request.
    user_views: changes::UserViewCache,
    /// The keys auth_state is encrypted with (`JUPYTERHUB_CRYPT_KEY`); see [`auth_state`].
    crypt: Option<std::sync::Arc<CryptKeeper>>,
    /// PostgreSQL's URL, for listening to the other replicas (see [`cluster`]).
    url: Option<DatabaseUrl>,
}

/// A database URL, which may hold a password: shown redacted.
#[derive(Clone)]
pub(crate) struct DatabaseUrl(std::sync::Arc<str>);

impl DatabaseUrl {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub admin: bool,
    pub created: DateTime<Utc>,
    pub last_activity: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub id: i64,
    pub name: String,
    pub admin: bool,
    /// Where the service listens (`http://127.0.0.1:10101`), or `""` when it has no URL.
    pub url: String,
    pub display: bool,
    pub info: serde_json::Value,
    pub oauth_client_id: Option<String>,
    /// Defined in the config file: not deletable through the API.
    pub from_config: bool,
}

/// Where a server is in its life. Stored as text; see the hub's lifecycle module
/// for the transitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Stopped,
    Starting,
    Ready,
    Stopping,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Stopped => "stopped",
            Phase::Starting => "starting",
            Phase::Ready => "ready",
            Phase::Stopping => "stopping",
        }
    }
}

impl FromStr for Phase {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "stopped" => Phase::Stopped,
            "starting" => Phase::Starting,
            "ready" => Phase::Ready,
            "stopping" => Phase::Stopping,
            other => {
                return Err(StoreError::Corrupt {
                    what: "server phase",
                    detail: other.to_string(),
                })
            }
        })
    }
}

/// Servers by phase, for the spawn limits and the `running_servers` gauge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerCounts {
    /// Phase `starting`.
    pub starting: i64,
    /// Any phase but `stopped`.
    pub active: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Server {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub display_name: String,
    pub phase: Phase,
    /// Human words for the current step ("waiting for HTTP"), shown while starting.
    pub phase_detail: Option<String>,
    /// Where the proxy sends requests (`http://127.0.0.1:47123`).
    pub target: Option<String>,
    /// The spawner's saved state (JSON).
    pub spawn_state: Option<serde_json::Value>,
    pub user_options: serde_json::Value,
    pub started: Option<DateTime<Utc>>,
    pub last_activity: Option<DateTime<Utc>>,
    /// Why the last start failed, if it did; cleared by the next start.
    pub failed_reason: Option<String>,
}

/// The fields of a server a lifecycle step writes at once.
#[derive(Clone, Debug, Default)]
pub struct ServerUpdate {
    pub phase: Option<Phase>,
    pub user_options: Option<serde_json::Value>,
    pub phase_detail: Option<Option<String>>,
    pub target: Option<Option<String>>,
    pub spawn_state: Option<Option<serde_json::Value>>,
    pub started: Option<Option<DateTime<Utc>>>,
    pub last_activity: Option<Option<DateTime<Utc>>>,
    pub failed_reason: Option<Option<String>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub id: i64,
    /// The owner: a user or a service.
    pub user_id: Option<i64>,
    pub service_id: Option<i64>,
    pub server_id: Option<i64>,
    pub client_id: String,
    pub session_id: Option<String>,
    pub scopes: Vec<String>,
    pub note: String,
    pub created: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_activity: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug)]
pub struct NewToken<'a> {
    pub user_id: Option<i64>,
    pub service_id: Option<i64>,
    pub server_id: Option<i64>,
    /// `jupyterhub` for ordinary API tokens, else the OAuth client's identifier.
    pub client_id: &'a str,
    pub session_id: Option<&'a str>,
    pub scopes: &'a [String],
    pub note: &'a str,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OAuthClient {
    pub identifier: String,
    pub redirect_uri: String,
    pub description: String,
    pub allowed_scopes: Vec<String>,
    pub server_id: Option<i64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OAuthCode {
    pub client_id: String,
    pub user_id: i64,
    pub session_id: Option<String>,
    pub scopes: Vec<String>,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Session {
    pub user: User,
    pub session_id: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServerEvent {
    pub at: DateTime<Utc>,
    pub user_name: String,
    pub server_name: String,
    pub event: String,
    pub detail: serde_json::Value,
}

pub fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub fn from_micros(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

fn opt_time(row: &AnyRow, col: &str) -> Result<Option<DateTime<Utc>>> {
    Ok(row.try_get::<Option<i64>, _>(col)?.map(from_micros))
}

pub(crate) fn json_col(row: &AnyRow, col: &str, what: &'static str) -> Result<serde_json::Value> {
    let text: String = row.try_get(col)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

pub(crate) fn string_list(row: &AnyRow, col: &str, what: &'static str) -> Result<Vec<String>> {
    serde_json::from_value(json_col(row, col, what)?).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

pub(crate) fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

pub(crate) const USER_COLS: &str = "u.id, u.name, u.admin, u.created, u.last_activity";

pub(crate) fn user_from_row(row: &AnyRow) -> Result<User> {
    Ok(User {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        admin: row.try_get::<i64, _>("admin")? != 0,
        created: from_micros(row.try_get("created")?),
        last_activity: opt_time(row, "last_activity")?,
    })
}

const SERVICE_COLS: &str = "id, name, admin, url, display, info, oauth_client_id, from_config";

fn service_from_row(row: &AnyRow) -> Result<Service> {
    Ok(Service {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        admin: row.try_get::<i64, _>("admin")? != 0,
        url: row.try_get("url")?,
        display: row.try_get::<i64, _>("display")? != 0,
        info: json_col(row, "info", "service info")?,
        oauth_client_id: row.try_get("oauth_client_id")?,
        from_config: row.try_get::<i64, _>("from_config")? != 0,
    })
}

pub(crate) const SERVER_COLS: &str =
    "id, user_id, name, display_name, phase, phase_detail, target, spawn_state, \
    user_options, started, last_activity, failed_reason";

pub(crate) fn server_from_row(row: &AnyRow) -> Result<Server> {
    let spawn_state: Option<String> = row.try_get("spawn_state")?;
    Ok(Server {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        display_name: row.try_get("display_name")?,
        phase: row.try_get::<String, _>("phase")?.parse()?,
        phase_detail: row.try_get("phase_detail")?,
        target: row.try_get("target")?,
        spawn_state: spawn_state
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|e| StoreError::Corrupt {
                what: "spawner state",
                detail: e.to_string(),
            })?,
        user_options: json_col(row, "user_options", "user options")?,
        started: opt_time(row, "started")?,
        last_activity: opt_time(row, "last_activity")?,
        failed_reason: row.try_get("failed_reason")?,
    })
}

const TOKEN_COLS: &str = "id, user_id, service_id, server_id, client_id, session_id, scopes, \
    note, created, expires_at, last_activity";

fn token_from_row(row: &AnyRow) -> Result<Token> {
    Ok(Token {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        service_id: row.try_get("service_id")?,
        server_id: row.try_get("server_id")?,
        client_id: row.try_get("client_id")?,
        session_id: row.try_get("session_id")?,
        scopes: string_list(row, "scopes", "token scopes")?,
        note: row.try_get("note")?,
        created: from_micros(row.try_get("created")?),
        expires_at: opt_time(row, "expires_at")?,
        last_activity: opt_time(row, "last_activity")?,
    })
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// How long a request may wait for one of SQLite's connections.
const SQLITE_ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

impl Store {
    /// Connect and bring the schema up to date. `url` is `sqlite://…` or `postgres(ql)://…`.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        // Retry briefly (a database that is still starting), then say what is wrong.
        let mut options = AnyPoolOptions::new().acquire_timeout(std::time::Duration::from_secs(10));
        if backend == Backend::Sqlite {
            // SQLite takes one writer at a time; a small pool avoids busy waits. A local file
            // has no server to wait for: a wait for a connection is a queue of work (a thousand
            // starts at once), which should be served in turn rather than fail after 10 s.
            options = options
                .acquire_timeout(SQLITE_ACQUIRE_TIMEOUT)
                .max_connections(4)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                });
            if url.contains(":memory:") {
                // Each connection to `:memory:` is a database of its own: keep exactly one.
                options = options
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None);
            }
        } else {
            options = options.max_connections(16);
        }
        let pool = options
            .connect(url)
            .await
            .map_err(|source| StoreError::Connect {
                url: redact(url),
                source,
            })?;
        if backend == Backend::Sqlite && !url.contains(":memory:") {
            // WAL lets readers proceed while a write is in flight; it persists in the file.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Store {
            pool,
            backend,
            counters: Default::default(),
            user_views: Default::default(),
            crypt: None,
            url: (backend == Backend::Postgres).then(|| DatabaseUrl(url.into())),
        })
    }

    /// Changes whenever access may have changed: any write to users, tokens, sessions,
    /// roles, groups, shares, services, OAuth clients or servers.
    pub fn generation(&self) -> u64 {
        self.counters.access()
    }

    /// Hold across a write that can change access (see [`changes`]).
    fn bump(&self) -> changes::Changing<'_> {
        changes::Changing::new(&self.counters, true)
    }

    /// Hold across a write to what a user view shows that cannot change access
    /// (activity, auth_state, a server's start).
    fn changing_data(&self) -> changes::Changing<'_> {
        changes::Changing::new(&self.counters, false)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- users ----

    pub async fn create_user(&self, name: &str, admin: bool) -> Result<User> {
        let _changing = self.bump();
        let now = Utc::now();
        let row = sqlx::query(
            "INSERT INTO users (name, admin, created) VALUES ($1, $2, $3) \
             RETURNING id, name, admin, created, last_activity",
        )
        .bind(name)
        .bind(admin as i64)
        .bind(to_micros(now))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict {
                    what: "user",
                    name: name.to_string(),
                }
            } else {
                e.into()
            }
        })?;
        user_from_row(&row)
    }

    pub async fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLS} FROM users u WHERE u.name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    // ---- services ----

    /// Create or update a service by name.
    pub async fn upsert_service(&self, service: &Service) -> Result<Service> {
        let _changing = self.bump();
        let existing = self.service_by_name(&service.name).await?;
        match existing {
            Some(old) => {
                sqlx::query(
                    "UPDATE services SET admin = $1, url = $2, display = $3, info = $4, \
                     oauth_client_id = $5, from_config = $6 WHERE id = $7",
                )
                .bind(service.admin as i64)
                .bind(&service.url)
                .bind(service.display as i64)
                .bind(json_text(&service.info))
                .bind(&service.oauth_client_id)
                .bind(service.from_config as i64)
                .bind(old.id)
                .execute(&self.pool)
                .await?;
            }
            None => {
                sqlx::query(
                    "INSERT INTO services (name, admin, url, display, info, oauth_client_id, \
                     from_config) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&service.name)
                .bind(service.admin as i64)
                .bind(&service.url)
                .bind(service.display as i64)
                .bind(json_text(&service.info))
                .bind(&service.oauth_client_id)
                .bind(service.from_config as i64)
                .execute(&self.pool)
                .await?;
            }
        }
        self.service_by_name(&service.name)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                what: "service",
                detail: format!("service `{}` vanished after it was written", service.name),
            })
    }

    pub async fn service_by_name(&self, name: &str) -> Result<Option<Service>> {
        let row = sqlx::query(&format!(
            "SELECT {SERVICE_COLS} FROM services WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(service_from_row).transpose()
    }

    pub async fn service_by_id(&self, id: i64) -> Result<Option<Service>> {
        let row = sqlx::query(&format!(
            "SELECT {SERVICE_COLS} FROM services WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(service_from_row).transpose()
    }

    pub async fn list_services(&self) -> Result<Vec<Service>> {
        let rows = sqlx::query(&format!(
            "SELECT {SERVICE_COLS} FROM services ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(service_from_row).collect()
    }

    pub async fn delete_service(&self, id: i64) -> Result<bool> {
        let _changing = self.bump();
        let done = sqlx::query("DELETE FROM services WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<User>> {
        let row = sqlx::query(&format!("SELECT {USER_COLS} FROM users u WHERE u.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn list_users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query(&format!("SELECT {USER_COLS} FROM users u ORDER BY u.id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    /// Users active since `since` (the `jupyterhub_active_users` gauge).
    pub async fn count_active_users(&self, since: DateTime<Utc>) -> Result<i64> {
        Ok(
            sqlx::query("SELECT COUNT(*) AS n FROM users WHERE last_activity >= $1")
                .bind(to_micros(since))
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?,
        )
    }

    pub async fn count_users(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    pub async fn set_admin(&self, user_id: i64, admin: bool) -> Result<()> {
        let _changing = self.bump();
        sqlx::query("UPDATE users SET admin = $1 WHERE id = $2")
            .bind(admin as i64)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_user(&self, user_id: i64) -> Result<bool> {
        let _changing = self.bump();
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Delete a user (with their servers' rows, tokens and sessions) only if none of their
    /// servers is running, starting or stopping; whether it was deleted. One statement, so a
    /// server started meanwhile (by a running hub) keeps its user.
    pub async fn delete_user_if_stopped(&self, user_id: i64) -> Result<bool> {
        let _changing = self.bump();
        let done = sqlx::query(
            "DELETE FROM users WHERE id = $1 AND NOT EXISTS \
             (SELECT 1 FROM servers WHERE user_id = $1 AND phase <> $2)",
        )
        .bind(user_id)
        .bind(Phase::Stopped.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Move the user's last activity forward (never backward).
    pub async fn touch_user(&self, user_id: i64, at: DateTime<Utc>) -> Result<()> {
        let _changing = self.changing_data();
        sqlx::query(
            "UPDATE users SET last_activity = $1 \
             WHERE id = $2 AND (last_activity IS NULL OR last_activity < $1)",
        )
        .bind(to_micros(at))
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Store an already-hashed password (argon2 PHC string); `None` removes it.
    pub async fn set_password_hash(&self, user_id: i64, hash: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn password_hash(&self, user_id: i64) -> Result<Option<String>> {
        let row = sqlx::query("SELECT password_hash FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => row.try_get("password_hash")?,
            None => None,
        })
    }

    // ---- login sessions ----

    /// Record a login. `secret` is the cookie value; only its hash is stored.
    pub async fn create_session(
        &self,
        user_id: i64,
        session_id: &str,
        secret: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (user_id, session_id, token_hash, created, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(user_id)
        .bind(session_id)
        .bind(secret::lookup_hash(secret))
        .bind(to_micros(Utc::now()))
        .bind(to_micros(expires_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A transaction that writes. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`):
    /// a deferred one that reads first and writes after another connection has written fails
    /// with "database is locked" at once, whatever the busy timeout; this one waits its turn.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// The hub's secret named `name` (32 random bytes), made by whichever replica asks first
    /// and the same for all of them afterwards.
    pub async fn hub_secret(&self, name: &str) -> Result<Vec<u8>> {
        let mut fresh = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut fresh);
        sqlx::query(
            "INSERT INTO hub_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(hex::encode(fresh))
        .execute(&self.pool)
        .await?;
        let value: String = sqlx::query_scalar("SELECT value FROM hub_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        hex::decode(&value).map_err(|e| StoreError::Corrupt {
            what: "hub secret",
            detail: format!("{name}: {e}"),
        })
    }

    /// The live session whose cookie value is `secret`.
    pub async fn session(&self, secret: &str) -> Result<Option<Session>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLS}, s.session_id, s.expires_at AS session_expires \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2"
        ))
        .bind(secret::lookup_hash(secret))
        .bind(to_micros(Utc::now()))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(Session {
                user: user_from_row(&row)?,
                session_id: row.try_get("session_id")?,
                expires_at: from_micros(row.try_get("session_expires")?),
            })
        })
        .transpose()
    }

    /// Log out: the session and every token issued under its session id.
    pub async fn end_session(&self, secret: &str) -> Result<()> {
        let _changing = self.bump();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT user_id, session_id FROM sessions WHERE token_hash = $1")
            .bind(secret::lookup_hash(secret))
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = row {
            let user_id: i64 = row.try_get("user_id")?;
            let session_id: String = row.try_get("session_id")?;
            sqlx::query("DELETE FROM api_tokens WHERE user_id = $1 AND session_id = $2")
                .bind(user_id)
                .bind(&session_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                .bind(secret::lookup_hash(secret))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- servers ----

    pub async fn server(&self, user_id: i64, name: &str) -> Result<Option<Server>> {
        let row = sqlx::query(&format!(
            "SELECT {SERVER_COLS} FROM servers WHERE user_id = $1 AND name = $2"
        ))
        .bind(user_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(server_from_row).transpose()
    }

    pub async fn server_by_id(&self, server_id: i64) -> Result<Option<Server>> {
        let row = sqlx::query(&format!("SELECT {SERVER_COLS} FROM servers WHERE id = $1"))
            .bind(server_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(server_from_row).transpose()
    }

    /// The server row, created in phase `stopped` if the user has none by that name.
    pub async fn ensure_server(&self, user_id: i64, name: &str) -> Result<Server> {
        if let Some(server) = self.server(user_id, name).await? {
            return Ok(server);
        }
        let changing = self.changing_data();
        let inserted = sqlx::query(
            "INSERT INTO servers (user_id, name, phase, user_options) VALUES ($1, $2, $3, '{}')",
        )
        .bind(user_id)
        .bind(name)
        .bind(Phase::Stopped.as_str())
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => {}
            // Another replica or request created it first: use theirs.
            Err(e) if is_unique_violation(&e) => {}
            Err(e) => return Err(e.into()),
        }
        drop(changing);
        self.server(user_id, name)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                what: "server",
                detail: format!("server `{name}` vanished right after it was created"),
            })
    }

    /// Servers of a user (all phases), default server first.
    pub async fn servers_of(&self, user_id: i64) -> Result<Vec<Server>> {
        let rows = sqlx::query(&format!(
            "SELECT {SERVER_COLS} FROM servers WHERE user_id = $1 ORDER BY name"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(server_from_row).collect()
    }

    /// Every server not in phase `stopped`, with its owner's name.
    pub async fn active_servers(&self) -> Result<Vec<(String, Server)>> {
        let rows = sqlx::query(
            "SELECT s.id, s.user_id, s.name, s.display_name, s.phase, s.phase_detail, s.target, s.spawn_state, \
             s.user_options, s.started, s.last_activity, s.failed_reason, u.name AS user_name \
             FROM servers s JOIN users u ON u.id = s.user_id \
             WHERE s.phase IN ('starting', 'ready', 'stopping') ORDER BY s.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("user_name")?, server_from_row(row)?)))
            .collect()
    }

    /// How many servers are starting, and how many are not stopped (upstream's "active":
    /// from the request to start until fully stopped), from the `servers_phase` index.
    pub async fn server_counts(&self) -> Result<ServerCounts> {
        let rows = sqlx::query(
            "SELECT phase, COUNT(*) AS n FROM servers \
             WHERE phase IN ('starting', 'ready', 'stopping') GROUP BY phase",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut counts = ServerCounts::default();
        for row in &rows {
            let n: i64 = row.try_get("n")?;
            let phase: String = row.try_get("phase")?;
            counts.active += n;
            if phase == Phase::Starting.as_str() {
                counts.starting += n;
            }
        }
        Ok(counts)
    }

    /// Write the given fields of a server; the others stay as they are.
    pub async fn update_server(&self, server_id: i64, update: &ServerUpdate) -> Result<()> {
        let _changing = self.bump();
        let mut sets = Vec::new();
        let mut n = 1;
        let mut next = |col: &str| {
            sets.push(format!("{col} = ${n}"));
            n += 1;
        };
        if update.phase.is_some() {
            next("phase");
        }
        if update.phase_detail.is_some() {
            next("phase_detail");
        }
        if update.user_options.is_some() {
            next("user_options");
        }
        if update.target.is_some() {
            next("target");
        }
        if update.spawn_state.is_some() {
            next("spawn_state");
        }
        if update.started.is_some() {
            next("started");
        }
        if update.last_activity.is_some() {
            next("last_activity");
        }
        if update.failed_reason.is_some() {
            next("failed_reason");
        }
        if sets.is_empty() {
            return Ok(());
        }
        let sql = format!("UPDATE servers SET {} WHERE id = ${n}", sets.join(", "));
        let mut query = sqlx::query(&sql);
        if let Some(phase) = update.phase {
            query = query.bind(phase.as_str());
        }
        if let Some(detail) = &update.phase_detail {
            query = query.bind(detail.clone());
        }
        if let Some(options) = &update.user_options {
            query = query.bind(json_text(options));
        }
        if let Some(target) = &update.target {
            query = query.bind(target.clone());
        }
        if let Some(state) = &update.spawn_state {
            query = query.bind(state.as_ref().map(json_text));
        }
        if let Some(started) = update.started {
            query = query.bind(started.map(to_micros));
        }
        if let Some(activity) = update.last_activity {
            query = query.bind(activity.map(to_micros));
        }
        if let Some(reason) = &update.failed_reason {
            query = query.bind(reason.clone());
        }
        query.bind(server_id).execute(&self.pool).await?;
        Ok(())
    }

    /// Move a server's last activity forward (never backward).
    pub async fn touch_server(&self, server_id: i64, at: DateTime<Utc>) -> Result<()> {
        let _changing = self.changing_data();
        sqlx::query(
            "UPDATE servers SET last_activity = $1 \
             WHERE id = $2 AND (last_activity IS NULL OR last_activity < $1)",
        )
        .bind(to_micros(at))
        .bind(server_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Move a stopped server to `starting`, taking its lease, in one statement: of two
    /// concurrent starts (in one hub or two replicas) exactly one gets `true`.
    pub async fn begin_start(
        &self,
        server_id: i64,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        let now = Utc::now();
        let _changing = self.changing_data();
        let done = sqlx::query(
            "UPDATE servers SET phase = $1, phase_detail = 'requested', failed_reason = NULL, \
             started = $2, last_activity = $2, lease_owner = $3, lease_until = $4 \
             WHERE id = $5 AND phase = $6 AND (lease_owner IS NULL OR lease_until < $2)",
        )
        .bind(Phase::Starting.as_str())
        .bind(to_micros(now))
        .bind(owner)
        .bind(to_micros(until))
        .bind(server_id)
        .bind(Phase::Stopped.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Take (or renew) the right to drive this server's start or stop until `until`.
    /// Returns false when another hub replica holds a live lease.
    pub async fn acquire_lease(
        &self,
        server_id: i64,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE servers SET lease_owner = $1, lease_until = $2 WHERE id = $3 \
             AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until < $4)",
        )
        .bind(owner)
        .bind(to_micros(until))
        .bind(server_id)
        .bind(to_micros(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Who holds the lease of a server, and until when (maybe in the past).
    pub async fn server_lease(&self, server_id: i64) -> Result<Option<(String, DateTime<Utc>)>> {
        let row = sqlx::query("SELECT lease_owner, lease_until FROM servers WHERE id = $1")
            .bind(server_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let owner: Option<String> = row.try_get("lease_owner")?;
        let until: Option<i64> = row.try_get("lease_until")?;
        Ok(owner.map(|owner| (owner, from_micros(until.unwrap_or(0)))))
    }

    /// Move a starting server to `ready`, unless it is no longer starting (a stop came, maybe
    /// through another replica): false then.
    pub async fn finish_start(&self, server_id: i64) -> Result<bool> {
        let _changing = self.bump();
        let done = sqlx::query(
            "UPDATE servers SET phase = $1, phase_detail = NULL WHERE id = $2 AND phase = $3",
        )
        .bind(Phase::Ready.as_str())
        .bind(server_id)
        .bind(Phase::Starting.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Drop any lease on the server (its holder is known to be gone).
    pub async fn force_release_lease(&self, server_id: i64) -> Result<()> {
        sqlx::query("UPDATE servers SET lease_owner = NULL, lease_until = NULL WHERE id = $1")
            .bind(server_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn release_lease(&self, server_id: i64, owner: &str) -> Result<()> {
        sqlx::query(
            "UPDATE servers SET lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_owner = $2",
        )
        .bind(server_id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // ---- API tokens ----

    /// Store a token; only a salted hash of `secret` is kept.
    pub async fn insert_token(&self, secret: &str, new: &NewToken<'_>) -> Result<Token> {
        let _changing = self.bump();
        let row = sqlx::query(&format!(
            "INSERT INTO api_tokens (user_id, service_id, server_id, client_id, session_id, prefix, \
             hashed, scopes, note, created, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {TOKEN_COLS}"
        ))
        .bind(new.user_id)
        .bind(new.service_id)
        .bind(new.server_id)
        .bind(new.client_id)
        .bind(new.session_id)
        .bind(secret::prefix(secret))
        .bind(secret::hash(secret))
        .bind(json_text(new.scopes))
        .bind(new.note)
        .bind(to_micros(Utc::now()))
        .bind(new.expires_at.map(to_micros))
        .fetch_one(&self.pool)
        .await?;
        token_from_row(&row)
    }

    /// The unexpired token whose secret is `secret`, compared in constant time.
    pub async fn find_token(&self, secret: &str) -> Result<Option<Token>> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLS}, hashed FROM api_tokens \
             WHERE prefix = $1 AND (expires_at IS NULL OR expires_at > $2)"
        ))
        .bind(secret::prefix(secret))
        .bind(to_micros(Utc::now()))
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let hashed: String = row.try_get("hashed")?;
            if secret::verify(secret, &hashed) {
                return Ok(Some(token_from_row(&row)?));
            }
        }
        Ok(None)
    }

    pub async fn tokens_of(&self, user_id: i64) -> Result<Vec<Token>> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM api_tokens WHERE user_id = $1 ORDER BY id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    pub async fn touch_token(&self, token_id: i64, at: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE api_tokens SET last_activity = $1 WHERE id = $2")
            .bind(to_micros(at))
            .bind(token_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn token_by_id(&self, token_id: i64) -> Result<Option<Token>> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM api_tokens WHERE id = $1"
        ))
        .bind(token_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// Delete every token of a user issued by one OAuth client (revoking an OAuth token
    /// revokes them all, as upstream).
    pub async fn delete_client_tokens_of(&self, user_id: i64, client_id: &str) -> Result<()> {
        let _changing = self.bump();
        sqlx::query("DELETE FROM api_tokens WHERE user_id = $1 AND client_id = $2")
            .bind(user_id)
            .bind(client_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_token(&self, token_id: i64) -> Result<bool> {
        let _changing = self.bump();
        let done = sqlx::query("DELETE FROM api_tokens WHERE id = $1")
            .bind(token_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    // ---- OAuth ----

    /// Register or replace an OAuth client. Its tokens and codes from a previous
    /// registration stay valid only if the secret is unchanged; callers replace
    /// clients at each spawn, when the old server's tokens must die anyway.
    pub async fn upsert_oauth_client(&self, client: &OAuthClient, secret: &str) -> Result<()> {
        let _changing = self.bump();
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM api_tokens WHERE client_id = $1")
            .bind(&client.identifier)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM oauth_clients WHERE identifier = $1")
            .bind(&client.identifier)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO oauth_clients (identifier, secret_hash, redirect_uri, description, \
             allowed_scopes, server_id) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&client.identifier)
        .bind(secret::hash(secret))
        .bind(&client.redirect_uri)
        .bind(&client.description)
        .bind(json_text(&client.allowed_scopes))
        .bind(client.server_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn oauth_client(&self, identifier: &str) -> Result<Option<OAuthClient>> {
        let row = sqlx::query(
            "SELECT identifier, redirect_uri, description, allowed_scopes, server_id \
             FROM oauth_clients WHERE identifier = $1",
        )
        .bind(identifier)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(OAuthClient {
                identifier: row.try_get("identifier")?,
                redirect_uri: row.try_get("redirect_uri")?,
                description: row.try_get("description")?,
                allowed_scopes: string_list(&row, "allowed_scopes", "client scopes")?,
                server_id: row.try_get("server_id")?,
            })
        })
        .transpose()
    }

    /// Whether `secret` is the client's secret (constant-time comparison).
    pub async fn verify_client_secret(&self, identifier: &str, secret: &str) -> Result<bool> {
        let row = sqlx::query("SELECT secret_hash FROM oauth_clients WHERE identifier = $1")
            .bind(identifier)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => secret::verify(secret, &row.try_get::<String, _>("secret_hash")?),
            None => false,
        })
    }

    /// Remove a client with its codes and every token it issued.
    pub async fn delete_oauth_client(&self, identifier: &str) -> Result<()> {
        let _changing = self.bump();
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM api_tokens WHERE client_id = $1")
            .bind(identifier)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM oauth_clients WHERE identifier = $1")
            .bind(identifier)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Remove OAuth clients of servers that are not running (left by a crash between
    /// registering a client and cleaning up), with their tokens. Service clients stay.
    pub async fn delete_stale_oauth_clients(&self) -> Result<u64> {
        let _changing = self.bump();
        let mut tx = self.begin_write().await?;
        let stale = "SELECT identifier FROM oauth_clients WHERE identifier NOT LIKE 'service-%' \
             AND (server_id IS NULL OR server_id IN (SELECT id FROM servers WHERE phase = $1))";
        sqlx::query(&format!(
            "DELETE FROM api_tokens WHERE client_id IN ({stale})"
        ))
        .bind(Phase::Stopped.as_str())
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(&format!(
            "DELETE FROM oauth_clients WHERE identifier IN ({stale})"
        ))
        .bind(Phase::Stopped.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    pub async fn insert_oauth_code(&self, code: &str, details: &OAuthCode) -> Result<()> {
        sqlx::query(
            "INSERT INTO oauth_codes (code_hash, client_id, user_id, session_id, scopes, \
             redirect_uri, code_challenge, code_challenge_method, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(secret::lookup_hash(code))
        .bind(&details.client_id)
        .bind(details.user_id)
        .bind(&details.session_id)
        .bind(json_text(&details.scopes))
        .bind(&details.redirect_uri)
        .bind(&details.code_challenge)
        .bind(&details.code_challenge_method)
        .bind(to_micros(details.expires_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Remove and return an unexpired code of `client_id`: a code works once, even
    /// when two exchanges race (one `DELETE … RETURNING`).
    pub async fn take_oauth_code(&self, code: &str, client_id: &str) -> Result<Option<OAuthCode>> {
        let row = sqlx::query(
            "DELETE FROM oauth_codes WHERE code_hash = $1 AND client_id = $2 \
             RETURNING client_id, user_id, session_id, scopes, redirect_uri, code_challenge, \
             code_challenge_method, expires_at",
        )
        .bind(secret::lookup_hash(code))
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let code = OAuthCode {
            client_id: row.try_get("client_id")?,
            user_id: row.try_get("user_id")?,
            session_id: row.try_get("session_id")?,
            scopes: string_list(&row, "scopes", "code scopes")?,
            redirect_uri: row.try_get("redirect_uri")?,
            code_challenge: row.try_get("code_challenge")?,
            code_challenge_method: row.try_get("code_challenge_method")?,
            expires_at: from_micros(row.try_get("expires_at")?),
        };
        Ok((code.expires_at > Utc::now()).then_some(code))
    }

    // ---- usage ledger ----

    pub async fn append_event(
        &self,
        user_name: &str,
        server_name: &str,
        event: &str,
        detail: &serde_json::Value,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO server_events (at, user_name, server_name, event, detail) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(to_micros(Utc::now()))
        .bind(user_name)
        .bind(server_name)
        .bind(event)
        .bind(json_text(detail))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn events(&self, user_name: &str) -> Result<Vec<ServerEvent>> {
        let rows = sqlx::query(
            "SELECT at, user_name, server_name, event, detail FROM server_events \
             WHERE user_name = $1 ORDER BY id",
        )
        .bind(user_name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ServerEvent {
                    at: from_micros(row.try_get("at")?),
                    user_name: row.try_get("user_name")?,
                    server_name: row.try_get("server_name")?,
                    event: row.try_get("event")?,
                    detail: json_col(row, "detail", "event detail")?,
                })
            })
            .collect()
    }

    /// Remove expired tokens, codes and sessions.
    pub async fn purge_expired(&self) -> Result<u64> {
        let _changing = self.bump();
        let now = to_micros(Utc::now());
        let mut removed = 0;
        for sql in [
            "DELETE FROM api_tokens WHERE expires_at IS NOT NULL AND expires_at <= $1",
            "DELETE FROM oauth_codes WHERE expires_at <= $1",
            "DELETE FROM sessions WHERE expires_at <= $1",
        ] {
            removed += sqlx::query(sql)
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(removed)
    }
}

/// The URL with any password replaced, for error messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgresql://hub:s3cret@db:5432/hub"),
            "postgresql://hub:***@db:5432/hub"
        );
        assert_eq!(redact("sqlite:///tmp/x.sqlite"), "sqlite:///tmp/x.sqlite");
    }

    #[test]
    fn phases_round_trip() {
        for phase in [
            Phase::Stopped,
            Phase::Starting,
            Phase::Ready,
            Phase::Stopping,
        ] {
            assert_eq!(phase.as_str().parse::<Phase>().unwrap(), phase);
        }
        assert!("running".parse::<Phase>().is_err());
    }
}
