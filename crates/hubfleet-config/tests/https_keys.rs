//! `proxy.https` (z2jh's keys) and `hubfleet.http_redirect_listen`: what each type resolves to,
//! and every mistake named at its line.

use std::path::Path;

use hubfleet_config::https::LETS_ENCRYPT_DIRECTORY;
use hubfleet_config::{
    fixtures, CertificateSource, ConfigError, ConfigSource, HttpsMode, HubConfig,
};

const CERT: &str = "-----BEGIN CERTIFICATE-----\n        MIIB\n        -----END CERTIFICATE-----";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\n        MIIE\n        -----END PRIVATE KEY-----";

fn load(yaml: &str) -> HubConfig {
    HubConfig::from_yaml_str(yaml, "hub.yaml").unwrap_or_else(|e| panic!("{e}"))
}

/// Every error of `yaml`: (line, key, message).
fn errors(yaml: &str) -> Vec<(usize, String, String)> {
    let report = HubConfig::check(vec![ConfigSource::text("hub.yaml", yaml)]);
    report
        .errors
        .into_iter()
        .map(|e| match e {
            ConfigError::Invalid {
                line, key, message, ..
            } => (line, key.unwrap_or_default(), message),
            e => panic!("unexpected {e}"),
        })
        .collect()
}

/// The line and message of the error about `key`.
fn error_at(yaml: &str, key: &str) -> (usize, String) {
    let all = errors(yaml);
    all.iter()
        .find(|(_, k, _)| k == key)
        .map(|(line, _, msg)| (*line, msg.clone()))
        .unwrap_or_else(|| panic!("no error about {key}: {all:#?}"))
}

fn warnings(config: &HubConfig) -> Vec<String> {
    config.warnings.iter().map(|w| w.to_string()).collect()
}

fn letsencrypt(extra_https: &str, hubfleet: &str) -> String {
    format!(
        "proxy:\n  https:\n    enabled: true\n    type: letsencrypt\n    hosts: [hub.example.org]\n    letsencrypt:\n      contactEmail: ops@example.org\n{extra_https}hubfleet:\n  listen: 0.0.0.0:443\n{hubfleet}"
    )
}

#[test]
fn manual_takes_inline_pem() {
    let c = load(&format!(
        "proxy:\n  https:\n    enabled: true\n    type: manual\n    hosts: [hub.example.org, '*.hub.example.org']\n    manual:\n      cert: |\n        {CERT}\n      key: |\n        {KEY}\n"
    ));
    let HttpsMode::Terminate(https) = c.https_mode() else {
        panic!("{:?}", c.https_mode())
    };
    assert_eq!(https.hosts, ["hub.example.org", "*.hub.example.org"]);
    assert_eq!(https.redirect_listen, None);
    let CertificateSource::Inline { cert, key } = &https.certificate else {
        panic!("{:?}", https.certificate)
    };
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(key.contains("PRIVATE KEY"));
    // The key never shows in logs.
    assert!(!format!("{:?}", c.proxy).contains("MIIE"));
    assert!(!format!("{:?}", https).contains("MIIE"));
    assert!(c.reached_over_https());
}

#[test]
fn secret_is_a_directory_of_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.yaml");
    std::fs::write(
        &path,
        "proxy:\n  https:\n    enabled: true\n    type: secret\n    secret:\n      name: tls\n",
    )
    .unwrap();
    let c = HubConfig::from_path(&path).unwrap();
    let HttpsMode::Terminate(https) = c.https_mode() else {
        panic!()
    };
    assert_eq!(
        https.certificate,
        CertificateSource::Files {
            cert: dir.path().join("tls/tls.crt"),
            key: dir.path().join("tls/tls.key"),
        }
    );

    let c = load("proxy:\n  https:\n    enabled: true\n    type: secret\n    secret:\n      name: /etc/letsencrypt/live/hub.example.org\n      crt: fullchain.pem\n      key: privkey.pem\n");
    let HttpsMode::Terminate(https) = c.https_mode() else {
        panic!()
    };
    let live = Path::new("/etc/letsencrypt/live/hub.example.org");
    assert_eq!(
        https.certificate,
        CertificateSource::Files {
            cert: live.join("fullchain.pem"),
            key: live.join("privkey.pem"),
        }
    );
}

#[test]
fn letsencrypt_defaults_to_z2jhs_acme_server() {
    let values = fixtures::fixture("zero-to-jupyterhub/jupyterhub/values.yaml")
        .unwrap_or_else(|msg| panic!("{msg}"));
    let values: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(values).unwrap()).unwrap();
    let https = &values["proxy"]["https"];
    assert_eq!(
        https["letsencrypt"]["acmeServer"].as_str(),
        Some(LETS_ENCRYPT_DIRECTORY)
    );
    assert_eq!(https["type"].as_str(), Some("letsencrypt"));
    assert_eq!(https["secret"]["crt"].as_str(), Some("tls.crt"));
    assert_eq!(https["secret"]["key"].as_str(), Some("tls.key"));
    assert_eq!(https["enabled"].as_bool(), Some(false));

    let c = load(&letsencrypt("", "  http_redirect_listen: 0.0.0.0:80\n"));
    let HttpsMode::Terminate(https) = c.https_mode() else {
        panic!()
    };
    assert_eq!(
        https.certificate,
        CertificateSource::Acme {
            directory: LETS_ENCRYPT_DIRECTORY.into(),
            contact_email: "ops@example.org".into(),
        }
    );
    assert_eq!(https.redirect_listen, Some("0.0.0.0:80".parse().unwrap()));
    assert!(warnings(&c).is_empty(), "{:?}", warnings(&c));
}

