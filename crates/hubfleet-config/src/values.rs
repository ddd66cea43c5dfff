//! Helm values as Helm and z2jh's hub see them: files read as YAML 1.1 (as PyYAML and Helm
//! read them: `0755` is octal, `yes` is true), layered on the chart's defaults, subtrees taken out
//! of wrapper charts (`--unwrap jupyterhub` for 2i2c's basehub), and looked up by dotted key as
//! z2jh's `get_config` does.
//!
//! The rules follow the reference tool in `tools/kubespawner-reference` (its README, "How it
//! works"): the files are merged with Helm's `mergeMaps` (maps recurse; lists, scalars and `null`
//! replace), then coalesced onto the chart defaults (a `null` deletes a defaulted key), then the
//! top-level nulls are dropped as z2jh's `hub/secret.yaml` does.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;

use serde_yaml_ng::{Mapping, Number, Value};
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A merged values document.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Values {
    doc: Value,
}

/// Values hold secrets (client secrets, tokens): debug output names the top-level keys only.
impl std::fmt::Debug for Values {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<String> = self
            .doc
            .as_mapping()
            .map(|m| {
                m.keys()
                    .map(|k| k.as_str().unwrap_or("?").to_owned())
                    .collect()
            })
            .unwrap_or_default();
        f.debug_struct("Values").field("keys", &keys).finish()
    }
}

impl Values {
    /// Values from a document (a mapping; anything else counts as empty).
    pub fn new(doc: Value) -> Values {
        let doc = if doc.is_mapping() {
            doc
        } else {
            Value::Mapping(Mapping::new())
        };
        Values { doc }
    }

    /// The value at a dotted key path, as z2jh's `get_config`: `None` when a key on the way is
    /// missing or a parent is not a mapping, `Some(Value::Null)` for a key set to `null`.
    pub fn get(&self, dotted: &str) -> Option<&Value> {
        let mut value = &self.doc;
        for part in dotted.split('.') {
            value = value.as_mapping()?.get(part)?;
        }
        Some(value)
    }

    /// The value at `dotted` unless it is missing or `null`.
    pub fn get_set(&self, dotted: &str) -> Option<&Value> {
        self.get(dotted).filter(|v| !v.is_null())
    }

    /// The whole document.
    pub fn as_value(&self) -> &Value {
        &self.doc
    }

    /// The whole document, owned.
    pub fn into_value(self) -> Value {
        self.doc
    }
}

/// Why values could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ValuesError {
    /// A file could not be read.
    #[error("{}: cannot read the file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid YAML.
    #[error("{file}:{line}:{column}: invalid YAML: {message}")]
    Yaml {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A values file whose top level is not a mapping.
    #[error("{file}: the top level must be a mapping of keys (`singleuser:`, `hub:`, …)")]
    NotAMapping { file: String },
    /// `--unwrap KEY` found something other than a mapping at KEY.
    #[error("{file}: `{key}` (given with --unwrap) is not a mapping; unwrap a key that holds values, or `.` for none")]
    UnwrapNotAMapping { file: String, key: String },
    /// A file that hubfleet cannot read as values.
    #[error("{file}: {reason}")]
    Unsupported { file: String, reason: String },
}

/// Parse YAML text as PyYAML's `safe_load` does (YAML 1.1 plain scalars: `yes`/`no`/`on`/`off`
/// are booleans, `0755` is octal, `1:30` is base 60, a float needs a dot). An empty document is
/// `null`. `label` names the text in errors.
pub fn parse_yaml(label: &str, text: &str) -> Result<Value, ValuesError> {
    let mut reader = Reader {
        parser: Parser::new_from_str(text),
        anchors: Vec::new(),
        label,
    };
    reader.document()
}

struct Reader<'a> {
    parser: Parser<std::str::Chars<'a>>,
    anchors: Vec<(usize, Value)>,
    label: &'a str,
}

