//! What a start gets: the profile and options a user chose (KubeSpawner's `profile_list`
//! semantics), checked against what their groups allow, turned into the launch spec's command,
//! environment and resources. Where a server's home, account and shared folders are is the
//! spawner's business.
//!
//! `user_options` are KubeSpawner's: `{"profile": <slug>, <option>: <choice>,
//! "<option>--unlisted-choice": <free text>}`. A missing profile means the default one (the
//! first with `default: true`, else the first the user may use); a missing option means its
//! default choice. Anything that does not fit is refused with a message, before anything is
//! started.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hubfleet_config::profiles::{Choice, Overrides, Profile, ProfileOption};
use hubfleet_spawn::Limits;
pub use hubfleet_spawn::ResolvedProfile;
use serde_json::Value;

/// The user-option key of an option's free-text value.
pub fn unlisted_key(option: &str) -> String {
    format!("{option}--unlisted-choice")
}

/// The choice value fancy-profiles sends when the free text is used.
pub const UNLISTED_CHOICE: &str = "unlisted_choice";

/// A local environment (`hubfleet.local.environments.<name>`), paths resolved.
#[derive(Clone, Debug, Default)]
pub struct Environment {
    pub path: Option<PathBuf>,
    pub cmd: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
}

/// Everything about profiles, limits, environments and storage, from the config.
#[derive(Clone, Debug, Default)]
pub struct SpawnOptions {
    pub profiles: Vec<Profile>,
    /// The same profiles as written in values (`slug` set to the name the hub knows them by),
    /// for a spawner that applies them itself ([`hubfleet_spawn::ProfileChoice::offered`]).
    /// `None` when they come from the config alone (not read from the store).
    pub profiles_as_written: Option<Vec<Value>>,
    /// `singleuser.image`.
    pub image: Option<String>,
    /// `singleuser.memory` / `singleuser.cpu`.
    pub limits: Limits,
    pub environments: Vec<(String, Environment)>,
    /// `singleuser.storage.capacity`: the quota of each home, in bytes.
    pub storage_capacity: Option<u64>,
}

/// CPUs as Python writes a float (`2.0`, `0.5`), as upstream's `CPU_LIMIT`.
pub fn python_float(milli: u64) -> String {
    let s = hubfleet_config::profiles::format_cpu(milli);
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

/// May a member of `groups` use `profile`?
pub fn allowed(profile: &Profile, groups: &[String]) -> bool {
    match &profile.allowed_groups {
        None => true,
        Some(allowed) => allowed.iter().any(|g| groups.contains(g)),
    }
}

/// The profiles a member of `groups` may use, in config order.
pub fn visible<'a>(options: &'a SpawnOptions, groups: &[String]) -> Vec<&'a Profile> {
    options
        .profiles
        .iter()
        .filter(|p| allowed(p, groups))
        .collect()
}

/// The default profile among `profiles`: the first with `default: true`, else the first.
pub fn default_profile<'a>(profiles: &[&'a Profile]) -> Option<&'a Profile> {
    profiles
        .iter()
        .find(|p| p.default)
        .or_else(|| profiles.first())
        .copied()
}

/// May a member of `groups` pick `choice`?
pub fn choice_allowed(choice: &Choice, groups: &[String]) -> bool {
    match &choice.allowed_groups {
        None => true,
        Some(allowed) => allowed.iter().any(|g| groups.contains(g)),
    }
}

/// The default choice of an option among those `groups` may pick: `default: true`, else the
/// first.
pub fn default_choice<'a>(option: &'a ProfileOption, groups: &[String]) -> Option<&'a str> {
    let mine: Vec<&(String, Choice)> = option
        .choices
        .iter()
        .filter(|(_, c)| choice_allowed(c, groups))
        .collect();
    mine.iter()
        .find(|(_, c)| c.default)
        .or(mine.first())
        .map(|(k, _)| k.as_str())
}

fn option_label(name: &str, option: &ProfileOption) -> String {
    if option.display_name.is_empty() {
        name.to_string()
    } else {
        option.display_name.clone()
    }
}

