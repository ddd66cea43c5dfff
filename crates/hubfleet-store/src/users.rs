//! User listing, renaming and per-user data beyond the basics in lib.rs.

use std::collections::BTreeMap;

use sqlx::Row;

use crate::{
    server_from_row, to_micros, user_from_row, Phase, Result, Server, Store, StoreError, User,
    SERVER_COLS, USER_COLS,
};

/// `GET /users?state=` (protocol §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerState {
    /// At least one server ready or pending.
    Active,
    /// At least one server ready.
    Ready,
    /// No server ready or pending.
    Inactive,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserSort {
    Id,
    Name,
    LastActivity,
}

#[derive(Clone, Debug)]
pub struct UserQuery {
    pub state: Option<ServerState>,
    /// Case-insensitive substring of the name.
    pub name_filter: Option<String>,
    pub sort: UserSort,
    pub descending: bool,
    pub offset: i64,
    pub limit: i64,
    /// Only these users (a caller whose scopes are filtered); `None`: everyone.
    pub visible: Option<VisibleUsers>,
}

/// Users named, and members of the groups named (a `!user=` / `!group=` scope filter).
#[derive(Clone, Debug, Default)]
pub struct VisibleUsers {
    pub users: Vec<String>,
    pub groups: Vec<String>,
}

impl Default for UserQuery {
    fn default() -> Self {
        UserQuery {
            visible: None,
            state: None,
            name_filter: None,
            sort: UserSort::Id,
            descending: false,
            offset: 0,
            limit: 200,
        }
    }
}

impl Store {
    /// A page of users and the total that match.
    pub async fn query_users(&self, query: &UserQuery) -> Result<(Vec<User>, i64)> {
        let (sql, count_sql, binds) = user_query_sql(query);
        let mut rows = sqlx::query(&sql);
        let mut count = sqlx::query(&count_sql);
        for value in &binds {
            rows = rows.bind(value.clone());
            count = count.bind(value.clone());
        }
        let rows = rows
            .bind(query.limit)
            .bind(query.offset)
            .fetch_all(&self.pool)
            .await?;
        let total: i64 = count.fetch_one(&self.pool).await?.try_get("n")?;
        Ok((
            rows.iter().map(user_from_row).collect::<Result<_>>()?,
            total,
        ))
    }

