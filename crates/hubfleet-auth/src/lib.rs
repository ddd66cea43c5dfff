//! Who may log in: the `Authenticator` trait and its implementations.
//!
//! An authenticator turns login form data into a [`UserInfo`] or a refusal. The
//! hub then creates or updates the user, sets the cookies and redirects.

use std::sync::Arc;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};
use async_trait::async_trait;
use hubfleet_store::Store;
use subtle::ConstantTimeEq;

mod build;
mod limiter;
pub mod native;
pub mod oauth;
mod policy;
mod refresh;

pub use build::from_config;
pub use limiter::LoginLimiter;
pub use native::{NativeAccounts, SignupError, SignupOutcome, SignupSettings};
pub use oauth::{OAuthAuthenticator, PendingLogin, RedirectLogin};
pub use policy::{AccessPolicy, Decision};
pub use refresh::{Due, Refresh, RefreshTracker};

/// Who logged in, as the authenticator sees them.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct UserInfo {
    pub name: String,
    /// `Some(true)` makes the user an admin, `Some(false)` removes it, `None` leaves it.
    pub admin: Option<bool>,
    /// With `manage_groups`: exactly the groups the user is in (`None`: leave them).
    pub groups: Option<Vec<String>>,
    /// What the provider said (tokens, user details), kept with `enable_auth_state`.
    pub auth_state: Option<serde_json::Value>,
}

impl UserInfo {
    pub fn named(name: impl Into<String>, admin: Option<bool>) -> Self {
        UserInfo {
            name: name.into(),
            admin,
            ..Default::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("user store: {0}")]
    Store(#[from] hubfleet_store::StoreError),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("`{}` is not a valid user name: use 1-255 characters, no `/`, no spaces or control characters", name_for_log(.0))]
    InvalidName(String),
    /// The identity provider could not be reached or answered with an error.
    #[error("login failed: {0}")]
    Provider(String),
    /// What came back from the provider was refused (bad code, bad ID token, …).
    #[error("login failed: {0}")]
    Rejected(String),
    /// The person may not use this hub.
    #[error("{0}")]
    Refused(String),
    #[error("authenticator configuration: {0}")]
    Config(String),
}

/// Login form contents.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// How the login page behaves, common to all authenticators.
#[derive(Clone, Debug, Default)]
pub struct LoginOptions {
    /// Go straight to the login URL instead of showing the login page.
    pub auto_login: bool,
    /// A message shown on the login page.
    pub announcement: Option<String>,
    /// An image shown on the login page.
    pub logo_url: Option<String>,
    /// Groups from the authenticator replace the user's groups at each login.
    pub manage_groups: bool,
    /// Keep `auth_state` in the database.
    pub enable_auth_state: bool,
    /// `auth_refresh_age`: how long a check of auth_state with the provider holds; zero:
    /// only before spawning, with `refresh_pre_spawn`.
    pub auth_refresh_age: std::time::Duration,
    /// `refresh_pre_spawn`: check with the provider before every server start.
    pub refresh_pre_spawn: bool,
    /// When each user was last checked.
    pub refresh_tracker: RefreshTracker,
}

/// The longest user name, in bytes of UTF-8 (a name is a directory name, and Linux allows
/// 255 bytes there).
pub const MAX_USERNAME_BYTES: usize = 255;

/// Why a login-supplied user name is refused before anything else is done with it (no
/// password hashing, no failure counting): it is longer than any user name can be.
pub fn overlong_name_problem(raw: &str) -> Option<String> {
    let len = raw.trim().len();
    (len > MAX_USERNAME_BYTES).then(|| {
        format!(
            "The user name is too long: {len} bytes, where at most {MAX_USERNAME_BYTES} are \
             allowed (255 plain letters or digits). Check the user name and try again."
        )
    })
}

/// How many characters of a login-supplied name go into the log.
const LOGGED_NAME_CHARS: usize = 64;

/// A login-supplied user name as it may be logged: the first 64 characters, control and
/// other special characters escaped (no forged log lines), and `…(N chars)` when cut.
pub fn name_for_log(raw: &str) -> LoggedName<'_> {
    LoggedName(raw)
}

/// See [`name_for_log`].
pub struct LoggedName<'a>(&'a str);

