//! hubfleet-rbac: JupyterHub 6.0 scopes and roles as pure functions (no I/O, no database).
//!
//! Source of truth: `jupyterhub/scopes.py` and `jupyterhub/roles.py` (6.0), protocol §8.
//!
//! # Vocabulary (as in `scopes.py`)
//!
//! * **raw scopes**: what roles and token requests contain; may hold the metascopes `self`
//!   and `inherit` and the self-referencing filters `!user`, `!server`, `!service`.
//! * **expanded scopes**: metascopes, self-referencing filters and subscopes resolved
//!   ([`expand_scopes`]), e.g. `read:users:name!user=alice`.
//! * **parsed scopes**: expanded scopes grouped by base ([`ParsedScopes`]).
//! * **reduced scopes**: expanded scopes where an unfiltered scope swallowed its filtered
//!   variants ([`reduce_scopes`]).
//! * **intersection**: expanded scopes held by both of two sets, resolving the
//!   server ⊂ user ⊂ group hierarchy ([`intersect_scopes`]).
//! * **identify scopes**: what an owner needs to read its own name and groups
//!   ([`identify_scopes`]).
//!
//! Group membership is the one fact that needs the database; every function that needs it
//! takes a [`GroupMembership`] (a closure `|user, group| -> bool` works).
//!
//! # Typical use in the hub
//!
//! ```
//! use std::collections::BTreeSet;
//! use hubfleet_rbac::*;
//!
//! let alice = Owner::user("alice");
//! // the owner's scopes: roles (and the roles of their groups) plus shares
//! let owner = owner_scopes(&["self"], &[] as &[&str], &alice);
//! // an OAuth token issued by alice's default server
//! let client = ClientRef::server("alice", "");
//! let raw = oauth_client_default_scopes(&["access:servers!server=alice/"], &client);
//! let raw: Vec<String> = raw.into_iter().collect();
//! let held = token_scopes(&raw, &owner, &alice, Some(&client), &NoGroups);
//! assert_eq!(
//!     held,
//!     BTreeSet::from([
//!         "access:servers!server=alice/".to_string(),
//!         "read:users:groups!user=alice".to_string(),
//!         "read:users:name!user=alice".to_string(),
//!     ])
//! );
//! // endpoint check: GET /users/alice needs read:users (or a subscope)
//! let access = has_scope("read:users:name", &Target::User("alice"), &held, &NoGroups);
//! assert_eq!(access, Access::Granted);
//! assert_eq!(has_scope("read:users:name", &Target::User("bob"), &held, &NoGroups).status(), Some(404));
//! assert_eq!(has_scope("admin:users", &Target::User("alice"), &held, &NoGroups).status(), Some(403));
//! ```

mod check;
mod error;
mod expand;
mod held;
mod parsed;
mod roles;
mod scope;
mod token;

pub use check::{
    group_model_keys, has_scope, has_scope_post_filter, model_keys, needs_any_scope,
    needs_any_scope_post_filter, post_filter, service_model_keys, user_model_keys, Access,
    GROUP_MODEL_ACCESS, MISSING_CREDENTIALS_MESSAGE, NOT_COVERED_MESSAGE, SERVICE_MODEL_ACCESS,
    USER_MODEL_ACCESS,
};
pub use error::RbacError;
pub use expand::{
    access_scopes, expand_scope, expand_scope_with, expand_scopes, expand_scopes_with,
    identify_scopes, identify_scopes_raw, self_scopes, try_expand_scopes, ClientRef, Owner,
    SELF_SCOPES,
};
pub use held::HeldScopes;
pub use parsed::{
    intersect_scopes, reduce_scopes, GroupMembership, NoGroups, ParsedScopes, ScopeFilters, Target,
};
pub use roles::{default_role, default_roles, roles_to_scopes, validate_role_name, Role};
pub use scope::{
    check_scopes_exist, is_known_scope, is_valid_custom_scope_name, scope_definition, suggest,
    CustomScopeDef, CustomScopes, Filter, FilterKind, Scope, ScopeDef, HUBFLEET_SCOPES, INHERIT,
    NO_SCOPE, SCOPE_DEFINITIONS, SELF,
};
pub use token::{
    check_token_scopes, oauth_client_default_scopes, oauth_required_scopes, owner_scopes,
    resolve_requested_scopes, self_identity, server_token_request_scopes, token_scopes,
    SelfIdentity,
};

#[cfg(test)]
mod tests;
