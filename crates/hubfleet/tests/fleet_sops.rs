//! `hubfleet fleet secrets`: sops files with the age backend. Files made by the real sops
//! (3.11.0, `tests/fixtures/sops/vectors/enc-by-sops.*`, encrypted to the age key made by
//! Debian's `age-keygen` beside them) decrypt, and files hubfleet encrypts decrypt with an
//! independent implementation, the npm `sops-age` (installed by `scripts/test` in
//! `tests/fixtures/sops`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sops")
}

fn vectors() -> PathBuf {
    fixtures().join("vectors")
}

fn key_file() -> PathBuf {
    vectors().join("test-age-key.txt")
}

fn recipient() -> String {
    let text = std::fs::read_to_string(key_file()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("age-keygen writes the public key in a comment")
        .trim()
        .to_owned()
}

fn hubfleet(args: &[&str], key_file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hubfleet"))
        .args(["fleet", "secrets"])
        .args(args)
        .env_remove("SOPS_AGE_KEY")
        .env_remove("SOPS_AGE_RECIPIENTS")
        .env("SOPS_AGE_KEY_FILE", key_file)
        .output()
        .unwrap()
}

fn yaml(text: &str) -> serde_yaml_ng::Value {
    serde_yaml_ng::from_str(text).unwrap()
}

fn json_of(doc: &serde_yaml_ng::Value) -> serde_json::Value {
    serde_json::to_value(doc).unwrap()
}

#[test]
fn files_made_by_the_real_sops_decrypt() {
    for (enc, plain) in [
        ("enc-by-sops.secret.values.yaml", "plain.values.yaml"),
        ("enc-by-sops.secret.json", "plain.json"),
    ] {
        let out = hubfleet(
            &["decrypt", vectors().join(enc).to_str().unwrap()],
            &key_file(),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{enc}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected = std::fs::read_to_string(vectors().join(plain)).unwrap();
        assert_eq!(json_of(&yaml(&stdout)), json_of(&yaml(&expected)), "{enc}");
    }
}

#[test]
fn a_changed_value_fails_with_the_file_named() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(vectors().join("enc-by-sops.secret.values.yaml")).unwrap();
    // A value in clear changed by hand: the MAC no longer matches.
    let file = tmp.path().join("enc-changed.secret.values.yaml");
    std::fs::write(&file, text.replace("left in clear", "changed by hand")).unwrap();
    let out = hubfleet(&["decrypt", file.to_str().unwrap()], &key_file());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("enc-changed.secret.values.yaml") && stderr.contains("MAC does not match"),
        "{stderr}"
    );
    // An encrypted value moved to another key does not decrypt there (its path is authenticated).
    let moved = text.replacen("client_id: ENC", "client_idx: ENC", 1);
    std::fs::write(&file, moved).unwrap();
    let out = hubfleet(&["decrypt", file.to_str().unwrap()], &key_file());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not decrypt"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another age key cannot open it.
    let other = tmp.path().join("other-key.txt");
    std::fs::write(
        &other,
        "AGE-SECRET-KEY-1TL46WEDDXNKVYSNHTTEC4AG46X66Y23A3R86Y6C40SFZYG87UYHQ569XRH\n",
    )
    .unwrap();
    let out = hubfleet(
        &[
            "decrypt",
            vectors()
                .join("enc-by-sops.secret.values.yaml")
                .to_str()
                .unwrap(),
        ],
        &other,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot decrypt"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kms_files_are_refused_per_file_with_their_backend() {
    let file = hubfleet_config::fixtures::fixture(
        "2i2c-infrastructure/config/clusters/opensci/enc-staging.secret.values.yaml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = hubfleet(&["decrypt", file.to_str().unwrap()], &key_file());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("enc-staging.secret.values.yaml")
            && stderr.contains("gcp kms: projects/")
            && stderr.contains("age backend only"),
        "{stderr}"
    );
}

/// Decrypt `file` with the npm sops-age (node), as JSON.
fn sops_age_decrypt(file: &Path, kind: &str) -> serde_json::Value {
    let fixture = fixtures();
    assert!(
        fixture.join("node_modules/sops-age").is_dir(),
        "the npm sops-age is not installed in {}: run scripts/test (or `npm ci` there)",
        fixture.display()
    );
    let key = std::fs::read_to_string(key_file()).unwrap();
    let secret = key
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap();
    let script = "import('sops-age').then(async (m) => {\n\
        const fs = await import('node:fs');\n\
        const out = await m.decryptSops(fs.readFileSync(process.argv[1], 'utf8'), { secretKey: process.env.KEY, fileType: process.argv[2] });\n\
        process.stdout.write(JSON.stringify(out));\n\
      }).catch((e) => { console.error(e.message); process.exit(1); });";
    let out = Command::new("node")
        .current_dir(&fixture)
        .args(["-e", script])
        .arg(file)
        .arg(kind)
        .env("KEY", secret)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "sops-age could not decrypt {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn files_hubfleet_encrypts_decrypt_with_npm_sops_age_and_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    for (plain, kind) in [("plain.values.yaml", "yaml"), ("plain.json", "json")] {
        let file = tmp.path().join(format!("enc-{plain}"));
        std::fs::copy(vectors().join(plain), &file).unwrap();
        let out = hubfleet(
            &["encrypt", file.to_str().unwrap(), "--age", &recipient()],
            &key_file(),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let encrypted = std::fs::read_to_string(&file).unwrap();
        assert!(
            encrypted.contains("ENC[AES256_GCM,data:")
                && !encrypted.contains("0123456789abcdef")
                && !encrypted.contains("AKIAEXAMPLE")
        );
        let expected = json_of(&yaml(
            &std::fs::read_to_string(vectors().join(plain)).unwrap(),
        ));
        assert_eq!(
            sops_age_decrypt(&file, kind),
            expected,
            "{plain} through sops-age"
        );
        let out = hubfleet(&["decrypt", file.to_str().unwrap()], &key_file());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            json_of(&yaml(&String::from_utf8_lossy(&out.stdout))),
            expected,
            "{plain} through hubfleet"
        );
        // Encrypting twice is refused.
        let again = hubfleet(
            &["encrypt", file.to_str().unwrap(), "--age", &recipient()],
            &key_file(),
        );
        assert!(!again.status.success());
    }
}

#[test]
fn edit_round_trips_through_the_editor() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("enc-edit.secret.values.yaml");
    std::fs::copy(vectors().join("enc-by-sops.secret.values.yaml"), &file).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hubfleet"))
        .args(["fleet", "secrets", "edit"])
        .arg(&file)
        .env("SOPS_AGE_KEY_FILE", key_file())
        .env("EDITOR", "sed -i s/0123456789abcdef/fedcba9876543210/")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!std::fs::read_to_string(&file)
        .unwrap()
        .contains("fedcba9876543210"));
    let out = hubfleet(&["decrypt", file.to_str().unwrap()], &key_file());
    let plain = String::from_utf8_lossy(&out.stdout);
    assert!(plain.contains("client_id: fedcba9876543210"), "{plain}");
    // Still to the same recipient, and sops-age agrees.
    assert_eq!(
        sops_age_decrypt(&file, "yaml")["jupyterhub"]["hub"]["config"]["GitHubOAuthenticator"]
            ["client_id"],
        "fedcba9876543210"
    );
}
