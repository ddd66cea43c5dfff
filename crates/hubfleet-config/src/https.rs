//! `proxy.https` (z2jh's keys) and `hubfleet.http_redirect_listen`: HTTPS served by the hub
//! itself.
//!
//! z2jh's types map to a hub on one machine as follows:
//! - `letsencrypt`: ACME (HTTP-01) for `hosts`, with `letsencrypt.contactEmail` and
//!   `letsencrypt.acmeServer`;
//! - `manual`: the PEM text of `manual.cert` and `manual.key`, inline as in z2jh;
//! - `secret`: z2jh names a Kubernetes secret, which a pod sees as a directory with one file per
//!   key. Here `secret.name` is that directory and `secret.crt`/`secret.key` the file names in
//!   it (default `tls.crt`/`tls.key`, as z2jh), so certbot's or cert-manager's files are read
//!   where they are, and read again when they change;
//! - `offload`: TLS ends in front of the hub (a load balancer); the hub serves plain HTTP but
//!   knows its users come over https (secure cookies).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::error::ConfigError;
use crate::load::{Ctx, Findings};
use crate::HubConfig;

/// z2jh's default `proxy.https.letsencrypt.acmeServer`: Let's Encrypt's production directory.
pub const LETS_ENCRYPT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// z2jh's default `proxy.https.secret.crt`.
pub const DEFAULT_SECRET_CRT: &str = "tls.crt";
/// z2jh's default `proxy.https.secret.key`.
pub const DEFAULT_SECRET_KEY: &str = "tls.key";

/// `proxy:` — z2jh's proxy section. Only `https` is read (`secretToken` is ignored on purpose).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Proxy {
    /// `proxy.https`.
    pub https: Option<Https>,
}

/// `proxy.https:`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Https {
    /// `proxy.https.enabled`: `None` when unset (false, as z2jh's values.yaml).
    pub enabled: Option<bool>,
    /// `proxy.https.type` (default `letsencrypt`, as z2jh).
    #[serde(rename = "type")]
    pub kind: HttpsType,
    /// `proxy.https.hosts`: the host names the certificate is for.
    pub hosts: Option<Vec<String>>,
    /// `proxy.https.letsencrypt`.
    pub letsencrypt: Option<Letsencrypt>,
    /// `proxy.https.manual`.
    pub manual: Option<Manual>,
    /// `proxy.https.secret`.
    pub secret: Option<SecretFiles>,
}

/// `proxy.https.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HttpsType {
    /// `letsencrypt` (also `null` and `""`, as z2jh): a certificate from an ACME server.
    #[default]
    Letsencrypt,
    /// `manual`: PEM text in `proxy.https.manual`.
    Manual,
    /// `secret`: PEM files in the directory `proxy.https.secret.name`.
    Secret,
    /// `offload`: TLS ends in front of the hub.
    Offload,
}

impl HttpsType {
    /// The z2jh spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpsType::Letsencrypt => "letsencrypt",
            HttpsType::Manual => "manual",
            HttpsType::Secret => "secret",
            HttpsType::Offload => "offload",
        }
    }
}

