//! A certificate authority for tests, made with rcgen: its root (PEM), leaf certificates for
//! given names, and certificates for CSRs (the stand-in ACME server's issuing).

use std::time::Duration;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, PublicKeyData,
};
use sha2::Digest;

pub struct TestCa {
    /// The root certificate, PEM: what clients trust.
    pub cert_pem: String,
    /// base64(SHA-256(SubjectPublicKeyInfo)) of the CA's key.
    pub spki_sha256: String,
    issuer: Issuer<'static, KeyPair>,
}

fn spki_sha256(key: &KeyPair) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(sha2::Sha256::digest(key.subject_public_key_info()))
}

/// A leaf certificate and its key, PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    /// base64(SHA-256(SubjectPublicKeyInfo)): what Chromium's
    /// `--ignore-certificate-errors-spki-list` takes.
    pub spki_sha256: String,
}

fn validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + time::Duration::try_from(lifetime).unwrap();
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, Duration::from_secs(90 * 86_400));
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            spki_sha256: spki_sha256(&key),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `names` (DNS names; `*.` wildcards allowed), valid from now.
    pub fn leaf(&self, names: &[&str], lifetime: Duration) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, &names[0]);
        validity(&mut params, lifetime);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            spki_sha256: spki_sha256(&key),
        }
    }

    /// Sign a CSR (DER), keeping its names, valid from now for `lifetime`: the certificate,
    /// then this CA's, as a PEM chain.
    pub fn sign_csr(&self, csr_der: &[u8], lifetime: Duration) -> Result<String, String> {
        let mut csr = CertificateSigningRequestParams::from_der(&csr_der.to_vec().into())
            .map_err(|e| format!("bad CSR: {e}"))?;
        validity(&mut csr.params, lifetime);
        let cert = csr.signed_by(&self.issuer).map_err(|e| e.to_string())?;
        Ok(format!("{}{}", cert.pem(), self.cert_pem))
    }
}
