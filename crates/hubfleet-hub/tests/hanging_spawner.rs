//! A spawner whose start never returns (an API that stops answering): the start timeout
//! fires, the start fails with a message saying so, and the other users' starts go on
//! meanwhile, unaffected.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hubfleet_auth::{AccessPolicy, DummyAuthenticator};
use hubfleet_hub::{Hub, Settings};
use hubfleet_spawn::{
    LaunchSpec, PollStatus, ProgressSender, SpawnError, SpawnState, Spawner, Started,
};
use hubfleet_store::{NewToken, Phase, Store};
use serde_json::json;

/// Hangs in `start` for the user `stuck`; starts everyone else's "server" (a tiny HTTP
/// server of the test's) at once.
struct HangsForOne {
    target: String,
}

#[async_trait]
impl Spawner for HangsForOne {
    async fn start(
        &self,
        spec: &LaunchSpec,
        _progress: &ProgressSender,
    ) -> Result<Started, SpawnError> {
        if spec.owner.name == "stuck" {
            std::future::pending::<()>().await;
        }
        Ok(Started {
            target: self.target.clone(),
            state: json!({ "user": spec.owner.name }),
        })
    }

    async fn poll(&self, _state: &SpawnState) -> Result<PollStatus, SpawnError> {
        Ok(PollStatus::Running)
    }

    async fn stop(&self, _state: &SpawnState, _grace: Duration) -> Result<(), SpawnError> {
        Ok(())
    }
}

async fn serve_anything() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn admin_token(store: &Store) -> String {
    let admin = store.create_user("admin", true).await.unwrap();
    let token = hubfleet_store::new_token();
    store
        .insert_token(
            &token,
            &NewToken {
                user_id: Some(admin.id),
                service_id: None,
                server_id: None,
                client_id: "jupyterhub",
                session_id: None,
                scopes: &["inherit".to_string()],
                note: "test",
                expires_at: None,
            },
        )
        .await
        .unwrap();
    token
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_start_times_out_and_other_starts_are_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("hub.sqlite").display()
    );
    let store = Store::connect(&url).await.unwrap();
    let mut settings = Settings::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
    settings.start_timeout = Duration::from_secs(3);
    let spawner = Arc::new(HangsForOne {
        target: serve_anything().await,
    });
    let auth = Arc::new(DummyAuthenticator::new(None, AccessPolicy::default()));
    let hub = Hub::start(settings, store.clone(), auth, spawner)
        .await
        .unwrap();
    let base = format!("http://{}", hub.addr);
    let token = admin_token(&store).await;
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: String| {
        client
            .request(method, format!("{base}/hub/api{path}"))
            .header("Authorization", format!("token {token}"))
            .send()
    };
    let others: Vec<String> = (0..5).map(|i| format!("user{i}")).collect();
    for user in others.iter().map(String::as_str).chain(["stuck"]) {
        let response = call(reqwest::Method::POST, format!("/users/{user}"))
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }

    // The stuck start first; the others after it, while it hangs.
    let stuck = tokio::spawn(call(reqwest::Method::POST, "/users/stuck/server".into()));
    let began = Instant::now();
    let user = store.user_by_name("stuck").await.unwrap().unwrap();
    while store.server(user.id, "").await.unwrap().map(|s| s.phase) != Some(Phase::Starting) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for user in &others {
        let response = call(reqwest::Method::POST, format!("/users/{user}/server"))
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            201,
            "{user}: {}",
            response.text().await.unwrap()
        );
    }
    let others_ready = began.elapsed();
    let row = store.server(user.id, "").await.unwrap().unwrap();
    assert_eq!(
        row.phase,
        Phase::Starting,
        "the others were ready while the stuck start still hung"
    );

    // The stuck start ends with the start timeout, and says so.
    let response = stuck.await.unwrap().unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let row = loop {
        let row = store.server(user.id, "").await.unwrap().unwrap();
        if row.phase == Phase::Stopped {
            break row;
        }
        assert!(
            Instant::now() < deadline,
            "the stuck start never ended: {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let reason = row.failed_reason.unwrap_or_default();
    assert!(
        reason.contains("start timeout"),
        "{reason} (start answered {status} {body})"
    );
    println!(
        "other starts ready after {:.2} s; the stuck one failed after {:.2} s (timeout 3 s, and 10 s for the spawner): {reason}",
        others_ready.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
    // Nothing of it is left: no route, and a new start is accepted (and hangs again).
    let response = call(reqwest::Method::GET, "/users/stuck".into())
        .await
        .unwrap();
    let model: serde_json::Value = response.json().await.unwrap();
    assert!(model["servers"].get("").is_none(), "{model}");
    hub.stop().await;
}
