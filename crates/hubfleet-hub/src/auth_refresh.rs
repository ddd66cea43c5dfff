//! Keeping logins current with the identity provider (JupyterHub's `refresh_auth`): each
//! authenticated request of a user whose auth_state was checked longer ago than
//! `auth_refresh_age` checks it again ([`hubfleet_auth::Authenticator::refresh_user`]), and
//! with `refresh_pre_spawn` every server start does. A login that can no longer be vouched
//! for is treated as logged out: pages send the person to the login page, the API answers
//! 403, and a start is refused until they log in again.

use hubfleet_auth::{Due, Refresh};
use hubfleet_store::User;

use crate::identity::{Identity, Owner};
use crate::{AppState, HubError};

/// `identity`, unless its user's login must be renewed first (then `None`).
pub async fn checked(state: &AppState, identity: Identity) -> Result<Option<Identity>, HubError> {
    let Owner::User(user) = &identity.owner else {
        return Ok(Some(identity));
    };
    Ok(refresh(state, user, false).await?.then_some(identity))
}

/// With `refresh_pre_spawn`: the user's auth_state is checked before their server starts.
pub async fn before_spawn(state: &AppState, user: &User) -> Result<(), HubError> {
    if !state.authenticator().options().refresh_pre_spawn || refresh(state, user, true).await? {
        return Ok(());
    }
    Err(HubError::Forbidden(format!(
        "auth has expired for {}, login again",
        user.name
    )))
}

/// A login counts as a fresh check.
pub fn logged_in(state: &AppState, user: &User) {
    state
        .authenticator()
        .options()
        .refresh_tracker
        .record(user.id, true);
}

/// Whether `user`'s login still holds; checks with the provider when due.
async fn refresh(state: &AppState, user: &User, force: bool) -> Result<bool, HubError> {
    let authenticator = state.authenticator();
    let options = authenticator.options();
    let tracker = &options.refresh_tracker;
    match tracker.due(user.id, options.auth_refresh_age, force) {
        Due::Fresh => return Ok(true),
        Due::RecentlyFailed => return Ok(false),
        Due::Now => {}
    }
    let lock = tracker.lock(user.id);
    let _guard = lock.lock().await;
    // Another request may have checked while this one waited.
    if !force {
        match tracker.due(user.id, options.auth_refresh_age, false) {
            Due::Fresh => return Ok(true),
            Due::RecentlyFailed => return Ok(false),
            Due::Now => {}
        }
    }
    let auth_state = state.store.auth_state(user.id).await?;
    let outcome = match state
        .authenticator()
        .refresh_user(&user.name, auth_state.as_ref())
        .await
    {
        Ok(outcome) => outcome,
        // The provider could not be reached: the login cannot be vouched for.
        Err(e) => Refresh::LoginRequired(e.to_string()),
    };
    match outcome {
        Refresh::Valid => {}
        Refresh::Updated(info) => {
            if let Some(admin) = info.admin {
                if admin != user.admin {
                    state.store.set_admin(user.id, admin).await?;
                }
            }
            if options.manage_groups {
                if let Some(groups) = &info.groups {
                    crate::login::sync_groups(state, user, groups).await?;
                }
            }
            if options.enable_auth_state {
                if let Some(auth_state) = &info.auth_state {
                    state
                        .store
                        .set_auth_state(user.id, Some(auth_state))
                        .await?;
                }
            }
            tracing::debug!(user = %user.name, "auth_state refreshed");
        }
        Refresh::LoginRequired(reason) => {
            tracing::warn!(user = %user.name, %reason, "auth_state is stale and cannot be refreshed: login required");
            tracker.record(user.id, false);
            return Ok(false);
        }
    }
    tracker.record(user.id, true);
    Ok(true)
}
