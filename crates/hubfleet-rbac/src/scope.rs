//! The scope table and the syntax of a single scope string.
//!
//! A scope string is `base` or `base!filter`. The base is one of [`SCOPE_DEFINITIONS`] or a
//! `custom:` scope; the filter is `user=<name>`, `server=<user>/<server>`, `group=<name>`,
//! `service=<name>`, or one of the self-referencing `user`, `server`, `service` that only
//! raw scopes (roles, token requests) may contain.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::RbacError;

/// One row of the scope table (`scopes.scope_definitions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopeDef {
    /// The scope's name, e.g. `read:users`.
    pub name: &'static str,
    /// The short description shown on the OAuth confirmation page.
    pub description: &'static str,
    /// The longer description used in the docs and the REST API spec, where it differs.
    pub doc_description: Option<&'static str>,
    /// The scopes this one directly implies.
    pub subscopes: &'static [&'static str],
}

impl ScopeDef {
    /// The description used by the documentation and `rest-api.yml`.
    pub fn doc_description(&self) -> &'static str {
        self.doc_description.unwrap_or(self.description)
    }
}

const fn def(
    name: &'static str,
    description: &'static str,
    subscopes: &'static [&'static str],
) -> ScopeDef {
    ScopeDef {
        name,
        description,
        doc_description: None,
        subscopes,
    }
}

/// Name of the metascope for a user's own resources.
pub const SELF: &str = "self";
/// Name of the metascope meaning "everything the token's owner holds".
pub const INHERIT: &str = "inherit";
/// Name of the pseudo-scope describing the identify-only permission.
pub const NO_SCOPE: &str = "(no_scope)";

