//! Every kind of error names the file, the line (and column) and the key path.

use std::path::Path;

use hubfleet_config::{ConfigError, HubConfig};

struct Invalid {
    display: String,
    file: String,
    line: usize,
    column: usize,
    key: Option<String>,
}

fn invalid(yaml: &str) -> Invalid {
    match HubConfig::from_yaml_str(yaml, "/etc/hub.yaml") {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => {
            let display = e.to_string();
            match e {
                ConfigError::Invalid {
                    file,
                    line,
                    column,
                    key,
                    message,
                } => {
                    assert_eq!(display, format!("{file}:{line}:{column}: {message}"));
                    Invalid {
                        display,
                        file,
                        line,
                        column,
                        key,
                    }
                }
                other => panic!("unexpected error {other:?}"),
            }
        }
    }
}

#[track_caller]
fn assert_contains(haystack: &str, needle: &str) {
    assert!(haystack.contains(needle), "{needle:?} not in:\n{haystack}");
}

// ----- unknown keys ----------------------------------------------------------------------------

#[test]
fn unknown_key_names_file_line_full_path_and_suggestion() {
    let e = invalid(
        "hub:
  config:
    JupyterHub:
      authenticator_class: dummy
    Authenticator:
      admin_users: [alice]
      admin_user: [bob]
",
    );
    assert_eq!(e.file, "/etc/hub.yaml");
    assert_eq!((e.line, e.column), (7, 7));
    assert_eq!(
        e.key.as_deref(),
        Some("hub.config.Authenticator.admin_user")
    );
    assert_eq!(
        e.display,
        "/etc/hub.yaml:7:7: unknown key `hub.config.Authenticator.admin_user`; did you mean `admin_users`? \
         Allowed keys in `hub.config.Authenticator`: `admin_users`, `allowed_users`, `blocked_users`, `allow_all`, \
         `allow_existing_users`, `manage_groups`, `auto_login`, `enable_auth_state`, `auth_refresh_age`, \
         `refresh_pre_spawn`. \
         Fix the key or remove it (see docs/configuration.md)."
    );
}

#[test]
fn unknown_key_suggests_camel_case_spelling() {
    let e = invalid("singleuser:\n  default_url: /lab\n");
    assert_eq!(e.line, 2);
    assert_contains(
        &e.display,
        "unknown key `singleuser.default_url`; did you mean `defaultUrl`?",
    );
}

#[test]
fn unknown_key_without_close_match_lists_allowed_keys() {
    let e = invalid("hub:\n  something: /hub/\n");
    assert_eq!((e.line, e.column), (2, 3));
    assert_eq!(e.key.as_deref(), Some("hub.something"));
    assert_contains(
        &e.display,
        "/etc/hub.yaml:2:3: unknown key `hub.something`. Allowed keys in `hub`: `config`, `db`, `services`, `loadRoles`, `allowNamedServers`, `namedServerLimitPerUser`, `templatePaths`, `templateVars`, `baseUrl`, `cookieSecret`, `extraEnv`, `redirectToServer`, `shutdownOnLogout`, `authenticatePrometheus`, `concurrentSpawnLimit`, `activeServerLimit`.",
    );
    assert!(!e.display.contains("did you mean"));
}

#[test]
fn unknown_top_level_key() {
    let e = invalid("hub: {}\nsomething:\n  userScheduler:\n    enabled: true\n");
    assert_eq!(e.line, 2);
    assert_contains(
        &e.display,
        "unknown key `something`. Allowed top-level keys: `hub`, `singleuser`, `cull`, `hubfleet`, `custom`, `proxy`, `dask-gateway`, `binderhub-service`, `Chart`, `Release`.",
    );
}

