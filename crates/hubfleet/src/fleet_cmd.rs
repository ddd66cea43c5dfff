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
    /// Write a hub's values for upstream Zero to JupyterHub (values.yaml, secrets.values.yaml
    /// with the sops files decrypted, README.md) into a directory: docs/leaving.md.
    Export {
        /// The cluster (a folder under config/clusters/).
        cluster: String,
        /// The hub (a `name` in its cluster.yaml).
        hub: String,
        /// The directory to write into (made if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
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
    /// Run one local hub's `hubfleet serve` and start it again when it dies on its own (started
    /// by `deploy`; SIGTERM stops the hub and the supervisor).
    #[command(hide = true)]
    Supervise {
        /// The hub's directory in the fleet data directory (hub.yaml, secret.yaml).
        #[arg(long, value_name = "DIR")]
        hub_dir: PathBuf,
        /// The hub's loopback port (to know when it first answers).
        #[arg(long)]
        port: u16,
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
        FleetAction::Render { cluster, hub } => render(
            args.repo.dir.as_deref(),
            &fleet_dir(&args.repo),
            &cluster,
            &hub,
        ),
        FleetAction::Export { cluster, hub, out } => crate::export_cmd::run_fleet(
            args.repo.dir.as_deref(),
            &fleet_dir(&args.repo),
            &cluster,
            &hub,
            &out,
        ),
        FleetAction::Secrets { action } => secrets(action).map(|()| true),
        FleetAction::Supervise { hub_dir, port } => crate::fleet_supervise::run(&hub_dir, port),
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

fn render(
    dir: Option<&Path>,
    fleet: &crate::fleet_local::FleetDir,
    cluster: &str,
    hub: &str,
) -> Result<bool> {
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
    for f in values.findings.iter().filter(|f| f.kind != Kind::Error) {
        println!("# note: {f}");
    }
    let runs = match cluster.target() {
        hubfleet_fleet::Target::Local => render_local(&repo, fleet, &cluster, &entry, &keys)?,
        hubfleet_fleet::Target::Kubernetes => render_kubernetes(&repo, &cluster, &entry, &values)?,
    };
    println!("---\n# the effective values (the chart's defaults and the files above, layered)");
    print!("{}", serde_yaml_ng::to_string(&values.merged)?);
    print!("{runs}");
    Ok(true)
}

/// Comment lines, one per line of `text`.
fn commented(text: &str) -> String {
    text.lines().map(|l| format!("# {l}\n")).collect()
}

/// What runs a `provider: local` hub: the notes (printed now), then the files `deploy` writes
/// (returned: YAML documents, the service token redacted).
fn render_local(
    repo: &Repo,
    fleet: &crate::fleet_local::FleetDir,
    cluster: &hubfleet_fleet::Cluster,
    entry: &hubfleet_fleet::HubEntry,
    keys: &Keyring,
) -> Result<String> {
    let deployed = fleet.deployed(std::slice::from_ref(&cluster.name))?;
    let (port, chosen) = match deployed.get(&(cluster.name.clone(), entry.name.clone())) {
        Some(state) => (state.port, "its port, kept from the first deploy"),
        None => (
            crate::fleet_local::free_port()?,
            "a free port now; the first deploy chooses one and keeps it",
        ),
    };
    let public_port = fleet.proxy().map(|p| p.port).unwrap_or(8000);
    let want = crate::fleet_local::desired(repo, cluster, entry, keys, fleet, port, public_port)?;
    let hub_dir = fleet.hub_dir(&cluster.name, &entry.name);
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "hubfleet".into());
    println!(
        "# runs as: a supervised `hubfleet serve` on this machine, on 127.0.0.1:{port} ({chosen}), behind the fleet's front proxy (port {public_port}) for Host {}",
        entry.domain
    );
    println!(
        "# command: {exe} fleet supervise --hub-dir {} --port {port}",
        hub_dir.display()
    );
    println!(
        "#   which runs, and starts again (with a backoff) whenever it dies on its own: {}",
        crate::fleet_local::serve_command(&exe, &hub_dir).join(" ")
    );
    println!("# its log: {}", hub_dir.join("hub.log").display());
    println!("# revision: {}", want.revision);
    for n in &want.notes {
        println!("# note: {n}");
    }
    Ok(format!(
        "---\n# {}\n{}---\n# {} (0600; made at the first deploy)\nhub:\n  services:\n    {}:\n      apiToken: <redacted>\n",
        hub_dir.join("hub.yaml").display(),
        want.config,
        hub_dir.join("secret.yaml").display(),
        crate::fleet_local::SERVICE,
    ))
}

/// The z2jh version basehub's chart depends on (its `Chart.yaml`), if it says.
fn z2jh_version(repo: &Repo) -> Option<String> {
    let path = repo.root.join("helm-charts/basehub/Chart.yaml");
    let text = std::fs::read_to_string(path).ok()?;
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).ok()?;
    doc.get("dependencies")?
        .as_sequence()?
        .iter()
        .find(|d| d.get("name").and_then(|n| n.as_str()) == Some("jupyterhub"))?
        .get("version")?
        .as_str()
        .map(str::to_owned)
}

