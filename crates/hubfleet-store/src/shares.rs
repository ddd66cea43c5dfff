//! Sharing servers: shares granted to users or groups, and share codes that can be
//! exchanged for a share (JupyterHub 5+, protocol §2.3.7).
//!
//! Scopes are kept as their bases (`access:servers`); [`Share::scopes`] and
//! [`ShareCode::scopes`] carry the `!server=<owner>/<server>` filter, built from the
//! current names when read.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{
    from_micros, json_text, opt_time, secret, string_list, to_micros, Result, Store, StoreError,
};

/// Who a share is granted to, by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareWith {
    User(i64),
    Group(i64),
}

/// Who a share is granted to, by name (for models).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grantee {
    User(String),
    Group(String),
}

/// The server a share or code is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedServer {
    pub id: i64,
    pub owner_id: i64,
    pub owner: String,
    /// `""` for the default server.
    pub name: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Share {
    pub id: i64,
    pub server: SharedServer,
    pub with: Grantee,
    /// Sorted, each with the server's filter: `access:servers!server=alice/`.
    pub scopes: Vec<String>,
    pub created: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ShareCode {
    pub id: i64,
    pub server: SharedServer,
    /// Sorted, each with the server's filter.
    pub scopes: Vec<String>,
    pub created: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub exchange_count: i64,
    pub last_exchanged_at: Option<DateTime<Utc>>,
}

/// Which shares to list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareQuery {
    /// Every share of the owner's servers.
    Owner(i64),
    /// The shares of one server.
    Server(i64),
    /// Shares granted to the user directly or through one of their groups.
    SharedWithUser(i64),
    /// Shares granted to the group.
    SharedWithGroup(i64),
}

/// Which share codes to list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareCodeQuery {
    Owner(i64),
    Server(i64),
}

/// The filter shares add to every scope.
pub fn server_filter(owner: &str, server: &str) -> String {
    format!("!server={owner}/{server}")
}

/// The base of a scope: `access:servers!server=a/` → `access:servers`.
pub fn scope_base(scope: &str) -> &str {
    scope.split_once('!').map_or(scope, |(base, _)| base)
}

fn filtered(bases: &[String], server: &SharedServer) -> Vec<String> {
    let filter = server_filter(&server.owner, &server.name);
    let mut scopes: Vec<String> = bases.iter().map(|b| format!("{b}{filter}")).collect();
    scopes.sort();
    scopes.dedup();
    scopes
}

fn bases_of(scopes: &[String]) -> Vec<String> {
    let mut bases: Vec<String> = scopes.iter().map(|s| scope_base(s).to_string()).collect();
    bases.sort();
    bases.dedup();
    bases
}

const SHARE_SELECT: &str = "SELECT sh.id, sh.scopes, sh.created, sh.server_id, sh.owner_id, \
    s.name AS server_name, o.name AS owner_name, gu.name AS user_name, g.name AS group_name \
    FROM shares sh JOIN servers s ON s.id = sh.server_id JOIN users o ON o.id = sh.owner_id \
    LEFT JOIN users gu ON gu.id = sh.user_id LEFT JOIN groups g ON g.id = sh.group_id";

const CODE_SELECT: &str = "SELECT c.id, c.scopes, c.created, c.expires_at, c.exchange_count, \
    c.last_exchanged_at, c.server_id, c.owner_id, s.name AS server_name, o.name AS owner_name \
    FROM share_codes c JOIN servers s ON s.id = c.server_id JOIN users o ON o.id = c.owner_id";

fn server_from_row(row: &AnyRow) -> Result<SharedServer> {
    Ok(SharedServer {
        id: row.try_get("server_id")?,
        owner_id: row.try_get("owner_id")?,
        owner: row.try_get("owner_name")?,
        name: row.try_get("server_name")?,
    })
}

fn share_from_row(row: &AnyRow) -> Result<Share> {
    let server = server_from_row(row)?;
    let user: Option<String> = row.try_get("user_name")?;
    let group: Option<String> = row.try_get("group_name")?;
    let with = match (user, group) {
        (Some(user), None) => Grantee::User(user),
        (None, Some(group)) => Grantee::Group(group),
        _ => {
            return Err(StoreError::Corrupt {
                what: "share",
                detail: "a share must be granted to exactly one user or group".into(),
            })
        }
    };
    Ok(Share {
        id: row.try_get("id")?,
        scopes: filtered(&string_list(row, "scopes", "share scopes")?, &server),
        server,
        with,
        created: from_micros(row.try_get("created")?),
    })
}

