//! Cross-module, table-driven tests against protocol §8 and JupyterHub 6.0 behaviour.

use std::collections::{BTreeMap, BTreeSet};

use crate::*;

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn alice() -> Owner {
    Owner::user("alice")
}

/// Every scope of the 6.0 table with its full (unfiltered) expansion, written out by hand from
/// protocol §8.1.
const EXPANSIONS: &[(&str, &[&str])] = &[
    ("(no_scope)", &["(no_scope)"]),
    ("self", &["self"]),
    ("inherit", &["inherit"]),
    ("admin-ui", &["admin-ui"]),
    (
        "admin:users",
        &[
            "admin:users",
            "admin:auth_state",
            "users",
            "read:users",
            "read:users:name",
            "read:users:groups",
            "read:users:activity",
            "list:users",
            "users:activity",
            "read:roles:users",
            "delete:users",
        ],
    ),
    ("admin:auth_state", &["admin:auth_state"]),
    (
        "users",
        &[
            "users",
            "read:users",
            "read:users:name",
            "read:users:groups",
            "read:users:activity",
            "list:users",
            "users:activity",
        ],
    ),
    ("delete:users", &["delete:users"]),
    ("list:users", &["list:users", "read:users:name"]),
    (
        "read:users",
        &[
            "read:users",
            "read:users:name",
            "read:users:groups",
            "read:users:activity",
        ],
    ),
    ("read:users:name", &["read:users:name"]),
    ("read:users:groups", &["read:users:groups"]),
    ("read:users:activity", &["read:users:activity"]),
    (
        "read:roles",
        &[
            "read:roles",
            "read:roles:users",
            "read:roles:services",
            "read:roles:groups",
        ],
    ),
    ("read:roles:users", &["read:roles:users"]),
    ("read:roles:services", &["read:roles:services"]),
    ("read:roles:groups", &["read:roles:groups"]),
    ("users:activity", &["users:activity", "read:users:activity"]),
    (
        "admin:servers",
        &[
            "admin:servers",
            "admin:server_state",
            "servers",
            "read:servers",
            "read:users:name",
            "start:servers",
            "delete:servers",
        ],
    ),
    ("admin:server_state", &["admin:server_state"]),
    (
        "servers",
        &[
            "servers",
            "read:servers",
            "read:users:name",
            "start:servers",
            "delete:servers",
        ],
    ),
    ("read:servers", &["read:servers", "read:users:name"]),
    ("start:servers", &["start:servers"]),
    ("delete:servers", &["delete:servers"]),
    ("tokens", &["tokens", "read:tokens"]),
    ("read:tokens", &["read:tokens"]),
    (
        "admin:groups",
        &[
            "admin:groups",
            "groups",
            "read:groups",
            "read:groups:name",
            "list:groups",
            "read:roles:groups",
            "delete:groups",
        ],
    ),
    (
        "groups",
        &["groups", "read:groups", "read:groups:name", "list:groups"],
    ),
    ("list:groups", &["list:groups", "read:groups:name"]),
    ("read:groups", &["read:groups", "read:groups:name"]),
    ("read:groups:name", &["read:groups:name"]),
    ("delete:groups", &["delete:groups"]),
    (
        "admin:services",
        &[
            "admin:services",
            "list:services",
            "read:services",
            "read:services:name",
            "read:roles:services",
        ],
    ),
    ("list:services", &["list:services", "read:services:name"]),
    ("read:services", &["read:services", "read:services:name"]),
    ("read:services:name", &["read:services:name"]),
    ("read:hub", &["read:hub"]),
    ("access:servers", &["access:servers"]),
    ("access:services", &["access:services"]),
    ("users:shares", &["users:shares", "read:users:shares"]),
    ("read:users:shares", &["read:users:shares"]),
    ("groups:shares", &["groups:shares", "read:groups:shares"]),
    ("read:groups:shares", &["read:groups:shares"]),
    ("read:shares", &["read:shares"]),
    (
        "shares",
        &[
            "shares",
            "access:servers",
            "read:shares",
            "users:shares",
            "read:users:shares",
            "groups:shares",
            "read:groups:shares",
        ],
    ),
    ("proxy", &["proxy"]),
    ("shutdown", &["shutdown"]),
    ("read:metrics", &["read:metrics"]),
    ("admin:hub", &["admin:hub"]),
    ("admin:environments", &["admin:environments"]),
];

