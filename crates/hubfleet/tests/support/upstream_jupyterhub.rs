//! Upstream JupyterHub (from the test venv, `HUBFLEET_PYTHON_ENV`) behind the real
//! configurable-http-proxy of `tests/fixtures/chp`, on free ports, for tests that compare
//! hubfleet with it or read from it. Include with `#[path = "support/upstream_jupyterhub.rs"]`
//! next to `mod common;`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{free_port, python_env};

fn chp() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chp");
    let bin = dir.join("node_modules/.bin/configurable-http-proxy");
    assert!(
        bin.exists(),
        "{} is missing: run `npm ci` in {} (scripts/test does)",
        bin.display(),
        dir.display()
    );
    bin
}

/// A running upstream JupyterHub; stopped (with its servers and proxy) on drop.
pub struct UpstreamHub {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl UpstreamHub {
    /// Start JupyterHub with its ports, database and proxy set here, then `extra_config`
    /// (Python lines of `jupyterhub_config.py`; `{dir}` is the hub's directory), with `files`
    /// (name, content) written into its directory first.
    pub fn start(extra_config: &str, files: &[(&str, &str)]) -> UpstreamHub {
        let venv = python_env();
        let dir = tempfile::tempdir().unwrap();
        let (port, hub_port, api_port) = (free_port(), free_port(), free_port());
        let d = dir.path().display().to_string();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let config = format!(
            r#"
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{d}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{d}/cookie_secret"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.command = ["{chp}"]
c.ConfigurableHTTPProxy.auth_token = "proxy-token-0123456789abcdef"
c.ConfigurableHTTPProxy.pid_file = "{d}/proxy.pid"
{extra}
"#,
            chp = chp().display(),
            extra = extra_config.replace("{dir}", &d),
        );
        let config_path = dir.path().join("jupyterhub_config.py");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("jupyterhub.log")).unwrap();
        let path = format!(
            "{}/bin:{}",
            venv.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let child = Command::new(venv.join("bin/jupyterhub"))
            .arg("-f")
            .arg(&config_path)
            .current_dir(dir.path())
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        UpstreamHub {
            child: Some(child),
            dir,
            port,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("jupyterhub.log")).unwrap_or_default()
    }

    /// Until `/hub/health` answers 200 (up to 90 s: JupyterHub starts slowly on a busy box).
    pub async fn wait_up(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let up = client
                .get(format!("{}/hub/health", self.url()))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if up {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("JupyterHub exited ({status}); log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "JupyterHub did not start; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for UpstreamHub {
    fn drop(&mut self) {
        let proxy_pid = std::fs::read_to_string(self.dir.path().join("proxy.pid")).ok();
        if let Some(mut child) = self.child.take() {
            // SIGTERM: JupyterHub stops its servers (cleanup_servers) and its proxy.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(pid) = proxy_pid {
            let _ = Command::new("kill")
                .args(["-9", pid.trim()])
                .stderr(Stdio::null())
                .status();
        }
    }
}
