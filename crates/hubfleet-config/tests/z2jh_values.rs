//! A pasted z2jh values file: every key of z2jh's chart is supported, ignored with a reason or
//! refused with a reason; files layer as Helm layers them; every problem is found in one pass;
//! and the hub keys added for issue 13 read as upstream's.
//!
//! z2jh's chart is found through `hubfleet_config::fixtures` (`$HUBFLEET_SHARED_DIR`, else
//! `<workspace>/../shared`); a missing fixtures directory fails the test with instructions.

use hubfleet_config::{fixtures, ConfigError, ConfigReport, ConfigSource, HubConfig};
use serde_yaml_ng::Value;

fn check(files: &[(&str, &str)]) -> ConfigReport {
    HubConfig::check(
        files
            .iter()
            .map(|(label, text)| ConfigSource::text(label, text))
            .collect(),
    )
}

fn load(yaml: &str) -> HubConfig {
    HubConfig::from_yaml_str(yaml, "t.yaml").unwrap_or_else(|e| panic!("{e}"))
}

fn errors(report: &ConfigReport) -> Vec<String> {
    report.errors.iter().map(ToString::to_string).collect()
}

fn warnings(report: &ConfigReport) -> Vec<String> {
    report.warnings.iter().map(ToString::to_string).collect()
}

#[track_caller]
fn assert_has(lines: &[String], needle: &str) {
    assert!(
        lines.iter().any(|l| l.contains(needle)),
        "{needle:?} not in:\n{}",
        lines.join("\n")
    );
}