impl fmt::Display for HttpsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HttpsType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "" | "letsencrypt" => Ok(HttpsType::Letsencrypt),
            "manual" => Ok(HttpsType::Manual),
            "secret" => Ok(HttpsType::Secret),
            "offload" => Ok(HttpsType::Offload),
            other => Err(format!(
                "`{other}` is not an HTTPS type; use `letsencrypt`, `manual`, `secret` or `offload`"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for HttpsType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HttpsType;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("one of `letsencrypt`, `manual`, `secret`, `offload`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HttpsType, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_unit<E: de::Error>(self) -> Result<HttpsType, E> {
                Ok(HttpsType::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// `proxy.https.letsencrypt:`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct Letsencrypt {
    /// `contactEmail`: the ACME account's contact.
    pub contact_email: Option<String>,
    /// `acmeServer`: the ACME directory URL (default Let's Encrypt's production one).
    pub acme_server: Option<String>,
}

/// `proxy.https.manual:` (the key is never shown by `Debug`).
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Manual {
    /// `cert`: the PEM certificate chain, leaf first.
    pub cert: Option<String>,
    /// `key`: the PEM private key.
    pub key: Option<String>,
}

impl fmt::Debug for Manual {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manual")
            .field("cert", &self.cert.as_ref().map(|_| "<PEM>"))
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `proxy.https.secret:`: the directory of a secret's files and their names.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretFiles {
    /// `name`: the directory (relative paths resolve like `hubfleet.data_dir`).
    pub name: Option<PathBuf>,
    /// `crt`: the certificate file in it (default `tls.crt`).
    pub crt: Option<PathBuf>,
    /// `key`: the key file in it (default `tls.key`).
    pub key: Option<PathBuf>,
}

/// How the hub serves HTTPS, resolved from `proxy.https` (see [`HubConfig::https_mode`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpsMode {
    /// Plain HTTP (`proxy.https.enabled` is not true).
    Off,
    /// Plain HTTP behind something that ends TLS (`type: offload`): users come over https.
    Offload,
    /// The hub ends TLS itself on `hubfleet.listen`.
    Terminate(HttpsSettings),
}

/// What the hub needs to end TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsSettings {
    /// Where the certificate comes from.
    pub certificate: CertificateSource,
    /// `proxy.https.hosts`.
    pub hosts: Vec<String>,
    /// `hubfleet.http_redirect_listen`.
    pub redirect_listen: Option<SocketAddr>,
}

/// Where the hub's certificate comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum CertificateSource {
    /// `manual`: PEM text from the config file.
    Inline {
        /// PEM certificate chain.
        cert: String,
        /// PEM private key.
        key: String,
    },
    /// `secret`: PEM files, read again when they change.
    Files {
        /// Absolute path of the certificate chain.
        cert: PathBuf,
        /// Absolute path of the private key.
        key: PathBuf,
    },
    /// `letsencrypt`: obtained and renewed from an ACME server.
    Acme {
        /// The ACME directory URL.
        directory: String,
        /// The account's contact email (without `mailto:`).
        contact_email: String,
    },
}

impl fmt::Debug for CertificateSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertificateSource::Inline { .. } => f.write_str("Inline { <PEM>, <redacted> }"),
            CertificateSource::Files { cert, key } => f
                .debug_struct("Files")
                .field("cert", cert)
                .field("key", key)
                .finish(),
            CertificateSource::Acme {
                directory,
                contact_email,
            } => f
                .debug_struct("Acme")
                .field("directory", directory)
                .field("contact_email", contact_email)
                .finish(),
        }
    }
}

impl HubConfig {
    /// How the hub serves HTTPS. Loading has checked that everything needed is there.
    pub fn https_mode(&self) -> HttpsMode {
        let Some(https) = self
            .proxy
            .https
            .as_ref()
            .filter(|h| h.enabled == Some(true))
        else {
            return HttpsMode::Off;
        };
        let certificate = match https.kind {
            HttpsType::Offload => return HttpsMode::Offload,
            HttpsType::Manual => {
                let manual = https.manual.clone().unwrap_or_default();
                CertificateSource::Inline {
                    cert: manual.cert.unwrap_or_default(),
                    key: manual.key.unwrap_or_default(),
                }
            }
            HttpsType::Secret => {
                let secret = https.secret.clone().unwrap_or_default();
                let dir = self.resolve_path(&secret.name.unwrap_or_default());
                CertificateSource::Files {
                    cert: dir.join(secret.crt.unwrap_or_else(|| DEFAULT_SECRET_CRT.into())),
                    key: dir.join(secret.key.unwrap_or_else(|| DEFAULT_SECRET_KEY.into())),
                }
            }
            HttpsType::Letsencrypt => {
                let le = https.letsencrypt.clone().unwrap_or_default();
                let email = le.contact_email.unwrap_or_default();
                CertificateSource::Acme {
                    directory: le
                        .acme_server
                        .unwrap_or_else(|| LETS_ENCRYPT_DIRECTORY.to_owned()),
                    contact_email: email.trim_start_matches("mailto:").to_owned(),
                }
            }
        };
        HttpsMode::Terminate(HttpsSettings {
            certificate,
            hosts: https
                .hosts
                .iter()
                .flatten()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            redirect_listen: self.hubfleet.http_redirect_listen,
        })
    }

