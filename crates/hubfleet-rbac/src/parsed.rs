//! Parsed scopes: expanded scopes grouped by base, and the operations on them
//! (reduce, intersect, "does this cover that resource").

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::scope::FilterKind;

/// Answers "is user `user` a member of group `group`?" for the group filters.
///
/// Implemented for closures `Fn(&str, &str) -> bool` (user, group) and for a map from user
/// name to group names. Use [`NoGroups`] when membership is unknown (group filters then never
/// match a user or server, like JupyterHub without a database session).
pub trait GroupMembership {
    /// Whether `user` is in `group`.
    fn is_member(&self, user: &str, group: &str) -> bool;
}

impl<F: Fn(&str, &str) -> bool> GroupMembership for F {
    fn is_member(&self, user: &str, group: &str) -> bool {
        self(user, group)
    }
}

impl GroupMembership for BTreeMap<String, Vec<String>> {
    fn is_member(&self, user: &str, group: &str) -> bool {
        self.get(user)
            .is_some_and(|gs| gs.iter().any(|g| g == group))
    }
}

/// No group membership is known: group filters never match users or servers.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoGroups;

impl GroupMembership for NoGroups {
    fn is_member(&self, _user: &str, _group: &str) -> bool {
        false
    }
}

/// The resource an action targets, from the request's path arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// No specific resource (e.g. `GET /users`).
    None,
    /// `user_name`
    User(&'a str),
    /// `user_name` + `server_name` (`""` for the default server).
    Server(&'a str, &'a str),
    /// `group_name`
    Group(&'a str),
    /// `service_name`
    Service(&'a str),
}

impl Target<'_> {
    /// The filter this target corresponds to, as in `!server=alice/` (without the `!`).
    pub fn filter(&self) -> Option<String> {
        match self {
            Target::None => None,
            Target::User(u) => Some(format!("user={u}")),
            Target::Server(u, s) => Some(format!("server={u}/{s}")),
            Target::Group(g) => Some(format!("group={g}")),
            Target::Service(s) => Some(format!("service={s}")),
        }
    }
}

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.filter() {
            Some(s) => f.write_str(&s),
            None => f.write_str("*"),
        }
    }
}

/// Which resources one base scope covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeFilters {
    /// Unfiltered: every resource.
    All,
    /// Only the listed resources, by filter kind.
    Only(BTreeMap<FilterKind, BTreeSet<String>>),
}

impl ScopeFilters {
    /// Whether these filters cover `target` (`check_scope_filter`).
    ///
    /// A server is covered by its own server filter, its user's user filter, or a group filter
    /// of a group its user is in; a user by its user filter or a group filter. [`Target::None`]
    /// is covered only by [`ScopeFilters::All`].
    pub fn covers(&self, target: &Target<'_>, membership: &dyn GroupMembership) -> bool {
        let filters = match self {
            ScopeFilters::All => return true,
            ScopeFilters::Only(f) => f,
        };
        let has =
            |kind: FilterKind, value: &str| filters.get(&kind).is_some_and(|s| s.contains(value));
        let in_group = |user: &str| {
            filters
                .get(&FilterKind::Group)
                .is_some_and(|gs| gs.iter().any(|g| membership.is_member(user, g)))
        };
        match *target {
            Target::None => false,
            Target::User(u) => has(FilterKind::User, u) || in_group(u),
            Target::Server(u, s) => {
                has(FilterKind::Server, &format!("{u}/{s}"))
                    || has(FilterKind::User, u)
                    || in_group(u)
            }
            Target::Group(g) => has(FilterKind::Group, g),
            Target::Service(s) => has(FilterKind::Service, s),
        }
    }
}

impl ScopeFilters {
    /// Whether these filters cover a profile limited to `allowed_groups` (hubfleet's
    /// `admin:environments!group=<g>`): unfiltered covers every profile; group filters cover a
    /// profile only when it is limited to groups (`Some`, not empty) that are all among them.
    /// A profile open to everyone (`None`) needs the unfiltered scope.
    pub fn covers_profile_groups(&self, allowed_groups: Option<&[String]>) -> bool {
        match self {
            ScopeFilters::All => true,
            ScopeFilters::Only(filters) => {
                let Some(held) = filters.get(&FilterKind::Group) else {
                    return false;
                };
                match allowed_groups {
                    Some(groups) if !groups.is_empty() => groups.iter().all(|g| held.contains(g)),
                    _ => false,
                }
            }
        }
    }
}

/// Expanded scopes grouped by base (`parse_scopes`): `read:users!user=alice` becomes
/// `{"read:users": Only({user: {"alice"}})}`.
///
/// Parse once per request and query many times. Entries without a usable filter (an
/// unresolved `!user`, an unknown filter kind, an empty value) are ignored: they cover nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedScopes {
    map: BTreeMap<String, ScopeFilters>,
}

