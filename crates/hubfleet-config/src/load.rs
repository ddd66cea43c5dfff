//! From YAML texts to a checked [`HubConfig`]: parse each file, layer them as Helm does, then
//! deserialize and validate, collecting every problem rather than stopping at the first.
//!
//! serde stops at the first problem it meets. So deserialization runs in a loop: each problem is
//! recorded (an unknown key is looked up in the tables of `ignored.rs` first), the offending key
//! is taken out of the document, and the rest is read again, until it reads. Validation then
//! checks what is left and records its problems too. A validation problem that only exists
//! because a bad key was taken out (`postgres` needs `hub.db.url` after a malformed `hub.db.url`)
//! is not reported twice.

use std::path::PathBuf;

use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::error::{ConfigError, ConfigWarning};
use crate::ignored::{self, Rule};
use crate::locate::{KeyIndex, KeyPath, Pos, Seg};
use crate::model::{Cull, Hub, Hubfleet, Singleuser};
use crate::suggest::nearest;
use crate::{validate, ConfigSource, HubConfig};

const SEE_DOCS: &str = "see docs/configuration.md";
const KUBERNETES_NOTE: &str = "applies once hubfleet runs on Kubernetes";
/// More rounds than any real file needs; a guard against a problem that does not go away.
const MAX_ROUNDS: usize = 2000;

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
    #[serde(deserialize_with = "null_default")]
    proxy: crate::https::Proxy,
    #[serde(rename = "dask-gateway", deserialize_with = "null_default")]
    dask_gateway: crate::dask::DaskGateway,
    #[serde(rename = "binderhub-service", deserialize_with = "null_default")]
    binderhub_service: crate::binder::BinderhubService,
    /// Facts z2jh's chart adds for its hub; checked, read from the values where needed.
    #[serde(rename = "Chart", deserialize_with = "null_default")]
    _chart: crate::model::ChartFacts,
    #[serde(rename = "Release", deserialize_with = "null_default")]
    _release: crate::model::ReleaseFacts,
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// What a check found: problems that stop the hub, and things worth telling the operator.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    pub(crate) errors: Vec<ConfigError>,
    pub(crate) warnings: Vec<ConfigWarning>,
}

impl Findings {
    pub(crate) fn error(&mut self, error: ConfigError) {
        self.errors.push(error);
    }

    pub(crate) fn warn(&mut self, warning: ConfigWarning) {
        self.warnings.push(warning);
    }

    /// Record the error of `result`, if any.
    pub(crate) fn check(&mut self, result: Result<(), ConfigError>) {
        if let Err(e) = result {
            self.errors.push(e);
        }
    }
}

/// One config file: its label (the path as given) and the positions of its keys.
pub(crate) struct Layer {
    label: String,
    text: String,
    index: KeyIndex,
    /// The subtree of the file that is read (empty: all of it).
    under: Vec<Seg>,
}

/// Where findings point: the files (in the order they were layered) and the merged document.
pub(crate) struct Ctx<'a> {
    layers: &'a [Layer],
    doc: &'a Value,
}