impl std::fmt::Display for LoggedName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars().take(LOGGED_NAME_CHARS) {
            write!(f, "{}", c.escape_debug())?;
        }
        let total = self.0.chars().count();
        if total > LOGGED_NAME_CHARS {
            write!(f, "…({total} chars)")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for LoggedName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Lower-case and trim a user name, as JupyterHub's default `normalize_username` does,
/// and reject names that cannot appear in URLs and paths.
pub fn normalize_username(raw: &str) -> Result<String, AuthError> {
    let name = raw.trim().to_lowercase();
    let valid = !name.is_empty()
        && name.len() <= MAX_USERNAME_BYTES
        && !name.contains('/')
        && !name.starts_with('.')
        && !name.chars().any(|c| c.is_control() || c.is_whitespace());
    if valid {
        Ok(name)
    } else {
        Err(AuthError::InvalidName(raw.to_string()))
    }
}

#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// A short name for logs and the login page (`native`, `dummy`, …).
    fn kind(&self) -> &'static str;

    /// `Ok(None)` is a refusal (wrong password, not allowed); the page says only
    /// "Invalid username or password" so that it reveals nothing.
    async fn authenticate(&self, credentials: &Credentials) -> Result<Option<UserInfo>, AuthError>;

    /// For logins through another site (OAuth): the redirect flow. `None`: a login form.
    fn redirect_login(&self) -> Option<&dyn RedirectLogin> {
        None
    }

    /// Whether each visitor gets a new temporary user (tmpauthenticator).
    fn temporary_users(&self) -> bool {
        false
    }

    /// Whether logging in is switched off (nullauthenticator): only API tokens work.
    fn login_disabled(&self) -> bool {
        false
    }

    /// Login page settings.
    fn options(&self) -> &LoginOptions {
        static DEFAULT: std::sync::OnceLock<LoginOptions> = std::sync::OnceLock::new();
        DEFAULT.get_or_init(LoginOptions::default)
    }

    /// Failed-login counting for password logins.
    fn limiter(&self) -> Option<&LoginLimiter> {
        None
    }

    /// Sign-up and password changes, for `native`.
    fn native_accounts(&self) -> Option<&NativeAccounts> {
        None
    }

    /// Check a logged-in user with the provider again (JupyterHub's `refresh_user`), given
    /// their stored auth_state. The default: nothing to check.
    async fn refresh_user(
        &self,
        _name: &str,
        _auth_state: Option<&serde_json::Value>,
    ) -> Result<Refresh, AuthError> {
        Ok(Refresh::Valid)
    }
}

/// An authenticator with the hub-wide options around it.
pub struct Configured<A> {
    pub inner: A,
    pub options: LoginOptions,
    pub limiter: Option<LoginLimiter>,
}

#[async_trait]
impl<A: Authenticator> Authenticator for Configured<A> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn authenticate(&self, credentials: &Credentials) -> Result<Option<UserInfo>, AuthError> {
        self.inner.authenticate(credentials).await
    }
    fn redirect_login(&self) -> Option<&dyn RedirectLogin> {
        self.inner.redirect_login()
    }
    fn temporary_users(&self) -> bool {
        self.inner.temporary_users()
    }
    fn login_disabled(&self) -> bool {
        self.inner.login_disabled()
    }
    fn options(&self) -> &LoginOptions {
        &self.options
    }
    fn limiter(&self) -> Option<&LoginLimiter> {
        self.limiter.as_ref()
    }
    fn native_accounts(&self) -> Option<&NativeAccounts> {
        self.inner.native_accounts()
    }
    async fn refresh_user(
        &self,
        name: &str,
        auth_state: Option<&serde_json::Value>,
    ) -> Result<Refresh, AuthError> {
        self.inner.refresh_user(name, auth_state).await
    }
}

#[async_trait]
impl Authenticator for OAuthAuthenticator {
    fn kind(&self) -> &'static str {
        OAuthAuthenticator::kind(self)
    }
    /// There is no password form: people log in at the provider.
    async fn authenticate(&self, _: &Credentials) -> Result<Option<UserInfo>, AuthError> {
        Ok(None)
    }
    fn redirect_login(&self) -> Option<&dyn RedirectLogin> {
        Some(self)
    }
    async fn refresh_user(
        &self,
        name: &str,
        auth_state: Option<&serde_json::Value>,
    ) -> Result<Refresh, AuthError> {
        OAuthAuthenticator::refresh_user(self, name, auth_state).await
    }
}

/// tmpauthenticator: every visitor of `/hub/tmplogin` gets a new user with a random name.
/// There is no login form.
pub struct TmpAuthenticator;

#[async_trait]
impl Authenticator for TmpAuthenticator {
    fn kind(&self) -> &'static str {
        "tmp"
    }
    async fn authenticate(&self, _: &Credentials) -> Result<Option<UserInfo>, AuthError> {
        Ok(None)
    }
    fn temporary_users(&self) -> bool {
        true
    }
}

