//! TLS with rustls: termination from PEM certificate and key files (or PEM text), reloadable
//! or replaceable at run time,
//! optionally asking clients for certificates (CHP's `--ssl-request-cert`, `--api-ssl-*`); and
//! the client side for `https://` targets (`--client-ssl-*`, `--insecure`).
//!
//! Each accepted connection takes the configuration current at its handshake; [`Tls::reload`]
//! swaps in a new one for later connections, so connections already open are never dropped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::ProxyError;

/// A certificate chain and key, from files or PEM text, and the acceptor built from them.
#[derive(Clone)]
pub struct Tls {
    source: Arc<RwLock<Source>>,
    clients: ClientCerts,
    /// Offer HTTP/2 in ALPN (`h2` before `http/1.1`).
    http2: bool,
    current: Arc<RwLock<TlsAcceptor>>,
}

/// Where the certificate and key are read from.
#[derive(Clone)]
enum Source {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    /// PEM text held in memory (a config file's inline certificate, an ACME certificate);
    /// `label` names it in errors.
    Pem {
        cert: Arc<[u8]>,
        key: Arc<[u8]>,
        label: String,
    },
}

/// Whether a TLS listener asks its clients for certificates (Node's `requestCert` and
/// `rejectUnauthorized`, as CHP passes them).
#[derive(Clone, Debug, Default)]
pub enum ClientCerts {
    /// Do not ask.
    #[default]
    None,
    /// Ask; a client may go without one, but a certificate it sends must chain to the CA.
    Optional { ca: PathBuf },
    /// Ask, and refuse the handshake without a certificate that chains to the CA (mutual TLS).
    Required { ca: PathBuf },
}

