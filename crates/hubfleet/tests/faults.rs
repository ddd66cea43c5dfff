//! Faults, with servers running and a load of API reads and requests to the servers going on:
//! - the hub killed with SIGKILL and started again: no server lost, every route back;
//! - PostgreSQL restarted under the hub: requests fail cleanly (503 with Retry-After, never
//!   a 500 or a hang) and recover by themselves;
//! - the disk that holds SQLite full: writes fail with a clear 503, reads go on, the database
//!   is not corrupted (`PRAGMA integrity_check`), and writes work again once there is space.
//!
//! (A spawner whose start hangs: crates/hubfleet-hub/tests/hanging_spawner.rs.) Times are
//! printed, not asserted; `bench/faults` runs these with more servers and records them.
//! HUBFLEET_FAULT_SERVERS sets how many servers run (default 8), HUBFLEET_FAULT_PG_DOWN_SECONDS
//! how long PostgreSQL stays down (default 12: longer than a request waits for a connection).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, python_env, TestHub};

#[path = "support/api_load.rs"]
mod api_load;
use api_load::{call, client, server_answers, server_state, start_and_wait, TOKEN};

fn server_count() -> usize {
    std::env::var("HUBFLEET_FAULT_SERVERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(8)
}

fn hub_config(db: &str) -> String {
    format!(
        "hub:\n{db}  services:\n    ops:\n      admin: true\n      apiToken: {TOKEN}\n  config:\n    JupyterHub:\n      authenticator_class: dummy\nsingleuser:\n  cmd: {}\n",
        api_load::tiny_server_cmd()
    )
}

/// Make `users` and start their servers, all at once; panics with the hub's log if one fails.
async fn start_servers(hub: &TestHub, users: &[String]) {
    if let Err(e) = api_load::create_and_start_all(&client(), &hub.direct_url(""), users).await {
        panic!("{e}\nlog:\n{}", hub.log());
    }
}

/// What the load saw: each request's outcome (status, or 0 for no answer) and how long it took.
#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<(Instant, u16, Duration, String)>>,
}

/// Readers of the API and of the servers, until `stop`.
fn load(
    base: String,
    users: Vec<String>,
    stop: Arc<AtomicBool>,
    seen: Arc<Seen>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..3)
        .map(|worker| {
            let (base, users, stop, seen) =
                (base.clone(), users.clone(), stop.clone(), seen.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .unwrap();
                let mut n = worker;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let user = &users[n % users.len()];
                    let path = match n % 3 {
                        0 => "/hub/api/users".to_string(),
                        1 => format!("/hub/api/users/{user}"),
                        _ => format!("/user/{user}/"),
                    };
                    let began = Instant::now();
                    let response = http
                        .get(format!("{base}{path}"))
                        .header("Authorization", format!("token {TOKEN}"))
                        .send()
                        .await;
                    let (status, note) = match response {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let retry = r.headers().get("retry-after").is_some();
                            let body = r.text().await.unwrap_or_default();
                            let note = match status {
                                200 => String::new(),
                                _ => format!(
                                    "{path} retry-after={retry} {}",
                                    body.chars().take(300).collect::<String>()
                                ),
                            };
                            (status, note)
                        }
                        Err(e) => (0, format!("{path}: {e}")),
                    };
                    seen.requests
                        .lock()
                        .unwrap()
                        .push((began, status, began.elapsed(), note));
                    if status != 200 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
        })
        .collect()
}