    /// Whether people reach the hub over https: the hub ends TLS, TLS is offloaded in front of
    /// it, or its public URL or `subdomain_host` says `https://`.
    pub fn reached_over_https(&self) -> bool {
        self.https_mode() != HttpsMode::Off
            || [
                self.hubfleet.public_url.as_deref(),
                self.hub.config.jupyterhub.subdomain_host.as_deref(),
            ]
            .into_iter()
            .flatten()
            .any(|u| u.starts_with("https://"))
    }
}

/// `hubfleet.http_redirect_listen`: an optional socket address.
pub(crate) fn opt_socket_addr<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<SocketAddr>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an IP address and port, such as `0.0.0.0:80` or `[::]:80`")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            v.trim().parse().map(Some).map_err(|_| {
                E::custom(format!(
                    "`{v}` is not an IP address and port; expected something like `0.0.0.0:80` or `[::]:80` (host names are not accepted)"
                ))
            })
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

const HTTPS: &str = "proxy.https";
const REDIRECT: &str = "hubfleet.http_redirect_listen";
const SUBDOMAIN_HOST: &str = "hub.config.JupyterHub.subdomain_host";
const PUBLIC_URL: &str = "hubfleet.public_url";
const CONTACT: &str = "proxy.https.letsencrypt.contactEmail";

