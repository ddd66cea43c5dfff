//! `hubfleet render pod` against the real KubeSpawner: the reference tool of the shared material
//! (`$HUBFLEET_SHARED_DIR/tools/kubespawner-reference`) runs KubeSpawner 7.1 under z2jh's hub
//! config with no cluster, and prints the pod it would create. Both run with the same command
//! line on z2jh's defaults and on every hub of the 2i2c fixture (its `cluster.yaml` files, their
//! values files, the `--unwrap`s of basehub and daskhub, binder launches, a default and a chosen
//! profile), and the pods are compared field by field. Differences that remain are listed in
//! [`KNOWN_DIFFERENCES`] with their reason; any other fails the test, and so does a listed one
//! that no longer happens.
//!
//! The reference needs its own Python venv (`$HUBFLEET_KUBESPAWNER_ENV`; `scripts/test` makes it).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

#[path = "support/kubespawner_reference.rs"]
mod kubespawner_reference;

use hubfleet_kube::compare::pod_fields;
use kubespawner_reference::{
    describe, hub_args, hubfleet, ours, reference, reference_python, s, shared_dir,
};
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

/// (case, field, why): differences that stay, and why. A case is `cluster--hub[/variant]`.
const KNOWN_DIFFERENCES: &[(&str, &str, &str)] = &[
    ("leap--public/admin", "spawn", ADMIN_MOUNTS_NULL),
    ("nasa-veda--binder/admin", "spawn", ADMIN_MOUNTS_NULL),
    ("opensci--big-binder/admin", "spawn", ADMIN_MOUNTS_NULL),
    ("opensci--climaterisk/admin", "spawn", ADMIN_MOUNTS_NULL),
    ("opensci--small-binder/admin", "spawn", ADMIN_MOUNTS_NULL),
    (
        "projectpythia--pythia-binder/admin",
        "spawn",
        ADMIN_MOUNTS_NULL,
    ),
];

/// Why admins of some hubs get a pod from hubfleet and an error from the reference.
const ADMIN_MOUNTS_NULL: &str = "the hub sets `custom.singleuserAdmin.extraVolumeMounts: null` to \
    drop basehub's mounts; layered as files (the reference's rules) the null stays, and basehub's \
    modify_pod_hook fails on `None.values()` for admins. Helm itself drops a null that overrides a \
    chart default, so hubfleet reads it as no mounts and builds the pod";

/// One comparison: a name and the command line both tools get.
#[derive(Clone)]
struct Case {
    name: String,
    args: Vec<String>,
}

