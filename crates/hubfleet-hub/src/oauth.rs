//! The OAuth2 provider single-user servers log people in with (protocol §4).

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use chrono::Utc;
use hubfleet_store::{NewToken, OAuthCode};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::identity;
use crate::pages::{self, found};
use crate::{AppState, HubError};

/// How long an authorization code lives.
const CODE_SECONDS: i64 = 300;
/// OAuth access tokens live as long as a login (`oauth_token_expires_in`).
const TOKEN_SECONDS: i64 = identity::LOGIN_DAYS * 86400;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/hub/api/oauth2/authorize", get(authorize).post(authorize))
        .route("/hub/api/oauth2/token", post(token))
}

/// Query or form pairs; a parameter given twice is an error (as oauthlib treats it).
fn single_params(raw: &str) -> Result<BTreeMap<String, String>, String> {
    let mut params = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        if params.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("duplicate parameter `{k}`"));
        }
    }
    Ok(params)
}

fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().filter(|(_, v)| !v.is_empty()))
        .finish();
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    found(&format!("{redirect_uri}{sep}{query}")).into_response()
}

/// The confirmation form's fields (POST).
#[derive(serde::Deserialize, Default)]
struct ConfirmForm {
    #[serde(rename = "_xsrf", default)]
    xsrf: String,
}

async fn authorize(
    State(state): State<AppState>,
    method: axum::http::Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: axum::body::Bytes,
) -> Result<Response, HubError> {
    let confirmed = method == axum::http::Method::POST;
    if confirmed {
        let form: ConfirmForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
        let session = identity::page_user(&state, &headers)
            .await?
            .and_then(|me| me.identity.session_id);
        if !identity::xsrf_ok(&state, &headers, session.as_deref(), Some(&form.xsrf)) {
            return Ok(pages::error_page(
                &state,
                StatusCode::FORBIDDEN,
                "Authorization expired",
                "The authorization form expired or came from another site. Go back and try again.",
                None,
            ));
        }
    }
    let query = query.unwrap_or_default();
    let Some(me) = identity::page_user(&state, &headers).await? else {
        let next = format!("/hub/api/oauth2/authorize?{query}");
        return Ok(pages::login_redirect(&next));
    };
    let params = match single_params(&query) {
        Ok(params) => params,
        Err(message) => {
            return Ok(pages::error_page(
                &state,
                StatusCode::BAD_REQUEST,
                "Invalid authorization request",
                &message,
                None,
            ))
        }
    };
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    let client_id = get("client_id");
    let Some(client) = state.store.oauth_client(client_id).await? else {
        return Ok(pages::error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "Unknown OAuth client",
            &format!("No OAuth client `{client_id}` is registered. If you followed a link to a server, start the server again."),
            None,
        ));
    };
    // Exact string match; never redirect to an unregistered URI.
    let redirect_uri = params
        .get("redirect_uri")
        .cloned()
        .unwrap_or_else(|| client.redirect_uri.clone());
    if redirect_uri != client.redirect_uri {
        return Ok(pages::error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "Mismatching redirect URI",
            "The redirect_uri of this request is not the one registered for the client.",
            None,
        ));
    }
    let oauth_state = get("state");
    if get("response_type") != "code" {
        return Ok(redirect_with(
            &redirect_uri,
            &[
                ("error", "unsupported_response_type"),
                ("state", oauth_state),
            ],
        ));
    }
    let challenge = params.get("code_challenge").cloned();
    let method = match (
        &challenge,
        params.get("code_challenge_method").map(String::as_str),
    ) {
        (None, _) => None,
        (Some(_), None | Some("plain")) => Some("plain".to_string()),
        (Some(_), Some("S256")) => Some("S256".to_string()),
        (Some(_), Some(_)) => {
            return Ok(redirect_with(
                &redirect_uri,
                &[
                    ("error", "invalid_request"),
                    ("error_description", "Transform algorithm not supported."),
                    ("state", oauth_state),
                ],
            ));
        }
    };
    // Only the server's owner, or someone holding access:servers (services:
    // access:services) on it, gets in.
    let owns = match client.server_id {
        Some(server_id) => state
            .store
            .servers_of(me.user.id)
            .await?
            .iter()
            .any(|s| s.id == server_id),
        None => false,
    };
    let access_scope = client.allowed_scopes.first().cloned().unwrap_or_default();
    let allowed = if owns {
        true
    } else if let Some(service) = access_scope.strip_prefix("access:services!service=") {
        crate::access::check(
            &state,
            &me.identity.scopes,
            &["access:services"],
            &hubfleet_rbac::Target::Service(service),
        )
        .await
        .is_ok()
    } else {
        let target = access_scope
            .strip_prefix("access:servers!server=")
            .unwrap_or("");
        let (owner, server) = target.split_once('/').unwrap_or((target, ""));
        !target.is_empty()
            && crate::access::check(
                &state,
                &me.identity.scopes,
                &["access:servers"],
                &hubfleet_rbac::Target::Server(owner, server),
            )
            .await
            .is_ok()
    };
    if !allowed {
        return Ok(pages::error_page(
            &state,
            StatusCode::FORBIDDEN,
            "Access denied",
            &format!(
                "You do not have permission to access {}",
                client.description
            ),
            None,
        ));
    }
    let mut scopes: Vec<String> = client.allowed_scopes.clone();
    scopes.extend(hubfleet_rbac::identify_scopes_raw());
    scopes.sort();
    scopes.dedup();
    // Someone else's server or a service: ask first (protocol §4.2 step 7).
    if !owns && !confirmed {
        let (xsrf, set) = identity::xsrf_token(&state, &headers, me.session());
        let body = state.templates().render(
            "oauth_confirm.html",
            minijinja::context! { user => me.user.name, description => client.description, scopes => client.allowed_scopes, xsrf },
        );
        let mut response = (StatusCode::OK, axum::response::Html(body)).into_response();
        if let Some(cookie) = set {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        return Ok(response);
    }
    let code = hubfleet_store::new_token();
    state
        .store
        .insert_oauth_code(
            &code,
            &OAuthCode {
                client_id: client.identifier.clone(),
                user_id: me.user.id,
                session_id: me.identity.session_id.clone(),
                scopes,
                redirect_uri: redirect_uri.clone(),
                code_challenge: challenge,
                code_challenge_method: method,
                expires_at: Utc::now() + chrono::Duration::seconds(CODE_SECONDS),
            },
        )
        .await?;
    Ok(redirect_with(
        &redirect_uri,
        &[("code", &code), ("state", oauth_state)],
    ))
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

fn pkce_ok(verifier: &str, challenge: &str, method: &str) -> bool {
    let computed = match method {
        "S256" => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes())),
        _ => verifier.to_string(),
    };
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

