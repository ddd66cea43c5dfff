//! Building a repository's environment once per commit, cached and shared in
//! `<data_dir>/binder/environments/<key>/` (`env/`: the venv, `repo/`: the checkout,
//! `build.log`).
//!
//! The venv is made with `--without-pip` and a `.pth` file that puts the hub's base environment
//! (`hubfleet.local.python_env`) on its path, so jupyterhub-singleuser, JupyterLab and pip come
//! from there and a build installs only the repository's own packages (a second or two for a
//! small package, a few hundred KB on disk; a venv of its own with JupyterLab takes minutes and
//! hundreds of MB). `--system-site-packages` would not do: it layers on the interpreter's
//! system site-packages, not on another venv. A build happens in
//! `<data_dir>/binder/building/<key>.<random>/` and is renamed into place only when it
//! succeeded, so a failed or interrupted one leaves nothing that looks built.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, Semaphore};

use super::spec::RepoSpec;
use super::{BinderEvent, BinderSettings, BuildAccount};

/// The built environments of a hub, and what builds them.
#[derive(Clone)]
pub struct Builder {
    settings: Arc<BinderSettings>,
    /// Builds running at once (`concurrent_build_limit`).
    slots: Arc<Semaphore>,
    /// One lock per environment: a second launch of a commit being built waits for that build.
    building: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// A built environment, ready to launch.
#[derive(Clone, Debug)]
pub struct Built {
    pub key: String,
    pub commit: String,
    /// Whether this launch built it (false: found built).
    pub fresh: bool,
}

impl Builder {
    pub fn new(settings: Arc<BinderSettings>) -> Builder {
        // A hub killed during a build leaves its temporary directory: nothing else uses it.
        let _ = std::fs::remove_dir_all(settings.building_dir());
        Builder {
            slots: Arc::new(Semaphore::new(settings.concurrent_builds.max(1))),
            settings,
            building: Arc::default(),
        }
    }

    /// Resolve the ref, then find or build the environment, sending events as it goes.
    pub async fn build(
        &self,
        spec: &RepoSpec,
        events: &mpsc::UnboundedSender<BinderEvent>,
    ) -> Result<Built, String> {
        events
            .send(BinderEvent::new(
                "fetching",
                format!("Resolving {} in {}\n", spec.git_ref, spec.url),
            ))
            .ok();
        let commit = resolve_ref(
            spec,
            &self.settings.building_dir(),
            self.settings.build_account.as_ref(),
        )
        .await?;
        events
            .send(BinderEvent::new(
                "fetching",
                format!("{} is commit {commit}\n", spec.git_ref),
            ))
            .ok();
        let key = environment_key(&spec.url, &commit);
        let done = self.settings.environment_dir(&key);
        if is_built(&done) {
            return Ok(Built {
                key,
                commit,
                fresh: false,
            });
        }
        let lock = self
            .building
            .lock()
            .expect("binder build locks")
            .entry(key.clone())
            .or_default()
            .clone();
        let guard = match lock.clone().try_lock_owned() {
            Ok(guard) => guard,
            Err(_) => {
                events
                    .send(BinderEvent::new(
                        "waiting",
                        "Another launch is building this commit; waiting for it\n",
                    ))
                    .ok();
                lock.lock_owned().await
            }
        };
        if is_built(&done) {
            return Ok(Built {
                key,
                commit,
                fresh: false,
            });
        }
        let slot = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                events
                    .send(BinderEvent::new(
                        "waiting",
                        format!(
                            "{} builds are running (binderhub-service.config.BinderHub.concurrent_build_limit); waiting for one to finish\n",
                            self.settings.concurrent_builds
                        ),
                    ))
                    .ok();
                self.slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| "the hub is shutting down".to_string())?
            }
        };
        let work = self
            .settings
            .building_dir()
            .join(format!("{key}.{}", &hubfleet_store::new_token()[..8]));
        let timeout = self.settings.build_timeout;
        let result = match tokio::time::timeout(
            timeout,
            build_into(&self.settings, spec, &commit, &work, &done, events),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(format!(
                "the build took longer than {} s (binderhub-service.hubfleet.build_timeout) and was stopped",
                timeout.as_secs()
            )),
        };
        // Nothing half-made stays: the work directory goes whatever happened.
        let _ = tokio::fs::remove_dir_all(&work).await;
        drop(slot);
        drop(guard);
        result.map(|()| Built {
            key,
            commit,
            fresh: true,
        })
    }
}

