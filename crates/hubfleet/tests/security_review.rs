//! Findings of the security review that need no browser (F1's Chromium test is in
//! `browser_ui.rs`): users' hosts, the hub's cookies, XSRF (F6), redirects (F7) and spawns from
//! other sites (F8). Each test failed on the code before its fix; `docs/security.md` says how.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{fake_singleuser, Browser, Mode, TestHub, TokenClient};
use reqwest::Method;

fn hub_yaml(extra: &str) -> String {
    format!(
        "hub:\n  allowNamedServers: true\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n    Authenticator:\n      admin_users: [admin]\nsingleuser:\n  cmd: {}\n{extra}",
        fake_singleuser()
    )
}

/// One raw HTTP/1.1 request (the path exactly as given); the response head.
fn raw_get(port: u16, path: &str, host: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string()
}

fn location(head: &str) -> Option<&str> {
    head.lines().find_map(|l| {
        l.strip_prefix("location: ")
            .or(l.strip_prefix("Location: "))
    })
}

/// F1: with `subdomain_host`, a server is routed on its user's host only, the hub answers
/// nothing on users' hosts (they go to the hub's own host), and the hub's cookies stay on the
/// hub's host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_hosts_are_theirs_alone() {
    let hub = TestHub::start_in(Mode::Subdomains, &hub_yaml(""));
    let alice = Browser::new(&hub);
    alice.login("alice", "x").await;
    let model = alice.start_server("alice", Duration::from_secs(30)).await;
    let alice_root = hub.user_url("alice", "/user/alice/");
    assert_eq!(model["server"], alice_root.as_str(), "{model}");
    assert_eq!(
        model["servers"][""]["full_url"],
        alice_root.as_str(),
        "{model}"
    );
    assert!(
        hub.log()
            .contains("each user's servers are on a host of their own"),
        "{}",
        hub.log()
    );

    // The proxy routes alice's server on her host, as upstream's proxies write it.
    let (_, token) = common::admin_token(&hub, None).await;
    let admin = TokenClient::new(&hub, &token);
    let (_, routes) = admin.call(Method::GET, "/hub/api/proxy", None).await;
    let spec = "alice.localhost/user/alice/";
    assert!(routes.get(spec).is_some(), "{routes}");

    // Her server answers on her host; on the hub's host the path goes through the hub to it.
    let direct = alice
        .client
        .get(hub.user_url("alice", "/user/alice/"))
        .send()
        .await
        .unwrap();
    assert!(
        direct.headers()["server"]
            .to_str()
            .unwrap()
            .contains("SimpleHTTP"),
        "the stand-in server (python's http.server) answers on alice's host"
    );
    let via_hub = alice
        .no_redirects()
        .get(hub.url("/hub/user/alice/tree?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(via_hub.status(), 302);
    let to = via_hub.headers()["location"].to_str().unwrap();
    assert!(
        to.starts_with(&hub.user_url("alice", "/user/alice/tree?x=1")),
        "{to}"
    );

    // Another user's path on alice's host is not routed to their server: the hub sends it to
    // its own host. Hub pages and the API on a user's host: the same, or nothing.
    for (path, expected) in [
        ("/user/bob/tree", hub.url("/hub/user/bob/tree")),
        ("/hub/home", hub.url("/hub/home")),
        ("/", hub.url("/hub/")),
    ] {
        let head = raw_get(hub.port, path, &format!("alice.localhost:{}", hub.port));
        assert!(head.starts_with("HTTP/1.1 302"), "{path}: {head}");
        assert_eq!(location(&head), Some(expected.as_str()), "{path}: {head}");
    }
    let api = alice
        .no_redirects()
        .post(hub.user_url("alice", "/hub/api/users/alice/tokens"))
        .header("X-XSRFToken", alice.hub_xsrf())
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 404, "no hub API on a user's host");
    let css = raw_get(
        hub.port,
        "/hub/static/hub.css",
        &format!("alice.localhost:{}", hub.port),
    );
    assert!(
        css.starts_with("HTTP/1.1 200"),
        "static files for error pages: {css}"
    );

    // The hub's cookies are host-only: none reaches alice's host.
    let sent = alice.cookie_header_at(&alice_root);
    for name in ["jupyterhub-hub-login", "jupyterhub-session-id", "_xsrf"] {
        assert!(!sent.contains(name), "{name} reaches alice's host: {sent}");
    }
    let login = alice.login_response("alice", "x", None).await;
    for cookie in login.headers().get_all("set-cookie") {
        let cookie = cookie.to_str().unwrap().to_ascii_lowercase();
        assert!(!cookie.contains("domain="), "{cookie}");
        assert!(
            cookie.contains("httponly") && cookie.contains("samesite=lax"),
            "{cookie}"
        );
    }
}

