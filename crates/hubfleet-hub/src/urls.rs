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
