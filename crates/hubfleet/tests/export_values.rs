//! `hubfleet export` and `hubfleet fleet export` against upstream's own checks: for z2jh's
//! defaults, the example hub of docs/examples and every hub of the 2i2c fixture,
//! - values.yaml (with secrets.values.yaml, laid on the chart's defaults as Helm does before it
//!   checks them) validates against z2jh's `values.schema.yaml` (the `jsonschema` crate);
//! - values.yaml holds no secret, secrets.values.yaml is 0600;
//! - the pod the real KubeSpawner (the shared reference tool) makes from values.yaml and
//!   secrets.values.yaml equals, field by field, the pod `hubfleet render pod` makes from the
//!   hub's own files (for a fleet hub: its files layered by `hubfleet_fleet::hub::load`, jsonnet
//!   and decrypted sops included); the differences that remain are [`EXPECTED_DIFFERENCES`], and
//!   each export's README lists exactly the ones hubfleet computed.
//!
//! Needs `$HUBFLEET_SHARED_DIR` and the reference tool's venv `$HUBFLEET_KUBESPAWNER_ENV`.

#[path = "support/kubespawner_reference.rs"]
mod kubespawner_reference;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use hubfleet_kube::compare::pod_fields;
use kubespawner_reference::{
    describe, hub_args, ours, reference, reference_python, s, shared_dir, BASEHUB_Z2JH_VERSION,
};
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

/// Why an expected difference stays.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Why {
    /// Environment variables set in a sops file encrypted with GCP KMS, which cannot be
    /// decrypted here: hubfleet's layering puts `encrypted-value` there, the export a
    /// `CHANGE-ME: …` placeholder for the operator to fill in. Checked: every differing variable
    /// is a placeholder the export lists in secrets.values.yaml. The README lists these.
    EncryptedEnv,
}

/// (hub, field, why): pod fields that differ between KubeSpawner's pod from the export and
/// hubfleet's from the hub's own files.
const EXPECTED_DIFFERENCES: &[(&str, &str, Why)] = &[
    ("2i2c-uk--lis", "env", Why::EncryptedEnv),
    ("nasa-veda--prod", "env", Why::EncryptedEnv),
    ("nasa-veda--staging", "env", Why::EncryptedEnv),
    ("opensci--small-binder", "env", Why::EncryptedEnv),
];

/// The names of the variables whose values differ between two `env` fields.
fn differing_env(a: &Json, b: &Json) -> BTreeSet<String> {
    let map = |v: &Json| -> std::collections::BTreeMap<String, Json> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|e| (e["name"].as_str().unwrap_or("").to_owned(), e.clone()))
            .collect()
    };
    let (a, b) = (map(a), map(b));
    a.keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

/// Hubs whose only values files are encrypted with a sops backend unusable here (GCP/AWS KMS):
/// nothing to export but placeholders. The 2i2c fixture has none: every hub has plain files.
const SKIPPED_ENCRYPTED_ONLY: &[&str] = &[];

/// One hub to export and compare.
struct Hub {
    name: String,
    /// `hubfleet …` arguments that export it (`--out DIR` is added).
    export: Vec<String>,
    /// `render pod` arguments for the hub's own files (values, unwrap, release).
    own: Vec<String>,
    /// The user's facts and options for both tools (`--group`, `--user-options-json`).
    user: Vec<String>,
    /// The release name.
    release: String,
}

fn fixture() -> PathBuf {
    shared_dir().join("fixtures/2i2c-infrastructure")
}

fn z2jh_dir() -> PathBuf {
    shared_dir().join("fixtures/zero-to-jupyterhub/jupyterhub")
}

fn run_hubfleet(args: &[String]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hubfleet"))
        .args(args)
        .env("HUBFLEET_SHARED_DIR", shared_dir())
        .env_remove("SOPS_AGE_KEY")
        .env_remove("SOPS_AGE_KEY_FILE")
        .output()
        .expect("run hubfleet")
}

