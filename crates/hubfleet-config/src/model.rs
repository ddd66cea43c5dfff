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
/// Default `cull.timeout` in seconds, as in z2jh's values.yaml.
pub const DEFAULT_CULL_TIMEOUT_SECS: u64 = 3600;
/// Default `cull.every` in seconds, as in z2jh's values.yaml.
pub const DEFAULT_CULL_EVERY_SECS: u64 = 600;
/// Default `cull.concurrency`, as in z2jh's values.yaml.
pub const DEFAULT_CULL_CONCURRENCY: u32 = 10;

// ---------------------------------------------------------------------------------------------
// hub
// ---------------------------------------------------------------------------------------------

/// `hub:` — the hub itself.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct Hub {
    /// `hub.config`: traitlets-style configuration, by class name.
    #[serde(deserialize_with = "null_default")]
    pub config: HubTraitletConfig,
    /// `hub.db`: where the hub keeps its state.
    #[serde(deserialize_with = "null_default")]
    pub db: Db,
    /// `hub.services`: JupyterHub services by name (the key is the service name).
    #[serde(deserialize_with = "named_map")]
    pub services: BTreeMap<String, ServiceConfig>,
    /// `hub.loadRoles`: JupyterHub roles by name (the key is the role name). Scopes are not
    /// checked here.
    #[serde(deserialize_with = "named_map")]
    pub load_roles: BTreeMap<String, RoleConfig>,
    /// `hub.allowNamedServers` (z2jh spelling of `c.JupyterHub.allow_named_servers`); `None`
    /// when unset or `null`. Use [`HubConfig::allow_named_servers`](crate::HubConfig::allow_named_servers)
    /// for the effective value.
    #[serde(deserialize_with = "opt_bool")]
    pub allow_named_servers: Option<bool>,
    /// `hub.namedServerLimitPerUser` (z2jh spelling of
    /// `c.JupyterHub.named_server_limit_per_user`); `None` when unset or `null`, `Some(0)` means
    /// unlimited. Use [`HubConfig::named_server_limit_per_user`](crate::HubConfig::named_server_limit_per_user)
    /// for the effective value.
    #[serde(deserialize_with = "opt_u32")]
    pub named_server_limit_per_user: Option<u32>,
    /// `hub.templatePaths`: directories whose templates replace the built-in ones (first
    /// match wins), as upstream's `c.JupyterHub.template_paths`.
    #[serde(deserialize_with = "null_default")]
    pub template_paths: Vec<PathBuf>,
    /// `hub.templateVars`: variables for every page (`announcement`, `announcement_login`, …),
    /// as upstream's `c.JupyterHub.template_vars`.
    #[serde(deserialize_with = "crate::pages::template_vars")]
    pub template_vars: BTreeMap<String, serde_json::Value>,
    /// `hub.baseUrl` (upstream's `c.JupyterHub.base_url`): the path everything is served
    /// under, `/` by default; `/jupyter/` puts the hub at `/jupyter/hub/` and alice's server at
    /// `/jupyter/user/alice/`. Always starts and ends with `/`.
    #[serde(deserialize_with = "base_url")]
    pub base_url: BaseUrl,
    /// `hub.cookieSecret` (hex, as z2jh and upstream's `cookie_secret`): keys the hub's signed
    /// values (XSRF tokens); changing it ends every login session.
    #[serde(deserialize_with = "cookie_secret")]
    pub cookie_secret: Option<CookieSecret>,
    /// `hub.extraEnv`: the hub's own environment, as z2jh sets it on the hub pod.
    #[serde(deserialize_with = "hub_extra_env")]
    pub extra_env: HubEnv,
    /// `hub.redirectToServer` (z2jh spelling of `c.JupyterHub.redirect_to_server`).
    #[serde(deserialize_with = "opt_bool")]
    pub redirect_to_server: Option<bool>,
    /// `hub.shutdownOnLogout` (z2jh spelling of `c.JupyterHub.shutdown_on_logout`).
    #[serde(deserialize_with = "opt_bool")]
    pub shutdown_on_logout: Option<bool>,
    /// `hub.authenticatePrometheus` (z2jh spelling of `c.JupyterHub.authenticate_prometheus`).
    #[serde(deserialize_with = "opt_bool")]
    pub authenticate_prometheus: Option<bool>,
    /// `hub.concurrentSpawnLimit` (z2jh spelling of `c.JupyterHub.concurrent_spawn_limit`):
    /// starts in progress at once before further ones get 429; `Some(0)` means no limit. Use
    /// [`HubConfig::concurrent_spawn_limit`](crate::HubConfig::concurrent_spawn_limit).
    #[serde(deserialize_with = "opt_u32")]
    pub concurrent_spawn_limit: Option<u32>,
    /// `hub.activeServerLimit` (z2jh spelling of `c.JupyterHub.active_server_limit`): servers
    /// not stopped (starting, running or stopping) before starts get 429; `Some(0)` means no
    /// limit. Use [`HubConfig::active_server_limit`](crate::HubConfig::active_server_limit).
    #[serde(deserialize_with = "opt_u32")]
    pub active_server_limit: Option<u32>,
}

/// A URL path prefix that starts and ends with `/` (`hub.baseUrl`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl(String);

impl Default for BaseUrl {
    fn default() -> Self {
        BaseUrl("/".to_owned())
    }
}

impl BaseUrl {
    /// `/jupyter` and `jupyter/` become `/jupyter/`; a path with `//`, `..`, a query or
    /// characters a URL path would escape is refused.
    pub fn parse(value: &str) -> Result<BaseUrl, String> {
        let trimmed = value.trim_matches('/');
        if trimmed.is_empty() {
            return Ok(BaseUrl::default());
        }
        let bad = trimmed
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
            || !trimmed
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~/".contains(c));
        if bad {
            return Err(format!(
                "`{value}` is not a plain URL path: use letters, digits, `-`, `_`, `.`, `~` and single `/`, e.g. `/jupyter/`"
            ));
        }
        Ok(BaseUrl(format!("/{trimmed}/")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The shortest `hub.cookieSecret` accepted, in bytes (z2jh and upstream make 32).
pub const COOKIE_SECRET_MIN_BYTES: usize = 32;

/// `hub.cookieSecret`, decoded from hex. Never shown in logs or errors.
#[derive(Clone, PartialEq, Eq)]
pub struct CookieSecret(Vec<u8>);

impl CookieSecret {
    /// Decode a hex secret of at least [`COOKIE_SECRET_MIN_BYTES`] bytes. The error never
    /// repeats the value.
    pub fn from_hex(text: &str) -> Result<CookieSecret, String> {
        let text = text.trim();
        let how = "make one with `openssl rand -hex 32`";
        if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "must be hexadecimal digits (0-9, a-f), an even number of them, as z2jh's and upstream's cookie_secret; {how}"
            ));
        }
        let bytes: Vec<u8> = (0..text.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
            .collect();
        if bytes.len() < COOKIE_SECRET_MIN_BYTES {
            return Err(format!(
                "is {} bytes; it must be at least {COOKIE_SECRET_MIN_BYTES} bytes ({} hex digits): {how}",
                bytes.len(),
                COOKIE_SECRET_MIN_BYTES * 2
            ));
        }
        Ok(CookieSecret(bytes))
    }

    /// The secret's bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

fn base_url<'de, D: Deserializer<'de>>(d: D) -> Result<BaseUrl, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = BaseUrl;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a URL path such as `/jupyter/`")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            BaseUrl::parse(v).map_err(E::custom)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BaseUrl::default())
        }
    }
    d.deserialize_any(V)
}

