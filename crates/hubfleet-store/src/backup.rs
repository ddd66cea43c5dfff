//! A consistent copy of a SQLite database while the hub writes to it: SQLite's `VACUUM INTO`,
//! one read transaction, so the copy is a snapshot (WAL readers do not block the hub's writes).

use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Row};

use crate::{Result, StoreError};

/// Open `path` as it is: no migrations (the hub that owns it decides its schema), no creation.
async fn open(path: &Path) -> Result<SqliteConnection> {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(std::time::Duration::from_secs(30))
        .connect()
        .await
        .map_err(|source| StoreError::Connect {
            url: format!("sqlite://{}", path.display()),
            source,
        })
}

/// Write a consistent copy of the SQLite database `database` into `out`, which must not exist
/// or be empty (create it first with the mode the copy should have). The copy is then checked
/// (`PRAGMA quick_check`).
pub async fn sqlite_into(database: &Path, out: &Path) -> Result<()> {
    let mut source = open(database).await?;
    let target = out.to_str().ok_or_else(|| StoreError::Corrupt {
        what: "backup file name",
        detail: format!("{} is not valid UTF-8", out.display()),
    })?;
    sqlx::query("VACUUM INTO ?")
        .bind(target)
        .execute(&mut source)
        .await?;
    source.close().await?;
    let mut copy = open(out).await?;
    let verdict: String = sqlx::query("PRAGMA quick_check")
        .fetch_one(&mut copy)
        .await?
        .try_get(0)?;
    copy.close().await?;
    if verdict != "ok" {
        return Err(StoreError::Corrupt {
            what: "backup",
            detail: format!("SQLite's check of the copy says: {verdict}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    #[tokio::test]
    async fn a_copy_made_while_the_store_is_open_holds_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("hub.sqlite");
        let store = Store::connect(&format!("sqlite://{}?mode=rwc", database.display()))
            .await
            .unwrap();
        store.create_user("ann", true).await.unwrap();
        let out = dir.path().join("copy.sqlite");
        std::fs::File::create(&out).unwrap();
        sqlite_into(&database, &out).await.unwrap();
        // Written after the copy: not in it.
        store.create_user("late", false).await.unwrap();
        store.close().await;
        let copy = Store::connect(&format!("sqlite://{}", out.display()))
            .await
            .unwrap();
        assert!(copy.user_by_name("ann").await.unwrap().unwrap().admin);
        assert!(copy.user_by_name("late").await.unwrap().is_none());
        // A file with something in it is never overwritten.
        let err = sqlite_into(&database, &out).await.unwrap_err();
        assert!(
            err.to_string().contains("output file already exists"),
            "{err}"
        );
    }
}
