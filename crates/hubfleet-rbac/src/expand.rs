//! Expansion of raw scopes: metascopes, self-referencing filters and subscopes.

use std::collections::BTreeSet;
use std::fmt;

use crate::error::RbacError;
use crate::parsed::reduce_scopes;
use crate::scope::{check_scopes_exist, implied_names, CustomScopes, Scope, SELF};

/// Who owns a token, or holds roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A user and the names of the groups they are in.
    User {
        /// The user's name.
        name: String,
        /// The user's groups.
        groups: Vec<String>,
    },
    /// A service.
    Service {
        /// The service's name.
        name: String,
    },
}

impl Owner {
    /// A user owner without groups.
    pub fn user(name: impl Into<String>) -> Self {
        Owner::User {
            name: name.into(),
            groups: Vec::new(),
        }
    }

    /// A service owner.
    pub fn service(name: impl Into<String>) -> Self {
        Owner::Service { name: name.into() }
    }

    /// The owner's name.
    pub fn name(&self) -> &str {
        match self {
            Owner::User { name, .. } | Owner::Service { name } => name,
        }
    }

    /// The user's name, if the owner is a user.
    pub fn user_name(&self) -> Option<&str> {
        match self {
            Owner::User { name, .. } => Some(name),
            Owner::Service { .. } => None,
        }
    }
}

impl fmt::Display for Owner {
    /// `User alice` or `Service cull`, as in JupyterHub's messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::User { name, .. } => write!(f, "User {name}"),
            Owner::Service { name } => write!(f, "Service {name}"),
        }
    }
}

/// The OAuth client that issued a token, by what it stands for. The hub's own `jupyterhub`
/// client (ordinary API tokens) is represented by `None` where an `Option<&ClientRef>` is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientRef {
    /// A user's server (`jupyterhub-user-<name>[-<server>]`); `server` is `""` for the default.
    Server {
        /// The server's user.
        user: String,
        /// The server's name.
        server: String,
    },
    /// A service (`service-<name>`).
    Service {
        /// The service's name.
        name: String,
    },
}

impl ClientRef {
    /// A user's server.
    pub fn server(user: impl Into<String>, server: impl Into<String>) -> Self {
        ClientRef::Server {
            user: user.into(),
            server: server.into(),
        }
    }

    /// A service.
    pub fn service(name: impl Into<String>) -> Self {
        ClientRef::Service { name: name.into() }
    }
}

/// The raw scopes the `self` metascope stands for in 6.0, before `!user=<name>` is added.
pub const SELF_SCOPES: &[&str] = &[
    "read:users",
    "users:shares",
    "read:shares",
    "users:activity",
    "servers",
    "tokens",
    "access:servers",
];

/// One raw scope and all its subscopes, each carrying the scope's filter, except that with a
/// `!server` filter the `read:users*` subscopes are dropped (`_expand_scope`). Self-referencing
/// filters are left as they are; an unknown base expands to itself.
pub fn expand_scope(raw: &str) -> BTreeSet<String> {
    expand_scope_with(raw, &CustomScopes::default())
}

/// [`expand_scope`] with custom scope definitions.
pub fn expand_scope_with(raw: &str, custom: &CustomScopes) -> BTreeSet<String> {
    let (base, filter) = match raw.split_once('!') {
        Some((b, f)) => (b, Some(f)),
        None => (raw, None),
    };
    let names = implied_names(base, custom);
    match filter {
        None => names,
        Some(filter) => names
            .into_iter()
            // `!server` makes no sense on cross-resource subscopes (read:servers → read:users:name)
            .filter(|name| !(filter.starts_with("server") && name.starts_with("read:user")))
            .map(|name| format!("{name}!{filter}"))
            .collect(),
    }
}

/// What `self` means for user `user_name`: the full expansion of [`SELF_SCOPES`], each with
/// `!user=<user_name>` (`_expand_self_scope`).
pub fn self_scopes(user_name: &str) -> BTreeSet<String> {
    SELF_SCOPES
        .iter()
        .flat_map(|s| expand_scope(s))
        .map(|s| format!("{s}!user={user_name}"))
        .collect()
}