#[test]
fn unknown_key_under_a_section_names_the_z2jh_keys_known_there_too() {
    let e = invalid("proxy:\n  secretToken: x\n  htps: [a]\n");
    assert_eq!(e.line, 3);
    assert_eq!(e.key.as_deref(), Some("proxy.htps"));
    assert_contains(&e.display, "did you mean `https`?");
    assert_contains(&e.display, "Allowed keys in `proxy`: `https`.");
    assert_contains(
        &e.display,
        "Of z2jh's other keys there, hubfleet knows `annotations`, `chp`,",
    );
    assert_contains(&e.display, "`secretToken`");
}

#[test]
fn unknown_traitlets_class_and_trait() {
    let e = invalid("hub:\n  config:\n    AzureAdOAuthenticator:\n      client_id: x\n");
    assert_eq!(e.line, 3);
    assert_eq!(e.key.as_deref(), Some("hub.config.AzureAdOAuthenticator"));

    let e = invalid("hub:\n  config:\n    JupyterHub:\n      admin_acces: true\n");
    assert_eq!(e.line, 4);
    assert_eq!(e.key.as_deref(), Some("hub.config.JupyterHub.admin_acces"));
    assert_contains(
        &e.display,
        "did you mean `admin_access`? Allowed keys in `hub.config.JupyterHub`: `authenticator_class`, `allow_named_servers`, `named_server_limit_per_user`, `subdomain_host`, `redirect_to_server`, `shutdown_on_logout`, `authenticate_prometheus`, `load_groups`, `admin_access`, `concurrent_spawn_limit`, `active_server_limit`, `hub_connect_url`.",
    );
}

#[test]
fn unknown_key_in_flow_mapping() {
    let e = invalid("hubfleet: {listen: \"127.0.0.1:8000\", datadir: x}\n");
    assert_eq!((e.line, e.column), (1, 38));
    assert_contains(
        &e.display,
        "unknown key `hubfleet.datadir`; did you mean `data_dir`?",
    );
}

#[test]
fn unknown_key_in_extra_env_entry() {
    let e = invalid("singleuser:\n  extraEnv:\n    FOO:\n      vaule: x\n");
    assert_eq!(e.key.as_deref(), Some("singleuser.extraEnv.FOO.vaule"));
    assert_eq!(e.line, 4);
    assert_contains(&e.display, "did you mean `value`?");
}

#[test]
fn non_string_key() {
    let e = invalid("hub:\n  config:\n    Authenticator:\n      1: x\n");
    assert_eq!((e.line, e.column), (4, 7));
    assert_eq!(e.key.as_deref(), Some("hub.config.Authenticator.1"));
    assert_contains(
        &e.display,
        "hub.config.Authenticator.1: keys must be strings, this one is integer `1`",
    );
}

// ----- wrong types ---------------------------------------------------------------------------

#[test]
fn wrong_type_for_start_timeout() {
    let e = invalid("singleuser:\n  defaultUrl: /lab\n  startTimeout: soon\n");
    assert_eq!((e.line, e.column), (3, 17));
    assert_eq!(e.key.as_deref(), Some("singleuser.startTimeout"));
    assert_eq!(
        e.display,
        "/etc/hub.yaml:3:17: singleuser.startTimeout: invalid type: string \"soon\", \
         expected a whole number of seconds (at least 1), such as `300`"
    );
}

#[test]
fn zero_and_negative_start_timeout() {
    let e = invalid("singleuser:\n  startTimeout: 0\n");
    assert_eq!(e.line, 2);
    assert_contains(&e.display, "singleuser.startTimeout: invalid value");
    let e = invalid("singleuser:\n  startTimeout: -5\n");
    assert_contains(&e.display, "expected a whole number of seconds");
}

#[test]
fn string_instead_of_list_for_admin_users() {
    let e = invalid("hub:\n  config:\n    Authenticator:\n      admin_users: alice\n");
    assert_eq!((e.line, e.column), (4, 20));
    assert_eq!(
        e.key.as_deref(),
        Some("hub.config.Authenticator.admin_users")
    );
    assert_contains(
        &e.display,
        "/etc/hub.yaml:4:20: hub.config.Authenticator.admin_users: invalid type: string \"alice\", expected a list of strings",
    );
}

