//! `hubfleet render pod`: the pod (and PVCs) a user's server gets on Kubernetes, from z2jh
//! values, as KubeSpawner would create it. The flags are those of the reference tool
//! (`tools/kubespawner-reference`), so one command line drives both.
//!
//! `hubfleet render k8s`: the objects that run the hub itself (`kubectl apply -f -`), from the
//! same values, read the same way.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{ArgMatches, Args, Subcommand};
use hubfleet_config::values::{self, ValuesInput};
use hubfleet_config::{ConfigSource, HubConfig};
use hubfleet_kube::manifests::{ManifestOptions, SecretSeed, OVERLAY_FILE, VALUES_FILE};
use hubfleet_kube::{HelmRelease, ServerFacts, UserFacts, UserOptions};

/// What to render.
#[derive(Subcommand)]
pub enum RenderWhat {
    /// The pod KubeSpawner would create for a user of a z2jh deployment (JSON on stdout).
    Pod(Box<PodArgs>),
    /// The manifests that run the hub on Kubernetes (YAML on stdout, for `kubectl apply -f -`).
    K8s(Box<K8sArgs>),
}

/// How the values are found and read: the same for `render pod` and `render k8s`.
#[derive(Args)]
pub struct ValuesArgs {
    /// A values file, merged in order after the chart defaults (repeatable). Files named
    /// `enc-*` or `*.secret.*` are skipped with a note.
    #[arg(long = "values", short = 'f', value_name = "FILE")]
    values: Vec<PathBuf>,
    /// Take this dotted subtree of the values files after it (`jupyterhub` for 2i2c's basehub
    /// files, `basehub.jupyterhub` for daskhub); files before the first --unwrap use the first
    /// one; `.` for none.
    #[arg(long, value_name = "KEY.PATH")]
    unwrap: Vec<String>,
    /// The chart's default values (z2jh's `jupyterhub/values.yaml`; its `Chart.yaml` beside it
    /// gives the chart's name and version). Default: the copy under $HUBFLEET_SHARED_DIR.
    #[arg(long, value_name = "FILE")]
    chart_values: Option<PathBuf>,
    /// A z2jh checkout to take the chart from (`DIR/jupyterhub/values.yaml`).
    #[arg(long, value_name = "DIR")]
    z2jh_dir: Option<PathBuf>,
    /// The z2jh version the values are for; a version tag sets the chart version.
    #[arg(long, value_name = "REV")]
    z2jh_rev: Option<String>,
    /// `Chart.Version` the hub sees (default: --z2jh-rev when it is a version, else Chart.yaml's).
    #[arg(long, value_name = "VERSION")]
    chart_version: Option<String>,
    /// The Helm release's name.
    #[arg(long, default_value = "jupyterhub")]
    release_name: String,
}

