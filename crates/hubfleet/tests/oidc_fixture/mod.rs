//! The OpenID Provider fixture (`tests/fixtures/oidc`: npm `oidc-provider`, OpenID Certified)
//! and a browser-style walk through its login, shared by the login tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{url_escape, Browser, TestHub};

/// The provider process; killed on drop.
pub struct Provider {
    pub port: u16,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Provider {
    pub fn start(port: u16, redirect_uris: &[String]) -> Provider {
        Provider::start_with_env(port, redirect_uris, &[])
    }

    pub fn start_with_env(port: u16, redirect_uris: &[String], env: &[(&str, &str)]) -> Provider {
        let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oidc");
        assert!(
            fixture.join("node_modules/oidc-provider").is_dir(),
            "{}/node_modules is missing: run `npm ci` there (scripts/test does)",
            fixture.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("provider.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("node")
            .arg(fixture.join("provider.mjs"))
            .current_dir(&fixture)
            .env("PORT", port.to_string())
            .env("REDIRECT_URIS", redirect_uris.join(","))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("node is needed for the OpenID Provider fixture");
        let mut provider = Provider {
            port,
            child,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = provider.child.try_wait().unwrap() {
                panic!("oidc-provider exited with {status}:\n{}", provider.log());
            }
            assert!(
                Instant::now() < deadline,
                "oidc-provider did not start:\n{}",
                provider.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        provider
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location in {}", response.status()))
        .to_str()
        .unwrap()
        .to_string()
}

/// From the hub's `/hub/oauth_login` through the provider's login form, up to (not
/// including) the hub's callback. Returns the callback URL.
pub async fn to_callback(
    browser: &Browser,
    hub: &TestHub,
    user: &str,
    next: Option<&str>,
) -> String {
    let client = browser.no_redirects();
    let mut url = match next {
        Some(next) => hub.url(&format!("/hub/oauth_login?next={}", url_escape(next))),
        None => hub.url("/hub/oauth_login"),
    };
    let callback = hub.url("/hub/oauth_callback");
    for _ in 0..20 {
        if url.starts_with(&callback) {
            return url;
        }
        let response = client.get(&url).send().await.unwrap();
        if response.status().is_redirection() {
            let next = location(&response);
            url = reqwest::Url::parse(&url)
                .unwrap()
                .join(&next)
                .unwrap()
                .to_string();
            continue;
        }
        assert_eq!(
            response.status(),
            200,
            "{url}: {}",
            response.text().await.unwrap()
        );
        assert!(url.contains("/interaction/"), "unexpected page {url}");
        let response = client
            .post(format!("{url}/login"))
            .form(&[("login", user), ("password", "anything")])
            .send()
            .await
            .unwrap();
        assert!(response.status().is_redirection(), "{}", response.status());
        url = reqwest::Url::parse(&url)
            .unwrap()
            .join(&location(&response))
            .unwrap()
            .to_string();
    }
    panic!("too many redirects, at {url}");
}

/// The query parameters of the last authorization request the provider received.
pub async fn last_authorize(provider: &Provider) -> serde_json::Value {
    reqwest::get(provider.url("/test/last-authorize"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Log in as `user` through the provider; the hub's answer to the callback.
pub async fn login(browser: &Browser, hub: &TestHub, user: &str) -> reqwest::Response {
    let callback = to_callback(browser, hub, user, None).await;
    browser.no_redirects().get(callback).send().await.unwrap()
}

/// Log in as `user`; the hub must refuse with a 403 page containing `expected`, and set
/// no login cookie.
pub async fn refused(hub: &TestHub, user: &str, expected: &str) {
    let browser = Browser::new(hub);
    let response = login(&browser, hub, user).await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN, "{user}: {text}");
    assert!(text.contains(expected), "{user}: {text}");
    assert!(
        browser.cookie("/hub/", "jupyterhub-hub-login").is_none(),
        "{user} got a login cookie"
    );
}