/// The JupyterHub 6.0 scope table, in upstream order.
pub const SCOPE_DEFINITIONS: &[ScopeDef] = &[
    def(NO_SCOPE, "Identify the owner of the requesting entity.", &[]),
    ScopeDef {
        name: SELF,
        description: "Your own resources",
        doc_description: Some(
            "The user’s own resources _(metascope for users, resolves to (no_scope) for services)_",
        ),
        subscopes: &[],
    },
    ScopeDef {
        name: INHERIT,
        description: "Anything you have access to",
        doc_description: Some(
            "Everything that the token-owning entity can access _(metascope for tokens)_",
        ),
        subscopes: &[],
    },
    ScopeDef {
        name: "admin-ui",
        description: "Access the admin page.",
        doc_description: Some(
            "Access the admin page. Permission to take actions via the admin page granted separately.",
        ),
        subscopes: &[],
    },
    def(
        "admin:users",
        "Read, modify, create, and delete users and their authentication state, not including their servers or tokens. This is an extremely privileged scope and should be considered tantamount to superuser.",
        &["admin:auth_state", "users", "read:roles:users", "delete:users"],
    ),
    def("admin:auth_state", "Read a user’s authentication state.", &[]),
    def(
        "users",
        "Read and write permissions to user models (excluding servers, tokens and authentication state).",
        &["read:users", "list:users", "users:activity"],
    ),
    def("delete:users", "Delete users.", &[]),
    def(
        "list:users",
        "List users, including at least their names.",
        &["read:users:name"],
    ),
    def(
        "read:users",
        "Read user models (including the URL of the default server if it is running).",
        &["read:users:name", "read:users:groups", "read:users:activity"],
    ),
    def("read:users:name", "Read names of users.", &[]),
    def("read:users:groups", "Read users’ group membership.", &[]),
    def("read:users:activity", "Read time of last user activity.", &[]),
    def(
        "read:roles",
        "Read role assignments.",
        &["read:roles:users", "read:roles:services", "read:roles:groups"],
    ),
    def("read:roles:users", "Read user role assignments.", &[]),
    def("read:roles:services", "Read service role assignments.", &[]),
    def("read:roles:groups", "Read group role assignments.", &[]),
    def(
        "users:activity",
        "Update time of last user activity.",
        &["read:users:activity"],
    ),
    def(
        "admin:servers",
        "Read, start, stop, create and delete user servers and their state.",
        &["admin:server_state", "servers"],
    ),
    def("admin:server_state", "Read and write users’ server state.", &[]),
    def(
        "servers",
        "Start and stop user servers.",
        &["read:servers", "start:servers", "delete:servers"],
    ),
    def(
        "read:servers",
        "Read users’ names and their server models (excluding the server state).",
        &["read:users:name"],
    ),
    def(
        "start:servers",
        "Start and edit users' servers. (added in JupyterHub 6)",
        &[],
    ),
    def("delete:servers", "Stop and delete users' servers.", &[]),
    def(
        "tokens",
        "Read, write, create and delete user tokens.",
        &["read:tokens"],
    ),
    def("read:tokens", "Read user tokens.", &[]),
    def(
        "admin:groups",
        "Read and write group information, create and delete groups.",
        &["groups", "read:roles:groups", "delete:groups"],
    ),
    def(
        "groups",
        "Read and write group information, including adding/removing any users to/from groups. Note: adding users to groups may affect permissions.",
        &["read:groups", "list:groups"],
    ),
    def(
        "list:groups",
        "List groups, including at least their names.",
        &["read:groups:name"],
    ),
    def("read:groups", "Read group models.", &["read:groups:name"]),
    def("read:groups:name", "Read group names.", &[]),
    def("delete:groups", "Delete groups.", &[]),
    def(
        "admin:services",
        "Create, read, update, delete services, not including services defined from config files.",
        &["list:services", "read:services", "read:roles:services"],
    ),
    def(
        "list:services",
        "List services, including at least their names.",
        &["read:services:name"],
    ),
    def("read:services", "Read service models.", &["read:services:name"]),
    def("read:services:name", "Read service names.", &[]),
    def("read:hub", "Read detailed information about the Hub.", &[]),
    def("access:servers", "Access user servers via API or browser.", &[]),
    def("access:services", "Access services via API or browser.", &[]),
    def(
        "users:shares",
        "Read and revoke a user's access to shared servers.",
        &["read:users:shares"],
    ),
    def("read:users:shares", "Read servers shared with a user.", &[]),
    def(
        "groups:shares",
        "Read and revoke a group's access to shared servers.",
        &["read:groups:shares"],
    ),
    def("read:groups:shares", "Read servers shared with a group.", &[]),
    def(
        "read:shares",
        "Read information about shared access to servers.",
        &[],
    ),
    def(
        "shares",
        "Manage access to shared servers.",
        &["access:servers", "read:shares", "users:shares", "groups:shares"],
    ),
    def(
        "proxy",
        "Read information about the proxy’s routing table, sync the Hub with the proxy and notify the Hub about a new proxy.",
        &[],
    ),
    def("shutdown", "Shutdown the hub.", &[]),
    def("read:metrics", "Read prometheus metrics.", &[]),
    // hubfleet's own ([`HUBFLEET_SCOPES`]), after upstream's.
    def(
        "admin:hub",
        "Change the hub's configuration: reload it from its files.",
        &[],
    ),
    def(
        "admin:environments",
        "Create, edit, hide, delete and restore profiles and local environments (hubfleet). With `!group=<g>`: only profiles limited to groups that are all within the filter.",
        &[],
    ),
];

/// Scopes hubfleet adds to JupyterHub's (at the end of [`SCOPE_DEFINITIONS`]; not in upstream's REST API spec).
pub const HUBFLEET_SCOPES: &[&str] = &["admin:hub", "admin:environments"];

/// The table row of a built-in scope.
pub fn scope_definition(name: &str) -> Option<&'static ScopeDef> {
    SCOPE_DEFINITIONS.iter().find(|d| d.name == name)
}

/// Whether `name` (a base scope, without filter) is a built-in scope.
pub fn is_known_scope(name: &str) -> bool {
    scope_definition(name).is_some()
}

