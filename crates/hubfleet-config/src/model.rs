//! The typed configuration sections and how each value is read from YAML.
//!
//! Field names follow z2jh's spelling through `#[serde(rename…)]`; every struct denies unknown
//! fields. A YAML `null` (an empty value such as `hub:` with nothing below it, as in z2jh's own
//! values.yaml) always means "use the default".

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor};
use serde::Deserialize;

/// Default `singleuser.startTimeout`, as in z2jh's values.yaml.
pub const DEFAULT_START_TIMEOUT_SECS: u64 = 300;
/// Default `hubfleet.listen`.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 8000);
/// Default `hubfleet.data_dir` (relative: resolved against the config file's directory).
pub const DEFAULT_DATA_DIR: &str = "./hubfleet-data";
/// The command run when `singleuser.cmd` is not set.
pub const DEFAULT_SINGLEUSER_CMD: &str = "jupyterhub-singleuser";
/// Name of the SQLite file inside the data dir for `hub.db.type: sqlite-pvc`.
pub const SQLITE_FILE_NAME: &str = "hubfleet.sqlite";

// ---------------------------------------------------------------------------------------------
// hub
// ---------------------------------------------------------------------------------------------

/// `hub:` — the hub itself.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hub {
    /// `hub.config`: traitlets-style configuration, by class name.
    #[serde(deserialize_with = "null_default")]
    pub config: HubTraitletConfig,
    /// `hub.db`: where the hub keeps its state.
    #[serde(deserialize_with = "null_default")]
    pub db: Db,
}

/// `hub.config:` — z2jh passes this to JupyterHub as traitlets config, keyed by class name.
/// Only the classes and traits below are supported.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubTraitletConfig {
    /// `hub.config.JupyterHub`.
    #[serde(rename = "JupyterHub", deserialize_with = "null_default")]
    pub jupyterhub: JupyterHubConfig,
    /// `hub.config.Authenticator`: settings shared by all authenticators.
    #[serde(rename = "Authenticator", deserialize_with = "null_default")]
    pub authenticator: AuthenticatorConfig,
    /// `hub.config.DummyAuthenticator`.
    #[serde(rename = "DummyAuthenticator", deserialize_with = "null_default")]
    pub dummy_authenticator: DummyAuthenticatorConfig,
    /// `hub.config.SharedPasswordAuthenticator`.
    #[serde(
        rename = "SharedPasswordAuthenticator",
        deserialize_with = "null_default"
    )]
    pub shared_password_authenticator: SharedPasswordAuthenticatorConfig,
    /// `hub.config.NativeAuthenticator`.
    #[serde(rename = "NativeAuthenticator", deserialize_with = "null_default")]
    pub native_authenticator: NativeAuthenticatorConfig,
}

/// `hub.config.JupyterHub:`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JupyterHubConfig {
    /// `hub.config.JupyterHub.authenticator_class`.
    pub authenticator_class: AuthenticatorKind,
}

/// Which authenticator the hub uses (`hub.config.JupyterHub.authenticator_class`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AuthenticatorKind {
    /// `native` / `nativeauthenticator.NativeAuthenticator`: users sign up with a password
    /// stored (hashed) by the hub.
    #[default]
    Native,
    /// `dummy` / `jupyterhub.auth.DummyAuthenticator`: any username, with an optional shared
    /// password. For testing only.
    Dummy,
    /// `shared-password` / `jupyterhub.authenticators.shared.SharedPasswordAuthenticator`.
    SharedPassword,
}

impl AuthenticatorKind {
    /// Every supported kind, in documentation order.
    pub const ALL: [AuthenticatorKind; 3] = [
        AuthenticatorKind::Native,
        AuthenticatorKind::Dummy,
        AuthenticatorKind::SharedPassword,
    ];