impl fmt::Debug for CookieSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CookieSecret(<redacted>)")
    }
}

fn cookie_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<CookieSecret>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<CookieSecret>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a hex string such as the output of `openssl rand -hex 32`")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            if v.trim().is_empty() {
                return Ok(None);
            }
            CookieSecret::from_hex(v).map(Some).map_err(E::custom)
        }
        // Never echo the value, even when it has the wrong type.
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(E::custom(
                "must be a string of hex digits; quote it (`cookieSecret: \"…\"`)",
            ))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            self.visit_u64(v.unsigned_abs())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            self.visit_u64(0)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// `hub.extraEnv`: variables of the hub's own environment (z2jh sets them on the hub pod).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct HubEnv {
    /// Variables with a literal value.
    pub vars: BTreeMap<String, String>,
    /// Variables given with `valueFrom` (read from Kubernetes objects): not set here.
    pub from_kubernetes: Vec<String>,
}

impl fmt::Debug for HubEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets (JUPYTERHUB_CRYPT_KEY): names only.
        f.debug_struct("HubEnv")
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .field("from_kubernetes", &self.from_kubernetes)
            .finish()
    }
}

/// One group of `hub.config.JupyterHub.load_groups`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupConfig {
    /// Members (added at start; members added otherwise stay, as upstream).
    pub users: Vec<String>,
    /// Properties; `None` leaves the group's properties as they are.
    pub properties: Option<serde_json::Map<String, serde_json::Value>>,
    /// Written in the list form (`group: [users]`), deprecated since JupyterHub 3.2.
    pub list_form: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawGroup {
    #[serde(deserialize_with = "string_list")]
    users: Vec<String>,
    #[serde(deserialize_with = "opt_json_map")]
    properties: Option<serde_json::Map<String, serde_json::Value>>,
}

impl<'de> Deserialize<'de> for GroupConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = GroupConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`{users: [names], properties: {…}}` (or a list of user names)")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut users = Vec::new();
                while let Some(name) = seq.next_element_seed(TextSeed)? {
                    users.push(name);
                }
                Ok(GroupConfig {
                    users,
                    properties: None,
                    list_form: true,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let raw = RawGroup::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(GroupConfig {
                    users: raw.users,
                    properties: raw.properties,
                    list_form: false,
                })
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(GroupConfig::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// A JSON object; `null` → None.
fn opt_json_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<serde_json::Map<String, serde_json::Value>>, D::Error> {
    Option::<serde_json::Map<String, serde_json::Value>>::deserialize(d)
}

/// One entry of `hub.services` (upstream's `c.JupyterHub.services` item).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawService")]
pub struct ServiceConfig {
    /// `admin`: the service gets the `admin` role.
    pub admin: bool,
    /// `url`: where the service listens (`http://` or `https://`); the proxy routes
    /// `/services/<name>/` there. Unset: the service is not proxied.
    pub url: Option<String>,
    /// `api_token` (z2jh also accepts `apiToken`): the service's API token, at least 8
    /// characters. Unset: the hub generates one.
    pub api_token: Option<String>,
    /// `command`: makes this a hub-managed service, started with this command. A string is one
    /// program name (not split on spaces), as upstream.
    pub command: Option<Vec<String>>,
    /// `environment`: extra environment variables for a managed service.
    pub environment: BTreeMap<String, String>,
    /// `display`: list the service on the hub's home page (when it has a `url`). Default true.
    pub display: bool,
    /// `info`: free-form data returned by the REST API for this service.
    pub info: serde_json::Map<String, serde_json::Value>,
    /// `oauth_no_confirm`: skip the OAuth confirmation page for this service.
    pub oauth_no_confirm: bool,
    /// `oauth_client_allowed_scopes`: scopes the service's OAuth tokens may hold.
    pub oauth_client_allowed_scopes: Vec<String>,
    /// `oauth_redirect_uri`: the service's OAuth callback (an http(s) URL or an absolute path).
    /// Unset: `<url>/oauth_callback` upstream.
    pub oauth_redirect_uri: Option<String>,
    /// `oauth_client_id`: the OAuth client id; must start with `service-`. Unset:
    /// `service-<name>`.
    pub oauth_client_id: Option<String>,
    /// `name`: optional, as in z2jh; when given it must equal the key.
    pub name: Option<String>,
    /// `cwd`: working directory of a managed service (kept as written; not resolved).
    pub cwd: Option<PathBuf>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            admin: false,
            url: None,
            api_token: None,
            command: None,
            environment: BTreeMap::new(),
            display: true,
            info: serde_json::Map::new(),
            oauth_no_confirm: false,
            oauth_client_allowed_scopes: Vec::new(),
            oauth_redirect_uri: None,
            oauth_client_id: None,
            name: None,
            cwd: None,
        }
    }
}

impl fmt::Debug for ServiceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceConfig")
            .field("admin", &self.admin)
            .field("url", &self.url)
            .field("api_token", &redact(&self.api_token))
            .field("command", &self.command)
            .field("environment", &self.environment)
            .field("display", &self.display)
            .field("info", &self.info)
            .field("oauth_no_confirm", &self.oauth_no_confirm)
            .field(
                "oauth_client_allowed_scopes",
                &self.oauth_client_allowed_scopes,
            )
            .field("oauth_redirect_uri", &self.oauth_redirect_uri)
            .field("oauth_client_id", &self.oauth_client_id)
            .field("name", &self.name)
            .field("cwd", &self.cwd)
            .finish()
    }
}

