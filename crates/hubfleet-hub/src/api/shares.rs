//! Sharing servers (JupyterHub 5+; protocol §2.2, §2.3.7; upstream
//! `apihandlers/shares.py` and `AcceptShareHandler` in `handlers/pages.py`):
//! shares granted to users and groups, share codes, and the page that exchanges a
//! code for a share.

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Json, Router};
use chrono::{Duration, Utc};
use hubfleet_rbac::{GroupMembership, ParsedScopes, Target};
use hubfleet_store::{
    Grantee, Phase, Server, Share, ShareCode, ShareCodeQuery, ShareQuery, ShareWith, User,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::groups::caller_name;
use super::{empty, isoformat, parse_body, Args, Caller, Page, PageQuery};
use crate::access::{self, Membership};
use crate::{identity, pages, urls, AppState, HubError};

pub fn routes() -> Router<AppState> {
    let mut router = Router::new()
        .route("/hub/api/users/{name}/shared", get(user_shares))
        .route("/hub/api/groups/{name}/shared", get(group_shares))
        .route(
            "/hub/api/shares/{owner}",
            get(owner_shares)
                .post(no_server)
                .patch(no_server)
                .delete(no_server),
        )
        .route(
            "/hub/api/share-codes/{owner}",
            get(owner_codes).post(no_server).delete(no_server),
        )
        .route("/hub/accept-share", get(accept_page).post(accept_submit));
    // `…/{owner}/` names the default server, `…/{owner}/{server}` a named one.
    for server in ["", "{server}"] {
        router = router
            .route(
                &format!("/hub/api/users/{{name}}/shared/{{owner}}/{server}"),
                get(user_share).delete(revoke_user_share),
            )
            .route(
                &format!("/hub/api/groups/{{name}}/shared/{{owner}}/{server}"),
                get(group_share).delete(revoke_group_share),
            )
            .route(
                &format!("/hub/api/shares/{{owner}}/{server}"),
                get(server_shares)
                    .post(grant)
                    .patch(revoke)
                    .delete(delete_shares),
            )
            .route(
                &format!("/hub/api/share-codes/{{owner}}/{server}"),
                get(server_codes).post(create_code).delete(delete_codes),
            );
    }
    router
}

/// `…/{owner}/{server}`, or `…/{owner}/` for the default server (`server` empty).
#[derive(Deserialize)]
struct ServerPath {
    owner: String,
    #[serde(default)]
    server: String,
}

/// `…/{name}/shared/{owner}/{server}`, or `…/{owner}/` for the default server.
#[derive(Deserialize)]
struct GranteePath {
    name: String,
    owner: String,
    #[serde(default)]
    server: String,
}

// ---- models ----

/// Whether each server is ready, looked up once per server for a list.
#[derive(Default)]
struct ReadyCache(HashMap<i64, bool>);

impl ReadyCache {
    async fn ready(
        &mut self,
        state: &AppState,
        server: &hubfleet_store::SharedServer,
    ) -> Result<bool, HubError> {
        if let Some(ready) = self.0.get(&server.id) {
            return Ok(*ready);
        }
        let ready = state
            .store
            .server(server.owner_id, &server.name)
            .await?
            .is_some_and(|s| s.phase == Phase::Ready);
        self.0.insert(server.id, ready);
        Ok(ready)
    }
}

/// `SharedServer`: a subset of the server model, with its owner.
async fn shared_server_model(
    state: &AppState,
    server: &hubfleet_store::SharedServer,
    cache: &mut ReadyCache,
) -> Result<Value, HubError> {
    Ok(json!({
        "user": { "name": server.owner },
        "name": server.name,
        "url": state.settings().server_url(&server.owner, &server.name),
        "full_url": state.settings().subdomain_host.as_ref().map(|_| state.settings().server_url(&server.owner, &server.name)),
        "ready": cache.ready(state, server).await?,
    }))
}

async fn share_model(
    state: &AppState,
    share: &Share,
    cache: &mut ReadyCache,
) -> Result<Value, HubError> {
    let (user, group, kind) = match &share.with {
        Grantee::User(name) => (json!({ "name": name }), Value::Null, "user"),
        Grantee::Group(name) => (Value::Null, json!({ "name": name }), "group"),
    };
    Ok(json!({
        "server": shared_server_model(state, &share.server, cache).await?,
        "scopes": share.scopes,
        "user": user,
        "group": group,
        "kind": kind,
        "created_at": isoformat(share.created),
    }))
}

/// The share code model; `code` only in the answer that created it.
async fn code_model(
    state: &AppState,
    code: &ShareCode,
    secret: Option<&str>,
    cache: &mut ReadyCache,
) -> Result<Value, HubError> {
    let mut model = json!({
        "server": shared_server_model(state, &code.server, cache).await?,
        "scopes": code.scopes,
        "id": format!("sc_{}", code.id),
        "created_at": isoformat(code.created),
        "expires_at": isoformat(code.expires_at),
        "exchange_count": code.exchange_count,
        "last_exchanged_at": super::iso(code.last_exchanged_at),
    });
    if let (Some(secret), Some(map)) = (secret, model.as_object_mut()) {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("code", secret)
            .finish();
        map.insert("code".into(), json!(secret));
        map.insert(
            "accept_url".into(),
            json!(state
                .settings()
                .with_base(&format!("/hub/accept-share?{query}"))),
        );
        map.insert("full_accept_url".into(), Value::Null);
    }
    Ok(model)
}

/// Share lists always answer with the paginated shape (`_share_list_model`).
fn share_page(headers: &HeaderMap, query: &PageQuery) -> Result<Page, HubError> {
    let mut page = Page::from_request(headers, query)?;
    page.paginated = true;
    Ok(page)
}

async fn share_list(
    state: &AppState,
    query: ShareQuery,
    headers: &HeaderMap,
    uri: &Uri,
    page_query: &PageQuery,
) -> Result<Response, HubError> {
    let page = share_page(headers, page_query)?;
    let (shares, total) = state
        .store
        .list_shares(query, page.offset, page.limit)
        .await?;
    let mut cache = ReadyCache::default();
    let mut items = Vec::with_capacity(shares.len());
    for share in &shares {
        items.push(share_model(state, share, &mut cache).await?);
    }
    Ok(page.respond(items, total, headers, uri))
}

async fn code_list(
    state: &AppState,
    query: ShareCodeQuery,
    headers: &HeaderMap,
    uri: &Uri,
    page_query: &PageQuery,
) -> Result<Response, HubError> {
    let page = share_page(headers, page_query)?;
    let (codes, total) = state
        .store
        .list_share_codes(query, page.offset, page.limit)
        .await?;
    let mut cache = ReadyCache::default();
    let mut items = Vec::with_capacity(codes.len());
    for code in &codes {
        items.push(code_model(state, code, None, &mut cache).await?);
    }
    Ok(page.respond(items, total, headers, uri))
}

// ---- lookups ----

async fn find_user(state: &AppState, name: &str) -> Result<Option<User>, HubError> {
    Ok(state.store.user_by_name(name).await?)
}

/// The owner's server, if both exist.
async fn find_server(
    state: &AppState,
    owner: &str,
    server: &str,
) -> Result<Option<(User, Server)>, HubError> {
    let Some(user) = find_user(state, owner).await? else {
        return Ok(None);
    };
    Ok(state
        .store
        .server(user.id, server)
        .await?
        .map(|server| (user, server)))
}

async fn server_or_404(
    state: &AppState,
    owner: &str,
    server: &str,
) -> Result<(User, Server), HubError> {
    find_server(state, owner, server)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("No such server: {owner}/{server}")))
}

