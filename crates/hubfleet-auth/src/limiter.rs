//! Slowing down password guessing: failed logins are counted per user name and per client
//! address; past a limit, further tries are refused for a while.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum Key {
    User(String),
    Ip(IpAddr),
}

#[derive(Clone, Debug)]
struct Entry {
    failures: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// Counts failed logins. Kept in memory: a restart forgets (the limits are per hub process).
#[derive(Debug)]
pub struct LoginLimiter {
    per_user: u32,
    per_ip: u32,
    lockout: Duration,
    entries: Mutex<HashMap<Key, Entry>>,
}

/// Bound on remembered keys; past it, stale entries are dropped.
const MAX_ENTRIES: usize = 50_000;

impl LoginLimiter {
    /// `per_user`/`per_ip` failures (0: no limit) before a refusal lasting `lockout`.
    pub fn new(per_user: u32, per_ip: u32, lockout: Duration) -> Self {
        LoginLimiter {
            per_user,
            per_ip,
            lockout,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn keys(user: &str, ip: Option<IpAddr>) -> Vec<Key> {
        let mut keys = vec![Key::User(user.trim().to_lowercase())];
        if let Some(ip) = ip {
            keys.push(Key::Ip(ip));
        }
        keys
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `Err(wait)` when this user name or address is locked out for `wait` more.
    pub fn check(&self, user: &str, ip: Option<IpAddr>) -> Result<(), Duration> {
        let now = Instant::now();
        let entries = self.lock();
        let wait = Self::keys(user, ip)
            .iter()
            .filter_map(|k| entries.get(k))
            .filter_map(|e| e.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max();
        match wait {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Record a failure; returns how long the caller should pause before answering (it grows
    /// with the number of recent failures, up to 2 s).
    pub fn failed(&self, user: &str, ip: Option<IpAddr>) -> Duration {
        let now = Instant::now();
        let mut entries = self.lock();
        if entries.len() > MAX_ENTRIES {
            let lockout = self.lockout;
            entries.retain(|_, e| {
                now.duration_since(e.last) < lockout || e.locked_until.is_some_and(|u| u > now)
            });
        }
        let mut most = 0;
        for key in Self::keys(user, ip) {
            let limit = match key {
                Key::User(_) => self.per_user,
                Key::Ip(_) => self.per_ip,
            };
            let entry = entries.entry(key).or_insert(Entry {
                failures: 0,
                last: now,
                locked_until: None,
            });
            // Failures older than the lockout period are forgiven.
            if now.duration_since(entry.last) >= self.lockout
                || entry.locked_until.is_some_and(|u| u <= now)
            {
                entry.failures = 0;
                entry.locked_until = None;
            }
            entry.failures += 1;
            entry.last = now;
            if limit > 0 && entry.failures >= limit {
                entry.locked_until = Some(now + self.lockout);
            }
            most = most.max(entry.failures);
        }
        Duration::from_millis((u64::from(most) * 100).min(2000))
    }

    /// A successful login clears the user name's count (not the address's).
    pub fn succeeded(&self, user: &str) {
        self.lock().remove(&Key::User(user.trim().to_lowercase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_a_user_after_the_limit_and_releases_later() {
        let limiter = LoginLimiter::new(3, 0, Duration::from_millis(200));
        let ip = Some("127.0.0.1".parse().unwrap());
        for _ in 0..2 {
            limiter.failed("Alice", ip);
            assert!(limiter.check("alice", ip).is_ok());
        }
        let pause = limiter.failed("alice", ip);
        assert!(pause >= Duration::from_millis(300), "{pause:?}");
        let wait = limiter.check("alice", None).unwrap_err();
        assert!(wait <= Duration::from_millis(200));
        assert!(limiter.check("bob", ip).is_ok(), "other users unaffected");
        std::thread::sleep(Duration::from_millis(250));
        assert!(limiter.check("alice", ip).is_ok());
    }

    #[test]
    fn locks_an_address_across_user_names() {
        let limiter = LoginLimiter::new(0, 4, Duration::from_secs(60));
        let ip = Some("10.1.2.3".parse().unwrap());
        for i in 0..4 {
            limiter.failed(&format!("user{i}"), ip);
        }
        assert!(limiter.check("someone-else", ip).is_err());
        assert!(limiter.check("someone-else", None).is_ok());
    }

    #[test]
    fn success_clears_the_user_count() {
        let limiter = LoginLimiter::new(2, 0, Duration::from_secs(60));
        limiter.failed("carol", None);
        limiter.succeeded("carol");
        limiter.failed("carol", None);
        assert!(limiter.check("carol", None).is_ok());
    }
}