fn z2jh(file: &str) -> (String, String) {
    let path = fixtures::fixture(&format!("zero-to-jupyterhub/jupyterhub/{file}"))
        .unwrap_or_else(|msg| panic!("{msg}"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    (path.display().to_string(), text)
}

// ----- z2jh's own chart ------------------------------------------------------------------------

#[test]
fn z2jh_values_yaml_loads_with_one_reasoned_warning_per_key() {
    let (label, text) = z2jh("values.yaml");
    let report = check(&[(&label, &text)]);
    assert!(report.errors.is_empty(), "{:#?}", errors(&report));
    assert!(report.config.is_some());
    let keys: Vec<&str> = report.warnings.iter().map(|w| w.key.as_str()).collect();
    for expected in [
        "imagePullSecret",
        "hub.image",
        "hub.service",
        "hub.networkPolicy",
        "hub.db.pvc",
        "proxy.chp",
        "proxy.traefik",
        "proxy.service",
        "rbac",
        "scheduling",
        "prePuller",
        "singleuser.uid",
        "singleuser.fsGid",
        "singleuser.networkPolicy",
        "singleuser.cloudMetadata",
        "hub.config.JupyterHub.admin_access",
    ] {
        assert!(
            keys.contains(&expected),
            "no warning for {expected}: {keys:?}"
        );
    }
    // One warning per key, never one per nested leaf.
    for (i, key) in keys.iter().enumerate() {
        for (j, other) in keys.iter().enumerate() {
            assert!(
                i == j || !other.starts_with(&format!("{key}.")),
                "{other} is warned about besides {key}"
            );
        }
    }
    for w in &report.warnings {
        assert_eq!(w.file, label);
        assert!(!w.message.trim().is_empty());
    }
    let image = report
        .warnings
        .iter()
        .find(|w| w.key == "hub.image")
        .unwrap();
    assert_eq!(
        text.lines().nth(image.line - 1).map(str::trim),
        Some("image:")
    );
    assert!(
        image
            .message
            .ends_with("applies once hubfleet runs on Kubernetes"),
        "{image}"
    );
    // Switched off or empty: nothing to say (ingress, httpRoute, debug, hub.extraConfig: {}).
    for silent in [
        "ingress",
        "httpRoute",
        "debug",
        "hub.extraConfig",
        "hub.nodeSelector",
    ] {
        assert!(!keys.contains(&silent), "{silent} warned about");
    }
}

/// Every first- and second-level key of z2jh's schema is either read, ignored with a reason or
/// refused with a reason: none is an "unknown key".
#[test]
fn every_z2jh_key_of_the_first_two_levels_is_supported_ignored_or_refused_with_a_reason() {
    let (_, text) = z2jh("values.schema.yaml");
    let schema: Value = serde_yaml_ng::from_str(&text).unwrap();
    let top = schema["properties"].as_mapping().unwrap();
    let mut checked = 0;
    for (key, node) in top {
        let key = key.as_str().unwrap();
        let mut paths = vec![key.to_owned()];
        if let Some(second) = node.get("properties").and_then(Value::as_mapping) {
            paths.extend(
                second
                    .keys()
                    .map(|k| format!("{key}.{}", k.as_str().unwrap())),
            );
        }
        for path in paths {
            let segs: Vec<&str> = path.split('.').collect();
            let yaml = match segs.as_slice() {
                [a] => format!("{a}: null\n"),
                [a, b] => format!("{a}:\n  {b}: null\n"),
                _ => unreachable!(),
            };
            let report = check(&[("t.yaml", &yaml)]);
            for e in &report.errors {
                assert!(
                    !e.to_string().contains("unknown key"),
                    "z2jh's `{path}` has no rule: {e}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} keys");
}

// ----- layering --------------------------------------------------------------------------------

#[test]
fn files_layer_as_helm_and_findings_name_their_file() {
    let base = "\
hub:
  config:
    Authenticator:
      admin_users: [alice, bob]
  templateVars:
    announcement: base
    announcement_login: base
  image:
    name: x
singleuser:
  defaultUrl: /tree
  startTimeout: 60
";
    let over = "\
hub:
  config:
    Authenticator:
      admin_users: [carol]
  templateVars:
    announcement: over
    announcement_login: null
singleuser:
  defaultUrl: /lab
";
    let report = check(&[("base.yaml", base), ("over.yaml", over)]);
    assert!(report.errors.is_empty(), "{:?}", errors(&report));
    let config = report.config.unwrap();
    // Lists are replaced, not appended.
    assert_eq!(config.hub.config.authenticator.admin_users, ["carol"]);
    // Mappings merge; later files win; `null` deletes.
    assert_eq!(config.hub.template_vars["announcement"], "over");
    assert!(!config.hub.template_vars.contains_key("announcement_login"));
    assert_eq!(config.singleuser.default_url.as_deref(), Some("/lab"));
    assert_eq!(config.singleuser.start_timeout.as_secs(), 60);
    // The warning about a key only the base sets names the base, at its line.
    let w = &report.warnings[0];
    assert_eq!(
        (w.file.as_str(), w.line, w.key.as_str()),
        ("base.yaml", 8, "hub.image")
    );

    // An error in the base that a later file replaces is gone; one the later file makes is
    // reported in that file.
    let report = check(&[
        (
            "base.yaml",
            "singleuser:\n  startTimeout: soon\n  cmd: [x]\n",
        ),
        ("over.yaml", "singleuser:\n  startTimeout: 30\n  cmd: []\n"),
    ]);
    let errors = errors(&report);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("over.yaml:3:8: singleuser.cmd:"),
        "{errors:?}"
    );
}

#[test]
fn a_file_that_is_not_yaml_is_reported_with_the_others() {
    let report = check(&[
        ("a.yaml", "hub:\n\tconfig: {}\n"),
        ("b.yaml", "- not\n- a mapping\n"),
        ("c.yaml", "hub: {}\n"),
    ]);
    let errors = errors(&report);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("a.yaml:2:"), "{errors:?}");
    assert!(errors[0].contains("tab"), "{errors:?}");
    assert!(
        errors[1].starts_with("b.yaml:1:1: the file must be a mapping"),
        "{errors:?}"
    );
    assert!(report.config.is_none());
}

// ----- every problem in one pass ----------------------------------------------------------------

#[test]
fn every_problem_is_reported_in_one_pass_in_line_order() {
    let report = check(&[(
        "hub.yaml",
        "\
hub:
  config:
    Authenticator:
      admin_user: [alice]
    Spawner:
      mem_limit: 2G
      cpu_limit: 2
  db:
    type: postgres
    password: secret
  services:
    grader:
      api_token: short
singleuser:
  startTimeout: soon
  defaul_url: /lab
cull:
  every: 0
scheduling:
  userScheduler: {enabled: true}
",
    )]);
    let lines = errors(&report);
    let expected = [
        "hub.yaml:4:7: unknown key `hub.config.Authenticator.admin_user`; did you mean `admin_users`?",
        "hub.yaml:6:7: hub.config.Spawner.mem_limit: hubfleet reads this setting from its own key; use `singleuser.memory.limit` instead.",
        "hub.yaml:7:7: hub.config.Spawner.cpu_limit: hubfleet reads this setting from its own key; use `singleuser.cpu.limit` instead.",
        "hub.yaml:9:5: hub.db.type: `postgres` needs `hub.db.url`",
        "hub.yaml:10:5: hub.db.password: hubfleet reads the database password from the database URL; use `hub.db.url`",
        "hub.yaml:13:7: hub.services.grader.api_token: must be at least 8 characters long",
        "hub.yaml:15:17: singleuser.startTimeout: invalid type: string \"soon\"",
        "hub.yaml:16:3: unknown key `singleuser.defaul_url`; did you mean `defaultUrl`?",
        "hub.yaml:18:3: cull.every: must be at least 1",
    ];
    assert_eq!(lines.len(), expected.len(), "{lines:#?}");
    for (line, expected) in lines.iter().zip(expected) {
        assert!(line.starts_with(expected), "{line}\nexpected: {expected}");
    }
    // The password is never repeated.
    assert!(!lines.iter().any(|l| l.contains("secret")), "{lines:#?}");
    assert_eq!(
        warnings(&report),
        ["hub.yaml:19:1: scheduling: ignored on purpose: placement of user pods on Kubernetes nodes (user scheduler, placeholder pods, node affinity); applies once hubfleet runs on Kubernetes"]
    );
    // The first error is what `from_yaml_str` returns.
    let first = HubConfig::from_yaml_str(
        "hub:\n  config:\n    Authenticator:\n      admin_user: [a]\ncull:\n  every: 0\n",
        "hub.yaml",
    )
    .unwrap_err();
    assert_eq!(first.line(), Some(4));
}

#[test]
fn what_taking_a_bad_key_out_causes_is_not_reported() {
    // A malformed URL is one problem, not two (`postgres` then also lacks a URL).
    let report = check(&[("t.yaml", "hub:\n  db:\n    type: postgres\n    url: 5\n")]);
    assert_eq!(report.errors.len(), 1, "{:?}", errors(&report));
    assert!(errors(&report)[0].contains("hub.db.url"));
    // A misspelt `value` is one problem (not also "no value").
    let report = check(&[(
        "t.yaml",
        "singleuser:\n  extraEnv:\n    FOO:\n      vaule: x\n    BAR: [1]\n",
    )]);
    let lines = errors(&report);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains("singleuser.extraEnv.FOO.vaule"),
        "{lines:?}"
    );
    assert!(lines[1].contains("singleuser.extraEnv.BAR"), "{lines:?}");
    // A bad item of a list is reported once, and the rest of the file still checked.
    let report = check(&[(
        "t.yaml",
        "hub:\n  config:\n    Authenticator:\n      admin_users: [alice, 5]\n  image: {name: x}\ncull:\n  timeout: 0\n",
    )]);
    let lines = errors(&report);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("admin_users[1]"), "{lines:?}");
    assert!(lines[1].contains("cull.timeout"), "{lines:?}");
    assert_has(&warnings(&report), "hub.image");
}

// ----- keys hubfleet does not take --------------------------------------------------------------

#[test]
fn upstream_traits_with_a_hubfleet_key_name_it() {
    for (trait_key, instead) in [
        ("Spawner.mem_limit: 1G", "`singleuser.memory.limit`"),
        ("Spawner.cpu_guarantee: 1", "`singleuser.cpu.guarantee`"),
        ("Spawner.default_url: /lab", "`singleuser.defaultUrl`"),
        ("Spawner.cmd: [x]", "`singleuser.cmd`"),
        ("Spawner.environment: {A: b}", "`singleuser.extraEnv`"),
        ("KubeSpawner.start_timeout: 60", "`singleuser.startTimeout`"),
        ("KubeSpawner.profile_list: [{}]", "`singleuser.profileList`"),
        ("JupyterHub.template_vars: {a: b}", "`hub.templateVars`"),
        ("JupyterHub.load_roles: [{}]", "`hub.loadRoles`"),
        ("JupyterHub.bind_url: http://x:8000", "`hubfleet.listen`"),
        ("JupyterHub.cookie_secret: ab", "`hub.cookieSecret`"),
        ("CryptKeeper.keys: [x]", "`JUPYTERHUB_CRYPT_KEY`"),
    ] {
        let (class, rest) = trait_key.split_once('.').unwrap();
        let (name, value) = rest.split_once(": ").unwrap();
        let yaml = format!("hub:\n  config:\n    {class}:\n      {name}: {value}\n");
        let report = check(&[("t.yaml", &yaml)]);
        let lines = errors(&report);
        assert_eq!(lines.len(), 1, "{yaml}{lines:?}");
        assert!(
            lines[0].starts_with(&format!("t.yaml:4:7: hub.config.{class}.{name}: ")),
            "{lines:?}"
        );
        assert!(lines[0].contains(&format!("use {instead}")), "{lines:?}");
    }
    // Other KubeSpawner settings: one warning for the class, naming them.
    let report = check(&[(
        "t.yaml",
        "hub:\n  config:\n    KubeSpawner:\n      working_dir: /home/jovyan\n      node_selector: {a: b}\n      tolerations: []\n",
    )]);
    assert!(report.errors.is_empty(), "{:?}", errors(&report));
    assert_eq!(
        warnings(&report),
        ["t.yaml:3:5: hub.config.KubeSpawner: ignored on purpose: KubeSpawner's own settings (pods, volumes, node selection) (`working_dir`, `node_selector`); applies once hubfleet runs on Kubernetes"]
    );
    // An unknown Spawner trait lists what hubfleet knows there.
    let report = check(&[(
        "t.yaml",
        "hub:\n  config:\n    Spawner:\n      notebok_dir: x\n",
    )]);
    let lines = errors(&report);
    assert!(
        lines[0].contains("unknown key `hub.config.Spawner.notebok_dir`"),
        "{lines:?}"
    );
    assert!(lines[0].contains("`mem_limit`"), "{lines:?}");
}

#[test]
fn base_urls_are_paths_and_upstreams_spelling_names_the_key() {
    for (value, base) in [
        ("/", "/"),
        ("/jupyter/", "/jupyter/"),
        ("jupyter", "/jupyter/"),
    ] {
        let report = check(&[("t.yaml", &format!("hub:\n  baseUrl: {value}\n"))]);
        assert!(
            report.errors.is_empty() && report.warnings.is_empty(),
            "{value}"
        );
        let config = report.config.expect("a config");
        assert_eq!(config.hub.base_url.as_str(), base);
    }
    let report = check(&[("t.yaml", "hub:\n  baseUrl: /a/../b/\n")]);
    assert!(
        errors(&report)[0].contains("not a plain URL path"),
        "{report:?}"
    );
    let report = check(&[(
        "t.yaml",
        "hub:\n  config:\n    JupyterHub:\n      base_url: /jupyter/\n",
    )]);
    assert!(errors(&report)[0].contains("`hub.baseUrl`"), "{report:?}");
    let report = check(&[(
        "t.yaml",
        "hub:\n  config:\n    JupyterHub:\n      cleanup_servers: false\n",
    )]);
    assert!(report.errors.is_empty(), "{:?}", errors(&report));
}

#[test]
fn kubernetes_keys_that_ask_for_nothing_are_accepted_silently() {
    let report = check(&[(
        "t.yaml",
        "hub:\n  nodeSelector: {}\n  tolerations: []\n  image:\n    name:\n    tag:\ningress:\n  enabled: false\n  hosts: [x]\nsingleuser:\n  uid:\n",
    )]);
    assert!(
        report.errors.is_empty() && report.warnings.is_empty(),
        "{report:?}"
    );
}

// ----- hub.cookieSecret -------------------------------------------------------------------------

#[test]
fn cookie_secret_is_hex_of_at_least_32_bytes_and_never_shown() {
    let hex = "8c5d2f6a0b1e4c7d9f3a5b6c8d0e2f4a6b8c0d2e4f6a8b0c2d4e6f8a0b2c4d6e";
    let config = load(&format!("hub:\n  cookieSecret: {hex}\n"));
    let secret = config.hub.cookie_secret.as_ref().unwrap();
    assert_eq!(secret.expose().len(), 32);
    assert_eq!(secret.expose()[0], 0x8c);
    assert!(!format!("{config:?}").contains(hex));
    assert!(load("hub:\n  cookieSecret:\n").hub.cookie_secret.is_none());
    assert!(
        load(&format!("hub:\n  cookieSecret: {}\n", hex.to_uppercase()))
            .hub
            .cookie_secret
            .is_some()
    );

    for (value, why) in [
        (
            "not-hex-but-long-enough-to-be-a-secret-0000000000000000000000000",
            "must be hexadecimal digits",
        ),
        (&hex[1..], "an even number of them"),
        (
            "abcdef0123",
            "is 5 bytes; it must be at least 32 bytes (64 hex digits)",
        ),
        ("1234567890", "quote it"),
    ] {
        let e = HubConfig::from_yaml_str(&format!("hub:\n  cookieSecret: {value}\n"), "t.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.yaml:2:17: hub.cookieSecret: "), "{e}");
        assert!(e.contains(why), "{e}");
        assert!(
            e.contains("openssl rand -hex 32") || e.contains("quote"),
            "{e}"
        );
        assert!(!e.contains(value), "the value is shown: {e}");
    }
}

