//! HTTPS on the hub's public port (`proxy.https`): the certificate from the config file, from
//! files that are read again when they change, or from an ACME server (`acme.rs`); plain HTTP
//! on `hubfleet.http_redirect_listen` sent to HTTPS, next to the ACME HTTP-01 challenges.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hubfleet_config::https::name_matches;
use hubfleet_config::CertificateSource;
use hubfleet_proxy::Tls;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio::sync::watch;

use crate::acme::{self, Acme, Challenges};

/// How often certificate files (`type: secret`) are checked for changes.
const FILES_CHECK_EVERY: Duration = Duration::from_secs(30);

/// HTTPS as the hub serves it.
#[derive(Debug)]
pub struct HttpsOptions {
    /// Where the certificate comes from.
    pub certificate: CertificateSource,
    /// `proxy.https.hosts`: the names the certificate is for.
    pub hosts: Vec<String>,
    /// `hubfleet.http_redirect_listen`.
    pub redirect_listen: Option<SocketAddr>,
    /// That address, bound beforehand (by the start checks); bound at start when `None`.
    pub redirect_listener: Option<std::net::TcpListener>,
    /// The port browsers use for https, for redirects: the https URL's, else `listen`'s.
    pub public_port: u16,
    /// The host users open the hub at (`subdomain_host`'s or `public_url`'s), if known: the
    /// certificate must cover it.
    pub hub_host: Option<String>,
}

/// Why HTTPS could not start. Each message names the config key to look at.
#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    /// The certificate or key of `manual` or `secret` cannot be used.
    #[error("{key}: {reason}")]
    Certificate { key: &'static str, reason: String },
    #[error(
        "cannot listen on {addr} (hubfleet.http_redirect_listen): {source}{}",
        redirect_hint(.source)
    )]
    RedirectListen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// An ACME server refused or failed a step other than the challenge.
    #[error(
        "cannot get a certificate for {hosts} from the ACME server {directory} \
         (proxy.https.letsencrypt.acmeServer): {step}: {detail}"
    )]
    Acme {
        hosts: String,
        directory: String,
        step: &'static str,
        detail: String,
    },
    /// The ACME server could not validate a host.
    #[error(
        "the ACME server {directory} could not validate {host}: it said: {said}. Check that {host} \
         resolves (DNS A/AAAA records) to this machine's public address, that port 80 of that \
         address reaches hubfleet.http_redirect_listen ({redirect}) from the internet (firewall, \
         NAT, cloud security group), and that no other web server answers \
         http://{host}/.well-known/acme-challenge/ in the hub's place"
    )]
    Challenge {
        host: String,
        directory: String,
        said: String,
        redirect: String,
    },
    #[error("cannot write {}: {source} (the hub's account must own its data directory)", path.display())]
    Storage {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What to do about a port that cannot be bound.
fn redirect_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            ". Ports below 1024 need root or the CAP_NET_BIND_SERVICE capability (AmbientCapabilities= in a systemd unit, see docs/deploy.md)"
        }
        std::io::ErrorKind::AddrInUse => {
            ". Another program listens there (a web server such as nginx or apache?): stop it, or choose another address"
        }
        _ => "",
    }
}

/// HTTPS running: the TLS configuration the proxy serves with, and how to reload it.
pub(crate) struct Running {
    pub tls: Tls,
    files: bool,
}

impl Running {
    /// SIGHUP: read certificate files again (`type: secret`).
    pub fn reload(&self) {
        if !self.files {
            tracing::info!("nothing to reload: the certificate is not read from files");
            return;
        }
        match self.tls.reload() {
            Ok(()) => tracing::info!("certificate files read again"),
            Err(e) => {
                tracing::error!(error = %e, "certificate files not reloaded; the old certificate stays in use")
            }
        }
    }
}