/// Every Secret's values replaced by `<redacted>`.
fn redact_secrets(object: &mut serde_json::Value) {
    if object["kind"] != "Secret" {
        return;
    }
    for field in ["data", "stringData"] {
        if let Some(map) = object.get_mut(field).and_then(|m| m.as_object_mut()) {
            for v in map.values_mut() {
                *v = serde_json::Value::String("<redacted>".into());
            }
        }
    }
}

/// What runs a hub on Kubernetes: the notes (printed now), then the manifests of `hubfleet
/// render k8s` in the namespace named after the hub (returned; Secrets' values redacted).
fn render_kubernetes(
    repo: &Repo,
    cluster: &hubfleet_fleet::Cluster,
    entry: &hubfleet_fleet::HubEntry,
    values: &hubfleet_fleet::hub::HubValues,
) -> Result<String> {
    let mut z2jh = values.merged.clone();
    for p in entry.jupyterhub_key().split('.') {
        z2jh = z2jh.get(p).cloned().unwrap_or(serde_yaml_ng::Value::Null);
    }
    if !z2jh.is_mapping() {
        z2jh = serde_yaml_ng::Value::Mapping(Default::default());
    }
    let seed = match std::env::var_os("HUBFLEET_SECRET_SEED_FILE") {
        Some(path) => {
            let path = PathBuf::from(path);
            let bytes = std::fs::read(&path).with_context(|| {
                format!(
                    "HUBFLEET_SECRET_SEED_FILE {}: cannot read it",
                    path.display()
                )
            })?;
            hubfleet_kube::manifests::SecretSeed::new(&bytes, &path.display().to_string())?
        }
        None => hubfleet_kube::manifests::SecretSeed::new(
            b"hubfleet fleet render: a placeholder seed, not a secret",
            "placeholder",
        )?,
    };
    let (manifests, problems) =
        crate::render_cmd::fleet_hub_manifests(z2jh, &entry.name, z2jh_version(repo), seed)?;
    println!(
        "# runs as: the manifests of `hubfleet render k8s` (below), release and namespace `{}` (provider {}); Secrets' values are redacted",
        entry.name, cluster.provider
    );
    for note in &manifests.notes {
        println!("# note: {note}");
    }
    for problem in &problems {
        print!(
            "{}",
            commented(&format!("note: the hub will refuse its config: {problem}"))
        );
    }
    let mut out = String::new();
    for object in &manifests.objects {
        let mut json = object.to_json();
        redact_secrets(&mut json);
        out.push_str("---\n");
        out.push_str(&hubfleet_kube::manifests::yaml::to_yaml(&json));
    }
    Ok(out)
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
            crate::render_cmd::emit(&plain, out.as_deref())
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
            crate::render_cmd::emit(&enc, Some(out.as_deref().unwrap_or(&file)))
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
    crate::render_cmd::emit(&enc, Some(file))
}
