//! URL shapes shared by pages, the API and the lifecycle.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Python's `urllib.parse.quote(s, safe="@~")`: what JupyterHub uses for names in URLs.
const NAME_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'@');

/// Python's `quote(s)` default (keeps `/`), for whole paths.
const PATH_ESCAPE: &AsciiSet = &NAME_ESCAPE.remove(b'/');

pub fn escape_path(name: &str) -> String {
    utf8_percent_encode(name, NAME_ESCAPE).to_string()
}

pub fn escape_full_path(path: &str) -> String {
    utf8_percent_encode(path, PATH_ESCAPE).to_string()
}

/// `/user/alice/` or `/user/alice/gpu/`.
pub fn server_prefix(user: &str, server: &str) -> String {
    if server.is_empty() {
        format!("/user/{}/", escape_path(user))
    } else {
        format!("/user/{}/{}/", escape_path(user), escape_path(server))
    }
}

/// `jupyterhub-user-alice` or `jupyterhub-user-alice-gpu` (protocol §4.1).
pub fn oauth_client_id(user: &str, server: &str) -> String {
    if server.is_empty() {
        format!("jupyterhub-user-{}", escape_path(user))
    } else {
        format!(
            "jupyterhub-user-{}-{}",
            escape_path(user),
            escape_path(server)
        )
    }
}

/// Where users' servers live when each user has a host of their own (upstream's
/// `JupyterHub.subdomain_host`): the hub at `scheme://domain[:port]/hub/`, alice's servers at
/// `scheme://alice.domain[:port]/user/alice/`. Origins differ, so one user's pages cannot read
/// the hub's or another user's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubdomainHost {
    scheme: String,
    /// Lower-cased host name, without port.
    domain: String,
    port: Option<u16>,
}

impl SubdomainHost {
    /// Parse `https://hub.example.org[:port]` (no path, query or credentials).
    pub fn parse(value: &str) -> Result<SubdomainHost, String> {
        let url = url::Url::parse(value).map_err(|e| format!("{value:?} is not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{value:?} must start with http:// or https://"));
        }
        let Some(domain) = url.host_str().filter(|h| !h.is_empty()) else {
            return Err(format!("{value:?} has no host name"));
        };
        if matches!(url.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_))) {
            return Err(format!(
                "{value:?} is an IP address: users' servers need host names under it (e.g. http://localhost:8000 or https://hub.example.org)"
            ));
        }
        if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
            return Err(format!(
                "{value:?} must be only scheme, host and port (no path, query or user)"
            ));
        }
        Ok(SubdomainHost {
            scheme: url.scheme().to_owned(),
            domain: domain.trim_end_matches('.').to_ascii_lowercase(),
            port: url.port(),
        })
    }

    pub fn is_https(&self) -> bool {
        self.scheme == "https"
    }

    /// The hub's own host name (`hub.example.org`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    fn origin_of(&self, host: &str) -> String {
        match self.port {
            Some(port) => format!("{}://{host}:{port}", self.scheme),
            None => format!("{}://{host}", self.scheme),
        }
    }

    /// `https://hub.example.org`: where the hub's pages are.
    pub fn hub_origin(&self) -> String {
        self.origin_of(&self.domain)
    }

    /// `alice.hub.example.org` (upstream's `subdomain_hook_idna`, kind `user`).
    pub fn user_domain(&self, user: &str) -> String {
        format!("{}.{}", dns_label(user), self.domain)
    }

    /// `scheme://alice.hub.example.org[:port]`.
    pub fn user_origin(&self, user: &str) -> String {
        self.origin_of(&self.user_domain(user))
    }

    /// `scheme://*.hub.example.org[:port]`: every user's and service's host, as a CSP source.
    pub fn any_user_origin(&self) -> String {
        self.origin_of(&format!("*.{}", self.domain))
    }

    /// `metrics--service.hub.example.org` (kind `service`).
    pub fn service_domain(&self, service: &str) -> String {
        format!("{}--service.{}", dns_label(service), self.domain)
    }

    pub fn service_origin(&self, service: &str) -> String {
        self.origin_of(&self.service_domain(service))
    }

    /// Whether a request's `Host` (any case, with or without port) is one of the hosts under
    /// the hub's domain, which belong to users and services, never to the hub.
    pub fn is_under(&self, host: &str) -> bool {
        let host = host_without_port(host).to_ascii_lowercase();
        host.len() > self.domain.len() + 1
            && host.ends_with(&self.domain)
            && host.as_bytes()[host.len() - self.domain.len() - 1] == b'.'
    }
}

/// `host[:port]` → `host` (IPv6 literals keep their brackets).
pub fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// A user or service name as one DNS label, as upstream's `_strict_dns_safe_encode`: the name
/// itself when it is a safe label, else its IDNA form when that is, else `u-<stub>--<hash>`.
/// One difference, for isolation: a name with capital letters always takes the hash form.
/// Upstream keeps `Alice` as is, and since browsers lower-case host names, `Alice` and `alice`
/// would share an origin.
pub fn dns_label(name: &str) -> String {
    if name.contains("--") || name.chars().any(|c| c.is_ascii_uppercase()) {
        return trim_and_hash(name);
    }
    if is_dns_safe(name) {
        return name.to_owned();
    }
    match idna::domain_to_ascii_strict(name) {
        Ok(encoded) if encoded != name && is_dns_safe(&encoded) => encoded,
        _ => trim_and_hash(name),
    }
}

