//! Round trip: `hubfleet export` of a hub with users, groups (members, properties), an admin,
//! a custom role (held by a user and a group) and files in homes (modes 0600, 0755, 0640, a
//! 0750 subfolder, a file owned by another uid, a symbolic link) writes `users.json`,
//! `homes.tar.zst` and the README's restore steps; a fresh hub imports them with
//! `hubfleet import --from DIR --config hub.yaml`, and then shows the same people through its
//! REST API and has the same files, modes and links, owned by the homes directory's owner (never
//! the archive's uids). A second import changes nothing;
//! `--dry-run` changes nothing; an archive with a link out of its home or a device file is
//! refused before anything is written. The first hub keeps its data in SQLite, the fresh one in
//! PostgreSQL (`HUBFLEET_TEST_POSTGRES_URL`), so both stores are read and written.

mod common;
#[path = "support/people_api.rs"]
mod people_api;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Run, TestHub};
use people_api::Api;
use reqwest::Method;
use serde_json::json;

const TOKEN: &str = "import-test-token-0123456789abcdef";

/// A hub with a service token for the test; `role` goes under `hub.loadRoles`, `db` under
/// `hub:`, `auth` under `Authenticator:`.
fn hub_config(role: &str, db: &str, auth: &str) -> String {
    format!(
        r#"
hub:
  services:
    tester:
      apiToken: {TOKEN}
  loadRoles:
    tester:
      scopes: [admin:users, admin:groups]
      services: [tester]
{role}
{db}
  config:
    JupyterHub:
      authenticator_class: dummy
    Authenticator:
      allow_all: true
{auth}
"#
    )
}

const COURSE_STAFF: &str = "    course-staff:
      description: Teaching assistants
      scopes: [admin-ui, list:users, read:users]
      users: [cy]
      groups: [staff]";

fn hubfleet(args: &[&str], paths: &[(&str, &Path)]) -> Run {
    let mut all: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    for (flag, path) in paths {
        all.extend([OsStr::new(flag), path.as_os_str()]);
    }
    common::run_hubfleet(all)
}