/// nullauthenticator: nobody logs in (the login page says so); the hub is used through the
/// REST API with tokens only, as BinderHub does.
pub struct NullAuthenticator;

#[async_trait]
impl Authenticator for NullAuthenticator {
    fn kind(&self) -> &'static str {
        "null"
    }
    async fn authenticate(&self, _: &Credentials) -> Result<Option<UserInfo>, AuthError> {
        Ok(None)
    }
    fn login_disabled(&self) -> bool {
        true
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Hash a password with argon2id (default parameters), off the async runtime.
pub async fn hash_password(password: &str) -> Result<String, AuthError> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AuthError::Hash(e.to_string()))
    })
    .await
    .map_err(|e| AuthError::Hash(e.to_string()))?
}

/// Check a password against an argon2 PHC string, off the async runtime.
pub async fn verify_password(password: &str, phc: &str) -> bool {
    let password = password.to_string();
    let phc = phc.to_string();
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&phc)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// Accounts kept in the hub's own database, with argon2id password hashes.
pub struct NativeAuthenticator {
    store: Store,
    policy: AccessPolicy,
    accounts: NativeAccounts,
}

impl NativeAuthenticator {
    pub fn new(store: Store, policy: AccessPolicy) -> Self {
        Self::with_signup(store, policy, SignupSettings::default())
    }

    pub fn with_signup(store: Store, policy: AccessPolicy, signup: SignupSettings) -> Self {
        let accounts = NativeAccounts::new(store.clone(), policy.clone(), signup);
        Self {
            store,
            policy,
            accounts,
        }
    }
}

#[async_trait]
impl Authenticator for NativeAuthenticator {
    fn kind(&self) -> &'static str {
        "native"
    }

    fn native_accounts(&self) -> Option<&NativeAccounts> {
        Some(&self.accounts)
    }

    async fn authenticate(&self, credentials: &Credentials) -> Result<Option<UserInfo>, AuthError> {
        let Ok(name) = normalize_username(&credentials.username) else {
            return Ok(None);
        };
        let hash = match self.store.user_by_name(&name).await? {
            Some(user) => self.store.password_hash(user.id).await?,
            None => None,
        };
        // A sign-up awaiting approval: its own password tells the person so (and no one else).
        let pending = match hash {
            Some(_) => None,
            None => self.store.signup_password_hash(&name).await?,
        };
        // Verify against a dummy hash when the user is unknown, so that timing
        // does not tell which user names exist.
        let known = hash.is_some();
        let hash = hash
            .or_else(|| pending.clone())
            .unwrap_or_else(|| dummy_hash().to_string());
        let verified = verify_password(&credentials.password, &hash).await;
        if verified && pending.is_some() {
            return Err(AuthError::Refused(format!(
                "The sign-up of {name} is awaiting approval: you can log in once an admin of this hub has approved it."
            )));
        }
        let ok = verified && known;
        let allowed = self.policy.is_allowed(&name)
            || (known && self.policy.allow_existing_users && !self.policy.is_blocked(&name));
        if !ok {
            return Ok(None);
        }
        if !allowed {
            return Err(AuthError::Refused(self.policy.password_refusal(&name)));
        }
        Ok(Some(UserInfo::named(
            name.clone(),
            self.policy.is_admin(&name).then_some(true),
        )))
    }
}

/// An argon2id hash of a random string nobody knows, made once.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        let secret = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(secret.as_str().as_bytes(), &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Any user name, with any password or one shared password. For development and
/// short workshops; never for a hub on the internet without `password` set.
pub struct DummyAuthenticator {
    password: Option<String>,
    policy: AccessPolicy,
}

impl DummyAuthenticator {
    pub fn new(password: Option<String>, policy: AccessPolicy) -> Self {
        Self { password, policy }
    }
}

#[async_trait]
impl Authenticator for DummyAuthenticator {
    fn kind(&self) -> &'static str {
        "dummy"
    }

    async fn authenticate(&self, credentials: &Credentials) -> Result<Option<UserInfo>, AuthError> {
        let Ok(name) = normalize_username(&credentials.username) else {
            return Ok(None);
        };
        if let Some(expected) = &self.password {
            if !constant_time_eq(&credentials.password, expected) {
                return Ok(None);
            }
        }
        if !self.policy.is_allowed(&name) {
            return Err(AuthError::Refused(self.policy.password_refusal(&name)));
        }
        Ok(Some(UserInfo::named(
            name.clone(),
            self.policy.is_admin(&name).then_some(true),
        )))
    }
}

