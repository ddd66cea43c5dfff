//! Groups: their members and properties (protocol §2.3.3).
//!
//! Writes that name users resolve every name first and change nothing when one is
//! unknown; creating several groups is one transaction, so a conflict on the last
//! one leaves the earlier ones uncreated too.

use sqlx::Row;

use crate::{is_unique_violation, json_col, json_text, Result, Store, StoreError};

/// A group with the names of its members (sorted).
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub id: i64,
    pub name: String,
    /// Always a JSON object.
    pub properties: serde_json::Map<String, serde_json::Value>,
    pub users: Vec<String>,
}

/// Why a group write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// A member named in the request does not exist (JupyterHub answers 400).
    #[error("No such user: {0}")]
    NoSuchUser(String),
    /// The group to change does not exist.
    #[error("No such group: {0}")]
    NoSuchGroup(String),
    /// Database failures, and [`StoreError::Conflict`] when a group to create exists.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for GroupError {
    fn from(e: sqlx::Error) -> Self {
        GroupError::Store(e.into())
    }
}

fn properties_from_row(
    row: &sqlx::any::AnyRow,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    match json_col(row, "properties", "group properties")? {
        serde_json::Value::Object(map) => Ok(map),
        other => Err(StoreError::Corrupt {
            what: "group properties",
            detail: format!("expected a JSON object, found {other}"),
        }),
    }
}

/// `$first, $first+1, …` for `n` values.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn user_ids<'c, E>(executor: E, names: &[String]) -> Result<Vec<i64>, GroupError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let mut unique: Vec<&String> = names.iter().collect();
    unique.sort();
    unique.dedup();
    if unique.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT id, name FROM users WHERE name IN ({})",
        placeholders(1, unique.len())
    );
    let mut query = sqlx::query(&sql);
    for name in &unique {
        query = query.bind(name.as_str());
    }
    let rows = query.fetch_all(executor).await?;
    let mut found = std::collections::BTreeMap::new();
    for row in &rows {
        found.insert(
            row.try_get::<String, _>("name")?,
            row.try_get::<i64, _>("id")?,
        );
    }
    unique
        .into_iter()
        .map(|name| {
            found
                .get(name.as_str())
                .copied()
                .ok_or_else(|| GroupError::NoSuchUser(name.clone()))
        })
        .collect()
}

