//! YAML that reads the same under YAML 1.1 and 1.2. serde_yaml_ng writes YAML 1.2, where `on`,
//! `no`, `y` and `12:30` are plain strings; kubectl (go-yaml) and the hub (PyYAML's rules) read
//! YAML 1.1, where they are booleans and numbers, so `value: no` in an env var breaks the object.
//! Here a string is written plain only when both readers read it back as that same string;
//! otherwise it is quoted (JSON's double quotes, valid YAML in both) or, when it spans lines, a
//! literal block.

use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

/// `value` as a YAML document (block style, keys in the order given).
pub fn to_yaml(value: &Json) -> String {
    let mut out = String::new();
    match value {
        Json::Object(m) if !m.is_empty() => write_mapping(m, 0, &mut out),
        Json::Array(a) if !a.is_empty() => write_sequence(a, 0, &mut out),
        scalar => {
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
    out
}

fn pad(indent: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn write_mapping(map: &serde_json::Map<String, Json>, indent: usize, out: &mut String) {
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            pad(indent, out);
        }
        out.push_str(&scalar_text(key));
        out.push(':');
        write_value(value, indent, out);
    }
}

fn write_sequence(items: &[Json], indent: usize, out: &mut String) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            pad(indent, out);
        }
        out.push('-');
        match item {
            Json::Object(m) if !m.is_empty() => {
                out.push(' ');
                write_mapping(m, indent + 2, out);
            }
            Json::Array(a) if !a.is_empty() => {
                out.push(' ');
                write_sequence(a, indent + 2, out);
            }
            _ => write_value(item, indent, out),
        }
    }
}

/// After `key:` or `-`: a nested block on the next lines, or a scalar on this one.
fn write_value(value: &Json, indent: usize, out: &mut String) {
    match value {
        Json::Object(m) if !m.is_empty() => {
            out.push('\n');
            pad(indent + 2, out);
            write_mapping(m, indent + 2, out);
        }
        Json::Array(a) if !a.is_empty() => {
            out.push('\n');
            pad(indent + 2, out);
            write_sequence(a, indent + 2, out);
        }
        Json::String(s) if literal_block_fits(s) => {
            out.push_str(if s.ends_with('\n') { " |\n" } else { " |-\n" });
            for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
                if !line.is_empty() {
                    pad(indent + 2, out);
                    out.push_str(line);
                }
                out.push('\n');
            }
        }
        scalar => {
            out.push(' ');
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
}

/// A multi-line string a literal block keeps exactly: no leading space or blank first line (they
/// would need an indentation indicator), one final newline at most, no carriage returns or
/// trailing spaces (kept, but easy to lose in editors: quote those).
fn literal_block_fits(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\n', '\t'])
        && !s.ends_with("\n\n")
        && !s.contains('\r')
        && s.split('\n').all(|l| !l.ends_with([' ', '\t']))
        && s.chars().all(|c| c == '\n' || c == '\t' || !c.is_control())
}

fn inline(value: &Json) -> String {
    match value {
        Json::String(s) => scalar_text(s),
        Json::Object(_) => "{}".into(),
        Json::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}

/// `s` plain when YAML 1.1 and 1.2 both read it back as `s`, else JSON-quoted.
fn scalar_text(s: &str) -> String {
    let plain_ok = !s.is_empty()
        && s.trim() == s
        && !s.contains(['\n', '\r', '\t', '"', '\''])
        && s.chars().all(|c| !c.is_control())
        && matches!(serde_yaml_ng::from_str::<Yaml>(s), Ok(Yaml::String(ref v)) if v == s)
        && matches!(hubfleet_config::values::parse_yaml("", s), Ok(Yaml::String(ref v)) if v == s);
    if plain_ok {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_back_the_same_under_yaml_1_1_and_1_2() {
        let value = json!({
            "apiVersion": "v1",
            "env": [
                {"name": "A", "value": "on"},
                {"name": "B", "value": "y"},
                {"name": "C", "value": "0755"},
                {"name": "D", "value": "12:30"},
                {"name": "E", "value": "a: b # c"},
                {"name": "F", "value": ""},
                {"name": "G", "value": " padded"},
            ],
            "empty": {}, "none": [], "n": 3, "f": 0.5, "t": true, "z": null,
            "nested": [[1, 2], [{"a": "x"}], {"k": ["- x", "*alias"]}],
            "text": "line one\n  indented\n\nlast\n",
            "no-newline": "a\nb",
            "odd": "a\n\n",
            "1": "yes",
        });
        let text = to_yaml(&value);
        let yaml_1_2: Yaml = serde_yaml_ng::from_str(&text).unwrap();
        let yaml_1_1 = hubfleet_config::values::parse_yaml("t", &text).unwrap();
        assert_eq!(yaml_1_1, yaml_1_2, "{text}");
        assert_eq!(serde_json::to_value(&yaml_1_2).unwrap(), value, "{text}");
        assert!(
            text.contains("text: |\n  line one\n    indented\n\n  last\n"),
            "{text}"
        );
        assert!(text.contains("value: \"on\"\n"), "{text}");
        assert!(text.contains("apiVersion: v1\n"), "{text}");
    }
}
