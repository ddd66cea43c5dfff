//! `hubfleet export --config hub.yaml --out DIR` and `hubfleet fleet export CLUSTER HUB --out
//! DIR`: a hub's values for upstream Zero to JupyterHub (values.yaml, secrets.values.yaml,
//! README.md). The translation is `hubfleet_kube::export`; this reads the hub, compares the pods
//! and writes the files (see docs/leaving.md).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use hubfleet_config::values::{self, Values};
use hubfleet_fleet::hub::Source;
use hubfleet_fleet::{Keyring, Kind};
use hubfleet_kube::export::{self, Export, ReadmeFacts, SopsKey};
use hubfleet_kube::{HelmRelease, ServerFacts, UserFacts, UserOptions};
use serde_yaml_ng::Value;

/// `hubfleet export`.
#[derive(Args)]
pub struct ExportArgs {
    /// The hub's config file; several are layered as with `serve`.
    #[arg(long, short, required = true)]
    config: Vec<PathBuf>,
    /// The directory to write values.yaml, secrets.values.yaml and README.md into (made if
    /// missing; files of an earlier export are replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The Helm release name in the README's commands.
    #[arg(long, default_value = "jupyterhub")]
    release: String,
    /// z2jh's chart defaults, to compare the pods (default: the copy under
    /// $HUBFLEET_SHARED_DIR; without it the pods are not compared).
    #[arg(long, value_name = "FILE")]
    chart_values: Option<PathBuf>,
}

/// The user whose default server's pods are compared in the README.
const COMPARED_USER: &str = "alice";

/// Export a single hub.
pub async fn run(args: &ExportArgs) -> Result<()> {
    let mut merged = Value::Null;
    for path in &args.config {
        let label = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {label}"))?;
        let doc = values::parse_yaml(&label, &text)?;
        let doc = match doc {
            Value::Null => Value::Mapping(Default::default()),
            v @ Value::Mapping(_) => v,
            _ => bail!("{label}:1:1: a config file must be a mapping of keys (`hub:`, `singleuser:`, `hubfleet:`, …)"),
        };
        if merged.is_null() {
            merged = doc;
        } else {
            values::merge_files(&mut merged, doc);
        }
    }
    let exported = export::export(merged.clone(), &[]);
    let hub = args
        .config
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" + ");
    // The config as a hub reads it, for its database and homes (a values file that is not a
    // hub's config has none).
    let hub_data = match crate::check_cmd::load(&args.config) {
        Ok(config) => write_hub_data(&config, &args.out).await?,
        Err(e) => HubData::None(format!(
            "the config does not load as a hub's ({})",
            format!("{e:#}").lines().next().unwrap_or_default()
        )),
    };
    write_export(
        &args.out,
        exported,
        &merged,
        ReadmeFacts {
            hub,
            release: args.release.clone(),
            hub_data: Some(hub_data.readme()),
            ..Default::default()
        },
        args.chart_values.clone(),
    )
}

/// What the export says of the hub's users and homes.
enum HubData {
    /// Written: the README's section.
    Written(String),
    /// Not written, and why.
    None(String),
}

impl HubData {
    fn readme(&self) -> String {
        match self {
            HubData::Written(text) => text.clone(),
            HubData::None(why) => format!(
                "This export has no users.json or homes.tar.zst: {why}. Export them where the hub's data is (`hubfleet users export --config hub.yaml --out DIR`), then see docs/leaving.md."
            ),
        }
    }
}

/// Write `users.json` and `homes.tar.zst` of the hub `config` describes into `out`, when its
/// data is on this machine.
async fn write_hub_data(config: &hubfleet_config::HubConfig, out: &Path) -> Result<HubData> {
    if let Some(db) = config.sqlite_path() {
        if !db.is_file() {
            return Ok(HubData::None(format!(
                "the hub has no database on this machine ({} does not exist)",
                db.display()
            )));
        }
    }
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot make the directory {}", out.display()))?;
    let store = match crate::open_store(config).await {
        Ok(store) => store,
        Err(e) => {
            return Ok(HubData::None(format!(
                "the hub's database could not be opened ({e:#})"
            )))
        }
    };
    let written = crate::hub_data::write_people(&store, config, out).await;
    store.close().await;
    let mut text = written?;
    text.push('\n');
    text.push_str(&crate::hub_data::restore_instructions());
    Ok(HubData::Written(text))
}