#[test]
fn number_in_a_list_of_usernames_points_at_the_item() {
    let e = invalid("hub:\n  config:\n    Authenticator:\n      allowed_users:\n        - alice\n        - 1234\n");
    assert_eq!((e.line, e.column), (6, 11));
    assert_eq!(
        e.key.as_deref(),
        Some("hub.config.Authenticator.allowed_users[1]")
    );
    assert_contains(
        &e.display,
        "invalid type: integer `1234`, expected a string (quote values",
    );
}

#[test]
fn scalar_where_a_section_is_expected() {
    let e = invalid("hub:\n  db: postgres\n");
    assert_eq!(e.line, 2);
    assert_contains(
        &e.display,
        "hub.db: invalid type: string \"postgres\", expected a mapping",
    );
}

#[test]
fn wrong_type_for_bool_and_strings() {
    let e = invalid("hub:\n  config:\n    NativeAuthenticator:\n      open_signup: yes\n");
    assert_eq!(e.line, 4);
    assert_contains(&e.display, "hub.config.NativeAuthenticator.open_signup: invalid type: string \"yes\", expected `true` or `false`");

    let e = invalid("singleuser:\n  defaultUrl: [a]\n");
    assert_eq!(e.line, 2);
    assert_contains(
        &e.display,
        "singleuser.defaultUrl: invalid type: sequence, expected a string",
    );

    let e = invalid("singleuser:\n  cmd: {a: b}\n");
    assert_contains(
        &e.display,
        "singleuser.cmd: invalid type: map, expected a command",
    );
}

#[test]
fn empty_cmd_list() {
    let e = invalid("singleuser:\n  cmd: []\n");
    assert_eq!(e.line, 2);
    assert_contains(&e.display, "singleuser.cmd: the command list is empty");
}

#[test]
fn extra_env_value_from_is_refused() {
    let e = invalid(
        "singleuser:
  extraEnv:
    OK: fine
    SECRET_VALUE:
      valueFrom:
        secretKeyRef:
          name: my-k8s-secret
          key: password
",
    );
    assert_eq!((e.line, e.column), (5, 7));
    assert_eq!(
        e.key.as_deref(),
        Some("singleuser.extraEnv.SECRET_VALUE.valueFrom")
    );
    assert_contains(&e.display, "hubfleet runs without Kubernetes");

    let e = invalid("singleuser:\n  extraEnv:\n    - name: X\n      valueFrom: {fieldRef: {fieldPath: metadata.namespace}}\n");
    assert_eq!(e.line, 4);
    assert_eq!(e.key.as_deref(), Some("singleuser.extraEnv[0].valueFrom"));
}

#[test]
fn extra_env_null_value_and_bad_name() {
    let e = invalid("singleuser:\n  extraEnv:\n    EMPTY:\n");
    assert_eq!(e.line, 3);
    assert_contains(
        &e.display,
        "singleuser.extraEnv.EMPTY: the variable has no value",
    );

    let e = invalid("singleuser:\n  extraEnv:\n    \"A=B\": x\n");
    assert_eq!(e.line, 3);
    assert_eq!(e.key.as_deref(), Some("singleuser.extraEnv.A=B"));
    assert_contains(&e.display, "expected an environment variable name");
}

// ----- malformed YAML ------------------------------------------------------------------------

#[test]
fn bad_indentation() {
    let e = invalid("hub:\n  config:\n    JupyterHub:\n      authenticator_class: dummy\n     Authenticator: {}\n");
    assert_eq!(e.key, None);
    assert_eq!(e.file, "/etc/hub.yaml");
    assert_eq!(e.line, 5);
    assert!(e.column >= 1);
    assert!(e.display.starts_with("/etc/hub.yaml:5:"), "{}", e.display);
    assert_contains(&e.display, "invalid YAML:");
}