    /// The short name used in the config file (`native`, `dummy`, `shared-password`).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthenticatorKind::Native => "native",
            AuthenticatorKind::Dummy => "dummy",
            AuthenticatorKind::SharedPassword => "shared-password",
        }
    }

    /// The short name and the upstream class names that select this kind.
    pub fn accepted_names(self) -> &'static [&'static str] {
        match self {
            AuthenticatorKind::Native => &[
                "native",
                "nativeauthenticator.NativeAuthenticator",
                "nativeauthenticator.nativeauthenticator.NativeAuthenticator",
            ],
            AuthenticatorKind::Dummy => &["dummy", "jupyterhub.auth.DummyAuthenticator"],
            AuthenticatorKind::SharedPassword => &[
                "shared-password",
                "jupyterhub.authenticators.shared.SharedPasswordAuthenticator",
            ],
        }
    }
}

impl fmt::Display for AuthenticatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuthenticatorKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        AuthenticatorKind::ALL
            .into_iter()
            .find(|k| k.accepted_names().contains(&s))
            .ok_or_else(|| {
                format!(
                    "authenticator_class `{s}` is not supported yet; supported: native, dummy, shared-password"
                )
            })
    }
}

impl<'de> Deserialize<'de> for AuthenticatorKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NamedChoice::<AuthenticatorKind>::new(
            "one of `native`, `dummy`, `shared-password`",
        ))
    }
}

/// `hub.config.Authenticator:` — settings shared by every authenticator.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthenticatorConfig {
    /// `admin_users`: usernames that are hub admins.
    #[serde(deserialize_with = "string_list")]
    pub admin_users: Vec<String>,
    /// `allowed_users`: if non-empty, only these users (and the admins) may log in.
    #[serde(deserialize_with = "string_list")]
    pub allowed_users: Vec<String>,
}

/// `hub.config.DummyAuthenticator:`.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DummyAuthenticatorConfig {
    /// `password`: if set, every user must log in with this password; if not, any password works.
    #[serde(deserialize_with = "opt_string")]
    pub password: Option<String>,
}

/// `hub.config.SharedPasswordAuthenticator:`.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SharedPasswordAuthenticatorConfig {
    /// `user_password`: the password every non-admin user logs in with (at least 8 characters).
    #[serde(deserialize_with = "opt_string")]
    pub user_password: Option<String>,
    /// `admin_password`: the password admin users log in with (at least 32 characters). Without
    /// it, admin users cannot log in.
    #[serde(deserialize_with = "opt_string")]
    pub admin_password: Option<String>,
}

/// `hub.config.NativeAuthenticator:`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NativeAuthenticatorConfig {
    /// `open_signup`: new sign-ups are authorized at once instead of waiting for an admin.
    #[serde(deserialize_with = "bool_or_default")]
    pub open_signup: bool,
}

fn redact(s: &Option<String>) -> Option<&'static str> {
    s.as_ref().map(|_| "<redacted>")
}

impl fmt::Debug for DummyAuthenticatorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DummyAuthenticatorConfig")
            .field("password", &redact(&self.password))
            .finish()
    }
}

impl fmt::Debug for SharedPasswordAuthenticatorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedPasswordAuthenticatorConfig")
            .field("user_password", &redact(&self.user_password))
            .field("admin_password", &redact(&self.admin_password))
            .finish()
    }
}

/// `hub.db:`.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Db {
    /// `hub.db.type`.
    #[serde(rename = "type")]
    pub kind: DbType,
    /// `hub.db.url`: required for `postgres`; optional for `sqlite-pvc`; not allowed for
    /// `sqlite-memory`.
    #[serde(deserialize_with = "opt_string")]
    pub url: Option<String>,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A database URL may carry a password: show only what precedes the userinfo.
        let url = self
            .url
            .as_deref()
            .map(|u| match (u.find("://"), u.rfind('@')) {
                (Some(s), Some(at)) if at > s => format!("{}<redacted>{}", &u[..s + 3], &u[at..]),
                _ => u.to_owned(),
            });
        f.debug_struct("Db")
            .field("kind", &self.kind)
            .field("url", &url)
            .finish()
    }
}

/// `hub.db.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DbType {
    /// `sqlite-pvc`: a SQLite file, by default `<data_dir>/hubfleet.sqlite`.
    #[default]
    SqlitePvc,
    /// `sqlite-memory`: an in-memory SQLite database, lost at every restart. For testing.
    SqliteMemory,
    /// `postgres`: an external PostgreSQL database given by `hub.db.url`.
    Postgres,
}

