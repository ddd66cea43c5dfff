//! Refreshing a login's auth_state with the provider (JupyterHub's `refresh_user`,
//! `auth_refresh_age` and `refresh_pre_spawn`).
//!
//! The hub asks [`RefreshTracker::due`] on each authenticated request; when the last check
//! is older than `auth_refresh_age` it calls [`crate::Authenticator::refresh_user`], which
//! for the OAuth authenticators reads the user anew with the access token (after getting a
//! new one with the refresh token when it has expired). When that fails, the person must
//! log in again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::UserInfo;

/// What a refresh found.
#[derive(Clone, Debug, PartialEq)]
pub enum Refresh {
    /// Nothing to change.
    Valid,
    /// New details (a new access token in auth_state, groups, admin flag) for the same user.
    Updated(UserInfo),
    /// The login can no longer be vouched for: the person must log in again.
    LoginRequired(String),
}

/// A failed refresh is not retried for this long (a busy API client would otherwise send
/// every request on to the provider); a new login clears it.
const FAILED_FOR: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Checked recently: nothing to do.
    Fresh,
    /// Check with the provider now.
    Now,
    /// The last check failed moments ago: refuse without asking again.
    RecentlyFailed,
}

#[derive(Default)]
struct Entry {
    checked: Option<(Instant, bool)>,
    /// Held while a refresh runs, so that concurrent requests do not each use (and with
    /// rotating refresh tokens, invalidate) the refresh token.
    lock: Arc<tokio::sync::Mutex<()>>,
}

/// When each user's auth_state was last checked, in this hub process (upstream keeps it in
/// memory too: after a restart the first request of each user checks again).
#[derive(Clone, Default)]
pub struct RefreshTracker {
    entries: Arc<Mutex<HashMap<i64, Entry>>>,
}

impl std::fmt::Debug for RefreshTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshTracker")
    }
}

impl RefreshTracker {
    /// Whether `user_id`'s auth_state must be checked; `age` zero means only when forced.
    pub fn due(&self, user_id: i64, age: Duration, force: bool) -> Due {
        let entries = self.entries.lock().expect("refresh tracker lock");
        if age.is_zero() && !force {
            return Due::Fresh;
        }
        match entries.get(&user_id).and_then(|e| e.checked) {
            Some((at, false)) if at.elapsed() < FAILED_FOR => Due::RecentlyFailed,
            _ if force => Due::Now,
            Some((at, true)) if at.elapsed() < age => Due::Fresh,
            _ => Due::Now,
        }
    }

    /// The lock to hold while refreshing `user_id`.
    pub fn lock(&self, user_id: i64) -> Arc<tokio::sync::Mutex<()>> {
        self.entries
            .lock()
            .expect("refresh tracker lock")
            .entry(user_id)
            .or_default()
            .lock
            .clone()
    }

    /// Record the outcome of a check (a login counts as a successful one).
    pub fn record(&self, user_id: i64, ok: bool) {
        self.entries
            .lock()
            .expect("refresh tracker lock")
            .entry(user_id)
            .or_default()
            .checked = Some((Instant::now(), ok));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_follows_age_failures_and_force() {
        let tracker = RefreshTracker::default();
        let age = Duration::from_secs(300);
        assert_eq!(tracker.due(1, age, false), Due::Now, "never checked");
        assert_eq!(tracker.due(1, Duration::ZERO, false), Due::Fresh, "age 0");
        assert_eq!(tracker.due(1, Duration::ZERO, true), Due::Now, "pre-spawn");
        tracker.record(1, true);
        assert_eq!(tracker.due(1, age, false), Due::Fresh);
        assert_eq!(tracker.due(1, age, true), Due::Now);
        assert_eq!(tracker.due(1, Duration::from_nanos(1), false), Due::Now);
        tracker.record(1, false);
        assert_eq!(tracker.due(1, age, false), Due::RecentlyFailed);
        assert_eq!(tracker.due(1, age, true), Due::RecentlyFailed);
        // Without periodic checks, only starts are refused.
        assert_eq!(tracker.due(1, Duration::ZERO, false), Due::Fresh);
        assert_eq!(tracker.due(1, Duration::ZERO, true), Due::RecentlyFailed);
        tracker.record(1, true);
        assert_eq!(tracker.due(1, age, false), Due::Fresh, "a login clears it");
        assert_eq!(tracker.due(2, age, false), Due::Now, "per user");
    }
}