async fn membership_of(state: &AppState, user: &User) -> Result<Membership, HubError> {
    Ok(BTreeMap::from([(
        user.name.clone(),
        state.store.groups_of_user(user.id).await?,
    )]))
}

// ---- scopes of a share ----

/// The scopes handlers check against one server: the only ones a `!server=` filter lets through,
/// so the only ones a share can grant.
const SERVER_SCOPES: &[&str] = &[
    "access:servers",
    "servers",
    "read:servers",
    "start:servers",
    "delete:servers",
    "admin:servers",
    "admin:server_state",
    "shares",
    "read:shares",
];

/// Does `base`, filtered to one server, grant anything (itself or a scope it implies)?
fn grants_on_a_server(base: &str) -> bool {
    hubfleet_rbac::expand_scope(base)
        .iter()
        .any(|scope| SERVER_SCOPES.contains(&scope.as_str()))
}

/// The bases of the requested scopes (`access:servers` by default), each of which
/// may carry no filter or exactly this server's (`Share._apply_filter`), and must act on a
/// server: upstream stores any scope, but one such as `tokens!server=…` grants nothing.
fn share_bases(
    scopes: Option<&[String]>,
    owner: &str,
    server: &str,
) -> Result<Vec<String>, HubError> {
    let requested: Vec<String> = match scopes {
        Some(scopes) if !scopes.is_empty() => scopes.to_vec(),
        _ => vec!["access:servers".to_string()],
    };
    hubfleet_rbac::check_scopes_exist(&requested, &hubfleet_rbac::CustomScopes::default())
        .map_err(|e| HubError::BadRequest(e.to_string()))?;
    let own_filter = format!("server={owner}/{server}");
    let mut bases = Vec::with_capacity(requested.len());
    for scope in &requested {
        let (base, filter) = scope.split_once('!').unwrap_or((scope, ""));
        if !filter.is_empty() && filter != own_filter {
            return Err(HubError::BadRequest(format!(
                "!{filter} not allowed on sharing {scope}, only !{own_filter}"
            )));
        }
        if !grants_on_a_server(base) {
            return Err(HubError::BadRequest(format!(
                "scope `{base}` grants nothing on a server, so it cannot be shared: a share holds only !{own_filter}. Share scopes that act on a server: {}",
                SERVER_SCOPES.join(", ")
            )));
        }
        bases.push(base.to_string());
    }
    bases.sort();
    bases.dedup();
    Ok(bases)
}

