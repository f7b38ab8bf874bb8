//! Slow clients: request bodies trickled below `limits.min_body_rate` are cut with 408 and
//! never hold a backend connection; a response read too slowly is cut off; clients above the
//! floor are not disturbed.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A floor the trickling clients below are far under, with a grace short enough for a test.
const FLOOR: &str = "[limits]\nmin_body_rate = 1000\n\n\
                     [timeouts]\nbody_rate_grace = \"1s\"\nbody_idle = \"30s\"\n";
const GRACE: Duration = Duration::from_secs(1);
/// Generous for a shared, busy 2-core machine (the cut comes about 1 s after the head);
/// without a floor nothing is cut before `body_idle`, 30 s.
const CUT_WITHIN: Duration = Duration::from_secs(10);

/// What a trickling client got: every byte the proxy sent, and when (after the head) the
/// proxy closed the connection, if it did.
struct Trickled {
    answer: Vec<u8>,
    closed_after: Option<Duration>,
}

impl Trickled {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.answer).into_owned()
    }
}

/// Sends `head` (and `start`, the first body bytes, at once), then one body byte every
/// `interval` until the proxy closes the connection or 20 s have passed.
fn trickle(addr: SocketAddr, head: String, start: Vec<u8>, interval: Duration) -> Trickled {
    let give_up = Duration::from_secs(20);
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_nodelay(true).unwrap();
    conn.set_read_timeout(Some(interval)).unwrap();
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(&start).unwrap();
    let sent_head = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while sent_head.elapsed() < give_up {
        match conn.read(&mut buf) {
            Ok(0) => {
                return Trickled {
                    answer,
                    closed_after: Some(sent_head.elapsed()),
                };
            }
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                // The proxy may have shut its side already: the read will tell.
                let _ = conn.write_all(b"x");
            }
            Err(_) => {
                return Trickled {
                    answer,
                    closed_after: Some(sent_head.elapsed()),
                };
            }
        }
    }
    Trickled {
        answer,
        closed_after: None,
    }
}

fn post_head(target: &str, framing: &str) -> String {
    format!("POST {target} HTTP/1.1\r\nHost: t\r\n{framing}\r\n\r\n")
}

/// Asserts the trickler got 408 (after `100 Continue` when `interim`) and was closed between
/// the grace and `CUT_WITHIN`.
#[track_caller]
fn assert_cut_with_408(what: &str, got: &Trickled, interim: bool) {
    let text = got.text();
    let expected_start = if interim {
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 408 "
    } else {
        "HTTP/1.1 408 "
    };
    assert!(
        text.starts_with(expected_start),
        "{what}: answered {text:?}"
    );
    let closed = got
        .closed_after
        .unwrap_or_else(|| panic!("{what}: not closed; answered {text:?}"));
    assert!(
        closed >= GRACE - Duration::from_millis(100) && closed <= CUT_WITHIN,
        "{what}: closed after {closed:?}, grace {GRACE:?}"
    );
}

