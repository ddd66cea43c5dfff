//! The hub side of the single-user protocol, checked from the server's side: the
//! environment it gets, the OAuth code exchange, `GET /hub/api/user`, activity.
//! A stand-in server records its environment so the test can act as the server.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use common::{Browser, TestHub};
use sha2::{Digest, Sha256};

const RECORDING_SERVER: &str = "[/bin/sh, -c, 'env > \"$HOME/env.txt\"; port=${JUPYTERHUB_SERVICE_URL##*:}; port=${port%%/*}; exec python3 -m http.server --bind 127.0.0.1 $port']";

async fn started_server(user: &str) -> (TestHub, Browser, BTreeMap<String, String>) {
    let hub = TestHub::start(&format!(
        "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\nsingleuser:\n  cmd: {RECORDING_SERVER}\n  defaultUrl: /lab\n  extraEnv:\n    COURSE: intro-101\n"
    ));
    let browser = Browser::new(&hub);
    browser.login(user, "x").await;
    let model = browser.start_server(user, Duration::from_secs(30)).await;
    assert_eq!(
        model["server"],
        format!("/user/{user}/"),
        "log:\n{}",
        hub.log()
    );
    let env_file = hub.data_dir().join("homes").join(user).join("env.txt");
    let text = std::fs::read_to_string(&env_file).unwrap();
    let env = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (hub, browser, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_environment_follows_protocol_section_5() {
    let (hub, _browser, env) = started_server("kim").await;
    let api = format!("http://127.0.0.1:{}/hub/api", hub.port);
    let expect = [
        ("JUPYTERHUB_API_URL", api.as_str()),
        (
            "JUPYTERHUB_ACTIVITY_URL",
            &format!("{api}/users/kim/activity"),
        ),
        ("JUPYTERHUB_CLIENT_ID", "jupyterhub-user-kim"),
        ("JUPYTERHUB_USER", "kim"),
        ("JUPYTERHUB_SERVER_NAME", ""),
        ("JUPYTERHUB_BASE_URL", "/"),
        ("JUPYTERHUB_SERVICE_PREFIX", "/user/kim/"),
        ("JUPYTERHUB_OAUTH_CALLBACK_URL", "/user/kim/oauth_callback"),
        (
            "JUPYTERHUB_OAUTH_ACCESS_SCOPES",
            "[\"access:servers!server=kim/\",\"access:servers!user=kim\"]",
        ),
        ("JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES", "[]"),
        ("JUPYTERHUB_DEFAULT_URL", "/lab"),
        ("COURSE", "intro-101"),
    ];
    for (key, value) in expect {
        assert_eq!(env.get(key).map(String::as_str), Some(value), "{key}");
    }
    let token = &env["JUPYTERHUB_API_TOKEN"];
    assert_eq!(token.len(), 32);
    assert_eq!(&env["JPY_API_TOKEN"], token);
    assert!(env["JUPYTERHUB_SERVICE_URL"].starts_with("http://127.0.0.1:"));
    assert!(env["JUPYTERHUB_SERVICE_URL"].ends_with("/user/kim/"));
    assert_eq!(
        env["HOME"],
        hub.data_dir().join("homes/kim").display().to_string()
    );
    assert!(!env.contains_key("CONFIGPROXY_AUTH_TOKEN"));
    assert!(env["PATH"].starts_with(&format!("{}/bin:", common::python_env().display())));
}

fn pkce() -> (String, String) {
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// As the browser: authorize; returns the code from the redirect.
async fn authorize(browser: &Browser, user: &str, challenge: Option<&str>) -> String {
    let mut url = format!(
        "/hub/api/oauth2/authorize?client_id=jupyterhub-user-{user}&redirect_uri=%2Fuser%2F{user}%2Foauth_callback&response_type=code&state=xyz"
    );
    if let Some(challenge) = challenge {
        url.push_str(&format!(
            "&code_challenge={challenge}&code_challenge_method=S256"
        ));
    }
    let response = browser
        .no_redirects()
        .get(browser.url(&url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302, "{}", response.text().await.unwrap());
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let query = location
        .strip_prefix(&format!("/user/{user}/oauth_callback?"))
        .unwrap();
    let params: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(params["state"], "xyz");
    params["code"].clone()
}

/// As the server: exchange a code for a token.
async fn exchange(
    hub: &TestHub,
    token: &str,
    form: &[(String, String)],
) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(hub.url("/hub/api/oauth2/token"))
        .header("Authorization", format!("token {token}"))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_code_exchange_and_identity() {
    let (hub, browser, env) = started_server("lee").await;
    let secret = env["JUPYTERHUB_API_TOKEN"].clone();
    let redirect = "/user/lee/oauth_callback";

    // 6.x clients: PKCE S256.
    let (verifier, challenge) = pkce();
    let code = authorize(&browser, "lee", Some(&challenge)).await;
    let base = [
        ("client_id", "jupyterhub-user-lee"),
        ("client_secret", secret.as_str()),
        ("grant_type", "authorization_code"),
        ("redirect_uri", redirect),
    ];
    let with = |extra: &[(&'static str, String)]| -> Vec<(String, String)> {
        base.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain(extra.iter().map(|(k, v)| (k.to_string(), v.clone())))
            .collect()
    };

    let (status, body) = exchange(
        &hub,
        &secret,
        &(with(&[("code", code.clone()), ("code_verifier", "wrong".into())])),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    // The code was used up by the failed attempt: it works once.
    let (status, _) = exchange(
        &hub,
        &secret,
        &(with(&[("code", code), ("code_verifier", verifier.clone())])),
    )
    .await;
    assert_eq!(status, 400);

    let code = authorize(&browser, "lee", Some(&challenge)).await;
    let (status, body) = exchange(
        &hub,
        "",
        &with(&[("code", code.clone()), ("code_verifier", verifier.clone())])
            .into_iter()
            .map(|(k, v)| {
                if k == "client_secret" {
                    (k, "not-the-secret".into())
                } else {
                    (k, v)
                }
            })
            .collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    let (status, body) = exchange(
        &hub,
        &secret,
        &(with(&[("code", code), ("code_verifier", verifier)])),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let access = body["access_token"].as_str().unwrap().to_string();

    // The identity the single-user server checks (protocol §2.3.6).
    let me: serde_json::Value = reqwest::Client::new()
        .get(hub.url("/hub/api/user"))
        .header("Authorization", format!("token {access}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["kind"], "user");
    assert_eq!(me["name"], "lee");
    assert_eq!(
        me["scopes"],
        serde_json::json!([
            "access:servers!server=lee/",
            "read:users:groups!user=lee",
            "read:users:name!user=lee"
        ])
    );
    assert!(me["session_id"].is_string());
    assert!(me["token_id"].as_str().unwrap().starts_with('a'));

    // 5.x clients send no PKCE.
    let code = authorize(&browser, "lee", None).await;
    let (status, _) = exchange(&hub, &secret, &(with(&[("code", code)]))).await;
    assert_eq!(status, 200);

    // Bad tokens are a 403, never a 401 (singleuser relies on it).
    let response = reqwest::Client::new()
        .get(hub.url("/hub/api/user"))
        .header("Authorization", "token 0123456789abcdef0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"status": 403, "message": "Missing or invalid credentials."})
    );

    // Logging out ends the tokens issued under the browser session.
    browser
        .client
        .get(browser.url("/hub/logout"))
        .send()
        .await
        .unwrap();
    let response = reqwest::Client::new()
        .get(hub.url("/hub/api/user"))
        .header("Authorization", format!("bearer {access}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_token_posts_activity() {
    let (hub, browser, env) = started_server("max").await;
    let token = env["JUPYTERHUB_API_TOKEN"].clone();
    let post = |body: serde_json::Value, user: &'static str| {
        let token = token.clone();
        let url = hub.url(&format!("/hub/api/users/{user}/activity"));
        async move {
            reqwest::Client::new()
                .post(url)
                .header("Authorization", format!("token {token}"))
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let stamp = "2030-01-01T00:00:00.000000Z";
    let response = post(
        serde_json::json!({"servers": {"": {"last_activity": stamp}}, "last_activity": stamp}),
        "max",
    )
    .await;
    assert_eq!(
        response.status(),
        400,
        "a time far in the future is refused"
    );

    let now = chrono_like_now();
    let response = post(
        serde_json::json!({"servers": {"": {"last_activity": now}}, "last_activity": now}),
        "max",
    )
    .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let model = browser.user_model("max").await;
    assert_eq!(
        model["servers"][""]["last_activity"],
        serde_json::json!(now)
    );

    for bad in [
        serde_json::json!({}),
        serde_json::json!({"servers": {"nope": {"last_activity": now}}}),
        serde_json::json!({"last_activity": "yesterday"}),
    ] {
        assert_eq!(post(bad.clone(), "max").await.status(), 400, "{bad}");
    }
    // The server's token may post only for its own user.
    browser
        .client
        .get(browser.url("/hub/logout"))
        .send()
        .await
        .unwrap();
    let other = Browser::new(&hub);
    other.login("ned", "x").await;
    assert_eq!(
        post(serde_json::json!({"last_activity": now}), "ned")
            .await
            .status(),
        404
    );
}

/// Now, in JupyterHub's timestamp form (microseconds, `Z`).
fn chrono_like_now() -> String {
    let output = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%6NZ"])
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// A server whose process lives on but stops answering (its web server died, as a hung or
/// crashed kernel gateway would): the built-in proxy still has its route, so the user gets the
/// hub's error page under 503, as JupyterHub's `/hub/error/503` behind CHP's `--error-target`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_gets_the_hubs_error_page() {
    const WEB_THEN_SLEEP: &str = "[/bin/sh, -c, 'port=${JUPYTERHUB_SERVICE_URL##*:}; port=${port%%/*}; python3 -m http.server --bind 127.0.0.1 $port & echo $! > \"$HOME/web.pid\"; exec sleep 600']";
    let hub = TestHub::start(&format!(
        "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\nsingleuser:\n  cmd: {WEB_THEN_SLEEP}\n"
    ));
    let browser = Browser::new(&hub);
    browser.login("pat", "x").await;
    browser.start_server("pat", Duration::from_secs(30)).await;
    let pid_file = hub.data_dir().join("homes").join("pat").join("web.pid");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let resp = browser
        .client
        .get(browser.url("/user/pat/tree"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503, "log:\n{}", hub.log());
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = resp.text().await.unwrap();
    assert!(page.contains("503: Service Unavailable"), "{page}");
    assert!(page.contains("Your server appears to be down"), "{page}");
    assert!(page.contains("href=\"/hub/home\""), "{page}");

    // The page itself, as an external proxy's --error-target fetches it.
    let resp = reqwest::get(hub.url("/hub/error/404?url=%2Fuser%2Fx"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("404: Not Found"));
    let resp = reqwest::get(hub.url("/hub/error/notanumber"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}