fn is_dns_safe(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.chars().all(|c| c.is_ascii_digit())
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Always a valid, unique label: `u-` + up to 8 safe characters + `--` + 7 hex of SHA-256.
fn trim_and_hash(name: &str) -> String {
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(name.as_bytes()));
    let stub: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .take(8)
        .collect();
    let stub = if stub.is_empty() {
        "x".to_owned()
    } else {
        stub
    };
    format!("u-{stub}--{}", &hash[..7])
}

/// `next` as a same-origin path, or `None` when it could send the browser elsewhere
/// (absolute URLs, `//host`, backslashes, control characters).
pub fn safe_next(next: &str) -> Option<String> {
    if !next.starts_with('/')
        || next.starts_with("//")
        || next.contains('\\')
        || next.chars().any(|c| c.is_control())
    {
        return None;
    }
    let base = url::Url::parse("http://hub.invalid/").ok()?;
    let joined = base.join(next).ok()?;
    if joined.host_str() != Some("hub.invalid") || joined.scheme() != "http" {
        return None;
    }
    let mut path = joined.path().to_string();
    // Dot segments can turn `/.//evil.example` into `//evil.example` once
    // normalised: a network-path reference, i.e. another site.
    if path.starts_with("//") {
        return None;
    }
    if let Some(query) = joined.query() {
        path.push('?');
        path.push_str(query);
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_client_ids_follow_jupyterhub() {
        assert_eq!(server_prefix("alice", ""), "/user/alice/");
        assert_eq!(server_prefix("alice", "gpu"), "/user/alice/gpu/");
        assert_eq!(server_prefix("a b@x", ""), "/user/a%20b@x/");
        assert_eq!(oauth_client_id("alice", ""), "jupyterhub-user-alice");
        assert_eq!(oauth_client_id("alice", "gpu"), "jupyterhub-user-alice-gpu");
        assert_eq!(oauth_client_id("a@b", ""), "jupyterhub-user-a@b");
    }

    #[test]
    fn dns_labels_follow_upstream() {
        // From jupyterhub 6.1's `subdomain_hook_idna` (tests/subdomains.rs compares live).
        for (name, label) in [
            ("alice", "alice"),
            ("jöhn", "xn--jhn-sna"),
            ("a_b", "u-ab--648fa9b"),
            ("a--b", "u-ab--90827a2"),
            ("a.b", "u-ab--2e7336d"),
            ("123", "u-123--a665a45"),
            ("-ab", "u-ab--acac1ee"),
            ("名前", "xn--ldr85b"),
            ("user@example.org", "u-userexam--d159ef6"),
        ] {
            assert_eq!(dns_label(name), label, "{name}");
        }
        assert!(dns_label(&"x".repeat(70)).starts_with("u-xxxxxxxx--"));
        // Ours: capitals never share a host with the lower-case name.
        assert_ne!(dns_label("Alice"), "alice");
        assert!(dns_label("Alice").starts_with("u-alice--"));
    }

    #[test]
    fn subdomain_hosts() {
        let sub = SubdomainHost::parse("http://LocalHost:8000").unwrap();
        assert_eq!(sub.hub_origin(), "http://localhost:8000");
        assert_eq!(sub.user_origin("alice"), "http://alice.localhost:8000");
        assert_eq!(
            sub.service_origin("grafana"),
            "http://grafana--service.localhost:8000"
        );
        assert_eq!(sub.any_user_origin(), "http://*.localhost:8000");
        assert!(sub.is_under("alice.localhost:8000"));
        assert!(sub.is_under("Alice.LOCALHOST"));
        assert!(!sub.is_under("localhost:8000"));
        assert!(!sub.is_under("evillocalhost"));
        assert!(!sub.is_under("127.0.0.1:8000"));
        let https = SubdomainHost::parse("https://hub.example.org/").unwrap();
        assert!(https.is_https());
        assert_eq!(https.user_origin("bob"), "https://bob.hub.example.org");
        for bad in [
            "hub.example.org",
            "ftp://hub.example.org",
            "https://hub.example.org/prefix/",
            "http://127.0.0.1:8000",
            "https://u:p@hub.example.org",
        ] {
            assert!(SubdomainHost::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn next_must_stay_on_this_site() {
        assert_eq!(safe_next("/hub/home").as_deref(), Some("/hub/home"));
        assert_eq!(
            safe_next("/user/alice/lab?a=1").as_deref(),
            Some("/user/alice/lab?a=1")
        );
        for evil in [
            "https://evil.example/",
            "//evil.example/x",
            "/\\evil.example",
            "\\\\evil.example",
            "evil.example",
            "javascript:alert(1)",
            "/\t/evil.example",
            "/.//evil.example",
            "/a/..//evil.example",
            "/%2e//evil.example",
            "",
        ] {
            assert_eq!(safe_next(evil), None, "{evil:?} accepted");
        }
        // Dot segments cannot climb out of the site either.
        assert_eq!(safe_next("/../../etc").as_deref(), Some("/etc"));
    }
}
