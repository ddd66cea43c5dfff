//! `singleuser.profileList` as KubeSpawner 7 reads it: the list is initialized (slugs from
//! display names, a default profile and a default choice of each option), the user's options are
//! checked against it, and the chosen profile's `kubespawner_override` and its options'
//! overrides are applied.

use serde_yaml_ng::{Mapping, Value};

use crate::error::KubeError;
use crate::python;
use crate::spawner::Spawner;
use crate::UserOptions;

fn key(s: &str) -> Value {
    Value::String(s.to_owned())
}

fn get<'a>(map: &'a Mapping, k: &str) -> Option<&'a Value> {
    map.get(k)
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Sequence(s)) => !s.is_empty(),
        Some(Value::Mapping(m)) => !m.is_empty(),
        Some(Value::Tagged(_)) => true,
    }
}

/// python-slugify's `slugify` for ASCII text: lower-case, quotes dropped, runs of anything else
/// than `[a-z0-9]` to one `-`, trimmed. (Letters with accents lose the accent only for the
/// common Latin ones; others are dropped.)
pub(crate) fn slugify(text: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in text.chars().filter(|c| *c != '\'') {
        let c = fold_accent(c).to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
            dash = false;
        } else if !dash {
            out.push('-');
            dash = true;
        }
    }
    out.trim_matches('-').to_owned()
}

fn fold_accent(c: char) -> char {
    match c {
        'à'..='å' | 'À'..='Å' => 'a',
        'è'..='ë' | 'È'..='Ë' => 'e',
        'ì'..='ï' | 'Ì'..='Ï' => 'i',
        'ò'..='ö' | 'Ò'..='Ö' | 'ø' | 'Ø' => 'o',
        'ù'..='ü' | 'Ù'..='Ü' => 'u',
        'ç' | 'Ç' => 'c',
        'ñ' | 'Ñ' => 'n',
        'ý' | 'ÿ' | 'Ý' => 'y',
        c => c,
    }
}

/// KubeSpawner's `_get_initialized_profile_list`.
pub(crate) fn initialize(list: &[Value], from: &str) -> Result<Vec<Mapping>, KubeError> {
    let mut out = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let Value::Mapping(profile) = item else {
            return Err(KubeError::invalid(
                format!("{from}[{i}]"),
                "each profile must be a mapping with `display_name` and `kubespawner_override`",
            ));
        };
        let mut profile = profile.clone();
        if get(&profile, "slug").is_none() {
            let Some(name) = get(&profile, "display_name") else {
                return Err(KubeError::invalid(
                    format!("{from}[{i}]"),
                    "a profile needs a `display_name` (or a `slug`)",
                ));
            };
            profile.insert(key("slug"), key(&slugify(&python::str_of(name))));
        }
        if let Some(Value::Mapping(options)) = profile.get_mut("profile_options") {
            for (_, option) in options.iter_mut() {
                let Value::Mapping(option) = option else {
                    continue;
                };
                if let Some(Value::Mapping(choices)) = option.get_mut("choices") {
                    let has_default = choices
                        .values()
                        .any(|c| matches!(c, Value::Mapping(c) if truthy(c.get("default"))));
                    if !has_default {
                        if let Some((_, Value::Mapping(first))) = choices.iter_mut().next() {
                            first.insert(key("default"), Value::Bool(true));
                        }
                    }
                }
                let unlisted = option
                    .entry(key("unlisted_choice"))
                    .or_insert_with(|| Value::Mapping(Mapping::new()));
                if let Value::Mapping(unlisted) = unlisted {
                    unlisted.entry(key("enabled")).or_insert(Value::Bool(false));
                    if truthy(unlisted.get("enabled")) {
                        unlisted
                            .entry(key("display_name_in_choices"))
                            .or_insert_with(|| key("Other..."));
                    }
                }
            }
        }
        out.push(profile);
    }
    if !out.is_empty() && !out.iter().any(|p| truthy(p.get("default"))) {
        out[0].insert(key("default"), Value::Bool(true));
    }
    Ok(out)
}

fn slug_of(p: &Mapping) -> String {
    p.get("slug").map(python::str_of).unwrap_or_default()
}

