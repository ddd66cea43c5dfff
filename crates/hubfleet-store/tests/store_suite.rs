//! The same store suite, on SQLite and on a real PostgreSQL server.
//!
//! PostgreSQL: set HUBFLEET_TEST_POSTGRES_URL to a server where we may create
//! databases (`scripts/postgres.sh start` prints one; `.ci/run` sets it).

use chrono::{Duration, Utc};
use hubfleet_store::{
    new_token, NewToken, OAuthClient, OAuthCode, Phase, ServerUpdate, Store, StoreError,
};

async fn sqlite_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("hub.sqlite").display()
    );
    (Store::connect(&url).await.unwrap(), dir)
}

/// A fresh database on the test PostgreSQL server, so tests never share state.
async fn postgres_store() -> Store {
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
    let name = format!("hubfleet_test_{}", new_token());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let (root, _) = base.rsplit_once('/').expect("URL has a database part");
    Store::connect(&format!("{root}/{name}")).await.unwrap()
}

async fn suite(store: Store) {
    users(&store).await;
    sessions(&store).await;
    servers(&store).await;
    tokens(&store).await;
    oauth(&store).await;
    ledger(&store).await;
    // Migrations are idempotent: connecting again changes nothing.
}

async fn users(store: &Store) {
    let alice = store.create_user("alice", true).await.unwrap();
    assert!(alice.admin);
    assert!(alice.last_activity.is_none());
    let err = store.create_user("alice", false).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { what: "user", .. }),
        "{err}"
    );
    assert_eq!(store.user_by_name("alice").await.unwrap().unwrap(), alice);
    assert_eq!(store.user_by_id(alice.id).await.unwrap().unwrap(), alice);
    assert!(store.user_by_name("nobody").await.unwrap().is_none());

    store.set_admin(alice.id, false).await.unwrap();
    assert!(!store.user_by_id(alice.id).await.unwrap().unwrap().admin);

    let later = Utc::now() + Duration::seconds(5);
    store.touch_user(alice.id, later).await.unwrap();
    store
        .touch_user(alice.id, later - Duration::hours(1))
        .await
        .unwrap();
    let seen = store
        .user_by_id(alice.id)
        .await
        .unwrap()
        .unwrap()
        .last_activity
        .unwrap();
    assert_eq!(
        seen.timestamp_micros(),
        later.timestamp_micros(),
        "activity never moves back"
    );

    assert_eq!(store.password_hash(alice.id).await.unwrap(), None);
    store
        .set_password_hash(alice.id, Some("$argon2id$x"))
        .await
        .unwrap();
    assert_eq!(
        store.password_hash(alice.id).await.unwrap().as_deref(),
        Some("$argon2id$x")
    );

    let bob = store.create_user("bob", false).await.unwrap();
    assert_eq!(store.count_users().await.unwrap(), 2);
    let names: Vec<_> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    assert!(store.delete_user(bob.id).await.unwrap());
    assert!(!store.delete_user(bob.id).await.unwrap());
}

async fn sessions(store: &Store) {
    let alice = store.user_by_name("alice").await.unwrap().unwrap();
    let secret = new_token();
    store
        .create_session(alice.id, "sess-1", &secret, Utc::now() + Duration::days(14))
        .await
        .unwrap();
    let session = store.session(&secret).await.unwrap().unwrap();
    assert_eq!(session.user.name, "alice");
    assert_eq!(session.session_id, "sess-1");
    assert!(store.session(&new_token()).await.unwrap().is_none());

    let expired = new_token();
    store
        .create_session(
            alice.id,
            "sess-2",
            &expired,
            Utc::now() - Duration::seconds(1),
        )
        .await
        .unwrap();
    assert!(
        store.session(&expired).await.unwrap().is_none(),
        "expired sessions are invisible"
    );

    // Logging out removes the session and the OAuth tokens issued under it.
    let oauth_token = new_token();
    store
        .insert_token(
            &oauth_token,
            &NewToken {
                user_id: alice.id,
                server_id: None,
                client_id: "jupyterhub-user-alice",
                session_id: Some("sess-1"),
                scopes: &[],
                note: "",
                expires_at: None,
            },
        )
        .await
        .unwrap();
    store.end_session(&secret).await.unwrap();
    assert!(store.session(&secret).await.unwrap().is_none());
    assert!(store.find_token(&oauth_token).await.unwrap().is_none());
}

