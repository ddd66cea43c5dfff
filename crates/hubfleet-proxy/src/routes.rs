//! The route table: CHP-style longest-prefix matching on whole path segments.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use chrono::{DateTime, Utc};
use http::uri::{Authority, Scheme, Uri};
use serde_json::{Map, Value};

use crate::{ProxyError, HUB_TARGET};

/// A route's data, as configurable-http-proxy keeps it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Route {
    /// e.g. "http://127.0.0.1:47123" (scheme://host:port, maybe with a path prefix), or [`HUB_TARGET`].
    pub target: String,
    /// Arbitrary extra data, e.g. `{"user":"alice","server_name":"","jupyterhub":true}`.
    pub data: Map<String, Value>,
    pub last_activity: DateTime<Utc>,
}

/// Where a target's connections go. Also the upstream pool's key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Upstream {
    /// `http://host:port`
    Http(Authority),
    /// `https://host:port`, verified as `--client-ssl-ca` / `--insecure` say.
    Https(Authority),
    /// CHP's `http+unix://<percent-encoded socket path>` (or `unix+http://`).
    Unix(Arc<std::path::Path>),
}

/// A parsed target, so the hot path never re-parses strings.
#[derive(Debug)]
pub(crate) enum Target {
    /// Dispatch in-process to the hub router.
    Hub,
    /// Forward over HTTP/1.1. `path_prefix` has no trailing slash and is empty when the target
    /// has no path.
    Http {
        upstream: Upstream,
        path_prefix: Box<str>,
    },
    /// Kept (so `all()` shows what was registered) but answered with 503.
    Invalid(ProxyError),
}

impl Target {
    pub(crate) fn parse(target: &str) -> Result<Target, ProxyError> {
        if target == HUB_TARGET {
            return Ok(Target::Hub);
        }
        let invalid = |reason: &'static str| ProxyError::InvalidTarget {
            target: target.to_owned(),
            reason,
        };
        let unix = ["http+unix://", "unix+http://"]
            .iter()
            .find_map(|scheme| target.strip_prefix(scheme));
        if let Some(rest) = unix {
            // The socket path is the percent-encoded "host"; the rest is the target's path.
            let (host, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
            if path.contains('?') {
                return Err(invalid("targets may not have a query string"));
            }
            let socket = percent_encoding::percent_decode_str(host)
                .decode_utf8()
                .map_err(|_| invalid("socket path is not UTF-8"))?;
            if socket.is_empty() {
                return Err(invalid("missing socket path"));
            }
            return Ok(Target::Http {
                upstream: Upstream::Unix(std::path::Path::new(&*socket).into()),
                path_prefix: path.trim_end_matches('/').into(),
            });
        }
        let uri: Uri = target.parse().map_err(|_| invalid("not a valid URI"))?;
        let authority = uri.authority().cloned().ok_or(invalid("missing host"))?;
        let upstream = match uri.scheme() {
            Some(s) if *s == Scheme::HTTP => Upstream::Http(authority),
            Some(s) if *s == Scheme::HTTPS => Upstream::Https(authority),
            _ => {
                return Err(invalid(
                    "expected an http://, https:// or http+unix:// target",
                ))
            }
        };
        if uri.query().is_some() {
            return Err(invalid("targets may not have a query string"));
        }
        let path_prefix = uri.path().trim_end_matches('/').into();
        Ok(Target::Http {
            upstream,
            path_prefix,
        })
    }
}

/// One route plus its activity clock; shared with in-flight requests via `Arc`.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) prefix: Box<str>,
    pub(crate) target: String,
    pub(crate) parsed: Target,
    data: Map<String, Value>,
    /// Microseconds since the epoch; atomic so the request path never takes a write lock.
    last_activity_us: AtomicI64,
}

/// Proxied traffic only moves the clock when it is at least this stale, so a hot route does not
/// turn every request/chunk into a contended write of one cache line.
const COARSE_TOUCH_US: i64 = 1_000;

