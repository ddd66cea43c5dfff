//! Helpers for the `proxy_*` tests: run the real `hubfleet proxy` binary on free ports, and
//! small upstream servers that record what reaches them. Included with `#[path]` by the
//! `proxy_*` test files; compiled alone it is an empty test binary.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "proxy-test-token";

#[path = "support/free_port.rs"]
mod free_port_support;
pub use free_port_support::free_port;

/// A running `hubfleet proxy`; killed on drop.
pub struct ProxyProc {
    pub port: u16,
    pub api_port: u16,
    pub metrics_port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl ProxyProc {
    /// Start with `--ip 127.0.0.1` and free ports for the proxy, API and metrics, the token in
    /// `CONFIGPROXY_AUTH_TOKEN`, plus `extra` flags.
    pub fn start(extra: &[&str]) -> ProxyProc {
        Self::start_with_token(extra, Some(TOKEN))
    }

    pub fn start_with_token(extra: &[&str], token: Option<&str>) -> ProxyProc {
        let dir = tempfile::tempdir().unwrap();
        let (port, api_port, metrics_port) = (free_port(), free_port(), free_port());
        let log = std::fs::File::create(dir.path().join("proxy.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hubfleet"));
        cmd.arg("proxy")
            .args(["--ip", "127.0.0.1", "--port", &port.to_string()])
            .args(["--api-ip", "127.0.0.1", "--api-port", &api_port.to_string()])
            .args(["--metrics-ip", "127.0.0.1"])
            .args(["--metrics-port", &metrics_port.to_string()])
            .args(extra)
            .env("RUST_LOG", "info,hubfleet_proxy=debug")
            .env_remove("CONFIGPROXY_AUTH_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(t) = token {
            cmd.env("CONFIGPROXY_AUTH_TOKEN", t);
        }
        let child = cmd.spawn().unwrap();
        let mut p = ProxyProc {
            port,
            api_port,
            metrics_port,
            dir,
            child: Some(child),
        };
        p.wait_up();
        p
    }

    fn wait_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("proxy exited with {status}; log:\n{}", self.log());
            }
            let up = |port| TcpStream::connect(("127.0.0.1", port)).is_ok();
            if up(self.port) && up(self.api_port) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "proxy did not listen within 20 s; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn api(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/api/routes{path}", self.api_port)
    }

    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.metrics_port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Add a route through the REST API.
    pub async fn add_route(&self, path: &str, body: serde_json::Value) {
        let resp = client()
            .post(self.api(path))
            .header("Authorization", format!("token {TOKEN}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            201,
            "POST {path}: {}",
            resp.text().await.unwrap()
        );
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_none()
    }
}

impl Drop for ProxyProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// What reached an upstream: "METHOD uri" per request.
#[derive(Clone, Default)]
pub struct Seen(pub Arc<Mutex<Vec<String>>>);

