//! Authenticator settings beyond the form-based ones: oauthenticator's classes
//! (`GenericOAuthenticator`, `GitHubOAuthenticator`, `CILogonOAuthenticator`,
//! `GoogleOAuthenticator`),
//! `TmpAuthenticator`, hubfleet's own `hubfleet.auth`, and the *effective* settings
//! ([`AuthSettings`]) after traitlets' rule that a subclass's section wins over
//! `Authenticator`'s.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::model::AuthenticatorKind;
use crate::HubConfig;

/// A secret from the config file (client secret, password): compared and used, never
/// shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

// ---------------------------------------------------------------------------------------------
// Value readers (null always means "not set")
// ---------------------------------------------------------------------------------------------

const STRING_HINT: &str =
    "a string (quote values such as `123`, `true` or `null` to make them strings)";

fn opt_str<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(STRING_HINT)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

fn opt_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(opt_str(d)?.map(Secret))
}

fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<bool>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("`true` or `false`")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

struct StrSeed;
impl<'de> de::DeserializeSeed<'de> for StrSeed {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(STRING_HINT)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
                Ok(v.to_owned())
            }
        }
        d.deserialize_any(V)
    }
}

/// A list of strings; `null` is "not set". A single string is an error (as elsewhere).
fn opt_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Vec<String>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of strings")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element_seed(StrSeed)? {
                out.push(s);
            }
            Ok(Some(out))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// A string or a list of strings (`username_claim`: the first claim present wins).
fn opt_str_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Vec<String>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a claim name or a list of claim names")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(vec![v.to_owned()]))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element_seed(StrSeed)? {
                out.push(s);
            }
            Ok(Some(out))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// A mapping of strings to strings (`extra_authorize_params`, `token_params`).
fn str_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping of names to string values")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(k) = map.next_key::<String>()? {
                let v = map.next_value_seed(StrSeed)?;
                out.insert(k, v);
            }
            Ok(out)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
    }
    d.deserialize_any(V)
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// The classes
// ---------------------------------------------------------------------------------------------

/// Declares an authenticator class section: the keys every authenticator shares (traitlets
/// lets them be set on the class as well as on `Authenticator`), then the class's own.
macro_rules! authenticator_class {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            /// `admin_users` (overrides `Authenticator.admin_users`).
            #[serde(deserialize_with = "opt_list")]
            pub admin_users: Option<Vec<String>>,
            /// `allowed_users`.
            #[serde(deserialize_with = "opt_list")]
            pub allowed_users: Option<Vec<String>>,
            /// `blocked_users`.
            #[serde(deserialize_with = "opt_list")]
            pub blocked_users: Option<Vec<String>>,
            /// `allow_all`.
            #[serde(deserialize_with = "opt_bool")]
            pub allow_all: Option<bool>,
            /// `allow_existing_users`.
            #[serde(deserialize_with = "opt_bool")]
            pub allow_existing_users: Option<bool>,
            /// `manage_groups`.
            #[serde(deserialize_with = "opt_bool")]
            pub manage_groups: Option<bool>,
            /// `auto_login`.
            #[serde(deserialize_with = "opt_bool")]
            pub auto_login: Option<bool>,
            /// `enable_auth_state`.
            #[serde(deserialize_with = "opt_bool")]
            pub enable_auth_state: Option<bool>,
            /// `auth_refresh_age`.
            #[serde(deserialize_with = "opt_u32")]
            pub auth_refresh_age: Option<u32>,
            /// `refresh_pre_spawn`.
            #[serde(deserialize_with = "opt_bool")]
            pub refresh_pre_spawn: Option<bool>,
            $($(#[$fmeta])* pub $field: $ty,)*
        }
    };
}

authenticator_class! {
    /// `hub.config.GenericOAuthenticator`: any OAuth 2.0 / OpenID Connect provider.
    GenericOAuthenticatorConfig {
        #[serde(deserialize_with = "opt_str")] client_id: Option<String>,
        /// `client_secret` (the field name keeps the word out of `Debug` output).
        #[serde(rename = "client_secret", deserialize_with = "opt_secret")] client_credential: Option<Secret>,
        #[serde(deserialize_with = "opt_str")] oauth_callback_url: Option<String>,
        #[serde(deserialize_with = "opt_str")] authorize_url: Option<String>,
        #[serde(deserialize_with = "opt_str")] token_url: Option<String>,
        #[serde(deserialize_with = "opt_str")] userdata_url: Option<String>,
        #[serde(deserialize_with = "opt_bool")] userdata_from_id_token: Option<bool>,
        #[serde(deserialize_with = "opt_str_or_list")] username_claim: Option<Vec<String>>,
        #[serde(deserialize_with = "opt_list")] scope: Option<Vec<String>>,
        #[serde(deserialize_with = "opt_str")] claim_groups_key: Option<String>,
        #[serde(deserialize_with = "opt_str")] auth_state_groups_key: Option<String>,
        #[serde(deserialize_with = "opt_list")] allowed_groups: Option<Vec<String>>,
        #[serde(deserialize_with = "opt_list")] admin_groups: Option<Vec<String>>,
        #[serde(deserialize_with = "opt_str")] login_service: Option<String>,
        #[serde(deserialize_with = "opt_bool")] basic_auth: Option<bool>,
        #[serde(deserialize_with = "opt_bool")] enable_pkce: Option<bool>,
        #[serde(deserialize_with = "str_map")] extra_authorize_params: BTreeMap<String, String>,
        #[serde(deserialize_with = "str_map")] token_params: BTreeMap<String, String>,
        #[serde(deserialize_with = "opt_str")] custom_403_message: Option<String>,
        #[serde(deserialize_with = "opt_str")] logout_redirect_url: Option<String>,
    }
}