/// The arguments of `hub_args` that are facts about the user or release, not values files.
fn facts_of(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--values" | "--unwrap" | "--chart-version" | "--release-name" => i += 2,
            _ => {
                out.push(args[i].clone());
                i += 1;
            }
        }
    }
    out
}

/// Every hub of the fleet fixture, its own values layered by hubfleet into `work/`.
fn hubs(work: &Path) -> (Vec<Hub>, Vec<String>) {
    let fixture = fixture();
    let repo = hubfleet_fleet::Repo::find(&fixture).expect("the 2i2c fixture is a repository");
    let keys = hubfleet_fleet::Keyring::default();
    let mut hubs = vec![
        Hub {
            name: s("z2jh-defaults"),
            export: vec![
                s("export"),
                s("--config"),
                z2jh_dir().join("values.yaml").display().to_string(),
            ],
            own: vec![
                s("--values"),
                z2jh_dir().join("values.yaml").display().to_string(),
            ],
            user: vec![],
            release: s("jupyterhub"),
        },
        Hub {
            name: s("example-hub"),
            export: vec![
                s("export"),
                s("--config"),
                example_hub().display().to_string(),
            ],
            own: vec![s("--values"), example_hub().display().to_string()],
            user: vec![],
            release: s("jupyterhub"),
        },
    ];
    let mut skipped = Vec::new();
    for cluster_name in repo.cluster_names().expect("clusters") {
        let (cluster, _) = repo.cluster(&cluster_name).expect("a cluster");
        let text = std::fs::read_to_string(cluster.dir.join("cluster.yaml")).unwrap();
        let cluster_doc: Yaml = serde_yaml_ng::from_str(&text).unwrap();
        for entry in &cluster.hubs {
            let name = format!("{}--{}", cluster.name, entry.name);
            let loaded = hubfleet_fleet::hub::load(&repo, &cluster, entry, &keys);
            let plain = loaded.layers.iter().any(|l| {
                matches!(
                    l.source,
                    hubfleet_fleet::hub::Source::File
                        | hubfleet_fleet::hub::Source::Jsonnet
                        | hubfleet_fleet::hub::Source::Decrypted
                )
            });
            if !plain {
                skipped.push(name);
                continue;
            }
            let merged = work.join(format!("{name}.own.yaml"));
            std::fs::write(&merged, serde_yaml_ng::to_string(&loaded.merged).unwrap()).unwrap();
            let hub_yaml = cluster_doc["hubs"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|h| h["name"].as_str() == Some(entry.name.as_str()))
                .unwrap()
                .clone();
            let (_, args) = hub_args(&fixture, &cluster.dir, &cluster.name, &hub_yaml);
            hubs.push(Hub {
                name,
                export: vec![
                    s("fleet"),
                    s("--dir"),
                    fixture.display().to_string(),
                    s("export"),
                    cluster.name.clone(),
                    entry.name.clone(),
                ],
                own: vec![
                    s("--unwrap"),
                    entry.jupyterhub_key().to_owned(),
                    s("--values"),
                    merged.display().to_string(),
                ],
                user: facts_of(&args),
                release: entry.name.clone(),
            });
        }
    }
    (hubs, skipped)
}

fn example_hub() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/hub.yaml")
}

