//! `proxy.https.type: letsencrypt`: a certificate from an ACME server (RFC 8555) with the HTTP-01
//! challenge, through instant-acme.
//!
//! The account key and the certificate are kept in `<data_dir>/tls/` (directory 0700, files
//! 0600, written whole and renamed into place), so a restart reuses them, per ACME directory:
//! `acme-account-<host>-<hash>.json`, and `certificate-<host>-<hash>.pem` holding the private
//! key and the chain. A certificate is renewed when a third of its lifetime is left (30 days of
//! Let's Encrypt's 90, and proportionally for short-lived certificates), checked at that moment
//! and at least daily, with jitter; the renewed one is used by new connections at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use hubfleet_proxy::Tls;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rand::Rng;
use sha2::Digest;
use tokio::sync::watch;

use crate::https::{CertInfo, HttpsError};

/// Longest wait between two looks at the certificate.
const CHECK_AT_LEAST_EVERY: Duration = Duration::from_secs(86_400);
/// Retries after a failed renewal: from this, doubling, up to `RETRY_MAX`.
const RETRY_FIRST: Duration = Duration::from_secs(600);
const RETRY_MAX: Duration = Duration::from_secs(6 * 3600);
/// How long the ACME server may take to validate, then to issue.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(180);
const ISSUANCE_TIMEOUT: Duration = Duration::from_secs(120);

/// HTTP-01 tokens being validated → their key authorizations.
#[derive(Clone, Default)]
pub(crate) struct Challenges(Arc<RwLock<HashMap<String, String>>>);

impl Challenges {
    fn insert(&self, token: &str, key_authorization: &str) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.to_owned(), key_authorization.to_owned());
    }

    fn remove(&self, token: &str) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token);
    }

    fn get(&self, token: &str) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned()
    }
}

/// `GET /.well-known/acme-challenge/<token>` (RFC 8555 §8.3), for the redirect listener.
pub(crate) fn challenge_routes(challenges: Challenges) -> axum::Router {
    async fn answer(
        State(challenges): State<Challenges>,
        UrlPath(token): UrlPath<String>,
    ) -> axum::response::Response {
        match challenges.get(&token) {
            Some(key_authorization) => {
                tracing::info!(%token, "answered an ACME HTTP-01 challenge");
                (
                    [(header::CONTENT_TYPE, "application/octet-stream")],
                    key_authorization,
                )
                    .into_response()
            }
            None => (StatusCode::NOT_FOUND, "no such ACME challenge\n").into_response(),
        }
    }
    axum::Router::new()
        .route(
            "/.well-known/acme-challenge/{token}",
            axum::routing::get(answer),
        )
        .with_state(challenges)
}

/// Removes the challenges it holds when dropped, however issuance ended.
struct ServedTokens<'a> {
    challenges: &'a Challenges,
    tokens: Vec<String>,
}

impl Drop for ServedTokens<'_> {
    fn drop(&mut self) {
        for token in &self.tokens {
            self.challenges.remove(token);
        }
    }
}

/// The ACME side of `proxy.https.type: letsencrypt`.
pub(crate) struct Acme {
    pub directory: String,
    pub contact_email: String,
    /// The certificate's names (`proxy.https.hosts`).
    pub hosts: Vec<String>,
    /// `<data_dir>/tls`.
    pub dir: PathBuf,
    pub challenges: Challenges,
    /// `hubfleet.http_redirect_listen`, for error messages.
    pub redirect: String,
}

/// A certificate with its key: `pem` holds the key, then the chain.
#[derive(Clone)]
pub(crate) struct Issued {
    pub pem: String,
    pub info: CertInfo,
}

impl Acme {
    fn fail(&self, step: &'static str, e: impl std::fmt::Display) -> HttpsError {
        HttpsError::Acme {
            hosts: self.hosts.join(", "),
            directory: self.directory.clone(),
            step,
            detail: e.to_string(),
        }
    }