/// `sha256(url \n commit)`, shortened: the environment's directory name.
pub fn environment_key(url: &str, commit: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(url.as_bytes());
    hash.update(b"\n");
    hash.update(commit.as_bytes());
    hex::encode(&hash.finalize()[..16])
}

pub fn is_built(dir: &Path) -> bool {
    dir.join("env/bin/python").exists() && dir.join("repo").is_dir()
}

/// A command of a build, in [`crate::env_build::build_environment`], run as the build account
/// when there is one.
fn build_command(
    program: impl AsRef<std::ffi::OsStr>,
    home: &Path,
    account: Option<&BuildAccount>,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    if let Some(account) = account {
        // std drops the supplementary groups when it changes the uid.
        cmd.uid(account.uid).gid(account.gid);
    }
    // The hub's own working directory may be closed to the build account.
    cmd.current_dir("/");
    cmd.env_clear()
        .envs(crate::env_build::build_environment(home))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

fn git(home: &Path, account: Option<&BuildAccount>) -> tokio::process::Command {
    let mut cmd = build_command("git", home, account);
    // Never ask for a password, and only transports that fetch.
    cmd.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ALLOW_PROTOCOL", "https:http:git:file")
        .env("GIT_PROTOCOL_FROM_USER", "0");
    cmd
}

/// With a build account, the git config in `home` that [`git`] commands there need: once per
/// home, before they run.
fn write_git_config(home: &Path, account: Option<&BuildAccount>) {
    if account.is_none() {
        return;
    }
    // A repository on this machine (allowed_specs naming a path) belongs to someone else than
    // the build account; git's ownership check guards an account against a repository's
    // config, and this account runs the repository's code anyway. The global config (HOME's)
    // reaches the upload-pack of a local clone, where `-c` and GIT_CONFIG_* are cleared.
    let written = std::fs::create_dir_all(home)
        .and_then(|()| std::fs::write(home.join(".gitconfig"), "[safe]\n\tdirectory = *\n"));
    if let Err(e) = written {
        tracing::warn!(home = %home.display(), error = %e, "could not write the build's git config");
    }
}

/// The commit a ref names (`git ls-remote`, with `home` as its `HOME`); a full commit id is
/// taken as it is.
pub async fn resolve_ref(
    spec: &RepoSpec,
    home: &Path,
    account: Option<&BuildAccount>,
) -> Result<String, String> {
    let r = spec.git_ref.as_str();
    if r.len() == 40 && r.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(r.to_ascii_lowercase());
    }
    write_git_config(home, account);
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        git(home, account)
            .args(["ls-remote", "--", &spec.url, r])
            .output(),
    )
    .await
    .map_err(|_| format!("`git ls-remote {}` did not answer within 60 s", spec.url))?
    .map_err(|e| format!("could not run git (is it installed?): {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "could not read {}: {}",
            spec.url,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let refs: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once('\t')).collect();
    let preferred = [
        r.to_owned(),
        format!("refs/heads/{r}"),
        format!("refs/tags/{r}^{{}}"),
        format!("refs/tags/{r}"),
    ];
    preferred
        .iter()
        .find_map(|want| refs.iter().find(|(_, name)| name == want))
        .or(refs.first())
        .map(|(commit, _)| commit.to_string())
        .ok_or_else(|| {
            format!(
                "{} has no branch or tag `{r}`; give a branch, a tag or a full commit id",
                spec.url
            )
        })
}