// ----- hub.extraEnv ------------------------------------------------------------------------------

#[test]
fn hub_extra_env_is_the_hubs_environment() {
    let config = load(
        "hub:\n  extraEnv:\n    JUPYTERHUB_CRYPT_KEY: abc\n    LANG: C.UTF-8\n    RENAMED: {name: PATH, value: /opt/bin}\n",
    );
    assert_eq!(
        config.hub_env("JUPYTERHUB_CRYPT_KEY").as_deref(),
        Some("abc")
    );
    assert_eq!(config.hub_env("PATH").as_deref(), Some("/opt/bin"));
    // Not in extraEnv: the process's own.
    assert_eq!(config.hub_env("HOME"), std::env::var("HOME").ok());
    let kept: Vec<String> = config.hub_env_kept().into_keys().collect();
    assert_eq!(kept, ["LANG", "PATH"]);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert!(!format!("{config:?}").contains("abc"), "a value is shown");

    let config = load("hub:\n  extraEnv:\n    - {name: LANG, value: C}\n");
    assert_eq!(config.hub_env("LANG").as_deref(), Some("C"));

    let report = check(&[(
        "t.yaml",
        "hub:\n  extraEnv:\n    OAUTH_SECRET: x\n    NAMESPACE:\n      valueFrom:\n        fieldRef: {fieldPath: metadata.namespace}\n",
    )]);
    assert!(report.errors.is_empty(), "{:?}", errors(&report));
    let lines = warnings(&report);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("t.yaml:2:3: hub.extraEnv: ")),
        "{lines:?}"
    );
    assert_has(
        &lines,
        "`NAMESPACE` not set: `valueFrom` reads from Kubernetes",
    );
    assert_has(&lines, "applies once hubfleet runs on Kubernetes");
    assert_has(&lines, "`OAUTH_SECRET` has no effect");
    assert_has(&lines, "`singleuser.extraEnv`");
}

