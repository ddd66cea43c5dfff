//! `hubfleet fleet plan|deploy|health|status|stop` on the local target (see `fleet_local`).

use std::path::Path;

use anyhow::{Context, Result};
use futures_util::StreamExt;

use crate::fleet_cmd::{bar, repo};
use crate::fleet_local::{self as local, Action, Deployed, Desired, FleetDir};

/// Runs futures to completion from the (synchronous) commands, inside `main`'s runtime.
struct Rt;

impl Rt {
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
    }
}

fn runtime() -> Result<Rt> {
    Ok(Rt)
}

/// The front proxy's port for hubs' public URLs: the running proxy's, else `default`.
fn public_port(dir: &FleetDir, default: u16) -> u16 {
    dir.proxy().map(|p| p.port).unwrap_or(default)
}

pub fn plan_cmd(repo_dir: Option<&Path>, dir: &FleetDir, clusters: &[String]) -> Result<bool> {
    let repo = repo(repo_dir)?;
    let plan = local::plan(&repo, dir, clusters, None, public_port(dir, 8000))?;
    local::print_plan(&plan, dir);
    Ok(true)
}

fn print_health(what: &str, record: &local::HealthRecord) {
    for (step, secs) in &record.steps {
        println!("  {what}: {step}: {secs:.2} s");
    }
    match &record.error {
        None => println!(
            "{what}: healthy ({:.2} s)",
            record.steps.iter().map(|s| s.1).sum::<f64>()
        ),
        Some(e) => println!("{what}: UNHEALTHY: {e}"),
    }
}

pub fn health_cmd(dir: &FleetDir, cluster: &str, hub: &str) -> Result<bool> {
    let record = runtime()?.block_on(local::health(dir, cluster, hub));
    print_health(&format!("{cluster}/{hub}"), &record);
    Ok(record.ok)
}

/// Deploy (start or restart) one hub and check it; `Err` names what failed.
async fn deploy_one(
    dir: &FleetDir,
    proxy: &local::ProxyState,
    desired: Desired,
    old: Option<Deployed>,
) -> Result<String> {
    let what = format!("{}/{}", desired.cluster, desired.hub);
    let d = dir.clone();
    let state =
        tokio::task::spawn_blocking(move || local::start_hub(&d, &desired, old.as_ref())).await??;
    local::route(dir, proxy, &state.domain, Some(state.port)).await?;
    let record = local::health(dir, &state.cluster, &state.hub).await;
    print_health(&what, &record);
    match record.error {
        None => Ok(format!(
            "{what}: deployed revision {} (supervisor pid {}, port {})",
            state.revision, state.pid, state.port
        )),
        Some(e) => anyhow::bail!(
            "{what}: deployed revision {} but its health check failed: {e}",
            state.revision
        ),
    }
}

