//! Tests of the local process spawner with real processes (needs /bin/sh and python3).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hubfleet_spawn::{
    tail_log, LaunchSpec, LocalOptions, LocalProcessSpawner, Owner, PollStatus, ProgressSender,
    Resources, ServerRef, SpawnError, Spawner, Started, Storage,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A fresh directory for one test (removed at the end of successful tests).
struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hubfleet-spawn-{}-{}-{}",
            std::process::id(),
            name,
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }

    /// A launch spec for alice's default server; her home and log do not exist yet.
    fn spec(&self, cmd: &[&str], env: &[(&str, &str)]) -> LaunchSpec {
        spec_of("alice", cmd, env)
    }

    /// The spawner's options for this directory: homes and logs in it, no shared folder.
    fn options(&self) -> LocalOptions {
        LocalOptions {
            homes_dir: self.0.join("home"),
            shared_dir: None,
            ..LocalOptions::new(&self.0)
        }
    }

    /// A spawner for these tests, which run as root in CI: servers may run as the hub's own
    /// user, root included (`hubfleet.local.allow_root`).
    fn spawner(&self) -> LocalProcessSpawner {
        LocalProcessSpawner::new(LocalOptions {
            allow_root: true,
            ..self.options()
        })
    }

    fn home(&self) -> PathBuf {
        self.0.join("home/alice")
    }

    fn log(&self) -> PathBuf {
        self.0.join("logs/alice.log")
    }
}

fn spec_of(user: &str, cmd: &[&str], env: &[(&str, &str)]) -> LaunchSpec {
    LaunchSpec {
        owner: Owner {
            name: user.into(),
            ..Default::default()
        },
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        service_prefix: format!("/user/{user}/"),
        storage: Storage {
            home: user.into(),
            capacity: None,
        },
        ..Default::default()
    }
}

