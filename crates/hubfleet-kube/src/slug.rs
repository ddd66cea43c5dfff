//! Names safe for Kubernetes, as KubeSpawner 7 makes them (`kubespawner/slugs.py`): a name that
//! is already valid is used as it is; otherwise it is stripped to a safe form and a hash of the
//! original is appended, so two names that strip to the same text stay apart.

use sha2::{Digest, Sha256};

const HASH_LENGTH: usize = 8;

/// KubeSpawner's `escape_slug` (the legacy `escape` scheme): every character outside `[a-z0-9]`
/// becomes `-XX` per UTF-8 byte (upper-case hex), then the whole is lower-cased.
pub fn escape_slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("-{byte:02X}"));
            }
        }
    }
    out.to_lowercase()
}

/// A valid object name: 1–63 characters of `[a-z0-9-]`, starting with a letter and ending with a
/// letter or digit (RFC 1035 and 1123 labels both).
pub fn is_valid_object_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A valid label value: empty, or up to 63 characters of `[A-Za-z0-9._-]` starting and ending
/// with an alphanumeric.
pub fn is_valid_label(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// `_extract_safe_name`: lower-case, runs of anything but `[a-z0-9]` to one `-`, trimmed to
/// `max_length`, starting with a letter (`x-` prefixed if not), never empty.
fn extract_safe_name(name: &str, max_length: usize) -> String {
    let lower = python_lower(name);
    let mut safe = String::new();
    let mut in_run = false;
    for c in lower.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            safe.push(c);
            in_run = false;
        } else if !in_run {
            safe.push('-');
            in_run = true;
        }
    }
    let trimmed: String = safe
        .trim_start_matches('-')
        .chars()
        .take(max_length)
        .collect();
    let mut safe = trimmed.trim_end_matches('-').to_owned();
    if !safe.is_empty() && !safe.starts_with(|c: char| c.is_ascii_lowercase()) {
        let keep: String = safe.chars().take(max_length.saturating_sub(2)).collect();
        safe = format!("x-{keep}");
    }
    if safe.is_empty() {
        safe = "x".into();
    }
    safe
}

/// Python's `str.lower()` (full Unicode lower-casing).
fn python_lower(s: &str) -> String {
    s.to_lowercase()
}

fn short_hash(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            // 0xFF never starts a UTF-8 character: words cannot run into each other.
            hasher.update([0xffu8]);
        }
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())[..HASH_LENGTH].to_owned()
}

/// `strip_and_hash`: the safe form cut to leave room, then `---` and a hash of the original.
fn strip_and_hash(name: &str, max_length: usize) -> String {
    let name_length = max_length.saturating_sub(HASH_LENGTH + 3).max(1);
    format!(
        "{}---{}",
        extract_safe_name(name, name_length),
        short_hash(&[name])
    )
}

/// KubeSpawner's `safe_slug`: `name` itself when it passes `is_valid` (and fits `max_length`)
/// and has no `--`, else the stripped form with a hash.
pub fn safe_slug(name: &str, is_valid: fn(&str) -> bool, max_length: Option<usize>) -> String {
    if name.contains("--") {
        return strip_and_hash(name, max_length.unwrap_or(32));
    }
    if is_valid(name) && max_length.is_none_or(|m| name.chars().count() <= m) {
        name.to_owned()
    } else {
        strip_and_hash(name, max_length.unwrap_or(32))
    }
}

/// KubeSpawner's `multi_slug`: names joined with `--` and one hash of them all.
pub fn multi_slug(names: &[&str], max_length: usize) -> String {
    let hash = short_hash(names);
    let available = max_length - (HASH_LENGTH + 1);
    let per_name = available / names.len().max(1);
    let name_max_length = per_name.saturating_sub(2).max(2);
    let slugs: Vec<String> = names
        .iter()
        .map(|n| extract_safe_name(n, name_max_length))
        .collect();
    format!("{}---{hash}", slugs.join("--"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values computed with kubespawner 7.1.0's slugs.py.
    #[test]
    fn safe_slugs_as_kubespawner() {
        assert_eq!(safe_slug("alice", is_valid_object_name, Some(48)), "alice");
        assert_eq!(
            safe_slug("Alice", is_valid_object_name, Some(48)),
            "alice---3bc51062"
        );
        assert_eq!(
            safe_slug("a--b", is_valid_object_name, Some(48)),
            "a-b---90827a2e"
        );
        assert_eq!(safe_slug("Alice", is_valid_label, None), "Alice");
        assert_eq!(
            safe_slug("user@example.com", is_valid_label, None),
            "user-example-com---b4c9a289"
        );
        assert_eq!(escape_slug("user@Example.com"), "user-40-45xample-2ecom");
        assert_eq!(
            safe_slug("9lives", is_valid_object_name, Some(48)),
            "x-9lives---bc867356"
        );
        assert_eq!(
            safe_slug(&"é".repeat(60), is_valid_object_name, Some(48)),
            "x---f989aaf5"
        );
    }

    #[test]
    fn multi_slug_as_kubespawner() {
        assert_eq!(
            multi_slug(&["alice", "my-server"], 48),
            "alice--my-server---2b69ad28"
        );
    }
}
