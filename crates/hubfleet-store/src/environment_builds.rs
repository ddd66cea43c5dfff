//! Builds of local environments (`environment_builds`): who started one, when, where it builds,
//! how it ended and pip's log, kept in the database so that any replica, and the hub after a
//! restart, can show them.
//!
//! One build of an environment runs at a time across replicas (a unique index on the running
//! ones). The replica that builds writes the log as it grows and says it is alive; a running
//! build whose replica restarted, or that stopped saying it is alive, was interrupted and is
//! marked failed ([`Store::fail_interrupted_builds`]).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{from_micros, is_unique_violation, to_micros, Result, Store, StoreError};

/// The most of a build's log that is kept (bytes): the tail, after a line saying that the
/// beginning was cut. pip's output for a few dozen packages is well below it.
pub const BUILD_LOG_LIMIT: usize = 256 * 1024;

/// What the first line of a cut log says.
pub const BUILD_LOG_CUT: &str = "[… the beginning of the log was cut: only its end is kept …]\n";

/// Why a build that was running when its hub stopped failed.
pub const INTERRUPTED: &str = "interrupted by a hub restart";

/// One build.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EnvironmentBuild {
    pub id: i64,
    pub environment: String,
    /// The environment's version the build made (when it succeeded).
    pub version: Option<i64>,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    pub started: DateTime<Utc>,
    pub finished: Option<DateTime<Utc>>,
    /// Who asked for it (a user or service name).
    pub author: String,
    /// The hub replica that runs (or ran) it.
    pub replica: String,
    /// The venv it builds.
    pub directory: String,
    pub requirements: Vec<String>,
    /// Why it failed.
    pub error: Option<String>,
    pub log: String,
}

/// A build about to start.
#[derive(Clone, Debug)]
pub struct NewBuild<'a> {
    pub environment: &'a str,
    pub author: &'a str,
    pub replica: &'a str,
    pub directory: &'a str,
    pub requirements: &'a [String],
}

/// `log` cut to [`BUILD_LOG_LIMIT`], keeping its end from a line start.
pub fn cap_build_log(log: &str) -> String {
    if log.len() <= BUILD_LOG_LIMIT {
        return log.to_string();
    }
    let mut start = log.len() - (BUILD_LOG_LIMIT - BUILD_LOG_CUT.len());
    while !log.is_char_boundary(start) {
        start += 1;
    }
    let tail = &log[start..];
    // From the next whole line, unless the tail is one long line.
    let tail = match tail.find('\n') {
        Some(i) if i + 1 < tail.len() => &tail[i + 1..],
        _ => tail,
    };
    format!("{BUILD_LOG_CUT}{tail}")
}

const BUILD_COLS: &str = "id, environment, version, status, started, finished, author, replica, \
                          directory, requirements, error, log";

fn build_row(row: &AnyRow) -> Result<EnvironmentBuild> {
    let requirements: String = row.try_get("requirements")?;
    Ok(EnvironmentBuild {
        id: row.try_get("id")?,
        environment: row.try_get("environment")?,
        version: row.try_get("version")?,
        status: row.try_get("status")?,
        started: from_micros(row.try_get("started")?),
        finished: row.try_get::<Option<i64>, _>("finished")?.map(from_micros),
        author: row.try_get("author")?,
        replica: row.try_get("replica")?,
        directory: row.try_get("directory")?,
        requirements: requirements
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
        error: row.try_get("error")?,
        log: row.try_get("log")?,
    })
}

impl Store {
    /// Record a build that starts now. [`StoreError::Conflict`] when a build of the same
    /// environment is running (here or on another replica).
    pub async fn begin_environment_build(&self, new: &NewBuild<'_>) -> Result<EnvironmentBuild> {
        let now = to_micros(Utc::now());
        let row = sqlx::query(&format!(
            "INSERT INTO environment_builds (environment, status, started, alive, author, \
             replica, directory, requirements, log) \
             VALUES ($1, 'running', $2, $2, $3, $4, $5, $6, '') RETURNING {BUILD_COLS}"
        ))
        .bind(new.environment)
        .bind(now)
        .bind(new.author)
        .bind(new.replica)
        .bind(new.directory)
        .bind(new.requirements.join("\n"))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict {
                    what: "running build of",
                    name: new.environment.to_string(),
                }
            } else {
                e.into()
            }
        })?;
        build_row(&row)
    }

    /// The log of a running build so far (capped), which also says that its replica is at work.
    pub async fn write_build_log(&self, id: i64, log: &str) -> Result<()> {
        sqlx::query(
            "UPDATE environment_builds SET log = $1, alive = $2 WHERE id = $3 AND status = 'running'",
        )
        .bind(cap_build_log(log))
        .bind(to_micros(Utc::now()))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A build ended: `succeeded` (with the version it made) or `failed` (with why).
    pub async fn finish_environment_build(
        &self,
        id: i64,
        status: &str,
        version: Option<i64>,
        error: Option<&str>,
        log: &str,
    ) -> Result<()> {
        let now = to_micros(Utc::now());
        sqlx::query(
            "UPDATE environment_builds SET status = $1, version = $2, error = $3, log = $4, \
             finished = $5, alive = $5 WHERE id = $6",
        )
        .bind(status)
        .bind(version)
        .bind(error)
        .bind(cap_build_log(log))
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The latest build of `environment`.
    pub async fn last_environment_build(
        &self,
        environment: &str,
    ) -> Result<Option<EnvironmentBuild>> {
        let row = sqlx::query(&format!(
            "SELECT {BUILD_COLS} FROM environment_builds WHERE environment = $1 \
             ORDER BY id DESC LIMIT 1"
        ))
        .bind(environment)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(build_row).transpose()
    }

    /// Mark failed ([`INTERRUPTED`]) the running builds of `replica` (which is starting, so
    /// none of them runs) and those, on any replica, not said alive since `silent_since`. The
    /// builds so marked.
    pub async fn fail_interrupted_builds(
        &self,
        replica: Option<&str>,
        silent_since: DateTime<Utc>,
    ) -> Result<Vec<EnvironmentBuild>> {
        let now = to_micros(Utc::now());
        let rows = sqlx::query(&format!(
            "UPDATE environment_builds SET status = 'failed', error = $1, finished = $2, \
             log = log || $3 \
             WHERE status = 'running' AND (replica = $4 OR alive < $5) RETURNING {BUILD_COLS}"
        ))
        .bind(INTERRUPTED)
        .bind(now)
        .bind(format!("failed: {INTERRUPTED}\n"))
        .bind(replica)
        .bind(to_micros(silent_since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(build_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_log_keeps_its_end_from_a_line_start() {
        let line = "Collecting something-with-a-long-name==1.0\n";
        let log: String = (0..20_000).map(|i| format!("{i}: {line}")).collect();
        let capped = cap_build_log(&log);
        assert!(capped.len() <= BUILD_LOG_LIMIT, "{}", capped.len());
        assert!(capped.starts_with(BUILD_LOG_CUT));
        assert!(capped.ends_with(&format!("19999: {line}")));
        let first = capped[BUILD_LOG_CUT.len()..].lines().next().unwrap();
        assert!(first.ends_with(line.trim_end()), "{first}");
        assert!(!first.starts_with(':'), "{first}");
        assert_eq!(cap_build_log("short\n"), "short\n");
    }
}