fn tls_err(path: &Path, reason: impl Into<String>) -> ProxyError {
    ProxyError::Tls {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ProxyError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_err(path, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(path, e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_err(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ProxyError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| tls_err(path, e.to_string()))
}

/// Every certificate in a PEM bundle, as trust anchors.
fn read_roots(path: &Path) -> Result<RootCertStore, ProxyError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| tls_err(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

fn pem_err(label: &str, reason: impl Into<String>) -> ProxyError {
    ProxyError::TlsCertificate {
        what: label.to_owned(),
        reason: reason.into(),
    }
}

/// A chain and key from PEM text (leaf first).
fn parse_pem(
    cert: &[u8],
    key: &[u8],
    label: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ProxyError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(label, format!("the certificate: {e}")))?;
    if certs.is_empty() {
        return Err(pem_err(label, "no PEM certificate in the certificate text"));
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| pem_err(label, format!("the private key: {e}")))?;
    Ok((certs, key))
}

fn load(source: &Source, clients: &ClientCerts, http2: bool) -> Result<TlsAcceptor, ProxyError> {
    let (certs, key_der) = match source {
        Source::Files { cert, key } => (read_certs(cert)?, read_key(key)?),
        Source::Pem { cert, key, label } => parse_pem(cert, key, label)?,
    };
    // Errors about the pair name the key's file, or the label.
    let fail = |reason: String| match source {
        Source::Files { key, .. } => tls_err(key, reason),
        Source::Pem { label, .. } => pem_err(label, reason),
    };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?;
    let builder = match clients {
        ClientCerts::None => builder.with_no_client_auth(),
        ClientCerts::Optional { ca } | ClientCerts::Required { ca } => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(read_roots(ca)?.into(), provider());
            let verifier = match clients {
                ClientCerts::Optional { .. } => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier.build().map_err(|e| tls_err(ca, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key_der)
        .map_err(|e| fail(format!("certificate and key do not fit: {e}")))?;
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(TlsAcceptor::from(Arc::new(config)))
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("Tls");
        match &*self.source.read().unwrap_or_else(PoisonError::into_inner) {
            Source::Files { cert, key } => out.field("cert", cert).field("key", key),
            Source::Pem { label, .. } => out.field("pem", label),
        };
        out.finish_non_exhaustive()
    }
}

impl Tls {
    /// Load `cert` (PEM chain, leaf first) and `key` (PEM PKCS#8, PKCS#1 or SEC1).
    pub fn from_files(
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Result<Self, ProxyError> {
        Self::with_client_certs(cert, key, ClientCerts::None)
    }

    /// [`Tls::from_files`], asking clients for certificates as `clients` says.
    pub fn with_client_certs(
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        clients: ClientCerts,
    ) -> Result<Self, ProxyError> {
        let source = Source::Files {
            cert: cert.into(),
            key: key.into(),
        };
        Self::from_source(source, clients)
    }

    /// A certificate chain (PEM, leaf first) and its key (PEM) held in memory; `label` names
    /// them in errors (e.g. the config key they came from).
    pub fn from_pem(
        cert: impl AsRef<[u8]>,
        key: impl AsRef<[u8]>,
        label: impl Into<String>,
    ) -> Result<Self, ProxyError> {
        let source = Source::Pem {
            cert: cert.as_ref().into(),
            key: key.as_ref().into(),
            label: label.into(),
        };
        Self::from_source(source, ClientCerts::None)
    }

    fn from_source(source: Source, clients: ClientCerts) -> Result<Self, ProxyError> {
        let acceptor = load(&source, &clients, false)?;
        Ok(Tls {
            source: Arc::new(RwLock::new(source)),
            clients,
            http2: false,
            current: Arc::new(RwLock::new(acceptor)),
        })
    }

    /// Use this chain and key (PEM) for connections made from now on (a renewed certificate);
    /// connections already open keep theirs. On error nothing changes.
    pub fn replace_pem(
        &self,
        cert: impl AsRef<[u8]>,
        key: impl AsRef<[u8]>,
    ) -> Result<(), ProxyError> {
        let label = match &*self.source.read().unwrap_or_else(PoisonError::into_inner) {
            Source::Pem { label, .. } => label.clone(),
            Source::Files { cert, .. } => cert.display().to_string(),
        };
        let source = Source::Pem {
            cert: cert.as_ref().into(),
            key: key.as_ref().into(),
            label,
        };
        let acceptor = load(&source, &self.clients, self.http2)?;
        *self.source.write().unwrap_or_else(PoisonError::into_inner) = source;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = acceptor;
        Ok(())
    }

    /// Offer HTTP/2 to clients as well as HTTP/1.1 (only for a listener that serves both).
    pub fn with_http2(mut self) -> Result<Self, ProxyError> {
        self.http2 = true;
        self.reload()?;
        Ok(self)
    }

    /// Read the files (and the client CA) again and use them for new connections. On error the
    /// old ones stay.
    pub fn reload(&self) -> Result<(), ProxyError> {
        let source = self
            .source
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let acceptor = load(&source, &self.clients, self.http2)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = acceptor;
        Ok(())
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// How the proxy speaks TLS to `https://` targets: which CAs it trusts (the Mozilla roots
/// unless `--client-ssl-ca` names a bundle), the certificate it presents (`--client-ssl-cert`
/// and `--client-ssl-key`, for targets that require one, as JupyterHub's internal_ssl does), or
/// no verification at all (`--insecure`).
#[derive(Clone)]
pub struct UpstreamTls {
    connector: TlsConnector,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls").finish_non_exhaustive()
    }
}

impl Default for UpstreamTls {
    fn default() -> Self {
        Self::new(None, None, false).expect("the built-in roots always make a client config")
    }
}

impl UpstreamTls {
    /// `ca`: PEM bundle of trusted CAs (else the Mozilla roots); `identity`: (cert, key) PEM
    /// files to present; `insecure`: accept any server certificate.
    pub fn new(
        ca: Option<&Path>,
        identity: Option<(&Path, &Path)>,
        insecure: bool,
    ) -> Result<Self, ProxyError> {
        let roots = match ca {
            Some(path) => read_roots(path)?,
            None => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(Path::new("-"), e.to_string()))?;
        let builder = if insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider())))
        } else {
            builder.with_root_certificates(roots)
        };
        let mut config = match identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
                .map_err(|e| tls_err(key, format!("certificate and key do not fit: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(UpstreamTls {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    pub(crate) fn connector(&self) -> TlsConnector {
        self.connector.clone()
    }
}

/// `--insecure`: any server certificate is accepted (its handshake signatures still checked).
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
