//! From YAML text to a checked [`HubConfig`]: parse, drop ignored keys, deserialize, validate.

use std::path::PathBuf;

use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::error::{ConfigError, ConfigWarning};
use crate::ignored::{self, IGNORED_KEYS};
use crate::locate::{KeyIndex, KeyPath, Seg};
use crate::model::{Cull, Hub, Hubfleet, Singleuser};
use crate::suggest::nearest;
use crate::{validate, HubConfig};

const SEE_DOCS: &str = "see docs/configuration.md";

/// The document as serde sees it (the public struct adds fields that are not in the file).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    #[serde(deserialize_with = "null_default")]
    hub: Hub,
    #[serde(deserialize_with = "null_default")]
    singleuser: Singleuser,
    #[serde(deserialize_with = "null_default")]
    cull: Cull,
    #[serde(deserialize_with = "null_default")]
    hubfleet: Hubfleet,
    #[serde(deserialize_with = "null_default")]
    custom: crate::pages::Custom,
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Where errors point: the file label and the key positions of its text.
pub(crate) struct Ctx<'a> {
    pub(crate) file: &'a str,
    text: &'a str,
    index: KeyIndex,
}

impl Ctx<'_> {
    /// An error about the key at `path` (pointing at the key).
    pub(crate) fn at_key(&self, path: &str, message: impl std::fmt::Display) -> ConfigError {
        let path = KeyPath::parse(path);
        let pos = self.index.key_pos(&path);
        self.invalid(pos.line, pos.column, &path, message)
    }

    /// An error about item `index` of the list at `path`.
    pub(crate) fn at_item(
        &self,
        path: &str,
        index: usize,
        message: impl std::fmt::Display,
    ) -> ConfigError {
        let mut path = KeyPath::parse(path);
        path.0.push(Seg::Index(index));
        self.at_path(&path, message, false)
    }

    /// Like [`Ctx::at_key`] for a path built segment by segment (keys that contain `.`).
    pub(crate) fn at_key_path(
        &self,
        path: &KeyPath,
        message: impl std::fmt::Display,
    ) -> ConfigError {
        self.at_path(path, message, false)
    }

    /// The 1-based line of the key at `path` (or of its nearest enclosing key).
    pub(crate) fn line_of(&self, path: &KeyPath) -> usize {
        self.index.key_pos(path).line
    }

    /// Whether the file spells out `path`, built segment by segment.
    pub(crate) fn has_key_path(&self, path: &KeyPath) -> bool {
        self.index.contains(path)
    }

    /// A warning about the key at `path`, built segment by segment.
    pub(crate) fn warning_at(&self, path: &KeyPath, message: impl Into<String>) -> ConfigWarning {
        let pos = self.index.key_pos(path);
        ConfigWarning {
            file: self.file.to_owned(),
            line: pos.line,
            column: pos.column,
            key: path.to_string(),
            message: message.into(),
        }
    }

    /// Like [`Ctx::at_key`] for a path that may contain list indices.
    fn at_path(&self, path: &KeyPath, message: impl std::fmt::Display, value: bool) -> ConfigError {
        let pos = if value {
            self.index.value_pos(path)
        } else {
            self.index.key_pos(path)
        };
        self.invalid(pos.line, pos.column, path, message)
    }

    fn invalid(
        &self,
        line: usize,
        column: usize,
        path: &KeyPath,
        message: impl std::fmt::Display,
    ) -> ConfigError {
        let (key, message) = if path.is_root() {
            (None, message.to_string())
        } else {
            (Some(path.to_string()), format!("{path}: {message}"))
        };
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line,
            column,
            key,
            message,
        }
    }

    /// A warning about the key at `path`.
    pub(crate) fn warning(&self, path: &str, message: impl Into<String>) -> ConfigWarning {
        let pos = self.index.key_pos(&KeyPath::parse(path));
        ConfigWarning {
            file: self.file.to_owned(),
            line: pos.line,
            column: pos.column,
            key: path.to_owned(),
            message: message.into(),
        }
    }

    /// Whether the file spells out `path` (as opposed to it taking its default).
    pub(crate) fn has_key(&self, path: &str) -> bool {
        self.index.contains(&KeyPath::parse(path))
    }

    fn syntax_error(&self, err: &serde_yaml_ng::Error) -> ConfigError {
        if err.to_string().contains("duplicate entry") {
            if let Some((path, pos)) = self.index.first_duplicate() {
                let first = self.index.key_pos(path);
                return ConfigError::Invalid {
                    file: self.file.to_owned(),
                    line: pos.line,
                    column: pos.column,
                    key: Some(path.to_string()),
                    message: format!(
                        "{path}: duplicate key (already set on line {}); keep only one",
                        first.line
                    ),
                };
            }
        }
        let (line, column) = err
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        let mut msg = err.to_string();
        let at = format!(" at line {line} column {column}");
        if let Some(i) = msg.find(&at) {
            msg.replace_range(i..i + at.len(), "");
        }
        let has_tab = self
            .text
            .lines()
            .nth(line.saturating_sub(1))
            .is_some_and(|l| l.contains('\t'));
        let hint = if has_tab {
            " (this line contains a tab: YAML does not allow tabs for indentation; indent with spaces)"
        } else {
            ""
        };
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line,
            column,
            key: None,
            message: format!("invalid YAML: {msg}{hint}"),
        }
    }

    fn deserialize_error(
        &self,
        err: serde_path_to_error::Error<serde_yaml_ng::Error>,
    ) -> ConfigError {
        let mut path = KeyPath(
            err.path()
                .iter()
                .filter_map(|seg| match seg {
                    serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
                    serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
                    _ => None,
                })
                .collect(),
        );
        let msg = err.into_inner().to_string();
        if let Some(rest) = msg.strip_prefix("unknown field `") {
            if let Some((name, tail)) = rest.split_once('`') {
                if path.0.last() != Some(&Seg::Key(name.to_owned())) {
                    path.0.push(Seg::Key(name.to_owned()));
                }
                let allowed = backticked(tail);
                return self.unknown_key(&path, name, &allowed);
            }
        }
        if msg.contains("expected field identifier") || msg.contains("expected field index") {
            // A key that is not a string (`1:`, `true:`); serde could not name it in the path.
            let found = msg
                .strip_prefix("invalid type: ")
                .and_then(|m| m.split(", expected").next())
                .unwrap_or("not a string");
            let key_path = match backticked(found).first() {
                Some(k) if self.index.contains(&path.child(k)) => path.child(k),
                _ => path,
            };
            return self.at_path(
                &key_path,
                format!("keys must be strings, this one is {found}. Fix the key or remove it ({SEE_DOCS})."),
                false,
            );
        }
        self.at_path(&path, humanize(&msg), true)
    }

    fn unknown_key(&self, path: &KeyPath, name: &str, allowed: &[&str]) -> ConfigError {
        let parent = path.parent();
        let mut msg = format!("unknown key `{path}`");
        match nearest(name, allowed) {
            Some(s) => msg.push_str(&format!("; did you mean `{s}`?")),
            None => msg.push('.'),
        }
        let list = allowed
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ");
        if parent.is_root() {
            msg.push_str(&format!(" Allowed top-level keys: {list}."));
        } else if allowed.is_empty() {
            msg.push_str(&format!(" `{parent}` takes no keys here."));
        } else {
            msg.push_str(&format!(" Allowed keys in `{parent}`: {list}."));
        }
        let prefix = format!("{path}.");
        let ignored: Vec<String> = IGNORED_KEYS
            .iter()
            .filter(|k| k.key.starts_with(&prefix))
            .map(|k| format!("`{}`", k.key))
            .collect();
        if !ignored.is_empty() {
            msg.push_str(&format!(
                " Under `{path}`, hubfleet only accepts (and ignores) {}.",
                ignored.join(", ")
            ));
        }
        msg.push_str(&format!(" Fix the key or remove it ({SEE_DOCS})."));
        let pos = self.index.key_pos(path);
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line: pos.line,
            column: pos.column,
            key: Some(path.to_string()),
            message: msg,
        }
    }
}

