//! `hub.config.JupyterHub.load_groups`: groups made at start, as upstream's `init_groups`.
//!
//! It only adds: a group is created when missing, its users are created when missing and added
//! to it, and its properties are replaced when the config gives them. Members and groups added
//! otherwise (the REST API, an earlier config) stay, as upstream.

use crate::{AppState, HubError};

pub(crate) async fn load(state: &AppState) -> Result<(), HubError> {
    let store = &state.store;
    for group in &state.settings().groups {
        let where_ = format!("hub.config.JupyterHub.load_groups.{}", group.name);
        let mut users = Vec::with_capacity(group.users.len());
        for raw in &group.users {
            let name = hubfleet_auth::normalize_username(raw)
                .map_err(|e| HubError::Config(format!("{where_}.users: {e}")))?;
            users.push(name);
        }
        if store.group(&group.name).await?.is_none() {
            match store.create_group(&group.name, &[]).await {
                Ok(_) => tracing::info!(group = %group.name, "created group from load_groups"),
                // Another replica made it first.
                Err(hubfleet_store::groups::GroupError::Store(
                    hubfleet_store::StoreError::Conflict { .. },
                )) => {}
                Err(e) => return Err(HubError::Config(format!("{where_}: {e}"))),
            }
        }
        let created = store.create_users(&users, false).await?;
        for user in &created {
            tracing::info!(user = %user.name, group = %group.name, "created user found in load_groups");
        }
        store
            .add_group_members(&group.name, &users)
            .await
            .map_err(|e| HubError::Config(format!("{where_}: {e}")))?;
        if let Some(properties) = &group.properties {
            let current = store.group(&group.name).await?.map(|g| g.properties);
            if current.as_ref() != Some(properties) {
                store.set_group_properties(&group.name, properties).await?;
            }
        }
    }
    Ok(())
}
