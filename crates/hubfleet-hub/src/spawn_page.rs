//! The server-options page (`/hub/spawn` when `singleuser.profileList` is set): a card per
//! profile the user's groups allow, a select per option, a free-text field for an unlisted
//! choice (checked as typed with the `pattern` attribute, and again by the hub). A plain form:
//! it works without JavaScript. The form fields are KubeSpawner's (`profile`,
//! `profile-option-<slug>--<option>`, `…--unlisted-choice`), so are the `user_options` made
//! from them.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Router};
use hubfleet_config::profiles::{format_bytes, format_cpu, Overrides, Profile};
use hubfleet_store::{Phase, User};
use minijinja::context;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::identity::{self, PageUser};
use crate::profiles::{self, unlisted_key, UNLISTED_CHOICE};
use crate::{urls, AppState, HubError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/hub/spawn", post(submit_mine))
        .route("/hub/spawn/{user}", post(submit_for))
        .route("/hub/spawn/{user}/{server}", post(submit_named))
}

#[derive(Deserialize, Default)]
pub struct NextQuery {
    next: Option<String>,
}

fn field(slug: &str, option: &str) -> String {
    format!("profile-option-{slug}--{option}")
}

/// "Memory 1G (guaranteed 512M) · CPU 2": what a profile's own overrides give.
fn resources(o: &Overrides) -> String {
    let mut parts = Vec::new();
    match (o.mem_limit.flatten(), o.mem_guarantee.flatten()) {
        (Some(l), Some(g)) if l != g => parts.push(format!(
            "Memory up to {} ({} guaranteed)",
            format_bytes(l),
            format_bytes(g)
        )),
        (Some(l), _) => parts.push(format!("Memory up to {}", format_bytes(l))),
        (None, Some(g)) => parts.push(format!("Memory {} guaranteed", format_bytes(g))),
        (None, None) => {}
    }
    match (o.cpu_limit.flatten(), o.cpu_guarantee.flatten()) {
        (Some(l), Some(g)) if l != g => parts.push(format!(
            "up to {} CPU ({} guaranteed)",
            format_cpu(l),
            format_cpu(g)
        )),
        (Some(l), _) => parts.push(format!("up to {} CPU", format_cpu(l))),
        (None, Some(g)) => parts.push(format!("{} CPU guaranteed", format_cpu(g))),
        (None, None) => {}
    }
    if let Some(image) = &o.image {
        parts.push(format!("environment {image}"));
    }
    parts.join(" · ")
}