/// Fully expand raw scopes for an owner (`expand_scopes`).
///
/// * subscopes are added, carrying the filter (see [`expand_scope`]);
/// * `!user` → `!user=<owner>`; `!service` → `!service=<client service or owning service>`;
///   `!server` → `!server=<user>/<server>` of the issuing OAuth server client; a
///   self-referencing filter with nothing to refer to is dropped;
/// * `self` → [`self_scopes`] for a user owner, nothing for a service;
/// * the result is reduced (an unfiltered scope swallows its filtered variants).
///
/// Invalid raw scopes are skipped: validate them when they are written (role definitions,
/// token requests) with [`try_expand_scopes`] or [`check_scopes_exist`].
pub fn expand_scopes<S: AsRef<str>>(
    raw: &[S],
    owner: &Owner,
    oauth_client: Option<&ClientRef>,
) -> BTreeSet<String> {
    expand_scopes_with(raw, Some(owner), oauth_client, &CustomScopes::default())
}

/// [`expand_scopes`] reporting invalid scopes instead of skipping them.
///
/// # Errors
///
/// The first scope that fails [`check_scopes_exist`].
pub fn try_expand_scopes<S: AsRef<str>>(
    raw: &[S],
    owner: &Owner,
    oauth_client: Option<&ClientRef>,
    custom: &CustomScopes,
) -> Result<BTreeSet<String>, RbacError> {
    check_scopes_exist(raw, custom)?;
    Ok(expand_scopes_with(raw, Some(owner), oauth_client, custom))
}

/// [`expand_scopes`] with an optional owner and custom scope definitions.
pub fn expand_scopes_with<S: AsRef<str>>(
    raw: &[S],
    owner: Option<&Owner>,
    oauth_client: Option<&ClientRef>,
    custom: &CustomScopes,
) -> BTreeSet<String> {
    let mut expanded = BTreeSet::new();
    for s in raw {
        let s = s.as_ref();
        if Scope::parse(s).is_err() {
            continue;
        }
        expanded.extend(expand_scope_with(s, custom));
    }

    let mut user_filter = None;
    let mut service_filter = None;
    let mut server_filter = None;
    match owner {
        Some(Owner::User { name, .. }) => user_filter = Some(format!("user={name}")),
        Some(Owner::Service { name }) => service_filter = Some(format!("service={name}")),
        None => {}
    }
    match oauth_client {
        Some(ClientRef::Service { name }) => service_filter = Some(format!("service={name}")),
        Some(ClientRef::Server { user, server }) => {
            server_filter = Some(format!("server={user}/{server}"));
        }
        None => {}
    }

    let mut out = BTreeSet::new();
    for scope in expanded {
        let Some((base, filter)) = scope.split_once('!') else {
            out.insert(scope);
            continue;
        };
        let replacement = match filter {
            "user" => &user_filter,
            "service" => &service_filter,
            "server" => &server_filter,
            _ => {
                out.insert(scope);
                continue;
            }
        };
        if let Some(r) = replacement {
            out.insert(format!("{base}!{r}"));
        }
    }

    if out.remove(SELF) {
        if let Some(Owner::User { name, .. }) = owner {
            out.extend(self_scopes(name));
        }
    }
    reduce_scopes(&out)
}

/// The scopes that let a token's owner identify itself (`identify_scopes(owner)`):
/// `read:users:name!user=<u>` and `read:users:groups!user=<u>` for a user,
/// `read:services:name!service=<s>` for a service.
pub fn identify_scopes(owner: &Owner) -> BTreeSet<String> {
    match owner {
        Owner::User { name, .. } => BTreeSet::from([
            format!("read:users:groups!user={name}"),
            format!("read:users:name!user={name}"),
        ]),
        Owner::Service { name } => BTreeSet::from([format!("read:services:name!service={name}")]),
    }
}

/// The raw identify scopes (`identify_scopes()`): `read:users:name!user`,
/// `read:users:groups!user`.
pub fn identify_scopes_raw() -> BTreeSet<String> {
    BTreeSet::from([
        "read:users:groups!user".to_string(),
        "read:users:name!user".to_string(),
    ])
}

/// The scope needed to access an OAuth client (`access_scopes`):
/// `access:servers!server=<user>/<server>` or `access:services!service=<name>`.
pub fn access_scopes(client: &ClientRef) -> BTreeSet<String> {
    let scope = match client {
        ClientRef::Server { user, server } => format!("access:servers!server={user}/{server}"),
        ClientRef::Service { name } => format!("access:services!service={name}"),
    };
    BTreeSet::from([scope])
}
