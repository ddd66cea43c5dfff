//! Server-rendered pages (minijinja, autoescaped), embedded in the binary. Templates in
//! `hub.templatePaths` replace the built-in ones of the same name (first directory wins); the
//! built-ins stay reachable as `templates/<name>`, so an override can
//! `{% extends "templates/login.html" %}` and change one block, as with upstream's
//! `template_paths`. `hub.templateVars` and 2i2c's `custom.homepage.templateVars` are globals.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hubfleet_config::pages::HomepageVars;
use minijinja::{Environment, Value};

use crate::HubError;

/// The built-in templates, by name.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("home.html", include_str!("../templates/home.html")),
    ("token.html", include_str!("../templates/token.html")),
    ("admin.html", include_str!("../templates/admin.html")),
    (
        "admin_log.html",
        include_str!("../templates/admin_log.html"),
    ),
    (
        "spawn_options.html",
        include_str!("../templates/spawn_options.html"),
    ),
    (
        "spawn_pending.html",
        include_str!("../templates/spawn_pending.html"),
    ),
    ("error.html", include_str!("../templates/error.html")),
    ("binder.html", include_str!("../templates/binder.html")),
    (
        "accept_share.html",
        include_str!("../templates/accept_share.html"),
    ),
    (
        "not_running.html",
        include_str!("../templates/not_running.html"),
    ),
    (
        "oauth_confirm.html",
        include_str!("../templates/oauth_confirm.html"),
    ),
    ("signup.html", include_str!("../templates/signup.html")),
    (
        "change_password.html",
        include_str!("../templates/change_password.html"),
    ),
    (
        "authorize_users.html",
        include_str!("../templates/authorize_users.html"),
    ),
];

/// What the configuration says about pages.
#[derive(Clone, Debug, Default)]
pub struct PageSettings {
    /// `hub.templatePaths`, absolute.
    pub template_paths: Vec<PathBuf>,
    /// `hub.templateVars`.
    pub template_vars: BTreeMap<String, serde_json::Value>,
    /// `custom.homepage.templateVars`.
    pub homepage: HomepageVars,
}

impl PageSettings {
    /// Origins of configured images (logos) the pages' Content-Security-Policy must allow.
    pub fn image_origins(&self, extra: &[&str]) -> Vec<String> {
        let logo = self
            .homepage
            .org
            .as_ref()
            .and_then(|o| o.logo_url.as_deref());
        let mut origins: Vec<String> = logo
            .into_iter()
            .chain(extra.iter().copied())
            .filter_map(|u| url::Url::parse(u).ok())
            .filter(|u| matches!(u.scheme(), "https" | "http"))
            .map(|u| u.origin().ascii_serialization())
            .collect();
        origins.sort();
        origins.dedup();
        origins
    }
}

pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