/// One may only share what one holds on that server.
fn check_may_grant(
    held: &ParsedScopes,
    bases: &[String],
    owner: &str,
    server: &str,
    membership: &dyn GroupMembership,
) -> Result<(), HubError> {
    for base in bases {
        if !held.covers(base, &Target::Server(owner, server), membership) {
            return Err(HubError::Forbidden(format!(
                "Do not have permission to grant share with scope {base}!server={owner}/{server}"
            )));
        }
    }
    Ok(())
}

// ---- shares of a user or group (the grantee's view) ----

/// Whom a `/users/{name}/shared` or `/groups/{name}/shared` request is about.
#[derive(Clone, Copy)]
enum Grantees {
    Users,
    Groups,
}

impl Grantees {
    fn noun(self) -> &'static str {
        match self {
            Grantees::Users => "user",
            Grantees::Groups => "group",
        }
    }

    fn target(self, name: &str) -> Target<'_> {
        match self {
            Grantees::Users => Target::User(name),
            Grantees::Groups => Target::Group(name),
        }
    }

    /// The scope to read their shares, and the one to revoke them.
    fn scopes(self) -> (&'static str, &'static str) {
        match self {
            Grantees::Users => ("read:users:shares", "users:shares"),
            Grantees::Groups => ("read:groups:shares", "groups:shares"),
        }
    }

    /// The user or group named `name`, as a grantee; 404 if there is none.
    async fn named(self, state: &AppState, name: &str) -> Result<ShareWith, HubError> {
        match self {
            Grantees::Users => find_user(state, name)
                .await?
                .map(|user| ShareWith::User(user.id))
                .ok_or_else(|| HubError::NotFound(format!("No such user: {name}"))),
            Grantees::Groups => Ok(ShareWith::Group(
                super::groups::group_named(state, name).await?.id,
            )),
        }
    }

    /// The share of `owner/server` with `name`, or 404.
    async fn share(
        self,
        state: &AppState,
        name: &str,
        owner: &str,
        server: &str,
    ) -> Result<(ShareWith, Share), HubError> {
        let missing = || {
            HubError::NotFound(format!(
                "No such share for {} {name} on {owner}/{server}",
                self.noun()
            ))
        };
        let with = self.named(state, name).await.map_err(|e| match e {
            HubError::NotFound(_) => missing(),
            other => other,
        })?;
        let (_, server_row) = find_server(state, owner, server)
            .await?
            .ok_or_else(missing)?;
        let share = state
            .store
            .share(server_row.id, with)
            .await?
            .ok_or_else(missing)?;
        Ok((with, share))
    }
}

async fn list_grantee_shares(
    grantees: Grantees,
    state: AppState,
    me: identity::Identity,
    name: String,
    headers: HeaderMap,
    uri: Uri,
    query: PageQuery,
) -> Result<Response, HubError> {
    access::check(
        &state,
        &me.scopes,
        &[grantees.scopes().0],
        &grantees.target(&name),
    )
    .await?;
    let shares = match grantees.named(&state, &name).await? {
        ShareWith::User(id) => ShareQuery::SharedWithUser(id),
        ShareWith::Group(id) => ShareQuery::SharedWithGroup(id),
    };
    share_list(&state, shares, &headers, &uri, &query).await
}

async fn get_grantee_share(
    grantees: Grantees,
    state: AppState,
    me: identity::Identity,
    path: GranteePath,
) -> Result<Response, HubError> {
    let GranteePath {
        name,
        owner,
        server,
    } = path;
    access::check(
        &state,
        &me.scopes,
        &[grantees.scopes().0],
        &grantees.target(&name),
    )
    .await?;
    let (_, share) = grantees.share(&state, &name, &owner, &server).await?;
    let model = share_model(&state, &share, &mut ReadyCache::default()).await?;
    Ok(Json(model).into_response())
}

