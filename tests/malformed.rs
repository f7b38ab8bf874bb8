//! Malformed and ambiguous requests get an error status, the connection is closed, and
//! nothing reaches a backend (RFC 9112 §2.2, §3, §5, §6, §7).

mod common;

use common::*;
use std::time::Duration;

const LIMITS: &str =
    "[limits]\nmax_request_line = 8192\nmax_header_bytes = 16384\nmax_headers = 100\n";

fn start() -> (Backend, Proxy) {
    let backend = Backend::echo();
    let proxy = Proxy::start_with_config(&config(&[backend.addr()], LIMITS), &[]);
    (backend, proxy)
}

/// After the rejected request, a good one on a new connection must be the only thing the
/// backend ever received. Sending it also orders the check after the rejected request.
fn assert_backend_saw_only_sentinel(proxy: &Proxy, backend: &Backend, head_may_be_forwarded: bool) {
    let r = get(proxy.addr(), "/sentinel");
    assert_eq!(r.status, 200, "proxy unusable after a rejected request");
    assert_eq!(
        backend.targets(),
        ["/sentinel"],
        "a rejected request reached the backend as a complete request"
    );
    if head_may_be_forwarded {
        return;
    }
    for raw in backend.raw_received() {
        assert!(
            raw.is_empty() || raw.starts_with(b"GET /sentinel "),
            "backend received bytes of the rejected request: {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(200)])
        );
    }
}

/// Sends `request`, expects one of `statuses`, then a closed connection and an untouched
/// backend.
fn rejects(request: &[u8], statuses: &[u16]) {
    let (backend, proxy) = start();
    let mut c = RawClient::connect(proxy.addr());
    // The proxy may answer and close before reading everything; that is fine.
    let _ = c.try_send(request);
    let r = c.read_response().unwrap_or_else(|e| {
        panic!("no response (a reset here means the proxy closed without draining the request: lingering close missing?): {e}")
    });
    assert!(
        statuses.contains(&r.status),
        "got {} want {statuses:?}:\n{}",
        r.status,
        r.raw_head
    );
    c.wait_closed(Duration::from_secs(5)).unwrap();
    assert_backend_saw_only_sentinel(&proxy, &backend, false);
}

/// For errors found inside a chunked body: the head may already be on its way to the backend,
/// but the client gets 400 or an aborted connection and the backend never a complete request.
fn rejects_body(request: &[u8]) {
    let (backend, proxy) = start();
    let mut c = RawClient::connect(proxy.addr());
    let _ = c.try_send(request);
    match c.read_response() {
        Ok(r) => {
            assert_eq!(r.status, 400, "{}", r.raw_head);
            c.wait_closed(Duration::from_secs(5)).unwrap();
        }
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ),
            "neither 400 nor a closed connection: {e}"
        ),
    }
    assert_backend_saw_only_sentinel(&proxy, &backend, true);
}

macro_rules! rejected {
    ($($name:ident: $request:expr => $statuses:expr;)*) => {$(
        #[test]
        fn $name() {
            rejects($request.as_ref(), &$statuses);
        }
    )*};
}

rejected! {
    content_length_with_transfer_encoding_is_400:
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" => [400];
    transfer_encoding_with_content_length_is_400:
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" => [400];
    differing_duplicate_content_length_is_400:
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!" => [400];
    differing_content_length_list_is_400:
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 6\r\n\r\nhello!" => [400];
    negative_content_length_is_400:
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n" => [400];
    obs_fold_is_400:
        b"GET / HTTP/1.1\r\nHost: t\r\nX-A: one\r\n  folded\r\n\r\n" => [400];
    space_before_colon_is_400:
        b"GET / HTTP/1.1\r\nHost: t\r\nX-A : v\r\n\r\n" => [400];
    nul_in_header_value_is_400:
        b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\0b\r\n\r\n" => [400];
    bare_cr_in_header_is_400:
        b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rX-B: b\r\n\r\n" => [400];
    transfer_encoding_gzip_without_chunked_is_400:
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nabc" => [400];
    transfer_encoding_in_http_1_0_is_400:
        b"POST / HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" => [400];
    http_1_1_without_host_is_400:
        b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n" => [400];
    two_host_headers_is_400:
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" => [400];
    host_with_space_is_400:
        b"GET / HTTP/1.1\r\nHost: bad host\r\n\r\n" => [400];
    host_with_port_out_of_range_is_400:
        b"GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n" => [400];
    garbage_request_line_is_400:
        b"HELLO THERE\r\n\r\n" => [400];
    http_2_request_line_is_505:
        b"GET / HTTP/2.0\r\nHost: t\r\n\r\n" => [505];
    http_0_9_request_line_is_505:
        b"GET / HTTP/0.9\r\nHost: t\r\n\r\n" => [505];
    two_digit_minor_version_is_400:
        b"GET / HTTP/1.10\r\nHost: t\r\n\r\n" => [400];
    http_1_2_without_host_is_400:
        b"GET / HTTP/1.2\r\nX-A: b\r\n\r\n" => [400];
    request_line_longer_than_limit_is_414:
        format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000)) => [414];
    head_larger_than_limit_is_431:
        format!("GET / HTTP/1.1\r\nHost: t\r\n{}\r\n", (0..20).map(|i| format!("X-Big{i}: {}\r\n", "b".repeat(1000))).collect::<String>()) => [431];
    more_headers_than_limit_is_431:
        format!("GET / HTTP/1.1\r\nHost: t\r\n{}\r\n", (0..100).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()) => [431];
}

