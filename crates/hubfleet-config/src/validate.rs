//! Checks that involve more than one key, run after the document has been deserialized.

use std::fmt::Display;

use crate::error::ConfigError;
use crate::load::{Ctx, Findings};
use crate::locate::KeyPath;
use crate::model::{AuthenticatorKind, CullerKind, DbType};
use crate::HubConfig;

const AUTH_CLASS: &str = "hub.config.JupyterHub.authenticator_class";
const SHARED: &str = "hub.config.SharedPasswordAuthenticator";

/// Validate `config` (read from the text behind `ctx`): every problem and warning goes to `f`.
pub(crate) fn validate(config: &HubConfig, ctx: &Ctx<'_>, f: &mut Findings) {
    f.check(check_db(config, ctx));
    check_auth(config, ctx, f);
    check_services(config, ctx, f);
    check_roles(config, ctx, f);
    check_named_servers(config, ctx, f);
    check_hub_settings(config, ctx, f);
    check_cull(config, ctx, f);
    crate::profiles::check(config, ctx, f);
    crate::https::check(config, ctx, f);
    crate::dask::check(config, ctx, f);
    crate::binder::check(config, ctx, f);
}

/// `prefix` (dotted, no user-chosen names) followed by `keys` taken literally.
fn path(prefix: &str, keys: &[&str]) -> KeyPath {
    keys.iter()
        .fold(KeyPath::parse(prefix), |path, key| path.child(key))
}

/// Service names: letters, digits, `-`, `_` and `.`.
pub(crate) fn valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Role names, as JupyterHub checks them: `^[a-z][a-z0-9\-_~\.]{1,253}[a-z0-9]$`.
pub(crate) fn valid_role_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let n = bytes.len();
    (3..=255).contains(&n)
        && bytes[0].is_ascii_lowercase()
        && bytes[1..n - 1].iter().all(|&b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'~' | b'.')
        })
        && (bytes[n - 1].is_ascii_lowercase() || bytes[n - 1].is_ascii_digit())
}

/// The explicit `name` of an entry keyed by name must repeat the key.
fn check_name_matches(
    ctx: &Ctx<'_>,
    section: &str,
    key: &str,
    name: Option<&str>,
) -> Result<(), ConfigError> {
    match name {
        Some(name) if name != key => Err(ctx.at_key_path(
            &path(section, &[key, "name"]),
            format!(
                "is `{name}` but the entry is keyed `{key}`; the key is the name: remove `name` or rename the key to `{name}`"
            ),
        )),
        _ => Ok(()),
    }
}

fn check_names_in_list(
    ctx: &Ctx<'_>,
    section: &str,
    key: &str,
    field: &str,
    list: &[String],
    what: &str,
) -> Result<(), ConfigError> {
    match list.iter().position(|s| s.trim().is_empty()) {
        Some(i) => {
            let mut p = path(section, &[key, field]);
            p.0.push(crate::locate::Seg::Index(i));
            Err(ctx.at_key_path(&p, format!("is an empty {what}")))
        }
        None => Ok(()),
    }
}

const SERVICES: &str = "hub.services";

fn check_services(config: &HubConfig, ctx: &Ctx<'_>, f: &mut Findings) {
    for (key, service) in &config.hub.services {
        let result = check_service(key, service, ctx, &mut f.warnings);
        f.check(result);
    }
}

