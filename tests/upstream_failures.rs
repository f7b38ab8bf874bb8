//! A misbehaving, unreachable or slow backend gives the client 502/504 or an aborted
//! connection, never a reinterpreted or falsely complete response.

mod common;

use common::*;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn proxy_with_timeouts(backends: &[SocketAddr], timeouts: &str) -> Proxy {
    Proxy::start_with_config(&config(backends, &format!("[timeouts]\n{timeouts}\n")), &[])
}

#[track_caller]
fn assert_no_backend_address(r: &Response, backend: SocketAddr) {
    let body = r.body_text();
    assert!(
        !body.contains(&backend.port().to_string()),
        "error body leaks the backend address: {body:?}"
    );
}

/// The backend answers every request with `reply` and then stalls, so the proxy's verdict
/// comes from the bytes alone.
fn backend_sending(reply: &'static [u8]) -> Backend {
    Backend::start(move |_| vec![Step::Write(reply.to_vec()), Step::Stall])
}

fn expect_502_for(reply: &'static [u8]) {
    let backend = backend_sending(reply);
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let mut c = RawClient::connect(proxy.addr());
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let what = String::from_utf8_lossy(reply);
    let r = c
        .read_response()
        .unwrap_or_else(|e| panic!("no parseable 502 for backend reply {what:?}: {e}"));
    assert_eq!(r.status, 502, "backend reply {what:?}");
    assert_no_backend_address(&r, backend.addr());
}

#[test]
fn backend_closing_without_a_response_is_502() {
    let backend = Backend::start(|_| vec![Step::Close]);
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let r = get(proxy.addr(), "/");
    assert_eq!(r.status, 502);
    assert_no_backend_address(&r, backend.addr());
}

#[test]
fn invalid_status_line_is_502() {
    expect_502_for(b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n");
}

#[test]
fn non_http_reply_is_502() {
    expect_502_for(b"SSH-2.0-OpenSSH_9.2\r\n\r\n");
}

#[test]
fn conflicting_content_length_in_response_is_502() {
    expect_502_for(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!");
}

#[test]
fn content_length_with_transfer_encoding_in_response_is_502() {
    expect_502_for(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
}

#[test]
fn bad_chunk_before_any_body_is_502() {
    expect_502_for(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    );
}

/// Whitespace after a chunk size is valid only before a chunk extension's `;`.
#[test]
fn chunk_size_followed_by_whitespace_without_extension_is_502() {
    expect_502_for(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
    );
}

#[test]
fn bad_chunk_after_response_started_aborts_the_client_connection() {
    let backend = Backend::start(|_| {
        vec![
            Step::Write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec(),
            ),
            Step::Sleep(Duration::from_millis(100)),
            Step::Write(b"zz\r\nworld\r\n0\r\n\r\n".to_vec()),
            Step::Stall,
        ]
    });
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let mut c = RawClient::connect(proxy.addr());
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    match c.read_response() {
        Ok(r) => assert_ne!(
            r.status,
            200,
            "client got a complete chunked body: {:?}",
            r.body_text()
        ),
        Err(e) => assert!(
            matches!(
                e.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
            ),
            "connection not aborted: {e}"
        ),
    }
}

/// A `200` head announcing `declared` body bytes, followed by only `sent` of them.
fn partial_response(declared: usize, sent: usize) -> Vec<u8> {
    let mut v = format!("HTTP/1.1 200 OK\r\nContent-Length: {declared}\r\n\r\n").into_bytes();
    v.extend(std::iter::repeat_n(b'x', sent));
    v
}

/// A backend that answers with `Content-Length: declared` but sends only `sent` body bytes
/// and then closes.
fn backend_truncating(declared: usize, sent: usize) -> Backend {
    Backend::start(move |_| vec![Step::Write(partial_response(declared, sent)), Step::Close])
}

/// Larger than the bodies the proxy gathers before answering (16 KiB): these stream, so a
/// failure during them can only abort the client connection.
const STREAMED_BODY: usize = 100_000;

#[test]
fn truncated_small_body_is_502_not_a_partial_response() {
    // A small body is read whole before the head goes out: nothing reached the client yet,
    // so it gets a clean status instead of a truncated 200.
    let backend = backend_truncating(100, 50);
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let r = get(proxy.addr(), "/");
    assert_eq!(r.status, 502, "{:?}", r.body_text());
    assert_no_backend_address(&r, backend.addr());
}

#[test]
fn truncated_content_length_body_closes_client_connection_early_curl() {
    let backend = backend_truncating(STREAMED_BODY, 50);
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let r = curl(&["--max-time", "10", &proxy.url("/")]);
    assert_eq!(
        r.exit_code, 18,
        "curl should report a partial transfer: {}",
        r.stderr
    );
    assert!(r.body.len() < STREAMED_BODY);
}

#[test]
fn truncated_content_length_body_closes_client_connection_early_raw() {
    let backend = backend_truncating(STREAMED_BODY, 50);
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let mut c = RawClient::connect(proxy.addr());
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let e = c
        .read_response()
        .expect_err("a complete response from a truncated body");
    assert!(
        matches!(
            e.kind(),
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
        ),
        "{e}"
    );
}

#[test]
fn refused_backend_is_502() {
    let dead = closed_port_addr();
    let proxy = Proxy::for_backends(&[dead]);
    let r = get(proxy.addr(), "/");
    assert_eq!(r.status, 502);
    assert_no_backend_address(&r, dead);
}

#[test]
fn silent_backend_is_504_after_backend_response_timeout() {
    let backend = Backend::start(|_| vec![Step::Stall]);
    let proxy = proxy_with_timeouts(&[backend.addr()], "backend_response = \"300ms\"");
    let started = Instant::now();
    let r = get(proxy.addr(), "/");
    let elapsed = started.elapsed();
    assert_eq!(r.status, 504);
    assert!(
        elapsed >= Duration::from_millis(250),
        "504 before the timeout: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "504 far too late: {elapsed:?}"
    );
    assert_no_backend_address(&r, backend.addr());
}

/// A listener with backlog 0 whose accept queue is full: further SYNs are dropped, so a
/// connect to it hangs. Returns the filler connections (keep them alive), or `None` if the
/// kernel never stalled a connect.
fn saturated_listener() -> Option<(socket2::Socket, SocketAddr, Vec<TcpStream>)> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(e) if e.kind() == ErrorKind::TimedOut || e.kind() == ErrorKind::WouldBlock => {
                return Some((socket, addr, fillers));
            }
            Err(_) => return None,
        }
    }
    None
}