async fn start(spawner: &LocalProcessSpawner, spec: &LaunchSpec) -> Result<Started, SpawnError> {
    spawner.start(spec, &ProgressSender::discard()).await
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn sh(script: &str) -> Vec<&str> {
    vec!["/bin/sh", "-c", script]
}

fn pid_of(state: &serde_json::Value) -> i32 {
    state["pid"].as_i64().unwrap() as i32
}

/// Waits until `cond` holds, up to `limit`.
async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// `/proc/<pid>` state letter, if the pid exists.
fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

fn proc_running(pid: i32) -> bool {
    matches!(proc_state(pid), Some(s) if s != 'Z')
}

async fn poll_until_exited(spawner: &LocalProcessSpawner, state: &serde_json::Value) -> PollStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = spawner.poll(state).await.unwrap();
        if status != PollStatus::Running || Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn start_sets_env_home_and_log_then_stop() {
    let dir = TestDir::new("basic");
    let spawner = dir.spawner();
    let spec = dir.spec(
        &sh(r#"echo "url=$JUPYTERHUB_SERVICE_URL home=$HOME foo=$FOO cwd=$(pwd)"; exec sleep 60"#),
        &[("FOO", "bar")],
    );
    assert!(!dir.home().exists());
    let started = start(&spawner, &spec).await.unwrap();

    let port = started.state["port"].as_u64().unwrap();
    assert_eq!(started.target, format!("http://127.0.0.1:{port}"));
    assert_eq!(started.state["ip"], "127.0.0.1");
    let pid = pid_of(&started.state);
    assert_eq!(started.state["pgid"].as_i64(), Some(pid as i64));
    assert!(started.state["start_time"].as_u64().unwrap() > 0);
    assert!(dir.home().is_dir(), "home dir created");

    let expected = format!(
        "url=http://127.0.0.1:{port}/user/alice/ home={home} foo=bar cwd={home}",
        home = dir.home().display()
    );
    assert!(
        eventually(Duration::from_secs(5), || read_log(&dir.log())
            .contains(&expected))
        .await,
        "log: {:?}, expected {expected:?}",
        read_log(&dir.log())
    );
    assert_eq!(
        spawner.poll(&started.state).await.unwrap(),
        PollStatus::Running
    );
    assert!(proc_running(pid));

    let t0 = Instant::now();
    spawner
        .stop(&started.state, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(3), "SIGTERM was enough");
    // Own child, reaped: killed by SIGTERM (15), reported like Popen.returncode.
    assert_eq!(
        spawner.poll(&started.state).await.unwrap(),
        PollStatus::Exited(Some(-15))
    );
    assert_eq!(proc_state(pid), None, "reaped, not a zombie");
    // Stopping again is fine.
    spawner
        .stop(&started.state, Duration::from_secs(1))
        .await
        .unwrap();
}

#[tokio::test]
async fn server_listens_on_the_chosen_port() {
    let dir = TestDir::new("http");
    let spawner = dir.spawner();
    let script = r#"
import os, http.server, urllib.parse
url = urllib.parse.urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello " + self.path).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer((url.hostname, url.port), H).serve_forever()
"#;
    let spec = dir.spec(&["python3", "-c", script], &[]);
    let started = start(&spawner, &spec).await.unwrap();
    let addr = started.target.strip_prefix("http://").unwrap().to_string();

    let deadline = Instant::now() + Duration::from_secs(15);
    let mut stream = loop {
        match tokio::net::TcpStream::connect(&addr).await {
            Ok(s) => break s,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "server never listened on {addr}: {e}; log: {}",
                    read_log(&dir.log())
                );
                assert_eq!(
                    spawner.poll(&started.state).await.unwrap(),
                    PollStatus::Running
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    stream
        .write_all(b"GET /user/alice/api HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.0 200"), "{response}");
    assert!(response.ends_with("hello /user/alice/api"), "{response}");

    spawner
        .stop(&started.state, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(matches!(
        spawner.poll(&started.state).await.unwrap(),
        PollStatus::Exited(_)
    ));
    assert_eq!(proc_state(pid_of(&started.state)), None);
}

#[tokio::test]
async fn immediate_exit_reports_code_and_log_tail() {
    let dir = TestDir::new("boom");
    let spawner = dir.spawner();
    let spec = dir.spec(&sh("echo starting; echo boom >&2; exit 3"), &[]);
    let started = start(&spawner, &spec).await.unwrap();
    assert_eq!(
        poll_until_exited(&spawner, &started.state).await,
        PollStatus::Exited(Some(3))
    );
    let tail = tail_log(&dir.log(), 4096).unwrap();
    assert!(tail.contains("starting\n"), "{tail:?}");
    assert!(
        tail.contains("boom"),
        "stderr goes to the log too: {tail:?}"
    );
    assert_eq!(tail_log(&dir.log(), 5).unwrap(), "boom\n");
    // Already gone: stop is not an error.
    spawner
        .stop(&started.state, Duration::from_secs(1))
        .await
        .unwrap();
}

#[tokio::test]
async fn log_is_appended_across_starts() {
    let dir = TestDir::new("append");
    let spawner = dir.spawner();
    for word in ["one", "two"] {
        let spec = dir.spec(&sh(&format!("echo {word}")), &[]);
        let started = start(&spawner, &spec).await.unwrap();
        assert_eq!(
            poll_until_exited(&spawner, &started.state).await,
            PollStatus::Exited(Some(0))
        );
    }
    assert_eq!(read_log(&dir.log()), "one\ntwo\n");
}

#[tokio::test]
async fn missing_or_non_executable_program_is_an_exec_error() {
    let dir = TestDir::new("missing");
    let spawner = dir.spawner();
    let program = "/nonexistent/hubfleet-no-such-program";
    match start(&spawner, &dir.spec(&[program, "--x"], &[])).await {
        Err(err @ SpawnError::Exec { .. }) => {
            assert!(err.to_string().contains(program), "{err}");
            let SpawnError::Exec {
                program: p, user, ..
            } = err
            else {
                unreachable!()
            };
            assert_eq!(p, program);
            assert_eq!(user, "alice");
        }
        other => panic!("expected Exec error, got {other:?}"),
    }

    let file = dir.0.join("not-executable");
    std::fs::write(&file, "#!/bin/sh\necho hi\n").unwrap();
    let file = file.to_str().unwrap();
    match start(&spawner, &dir.spec(&[file], &[])).await {
        Err(SpawnError::Exec { program, .. }) => assert_eq!(program, file),
        other => panic!("expected Exec error, got {other:?}"),
    }

    assert!(matches!(
        start(&spawner, &dir.spec(&[], &[])).await,
        Err(SpawnError::Other(_))
    ));
}

#[tokio::test]
async fn sigterm_ignoring_server_is_killed_after_grace() {
    let dir = TestDir::new("stubborn");
    let spawner = dir.spawner();
    // `sleep` runs as a separate process in the same group, ignoring TERM too.
    let spec = dir.spec(
        &sh("trap '' TERM; echo ready; sleep 60; echo survived"),
        &[],
    );
    let started = start(&spawner, &spec).await.unwrap();
    let pid = pid_of(&started.state);
    assert!(
        eventually(Duration::from_secs(5), || read_log(&dir.log())
            .contains("ready"))
        .await
    );

    let grace = Duration::from_millis(600);
    let t0 = Instant::now();
    spawner.stop(&started.state, grace).await.unwrap();
    let elapsed = t0.elapsed();
    assert!(elapsed >= grace, "waited the grace period: {elapsed:?}");
    assert!(elapsed < grace + Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(
        spawner.poll(&started.state).await.unwrap(),
        PollStatus::Exited(Some(-9))
    );
    assert_eq!(proc_state(pid), None);
    // The whole group (including `sleep`) is gone.
    assert!(
        eventually(Duration::from_secs(3), || {
            nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), None).is_err()
        })
        .await,
        "process group still has members"
    );
    assert!(!read_log(&dir.log()).contains("survived"));
}

#[tokio::test]
async fn restarted_hub_adopts_running_server() {
    let dir = TestDir::new("adopt");
    let spec = dir.spec(&sh("exec sleep 60"), &[]);
    let state = {
        let first = dir.spawner();
        start(&first, &spec).await.unwrap().state
        // `first` (and with it the map of children) is dropped here.
    };
    let pid = pid_of(&state);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        proc_running(pid),
        "dropping the spawner must not kill the server"
    );

    let second = dir.spawner();
    assert_eq!(second.poll(&state).await.unwrap(), PollStatus::Running);

    // Same pid, different start time: another process (pid reuse). Not ours.
    let mut reused = state.clone();
    reused["start_time"] = json!(state["start_time"].as_u64().unwrap() + 1);
    assert_eq!(
        second.poll(&reused).await.unwrap(),
        PollStatus::Exited(None)
    );
    second
        .stop(&reused, Duration::from_millis(100))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        proc_running(pid),
        "a mismatched start_time must never be signalled"
    );
    assert_eq!(second.poll(&state).await.unwrap(), PollStatus::Running);

    second.stop(&state, Duration::from_secs(5)).await.unwrap();
    assert!(!proc_running(pid));
    assert_eq!(second.poll(&state).await.unwrap(), PollStatus::Exited(None));
    // The original reaper task still reaps it: no zombie is left behind.
    assert!(eventually(Duration::from_secs(3), || proc_state(pid).is_none()).await);
}

#[tokio::test]
async fn bad_state_is_rejected() {
    let dir = TestDir::new("bad-state");
    let spawner = dir.spawner();
    for state in [
        json!({}),
        json!(null),
        json!({"pid": 1234}),
        json!({"pid": 1234, "pgid": 1234}),
        json!({"pid": "1234", "pgid": 1234, "start_time": 5}),
        json!({"pid": 0, "pgid": 0, "start_time": 5}),
        json!({"pid": 1, "pgid": 1, "start_time": 5}),
    ] {
        assert!(
            matches!(spawner.poll(&state).await, Err(SpawnError::BadState(_))),
            "{state}"
        );
        assert!(
            matches!(
                spawner.stop(&state, Duration::from_millis(10)).await,
                Err(SpawnError::BadState(_))
            ),
            "{state}"
        );
    }
}

#[tokio::test]
async fn environment_is_cleared_except_kept_variables() {
    std::env::set_var("CONFIGPROXY_AUTH_TOKEN", "proxy-secret");
    std::env::set_var("HUBFLEET_TEST_LEAK", "leaked");
    std::env::set_var("HUBFLEET_TEST_KEEP", "kept");
    std::env::set_var("HUBFLEET_TEST_OVERRIDE", "from-hub");

    let dir = TestDir::new("env");
    let spawner = LocalProcessSpawner::new(LocalOptions {
        env_keep: vec![
            "PATH".into(),
            "HUBFLEET_TEST_KEEP".into(),
            "HUBFLEET_TEST_OVERRIDE".into(),
            // Even when listed, the proxy token is never passed on.
            "CONFIGPROXY_AUTH_TOKEN".into(),
        ],
        allow_root: true,
        ..dir.options()
    });
    let spec = dir.spec(
        &sh("env; echo END"),
        &[
            ("HUBFLEET_TEST_OVERRIDE", "from-spec"),
            ("JUPYTERHUB_API_TOKEN", "tok"),
        ],
    );
    let started = start(&spawner, &spec).await.unwrap();
    assert_eq!(
        poll_until_exited(&spawner, &started.state).await,
        PollStatus::Exited(Some(0))
    );
    let log = read_log(&dir.log());
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.contains(&"END"), "{log}");
    assert!(lines.contains(&"HUBFLEET_TEST_KEEP=kept"), "{log}");
    assert!(lines.contains(&"HUBFLEET_TEST_OVERRIDE=from-spec"), "{log}");
    assert!(lines.contains(&"JUPYTERHUB_API_TOKEN=tok"), "{log}");
    let home = format!("HOME={}", dir.home().display());
    assert!(lines.contains(&home.as_str()), "{log}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("JUPYTERHUB_SERVICE_URL=http://127.0.0.1:")),
        "{log}"
    );
    assert!(!log.contains("CONFIGPROXY_AUTH_TOKEN"), "{log}");
    assert!(!log.contains("proxy-secret"), "{log}");
    assert!(!log.contains("HUBFLEET_TEST_LEAK"), "{log}");
}

