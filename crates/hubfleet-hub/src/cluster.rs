//! Working beside other replicas on one PostgreSQL database.
//!
//! - Routes: a replica that adds or removes a server's route says so with `NOTIFY`; every
//!   replica listens and makes its proxy's routes match the database again (the periodic
//!   check every 10 s is the backstop for notifications lost while a connection was down).
//! - Leadership: the idle culler and managed services run on one replica at a time, the
//!   holder of the `leader` lease, which it renews every [`LEADER_RENEWAL`]; when it dies, the
//!   lease runs out and another replica takes it.
//!
//! - Reloads: `POST /hub/api/config/reload` on one replica asks every replica to reload its own
//!   files (`NOTIFY`); each answers how it went, and the first one's answer lists them. Each
//!   replica says it runs (a `replica:<name>` lease renewed every [`PRESENCE_RENEWAL`]), so the
//!   first one knows whose answers to wait for.
//!
//! On SQLite (one hub) there is nobody to tell, and the hub always leads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use hubfleet_store::cluster::{Change, LEADER};
use hubfleet_store::{Backend, Store};
use tokio::sync::watch;

use crate::AppState;

/// How long the leader lease lasts without renewal: the most a culler or service is without a
/// replica to run it after its replica dies (plus one renewal).
pub const LEADER_LEASE: Duration = Duration::from_secs(15);
pub const LEADER_RENEWAL: Duration = Duration::from_secs(5);

/// How often a replica says it runs, and how long that holds.
pub const PRESENCE_RENEWAL: Duration = Duration::from_secs(10);
pub const PRESENCE: Duration = Duration::from_secs(30);

/// Say, now and every [`PRESENCE_RENEWAL`], that this replica runs (and listens).
fn say_alive(state: &AppState) {
    let (store, replica) = (state.store.clone(), state.lifecycle.replica().to_string());
    tokio::spawn(async move {
        loop {
            if let Err(e) = store.say_alive(&replica, Utc::now() + PRESENCE).await {
                tracing::warn!(error = %e, "saying that this replica runs");
            }
            tokio::time::sleep(PRESENCE_RENEWAL).await;
        }
    });
}

/// Whether this replica runs the culler and managed services now.
#[derive(Clone)]
pub struct Leadership {
    rx: watch::Receiver<bool>,
    /// Kept so that the channel never closes.
    _tx: Arc<watch::Sender<bool>>,
}

impl Leadership {
    /// A hub alone on its database: always the leader.
    pub fn always() -> Self {
        let (tx, rx) = watch::channel(true);
        Leadership {
            rx,
            _tx: Arc::new(tx),
        }
    }

    /// Take part in the election (PostgreSQL) or lead (SQLite). The first attempt is made
    /// before this returns, so that a hub that can lead starts its services at once.
    pub async fn elect(store: &Store, replica: &str) -> Self {
        if store.backend() != Backend::Postgres {
            return Leadership::always();
        }
        let (tx, rx) = watch::channel(false);
        let tx = Arc::new(tx);
        let mut held_until: Option<Instant> = None;
        hold(store, replica, &tx, &mut held_until).await;
        let (store, replica, sender) = (store.clone(), replica.to_string(), tx.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEADER_RENEWAL).await;
                hold(&store, &replica, &sender, &mut held_until).await;
            }
        });
        Leadership { rx, _tx: tx }
    }

    pub fn is_leader(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once this replica leads.
    pub async fn until_leader(&mut self) {
        wait_for(&mut self.rx, true).await
    }

    /// Resolves once this replica no longer leads.
    pub async fn until_not_leader(&mut self) {
        wait_for(&mut self.rx, false).await
    }
}

async fn wait_for(rx: &mut watch::Receiver<bool>, want: bool) {
    if rx.wait_for(|leads| *leads == want).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// One attempt to take or renew the lease. A database that cannot be reached leaves the
/// replica leading until its lease would have run out, no longer.
async fn hold(
    store: &Store,
    replica: &str,
    tx: &watch::Sender<bool>,
    held_until: &mut Option<Instant>,
) {
    let attempt = Instant::now();
    let leads = match store
        .hold_lease(LEADER, replica, Utc::now() + LEADER_LEASE)
        .await
    {
        Ok(true) => {
            // Counted from before the attempt: the database's `until` is at least this late.
            *held_until = Some(attempt + LEADER_LEASE - LEADER_RENEWAL);
            true
        }
        Ok(false) => {
            *held_until = None;
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "renewing the leader lease");
            held_until.is_some_and(|until| Instant::now() < until)
        }
    };
    tx.send_if_modified(|current| {
        if *current == leads {
            return false;
        }
        *current = leads;
        if leads {
            tracing::info!(
                replica,
                "this replica leads: it runs the idle culler and managed services"
            );
        } else {
            tracing::info!(
                replica,
                "another replica leads: the idle culler and managed services run there"
            );
        }
        true
    });
}

/// With PostgreSQL: follow the other replicas' route changes (`LISTEN`), making this
/// replica's routes match the database after each (several at once make one pass), and their
/// reload requests and answers.
pub fn follow_route_changes(state: AppState) {
    if state.store.backend() != Backend::Postgres {
        return;
    }
    let pending = Arc::new(tokio::sync::Notify::new());
    let resync = pending.clone();
    let syncing = state.clone();
    tokio::spawn(async move {
        loop {
            resync.notified().await;
            if let Err(e) = syncing.lifecycle.check_routes().await {
                tracing::warn!(error = %e, "updating routes after a change on another replica");
            }
            if let Err(e) = syncing.services.check_routes(&syncing).await {
                tracing::warn!(error = %e, "updating services' routes");
            }
        }
    });
    tokio::spawn(async move {
        let mut listener = loop {
            match state.store.listen_changes().await {
                Ok(Some(listener)) => break listener,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen to the other replicas' route changes; trying again");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        };
        // Whatever changed while this replica was not listening.
        pending.notify_one();
        // Listening: reloads asked of every replica reach this one.
        say_alive(&state);
        loop {
            match listener.next().await {
                Ok(Change::Routes(what)) => {
                    tracing::debug!(%what, "a route changed on a replica");
                    pending.notify_one();
                }
                Ok(Change::Reload(request)) => {
                    if request.from != state.lifecycle.replica() {
                        tracing::info!(from = %request.from, "another replica asks every replica to reload its config files");
                        let state = state.clone();
                        tokio::spawn(async move {
                            crate::reload::answer_forwarded(&state, &request).await
                        });
                    }
                }
                Ok(Change::Reloaded(answer)) => {
                    // To this replica's API request waiting for it, if one is.
                    let _ = state.reload_answers.send(answer);
                }
                Ok(Change::Reconnected) => {
                    tracing::info!("listening to the other replicas again");
                    pending.notify_one();
                }
                // One bad message: the connection is fine.
                Err(e @ hubfleet_store::StoreError::Corrupt { .. }) => {
                    tracing::warn!(error = %e, "ignored a message from another replica");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lost the other replicas' route changes; listening again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
}
