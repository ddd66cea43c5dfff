//! `hub.baseUrl` (upstream's `c.JupyterHub.base_url`): everything the hub serves and writes is
//! under it (JupyterLab under a base URL runs in `e2e_jupyterlab.rs`).

mod common;

use std::time::Duration;

use common::{fake_singleuser, Browser, TestHub};
use reqwest::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_cookies_links_and_api_live_under_the_base_url() {
    let hub = TestHub::start(&format!(
        "hub:\n  baseUrl: /jupyter\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n    Authenticator:\n      admin_users: [admin]\nsingleuser:\n  cmd: {}\n",
        fake_singleuser()
    ));
    assert_eq!(hub.prefix, "/jupyter");
    let origin = format!("http://127.0.0.1:{}", hub.port);
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // The root leads to the hub; outside the base URL there is nothing.
    let root = plain.get(format!("{origin}/")).send().await.unwrap();
    assert_eq!(root.status(), 302);
    assert_eq!(root.headers()["location"], "/jupyter/hub/");
    let outside = plain
        .get(format!("{origin}/hub/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(outside.status(), 404);

    // Pages link to the hub under the base URL, and redirects stay under it.
    let login = plain.get(hub.url("/hub/login")).send().await.unwrap();
    assert_eq!(login.status(), 200);
    let page = login.text().await.unwrap();
    for link in [
        "href=\"/jupyter/hub/static/hub.css",
        "action=\"/jupyter/hub/login",
        "data-base=\"/jupyter/hub/\"",
    ] {
        assert!(page.contains(link), "{link} in {page}");
    }
    assert!(
        !page.contains("\"/hub/"),
        "a link outside the base URL: {page}"
    );
    let home = plain.get(hub.url("/hub/home")).send().await.unwrap();
    assert_eq!(home.status(), 302);
    assert_eq!(
        home.headers()["location"],
        "/jupyter/hub/login?next=%2Fhub%2Fhome"
    );

    // Cookies are scoped to the base URL's paths.
    let browser = Browser::new(&hub);
    let response = browser.login_response("admin", "x", None).await;
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()["location"], "/jupyter/hub/home");
    let cookies = common::set_cookies(&response);
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("jupyterhub-hub-login=") && c.contains("Path=/jupyter/hub/;")),
        "{cookies:?}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("jupyterhub-session-id=") && c.contains("Path=/jupyter/;")),
        "{cookies:?}"
    );
    browser.learn_xsrf().await;

    // A server: its URL, route and environment are under the base URL.
    let model = browser.start_server("admin", Duration::from_secs(30)).await;
    assert_eq!(model["server"], "/jupyter/user/admin/", "{model}");
    assert_eq!(
        model["servers"][""]["progress_url"],
        "/jupyter/hub/api/users/admin/server/progress"
    );
    let (_, routes) = browser.call(Method::GET, "/hub/api/proxy", None).await;
    assert!(routes.get("/jupyter/user/admin/").is_some(), "{routes}");
    let served = browser
        .client
        .get(hub.url("/user/admin/"))
        .send()
        .await
        .unwrap();
    assert!(
        served.headers()["server"]
            .to_str()
            .unwrap()
            .contains("SimpleHTTP"),
        "the server answers under the base URL"
    );

    // API pagination links keep the base URL.
    for name in ["b1", "b2", "b3"] {
        browser
            .call(Method::POST, &format!("/hub/api/users/{name}"), None)
            .await;
    }
    let page = browser
        .no_redirects()
        .get(hub.url("/hub/api/users?limit=2"))
        .header("Accept", "application/jupyterhub-pagination+json")
        .header("X-XSRFToken", browser.hub_xsrf())
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let next = page["_pagination"]["next"]["url"].as_str().unwrap();
    assert!(
        next.starts_with(&format!("{origin}/jupyter/hub/api/users?")),
        "{next}"
    );
}