fn check_service(
    key: &str,
    service: &crate::ServiceConfig,
    ctx: &Ctx<'_>,
    warnings: &mut Vec<crate::ConfigWarning>,
) -> Result<(), ConfigError> {
    let at = |field: &[&str], msg: &dyn Display| {
        let mut keys = vec![key];
        keys.extend_from_slice(field);
        ctx.at_key_path(&path(SERVICES, &keys), msg)
    };
    if !valid_service_name(key) {
        return Err(at(
            &[],
            &format!("`{key}` is not a valid service name; use letters, digits, `-`, `_` and `.`"),
        ));
    }
    check_name_matches(ctx, SERVICES, key, service.name.as_deref())?;
    let snake = path(SERVICES, &[key, "api_token"]);
    let camel = path(SERVICES, &[key, "apiToken"]);
    if ctx.has_key_path(&snake) && ctx.has_key_path(&camel) {
        return Err(at(
            &["apiToken"],
            &format!(
                "is set and so is `api_token` ({}); they are two spellings of the same setting: keep only one",
                ctx.place_of(&snake)
            ),
        ));
    }
    if let Some(token) = service.api_token.as_deref() {
        let field = if ctx.has_key_path(&camel) {
            "apiToken"
        } else {
            "api_token"
        };
        // Never echo the token.
        if token.chars().count() < 8 {
            return Err(at(&[field], &"must be at least 8 characters long"));
        }
    }
    if let Some(id) = service.oauth_client_id.as_deref() {
        if !id.starts_with("service-") || id.len() == "service-".len() {
            return Err(at(
                &["oauth_client_id"],
                &format!("`{id}` must start with `service-` (e.g. `service-{key}`)"),
            ));
        }
    }
    for (field, set) in [
        ("cwd", service.cwd.is_some()),
        ("environment", !service.environment.is_empty()),
    ] {
        if set && service.command.is_none() {
            warnings.push(ctx.warning_at(
                &path(SERVICES, &[key, field]),
                "has no effect: only a service the hub starts (one with a `command`) uses it",
            ));
        }
    }
    Ok(())
}

const ROLES: &str = "hub.loadRoles";

fn check_roles(config: &HubConfig, ctx: &Ctx<'_>, f: &mut Findings) {
    for (key, role) in &config.hub.load_roles {
        f.check(check_role(key, role, ctx));
    }
}

fn check_role(key: &str, role: &crate::RoleConfig, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    if !valid_role_name(key) {
        return Err(ctx.at_key_path(
            &path(ROLES, &[key]),
            format!(
                "`{key}` is not a valid role name: it must be 3 to 255 characters, start with a lowercase letter, end with a lowercase letter or digit, and contain only lowercase letters, digits, `-`, `_`, `~` and `.`"
            ),
        ));
    }
    check_name_matches(ctx, ROLES, key, role.name.as_deref())?;
    for (field, list, what) in [
        ("users", &role.users, "username"),
        ("groups", &role.groups, "group name"),
        ("services", &role.services, "service name"),
    ] {
        check_names_in_list(ctx, ROLES, key, field, list, what)?;
    }
    Ok(())
}

const ALLOW_Z2JH: &str = "hub.allowNamedServers";
const ALLOW_UPSTREAM: &str = "hub.config.JupyterHub.allow_named_servers";
const LIMIT_Z2JH: &str = "hub.namedServerLimitPerUser";
const LIMIT_UPSTREAM: &str = "hub.config.JupyterHub.named_server_limit_per_user";

/// A setting with a z2jh spelling (`hub.allowNamedServers`) and upstream's
/// (`hub.config.JupyterHub.allow_named_servers`): both may be given only with the same value.
fn spellings_agree<T: PartialEq + Display>(
    ctx: &Ctx<'_>,
    z2jh: (&str, Option<T>),
    upstream: (&str, Option<T>),
) -> Result<(), ConfigError> {
    match (z2jh.1, upstream.1) {
        (Some(a), Some(b)) if a != b => Err(ctx.at_key(
            z2jh.0,
            format!(
                "is `{a}` but `{}` ({}) is `{b}`; they are two spellings of the same setting: keep only one",
                upstream.0,
                ctx.place_of(&KeyPath::parse(upstream.0))
            ),
        )),
        _ => Ok(()),
    }
}

fn check_named_servers(config: &HubConfig, ctx: &Ctx<'_>, f: &mut Findings) {
    let hub = &config.hub;
    let jh = &hub.config.jupyterhub;
    f.check(spellings_agree(
        ctx,
        (ALLOW_Z2JH, hub.allow_named_servers),
        (ALLOW_UPSTREAM, jh.allow_named_servers),
    ));
    f.check(spellings_agree(
        ctx,
        (LIMIT_Z2JH, hub.named_server_limit_per_user),
        (LIMIT_UPSTREAM, jh.named_server_limit_per_user),
    ));
    if config.named_server_limit_per_user() > 0 && !config.allow_named_servers() {
        let key = if hub.named_server_limit_per_user.is_some() {
            LIMIT_Z2JH
        } else {
            LIMIT_UPSTREAM
        };
        f.warn(ctx.warning(
            key,
            format!("has no effect: named servers are not allowed (set `{ALLOW_Z2JH}: true`)"),
        ));
    }
}

const LOAD_GROUPS: &str = "hub.config.JupyterHub.load_groups";

