//! High availability: two `hubfleet serve` replicas on one PostgreSQL database behind nginx,
//! API reads, requests to users' servers and spawns going on, and one replica killed with
//! SIGKILL in the middle. Only requests in flight on the killed replica may fail; every
//! server stays reachable through the survivor (and reaches the hub from there, through
//! `hub.config.JupyterHub.hub_connect_url`); starts the dead replica was driving are cleaned
//! up; the leader lease moves; new spawns work. And a browser through the load balancer: login,
//! the Start button and JupyterLab's OAuth dance across both replicas, then through the survivor.
//!
//! Needs HUBFLEET_TEST_POSTGRES_URL (`scripts/postgres.sh start`; `.ci/run` sets it) and
//! nginx (on PATH or /usr/sbin/nginx; `.ci/run` installs it).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, python_env, TestHub};
#[path = "support/api_load.rs"]
mod api_load;
use api_load::{call, client, server_answers, server_state, start_and_wait, Tally, TOKEN};

fn nginx_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nginx"))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()))
        .unwrap_or_else(|| {
            panic!("nginx is not installed (not on PATH, nor /usr/sbin/nginx): apt-get install -y nginx (.ci/run does)")
        })
}

/// nginx in front of the replicas, in the foreground as this user, with everything
/// (config, temp files, logs, pid) in a temporary directory.
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
}

