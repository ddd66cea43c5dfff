//! An upstream-style deployment: the hub drives a separate proxy (`hubfleet proxy`, which speaks
//! configurable-http-proxy's REST API) through `hub.config.ConfigurableHTTPProxy.api_url`. Users
//! reach the hub and their servers through that proxy; when it is killed (SIGKILL) and started
//! again empty, the hub notices and adds every route again; a stopped server's route goes.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, python_env, TestHub};

#[path = "support/api_load.rs"]
mod api_load;
use api_load::{call, client, server_answers, Tally, TOKEN};

const PROXY_TOKEN: &str = "proxy-api-token-0123456789abcdef";

/// `hubfleet proxy` on `port`, its API on `api_port`.
struct Proxy {
    child: Child,
}

impl Proxy {
    fn start(port: u16, api_port: u16) -> Proxy {
        let child = Command::new(env!("CARGO_BIN_EXE_hubfleet"))
            .args(["proxy", "--ip", "127.0.0.1", "--port", &port.to_string()])
            .args(["--api-ip", "127.0.0.1", "--api-port", &api_port.to_string()])
            .env("CONFIGPROXY_AUTH_TOKEN", PROXY_TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", api_port)).is_err() {
            assert!(Instant::now() < deadline, "the proxy did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Proxy { child }
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The proxy's routes, as its API lists them.
async fn proxy_routes(api_port: u16) -> serde_json::Map<String, serde_json::Value> {
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{api_port}/api/routes"))
        .header("Authorization", format!("token {PROXY_TOKEN}"))
        .send()
        .await
        .unwrap();
    match response.json().await.unwrap() {
        serde_json::Value::Object(map) => map,
        other => panic!("routes: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_hub_restores_every_route_of_a_restarted_proxy() {
    let (port, api_port) = (free_port(), free_port());
    let mut proxy = Proxy::start(port, api_port);
    let config = format!(
        "hub:\n  services:\n    ops:\n      admin: true\n      apiToken: {TOKEN}\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n    ConfigurableHTTPProxy:\n      api_url: http://127.0.0.1:{api_port}\n      auth_token: {PROXY_TOKEN}\n      should_start: false\nsingleuser:\n  cmd: {}\n",
        api_load::tiny_server_cmd()
    );
    let hub = TestHub::start_with(&config, "", &python_env());
    let public = format!("http://127.0.0.1:{port}");
    let http = client();

    // The hub is reached through the proxy (its route `/`), servers too.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(
        call(&http, &public, reqwest::Method::GET, "/hub/api/", None).await,
        Ok((200, _))
    ) {
        assert!(
            Instant::now() < deadline,
            "the hub never reached the proxy\n{}",
            hub.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // HUBFLEET_FAULT_SERVERS servers (bench/faults runs 50).
    let count = std::env::var("HUBFLEET_FAULT_SERVERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(6);
    let users: Vec<String> = (0..count).map(|i| format!("x{i}")).collect();
    if let Err(e) = api_load::create_and_start_all(&http, &public, &users).await {
        panic!("{e}\n{}", hub.log());
    }
    let answer_all = |users: Vec<String>| {
        let (http, public) = (http.clone(), public.clone());
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            for user in &users {
                while server_answers(&http, &public, user).await.is_err() {
                    assert!(
                        Instant::now() < deadline,
                        "{user}'s route never reached the proxy"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    };
    answer_all(users.clone()).await;

    // Load through the proxy while it is killed and started again.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(Tally::default());
    let reader = {
        let (http, public, stop, reads, users) = (
            http.clone(),
            public.clone(),
            stop.clone(),
            reads.clone(),
            users.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let result = server_answers(&http, &public, &users[n % users.len()]).await;
                if result.is_err() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                reads.note(result);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.kill();
    proxy = Proxy::start(port, api_port);
    let restarted = Instant::now();
    answer_all(users.clone()).await;
    let restored = restarted.elapsed();
    stop.store(true, Ordering::SeqCst);
    reader.await.unwrap();
    println!(
        "proxy SIGKILL + restart with {} servers: every route back {:.2} s after the new proxy listened; {} requests ok, {} failed meanwhile",
        users.len(),
        restored.as_secs_f64(),
        reads.ok.load(Ordering::SeqCst),
        reads.failed.load(Ordering::SeqCst)
    );
    assert!(
        hub.log().contains("the proxy was missing routes"),
        "the hub noticed:\n{}",
        hub.log()
    );

    // A stopped server's route goes from the proxy.
    let (status, body) = call(
        &http,
        &public,
        reqwest::Method::DELETE,
        "/hub/api/users/x0/server",
        None,
    )
    .await
    .unwrap();
    assert!(status == 204 || status == 202, "{status} {body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy_routes(api_port).await.contains_key("/user/x0") {
        assert!(
            Instant::now() < deadline,
            "x0's route stayed\n{}",
            hub.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let routes = proxy_routes(api_port).await;
    assert_eq!(routes["/"]["target"], hub.direct_url(""), "{routes:?}");
    assert!(routes.contains_key("/user/x1"), "{routes:?}");
    drop(proxy);
}