#[test]
fn invalid_chunk_size_is_400_or_abort_and_never_a_complete_request() {
    rejects_body(
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    );
}

#[test]
fn invalid_chunk_size_mid_body_is_400_or_abort_and_never_a_complete_request() {
    rejects_body(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n0\r\n\r\n");
}

#[test]
fn overflowing_chunk_size_is_400_or_abort_and_never_a_complete_request() {
    rejects_body(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\nhello\r\n0\r\n\r\n");
}

/// RFC 9112 §7.1.1 allows whitespace in a chunk-size line only before `;` and around `=`.
#[test]
fn chunk_size_followed_by_whitespace_without_extension_is_400_or_abort() {
    rejects_body(
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
    );
}

#[test]
fn space_inside_chunk_size_is_400_or_abort() {
    rejects_body(
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1 0\r\nhello\r\n0\r\n\r\n",
    );
}

#[test]
fn bare_lf_after_chunk_extension_is_400_or_abort() {
    rejects_body(
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5 ;a=b\nhello\r\n0\r\n\r\n",
    );
}

/// RFC 9110 §2.5: a later minor version of HTTP/1 is served as HTTP/1.1, the highest the
/// proxy supports, and forwarded as HTTP/1.1.
#[test]
fn http_1_2_request_is_served_as_http_1_1() {
    let (backend, proxy) = start();
    let mut c = RawClient::connect(proxy.addr());
    c.send(b"POST /v HTTP/1.2\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", r.raw_head);
    assert_eq!(r.version, "HTTP/1.1");
    assert_eq!(r.body_text(), "hello");
    // Kept alive, as HTTP/1.1 is by default.
    c.send(b"GET /again HTTP/1.9\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 200);
    let seen = backend.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        (seen[0].version.as_str(), seen[0].body.as_slice()),
        ("HTTP/1.1", &b"hello"[..])
    );
    assert_eq!(seen[1].version, "HTTP/1.1");
}

#[test]
fn requests_just_within_limits_are_accepted() {
    let (backend, proxy) = start();
    let mut c = RawClient::connect(proxy.addr());
    let long_target = format!("/{}", "a".repeat(8000));
    c.send(format!("GET {long_target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    assert_eq!(
        c.read_response().unwrap().status,
        200,
        "8 KB request line within 8192"
    );
    let many: String = (0..99).map(|i| format!("X-H{i}: v\r\n")).collect();
    c.send(format!("GET /many HTTP/1.1\r\nHost: t\r\n{many}\r\n").as_bytes());
    assert_eq!(
        c.read_response().unwrap().status,
        200,
        "100 headers within max_headers = 100"
    );
    assert_eq!(backend.requests().len(), 2);
}

#[test]
fn identical_duplicate_content_length_is_accepted_as_one() {
    // RFC 9112 §6.3: a list of identical values may be treated as that value.
    let (backend, proxy) = start();
    let mut c = RawClient::connect(proxy.addr());
    c.send(b"POST /dup HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello");
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_text(), "hello");
    assert_eq!(backend.requests()[0].header_all("content-length"), ["5"]);
}
