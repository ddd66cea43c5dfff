//! HTTPS served by `hubfleet serve` itself (`proxy.https`, z2jh's keys): a certificate from the
//! config file (`manual`), from files (`secret`), or from an ACME server (`letsencrypt`).
//!
//! Certificates come from a test CA made with rcgen; clients trust that CA and nothing else.
//! The ACME server is a STAND-IN (`support/acme_standin.rs`): no real ACME server can be reached
//! from the test machines. It validates HTTP-01 by really fetching the challenge from the hub.

#[path = "support/acme_standin.rs"]
mod acme_standin;
mod common;
#[path = "support/test_ca.rs"]
mod test_ca;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use acme_standin::AcmeStandIn;
use common::{fake_singleuser, free_port, python_env, Mode, TestHub};
use test_ca::TestCa;

/// Long enough for the hub not to warn that the certificate expires soon.
const MONTH: Duration = Duration::from_secs(30 * 86_400);

/// A client that trusts only `ca_pem`, speaks HTTP/2 when offered, finds `*.localhost`, keeps
/// cookies, reports the server's certificate, and opens a new connection for every request.
fn https_client(ca_pem: &str) -> reqwest::Client {
    common::client_builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .tls_info(true)
        .cookie_store(true)
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The leaf certificate (DER) a new TLS connection to `url` is given.
async fn served_leaf(ca_pem: &str, url: &str) -> Vec<u8> {
    let response = https_client(ca_pem).get(url).send().await.unwrap();
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("a TLS connection has a peer certificate")
        .to_vec()
}

/// The first certificate (DER) in a PEM file.
fn leaf_in(pem_file: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(pem_file).unwrap();
    rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

/// `text` as a YAML block scalar's lines, indented by `indent` spaces.
fn block(text: &str, indent: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(indent)))
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Log in through the form with `client`; the response to the POST.
async fn login(client: &reqwest::Client, hub: &str, user: &str) -> reqwest::Response {
    let page = client.get(format!("{hub}/hub/login")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let xsrf = common::page_xsrf(&page.text().await.unwrap()).expect("the login form has _xsrf");
    client
        .post(format!("{hub}/hub/login"))
        .form(&[("username", user), ("password", "x"), ("_xsrf", &xsrf)])
        .send()
        .await
        .unwrap()
}

const DUMMY: &str = "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n";

fn manual_https(leaf: &test_ca::Leaf, ca: &TestCa) -> String {
    // The chain as a server sends it: the leaf, then its CA.
    format!(
        "proxy:\n  https:\n    enabled: true\n    type: manual\n    hosts: [localhost]\n    manual:\n      cert: |\n{}{}      key: |\n{}",
        block(&leaf.cert_pem, 8),
        block(&ca.cert_pem, 8),
        block(&leaf.key_pem, 8)
    )
}

/// `type: manual`: TLS with the inline certificate, HTTP/2 by ALPN, the hub's cookies `Secure`
/// and `__Host-` (https `subdomain_host`), plain HTTP sent to HTTPS on the redirect port, and
/// the API still reachable over plain HTTP from this machine (where users' servers call it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_certificate_serves_https_with_http2_and_secure_cookies() {
    let ca = TestCa::new("hubfleet test CA");
    let leaf = ca.leaf(&["localhost", "*.localhost", "alice.localhost"], MONTH);
    let redirect = free_port();
    let yaml = format!(
        "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n      subdomain_host: https://localhost:{{hub_port}}\nsingleuser:\n  cmd: {}\n{}",
        fake_singleuser(),
        manual_https(&leaf, &ca)
    );
    let hub = TestHub::start_mode(
        Mode::Paths,
        &yaml,
        &format!("  http_redirect_listen: 127.0.0.1:{redirect}\n"),
        &python_env(),
        &[],
    );
    let base = format!("https://localhost:{}", hub.port);

    let client = https_client(&ca.cert_pem);
    let page = client
        .get(format!("{base}/hub/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.version(), reqwest::Version::HTTP_2, "ALPN chose h2");
    let served = page
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .unwrap()
        .to_vec();
    let configured = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes())
            .unwrap()
            .to_vec()
    };
    assert_eq!(served, configured, "the configured certificate is served");

    // A login over HTTPS: every hub cookie is Secure and `__Host-` prefixed (Path=/).
    let response = login(&client, &base, "alice").await;
    assert_eq!(response.status(), 302, "{}", hub.log());
    let cookies = common::set_cookies(&response);
    assert!(!cookies.is_empty());
    for cookie in &cookies {
        assert!(cookie.starts_with("__Host-"), "{cookie}");
        assert!(cookie.contains("; Secure"), "{cookie}");
        assert!(cookie.contains("Path=/;"), "{cookie}");
    }
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("__Host-jupyterhub-hub-login=")),
        "{cookies:?}"
    );
    // The browser follows the hub's redirect over HTTPS, logged in.
    let home = client.get(format!("{base}/hub/home")).send().await.unwrap();
    assert_eq!(home.status(), 200);
    assert!(home.text().await.unwrap().contains("alice"));

    // Users' servers reach the API on the same port over plain HTTP from this machine.
    let api = reqwest::get(format!("http://127.0.0.1:{}/hub/api", hub.port))
        .await
        .unwrap();
    assert_eq!(api.status(), 200);
    assert!(api.text().await.unwrap().contains("version"));

    // Plain HTTP on the redirect port: 301 to the same host and path over https.
    let plain = common::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let moved = plain
        .get(format!(
            "http://localhost:{redirect}/hub/login?next=%2Fhub%2Fhome"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 301);
    assert_eq!(
        moved.headers()["location"],
        format!(
            "https://localhost:{}/hub/login?next=%2Fhub%2Fhome",
            hub.port
        )
        .as_str()
    );
    // ACME challenges are answered there too; an unknown token is a 404, not a redirect.
    let unknown = plain
        .get(format!(
            "http://localhost:{redirect}/.well-known/acme-challenge/nothing"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // The certificate covers the hub and users' hosts: no warning about either.
    let log = hub.log();
    assert!(!log.contains("does not cover"), "{log}");
}

/// `type: secret`: the files are read where they are, and again on SIGHUP (certbot's deploy
/// hook, `systemctl reload`): new connections get the new certificate without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_files_are_read_again_on_sighup() {
    let ca = TestCa::new("hubfleet test CA");
    let tls_dir = tempfile::tempdir().unwrap();
    let write = |leaf: &test_ca::Leaf| {
        std::fs::write(
            tls_dir.path().join("fullchain.pem"),
            format!("{}{}", leaf.cert_pem, ca.cert_pem),
        )
        .unwrap();
        std::fs::write(tls_dir.path().join("privkey.pem"), &leaf.key_pem).unwrap();
    };
    let first = ca.leaf(&["localhost"], MONTH);
    write(&first);
    let yaml = format!(
        "{DUMMY}proxy:\n  https:\n    enabled: true\n    type: secret\n    secret:\n      name: {}\n      crt: fullchain.pem\n      key: privkey.pem\n",
        tls_dir.path().display()
    );
    let hub = TestHub::start_mode(Mode::Paths, &yaml, "", &python_env(), &[]);
    let url = format!("https://localhost:{}/hub/health", hub.port);
    let before = served_leaf(&ca.cert_pem, &url).await;

    let second = ca.leaf(&["localhost"], MONTH);
    write(&second);
    let pid = hub.pid().expect("the hub runs");
    let status = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = served_leaf(&ca.cert_pem, &url).await;
        if now != before {
            assert_eq!(now, leaf_in(&tls_dir.path().join("fullchain.pem")));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not bring the new certificate; log:\n{}",
            hub.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(hub.log().contains("certificate files read again"));
}

/// The stand-in's CA in a file, for the hub's `SSL_CERT_FILE` (what a hub using a private ACME
/// server, e.g. step-ca, is given too).
fn trust_file(dir: &Path, standin: &AcmeStandIn) -> PathBuf {
    let path = dir.join("acme-ca.pem");
    std::fs::write(&path, &standin.ca_pem).unwrap();
    path
}

fn letsencrypt_yaml(standin: &AcmeStandIn) -> String {
    format!(
        "{DUMMY}proxy:
  https:
    enabled: true
    type: letsencrypt
    hosts: [localhost]
    letsencrypt:
      contactEmail: ops@example.org
      acmeServer: {}
",
        standin.directory
    )
}

/// `type: letsencrypt` against the stand-in ACME server: a certificate is obtained at start
/// (HTTP-01 answered on the redirect port), kept in the data dir with private modes, renewed
/// before it expires (the stand-in issues 45-second certificates, so renewal comes after 30 s)
/// and served to new connections without a restart; a restarted hub reuses the kept certificate
/// and account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn letsencrypt_issues_at_start_renews_before_expiry_and_keeps_its_files() {
    let redirect = free_port();
    let standin = AcmeStandIn::start(redirect, Duration::from_secs(45)).await;
    let dir = tempfile::tempdir().unwrap();
    let trust = trust_file(dir.path(), &standin);
    let mut hub = TestHub::start_mode(
        Mode::Paths,
        &letsencrypt_yaml(&standin),
        // Users open the hub at this URL: the certificate must cover its host.
        &format!(
            "  public_url: https://localhost:{{hub_port}}\n  http_redirect_listen: 127.0.0.1:{redirect}\n"
        ),
        &python_env(),
        &[("SSL_CERT_FILE", trust.to_str().unwrap())],
    );
    let url = format!("https://localhost:{}/hub/health", hub.port);

    // Issued at start: one account, one order, the challenge fetched from the hub.
    assert_eq!(standin.count("new-account"), 1);
    assert_eq!(standin.count("new-order"), 1);
    assert_eq!(standin.count("validation"), 1);
    assert_eq!(standin.count("finalize"), 1);
    let first = served_leaf(&standin.ca_pem, &url).await;
    let tls = hub.data_dir().join("tls");
    let in_tls = |prefix: &str| -> Vec<PathBuf> {
        std::fs::read_dir(&tls)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            })
            .collect()
    };
    // One certificate and one account, named after the ACME server they come from.
    let kept = in_tls("certificate-localhost_")
        .pop()
        .expect("a kept certificate");
    assert_eq!(
        leaf_in(&kept),
        first,
        "the served certificate is the kept one"
    );
    assert_eq!(mode(&tls), 0o700);
    assert_eq!(mode(&kept), 0o600);
    let accounts = in_tls("acme-account-localhost_");
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    assert_eq!(mode(&accounts[0]), 0o600);
    let response = https_client(&standin.ca_pem)
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);

    // Renewed in the background when a third of its lifetime is left; new connections see it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let renewed = loop {
        let now = served_leaf(&standin.ca_pem, &url).await;
        if now != first {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "not renewed within 60 s; log:\n{}",
            hub.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(standin.count("finalize"), 2);
    assert_eq!(standin.count("new-account"), 1, "the account is reused");
    assert_eq!(leaf_in(&kept), renewed, "the renewed certificate is kept");
    assert!(hub.log().contains("renewed the certificate"));

    // Nothing lost on a restart: the kept certificate and account are used, nothing is asked.
    hub.kill();
    hub.launch();
    assert_eq!(served_leaf(&standin.ca_pem, &url).await, renewed);
    assert_eq!(standin.count("new-order"), 2);
    assert_eq!(standin.count("new-account"), 1);
}