/// A host name for a certificate: DNS labels, optionally `*.` in front.
fn check_host_name(host: &str, wildcard_ok: bool) -> Result<(), String> {
    if host.contains("://") || host.contains('/') {
        return Err(format!(
            "`{host}` is a URL; give the host name alone, such as `hub.example.org`"
        ));
    }
    if host.contains(':') || host.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "`{host}` is not a host name (no port, no IP address); such as `hub.example.org`"
        ));
    }
    let name = match host.strip_prefix("*.") {
        Some(rest) if wildcard_ok => rest,
        Some(_) => {
            return Err(format!(
                "`{host}` is a wildcard: Let's Encrypt issues wildcards only through the DNS-01 challenge, which the hub cannot answer. List the hub's host here, and for users' hosts use `type: secret` (or `manual`) with a wildcard certificate from a DNS-01 client such as certbot or lego (see docs/deploy.md)"
            ))
        }
        None => host,
    };
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{host}` is not a valid host name (letters, digits and `-` in dot-separated labels; write internationalised names in their `xn--` form)"
        ))
    }
}

/// The host (lower case) and scheme of a URL key, when it is set.
fn url_host(url: Option<&str>) -> Option<(String, String)> {
    let url = url::Url::parse(url?).ok()?;
    Some((
        url.scheme().to_owned(),
        url.host_str()?.to_ascii_lowercase(),
    ))
}

/// Whether `name` (a host) is covered by `pattern` (a host or `*.domain`).
pub fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(domain) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(domain)),
        None => pattern.eq_ignore_ascii_case(name),
    }
}

/// Check `proxy.https` and `hubfleet.http_redirect_listen` together with the URLs users reach
/// the hub at; every problem goes to `f`.
pub(crate) fn check(config: &HubConfig, ctx: &Ctx<'_>, f: &mut Findings) {
    let redirect = config.hubfleet.http_redirect_listen;
    let https = match config.proxy.https.as_ref() {
        Some(https) if https.enabled == Some(true) => https,
        other => {
            if let Some(https) = other {
                // z2jh's own defaults (a copied values.yaml) are not a sign of intent.
                let le = https.letsencrypt.clone().unwrap_or_default();
                let manual = https.manual.clone().unwrap_or_default();
                let configured = https.kind != HttpsType::Letsencrypt
                    || https.hosts.as_ref().is_some_and(|h| !h.is_empty())
                    || le.contact_email.is_some()
                    || manual.cert.is_some()
                    || https.secret.as_ref().is_some_and(|s| s.name.is_some());
                if https.enabled.is_none() && configured {
                    f.warn(ctx.warning(
                        HTTPS,
                        "is not enabled, so the hub serves plain HTTP: set `proxy.https.enabled: true` (false by default, as in z2jh)",
                    ));
                }
            }
            if redirect.is_some() {
                f.warn(ctx.warning(
                    REDIRECT,
                    "has no effect: the hub serves plain HTTP (`proxy.https.enabled` is not true)",
                ));
            }
            return;
        }
    };
    let kind = https.kind;

    // Users reach the hub over https now: URLs that say otherwise would make every link and
    // OAuth redirect wrong.
    for (key, url) in [
        (SUBDOMAIN_HOST, &config.hub.config.jupyterhub.subdomain_host),
        (PUBLIC_URL, &config.hubfleet.public_url),
    ] {
        if let Some(url) = url.as_deref().filter(|u| u.starts_with("http://")) {
            f.error(ctx.at_key(
                key,
                format!(
                    "is `{url}` but `proxy.https.enabled` is true, so users reach the hub over https: write `https://{}`",
                    &url["http://".len()..]
                ),
            ));
        }
    }

    let hosts: Vec<String> = https.hosts.iter().flatten().cloned().collect();
    for (i, host) in hosts.iter().enumerate() {
        if let Err(msg) = check_host_name(host, kind != HttpsType::Letsencrypt) {
            f.error(ctx.at_item("proxy.https.hosts", i, msg));
        }
    }

    if kind == HttpsType::Offload {
        if redirect.is_some() {
            f.warn(ctx.warning(
                REDIRECT,
                "has no effect with `proxy.https.type: offload`: what ends TLS in front of the hub also redirects plain HTTP",
            ));
        }
        return;
    }

    if redirect == Some(config.hubfleet.listen) {
        f.error(ctx.at_key(
            REDIRECT,
            "is the same address as `hubfleet.listen`, which serves HTTPS; use another port, usually `0.0.0.0:80`",
        ));
    }

    match kind {
        HttpsType::Manual => check_manual(https, ctx, f),
        HttpsType::Secret => f.check(check_secret(https, ctx)),
        HttpsType::Letsencrypt => check_letsencrypt(config, https, &hosts, ctx, f),
        HttpsType::Offload => {}
    }
    unused_sections(https, ctx, f);
}

fn check_manual(https: &Https, ctx: &Ctx<'_>, f: &mut Findings) {
    let manual = https.manual.clone().unwrap_or_default();
    let at = |key: &str| {
        if ctx.has_key(key) {
            key.to_owned()
        } else if ctx.has_key("proxy.https.manual") {
            "proxy.https.manual".to_owned()
        } else {
            "proxy.https.type".to_owned()
        }
    };
    let cert = manual.cert.as_deref().unwrap_or_default();
    if cert.trim().is_empty() {
        f.error(ctx.at_key(
            &at("proxy.https.manual.cert"),
            "`type: manual` needs `proxy.https.manual.cert`: the PEM certificate chain (`cert: |` and the `-----BEGIN CERTIFICATE-----` lines below it)",
        ));
    } else if !cert.contains("-----BEGIN CERTIFICATE-----") {
        f.error(ctx.at_key(
            "proxy.https.manual.cert",
            "is not a PEM certificate: it must hold `-----BEGIN CERTIFICATE-----` … `-----END CERTIFICATE-----` (the server's certificate first, then its intermediates)",
        ));
    }
    let key = manual.key.as_deref().unwrap_or_default();
    if key.trim().is_empty() {
        f.error(ctx.at_key(
            &at("proxy.https.manual.key"),
            "`type: manual` needs `proxy.https.manual.key`: the PEM private key (`key: |` and the `-----BEGIN PRIVATE KEY-----` lines below it)",
        ));
    } else if !(key.contains("-----BEGIN") && key.contains("PRIVATE KEY-----")) {
        // Never echo the key.
        f.error(ctx.at_key(
            "proxy.https.manual.key",
            "is not a PEM private key: it must hold `-----BEGIN PRIVATE KEY-----` (or `RSA PRIVATE KEY`, `EC PRIVATE KEY`) … `-----END …-----`",
        ));
    }
}

