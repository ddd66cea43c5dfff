//! Scopes of owners and tokens: owner scopes, effective token scopes, token requests,
//! OAuth scope resolution, and the identify (`GET /user`) scopes.

use std::collections::BTreeSet;

use crate::error::RbacError;
use crate::expand::{
    access_scopes, expand_scopes, expand_scopes_with, identify_scopes, identify_scopes_raw,
    ClientRef, Owner,
};
use crate::parsed::{intersect_scopes, reduce_scopes, GroupMembership};
use crate::roles::default_role;
use crate::scope::{CustomScopes, INHERIT};

/// The expanded scopes of an owner (`get_scopes_for(user)`): its roles' raw scopes (for a user,
/// including the roles of its groups) expanded for the owner, plus the scopes of the shares
/// granted to it or its groups (already explicit, e.g. `access:servers!server=bob/`).
pub fn owner_scopes<R: AsRef<str>, S: AsRef<str>>(
    role_scopes: &[R],
    share_scopes: &[S],
    owner: &Owner,
) -> BTreeSet<String> {
    let mut scopes = expand_scopes(role_scopes, owner, None);
    scopes.extend(expand_scopes_with(
        share_scopes,
        None,
        None,
        &CustomScopes::default(),
    ));
    reduce_scopes(&scopes)
}

/// The effective scopes of a token when used (`get_scopes_for(token)`, protocol §4.4).
///
/// * `inherit` among the raw scopes → exactly `owner_scopes`;
/// * otherwise the raw scopes expanded for the owner and the issuing client, plus the client's
///   access scope (OAuth tokens, `oauth_client` is `Some`), plus the owner's identify scopes,
///   reduced, then intersected with `owner_scopes` — a token never exceeds its owner.
///
/// `oauth_client` is `None` for ordinary API tokens (the hub's own `jupyterhub` client).
pub fn token_scopes<S: AsRef<str>>(
    raw_token_scopes: &[S],
    owner_scopes: &BTreeSet<String>,
    owner: &Owner,
    oauth_client: Option<&ClientRef>,
    membership: &dyn GroupMembership,
) -> BTreeSet<String> {
    if raw_token_scopes.iter().any(|s| s.as_ref() == INHERIT) {
        return owner_scopes.clone();
    }
    let mut scopes = expand_scopes(raw_token_scopes, owner, oauth_client);
    if let Some(client) = oauth_client {
        scopes.extend(access_scopes(client));
    }
    scopes.extend(identify_scopes(owner));
    let scopes = reduce_scopes(&scopes);
    intersect_scopes(&scopes, owner_scopes, membership)
}

/// Check that a token requested with `raw` scopes does not exceed its owner
/// (`_check_token_scopes`); `inherit` is always allowed.
///
/// # Errors
///
/// [`RbacError::ScopesNotHeld`] listing the expanded scopes the owner lacks (answer 400).
pub fn check_token_scopes<S: AsRef<str>>(
    raw: &[S],
    owner_scopes: &BTreeSet<String>,
    owner: &Owner,
    oauth_client: Option<&ClientRef>,
    membership: &dyn GroupMembership,
) -> Result<(), RbacError> {
    let raw: Vec<&str> = raw
        .iter()
        .map(AsRef::as_ref)
        .filter(|s| *s != INHERIT)
        .collect();
    let requested = expand_scopes(&raw, owner, oauth_client);
    let allowed = intersect_scopes(&requested, owner_scopes, membership);
    let excess: Vec<String> = requested.difference(&allowed).cloned().collect();
    if excess.is_empty() {
        Ok(())
    } else {
        Err(RbacError::ScopesNotHeld {
            scopes: excess,
            owner: owner.to_string(),
        })
    }
}

