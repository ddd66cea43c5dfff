//! `hubfleet backup`: a consistent copy of the hub's database while the hub runs. SQLite:
//! `VACUUM INTO` (one snapshot, the hub keeps writing); PostgreSQL: `pg_dump` in its custom
//! format (restore with `pg_restore`). The copy is written next to its destination and moved
//! into place when complete, so a failed or interrupted backup never leaves half a file under
//! the name given, and never replaces a file without `--force`.

use std::io::BufRead;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use hubfleet_config::DbType;

#[derive(Args)]
pub struct BackupArgs {
    /// The hub's config file (for the database); several are layered as with `serve`.
    #[arg(long, short, required = true)]
    config: Vec<PathBuf>,
    /// Where to write the copy (SQLite: a database file; PostgreSQL: a pg_dump archive).
    #[arg(long, short)]
    out: PathBuf,
    /// Replace `--out` if it exists.
    #[arg(long)]
    force: bool,
}

pub async fn run(args: BackupArgs) -> Result<()> {
    let config = crate::check_cmd::load(&args.config)?;
    let out = std::path::absolute(&args.out)?;
    if out.exists() && !args.force {
        bail!(
            "{} exists; pass --force to replace it, or choose another --out",
            out.display()
        );
    }
    if out.is_dir() {
        bail!("{} is a directory; give a file name", out.display());
    }
    let dir = out
        .parent()
        .filter(|d| d.is_dir())
        .with_context(|| format!("the directory of {} does not exist", out.display()))?;
    let name = out
        .file_name()
        .context("--out names no file")?
        .to_string_lossy();
    // Hidden, next to the destination (one file system, so the rename is atomic), and private:
    // the copy holds every token hash and the hub's secrets.
    let partial = dir.join(format!(".{name}.partial-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let result = match config.hub.db.kind {
        DbType::SqlitePvc => match config.sqlite_path() {
            Some(database) => sqlite(&database, &partial).await,
            None => Err(nothing_to_copy()),
        },
        DbType::SqliteMemory => Err(nothing_to_copy()),
        DbType::Postgres => postgres(&config.database_url(), &partial),
    };
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, &out)
        .with_context(|| format!("moving {} to {}", partial.display(), out.display()))?;
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    println!("backup written to {} ({})", out.display(), human(size));
    Ok(())
}

fn nothing_to_copy() -> anyhow::Error {
    anyhow::anyhow!(
        "hub.db.type is sqlite-memory: the database lives only in the hub's memory, so there is nothing to back up"
    )
}

fn human(bytes: u64) -> String {
    hubfleet_spawn::format_bytes(bytes) + if bytes < 1024 { " bytes" } else { "B" }
}

/// A bar of bytes written so far against the database's size (the copy may end smaller: it
/// leaves out free pages). Hidden when standard error is not a terminal.
fn byte_bar(total: u64, what: String) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total.max(1));
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{elapsed}] {wide_bar} {bytes}/{total_bytes}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(what);
    bar
}

async fn sqlite(database: &Path, partial: &Path) -> Result<()> {
    if !database.is_file() {
        bail!(
            "there is no database at {}: is --config the running hub's config file?",
            database.display()
        );
    }
    let size = [
        database.to_path_buf(),
        PathBuf::from(format!("{}-wal", database.display())),
    ]
    .iter()
    .filter_map(|p| std::fs::metadata(p).ok())
    .map(|m| m.len())
    .sum();
    let bar = byte_bar(size, format!("copying {}", database.display()));
    let copy = hubfleet_store::backup::sqlite_into(database, partial);
    tokio::pin!(copy);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let result = loop {
        tokio::select! {
            result = &mut copy => break result,
            _ = tick.tick() => {
                bar.set_position(std::fs::metadata(partial).map(|m| m.len()).unwrap_or(0));
            }
        }
    };
    bar.finish_and_clear();
    result.with_context(|| format!("copying the SQLite database {}", database.display()))
}

/// `pg_dump` on `PATH`, else the newest under `/usr/lib/postgresql/*/bin` (Debian, Ubuntu).
fn find_pg_dump() -> Option<PathBuf> {
    if let Some(found) = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("pg_dump"))
            .find(|p| p.is_file())
    }) {
        return Some(found);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let program = e.path().join("bin/pg_dump");
            program.is_file().then_some((version, program))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, program)| program)
}

fn postgres(url: &str, partial: &Path) -> Result<()> {
    let pg_dump = find_pg_dump().context(
        "pg_dump is not installed (looked on PATH and in /usr/lib/postgresql/*/bin): install \
         PostgreSQL's client programs of the server's major version or newer (Debian, Ubuntu: \
         apt-get install postgresql-client), then run the backup again",
    )?;
    // The password goes in the environment, not on a command line that `ps` shows.
    let mut parsed = url::Url::parse(url)
        .map_err(|e| anyhow::anyhow!("hub.db.url is not a URL pg_dump understands: {e}"))?;
    let password = parsed.password().map(|p| {
        percent_encoding::percent_decode_str(p)
            .decode_utf8_lossy()
            .into_owned()
    });
    let _ = parsed.set_password(None);
    let mut command = Command::new(&pg_dump);
    command
        .args(["--format=custom", "--verbose", "--no-password", "--file"])
        .arg(partial)
        .arg(format!("--dbname={parsed}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner.set_message(format!("pg_dump of {}", hubfleet_store::redact(url)));
    let mut child = command
        .spawn()
        .with_context(|| format!("running {}", pg_dump.display()))?;
    // `--verbose` names each table as it goes: the spinner shows it; errors are kept.
    let mut problems = Vec::new();
    if let Some(err) = child.stderr.take() {
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let line = line.trim().to_string();
            if line.contains("error") || line.contains("FATAL") || line.contains("fatal") {
                problems.push(line.clone());
            }
            spinner.set_message(line.chars().take(100).collect::<String>());
        }
    }
    let status = child.wait()?;
    spinner.finish_and_clear();
    if !status.success() {
        bail!(
            "{} failed ({status}): {}",
            pg_dump.display(),
            if problems.is_empty() {
                "see its messages above".to_string()
            } else {
                problems.join("; ")
            }
        );
    }
    Ok(())
}