fn check_secret(https: &Https, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    let secret = https.secret.clone().unwrap_or_default();
    if secret
        .name
        .as_deref()
        .is_none_or(|n| n.as_os_str().is_empty())
    {
        let at = if ctx.has_key("proxy.https.secret.name") {
            "proxy.https.secret.name"
        } else if ctx.has_key("proxy.https.secret") {
            "proxy.https.secret"
        } else {
            "proxy.https.type"
        };
        return Err(ctx.at_key(
            at,
            "`type: secret` needs `proxy.https.secret.name`: on a hub without Kubernetes, the directory that holds the certificate and key files (`crt`, default `tls.crt`, and `key`, default `tls.key`), such as `/etc/letsencrypt/live/hub.example.org` with `crt: fullchain.pem` and `key: privkey.pem`",
        ));
    }
    for (key, value) in [("crt", &secret.crt), ("key", &secret.key)] {
        if value.as_deref().is_some_and(|v| v.as_os_str().is_empty()) {
            return Err(ctx.at_key(
                &format!("proxy.https.secret.{key}"),
                "is empty; remove it to use the default file name",
            ));
        }
    }
    Ok(())
}

fn check_letsencrypt(
    config: &HubConfig,
    https: &Https,
    hosts: &[String],
    ctx: &Ctx<'_>,
    f: &mut Findings,
) {
    let type_key = if ctx.has_key("proxy.https.type") {
        "proxy.https.type"
    } else {
        "proxy.https.enabled"
    };
    if hosts.is_empty() {
        f.error(ctx.at_key(
            if ctx.has_key("proxy.https.hosts") { "proxy.https.hosts" } else { type_key },
            "`type: letsencrypt` needs `proxy.https.hosts`: the host names to get a certificate for, such as `[hub.example.org]`",
        ));
    }
    let le = https.letsencrypt.clone().unwrap_or_default();
    match le.contact_email.as_deref().map(str::trim) {
        None | Some("") => f.error(ctx.at_key(
            if ctx.has_key(CONTACT) { CONTACT } else { type_key },
            format!("`type: letsencrypt` needs `{CONTACT}`: the email address of the ACME account (z2jh requires it too)"),
        )),
        Some(email) => {
            let address = email.trim_start_matches("mailto:");
            let well_formed = address
                .split_once('@')
                .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'))
                && !address.contains(char::is_whitespace);
            if !well_formed {
                f.error(ctx.at_key(
                    CONTACT,
                    format!("`{email}` is not an email address, such as `admin@example.org`"),
                ));
            }
        }
    }
    if let Some(server) = le.acme_server.as_deref() {
        let ok =
            url::Url::parse(server).is_ok_and(|u| u.scheme() == "https" && u.host_str().is_some());
        if !ok {
            f.error(ctx.at_key(
                "proxy.https.letsencrypt.acmeServer",
                format!("`{server}` is not an https URL of an ACME directory, such as `{LETS_ENCRYPT_DIRECTORY}` (or Let's Encrypt's staging `https://acme-staging-v02.api.letsencrypt.org/directory`)"),
            ));
        }
    }
    match config.hubfleet.http_redirect_listen {
        None => f.error(ctx.at_key(
            type_key,
            format!("`type: letsencrypt` proves the hub owns its hosts by answering the ACME server on port 80 (HTTP-01): set `{REDIRECT}: 0.0.0.0:80` (it also sends plain HTTP to HTTPS)"),
        )),
        Some(addr) if addr.port() != 80 => f.warn(ctx.warning(
            REDIRECT,
            format!("is on port {}: Let's Encrypt checks http://<host>/.well-known/acme-challenge/ on port 80, so forward port 80 to it", addr.port()),
        )),
        Some(_) => {}
    }
    if hosts.is_empty() {
        return;
    }
    // The URLs users are sent to must be covered by the certificate.
    for (key, url) in [
        (SUBDOMAIN_HOST, &config.hub.config.jupyterhub.subdomain_host),
        (PUBLIC_URL, &config.hubfleet.public_url),
    ] {
        if let Some((_, host)) = url_host(url.as_deref()) {
            if !hosts.iter().any(|h| h.eq_ignore_ascii_case(&host)) {
                f.error(ctx.at_key(
                    "proxy.https.hosts",
                    format!("does not list `{host}`, the host of `{key}`; add it, or browsers will refuse the hub's certificate"),
                ));
            }
        }
    }
    if let Some((_, domain)) = url_host(config.hub.config.jupyterhub.subdomain_host.as_deref()) {
        let suffix = format!(".{domain}");
        if !hosts
            .iter()
            .any(|h| h.to_ascii_lowercase().ends_with(&suffix))
        {
            f.warn(ctx.warning(
                "proxy.https.hosts",
                format!("covers the hub's host only: users' servers are on `<user>.{domain}`, which a certificate from Let's Encrypt's HTTP-01 challenge cannot cover (that needs a wildcard, from DNS-01), so browsers will refuse them. Use `type: secret` (or `manual`) with a certificate for `{domain}` and `*.{domain}` (see docs/deploy.md), or list each user's host here"),
            ));
        }
    }
}

