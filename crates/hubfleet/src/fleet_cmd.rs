//! `hubfleet fleet …`: many hubs from one repository laid out as 2i2c's `infrastructure`
//! (see docs/fleet.md).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use hubfleet_fleet::{Keyring, Kind, Repo};
use indicatif::{ProgressBar, ProgressStyle};

/// Where the repository is.
#[derive(Args, Clone)]
pub struct RepoArgs {
    /// The repository (the directory that holds config/clusters/, or one inside it); default:
    /// the current directory.
    #[arg(long, value_name = "DIR", global = true)]
    dir: Option<PathBuf>,
    /// The fleet data directory of the local target (hubs' configs, data and logs, what is
    /// deployed); default: $HUBFLEET_FLEET_DATA_DIR, else ~/.local/share/hubfleet/fleet.
    #[arg(
        long,
        value_name = "DIR",
        global = true,
        env = "HUBFLEET_FLEET_DATA_DIR"
    )]
    data_dir: Option<PathBuf>,
}

/// `hubfleet fleet …`.
#[derive(Args)]
pub struct FleetArgs {
    #[command(flatten)]
    repo: RepoArgs,
    #[command(subcommand)]
    action: FleetAction,
}

/// What to do with the fleet.
#[derive(Subcommand)]
pub enum FleetAction {
    /// Check every cluster and every hub; errors give file:line and the key path.
    Validate {
        /// The repository (as --dir).
        #[arg(value_name = "DIR")]
        path: Option<PathBuf>,
        /// Only this cluster (repeatable).
        #[arg(long)]
        cluster: Vec<String>,
        /// Also list the z2jh keys hubfleet accepts and ignores, for each hub.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Print a hub's effective values (chart defaults, values.jsonnet and its files, layered),
    /// what runs it, and what its values ask for that the target does not do.
    Render {
        /// The cluster (a folder under config/clusters/).
        cluster: String,
        /// The hub (a `name` in its cluster.yaml).
        hub: String,
    },
    /// What `deploy` would do, per hub: add, change (with a diff of the effective config),
    /// remove, unchanged; read from what runs. Exits 0.
    Plan {
        /// Only this cluster (repeatable).
        #[arg(long)]
        cluster: Vec<String>,
    },
    /// Deploy the changed hubs of `provider: local` clusters: staging hubs first, then
    /// production; a staging hub failing its health check stops its cluster.
    Deploy {
        /// Only this cluster (repeatable).
        #[arg(long)]
        cluster: Vec<String>,
        /// Only this hub (with one --cluster); no removals.
        #[arg(long, requires = "cluster")]
        hub: Option<String>,
        /// Hubs started at once in a cluster.
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
        /// The front proxy's address, when it is not running yet ("" for every interface).
        #[arg(long, default_value = "")]
        proxy_ip: String,
        /// The front proxy's port, when it is not running yet.
        #[arg(long, default_value_t = 8000)]
        proxy_port: u16,
    },
    /// Check a deployed hub: as its `hub-health` service start a server for
    /// `deployment-service-check`, run print(6*7) in a kernel, stop the server.
    Health { cluster: String, hub: String },
    /// Every deployed hub: version, config revision, process, last health, users, servers.
    Status,
    /// Stop every hub (their users' servers first) and the front proxy; what is deployed is
    /// kept, and `deploy` starts it again.
    Stop {
        /// Only this cluster's hubs (repeatable); the front proxy keeps running.
        #[arg(long)]
        cluster: Vec<String>,
    },
    /// sops files with the age backend.
    Secrets {
        #[command(subcommand)]
        action: SecretsAction,
    },
}

/// `fleet secrets …`.
#[derive(Subcommand)]
pub enum SecretsAction {
    /// Print the decrypted file.
    Decrypt {
        /// The sops file.
        file: PathBuf,
        /// Write here instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Encrypt a plain YAML or JSON file in place for age recipients.
    Encrypt {
        /// The file.
        file: PathBuf,
        /// An age recipient (`age1…`; repeatable); default: `SOPS_AGE_RECIPIENTS`, else the
        /// recipients of the identities in SOPS_AGE_KEY_FILE.
        #[arg(long = "age", value_name = "RECIPIENT")]
        age: Vec<String>,
        /// Write here instead of replacing the file.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Decrypt into a temporary file, open $EDITOR, and encrypt again to the same recipients.
    Edit {
        /// The sops file.
        file: PathBuf,
    },
}

/// Run `fleet …`: 0 when all is well, 1 on errors.
pub fn run(args: FleetArgs) -> ExitCode {
    let result = match args.action {
        FleetAction::Validate {
            path,
            cluster,
            verbose,
        } => validate(
            path.as_deref().or(args.repo.dir.as_deref()),
            &cluster,
            verbose,
        ),
        FleetAction::Render { cluster, hub } => render(args.repo.dir.as_deref(), &cluster, &hub),
        FleetAction::Secrets { action } => secrets(action).map(|()| true),
        FleetAction::Plan { cluster } => crate::fleet_deploy::plan_cmd(
            args.repo.dir.as_deref(),
            &fleet_dir(&args.repo),
            &cluster,
        ),
        FleetAction::Deploy {
            cluster,
            hub,
            concurrency,
            proxy_ip,
            proxy_port,
        } => crate::fleet_deploy::deploy_cmd(
            args.repo.dir.as_deref(),
            &fleet_dir(&args.repo),
            &cluster,
            hub.as_deref(),
            concurrency.max(1),
            &proxy_ip,
            proxy_port,
        ),
        FleetAction::Health { cluster, hub } => {
            crate::fleet_deploy::health_cmd(&fleet_dir(&args.repo), &cluster, &hub)
        }
        FleetAction::Status => crate::fleet_deploy::status_cmd(&fleet_dir(&args.repo)),
        FleetAction::Stop { cluster } => {
            crate::fleet_deploy::stop_cmd(&fleet_dir(&args.repo), &cluster)
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn fleet_dir(args: &RepoArgs) -> crate::fleet_local::FleetDir {
    let dir = args.data_dir.clone().unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".local/share/hubfleet/fleet")
    });
    crate::fleet_local::FleetDir(std::path::absolute(&dir).unwrap_or(dir))
}

pub fn repo(dir: Option<&Path>) -> Result<Repo> {
    let start = match dir {
        Some(d) => d.to_path_buf(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    Ok(Repo::find(&start)?)
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::new(len)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(what.to_owned());
    bar
}

fn validate(dir: Option<&Path>, clusters: &[String], verbose: bool) -> Result<bool> {
    let repo = repo(dir)?;
    let keys = Keyring::from_env();
    let progress = bar(0, "validate");
    let report = hubfleet_fleet::validate::validate(
        &repo,
        clusters,
        &keys,
        &|n| progress.set_length(n as u64),
        &|hub| {
            progress.set_message(hub.to_owned());
            progress.inc(1);
        },
    )?;
    progress.finish_and_clear();
    let mut by_kind = std::collections::BTreeMap::<Kind, usize>::new();
    for f in &report.findings {
        *by_kind.entry(f.kind).or_default() += 1;
    }
    for kind in [
        Kind::Encrypted,
        Kind::SupportChart,
        Kind::KubernetesAddOn,
        Kind::Unsupported,
        Kind::Error,
    ] {
        let of_kind: Vec<_> = report.findings.iter().filter(|f| f.kind == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        println!("{} ({}):", heading(kind), of_kind.len());
        for f in of_kind {
            println!("  {f}");
        }
    }
    if verbose {
        println!("z2jh keys accepted and ignored ({}):", report.ignored.len());
        for (hub, w) in &report.ignored {
            println!("  {w} [hub {hub}]");
        }
    } else if !report.ignored.is_empty() {
        println!(
            "{} z2jh settings are accepted and ignored by hubfleet (--verbose lists them)",
            report.ignored.len()
        );
    }
    let errors = by_kind.get(&Kind::Error).copied().unwrap_or(0);
    println!(
        "{}: {} clusters, {} hubs: {}",
        repo.root.display(),
        report.clusters,
        report.hubs,
        if errors == 0 {
            "valid".to_owned()
        } else if errors == 1 {
            "1 error".to_owned()
        } else {
            format!("{errors} errors")
        }
    );
    Ok(errors == 0)
}

fn render(dir: Option<&Path>, cluster: &str, hub: &str) -> Result<bool> {
    let repo = repo(dir)?;
    let keys = Keyring::from_env();
    let (cluster, findings) = repo.cluster(cluster)?;
    let entry = cluster.hub(hub)?.clone();
    let values = hubfleet_fleet::hub::load(&repo, &cluster, &entry, &keys);
    let errors: Vec<_> = findings
        .iter()
        .chain(values.findings.iter())
        .filter(|f| f.kind == Kind::Error && f.hub.as_deref().is_none_or(|h| h == entry.name))
        .collect();
    if !errors.is_empty() {
        for f in &errors {
            eprintln!("{f}");
        }
        anyhow::bail!(
            "{} problems in the values of {}/{}; `hubfleet fleet validate` lists them all",
            errors.len(),
            cluster.name,
            entry.name
        );
    }
    println!(
        "# {}/{} ({}), {}",
        cluster.name,
        entry.name,
        entry.domain,
        if entry.is_staging() {
            "staging"
        } else {
            "production"
        }
    );
    println!("# layered, in order:");
    for layer in &values.layers {
        println!("#   {} ({})", layer.label, layer.source.name());
    }
    match cluster.target() {
        hubfleet_fleet::Target::Local => println!(
            "# runs as: a supervised `hubfleet serve` on this machine, behind the fleet's front proxy for Host {}",
            entry.domain
        ),
        hubfleet_fleet::Target::Kubernetes => println!(
            "# runs as: the manifests of `hubfleet render k8s` in namespace {} (provider {})",
            entry.name, cluster.provider
        ),
    }
    for f in values.findings.iter().filter(|f| f.kind != Kind::Error) {
        println!("# note: {f}");
    }
    print!("{}", serde_yaml_ng::to_string(&values.merged)?);
    Ok(true)
}

fn heading(kind: Kind) -> &'static str {
    match kind {
        Kind::Error => "errors",
        Kind::Encrypted => "encrypted files not decrypted here",
        Kind::SupportChart => "files of the support chart",
        Kind::KubernetesAddOn => "keys that need a Kubernetes add-on on the local target",
        Kind::Unsupported => "z2jh settings hubfleet's hub does not take (left out when deploying)",
    }
}

fn secrets(action: SecretsAction) -> Result<()> {
    let keys = Keyring::from_env();
    match action {
        SecretsAction::Decrypt { file, out } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let plain = hubfleet_fleet::sops::decrypt_text(
                &file.display().to_string(),
                &text,
                &keys.identities,
            )?;
            write_out(out.as_deref(), &plain)
        }
        SecretsAction::Encrypt { file, age, out } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let recipients = recipients(&age, &keys)?;
            let enc = hubfleet_fleet::sops::encrypt_text(
                &file.display().to_string(),
                &text,
                &recipients,
            )?;
            write_out(Some(out.as_deref().unwrap_or(&file)), &enc)
        }
        SecretsAction::Edit { file } => edit(&file, &keys),
    }
}

fn recipients(given: &[String], keys: &Keyring) -> Result<Vec<String>> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    if let Ok(env) = std::env::var("SOPS_AGE_RECIPIENTS") {
        let list: Vec<String> = env
            .split([',', ' ', '\n'])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if !list.is_empty() {
            return Ok(list);
        }
    }
    let from_keys: Vec<String> = keys
        .identities
        .iter()
        .map(|i| i.to_public().to_string())
        .collect();
    if from_keys.is_empty() {
        anyhow::bail!("no age recipient: pass --age age1…, or set SOPS_AGE_RECIPIENTS, or SOPS_AGE_KEY_FILE to your age keys");
    }
    Ok(from_keys)
}

fn edit(file: &Path, keys: &Keyring) -> Result<()> {
    let label = file.display().to_string();
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {label}"))?;
    let doc = hubfleet_config::values::parse_yaml(&label, &text)?;
    let recipients = hubfleet_fleet::sops::recipients(&doc)
        .map(|r| r.age)
        .filter(|r| !r.is_empty())
        .with_context(|| format!("{label}: not a sops file with age recipients"))?;
    let plain = hubfleet_fleet::sops::decrypt_text(&label, &text, &keys.identities)?;
    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("yaml");
    let tmp = tempfile::Builder::new()
        .suffix(&format!(".{ext}"))
        .tempfile()
        .context("cannot make a temporary file")?;
    std::fs::write(tmp.path(), &plain)?;
    let editor = std::env::var("EDITOR").unwrap_or_else(|_| "vi".into());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(tmp.path())
        .status()
        .with_context(|| format!("cannot run the editor `{editor}` (set EDITOR)"))?;
    if !status.success() {
        anyhow::bail!("the editor exited with {status}; {label} is unchanged");
    }
    let edited = std::fs::read_to_string(tmp.path())?;
    if edited == plain {
        eprintln!("{label}: unchanged");
        return Ok(());
    }
    let enc = hubfleet_fleet::sops::encrypt_text(&label, &edited, &recipients)?;
    write_out(Some(file), &enc)
}

fn write_out(out: Option<&Path>, text: &str) -> Result<()> {
    match out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            use std::io::Write;
            std::io::stdout().write_all(text.as_bytes())?;
            Ok(())
        }
    }
}