/// The cards for `profiles`, with what `chosen` (earlier user options) selected.
fn cards(profiles: &[&Profile], groups: &[String], chosen: &Map<String, Value>) -> Vec<Value> {
    let chosen_text = |key: &str| chosen.get(key).and_then(Value::as_str).unwrap_or("");
    let selected_profile = match chosen_text("profile") {
        s if profiles.iter().any(|p| p.slug == s) => s.to_string(),
        _ => profiles::default_profile(profiles)
            .map(|p| p.slug.clone())
            .unwrap_or_default(),
    };
    profiles
        .iter()
        .map(|p| {
            let this = p.slug == selected_profile;
            let options: Vec<Value> = p
                .options
                .iter()
                .map(|(name, option)| {
                    let current = if this { chosen_text(name) } else { "" };
                    let default = profiles::default_choice(option, groups).unwrap_or("");
                    let pick = if option.choices.iter().any(|(k, _)| k == current) {
                        current
                    } else {
                        default
                    };
                    let unlisted = option.unlisted_choice.as_ref().filter(|u| u.enabled);
                    let unlisted_value = if this {
                        chosen_text(&unlisted_key(name))
                    } else {
                        ""
                    };
                    let unlisted_selected = unlisted.is_some()
                        && (current == UNLISTED_CHOICE
                            || option.choices.is_empty()
                            || (!unlisted_value.is_empty() && current.is_empty()));
                    let choices: Vec<Value> = option
                        .choices
                        .iter()
                        .filter(|(_, c)| profiles::choice_allowed(c, groups))
                        .map(|(key, c)| {
                            let name = if c.display_name.is_empty() {
                                key.clone()
                            } else {
                                c.display_name.clone()
                            };
                            let extra = if c.description.is_empty() {
                                resources(&c.kubespawner_override)
                            } else {
                                c.description.clone()
                            };
                            let label = if extra.is_empty() {
                                name
                            } else {
                                format!("{name} — {extra}")
                            };
                            serde_json::json!({
                                "key": key,
                                "label": label,
                                "selected": key == pick && !unlisted_selected,
                            })
                        })
                        .collect();
                    serde_json::json!({
                        "field": field(&p.slug, name),
                        "display_name": if option.display_name.is_empty() { name.clone() } else { option.display_name.clone() },
                        "choices": choices,
                        "unlisted_field": unlisted.map(|_| format!("{}--unlisted-choice", field(&p.slug, name))),
                        "unlisted_label": unlisted.map(|u| u.display_name_in_choices.clone().unwrap_or_else(|| if u.display_name.is_empty() { "Other…".into() } else { format!("Other: {}", u.display_name) })),
                        "unlisted_display_name": unlisted.map(|u| if u.display_name.is_empty() { "Other".into() } else { u.display_name.clone() }),
                        "unlisted_selected": unlisted_selected,
                        "unlisted_value": unlisted_value,
                        "pattern": unlisted.and_then(|u| u.validation_regex.as_deref()).map(html_pattern),
                        "message": unlisted.and_then(|u| u.validation_message.clone().or_else(|| (!u.description.is_empty()).then(|| u.description.clone()))),
                    })
                })
                .collect();
            serde_json::json!({
                "slug": p.slug,
                "display_name": p.display_name,
                "description": p.description,
                "resources": resources(&p.overrides),
                "checked": this,
                "options": options,
            })
        })
        .collect()
}

/// An HTML `pattern` matches the whole value; KubeSpawner's regex only its start. Drop a
/// leading `^` and allow anything after, unless the regex ends with `$`.
fn html_pattern(re: &str) -> String {
    let body = re.strip_prefix('^').unwrap_or(re);
    if body.ends_with('$') && !body.ends_with("\\$") {
        body[..body.len() - 1].to_string()
    } else {
        format!("(?:{body}).*")
    }
}

fn action(target: &str, me: &str, server_name: &str, next: Option<&str>) -> String {
    let mut url = if target == me && server_name.is_empty() {
        "/hub/spawn".to_string()
    } else {
        format!("/hub/spawn/{}", urls::escape_path(target))
    };
    if !server_name.is_empty() {
        url.push('/');
        url.push_str(&urls::escape_path(server_name));
    }
    if let Some(next) = next {
        url.push_str("?next=");
        url.extend(url::form_urlencoded::byte_serialize(next.as_bytes()));
    }
    url
}

#[allow(clippy::too_many_arguments)]
fn render(
    state: &AppState,
    headers: &HeaderMap,
    me: &PageUser,
    (target, server_name): (&User, &str),
    (profiles, groups): (&[&Profile], &[String]),
    chosen: &Map<String, Value>,
    next: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let (xsrf, set) = identity::xsrf_token(state, headers, me.session());
    let body = state.templates().render(
        "spawn_options.html",
        context! {
            target => target.name,
            server_name,
            profiles => cards(profiles, groups, chosen),
            xsrf,
            error,
            action => state.settings().with_base(&action(&target.name, &me.user.name, server_name, next)),
            ..crate::templates::nav(me)
        },
    );
    let mut response = (status, Html(body)).into_response();
    if let Some(cookie) = set {
        response
            .headers_mut()
            .append(axum::http::header::SET_COOKIE, cookie);
    }
    response
}