impl Ctx<'_> {
    /// The file and position where `path` was written: the last file that spells it out (later
    /// files win), else the deepest enclosing key that one of them spells out.
    fn locate(&self, path: &KeyPath, prefer_value: bool) -> (&str, Pos) {
        for len in (1..=path.0.len()).rev() {
            let prefix = KeyPath(path.0[..len].to_vec());
            for layer in self.layers.iter().rev() {
                if let Some(pos) = layer.index.exact(&prefix, prefer_value) {
                    return (&layer.label, pos);
                }
            }
        }
        let label = self.layers.last().map_or("", |l| l.label.as_str());
        (label, Pos::START)
    }

    /// An error about the key at `path` (pointing at the key).
    pub(crate) fn at_key(&self, path: &str, message: impl std::fmt::Display) -> ConfigError {
        self.at_path(&KeyPath::parse(path), message, false)
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

    /// Where the key at `path` is, for messages that point at a second key: `line 7`, or with
    /// several files `line 7 of values.yaml`.
    pub(crate) fn place_of(&self, path: &KeyPath) -> String {
        let (file, pos) = self.locate(path, false);
        if self.layers.len() > 1 {
            format!("line {} of {file}", pos.line)
        } else {
            format!("line {}", pos.line)
        }
    }

    /// Whether the configuration sets `path` (built segment by segment), after layering.
    pub(crate) fn has_key_path(&self, path: &KeyPath) -> bool {
        path.get(self.doc).is_some()
    }

    /// Whether the configuration sets `path`, after layering (as opposed to it taking its
    /// default).
    pub(crate) fn has_key(&self, path: &str) -> bool {
        self.has_key_path(&KeyPath::parse(path))
    }

    /// A warning about the key at `path`, built segment by segment.
    pub(crate) fn warning_at(&self, path: &KeyPath, message: impl Into<String>) -> ConfigWarning {
        let (file, pos) = self.locate(path, false);
        ConfigWarning {
            file: file.to_owned(),
            line: pos.line,
            column: pos.column,
            key: path.to_string(),
            message: message.into(),
        }
    }

    /// A warning about the key at `path`.
    pub(crate) fn warning(&self, path: &str, message: impl Into<String>) -> ConfigWarning {
        let mut warning = self.warning_at(&KeyPath::parse(path), message);
        warning.key = path.to_owned();
        warning
    }

    fn at_path(&self, path: &KeyPath, message: impl std::fmt::Display, value: bool) -> ConfigError {
        let (file, pos) = self.locate(path, value);
        let (key, message) = if path.is_root() {
            (None, message.to_string())
        } else {
            (Some(path.to_string()), format!("{path}: {message}"))
        };
        ConfigError::Invalid {
            file: file.to_owned(),
            line: pos.line,
            column: pos.column,
            key,
            message,
        }
    }

    /// Whether one of the files spells out exactly `path`.
    fn spelled_out(&self, path: &KeyPath) -> bool {
        self.layers
            .iter()
            .any(|layer| layer.index.exact(path, false).is_some())
    }

    /// What one round's deserialization error is about.
    fn describe(&self, err: serde_path_to_error::Error<serde_yaml_ng::Error>) -> Problem {
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
                return Problem::Unknown {
                    path,
                    allowed: backticked(tail).into_iter().map(str::to_owned).collect(),
                };
            }
        }
        if msg.contains("expected field identifier") || msg.contains("expected field index") {
            // A key that is not a string (`1:`, `true:`); serde could not name it in the path.
            let found = msg
                .strip_prefix("invalid type: ")
                .and_then(|m| m.split(", expected").next())
                .unwrap_or("not a string")
                .to_owned();
            return match backticked(&found).first() {
                Some(k) if self.spelled_out(&path.child(k)) => Problem::NonStringKey {
                    path: path.child(k),
                    found,
                    key_in_doc: true,
                },
                _ => Problem::NonStringKey {
                    path,
                    found,
                    key_in_doc: false,
                },
            };
        }
        Problem::Invalid {
            path,
            message: humanize(&msg),
        }
    }

    /// Record `problem`; returns the path to take out of the document.
    fn record(&self, problem: Problem, doc: &Value, findings: &mut Findings) -> KeyPath {
        match problem {
            Problem::Unknown { path, allowed } => {
                let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
                let value = path.get(doc).cloned().unwrap_or(Value::Null);
                self.unknown(&path, &value, &allowed, findings);
                path
            }
            Problem::NonStringKey {
                path,
                found,
                key_in_doc,
            } => {
                findings.error(self.at_path(
                    &path,
                    format!("keys must be strings, this one is {found}. Fix the key or remove it ({SEE_DOCS})."),
                    false,
                ));
                // The key itself is not a string: take out its mapping.
                if key_in_doc {
                    path.parent()
                } else {
                    path
                }
            }
            Problem::Invalid { path, message } => {
                findings.error(self.at_path(&path, message, true));
                path
            }
        }
    }

    /// A key the model does not take: what the tables of `ignored.rs` say about it (looking
    /// inside it when some of its keys have rules), else an "unknown key" error.
    fn unknown(&self, path: &KeyPath, value: &Value, allowed: &[&str], findings: &mut Findings) {
        let name = match path.0.last() {
            Some(Seg::Key(k)) => k.as_str(),
            _ => "",
        };
        let Some(dotted) = path.dotted_keys() else {
            findings.error(self.unknown_key(path, name, allowed, false));
            return;
        };
        let own = ignored::rule_for(&dotted);
        let known_children = ignored::children_with_rules(&dotted);
        if let (false, Value::Mapping(map)) = (known_children.is_empty(), value) {
            let mut leftovers: Vec<(String, bool)> = Vec::new();
            for (key, child) in map {
                let Some(key) = key.as_str() else {
                    leftovers.push((format!("{key:?}"), ignored::is_inert(child)));
                    continue;
                };
                if known_children.contains(&key) {
                    self.unknown(&path.child(key), child, &known_children, findings);
                } else {
                    leftovers.push((key.to_owned(), ignored::is_inert(child)));
                }
            }
            match own {
                Some(rule) => {
                    let live: Vec<&str> = leftovers
                        .iter()
                        .filter(|(_, inert)| !inert)
                        .map(|(k, _)| k.as_str())
                        .collect();
                    if !live.is_empty() {
                        self.apply(rule, path, &live, findings);
                    }
                }
                None => {
                    for (key, _) in &leftovers {
                        findings.error(self.unknown_key(
                            &path.child(key),
                            key,
                            &known_children,
                            true,
                        ));
                    }
                }
            }
            return;
        }
        match own {
            Some(Rule::Unsupported(rule))
                if rule.harmless_value.is_some()
                    && ignored::scalar_text(value).as_deref() == rule.harmless_value => {}
            Some(_) if ignored::is_inert(value) => {}
            Some(rule) => self.apply(rule, path, &[], findings),
            // `proxy:` with nothing below: nothing to ignore or refuse.
            None if !known_children.is_empty() && ignored::is_inert(value) => {}
            None => findings.error(self.unknown_key(path, name, allowed, false)),
        }
    }

    /// The finding a rule makes for `path`; `keys` names what it covers below `path` when only
    /// part of it is covered.
    fn apply(&self, rule: Rule, path: &KeyPath, keys: &[&str], findings: &mut Findings) {
        let covering = if keys.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                keys.iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        match rule {
            Rule::Ignored(entry) => {
                let kubernetes = if entry.kubernetes {
                    format!("; {KUBERNETES_NOTE}")
                } else {
                    String::new()
                };
                findings.warn(self.warning_at(
                    path,
                    format!("ignored on purpose: {}{covering}{kubernetes}", entry.reason),
                ));
            }
            Rule::Unsupported(entry) => {
                let instead = entry
                    .instead
                    .map(|i| format!("; use {i} instead"))
                    .unwrap_or_default();
                findings.error(self.at_path(
                    path,
                    format!("{}{covering}{instead}.", entry.reason),
                    false,
                ));
            }
        }
    }

    /// The "unknown key" error. `only_rules`: `allowed` are the keys the tables know under the
    /// parent, which the model itself does not take.
    fn unknown_key(
        &self,
        path: &KeyPath,
        name: &str,
        allowed: &[&str],
        only_rules: bool,
    ) -> ConfigError {
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
        if only_rules {
            msg.push_str(&format!(
                " hubfleet has no `{parent}` settings; of z2jh's keys under it, it knows {list} (each ignored or refused with a reason)."
            ));
        } else if parent.is_root() {
            msg.push_str(&format!(" Allowed top-level keys: {list}."));
        } else if allowed.is_empty() {
            msg.push_str(&format!(" `{parent}` takes no keys here."));
        } else {
            msg.push_str(&format!(" Allowed keys in `{parent}`: {list}."));
            // A section the model reads part of (`proxy`: `https`) may hold z2jh keys with rules.
            let with_rules = parent
                .dotted_keys()
                .map(|p| ignored::children_with_rules(&p))
                .unwrap_or_default();
            if !with_rules.is_empty() {
                let known = with_rules
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                msg.push_str(&format!(
                    " Of z2jh's other keys there, hubfleet knows {known} (each ignored or refused with a reason)."
                ));
            }
        }
        msg.push_str(&format!(" Fix the key or remove it ({SEE_DOCS})."));
        let (file, pos) = self.locate(path, false);
        ConfigError::Invalid {
            file: file.to_owned(),
            line: pos.line,
            column: pos.column,
            key: Some(path.to_string()),
            message: msg,
        }
    }
}

