//! From a request to the key it is routed on, as CHP computes it: the percent-decoded path,
//! behind `/<host>` in host-routing mode.
//!
//! Paths with `.` or `..` segments (also when percent-encoded, or hidden behind an encoded `/`)
//! are refused: routing on the literal path would send `/user/alice/../bob/` to alice's server
//! while the server, after resolving it, serves bob's URL; resolving it instead would let a link
//! that looks like alice's reach bob's. Browsers resolve dot segments before sending, so only
//! hand-made requests carry them.

use std::borrow::Cow;

use http::header::{self, HeaderMap};
use percent_encoding::percent_decode_str;

/// Why a request path cannot be routed (answered with 400).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BadPath {
    DotSegment,
    NotUtf8,
    NoHost,
}

impl BadPath {
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            BadPath::DotSegment => "path has '.' or '..' segments",
            BadPath::NotUtf8 => "path is not UTF-8 after percent-decoding",
            BadPath::NoHost => "host routing needs a Host header",
        }
    }
}

/// The routing key for `raw_path` (the path of the request target, without the query).
pub(crate) fn routing_key<'a>(
    raw_path: &'a str,
    host_routing: Option<&HeaderMap>,
) -> Result<Cow<'a, str>, BadPath> {
    let decoded: Cow<'a, str> = if raw_path.contains('%') {
        percent_decode_str(raw_path)
            .decode_utf8()
            .map_err(|_| BadPath::NotUtf8)?
    } else {
        Cow::Borrowed(raw_path)
    };
    if decoded
        .split('/')
        .flat_map(|seg| seg.split('\\'))
        .any(|part| part == "." || part == "..")
    {
        return Err(BadPath::DotSegment);
    }
    let Some(headers) = host_routing else {
        return Ok(decoded);
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.split(':').next().unwrap_or(h))
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .ok_or(BadPath::NoHost)?;
    let mut key = String::with_capacity(1 + host.len() + decoded.len());
    key.push('/');
    key.extend(host.chars().map(|c| c.to_ascii_lowercase()));
    if !decoded.starts_with('/') {
        key.push('/');
    }
    key.push_str(&decoded);
    Ok(Cow::Owned(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_are_borrowed() {
        let k = routing_key("/user/alice/lab", None).unwrap();
        assert!(matches!(k, Cow::Borrowed("/user/alice/lab")));
    }

    #[test]
    fn percent_decoding_as_chp() {
        assert_eq!(routing_key("/user/a%20b/x", None).unwrap(), "/user/a b/x");
        assert_eq!(routing_key("/user/%E2%9C%93/", None).unwrap(), "/user/✓/");
        assert_eq!(routing_key("/user/%ff", None), Err(BadPath::NotUtf8));
    }

    #[test]
    fn dot_segments_are_refused_in_every_spelling() {
        for p in [
            "/user/alice/../bob/",
            "/user/alice/./x",
            "/user/alice/..",
            "/user/alice/%2e%2e/bob",
            "/user/alice/%2E%2E/bob",
            "/user/alice/.%2e/bob",
            "/user/alice%2F..%2Fbob/",
            "/user/alice/..%5cbob",
            "/..",
        ] {
            assert_eq!(routing_key(p, None), Err(BadPath::DotSegment), "{p}");
        }
        // Dots inside a segment are fine.
        assert!(routing_key("/user/alice/.ipynb_checkpoints/a..b", None).is_ok());
        // Double encoding decodes once, like the upstream will.
        assert_eq!(
            routing_key("/user/alice/%252e%252e/bob", None).unwrap(),
            "/user/alice/%2e%2e/bob"
        );
    }

    #[test]
    fn host_routing_prepends_the_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "Alice.Hub.Example:8443".parse().unwrap());
        assert_eq!(
            routing_key("/user/alice/lab", Some(&h)).unwrap(),
            "/alice.hub.example/user/alice/lab"
        );
        assert_eq!(routing_key("/", Some(&h)).unwrap(), "/alice.hub.example/");
        assert_eq!(
            routing_key("/x", Some(&HeaderMap::new())),
            Err(BadPath::NoHost)
        );
    }
}
