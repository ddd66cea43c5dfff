//! hubfleet-config: the hub's configuration, read from YAML files in the format of a
//! [Zero to JupyterHub](https://z2jh.jupyter.org) (z2jh) Helm values file, layered as Helm
//! layers them ([`HubConfig::check`], [`HubConfig::from_paths`]).
//!
//! ```
//! use hubfleet_config::{AuthenticatorKind, HubConfig};
//!
//! let config = HubConfig::from_yaml_str(
//!     "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n",
//!     "inline.yaml",
//! )
//! .unwrap();
//! assert_eq!(config.hub.config.jupyterhub.authenticator_class, AuthenticatorKind::Dummy);
//! assert_eq!(config.singleuser.start_timeout.as_secs(), 300);
//! ```
//!
//! Loading is strict: an unknown key anywhere is an error naming the file, line, column and
//! full dotted key path (with a suggestion when the key looks like a typo), except for the z2jh
//! keys that hubfleet ignores on purpose ([`IGNORED_KEYS`], a warning each) or refuses with a
//! reason and the key to use instead ([`unsupported_keys`]). Every problem is found in one pass
//! ([`ConfigReport`]). See `docs/configuration.md` for the reference of every key.
//!
//! # Path resolution
//!
//! Relative paths in the file (`hubfleet.data_dir`, `hubfleet.local.python_env`, and the file
//! of a `sqlite:` `hub.db.url`) are resolved against the directory that contains the config
//! file when it was loaded with [`HubConfig::from_path`], and against the process's current
//! directory (at the time the accessor is called) when it came from
//! [`HubConfig::from_yaml_str`] or a constructor. Absolute paths are used as they are. `~` is
//! not expanded. The accessors ([`HubConfig::data_dir`], [`HubConfig::python_env`],
//! [`HubConfig::database_url`], [`HubConfig::sqlite_path`]) apply this rule; the raw fields
//! keep what the file said.

#![forbid(unsafe_code)]

use std::path::{Component, Path, PathBuf};

pub mod auth;
pub mod binder;
pub mod dask;
pub mod editable;
mod error;
pub mod fixtures;
pub mod https;
mod ignored;
mod load;
pub(crate) mod locate;
mod model;
pub mod pages;
pub mod profiles;
pub mod reload;
pub mod suggest;
mod validate;
pub mod values;

pub use auth::{AuthSettings, OAuthProvider, OAuthSettings, Secret};
pub use error::{ConfigError, ConfigWarning};
pub use https::{CertificateSource, HttpsMode, HttpsSettings};
pub use ignored::{unsupported_keys, IgnoredKey, UnsupportedKey, IGNORED_KEYS};
pub use locate::{KeyPositions, KeySeg};
pub use model::COOKIE_SECRET_MIN_BYTES;
pub use model::{
    ApiRateLimit, AuthenticatorConfig, AuthenticatorKind, BaseUrl, CookieSecret, Cull, CullerKind,
    Db, DbType, DummyAuthenticatorConfig, EnvironmentsConfig, GroupConfig, Hub, HubEnv,
    HubTraitletConfig, Hubfleet, JupyterHubConfig, KubernetesConfig, LocalSpawnerConfig,
    NativeAuthenticatorConfig, RoleConfig, ServiceConfig, SharedPasswordAuthenticatorConfig,
    Singleuser, SpawnerKind, DEFAULT_CULL_CONCURRENCY, DEFAULT_CULL_EVERY_SECS,
    DEFAULT_CULL_TIMEOUT_SECS, DEFAULT_DATA_DIR, DEFAULT_LISTEN, DEFAULT_SINGLEUSER_CMD,
    DEFAULT_START_TIMEOUT_SECS, SQLITE_FILE_NAME,
};
pub use model::{DEFAULT_API_RATE_BURST, DEFAULT_API_RATE_PER_SECOND};

/// Default of `hub.concurrentSpawnLimit`, as in z2jh's values.yaml.
pub const DEFAULT_CONCURRENT_SPAWN_LIMIT: u32 = 64;