/// `hub.services.<name>` as written: both spellings of the token.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawService {
    #[serde(deserialize_with = "bool_or_default")]
    admin: bool,
    #[serde(deserialize_with = "public_url")]
    url: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    api_token: Option<String>,
    #[serde(rename = "apiToken", deserialize_with = "opt_string")]
    api_token_z2jh: Option<String>,
    #[serde(deserialize_with = "service_command")]
    command: Option<Vec<String>>,
    #[serde(deserialize_with = "env_map")]
    environment: BTreeMap<String, String>,
    #[serde(deserialize_with = "bool_or_true")]
    display: bool,
    #[serde(deserialize_with = "null_default")]
    info: serde_json::Map<String, serde_json::Value>,
    #[serde(deserialize_with = "bool_or_default")]
    oauth_no_confirm: bool,
    #[serde(deserialize_with = "string_list")]
    oauth_client_allowed_scopes: Vec<String>,
    #[serde(deserialize_with = "redirect_uri")]
    oauth_redirect_uri: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    oauth_client_id: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    name: Option<String>,
    #[serde(deserialize_with = "opt_path")]
    cwd: Option<PathBuf>,
}

impl Default for RawService {
    fn default() -> Self {
        let d = ServiceConfig::default();
        RawService {
            admin: d.admin,
            url: d.url,
            api_token: None,
            api_token_z2jh: None,
            command: d.command,
            environment: d.environment,
            display: d.display,
            info: d.info,
            oauth_no_confirm: d.oauth_no_confirm,
            oauth_client_allowed_scopes: d.oauth_client_allowed_scopes,
            oauth_redirect_uri: d.oauth_redirect_uri,
            oauth_client_id: d.oauth_client_id,
            name: d.name,
            cwd: d.cwd,
        }
    }
}

impl From<RawService> for ServiceConfig {
    fn from(r: RawService) -> Self {
        // Giving both spellings is refused by validation, which sees the text.
        ServiceConfig {
            admin: r.admin,
            url: r.url,
            api_token: r.api_token.or(r.api_token_z2jh),
            command: r.command,
            environment: r.environment,
            display: r.display,
            info: r.info,
            oauth_no_confirm: r.oauth_no_confirm,
            oauth_client_allowed_scopes: r.oauth_client_allowed_scopes,
            oauth_redirect_uri: r.oauth_redirect_uri,
            oauth_client_id: r.oauth_client_id,
            name: r.name,
            cwd: r.cwd,
        }
    }
}

/// One entry of `hub.loadRoles` (upstream's `c.JupyterHub.load_roles` item).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoleConfig {
    /// `name`: optional, as in z2jh; when given it must equal the key.
    #[serde(deserialize_with = "opt_string")]
    pub name: Option<String>,
    /// `description`.
    #[serde(deserialize_with = "opt_string")]
    pub description: Option<String>,
    /// `scopes`: the scopes the role grants (checked by the hub, not here).
    #[serde(deserialize_with = "string_list")]
    pub scopes: Vec<String>,
    /// `users`: users the role is assigned to.
    #[serde(deserialize_with = "string_list")]
    pub users: Vec<String>,
    /// `groups`: groups the role is assigned to.
    #[serde(deserialize_with = "string_list")]
    pub groups: Vec<String>,
    /// `services`: services the role is assigned to.
    #[serde(deserialize_with = "string_list")]
    pub services: Vec<String>,
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
    /// `hub.config.GenericOAuthenticator`.
    #[serde(rename = "GenericOAuthenticator", deserialize_with = "null_default")]
    pub generic_oauthenticator: crate::auth::GenericOAuthenticatorConfig,
    /// `hub.config.GitHubOAuthenticator`.
    #[serde(rename = "GitHubOAuthenticator", deserialize_with = "null_default")]
    pub github_oauthenticator: crate::auth::GitHubOAuthenticatorConfig,
    /// `hub.config.CILogonOAuthenticator`.
    #[serde(rename = "CILogonOAuthenticator", deserialize_with = "null_default")]
    pub cilogon_oauthenticator: crate::auth::CILogonOAuthenticatorConfig,
    /// `hub.config.TmpAuthenticator`.
    #[serde(rename = "TmpAuthenticator", deserialize_with = "null_default")]
    pub tmp_authenticator: crate::auth::TmpAuthenticatorConfig,
    /// `hub.config.GoogleOAuthenticator`.
    #[serde(rename = "GoogleOAuthenticator", deserialize_with = "null_default")]
    pub google_oauthenticator: crate::auth::GoogleOAuthenticatorConfig,
    /// `hub.config.ConfigurableHTTPProxy`: a separate proxy the hub drives.
    #[serde(rename = "ConfigurableHTTPProxy", deserialize_with = "null_default")]
    pub configurable_http_proxy: ChpConfig,
}

/// `hub.config.ConfigurableHTTPProxy`: with `api_url`, users' routes go to a proxy of its own
/// (configurable-http-proxy, or `hubfleet proxy`) through its REST API, as upstream's
/// `ConfigurableHTTPProxy` with `should_start: false`; the hub serves only itself on
/// `hubfleet.listen`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChpConfig {
    /// `api_url`: the proxy's REST API, e.g. `http://127.0.0.1:8001`.
    #[serde(deserialize_with = "public_url")]
    pub api_url: Option<String>,
    /// `auth_token`: the proxy's API token (else `CONFIGPROXY_AUTH_TOKEN` in the hub's
    /// environment, as upstream).
    #[serde(deserialize_with = "opt_string")]
    pub auth_token: Option<String>,
    /// `should_start`: hubfleet never starts the proxy; `true` with `api_url` is refused.
    #[serde(deserialize_with = "opt_bool")]
    pub should_start: Option<bool>,
}