/// KubeSpawner's `_get_profile`: the profile with `slug`, or the default one.
fn profile<'a>(slug: Option<&str>, list: &'a [Mapping]) -> Result<&'a Mapping, KubeError> {
    match slug.filter(|s| !s.is_empty()) {
        None => list
            .iter()
            .find(|p| truthy(p.get("default")))
            .ok_or_else(|| KubeError::UserOptions("no default profile".into())),
        Some(slug) => list.iter().find(|p| slug_of(p) == slug).ok_or_else(|| {
            KubeError::UserOptions(format!(
                "No such profile: {slug}. Options include: {}",
                list.iter().map(slug_of).collect::<Vec<_>>().join(", ")
            ))
        }),
    }
}

fn option_text(options: &UserOptions, name: &str) -> Option<String> {
    options
        .get(name)
        .filter(|v| truthy(Some(v)))
        .map(python::str_of)
}

/// `_validate_user_options` then `_load_profile`: apply the chosen (or default) profile.
pub(crate) fn load(
    spawner: &mut Spawner,
    list: &[Mapping],
    options: &UserOptions,
    from: &str,
) -> Result<(), KubeError> {
    let selected = option_text(options, "profile");
    if list.is_empty() {
        if let Some(slug) = selected {
            spawner.notes.push(format!(
                "profile {slug:?} requested, but no profile list is configured"
            ));
        }
        return Ok(());
    }
    let chosen = profile(selected.as_deref(), list)?;
    let slug = slug_of(chosen);
    let empty = Mapping::new();
    let profile_options = match chosen.get("profile_options") {
        Some(Value::Mapping(m)) => m,
        _ => &empty,
    };
    // validate first, as KubeSpawner does before applying anything
    for (name, option) in profile_options {
        let name = python::str_of(name);
        let Value::Mapping(option) = option else {
            continue;
        };
        let Some(unlisted) = option_text(options, &format!("{name}--unlisted-choice")) else {
            continue;
        };
        let config = match option.get("unlisted_choice") {
            Some(Value::Mapping(u)) => u.clone(),
            _ => Mapping::new(),
        };
        if !truthy(config.get("enabled")) {
            return Err(KubeError::UserOptions(format!(
                "Received unlisted_choice for {name} without being enabled."
            )));
        }
        if let Some(Value::String(pattern)) = config.get("validation_regex") {
            // Python's re.match anchors at the start only.
            let re = regex::Regex::new(&format!("^(?:{pattern})")).map_err(|e| {
                KubeError::invalid(
                    format!(
                        "{from}[{slug}].profile_options.{name}.unlisted_choice.validation_regex"
                    ),
                    format!("not a pattern hubfleet can use: {e}"),
                )
            })?;
            if !re.is_match(&unlisted) {
                return Err(KubeError::UserOptions(format!(
                    "Received unlisted_choice for {name} that failed validation regex."
                )));
            }
        }
    }
    let profile_from = format!("{from}[{slug}]");
    if let Some(Value::Mapping(overrides)) = chosen.get("kubespawner_override") {
        spawner.apply_overrides(overrides, &format!("{profile_from}.kubespawner_override"));
    }
    for (name, option) in profile_options {
        let name = python::str_of(name);
        let Value::Mapping(option) = option else {
            continue;
        };
        let option_from = format!("{profile_from}.profile_options.{name}");
        let unlisted = option_text(options, &format!("{name}--unlisted-choice"));
        let choice = option_text(options, &name);
        let choices = match option.get("choices") {
            Some(Value::Mapping(c)) => c.clone(),
            _ => Mapping::new(),
        };
        let (overrides, source) = if let Some(value) = unlisted {
            let mut out = Mapping::new();
            if let Some(Value::Mapping(u)) = option.get("unlisted_choice") {
                if let Some(Value::Mapping(o)) = u.get("kubespawner_override") {
                    for (k, v) in o {
                        out.insert(k.clone(), format_value(v, &value)?);
                    }
                }
            }
            (
                out,
                format!("{option_from}.unlisted_choice.kubespawner_override"),
            )
        } else if let Some(choice) = choice {
            let Some(Value::Mapping(c)) = choices.get(choice.as_str()) else {
                return Err(KubeError::UserOptions(format!(
                    "profile {slug:?} has no choice {choice:?} for option {name:?}; choices are: {}",
                    choices.keys().map(python::str_of).collect::<Vec<_>>().join(", ")
                )));
            };
            (
                override_of(c),
                format!("{option_from}.choices.{choice}.kubespawner_override"),
            )
        } else {
            if choices.is_empty() {
                return Err(KubeError::UserOptions(format!(
                    "Unable to determine a default choice for {name}."
                )));
            }
            let (choice, c) = choices
                .iter()
                .find(|(_, c)| matches!(c, Value::Mapping(c) if truthy(c.get("default"))))
                .ok_or_else(|| KubeError::UserOptions(format!("no default choice for {name}")))?;
            let c = c.as_mapping().cloned().unwrap_or_default();
            (
                override_of(&c),
                format!(
                    "{option_from}.choices.{}.kubespawner_override",
                    python::str_of(choice)
                ),
            )
        };
        spawner.apply_overrides(&overrides, &source);
    }
    Ok(())
}

