//! Roles (`load_roles`) and who holds them. The default roles `user` and `admin`
//! are not stored: every user holds `user`, admins hold `admin`. A stored role
//! named `user`, `server` or `token` replaces the default's scopes, as upstream.

use sqlx::Row;

use crate::{json_text, string_list, Result, Store};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRole {
    pub name: String,
    pub description: String,
    pub scopes: Vec<String>,
}

/// Who a role is given to, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoleMembers {
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub services: Vec<String>,
}

fn role_from_row(row: &sqlx::any::AnyRow) -> Result<StoredRole> {
    Ok(StoredRole {
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        scopes: string_list(row, "scopes", "role scopes")?,
    })
}

impl Store {
    /// Create or replace a role and its members (config's `load_roles` at start-up).
    /// Members that do not exist yet are created (users, groups); unknown services are skipped.
    pub async fn put_role(&self, role: &StoredRole, members: &RoleMembers) -> Result<()> {
        let _changing = self.bump();
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM roles WHERE name = $1")
            .bind(&role.name)
            .execute(&mut *tx)
            .await?;
        let id: i64 = sqlx::query(
            "INSERT INTO roles (name, description, scopes) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(&role.name)
        .bind(&role.description)
        .bind(json_text(&role.scopes))
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        let now = crate::to_micros(chrono::Utc::now());
        for user in &members.users {
            sqlx::query(
                "INSERT INTO users (name, admin, created) SELECT $1, 0, $2 \
                 WHERE NOT EXISTS (SELECT 1 FROM users WHERE name = $1)",
            )
            .bind(user)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO role_members (role_id, user_id) SELECT $1, id FROM users WHERE name = $2",
            )
            .bind(id)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        }
        for group in &members.groups {
            sqlx::query(
                "INSERT INTO groups (name, properties) SELECT $1, '{}' \
                 WHERE NOT EXISTS (SELECT 1 FROM groups WHERE name = $1)",
            )
            .bind(group)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO role_members (role_id, group_id) SELECT $1, id FROM groups WHERE name = $2",
            )
            .bind(id)
            .bind(group)
            .execute(&mut *tx)
            .await?;
        }
        for service in &members.services {
            sqlx::query(
                "INSERT INTO role_members (role_id, service_id) \
                 SELECT $1, id FROM services WHERE name = $2",
            )
            .bind(id)
            .bind(service)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn role(&self, name: &str) -> Result<Option<StoredRole>> {
        let row = sqlx::query("SELECT name, description, scopes FROM roles WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(role_from_row).transpose()
    }

    pub async fn list_roles(&self) -> Result<Vec<StoredRole>> {
        let rows = sqlx::query("SELECT name, description, scopes FROM roles ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(role_from_row).collect()
    }

    /// Remove roles whose names are not in `keep` (roles dropped from the config).
    pub async fn delete_roles_except(&self, keep: &[String]) -> Result<()> {
        let _changing = self.bump();
        for role in self.list_roles().await? {
            if !keep.contains(&role.name) {
                sqlx::query("DELETE FROM roles WHERE name = $1")
                    .bind(&role.name)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Roles given to the user directly or through one of their groups.
    pub async fn roles_of_user(&self, user_id: i64) -> Result<Vec<StoredRole>> {
        let rows = sqlx::query(
            "SELECT DISTINCT r.name, r.description, r.scopes FROM roles r \
             JOIN role_members m ON m.role_id = r.id \
             WHERE m.user_id = $1 \
             OR m.group_id IN (SELECT group_id FROM user_groups WHERE user_id = $1) \
             ORDER BY r.name",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(role_from_row).collect()
    }

    pub async fn roles_of_group(&self, group_id: i64) -> Result<Vec<String>> {
        self.role_names("group_id", group_id).await
    }

    pub async fn roles_of_service(&self, service_id: i64) -> Result<Vec<StoredRole>> {
        let rows = sqlx::query(
            "SELECT r.name, r.description, r.scopes FROM roles r \
             JOIN role_members m ON m.role_id = r.id WHERE m.service_id = $1 ORDER BY r.name",
        )
        .bind(service_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(role_from_row).collect()
    }

    async fn role_names(&self, column: &'static str, id: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(&format!(
            "SELECT r.name FROM roles r JOIN role_members m ON m.role_id = r.id \
             WHERE m.{column} = $1 ORDER BY r.name"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("name")?)).collect()
    }

    /// Names of the groups the user belongs to.
    pub async fn groups_of_user(&self, user_id: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT g.name FROM groups g JOIN user_groups ug ON ug.group_id = g.id \
             WHERE ug.user_id = $1 ORDER BY g.name",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("name")?)).collect()
    }

    /// user name → group names, for every user in at least one group.
    pub async fn all_memberships(&self) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
        let rows = sqlx::query(
            "SELECT u.name AS user_name, g.name AS group_name FROM user_groups ug \
             JOIN users u ON u.id = ug.user_id JOIN groups g ON g.id = ug.group_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut map = std::collections::BTreeMap::<String, Vec<String>>::new();
        for row in rows {
            map.entry(row.try_get("user_name")?)
                .or_default()
                .push(row.try_get("group_name")?);
        }
        Ok(map)
    }
}

impl Store {
    /// Every stored role with who holds it directly (names sorted), in name order: what
    /// `users.json` and the import/migrate plan compare.
    pub async fn roles_with_members(&self) -> Result<Vec<(StoredRole, RoleMembers)>> {
        let mut roles: Vec<(StoredRole, RoleMembers)> = self
            .list_roles()
            .await?
            .into_iter()
            .map(|role| (role, RoleMembers::default()))
            .collect();
        let rows = sqlx::query(
            "SELECT r.name AS role_name, u.name AS user_name, g.name AS group_name, \
             s.name AS service_name FROM role_members m JOIN roles r ON r.id = m.role_id \
             LEFT JOIN users u ON u.id = m.user_id LEFT JOIN groups g ON g.id = m.group_id \
             LEFT JOIN services s ON s.id = m.service_id",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            let role: String = row.try_get("role_name")?;
            let Some((_, members)) = roles.iter_mut().find(|(r, _)| r.name == role) else {
                continue;
            };
            if let Some(user) = row.try_get::<Option<String>, _>("user_name")? {
                members.users.push(user);
            }
            if let Some(group) = row.try_get::<Option<String>, _>("group_name")? {
                members.groups.push(group);
            }
            if let Some(service) = row.try_get::<Option<String>, _>("service_name")? {
                members.services.push(service);
            }
        }
        for (_, members) in &mut roles {
            members.users.sort();
            members.groups.sort();
            members.services.sort();
        }
        Ok(roles)
    }
}

impl Store {
    /// user id → names of roles given to that user directly (listing pages).
    pub async fn all_direct_roles(&self) -> Result<std::collections::BTreeMap<i64, Vec<String>>> {
        let rows = sqlx::query(
            "SELECT m.user_id, r.name FROM role_members m JOIN roles r ON r.id = m.role_id \
             WHERE m.user_id IS NOT NULL ORDER BY r.name",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut map = std::collections::BTreeMap::<i64, Vec<String>>::new();
        for row in rows {
            map.entry(row.try_get("user_id")?)
                .or_default()
                .push(row.try_get("name")?);
        }
        Ok(map)
    }
}
