//! Authorization checks on expanded scopes: endpoint checks (`needs_scope`), per-item
//! filtering of lists (`check_scope_filter`) and vertical filtering of models.

use std::collections::BTreeSet;

use crate::parsed::{GroupMembership, ParsedScopes, Target};

/// Message of the 403 for requests without valid credentials.
pub const MISSING_CREDENTIALS_MESSAGE: &str = "Missing or invalid credentials.";
/// Message of the 404 for a scope whose filter does not cover the target.
pub const NOT_COVERED_MESSAGE: &str = "No access to resources or resources not found";

/// The outcome of a scope check (protocol §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The scope is held for the target (or unfiltered).
    Granted,
    /// The scope is held, but its filters do not cover the target: answer **404**
    /// "No access to resources or resources not found", the same as a missing resource.
    NotCovered,
    /// The scope is not held (for a request without a target: not held unfiltered):
    /// answer **403** "Action is not authorized with current scopes; requires any of [...]".
    Missing,
}

impl Access {
    /// Whether the action may proceed.
    pub fn is_granted(self) -> bool {
        self == Access::Granted
    }

    /// The HTTP status to answer with, `None` when granted.
    pub fn status(self) -> Option<u16> {
        match self {
            Access::Granted => None,
            Access::NotCovered => Some(404),
            Access::Missing => Some(403),
        }
    }

    /// JupyterHub's error message for a refusal, `None` when granted. `required` are the
    /// scopes of which any one would have sufficed.
    pub fn message(self, required: &[&str]) -> Option<String> {
        match self {
            Access::Granted => None,
            Access::NotCovered => Some(NOT_COVERED_MESSAGE.to_string()),
            Access::Missing => Some(format!(
                "Action is not authorized with current scopes; requires any of [{}]",
                required.join(", ")
            )),
        }
    }
}

/// Whether `held` (expanded scopes) grants `required` (a base scope such as
/// `read:users`) on `target`.
///
/// Unfiltered → [`Access::Granted`]; a filter covering the target (exact match; a server by its
/// user's filter; a user or server by a group filter of a group the user is in) →
/// [`Access::Granted`]; held with other filters → [`Access::NotCovered`] (404), except for
/// [`Target::None`], which needs the unfiltered scope → [`Access::Missing`] (use
/// [`has_scope_post_filter`] for list endpoints); not held → [`Access::Missing`] (403).
pub fn has_scope(
    required: &str,
    target: &Target<'_>,
    held: &BTreeSet<String>,
    membership: &dyn GroupMembership,
) -> Access {
    needs_any_scope(&[required], target, &ParsedScopes::parse(held), membership)
}

/// The endpoint check (`needs_scope(*required)`): any one of `required` on `target` suffices.
///
/// If none grants access, the answer is [`Access::NotCovered`] (404) when the target is a
/// specific resource and some required scope is held with a filter, else
/// [`Access::Missing`] (403).
pub fn needs_any_scope(
    required: &[&str],
    target: &Target<'_>,
    held: &ParsedScopes,
    membership: &dyn GroupMembership,
) -> Access {
    if required.iter().any(|r| held.covers(r, target, membership)) {
        return Access::Granted;
    }
    if *target != Target::None && required.iter().any(|r| held.contains_base(r)) {
        Access::NotCovered
    } else {
        Access::Missing
    }
}

/// The check of list endpoints (`needs_scope(..., post_filter=True)`): any filtered variant of
/// `required` passes, and the caller must then filter the items with [`post_filter`] or
/// [`ParsedScopes::covers`].
pub fn has_scope_post_filter(required: &str, held: &BTreeSet<String>) -> Access {
    needs_any_scope_post_filter(&[required], &ParsedScopes::parse(held))
}

/// [`has_scope_post_filter`] for several alternative scopes on parsed scopes.
pub fn needs_any_scope_post_filter(required: &[&str], held: &ParsedScopes) -> Access {
    if required.iter().any(|r| held.contains_base(r)) {
        Access::Granted
    } else {
        Access::Missing
    }
}

