//! Who may log in and who is an admin, with JupyterHub 5 / OAuthenticator 17 semantics.

use std::collections::BTreeSet;

use hubfleet_store::Store;

use crate::{AuthError, UserInfo};

/// Who is allowed in and who is an admin, shared by all authenticators
/// (`hub.config.Authenticator.*` and the same keys on the selected class).
#[derive(Clone, Debug, Default)]
pub struct AccessPolicy {
    pub admin_users: BTreeSet<String>,
    pub allowed_users: BTreeSet<String>,
    pub blocked_users: BTreeSet<String>,
    /// Everyone the authenticator accepts may log in.
    pub allow_all: bool,
    /// Users already in the hub's database may log in.
    pub allow_existing_users: bool,
    /// Groups come from the authenticator and are applied at each login.
    pub manage_groups: bool,
    /// With `manage_groups`: members of these groups may log in.
    pub allowed_groups: BTreeSet<String>,
    /// With `manage_groups`: members of these groups are admins (and others are not, unless
    /// listed in `admin_users`).
    pub admin_groups: BTreeSet<String>,
}

/// The result of a login attempt that reached the provider.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Allowed(UserInfo),
    /// Refused, with a message for the person (never secret details).
    Refused(String),
}

fn lower_set<'a>(names: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    names
        .into_iter()
        .map(|n| n.trim().to_lowercase())
        .filter(|n| !n.is_empty())
        .collect()
}

impl AccessPolicy {
    /// The policy for [`hubfleet_config::AuthSettings`]; user names are normalised (lower case)
    /// as JupyterHub does when it loads them.
    pub fn from_settings(s: &hubfleet_config::AuthSettings) -> AccessPolicy {
        let (allowed_groups, admin_groups) = match &s.oauth {
            Some(o) => (
                o.allowed_groups.iter().cloned().collect(),
                o.admin_groups.iter().cloned().collect(),
            ),
            None => Default::default(),
        };
        AccessPolicy {
            admin_users: lower_set(&s.admin_users),
            allowed_users: lower_set(&s.allowed_users),
            blocked_users: lower_set(&s.blocked_users),
            allow_all: s.allow_all,
            allow_existing_users: s.allow_existing_users,
            manage_groups: s.manage_groups,
            allowed_groups,
            admin_groups,
        }
    }

    /// A policy with only admin and allowed users, and JupyterHub's pre-5.0 rule that an
    /// empty `allowed_users` allows everyone.
    pub fn simple(admin_users: &[&str], allowed_users: &[&str]) -> AccessPolicy {
        AccessPolicy {
            admin_users: admin_users.iter().map(|s| s.to_lowercase()).collect(),
            allowed_users: allowed_users.iter().map(|s| s.to_lowercase()).collect(),
            allow_all: allowed_users.is_empty(),
            ..Default::default()
        }
    }

    pub fn is_admin(&self, name: &str) -> bool {
        self.admin_users.contains(name)
    }

    pub fn is_blocked(&self, name: &str) -> bool {
        self.blocked_users.contains(name)
    }

    /// Allowed by the name alone (no database, no groups): `allow_all`, `allowed_users` or
    /// `admin_users`, and not blocked.
    pub fn is_allowed(&self, name: &str) -> bool {
        !self.is_blocked(name)
            && (self.allow_all || self.allowed_users.contains(name) || self.is_admin(name))
    }

    /// Whether no rule lets anyone but admins in (JupyterHub 5's default for most
    /// authenticators): then logins fail for everyone else, and the hub says so.
    pub fn admits_nobody(&self) -> bool {
        !self.allow_all
            && self.allowed_users.is_empty()
            && !self.allow_existing_users
            && self.allowed_groups.is_empty()
    }

    /// What someone a password login accepted, but no rule allows, is told. (Password logins
    /// have no provider rules, so "no rule" means nobody but admins.)
    pub fn password_refusal(&self, name: &str) -> String {
        if !self.is_blocked(name) && self.admits_nobody() {
            format!(
                "{name} may not use this hub: nobody is allowed in yet. Its administrators must \
                 say who may (allowed_users, allow_all or a group rule)."
            )
        } else {
            self.refusal(name)
        }
    }

    /// What someone the authenticator accepted, but no rule allows, is told.
    pub fn refusal(&self, name: &str) -> String {
        if self.is_blocked(name) {
            format!("The user {name} is blocked from this hub.")
        } else if !self.allowed_groups.is_empty() {
            format!(
                "{name} is not in an allowed group, so cannot use this hub. Ask the hub's administrators to add you."
            )
        } else {
            format!(
                "{name} is not allowed to use this hub. Ask the hub's administrators to add you."
            )
        }
    }

