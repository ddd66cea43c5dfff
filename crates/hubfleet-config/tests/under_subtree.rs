//! `ConfigSource::under`: a wrapper chart's file (2i2c's basehub, `jupyterhub:`) read as the
//! hub's values, with findings on the lines of the file.

use hubfleet_config::{ConfigSource, HubConfig, KeyPositions, KeySeg};

#[test]
fn a_subtree_is_read_and_findings_keep_the_file_lines() {
    let text = "nfs:\n  enabled: true\njupyterhub:\n  singleuser:\n    memroy: {limit: 1G}\n  cull:\n    timeout: 60\n";
    let report = HubConfig::check(vec![
        ConfigSource::text("hub.values.yaml", text).under("jupyterhub")
    ]);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    let error = &report.errors[0];
    assert_eq!(error.line(), Some(5));
    assert_eq!(error.key(), Some("singleuser.memroy"));
    assert!(error.to_string().contains("memory"), "{error}");

    let clean = "nfs: {}\njupyterhub:\n  cull:\n    timeout: 60\n";
    let report = HubConfig::check(vec![
        ConfigSource::text("hub.values.yaml", clean).under("jupyterhub")
    ]);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.config.unwrap().cull.timeout, 60);
}

#[test]
fn key_positions_find_keys_and_their_closest_parent() {
    let text = "hubs:\n- name: a\n  domain: x\n- name: b\n  domian: y\n";
    let p = KeyPositions::of(text);
    assert_eq!(
        p.exact(&[KeySeg::Key("hubs"), KeySeg::Index(1), KeySeg::Key("domian")]),
        Some((5, 3))
    );
    assert_eq!(
        p.find(&[
            KeySeg::Key("hubs"),
            KeySeg::Index(1),
            KeySeg::Key("missing")
        ])
        .0,
        4
    );
}
