//! `auth_state` encrypted at rest, as JupyterHub's `jupyterhub/crypto.py` does it.
//!
//! `JUPYTERHUB_CRYPT_KEY` holds one or more 32-byte keys (64 hex digits, 44 base64
//! characters, or 32 raw characters), separated by `;`. The state is stored as a Fernet
//! token of its JSON text: the first key encrypts, every key decrypts (MultiFernet), so a
//! new key put first rotates the old one out. The tokens are the ones upstream writes, so
//! a key from a JupyterHub deployment keeps working here.
//!
//! Rows written in clear by older versions (JSON text) are still read, and
//! [`Store::reseal_auth_states`] encrypts them at start-up once a key is configured.

use std::sync::Arc;

use base64::Engine;
use fernet::{Fernet, MultiFernet};
use serde_json::Value;
use sqlx::Row;

use crate::{Result, Store, StoreError};

/// The environment variable JupyterHub reads its keys from.
pub const CRYPT_KEY_ENV: &str = "JUPYTERHUB_CRYPT_KEY";

/// How to make a key, for error messages.
pub const KEY_HINT: &str =
    "generate one with `openssl rand -hex 32` and set it as JUPYTERHUB_CRYPT_KEY in the hub's environment";

/// Every Fernet token starts with the version byte 0x80 and a 64-bit timestamp whose high
/// bytes are zero, which base64 writes as this; JSON text never starts so.
const TOKEN_PREFIX: &str = "gAAAAA";

#[derive(Debug, thiserror::Error)]
pub enum CryptKeyError {
    #[error(
        "{CRYPT_KEY_ENV}: key {position} is {len} bytes once decoded, but each key must be 32 \
         bytes (64 hex digits or 44 base64 characters); {KEY_HINT}"
    )]
    BadKey { position: usize, len: usize },
    #[error("{CRYPT_KEY_ENV} is set but holds no key; {KEY_HINT}")]
    Empty,
}

/// The keys auth_state is encrypted with.
#[derive(Clone)]
pub struct CryptKeeper {
    primary: Fernet,
    all: MultiFernet,
    count: usize,
}

impl std::fmt::Debug for CryptKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys themselves.
        f.debug_struct("CryptKeeper")
            .field("keys", &self.count)
            .finish()
    }
}

/// One key as upstream's `_validate_key` reads it: 44 characters are base64 (either
/// alphabet), 64 are hex, anything else is taken as the raw bytes.
fn decode_key(key: &str) -> Vec<u8> {
    let bytes = key.as_bytes();
    if bytes.len() == 44 {
        let standard = key.replace('-', "+").replace('_', "/");
        if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(standard) {
            return raw;
        }
    } else if bytes.len() == 64 {
        if let Ok(raw) = hex::decode(key) {
            return raw;
        }
    }
    bytes.to_vec()
}

impl CryptKeeper {
    /// Parse a `;`-separated key list (the value of `JUPYTERHUB_CRYPT_KEY`).
    pub fn from_keys(value: &str) -> Result<CryptKeeper, CryptKeyError> {
        let mut fernets = Vec::new();
        for (i, key) in value
            .split(';')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .enumerate()
        {
            let raw = decode_key(key);
            let fernet = (raw.len() == 32)
                .then(|| Fernet::new(&base64::engine::general_purpose::URL_SAFE.encode(&raw)))
                .flatten()
                .ok_or(CryptKeyError::BadKey {
                    position: i + 1,
                    len: raw.len(),
                })?;
            fernets.push(fernet);
        }
        let primary = fernets.first().cloned().ok_or(CryptKeyError::Empty)?;
        Ok(CryptKeeper {
            primary,
            count: fernets.len(),
            all: MultiFernet::new(fernets),
        })
    }

    /// The keys of `JUPYTERHUB_CRYPT_KEY`, or `None` when it is unset or blank.
    pub fn from_env() -> Result<Option<CryptKeeper>, CryptKeyError> {
        match std::env::var(CRYPT_KEY_ENV) {
            Ok(value) if !value.trim().is_empty() => CryptKeeper::from_keys(&value).map(Some),
            _ => Ok(None),
        }
    }

    pub fn key_count(&self) -> usize {
        self.count
    }

    /// A Fernet token of the JSON text, with the first key.
    pub fn encrypt(&self, value: &Value) -> String {
        self.primary.encrypt(crate::json_text(value).as_bytes())
    }

    /// The value of a token made with any of the keys.
    pub fn decrypt(&self, token: &str) -> Result<Value, AuthStateError> {
        let plain = self
            .all
            .decrypt(token)
            .map_err(|_| AuthStateError::WrongKey)?;
        serde_json::from_slice(&plain).map_err(|e| AuthStateError::NotJson(e.to_string()))
    }

    /// Whether the first key made `token` (else it needs re-encrypting after a rotation).
    fn made_by_primary(&self, token: &str) -> bool {
        self.primary.decrypt(token).is_ok()
    }
}