/// Export a hub of the fleet (its users and homes too when it is deployed on this machine, in
/// the fleet data directory `fleet`).
pub fn run_fleet(
    dir: Option<&Path>,
    fleet: &crate::fleet_local::FleetDir,
    cluster: &str,
    hub: &str,
    out: &Path,
) -> Result<bool> {
    let repo = crate::fleet_cmd::repo(dir)?;
    let keys = Keyring::from_env();
    let (cluster, findings) = repo.cluster(cluster)?;
    let entry = cluster.hub(hub)?.clone();
    let loaded = hubfleet_fleet::hub::load(&repo, &cluster, &entry, &keys);
    let errors: Vec<_> = findings
        .iter()
        .chain(loaded.findings.iter())
        .filter(|f| f.kind == Kind::Error && f.hub.as_deref().is_none_or(|h| h == entry.name))
        .collect();
    if !errors.is_empty() {
        for f in &errors {
            eprintln!("{f}");
        }
        bail!(
            "{} problems in the values of {}/{}; `hubfleet fleet validate` lists them all",
            errors.len(),
            cluster.name,
            entry.name
        );
    }
    let key = entry.jupyterhub_key();
    let z2jh = values::unwrap(loaded.merged.clone(), key, "the hub's values")?;
    // The keys sops files set (decrypted, or placeholders with why not).
    let mut sops = Vec::new();
    for layer in &loaded.layers {
        let not_decrypted = match &layer.source {
            Source::Decrypted => None,
            Source::Encrypted(why) => Some(why.clone()),
            _ => continue,
        };
        let mut doc = layer.doc.clone();
        for p in layer.prefix.iter().rev() {
            let mut m = serde_yaml_ng::Mapping::new();
            m.insert(Value::String(p.clone()), doc);
            doc = Value::Mapping(m);
        }
        let inner = values::unwrap(doc, key, &layer.label).unwrap_or(Value::Null);
        for path in export::leaf_paths(&inner) {
            sops.push(SopsKey {
                path,
                file: layer.label.clone(),
                not_decrypted: not_decrypted.clone(),
            });
        }
    }
    let mut exported = export::export(z2jh.clone(), &sops);
    if let Some(defaults) = loaded
        .layers
        .iter()
        .find(|l| matches!(l.source, Source::Chart))
    {
        exported
            .dropped
            .extend(export::basehub_outside(&loaded.merged, &defaults.doc, key));
        exported.dropped.sort();
    }
    exported.host.get_or_insert_with(|| entry.domain.clone());
    let hub_dir = fleet.hub_dir(&cluster.name, &entry.name);
    let hub_data = if hub_dir.join("hub.yaml").is_file() {
        let mut configs = vec![hub_dir.join("hub.yaml")];
        if hub_dir.join("secret.yaml").is_file() {
            configs.push(hub_dir.join("secret.yaml"));
        }
        let config = crate::check_cmd::load(&configs)
            .with_context(|| format!("the deployed config in {}", hub_dir.display()))?;
        // The fleet commands run outside the async runtime's tasks: one of their own here.
        let out = out.to_path_buf();
        std::thread::scope(|scope| {
            scope
                .spawn(|| -> Result<HubData> {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?
                        .block_on(write_hub_data(&config, &out))
                })
                .join()
                .map_err(|_| anyhow::anyhow!("writing the hub's users and homes panicked"))?
        })?
    } else {
        HubData::None(format!(
            "the hub is not deployed on this machine (no {})",
            hub_dir.join("hub.yaml").display()
        ))
    };
    write_export(
        out,
        exported,
        &z2jh,
        ReadmeFacts {
            hub: format!("{}/{}", cluster.name, entry.name),
            release: entry.name.clone(),
            hub_data: Some(hub_data.readme()),
            ..Default::default()
        },
        None,
    )?;
    Ok(true)
}

