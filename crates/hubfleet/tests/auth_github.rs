//! `github` login. GitHub cannot be reached from here, so this test runs a local stand-in
//! of the GitHub endpoints the authenticator uses (an axum server inside the test): the
//! OAuth app flow (`/login/oauth/authorize`, `/login/oauth/access_token`) and the REST API
//! (`/user`, `/user/teams`, `/user/orgs`, `/orgs/{org}/members/{user}`,
//! `/orgs/{org}/teams/{team}/memberships/{user}`). It answers as GitHub documents, including
//! GitHub's quirks (a refused code is a 200 with `{"error": "bad_verification_code"}`; a
//! pending team invitation is `state: pending`). The hub's real client code runs against
//! it through `github_url`/`github_api`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::{Browser, TestHub};
use serde_json::json;

const CLIENT_ID: &str = "gh-client";
const CLIENT_SECRET: &str = "gh-secret";

#[derive(Default)]
struct GitHub {
    /// Who is "logged in to GitHub" in the test's browser.
    current_user: Option<String>,
    redirect_uri: String,
    codes: HashMap<String, String>,
    tokens: HashMap<String, String>,
    /// user -> orgs
    orgs: BTreeMap<String, Vec<String>>,
    /// (org, team) -> (user -> state)
    teams: BTreeMap<(String, String), BTreeMap<String, String>>,
}

type Shared = Arc<Mutex<GitHub>>;

fn user_of(gh: &Shared, headers: &HeaderMap) -> Option<String> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let token = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("token "))?;
    gh.lock().unwrap().tokens.get(token).cloned()
}

async fn authorize(State(gh): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut g = gh.lock().unwrap();
    if q.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return (StatusCode::NOT_FOUND, "unknown client").into_response();
    }
    // GitHub refuses a redirect_uri that is not the app's callback.
    if q.get("redirect_uri") != Some(&g.redirect_uri) {
        return (StatusCode::BAD_REQUEST, "redirect_uri mismatch").into_response();
    }
    let user = g.current_user.clone().expect("test sets the GitHub user");
    let code = uuid::Uuid::new_v4().to_string();
    g.codes.insert(code.clone(), user);
    let state = q.get("state").cloned().unwrap_or_default();
    Redirect::to(&format!("{}?code={code}&state={state}", g.redirect_uri)).into_response()
}

async fn access_token(
    State(gh): State<Shared>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let mut g = gh.lock().unwrap();
    let ok_client = f.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && f.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET);
    if !ok_client {
        return Json(json!({"error": "incorrect_client_credentials"})).into_response();
    }
    let Some(user) = f.get("code").and_then(|c| g.codes.remove(c)) else {
        return Json(json!({"error": "bad_verification_code", "error_description": "The code passed is incorrect or expired."})).into_response();
    };
    let token = format!("gho_{}", uuid::Uuid::new_v4().simple());
    g.tokens.insert(token.clone(), user);
    Json(json!({"access_token": token, "token_type": "bearer", "scope": "read:org"}))
        .into_response()
}

async fn user(State(gh): State<Shared>, headers: HeaderMap) -> Response {
    match user_of(&gh, &headers) {
        Some(login) => {
            Json(json!({"login": login, "id": 1, "name": login, "email": null})).into_response()
        }
        None => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Bad credentials"})),
        )
            .into_response(),
    }
}

