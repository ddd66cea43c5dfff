//! A free port for a test's hub, proxy or stand-in, shared by `common` and `proxy_common`.

use std::net::TcpListener;

/// A port nothing listens on now, and not one this test process handed out before: the kernel
/// can give the same ephemeral port to two binds in a row, and a test that chose one port for a
/// stand-in and another for the hub once got the same port for both.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}