/// F1: with an https `subdomain_host`, the hub's cookies take the `__Host-` prefix (Secure,
/// `Path=/`, no Domain), so no user's host can set one; servers are told to do the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_subdomains_use_host_prefixed_cookies() {
    let yaml = hub_yaml("").replace(
        "authenticator_class: dummy\n",
        "authenticator_class: dummy\n      subdomain_host: https://hub.example.test\n",
    );
    let hub = TestHub::start(&yaml);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = client
        .get(hub.direct_url("/hub/login"))
        .header("Host", "hub.example.test")
        .send()
        .await
        .unwrap();
    let set = common::set_cookies(&page);
    let xsrf_cookie = set
        .iter()
        .find(|c| c.starts_with("__Host-_xsrf="))
        .unwrap_or_else(|| panic!("{set:?}"));
    assert!(
        xsrf_cookie.contains("Path=/;") && xsrf_cookie.contains("Secure"),
        "{xsrf_cookie}"
    );
    let nonce = xsrf_cookie["__Host-_xsrf=".len()..]
        .split(';')
        .next()
        .unwrap();
    let token = common::page_xsrf(&page.text().await.unwrap()).unwrap();
    let login = client
        .post(hub.direct_url("/hub/login"))
        .header("Host", "hub.example.test")
        .header("Cookie", format!("__Host-_xsrf={nonce}"))
        .form(&[("username", "ann"), ("password", "x"), ("_xsrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 302);
    let set = common::set_cookies(&login);
    for name in [
        "__Host-jupyterhub-hub-login=",
        "__Host-jupyterhub-session-id=",
    ] {
        let cookie = set
            .iter()
            .find(|c| c.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {set:?}"));
        assert!(
            cookie.contains("Path=/;") && cookie.contains("Secure") && !cookie.contains("Domain"),
            "{cookie}"
        );
    }
    let login_cookie = set
        .iter()
        .find(|c| c.starts_with("__Host-jupyterhub-hub-login="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let home = client
        .get(hub.direct_url("/hub/home"))
        .header("Host", "hub.example.test")
        .header("Cookie", &login_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), 200, "the prefixed login cookie is the login");
    let plain = client
        .get(hub.direct_url("/hub/home"))
        .header("Host", "hub.example.test")
        .header("Cookie", login_cookie.trim_start_matches("__Host-"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 302, "an unprefixed cookie is not");
}

/// Users' host names are upstream's (`subdomain_hook_idna` of jupyterhub 6), run live.
#[test]
fn users_host_names_are_upstreams() {
    let names = [
        "alice",
        "jöhn",
        "a_b",
        "a--b",
        "a.b",
        "123",
        "-ab",
        "名前",
        "user@example.org",
        "x-y-z",
        "été",
        &"x".repeat(70),
    ];
    let script = "import sys, json\nfrom jupyterhub.utils import subdomain_hook_idna\nfor n in json.load(sys.stdin): print(subdomain_hook_idna(n, 'localhost', 'user'))";
    let mut child = std::process::Command::new(common::python_env().join("bin/python"))
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&names).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let upstream = String::from_utf8(out.stdout).unwrap();
    for (name, expected) in names.iter().zip(upstream.lines()) {
        assert_eq!(
            format!("{}.localhost", hubfleet_hub::urls::dns_label(name)),
            expected,
            "{name}"
        );
    }
}

/// F6: the XSRF token is signed by the hub and bound to the login session: a planted `_xsrf`
/// cookie with the same value in the URL, another session's token, or a request from another
/// site, are all refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xsrf_tokens_are_signed_and_bound_to_the_session() {
    let hub = TestHub::start(&hub_yaml(""));
    let alice = Browser::new(&hub);
    alice.login("alice", "x").await;
    let login_cookie = alice.cookie("/hub/", "jupyterhub-hub-login").unwrap();
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let token_request = |cookie: String, xsrf: &str| {
        plain
            .post(hub.url(&format!("/hub/api/users/alice/tokens?_xsrf={xsrf}")))
            .header("Cookie", cookie)
            .json(&serde_json::json!({"note": "xsrf test"}))
            .send()
    };
    // The review's reproduction: a cookie and a parameter that agree.
    let planted = token_request(
        format!("jupyterhub-hub-login={login_cookie}; _xsrf=planted"),
        "planted",
    )
    .await
    .unwrap();
    assert_eq!(planted.status(), 403, "a planted _xsrf cookie passed");

    // Another session's token (bob's) is not alice's.
    let bob = Browser::new(&hub);
    bob.login("bob", "x").await;
    let bobs = token_request(
        format!("jupyterhub-hub-login={login_cookie}"),
        &bob.hub_xsrf(),
    )
    .await
    .unwrap();
    assert_eq!(bobs.status(), 403, "bob's token passed for alice");

    // A new login of alice is a new session: the old token is no longer hers.
    let old = alice.hub_xsrf();
    let again = Browser::new(&hub);
    again.login("alice", "x").await;
    assert_ne!(again.hub_xsrf(), old);

    // Her own token works, but not from another site (a user's host is `same-site`).
    let ok = token_request(format!("jupyterhub-hub-login={login_cookie}"), &old)
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);
    for site in ["same-site", "cross-site"] {
        let refused = plain
            .post(hub.url("/hub/api/users/alice/tokens"))
            .header("Cookie", format!("jupyterhub-hub-login={login_cookie}"))
            .header("X-XSRFToken", &old)
            .header("Sec-Fetch-Site", site)
            .json(&serde_json::json!({"note": "from elsewhere"}))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "{site}");
    }

    // The login form: a planted cookie and field do not make a login.
    let forged_login = plain
        .post(hub.url("/hub/login"))
        .header("Cookie", "_xsrf=0123456789abcdef0123456789abcdef")
        .form(&[
            ("username", "mallory"),
            ("password", "x"),
            ("_xsrf", "0123456789abcdef0123456789abcdef"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged_login.status(), 403);
}

/// F7: no redirect the hub writes starts with `//` or `/\` (another site to a browser).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_redirect_leaves_the_site() {
    let hub = TestHub::start(&hub_yaml(""));
    for path in [
        "//user/evil.example",
        "//evil.example/",
        "///evil.example/x",
        "/\\evil.example/",
        "//services/evil.example",
    ] {
        let head = raw_get(hub.port, path, &format!("127.0.0.1:{}", hub.port));
        if let Some(to) = location(&head) {
            assert!(
                !to.starts_with("//") && !to.starts_with("/\\"),
                "{path} → {to}"
            );
        }
    }
    // The ordinary redirects still work.
    let head = raw_get(hub.port, "/user/ann", &format!("127.0.0.1:{}", hub.port));
    assert_eq!(location(&head), Some("/user/ann/"), "{head}");
}

/// F8: a GET from another site (an `<img>`, a link) shows a Start button and starts nothing;
/// the button (a POST with the XSRF token) starts the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_get_starts_nothing() {
    let hub = TestHub::start(&hub_yaml(""));
    let ann = Browser::new(&hub);
    ann.login("ann", "x").await;
    for (site, path) in [
        (Some("cross-site"), "/hub/spawn/ann/one"),
        (Some("same-site"), "/hub/spawn/ann/two"),
        (None, "/hub/spawn/ann/three"),
        (Some("cross-site"), "/hub/spawn"),
    ] {
        let mut request = reqwest::Client::builder()
            .cookie_provider(ann.jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(hub.url(path));
        if let Some(site) = site {
            request = request.header("Sec-Fetch-Site", site);
        }
        let page = request.send().await.unwrap();
        assert_eq!(page.status(), 200, "{site:?} {path}");
        let body = page.text().await.unwrap();
        assert!(body.contains("id=\"confirm-start\""), "{body}");
        assert!(body.contains("id=\"start\""), "a Start button: {body}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let model = ann.user_model("ann").await;
    assert_eq!(
        model["servers"],
        serde_json::json!({}),
        "a GET from elsewhere started a server"
    );
    let (status, stopped) = ann
        .call(
            Method::GET,
            "/hub/api/users/ann?include_stopped_servers=1",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(stopped["servers"], serde_json::json!({}), "{stopped}");

    // Pressing Start: the form's POST starts the named server.
    let page = ann
        .client
        .get(hub.url("/hub/spawn/ann/one"))
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let xsrf = common::page_xsrf(&page).unwrap();
    let started = ann
        .no_redirects()
        .post(hub.url("/hub/spawn/ann/one"))
        .form(&[("_xsrf", xsrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 302);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let model = ann.user_model("ann").await;
        if model["servers"]["one"]["ready"] == true {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{model}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The hub's own pages (same origin) start at once, as before.
    let own = ann
        .no_redirects()
        .get(hub.url("/hub/spawn/ann/four"))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 302, "same-origin navigation starts");
}

/// Issue 13, hole 3: a server's `PATH` held the hub's own (`/root/.cargo/bin`, pyenv's shims). It
/// is its environment's `bin/` and the system's directories, for `python_env` and for an
/// environment of `hubfleet.local.environments` alike; the hub's `PATH` as `hub.extraEnv` sets it
/// does not reach them either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_path_is_never_the_hubs() {
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("hub-only-bin");
    std::fs::create_dir_all(&marker).unwrap();
    let other_env = scratch.path().join("other-env");
    std::fs::create_dir_all(other_env.join("bin")).unwrap();
    let hub_path = format!(
        "{}:{}",
        marker.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // The stand-in writes its environment to its home, then serves.
    let cmd = "[/bin/sh, -c, 'env > \"$HOME/env-$JUPYTERHUB_SERVER_NAME.txt\"; port=${JUPYTERHUB_SERVICE_URL##*:}; port=${port%%/*}; exec /usr/bin/env python3 -m http.server --bind 127.0.0.1 $port']";
    let yaml = format!(
        "hub:\n  allowNamedServers: true\n  extraEnv:\n    PATH: {}/configured-bin:/usr/bin:/bin\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n\
         singleuser:\n  cmd: {cmd}\n  profileList:\n    - display_name: Default\n      slug: default\n      default: true\n\
         \x20   - display_name: Other\n      slug: other\n      kubespawner_override:\n        image: other\n",
        marker.display()
    );
    let extra = format!(
        "    environments:\n      other:\n        path: {}\n",
        other_env.display()
    );
    let python_env = common::python_env();
    let hub = TestHub::start_with_env(&yaml, &extra, &python_env, &[("PATH", &hub_path)]);
    let ada = Browser::new(&hub);
    ada.login("ada", "x").await;
    for (server, profile) in [("", "default"), ("second", "other")] {
        let path = if server.is_empty() {
            "/hub/api/users/ada/server".to_string()
        } else {
            format!("/hub/api/users/ada/servers/{server}")
        };
        let (status, body) = ada
            .call(
                Method::POST,
                &path,
                Some(serde_json::json!({ "profile": profile })),
            )
            .await;
        assert!(status == 201 || status == 202, "{status} {body}");
    }
    let home = hub.data_dir().join("homes/ada");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for (server, env_bin) in [
        ("", python_env.join("bin")),
        ("second", other_env.join("bin")),
    ] {
        let file = home.join(format!("env-{server}.txt"));
        while !file.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "no {} from the stand-in; hub log:\n{}",
                file.display(),
                hub.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let env = std::fs::read_to_string(&file).unwrap();
        let path = env
            .lines()
            .find_map(|l| l.strip_prefix("PATH="))
            .unwrap_or_else(|| panic!("no PATH in {env}"));
        assert!(
            !path.contains(marker.to_str().unwrap()),
            "server {server:?} got the hub's PATH: {path}"
        );
        assert_eq!(
            path,
            format!(
                "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                env_bin.display()
            ),
            "server {server:?}"
        );
    }
}