async fn revoke_grantee_share(
    grantees: Grantees,
    state: AppState,
    me: identity::Identity,
    path: GranteePath,
) -> Result<Response, HubError> {
    let GranteePath {
        name,
        owner,
        server,
    } = path;
    access::check(
        &state,
        &me.scopes,
        &[grantees.scopes().1],
        &grantees.target(&name),
    )
    .await?;
    let (with, share) = grantees.share(&state, &name, &owner, &server).await?;
    state
        .store
        .revoke_share(share.server.id, with, None)
        .await?;
    tracing::info!(caller = %caller_name(&me), grantee = %format!("{} {name}", grantees.noun()), server = %format!("{owner}/{server}"), "share revoked by grantee side");
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn user_shares(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    Args(query): Args<PageQuery>,
) -> Result<Response, HubError> {
    list_grantee_shares(Grantees::Users, state, me, name, headers, uri, query).await
}

async fn group_shares(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    Args(query): Args<PageQuery>,
) -> Result<Response, HubError> {
    list_grantee_shares(Grantees::Groups, state, me, name, headers, uri, query).await
}

async fn user_share(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(path): Path<GranteePath>,
) -> Result<Response, HubError> {
    get_grantee_share(Grantees::Users, state, me, path).await
}

async fn group_share(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(path): Path<GranteePath>,
) -> Result<Response, HubError> {
    get_grantee_share(Grantees::Groups, state, me, path).await
}

async fn revoke_user_share(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(path): Path<GranteePath>,
) -> Result<Response, HubError> {
    revoke_grantee_share(Grantees::Users, state, me, path).await
}

async fn revoke_group_share(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(path): Path<GranteePath>,
) -> Result<Response, HubError> {
    revoke_grantee_share(Grantees::Groups, state, me, path).await
}

async fn no_server(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(owner): Path<String>,
) -> Result<Response, HubError> {
    access::check(&state, &me.scopes, &["shares"], &Target::User(&owner)).await?;
    Err(HubError::MethodNotAllowed(
        "Only GET is supported without a server name".into(),
    ))
}

async fn owner_shares(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(owner): Path<String>,
    headers: HeaderMap,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    Args(query): Args<PageQuery>,
) -> Result<Response, HubError> {
    access::check(&state, &me.scopes, &["read:shares"], &Target::User(&owner)).await?;
    let user = find_user(&state, &owner)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("No such user: {owner}")))?;
    share_list(&state, ShareQuery::Owner(user.id), &headers, &uri, &query).await
}

async fn list_server_shares(
    state: AppState,
    me: identity::Identity,
    owner: String,
    server: String,
    headers: HeaderMap,
    uri: Uri,
    query: PageQuery,
) -> Result<Response, HubError> {
    access::check(
        &state,
        &me.scopes,
        &["read:shares"],
        &Target::Server(&owner, &server),
    )
    .await?;
    let (_, server_row) = server_or_404(&state, &owner, &server).await?;
    share_list(
        &state,
        ShareQuery::Server(server_row.id),
        &headers,
        &uri,
        &query,
    )
    .await
}

async fn server_shares(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(ServerPath { owner, server }): Path<ServerPath>,
    headers: HeaderMap,
    uri: Uri,
    Args(query): Args<PageQuery>,
) -> Result<Response, HubError> {
    list_server_shares(state, me, owner, server, headers, uri, query).await
}

/// `POST`/`PATCH /shares/{owner}/{server}`: exactly one of `user` and `group`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareRequest {
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    group: Option<String>,
}

enum Whom {
    User(String),
    Group(String),
}

impl ShareRequest {
    fn whom(&self) -> Result<Whom, HubError> {
        match (&self.user, &self.group) {
            (Some(_), Some(_)) => Err(HubError::BadRequest(
                "Expected exactly one of `user` or `group`, not both.".into(),
            )),
            (Some(user), None) => Ok(Whom::User(user.clone())),
            (None, Some(group)) => Ok(Whom::Group(group.clone())),
            (None, None) => Err(HubError::BadRequest(
                "Specify exactly one of `user` or `group`".into(),
            )),
        }
    }
}

fn share_request(body: &Bytes) -> Result<(ShareRequest, Whom), HubError> {
    let request = parse_body::<ShareRequest>(body)?.unwrap_or(ShareRequest {
        scopes: None,
        user: None,
        group: None,
    });
    let whom = request.whom()?;
    Ok((request, whom))
}

