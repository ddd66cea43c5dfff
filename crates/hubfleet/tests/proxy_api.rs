//! `hubfleet proxy` as configurable-http-proxy: every REST API endpoint, its auth, its errors,
//! default and error targets, host routing, health check, metrics, TLS and SIGHUP reload.
//! Each test runs the real binary on free ports.

#[path = "proxy_common.rs"]
mod proxy_common;

use std::time::Duration;

use proxy_common::*;
use serde_json::{json, Value};

fn auth() -> String {
    format!("token {TOKEN}")
}

#[tokio::test]
async fn api_needs_the_token() {
    let p = ProxyProc::start(&[]);
    let c = client();
    for header in [
        None,
        Some("token wrong"),
        Some("Bearer proxy-test-token"),
        Some("Token proxy-test-token"),
        Some("tokenproxy-test-token"),
    ] {
        let mut req = c.get(p.api(""));
        if let Some(h) = header {
            req = req.header("Authorization", h);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 403, "{header:?}");
        assert_eq!(resp.text().await.unwrap(), "", "403 has an empty body");
    }
    // A refused POST changes nothing.
    let resp = c
        .post(p.api("/user/mallory"))
        .header("Authorization", "token nope")
        .json(&json!({"target": "http://127.0.0.1:1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = c
        .get(p.api(""))
        .header("Authorization", auth())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({}));
}

#[tokio::test]
async fn api_is_open_without_a_token_like_chp() {
    let p = ProxyProc::start_with_token(&[], None);
    let resp = client().get(p.api("")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn routes_crud_keeps_data_and_activity() {
    let p = ProxyProc::start(&[]);
    let c = client();
    let (up, _) = upstream("alice").await;

    // POST keeps arbitrary data; the path is normalised (no trailing slash) and decoded.
    let resp = c
        .post(p.api("/user/alice/"))
        .header("Authorization", auth())
        .json(&json!({"target": up, "user": "alice", "server_name": "", "jupyterhub": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.text().await.unwrap(), "");
    let resp = c
        .post(p.api("/user/b%40c%20d"))
        .header("Authorization", auth())
        .json(&json!({"target": "http://127.0.0.1:9", "user": "b@c d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    let all: Value = c
        .get(p.api(""))
        .header("Authorization", auth())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys: Vec<&String> = all.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["/user/alice", "/user/b@c d"]);
    let alice = &all["/user/alice"];
    assert_eq!(alice["target"], up.as_str());
    assert_eq!(alice["user"], "alice");
    assert_eq!(alice["server_name"], "");
    assert_eq!(alice["jupyterhub"], true);
    let la = alice["last_activity"].as_str().unwrap();
    // JavaScript's Date JSON: milliseconds and Z.
    assert_eq!(la.len(), "2026-08-20T10:05:00.123Z".len(), "{la}");
    assert!(la.ends_with('Z'));
    chrono::DateTime::parse_from_rfc3339(la).unwrap();

    // GET one route, with or without trailing slash; "/" or nothing means all routes.
    for path in ["/user/alice", "/user/alice/"] {
        let one: Value = c
            .get(p.api(path))
            .header("Authorization", auth())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(one["target"], up.as_str());
        assert_eq!(one["user"], "alice");
    }
    let resp = c
        .get(p.api("/user/nobody"))
        .header("Authorization", auth())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let root: Value = c
        .get(p.api("/"))
        .header("Authorization", auth())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(root, all);

    // Overwrite: new target and data, one route.
    let (up2, seen2) = upstream("alice2").await;
    p.add_route(
        "/user/alice",
        json!({"target": up2, "user": "alice", "v": 2}),
    )
    .await;
    let one: Value = c
        .get(p.api("/user/alice"))
        .header("Authorization", auth())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["v"], 2);
    assert_eq!(one["target"], up2.as_str());
    let v: Value = c
        .get(p.url("/user/alice/x"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["server"], "alice2");
    assert_eq!(seen2.all(), ["GET /user/alice/x"]);

    // DELETE: 204, then 404; the route is gone from the proxy too.
    let del = |path: &'static str| c.delete(p.api(path)).header("Authorization", auth()).send();
    assert_eq!(del("/user/alice").await.unwrap().status(), 204);
    assert_eq!(del("/user/alice").await.unwrap().status(), 404);
    assert_eq!(del("/user/b%40c%20d/").await.unwrap().status(), 204);
    let resp = c.get(p.url("/user/alice/x")).send().await.unwrap();
    assert_eq!(resp.status(), 404, "no route and no default target");
    let all: Value = c
        .get(p.api(""))
        .header("Authorization", auth())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all, json!({}));
}

#[tokio::test]
async fn bad_requests_to_the_api() {
    let p = ProxyProc::start(&[]);
    let c = client();
    let post = |body: &'static str| {
        c.post(p.api("/user/x"))
            .header("Authorization", auth())
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    for body in [
        "{not json",
        "",
        "{\"target\": 5}",
        "{\"nottarget\": \"http://a\"}",
        "[1,2]",
        "null",
    ] {
        let resp = post(body).await.unwrap();
        assert_eq!(resp.status(), 400, "body {body:?}");
    }
    let resp = post("{not json").await.unwrap();
    assert!(resp
        .text()
        .await
        .unwrap()
        .starts_with("Body not valid JSON"));
    let resp = post("{\"target\": 5}").await.unwrap();
    assert_eq!(
        resp.text().await.unwrap(),
        "Must specify 'target' as string"
    );

    // Other API paths: 404. Other methods: 405.
    for path in ["/api/other", "/api/routesx", "/", "/api"] {
        let resp = c
            .get(format!("http://127.0.0.1:{}{path}", p.api_port))
            .header("Authorization", auth())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{path}");
    }
    let resp = c
        .put(p.api("/user/x"))
        .header("Authorization", auth())
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.text().await.unwrap(), "Method not supported");

    // Nothing above added a route.
    let all: Value = c
        .get(p.api(""))
        .header("Authorization", auth())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all, json!({}));
}

#[tokio::test]
async fn inactive_since_filters_by_last_activity() {
    let p = ProxyProc::start(&[]);
    let c = client();
    let (up_old, _) = upstream("old").await;
    let (up_new, _) = upstream("new").await;
    p.add_route("/user/old", json!({"target": up_old})).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let cut = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    p.add_route("/user/new", json!({"target": up_new})).await;

    let get = |q: String| {
        c.get(format!("{}?{q}", p.api("")))
            .header("Authorization", auth())
            .send()
    };
    let cut_s = cut.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for param in ["inactive_since", "inactiveSince"] {
        let v: Value = get(format!("{param}={cut_s}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["/user/old"], "{param}");
    }
    // A far-past cut returns nothing; a future one everything.
    let v: Value = get("inactive_since=2000-01-01T00:00:00.000Z".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, json!({}));
    let v: Value = get("inactive_since=2999-01-01T00:00:00Z".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v.as_object().unwrap().len(), 2);

    // Traffic through the proxy counts as activity: "old" is active again.
    let resp = c.get(p.url("/user/old/api/status")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let v: Value = get(format!("inactive_since={cut_s}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, json!({}), "a proxied request must move last_activity");

    for bad in ["yesterday", "2026-13-45T00:00:00Z", "12345abc"] {
        let resp = get(format!("inactive_since={bad}")).await.unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
        assert!(resp.text().await.unwrap().contains("must be ISO8601"));
    }
}

#[tokio::test]
async fn default_target_is_the_root_route() {
    let (up, seen) = upstream("default").await;
    let p = ProxyProc::start(&["--default-target", &up]);
    let c = client();
    let v: Value = c
        .get(p.url("/anything/here?q=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["server"], "default");
    assert_eq!(seen.all(), ["GET /anything/here?q=1"]);
    // CHP shows the default target as the "/" route.
    let all: Value = c
        .get(p.api(""))
        .header("Authorization", auth())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["/"]["target"], up.as_str());
    // The health check is answered by the proxy itself.
    let resp = c.get(p.url("/_chp_healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"status": "OK"}));
    assert_eq!(seen.count(), 1);
}

/// An error server like JupyterHub's `/hub/error/<code>`: echoes the code and the url.
async fn error_server() -> (String, Seen) {
    let seen = Seen::default();
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let log = log.clone();
        async move {
            log.0.lock().unwrap().push(req.uri().to_string());
            (
                [("content-type", "text/html; charset=utf-8")],
                format!("<h1>friendly page for {}</h1>", req.uri()),
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hub/error"), seen)
}

#[tokio::test]
async fn errors_come_from_the_error_target() {
    let (err_url, err_seen) = error_server().await;
    let p = ProxyProc::start(&["--error-target", &err_url]);
    let c = client();
    p.add_route("/user/dead", json!({"target": dead_target()}))
        .await;

    let resp = c.get(p.url("/user/dead/lab?x=1")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(
        resp.text().await.unwrap(),
        "<h1>friendly page for /hub/error/503?url=%2Fuser%2Fdead%2Flab%3Fx%3D1</h1>"
    );
    let resp = c.get(p.url("/no/route")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("/hub/error/404?url=%2Fno%2Froute"));
    assert_eq!(err_seen.count(), 2);

    // When the error target itself is down, the plain reason phrase is sent.
    let p2 = ProxyProc::start(&["--error-target", &dead_target()]);
    let resp = c.get(p2.url("/nothing")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.text().await.unwrap(), "Not Found");
}

#[tokio::test]
async fn dead_upstream_is_503_and_the_proxy_keeps_serving() {
    let mut p = ProxyProc::start(&[]);
    let c = client();
    let (up, _) = upstream("ok").await;
    p.add_route("/user/dead", json!({"target": dead_target()}))
        .await;
    p.add_route("/user/ok", json!({"target": up})).await;
    for _ in 0..20 {
        let resp = c.get(p.url("/user/dead/")).send().await.unwrap();
        assert_eq!(resp.status(), 503);
        assert!(resp
            .text()
            .await
            .unwrap()
            .contains("<h1>503: Service Unavailable</h1>"));
    }
    let resp = c.get(p.url("/no/route/here")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["content-type"], "text/html");
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("<h1>404: Not Found</h1>"));
    let resp = c.get(p.url("/user/ok/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(p.alive());
}

#[tokio::test]
async fn host_routing_routes_on_the_host() {
    let p = ProxyProc::start(&["--host-routing"]);
    let c = client();
    let (alice, alice_seen) = upstream("alice").await;
    let (hub, _) = upstream("hub").await;
    p.add_route("/alice.hub.example/user/alice", json!({"target": alice}))
        .await;
    p.add_route("/", json!({"target": hub})).await;
    let route: Value = c
        .get(p.api("/alice.hub.example/user/alice"))
        .header("Authorization", auth())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(route["host"], "alice.hub.example", "CHP adds the host");

    let get =
        |host: &'static str, path: &'static str| c.get(p.url(path)).header("Host", host).send();
    let v: Value = get("alice.hub.example", "/user/alice/lab")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["server"], "alice");
    let v: Value = get("ALICE.hub.example:8443", "/user/alice/lab")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["server"], "alice",
        "host is case-insensitive, port ignored"
    );
    // Another host with the same path goes to the default route.
    let v: Value = get("bob.hub.example", "/user/alice/lab")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["server"], "hub");
    assert_eq!(alice_seen.count(), 2);
}

#[tokio::test]
async fn metrics_count_requests_routes_and_fds() {
    let p = ProxyProc::start(&[]);
    let c = client();
    let (up, _) = upstream("m").await;
    p.add_route("/user/m", json!({"target": up})).await;
    p.add_route("/user/dead", json!({"target": dead_target()}))
        .await;
    for _ in 0..3 {
        c.get(p.url("/user/m/"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    c.get(p.url("/user/dead/"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let text = c
        .get(p.metrics_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |line_start: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(line_start))
            .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(value("hubfleet_proxy_requests_total{code=\"2xx\"}"), 3.0);
    assert_eq!(value("hubfleet_proxy_requests_total{code=\"5xx\"}"), 1.0);
    assert_eq!(value("hubfleet_proxy_routes "), 2.0);
    assert_eq!(value("hubfleet_proxy_request_duration_seconds_count"), 4.0);
    assert_eq!(
        value("hubfleet_proxy_upstream_errors_total{kind=\"connect\"}"),
        1.0
    );
    assert!(value("hubfleet_proxy_open_fds ") >= 5.0);
    assert!(value("hubfleet_proxy_resident_memory_bytes ") > 1e6);
    assert!(value("hubfleet_proxy_open_connections ") >= 1.0);
    assert_eq!(value("hubfleet_proxy_websockets "), 0.0);
    assert!(value("hubfleet_proxy_api_requests_total") >= 2.0);
}

fn tls_client(ca: &std::path::Path) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .danger_accept_invalid_certs(true)
        .tls_info(true)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn peer_cert(resp: &reqwest::Response) -> Vec<u8> {
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("TLS info with a peer certificate")
        .to_vec()
}

fn der_of(pem_path: &std::path::Path) -> Vec<u8> {
    use base64::Engine;
    let pem = std::fs::read_to_string(pem_path).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[tokio::test]
async fn tls_termination_and_sighup_reload_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (cert1, key1) = self_signed(dir.path(), "one", "one.test");
    let (cert2, key2) = self_signed(dir.path(), "two", "two.test");
    let cert = dir.path().join("live.crt");
    let key = dir.path().join("live.key");
    std::fs::copy(&cert1, &cert).unwrap();
    std::fs::copy(&key1, &key).unwrap();
    let (up, seen) = upstream("tls").await;
    let p = ProxyProc::start(&[
        "--ssl-cert",
        cert.to_str().unwrap(),
        "--ssl-key",
        key.to_str().unwrap(),
        "--default-target",
        &up,
    ]);
    let https = format!("https://127.0.0.1:{}/user/x", p.port);

    let old = tls_client(&cert1);
    let resp = old.get(&https).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(peer_cert(&resp), der_of(&cert1));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["headers"]["x-forwarded-proto"], "https");

    // New files, SIGHUP: new connections get the new certificate...
    std::fs::copy(&cert2, &cert).unwrap();
    std::fs::copy(&key2, &key).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &p.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let resp = tls_client(&cert2).get(&https).send().await.unwrap();
        if peer_cert(&resp) == der_of(&cert2) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "certificate not reloaded; log:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...and the connection opened before the reload still works, still on the old one.
    let resp = old.get(&https).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(peer_cert(&resp), der_of(&cert1));
    assert!(p.log().contains("reloaded TLS certificate"));

    // A broken file on reload keeps the current certificate.
    std::fs::write(&cert, "garbage").unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &p.pid().to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = tls_client(&cert2).get(&https).send().await.unwrap();
    assert_eq!(peer_cert(&resp), der_of(&cert2));
    assert!(seen.count() >= 4);
}

/// Over TLS a client may choose HTTP/2 (ALPN `h2`); upstreams still get HTTP/1.1 with `Host`
/// taken from `:authority`. `--no-http2` offers only HTTP/1.1. A client that opens an HTTP/2
/// connection and never sends a request is dropped after `--timeout`.
#[tokio::test]
async fn http2_to_tls_clients_http1_to_upstreams() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "h2", "h2.test");
    let (up, seen) = upstream("h2").await;
    let args = |extra: &[&'static str]| {
        let mut a = vec![
            "--ssl-cert".to_string(),
            cert.to_str().unwrap().to_string(),
            "--ssl-key".to_string(),
            key.to_str().unwrap().to_string(),
            "--default-target".to_string(),
            up.clone(),
            // CHP's unit: milliseconds.
            "--timeout".to_string(),
            "1000".to_string(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let owned = args(&[]);
    let mut p = ProxyProc::start(&owned.iter().map(String::as_str).collect::<Vec<_>>());
    let client = tls_client(&cert);
    let url = format!("https://127.0.0.1:{}/user/x/api?y=1", p.port);
    for _ in 0..3 {
        let resp = client.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["version"], "HTTP/1.1");
        assert_eq!(v["request"], "GET /user/x/api?y=1");
        assert_eq!(v["headers"]["host"], format!("127.0.0.1:{}", p.port));
        assert_eq!(v["headers"]["x-forwarded-proto"], "https");
    }
    assert_eq!(seen.count(), 3);
    // A POST body streams through too.
    let resp = client
        .post(&url)
        .body("x".repeat(100_000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["body"].as_str().unwrap().len(), 100_000);
    // Errors are pages over HTTP/2 as well.
    p.add_route("/user/dead", json!({"target": dead_target()}))
        .await;
    let dead = format!("https://127.0.0.1:{}/user/dead/", p.port);
    let resp = client.get(&dead).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);

    // An HTTP/2 connection that never sends a request is dropped after --timeout (1 s), not
    // before.
    let started = std::time::Instant::now();
    let mut silent = std::process::Command::new("openssl")
        .args(["s_client", "-quiet", "-alpn", "h2", "-connect"])
        .arg(format!("127.0.0.1:{}", p.port))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let closed = loop {
        if let Some(status) = silent.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(15) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if closed.is_none() {
        let _ = silent.kill();
    }
    assert!(
        closed.is_some(),
        "a silent HTTP/2 connection was still open after 15 s"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(p.alive());

    let owned = args(&["--no-http2"]);
    let h1 = ProxyProc::start(&owned.iter().map(String::as_str).collect::<Vec<_>>());
    let resp = client
        .get(format!("https://127.0.0.1:{}/user/x", h1.port))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
}