/// Whether `name` matches JupyterHub's custom scope pattern
/// `^custom:[a-z0-9][a-z0-9_\-\*:]+[a-z0-9_\*]$`.
pub fn is_valid_custom_scope_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("custom:") else {
        return false;
    };
    let bytes = rest.as_bytes();
    if bytes.len() < 3 {
        return false;
    }
    let first_ok = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let middle_ok = |c: u8| first_ok(c) || matches!(c, b'_' | b'-' | b'*' | b':');
    let last_ok = |c: u8| first_ok(c) || matches!(c, b'_' | b'*');
    first_ok(bytes[0])
        && bytes[1..bytes.len() - 1].iter().all(|&c| middle_ok(c))
        && last_ok(bytes[bytes.len() - 1])
}

/// The kind of resource a filter selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterKind {
    /// `!user=<name>`
    User,
    /// `!server=<user>/<server>`
    Server,
    /// `!group=<name>`
    Group,
    /// `!service=<name>`
    Service,
}

impl FilterKind {
    /// The spelling used in scope strings.
    pub fn as_str(self) -> &'static str {
        match self {
            FilterKind::User => "user",
            FilterKind::Server => "server",
            FilterKind::Group => "group",
            FilterKind::Service => "service",
        }
    }

    /// Parse the spelling used in scope strings.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "user" => Some(FilterKind::User),
            "server" => Some(FilterKind::Server),
            "group" => Some(FilterKind::Group),
            "service" => Some(FilterKind::Service),
            _ => None,
        }
    }
}

impl fmt::Display for FilterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The filter part of a scope (after the `!`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Filter {
    /// `!user=<name>`
    User(String),
    /// `!server=<user>/<server>`; the default server is `<user>/`.
    Server(String),
    /// `!group=<name>`
    Group(String),
    /// `!service=<name>`
    Service(String),
    /// `!user`: the owning user (raw scopes only).
    SelfUser,
    /// `!server`: the issuing OAuth client's server, or the server a server token is for
    /// (raw scopes only).
    SelfServer,
    /// `!service`: the issuing OAuth client's service or the owning service (raw scopes only).
    SelfService,
}

impl Filter {
    /// The resource kind the filter selects.
    pub fn kind(&self) -> FilterKind {
        match self {
            Filter::User(_) | Filter::SelfUser => FilterKind::User,
            Filter::Server(_) | Filter::SelfServer => FilterKind::Server,
            Filter::Group(_) => FilterKind::Group,
            Filter::Service(_) | Filter::SelfService => FilterKind::Service,
        }
    }

    /// The filter's value; `None` for the self-referencing filters.
    pub fn value(&self) -> Option<&str> {
        match self {
            Filter::User(v) | Filter::Server(v) | Filter::Group(v) | Filter::Service(v) => Some(v),
            Filter::SelfUser | Filter::SelfServer | Filter::SelfService => None,
        }
    }

    /// Whether this is one of the self-referencing filters (`!user`, `!server`, `!service`).
    pub fn is_self_referencing(&self) -> bool {
        self.value().is_none()
    }

    /// Build a resolved filter from kind and value.
    pub fn new(kind: FilterKind, value: impl Into<String>) -> Self {
        let value = value.into();
        match kind {
            FilterKind::User => Filter::User(value),
            FilterKind::Server => Filter::Server(value),
            FilterKind::Group => Filter::Group(value),
            FilterKind::Service => Filter::Service(value),
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value() {
            Some(v) => write!(f, "{}={}", self.kind(), v),
            None => f.write_str(self.kind().as_str()),
        }
    }
}

/// One parsed scope string: a base and an optional filter.
///
/// Parsing checks that the base exists (or is a well-formed `custom:` scope) and that the
/// filter is valid. `Display` gives back JupyterHub's spelling (`base!kind=value`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope {
    /// The base scope name, e.g. `read:users`.
    pub base: String,
    /// The filter, if any.
    pub filter: Option<Filter>,
}

impl Scope {
    /// An unfiltered scope.
    pub fn new(base: impl Into<String>) -> Self {
        Scope {
            base: base.into(),
            filter: None,
        }
    }

    /// A filtered scope.
    pub fn with_filter(base: impl Into<String>, filter: Filter) -> Self {
        Scope {
            base: base.into(),
            filter: Some(filter),
        }
    }

    /// Parse and validate one scope string.
    ///
    /// # Errors
    ///
    /// [`RbacError::UnknownScope`] (with a suggestion when a known scope is close),
    /// [`RbacError::DraftScopeAll`], [`RbacError::InvalidCustomScope`],
    /// [`RbacError::UnknownFilter`] or [`RbacError::EmptyFilterValue`].
    pub fn parse(s: &str) -> Result<Self, RbacError> {
        let (base, filter) = match s.split_once('!') {
            Some((b, f)) => (b, Some(f)),
            None => (s, None),
        };
        check_base(base, s)?;
        let filter = match filter {
            None => None,
            Some(f) => Some(parse_filter(f, s)?),
        };
        Ok(Scope {
            base: base.to_string(),
            filter,
        })
    }

    /// Whether the base is a `custom:` scope.
    pub fn is_custom(&self) -> bool {
        self.base.starts_with("custom:")
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.filter {
            Some(filter) => write!(f, "{}!{}", self.base, filter),
            None => f.write_str(&self.base),
        }
    }
}

impl FromStr for Scope {
    type Err = RbacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::parse(s)
    }
}