#[tokio::test]
async fn jupyter_programs_get_allow_root_only_with_the_opt_in() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TestDir::new("root");
    let program = dir.0.join("jupyterhub-singleuser-fake");
    std::fs::write(&program, "#!/bin/sh\necho \"args: $*\"\n").unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let other = dir.0.join("other-server");
    std::fs::copy(&program, &other).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o755)).unwrap();

    let root = nix::unistd::geteuid().is_root();
    let opted_in = dir.spawner();
    for (prog, expect_flag) in [(&program, root), (&other, false)] {
        let spec = dir.spec(&[prog.to_str().unwrap(), "--debug"], &[]);
        let _ = std::fs::remove_file(dir.log());
        let started = start(&opted_in, &spec).await.unwrap();
        assert_eq!(
            poll_until_exited(&opted_in, &started.state).await,
            PollStatus::Exited(Some(0))
        );
        let expected = if expect_flag {
            "args: --debug --allow-root\n"
        } else {
            "args: --debug\n"
        };
        assert_eq!(read_log(&dir.log()), expected, "{}", prog.display());
    }

    // Without the opt-in, a root hub starts nothing as root (and so never adds the flag).
    let spec = dir.spec(&[program.to_str().unwrap(), "--debug"], &[]);
    let _ = std::fs::remove_file(dir.log());
    let not_opted_in = LocalProcessSpawner::new(dir.options());
    let result = start(&not_opted_in, &spec).await;
    if root {
        let err = result.expect_err("refused as root");
        assert!(
            err.to_string()
                .contains("refusing to run the server of alice as root")
                && err.to_string().contains("hubfleet.local.allow_root"),
            "{err}"
        );
        assert!(!dir.log().exists(), "nothing was started");
    } else {
        let started = result.unwrap();
        poll_until_exited(&not_opted_in, &started.state).await;
        assert!(!read_log(&dir.log()).contains("--allow-root"));
    }
}

