//! configurable-http-proxy's command-line flags beyond the basics, each against the real
//! `hubfleet proxy` binary: request and response rewriting, error pages from a directory, the
//! https redirect port, unix sockets, internal SSL (mutual TLS on the API and to targets), and
//! the flags that are refused with a clear error.

#[path = "proxy_common.rs"]
mod proxy_common;

use std::path::Path;
use std::time::Duration;

use proxy_common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get_json(url: &str) -> Value {
    let resp = client().get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "GET {url}");
    resp.json().await.unwrap()
}

#[tokio::test]
async fn custom_headers_are_added_and_x_forward_can_be_turned_off() {
    let (up, _) = upstream("up").await;
    let p = ProxyProc::start(&[
        "--default-target",
        &up,
        "--custom-header",
        "X-One: 1",
        "--custom-header",
        " x-two :two words ",
    ]);
    let v = get_json(&p.url("/a")).await;
    assert_eq!(v["headers"]["x-one"], "1");
    assert_eq!(v["headers"]["x-two"], "two words");
    assert_eq!(v["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(v["headers"]["x-forwarded-port"], p.port.to_string());

    let quiet = ProxyProc::start(&["--default-target", &up, "--no-x-forward"]);
    let v = get_json(&quiet.url("/a")).await;
    let names: Vec<&String> = v["headers"].as_object().unwrap().keys().collect();
    assert!(
        !names.iter().any(|n| n.starts_with("x-forwarded-")),
        "{names:?}"
    );
    assert!(v["headers"].get("x-one").is_none());

    assert!(proxy_fails(&["--custom-header", "no colon"]).contains("custom header"));
}

#[tokio::test]
async fn change_origin_sends_the_targets_host() {
    let (up, _) = upstream("up").await;
    let target_host = up.trim_start_matches("http://").to_owned();
    let plain = ProxyProc::start(&["--default-target", &up]);
    let v = get_json(&plain.url("/x")).await;
    assert_eq!(v["headers"]["host"], format!("127.0.0.1:{}", plain.port));

    let p = ProxyProc::start(&["--default-target", &up, "--change-origin"]);
    let v = get_json(&p.url("/x")).await;
    assert_eq!(v["headers"]["host"], target_host);
    // X-Forwarded-Host still tells the target what the client asked for.
    assert_eq!(
        v["headers"]["x-forwarded-host"],
        format!("127.0.0.1:{}", p.port)
    );
}

/// An upstream that redirects to whatever `?to=` says, with `status`.
async fn redirecting_upstream() -> String {
    use axum::extract::Query;
    use std::collections::HashMap;
    let app = axum::Router::new().fallback(|Query(q): Query<HashMap<String, String>>| async move {
        let status: u16 = q.get("status").map_or(302, |s| s.parse().unwrap());
        axum::response::Response::builder()
            .status(status)
            .header("location", q.get("to").cloned().unwrap_or_default())
            .body(axum::body::Body::empty())
            .unwrap()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn location(url: &str, to: &str, status: u16) -> String {
    let resp = client()
        .get(url)
        .query(&[("to", to), ("status", &status.to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), status);
    resp.headers()["location"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn auto_rewrite_and_protocol_rewrite_fix_redirects_to_the_target() {
    let up = redirecting_upstream().await;
    let own = format!("{up}/user/a/lab?x=1");
    let elsewhere = "http://example.org:9/x";

    let plain = ProxyProc::start(&["--default-target", &up]);
    assert_eq!(location(&plain.url("/r"), &own, 302).await, own);

    let p = ProxyProc::start(&["--default-target", &up, "--auto-rewrite"]);
    let front = format!("127.0.0.1:{}", p.port);
    for status in [201, 301, 302, 307, 308] {
        assert_eq!(
            location(&p.url("/r"), &own, status).await,
            format!("http://{front}/user/a/lab?x=1"),
            "status {status}"
        );
    }
    // Not a redirect CHP rewrites, another host, or a relative location: untouched.
    assert_eq!(location(&p.url("/r"), &own, 303).await, own);
    assert_eq!(location(&p.url("/r"), elsewhere, 302).await, elsewhere);
    assert_eq!(location(&p.url("/r"), "/rel", 302).await, "/rel");

    let both = ProxyProc::start(&[
        "--default-target",
        &up,
        "--auto-rewrite",
        "--protocol-rewrite",
        "https",
    ]);
    assert_eq!(
        location(&both.url("/r"), &own, 302).await,
        format!("https://127.0.0.1:{}/user/a/lab?x=1", both.port)
    );
    let proto_only = ProxyProc::start(&["--default-target", &up, "--protocol-rewrite", "https"]);
    assert_eq!(
        location(&proto_only.url("/r"), &own, 301).await,
        own.replace("http://", "https://")
    );
    assert!(proxy_fails(&["--protocol-rewrite", "ftp"]).contains("ftp"));
}

#[tokio::test]
async fn error_path_serves_code_html_then_error_html() {
    let pages = tempfile::tempdir().unwrap();
    std::fs::write(pages.path().join("404.html"), "<h1>no such page</h1>").unwrap();
    std::fs::write(pages.path().join("error.html"), "<h1>something broke</h1>").unwrap();
    let p = ProxyProc::start(&["--error-path", pages.path().to_str().unwrap()]);
    p.add_route("/user/gone", json!({"target": dead_target()}))
        .await;

    let resp = client().get(p.url("/nothing/here")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["content-type"], "text/html");
    assert_eq!(resp.text().await.unwrap(), "<h1>no such page</h1>");

    let resp = client().get(p.url("/user/gone/x")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.text().await.unwrap(), "<h1>something broke</h1>");

    // Without any page in the directory: the plain reason, as CHP.
    let empty = tempfile::tempdir().unwrap();
    let bare = ProxyProc::start(&["--error-path", empty.path().to_str().unwrap()]);
    let resp = client().get(bare.url("/x")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.text().await.unwrap(), "Not Found");

    let both = proxy_fails(&[
        "--error-path",
        pages.path().to_str().unwrap(),
        "--error-target",
        "http://127.0.0.1:1",
    ]);
    assert!(both.contains("--error-path"), "{both}");
}

#[tokio::test]
async fn redirect_port_sends_plain_http_to_https() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "hub", "hub.test");
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let redirect = free_port();
    let p = ProxyProc::start(&[
        "--ssl-cert",
        cert,
        "--ssl-key",
        key,
        "--redirect-port",
        &redirect.to_string(),
    ]);
    let resp = client()
        .get(format!("http://127.0.0.1:{redirect}/user/a/lab?x=1"))
        .header("host", "hub.test:9999")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 301);
    assert_eq!(
        resp.headers()["location"],
        format!("https://hub.test:{}/user/a/lab?x=1", p.port)
    );
    // No Host (HTTP/1.0): 400, as CHP.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", redirect))
        .await
        .unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.0 400"), "{out}");

    let redirect = free_port();
    let _p443 = ProxyProc::start(&[
        "--ssl-cert",
        cert,
        "--ssl-key",
        key,
        "--redirect-port",
        &redirect.to_string(),
        "--redirect-to",
        "443",
    ]);
    let resp = client()
        .get(format!("http://127.0.0.1:{redirect}/x"))
        .header("host", "hub.test")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["location"], "https://hub.test/x");

    let err = proxy_fails(&["--redirect-port", &free_port().to_string()]);
    assert!(err.contains("--ssl-key"), "{err}");
}

/// One HTTP/1.1 exchange over a unix socket; returns the raw response.
async fn unix_exchange(path: &Path, request: &str) -> String {
    let mut s = tokio::net::UnixStream::connect(path).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

#[tokio::test]
async fn unix_sockets_for_proxy_api_metrics_and_targets() {
    // A target listening on a unix socket, reached as http+unix://<encoded path>.
    let up_dir = tempfile::tempdir().unwrap();
    let up_sock = up_dir.path().join("server a.sock");
    let app = axum::Router::new().fallback(|req: axum::extract::Request| async move {
        format!("unix upstream saw {}", req.uri())
    });
    let listener = tokio::net::UnixListener::bind(&up_sock).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let target = format!(
        "http+unix://{}",
        up_sock
            .to_str()
            .unwrap()
            .replace('/', "%2F")
            .replace(' ', "%20")
    );

    let socks = tempfile::tempdir().unwrap();
    let (proxy_sock, api_sock, metrics_sock) = (
        socks.path().join("proxy.sock"),
        socks.path().join("api.sock"),
        socks.path().join("metrics.sock"),
    );
    let p = ProxyProc::start_raw(
        &[
            "--socket",
            proxy_sock.to_str().unwrap(),
            "--api-socket",
            api_sock.to_str().unwrap(),
            "--metrics-socket",
            metrics_sock.to_str().unwrap(),
        ],
        |_| proxy_sock.exists() && api_sock.exists() && metrics_sock.exists(),
    );

    let body = json!({"target": format!("{target}/base")}).to_string();
    let resp = unix_exchange(
        &api_sock,
        &format!(
            "POST /api/routes/user/a HTTP/1.1\r\nHost: x\r\nAuthorization: token {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");

    let resp = unix_exchange(
        &proxy_sock,
        "GET /user/a/lab?x=1 HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}\n{}", p.log());
    assert!(
        resp.ends_with("unix upstream saw /base/user/a/lab?x=1"),
        "{resp}"
    );

    let resp = unix_exchange(
        &metrics_sock,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.contains("hubfleet_proxy_routes 1"), "{resp}");

    // A socket still in use is not taken over.
    let err = proxy_fails(&["--metrics-socket", metrics_sock.to_str().unwrap()]);
    assert!(err.contains("in use"), "{err}");
    // SIGTERM: the proxy exits and removes its socket files.
    let mut p = p;
    std::process::Command::new("kill")
        .args(["-TERM", &p.pid().to_string()])
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while p.alive() {
        assert!(
            std::time::Instant::now() < deadline,
            "proxy did not exit on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !proxy_sock.exists() && !api_sock.exists(),
        "socket files removed at exit"
    );
}

#[tokio::test]
async fn keep_alive_timeout_closes_idle_client_connections() {
    let (up, _) = upstream("up").await;
    let p = ProxyProc::start(&["--default-target", &up, "--keep-alive-timeout", "500"]);
    let mut s = tokio::net::TcpStream::connect(p.addr()).await.unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    // The response, then the proxy closes the idle connection (EOF) well before the 60 s default.
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("idle keep-alive connection is closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn include_prefix_and_prepend_path_can_be_turned_off() {
    let (up, _) = upstream("up").await;
    let p = ProxyProc::start(&["--no-include-prefix"]);
    p.add_route("/user/a", json!({"target": format!("{up}/base")}))
        .await;
    let v = get_json(&p.url("/user/a/lab/x?y=1")).await;
    assert_eq!(v["request"], "GET /base/lab/x?y=1");

    let q = ProxyProc::start(&["--no-prepend-path"]);
    q.add_route("/user/a", json!({"target": format!("{up}/base")}))
        .await;
    let v = get_json(&q.url("/user/a/lab?y=1")).await;
    assert_eq!(v["request"], "GET /user/a/lab?y=1");
}

fn mtls_client(ca: &Path, identity: Option<(&Path, &Path)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap())
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(20));
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(cert).unwrap();
        pem.extend(std::fs::read(key).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

/// JupyterHub's internal_ssl: the API speaks TLS and only to clients with a certificate from
/// its CA; targets are https:// and want the proxy's client certificate from theirs.
#[tokio::test]
async fn internal_ssl_mutual_tls_on_the_api_and_to_targets() {
    let dir = tempfile::tempdir().unwrap();
    let api_ca = TestCa::new(dir.path(), "proxy-api");
    let (api_cert, api_key) = api_ca.issue("proxy-api");
    let (hub_cert, hub_key) = api_ca.issue("hub");
    let other_ca = TestCa::new(dir.path(), "other");
    let (stranger_cert, stranger_key) = other_ca.issue("stranger");
    let client_ca = TestCa::new(dir.path(), "proxy-client");
    let (proxy_client_cert, proxy_client_key) = client_ca.issue("proxy-client");
    let (user_cert, user_key) = client_ca.issue("user-a");
    let server = https_upstream(&user_cert, &user_key, Some(&client_ca.ca));

    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let args = [
        "--api-ssl-key".into(),
        s(&api_key),
        "--api-ssl-cert".into(),
        s(&api_cert),
        "--api-ssl-ca".into(),
        s(&api_ca.ca),
        "--api-ssl-request-cert".into(),
        "--api-ssl-reject-unauthorized".into(),
        "--client-ssl-key".into(),
        s(&proxy_client_key),
        "--client-ssl-cert".into(),
        s(&proxy_client_cert),
        "--client-ssl-ca".into(),
        s(&client_ca.ca),
        "--client-ssl-request-cert".into(),
        "--client-ssl-reject-unauthorized".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = ProxyProc::start(&args);
    let api = format!("https://127.0.0.1:{}/api/routes", p.api_port);

    // The hub's certificate opens the API; none, or one from another CA, does not.
    let hub = mtls_client(&api_ca.ca, Some((&hub_cert, &hub_key)));
    let resp = hub
        .post(format!("{api}/user/a"))
        .header("Authorization", format!("token {TOKEN}"))
        .json(&json!({"target": server.url}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    for stranger in [
        mtls_client(&api_ca.ca, None),
        mtls_client(&api_ca.ca, Some((&stranger_cert, &stranger_key))),
    ] {
        let err = stranger.get(&api).send().await;
        assert!(
            err.is_err(),
            "API answered a client without a valid certificate"
        );
    }
    // Plain HTTP on the API port gets nowhere either.
    assert!(client()
        .get(format!("http://127.0.0.1:{}/api/routes", p.api_port))
        .send()
        .await
        .map_or(true, |r| r.status() != 200));

    // Through the proxy to the https target, which saw the proxy's client certificate.
    let v = get_json(&p.url("/user/a/lab")).await;
    assert_eq!(v["server"], "https");
    assert_eq!(v["path"], "/user/a/lab");
    assert_eq!(v["client_cn"], "proxy-client");

    // Without a client certificate the target refuses the proxy: 503.
    let no_identity = ProxyProc::start(&["--client-ssl-ca", &s(&client_ca.ca)]);
    no_identity
        .add_route("/user/a", json!({"target": server.url}))
        .await;
    let resp = client()
        .get(no_identity.url("/user/a/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);

    // --api-ssl-request-cert without a CA to check against is refused at start.
    let err = proxy_fails(&[
        "--api-ssl-key",
        &s(&api_key),
        "--api-ssl-cert",
        &s(&api_cert),
        "--api-ssl-request-cert",
    ]);
    assert!(err.contains("--api-ssl-ca"), "{err}");
}

#[tokio::test]
async fn https_targets_are_verified_unless_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "private");
    let (cert, key) = ca.issue("target.test");
    let server = https_upstream(&cert, &key, None);

    let strict = ProxyProc::start(&[]);
    strict
        .add_route("/user/a", json!({"target": server.url}))
        .await;
    let resp = client().get(strict.url("/user/a/x")).send().await.unwrap();
    assert_eq!(resp.status(), 503, "unknown CA must not be trusted");

    let trusting = ProxyProc::start(&["--client-ssl-ca", ca.ca.to_str().unwrap()]);
    trusting
        .add_route("/user/a", json!({"target": server.url}))
        .await;
    let v = get_json(&trusting.url("/user/a/x")).await;
    assert_eq!(v["path"], "/user/a/x");

    let insecure = ProxyProc::start(&["--insecure"]);
    insecure
        .add_route("/user/a", json!({"target": server.url}))
        .await;
    let v = get_json(&insecure.url("/user/a/y")).await;
    assert_eq!(v["path"], "/user/a/y");
    assert_eq!(v["client_cn"], Value::Null);
}

#[tokio::test]
async fn public_port_can_require_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "public");
    let (cert, key) = ca.issue("hub.test");
    let (user_cert, user_key) = ca.issue("browser");
    let (up, _) = upstream("up").await;
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let p = ProxyProc::start(&[
        "--default-target",
        &up,
        "--ssl-cert",
        &s(&cert),
        "--ssl-key",
        &s(&key),
        "--ssl-ca",
        &s(&ca.ca),
        "--ssl-request-cert",
        "--ssl-reject-unauthorized",
    ]);
    let url = format!("https://127.0.0.1:{}/x", p.port);
    let resp = mtls_client(&ca.ca, Some((&user_cert, &user_key)))
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(mtls_client(&ca.ca, None).get(&url).send().await.is_err());

    // Requested but not required: a client without a certificate gets through.
    let optional = ProxyProc::start(&[
        "--default-target",
        &up,
        "--ssl-cert",
        &s(&cert),
        "--ssl-key",
        &s(&key),
        "--ssl-ca",
        &s(&ca.ca),
        "--ssl-request-cert",
    ]);
    let resp = mtls_client(&ca.ca, None)
        .get(format!("https://127.0.0.1:{}/x", optional.port))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[test]
fn unsupported_flags_are_refused_with_a_reason() {
    for (flag, value) in [
        ("--storage-backend", Some("./redis-store")),
        ("--ssl-ciphers", Some("HIGH:!RC4")),
        ("--ssl-protocol", Some("TLSv1_2")),
        ("--ssl-allow-rc4", None),
        ("--ssl-dhparam", Some("/dev/null")),
    ] {
        let mut args = vec![flag];
        args.extend(value);
        let out = proxy_fails(&args);
        assert!(
            out.contains(&format!("{flag} is not supported")),
            "{flag}: {out}"
        );
    }
    // CHP's passphrase for encrypted keys: refused, not ignored.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubfleet"))
        .args([
            "proxy",
            "--ip",
            "127.0.0.1",
            "--port",
            &free_port().to_string(),
        ])
        .env("CONFIGPROXY_SSL_KEY_PASSPHRASE", "secret")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("CONFIGPROXY_SSL_KEY_PASSPHRASE is not supported"),
        "{text}"
    );
    // Unknown flags (typos, or flags CHP does not have) are refused by the parser.
    assert!(proxy_fails(&["--no-such-flag"]).contains("--no-such-flag"));
}

#[test]
fn version_flag_prints_the_version_like_chp() {
    for flag in ["--version", "-V"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubfleet"))
            .args(["proxy", flag])
            .output()
            .unwrap();
        assert!(out.status.success(), "{flag}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.trim().ends_with(env!("CARGO_PKG_VERSION")),
            "{flag}: {text}"
        );
    }
}