authenticator_class! {
    /// `hub.config.GitHubOAuthenticator`.
    GitHubOAuthenticatorConfig {
        #[serde(deserialize_with = "opt_str")] client_id: Option<String>,
        /// `client_secret` (the field name keeps the word out of `Debug` output).
        #[serde(rename = "client_secret", deserialize_with = "opt_secret")] client_credential: Option<Secret>,
        #[serde(deserialize_with = "opt_str")] oauth_callback_url: Option<String>,
        #[serde(deserialize_with = "opt_list")] allowed_organizations: Option<Vec<String>>,
        #[serde(deserialize_with = "opt_bool")] populate_teams_in_auth_state: Option<bool>,
        #[serde(deserialize_with = "opt_str")] github_url: Option<String>,
        #[serde(deserialize_with = "opt_str")] github_api: Option<String>,
        #[serde(deserialize_with = "opt_list")] scope: Option<Vec<String>>,
        #[serde(deserialize_with = "opt_list")] allowed_groups: Option<Vec<String>>,
        #[serde(deserialize_with = "opt_list")] admin_groups: Option<Vec<String>>,
        #[serde(deserialize_with = "opt_str")] login_service: Option<String>,
        #[serde(deserialize_with = "opt_bool")] enable_pkce: Option<bool>,
        #[serde(deserialize_with = "opt_str")] custom_403_message: Option<String>,
        #[serde(deserialize_with = "opt_str")] logout_redirect_url: Option<String>,
    }
}

authenticator_class! {
    /// `hub.config.CILogonOAuthenticator`.
    CILogonOAuthenticatorConfig {
        #[serde(deserialize_with = "opt_str")] client_id: Option<String>,
        /// `client_secret` (the field name keeps the word out of `Debug` output).
        #[serde(rename = "client_secret", deserialize_with = "opt_secret")] client_credential: Option<Secret>,
        #[serde(deserialize_with = "opt_str")] oauth_callback_url: Option<String>,
        #[serde(deserialize_with = "opt_str")] cilogon_host: Option<String>,
        #[serde(deserialize_with = "null_default")] allowed_idps: BTreeMap<String, IdpConfig>,
        #[serde(deserialize_with = "null_default")] idps: BTreeMap<String, IdpConfig>,
        #[serde(deserialize_with = "opt_list")] scope: Option<Vec<String>>,
        #[serde(deserialize_with = "opt_list")] allowed_groups: Option<Vec<String>>,
        #[serde(deserialize_with = "opt_list")] admin_groups: Option<Vec<String>>,
        #[serde(deserialize_with = "opt_str")] auth_state_groups_key: Option<String>,
        #[serde(deserialize_with = "opt_str")] login_service: Option<String>,
        #[serde(deserialize_with = "opt_list")] shown_idps: Option<Vec<String>>,
        #[serde(deserialize_with = "opt_str")] skin: Option<String>,
        #[serde(deserialize_with = "opt_str")] custom_403_message: Option<String>,
    }
}

authenticator_class! {
    /// `hub.config.TmpAuthenticator` (tmpauthenticator): a new user for each visitor.
    TmpAuthenticatorConfig {}
}

authenticator_class! {
    /// `hub.config.GoogleOAuthenticator`: OpenID Connect with Google.
    GoogleOAuthenticatorConfig {
        #[serde(deserialize_with = "opt_str")] client_id: Option<String>,
        /// `client_secret` (the field name keeps the word out of `Debug` output).
        #[serde(rename = "client_secret", deserialize_with = "opt_secret")] client_credential: Option<Secret>,
        #[serde(deserialize_with = "opt_str")] oauth_callback_url: Option<String>,
        /// `hosted_domain`: a domain or a list; only Google Workspace accounts whose `hd`
        /// claim is one of these may log in.
        #[serde(deserialize_with = "opt_str_or_list")] hosted_domain: Option<Vec<String>>,
        #[serde(deserialize_with = "opt_str_or_list")] username_claim: Option<Vec<String>>,
        #[serde(deserialize_with = "opt_list")] scope: Option<Vec<String>>,
        #[serde(deserialize_with = "opt_str")] login_service: Option<String>,
        #[serde(deserialize_with = "opt_bool")] enable_pkce: Option<bool>,
        #[serde(deserialize_with = "str_map")] extra_authorize_params: BTreeMap<String, String>,
        #[serde(deserialize_with = "opt_str")] custom_403_message: Option<String>,
        #[serde(deserialize_with = "opt_str")] logout_redirect_url: Option<String>,
        /// Kept only to refuse it with a reason (Google Groups need a Workspace admin account).
        #[serde(deserialize_with = "null_default")] allowed_google_groups: serde_yaml_ng::Value,
        /// Kept only to refuse it with a reason.
        #[serde(deserialize_with = "null_default")] admin_google_groups: serde_yaml_ng::Value,
    }
}

/// One identity provider of `CILogonOAuthenticator.allowed_idps` (key: the IdP's entity id).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdpConfig {
    /// `default`: pre-selected on CILogon's IdP page.
    #[serde(deserialize_with = "opt_bool")]
    pub default: Option<bool>,
    /// `username_derivation`: how the hub user name is made from the IdP's claims (required).
    #[serde(deserialize_with = "null_default")]
    pub username_derivation: UsernameDerivation,
    /// `allow_all`: everyone who logs in through this IdP is allowed.
    #[serde(deserialize_with = "opt_bool")]
    pub allow_all: Option<bool>,
    /// `allowed_domains`: allowed when the user's domain (from the username claim, or from
    /// `allowed_domains_claim`) matches one of these (`*` and `?` wildcards).
    #[serde(deserialize_with = "opt_list")]
    pub allowed_domains: Option<Vec<String>>,
    /// `allowed_domains_claim`: the claim to take the domain from.
    #[serde(deserialize_with = "opt_str")]
    pub allowed_domains_claim: Option<String>,
}

/// `username_derivation` of one CILogon IdP.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsernameDerivation {
    /// `username_claim`: e.g. `email`, `eppn`, `sub`.
    #[serde(deserialize_with = "opt_str")]
    pub username_claim: Option<String>,
    /// `action`: `strip_idp_domain` (with `domain`) or `prefix` (with `prefix`).
    #[serde(deserialize_with = "opt_str")]
    pub action: Option<String>,
    #[serde(deserialize_with = "opt_str")]
    pub domain: Option<String>,
    #[serde(deserialize_with = "opt_str")]
    pub prefix: Option<String>,
}

