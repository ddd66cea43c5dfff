//! End-to-end tests: real upstream servers and the proxy on 127.0.0.1:0, driven with reqwest and
//! tokio-tungstenite.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use hubfleet_proxy::{serve, ProxyOptions, RouteTable, HUB_TARGET};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

const TIMEOUT: Duration = Duration::from_secs(10);

struct Proxy {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Proxy {
    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("serve did not return after shutdown")
            .unwrap()
            .unwrap();
    }
}

async fn start_proxy(table: RouteTable, hub: Option<Router>) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        listener,
        table,
        ProxyOptions {
            hub,
            hub_base_url: "/".into(),
        },
        async move {
            let _ = rx.await;
        },
    ));
    Proxy {
        addr,
        stop: Some(tx),
        task,
    }
}

/// Reports what the upstream saw, so tests can assert on the forwarded request.
async fn describe(req: Request) -> Json<Value> {
    let h = req.headers();
    let get = |name: &str| {
        h.get(name)
            .map(|v| Value::from(v.to_str().unwrap()))
            .unwrap_or(Value::Null)
    };
    Json(json!({
        "method": req.method().as_str(),
        "uri": req.uri().to_string(),
        "host": get("host"),
        "x_forwarded_for": get("x-forwarded-for"),
        "x_forwarded_proto": get("x-forwarded-proto"),
        "x_forwarded_host": get("x-forwarded-host"),
        "x_forwarded_port": get("x-forwarded-port"),
        "connection": get("connection"),
        "x_hop": get("x-hop"),
    }))
}

async fn echo_body(body: Bytes) -> Bytes {
    body
}

/// Sends "first", then waits until the test says go before sending "last".
async fn stream(State(go): State<Arc<Notify>>) -> impl axum::response::IntoResponse {
    let chunks = futures_util::stream::unfold(0u8, move |step| {
        let go = go.clone();
        async move {
            match step {
                0 => Some((Ok::<_, Infallible>(Bytes::from("data: first\n\n")), 1)),
                1 => {
                    go.notified().await;
                    Some((Ok(Bytes::from("data: last\n\n")), 2))
                }
                _ => None,
            }
        }
    });
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(chunks),
    )
}

/// A real HTTP upstream on 127.0.0.1:0. Returns its base URL and the streaming "go" switch.
async fn start_upstream() -> (String, Arc<Notify>) {
    let go = Arc::new(Notify::new());
    let app = Router::new()
        .route("/stream", get(stream))
        .route("/user/alice/stream", get(stream))
        .route("/user/alice/echo", post(echo_body))
        .fallback(describe)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(go.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), go)
}

/// A port with nothing listening on it.
async fn dead_target() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(TIMEOUT).build().unwrap()
}