/// The profiles hubfleet offers this case's user (to pick a non-default one and its choices).
fn profiles(args: &[String]) -> Vec<Json> {
    let out = hubfleet(&[args, &[s("--list-profiles")]].concat());
    assert!(
        out.status.success(),
        "hubfleet render pod --list-profiles failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Json>(&out.stdout)
        .expect("profiles as JSON")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The last profile, with the last choice of each option (or an unlisted choice where allowed).
fn chosen_profile(profile: &Json) -> Vec<String> {
    let mut args = vec![
        s("--profile"),
        profile["slug"].as_str().unwrap_or("").to_owned(),
    ];
    if let Some(options) = profile["profile_options"].as_object() {
        for (name, option) in options {
            if option["unlisted_choice"] == Json::Bool(true) {
                args.extend([
                    s("--option"),
                    format!("{name}--unlisted-choice=quay.io/example/chosen-image:1.0"),
                ]);
            } else if let Some(last) = option["choices"].as_array().and_then(|c| c.last()) {
                args.extend([
                    s("--option"),
                    format!("{name}={}", last.as_str().unwrap_or("")),
                ]);
            }
        }
    }
    args
}

fn cases(shared: &Path) -> Vec<Case> {
    let mut cases = vec![
        Case {
            name: s("z2jh-defaults"),
            args: vec![s("--user"), s("alice")],
        },
        Case {
            name: s("z2jh-defaults/named-server"),
            args: vec![
                s("--user"),
                s("Alice.Smith@example.org"),
                s("--server-name"),
                s("My Server--1"),
            ],
        },
    ];
    let fixture = shared.join("fixtures/2i2c-infrastructure");
    let mut clusters: Vec<PathBuf> = std::fs::read_dir(fixture.join("config/clusters"))
        .expect("the 2i2c fixture's clusters")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("cluster.yaml"))
        .filter(|p| p.is_file())
        .collect();
    clusters.sort();
    for cluster_yaml in clusters {
        let text = std::fs::read_to_string(&cluster_yaml).expect("read cluster.yaml");
        let cluster: Yaml = serde_yaml_ng::from_str(&text).expect("cluster.yaml is YAML");
        let cluster_name = cluster["name"].as_str().unwrap_or_default().to_owned();
        let dir = cluster_yaml.parent().expect("a directory").to_path_buf();
        for hub in cluster
            .get("hubs")
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
        {
            let (name, mut args) = hub_args(&fixture, &dir, &cluster_name, hub);
            args.extend([s("--user"), s("alice")]);
            let profiles = profiles(&args);
            cases.push(Case {
                name: name.clone(),
                args: args.clone(),
            });
            if let Some(last) = profiles.last() {
                let mut chosen = args.clone();
                chosen.extend(chosen_profile(last));
                cases.push(Case {
                    name: format!("{name}/profile"),
                    args: chosen,
                });
            }
            // basehub's extras for admins (custom.singleuserAdmin) on the hubs that set them
            if sets_singleuser_admin(&dir, hub) {
                let mut admin = args.clone();
                admin.push(s("--admin"));
                cases.push(Case {
                    name: format!("{name}/admin"),
                    args: admin,
                });
            }
        }
    }
    cases
}

/// Whether a hub's own values files set `custom.singleuserAdmin`.
fn sets_singleuser_admin(dir: &Path, hub: &Yaml) -> bool {
    hub.get("helm_chart_values_files")
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(Yaml::as_str)
        .filter(|f| !f.starts_with("enc-"))
        .any(|f| std::fs::read_to_string(dir.join(f)).is_ok_and(|t| t.contains("singleuserAdmin:")))
}

/// One case's outcome: its name, then what KubeSpawner and hubfleet printed (or their errors).
type Outcome = (String, Result<Json, String>, Result<Json, String>);

#[test]
fn pods_match_kubespawner() {
    let started = Instant::now();
    let shared = shared_dir();
    let python = reference_python();
    let cases = cases(&shared);
    let queue = Mutex::new(cases.clone());
    let results: Mutex<Vec<Outcome>> = Mutex::new(Vec::new());
    // Two at a time: the reference takes a few seconds per pod.
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let Some(case) = queue.lock().unwrap().pop() else {
                    break;
                };
                let theirs = reference(&python, &shared, &case.args);
                let mine = ours(&case.args);
                results.lock().unwrap().push((case.name, theirs, mine));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by(|a, b| a.0.cmp(&b.0));

    let mut unexpected = Vec::new();
    let mut seen_known = Vec::new();
    let mut table =
        String::from("case                                  fields matching  differences\n");
    let mut fully = 0;
    for (name, theirs, mine) in &results {
        let (theirs, mine) = match (theirs, mine) {
            (Ok(t), Ok(m)) => (t, m),
            (Err(t), Err(m)) => {
                // both refuse the spawn: compare nothing but say so
                table.push_str(&format!("{name:<38} both refuse: {t} / {m}\n"));
                continue;
            }
            (t, m) => {
                let known = KNOWN_DIFFERENCES
                    .iter()
                    .any(|(c, f, _)| c == name && *f == "spawn");
                if known {
                    seen_known.push((name.clone(), s("spawn")));
                } else {
                    unexpected.push(format!(
                        "{name}: spawn: KubeSpawner {:?} / hubfleet {:?}",
                        t.as_ref().err(),
                        m.as_ref().err()
                    ));
                }
                table.push_str(&format!(
                    "{name:<38} spawn differs: KubeSpawner {} / hubfleet {}\n",
                    t.as_ref().err().map_or("made a pod", String::as_str),
                    m.as_ref().err().map_or("made a pod", String::as_str)
                ));
                continue;
            }
        };
        let (a, b) = (pod_fields(theirs), pod_fields(mine));
        let mut differing = Vec::new();
        for (field, value) in &a {
            if b.get(field) != Some(value) {
                differing.push(*field);
                let known = KNOWN_DIFFERENCES
                    .iter()
                    .any(|(c, f, _)| c == name && f == field);
                if known {
                    seen_known.push((name.clone(), field.to_string()));
                } else {
                    unexpected.push(format!(
                        "{name}: {field}: {}",
                        describe(value, b.get(field).unwrap_or(&Json::Null))
                    ));
                }
            }
        }
        if differing.is_empty() {
            fully += 1;
        }
        table.push_str(&format!(
            "{name:<38} {:>2}/{:<2}            {}\n",
            a.len() - differing.len(),
            a.len(),
            if differing.is_empty() {
                "-".to_owned()
            } else {
                differing.join(", ")
            }
        ));
    }
    let stale: Vec<String> = KNOWN_DIFFERENCES
        .iter()
        .filter(|(c, f, _)| !seen_known.iter().any(|(n, g)| n == c && g == f))
        .map(|(c, f, why)| format!("{c}: {f} ({why})"))
        .collect();
    println!("{table}");
    println!(
        "{fully} of {} cases match KubeSpawner in every field; {} known differences; {:.0?}",
        results.len(),
        seen_known.len(),
        started.elapsed()
    );
    assert!(
        unexpected.is_empty(),
        "differences from KubeSpawner that are not in KNOWN_DIFFERENCES:\n{}",
        unexpected.join("\n")
    );
    assert!(
        stale.is_empty(),
        "KNOWN_DIFFERENCES lists differences that no longer happen (remove them):\n{}",
        stale.join("\n")
    );
}

/// Hubs whose users have hosts of their own (`subdomain_host`), or a `public_url`: the URLs in
/// the pod's env (`JUPYTERHUB_PUBLIC_URL`, `JUPYTERHUB_PUBLIC_HUB_URL`, `JUPYTERHUB_HOST`,
/// `JUPYTERHUB_OAUTH_CALLBACK_URL`) are JupyterHub's own (the reference runs upstream's `User`
/// URL properties), and every other field matches too.
#[test]
fn subdomain_hubs_match_kubespawner() {
    let shared = shared_dir();
    let python = reference_python();
    let dir = tempfile::tempdir().unwrap();
    let hubs = [
        (
            "subdomains-with-port",
            "hub:\n  config:\n    JupyterHub:\n      subdomain_host: https://Hub.Example.org:8443\n",
        ),
        (
            "subdomains-no-scheme-base-url",
            "hub:\n  baseUrl: /prefix/\n  config:\n    JupyterHub:\n      subdomain_host: hub.example.org\n",
        ),
        (
            "subdomains-and-public-url",
            "hub:\n  config:\n    JupyterHub:\n      subdomain_host: https://hub.example.org\n      public_url: https://hub.example.org/\n",
        ),
        (
            "public-url-only",
            "hub:\n  baseUrl: /prefix/\n  config:\n    JupyterHub:\n      public_url: http://hub.example.org:8000\n",
        ),
    ];
    let mut cases = Vec::new();
    for (hub, yaml) in hubs {
        let file = dir.path().join(format!("{hub}.yaml"));
        std::fs::write(&file, yaml).unwrap();
        for (user, server) in [
            ("alice", ""),
            ("jürgen", "lab 1"),
            ("Alice.Smith@example.org", ""),
            ("Bob", "My Server--1"),
        ] {
            let mut args = vec![
                s("--values"),
                file.display().to_string(),
                s("--user"),
                s(user),
            ];
            if !server.is_empty() {
                args.extend([s("--server-name"), s(server)]);
            }
            cases.push((format!("{hub}/{user}/{server}"), args));
        }
    }
    let mut problems = Vec::new();
    for (name, args) in &cases {
        let theirs = reference(&python, &shared, args)
            .unwrap_or_else(|e| panic!("{name}: the reference failed: {e}"));
        let mine = ours(args).unwrap_or_else(|e| panic!("{name}: hubfleet failed: {e}"));
        let (a, b) = (pod_fields(&theirs), pod_fields(&mine));
        for (field, value) in &a {
            if b.get(field) != Some(value) {
                problems.push(format!(
                    "{name}: {field}: {}",
                    describe(value, b.get(field).unwrap_or(&Json::Null))
                ));
            }
        }
        // The URLs compared are full ones: neither left them out.
        let env = &a["env"];
        let public = env
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == "JUPYTERHUB_PUBLIC_URL")
            .and_then(|e| e["value"].as_str())
            .unwrap_or_default();
        assert!(
            public.starts_with("https://") || public.starts_with("http://"),
            "{name}: JUPYTERHUB_PUBLIC_URL {public:?}"
        );
    }
    assert!(
        problems.is_empty(),
        "differences from KubeSpawner on hubs with subdomains or a public URL:\n{}",
        problems.join("\n")
    );
}