/// `hubfleet.auth`: login settings with no upstream equivalent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubfleetAuth {
    /// `hubfleet.auth.oidc_issuer`: the OpenID Connect issuer of `generic-oauth` (or of
    /// `cilogon`, instead of `https://<cilogon_host>`). Its discovery document gives the
    /// endpoints and keys; ID tokens are then verified (signature, issuer, audience, expiry,
    /// nonce).
    #[serde(deserialize_with = "opt_str")]
    pub oidc_issuer: Option<String>,
    /// `hubfleet.auth.login_announcement`: a message shown on the login page.
    #[serde(deserialize_with = "opt_str")]
    pub login_announcement: Option<String>,
    /// `hubfleet.auth.login_logo_url`: an image shown above the login form.
    #[serde(deserialize_with = "opt_str")]
    pub login_logo_url: Option<String>,
    /// `hubfleet.auth.max_failed_logins`: failed password logins for one user name before
    /// further tries are refused for a while (0: never). Default 5.
    #[serde(deserialize_with = "opt_u32")]
    pub max_failed_logins: Option<u32>,
    /// `hubfleet.auth.max_failed_logins_per_ip`: the same for one client address. Default 20.
    #[serde(deserialize_with = "opt_u32")]
    pub max_failed_logins_per_ip: Option<u32>,
    /// `hubfleet.auth.lockout_seconds`: how long the refusal lasts. Default 60.
    #[serde(deserialize_with = "opt_u32")]
    pub lockout_seconds: Option<u32>,
}

fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<u32>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a whole number (0 or more)")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            u32::try_from(v)
                .map(Some)
                .map_err(|_| E::custom("number too large"))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u32::try_from(v)
                .map(Some)
                .map_err(|_| E::custom(format!("expected 0 or more, got {v}")))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

// ---------------------------------------------------------------------------------------------
// Effective settings
// ---------------------------------------------------------------------------------------------

/// Which provider a redirect-based authenticator talks to, with its own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthProvider {
    /// `generic-oauth`: OIDC (with `hubfleet.auth.oidc_issuer`) or plain OAuth 2.0 with
    /// `authorize_url`, `token_url`, `userdata_url`.
    Generic {
        issuer: Option<String>,
        authorize_url: Option<String>,
        token_url: Option<String>,
        userdata_url: Option<String>,
        userdata_from_id_token: bool,
        username_claim: Vec<String>,
        /// Dotted path into auth_state (`oauth_user.groups`).
        groups_key: String,
        basic_auth: bool,
        extra_authorize_params: BTreeMap<String, String>,
        token_params: BTreeMap<String, String>,
    },
    GitHub {
        github_url: String,
        github_api: String,
        allowed_organizations: Vec<String>,
        populate_teams_in_auth_state: bool,
    },
    CILogon {
        issuer: String,
        idps: BTreeMap<String, IdpConfig>,
        groups_key: Option<String>,
        shown_idps: Vec<String>,
        skin: Option<String>,
    },
    /// `google`: OpenID Connect at `https://accounts.google.com` (or
    /// `hubfleet.auth.oidc_issuer`).
    Google {
        issuer: String,
        /// Allowed values of the `hd` claim; empty: any account.
        hosted_domain: Vec<String>,
        username_claim: Vec<String>,
        extra_authorize_params: BTreeMap<String, String>,
    },
}

/// Settings of a redirect-based (OAuth) login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSettings {
    pub provider: OAuthProvider,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// `oauth_callback_url`; unset: `<scheme>://<host>/hub/oauth_callback` from the request.
    pub callback_url: Option<String>,
    pub scope: Vec<String>,
    pub allowed_groups: Vec<String>,
    pub admin_groups: Vec<String>,
    pub enable_pkce: bool,
    pub custom_403_message: Option<String>,
    pub logout_redirect_url: Option<String>,
}

/// Everything about logging in, after applying precedence and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    pub kind: AuthenticatorKind,
    pub admin_users: Vec<String>,
    pub allowed_users: Vec<String>,
    pub blocked_users: Vec<String>,
    pub allow_all: bool,
    pub allow_existing_users: bool,
    pub manage_groups: bool,
    pub auto_login: bool,
    pub enable_auth_state: bool,
    /// `auth_refresh_age` in seconds (default 300); 0: never refresh.
    pub auth_refresh_age: u32,
    /// `refresh_pre_spawn`: refresh before every server start.
    pub refresh_pre_spawn: bool,
    /// Text of the login button (`login_service`), for redirect-based logins.
    pub login_service: Option<String>,
    pub oauth: Option<OAuthSettings>,
    pub login_announcement: Option<String>,
    pub login_logo_url: Option<String>,
    pub max_failed_logins: u32,
    pub max_failed_logins_per_ip: u32,
    pub lockout_seconds: u32,
}

/// The common keys of one class section, as options.
pub(crate) struct CommonKeys<'a> {
    pub admin_users: Option<&'a Vec<String>>,
    pub allowed_users: Option<&'a Vec<String>>,
    pub blocked_users: Option<&'a Vec<String>>,
    pub allow_all: Option<bool>,
    pub allow_existing_users: Option<bool>,
    pub manage_groups: Option<bool>,
    pub auto_login: Option<bool>,
    pub enable_auth_state: Option<bool>,
    pub auth_refresh_age: Option<u32>,
    pub refresh_pre_spawn: Option<bool>,
}

macro_rules! common_keys {
    ($c:expr) => {
        CommonKeys {
            admin_users: $c.admin_users.as_ref(),
            allowed_users: $c.allowed_users.as_ref(),
            blocked_users: $c.blocked_users.as_ref(),
            allow_all: $c.allow_all,
            allow_existing_users: $c.allow_existing_users,
            manage_groups: $c.manage_groups,
            auto_login: $c.auto_login,
            enable_auth_state: $c.enable_auth_state,
            auth_refresh_age: $c.auth_refresh_age,
            refresh_pre_spawn: $c.refresh_pre_spawn,
        }
    };
}

