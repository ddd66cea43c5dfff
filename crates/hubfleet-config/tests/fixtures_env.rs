//! `HUBFLEET_SHARED_DIR` handling. The only test in this binary, because it sets the variable.

use hubfleet_config::fixtures;

#[test]
fn shared_dir_follows_the_environment_variable() {
    let dir = tempfile::tempdir().unwrap();

    // Missing directory: a clear message naming the path and the variable.
    let missing = dir.path().join("no-such-shared");
    std::env::set_var(fixtures::SHARED_DIR_ENV, &missing);
    let msg = fixtures::shared_dir().unwrap_err();
    assert_eq!(
        msg,
        format!(
            "fixtures not found at {}: put the shared reference material there or set HUBFLEET_SHARED_DIR",
            missing.display()
        )
    );
    assert_eq!(fixtures::fixture("zero-to-jupyterhub").unwrap_err(), msg);

    // Existing directory without the requested fixture.
    std::env::set_var(fixtures::SHARED_DIR_ENV, dir.path());
    assert_eq!(fixtures::shared_dir().unwrap(), dir.path());
    let msg = fixtures::fixture("zero-to-jupyterhub").unwrap_err();
    assert!(
        msg.starts_with(&format!(
            "fixtures not found at {}",
            dir.path().join("fixtures/zero-to-jupyterhub").display()
        )),
        "{msg}"
    );

    // Present.
    std::fs::create_dir_all(dir.path().join("fixtures/zero-to-jupyterhub")).unwrap();
    assert_eq!(
        fixtures::fixture("zero-to-jupyterhub").unwrap(),
        dir.path().join("fixtures/zero-to-jupyterhub")
    );

    // Empty means unset: back to the default location.
    std::env::set_var(fixtures::SHARED_DIR_ENV, "");
    match fixtures::shared_dir() {
        Ok(p) => assert_eq!(p, fixtures::default_shared_dir()),
        Err(m) => assert!(m.contains(&fixtures::default_shared_dir().display().to_string())),
    }
}
