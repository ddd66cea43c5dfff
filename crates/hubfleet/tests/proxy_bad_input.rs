//! Bad input to `hubfleet proxy`: each gets the right 4xx or a closed connection, and the proxy
//! keeps serving everyone else. Raw TCP, so nothing in a client library tidies the request.

#[path = "proxy_common.rs"]
mod proxy_common;

use std::time::{Duration, Instant};

use proxy_common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Send `raw`, then read until the proxy closes the connection (or 10 s pass).
/// Returns everything read.
async fn exchange(p: &ProxyProc, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(p.addr()).await.unwrap();
    s.write_all(raw).await.unwrap();
    read_to_close(&mut s, Duration::from_secs(10)).await
}

async fn read_to_close(s: &mut TcpStream, limit: Duration) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "connection still open after {limit:?}; got so far:\n{}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status_lines(resp: &str) -> Vec<&str> {
    resp.lines().filter(|l| l.starts_with("HTTP/1.")).collect()
}

/// Both users have servers; bob's must never see a request that was not meant for him.
async fn two_users(p: &ProxyProc) -> (Seen, Seen) {
    let (alice, alice_seen) = upstream("alice").await;
    let (bob, bob_seen) = upstream("bob").await;
    p.add_route("/user/alice", json!({"target": alice})).await;
    p.add_route("/user/bob", json!({"target": bob})).await;
    (alice_seen, bob_seen)
}

async fn still_serves(p: &ProxyProc) {
    let resp = client().get(p.url("/user/alice/ok")).send().await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "proxy must keep serving; log:\n{}",
        p.log()
    );
}

#[tokio::test]
async fn smuggling_with_content_length_and_transfer_encoding() {
    let p = ProxyProc::start(&[]);
    let (alice, bob) = two_users(&p).await;

    // CL.TE: the body, read as chunked, ends at "0\r\n\r\n"; the rest would be a second
    // request to bob if anyone trusted Content-Length. The proxy decodes chunked (RFC 9112
    // §6.1), forwards a re-framed body, and closes the connection after the response.
    let smuggle = b"POST /user/alice/x HTTP/1.1\r\nHost: h\r\nContent-Length: 44\r\n\
Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /user/bob/smuggled HTTP/1.1\r\nHost: h\r\n\r\n";
    let resp = exchange(&p, smuggle).await;
    let lines = status_lines(&resp);
    assert!(lines.len() <= 1, "at most one response: {resp}");
    if let Some(l) = lines.first() {
        assert!(l.contains(" 200 ") || l.contains(" 400 "), "{resp}");
    }
    // TE.CL order too.
    let smuggle2 = b"POST /user/alice/y HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\
Content-Length: 3\r\n\r\n0\r\n\r\nGET /user/bob/smuggled2 HTTP/1.1\r\nHost: h\r\n\r\n";
    let resp = exchange(&p, smuggle2).await;
    assert!(status_lines(&resp).len() <= 1, "{resp}");

    // Obfuscated or non-final chunked, conflicting lengths, and TE on HTTP/1.0: 400.
    for raw in [
        &b"POST /user/alice/z HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"[..],
        b"POST /user/alice/z HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        b"POST /user/alice/z HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST /user/alice/z HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello",
        b"POST /user/alice/z HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /user/alice/z HTTP/1.1\r\nHost: h\r\nContent-Length : 5\r\n\r\nhello",
    ] {
        let resp = exchange(&p, raw).await;
        assert!(
            resp.starts_with("HTTP/1.1 400"),
            "{:?} → {resp:?}",
            String::from_utf8_lossy(raw)
        );
    }
    assert_eq!(bob.count(), 0, "nothing may reach bob: {:?}", bob.all());
    for line in alice.all() {
        assert!(
            !line.contains("/user/alice/z"),
            "a rejected request reached alice: {line}"
        );
    }
    still_serves(&p).await;
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let p = ProxyProc::start(&[]);
    let (alice, _) = two_users(&p).await;
    let big = "a".repeat(100 * 1024);
    let raw = format!("GET /user/alice/big HTTP/1.1\r\nHost: h\r\nX-Big: {big}\r\n\r\n");
    let resp = exchange(&p, raw.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp:.200}");
    // Many headers: also refused.
    let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let raw = format!("GET /user/alice/many HTTP/1.1\r\nHost: h\r\n{many}\r\n");
    let resp = exchange(&p, raw.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp:.200}");
    assert_eq!(alice.count(), 0);
    // A long but reasonable cookie (16 KiB) is fine.
    let ok = "c".repeat(16 * 1024);
    let resp = client()
        .get(p.url("/user/alice/cookie"))
        .header("Cookie", format!("x={ok}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    still_serves(&p).await;
}

#[tokio::test]
async fn path_traversal_never_reaches_another_users_route() {
    let p = ProxyProc::start(&[]);
    let (_alice, bob) = two_users(&p).await;
    for path in [
        "/user/alice/../bob/",
        "/user/alice/../bob/api/status",
        "/user/alice/%2e%2e/bob/",
        "/user/alice/%2E%2E/bob/",
        "/user/alice/.%2e/bob/",
        "/user/alice%2f..%2fbob/",
        "/user/alice/..%2fbob/",
        "/user/alice/..%5cbob/",
        "/user/alice/./../bob/",
        "/user/x/../../user/bob/",
    ] {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
        let resp = exchange(&p, raw.as_bytes()).await;
        assert!(resp.starts_with("HTTP/1.1 400"), "{path} → {resp}");
    }
    assert_eq!(bob.count(), 0, "bob's server saw {:?}", bob.all());
    // Bob's own URL still reaches bob.
    let resp = client().get(p.url("/user/bob/api")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(bob.count(), 1);
    still_serves(&p).await;
}

#[tokio::test]
async fn slowloris_is_cut_off_while_others_are_served() {
    // Request heads must arrive within 1 s.
    let p = ProxyProc::start(&["--timeout", "1000"]);
    two_users(&p).await;
    let started = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(p.addr()).await.unwrap();
        s.write_all(b"GET /user/alice/slow HTTP/1.1\r\nHost: h\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    // Trickle a header line every 300 ms; the proxy must close each connection anyway.
    let trickle = tokio::spawn(async move {
        let mut closed = 0;
        for round in 0..40 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            for s in &mut slow {
                let line = format!("X-Slow-{round}: 1\r\n");
                let _ = s.write_all(line.as_bytes()).await;
            }
        }
        for mut s in slow {
            let mut buf = [0u8; 1024];
            match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                Ok(Ok(n)) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    // Closed (0 bytes), or a 408 then closed.
                    if n == 0 || text.starts_with("HTTP/1.1 408") {
                        closed += 1;
                    }
                }
                Ok(Err(_)) => closed += 1,
                Err(_) => {}
            }
        }
        closed
    });
    // Meanwhile normal clients are served.
    for _ in 0..10 {
        still_serves(&p).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let closed = trickle.await.unwrap();
    assert_eq!(
        closed, 20,
        "every slow connection must be closed by the proxy"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    still_serves(&p).await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let p = ProxyProc::start(&["--timeout", "1000"]);
    two_users(&p).await;
    let mut s = TcpStream::connect(p.addr()).await.unwrap();
    s.write_all(b"GET /user/alice/a HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    // The response arrives and then, with no further request, the proxy closes.
    let resp = read_to_close(&mut s, Duration::from_secs(10)).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

#[tokio::test]
async fn an_upstream_that_never_answers_gets_504() {
    let p = ProxyProc::start(&["--proxy-timeout", "1000"]);
    two_users(&p).await;
    // Accepts connections and reads, never answers.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_addr = hung.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hung.accept().await {
            held.push(s);
        }
    });
    p.add_route(
        "/user/hung",
        json!({"target": format!("http://{hung_addr}")}),
    )
    .await;
    let c = client();
    let hung_requests: Vec<_> = (0..5)
        .map(|_| {
            let c = c.clone();
            let url = p.url("/user/hung/api/status");
            tokio::spawn(async move { c.get(url).send().await.unwrap().status() })
        })
        .collect();
    // Others are served while those hang.
    still_serves(&p).await;
    for h in hung_requests {
        assert_eq!(h.await.unwrap(), 504);
    }
    // A WebSocket upgrade to it also times out rather than hanging.
    let raw =
        b"GET /user/hung/ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let mut s = TcpStream::connect(p.addr()).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("no answer to an upgrade to a hung upstream")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 504"));
    still_serves(&p).await;
}

