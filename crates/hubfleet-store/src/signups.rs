//! NativeAuthenticator sign-ups waiting for an admin (`/hub/authorize`).

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::{from_micros, to_micros, Result, Store, StoreError, User};

/// A sign-up not approved yet.
#[derive(Clone, Debug, PartialEq)]
pub struct Signup {
    pub name: String,
    pub created: DateTime<Utc>,
}

impl Store {
    /// Record a sign-up (the password already hashed). A pending sign-up of that name is a
    /// conflict. The name may belong to a user without a password (added by an admin), who
    /// gets this password on approval.
    pub async fn add_signup(&self, name: &str, password_hash: &str) -> Result<()> {
        let conflict = || StoreError::Conflict {
            what: "user",
            name: name.to_string(),
        };
        sqlx::query(
            "INSERT INTO native_signups (name, password_hash, created) VALUES ($1, $2, $3)",
        )
        .bind(name)
        .bind(password_hash)
        .bind(to_micros(Utc::now()))
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if crate::is_unique_violation(&e) {
                conflict()
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    /// Pending sign-ups, oldest first.
    pub async fn signups(&self) -> Result<Vec<Signup>> {
        let rows = sqlx::query("SELECT name, created FROM native_signups ORDER BY created, name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Signup {
                    name: row.try_get("name")?,
                    created: from_micros(row.try_get("created")?),
                })
            })
            .collect()
    }

    /// The password hash a pending sign-up was made with.
    pub async fn signup_password_hash(&self, name: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT password_hash FROM native_signups WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn signup_exists(&self, name: &str) -> Result<bool> {
        Ok(
            sqlx::query("SELECT 1 AS one FROM native_signups WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    /// Approve a sign-up: the user is created with the password given at sign-up. `None`
    /// when there is no such sign-up; a conflict (and the sign-up discarded) when a user of
    /// that name exists by now.
    pub async fn approve_signup(&self, name: &str) -> Result<Option<User>> {
        let Some(row) = sqlx::query("SELECT password_hash FROM native_signups WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let hash: String = row.try_get("password_hash")?;
        // A sign-up makes a new account, never takes an existing one (with or without a
        // password: an admin may have created it since, with its own roles and servers).
        if self.user_by_name(name).await?.is_some() {
            self.discard_signup(name).await?;
            return Err(StoreError::Conflict {
                what: "user",
                name: name.to_string(),
            });
        }
        let user = self.create_user(name, false).await?;
        self.set_password_hash(user.id, Some(&hash)).await?;
        self.discard_signup(name).await?;
        Ok(Some(user))
    }

    /// Forget a sign-up; whether there was one.
    pub async fn discard_signup(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM native_signups WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn signups_wait_then_become_users() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        store.add_signup("ann", "$argon2id$x").await.unwrap();
        assert!(matches!(
            store.add_signup("ann", "$argon2id$y").await,
            Err(StoreError::Conflict { .. })
        ));
        // bob was created (without a password) after his sign-up: the account is not the
        // sign-up's to take, and the sign-up is dropped.
        let bob = store.create_user("bob", false).await.unwrap();
        store.add_signup("bob", "h-bob").await.unwrap();
        assert_eq!(store.signups().await.unwrap().len(), 2);
        assert!(matches!(
            store.approve_signup("bob").await,
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(store.password_hash(bob.id).await.unwrap(), None);
        assert!(!store.signup_exists("bob").await.unwrap());
        assert!(store.user_by_name("ann").await.unwrap().is_none());
        let ann = store.approve_signup("ann").await.unwrap().unwrap();
        assert_eq!(
            store.password_hash(ann.id).await.unwrap().as_deref(),
            Some("$argon2id$x")
        );
        assert!(store.signups().await.unwrap().is_empty());
        assert!(store.approve_signup("ann").await.unwrap().is_none());
        store.add_signup("cy", "h").await.unwrap();
        assert!(store.discard_signup("cy").await.unwrap());
        assert!(!store.signup_exists("cy").await.unwrap());
    }
}
