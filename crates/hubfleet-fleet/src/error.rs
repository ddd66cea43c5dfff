//! Errors at the edge of the crate.

use std::path::PathBuf;

/// Why a fleet command could not do its work (problems in the repository's files are
/// [`crate::Finding`]s instead).
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// No `config/clusters/` in the directory or its parents.
    #[error("no fleet repository at {}: there is no config/clusters/ here or in a parent directory; run the command inside a checkout of the infrastructure repository, or pass --dir DIR", start.display())]
    NoRepo {
        /// Where the search started.
        start: PathBuf,
    },
    /// A file could not be read.
    #[error("{}: cannot read it: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("{}: cannot write it: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A cluster that is not in the repository.
    #[error("no cluster `{name}` under config/clusters/ (clusters: {known})")]
    UnknownCluster {
        /// The name asked for.
        name: String,
        /// The clusters there are.
        known: String,
    },
    /// A hub that is not in its cluster's `cluster.yaml`.
    #[error("no hub `{hub}` in {file} (hubs: {known})")]
    UnknownHub {
        /// The hub asked for.
        hub: String,
        /// The cluster.yaml.
        file: String,
        /// The hubs there are.
        known: String,
    },
    /// The files of a cluster or hub have problems.
    #[error("{}", findings.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The problems.
        findings: Vec<crate::Finding>,
    },
    /// A sops file could not be read, decrypted or encrypted.
    #[error(transparent)]
    Sops(#[from] crate::sops::SopsError),
    /// Something else, said in full.
    #[error("{0}")]
    Other(String),
}