/// `hub.config.JupyterHub:`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JupyterHubConfig {
    /// `hub.config.JupyterHub.authenticator_class`.
    pub authenticator_class: AuthenticatorKind,
    /// `hub.config.JupyterHub.allow_named_servers` (upstream spelling of
    /// `hub.allowNamedServers`); `None` when unset or `null`.
    #[serde(deserialize_with = "opt_bool")]
    pub allow_named_servers: Option<bool>,
    /// `hub.config.JupyterHub.named_server_limit_per_user` (upstream spelling of
    /// `hub.namedServerLimitPerUser`); `None` when unset or `null`, `Some(0)` means unlimited.
    #[serde(deserialize_with = "opt_u32")]
    pub named_server_limit_per_user: Option<u32>,
    /// `hub.config.JupyterHub.subdomain_host`: serve each user's servers on a host of their
    /// own under this URL's host (`http://localhost:8000` → `alice.localhost:8000`), so that
    /// no user's code shares an origin with the hub or with another user.
    #[serde(deserialize_with = "subdomain_host")]
    pub subdomain_host: Option<String>,
    /// `hub.config.JupyterHub.redirect_to_server`: after login (and at `/hub/`), go to the
    /// user's server rather than the home page. See
    /// [`HubConfig::redirect_to_server`](crate::HubConfig::redirect_to_server).
    #[serde(deserialize_with = "opt_bool")]
    pub redirect_to_server: Option<bool>,
    /// `hub.config.JupyterHub.shutdown_on_logout`: logging out stops the user's servers.
    #[serde(deserialize_with = "opt_bool")]
    pub shutdown_on_logout: Option<bool>,
    /// `hub.config.JupyterHub.authenticate_prometheus`: `/hub/metrics` needs a token with
    /// `read:metrics` (default true).
    #[serde(deserialize_with = "opt_bool")]
    pub authenticate_prometheus: Option<bool>,
    /// `hub.config.JupyterHub.load_groups`: groups (and members) made at start.
    #[serde(deserialize_with = "named_map")]
    pub load_groups: BTreeMap<String, GroupConfig>,
    /// `hub.config.JupyterHub.admin_access`: deprecated since JupyterHub 2.0 and without effect
    /// (admins reach servers through the `admin` role's scopes); accepted with a warning.
    #[serde(deserialize_with = "opt_bool")]
    pub admin_access: Option<bool>,
    /// `hub.config.JupyterHub.concurrent_spawn_limit` (upstream spelling of
    /// `hub.concurrentSpawnLimit`).
    #[serde(deserialize_with = "opt_u32")]
    pub concurrent_spawn_limit: Option<u32>,
    /// `hub.config.JupyterHub.active_server_limit` (upstream spelling of
    /// `hub.activeServerLimit`).
    #[serde(deserialize_with = "opt_u32")]
    pub active_server_limit: Option<u32>,
    /// `hub.config.JupyterHub.hub_connect_url`: where users' servers and services reach the
    /// hub's API (`JUPYTERHUB_API_URL`). As upstream, only its origin counts: the path is the
    /// hub's own (`<hub.baseUrl>hub/`). With several replicas, an address that outlives any one
    /// of them (the load balancer's).
    #[serde(deserialize_with = "public_url")]
    pub hub_connect_url: Option<String>,
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
    /// `generic-oauth` / `oauthenticator.generic.GenericOAuthenticator`: OAuth 2.0 / OIDC.
    GenericOAuth,
    /// `github` / `oauthenticator.github.GitHubOAuthenticator`.
    GitHub,
    /// `cilogon` / `oauthenticator.cilogon.CILogonOAuthenticator`.
    CILogon,
    /// `tmp` / `tmpauthenticator.TmpAuthenticator`: a new temporary user per visitor.
    Tmp,
    /// `google` / `oauthenticator.google.GoogleOAuthenticator`: OpenID Connect with Google.
    Google,
    /// `null` / `nullauthenticator.NullAuthenticator`: nobody logs in; the hub is used with
    /// API tokens only (BinderHub).
    Null,
}

impl AuthenticatorKind {
    /// Every supported kind, in documentation order.
    pub const ALL: [AuthenticatorKind; 9] = [
        AuthenticatorKind::Native,
        AuthenticatorKind::Dummy,
        AuthenticatorKind::SharedPassword,
        AuthenticatorKind::GitHub,
        AuthenticatorKind::GenericOAuth,
        AuthenticatorKind::CILogon,
        AuthenticatorKind::Google,
        AuthenticatorKind::Tmp,
        AuthenticatorKind::Null,
    ];

    /// Whether users log in by a redirect to an OAuth provider (oauthenticator's classes).
    pub fn is_oauth(self) -> bool {
        matches!(
            self,
            AuthenticatorKind::GenericOAuth
                | AuthenticatorKind::GitHub
                | AuthenticatorKind::CILogon
                | AuthenticatorKind::Google
        )
    }

    /// The short name used in the config file (`native`, `dummy`, `shared-password`).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthenticatorKind::Native => "native",
            AuthenticatorKind::Dummy => "dummy",
            AuthenticatorKind::SharedPassword => "shared-password",
            AuthenticatorKind::GenericOAuth => "generic-oauth",
            AuthenticatorKind::GitHub => "github",
            AuthenticatorKind::CILogon => "cilogon",
            AuthenticatorKind::Tmp => "tmp",
            AuthenticatorKind::Google => "google",
            AuthenticatorKind::Null => "null",
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
            AuthenticatorKind::GenericOAuth => &[
                "generic-oauth",
                "generic",
                "oauthenticator.generic.GenericOAuthenticator",
                "oauthenticator.GenericOAuthenticator",
            ],
            AuthenticatorKind::GitHub => &[
                "github",
                "oauthenticator.github.GitHubOAuthenticator",
                "oauthenticator.GitHubOAuthenticator",
            ],
            AuthenticatorKind::CILogon => &[
                "cilogon",
                "oauthenticator.cilogon.CILogonOAuthenticator",
                "oauthenticator.CILogonOAuthenticator",
            ],
            AuthenticatorKind::Tmp => &["tmp", "tmpauthenticator.TmpAuthenticator"],
            AuthenticatorKind::Google => &[
                "google",
                "oauthenticator.google.GoogleOAuthenticator",
                "oauthenticator.GoogleOAuthenticator",
            ],
            AuthenticatorKind::Null => &[
                "null",
                "nullauthenticator.NullAuthenticator",
                "nullauthenticator.nullauthenticator.NullAuthenticator",
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
                    "authenticator_class `{s}` is not supported yet; supported: native, dummy, shared-password, github, generic-oauth, cilogon, google, tmp, null"
                )
            })
    }
}

impl<'de> Deserialize<'de> for AuthenticatorKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NamedChoice::<AuthenticatorKind>::new(
            "one of `native`, `dummy`, `shared-password`, `github`, `generic-oauth`, `cilogon`, `google`, `tmp`, `null`",
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
    /// `blocked_users`: these users may never log in.
    #[serde(deserialize_with = "string_list")]
    pub blocked_users: Vec<String>,
    /// `allow_all`: every user the authenticator accepts may log in (see docs for defaults).
    #[serde(deserialize_with = "opt_bool")]
    pub allow_all: Option<bool>,
    /// `allow_existing_users`: users already in the hub's database may log in.
    #[serde(deserialize_with = "opt_bool")]
    pub allow_existing_users: Option<bool>,
    /// `manage_groups`: the authenticator decides the user's groups at each login.
    #[serde(deserialize_with = "opt_bool")]
    pub manage_groups: Option<bool>,
    /// `auto_login`: skip the login page and go straight to the provider.
    #[serde(deserialize_with = "opt_bool")]
    pub auto_login: Option<bool>,
    /// `enable_auth_state`: keep the provider's tokens and user data (encrypted).
    #[serde(deserialize_with = "opt_bool")]
    pub enable_auth_state: Option<bool>,
    /// `auth_refresh_age`: seconds before a login's auth_state is checked again with the
    /// provider (0: never).
    #[serde(deserialize_with = "opt_u32")]
    pub auth_refresh_age: Option<u32>,
    /// `refresh_pre_spawn`: check auth_state with the provider before every server start.
    #[serde(deserialize_with = "opt_bool")]
    pub refresh_pre_spawn: Option<bool>,
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
    /// `password`: not a key of upstream's class (DummyAuthenticator's spelling), found in
    /// 2i2c's files; read as `user_password`, with a warning.
    #[serde(deserialize_with = "opt_string")]
    pub password: Option<String>,
}