/// Resolve requested raw scopes against held raw scopes (`_resolve_requested_scopes`), for
/// OAuth authorization and server tokens. Returns `(allowed, disallowed)` raw scopes.
///
/// A requested scope that is not literally held is still allowed when its expansion lies
/// within the expansion of `have` (e.g. requested `!server=alice/`, held `self`); if only part
/// of it does, that part is added to `allowed` as expanded scopes and the scope stays in
/// `disallowed`.
///
/// For OAuth authorization `have` is the user's raw role scopes ∪ `inherit` ∪ the identify and
/// access scopes ([`oauth_required_scopes`]); for a server token it is the user's raw role
/// scopes ∪ `inherit` with `client` `None`.
pub fn resolve_requested_scopes(
    requested: &BTreeSet<String>,
    have: &BTreeSet<String>,
    user: &Owner,
    client: Option<&ClientRef>,
    membership: &dyn GroupMembership,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut allowed: BTreeSet<String> = requested.intersection(have).cloned().collect();
    let mut disallowed: BTreeSet<String> = requested.difference(have).cloned().collect();
    if disallowed.is_empty() {
        return (allowed, disallowed);
    }
    let as_vec = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>();
    let mut expanded_allowed = expand_scopes(&as_vec(&allowed), user, client);
    let expanded_have = expand_scopes(&as_vec(have), user, client);
    for scope in disallowed.clone() {
        let expanded: BTreeSet<String> = expand_scopes(&[scope.as_str()], user, client)
            .difference(&expanded_allowed)
            .cloned()
            .collect();
        let granted = if expanded.is_empty() {
            BTreeSet::new()
        } else {
            intersect_scopes(&expanded, &expanded_have, membership)
        };
        if granted == expanded {
            allowed.insert(scope.clone());
            disallowed.remove(&scope);
            expanded_allowed = expand_scopes(&as_vec(&allowed), user, client);
        } else if !granted.is_empty() {
            allowed.extend(granted);
            expanded_allowed = expand_scopes(&as_vec(&allowed), user, client);
        }
    }
    (allowed, disallowed)
}

/// The scopes an OAuth client gets when the authorize request names none
/// (`get_default_scopes`): its allowed scopes, plus, unless `inherit` is among them, the raw
/// identify scopes and its access scope.
pub fn oauth_client_default_scopes<S: AsRef<str>>(
    allowed_scopes: &[S],
    client: &ClientRef,
) -> BTreeSet<String> {
    let mut scopes: BTreeSet<String> = allowed_scopes
        .iter()
        .map(|s| s.as_ref().to_string())
        .collect();
    if !scopes.contains(INHERIT) {
        scopes.extend(oauth_required_scopes(client));
    }
    scopes
}

/// The scopes every OAuth authorization for `client` may include whatever the user's roles:
/// the raw identify scopes and the client's access scope.
pub fn oauth_required_scopes(client: &ClientRef) -> BTreeSet<String> {
    let mut scopes = identify_scopes_raw();
    scopes.extend(access_scopes(client));
    scopes
}

/// The raw scopes to request for a server's `JUPYTERHUB_API_TOKEN` (`User.spawn`):
/// `requested` (`Spawner.server_token_scopes`; empty → the `server` role's scopes), with
/// `!server` resolved to `!server=<user>/<server_name>`, and `users:activity!user` added unless
/// `users:activity`, `users:activity!user` or `inherit` is requested.
///
/// Resolve the result against the user's raw role scopes ∪ `inherit` with
/// [`resolve_requested_scopes`] (client `None`) before creating the token.
pub fn server_token_request_scopes<S: AsRef<str>>(
    requested: &[S],
    user_name: &str,
    server_name: &str,
) -> BTreeSet<String> {
    let mut scopes: BTreeSet<String> = if requested.is_empty() {
        default_role("server")
            .map(|r| r.scopes)
            .unwrap_or_default()
            .into_iter()
            .collect()
    } else {
        requested.iter().map(|s| s.as_ref().to_string()).collect()
    };
    scopes = scopes
        .into_iter()
        .map(|s| {
            if s.ends_with("!server") {
                format!("{s}={user_name}/{server_name}")
            } else {
                s
            }
        })
        .collect();
    const ACTIVITY: &str = "users:activity!user";
    if ![ACTIVITY, "users:activity", INHERIT]
        .iter()
        .any(|s| scopes.contains(*s))
    {
        scopes.insert(ACTIVITY.to_string());
    }
    scopes
}

/// Scopes for `GET /user` (`SelfAPIHandler`, §2.3.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfIdentity {
    /// The scopes to build the owner's model with: the request's scopes plus the owner's
    /// identify scopes.
    pub model_scopes: BTreeSet<String>,
    /// The sorted `"scopes"` field of the response: the request's scopes, without the
    /// identify scopes that were added only for this call.
    pub reported_scopes: Vec<String>,
}

/// The scopes for the `GET /user` response of a request holding `held` (expanded), owned by
/// `owner`.
pub fn self_identity(held: &BTreeSet<String>, owner: &Owner) -> SelfIdentity {
    let mut model_scopes = held.clone();
    model_scopes.extend(identify_scopes(owner));
    SelfIdentity {
        model_scopes,
        reported_scopes: held.iter().cloned().collect(),
    }
}
