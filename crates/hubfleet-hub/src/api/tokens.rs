//! API tokens: `/users/{name}/tokens` and the deprecated `/authorizations/token`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use hubfleet_rbac::Target;
use hubfleet_store::{NewToken, Token};
use serde::Deserialize;
use serde_json::{json, Value};

use super::users::user_named;
use super::{iso, isoformat, parse_body, Caller};
use crate::access;
use crate::identity::{self, Owner};
use crate::password_login::{self, Outcome};
use crate::{AppState, HubError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/hub/api/users/{name}/tokens",
            get(list_tokens).post(create_token),
        )
        .route(
            "/hub/api/users/{name}/tokens/{token_id}",
            get(get_token).delete(delete_token),
        )
        .route(
            "/hub/api/authorizations/token",
            axum::routing::post(deprecated_post),
        )
        .route("/hub/api/authorizations/token/{token}", get(token_owner))
        .route(
            "/hub/api/authorizations/cookie/{name}",
            get(deprecated_cookie),
        )
        .route(
            "/hub/api/authorizations/cookie/{name}/{value}",
            get(deprecated_cookie),
        )
}

/// The token model of protocol §2.3.5.
pub async fn token_model(
    state: &AppState,
    token: &Token,
    owner_name: &str,
    is_service: bool,
) -> Result<Value, HubError> {
    let owner = match (token.user_id, token.service_id) {
        (Some(id), _) => state.store.user_by_id(id).await?.map(Owner::User),
        (None, Some(id)) => state.store.service_by_id(id).await?.map(Owner::Service),
        _ => None,
    };
    let scopes: Vec<String> = match &owner {
        Some(owner) => access::token_scopes(state, token, owner)
            .await?
            .into_iter()
            .collect(),
        None => Vec::new(),
    };
    let oauth_client = if token.client_id == "jupyterhub" {
        "JupyterHub".to_string()
    } else {
        state
            .store
            .oauth_client(&token.client_id)
            .await?
            .map(|c| c.description)
            .unwrap_or_else(|| token.client_id.clone())
    };
    let mut model = json!({
        "id": format!("a{}", token.id),
        "kind": "api_token",
        "roles": [],
        "scopes": scopes,
        "created": isoformat(token.created),
        "last_activity": iso(token.last_activity),
        "expires_at": iso(token.expires_at),
        "note": token.note,
        "session_id": token.session_id,
        "oauth_client": oauth_client,
    });
    model[if is_service { "service" } else { "user" }] = json!(owner_name);
    Ok(model)
}

fn parse_token_id(id: &str) -> Result<i64, HubError> {
    id.strip_prefix('a')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| HubError::NotFound(format!("No such token: {id}")))
}

async fn list_tokens(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
) -> Result<Response, HubError> {
    access::check(&state, &me.scopes, &["read:tokens"], &Target::User(&name)).await?;
    let user = user_named(&state, &name).await?;
    let now = Utc::now();
    let mut models = Vec::new();
    for token in state.store.tokens_of(user.id).await? {
        if token.expires_at.is_some_and(|t| t <= now) {
            state.store.delete_token(token.id).await?;
            continue;
        }
        models.push(token_model(&state, &token, &user.name, false).await?);
    }
    Ok(Json(json!({ "api_tokens": models })).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    note: Option<String>,
    expires_in: Option<Value>,
    scopes: Option<Vec<String>>,
    roles: Option<Vec<String>>,
    /// Login data, for requests without credentials (upstream's `auth`).
    auth: Option<AuthData>,
}

#[derive(Deserialize)]
struct AuthData {
    username: String,
    #[serde(default)]
    password: String,
}

async fn create_token(
    State(state): State<AppState>,
    connect: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    Path(name): Path<String>,
    method: Method,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Bytes,
) -> Result<Response, HubError> {
    let request: TokenRequest = parse_body(&body)?.unwrap_or_default();
    let xsrf = uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "_xsrf")
            .map(|(_, v)| v.into_owned())
    });
    // Credentials first; without them, the body's `auth` may log the user in.
    let me = match identity::identify(&state, &method, &headers, xsrf.as_deref()).await? {
        Some(me) => me,
        None => {
            let Some(auth) = &request.auth else {
                return Err(HubError::Forbidden(
                    hubfleet_rbac::MISSING_CREDENTIALS_MESSAGE.into(),
                ));
            };
            let credentials = hubfleet_auth::Credentials {
                username: auth.username.clone(),
                password: auth.password.clone(),
            };
            let ip = crate::login::client_ip(connect.as_ref().map(|c| &c.0));
            let info = match password_login::check_password(&state, &credentials, ip, "token API")
                .await?
            {
                Outcome::Accepted(info) => info,
                Outcome::Wrong => {
                    return Err(HubError::Forbidden("Invalid username or password".into()))
                }
                Outcome::Refused(refusal) => return Err(refusal.into()),
                Outcome::NotAllowed(why) => return Err(HubError::Forbidden(why)),
            };
            let user = user_named(&state, &info.name).await?;
            identity::Identity {
                scopes: access::user_scopes(&state, &user).await?.into(),
                owner: Owner::User(user),
                token: None,
                session_id: None,
            }
        }
    };
    access::check(&state, &me.scopes, &["tokens"], &Target::User(&name)).await?;
    let user = user_named(&state, &name).await?;
    if request.scopes.is_some() && request.roles.is_some() {
        return Err(HubError::BadRequest(
            "Specify scopes or roles, not both".into(),
        ));
    }
    let raw_scopes: Vec<String> = match (&request.scopes, &request.roles) {
        (Some(scopes), _) => scopes.clone(),
        (None, Some(roles)) => {
            let mut scopes = Vec::new();
            for role in roles {
                let known = match state.store.role(role).await? {
                    Some(stored) => Some(stored.scopes),
                    None => hubfleet_rbac::default_role(role).map(|r| r.scopes),
                };
                scopes.extend(
                    known.ok_or_else(|| HubError::BadRequest(format!("No such role: {role}")))?,
                );
            }
            scopes
        }
        (None, None) => vec!["inherit".to_string()],
    };
    let owner = hubfleet_rbac::Owner::User {
        name: user.name.clone(),
        groups: state.store.groups_of_user(user.id).await?,
    };
    let held = access::user_scopes(&state, &user).await?;
    hubfleet_rbac::try_expand_scopes(
        &raw_scopes,
        &owner,
        None,
        &hubfleet_rbac::CustomScopes::default(),
    )
    .map_err(|e| HubError::BadRequest(e.to_string()))?;
    let membership = std::collections::BTreeMap::from([(
        user.name.clone(),
        state.store.groups_of_user(user.id).await?,
    )]);
    hubfleet_rbac::check_token_scopes(&raw_scopes, &held, &owner, None, &membership)
        .map_err(|e| HubError::BadRequest(e.to_string()))?;
    let expires_in = match &request.expires_in {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(0) => None,
            Some(seconds) if seconds > 0 => Some(seconds),
            _ => {
                return Err(HubError::BadRequest(
                    "expires_in must be a positive integer (seconds)".into(),
                ))
            }
        },
        Some(_) => {
            return Err(HubError::BadRequest(
                "expires_in must be an integer number of seconds".into(),
            ))
        }
    };
    let note = match &request.note {
        Some(note) => note.clone(),
        None => match &me.owner {
            Owner::User(u) if u.id == user.id => "Requested via api".to_string(),
            Owner::User(u) => format!("Requested via api by user {}", u.name),
            Owner::Service(s) => format!("Requested via api by service {}", s.name),
        },
    };
    let secret = hubfleet_store::new_token();
    let token = state
        .store
        .insert_token(
            &secret,
            &NewToken {
                user_id: Some(user.id),
                service_id: None,
                server_id: None,
                client_id: "jupyterhub",
                session_id: None,
                scopes: &raw_scopes,
                note: &note,
                expires_at: expires_in.map(|s| Utc::now() + chrono::Duration::seconds(s)),
            },
        )
        .await?;
    let mut model = token_model(&state, &token, &user.name, false).await?;
    model["token"] = json!(secret);
    Ok((StatusCode::CREATED, Json(model)).into_response())
}

