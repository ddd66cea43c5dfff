//! Error and warning types of the configuration loader.

use std::fmt;
use std::path::PathBuf;

/// Why a configuration could not be loaded.
///
/// Every problem found in the file itself is reported as [`ConfigError::Invalid`], which names the
/// file, the 1-based line and column of the offending key (or value), and a message that starts
/// with the full dotted key path where there is one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The path that was given.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file was read but is not a valid hubfleet configuration: malformed YAML, an unknown
    /// key, a value of the wrong type, or a value that fails validation.
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        /// The file name as given (or the `source_name` passed to `from_yaml_str`).
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// Full dotted key path of the offending key (`hub.db.url`, `hub.config.Authenticator.admin_users[1]`),
        /// when the problem is tied to a key; `None` for YAML syntax errors.
        key: Option<String>,
        /// Human-readable explanation (already includes the key path when there is one).
        message: String,
    },
}

impl ConfigError {
    /// The 1-based line of the problem, if the error points into the file.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Invalid { line, .. } => Some(*line),
        }
    }

    /// The dotted key path the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Invalid { key, .. } => key.as_deref(),
        }
    }
}

/// Something in the file that was accepted but deserves the operator's attention, such as a z2jh
/// key that hubfleet ignores on purpose. Each warning is also emitted with `tracing::warn!` when
/// the configuration is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The file name as given.
    pub file: String,
    /// 1-based line of the key.
    pub line: usize,
    /// 1-based column of the key.
    pub column: usize,
    /// Full dotted key path.
    pub key: String,
    /// Explanation.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.key, self.message
        )
    }
}