fn override_of(choice: &Mapping) -> Mapping {
    match choice.get("kubespawner_override") {
        Some(Value::Mapping(m)) => m.clone(),
        _ => Mapping::new(),
    }
}

/// KubeSpawner's `recursive_format(v, value=…)`: `{value}` filled in every string (keys too);
/// other fields are kept as written.
fn format_value(v: &Value, value: &str) -> Result<Value, KubeError> {
    let lookup = |f: &str| (f == "value").then(|| value.to_owned());
    Ok(match v {
        Value::String(s) => Value::String(
            python::format(s, &lookup, true).map_err(|e| KubeError::UserOptions(e.0))?,
        ),
        Value::Sequence(items) => Value::Sequence(
            items
                .iter()
                .map(|i| format_value(i, value))
                .collect::<Result<_, _>>()?,
        ),
        Value::Mapping(m) => {
            let mut out = Mapping::new();
            for (k, v) in m {
                out.insert(format_value(k, value)?, format_value(v, value)?);
            }
            Value::Mapping(out)
        }
        other => other.clone(),
    })
}

/// The slugs, options and defaults of an initialized list, as the reference tool's
/// `--list-profiles` prints them.
pub(crate) fn summary(list: &[Mapping]) -> serde_json::Value {
    let mut out = Vec::new();
    for p in list {
        let mut item = serde_json::Map::new();
        item.insert("slug".into(), serde_json::Value::String(slug_of(p)));
        item.insert(
            "display_name".into(),
            p.get("display_name")
                .map(|v| serde_json::Value::String(python::str_of(v)))
                .unwrap_or(serde_json::Value::Null),
        );
        item.insert(
            "default".into(),
            serde_json::Value::Bool(truthy(p.get("default"))),
        );
        let mut opts = serde_json::Map::new();
        if let Some(Value::Mapping(options)) = p.get("profile_options") {
            for (name, o) in options {
                let Value::Mapping(o) = o else { continue };
                let choices = match o.get("choices") {
                    Some(Value::Mapping(c)) => c.clone(),
                    _ => Mapping::new(),
                };
                let default = choices
                    .iter()
                    .find(|(_, c)| matches!(c, Value::Mapping(c) if truthy(c.get("default"))))
                    .map(|(k, _)| serde_json::Value::String(python::str_of(k)))
                    .unwrap_or(serde_json::Value::Null);
                let unlisted = matches!(o.get("unlisted_choice"), Some(Value::Mapping(u)) if truthy(u.get("enabled")));
                opts.insert(
                    python::str_of(name),
                    serde_json::json!({
                        "choices": choices.keys().map(python::str_of).collect::<Vec<_>>(),
                        "default": default,
                        "unlisted_choice": unlisted,
                    }),
                );
            }
        }
        if !opts.is_empty() {
            item.insert("profile_options".into(), serde_json::Value::Object(opts));
        }
        out.push(serde_json::Value::Object(item));
    }
    serde_json::Value::Array(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_from_display_names() {
        assert_eq!(slugify("Small: 1 CPU, 4 GB"), "small-1-cpu-4-gb");
        assert_eq!(slugify("Bob's Café"), "bobs-cafe");
    }
}