/// Why a stored auth_state cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthStateError {
    #[error(
        "it was encrypted with a key that is not in {CRYPT_KEY_ENV} (keep the old key after \
         the new one, separated by `;`, while rotating)"
    )]
    WrongKey,
    #[error("it is encrypted and {CRYPT_KEY_ENV} is not set")]
    NoKey,
    #[error("it is not JSON: {0}")]
    NotJson(String),
}

/// What [`Store::reseal_auth_states`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResealReport {
    /// Rows in clear (from older versions) now encrypted.
    pub encrypted: u64,
    /// Rows made with an older key, now encrypted with the first one.
    pub rotated: u64,
    /// Rows no configured key can decrypt (left as they are).
    pub unreadable: u64,
}

impl Store {
    /// Encrypt auth_state with these keys from now on.
    pub fn with_crypt_keeper(mut self, keeper: CryptKeeper) -> Store {
        self.crypt = Some(Arc::new(keeper));
        self
    }

    pub fn crypt_keeper(&self) -> Option<&CryptKeeper> {
        self.crypt.as_deref()
    }

    /// The text to store for an auth_state: a Fernet token. Without keys nothing is stored
    /// in clear: an error says what to configure.
    pub(crate) fn seal_auth_state(&self, state: Option<&Value>) -> Result<Option<String>> {
        match (state, &self.crypt) {
            (None, _) => Ok(None),
            (Some(value), Some(keeper)) => Ok(Some(keeper.encrypt(value))),
            (Some(_), None) => Err(StoreError::NoCryptKey),
        }
    }

    /// A stored auth_state, decrypted; JSON text from older versions as it is.
    pub fn decode_auth_state(&self, stored: &str) -> Result<Value, AuthStateError> {
        if !stored.starts_with(TOKEN_PREFIX) {
            return serde_json::from_str(stored)
                .map_err(|e| AuthStateError::NotJson(e.to_string()));
        }
        self.crypt
            .as_ref()
            .ok_or(AuthStateError::NoKey)?
            .decrypt(stored)
    }

    /// As upstream's `User.get_auth_state`: a state that cannot be read is logged and read
    /// as none, so the user logs in again and gets a new one.
    pub(crate) fn open_auth_state(&self, user_id: i64, stored: &str) -> Option<Value> {
        match self.decode_auth_state(stored) {
            Ok(value) => Some(value),
            Err(e) => {
                tracing::warn!(
                    user_id,
                    "the user's auth_state cannot be read, so it is treated as empty: {e}"
                );
                None
            }
        }
    }

