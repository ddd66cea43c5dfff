//! hubfleet-config: the hub's configuration, read from one YAML file in the format of a
//! [Zero to JupyterHub](https://z2jh.jupyter.org) (z2jh) Helm values file.
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
//! full dotted key path (with a suggestion when the key looks like a typo), except for the few
//! z2jh keys that hubfleet ignores on purpose, listed in [`IGNORED_KEYS`]. See
//! `docs/configuration.md` for the reference of every key.
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
mod error;
pub mod fixtures;
mod ignored;
mod load;
mod locate;
mod model;
pub mod pages;
pub mod profiles;
mod suggest;
mod validate;

pub use auth::{AuthSettings, OAuthProvider, OAuthSettings, Secret};
pub use error::{ConfigError, ConfigWarning};
pub use ignored::{IgnoredKey, IGNORED_KEYS};
pub use model::{
    AuthenticatorConfig, AuthenticatorKind, BaseUrl, Cull, CullerKind, Db, DbType,
    DummyAuthenticatorConfig, Hub, HubTraitletConfig, Hubfleet, JupyterHubConfig,
    LocalSpawnerConfig, NativeAuthenticatorConfig, RoleConfig, ServiceConfig,
    SharedPasswordAuthenticatorConfig, Singleuser, SpawnerKind, DEFAULT_CULL_CONCURRENCY,
    DEFAULT_CULL_EVERY_SECS, DEFAULT_CULL_TIMEOUT_SECS, DEFAULT_DATA_DIR, DEFAULT_LISTEN,
    DEFAULT_SINGLEUSER_CMD, DEFAULT_START_TIMEOUT_SECS, SQLITE_FILE_NAME,
};

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
    /// The config file this was loaded from (absolute), or `None` when it came from a string
    /// or a constructor. Relative paths are resolved against its directory.
    pub source: Option<PathBuf>,
    /// Things accepted but worth telling the operator (ignored z2jh keys, settings of an
    /// authenticator that is not selected). Already logged with `tracing::warn!` when loading.
    pub warnings: Vec<ConfigWarning>,
}

impl HubConfig {
    /// Read, parse and validate the config file at `path`. Errors are labelled with `path` as
    /// given.
    pub fn from_path(path: &Path) -> Result<HubConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        load::load(&text, &path.display().to_string(), Some(absolute))
    }

    /// Parse and validate YAML text. `source_name` labels errors (e.g. `"<stdin>"`); relative
    /// paths resolve against the current directory.
    pub fn from_yaml_str(yaml: &str, source_name: &str) -> Result<HubConfig, ConfigError> {
        load::load(yaml, source_name, None)
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