#[test]
fn expansion_table_covers_every_scope() {
    let table: BTreeSet<&str> = EXPANSIONS.iter().map(|(s, _)| *s).collect();
    let known: BTreeSet<&str> = SCOPE_DEFINITIONS.iter().map(|d| d.name).collect();
    assert_eq!(table, known);
    assert_eq!(EXPANSIONS.len(), SCOPE_DEFINITIONS.len());
}

#[test]
fn every_scope_expands_fully() {
    for (scope, expected) in EXPANSIONS {
        assert_eq!(expand_scope(scope), set(expected), "expand_scope({scope})");
        if *scope == "self" {
            continue;
        }
        // through expand_scopes (owner-aware, reduced) the unfiltered expansion is the same
        assert_eq!(
            expand_scopes(&[*scope], &alice(), None),
            set(expected),
            "expand_scopes([{scope}])"
        );
    }
}

#[test]
fn every_scope_carries_its_filter() {
    for (scope, expected) in EXPANSIONS {
        if *scope == "self" {
            continue;
        }
        let with = |f: &str, drop_read_users: bool| -> BTreeSet<String> {
            expected
                .iter()
                .filter(|s| !(drop_read_users && s.starts_with("read:user")))
                .map(|s| format!("{s}!{f}"))
                .collect()
        };
        assert_eq!(
            expand_scopes(&[format!("{scope}!user=bob")], &alice(), None),
            with("user=bob", false),
            "{scope}!user=bob"
        );
        assert_eq!(
            expand_scopes(&[format!("{scope}!group=g")], &alice(), None),
            with("group=g", false),
            "{scope}!group=g"
        );
        // with a !server filter the read:users* subscopes are dropped
        assert_eq!(
            expand_scopes(&[format!("{scope}!server=bob/x")], &alice(), None),
            with("server=bob/x", true),
            "{scope}!server=bob/x"
        );
        // !user resolves to the owner
        assert_eq!(
            expand_scopes(&[format!("{scope}!user")], &alice(), None),
            with("user=alice", false),
            "{scope}!user"
        );
    }
}

#[test]
fn self_expands_for_a_user() {
    let expected: BTreeSet<String> = [
        "read:users",
        "read:users:name",
        "read:users:groups",
        "read:users:activity",
        "users:shares",
        "read:users:shares",
        "read:shares",
        "users:activity",
        "servers",
        "read:servers",
        "start:servers",
        "delete:servers",
        "tokens",
        "read:tokens",
        "access:servers",
    ]
    .iter()
    .map(|s| format!("{s}!user=alice"))
    .collect();
    assert_eq!(expected.len(), 15);
    assert_eq!(self_scopes("alice"), expected);
    assert_eq!(expand_scopes(&["self"], &alice(), None), expected);
    // `user` role
    assert_eq!(
        expand_scopes(&default_role("user").unwrap().scopes, &alice(), None),
        expected
    );
    // for a service `self` is nothing
    assert_eq!(
        expand_scopes(&["self"], &Owner::service("cull"), None),
        set(&[])
    );
}