impl Seen {
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    pub fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// An upstream on 127.0.0.1:0 that answers every request with JSON naming itself, the request
/// line, some headers and the body it received; `/slow-body` streams two chunks. Returns its
/// base URL and its log of requests.
pub async fn upstream(name: &'static str) -> (String, Seen) {
    use axum::body::Bytes;
    use axum::extract::Request;
    let seen = Seen::default();
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |req: Request| {
        let log = log.clone();
        async move {
            let line = format!("{} {}", req.method(), req.uri());
            let version = req.version();
            log.0.lock().unwrap().push(line.clone());
            let headers: serde_json::Map<String, serde_json::Value> = req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        serde_json::Value::from(v.to_str().unwrap_or("?")),
                    )
                })
                .collect();
            let body: Bytes = axum::body::to_bytes(req.into_body(), 1 << 24)
                .await
                .unwrap_or_default();
            axum::Json(serde_json::json!({
                "server": name,
                "request": line,
                "version": format!("{:?}", version),
                "headers": headers,
                "body": String::from_utf8_lossy(&body),
            }))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

/// A port with nothing listening on it.
pub fn dead_target() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// Run `openssl` to make a self-signed certificate for `cn` at `dir/<stem>.crt|.key`.
pub fn self_signed(dir: &Path, stem: &str, cn: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{stem}.crt"));
    let key = dir.join(format!("{stem}.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj"])
        .arg(format!("/CN={cn}"))
        .args(["-addext", &format!("subjectAltName=DNS:{cn},IP:127.0.0.1")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl must be installed to make test certificates");
    assert!(
        out.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

impl ProxyProc {
    /// Start `hubfleet proxy` with exactly `args` (no ports of ours), the token set, and wait
    /// until `ready` says so (e.g. a unix socket exists).
    pub fn start_raw(args: &[&str], ready: impl Fn(&Path) -> bool) -> ProxyProc {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("proxy.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hubfleet"))
            .arg("proxy")
            .args(args)
            .env("RUST_LOG", "info,hubfleet_proxy=debug")
            .env("CONFIGPROXY_AUTH_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut p = ProxyProc {
            port: 0,
            api_port: 0,
            metrics_port: 0,
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready(p.path()) {
            if let Some(status) = p.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("proxy exited with {status}; log:\n{}", p.log());
            }
            assert!(
                Instant::now() < deadline,
                "proxy not ready; log:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        p
    }
}

/// Run `hubfleet proxy` with `args` and expect it to exit with an error: returns its output.
pub fn proxy_fails(args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubfleet"))
        .arg("proxy")
        .args(["--ip", "127.0.0.1", "--port", &free_port().to_string()])
        .args(["--api-port", &free_port().to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("hubfleet proxy {args:?} kept running; it should have refused");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !status.success(),
        "hubfleet proxy {args:?} succeeded: {text}"
    );
    text
}

/// A test CA and certificates it signed, as JupyterHub's internal_ssl makes them.
pub struct TestCa {
    pub ca: PathBuf,
    ca_key: PathBuf,
    dir: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let ca = dir.join(format!("{name}-ca.crt"));
        let ca_key = dir.join(format!("{name}-ca.key"));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} CA"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            ca_key.to_str().unwrap(),
            "-out",
            ca.to_str().unwrap(),
        ]);
        TestCa {
            ca,
            ca_key,
            dir: dir.to_owned(),
        }
    }

    /// A leaf for `cn` (also valid for 127.0.0.1 and localhost), usable by servers and
    /// clients: (cert, key).
    pub fn issue(&self, cn: &str) -> (PathBuf, PathBuf) {
        let cert = self.dir.join(format!("{cn}.crt"));
        let key = self.dir.join(format!("{cn}.key"));
        let csr = self.dir.join(format!("{cn}.csr"));
        let ext = self.dir.join(format!("{cn}.ext"));
        std::fs::write(
            &ext,
            format!(
                "subjectAltName=DNS:{cn},DNS:localhost,IP:127.0.0.1\n\
                 extendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n"
            ),
        )
        .unwrap();
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            csr.to_str().unwrap(),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            csr.to_str().unwrap(),
            "-CA",
            self.ca.to_str().unwrap(),
            "-CAkey",
            self.ca_key.to_str().unwrap(),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            ext.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]);
        (cert, key)
    }
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl must be installed to make test certificates");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An HTTPS server (Python's ssl module, a peer independent of rustls) on a free port that
/// answers every GET with JSON: its name, the path, and the subject CN of the client
/// certificate, which it requires (signed by `client_ca`) when that is given. Killed on drop.
pub struct HttpsUpstream {
    pub url: String,
    child: Child,
}

impl Drop for HttpsUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn https_upstream(cert: &Path, key: &Path, client_ca: Option<&Path>) -> HttpsUpstream {
    const SERVER: &str = r#"
import http.server, json, ssl, sys
cert, key, ca, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        peer = self.connection.getpeercert() or {}
        cn = [v for rdn in peer.get("subject", ()) for (k, v) in rdn if k == "commonName"]
        body = json.dumps({"server": "https", "path": self.path, "client_cn": cn[0] if cn else None,
                           "host": self.headers.get("Host")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
if ca:
    ctx.load_verify_locations(ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"#;
    let port = free_port();
    let child = Command::new("python3")
        .args(["-c", SERVER])
        .arg(cert)
        .arg(key)
        .arg(client_ca.map(|p| p.to_str().unwrap()).unwrap_or(""))
        .arg(port.to_string())
        .stdin(Stdio::null())
        .spawn()
        .expect("python3 runs the HTTPS test upstream");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "HTTPS upstream did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    HttpsUpstream {
        url: format!("https://127.0.0.1:{port}"),
        child,
    }
}
