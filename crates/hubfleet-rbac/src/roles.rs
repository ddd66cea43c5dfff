//! Roles: named collections of raw scopes, the four default roles, and role validation.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::RbacError;
use crate::scope::{check_scopes_exist, CustomScopes};

/// A role: a name and the raw scopes it grants (`JupyterHub.load_roles` entry, minus the
/// assignment lists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Matches `^[a-z][a-z0-9\-_~\.]{1,253}[a-z0-9]$`.
    pub name: String,
    /// Raw scopes (may contain `self`, `inherit` and self-referencing filters).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
}

impl Role {
    /// Check the name, that every scope exists, and that the `admin` role is not changed
    /// (`create_role`).
    ///
    /// # Errors
    ///
    /// [`RbacError::InvalidRoleName`], any scope error of [`check_scopes_exist`], or
    /// [`RbacError::AdminRoleOverride`].
    pub fn validate(&self, custom: &CustomScopes) -> Result<(), RbacError> {
        validate_role_name(&self.name)?;
        if self.name == "admin" {
            let admin = admin_role();
            if !self.scopes.is_empty() && self.scopes != admin.scopes {
                return Err(RbacError::AdminRoleOverride { field: "scopes" });
            }
            if self.description.is_some() && self.description != admin.description {
                return Err(RbacError::AdminRoleOverride {
                    field: "description",
                });
            }
        }
        check_scopes_exist(&self.scopes, custom)?;
        Ok(())
    }
}

/// Check a role name against `^[a-z][a-z0-9\-_~\.]{1,253}[a-z0-9]$`.
///
/// # Errors
///
/// [`RbacError::InvalidRoleName`].
pub fn validate_role_name(name: &str) -> Result<(), RbacError> {
    let b = name.as_bytes();
    let lower_or_digit = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = (3..=255).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b[1..b.len() - 1]
            .iter()
            .all(|&c| lower_or_digit(c) || matches!(c, b'-' | b'_' | b'~' | b'.'))
        && lower_or_digit(b[b.len() - 1]);
    if ok {
        Ok(())
    } else {
        Err(RbacError::InvalidRoleName {
            name: name.to_string(),
        })
    }
}

fn role(name: &str, description: &str, scopes: &[&str]) -> Role {
    Role {
        name: name.to_string(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        description: Some(description.to_string()),
    }
}

fn admin_role() -> Role {
    role(
        "admin",
        "Elevated privileges (can do anything)",
        &[
            "admin-ui",
            "admin:users",
            "admin:servers",
            "admin:services",
            "tokens",
            "admin:groups",
            "list:services",
            "read:services",
            "read:hub",
            "proxy",
            "shutdown",
            "admin:hub",
            "access:services",
            "access:servers",
            "read:roles",
            "read:metrics",
            "shares",
            "admin:environments",
        ],
    )
}

/// The default roles (`roles.get_default_roles`): `user` (every user), `admin` (users and
/// services with `admin=True`; cannot be modified), `server` (default scopes of a server's
/// `JUPYTERHUB_API_TOKEN`) and `token` (default scopes of new API tokens).
pub fn default_roles() -> Vec<Role> {
    vec![
        role("user", "Standard user privileges", &["self"]),
        admin_role(),
        role(
            "server",
            "Post activity only",
            &["users:activity!user", "access:servers!server"],
        ),
        role(
            "token",
            "Token with same permissions as its owner",
            &["inherit"],
        ),
    ]
}

/// One default role by name.
pub fn default_role(name: &str) -> Option<Role> {
    default_roles().into_iter().find(|r| r.name == name)
}

/// The union of the roles' raw scopes (`roles_to_scopes`).
pub fn roles_to_scopes<'a, I>(roles: I) -> BTreeSet<String>
where
    I: IntoIterator<Item = &'a Role>,
{
    roles
        .into_iter()
        .flat_map(|r| r.scopes.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names() {
        let long_ok = format!("a{}z", "b".repeat(253));
        let too_long = format!("a{}z", "b".repeat(254));
        for ok in [
            "abc",
            "user",
            "admin",
            "my-role",
            "my_role.v2~x",
            "r2d2",
            long_ok.as_str(),
        ] {
            assert_eq!(validate_role_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "a",
            "ab",
            "Admin",
            "1role",
            "-role",
            "role-",
            "role.",
            "ro le",
            "rôle",
            "role!",
            too_long.as_str(),
        ] {
            assert_eq!(
                validate_role_name(bad),
                Err(RbacError::InvalidRoleName { name: bad.into() }),
                "{bad}"
            );
        }
        let msg = validate_role_name("X").unwrap_err().to_string();
        assert!(msg.contains("3-255 characters"), "{msg}");
    }

    #[test]
    fn default_roles_match_spec() {
        let roles = default_roles();
        let names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["user", "admin", "server", "token"]);
        assert_eq!(default_role("user").unwrap().scopes, ["self"]);
        assert_eq!(
            default_role("server").unwrap().scopes,
            ["users:activity!user", "access:servers!server"]
        );
        assert_eq!(default_role("token").unwrap().scopes, ["inherit"]);
        // Upstream's 16, and hubfleet's `admin:hub` and `admin:environments`.
        assert_eq!(default_role("admin").unwrap().scopes.len(), 18);
        for r in &roles {
            r.validate(&CustomScopes::default())
                .unwrap_or_else(|e| panic!("{}: {e}", r.name));
        }
        assert!(default_role("nobody").is_none());
    }

    #[test]
    fn role_validation() {
        let custom = CustomScopes::default();
        let r = |name: &str, scopes: &[&str]| Role {
            name: name.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            description: None,
        };
        assert_eq!(
            r("culler", &["list:users", "admin:servers!group=x"]).validate(&custom),
            Ok(())
        );
        assert_eq!(
            r("culler", &["list:user"]).validate(&custom),
            Err(RbacError::UnknownScope {
                scope: "list:user".into(),
                suggestion: Some("list:users".into())
            })
        );
        assert_eq!(
            r("admin", &["read:users"]).validate(&custom),
            Err(RbacError::AdminRoleOverride { field: "scopes" })
        );
        assert_eq!(r("admin", &[]).validate(&custom), Ok(()));
        assert!(matches!(
            r("No", &[]).validate(&custom),
            Err(RbacError::InvalidRoleName { .. })
        ));
        // serde field names (YAML is a superset of JSON)
        let parsed: Role =
            serde_yaml_ng::from_str(r#"{"name": "x-role", "scopes": ["read:users"]}"#).unwrap();
        assert_eq!(parsed, r("x-role", &["read:users"]));
    }
}
