//! Defaults and every supported key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hubfleet_config::{AuthenticatorKind, DbType, HubConfig, SpawnerKind, IGNORED_KEYS};

fn load(yaml: &str) -> HubConfig {
    HubConfig::from_yaml_str(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn defaults() {
    let c = HubConfig::default();
    assert_eq!(
        c.hub.config.jupyterhub.authenticator_class,
        AuthenticatorKind::Native
    );
    assert!(c.hub.config.authenticator.admin_users.is_empty());
    assert!(c.hub.config.authenticator.allowed_users.is_empty());
    assert_eq!(c.hub.config.dummy_authenticator.password, None);
    assert_eq!(
        c.hub.config.shared_password_authenticator.user_password,
        None
    );
    assert_eq!(
        c.hub.config.shared_password_authenticator.admin_password,
        None
    );
    assert!(!c.hub.config.native_authenticator.open_signup);
    assert_eq!(c.hub.db.kind, DbType::SqlitePvc);
    assert_eq!(c.hub.db.url, None);
    assert_eq!(c.singleuser.cmd, None);
    assert_eq!(
        c.singleuser.command(),
        vec!["jupyterhub-singleuser".to_owned()]
    );
    assert_eq!(c.singleuser.default_url, None);
    assert!(c.singleuser.extra_env.is_empty());
    assert_eq!(c.singleuser.start_timeout, Duration::from_secs(300));
    assert_eq!(
        c.hubfleet.listen,
        "127.0.0.1:8000".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.hubfleet.data_dir, PathBuf::from("./hubfleet-data"));
    assert_eq!(c.hubfleet.spawner, SpawnerKind::Local);
    assert_eq!(c.hubfleet.local.python_env, None);
    assert_eq!(c.hubfleet.public_url, None);
    assert_eq!(c.source, None);
    assert!(c.warnings.is_empty());
}

#[test]
fn empty_file_comments_and_empty_sections_give_defaults() {
    for yaml in [
        "",
        "# nothing here\n",
        "---\n",
        "hub:\nsingleuser:\nhubfleet:\n",
        "hub: {}\nsingleuser: {}\nhubfleet: {}\n",
        "hub:\n  config:\n    JupyterHub:\n    Authenticator:\n  db:\n    type:\n    url:\n",
        "singleuser:\n  cmd:\n  defaultUrl:\n  extraEnv:\n  startTimeout:\n",
    ] {
        let mut config = load(yaml);
        // the document as written is kept beside the configuration; compare the configuration
        config.values = Default::default();
        assert_eq!(config, HubConfig::default(), "for {yaml:?}");
    }
}

#[test]
fn authenticator_class_names() {
    for (name, kind) in [
        ("native", AuthenticatorKind::Native),
        (
            "nativeauthenticator.NativeAuthenticator",
            AuthenticatorKind::Native,
        ),
        ("dummy", AuthenticatorKind::Dummy),
        (
            "jupyterhub.auth.DummyAuthenticator",
            AuthenticatorKind::Dummy,
        ),
        ("shared-password", AuthenticatorKind::SharedPassword),
        (
            "jupyterhub.authenticators.shared.SharedPasswordAuthenticator",
            AuthenticatorKind::SharedPassword,
        ),
    ] {
        let extra = if kind == AuthenticatorKind::SharedPassword {
            "    SharedPasswordAuthenticator:\n      user_password: eight-chars\n"
        } else {
            ""
        };
        let c = load(&format!(
            "hub:\n  config:\n    JupyterHub:\n      authenticator_class: {name}\n{extra}"
        ));
        assert_eq!(c.hub.config.jupyterhub.authenticator_class, kind, "{name}");
    }
}

#[test]
fn authenticator_settings() {
    let c = load(
        "hub:
  config:
    JupyterHub:
      authenticator_class: dummy
    Authenticator:
      admin_users: [alice]
      allowed_users:
        - bob
        - \"123\"
    DummyAuthenticator:
      password: let-me-in
",
    );
    let a = &c.hub.config.authenticator;
    assert_eq!(a.admin_users, ["alice"]);
    assert_eq!(a.allowed_users, ["bob", "123"]);
    assert_eq!(
        c.hub.config.dummy_authenticator.password.as_deref(),
        Some("let-me-in")
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn shared_password_settings() {
    let admin = "a".repeat(32);
    let c = load(&format!(
        "hub:
  config:
    JupyterHub:
      authenticator_class: shared-password
    Authenticator:
      admin_users: [root]
    SharedPasswordAuthenticator:
      user_password: workshop-2024
      admin_password: {admin}
"
    ));
    let s = &c.hub.config.shared_password_authenticator;
    assert_eq!(s.user_password.as_deref(), Some("workshop-2024"));
    assert_eq!(s.admin_password.as_deref(), Some(admin.as_str()));
    // Passwords never show in Debug output.
    let debug = format!("{c:?}");
    assert!(!debug.contains("workshop-2024"), "{debug}");
    assert!(!debug.contains(&admin), "{debug}");
}

#[test]
fn native_sign_up_keys() {
    let c = load(
        "hub:\n  config:\n    NativeAuthenticator:\n      open_signup: true\n      minimum_password_length: 10\n      check_common_password: true\n      enable_signup: false\n",
    );
    let n = &c.hub.config.native_authenticator;
    assert!(n.open_signup && n.check_common_password);
    assert_eq!(n.minimum_password_length, Some(10));
    assert_eq!(n.enable_signup, Some(false));
    let e = HubConfig::from_yaml_str(
        "hub:\n  config:\n    NativeAuthenticator:\n      minimum_password_length: -1\n",
        "hub.yaml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("hub.yaml:4:"), "{e}");
}

#[test]
fn settings_of_unselected_authenticators_warn() {
    let c = load(
        "hub:\n  config:\n    DummyAuthenticator:\n      password: x\n    NativeAuthenticator:\n      open_signup: false\n",
    );
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    let w = &c.warnings[0];
    assert_eq!(w.key, "hub.config.DummyAuthenticator");
    assert_eq!(w.line, 3);
    assert!(w.message.contains("`native`"), "{}", w.message);
}

#[test]
fn db_types_and_urls() {
    let c = load("hub:\n  db:\n    type: sqlite-memory\n");
    assert_eq!(c.hub.db.kind, DbType::SqliteMemory);
    assert_eq!(c.database_url(), "sqlite::memory:");
    assert_eq!(c.sqlite_path(), None);

    let c = load(
        "hub:\n  db:\n    type: postgres\n    url: postgresql+psycopg2://hub:pw-8d1f@db:5432/hub\n",
    );
    assert_eq!(c.hub.db.kind, DbType::Postgres);
    assert_eq!(c.database_url(), "postgresql://hub:pw-8d1f@db:5432/hub");
    assert!(!format!("{c:?}").contains("pw-8d1f"));

    let c = load("hub:\n  db:\n    type: postgres\n    url: postgres://db/hub?sslmode=require\n");
    assert_eq!(c.database_url(), "postgres://db/hub?sslmode=require");

    let c = load("hub:\n  db:\n    type: sqlite-pvc\n    url: sqlite:///var/lib/hub/state.db\n");
    assert_eq!(
        c.sqlite_path(),
        Some(PathBuf::from("/var/lib/hub/state.db"))
    );
    assert_eq!(c.database_url(), "sqlite:///var/lib/hub/state.db?mode=rwc");

    let c = load("hub:\n  db:\n    url: sqlite:///var/lib/hub/state.db?mode=ro\n");
    assert_eq!(c.database_url(), "sqlite:///var/lib/hub/state.db?mode=ro");
}

#[test]
fn sqlite_default_lives_in_data_dir() {
    let c = load("hubfleet:\n  data_dir: /srv/hubfleet\n");
    assert_eq!(c.data_dir(), PathBuf::from("/srv/hubfleet"));
    assert_eq!(
        c.sqlite_path(),
        Some(PathBuf::from("/srv/hubfleet/hubfleet.sqlite"))
    );
    assert_eq!(
        c.database_url(),
        "sqlite:///srv/hubfleet/hubfleet.sqlite?mode=rwc"
    );
}

#[test]
fn singleuser_settings() {
    let c = load(
        "singleuser:
  cmd: [jupyter-labhub, --debug]
  defaultUrl: /lab
  startTimeout: 120
  extraEnv:
    PLAIN: value
    NUMBER: 42
    FLAG: true
    EXPLICIT:
      value: from-mapping
    RENAMED:
      name: OTHER_NAME
      value: x
",
    );
    let s = &c.singleuser;
    assert_eq!(
        s.cmd,
        Some(vec!["jupyter-labhub".to_owned(), "--debug".to_owned()])
    );
    assert_eq!(s.command(), ["jupyter-labhub", "--debug"]);
    assert_eq!(s.default_url.as_deref(), Some("/lab"));
    assert_eq!(s.start_timeout, Duration::from_secs(120));
    let expected: BTreeMap<String, String> = [
        ("PLAIN", "value"),
        ("NUMBER", "42"),
        ("FLAG", "true"),
        ("EXPLICIT", "from-mapping"),
        ("OTHER_NAME", "x"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(s.extra_env, expected);
}

#[test]
fn singleuser_cmd_as_string_is_one_argument() {
    let c = load("singleuser:\n  cmd: jupyterhub-singleuser\n");
    assert_eq!(
        c.singleuser.cmd,
        Some(vec!["jupyterhub-singleuser".to_owned()])
    );
    let c = load("singleuser:\n  cmd: /opt/my server\n");
    assert_eq!(c.singleuser.command(), ["/opt/my server"]);
}

#[test]
fn extra_env_list_form() {
    let c = load(
        "singleuser:\n  extraEnv:\n    - name: A\n      value: one\n    - {name: B, value: two}\n",
    );
    assert_eq!(
        c.singleuser.extra_env.get("A").map(String::as_str),
        Some("one")
    );
    assert_eq!(
        c.singleuser.extra_env.get("B").map(String::as_str),
        Some("two")
    );
}

#[test]
fn hubfleet_settings() {
    let c = load(
        "hubfleet:
  listen: 0.0.0.0:9000
  data_dir: /var/lib/hubfleet
  spawner: local
  local:
    python_env: /opt/venv
  public_url: https://hub.example.org/
",
    );
    let h = &c.hubfleet;
    assert_eq!(h.listen, "0.0.0.0:9000".parse::<SocketAddr>().unwrap());
    assert_eq!(h.data_dir, PathBuf::from("/var/lib/hubfleet"));
    assert_eq!(h.spawner, SpawnerKind::Local);
    assert_eq!(c.python_env(), Some(PathBuf::from("/opt/venv")));
    assert_eq!(h.public_url.as_deref(), Some("https://hub.example.org/"));

    let c = load(
        "hubfleet:\n  spawner: kubernetes\n  kubernetes:\n    separate_proxy: true\nChart: {Name: jupyterhub, Version: 4.3.3, AppVersion: 5.5.0}\nRelease: {Name: staging, Namespace: hubs, Service: Helm}\n",
    );
    assert_eq!(c.hubfleet.spawner, SpawnerKind::Kubernetes);
    assert!(c.hubfleet.kubernetes.separate_proxy);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(
        c.values.get("Release.Namespace"),
        Some(&serde_yaml_ng::Value::String("hubs".into()))
    );
    assert!(!load("").hubfleet.kubernetes.separate_proxy);

    let c = load("hubfleet:\n  listen: \"[::1]:8080\"\n");
    assert_eq!(
        c.hubfleet.listen,
        "[::1]:8080".parse::<SocketAddr>().unwrap()
    );
}

#[test]
fn relative_paths_resolve_against_the_config_file_directory() {
    let dir = tempfile::tempdir().unwrap();
    let conf_dir = dir.path().join("conf");
    std::fs::create_dir(&conf_dir).unwrap();
    let file = conf_dir.join("hub.yaml");
    std::fs::write(
        &file,
        "hubfleet:\n  data_dir: state\n  local:\n    python_env: ../venv\n",
    )
    .unwrap();
    let c = HubConfig::from_path(&file).unwrap();
    assert_eq!(c.source.as_deref(), Some(file.as_path()));
    assert_eq!(c.data_dir(), conf_dir.join("state"));
    assert_eq!(c.python_env(), Some(dir.path().join("venv")));
    assert_eq!(
        c.sqlite_path(),
        Some(conf_dir.join("state/hubfleet.sqlite"))
    );
    assert_eq!(
        c.database_url(),
        format!(
            "sqlite://{}?mode=rwc",
            conf_dir.join("state/hubfleet.sqlite").display()
        )
    );

    // The default data dir, too.
    std::fs::write(&file, "").unwrap();
    let c = HubConfig::from_path(&file).unwrap();
    assert_eq!(c.data_dir(), conf_dir.join("hubfleet-data"));

    // A relative sqlite URL.
    std::fs::write(&file, "hub:\n  db:\n    url: sqlite://db/hub.sqlite\n").unwrap();
    let c = HubConfig::from_path(&file).unwrap();
    assert_eq!(c.sqlite_path(), Some(conf_dir.join("db/hub.sqlite")));
}

#[test]
fn relative_paths_from_a_string_resolve_against_the_current_dir() {
    let c = load("hubfleet:\n  data_dir: some/dir\n");
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(c.data_dir(), cwd.join("some/dir"));
    assert!(HubConfig::default().data_dir().is_absolute());
    assert_eq!(HubConfig::default().data_dir(), cwd.join("hubfleet-data"));
}

#[test]
fn demo_config() {
    let c = HubConfig::default_for_demo(Path::new("/tmp/demo"));
    assert_eq!(
        c.hub.config.jupyterhub.authenticator_class,
        AuthenticatorKind::Native
    );
    assert!(!c.hub.config.native_authenticator.open_signup);
    assert_eq!(c.hub.db.kind, DbType::SqlitePvc);
    assert_eq!(c.hubfleet.spawner, SpawnerKind::Local);
    assert_eq!(c.hubfleet.listen.to_string(), "127.0.0.1:8000");
    assert_eq!(c.data_dir(), PathBuf::from("/tmp/demo"));
    assert_eq!(
        c.database_url(),
        "sqlite:///tmp/demo/hubfleet.sqlite?mode=rwc"
    );
}

#[test]
fn ignored_keys_are_accepted_with_a_warning() {
    let c = load(
        "proxy:
  secretToken: abcdef
hub:
  db:
    type: sqlite-pvc
    upgrade: true
    pvc:
      storage: 1Gi
singleuser:
  image:
    name: quay.io/jupyter/base-notebook
    tag: latest
  storage:
    type: dynamic
",
    );
    let got: Vec<(&str, usize)> = c
        .warnings
        .iter()
        .map(|w| (w.key.as_str(), w.line))
        .collect();
    assert_eq!(
        got,
        [
            ("proxy.secretToken", 2),
            ("hub.db.upgrade", 6),
            ("hub.db.pvc", 7),
            // Not ignored any more: an image names a local environment; with none configured,
            // a warning says servers use the Python environment.
            ("singleuser.image", 10),
            ("singleuser.storage.type", 14),
        ]
    );
    assert!(
        c.warnings[3].message.contains(
            "image `quay.io/jupyter/base-notebook:latest` is not mapped to a local environment"
        ),
        "{}",
        c.warnings[3]
    );
    for w in c.warnings.iter().filter(|w| w.key != "singleuser.image") {
        assert!(w.message.starts_with("ignored on purpose: "), "{w}");
        assert_eq!(w.file, "test.yaml");
    }
    assert_eq!(
        c.warnings[0].to_string(),
        "test.yaml:2:3: proxy.secretToken: ignored on purpose: the built-in proxy needs no token"
    );
}

#[test]
fn every_ignored_key_is_accepted() {
    for entry in IGNORED_KEYS {
        let mut yaml = String::new();
        let segs: Vec<&str> = entry.key.split('.').collect();
        for (depth, seg) in segs.iter().enumerate() {
            yaml.push_str(&"  ".repeat(depth));
            yaml.push_str(seg);
            yaml.push(':');
            yaml.push_str(if depth + 1 == segs.len() {
                " anything\n"
            } else {
                "\n"
            });
        }
        let c = load(&yaml);
        assert_eq!(c.warnings.len(), 1, "{}", entry.key);
        assert_eq!(c.warnings[0].key, entry.key);
        assert_eq!(c.warnings[0].line, segs.len());
        assert!(c.warnings[0].message.contains(entry.reason));
    }
}

#[test]
fn yaml_anchors_and_aliases_work() {
    let c = load(
        "hub:\n  config:\n    Authenticator:\n      admin_users: &admins [alice, bob]\n      allowed_users: *admins\n",
    );
    assert_eq!(c.hub.config.authenticator.admin_users, ["alice", "bob"]);
    assert_eq!(c.hub.config.authenticator.allowed_users, ["alice", "bob"]);
}

#[test]
fn allow_root_is_an_explicit_boolean() {
    assert!(!HubConfig::default().hubfleet.local.allow_root);
    let c = load("hubfleet:\n  local:\n    allow_root: true\n");
    assert!(c.hubfleet.local.allow_root);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(
        !load("hubfleet:\n  local:\n    allow_root:\n")
            .hubfleet
            .local
            .allow_root
    );

    // Strict: a string that looks like a boolean is not one.
    let e = HubConfig::from_yaml_str("hubfleet:\n  local:\n    allow_root: \"yes\"\n", "t.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("t.yaml:3:17: hubfleet.local.allow_root:") && e.contains("`true` or `false`"),
        "{e}"
    );

    // With system users no server runs as root: the key has no effect, and says so.
    let c = load("hubfleet:\n  local:\n    system_users: true\n    allow_root: true\n");
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert_eq!(c.warnings[0].key, "hubfleet.local.allow_root");
    assert_eq!(c.warnings[0].line, 4);
    assert!(c.warnings[0].message.contains("has no effect"));
}

#[test]
fn existing_system_users_are_listed_accounts() {
    assert!(HubConfig::default()
        .hubfleet
        .local
        .existing_system_users
        .is_empty());
    let c = load(
        "hubfleet:\n  local:\n    system_users: true\n    existing_system_users: [jupyter-bob, jupyter-a_2eb]\n",
    );
    assert_eq!(
        c.hubfleet.local.existing_system_users,
        ["jupyter-bob", "jupyter-a_2eb"]
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    let error = |yaml: &str| {
        HubConfig::from_yaml_str(yaml, "t.yaml")
            .unwrap_err()
            .to_string()
    };
    // Not an account the hub would ever use: a hub user's name, or a system account.
    let e = error("hubfleet:\n  local:\n    system_users: true\n    existing_system_users:\n      - jupyter-ann\n      - bob\n");
    assert!(
        e.starts_with("t.yaml:6:")
            && e.contains("hubfleet.local.existing_system_users[1]")
            && e.contains("`bob` is not an account the hub would use")
            && e.contains("`jupyter-bob` for bob"),
        "{e}"
    );
    let e = error(
        "hubfleet:\n  local:\n    system_users: true\n    existing_system_users: [jupyter-x, jupyter-x]\n",
    );
    assert!(e.contains("listed twice"), "{e}");
    // A single name is not a list; numbers are not names.
    assert!(
        error("hubfleet:\n  local:\n    existing_system_users: jupyter-bob\n")
            .contains("a list of strings")
    );
    assert!(error("hubfleet:\n  local:\n    existing_system_users: [1]\n").contains("a string"));

    // Without system users the key does nothing, and says so.
    let c = load("hubfleet:\n  local:\n    existing_system_users: [jupyter-bob]\n");
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert_eq!(c.warnings[0].key, "hubfleet.local.existing_system_users");
    assert!(c.warnings[0].message.contains("has no effect"));
}
