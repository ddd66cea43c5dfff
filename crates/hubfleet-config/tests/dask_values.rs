//! `dask-gateway:` (daskhub's values): what is read, what is ignored with a warning, and every
//! mistake named at its file:line.

use hubfleet_config::dask::BackendKind;
use hubfleet_config::{fixtures, ConfigError, ConfigSource, HubConfig};

const ENV: &str = "hubfleet:\n  local:\n    python_env: /opt/venv\n";

fn load(yaml: &str) -> HubConfig {
    HubConfig::from_yaml_str(yaml, "hub.yaml").unwrap_or_else(|e| panic!("{e}"))
}

/// Every error of `yaml`: (line, key, message).
fn errors(yaml: &str) -> Vec<(usize, String, String)> {
    let report = HubConfig::check(vec![ConfigSource::text("hub.yaml", yaml)]);
    report
        .errors
        .into_iter()
        .map(|e| match e {
            ConfigError::Invalid {
                file,
                line,
                key,
                message,
                ..
            } => {
                assert_eq!(file, "hub.yaml");
                (line, key.unwrap_or_default(), message)
            }
            e => panic!("unexpected {e}"),
        })
        .collect()
}

fn error_at(yaml: &str, key: &str) -> (usize, String) {
    let all = errors(yaml);
    all.iter()
        .find(|(_, k, _)| k == key)
        .map(|(line, _, msg)| (*line, msg.clone()))
        .unwrap_or_else(|| panic!("no error about {key}: {all:#?}"))
}

#[test]
fn daskhub_values_are_read() {
    let c = load(&format!(
        "{ENV}dask-gateway:
  enabled: true
  gateway:
    prefix: /services/dask-gateway
    auth:
      type: jupyterhub
      jupyterhub:
        jupyterhubServiceName: dask-gateway
    backend:
      scheduler:
        cores: {{request: 0.01, limit: 1}}
        memory: {{request: 128M, limit: 1G}}
      worker:
        cores: {{limit: 2}}
        memory: {{limit: 2G}}
        threads: 2
    clusterManager:
      idleTimeout: 1800
      clusterMaxCores: 4
      clusterMaxMemory: 8G
      clusterMaxWorkers: 3
    extraConfig:
      01-hello: |
        c.DaskGateway.log_level = 'DEBUG'
  local:
    scheduler_address: 127.0.0.1:8786
    backend: unsafe-local
"
    ));
    let d = &c.dask_gateway;
    assert!(d.enabled);
    assert_eq!(d.service_name(), "dask-gateway");
    assert_eq!(d.gateway.backend.scheduler.cores.request, Some(10));
    assert_eq!(d.gateway.backend.scheduler.cores.limit, Some(1000));
    assert_eq!(
        d.gateway.backend.scheduler.memory.limit.as_deref(),
        Some("1G")
    );
    assert_eq!(d.gateway.backend.worker.cores.limit, Some(2000));
    assert_eq!(d.gateway.backend.worker.threads, Some(2));
    assert_eq!(d.gateway.cluster_manager.idle_timeout, Some(1800));
    assert_eq!(d.gateway.cluster_manager.cluster_max_cores, Some(4000));
    assert_eq!(
        d.gateway.cluster_manager.cluster_max_memory.as_deref(),
        Some("8G")
    );
    assert_eq!(d.gateway.cluster_manager.cluster_max_workers, Some(3));
    assert_eq!(d.gateway.extra_config.len(), 1);
    assert_eq!(d.local.scheduler_address.unwrap().port(), 8786);
    assert_eq!(d.local.backend, BackendKind::UnsafeLocal);
}

#[test]
fn kubernetes_keys_are_ignored_with_a_warning() {
    let c = load(&format!(
        "{ENV}dask-gateway:
  enabled: true
  gateway:
    backend:
      imagePullSecrets: [name: image-pull-secret]
      worker:
        extraPodConfig:
          nodeSelector: {{k8s.dask.org/node-purpose: worker}}
  traefik:
    service:
      type: ClusterIP
"
    ));
    let warnings: Vec<String> = c.warnings.iter().map(|w| w.to_string()).collect();
    for key in [
        "dask-gateway.gateway.backend.imagePullSecrets",
        "dask-gateway.gateway.backend.worker.extraPodConfig",
        "dask-gateway.traefik",
    ] {
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(key) && w.contains("ignored")),
            "{key}: {warnings:#?}"
        );
    }
}

#[test]
fn bad_values_are_named_at_their_line() {
    let yaml = format!(
        "{ENV}dask-gateway:
  enabled: true
  gateway:
    prefix: /
    auth:
      type: simple
    backend:
      worker:
        cores: {{request: 4, limit: 2}}
        memory: {{limit: lots}}
    clusterManager:
      clusterMaxWorkers: -1
      idleTimout: 10
"
    );
    // Lines count from 1; ENV takes 3.
    assert_eq!(error_at(&yaml, "dask-gateway.gateway.prefix").0, 7);
    let (line, msg) = error_at(&yaml, "dask-gateway.gateway.auth.type");
    assert_eq!(line, 9);
    assert!(msg.contains("jupyterhub"), "{msg}");
    let (line, msg) = error_at(&yaml, "dask-gateway.gateway.backend.worker.memory.limit");
    assert_eq!(line, 13);
    assert!(msg.contains("not a memory size"), "{msg}");
    let (line, _) = error_at(
        &yaml,
        "dask-gateway.gateway.clusterManager.clusterMaxWorkers",
    );
    assert_eq!(line, 15);
    let (line, msg) = error_at(&yaml, "dask-gateway.gateway.clusterManager.idleTimout");
    assert_eq!(line, 16);
    assert!(msg.contains("did you mean `idleTimeout`"), "{msg}");
}

#[test]
fn the_local_backend_needs_system_users() {
    let yaml = format!("{ENV}dask-gateway:\n  enabled: true\n  local:\n    backend: local\n");
    let (line, msg) = error_at(&yaml, "dask-gateway.local.backend");
    assert_eq!(line, 7);
    assert!(msg.contains("system_users"), "{msg}");
}

#[test]
fn request_above_limit_and_missing_python_env_are_errors() {
    let yaml = "dask-gateway:
  enabled: true
  gateway:
    backend:
      scheduler:
        cores: {request: 2, limit: 1}
";
    let (line, msg) = error_at(yaml, "dask-gateway.gateway.backend.scheduler.cores.request");
    assert_eq!(line, 6);
    assert!(msg.contains("above the limit"), "{msg}");
    let (line, msg) = error_at(yaml, "dask-gateway.enabled");
    assert_eq!(line, 2);
    assert!(msg.contains("hubfleet.local.python_env"), "{msg}");
}

/// The fleet's daskhub sections read (their `jupyterhub:` siblings aside): leap's scheduler
/// limits, big-binder's pull secrets (ignored).
#[test]
fn fleet_daskhub_sections_load() {
    let path =
        fixtures::fixture("2i2c-infrastructure/config/clusters/leap/daskhub-common.values.yaml")
            .unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(path).expect("leap's values");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let section = serde_yaml_ng::to_string(&doc["basehub"]["dask-gateway"]).unwrap();
    let c = load(&format!(
        "{ENV}dask-gateway:\n{}",
        section
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    ));
    assert_eq!(
        c.dask_gateway
            .gateway
            .backend
            .scheduler
            .memory
            .limit
            .as_deref(),
        Some("4G")
    );
    assert_eq!(
        c.dask_gateway.gateway.backend.scheduler.cores.limit,
        Some(2000)
    );
}