#[test]
fn bad_values_are_errors_that_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, "singleuser:\n  memory:\n    limit: 2 gigs\n").unwrap();
    let out = hubfleet(&[
        s("--values"),
        file.display().to_string(),
        s("--user"),
        s("alice"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("singleuser.memory.limit") && err.contains("K, M, G or T"),
        "{err}"
    );

    std::fs::write(
        &file,
        "singleuser:\n  profileList:\n  - display_name: Small\n    slug: small\n",
    )
    .unwrap();
    let out = hubfleet(&[
        s("--values"),
        file.display().to_string(),
        s("--user"),
        s("alice"),
        s("--profile"),
        s("large"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("No such profile: large. Options include: small"),
        "{err}"
    );

    std::fs::write(&file, "singleuser: [not, a, mapping\n").unwrap();
    let out = hubfleet(&[
        s("--values"),
        file.display().to_string(),
        s("--user"),
        s("alice"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:") && err.contains("invalid YAML"),
        "{err}"
    );

    let secret = dir.path().join("enc-prod.secret.values.yaml");
    std::fs::write(&secret, "sops: {}\n").unwrap();
    let out = hubfleet(&[
        s("--values"),
        secret.display().to_string(),
        s("--user"),
        s("alice"),
    ]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("note: skipped") && err.contains("sops"),
        "{err}"
    );
}