async fn token(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    body: axum::body::Bytes,
) -> Result<Response, HubError> {
    if query.is_some_and(|q| !q.is_empty()) {
        return Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "URL query parameters are not allowed",
        ));
    }
    let params = match single_params(&String::from_utf8_lossy(&body)) {
        Ok(params) => params,
        Err(message) => {
            return Ok(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &message,
            ))
        }
    };
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    if get("grant_type") != "authorization_code" {
        return Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only authorization_code is supported",
        ));
    }
    let client_id = get("client_id");
    if client_id.is_empty()
        || !state
            .store
            .verify_client_secret(client_id, get("client_secret"))
            .await?
    {
        return Ok(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        ));
    }
    let Some(code) = state.store.take_oauth_code(get("code"), client_id).await? else {
        return Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the code is unknown, used or expired",
        ));
    };
    if let Some(redirect_uri) = params.get("redirect_uri") {
        if *redirect_uri != code.redirect_uri {
            return Ok(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "Mismatching redirect URI.",
            ));
        }
    }
    if let Some(challenge) = &code.code_challenge {
        let method = code.code_challenge_method.as_deref().unwrap_or("plain");
        match params.get("code_verifier") {
            Some(verifier) if pkce_ok(verifier, challenge, method) => {}
            Some(_) => {
                return Ok(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "code_verifier does not match the code_challenge",
                ))
            }
            None => {
                return Ok(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Code verifier required.",
                ))
            }
        }
    }
    let access_token = hubfleet_store::new_token();
    let client = state.store.oauth_client(client_id).await?;
    let note = client.map(|c| c.description).unwrap_or_default();
    state
        .store
        .insert_token(
            &access_token,
            &NewToken {
                user_id: Some(code.user_id),
                service_id: None,
                server_id: None,
                client_id,
                session_id: code.session_id.as_deref(),
                scopes: &code.scopes,
                note: &format!("OAuth token for {note}"),
                expires_at: Some(Utc::now() + chrono::Duration::seconds(TOKEN_SECONDS)),
            },
        )
        .await?;
    Ok((
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(json!({
            "access_token": access_token,
            "expires_in": TOKEN_SECONDS,
            "token_type": "Bearer",
            "scope": code.scopes.join(" "),
        })),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636_example() {
        // RFC 7636, appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_ok(verifier, challenge, "S256"));
        assert!(!pkce_ok("other", challenge, "S256"));
        assert!(pkce_ok("plain-v", "plain-v", "plain"));
    }

    #[test]
    fn duplicate_parameters_are_refused() {
        assert!(single_params("a=1&b=2").is_ok());
        assert!(single_params("a=1&a=2").is_err());
    }
}
