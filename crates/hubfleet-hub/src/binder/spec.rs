//! BinderHub's launch specs: `gh/<org>/<repo>/<ref>` and `git/<url-encoded URL>/<ref>`, the
//! repository URL each names, and the banned/allowed patterns.

use regex::Regex;

/// One repository at one (unresolved) ref, as a launch URL names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoSpec {
    /// `gh` or `git`.
    pub provider: String,
    /// What follows the provider in the URL, as sent (still escaped).
    pub spec: String,
    /// The spec escaped one way only (each part decoded, then escaped as BinderHub's
    /// `quote(part, safe='')`): what the rules match, so another escaping cannot dodge them.
    pub canonical: String,
    /// What git clones.
    pub url: String,
    /// Branch, tag or commit.
    pub git_ref: String,
}

impl RepoSpec {
    /// `<provider>/<canonical spec>`: what `banned_specs` and `allowed_specs` match.
    pub fn full(&self) -> String {
        format!("{}/{}", self.provider, self.canonical)
    }

    /// A local repository (a path or `file://`): readable only by the hub's account.
    pub fn is_local(&self) -> bool {
        self.url.starts_with('/') || self.url.starts_with("file://")
    }

    /// A short name for the repository's directory in the home: its last path segment.
    pub fn dir_name(&self) -> String {
        let last = self
            .url
            .trim_end_matches('/')
            .trim_end_matches(".git")
            .rsplit(['/', ':'])
            .next()
            .unwrap_or_default();
        let clean: String = last
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        match clean.trim_start_matches('.') {
            "" => "repo".to_owned(),
            name => name.to_owned(),
        }
    }
}

/// Read `provider` and the rest of the path (still percent-escaped).
pub fn parse(provider: &str, spec: &str) -> Result<RepoSpec, String> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| format!("`{s}` is not valid UTF-8 once unescaped"))
    };
    let (url, git_ref, repo_part) = match provider {
        "gh" => {
            let parts: Vec<&str> = spec.splitn(3, '/').collect();
            let [org, repo, git_ref] = parts[..] else {
                return Err(format!(
                    "`gh/{spec}` should be gh/<org>/<repo>/<ref>, e.g. gh/jupyterlab/jupyterlab-demo/HEAD"
                ));
            };
            let name_ok = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    && !s.starts_with('.')
            };
            if !name_ok(org) || !name_ok(repo) {
                return Err(format!("`{org}/{repo}` is not a GitHub repository name"));
            }
            (
                format!("https://github.com/{org}/{repo}"),
                decode(git_ref)?,
                format!("{org}/{repo}"),
            )
        }
        "git" => {
            let Some((url, git_ref)) = spec.split_once('/') else {
                return Err(format!(
                    "`git/{spec}` should be git/<url-encoded repository URL>/<ref>"
                ));
            };
            let url = decode(url)?;
            let escaped = escape(&url);
            (url, decode(git_ref)?, escaped)
        }
        other => {
            return Err(format!(
                "unknown repository provider `{other}`: this hub launches `gh` (GitHub) and `git` (any git URL) specs"
            ))
        }
    };
    let git_ref = if git_ref.is_empty() {
        "HEAD".to_owned()
    } else {
        git_ref
    };
    check_url(&url)?;
    check_segments(provider, spec, &url)?;
    if git_ref.starts_with('-') || git_ref.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!("`{git_ref}` is not a git ref"));
    }
    Ok(RepoSpec {
        provider: provider.to_owned(),
        spec: spec.to_owned(),
        canonical: format!("{repo_part}/{}", escape(&git_ref)),
        url,
        git_ref,
    })
}

/// Only transports that fetch: never `ext::` (runs commands) or options in disguise.
fn check_url(url: &str) -> Result<(), String> {
    let ok = ["https://", "http://", "git://", "file://", "/"]
        .iter()
        .any(|p| url.starts_with(p));
    if !ok || url.chars().any(|c| c.is_control()) {
        return Err(format!(
            "`{url}` is not a repository URL this hub clones: use https://, http://, git:// (or a local path where the allow-list names it)"
        ));
    }
    Ok(())
}

