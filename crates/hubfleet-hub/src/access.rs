//! The hub's use of `hubfleet-rbac`: the scopes of users, services and tokens
//! (from their roles, their groups' roles and the default roles), and checks.

use std::collections::{BTreeMap, BTreeSet};

use hubfleet_rbac::{ClientRef, GroupMembership, HeldScopes, Owner as RbacOwner, Target};
use hubfleet_store::{Service, Token, User};

use crate::identity::Owner;
use crate::{AppState, HubError};

/// Group membership known for a request: the users it may look at.
pub type Membership = BTreeMap<String, Vec<String>>;

fn rbac_owner(owner: &Owner, groups: Vec<String>) -> RbacOwner {
    match owner {
        Owner::User(user) => RbacOwner::User {
            name: user.name.clone(),
            groups,
        },
        Owner::Service(service) => RbacOwner::service(service.name.clone()),
    }
}

/// The raw scopes of a default role, or of the stored role that replaces it.
async fn default_role_scopes(state: &AppState, name: &str) -> Result<Vec<String>, HubError> {
    if name != "admin" {
        if let Some(stored) = state.store.role(name).await? {
            return Ok(stored.scopes);
        }
    }
    Ok(hubfleet_rbac::default_role(name)
        .map(|role| role.scopes)
        .unwrap_or_default())
}

/// The expanded scopes of a user: the `user` role, `admin` for admins, and the roles
/// given to them or their groups.
pub async fn user_scopes(state: &AppState, user: &User) -> Result<BTreeSet<String>, HubError> {
    let groups = state.store.groups_of_user(user.id).await?;
    let mut raw = default_role_scopes(state, "user").await?;
    if user.admin {
        raw.extend(default_role_scopes(state, "admin").await?);
    }
    for role in state.store.roles_of_user(user.id).await? {
        if role.name != "user" {
            raw.extend(role.scopes);
        }
    }
    let shared = state.store.share_scopes_for_user(user.id).await?;
    let owner = RbacOwner::User {
        name: user.name.clone(),
        groups,
    };
    Ok(hubfleet_rbac::owner_scopes(&raw, &shared, &owner))
}

/// The expanded scopes of a service: its roles, and `admin` if it is an admin service.
pub async fn service_scopes(
    state: &AppState,
    service: &Service,
) -> Result<BTreeSet<String>, HubError> {
    let mut raw = Vec::new();
    if service.admin {
        raw.extend(default_role_scopes(state, "admin").await?);
    }
    for role in state.store.roles_of_service(service.id).await? {
        raw.extend(role.scopes);
    }
    let owner = RbacOwner::service(service.name.clone());
    Ok(hubfleet_rbac::owner_scopes(&raw, &[] as &[String], &owner))
}

pub async fn owner_scopes(state: &AppState, owner: &Owner) -> Result<BTreeSet<String>, HubError> {
    match owner {
        Owner::User(user) => user_scopes(state, user).await,
        Owner::Service(service) => service_scopes(state, service).await,
    }
}

/// The scopes a token grants now: its own, limited to what its owner holds.
pub async fn token_scopes(
    state: &AppState,
    token: &Token,
    owner: &Owner,
) -> Result<BTreeSet<String>, HubError> {
    let held = owner_scopes(state, owner).await?;
    let groups = match owner {
        Owner::User(user) => state.store.groups_of_user(user.id).await?,
        Owner::Service(_) => Vec::new(),
    };
    let membership: Membership = match owner {
        Owner::User(user) => BTreeMap::from([(user.name.clone(), groups.clone())]),
        Owner::Service(_) => BTreeMap::new(),
    };
    let client = oauth_client_of(token);
    Ok(hubfleet_rbac::token_scopes(
        &token.scopes,
        &held,
        &rbac_owner(owner, groups),
        client.as_ref(),
        &membership,
    ))
}

/// The server or service an OAuth token was issued for, from its client id.
fn oauth_client_of(token: &Token) -> Option<ClientRef> {
    if let Some(service) = token.client_id.strip_prefix("service-") {
        return Some(ClientRef::service(service.to_string()));
    }
    let rest = token.client_id.strip_prefix("jupyterhub-user-")?;
    // `jupyterhub-user-<quoted user>[-<quoted server>]`: names are quoted, so the
    // first `-` after the user part separates them only if the user has none;
    // the token's own scopes carry the exact server, so fall back on them.
    let server_scope = token
        .scopes
        .iter()
        .find_map(|s| s.strip_prefix("access:servers!server="));
    match server_scope {
        Some(full) => {
            let (user, server) = full.split_once('/').unwrap_or((full, ""));
            Some(ClientRef::server(user.to_string(), server.to_string()))
        }
        None => {
            let user = percent_encoding::percent_decode_str(rest).decode_utf8_lossy();
            Some(ClientRef::server(user.into_owned(), String::new()))
        }
    }
}

pub fn identify_scopes(owner: &Owner) -> BTreeSet<String> {
    hubfleet_rbac::identify_scopes(&rbac_owner(owner, Vec::new()))
}

fn deny(access: hubfleet_rbac::Access, required: &[&str]) -> Result<(), HubError> {
    match access.status() {
        None => Ok(()),
        Some(404) => Err(HubError::NotFound(
            hubfleet_rbac::NOT_COVERED_MESSAGE.into(),
        )),
        Some(_) => Err(HubError::Forbidden(
            access.message(required).unwrap_or_default(),
        )),
    }
}

/// Allow if `held` covers any of `required` on `target`; else 403 (scope missing)
/// or 404 (scope held for other resources), as JupyterHub answers. Group filters
/// are resolved with `membership`.
pub fn check_with(
    held: &HeldScopes,
    required: &[&str],
    target: &Target<'_>,
    membership: &dyn GroupMembership,
) -> Result<(), HubError> {
    let access = hubfleet_rbac::needs_any_scope(required, target, held.parsed(), membership);
    deny(access, required)
}

/// [`check_with`], loading the target user's groups when a group filter may matter.
pub async fn check(
    state: &AppState,
    held: &HeldScopes,
    required: &[&str],
    target: &Target<'_>,
) -> Result<(), HubError> {
    let user = match target {
        Target::User(user) | Target::Server(user, _) => Some(*user),
        _ => None,
    };
    let mut membership = Membership::new();
    if let Some(name) = user {
        if held.iter().any(|s| s.contains("!group=")) {
            if let Some(user) = state.store.user_by_name(name).await? {
                membership.insert(name.to_string(), state.store.groups_of_user(user.id).await?);
            }
        }
    }
    check_with(held, required, target, &membership)
}

/// For list endpoints: is any variant of the scopes held at all (items are then filtered)?
pub fn check_any(held: &HeldScopes, required: &[&str]) -> Result<(), HubError> {
    let access = hubfleet_rbac::needs_any_scope_post_filter(required, held.parsed());
    deny(access, required)
}

pub fn user_model_keys(
    held: &HeldScopes,
    user: &str,
    membership: &dyn GroupMembership,
) -> BTreeSet<&'static str> {
    hubfleet_rbac::model_keys(
        hubfleet_rbac::USER_MODEL_ACCESS,
        held.parsed(),
        &Target::User(user),
        membership,
    )
}