    /// `<host>[_<port>]-<hash>` of the directory URL: files of one ACME server, so that moving
    /// from Let's Encrypt's staging server to production (or back) keeps neither its account nor
    /// its certificate.
    fn directory_key(&self) -> String {
        let host = url::Url::parse(&self.directory)
            .ok()
            .and_then(|u| {
                u.host_str().map(|h| {
                    format!(
                        "{h}{}",
                        u.port().map(|p| format!("_{p}")).unwrap_or_default()
                    )
                })
            })
            .unwrap_or_else(|| "acme".to_owned());
        let hash = hex::encode(&sha2::Sha256::digest(self.directory.as_bytes())[..4]);
        format!("{host}-{hash}")
    }

    fn account_file(&self) -> PathBuf {
        self.dir
            .join(format!("acme-account-{}.json", self.directory_key()))
    }

    fn certificate_file(&self) -> PathBuf {
        self.dir
            .join(format!("certificate-{}.pem", self.directory_key()))
    }

    /// The certificate kept from an earlier run, if it is usable for `hosts`.
    fn stored(&self) -> Option<Issued> {
        let path = self.certificate_file();
        let pem = std::fs::read_to_string(&path).ok()?;
        let info = match CertInfo::of_pem(pem.as_bytes()) {
            Ok(info) => info,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "the kept certificate is unreadable; getting a new one");
                return None;
            }
        };
        if let Some(missing) = self.hosts.iter().find(|h| !info.covers(h)) {
            tracing::info!(host = %missing, "the kept certificate does not cover this host of proxy.https.hosts; getting a new one");
            return None;
        }
        if info.not_after <= SystemTime::now() {
            tracing::info!("the kept certificate has expired; getting a new one");
            return None;
        }
        Some(Issued { pem, info })
    }

    /// The account for this directory: kept from an earlier run, else created and kept.
    async fn account(&self) -> Result<Account, HttpsError> {
        let path = self.account_file();
        if let Ok(text) = std::fs::read_to_string(&path) {
            match serde_json::from_str::<AccountCredentials>(&text) {
                Ok(credentials) => {
                    return Account::builder()
                        .map_err(|e| self.fail("preparing the HTTPS client", e))?
                        .from_credentials(credentials)
                        .await
                        .map_err(|e| self.fail("reaching the ACME server", e));
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "the kept ACME account is unreadable; creating a new one")
                }
            }
        }
        let contact = format!("mailto:{}", self.contact_email);
        let (account, credentials) = Account::builder()
            .map_err(|e| self.fail("preparing the HTTPS client", e))?
            .create(
                &NewAccount {
                    contact: &[contact.as_str()],
                    // Configuring `letsencrypt` is agreeing to the ACME server's terms, as with
                    // z2jh (whose traefik does the same).
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.directory.clone(),
                None,
            )
            .await
            .map_err(|e| self.fail("creating the ACME account", e))?;
        let json = serde_json::to_vec_pretty(&credentials)
            .map_err(|e| self.fail("keeping the ACME account", e))?;
        write_private(&self.dir, &path, &json)?;
        tracing::info!(file = %path.display(), directory = %self.directory, "created an ACME account");
        Ok(account)
    }

    /// Get a new certificate for `hosts` and keep it.
    pub async fn obtain(&self) -> Result<Issued, HttpsError> {
        tracing::info!(hosts = %self.hosts.join(", "), directory = %self.directory, "getting a certificate from the ACME server");
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = self
            .hosts
            .iter()
            .map(|h| Identifier::Dns(h.clone()))
            .collect();
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(|e| self.fail("creating an order", e))?;
        let mut served = ServedTokens {
            challenges: &self.challenges,
            tokens: Vec::new(),
        };
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization =
                authorization.map_err(|e| self.fail("reading an authorization", e))?;
            let host = authorization.identifier().to_string();
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(
                        self.fail("reading an authorization", format!("{host} is {other:?}"))
                    )
                }
            }
            let mut challenge =
                authorization
                    .challenge(ChallengeType::Http01)
                    .ok_or_else(|| {
                        self.fail(
                            "choosing a challenge",
                            format!("the server offers no HTTP-01 challenge for {host}"),
                        )
                    })?;
            let token = challenge.token.clone();
            self.challenges
                .insert(&token, challenge.key_authorization().as_str());
            served.tokens.push(token);
            challenge
                .set_ready()
                .await
                .map_err(|e| self.fail("starting the challenge", e))?;
        }
        let status = order
            .poll_ready(
                &RetryPolicy::new()
                    .initial_delay(Duration::from_millis(500))
                    .timeout(VALIDATION_TIMEOUT),
            )
            .await;
        if !matches!(status, Ok(OrderStatus::Ready)) {
            // Say which host failed and what the server said about it.
            let mut authorizations = order.authorizations();
            while let Some(Ok(mut authorization)) = authorizations.next().await {
                let host = authorization.identifier().to_string();
                if authorization.refresh().await.is_err() {
                    continue;
                }
                let said = authorization
                    .challenges
                    .iter()
                    .filter_map(|c| c.error.as_ref())
                    .map(problem_text)
                    .next();
                if let Some(said) = said {
                    return Err(HttpsError::Challenge {
                        host,
                        directory: self.directory.clone(),
                        said,
                        redirect: self.redirect.clone(),
                    });
                }
            }
            return Err(match status {
                Err(instant_acme::Error::Api(problem)) => {
                    self.fail("validating the hosts", problem_text(&problem))
                }
                Err(e) => self.fail("validating the hosts", e),
                Ok(other) => self.fail("validating the hosts", format!("the order is {other:?}")),
            });
        }
        drop(served);
        let key_pem = order
            .finalize()
            .await
            .map_err(|e| self.fail("finalizing the order", e))?;
        let chain_pem = order
            .poll_certificate(&RetryPolicy::new().timeout(ISSUANCE_TIMEOUT))
            .await
            .map_err(|e| self.fail("downloading the certificate", e))?;
        let pem = format!("{key_pem}\n{chain_pem}");
        let info = CertInfo::of_pem(pem.as_bytes())
            .map_err(|e| self.fail("reading the new certificate", e))?;
        write_private(&self.dir, &self.certificate_file(), pem.as_bytes())?;
        tracing::info!(
            names = %info.names.join(", "),
            expires = %chrono::DateTime::<chrono::Utc>::from(info.not_after).to_rfc3339(),
            "got a certificate from the ACME server"
        );
        Ok(Issued { pem, info })
    }
}