impl Store {
    /// Create groups, each with the same initial members, all or nothing.
    /// An existing (or repeated) name is [`StoreError::Conflict`]; an unknown member
    /// is [`GroupError::NoSuchUser`].
    pub async fn create_groups(
        &self,
        names: &[String],
        members: &[String],
    ) -> Result<Vec<Group>, GroupError> {
        let _changing = self.bump();
        let mut tx = self.begin_write().await?;
        let member_ids = user_ids(&mut *tx, members).await?;
        let mut ids = Vec::with_capacity(names.len());
        for name in names {
            let inserted =
                sqlx::query("INSERT INTO groups (name, properties) VALUES ($1, '{}') RETURNING id")
                    .bind(name)
                    .fetch_one(&mut *tx)
                    .await;
            let id: i64 = match inserted {
                Ok(row) => row.try_get("id")?,
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::Conflict {
                        what: "group",
                        name: name.clone(),
                    }
                    .into())
                }
                Err(e) => return Err(e.into()),
            };
            for user_id in &member_ids {
                sqlx::query("INSERT INTO user_groups (user_id, group_id) VALUES ($1, $2)")
                    .bind(user_id)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            ids.push(id);
        }
        tx.commit().await?;
        let mut groups = Vec::with_capacity(names.len());
        for name in names {
            groups.push(self.group(name).await?.ok_or_else(|| StoreError::Corrupt {
                what: "group",
                detail: format!("group `{name}` vanished right after it was created"),
            })?);
        }
        Ok(groups)
    }

    /// Create one group with initial members (see [`Store::create_groups`]).
    pub async fn create_group(&self, name: &str, members: &[String]) -> Result<Group, GroupError> {
        let mut created = self.create_groups(&[name.to_string()], members).await?;
        created.pop().ok_or_else(|| {
            GroupError::Store(StoreError::Corrupt {
                what: "group",
                detail: format!("group `{name}` was not created"),
            })
        })
    }

    pub async fn group(&self, name: &str) -> Result<Option<Group>> {
        let row = sqlx::query("SELECT id, name, properties FROM groups WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut groups = self.with_members(vec![row]).await?;
        Ok(groups.pop())
    }

    /// A page of groups in creation order, and how many there are in all. With `only`,
    /// just the groups of those names (a caller limited by `!group=` filters).
    pub async fn list_groups(
        &self,
        offset: i64,
        limit: i64,
        only: Option<&[String]>,
    ) -> Result<(Vec<Group>, i64)> {
        let (filter, names): (String, &[String]) = match only {
            Some([]) => return Ok((Vec::new(), 0)),
            Some(names) => (
                format!("WHERE name IN ({})", placeholders(1, names.len())),
                names,
            ),
            None => (String::new(), &[]),
        };
        let count_sql = format!("SELECT COUNT(*) AS n FROM groups {filter}");
        let mut count = sqlx::query(&count_sql);
        for name in names {
            count = count.bind(name);
        }
        let total: i64 = count.fetch_one(&self.pool).await?.try_get("n")?;
        let n = names.len();
        let page_sql = format!(
            "SELECT id, name, properties FROM groups {filter} ORDER BY id LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let mut page = sqlx::query(&page_sql);
        for name in names {
            page = page.bind(name);
        }
        let rows = page
            .bind(limit.max(0))
            .bind(offset.max(0))
            .fetch_all(&self.pool)
            .await?;
        Ok((self.with_members(rows).await?, total))
    }

    /// Groups from their rows, with their members.
    async fn with_members(&self, rows: Vec<sqlx::any::AnyRow>) -> Result<Vec<Group>> {
        let mut groups = rows
            .iter()
            .map(|row| {
                Ok(Group {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    properties: properties_from_row(row)?,
                    users: Vec::new(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if groups.is_empty() {
            return Ok(groups);
        }
        let sql = format!(
            "SELECT ug.group_id, u.name FROM user_groups ug JOIN users u ON u.id = ug.user_id \
             WHERE ug.group_id IN ({}) ORDER BY u.name",
            placeholders(1, groups.len())
        );
        let mut query = sqlx::query(&sql);
        for group in &groups {
            query = query.bind(group.id);
        }
        let members = query.fetch_all(&self.pool).await?;
        for row in &members {
            let group_id: i64 = row.try_get("group_id")?;
            if let Some(group) = groups.iter_mut().find(|g| g.id == group_id) {
                group.users.push(row.try_get("name")?);
            }
        }
        Ok(groups)
    }

    /// Remove a group (its memberships, role grants and shares go with it).
    pub async fn delete_group(&self, name: &str) -> Result<bool> {
        let _changing = self.bump();
        let done = sqlx::query("DELETE FROM groups WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Add users to a group; members already in it stay. All or nothing.
    pub async fn add_group_members(
        &self,
        name: &str,
        users: &[String],
    ) -> Result<Group, GroupError> {
        let _changing = self.bump();
        self.change_members(name, users, true).await
    }

    /// Remove users from a group; users not in it are ignored, unknown users refused.
    pub async fn remove_group_members(
        &self,
        name: &str,
        users: &[String],
    ) -> Result<Group, GroupError> {
        let _changing = self.bump();
        self.change_members(name, users, false).await
    }

    async fn change_members(
        &self,
        name: &str,
        users: &[String],
        add: bool,
    ) -> Result<Group, GroupError> {
        let mut tx = self.begin_write().await?;
        let group_id: i64 = sqlx::query("SELECT id FROM groups WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| GroupError::NoSuchGroup(name.to_string()))?
            .try_get("id")?;
        let ids = user_ids(&mut *tx, users).await?;
        for user_id in ids {
            let sql = if add {
                "INSERT INTO user_groups (user_id, group_id) SELECT $1, $2 WHERE NOT EXISTS \
                 (SELECT 1 FROM user_groups WHERE user_id = $1 AND group_id = $2)"
            } else {
                "DELETE FROM user_groups WHERE user_id = $1 AND group_id = $2"
            };
            sqlx::query(sql)
                .bind(user_id)
                .bind(group_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.group(name)
            .await?
            .ok_or_else(|| GroupError::NoSuchGroup(name.to_string()))
    }

    /// Replace a group's properties; `None` when there is no such group.
    pub async fn set_group_properties(
        &self,
        name: &str,
        properties: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Option<Group>> {
        let done = sqlx::query("UPDATE groups SET properties = $1 WHERE name = $2")
            .bind(json_text(properties))
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.group(name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_count_from_the_first() {
        assert_eq!(placeholders(1, 3), "$1, $2, $3");
        assert_eq!(placeholders(4, 1), "$4");
        assert_eq!(placeholders(2, 0), "");
    }
}