// ----- load_groups, admin_access and the settings with two spellings ---------------------------

#[test]
fn load_groups_in_both_forms() {
    let config = load(
        "hub:\n  config:\n    JupyterHub:\n      load_groups:\n        students:\n          users: [alice, bob]\n          properties: {course: intro}\n        staff: {users: [carol]}\n        empty:\n",
    );
    let groups = &config.hub.config.jupyterhub.load_groups;
    assert_eq!(groups["students"].users, ["alice", "bob"]);
    assert_eq!(
        groups["students"].properties.as_ref().unwrap()["course"],
        "intro"
    );
    assert_eq!(groups["staff"].properties, None);
    assert!(groups["empty"].users.is_empty());
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);

    // The list form is deprecated upstream (3.2): accepted, with its warning.
    let report = check(&[(
        "t.yaml",
        "hub:\n  config:\n    JupyterHub:\n      load_groups:\n        staff: [carol, '']\n",
    )]);
    assert_eq!(
        errors(&report),
        ["t.yaml:5:24: hub.config.JupyterHub.load_groups.staff[1]: is an empty username"]
    );
    assert_has(
        &warnings(&report),
        "list form `group: [users]` is deprecated",
    );

    // Upstream refuses to start when the authenticator manages groups.
    let e = HubConfig::from_yaml_str(
        "hub:\n  config:\n    Authenticator:\n      manage_groups: true\n    JupyterHub:\n      load_groups:\n        staff: [carol]\n",
        "t.yaml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("t.yaml:6:7: hub.config.JupyterHub.load_groups: cannot be used with `manage_groups: true`"), "{e}");
}

