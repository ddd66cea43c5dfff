//! `hubfleet fleet validate` on 2i2c's infrastructure fixture (it passes, reporting only the
//! encrypted files, the support chart's files and the keys that need Kubernetes add-ons), and
//! on a copy of it with seeded mistakes (each fails with file, line and key).

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture() -> PathBuf {
    hubfleet_config::fixtures::fixture("2i2c-infrastructure").unwrap_or_else(|e| panic!("{e}"))
}

fn hubfleet() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hubfleet"));
    // No age keys of the machine's user: the fixture's files are KMS-encrypted anyway.
    cmd.env_remove("SOPS_AGE_KEY")
        .env("SOPS_AGE_KEY_FILE", "/nonexistent");
    cmd
}

/// Copy a directory tree (the fixture is read-only; the copy is writable).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
            let mut perms = std::fs::metadata(&target).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&target, perms).unwrap();
        }
    }
}

fn validate(dir: &Path) -> (bool, String) {
    let out = hubfleet()
        .arg("fleet")
        .arg("validate")
        .arg(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), format!("{stdout}{stderr}"))
}

#[test]
fn the_fixture_is_valid_and_only_encrypted_files_and_add_ons_are_reported() {
    let (ok, out) = validate(&fixture());
    assert!(ok, "validate failed on the fixture:\n{out}");
    assert!(out.contains(": 6 clusters, 21 hubs: valid"), "{out}");
    assert!(!out.contains(": error:"), "{out}");
    // Each KMS-encrypted file is named, with its backend.
    assert!(
        out.contains("config/clusters/opensci/enc-staging.secret.values.yaml:1:1: encrypted: encrypted with sops to gcp kms: projects/two-eye-two-see/"),
        "{out}"
    );
    assert!(
        out.contains("config/clusters/opensci/enc-deployer-credentials.secret.json:1:1: encrypted"),
        "{out}"
    );
    // Keys only an add-on honours on the local target, with the file and line that set them.
    assert!(
        out.contains("needs kubernetes add-on: nfs.enabled: home directories"),
        "{out}"
    );
    // A local hub runs Dask Gateway and Binder launches itself: not add-ons.
    for key in ["dask-gateway.enabled", "binderhub-service.enabled"] {
        assert!(
            !out.contains(&format!("needs kubernetes add-on: {key}")),
            "{out}"
        );
    }
    assert!(out.contains("files of the support chart"), "{out}");
}