/// JupyterHub's SharedPasswordAuthenticator: one password for everyone, and a
/// separate one for admins. As upstream, a name in `admin_users` logs in only with the admin
/// password; so does an account that is an admin in the hub's database (made one through the
/// API or `hubfleet users admin`). The user password, which every participant knows, never
/// opens an admin's account, and a failed try changes nothing.
pub struct SharedPasswordAuthenticator {
    user_password: Option<String>,
    admin_password: Option<String>,
    policy: AccessPolicy,
    store: Store,
}

impl SharedPasswordAuthenticator {
    pub fn new(
        user_password: Option<String>,
        admin_password: Option<String>,
        policy: AccessPolicy,
        store: Store,
    ) -> Self {
        Self {
            user_password,
            admin_password,
            policy,
            store,
        }
    }

    /// A name only the admin password opens.
    async fn is_admin_account(&self, name: &str) -> Result<bool, AuthError> {
        if self.policy.is_admin(name) {
            return Ok(true);
        }
        Ok(self
            .store
            .user_by_name(name)
            .await?
            .is_some_and(|user| user.admin))
    }
}

#[async_trait]
impl Authenticator for SharedPasswordAuthenticator {
    fn kind(&self) -> &'static str {
        "shared-password"
    }

    async fn authenticate(&self, credentials: &Credentials) -> Result<Option<UserInfo>, AuthError> {
        let Ok(name) = normalize_username(&credentials.username) else {
            return Ok(None);
        };
        if self.is_admin_account(&name).await? {
            return Ok(match &self.admin_password {
                Some(admin_password)
                    if constant_time_eq(&credentials.password, admin_password)
                        && !self.policy.is_blocked(&name) =>
                {
                    Some(UserInfo::named(name, Some(true)))
                }
                _ => None,
            });
        }
        match &self.user_password {
            Some(user_password) if constant_time_eq(&credentials.password, user_password) => {
                if !self.policy.is_allowed(&name) {
                    return Err(AuthError::Refused(self.policy.password_refusal(&name)));
                }
                // The user password never grants admin rights.
                Ok(Some(UserInfo::named(name, Some(false))))
            }
            _ => Ok(None),
        }
    }
}

pub type DynAuthenticator = Arc<dyn Authenticator>;