    /// Servers of many users at once (listing pages), keyed by user id.
    pub async fn servers_of_users(&self, user_ids: &[i64]) -> Result<BTreeMap<i64, Vec<Server>>> {
        let mut map: BTreeMap<i64, Vec<Server>> = BTreeMap::new();
        if user_ids.is_empty() {
            return Ok(map);
        }
        // Ids are integers from our own rows: safe to inline.
        let ids = user_ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let rows = sqlx::query(&format!(
            "SELECT {SERVER_COLS} FROM servers WHERE user_id IN ({ids}) ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            let server = server_from_row(row)?;
            map.entry(server.user_id).or_default().push(server);
        }
        Ok(map)
    }

    /// Rename a user; their servers, tokens and groups follow (they are keyed by id).
    pub async fn rename_user(&self, user_id: i64, new_name: &str) -> Result<()> {
        let _changing = self.bump();
        sqlx::query("UPDATE users SET name = $1 WHERE id = $2")
            .bind(new_name)
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(|e| {
                if crate::is_unique_violation(&e) {
                    StoreError::Conflict {
                        what: "user",
                        name: new_name.to_string(),
                    }
                } else {
                    e.into()
                }
            })?;
        Ok(())
    }

    pub async fn set_auth_state(
        &self,
        user_id: i64,
        state: Option<&serde_json::Value>,
    ) -> Result<()> {
        let _changing = self.changing_data();
        sqlx::query("UPDATE users SET auth_state = $1 WHERE id = $2")
            .bind(self.seal_auth_state(state)?)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Remove a (stopped) server's row: named servers deleted with `remove`.
    pub async fn delete_server(&self, server_id: i64) -> Result<()> {
        let _changing = self.bump();
        sqlx::query("DELETE FROM servers WHERE id = $1")
            .bind(server_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Rename a stopped server and/or set its display name and options.
    pub async fn edit_server(
        &self,
        server_id: i64,
        name: Option<&str>,
        display_name: Option<&str>,
        user_options: Option<&serde_json::Value>,
    ) -> Result<()> {
        let _changing = self.bump();
        let mut tx = self.begin_write().await?;
        if let Some(name) = name {
            sqlx::query("UPDATE servers SET name = $1 WHERE id = $2")
                .bind(name)
                .bind(server_id)
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    if crate::is_unique_violation(&e) {
                        StoreError::Conflict {
                            what: "server",
                            name: name.to_string(),
                        }
                    } else {
                        e.into()
                    }
                })?;
        }
        if let Some(display_name) = display_name {
            sqlx::query("UPDATE servers SET display_name = $1 WHERE id = $2")
                .bind(display_name)
                .bind(server_id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(options) = user_options {
            sqlx::query("UPDATE servers SET user_options = $1 WHERE id = $2")
                .bind(crate::json_text(options))
                .bind(server_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Count a user's servers (the default one included) for `named_server_limit_per_user`.
    pub async fn count_named_servers(&self, user_id: i64) -> Result<i64> {
        Ok(
            sqlx::query("SELECT COUNT(*) AS n FROM servers WHERE user_id = $1 AND name <> ''")
                .bind(user_id)
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?,
        )
    }

    /// Users created in bulk; names that exist are skipped. Returns those created.
    pub async fn create_users(&self, names: &[String], admin: bool) -> Result<Vec<User>> {
        let _changing = self.bump();
        let mut created = Vec::new();
        let mut tx = self.begin_write().await?;
        let now = to_micros(chrono::Utc::now());
        for name in names {
            let row = sqlx::query(
                "INSERT INTO users (name, admin, created) SELECT $1, $2, $3 \
                 WHERE NOT EXISTS (SELECT 1 FROM users WHERE name = $1) \
                 RETURNING id, name, admin, created, last_activity",
            )
            .bind(name)
            .bind(admin as i64)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = row {
                created.push(user_from_row(&row)?);
            }
        }
        tx.commit().await?;
        Ok(created)
    }
}

impl Store {
    /// The user's auth_state, decrypted (`None` if there is none or it cannot be read).
    pub async fn auth_state(&self, user_id: i64) -> Result<Option<serde_json::Value>> {
        let stored: Option<String> = sqlx::query("SELECT auth_state FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| row.try_get("auth_state"))
            .transpose()?
            .flatten();
        Ok(stored.and_then(|s| self.open_auth_state(user_id, &s)))
    }
}

/// The page's SQL, the count's SQL and their text parameters, in order.
///
/// The server-state filters are uncorrelated `u.id IN (SELECT user_id FROM servers WHERE
/// phase ...)` subqueries: one pass over the servers. A correlated `EXISTS` (one search of
/// `servers` per user) let SQLite search by the `servers_phase` index instead of `user_id`,
/// reading every ready server once per user: 10,000 users and 1,000 ready servers made each
/// `?state=ready` page (the idle culler's listing) cost seconds.
fn user_query_sql(query: &UserQuery) -> (String, String, Vec<String>) {
    let mut conditions = Vec::new();
    let active = format!(
        "'{}', '{}', '{}'",
        Phase::Ready.as_str(),
        Phase::Starting.as_str(),
        Phase::Stopping.as_str()
    );
    match query.state {
        Some(ServerState::Active) => conditions.push(format!(
            "u.id IN (SELECT s.user_id FROM servers s WHERE s.phase IN ({active}))"
        )),
        Some(ServerState::Ready) => conditions.push(format!(
            "u.id IN (SELECT s.user_id FROM servers s WHERE s.phase = '{}')",
            Phase::Ready.as_str()
        )),
        // `servers.user_id` is NOT NULL: `NOT IN` is the plain complement.
        Some(ServerState::Inactive) => conditions.push(format!(
            "u.id NOT IN (SELECT s.user_id FROM servers s WHERE s.phase IN ({active}))"
        )),
        None => {}
    }
    // Text parameters in order; `$n` placeholders are numbered as they are added.
    let mut binds: Vec<String> = Vec::new();
    let mut placeholder = |value: &str| {
        binds.push(value.to_string());
        format!("${}", binds.len())
    };
    if let Some(name_filter) = &query.name_filter {
        let escaped = name_filter
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let pattern = placeholder(&format!("%{escaped}%"));
        conditions.push(format!("LOWER(u.name) LIKE {pattern} ESCAPE '\\'"));
    }
    if let Some(visible) = &query.visible {
        let mut either = Vec::new();
        if !visible.users.is_empty() {
            let names: Vec<String> = visible.users.iter().map(|u| placeholder(u)).collect();
            either.push(format!("u.name IN ({})", names.join(", ")));
        }
        if !visible.groups.is_empty() {
            let names: Vec<String> = visible.groups.iter().map(|g| placeholder(g)).collect();
            either.push(format!(
                "u.id IN (SELECT ug.user_id FROM user_groups ug \
                 JOIN groups g ON g.id = ug.group_id WHERE g.name IN ({}))",
                names.join(", ")
            ));
        }
        if either.is_empty() {
            either.push("1 = 0".to_string());
        }
        conditions.push(format!("({})", either.join(" OR ")));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let order_col = match query.sort {
        UserSort::Id => "u.id",
        UserSort::Name => "u.name",
        UserSort::LastActivity => "u.last_activity",
    };
    // NULLs last ascending, first descending (as JupyterHub sorts).
    let order = match (query.sort, query.descending) {
        (UserSort::LastActivity, false) => {
            format!("CASE WHEN {order_col} IS NULL THEN 1 ELSE 0 END, {order_col} ASC, u.id")
        }
        (UserSort::LastActivity, true) => {
            format!("CASE WHEN {order_col} IS NULL THEN 0 ELSE 1 END, {order_col} DESC, u.id")
        }
        (_, false) => format!("{order_col} ASC"),
        (_, true) => format!("{order_col} DESC"),
    };
    let n = binds.len();
    let sql = format!(
        "SELECT {USER_COLS} FROM users u {filter} ORDER BY {order} LIMIT ${} OFFSET ${}",
        n + 1,
        n + 2
    );
    let count_sql = format!("SELECT COUNT(*) AS n FROM users u {filter}");
    (sql, count_sql, binds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServerUpdate;

    async fn store_with_servers() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("hub.sqlite").display()
        );
        let store = Store::connect(&url).await.unwrap();
        // u0 ready, u1 starting, u2 stopped, u3 without a server.
        let phases = [
            Some(Phase::Ready),
            Some(Phase::Starting),
            Some(Phase::Stopped),
            None,
        ];
        for (i, phase) in phases.into_iter().enumerate() {
            let user = store.create_user(&format!("u{i}"), false).await.unwrap();
            if let Some(phase) = phase {
                let server = store.ensure_server(user.id, "").await.unwrap();
                let update = ServerUpdate {
                    phase: Some(phase),
                    ..Default::default()
                };
                store.update_server(server.id, &update).await.unwrap();
            }
        }
        (store, dir)
    }

    fn by_state(state: Option<ServerState>) -> UserQuery {
        UserQuery {
            state,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn state_filters_pick_the_right_users() {
        let (store, _dir) = store_with_servers().await;
        for (state, expected) in [
            (Some(ServerState::Ready), vec!["u0"]),
            (Some(ServerState::Active), vec!["u0", "u1"]),
            (Some(ServerState::Inactive), vec!["u2", "u3"]),
            (None, vec!["u0", "u1", "u2", "u3"]),
        ] {
            let (users, total) = store.query_users(&by_state(state)).await.unwrap();
            let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
            assert_eq!(names, expected, "{state:?}");
            assert_eq!(total, expected.len() as i64, "{state:?}");
        }
    }

    /// The idle culler's `?state=ready` listing: the servers are read once for the whole
    /// query, never searched again for every user (which, through the `servers_phase` index,
    /// read every ready server once per user).
    #[tokio::test]
    async fn state_filters_do_not_search_servers_per_user() {
        let (store, _dir) = store_with_servers().await;
        for state in [
            ServerState::Ready,
            ServerState::Active,
            ServerState::Inactive,
        ] {
            let (sql, count_sql, _) = user_query_sql(&by_state(Some(state)));
            for sql in [sql, count_sql] {
                let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
                    .bind(200_i64)
                    .bind(0_i64)
                    .fetch_all(&store.pool)
                    .await
                    .unwrap()
                    .iter()
                    .map(|row| row.try_get::<String, _>("detail").unwrap())
                    .collect();
                assert!(
                    !plan.iter().any(|step| step.contains("CORRELATED")),
                    "{state:?}: {sql}\n{plan:#?}"
                );
            }
        }
    }
}