/// A stand-in server that writes which GPUs it sees to its log, then waits.
const SHOW_GPUS: &str =
    r#"echo "cuda=$CUDA_VISIBLE_DEVICES nvidia=$NVIDIA_VISIBLE_DEVICES"; exec sleep 60"#;

fn gpu_spec(user: &str, gpus: u32) -> LaunchSpec {
    LaunchSpec {
        resources: Resources {
            gpus,
            ..Default::default()
        },
        ..spec_of(user, &sh(SHOW_GPUS), &[])
    }
}

#[tokio::test]
async fn gpus_are_given_out_refused_when_taken_and_kept_across_a_restart() {
    let dir = TestDir::new("gpus");
    let options = LocalOptions {
        gpus: vec![0],
        allow_root: true,
        ..dir.options()
    };
    let first = LocalProcessSpawner::new(options.clone());
    let alice = gpu_spec("alice", 1);
    let bob = gpu_spec("bob", 1);
    first.check(&alice).await.unwrap();
    let started = start(&first, &alice).await.unwrap();
    assert_eq!(started.state["gpus"], json!([0]));
    assert_eq!(started.state["user"], "alice");
    assert_eq!(started.state["server"], "");
    assert!(
        eventually(Duration::from_secs(5), || read_log(&dir.log())
            .contains("cuda=0 nvidia=0"))
        .await,
        "{}",
        read_log(&dir.log())
    );

    // The only GPU is taken: bob is refused, by the check and by a start, before anything is
    // made for him.
    let refused = "asks for 1 GPU, but only 0 of the hub's 1 GPU(s) are free";
    match first.check(&bob).await {
        Err(SpawnError::Refused(message)) => assert!(message.contains(refused), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    match start(&first, &bob).await {
        Err(SpawnError::Refused(message)) => assert!(message.contains(refused), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(!dir.0.join("home/bob").exists());
    assert!(!dir.0.join("logs/bob.log").exists());
    // A server without a GPU sees none.
    let carol = start(&first, &gpu_spec("carol", 0)).await.unwrap();
    assert_eq!(carol.state["gpus"], json!([]));
    let carol_log = dir.0.join("logs/carol.log");
    assert!(
        eventually(Duration::from_secs(5), || read_log(&carol_log)
            .contains("cuda= nvidia=void"))
        .await,
        "{}",
        read_log(&carol_log)
    );
    first
        .stop(&carol.state, Duration::from_secs(5))
        .await
        .unwrap();

    // The hub restarts: a new spawner knows nothing until the hub hands it the running
    // server's state.
    drop(first);
    let second = LocalProcessSpawner::new(options);
    second.check(&bob).await.unwrap();
    second
        .adopt(&ServerRef::new("alice", ""), &started.state)
        .await;
    assert_eq!(second.gpus_held_by(&ServerRef::new("alice", "")), [0]);
    assert!(matches!(
        second.check(&bob).await,
        Err(SpawnError::Refused(_))
    ));

    // Stopping alice's server frees its GPU for bob.
    second
        .stop(&started.state, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(second.gpus_held_by(&ServerRef::new("alice", "")).is_empty());
    let bobs = start(&second, &bob).await.unwrap();
    assert_eq!(bobs.state["gpus"], json!([0]));
    second
        .stop(&bobs.state, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(second.gpus_held_by(&ServerRef::new("bob", "")).is_empty());
}

#[tokio::test]
async fn a_failed_start_gives_its_gpus_back() {
    let dir = TestDir::new("gpu-fail");
    let spawner = LocalProcessSpawner::new(LocalOptions {
        gpus: vec![0],
        allow_root: true,
        ..dir.options()
    });
    let broken = LaunchSpec {
        cmd: vec!["/nonexistent/hubfleet-no-such-program".into()],
        ..gpu_spec("alice", 1)
    };
    assert!(matches!(
        start(&spawner, &broken).await,
        Err(SpawnError::Exec { .. })
    ));
    assert!(spawner
        .gpus_held_by(&ServerRef::new("alice", ""))
        .is_empty());
    spawner.check(&gpu_spec("bob", 1)).await.unwrap();
}

#[tokio::test]
async fn the_log_is_read_and_noted_through_the_spawner() {
    let dir = TestDir::new("log");
    let spawner = dir.spawner();
    let alice = ServerRef::new("alice", "");
    assert_eq!(
        spawner.log_tail(&alice, None, 100).await,
        None,
        "no log yet"
    );
    let started = start(&spawner, &dir.spec(&sh("echo hello"), &[]))
        .await
        .unwrap();
    assert_eq!(
        poll_until_exited(&spawner, &started.state).await,
        PollStatus::Exited(Some(0))
    );
    spawner
        .note_in_log(&started.state, "[hubfleet] a note\n")
        .await;
    for state in [Some(&started.state), None] {
        let log = spawner.log_tail(&alice, state, 100).await.unwrap();
        assert_eq!(log.text, "hello\n[hubfleet] a note\n");
        assert_eq!(log.source, dir.log().display().to_string());
    }
}
