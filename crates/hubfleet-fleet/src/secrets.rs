//! The age identities this machine has, as sops finds them: `SOPS_AGE_KEY` (the keys' text),
//! `SOPS_AGE_KEY_FILE`, else `~/.config/sops/age/keys.txt`.

use std::path::PathBuf;

use serde_yaml_ng::Value;

use crate::sops;

/// The age identities that can open sops files here.
#[derive(Default)]
pub struct Keyring {
    /// The identities (`AGE-SECRET-KEY-1…`).
    pub identities: Vec<age::x25519::Identity>,
    /// Where they were read from, for messages.
    pub sources: Vec<String>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("identities", &self.identities.len())
            .field("sources", &self.sources)
            .finish()
    }
}

impl Keyring {
    /// The identities in `text` (lines `AGE-SECRET-KEY-1…`; `#` comments skipped).
    pub fn parse(text: &str) -> Vec<age::x25519::Identity> {
        text.lines()
            .map(str::trim)
            .filter(|l| l.starts_with("AGE-SECRET-KEY-"))
            .filter_map(|l| l.parse().ok())
            .collect()
    }

    /// The identities of the environment, as sops finds them.
    pub fn from_env() -> Keyring {
        let mut ring = Keyring::default();
        if let Ok(text) = std::env::var("SOPS_AGE_KEY") {
            ring.identities.extend(Keyring::parse(&text));
            ring.sources.push("$SOPS_AGE_KEY".into());
        }
        let file = std::env::var_os("SOPS_AGE_KEY_FILE")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/sops/age/keys.txt"))
            });
        if let Some(file) = file {
            if let Ok(text) = std::fs::read_to_string(&file) {
                ring.identities.extend(Keyring::parse(&text));
                ring.sources.push(file.display().to_string());
            }
        }
        ring
    }

    /// Decrypt a sops document (YAML or JSON text); the error says why not, in words.
    pub fn decrypt_doc(&self, label: &str, text: &str) -> Result<Value, String> {
        let doc = hubfleet_config::values::parse_yaml(label, text).map_err(|e| e.to_string())?;
        let Some(recipients) = sops::recipients(&doc) else {
            return Err("it is not a sops file".into());
        };
        if recipients.age.is_empty() {
            return Err("hubfleet decrypts the age backend only".into());
        }
        if self.identities.is_empty() {
            return Err("no age identity: set SOPS_AGE_KEY_FILE to a file of age keys".into());
        }
        sops::decrypt(label, text, &self.identities).map_err(|e| e.to_string())
    }
}