/// Fetch, check what the repository asks for, make the venv, install, run postBuild, check
/// the disk limit and move the result into place.
async fn build_into(
    settings: &BinderSettings,
    spec: &RepoSpec,
    commit: &str,
    work: &Path,
    done: &Path,
    events: &mpsc::UnboundedSender<BinderEvent>,
) -> Result<(), String> {
    let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
    tokio::fs::create_dir_all(work)
        .await
        .map_err(|e| io(&format!("creating {}", work.display()), e))?;
    let repo = work.join("repo");
    // The build's HOME: its own, so nothing reads the hub's dotfiles; removed before the
    // environment is moved into place.
    let home = work.join("home");
    tokio::fs::create_dir_all(&home)
        .await
        .map_err(|e| io(&format!("creating {}", home.display()), e))?;
    let account = settings.build_account.as_ref();
    if let Some(account) = account {
        use std::os::unix::fs::PermissionsExt;
        // The build account passes through to its work directory, servers' accounts to the
        // environments; neither lists them.
        let passable = std::fs::Permissions::from_mode(0o711);
        for dir in [
            settings.data_dir.join("binder"),
            settings.building_dir(),
            settings.environments_dir(),
        ] {
            std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::set_permissions(&dir, passable.clone()))
                .map_err(|e| io(&format!("making {} passable", dir.display()), e))?;
        }
        // What is kept is read by every server's account.
        std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| io(&format!("opening {}", work.display()), e))?;
        for dir in [work, home.as_path()] {
            std::os::unix::fs::chown(dir, Some(account.uid), Some(account.gid)).map_err(|e| {
                io(
                    &format!(
                        "giving {} to the build account {}",
                        dir.display(),
                        account.name
                    ),
                    e,
                )
            })?;
        }
    }
    write_git_config(&home, account);
    let mut log = String::new();
    let say = |line: String, log: &mut String| {
        log.push_str(&line);
        events.send(BinderEvent::new("building", line)).ok();
    };
    events
        .send(BinderEvent::new(
            "fetching",
            format!("Fetching {} at {commit}\n", spec.url),
        ))
        .ok();
    run_logged(
        git(&home, account)
            .current_dir(work)
            .args(["clone", "--quiet", "--no-checkout", "--"])
            .arg(&spec.url)
            .arg(&repo),
        "fetching",
        events,
        &mut log,
    )
    .await?;
    run_logged(
        git(&home, account)
            .arg("-C")
            .arg(&repo)
            .args(["checkout", "--quiet", commit]),
        "fetching",
        events,
        &mut log,
    )
    .await?;
    let binder_dir = if repo.join("binder").is_dir() {
        repo.join("binder")
    } else if repo.join(".binder").is_dir() {
        repo.join(".binder")
    } else {
        repo.clone()
    };
    if binder_dir.join("environment.yml").exists() || binder_dir.join("environment.yaml").exists() {
        return Err(
            "this repository describes its environment with environment.yml, which needs conda, and this hub has no conda: give a requirements.txt (or pyproject.toml / setup.py) instead"
                .into(),
        );
    }
    for ignored in [
        "apt.txt",
        "runtime.txt",
        "install.R",
        "Project.toml",
        "Dockerfile",
    ] {
        if binder_dir.join(ignored).exists() {
            say(
                format!("Note: {ignored} is not used by this hub (pip environments only)\n"),
                &mut log,
            );
        }
    }
    let env = work.join("env");
    say(
        format!(
            "Making a Python environment on the hub's base environment {}\n",
            settings.base_env.display()
        ),
        &mut log,
    );
    run_logged(
        build_command(settings.base_env.join("bin/python"), &home, account)
            .args(["-m", "venv", "--without-pip"])
            .arg(&env),
        "building",
        events,
        &mut log,
    )
    .await?;
    let site = site_packages(&env).await?;
    let base_site = site_packages(&settings.base_env).await?;
    tokio::fs::write(
        site.join("_hubfleet_base_env.pth"),
        format!("{}\n", base_site.display()),
    )
    .await
    .map_err(|e| io("writing the base environment's .pth", e))?;
    let python = env.join("bin/python");
    let pip = |args: &[&str]| {
        let mut cmd = build_command(&python, &home, account);
        cmd.args([
            "-m",
            "pip",
            "install",
            "--no-input",
            "--progress-bar",
            "off",
        ])
        .args(args)
        .current_dir(&binder_dir)
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        // The build's HOME goes when it ends: a cache there would only take disk meanwhile.
        .env("PIP_NO_CACHE_DIR", "1")
        .env("VIRTUAL_ENV", &env);
        cmd
    };
    let mut installed = false;
    if binder_dir.join("requirements.txt").exists() {
        say("Installing requirements.txt with pip\n".into(), &mut log);
        run_logged(
            &mut pip(&["-r", "requirements.txt"]),
            "building",
            events,
            &mut log,
        )
        .await?;
        installed = true;
    }
    if repo.join("pyproject.toml").exists() || repo.join("setup.py").exists() {
        say(
            "Installing the repository itself with pip\n".into(),
            &mut log,
        );
        let mut cmd = pip(&["."]);
        cmd.current_dir(&repo);
        run_logged(&mut cmd, "building", events, &mut log).await?;
        installed = true;
    }
    if !installed {
        say(
            "No requirements.txt, pyproject.toml or setup.py: the base environment as it is\n"
                .into(),
            &mut log,
        );
    }
    let post_build = binder_dir.join("postBuild");
    if post_build.is_file() {
        say(
            format!(
                "Running postBuild (at most {} s)\n",
                settings.postbuild_timeout.as_secs()
            ),
            &mut log,
        );
        let mut cmd = build_command("/bin/sh", &home, account);
        cmd.arg(&post_build)
            .current_dir(&repo)
            .env("PATH", crate::profiles::server_path(Some(&env)))
            .env("VIRTUAL_ENV", &env);
        match tokio::time::timeout(
            settings.postbuild_timeout,
            run_logged(&mut cmd, "building", events, &mut log),
        )
        .await
        {
            Ok(result) => result?,
            Err(_) => {
                return Err(format!(
                    "postBuild ran longer than {} s (binderhub-service.hubfleet.postbuild_timeout) and was stopped",
                    settings.postbuild_timeout.as_secs()
                ))
            }
        }
    }
    tokio::fs::remove_dir_all(&home)
        .await
        .map_err(|e| io(&format!("removing {}", home.display()), e))?;
    if let Some(limit) = settings.disk_limit {
        let this = disk_use(work.to_path_buf()).await;
        let others = disk_use(settings.environments_dir()).await;
        if this + others > limit {
            return Err(format!(
                "this environment ({} MB) would take the built environments past their disk limit of {} MB (binderhub-service.hubfleet.environments_disk_limit; {} MB in use): an admin can remove old ones from {}",
                this >> 20,
                limit >> 20,
                others >> 20,
                settings.environments_dir().display()
            ));
        }
    }
    if account.is_some() {
        // Kept environments are root's: a later build, run as the same account, cannot change
        // what other users' servers run.
        give_to_root(work.to_path_buf())
            .await
            .map_err(|e| io("giving the built environment to root", e))?;
    }
    relocate_scripts(&env.join("bin"), &env, &done.join("env")).await;
    write_start_script(&env, done).await?;
    tokio::fs::write(work.join("build.log"), &log)
        .await
        .map_err(|e| io("writing build.log", e))?;
    tokio::fs::create_dir_all(settings.environments_dir())
        .await
        .map_err(|e| io("creating the environments directory", e))?;
    tokio::fs::rename(work, done)
        .await
        .map_err(|e| io(&format!("moving the build to {}", done.display()), e))?;
    Ok(())
}