/// The ACME server's words: detail, type, and per-host subproblems.
fn problem_text(problem: &instant_acme::Problem) -> String {
    let mut out = problem.detail.clone().unwrap_or_default();
    if let Some(kind) = &problem.r#type {
        out.push_str(&format!(" ({kind})"));
    }
    for sub in &problem.subproblems {
        if let Some(detail) = &sub.detail {
            out.push_str(&format!("; {detail}"));
        }
    }
    out.trim().to_owned()
}

/// The certificate to start with: the kept one when it still covers `hosts` and has not
/// expired, else a new one now. Without one the hub does not start: a self-signed stand-in
/// would teach users to click through warnings, and the error says what to fix.
pub(crate) async fn initial(acme: &Acme) -> Result<(Tls, Issued), HttpsError> {
    let issued = match acme.stored() {
        Some(kept) => {
            tracing::info!(
                names = %kept.info.names.join(", "),
                expires = %chrono::DateTime::<chrono::Utc>::from(kept.info.not_after).to_rfc3339(),
                "using the certificate kept in the data directory"
            );
            kept
        }
        None => acme.obtain().await?,
    };
    let tls = Tls::from_pem(&issued.pem, &issued.pem, "from the ACME server")
        .and_then(Tls::with_http2)
        .map_err(|e| acme.fail("loading the certificate", e))?;
    Ok((tls, issued))
}