impl DbType {
    /// Every supported type, in documentation order.
    pub const ALL: [DbType; 3] = [DbType::SqlitePvc, DbType::SqliteMemory, DbType::Postgres];

    /// The z2jh spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DbType::SqlitePvc => "sqlite-pvc",
            DbType::SqliteMemory => "sqlite-memory",
            DbType::Postgres => "postgres",
        }
    }
}

impl fmt::Display for DbType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DbType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DbType::ALL
            .into_iter()
            .find(|k| k.as_str() == s.trim())
            .ok_or_else(|| {
                format!(
                    "database type `{s}` is not supported yet; supported: sqlite-pvc, sqlite-memory, postgres"
                )
            })
    }
}

impl<'de> Deserialize<'de> for DbType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NamedChoice::<DbType>::new(
            "one of `sqlite-pvc`, `sqlite-memory`, `postgres`",
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// singleuser
// ---------------------------------------------------------------------------------------------

/// `singleuser:` — the per-user servers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct Singleuser {
    /// `singleuser.cmd`: the command that starts a user server. z2jh accepts a string (one
    /// argument, not split on spaces) or a list. `None` runs `jupyterhub-singleuser`.
    #[serde(deserialize_with = "command")]
    pub cmd: Option<Vec<String>>,
    /// `singleuser.defaultUrl`: where users land in their server, e.g. `/lab`.
    #[serde(deserialize_with = "opt_string")]
    pub default_url: Option<String>,
    /// `singleuser.extraEnv`: extra environment variables for user servers (literal values only).
    #[serde(deserialize_with = "extra_env")]
    pub extra_env: BTreeMap<String, String>,
    /// `singleuser.startTimeout`: how long a server may take to start, in whole seconds.
    #[serde(deserialize_with = "seconds")]
    pub start_timeout: Duration,
}

impl Default for Singleuser {
    fn default() -> Self {
        Singleuser {
            cmd: None,
            default_url: None,
            extra_env: BTreeMap::new(),
            start_timeout: Duration::from_secs(DEFAULT_START_TIMEOUT_SECS),
        }
    }
}

impl Singleuser {
    /// The effective command: `cmd` if set, else `["jupyterhub-singleuser"]`.
    pub fn command(&self) -> Vec<String> {
        self.cmd
            .clone()
            .unwrap_or_else(|| vec![DEFAULT_SINGLEUSER_CMD.to_owned()])
    }
}

// ---------------------------------------------------------------------------------------------
// hubfleet
// ---------------------------------------------------------------------------------------------

/// `hubfleet:` — settings of our own, with no z2jh equivalent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hubfleet {
    /// `hubfleet.listen`: IP address and port the hub (and its built-in proxy) listen on.
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// `hubfleet.data_dir`: where the hub keeps its state (SQLite database, user homes). Relative
    /// paths are resolved by [`HubConfig::data_dir`](crate::HubConfig::data_dir).
    #[serde(deserialize_with = "path_or_default")]
    pub data_dir: PathBuf,
    /// `hubfleet.spawner`: how user servers are started.
    pub spawner: SpawnerKind,
    /// `hubfleet.local`: settings of the local spawner.
    #[serde(deserialize_with = "null_default")]
    pub local: LocalSpawnerConfig,
    /// `hubfleet.public_url`: the URL users reach the hub at, if it differs from `listen`
    /// (e.g. behind a reverse proxy). An `http` or `https` URL.
    #[serde(deserialize_with = "public_url")]
    pub public_url: Option<String>,
}

impl Default for Hubfleet {
    fn default() -> Self {
        Hubfleet {
            listen: DEFAULT_LISTEN,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            spawner: SpawnerKind::Local,
            local: LocalSpawnerConfig::default(),
            public_url: None,
        }
    }
}

/// `hubfleet.spawner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SpawnerKind {
    /// `local`: user servers are local processes.
    #[default]
    Local,
}

impl SpawnerKind {
    /// The config-file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SpawnerKind::Local => "local",
        }
    }
}

impl fmt::Display for SpawnerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SpawnerKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "local" => Ok(SpawnerKind::Local),
            other => Err(format!(
                "spawner `{other}` is not supported yet; supported: local"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for SpawnerKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NamedChoice::<SpawnerKind>::new("`local`"))
    }
}