#[test]
fn self_referencing_filters() {
    let me = alice();
    let cull = Owner::service("cull");
    let server_client = ClientRef::server("alice", "gpu");
    let service_client = ClientRef::service("announce");
    type Case<'a> = (
        &'a [&'a str],
        &'a Owner,
        Option<&'a ClientRef>,
        &'a [&'a str],
    );
    let cases: Vec<Case> = vec![
        // !user needs a user owner
        (&["read:users:name!user"], &cull, None, &[]),
        // !service → owning service, or the issuing service client
        (
            &["access:services!service"],
            &cull,
            None,
            &["access:services!service=cull"],
        ),
        (
            &["access:services!service"],
            &cull,
            Some(&service_client),
            &["access:services!service=announce"],
        ),
        (&["access:services!service"], &me, None, &[]),
        // !server → the issuing server client only
        (&["access:servers!server"], &me, None, &[]),
        (
            &["access:servers!server"],
            &me,
            Some(&server_client),
            &["access:servers!server=alice/gpu"],
        ),
        (
            &["servers!server"],
            &me,
            Some(&server_client),
            &[
                "servers!server=alice/gpu",
                "read:servers!server=alice/gpu",
                "start:servers!server=alice/gpu",
                "delete:servers!server=alice/gpu",
            ],
        ),
        // read:users* dropped with a !server filter, even the scope itself
        (&["read:users!server"], &me, Some(&server_client), &[]),
        // explicit filters are kept whoever the owner is
        (
            &["read:users!user=bob"],
            &cull,
            None,
            &[
                "read:users!user=bob",
                "read:users:name!user=bob",
                "read:users:groups!user=bob",
                "read:users:activity!user=bob",
            ],
        ),
        // invalid scopes are skipped by the lenient expansion
        (&["nonsense", "proxy"], &cull, None, &["proxy"]),
    ];
    for (raw, owner, client, expected) in cases {
        assert_eq!(
            expand_scopes(raw, owner, client),
            set(expected),
            "{raw:?} for {owner} via {client:?}"
        );
    }
    assert!(try_expand_scopes(&["nonsense"], &cull, None, &CustomScopes::default()).is_err());
}

#[test]
fn expansion_reduces() {
    assert_eq!(
        expand_scopes(
            &[
                "read:users",
                "read:users!user=bob",
                "read:users:name!group=g",
                "list:users"
            ],
            &alice(),
            None
        ),
        set(&[
            "list:users",
            "read:users",
            "read:users:activity",
            "read:users:groups",
            "read:users:name"
        ])
    );
    assert_eq!(
        expand_scopes(&["self", "access:servers"], &alice(), None)
            .iter()
            .filter(|s| s.starts_with("access:servers"))
            .collect::<Vec<_>>(),
        ["access:servers"]
    );
}

#[test]
fn server_token_for_default_server() {
    let client = ClientRef::server("alice", "");
    let server_role = default_role("server").unwrap();
    assert_eq!(
        expand_scopes(&server_role.scopes, &alice(), Some(&client)),
        set(&[
            "users:activity!user=alice",
            "read:users:activity!user=alice",
            "access:servers!server=alice/",
        ])
    );

    // the spawn path: !server resolved at spawn time, then resolved against the user's roles
    let requested = server_token_request_scopes(&[] as &[&str], "alice", "");
    assert_eq!(
        requested,
        set(&["users:activity!user", "access:servers!server=alice/"])
    );
    let have = set(&["self", "inherit"]);
    let (allowed, disallowed) =
        resolve_requested_scopes(&requested, &have, &alice(), None, &NoGroups);
    assert_eq!(allowed, requested);
    assert!(disallowed.is_empty());
    let raw: Vec<String> = allowed.into_iter().collect();
    assert_eq!(
        expand_scopes(&raw, &alice(), None),
        set(&[
            "users:activity!user=alice",
            "read:users:activity!user=alice",
            "access:servers!server=alice/",
        ])
    );
    let owner = owner_scopes(&["self"], &[] as &[&str], &alice());
    assert_eq!(
        token_scopes(&raw, &owner, &alice(), None, &NoGroups),
        set(&[
            "access:servers!server=alice/",
            "read:users:activity!user=alice",
            "read:users:groups!user=alice",
            "read:users:name!user=alice",
            "users:activity!user=alice",
        ])
    );

    // configured scopes: activity scope is added when missing, kept when present
    assert_eq!(
        server_token_request_scopes(
            &["read:users:name!user", "access:servers!server"],
            "bob",
            "gpu"
        ),
        set(&[
            "access:servers!server=bob/gpu",
            "read:users:name!user",
            "users:activity!user"
        ])
    );
    assert_eq!(
        server_token_request_scopes(&["inherit"], "bob", ""),
        set(&["inherit"])
    );
}