/// Variables of the hub's environment that hubfleet itself reads (`hub.extraEnv` first, then
/// the process's environment): see [`HubConfig::hub_env`].
pub const HUB_ENV_READ: &[&str] = &["JUPYTERHUB_CRYPT_KEY"];

/// Variables of the hub's environment passed on to users' servers and managed services: upstream
/// LocalProcessSpawner's `env_keep` (services get the same, as upstream's service spawner is a
/// LocalProcessSpawner). A value in `hub.extraEnv` is passed on instead of the process's.
pub const HUB_ENV_KEPT: &[&str] = &[
    "CONDA_DEFAULT_ENV",
    "CONDA_ROOT",
    "JUPYTERHUB_SINGLEUSER_APP",
    "LANG",
    "LC_ALL",
    "LD_LIBRARY_PATH",
    "PATH",
    "PYTHONPATH",
    "VIRTUAL_ENV",
];

/// The whole hub configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HubConfig {
    /// `hub:`.
    pub hub: Hub,
    /// `singleuser:`.
    pub singleuser: Singleuser,
    /// `cull:` (z2jh's idle-culler settings).
    pub cull: Cull,
    /// `hubfleet:` (our own section).
    pub hubfleet: Hubfleet,
    /// `custom:` (z2jh's free-form section; 2i2c's `custom.homepage` is read).
    pub custom: pages::Custom,
    /// `proxy:` (z2jh's; `proxy.https` is read).
    pub proxy: https::Proxy,
    /// `dask-gateway:` (daskhub's; see [`dask`]).
    pub dask_gateway: dask::DaskGateway,
    /// `binderhub-service:` (a Binder-style hub; `binder.rs`).
    pub binderhub_service: binder::BinderhubService,
    /// The config file this was loaded from (absolute), or `None` when it came from a string
    /// or a constructor. Relative paths are resolved against its directory.
    pub source: Option<PathBuf>,
    /// The merged document the configuration was read from (the files layered, before any
    /// default), for what reads z2jh keys itself: the Kubernetes pod builder (`hubfleet-kube`).
    pub values: values::Values,
    /// Things accepted but worth telling the operator (ignored z2jh keys, settings of an
    /// authenticator that is not selected). Already logged with `tracing::warn!` when loading.
    pub warnings: Vec<ConfigWarning>,
}

/// One config file to load: its label (the path as given, used in every finding), its text,
/// and its path when it came from a file (relative paths resolve against its directory).
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// How findings name the file.
    pub label: String,
    /// The YAML text.
    pub text: String,
    /// The file's absolute path, if it is a file.
    pub path: Option<PathBuf>,
    /// The key path of the subtree that holds the hub's values (`["jupyterhub"]` for 2i2c's
    /// basehub files, `["basehub", "jupyterhub"]` for daskhub), empty for the whole file.
    /// Findings keep their line in the file; their key paths are within the subtree.
    pub under: Vec<String>,
}

impl ConfigSource {
    /// Read the file at `path`; findings name it as given.
    pub fn read(path: &Path) -> Result<ConfigSource, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(ConfigSource {
            label: path.display().to_string(),
            text,
            path: Some(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())),
            under: Vec::new(),
        })
    }

    /// YAML text that is not a file (relative paths resolve against the current directory).
    pub fn text(label: &str, text: &str) -> ConfigSource {
        ConfigSource {
            label: label.to_owned(),
            text: text.to_owned(),
            path: None,
            under: Vec::new(),
        }
    }

    /// Read only the subtree at the dotted `key` of this file (`jupyterhub`,
    /// `basehub.jupyterhub`); `.` or an empty key for the whole file.
    pub fn under(mut self, key: &str) -> ConfigSource {
        self.under = key
            .split('.')
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
        self
    }
}

