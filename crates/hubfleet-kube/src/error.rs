//! The one error type of the crate.

/// Why a pod could not be built.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// A value has the wrong shape. `key` is the values key (or KubeSpawner setting) it came from.
    #[error("{key}: {message}")]
    InvalidValue { key: String, message: String },
    /// The user's options do not fit the profile list (unknown profile or choice, an unlisted
    /// choice that is not enabled or does not match its pattern).
    #[error("{0}")]
    UserOptions(String),
    /// The hub's rules refuse this spawn (no profile left for the user's groups, a binder launch
    /// without its token).
    #[error("{0}")]
    Refused(String),
    /// A secret must be derived and there is no (usable) seed to derive it from.
    #[error("{0}")]
    SecretSeed(String),
}

impl KubeError {
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> KubeError {
        KubeError::InvalidValue {
            key: key.into(),
            message: message.into(),
        }
    }
}
