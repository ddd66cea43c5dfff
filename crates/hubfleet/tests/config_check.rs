//! `hubfleet check` and `hubfleet serve` with z2jh values files, through the real binary:
//! - z2jh's own values.yaml with a typical operator's file on top (tests/fixtures/z2jh-operator.yaml)
//!   gives one warning per Kubernetes-only key, each with its file and line, and runs;
//! - every error of several layered files is listed in one pass, with the key to use instead;
//! - `serve` checks the config, the port and the paths before it creates anything.
//!
//! z2jh's values.yaml is read from the shared reference material (`$HUBFLEET_SHARED_DIR`), never
//! copied into the repository.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn z2jh_values() -> PathBuf {
    hubfleet_config::fixtures::fixture("zero-to-jupyterhub/jupyterhub/values.yaml")
        .unwrap_or_else(|msg| panic!("{msg}"))
}

fn operator_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/z2jh-operator.yaml")
}

fn hubfleet(args: &[&str], files: &[&Path]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hubfleet"));
    command.args(args);
    for file in files {
        command.arg("--config").arg(file);
    }
    command.stdin(Stdio::null()).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The 1-based line of the block-style key `dotted` in a YAML text.
fn line_of(yaml: &str, dotted: &str) -> usize {
    let mut segs = dotted.split('.').peekable();
    let mut want = segs.next().unwrap();
    // Indentation of the block we search in (the children of the last key found).
    let mut block_indent: Option<usize> = Some(0);
    let mut parent_indent: Option<usize> = None;
    for (i, line) in yaml.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if parent_indent.is_some_and(|p| indent <= p) {
            break;
        }
        let block = *block_indent.get_or_insert(indent);
        if indent == block && trimmed.starts_with(&format!("{want}:")) {
            match segs.next() {
                None => return i + 1,
                Some(next) => {
                    want = next;
                    parent_indent = Some(indent);
                    block_indent = None;
                }
            }
        }
    }
    panic!("`{dotted}` is not in the file");
}

#[test]
fn line_of_finds_nested_block_keys() {
    let yaml = "a:\n  image: 1\n  b:\n    # c\n    image: 2\nimage: 3\n";
    assert_eq!(line_of(yaml, "a.image"), 2);
    assert_eq!(line_of(yaml, "a.b.image"), 5);
    assert_eq!(line_of(yaml, "image"), 6);
}

/// What an operator adds to a pasted z2jh file for hubfleet's HTTPS (`proxy.https` with
/// Let's Encrypt): the addresses for HTTPS and for port 80 (redirect and HTTP-01).
fn https_addresses(dir: &Path) -> PathBuf {
    let path = dir.join("addresses.yaml");
    std::fs::write(
        &path,
        "hubfleet:\n  listen: 0.0.0.0:443\n  http_redirect_listen: 0.0.0.0:80\n",
    )
    .unwrap();
    path
}

