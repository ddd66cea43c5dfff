//! What hub replicas on one PostgreSQL database tell each other: route changes
//! (`LISTEN`/`NOTIFY` on [`ROUTES_CHANNEL`]), and leases of work that one replica does at
//! a time (the culler and managed services: [`LEADER`]).
//!
//! On SQLite (one hub) notifications go nowhere and there is nothing to listen to; leases
//! work the same on both.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgListener;

use crate::{from_micros, redact, to_micros, Backend, Result, Store, StoreError};

/// The channel on which a replica says that a server's route changed (it became ready, or
/// stopped). The payload is `<user>/<server>`, for the logs: listeners resynchronise from
/// the database.
pub const ROUTES_CHANNEL: &str = "hubfleet_routes";

/// The lease of the replica that runs the idle culler and managed services.
pub const LEADER: &str = "leader";

/// The channel on which a replica asks every replica to reload its config files (payload: a
/// JSON [`ReloadRequest`]).
pub const RELOAD_CHANNEL: &str = "hubfleet_reload";

/// The channel on which a replica says how its reload went (payload: JSON, the hub's).
pub const RELOADED_CHANNEL: &str = "hubfleet_reloaded";

/// Leases named `replica:<name>` say that a replica is running (see [`Store::say_alive`]).
const PRESENCE_PREFIX: &str = "replica:";

/// PostgreSQL's limit on a notification's payload (bytes, less one).
pub const NOTIFY_PAYLOAD_LIMIT: usize = 7999;

/// A request to reload, sent to every replica.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReloadRequest {
    /// Names this request in the answers.
    pub request: String,
    /// The replica that was asked (it has reloaded already).
    pub from: String,
}

/// A notification, or a gap in them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A replica changed a route (payload: `<user>/<server>`).
    Routes(String),
    /// A replica asks every replica to reload its config files.
    Reload(ReloadRequest),
    /// A replica reloaded for a [`ReloadRequest`] (its answer, JSON).
    Reloaded(String),
    /// The connection to the database was lost and made again: notifications sent meanwhile
    /// are gone, so everything should be read again.
    Reconnected,
}

/// Notifications from the other replicas (PostgreSQL `LISTEN`).
pub struct ChangeListener {
    listener: PgListener,
}

impl std::fmt::Debug for ChangeListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChangeListener")
    }
}

impl ChangeListener {
    /// The next change. After an error (the database is unreachable) call again: the
    /// listener connects again, and says [`Change::Reconnected`] when it has.
    pub async fn next(&mut self) -> Result<Change> {
        match self.listener.try_recv().await? {
            Some(notification) if notification.channel() == ROUTES_CHANNEL => {
                Ok(Change::Routes(notification.payload().to_string()))
            }
            Some(notification) if notification.channel() == RELOAD_CHANNEL => {
                match serde_json::from_str(notification.payload()) {
                    Ok(request) => Ok(Change::Reload(request)),
                    Err(e) => Err(StoreError::Corrupt {
                        what: "reload request",
                        detail: e.to_string(),
                    }),
                }
            }
            Some(notification) if notification.channel() == RELOADED_CHANNEL => {
                Ok(Change::Reloaded(notification.payload().to_string()))
            }
            Some(notification) => Ok(Change::Routes(notification.payload().to_string())),
            // The connection closed; the next call connects again (and listens again).
            None => Ok(Change::Reconnected),
        }
    }
}

impl Store {
    /// Tell the other replicas that the route of `user`'s server `server` changed. Nothing on
    /// SQLite.
    pub async fn notify_route_changed(&self, user: &str, server: &str) -> Result<()> {
        self.notify_replicas(ROUTES_CHANNEL, &format!("{user}/{server}"))
            .await
    }

    /// Send `payload` on `channel` to every replica (this one too). Nothing on SQLite.
    pub async fn notify_replicas(&self, channel: &str, payload: &str) -> Result<()> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        // In FROM: the Any driver cannot decode the `void` that `SELECT pg_notify(…)` returns.
        sqlx::query("SELECT 1 AS sent FROM pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Say that replica `replica` runs, until `until` (renew it before then).
    pub async fn say_alive(&self, replica: &str, until: DateTime<Utc>) -> Result<()> {
        self.hold_lease(&format!("{PRESENCE_PREFIX}{replica}"), replica, until)
            .await?;
        Ok(())
    }

    /// Replica `replica` stops.
    pub async fn say_gone(&self, replica: &str) -> Result<()> {
        self.release_hub_lease(&format!("{PRESENCE_PREFIX}{replica}"), replica)
            .await
    }

    /// The replicas that said they run, and whose word has not run out.
    pub async fn live_replicas(&self) -> Result<Vec<String>> {
        use sqlx::Row;
        let rows = sqlx::query(
            "SELECT owner FROM hub_leases WHERE name LIKE $1 AND until > $2 ORDER BY owner",
        )
        .bind(format!("{PRESENCE_PREFIX}%"))
        .bind(to_micros(Utc::now()))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get("owner").map_err(Into::into))
            .collect()
    }

    /// Listen to the other replicas' route changes: `None` on SQLite, where there are none.
    pub async fn listen_changes(&self) -> Result<Option<ChangeListener>> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let mut listener =
            PgListener::connect(url.as_str())
                .await
                .map_err(|source| StoreError::Connect {
                    url: redact(url.as_str()),
                    source,
                })?;
        listener
            .listen_all([ROUTES_CHANNEL, RELOAD_CHANNEL, RELOADED_CHANNEL])
            .await?;
        Ok(Some(ChangeListener { listener }))
    }

    /// Take or renew the lease `name` for `owner` until `until`: true when `owner` holds it
    /// now (it was free, expired, or already `owner`'s).
    pub async fn hold_lease(&self, name: &str, owner: &str, until: DateTime<Utc>) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO hub_leases (name, owner, until) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until \
             WHERE hub_leases.owner = excluded.owner OR hub_leases.until < $4",
        )
        .bind(name)
        .bind(owner)
        .bind(to_micros(until))
        .bind(to_micros(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Give the lease `name` up, if `owner` holds it.
    pub async fn release_hub_lease(&self, name: &str, owner: &str) -> Result<()> {
        sqlx::query("DELETE FROM hub_leases WHERE name = $1 AND owner = $2")
            .bind(name)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Who holds the lease `name`, and until when (maybe in the past).
    pub async fn lease_holder(&self, name: &str) -> Result<Option<(String, DateTime<Utc>)>> {
        use sqlx::Row;
        let row = sqlx::query("SELECT owner, until FROM hub_leases WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| Ok((row.try_get("owner")?, from_micros(row.try_get("until")?))))
            .transpose()
    }
}
