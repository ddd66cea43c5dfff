//! The fleet's local target (`provider: local`): each hub a `hubfleet serve` run by a detached
//! supervisor (`fleet supervise`, which starts it again when it dies), on a loopback port,
//! behind one shared front proxy (`hubfleet proxy --host-routing`) that routes by the hub's
//! domain. See docs/fleet.md, "The local target".
//!
//! The fleet data directory:
//!
//! ```text
//! proxy/proxy.json                  the front proxy: ports, pid, start time
//! proxy/token                       its REST API token (0600)
//! hubs/<cluster>/<hub>/hub.yaml     the hub's effective config (what `plan` diffs)
//! hubs/<cluster>/<hub>/secret.yaml  the `hub-health` service's token (0600)
//! hubs/<cluster>/<hub>/data/        the hub's data_dir (database, homes)
//! hubs/<cluster>/<hub>/hub.log      its log (and its supervisor's)
//! hubs/<cluster>/<hub>/supervisor.json  the supervisor: the hub's pid, restarts, last exit
//! deployed/<cluster>/<hub>.json     what runs: revision, config, port, pid, version
//! health/<cluster>/<hub>.json       the last health check
//! removed/<cluster>/<hub>-<time>/   a removed hub's directory, kept
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hubfleet_fleet::{Cluster, HubEntry, Keyring, Kind, Repo};
use serde::{Deserialize, Serialize};
use serde_yaml_ng::{Mapping, Value};

/// The service the fleet talks to each hub as (basehub's own, with `admin: true`).
pub const SERVICE: &str = "hub-health";
/// The user the health check starts a server for (as 2i2c's deployer).
pub const CHECK_USER: &str = "deployment-service-check";

/// The fleet data directory.
#[derive(Debug, Clone)]
pub struct FleetDir(pub PathBuf);

impl FleetDir {
    pub fn hub_dir(&self, cluster: &str, hub: &str) -> PathBuf {
        self.0.join("hubs").join(cluster).join(hub)
    }
    fn deployed_file(&self, cluster: &str, hub: &str) -> PathBuf {
        self.0
            .join("deployed")
            .join(cluster)
            .join(format!("{hub}.json"))
    }
    fn health_file(&self, cluster: &str, hub: &str) -> PathBuf {
        self.0
            .join("health")
            .join(cluster)
            .join(format!("{hub}.json"))
    }
    fn proxy_dir(&self) -> PathBuf {
        self.0.join("proxy")
    }

    /// What is deployed: (cluster, hub) → state, for the clusters in `only` (all when empty).
    pub fn deployed(&self, only: &[String]) -> Result<BTreeMap<(String, String), Deployed>> {
        let mut out = BTreeMap::new();
        let root = self.0.join("deployed");
        let Ok(clusters) = std::fs::read_dir(&root) else {
            return Ok(out);
        };
        for c in clusters.filter_map(Result::ok) {
            let cluster = c.file_name().to_string_lossy().into_owned();
            if !only.is_empty() && !only.contains(&cluster) {
                continue;
            }
            for f in std::fs::read_dir(c.path())?.filter_map(Result::ok) {
                let path = f.path();
                if path.extension().and_then(|e| e.to_str()) != Some("json") {
                    continue;
                }
                let text = std::fs::read_to_string(&path)?;
                let state: Deployed = serde_json::from_str(&text)
                    .with_context(|| format!("{}: not a deployed hub's state", path.display()))?;
                out.insert((cluster.clone(), state.hub.clone()), state);
            }
        }
        Ok(out)
    }

    pub fn health(&self, cluster: &str, hub: &str) -> Option<HealthRecord> {
        let text = std::fs::read_to_string(self.health_file(cluster, hub)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The service token of a deployed hub.
    pub fn token(&self, cluster: &str, hub: &str) -> Result<String> {
        let path = self.hub_dir(cluster, hub).join("secret.yaml");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {} (the hub's service token): is {cluster}/{hub} deployed? (`hubfleet fleet deploy`)",
                path.display()
            )
        })?;
        let doc: Value = serde_yaml_ng::from_str(&text)?;
        doc.get("hub")
            .and_then(|h| h.get("services"))
            .and_then(|s| s.get(SERVICE))
            .and_then(|s| s.get("apiToken"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("{}: no hub.services.{SERVICE}.apiToken", path.display()))
    }

    pub fn proxy(&self) -> Option<ProxyState> {
        let text = std::fs::read_to_string(self.proxy_dir().join("proxy.json")).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// `deployed/<cluster>/<hub>.json`: what the running process was started with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployed {
    pub cluster: String,
    pub hub: String,
    pub domain: String,
    pub staging: bool,
    /// The first 12 hex digits of the SHA-256 of `config`.
    pub revision: String,
    /// The effective config (hub.yaml) it was started with.
    pub config: String,
    /// The hubfleet version that started it.
    pub version: String,
    pub port: u16,
    /// The hub's supervisor (`hubfleet fleet supervise`, which runs its `hubfleet serve`).
    pub pid: i32,
    /// The process's start time (field 22 of /proc/<pid>/stat), so a reused pid is not taken
    /// for the hub.
    pub start_time: u64,
    pub deployed_at: String,
}

impl Deployed {
    pub fn alive(&self) -> bool {
        process_start(self.pid) == Some(self.start_time)
    }
}

/// `proxy/proxy.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProxyState {
    pub ip: String,
    pub port: u16,
    pub api_port: u16,
    pub pid: i32,
    pub start_time: u64,
}

/// `health/<cluster>/<hub>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealthRecord {
    pub ok: bool,
    pub at: String,
    pub revision: String,
    pub steps: Vec<(String, f64)>,
    pub error: Option<String>,
}