fn check_base(base: &str, scope: &str) -> Result<(), RbacError> {
    if is_known_scope(base) {
        return Ok(());
    }
    if base == "all" {
        return Err(RbacError::DraftScopeAll {
            scope: scope.to_string(),
        });
    }
    if base.starts_with("custom:") {
        if is_valid_custom_scope_name(base) {
            return Ok(());
        }
        return Err(RbacError::InvalidCustomScope {
            scope: scope.to_string(),
        });
    }
    Err(RbacError::UnknownScope {
        scope: scope.to_string(),
        suggestion: suggest(base).map(str::to_string),
    })
}

fn parse_filter(filter: &str, scope: &str) -> Result<Filter, RbacError> {
    match filter {
        "user" => return Ok(Filter::SelfUser),
        "server" => return Ok(Filter::SelfServer),
        "service" => return Ok(Filter::SelfService),
        _ => {}
    }
    let unknown = || RbacError::UnknownFilter {
        scope: scope.to_string(),
        filter: filter.to_string(),
    };
    let (kind, value) = filter.split_once('=').ok_or_else(unknown)?;
    let kind = FilterKind::from_name(kind).ok_or_else(unknown)?;
    if value.is_empty() {
        return Err(RbacError::EmptyFilterValue {
            scope: scope.to_string(),
            kind: kind.as_str().to_string(),
        });
    }
    Ok(Filter::new(kind, value))
}

/// The closest known scope name to `base`, if it is close enough to be a likely typo.
pub fn suggest(base: &str) -> Option<&'static str> {
    let limit = (base.chars().count() / 3).clamp(1, 4);
    SCOPE_DEFINITIONS
        .iter()
        .map(|d| (edit_distance(base, d.name), d.name))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| name)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Parse and validate many raw scopes, reporting the first error.
///
/// Custom scopes must be defined in `custom` (`_check_scopes_exist`).
///
/// # Errors
///
/// As [`Scope::parse`], plus [`RbacError::UndefinedCustomScope`].
pub fn check_scopes_exist<S: AsRef<str>>(
    scopes: &[S],
    custom: &CustomScopes,
) -> Result<Vec<Scope>, RbacError> {
    scopes
        .iter()
        .map(|s| {
            let scope = Scope::parse(s.as_ref())?;
            if scope.is_custom() && custom.get(&scope.base).is_none() {
                return Err(RbacError::UndefinedCustomScope {
                    scope: s.as_ref().to_string(),
                });
            }
            Ok(scope)
        })
        .collect()
}

/// Definition of one custom scope (`JupyterHub.custom_scopes` value).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CustomScopeDef {
    /// Shown on the OAuth confirmation page.
    pub description: String,
    /// Other custom scopes this one implies.
    #[serde(default)]
    pub subscopes: Vec<String>,
}

/// The custom scopes defined by config (`JupyterHub.custom_scopes`), validated.
///
/// `CustomScopes::default()` defines none; expansion then treats any well-formed `custom:`
/// scope as having no subscopes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CustomScopes {
    defs: BTreeMap<String, CustomScopeDef>,
}