async fn grant_share(
    state: AppState,
    me: identity::Identity,
    owner: String,
    server: String,
    body: Bytes,
) -> Result<Response, HubError> {
    access::check(
        &state,
        &me.scopes,
        &["shares"],
        &Target::Server(&owner, &server),
    )
    .await?;
    let (request, whom) = share_request(&body)?;
    let bases = share_bases(request.scopes.as_deref(), &owner, &server)?;
    let (owner_user, server_row) = server_or_404(&state, &owner, &server).await?;
    let held = me.scopes.parsed();
    check_may_grant(
        held,
        &bases,
        &owner,
        &server,
        &membership_of(&state, &owner_user).await?,
    )?;
    let with = match &whom {
        Whom::User(name) => {
            let grantee = find_user(&state, name).await?;
            let membership = match &grantee {
                Some(user) => membership_of(&state, user).await?,
                None => Membership::new(),
            };
            if !held.covers("read:users:name", &Target::User(name), &membership) {
                return Err(HubError::Forbidden(
                    "Need scope 'read:users:name' to share with users by name".into(),
                ));
            }
            let grantee =
                grantee.ok_or_else(|| HubError::BadRequest(format!("No such user: {name}")))?;
            ShareWith::User(grantee.id)
        }
        Whom::Group(name) => {
            if !held.covers(
                "read:groups:name",
                &Target::Group(name),
                &hubfleet_rbac::NoGroups,
            ) {
                return Err(HubError::Forbidden(
                    "Need scope 'read:groups:name' to share with groups by name".into(),
                ));
            }
            let group = state
                .store
                .group(name)
                .await?
                .ok_or_else(|| HubError::BadRequest(format!("No such group: {name}")))?;
            ShareWith::Group(group.id)
        }
    };
    let share = state.store.grant_share(server_row.id, with, &bases).await?;
    tracing::info!(caller = %caller_name(&me), server = %format!("{owner}/{server}"), with = ?share.with, scopes = ?share.scopes, "shared a server");
    let model = share_model(&state, &share, &mut ReadyCache::default()).await?;
    Ok(Json(model).into_response())
}

async fn grant(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(ServerPath { owner, server }): Path<ServerPath>,
    body: Bytes,
) -> Result<Response, HubError> {
    grant_share(state, me, owner, server, body).await
}

async fn revoke_share(
    state: AppState,
    me: identity::Identity,
    owner: String,
    server: String,
    body: Bytes,
) -> Result<Response, HubError> {
    access::check(
        &state,
        &me.scopes,
        &["shares"],
        &Target::Server(&owner, &server),
    )
    .await?;
    let (request, whom) = share_request(&body)?;
    // Scopes with another server's filter match nothing of this share.
    let own_filter = format!("server={owner}/{server}");
    let scopes: Option<Vec<String>> = request.scopes.filter(|s| !s.is_empty()).map(|scopes| {
        scopes
            .into_iter()
            .filter(|s| s.split_once('!').is_none_or(|(_, f)| f == own_filter))
            .collect()
    });
    let (_, server_row) = server_or_404(&state, &owner, &server).await?;
    let with = match &whom {
        Whom::User(name) => find_user(&state, name)
            .await?
            .map(|u| ShareWith::User(u.id)),
        Whom::Group(name) => state
            .store
            .group(name)
            .await?
            .map(|g| ShareWith::Group(g.id)),
    };
    let Some(with) = with else {
        // No such user or group: nothing to revoke.
        return Ok(Json(json!({})).into_response());
    };
    let left = match scopes {
        Some(scopes) if scopes.is_empty() => state.store.share(server_row.id, with).await?,
        scopes => {
            state
                .store
                .revoke_share(server_row.id, with, scopes.as_deref())
                .await?
        }
    };
    tracing::info!(caller = %caller_name(&me), server = %format!("{owner}/{server}"), ?with, "revoked share scopes");
    match left {
        Some(share) => {
            let model = share_model(&state, &share, &mut ReadyCache::default()).await?;
            Ok(Json(model).into_response())
        }
        None => Ok(Json(json!({})).into_response()),
    }
}

async fn revoke(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(ServerPath { owner, server }): Path<ServerPath>,
    body: Bytes,
) -> Result<Response, HubError> {
    revoke_share(state, me, owner, server, body).await
}

async fn delete_all_shares(
    state: AppState,
    me: identity::Identity,
    owner: String,
    server: String,
) -> Result<Response, HubError> {
    access::check(
        &state,
        &me.scopes,
        &["shares"],
        &Target::Server(&owner, &server),
    )
    .await?;
    let (_, server_row) = server_or_404(&state, &owner, &server).await?;
    let deleted = state.store.delete_server_shares(server_row.id).await?;
    tracing::info!(caller = %caller_name(&me), server = %format!("{owner}/{server}"), deleted, "deleted all shares");
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn delete_shares(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(ServerPath { owner, server }): Path<ServerPath>,
) -> Result<Response, HubError> {
    delete_all_shares(state, me, owner, server).await
}

// ---- share codes ----

async fn owner_codes(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(owner): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    Args(query): Args<PageQuery>,
) -> Result<Response, HubError> {
    access::check(&state, &me.scopes, &["read:shares"], &Target::User(&owner)).await?;
    let user = find_user(&state, &owner)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("No such user: {owner}")))?;
    code_list(
        &state,
        ShareCodeQuery::Owner(user.id),
        &headers,
        &uri,
        &query,
    )
    .await
}