#[test]
fn tab_indentation() {
    let e = invalid("hub:\n\tdb:\n\t\ttype: postgres\n");
    assert_eq!(e.line, 2);
    assert_eq!(e.column, 1);
    assert!(
        e.display.starts_with("/etc/hub.yaml:2:1: invalid YAML: "),
        "{}",
        e.display
    );
    assert_contains(&e.display, "tab");
    // The position is not repeated inside the message.
    assert!(!e.display.contains("at line 2 column 1"), "{}", e.display);
}

#[test]
fn unclosed_flow_and_duplicate_keys() {
    let e = invalid("hub:\n  config: {JupyterHub: {authenticator_class: dummy}\nsingleuser: {}\n");
    assert!(e.line >= 2, "{}", e.display);
    assert_contains(&e.display, "invalid YAML:");

    let e = invalid("singleuser:\n  defaultUrl: /lab\n  defaultUrl: /tree\n");
    assert_eq!((e.line, e.column), (3, 3), "{}", e.display);
    assert_eq!(e.key.as_deref(), Some("singleuser.defaultUrl"));
    assert_contains(
        &e.display,
        "singleuser.defaultUrl: duplicate key (already set on line 2)",
    );
}

#[test]
fn top_level_must_be_a_mapping() {
    let e = invalid("- hub\n- singleuser\n");
    assert_eq!(e.line, 1);
    assert_contains(&e.display, "the file must be a mapping");
}

// ----- semantic validation -------------------------------------------------------------------

#[test]
fn unsupported_authenticator() {
    let e = invalid("hub:\n  config:\n    JupyterHub:\n      authenticator_class: azuread\n");
    assert_eq!((e.line, e.column), (4, 28));
    assert_eq!(
        e.key.as_deref(),
        Some("hub.config.JupyterHub.authenticator_class")
    );
    assert_eq!(
        e.display,
        "/etc/hub.yaml:4:28: hub.config.JupyterHub.authenticator_class: authenticator_class `azuread` \
         is not supported yet; supported: native, dummy, shared-password, github, generic-oauth, cilogon, google, tmp, null"
    );
}

#[test]
fn postgres_without_url() {
    let e = invalid("hubfleet:\n  listen: 127.0.0.1:8000\nhub:\n  db:\n    type: postgres\n");
    assert_eq!(e.line, 5);
    assert_eq!(e.key.as_deref(), Some("hub.db.type"));
    assert_contains(
        &e.display,
        "/etc/hub.yaml:5:5: hub.db.type: `postgres` needs `hub.db.url`",
    );
}

#[test]
fn db_url_mismatches() {
    let e = invalid("hub:\n  db:\n    type: postgres\n    url: mysql://u:hunter2@h/db\n");
    assert_eq!(e.line, 4);
    assert_eq!(e.key.as_deref(), Some("hub.db.url"));
    assert_contains(&e.display, "is not a PostgreSQL URL");
    assert!(
        !e.display.contains("hunter2"),
        "password leaked: {}",
        e.display
    );

    let e = invalid("hub:\n  db:\n    type: sqlite-memory\n    url: sqlite:///x.db\n");
    assert_eq!(e.line, 4);
    assert_contains(
        &e.display,
        "hub.db.url: is not used with `hub.db.type: sqlite-memory`",
    );

    let e = invalid("hub:\n  db:\n    url: postgresql://h/db\n");
    assert_eq!(e.line, 3);
    assert_contains(&e.display, "must start with `sqlite:`");

    let e = invalid("hub:\n  db:\n    url: \"sqlite://?mode=memory\"\n");
    assert_eq!(e.line, 3);
    assert_contains(&e.display, "hub.db.url: names no database file");

    let e = invalid("hub:\n  db:\n    type: mysql\n");
    assert_eq!(e.line, 3);
    assert_contains(&e.display, "hub.db.type: database type `mysql` is not supported yet; supported: sqlite-pvc, sqlite-memory, postgres");
}