    /// With keys configured: encrypt auth_state rows stored in clear by older versions, and
    /// re-encrypt with the first key those made with another listed key (rotation).
    pub async fn reseal_auth_states(&self) -> Result<ResealReport> {
        let mut report = ResealReport::default();
        let Some(keeper) = self.crypt.clone() else {
            return Ok(report);
        };
        let rows = sqlx::query("SELECT id, auth_state FROM users WHERE auth_state IS NOT NULL")
            .fetch_all(&self.pool)
            .await?;
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let stored: String = row.try_get("auth_state")?;
            let value = if !stored.starts_with(TOKEN_PREFIX) {
                match serde_json::from_str::<Value>(&stored) {
                    Ok(value) => {
                        report.encrypted += 1;
                        value
                    }
                    Err(_) => {
                        report.unreadable += 1;
                        continue;
                    }
                }
            } else if keeper.made_by_primary(&stored) {
                continue;
            } else {
                match keeper.decrypt(&stored) {
                    Ok(value) => {
                        report.rotated += 1;
                        value
                    }
                    Err(_) => {
                        report.unreadable += 1;
                        continue;
                    }
                }
            };
            // Only if unchanged meanwhile (another replica, a login).
            sqlx::query("UPDATE users SET auth_state = $1 WHERE id = $2 AND auth_state = $3")
                .bind(keeper.encrypt(&value))
                .bind(id)
                .bind(stored)
                .execute(&self.pool)
                .await?;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn keys_are_read_as_upstream_reads_them() {
        let raw: Vec<u8> = (0u8..32).collect();
        let b64 = base64::engine::general_purpose::URL_SAFE.encode(&raw);
        let std_b64 = base64::engine::general_purpose::STANDARD.encode([0xfbu8; 32]);
        assert!(std_b64.contains('+') || std_b64.contains('/'));
        for value in [
            HEX_KEY,
            b64.as_str(),
            std_b64.as_str(),
            "0123456789abcdef0123456789ABCDEF",
        ] {
            let keeper = CryptKeeper::from_keys(value).unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(keeper.key_count(), 1);
        }
        // Hex and base64 of the same bytes are the same key.
        let token = CryptKeeper::from_keys(HEX_KEY)
            .unwrap()
            .encrypt(&json!({"a": 1}));
        assert_eq!(
            CryptKeeper::from_keys(&b64)
                .unwrap()
                .decrypt(&token)
                .unwrap(),
            json!({"a": 1})
        );
        assert_eq!(
            CryptKeeper::from_keys(&format!(" {HEX_KEY} ;;{b64}"))
                .unwrap()
                .key_count(),
            2
        );
    }

    #[test]
    fn bad_keys_say_how_to_make_one() {
        let e = CryptKeeper::from_keys(&format!("{HEX_KEY};tooshort")).unwrap_err();
        assert!(e.to_string().contains("key 2 is 8 bytes"), "{e}");
        assert!(e.to_string().contains("openssl rand -hex 32"), "{e}");
        let e = CryptKeeper::from_keys(" ; ").unwrap_err();
        assert!(matches!(e, CryptKeyError::Empty), "{e}");
        // 64 characters that are not hex are 64 raw bytes: too long.
        assert!(CryptKeeper::from_keys(&"z".repeat(64)).is_err());
    }

    #[test]
    fn reads_tokens_made_by_python_cryptography() {
        // Made by `cryptography.fernet.Fernet(base64.urlsafe_b64encode(bytes(range(32))))
        // .encrypt(json.dumps({"access_token": "abc"}).encode())`, as JupyterHub does.
        let upstream = "gAAAAABrB4not0ZsXmgI6wEfU9cUUod1H0BUUQiZhHB9_lw63fH-_RImEeOCkXnQcaOHhmt71pgwHGBX1TepIyT5aZVaiOEKx8bHrZUjtHJ32rHQmK2WWlA=";
        let keeper = CryptKeeper::from_keys(HEX_KEY).unwrap();
        assert_eq!(
            keeper.decrypt(upstream).unwrap(),
            json!({"access_token": "abc"})
        );
    }

    #[test]
    fn rotation_and_wrong_keys() {
        let old = "1111111111111111111111111111111111111111111111111111111111111111";
        let new = "2222222222222222222222222222222222222222222222222222222222222222";
        let token = CryptKeeper::from_keys(old).unwrap().encrypt(&json!([1, 2]));
        let rotated = CryptKeeper::from_keys(&format!("{new};{old}")).unwrap();
        assert_eq!(rotated.decrypt(&token).unwrap(), json!([1, 2]));
        assert!(!rotated.made_by_primary(&token));
        assert!(rotated.made_by_primary(&rotated.encrypt(&json!(1))));
        assert_eq!(
            CryptKeeper::from_keys(new).unwrap().decrypt(&token),
            Err(AuthStateError::WrongKey)
        );
    }

    #[tokio::test]
    async fn stored_encrypted_and_resealed() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let user = store.create_user("ann", false).await.unwrap();
        let state = json!({"access_token": "secret-access-token"});
        // No key: nothing is written in clear.
        assert!(matches!(
            store.set_auth_state(user.id, Some(&state)).await,
            Err(StoreError::NoCryptKey)
        ));
        // A row in clear, as older versions wrote it.
        sqlx::query("UPDATE users SET auth_state = $1 WHERE id = $2")
            .bind(crate::json_text(&state))
            .bind(user.id)
            .execute(&store.pool)
            .await
            .unwrap();
        let raw = |store: Store| async move {
            sqlx::query("SELECT auth_state FROM users WHERE name = 'ann'")
                .fetch_one(&store.pool)
                .await
                .unwrap()
                .try_get::<String, _>("auth_state")
                .unwrap()
        };
        let old = "1111111111111111111111111111111111111111111111111111111111111111";
        let new = "2222222222222222222222222222222222222222222222222222222222222222";
        let store = store.with_crypt_keeper(CryptKeeper::from_keys(old).unwrap());
        assert_eq!(
            store.auth_state(user.id).await.unwrap(),
            Some(state.clone())
        );
        let report = store.reseal_auth_states().await.unwrap();
        assert_eq!(
            report,
            ResealReport {
                encrypted: 1,
                ..Default::default()
            }
        );
        let sealed = raw(store.clone()).await;
        assert!(sealed.starts_with(TOKEN_PREFIX) && !sealed.contains("secret-access-token"));
        assert_eq!(
            store.auth_state(user.id).await.unwrap(),
            Some(state.clone())
        );

        // Rotation: the new key first; the old row is re-encrypted with it.
        let store =
            store.with_crypt_keeper(CryptKeeper::from_keys(&format!("{new};{old}")).unwrap());
        assert_eq!(store.reseal_auth_states().await.unwrap().rotated, 1);
        assert_eq!(
            store.reseal_auth_states().await.unwrap(),
            ResealReport::default()
        );
        let store = store.with_crypt_keeper(CryptKeeper::from_keys(new).unwrap());
        assert_eq!(
            store.auth_state(user.id).await.unwrap(),
            Some(state.clone())
        );

        // A key that never made it: read as none, not an error.
        let store = store.with_crypt_keeper(CryptKeeper::from_keys(old).unwrap());
        assert_eq!(store.auth_state(user.id).await.unwrap(), None);
        assert_eq!(store.reseal_auth_states().await.unwrap().unreadable, 1);
        // Writes still work, with the configured key.
        store
            .set_auth_state(user.id, Some(&json!({"n": 2})))
            .await
            .unwrap();
        assert_eq!(
            store.auth_state(user.id).await.unwrap(),
            Some(json!({"n": 2}))
        );
        store.set_auth_state(user.id, None).await.unwrap();
        assert_eq!(store.auth_state(user.id).await.unwrap(), None);
    }
}
