//! `hubfleet check`: every problem of the config files in one pass, and the config loading
//! `serve` shares with it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use hubfleet_config::{ConfigError, ConfigReport, HubConfig};

/// Exit status of `check` when there are warnings but no errors, with `--strict`.
const WARNINGS_ONLY: u8 = 2;

/// Print every finding of `paths` (layered in order) on standard output, one per line, in file
/// and line order. Exit 0 when there is nothing to say or only warnings (2 with `strict`), 1
/// with errors.
pub fn run(paths: &[PathBuf], strict: bool) -> ExitCode {
    let report = HubConfig::check_paths(paths);
    for line in finding_lines(&report, paths) {
        println!("{line}");
    }
    let (errors, warnings) = (report.errors.len(), report.warnings.len());
    let files = paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if errors + warnings == 0 {
        println!("{files}: no problems");
        return ExitCode::SUCCESS;
    }
    println!(
        "{files}: {} and {}",
        count(errors, "error"),
        count(warnings, "warning")
    );
    if errors > 0 {
        ExitCode::FAILURE
    } else if strict {
        ExitCode::from(WARNINGS_ONLY)
    } else {
        ExitCode::SUCCESS
    }
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `file:line:column: error|warning: key: message` for every finding, errors and warnings
/// together in the order of `paths`, then line (files that cannot be read first).
fn finding_lines(report: &ConfigReport, paths: &[PathBuf]) -> Vec<String> {
    let rank = |file: &str| {
        paths
            .iter()
            .position(|p| p.display().to_string() == file)
            .map_or(0, |i| i + 1)
    };
    let mut lines: Vec<((usize, usize, usize), String)> = Vec::new();
    for error in &report.errors {
        match error {
            ConfigError::Invalid {
                file,
                line,
                column,
                message,
                ..
            } => lines.push((
                (rank(file), *line, *column),
                format!("{file}:{line}:{column}: error: {message}"),
            )),
            ConfigError::Read { .. } => lines.push(((0, 0, 0), format!("error: {error}"))),
        }
    }
    for w in &report.warnings {
        lines.push((
            (rank(&w.file), w.line, w.column),
            format!(
                "{}:{}:{}: warning: {}: {}",
                w.file, w.line, w.column, w.key, w.message
            ),
        ));
    }
    // Stable: at one place, errors come before warnings.
    lines.sort_by_key(|(at, _)| *at);
    lines.into_iter().map(|(_, line)| line).collect()
}

/// The configuration `serve` runs with: every error at once when there are any (nothing has
/// been touched yet), else the configuration, its warnings logged.
pub fn load(paths: &[PathBuf]) -> Result<HubConfig> {
    let report = HubConfig::check_paths(paths);
    if !report.errors.is_empty() {
        let lines: Vec<String> = report.errors.iter().map(|e| format!("  {e}")).collect();
        bail!(
            "{} in the configuration; nothing was started or created (`hubfleet check` lists warnings too):\n{}",
            count(report.errors.len(), "problem"),
            lines.join("\n")
        );
    }
    report.log_warnings();
    match report.config {
        Some(config) => Ok(config),
        None => bail!("the configuration could not be read"),
    }
}
