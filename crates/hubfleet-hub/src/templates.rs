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

impl Templates {
    pub fn new() -> Self {
        let mut env = Environment::new();
        for (name, source) in [
            ("base.html", include_str!("../templates/base.html")),
            ("login.html", include_str!("../templates/login.html")),
            ("home.html", include_str!("../templates/home.html")),
            ("spawn_pending.html", include_str!("../templates/spawn_pending.html")),
            ("error.html", include_str!("../templates/error.html")),
            ("not_running.html", include_str!("../templates/not_running.html")),
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
        assert!(html.contains("&lt;script&gt;") && html.contains("a&lt;b"), "{html}");
        for name in ["login.html", "home.html", "spawn_pending.html", "not_running.html"] {
            let html = templates.render(name, minijinja::context! { user => "alice", xsrf => "t" });
            assert!(!html.contains("Internal error"), "{name}: {html}");
        }
    }
}