impl CustomScopes {
    /// Validate and register custom scope definitions (`define_custom_scopes`).
    ///
    /// # Errors
    ///
    /// [`RbacError::RedefinedScope`] for a built-in name, [`RbacError::InvalidCustomScope`]
    /// for a malformed name, [`RbacError::NonCustomSubscope`] or
    /// [`RbacError::UndefinedSubscope`] for a bad subscope.
    pub fn new(defs: BTreeMap<String, CustomScopeDef>) -> Result<Self, RbacError> {
        for (name, d) in &defs {
            if is_known_scope(name) {
                return Err(RbacError::RedefinedScope {
                    scope: name.clone(),
                });
            }
            if !is_valid_custom_scope_name(name) {
                return Err(RbacError::InvalidCustomScope {
                    scope: name.clone(),
                });
            }
            for sub in &d.subscopes {
                if defs.contains_key(sub) {
                    continue;
                }
                if is_known_scope(sub) {
                    return Err(RbacError::NonCustomSubscope {
                        scope: name.clone(),
                        subscope: sub.clone(),
                    });
                }
                return Err(RbacError::UndefinedSubscope {
                    scope: name.clone(),
                    subscope: sub.clone(),
                });
            }
        }
        Ok(CustomScopes { defs })
    }

    /// The definition of a custom scope.
    pub fn get(&self, name: &str) -> Option<&CustomScopeDef> {
        self.defs.get(name)
    }

    /// All defined custom scope names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.defs.keys().map(String::as_str)
    }

    /// The description of a built-in or custom scope.
    pub fn description<'a>(&'a self, name: &str) -> Option<&'a str> {
        scope_definition(name)
            .map(|d| d.description)
            .or_else(|| self.get(name).map(|d| d.description.as_str()))
    }
}

