//! The compactor's HTTP endpoint: `/metrics`, `/-/healthy`, `/-/ready`.
//!
//! Owns: a small blocking HTTP/1.1 server on one thread (std only: a compactor serves a
//! scrape every few seconds, nothing more), answering GET requests and closing each
//! connection.
//! Must not: do any work of the job; it only reads the shared state.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::metrics::Metrics;
use crate::error::{Error, Result};

/// What the endpoint reports.
pub struct Status {
    pub metrics: Metrics,
    /// Ready once the first bucket sync succeeded.
    pub ready: AtomicBool,
}

impl Default for Status {
    fn default() -> Self {
        Status { metrics: Metrics::new(), ready: AtomicBool::new(false) }
    }
}

/// A running server; dropping it does not stop it (it lives as long as the process).
pub struct Server {
    pub addr: SocketAddr,
}

/// Binds `addr` and serves on a background thread.
pub fn serve(addr: &str, status: Arc<Status>) -> Result<Server> {
    let listener = TcpListener::bind(addr).map_err(|source| Error::Listen { addr: addr.to_string(), source })?;
    let local = listener.local_addr().map_err(|source| Error::Listen { addr: addr.to_string(), source })?;
    std::thread::Builder::new()
        .name("strata-http".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let _ = handle(conn, &status);
            }
        })
        .map_err(|e| Error::Task { what: "the HTTP thread", problem: e.to_string() })?;
    Ok(Server { addr: local })
}

fn handle(mut conn: TcpStream, status: &Status) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Skip the headers.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (code, ctype, body) = match (method, path) {
        ("GET", "/metrics") => (200, "text/plain; version=0.0.4; charset=utf-8", status.metrics.render()),
        ("GET", "/-/healthy") => (200, "text/plain", "Healthy.\n".to_string()),
        ("GET", "/-/ready") if status.ready.load(Ordering::Relaxed) => (200, "text/plain", "Ready.\n".to_string()),
        ("GET", "/-/ready") => (503, "text/plain", "Not ready: waiting for the first bucket sync.\n".to_string()),
        ("GET", _) => (404, "text/plain", "Not found.\n".to_string()),
        _ => (405, "text/plain", "Method not allowed.\n".to_string()),
    };
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    write!(
        conn,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let code = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
        (code, resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
    }

    #[test]
    fn serves_metrics_health_and_readiness() {
        let status = Arc::new(Status::default());
        let srv = serve("127.0.0.1:0", status.clone()).unwrap();
        assert_eq!(get(srv.addr, "/-/healthy").0, 200);
        assert_eq!(get(srv.addr, "/-/ready").0, 503);
        status.ready.store(true, Ordering::Relaxed);
        assert_eq!(get(srv.addr, "/-/ready").0, 200);
        status.metrics.inc("thanos_compact_iterations_total", &[]);
        let (code, body) = get(srv.addr, "/metrics");
        assert_eq!(code, 200);
        assert!(body.contains("thanos_compact_iterations_total 1"), "{body}");
        assert_eq!(get(srv.addr, "/nope").0, 404);
    }
}