impl SharedPasswordAuthenticatorConfig {
    /// `user_password`, or the misspelt `password` when only that is set.
    pub fn effective_user_password(&self) -> Option<&str> {
        self.user_password.as_deref().or(self.password.as_deref())
    }
}

/// `hub.config.NativeAuthenticator:`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NativeAuthenticatorConfig {
    /// `open_signup`: new sign-ups are authorized at once instead of waiting for an admin.
    #[serde(deserialize_with = "bool_or_default")]
    pub open_signup: bool,
    /// `enable_signup`: the sign-up page exists (default true).
    #[serde(deserialize_with = "opt_bool")]
    pub enable_signup: Option<bool>,
    /// `minimum_password_length` for sign-ups and password changes (default 1, as upstream).
    #[serde(deserialize_with = "opt_u32")]
    pub minimum_password_length: Option<u32>,
    /// `check_common_password`: refuse passwords from a list of common ones.
    #[serde(deserialize_with = "bool_or_default")]
    pub check_common_password: bool,
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
            .field("password", &redact(&self.password))
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
    /// `singleuser.image`: the default image, mapped to a local environment (see `profiles`).
    pub image: crate::profiles::ImageConfig,
    /// `singleuser.memory`: `limit` / `guarantee` in bytes.
    #[serde(deserialize_with = "null_default")]
    pub memory: crate::profiles::MemoryConfig,
    /// `singleuser.cpu`: `limit` / `guarantee` in millicores.
    #[serde(deserialize_with = "null_default")]
    pub cpu: crate::profiles::CpuConfig,
    /// `singleuser.profileList`: KubeSpawner's profiles.
    #[serde(deserialize_with = "crate::profiles::profile_list")]
    pub profile_list: Vec<crate::profiles::Profile>,
    /// `singleuser.storage`: `capacity` is the home's quota; the other keys are ignored.
    #[serde(deserialize_with = "null_default")]
    pub storage: crate::profiles::StorageConfig,
}

