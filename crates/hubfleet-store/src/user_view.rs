//! Everything the REST API's user model is built from, read in one round trip: the user
//! row, its servers, groups, roles and auth_state. `GET /hub/api/users/{name}` is the
//! most frequent request of dashboards and cullers, and each query costs a hand-off to
//! the database driver's thread, so this is one query rather than four.

use sqlx::Row;

use crate::{opt_time, server_from_row, Result, Server, Store, User};

/// A user with the rest of their model.
#[derive(Clone, Debug)]
pub struct UserView {
    pub user: User,
    /// Default server first, then named servers by name.
    pub servers: Vec<Server>,
    pub groups: Vec<String>,
    pub roles: Vec<String>,
    /// Decrypted only when asked for.
    pub auth_state: Option<serde_json::Value>,
}

/// One row per server (or one with no server), then one per group and per role. The
/// server columns keep their own names so that [`server_from_row`] reads them.
const USER_VIEW_SQL: &str = "\
SELECT 'u' AS kind, u.id AS u_id, u.name AS u_name, u.admin AS u_admin, u.created AS u_created, \
       u.last_activity AS u_last_activity, u.auth_state AS u_auth_state, \
       s.id, s.user_id, s.name, s.display_name, s.phase, s.phase_detail, s.target, s.spawn_state, \
       s.user_options, s.started, s.last_activity, s.failed_reason \
  FROM users u LEFT JOIN servers s ON s.user_id = u.id WHERE u.name = $1 \
UNION ALL \
SELECT 'g', NULL, g.name, NULL, NULL, NULL, NULL, \
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL \
  FROM groups g JOIN user_groups ug ON ug.group_id = g.id JOIN users u ON u.id = ug.user_id \
 WHERE u.name = $1 \
UNION ALL \
SELECT 'r', NULL, r.name, NULL, NULL, NULL, NULL, \
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL \
  FROM roles r JOIN role_members m ON m.role_id = r.id JOIN users u ON u.id = m.user_id \
 WHERE u.name = $1";

impl Store {
    /// The user named `name` with their servers, groups and roles; `auth_state` is
    /// decrypted only if `with_auth_state`.
    ///
    /// Served from a short-lived cache that every write through this store invalidates
    /// (see [`crate::changes`]).
    pub async fn user_view(&self, name: &str, with_auth_state: bool) -> Result<Option<UserView>> {
        let data_generation = self.counters.data();
        let (mut view, sealed) = match self.user_views.get(name, data_generation) {
            Some(hit) => hit,
            None => match self.read_user_view(name).await? {
                Some((view, sealed)) => {
                    self.user_views
                        .put(name, data_generation, view.clone(), sealed.clone());
                    (view, sealed)
                }
                None => return Ok(None),
            },
        };
        if with_auth_state {
            view.auth_state = sealed.and_then(|s| self.open_auth_state(view.user.id, &s));
        }
        Ok(Some(view))
    }

    /// The view without auth_state, and auth_state as stored.
    async fn read_user_view(&self, name: &str) -> Result<Option<(UserView, Option<String>)>> {
        let rows = sqlx::query(USER_VIEW_SQL)
            .bind(name)
            .fetch_all(&self.pool)
            .await?;
        let mut user = None;
        let mut sealed_auth_state = None;
        let mut servers = Vec::new();
        let mut groups = Vec::new();
        let mut roles = Vec::new();
        for row in &rows {
            let kind: String = row.try_get("kind")?;
            match kind.as_str() {
                "u" => {
                    if user.is_none() {
                        let id: i64 = row.try_get("u_id")?;
                        user = Some(User {
                            id,
                            name: row.try_get("u_name")?,
                            admin: row.try_get::<i64, _>("u_admin")? != 0,
                            created: crate::from_micros(row.try_get("u_created")?),
                            last_activity: opt_time(row, "u_last_activity")?,
                        });
                        sealed_auth_state = row.try_get("u_auth_state")?;
                    }
                    if row.try_get::<Option<i64>, _>("id")?.is_some() {
                        servers.push(server_from_row(row)?);
                    }
                }
                "g" => groups.push(row.try_get("u_name")?),
                _ => roles.push(row.try_get("u_name")?),
            }
        }
        let Some(user) = user else {
            return Ok(None);
        };
        servers.sort_by(|a, b| a.name.cmp(&b.name));
        groups.sort();
        roles.sort();
        let view = UserView {
            user,
            servers,
            groups,
            roles,
            auth_state: None,
        };
        Ok(Some((view, sealed_auth_state)))
    }
}