impl Reader<'_> {
    fn next(&mut self) -> Result<(Event, Marker), ValuesError> {
        self.parser.next_token().map_err(|e| ValuesError::Yaml {
            file: self.label.to_owned(),
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_owned(),
        })
    }

    fn error(&self, mark: Marker, message: impl Into<String>) -> ValuesError {
        ValuesError::Yaml {
            file: self.label.to_owned(),
            line: mark.line(),
            column: mark.col() + 1,
            message: message.into(),
        }
    }

    fn document(&mut self) -> Result<Value, ValuesError> {
        let mut doc = Value::Null;
        let mut seen = false;
        loop {
            let (event, mark) = self.next()?;
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::DocumentStart => {
                    if seen {
                        return Err(self.error(mark, "more than one YAML document in the file"));
                    }
                    seen = true;
                    doc = self.node()?;
                }
                Event::StreamEnd => return Ok(doc),
                _ => return Err(self.error(mark, "unexpected YAML event")),
            }
        }
    }

    fn node(&mut self) -> Result<Value, ValuesError> {
        let (event, mark) = self.next()?;
        self.node_from(event, mark)
    }

    fn remember(&mut self, anchor: usize, value: &Value) {
        if anchor > 0 {
            self.anchors.push((anchor, value.clone()));
        }
    }

    fn node_from(&mut self, event: Event, mark: Marker) -> Result<Value, ValuesError> {
        match event {
            Event::Alias(id) => self
                .anchors
                .iter()
                .rev()
                .find(|(a, _)| *a == id)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| self.error(mark, "alias to an unknown anchor")),
            Event::Scalar(text, style, anchor, tag) => {
                let value = match tag {
                    Some(tag) => tagged_scalar(&tag.suffix, &text).ok_or_else(|| {
                        self.error(mark, format!("cannot read `{text}` as !!{}", tag.suffix))
                    })?,
                    None if style == TScalarStyle::Plain => plain_scalar(&text),
                    None => Value::String(text),
                };
                self.remember(anchor, &value);
                Ok(value)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (event, mark) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node_from(event, mark)?);
                }
                let value = Value::Sequence(items);
                self.remember(anchor, &value);
                Ok(value)
            }
            Event::MappingStart(anchor, _) => {
                let mut map = Mapping::new();
                let mut merged: Vec<Mapping> = Vec::new();
                loop {
                    let (event, mark) = self.next()?;
                    if matches!(event, Event::MappingEnd) {
                        break;
                    }
                    let is_merge_key = matches!(&event, Event::Scalar(k, TScalarStyle::Plain, _, None) if k == "<<");
                    let key = self.node_from(event, mark)?;
                    let value = self.node()?;
                    if is_merge_key {
                        match value {
                            Value::Mapping(m) => merged.push(m),
                            Value::Sequence(items) => {
                                for item in items {
                                    match item {
                                        Value::Mapping(m) => merged.push(m),
                                        _ => {
                                            return Err(
                                                self.error(mark, "`<<` merges mappings only")
                                            )
                                        }
                                    }
                                }
                            }
                            _ => return Err(self.error(mark, "`<<` merges mappings only")),
                        }
                        continue;
                    }
                    let key = match key {
                        Value::Mapping(_) | Value::Sequence(_) => {
                            return Err(self.error(mark, "a key must be a scalar"))
                        }
                        other => other,
                    };
                    map.insert(key, value);
                }
                // Keys of merged mappings count only where the mapping does not set them.
                for m in merged {
                    for (k, v) in m {
                        if !map.contains_key(&k) {
                            map.insert(k, v);
                        }
                    }
                }
                let value = Value::Mapping(map);
                self.remember(anchor, &value);
                Ok(value)
            }
            _ => Err(self.error(mark, "unexpected YAML event")),
        }
    }
}

fn tagged_scalar(suffix: &str, text: &str) -> Option<Value> {
    match suffix {
        "str" => Some(Value::String(text.to_owned())),
        "null" => Some(Value::Null),
        "bool" | "int" | "float" => {
            let v = plain_scalar(text);
            let ok = match suffix {
                "bool" => v.is_bool(),
                "int" => v.is_i64() || v.is_u64(),
                _ => v.is_number(),
            };
            if suffix == "float" && (v.is_i64() || v.is_u64()) {
                return v.as_f64().map(|f| Value::Number(Number::from(f)));
            }
            ok.then_some(v)
        }
        // Other tags (`!Ref` and the like) keep the text.
        _ => Some(Value::String(text.to_owned())),
    }
}

/// The value of a plain (unquoted) scalar under PyYAML's YAML 1.1 resolver.
fn plain_scalar(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Value::Bool(true)
        }
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Value::Bool(false)
        }
        _ => {}
    }
    if let Some(n) = yaml11_int(text) {
        return Value::Number(n);
    }
    if let Some(f) = yaml11_float(text) {
        return Value::Number(Number::from(f));
    }
    Value::String(text.to_owned())
}

fn split_sign(text: &str) -> (bool, &str) {
    match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    }
}