#[tokio::test]
async fn garbage_and_bad_request_lines() {
    let p = ProxyProc::start(&[]);
    two_users(&p).await;
    for raw in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET /user/alice/ HTTP/9.9\r\nHost: h\r\n\r\n",
        b"GET /user/alice/\x01 HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /user/alice/ HTTP/1.1\r\nHost: h\r\nBad Header\r\n\r\n",
        b"GET /user/%ff%fe/ HTTP/1.1\r\nHost: h\r\n\r\n",
    ] {
        let resp = exchange(&p, raw).await;
        assert!(
            resp.is_empty() || resp.starts_with("HTTP/1.1 400") || resp.starts_with("HTTP/1.1 505"),
            "{:?} → {resp:?}",
            String::from_utf8_lossy(raw)
        );
    }
    still_serves(&p).await;
}

#[tokio::test]
async fn idle_websockets_are_closed_busy_ones_are_not() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let p = ProxyProc::start(&["--websocket-idle-timeout", "1"]);
    // A WebSocket echo upstream.
    let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_addr = ws.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = ws.accept().await {
            tokio::spawn(async move {
                let Ok(mut sock) = tokio_tungstenite::accept_async(s).await else {
                    return;
                };
                while let Some(Ok(m)) = sock.next().await {
                    if m.is_text() && sock.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    p.add_route("/user/ws", json!({"target": format!("http://{ws_addr}")}))
        .await;
    let url = format!("ws://127.0.0.1:{}/user/ws/echo", p.port);
    let (mut busy, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (mut idle, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    // Busy: a message every 300 ms for 3 s, each echoed.
    for i in 0..10 {
        busy.send(Message::text(format!("m{i}"))).await.unwrap();
        let echo = tokio::time::timeout(Duration::from_secs(5), busy.next())
            .await
            .expect("echo")
            .unwrap()
            .unwrap();
        assert_eq!(echo.into_text().unwrap().as_str(), format!("m{i}"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Idle: the proxy has closed it by now (1 s without a byte).
    let next = tokio::time::timeout(Duration::from_secs(10), idle.next())
        .await
        .expect("the idle tunnel must be closed by the proxy");
    assert!(
        !matches!(next, Some(Ok(Message::Text(_)))),
        "unexpected {next:?}"
    );
    still_serves_ws(&mut busy).await;
}

async fn still_serves_ws(
    sock: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    sock.send(Message::text("last")).await.unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(5), sock.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echo.into_text().unwrap().as_str(), "last");
}