async fn list_server_codes(
    state: AppState,
    me: identity::Identity,
    owner: String,
    server: String,
    headers: HeaderMap,
    uri: Uri,
    query: PageQuery,
) -> Result<Response, HubError> {
    access::check(
        &state,
        &me.scopes,
        &["read:shares"],
        &Target::Server(&owner, &server),
    )
    .await?;
    let (_, server_row) = server_or_404(&state, &owner, &server).await?;
    code_list(
        &state,
        ShareCodeQuery::Server(server_row.id),
        &headers,
        &uri,
        &query,
    )
    .await
}

async fn server_codes(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(ServerPath { owner, server }): Path<ServerPath>,
    headers: HeaderMap,
    uri: Uri,
    Args(query): Args<PageQuery>,
) -> Result<Response, HubError> {
    list_server_codes(state, me, owner, server, headers, uri, query).await
}

/// Codes last between a minute and a year; a day unless asked otherwise.
const CODE_MIN_SECONDS: i64 = 60;
const CODE_MAX_SECONDS: i64 = 525_600 * 60;
const CODE_DEFAULT_SECONDS: i64 = 86_400;

fn default_expires_in() -> i64 {
    CODE_DEFAULT_SECONDS
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeRequest {
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default = "default_expires_in")]
    expires_in: i64,
}

async fn create_share_code(
    state: AppState,
    me: identity::Identity,
    owner: String,
    server: String,
    body: Bytes,
) -> Result<Response, HubError> {
    access::check(
        &state,
        &me.scopes,
        &["shares"],
        &Target::Server(&owner, &server),
    )
    .await?;
    let request = parse_body::<CodeRequest>(&body)?.unwrap_or(CodeRequest {
        scopes: None,
        expires_in: CODE_DEFAULT_SECONDS,
    });
    if !(CODE_MIN_SECONDS..=CODE_MAX_SECONDS).contains(&request.expires_in) {
        return Err(HubError::BadRequest(format!(
            "expires_in must be between {CODE_MIN_SECONDS} and {CODE_MAX_SECONDS} seconds, not {}",
            request.expires_in
        )));
    }
    let bases = share_bases(request.scopes.as_deref(), &owner, &server)?;
    let (owner_user, server_row) = server_or_404(&state, &owner, &server).await?;
    check_may_grant(
        me.scopes.parsed(),
        &bases,
        &owner,
        &server,
        &membership_of(&state, &owner_user).await?,
    )?;
    let expires_at = Utc::now() + Duration::seconds(request.expires_in);
    let (code, secret) = state
        .store
        .create_share_code(server_row.id, &bases, expires_at)
        .await?;
    tracing::info!(caller = %caller_name(&me), server = %format!("{owner}/{server}"), id = code.id, "created share code");
    let model = code_model(&state, &code, Some(&secret), &mut ReadyCache::default()).await?;
    Ok(Json(model).into_response())
}

async fn create_code(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(ServerPath { owner, server }): Path<ServerPath>,
    body: Bytes,
) -> Result<Response, HubError> {
    create_share_code(state, me, owner, server, body).await
}

#[derive(Deserialize, Default)]
struct CodeSelector {
    code: Option<String>,
    id: Option<String>,
}