fn yaml11_int(text: &str) -> Option<Number> {
    let (negative, body) = split_sign(text);
    if body.is_empty() {
        return None;
    }
    let digits = |s: &str, radix: u32| -> Option<i128> {
        let clean: String = s.chars().filter(|c| *c != '_').collect();
        if clean.is_empty() {
            return None;
        }
        i128::from_str_radix(&clean, radix).ok()
    };
    let valid =
        |s: &str, ok: fn(char) -> bool| !s.is_empty() && s.chars().all(|c| c == '_' || ok(c));
    let magnitude = if let Some(bin) = body.strip_prefix("0b") {
        if !valid(bin, |c| c == '0' || c == '1') {
            return None;
        }
        digits(bin, 2)?
    } else if let Some(hex) = body.strip_prefix("0x") {
        if !valid(hex, |c| c.is_ascii_hexdigit()) {
            return None;
        }
        digits(hex, 16)?
    } else if body == "0" {
        0
    } else if let Some(oct) = body.strip_prefix('0') {
        if !valid(oct, |c| ('0'..='7').contains(&c)) {
            return None;
        }
        digits(oct, 8)?
    } else if body.contains(':') {
        // base 60: 1:30 is 90
        let mut parts = body.split(':');
        let first = parts.next()?;
        if !first.starts_with(|c: char| ('1'..='9').contains(&c))
            || !valid(first, |c| c.is_ascii_digit())
        {
            return None;
        }
        let mut total = digits(first, 10)?;
        for part in parts {
            if part.is_empty() || part.len() > 2 || !part.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let n: i128 = part.parse().ok()?;
            if n > 59 {
                return None;
            }
            total = total * 60 + n;
        }
        total
    } else {
        if !body.starts_with(|c: char| ('1'..='9').contains(&c))
            || !valid(body, |c| c.is_ascii_digit())
        {
            return None;
        }
        digits(body, 10)?
    };
    let value = if negative { -magnitude } else { magnitude };
    if let Ok(v) = u64::try_from(value) {
        Some(Number::from(v))
    } else {
        i64::try_from(value).ok().map(Number::from)
    }
}

/// PyYAML's float forms (a dot is required; an exponent needs its sign).
static DECIMAL_FLOAT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+][0-9]+)?$")
        .expect("a valid pattern")
});
static BASE_60_FLOAT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*$").expect("a valid pattern")
});

fn yaml11_float(text: &str) -> Option<f64> {
    let (negative, body) = split_sign(text);
    let sign = if negative { -1.0 } else { 1.0 };
    match body {
        ".inf" | ".Inf" | ".INF" => return Some(sign * f64::INFINITY),
        _ => {}
    }
    if matches!(text, ".nan" | ".NaN" | ".NAN") {
        return Some(f64::NAN);
    }
    if DECIMAL_FLOAT.is_match(body) {
        let clean: String = body.chars().filter(|c| *c != '_').collect();
        return clean.parse::<f64>().ok().map(|f| sign * f);
    }
    // base 60 floats: 1:30.5
    if BASE_60_FLOAT.is_match(body) {
        let clean: String = body.chars().filter(|c| *c != '_').collect();
        let mut total = 0.0;
        for part in clean.split(':') {
            total = total * 60.0 + part.parse::<f64>().ok()?;
        }
        return Some(sign * total);
    }
    None
}