async fn owned_token(
    state: &AppState,
    me: &identity::Identity,
    name: &str,
    token_id: &str,
    scope: &str,
) -> Result<(hubfleet_store::User, Token), HubError> {
    access::check(state, &me.scopes, &[scope], &Target::User(name)).await?;
    let user = user_named(state, name).await?;
    let id = parse_token_id(token_id)?;
    let token = state
        .store
        .token_by_id(id)
        .await?
        .filter(|t| t.user_id == Some(user.id) && t.expires_at.is_none_or(|e| e > Utc::now()))
        .ok_or_else(|| HubError::NotFound(format!("No such token: {token_id}")))?;
    Ok((user, token))
}

async fn get_token(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path((name, token_id)): Path<(String, String)>,
) -> Result<Response, HubError> {
    let (user, token) = owned_token(&state, &me, &name, &token_id, "read:tokens").await?;
    Ok(Json(token_model(&state, &token, &user.name, false).await?).into_response())
}

async fn delete_token(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path((name, token_id)): Path<(String, String)>,
) -> Result<Response, HubError> {
    let (user, token) = owned_token(&state, &me, &name, &token_id, "tokens").await?;
    if token.client_id == "jupyterhub" {
        state.store.delete_token(token.id).await?;
    } else {
        state
            .store
            .delete_client_tokens_of(user.id, &token.client_id)
            .await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn deprecated_post() -> Response {
    super::json_error(
        StatusCode::NOT_FOUND,
        "Deprecated endpoint, removed in JupyterHub 2.0: use POST /hub/api/users/{name}/tokens",
    )
}

async fn deprecated_cookie() -> Response {
    super::json_error(
        StatusCode::NOT_FOUND,
        "Deprecated endpoint, removed in JupyterHub 2.0: use GET /hub/api/user with a token",
    )
}

/// Deprecated: the owner of a token, for any authenticated caller.
async fn token_owner(
    State(state): State<AppState>,
    Caller(_me): Caller,
    Path(secret): Path<String>,
) -> Result<Response, HubError> {
    let token = state
        .store
        .find_token(&secret)
        .await?
        .ok_or_else(|| HubError::NotFound("No such token".into()))?;
    let model = match (token.user_id, token.service_id) {
        (Some(id), _) => {
            let user = state
                .store
                .user_by_id(id)
                .await?
                .ok_or_else(|| HubError::NotFound("No such token".into()))?;
            let scopes = access::user_scopes(&state, &user).await?.into();
            let parts = super::users::load_parts(&state, user, false).await?;
            let membership =
                std::collections::BTreeMap::from([(parts.user.name.clone(), parts.groups.clone())]);
            Value::Object(super::users::user_model(
                &state.settings(),
                &scopes,
                &membership,
                &parts,
                false,
            ))
        }
        (None, Some(id)) => {
            let service = state
                .store
                .service_by_id(id)
                .await?
                .ok_or_else(|| HubError::NotFound("No such token".into()))?;
            let scopes = access::service_scopes(&state, &service).await?;
            Value::Object(super::hub::service_model(&state, &scopes, &service).await?)
        }
        _ => return Err(HubError::NotFound("No such token".into())),
    };
    Ok(Json(model).into_response())
}