/// Settings of another type than the chosen one, when they differ from z2jh's defaults (a
/// values file copied from z2jh has those).
fn unused_sections(https: &Https, ctx: &Ctx<'_>, f: &mut Findings) {
    let le = https.letsencrypt.clone().unwrap_or_default();
    let manual = https.manual.clone().unwrap_or_default();
    let secret = https.secret.clone().unwrap_or_default();
    let sections = [
        (
            "proxy.https.letsencrypt",
            HttpsType::Letsencrypt,
            le.contact_email.is_some()
                || le.acme_server.is_some_and(|s| s != LETS_ENCRYPT_DIRECTORY),
        ),
        (
            "proxy.https.manual",
            HttpsType::Manual,
            manual.cert.is_some() || manual.key.is_some(),
        ),
        (
            "proxy.https.secret",
            HttpsType::Secret,
            secret.name.is_some(),
        ),
    ];
    for (key, kind, set) in sections {
        if set && kind != https.kind {
            f.warn(ctx.warning(
                key,
                format!("has no effect: `proxy.https.type` is `{}`", https.kind),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        for ok in ["hub.example.org", "localhost", "a-b.c1.example"] {
            assert!(check_host_name(ok, false).is_ok(), "{ok}");
        }
        assert!(check_host_name("*.hub.example.org", true).is_ok());
        for bad in [
            "https://hub.example.org",
            "hub.example.org:443",
            "10.0.0.1",
            "-a.example",
            "a..b",
            "hub_example.org",
            "",
        ] {
            assert!(check_host_name(bad, true).is_err(), "{bad}");
        }
        let wildcard = check_host_name("*.hub.example.org", false).unwrap_err();
        assert!(wildcard.contains("DNS-01"), "{wildcard}");
    }

    #[test]
    fn wildcards_cover_one_label() {
        assert!(name_matches("*.hub.example.org", "alice.hub.example.org"));
        assert!(name_matches("HUB.example.org", "hub.example.org"));
        assert!(!name_matches("*.hub.example.org", "hub.example.org"));
        assert!(!name_matches("*.hub.example.org", "a.b.hub.example.org"));
    }
}