/// The flags of `render pod`.
#[derive(Args)]
pub struct PodArgs {
    #[command(flatten)]
    values: ValuesArgs,
    /// The namespace (default: the release name).
    #[arg(long)]
    namespace: Option<String>,
    /// The user's name.
    #[arg(long, short = 'u', required_unless_present = "print_merged")]
    user: Option<String>,
    /// The user's id (`{userid}` in templates).
    #[arg(long, default_value_t = 1)]
    user_id: u64,
    /// The user is an admin (users in the authenticator's `admin_users` are anyway).
    #[arg(long)]
    admin: bool,
    /// A hub group the user is in (repeatable).
    #[arg(long = "group", value_name = "NAME")]
    groups: Vec<String>,
    /// A named server (default: the default server).
    #[arg(long, default_value = "")]
    server_name: String,
    /// The profile's slug (`singleuser.profileList`).
    #[arg(long, short = 'p', value_name = "SLUG")]
    profile: Option<String>,
    /// A profile option's choice, `KEY=VALUE` (repeatable); an unlisted choice is
    /// `KEY--unlisted-choice=VALUE`.
    #[arg(long = "option", short = 'o', value_name = "KEY=VALUE")]
    options: Vec<String>,
    /// Raw user options as a JSON object (BinderHub's `{"token": …, "image": …}`), under
    /// --profile and --option.
    #[arg(long, value_name = "JSON")]
    user_options_json: Option<String>,
    /// Print a `v1 List`: the pod, then the PVCs that would be created.
    #[arg(long)]
    pvc: bool,
    /// Print the profiles this user may choose from, and exit.
    #[arg(long)]
    list_profiles: bool,
    /// Print the merged values (YAML), and exit.
    #[arg(long)]
    print_merged: bool,
    /// Write the JSON here instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// The flags of `render k8s`.
#[derive(Args)]
pub struct K8sArgs {
    #[command(flatten)]
    values: ValuesArgs,
    /// The namespace the hub runs in.
    #[arg(long)]
    namespace: String,
    /// A file with the seed that the secrets the values do not give are derived from (at least
    /// 16 bytes; `openssl rand -hex 32 > FILE`, once, and keep it).
    #[arg(long, value_name = "FILE", env = "HUBFLEET_SECRET_SEED_FILE")]
    secret_seed_file: Option<PathBuf>,
    /// Write the YAML here instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// On a Dask hub (`dask-gateway.enabled`): write the values of the upstream `dask-gateway`
    /// chart here (default: printed on stderr with the `helm` command).
    #[arg(long, value_name = "FILE")]
    dask_gateway_values: Option<PathBuf>,
    /// With `binderhub-service.enabled`: write the values of the upstream `binderhub-service`
    /// chart here.
    #[arg(long, value_name = "FILE")]
    binderhub_values: Option<PathBuf>,
}

/// Run `render …`; errors exit 2, as the reference tool's do.
pub fn run(what: RenderWhat, matches: Option<&ArgMatches>) -> ExitCode {
    let result = match what {
        RenderWhat::Pod(args) => {
            let pod_matches = matches
                .and_then(|m| m.subcommand_matches("render"))
                .and_then(|m| m.subcommand_matches("pod"));
            render_pod(&args, pod_matches)
        }
        RenderWhat::K8s(args) => {
            let k8s_matches = matches
                .and_then(|m| m.subcommand_matches("render"))
                .and_then(|m| m.subcommand_matches("k8s"));
            render_k8s(&args, k8s_matches)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `--values` and `--unwrap` in command-line order.
fn ordered_inputs(args: &ValuesArgs, matches: Option<&ArgMatches>) -> Vec<ValuesInput> {
    let indexed = |id: &str| -> Vec<usize> {
        matches
            .and_then(|m| m.indices_of(id))
            .map(|i| i.collect())
            .unwrap_or_default()
    };
    let mut inputs: Vec<(usize, ValuesInput)> = Vec::new();
    let file_idx = indexed("values");
    for (n, path) in args.values.iter().enumerate() {
        inputs.push((
            file_idx.get(n).copied().unwrap_or(usize::MAX / 2 + n),
            ValuesInput::File(path.clone()),
        ));
    }
    let unwrap_idx = indexed("unwrap");
    for (n, key) in args.unwrap.iter().enumerate() {
        inputs.push((
            unwrap_idx.get(n).copied().unwrap_or(n),
            ValuesInput::Unwrap(key.clone()),
        ));
    }
    inputs.sort_by_key(|(i, _)| *i);
    inputs.into_iter().map(|(_, i)| i).collect()
}

/// Where the chart defaults are: --chart-values, --z2jh-dir, else the copy in the shared
/// reference material.
fn chart_values_path(args: &ValuesArgs) -> Result<PathBuf> {
    if let Some(path) = &args.chart_values {
        return Ok(path.clone());
    }
    if let Some(dir) = &args.z2jh_dir {
        return Ok(dir.join("jupyterhub/values.yaml"));
    }
    default_chart_values()
}

/// z2jh's chart defaults in the shared reference material ($HUBFLEET_SHARED_DIR).
pub(crate) fn default_chart_values() -> Result<PathBuf> {
    let shared = std::env::var_os("HUBFLEET_SHARED_DIR").map(PathBuf::from);
    let Some(shared) = shared else {
        bail!("no chart defaults: pass --chart-values FILE (z2jh's jupyterhub/values.yaml), or set HUBFLEET_SHARED_DIR to the shared reference material that holds fixtures/zero-to-jupyterhub");
    };
    let path = shared.join("fixtures/zero-to-jupyterhub/jupyterhub/values.yaml");
    if !path.is_file() {
        bail!(
            "no chart defaults at {} (from HUBFLEET_SHARED_DIR): put z2jh's chart there, or pass --chart-values FILE",
            path.display()
        );
    }
    Ok(path)
}

/// `Chart.yaml` beside the chart's values: (name, version, appVersion).
pub(crate) fn chart_facts(chart_values: &Path) -> Result<(String, String, String)> {
    let chart_yaml = chart_values.with_file_name("Chart.yaml");
    let text = match std::fs::read_to_string(&chart_yaml) {
        Ok(t) => t,
        Err(_) => return Ok(("jupyterhub".into(), String::new(), String::new())),
    };
    let doc = values::parse_yaml(&chart_yaml.display().to_string(), &text)?;
    let field = |k: &str| match doc.get(k) {
        Some(serde_yaml_ng::Value::String(s)) => s.clone(),
        Some(serde_yaml_ng::Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let name = Some(field("name"))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "jupyterhub".into());
    Ok((name, field("version"), field("appVersion")))
}

fn is_version(rev: &str) -> bool {
    let mut parts = rev.splitn(3, '.');
    parts
        .next()
        .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        && parts
            .next()
            .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        && parts
            .next()
            .is_some_and(|p| p.starts_with(|c: char| c.is_ascii_digit()))
}

/// The merged values (skipped files noted on stderr) and the release they are for.
fn load_values(
    args: &ValuesArgs,
    matches: Option<&ArgMatches>,
    namespace: Option<&str>,
) -> Result<(values::Values, HelmRelease)> {
    let chart_values = chart_values_path(args)?;
    let inputs = ordered_inputs(args, matches);
    let loaded = values::load_chart_values(&chart_values, &inputs)?;
    for skipped in &loaded.skipped {
        eprintln!(
            "note: skipped {}: {}",
            skipped.path.display(),
            skipped.reason
        );
    }
    let (chart_name, chart_version, app_version) = chart_facts(&chart_values)?;
    let chart_version = args
        .chart_version
        .clone()
        .or_else(|| args.z2jh_rev.clone().filter(|r| is_version(r)))
        .unwrap_or(chart_version);
    let release = HelmRelease {
        chart_name,
        chart_version,
        app_version,
        release_name: args.release_name.clone(),
        namespace: namespace
            .map(str::to_owned)
            .unwrap_or_else(|| args.release_name.clone()),
    };
    Ok((loaded.values, release))
}

fn render_pod(args: &PodArgs, matches: Option<&ArgMatches>) -> Result<()> {
    let (merged, release) = load_values(&args.values, matches, args.namespace.as_deref())?;
    if args.print_merged {
        let text = serde_yaml_ng::to_string(merged.as_value())?;
        return emit(&text, args.out.as_deref());
    }
    let values = hubfleet_kube::with_release(&merged, &release);
    let user = UserFacts {
        name: args.user.clone().context("--user is required")?,
        id: args.user_id,
        admin: args.admin,
        groups: args.groups.clone(),
    };
    if args.list_profiles {
        let profiles = hubfleet_kube::profiles_for(&values, &user)?;
        return emit(
            &format!("{}\n", serde_json::to_string_pretty(&profiles)?),
            args.out.as_deref(),
        );
    }
    let mut options = match &args.user_options_json {
        Some(text) => {
            let json: serde_json::Value = serde_json::from_str(text)
                .context("--user-options-json: not JSON; give an object like '{\"image\": \"repo/img:tag\"}'")?;
            UserOptions::from_json(&json)?
        }
        None => UserOptions::default(),
    };
    if let Some(profile) = &args.profile {
        options.set("profile", profile);
    }
    for option in &args.options {
        let Some((key, value)) = option.split_once('=') else {
            bail!("--option {option:?}: expected KEY=VALUE, e.g. --option image=pangeo");
        };
        options.set(key, value);
    }
    let server = ServerFacts {
        name: args.server_name.clone(),
    };
    let env = hubfleet_kube::hub_env(
        &values,
        &user,
        &server,
        hubfleet_kube::API_TOKEN_PLACEHOLDER,
    )?;
    let rendered = hubfleet_kube::render(&values, &user, &server, &options, &env)?;
    for note in &rendered.notes {
        eprintln!("note: {note}");
    }
    let pod = serde_json::to_value(&rendered.pod)?;
    let doc = if args.pvc {
        let mut items = vec![pod];
        for pvc in &rendered.pvcs {
            items.push(serde_json::to_value(pvc)?);
        }
        serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items })
    } else {
        pod
    };
    emit(
        &format!("{}\n", serde_json::to_string_pretty(&doc)?),
        args.out.as_deref(),
    )
}

fn render_k8s(args: &K8sArgs, matches: Option<&ArgMatches>) -> Result<()> {
    let (merged, release) = load_values(&args.values, matches, Some(&args.namespace))?;
    let (merged, dask) =
        crate::render_dask::prepare(merged, &release.release_name, &args.namespace)?;
    if let Some(chart) = &dask {
        let text = serde_yaml_ng::to_string(&chart.values)?;
        let file = match &args.dask_gateway_values {
            Some(path) => {
                std::fs::write(path, &text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                path.display().to_string()
            }
            None => "dask-gateway.values.yaml".to_owned(),
        };
        eprintln!(
            "note: dask-gateway: not rendered here; install the upstream chart (docs/kubernetes.md, \"Dask hub\"):\n  {}",
            crate::render_dask::helm_command(chart, &args.namespace, &file)
        );
        if args.dask_gateway_values.is_none() {
            eprintln!(
                "note: with these values in {file} (or give --dask-gateway-values FILE):\n{text}"
            );
        }
    }
    let secret_seed = match &args.secret_seed_file {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| {
                format!("--secret-seed-file {}: cannot read it", path.display())
            })?;
            Some(SecretSeed::new(&bytes, &path.display().to_string())?)
        }
        None => None,
    };
    let options = ManifestOptions {
        release,
        secret_seed,
        default_image: hubfleet_kube::manifests::default_image(),
    };
    let manifests = hubfleet_kube::manifests::hub_manifests(&merged, &options)?;
    for note in &manifests.notes {
        eprintln!("note: {note}");
    }
    for problem in hub_config_problems(&manifests.hub_values, &manifests.hub_overlay)? {
        eprintln!("note: the hub will refuse its config: {problem}");
    }
    if let Some((notes, upstream)) = crate::binder_settings::kubernetes_binder(merged.as_value()) {
        for note in notes {
            eprintln!("note: {note}");
        }
        if let Some(path) = &args.binderhub_values {
            let text = serde_yaml_ng::to_string(&upstream)?;
            emit(&text, Some(path))?;
            eprintln!(
                "note: wrote the binderhub-service chart's values to {}",
                path.display()
            );
        }
    }
    emit(&manifests.to_yaml()?, args.out.as_deref())
}

/// The manifests of `render k8s` for one hub of a fleet: `z2jh` (the hub's values under
/// basehub's `jupyterhub:`) over z2jh's chart defaults (from $HUBFLEET_SHARED_DIR), release and
/// namespace `name` (as 2i2c's deployer installs each hub), Chart.Version `chart_version` (the
/// z2jh version basehub depends on) when given. Secrets the values do not give are derived from
/// `seed`. Also what the hub would refuse in its config.
pub fn fleet_hub_manifests(
    z2jh: serde_yaml_ng::Value,
    name: &str,
    chart_version: Option<String>,
    seed: SecretSeed,
) -> Result<(hubfleet_kube::manifests::HubManifests, Vec<String>)> {
    let chart_values = default_chart_values()?;
    let defaults = values::parse_yaml(
        &chart_values.display().to_string(),
        &std::fs::read_to_string(&chart_values)
            .with_context(|| format!("cannot read {}", chart_values.display()))?,
    )?;
    let mut merged = values::coalesce(z2jh, &defaults);
    values::drop_top_level_nulls(&mut merged);
    let (chart_name, version, app_version) = chart_facts(&chart_values)?;
    let release = HelmRelease {
        chart_name,
        chart_version: chart_version.unwrap_or(version),
        app_version,
        release_name: name.to_owned(),
        namespace: name.to_owned(),
    };
    let options = ManifestOptions {
        release,
        secret_seed: Some(seed),
        default_image: hubfleet_kube::manifests::default_image(),
    };
    let manifests =
        hubfleet_kube::manifests::hub_manifests(&values::Values::new(merged), &options)?;
    let problems = hub_config_problems(&manifests.hub_values, &manifests.hub_overlay)?;
    Ok((manifests, problems))
}

/// What `hubfleet check` would say is wrong with the config the hub's pod reads (values a z2jh
/// hub runs, which hubfleet does not all support yet): errors only, warnings are many.
fn hub_config_problems(
    hub_values: &serde_yaml_ng::Value,
    overlay: &serde_yaml_ng::Value,
) -> Result<Vec<String>> {
    let text = |doc: &serde_yaml_ng::Value| -> Result<String> {
        Ok(hubfleet_kube::manifests::yaml::to_yaml(
            &serde_json::to_value(doc)?,
        ))
    };
    let report = HubConfig::check(vec![
        ConfigSource::text(VALUES_FILE, &text(hub_values)?),
        ConfigSource::text(OVERLAY_FILE, &text(overlay)?),
    ]);
    Ok(report.errors.iter().map(|e| e.to_string()).collect())
}

/// `text` to the file `out`, or to standard output.
pub(crate) fn emit(text: &str, out: Option<&Path>) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_tags() {
        assert!(is_version("4.3.3"));
        assert!(is_version("4.0.0-beta.1"));
        assert!(!is_version("HEAD"));
        assert!(!is_version("4.3"));
    }
}