/// Slow senders of every framing (Content-Length below and above the 32 KiB read before a
/// backend is chosen, chunked, `Expect: 100-continue`) are cut with 408 once the grace is
/// spent, while requests of normal clients on the same worker are answered promptly.
#[test]
fn request_bodies_below_the_rate_floor_get_408_while_others_are_served_promptly() {
    let backend = Backend::echo();
    let proxy = Proxy::start_with_config(&config(&[backend.addr()], FLOOR), &[]);
    let addr = proxy.addr();
    let slow: Vec<(&str, String, bool)> = vec![
        (
            "small cl",
            post_head("/slow/1", "Content-Length: 1000"),
            false,
        ),
        (
            "large cl",
            post_head("/slow/2", "Content-Length: 1000000"),
            false,
        ),
        (
            "chunked",
            post_head("/slow/3", "Transfer-Encoding: chunked"),
            false,
        ),
        (
            "expect",
            post_head("/slow/4", "Content-Length: 1000000\r\nExpect: 100-continue"),
            true,
        ),
    ];
    let trickling: Vec<_> = slow
        .into_iter()
        .map(|(what, head, interim)| {
            // One byte per 200 ms: 5 B/s against a floor of 1000 B/s.
            let start = if what == "chunked" {
                b"ffff\r\n".to_vec()
            } else {
                Vec::new()
            };
            let client =
                thread::spawn(move || trickle(addr, head, start, Duration::from_millis(200)));
            (what, interim, client)
        })
        .collect();

    // Normal clients meanwhile: keep-alive GETs, and uploads larger than what is read
    // before a backend is chosen.
    let upload = pattern(100 * 1024);
    let mut client = RawClient::connect(addr);
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < GRACE + Duration::from_millis(500) {
        let sent = Instant::now();
        client.send(format!("GET /normal/{round} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        assert_eq!(client.read_response().unwrap().status, 200);
        let mut post = format!(
            "POST /upload/{round} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            upload.len()
        )
        .into_bytes();
        post.extend_from_slice(&upload);
        client.send(&post);
        let echoed = client.read_response().unwrap();
        assert_same_body(&echoed.body, &upload, "normal upload echoed");
        slowest = slowest.max(sent.elapsed());
        round += 1;
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        slowest < Duration::from_secs(1),
        "a normal GET + POST took {slowest:?} while slow clients trickled"
    );

    for (what, interim, client) in trickling {
        assert_cut_with_408(what, &client.join().unwrap(), interim);
    }
    assert!(
        backend.targets().iter().all(|t| !t.starts_with("/slow")),
        "a slow body reached the backend: {:?}",
        backend.targets()
    );
}

/// Trickling clients are cut before a backend is chosen: none of them ever opens a backend
/// connection, whatever its framing, also after sending the first 2 KiB of its body at once
/// (which earns it up to 2 s more at 1000 B/s).
#[test]
fn slow_body_senders_hold_no_backend_connection() {
    let backend = Backend::echo();
    let proxy = Proxy::start_with_config(&config(&[backend.addr()], FLOOR), &[]);
    let addr = proxy.addr();
    let clients: Vec<_> = (0..20)
        .map(|i| {
            let (framing, start) = match i % 4 {
                0 => ("Content-Length: 1048576", Vec::new()),
                1 => ("Transfer-Encoding: chunked", b"100000\r\n".to_vec()),
                2 => (
                    "Content-Length: 1048576\r\nExpect: 100-continue",
                    Vec::new(),
                ),
                _ => ("Content-Length: 1048576", pattern(2 * 1024)),
            };
            let head = post_head(&format!("/slow/{i}"), framing);
            thread::spawn(move || trickle(addr, head, start, Duration::from_millis(200)))
        })
        .collect();
    thread::sleep(GRACE / 2);
    assert_eq!(
        backend.connections(),
        0,
        "slow senders got backend connections"
    );
    for (i, client) in clients.into_iter().enumerate() {
        assert_cut_with_408(&format!("client {i}"), &client.join().unwrap(), i % 4 == 2);
    }
    assert_eq!(
        backend.connections(),
        0,
        "slow senders got backend connections"
    );
}

/// A client that sends the start of its body at once gets a backend, then trickles: it is
/// cut with 408 while its body streams, once the credit its fast start earned is spent too
/// (here the grace, 1 s, plus 64 KiB at 64 KiB/s: about 2 s).
#[test]
fn a_body_that_slows_down_after_its_start_is_cut_while_streaming() {
    let backend = Backend::echo();
    let floor = "[limits]\nmin_body_rate = 65536\n\n\
                 [timeouts]\nbody_rate_grace = \"1s\"\nbody_idle = \"30s\"\n";
    let proxy = Proxy::start_with_config(&config(&[backend.addr()], floor), &[]);
    let head = post_head("/slows-down", "Content-Length: 1000000");
    let got = trickle(
        proxy.addr(),
        head,
        pattern(64 * 1024),
        Duration::from_millis(200),
    );
    assert_cut_with_408("slowing down", &got, false);
    assert_eq!(backend.connections(), 1, "the fast start got a backend");
    assert!(
        backend.requests().is_empty(),
        "an incomplete body went through"
    );
}

/// A client sending at a steady pace above the floor (here 3x) is not cut, neither while
/// the start of its body is read nor while the rest streams to the backend.
#[test]
fn a_body_sent_steadily_above_the_floor_arrives_whole() {
    let backend = Backend::echo();
    let floor = "[limits]\nmin_body_rate = 8192\n\n[timeouts]\nbody_rate_grace = \"1s\"\n";
    let proxy = Proxy::start_with_config(&config(&[backend.addr()], floor), &[]);
    let body = pattern(64 * 1024);
    let mut client = RawClient::connect(proxy.addr());
    client.send(
        format!(
            "PUT /steady HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    // 2,400 bytes every 100 ms: 24 KB/s.
    for piece in body.chunks(2400) {
        thread::sleep(Duration::from_millis(100));
        client.send(piece);
    }
    let r = client.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_same_body(&r.body, &body, "steady upload echoed");
}

/// Only time spent waiting on the client counts against it: a backend streaming events far
/// below the floor (10 bytes every 200 ms for 3 s, against 1000 B/s after 1 s) to a client
/// that reads them at once gets them all through.
#[test]
fn a_backend_streaming_slowly_does_not_make_its_client_too_slow() {
    let mut steps = vec![Step::Write(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
    )];
    for _ in 0..15 {
        steps.push(Step::Sleep(Duration::from_millis(200)));
        steps.push(Step::Write(b"a\r\nevent 123\n\r\n".to_vec()));
    }
    steps.push(Step::Write(b"0\r\n\r\n".to_vec()));
    let backend = Backend::start(move |_| steps.clone());
    let proxy = Proxy::start_with_config(&config(&[backend.addr()], FLOOR), &[]);
    let mut client = RawClient::connect(proxy.addr());
    client.send(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = client.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_text(), "event 123\n".repeat(15));
}

/// Serves `/big/SIZE` with `pattern(SIZE)`.
fn big_response_backend() -> Backend {
    Backend::start(|req| {
        let size = req.target.trim_start_matches("/big/").parse().unwrap_or(0);
        vec![Step::Write(ok_response(&pattern(size)))]
    })
}

/// A client connection with a small receive buffer, so that the proxy's writes wait on how
/// fast the client reads.
fn small_window_client(addr: SocketAddr, receive_buffer: usize) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(receive_buffer).unwrap();
    socket.connect(&addr.into()).unwrap();
    let conn: TcpStream = socket.into();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    conn
}

/// Reads `conn` `chunk` bytes at a time, pausing `pause` before each read, until `want`
/// bytes arrived, the proxy closed the connection or 20 s passed; returns the bytes and
/// when the close came.
fn read_slowly(
    conn: &mut TcpStream,
    chunk: usize,
    pause: Duration,
    want: usize,
) -> (Vec<u8>, Option<Duration>) {
    let started = Instant::now();
    let mut buf = vec![0u8; chunk];
    let mut received = Vec::new();
    while received.len() < want && started.elapsed() < Duration::from_secs(20) {
        thread::sleep(pause);
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return (received, Some(started.elapsed())),
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
    (received, None)
}

/// A client reading a 32 MiB response at about 25 KB/s, against a floor of 4 MiB/s, is cut
/// off once its credit (the grace, plus what the proxy's socket buffer, up to 4 MiB here,
/// swallowed at once) is spent: its connection closes before the body is complete. Without
/// a floor it would be read for minutes, `body_idle` (30 s) bounding each write only.
#[test]
fn a_response_read_below_the_rate_floor_is_cut_off() {
    let backend = big_response_backend();
    let floor = "[limits]\nmin_body_rate = 4194304\n\n\
                 [timeouts]\nbody_rate_grace = \"1s\"\nbody_idle = \"30s\"\n";
    let proxy = Proxy::start_with_config(&config(&[backend.addr()], floor), &[]);
    let size = 32 * 1024 * 1024;
    let mut conn = small_window_client(proxy.addr(), 4096);
    conn.write_all(format!("GET /big/{size} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    let (received, closed) = read_slowly(&mut conn, 256, Duration::from_millis(10), usize::MAX);
    let read = received.len();
    let closed = closed.unwrap_or_else(|| panic!("still open after 20 s, {read} bytes read"));
    assert!(read < size, "the whole body arrived ({read} bytes)");
    assert!(
        closed >= GRACE && closed <= Duration::from_secs(15),
        "closed after {closed:?} ({read} bytes read)"
    );
    // The worker serves others as before.
    assert_eq!(get(proxy.addr(), "/big/10").status, 200);
}

/// A client reading a large response through a small receive window at a steady pace above
/// the floor (about 3x) gets all of it.
#[test]
fn a_response_read_steadily_above_the_floor_arrives_whole() {
    let backend = big_response_backend();
    let floor = "[limits]\nmin_body_rate = 1048576\n\n[timeouts]\nbody_rate_grace = \"1s\"\n";
    let proxy = Proxy::start_with_config(&config(&[backend.addr()], floor), &[]);
    let size = 8 * 1024 * 1024;
    let mut conn = small_window_client(proxy.addr(), 64 * 1024);
    conn.write_all(format!("GET /big/{size} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 8388608\r\n\r\n";
    // About 3 MB/s: up to 64 KiB per read, 20 ms apart.
    let (received, closed) = read_slowly(
        &mut conn,
        64 * 1024,
        Duration::from_millis(20),
        head.len() + size,
    );
    assert_eq!(closed, None, "cut after {} bytes", received.len());
    assert!(received.starts_with(head), "{:?}", &received[..head.len()]);
    assert_same_body(&received[head.len()..], &pattern(size), "paced read");
}