fn data(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

#[tokio::test]
async fn forwards_full_path_query_and_forwarded_headers() {
    let (upstream, _) = start_upstream().await;
    let table = RouteTable::new();
    table.add("/user/alice/", &upstream, data(json!({"user": "alice"})));
    let proxy = start_proxy(table.clone(), None).await;

    let v: Value = client()
        .get(proxy.url("/user/alice/api/status?x=1&y=a%20b"))
        .header("x-hop", "should vanish")
        .header("connection", "keep-alive, x-hop")
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["method"], "GET");
    assert_eq!(v["uri"], "/user/alice/api/status?x=1&y=a%20b");
    let host = proxy.addr.to_string();
    assert_eq!(
        v["host"],
        host.as_str(),
        "Host must be the client's, not the target's"
    );
    assert_eq!(v["x_forwarded_for"], "127.0.0.1");
    assert_eq!(v["x_forwarded_proto"], "http");
    assert_eq!(v["x_forwarded_host"], host.as_str());
    assert_eq!(
        v["x_forwarded_port"],
        proxy.addr.port().to_string().as_str()
    );
    assert_eq!(
        v["x_hop"],
        Value::Null,
        "headers named in Connection are hop-by-hop"
    );
    assert_ne!(v["connection"], "keep-alive, x-hop");

    // Exactly the route prefix, with and without trailing slash.
    for path in ["/user/alice", "/user/alice/"] {
        let v: Value = client()
            .get(proxy.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["uri"], path);
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn custom_host_and_existing_forwarded_for_are_kept() {
    let (upstream, _) = start_upstream().await;
    let table = RouteTable::new();
    table.add("/", &upstream, Map::new());
    let proxy = start_proxy(table, None).await;

    let v: Value = client()
        .get(proxy.url("/anything"))
        .header("host", "jupyter.example.org:8443")
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["host"], "jupyter.example.org:8443");
    assert_eq!(v["x_forwarded_host"], "jupyter.example.org:8443");
    assert_eq!(v["x_forwarded_for"], "203.0.113.9, 127.0.0.1");
    proxy.shutdown().await;
}

#[tokio::test]
async fn target_path_is_prepended() {
    let (upstream, _) = start_upstream().await;
    let table = RouteTable::new();
    table.add("/services/x", &format!("{upstream}/base/"), Map::new());
    let proxy = start_proxy(table, None).await;
    let v: Value = client()
        .get(proxy.url("/services/x/api?q=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["uri"], "/base/services/x/api?q=1");
    proxy.shutdown().await;
}

#[tokio::test]
async fn longest_prefix_picks_the_right_upstream() {
    let (alice, _) = start_upstream().await;
    let dead = dead_target().await;
    let table = RouteTable::new();
    table.add("/user/alice", &alice, Map::new());
    table.add("/user/al", &dead, Map::new());
    let proxy = start_proxy(table, None).await;
    let ok = client()
        .get(proxy.url("/user/alice/tree"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let dead = client().get(proxy.url("/user/al/x")).send().await.unwrap();
    assert_eq!(dead.status(), 503);
    proxy.shutdown().await;
}

#[tokio::test]
async fn post_body_round_trip() {
    let (upstream, _) = start_upstream().await;
    let table = RouteTable::new();
    table.add("/user/alice", &upstream, Map::new());
    let proxy = start_proxy(table, None).await;

    // Large enough to span many frames, and sent chunked (no Content-Length) as a stream.
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let resp = client()
        .post(proxy.url("/user/alice/echo"))
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), payload.as_slice());

    let chunks: Vec<Result<Vec<u8>, Infallible>> = vec![
        Ok(b"hello ".to_vec()),
        Ok(b"streamed ".to_vec()),
        Ok(b"world".to_vec()),
    ];
    let resp = client()
        .post(proxy.url("/user/alice/echo"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "hello streamed world");
    proxy.shutdown().await;
}

#[tokio::test]
async fn streaming_response_flows_chunk_by_chunk() {
    let (upstream, go) = start_upstream().await;
    let table = RouteTable::new();
    table.add("/user/alice", &upstream, Map::new());
    let proxy = start_proxy(table, None).await;

    let mut resp = client()
        .get(proxy.url("/user/alice/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    // The upstream will not send "last" until we have seen "first": a buffering proxy times out.
    let first = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
        .await
        .expect("first chunk did not arrive before the last was sent")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"data: first\n\n");
    go.notify_one();
    let mut rest = Vec::new();
    while let Some(c) = resp.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    assert_eq!(rest, b"data: last\n\n");
    proxy.shutdown().await;
}

#[tokio::test]
async fn dead_target_is_503() {
    let table = RouteTable::new();
    table.add("/user/dead", &dead_target().await, Map::new());
    table.add("/user/bad", "https://unsupported.example", Map::new());
    let proxy = start_proxy(table, None).await;

    let resp = client()
        .get(proxy.url("/user/dead/lab"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    // As CHP with neither --error-target nor --error-path: a built-in HTML page.
    assert_eq!(resp.headers()["content-type"], "text/html");
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("<h1>503: Service Unavailable</h1>"));

    let resp = client()
        .get(proxy.url("/user/bad/lab"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    // The proxy keeps serving after upstream failures.
    let resp = client().get(proxy.url("/user/dead")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    proxy.shutdown().await;
}

fn hub_router() -> Router {
    Router::new()
        .route(
            "/hub/api",
            get(|ConnectInfo(addr): ConnectInfo<SocketAddr>| async move {
                format!("hub api from {}", addr.ip())
            }),
        )
        .fallback(|req: Request| async move {
            let xff = req
                .headers()
                .get("x-forwarded-for")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            format!("hub fallback {} xff={xff}", req.uri())
        })
}

#[tokio::test]
async fn hub_route_dispatches_in_process() {
    let (upstream, _) = start_upstream().await;
    let table = RouteTable::new();
    table.add("/", HUB_TARGET, Map::new());
    table.add("/user/alice", &upstream, Map::new());
    let proxy = start_proxy(table.clone(), Some(hub_router())).await;

    let body = client()
        .get(proxy.url("/hub/api"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "hub api from 127.0.0.1");
    // "/user/al" is not on a segment boundary of "/user/alice", so the hub gets it.
    let body = client()
        .get(proxy.url("/user/al?next=1"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "hub fallback /user/al?next=1 xff=127.0.0.1");
    // Routed users still go upstream.
    let v: Value = client()
        .get(proxy.url("/user/alice/x"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["uri"], "/user/alice/x");
    proxy.shutdown().await;
}

#[tokio::test]
async fn unmatched_paths_go_to_hub_when_set() {
    let table = RouteTable::new();
    table.add("/user/alice", &dead_target().await, Map::new());
    let proxy = start_proxy(table, Some(hub_router())).await;
    let resp = client().get(proxy.url("/hub/login")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp
        .text()
        .await
        .unwrap()
        .starts_with("hub fallback /hub/login"));
    proxy.shutdown().await;
}

#[tokio::test]
async fn unmatched_without_hub_is_404() {
    let (upstream, _) = start_upstream().await;
    let table = RouteTable::new();
    table.add("/user/alice", &upstream, Map::new());
    let proxy = start_proxy(table, None).await;
    let resp = client().get(proxy.url("/hub/login")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let resp = client().get(proxy.url("/user/al")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    proxy.shutdown().await;
}

#[tokio::test]
async fn routes_added_after_start_are_used_and_activity_recorded() {
    let (upstream, _) = start_upstream().await;
    let table = RouteTable::new();
    let proxy = start_proxy(table.clone(), None).await;
    let resp = client().get(proxy.url("/user/bob/")).send().await.unwrap();
    assert_eq!(resp.status(), 404);

    table.add("/user/bob", &upstream, Map::new());
    let added = table.get("/user/bob").unwrap().last_activity;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let resp = client().get(proxy.url("/user/bob/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let after = table.get("/user/bob").unwrap().last_activity;
    assert!(after > added, "proxied request must move last_activity");

    assert!(table.remove("/user/bob"));
    let resp = client().get(proxy.url("/user/bob/")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    proxy.shutdown().await;
}

#[tokio::test]
async fn many_concurrent_requests() {
    let (upstream, _) = start_upstream().await;
    let table = RouteTable::new();
    table.add("/user/alice", &upstream, Map::new());
    let proxy = start_proxy(table, None).await;
    let c = client();
    let reqs = (0..300).map(|i| {
        let c = c.clone();
        let url = proxy.url(&format!("/user/alice/n/{i}"));
        async move {
            let v: Value = c.get(url).send().await.unwrap().json().await.unwrap();
            v["uri"].as_str().unwrap().to_owned()
        }
    });
    let got = futures_util::future::join_all(reqs).await;
    for (i, uri) in got.iter().enumerate() {
        assert_eq!(uri, &format!("/user/alice/n/{i}"));
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let proxy = start_proxy(RouteTable::new(), None).await;
    let addr = proxy.addr;
    proxy.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// A tokio-tungstenite echo server; reports the request path and Host it was opened with.
// The handshake callback's error type is fixed by tungstenite.
#[allow(clippy::result_large_err)]
async fn start_ws_echo() -> (String, oneshot::Receiver<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut tx = Some(tx);
        let callback = |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
            let host = req.headers()["host"].to_str().unwrap().to_owned();
            let _ = tx.take().unwrap().send((req.uri().to_string(), host));
            Ok(resp)
        };
        let mut ws = tokio_tungstenite::accept_hdr_async(stream, callback)
            .await
            .unwrap();
        while let Some(Ok(msg)) = ws.next().await {
            match msg {
                Message::Text(_) | Message::Binary(_) => ws.send(msg).await.unwrap(),
                Message::Close(_) => break,
                _ => {}
            }
        }
    });
    (format!("http://{addr}"), rx)
}

#[tokio::test]
async fn websocket_through_proxy_echoes_text_and_binary() {
    let (upstream, seen) = start_ws_echo().await;
    let table = RouteTable::new();
    table.add("/", HUB_TARGET, Map::new());
    table.add("/user/alice", &upstream, Map::new());
    let proxy = start_proxy(table.clone(), Some(hub_router())).await;

    let url = format!(
        "ws://{}/user/alice/api/kernels/k1/channels?session_id=s1",
        proxy.addr
    );
    let (mut ws, resp) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(url))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 101);
    let (path, host) = seen.await.unwrap();
    assert_eq!(path, "/user/alice/api/kernels/k1/channels?session_id=s1");
    assert_eq!(host, proxy.addr.to_string());

    let opened = table.get("/user/alice").unwrap().last_activity;
    tokio::time::sleep(Duration::from_millis(20)).await;

    ws.send(Message::text("hello kernel")).await.unwrap();
    let got = tokio::time::timeout(TIMEOUT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got, Message::text("hello kernel"));

    let bin: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    ws.send(Message::binary(bin.clone())).await.unwrap();
    let got = tokio::time::timeout(TIMEOUT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got, Message::binary(bin));

    assert!(
        table.get("/user/alice").unwrap().last_activity > opened,
        "websocket traffic must count as activity"
    );
    ws.close(None).await.unwrap();
    proxy.shutdown().await;
}

#[tokio::test]
async fn websocket_to_dead_target_is_503() {
    let table = RouteTable::new();
    table.add("/user/dead", &dead_target().await, Map::new());
    let proxy = start_proxy(table, None).await;
    let url = format!("ws://{}/user/dead/api/events", proxy.addr);
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 503)
        }
        other => panic!("expected an HTTP 503 error, got {other:?}"),
    }
    proxy.shutdown().await;
}

/// An upstream that counts the TCP connections it accepts and answers "ok" to everything.
async fn counting_upstream() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let accepted = Arc::new(AtomicUsize::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(http_body_util::Full::new(
                        Bytes::from_static(b"ok"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), accepted)
}

#[tokio::test]
async fn upstream_connections_are_pooled_and_reused() {
    use std::sync::atomic::Ordering;
    let (up, accepted) = counting_upstream().await;
    let table = RouteTable::new();
    table.add("/user/alice", &up, Map::new());
    let proxy = start_proxy(table, None).await;
    let c = client();
    for _ in 0..50 {
        let resp = c.get(proxy.url("/user/alice/x")).send().await.unwrap();
        assert_eq!(resp.text().await.unwrap(), "ok");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "sequential requests must reuse one upstream connection"
    );
    // Concurrent requests open more, but they come back to the pool and get reused.
    let burst = || {
        futures_util::future::join_all((0..8).map(|_| {
            let c = c.clone();
            let url = proxy.url("/user/alice/y");
            async move { c.get(url).send().await.unwrap().text().await.unwrap() }
        }))
    };
    burst().await;
    let after_first = accepted.load(Ordering::SeqCst);
    assert!(after_first <= 9, "{after_first}");
    burst().await;
    assert_eq!(accepted.load(Ordering::SeqCst), after_first);
    proxy.shutdown().await;
}

/// With a hub in process and no error target, errors come from the hub's `/hub/error/{code}`
/// under the original status.
#[tokio::test]
async fn errors_come_from_the_hub_in_process() {
    let hub = Router::new().route(
        "/hub/error/{code}",
        axum::routing::get(
            |axum::extract::Path(code): axum::extract::Path<String>, uri: axum::http::Uri| async move {
                format!("hub page {code} for {}", uri.query().unwrap_or(""))
            },
        ),
    );
    let table = RouteTable::new();
    table.add("/user/dead", &dead_target().await, Map::new());
    let proxy = start_proxy(table, Some(hub)).await;
    let resp = client()
        .get(proxy.url("/user/dead/lab"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.text().await.unwrap(),
        "hub page 503 for url=%2Fuser%2Fdead%2Flab"
    );
    proxy.shutdown().await;
}
