//! `hubfleet.local.gpus`, GPU requests in profiles and `singleuser.storage.capacity`.

use hubfleet_config::HubConfig;

#[test]
fn storage_capacity_is_read_and_the_other_storage_keys_are_ignored() {
    let c = HubConfig::from_yaml_str(
        "singleuser:\n  storage:\n    type: dynamic\n    capacity: 10Gi\n    homeMountPath: /home/jovyan\n",
        "t.yaml",
    )
    .unwrap();
    assert_eq!(c.singleuser.storage.capacity, Some(10 << 30));
    let keys: Vec<&str> = c.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "singleuser.storage.type",
            "singleuser.storage.homeMountPath"
        ]
    );
    let e = HubConfig::from_yaml_str("singleuser:\n  storage:\n    capacity: lots\n", "t.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("t.yaml:3:15: singleuser.storage.capacity:")
            && e.contains("not a memory size"),
        "{e}"
    );
}

const GPU_PROFILE: &str = "singleuser:
  profileList:
    - display_name: GPU
      kubespawner_override:
        extra_resource_limits:
          nvidia.com/gpu: COUNT
";

#[test]
fn gpu_requests_are_checked_and_not_reported_as_kubernetes_only() {
    let c = HubConfig::from_yaml_str(
        &format!(
            "{}hubfleet:\n  local:\n    gpus: [0, 1]\n",
            GPU_PROFILE.replace("COUNT", "'1'")
        ),
        "t.yaml",
    )
    .unwrap();
    assert_eq!(c.hubfleet.local.gpus, [0, 1]);
    assert_eq!(
        c.singleuser.profile_list[0].overrides.gpu_request(),
        Ok(Some(1))
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    // More than the hub has: a warning at the request.
    let c = HubConfig::from_yaml_str(&GPU_PROFILE.replace("COUNT", "2"), "t.yaml").unwrap();
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.warnings[0]
        .to_string()
        .contains("asks for 2 GPU(s) but hubfleet.local.gpus lists 0"));

    let e = HubConfig::from_yaml_str(&GPU_PROFILE.replace("COUNT", "one"), "t.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("t.yaml:6:11:") && e.contains("`\"one\"` is not a number of GPUs"),
        "{e}"
    );
    let e = HubConfig::from_yaml_str("hubfleet:\n  local:\n    gpus: [0, 1, 0]\n", "t.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("t.yaml:3:18:") && e.contains("GPU 0 is listed twice"),
        "{e}"
    );
}
