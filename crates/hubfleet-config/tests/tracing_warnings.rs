//! Config warnings reach the log through tracing. Alone in its own test binary: tracing caches
//! each callsite's interest process-wide, and another test's thread reaching the same warning
//! while this test's subscriber appears could leave it cached as unwanted (it did, in CI).

use hubfleet_config::HubConfig;

#[test]
fn ignored_keys_are_logged_with_tracing() {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let yaml = "singleuser:\n  image:\n    name: x\n";
    tracing::subscriber::with_default(subscriber, || {
        HubConfig::from_yaml_str(yaml, "test.yaml").unwrap();
    });
    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(out.contains("WARN"), "{out}");
    assert!(out.contains("singleuser.image"), "{out}");
    assert!(
        out.contains("is not mapped to a local environment"),
        "{out}"
    );
    assert!(out.contains("line=2"), "{out}");
}
