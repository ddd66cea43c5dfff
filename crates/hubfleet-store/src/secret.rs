//! Hashing of secrets kept at rest.
//!
//! Tokens and client secrets are stored as `sha256:<salt>:<digest>` and found by
//! their first four characters, then compared in constant time, as JupyterHub
//! does (with SHA-256 in place of its SHA-512 rounds: the secrets we hash are
//! random 128-bit values, for which one round is enough). Session cookies and
//! OAuth codes, which are looked up directly, are stored as a plain SHA-256.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Characters of a token kept in clear to narrow the lookup.
pub const PREFIX_LEN: usize = 4;

/// A new random secret: 32 lowercase hex characters, like JupyterHub's `new_token()`.
pub fn new_token() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub fn prefix(secret: &str) -> String {
    secret.chars().take(PREFIX_LEN).collect()
}

fn digest(salt: &str, secret: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    hasher.update(secret.as_bytes());
    hex::encode(hasher.finalize())
}

/// A salted hash for storage.
pub fn hash(secret: &str) -> String {
    let mut salt = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut salt);
    let salt = hex::encode(salt);
    format!("sha256:{salt}:{}", digest(&salt, secret))
}

/// Whether `secret` matches a stored [`hash`], in constant time.
pub fn verify(secret: &str, stored: &str) -> bool {
    let mut parts = stored.splitn(3, ':');
    let (Some("sha256"), Some(salt), Some(expected)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    digest(salt, secret)
        .as_bytes()
        .ct_eq(expected.as_bytes())
        .into()
}

/// An unsalted hash, for high-entropy secrets that are looked up by value.
pub fn lookup_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_only_the_same_secret() {
        let token = new_token();
        assert_eq!(token.len(), 32);
        let stored = hash(&token);
        assert!(!stored.contains(&token));
        assert!(verify(&token, &stored));
        assert!(!verify(&new_token(), &stored));
        assert!(!verify(&token, "plain"));
        // Salted: the same secret hashes differently each time.
        assert_ne!(hash(&token), stored);
    }
}
