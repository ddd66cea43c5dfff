//! Profiles and local environments as versioned objects (`environments`,
//! `environment_versions`).
//!
//! Each object is stored with its current state (`data`: its values as JSON, as they would be
//! written in the values file), where it came from (`config` or `ui`), whether it is hidden or
//! deleted, and every version it had: who made it, when, the action, a comment and a diff
//! against the version before. Restoring an old version writes it again as a new version, so
//! history is never rewritten. A deleted object keeps its history (and can be restored).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{from_micros, is_unique_violation, json_col, to_micros, Result, Store, StoreError};

/// What kind of object: a profile or a local environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvKind {
    /// A `singleuser.profileList` entry.
    Profile,
    /// A `hubfleet.local.environments` entry.
    Environment,
}

impl EnvKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EnvKind::Profile => "profile",
            EnvKind::Environment => "environment",
        }
    }
}

/// One object as it is now.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredEnvironment {
    pub kind: EnvKind,
    pub name: String,
    /// `config` (seeded from the values file) or `ui` (made in the admin panel or the API).
    pub source: String,
    /// Order among objects of its kind (the values file's order; new ones go last).
    pub position: i64,
    pub hidden: bool,
    pub deleted: bool,
    pub version: i64,
    pub data: Value,
}

/// One version of an object.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EnvironmentVersion {
    pub version: i64,
    pub author: String,
    pub created: DateTime<Utc>,
    /// `create`, `update`, `hide`, `show`, `delete`, `restore`, `config`, …
    pub action: String,
    pub comment: String,
    /// What changed against the version before, one line per value (`~ key: old → new`,
    /// `+ key: new`, `- key: old`).
    pub diff: String,
    pub hidden: bool,
    pub deleted: bool,
    pub data: Value,
}

/// What an object should become.
#[derive(Clone, Debug)]
pub struct EnvironmentState {
    pub source: String,
    pub hidden: bool,
    pub deleted: bool,
    pub data: Value,
}

/// Who makes a change, and why.
#[derive(Clone, Debug)]
pub struct EnvChange<'a> {
    pub author: &'a str,
    pub action: &'a str,
    pub comment: &'a str,
}

fn stored(row: &AnyRow, kind: EnvKind) -> Result<StoredEnvironment> {
    Ok(StoredEnvironment {
        kind,
        name: row.try_get("name")?,
        source: row.try_get("source")?,
        position: row.try_get("position")?,
        hidden: row.try_get::<i64, _>("hidden")? != 0,
        deleted: row.try_get::<i64, _>("deleted")? != 0,
        version: row.try_get("version")?,
        data: json_col(row, "data", "environment")?,
    })
}

/// Flatten a JSON value into `path: value` lines (objects by key, arrays by index).
fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}.{i}"), v, out);
            }
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// A readable diff of two states: one line per value that changed.
pub fn diff_states(old: Option<&EnvironmentState>, new: &EnvironmentState) -> String {
    let mut before = Vec::new();
    let mut after = Vec::new();
    if let Some(old) = old {
        flatten("", &old.data, &mut before);
        before.push(("hidden".into(), old.hidden.to_string()));
        before.push(("deleted".into(), old.deleted.to_string()));
    }
    flatten("", &new.data, &mut after);
    after.push(("hidden".into(), new.hidden.to_string()));
    after.push(("deleted".into(), new.deleted.to_string()));
    let old_map: std::collections::BTreeMap<_, _> = before.into_iter().collect();
    let new_map: std::collections::BTreeMap<_, _> = after.into_iter().collect();
    let mut lines = Vec::new();
    for (k, v) in &new_map {
        match old_map.get(k) {
            None if old.is_some() => lines.push(format!("+ {k}: {v}")),
            None => {
                if !matches!(k.as_str(), "hidden" | "deleted") || v != "false" {
                    lines.push(format!("+ {k}: {v}"))
                }
            }
            Some(o) if o != v => lines.push(format!("~ {k}: {o} → {v}")),
            Some(_) => {}
        }
    }
    for (k, v) in &old_map {
        if !new_map.contains_key(k) {
            lines.push(format!("- {k}: {v}"));
        }
    }
    lines.join("\n")
}

