//! Slowing down password guessing: failed logins are counted per user name and per client
//! address; past a limit, further tries are refused for a while.
//!
//! Memory is bounded: at most `max_entries` keys, each at most [`MAX_USERNAME_BYTES`] of
//! name, whatever the callers send. IPv6 clients are counted per /64 network, which one
//! host or household usually has whole.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::MAX_USERNAME_BYTES;

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

impl Entry {
    fn locked_at(&self, now: Instant) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }
}

/// Counts failed logins. Kept in memory: a restart forgets (the limits are per hub process).
#[derive(Debug)]
pub struct LoginLimiter {
    per_user: u32,
    per_ip: u32,
    lockout: Duration,
    max_entries: usize,
    entries: Mutex<HashMap<Key, Entry>>,
}

/// Default bound on remembered keys (some 20 MB at most).
const MAX_ENTRIES: usize = 50_000;

impl LoginLimiter {
    /// `per_user`/`per_ip` failures (0: no limit) before a refusal lasting `lockout`.
    pub fn new(per_user: u32, per_ip: u32, lockout: Duration) -> Self {
        LoginLimiter {
            per_user,
            per_ip,
            lockout,
            max_entries: MAX_ENTRIES,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Remember at most `max_entries` user names and addresses (at least 10).
    pub fn with_max_entries(mut self, max_entries: usize) -> Self {
        self.max_entries = max_entries.max(10);
        self
    }

    fn user_key(user: &str) -> Key {
        let mut name = user.trim().to_lowercase();
        // Longer names never log in (the hub refuses them before this); the cut keeps keys
        // small whoever calls.
        if name.len() > MAX_USERNAME_BYTES {
            let mut end = MAX_USERNAME_BYTES;
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            name.truncate(end);
        }
        Key::User(name)
    }

    fn ip_key(ip: IpAddr) -> Key {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                Key::Ip(IpAddr::V6(network.into()))
            }
            v4 => Key::Ip(v4),
        }
    }

    fn keys(user: &str, ip: Option<IpAddr>) -> Vec<Key> {
        let mut keys = vec![Self::user_key(user)];
        if let Some(ip) = ip {
            keys.push(Self::ip_key(ip));
        }
        keys
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many user names and addresses are remembered now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    /// Make room for one more key. Forgotten first: entries past their lockout period;
    /// then, when that is not enough, a tenth of the table, least useful first (unlocked
    /// before locked, user names before addresses, which keep the per-address limit
    /// working; oldest first).
    fn make_room(&self, entries: &mut HashMap<Key, Entry>, now: Instant) {
        if entries.len() < self.max_entries {
            return;
        }
        let lockout = self.lockout;
        entries.retain(|_, e| now.duration_since(e.last) < lockout || e.locked_at(now));
        if entries.len() < self.max_entries {
            return;
        }
        let mut ranked: Vec<((bool, bool, Instant), Key)> = entries
            .iter()
            .map(|(k, e)| {
                (
                    (e.locked_at(now), matches!(k, Key::Ip(_)), e.last),
                    k.clone(),
                )
            })
            .collect();
        let evict = (self.max_entries / 10).max(1);
        ranked.select_nth_unstable_by_key(evict - 1, |(rank, _)| *rank);
        for (_, key) in ranked.into_iter().take(evict) {
            entries.remove(&key);
        }
    }

    /// Record a failure; returns how long the caller should pause before answering (it grows
    /// with the number of recent failures, up to 2 s).
    pub fn failed(&self, user: &str, ip: Option<IpAddr>) -> Duration {
        let now = Instant::now();
        let mut entries = self.lock();
        let mut most = 0;
        for key in Self::keys(user, ip) {
            let limit = match key {
                Key::User(_) => self.per_user,
                Key::Ip(_) => self.per_ip,
            };
            if !entries.contains_key(&key) {
                self.make_room(&mut entries, now);
            }
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
            entry.failures = entry.failures.saturating_add(1);
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
        self.lock().remove(&Self::user_key(user));
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
    fn memory_stays_bounded_under_many_names() {
        let limiter = LoginLimiter::new(5, 0, Duration::from_secs(600)).with_max_entries(1000);
        let long = "n".repeat(100_000);
        for i in 0..20_000u32 {
            // Every failure from another address and under another, very long, name.
            let ip = IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            limiter.failed(&format!("{i}-{long}"), Some(ip));
            assert!(limiter.len() <= 1000, "{} entries", limiter.len());
        }
        let entries = limiter.lock();
        assert!(entries.keys().all(|k| match k {
            Key::User(name) => name.len() <= MAX_USERNAME_BYTES,
            Key::Ip(_) => true,
        }));
    }

    #[test]
    fn a_full_table_keeps_lockouts_and_addresses() {
        let limiter = LoginLimiter::new(3, 50, Duration::from_secs(600)).with_max_entries(100);
        let attacker = Some("192.0.2.1".parse().unwrap());
        for _ in 0..3 {
            limiter.failed("victim", attacker);
        }
        assert!(limiter.check("victim", None).is_err());
        // Flooding with other names from other addresses evicts unlocked names first.
        for i in 0..5_000u32 {
            let ip = IpAddr::from([10, 0, (i >> 8) as u8, i as u8]);
            limiter.failed(&format!("flood{i}"), Some(ip));
        }
        assert!(limiter.check("victim", None).is_err(), "lockout kept");
        assert!(limiter.len() <= 100);
    }

    #[test]
    fn an_ipv6_network_counts_as_one_address() {
        let limiter = LoginLimiter::new(0, 3, Duration::from_secs(60));
        for i in 1..=3u16 {
            let ip = IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, i]);
            limiter.failed(&format!("user{i}"), Some(ip));
        }
        let same_network = "2001:db8:0:1:ffff::9".parse().unwrap();
        assert!(limiter.check("someone", Some(same_network)).is_err());
        let other_network = "2001:db8:0:2::1".parse().unwrap();
        assert!(limiter.check("someone", Some(other_network)).is_ok());
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