/// `hub.extraEnv`, `load_groups`, `admin_access` and the settings with two spellings.
fn check_hub_settings(config: &HubConfig, ctx: &Ctx<'_>, f: &mut Findings) {
    let hub = &config.hub;
    let jh = &hub.config.jupyterhub;
    for (z2jh, upstream, a, b) in [
        (
            "hub.redirectToServer",
            "hub.config.JupyterHub.redirect_to_server",
            hub.redirect_to_server,
            jh.redirect_to_server,
        ),
        (
            "hub.shutdownOnLogout",
            "hub.config.JupyterHub.shutdown_on_logout",
            hub.shutdown_on_logout,
            jh.shutdown_on_logout,
        ),
        (
            "hub.authenticatePrometheus",
            "hub.config.JupyterHub.authenticate_prometheus",
            hub.authenticate_prometheus,
            jh.authenticate_prometheus,
        ),
    ] {
        f.check(spellings_agree(ctx, (z2jh, a), (upstream, b)));
    }
    for (z2jh, upstream, a, b) in [
        (
            "hub.concurrentSpawnLimit",
            "hub.config.JupyterHub.concurrent_spawn_limit",
            hub.concurrent_spawn_limit,
            jh.concurrent_spawn_limit,
        ),
        (
            "hub.activeServerLimit",
            "hub.config.JupyterHub.active_server_limit",
            hub.active_server_limit,
            jh.active_server_limit,
        ),
    ] {
        f.check(spellings_agree(ctx, (z2jh, a), (upstream, b)));
    }
    let rate = &config.hubfleet.api_rate_limit;
    if rate.per_second > 0 && rate.burst == 0 {
        f.check(Err(ctx.at_key(
            "hubfleet.api_rate_limit.burst",
            "is 0, which refuses every API request of every user; set it to at least 1 (or `per_second: 0` for no limit)",
        )));
    }

    let env = &hub.extra_env;
    if !env.from_kubernetes.is_empty() {
        f.warn(ctx.warning(
            "hub.extraEnv",
            format!(
                "{} not set: `valueFrom` reads from Kubernetes objects (secrets, config maps, pod fields); applies once hubfleet runs on Kubernetes. Give a literal `value` to use it here",
                backticked_list(&env.from_kubernetes)
            ),
        ));
    }
    let unused: Vec<String> = env
        .vars
        .keys()
        .filter(|name| {
            !crate::HUB_ENV_READ.contains(&name.as_str())
                && !crate::HUB_ENV_KEPT.contains(&name.as_str())
        })
        .cloned()
        .collect();
    if !unused.is_empty() {
        f.warn(ctx.warning(
            "hub.extraEnv",
            format!(
                "{} has no effect: hubfleet reads only {} from its environment, and passes on only {} to servers and services, as upstream (on z2jh such variables usually serve `hub.extraConfig` code, which does not run here). Put what servers need in `singleuser.extraEnv` and what a service needs in `hub.services.<name>.environment`",
                backticked_list(&unused),
                backticked_list(crate::HUB_ENV_READ),
                backticked_list(crate::HUB_ENV_KEPT),
            ),
        ));
    }

    let chp = &hub.config.configurable_http_proxy;
    if chp.api_url.is_some() && chp.should_start == Some(true) {
        f.error(ctx.at_key(
            "hub.config.ConfigurableHTTPProxy.should_start",
            "hubfleet serve does not start a proxy: run it yourself (`hubfleet proxy`, or configurable-http-proxy) and set `should_start: false`, or remove `api_url` to use the proxy built into the hub",
        ));
    }
    if chp.api_url.is_none() && (chp.auth_token.is_some() || chp.should_start.is_some()) {
        f.warn(ctx.warning(
            "hub.config.ConfigurableHTTPProxy",
            "has no effect without `api_url`: the hub serves users' servers through its built-in proxy",
        ));
    }

    if let Some(admin_access) = jh.admin_access {
        let what = if admin_access {
            "admins reach users' servers anyway"
        } else {
            "it does not keep admins out of users' servers"
        };
        f.warn(ctx.warning(
            "hub.config.JupyterHub.admin_access",
            format!(
                "has no effect ({what}): deprecated since JupyterHub 2.0, access to servers comes from scopes; the `admin` role has `access:servers`. To give some people less, make them a role in `hub.loadRoles` instead of admins"
            ),
        ));
    }

    let groups = &jh.load_groups;
    if !groups.is_empty() && config.auth_settings().manage_groups {
        f.error(ctx.at_key(
            LOAD_GROUPS,
            "cannot be used with `manage_groups: true`: the authenticator decides every user's groups then (as upstream, which refuses to start). Remove `load_groups`, or turn off `manage_groups`",
        ));
    }
    for (name, group) in groups {
        let at = path(LOAD_GROUPS, &[name]);
        if name.trim().is_empty() {
            f.error(ctx.at_key_path(&at, "is an empty group name"));
        }
        if let Some(i) = group.users.iter().position(|u| u.trim().is_empty()) {
            let mut item = at.child("users");
            if group.list_form {
                item = at.clone();
            }
            item.0.push(crate::locate::Seg::Index(i));
            f.error(ctx.at_key_path(&item, "is an empty username"));
        }
        if group.list_form {
            f.warn(ctx.warning_at(
                &at,
                "the list form `group: [users]` is deprecated (since JupyterHub 3.2); write `group: {users: [...]}`",
            ));
        }
    }
}