fn now_us() -> i64 {
    // Straight from the clock: chrono's Utc::now() computes a calendar date first.
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl Entry {
    /// Where requests for this route go, unless the hub serves it or its target is unusable.
    pub(crate) fn upstream(&self) -> Option<&Upstream> {
        match &self.parsed {
            Target::Http { upstream, .. } => Some(upstream),
            _ => None,
        }
    }

    /// Exact touch (explicit API calls).
    pub(crate) fn touch(&self) {
        self.last_activity_us.fetch_max(now_us(), Ordering::Relaxed);
    }

    /// Cheap touch for the data path: millisecond resolution is plenty for idle culling.
    pub(crate) fn touch_coarse(&self) {
        let now = now_us();
        if now - self.last_activity_us.load(Ordering::Relaxed) >= COARSE_TOUCH_US {
            self.last_activity_us.fetch_max(now, Ordering::Relaxed);
        }
    }

    fn to_route(&self) -> Route {
        let us = self.last_activity_us.load(Ordering::Relaxed);
        Route {
            target: self.target.clone(),
            data: self.data.clone(),
            last_activity: DateTime::from_timestamp_micros(us).unwrap_or_else(Utc::now),
        }
    }
}

/// One node of the segment trie: `children` by path segment, and the route ending here, if any.
#[derive(Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    entry: Option<Arc<Entry>>,
}

#[derive(Default)]
struct Inner {
    root: Node,
    len: usize,
}

/// The segments of a normalised prefix or a request path, as CHP's `stringToPath` splits them:
/// leading and trailing slashes dropped, so "/" has none and "/user/alice/" has two.
fn segments(path: &str) -> impl Iterator<Item = &str> {
    let trimmed = path.trim_matches('/');
    trimmed.split('/').filter(move |_| !trimmed.is_empty())
}

/// How many path segments a normalised prefix has ("/" has none).
pub(crate) fn segment_count(prefix: &str) -> usize {
    segments(prefix).count()
}

impl Inner {
    fn insert(&mut self, key: &str, entry: Arc<Entry>) {
        let mut node = &mut self.root;
        for seg in segments(key) {
            node = node.children.entry(seg.into()).or_default();
        }
        if node.entry.replace(entry).is_none() {
            self.len += 1;
        }
    }

    fn get(&self, key: &str) -> Option<&Arc<Entry>> {
        let mut node = &self.root;
        for seg in segments(key) {
            node = node.children.get(seg)?;
        }
        node.entry.as_ref()
    }

    /// Remove the route at `key`, pruning nodes left with neither route nor children, so a
    /// table under constant churn does not grow.
    fn remove(&mut self, key: &str) -> bool {
        fn go<'a>(node: &mut Node, mut segs: impl Iterator<Item = &'a str>) -> bool {
            match segs.next() {
                None => node.entry.take().is_some(),
                Some(seg) => {
                    let Some(child) = node.children.get_mut(seg) else {
                        return false;
                    };
                    let removed = go(child, segs);
                    if removed && child.entry.is_none() && child.children.is_empty() {
                        node.children.remove(seg);
                    }
                    removed
                }
            }
        }
        let removed = go(&mut self.root, segments(key));
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Longest prefix of `path`, on whole segments.
    fn longest(&self, path: &str) -> Option<&Arc<Entry>> {
        let mut node = &self.root;
        let mut best = node.entry.as_ref();
        for seg in segments(path) {
            match node.children.get(seg) {
                Some(child) => {
                    node = child;
                    if node.entry.is_some() {
                        best = node.entry.as_ref();
                    }
                }
                None => break,
            }
        }
        best
    }

    fn for_each(&self, mut f: impl FnMut(&Arc<Entry>)) {
        let mut stack = vec![&self.root];
        while let Some(node) = stack.pop() {
            if let Some(e) = &node.entry {
                f(e);
            }
            stack.extend(node.children.values());
        }
    }
}

/// Normalise as CHP does: leading "/", and no trailing "/" unless the whole prefix is "/".
/// Keys of [`RouteTable::all`] are in this form.
pub fn normalize(prefix: &str) -> Cow<'_, str> {
    let mut p: Cow<'_, str> = if prefix.starts_with('/') {
        Cow::Borrowed(prefix)
    } else {
        Cow::Owned(format!("/{prefix}"))
    };
    if p.len() > 1 && p.ends_with('/') {
        match &mut p {
            Cow::Borrowed(s) => *s = &s[..s.len() - 1],
            Cow::Owned(s) => {
                s.pop();
            }
        }
    }
    p
}