/// Apply a list of add/change actions with at most `limit` at once; the failures.
async fn apply(
    dir: &FleetDir,
    proxy: &local::ProxyState,
    actions: Vec<Action>,
    limit: usize,
    progress: &indicatif::ProgressBar,
) -> Vec<String> {
    let results: Vec<Result<String>> = futures_util::stream::iter(actions)
        .map(|a| async move {
            let (c, h) = a.key();
            progress.set_message(format!("{c}/{h}"));
            let out = match a {
                Action::Add(d) => deploy_one(dir, proxy, d, None).await,
                Action::Change { desired, deployed } => {
                    deploy_one(dir, proxy, desired, Some(deployed)).await
                }
                Action::Remove(s) => local::remove_hub(dir, &s).await.map(|kept| {
                    format!(
                        "{c}/{h}: removed: stopped, its data kept under {}",
                        kept.display()
                    )
                }),
                Action::Unchanged(_) => Ok(String::new()),
            };
            progress.inc(1);
            out
        })
        .buffer_unordered(limit)
        .collect()
        .await;
    let mut failures = Vec::new();
    for r in results {
        match r {
            Ok(line) if !line.is_empty() => progress.suspend(|| println!("{line}")),
            Ok(_) => {}
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    failures
}

pub fn deploy_cmd(
    repo_dir: Option<&Path>,
    dir: &FleetDir,
    clusters: &[String],
    hub: Option<&str>,
    limit: usize,
    proxy_ip: &str,
    proxy_port: u16,
) -> Result<bool> {
    let repo = repo(repo_dir)?;
    let plan = local::plan(&repo, dir, clusters, hub, public_port(dir, proxy_port))?;
    let changes = local::print_plan(&plan, dir);
    let rt = runtime()?;
    let proxy = local::ensure_proxy(dir, proxy_ip, public_port(dir, proxy_port))?;
    // A proxy started again has no routes: give every running hub its route.
    for a in &plan.actions {
        if let Action::Unchanged(s) = a {
            rt.block_on(local::route(dir, &proxy, &s.domain, Some(s.port)))?;
        }
    }
    if changes == 0 {
        println!("nothing to deploy");
        return Ok(true);
    }
    let progress = bar(changes as u64, "deploy");
    let mut by_cluster: std::collections::BTreeMap<String, Vec<Action>> = Default::default();
    for a in plan.actions {
        if !matches!(a, Action::Unchanged(_)) {
            by_cluster.entry(a.key().0).or_default().push(a);
        }
    }
    let mut failed = false;
    for (cluster, actions) in by_cluster {
        let (removals, rest): (Vec<_>, Vec<_>) = actions
            .into_iter()
            .partition(|a| matches!(a, Action::Remove(_)));
        let (staging, production): (Vec<_>, Vec<_>) = rest.into_iter().partition(Action::staging);
        let staged: Vec<String> = staging.iter().map(|a| a.key().1).collect();
        let failures = rt.block_on(apply(dir, &proxy, staging, limit, &progress));
        if !failures.is_empty() {
            progress.suspend(|| {
                for f in &failures {
                    eprintln!("error: {f}");
                }
                eprintln!(
                    "error: cluster {cluster}: staging ({}) failed: its production hubs and removals were not deployed; fix staging and deploy again",
                    staged.join(", ")
                );
            });
            failed = true;
            continue;
        }
        let mut failures = rt.block_on(apply(dir, &proxy, production, limit, &progress));
        failures.extend(rt.block_on(apply(dir, &proxy, removals, limit, &progress)));
        if !failures.is_empty() {
            progress.suspend(|| {
                for f in &failures {
                    eprintln!("error: {f}");
                }
            });
            failed = true;
        }
    }
    progress.finish_and_clear();
    Ok(!failed)
}

pub fn status_cmd(dir: &FleetDir) -> Result<bool> {
    let deployed = dir.deployed(&[])?;
    if deployed.is_empty() {
        println!("no hub is deployed in {}", dir.0.display());
        return Ok(true);
    }
    let rt = runtime()?;
    let proxy = dir
        .proxy()
        .filter(|p| local::process_start(p.pid) == Some(p.start_time));
    match &proxy {
        Some(p) => println!(
            "front proxy: pid {}, port {} (routes by Host)",
            p.pid, p.port
        ),
        None => println!("front proxy: not running"),
    }
    let mut rows = vec![[
        "HUB".to_owned(),
        "DOMAIN".into(),
        "VERSION".into(),
        "REVISION".into(),
        "PROCESS".into(),
        "RESTARTS".into(),
        "HEALTH".into(),
        "USERS".into(),
        "SERVERS".into(),
    ]];
    for ((c, h), s) in &deployed {
        let alive = s.alive();
        let (users, servers) = if alive {
            match dir
                .token(c, h)
                .ok()
                .map(|t| rt.block_on(local::users(s.port, &t)))
            {
                Some(Ok(list)) => {
                    let servers: usize = list
                        .iter()
                        .map(|u| u["servers"].as_object().map_or(0, |m| m.len()))
                        .sum();
                    (list.len().to_string(), servers.to_string())
                }
                _ => ("?".into(), "?".into()),
            }
        } else {
            ("-".into(), "-".into())
        };
        // The hub's `hubfleet serve`, run by its supervisor (`s.pid`).
        let supervisor = crate::fleet_supervise::SupervisorState::read(&dir.hub_dir(c, h))
            .filter(|sup| sup.pid == s.pid && sup.alive());
        let process = match (&supervisor, alive) {
            (Some(sup), _) if sup.serve_alive() => format!("pid {} :{}", sup.serve_pid, s.port),
            (Some(_), _) => "RESTARTING".into(),
            (None, true) => format!("pid {} :{}", s.pid, s.port),
            (None, false) => "NOT RUNNING".into(),
        };
        let restarts = match &supervisor {
            Some(sup) if sup.restarts > 0 => format!(
                "{} (last {})",
                sup.restarts,
                sup.last_exit_at.as_deref().unwrap_or("?")
            ),
            Some(_) => "0".into(),
            None => "-".into(),
        };
        let health = match dir.health(c, h) {
            Some(r) if r.ok && r.revision == s.revision => format!("ok {}", r.at),
            Some(r) if r.ok => format!("ok {} (older revision)", r.at),
            Some(r) => format!("FAILED {}", r.at),
            None => "never checked".into(),
        };
        rows.push([
            format!("{c}/{h}{}", if s.staging { " (staging)" } else { "" }),
            s.domain.clone(),
            s.version.clone(),
            s.revision.clone(),
            process,
            restarts,
            health,
            users,
            servers,
        ]);
    }
    let widths: Vec<usize> = (0..9)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(true)
}

pub fn stop_cmd(dir: &FleetDir, clusters: &[String]) -> Result<bool> {
    let deployed = dir.deployed(clusters)?;
    let rt = runtime()?;
    let mut ok = true;
    for ((c, h), s) in &deployed {
        match rt.block_on(local::stop_hub(dir, s)) {
            Ok(()) => println!("{c}/{h}: stopped"),
            Err(e) => {
                eprintln!("error: {e:#}");
                ok = false;
            }
        }
    }
    if clusters.is_empty() {
        if let Some(p) = dir.proxy() {
            if local::process_start(p.pid) == Some(p.start_time) {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p.pid),
                    nix::sys::signal::Signal::SIGTERM,
                )
                .context("cannot stop the front proxy")?;
                println!("front proxy: stopped (pid {})", p.pid);
            }
        }
    }
    Ok(ok)
}
