//! The authenticator a config file asks for.

use std::sync::Arc;
use std::time::Duration;

use hubfleet_config::{AuthenticatorKind, HubConfig};
use hubfleet_store::Store;

use crate::{
    AccessPolicy, AuthError, Configured, DummyAuthenticator, DynAuthenticator, LoginLimiter,
    LoginOptions, NativeAuthenticator, NullAuthenticator, OAuthAuthenticator,
    SharedPasswordAuthenticator, TmpAuthenticator,
};

/// Build the authenticator of `config` (`hub.config.JupyterHub.authenticator_class` and the
/// settings of that class, `hub.config.Authenticator` and `hubfleet.auth`).
pub fn from_config(config: &HubConfig, store: &Store) -> Result<DynAuthenticator, AuthError> {
    let settings = config.auth_settings();
    let policy = AccessPolicy::from_settings(&settings);
    // Password logins have no provider rules (organisations, domains) that could let people in.
    let password_login = matches!(
        settings.kind,
        AuthenticatorKind::Native | AuthenticatorKind::Dummy | AuthenticatorKind::SharedPassword
    );
    if password_login && policy.admits_nobody() {
        let admins: Vec<&str> = policy.admin_users.iter().map(String::as_str).collect();
        tracing::warn!(
            admins = %admins.join(", "),
            "nobody but the admins can log in: no rule lets anyone else in. Set \
             hub.config.Authenticator.allow_all: true, or list people in allowed_users"
        );
    }
    let options = LoginOptions {
        auto_login: settings.auto_login,
        announcement: settings.login_announcement.clone(),
        logo_url: settings.login_logo_url.clone(),
        manage_groups: settings.manage_groups,
        enable_auth_state: settings.enable_auth_state,
        // Without auth_state there is nothing to refresh with (as oauthenticator).
        auth_refresh_age: if settings.enable_auth_state {
            Duration::from_secs(u64::from(settings.auth_refresh_age))
        } else {
            Duration::ZERO
        },
        refresh_pre_spawn: settings.enable_auth_state && settings.refresh_pre_spawn,
        refresh_tracker: Default::default(),
    };
    let limiter = || {
        Some(LoginLimiter::new(
            settings.max_failed_logins,
            settings.max_failed_logins_per_ip,
            Duration::from_secs(u64::from(settings.lockout_seconds)),
        ))
    };
    let hc = &config.hub.config;
    fn wrap<A: crate::Authenticator>(
        inner: A,
        options: LoginOptions,
        limiter: Option<LoginLimiter>,
    ) -> DynAuthenticator {
        Arc::new(Configured {
            inner,
            options,
            limiter,
        })
    }
    Ok(match settings.kind {
        AuthenticatorKind::Native => wrap(
            NativeAuthenticator::with_signup(
                store.clone(),
                policy,
                crate::SignupSettings {
                    enable_signup: hc.native_authenticator.enable_signup.unwrap_or(true),
                    open_signup: hc.native_authenticator.open_signup,
                    minimum_password_length: hc
                        .native_authenticator
                        .minimum_password_length
                        .unwrap_or(1) as usize,
                    check_common_password: hc.native_authenticator.check_common_password,
                },
            ),
            options,
            limiter(),
        ),
        AuthenticatorKind::Dummy => wrap(
            DummyAuthenticator::new(hc.dummy_authenticator.password.clone(), policy),
            options,
            limiter(),
        ),
        AuthenticatorKind::SharedPassword => wrap(
            SharedPasswordAuthenticator::new(
                hc.shared_password_authenticator
                    .effective_user_password()
                    .map(str::to_owned),
                hc.shared_password_authenticator.admin_password.clone(),
                policy,
                store.clone(),
            ),
            options,
            limiter(),
        ),
        AuthenticatorKind::Tmp => wrap(TmpAuthenticator, options, None),
        AuthenticatorKind::Null => wrap(NullAuthenticator, options, None),
        kind @ (AuthenticatorKind::GenericOAuth
        | AuthenticatorKind::GitHub
        | AuthenticatorKind::CILogon
        | AuthenticatorKind::Google) => {
            let oauth = settings
                .oauth
                .clone()
                .ok_or_else(|| AuthError::Config(format!("`{kind}` has no OAuth settings")))?;
            let kind_name = match kind {
                AuthenticatorKind::GitHub => "github",
                AuthenticatorKind::CILogon => "cilogon",
                AuthenticatorKind::Google => "google",
                _ => "generic-oauth",
            };
            let service = settings
                .login_service
                .clone()
                .unwrap_or_else(|| "OAuth 2.0".into());
            wrap(
                OAuthAuthenticator::new(kind_name, service, oauth, policy, store.clone())?,
                options,
                None,
            )
        }
    })
}
