//! NativeAuthenticator's own rules (jupyterhub-nativeauthenticator): sign-up, approval by an
//! admin unless `open_signup`, password changes, `minimum_password_length` and
//! `check_common_password`.

use hubfleet_store::{Store, StoreError, User};

use crate::{hash_password, normalize_username, verify_password, AccessPolicy, AuthError};

/// A small list of very common passwords (embedded; upstream ships a longer one).
const COMMON_PASSWORDS: &str = include_str!("common_passwords.txt");

/// `hub.config.NativeAuthenticator.*`.
#[derive(Clone, Debug)]
pub struct SignupSettings {
    pub enable_signup: bool,
    pub open_signup: bool,
    pub minimum_password_length: usize,
    pub check_common_password: bool,
}

impl Default for SignupSettings {
    fn default() -> Self {
        SignupSettings {
            enable_signup: true,
            open_signup: false,
            minimum_password_length: 1,
            check_common_password: false,
        }
    }
}

/// What became of a sign-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignupOutcome {
    /// The account exists and can log in now (`open_signup`).
    Created,
    /// An admin must approve it at `/hub/authorize`.
    Pending,
}

/// Sign-ups and password changes of native accounts.
#[derive(Clone)]
pub struct NativeAccounts {
    store: Store,
    policy: AccessPolicy,
    pub settings: SignupSettings,
}

impl NativeAccounts {
    pub fn new(store: Store, policy: AccessPolicy, settings: SignupSettings) -> Self {
        NativeAccounts {
            store,
            policy,
            settings,
        }
    }

    /// Why `password` is not acceptable, if it is not.
    pub fn password_problem(&self, password: &str) -> Option<String> {
        let min = self.settings.minimum_password_length;
        if password.chars().count() < min.max(1) {
            return Some(format!(
                "The password must have at least {} characters.",
                min.max(1)
            ));
        }
        if self.settings.check_common_password
            && COMMON_PASSWORDS
                .lines()
                .any(|common| common.eq_ignore_ascii_case(password))
        {
            return Some(
                "This password is too common: it is among the first ones tried by anyone guessing. Choose another.".into(),
            );
        }
        None
    }

    /// Sign up `raw_name` with `password` (given twice). Errors are for the person.
    pub async fn sign_up(
        &self,
        raw_name: &str,
        password: &str,
        confirmation: &str,
    ) -> Result<SignupOutcome, SignupError> {
        if !self.settings.enable_signup {
            return Err(SignupError::Invalid(
                "Sign-up is not open on this hub.".into(),
            ));
        }
        let name = normalize_username(raw_name).map_err(|e| SignupError::Invalid(e.to_string()))?;
        if self.policy.is_blocked(&name) {
            return Err(SignupError::Invalid(format!(
                "The user {name} cannot sign up on this hub."
            )));
        }
        if password != confirmation {
            return Err(SignupError::Invalid(
                "The two passwords are not the same.".into(),
            ));
        }
        if let Some(problem) = self.password_problem(password) {
            return Err(SignupError::Invalid(problem));
        }
        let taken = || {
            SignupError::Invalid(format!(
                "The user name {name} is taken: choose another one. If the account is yours \
                 but has no password yet, ask the hub's admins to set one."
            ))
        };
        // A sign-up makes a new account. An existing user is someone's, with or without a
        // password (added by an admin, or listed in `admin_users`): signing up must not set
        // one on it. Names in `admin_users` are never signed up either (the admins set their
        // passwords with `hubfleet users add`), even while no such user exists.
        if self.policy.is_admin(&name)
            || self.store.user_by_name(&name).await?.is_some()
            || self.store.signup_exists(&name).await?
        {
            return Err(taken());
        }
        let hash = hash_password(password).await?;
        if self.settings.open_signup {
            let user = match self.store.create_user(&name, false).await {
                Ok(user) => user,
                Err(StoreError::Conflict { .. }) => return Err(taken()),
                Err(e) => return Err(e.into()),
            };
            self.store.set_password_hash(user.id, Some(&hash)).await?;
            tracing::info!(user = %name, "signed up");
            return Ok(SignupOutcome::Created);
        }
        match self.store.add_signup(&name, &hash).await {
            Ok(()) => {
                tracing::info!(user = %name, "signed up; waiting for an admin's approval");
                Ok(SignupOutcome::Pending)
            }
            Err(StoreError::Conflict { .. }) => Err(taken()),
            Err(e) => Err(e.into()),
        }
    }