/// The names a base scope implies, itself included (recursive subscopes, `_expand_scope`
/// without the filter). Unknown names expand to themselves.
pub(crate) fn implied_names(base: &str, custom: &CustomScopes) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![base.to_string()];
    while let Some(name) = stack.pop() {
        if !out.insert(name.clone()) {
            continue;
        }
        if let Some(d) = scope_definition(&name) {
            stack.extend(d.subscopes.iter().map(|s| s.to_string()));
        } else if let Some(d) = custom.get(&name) {
            stack.extend(d.subscopes.iter().cloned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_roundtrip() {
        for s in [
            "read:users",
            "read:users!user=alice",
            "access:servers!server=alice/",
            "access:servers!server=alice/gpu",
            "read:groups!group=students",
            "access:services!service=cull",
            "users:activity!user",
            "access:servers!server",
            "access:services!service",
            "custom:jupyter_server:read:*",
            "self",
            "inherit",
            "(no_scope)",
            // values keep everything after the first `=`
            "read:users!user=a=b",
        ] {
            let scope = Scope::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(scope.to_string(), s);
        }
        let s = Scope::parse("access:servers!server=alice/").unwrap();
        assert_eq!(s.base, "access:servers");
        assert_eq!(s.filter, Some(Filter::Server("alice/".into())));
        assert_eq!(
            Scope::parse("users:activity!user").unwrap().filter,
            Some(Filter::SelfUser)
        );
    }

    #[test]
    fn parse_errors() {
        let cases: &[(&str, RbacError)] = &[
            (
                "read:user",
                RbacError::UnknownScope {
                    scope: "read:user".into(),
                    suggestion: Some("read:users".into()),
                },
            ),
            (
                "read:user!user=alice",
                RbacError::UnknownScope {
                    scope: "read:user!user=alice".into(),
                    suggestion: Some("read:users".into()),
                },
            ),
            (
                "frobnicate:everything",
                RbacError::UnknownScope {
                    scope: "frobnicate:everything".into(),
                    suggestion: None,
                },
            ),
            (
                "all",
                RbacError::DraftScopeAll {
                    scope: "all".into(),
                },
            ),
            (
                "read:users!group",
                RbacError::UnknownFilter {
                    scope: "read:users!group".into(),
                    filter: "group".into(),
                },
            ),
            (
                "read:users!name=alice",
                RbacError::UnknownFilter {
                    scope: "read:users!name=alice".into(),
                    filter: "name=alice".into(),
                },
            ),
            (
                "read:users!user=",
                RbacError::EmptyFilterValue {
                    scope: "read:users!user=".into(),
                    kind: "user".into(),
                },
            ),
            (
                "custom:x",
                RbacError::InvalidCustomScope {
                    scope: "custom:x".into(),
                },
            ),
            (
                "custom:Upper",
                RbacError::InvalidCustomScope {
                    scope: "custom:Upper".into(),
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(&Scope::parse(input).unwrap_err(), expected, "{input}");
        }
        let msg = Scope::parse("read:user").unwrap_err().to_string();
        assert_eq!(msg, "unknown scope `read:user`; did you mean `read:users`?");
        let msg = Scope::parse("read:users!user=").unwrap_err().to_string();
        assert!(msg.contains("`!user=<name>`"), "{msg}");
    }

    #[test]
    fn custom_scope_names() {
        for ok in [
            "custom:abc",
            "custom:jupyter_server:read:contents",
            "custom:a-b",
            "custom:x:*",
            "custom:0_*",
        ] {
            assert!(is_valid_custom_scope_name(ok), "{ok}");
        }
        for bad in [
            "custom:",
            "custom:ab",
            "custom:-ab",
            "custom:ab-",
            "custom:ab:",
            "custom:aBc",
            "custom:a b",
            "custom:_ab",
            "abc",
        ] {
            assert!(!is_valid_custom_scope_name(bad), "{bad}");
        }
    }

    #[test]
    fn custom_scope_definitions() {
        let d = |subs: &[&str]| CustomScopeDef {
            description: "d".into(),
            subscopes: subs.iter().map(|s| s.to_string()).collect(),
        };
        let ok = CustomScopes::new(BTreeMap::from([
            (
                "custom:js:read".to_string(),
                d(&["custom:js:read:contents"]),
            ),
            ("custom:js:read:contents".to_string(), d(&[])),
        ]))
        .unwrap();
        assert_eq!(
            implied_names("custom:js:read", &ok),
            BTreeSet::from(["custom:js:read".into(), "custom:js:read:contents".into()])
        );
        assert!(check_scopes_exist(&["custom:js:read!user=a"], &ok).is_ok());
        assert_eq!(
            check_scopes_exist(&["custom:other"], &ok).unwrap_err(),
            RbacError::UndefinedCustomScope {
                scope: "custom:other".into()
            }
        );
        let err = CustomScopes::new(BTreeMap::from([(
            "custom:jsx".to_string(),
            d(&["read:users"]),
        )]))
        .unwrap_err();
        assert!(matches!(err, RbacError::NonCustomSubscope { .. }));
        let err = CustomScopes::new(BTreeMap::from([(
            "custom:jsx".to_string(),
            d(&["custom:nope"]),
        )]))
        .unwrap_err();
        assert!(matches!(err, RbacError::UndefinedSubscope { .. }));
        let err =
            CustomScopes::new(BTreeMap::from([("read:users".to_string(), d(&[]))])).unwrap_err();
        assert!(matches!(err, RbacError::RedefinedScope { .. }));
        let err =
            CustomScopes::new(BTreeMap::from([("custom:X".to_string(), d(&[]))])).unwrap_err();
        assert!(matches!(err, RbacError::InvalidCustomScope { .. }));
    }

    #[test]
    fn table_has_unique_names_and_known_subscopes() {
        let mut seen = BTreeSet::new();
        for d in SCOPE_DEFINITIONS {
            assert!(seen.insert(d.name), "duplicate {}", d.name);
            for s in d.subscopes {
                assert!(is_known_scope(s), "{} -> unknown {s}", d.name);
            }
        }
        // JupyterHub 6's 48, and hubfleet's `admin:hub` and `admin:environments`.
        assert_eq!(SCOPE_DEFINITIONS.len(), 50);
    }
}