#[test]
fn listen_not_an_address() {
    let e = invalid("hubfleet:\n  data_dir: /srv\n  listen: localhost:8000\n");
    assert_eq!((e.line, e.column), (3, 11));
    assert_eq!(e.key.as_deref(), Some("hubfleet.listen"));
    assert_contains(
        &e.display,
        "hubfleet.listen: `localhost:8000` is not an IP address and port",
    );

    let e = invalid("hubfleet:\n  listen: 8000\n");
    assert_contains(
        &e.display,
        "hubfleet.listen: invalid type: integer `8000`, expected an IP address and port",
    );
}

#[test]
fn unsupported_spawner() {
    let e = invalid("hubfleet:\n  spawner: docker\n");
    assert_eq!(e.line, 2);
    assert_contains(
        &e.display,
        "hubfleet.spawner: spawner `docker` is not supported; supported: local, kubernetes",
    );
}

#[test]
fn kubernetes_keys_are_strict() {
    let e = invalid("hubfleet:\n  kubernetes:\n    separate_proxi: true\n");
    assert_eq!(e.line, 3);
    assert_contains(
        &e.display,
        "unknown key `hubfleet.kubernetes.separate_proxi`; did you mean `separate_proxy`?",
    );
    let e = invalid("hubfleet:\n  kubernetes:\n    separate_proxy: sure\n");
    assert_contains(&e.display, "hubfleet.kubernetes.separate_proxy");
    let e = invalid("Release:\n  Name: hub\n  Namespce: x\n");
    assert_contains(&e.display, "unknown key `Release.Namespce`");
}

#[test]
fn bad_public_url() {
    for (url, needle) in [
        (
            "ftp://hub.example.org",
            "must start with `http://` or `https://`",
        ),
        ("hub.example.org", "is not a valid URL"),
        ("https://hub.example.org/?x=1", "must not have a `?query`"),
    ] {
        let e = invalid(&format!("hubfleet:\n  public_url: \"{url}\"\n"));
        assert_eq!(e.line, 2, "{url}");
        assert_eq!(e.key.as_deref(), Some("hubfleet.public_url"));
        assert_contains(&e.display, needle);
    }
}

#[test]
fn empty_paths() {
    let e = invalid("hubfleet:\n  local:\n    python_env: \"\"\n");
    assert_eq!(e.line, 3);
    assert_contains(&e.display, "hubfleet.local.python_env: the path is empty");
}

#[test]
fn shared_password_rules() {
    let e =
        invalid("hub:\n  config:\n    JupyterHub:\n      authenticator_class: shared-password\n");
    assert_eq!(e.line, 4);
    assert_eq!(
        e.key.as_deref(),
        Some("hub.config.JupyterHub.authenticator_class")
    );
    assert_contains(
        &e.display,
        "needs `hub.config.SharedPasswordAuthenticator.user_password`",
    );

    let base = "hub:\n  config:\n    JupyterHub:\n      authenticator_class: shared-password\n    SharedPasswordAuthenticator:\n";
    let e = invalid(&format!("{base}      user_password: short\n"));
    assert_eq!(e.line, 6);
    assert_contains(
        &e.display,
        "hub.config.SharedPasswordAuthenticator.user_password: must be at least 8 characters",
    );

    let e = invalid(&format!(
        "{base}      user_password: long-enough\n      admin_password: too-short\n"
    ));
    assert_eq!(e.line, 7);
    assert_contains(&e.display, "admin_password: must be at least 32 characters");

    let same = "x".repeat(32);
    let e = invalid(&format!(
        "{base}      user_password: {same}\n      admin_password: {same}\n"
    ));
    assert_eq!(e.line, 7);
    assert_contains(&e.display, "must differ from `user_password`");
}

