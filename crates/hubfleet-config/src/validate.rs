//! Checks that involve more than one key, run after the document has been deserialized.

use crate::error::{ConfigError, ConfigWarning};
use crate::load::Ctx;
use crate::model::{AuthenticatorKind, DbType};
use crate::HubConfig;

const AUTH_CLASS: &str = "hub.config.JupyterHub.authenticator_class";
const SHARED: &str = "hub.config.SharedPasswordAuthenticator";

/// Validate `config` (read from the text behind `ctx`); returns the warnings.
pub(crate) fn validate(
    config: &HubConfig,
    ctx: &Ctx<'_>,
) -> Result<Vec<ConfigWarning>, ConfigError> {
    let mut warnings = Vec::new();
    check_db(config, ctx)?;
    check_auth(config, ctx, &mut warnings)?;
    Ok(warnings)
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

fn check_auth(
    config: &HubConfig,
    ctx: &Ctx<'_>,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<(), ConfigError> {
    let hc = &config.hub.config;
    let kind = hc.jupyterhub.authenticator_class;

    for (field, list) in [
        ("admin_users", &hc.authenticator.admin_users),
        ("allowed_users", &hc.authenticator.allowed_users),
    ] {
        if let Some(i) = list.iter().position(|u| u.trim().is_empty()) {
            return Err(ctx.at_item(
                &format!("hub.config.Authenticator.{field}"),
                i,
                "is an empty username",
            ));
        }
    }

    if hc.native_authenticator.open_signup && kind == AuthenticatorKind::Native {
        return Err(ctx.at_key(
            "hub.config.NativeAuthenticator.open_signup",
            "self sign-up is not supported yet; set it to false and create accounts with `hubfleet users add NAME`",
        ));
    }

    if kind == AuthenticatorKind::SharedPassword {
        let spa = &hc.shared_password_authenticator;
        let Some(user) = spa.user_password.as_deref() else {
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
            return Err(ctx.at_key(
                &format!("{SHARED}.user_password"),
                "must be at least 8 characters long",
            ));
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
    }

    let unused = |class: &str, set: bool, warnings: &mut Vec<ConfigWarning>| {
        if set {
            warnings.push(ctx.warning(
                &format!("hub.config.{class}"),
                format!("has no effect: `{AUTH_CLASS}` is `{kind}`"),
            ));
        }
    };
    unused(
        "DummyAuthenticator",
        kind != AuthenticatorKind::Dummy && hc.dummy_authenticator.password.is_some(),
        warnings,
    );
    unused(
        "SharedPasswordAuthenticator",
        kind != AuthenticatorKind::SharedPassword
            && (hc.shared_password_authenticator.user_password.is_some()
                || hc.shared_password_authenticator.admin_password.is_some()),
        warnings,
    );
    unused(
        "NativeAuthenticator",
        kind != AuthenticatorKind::Native && hc.native_authenticator.open_signup,
        warnings,
    );
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
}
