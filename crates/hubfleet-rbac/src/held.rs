//! The scopes a request holds, expanded and parsed once.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::ParsedScopes;

/// Expanded scopes with their [`ParsedScopes`], shared: an identity is cloned for every
/// request of a busy API client, and checks on it run several times per request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeldScopes(Arc<Held>);

#[derive(Debug, Default, PartialEq, Eq)]
struct Held {
    expanded: BTreeSet<String>,
    parsed: ParsedScopes,
}

impl HeldScopes {
    pub fn new(expanded: BTreeSet<String>) -> Self {
        let parsed = ParsedScopes::parse(&expanded);
        HeldScopes(Arc::new(Held { expanded, parsed }))
    }

    pub fn parsed(&self) -> &ParsedScopes {
        &self.0.parsed
    }
}

impl std::ops::Deref for HeldScopes {
    type Target = BTreeSet<String>;

    fn deref(&self) -> &BTreeSet<String> {
        &self.0.expanded
    }
}

impl From<BTreeSet<String>> for HeldScopes {
    fn from(expanded: BTreeSet<String>) -> Self {
        HeldScopes::new(expanded)
    }
}
