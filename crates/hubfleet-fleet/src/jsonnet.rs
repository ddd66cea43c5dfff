//! Values files written in jsonnet (the charts' `values.jsonnet`, and any listed `.jsonnet`
//! file), rendered with jrsonnet, a Rust implementation of jsonnet.

use std::path::Path;
use std::sync::LazyLock;

use jrsonnet_evaluator::manifest::JsonFormat;
use jrsonnet_evaluator::trace::PathResolver;
use jrsonnet_evaluator::{FileImportResolver, State};
use regex::Regex;
use serde_json::Value as Json;

use crate::finding::Finding;

/// The file's code. A file whose whole text is the relative path of another `.jsonnet` file is
/// a symbolic link that lost its link (daskhub's `values.jsonnet` in a copy of the
/// repository): the code is that file's, and `std.thisFile` stays this file.
fn code(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    let line = text.trim();
    if !line.contains('\n') && line.ends_with("sonnet") && !line.contains(' ') {
        if let Some(dir) = path.parent() {
            let target = dir.join(line);
            if target.is_file() {
                return std::fs::read_to_string(target);
            }
        }
    }
    Ok(text)
}

static LOCATION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r":(\d+):(\d+)").expect("a valid regex"));

/// Render the jsonnet file at `path` (absolute) with these `std.extVar`s. An error names the
/// file (`label`) and, when jsonnet says, the line.
pub fn render(path: &Path, label: &str, vars: &[(&str, String)]) -> Result<Json, Finding> {
    let code = code(path)
        .map_err(|e| Finding::error(label, (1, 1), format!("cannot read the file: {e}")))?;
    let context = jrsonnet_stdlib::ContextInitializer::new(PathResolver::Absolute);
    for (name, value) in vars {
        context.add_ext_str((*name).into(), value.as_str().into());
    }
    let mut builder = State::builder();
    builder
        .context_initializer(context)
        .import_resolver(FileImportResolver::new(
            path.parent()
                .map(|p| vec![p.to_path_buf()])
                .unwrap_or_default(),
        ));
    let state = builder.build();
    let fail = |e: jrsonnet_evaluator::Error| {
        let text = e.to_string();
        let pos = position(&e)
            .or_else(|| {
                LOCATION
                    .captures(&text)
                    .and_then(|c| Some((c[1].parse().ok()?, c[2].parse().ok()?)))
            })
            .unwrap_or((1, 1));
        let first = text.lines().next().unwrap_or_default().trim().to_owned();
        Finding::error(label, pos, format!("jsonnet: {first}"))
    };
    let name = path.display().to_string();
    let value = state.evaluate_snippet(name, code).map_err(fail)?;
    let json = value.manifest(JsonFormat::default()).map_err(fail)?;
    serde_json::from_str(&json)
        .map_err(|e| Finding::error(label, (1, 1), format!("jsonnet gave no JSON value: {e}")))
}

/// Where jsonnet says the error is: the syntax error's span, else the innermost place of the
/// stack trace.
fn position(e: &jrsonnet_evaluator::Error) -> Option<(usize, usize)> {
    let span = match e.error() {
        jrsonnet_evaluator::error::ErrorKind::ImportSyntaxError { error, .. } => {
            Some(error.location.clone())
        }
        _ => None,
    }
    .or_else(|| e.trace().0.iter().find_map(|el| el.location.clone()))?;
    let [loc] = span.0.map_source_locations(&[span.1]);
    Some((loc.line.max(1), loc.column.max(1)))
}

/// The line of the jsonnet source where `key` is set (`key:`, `'key':`, `"key":`, `key+:`),
/// the first one after the line of the enclosing key when given.
pub fn key_line(source: &str, key: &str, after: usize) -> Option<usize> {
    let forms = [
        format!("{key}:"),
        format!("{key}+:"),
        format!("'{key}':"),
        format!("\"{key}\":"),
        format!("'{key}'+:"),
        format!("\"{key}\"+:"),
    ];
    source
        .lines()
        .enumerate()
        .skip(after.saturating_sub(1))
        .find(|(_, l)| {
            let t = l.trim_start();
            forms.iter().any(|f| t.starts_with(f.as_str()))
        })
        .map(|(i, _)| i + 1)
}
