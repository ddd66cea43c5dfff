//! The REST API's permissions (RBAC) and its answers to bad input.

mod common;

use common::{admin_hub, admin_token, Browser, TokenClient};
use reqwest::Method;
use serde_json::json;

async fn user_names(client: &TokenClient) -> Vec<String> {
    let (status, users) = client.call(Method::GET, "/hub/api/users", None).await;
    assert_eq!(status, 200, "{users}");
    let mut names: Vec<String> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_decide_what_each_caller_sees() {
    let hub = admin_hub("");
    let (admin, everything) = admin_token(&hub, None).await;
    let root = TokenClient::new(&hub, &everything);
    let (status, created) = root
        .call(
            Method::POST,
            "/hub/api/users",
            Some(json!({ "usernames": ["alice", "bob", "carl", "dave"] })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let (status, group) = root
        .call(
            Method::POST,
            "/hub/api/groups/x",
            Some(json!({ "users": ["carl"] })),
        )
        .await;
    assert_eq!(status, 201, "{group}");

    // An admin sees everyone.
    assert_eq!(
        user_names(&root).await,
        ["admin", "alice", "bob", "carl", "dave"]
    );

    // A user cannot read another user or their server.
    let alice = Browser::new(&hub);
    alice.login("alice", "x").await;
    assert_eq!(
        alice
            .call(Method::GET, "/hub/api/users/alice", None)
            .await
            .0,
        200
    );
    let (status, body) = alice.call(Method::GET, "/hub/api/users/bob", None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        alice
            .call(Method::GET, "/hub/api/users/bob/server", None)
            .await
            .0,
        404
    );
    assert_eq!(
        alice
            .call(Method::POST, "/hub/api/users/bob/server", None)
            .await
            .0,
        404
    );
    // Users may read themselves but not list users (no `list:users` in `self`).
    let (status, body) = alice.call(Method::GET, "/hub/api/users", None).await;
    assert_eq!(status, 403, "{body}");

    // A token limited to group x sees only group x.
    let (_, group_token) = {
        let (status, token) = admin
            .call(
                Method::POST,
                "/hub/api/users/admin/tokens",
                Some(json!({ "scopes": ["read:users!group=x", "list:users!group=x"] })),
            )
            .await;
        assert_eq!(status, 201, "{token}");
        (status, token["token"].as_str().unwrap().to_string())
    };
    let grouped = TokenClient::new(&hub, &group_token);
    assert_eq!(user_names(&grouped).await, ["carl"]);
    assert_eq!(
        grouped
            .call(Method::GET, "/hub/api/users/carl", None)
            .await
            .0,
        200
    );
    assert_eq!(
        grouped
            .call(Method::GET, "/hub/api/users/dave", None)
            .await
            .0,
        404
    );
    assert_eq!(
        grouped
            .call(Method::DELETE, "/hub/api/users/carl", None)
            .await
            .0,
        403
    );

    // access:servers!server=alice/ reaches alice's server and no other.
    let (status, token) = admin
        .call(
            Method::POST,
            "/hub/api/users/admin/tokens",
            Some(json!({ "scopes": ["access:servers!server=alice/"] })),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    let one_server = TokenClient::new(&hub, token["token"].as_str().unwrap());
    let (status, me) = one_server.call(Method::GET, "/hub/api/user", None).await;
    assert_eq!(status, 200);
    assert!(
        me["scopes"]
            .as_array()
            .unwrap()
            .contains(&json!("access:servers!server=alice/")),
        "{me}"
    );
    assert!(!me["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s.as_str().unwrap().starts_with("access:servers!server=bob")));
    // The hub's /hub/user/<name>/ check: 424 (allowed, not running) against 404 (no access).
    assert_eq!(
        one_server
            .call(Method::GET, "/hub/user/alice/api/status", None)
            .await
            .0,
        424
    );
    assert_eq!(
        one_server
            .call(Method::GET, "/hub/user/bob/api/status", None)
            .await
            .0,
        404
    );
    assert_eq!(
        one_server.call(Method::GET, "/hub/api/users", None).await.0,
        403
    );

    // A token cannot exceed its owner.
    let (status, body) = alice
        .call(
            Method::POST,
            "/hub/api/users/alice/tokens",
            Some(json!({ "scopes": ["admin:users"] })),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = alice
        .call(
            Method::POST,
            "/hub/api/users/alice/tokens",
            Some(json!({ "scopes": ["read:users!user=alice"], "expires_in": 3600 })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(body["expires_at"].is_string());
    let own = TokenClient::new(&hub, body["token"].as_str().unwrap());
    assert_eq!(
        own.call(Method::GET, "/hub/api/users/alice", None).await.0,
        200
    );
    assert_eq!(
        own.call(Method::POST, "/hub/api/users/alice/server", None)
            .await
            .0,
        403
    );
    // Revoking the token ends it.
    let id = body["id"].as_str().unwrap();
    assert_eq!(
        alice
            .call(
                Method::DELETE,
                &format!("/hub/api/users/alice/tokens/{id}"),
                None
            )
            .await
            .0,
        204
    );
    assert_eq!(
        own.call(Method::GET, "/hub/api/users/alice", None).await.0,
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_clear_4xx_and_changes_nothing() {
    let hub = admin_hub("");
    let (_admin, token) = admin_token(&hub, None).await;
    let root = TokenClient::new(&hub, &token);
    assert_eq!(
        root.call(
            Method::POST,
            "/hub/api/users",
            Some(json!({ "usernames": ["erin"] }))
        )
        .await
        .0,
        201
    );
    let before = user_names(&root).await;

    let check = |status: u16, body: &serde_json::Value, want: u16| {
        assert_eq!(status, want, "{body}");
        assert_eq!(body["status"], json!(want), "{body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    };
    // Malformed JSON.
    let response = root
        .request(Method::POST, "/hub/api/users")
        .header("content-type", "application/json")
        .body("{\"usernames\": [")
        .send()
        .await
        .unwrap();
    let (status, body) = common::status_json(response).await;
    check(status, &body, 400);
    // Unknown fields.
    let (status, body) = root
        .call(
            Method::POST,
            "/hub/api/users",
            Some(json!({ "usernames": ["frank"], "colour": "blue" })),
        )
        .await;
    check(status, &body, 400);
    assert!(
        body["message"].as_str().unwrap().contains("colour"),
        "{body}"
    );
    let (status, body) = root
        .call(
            Method::PATCH,
            "/hub/api/users/erin",
            Some(json!({ "nmae": "x" })),
        )
        .await;
    check(status, &body, 400);
    // A body over the limit.
    let huge = format!("{{\"usernames\": [\"{}\"]}}", "a".repeat(2 * 1024 * 1024));
    // The hub answers 413 without reading the body and closes the connection: use a
    // connection of its own so the next request does not land on the closed one.
    let one_shot = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let response = one_shot
        .post(hub.url("/hub/api/users"))
        .header("Authorization", format!("token {token}"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    let (status, body) = common::status_json(response).await;
    check(status, &body, 413);
    // Invalid names.
    for bad in ["a b", "", ".hidden", "x/y"] {
        let (status, body) = root
            .call(
                Method::POST,
                "/hub/api/users",
                Some(json!({ "usernames": [bad] })),
            )
            .await;
        check(status, &body, 400);
    }
    let (status, body) = root
        .call(Method::POST, "/hub/api/users/bad%20name", None)
        .await;
    check(status, &body, 400);
    // A duplicate user.
    let (status, body) = root.call(Method::POST, "/hub/api/users/erin", None).await;
    check(status, &body, 409);
    let (status, body) = root
        .call(
            Method::POST,
            "/hub/api/users",
            Some(json!({ "usernames": ["erin"] })),
        )
        .await;
    check(status, &body, 409);
    // Bad query values.
    let (status, body) = root
        .call(Method::GET, "/hub/api/users?state=sleeping", None)
        .await;
    check(status, &body, 400);
    let (status, body) = root
        .call(Method::GET, "/hub/api/users?limit=many", None)
        .await;
    check(status, &body, 400);
    // Unknown endpoints and users.
    let (status, body) = root.call(Method::GET, "/hub/api/nowhere", None).await;
    check(status, &body, 404);
    let (status, body) = root.call(Method::GET, "/hub/api/users/nobody", None).await;
    check(status, &body, 404);
    // No credentials at all: 403, never 401.
    let anonymous = TokenClient::new(&hub, "not-a-token");
    let (status, body) = anonymous.call(Method::GET, "/hub/api/users", None).await;
    check(status, &body, 403);

    assert_eq!(user_names(&root).await, before, "the database is unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_follows_jupyterhub() {
    let hub = admin_hub("");
    let (_admin, token) = admin_token(&hub, None).await;
    let root = TokenClient::new(&hub, &token);
    let names: Vec<String> = (0..7).map(|i| format!("user{i}")).collect();
    assert_eq!(
        root.call(
            Method::POST,
            "/hub/api/users",
            Some(json!({ "usernames": names }))
        )
        .await
        .0,
        201
    );
    let response = root
        .request(Method::GET, "/hub/api/users?limit=3&sort=name")
        .header("Accept", "application/jupyterhub-pagination+json")
        .send()
        .await
        .unwrap();
    let (status, page) = common::status_json(response).await;
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    assert_eq!(page["_pagination"]["total"], 8);
    let next = page["_pagination"]["next"]["url"].as_str().unwrap();
    assert!(next.starts_with(&hub.url("/hub/api/users?")), "{next}");
    assert!(
        next.contains("offset=3") && next.contains("limit=3") && next.contains("sort=name"),
        "{next}"
    );
    // Following next to the end.
    let mut seen = 3;
    let mut url = next.to_string();
    loop {
        let response = root
            .client
            .get(&url)
            .header("Authorization", format!("token {token}"))
            .header("Accept", "application/jupyterhub-pagination+json")
            .send()
            .await
            .unwrap();
        let (_, page) = common::status_json(response).await;
        seen += page["items"].as_array().unwrap().len();
        match page["_pagination"]["next"]["url"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, 8);
    // Without the Accept header: a bare list.
    let (_, all) = root.call(Method::GET, "/hub/api/users?limit=2", None).await;
    assert_eq!(all.as_array().unwrap().len(), 2);
}
