//! Python behaviours that show in a pod: `str()` of a float, `json.dumps`, `str.format` and
//! `urllib.parse.quote`, as z2jh's hub and KubeSpawner apply them.

use std::fmt::Write;

use serde_yaml_ng::Value;

/// `repr(float)` / `str(float)`: the shortest digits that read back, positional between 1e-4 and
/// 1e16, else `1e-05` / `1e+16`.
pub(crate) fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // `{:e}` gives the shortest round-trip digits: `4.563125e-1`.
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if negative { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let out = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            let (a, b) = digits.split_at(point as usize);
            format!("{a}.{b}")
        };
        format!("{sign}{out}")
    } else {
        let (first, rest) = digits.split_at(1);
        let mantissa = if rest.is_empty() {
            first.to_owned()
        } else {
            format!("{first}.{rest}")
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exp.abs())
    }
}

/// `str(value)` for a YAML scalar as PyYAML loaded it (`True`, `None`, `1.0`).
pub(crate) fn str_of(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) if n.is_f64() => float_repr(n.as_f64().unwrap_or(0.0)),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => json_dumps(other),
    }
}

/// `json.dumps(value)` with Python's defaults (`", "` and `": "`, non-ASCII as `\uXXXX`).
pub(crate) fn json_dumps(value: &Value) -> String {
    let mut out = String::new();
    write_json(value, &mut out);
    out
}

fn write_json(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) if n.is_f64() => out.push_str(&float_repr(n.as_f64().unwrap_or(0.0))),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_json_str(s, out),
        Value::Sequence(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Value::Mapping(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_json_str(&str_of(k), out);
                out.push_str(": ");
                write_json(v, out);
            }
            out.push('}');
        }
        Value::Tagged(t) => write_json(&t.value, out),
    }
}

pub(crate) fn write_json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A problem with a `str.format` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FormatError(pub(crate) String);

/// Python's `template.format(**vars)`: `{name}` is replaced, `{{`/`}}` are literal braces.
/// With `keep_missing`, an unknown `{name}` stays as it is (KubeSpawner's `recursive_format`);
/// without, it is an error (as Python's `KeyError`).
pub(crate) fn format(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    keep_missing: bool,
) -> Result<String, FormatError> {
    let mut out = String::new();
    let mut chars = template.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' => {
                if let Some((_, '{')) = chars.peek() {
                    chars.next();
                    out.push('{');
                    continue;
                }
                let rest = &template[i + 1..];
                let Some(end) = rest.find('}') else {
                    return Err(FormatError(format!(
                        "a single `{{` in {template:?}; write `{{{{` for a literal brace"
                    )));
                };
                let field = &rest[..end];
                for _ in 0..field.chars().count() + 1 {
                    chars.next();
                }
                let name = field.split(['!', ':']).next().unwrap_or("");
                if name != field {
                    if keep_missing && lookup(name).is_none() {
                        out.push('{');
                        out.push_str(field);
                        out.push('}');
                        continue;
                    }
                    return Err(FormatError(format!(
                        "`{{{field}}}` in {template:?}: conversions and format specs are not supported; use `{{{name}}}`"
                    )));
                }
                match lookup(name) {
                    Some(v) => out.push_str(&v),
                    None if keep_missing => {
                        out.push('{');
                        out.push_str(field);
                        out.push('}');
                    }
                    None => {
                        return Err(FormatError(format!(
                            "unknown field `{{{name}}}` in {template:?}; write `{{{{{name}}}}}` for literal braces"
                        )))
                    }
                }
            }
            '}' => {
                if let Some((_, '}')) = chars.peek() {
                    chars.next();
                    out.push('}');
                } else {
                    return Err(FormatError(format!(
                        "a single `}}` in {template:?}; write `}}}}` for a literal brace"
                    )));
                }
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// `urllib.parse.quote(s, safe=safe)`: every byte but ASCII alphanumerics, `_.-~` and those of
/// `safe` as `%XX`.
pub(crate) fn quote(s: &str, safe: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"_.-~".contains(&b) || safe.as_bytes().contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `jupyterhub.utils.url_path_join`: join with single slashes, keeping a leading and trailing
/// slash of the whole.
pub(crate) fn url_path_join(pieces: &[&str]) -> String {
    let initial = pieces.first().is_some_and(|p| p.starts_with('/'));
    let last = pieces.last().copied().unwrap_or("");
    let trailing = last.ends_with('/');
    let stripped: Vec<&str> = pieces
        .iter()
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
        .collect();
    let mut result = stripped.join("/");
    if initial {
        result = format!("/{result}");
    }
    if trailing && !result.ends_with('/') {
        result.push('/');
    }
    if result == "//" {
        result = "/".into();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_read_as_python_prints_them() {
        assert_eq!(float_repr(1.0), "1.0");
        assert_eq!(float_repr(0.4563125), "0.4563125");
        assert_eq!(float_repr(0.05), "0.05");
        assert_eq!(float_repr(1e-5), "1e-05");
        assert_eq!(float_repr(0.0001), "0.0001");
        assert_eq!(float_repr(1e16), "1e+16");
        assert_eq!(float_repr(123456789.0), "123456789.0");
        assert_eq!(float_repr(-2.5), "-2.5");
    }

    #[test]
    fn json_as_python_dumps_it() {
        let v: Value = serde_yaml_ng::from_str("[a, {b: 1.0}, é]").unwrap();
        assert_eq!(json_dumps(&v), r#"["a", {"b": 1.0}, "\u00e9"]"#);
    }

    #[test]
    fn str_format() {
        let vars = |k: &str| (k == "username").then(|| "alice".to_owned());
        assert_eq!(
            format("{username}-{{x}}", &vars, false).unwrap(),
            "alice-{x}"
        );
        assert!(format("{nope}", &vars, false).is_err());
        assert_eq!(
            format("{nope} {username}", &vars, true).unwrap(),
            "{nope} alice"
        );
        assert!(format("a}b", &vars, true).is_err());
    }

    #[test]
    fn url_helpers() {
        assert_eq!(quote("a b@c~d/é", "@~"), "a%20b@c~d%2F%C3%A9");
        assert_eq!(
            url_path_join(&["/user/alice/", "", "oauth_callback"]),
            "/user/alice/oauth_callback"
        );
        assert_eq!(url_path_join(&["/", "hub/"]), "/hub/");
        assert_eq!(
            url_path_join(&["http://hub:8081", "/hub/api"]),
            "http://hub:8081/hub/api"
        );
    }
}