/// `` `A`, `B` `` for messages.
fn backticked_list<S: AsRef<str>>(names: &[S]) -> String {
    names
        .iter()
        .map(|n| format!("`{}`", n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_cull(config: &HubConfig, ctx: &Ctx<'_>, f: &mut Findings) {
    let cull = &config.cull;
    for (key, value) in [
        ("cull.timeout", cull.timeout),
        ("cull.every", cull.every),
        ("cull.concurrency", u64::from(cull.concurrency)),
    ] {
        if value == 0 {
            f.error(ctx.at_key(key, "must be at least 1"));
        }
    }
    if !cull.enabled && config.hubfleet.culler != CullerKind::Auto && ctx.has_key("hubfleet.culler")
    {
        f.warn(ctx.warning("hubfleet.culler", "has no effect: `cull.enabled` is false"));
    }
}

/// The scheme of a URL without SQLAlchemy's `+driver` suffix (`postgresql+psycopg2` → `postgresql`).
pub(crate) fn base_scheme(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once(':')?;
    Some(scheme.split('+').next().unwrap_or(scheme))
}

fn check_db(config: &HubConfig, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    let db = &config.hub.db;
    match (db.kind, db.url.as_deref()) {
        (DbType::Postgres, None) => Err(ctx.at_key(
            if ctx.has_key("hub.db.type") { "hub.db.type" } else { "hub.db" },
            "`postgres` needs `hub.db.url`, e.g. `postgresql://user:password@db.example.org:5432/hubfleet`",
        )),
        (DbType::Postgres, Some(url)) => match base_scheme(url) {
            Some("postgres" | "postgresql") if url.contains("://") => Ok(()),
            // Never echo the URL: it may hold a password.
            _ => Err(ctx.at_key(
                "hub.db.url",
                "is not a PostgreSQL URL; expected `postgresql://user:password@host:5432/dbname` (SQLAlchemy's `postgresql+psycopg2://` is accepted too)",
            )),
        },
        (DbType::SqlitePvc, Some(url)) => {
            if url.starts_with("sqlite:") {
                if crate::split_sqlite_url(url).0.is_empty() {
                    return Err(ctx.at_key(
                        "hub.db.url",
                        "names no database file; expected e.g. `sqlite:///var/lib/hubfleet/hub.sqlite`",
                    ));
                }
                Ok(())
            } else {
                Err(ctx.at_key(
                    "hub.db.url",
                    "with `hub.db.type: sqlite-pvc` the URL must start with `sqlite:`, e.g. `sqlite:///var/lib/hubfleet/hub.sqlite`; remove it to use `<data_dir>/hubfleet.sqlite`",
                ))
            }
        }
        (DbType::SqliteMemory, Some(_)) => Err(ctx.at_key(
            "hub.db.url",
            "is not used with `hub.db.type: sqlite-memory`; remove it",
        )),
        (DbType::SqlitePvc | DbType::SqliteMemory, None) => Ok(()),
    }
}

fn check_auth(config: &HubConfig, ctx: &Ctx<'_>, f: &mut Findings) {
    let hc = &config.hub.config;
    let kind = hc.jupyterhub.authenticator_class;

    for (field, list) in [
        ("admin_users", &hc.authenticator.admin_users),
        ("allowed_users", &hc.authenticator.allowed_users),
    ] {
        if let Some(i) = list.iter().position(|u| u.trim().is_empty()) {
            f.error(ctx.at_item(
                &format!("hub.config.Authenticator.{field}"),
                i,
                "is an empty username",
            ));
        }
    }

    if kind == AuthenticatorKind::SharedPassword {
        let result = check_shared_password(config, ctx, &mut f.warnings);
        f.check(result);
    }

    crate::auth::validate(config, ctx, f);

    let unused = |class: &str, set: bool, f: &mut Findings| {
        if set {
            f.warn(ctx.warning(
                &format!("hub.config.{class}"),
                format!("has no effect: `{AUTH_CLASS}` is `{kind}`"),
            ));
        }
    };
    unused(
        "DummyAuthenticator",
        kind != AuthenticatorKind::Dummy && hc.dummy_authenticator.password.is_some(),
        f,
    );
    unused(
        "SharedPasswordAuthenticator",
        kind != AuthenticatorKind::SharedPassword
            && (hc
                .shared_password_authenticator
                .effective_user_password()
                .is_some()
                || hc.shared_password_authenticator.admin_password.is_some()),
        f,
    );
    unused(
        "NativeAuthenticator",
        kind != AuthenticatorKind::Native && hc.native_authenticator != Default::default(),
        f,
    );
}

fn check_shared_password(
    config: &HubConfig,
    ctx: &Ctx<'_>,
    warnings: &mut Vec<crate::ConfigWarning>,
) -> Result<(), ConfigError> {
    let hc = &config.hub.config;
    let spa = &hc.shared_password_authenticator;
    if spa.password.is_some() {
        let key = format!("{SHARED}.password");
        if spa.user_password.is_some() {
            return Err(ctx.at_key(
                &key,
                "and `user_password` are both set; upstream's SharedPasswordAuthenticator has only `user_password` (and `admin_password`): keep `user_password`",
            ));
        }
        warnings.push(ctx.warning(
            &key,
            "is read as `user_password`: upstream's SharedPasswordAuthenticator has no `password` key (it would ignore it and let nobody log in); rename it to `user_password`",
        ));
    }
    let user_key = if spa.user_password.is_none() && spa.password.is_some() {
        format!("{SHARED}.password")
    } else {
        format!("{SHARED}.user_password")
    };
    let Some(user) = spa.effective_user_password() else {
        let at = if ctx.has_key(SHARED) {
            SHARED
        } else {
            AUTH_CLASS
        };
        return Err(ctx.at_key(
            at,
            format!("the shared-password authenticator needs `{SHARED}.user_password` (at least 8 characters)"),
        ));
    };
    if user.chars().count() < 8 {
        return Err(ctx.at_key(&user_key, "must be at least 8 characters long"));
    }
    if let Some(admin) = spa.admin_password.as_deref() {
        let key = format!("{SHARED}.admin_password");
        if admin.chars().count() < 32 {
            return Err(ctx.at_key(&key, "must be at least 32 characters long"));
        }
        if admin == user {
            return Err(ctx.at_key(&key, "must differ from `user_password`"));
        }
        if hc.authenticator.admin_users.is_empty() {
            warnings.push(ctx.warning(
                &key,
                "has no effect: only users listed in `hub.config.Authenticator.admin_users` log in with it",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        assert_eq!(
            base_scheme("postgresql+psycopg2://u@h/db"),
            Some("postgresql")
        );
        assert_eq!(base_scheme("postgres://h/db"), Some("postgres"));
        assert_eq!(base_scheme("nocolon"), None);
    }

    #[test]
    fn role_names() {
        for ok in [
            "user",
            "abc",
            "a.b",
            "a~b-c_d.e1",
            &format!("a{}", "b".repeat(254)),
        ] {
            assert!(valid_role_name(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "ab",
            "Abc",
            "1bc",
            "ab-",
            "ab.",
            "a b",
            "a/bc",
            "aéb",
            &format!("a{}", "b".repeat(255)),
        ] {
            assert!(!valid_role_name(bad), "{bad}");
        }
    }

    #[test]
    fn service_names() {
        for ok in ["a", "A.b-c_9", "jupyterhub-idle-culler"] {
            assert!(valid_service_name(ok), "{ok}");
        }
        for bad in ["", "a b", "a/b", "é", "a:b"] {
            assert!(!valid_service_name(bad), "{bad}");
        }
    }
}