#[test]
fn admin_access_has_no_effect_and_says_so() {
    for (value, what) in [
        ("true", "admins reach users' servers anyway"),
        ("false", "it does not keep admins out of users' servers"),
    ] {
        let config = load(&format!(
            "hub:\n  config:\n    JupyterHub:\n      admin_access: {value}\n"
        ));
        assert_eq!(config.warnings.len(), 1);
        let w = &config.warnings[0];
        assert_eq!(
            (w.line, w.key.as_str()),
            (4, "hub.config.JupyterHub.admin_access")
        );
        assert!(
            w.message.contains(what) && w.message.contains("deprecated since JupyterHub 2.0"),
            "{w}"
        );
    }
}

#[test]
fn z2jh_and_upstream_spellings_of_the_login_and_metrics_settings() {
    let config = HubConfig::default();
    assert!(!config.redirect_to_server());
    assert!(!config.shutdown_on_logout());
    assert!(config.authenticate_prometheus());

    let config = load("hub:\n  redirectToServer: true\n  shutdownOnLogout: true\n  authenticatePrometheus: false\n");
    assert!(config.redirect_to_server() && config.shutdown_on_logout());
    assert!(!config.authenticate_prometheus());
    let config = load("hub:\n  config:\n    JupyterHub:\n      redirect_to_server: true\n      shutdown_on_logout: true\n      authenticate_prometheus: false\n");
    assert!(config.redirect_to_server() && config.shutdown_on_logout());
    assert!(!config.authenticate_prometheus());
    // z2jh's `null` means the default.
    assert!(load("hub:\n  authenticatePrometheus:\n").authenticate_prometheus());

    let report = check(&[(
        "t.yaml",
        "hub:\n  redirectToServer: true\n  config:\n    JupyterHub:\n      redirect_to_server: false\n",
    )]);
    assert_eq!(
        errors(&report),
        ["t.yaml:2:3: hub.redirectToServer: is `true` but `hub.config.JupyterHub.redirect_to_server` (line 5) is `false`; they are two spellings of the same setting: keep only one"]
    );
}