/// The start time of a live (not zombie) process.
pub fn process_start(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

/// Stop a hub's process (its supervisor, which stops its `hubfleet serve`), and its `hubfleet
/// serve` by its own pid if it is left (a supervisor that was killed); true when both are gone.
fn stop_hub_process(hub_dir: &Path, pid: i32, start_time: u64) -> bool {
    let stopped = stop_process(pid, start_time);
    match crate::fleet_supervise::SupervisorState::read(hub_dir) {
        Some(s) if s.serve_alive() => stop_process(s.serve_pid, s.serve_start_time) && stopped,
        _ => stopped,
    }
}

/// SIGTERM, then SIGKILL after 15 s; true when the process is gone.
fn stop_process(pid: i32, start_time: u64) -> bool {
    if process_start(pid) != Some(start_time) {
        return true;
    }
    signal(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if process_start(pid) != Some(start_time) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(pid, nix::sys::signal::Signal::SIGKILL);
    std::thread::sleep(Duration::from_millis(200));
    process_start(pid) != Some(start_time)
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn revision(config: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(config.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// What the repository says a local hub should run.
#[derive(Debug)]
pub struct Desired {
    pub cluster: String,
    pub hub: String,
    pub domain: String,
    pub staging: bool,
    /// The effective config (hub.yaml), without the service token.
    pub config: String,
    pub revision: String,
    /// The loopback port it listens on.
    pub port: u16,
    /// Keys left out of the config, with the reason.
    pub notes: Vec<String>,
}

fn remove_path(doc: &mut Value, path: &[&str]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = doc;
    for p in parents {
        match node.get_mut(*p) {
            Some(n) => node = n,
            None => return false,
        }
    }
    node.as_mapping_mut()
        .and_then(|m| m.shift_remove(*last))
        .is_some()
}

fn yaml_map(pairs: Vec<(&str, Value)>) -> Value {
    let mut m = Mapping::new();
    for (k, v) in pairs {
        m.insert(Value::from(k), v);
    }
    Value::Mapping(m)
}

/// The config a local hub runs with: its z2jh values (basehub's `jupyterhub:`) without what the
/// local hub cannot run, the enabled sections beside it that a local hub runs itself
/// (`binderhub-service:`), the `hubfleet:` overlay (listen, data_dir, public_url) and the
/// `hub-health` service.
pub fn desired(
    repo: &Repo,
    cluster: &Cluster,
    entry: &HubEntry,
    keys: &Keyring,
    dir: &FleetDir,
    port: u16,
    public_port: u16,
) -> Result<Desired> {
    let values = hubfleet_fleet::hub::load(repo, cluster, entry, keys);
    let what = format!("{}/{}", cluster.name, entry.name);
    let errors: Vec<String> = values
        .findings
        .iter()
        .filter(|f| matches!(f.kind, Kind::Error | Kind::Encrypted))
        .map(|f| f.to_string())
        .collect();
    if !errors.is_empty() {
        let encrypted = values.findings.iter().any(|f| f.kind == Kind::Encrypted);
        bail!(
            "{what} cannot be deployed: its values have problems{}:\n  {}\n`hubfleet fleet validate` lists them all",
            if encrypted {
                " (an encrypted file is decrypted with its age key from SOPS_AGE_KEY_FILE or SOPS_AGE_KEY)"
            } else {
                ""
            },
            errors.join("\n  ")
        );
    }
    let jh_key = entry.jupyterhub_key();
    let jh_path: Vec<&str> = jh_key.split('.').collect();
    let mut z2jh = values.merged.clone();
    for p in &jh_path {
        z2jh = z2jh.get(*p).cloned().unwrap_or(Value::Null);
    }
    if z2jh.is_null() {
        z2jh = Value::Mapping(Mapping::new());
    }
    let mut notes = Vec::new();
    for f in &values.findings {
        if !matches!(f.kind, Kind::Unsupported | Kind::KubernetesAddOn) {
            continue;
        }
        let Some(key) = &f.key else { continue };
        match key.strip_prefix(&format!("{jh_key}.")) {
            Some(inner) => {
                let segs: Vec<&str> = inner.split('.').collect();
                if remove_path(&mut z2jh, &segs) {
                    notes.push(format!("left out `{key}`: {}", f.message));
                }
            }
            None => notes.push(format!(
                "not run on the local target: `{key}`: {}",
                f.message
            )),
        }
    }
    // basehub's sections beside `jupyterhub:` (for daskhub: under `basehub:` too).
    let chart_values = jh_path[..jh_path.len() - 1]
        .iter()
        .try_fold(&values.merged, |node, p| node.get(*p));
    for section in hubfleet_fleet::hub::LOCAL_SECTIONS {
        let Some(found) = chart_values.and_then(|v| v.get(*section)) else {
            continue;
        };
        if found.get("enabled").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let mut found = found.clone();
        let parent = &jh_path[..jh_path.len() - 1];
        for (of, entries_path) in hubfleet_fleet::hub::CHART_ONLY_LEFT_OUT {
            if of != section {
                continue;
            }
            let mut full: Vec<&str> = parent.to_vec();
            full.push(section);
            full.extend_from_slice(entries_path);
            for name in chart_only_entries(&values.layers, &found, entries_path, &full) {
                let mut segs: Vec<&str> = entries_path.to_vec();
                segs.push(&name);
                if remove_path(&mut found, &segs) {
                    notes.push(format!(
                        "left out `{}.{name}`: the chart's own, for Kubernetes; set it in the hub's files to run it here",
                        full.join(".")
                    ));
                }
            }
        }
        if let Some(map) = z2jh.as_mapping_mut() {
            map.insert(Value::from(*section), found);
        }
    }
    let hub_dir = dir.hub_dir(&cluster.name, &entry.name);
    let public_url = if public_port == 80 {
        format!("http://{}", entry.domain)
    } else {
        format!("http://{}:{public_port}", entry.domain)
    };
    let overlay = yaml_map(vec![
        (
            "hub",
            yaml_map(vec![(
                "services",
                yaml_map(vec![(
                    SERVICE,
                    yaml_map(vec![("admin", Value::Bool(true))]),
                )]),
            )]),
        ),
        (
            "hubfleet",
            yaml_map(vec![
                ("listen", Value::from(format!("127.0.0.1:{port}"))),
                (
                    "data_dir",
                    Value::from(hub_dir.join("data").display().to_string()),
                ),
                ("public_url", Value::from(public_url)),
            ]),
        ),
    ]);
    hubfleet_config::values::merge_files(&mut z2jh, overlay);
    // basehub's own keys under `custom:` that the hub does not read: left out, with a note.
    for _ in 0..20 {
        let text = serde_yaml_ng::to_string(&z2jh)?;
        let report = hubfleet_config::HubConfig::check(vec![hubfleet_config::ConfigSource::text(
            "hub.yaml", &text,
        )]);
        let mut dropped = false;
        let mut remaining = Vec::new();
        for e in &report.errors {
            let key = match e {
                hubfleet_config::ConfigError::Invalid { key: Some(k), .. } => Some(k.clone()),
                _ => None,
            };
            match key {
                Some(k) if k.starts_with("custom.") => {
                    let segs: Vec<&str> = k.split('.').collect();
                    if remove_path(&mut z2jh, &segs) {
                        notes.push(format!(
                            "left out `{jh_key}.{k}`: basehub's setting, not read by hubfleet's hub"
                        ));
                        dropped = true;
                    }
                }
                _ => remaining.push(e.to_string()),
            }
        }
        if !remaining.is_empty() {
            bail!(
                "{what}: the hub's config would not load:\n  {}",
                remaining.join("\n  ")
            );
        }
        if !dropped {
            break;
        }
    }
    let body = serde_yaml_ng::to_string(&z2jh)?;
    let config = format!(
        "# {what} ({}): written by `hubfleet fleet deploy`; edit the repository, not this file\n{body}",
        entry.domain
    );
    Ok(Desired {
        cluster: cluster.name.clone(),
        hub: entry.name.clone(),
        domain: entry.domain.clone(),
        staging: entry.is_staging(),
        revision: revision(&config),
        config,
        port,
        notes,
    })
}

/// Names of the map at `entries_path` in `section` that no file of the cluster's sets (only
/// the chart's layers do); `full` is that map's path in the layered values.
fn chart_only_entries(
    layers: &[hubfleet_fleet::hub::Layer],
    section: &Value,
    entries_path: &[&str],
    full: &[&str],
) -> Vec<String> {
    let Some(entries) = entries_path
        .iter()
        .try_fold(section, |node, p| node.get(*p))
        .and_then(Value::as_mapping)
    else {
        return Vec::new();
    };
    let set_by_cluster = |name: &str| {
        layers
            .iter()
            .filter(|l| !hubfleet_fleet::hub::is_chart_layer(l))
            .any(|l| {
                let Some(rest) = full.strip_prefix(
                    l.prefix
                        .iter()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .as_slice(),
                ) else {
                    return false;
                };
                rest.iter()
                    .try_fold(&l.doc, |node, p| node.get(*p))
                    .is_some_and(|m| m.get(name).is_some())
            })
    };
    entries
        .keys()
        .filter_map(Value::as_str)
        .filter(|name| !set_by_cluster(name))
        .map(str::to_owned)
        .collect()
}

/// What to do with one hub.
#[derive(Debug)]
pub enum Action {
    Add(Desired),
    /// Its config differs (or its process is not running).
    Change {
        desired: Desired,
        deployed: Deployed,
    },
    Unchanged(Deployed),
    Remove(Deployed),
}

impl Action {
    pub fn key(&self) -> (String, String) {
        match self {
            Action::Add(d) | Action::Change { desired: d, .. } => {
                (d.cluster.clone(), d.hub.clone())
            }
            Action::Unchanged(s) | Action::Remove(s) => (s.cluster.clone(), s.hub.clone()),
        }
    }
    pub fn staging(&self) -> bool {
        match self {
            Action::Add(d) | Action::Change { desired: d, .. } => d.staging,
            Action::Unchanged(s) | Action::Remove(s) => s.staging,
        }
    }
}

/// The plan of the clusters (all, or `only`) whose provider is local; other clusters are named
/// in the second list.
pub struct Plan {
    pub actions: Vec<Action>,
    pub skipped: Vec<String>,
}

/// A free loopback port.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub fn plan(
    repo: &Repo,
    dir: &FleetDir,
    only: &[String],
    hub: Option<&str>,
    public_port: u16,
) -> Result<Plan> {
    let keys = Keyring::from_env();
    let names = repo.cluster_names()?;
    for c in only {
        if !names.contains(c) && !dir.0.join("deployed").join(c).is_dir() {
            bail!(
                "no cluster `{c}` in {} (clusters: {})",
                repo.root.join("config/clusters").display(),
                names.join(", ")
            );
        }
    }
    let mut deployed = dir.deployed(only)?;
    let mut actions = Vec::new();
    let mut skipped = Vec::new();
    let mut taken: Vec<u16> = deployed.values().map(|d| d.port).collect();
    for name in &names {
        if !only.is_empty() && !only.contains(name) {
            continue;
        }
        let (cluster, findings) = repo.cluster(name)?;
        if let Some(f) = findings.iter().find(|f| f.kind == Kind::Error) {
            bail!("{f}\n`hubfleet fleet validate` lists every problem");
        }
        if cluster.target() != hubfleet_fleet::Target::Local {
            if only.contains(name) {
                bail!(
                    "cluster {name} has provider `{}`: its target is Kubernetes, which `fleet plan`/`deploy` do not drive yet; only `provider: local` clusters deploy",
                    cluster.provider
                );
            }
            skipped.push(format!("{name} (provider {})", cluster.provider));
            continue;
        }
        if let Some(h) = hub {
            cluster.hub(h)?;
        }
        for entry in &cluster.hubs {
            if hub.is_some_and(|h| h != entry.name) {
                continue;
            }
            let state = deployed.remove(&(name.clone(), entry.name.clone()));
            let port = match &state {
                Some(s) => s.port,
                None => loop {
                    let p = free_port()?;
                    if !taken.contains(&p) {
                        taken.push(p);
                        break p;
                    }
                },
            };
            let want = desired(repo, &cluster, entry, &keys, dir, port, public_port)?;
            actions.push(match state {
                None => Action::Add(want),
                Some(s) if s.revision == want.revision && s.alive() => Action::Unchanged(s),
                Some(s) => Action::Change {
                    desired: want,
                    deployed: s,
                },
            });
        }
    }
    // What is deployed and no longer in the repository.
    if hub.is_none() {
        for (_, s) in deployed {
            actions.push(Action::Remove(s));
        }
    }
    actions.sort_by_key(|a| (a.key().0, !a.staging(), a.key().1));
    Ok(Plan { actions, skipped })
}

pub fn diff(old: &str, new: &str, what: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("deployed {what}"), &format!("repository {what}"))
        .to_string()
}

/// Print a plan; returns the number of hubs that would change.
pub fn print_plan(plan: &Plan, dir: &FleetDir) -> usize {
    let mut counts = [0usize; 4];
    for a in &plan.actions {
        let (c, h) = a.key();
        let kind = if a.staging() { "staging" } else { "production" };
        match a {
            Action::Add(d) => {
                counts[0] += 1;
                println!(
                    "{c}/{h}: add ({kind}, {}, revision {})",
                    d.domain, d.revision
                );
                for n in &d.notes {
                    println!("  note: {n}");
                }
            }
            Action::Change { desired, deployed } => {
                counts[1] += 1;
                if desired.revision == deployed.revision {
                    println!(
                        "{c}/{h}: change ({kind}): not running (pid {} is gone); start it again at revision {}",
                        deployed.pid, deployed.revision
                    );
                } else {
                    println!(
                        "{c}/{h}: change ({kind}): revision {} → {}",
                        deployed.revision, desired.revision
                    );
                    print!(
                        "{}",
                        diff(&deployed.config, &desired.config, &format!("{c}/{h}"))
                    );
                }
                for n in &desired.notes {
                    println!("  note: {n}");
                }
            }
            Action::Remove(_) => {
                counts[2] += 1;
                println!(
                    "{c}/{h}: remove (no longer in the repository): stop it, keep its data under {}",
                    dir.0.join("removed").join(&c).display()
                );
            }
            Action::Unchanged(s) => {
                counts[3] += 1;
                println!("{c}/{h}: unchanged (revision {})", s.revision);
            }
        }
    }
    for s in &plan.skipped {
        println!("skipped: cluster {s}: the Kubernetes target is not driven by `fleet plan` yet");
    }
    println!(
        "plan: {} to add, {} to change, {} to remove, {} unchanged",
        counts[0], counts[1], counts[2], counts[3]
    );
    counts[0] + counts[1] + counts[2]
}

/// Start the front proxy unless it runs; its state.
pub fn ensure_proxy(dir: &FleetDir, ip: &str, port: u16) -> Result<ProxyState> {
    if let Some(p) = dir.proxy() {
        if process_start(p.pid) == Some(p.start_time) {
            if p.port != port {
                eprintln!(
                    "note: the front proxy already runs on port {} (pid {}); --proxy-port {port} is taken at its next start (`hubfleet fleet stop` stops it)",
                    p.port, p.pid
                );
            }
            return Ok(p);
        }
    }
    let pdir = dir.proxy_dir();
    std::fs::create_dir_all(&pdir)?;
    let token_file = pdir.join("token");
    let api_token = match std::fs::read_to_string(&token_file) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
        _ => {
            let t = token();
            write_private(&token_file, &t)?;
            t
        }
    };
    let api_port = free_port()?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(pdir.join("proxy.log"))?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["proxy", "--host-routing", "--ip", ip, "--port"])
        .arg(port.to_string())
        .args(["--api-ip", "127.0.0.1", "--api-port"])
        .arg(api_port.to_string())
        .env("CONFIGPROXY_AUTH_TOKEN", &api_token)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("cannot start the front proxy (`hubfleet proxy`)")?;
    let pid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "the front proxy exited ({status}) at start; is port {port} taken? its log: {}",
                pdir.join("proxy.log").display()
            );
        }
        if std::net::TcpStream::connect(("127.0.0.1", api_port)).is_ok() {
            break;
        }
        if Instant::now() > deadline {
            bail!("the front proxy did not listen within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let state = ProxyState {
        ip: ip.to_owned(),
        port,
        api_port,
        pid,
        start_time: process_start(pid).unwrap_or_default(),
    };
    write_file(
        &pdir.join("proxy.json"),
        &serde_json::to_string_pretty(&state)?,
    )?;
    Ok(state)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

/// Add (or replace) the front proxy's route for a hub's domain.
pub async fn route(
    dir: &FleetDir,
    proxy: &ProxyState,
    domain: &str,
    port: Option<u16>,
) -> Result<()> {
    let token = std::fs::read_to_string(dir.proxy_dir().join("token"))?;
    let url = format!(
        "http://127.0.0.1:{}/api/routes/{}",
        proxy.api_port,
        domain.to_ascii_lowercase()
    );
    let req = match port {
        Some(p) => http()
            .post(&url)
            .json(&serde_json::json!({ "target": format!("http://127.0.0.1:{p}") })),
        None => http().delete(&url),
    };
    let resp = req
        .header("Authorization", format!("token {}", token.trim()))
        .send()
        .await
        .context("cannot reach the front proxy's API")?;
    if !resp.status().is_success() && resp.status() != reqwest::StatusCode::NOT_FOUND {
        bail!(
            "the front proxy refused the route for {domain}: {}",
            resp.status()
        );
    }
    Ok(())
}

pub fn hub_health_ok(port: u16) -> bool {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /hub/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The command line that runs a hub: `hubfleet serve` with the two files in its directory.
pub fn serve_command(exe: &str, hub_dir: &Path) -> Vec<String> {
    vec![
        exe.to_owned(),
        "serve".into(),
        "--config".into(),
        hub_dir.join("hub.yaml").display().to_string(),
        "--config".into(),
        hub_dir.join("secret.yaml").display().to_string(),
    ]
}

/// Write a hub's config and start it (stopping what runs with an older config); its state.
pub fn start_hub(dir: &FleetDir, want: &Desired, old: Option<&Deployed>) -> Result<Deployed> {
    let port = want.port;
    let what = format!("{}/{}", want.cluster, want.hub);
    if let Some(old) = old {
        let old_dir = dir.hub_dir(&old.cluster, &old.hub);
        if !stop_hub_process(&old_dir, old.pid, old.start_time) {
            bail!("{what}: the running hub (pid {}) did not stop", old.pid);
        }
    }
    let hub_dir = dir.hub_dir(&want.cluster, &want.hub);
    std::fs::create_dir_all(hub_dir.join("data"))
        .with_context(|| format!("cannot create {}", hub_dir.display()))?;
    let config = hub_dir.join("hub.yaml");
    write_file(&config, &want.config)?;
    let secret = hub_dir.join("secret.yaml");
    if dir.token(&want.cluster, &want.hub).is_err() {
        let doc = yaml_map(vec![(
            "hub",
            yaml_map(vec![(
                "services",
                yaml_map(vec![(
                    SERVICE,
                    yaml_map(vec![("apiToken", Value::from(token()))]),
                )]),
            )]),
        )]);
        write_private(&secret, &serde_yaml_ng::to_string(&doc)?)?;
    }
    let log_path = hub_dir.join("hub.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let _ = std::fs::remove_file(crate::fleet_supervise::SupervisorState::file(&hub_dir));
    let mut child = Command::new(std::env::current_exe()?)
        .args(["fleet", "supervise", "--hub-dir"])
        .arg(&hub_dir)
        .arg("--port")
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("{what}: cannot start `hubfleet fleet supervise`"))?;
    let pid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "{what}: the hub exited at start ({status}); the end of {}:\n{}",
                log_path.display(),
                log_tail(&log_path)
            );
        }
        if hub_health_ok(port) {
            break;
        }
        if Instant::now() > deadline {
            stop_hub_process(&hub_dir, pid, process_start(pid).unwrap_or_default());
            bail!(
                "{what}: the hub did not answer /hub/health within 60 s; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let state = Deployed {
        cluster: want.cluster.clone(),
        hub: want.hub.clone(),
        domain: want.domain.clone(),
        staging: want.staging,
        revision: want.revision.clone(),
        config: want.config.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        port,
        pid,
        start_time: process_start(pid).unwrap_or_default(),
        deployed_at: now(),
    };
    write_file(
        &dir.deployed_file(&want.cluster, &want.hub),
        &serde_json::to_string_pretty(&state)?,
    )?;
    Ok(state)
}

/// The hub's users, through its REST API on its own port.
pub async fn users(port: u16, token: &str) -> Result<Vec<serde_json::Value>> {
    let resp = http()
        .get(format!("http://127.0.0.1:{port}/hub/api/users"))
        .header("Authorization", format!("token {token}"))
        .send()
        .await?
        .error_for_status()?;
    Ok(resp.json().await?)
}

fn running_servers(user: &serde_json::Value) -> Vec<String> {
    user["servers"]
        .as_object()
        .map(|s| s.keys().cloned().collect())
        .unwrap_or_default()
}

/// Stop a hub: its users' servers (through its API), then its process.
pub async fn stop_hub(dir: &FleetDir, state: &Deployed) -> Result<()> {
    if state.alive() {
        if let Ok(token) = dir.token(&state.cluster, &state.hub) {
            if let Ok(list) = users(state.port, &token).await {
                for u in &list {
                    let name = u["name"].as_str().unwrap_or_default();
                    for server in running_servers(u) {
                        let path = if server.is_empty() {
                            format!("/hub/api/users/{name}/server")
                        } else {
                            format!("/hub/api/users/{name}/servers/{server}")
                        };
                        let _ = http()
                            .delete(format!("http://127.0.0.1:{}{path}", state.port))
                            .header("Authorization", format!("token {token}"))
                            .send()
                            .await;
                    }
                }
                // Until the servers are gone.
                let deadline = Instant::now() + Duration::from_secs(30);
                while Instant::now() < deadline {
                    match users(state.port, &token).await {
                        Ok(l) if l.iter().all(|u| running_servers(u).is_empty()) => break,
                        Err(_) => break,
                        _ => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            }
        }
    }
    let (pid, start) = (state.pid, state.start_time);
    let hub_dir = dir.hub_dir(&state.cluster, &state.hub);
    let stopped =
        tokio::task::spawn_blocking(move || stop_hub_process(&hub_dir, pid, start)).await?;
    if !stopped {
        bail!("{}/{}: pid {pid} did not stop", state.cluster, state.hub);
    }
    Ok(())
}

/// Remove a hub: stop it, drop its route, move its directory under `removed/`.
pub async fn remove_hub(dir: &FleetDir, state: &Deployed) -> Result<PathBuf> {
    stop_hub(dir, state).await?;
    if let Some(proxy) = dir
        .proxy()
        .filter(|p| process_start(p.pid) == Some(p.start_time))
    {
        let _ = route(dir, &proxy, &state.domain, None).await;
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let kept = dir
        .0
        .join("removed")
        .join(&state.cluster)
        .join(format!("{}-{stamp}", state.hub));
    std::fs::create_dir_all(kept.parent().unwrap_or(&dir.0))?;
    let hub_dir = dir.hub_dir(&state.cluster, &state.hub);
    if hub_dir.exists() {
        std::fs::rename(&hub_dir, &kept)
            .with_context(|| format!("cannot move {} to {}", hub_dir.display(), kept.display()))?;
    }
    write_file(
        &kept.join("deployed.json"),
        &serde_json::to_string_pretty(state)?,
    )?;
    let _ = std::fs::remove_file(dir.deployed_file(&state.cluster, &state.hub));
    let _ = std::fs::remove_file(dir.health_file(&state.cluster, &state.hub));
    Ok(kept)
}

/// The health check: as the `hub-health` service, through the front proxy (Host: the hub's
/// domain), create the user `deployment-service-check`, start its server, run `print(6*7)` in a
/// kernel over its WebSocket, check `42`, stop the server. Each step and its time.
pub async fn health(dir: &FleetDir, cluster: &str, hub: &str) -> HealthRecord {
    let mut steps: Vec<(String, f64)> = Vec::new();
    let result = health_steps(dir, cluster, hub, &mut steps).await;
    let revision = dir
        .deployed(&[cluster.to_owned()])
        .ok()
        .and_then(|d| {
            d.get(&(cluster.to_owned(), hub.to_owned()))
                .map(|s| s.revision.clone())
        })
        .unwrap_or_default();
    let record = HealthRecord {
        ok: result.is_ok(),
        at: now(),
        revision,
        steps,
        error: result.err().map(|e| format!("{e:#}")),
    };
    if let Ok(text) = serde_json::to_string_pretty(&record) {
        let _ = write_file(&dir.health_file(cluster, hub), &text);
    }
    record
}

/// A refused API call: its status and the first line of the hub's message.
async fn answer(r: reqwest::Response) -> String {
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or(body);
    format!("{status}: {}", message.lines().next().unwrap_or_default())
}

async fn timed<T>(
    steps: &mut Vec<(String, f64)>,
    name: &str,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let start = Instant::now();
    let out = fut.await.with_context(|| format!("step `{name}` failed"));
    steps.push((name.to_owned(), start.elapsed().as_secs_f64()));
    out
}

async fn health_steps(
    dir: &FleetDir,
    cluster: &str,
    hub: &str,
    steps: &mut Vec<(String, f64)>,
) -> Result<()> {
    let deployed = dir.deployed(&[cluster.to_owned()])?;
    let state = deployed
        .get(&(cluster.to_owned(), hub.to_owned()))
        .with_context(|| format!("{cluster}/{hub} is not deployed here ({})", dir.0.display()))?;
    if !state.alive() {
        bail!(
            "{cluster}/{hub}: its process (pid {}) is not running; `hubfleet fleet deploy --cluster {cluster} --hub {hub}` starts it",
            state.pid
        );
    }
    let proxy = dir
        .proxy()
        .filter(|p| process_start(p.pid) == Some(p.start_time))
        .context("the front proxy is not running; `hubfleet fleet deploy` starts it")?;
    let token = dir.token(cluster, hub)?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], proxy.port));
    // No redirects: a server that sends us to a login page has refused the token, and that
    // must show as such rather than as a page that is not JSON.
    let client = reqwest::Client::builder()
        .resolve(&state.domain, addr)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()?;
    let base = format!("http://{}:{}", state.domain, proxy.port);
    let auth = format!("token {token}");
    let user = CHECK_USER;
    let api = |method: reqwest::Method, path: &str| {
        client
            .request(method, format!("{base}{path}"))
            .header("Authorization", &auth)
    };
    let user_model = || async {
        let model: serde_json::Value = api(reqwest::Method::GET, &format!("/hub/api/users/{user}"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        anyhow::Ok(model)
    };
    timed(steps, "create user", async {
        let r = api(reqwest::Method::POST, &format!("/hub/api/users/{user}"))
            .send()
            .await?;
        if !(r.status().is_success() || r.status() == reqwest::StatusCode::CONFLICT) {
            bail!("POST /hub/api/users/{user}: {}", answer(r).await);
        }
        Ok(())
    })
    .await?;
    let server_url = timed(steps, "start server", async {
        let r = api(
            reqwest::Method::POST,
            &format!("/hub/api/users/{user}/server"),
        )
        .send()
        .await?;
        if !(r.status().is_success() || r.status() == reqwest::StatusCode::BAD_REQUEST) {
            bail!(
                "POST /hub/api/users/{user}/server: {}; the server's log: {}",
                answer(r).await,
                dir.hub_dir(cluster, hub)
                    .join("data/logs")
                    .join(format!("{user}.log"))
                    .display()
            );
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let model = user_model().await?;
            let server = &model["servers"][""];
            if server["ready"] == true {
                return Ok(server["url"].as_str().unwrap_or("/user/x/").to_owned());
            }
            if server.is_null() {
                bail!(
                    "the server stopped while starting; the hub's log: {}",
                    dir.hub_dir(cluster, hub).join("hub.log").display()
                );
            }
            if Instant::now() > deadline {
                bail!("the server was not ready within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await?;
    let result = run_code(
        &client,
        &base,
        &server_url,
        &auth,
        &proxy,
        &state.domain,
        steps,
    )
    .await;
    let stopped = timed(steps, "stop server", async {
        let r = api(
            reqwest::Method::DELETE,
            &format!("/hub/api/users/{user}/server"),
        )
        .send()
        .await?;
        if !r.status().is_success() && r.status() != reqwest::StatusCode::BAD_REQUEST {
            bail!("DELETE /hub/api/users/{user}/server: {}", r.status());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let model = user_model().await?;
            if model["servers"].get("").is_none() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the server did not stop within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    result?;
    stopped
}

/// How long the health check keeps asking a just-started server for a kernel.
const KERNEL_START_PATIENCE: Duration = Duration::from_secs(20);

async fn run_code(
    client: &reqwest::Client,
    base: &str,
    server_url: &str,
    auth: &str,
    proxy: &ProxyState,
    domain: &str,
    steps: &mut Vec<(String, f64)>,
) -> Result<()> {
    let prefix = server_url.trim_end_matches('/');
    let kernel_id = timed(steps, "start kernel", async {
        // A server that has just become ready may still be settling (its first token check
        // with the hub): ask again for a few seconds before calling it broken.
        let deadline = Instant::now() + KERNEL_START_PATIENCE;
        loop {
            let response = client
                .post(format!("{base}{prefix}/api/kernels"))
                .header("Authorization", auth)
                .json(&serde_json::json!({ "name": "python3" }))
                .send()
                .await?;
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            let kernel = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .filter(|_| status.is_success());
            if let Some(id) = kernel.as_ref().and_then(|k| k["id"].as_str()) {
                return Ok(id.to_owned());
            }
            if Instant::now() > deadline {
                let head: String = body.chars().take(300).collect();
                bail!("POST {prefix}/api/kernels answered {status}, not a kernel: {head}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await?;
    let out = timed(steps, "run print(6*7)", async {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::Message;
        let url = format!(
            "ws://{domain}:{}{prefix}/api/kernels/{kernel_id}/channels",
            proxy.port
        );
        let mut request = url.into_client_request()?;
        request.headers_mut().insert("authorization", auth.parse()?);
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port)).await?;
        let (mut socket, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .context("the kernel's WebSocket")?;
        let msg_id = token();
        let execute = serde_json::json!({
            "header": {
                "msg_id": msg_id, "username": CHECK_USER, "session": token(),
                "msg_type": "execute_request", "version": "5.3", "date": now(),
            },
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {
                "code": "print(6*7)", "silent": false, "store_history": false,
                "user_expressions": {}, "allow_stdin": false, "stop_on_error": true,
            },
        });
        socket.send(Message::text(execute.to_string())).await?;
        let mut output = String::new();
        let read = async {
            while let Some(message) = socket.next().await {
                let Ok(Message::Text(text)) = message else {
                    continue;
                };
                let reply: serde_json::Value = serde_json::from_str(&text)?;
                if reply["parent_header"]["msg_id"] != msg_id.as_str() {
                    continue;
                }
                match reply["msg_type"].as_str() {
                    Some("stream") => {
                        output.push_str(reply["content"]["text"].as_str().unwrap_or(""))
                    }
                    Some("error") => bail!(
                        "the code raised {}: {}",
                        reply["content"]["ename"],
                        reply["content"]["evalue"]
                    ),
                    Some("status") if reply["content"]["execution_state"] == "idle" => {
                        return Ok(())
                    }
                    _ => {}
                }
            }
            bail!("the kernel's WebSocket closed before the code ran")
        };
        tokio::time::timeout(Duration::from_secs(60), read)
            .await
            .context("no answer from the kernel within 60 s")??;
        let _ = socket.close(None).await;
        Ok(output)
    })
    .await?;
    if out.trim() != "42" {
        bail!("print(6*7) printed {out:?}, not 42");
    }
    let _ = client
        .delete(format!("{base}{prefix}/api/kernels/{kernel_id}"))
        .header("Authorization", auth)
        .send()
        .await;
    Ok(())
}
