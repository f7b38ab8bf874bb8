//! The proxy's own log on stderr: `--log-format json` writes one JSON object per line (worker
//! and peer where the event has them), `--log-level` leaves out what is below it, and the
//! default text format keeps the lines as they always read (every other test reads them).

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// ringproxy with `args`, its stderr lines arriving on a channel.
struct Started {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Started {
    fn new(args: &[&str]) -> Self {
        let mut child = Command::new(bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line `matches` accepts; panics with what came after `IO_TIMEOUT`.
    fn wait_for(&mut self, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no such line; stderr:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Stops the proxy (SIGTERM) and returns every stderr line it wrote.
    fn stop(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = wait_with_timeout(&mut self.child, Duration::from_secs(20));
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
        self.seen.extend(self.lines.iter());
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json(line: &str) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::from_str(line) {
        Ok(serde_json::Value::Object(object)) => object,
        _ => panic!("not a JSON object: {line}"),
    }
}

fn message(line: &str) -> String {
    json(line)["msg"].as_str().unwrap_or_default().to_owned()
}

/// A request the proxy refuses with 400, and one whose backend's port is closed (502, or
/// 503 once the backend is ejected); returns the second's status.
fn bad_requests(proxy: SocketAddr) -> u16 {
    let mut refused = RawClient::connect(proxy);
    refused.send(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n");
    assert_eq!(refused.read_response().unwrap().status, 400);
    let mut failed = RawClient::connect(proxy);
    failed.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    failed.read_response().unwrap().status
}

#[test]
fn json_lines_parse_and_carry_level_worker_and_peer() {
    let backend = closed_port_addr().to_string();
    let mut proxy = Started::new(&[
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &backend,
        "--workers",
        "1",
        "--no-pin",
        "--log-format",
        "json",
        "--log-level",
        "debug",
    ]);
    let listening = proxy.wait_for(|l| message(l).starts_with("listening on "));
    let address: SocketAddr = message(&listening)["listening on ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    proxy.wait_for(|l| message(l) == "ready (1 worker)");
    assert_eq!(bad_requests(address), 502);
    proxy.wait_for(|l| message(l).contains("refused with 400"));
    proxy.wait_for(|l| message(l).contains("unreachable"));
    let lines = proxy.stop();

    for line in &lines {
        let object = json(line);
        let time = object["time"].as_str().unwrap();
        assert!(time.len() == 24 && time.ends_with('Z'), "{line}");
        let level = object["level"].as_str().unwrap();
        assert!(
            ["error", "warn", "info", "debug"].contains(&level),
            "{line}"
        );
        assert!(object["msg"].is_string(), "{line}");
        assert!(
            !object["msg"].as_str().unwrap().starts_with("ringproxy: "),
            "{line}"
        );
    }
    let find = |text: &str| {
        let line = lines.iter().find(|l| message(l).contains(text));
        json(line.unwrap_or_else(|| panic!("no line with {text:?}: {lines:#?}")))
    };
    let placement = find("worker 0 unpinned");
    assert_eq!(
        (placement["level"].as_str(), placement["worker"].as_u64()),
        (Some("info"), Some(0))
    );
    for debug in [find("refused with 400"), find("unreachable")] {
        assert_eq!(debug["level"], "debug");
        assert_eq!(debug["worker"], 0);
        assert_eq!(debug["peer"], "127.0.0.1");
    }
    assert_eq!(find("stopped")["level"], "info");
}

/// A port nothing listens on now, for the proxy to take.
fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[test]
fn a_level_leaves_out_the_levels_below_it() {
    let backend = closed_port_addr().to_string();
    let address = free_port();
    let listen = address.to_string();
    let proxy = Started::new(&[
        "--listen",
        &listen,
        "--upstream",
        &backend,
        "--workers",
        "1",
        "--no-pin",
        "--log-level",
        "warn",
    ]);
    let deadline = Instant::now() + IO_TIMEOUT;
    while TcpStream::connect(address).is_err() {
        assert!(Instant::now() < deadline, "not listening on {address}");
        thread::sleep(Duration::from_millis(20));
    }
    // Failures in a row eject the backend: a warning.
    for _ in 0..3 {
        assert!([502, 503].contains(&bad_requests(address)));
    }
    let lines = proxy.stop();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ringproxy: ") && l.contains("ejected")),
        "{lines:#?}"
    );
    for info_or_debug in [
        "listening on",
        "ready",
        "stopped",
        "refused with",
        "open-file limit",
    ] {
        assert!(
            !lines.iter().any(|l| l.contains(info_or_debug)),
            "{info_or_debug:?} at warn level: {lines:#?}"
        );
    }
}