/// Start HTTPS: the redirect listener (with ACME challenges), then the certificate (obtained
/// now from the ACME server if there is none yet), then what keeps it fresh.
pub(crate) async fn start(
    mut options: HttpsOptions,
    data_dir: &Path,
    users_domain: Option<&str>,
    shutdown: watch::Receiver<bool>,
) -> Result<Running, HttpsError> {
    let hub_host = options.hub_host.as_deref();
    let challenges = Challenges::default();
    if let Some(addr) = options.redirect_listen {
        let listener = match options.redirect_listener.take() {
            Some(bound) => bound,
            None => bind_redirect(addr)?,
        };
        let listener = listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(listener))
            .map_err(|source| HttpsError::RedirectListen { addr, source })?;
        let routes = acme::challenge_routes(challenges.clone());
        let mut stop = shutdown.clone();
        let port = options.public_port;
        tokio::spawn(async move {
            let done = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) =
                hubfleet_proxy::serve_https_redirect_with(listener, port, routes, done).await
            {
                tracing::error!(error = %e, "the HTTP redirect listener stopped");
            }
        });
        tracing::info!(on = %addr, to_port = port, "plain HTTP is redirected to HTTPS");
    }
    let running = match &options.certificate {
        CertificateSource::Acme {
            directory,
            contact_email,
        } => {
            let acme = Acme {
                directory: directory.clone(),
                contact_email: contact_email.clone(),
                hosts: options.hosts.clone(),
                dir: data_dir.join("tls"),
                challenges,
                redirect: options
                    .redirect_listen
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
            };
            let (tls, current) = acme::initial(&acme).await?;
            if let Some(domain) = users_domain {
                check_names(current.pem.as_bytes(), &[], None, Some(domain));
            }
            acme::spawn_renewals(acme, tls.clone(), current, shutdown);
            Running { tls, files: false }
        }
        given => {
            let tls =
                given_certificate(given)?
                    .with_http2()
                    .map_err(|e| HttpsError::Certificate {
                        key: certificate_key(given),
                        reason: e.to_string(),
                    })?;
            let pem = match given {
                CertificateSource::Inline { cert, .. } => Some(cert.clone().into_bytes()),
                CertificateSource::Files { cert, .. } => std::fs::read(cert).ok(),
                CertificateSource::Acme { .. } => None,
            };
            if let Some(pem) = pem {
                check_names(&pem, &options.hosts, hub_host, users_domain);
            }
            let files = matches!(given, CertificateSource::Files { .. });
            if let CertificateSource::Files { cert, key } = given {
                spawn_files_watch(tls.clone(), cert.clone(), key.clone(), shutdown);
            }
            Running { tls, files }
        }
    };
    Ok(running)
}

/// The config key a certificate comes from, for messages.
fn certificate_key(certificate: &CertificateSource) -> &'static str {
    match certificate {
        CertificateSource::Inline { .. } => "proxy.https.manual",
        CertificateSource::Files { .. } => "proxy.https.secret",
        CertificateSource::Acme { .. } => "proxy.https.letsencrypt",
    }
}

/// The TLS configuration of a certificate given in the config (`manual`) or in files
/// (`secret`); `letsencrypt` has none until it is obtained.
fn given_certificate(certificate: &CertificateSource) -> Result<Tls, HttpsError> {
    let loaded = match certificate {
        CertificateSource::Inline { cert, key } => {
            Tls::from_pem(cert, key, "proxy.https.manual").map_err(|e| e.to_string())
        }
        CertificateSource::Files { cert, key } => Tls::from_files(cert, key).map_err(|e| {
            format!(
                "{e} (`proxy.https.secret.name` is their directory; `crt` and `key` name the files in it, `tls.crt` and `tls.key` by default)"
            )
        }),
        CertificateSource::Acme { .. } => Err("no certificate yet".to_owned()),
    };
    loaded.map_err(|reason| HttpsError::Certificate {
        key: certificate_key(certificate),
        reason,
    })
}

/// Bind `hubfleet.http_redirect_listen`.
pub fn bind_redirect(addr: SocketAddr) -> Result<std::net::TcpListener, HttpsError> {
    std::net::TcpListener::bind(addr).map_err(|source| HttpsError::RedirectListen { addr, source })
}

/// Whether the certificate of `manual` or `secret` can be used (read, parsed, key fits), before
/// anything is created; `letsencrypt` is checked when it is obtained.
pub fn check_certificate(options: &HttpsOptions) -> Result<(), HttpsError> {
    match options.certificate {
        CertificateSource::Acme { .. } => Ok(()),
        ref given => given_certificate(given).map(drop),
    }
}

