//! The fleet's local target, end to end: a repository with one `provider: local` cluster of 3
//! hubs (staging, prod-a, prod-b) deploys on this machine behind one front proxy; `fleet
//! health` passes on each; changing one hub's values plans and restarts exactly that hub while
//! the other hubs' users keep their servers; removing a hub stops it and keeps its data; a
//! staging hub failing its health check blocks production. A binder hub's and a daskhub's
//! sections beside `jupyterhub:` reach their hubs' configs and run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{free_port, processes_in, python_env};

const BIN: &str = env!("CARGO_BIN_EXE_hubfleet");

struct Fleet {
    _tmp: tempfile::TempDir,
    repo: PathBuf,
    data: PathBuf,
    proxy_port: u16,
    hubs: Vec<String>,
}

impl Fleet {
    fn new() -> Fleet {
        Fleet::with_hubs(&[("staging", ""), ("prod-a", ""), ("prod-b", "")])
    }

    /// A cluster `lab` of these hubs, each with its extra top-level values.
    fn with_hubs(hubs: &[(&str, &str)]) -> Fleet {
        let names: Vec<&str> = hubs.iter().map(|(name, _)| *name).collect();
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        let data = tmp.path().join("fleet-data");
        let fixture = hubfleet_config::fixtures::fixture("2i2c-infrastructure")
            .unwrap_or_else(|e| panic!("{e}"));
        let schema = "src/deployer/commands/validate/cluster.schema.yaml";
        std::fs::create_dir_all(repo.join(schema).parent().unwrap()).unwrap();
        std::fs::copy(fixture.join(schema), repo.join(schema)).unwrap();
        // A chart of basehub's defaults that matter here: the `hub-health` service.
        write(
            &repo.join("helm-charts/basehub/values.yaml"),
            "jupyterhub:\n  hub:\n    services:\n      hub-health:\n        admin: true\n",
        );
        write(
            &repo.join("config/clusters/lab/cluster.yaml"),
            &cluster_yaml(&names),
        );
        let allow_root = if nix::unistd::geteuid().is_root() {
            "      allow_root: true\n"
        } else {
            ""
        };
        write(
            &repo.join("config/clusters/lab/common.values.yaml"),
            &format!(
                "jupyterhub:\n  hub:\n    config:\n      JupyterHub:\n        authenticator_class: dummy\n  hubfleet:\n    local:\n      python_env: {}\n{allow_root}",
                python_env().display()
            ),
        );
        for (hub, extra) in hubs {
            write(
                &repo.join(format!("config/clusters/lab/{hub}.values.yaml")),
                &hub_values(hub, extra),
            );
        }
        Fleet {
            _tmp: tmp,
            repo,
            data,
            proxy_port: free_port(),
            hubs: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new(BIN)
            .arg("fleet")
            .args(args)
            .arg("--dir")
            .arg(&self.repo)
            .arg("--data-dir")
            .arg(&self.data)
            .env("RUST_LOG", "info")
            .output()
            .unwrap();
        eprintln!(
            "$ hubfleet fleet {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "fleet {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn deploy(&self) -> Output {
        let port = self.proxy_port.to_string();
        self.run(&["deploy", "--proxy-ip", "127.0.0.1", "--proxy-port", &port])
    }

    fn state(&self, hub: &str) -> serde_json::Value {
        let text =
            std::fs::read_to_string(self.data.join(format!("deployed/lab/{hub}.json"))).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// `hubs/lab/<hub>/supervisor.json`: the supervisor and the hub's `hubfleet serve`.
    fn supervisor(&self, hub: &str) -> serde_json::Value {
        let text =
            std::fs::read_to_string(self.data.join(format!("hubs/lab/{hub}/supervisor.json")))
                .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn token(&self, hub: &str) -> String {
        let text =
            std::fs::read_to_string(self.data.join(format!("hubs/lab/{hub}/secret.yaml"))).unwrap();
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        doc["hub"]["services"]["hub-health"]["apiToken"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A client that reaches `<hub>.lab.test` through the front proxy.
    fn client(&self) -> reqwest::Client {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.proxy_port));
        let mut b = reqwest::Client::builder().timeout(Duration::from_secs(30));
        for hub in &self.hubs {
            b = b.resolve(&format!("{hub}.lab.test"), addr);
        }
        b.build().unwrap()
    }

    fn url(&self, hub: &str, path: &str) -> String {
        format!("http://{hub}.lab.test:{}{path}", self.proxy_port)
    }

    async fn start_server(&self, hub: &str, user: &str) {
        let c = self.client();
        let auth = format!("token {}", self.token(hub));
        let r = c
            .post(self.url(hub, &format!("/hub/api/users/{user}")))
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success() || r.status() == 409,
            "{}",
            r.status()
        );
        let r = c
            .post(self.url(hub, &format!("/hub/api/users/{user}/server")))
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let model: serde_json::Value = c
                .get(self.url(hub, &format!("/hub/api/users/{user}")))
                .header("Authorization", &auth)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if model["servers"][""]["ready"] == true {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{hub}: {user}'s server never got ready"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `GET /user/<user>/api/status` of the user's server, through the front proxy and the hub.
    async fn server_answers(&self, hub: &str, user: &str) -> bool {
        self.client()
            .get(self.url(hub, &format!("/user/{user}/api/status")))
            .header("Authorization", format!("token {}", self.token(hub)))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    }

    fn server_pids(&self, hub: &str, user: &str) -> Vec<i32> {
        let mut pids = processes_in(&self.data.join(format!("hubs/lab/{hub}/data/homes/{user}")));
        pids.sort();
        pids
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .args(["fleet", "stop", "--data-dir"])
            .arg(&self.data)
            .output();
        // Whatever is left (a hub `stop` could not reach, users' servers): by their pids.
        let mut pids = processes_in(&self.data);
        for dir in ["deployed/lab", "proxy"] {
            for e in std::fs::read_dir(self.data.join(dir))
                .into_iter()
                .flatten()
                .flatten()
            {
                if let Ok(text) = std::fs::read_to_string(e.path()) {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                        if let Some(pid) = v["pid"].as_i64() {
                            pids.push(pid as i32);
                        }
                    }
                }
            }
        }
        for hub in &self.hubs {
            let path = self.data.join(format!("hubs/lab/{hub}/supervisor.json"));
            if let Ok(text) = std::fs::read_to_string(path) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    if let Some(pid) = v["serve_pid"].as_i64().filter(|p| *p > 0) {
                        pids.push(pid as i32);
                    }
                }
            }
        }
        for pid in pids {
            if common::live_process_start(pid).is_some() {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn cluster_yaml(hubs: &[&str]) -> String {
    let mut s =
        "name: lab\nprovider: local\nmetadata: {2i2c: {hubspot_deal_id: 1}}\nhubs:\n".to_owned();
    for hub in hubs {
        s.push_str(&format!(
            "- name: {hub}\n  domain: {hub}.lab.test\n  helm_chart: basehub\n  helm_chart_values_files: [common.values.yaml, {hub}.values.yaml]\n"
        ));
    }
    s
}

fn hub_values(hub: &str, extra: &str) -> String {
    format!("jupyterhub:\n  custom:\n    homepage:\n      templateVars:\n        org: {{name: {hub}}}\n{extra}")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_fleet_deploys_plans_restarts_only_what_changed_and_removes() {
    let fleet = Fleet::new();
    fleet.ok(&["validate"]);
    let render = fleet.ok(&["render", "lab", "staging"]);
    assert!(
        render.contains("runs as: a supervised `hubfleet serve`"),
        "{render}"
    );
    let plan = fleet.ok(&["plan"]);
    assert!(
        plan.contains("plan: 3 to add, 0 to change, 0 to remove"),
        "{plan}"
    );

    // Deploy: staging first, each hub checked.
    let out = fleet.deploy();
    assert!(out.status.success(), "deploy failed");
    let text = stdout(&out);
    let staging_at = text
        .find("lab/staging: deployed")
        .expect("staging deployed");
    for hub in ["prod-a", "prod-b"] {
        let at = text
            .find(&format!("lab/{hub}: deployed"))
            .unwrap_or_else(|| panic!("{hub} deployed"));
        assert!(staging_at < at, "staging is deployed before {hub}");
    }
    assert!(text.contains("lab/staging: healthy"), "{text}");
    let secret = fleet.data.join("hubs/lab/staging/secret.yaml");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // `fleet render` prints the hub.yaml deploy wrote, the command line, the token redacted.
    let render = fleet.ok(&["render", "lab", "prod-a"]);
    let hub_yaml = std::fs::read_to_string(fleet.data.join("hubs/lab/prod-a/hub.yaml")).unwrap();
    assert!(render.contains(&hub_yaml), "{render}");
    assert!(render.contains(" serve --config "), "{render}");
    assert!(render.contains("apiToken: <redacted>"), "{render}");
    assert!(!render.contains(&fleet.token("prod-a")), "{render}");
    for doc in serde_yaml_ng::Deserializer::from_str(&render) {
        let _: serde_yaml_ng::Value = serde::Deserialize::deserialize(doc).unwrap();
    }

    // `fleet health` on each hub.
    for hub in ["staging", "prod-a", "prod-b"] {
        let out = fleet.ok(&["health", "lab", hub]);
        assert!(out.contains(&format!("lab/{hub}: healthy")), "{out}");
        assert!(out.contains("run print(6*7)"), "{out}");
    }
    let status = fleet.ok(&["status"]);
    assert!(status.contains("lab/prod-b"), "{status}");
    assert!(status.contains("ok "), "{status}");

    // A user's server on each hub.
    for hub in ["staging", "prod-a", "prod-b"] {
        fleet.start_server(hub, "alice").await;
        assert!(fleet.server_answers(hub, "alice").await, "{hub}");
    }
    let before: Vec<_> = ["staging", "prod-a", "prod-b"]
        .iter()
        .map(|h| (fleet.state(h)["pid"].clone(), fleet.server_pids(h, "alice")))
        .collect();
    for (_, pids) in &before {
        assert!(!pids.is_empty(), "alice's servers run");
    }

    // A hub that dies on its own is started again by its supervisor, without `deploy`, and
    // finds its user's server again.
    let supervisor = fleet.supervisor("prod-b");
    assert_eq!(
        supervisor["pid"], before[2].0,
        "deployed.json names the supervisor"
    );
    assert_eq!(supervisor["restarts"], 0);
    let crashed = supervisor["serve_pid"].as_i64().unwrap() as i32;
    assert!(common::live_process_start(crashed).is_some());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(crashed),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = fleet.supervisor("prod-b");
        let pid = s["serve_pid"].as_i64().unwrap_or(0) as i32;
        if s["restarts"] == 1
            && pid != 0
            && pid != crashed
            && fleet
                .client()
                .get(fleet.url("prod-b", "/hub/health"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prod-b was not started again: {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(fleet.supervisor("prod-b")["last_exit"]
        .as_str()
        .unwrap()
        .contains("9"));
    assert!(
        fleet
            .server_pids("prod-b", "alice")
            .contains(&before[2].1[0]),
        "prod-b: alice's server kept running"
    );
    assert!(
        fleet.server_answers("prod-b", "alice").await,
        "prod-b: alice's server answers through the restarted hub"
    );
    assert_eq!(fleet.state("prod-b")["pid"], before[2].0);
    let plan = fleet.ok(&["plan"]);
    assert!(plan.contains("lab/prod-b: unchanged"), "{plan}");
    let status = fleet.ok(&["status"]);
    let row = status
        .lines()
        .find(|l| l.starts_with("lab/prod-b"))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(row.contains(" 1 (last "), "{status}");

    // Change one hub's values: the plan shows exactly that hub, with the diff.
    write(
        &fleet.repo.join("config/clusters/lab/prod-a.values.yaml"),
        &hub_values("prod-a-renamed", ""),
    );
    let plan = fleet.ok(&["plan"]);
    assert!(plan.contains("lab/prod-a: change"), "{plan}");
    assert!(plan.contains("+        name: prod-a-renamed"), "{plan}");
    assert!(plan.contains("lab/staging: unchanged"), "{plan}");
    assert!(plan.contains("lab/prod-b: unchanged"), "{plan}");
    assert!(
        plan.contains("plan: 0 to add, 1 to change, 0 to remove, 2 unchanged"),
        "{plan}"
    );
    let out = fleet.deploy();
    assert!(out.status.success(), "deploy failed");
    assert!(!stdout(&out).contains("lab/staging: deployed"));
    assert_ne!(
        fleet.state("prod-a")["pid"],
        before[1].0,
        "prod-a restarted"
    );
    for (i, hub) in ["staging", "prod-b"].iter().enumerate() {
        let i = i * 2;
        assert_eq!(fleet.state(hub)["pid"], before[i].0, "{hub} kept running");
        // The server's process (the first; its children come and go).
        assert!(
            fleet.server_pids(hub, "alice").contains(&before[i].1[0]),
            "{hub}: the same server runs"
        );
        assert!(
            fleet.server_answers(hub, "alice").await,
            "{hub}: server answers"
        );
    }
    // The restarted hub found its user's server again.
    assert!(fleet
        .server_pids("prod-a", "alice")
        .contains(&before[1].1[0]));
    assert!(fleet.server_answers("prod-a", "alice").await);
    assert!(fleet.ok(&["plan"]).contains("0 to change"));

    // Remove a hub: planned removal; deploy stops it and keeps its data.
    write(
        &fleet.repo.join("config/clusters/lab/cluster.yaml"),
        &cluster_yaml(&["staging", "prod-a"]),
    );
    let plan = fleet.ok(&["plan"]);
    assert!(plan.contains("lab/prod-b: remove"), "{plan}");
    assert!(
        plan.contains("plan: 0 to add, 0 to change, 1 to remove"),
        "{plan}"
    );
    let prod_b_pid = fleet.state("prod-b")["pid"].as_i64().unwrap() as i32;
    let out = fleet.deploy();
    assert!(out.status.success(), "deploy failed");
    assert!(
        common::live_process_start(prod_b_pid).is_none(),
        "prod-b stopped"
    );
    assert!(
        common::live_process_start(before[2].1[0]).is_none(),
        "prod-b's server stopped"
    );
    assert!(!fleet.data.join("deployed/lab/prod-b.json").exists());
    let kept: Vec<_> = std::fs::read_dir(fleet.data.join("removed/lab"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("prod-b-"));
    assert!(
        kept[0].join("data/homes/alice").is_dir(),
        "prod-b's data kept"
    );
    assert!(fleet.ok(&["plan"]).contains("0 to remove"));

    // A staging hub failing its health check blocks production.
    write(
        &fleet.repo.join("config/clusters/lab/staging.values.yaml"),
        &hub_values("staging", "  singleuser:\n    cmd: [/bin/false]\n"),
    );
    write(
        &fleet.repo.join("config/clusters/lab/prod-a.values.yaml"),
        &hub_values("prod-a-again", ""),
    );
    let prod_a = fleet.state("prod-a");
    let plan = fleet.ok(&["plan"]);
    assert!(plan.contains("2 to change"), "{plan}");
    let out = fleet.deploy();
    assert!(
        !out.status.success(),
        "a failed staging hub fails the deploy"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lab/staging"), "{err}");
    assert!(err.contains("production hubs"), "{err}");
    assert_eq!(fleet.state("prod-a")["pid"], prod_a["pid"]);
    assert_eq!(fleet.state("prod-a")["revision"], prod_a["revision"]);
    let plan = fleet.ok(&["plan"]);
    assert!(plan.contains("lab/prod-a: change"), "{plan}");
    assert!(plan.contains("lab/staging: unchanged"), "{plan}");
    assert!(!fleet.run(&["health", "lab", "staging"]).status.success());
    let status = fleet.ok(&["status"]);
    assert!(status.contains("FAILED"), "{status}");

    let out = fleet.ok(&["stop"]);
    assert!(out.contains("front proxy: stopped"), "{out}");
}

/// A binder hub of the fleet (2i2c's layout: `binderhub-service:` beside `jupyterhub:` in the
/// hub's values file) runs with that section: its config has it, and the deployed hub answers
/// BinderHub's launch URLs (a repository outside `allowed_specs` is refused by that rule; a hub
/// without the section answers 404 there).
#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_binder_hub_runs_its_binderhub_service_section() {
    let binder = "binderhub-service:\n  enabled: true\n  networkPolicy:\n    enabled: true\n  config:\n    BinderHub:\n      banned_specs: ['^gh/banned/']\n  hubfleet:\n    allowed_specs: ['^gh/my-org/']\n    allow_anonymous_launches: true\n";
    let fleet = Fleet::with_hubs(&[("binder", binder), ("plain", "")]);
    fleet.ok(&["validate"]);
    let plan = fleet.ok(&["plan"]);
    assert!(plan.contains("plan: 2 to add"), "{plan}");
    let out = fleet.deploy();
    assert!(out.status.success(), "deploy failed");
    let hub_yaml = std::fs::read_to_string(fleet.data.join("hubs/lab/binder/hub.yaml")).unwrap();
    let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&hub_yaml).unwrap();
    let section = &config["binderhub-service"];
    assert_eq!(
        section["enabled"],
        serde_yaml_ng::Value::Bool(true),
        "{hub_yaml}"
    );
    assert_eq!(
        section["hubfleet"]["allowed_specs"][0].as_str(),
        Some("^gh/my-org/"),
        "{hub_yaml}"
    );
    let plain_yaml = std::fs::read_to_string(fleet.data.join("hubs/lab/plain/hub.yaml")).unwrap();
    assert!(!plain_yaml.contains("binderhub-service"), "{plain_yaml}");

    let client = fleet.client();
    let launch = |hub: &str, spec: &str| {
        client
            .get(fleet.url(hub, &format!("/hub/binder/v2/{spec}")))
            .send()
    };
    let refused = launch("binder", "gh/other-org/repo/main").await.unwrap();
    assert_eq!(refused.status(), 403);
    let body = refused.text().await.unwrap();
    assert!(body.contains("allowed_specs"), "{body}");
    let banned = launch("binder", "gh/banned/repo/main").await.unwrap();
    assert_eq!(banned.status(), 403);
    assert!(banned.text().await.unwrap().contains("banned_specs"));
    let none = launch("plain", "gh/my-org/repo/main").await.unwrap();
    assert_eq!(
        none.status(),
        404,
        "a hub without the section launches nothing"
    );
}

/// A fleet daskhub (`dask-gateway:` beside `jupyterhub:`) runs the gateway: the config has the
/// section, the Python the chart alone sets in `gateway.extraConfig` (basehub's
/// `optionHandler`, which needs Kubernetes) is left out with a note while the hub's own is
/// kept, and the deployed hub's gateway answers through the front proxy. Needs
/// `HUBFLEET_DASK_ENV` (as `flavour_dask`).
#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_dask_hub_runs_its_gateway() {
    let dask_env = std::env::var("HUBFLEET_DASK_ENV").expect(
        "HUBFLEET_DASK_ENV is not set: a venv with scripts/requirements-dask.txt (scripts/test makes .venv-dask)",
    );
    let dask = format!(
        "  hubfleet:\n    local:\n      python_env: {dask_env}\ndask-gateway:\n  enabled: true\n  gateway:\n    extraConfig:\n      10-mine: |\n        c.ClusterConfig.idle_timeout = 1234\n"
    );
    let fleet = Fleet::with_hubs(&[("dask", &dask)]);
    // basehub's defaults, as 2i2c's chart has them: a disabled section with Kubernetes Python.
    write(
        &fleet.repo.join("helm-charts/basehub/values.yaml"),
        "jupyterhub:\n  hub:\n    services:\n      hub-health:\n        admin: true\ndask-gateway:\n  enabled: false\n  gateway:\n    extraConfig:\n      optionHandler: |\n        import os\n        cloud_provider = os.environ['BASEHUB_K8S_DIST']\n",
    );
    let render = fleet.ok(&["render", "lab", "dask"]);
    assert!(
        render.contains("left out `dask-gateway.gateway.extraConfig.optionHandler`"),
        "{render}"
    );
    let out = fleet.deploy();
    assert!(out.status.success(), "deploy failed");
    let hub_yaml = std::fs::read_to_string(fleet.data.join("hubs/lab/dask/hub.yaml")).unwrap();
    let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&hub_yaml).unwrap();
    let extra = &config["dask-gateway"]["gateway"]["extraConfig"];
    assert!(extra.get("10-mine").is_some(), "{hub_yaml}");
    assert!(extra.get("optionHandler").is_none(), "{hub_yaml}");
    let health = fleet
        .client()
        .get(fleet.url("dask", "/services/dask-gateway/api/health"))
        .send()
        .await
        .unwrap();
    let status = health.status();
    let body = health.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("pass"), "{body}");
    let generated = std::fs::read_to_string(
        fleet
            .data
            .join("hubs/lab/dask/data/dask-gateway/dask_gateway_config.py"),
    )
    .unwrap();
    assert!(generated.contains("idle_timeout = 1234"), "{generated}");
    assert!(!generated.contains("BASEHUB_K8S_DIST"), "{generated}");
}