/// Autoescape `& < > " '` only: minijinja's default also escapes `/`, which makes
/// paths in pages and links hard to read and to search for.
fn html_formatter(
    out: &mut minijinja::Output<'_>,
    state: &minijinja::State<'_, '_>,
    value: &minijinja::Value,
) -> Result<(), minijinja::Error> {
    match value.as_str() {
        Some(text) if !value.is_safe() && state.auto_escape() == minijinja::AutoEscape::Html => {
            let mut escaped = String::with_capacity(text.len());
            for c in text.chars() {
                match c {
                    '&' => escaped.push_str("&amp;"),
                    '<' => escaped.push_str("&lt;"),
                    '>' => escaped.push_str("&gt;"),
                    '"' => escaped.push_str("&quot;"),
                    '\'' => escaped.push_str("&#39;"),
                    c => escaped.push(c),
                }
            }
            std::fmt::Write::write_str(out, &escaped)
                .map_err(|_| minijinja::Error::from(minijinja::ErrorKind::WriteFailure))
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

fn base_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_formatter(html_formatter);
    env.add_global("static_version", crate::static_files::version());
    // As upstream's template namespace: `base_url` is the hub's prefix, `prefix` the app's.
    env.add_global("base_url", "/hub/");
    env.add_global("prefix", "/");
    for (name, source) in BUILT_IN {
        env.add_template(name, source)
            .unwrap_or_else(|e| panic!("built-in template {name} is invalid: {e}"));
        env.add_template_owned(format!("templates/{name}"), *source)
            .unwrap_or_else(|e| panic!("built-in template {name} is invalid: {e}"));
    }
    env
}

impl Templates {
    /// The built-in templates with no variables.
    pub fn new() -> Self {
        Templates { env: base_env() }
    }

    /// The built-ins, the overrides of `hub.templatePaths` and the template variables, for a
    /// hub under `base_url` (`hub.baseUrl`).
    pub fn load(pages: &PageSettings, base_url: &str) -> Result<Self, HubError> {
        let mut env = base_env();
        env.add_global("base_url", format!("{base_url}hub/"));
        env.add_global("prefix", base_url.to_owned());
        let homepage =
            serde_json::to_value(HomepageGlobals::from(&pages.homepage)).unwrap_or_default();
        if let serde_json::Value::Object(vars) = homepage {
            for (key, value) in vars {
                env.add_global(key, Value::from_serialize(&value));
            }
        }
        for (key, value) in &pages.template_vars {
            env.add_global(key.clone(), Value::from_serialize(value));
        }
        // Later directories first, so that the first one listed wins.
        for dir in pages.template_paths.iter().rev() {
            for (name, source) in read_overrides(dir)? {
                env.add_template_owned(name.clone(), source).map_err(|e| {
                    HubError::Config(format!(
                        "hub.templatePaths: {}: {e}",
                        dir.join(&name).display()
                    ))
                })?;
            }
        }
        // Syntax errors were found above; a template is compiled when it is added.
        Ok(Templates { env })
    }

    pub fn render(&self, name: &str, context: minijinja::Value) -> String {
        match self.env.get_template(name).and_then(|t| t.render(context)) {
            Ok(html) => html,
            Err(e) => {
                tracing::error!(template = name, error = %e, "rendering a page");
                format!("<!doctype html><p>Internal error rendering {name}.</p>")
            }
        }
    }
}

/// `*.html` files of one override directory, by file name (subdirectories included, as
/// `sub/name.html`).
fn read_overrides(dir: &Path) -> Result<Vec<(String, String)>, HubError> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current).map_err(|e| {
            HubError::Config(format!(
                "hub.templatePaths: cannot read {}: {e}",
                current.display()
            ))
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("html") {
                continue;
            }
            let name = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            let source = std::fs::read_to_string(&path).map_err(|e| {
                HubError::Config(format!(
                    "hub.templatePaths: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            found.push((name, source));
        }
    }
    Ok(found)
}

/// 2i2c's homepage variables as templates see them (`org.name`, `designed_by.url`, …).
#[derive(serde::Serialize)]
struct HomepageGlobals<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    org: Option<&'a hubfleet_config::pages::Org>,
    #[serde(skip_serializing_if = "Option::is_none")]
    designed_by: Option<&'a hubfleet_config::pages::Credit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    operated_by: Option<&'a hubfleet_config::pages::Credit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    funded_by: Option<&'a hubfleet_config::pages::Credit>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    announcements: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    learn_more: Option<&'a str>,
}

impl<'a> From<&'a HomepageVars> for HomepageGlobals<'a> {
    fn from(v: &'a HomepageVars) -> Self {
        HomepageGlobals {
            org: v.org.as_ref(),
            designed_by: v.designed_by.as_ref(),
            operated_by: v.operated_by.as_ref(),
            funded_by: v.funded_by.as_ref(),
            announcements: &v.announcements,
            learn_more: v.learn_more.as_deref(),
        }
    }
}

/// What `base.html` needs about the signed-in person: name and whether to link the admin page.
pub fn nav(me: &crate::identity::PageUser) -> Value {
    let admin_ui = me.identity.scopes.parsed().get("admin-ui").is_some();
    minijinja::context! { user => me.user.name.clone(), admin_ui }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_renders_and_escapes() {
        let templates = Templates::new();
        let html = templates.render(
            "error.html",
            minijinja::context! { status => 500, title => "x", message => "<script>", log => "a<b" },
        );
        assert!(
            html.contains("&lt;script&gt;") && html.contains("a&lt;b"),
            "{html}"
        );
        for (name, _) in BUILT_IN {
            let html = templates.render(name, minijinja::context! { user => "alice", xsrf => "t" });
            assert!(!html.contains("Internal error"), "{name}: {html}");
        }
    }

    #[test]
    fn overrides_replace_and_extend_built_ins() {
        let dir = std::env::temp_dir().join(format!("hubfleet-tpl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("login.html"),
            r#"{% extends "templates/login.html" %}{% block title %}Custom sign in{% endblock %}"#,
        )
        .unwrap();
        let pages = PageSettings {
            template_paths: vec![dir.clone()],
            template_vars: [(
                "announcement".to_string(),
                "Maintenance <b>today</b>".into(),
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let templates = Templates::load(&pages, "/").unwrap();
        let html = templates.render("login.html", minijinja::context! { xsrf => "t" });
        assert!(html.contains("<title>Custom sign in"), "{html}");
        assert!(html.contains("Maintenance <b>today</b>"), "{html}");
        std::fs::write(dir.join("home.html"), "{% if %}").unwrap();
        let err = Templates::load(&pages, "/")
            .err()
            .expect("a broken override is refused");
        assert!(err.to_string().contains("home.html"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