/// The section name of the class that `kind` selects, if it has one beyond `Authenticator`.
pub fn class_section(kind: AuthenticatorKind) -> Option<&'static str> {
    match kind {
        AuthenticatorKind::GenericOAuth => Some("GenericOAuthenticator"),
        AuthenticatorKind::GitHub => Some("GitHubOAuthenticator"),
        AuthenticatorKind::CILogon => Some("CILogonOAuthenticator"),
        AuthenticatorKind::Tmp => Some("TmpAuthenticator"),
        AuthenticatorKind::Google => Some("GoogleOAuthenticator"),
        AuthenticatorKind::Null => None,
        AuthenticatorKind::Native => Some("NativeAuthenticator"),
        AuthenticatorKind::Dummy => Some("DummyAuthenticator"),
        AuthenticatorKind::SharedPassword => Some("SharedPasswordAuthenticator"),
    }
}

impl HubConfig {
    /// The common keys set on the selected class's own section.
    pub(crate) fn class_common_keys(&self) -> Option<CommonKeys<'_>> {
        let hc = &self.hub.config;
        match hc.jupyterhub.authenticator_class {
            AuthenticatorKind::GenericOAuth => Some(common_keys!(hc.generic_oauthenticator)),
            AuthenticatorKind::GitHub => Some(common_keys!(hc.github_oauthenticator)),
            AuthenticatorKind::CILogon => Some(common_keys!(hc.cilogon_oauthenticator)),
            AuthenticatorKind::Tmp => Some(common_keys!(hc.tmp_authenticator)),
            AuthenticatorKind::Google => Some(common_keys!(hc.google_oauthenticator)),
            _ => None,
        }
    }

    /// The effective login settings: a key set on the selected class's section wins over the
    /// same key on `Authenticator` (traitlets' rule), then upstream's defaults apply.
    pub fn auth_settings(&self) -> AuthSettings {
        let hc = &self.hub.config;
        let base = &hc.authenticator;
        let kind = hc.jupyterhub.authenticator_class;
        let class = self.class_common_keys();
        fn pick_list<'a>(
            class: Option<&CommonKeys<'a>>,
            f: fn(&CommonKeys<'a>) -> Option<&'a Vec<String>>,
            base: &[String],
        ) -> Vec<String> {
            class
                .and_then(f)
                .map(|v| v.to_vec())
                .unwrap_or_else(|| base.to_vec())
        }
        let pick_bool = |f: fn(&CommonKeys<'_>) -> Option<bool>, b: Option<bool>| {
            class.as_ref().and_then(f).or(b)
        };
        let admin_users = pick_list(class.as_ref(), |c| c.admin_users, &base.admin_users);
        let allowed_users = pick_list(class.as_ref(), |c| c.allowed_users, &base.allowed_users);
        let blocked_users = pick_list(class.as_ref(), |c| c.blocked_users, &base.blocked_users);
        let manage_groups = pick_bool(|c| c.manage_groups, base.manage_groups).unwrap_or(false);
        // JupyterHub 5: allow_existing_users defaults to "allowed_users is set", except in
        // OAuthenticator (16+), where it defaults to false.
        let allow_existing_users = pick_bool(|c| c.allow_existing_users, base.allow_existing_users)
            .unwrap_or(!kind.is_oauth() && !allowed_users.is_empty());
        // allow_all: false upstream, except DummyAuthenticator (true unless allowed_users),
        // NativeAuthenticator (its own sign-up approval decides) and TmpAuthenticator.
        let allow_all = pick_bool(|c| c.allow_all, base.allow_all).unwrap_or(match kind {
            AuthenticatorKind::Dummy | AuthenticatorKind::Native => allowed_users.is_empty(),
            AuthenticatorKind::Tmp => true,
            _ => false,
        });
        let auto_login =
            pick_bool(|c| c.auto_login, base.auto_login).unwrap_or(kind == AuthenticatorKind::Tmp);
        let enable_auth_state =
            pick_bool(|c| c.enable_auth_state, base.enable_auth_state).unwrap_or(false);
        let auth_refresh_age = class
            .as_ref()
            .and_then(|c| c.auth_refresh_age)
            .or(base.auth_refresh_age)
            .unwrap_or(300);
        let refresh_pre_spawn =
            pick_bool(|c| c.refresh_pre_spawn, base.refresh_pre_spawn).unwrap_or(false);
        let ha = &self.hubfleet.auth;
        let oauth = self.oauth_settings();
        let login_service = match kind {
            AuthenticatorKind::GenericOAuth => Some(
                hc.generic_oauthenticator
                    .login_service
                    .clone()
                    .unwrap_or_else(|| "OAuth 2.0".into()),
            ),
            AuthenticatorKind::GitHub => Some(
                hc.github_oauthenticator
                    .login_service
                    .clone()
                    .unwrap_or_else(|| "GitHub".into()),
            ),
            AuthenticatorKind::CILogon => Some(
                hc.cilogon_oauthenticator
                    .login_service
                    .clone()
                    .unwrap_or_else(|| "CILogon".into()),
            ),
            AuthenticatorKind::Google => Some(
                hc.google_oauthenticator
                    .login_service
                    .clone()
                    .unwrap_or_else(|| "Google".into()),
            ),
            _ => None,
        };
        AuthSettings {
            kind,
            admin_users,
            allowed_users,
            blocked_users,
            allow_all,
            allow_existing_users,
            manage_groups,
            auto_login,
            enable_auth_state,
            auth_refresh_age,
            refresh_pre_spawn,
            login_service,
            oauth,
            login_announcement: ha.login_announcement.clone(),
            login_logo_url: ha.login_logo_url.clone(),
            max_failed_logins: ha.max_failed_logins.unwrap_or(5),
            max_failed_logins_per_ip: ha.max_failed_logins_per_ip.unwrap_or(20),
            lockout_seconds: ha.lockout_seconds.unwrap_or(60),
        }
    }

    fn oauth_settings(&self) -> Option<OAuthSettings> {
        let hc = &self.hub.config;
        let issuer = self.hubfleet.auth.oidc_issuer.clone();
        match hc.jupyterhub.authenticator_class {
            AuthenticatorKind::GenericOAuth => {
                let g = &hc.generic_oauthenticator;
                let groups_key = g.auth_state_groups_key.clone().unwrap_or_else(|| {
                    format!(
                        "oauth_user.{}",
                        g.claim_groups_key.as_deref().unwrap_or("groups")
                    )
                });
                let mut scope = g.scope.clone().unwrap_or_default();
                if issuer.is_some() && !scope.iter().any(|s| s == "openid") {
                    scope.insert(0, "openid".into());
                }
                Some(OAuthSettings {
                    provider: OAuthProvider::Generic {
                        issuer,
                        authorize_url: g.authorize_url.clone(),
                        token_url: g.token_url.clone(),
                        userdata_url: g.userdata_url.clone(),
                        userdata_from_id_token: g.userdata_from_id_token.unwrap_or(false),
                        username_claim: g
                            .username_claim
                            .clone()
                            .unwrap_or_else(|| vec!["username".into()]),
                        groups_key,
                        basic_auth: g.basic_auth.unwrap_or(false),
                        extra_authorize_params: g.extra_authorize_params.clone(),
                        token_params: g.token_params.clone(),
                    },
                    client_id: g.client_id.clone().unwrap_or_default(),
                    client_secret: g.client_credential.clone(),
                    callback_url: g.oauth_callback_url.clone(),
                    scope,
                    allowed_groups: g.allowed_groups.clone().unwrap_or_default(),
                    admin_groups: g.admin_groups.clone().unwrap_or_default(),
                    enable_pkce: g.enable_pkce.unwrap_or(true),
                    custom_403_message: g.custom_403_message.clone(),
                    logout_redirect_url: g.logout_redirect_url.clone(),
                })
            }
            AuthenticatorKind::GitHub => {
                let g = &hc.github_oauthenticator;
                let github_url = g
                    .github_url
                    .as_deref()
                    .map(|u| {
                        if u.contains("://") {
                            u.trim_end_matches('/').to_owned()
                        } else {
                            format!("https://{}", u.trim_end_matches('/'))
                        }
                    })
                    .unwrap_or_else(|| "https://github.com".into());
                let github_api = g
                    .github_api
                    .as_deref()
                    .map(|u| u.trim_end_matches('/').to_owned())
                    .unwrap_or_else(|| {
                        if github_url == "https://github.com" {
                            "https://api.github.com".into()
                        } else {
                            format!("{github_url}/api/v3")
                        }
                    });
                Some(OAuthSettings {
                    provider: OAuthProvider::GitHub {
                        github_url,
                        github_api,
                        allowed_organizations: g.allowed_organizations.clone().unwrap_or_default(),
                        populate_teams_in_auth_state: g
                            .populate_teams_in_auth_state
                            .unwrap_or(false),
                    },
                    client_id: g.client_id.clone().unwrap_or_default(),
                    client_secret: g.client_credential.clone(),
                    callback_url: g.oauth_callback_url.clone(),
                    scope: g.scope.clone().unwrap_or_default(),
                    allowed_groups: g.allowed_groups.clone().unwrap_or_default(),
                    admin_groups: g.admin_groups.clone().unwrap_or_default(),
                    enable_pkce: g.enable_pkce.unwrap_or(true),
                    custom_403_message: g.custom_403_message.clone(),
                    logout_redirect_url: g.logout_redirect_url.clone(),
                })
            }
            AuthenticatorKind::CILogon => {
                let c = &hc.cilogon_oauthenticator;
                let host = c.cilogon_host.as_deref().unwrap_or("cilogon.org");
                let issuer = issuer.unwrap_or_else(|| format!("https://{host}"));
                let idps = if c.idps.is_empty() {
                    c.allowed_idps.clone()
                } else {
                    c.idps.clone()
                };
                let mut scope = c.scope.clone().unwrap_or_else(|| {
                    vec![
                        "openid".into(),
                        "email".into(),
                        "org.cilogon.userinfo".into(),
                    ]
                });
                if !scope.iter().any(|s| s == "openid") {
                    scope.insert(0, "openid".into());
                }
                Some(OAuthSettings {
                    provider: OAuthProvider::CILogon {
                        issuer,
                        idps,
                        groups_key: c.auth_state_groups_key.clone(),
                        shown_idps: c.shown_idps.clone().unwrap_or_default(),
                        skin: c.skin.clone(),
                    },
                    client_id: c.client_id.clone().unwrap_or_default(),
                    client_secret: c.client_credential.clone(),
                    callback_url: c.oauth_callback_url.clone(),
                    scope,
                    allowed_groups: c.allowed_groups.clone().unwrap_or_default(),
                    admin_groups: c.admin_groups.clone().unwrap_or_default(),
                    enable_pkce: true,
                    custom_403_message: c.custom_403_message.clone(),
                    logout_redirect_url: None,
                })
            }
            AuthenticatorKind::Google => {
                let g = &hc.google_oauthenticator;
                let mut scope = g
                    .scope
                    .clone()
                    .unwrap_or_else(|| vec!["openid".into(), "email".into()]);
                if !scope.iter().any(|s| s == "openid") {
                    scope.insert(0, "openid".into());
                }
                Some(OAuthSettings {
                    provider: OAuthProvider::Google {
                        issuer: issuer.unwrap_or_else(|| "https://accounts.google.com".into()),
                        hosted_domain: g
                            .hosted_domain
                            .iter()
                            .flatten()
                            .map(|d| d.trim().to_lowercase())
                            .collect(),
                        username_claim: g
                            .username_claim
                            .clone()
                            .unwrap_or_else(|| vec!["email".into()]),
                        extra_authorize_params: g.extra_authorize_params.clone(),
                    },
                    client_id: g.client_id.clone().unwrap_or_default(),
                    client_secret: g.client_credential.clone(),
                    callback_url: g.oauth_callback_url.clone(),
                    scope,
                    allowed_groups: Vec::new(),
                    admin_groups: Vec::new(),
                    enable_pkce: g.enable_pkce.unwrap_or(true),
                    custom_403_message: g.custom_403_message.clone(),
                    logout_redirect_url: g.logout_redirect_url.clone(),
                })
            }
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

fn check_url(s: &str) -> Result<(), String> {
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            if u.fragment().is_some() {
                Err(format!("`{s}` must not have a `#fragment`"))
            } else {
                Ok(())
            }
        }
        _ => Err(format!(
            "`{s}` is not an http(s) URL; expected e.g. `https://login.example.org/oauth/authorize`"
        )),
    }
}