fn write(path: &Path, content: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Every entry below `dir`: relative path → (kind and content or link target, mode, uid, gid).
fn tree(dir: &Path) -> BTreeMap<PathBuf, (String, u32, u32, u32)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (String, u32, u32, u32)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = path.symlink_metadata().unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("link to {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                "folder".to_string()
            } else {
                format!("file: {}", std::fs::read_to_string(&path).unwrap())
            };
            let mode = if meta.file_type().is_symlink() {
                0
            } else {
                meta.mode() & 0o7777
            };
            out.insert(
                path.strip_prefix(root).unwrap().to_path_buf(),
                (what, mode, meta.uid(), meta.gid()),
            );
            if meta.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hubs_people_and_homes_move_to_a_fresh_hub() {
    let old = TestHub::start(&hub_config(COURSE_STAFF, "", "      admin_users: [ada]"));
    let old_api = Api::new(old.direct_url(""), TOKEN);
    // `ada` is an admin from the config.
    let (status, body) = old_api
        .call(
            Method::POST,
            "/users",
            Some(json!({"usernames": ["bob", "dee"]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // `staff` and `cy` exist: the hub made them for the role.
    let (status, body) = old_api
        .call(
            Method::POST,
            "/groups/staff/users",
            Some(json!({"users": ["ada", "bob"]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = old_api
        .call(
            Method::POST,
            "/groups/readers",
            Some(json!({"users": ["dee"]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = old_api
        .call(
            Method::PUT,
            "/groups/readers/properties",
            Some(json!({"room": 12})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let homes = old.data_dir().join("homes");
    write(&homes.join("ada/notes.txt"), "private notes", 0o600);
    write(&homes.join("ada/run.sh"), "#!/bin/sh\necho hi\n", 0o755);
    write(&homes.join("ada/results/table.csv"), "a,b\n1,2\n", 0o640);
    std::fs::set_permissions(
        homes.join("ada/results"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    std::os::unix::fs::symlink("results/table.csv", homes.join("ada/latest")).unwrap();
    write(&homes.join("bob/hello.py"), "print('hello')\n", 0o644);
    let owned_elsewhere = homes.join("bob/hello.py");
    let as_root = nix::unistd::geteuid().is_root();
    if as_root {
        std::os::unix::fs::chown(&owned_elsewhere, Some(4321), Some(4322)).unwrap();
    }

    let export_dir = tempfile::tempdir().unwrap();
    let export = hubfleet(
        &["export"],
        &[("--config", &old.config), ("--out", export_dir.path())],
    );
    assert!(export.ok, "{}\n{}", export.stdout, export.stderr);
    assert!(export.stdout.contains("2 homes"), "{}", export.stdout);
    let readme = std::fs::read_to_string(export_dir.path().join("README.md")).unwrap();
    assert!(
        readme.contains("hubfleet import --from DIR") && readme.contains("zstd -dc homes.tar.zst"),
        "{readme}"
    );
    let users_json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(export_dir.path().join("users.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(users_json["format"], "hubfleet-users/1");
    let archive_mode = std::fs::metadata(export_dir.path().join("homes.tar.zst"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(archive_mode & 0o777, 0o600, "homes hold private files");

    let mut fresh = TestHub::start(&hub_config(
        "",
        &format!(
            "  db:\n    type: postgres\n    url: {}",
            common::fresh_postgres_database("import_roundtrip").await
        ),
        "",
    ));
    fresh.kill();
    let fresh_homes = fresh.data_dir().join("homes");
    let roles_file = fresh.config.parent().unwrap().join("imported-roles.yaml");

    let dry = hubfleet(
        &["import", "--dry-run"],
        &[("--from", export_dir.path()), ("--config", &fresh.config)],
    );
    assert!(dry.ok, "{}\n{}", dry.stdout, dry.stderr);
    assert!(dry.stdout.contains("would change"), "{}", dry.stdout);
    assert!(
        dry.stdout.contains("would restore 2 homes"),
        "{}",
        dry.stdout
    );
    assert!(
        !fresh_homes.join("ada").exists(),
        "--dry-run restored homes"
    );
    assert!(!roles_file.exists(), "--dry-run wrote the roles file");
    let listed = hubfleet(&["users", "list"], &[("--config", &fresh.config)]);
    assert_eq!(listed.stdout, "", "--dry-run created users");

    let first = hubfleet(
        &["import"],
        &[("--from", export_dir.path()), ("--config", &fresh.config)],
    );
    assert!(first.ok, "{}\n{}", first.stdout, first.stderr);
    assert!(
        first.stdout.contains("done: 4 users created"),
        "{}",
        first.stdout
    );
    let again = hubfleet(
        &["import"],
        &[
            ("--from", export_dir.path()),
            ("--config", &fresh.config),
            ("--config", &roles_file),
        ],
    );
    assert!(again.ok, "{}\n{}", again.stdout, again.stderr);
    assert!(
        again.stdout.contains("nothing to change"),
        "{}",
        again.stdout
    );

    fresh.extra_configs = vec![roles_file];
    fresh.launch();
    let fresh_api = Api::new(fresh.direct_url(""), TOKEN);
    let (old_users, old_groups) = old_api.people().await;
    let (new_users, new_groups) = fresh_api.people().await;
    assert_eq!(old_users.len(), 4, "{old_users:?}");
    assert_eq!(old_users["cy"]["roles"], json!(["course-staff", "user"]));
    assert_eq!(new_users, old_users);
    assert_eq!(new_groups, old_groups);

    let old_tree = tree(&homes);
    let new_tree = tree(&fresh_homes);
    assert_eq!(
        old_tree[Path::new("ada/notes.txt")].1,
        0o600,
        "the files as made"
    );
    // Without system_users every file goes to the homes directory's owner: the archive's
    // uids are another machine's.
    let mut expected = old_tree.clone();
    if as_root {
        let homes_owner = std::fs::metadata(&fresh_homes).unwrap();
        for (_, _, uid, gid) in expected.values_mut() {
            (*uid, *gid) = (homes_owner.uid(), homes_owner.gid());
        }
        assert_ne!(
            (
                new_tree[Path::new("bob/hello.py")].2,
                new_tree[Path::new("bob/hello.py")].3
            ),
            (4321, 4322)
        );
    }
    assert_eq!(new_tree, expected);
}

/// A zstd-compressed tar at `path`, its entries added by `fill`.
fn archive(
    path: &Path,
    fill: impl FnOnce(&mut tar::Builder<zstd::stream::AutoFinishEncoder<'static, std::fs::File>>),
) {
    let file = std::fs::File::create(path).unwrap();
    let encoder = zstd::Encoder::new(file, 3).unwrap().auto_finish();
    let mut builder = tar::Builder::new(encoder);
    fill(&mut builder);
    builder.into_inner().unwrap();
}

/// A directory to import into: `hub.yaml` with `data_dir` in it (and `extra` under
/// `hubfleet:`), and an empty export directory.
struct ImportDir {
    dir: tempfile::TempDir,
    config: PathBuf,
    data: PathBuf,
    from: PathBuf,
}

fn import_dir(extra: &str) -> ImportDir {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hub.yaml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!("hubfleet:\n  data_dir: {}\n{extra}", data.display()),
    )
    .unwrap();
    let from = dir.path().join("export");
    std::fs::create_dir_all(&from).unwrap();
    ImportDir {
        dir,
        config,
        data,
        from,
    }
}

/// A homes archive with a link out of its home, and a file written through it.
fn escaping_archive(path: &Path) {
    archive(path, |builder| {
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        link.set_mode(0o777);
        builder
            .append_link(&mut link, "ada/escape", "../../outside")
            .unwrap();
        let mut file = tar::Header::new_gnu();
        file.set_size(5);
        file.set_mode(0o644);
        builder
            .append_data(&mut file, "ada/escape/owned", &b"owned"[..])
            .unwrap();
    });
}

/// A homes archive with a character device (as `/dev/sda` would be).
fn device_archive(path: &Path) {
    archive(path, |builder| {
        let mut device = tar::Header::new_gnu();
        device.set_entry_type(tar::EntryType::Char);
        device.set_size(0);
        device.set_mode(0o666);
        device.set_device_major(8).unwrap();
        device.set_device_minor(0).unwrap();
        builder
            .append_data(&mut device, "ada/disk", std::io::empty())
            .unwrap();
    });
}

/// A homes archive in which ada's file is a hard link to bob's.
fn cross_home_link_archive(path: &Path) {
    archive(path, |builder| {
        let mut secret = tar::Header::new_gnu();
        secret.set_size(6);
        secret.set_mode(0o600);
        builder
            .append_data(&mut secret, "bob/secret", &b"secret"[..])
            .unwrap();
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Link);
        link.set_size(0);
        link.set_mode(0o600);
        builder
            .append_link(&mut link, "ada/copy", "bob/secret")
            .unwrap();
    });
}

#[test]
fn setuid_and_setgid_bits_are_never_restored() {
    let ImportDir {
        dir: _dir,
        config,
        data,
        from,
    } = import_dir("");
    // A setuid, setgid program.
    plain_archive(&from.join("homes.tar.zst"), 0o6755, &[("ada/tool", "#!x")]);
    let run = hubfleet(&["import"], &[("--from", &from), ("--config", &config)]);
    assert!(run.ok, "{}\n{}", run.stdout, run.stderr);
    let mode = std::fs::metadata(data.join("homes/ada/tool"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755, "mode {mode:o}");
}

#[test]
fn an_archive_that_leaves_its_home_is_refused() {
    for (archive, refused, why) in [
        (
            escaping_archive as fn(&Path),
            "ada/escape",
            "outside the home",
        ),
        (device_archive, "ada/disk", "device file"),
        (cross_home_link_archive, "ada/copy", "in another home"),
    ] {
        refused_import(archive, refused, why);
    }
}

fn refused_import(archive: fn(&Path), refused: &str, why: &str) {
    let ImportDir {
        dir, config, from, ..
    } = import_dir("");
    archive(&from.join("homes.tar.zst"));
    let run = hubfleet(&["import"], &[("--from", &from), ("--config", &config)]);
    assert!(!run.ok, "{}", run.stdout);
    assert!(
        run.stderr
            .contains(&format!("refusing the entry `{refused}`"))
            && run.stderr.contains(why),
        "{}",
        run.stderr
    );
    assert!(!dir.path().join("data/homes/ada").exists());
    assert!(!dir.path().join("outside").exists());
}

/// An archive of plain files with `mode`, owned by root, as `hubfleet export` writes them.
fn plain_archive(path: &Path, mode: u32, files: &[(&str, &str)]) {
    archive(path, |builder| {
        for (name, content) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(mode);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            builder
                .append_data(&mut header, name, content.as_bytes())
                .unwrap();
        }
    });
}

/// Importing over homes that exist: links already on disk in a home (to another home, out of
/// the homes) are never followed, nor is a hard link on disk written through. Those entries
/// are reported and the import fails naming them; the other entries are restored.
#[test]
fn an_import_never_follows_links_already_in_a_home() {
    let ImportDir {
        dir,
        config,
        data,
        from,
    } = import_dir("");
    let homes = data.join("homes");
    write(&homes.join("bob/secret"), "bob's", 0o600);
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(homes.join("alice")).unwrap();
    std::os::unix::fs::symlink("../bob", homes.join("alice/notes")).unwrap();
    std::os::unix::fs::symlink(&outside, homes.join("alice/away")).unwrap();
    std::fs::hard_link(homes.join("bob/secret"), homes.join("alice/hard")).unwrap();

    plain_archive(
        &from.join("homes.tar.zst"),
        0o644,
        &[
            ("alice/notes/x", "planted"),
            ("alice/away/y", "planted"),
            ("alice/hard", "alice's own"),
            ("alice/work/kept.txt", "restored"),
        ],
    );
    let run = hubfleet(&["import"], &[("--from", &from), ("--config", &config)]);
    assert!(!run.ok, "{}\n{}", run.stdout, run.stderr);
    for (entry, link) in [
        ("alice/notes/x", "alice/notes"),
        ("alice/away/y", "alice/away"),
    ] {
        assert!(
            run.stderr.contains(&format!(
                "{entry} (not restored: {link} is a symbolic link on disk"
            )),
            "{}",
            run.stderr
        );
    }
    assert!(
        run.stderr
            .contains("2 of the archive's entries were not restored"),
        "{}",
        run.stderr
    );
    assert!(!homes.join("bob/x").exists(), "written into bob's home");
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "written out of the homes"
    );
    assert_eq!(
        std::fs::read_to_string(homes.join("bob/secret")).unwrap(),
        "bob's",
        "written through a hard link into bob's file"
    );
    assert_eq!(
        std::fs::read_to_string(homes.join("alice/hard")).unwrap(),
        "alice's own"
    );
    assert_eq!(
        std::fs::read_to_string(homes.join("alice/work/kept.txt")).unwrap(),
        "restored"
    );
    for link in ["alice/notes", "alice/away"] {
        assert!(
            homes.join(link).symlink_metadata().unwrap().is_symlink(),
            "{link} is left as it was"
        );
    }
}

/// With `system_users`, a restored home goes to its user's account on this machine (by name:
/// uids differ between machines), if the hub may use that account; other homes go to root
/// (the user's first start gives the home to the account), never to the archive's numeric
/// owner, which here may be someone else's account. Needs root (CI runs the tests as root).
#[test]
fn with_system_users_homes_go_to_their_users_accounts() {
    use std::os::unix::fs::MetadataExt;
    assert!(
        nix::unistd::geteuid().is_root(),
        "system users need root (CI runs the tests as root)"
    );
    let user = format!("imp{}", std::process::id());
    let stranger = format!("imq{}", std::process::id());
    let _accounts = common::fresh_system_accounts(&[&user, &stranger]);
    let account = hubfleet_spawn::system_user::account_name(&user);
    let stranger_account = hubfleet_spawn::system_user::account_name(&stranger);
    for name in [&account, &stranger_account] {
        let made = Command::new("useradd")
            .args(["--no-create-home", "--user-group", name])
            .status()
            .unwrap();
        assert!(made.success(), "useradd {name}");
    }
    let uid_of = |name: &str| {
        nix::unistd::User::from_name(name)
            .unwrap()
            .unwrap()
            .uid
            .as_raw()
    };
    // The operator allows `account`; `stranger_account` is someone else's.
    let ImportDir {
        dir: _dir,
        config,
        data,
        from,
    } = import_dir(&format!(
        "  local:\n    system_users: true\n    existing_system_users: [{account}]\n"
    ));
    // The stranger's file says it is owned by an account of this machine that is not hers.
    let other = (
        uid_of(&stranger_account),
        nix::unistd::User::from_name(&stranger_account)
            .unwrap()
            .unwrap()
            .gid
            .as_raw(),
    );
    archive(&from.join("homes.tar.zst"), |builder| {
        for (name, (uid, gid)) in [
            (format!("{user}/notes.txt"), (4321, 4322)),
            (format!("{stranger}/notes.txt"), other),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(2);
            header.set_mode(0o600);
            header.set_uid(uid.into());
            header.set_gid(gid.into());
            header.set_mtime(0);
            builder.append_data(&mut header, &name, &b"hi"[..]).unwrap();
        }
    });

    let run = hubfleet(&["import"], &[("--from", &from), ("--config", &config)]);
    assert!(run.ok, "{}\n{}", run.stdout, run.stderr);
    let homes = data.join("homes");
    let owner = |path: &Path| {
        let meta = path.symlink_metadata().unwrap();
        (meta.uid(), meta.gid())
    };
    let expected = uid_of(&account);
    assert_eq!(owner(&homes.join(&user).join("notes.txt")).0, expected);
    assert_eq!(owner(&homes.join(&user)).0, expected, "the home itself");
    assert_ne!(
        owner(&homes.join(&stranger).join("notes.txt")).0,
        other.0,
        "the archive's uid is someone else's account here"
    );
    assert_eq!(
        owner(&homes.join(&stranger).join("notes.txt")),
        (0, 0),
        "an account the hub may not use gets nothing: root keeps it until the first start"
    );
}