/// Layer `over` onto `base` as hubfleet layers its own config files: mappings merge key by key,
/// anything else (lists included) is replaced, and a `null` in `over` deletes the key.
pub fn layer(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(base), Value::Mapping(over)) => {
            for (key, value) in over {
                if value.is_null() {
                    base.shift_remove(&key);
                    continue;
                }
                match base.get_mut(&key) {
                    Some(existing @ Value::Mapping(_)) if value.is_mapping() => {
                        layer(existing, value)
                    }
                    _ => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

/// Helm's `mergeMaps` for several `-f` files: maps merge recursively, everything else (lists,
/// scalars, `null`) replaces.
pub fn merge_files(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(base), Value::Mapping(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(existing @ Value::Mapping(_)) if value.is_mapping() => {
                        merge_files(existing, value)
                    }
                    _ => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

/// Helm's coalescing of user values onto chart defaults: the user's value wins, maps merge
/// recursively, and a user `null` deletes a key that has a default (a `null` without a default
/// stays).
pub fn coalesce(user: Value, defaults: &Value) -> Value {
    let (Value::Mapping(mut user), Value::Mapping(defaults)) = (user.clone(), defaults) else {
        return user;
    };
    for (key, default) in defaults {
        match user.get(key) {
            Some(Value::Null) => {
                user.shift_remove(key);
            }
            Some(Value::Mapping(_)) if default.is_mapping() => {
                let value = user.shift_remove(key).unwrap_or(Value::Null);
                // keep the key's position
                user.insert(key.clone(), coalesce(value, default));
            }
            Some(_) => {}
            None => {
                user.insert(key.clone(), default.clone());
            }
        }
    }
    Value::Mapping(user)
}

/// Drop the top-level keys set to `null`, as z2jh's `hub/secret.yaml` does (`merge dict
/// .Values`): `nameOverride:` never reaches the hub.
pub fn drop_top_level_nulls(doc: &mut Value) {
    if let Value::Mapping(map) = doc {
        map.retain(|_, v| !v.is_null());
    }
}

/// The subtree at the dotted `key` (`jupyterhub`, `basehub.jupyterhub`): empty when a key on the
/// way is missing or the value is `null`; an error when it is not a mapping.
pub fn unwrap(doc: Value, key: &str, file: &str) -> Result<Value, ValuesError> {
    let mut value = doc;
    for part in key.split('.') {
        value = match value {
            Value::Mapping(mut map) => match map.shift_remove(part) {
                Some(v) => v,
                None => return Ok(Value::Mapping(Mapping::new())),
            },
            _ => return Ok(Value::Mapping(Mapping::new())),
        };
    }
    match value {
        Value::Null => Ok(Value::Mapping(Mapping::new())),
        v @ Value::Mapping(_) => Ok(v),
        _ => Err(ValuesError::UnwrapNotAMapping {
            file: file.to_owned(),
            key: key.to_owned(),
        }),
    }
}

/// One `--values FILE` or `--unwrap KEY`, in command-line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValuesInput {
    /// A values file.
    File(PathBuf),
    /// The subtree to take of the files after it (`.` for none).
    Unwrap(String),
}

/// Which subtree each file contributes, by the reference tool's rules: an `--unwrap` applies to
/// the files after it; files before the first `--unwrap` use the first one (so a single
/// `--unwrap` anywhere applies to all); `.` means none.
pub fn plan(inputs: &[ValuesInput]) -> Vec<(PathBuf, Option<String>)> {
    let mut current = inputs.iter().find_map(|i| match i {
        ValuesInput::Unwrap(k) => Some(k.clone()),
        ValuesInput::File(_) => None,
    });
    let mut out = Vec::new();
    for input in inputs {
        match input {
            ValuesInput::Unwrap(k) => current = Some(k.clone()),
            ValuesInput::File(path) => {
                let key = current.clone().filter(|k| !k.is_empty() && k != ".");
                out.push((path.clone(), key));
            }
        }
    }
    out
}

/// A file left out of the merge, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFile {
    pub path: PathBuf,
    pub reason: String,
}

/// Values of a Helm release: the chart defaults with the files layered on them.
#[derive(Debug, Clone)]
pub struct ChartValues {
    /// The merged values (top-level nulls dropped).
    pub values: Values,
    /// Files given that were not read (sops-encrypted ones).
    pub skipped: Vec<SkippedFile>,
}

/// Why a file cannot be used as values, if it cannot: sops-encrypted files are skipped (`Ok(Some)`),
/// jsonnet is refused.
fn encrypted(path: &Path, text: &str) -> Result<Option<String>, ValuesError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.ends_with(".jsonnet") {
        return Err(ValuesError::Unsupported {
            file: path.display().to_string(),
            reason: "jsonnet files are not read; render it to YAML or JSON (`jsonnet FILE`) and pass the result with --values".into(),
        });
    }
    if name.starts_with("enc-") || name.contains(".secret.") {
        return Ok(Some("looks sops-encrypted (enc-* / *.secret.*); decrypt it (`sops -d`) and pass the result to use it".into()));
    }
    let sops = text.lines().any(|l| l.trim_end() == "sops:") && text.contains("ENC[");
    if sops {
        return Ok(Some(
            "is sops-encrypted; decrypt it (`sops -d`) and pass the result to use it".into(),
        ));
    }
    Ok(None)
}

fn read(path: &Path) -> Result<String, ValuesError> {
    std::fs::read_to_string(path).map_err(|source| ValuesError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_mapping(path: &Path, text: &str) -> Result<Value, ValuesError> {
    let label = path.display().to_string();
    match parse_yaml(&label, text)? {
        Value::Null => Ok(Value::Mapping(Mapping::new())),
        v @ Value::Mapping(_) => Ok(v),
        _ => Err(ValuesError::NotAMapping { file: label }),
    }
}

/// Read the chart defaults at `chart_defaults` and layer the files of `inputs` on them, as Helm
/// does for `helm install -f … -f …`, with top-level nulls dropped.
pub fn load_chart_values(
    chart_defaults: &Path,
    inputs: &[ValuesInput],
) -> Result<ChartValues, ValuesError> {
    let defaults = read_mapping(chart_defaults, &read(chart_defaults)?)?;
    let mut user = Value::Mapping(Mapping::new());
    let mut skipped = Vec::new();
    for (path, key) in plan(inputs) {
        let text = read(&path)?;
        if let Some(reason) = encrypted(&path, &text)? {
            skipped.push(SkippedFile { path, reason });
            continue;
        }
        let mut doc = read_mapping(&path, &text)?;
        if let Some(key) = key {
            doc = unwrap(doc, &key, &path.display().to_string())?;
        }
        merge_files(&mut user, doc);
    }
    let mut merged = coalesce(user, &defaults);
    drop_top_level_nulls(&mut merged);
    Ok(ChartValues {
        values: Values::new(merged),
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        parse_yaml("t.yaml", s).unwrap()
    }

    #[test]
    fn reads_yaml_1_1_scalars_as_pyyaml() {
        let v = yaml("a: 0755\nb: yes\nc: 'yes'\nd: 1e3\ne: 1.5e+3\nf: 1:30\ng: ~\nh: 0x1f\ni: off\nj: 10Gi\nk: 0.05\nl: 08\n");
        assert_eq!(v["a"], Value::Number(493.into()));
        assert_eq!(v["b"], Value::Bool(true));
        assert_eq!(v["c"], Value::String("yes".into()));
        assert_eq!(v["d"], Value::String("1e3".into()));
        assert_eq!(v["e"].as_f64(), Some(1500.0));
        assert_eq!(v["f"], Value::Number(90.into()));
        assert_eq!(v["g"], Value::Null);
        assert_eq!(v["h"], Value::Number(31.into()));
        assert_eq!(v["i"], Value::Bool(false));
        assert_eq!(v["j"], Value::String("10Gi".into()));
        assert_eq!(v["k"].as_f64(), Some(0.05));
        assert_eq!(v["l"], Value::String("08".into()));
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let v = yaml("a: &x {p: 1, q: 2}\nb: *x\nc:\n  <<: *x\n  q: 3\n");
        assert_eq!(v["b"], yaml("{p: 1, q: 2}"));
        assert_eq!(v["c"], yaml("{q: 3, p: 1}"));
    }

    #[test]
    fn helm_merges_then_coalesces() {
        let mut user = yaml("a: {b: 1}\nl: [1]\n");
        merge_files(&mut user, yaml("a: {c: null}\nl: [2]\nn: null\n"));
        assert_eq!(user, yaml("a: {b: 1, c: null}\nl: [2]\nn: null\n"));
        let defaults = yaml("a: {c: 5, d: 6}\nn: 1\nkeep: k\n");
        let mut merged = coalesce(user, &defaults);
        assert_eq!(merged, yaml("a: {b: 1, d: 6}\nl: [2]\nkeep: k\n"));
        let mut with_null = yaml("top: null\nx: {y: null}\n");
        drop_top_level_nulls(&mut with_null);
        assert_eq!(with_null, yaml("x: {y: null}\n"));
        drop_top_level_nulls(&mut merged);
    }

    #[test]
    fn unwrap_rules() {
        let plan = plan(&[
            ValuesInput::File("a".into()),
            ValuesInput::Unwrap("jupyterhub".into()),
            ValuesInput::File("b".into()),
            ValuesInput::Unwrap(".".into()),
            ValuesInput::File("c".into()),
        ]);
        assert_eq!(
            plan,
            vec![
                ("a".into(), Some("jupyterhub".into())),
                ("b".into(), Some("jupyterhub".into())),
                ("c".into(), None)
            ]
        );
        let doc = yaml("basehub: {jupyterhub: {hub: {x: 1}}}\n");
        assert_eq!(
            unwrap(doc.clone(), "basehub.jupyterhub", "f").unwrap(),
            yaml("hub: {x: 1}")
        );
        assert_eq!(unwrap(doc.clone(), "missing", "f").unwrap(), yaml("{}"));
        assert!(unwrap(yaml("a: 1"), "a", "f").is_err());
    }

    #[test]
    fn get_config_semantics() {
        let v = Values::new(yaml("a: {b: null, c: {d: 1}}\ns: x\n"));
        assert_eq!(v.get("a.b"), Some(&Value::Null));
        assert_eq!(v.get_set("a.b"), None);
        assert_eq!(v.get("a.c.d"), Some(&Value::Number(1.into())));
        assert_eq!(v.get("s.t"), None);
        assert_eq!(v.get("zz"), None);
    }
}