#[test]
fn z2jhs_own_block_loads_and_stays_off() {
    // z2jh's values.yaml as shipped: HTTPS off, no warnings about its defaults.
    let c = load("proxy:\n  https:\n    enabled: false\n    type: letsencrypt\n    letsencrypt:\n      contactEmail:\n      acmeServer: https://acme-v02.api.letsencrypt.org/directory\n    manual:\n      key:\n      cert:\n    secret:\n      name:\n      key: tls.key\n      crt: tls.crt\n    hosts: []\n");
    assert_eq!(c.https_mode(), HttpsMode::Off);
    assert!(c.warnings.is_empty(), "{:?}", warnings(&c));
    assert!(!c.reached_over_https());
}

#[test]
fn offload_serves_plain_http_to_https_users() {
    let c = load("proxy:\n  https:\n    enabled: true\n    type: offload\nhub:\n  config:\n    JupyterHub:\n      subdomain_host: https://hub.example.org\n");
    assert_eq!(c.https_mode(), HttpsMode::Offload);
    assert!(c.reached_over_https());
}

#[test]
fn settings_without_enabled_are_warned_about() {
    let c = load("proxy:\n  https:\n    type: manual\n    manual:\n      cert: x\n");
    assert_eq!(c.https_mode(), HttpsMode::Off);
    let w = warnings(&c);
    assert!(
        w.iter().any(
            |w| w.starts_with("hub.yaml:2:3: proxy.https: is not enabled")
                && w.contains("proxy.https.enabled: true")
        ),
        "{w:?}"
    );

    let c = load("hubfleet:\n  http_redirect_listen: 0.0.0.0:80\n");
    assert!(
        warnings(&c)
            .iter()
            .any(|w| w.contains("hubfleet.http_redirect_listen: has no effect")),
        "{:?}",
        warnings(&c)
    );
}

#[test]
fn letsencrypt_mistakes_are_named() {
    let (line, msg) = error_at("proxy:\n  https:\n    enabled: true\n    type: letsencrypt\n    letsencrypt:\n      contactEmail: ops@example.org\nhubfleet:\n  http_redirect_listen: 0.0.0.0:80\n", "proxy.https.type");
    assert_eq!(line, 4);
    assert!(msg.contains("needs `proxy.https.hosts`"), "{msg}");

    let (line, msg) = error_at("proxy:\n  https:\n    enabled: true\n    hosts:\n      - hub.example.org\n      - '*.hub.example.org'\n", "proxy.https.hosts[1]");
    assert_eq!(line, 6);
    assert!(
        msg.contains("DNS-01") && msg.contains("type: secret"),
        "{msg}"
    );

    let (line, msg) = error_at(
        "proxy:\n  https:\n    enabled: true\n    hosts: ['https://hub.example.org']\n",
        "proxy.https.hosts[0]",
    );
    assert_eq!(line, 4);
    assert!(msg.contains("give the host name alone"), "{msg}");

    // Every problem of the section at once, each at its line.
    let all = errors(&letsencrypt("", "").replace("      contactEmail: ops@example.org\n", ""));
    let messages: Vec<&str> = all.iter().map(|(_, _, m)| m.as_str()).collect();
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(all
        .iter()
        .all(|(line, key, _)| *line == 4 && key == "proxy.https.type"));
    assert!(
        messages
            .iter()
            .any(|m| m.contains("proxy.https.letsencrypt.contactEmail")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("hubfleet.http_redirect_listen: 0.0.0.0:80")),
        "{messages:?}"
    );

    let (line, msg) = error_at(
        &letsencrypt("", "").replace("ops@example.org", "ops"),
        "proxy.https.letsencrypt.contactEmail",
    );
    assert_eq!(line, 7);
    assert!(msg.contains("not an email address"), "{msg}");

    let (line, msg) = error_at(
        &letsencrypt(
            "      acmeServer: http://acme.example/dir\n",
            "  http_redirect_listen: 0.0.0.0:80\n",
        ),
        "proxy.https.letsencrypt.acmeServer",
    );
    assert_eq!(line, 8);
    assert!(msg.contains("https URL"), "{msg}");

    let (line, msg) = error_at(&letsencrypt("", ""), "proxy.https.type");
    assert_eq!(line, 4);
    assert!(
        msg.contains("hubfleet.http_redirect_listen: 0.0.0.0:80") && msg.contains("HTTP-01"),
        "{msg}"
    );

    let (line, msg) = error_at(
        &letsencrypt("", "  http_redirect_listen: 0.0.0.0:443\n"),
        "hubfleet.http_redirect_listen",
    );
    assert_eq!(line, 10);
    assert!(msg.contains("same address as `hubfleet.listen`"), "{msg}");

    let (line, msg) = error_at(
        &letsencrypt("", "  http_redirect_listen: port 80\n"),
        "hubfleet.http_redirect_listen",
    );
    assert_eq!(line, 10);
    assert!(
        msg.contains("`port 80` is not an IP address and port"),
        "{msg}"
    );
}