fn yaml_file(path: &Path) -> Yaml {
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn z2jh_schema() -> jsonschema::Validator {
    let schema: Json = serde_json::to_value(yaml_file(&z2jh_dir().join("values.schema.yaml")))
        .expect("the schema as JSON");
    jsonschema::validator_for(&schema).expect("z2jh's schema compiles")
}

/// The leaf key paths of a document.
fn leaves(doc: &Yaml) -> Vec<String> {
    hubfleet_kube::export::leaf_paths(doc)
        .into_iter()
        .map(|p| p.join("."))
        .collect()
}

/// The pod fields the README lists as differing, or `None` when it says they were not compared.
fn readme_differences(readme: &str) -> Option<BTreeSet<String>> {
    let section = readme.split("## The same pods").nth(1)?;
    let section = section.split("\n## ").next()?;
    if section.contains("could not be compared") {
        return None;
    }
    Some(
        section
            .lines()
            .filter_map(|l| l.strip_prefix("- `"))
            .filter_map(|l| l.strip_suffix('`'))
            .map(str::to_owned)
            .collect(),
    )
}

#[test]
fn exports_validate_against_z2jh_and_make_the_same_pods() {
    let shared = shared_dir();
    let python = reference_python();
    let work = tempfile::tempdir().unwrap();
    let (hubs, skipped) = hubs(work.path());
    println!(
        "hubs skipped (their only values are encrypted with a backend unusable here): {skipped:?}"
    );
    assert_eq!(
        skipped.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        SKIPPED_ENCRYPTED_ONLY.iter().copied().collect(),
        "the hubs skipped for encrypted-only values changed"
    );
    assert!(hubs.len() > 20, "every hub of the fixture: {}", hubs.len());
    let schema = z2jh_schema();
    let defaults = yaml_file(&z2jh_dir().join("values.yaml"));
    let mut problems = Vec::new();
    let mut pod_jobs = Vec::new();
    for hub in &hubs {
        let out_dir = work.path().join(&hub.name);
        let out = run_hubfleet(
            &[
                hub.export.clone(),
                vec![s("--out"), out_dir.display().to_string()],
            ]
            .concat(),
        );
        if !out.status.success() {
            problems.push(format!(
                "{}: export failed: {}",
                hub.name,
                String::from_utf8_lossy(&out.stderr)
            ));
            continue;
        }
        let values = yaml_file(&out_dir.join("values.yaml"));
        let secrets_path = out_dir.join("secrets.values.yaml");
        let secrets = yaml_file(&secrets_path);
        // Schema: as Helm checks it, on the values laid on the chart's defaults.
        let mut given = values.clone();
        hubfleet_config::values::merge_files(&mut given, secrets.clone());
        let instance =
            serde_json::to_value(hubfleet_config::values::coalesce(given, &defaults)).unwrap();
        for error in schema.iter_errors(&instance) {
            problems.push(format!(
                "{}: values.yaml: {} at {}",
                hub.name, error, error.instance_path
            ));
        }
        // No secret in values.yaml; secrets private.
        let mode = std::fs::metadata(&secrets_path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        if mode != 0o600 {
            problems.push(format!(
                "{}: secrets.values.yaml has mode {mode:o}",
                hub.name
            ));
        }
        let values_text = std::fs::read_to_string(out_dir.join("values.yaml")).unwrap();
        for marker in ["CHANGE-ME", "encrypted-value", "ENC[AES256_GCM"] {
            if values_text.contains(marker) {
                problems.push(format!("{}: values.yaml holds `{marker}`", hub.name));
            }
        }
        let value_keys: BTreeSet<String> = leaves(&values).into_iter().collect();
        for secret in leaves(&secrets) {
            if value_keys.contains(&secret) {
                problems.push(format!("{}: {secret} is in values.yaml too", hub.name));
            }
        }
        let readme = std::fs::read_to_string(out_dir.join("README.md")).unwrap();
        pod_jobs.push((hub, out_dir, readme));
    }

    // Pods: the reference on the export, hubfleet on the hub's own files; two at a time.
    let queue = Mutex::new(pod_jobs);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let Some((hub, out_dir, readme)) = queue.lock().unwrap().pop() else {
                    break;
                };
                let release = vec![
                    s("--release-name"),
                    hub.release.clone(),
                    s("--chart-version"),
                    s(BASEHUB_Z2JH_VERSION),
                ];
                let user = [hub.user.clone(), vec![s("--user"), s("alice")]].concat();
                let theirs_args = [
                    release.clone(),
                    vec![
                        s("--values"),
                        out_dir.join("values.yaml").display().to_string(),
                        s("--values"),
                        out_dir.join("secrets.values.yaml").display().to_string(),
                    ],
                    user.clone(),
                ]
                .concat();
                let theirs = reference(&python, &shared, &theirs_args);
                let mine = ours(&[release, hub.own.clone(), user].concat());
                let secrets_text =
                    std::fs::read_to_string(out_dir.join("secrets.values.yaml")).unwrap();
                results.lock().unwrap().push((
                    hub.name.clone(),
                    theirs,
                    mine,
                    readme,
                    secrets_text,
                ));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by(|a, b| a.0.cmp(&b.0));
    let mut differences = BTreeSet::new();
    let mut table =
        String::from("hub                                   fields matching  differences\n");
    for (name, theirs, mine, readme, secrets_text) in &results {
        let (theirs, mine) = match (theirs, mine) {
            (Ok(t), Ok(m)) => (t, m),
            (t, m) => {
                problems.push(format!(
                    "{name}: a pod from one side only: KubeSpawner {:?} / hubfleet {:?}",
                    t.as_ref().err(),
                    m.as_ref().err()
                ));
                continue;
            }
        };
        let (a, b) = (pod_fields(theirs), pod_fields(mine));
        // `differing`: what the README must list; `shown`: every differing field, for the table.
        let mut differing = BTreeSet::new();
        let mut shown = BTreeSet::new();
        for (field, value) in &a {
            if b.get(field) != Some(value) {
                let why = EXPECTED_DIFFERENCES
                    .iter()
                    .find(|(h, f, _)| h == name && f == field)
                    .map(|(_, _, w)| *w);
                let other = b.get(field).unwrap_or(&Json::Null);
                match why {
                    Some(Why::EncryptedEnv) => {
                        for var in differing_env(value, other) {
                            let line = format!("# CHANGE-ME: singleuser.extraEnv.{var} ");
                            if !secrets_text.contains(&line) {
                                problems.push(format!("{name}: env {var} differs and is not a placeholder of the export"));
                            }
                        }
                        differing.insert(field.to_string());
                    }
                    None => {
                        differing.insert(field.to_string());
                    }
                }
                differences.insert((name.clone(), field.to_string()));
                shown.insert(field.to_string());
                println!(
                    "{name}: {field}: {}",
                    describe(value, b.get(field).unwrap_or(&Json::Null))
                );
            }
        }
        // What the README computed (hubfleet's pods from both) must be what KubeSpawner shows.
        if let Some(listed) = readme_differences(readme) {
            if listed != differing {
                problems.push(format!(
                    "{name}: the README lists differing fields {listed:?}, KubeSpawner shows {differing:?}"
                ));
            }
        }
        table.push_str(&format!(
            "{name:<38} {:>2}/{:<2}            {}\n",
            a.len() - shown.len(),
            a.len(),
            if shown.is_empty() {
                s("-")
            } else {
                shown.into_iter().collect::<Vec<_>>().join(", ")
            }
        ));
    }
    println!("{table}");
    println!(
        "{} hubs exported; {} validate against z2jh's schema; {} pod differences",
        hubs.len(),
        hubs.len()
            - problems
                .iter()
                .filter(|p| p.contains("values.yaml:"))
                .map(|p| p.split(':').next().unwrap_or(""))
                .collect::<BTreeSet<_>>()
                .len(),
        differences.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let expected: BTreeSet<(String, String)> = EXPECTED_DIFFERENCES
        .iter()
        .map(|(h, f, _)| (h.to_string(), f.to_string()))
        .collect();
    assert_eq!(differences, expected, "pod differences changed");
}

#[test]
fn the_chart_version_is_the_one_basehub_pins_and_the_schema_is_z2jhs() {
    let chart: Yaml = yaml_file(&fixture().join("helm-charts/basehub/Chart.yaml"));
    let pinned = chart["dependencies"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|d| d["name"].as_str() == Some("jupyterhub"))
        .and_then(|d| d["version"].as_str())
        .unwrap()
        .to_owned();
    assert_eq!(hubfleet_kube::export::Z2JH_CHART_VERSION, pinned);
    assert_eq!(BASEHUB_Z2JH_VERSION, pinned);
    let z2jh: Yaml = yaml_file(&z2jh_dir().join("Chart.yaml"));
    assert_eq!(z2jh["name"].as_str(), Some("jupyterhub"));
}

/// A password inside `hub.db.url` is a secret: values.yaml gets the URL without it,
/// secrets.values.yaml the whole URL (Helm layers it over the other).
#[test]
fn a_password_in_the_database_url_goes_to_the_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hub.yaml");
    std::fs::write(
        &config,
        "hub:\n  db: {type: postgres, url: 'postgresql://hub:url-pass-7@db.invalid:5432/hub'}\n",
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let out = run_hubfleet(&[
        s("export"),
        s("--config"),
        config.display().to_string(),
        s("--out"),
        out_dir.display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let values_text = std::fs::read_to_string(out_dir.join("values.yaml")).unwrap();
    assert!(
        !values_text.contains("url-pass-7"),
        "the password in values.yaml:\n{values_text}"
    );
    let values = yaml_file(&out_dir.join("values.yaml"));
    assert_eq!(
        values["hub"]["db"]["url"].as_str(),
        Some("postgresql://hub@db.invalid:5432/hub")
    );
    let secrets = yaml_file(&out_dir.join("secrets.values.yaml"));
    assert_eq!(
        secrets["hub"]["db"]["url"].as_str(),
        Some("postgresql://hub:url-pass-7@db.invalid:5432/hub")
    );
    for (name, text) in [
        (
            "README.md",
            std::fs::read_to_string(out_dir.join("README.md")).unwrap(),
        ),
        ("stdout", String::from_utf8_lossy(&out.stdout).into_owned()),
        ("stderr", String::from_utf8_lossy(&out.stderr).into_owned()),
    ] {
        assert!(
            !text.contains("url-pass-7"),
            "the password in {name}:\n{text}"
        );
    }
}

#[test]
fn secrets_of_a_single_hub_go_to_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hub.yaml");
    std::fs::write(
        &config,
        "hub:\n  cookieSecret: 0123abcd\n  config:\n    JupyterHub: {authenticator_class: github}\n    GitHubOAuthenticator: {client_id: the-id, client_secret: the-secret, oauth_callback_url: 'https://hub.example.org/hub/oauth_callback'}\n    SharedPasswordAuthenticator: {user_password: shared-pass-1, admin_password: admin-pass-12345678901234567890}\n    ConfigurableHTTPProxy: {api_url: 'http://127.0.0.1:8001', auth_token: chp-token}\n  db: {type: postgres, url: 'postgresql://hub@db/hub', password: pg-pass}\nproxy: {secretToken: proxy-token}\nhubfleet:\n  public_url: https://hub.example.org\n  local: {environments: {pangeo: {python_env: /opt/pangeo}}}\n",
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    // An older, world-readable file is replaced, not reused.
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::write(out_dir.join("secrets.values.yaml"), "old").unwrap();
    std::fs::set_permissions(
        out_dir.join("secrets.values.yaml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = run_hubfleet(&[
        s("export"),
        s("--config"),
        config.display().to_string(),
        s("--out"),
        out_dir.display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let values = std::fs::read_to_string(out_dir.join("values.yaml")).unwrap();
    for secret in [
        "0123abcd",
        "the-secret",
        "pg-pass",
        "proxy-token",
        "shared-pass-1",
        "admin-pass-1",
        "chp-token",
    ] {
        assert!(
            !values.contains(secret),
            "{secret} in values.yaml:\n{values}"
        );
    }
    assert!(
        values.contains("the-id") && values.contains("pangeo"),
        "{values}"
    );
    let secrets_path = out_dir.join("secrets.values.yaml");
    let mode = std::fs::metadata(&secrets_path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let secrets = yaml_file(&secrets_path);
    assert_eq!(secrets["hub"]["cookieSecret"].as_str(), Some("0123abcd"));
    assert_eq!(secrets["hub"]["db"]["password"].as_str(), Some("pg-pass"));
    assert_eq!(
        secrets["hub"]["config"]["GitHubOAuthenticator"]["client_secret"].as_str(),
        Some("the-secret")
    );
    assert_eq!(
        secrets["hub"]["config"]["SharedPasswordAuthenticator"]["user_password"].as_str(),
        Some("shared-pass-1")
    );
    assert_eq!(
        secrets["hub"]["config"]["ConfigurableHTTPProxy"]["auth_token"].as_str(),
        Some("chp-token")
    );
    let readme = std::fs::read_to_string(out_dir.join("README.md")).unwrap();
    assert!(readme.contains("hub.example.org") && readme.contains("`*.hub.example.org`"));
    assert!(
        readme.contains("helm upgrade --install jupyterhub jupyterhub/jupyterhub --version 4.3.3")
    );
    assert!(readme.contains("`hubfleet.local.environments`"), "{readme}");
    // Nothing of the work files stays behind.
    let names: BTreeSet<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["README.md", "secrets.values.yaml", "values.yaml"]
            .map(String::from)
            .into_iter()
            .collect()
    );
}

#[test]
fn bad_input_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    std::fs::write(&config, "hub:\n  config: [unclosed\n").unwrap();
    let out = run_hubfleet(&[
        s("export"),
        s("--config"),
        config.display().to_string(),
        s("--out"),
        dir.path().join("out").display().to_string(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml:"), "{err}");
    assert!(!dir.path().join("out").exists());

    let out = run_hubfleet(&[
        s("fleet"),
        s("--dir"),
        fixture().display().to_string(),
        s("export"),
        s("leap"),
        s("no-such-hub"),
        s("--out"),
        dir.path().join("out").display().to_string(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-hub"), "{err}");
}

#[test]
fn a_hub_on_this_machine_exports_its_users_and_homes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hub.yaml");
    std::fs::write(
        &config,
        "hubfleet:\n  data_dir: ./data\n  local: {system_users: false}\nhub:\n  config:\n    JupyterHub: {authenticator_class: dummy}\n",
    )
    .unwrap();
    let cfg = config.display().to_string();
    for args in [
        vec![s("users"), s("add"), s("alice"), s("--admin")],
        vec![s("users"), s("add"), s("bob")],
    ] {
        let out = run_hubfleet(&[args, vec![s("--config"), cfg.clone()]].concat());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let home = dir.path().join("data/homes/alice");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("notes.txt"), "kept").unwrap();
    let out_dir = dir.path().join("out");
    let out = run_hubfleet(&[
        s("export"),
        s("--config"),
        cfg,
        s("--out"),
        out_dir.display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let users: Json =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("users.json")).unwrap())
            .unwrap();
    let names: BTreeSet<(String, bool)> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["name"].as_str().unwrap().to_owned(),
                u["admin"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [(s("alice"), true), (s("bob"), false)]
            .into_iter()
            .collect()
    );
    assert!(out_dir.join("homes.tar.zst").is_file());
    let readme = std::fs::read_to_string(out_dir.join("README.md")).unwrap();
    let section = readme
        .split(hubfleet_kube::export::HUB_DATA_HEADING)
        .nth(1)
        .unwrap();
    assert!(
        section.contains("2 users") && section.contains("zstd -dc homes.tar.zst | tar -x"),
        "{section}"
    );

    // A hub whose database is elsewhere: no hub files, and the README says why.
    let elsewhere = dir.path().join("elsewhere.yaml");
    std::fs::write(&elsewhere, "hubfleet:\n  data_dir: ./nowhere\n").unwrap();
    let out_dir = dir.path().join("out2");
    let out = run_hubfleet(&[
        s("export"),
        s("--config"),
        elsewhere.display().to_string(),
        s("--out"),
        out_dir.display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out_dir.join("users.json").exists() && !dir.path().join("nowhere").exists());
    let readme = std::fs::read_to_string(out_dir.join("README.md")).unwrap();
    assert!(
        readme.contains("has no database on this machine"),
        "{readme}"
    );
}