impl ParsedScopes {
    /// Group expanded scope strings by base.
    pub fn parse<I, S>(expanded: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut map: BTreeMap<String, ScopeFilters> = BTreeMap::new();
        for scope in expanded {
            let scope = scope.as_ref();
            match scope.split_once('!') {
                None => {
                    map.insert(scope.to_string(), ScopeFilters::All);
                }
                Some((base, filter)) => {
                    let Some((kind, value)) = filter.split_once('=') else {
                        continue;
                    };
                    let Some(kind) = FilterKind::from_name(kind) else {
                        continue;
                    };
                    if value.is_empty() {
                        continue;
                    }
                    let entry = map
                        .entry(base.to_string())
                        .or_insert_with(|| ScopeFilters::Only(BTreeMap::new()));
                    if let ScopeFilters::Only(f) = entry {
                        f.entry(kind).or_default().insert(value.to_string());
                    }
                }
            }
        }
        ParsedScopes { map }
    }

    /// Back to expanded scope strings (`unparse_scopes`).
    pub fn to_scopes(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (base, filters) in &self.map {
            match filters {
                ScopeFilters::All => {
                    out.insert(base.clone());
                }
                ScopeFilters::Only(f) => {
                    for (kind, values) in f {
                        for v in values {
                            out.insert(format!("{base}!{kind}={v}"));
                        }
                    }
                }
            }
        }
        out
    }

    /// The filters held for `base`, if the base is held at all.
    pub fn get(&self, base: &str) -> Option<&ScopeFilters> {
        self.map.get(base)
    }

    /// Whether `base` is held with any filter.
    pub fn contains_base(&self, base: &str) -> bool {
        self.map.contains_key(base)
    }

    /// The held bases.
    pub fn bases(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    /// Whether `base` is held and covers `target` (see [`ScopeFilters::covers`]).
    pub fn covers(
        &self,
        base: &str,
        target: &Target<'_>,
        membership: &dyn GroupMembership,
    ) -> bool {
        self.get(base).is_some_and(|f| f.covers(target, membership))
    }

    /// Intersect two parsed scope sets, resolving the filter hierarchy
    /// (`_intersect_expanded_scopes`): `x!server=u/s` ⊂ `x!user=u`; `x!user=u` and
    /// `x!server=u/s` ⊂ `x!group=g` when `u` is in `g`.
    pub fn intersect(&self, other: &ParsedScopes, membership: &dyn GroupMembership) -> Self {
        let mut map = BTreeMap::new();
        for (base, fa) in &self.map {
            let Some(fb) = other.map.get(base) else {
                continue;
            };
            let common = match (fa, fb) {
                (ScopeFilters::All, x) | (x, ScopeFilters::All) => x.clone(),
                (ScopeFilters::Only(a), ScopeFilters::Only(b)) => {
                    ScopeFilters::Only(intersect_filters(a, b, membership))
                }
            };
            map.insert(base.clone(), common);
        }
        ParsedScopes { map }
    }
}

type FilterMap = BTreeMap<FilterKind, BTreeSet<String>>;

fn intersect_filters(a: &FilterMap, b: &FilterMap, membership: &dyn GroupMembership) -> FilterMap {
    let mut common: FilterMap = BTreeMap::new();
    for (kind, va) in a {
        if let Some(vb) = b.get(kind) {
            let both: BTreeSet<String> = va.intersection(vb).cloned().collect();
            if !both.is_empty() {
                common.insert(*kind, both);
            }
        }
    }
    let mut servers = common.remove(&FilterKind::Server).unwrap_or_default();
    let mut users = common.remove(&FilterKind::User).unwrap_or_default();
    let in_any_group = |user: &str, groups: Option<&BTreeSet<String>>| {
        groups.is_some_and(|gs| gs.iter().any(|g| membership.is_member(user, g)))
    };
    for (x, y) in [(a, b), (b, a)] {
        if let Some(xs) = x.get(&FilterKind::Server) {
            for server in xs {
                if servers.contains(server) {
                    continue;
                }
                let user = server.split_once('/').map_or(server.as_str(), |(u, _)| u);
                let by_user = y.get(&FilterKind::User).is_some_and(|us| us.contains(user));
                if by_user || in_any_group(user, y.get(&FilterKind::Group)) {
                    servers.insert(server.clone());
                }
            }
        }
        if let Some(xu) = x.get(&FilterKind::User) {
            for user in xu {
                if !users.contains(user) && in_any_group(user, y.get(&FilterKind::Group)) {
                    users.insert(user.clone());
                }
            }
        }
    }
    if !servers.is_empty() {
        common.insert(FilterKind::Server, servers);
    }
    if !users.is_empty() {
        common.insert(FilterKind::User, users);
    }
    common
}

/// Reduce expanded scopes to a minimal set (`reduce_scopes`): an unfiltered scope swallows
/// its filtered variants.
pub fn reduce_scopes<I, S>(expanded: I) -> BTreeSet<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    ParsedScopes::parse(expanded).to_scopes()
}