/// Every server answers through the hub, reaching the hub's API itself; the same processes
/// as `before` (none was restarted).
async fn all_servers_answer(hub: &TestHub, users: &[String]) {
    let http = client();
    let base = hub.direct_url("");
    // Right after a fault an API call may still fail (a 503 while connections come back): ask
    // again; a server that is not `ready` is lost.
    let deadline = Instant::now() + Duration::from_secs(30);
    for user in users {
        loop {
            let state = server_state(&http, &base, user).await;
            match state.as_str() {
                "ready" => break,
                "stopped" | "pending" => panic!("{user}'s server is {state}\n{}", hub.log()),
                _ if Instant::now() < deadline => {
                    println!("{user}: {state}; asking again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                _ => panic!("{user}: {state}\n{}", hub.log()),
            }
        }
        while let Err(e) = server_answers(&http, &base, user).await {
            assert!(Instant::now() < deadline, "{e}\nlog:\n{}", hub.log());
            println!("{user}'s server: {e}; asking again");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hub_killed_and_restarted_loses_no_server() {
    let mut hub = TestHub::start_with(&hub_config(""), "", &python_env());
    let users: Vec<String> = (0..server_count()).map(|i| format!("k{i}")).collect();
    start_servers(&hub, &users).await;
    let pids: Vec<Vec<i32>> = users.iter().map(|u| hub.server_pids(u)).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let tasks = load(
        hub.direct_url(""),
        users.clone(),
        stop.clone(),
        seen.clone(),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    hub.kill(); // SIGKILL
    let killed = Instant::now();
    hub.launch();
    let answering = killed.elapsed();
    // Every server answers again through the restarted hub's proxy.
    let http = client();
    let base = hub.direct_url("");
    let deadline = Instant::now() + Duration::from_secs(60);
    for user in &users {
        while server_answers(&http, &base, user).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "{user}'s route never came back\n{}",
                hub.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let routes_back = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }
    let requests = std::mem::take(&mut *seen.requests.lock().unwrap());
    let failed = requests.iter().filter(|r| r.1 != 200).count();
    println!(
        "hub SIGKILL + restart with {} servers: answering after {:.2} s, all routes back after {:.2} s; {} requests, {failed} failed while it was down",
        users.len(),
        answering.as_secs_f64(),
        routes_back.as_secs_f64(),
        requests.len()
    );
    // Requests fail only while the hub is down.
    let late: Vec<_> = requests
        .iter()
        .filter(|r| r.1 != 200 && r.0 > killed + routes_back)
        .collect();
    assert!(
        late.is_empty(),
        "failures after the routes were back: {late:?}"
    );

    all_servers_answer(&hub, &users).await;
    let after: Vec<Vec<i32>> = users.iter().map(|u| hub.server_pids(u)).collect();
    assert_eq!(pids, after, "the same server processes run");
    let log = hub.log();
    assert!(
        log.contains(&format!("adopted={}", users.len())),
        "every server re-adopted:\n{log}"
    );
}

/// A PostgreSQL server of this test's own (never the shared one), in a temporary directory.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    fn start() -> PrivatePostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("PostgreSQL's server binaries under /usr/lib/postgresql (apt-get install postgresql)");
        let dir = tempfile::tempdir().unwrap();
        if nix::unistd::geteuid().is_root() {
            // PostgreSQL refuses to run as root: its files belong to the postgres account.
            let status = Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(
                status.success(),
                "chown postgres: (the postgresql package makes the account)"
            );
        }
        let server = PrivatePostgres {
            dir,
            bin,
            port: free_port(),
        };
        server.run(
            "initdb",
            &["-D", &server.data(), "-U", "postgres", "--auth=trust"],
        );
        server.start_server();
        server
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// A PostgreSQL program, as the postgres account when we are root (it refuses root).
    fn run(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program);
        let mut command = if nix::unistd::geteuid().is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let output = command.args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{} {args:?}: {}{}",
            program.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn start_server(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-o",
                &options,
                "start",
            ],
        );
    }

    fn stop_server(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
        if !nix::unistd::geteuid().is_root() {
            let _ = Command::new(self.bin.join("pg_ctl"))
                .args(["-D", &self.data(), "-m", "immediate", "stop"])
                .output();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restart_gives_clean_503s_and_recovers() {
    let pg = PrivatePostgres::start();
    let db = format!("  db:\n    type: postgres\n    url: {}\n", pg.url());
    let hub = TestHub::start_with(&hub_config(&db), "", &python_env());
    let users: Vec<String> = (0..server_count()).map(|i| format!("p{i}")).collect();
    start_servers(&hub, &users).await;

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let tasks = load(
        hub.direct_url(""),
        users.clone(),
        stop.clone(),
        seen.clone(),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg.stop_server();
    let stopped = Instant::now();
    let down = std::env::var("HUBFLEET_FAULT_PG_DOWN_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    tokio::time::sleep(Duration::from_secs(down)).await;
    pg.start_server();
    let back = Instant::now();
    // The hub recovers by itself: API reads answer again.
    let http = client();
    let base = hub.direct_url("");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, _)) = call(&http, &base, reqwest::Method::GET, "/hub/api/users", None).await
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the hub never recovered\n{}",
            hub.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered = back.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }

    let requests = std::mem::take(&mut *seen.requests.lock().unwrap());
    let unavailable = requests.iter().filter(|r| r.1 == 503).count();
    let slowest = requests.iter().map(|r| r.2).max().unwrap_or_default();
    println!(
        "PostgreSQL down {:.1} s: {} requests, {unavailable} answered 503, slowest {:.2} s; API reads answer again {:.2} s after PostgreSQL is back",
        (back - stopped).as_secs_f64(),
        requests.len(),
        slowest.as_secs_f64(),
        recovered.as_secs_f64()
    );
    // Clean failures: 503 with Retry-After and a message, or (requests to servers, which the
    // proxy forwards without the database) 200; a server that could not post its activity
    // answers 502 itself. Nothing else, and no request waits long.
    let unclean: Vec<_> = requests
        .iter()
        .filter(|(_, status, _, note)| match status {
            200 => false,
            503 => !(note.contains("retry-after=true") && note.contains("database is unavailable")),
            502 => !note.contains("hub answered"),
            _ => true,
        })
        .collect();
    assert!(
        unclean.is_empty(),
        "unclean failures: {unclean:?}\n{}",
        hub.log()
    );
    // Longer than the 10 s a request waits for a connection: some requests end with 503. (In a
    // shorter outage they may all just wait.)
    if down >= 12 {
        assert!(
            unavailable > 0,
            "no request answered 503 during the outage: {} requests",
            requests.len()
        );
    }
    assert!(
        slowest < Duration::from_secs(30),
        "a request waited {slowest:?} (a hang)"
    );

    // Nothing lost, and the hub works as before: servers answer (and reach the API), a new
    // spawn works.
    all_servers_answer(&hub, &users).await;
    let (status, body) = call(
        &http,
        &base,
        reqwest::Method::POST,
        "/hub/api/users/after-restart",
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{body}");
    if let Err(e) = start_and_wait(&http, &base, "after-restart").await {
        panic!("{e}\n{}", hub.log());
    }
    server_answers(&http, &base, "after-restart").await.unwrap();
}

/// A small tmpfs mounted for this test, unmounted at the end.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` when this process may not mount (not root, or no CAP_SYS_ADMIN).
    fn mount(megabytes: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .ok()?;
        if !mounted.status.success() {
            println!(
                "skipped: cannot mount a small tmpfs here ({}); run as root to test a full disk",
                String::from_utf8_lossy(&mounted.stderr).trim()
            );
            return None;
        }
        Some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fill the file system at `dir` with one file, to the last byte.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    for size in [4096, 512, 1] {
        while file.write_all(&chunk[..size]).is_ok() {}
    }
    let _ = file.sync_all();
    path
}

async fn integrity_check(db: &Path) -> String {
    use sqlx::Row;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!("sqlite://{}?mode=ro", db.display()))
        .await
        .unwrap();
    let row = sqlx::query("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .unwrap();
    let result: String = row.try_get(0).unwrap();
    pool.close().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_on_a_full_disk_fails_clearly_and_recovers() {
    let Some(disk) = SmallDisk::mount(16) else {
        return;
    };
    let db_file = disk.path().join("hub.sqlite");
    let db = format!(
        "  db:\n    type: sqlite-pvc\n    url: sqlite://{}\n",
        db_file.display()
    );
    let mut hub = TestHub::start_with(&hub_config(&db), "", &python_env());
    let users: Vec<String> = (0..server_count()).map(|i| format!("d{i}")).collect();
    start_servers(&hub, &users).await;
    let http = client();
    let base = hub.direct_url("");

    let filler = fill(disk.path());
    // Writes fail, with a clear answer: add users (long names, many at once) until one does.
    let mut failure = None;
    for round in 0..500 {
        let names: Vec<String> = (0..50)
            .map(|i| format!("full-{round}-{i}-{}", "x".repeat(180)))
            .collect();
        let (status, body) = call(
            &http,
            &base,
            reqwest::Method::POST,
            "/hub/api/users",
            Some(serde_json::json!({ "usernames": names })),
        )
        .await
        .unwrap();
        if status != 201 {
            failure = Some((status, body));
            break;
        }
    }
    let (status, body) = failure.expect("a write failed on the full disk");
    println!("a write on the full disk: {status} {body}");
    assert_eq!(status, 503, "{body}\n{}", hub.log());
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("database is unavailable") && message.contains("full"),
        "{message}"
    );
    // Reads go on, and servers keep answering (they post activity: a write, which may fail).
    let (status, _) = call(&http, &base, reqwest::Method::GET, "/hub/api/users", None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(integrity_check(&db_file).await, "ok");

    // Space comes back: writes work again, by themselves.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let recovered_from = Instant::now();
    loop {
        let (status, body) = call(
            &http,
            &base,
            reqwest::Method::POST,
            "/hub/api/users/after-full-disk",
            None,
        )
        .await
        .unwrap();
        if status == 201 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writes never worked again: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "writes work again {:.2} s after space came back",
        recovered_from.elapsed().as_secs_f64()
    );
    all_servers_answer(&hub, &users).await;
    hub.kill();
    assert_eq!(integrity_check(&db_file).await, "ok");
}