/// Longest-prefix route table (a trie on path segments, like CHP's `URLTrie`), cheap to clone
/// (Arc inside), safe to share across tasks.
///
/// Keys are compared segment by segment with the request path as [`serve`](crate::serve) sees
/// it: percent-decoded, and with the host as first segment in host-routing mode.
#[derive(Clone, Default)]
pub struct RouteTable {
    inner: Arc<RwLock<Inner>>,
}

impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        self.read().for_each(|e| {
            m.entry(&e.prefix, &e.target);
        });
        m.finish()
    }
}

impl RouteTable {
    pub fn new() -> Self {
        Self::default()
    }

    // A panic while holding the lock cannot leave the trie half-updated, so poisoning is ignored.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Add or replace. `prefix` like "/user/alice/" or "/user/alice" or "/" is normalised as CHP
    /// does (leading "/", no trailing slash except for "/"). Sets last_activity = now.
    ///
    /// An unusable target is still stored (as CHP would) but requests to it get a 503;
    /// use [`RouteTable::try_add`] to reject it instead.
    pub fn add(&self, prefix: &str, target: &str, data: Map<String, Value>) {
        let parsed = Target::parse(target).unwrap_or_else(|e| {
            tracing::warn!(%prefix, error = %e, "route added with unusable target");
            Target::Invalid(e)
        });
        self.insert(prefix, target, parsed, data);
    }

    /// Like [`RouteTable::add`], but refuses targets that are neither `http://host:port[/path]`
    /// nor [`HUB_TARGET`].
    pub fn try_add(
        &self,
        prefix: &str,
        target: &str,
        data: Map<String, Value>,
    ) -> Result<(), ProxyError> {
        let parsed = Target::parse(target)?;
        self.insert(prefix, target, parsed, data);
        Ok(())
    }

    fn insert(&self, prefix: &str, target: &str, parsed: Target, data: Map<String, Value>) {
        let key: Box<str> = normalize(prefix).into();
        let entry = Arc::new(Entry {
            prefix: key.clone(),
            target: target.to_owned(),
            parsed,
            data,
            last_activity_us: AtomicI64::new(now_us()),
        });
        self.write().insert(&key, entry);
    }

    /// Remove a route; returns whether it existed.
    pub fn remove(&self, prefix: &str) -> bool {
        let key = normalize(prefix);
        self.write().remove(&key)
    }

    /// The route registered at exactly `prefix` (after normalisation).
    pub fn get(&self, prefix: &str) -> Option<Route> {
        let key = normalize(prefix);
        self.read().get(&key).map(|e| e.to_route())
    }

    /// All routes, keyed by normalised prefix.
    pub fn all(&self) -> BTreeMap<String, Route> {
        let mut out = BTreeMap::new();
        self.read().for_each(|e| {
            out.insert(e.prefix.to_string(), e.to_route());
        });
        out
    }

    pub fn len(&self) -> usize {
        self.read().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Longest matching prefix for a request path, matched on whole path segments
    /// ("/user/al" does not match route "/user/alice"; "/user/alice/lab" and "/user/alice" do).
    /// Returns (normalised prefix, route).
    pub fn lookup(&self, path: &str) -> Option<(String, Route)> {
        self.lookup_entry(path)
            .map(|e| (e.prefix.to_string(), e.to_route()))
    }

    /// Mark activity on a route at `at` (another proxy's record of it), unless it has later.
    pub fn note_activity(&self, prefix: &str, at: DateTime<Utc>) {
        let key = normalize(prefix);
        if let Some(e) = self.read().get(&key) {
            e.last_activity_us
                .fetch_max(at.timestamp_micros(), Ordering::Relaxed);
        }
    }

    /// Mark activity on a route now.
    pub fn touch(&self, prefix: &str) {
        let key = normalize(prefix);
        if let Some(e) = self.read().get(&key) {
            e.touch();
        }
    }

    /// Hot-path lookup: no allocation, one hash probe per path segment.
    pub(crate) fn lookup_entry(&self, path: &str) -> Option<Arc<Entry>> {
        self.read().longest(path).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalize("/user/alice/"), "/user/alice");
        assert_eq!(normalize("/user/alice"), "/user/alice");
        assert_eq!(normalize("user/alice"), "/user/alice");
        assert_eq!(normalize("user/alice/"), "/user/alice");
        assert_eq!(normalize("/"), "/");
        assert_eq!(normalize(""), "/");

        let t = RouteTable::new();
        t.add("/user/alice/", "http://127.0.0.1:1", Map::new());
        t.add("bob", "http://127.0.0.1:2", Map::new());
        t.add("/", HUB_TARGET, Map::new());
        let keys: Vec<String> = t.all().into_keys().collect();
        assert_eq!(keys, ["/", "/bob", "/user/alice"]);
        assert_eq!(t.get("/user/alice").unwrap().target, "http://127.0.0.1:1");
        assert_eq!(t.get("user/alice/").unwrap().target, "http://127.0.0.1:1");
        assert_eq!(t.get("/bob/").unwrap().target, "http://127.0.0.1:2");
        assert!(t.get("/user").is_none());
    }