/// The names between backticks in serde's "expected one of `a`, `b`" tail.
fn backticked(s: &str) -> Vec<&str> {
    s.split('`').skip(1).step_by(2).collect()
}

/// Make serde's wording about Rust types read as YAML.
fn humanize(msg: &str) -> String {
    let mut out = msg.to_owned();
    if let Some(i) = out.find("expected struct ") {
        out.replace_range(i.., "expected a mapping (indented `key: value` lines)");
    }
    out.replace("unit value", "null")
        .replace("a sequence", "a list")
}

/// Parse, check and validate `yaml`. `file` labels errors; `source` is the config file's path
/// (absolute) when loaded from a file.
pub(crate) fn load(
    yaml: &str,
    file: &str,
    source: Option<PathBuf>,
) -> Result<HubConfig, ConfigError> {
    let ctx = Ctx {
        file,
        text: yaml,
        index: KeyIndex::build(yaml),
    };
    let parsed: Result<Value, _> = serde_yaml_ng::from_str(yaml);
    let mut doc = match parsed {
        Ok(doc) => doc,
        Err(e) => return Err(ctx.syntax_error(&e)),
    };
    doc.apply_merge().map_err(|e| ctx.syntax_error(&e))?;
    match &doc {
        Value::Null | Value::Mapping(_) => {}
        _ => return Err(ctx.at_path(
            &KeyPath::default(),
            "the file must be a mapping of sections (`hub:`, `singleuser:`, `cull:`, `hubfleet:`)",
            false,
        )),
    }

    let mut warnings: Vec<ConfigWarning> = ignored::strip(&mut doc)
        .into_iter()
        .map(|k| ctx.warning(k.key, format!("ignored on purpose: {}", k.reason)))
        .collect();

    let raw: RawConfig =
        serde_path_to_error::deserialize(doc).map_err(|e| ctx.deserialize_error(e))?;
    let mut config = HubConfig {
        hub: raw.hub,
        singleuser: raw.singleuser,
        cull: raw.cull,
        hubfleet: raw.hubfleet,
        custom: raw.custom,
        source,
        warnings: Vec::new(),
    };
    warnings.extend(validate::validate(&config, &ctx)?);
    for w in &warnings {
        tracing::warn!(
            file = %w.file,
            line = w.line,
            key = %w.key,
            "{}",
            w.message
        );
    }
    config.warnings = warnings;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backticked_names() {
        assert_eq!(
            backticked(", expected one of `a`, `b`, `c`"),
            vec!["a", "b", "c"]
        );
        assert_eq!(backticked(", expected `a` or `b`"), vec!["a", "b"]);
        assert!(backticked(", there are no fields").is_empty());
    }

    #[test]
    fn humanized_messages() {
        assert_eq!(
            humanize("invalid type: string \"x\", expected struct Hub"),
            "invalid type: string \"x\", expected a mapping (indented `key: value` lines)"
        );
    }
}