/// When a certificate should be renewed: when a third of its lifetime is left.
pub(crate) fn renewal_time(info: &CertInfo) -> SystemTime {
    let lifetime = info
        .not_after
        .duration_since(info.not_before)
        .unwrap_or_default();
    info.not_after - lifetime / 3
}

/// How long to wait before looking again: until the renewal time (at most a day), plus jitter
/// so that many hubs do not ask the ACME server at the same moment.
fn next_look(info: &CertInfo) -> Duration {
    let until = renewal_time(info)
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .min(CHECK_AT_LEAST_EVERY);
    let lifetime = info
        .not_after
        .duration_since(info.not_before)
        .unwrap_or_default();
    let spread = (lifetime / 30).min(Duration::from_secs(3600));
    let jitter = rand::thread_rng().gen_range(0..=spread.as_millis().max(1) as u64);
    until + Duration::from_millis(jitter)
}

/// Renew in the background, before expiry; new connections get the new certificate.
pub(crate) fn spawn_renewals(
    acme: Acme,
    tls: Tls,
    mut current: Issued,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut failures: u32 = 0;
        let mut wait = next_look(&current.info);
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                () = tokio::time::sleep(wait) => {}
            }
            if SystemTime::now() < renewal_time(&current.info) {
                wait = next_look(&current.info);
                continue;
            }
            match acme.obtain().await {
                Ok(issued) => match tls.replace_pem(&issued.pem, &issued.pem) {
                    Ok(()) => {
                        tracing::info!("renewed the certificate: new connections use it");
                        current = issued;
                        failures = 0;
                        wait = next_look(&current.info);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the renewed certificate cannot be used");
                        failures += 1;
                        wait = retry_after(failures);
                    }
                },
                Err(e) => {
                    failures += 1;
                    wait = retry_after(failures);
                    let left = current
                        .info
                        .not_after
                        .duration_since(SystemTime::now())
                        .unwrap_or_default();
                    tracing::error!(
                        error = %e,
                        retry_in_minutes = wait.as_secs() / 60,
                        days_left = left.as_secs() / 86_400,
                        "renewing the certificate failed; the current one stays in use"
                    );
                }
            }
        }
    });
}

fn retry_after(failures: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1)))
        .min(RETRY_MAX)
}

/// Write `bytes` to `path` (in `dir`) as a private file ([`crate::private_file::write`]).
fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), HttpsError> {
    debug_assert_eq!(path.parent(), Some(dir));
    crate::private_file::write(path, bytes).map_err(|source| HttpsError::Storage {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(lifetime: Duration) -> CertInfo {
        let not_before = SystemTime::now();
        CertInfo {
            names: vec!["hub.example.org".into()],
            not_before,
            not_after: not_before + lifetime,
        }
    }

    #[test]
    fn renewal_at_a_third_of_the_lifetime_left() {
        let ninety_days = info(Duration::from_secs(90 * 86_400));
        assert_eq!(
            ninety_days
                .not_after
                .duration_since(renewal_time(&ninety_days))
                .unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        // Looked at again within a day (plus at most an hour of jitter).
        assert!(next_look(&ninety_days) <= Duration::from_secs(86_400 + 3600));
        let short = info(Duration::from_secs(30));
        let look = next_look(&short);
        assert!(
            look >= Duration::from_secs(19) && look <= Duration::from_secs(21),
            "{look:?}"
        );
    }

    #[test]
    fn retries_back_off_to_six_hours() {
        assert_eq!(retry_after(1), Duration::from_secs(600));
        assert_eq!(retry_after(2), Duration::from_secs(1200));
        assert_eq!(retry_after(30), RETRY_MAX);
    }
}