impl Default for Singleuser {
    fn default() -> Self {
        Singleuser {
            cmd: None,
            default_url: None,
            extra_env: BTreeMap::new(),
            start_timeout: Duration::from_secs(DEFAULT_START_TIMEOUT_SECS),
            image: Default::default(),
            memory: Default::default(),
            cpu: Default::default(),
            profile_list: Vec::new(),
            storage: Default::default(),
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
// cull
// ---------------------------------------------------------------------------------------------

/// `cull:` — stopping idle servers (z2jh runs `jupyterhub-idle-culler` for this; hubfleet
/// runs it too, or its built-in culler: see [`CullerKind`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct Cull {
    /// `cull.enabled`: cull idle servers at all. Default true.
    #[serde(deserialize_with = "bool_or_true")]
    pub enabled: bool,
    /// `cull.users` (`--cull-users`): also delete users whose servers were culled. Default false.
    #[serde(deserialize_with = "bool_or_default")]
    pub users: bool,
    /// `cull.adminUsers` (`--cull-admin-users`): cull admins' servers too. Default true.
    #[serde(deserialize_with = "bool_or_true")]
    pub admin_users: bool,
    /// `cull.removeNamedServers` (`--remove-named-servers`): delete culled named servers
    /// instead of only stopping them. Default false.
    #[serde(deserialize_with = "bool_or_default")]
    pub remove_named_servers: bool,
    /// `cull.timeout` (`--timeout`): seconds of inactivity before a server is culled; at least
    /// 1. Default 3600.
    #[serde(deserialize_with = "cull_timeout")]
    pub timeout: u64,
    /// `cull.every` (`--cull-every`): seconds between two checks; at least 1. Default 600.
    #[serde(deserialize_with = "cull_every")]
    pub every: u64,
    /// `cull.concurrency` (`--concurrency`): API requests the culler makes at once; at least
    /// 1. Default 10.
    #[serde(deserialize_with = "cull_concurrency")]
    pub concurrency: u32,
    /// `cull.maxAge` (`--max-age`): seconds after which a server is culled even if active;
    /// 0 (the default) means no limit.
    #[serde(deserialize_with = "cull_max_age")]
    pub max_age: u64,
}

impl Default for Cull {
    fn default() -> Self {
        Cull {
            enabled: true,
            users: false,
            admin_users: true,
            remove_named_servers: false,
            timeout: DEFAULT_CULL_TIMEOUT_SECS,
            every: DEFAULT_CULL_EVERY_SECS,
            concurrency: DEFAULT_CULL_CONCURRENCY,
            max_age: 0,
        }
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
    /// `hubfleet.culler`: which program culls idle servers when `cull.enabled` is true.
    pub culler: CullerKind,
    /// `hubfleet.auth`: login settings of our own (OIDC issuer, login page, rate limits).
    #[serde(deserialize_with = "null_default")]
    pub auth: crate::auth::HubfleetAuth,
    /// `hubfleet.http_redirect_listen`: with `proxy.https`, where plain HTTP is sent to HTTPS
    /// and ACME HTTP-01 challenges are answered (usually `0.0.0.0:80`).
    #[serde(deserialize_with = "crate::https::opt_socket_addr")]
    pub http_redirect_listen: Option<SocketAddr>,
    /// `hubfleet.api_rate_limit`: how many API requests each user may make.
    #[serde(deserialize_with = "null_default")]
    pub api_rate_limit: ApiRateLimit,
    /// `hubfleet.kubernetes`: where and how the `kubernetes` spawner runs servers as pods, and
    /// how `hubfleet render k8s` lays the hub out.
    #[serde(deserialize_with = "null_default")]
    pub kubernetes: KubernetesConfig,
    /// `hubfleet.environments`: profiles and local environments edited in the admin panel.
    #[serde(deserialize_with = "null_default")]
    pub environments: EnvironmentsConfig,
}

/// `hubfleet.environments`: how profiles and local environments kept in the database (seeded
/// from `singleuser.profileList` and `hubfleet.local.environments`) may be changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvironmentsConfig {
    /// `allow_ui_overrides`: admins may edit, hide and delete the profiles and environments the
    /// config defines (a config change then leaves the edited ones alone). Off by default: the
    /// values file stays the truth for what it defines.
    #[serde(deserialize_with = "bool_or_default")]
    pub allow_ui_overrides: bool,
    /// `python`: the Python that builds local environments from the admin panel (default
    /// `python3`).
    #[serde(deserialize_with = "opt_string")]
    pub python: Option<String>,
    /// `build_packages`: what every build installs before its requirements (default
    /// `[jupyterhub, jupyterlab]`, what a server needs).
    pub build_packages: Option<Vec<String>>,
}

/// `Chart:` as z2jh's chart gives it to its hub (in the values it reads) and as `hubfleet render
/// k8s` writes it: facts about the chart, read by the Kubernetes pod builder from
/// [`HubConfig::values`](crate::HubConfig::values).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
pub(crate) struct ChartFacts {
    #[serde(deserialize_with = "opt_string")]
    pub name: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub version: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub app_version: Option<String>,
}

/// `Release:`, as [`ChartFacts`]: the Helm release's name and namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
pub(crate) struct ReleaseFacts {
    #[serde(deserialize_with = "opt_string")]
    pub name: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub namespace: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub service: Option<String>,
}

/// `hubfleet.kubernetes:`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// `hubfleet.kubernetes.separate_proxy`: run the proxy as a Deployment of its own
    /// (`hubfleet proxy`, as z2jh's `proxy` pod) instead of inside the hub's pod.
    #[serde(deserialize_with = "bool_or_default")]
    pub separate_proxy: bool,
    /// `hubfleet.kubernetes.namespace`: where users' pods and PVCs go. Default: the hub pod's
    /// own namespace (its service account's), else the kubeconfig context's, else `default`.
    #[serde(deserialize_with = "opt_string")]
    pub namespace: Option<String>,
    /// `hubfleet.kubernetes.chart_values`: z2jh's chart defaults (`jupyterhub/values.yaml`),
    /// under which this config's values are laid, as Helm does. Unset: the config holds the
    /// full values already (as z2jh's hub Secret, or what `hubfleet render k8s` writes).
    #[serde(deserialize_with = "opt_path")]
    pub chart_values: Option<PathBuf>,
    /// `hubfleet.kubernetes.hub_connect_url`: where pods reach the hub's API (JupyterHub's
    /// `hub_connect_url`, z2jh's `http://hub:8081`). Default: the address the hub listens on.
    #[serde(deserialize_with = "public_url")]
    pub hub_connect_url: Option<String>,
}

/// Default `hubfleet.api_rate_limit.per_second`.
pub const DEFAULT_API_RATE_PER_SECOND: u32 = 10;
/// Default `hubfleet.api_rate_limit.burst`.
pub const DEFAULT_API_RATE_BURST: u32 = 100;

/// `hubfleet.api_rate_limit:` — a token bucket per user over their API requests (by token or
/// by their browser's cookie, their servers' tokens included). Admins and services are not
/// limited.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiRateLimit {
    /// `hubfleet.api_rate_limit.per_second`: requests a second a user may keep up (the bucket
    /// refills at this rate); 0 turns the limit off.
    #[serde(deserialize_with = "u32_or_default::<DEFAULT_API_RATE_PER_SECOND, _>")]
    pub per_second: u32,
    /// `hubfleet.api_rate_limit.burst`: requests a user may make at once (the bucket's size).
    #[serde(deserialize_with = "u32_or_default::<DEFAULT_API_RATE_BURST, _>")]
    pub burst: u32,
}

impl Default for ApiRateLimit {
    fn default() -> Self {
        ApiRateLimit {
            per_second: DEFAULT_API_RATE_PER_SECOND,
            burst: DEFAULT_API_RATE_BURST,
        }
    }
}

/// A whole number, `DEFAULT` when `null`.
fn u32_or_default<'de, const DEFAULT: u32, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    Ok(opt_u32(d)?.unwrap_or(DEFAULT))
}

impl Default for Hubfleet {
    fn default() -> Self {
        Hubfleet {
            listen: DEFAULT_LISTEN,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            spawner: SpawnerKind::Local,
            local: LocalSpawnerConfig::default(),
            public_url: None,
            culler: CullerKind::Auto,
            auth: Default::default(),
            http_redirect_listen: None,
            api_rate_limit: ApiRateLimit::default(),
            kubernetes: KubernetesConfig::default(),
            environments: EnvironmentsConfig::default(),
        }
    }
}

/// `hubfleet.culler`: which culler implements `cull:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CullerKind {
    /// `auto`: `idle-culler` when `jupyterhub-idle-culler` is installed in the Python
    /// environment, else `builtin`.
    #[default]
    Auto,
    /// `idle-culler`: run the real `jupyterhub-idle-culler` as a hub-managed service (as z2jh
    /// does).
    IdleCuller,
    /// `builtin`: hubfleet's own culler, inside the hub process.
    Builtin,
}

impl CullerKind {
    /// Every kind, in documentation order.
    pub const ALL: [CullerKind; 3] = [
        CullerKind::Auto,
        CullerKind::IdleCuller,
        CullerKind::Builtin,
    ];

    /// The config-file spelling (`auto`, `idle-culler`, `builtin`).
    pub fn as_str(self) -> &'static str {
        match self {
            CullerKind::Auto => "auto",
            CullerKind::IdleCuller => "idle-culler",
            CullerKind::Builtin => "builtin",
        }
    }
}

impl fmt::Display for CullerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CullerKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CullerKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s.trim())
            .ok_or_else(|| {
                format!("culler `{s}` is not supported; supported: auto, idle-culler, builtin")
            })
    }
}

impl<'de> Deserialize<'de> for CullerKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NamedChoice::<CullerKind>::new(
            "one of `auto`, `idle-culler`, `builtin`",
        ))
    }
}

/// `hubfleet.spawner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SpawnerKind {
    /// `local`: user servers are local processes.
    #[default]
    Local,
    /// `kubernetes`: user servers are pods (what `hubfleet render k8s` configures).
    Kubernetes,
}