/// `hubfleet.local:`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalSpawnerConfig {
    /// `hubfleet.local.python_env`: a Python virtual environment whose `bin/` holds
    /// `jupyterhub-singleuser`. Relative paths are resolved like `data_dir`. When unset, the
    /// command is looked up on `PATH`.
    #[serde(deserialize_with = "opt_path")]
    pub python_env: Option<PathBuf>,
}

// ---------------------------------------------------------------------------------------------
// Value readers
// ---------------------------------------------------------------------------------------------

const QUOTE_HINT: &str =
    "a string (quote values such as `123`, `true` or `null` to make them strings)";

/// `null` → `T::default()`, anything else → `T`.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A visitor for a value chosen by name (enums above); `null` gives the default.
struct NamedChoice<T> {
    expecting: &'static str,
    _kind: std::marker::PhantomData<T>,
}

impl<T> NamedChoice<T> {
    fn new(expecting: &'static str) -> Self {
        NamedChoice {
            expecting,
            _kind: std::marker::PhantomData,
        }
    }
}

impl<T> Visitor<'_> for NamedChoice<T>
where
    T: FromStr<Err = String> + Default,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Ok(T::default())
    }
}

/// A string. Numbers and booleans are refused: YAML would have silently turned `0123` or `yes`
/// into something else than the user typed.
struct Text;

impl Visitor<'_> for Text {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(QUOTE_HINT)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
}

struct TextSeed;

impl<'de> DeserializeSeed<'de> for TextSeed {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(Text)
    }
}

/// An optional string: `null` → `None`.
fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(QUOTE_HINT)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// A list of strings; `null` → empty. A single string is refused (z2jh wants a list too).
fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of strings, such as `[alice, bob]` or one `- name` per line")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element_seed(TextSeed)? {
                out.push(s);
            }
            Ok(out)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
    }
    d.deserialize_any(V)
}

/// A boolean; `null` → false.
fn bool_or_default<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("`true` or `false`")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
    }
    d.deserialize_any(V)
}

/// Whole seconds, at least 1; `null` → the default.
fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a whole number of seconds (at least 1), such as `300`")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            if v == 0 {
                return Err(E::invalid_value(Unexpected::Unsigned(0), &self));
            }
            Ok(Duration::from_secs(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &self)),
            }
        }
        fn visit_unit<E: de::Error>(self) -> Result<Duration, E> {
            Ok(Duration::from_secs(DEFAULT_START_TIMEOUT_SECS))
        }
    }
    d.deserialize_any(V)
}

/// `singleuser.cmd`: a string (one argument) or a non-empty list of strings; `null` → None.
fn command<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Vec<String>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a command: a string such as `jupyterhub-singleuser`, or a list of strings such as `[jupyterhub-singleuser, --debug]`")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            if v.trim().is_empty() {
                return Err(E::custom(
                    "the command is empty; remove `cmd` to run `jupyterhub-singleuser`",
                ));
            }
            Ok(Some(vec![v.to_owned()]))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element_seed(TextSeed)? {
                out.push(s);
            }
            match out.first() {
                None => Err(de::Error::custom(
                    "the command list is empty; remove `cmd` to run `jupyterhub-singleuser`",
                )),
                Some(first) if first.trim().is_empty() => Err(de::Error::custom(
                    "the first element of the command (the program to run) is empty",
                )),
                Some(_) => Ok(Some(out)),
            }
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// An environment variable name: non-empty, no `=` and no NUL.
struct EnvName;

impl<'de> DeserializeSeed<'de> for EnvName {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an environment variable name such as `MY_VAR`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
                if v.is_empty() || v.contains('=') || v.contains('\0') {
                    return Err(E::invalid_value(Unexpected::Str(v), &self));
                }
                Ok(v.to_owned())
            }
        }
        d.deserialize_any(V)
    }
}

/// The value of one environment variable: a scalar (numbers and booleans are written as
/// YAML shows them, as z2jh does), or z2jh's explicit `{name, value}` form. `valueFrom` needs
/// Kubernetes and is refused.
struct EnvValue {
    name: Option<String>,
    value: String,
}