#[test]
fn spawn_limits_in_both_spellings_and_the_api_rate_limit() {
    let config = HubConfig::default();
    // z2jh's defaults: 64 starts at once, no limit on running servers.
    assert_eq!(config.concurrent_spawn_limit(), 64);
    assert_eq!(config.active_server_limit(), 0);
    assert_eq!(config.hubfleet.api_rate_limit.per_second, 10);
    assert_eq!(config.hubfleet.api_rate_limit.burst, 100);

    let config = load("hub:\n  concurrentSpawnLimit: 0\n  activeServerLimit: 300\n");
    assert_eq!(config.concurrent_spawn_limit(), 0);
    assert_eq!(config.active_server_limit(), 300);
    let config = load(
        "hub:\n  config:\n    JupyterHub:\n      concurrent_spawn_limit: 100\n      active_server_limit: 5\n",
    );
    assert_eq!(config.concurrent_spawn_limit(), 100);
    assert_eq!(config.active_server_limit(), 5);
    // z2jh's `null` means the default.
    assert_eq!(
        load("hub:\n  concurrentSpawnLimit:\n").concurrent_spawn_limit(),
        64
    );
    let config = load("hubfleet:\n  api_rate_limit:\n    per_second: 0\n");
    assert_eq!(config.hubfleet.api_rate_limit.per_second, 0);
    assert_eq!(config.hubfleet.api_rate_limit.burst, 100);

    let report = check(&[(
        "t.yaml",
        "hub:\n  concurrentSpawnLimit: 10\n  config:\n    JupyterHub:\n      concurrent_spawn_limit: 20\n",
    )]);
    assert_eq!(
        errors(&report),
        ["t.yaml:2:3: hub.concurrentSpawnLimit: is `10` but `hub.config.JupyterHub.concurrent_spawn_limit` (line 5) is `20`; they are two spellings of the same setting: keep only one"]
    );
    let report = check(&[("t.yaml", "hub:\n  activeServerLimit: -1\n")]);
    assert_has(&errors(&report), "hub.activeServerLimit");
    let report = check(&[("t.yaml", "hubfleet:\n  api_rate_limit:\n    burst: 0\n")]);
    assert_has(&errors(&report), "hubfleet.api_rate_limit.burst: is 0");
}

#[test]
fn reading_errors_come_with_the_report() {
    let report = HubConfig::check_paths(&[std::path::PathBuf::from("/nonexistent/hub.yaml")]);
    assert!(matches!(
        report.errors.as_slice(),
        [ConfigError::Read { .. }]
    ));
}
