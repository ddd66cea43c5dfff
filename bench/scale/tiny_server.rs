//! The smallest single-user server both hubs accept, so that a spawn costs what the hub does
//! and not what JupyterLab does: it listens where the hub says (`JUPYTERHUB_SERVICE_URL`),
//! answers every request with 200 (the readiness probe `GET <prefix>api` included), and posts
//! its activity to `JUPYTERHUB_ACTIVITY_URL` with its API token once at start and then every
//! `TINY_ACTIVITY_INTERVAL` seconds (300, as jupyterhub-singleuser). Standard library only:
//! `rustc -O tiny_server.rs` builds it (bench/scale/bench.py does).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `http://host:port/rest` → (`host:port`, `/rest`).
fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Some((authority.to_string(), path.to_string()))
}

/// Now as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC).
fn now_iso() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_micros()
    )
}

fn post_activity(url: &str, token: &str, server_name: &str) {
    let Some((authority, path)) = split_url(url) else {
        return;
    };
    let now = now_iso();
    let body = format!(
        "{{\"servers\": {{\"{server_name}\": {{\"last_activity\": \"{now}\"}}}}, \"last_activity\": \"{now}\"}}"
    );
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: token {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if let Ok(mut stream) = TcpStream::connect(&authority) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
        let _ = stream.write_all(request.as_bytes());
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
    }
}

fn answer(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\
          X-JupyterHub-Version: 6.1.1\r\nConnection: close\r\n\r\nok\n",
    );
}

fn main() {
    let service_url = std::env::var("JUPYTERHUB_SERVICE_URL").unwrap_or_default();
    let Some((authority, _)) = split_url(&service_url) else {
        eprintln!("tiny-server: JUPYTERHUB_SERVICE_URL is not an http URL: {service_url:?}");
        std::process::exit(2);
    };
    let listener = match TcpListener::bind(&authority) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("tiny-server: cannot listen on {authority}: {e}");
            std::process::exit(1);
        }
    };
    if let Ok(activity_url) = std::env::var("JUPYTERHUB_ACTIVITY_URL") {
        let token = std::env::var("JUPYTERHUB_API_TOKEN").unwrap_or_default();
        let server_name = std::env::var("JUPYTERHUB_SERVER_NAME").unwrap_or_default();
        let every = std::env::var("TINY_ACTIVITY_INTERVAL")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300u64);
        std::thread::spawn(move || loop {
            post_activity(&activity_url, &token, &server_name);
            std::thread::sleep(Duration::from_secs(every));
        });
    }
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || answer(stream));
    }
}