async fn servers(store: &Store) {
    let alice = store.user_by_name("alice").await.unwrap().unwrap();
    assert!(store.server(alice.id, "").await.unwrap().is_none());
    let server = store.ensure_server(alice.id, "").await.unwrap();
    assert_eq!(server.phase, Phase::Stopped);
    assert_eq!(
        store.ensure_server(alice.id, "").await.unwrap().id,
        server.id
    );

    let started = Utc::now();
    store
        .update_server(
            server.id,
            &ServerUpdate {
                phase: Some(Phase::Ready),
                target: Some(Some("http://127.0.0.1:4000".into())),
                spawn_state: Some(Some(serde_json::json!({"pid": 42}))),
                started: Some(Some(started)),
                failed_reason: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let server = store.server(alice.id, "").await.unwrap().unwrap();
    assert_eq!(server.phase, Phase::Ready);
    assert_eq!(server.target.as_deref(), Some("http://127.0.0.1:4000"));
    assert_eq!(server.spawn_state, Some(serde_json::json!({"pid": 42})));
    assert_eq!(
        server.started.unwrap().timestamp_micros(),
        started.timestamp_micros()
    );
    assert_eq!(server.user_options, serde_json::json!({}));

    let active = store.active_servers().await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].0, "alice");

    // Leases: one owner at a time until the lease runs out.
    let soon = Utc::now() + Duration::seconds(30);
    assert!(store
        .acquire_lease(server.id, "replica-a", soon)
        .await
        .unwrap());
    assert!(!store
        .acquire_lease(server.id, "replica-b", soon)
        .await
        .unwrap());
    assert!(store
        .acquire_lease(server.id, "replica-a", soon)
        .await
        .unwrap());
    store.release_lease(server.id, "replica-a").await.unwrap();
    assert!(store
        .acquire_lease(server.id, "replica-b", soon)
        .await
        .unwrap());
    store.release_lease(server.id, "replica-b").await.unwrap();

    store
        .update_server(
            server.id,
            &ServerUpdate {
                phase: Some(Phase::Stopped),
                target: Some(None),
                spawn_state: Some(None),
                started: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let server = store.server(alice.id, "").await.unwrap().unwrap();
    assert_eq!(
        (server.phase, server.target, server.spawn_state),
        (Phase::Stopped, None, None)
    );
    assert!(store.active_servers().await.unwrap().is_empty());
}

async fn tokens(store: &Store) {
    let alice = store.user_by_name("alice").await.unwrap().unwrap();
    let server = store.ensure_server(alice.id, "").await.unwrap();
    let secret = new_token();
    let scopes = vec!["access:servers!server=alice/".to_string()];
    let token = store
        .insert_token(
            &secret,
            &NewToken {
                user_id: alice.id,
                server_id: Some(server.id),
                client_id: "jupyterhub",
                session_id: None,
                scopes: &scopes,
                note: "Server at /user/alice/",
                expires_at: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(token.scopes, scopes);
    assert_eq!(
        store.find_token(&secret).await.unwrap().unwrap().id,
        token.id
    );
    // Same prefix, different secret: no match.
    let mut wrong = secret.clone();
    wrong.replace_range(31..32, if secret.ends_with('0') { "1" } else { "0" });
    assert!(store.find_token(&wrong).await.unwrap().is_none());

    let expired = new_token();
    store
        .insert_token(
            &expired,
            &NewToken {
                user_id: alice.id,
                server_id: None,
                client_id: "jupyterhub",
                session_id: None,
                scopes: &[],
                note: "old",
                expires_at: Some(Utc::now() - Duration::seconds(1)),
            },
        )
        .await
        .unwrap();
    assert!(store.find_token(&expired).await.unwrap().is_none());
    assert!(store.purge_expired().await.unwrap() >= 1);
    assert_eq!(store.tokens_of(alice.id).await.unwrap().len(), 1);
    assert!(store.delete_token(token.id).await.unwrap());
    assert!(store.find_token(&secret).await.unwrap().is_none());
}

async fn oauth(store: &Store) {
    let alice = store.user_by_name("alice").await.unwrap().unwrap();
    let server = store.ensure_server(alice.id, "").await.unwrap();
    let secret = new_token();
    let client = OAuthClient {
        identifier: "jupyterhub-user-alice".into(),
        redirect_uri: "/user/alice/oauth_callback".into(),
        description: "Server at /user/alice/".into(),
        allowed_scopes: vec!["access:servers!server=alice/".into()],
        server_id: Some(server.id),
    };
    store.upsert_oauth_client(&client, &secret).await.unwrap();
    assert_eq!(
        store
            .oauth_client(&client.identifier)
            .await
            .unwrap()
            .unwrap(),
        client
    );
    assert!(store
        .verify_client_secret(&client.identifier, &secret)
        .await
        .unwrap());
    assert!(!store
        .verify_client_secret(&client.identifier, "wrong")
        .await
        .unwrap());
    assert!(!store.verify_client_secret("nobody", &secret).await.unwrap());

    let code = new_token();
    let details = OAuthCode {
        client_id: client.identifier.clone(),
        user_id: alice.id,
        session_id: Some("sess".into()),
        scopes: vec!["read:users:name!user".into()],
        redirect_uri: client.redirect_uri.clone(),
        code_challenge: Some("abc".into()),
        code_challenge_method: Some("S256".into()),
        expires_at: Utc::now() + Duration::minutes(5),
    };
    store.insert_oauth_code(&code, &details).await.unwrap();
    assert!(store
        .take_oauth_code(&code, "other-client")
        .await
        .unwrap()
        .is_none());
    let taken = store
        .take_oauth_code(&code, &client.identifier)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.scopes, details.scopes);
    assert_eq!(taken.code_challenge.as_deref(), Some("abc"));
    assert!(
        store
            .take_oauth_code(&code, &client.identifier)
            .await
            .unwrap()
            .is_none(),
        "codes work once"
    );

    // Deleting the client revokes what it issued.
    let issued = new_token();
    store
        .insert_token(
            &issued,
            &NewToken {
                user_id: alice.id,
                server_id: None,
                client_id: &client.identifier,
                session_id: Some("sess"),
                scopes: &[],
                note: "",
                expires_at: None,
            },
        )
        .await
        .unwrap();
    store
        .insert_oauth_code(&new_token(), &details)
        .await
        .unwrap();
    store.delete_oauth_client(&client.identifier).await.unwrap();
    assert!(store
        .oauth_client(&client.identifier)
        .await
        .unwrap()
        .is_none());
    assert!(store.find_token(&issued).await.unwrap().is_none());
}

async fn ledger(store: &Store) {
    store
        .append_event(
            "alice",
            "",
            "requested",
            &serde_json::json!({"profile": "default"}),
        )
        .await
        .unwrap();
    store
        .append_event("alice", "", "ready", &serde_json::json!({}))
        .await
        .unwrap();
    let events = store.events("alice").await.unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["requested", "ready"]);
    assert_eq!(events[0].detail["profile"], "default");
}

#[tokio::test]
async fn store_suite_on_sqlite() {
    let (store, dir) = sqlite_store().await;
    suite(store.clone()).await;
    store.close().await;
    // Reopening the same file keeps the data and re-runs no migration.
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("hub.sqlite").display()
    );
    let again = Store::connect(&url).await.unwrap();
    assert!(again.user_by_name("alice").await.unwrap().is_some());
}

#[tokio::test]
async fn store_suite_on_postgres() {
    let store = postgres_store().await;
    suite(store).await;
}

#[tokio::test]
async fn bad_urls_are_explained() {
    let err = Store::connect("mysql://x").await.unwrap_err();
    assert!(err.to_string().contains("sqlite://"), "{err}");
    let err = Store::connect("postgresql://hub:pw@127.0.0.1:1/hub")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("cannot connect") && !text.contains(":pw@"),
        "{text}"
    );
}
