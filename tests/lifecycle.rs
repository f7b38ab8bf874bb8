//! Client-side timeouts and graceful shutdown.

mod common;

use common::*;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn slow_header_client_times_out_while_other_clients_are_served() {
    let backend = Backend::echo();
    let toml = config(&[backend.addr()], "[timeouts]\nclient_header = \"1s\"\n");
    let proxy = Proxy::start_with_config(&toml, &[]);
    let mut slow = RawClient::connect(proxy.addr());
    let slow_started = Instant::now();
    slow.send(b"GET /slow HTTP/1.1\r\nHo");

    // With one worker, a slow client must not block the event loop.
    for i in 0..3 {
        let started = Instant::now();
        let r = get(proxy.addr(), &format!("/fast{i}"));
        assert_eq!(r.status, 200);
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "fast client waited {:?}",
            started.elapsed()
        );
    }

    slow.set_read_timeout(Duration::from_secs(6));
    match slow.read_response() {
        Ok(r) => assert_eq!(r.status, 408, "{}", r.raw_head),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ),
            "slow client neither got 408 nor was closed: {e}"
        ),
    }
    let waited = slow_started.elapsed();
    assert!(
        waited >= Duration::from_millis(800),
        "closed before client_header: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(5),
        "closed long after client_header: {waited:?}"
    );
    assert_eq!(backend.targets(), ["/fast0", "/fast1", "/fast2"]);
}

#[test]
fn idle_keep_alive_connection_is_closed_after_client_idle() {
    let backend = Backend::echo();
    let toml = config(&[backend.addr()], "[timeouts]\nclient_idle = \"300ms\"\n");
    let proxy = Proxy::start_with_config(&toml, &[]);
    let mut c = RawClient::connect(proxy.addr());
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 200);
    let started = Instant::now();
    c.wait_closed(Duration::from_secs(5)).unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "closed before client_idle: {:?}",
        started.elapsed()
    );
}

#[test]
fn connection_without_any_request_is_closed_eventually() {
    let backend = Backend::echo();
    let toml = config(
        &[backend.addr()],
        "[timeouts]\nclient_idle = \"300ms\"\nclient_header = \"300ms\"\n",
    );
    let proxy = Proxy::start_with_config(&toml, &[]);
    let mut c = RawClient::connect(proxy.addr());
    c.wait_closed(Duration::from_secs(5)).unwrap();
    assert_eq!(backend.connections(), 0);
}

#[test]
fn client_closing_mid_body_never_reaches_backend_as_a_complete_request() {
    let backend = Backend::echo();
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let mut c = RawClient::connect(proxy.addr());
    c.send(b"POST /cut HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789");
    drop(c);
    // The proxy stays usable, and the backend got only the follow-up request.
    assert_eq!(get(proxy.addr(), "/after").status, 200);
    assert_eq!(backend.targets(), ["/after"]);
}

#[test]
fn http_1_0_client_gets_response_and_close() {
    let backend = Backend::echo();
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let mut c = RawClient::connect(proxy.addr());
    c.send(b"POST /old HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc");
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_text(), "abc");
    assert!(
        r.header("transfer-encoding").is_none(),
        "chunked sent to an HTTP/1.0 client"
    );
    c.wait_closed(Duration::from_secs(5)).unwrap();
}

#[test]
fn sigterm_lets_in_flight_request_finish_then_exits_zero() {
    let backend = Backend::start(|req| {
        let mut steps = vec![Step::Sleep(Duration::from_millis(500))];
        steps.extend(echo_reply(req));
        steps
    });
    let toml = config(&[backend.addr()], "[timeouts]\ndrain = \"5s\"\n");
    let mut proxy = Proxy::start_with_config(&toml, &[]);
    let url = proxy.url("/slow");
    let in_flight = thread::spawn(move || curl(&["--max-time", "10", &url]));
    backend.wait_for_requests(1);
    proxy.signal("TERM");

    let r = in_flight.join().unwrap();
    assert_eq!(r.exit_code, 0, "in-flight request failed: {}", r.stderr);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-echo-target").as_deref(), Some("/slow"));

    // New connections are refused (or, if the kernel still accepted one, never served).
    if let Ok(s) = TcpStream::connect(proxy.addr()) {
        let mut c = RawClient::connect_stream(s);
        let _ = c.try_send(b"GET /late HTTP/1.1\r\nHost: t\r\n\r\n");
        assert!(
            c.read_response().is_err(),
            "a new connection was served after SIGTERM"
        );
    }
    let status = proxy
        .wait_exit(Duration::from_secs(5))
        .expect("did not exit within drain");
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(backend.targets(), ["/slow"]);
    assert_stopped_after_draining(&mut proxy);
}