/// Checks of the authenticator sections that involve more than one key.
pub(crate) fn validate(
    config: &HubConfig,
    ctx: &crate::load::Ctx<'_>,
    f: &mut crate::load::Findings,
) {
    let hc = &config.hub.config;
    let kind = hc.jupyterhub.authenticator_class;
    let auth_class = "hub.config.JupyterHub.authenticator_class";

    // Empty names in any list of users or groups.
    let lists: Vec<(&str, &str, Option<&Vec<String>>)> = vec![
        (
            "Authenticator",
            "blocked_users",
            Some(&hc.authenticator.blocked_users),
        ),
        (
            "GenericOAuthenticator",
            "admin_users",
            hc.generic_oauthenticator.admin_users.as_ref(),
        ),
        (
            "GenericOAuthenticator",
            "allowed_users",
            hc.generic_oauthenticator.allowed_users.as_ref(),
        ),
        (
            "GenericOAuthenticator",
            "blocked_users",
            hc.generic_oauthenticator.blocked_users.as_ref(),
        ),
        (
            "GenericOAuthenticator",
            "allowed_groups",
            hc.generic_oauthenticator.allowed_groups.as_ref(),
        ),
        (
            "GenericOAuthenticator",
            "admin_groups",
            hc.generic_oauthenticator.admin_groups.as_ref(),
        ),
        (
            "GitHubOAuthenticator",
            "admin_users",
            hc.github_oauthenticator.admin_users.as_ref(),
        ),
        (
            "GitHubOAuthenticator",
            "allowed_users",
            hc.github_oauthenticator.allowed_users.as_ref(),
        ),
        (
            "GitHubOAuthenticator",
            "blocked_users",
            hc.github_oauthenticator.blocked_users.as_ref(),
        ),
        (
            "GitHubOAuthenticator",
            "allowed_organizations",
            hc.github_oauthenticator.allowed_organizations.as_ref(),
        ),
        (
            "CILogonOAuthenticator",
            "admin_users",
            hc.cilogon_oauthenticator.admin_users.as_ref(),
        ),
        (
            "CILogonOAuthenticator",
            "allowed_users",
            hc.cilogon_oauthenticator.allowed_users.as_ref(),
        ),
        (
            "CILogonOAuthenticator",
            "blocked_users",
            hc.cilogon_oauthenticator.blocked_users.as_ref(),
        ),
        (
            "GoogleOAuthenticator",
            "admin_users",
            hc.google_oauthenticator.admin_users.as_ref(),
        ),
        (
            "GoogleOAuthenticator",
            "allowed_users",
            hc.google_oauthenticator.allowed_users.as_ref(),
        ),
        (
            "GoogleOAuthenticator",
            "blocked_users",
            hc.google_oauthenticator.blocked_users.as_ref(),
        ),
    ];
    for (class, field, list) in lists {
        if let Some(i) = list.and_then(|l| l.iter().position(|u| u.trim().is_empty())) {
            f.error(ctx.at_item(
                &format!("hub.config.{class}.{field}"),
                i,
                "is an empty name",
            ));
        }
    }
    if let Some(orgs) = &hc.github_oauthenticator.allowed_organizations {
        for (i, org) in orgs.iter().enumerate() {
            let parts: Vec<&str> = org.split(':').collect();
            if parts.len() > 2 || parts.iter().any(|p| p.trim().is_empty() || p.contains('/')) {
                f.error(ctx.at_item(
                    "hub.config.GitHubOAuthenticator.allowed_organizations",
                    i,
                    format!("`{org}` is neither an organization (`my-org`) nor a team (`my-org:my-team`)"),
                ));
            }
        }
    }

    let settings = config.auth_settings();
    let section = class_section(kind).unwrap_or("Authenticator");
    let class_key = |key: &str| format!("hub.config.{section}.{key}");
    let has_class = |key: &str| ctx.has_key(&class_key(key));

    if let Some(oauth) = &settings.oauth {
        if oauth.client_id.trim().is_empty() {
            let at = if ctx.has_key(&format!("hub.config.{section}")) {
                format!("hub.config.{section}")
            } else {
                auth_class.to_owned()
            };
            f.error(ctx.at_key(
                &at,
                format!("`{kind}` needs `hub.config.{section}.client_id` (and `client_secret`), from the OAuth app registered with the provider"),
            ));
        }
        if let Some(url) = &oauth.callback_url {
            if let Err(m) = check_url(url) {
                f.error(ctx.at_key(&class_key("oauth_callback_url"), m));
            }
        }
        if let Some(url) = &oauth.logout_redirect_url {
            if let Err(m) = check_url(url) {
                f.error(ctx.at_key(&class_key("logout_redirect_url"), m));
            }
        }
        if !settings.manage_groups {
            for (field, set) in [
                ("allowed_groups", !oauth.allowed_groups.is_empty()),
                ("admin_groups", !oauth.admin_groups.is_empty()),
            ] {
                if set {
                    f.error(ctx.at_key(
                        &class_key(field),
                        format!("needs `manage_groups: true` (in `hub.config.{section}` or `hub.config.Authenticator`): groups come from the provider only then"),
                    ));
                }
            }
        }
        match &oauth.provider {
            OAuthProvider::Generic {
                issuer,
                authorize_url,
                token_url,
                userdata_url,
                userdata_from_id_token,
                ..
            } => {
                for (field, value) in [
                    ("authorize_url", authorize_url),
                    ("token_url", token_url),
                    ("userdata_url", userdata_url),
                ] {
                    if let Some(url) = value {
                        if let Err(m) = check_url(url) {
                            f.error(ctx.at_key(&class_key(field), m));
                        }
                    }
                }
                if let Some(issuer) = issuer {
                    if let Err(m) = check_url(issuer) {
                        f.error(ctx.at_key("hubfleet.auth.oidc_issuer", m));
                    }
                } else {
                    for (field, value) in
                        [("authorize_url", authorize_url), ("token_url", token_url)]
                    {
                        if value.is_none() {
                            f.error(ctx.at_key(
                                if ctx.has_key("hub.config.GenericOAuthenticator") { "hub.config.GenericOAuthenticator" } else { auth_class },
                                format!("`generic-oauth` needs either `hubfleet.auth.oidc_issuer` (OpenID Connect discovery) or `hub.config.GenericOAuthenticator.{field}`"),
                            ));
                        }
                    }
                    if userdata_url.is_none() && !userdata_from_id_token {
                        f.error(ctx.at_key(
                            "hub.config.GenericOAuthenticator",
                            "needs `userdata_url` (or `userdata_from_id_token: true`) to learn who logged in, or set `hubfleet.auth.oidc_issuer`",
                        ));
                    }
                }
                if *userdata_from_id_token && userdata_url.is_some() {
                    f.error(ctx.at_key(
                        &class_key("userdata_from_id_token"),
                        "cannot be used together with `userdata_url`: keep one",
                    ));
                }
                if has_class("claim_groups_key") && has_class("auth_state_groups_key") {
                    f.error(ctx.at_key(
                        &class_key("claim_groups_key"),
                        "and `auth_state_groups_key` are both set; `claim_groups_key: X` is the old spelling of `auth_state_groups_key: oauth_user.X`: keep one",
                    ));
                }
            }
            OAuthProvider::GitHub {
                github_url,
                github_api,
                ..
            } => {
                if let Err(m) = check_url(github_url) {
                    f.error(ctx.at_key(&class_key("github_url"), m));
                }
                if let Err(m) = check_url(github_api) {
                    f.error(ctx.at_key(&class_key("github_api"), m));
                }
            }
            OAuthProvider::Google { hosted_domain, .. } => {
                let g = &hc.google_oauthenticator;
                for field in ["allowed_google_groups", "admin_google_groups"] {
                    if has_class(field) {
                        f.error(ctx.at_key(
                            &class_key(field),
                            "is not supported: Google Groups can only be read with a Google Workspace service account (`gsuite_administrator`, `google_service_account_keys`). Restrict access with `hosted_domain` and `allowed_users`/`admin_users` instead",
                        ));
                    }
                }
                if let Some(i) = g.hosted_domain.iter().flatten().position(|d| {
                    let d = d.trim();
                    d.is_empty() || d.contains('@') || d.contains('/')
                }) {
                    f.error(ctx.at_key(
                        &class_key("hosted_domain"),
                        format!(
                            "`{}` is not a domain; expected e.g. `university.edu`",
                            hosted_domain[i]
                        ),
                    ));
                }
                if ctx.has_key("hubfleet.auth.oidc_issuer") {
                    if let Err(m) =
                        check_url(&config.hubfleet.auth.oidc_issuer.clone().unwrap_or_default())
                    {
                        f.error(ctx.at_key("hubfleet.auth.oidc_issuer", m));
                    }
                }
            }
            OAuthProvider::CILogon { issuer, idps, .. } => {
                if ctx.has_key("hubfleet.auth.oidc_issuer") {
                    if let Err(m) = check_url(issuer) {
                        f.error(ctx.at_key("hubfleet.auth.oidc_issuer", m));
                    }
                }
                let c = &hc.cilogon_oauthenticator;
                if !c.idps.is_empty() && !c.allowed_idps.is_empty() {
                    f.error(ctx.at_key(
                        &class_key("allowed_idps"),
                        "and `idps` are both set; `allowed_idps` is the old name of `idps`: keep one",
                    ));
                }
                let field = if c.idps.is_empty() {
                    "allowed_idps"
                } else {
                    "idps"
                };
                if idps.is_empty() {
                    f.error(ctx.at_key(
                        &if ctx.has_key(&class_key(field)) { class_key(field) } else { auth_class.to_owned() },
                        format!("`cilogon` needs `hub.config.CILogonOAuthenticator.{field}`: the identity providers people may use, each with a `username_derivation`"),
                    ));
                }
                for (idp, conf) in idps {
                    let at = |key: &[&str], msg: String| {
                        let mut p = crate::locate::KeyPath::parse(&class_key(field)).child(idp);
                        for k in key {
                            p = p.child(k);
                        }
                        ctx.at_key_path(&p, msg)
                    };
                    let d = &conf.username_derivation;
                    if d.username_claim
                        .as_deref()
                        .is_none_or(|c| c.trim().is_empty())
                    {
                        f.error(at(
                            &["username_derivation"],
                            "needs `username_claim` (e.g. `email`): it decides the hub user name, which is security critical".into(),
                        ));
                    }
                    match d.action.as_deref() {
                        None => {}
                        Some("strip_idp_domain") if d.domain.is_some() => {}
                        Some("prefix") if d.prefix.is_some() => {}
                        Some("strip_idp_domain") => f.error(at(
                            &["username_derivation", "action"],
                            "`strip_idp_domain` needs `domain`".into(),
                        )),
                        Some("prefix") => f.error(at(
                            &["username_derivation", "action"],
                            "`prefix` needs `prefix`".into(),
                        )),
                        Some(other) => f.error(at(
                            &["username_derivation", "action"],
                            format!(
                                "`{other}` is not an action; use `strip_idp_domain` or `prefix`"
                            ),
                        )),
                    }
                }
            }
        }
        let any_allow = settings.allow_all
            || settings.allow_existing_users
            || !settings.allowed_users.is_empty()
            || !oauth.allowed_groups.is_empty()
            || matches!(&oauth.provider, OAuthProvider::GitHub { allowed_organizations, .. } if !allowed_organizations.is_empty())
            || matches!(&oauth.provider, OAuthProvider::CILogon { idps, .. } if idps.values().any(|i| i.allow_all == Some(true) || i.allowed_domains.as_ref().is_some_and(|d| !d.is_empty())));
        if !any_allow {
            f.warn(ctx.warning(
                auth_class,
                "no allow configuration: only `admin_users` can log in. Set `allow_all: true`, `allowed_users`, `allowed_groups` (or for GitHub `allowed_organizations`)",
            ));
        }
    }

    // Sections of classes that are not selected.
    for (class, set, selected) in [
        (
            "GenericOAuthenticator",
            hc.generic_oauthenticator != Default::default(),
            AuthenticatorKind::GenericOAuth,
        ),
        (
            "GitHubOAuthenticator",
            hc.github_oauthenticator != Default::default(),
            AuthenticatorKind::GitHub,
        ),
        (
            "CILogonOAuthenticator",
            hc.cilogon_oauthenticator != Default::default(),
            AuthenticatorKind::CILogon,
        ),
        (
            "TmpAuthenticator",
            hc.tmp_authenticator != Default::default(),
            AuthenticatorKind::Tmp,
        ),
        (
            "GoogleOAuthenticator",
            hc.google_oauthenticator != Default::default(),
            AuthenticatorKind::Google,
        ),
    ] {
        if set && kind != selected {
            f.warn(ctx.warning(
                &format!("hub.config.{class}"),
                format!("has no effect: `{auth_class}` is `{kind}`"),
            ));
        }
    }
    if config.hubfleet.auth.oidc_issuer.is_some()
        && !matches!(
            kind,
            AuthenticatorKind::GenericOAuth
                | AuthenticatorKind::CILogon
                | AuthenticatorKind::Google
        )
    {
        f.warn(ctx.warning(
            "hubfleet.auth.oidc_issuer",
            format!("has no effect: `{auth_class}` is `{kind}` (it is used by `generic-oauth`, `cilogon` and `google`)"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::HubConfig;

    #[test]
    fn class_keys_win_over_authenticator_and_secrets_stay_hidden() {
        let c = HubConfig::from_yaml_str(
            "hub:
  config:
    JupyterHub:
      authenticator_class: github
    Authenticator:
      admin_users: [a]
      allow_all: false
    GitHubOAuthenticator:
      client_id: id
      client_secret: very-private-value
      admin_users: [b]
      allow_all: true
",
            "t.yaml",
        )
        .unwrap();
        let s = c.auth_settings();
        assert_eq!(s.admin_users, ["b"]);
        assert!(s.allow_all);
        assert!(!s.allow_existing_users, "OAuth default");
        assert_eq!(s.login_service.as_deref(), Some("GitHub"));
        assert!(!format!("{c:?}{s:?}").contains("very-private-value"));
    }

    #[test]
    fn shared_password_key_password_is_read_as_user_password_with_a_warning() {
        // 2i2c's opensci/climaterisk spells it `password` (DummyAuthenticator's key).
        let yaml = "hub:\n  config:\n    JupyterHub:\n      authenticator_class: shared-password\n    SharedPasswordAuthenticator:\n      password: a-workshop-secret\n";
        let c = HubConfig::from_yaml_str(yaml, "t.yaml").unwrap();
        let spa = &c.hub.config.shared_password_authenticator;
        assert_eq!(spa.effective_user_password(), Some("a-workshop-secret"));
        let w = format!("{:?}", c.warnings);
        assert!(
            w.contains("SharedPasswordAuthenticator.password")
                && w.contains("rename it to `user_password`"),
            "{w}"
        );
        let e = HubConfig::from_yaml_str(
            &format!("{yaml}      user_password: another-secret\n"),
            "t.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("t.yaml:6:") && e.contains("keep `user_password`"),
            "{e}"
        );
        let e = HubConfig::from_yaml_str(&yaml.replace("a-workshop-secret", "short"), "t.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("SharedPasswordAuthenticator.password: must be at least 8"),
            "{e}"
        );
    }

    #[test]
    fn google_and_null_authenticators() {
        let c = HubConfig::from_yaml_str(
            "hub:\n  config:\n    JupyterHub:\n      authenticator_class: oauthenticator.google.GoogleOAuthenticator\n    GoogleOAuthenticator:\n      client_id: x\n      hosted_domain: School.example\n      allow_all: true\n",
            "t.yaml",
        )
        .unwrap();
        let s = c.auth_settings();
        assert_eq!(s.login_service.as_deref(), Some("Google"));
        let oauth = s.oauth.unwrap();
        assert_eq!(oauth.scope, ["openid", "email"]);
        match oauth.provider {
            super::OAuthProvider::Google {
                issuer,
                hosted_domain,
                username_claim,
                ..
            } => {
                assert_eq!(issuer, "https://accounts.google.com");
                assert_eq!(hosted_domain, ["school.example"]);
                assert_eq!(username_claim, ["email"]);
            }
            other => panic!("{other:?}"),
        }
        let e = HubConfig::from_yaml_str(
            "hub:\n  config:\n    JupyterHub:\n      authenticator_class: google\n    GoogleOAuthenticator:\n      client_id: x\n      allowed_google_groups:\n        school.example: [staff]\n",
            "t.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("t.yaml:7:") && e.contains("Google Workspace service account"),
            "{e}"
        );
        let c = HubConfig::from_yaml_str(
            "hub:\n  config:\n    JupyterHub:\n      authenticator_class: 'null'\n",
            "t.yaml",
        )
        .unwrap();
        assert_eq!(c.auth_settings().kind, crate::AuthenticatorKind::Null);
    }

    #[test]
    fn oauth_without_client_id_or_with_groups_but_no_manage_groups_is_refused() {
        let e = HubConfig::from_yaml_str(
            "hub:\n  config:\n    JupyterHub:\n      authenticator_class: github\n",
            "t.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("needs `hub.config.GitHubOAuthenticator.client_id`"),
            "{e}"
        );
        let e = HubConfig::from_yaml_str(
            "hub:\n  config:\n    JupyterHub:\n      authenticator_class: generic-oauth\n    GenericOAuthenticator:\n      client_id: x\n      allowed_groups: [g]\nhubfleet:\n  auth:\n    oidc_issuer: https://id.example.org\n",
            "t.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("t.yaml:7:") && e.contains("manage_groups"),
            "{e}"
        );
        let e = HubConfig::from_yaml_str(
            "hub:\n  config:\n    JupyterHub:\n      authenticator_class: cilogon\n    CILogonOAuthenticator:\n      client_id: x\n      allowed_idps:\n        https://idp.example.org:\n          allowed_domains: [example.org]\n",
            "t.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("username_claim"), "{e}");
    }
}
