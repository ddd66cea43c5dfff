//! NativeAuthenticator's pages (jupyterhub-nativeauthenticator's URLs): `/hub/signup`,
//! `/hub/authorize` (admins approve sign-ups) and `/hub/change-password`. Every form post
//! carries the XSRF token; approval and discard are POSTs (upstream's GET links would let
//! another site approve accounts).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use hubfleet_auth::{NativeAccounts, SignupError, SignupOutcome};
use minijinja::context;
use serde::Deserialize;

use crate::identity::{self, PageUser};
use crate::pages::{error_page, found, page_response};
use crate::password_login::{retry_seconds, Attempt, Refusal};
use crate::{AppState, HubError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/hub/signup", get(signup_page).post(signup_submit))
        .route("/hub/authorize", get(authorize_page))
        .route("/hub/authorize/{name}", post(authorize_user))
        .route("/hub/authorize/{name}/discard", post(discard_user))
        .route(
            "/hub/change-password",
            get(change_password_page).post(change_password_submit),
        )
}

const XSRF_FAILED: &str = "Your form expired or came from another site. Please try again.";

#[allow(clippy::result_large_err)] // the page is returned at once, never stored
fn accounts(state: &AppState) -> Result<&NativeAccounts, Response> {
    // Sign-up settings need a restart: the start-time authenticator's are the current ones.
    state
        .started_authenticator
        .native_accounts()
        .ok_or_else(|| {
            error_page(
                state,
                StatusCode::NOT_FOUND,
                "Not Found",
                "This hub does not keep its own accounts.",
                None,
            )
        })
}

fn render(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    template: &str,
    me: Option<&PageUser>,
    extra: minijinja::Value,
) -> Response {
    let (xsrf, cookie) = identity::xsrf_token(state, headers, me.and_then(PageUser::session));
    let nav = me.map(crate::templates::nav).unwrap_or_default();
    let body = state.templates().render(
        template,
        minijinja::value::merge_maps([context! { xsrf }, extra, nav]),
    );
    page_response(status, body, cookie)
}

/// The message for the person, or the error behind it.
fn problem(e: SignupError) -> Result<String, HubError> {
    match e {
        SignupError::Invalid(message) => Ok(message),
        SignupError::WrongPassword => Ok(e.to_string()),
        SignupError::Auth(e) => Err(e.into()),
        SignupError::Store(e) => Err(e.into()),
    }
}

async fn signup_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let accounts = match accounts(&state) {
        Ok(a) if a.settings.enable_signup => a,
        Ok(_) => return signup_closed(&state),
        Err(page) => return page,
    };
    render(
        &state,
        &headers,
        StatusCode::OK,
        "signup.html",
        None,
        context! {
            open_signup => accounts.settings.open_signup,
            min_length => accounts.settings.minimum_password_length,
        },
    )
}

fn signup_closed(state: &AppState) -> Response {
    error_page(
        state,
        StatusCode::NOT_FOUND,
        "Sign-up is closed",
        "This hub does not take sign-ups; ask its administrators for an account.",
        None,
    )
}

#[derive(Deserialize)]
struct SignupForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    signup_password: String,
    #[serde(default)]
    signup_password_confirmation: String,
    #[serde(rename = "_xsrf", default)]
    xsrf: String,
}

async fn signup_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SignupForm>,
) -> Result<Response, HubError> {
    let accounts = match accounts(&state) {
        Ok(a) if a.settings.enable_signup => a,
        Ok(_) => return Ok(signup_closed(&state)),
        Err(page) => return Ok(page),
    };
    let page = |status, error: Option<String>, done: Option<&str>| {
        render(
            &state,
            &headers,
            status,
            "signup.html",
            None,
            context! {
                error, done,
                username => form.username.clone(),
                open_signup => accounts.settings.open_signup,
                min_length => accounts.settings.minimum_password_length,
            },
        )
    };
    if !identity::xsrf_ok(&state, &headers, None, Some(&form.xsrf)) {
        return Ok(page(StatusCode::FORBIDDEN, Some(XSRF_FAILED.into()), None));
    }
    match accounts
        .sign_up(
            &form.username,
            &form.signup_password,
            &form.signup_password_confirmation,
        )
        .await
    {
        Ok(SignupOutcome::Created) => Ok(page(
            StatusCode::OK,
            None,
            Some("Your account is ready: you can sign in now."),
        )),
        Ok(SignupOutcome::Pending) => Ok(page(
            StatusCode::OK,
            None,
            Some("Your information has been sent to the administrators. You can sign in once they approve your account."),
        )),
        Err(e) => Ok(page(
            StatusCode::BAD_REQUEST,
            Some(problem(e)?),
            None,
        )),
    }
}