/// The options page as members of `groups` see it, for the admin panel's preview: nothing can
/// be started from it.
pub(crate) async fn preview(
    state: &AppState,
    headers: &HeaderMap,
    me: &PageUser,
    groups: &[String],
) -> Result<Response, HubError> {
    let options = crate::environments::spawn_options(&state.store, &state.settings()).await?;
    let visible = profiles::visible(&options, groups);
    let who = if groups.is_empty() {
        "people in no group".to_string()
    } else {
        format!("members of {}", groups.join(", "))
    };
    let (xsrf, set) = identity::xsrf_token(state, headers, me.session());
    let body = state.templates().render(
        "spawn_options.html",
        context! {
            target => me.user.name,
            server_name => "",
            profiles => cards(&visible, groups, &Map::new()),
            xsrf,
            preview => format!("Preview: the server options {who} see now. Nothing starts from this page."),
            action => "",
            ..crate::templates::nav(me)
        },
    );
    let mut response = (StatusCode::OK, Html(body)).into_response();
    if let Some(cookie) = set {
        response
            .headers_mut()
            .append(axum::http::header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// For `GET /hub/spawn[/<user>[/<server>]]`: the options form, when profiles are configured
/// and the server is stopped; `None` to go on with a plain start.
pub(crate) async fn options_form(
    state: &AppState,
    headers: &HeaderMap,
    me: &PageUser,
    target: &User,
    server_name: &str,
    next: Option<&str>,
) -> Result<Option<Response>, HubError> {
    let settings = state.settings();
    let options = crate::environments::spawn_options(&state.store, &settings).await?;
    if options.profiles.is_empty() {
        return Ok(None);
    }
    let server = state.store.server(target.id, server_name).await?;
    if server.as_ref().is_some_and(|s| s.phase != Phase::Stopped) {
        return Ok(None);
    }
    let groups = state.store.groups_of_user(target.id).await?;
    let visible = profiles::visible(&options, &groups);
    let chosen = server
        .as_ref()
        .and_then(|s| s.user_options.as_object().cloned())
        .unwrap_or_default();
    let next = next.and_then(urls::safe_next);
    Ok(Some(render(
        state,
        headers,
        me,
        (target, server_name),
        (&visible, &groups),
        &chosen,
        next.as_deref(),
        None,
        StatusCode::OK,
    )))
}

/// For `GET /hub/spawn…` that another site may have started: the same form with no options, only
/// a Start button (a POST with the XSRF token), so that nothing starts until the person says so.
pub(crate) async fn confirm_start(
    state: &AppState,
    headers: &HeaderMap,
    me: &PageUser,
    target: &User,
    server_name: &str,
    next: Option<String>,
) -> Result<Response, HubError> {
    let server = state.store.server(target.id, server_name).await?;
    if server.as_ref().is_some_and(|s| s.phase == Phase::Ready) {
        let url = state.settings().server_url(&target.name, server_name);
        return Ok(crate::pages::found(&url));
    }
    let next = next.as_deref().and_then(urls::safe_next);
    Ok(render(
        state,
        headers,
        me,
        (target, server_name),
        (&[], &[]),
        &Map::new(),
        next.as_deref(),
        None,
        StatusCode::OK,
    ))
}

/// KubeSpawner's `options_from_form`: the selected profile and its own fields only.
pub fn options_from_form(form: &[(String, String)]) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(profile) = form
        .iter()
        .find(|(k, _)| k == "profile")
        .map(|(_, v)| v.clone())
    else {
        return out;
    };
    let prefix = format!("profile-option-{profile}--");
    for (key, value) in form {
        if let Some(option) = key.strip_prefix(&prefix) {
            if !value.is_empty() {
                out.insert(option.to_string(), Value::String(value.trim().to_string()));
            }
        }
    }
    out.insert("profile".into(), Value::String(profile));
    out
}

async fn submit_mine(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<NextQuery>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, HubError> {
    submit(state, headers, uri, (None, ""), query.next, form).await
}

async fn submit_for(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<NextQuery>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, HubError> {
    submit(state, headers, uri, (Some(name), ""), query.next, form).await
}

async fn submit_named(
    State(state): State<AppState>,
    Path((name, server_name)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<NextQuery>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, HubError> {
    let target = (Some(name), server_name.as_str());
    submit(state, headers, uri, target, query.next, form).await
}

async fn submit(
    state: AppState,
    headers: HeaderMap,
    uri: Uri,
    (target, server_name): (Option<String>, &str),
    next: Option<String>,
    form: Vec<(String, String)>,
) -> Result<Response, HubError> {
    let Some(me) = identity::page_user(&state, &headers).await? else {
        let next = uri.path().to_string();
        return Ok(crate::pages::login_redirect(&next));
    };
    let xsrf = form
        .iter()
        .find(|(k, _)| k == "_xsrf")
        .map(|(_, v)| v.as_str());
    if !identity::xsrf_ok(&state, &headers, me.session(), xsrf) {
        return Ok(crate::pages::error_page(
            &state,
            StatusCode::FORBIDDEN,
            "Form expired",
            "Your form expired or came from another site. Go back, reload the page and try again.",
            None,
        ));
    }
    let user = match target {
        None => me.user.clone(),
        Some(name) => match named_target(&state, &me, &name, server_name).await {
            Ok(user) => user,
            Err(e) => {
                return Ok(crate::pages::error_page(
                    &state,
                    e.status(),
                    "Cannot start this server",
                    &e.to_string(),
                    None,
                ))
            }
        },
    };
    let chosen = options_from_form(&form);
    let next = next.as_deref().and_then(urls::safe_next);
    let groups = state.store.groups_of_user(user.id).await?;
    let options = &crate::environments::spawn_options(&state.store, &state.settings()).await?;
    if let Err(message) = profiles::resolve(options, &groups, &Value::Object(chosen.clone())) {
        tracing::info!(user = %user.name, %message, "server options refused");
        let visible = profiles::visible(options, &groups);
        return Ok(render(
            &state,
            &headers,
            &me,
            (&user, server_name),
            (&visible, &groups),
            &chosen,
            next.as_deref(),
            Some(&message),
            StatusCode::BAD_REQUEST,
        ));
    }
    let server = state.store.ensure_server(user.id, server_name).await?;
    if server.phase == Phase::Stopped {
        state
            .store
            .edit_server(server.id, None, None, Some(&Value::Object(chosen)))
            .await?;
    }
    crate::pages::spawn_page(state, user, server_name, next).await
}

/// The user whose server a form starts (yourself, or anyone for an admin), and for a named
/// server, that it may be created.
async fn named_target(
    state: &AppState,
    me: &PageUser,
    name: &str,
    server_name: &str,
) -> Result<User, HubError> {
    let user = crate::pages::target_user(state, me, name).await?;
    if !server_name.is_empty() {
        crate::api::users::admit_named_server(state, &user, server_name).await?;
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_to_user_options() {
        let form: Vec<(String, String)> = [
            ("_xsrf", "x"),
            ("profile", "byo"),
            ("profile-option-byo--image", "unlisted_choice"),
            ("profile-option-byo--image--unlisted-choice", " py-3 "),
            ("profile-option-small--image", "one"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let o = options_from_form(&form);
        assert_eq!(
            Value::Object(o),
            serde_json::json!({"profile": "byo", "image": "unlisted_choice", "image--unlisted-choice": "py-3"})
        );
        assert!(options_from_form(&[]).is_empty());
    }

    #[test]
    fn patterns() {
        assert_eq!(html_pattern("^.+:.+$"), ".+:.+");
        assert_eq!(html_pattern("^pangeo/"), "(?:pangeo/).*");
        assert_eq!(html_pattern("a\\$"), "(?:a\\$).*");
    }
}