#[test]
fn oauth_token_for_default_server_matches_get_user_example() {
    let me = alice();
    let client = ClientRef::server("alice", "");
    // default config: Spawner.oauth_client_allowed_scopes = [] ∪ the access scope
    let allowed_scopes = ["access:servers!server=alice/"];
    let requested = oauth_client_default_scopes(&allowed_scopes, &client);
    assert_eq!(
        requested,
        set(&[
            "access:servers!server=alice/",
            "read:users:groups!user",
            "read:users:name!user",
        ])
    );
    // authorize: the user's raw role scopes ∪ inherit ∪ required scopes
    let mut have = roles_to_scopes(&[default_role("user").unwrap()]);
    have.insert(INHERIT.to_string());
    have.extend(oauth_required_scopes(&client));
    let (granted, refused) =
        resolve_requested_scopes(&requested, &have, &me, Some(&client), &NoGroups);
    assert!(refused.is_empty());
    // token: raw scopes of the code, used with the owner's current scopes
    let raw: Vec<String> = granted.into_iter().collect();
    let owner = owner_scopes(&["self"], &[] as &[&str], &me);
    let held = token_scopes(&raw, &owner, &me, Some(&client), &NoGroups);
    let identity = self_identity(&held, &me);
    assert_eq!(
        identity.reported_scopes,
        [
            "access:servers!server=alice/",
            "read:users:groups!user=alice",
            "read:users:name!user=alice"
        ]
    );
    assert_eq!(identity.model_scopes, held);
    // the RequestIdentity example's keys (no read:servers → no `servers`)
    assert_eq!(
        user_model_keys(&identity.model_scopes, "alice", &NoGroups),
        ["admin", "groups", "kind", "name", "user_info"]
            .into_iter()
            .collect::<BTreeSet<_>>()
    );
    // and the singleuser's access check passes
    assert!(has_scope(
        "access:servers",
        &Target::Server("alice", ""),
        &held,
        &NoGroups
    )
    .is_granted());
}

#[test]
fn self_identity_hides_added_identify_scopes() {
    let held = set(&["access:servers!server=alice/"]);
    let identity = self_identity(&held, &alice());
    assert_eq!(identity.reported_scopes, ["access:servers!server=alice/"]);
    assert_eq!(
        identity.model_scopes,
        set(&[
            "access:servers!server=alice/",
            "read:users:groups!user=alice",
            "read:users:name!user=alice"
        ])
    );
    let svc = self_identity(&set(&[]), &Owner::service("cull"));
    assert_eq!(svc.model_scopes, set(&["read:services:name!service=cull"]));
    assert!(svc.reported_scopes.is_empty());
}

