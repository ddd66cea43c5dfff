//! Groups and sharing through the REST API and the accept-share page, against the
//! real binary: CRUD, membership, properties, errors that change nothing, RBAC,
//! pagination; shares with users and groups and what they grant; share codes.

mod common;

use std::time::Duration;

use common::{fake_singleuser, Browser, TestHub};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ADMIN_HUB: &str = "hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n    Authenticator:\n      admin_users: [admin]\n";

async fn logged_in(hub: &TestHub, user: &str) -> Browser {
    let browser = Browser::new(hub);
    browser.login(user, "x").await;
    browser
}

/// A cookie-authenticated API call with a JSON body (XSRF header included).
async fn send(
    browser: &Browser,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = browser
        .no_redirects()
        .request(method, browser.url(path))
        .header("X-XSRFToken", browser.hub_xsrf());
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// A raw body (malformed JSON) sent as `application/json`.
async fn send_raw(
    browser: &Browser,
    method: Method,
    path: &str,
    body: &'static str,
) -> reqwest::Response {
    browser
        .no_redirects()
        .request(method, browser.url(path))
        .header("X-XSRFToken", browser.hub_xsrf())
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Status and JSON body; errors must be `{"status", "message"}` with the same status.
async fn answer(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let body: Value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    if status.is_client_error() {
        assert_eq!(body["status"], status.as_u16(), "{body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    (status, body)
}

async fn call(
    browser: &Browser,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    answer(send(browser, method, path, body).await).await
}

async fn group_exists(admin: &Browser, name: &str) -> bool {
    let (status, _) = call(admin, Method::GET, &format!("/hub/api/groups/{name}"), None).await;
    assert!(status == 200 || status == 404, "{status}");
    status == 200
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_crud_membership_properties_and_errors() {
    let hub = TestHub::start(ADMIN_HUB);
    let admin = logged_in(&hub, "admin").await;
    let alice = logged_in(&hub, "alice").await;
    logged_in(&hub, "bob").await;

    // Create one group with a member.
    let (status, group) = call(
        &admin,
        Method::POST,
        "/hub/api/groups/students",
        Some(json!({"users": ["alice"]})),
    )
    .await;
    assert_eq!(status, 201, "{group}");
    assert_eq!(
        group,
        json!({"kind": "group", "name": "students", "users": ["alice"], "properties": {}, "roles": []})
    );
    // Again: 409.
    let (status, body) = call(&admin, Method::POST, "/hub/api/groups/students", None).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("students"),
        "{body}"
    );

    // Several at once (undocumented POST /groups), all or nothing.
    let (status, created) = call(
        &admin,
        Method::POST,
        "/hub/api/groups",
        Some(json!({"groups": ["g1", "g2"], "users": ["bob"]})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created.as_array().unwrap().len(), 2);
    assert_eq!(created[1]["users"], json!(["bob"]));
    let (status, _) = call(
        &admin,
        Method::POST,
        "/hub/api/groups",
        Some(json!({"groups": ["g3", "students"]})),
    )
    .await;
    assert_eq!(status, 409);
    assert!(
        !group_exists(&admin, "g3").await,
        "a failed bulk create leaves nothing"
    );
    let (status, _) = call(
        &admin,
        Method::POST,
        "/hub/api/groups",
        Some(json!({"groups": []})),
    )
    .await;
    assert_eq!(status, 400);

    // Bad input: 400 with a message, nothing created.
    let (status, body) =
        answer(send_raw(&admin, Method::POST, "/hub/api/groups/x", "{nope").await).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("Invalid JSON"),
        "{body}"
    );
    let (status, _) = call(
        &admin,
        Method::POST,
        "/hub/api/groups/x",
        Some(json!({"users": ["alice"], "admin": true})),
    )
    .await;
    assert_eq!(status, 400, "unknown field");
    let (status, _) = call(
        &admin,
        Method::POST,
        "/hub/api/groups/x",
        Some(json!({"users": "alice"})),
    )
    .await;
    assert_eq!(status, 400, "wrong type");
    let (status, body) = call(
        &admin,
        Method::POST,
        "/hub/api/groups/x",
        Some(json!({"users": ["alice", "ghost"]})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["message"], "No such user: ghost");
    assert!(!group_exists(&admin, "x").await);

    // Members.
    let (status, group) = call(
        &admin,
        Method::POST,
        "/hub/api/groups/students/users",
        Some(json!({"users": ["bob", "alice"]})),
    )
    .await;
    assert_eq!(status, 200, "{group}");
    assert_eq!(group["users"], json!(["alice", "bob"]));
    let (status, _) = call(
        &admin,
        Method::POST,
        "/hub/api/groups/students/users",
        Some(json!({"users": ["ghost"]})),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = call(
        &admin,
        Method::POST,
        "/hub/api/groups/students/users",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 400, "users are required");
    let (status, _) = call(
        &admin,
        Method::POST,
        "/hub/api/groups/nope/users",
        Some(json!({"users": []})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, group) = call(
        &admin,
        Method::DELETE,
        "/hub/api/groups/students/users",
        Some(json!({"users": ["alice"]})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(group["users"], json!(["bob"]));

    // Properties: any JSON object.
    let props = json!({"course": "intro-101", "seats": 30, "nested": {"a": [1, 2]}});
    let (status, group) = call(
        &admin,
        Method::PUT,
        "/hub/api/groups/students/properties",
        Some(props.clone()),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(group["properties"], props);
    let (status, _) = call(
        &admin,
        Method::PUT,
        "/hub/api/groups/students/properties",
        Some(json!([1, 2])),
    )
    .await;
    assert_eq!(status, 400);
    let (_, group) = call(&admin, Method::GET, "/hub/api/groups/students", None).await;
    assert_eq!(
        group["properties"], props,
        "a refused write changes nothing"
    );
    assert_eq!(group["users"], json!(["bob"]));

    // Listing: a bare list, or pages with the Accept header.
    let (status, list) = call(&admin, Method::GET, "/hub/api/groups", None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["students", "g1", "g2"]);
    let page: Value = admin
        .no_redirects()
        .get(admin.url("/hub/api/groups?limit=2"))
        .header("Accept", "application/jupyterhub-pagination+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2, "{page}");
    assert_eq!(page["_pagination"]["total"], 3);
    assert_eq!(page["_pagination"]["next"]["offset"], 2);
    let next_url = page["_pagination"]["next"]["url"].as_str().unwrap();
    assert!(
        next_url.contains("offset=2") && next_url.contains("limit=2"),
        "{next_url}"
    );
    let last: Value = admin
        .no_redirects()
        .get(next_url)
        .header("Accept", "application/jupyterhub-pagination+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(last["items"][0]["name"], "g2");
    assert!(last["_pagination"]["next"].is_null(), "{last}");
    let (status, _) = call(&admin, Method::GET, "/hub/api/groups?offset=x", None).await;
    assert_eq!(status, 400);
    // A repeated argument: the last one counts, as in Tornado's get_argument.
    let (status, body) = call(
        &admin,
        Method::GET,
        "/hub/api/groups?offset=x&offset=2&limit=9&limit=1",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["g2"]);

    // A user without group scopes can do none of this.
    for (method, path, body) in [
        (Method::GET, "/hub/api/groups", None),
        (Method::GET, "/hub/api/groups/students", None),
        (Method::POST, "/hub/api/groups/mine", None),
        (
            Method::POST,
            "/hub/api/groups",
            Some(json!({"groups": ["mine"]})),
        ),
        (Method::DELETE, "/hub/api/groups/students", None),
        (
            Method::POST,
            "/hub/api/groups/students/users",
            Some(json!({"users": ["alice"]})),
        ),
        (
            Method::PUT,
            "/hub/api/groups/students/properties",
            Some(json!({})),
        ),
    ] {
        let (status, body) = call(&alice, method.clone(), path, body).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
    }
    assert!(!group_exists(&admin, "mine").await);
    let (_, group) = call(&admin, Method::GET, "/hub/api/groups/students", None).await;
    assert_eq!(group["users"], json!(["bob"]));

    // Delete.
    let response = send(&admin, Method::DELETE, "/hub/api/groups/g2", None).await;
    assert_eq!(response.status(), 204);
    let (status, _) = call(&admin, Method::DELETE, "/hub/api/groups/g2", None).await;
    assert_eq!(status, 404);
    let (status, body) = call(&admin, Method::GET, "/hub/api/groups/g2", None).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (StatusCode::NOT_FOUND, Some("No such group: g2"))
    );
}

/// Scopes of the caller, from `GET /hub/api/user`.
async fn my_scopes(browser: &Browser) -> Vec<String> {
    let (status, me) = call(browser, Method::GET, "/hub/api/user", None).await;
    assert_eq!(status, 200, "{me}");
    serde_json::from_value(me["scopes"].clone()).unwrap()
}

fn sqlite(hub: &TestHub, sql: &str) {
    let db = hub.data_dir().join("hubfleet.sqlite");
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()",
        ])
        .arg(&db)
        .arg(sql)
        .status()
        .unwrap();
    assert!(status.success(), "{sql} on {}", db.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharing_with_users_groups_and_codes() {
    let hub = TestHub::start(&format!(
        "{ADMIN_HUB}singleuser:\n  cmd: {}\n  startTimeout: 20\n",
        fake_singleuser()
    ));
    let admin = logged_in(&hub, "admin").await;
    let alice = logged_in(&hub, "alice").await;
    let bob = logged_in(&hub, "bob").await;
    let carol = logged_in(&hub, "carol").await;
    let dave = logged_in(&hub, "dave").await;
    const ACCESS: &str = "access:servers!server=alice/";

    // No server yet: nothing to share.
    let (status, _) = call(
        &admin,
        Method::POST,
        "/hub/api/shares/alice/",
        Some(json!({"user": "bob"})),
    )
    .await;
    assert_eq!(status, 404);
    let model = alice.start_server("alice", Duration::from_secs(30)).await;
    assert!(
        !model["server"].is_null(),
        "alice's server did not start: {model}\n{}",
        hub.log()
    );

    // Share with a user.
    assert!(!my_scopes(&bob).await.iter().any(|s| s == ACCESS));
    let (status, share) = call(
        &admin,
        Method::POST,
        "/hub/api/shares/alice/",
        Some(json!({"user": "bob"})),
    )
    .await;
    assert_eq!(status, 200, "{share}");
    assert_eq!(share["scopes"], json!([ACCESS]));
    assert_eq!(share["kind"], "user");
    assert_eq!(share["user"], json!({"name": "bob"}));
    assert!(share["group"].is_null());
    assert!(share["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        share["server"],
        json!({"user": {"name": "alice"}, "name": "", "url": "/user/alice/", "full_url": null, "ready": true})
    );
    assert!(
        my_scopes(&bob).await.iter().any(|s| s == ACCESS),
        "bob holds {ACCESS}"
    );
    assert!(!my_scopes(&carol).await.iter().any(|s| s == ACCESS));

    // Bad requests change nothing.
    for body in [
        json!({"user": "ghost"}),
        json!({"user": "bob", "group": "team"}),
        json!({}),
        json!({"user": "carol", "expires_in": 60}),
        json!({"user": "carol", "scopes": ["access:servers!server=bob/"]}),
        json!({"user": "carol", "scopes": ["not-a-scope"]}),
        json!({"group": "no-such-group"}),
    ] {
        let (status, answer) = call(
            &admin,
            Method::POST,
            "/hub/api/shares/alice/",
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    let (status, _) =
        answer(send_raw(&admin, Method::POST, "/hub/api/shares/alice/", "{\"user\":").await).await;
    assert_eq!(status, 400);
    let (status, _) = call(
        &admin,
        Method::POST,
        "/hub/api/shares/alice/gpu",
        Some(json!({"user": "carol"})),
    )
    .await;
    assert_eq!(status, 404, "no such server");
    let (status, _) = call(
        &admin,
        Method::POST,
        "/hub/api/shares/alice",
        Some(json!({"user": "carol"})),
    )
    .await;
    assert_eq!(status, 405, "a server name is required");
    // Without the `shares` scope the owner cannot share; nor may bob share alice's server.
    let (status, _) = call(
        &alice,
        Method::POST,
        "/hub/api/shares/alice/",
        Some(json!({"user": "carol"})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &bob,
        Method::POST,
        "/hub/api/shares/alice/",
        Some(json!({"user": "carol"})),
    )
    .await;
    assert_eq!(status, 403);
    assert!(!my_scopes(&carol).await.iter().any(|s| s == ACCESS));

    // Lists: always paginated.
    let (status, list) = call(&admin, Method::GET, "/hub/api/shares/alice", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["_pagination"]["total"], 1);
    let (status, list) = call(&alice, Method::GET, "/hub/api/shares/alice/", None).await;
    assert_eq!(status, 200, "the owner may read her shares: {list}");
    assert_eq!(list["items"][0]["user"]["name"], "bob");
    let (status, list) = call(&bob, Method::GET, "/hub/api/users/bob/shared", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"][0]["server"]["user"]["name"], "alice");
    let (status, _) = call(&bob, Method::GET, "/hub/api/users/carol/shared", None).await;
    assert!(status == 403 || status == 404, "{status}");
    let (status, one) = call(&bob, Method::GET, "/hub/api/users/bob/shared/alice/", None).await;
    assert_eq!(status, 200);
    assert_eq!(one["scopes"], json!([ACCESS]));

    // Share with a group: its members get access.
    let (status, _) = call(
        &admin,
        Method::POST,
        "/hub/api/groups/team",
        Some(json!({"users": ["carol"]})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, share) = call(
        &admin,
        Method::POST,
        "/hub/api/shares/alice/",
        Some(json!({"group": "team"})),
    )
    .await;
    assert_eq!(status, 200, "{share}");
    assert_eq!(
        (share["kind"].as_str(), &share["user"]),
        (Some("group"), &Value::Null)
    );
    assert_eq!(share["group"], json!({"name": "team"}));
    assert!(my_scopes(&carol).await.iter().any(|s| s == ACCESS));
    let (_, list) = call(&admin, Method::GET, "/hub/api/groups/team/shared", None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    let (status, _) = call(
        &admin,
        Method::GET,
        "/hub/api/groups/team/shared/alice/",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, list) = call(&carol, Method::GET, "/hub/api/users/carol/shared", None).await;
    assert_eq!(
        list["items"][0]["kind"], "group",
        "shares through groups are listed: {list}"
    );

    // Revoke: PATCH with the user, the grantee's own DELETE, the group's, everything.
    let (status, left) = call(
        &admin,
        Method::PATCH,
        "/hub/api/shares/alice/",
        Some(json!({"user": "bob", "scopes": [ACCESS]})),
    )
    .await;
    assert_eq!((status, left), (StatusCode::OK, json!({})));
    assert!(
        !my_scopes(&bob).await.iter().any(|s| s == ACCESS),
        "revoked"
    );
    let (status, _) = call(&bob, Method::GET, "/hub/api/users/bob/shared/alice/", None).await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &admin,
        Method::POST,
        "/hub/api/shares/alice/",
        Some(json!({"user": "bob"})),
    )
    .await;
    assert_eq!(status, 200);
    let response = send(
        &bob,
        Method::DELETE,
        "/hub/api/users/bob/shared/alice/",
        None,
    )
    .await;
    assert_eq!(response.status(), 204, "bob may give up a share");
    assert!(!my_scopes(&bob).await.iter().any(|s| s == ACCESS));
    let (status, left) = call(
        &admin,
        Method::PATCH,
        "/hub/api/shares/alice/",
        Some(json!({"user": "ghost"})),
    )
    .await;
    assert_eq!(
        (status, left),
        (StatusCode::OK, json!({})),
        "no such user: nothing to revoke"
    );
    let response = send(&admin, Method::DELETE, "/hub/api/shares/alice/", None).await;
    assert_eq!(response.status(), 204);
    assert!(!my_scopes(&carol).await.iter().any(|s| s == ACCESS));
    let (_, list) = call(&admin, Method::GET, "/hub/api/groups/team/shared", None).await;
    assert_eq!(list["_pagination"]["total"], 0);

    // Share codes.
    let (status, code) = call(
        &admin,
        Method::POST,
        "/hub/api/share-codes/alice/",
        Some(json!({"expires_in": 3600})),
    )
    .await;
    assert_eq!(status, 200, "{code}");
    let secret = code["code"].as_str().unwrap().to_string();
    let accept_url = code["accept_url"].as_str().unwrap().to_string();
    assert!(
        accept_url.starts_with("/hub/accept-share?code="),
        "{accept_url}"
    );
    assert!(code["id"].as_str().unwrap().starts_with("sc_"));
    assert_eq!(
        (code["exchange_count"].as_i64(), &code["last_exchanged_at"]),
        (Some(0), &Value::Null)
    );
    assert_eq!(code["scopes"], json!([ACCESS]));
    let (created, expires) = (
        code["created_at"].as_str().unwrap(),
        code["expires_at"].as_str().unwrap(),
    );
    assert!(
        expires.ends_with('Z') && expires > created,
        "{created} → {expires}"
    );
    for body in [
        json!({"expires_in": 5}),
        json!({"expires_in": 40_000_000}),
        json!({"expires_in": "soon"}),
        json!({"user": "bob"}),
    ] {
        let (status, _) = call(
            &admin,
            Method::POST,
            "/hub/api/share-codes/alice/",
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{body}");
    }
    let (_, list) = call(&admin, Method::GET, "/hub/api/share-codes/alice", None).await;
    assert_eq!(list["_pagination"]["total"], 1, "{list}");
    assert!(
        list["items"][0].get("code").is_none(),
        "the code is shown only once"
    );

    // The page: login first, then a confirmation, then the exchange.
    let anonymous = Browser::new(&hub);
    let response = anonymous
        .no_redirects()
        .get(anonymous.url(&accept_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert!(response.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/hub/login?next="));
    let page = dave.client.get(dave.url(&accept_url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("alice") && html.contains("Accept invitation"),
        "{html}"
    );
    let own = alice
        .client
        .get(alice.url(&accept_url))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 403, "no sharing with oneself");
    let unknown = dave
        .client
        .get(dave.url("/hub/accept-share?code=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let forged = dave
        .no_redirects()
        .post(dave.url("/hub/accept-share"))
        .form(&[("code", secret.as_str()), ("_xsrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403, "the form needs the XSRF token");
    assert!(!my_scopes(&dave).await.iter().any(|s| s == ACCESS));
    let accepted = dave
        .no_redirects()
        .post(dave.url("/hub/accept-share"))
        .form(&[
            ("code", secret.as_str()),
            ("_xsrf", dave.hub_xsrf().as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 302);
    assert_eq!(accepted.headers()["location"], "/user/alice/");
    assert!(
        my_scopes(&dave).await.iter().any(|s| s == ACCESS),
        "dave accepted the code"
    );
    let (_, list) = call(&admin, Method::GET, "/hub/api/share-codes/alice/", None).await;
    assert_eq!(list["items"][0]["exchange_count"], 1, "{list}");
    assert!(list["items"][0]["last_exchanged_at"].is_string());
    let bad = dave
        .no_redirects()
        .post(dave.url("/hub/accept-share"))
        .form(&[("code", "nope"), ("_xsrf", dave.hub_xsrf().as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // An expired code is refused and no longer listed.
    sqlite(&hub, "UPDATE share_codes SET expires_at = 0");
    let expired = bob.client.get(bob.url(&accept_url)).send().await.unwrap();
    assert_eq!(expired.status(), 404);
    let refused = bob
        .no_redirects()
        .post(bob.url("/hub/accept-share"))
        .form(&[
            ("code", secret.as_str()),
            ("_xsrf", bob.hub_xsrf().as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert!(!my_scopes(&bob).await.iter().any(|s| s == ACCESS));
    let (_, list) = call(&admin, Method::GET, "/hub/api/share-codes/alice/", None).await;
    assert_eq!(list["_pagination"]["total"], 0, "{list}");

    // Deleting codes: by id, by code, all.
    let (_, first) = call(&admin, Method::POST, "/hub/api/share-codes/alice/", None).await;
    let (_, second) = call(&admin, Method::POST, "/hub/api/share-codes/alice/", None).await;
    let path = format!(
        "/hub/api/share-codes/alice/?id={}",
        first["id"].as_str().unwrap()
    );
    assert_eq!(
        send(&admin, Method::DELETE, &path, None).await.status(),
        204
    );
    let (status, _) = call(&admin, Method::DELETE, &path, None).await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &admin,
        Method::DELETE,
        "/hub/api/share-codes/alice/?id=bogus",
        None,
    )
    .await;
    assert_eq!(status, 404);
    let path = format!(
        "/hub/api/share-codes/alice/?code={}",
        second["code"].as_str().unwrap()
    );
    assert_eq!(
        send(&admin, Method::DELETE, &path, None).await.status(),
        204
    );
    let gone = dave
        .client
        .get(dave.url(second["accept_url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    call(&admin, Method::POST, "/hub/api/share-codes/alice/", None).await;
    assert_eq!(
        send(&admin, Method::DELETE, "/hub/api/share-codes/alice/", None)
            .await
            .status(),
        204
    );
    let (_, list) = call(&admin, Method::GET, "/hub/api/share-codes/alice", None).await;
    assert_eq!(list["_pagination"]["total"], 0);
}

/// A share (or share code) carries `!server=<owner>/<server>`: a scope that filter cannot apply
/// to would be stored and grant nothing, so it is refused, naming the scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_refuse_scopes_that_grant_nothing_on_a_server() {
    let hub = TestHub::start(&format!(
        "{ADMIN_HUB}singleuser:\n  cmd: {}\n  startTimeout: 20\n",
        fake_singleuser()
    ));
    let admin = logged_in(&hub, "admin").await;
    let alice = logged_in(&hub, "alice").await;
    logged_in(&hub, "bob").await;
    let model = alice.start_server("alice", Duration::from_secs(30)).await;
    assert!(!model["server"].is_null(), "{model}\n{}", hub.log());

    for scope in [
        "tokens!server=alice/",
        "tokens",
        "read:users",
        "admin:users",
        "self",
    ] {
        let (status, body) = call(
            &admin,
            Method::POST,
            "/hub/api/shares/alice/",
            Some(json!({"user": "bob", "scopes": [scope]})),
        )
        .await;
        assert_eq!(status, 400, "{scope}: {body}");
        let base = scope.split('!').next().unwrap();
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("`{base}`"))
                && message.contains("grants nothing on a server"),
            "{scope}: {message}"
        );
        let (status, body) = call(
            &admin,
            Method::POST,
            "/hub/api/share-codes/alice/",
            Some(json!({"scopes": [scope]})),
        )
        .await;
        assert_eq!(status, 400, "share code with {scope}: {body}");
    }
    // Nothing was stored.
    let (status, list) = call(&admin, Method::GET, "/hub/api/shares/alice/", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"], json!([]), "{list}");
    let (status, list) = call(&admin, Method::GET, "/hub/api/share-codes/alice/", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"], json!([]), "{list}");

    // Scopes that act on a server are shared as before.
    let (status, share) = call(
        &admin,
        Method::POST,
        "/hub/api/shares/alice/",
        Some(json!({"user": "bob", "scopes": ["servers", "read:servers!server=alice/", "access:servers"]})),
    )
    .await;
    assert_eq!(status, 200, "{share}");
    assert_eq!(
        share["scopes"],
        json!([
            "access:servers!server=alice/",
            "read:servers!server=alice/",
            "servers!server=alice/"
        ])
    );
}
