//! Request and response bodies arrive byte for byte in both framings and all sizes;
//! `Expect: 100-continue`.

mod common;

use common::*;

const SIZES: [usize; 4] = [0, 1, 64 * 1024, 10 * 1024 * 1024];

/// Serves `/gen/SIZE/cl` and `/gen/SIZE/chunked` with `pattern(SIZE)`; echoes anything else.
fn generating_backend() -> Backend {
    Backend::start(|req| {
        let parts: Vec<&str> = req.target.split('/').collect();
        match parts.as_slice() {
            ["", "gen", size, mode] => {
                let body = pattern(size.parse().unwrap());
                let bytes = if *mode == "chunked" {
                    chunked_response(&body, 16 * 1024 + 3)
                } else {
                    ok_response(&body)
                };
                vec![Step::Write(bytes)]
            }
            _ => echo_reply(req),
        }
    })
}

fn upload_with_curl(method: &str, size: usize, chunked: bool) {
    let backend = Backend::echo();
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let dir = TempDir::new();
    let body = pattern(size);
    let file = dir.write("upload", &body);
    let data = format!("@{}", file.display());
    let mut args = vec![
        "-X",
        method,
        "--data-binary",
        &data,
        "-H",
        "Content-Type: application/octet-stream",
    ];
    if chunked {
        args.extend(["-H", "Transfer-Encoding: chunked"]);
    }
    let url = proxy.url("/upload");
    args.push(&url);
    let r = curl(&args);
    let what = format!(
        "{method} {size} B {}",
        if chunked { "chunked" } else { "content-length" }
    );
    assert_eq!(r.exit_code, 0, "{what}: curl: {}", r.stderr);
    assert_eq!(r.status, 200, "{what}");
    let reqs = backend.requests();
    assert_eq!(reqs.len(), 1, "{what}");
    assert_eq!(reqs[0].method, method);
    assert_same_body(&reqs[0].body, &body, &format!("{what}: at backend"));
    assert_same_body(&r.body, &body, &format!("{what}: echoed to client"));
}

fn upload_all_methods_and_framings(size: usize) {
    for method in ["POST", "PUT", "GET"] {
        for chunked in [false, true] {
            upload_with_curl(method, size, chunked);
        }
    }
}

#[test]
fn request_bodies_of_0_bytes() {
    upload_all_methods_and_framings(SIZES[0]);
}

#[test]
fn request_bodies_of_1_byte() {
    upload_all_methods_and_framings(SIZES[1]);
}

#[test]
fn request_bodies_of_64_kib() {
    upload_all_methods_and_framings(SIZES[2]);
}

#[test]
fn request_bodies_of_10_mib() {
    upload_with_curl("POST", SIZES[3], false);
    upload_with_curl("PUT", SIZES[3], true);
    upload_with_curl("GET", SIZES[3], false);
}

/// Fetches `/gen/SIZE/MODE` from a generating backend for every size and framing through
/// `fetch` (target in, status and body the client saw out) and asserts each body arrives whole.
fn assert_generated_bodies_arrive(mut fetch: impl FnMut(&str) -> (u16, Vec<u8>)) {
    for size in SIZES {
        for mode in ["cl", "chunked"] {
            let what = format!("{size} B {mode} response");
            let (status, body) = fetch(&format!("/gen/{size}/{mode}"));
            assert_eq!(status, 200, "{what}");
            assert_same_body(&body, &pattern(size), &what);
        }
    }
}

#[test]
fn response_bodies_of_all_sizes_via_curl() {
    let backend = generating_backend();
    let proxy = Proxy::for_backends(&[backend.addr()]);
    assert_generated_bodies_arrive(|target| {
        let r = curl(&[&proxy.url(target)]);
        assert_eq!(r.exit_code, 0, "{target}: {}", r.stderr);
        (r.status, r.body)
    });
}