/// Everything a check of the configuration found.
#[derive(Debug)]
pub struct ConfigReport {
    /// The configuration, when there are no errors.
    pub config: Option<HubConfig>,
    /// Problems that stop the hub, in file order (as layered), then line and column.
    pub errors: Vec<ConfigError>,
    /// Things accepted but worth telling the operator, in the same order.
    pub warnings: Vec<ConfigWarning>,
}

impl ConfigReport {
    /// Log every warning with `tracing::warn!`.
    pub fn log_warnings(&self) {
        for w in &self.warnings {
            tracing::warn!(
                file = %w.file,
                line = w.line,
                key = %w.key,
                "{}",
                w.message
            );
        }
    }

    /// The configuration (its warnings logged), or the first error.
    pub fn into_result(self) -> Result<HubConfig, ConfigError> {
        self.log_warnings();
        match (self.config, self.errors.into_iter().next()) {
            (_, Some(error)) => Err(error),
            (Some(config), None) => Ok(config),
            (None, None) => Err(ConfigError::Invalid {
                file: String::new(),
                line: 1,
                column: 1,
                key: None,
                message: "the configuration could not be read".into(),
            }),
        }
    }
}

impl HubConfig {
    /// Read, parse and validate the config file at `path`. Errors are labelled with `path` as
    /// given; the first one is returned (see [`HubConfig::check_paths`] for all of them).
    pub fn from_path(path: &Path) -> Result<HubConfig, ConfigError> {
        HubConfig::from_paths(&[path.to_path_buf()])
    }

    /// Layer the config files at `paths` as Helm layers values files (mappings merge, lists are
    /// replaced, later files win, `null` deletes a key), then parse and validate. The first error
    /// is returned; warnings are logged.
    pub fn from_paths(paths: &[PathBuf]) -> Result<HubConfig, ConfigError> {
        HubConfig::check_paths(paths).into_result()
    }

    /// Parse and validate YAML text. `source_name` labels errors (e.g. `"<stdin>"`); relative
    /// paths resolve against the current directory.
    pub fn from_yaml_str(yaml: &str, source_name: &str) -> Result<HubConfig, ConfigError> {
        HubConfig::check(vec![ConfigSource::text(source_name, yaml)]).into_result()
    }

    /// Every problem of the config files at `paths` (layered as in [`HubConfig::from_paths`]),
    /// in one pass. Files that cannot be read are errors of the report. Nothing is logged.
    pub fn check_paths(paths: &[PathBuf]) -> ConfigReport {
        let mut sources = Vec::new();
        let mut errors = Vec::new();
        for path in paths {
            match ConfigSource::read(path) {
                Ok(source) => sources.push(source),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return ConfigReport {
                config: None,
                errors,
                warnings: Vec::new(),
            };
        }
        HubConfig::check(sources)
    }

    /// Every problem of `sources` (layered in order, later ones win), in one pass. Nothing is
    /// logged.
    pub fn check(sources: Vec<ConfigSource>) -> ConfigReport {
        let loaded = load::load(sources);
        ConfigReport {
            config: loaded.config,
            errors: loaded.findings.errors,
            warnings: loaded.findings.warnings,
        }
    }

    /// A ready-to-run local demo: native authenticator with `admin` as the admin user,
    /// SQLite in `data_dir`, the local spawner, listening on `127.0.0.1:8000`.
    pub fn default_for_demo(data_dir: &Path) -> HubConfig {
        let mut config = HubConfig::default();
        config.hubfleet.data_dir = data_dir.to_path_buf();
        config.hub.config.authenticator.admin_users = vec!["admin".to_owned()];
        config
    }

    /// The directory relative paths are resolved against: the config file's directory, or the
    /// current directory.
    pub fn base_dir(&self) -> PathBuf {
        match self.source.as_deref().and_then(Path::parent) {
            Some(dir) if !dir.as_os_str().is_empty() => absolute(dir),
            _ => absolute(Path::new(".")),
        }
    }

    /// Resolve `path` by the rule in the crate documentation.
    pub fn resolve_path(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            normalize(path)
        } else {
            normalize(&self.base_dir().join(path))
        }
    }