impl Store {
    /// The objects of `kind` that are not deleted (hidden ones included), in order.
    pub async fn environments(&self, kind: EnvKind) -> Result<Vec<StoredEnvironment>> {
        let rows = sqlx::query(
            "SELECT name, source, position, hidden, deleted, version, data FROM environments \
             WHERE kind = $1 AND deleted = 0 ORDER BY position, name",
        )
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| stored(r, kind)).collect()
    }

    /// Every object of `kind`, deleted ones too.
    pub async fn all_environments(&self, kind: EnvKind) -> Result<Vec<StoredEnvironment>> {
        let rows = sqlx::query(
            "SELECT name, source, position, hidden, deleted, version, data FROM environments \
             WHERE kind = $1 ORDER BY position, name",
        )
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| stored(r, kind)).collect()
    }

    /// One object (deleted or not).
    pub async fn environment(
        &self,
        kind: EnvKind,
        name: &str,
    ) -> Result<Option<StoredEnvironment>> {
        let row = sqlx::query(
            "SELECT name, source, position, hidden, deleted, version, data FROM environments \
             WHERE kind = $1 AND name = $2",
        )
        .bind(kind.as_str())
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| stored(&r, kind)).transpose()
    }

    /// Make an object be `state`, recording a new version, unless it already is exactly that
    /// (then nothing is written and the object is returned as it is: writing the same state
    /// twice is a no-op). `position`: where a new object goes (`None`: last); an existing one
    /// keeps its place unless given one. `expect_version`: refuse (a conflict) when the object
    /// has changed since the caller read it.
    pub async fn put_environment(
        &self,
        kind: EnvKind,
        name: &str,
        state: &EnvironmentState,
        position: Option<i64>,
        expect_version: Option<i64>,
        change: &EnvChange<'_>,
    ) -> Result<StoredEnvironment> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT name, source, position, hidden, deleted, version, data FROM environments \
             WHERE kind = $1 AND name = $2",
        )
        .bind(kind.as_str())
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let current = row.map(|r| stored(&r, kind)).transpose()?;
        if let (Some(expected), Some(cur)) = (expect_version, &current) {
            if cur.version != expected {
                return Err(StoreError::Conflict {
                    what: "newer version of",
                    name: format!("{name} (version {} was saved meanwhile)", cur.version),
                });
            }
        }
        let old_state = current.as_ref().map(|c| EnvironmentState {
            source: c.source.clone(),
            hidden: c.hidden,
            deleted: c.deleted,
            data: c.data.clone(),
        });
        if let Some(cur) = &current {
            let same = cur.data == state.data
                && cur.hidden == state.hidden
                && cur.deleted == state.deleted
                && cur.source == state.source;
            if same {
                // Only the place may change: that is no new version.
                let mut cur = cur.clone();
                if let Some(p) = position.filter(|p| *p != cur.position) {
                    sqlx::query(
                        "UPDATE environments SET position = $1 WHERE kind = $2 AND name = $3",
                    )
                    .bind(p)
                    .bind(kind.as_str())
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                    cur.position = p;
                    tx.commit().await?;
                } else {
                    tx.rollback().await?;
                }
                return Ok(cur);
            }
        }
        let version = current.as_ref().map_or(1, |c| c.version + 1);
        let position = match (position, &current) {
            (Some(p), _) => p,
            (None, Some(c)) => c.position,
            (None, None) => {
                let max: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(position) FROM environments WHERE kind = $1")
                        .bind(kind.as_str())
                        .fetch_one(&mut *tx)
                        .await?;
                max.map_or(0, |m| m + 1)
            }
        };
        let data = serde_json::to_string(&state.data).unwrap_or_else(|_| "null".into());
        let diff = diff_states(old_state.as_ref(), state);
        let conflict = |e: sqlx::Error| {
            if is_unique_violation(&e) {
                StoreError::Conflict {
                    what: "newer version of",
                    name: format!("{name} (saved by someone else meanwhile; reload and retry)"),
                }
            } else {
                e.into()
            }
        };
        sqlx::query(
            "INSERT INTO environment_versions \
             (kind, name, version, author, created, action, comment, diff, hidden, deleted, data) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(kind.as_str())
        .bind(name)
        .bind(version)
        .bind(change.author)
        .bind(to_micros(Utc::now()))
        .bind(change.action)
        .bind(change.comment)
        .bind(&diff)
        .bind(i64::from(state.hidden))
        .bind(i64::from(state.deleted))
        .bind(&data)
        .execute(&mut *tx)
        .await
        .map_err(conflict)?;
        if current.is_some() {
            sqlx::query(
                "UPDATE environments SET source = $1, position = $2, hidden = $3, deleted = $4, \
                 version = $5, data = $6 WHERE kind = $7 AND name = $8",
            )
            .bind(&state.source)
            .bind(position)
            .bind(i64::from(state.hidden))
            .bind(i64::from(state.deleted))
            .bind(version)
            .bind(&data)
            .bind(kind.as_str())
            .bind(name)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(
                "INSERT INTO environments (kind, name, source, position, hidden, deleted, version, data) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(kind.as_str())
            .bind(name)
            .bind(&state.source)
            .bind(position)
            .bind(i64::from(state.hidden))
            .bind(i64::from(state.deleted))
            .bind(version)
            .bind(&data)
            .execute(&mut *tx)
            .await
            .map_err(conflict)?;
        }
        tx.commit().await?;
        Ok(StoredEnvironment {
            kind,
            name: name.to_string(),
            source: state.source.clone(),
            position,
            hidden: state.hidden,
            deleted: state.deleted,
            version,
            data: state.data.clone(),
        })
    }

    /// Every version of an object, newest first.
    pub async fn environment_history(
        &self,
        kind: EnvKind,
        name: &str,
    ) -> Result<Vec<EnvironmentVersion>> {
        let rows = sqlx::query(
            "SELECT version, author, created, action, comment, diff, hidden, deleted, data \
             FROM environment_versions WHERE kind = $1 AND name = $2 ORDER BY version DESC",
        )
        .bind(kind.as_str())
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(EnvironmentVersion {
                    version: row.try_get("version")?,
                    author: row.try_get("author")?,
                    created: from_micros(row.try_get("created")?),
                    action: row.try_get("action")?,
                    comment: row.try_get("comment")?,
                    diff: row.try_get("diff")?,
                    hidden: row.try_get::<i64, _>("hidden")? != 0,
                    deleted: row.try_get::<i64, _>("deleted")? != 0,
                    data: json_col(row, "data", "environment version")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state(data: Value) -> EnvironmentState {
        EnvironmentState {
            source: "ui".into(),
            hidden: false,
            deleted: false,
            data,
        }
    }

    #[tokio::test]
    async fn versions_are_recorded_and_same_state_is_a_no_op() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let by = |author| EnvChange {
            author,
            action: "update",
            comment: "",
        };
        let a = json!({"display_name": "A", "kubespawner_override": {"mem_limit": "1G"}});
        let s = store
            .put_environment(
                EnvKind::Profile,
                "a",
                &state(a.clone()),
                None,
                None,
                &by("ann"),
            )
            .await
            .unwrap();
        assert_eq!(s.version, 1);
        let again = store
            .put_environment(EnvKind::Profile, "a", &state(a), None, None, &by("ann"))
            .await
            .unwrap();
        assert_eq!(again.version, 1);
        let b = json!({"display_name": "A", "kubespawner_override": {"mem_limit": "2G"}});
        let s = store
            .put_environment(EnvKind::Profile, "a", &state(b), None, Some(1), &by("bob"))
            .await
            .unwrap();
        assert_eq!(s.version, 2);
        let stale = store
            .put_environment(
                EnvKind::Profile,
                "a",
                &state(json!({})),
                None,
                Some(1),
                &by("x"),
            )
            .await;
        assert!(matches!(stale, Err(StoreError::Conflict { .. })));
        let history = store
            .environment_history(EnvKind::Profile, "a")
            .await
            .unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].author, "bob");
        assert_eq!(
            history[0].diff,
            "~ kubespawner_override.mem_limit: \"1G\" → \"2G\""
        );
        assert!(store
            .environments(EnvKind::Environment)
            .await
            .unwrap()
            .is_empty());
    }
}