/// After a drain the last stderr line says the proxy stopped, after the signal's line.
#[track_caller]
fn assert_stopped_after_draining(proxy: &mut Proxy) {
    let lines = proxy.stderr_after_exit();
    let draining = lines
        .iter()
        .position(|l| l.contains("draining in-flight requests"));
    let stopped = lines.iter().position(|l| l == "ringproxy: stopped");
    assert!(
        matches!((draining, stopped), (Some(d), Some(s)) if d < s && s == lines.len() - 1),
        "{lines:#?}"
    );
}

#[test]
fn sigterm_when_idle_exits_zero_promptly() {
    let backend = Backend::echo();
    let mut proxy = Proxy::for_backends(&[backend.addr()]);
    // An idle keep-alive client must not hold up the exit.
    let mut c = RawClient::connect(proxy.addr());
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 200);
    let started = Instant::now();
    proxy.signal("TERM");
    let status = proxy
        .wait_exit(Duration::from_secs(5))
        .expect("did not exit");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "idle exit took {:?}",
        started.elapsed()
    );
    assert_stopped_after_draining(&mut proxy);
}

/// How one keep-alive client's connection ended through a drain.
#[derive(Debug)]
enum Ending {
    /// A response said `Connection: close`, then the proxy closed cleanly (EOF).
    ClosedAfterResponse,
    /// EOF seen before writing the next request: the client knows it was not sent.
    ClosedBeforeWrite,
    /// A request the client finished sending got no complete response (or the connection was
    /// reset): the client cannot tell whether it was acted on.
    Lost(String),
}

/// Whether the proxy has closed the connection, without blocking: what a careful client
/// (urllib3, Go's transport) checks before it reuses a keep-alive connection.
fn peer_closed(stream: &TcpStream) -> std::io::Result<bool> {
    stream.set_nonblocking(true)?;
    let peeked = stream.peek(&mut [0u8; 1]);
    stream.set_nonblocking(false)?;
    match peeked {
        Ok(0) => Ok(true),
        Ok(_) => Err(std::io::Error::other("bytes nobody asked for")),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sends requests back to back on one connection until the proxy ends it (or `give_up`),
/// counting answered requests in `answered`.
fn keep_alive_client(
    addr: std::net::SocketAddr,
    id: usize,
    answered: &std::sync::atomic::AtomicUsize,
    give_up: Instant,
) -> Ending {
    use std::sync::atomic::Ordering;
    let mut c = RawClient::connect(addr);
    for n in 0.. {
        match peer_closed(c.stream()) {
            Ok(true) => return Ending::ClosedBeforeWrite,
            Ok(false) => {}
            Err(e) => return Ending::Lost(format!("before request {n}: {e}")),
        }
        if Instant::now() > give_up {
            return Ending::Lost(format!("never closed ({n} requests)"));
        }
        let target = format!("/c{id}/r{n}");
        let request = format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n");
        if let Err(e) = c.try_send(request.as_bytes()) {
            return Ending::Lost(format!("{target}: write failed: {e}"));
        }
        let r = match c.read_response() {
            Ok(r) => r,
            Err(e) => return Ending::Lost(format!("{target}: {e}")),
        };
        if r.status != 200 || r.header("x-echo-target") != Some(&target) {
            return Ending::Lost(format!("{target}: wrong answer {}", r.raw_head));
        }
        answered.fetch_add(1, Ordering::SeqCst);
        if r.header("connection") == Some("close") {
            return match c.read_to_end() {
                Ok(rest) if rest.is_empty() => Ending::ClosedAfterResponse,
                Ok(rest) => Ending::Lost(format!("{} bytes after the last response", rest.len())),
                Err(e) => Ending::Lost(format!("after the last response: {e}")),
            };
        }
    }
    unreachable!()
}

#[test]
fn sigterm_loses_no_request_of_busy_keep_alive_clients() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    const CLIENTS: usize = 50;
    const DRAIN: Duration = Duration::from_secs(10);
    let backend = Backend::echo();
    let toml = config(&[backend.addr()], "[timeouts]\ndrain = \"10s\"\n");
    let mut proxy = Proxy::start_with_config(&toml, &[]);
    let addr = proxy.addr();
    let give_up = Instant::now() + Duration::from_secs(60);
    let counts: Vec<Arc<AtomicUsize>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let clients: Vec<_> = counts
        .iter()
        .enumerate()
        .map(|(id, answered)| {
            let answered = answered.clone();
            thread::spawn(move || keep_alive_client(addr, id, &answered, give_up))
        })
        .collect();
    // SIGTERM once every client is busy: connected and a few requests in.
    let busy_by = Instant::now() + Duration::from_secs(20);
    while counts.iter().any(|c| c.load(Ordering::SeqCst) < 5) {
        assert!(Instant::now() < busy_by, "clients did not get going");
        thread::sleep(Duration::from_millis(5));
    }
    let signalled = Instant::now();
    proxy.signal("TERM");
    let status = proxy.wait_exit(DRAIN + Duration::from_secs(2));

    let endings: Vec<Ending> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let lost: Vec<String> = endings
        .iter()
        .enumerate()
        .filter_map(|(id, e)| match e {
            Ending::Lost(why) => Some(format!("client {id}: {why}")),
            _ => None,
        })
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {CLIENTS} clients lost a request they had sent:\n{}",
        lost.len(),
        lost.join("\n")
    );
    // No client paused for the grace, so each heard of the drain in a response.
    let not_told: Vec<usize> = (0..CLIENTS)
        .filter(|&id| !matches!(endings[id], Ending::ClosedAfterResponse))
        .collect();
    assert!(
        not_told.is_empty(),
        "clients closed without `Connection: close`: {not_told:?}"
    );
    // Nothing reached the backend that its client did not see answered.
    let answered: usize = counts.iter().map(|c| c.load(Ordering::SeqCst)).sum();
    assert_eq!(backend.requests().len(), answered);
    let status = status.expect("did not exit within the drain timeout");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        signalled.elapsed() < DRAIN,
        "exit took {:?}",
        signalled.elapsed()
    );
}