    /// Whether users may have named servers: `hub.allowNamedServers`, else
    /// `hub.config.JupyterHub.allow_named_servers`, else false. (Loading refuses a file where
    /// both are set and differ.)
    pub fn allow_named_servers(&self) -> bool {
        self.hub
            .allow_named_servers
            .or(self.hub.config.jupyterhub.allow_named_servers)
            .unwrap_or(false)
    }

    /// The most named servers a user may have, 0 meaning no limit:
    /// `hub.namedServerLimitPerUser`, else `hub.config.JupyterHub.named_server_limit_per_user`,
    /// else 0. (Loading refuses a file where both are set and differ.)
    pub fn named_server_limit_per_user(&self) -> u32 {
        self.hub
            .named_server_limit_per_user
            .or(self.hub.config.jupyterhub.named_server_limit_per_user)
            .unwrap_or(0)
    }

    /// Whether logging in (and `/hub/`) sends people to their server rather than the home page:
    /// `hub.redirectToServer`, else `hub.config.JupyterHub.redirect_to_server`, else false
    /// (hubfleet's default; upstream's is true).
    pub fn redirect_to_server(&self) -> bool {
        self.hub
            .redirect_to_server
            .or(self.hub.config.jupyterhub.redirect_to_server)
            .unwrap_or(false)
    }

    /// Starts in progress at once before further ones are refused with 429 (0: no limit):
    /// `hub.concurrentSpawnLimit`, else `hub.config.JupyterHub.concurrent_spawn_limit`, else
    /// 64, z2jh's default (upstream JupyterHub's own is 100).
    pub fn concurrent_spawn_limit(&self) -> u32 {
        self.hub
            .concurrent_spawn_limit
            .or(self.hub.config.jupyterhub.concurrent_spawn_limit)
            .unwrap_or(DEFAULT_CONCURRENT_SPAWN_LIMIT)
    }

    /// Servers not stopped before starts are refused with 429 (0: no limit):
    /// `hub.activeServerLimit`, else `hub.config.JupyterHub.active_server_limit`, else 0.
    pub fn active_server_limit(&self) -> u32 {
        self.hub
            .active_server_limit
            .or(self.hub.config.jupyterhub.active_server_limit)
            .unwrap_or(0)
    }

    /// Whether logging out stops the user's running servers: `hub.shutdownOnLogout`, else
    /// `hub.config.JupyterHub.shutdown_on_logout`, else false (as upstream).
    pub fn shutdown_on_logout(&self) -> bool {
        self.hub
            .shutdown_on_logout
            .or(self.hub.config.jupyterhub.shutdown_on_logout)
            .unwrap_or(false)
    }

    /// Whether `/hub/metrics` needs a token with `read:metrics`: `hub.authenticatePrometheus`,
    /// else `hub.config.JupyterHub.authenticate_prometheus`, else true (as upstream).
    pub fn authenticate_prometheus(&self) -> bool {
        self.hub
            .authenticate_prometheus
            .or(self.hub.config.jupyterhub.authenticate_prometheus)
            .unwrap_or(true)
    }

    /// A variable of the hub's environment: `hub.extraEnv` (as z2jh sets it on the hub pod),
    /// else the process's environment.
    pub fn hub_env(&self, name: &str) -> Option<String> {
        self.hub
            .extra_env
            .vars
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
    }