/// Keep the items whose target is covered by `required` in `held`
/// (`check_scope_filter` per item of a list response).
pub fn post_filter<T, I, F>(
    items: I,
    required: &str,
    held: &ParsedScopes,
    membership: &dyn GroupMembership,
    target_of: F,
) -> Vec<T>
where
    I: IntoIterator<Item = T>,
    F: Fn(&T) -> Target<'_>,
{
    let Some(filters) = held.get(required) else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter(|item| filters.covers(&target_of(item), membership))
        .collect()
}

/// The user model's access map (protocol §2.3.1): scope → keys it reveals.
pub const USER_MODEL_ACCESS: &[(&str, &[&str])] = &[
    (
        "read:users",
        &[
            "kind",
            "name",
            "user_info",
            "admin",
            "roles",
            "groups",
            "server",
            "pending",
            "created",
            "last_activity",
        ],
    ),
    ("read:users:name", &["kind", "name", "user_info", "admin"]),
    ("read:users:groups", &["kind", "name", "groups"]),
    ("read:users:activity", &["kind", "name", "last_activity"]),
    ("read:servers", &["kind", "name", "servers"]),
    ("read:roles:users", &["kind", "name", "roles", "admin"]),
    ("admin:auth_state", &["kind", "name", "auth_state"]),
];

/// The group model's access map (protocol §2.3.3).
pub const GROUP_MODEL_ACCESS: &[(&str, &[&str])] = &[
    ("read:groups", &["kind", "name", "properties", "users"]),
    ("read:groups:name", &["kind", "name"]),
    ("read:roles:groups", &["kind", "name", "roles"]),
];

/// The service model's access map (protocol §2.3.4).
pub const SERVICE_MODEL_ACCESS: &[(&str, &[&str])] = &[
    (
        "read:services",
        &[
            "kind", "name", "admin", "url", "prefix", "command", "pid", "info", "display",
        ],
    ),
    ("read:services:name", &["kind", "name", "admin"]),
    ("read:roles:services", &["kind", "name", "roles", "admin"]),
];

/// The keys of a model with access map `access` (one of [`USER_MODEL_ACCESS`],
/// [`GROUP_MODEL_ACCESS`], [`SERVICE_MODEL_ACCESS`]) that `held` may see on `target`
/// (`_filter_model`). Use this with scopes parsed once when filtering many models.
pub fn model_keys(
    access: &'static [(&'static str, &'static [&'static str])],
    held: &ParsedScopes,
    target: &Target<'_>,
    membership: &dyn GroupMembership,
) -> BTreeSet<&'static str> {
    access
        .iter()
        .filter(|(scope, _)| held.covers(scope, target, membership))
        .flat_map(|(_, keys)| keys.iter().copied())
        .collect()
}

/// The user-model keys `held` may see for user `user_name` (vertical filtering, §2.3.1).
///
/// Empty means the model is not readable at all. Whether `servers` is present and which
/// servers it lists is decided per server with `read:servers` (see [`ParsedScopes::covers`]
/// with [`Target::Server`]); `membership` resolves group filters.
pub fn user_model_keys(
    held: &BTreeSet<String>,
    user_name: &str,
    membership: &dyn GroupMembership,
) -> BTreeSet<&'static str> {
    model_keys(
        USER_MODEL_ACCESS,
        &ParsedScopes::parse(held),
        &Target::User(user_name),
        membership,
    )
}

/// The group-model keys `held` may see for group `group_name` (§2.3.3).
pub fn group_model_keys(held: &BTreeSet<String>, group_name: &str) -> BTreeSet<&'static str> {
    model_keys(
        GROUP_MODEL_ACCESS,
        &ParsedScopes::parse(held),
        &Target::Group(group_name),
        &crate::parsed::NoGroups,
    )
}

/// The service-model keys `held` may see for service `service_name` (§2.3.4).
pub fn service_model_keys(held: &BTreeSet<String>, service_name: &str) -> BTreeSet<&'static str> {
    model_keys(
        SERVICE_MODEL_ACCESS,
        &ParsedScopes::parse(held),
        &Target::Service(service_name),
        &crate::parsed::NoGroups,
    )
}