    /// Decide about a user the provider vouched for. `extra_allowed` is what the
    /// authenticator's own rules say (GitHub organisations, CILogon domains).
    ///
    /// Order as upstream: blocked users are refused; admin status is settled (`admin_users`,
    /// then `admin_groups`); then the user is allowed by `allow_all`, being an admin,
    /// `allowed_users`, `allow_existing_users`, `allowed_groups` or `extra_allowed`.
    pub async fn decide(
        &self,
        store: &Store,
        mut info: UserInfo,
        extra_allowed: bool,
    ) -> Result<Decision, AuthError> {
        if self.is_blocked(&info.name) {
            tracing::warn!(user = %info.name, "blocked user refused");
            return Ok(Decision::Refused(self.refusal(&info.name)));
        }
        if self.is_admin(&info.name) {
            info.admin = Some(true);
        } else if self.manage_groups && !self.admin_groups.is_empty() && info.admin != Some(true) {
            let in_admin_group = info
                .groups
                .as_ref()
                .is_some_and(|g| g.iter().any(|g| self.admin_groups.contains(g)));
            info.admin = Some(in_admin_group);
        }
        let in_allowed_group = self.manage_groups
            && info
                .groups
                .as_ref()
                .is_some_and(|g| g.iter().any(|g| self.allowed_groups.contains(g)));
        let allowed = self.allow_all
            || info.admin == Some(true)
            || self.allowed_users.contains(&info.name)
            || in_allowed_group
            || extra_allowed
            || (self.allow_existing_users && store.user_by_name(&info.name).await?.is_some());
        if allowed {
            Ok(Decision::Allowed(info))
        } else {
            tracing::warn!(user = %info.name, groups = ?info.groups, "user not allowed");
            Ok(Decision::Refused(self.refusal(&info.name)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, groups: Option<&[&str]>) -> UserInfo {
        UserInfo {
            name: name.into(),
            admin: None,
            groups: groups.map(|g| g.iter().map(|s| s.to_string()).collect()),
            auth_state: None,
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    async fn store() -> Store {
        Store::connect("sqlite::memory:").await.unwrap()
    }

    #[tokio::test]
    async fn oauth_defaults_allow_nobody_but_admins() {
        let store = store().await;
        let policy = AccessPolicy {
            admin_users: set(&["root"]),
            ..Default::default()
        };
        assert!(matches!(
            policy
                .decide(&store, info("eve", None), false)
                .await
                .unwrap(),
            Decision::Refused(_)
        ));
        let Decision::Allowed(root) = policy
            .decide(&store, info("root", None), false)
            .await
            .unwrap()
        else {
            panic!("admin refused")
        };
        assert_eq!(root.admin, Some(true));
        // Allowed by the authenticator's own rules (e.g. a GitHub organisation).
        assert!(matches!(
            policy
                .decide(&store, info("eve", None), true)
                .await
                .unwrap(),
            Decision::Allowed(_)
        ));
    }

    #[tokio::test]
    async fn blocked_wins_over_everything() {
        let store = store().await;
        let policy = AccessPolicy {
            admin_users: set(&["mallory"]),
            blocked_users: set(&["mallory"]),
            allow_all: true,
            ..Default::default()
        };
        let Decision::Refused(msg) = policy
            .decide(&store, info("mallory", None), true)
            .await
            .unwrap()
        else {
            panic!("blocked user allowed")
        };
        assert!(msg.contains("blocked"), "{msg}");
    }

    #[tokio::test]
    async fn groups_allow_and_make_admins_only_with_manage_groups() {
        let store = store().await;
        let mut policy = AccessPolicy {
            allowed_groups: set(&["students"]),
            admin_groups: set(&["staff"]),
            manage_groups: true,
            ..Default::default()
        };
        let Decision::Allowed(s) = policy
            .decide(&store, info("sam", Some(&["students"])), false)
            .await
            .unwrap()
        else {
            panic!("student refused")
        };
        assert_eq!(
            s.admin,
            Some(false),
            "admin_groups set: non-members lose admin"
        );
        let Decision::Allowed(t) = policy
            .decide(&store, info("tia", Some(&["staff"])), false)
            .await
            .unwrap()
        else {
            panic!("staff refused")
        };
        assert_eq!(t.admin, Some(true));
        let Decision::Refused(msg) = policy
            .decide(&store, info("ovid", Some(&["others"])), false)
            .await
            .unwrap()
        else {
            panic!("outsider allowed")
        };
        assert!(msg.contains("not in an allowed group"), "{msg}");
        policy.manage_groups = false;
        assert!(matches!(
            policy
                .decide(&store, info("sam", Some(&["students"])), false)
                .await
                .unwrap(),
            Decision::Refused(_)
        ));
    }

    #[tokio::test]
    async fn existing_users_are_allowed_only_when_asked() {
        let store = store().await;
        store.create_user("old", false).await.unwrap();
        let mut policy = AccessPolicy::default();
        assert!(matches!(
            policy
                .decide(&store, info("old", None), false)
                .await
                .unwrap(),
            Decision::Refused(_)
        ));
        policy.allow_existing_users = true;
        assert!(matches!(
            policy
                .decide(&store, info("old", None), false)
                .await
                .unwrap(),
            Decision::Allowed(_)
        ));
        assert!(matches!(
            policy
                .decide(&store, info("new", None), false)
                .await
                .unwrap(),
            Decision::Refused(_)
        ));
    }

    #[test]
    fn names_from_config_are_lowercased() {
        let settings = hubfleet_config::HubConfig::from_yaml_str(
            "hub:\n  config:\n    Authenticator:\n      admin_users: [RobertPincus]\n      blocked_users: [Deployment-Service-Check]\n",
            "t.yaml",
        )
        .unwrap()
        .auth_settings();
        let policy = AccessPolicy::from_settings(&settings);
        assert!(policy.is_admin("robertpincus"));
        assert!(policy.is_blocked("deployment-service-check"));
    }
}