impl SpawnerKind {
    /// The config-file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SpawnerKind::Local => "local",
            SpawnerKind::Kubernetes => "kubernetes",
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
            "kubernetes" => Ok(SpawnerKind::Kubernetes),
            other => Err(format!(
                "spawner `{other}` is not supported; supported: local, kubernetes"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for SpawnerKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NamedChoice::<SpawnerKind>::new("`local` or `kubernetes`"))
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
    /// `hubfleet.local.environments`: image (or name) → local environment (see `profiles`).
    #[serde(deserialize_with = "crate::profiles::environments")]
    pub environments: Vec<(String, crate::profiles::EnvironmentConfig)>,
    /// `hubfleet.local.system_users`: run each user's server as Unix account `jupyter-<name>`.
    #[serde(deserialize_with = "bool_or_default")]
    pub system_users: bool,
    /// `hubfleet.local.existing_system_users`: Unix accounts (`jupyter-<name>`) that existed
    /// before the hub and that it may use for their user anyway. Any other account the hub did
    /// not create itself is refused.
    #[serde(deserialize_with = "string_list")]
    pub existing_system_users: Vec<String>,
    /// `hubfleet.local.allow_root`: when the hub runs as root without `system_users`, run users'
    /// servers as root anyway (jupyter-server gets `--allow-root`). Without it such a hub refuses
    /// to start.
    #[serde(deserialize_with = "bool_or_default")]
    pub allow_root: bool,
    /// `hubfleet.local.homes_dir`: where homes live (default `<data_dir>/homes`).
    #[serde(deserialize_with = "opt_path")]
    pub homes_dir: Option<PathBuf>,
    /// `hubfleet.local.shared_dir`: the hub's shared folder (default `<data_dir>/shared`).
    #[serde(deserialize_with = "opt_path")]
    pub shared_dir: Option<PathBuf>,
    /// `hubfleet.local.gpus`: GPU device indices servers may be given (`[0, 1]`).
    #[serde(deserialize_with = "null_default")]
    pub gpus: Vec<u32>,
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
pub(crate) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
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

/// A boolean; `null` → true.
fn bool_or_true<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
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
            Ok(true)
        }
    }
    d.deserialize_any(V)
}

/// An optional boolean: `null` → None.
fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<bool>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("`true` or `false`")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// A non-negative whole number up to `max`; `null` → None.
struct UintVisitor {
    expecting: &'static str,
    max: u64,
}

impl Visitor<'_> for UintVisitor {
    type Value = Option<u64>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        if v > self.max {
            return Err(E::invalid_value(Unexpected::Unsigned(v), &self));
        }
        Ok(Some(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &self)),
        }
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// `hub.namedServerLimitPerUser` / `named_server_limit_per_user`.
fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let v = d.deserialize_any(UintVisitor {
        expecting: "a whole number (0 or more; 0 means no limit) or `null`",
        max: u64::from(u32::MAX),
    })?;
    // The visitor refuses anything above u32::MAX.
    Ok(v.map(|v| u32::try_from(v).unwrap_or(u32::MAX)))
}

fn seconds_or<'de, D: Deserializer<'de>>(d: D, default: u64) -> Result<u64, D::Error> {
    Ok(d.deserialize_any(UintVisitor {
        expecting: "a whole number of seconds, such as `3600`",
        max: u64::MAX,
    })?
    .unwrap_or(default))
}

fn cull_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    seconds_or(d, DEFAULT_CULL_TIMEOUT_SECS)
}

fn cull_every<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    seconds_or(d, DEFAULT_CULL_EVERY_SECS)
}

fn cull_max_age<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    seconds_or(d, 0)
}

fn cull_concurrency<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = d.deserialize_any(UintVisitor {
        expecting: "a whole number, such as `10`",
        max: u64::from(u32::MAX),
    })?;
    Ok(v.map_or(DEFAULT_CULL_CONCURRENCY, |v| {
        u32::try_from(v).unwrap_or(u32::MAX)
    }))
}

/// A mapping from names (strings) to entries; `null` → empty, and a `null` entry is the
/// entry's default (`my-service:` with nothing below it).
fn named_map<'de, D, T>(d: D) -> Result<BTreeMap<String, T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    struct V<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for V<T> {
        type Value = BTreeMap<String, T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping of names to settings, such as `{my-name: {...}}`")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key_seed(TextSeed)? {
                let value: Option<T> = map.next_value()?;
                out.insert(key, value.unwrap_or_default());
            }
            Ok(out)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
    }
    d.deserialize_any(V(std::marker::PhantomData))
}

/// A scalar environment value, written as YAML shows it; `null` is refused.
struct EnvScalar;

impl Visitor<'_> for EnvScalar {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a literal value (string, number or boolean)")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Err(E::custom(
            "the variable has no value; write `\"\"` for an empty value",
        ))
    }
}

struct EnvScalarSeed;

impl<'de> DeserializeSeed<'de> for EnvScalarSeed {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(EnvScalar)
    }
}

/// `hub.services.<name>.environment`: a mapping NAME → scalar value; `null` → empty.
fn env_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping of variable names to values, such as `{MY_VAR: value}`")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key_seed(EnvName)? {
                let value = map.next_value_seed(EnvScalarSeed)?;
                out.insert(key, value);
            }
            Ok(out)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
    }
    d.deserialize_any(V)
}

