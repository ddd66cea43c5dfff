//! The hub's use of `hubfleet-rbac`: the scopes of users and tokens, and checks.
//! Groups and configured roles come with the full RBAC work; until then a user
//! holds the `user` role, and admins the `admin` role too.

use std::collections::BTreeSet;

use hubfleet_rbac::{ClientRef, NoGroups, Owner, Target};
use hubfleet_store::{Token, User};

use crate::HubError;

fn owner(user: &User) -> Owner {
    Owner::user(user.name.clone())
}

/// The expanded scopes of a user: their roles' scopes.
pub fn user_scopes(user: &User) -> BTreeSet<String> {
    let mut roles = vec!["user"];
    if user.admin {
        roles.push("admin");
    }
    let role_scopes: Vec<String> = roles
        .into_iter()
        .filter_map(hubfleet_rbac::default_role)
        .flat_map(|role| role.scopes)
        .collect();
    hubfleet_rbac::owner_scopes(&role_scopes, &[] as &[String], &owner(user))
}

/// The scopes a token grants now: its own, limited to what its owner holds.
pub fn token_scopes(token: &Token, user: &User) -> BTreeSet<String> {
    let client = oauth_client_of(token, user);
    hubfleet_rbac::token_scopes(
        &token.scopes,
        &user_scopes(user),
        &owner(user),
        client.as_ref(),
        &NoGroups,
    )
}

/// The server an OAuth token was issued for, from its client id.
fn oauth_client_of(token: &Token, user: &User) -> Option<ClientRef> {
    let rest = token.client_id.strip_prefix("jupyterhub-user-")?;
    let escaped_user = crate::urls::escape_path(&user.name);
    let rest = rest.strip_prefix(&escaped_user)?;
    let server = rest.strip_prefix('-').unwrap_or(rest);
    let server = percent_encoding::percent_decode_str(server).decode_utf8_lossy();
    Some(ClientRef::server(user.name.clone(), server.into_owned()))
}

pub fn identify_scopes(user: &User) -> BTreeSet<String> {
    hubfleet_rbac::identify_scopes(&owner(user))
}

/// Allow if `held` covers any of `required` on `target`; else 403 (scope missing)
/// or 404 (scope held for other resources), as JupyterHub answers.
pub fn check(
    held: &BTreeSet<String>,
    required: &[&str],
    target: &Target<'_>,
) -> Result<(), HubError> {
    let access = hubfleet_rbac::needs_any_scope(
        required,
        target,
        &hubfleet_rbac::ParsedScopes::parse(held),
        &NoGroups,
    );
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

pub fn user_model_keys(held: &BTreeSet<String>, user: &str) -> BTreeSet<&'static str> {
    hubfleet_rbac::user_model_keys(held, user, &NoGroups)
}