async fn user_teams(State(gh): State<Shared>, headers: HeaderMap) -> Response {
    let Some(login) = user_of(&gh, &headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let g = gh.lock().unwrap();
    let teams: Vec<_> = g
        .teams
        .iter()
        .filter(|(_, members)| members.get(&login).map(String::as_str) == Some("active"))
        .map(|((org, team), _)| json!({"slug": team, "name": team, "organization": {"login": org}}))
        .collect();
    Json(teams).into_response()
}

async fn user_orgs(State(gh): State<Shared>, headers: HeaderMap) -> Response {
    let Some(login) = user_of(&gh, &headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let g = gh.lock().unwrap();
    let orgs: Vec<_> = g
        .orgs
        .get(&login)
        .into_iter()
        .flatten()
        .map(|o| json!({"login": o}))
        .collect();
    Json(orgs).into_response()
}

async fn org_member(
    State(gh): State<Shared>,
    headers: HeaderMap,
    Path((org, member)): Path<(String, String)>,
) -> StatusCode {
    if user_of(&gh, &headers).is_none() {
        return StatusCode::UNAUTHORIZED;
    }
    let g = gh.lock().unwrap();
    if g.orgs.get(&member).is_some_and(|o| o.contains(&org)) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn team_membership(
    State(gh): State<Shared>,
    headers: HeaderMap,
    Path((org, team, member)): Path<(String, String, String)>,
) -> Response {
    if user_of(&gh, &headers).is_none() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let g = gh.lock().unwrap();
    match g.teams.get(&(org, team)).and_then(|m| m.get(&member)) {
        Some(state) => Json(json!({"state": state, "role": "member"})).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response(),
    }
}

async fn start_stand_in(gh: Shared) -> u16 {
    let app = Router::new()
        .route("/login/oauth/authorize", get(authorize))
        .route("/login/oauth/access_token", post(access_token))
        .route("/user", get(user))
        .route("/user/teams", get(user_teams))
        .route("/user/orgs", get(user_orgs))
        .route("/orgs/{org}/members/{user}", get(org_member))
        .route(
            "/orgs/{org}/teams/{team}/memberships/{user}",
            get(team_membership),
        )
        .with_state(gh);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_string()
}

/// Log in as `login` through the stand-in; returns the hub's answer to the callback.
async fn github_login(
    gh: &Shared,
    hub: &TestHub,
    browser: &Browser,
    login: &str,
) -> reqwest::Response {
    gh.lock().unwrap().current_user = Some(login.to_string());
    let client = browser.no_redirects();
    let to_github = client
        .get(hub.url("/hub/oauth_login"))
        .send()
        .await
        .unwrap();
    assert_eq!(to_github.status(), 302, "{}", hub.log());
    let authorize = location(&to_github);
    assert!(authorize.contains("scope=read%3Aorg"), "{authorize}");
    let back = client.get(&authorize).send().await.unwrap();
    assert!(
        back.status().is_redirection(),
        "{}",
        back.text().await.unwrap()
    );
    client.get(location(&back)).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn organizations_teams_and_groups() {
    let gh: Shared = Arc::new(Mutex::new(GitHub::default()));
    {
        let mut g = gh.lock().unwrap();
        g.orgs.insert("octo".into(), vec!["org-a".into()]);
        g.orgs.insert("tina".into(), vec!["org-b".into()]);
        g.orgs.insert("pete".into(), vec!["org-b".into()]);
        g.orgs.insert("olga".into(), vec!["org-b".into()]);
        g.orgs.insert("Boss".into(), vec!["org-a".into()]);
        let team = |g: &mut GitHub, org: &str, team: &str, user: &str, state: &str| {
            g.teams
                .entry((org.into(), team.into()))
                .or_default()
                .insert(user.into(), state.into());
        };
        team(&mut g, "org-a", "devs", "octo", "active");
        team(&mut g, "org-b", "team-x", "tina", "active");
        team(&mut g, "org-b", "team-x", "pete", "pending");
        team(&mut g, "org-b", "team-y", "olga", "active");
        team(&mut g, "org-a", "admins", "Boss", "active");
    }
    let port = start_stand_in(gh.clone()).await;
    let hub = TestHub::start(&format!(
        "hub:
  config:
    JupyterHub:
      authenticator_class: github
    GitHubOAuthenticator:
      client_id: {CLIENT_ID}
      client_secret: {CLIENT_SECRET}
      github_url: http://127.0.0.1:{port}
      github_api: http://127.0.0.1:{port}
      scope: [read:org]
      allowed_organizations: [org-a, \"org-b:team-x\"]
      populate_teams_in_auth_state: true
      manage_groups: true
      admin_groups: [\"org-a:admins\"]
      blocked_users: [blocked-user]
"
    ));
    gh.lock().unwrap().redirect_uri = hub.url("/hub/oauth_callback");

    // Member of an allowed organization; teams become groups.
    let octo = Browser::new(&hub);
    let done = github_login(&gh, &hub, &octo, "octo").await;
    assert_eq!(done.status(), 302, "{}", hub.log());
    assert_eq!(location(&done), "/hub/home");
    octo.client.get(hub.url("/hub/home")).send().await.unwrap();
    let model = octo.user_model("octo").await;
    assert_eq!(model["groups"], json!(["org-a:devs"]), "{model}");
    assert_eq!(model["admin"], false);

    // Active member of an allowed team.
    let tina = Browser::new(&hub);
    assert_eq!(github_login(&gh, &hub, &tina, "tina").await.status(), 302);

    // Invited to the team but not yet a member; member of another team of the org.
    for login in ["pete", "olga", "nobody"] {
        let b = Browser::new(&hub);
        let refused = github_login(&gh, &hub, &b, login).await;
        assert_eq!(refused.status(), 403, "{login}");
        let text = refused.text().await.unwrap();
        assert!(
            text.contains("not allowed to use this hub"),
            "{login}: {text}"
        );
    }

    // Admin through a team (admin_groups), user names lower-cased.
    let boss = Browser::new(&hub);
    assert_eq!(github_login(&gh, &hub, &boss, "Boss").await.status(), 302);
    boss.client.get(hub.url("/hub/home")).send().await.unwrap();
    let model = boss.user_model("boss").await;
    assert_eq!(model["admin"], true, "{model}");
    assert_eq!(model["groups"], json!(["org-a:admins"]), "{model}");

    // Leaving the team removes the group at the next login.
    gh.lock()
        .unwrap()
        .teams
        .get_mut(&("org-a".to_string(), "devs".to_string()))
        .unwrap()
        .remove("octo");
    let again = Browser::new(&hub);
    assert_eq!(github_login(&gh, &hub, &again, "octo").await.status(), 302);
    again.client.get(hub.url("/hub/home")).send().await.unwrap();
    assert_eq!(again.user_model("octo").await["groups"], json!([]));

    // Blocked users never get in, even as organization members.
    gh.lock()
        .unwrap()
        .orgs
        .insert("blocked-user".into(), vec!["org-a".into()]);
    let blocked = Browser::new(&hub);
    let refused = github_login(&gh, &hub, &blocked, "blocked-user").await;
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("blocked"));

    // A code GitHub refuses (used twice): a clear page, not a 500.
    gh.lock().unwrap().current_user = Some("octo".into());
    let b = Browser::new(&hub);
    let client = b.no_redirects();
    let authorize = location(
        &client
            .get(hub.url("/hub/oauth_login"))
            .send()
            .await
            .unwrap(),
    );
    let callback = location(&client.get(&authorize).send().await.unwrap());
    let state_cookie = b.cookie("/hub/", "oauthenticator-state").unwrap();
    assert_eq!(client.get(&callback).send().await.unwrap().status(), 302);
    b.jar.add_cookie_str(
        &format!("oauthenticator-state={state_cookie}; Path=/hub/"),
        &reqwest::Url::parse(&hub.url("/hub/")).unwrap(),
    );
    let replay = client.get(&callback).send().await.unwrap();
    assert_eq!(replay.status(), 403);
    assert!(replay.text().await.unwrap().contains("Login failed"));
}