/// `sc_<n>` → `n`.
fn parse_code_id(id: &str) -> Option<i64> {
    let digits = id.strip_prefix("sc_")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

async fn delete_share_codes(
    state: AppState,
    me: identity::Identity,
    owner: String,
    server: String,
    selector: CodeSelector,
) -> Result<Response, HubError> {
    access::check(
        &state,
        &me.scopes,
        &["shares"],
        &Target::Server(&owner, &server),
    )
    .await?;
    let (_, server_row) = server_or_404(&state, &owner, &server).await?;
    let which = format!("{owner}/{server}");
    if let Some(code) = selector.code.filter(|c| !c.is_empty()) {
        if !state.store.delete_share_code(server_row.id, &code).await? {
            return Err(HubError::NotFound("No matching code found".into()));
        }
        tracing::info!(caller = %caller_name(&me), server = %which, "deleted a share code");
    } else if let Some(id) = selector.id.filter(|c| !c.is_empty()) {
        let not_found = || HubError::NotFound(format!("No code found matching id={id}"));
        let number = parse_code_id(&id).ok_or_else(not_found)?;
        if !state
            .store
            .delete_share_code_by_id(server_row.id, number)
            .await?
        {
            return Err(not_found());
        }
        tracing::info!(caller = %caller_name(&me), server = %which, %id, "deleted a share code");
    } else {
        let deleted = state.store.delete_server_share_codes(server_row.id).await?;
        tracing::info!(caller = %caller_name(&me), server = %which, deleted, "deleted all share codes");
    }
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn delete_codes(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(ServerPath { owner, server }): Path<ServerPath>,
    Args(selector): Args<CodeSelector>,
) -> Result<Response, HubError> {
    delete_share_codes(state, me, owner, server, selector).await
}

// ---- the accept-share page ----

#[derive(Deserialize, Default)]
struct AcceptQuery {
    code: Option<String>,
    next: Option<String>,
}

/// Where to go after accepting: a safe `next`, else the shared server.
fn next_url(next: Option<&str>, server: &hubfleet_store::SharedServer) -> String {
    next.and_then(urls::safe_next)
        .unwrap_or_else(|| urls::server_prefix(&server.owner, &server.name))
}

/// What each scope of a code allows, for the confirmation page.
fn describe_scopes(scopes: &[String]) -> Vec<Value> {
    scopes
        .iter()
        .map(|scope| {
            let (base, filter) = scope.split_once('!').unwrap_or((scope, ""));
            let description = hubfleet_rbac::scope_definition(base)
                .map(|d| d.description.to_string())
                .unwrap_or_else(|| base.to_string());
            let filter = filter
                .split_once('=')
                .map(|(kind, value)| format!("{kind} {value}"));
            json!({ "description": description, "filter": filter })
        })
        .collect()
}

async fn accept_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Args(query): Args<AcceptQuery>,
) -> Result<Response, HubError> {
    let Some(me) = identity::page_user(&state, &headers).await? else {
        let here = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/hub/home");
        return Ok(pages::login_redirect(here));
    };
    let Some(code) = query.code.filter(|c| !c.is_empty()) else {
        return Ok(pages::error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "Bad request",
            "Missing argument code",
            None,
        ));
    };
    let Some(share_code) = state.store.share_code(&code).await? else {
        return Ok(pages::error_page(
            &state,
            StatusCode::NOT_FOUND,
            "Not found",
            "Share not found or expired",
            None,
        ));
    };
    if share_code.server.owner_id == me.user.id {
        return Ok(pages::error_page(
            &state,
            StatusCode::FORBIDDEN,
            "Forbidden",
            "You can't share with yourself!",
            None,
        ));
    }
    let ready = ReadyCache::default()
        .ready(&state, &share_code.server)
        .await?;
    let (xsrf, set_cookie) = identity::xsrf_token(&state, &headers, me.session());
    let next = query.next.as_deref().and_then(urls::safe_next);
    let body = state.templates().render(
        "accept_share.html",
        minijinja::context! {
            user => me.user.name,
            owner => share_code.server.owner,
            server_name => share_code.server.name,
            server_url => state.settings().server_url(&share_code.server.owner, &share_code.server.name),
            ready,
            scopes => describe_scopes(&share_code.scopes),
            code,
            next,
            next_url => state.settings().browser_location(&next_url(query.next.as_deref(), &share_code.server)),
            xsrf,
        },
    );
    let mut response = (StatusCode::OK, Html(body)).into_response();
    if let Some(cookie) = set_cookie {
        response
            .headers_mut()
            .append(axum::http::header::SET_COOKIE, cookie);
    }
    Ok(response)
}

#[derive(Deserialize, Default)]
struct AcceptForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    next: Option<String>,
    #[serde(rename = "_xsrf", default)]
    xsrf: String,
}