#[test]
fn empty_username() {
    let e = invalid("hub:\n  config:\n    Authenticator:\n      admin_users:\n        - alice\n        - \"  \"\n");
    assert_eq!(e.line, 6);
    assert_eq!(
        e.key.as_deref(),
        Some("hub.config.Authenticator.admin_users[1]")
    );
    assert_contains(&e.display, "is an empty username");
}

// ----- files ---------------------------------------------------------------------------------

#[test]
fn missing_file() {
    let err = HubConfig::from_path(Path::new("/definitely/not/here.yaml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert_contains(
        &err.to_string(),
        "cannot read config file /definitely/not/here.yaml: ",
    );
    assert_eq!(err.line(), None);
}

#[test]
fn errors_from_a_file_name_the_file_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hub.yaml");
    std::fs::write(
        &file,
        "hub:\n  config:\n    Authenticator:\n      admin_user: [x]\n",
    )
    .unwrap();
    let err = HubConfig::from_path(&file).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "{}:4:7: unknown key `hub.config.Authenticator.admin_user`",
            file.display()
        )),
        "{err}"
    );
    assert_eq!(err.line(), Some(4));
    assert_eq!(err.key(), Some("hub.config.Authenticator.admin_user"));
}

// ----- subdomain_host ---------------------------------------------------------------------------

#[test]
fn subdomain_host_must_be_scheme_host_and_port() {
    for (value, says) in [
        ("hub.example.org", "write `https://hub.example.org`"),
        ("https://hub.example.org/prefix/", "must not have a path"),
        (
            "http://127.0.0.1:8000",
            "IP address, which has no subdomains",
        ),
        (
            "ftp://hub.example.org",
            "must start with `http://` or `https://`",
        ),
    ] {
        let e = invalid(&format!(
            "hub:\n  config:\n    JupyterHub:\n      subdomain_host: {value}\n"
        ));
        assert_eq!(
            (e.file.as_str(), e.line),
            ("/etc/hub.yaml", 4),
            "{}",
            e.display
        );
        assert_eq!(
            e.key.as_deref(),
            Some("hub.config.JupyterHub.subdomain_host"),
            "{}",
            e.display
        );
        assert_contains(&e.display, says);
    }
    let ok = HubConfig::from_yaml_str(
        "hub:\n  config:\n    JupyterHub:\n      subdomain_host: http://localhost:8000\n",
        "/etc/hub.yaml",
    )
    .unwrap();
    assert_eq!(
        ok.hub.config.jupyterhub.subdomain_host.as_deref(),
        Some("http://localhost:8000")
    );
}

#[test]
fn bad_hub_connect_url() {
    let e = invalid("hub:\n  config:\n    JupyterHub:\n      hub_connect_url: hub:8081\n");
    assert_eq!(e.line, 4);
    assert_eq!(
        e.key.as_deref(),
        Some("hub.config.JupyterHub.hub_connect_url")
    );
}

#[test]
fn a_proxy_hubfleet_would_have_to_start_is_refused() {
    let e = invalid(
        "hub:\n  config:\n    ConfigurableHTTPProxy:\n      api_url: http://127.0.0.1:8001\n      should_start: true\n",
    );
    assert_eq!(
        e.key.as_deref(),
        Some("hub.config.ConfigurableHTTPProxy.should_start")
    );
    assert_contains(&e.display, "does not start a proxy");
    let config = HubConfig::from_yaml_str(
        "hub:\n  config:\n    ConfigurableHTTPProxy:\n      api_url: http://127.0.0.1:8001\n      auth_token: t\n      should_start: false\n",
        "hub.yaml",
    )
    .unwrap();
    let chp = &config.hub.config.configurable_http_proxy;
    assert_eq!(chp.api_url.as_deref(), Some("http://127.0.0.1:8001"));
    assert_eq!(chp.auth_token.as_deref(), Some("t"));
}