/// Check `user_options` for a member of `groups` and work out what the server gets.
pub fn resolve(
    options: &SpawnOptions,
    groups: &[String],
    user_options: &Value,
) -> Result<ResolvedProfile, String> {
    let empty = serde_json::Map::new();
    let given = match user_options {
        Value::Object(map) => map,
        Value::Null => &empty,
        _ => return Err("user_options must be a JSON object".into()),
    };
    let text = |key: &str| -> Result<Option<&str>, String> {
        match given.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(format!("user option `{key}` must be a string, not {other}")),
        }
    };
    let mut overrides = Overrides {
        image: options.image.clone(),
        mem_limit: Some(options.limits.mem_limit),
        mem_guarantee: Some(options.limits.mem_guarantee),
        cpu_limit: Some(options.limits.cpu_limit),
        cpu_guarantee: Some(options.limits.cpu_guarantee),
        ..Default::default()
    };
    let mut resolved = ResolvedProfile::default();
    if !options.profiles.is_empty() {
        let mine = visible(options, groups);
        let names = || {
            mine.iter()
                .map(|p| format!("`{}`", p.slug))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let profile = match text("profile")? {
            Some(slug) => match mine.iter().find(|p| p.slug == slug) {
                Some(p) => *p,
                None if options.profiles.iter().any(|p| p.slug == slug) => {
                    return Err(format!(
                        "profile `{slug}` is not available to you (it is limited to some groups); available: {}",
                        names()
                    ))
                }
                None => {
                    return Err(format!(
                        "there is no profile `{slug}`; available: {}",
                        names()
                    ))
                }
            },
            None => default_profile(&mine).ok_or_else(|| {
                "no profile is available to you: every profile is limited to groups you are not in; ask an admin".to_string()
            })?,
        };
        resolved.profile = Some((profile.slug.clone(), profile.display_name.clone()));
        overrides.apply(&profile.overrides);
        for (name, option) in &profile.options {
            let label = option_label(name, option);
            let unlisted = option.unlisted_choice.as_ref().filter(|u| u.enabled);
            let free = text(&unlisted_key(name))?;
            let chosen = text(name)?;
            match (free, unlisted) {
                (Some(value), Some(u)) if chosen.is_none() || chosen == Some(UNLISTED_CHOICE) => {
                    if let Some(re) = &u.validation_regex {
                        // As KubeSpawner: re.match, anchored at the start.
                        let ok = regex::Regex::new(&format!("^(?:{re})"))
                            .map(|r| r.is_match(value))
                            .unwrap_or(false);
                        if !ok {
                            let why = u.validation_message.clone().unwrap_or_else(|| {
                                format!("it must match the regular expression {re}")
                            });
                            return Err(format!("`{value}` is not valid for {label}: {why}"));
                        }
                    }
                    overrides.apply(&u.kubespawner_override.with_value(value));
                    resolved.choices.insert(name.clone(), value.to_string());
                }
                (Some(_), None) => {
                    return Err(format!(
                        "{label} takes no free-text value (`{}`): pick one of its choices",
                        unlisted_key(name)
                    ))
                }
                _ => {
                    let key = match chosen {
                        Some(UNLISTED_CHOICE) if unlisted.is_some() => {
                            return Err(format!("enter a value for {label}"))
                        }
                        Some(key) => key,
                        None => default_choice(option, groups)
                            .ok_or_else(|| format!("enter a value for {label}"))?,
                    };
                    let found = option.choices.iter().find(|(k, _)| k == key);
                    if found.is_some_and(|(_, c)| !choice_allowed(c, groups)) {
                        return Err(format!(
                            "`{key}` of {label} is not available to you (it is limited to some groups)"
                        ));
                    }
                    let Some((_, choice)) = found else {
                        return Err(format!(
                            "`{key}` is not a choice of {label}; choices: {}",
                            option
                                .choices
                                .iter()
                                .map(|(k, _)| format!("`{k}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    };
                    overrides.apply(&choice.kubespawner_override);
                    resolved.choices.insert(name.clone(), key.to_string());
                }
            }
        }
    }
    resolved.limits = Limits {
        mem_limit: overrides.mem_limit.flatten(),
        mem_guarantee: overrides.mem_guarantee.flatten(),
        cpu_limit: overrides.cpu_limit.flatten(),
        cpu_guarantee: overrides.cpu_guarantee.flatten(),
    };
    resolved.default_url = overrides.default_url.clone().flatten();
    resolved.kubernetes = overrides.kubernetes.clone();
    resolved.gpus = overrides.gpu_request()?.unwrap_or(0);
    resolved.image = overrides.image.clone();
    if let Some(image) = &resolved.image {
        if !options.environments.is_empty() {
            let Some((name, environment)) = options.environments.iter().find(|(n, _)| n == image)
            else {
                return Err(format!(
                    "no local environment is named `{image}`; available: {}",
                    options
                        .environments
                        .iter()
                        .map(|(n, _)| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            resolved.environment = Some(name.clone());
            resolved.env.extend(environment.env.clone());
        }
        resolved.env.insert("JUPYTER_IMAGE".into(), image.clone());
        resolved
            .env
            .insert("JUPYTER_IMAGE_SPEC".into(), image.clone());
    }
    resolved.env.extend(overrides.environment.clone());
    let l = resolved.limits;
    for (key, value) in [
        ("MEM_LIMIT", l.mem_limit.map(|v| v.to_string())),
        ("MEM_GUARANTEE", l.mem_guarantee.map(|v| v.to_string())),
        ("CPU_LIMIT", l.cpu_limit.map(python_float)),
        ("CPU_GUARANTEE", l.cpu_guarantee.map(python_float)),
    ] {
        if let Some(value) = value {
            resolved.env.insert(key.into(), value);
        }
    }
    Ok(resolved)
}

/// The local environment a resolved start uses, if its image maps to one.
pub fn environment<'a>(
    options: &'a SpawnOptions,
    resolved: &ResolvedProfile,
) -> Option<&'a Environment> {
    let name = resolved.environment.as_deref()?;
    options
        .environments
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, e)| e)
}

/// A server's `PATH`: its environment's `bin/`, then the system's directories. Never the hub's
/// own `PATH`, which is the operator's (e.g. `/root/.cargo/bin`) and not the users'.
pub fn server_path(prefix: Option<&Path>) -> String {
    match prefix {
        Some(prefix) => format!("{}/bin:{}", prefix.display(), hubfleet_spawn::SYSTEM_PATH),
        None => hubfleet_spawn::SYSTEM_PATH.to_string(),
    }
}

/// Put a resolved start into the launch command and environment: the environment's command or
/// Python prefix, its variables and the overrides' (never replacing the protocol's
/// `JUPYTERHUB_*` variables), and the profile's `default_url`.
pub fn apply(
    options: &SpawnOptions,
    resolved: &ResolvedProfile,
    configured_cmd: Option<&Vec<String>>,
    cmd: &mut Vec<String>,
    env: &mut BTreeMap<String, String>,
) {
    let protocol = |k: &str| k.starts_with("JUPYTERHUB_") || k == "JPY_API_TOKEN";
    if let Some(environment) = environment(options, resolved) {
        if let Some(c) = &environment.cmd {
            *cmd = c.clone();
        } else if let Some(prefix) = &environment.path {
            *cmd = match configured_cmd {
                Some(c) => c.clone(),
                None => vec![prefix
                    .join("bin/jupyterhub-singleuser")
                    .display()
                    .to_string()],
            };
            env.insert("PATH".into(), server_path(Some(prefix)));
            if prefix.join("conda-meta").is_dir() {
                env.remove("VIRTUAL_ENV");
                env.insert("CONDA_PREFIX".into(), prefix.display().to_string());
            } else {
                env.insert("VIRTUAL_ENV".into(), prefix.display().to_string());
            }
        }
    }
    for (k, v) in &resolved.env {
        if !protocol(k) {
            env.insert(k.clone(), v.clone());
        }
    }
    if let Some(url) = &resolved.default_url {
        env.insert("JUPYTERHUB_DEFAULT_URL".into(), url.clone());
    }
}

/// A program users' servers run: what the command names (a path, or a name looked up on
/// `search_path`) and the config key that chose it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerProgram {
    /// `singleuser.cmd`, `hubfleet.local.python_env` or `hubfleet.local.environments.<name>`.
    pub key: String,
    pub program: String,
    /// The `PATH` the server gets.
    pub search_path: String,
}

/// Every program a server may be started with (the default command and each environment's),
/// and the Python of each Python environment (kernels and terminals run it from `PATH`). Built
/// the way a start builds its command, so a check of these covers what servers run.
pub fn server_programs(settings: &crate::Settings) -> Vec<ServerProgram> {
    let default_key = match (&settings.cmd, &settings.python_env) {
        (None, Some(_)) => "hubfleet.local.python_env",
        _ => "singleuser.cmd",
    };
    let default_path = server_path(settings.python_env.as_deref());
    let mut programs = Vec::new();
    let mut add = |key: &str, cmd: &[String], search_path: &str, prefix: Option<&Path>| {
        if let Some(program) = cmd.first() {
            programs.push(ServerProgram {
                key: key.to_string(),
                program: program.clone(),
                search_path: search_path.to_string(),
            });
        }
        let python = prefix.and_then(|prefix| {
            ["bin/python3", "bin/python"]
                .iter()
                .map(|name| prefix.join(name))
                .find(|p| p.exists())
        });
        if let Some(python) = python {
            programs.push(ServerProgram {
                key: key.to_string(),
                program: python.display().to_string(),
                search_path: search_path.to_string(),
            });
        }
    };
    let default_cmd = settings.command();
    add(
        default_key,
        &default_cmd,
        &default_path,
        settings.python_env.as_deref(),
    );
    for (name, environment) in &settings.spawn_options.environments {
        let resolved = ResolvedProfile {
            environment: Some(name.clone()),
            ..ResolvedProfile::default()
        };
        let mut cmd = default_cmd.clone();
        let mut env = BTreeMap::from([("PATH".to_string(), default_path.clone())]);
        apply(
            &settings.spawn_options,
            &resolved,
            settings.cmd.as_ref(),
            &mut cmd,
            &mut env,
        );
        add(
            &format!("hubfleet.local.environments.{name}"),
            &cmd,
            &env["PATH"],
            environment.path.as_deref(),
        );
    }
    programs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn options() -> SpawnOptions {
        let yaml = r#"
singleuser:
  memory: {limit: 2G}
  profileList:
    - display_name: Small
      slug: small
      kubespawner_override: {mem_limit: 1G, cpu_limit: 1}
    - display_name: GPU
      slug: gpu
      default: true
      allowed_groups: [gpu-users]
      kubespawner_override: {mem_limit: 4G}
    - display_name: Bring your own
      slug: byo
      profile_options:
        image:
          display_name: Image
          unlisted_choice:
            enabled: true
            display_name: Custom image
            validation_regex: '^py-[0-9.]+$'
            validation_message: Must look like py-3.12
            kubespawner_override: {image: '{value}', environment: {CUSTOM: '{value}'}}
          choices:
            one: {display_name: One, kubespawner_override: {image: py-1}}
            two: {display_name: Two, default: true, kubespawner_override: {image: py-2}}
            gpu-env: {display_name: GPU env, allowed_groups: [gpu-users], kubespawner_override: {image: py-1}}
hubfleet:
  local:
    environments:
      py-1: {cmd: [x]}
      py-2: {cmd: [y], env: {FROM_ENV: "2"}}
      py-3.12: {cmd: [z]}
"#;
        let c = hubfleet_config::HubConfig::from_yaml_str(yaml, "t.yaml").unwrap();
        SpawnOptions {
            profiles: c.singleuser.profile_list.clone(),
            limits: Limits {
                mem_limit: c.singleuser.memory.limit,
                ..Default::default()
            },
            environments: c
                .hubfleet
                .local
                .environments
                .iter()
                .map(|(n, e)| {
                    (
                        n.clone(),
                        Environment {
                            path: None,
                            cmd: e.cmd.clone(),
                            env: e.env.clone(),
                        },
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_depend_on_groups() {
        let o = options();
        let none: Vec<String> = vec![];
        let r = resolve(&o, &none, &json!({})).unwrap();
        assert_eq!(r.profile.unwrap().0, "small");
        assert_eq!(r.limits.mem_limit, Some(1 << 30));
        assert_eq!(r.limits.cpu_limit, Some(1000));
        assert_eq!(r.env["CPU_LIMIT"], "1.0");
        assert_eq!(r.env["MEM_LIMIT"], (1u64 << 30).to_string());
        let gpu = vec!["gpu-users".to_string()];
        let r = resolve(&o, &gpu, &json!({})).unwrap();
        assert_eq!(r.profile.unwrap().0, "gpu");
        assert_eq!(visible(&o, &none).len(), 2);
        assert_eq!(visible(&o, &gpu).len(), 3);
    }

    #[test]
    fn choices_and_unlisted() {
        let o = options();
        let g: Vec<String> = vec![];
        let r = resolve(&o, &g, &json!({"profile": "byo"})).unwrap();
        assert_eq!(r.image.as_deref(), Some("py-2"));
        assert_eq!(r.env["FROM_ENV"], "2");
        assert_eq!(r.limits.mem_limit, Some(2 << 30));
        let r = resolve(&o, &g, &json!({"profile": "byo", "image": "one"})).unwrap();
        assert_eq!(r.environment.as_deref(), Some("py-1"));
        let r = resolve(
            &o,
            &g,
            &json!({"profile": "byo", "image--unlisted-choice": "py-3.12"}),
        )
        .unwrap();
        assert_eq!(r.image.as_deref(), Some("py-3.12"));
        assert_eq!(r.env["CUSTOM"], "py-3.12");
        assert_eq!(r.env["JUPYTER_IMAGE"], "py-3.12");
    }

    #[test]
    fn bad_choices_are_refused() {
        let o = options();
        let g: Vec<String> = vec![];
        let e = resolve(&o, &g, &json!({"profile": "gpu"})).unwrap_err();
        assert!(e.contains("not available to you"), "{e}");
        let e = resolve(&o, &g, &json!({"profile": "nope"})).unwrap_err();
        assert!(e.contains("there is no profile `nope`"), "{e}");
        let e = resolve(&o, &g, &json!({"profile": "byo", "image": "three"})).unwrap_err();
        assert!(e.contains("`three` is not a choice of Image"), "{e}");
        let e = resolve(
            &o,
            &g,
            &json!({"profile": "byo", "image--unlisted-choice": "evil:latest"}),
        )
        .unwrap_err();
        assert!(e.contains("Must look like py-3.12"), "{e}");
        let e = resolve(
            &o,
            &g,
            &json!({"profile": "byo", "image--unlisted-choice": "py-9"}),
        )
        .unwrap_err();
        assert!(e.contains("no local environment is named `py-9`"), "{e}");
        let e = resolve(&o, &g, &json!({"profile": "byo", "image": "gpu-env"})).unwrap_err();
        assert!(
            e.contains("`gpu-env` of Image is not available to you"),
            "{e}"
        );
        let gpu = vec!["gpu-users".to_string()];
        assert!(resolve(&o, &gpu, &json!({"profile": "byo", "image": "gpu-env"})).is_ok());
        let e = resolve(&o, &g, &json!({"profile": 3})).unwrap_err();
        assert!(e.contains("must be a string"), "{e}");
        let e = resolve(
            &o,
            &g,
            &json!({"profile": "small", "image--unlisted-choice": "x"}),
        );
        // `small` has no option `image`: the extra key is ignored, as KubeSpawner does.
        assert!(e.is_ok());
    }

    #[test]
    fn server_programs_are_what_starts_run() {
        let dir = std::env::temp_dir().join(format!("hubfleet-programs-{}", std::process::id()));
        let venv = dir.join("venv");
        let conda = dir.join("conda");
        for prefix in [&venv, &conda] {
            std::fs::create_dir_all(prefix.join("bin")).unwrap();
            std::fs::write(prefix.join("bin/python3"), "").unwrap();
        }
        let mut settings = crate::Settings::new("127.0.0.1:8000".parse().unwrap(), "/d".into());
        settings.python_env = Some(venv.clone());
        settings.spawn_options.environments = vec![
            (
                "conda".into(),
                Environment {
                    path: Some(conda.clone()),
                    ..Default::default()
                },
            ),
            (
                "custom".into(),
                Environment {
                    cmd: Some(vec!["my-server".into(), "--x".into()]),
                    ..Default::default()
                },
            ),
        ];
        let programs = server_programs(&settings);
        let seen: Vec<(&str, String)> = programs
            .iter()
            .map(|p| (p.key.as_str(), p.program.clone()))
            .collect();
        let at = |p: &std::path::Path, f: &str| p.join(f).display().to_string();
        assert_eq!(
            seen,
            [
                (
                    "hubfleet.local.python_env",
                    at(&venv, "bin/jupyterhub-singleuser")
                ),
                ("hubfleet.local.python_env", at(&venv, "bin/python3")),
                (
                    "hubfleet.local.environments.conda",
                    at(&conda, "bin/jupyterhub-singleuser")
                ),
                (
                    "hubfleet.local.environments.conda",
                    at(&conda, "bin/python3")
                ),
                (
                    "hubfleet.local.environments.custom",
                    "my-server".to_string()
                ),
            ]
        );
        // Each is looked up on the PATH its server gets.
        assert_eq!(
            programs[0].search_path,
            format!("{}:{}", at(&venv, "bin"), hubfleet_spawn::SYSTEM_PATH)
        );
        assert!(programs[2].search_path.starts_with(&at(&conda, "bin:")));
        assert!(programs[4].search_path.starts_with(&at(&venv, "bin:")));

        // `singleuser.cmd` is the default command, and runs in path environments too.
        settings.cmd = Some(vec!["python3".into(), "-m".into(), "x".into()]);
        let programs = server_programs(&settings);
        assert_eq!(
            (programs[0].key.as_str(), programs[0].program.as_str()),
            ("singleuser.cmd", "python3")
        );
        assert_eq!(programs[2].program, "python3");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