/// `env/bin/jupyterhub-singleuser`: copies the checkout into the home once (to
/// `$BINDER_REPO_DIR`), then starts the server there with the environment's Python. Named as
/// the usual program, so the spawner treats it as one (`--allow-root` where allowed).
async fn write_start_script(env: &Path, done: &Path) -> Result<(), String> {
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "'\\''"));
    let script = format!(
        "#!/bin/sh\n# Made by hubfleet for a binder launch.\nset -e\ndest=\"$HOME/${{BINDER_REPO_DIR:-repo}}\"\nif [ ! -e \"$dest\" ]; then cp -R {} \"$dest\"; fi\ncd \"$dest\"\nexec {} -m jupyterhub.singleuser \"$@\"\n",
        quote(&done.join("repo")),
        quote(&done.join("env/bin/python")),
    );
    let path = env.join("bin/jupyterhub-singleuser");
    tokio::fs::write(&path, script)
        .await
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .await
        .map_err(|e| format!("making {} executable: {e}", path.display()))
}

/// `lib/pythonX.Y/site-packages` of a venv.
async fn site_packages(prefix: &Path) -> Result<PathBuf, String> {
    let lib = prefix.join("lib");
    let mut entries = tokio::fs::read_dir(&lib)
        .await
        .map_err(|e| format!("reading {}: {e}", lib.display()))?;
    while let Ok(Some(entry)) = entries.next_entry().await {
        let site = entry.path().join("site-packages");
        if entry.file_name().to_string_lossy().starts_with("python") && site.is_dir() {
            return Ok(site);
        }
    }
    Err(format!("{} has no python*/site-packages", lib.display()))
}

