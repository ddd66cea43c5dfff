//! "Did you mean …?" suggestions for misspelled keys.

/// Edit distance between two strings, by characters: insertions, deletions, substitutions and
/// transpositions of two adjacent characters each cost 1 (optimal string alignment).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j] = distance between a[..i] and b[..j]
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// Lower-case and drop `_` and `-`, so `default_url`, `DefaultURL` and `defaultUrl` compare equal.
fn fold(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The candidate closest to `wrong`, if it is close enough to be a plausible typo: the same key
/// up to case and `_`/`-`, or within an edit distance of a third of its length (at least 1).
pub fn nearest<'a>(wrong: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let folded = fold(wrong);
    if let Some(exact) = candidates.iter().find(|c| fold(c) == folded) {
        return Some(exact);
    }
    let limit = (wrong.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (edit_distance(&folded, &fold(c)), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
        assert_eq!(edit_distance("vaule", "value"), 1);
    }

    #[test]
    fn suggests_close_keys() {
        let keys = ["admin_users", "allowed_users"];
        assert_eq!(nearest("admin_user", &keys), Some("admin_users"));
        assert_eq!(nearest("alowed_users", &keys), Some("allowed_users"));
        assert_eq!(nearest("something_else", &keys), None);
    }

    #[test]
    fn ignores_case_and_separators() {
        let keys = ["defaultUrl", "startTimeout", "extraEnv", "cmd"];
        assert_eq!(nearest("default_url", &keys), Some("defaultUrl"));
        assert_eq!(nearest("start_timeout", &keys), Some("startTimeout"));
        assert_eq!(nearest("StartTimeOut", &keys), Some("startTimeout"));
        assert_eq!(nearest("image", &keys), None);
    }
}