#[test]
fn token_cannot_exceed_owner() {
    let me = alice();
    let owner = owner_scopes(&["self"], &[] as &[&str], &me);
    // asks for admin and all users; gets only alice's part of what self grants
    let held = token_scopes(
        &["admin:users", "read:users", "access:servers", "read:hub"],
        &owner,
        &me,
        None,
        &NoGroups,
    );
    assert_eq!(
        held,
        set(&[
            "access:servers!user=alice",
            "read:users!user=alice",
            "read:users:activity!user=alice",
            "read:users:groups!user=alice",
            "read:users:name!user=alice",
            "users:activity!user=alice",
        ])
    );
    // inherit: exactly the owner's scopes
    assert_eq!(
        token_scopes(&["inherit"], &owner, &me, None, &NoGroups),
        owner
    );
    // revoking a role shrinks the token immediately: owner without roles
    let nothing = owner_scopes(&[] as &[&str], &[] as &[&str], &me);
    assert!(token_scopes(&["self"], &nothing, &me, None, &NoGroups).is_empty());

    // creating such a token is refused, listing what the owner lacks
    let err = check_token_scopes(
        &["read:users!user=alice", "read:hub"],
        &owner,
        &me,
        None,
        &NoGroups,
    )
    .unwrap_err();
    assert_eq!(
        err,
        RbacError::ScopesNotHeld {
            scopes: vec!["read:hub".into()],
            owner: "User alice".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "not assigning requested scopes read:hub not held by User alice"
    );
    assert_eq!(
        check_token_scopes(
            &["read:users!user", "inherit"],
            &owner,
            &me,
            None,
            &NoGroups
        ),
        Ok(())
    );
    assert_eq!(
        check_token_scopes(
            &["access:servers!server=alice/x"],
            &owner,
            &me,
            None,
            &NoGroups
        ),
        Ok(())
    );
}

#[test]
fn token_intersection_uses_group_membership() {
    // a grader role on group students; token asks for one student's servers
    let grader = Owner::User {
        name: "gina".into(),
        groups: vec!["teachers".into()],
    };
    let owner = owner_scopes(
        &["self", "access:servers!group=students"],
        &[] as &[&str],
        &grader,
    );
    let membership = BTreeMap::from([
        ("sam".to_string(), vec!["students".to_string()]),
        ("tom".to_string(), vec!["other".to_string()]),
    ]);
    let held = token_scopes(
        &["access:servers!server=sam/", "access:servers!user=tom"],
        &owner,
        &grader,
        None,
        &membership,
    );
    assert!(held.contains("access:servers!server=sam/"), "{held:?}");
    assert!(!held.iter().any(|s| s.contains("tom")), "{held:?}");
    // without membership the group filter can't be resolved
    let held = token_scopes(
        &["access:servers!server=sam/"],
        &owner,
        &grader,
        None,
        &NoGroups,
    );
    assert!(!held.contains("access:servers!server=sam/"));
}

#[test]
fn owner_scopes_include_shares_and_admin() {
    let bob = Owner::user("bob");
    let scopes = owner_scopes(&["self"], &["access:servers!server=alice/"], &bob);
    assert!(scopes.contains("access:servers!server=alice/"));
    assert!(scopes.contains("access:servers!user=bob"));
    let admin = owner_scopes(&default_role("admin").unwrap().scopes, &[] as &[&str], &bob);
    for s in [
        "admin:users",
        "admin:auth_state",
        "start:servers",
        "admin:server_state",
        "read:tokens",
        "delete:groups",
        "read:roles:services",
        "read:users:shares",
        "access:servers",
        "read:metrics",
    ] {
        assert!(admin.contains(s), "admin lacks {s}");
    }
    // admin plus user: unfiltered swallows self's filtered scopes
    let both = owner_scopes(
        &[
            "self",
            "admin-ui",
            "admin:users",
            "admin:servers",
            "tokens",
            "access:servers",
            "shares",
        ],
        &[] as &[&str],
        &bob,
    );
    assert!(!both.iter().any(|s| s.contains('!')), "{both:?}");
}

#[test]
fn has_scope_distinguishes_403_and_404() {
    let held = expand_scopes(&["self", "read:groups!group=students"], &alice(), None);
    let m = |u: &str, g: &str| u == "carol" && g == "students";
    let cases: &[(&str, Target<'_>, Access)] = &[
        ("read:users", Target::User("alice"), Access::Granted),
        ("read:users", Target::User("bob"), Access::NotCovered),
        (
            "start:servers",
            Target::Server("alice", "gpu"),
            Access::Granted,
        ),
        (
            "start:servers",
            Target::Server("bob", ""),
            Access::NotCovered,
        ),
        ("admin:users", Target::User("alice"), Access::Missing),
        (
            "admin:server_state",
            Target::Server("alice", ""),
            Access::Missing,
        ),
        // no target: filtered-only is not enough without post-filtering
        ("read:users", Target::None, Access::Missing),
        ("read:groups", Target::Group("students"), Access::Granted),
        ("read:groups", Target::Group("teachers"), Access::NotCovered),
        (
            "read:groups:name",
            Target::Group("students"),
            Access::Granted,
        ),
        ("read:services", Target::Service("x"), Access::Missing),
        ("tokens", Target::User("alice"), Access::Granted),
    ];
    for (req, target, expected) in cases {
        assert_eq!(
            has_scope(req, target, &held, &m),
            *expected,
            "{req} on {target}"
        );
    }
    assert_eq!(Access::NotCovered.status(), Some(404));
    assert_eq!(Access::Missing.status(), Some(403));
    assert_eq!(Access::Granted.status(), None);
    assert_eq!(
        Access::Missing
            .message(&["admin:users", "read:users"])
            .unwrap(),
        "Action is not authorized with current scopes; requires any of [admin:users, read:users]"
    );
    assert_eq!(
        Access::NotCovered.message(&["read:users"]).unwrap(),
        "No access to resources or resources not found"
    );

    // group filters cover users and servers of members
    let grp = set(&["access:servers!group=students", "read:users!group=students"]);
    assert!(has_scope("access:servers", &Target::Server("carol", "x"), &grp, &m).is_granted());
    assert!(has_scope("read:users", &Target::User("carol"), &grp, &m).is_granted());
    assert_eq!(
        has_scope("read:users", &Target::User("carol"), &grp, &NoGroups),
        Access::NotCovered
    );
    // an unfiltered scope covers everything, including no target
    let admin = set(&["read:users"]);
    assert!(has_scope("read:users", &Target::None, &admin, &NoGroups).is_granted());
    assert!(has_scope("read:users", &Target::User("zed"), &admin, &NoGroups).is_granted());
}

#[test]
fn needs_any_scope_and_post_filter() {
    let held = ParsedScopes::parse(expand_scopes(&["self"], &alice(), None));
    // GET /users/{name}: any of these
    let req = [
        "read:users",
        "read:users:name",
        "read:users:groups",
        "read:users:activity",
    ];
    assert_eq!(
        needs_any_scope(&req, &Target::User("alice"), &held, &NoGroups),
        Access::Granted
    );
    assert_eq!(
        needs_any_scope(&req, &Target::User("bob"), &held, &NoGroups),
        Access::NotCovered
    );
    assert_eq!(
        needs_any_scope(&["admin:users"], &Target::User("bob"), &held, &NoGroups),
        Access::Missing
    );
    // GET /users: filtered access passes, then the list is filtered
    assert_eq!(
        needs_any_scope_post_filter(&["list:users"], &held),
        Access::Missing
    );
    assert_eq!(
        has_scope_post_filter("read:users:name", &held.to_scopes()),
        Access::Granted
    );
    let users = vec!["alice", "bob", "carol"];
    let visible = post_filter(users, "read:users:name", &held, &NoGroups, |u| {
        Target::User(u)
    });
    assert_eq!(visible, ["alice"]);
    let servers = vec![("alice", ""), ("alice", "gpu"), ("bob", "")];
    let visible = post_filter(servers, "read:servers", &held, &NoGroups, |(u, s)| {
        Target::Server(u, s)
    });
    assert_eq!(visible, [("alice", ""), ("alice", "gpu")]);
    assert!(
        post_filter(vec!["alice"], "admin:users", &held, &NoGroups, |u| {
            Target::User(u)
        })
        .is_empty()
    );
}

#[test]
fn vertical_filtering_of_models() {
    let all_user_keys = [
        "kind",
        "name",
        "user_info",
        "admin",
        "roles",
        "groups",
        "server",
        "pending",
        "created",
        "last_activity",
        "servers",
        "auth_state",
    ];
    let user_cases: &[(&[&str], &[&str])] = &[
        (&[], &[]),
        (
            &["read:users!user=alice"],
            &[
                "kind",
                "name",
                "user_info",
                "admin",
                "roles",
                "groups",
                "server",
                "pending",
                "created",
                "last_activity",
            ],
        ),
        (
            &["read:users:name!user=alice"],
            &["kind", "name", "user_info", "admin"],
        ),
        (&["read:users:groups"], &["kind", "name", "groups"]),
        (
            &["read:users:activity!user=alice"],
            &["kind", "name", "last_activity"],
        ),
        // read:servers implies read:users:name
        (
            &["read:servers!user=alice"],
            &["kind", "name", "servers", "user_info", "admin"],
        ),
        (&["read:roles:users"], &["kind", "name", "roles", "admin"]),
        (
            &["admin:auth_state!user=alice"],
            &["kind", "name", "auth_state"],
        ),
        // another user's filter reveals nothing
        (&["read:users!user=bob"], &[]),
        // a server filter is not a user filter
        (&["read:servers!server=alice/"], &[]),
        // group filter through membership
        (
            &["read:users:activity!group=staff"],
            &["kind", "name", "last_activity"],
        ),
        (&["admin:users", "admin:servers"], &all_user_keys),
    ];
    let m = |u: &str, g: &str| u == "alice" && g == "staff";
    for (held, expected) in user_cases {
        let held = expand_scopes(held, &Owner::service("svc"), None);
        let keys = user_model_keys(&held, "alice", &m);
        let expected: BTreeSet<&str> = expected.iter().copied().collect();
        assert_eq!(keys, expected, "{held:?}");
    }

    let group_cases: &[(&[&str], &[&str])] = &[
        (&["read:groups"], &["kind", "name", "properties", "users"]),
        (&["read:groups:name!group=g"], &["kind", "name"]),
        (&["read:roles:groups!group=g"], &["kind", "name", "roles"]),
        (&["list:groups!group=g"], &["kind", "name"]),
        (&["read:groups!group=other"], &[]),
        (
            &["admin:groups"],
            &["kind", "name", "properties", "users", "roles"],
        ),
    ];
    for (held, expected) in group_cases {
        let held = expand_scopes(held, &alice(), None);
        let expected: BTreeSet<&str> = expected.iter().copied().collect();
        assert_eq!(group_model_keys(&held, "g"), expected, "{held:?}");
    }

    let service_cases: &[(&[&str], &[&str])] = &[
        (
            &["read:services"],
            &[
                "kind", "name", "admin", "url", "prefix", "command", "pid", "info", "display",
            ],
        ),
        (
            &["read:services:name!service=s"],
            &["kind", "name", "admin"],
        ),
        (
            &["read:roles:services"],
            &["kind", "name", "roles", "admin"],
        ),
        (&["list:services!service=s"], &["kind", "name", "admin"]),
        (&["read:services!service=t"], &[]),
        (
            &["admin:services"],
            &[
                "kind", "name", "admin", "url", "prefix", "command", "pid", "info", "display",
                "roles",
            ],
        ),
    ];
    for (held, expected) in service_cases {
        let held = expand_scopes(held, &alice(), None);
        let expected: BTreeSet<&str> = expected.iter().copied().collect();
        assert_eq!(service_model_keys(&held, "s"), expected, "{held:?}");
    }
}

#[test]
fn resolve_requested_scopes_partial_grant() {
    let me = alice();
    let client = ClientRef::service("announce");
    let requested = set(&[
        "read:users",
        "access:services!service",
        "read:users:name!user",
    ]);
    let mut have = set(&["self", "inherit"]);
    have.extend(oauth_required_scopes(&client));
    let (allowed, disallowed) =
        resolve_requested_scopes(&requested, &have, &me, Some(&client), &NoGroups);
    // read:users is only granted on alice
    assert_eq!(disallowed, set(&["read:users"]));
    assert_eq!(
        allowed,
        set(&[
            "access:services!service",
            "read:users!user=alice",
            "read:users:activity!user=alice",
            "read:users:groups!user=alice",
            "read:users:name!user",
            "read:users:name!user=alice",
        ])
    );
}

#[test]
fn custom_scopes_expand_with_definitions() {
    let custom = CustomScopes::new(BTreeMap::from([
        (
            "custom:js:read".to_string(),
            CustomScopeDef {
                description: "read".into(),
                subscopes: vec!["custom:js:read:contents".into()],
            },
        ),
        (
            "custom:js:read:contents".to_string(),
            CustomScopeDef {
                description: "contents".into(),
                subscopes: vec![],
            },
        ),
    ]))
    .unwrap();
    assert_eq!(
        expand_scopes_with(&["custom:js:read!user"], Some(&alice()), None, &custom),
        set(&[
            "custom:js:read!user=alice",
            "custom:js:read:contents!user=alice"
        ])
    );
    // without definitions a well-formed custom scope is a leaf
    assert_eq!(
        expand_scopes(&["custom:js:read"], &alice(), None),
        set(&["custom:js:read"])
    );
    assert_eq!(custom.description("custom:js:read"), Some("read"));
    assert_eq!(
        custom.description("proxy"),
        scope_definition("proxy").map(|d| d.description)
    );
    assert!(try_expand_scopes(&["custom:nope"], &alice(), None, &custom).is_err());
}

#[test]
fn identify_and_access_scopes() {
    assert_eq!(
        identify_scopes(&alice()),
        set(&["read:users:groups!user=alice", "read:users:name!user=alice"])
    );
    assert_eq!(
        identify_scopes(&Owner::service("cull")),
        set(&["read:services:name!service=cull"])
    );
    assert_eq!(
        identify_scopes_raw(),
        set(&["read:users:groups!user", "read:users:name!user"])
    );
    assert_eq!(
        access_scopes(&ClientRef::server("alice", "")),
        set(&["access:servers!server=alice/"])
    );
    assert_eq!(
        access_scopes(&ClientRef::server("alice", "gpu")),
        set(&["access:servers!server=alice/gpu"])
    );
    assert_eq!(
        access_scopes(&ClientRef::service("cull")),
        set(&["access:services!service=cull"])
    );
    // a service client with inherit in its allowed scopes gets no extra defaults
    assert_eq!(
        oauth_client_default_scopes(&["inherit"], &ClientRef::service("x")),
        set(&["inherit"])
    );
    // a service-owned OAuth-less token gets its identify scope if the service may read itself
    let svc = Owner::service("cull");
    let owner = owner_scopes(
        &["list:users", "read:services!service"],
        &[] as &[&str],
        &svc,
    );
    assert_eq!(
        token_scopes(&["list:users"], &owner, &svc, None, &NoGroups),
        set(&[
            "list:users",
            "read:services:name!service=cull",
            "read:users:name"
        ])
    );
}

#[test]
fn environments_scope_filtered_by_group_covers_only_profiles_within_the_group() {
    let parsed = crate::ParsedScopes::parse(["admin:environments!group=class-a"]);
    let filters = parsed.get("admin:environments").unwrap();
    let class_a = vec!["class-a".to_string()];
    let both = vec!["class-a".to_string(), "class-b".to_string()];
    assert!(filters.covers_profile_groups(Some(&class_a)));
    assert!(!filters.covers_profile_groups(Some(&both)));
    assert!(!filters.covers_profile_groups(None));
    assert!(!filters.covers_profile_groups(Some(&[])));
    let all = crate::ParsedScopes::parse(["admin:environments"]);
    assert!(all
        .get("admin:environments")
        .unwrap()
        .covers_profile_groups(None));
}
