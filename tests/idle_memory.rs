//! Memory an idle keep-alive connection costs the proxy, and memory given back once such
//! connections close: measured on the real binary, as VmRSS from /proc.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const CONNECTIONS: usize = 2000;
/// What one idle keep-alive connection may cost (its task and small receive buffer are
/// about 2.8 KiB)...
const PER_CONNECTION: usize = 4096;
/// ...plus what the count itself makes grow once (the tables of connections and pending
/// operations), spread over the connections.
const SLACK_PER_CONNECTION: usize = 512;

fn vm_rss_bytes(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<usize>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"));
    kib * 1024
}

/// The proxy and this process each hold one descriptor per connection.
fn raise_open_file_limit(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if limit.rlim_cur >= needed {
        return;
    }
    assert!(
        limit.rlim_max >= needed,
        "this test needs {needed} open files; the hard limit is {}",
        limit.rlim_max
    );
    limit.rlim_cur = needed;
    // SAFETY: as above.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(rc, 0, "setrlimit(RLIMIT_NOFILE, {needed})");
}

/// A keep-alive connection that made one request and read its whole answer.
fn connection_after_one_request(addr: SocketAddr) -> TcpStream {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    conn.write_all(b"GET /idle HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = conn.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before the response ended");
        response.extend_from_slice(&chunk[..n]);
        if let Some(end) = complete_response_len(&response) {
            assert_eq!(end, response.len(), "nothing after the response");
            assert!(response.starts_with(b"HTTP/1.1 200"), "{response:?}");
            return conn;
        }
    }
}

/// The length of the response in `buf` once it is complete (Content-Length framing).
fn complete_response_len(buf: &[u8]) -> Option<usize> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let body_len: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    (buf.len() >= head_end + body_len).then_some(head_end + body_len)
}

#[test]
fn idle_keep_alive_connections_cost_at_most_4_kib_each_and_it_is_given_back() {
    raise_open_file_limit(2 * CONNECTIONS as u64 + 512);
    let backend = Backend::echo();
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let pid = proxy.pid();
    // Warm up what is allocated once rather than per connection: the worker's first pooled
    // buffers and backend connection.
    drop(
        (0..50)
            .map(|_| connection_after_one_request(proxy.addr()))
            .collect::<Vec<_>>(),
    );
    thread::sleep(Duration::from_millis(200));

    let before = vm_rss_bytes(pid);
    let idle: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| connection_after_one_request(proxy.addr()))
        .collect();
    thread::sleep(Duration::from_millis(300));
    let held = vm_rss_bytes(pid);
    let per_connection = held.saturating_sub(before) / CONNECTIONS;
    assert!(
        per_connection <= PER_CONNECTION + SLACK_PER_CONNECTION,
        "{CONNECTIONS} idle keep-alive connections took {per_connection} bytes each \
         (RSS {before} -> {held})"
    );

    drop(idle);
    // The worker trims its pools and hands freed memory back once a second.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut after = vm_rss_bytes(pid);
    while after > before + (held - before) / 2 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(200));
        after = vm_rss_bytes(pid);
    }
    assert!(
        after <= before + (held - before) / 2,
        "after the idle connections closed RSS stayed at {after} (before them {before}, \
         with them {held})"
    );
    let response = get(proxy.addr(), "/after");
    assert_eq!(response.status, 200);
}
