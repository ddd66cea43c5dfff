//! `hub.services`, `hub.loadRoles`, named servers, `cull` and `hubfleet.culler`: values,
//! defaults, and every error (with file, line and key path).

use std::path::PathBuf;

use hubfleet_config::{ConfigError, CullerKind, HubConfig, RoleConfig, ServiceConfig};

fn load(yaml: &str) -> HubConfig {
    HubConfig::from_yaml_str(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"))
}

struct Invalid {
    display: String,
    line: usize,
    key: Option<String>,
}

#[track_caller]
fn invalid(yaml: &str) -> Invalid {
    match HubConfig::from_yaml_str(yaml, "/etc/hub.yaml") {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e @ ConfigError::Invalid { .. }) => Invalid {
            display: e.to_string(),
            line: e.line().unwrap(),
            key: e.key().map(str::to_owned),
        },
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

#[track_caller]
fn assert_contains(haystack: &str, needle: &str) {
    assert!(haystack.contains(needle), "{needle:?} not in:\n{haystack}");
}

// ----- defaults ------------------------------------------------------------------------------

#[test]
fn defaults() {
    let c = HubConfig::default();
    assert!(c.hub.services.is_empty());
    assert!(c.hub.load_roles.is_empty());
    assert_eq!(c.hub.allow_named_servers, None);
    assert_eq!(c.hub.named_server_limit_per_user, None);
    assert_eq!(c.hub.config.jupyterhub.allow_named_servers, None);
    assert_eq!(c.hub.config.jupyterhub.named_server_limit_per_user, None);
    assert!(!c.allow_named_servers());
    assert_eq!(c.named_server_limit_per_user(), 0);

    let cull = &c.cull;
    assert!(cull.enabled);
    assert!(!cull.users);
    assert!(cull.admin_users);
    assert!(!cull.remove_named_servers);
    assert_eq!(cull.timeout, 3600);
    assert_eq!(cull.every, 600);
    assert_eq!(cull.concurrency, 10);
    assert_eq!(cull.max_age, 0);
    assert_eq!(c.hubfleet.culler, CullerKind::Auto);

    let s = ServiceConfig::default();
    assert!(!s.admin);
    assert!(s.display);
    assert_eq!(s.url, None);
    assert_eq!(s.api_token, None);
    assert_eq!(s.command, None);
    assert!(s.environment.is_empty());
    assert!(s.info.is_empty());
    assert!(!s.oauth_no_confirm);
    assert!(s.oauth_client_allowed_scopes.is_empty());
    assert_eq!(s.oauth_redirect_uri, None);
    assert_eq!(s.oauth_client_id, None);
    assert_eq!(s.name, None);
    assert_eq!(s.cwd, None);
    assert_eq!(RoleConfig::default().scopes, Vec::<String>::new());
}

#[test]
fn empty_values_give_defaults() {
    for yaml in [
        "hub:\n  services:\n  loadRoles:\n  allowNamedServers:\n  namedServerLimitPerUser:\n",
        "hub:\n  services: {}\n  loadRoles: {}\n  config:\n    JupyterHub:\n      allow_named_servers:\n      named_server_limit_per_user:\n",
        "cull:\n",
        "cull: {}\n",
        "cull:\n  enabled:\n  users:\n  adminUsers:\n  removeNamedServers:\n  timeout:\n  every:\n  concurrency:\n  maxAge:\n",
        "hubfleet:\n  culler:\n",
    ] {
        let mut config = load(yaml);
        // the document as written is kept beside the configuration; compare the configuration
        config.values = Default::default();
        assert_eq!(config, HubConfig::default(), "for {yaml:?}");
    }
}

// ----- hub.services --------------------------------------------------------------------------

#[test]
fn services_every_key() {
    let c = load(
        "hub:
  services:
    grader:
      admin: true
      url: http://127.0.0.1:10101
      api_token: super-secret-token
      command: [python3, -m, grader, --port=10101]
      environment:
        GRADER_MODE: strict
        WORKERS: 4
        DEBUG: false
      display: false
      info:
        version: 2
        tags: [a, b]
        owner: {name: alice}
      oauth_no_confirm: true
      oauth_client_allowed_scopes: [\"access:services!service=grader\", read:users]
      oauth_redirect_uri: https://grader.example.org/oauth_callback
      oauth_client_id: service-grader
      name: grader
      cwd: /srv/grader
    my.external_svc-2:
      apiToken: z2jh-spelled-token
      command: my-service
    empty:
    braces: {}
",
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let names: Vec<&str> = c.hub.services.keys().map(String::as_str).collect();
    assert_eq!(names, ["braces", "empty", "grader", "my.external_svc-2"]);

    let g = &c.hub.services["grader"];
    assert!(g.admin);
    assert_eq!(g.url.as_deref(), Some("http://127.0.0.1:10101"));
    assert_eq!(g.api_token.as_deref(), Some("super-secret-token"));
    assert_eq!(
        g.command.as_deref().unwrap(),
        ["python3", "-m", "grader", "--port=10101"]
    );
    assert_eq!(g.environment["GRADER_MODE"], "strict");
    assert_eq!(g.environment["WORKERS"], "4");
    assert_eq!(g.environment["DEBUG"], "false");
    assert!(!g.display);
    assert_eq!(g.info["version"], serde_json::json!(2));
    assert_eq!(g.info["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(g.info["owner"], serde_json::json!({"name": "alice"}));
    assert!(g.oauth_no_confirm);
    assert_eq!(
        g.oauth_client_allowed_scopes,
        ["access:services!service=grader", "read:users"]
    );
    assert_eq!(
        g.oauth_redirect_uri.as_deref(),
        Some("https://grader.example.org/oauth_callback")
    );
    assert_eq!(g.oauth_client_id.as_deref(), Some("service-grader"));
    assert_eq!(g.name.as_deref(), Some("grader"));
    assert_eq!(g.cwd, Some(PathBuf::from("/srv/grader")));

    let x = &c.hub.services["my.external_svc-2"];
    assert_eq!(x.api_token.as_deref(), Some("z2jh-spelled-token"));
    // A string command is one program name, not split on spaces.
    assert_eq!(x.command.as_deref().unwrap(), ["my-service"]);
    assert!(x.display);

    assert_eq!(c.hub.services["empty"], ServiceConfig::default());
    assert_eq!(c.hub.services["braces"], ServiceConfig::default());
}

#[test]
fn service_token_is_redacted_in_debug_output() {
    let c = load("hub:\n  services:\n    s:\n      api_token: super-secret-token\n");
    let debug = format!("{c:?}");
    assert!(!debug.contains("super-secret-token"), "{debug}");
    assert_contains(&debug, "<redacted>");
}

#[test]
fn redirect_uri_may_be_a_path() {
    let c =
        load("hub:\n  services:\n    s:\n      oauth_redirect_uri: /services/s/oauth_callback\n");
    assert_eq!(
        c.hub.services["s"].oauth_redirect_uri.as_deref(),
        Some("/services/s/oauth_callback")
    );
}

#[test]
fn settings_of_a_service_the_hub_does_not_start_warn() {
    let c = load("hub:\n  services:\n    s:\n      url: http://127.0.0.1:9000\n      cwd: /srv\n      environment:\n        A: b\n");
    let w: Vec<(String, usize)> = c.warnings.iter().map(|w| (w.key.clone(), w.line)).collect();
    assert_eq!(
        w,
        [
            ("hub.services.s.cwd".to_owned(), 5),
            ("hub.services.s.environment".to_owned(), 6)
        ]
    );
    assert_contains(&c.warnings[0].message, "has no effect");
}

#[test]
fn bad_service_names() {
    for name in ["\"my service\"", "\"a/b\"", "\"é\"", "\"\""] {
        let e = invalid(&format!(
            "hub:\n  services:\n    ok: {{}}\n    {name}:\n      admin: true\n"
        ));
        assert_eq!(e.line, 4, "{}", e.display);
        assert_contains(&e.display, "is not a valid service name");
        assert_contains(&e.display, "/etc/hub.yaml:4:5: hub.services.");
    }
}

#[test]
fn service_name_must_match_its_key() {
    let e = invalid("hub:\n  services:\n    grader:\n      name: other\n");
    assert_eq!(e.line, 4);
    assert_eq!(e.key.as_deref(), Some("hub.services.grader.name"));
    assert_contains(
        &e.display,
        "hub.services.grader.name: is `other` but the entry is keyed `grader`",
    );
}

#[test]
fn short_service_tokens() {
    let e = invalid("hub:\n  services:\n    s:\n      admin: true\n      api_token: short\n");
    assert_eq!(e.line, 5);
    assert_eq!(e.key.as_deref(), Some("hub.services.s.api_token"));
    assert_contains(&e.display, "must be at least 8 characters long");
    assert!(!e.display.contains("short\""), "{}", e.display);

    let e = invalid("hub:\n  services:\n    s:\n      apiToken: short\n");
    assert_eq!(e.line, 4);
    assert_eq!(e.key.as_deref(), Some("hub.services.s.apiToken"));
}

#[test]
fn errors_under_a_dotted_service_name_find_their_line() {
    let e =
        invalid("hub:\n  services:\n    my.svc:\n      display: true\n      api_token: short\n");
    assert_eq!(e.line, 5);
    assert_eq!(e.key.as_deref(), Some("hub.services.my.svc.api_token"));
}

#[test]
fn both_token_spellings_are_refused() {
    let e = invalid(
        "hub:\n  services:\n    s:\n      api_token: token-one-1234\n      apiToken: token-one-1234\n",
    );
    assert_eq!(e.line, 5);
    assert_eq!(e.key.as_deref(), Some("hub.services.s.apiToken"));
    assert_contains(&e.display, "so is `api_token` (line 4)");
}

#[test]
fn bad_service_values() {
    for (yaml, line, key, needle) in [
        (
            "hub:\n  services:\n    s:\n      url: ftp://x.org\n",
            4,
            "hub.services.s.url",
            "must start with `http://` or `https://`",
        ),
        (
            "hub:\n  services:\n    s:\n      url: not a url\n",
            4,
            "hub.services.s.url",
            "is not a valid URL",
        ),
        (
            "hub:\n  services:\n    s:\n      command: []\n",
            4,
            "hub.services.s.command",
            "the command list is empty; remove `command`",
        ),
        (
            "hub:\n  services:\n    s:\n      command: 42\n",
            4,
            "hub.services.s.command",
            "expected a command",
        ),
        (
            "hub:\n  services:\n    s:\n      command: x\n      environment:\n        A:\n",
            6,
            "hub.services.s.environment.A",
            "the variable has no value",
        ),
        (
            "hub:\n  services:\n    s:\n      environment: [A]\n",
            4,
            "hub.services.s.environment",
            "expected a mapping of variable names to values",
        ),
        (
            "hub:\n  services:\n    s:\n      display: yes please\n",
            4,
            "hub.services.s.display",
            "expected `true` or `false`",
        ),
        (
            "hub:\n  services:\n    s:\n      info: [a]\n",
            4,
            "hub.services.s.info",
            "invalid type",
        ),
        (
            "hub:\n  services:\n    s:\n      oauth_client_allowed_scopes: read:users\n",
            4,
            "hub.services.s.oauth_client_allowed_scopes",
            "expected a list of strings",
        ),
        (
            "hub:\n  services:\n    s:\n      oauth_redirect_uri: callback\n",
            4,
            "hub.services.s.oauth_redirect_uri",
            "nor a path starting with `/`",
        ),
        (
            "hub:\n  services:\n    s:\n      oauth_client_id: binder\n",
            4,
            "hub.services.s.oauth_client_id",
            "must start with `service-`",
        ),
        (
            "hub:\n  services:\n    s:\n      cwd: \"\"\n",
            4,
            "hub.services.s.cwd",
            "the path is empty",
        ),
        (
            "hub:\n  services: [a, b]\n",
            2,
            "hub.services",
            "expected a mapping of names to settings",
        ),
        (
            "hub:\n  services:\n    s: true\n",
            3,
            "hub.services.s",
            "expected a mapping",
        ),
    ] {
        let e = invalid(yaml);
        assert_eq!(e.line, line, "{yaml:?}: {}", e.display);
        assert_eq!(e.key.as_deref(), Some(key), "{yaml:?}: {}", e.display);
        assert_contains(&e.display, needle);
    }
}

#[test]
fn unknown_service_key_suggests_the_spelling() {
    let e = invalid("hub:\n  services:\n    s:\n      oauth_no_confirmation: true\n");
    assert_eq!(e.line, 4);
    assert_eq!(
        e.key.as_deref(),
        Some("hub.services.s.oauth_no_confirmation")
    );
    assert_contains(&e.display, "did you mean `oauth_no_confirm`?");
    let e = invalid("hub:\n  services:\n    s:\n      user: nobody\n");
    assert_eq!(e.key.as_deref(), Some("hub.services.s.user"));
}

// ----- hub.loadRoles -------------------------------------------------------------------------

#[test]
fn roles_every_key() {
    let c = load(
        "hub:
  loadRoles:
    teacher:
      name: teacher
      description: Access to users' information and group membership
      scopes: [users, groups, \"not-a-real-scope!\"]
      users: [erik]
      groups: [teachers]
      services: [grading-service]
    user:
      scopes:
        - self
        - access:services!service=binder
    a.b~c_d-1:
",
    );
    let t = &c.hub.load_roles["teacher"];
    assert_eq!(t.name.as_deref(), Some("teacher"));
    assert_eq!(
        t.description.as_deref(),
        Some("Access to users' information and group membership")
    );
    // Scopes are not checked here: the hub checks them.
    assert_eq!(t.scopes, ["users", "groups", "not-a-real-scope!"]);
    assert_eq!(t.users, ["erik"]);
    assert_eq!(t.groups, ["teachers"]);
    assert_eq!(t.services, ["grading-service"]);
    assert_eq!(
        c.hub.load_roles["user"].scopes,
        ["self", "access:services!service=binder"]
    );
    assert_eq!(c.hub.load_roles["a.b~c_d-1"], RoleConfig::default());
}

#[test]
fn bad_role_names_point_at_the_key() {
    let long = format!("a{}", "b".repeat(255));
    for name in [
        "Teacher",
        "ab",
        "1abc",
        "abc-",
        "a b c",
        "ab/c",
        long.as_str(),
    ] {
        let e = invalid(&format!(
            "hub:\n  loadRoles:\n    fine:\n      scopes: [self]\n    \"{name}\":\n      scopes: [self]\n"
        ));
        assert_eq!(e.line, 5, "{name}: {}", e.display);
        assert_eq!(
            e.key.as_deref(),
            Some(format!("hub.loadRoles.{name}").as_str())
        );
        assert_contains(&e.display, "is not a valid role name");
    }
    // The longest valid name: 255 characters.
    let longest = format!("a{}", "b".repeat(254));
    load(&format!("hub:\n  loadRoles:\n    {longest}: {{}}\n"));
}

#[test]
fn bad_role_values() {
    for (yaml, line, key, needle) in [
        (
            "hub:\n  loadRoles:\n    teacher:\n      name: teachers\n",
            4,
            "hub.loadRoles.teacher.name",
            "is `teachers` but the entry is keyed `teacher`",
        ),
        (
            "hub:\n  loadRoles:\n    teacher:\n      users:\n        - erik\n        - \"\"\n",
            6,
            "hub.loadRoles.teacher.users[1]",
            "is an empty username",
        ),
        (
            "hub:\n  loadRoles:\n    teacher:\n      groups: [\" \"]\n",
            4,
            "hub.loadRoles.teacher.groups[0]",
            "is an empty group name",
        ),
        (
            "hub:\n  loadRoles:\n    teacher:\n      services: [\"\"]\n",
            4,
            "hub.loadRoles.teacher.services[0]",
            "is an empty service name",
        ),
        (
            "hub:\n  loadRoles:\n    teacher:\n      scopes: users\n",
            4,
            "hub.loadRoles.teacher.scopes",
            "expected a list of strings",
        ),
        (
            "hub:\n  loadRoles:\n    teacher:\n      users: [1234]\n",
            4,
            "hub.loadRoles.teacher.users[0]",
            "invalid type: integer `1234`",
        ),
        (
            "hub:\n  loadRoles:\n    teacher:\n      scope: [users]\n",
            4,
            "hub.loadRoles.teacher.scope",
            "did you mean `scopes`?",
        ),
        (
            "hub:\n  loadRoles: [teacher]\n",
            2,
            "hub.loadRoles",
            "expected a mapping of names to settings",
        ),
        (
            "hub:\n  load_roles: {}\n",
            2,
            "hub.load_roles",
            "did you mean `loadRoles`?",
        ),
    ] {
        let e = invalid(yaml);
        assert_eq!(e.line, line, "{yaml:?}: {}", e.display);
        assert_eq!(e.key.as_deref(), Some(key), "{yaml:?}: {}", e.display);
        assert_contains(&e.display, needle);
    }
}

// ----- named servers -------------------------------------------------------------------------

#[test]
fn named_servers_z2jh_spelling() {
    let c = load("hub:\n  allowNamedServers: true\n  namedServerLimitPerUser: 3\n");
    assert_eq!(c.hub.allow_named_servers, Some(true));
    assert_eq!(c.hub.named_server_limit_per_user, Some(3));
    assert!(c.allow_named_servers());
    assert_eq!(c.named_server_limit_per_user(), 3);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn named_servers_upstream_spelling() {
    let c = load(
        "hub:\n  config:\n    JupyterHub:\n      allow_named_servers: true\n      named_server_limit_per_user: 0\n",
    );
    assert_eq!(c.hub.config.jupyterhub.allow_named_servers, Some(true));
    assert_eq!(c.hub.config.jupyterhub.named_server_limit_per_user, Some(0));
    assert!(c.allow_named_servers());
    assert_eq!(c.named_server_limit_per_user(), 0);
}

#[test]
fn named_servers_both_spellings_that_agree() {
    let c = load(
        "hub:\n  allowNamedServers: true\n  namedServerLimitPerUser:\n  config:\n    JupyterHub:\n      allow_named_servers: true\n      named_server_limit_per_user: 2\n",
    );
    assert!(c.allow_named_servers());
    // `null` is "unset": the other spelling decides.
    assert_eq!(c.named_server_limit_per_user(), 2);
}

#[test]
fn named_servers_both_spellings_that_disagree() {
    let e = invalid(
        "hub:\n  allowNamedServers: false\n  config:\n    JupyterHub:\n      allow_named_servers: true\n",
    );
    assert_eq!(e.line, 2);
    assert_eq!(e.key.as_deref(), Some("hub.allowNamedServers"));
    assert_contains(
        &e.display,
        "/etc/hub.yaml:2:3: hub.allowNamedServers: is `false` but `hub.config.JupyterHub.allow_named_servers` (line 5) is `true`",
    );

    let e = invalid(
        "hub:\n  config:\n    JupyterHub:\n      named_server_limit_per_user: 5\n  namedServerLimitPerUser: 4\n",
    );
    assert_eq!(e.line, 5);
    assert_eq!(e.key.as_deref(), Some("hub.namedServerLimitPerUser"));
    assert_contains(
        &e.display,
        "is `4` but `hub.config.JupyterHub.named_server_limit_per_user` (line 4) is `5`",
    );
}

#[test]
fn bad_named_server_values() {
    for (yaml, line, key, needle) in [
        (
            "hub:\n  namedServerLimitPerUser: -1\n",
            2,
            "hub.namedServerLimitPerUser",
            "invalid value: integer `-1`, expected a whole number (0 or more",
        ),
        (
            "hub:\n  namedServerLimitPerUser: \"3\"\n",
            2,
            "hub.namedServerLimitPerUser",
            "invalid type: string",
        ),
        (
            "hub:\n  namedServerLimitPerUser: 5000000000\n",
            2,
            "hub.namedServerLimitPerUser",
            "invalid value",
        ),
        (
            "hub:\n  allowNamedServers: \"true\"\n",
            2,
            "hub.allowNamedServers",
            "expected `true` or `false`",
        ),
        (
            "hub:\n  config:\n    JupyterHub:\n      named_server_limit_per_user: 1.5\n",
            4,
            "hub.config.JupyterHub.named_server_limit_per_user",
            "invalid type: floating point",
        ),
    ] {
        let e = invalid(yaml);
        assert_eq!(e.line, line, "{yaml:?}: {}", e.display);
        assert_eq!(e.key.as_deref(), Some(key), "{yaml:?}: {}", e.display);
        assert_contains(&e.display, needle);
    }
}

#[test]
fn named_server_limit_without_named_servers_warns() {
    let c = load("hub:\n  namedServerLimitPerUser: 3\n");
    assert_eq!(c.warnings.len(), 1);
    assert_eq!(c.warnings[0].key, "hub.namedServerLimitPerUser");
    assert_eq!(c.warnings[0].line, 2);
    assert_contains(&c.warnings[0].message, "has no effect");
}

// ----- cull ----------------------------------------------------------------------------------

#[test]
fn cull_every_key() {
    let c = load(
        "cull:
  enabled: false
  users: true
  adminUsers: false
  removeNamedServers: true
  timeout: 7200
  every: 60
  concurrency: 2
  maxAge: 86400
",
    );
    let cull = &c.cull;
    assert!(!cull.enabled);
    assert!(cull.users);
    assert!(!cull.admin_users);
    assert!(cull.remove_named_servers);
    assert_eq!(cull.timeout, 7200);
    assert_eq!(cull.every, 60);
    assert_eq!(cull.concurrency, 2);
    assert_eq!(cull.max_age, 86400);
}

#[test]
fn bad_cull_values() {
    for (yaml, line, key, needle) in [
        (
            "cull:\n  timeout: 0\n",
            2,
            "cull.timeout",
            "/etc/hub.yaml:2:3: cull.timeout: must be at least 1",
        ),
        ("cull:\n  every: 0\n", 2, "cull.every", "must be at least 1"),
        (
            "cull:\n  concurrency: 0\n",
            2,
            "cull.concurrency",
            "must be at least 1",
        ),
        (
            "cull:\n  timeout: -10\n",
            2,
            "cull.timeout",
            "invalid value: integer `-10`, expected a whole number of seconds",
        ),
        (
            "cull:\n  maxAge: 1h\n",
            2,
            "cull.maxAge",
            "invalid type: string \"1h\"",
        ),
        (
            "cull:\n  concurrency: 5000000000\n",
            2,
            "cull.concurrency",
            "invalid value",
        ),
        (
            "cull:\n  enabled: 1\n",
            2,
            "cull.enabled",
            "expected `true` or `false`",
        ),
        (
            "cull:\n  max_age: 10\n",
            2,
            "cull.max_age",
            "did you mean `maxAge`?",
        ),
        (
            "cull:\n  admin_users: true\n",
            2,
            "cull.admin_users",
            "did you mean `adminUsers`?",
        ),
        ("cull: true\n", 1, "cull", "expected a mapping"),
    ] {
        let e = invalid(yaml);
        assert_eq!(e.line, line, "{yaml:?}: {}", e.display);
        assert_eq!(e.key.as_deref(), Some(key), "{yaml:?}: {}", e.display);
        assert_contains(&e.display, needle);
    }
}

// ----- hubfleet.culler -----------------------------------------------------------------------

#[test]
fn culler_kinds() {
    for (name, kind) in [
        ("auto", CullerKind::Auto),
        ("idle-culler", CullerKind::IdleCuller),
        ("builtin", CullerKind::Builtin),
    ] {
        let c = load(&format!("hubfleet:\n  culler: {name}\n"));
        assert_eq!(c.hubfleet.culler, kind);
        assert_eq!(kind.as_str(), name);
        assert_eq!(kind.to_string(), name);
        assert_eq!(name.parse::<CullerKind>(), Ok(kind));
    }
    assert_eq!(CullerKind::default(), CullerKind::Auto);
}

#[test]
fn unknown_culler() {
    let e = invalid("hubfleet:\n  culler: jupyterhub-idle-culler\n");
    assert_eq!(e.line, 2);
    assert_eq!(e.key.as_deref(), Some("hubfleet.culler"));
    assert_contains(
        &e.display,
        "culler `jupyterhub-idle-culler` is not supported; supported: auto, idle-culler, builtin",
    );
    let e = invalid("hubfleet:\n  culler: true\n");
    assert_contains(
        &e.display,
        "expected one of `auto`, `idle-culler`, `builtin`",
    );
}

#[test]
fn culler_choice_with_culling_disabled_warns() {
    let c = load("cull:\n  enabled: false\nhubfleet:\n  culler: builtin\n");
    assert_eq!(c.warnings.len(), 1);
    assert_eq!(c.warnings[0].key, "hubfleet.culler");
    assert_eq!(c.warnings[0].line, 4);
    let c = load("cull:\n  enabled: false\nhubfleet:\n  culler: auto\n");
    assert!(c.warnings.is_empty());
}
