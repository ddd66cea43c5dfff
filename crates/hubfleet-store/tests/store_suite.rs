//! The same store suite, on SQLite and on a real PostgreSQL server.
//!
//! PostgreSQL: set HUBFLEET_TEST_POSTGRES_URL to a server where we may create
//! databases (`scripts/postgres.sh start` prints one; `.ci/run` sets it).

use chrono::{Duration, Utc};
use hubfleet_store::{
    new_token, NewToken, OAuthClient, OAuthCode, Phase, ServerCounts, ServerUpdate, Store,
    StoreError,
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
    hub_secrets(&store).await;
    cookie_secret(&store).await;
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

    // `hubfleet users remove` deletes only users whose servers are all stopped.
    let cleo = store.create_user("cleo", false).await.unwrap();
    let server = store.ensure_server(cleo.id, "").await.unwrap();
    for phase in [Phase::Starting, Phase::Ready, Phase::Stopping] {
        let update = ServerUpdate {
            phase: Some(phase),
            ..Default::default()
        };
        store.update_server(server.id, &update).await.unwrap();
        assert!(!store.delete_user_if_stopped(cleo.id).await.unwrap());
        assert!(store.user_by_id(cleo.id).await.unwrap().is_some());
    }
    let stopped = ServerUpdate {
        phase: Some(Phase::Stopped),
        ..Default::default()
    };
    store.update_server(server.id, &stopped).await.unwrap();
    assert!(store.delete_user_if_stopped(cleo.id).await.unwrap());
    assert!(store.server_by_id(server.id).await.unwrap().is_none());
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
                user_id: Some(alice.id),
                service_id: None,
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
    // The spawn limits' counts: one server not stopped, none starting; then a second one
    // starting.
    assert_eq!(
        store.server_counts().await.unwrap(),
        ServerCounts {
            starting: 0,
            active: 1
        }
    );
    let second = store.ensure_server(alice.id, "second").await.unwrap();
    assert!(store
        .begin_start(second.id, "test", Utc::now() + Duration::seconds(30))
        .await
        .unwrap());
    assert_eq!(
        store.server_counts().await.unwrap(),
        ServerCounts {
            starting: 1,
            active: 2
        }
    );
    store
        .update_server(
            second.id,
            &ServerUpdate {
                phase: Some(Phase::Stopped),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    store.release_lease(second.id, "test").await.unwrap();

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
    assert_eq!(
        store.server_counts().await.unwrap(),
        ServerCounts::default()
    );
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
                user_id: Some(alice.id),
                service_id: None,
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
                user_id: Some(alice.id),
                service_id: None,
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
                user_id: Some(alice.id),
                service_id: None,
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

    // After a crash: clients of servers that are not running are swept at start-up;
    // a running server's client and service clients stay.
    store.upsert_oauth_client(&client, &secret).await.unwrap();
    let service_client = OAuthClient {
        identifier: "service-announce".into(),
        redirect_uri: "/services/announce/oauth_callback".into(),
        description: "JupyterHub service announce".into(),
        allowed_scopes: vec![],
        server_id: None,
    };
    store
        .upsert_oauth_client(&service_client, &secret)
        .await
        .unwrap();
    assert_eq!(store.delete_stale_oauth_clients().await.unwrap(), 1);
    assert!(store
        .oauth_client(&client.identifier)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .oauth_client("service-announce")
        .await
        .unwrap()
        .is_some());
    let ready = ServerUpdate {
        phase: Some(Phase::Ready),
        ..Default::default()
    };
    store.update_server(server.id, &ready).await.unwrap();
    store.upsert_oauth_client(&client, &secret).await.unwrap();
    assert_eq!(store.delete_stale_oauth_clients().await.unwrap(), 0);
    let stopped = ServerUpdate {
        phase: Some(Phase::Stopped),
        ..Default::default()
    };
    store.update_server(server.id, &stopped).await.unwrap();
    store.delete_oauth_client(&client.identifier).await.unwrap();
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

// ---- groups and sharing (own users, own store) ----

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

async fn groups(store: &Store) {
    use hubfleet_store::GroupError;
    for name in ["ann", "ben", "cat"] {
        store.create_user(name, false).await.unwrap();
    }
    let created = store
        .create_groups(&names(&["g1", "g2"]), &names(&["ben", "ann"]))
        .await
        .unwrap();
    assert_eq!(created.len(), 2);
    assert_eq!(created[0].name, "g1");
    assert_eq!(created[0].users, ["ann", "ben"]);
    assert!(created[1].properties.is_empty());

    // All or nothing: a conflict on the second name leaves the first uncreated.
    let err = store
        .create_groups(&names(&["g3", "g1"]), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(err, GroupError::Store(StoreError::Conflict { what: "group", ref name }) if name == "g1"),
        "{err}"
    );
    assert!(store.group("g3").await.unwrap().is_none());
    // A name repeated in one request is a conflict too.
    let err = store
        .create_groups(&names(&["g5", "g5"]), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(err, GroupError::Store(StoreError::Conflict { .. })),
        "{err}"
    );
    assert!(store.group("g5").await.unwrap().is_none());
    // An unknown member: nothing created, the name said.
    let err = store
        .create_group("g4", &names(&["ann", "nobody"]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, GroupError::NoSuchUser(ref n) if n == "nobody"),
        "{err}"
    );
    assert!(store.group("g4").await.unwrap().is_none());

    let g1 = store.group("g1").await.unwrap().unwrap();
    assert_eq!(g1.users, ["ann", "ben"]);

    // Pagination, in creation order, and the `!group=` restriction.
    let (page, total) = store.list_groups(0, 50, None).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(
        page.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(),
        ["g1", "g2"]
    );
    assert_eq!(page[1].users, ["ann", "ben"]);
    let (page, total) = store.list_groups(1, 1, None).await.unwrap();
    assert_eq!((page.len(), page[0].name.as_str(), total), (1, "g2", 2));
    let (page, total) = store.list_groups(5, 10, None).await.unwrap();
    assert_eq!((page.len(), total), (0, 2));
    let only = names(&["g2", "zz"]);
    let (page, total) = store.list_groups(0, 10, Some(&only)).await.unwrap();
    assert_eq!((page.len(), page[0].name.as_str(), total), (1, "g2", 1));
    let (page, total) = store.list_groups(0, 10, Some(&[])).await.unwrap();
    assert_eq!((page.len(), total), (0, 0));

    // Members: adding is idempotent, unknown users change nothing.
    let g1 = store
        .add_group_members("g1", &names(&["cat", "ann"]))
        .await
        .unwrap();
    assert_eq!(g1.users, ["ann", "ben", "cat"]);
    let err = store
        .add_group_members("g1", &names(&["nobody"]))
        .await
        .unwrap_err();
    assert!(matches!(err, GroupError::NoSuchUser(_)), "{err}");
    let err = store
        .add_group_members("nope", &names(&["ann"]))
        .await
        .unwrap_err();
    assert!(matches!(err, GroupError::NoSuchGroup(_)), "{err}");
    let err = store
        .remove_group_members("g1", &names(&["ben", "nobody"]))
        .await
        .unwrap_err();
    assert!(matches!(err, GroupError::NoSuchUser(_)), "{err}");
    assert_eq!(
        store.group("g1").await.unwrap().unwrap().users,
        ["ann", "ben", "cat"]
    );
    let g1 = store
        .remove_group_members("g1", &names(&["ben", "ben"]))
        .await
        .unwrap();
    assert_eq!(g1.users, ["ann", "cat"]);
    let cat = store.user_by_name("cat").await.unwrap().unwrap();
    assert_eq!(store.groups_of_user(cat.id).await.unwrap(), ["g1"]);

    // Properties: any JSON object, replaced whole.
    let props = serde_json::json!({"course": "intro", "seats": 30, "tags": ["a"]});
    let props = props.as_object().unwrap().clone();
    let g1 = store
        .set_group_properties("g1", &props)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(g1.properties, props);
    assert_eq!(store.group("g1").await.unwrap().unwrap().properties, props);
    assert!(store
        .set_group_properties("nope", &props)
        .await
        .unwrap()
        .is_none());

    assert!(store.delete_group("g2").await.unwrap());
    assert!(!store.delete_group("g2").await.unwrap());
    assert!(store.group("g2").await.unwrap().is_none());
}

async fn shares(store: &Store) {
    use hubfleet_store::{Grantee, ShareCodeQuery, ShareQuery, ShareWith};
    let ann = store.user_by_name("ann").await.unwrap().unwrap();
    let ben = store.user_by_name("ben").await.unwrap().unwrap();
    let cat = store.user_by_name("cat").await.unwrap().unwrap();
    let g1 = store.group("g1").await.unwrap().unwrap(); // ann, cat
    let default = store.ensure_server(ann.id, "").await.unwrap();
    let gpu = store.ensure_server(ann.id, "gpu").await.unwrap();

    let share = store
        .grant_share(
            default.id,
            ShareWith::User(ben.id),
            &names(&["access:servers!server=ann/"]),
        )
        .await
        .unwrap();
    assert_eq!(share.scopes, ["access:servers!server=ann/"]);
    assert_eq!(share.with, Grantee::User("ben".into()));
    assert_eq!(
        (share.server.owner.as_str(), share.server.name.as_str()),
        ("ann", "")
    );
    // Granting more extends the same share.
    let more = store
        .grant_share(
            default.id,
            ShareWith::User(ben.id),
            &names(&["read:servers", "access:servers"]),
        )
        .await
        .unwrap();
    assert_eq!(more.id, share.id);
    assert_eq!(
        more.scopes,
        ["access:servers!server=ann/", "read:servers!server=ann/"]
    );
    let group_share = store
        .grant_share(gpu.id, ShareWith::Group(g1.id), &names(&["access:servers"]))
        .await
        .unwrap();
    assert_eq!(group_share.with, Grantee::Group("g1".into()));
    assert_eq!(group_share.scopes, ["access:servers!server=ann/gpu"]);

    // Scopes reach members of the group, and only them.
    assert_eq!(
        store.share_scopes_for_user(cat.id).await.unwrap(),
        ["access:servers!server=ann/gpu"]
    );
    assert_eq!(
        store.share_scopes_for_user(ben.id).await.unwrap(),
        ["access:servers!server=ann/", "read:servers!server=ann/"]
    );

    let (list, total) = store
        .list_shares(ShareQuery::Owner(ann.id), 0, 50)
        .await
        .unwrap();
    assert_eq!((list.len(), total), (2, 2));
    assert_eq!(list[0].id, share.id);
    let (list, total) = store
        .list_shares(ShareQuery::Owner(ann.id), 1, 1)
        .await
        .unwrap();
    assert_eq!((list.len(), list[0].id, total), (1, group_share.id, 2));
    let (list, total) = store
        .list_shares(ShareQuery::Server(gpu.id), 0, 50)
        .await
        .unwrap();
    assert_eq!((list.len(), total), (1, 1));
    let (list, _) = store
        .list_shares(ShareQuery::SharedWithUser(cat.id), 0, 50)
        .await
        .unwrap();
    assert_eq!(
        list.iter().map(|s| s.id).collect::<Vec<_>>(),
        [group_share.id]
    );
    let (list, _) = store
        .list_shares(ShareQuery::SharedWithGroup(g1.id), 0, 50)
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        store.share(gpu.id, ShareWith::Group(g1.id)).await.unwrap(),
        Some(group_share.clone())
    );
    assert!(store
        .share(gpu.id, ShareWith::User(ben.id))
        .await
        .unwrap()
        .is_none());

    // Revoking part keeps the rest; revoking the rest removes the share.
    let left = store
        .revoke_share(
            default.id,
            ShareWith::User(ben.id),
            Some(&names(&["read:servers!server=ann/"])),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(left.scopes, ["access:servers!server=ann/"]);
    let unchanged = store
        .revoke_share(
            default.id,
            ShareWith::User(ben.id),
            Some(&names(&["admin:servers"])),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unchanged.scopes, left.scopes);
    assert!(store
        .revoke_share(
            default.id,
            ShareWith::User(ben.id),
            Some(&names(&["access:servers"]))
        )
        .await
        .unwrap()
        .is_none());
    assert!(store
        .share(default.id, ShareWith::User(ben.id))
        .await
        .unwrap()
        .is_none());
    assert!(store
        .share_scopes_for_user(ben.id)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .revoke_share(default.id, ShareWith::User(ben.id), None)
        .await
        .unwrap()
        .is_none());

    // Deleting a group takes its shares with it.
    store.create_group("tmp", &names(&["ben"])).await.unwrap();
    let tmp = store.group("tmp").await.unwrap().unwrap();
    store
        .grant_share(
            default.id,
            ShareWith::Group(tmp.id),
            &names(&["access:servers"]),
        )
        .await
        .unwrap();
    assert_eq!(store.share_scopes_for_user(ben.id).await.unwrap().len(), 1);
    store.delete_group("tmp").await.unwrap();
    assert!(store
        .share_scopes_for_user(ben.id)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.delete_server_shares(gpu.id).await.unwrap(), 1);
    assert!(store
        .share_scopes_for_user(cat.id)
        .await
        .unwrap()
        .is_empty());

    // Share codes: only a hash is stored; they expire; exchanges are counted.
    let expires = Utc::now() + Duration::hours(1);
    let (record, code) = store
        .create_share_code(default.id, &names(&["access:servers"]), expires)
        .await
        .unwrap();
    assert!(code.len() >= 43, "{code}");
    assert_eq!(record.scopes, ["access:servers!server=ann/"]);
    assert_eq!(record.exchange_count, 0);
    assert!(record.last_exchanged_at.is_none());
    assert_eq!(
        record.expires_at.timestamp_micros(),
        expires.timestamp_micros()
    );
    assert_eq!(
        store.share_code(&code).await.unwrap().unwrap().id,
        record.id
    );
    assert!(store.share_code("wrong").await.unwrap().is_none());
    assert!(store
        .share_code(&hubfleet_store::secret::lookup_hash(&code))
        .await
        .unwrap()
        .is_none());
    let (expired, expired_code) = store
        .create_share_code(
            gpu.id,
            &names(&["access:servers"]),
            Utc::now() - Duration::seconds(1),
        )
        .await
        .unwrap();
    assert!(store.share_code(&expired_code).await.unwrap().is_none());
    let (list, total) = store
        .list_share_codes(ShareCodeQuery::Owner(ann.id), 0, 50)
        .await
        .unwrap();
    assert_eq!((list.len(), total), (1, 1), "expired codes are not listed");
    assert!(store
        .exchange_share_code(&expired_code, ben.id)
        .await
        .unwrap()
        .is_none());
    assert!(
        !store
            .delete_share_code_by_id(gpu.id, expired.id)
            .await
            .unwrap(),
        "exchanging an expired code deletes it"
    );

    let share = store
        .exchange_share_code(&code, ben.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(share.with, Grantee::User("ben".into()));
    assert_eq!(share.scopes, ["access:servers!server=ann/"]);
    store
        .exchange_share_code(&code, cat.id)
        .await
        .unwrap()
        .unwrap();
    let record = store.share_code(&code).await.unwrap().unwrap();
    assert_eq!(record.exchange_count, 2);
    assert!(record.last_exchanged_at.is_some());
    assert_eq!(
        store.share_scopes_for_user(ben.id).await.unwrap(),
        ["access:servers!server=ann/"]
    );
    assert!(store
        .exchange_share_code("wrong", ben.id)
        .await
        .unwrap()
        .is_none());

    assert!(
        !store.delete_share_code(gpu.id, &code).await.unwrap(),
        "wrong server"
    );
    assert!(store.delete_share_code(default.id, &code).await.unwrap());
    assert!(store.share_code(&code).await.unwrap().is_none());
    let (second, _) = store
        .create_share_code(default.id, &names(&["access:servers"]), expires)
        .await
        .unwrap();
    store
        .create_share_code(gpu.id, &names(&["access:servers"]), expires)
        .await
        .unwrap();
    let (list, _) = store
        .list_share_codes(ShareCodeQuery::Server(gpu.id), 0, 50)
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert!(store
        .delete_share_code_by_id(default.id, second.id)
        .await
        .unwrap());
    assert_eq!(store.delete_server_share_codes(gpu.id).await.unwrap(), 1);

    // Deleting the grantee removes their shares.
    store.delete_user(ben.id).await.unwrap();
    let (list, _) = store
        .list_shares(ShareQuery::Owner(ann.id), 0, 50)
        .await
        .unwrap();
    assert!(
        list.iter().all(|s| s.with != Grantee::User("ben".into())),
        "{list:?}"
    );
}

#[tokio::test]
async fn groups_and_shares_on_sqlite() {
    let (store, _dir) = sqlite_store().await;
    groups(&store).await;
    shares(&store).await;
    user_views(&store).await;
}

#[tokio::test]
async fn groups_and_shares_on_postgres() {
    let store = postgres_store().await;
    groups(&store).await;
    shares(&store).await;
    user_views(&store).await;
}

/// The one-query user view, and that every kind of write shows in the next read even
/// though views are cached.
async fn user_views(store: &Store) {
    assert!(store.user_view("nobody", false).await.unwrap().is_none());
    let viv = store.create_user("viv", false).await.unwrap();
    let view = store.user_view("viv", true).await.unwrap().unwrap();
    assert_eq!(view.user, viv);
    assert!(view.servers.is_empty() && view.groups.is_empty() && view.roles.is_empty());
    assert_eq!(view.auth_state, None);

    // Servers: default first, then named ones by name.
    let named = store.ensure_server(viv.id, "zeta").await.unwrap();
    store.ensure_server(viv.id, "").await.unwrap();
    store.ensure_server(viv.id, "alpha").await.unwrap();
    let names: Vec<String> = (store
        .user_view("viv", false)
        .await
        .unwrap()
        .unwrap()
        .servers)
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["", "alpha", "zeta"]);

    // A start, activity, groups, roles, admin and a rename each show at once.
    assert!(store
        .begin_start(named.id, "test", Utc::now() + Duration::seconds(30))
        .await
        .unwrap());
    let view = store.user_view("viv", false).await.unwrap().unwrap();
    let zeta = view.servers.iter().find(|s| s.name == "zeta").unwrap();
    assert_eq!(zeta.phase, Phase::Starting);

    let at = Utc::now();
    store.touch_user(viv.id, at).await.unwrap();
    let view = store.user_view("viv", false).await.unwrap().unwrap();
    assert_eq!(
        view.user.last_activity.map(|t| t.timestamp_micros()),
        Some(at.timestamp_micros())
    );

    store
        .create_group("viewers", &["viv".into()])
        .await
        .unwrap();
    store
        .put_role(
            &hubfleet_store::StoredRole {
                name: "reader".into(),
                description: String::new(),
                scopes: vec!["read:users".into()],
            },
            &hubfleet_store::RoleMembers {
                users: vec!["viv".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    store.set_admin(viv.id, true).await.unwrap();
    let view = store.user_view("viv", false).await.unwrap().unwrap();
    assert_eq!(view.groups, ["viewers"]);
    assert_eq!(view.roles, ["reader"]);
    assert!(view.user.admin);
    let roles = store.roles_with_members().await.unwrap();
    let (reader, members) = roles.iter().find(|(r, _)| r.name == "reader").unwrap();
    assert_eq!(reader.scopes, ["read:users"]);
    assert_eq!(members.users, ["viv"]);
    assert!(members.groups.is_empty() && members.services.is_empty());

    store
        .set_auth_state(viv.id, Some(&serde_json::json!({"token": "t"})))
        .await
        .ok();
    store.rename_user(viv.id, "vivian").await.unwrap();
    assert!(store.user_view("viv", false).await.unwrap().is_none());
    let view = store.user_view("vivian", false).await.unwrap().unwrap();
    assert_eq!(view.servers.len(), 3);
    assert_eq!(view.auth_state, None, "auth_state only when asked for");

    // Listing only what a filtered scope may see: named users and members of groups.
    store.create_user("wes", false).await.unwrap();
    let visible = |users: &[&str], groups: &[&str]| hubfleet_store::UserQuery {
        sort: hubfleet_store::UserSort::Name,
        visible: Some(hubfleet_store::VisibleUsers {
            users: users.iter().map(|u| u.to_string()).collect(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }),
        ..Default::default()
    };
    let names = |listed: (Vec<hubfleet_store::User>, i64)| {
        let names: Vec<String> = listed.0.into_iter().map(|u| u.name).collect();
        (names, listed.1)
    };
    let listed = store
        .query_users(&visible(&["wes"], &["viewers"]))
        .await
        .unwrap();
    assert_eq!(
        names(listed),
        (vec!["vivian".to_string(), "wes".to_string()], 2)
    );
    let listed = store
        .query_users(&visible(&[], &["viewers"]))
        .await
        .unwrap();
    assert_eq!(names(listed), (vec!["vivian".to_string()], 1));
    let mut query = visible(&["wes", "vivian"], &[]);
    query.name_filter = Some("VI".into());
    query.limit = 1;
    let listed = store.query_users(&query).await.unwrap();
    assert_eq!(names(listed), (vec!["vivian".to_string()], 1));
    let listed = store.query_users(&visible(&[], &[])).await.unwrap();
    assert_eq!(names(listed), (vec![], 0));

    store.delete_user(viv.id).await.unwrap();
    assert!(store.user_view("vivian", false).await.unwrap().is_none());
}

/// A change of `hub.cookieSecret` ends every login session, and what was issued under one.
async fn cookie_secret(store: &Store) {
    // Nothing recorded counts as "no secret".
    assert_eq!(store.record_cookie_secret("").await.unwrap(), None);
    let user = store.create_user("cookie-user", false).await.unwrap();
    let expires = Utc::now() + Duration::days(1);
    store
        .create_session(user.id, "session-1", "cookie-one", expires)
        .await
        .unwrap();
    let token = new_token();
    store
        .insert_token(
            &token,
            &NewToken {
                user_id: Some(user.id),
                service_id: None,
                server_id: None,
                client_id: "jupyterhub-user-cookie-user",
                session_id: Some("session-1"),
                scopes: &[],
                note: "",
                expires_at: None,
            },
        )
        .await
        .unwrap();
    let unbound = new_token();
    store
        .insert_token(
            &unbound,
            &NewToken {
                user_id: Some(user.id),
                service_id: None,
                server_id: None,
                client_id: "jupyterhub",
                session_id: None,
                scopes: &[],
                note: "",
                expires_at: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(store.record_cookie_secret("aa11").await.unwrap(), Some(1));
    assert!(store.session("cookie-one").await.unwrap().is_none());
    assert!(store.find_token(&token).await.unwrap().is_none());
    assert!(store.find_token(&unbound).await.unwrap().is_some());
    // The same secret again changes nothing; a session made meanwhile stays.
    store
        .create_session(user.id, "session-2", "cookie-two", expires)
        .await
        .unwrap();
    assert_eq!(store.record_cookie_secret("aa11").await.unwrap(), None);
    assert!(store.session("cookie-two").await.unwrap().is_some());
    // Removing the secret is a change too.
    assert_eq!(store.record_cookie_secret("").await.unwrap(), Some(1));
    assert!(store.session("cookie-two").await.unwrap().is_none());
}

async fn hub_secrets(store: &Store) {
    let key = store.hub_secret("xsrf").await.unwrap();
    assert_eq!(key.len(), 32);
    // Made once: every later call (any replica) gets the same one.
    assert_eq!(store.hub_secret("xsrf").await.unwrap(), key);
    assert_ne!(store.hub_secret("other").await.unwrap(), key);
}

/// Replicas: the leader lease has one holder until it runs out; route changes reach a
/// listener (PostgreSQL), and go nowhere on SQLite.
async fn cluster(store: &Store) {
    use hubfleet_store::cluster::{Change, LEADER};
    let soon = Utc::now() + Duration::seconds(30);
    assert!(store.hold_lease(LEADER, "a", soon).await.unwrap());
    assert!(!store.hold_lease(LEADER, "b", soon).await.unwrap());
    assert!(
        store.hold_lease(LEADER, "a", soon).await.unwrap(),
        "renewed"
    );
    assert_eq!(
        store.lease_holder(LEADER).await.unwrap().map(|(o, _)| o),
        Some("a".to_string())
    );
    // A holder that stops renewing loses it once it runs out.
    let past = Utc::now() - Duration::seconds(1);
    assert!(store.hold_lease(LEADER, "a", past).await.unwrap());
    assert!(store.hold_lease(LEADER, "b", soon).await.unwrap());
    store.release_hub_lease(LEADER, "a").await.unwrap();
    assert!(
        !store.hold_lease(LEADER, "a", soon).await.unwrap(),
        "not a's to give up"
    );
    store.release_hub_lease(LEADER, "b").await.unwrap();
    assert!(store.hold_lease(LEADER, "a", soon).await.unwrap());

    match store.listen_changes().await.unwrap() {
        Some(mut listener) => {
            store.notify_route_changed("alice", "lab").await.unwrap();
            let change = tokio::time::timeout(std::time::Duration::from_secs(10), listener.next())
                .await
                .expect("a notification within 10 s")
                .unwrap();
            assert_eq!(change, Change::Routes("alice/lab".into()));
        }
        None => {
            assert_eq!(store.backend(), hubfleet_store::Backend::Sqlite);
            store.notify_route_changed("alice", "lab").await.unwrap();
        }
    }
}

#[tokio::test]
async fn cluster_on_sqlite() {
    let (store, _dir) = sqlite_store().await;
    cluster(&store).await;
}

#[tokio::test]
async fn cluster_on_postgres() {
    let store = postgres_store().await;
    cluster(&store).await;
}

/// Profiles as versioned objects: versions, no-op rewrites, stale writes, deletion, history.
async fn environments(store: &Store) {
    use hubfleet_store::{EnvChange, EnvKind, EnvironmentState};
    let state = |limit: &str, deleted: bool| EnvironmentState {
        source: "ui".into(),
        hidden: false,
        deleted,
        data: serde_json::json!({"display_name": "A", "kubespawner_override": {"mem_limit": limit}}),
    };
    let by = |author| EnvChange {
        author,
        action: "update",
        comment: "why",
    };
    let put = |s: EnvironmentState, expect: Option<i64>, author: &'static str| {
        let store = store.clone();
        async move {
            store
                .put_environment(EnvKind::Profile, "a", &s, None, expect, &by(author))
                .await
        }
    };
    assert_eq!(
        put(state("1G", false), None, "ann").await.unwrap().version,
        1
    );
    assert_eq!(
        put(state("1G", false), None, "ann").await.unwrap().version,
        1
    );
    assert_eq!(
        put(state("2G", false), Some(1), "bob")
            .await
            .unwrap()
            .version,
        2
    );
    assert!(matches!(
        put(state("3G", false), Some(1), "cat").await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        put(state("2G", true), None, "bob").await.unwrap().version,
        3
    );
    assert!(store
        .environments(EnvKind::Profile)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .all_environments(EnvKind::Profile)
            .await
            .unwrap()
            .len(),
        1
    );
    let history = store
        .environment_history(EnvKind::Profile, "a")
        .await
        .unwrap();
    let authors: Vec<&str> = history.iter().map(|v| v.author.as_str()).collect();
    assert_eq!(authors, ["bob", "bob", "ann"]);
    assert_eq!(history[0].diff, "~ deleted: false → true");
    assert!(history[0].deleted);
}

#[tokio::test]
async fn environments_on_sqlite() {
    let (store, _dir) = sqlite_store().await;
    environments(&store).await;
}

#[tokio::test]
async fn environments_on_postgres() {
    environments(&postgres_store().await).await;
}

async fn environment_builds(store: &Store) {
    use hubfleet_store::environment_builds::{BUILD_LOG_CUT, BUILD_LOG_LIMIT, INTERRUPTED};
    use hubfleet_store::NewBuild;
    let requirements = vec!["numpy".to_string(), "pandas==2.2".to_string()];
    let new = |replica: &'static str| NewBuild {
        environment: "stats",
        author: "ann",
        replica,
        directory: "/data/environments/stats/build-1",
        requirements: &requirements,
    };
    assert_eq!(store.last_environment_build("stats").await.unwrap(), None);
    let first = store.begin_environment_build(&new("a")).await.unwrap();
    assert_eq!(first.status, "running");
    assert_eq!(first.requirements, requirements);
    // One running build of an environment at a time, whichever replica asks.
    let again = store.begin_environment_build(&new("b")).await.unwrap_err();
    assert!(matches!(again, StoreError::Conflict { .. }), "{again}");
    store
        .write_build_log(first.id, "Collecting numpy\n")
        .await
        .unwrap();
    let running = store
        .last_environment_build("stats")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(running.log, "Collecting numpy\n");
    // Another replica's running build, said alive just now, is left alone.
    let marked = store
        .fail_interrupted_builds(Some("b"), Utc::now() - Duration::minutes(5))
        .await
        .unwrap();
    assert!(marked.is_empty(), "{marked:?}");
    let long: String = (0..40_000).map(|i| format!("line {i}\n")).collect();
    store
        .finish_environment_build(first.id, "succeeded", Some(3), None, &long)
        .await
        .unwrap();
    let done = store
        .last_environment_build("stats")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((done.status.as_str(), done.version), ("succeeded", Some(3)));
    assert!(done.finished.is_some());
    assert!(done.log.len() <= BUILD_LOG_LIMIT);
    assert!(done.log.starts_with(BUILD_LOG_CUT), "{}", &done.log[..80]);
    assert!(done.log.ends_with("line 39999\n"));

    // A build running on a replica that starts again was interrupted; so is one whose replica
    // went silent. Another environment's build on a live replica is not.
    let second = store.begin_environment_build(&new("a")).await.unwrap();
    let other_requirements = vec!["six".to_string()];
    let other = store
        .begin_environment_build(&NewBuild {
            environment: "other",
            author: "bob",
            replica: "b",
            directory: "/data/environments/other/build-1",
            requirements: &other_requirements,
        })
        .await
        .unwrap();
    let marked = store
        .fail_interrupted_builds(Some("a"), Utc::now() - Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(marked.iter().map(|b| b.id).collect::<Vec<_>>(), [second.id]);
    let failed = store
        .last_environment_build("stats")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.status, "failed");
    assert_eq!(failed.error.as_deref(), Some(INTERRUPTED));
    assert!(failed.log.ends_with(&format!("failed: {INTERRUPTED}\n")));
    let marked = store
        .fail_interrupted_builds(None, Utc::now() + Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(marked.iter().map(|b| b.id).collect::<Vec<_>>(), [other.id]);
    // Once none runs, a new build may start.
    store.begin_environment_build(&new("b")).await.unwrap();
}

#[tokio::test]
async fn environment_builds_on_sqlite() {
    let (store, _dir) = sqlite_store().await;
    environment_builds(&store).await;
}

#[tokio::test]
async fn environment_builds_on_postgres() {
    environment_builds(&postgres_store().await).await;
}