#[test]
fn backend_connect_timeout_is_504() {
    let Some((_listener, addr, _fillers)) = saturated_listener() else {
        eprintln!("skipped: could not make a loopback connect hang on this kernel");
        return;
    };
    let proxy = proxy_with_timeouts(&[addr], "backend_connect = \"300ms\"");
    let started = Instant::now();
    let r = get(proxy.addr(), "/");
    assert_eq!(r.status, 504);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_no_backend_address(&r, addr);
}

/// A backend that sends its head and the first 10 bytes of a `declared`-byte body, then stalls.
fn backend_stalling_in_body(declared: usize) -> Backend {
    Backend::start(move |_| vec![Step::Write(partial_response(declared, 10)), Step::Stall])
}

#[test]
fn small_body_stall_beyond_body_idle_is_504() {
    let backend = backend_stalling_in_body(100);
    let proxy = proxy_with_timeouts(&[backend.addr()], "body_idle = \"300ms\"");
    let started = Instant::now();
    let r = get(proxy.addr(), "/");
    assert_eq!(r.status, 504, "{:?}", r.body_text());
    let waited = started.elapsed();
    assert!(
        (Duration::from_millis(250)..Duration::from_secs(5)).contains(&waited),
        "answered after {waited:?}, body_idle is 300ms"
    );
}

#[test]
fn backend_body_stall_beyond_body_idle_aborts_client_connection() {
    let backend = backend_stalling_in_body(STREAMED_BODY);
    let proxy = proxy_with_timeouts(&[backend.addr()], "body_idle = \"300ms\"");
    let mut c = RawClient::connect(proxy.addr());
    let started = Instant::now();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let e = c
        .read_response()
        .expect_err("complete response from a stalled body");
    assert!(
        matches!(
            e.kind(),
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
        ),
        "not aborted: {e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "aborted late: {:?}",
        started.elapsed()
    );
}

#[test]
fn stale_pooled_connection_is_retried_on_a_fresh_one() {
    // Keep-alive response without `Connection: close`, then the backend closes anyway.
    let backend = Backend::start(|req| {
        let mut steps = echo_reply(req);
        steps.extend([Step::Sleep(Duration::from_millis(30)), Step::Close]);
        steps
    });
    let proxy = Proxy::for_backends(&[backend.addr()]);
    assert_eq!(get(proxy.addr(), "/first").status, 200);
    std::thread::sleep(Duration::from_millis(200));
    let r = get(proxy.addr(), "/second");
    assert_eq!(
        r.status, 200,
        "request on a stale pooled connection was not retried"
    );
    assert_eq!(r.header("x-echo-target"), Some("/second"));
    assert_eq!(backend.targets(), ["/first", "/second"]);
    assert_eq!(backend.connections(), 2);
}

/// A POST cannot be retried once sent, so a pooled connection the backend closed while idle
/// must be noticed before it is used (backends close idle connections after a few seconds).
#[test]
fn post_after_backend_closed_its_idle_connection_succeeds() {
    let backend = Backend::start(|req| {
        let mut steps = echo_reply(req);
        steps.extend([Step::Sleep(Duration::from_millis(100)), Step::Close]);
        steps
    });
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let first = curl(&["--data-binary", "one", &proxy.url("/a")]);
    assert_eq!(first.status, 200);
    std::thread::sleep(Duration::from_millis(800));
    let second = curl(&["--data-binary", "two", &proxy.url("/b")]);
    assert_eq!(second.status, 200, "POST on a closed pooled connection");
    assert_eq!(second.body, b"two");
    assert_eq!(backend.connections(), 2);
}

/// A backend may answer before reading the whole body (413, 401...) and close: the client
/// gets that answer, not a 502.
#[test]
fn early_answer_during_a_large_upload_reaches_the_client() {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        read_head_bytes(&mut conn);
        let answer = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large";
        conn.write_all(answer).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        // Dropped with the body unread: the proxy's next write fails.
    });
    let proxy = Proxy::for_backends(&[addr]);
    let dir = TempDir::new();
    let file = dir.write("big", &pattern(8 << 20));
    let out = curl(&[
        "--data-binary",
        &format!("@{}", file.display()),
        &proxy.url("/upload"),
    ]);
    assert_eq!(out.status, 413, "stderr: {}", out.stderr);
    assert_eq!(out.body, b"too large");
}