impl Layer {
    fn new(label: String, text: String, under: Vec<String>) -> Layer {
        let index = KeyIndex::build(&text);
        let under: Vec<Seg> = under.into_iter().map(Seg::Key).collect();
        let index = if under.is_empty() {
            index
        } else {
            index.rebase(&KeyPath(under.clone()))
        };
        Layer {
            label,
            text,
            index,
            under,
        }
    }

    fn error(&self, pos: Pos, key: Option<String>, message: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.label.clone(),
            line: pos.line,
            column: pos.column,
            key,
            message,
        }
    }

    /// The document of this file (YAML merge keys applied), or why it is not YAML.
    fn parse(&self) -> Result<Value, ConfigError> {
        let mut doc: Value =
            serde_yaml_ng::from_str(&self.text).map_err(|e| self.syntax_error(&e))?;
        doc.apply_merge().map_err(|e| self.syntax_error(&e))?;
        if !self.under.is_empty() {
            doc = KeyPath(self.under.clone())
                .get(&doc)
                .cloned()
                .unwrap_or(Value::Null);
        }
        match doc {
            Value::Null | Value::Mapping(_) => Ok(doc),
            _ => Err(self.error(
                Pos::START,
                None,
                "the file must be a mapping of sections (`hub:`, `singleuser:`, `cull:`, `hubfleet:`)"
                    .into(),
            )),
        }
    }

    fn syntax_error(&self, err: &serde_yaml_ng::Error) -> ConfigError {
        if err.to_string().contains("duplicate entry") {
            if let Some((path, pos)) = self.index.first_duplicate() {
                let first = self.index.key_pos(path);
                return self.error(
                    *pos,
                    Some(path.to_string()),
                    format!(
                        "{path}: duplicate key (already set on line {}); keep only one",
                        first.line
                    ),
                );
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
        self.error(
            Pos { line, column },
            None,
            format!("invalid YAML: {msg}{hint}"),
        )
    }
}

/// One problem serde reported.
enum Problem {
    /// A key the model does not take (the path ends with it).
    Unknown { path: KeyPath, allowed: Vec<String> },
    /// A key that is not a string.
    NonStringKey {
        path: KeyPath,
        found: String,
        /// `path` ends with the offending key as the text spells it.
        key_in_doc: bool,
    },
    /// A value serde refused.
    Invalid { path: KeyPath, message: String },
}

impl Problem {
    fn path(&self) -> &KeyPath {
        match self {
            Problem::Unknown { path, .. }
            | Problem::NonStringKey { path, .. }
            | Problem::Invalid { path, .. } => path,
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

/// Whether a validation finding at `key` (with `message`) only exists because the key `removed`
/// was taken out: it is about a neighbour of that key and names it.
fn caused_by_removal(key: Option<&str>, message: &str, removed: &[KeyPath]) -> bool {
    let Some(key) = key else {
        return false;
    };
    removed.iter().any(|r| {
        let Some(Seg::Key(name)) = r.0.last() else {
            return false;
        };
        let parent = r.parent().to_string();
        let near = key == parent
            || key.starts_with(&format!("{parent}."))
            || r.to_string().starts_with(&format!("{key}."));
        near && (message.contains(&format!("`{name}`")) || message.contains(&r.to_string()))
    })
}

/// What loading the files gave: the configuration when nothing stops it, and every finding,
/// sorted by file (in the order given), line and column.
pub(crate) struct Loaded {
    pub(crate) config: Option<HubConfig>,
    pub(crate) findings: Findings,
}

/// Layer, read and validate `sources` (later files win). `source` of the configuration is the
/// last file with a path.
pub(crate) fn load(sources: Vec<ConfigSource>) -> Loaded {
    let source = sources.iter().rev().find_map(|s| s.path.clone());
    let layers: Vec<Layer> = sources
        .into_iter()
        .map(|s| Layer::new(s.label, s.text, s.under))
        .collect();
    let mut findings = Findings::default();
    let mut merged = Value::Null;
    for layer in &layers {
        match layer.parse() {
            Ok(doc) if merged.is_null() => merged = doc,
            Ok(doc) => crate::values::layer(&mut merged, doc),
            Err(e) => findings.error(e),
        }
    }
    if !findings.errors.is_empty() {
        return Loaded {
            config: None,
            findings,
        };
    }
    let config = read(&layers, &merged, source, &mut findings);
    sort(&layers, &mut findings);
    let config = config
        .filter(|_| findings.errors.is_empty())
        .map(|mut config| {
            config.warnings = findings.warnings.clone();
            config
        });
    Loaded { config, findings }
}

/// Deserialize (round after round, taking out what is wrong) and validate the merged document.
fn read(
    layers: &[Layer],
    merged: &Value,
    source: Option<PathBuf>,
    findings: &mut Findings,
) -> Option<HubConfig> {
    let ctx = Ctx {
        layers,
        doc: merged,
    };
    let mut doc = merged.clone();
    let mut removed: Vec<KeyPath> = Vec::new();
    let mut raw = None;
    for _ in 0..MAX_ROUNDS {
        let err = match serde_path_to_error::deserialize::<_, RawConfig>(doc.clone()) {
            Ok(ok) => {
                raw = Some(ok);
                break;
            }
            Err(err) => err,
        };
        let problem = ctx.describe(err);
        // An error about what holds a key taken out earlier (`FOO: {}` once its misspelt
        // `vaule` is gone, a list item set to `null`) is a consequence, not a new problem: take
        // out the holder instead.
        let consequence = !matches!(problem, Problem::Unknown { .. })
            && removed.iter().any(|r| problem.path().is_prefix_of(r));
        let mut target = if consequence {
            problem.path().clone()
        } else {
            ctx.record(problem, &doc, findings)
        };
        loop {
            if target.is_root() {
                return None;
            }
            if target.remove(&mut doc) {
                removed.push(target);
                break;
            }
            target = target.parent();
        }
    }
    let raw = raw?;
    let config = HubConfig {
        values: crate::values::Values::new(merged.clone()),
        hub: raw.hub,
        singleuser: raw.singleuser,
        cull: raw.cull,
        hubfleet: raw.hubfleet,
        custom: raw.custom,
        proxy: raw.proxy,
        dask_gateway: raw.dask_gateway,
        binderhub_service: raw.binderhub_service,
        source,
        warnings: Vec::new(),
    };
    let mut checked = Findings::default();
    validate::validate(&config, &ctx, &mut checked);
    findings
        .errors
        .extend(checked.errors.into_iter().filter(|e| match e {
            ConfigError::Invalid { key, message, .. } => {
                !caused_by_removal(key.as_deref(), message, &removed)
            }
            ConfigError::Read { .. } => true,
        }));
    findings.warnings.extend(
        checked
            .warnings
            .into_iter()
            .filter(|w| !caused_by_removal(Some(&w.key), &w.message, &removed)),
    );
    Some(config)
}

/// Order findings by file (as layered), line and column, and drop repeats.
fn sort(layers: &[Layer], findings: &mut Findings) {
    let rank = |file: &str| layers.iter().position(|l| l.label == file).unwrap_or(0);
    findings.errors.sort_by_key(|e| match e {
        ConfigError::Invalid {
            file, line, column, ..
        } => (rank(file), *line, *column),
        ConfigError::Read { .. } => (0, 0, 0),
    });
    findings
        .errors
        .dedup_by(|a, b| a.to_string() == b.to_string());
    findings
        .warnings
        .sort_by_key(|w| (rank(&w.file), w.line, w.column));
    findings.warnings.dedup();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml_ng::from_str(s).unwrap()
    }

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

    #[test]
    fn merges_as_helm() {
        let mut base = yaml("a: {b: 1, c: [1, 2], d: x}\ne: 1\nf: keep\n");
        crate::values::layer(
            &mut base,
            yaml("a: {b: 2, c: [3], d: null, g: new}\ne: {now: a map}\nf: null\n"),
        );
        assert_eq!(base, yaml("a: {b: 2, c: [3], g: new}\ne: {now: a map}\n"));
    }

    #[test]
    fn removal_causes_only_the_findings_that_name_the_key() {
        let removed = [KeyPath::parse("hub.db.url")];
        assert!(caused_by_removal(
            Some("hub.db.type"),
            "hub.db.type: `postgres` needs `hub.db.url`",
            &removed
        ));
        assert!(!caused_by_removal(
            Some("hub.db.type"),
            "hub.db.type: something else",
            &removed
        ));
        assert!(!caused_by_removal(
            Some("singleuser.cmd"),
            "names `url`",
            &removed
        ));
    }
}