#[test]
fn letsencrypt_must_cover_the_hubs_urls() {
    let yaml = letsencrypt(
        "",
        "  http_redirect_listen: 0.0.0.0:80\nhub:\n  config:\n    JupyterHub:\n      subdomain_host: https://jupyter.example.org\n",
    );
    let (line, msg) = error_at(&yaml, "proxy.https.hosts");
    assert_eq!(line, 5);
    assert!(msg.contains("`jupyter.example.org`"), "{msg}");

    // With users on hosts of their own, HTTP-01 leaves them uncovered: said at load.
    let c = load(&letsencrypt(
        "",
        "  http_redirect_listen: 0.0.0.0:8080\nhub:\n  config:\n    JupyterHub:\n      subdomain_host: https://hub.example.org\n",
    ));
    let w = warnings(&c);
    assert!(
        w.iter().any(
            |w| w.contains("proxy.https.hosts: covers the hub's host only")
                && w.contains("<user>.hub.example.org")
                && w.contains("*.hub.example.org")
        ),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|w| w.contains("hubfleet.http_redirect_listen: is on port 8080")),
        "{w:?}"
    );
}

#[test]
fn plain_http_urls_contradict_https() {
    let (line, msg) = error_at("hub:\n  config:\n    JupyterHub:\n      subdomain_host: http://hub.example.org\nproxy:\n  https:\n    enabled: true\n    type: offload\n", "hub.config.JupyterHub.subdomain_host");
    assert_eq!(line, 4);
    assert!(msg.contains("write `https://hub.example.org`"), "{msg}");

    let (line, msg) = error_at(&format!(
        "hubfleet:\n  public_url: http://hub.example.org\nproxy:\n  https:\n    enabled: true\n    type: manual\n    manual:\n      cert: |\n        {CERT}\n      key: |\n        {KEY}\n"
    ), "hubfleet.public_url");
    assert_eq!(line, 2);
    assert!(msg.contains("https://hub.example.org"), "{msg}");
}

#[test]
fn manual_and_secret_mistakes_are_named() {
    let (line, msg) = error_at(
        "proxy:\n  https:\n    enabled: true\n    type: manual\n    manual:\n      cert: x\n",
        "proxy.https.manual.cert",
    );
    assert_eq!(line, 6);
    assert!(msg.contains("is not a PEM certificate"), "{msg}");

    let (line, msg) = error_at(&format!(
        "proxy:\n  https:\n    enabled: true\n    type: manual\n    manual:\n      cert: |\n        {CERT}\n"
    ), "proxy.https.manual");
    assert_eq!(line, 5);
    assert!(msg.contains("needs `proxy.https.manual.key`"), "{msg}");

    let (line, msg) = error_at(&format!(
        "proxy:\n  https:\n    enabled: true\n    type: manual\n    manual:\n      cert: |\n        {CERT}\n      key: secret-value\n"
    ), "proxy.https.manual.key");
    assert_eq!(line, 10);
    assert!(msg.contains("is not a PEM private key"), "{msg}");
    assert!(
        !msg.contains("secret-value"),
        "the key is never echoed: {msg}"
    );

    let (line, msg) = error_at(
        "proxy:\n  https:\n    enabled: true\n    type: secret\n",
        "proxy.https.type",
    );
    assert_eq!(line, 4);
    assert!(msg.contains("needs `proxy.https.secret.name`"), "{msg}");

    let (line, msg) = error_at(
        "proxy:\n  https:\n    enabled: true\n    type: kubernetes\n",
        "proxy.https.type",
    );
    assert_eq!(line, 4);
    assert!(
        msg.contains(
            "`kubernetes` is not an HTTPS type; use `letsencrypt`, `manual`, `secret` or `offload`"
        ),
        "{msg}"
    );
}

#[test]
fn another_types_settings_are_warned_about() {
    let c = load(&format!(
        "proxy:\n  https:\n    enabled: true\n    type: manual\n    manual:\n      cert: |\n        {CERT}\n      key: |\n        {KEY}\n    letsencrypt:\n      contactEmail: ops@example.org\n"
    ));
    let w = warnings(&c);
    assert!(
        w.iter().any(|w| w
            .contains("proxy.https.letsencrypt: has no effect: `proxy.https.type` is `manual`")),
        "{w:?}"
    );
}