/// Escaped as Python's `urllib.parse.quote(s, safe='')`, which BinderHub's specs use.
fn escape(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// No `.` or `..` path segment (also escaped once more): git and curl resolve them, so an
/// allowed prefix followed by `..` would name a repository outside it.
fn check_segments(provider: &str, spec: &str, url: &str) -> Result<(), String> {
    let path = url.split_once("://").map_or(url, |(_, rest)| rest);
    // A server may unescape once more (`%2F..%2F`, `%2e%2e`): look at that form too.
    let unescaped = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    let dotted = [path, &unescaped]
        .iter()
        .flat_map(|p| p.split(['/', '?', '#']))
        .any(|segment| segment == "." || segment == "..");
    if dotted {
        return Err(format!(
            "`{provider}/{spec}` names `{url}`, which has a `.` or `..` path segment: give the repository's URL without them"
        ));
    }
    Ok(())
}

/// `banned_specs` and `allowed_specs`, compiled (checked at config load).
#[derive(Clone, Debug, Default)]
pub struct SpecRules {
    pub banned: Vec<Regex>,
    pub allowed: Vec<Regex>,
}

impl SpecRules {
    pub fn new(banned: &[String], allowed: &[String]) -> Result<SpecRules, String> {
        // Banned specs ignore case, as BinderHub's do (`DS-100/x` is `ds-100/x` on GitHub);
        // allowed specs do not: `/SRV/x` is not `/srv/x`, and an allow-list fails closed.
        let compile = |list: &[String], ignore_case: bool| {
            list.iter()
                .map(|p| {
                    regex::RegexBuilder::new(p)
                        .case_insensitive(ignore_case)
                        .build()
                        .map_err(|e| format!("`{p}`: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(SpecRules {
            banned: compile(banned, true)?,
            allowed: compile(allowed, false)?,
        })
    }

    /// Why `spec` may not launch, if it may not.
    pub fn refusal(&self, spec: &RepoSpec) -> Option<String> {
        let full = spec.full();
        if let Some(rule) = self.banned.iter().find(|r| r.is_match(&full)) {
            return Some(format!(
                "`{full}` may not be launched on this hub: it matches `{}` of binderhub-service.config.BinderHub.banned_specs",
                rule.as_str()
            ));
        }
        let allowed = self.allowed.iter().any(|r| r.is_match(&full));
        if !self.allowed.is_empty() && !allowed {
            return Some(format!(
                "`{full}` may not be launched on this hub: it matches none of binderhub-service.hubfleet.allowed_specs ({})",
                self.allowed
                    .iter()
                    .map(|r| format!("`{}`", r.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if spec.is_local() && !allowed {
            return Some(format!(
                "`{}` is a repository on the hub's own machine: it launches only when binderhub-service.hubfleet.allowed_specs names it",
                spec.url
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        let gh = parse("gh", "org/repo/main").unwrap();
        assert_eq!(gh.url, "https://github.com/org/repo");
        assert_eq!(gh.git_ref, "main");
        assert_eq!(gh.dir_name(), "repo");
        let git = parse("git", "https%3A%2F%2Fexample.org%2Fa%2Fb.git/v1%2F2").unwrap();
        assert_eq!(git.url, "https://example.org/a/b.git");
        assert_eq!(git.git_ref, "v1/2");
        assert_eq!(git.dir_name(), "b");
        assert_eq!(
            git.full(),
            "git/https%3A%2F%2Fexample.org%2Fa%2Fb.git/v1%2F2"
        );
        assert!(parse("git", "ext%3A%3Ash%20-c%20id/HEAD").is_err());
        assert!(parse("git", "https%3A%2F%2Fexample.org%2Fa/--upload-pack=x").is_err());
        assert!(parse("gh", "org/repo").is_err());
        assert!(parse("gl", "a/b/c").is_err());
    }

    #[test]
    fn rules() {
        let rules = SpecRules::new(&["^gh/evil/".into()], &[]).unwrap();
        assert!(rules
            .refusal(&parse("gh", "evil/x/main").unwrap())
            .unwrap()
            .contains("banned_specs"));
        assert!(rules
            .refusal(&parse("gh", "good/x/main").unwrap())
            .is_none());
        let local = parse("git", "%2Ftmp%2Frepo/HEAD").unwrap();
        assert!(rules.refusal(&local).unwrap().contains("allowed_specs"));
        let allow = SpecRules::new(&[], &["^git/%2Ftmp%2F".into()]).unwrap();
        assert!(allow.refusal(&local).is_none());
        assert!(allow
            .refusal(&parse("gh", "good/x/main").unwrap())
            .unwrap()
            .contains("none of"));
    }

    #[test]
    fn dot_segments_are_refused() {
        for (provider, spec) in [
            ("git", "%2Ftmp%2Fok%2F..%2Fsecret/HEAD"),
            ("git", "%2Fsrv%2Frepos%2F..%2F..%2Fhome%2Fhub%2Fx/HEAD"),
            ("git", "%2Ftmp%2Fok%2F.%2Fx/HEAD"),
            ("git", "https%3A%2F%2Fgithub.com%2Fo%2F..%2Fevil%2Fr/HEAD"),
            (
                "git",
                "https%3A%2F%2Fgithub.com%2Fo%2F%252e%252e%2Fevil%2Fr/HEAD",
            ),
            ("git", "file%3A%2F%2F%2Fsrv%2F..%2Fhome/HEAD"),
        ] {
            let err = parse(provider, spec).unwrap_err();
            assert!(err.contains(spec) && err.contains("`..`"), "{err}");
        }
        assert!(parse("git", "https%3A%2F%2Fgithub.com%2Fo%2F..%2Fevil%2Fr").is_err());
        assert!(parse("git", "%2Ftmp%2F..x%2Fa.b/HEAD").is_ok());
        // Refused before any rule is asked, so an allowed prefix cannot be left.
        assert!(parse("git", "%2Fsrv%2Frepos%2F..%2Fx/HEAD").is_err());
    }

    #[test]
    fn rules_match_one_escaping() {
        let rules = SpecRules::new(
            &[
                "^gh/evil/".into(),
                "^git/https%3A%2F%2Fexample.org%2Fbad".into(),
            ],
            &[],
        )
        .unwrap();
        for (provider, spec) in [
            ("gh", "EVIL/x/main"),
            ("gh", "Evil/x/main"),
            ("git", "https%3a%2f%2fexample.org%2fbad/HEAD"),
            ("git", "https:%2F%2Fexample.org%2Fbad/HEAD"),
            ("git", "https%3A%2F%2F%65xample.org%2Fbad/HEAD"),
            ("git", "https%3A%2F%2FEXAMPLE.org%2Fbad/HEAD"),
        ] {
            let refusal = rules.refusal(&parse(provider, spec).unwrap());
            assert!(
                refusal.is_some_and(|r| r.contains("banned_specs")),
                "{provider}/{spec}"
            );
        }
        // The allow-list matches the same form, whatever escaping the link used.
        let allow = SpecRules::new(&[], &["^git/%2Fsrv%2Frepos%2F".into()]).unwrap();
        assert!(allow
            .refusal(&parse("git", "%2fsrv%2frepos%2fx/HEAD").unwrap())
            .is_none());
        assert!(allow
            .refusal(&parse("git", "%2FSRV%2Frepos%2Fx/HEAD").unwrap())
            .is_some());
    }
}
