//! Locating the shared reference material (z2jh chart, 2i2c values files) from tests.
//!
//! Tests of any crate in the workspace can use [`shared_dir`] or [`fixture`] to find the
//! read-only reference files. The location is `$HUBFLEET_SHARED_DIR` when that variable is set
//! and non-empty, else `<workspace>/../shared` (the `shared/` folder beside the checkout).
//! When it is missing the functions return an error message meant to be shown as a test
//! failure, never a silent skip.

use std::path::{Component, Path, PathBuf};

/// Environment variable that overrides the shared directory.
pub const SHARED_DIR_ENV: &str = "HUBFLEET_SHARED_DIR";

/// `<workspace>/../shared`, computed from this crate's manifest directory.
pub fn default_shared_dir() -> PathBuf {
    // crates/hubfleet-config -> workspace root -> its parent.
    normalize(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

/// The shared reference directory, if it exists.
///
/// Error message: `fixtures not found at <path>: put the shared reference material there or set
/// HUBFLEET_SHARED_DIR`.
pub fn shared_dir() -> Result<PathBuf, String> {
    let path = match std::env::var_os(SHARED_DIR_ENV) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => default_shared_dir(),
    };
    if path.is_dir() {
        Ok(path)
    } else {
        Err(not_found(&path))
    }
}

/// A path under `<shared>/fixtures/`, which must exist (file or directory); e.g.
/// `fixture("zero-to-jupyterhub/jupyterhub/values.yaml")`.
pub fn fixture(relative: &str) -> Result<PathBuf, String> {
    let path = shared_dir()?.join("fixtures").join(relative);
    if path.exists() {
        Ok(path)
    } else {
        Err(not_found(&path))
    }
}

fn not_found(path: &Path) -> String {
    format!(
        "fixtures not found at {}: put the shared reference material there or set {SHARED_DIR_ENV}",
        path.display()
    )
}

/// Remove `.` and resolve `..` lexically (no file-system access).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
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
    fn default_is_beside_the_workspace() {
        let dir = default_shared_dir();
        assert_eq!(dir.file_name().and_then(|s| s.to_str()), Some("shared"));
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .and_then(Path::parent)
            .unwrap();
        assert_eq!(Some(dir.parent().unwrap()), workspace.parent());
    }

    #[test]
    fn message_names_path_and_variable() {
        let msg = not_found(Path::new("/nowhere/shared"));
        assert_eq!(
            msg,
            "fixtures not found at /nowhere/shared: put the shared reference material there or set HUBFLEET_SHARED_DIR"
        );
    }
}