/// A proxy (drain 10 s) and a client connection idle after one answered request.
fn kept_alive_client(backend: &Backend) -> (Proxy, RawClient) {
    let toml = config(&[backend.addr()], "[timeouts]\ndrain = \"10s\"\n");
    let proxy = Proxy::start_with_config(&toml, &[]);
    let mut c = RawClient::connect(proxy.addr());
    c.send(b"GET /before HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 200);
    (proxy, c)
}

#[test]
fn idle_connection_answers_requests_sent_in_the_grace() {
    let backend = Backend::echo();
    let (mut proxy, mut c) = kept_alive_client(&backend);
    proxy.signal("TERM");
    let draining = Instant::now() + IO_TIMEOUT;
    while !proxy.stderr_lines().iter().any(|l| l.contains("draining")) {
        assert!(Instant::now() < draining, "no drain reported");
        thread::sleep(Duration::from_millis(5));
    }
    thread::sleep(Duration::from_millis(200));
    // Two pipelined requests in one write, well within the grace: both are answered, the
    // last with `Connection: close`.
    c.send(b"GET /p1 HTTP/1.1\r\nHost: t\r\n\r\nGET /p2 HTTP/1.1\r\nHost: t\r\n\r\n");
    let first = c
        .read_response()
        .expect("first pipelined request unanswered");
    assert_eq!(first.header("x-echo-target"), Some("/p1"));
    let second = c
        .read_response()
        .expect("second pipelined request unanswered");
    assert_eq!(second.header("x-echo-target"), Some("/p2"));
    assert_eq!(second.header("connection"), Some("close"));
    assert_eq!(c.read_to_end().unwrap(), b"", "not a clean close");
    let status = proxy.wait_exit(IO_TIMEOUT).expect("did not exit");
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(backend.targets(), ["/before", "/p1", "/p2"]);
}

#[test]
fn idle_connection_silent_through_the_grace_gets_a_fin_not_a_reset() {
    let backend = Backend::echo();
    let (mut proxy, mut c) = kept_alive_client(&backend);
    let signalled = Instant::now();
    proxy.signal("TERM");
    assert_eq!(
        c.read_to_end().unwrap(),
        b"",
        "idle connection not closed cleanly"
    );
    let waited = signalled.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
        "idle connection closed after {waited:?}, not at the end of the 1 s grace"
    );
    // A request that crosses our FIN is neither served nor answered with a reset (which
    // would make a further write fail): it is read and dropped.
    c.send(b"GET /crossed HTTP/1.1\r\nHost: t\r\n\r\n");
    // Time for a reset to come back (loopback), well within the proxy's 500 ms linger.
    thread::sleep(Duration::from_millis(20));
    c.try_send(b"GET /crossed-too HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("reset after a request crossed the FIN");
    drop(c);
    let status = proxy.wait_exit(IO_TIMEOUT).expect("did not exit");
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(backend.targets(), ["/before"]);
}
