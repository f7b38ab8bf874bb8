//! The open-file limit: raised to the hard limit at start, divided into client shares, and a
//! flood beyond it answered at once (served or refused) with a quiet log.

mod common;

use common::*;
use std::io;
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// Lines after `ready`: what the proxy said while it ran.
fn lines_after_ready(proxy: &Proxy) -> Vec<String> {
    let lines = proxy.stderr_lines();
    let ready = lines
        .iter()
        .position(|l| l.starts_with("ringproxy: ready"))
        .unwrap_or(0);
    lines[ready + 1..].to_vec()
}

/// The client capacity from the start-up line `open-file limit ...: up to N client connections`.
fn announced_clients(proxy: &Proxy) -> usize {
    let lines = proxy.stderr_lines();
    let line = lines
        .iter()
        .find(|l| l.starts_with("ringproxy: open-file limit "))
        .unwrap_or_else(|| panic!("no open-file limit line in {lines:#?}"));
    let rest = &line[line.find(": up to ").expect(line) + ": up to ".len()..];
    rest.split_whitespace().next().unwrap().parse().expect(line)
}

fn start_with_nofile(limit: &str, toml: &str) -> (Proxy, TempDir) {
    let dir = TempDir::new();
    let path = dir.write("ringproxy.toml", toml.as_bytes());
    let nofile = format!("--nofile={limit}");
    let proxy = Proxy::start_under(&["prlimit", &nofile], &["--config", path.to_str().unwrap()]);
    (proxy, dir)
}

#[derive(Debug, Default)]
struct Flood {
    served: usize,
    refused_503: usize,
    closed: usize,
    hung: usize,
    other: Vec<String>,
}

/// Reads every client's answer, all within `within` from now.
fn classify(clients: Vec<RawClient>, within: Duration) -> (Flood, Vec<RawClient>) {
    let deadline = Instant::now() + within;
    let mut flood = Flood::default();
    let mut served = Vec::new();
    for mut client in clients {
        let left = deadline.saturating_duration_since(Instant::now());
        client.set_read_timeout(left.max(Duration::from_millis(1)));
        match client.read_response() {
            Ok(r) if r.status == 200 => {
                flood.served += 1;
                served.push(client);
            }
            Ok(r) if r.status == 503 => {
                assert_eq!(r.header("connection"), Some("close"), "{}", r.raw_head);
                assert!(r.header("retry-after").is_some(), "{}", r.raw_head);
                flood.refused_503 += 1;
            }
            Ok(r) => flood.other.push(r.raw_head),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                flood.hung += 1
            }
            Err(_closed_or_reset) => flood.closed += 1,
        }
    }
    (flood, served)
}

#[test]
fn a_flood_beyond_the_limit_is_served_or_refused_at_once_and_logged_in_a_line_or_two() {
    const CLIENTS: usize = 400;
    let backend = Backend::echo();
    // Soft = hard: the proxy cannot raise the limit, which is the point.
    let (proxy, _dir) = start_with_nofile("256:256", &config(&[backend.addr()], ""));
    let share = announced_clients(&proxy);
    assert!(share < CLIENTS / 2, "share {share} leaves no flood");

    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        // The kernel completes the handshake whether the proxy accepts or not.
        let mut client = RawClient::connect_stream(TcpStream::connect(proxy.addr()).unwrap());
        client.send(b"GET /flood HTTP/1.1\r\nHost: t\r\n\r\n");
        clients.push(client);
    }
    let (flood, served) = classify(clients, Duration::from_secs(5));
    assert_eq!(flood.hung, 0, "connected, never answered: {flood:?}");
    assert!(flood.other.is_empty(), "{flood:?}");
    assert!(
        flood.served <= share && flood.served >= share * 9 / 10,
        "share {share}: {flood:?}"
    );
    assert_eq!(
        flood.refused_503 + flood.closed,
        CLIENTS - flood.served,
        "{flood:?}"
    );

    // The flood ends: its clients leave and new ones are served again.
    drop(served);
    let until = Instant::now() + Duration::from_secs(5);
    while get(proxy.addr(), "/after").status != 200 {
        assert!(Instant::now() < until, "not served after the flood");
        thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..20 {
        assert_eq!(get(proxy.addr(), "/after").status, 200);
    }
    let log = lines_after_ready(&proxy);
    assert!(log.len() <= 3, "{} lines: {log:#?}", log.len());
    assert!(
        log.iter().any(|l| l.contains("refused with 503")),
        "{log:#?}"
    );
}

