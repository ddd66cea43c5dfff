//! The crate's one error type.
//!
//! Every fallible function returns [`RbacError`]. The messages are meant to be shown to the
//! person who wrote the offending scope or role (in config or an API request body) as they are.

use thiserror::Error;

/// What can go wrong when parsing scopes, defining custom scopes, validating roles or
/// checking that a token does not exceed its owner.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RbacError {
    /// The scope's base name is neither in the 6.0 scope table nor a `custom:` scope.
    #[error("unknown scope `{scope}`{}", did_you_mean(.suggestion))]
    UnknownScope {
        /// The scope as written.
        scope: String,
        /// The closest known scope name, if one is close.
        suggestion: Option<String>,
    },
    /// `all` was the draft name of `inherit`.
    #[error("unknown scope `{scope}`: the draft scope `all` is now called `inherit`")]
    DraftScopeAll {
        /// The scope as written.
        scope: String,
    },
    /// The part after `!` is not one of the known filters.
    #[error(
        "unknown filter `!{filter}` in scope `{scope}`: expected `!user=<name>`, \
         `!server=<user>/<server>`, `!group=<name>`, `!service=<name>`, \
         or one of the self-referencing `!user`, `!server`, `!service`"
    )]
    UnknownFilter {
        /// The scope as written.
        scope: String,
        /// The filter, without its leading `!`.
        filter: String,
    },
    /// A filter such as `!user=` with nothing after the `=`.
    #[error(
        "empty filter value in scope `{scope}`: write `!{kind}=<name>`, \
         or `!{kind}` to mean the token's own {kind}"
    )]
    EmptyFilterValue {
        /// The scope as written.
        scope: String,
        /// The filter kind (`user`, `server`, `group`, `service`).
        kind: String,
    },
    /// A `custom:` scope that does not match `^custom:[a-z0-9][a-z0-9_\-\*:]+[a-z0-9_\*]$`.
    #[error(
        "invalid custom scope name `{scope}`: custom scopes must start with `custom:` \
         and contain only lowercase ascii letters, numbers, hyphen, underscore, colon, \
         and asterisk (-_:*); the part after `custom:` must start with a letter or number, \
         and scopes may not end with a hyphen or colon"
    )]
    InvalidCustomScope {
        /// The scope as written.
        scope: String,
    },
    /// A well-formed `custom:` scope that is not defined in `JupyterHub.custom_scopes`.
    #[error("custom scope `{scope}` is not defined; define it in JupyterHub.custom_scopes")]
    UndefinedCustomScope {
        /// The scope as written.
        scope: String,
    },
    /// A custom scope definition that tries to redefine a built-in scope.
    #[error("cannot redefine the built-in scope `{scope}`")]
    RedefinedScope {
        /// The scope name.
        scope: String,
    },
    /// A custom scope listing a built-in scope as subscope.
    #[error(
        "non-custom subscope `{subscope}` in custom scope `{scope}` is not allowed: \
         custom scopes may only have custom subscopes; use roles to assign several scopes together"
    )]
    NonCustomSubscope {
        /// The custom scope being defined.
        scope: String,
        /// The offending subscope.
        subscope: String,
    },
    /// A custom scope listing a subscope that is not defined.
    #[error(
        "subscope `{subscope}` in custom scope `{scope}` is not defined: all scopes must be defined"
    )]
    UndefinedSubscope {
        /// The custom scope being defined.
        scope: String,
        /// The missing subscope.
        subscope: String,
    },
    /// A role name that does not match `^[a-z][a-z0-9\-_~\.]{1,253}[a-z0-9]$`.
    #[error(
        "invalid role name `{name}`: role names must be 3-255 characters, contain only \
         lowercase ascii letters, numbers, and URL unreserved special characters '-.~_', \
         start with a letter, and end with a letter or number"
    )]
    InvalidRoleName {
        /// The name as written.
        name: String,
    },
    /// The `admin` role's scopes or description cannot be changed.
    #[error("cannot override the admin role's {field}: the admin role cannot be modified")]
    AdminRoleOverride {
        /// `scopes` or `description`.
        field: &'static str,
    },
    /// A token was requested with scopes its owner does not hold.
    #[error("not assigning requested scopes {} not held by {owner}", .scopes.join(", "))]
    ScopesNotHeld {
        /// The expanded scopes the owner lacks, sorted.
        scopes: Vec<String>,
        /// `User <name>` or `Service <name>`.
        owner: String,
    },
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!("; did you mean `{s}`?"),
        None => String::new(),
    }
}
