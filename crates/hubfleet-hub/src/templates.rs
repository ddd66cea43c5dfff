//! Server-rendered pages (minijinja, autoescaped), embedded in the binary.

use minijinja::Environment;

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

impl Templates {
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_formatter(html_formatter);
        for (name, source) in [
            ("base.html", include_str!("../templates/base.html")),
            ("login.html", include_str!("../templates/login.html")),
            ("home.html", include_str!("../templates/home.html")),
            (
                "spawn_pending.html",
                include_str!("../templates/spawn_pending.html"),
            ),
            ("error.html", include_str!("../templates/error.html")),
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
        ] {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("built-in template {name} is invalid: {e}"));
        }
        Templates { env }
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
        for name in [
            "oauth_confirm.html",
            "login.html",
            "home.html",
            "spawn_pending.html",
            "not_running.html",
        ] {
            let html = templates.render(name, minijinja::context! { user => "alice", xsrf => "t" });
            assert!(!html.contains("Internal error"), "{name}: {html}");
        }
    }
}
