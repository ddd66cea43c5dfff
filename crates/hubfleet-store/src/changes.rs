//! Change counters that let caches above and inside the store tell when what they hold
//! may be stale, and the cache of user views built on them.
//!
//! A write takes a [`Changing`] guard before it starts and drops it after it commits; the
//! counters move on both edges. A reader notes a counter, reads, and files the result
//! under the noted value, so a read that overlapped a write is never trusted later:
//! either it noted the value from before the write's second bump, or it read after the
//! commit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::user_view::UserView;

#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Writes that can change who may do what (users, tokens, sessions, roles, groups,
    /// shares, services, OAuth clients, servers).
    access: AtomicU64,
    /// Every write to what a user view holds (users, servers, groups, roles), activity
    /// included, and every access write.
    data: AtomicU64,
}

/// Held across one write; see the module doc.
#[must_use = "hold the guard until the write has committed: `let _changing = …`"]
pub(crate) struct Changing<'a> {
    counters: &'a Counters,
    access: bool,
}

impl<'a> Changing<'a> {
    pub(crate) fn new(counters: &'a Counters, access: bool) -> Self {
        let guard = Changing { counters, access };
        guard.bump();
        guard
    }

    fn bump(&self) {
        if self.access {
            self.counters.access.fetch_add(1, Ordering::SeqCst);
        }
        self.counters.data.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        self.bump();
    }
}

impl Counters {
    pub(crate) fn access(&self) -> u64 {
        self.access.load(Ordering::SeqCst)
    }

    pub(crate) fn data(&self) -> u64 {
        self.data.load(Ordering::SeqCst)
    }
}

/// How long a cached user view may serve reads. Writes through this process end it at
/// once; this bounds how long a write by another process (the `hubfleet users` command,
/// another replica) can go unseen.
const USER_VIEW_SECONDS: Duration = Duration::from_secs(1);
const USER_VIEW_ENTRIES: usize = 20_000;

struct CachedView {
    data_generation: u64,
    loaded: Instant,
    view: UserView,
    sealed_auth_state: Option<String>,
}

/// Recently read user views by name. auth_state is kept as stored (encrypted) and
/// opened on each read that asks for it.
#[derive(Clone, Default)]
pub(crate) struct UserViewCache {
    entries: Arc<Mutex<HashMap<String, CachedView>>>,
}

impl std::fmt::Debug for UserViewCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserViewCache").finish_non_exhaustive()
    }
}

impl UserViewCache {
    /// The view (without auth_state) and the auth_state as stored.
    pub(crate) fn get(
        &self,
        name: &str,
        data_generation: u64,
    ) -> Option<(UserView, Option<String>)> {
        let entries = self.entries.lock().expect("user view cache lock");
        let cached = entries.get(name)?;
        (cached.data_generation == data_generation && cached.loaded.elapsed() < USER_VIEW_SECONDS)
            .then(|| (cached.view.clone(), cached.sealed_auth_state.clone()))
    }

    pub(crate) fn put(
        &self,
        name: &str,
        data_generation: u64,
        view: UserView,
        sealed_auth_state: Option<String>,
    ) {
        let mut entries = self.entries.lock().expect("user view cache lock");
        if entries.len() >= USER_VIEW_ENTRIES {
            entries.retain(|_, cached| cached.data_generation == data_generation);
            if entries.len() >= USER_VIEW_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            name.to_string(),
            CachedView {
                data_generation,
                loaded: Instant::now(),
                view,
                sealed_auth_state,
            },
        );
    }
}