/// `type: letsencrypt` when the ACME server cannot reach the hub's HTTP-01 port (port 80 not
/// forwarded, a firewall): the stand-in finds nothing listening where it fetches the
/// challenge and marks it invalid. The hub does not start, and says which host failed, what
/// the ACME server said, and what to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn letsencrypt_challenge_that_fails_stops_the_start_with_the_reason() {
    let redirect = free_port();
    let unreachable = free_port();
    let standin = AcmeStandIn::start(unreachable, Duration::from_secs(3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let trust = trust_file(dir.path(), &standin);
    let config = dir.path().join("hub.yaml");
    let port = free_port();
    std::fs::write(
        &config,
        format!(
            "{}hubfleet:\n  listen: 127.0.0.1:{port}\n  data_dir: {}\n  http_redirect_listen: 127.0.0.1:{redirect}\n  public_url: https://localhost:{port}\n{}",
            letsencrypt_yaml(&standin),
            dir.path().join("data").display(),
            // Tests run as root in CI (see `TestHub::start_mode`).
            if nix::unistd::geteuid().is_root() {
                "  local:\n    allow_root: true\n"
            } else {
                ""
            }
        ),
    )
    .unwrap();
    let run = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_hubfleet"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("SSL_CERT_FILE", &trust)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    });
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the hub stops by itself")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stderr}");
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(standin.count("validation"), 1, "{stderr}");
    for expected in [
        "could not validate localhost",
        "it said:",
        &format!("127.0.0.1:{unreachable}"),
        "Connection refused",
        "urn:ietf:params:acme:error:connection",
        "DNS A/AAAA",
        "port 80",
        &format!("hubfleet.http_redirect_listen (127.0.0.1:{redirect})"),
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    let kept: Vec<_> = std::fs::read_dir(dir.path().join("data/tls"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("certificate-"))
        .collect();
    assert!(kept.is_empty(), "no certificate is kept: {kept:?}");
}

/// Before it creates anything, `serve` checks that the certificate can be used and that the
/// redirect port is free, and reports both problems at once.
#[test]
fn unusable_certificate_and_taken_redirect_port_stop_the_start_before_anything_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let config = dir.path().join("hub.yaml");
    std::fs::write(
        &config,
        format!(
            "{DUMMY}proxy:\n  https:\n    enabled: true\n    type: secret\n    secret:\n      name: {}\n\
             hubfleet:\n  listen: 127.0.0.1:{}\n  data_dir: {}\n  http_redirect_listen: 127.0.0.1:{taken_port}\n{}",
            dir.path().join("no-such-dir").display(),
            free_port(),
            dir.path().join("data").display(),
            if nix::unistd::geteuid().is_root() {
                "  local:\n    allow_root: true\n"
            } else {
                ""
            }
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hubfleet"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stderr}");
    assert!(!out.status.success(), "{stderr}");
    for expected in [
        "nothing was created",
        &format!("cannot listen on 127.0.0.1:{taken_port} (hubfleet.http_redirect_listen)"),
        "proxy.https.secret:",
        "no-such-dir/tls.crt",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert!(!dir.path().join("data").exists());
    drop(taken);
}

/// A capability line of `/proc/<pid>/status` (`CapAmb`, `CapEff`, …) as a bit set.
fn capabilities(pid: u32, set: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{set}:")))
        .unwrap();
    u64::from_str_radix(line.trim(), 16).unwrap()
}

/// As systemd's `AmbientCapabilities=CAP_NET_BIND_SERVICE` runs it (docs/deploy.md): an
/// unprivileged hub binds a port below 1024, and the programs it starts (here a managed service;
/// users' servers are started the same way) do not inherit the capability.
#[test]
fn a_hub_given_the_port_capability_keeps_it_from_the_programs_it_starts() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: giving an account a capability needs root");
        return;
    }
    const NET_BIND_SERVICE: u64 = 1 << 10;
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let dir = tempfile::tempdir().unwrap();
    nix::unistd::chown(dir.path(), Some(nobody.uid), Some(nobody.gid)).unwrap();
    let port = (600..1000)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below 1024");
    let config = dir.path().join("hub.yaml");
    std::fs::write(
        &config,
        format!(
            "{DUMMY}  services:\n    probe:\n      command: [sleep, '600']\nhubfleet:\n  listen: 127.0.0.1:{port}\n  data_dir: {}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("hub.log")).unwrap();
    let mut hub = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--inh-caps=+net_bind_service",
            "--ambient-caps=+net_bind_service",
            "--",
            env!("CARGO_BIN_EXE_hubfleet"),
            "serve",
            "--config",
        ])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid_file = dir.path().join("data/services/probe.pid");
    let deadline = Instant::now() + Duration::from_secs(30);
    let probe = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse::<u32>().ok())
        {
            break pid;
        }
        let log = std::fs::read_to_string(dir.path().join("hub.log")).unwrap_or_default();
        assert!(
            hub.try_wait().unwrap().is_none() && Instant::now() < deadline,
            "the hub did not start its service; log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let hub_pid = hub.id();
    let (hub_effective, hub_ambient) = (
        capabilities(hub_pid, "CapEff"),
        capabilities(hub_pid, "CapAmb"),
    );
    let (probe_permitted, probe_ambient) =
        (capabilities(probe, "CapPrm"), capabilities(probe, "CapAmb"));
    let _ = Command::new("kill")
        .args(["-9", &probe.to_string()])
        .status();
    let _ = hub.kill();
    let _ = hub.wait();
    assert_eq!(
        hub_effective & NET_BIND_SERVICE,
        NET_BIND_SERVICE,
        "the hub keeps it"
    );
    assert_eq!(hub_ambient, 0, "the hub's ambient set is cleared");
    assert_eq!(probe_permitted, 0, "its service has no capability");
    assert_eq!(probe_ambient, 0);
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/browser")
}

/// Real JupyterLab over HTTPS in Chromium, users on hosts of their own
/// (`subdomain_host: https://localhost:<port>`): log in, start a server, land in JupyterLab on
/// `https://alice.localhost:<port>/user/alice/lab` and run a kernel (its WebSocket over TLS
/// through the proxy). Chromium trusts the test certificates by their public keys
/// (`--ignore-certificate-errors-spki-list` with the SPKI hashes of the test CA and the leaf);
/// certificate checks stay on for everything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jupyterlab_over_https_in_chromium() {
    let ca = TestCa::new("hubfleet test CA");
    // rustls and Chromium refuse a wildcard right under a one-label name (`*.localhost`), which
    // `*.hub.example.org` is not: the test certificate names alice's host too.
    let leaf = ca.leaf(&["localhost", "*.localhost", "alice.localhost"], MONTH);
    let yaml = format!(
        "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n      subdomain_host: https://localhost:{{hub_port}}\nsingleuser:\n  defaultUrl: /lab\n{}",
        manual_https(&leaf, &ca)
    );
    let hub = TestHub::start_mode(Mode::Paths, &yaml, "", &python_env(), &[]);
    let dir = fixture();
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "{}/node_modules is missing: run `npm ci` there (scripts/test does)",
        dir.display()
    );
    let chromium =
        std::env::var("HUBFLEET_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let screenshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    let hub_url = format!("https://localhost:{}", hub.port);
    let spki = format!("{},{}", ca.spki_sha256, leaf.spki_sha256);
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(dir.join("https_lab.mjs"))
            .current_dir(&dir)
            .env("HUB_URL", hub_url)
            .env("CHROMIUM", &chromium)
            .env("SCREENSHOT_DIR", screenshots)
            .env("SPKI_HASHES", spki)
            .output()
            .expect("node is needed for the browser tests")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    let log = hub.log();
    let server_log =
        std::fs::read_to_string(hub.data_dir().join("logs/alice.log")).unwrap_or_default();
    assert!(
        output.status.success(),
        "https_lab.mjs failed:\n{stdout}\n{stderr}\n--- hub log (end) ---\n{}\n--- alice's server log (end) ---\n{}",
        tail(&log, 6000),
        tail(&server_log, 6000)
    );
}

fn tail(text: &str, max: usize) -> &str {
    let start = text.len().saturating_sub(max);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    &text[start..]
}