    /// Change a logged-in user's password; the current one is required.
    pub async fn change_password(
        &self,
        user: &User,
        current: &str,
        new: &str,
        confirmation: &str,
    ) -> Result<(), SignupError> {
        let hash = self.store.password_hash(user.id).await?;
        let current_ok = match &hash {
            Some(hash) => verify_password(current, hash).await,
            None => false,
        };
        if !current_ok {
            return Err(SignupError::WrongPassword);
        }
        if new != confirmation {
            return Err(SignupError::Invalid(
                "The two new passwords are not the same.".into(),
            ));
        }
        if let Some(problem) = self.password_problem(new) {
            return Err(SignupError::Invalid(problem));
        }
        let hash = hash_password(new).await?;
        self.store.set_password_hash(user.id, Some(&hash)).await?;
        tracing::info!(user = %user.name, "password changed");
        Ok(())
    }

    /// Whether `name` has signed up and waits for approval (for the login page's message).
    pub async fn is_pending(&self, name: &str) -> Result<bool, AuthError> {
        let Ok(name) = normalize_username(name) else {
            return Ok(false);
        };
        Ok(self.store.signup_exists(&name).await?)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    /// Something the person can fix; the message is for them.
    #[error("{0}")]
    Invalid(String),
    /// The current password given to change it is wrong (a failed login, for the limiter).
    #[error("The current password is not right.")]
    WrongPassword,
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn accounts(settings: SignupSettings, admins: &[&str]) -> NativeAccounts {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let policy = AccessPolicy {
            admin_users: admins.iter().map(|s| s.to_string()).collect(),
            blocked_users: ["mallory".to_string()].into(),
            allow_all: true,
            ..Default::default()
        };
        NativeAccounts::new(store, policy, settings)
    }

    #[tokio::test]
    async fn passwords_are_checked() {
        let a = accounts(
            SignupSettings {
                minimum_password_length: 10,
                check_common_password: true,
                ..Default::default()
            },
            &[],
        )
        .await;
        assert!(a.password_problem("short").unwrap().contains("at least 10"));
        assert!(a
            .password_problem("Password123")
            .unwrap()
            .contains("too common"));
        assert!(a.password_problem("correct horse battery").is_none());
        let lax = accounts(SignupSettings::default(), &[]).await;
        assert!(lax.password_problem("password").is_none());
        assert!(lax.password_problem("").is_some());
    }

    #[tokio::test]
    async fn sign_up_waits_for_approval_unless_open() {
        let a = accounts(SignupSettings::default(), &["root"]).await;
        assert_eq!(
            a.sign_up("Ann", "pw-ann-1", "pw-ann-1").await.unwrap(),
            SignupOutcome::Pending
        );
        assert!(a.is_pending("ann").await.unwrap());
        assert!(a.store.user_by_name("ann").await.unwrap().is_none());
        let e = a.sign_up("ann", "x", "x").await.unwrap_err().to_string();
        assert!(e.contains("taken"), "{e}");
        let e = a.sign_up("bo", "one", "two").await.unwrap_err().to_string();
        assert!(e.contains("not the same"), "{e}");
        let e = a
            .sign_up("mallory", "x", "x")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot sign up"), "{e}");
        // An admin name is never signed up, even before the hub has created that user.
        let e = a.sign_up("root", "pw", "pw").await.unwrap_err().to_string();
        assert!(e.contains("taken"), "{e}");
        assert!(a.store.user_by_name("root").await.unwrap().is_none());

        let open = accounts(
            SignupSettings {
                open_signup: true,
                ..Default::default()
            },
            &[],
        )
        .await;
        assert_eq!(
            open.sign_up("cy", "pw", "pw").await.unwrap(),
            SignupOutcome::Created
        );
        let cy = open.store.user_by_name("cy").await.unwrap().unwrap();
        assert!(!cy.admin);
        // An existing account without a password is not the sign-up's to take.
        let added = open.store.create_user("added", false).await.unwrap();
        let e = open
            .sign_up("added", "pw", "pw")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("taken"), "{e}");
        assert_eq!(open.store.password_hash(added.id).await.unwrap(), None);
        assert!(matches!(
            open.change_password(&cy, "wrong", "n", "n").await,
            Err(SignupError::WrongPassword)
        ));
        open.change_password(&cy, "pw", "new-pw", "new-pw")
            .await
            .unwrap();
        let hash = open.store.password_hash(cy.id).await.unwrap().unwrap();
        assert!(verify_password("new-pw", &hash).await);

        let closed = accounts(
            SignupSettings {
                enable_signup: false,
                ..Default::default()
            },
            &[],
        )
        .await;
        assert!(closed.sign_up("dee", "pw", "pw").await.is_err());
    }
}