/// `oauth_redirect_uri`: an absolute http(s) URL or an absolute path; `null` → None.
fn redirect_uri<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an http(s) URL such as `https://service.example.org/oauth_callback`, or a path such as `/services/my-service/oauth_callback`")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            if v.starts_with('/') && !v.starts_with("//") {
                if v.contains('#') {
                    return Err(E::custom(format!("`{v}` must not have a `#fragment`")));
                }
                return Ok(Some(v.to_owned()));
            }
            let url = url::Url::parse(v).map_err(|e| {
                E::custom(format!(
                    "`{v}` is neither a URL ({e}) nor a path starting with `/`; expected something like `https://service.example.org/oauth_callback`"
                ))
            })?;
            if url.scheme() != "http" && url.scheme() != "https" {
                return Err(E::custom(format!(
                    "`{v}` must start with `http://` or `https://`"
                )));
            }
            if url.host_str().is_none_or(str::is_empty) {
                return Err(E::custom(format!("`{v}` has no host name")));
            }
            if url.fragment().is_some() {
                return Err(E::custom(format!("`{v}` must not have a `#fragment`")));
            }
            Ok(Some(v.to_owned()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
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

/// A command: a string (one argument) or a non-empty list of strings; `null` → None.
struct CommandVisitor {
    expecting: &'static str,
    /// What removing the key does, for the "empty" messages.
    if_removed: &'static str,
}

impl<'de> Visitor<'de> for CommandVisitor {
    type Value = Option<Vec<String>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if v.trim().is_empty() {
            return Err(E::custom(format!(
                "the command is empty; {}",
                self.if_removed
            )));
        }
        Ok(Some(vec![v.to_owned()]))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(s) = seq.next_element_seed(TextSeed)? {
            out.push(s);
        }
        match out.first() {
            None => Err(de::Error::custom(format!(
                "the command list is empty; {}",
                self.if_removed
            ))),
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

/// `singleuser.cmd`.
fn command<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    d.deserialize_any(CommandVisitor {
        expecting: "a command: a string such as `jupyterhub-singleuser`, or a list of strings such as `[jupyterhub-singleuser, --debug]`",
        if_removed: "remove `cmd` to run `jupyterhub-singleuser`",
    })
}

/// `hub.services.<name>.command`.
fn service_command<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    d.deserialize_any(CommandVisitor {
        expecting: "a command: a string such as `my-service`, or a list of strings such as `[python3, -m, my_service]`",
        if_removed: "remove `command` for a service the hub does not start",
    })
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
/// Kubernetes: refused, except in `hub.extraEnv` (where the variable is reported and not set).
struct EnvValue {
    name: Option<String>,
    /// `None` for a `valueFrom` variable.
    value: Option<String>,
}

const VALUE_FROM_MESSAGE: &str = "`valueFrom` reads from Kubernetes (secrets, config maps, pod fields), and hubfleet runs without Kubernetes; give the variable a literal `value` instead";

struct RejectValueFrom;

impl<'de> DeserializeSeed<'de> for RejectValueFrom {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, _d: D) -> Result<(), D::Error> {
        Err(de::Error::custom(VALUE_FROM_MESSAGE))
    }
}

/// Reads an [`EnvValue`]; `value_from` says whether `valueFrom` is accepted.
struct EnvValueVisitor {
    value_from: bool,
}

impl<'de> Visitor<'de> for EnvValueVisitor {
    type Value = EnvValue;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a literal value (string, number or boolean) or a mapping with `value`")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvValue, E> {
        Ok(EnvValue {
            name: None,
            value: Some(v.to_owned()),
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
        const FIELDS: &[&str] = &["name", "value", "valueFrom"];
        let mut name = None;
        let mut value = None;
        let mut from_kubernetes = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "name" => name = Some(map.next_value_seed(EnvName)?),
                "value" => {
                    value = map
                        .next_value_seed(EnvValueSeed { value_from: false })?
                        .value
                }
                "valueFrom" if self.value_from => {
                    map.next_value::<de::IgnoredAny>()?;
                    from_kubernetes = true;
                }
                "valueFrom" => map.next_value_seed(RejectValueFrom)?,
                other => return Err(de::Error::unknown_field(other, &FIELDS[..2])),
            }
        }
        if value.is_none() && !from_kubernetes {
            return Err(de::Error::custom(
                "the variable has no `value`; give it a literal `value`",
            ));
        }
        Ok(EnvValue { name, value })
    }
}

struct EnvValueSeed {
    value_from: bool,
}

impl<'de> DeserializeSeed<'de> for EnvValueSeed {
    type Value = EnvValue;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<EnvValue, D::Error> {
        d.deserialize_any(EnvValueVisitor {
            value_from: self.value_from,
        })
    }
}

/// Environment variables in z2jh's forms: a mapping NAME → value, or a list of `{name, value}`.
/// Returns the literal variables and the names given with `valueFrom` (when accepted).
struct EnvVars {
    value_from: bool,
}

impl<'de> Visitor<'de> for EnvVars {
    type Value = (BTreeMap<String, String>, Vec<String>);
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping of variable names to values, such as `{MY_VAR: value}`")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = (BTreeMap::new(), Vec::new());
        while let Some(key) = map.next_key_seed(EnvName)? {
            let v = map.next_value_seed(EnvValueSeed {
                value_from: self.value_from,
            })?;
            // z2jh: an explicit `name` takes precedence over the key.
            let name = v.name.unwrap_or(key);
            match v.value {
                Some(value) => {
                    out.0.insert(name, value);
                }
                None => out.1.push(name),
            }
        }
        Ok(out)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = (BTreeMap::new(), Vec::new());
        while let Some(v) = seq.next_element_seed(EnvValueSeed {
            value_from: self.value_from,
        })? {
            let name = v.name.ok_or_else(|| {
                de::Error::custom("each entry of the list form needs a `name` and a `value`")
            })?;
            match v.value {
                Some(value) => {
                    out.0.insert(name, value);
                }
                None => out.1.push(name),
            }
        }
        Ok(out)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok((BTreeMap::new(), Vec::new()))
    }
}

/// `hub.extraEnv`: as `singleuser.extraEnv`, and `valueFrom` variables are kept aside (they
/// are reported, not set).
fn hub_extra_env<'de, D: Deserializer<'de>>(d: D) -> Result<HubEnv, D::Error> {
    let (vars, from_kubernetes) = d.deserialize_any(EnvVars { value_from: true })?;
    Ok(HubEnv {
        vars,
        from_kubernetes,
    })
}

/// `singleuser.extraEnv`: a mapping NAME → value, or z2jh's list of `{name, value}`.
fn extra_env<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(d.deserialize_any(EnvVars { value_from: false })?.0)
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

/// Check that `s` is `scheme://host[:port]` with a host name (users' hosts go under it).
pub(crate) fn check_subdomain_host(s: &str) -> Result<(), String> {
    if !s.contains("://") {
        return Err(format!(
            "`{s}` has no scheme; write `https://{s}` (or `http://{s}` for a hub on this machine)"
        ));
    }
    check_public_url(s)?;
    let url = url::Url::parse(s).map_err(|e| e.to_string())?;
    if url.path() != "/" {
        return Err(format!(
            "`{s}` must not have a path: users' servers are at `<user>.<host>/user/<user>/`"
        ));
    }
    if matches!(url.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_))) {
        return Err(format!(
            "`{s}` is an IP address, which has no subdomains; use a host name such as `http://localhost:{}`",
            url.port().unwrap_or(8000)
        ));
    }
    Ok(())
}

fn subdomain_host<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    checked_url(d, check_subdomain_host)
}

fn public_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    checked_url(d, check_public_url)
}

/// An optional URL (`null`: unset) that `check` accepts.
fn checked_url<'de, D: Deserializer<'de>>(
    d: D,
    check: fn(&str) -> Result<(), String>,
) -> Result<Option<String>, D::Error> {
    struct V(fn(&str) -> Result<(), String>);
    impl Visitor<'_> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an http(s) URL such as `https://hub.example.org`")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            (self.0)(v).map_err(E::custom)?;
            Ok(Some(v.to_owned()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V(check))
}