/// Scripts pip wrote start with `#!<work>/env/bin/python`: point them at where the venv ends up.
async fn relocate_scripts(bin: &Path, from: &Path, to: &Path) {
    let (from, to) = (from.display().to_string(), to.display().to_string());
    let Ok(mut entries) = tokio::fs::read_dir(bin).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let path = entry.path();
        if path.is_symlink() {
            continue;
        }
        if let Ok(text) = tokio::fs::read_to_string(&path).await {
            if text.starts_with("#!") && text.contains(&from) {
                let _ = tokio::fs::write(&path, text.replace(&from, &to)).await;
            }
        }
    }
}

/// `lchown` everything under `dir` (and itself) to root, writable by root only: a build that
/// left a file open to everyone cannot have it changed by a later build.
async fn give_to_root(dir: PathBuf) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    tokio::task::spawn_blocking(move || {
        let mut pending = vec![dir];
        while let Some(path) = pending.pop() {
            std::os::unix::fs::lchown(&path, Some(0), Some(0))?;
            let metadata = path.symlink_metadata()?;
            if !metadata.file_type().is_symlink() {
                let mode = metadata.permissions().mode();
                // No write for group or others, no setuid, setgid or sticky bit.
                let kept = mode & 0o755;
                if mode & 0o7777 != kept {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(kept))?;
                }
            }
            if metadata.is_dir() {
                for entry in std::fs::read_dir(&path)? {
                    pending.push(entry?.path());
                }
            }
        }
        Ok(())
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Bytes under `dir` (links not followed).
pub async fn disk_use(dir: PathBuf) -> u64 {
    tokio::task::spawn_blocking(move || {
        let mut total = 0;
        let mut pending = vec![dir];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(meta) = entry.path().symlink_metadata() else {
                    continue;
                };
                if meta.is_dir() {
                    pending.push(entry.path());
                } else {
                    total += meta.len();
                }
            }
        }
        total
    })
    .await
    .unwrap_or(0)
}

/// Run `cmd`, sending each line of its output (stdout and stderr, as they come) as an event of
/// `phase` and keeping it in `log`; its failure is an error that ends with the last lines.
async fn run_logged(
    cmd: &mut tokio::process::Command,
    phase: &str,
    events: &mpsc::UnboundedSender<BinderEvent>,
    log: &mut String,
) -> Result<(), String> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    // A group of its own, so a time limit ends what it started too (pip's builds, postBuild's
    // children), not only the process itself.
    let mut child = cmd
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run {program}: {e}"))?;
    let _group = child.id().map(ProcessGroup);
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut tail: Vec<String> = Vec::new();
    while let Some(line) = rx.recv().await {
        let line = format!("{line}\n");
        log.push_str(&line);
        events.send(BinderEvent::new(phase, line.clone())).ok();
        tail.push(line);
        if tail.len() > 20 {
            tail.remove(0);
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| format!("waiting for {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        let name = Path::new(&program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or(program);
        Err(format!(
            "{name} failed ({status}); the end of its output:\n{}",
            tail.concat()
        ))
    }
}

/// Kills a process group when dropped: a build step stopped by a time limit (its future
/// dropped) leaves nothing running. Harmless once the group is gone.
struct ProcessGroup(u32);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}