/// What a certificate says about itself.
#[derive(Clone, Debug)]
pub(crate) struct CertInfo {
    /// DNS names (subject alternative names, else the common name), lower case.
    pub names: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl CertInfo {
    /// The leaf (first certificate) of a PEM chain.
    pub fn of_pem(pem: &[u8]) -> Result<CertInfo, String> {
        let der = CertificateDer::pem_slice_iter(pem)
            .next()
            .ok_or("no certificate in the PEM text")?
            .map_err(|e| e.to_string())?;
        let (_, cert) =
            x509_parser::parse_x509_certificate(&der).map_err(|e| format!("not X.509: {e}"))?;
        let mut names: Vec<String> = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(s) => {
                        Some(s.to_ascii_lowercase())
                    }
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        if names.is_empty() {
            names.extend(
                cert.subject()
                    .iter_common_name()
                    .filter_map(|cn| cn.as_str().ok())
                    .map(str::to_ascii_lowercase),
            );
        }
        let time = |t: x509_parser::time::ASN1Time| {
            let secs = t.timestamp();
            if secs >= 0 {
                SystemTime::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
            } else {
                SystemTime::UNIX_EPOCH
            }
        };
        Ok(CertInfo {
            names,
            not_before: time(cert.validity().not_before),
            not_after: time(cert.validity().not_after),
        })
    }

    /// Whether the certificate is valid for `host`.
    pub fn covers(&self, host: &str) -> bool {
        self.names.iter().any(|n| name_matches(n, host))
    }
}

/// Warn (at start) about names browsers will ask for that the certificate does not cover, and
/// about a certificate near its end.
fn check_names(pem: &[u8], hosts: &[String], hub_host: Option<&str>, users_domain: Option<&str>) {
    let info = match CertInfo::of_pem(pem) {
        Ok(info) => info,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the certificate's names to check them");
            return;
        }
    };
    let names = info.names.join(", ");
    for host in hosts.iter().map(String::as_str).chain(hub_host) {
        let host = host
            .strip_prefix("*.")
            .map_or(host.to_owned(), |d| format!("x.{d}"));
        if !info.covers(&host) {
            tracing::warn!(
                host = %host,
                certificate = %names,
                "the certificate does not cover this host: browsers will refuse it there"
            );
        }
    }
    if let Some(domain) = users_domain {
        // Any one label under the domain: what a wildcard certificate covers.
        if !info.covers(&format!("user.{domain}")) {
            tracing::warn!(
                certificate = %names,
                "the certificate does not cover users' hosts (<user>.{domain}): browsers will refuse users' servers. Use a certificate for `{domain}` and `*.{domain}` (a wildcard, from the DNS-01 challenge: see docs/deploy.md)"
            );
        }
    }
    match info.not_after.duration_since(SystemTime::now()) {
        Err(_) => {
            tracing::error!(certificate = %names, "the certificate has expired: browsers will refuse it")
        }
        Ok(left) if left < Duration::from_secs(14 * 86_400) => tracing::warn!(
            certificate = %names,
            days_left = left.as_secs() / 86_400,
            "the certificate expires soon: renew it"
        ),
        Ok(_) => {}
    }
}

/// Size and modification time of a file, to notice a new one.
fn stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// `type: secret`: read the files again when they change (certbot's renewal, a Kubernetes secret
/// updated in place), so a renewed certificate needs no restart.
fn spawn_files_watch(tls: Tls, cert: PathBuf, key: PathBuf, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut seen = (stamp(&cert), stamp(&key));
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                () = tokio::time::sleep(FILES_CHECK_EVERY) => {}
            }
            let now = (stamp(&cert), stamp(&key));
            if now == seen {
                continue;
            }
            seen = now;
            match tls.reload() {
                Ok(()) => {
                    tracing::info!(cert = %cert.display(), "certificate files changed: new connections use them")
                }
                Err(e) => {
                    tracing::error!(error = %e, "certificate files changed but cannot be used; the old certificate stays in use")
                }
            }
        }
    });
}
