//! Test helpers: start the real `hubfleet` binary on a free port, log people in,
//! and clean up every process a test started.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::cookie::{CookieStore, Jar};
use reqwest::Url;

/// The Python environment with jupyterhub and jupyterlab (`scripts/test` makes one).
pub fn python_env() -> PathBuf {
    let path = std::env::var_os("HUBFLEET_PYTHON_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "HUBFLEET_PYTHON_ENV is not set: point it at a Python venv with jupyterhub and \
             jupyterlab installed (`scripts/test` creates one in .venv and sets it)"
            )
        });
    assert!(
        path.join("bin/jupyterhub-singleuser").exists(),
        "{} has no bin/jupyterhub-singleuser: pip install jupyterhub jupyterlab into it",
        path.display()
    );
    path
}

/// One `GET <prefix>/hub/health` on a fresh connection: did it answer 200?
fn health_ok(port: u16, prefix: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(
            format!(
                "GET {prefix}/hub/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

#[path = "../support/free_port.rs"]
mod free_port_support;
pub use free_port_support::free_port;

/// A command line for a stand-in single-user server: a plain Python HTTP server on
/// the port the hub chose. It answers the readiness probe, nothing more; for tests
/// of the hub's own behaviour that do not need JupyterLab.
pub fn fake_singleuser() -> String {
    "[/bin/sh, -c, 'port=${JUPYTERHUB_SERVICE_URL##*:}; port=${port%%/*}; exec python3 -m http.server --bind 127.0.0.1 $port']".into()
}

/// Where users' servers live: under the hub's own origin (`/user/<name>/`, upstream's default),
/// or each on a host of their own (`<name>.localhost:<port>`, `subdomain_host`, our default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Paths,
    Subdomains,
}

/// `yaml` with `hub.config.JupyterHub.subdomain_host` set to `http://localhost:<port>`.
pub fn with_subdomain_host(yaml: &str, port: u16) -> String {
    use serde_yaml_ng::{Mapping, Value};
    let mut doc: Value = serde_yaml_ng::from_str(yaml).expect("test config is YAML");
    if doc.is_null() {
        doc = Value::Mapping(Mapping::new());
    }
    let mut node = &mut doc;
    for key in ["hub", "config", "JupyterHub"] {
        let map = node
            .as_mapping_mut()
            .expect("a mapping on the way to JupyterHub");
        node = map
            .entry(Value::from(key))
            .or_insert_with(|| Value::Mapping(Mapping::new()));
        if node.is_null() {
            *node = Value::Mapping(Mapping::new());
        }
    }
    node.as_mapping_mut().unwrap().insert(
        Value::from("subdomain_host"),
        Value::from(format!("http://localhost:{port}")),
    );
    serde_yaml_ng::to_string(&doc).unwrap()
}

/// `hub.baseUrl` of a test config, without its trailing `/` (`""` at the root).
fn base_url_prefix(yaml: &str) -> String {
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).unwrap_or_default();
    doc.get("hub")
        .and_then(|hub| hub.get("baseUrl"))
        .and_then(|b| b.as_str())
        .map(|b| b.trim_matches('/'))
        .filter(|b| !b.is_empty())
        .map(|b| format!("/{b}"))
        .unwrap_or_default()
}

pub struct TestHub {
    pub port: u16,
    pub mode: Mode,
    /// `hub.baseUrl` without its trailing `/`: `""`, or e.g. `/jupyter`.
    pub prefix: String,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// Extra environment of the hub process (e.g. `JUPYTERHUB_CRYPT_KEY`), applied at each
    /// [`TestHub::launch`].
    pub env: Vec<(String, String)>,
    /// More config files layered after `config` at each [`TestHub::launch`].
    pub extra_configs: Vec<PathBuf>,
    child: Option<Child>,
}

impl TestHub {
    /// Write a config (the given YAML plus `hubfleet.listen`/`data_dir`) and start the hub.
    pub fn start(yaml: &str) -> TestHub {
        TestHub::start_with(yaml, "", &python_env())
    }

    /// [`TestHub::start`] in the given mode.
    pub fn start_in(mode: Mode, yaml: &str) -> TestHub {
        TestHub::start_mode(mode, yaml, "", &python_env(), &[])
    }

    /// Like [`TestHub::start`], with more `hubfleet:` keys (indented two spaces, one
    /// per line) and a given Python environment.
    pub fn start_with(yaml: &str, hubfleet_extra: &str, python_env: &Path) -> TestHub {
        TestHub::start_with_env(yaml, hubfleet_extra, python_env, &[])
    }

    /// Like [`TestHub::start_with`], with extra environment variables for the hub.
    pub fn start_with_env(
        yaml: &str,
        hubfleet_extra: &str,
        python_env: &Path,
        env: &[(&str, &str)],
    ) -> TestHub {
        TestHub::start_mode(Mode::Paths, yaml, hubfleet_extra, python_env, env)
    }

    /// Every option of starting a hub.
    pub fn start_mode(
        mode: Mode,
        yaml: &str,
        hubfleet_extra: &str,
        python_env: &Path,
        env: &[(&str, &str)],
    ) -> TestHub {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("hub.yaml");
        let mut hub = TestHub {
            port: 0,
            mode,
            prefix: base_url_prefix(yaml),
            dir,
            config,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            extra_configs: Vec::new(),
            child: None,
        };
        // Tests run as root in CI: servers may then run as root (a hub refuses that unless told),
        // except where a test gives each user an account.
        let allow_root =
            if nix::unistd::geteuid().is_root() && !hubfleet_extra.contains("system_users") {
                "    allow_root: true\n"
            } else {
                ""
            };
        // A free port can be taken (by another test's hub or server) before the hub binds
        // it: then try another.
        for attempt in 1.. {
            hub.port = free_port();
            // `{hub_port}` in the config (and in `hubfleet_extra`) is the port the hub gets
            // (e.g. in an https `subdomain_host`).
            let yaml = yaml.replace("{hub_port}", &hub.port.to_string());
            let yaml = match mode {
                Mode::Paths => yaml,
                Mode::Subdomains => with_subdomain_host(&yaml, hub.port),
            };
            let hubfleet_extra = hubfleet_extra.replace("{hub_port}", &hub.port.to_string());
            let full = format!(
                "{yaml}\nhubfleet:\n  listen: 127.0.0.1:{}\n  data_dir: {}\n  local:\n    python_env: {}\n{allow_root}{hubfleet_extra}",
                hub.port,
                hub.dir.path().join("data").display(),
                python_env.display()
            );
            std::fs::write(&hub.config, full).unwrap();
            match hub.try_launch() {
                Ok(()) => break,
                Err(log) if attempt < 5 && log.contains("Address already in use") => continue,
                Err(log) => panic!("hub exited during start-up; log:\n{log}"),
            }
        }
        hub
    }

    /// Start (or start again) the hub process with the same config.
    pub fn launch(&mut self) {
        if let Err(log) = self.try_launch() {
            panic!("hub exited during start-up; log:\n{log}");
        }
    }

    /// [`TestHub::launch`], giving the log when the hub exits during start-up.
    fn try_launch(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("hub.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hubfleet"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .args(
                self.extra_configs
                    .iter()
                    .flat_map(|c| [std::ffi::OsStr::new("--config"), c.as_os_str()]),
            )
            .env("RUST_LOG", "info,hubfleet_hub=debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_up()
    }

    /// Until `/hub/health` answers 200 (the hub binds before it has restored its servers).
    fn wait_up(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("exit {status}\n{}", self.log()));
            }
            if health_ok(self.port, &self.prefix) {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "hub did not listen within 30 s; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The hub process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kill the hub process at once (as a crash would); servers keep running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Wait up to `timeout` for the hub process to exit on its own; its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.child.as_mut()?.try_wait().unwrap();
            if let Some(status) = status {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The hub's pages: `http://127.0.0.1:<port>`, or with subdomains the hub's own host.
    pub fn url(&self, path: &str) -> String {
        match self.mode {
            Mode::Paths => self.direct_url(path),
            Mode::Subdomains => format!("http://localhost:{}{}{path}", self.port, self.prefix),
        }
    }

    /// The hub's address by IP, for API clients (any host reaches the API).
    pub fn direct_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}{path}", self.port, self.prefix)
    }

    /// Where `user`'s server is: the hub's origin, or with subdomains the user's own host.
    pub fn user_url(&self, user: &str, path: &str) -> String {
        BaseUrl::from(self).user_url(user, path)
    }

    /// A server's URL as the hub writes it (the REST API's `url`, redirects): a path, or with
    /// subdomains the full URL on the user's host.
    pub fn server_url(&self, user: &str, path: &str) -> String {
        match self.mode {
            Mode::Paths => format!("{}{path}", self.prefix),
            Mode::Subdomains => self.user_url(user, path),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("hub.log")).unwrap_or_default()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Pids of processes whose working directory is the user's home: their servers.
    pub fn server_pids(&self, user: &str) -> Vec<i32> {
        processes_in(&self.data_dir().join("homes").join(user))
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        self.kill();
        // Servers outlive the hub by design: end the ones this test started. Managed services
        // (the idle culler) are not under the data dir: the hub notes them in pid files.
        let services = service_pids(&self.data_dir());
        for pid in processes_in(&self.data_dir()).into_iter().chain(services) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// Live processes named in `<data_dir>/services/*.pid` ("<pid> <start time>"), checking the
/// start time so that a reused pid is left alone (and leaving out zombies).
pub fn service_pids(data_dir: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir(data_dir.join("services")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|text| {
            let mut fields = text.split_whitespace();
            let pid: i32 = fields.next()?.parse().ok()?;
            (live_process_start(pid)? == fields.next()?).then_some(pid)
        })
        .collect()
}

/// The start time (`/proc/<pid>/stat` field 22) of a process that is there and not a zombie.
pub fn live_process_start(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields are counted after the command's closing parenthesis: field 3 is the state.
    let after: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    (*after.first()? != "Z").then(|| after.get(19).map(|s| s.to_string()))?
}

/// Processes whose cwd is at or below `dir`.
pub fn processes_in(dir: &Path) -> Vec<i32> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) {
            let zombie = std::fs::read_to_string(entry.path().join("stat"))
                .map(|s| {
                    s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z')
                })
                .unwrap_or(true);
            if cwd.starts_with(&dir) && !zombie {
                pids.push(pid);
            }
        }
    }
    pids
}

/// A browser-like client: a cookie jar, and redirects followed.
pub struct Browser {
    pub client: reqwest::Client,
    pub jar: Arc<Jar>,
    base: BaseUrl,
    /// The hub's XSRF token for this browser's login session (read from a page after login),
    /// with the login cookie it belongs to.
    xsrf: std::sync::Mutex<Option<(String, String)>>,
}

/// Where a hub answers, and where its users' servers do.
#[derive(Clone)]
pub struct BaseUrl {
    /// The hub's origin and `hub.baseUrl` (without its trailing `/`).
    pub hub: String,
    /// With subdomains: the port of `<user>.localhost:<port>`.
    pub user_hosts_port: Option<u16>,
    /// `hub.baseUrl` without its trailing `/`.
    pub prefix: String,
}

impl BaseUrl {
    /// A hub in path mode at `url`.
    pub fn at(url: impl Into<String>) -> BaseUrl {
        BaseUrl {
            hub: url.into(),
            user_hosts_port: None,
            prefix: String::new(),
        }
    }

    pub fn user_url(&self, user: &str, path: &str) -> String {
        match self.user_hosts_port {
            Some(port) => format!(
                "http://{}.localhost:{port}{}{path}",
                hubfleet_hub::urls::dns_label(user),
                self.prefix
            ),
            None => format!("{}{path}", self.hub),
        }
    }
}

impl From<&TestHub> for BaseUrl {
    fn from(hub: &TestHub) -> Self {
        BaseUrl {
            hub: hub.url(""),
            user_hosts_port: (hub.mode == Mode::Subdomains).then_some(hub.port),
            prefix: hub.prefix.clone(),
        }
    }
}

/// Resolves `localhost` and every `*.localhost` to the loopback, as browsers do (RFC 6761),
/// whatever the system resolver says; other names as usual.
pub struct Loopback;

impl reqwest::dns::Resolve for Loopback {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_ascii_lowercase();
        Box::pin(async move {
            if host == "localhost" || host.ends_with(".localhost") {
                let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
                return Ok(Box::new(std::iter::once(loopback)) as reqwest::dns::Addrs);
            }
            let found: Vec<_> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A client builder that finds `*.localhost` and says, as a browser on the hub's own pages
/// would, that its requests come from the same origin (`Sec-Fetch-Site`). Tests of requests
/// from other sites set the header themselves.
pub fn client_builder() -> reqwest::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "sec-fetch-site",
        reqwest::header::HeaderValue::from_static("same-origin"),
    );
    reqwest::Client::builder()
        .dns_resolver(Arc::new(Loopback))
        .default_headers(headers)
}

impl Browser {
    pub fn new(hub: impl Into<BaseUrl>) -> Browser {
        let jar = Arc::new(Jar::default());
        let client = client_builder()
            .cookie_provider(jar.clone())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Browser {
            client,
            jar,
            base: hub.into(),
            xsrf: std::sync::Mutex::new(None),
        }
    }

    /// A client sharing the jar that does not follow redirects.
    pub fn no_redirects(&self) -> reqwest::Client {
        client_builder()
            .cookie_provider(self.jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.hub)
    }

    /// `path` on `user`'s server: the hub's origin, or with subdomains the user's own host.
    pub fn user_url(&self, user: &str, path: &str) -> String {
        self.base.user_url(user, path)
    }

    pub fn cookie(&self, path: &str, name: &str) -> Option<String> {
        self.cookie_at(&self.url(path), name)
    }

    /// The cookie `name` the jar would send to `url` (any host).
    pub fn cookie_at(&self, url: &str, name: &str) -> Option<String> {
        let url = Url::parse(url).unwrap();
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .unwrap()
            .split("; ")
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }

    pub fn cookie_header(&self, path: &str) -> String {
        self.cookie_header_at(&self.url(path))
    }

    /// The `Cookie` header the jar would send to `url` (any host).
    pub fn cookie_header_at(&self, url: &str) -> String {
        let url = Url::parse(url).unwrap();
        self.jar
            .cookies(&url)
            .map(|h| h.to_str().unwrap().to_string())
            .unwrap_or_default()
    }

    /// Log in through the form; returns the response to the POST (not followed).
    pub async fn login_response(
        &self,
        user: &str,
        password: &str,
        next: Option<&str>,
    ) -> reqwest::Response {
        let page = self
            .client
            .get(self.url("/hub/login"))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        let xsrf = page_xsrf(&page.text().await.unwrap()).expect("the login form has _xsrf");
        let mut url = self.url("/hub/login");
        if let Some(next) = next {
            url = format!("{url}?next={}", url_escape(next));
        }
        self.no_redirects()
            .post(url)
            .form(&[("username", user), ("password", password), ("_xsrf", &xsrf)])
            .send()
            .await
            .unwrap()
    }

    pub async fn login(&self, user: &str, password: &str) {
        let response = self.login_response(user, password, None).await;
        assert_eq!(
            response.status(),
            302,
            "login as {user} failed: {}",
            response.text().await.unwrap()
        );
        self.learn_xsrf().await;
    }

    /// Read this login session's XSRF token from a hub page (it is bound to the session, so a
    /// new login needs a new one). Call after logging in by other means than [`Browser::login`].
    pub async fn learn_xsrf(&self) -> String {
        let page = self
            .client
            .get(self.url("/hub/token"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let token = page_xsrf(&page).expect("a logged-in hub page carries data-xsrf");
        *self.xsrf.lock().unwrap() = Some((self.login_cookie(), token.clone()));
        token
    }

    fn login_cookie(&self) -> String {
        self.cookie("/hub/", "jupyterhub-hub-login")
            .unwrap_or_default()
    }

    /// The XSRF token of this browser's login session, read from a page the first time (for
    /// logins other than [`Browser::login`]: through a provider, temporary users).
    pub async fn xsrf(&self) -> String {
        let known = self.xsrf.lock().unwrap().clone();
        match known {
            // A new login is a new session, with a token of its own.
            Some((login, token)) if login == self.login_cookie() => token,
            _ => self.learn_xsrf().await,
        }
    }

    /// The hub's XSRF token, for cookie-authenticated API writes.
    pub fn hub_xsrf(&self) -> String {
        self.xsrf
            .lock()
            .unwrap()
            .clone()
            .map(|(_, token)| token)
            .expect("log in first (Browser::login), or call Browser::learn_xsrf")
    }

    pub async fn api(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        self.no_redirects()
            .request(method, self.url(path))
            .header("X-XSRFToken", self.xsrf().await)
            .send()
            .await
            .unwrap()
    }

    pub async fn user_model(&self, user: &str) -> serde_json::Value {
        let response = self
            .api(reqwest::Method::GET, &format!("/hub/api/users/{user}"))
            .await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Start the user's default server as the Start button does (`GET /hub/spawn`), then
    /// [`Browser::wait_ready`].
    pub async fn start_server(&self, user: &str, timeout: Duration) -> serde_json::Value {
        self.client
            .get(self.url("/hub/spawn"))
            .send()
            .await
            .unwrap();
        self.wait_ready(user, timeout).await
    }

    /// Wait until the user's default server is ready (or the start failed).
    pub async fn wait_ready(&self, user: &str, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let model = self.user_model(user).await;
            if !model["server"].is_null()
                || (model["pending"].is_null()
                    && model["servers"].as_object().is_some_and(|s| s.is_empty()))
            {
                return model;
            }
            assert!(
                Instant::now() < deadline,
                "server of {user} not ready in {timeout:?}: {model}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Every `Set-Cookie` header of a response.
pub fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// The XSRF token a hub page embeds (`data-xsrf="…"` on the body, or a form's `_xsrf` field).
pub fn page_xsrf(page: &str) -> Option<String> {
    for marker in ["data-xsrf=\"", "name=\"_xsrf\" value=\""] {
        if let Some(start) = page.find(marker) {
            let rest = &page[start + marker.len()..];
            let token = &rest[..rest.find('"')?];
            if !token.is_empty() {
                return Some(token.to_string());
            }
        }
    }
    None
}

pub fn url_escape(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Browser {
    /// Submit `/hub/change-password` (the logged-in user's); status and page.
    pub async fn change_password(&self, old: &str, new: &str) -> (u16, String) {
        let xsrf = self.xsrf().await;
        let response = self
            .no_redirects()
            .post(self.url("/hub/change-password"))
            .form(&[
                ("old_password", old),
                ("new_password", new),
                ("new_password_confirmation", new),
                ("_xsrf", xsrf.as_str()),
            ])
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }
}

/// Status and JSON body (or `null`) of a response.
pub async fn status_json(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

impl Browser {
    /// A cookie-authenticated API call with XSRF, and an optional JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .no_redirects()
            .request(method, self.url(path))
            .header("X-XSRFToken", self.xsrf().await);
        if let Some(body) = body {
            request = request.json(&body);
        }
        status_json(request.send().await.unwrap()).await
    }
}

/// An API client authenticated by a token.
pub struct TokenClient {
    pub client: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl TokenClient {
    pub fn new(hub: &TestHub, token: &str) -> TokenClient {
        TokenClient {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: hub.direct_url(""),
            token: token.to_string(),
        }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", format!("token {}", self.token))
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        status_json(request.send().await.unwrap()).await
    }
}

/// A hub with dummy login and `admin` as admin; extra YAML is appended.
pub fn admin_hub(extra: &str) -> TestHub {
    TestHub::start(&admin_yaml(extra))
}

/// The config `admin_hub` starts: dummy login, `admin` as admin, then `extra` (which may go on
/// under `hub:` at two spaces' indent).
pub fn admin_yaml(extra: &str) -> String {
    format!(
        "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n    Authenticator:\n      admin_users: [admin]\n{extra}"
    )
}

/// `hub.loadRoles` for `admin_yaml`: teacher administers only group class-a's environments.
pub const CLASS_A_TEACHER: &str = r#"  loadRoles:
    class-a-teacher:
      scopes: ["admin-ui", "admin:environments!group=class-a"]
      users: [teacher]
"#;

/// Log `admin` in and mint an API token with the given scopes (all of admin's if `None`).
pub async fn admin_token(hub: &TestHub, scopes: Option<&[&str]>) -> (Browser, String) {
    admin_token_with(hub, "admin", "x", scopes).await
}

/// Log `admin` (with `password`) in and mint an API token with the given scopes.
pub async fn admin_token_with(
    hub: &TestHub,
    admin: &str,
    password: &str,
    scopes: Option<&[&str]>,
) -> (Browser, String) {
    let browser = Browser::new(hub);
    browser.login(admin, password).await;
    let body = match scopes {
        Some(scopes) => serde_json::json!({ "scopes": scopes, "note": "test" }),
        None => serde_json::json!({ "note": "test" }),
    };
    let (status, token) = browser
        .call(
            reqwest::Method::POST,
            &format!("/hub/api/users/{admin}/tokens"),
            Some(body),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    let secret = token["token"].as_str().unwrap().to_string();
    (browser, secret)
}

/// A Python environment whose `python3` is the system's (`/usr/bin/python3`), which the accounts
/// of `system_users` can run (the test environment's may live under /root, in a pyenv).
pub fn system_python_env(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let system = Path::new("/usr/bin/python3");
    assert!(
        system.exists(),
        "the system_users tests need /usr/bin/python3"
    );
    let env = dir.join("system-python");
    std::fs::create_dir_all(env.join("bin")).unwrap();
    let link = env.join("bin/python3");
    if !link.exists() {
        std::os::unix::fs::symlink(system, &link).unwrap();
    }
    for dir in [env.as_path(), &env.join("bin")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    env
}

/// The Unix accounts (`jupyter-<name>`) of some hub users, deleted now and again when this is
/// dropped. A hub refuses an account it did not make, so one left by an earlier run (made for
/// another data dir) must go first. Make it before the hub, so that the hub (and the servers
/// running as these accounts) are gone when it drops.
pub struct SystemAccounts(Vec<String>);

pub fn fresh_system_accounts(users: &[&str]) -> SystemAccounts {
    let accounts: Vec<String> = users
        .iter()
        .map(|u| hubfleet_spawn::system_user::account_name(u))
        .collect();
    delete_accounts(&accounts);
    SystemAccounts(accounts)
}

fn delete_accounts(accounts: &[String]) {
    let exists = |account: &str| {
        nix::unistd::User::from_name(account)
            .ok()
            .flatten()
            .is_some()
    };
    for account in accounts {
        // userdel refuses while a process of the account lives; servers killed a moment ago
        // may still be on their way out.
        for _ in 0..50 {
            if !exists(account) {
                break;
            }
            let _ = Command::new("userdel")
                .arg(account)
                .stderr(Stdio::null())
                .status();
            if exists(account) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for SystemAccounts {
    fn drop(&mut self) {
        delete_accounts(&self.0);
    }
}

/// A new, empty database `hubfleet_<tag>_<pid>` on the test PostgreSQL server; its URL.
pub async fn fresh_postgres_database(tag: &str) -> String {
    use sqlx::Executor;
    let base = std::env::var("HUBFLEET_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "HUBFLEET_TEST_POSTGRES_URL is not set: start a server with \
             `scripts/postgres.sh start` and export the URL it prints (.ci/run does this)"
        )
    });
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL server at {base}: {e}"));
    let name = format!("hubfleet_{tag}_{}", std::process::id());
    for statement in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin.execute(statement.as_str()).await.unwrap();
    }
    admin.close().await;
    let (root, _) = base.rsplit_once('/').expect("URL has a database part");
    format!("{root}/{name}")
}

/// Whether this machine has a cgroup memory controller the local spawner can use.
pub fn cgroups_usable() -> bool {
    std::path::Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists()
        || std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|c| c.contains("memory"))
}

/// The memory limit of the cgroup `pid` is in, read from the kernel (v1 or v2).
pub fn cgroup_memory_limit(pid: i32) -> u64 {
    let groups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in groups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next().unwrap_or(""), parts.next());
        let path = path.unwrap_or("");
        if controllers.split(',').any(|c| c == "memory") {
            let file = format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes");
            return std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{file}: {e}"))
                .trim()
                .parse()
                .unwrap();
        }
        if controllers.is_empty() && path.contains("hubfleet") {
            let file = format!("/sys/fs/cgroup{path}/memory.max");
            return std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{file}: {e}"))
                .trim()
                .parse()
                .unwrap();
        }
    }
    panic!("no memory cgroup for {pid}:\n{groups}");
}

/// A kernel's `execute_request` (Jupyter messaging 5.3) running `code` as `user`, and its
/// `msg_id`, which the replies name as their parent.
pub fn execute_request(user: &str, code: &str) -> (String, serde_json::Value) {
    let msg_id = uuid::Uuid::new_v4().to_string();
    let request = serde_json::json!({
        "header": {
            "msg_id": msg_id, "username": user, "session": uuid::Uuid::new_v4().to_string(),
            "msg_type": "execute_request", "version": "5.3", "date": "2026-01-01T00:00:00Z",
        },
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {
            "code": code, "silent": false, "store_history": false,
            "user_expressions": {}, "allow_stdin": false, "stop_on_error": true,
        },
    });
    (msg_id, request)
}

/// A new `python3` kernel in `user`'s server (POSTed with the server's own `_xsrf`) and its
/// channels WebSocket, opened through the hub's port with the host a browser would use.
pub async fn kernel_socket(
    browser: &Browser,
    hub: &TestHub,
    user: &str,
) -> (
    tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    tokio_tungstenite::tungstenite::handshake::client::Response,
) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let server_xsrf = browser
        .cookie_at(&browser.user_url(user, &format!("/user/{user}/")), "_xsrf")
        .expect("the single-user server sets its own _xsrf cookie");
    let kernel: serde_json::Value = browser
        .client
        .post(browser.user_url(user, &format!("/user/{user}/api/kernels")))
        .header("X-XSRFToken", &server_xsrf)
        .json(&serde_json::json!({ "name": "python3" }))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let kernel_id = kernel["id"].as_str().unwrap();
    let http_url = browser.user_url(
        user,
        &format!("/user/{user}/api/kernels/{kernel_id}/channels"),
    );
    let mut request = http_url
        .replacen("http://", "ws://", 1)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "cookie",
        browser.cookie_header_at(&http_url).parse().unwrap(),
    );
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", hub.port))
        .await
        .unwrap();
    tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap()
}

/// What a `hubfleet` command did.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Run the `hubfleet` binary with `args`, without the test's `RUST_LOG` (so its output is its own).
pub fn run_hubfleet<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_hubfleet"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
