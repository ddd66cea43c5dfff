//! What a check of the fleet found: problems, and things the operator is told about.

use std::fmt;

/// What kind of finding this is. Only [`Kind::Error`] fails `validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Something is wrong: the fleet cannot be deployed as it is.
    Error,
    /// An encrypted file that could not be decrypted here (its keys were still checked).
    Encrypted,
    /// A key that only a Kubernetes add-on can honour on the local target.
    KubernetesAddOn,
    /// Keys that belong to the cluster's support chart (monitoring, ingress), not to a hub.
    SupportChart,
    /// A z2jh setting hubfleet's hub refuses on its own (not supported yet, or done another
    /// way): the fleet leaves it out of the hub's config when it deploys, and says so.
    Unsupported,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Error => "error",
            Kind::Encrypted => "encrypted",
            Kind::KubernetesAddOn => "needs kubernetes add-on",
            Kind::SupportChart => "support chart",
            Kind::Unsupported => "left out",
        })
    }
}

/// One finding, located in a file of the repository.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// What it is.
    pub kind: Kind,
    /// The file, relative to the repository's root.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The full dotted key path in the file (`jupyterhub.hub.config.JupyterHub.admin_users`),
    /// when the finding is about a key.
    pub key: Option<String>,
    /// What is wrong and how to fix it (it does not repeat the key).
    pub message: String,
    /// The cluster it was found for.
    pub cluster: Option<String>,
    /// The hub it was found for (`None` for the cluster's own files).
    pub hub: Option<String>,
}

impl Finding {
    /// An error at `file:line:column`.
    pub fn error(
        file: impl Into<String>,
        (line, column): (usize, usize),
        message: impl Into<String>,
    ) -> Finding {
        Finding {
            kind: Kind::Error,
            file: file.into(),
            line,
            column,
            key: None,
            message: message.into(),
            cluster: None,
            hub: None,
        }
    }

    /// The same finding about `key`.
    pub fn key(mut self, key: impl Into<String>) -> Finding {
        let key = key.into();
        self.key = (!key.is_empty()).then_some(key);
        self
    }

    /// The same finding, of another kind.
    pub fn kind(mut self, kind: Kind) -> Finding {
        self.kind = kind;
        self
    }

    /// The same finding, for `cluster` (and `hub`).
    pub fn at(mut self, cluster: &str, hub: Option<&str>) -> Finding {
        self.cluster = Some(cluster.to_owned());
        self.hub = hub.map(str::to_owned);
        self
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: ",
            self.file, self.line, self.column, self.kind
        )?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)?;
        match (&self.cluster, &self.hub) {
            (Some(c), Some(h)) => write!(f, " [hub {c}/{h}]"),
            _ => Ok(()),
        }
    }
}
