//! What `hub.cookieSecret` needs from the database: the fingerprint of the secret in use, and
//! ending every login session when it changes.

use sqlx::Row;

use crate::{Result, Store};

/// The `hub_secrets` row that holds the fingerprint (a hash, not a secret).
const FINGERPRINT: &str = "cookie_secret_fingerprint";

impl Store {
    /// Record `fingerprint` (empty: no cookie secret) as the one in use. When it differs from the
    /// recorded one (none recorded counts as empty), every login session ends, with the tokens
    /// and OAuth codes issued under one, in the same transaction: `Some(sessions ended)`.
    /// `None`: unchanged.
    pub async fn record_cookie_secret(&self, fingerprint: &str) -> Result<Option<u64>> {
        let _changing = self.bump();
        let mut tx = self.begin_write().await?;
        let recorded: Option<String> = sqlx::query("SELECT value FROM hub_secrets WHERE name = $1")
            .bind(FINGERPRINT)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.try_get("value"))
            .transpose()?;
        if recorded.as_deref().unwrap_or_default() == fingerprint {
            return Ok(None);
        }
        sqlx::query("DELETE FROM api_tokens WHERE session_id IS NOT NULL")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM oauth_codes WHERE session_id IS NOT NULL")
            .execute(&mut *tx)
            .await?;
        let ended = sqlx::query("DELETE FROM sessions")
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(
            "INSERT INTO hub_secrets (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(FINGERPRINT)
        .bind(fingerprint)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(ended))
    }
}