    /// The variables of `hub.extraEnv` that are passed on to servers and services
    /// ([`HUB_ENV_KEPT`]).
    pub fn hub_env_kept(&self) -> std::collections::BTreeMap<String, String> {
        self.hub
            .extra_env
            .vars
            .iter()
            .filter(|(name, _)| HUB_ENV_KEPT.contains(&name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()
    }

    /// The effective, absolute data directory (`hubfleet.data_dir`, default `./hubfleet-data`).
    pub fn data_dir(&self) -> PathBuf {
        self.resolve_path(&self.hubfleet.data_dir)
    }

    /// The effective, absolute `hubfleet.local.python_env`, if set.
    pub fn python_env(&self) -> Option<PathBuf> {
        self.hubfleet
            .local
            .python_env
            .as_deref()
            .map(|p| self.resolve_path(p))
    }

    /// The SQLite database file for `hub.db.type: sqlite-pvc` (absolute): the file of
    /// `hub.db.url` if set, else `<data_dir>/hubfleet.sqlite`. `None` for other types.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        if self.hub.db.kind != DbType::SqlitePvc {
            return None;
        }
        match self.hub.db.url.as_deref() {
            None => Some(self.data_dir().join(SQLITE_FILE_NAME)),
            Some(url) => {
                let (file, _) = split_sqlite_url(url);
                if file == ":memory:" {
                    return None;
                }
                // sqlx percent-decodes the file part of the URL; so do we.
                let file = percent_encoding::percent_decode_str(file).decode_utf8_lossy();
                Some(self.resolve_path(Path::new(&*file)))
            }
        }
    }

    /// The database URL to hand to sqlx:
    /// - `sqlite-pvc`: `sqlite://<absolute file>?mode=rwc` (`mode=rwc` creates the file; kept as
    ///   given if the URL already sets a `mode`);
    /// - `sqlite-memory`: `sqlite::memory:`;
    /// - `postgres`: `hub.db.url`, with a SQLAlchemy driver suffix removed from the scheme
    ///   (`postgresql+psycopg2://` → `postgresql://`).
    pub fn database_url(&self) -> String {
        match self.hub.db.kind {
            DbType::SqliteMemory => "sqlite::memory:".to_owned(),
            DbType::Postgres => {
                let url = self.hub.db.url.as_deref().unwrap_or_default();
                match url.split_once("://") {
                    Some((scheme, rest)) => {
                        let scheme = scheme.split('+').next().unwrap_or(scheme);
                        format!("{scheme}://{rest}")
                    }
                    None => url.to_owned(),
                }
            }
            DbType::SqlitePvc => {
                let query = self
                    .hub
                    .db
                    .url
                    .as_deref()
                    .and_then(|u| split_sqlite_url(u).1)
                    .unwrap_or("");
                let Some(file) = self.sqlite_path() else {
                    return "sqlite::memory:".to_owned();
                };
                let has_mode = query.split('&').any(|kv| kv.starts_with("mode="));
                let query = match (query.is_empty(), has_mode) {
                    (true, _) => "mode=rwc".to_owned(),
                    (false, true) => query.to_owned(),
                    (false, false) => format!("{query}&mode=rwc"),
                };
                // `%`, `?` and `#` in the file name would otherwise be read as URL syntax.
                const FILE_ENCODE: &percent_encoding::AsciiSet =
                    &percent_encoding::CONTROLS.add(b'%').add(b'?').add(b'#');
                let file = file.to_string_lossy();
                let file = percent_encoding::utf8_percent_encode(&file, FILE_ENCODE);
                format!("sqlite://{file}?{query}")
            }
        }
    }
}

/// `sqlite://path?query` / `sqlite:path?query` → (path, query).
pub(crate) fn split_sqlite_url(url: &str) -> (&str, Option<&str>) {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    match rest.split_once('?') {
        Some((file, query)) => (file, Some(query)),
        None => (rest, None),
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Drop `.` components and resolve `..` lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    if !out.has_root() {
                        out.push("..");
                    }
                } else {
                    out.pop();
                }
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_lexically() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        assert_eq!(normalize(Path::new("/../a")), PathBuf::from("/a"));
        assert_eq!(normalize(Path::new("a/../../b")), PathBuf::from("../b"));
    }

    #[test]
    fn splits_sqlite_urls() {
        assert_eq!(split_sqlite_url("sqlite:///x/y.db"), ("/x/y.db", None));
        assert_eq!(
            split_sqlite_url("sqlite:y.db?mode=ro"),
            ("y.db", Some("mode=ro"))
        );
    }
}