/// The pods compared, the files written.
fn write_export(
    out: &Path,
    exported: Export,
    original: &Value,
    mut facts: ReadmeFacts,
    chart_values: Option<PathBuf>,
) -> Result<()> {
    facts.pods_compared_for = format!(
        "user `{COMPARED_USER}`'s default server (release `{}`)",
        facts.release
    );
    match compare_pods(original, &exported, &facts.release, chart_values) {
        Ok(differences) => facts.pod_differences = differences,
        Err(why) => facts.pods_not_compared = Some(why),
    }
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot make the directory {}", out.display()))?;
    let mut values_text = String::from(
        "# Values for the Zero to JupyterHub chart, exported by hubfleet: README.md says how to install them.\n",
    );
    for note in &exported.notes {
        values_text.push_str(&format!("# note: {note}\n"));
    }
    values_text.push_str(&serde_yaml_ng::to_string(&exported.values)?);
    write_file(&out.join("values.yaml"), &values_text, 0o644)?;
    let mut secrets_text = String::from(
        "# Secrets for the Zero to JupyterHub chart, exported by hubfleet. Keep this file private.\n",
    );
    for key in &exported.placeholders {
        secrets_text.push_str(&format!(
            "# {}: {key} could not be decrypted here; put its value in\n",
            export::CHANGE_ME
        ));
    }
    secrets_text.push_str(&serde_yaml_ng::to_string(&exported.secrets)?);
    write_file(&out.join("secrets.values.yaml"), &secrets_text, 0o600)?;
    let readme = export::readme(&exported, &facts);
    write_file(&out.join("README.md"), &readme, 0o644)?;
    println!(
        "wrote {}: values.yaml, secrets.values.yaml (0600), README.md",
        out.display()
    );
    println!(
        "  {} keys dropped, {} translated, {} secrets to fill in (CHANGE-ME), {} pod fields differ",
        exported.dropped.len(),
        exported.translated.len(),
        exported.placeholders.len(),
        facts.pod_differences.len()
    );
    Ok(())
}

/// Write `text` to `path` through a new file in the same directory made with `mode` (so a
/// secret is never readable by others, even for a moment), renamed over `path`.
fn write_file(path: &Path, text: &str, mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", tmp.display()));
    }
    // A umask may have taken bits from the mode asked for; never added any.
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// The pod fields that differ between hubfleet's pod from the hub's own values and from the
/// export (values and secrets), both laid on z2jh's chart defaults.
fn compare_pods(
    original: &Value,
    exported: &Export,
    release: &str,
    chart_values: Option<PathBuf>,
) -> Result<Vec<String>, String> {
    let chart_values = match chart_values {
        Some(p) => p,
        None => crate::render_cmd::default_chart_values().map_err(|e| format!("{e:#}"))?,
    };
    let text = std::fs::read_to_string(&chart_values)
        .map_err(|e| format!("cannot read {}: {e}", chart_values.display()))?;
    let defaults = values::parse_yaml(&chart_values.display().to_string(), &text)
        .map_err(|e| e.to_string())?;
    let (chart_name, _, app_version) =
        crate::render_cmd::chart_facts(&chart_values).map_err(|e| format!("{e:#}"))?;
    let helm = HelmRelease {
        chart_name,
        chart_version: export::Z2JH_CHART_VERSION.to_owned(),
        app_version,
        release_name: release.to_owned(),
        namespace: release.to_owned(),
    };
    let mut exported_values = exported.values.clone();
    values::merge_files(&mut exported_values, exported.secrets.clone());
    let theirs = pod_list(&laid_on(original.clone(), &defaults), &helm)?;
    let ours = pod_list(&laid_on(exported_values, &defaults), &helm)?;
    Ok(export::differing_fields(&theirs, &ours)
        .into_iter()
        .map(|f| format!("`{f}`"))
        .collect())
}

fn laid_on(user: Value, defaults: &Value) -> Values {
    let mut doc = values::coalesce(user, defaults);
    values::drop_top_level_nulls(&mut doc);
    Values::new(doc)
}

/// The pod and PVCs of `COMPARED_USER`'s default server, as `render pod --pvc` prints them.
fn pod_list(values: &Values, release: &HelmRelease) -> Result<serde_json::Value, String> {
    let values = hubfleet_kube::with_release(values, release);
    let user = UserFacts::named(COMPARED_USER);
    let server = ServerFacts::default();
    let env = hubfleet_kube::hub_env(
        &values,
        &user,
        &server,
        hubfleet_kube::API_TOKEN_PLACEHOLDER,
    )
    .map_err(|e| e.to_string())?;
    let rendered = hubfleet_kube::render(&values, &user, &server, &UserOptions::default(), &env)
        .map_err(|e| e.to_string())?;
    let mut items = vec![serde_json::to_value(&rendered.pod).map_err(|e| e.to_string())?];
    for pvc in &rendered.pvcs {
        items.push(serde_json::to_value(pvc).map_err(|e| e.to_string())?);
    }
    Ok(serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items }))
}
