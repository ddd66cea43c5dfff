//! `hub.cookieSecret`: the key of the hub's signed values, as upstream's `cookie_secret`.
//!
//! Login sessions here are random values kept hashed in the database, not signed cookies; what
//! the hub signs is XSRF tokens. So the secret keys the XSRF HMAC (through its own derived key),
//! and the hub keeps a fingerprint of it: when the secret changes (set, replaced or removed),
//! every login session ends at start, with the OAuth tokens issued under them, so everyone logs
//! in again, as rotating upstream's cookie secret does. Without it, XSRF tokens are keyed by the
//! database's own secret `xsrf`.

use hmac::Mac;
use sha2::Digest;

use crate::identity::XsrfKey;
use crate::{HubError, Settings};

/// The XSRF key for this start, ending every login session first if `hub.cookieSecret`
/// changed since the last start.
pub(crate) async fn xsrf_key(
    settings: &Settings,
    store: &hubfleet_store::Store,
) -> Result<XsrfKey, HubError> {
    let fingerprint = settings
        .cookie_secret
        .as_ref()
        .map(|secret| fingerprint(secret.expose()))
        .unwrap_or_default();
    // A first start (nothing recorded, nobody logged in) ends nothing and says nothing.
    if let Some(ended @ 1..) = store.record_cookie_secret(&fingerprint).await? {
        tracing::warn!(
            sessions = ended,
            "hub.cookieSecret changed since the last start: every login session has ended, everyone logs in again"
        );
    }
    Ok(match &settings.cookie_secret {
        Some(secret) => XsrfKey::new(derive(secret.expose(), b"xsrf")),
        None => XsrfKey::new(store.hub_secret("xsrf").await?),
    })
}

/// What the database keeps to notice a change: a hash of the secret, never the secret.
fn fingerprint(secret: &[u8]) -> String {
    let mut hash = sha2::Sha256::new();
    hash.update(b"hubfleet hub.cookieSecret fingerprint\0");
    hash.update(secret);
    hex::encode(hash.finalize())
}

/// A key for one purpose, so that the secret itself signs nothing.
fn derive(secret: &[u8], purpose: &[u8]) -> Vec<u8> {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(purpose);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_and_keys_differ_from_the_secret_and_from_each_other() {
        let secret = [7u8; 32];
        let print = fingerprint(&secret);
        assert_eq!(print.len(), 64);
        assert_ne!(print, hex::encode(secret));
        assert_ne!(print, fingerprint(&[8u8; 32]));
        let key = derive(&secret, b"xsrf");
        assert_ne!(key, secret.to_vec());
        assert_ne!(key, derive(&secret, b"other"));
    }
}