/// Intersect two sets of expanded scopes (e.g. token ∩ owner), resolving the
/// server ⊂ user ⊂ group hierarchy with `membership`.
pub fn intersect_scopes(
    a: &BTreeSet<String>,
    b: &BTreeSet<String>,
    membership: &dyn GroupMembership,
) -> BTreeSet<String> {
    ParsedScopes::parse(a)
        .intersect(&ParsedScopes::parse(b), membership)
        .to_scopes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reduce_unfiltered_swallows_filtered() {
        let cases: &[(&[&str], &[&str])] = &[
            (
                &["access:services", "access:services!service=x"],
                &["access:services"],
            ),
            (
                &["read:users!user=alice", "read:users", "read:users!group=g"],
                &["read:users"],
            ),
            (
                &[
                    "read:users!user=alice",
                    "read:users!user=bob",
                    "servers!server=a/",
                ],
                &[
                    "read:users!user=alice",
                    "read:users!user=bob",
                    "servers!server=a/",
                ],
            ),
            // unresolved self-referencing filters cover nothing
            (&["read:users!user", "tokens"], &["tokens"]),
            (&[], &[]),
        ];
        for (input, expected) in cases {
            assert_eq!(reduce_scopes(input.iter()), set(expected), "{input:?}");
        }
    }

    #[test]
    fn intersections() {
        let students = |u: &str, g: &str| g == "students" && (u == "alice" || u == "bob");
        // (a, b, membership-aware expected, expected without membership)
        type Case<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str], &'a [&'a str]);
        let cases: &[Case] = &[
            // unfiltered on one side keeps the other side's filters
            (
                &["read:users"],
                &["read:users!user=alice"],
                &["read:users!user=alice"],
                &["read:users!user=alice"],
            ),
            (&["read:users"], &["tokens"], &[], &[]),
            // server ⊂ user
            (
                &["access:servers!server=alice/"],
                &["access:servers!user=alice"],
                &["access:servers!server=alice/"],
                &["access:servers!server=alice/"],
            ),
            (
                &["access:servers!user=alice"],
                &[
                    "access:servers!server=alice/gpu",
                    "access:servers!server=bob/",
                ],
                &["access:servers!server=alice/gpu"],
                &["access:servers!server=alice/gpu"],
            ),
            // user ⊂ group, only with membership
            (
                &["read:users!user=alice", "read:users!user=carol"],
                &["read:users!group=students"],
                &["read:users!user=alice"],
                &[],
            ),
            (
                &["read:users!group=students"],
                &["read:users!user=bob"],
                &["read:users!user=bob"],
                &[],
            ),
            // server ⊂ group
            (
                &["access:servers!server=bob/x"],
                &["access:servers!group=students"],
                &["access:servers!server=bob/x"],
                &[],
            ),
            // same kinds intersect exactly
            (
                &["read:groups!group=a", "read:groups!group=b"],
                &["read:groups!group=b", "read:groups!group=c"],
                &["read:groups!group=b"],
                &["read:groups!group=b"],
            ),
            (
                &["access:services!service=x"],
                &["access:services!service=y"],
                &[],
                &[],
            ),
            // a server of another user is not inside a user filter
            (
                &["access:servers!user=alice"],
                &["access:servers!server=bob/"],
                &[],
                &[],
            ),
        ];
        for (a, b, expected, expected_no_db) in cases {
            let (a, b) = (set(a), set(b));
            assert_eq!(
                intersect_scopes(&a, &b, &students),
                set(expected),
                "{a:?} ∩ {b:?}"
            );
            assert_eq!(
                intersect_scopes(&b, &a, &students),
                set(expected),
                "{b:?} ∩ {a:?}"
            );
            assert_eq!(
                intersect_scopes(&a, &b, &NoGroups),
                set(expected_no_db),
                "{a:?} ∩ {b:?} without membership"
            );
        }
    }

    #[test]
    fn covers() {
        let parsed = ParsedScopes::parse([
            "read:users!user=alice",
            "read:users!group=students",
            "access:servers!server=bob/gpu",
            "read:groups!group=students",
            "access:services!service=cull",
            "proxy",
        ]);
        let m = BTreeMap::from([("carol".to_string(), vec!["students".to_string()])]);
        let yes = [
            ("read:users", Target::User("alice")),
            ("read:users", Target::User("carol")),
            ("read:users", Target::Server("alice", "")),
            ("read:users", Target::Server("carol", "x")),
            ("access:servers", Target::Server("bob", "gpu")),
            ("read:groups", Target::Group("students")),
            ("access:services", Target::Service("cull")),
            ("proxy", Target::None),
            ("proxy", Target::User("anyone")),
        ];
        for (base, target) in yes {
            assert!(parsed.covers(base, &target, &m), "{base} {target}");
        }
        let no = [
            ("read:users", Target::User("bob")),
            ("read:users", Target::None),
            ("access:servers", Target::Server("bob", "")),
            ("access:servers", Target::User("bob")),
            ("read:groups", Target::Group("teachers")),
            ("access:services", Target::Service("other")),
            ("tokens", Target::User("alice")),
        ];
        for (base, target) in no {
            assert!(!parsed.covers(base, &target, &m), "{base} {target}");
        }
    }
}