/// The logged-in admin, or the response to give instead.
async fn admin(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Result<PageUser, Response>, HubError> {
    let Some(me) = identity::page_user(state, headers).await? else {
        let next = uri.path();
        return Ok(Err(found(&crate::login::with_next(
            "/hub/login",
            Some(next),
        ))));
    };
    if !me.user.admin {
        return Ok(Err(error_page(
            state,
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Only admins can approve sign-ups.",
            None,
        )));
    }
    Ok(Ok(me))
}

async fn authorize_list(
    state: &AppState,
    headers: &HeaderMap,
    me: &PageUser,
    status: StatusCode,
    message: Option<String>,
) -> Result<Response, HubError> {
    let signups: Vec<minijinja::Value> = state
        .store
        .signups()
        .await?
        .into_iter()
        .map(|s| context! { name => s.name, created => s.created.format("%Y-%m-%d %H:%M UTC").to_string() })
        .collect();
    Ok(render(
        state,
        headers,
        status,
        "authorize_users.html",
        Some(me),
        context! { signups, message },
    ))
}

async fn authorize_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, HubError> {
    if let Err(page) = accounts(&state) {
        return Ok(page);
    }
    let me = match admin(&state, &headers, &uri).await? {
        Ok(me) => me,
        Err(response) => return Ok(response),
    };
    authorize_list(&state, &headers, &me, StatusCode::OK, None).await
}

#[derive(Deserialize)]
struct XsrfForm {
    #[serde(rename = "_xsrf", default)]
    xsrf: String,
}

async fn authorize_user(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<XsrfForm>,
) -> Result<Response, HubError> {
    decide(state, name, headers, uri, form, true).await
}

async fn discard_user(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<XsrfForm>,
) -> Result<Response, HubError> {
    decide(state, name, headers, uri, form, false).await
}

async fn decide(
    state: AppState,
    name: String,
    headers: HeaderMap,
    uri: Uri,
    form: XsrfForm,
    approve: bool,
) -> Result<Response, HubError> {
    if let Err(page) = accounts(&state) {
        return Ok(page);
    }
    let me = match admin(&state, &headers, &uri).await? {
        Ok(me) => me,
        Err(response) => return Ok(response),
    };
    if !identity::xsrf_ok(&state, &headers, me.session(), Some(&form.xsrf)) {
        return authorize_list(
            &state,
            &headers,
            &me,
            StatusCode::FORBIDDEN,
            Some(XSRF_FAILED.into()),
        )
        .await;
    }
    let message = if approve {
        match state.store.approve_signup(&name).await {
            Ok(Some(_)) => {
                tracing::info!(user = %name, by = %me.user.name, "sign-up approved");
                format!("{name} can now sign in.")
            }
            Ok(None) => format!("No sign-up of {name} is waiting."),
            Err(hubfleet_store::StoreError::Conflict { .. }) => {
                format!("A user named {name} already exists; the sign-up was discarded.")
            }
            Err(e) => return Err(e.into()),
        }
    } else if state.store.discard_signup(&name).await? {
        tracing::info!(user = %name, by = %me.user.name, "sign-up discarded");
        format!("The sign-up of {name} was discarded.")
    } else {
        format!("No sign-up of {name} is waiting.")
    };
    authorize_list(&state, &headers, &me, StatusCode::OK, Some(message)).await
}

async fn logged_in(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Result<PageUser, Response>, HubError> {
    match identity::page_user(state, headers).await? {
        Some(me) => Ok(Ok(me)),
        None => Ok(Err(found("/hub/login?next=%2Fhub%2Fchange-password"))),
    }
}

async fn change_password_page(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, HubError> {
    let accounts = match accounts(&state) {
        Ok(a) => a,
        Err(page) => return Ok(page),
    };
    let me = match logged_in(&state, &headers).await? {
        Ok(me) => me,
        Err(response) => return Ok(response),
    };
    Ok(render(
        &state,
        &headers,
        StatusCode::OK,
        "change_password.html",
        Some(&me),
        context! { min_length => accounts.settings.minimum_password_length },
    ))
}

#[derive(Deserialize)]
struct ChangePasswordForm {
    #[serde(default)]
    old_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    new_password_confirmation: String,
    #[serde(rename = "_xsrf", default)]
    xsrf: String,
}

async fn change_password_submit(
    State(state): State<AppState>,
    connect: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<ChangePasswordForm>,
) -> Result<Response, HubError> {
    let accounts = match accounts(&state) {
        Ok(a) => a,
        Err(page) => return Ok(page),
    };
    let me = match logged_in(&state, &headers).await? {
        Ok(me) => me,
        Err(response) => return Ok(response),
    };
    let page = |status, error: Option<String>, done: Option<&str>| {
        render(
            &state,
            &headers,
            status,
            "change_password.html",
            Some(&me),
            context! { error, done, min_length => accounts.settings.minimum_password_length },
        )
    };
    if !identity::xsrf_ok(&state, &headers, me.session(), Some(&form.xsrf)) {
        return Ok(page(StatusCode::FORBIDDEN, Some(XSRF_FAILED.into()), None));
    }
    // Checking the current password is a login like any other: the same limiter.
    let ip = crate::login::client_ip(connect.as_ref().map(|c| &c.0));
    let attempt = match Attempt::begin(&state, &me.user.name, ip, "change password") {
        Ok(attempt) => attempt,
        Err(refusal) => {
            let mut response = page(StatusCode::TOO_MANY_REQUESTS, Some(refusal.message()), None);
            if let Refusal::LockedOut(wait) = refusal {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, retry_seconds(wait).into());
            }
            return Ok(response);
        }
    };
    let changed = accounts
        .change_password(
            &me.user,
            &form.old_password,
            &form.new_password,
            &form.new_password_confirmation,
        )
        .await;
    match changed {
        Ok(()) => {
            attempt.succeeded();
            Ok(page(
                StatusCode::OK,
                None,
                Some("Your password has been changed."),
            ))
        }
        Err(SignupError::WrongPassword) => {
            attempt.failed().await;
            Ok(page(
                StatusCode::BAD_REQUEST,
                Some(SignupError::WrongPassword.to_string()),
                None,
            ))
        }
        // The current password was right; the new one is not acceptable.
        Err(e @ SignupError::Invalid(_)) => {
            attempt.succeeded();
            Ok(page(StatusCode::BAD_REQUEST, Some(problem(e)?), None))
        }
        Err(e) => Ok(page(StatusCode::BAD_REQUEST, Some(problem(e)?), None)),
    }
}