async fn accept_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<AcceptForm>,
) -> Result<Response, HubError> {
    let page_error = |status: StatusCode, title: &str, message: &str| {
        pages::error_page(&state, status, title, message, None)
    };
    let Some(me) = identity::page_user(&state, &headers).await? else {
        return Ok(page_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "You must be logged in to accept a share.",
        ));
    };
    if !identity::xsrf_ok(&state, &headers, me.session(), Some(&form.xsrf)) {
        return Ok(page_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "The form expired or came from another site. Please try again.",
        ));
    }
    let invalid = || {
        page_error(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "Invalid share code: it is unknown or has expired.",
        )
    };
    let Some(share_code) = state.store.share_code(&form.code).await? else {
        return Ok(invalid());
    };
    if share_code.server.owner_id == me.user.id {
        return Ok(page_error(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "You can't share with yourself!",
        ));
    }
    let Some(share) = state
        .store
        .exchange_share_code(&form.code, me.user.id)
        .await?
    else {
        return Ok(invalid());
    };
    tracing::info!(user = %me.user.name, server = %format!("{}/{}", share.server.owner, share.server.name), "accepted a share code");
    Ok(pages::found(&state.settings().browser_location(&next_url(
        form.next.as_deref(),
        &share.server,
    ))))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn share_scopes_default_and_keep_only_this_servers_filter() {
        assert_eq!(share_bases(None, "ann", "").unwrap(), ["access:servers"]);
        assert_eq!(
            share_bases(Some(&[]), "ann", "gpu").unwrap(),
            ["access:servers"]
        );
        assert_eq!(
            share_bases(
                Some(&strings(&["read:servers!server=ann/gpu", "access:servers"])),
                "ann",
                "gpu"
            )
            .unwrap(),
            ["access:servers", "read:servers"]
        );
        let err =
            share_bases(Some(&strings(&["access:servers!server=bob/"])), "ann", "").unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(err.to_string().contains("only !server=ann/"), "{err}");
        let err = share_bases(Some(&strings(&["no-such-scope"])), "ann", "").unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn share_scopes_must_act_on_a_server() {
        for granting in SERVER_SCOPES {
            assert!(
                share_bases(Some(&strings(&[granting])), "ann", "").is_ok(),
                "{granting}"
            );
        }
        for nothing in [
            "tokens",
            "read:tokens",
            "users",
            "read:users",
            "admin:users",
            "self",
            "inherit",
            "read:hub",
            "access:services",
        ] {
            let err = share_bases(
                Some(&strings(&[&format!("{nothing}!server=ann/")])),
                "ann",
                "",
            )
            .unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{nothing}");
            assert!(
                err.to_string()
                    .contains(&format!("scope `{nothing}` grants nothing on a server")),
                "{err}"
            );
        }
    }

    #[test]
    fn granting_needs_the_scope_on_that_server() {
        let held = ParsedScopes::parse(BTreeSet::from([
            "access:servers!server=ann/".to_string(),
            "read:servers!user=ann".to_string(),
        ]));
        let none = Membership::new();
        assert!(check_may_grant(&held, &strings(&["access:servers"]), "ann", "", &none).is_ok());
        assert!(check_may_grant(&held, &strings(&["read:servers"]), "ann", "gpu", &none).is_ok());
        let err =
            check_may_grant(&held, &strings(&["access:servers"]), "ann", "gpu", &none).unwrap_err();
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
        assert!(check_may_grant(&held, &strings(&["admin:servers"]), "ann", "", &none).is_err());
    }

    #[test]
    fn request_bodies() {
        let (_, whom) = share_request(&Bytes::from_static(br#"{"user": "bob"}"#)).unwrap();
        assert!(matches!(whom, Whom::User(ref u) if u == "bob"));
        for bad in [
            &br#"{"user": "bob", "group": "g"}"#[..],
            br#"{}"#,
            b"",
            br#"{"user": "bob", "expires_in": 60}"#,
            br#"{"user": 3}"#,
            b"{not json",
        ] {
            let err = share_request(&Bytes::from_static(bad)).err().unwrap();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        }
        assert!(parse_body::<CodeRequest>(br#"{"expires_in": "x"}"#).is_err());
        assert!(parse_body::<CodeRequest>(br#"{"user": "x"}"#).is_err());
        let request = parse_body::<CodeRequest>(br#"{"scopes": []}"#)
            .unwrap()
            .unwrap();
        assert_eq!(request.expires_in, CODE_DEFAULT_SECONDS);
    }

    #[test]
    fn code_ids_and_next_urls() {
        assert_eq!(parse_code_id("sc_12"), Some(12));
        for bad in ["12", "sc_", "sc_1x", "sc_-1", "xsc_1"] {
            assert_eq!(parse_code_id(bad), None, "{bad}");
        }
        let server = hubfleet_store::SharedServer {
            id: 1,
            owner_id: 1,
            owner: "ann".into(),
            name: "gpu".into(),
        };
        assert_eq!(next_url(None, &server), "/user/ann/gpu/");
        assert_eq!(
            next_url(Some("https://evil.example/"), &server),
            "/user/ann/gpu/"
        );
        assert_eq!(
            next_url(Some("/user/ann/gpu/lab"), &server),
            "/user/ann/gpu/lab"
        );
    }

    #[test]
    fn scope_descriptions_name_the_server() {
        let described = describe_scopes(&strings(&["access:servers!server=ann/"]));
        assert_eq!(described[0]["filter"], "server ann/");
        assert!(!described[0]["description"].as_str().unwrap().is_empty());
    }
}
