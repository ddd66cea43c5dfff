//! The admin page (`/hub/admin`, scope `admin-ui`) and the server log viewer. The page is a
//! shell: `static/admin.js` lists and changes everything through the REST API with the
//! admin's own scopes, so a filtered admin sees only what those scopes cover.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use minijinja::context;

use crate::identity::{self, PageUser};
use crate::pages::{error_page, login_redirect};
use crate::templates::nav;
use crate::{AppState, HubError};

/// How much of a server's log the viewer shows (bytes).
const LOG_TAIL_BYTES: u64 = 64 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/hub/admin", get(admin_page))
        .route("/hub/admin/log/{user}", get(log_default))
        .route("/hub/admin/log/{user}/{server}", get(log_named))
        .route("/hub/admin/environments/preview", get(environments_preview))
}

#[derive(serde::Deserialize, Default)]
struct PreviewQuery {
    #[serde(default)]
    groups: String,
}

/// The server options page as members of `groups` see it now (Start disabled).
async fn environments_preview(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    axum::extract::Query(query): axum::extract::Query<PreviewQuery>,
) -> Result<Response, HubError> {
    let me = match admin_user(&state, &headers, &uri).await? {
        Ok(me) => me,
        Err(page) => return Ok(page),
    };
    if me
        .identity
        .scopes
        .parsed()
        .get(crate::api::environments::SCOPE)
        .is_none()
    {
        return Ok(error_page(
            &state,
            StatusCode::FORBIDDEN,
            "Forbidden",
            "The preview needs the `admin:environments` permission, which you do not have.",
            None,
        ));
    }
    let groups: Vec<String> = query
        .groups
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect();
    crate::spawn_page::preview(&state, &headers, &me, &groups).await
}

/// The signed-in person if they hold `admin-ui`; otherwise the page to show instead.
async fn admin_user(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Result<PageUser, Response>, HubError> {
    let Some(me) = identity::page_user(state, headers).await? else {
        let next = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/hub/admin");
        return Ok(Err(login_redirect(next)));
    };
    let allowed = me.identity.scopes.parsed().get("admin-ui").is_some();
    if !allowed {
        return Ok(Err(error_page(
            state,
            StatusCode::FORBIDDEN,
            "Forbidden",
            "The admin page needs the `admin-ui` permission, which you do not have.",
            None,
        )));
    }
    Ok(Ok(me))
}

async fn admin_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, HubError> {
    let me = match admin_user(&state, &headers, &uri).await? {
        Ok(me) => me,
        Err(page) => return Ok(page),
    };
    let (xsrf, set) = identity::xsrf_token(&state, &headers, me.session());
    // Sign-ups waiting for an admin (native accounts): linked, with their number.
    let signups = match state.authenticator().native_accounts() {
        Some(_) if me.user.admin => Some(state.store.signups().await?.len()),
        _ => None,
    };
    let parsed = me.identity.scopes.parsed();
    let unfiltered =
        |base: &str| matches!(parsed.get(base), Some(hubfleet_rbac::ScopeFilters::All));
    // Every user's Dask clusters, for admins who may see every user's servers.
    let (dask_enabled, dask_clusters, dask_error) = match &state.settings().dask_gateway {
        Some(gateway) if unfiltered("admin:servers") => match gateway.all_clusters(&state).await {
            Ok(listing) if listing.failed.is_empty() => (true, listing.rows, None),
            Ok(listing) => (
                true,
                listing.rows,
                Some(format!(
                    "The Dask gateway did not answer for {} user(s), whose clusters are not listed: {}",
                    listing.failed.len(),
                    listing.failed.first().map(String::as_str).unwrap_or_default()
                )),
            ),
            Err(e) => (true, Vec::new(), Some(e.to_string())),
        },
        _ => (false, Vec::new(), None),
    };
    let body = state.templates().render(
        "admin.html",
        context! {
            xsrf, signups, dask_enabled, dask_clusters, dask_error,
            can_add_users => unfiltered("admin:users"),
            can_stop_all => unfiltered("admin:servers"),
            can_create_groups => unfiltered("admin:groups"),
            can_list_groups => parsed.get("list:groups").is_some(),
            can_environments => parsed.get(crate::api::environments::SCOPE).is_some(),
            scopes => page_scopes(parsed),
            ..nav(&me)
        },
    );
    Ok(crate::pages::page_response(StatusCode::OK, body, set))
}

/// What the admin page's script needs to know of the caller's scopes to show only the buttons
/// they may use: for each base that changes something, `"all"` or the filters by kind
/// (`{"group": ["x"]}`). The API checks again; this only keeps useless buttons away.
fn page_scopes(parsed: &hubfleet_rbac::ParsedScopes) -> String {
    let mut out = serde_json::Map::new();
    for base in [
        "admin:users",
        "delete:users",
        "admin:servers",
        "servers",
        "admin:groups",
        "groups",
        "delete:groups",
        "admin:environments",
    ] {
        let value = match parsed.get(base) {
            None => continue,
            Some(hubfleet_rbac::ScopeFilters::All) => serde_json::json!("all"),
            Some(hubfleet_rbac::ScopeFilters::Only(filters)) => serde_json::Value::Object(
                filters
                    .iter()
                    .map(|(kind, values)| (kind.as_str().to_owned(), serde_json::json!(values)))
                    .collect(),
            ),
        };
        out.insert(base.to_owned(), value);
    }
    serde_json::Value::Object(out).to_string()
}

async fn log_default(
    state: State<AppState>,
    Path(user): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, HubError> {
    server_log(state, user, String::new(), headers, uri).await
}

async fn log_named(
    state: State<AppState>,
    Path((user, server)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, HubError> {
    server_log(state, user, server, headers, uri).await
}

async fn server_log(
    State(state): State<AppState>,
    target: String,
    server_name: String,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, HubError> {
    let me = match admin_user(&state, &headers, &uri).await? {
        Ok(me) => me,
        Err(page) => return Ok(page),
    };
    let allowed = crate::access::check(
        &state,
        &me.identity.scopes,
        &["admin:servers"],
        &hubfleet_rbac::Target::Server(&target, &server_name),
    )
    .await;
    if let Err(e) = allowed {
        return Ok(error_page(
            &state,
            e.status(),
            "Cannot show this log",
            &e.to_string(),
            None,
        ));
    }
    let Some(user) = state.store.user_by_name(&target).await? else {
        return Ok(error_page(
            &state,
            StatusCode::NOT_FOUND,
            "Not Found",
            &format!("No such user: {target}"),
            None,
        ));
    };
    let (log, source) = match state
        .lifecycle
        .log_tail(&user, &server_name, LOG_TAIL_BYTES)
        .await?
    {
        Some(log) => (log.text, log.source),
        None => (String::new(), String::new()),
    };
    let body = state.templates().render(
        "admin_log.html",
        context! {
            target, server_name, log, source, limit => LOG_TAIL_BYTES, ..nav(&me)
        },
    );
    Ok((StatusCode::OK, Html(body)).into_response())
}