#[test]
fn response_bodies_of_all_sizes_via_raw_keep_alive_connection() {
    let backend = generating_backend();
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let mut c = RawClient::connect(proxy.addr());
    assert_generated_bodies_arrive(|target| {
        c.send(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let r = c.read_response().unwrap();
        (r.status, r.body)
    });
}

#[test]
fn raw_request_bodies_in_both_framings_arrive_exactly() {
    let backend = Backend::echo();
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let mut c = RawClient::connect(proxy.addr());
    for size in [0, 1, 64 * 1024, 1024 * 1024 + 17] {
        let body = pattern(size);
        let mut req =
            format!("POST /cl{size} HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n\r\n")
                .into_bytes();
        req.extend_from_slice(&body);
        c.send(&req);
        let r = c.read_response().unwrap();
        assert_same_body(&r.body, &body, "content-length upload echoed");

        let mut req =
            format!("PUT /ch{size} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
                .into_bytes();
        req.extend_from_slice(&chunked(&body, 7 * 1024 + 1));
        c.send(&req);
        let r = c.read_response().unwrap();
        assert_same_body(&r.body, &body, "chunked upload echoed");
    }
    for req in backend.requests() {
        let size: usize = req.target[3..].parse().unwrap();
        assert_same_body(
            &req.body,
            &pattern(size),
            &format!("{} at backend", req.target),
        );
    }
}

/// RFC 9112 §7.1.1: whitespace before `;` and around `=` in chunk extensions is valid, in
/// request and response bodies alike, and the body passes whole both ways.
#[test]
fn chunk_extensions_with_whitespace_pass_both_ways() {
    let backend = Backend::start(|req| match req.target.as_str() {
        "/download" => vec![Step::Write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5 ; name = \"a; b\"\r\nhello\r\n6\t;x\r\n world\r\n0 ; ieof\r\n\r\n"
                .to_vec(),
        )],
        _ => echo_reply(req),
    });
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let mut c = RawClient::connect(proxy.addr());
    c.send(
        b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          5 ;a=1\r\nhello\r\n6\t; b = \"x y\"\r\n world\r\n0 ; ieof\r\n\r\n",
    );
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", r.raw_head);
    assert_eq!(r.body_text(), "hello world");
    assert_eq!(backend.requests()[0].body, b"hello world");

    c.send(b"GET /download HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", r.raw_head);
    assert_eq!(r.body_text(), "hello world");
}

#[test]
fn expect_100_continue_with_curl() {
    let backend = Backend::echo();
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let dir = TempDir::new();
    let body = pattern(2048);
    let file = dir.write("b", &body);
    let data = format!("@{}", file.display());
    // A long expect timeout: without a 100 from the proxy curl would wait 10 s.
    let r = curl(&[
        "--expect100-timeout",
        "10",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        &data,
        &proxy.url("/expect"),
    ]);
    assert_eq!(r.exit_code, 0, "{}", r.stderr);
    assert_eq!(r.status, 200);
    assert!(
        r.header_dump.contains("100 Continue"),
        "no 100 Continue seen:\n{}",
        r.header_dump
    );
    assert!(
        r.elapsed.as_secs() < 5,
        "curl waited for its expect timeout: {:?}",
        r.elapsed
    );
    assert_same_body(&r.body, &body, "echo");
    let req = &backend.requests()[0];
    assert!(
        req.header("expect").is_none(),
        "Expect forwarded:\n{}",
        req.raw_head
    );
    assert_same_body(&req.body, &body, "at backend");
}

#[test]
fn expect_100_continue_raw_gets_interim_response_before_body_is_sent() {
    let backend = Backend::echo();
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let mut c = RawClient::connect(proxy.addr());
    c.send(b"POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let interim = c.read_response().unwrap();
    assert_eq!(interim.status, 100, "{}", interim.raw_head);
    assert!(
        interim.raw_head.starts_with("HTTP/1.1 100 Continue\r\n"),
        "{:?}",
        interim.raw_head
    );
    // The proxy invites the body itself: no backend is held for a client that may not send.
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(backend.connections(), 0, "connected before the body came");
    c.send(b"hello");
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_text(), "hello");
    let req = &backend.requests()[0];
    assert!(
        req.header("expect").is_none(),
        "Expect forwarded:\n{}",
        req.raw_head
    );
    c.assert_serves_next_request();
}

#[test]
fn unknown_expectation_gets_417_and_is_not_forwarded() {
    let backend = Backend::echo();
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let mut c = RawClient::connect(proxy.addr());
    c.send(b"POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: foo\r\n\r\nhello");
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 417);
    drop(c);
    assert_eq!(get(proxy.addr(), "/sentinel").status, 200);
    assert_eq!(
        backend.targets(),
        ["/sentinel"],
        "the 417 request reached the backend"
    );
}

/// A backend that writes its head and, a moment later, a small body: the client still gets
/// head and body in one piece (one write from the proxy, like nginx's postpone_output).
#[test]
fn small_response_body_arriving_late_reaches_the_client_with_its_head() {
    use std::io::{Read, Write};
    use std::time::Duration;
    let backend = Backend::start(|_| {
        vec![
            Step::Write(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n".to_vec()),
            Step::Sleep(Duration::from_millis(150)),
            Step::Write(b"hello world\n".to_vec()),
            Step::Stall,
        ]
    });
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let mut conn = std::net::TcpStream::connect(proxy.addr()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut first_read = vec![0; 4096];
    let n = conn.read(&mut first_read).unwrap();
    let got = String::from_utf8_lossy(&first_read[..n]);
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");
    assert!(
        got.ends_with("\r\n\r\nhello world\n"),
        "the first read holds the head without its body: {got:?}"
    );
}