#[test]
fn the_soft_limit_is_raised_to_the_hard_limit_at_start() {
    let backend = Backend::echo();
    let (proxy, _dir) = start_with_nofile("512:4096", &config(&[backend.addr()], ""));
    assert_eq!(open_file_limits(proxy.pid()), (4096, 4096));
    let lines = proxy.stderr_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ringproxy: open-file limit 4096 (raised from 512): up to ")),
        "{lines:#?}"
    );
    // Half of what the reserve leaves, for one worker.
    let clients = announced_clients(&proxy);
    assert!((1900..=2048).contains(&clients), "{clients}");
    assert_eq!(get(proxy.addr(), "/").status, 200);
}

/// The soft and hard open-file limits of process `pid`.
fn open_file_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    (
        fields[3].parse().expect(line),
        fields[4].parse().expect(line),
    )
}

/// The lowest descriptor number the process does not use: with the soft limit set to it,
/// the process can open nothing more.
fn lowest_free_fd(pid: u32) -> u64 {
    let mut used: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    used.sort_unstable();
    (0..).find(|n| used.binary_search(n).is_err()).unwrap()
}

fn set_soft_limit(pid: u32, soft: u64) {
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={soft}:")])
        .status()
        .unwrap();
    assert!(status.success(), "prlimit --pid failed");
}

fn request(client: &mut RawClient, target: &str) -> Response {
    client.send(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    client.read_response().unwrap()
}

#[test]
fn out_of_descriptors_a_backend_is_not_blamed_and_accept_backs_off_quietly() {
    let backend = Backend::echo();
    // One failure would eject the backend; no pool, so every request needs a new connection.
    let extra = "[upstream.app.passive]\nmax_fails = 1\n\n[pool]\nmax_idle_per_backend = 0\n";
    let proxy = Proxy::start_with_config(&config(&[backend.addr()], extra), &[]);
    let pid = proxy.pid();
    let mut clients: Vec<RawClient> = (0..5).map(|_| RawClient::connect(proxy.addr())).collect();
    for client in &mut clients {
        assert_eq!(request(client, "/before").status, 200);
    }

    // Something else (an operator's prlimit, here) takes the descriptors away, once the
    // closes of the backend connections used so far have gone through.
    thread::sleep(Duration::from_millis(300));
    let (soft, _) = open_file_limits(pid);
    set_soft_limit(pid, lowest_free_fd(pid));
    for client in &mut clients {
        let r = request(client, "/short");
        assert_eq!(r.status, 503, "{}", r.raw_head);
        assert!(r.header("retry-after").is_some(), "{}", r.raw_head);
    }
    // New clients now: io_uring's pending accept took the limit when it was armed, so the
    // first may still be accepted (and answered 503); the next accepts fail, and their
    // clients wait in the listen queue while the worker backs off.
    let mut newcomers: Vec<RawClient> = (0..3)
        .map(|_| {
            let mut client = RawClient::connect(proxy.addr());
            client.send(b"GET /new HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            client
        })
        .collect();
    thread::sleep(Duration::from_millis(1500));
    let short_log = lines_after_ready(&proxy);

    set_soft_limit(pid, soft);
    let started = Instant::now();
    let statuses: Vec<u16> = newcomers
        .iter_mut()
        .map(|client| client.read_response().unwrap().status)
        .collect();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| [200, 503].contains(s)),
        "{statuses:?}"
    );
    // The backend did nothing wrong: it was not ejected.
    for client in &mut clients {
        assert_eq!(request(client, "/after").status, 200);
    }
    assert!(!backend.targets().contains(&"/short".to_string()));
    assert!(short_log.len() <= 2, "{short_log:#?}");
    // What was counted meanwhile is summed up in one line once the interval has passed.
    let until = Instant::now() + Duration::from_secs(15);
    while !lines_after_ready(&proxy)
        .iter()
        .any(|l| l.contains("accept failed"))
    {
        assert!(Instant::now() < until, "{:#?}", proxy.stderr_lines());
        thread::sleep(Duration::from_millis(200));
    }
    let log = lines_after_ready(&proxy);
    assert!(log.len() <= 3, "{log:#?}");
    assert!(
        !proxy.stderr_lines().iter().any(|l| l.contains("ejected")),
        "{:#?}",
        proxy.stderr_lines()
    );
}