/// A mutation of one file of the copy, and the error it must cause: the file, the text of the
/// line the error must point at (found in the mutated file), and the key path.
struct Seeded {
    file: &'static str,
    edit: fn(&str) -> String,
    line_text: &'static str,
    key: &'static str,
    says: &'static str,
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` is not in the mutated file"))
        + 1
}

#[test]
fn seeded_mistakes_each_fail_with_file_line_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("infrastructure");
    copy_tree(&fixture(), &repo);
    let seeded = [
        // 1. A misspelt key in the *second* hub of a cluster (upstream's schema skips it).
        Seeded {
            file: "config/clusters/2i2c-uk/cluster.yaml",
            edit: |t| {
                t.replace(
                    "  display_name: London Interdisciplinary School\n",
                    "  display_name: London Interdisciplinary School\n  domian: typo.example.org\n",
                )
            },
            line_text: "domian:",
            key: "hubs[1].domian",
            says: "did you mean `domain`?",
        },
        // 2. A chart that does not exist, in the second hub.
        Seeded {
            file: "config/clusters/opensci/cluster.yaml",
            edit: |t| {
                let i = t.find("- name: sciencecore").unwrap();
                let (a, b) = t.split_at(i);
                format!(
                    "{a}{}",
                    b.replacen("helm_chart: basehub", "helm_chart: nonsense", 1)
                )
            },
            line_text: "helm_chart: nonsense",
            key: "hubs[1].helm_chart",
            says: "nonsense",
        },
        // 3. A hub whose values file is missing.
        Seeded {
            file: "config/clusters/utoronto/cluster.yaml",
            edit: |t| {
                t.replacen(
                    "  - r-prod.values.yaml\n",
                    "  - r-prod.values.yaml\n  - r-missing.values.yaml\n",
                    1,
                )
            },
            line_text: "r-missing.values.yaml",
            key: "helm_chart_values_files",
            says: "values file `r-missing.values.yaml` does not exist",
        },
        // 4. A jsonnet values file with a syntax error.
        Seeded {
            file: "config/clusters/leap/broken.jsonnet",
            edit: |_| {
                "{\n  jupyterhub: {\n    singleuser: { cmd: 'x' }\n  },\n  , // a stray comma\n}\n"
                    .to_owned()
            },
            line_text: "a stray comma",
            key: "",
            says: "jsonnet: syntax error",
        },
        Seeded {
            file: "config/clusters/leap/cluster.yaml",
            edit: |t| {
                t.replacen(
                    "  - staging.values.yaml\n",
                    "  - staging.values.yaml\n  - broken.jsonnet\n",
                    1,
                )
            },
            line_text: "broken.jsonnet",
            key: "",
            says: "",
        },
        // 5. A profile with an unknown field.
        Seeded {
            file: "config/clusters/opensci/staging.values.yaml",
            edit: |t| {
                t.replacen(
                    "      slug: only-choice\n",
                    "      slug: only-choice\n      kubespawner_overide: {}\n",
                    1,
                )
            },
            line_text: "kubespawner_overide",
            key: "jupyterhub.singleuser.profileList[0].kubespawner_overide",
            says: "kubespawner_override",
        },
        // 6. A misspelt z2jh key.
        Seeded {
            file: "config/clusters/2i2c-uk/lis.values.yaml",
            edit: |t| {
                t.replacen(
                    "\n  singleuser:\n",
                    "\n  singleuser:\n    memroy: {limit: 1G}\n",
                    1,
                )
            },
            line_text: "memroy",
            key: "jupyterhub.singleuser.memroy",
            says: "memory",
        },
        // 7. A misspelt basehub key (its schema).
        Seeded {
            file: "config/clusters/opensci/big-binder.values.yaml",
            edit: |t| format!("nfss:\n  enabled: true\n{t}"),
            line_text: "nfss:",
            key: "nfss",
            says: "did you mean `nfs`?",
        },
        // 8. A key of the support chart in a hub's file.
        Seeded {
            file: "config/clusters/opensci/climaterisk.values.yaml",
            edit: |t| format!("{t}grafana:\n  ingress: {{}}\n"),
            line_text: "grafana:",
            key: "grafana",
            says: "support chart",
        },
        // 9. A YAML syntax error.
        Seeded {
            file: "config/clusters/projectpythia/prod.values.yaml",
            edit: |t| format!("{t}bad: yaml: here\n"),
            line_text: "bad: yaml: here",
            key: "",
            says: "invalid YAML",
        },
        // 10. A hub without its domain (third hub).
        Seeded {
            file: "config/clusters/opensci/cluster.yaml",
            edit: |t| t.replacen("  domain: climaterisk.opensci.2i2c.cloud\n", "", 1),
            line_text: "- name: climaterisk",
            key: "hubs[2]",
            says: "\"domain\" is a required property",
        },
        // 11. A value of the wrong type.
        Seeded {
            file: "config/clusters/opensci/common.values.yaml",
            edit: |t| {
                t.replacen(
                    "\njupyterhub:\n",
                    "\njupyterhub:\n  cull:\n    timeout: soon\n",
                    1,
                )
            },
            line_text: "timeout: soon",
            key: "jupyterhub.cull.timeout",
            says: "",
        },
        // 12. A misspelt key of basehub's `custom.2i2c`.
        Seeded {
            file: "config/clusters/2i2c-uk/staging.values.yaml",
            edit: |t| {
                t.replacen(
                    "    2i2c:\n",
                    "    2i2c:\n      add_staff_user_ids_to_admin_user: true\n",
                    1,
                )
            },
            line_text: "add_staff_user_ids_to_admin_user:",
            key: "jupyterhub.custom.2i2c.add_staff_user_ids_to_admin_user",
            says: "add_staff_user_ids_to_admin_users",
        },
    ];
    for s in &seeded {
        let path = repo.join(s.file);
        let before = std::fs::read_to_string(&path).unwrap_or_default();
        let after = (s.edit)(&before);
        assert_ne!(before, after, "the mutation of {} changed nothing", s.file);
        std::fs::write(&path, after).unwrap();
    }
    let (ok, out) = validate(&repo);
    assert!(!ok, "validate passed with seeded mistakes:\n{out}");
    let mut checked = 0;
    for s in seeded
        .iter()
        .filter(|s| !s.says.is_empty() || !s.key.is_empty())
    {
        let text = std::fs::read_to_string(repo.join(s.file)).unwrap();
        let line = line_of(&text, s.line_text);
        let at = format!("{}:{line}:", s.file);
        let hit = out.lines().find(|l| {
            l.contains(&at) && l.contains(": error: ") && l.contains(s.key) && l.contains(s.says)
        });
        assert!(
            hit.is_some(),
            "no error at {at} naming `{}` and saying `{}`:\n{out}",
            s.key,
            s.says
        );
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} seeded mistakes checked");
}

/// `fleet render` of hubs on Kubernetes clusters (aws, gcp): the manifests of `hubfleet render
/// k8s` in the hub's namespace, Secrets redacted, the whole output YAML documents.
#[test]
fn render_of_a_kubernetes_hub_prints_its_manifests() {
    for (cluster, hub) in [("opensci", "staging"), ("leap", "prod")] {
        let out = hubfleet()
            .args(["fleet", "render", cluster, hub, "--dir"])
            .arg(fixture())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains(&format!("release and namespace `{hub}`")),
            "{text}"
        );
        assert!(
            text.contains("# note: hub.extraFiles: not rendered"),
            "{text}"
        );
        let docs: Vec<serde_yaml_ng::Value> = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{e}\n{text}")))
            .collect();
        // The effective values first, then the objects.
        assert!(docs[0].get("jupyterhub").is_some() || docs[0].get("basehub").is_some());
        let kinds: Vec<&str> = docs[1..]
            .iter()
            .map(|d| d["kind"].as_str().unwrap_or_default())
            .collect();
        assert!(kinds.contains(&"Deployment"), "{kinds:?}");
        let hub_deployment = docs
            .iter()
            .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "hub")
            .expect("the hub's Deployment");
        assert_eq!(hub_deployment["metadata"]["namespace"], hub);
        for secret in docs.iter().filter(|d| d["kind"] == "Secret") {
            for (_, v) in secret["data"].as_mapping().into_iter().flatten() {
                assert_eq!(v, "<redacted>");
            }
        }
    }
}