#[test]
fn a_pasted_z2jh_file_with_lets_encrypt_needs_port_80() {
    let out = hubfleet(&["check"], &[&z2jh_values(), &operator_file()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let errors: Vec<&str> = stdout.lines().filter(|l| l.contains(": error: ")).collect();
    assert_eq!(errors.len(), 1, "{stdout}");
    assert!(
        errors[0].contains("proxy.https.type:")
            && errors[0].contains("hubfleet.http_redirect_listen: 0.0.0.0:80"),
        "{stdout}"
    );
}

#[test]
fn check_lists_every_finding_of_a_pasted_z2jh_file_with_its_file_and_line() {
    let values = z2jh_values();
    let operator = operator_file();
    let dir = tempfile::tempdir().unwrap();
    let addresses = https_addresses(dir.path());
    let out = hubfleet(&["check"], &[&values, &operator, &addresses]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(!stdout.contains(": error: "), "{stdout}");

    let values_text = std::fs::read_to_string(&values).unwrap();
    let operator_text = std::fs::read_to_string(&operator).unwrap();
    let k8s = "applies once hubfleet runs on Kubernetes";
    let expected: &[(&Path, &str, &str, &[&str])] = &[
        // The operator's own file (its `proxy.https` is read: no finding).
        (
            &operator,
            &operator_text,
            "hub.extraConfig",
            &[
                "which hubfleet does not run",
                "`hub.templateVars` (c.JupyterHub.template_vars)",
                "`hub.loadRoles`",
                "`singleuser.profileList`",
            ],
        ),
        (
            &operator,
            &operator_text,
            "singleuser.lifecycleHooks",
            &[k8s],
        ),
        (&operator, &operator_text, "scheduling", &[k8s]),
        (&operator, &operator_text, "prePuller", &[k8s]),
        (&operator, &operator_text, "ingress", &[k8s]),
        // z2jh's defaults the operator does not touch.
        (&values, &values_text, "imagePullSecret", &[k8s]),
        (
            &values,
            &values_text,
            "hub.image",
            &["the hub's container image", k8s],
        ),
        (&values, &values_text, "hub.service", &[k8s]),
        (&values, &values_text, "hub.networkPolicy", &[k8s]),
        (&values, &values_text, "hub.db.pvc", &[k8s]),
        (&values, &values_text, "rbac", &[k8s]),
        (
            &values,
            &values_text,
            "proxy.chp",
            &["hubfleet's proxy is built into the hub"],
        ),
        (
            &values,
            &values_text,
            "proxy.traefik",
            &["hubfleet does not run Traefik"],
        ),
        (&values, &values_text, "proxy.service", &[k8s]),
        (&values, &values_text, "singleuser.uid", &[k8s]),
        (&values, &values_text, "singleuser.fsGid", &[k8s]),
        (&values, &values_text, "singleuser.networkPolicy", &[k8s]),
        (&values, &values_text, "singleuser.cloudMetadata", &[k8s]),
        (
            &values,
            &values_text,
            "hub.config.JupyterHub.admin_access",
            &["has no effect", "deprecated since JupyterHub 2.0"],
        ),
        (
            &values,
            &values_text,
            "singleuser.image",
            &["is not mapped to a local environment"],
        ),
    ];
    let lines: Vec<&str> = stdout.lines().collect();
    for (file, yaml, key, parts) in expected {
        let at = format!("{}:{}:", file.display(), line_of(yaml, key));
        let found: Vec<&&str> = lines
            .iter()
            .filter(|l| l.contains(&format!(": warning: {key}: ")))
            .collect();
        assert_eq!(found.len(), 1, "one warning for {key}:\n{stdout}");
        assert!(found[0].starts_with(&at), "{key} not at {at}: {}", found[0]);
        for part in *parts {
            assert!(
                found[0].contains(part),
                "{key}: {part:?} not in {}",
                found[0]
            );
        }
    }
    // One warning per key, never one per key below it.
    let keys: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split(": warning: ").nth(1))
        .filter_map(|rest| rest.split(": ").next())
        .collect();
    for key in &keys {
        assert!(
            !keys.iter().any(|k| k.starts_with(&format!("{key}."))),
            "{key} and a key below it are both reported:\n{stdout}"
        );
    }
    let summary = lines.last().unwrap();
    assert!(
        summary.ends_with(&format!("0 errors and {} warnings", keys.len())),
        "{summary}"
    );

    assert!(!stdout.contains("proxy.https"), "{stdout}");

    // With --strict, warnings fail the check (exit 2).
    let strict = hubfleet(&["check", "--strict"], &[&values, &operator, &addresses]);
    assert_eq!(strict.status.code(), Some(2), "{}", text(&strict.stdout));
}

#[test]
fn check_lists_every_error_of_several_files_at_once_with_the_key_to_use() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.yaml");
    std::fs::write(
        &base,
        "\
hub:
  config:
    Spawner:
      mem_limit: 2G
    JupyterHub:
      authenticator_class: azuread
  db:
    password: hunter2-db-pw
singleuser:
  startTimeout: soon
",
    )
    .unwrap();
    let site = dir.path().join("site.yaml");
    std::fs::write(
        &site,
        "\
hub:
  cookieSecret: not-a-hex-secret
  config:
    JupyterHub:
      authenticator_class: dummy
  templateVar:
    announcement: Welcome
cull:
  every: 0
",
    )
    .unwrap();
    let out = hubfleet(&["check"], &[&base, &site]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let (b, s) = (base.display(), site.display());
    let expected = [
        format!("{b}:4:7: error: hub.config.Spawner.mem_limit: hubfleet reads this setting from its own key; use `singleuser.memory.limit` instead."),
        format!("{b}:8:5: error: hub.db.password: hubfleet reads the database password from the database URL; use `hub.db.url`"),
        format!("{b}:10:17: error: singleuser.startTimeout: invalid type: string \"soon\""),
        format!("{s}:2:17: error: hub.cookieSecret: must be hexadecimal digits"),
        format!("{s}:6:3: error: unknown key `hub.templateVar`; did you mean `templateVars`?"),
        format!("{s}:9:3: error: cull.every: must be at least 1"),
    ];
    let errors: Vec<&str> = stdout.lines().filter(|l| l.contains(": error: ")).collect();
    assert_eq!(errors.len(), expected.len(), "{stdout}");
    for (line, expected) in errors.iter().zip(&expected) {
        assert!(
            line.starts_with(expected.as_str()),
            "{line}\nexpected: {expected}"
        );
    }
    // The base's `azuread` is replaced by the site's `dummy`: no problem. Secrets never shown.
    assert!(!stdout.contains("azuread"), "{stdout}");
    assert!(
        !stdout.contains("hunter2-db-pw") && !stdout.contains("not-a-hex-secret"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .last()
            .unwrap()
            .ends_with("6 errors and 0 warnings"),
        "{stdout}"
    );

    // A clean file.
    let clean = dir.path().join("clean.yaml");
    std::fs::write(
        &clean,
        "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n",
    )
    .unwrap();
    let out = hubfleet(&["check", "--strict"], &[&clean]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        format!("{}: no problems\n", clean.display())
    );

    // A file that cannot be read.
    let out = hubfleet(&["check"], &[&dir.path().join("missing.yaml")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("error: cannot read config file"),
        "{}",
        text(&out.stdout)
    );
}

/// `hubfleet serve` with the files; the child and the files' directory.
struct Served {
    child: std::process::Child,
    port: u16,
    log: PathBuf,
}

impl Served {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Until `/hub/health` answers, or the hub exits (`Err` with its log).
    fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("exit {status}\n{}", self.log()));
            }
            if health_ok(self.port) {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "no answer in 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // SIGTERM: the hub stops its managed services (z2jh's values.yaml enables the culler).
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `GET /hub/health` on a fresh connection: did it answer 200?
fn health_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = b"GET /hub/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let mut head = [0u8; 12];
    stream.write_all(request).is_ok()
        && stream.read_exact(&mut head).is_ok()
        && head.starts_with(b"HTTP/1.1 200")
}

fn serve(files: &[&Path], dir: &Path, port: u16) -> Served {
    let log = dir.join("hub.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_hubfleet"));
    command.arg("serve");
    for file in files {
        command.arg("--config").arg(file);
    }
    let child = command
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    Served { child, port, log }
}

/// A third file with what only this machine knows: where to listen and keep data.
fn local_file(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("local.yaml");
    let allow_root = if nix::unistd::geteuid().is_root() {
        "    allow_root: true\n"
    } else {
        ""
    };
    std::fs::write(
        &path,
        // No ACME server can be reached from the test machines: the operator's Let's Encrypt
        // HTTPS is switched off here (it is tested against a stand-in in https_serve.rs).
        format!(
            "hubfleet:\n  listen: 127.0.0.1:{port}\n  data_dir: {}\n  local:\n    python_env: {}\n{allow_root}proxy:\n  https:\n    enabled: false\n",
            dir.join("data").display(),
            common::python_env().display()
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_a_pasted_z2jh_file_with_warnings_only() {
    let values = z2jh_values();
    let operator = operator_file();
    let dir = tempfile::tempdir().unwrap();
    let mut served = None;
    for attempt in 1.. {
        let port = common::free_port();
        let local = local_file(dir.path(), port);
        let mut hub = serve(&[&values, &operator, &local], dir.path(), port);
        match hub.wait_healthy() {
            Ok(()) => {
                served = Some(hub);
                break;
            }
            Err(log) if attempt < 5 && log.contains("Address already in use") => continue,
            Err(log) => panic!("the hub did not start:\n{log}"),
        }
    }
    let hub = served.unwrap();
    let log = hub.log();
    for key in [
        "hub.extraConfig",
        "scheduling",
        "prePuller",
        "ingress",
        "singleuser.lifecycleHooks",
        "hub.image",
    ] {
        assert!(
            log.contains(&format!("key={key}")),
            "no warning for {key}:\n{log}"
        );
    }
    assert!(!log.contains("ERROR"), "{log}");

    // GitHub is the login, with the operator's app and organisations.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{}", hub.port);
    let login = client
        .get(format!("{base}/hub/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    assert!(login.text().await.unwrap().contains("GitHub"));
    let go = client
        .get(format!("{base}/hub/oauth_login"))
        .send()
        .await
        .unwrap();
    assert_eq!(go.status(), 302);
    let location = go.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with("https://github.com/login/oauth/authorize?")
            && location.contains("client_id=0123456789abcdef0123")
            && location.contains("scope=read%3Aorg"),
        "{location}"
    );
}

#[test]
fn serve_reports_every_config_error_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let local = local_file(dir.path(), port);
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "hub:\n  config:\n    Spawner:\n      cpu_limit: 2\nsingleuser:\n  startTimeout: 0\n",
    )
    .unwrap();
    let out = hubfleet(&["serve"], &[&bad, &local]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("2 problems in the configuration; nothing was started or created"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{}:4:7: hub.config.Spawner.cpu_limit:",
            bad.display()
        )) && stderr.contains("use `singleuser.cpu.limit` instead"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}:6:17: singleuser.startTimeout:", bad.display())),
        "{stderr}"
    );
    assert!(!dir.path().join("data").exists());
}

#[test]
fn serve_checks_the_port_before_it_creates_anything() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let local = local_file(dir.path(), port);
    let out = hubfleet(&["serve"], &[&local]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "hubfleet.listen: cannot listen on 127.0.0.1:{port}: Address already in use"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was created"), "{stderr}");
    // Not even the data directory (and so no homes/).
    assert!(!dir.path().join("data").exists());
}

#[test]
fn serve_reports_every_start_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "").unwrap();
    let config = dir.path().join("hub.yaml");
    let allow_root = if nix::unistd::geteuid().is_root() {
        "    allow_root: true\n"
    } else {
        ""
    };
    std::fs::write(
        &config,
        format!(
            "hub:\n  templatePaths: [./no-such-templates]\n  config:\n    Authenticator:\n      enable_auth_state: true\nhubfleet:\n  listen: 127.0.0.1:{port}\n  data_dir: {}\n  local:\n{allow_root}",
            blocker.join("data").display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hubfleet"))
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("JUPYTERHUB_CRYPT_KEY")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for part in [
        "the hub cannot start here; nothing was created",
        &format!(
            "hubfleet.data_dir: {} cannot be made: {} is not a directory",
            blocker.join("data").display(),
            blocker.display()
        ),
        &format!(
            "hub.templatePaths[0]: {} is not a directory",
            dir.path().join("no-such-templates").display()
        ),
        "enable_auth_state is true, but JUPYTERHUB_CRYPT_KEY is not set (in the hub's environment or in hub.extraEnv)",
    ] {
        assert!(stderr.contains(part), "{part:?} not in:\n{stderr}");
    }
}