/// Give the store the auth_state keys of `JUPYTERHUB_CRYPT_KEY` (`keys`, the variable's
/// value) and bring stored auth_state under them: rows in clear from older versions are
/// encrypted, rows made with an older listed key re-encrypted with the first.
/// `enable_auth_state` without a key is an error, as upstream: tokens are never kept in
/// clear.
pub async fn with_auth_state_keys(
    store: Store,
    enable_auth_state: bool,
    keys: Option<&str>,
) -> Result<Store, AuthError> {
    let keeper = match keys.filter(|k| !k.trim().is_empty()) {
        Some(keys) => hubfleet_store::CryptKeeper::from_keys(keys)
            .map_err(|e| AuthError::Config(e.to_string()))?,
        None if enable_auth_state => {
            return Err(AuthError::Config(format!(
                "enable_auth_state is true, but {env} is not set. auth_state holds the identity \
                 provider's tokens and is only kept encrypted: generate a key with \
                 `openssl rand -hex 32`, set it as {env} in the hub's environment and keep it \
                 (stored auth_state cannot be read without it). Several keys separated by `;` \
                 rotate them: the first encrypts, all decrypt.",
                env = hubfleet_store::CRYPT_KEY_ENV
            )))
        }
        None => return Ok(store),
    };
    let keys = keeper.key_count();
    let store = store.with_crypt_keeper(keeper);
    let report = store.reseal_auth_states().await?;
    tracing::info!(
        keys,
        "auth_state is encrypted with {}",
        hubfleet_store::CRYPT_KEY_ENV
    );
    if report.encrypted > 0 {
        tracing::info!(
            users = report.encrypted,
            "encrypted auth_state stored in clear by an older version"
        );
    }
    if report.rotated > 0 {
        tracing::info!(
            users = report.rotated,
            "re-encrypted auth_state with the first key"
        );
    }
    if report.unreadable > 0 {
        tracing::warn!(
            users = report.unreadable,
            "auth_state of some users cannot be decrypted with any key in {}: it reads as empty until they log in again. Was a key removed too early?",
            hubfleet_store::CRYPT_KEY_ENV
        );
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(username: &str, password: &str) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    fn policy(admins: &[&str], allowed: &[&str]) -> AccessPolicy {
        AccessPolicy::simple(admins, allowed)
    }

    #[test]
    fn names_are_normalised_and_checked() {
        assert_eq!(normalize_username("  Alice ").unwrap(), "alice");
        for bad in ["", "a/b", "a b", "..", ".hidden", "x\u{7}"] {
            assert!(normalize_username(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn logged_names_are_bounded_and_escaped() {
        assert_eq!(name_for_log("alice").to_string(), "alice");
        assert_eq!(
            name_for_log("eve\nINFO forged line\u{1b}[31m").to_string(),
            "eve\\nINFO forged line\\u{1b}[31m"
        );
        let long = "x".repeat(100_000);
        let logged = name_for_log(&long).to_string();
        assert_eq!(logged, format!("{}…(100000 chars)", "x".repeat(64)));
        assert!(overlong_name_problem(&"a".repeat(255)).is_none());
        let problem = overlong_name_problem(&long).unwrap();
        assert!(problem.contains("100000 bytes"), "{problem}");
        let e = normalize_username(&long).unwrap_err().to_string();
        assert!(e.len() < 200, "{e}");
    }

    #[tokio::test]
    async fn password_hashes_verify() {
        let hash = hash_password("correct horse").await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash).await);
        assert!(!verify_password("wrong", &hash).await);
        assert!(!verify_password("x", "not a hash").await);
        assert!(!verify_password("", dummy_hash()).await);
    }

    #[tokio::test]
    async fn dummy_accepts_any_password_unless_one_is_set() {
        let open = DummyAuthenticator::new(None, policy(&["root"], &[]));
        let info = open
            .authenticate(&creds("Bob", "x"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(info, UserInfo::named("bob", None));
        let admin = open
            .authenticate(&creds("root", ""))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(admin.admin, Some(true));

        let guarded = DummyAuthenticator::new(Some("s3cret".into()), policy(&[], &["bob"]));
        assert!(guarded
            .authenticate(&creds("bob", "nope"))
            .await
            .unwrap()
            .is_none());
        assert!(guarded
            .authenticate(&creds("bob", "s3cret"))
            .await
            .unwrap()
            .is_some());
        match guarded.authenticate(&creds("eve", "s3cret")).await {
            Err(AuthError::Refused(why)) => assert!(why.contains("not allowed"), "{why}"),
            other => panic!("eve is not allowed: {other:?}"),
        }
    }

    #[tokio::test]
    async fn shared_password_separates_admins() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let auth = SharedPasswordAuthenticator::new(
            Some("workshop".into()),
            Some("leader".into()),
            policy(&["ana"], &[]),
            store.clone(),
        );
        let user = auth
            .authenticate(&creds("zoe", "workshop"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(user.admin, Some(false));
        let admin = auth
            .authenticate(&creds("ana", "leader"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(admin.admin, Some(true));
        assert!(auth
            .authenticate(&creds("zoe", "leader"))
            .await
            .unwrap()
            .is_none());
        assert!(auth
            .authenticate(&creds("zoe", ""))
            .await
            .unwrap()
            .is_none());
        // An admin name is not opened by the user password (upstream's rule).
        assert!(auth
            .authenticate(&creds("ana", "workshop"))
            .await
            .unwrap()
            .is_none());
        // Nor is an account made admin in the hub, which the admin password opens.
        let ben = store.create_user("ben", false).await.unwrap();
        store.set_admin(ben.id, true).await.unwrap();
        assert!(auth
            .authenticate(&creds("ben", "workshop"))
            .await
            .unwrap()
            .is_none());
        let ben = auth
            .authenticate(&creds("Ben", "leader"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ben.admin, Some(true));
    }

    #[tokio::test]
    async fn native_checks_stored_hashes() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let alice = store.create_user("alice", false).await.unwrap();
        let hash = hash_password("pw-alice").await.unwrap();
        store
            .set_password_hash(alice.id, Some(&hash))
            .await
            .unwrap();
        store.create_user("nopass", false).await.unwrap();

        let auth = NativeAuthenticator::new(store, policy(&["alice"], &[]));
        let info = auth
            .authenticate(&creds("Alice", "pw-alice"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(info, UserInfo::named("alice", Some(true)));
        assert!(auth
            .authenticate(&creds("alice", "wrong"))
            .await
            .unwrap()
            .is_none());
        assert!(auth
            .authenticate(&creds("ghost", "pw-alice"))
            .await
            .unwrap()
            .is_none());
        assert!(auth
            .authenticate(&creds("nopass", ""))
            .await
            .unwrap()
            .is_none());
    }
}
