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