const VALUE_FROM_MESSAGE: &str = "`valueFrom` reads from Kubernetes (secrets, config maps, pod fields), and hubfleet runs without Kubernetes; give the variable a literal `value` instead";

struct RejectValueFrom;

impl<'de> DeserializeSeed<'de> for RejectValueFrom {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, _d: D) -> Result<(), D::Error> {
        Err(de::Error::custom(VALUE_FROM_MESSAGE))
    }
}

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnvValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a literal value (string, number or boolean) or a mapping with `value`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvValue, E> {
                Ok(EnvValue {
                    name: None,
                    value: v.to_owned(),
                })
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<EnvValue, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<EnvValue, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<EnvValue, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<EnvValue, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_unit<E: de::Error>(self) -> Result<EnvValue, E> {
                Err(E::custom(
                    "the variable has no value; write `\"\"` for an empty value",
                ))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EnvValue, A::Error> {
                const FIELDS: &[&str] = &["name", "value"];
                let mut name = None;
                let mut value = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "name" => name = Some(map.next_value_seed(EnvName)?),
                        "value" => value = Some(map.next_value::<EnvValue>()?.value),
                        "valueFrom" => map.next_value_seed(RejectValueFrom)?,
                        other => return Err(de::Error::unknown_field(other, FIELDS)),
                    }
                }
                let value = value.ok_or_else(|| {
                    de::Error::custom("the variable has no `value`; give it a literal `value`")
                })?;
                Ok(EnvValue { name, value })
            }
        }
        d.deserialize_any(V)
    }
}

/// `singleuser.extraEnv`: a mapping NAME → value, or z2jh's list of `{name, value}`.
fn extra_env<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping of variable names to values, such as `{MY_VAR: value}`")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key_seed(EnvName)? {
                let v: EnvValue = map.next_value()?;
                // z2jh: an explicit `name` takes precedence over the key.
                out.insert(v.name.unwrap_or(key), v.value);
            }
            Ok(out)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(v) = seq.next_element::<EnvValue>()? {
                let name = v.name.ok_or_else(|| {
                    de::Error::custom("each entry of the list form needs a `name` and a `value`")
                })?;
                out.insert(name, v.value);
            }
            Ok(out)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
    }
    d.deserialize_any(V)
}

/// A socket address such as `127.0.0.1:8000`; `null` → the default.
fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = SocketAddr;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an IP address and port, such as `127.0.0.1:8000` or `[::1]:8000`")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<SocketAddr, E> {
            v.trim().parse().map_err(|_| {
                E::custom(format!(
                    "`{v}` is not an IP address and port; expected something like `127.0.0.1:8000`, `0.0.0.0:8000` or `[::1]:8000` (host names are not accepted)"
                ))
            })
        }
        fn visit_unit<E: de::Error>(self) -> Result<SocketAddr, E> {
            Ok(DEFAULT_LISTEN)
        }
    }
    d.deserialize_any(V)
}

struct PathVisitor;

impl Visitor<'_> for PathVisitor {
    type Value = Option<PathBuf>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a path (a string)")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if v.is_empty() {
            return Err(E::custom(
                "the path is empty; remove the key to use the default",
            ));
        }
        Ok(Some(PathBuf::from(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

fn opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    d.deserialize_any(PathVisitor)
}

fn path_or_default<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    Ok(d.deserialize_any(PathVisitor)?
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)))
}

/// Check that `s` is an absolute `http`/`https` URL with a host and no query or fragment.
pub(crate) fn check_public_url(s: &str) -> Result<(), String> {
    let url = url::Url::parse(s).map_err(|e| {
        format!("`{s}` is not a valid URL ({e}); expected something like `https://hub.example.org`")
    })?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("`{s}` must start with `http://` or `https://`"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{s}` has no host name"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{s}` must not have a `?query` or `#fragment`"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{s}` must not contain a user name or password"));
    }
    Ok(())
}

fn public_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an http(s) URL such as `https://hub.example.org`")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            check_public_url(v).map_err(E::custom)?;
            Ok(Some(v.to_owned()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}