fn code_from_row(row: &AnyRow) -> Result<ShareCode> {
    let server = server_from_row(row)?;
    Ok(ShareCode {
        id: row.try_get("id")?,
        scopes: filtered(&string_list(row, "scopes", "share code scopes")?, &server),
        server,
        created: from_micros(row.try_get("created")?),
        expires_at: from_micros(row.try_get("expires_at")?),
        exchange_count: row.try_get("exchange_count")?,
        last_exchanged_at: opt_time(row, "last_exchanged_at")?,
    })
}

fn with_column(with: ShareWith) -> (&'static str, i64) {
    match with {
        ShareWith::User(id) => ("user_id", id),
        ShareWith::Group(id) => ("group_id", id),
    }
}

impl Store {
    /// Grant `scopes` (their bases; filters are replaced by the server's) on a server:
    /// added to an existing share, or a new share. Empty `scopes` grant nothing.
    pub async fn grant_share(
        &self,
        server_id: i64,
        with: ShareWith,
        scopes: &[String],
    ) -> Result<Share> {
        let _changing = self.bump();
        let mut tx = self.begin_write().await?;
        let owner_id: i64 = sqlx::query("SELECT user_id FROM servers WHERE id = $1")
            .bind(server_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                what: "share",
                detail: format!("no server with id {server_id}"),
            })?
            .try_get("user_id")?;
        let (column, id) = with_column(with);
        let existing = sqlx::query(&format!(
            "SELECT id, scopes FROM shares WHERE server_id = $1 AND {column} = $2"
        ))
        .bind(server_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let share_id: i64 = match existing {
            Some(row) => {
                let mut bases = string_list(&row, "scopes", "share scopes")?;
                bases.extend(bases_of(scopes));
                let bases = bases_of(&bases);
                let share_id: i64 = row.try_get("id")?;
                sqlx::query("UPDATE shares SET scopes = $1 WHERE id = $2")
                    .bind(json_text(&bases))
                    .bind(share_id)
                    .execute(&mut *tx)
                    .await?;
                share_id
            }
            None => sqlx::query(&format!(
                "INSERT INTO shares (owner_id, server_id, {column}, scopes, created) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id"
            ))
            .bind(owner_id)
            .bind(server_id)
            .bind(id)
            .bind(json_text(&bases_of(scopes)))
            .bind(to_micros(Utc::now()))
            .fetch_one(&mut *tx)
            .await?
            .try_get("id")?,
        };
        tx.commit().await?;
        self.share_by_id(share_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                what: "share",
                detail: format!("share {share_id} vanished right after it was written"),
            })
    }

    async fn share_by_id(&self, id: i64) -> Result<Option<Share>> {
        let row = sqlx::query(&format!("{SHARE_SELECT} WHERE sh.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(share_from_row).transpose()
    }

    /// The share of a server with a user or group.
    pub async fn share(&self, server_id: i64, with: ShareWith) -> Result<Option<Share>> {
        let (column, id) = with_column(with);
        let row = sqlx::query(&format!(
            "{SHARE_SELECT} WHERE sh.server_id = $1 AND sh.{column} = $2"
        ))
        .bind(server_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(share_from_row).transpose()
    }

    /// Revoke `scopes` (by base) from a share, or all of it with `None`. Returns the
    /// share that remains, `None` when nothing remains (or there was no share).
    pub async fn revoke_share(
        &self,
        server_id: i64,
        with: ShareWith,
        scopes: Option<&[String]>,
    ) -> Result<Option<Share>> {
        let _changing = self.bump();
        let (column, id) = with_column(with);
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&format!(
            "SELECT id, scopes FROM shares WHERE server_id = $1 AND {column} = $2"
        ))
        .bind(server_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let share_id: i64 = row.try_get("id")?;
        let remaining: Vec<String> = match scopes {
            None => Vec::new(),
            Some(revoked) => {
                let revoked = bases_of(revoked);
                string_list(&row, "scopes", "share scopes")?
                    .into_iter()
                    .filter(|b| !revoked.contains(b))
                    .collect()
            }
        };
        if remaining.is_empty() {
            sqlx::query("DELETE FROM shares WHERE id = $1")
                .bind(share_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(None);
        }
        sqlx::query("UPDATE shares SET scopes = $1 WHERE id = $2")
            .bind(json_text(&remaining))
            .bind(share_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.share_by_id(share_id).await
    }

    /// Remove every share of a server; returns how many there were.
    pub async fn delete_server_shares(&self, server_id: i64) -> Result<u64> {
        let _changing = self.bump();
        Ok(sqlx::query("DELETE FROM shares WHERE server_id = $1")
            .bind(server_id)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// A page of shares in creation order, and how many match in all.
    pub async fn list_shares(
        &self,
        query: ShareQuery,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<Share>, i64)> {
        let (condition, id) = match query {
            ShareQuery::Owner(id) => ("sh.owner_id = $1", id),
            ShareQuery::Server(id) => ("sh.server_id = $1", id),
            ShareQuery::SharedWithUser(id) => (
                "(sh.user_id = $1 OR sh.group_id IN \
                 (SELECT group_id FROM user_groups WHERE user_id = $1))",
                id,
            ),
            ShareQuery::SharedWithGroup(id) => ("sh.group_id = $1", id),
        };
        let total: i64 = sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM shares sh WHERE {condition}"
        ))
        .bind(id)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        let rows = sqlx::query(&format!(
            "{SHARE_SELECT} WHERE {condition} ORDER BY sh.id LIMIT $2 OFFSET $3"
        ))
        .bind(id)
        .bind(limit.max(0))
        .bind(offset.max(0))
        .fetch_all(&self.pool)
        .await?;
        Ok((
            rows.iter().map(share_from_row).collect::<Result<_>>()?,
            total,
        ))
    }

    /// The scopes shared with a user, directly or through their groups, with filters
    /// (`access:servers!server=bob/`): to be added to the user's own scopes.
    pub async fn share_scopes_for_user(&self, user_id: i64) -> Result<Vec<String>> {
        // One query: this runs on every authenticated request.
        let rows = sqlx::query(
            "SELECT sh.scopes, s.name AS server_name, o.name AS owner_name \
             FROM shares sh JOIN servers s ON s.id = sh.server_id \
             JOIN users o ON o.id = sh.owner_id \
             WHERE sh.user_id = $1 OR sh.group_id IN \
             (SELECT group_id FROM user_groups WHERE user_id = $1)",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let mut scopes = Vec::new();
        for row in &rows {
            let owner: String = row.try_get("owner_name")?;
            let server: String = row.try_get("server_name")?;
            let filter = server_filter(&owner, &server);
            for base in string_list(row, "scopes", "share scopes")? {
                scopes.push(format!("{base}{filter}"));
            }
        }
        scopes.sort();
        scopes.dedup();
        Ok(scopes)
    }

    // ---- share codes ----

    /// Issue a code for a server. Returns the code's record and the code itself, which
    /// is not stored (only its hash) and cannot be shown again.
    pub async fn create_share_code(
        &self,
        server_id: i64,
        scopes: &[String],
        expires_at: DateTime<Utc>,
    ) -> Result<(ShareCode, String)> {
        let owner_id: i64 = sqlx::query("SELECT user_id FROM servers WHERE id = $1")
            .bind(server_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                what: "share code",
                detail: format!("no server with id {server_id}"),
            })?
            .try_get("user_id")?;
        // 256 random bits, like JupyterHub's `token_urlsafe(32)`.
        let code = format!("{}{}", secret::new_token(), secret::new_token());
        let id: i64 = sqlx::query(
            "INSERT INTO share_codes (owner_id, server_id, code_hash, scopes, created, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(owner_id)
        .bind(server_id)
        .bind(secret::lookup_hash(&code))
        .bind(json_text(&bases_of(scopes)))
        .bind(to_micros(Utc::now()))
        .bind(to_micros(expires_at))
        .fetch_one(&self.pool)
        .await?
        .try_get("id")?;
        let row = sqlx::query(&format!("{CODE_SELECT} WHERE c.id = $1"))
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        Ok((code_from_row(&row)?, code))
    }

    /// The unexpired code whose value is `code`.
    pub async fn share_code(&self, code: &str) -> Result<Option<ShareCode>> {
        let row = sqlx::query(&format!(
            "{CODE_SELECT} WHERE c.code_hash = $1 AND c.expires_at > $2"
        ))
        .bind(secret::lookup_hash(code))
        .bind(to_micros(Utc::now()))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(code_from_row).transpose()
    }

    /// A page of unexpired codes in creation order, and how many there are in all.
    pub async fn list_share_codes(
        &self,
        query: ShareCodeQuery,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<ShareCode>, i64)> {
        let (condition, id) = match query {
            ShareCodeQuery::Owner(id) => ("c.owner_id = $1", id),
            ShareCodeQuery::Server(id) => ("c.server_id = $1", id),
        };
        let now = to_micros(Utc::now());
        let total: i64 = sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM share_codes c WHERE {condition} AND c.expires_at > $2"
        ))
        .bind(id)
        .bind(now)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        let rows = sqlx::query(&format!(
            "{CODE_SELECT} WHERE {condition} AND c.expires_at > $2 ORDER BY c.id LIMIT $3 OFFSET $4"
        ))
        .bind(id)
        .bind(now)
        .bind(limit.max(0))
        .bind(offset.max(0))
        .fetch_all(&self.pool)
        .await?;
        Ok((
            rows.iter().map(code_from_row).collect::<Result<_>>()?,
            total,
        ))
    }

    /// Delete the code of this server whose value is `code`.
    pub async fn delete_share_code(&self, server_id: i64, code: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM share_codes WHERE server_id = $1 AND code_hash = $2")
            .bind(server_id)
            .bind(secret::lookup_hash(code))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Delete the code of this server with this id (the `N` of `sc_N`).
    pub async fn delete_share_code_by_id(&self, server_id: i64, id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM share_codes WHERE server_id = $1 AND id = $2")
            .bind(server_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Delete every code of a server; returns how many there were.
    pub async fn delete_server_share_codes(&self, server_id: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM share_codes WHERE server_id = $1")
            .bind(server_id)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Exchange a code for a share with `user_id`, counting the exchange. `None` when
    /// the code is unknown or expired (an expired code is deleted).
    pub async fn exchange_share_code(&self, code: &str, user_id: i64) -> Result<Option<Share>> {
        let _changing = self.bump();
        let hash = secret::lookup_hash(code);
        let row = sqlx::query(
            "SELECT id, server_id, scopes, expires_at FROM share_codes WHERE code_hash = $1",
        )
        .bind(&hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let id: i64 = row.try_get("id")?;
        let now = Utc::now();
        if from_micros(row.try_get("expires_at")?) <= now {
            sqlx::query("DELETE FROM share_codes WHERE id = $1")
                .bind(id)
                .execute(&self.pool)
                .await?;
            return Ok(None);
        }
        let server_id: i64 = row.try_get("server_id")?;
        let scopes = string_list(&row, "scopes", "share code scopes")?;
        let share = self
            .grant_share(server_id, ShareWith::User(user_id), &scopes)
            .await?;
        sqlx::query(
            "UPDATE share_codes SET exchange_count = exchange_count + 1, last_exchanged_at = $1 \
             WHERE id = $2",
        )
        .bind(to_micros(now))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(Some(share))
    }

    /// Remove expired share codes.
    pub async fn purge_expired_share_codes(&self) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM share_codes WHERE expires_at <= $1")
                .bind(to_micros(Utc::now()))
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_get_the_server_filter() {
        let server = SharedServer {
            id: 1,
            owner_id: 1,
            owner: "alice".into(),
            name: String::new(),
        };
        assert_eq!(
            filtered(&["read:servers".into(), "access:servers".into()], &server),
            vec!["access:servers!server=alice/", "read:servers!server=alice/"]
        );
        assert_eq!(
            bases_of(&["access:servers!server=x/y".into(), "access:servers".into()]),
            vec!["access:servers"]
        );
        assert_eq!(scope_base("read:shares!user=bob"), "read:shares");
        assert_eq!(server_filter("bob", "gpu"), "!server=bob/gpu");
    }
}