impl Nginx {
    fn start(port: u16, upstreams: &[u16]) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display().to_string();
        let servers: String = upstreams
            .iter()
            .map(|p| format!("        server 127.0.0.1:{p} max_fails=1 fail_timeout=30s;\n"))
            .collect();
        let config = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {root}/nginx.pid;\n\
             error_log {root}/error.log warn;\nevents {{ worker_connections 1024; }}\n\
             http {{\n    access_log off;\n    client_body_temp_path {root}/body;\n    \
             proxy_temp_path {root}/proxy;\n    fastcgi_temp_path {root}/fastcgi;\n    \
             uwsgi_temp_path {root}/uwsgi;\n    scgi_temp_path {root}/scgi;\n\
             {NGINX_HTTP}\n    upstream hubs {{\n{servers}        keepalive 16;\n    }}\n    \
             server {{\n        listen 127.0.0.1:{port};\n{NGINX_LOCATION}    }}\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), config).unwrap();
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nginx");
        let nginx = Nginx { child, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {port}; its log:\n{}",
                nginx.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        nginx
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `http` settings of the example in docs/operations.md (§ High availability).
const NGINX_HTTP: &str = "    map $http_upgrade $connection_upgrade {\n        default upgrade;\n        '' close;\n    }\n";
const NGINX_LOCATION: &str = "        location / {\n            proxy_pass http://hubs;\n            proxy_http_version 1.1;\n            proxy_set_header Host $http_host;\n            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n            proxy_set_header X-Forwarded-Proto $scheme;\n            proxy_set_header Upgrade $http_upgrade;\n            proxy_set_header Connection $connection_upgrade;\n            proxy_buffering off;\n            proxy_read_timeout 1h;\n            proxy_connect_timeout 2s;\n            proxy_next_upstream error timeout;\n        }\n";

fn replica_config(db_url: &str, lb_port: u16) -> String {
    format!(
        "hub:\n  db:\n    type: postgres\n    url: {db_url}\n  services:\n    ops:\n      admin: true\n      apiToken: {TOKEN}\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n      hub_connect_url: http://127.0.0.1:{lb_port}\nsingleuser:\n  cmd: {}\n  extraEnv:\n    TINY_SERVER_DELAY: '1.5'\n",
        api_load::tiny_server_cmd()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_under_load_loses_nothing_but_requests_in_flight() {
    let db_url = common::fresh_postgres_database("ha").await;
    let lb_port = free_port();
    let config = replica_config(&db_url, lb_port);
    // Started first, `doomed` leads (runs the culler and services) until it dies.
    let mut doomed = TestHub::start_with(&config, "", &python_env());
    let survivor = TestHub::start_with(&config, "", &python_env());
    let nginx = Nginx::start(lb_port, &[doomed.port, survivor.port]);
    let lb = format!("http://127.0.0.1:{lb_port}");
    let http = client();
    let logs = |nginx: &Nginx, doomed: &TestHub, survivor: &TestHub| {
        format!(
            "doomed replica's log:\n{}\nsurvivor's log:\n{}\nnginx:\n{}",
            doomed.log(),
            survivor.log(),
            nginx.log()
        )
    };

    let users: Vec<String> = (0..16).map(|i| format!("user{i}")).collect();
    let body = serde_json::json!({ "usernames": users });
    let response = http
        .post(format!("{lb}/hub/api/users"))
        .header("Authorization", format!("token {TOKEN}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());

    // Servers started through each replica directly: those of the doomed one must outlive it.
    let direct = |hub: &TestHub| format!("http://127.0.0.1:{}", hub.port);
    let starts: Vec<_> = (0..6)
        .map(|i| {
            let base = if i % 2 == 0 {
                direct(&doomed)
            } else {
                direct(&survivor)
            };
            let (http, user) = (http.clone(), users[i].clone());
            tokio::spawn(async move { start_and_wait(&http, &base, &user).await })
        })
        .collect();
    for start in starts {
        if let Err(e) = start.await.unwrap() {
            panic!("{e}\n{}", logs(&nginx, &doomed, &survivor));
        }
    }
    for user in &users[..6] {
        if let Err(e) = server_answers(&http, &lb, user).await {
            panic!("{e}\n{}", logs(&nginx, &doomed, &survivor));
        }
    }

    // The load: API reads and requests to running servers, and spawns of the other users.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(Tally::default());
    let spawns = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    const READERS: usize = 4;
    for worker in 0..READERS {
        let (http, lb, stop, reads, users) = (
            http.clone(),
            lb.clone(),
            stop.clone(),
            reads.clone(),
            users.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = worker;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let user = &users[n % 6];
                let result = if n % 2 == 0 {
                    match call(
                        &http,
                        &lb,
                        reqwest::Method::GET,
                        &format!("/hub/api/users/{user}"),
                        None,
                    )
                    .await
                    {
                        Ok((200, _)) => Ok(()),
                        other => Err(format!("GET /hub/api/users/{user}: {other:?}")),
                    }
                } else {
                    server_answers(&http, &lb, user).await
                };
                reads.note(result);
            }
        }));
    }
    // Spawns one after another, each followed until ready; the ones that became ready.
    let spawned = {
        let (http, lb, stop, spawns, users) = (
            http.clone(),
            lb.clone(),
            stop.clone(),
            spawns.clone(),
            users.clone(),
        );
        tokio::spawn(async move {
            let mut ready = Vec::new();
            for user in &users[6..12] {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let result = start_and_wait(&http, &lb, user).await;
                if result.is_ok() {
                    ready.push(user.clone());
                }
                spawns.note(result);
            }
            ready
        })
    };

    tokio::time::sleep(Duration::from_secs(3)).await;
    // Starts driven by the doomed replica when it dies (outside the tally: they are in
    // flight there by design).
    let stranded_users = &users[12..14];
    for user in stranded_users {
        let (http, base, user) = (http.clone(), direct(&doomed), user.clone());
        tokio::spawn(async move {
            let _ = call(
                &http,
                &base,
                reqwest::Method::POST,
                &format!("/hub/api/users/{user}/server"),
                None,
            )
            .await;
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for user in stranded_users {
        while server_state(&http, &lb, user).await != "pending" {
            assert!(Instant::now() < deadline, "{user}'s start never showed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let doomed_log = doomed.dir.path().join("hub.log");
    doomed.kill(); // SIGKILL
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }
    let spawned = spawned.await.unwrap();
    let failed = reads.failed.load(Ordering::SeqCst) + spawns.failed.load(Ordering::SeqCst);
    println!(
        "under load, one replica killed: {} reads ok, {} failed; {} spawns ok, {} failed; failures: {:?}",
        reads.ok.load(Ordering::SeqCst),
        reads.failed.load(Ordering::SeqCst),
        spawns.ok.load(Ordering::SeqCst),
        spawns.failed.load(Ordering::SeqCst),
        reads.failures.lock().unwrap()
    );
    // Each load task has one request in flight at a time: at most that many can have been on
    // the killed replica.
    assert!(
        failed <= READERS + 1,
        "{failed} requests failed, more than were in flight: {:?} {:?}\n{}",
        reads.failures.lock().unwrap(),
        spawns.failures.lock().unwrap(),
        logs(&nginx, &doomed, &survivor)
    );
    assert!(
        reads.ok.load(Ordering::SeqCst) > 0,
        "no read succeeded:\n{}",
        logs(&nginx, &doomed, &survivor)
    );

    // Every server that was running is reachable through the survivor (and reaches the hub).
    for user in users[..6].iter().chain(&spawned) {
        if let Err(e) = server_answers(&http, &lb, user).await {
            panic!("{e}\n{}", logs(&nginx, &doomed, &survivor));
        }
    }

    // A start the dead replica was driving is cleaned up once its lease runs out: no server
    // stays pending.
    let deadline = Instant::now() + Duration::from_secs(120);
    for user in &users[6..14] {
        loop {
            let state = server_state(&http, &lb, user).await;
            if state == "ready" || state == "stopped" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{user}'s server is still {state} {} s after the kill\n{}",
                killed_at.elapsed().as_secs(),
                logs(&nginx, &doomed, &survivor)
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    println!(
        "starts the killed replica was driving were settled {:.1} s after the kill",
        killed_at.elapsed().as_secs_f64()
    );

    // The survivor took the leader lease over.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !survivor.log().contains("this replica leads") {
        assert!(
            Instant::now() < deadline,
            "the survivor never took the leader lease\n{}",
            logs(&nginx, &doomed, &survivor)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        std::fs::read_to_string(&doomed_log)
            .unwrap_or_default()
            .contains("this replica leads"),
        "the replica started first led"
    );
    // The managed services (z2jh's idle culler) moved with it: the survivor waited, then
    // started them.
    let survivor_log = survivor.log();
    assert!(
        survivor_log.contains("service waits for this replica to lead service=idle-culler"),
        "{survivor_log}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !survivor
        .log()
        .contains("service started service=idle-culler")
    {
        assert!(
            Instant::now() < deadline,
            "the survivor never started the idle culler\n{}",
            survivor.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // New spawns work: every user not running yet (a new one, and any whose start failed).
    for user in users[6..].iter() {
        if server_state(&http, &lb, user).await == "ready" {
            continue;
        }
        if let Err(e) = start_and_wait(&http, &lb, user).await {
            panic!("{e}\n{}", logs(&nginx, &doomed, &survivor));
        }
        if let Err(e) = server_answers(&http, &lb, user).await {
            panic!("{e}\n{}", logs(&nginx, &doomed, &survivor));
        }
    }
    drop(nginx);
}

/// A browser through the load balancer, each of its requests going to either replica: login,
/// the Start button, JupyterLab (a real jupyterhub-singleuser, whose OAuth dance crosses the
/// replicas), and the same after one replica is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_oauth_and_jupyterlab_through_either_replica() {
    let db_url = common::fresh_postgres_database("ha_browser").await;
    let lb_port = free_port();
    let config = format!(
        "hub:\n  db:\n    type: postgres\n    url: {db_url}\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n      hub_connect_url: http://127.0.0.1:{lb_port}\nsingleuser:\n  defaultUrl: /lab\n"
    );
    let mut first = TestHub::start_with(&config, "", &python_env());
    let second = TestHub::start_with(&config, "", &python_env());
    let nginx = Nginx::start(lb_port, &[first.port, second.port]);
    let lb = format!("http://127.0.0.1:{lb_port}");
    let browser = common::Browser::new(common::BaseUrl::at(lb.clone()));
    let logs = |first: &TestHub, second: &TestHub| {
        format!(
            "first replica:\n{}\nsecond:\n{}\nnginx:\n{}",
            first.log(),
            second.log(),
            nginx.log()
        )
    };

    browser.login("ada", "any").await;
    let model = browser.start_server("ada", Duration::from_secs(120)).await;
    assert_eq!(model["server"], "/user/ada/", "{}", logs(&first, &second));
    let open_lab = || async {
        let lab = browser
            .client
            .get(format!("{lb}/user/ada/lab"))
            .send()
            .await
            .unwrap();
        let status = lab.status();
        let url = lab.url().clone();
        let body = lab.text().await.unwrap();
        (status, url, body)
    };
    let (status, url, body) = open_lab().await;
    assert!(
        status == 200 && body.contains("jupyter-config-data"),
        "JupyterLab through the load balancer: {status} at {url}: {body:.300}\n{}",
        logs(&first, &second)
    );

    // One replica dies: the session, the server and its OAuth cookie work through the other.
    first.kill();
    for _ in 0..4 {
        let (status, url, body) = open_lab().await;
        assert!(
            status == 200 && body.contains("jupyter-config-data"),
            "JupyterLab after a replica died: {status} at {url}: {body:.300}\n{}",
            logs(&first, &second)
        );
        let home = browser
            .client
            .get(format!("{lb}/hub/home"))
            .send()
            .await
            .unwrap();
        assert_eq!(home.status(), 200, "{}", logs(&first, &second));
        assert!(home.text().await.unwrap().contains("ada"));
    }
    let status = browser
        .client
        .get(format!("{lb}/user/ada/api/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200, "{}", logs(&first, &second));
    drop(nginx);
}