    #[test]
    fn replace_keeps_one_entry_and_new_data() {
        let t = RouteTable::new();
        t.add(
            "/user/alice",
            "http://127.0.0.1:1",
            data(json!({"user": "alice"})),
        );
        t.add(
            "/user/alice/",
            "http://127.0.0.1:2",
            data(json!({"user": "alice2"})),
        );
        assert_eq!(t.len(), 1);
        let r = t.get("/user/alice").unwrap();
        assert_eq!(r.target, "http://127.0.0.1:2");
        assert_eq!(r.data["user"], "alice2");
    }

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        let t = RouteTable::new();
        t.add("/", HUB_TARGET, Map::new());
        t.add("/user/alice", "http://a", Map::new());
        t.add("/user/alice/proxy/8080", "http://b", Map::new());
        t.add("/user/alicex", "http://c", Map::new());

        let p = |path: &str| t.lookup(path).map(|(k, _)| k);
        assert_eq!(p("/user/alice").as_deref(), Some("/user/alice"));
        assert_eq!(p("/user/alice/").as_deref(), Some("/user/alice"));
        assert_eq!(p("/user/alice/lab").as_deref(), Some("/user/alice"));
        assert_eq!(
            p("/user/alice/lab/tree/a/b/c/d/e").as_deref(),
            Some("/user/alice")
        );
        assert_eq!(p("/user/alicex/lab").as_deref(), Some("/user/alicex"));
        assert_eq!(p("/user/al").as_deref(), Some("/"));
        assert_eq!(p("/user/alice/proxy/808").as_deref(), Some("/user/alice"));
        assert_eq!(
            p("/user/alice/proxy/8080/x").as_deref(),
            Some("/user/alice/proxy/8080")
        );
        assert_eq!(p("/").as_deref(), Some("/"));
        assert_eq!(p("").as_deref(), Some("/"));
        assert_eq!(p("/hub/login").as_deref(), Some("/"));
        assert_eq!(t.lookup("/user/alice/lab").unwrap().1.target, "http://a");
    }

    #[test]
    fn no_root_route_means_no_match() {
        let t = RouteTable::new();
        assert!(t.lookup("/anything").is_none());
        t.add("/user/alice", "http://a", Map::new());
        assert!(t.lookup("/user/al").is_none());
        assert!(t.lookup("/user").is_none());
        assert!(t.lookup("/").is_none());
        assert!(t.lookup("/user/alice/x").is_some());
    }

    #[test]
    fn remove_and_depth_recomputation() {
        let t = RouteTable::new();
        t.add("/a/b/c", "http://deep", Map::new());
        t.add("/a", "http://shallow", Map::new());
        assert_eq!(t.lookup("/a/b/c/d").unwrap().0, "/a/b/c");
        assert!(t.remove("/a/b/c/"));
        assert!(!t.remove("/a/b/c"));
        assert_eq!(t.len(), 1);
        assert_eq!(t.lookup("/a/b/c/d").unwrap().0, "/a");
        // Depth must grow again when a deeper route comes back.
        t.add("/a/b/c", "http://deep", Map::new());
        assert_eq!(t.lookup("/a/b/c/d").unwrap().0, "/a/b/c");
        assert!(t.remove("/a"));
        assert!(t.lookup("/a/b").is_none());
        assert!(t.get("/a").is_none());
    }

    #[test]
    fn removal_prunes_the_trie() {
        let t = RouteTable::new();
        for i in 0..1000 {
            t.add(&format!("/user/u{i}/proxy/8888"), "http://a", Map::new());
        }
        t.add("/user/keep", "http://k", Map::new());
        assert_eq!(t.len(), 1001);
        for i in 0..1000 {
            assert!(t.remove(&format!("/user/u{i}/proxy/8888/")));
        }
        assert_eq!(t.len(), 1);
        // Only "user" → "keep" is left: no empty branches from the removed routes.
        let inner = t.read();
        assert_eq!(inner.root.children.len(), 1);
        assert_eq!(inner.root.children["user"].children.len(), 1);
    }

    #[test]
    fn many_routes_and_host_keys() {
        let t = RouteTable::new();
        for i in 0..10_000 {
            t.add(
                &format!("/user/u{i}"),
                &format!("http://127.0.0.1:{}", 1000 + i % 50000),
                Map::new(),
            );
        }
        t.add("/alice.hub.example/user/alice", "http://h", Map::new());
        assert_eq!(t.lookup("/user/u9999/lab/tree").unwrap().0, "/user/u9999");
        assert!(t.lookup("/user/u10000/lab").is_none());
        assert_eq!(
            t.lookup("/alice.hub.example/user/alice/lab").unwrap().0,
            "/alice.hub.example/user/alice"
        );
        assert!(t.lookup("/bob.hub.example/user/alice/lab").is_none());
        assert_eq!(t.all().len(), 10_001);
        // Empty segments: CHP splits "//" into an empty segment, which matches nothing.
        assert!(t.lookup("/user//u1").is_none());
        assert_eq!(t.lookup("//user/u1/x").unwrap().0, "/user/u1");
    }

    #[test]
    fn touch_moves_last_activity_forward() {
        let t = RouteTable::new();
        t.add("/user/alice", "http://a", Map::new());
        let before = t.get("/user/alice").unwrap().last_activity;
        std::thread::sleep(std::time::Duration::from_millis(5));
        t.touch("/user/alice/");
        let after = t.get("/user/alice").unwrap().last_activity;
        assert!(after > before, "{after} should be after {before}");
        // Touching an unknown route is a no-op, not a panic.
        t.touch("/nope");

        // Coarse touches (data path) also move the clock once stale enough.
        let e = t.lookup_entry("/user/alice/x").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        e.touch_coarse();
        assert!(t.get("/user/alice").unwrap().last_activity > after);
    }

    #[test]
    fn targets_parse() {
        match Target::parse("http://127.0.0.1:5000/base/").unwrap() {
            Target::Http {
                upstream: Upstream::Http(authority),
                path_prefix,
            } => {
                assert_eq!(authority.as_str(), "127.0.0.1:5000");
                assert_eq!(&*path_prefix, "/base");
            }
            other => panic!("unexpected {other:?}"),
        }
        match Target::parse("http://127.0.0.1:5000").unwrap() {
            Target::Http { path_prefix, .. } => assert_eq!(&*path_prefix, ""),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(Target::parse(HUB_TARGET), Ok(Target::Hub)));
        assert!(matches!(
            Target::parse("https://x:8443").unwrap(),
            Target::Http { upstream: Upstream::Https(a), .. } if a.as_str() == "x:8443"
        ));
        match Target::parse("http+unix://%2Ftmp%2Fa%20b.sock/base/").unwrap() {
            Target::Http {
                upstream: Upstream::Unix(path),
                path_prefix,
            } => {
                assert_eq!(path.to_str(), Some("/tmp/a b.sock"));
                assert_eq!(&*path_prefix, "/base");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(Target::parse("unix+http://%2Fs").is_ok());
        assert!(Target::parse("http+unix:///x").is_err());
        assert!(Target::parse("not a url").is_err());

        let t = RouteTable::new();
        assert!(t.try_add("/x", "ftp://x", Map::new()).is_err());
        assert!(t.get("/x").is_none());
        t.add("/x", "ftp://x", Map::new());
        assert_eq!(t.get("/x").unwrap().target, "ftp://x");
    }

    #[test]
    fn route_serializes_like_chp() {
        let t = RouteTable::new();
        t.add("/user/alice", "http://a", data(json!({"user": "alice"})));
        let v = serde_json::to_value(t.get("/user/alice").unwrap()).unwrap();
        assert_eq!(v["target"], "http://a");
        assert_eq!(v["data"]["user"], "alice");
        assert!(v["last_activity"].as_str().unwrap().ends_with('Z'));
    }
}
