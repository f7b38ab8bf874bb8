//! Ordinary proxying: keep-alive and pooling, pipelining, header hygiene, interim responses,
//! bodiless responses, WebSocket upgrade, round robin.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn get_through_curl_reaches_backend_and_returns_its_response() {
    let backend = Backend::echo();
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let r = curl(&[&proxy.url("/hello?x=1")]);
    assert_eq!(r.exit_code, 0, "{}", r.stderr);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-echo-target").as_deref(), Some("/hello?x=1"));
    assert_eq!(r.header("x-echo-method").as_deref(), Some("GET"));
    let reqs = backend.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].version, "HTTP/1.1");
}

#[test]
fn many_requests_on_one_client_connection_use_one_backend_connection() {
    let backend = Backend::echo();
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let mut c = RawClient::connect(proxy.addr());
    for i in 0..10 {
        c.send(format!("GET /k{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-echo-target"), Some(format!("/k{i}").as_str()));
    }
    assert_eq!(
        backend.connections(),
        1,
        "backend connection should be reused"
    );
    assert_eq!(backend.requests().len(), 10);
}

#[test]
fn curl_reusing_its_connection_for_several_urls_sees_one_backend_connection() {
    let backend = Backend::echo();
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let r = curl(&[&proxy.url("/a"), &proxy.url("/b"), &proxy.url("/c")]);
    assert_eq!(r.exit_code, 0, "{}", r.stderr);
    assert_eq!(backend.targets(), ["/a", "/b", "/c"]);
    assert_eq!(backend.connections(), 1);
}

#[test]
fn sequential_client_connections_reuse_the_pooled_backend_connection() {
    let backend = Backend::echo();
    let proxy = Proxy::for_backends(&[backend.addr()]);
    for i in 0..3 {
        let r = curl(&[&proxy.url(&format!("/seq{i}"))]);
        assert_eq!(r.status, 200, "{}", r.stderr);
    }
    assert_eq!(backend.requests().len(), 3);
    assert_eq!(
        backend.connections(),
        1,
        "pooled backend connection not reused across clients"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order_including_a_post_with_body() {
    let backend = Backend::echo();
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let mut c = RawClient::connect(proxy.addr());
    let batch = "GET /p1 HTTP/1.1\r\nHost: t\r\n\r\n\
                 POST /p2 HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world\
                 GET /p3 HTTP/1.1\r\nHost: t\r\n\r\n\
                 POST /p4 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
                 GET /p5 HTTP/1.1\r\nHost: t\r\n\r\n";
    c.send(batch.as_bytes());
    let expected = [
        ("/p1", ""),
        ("/p2", "hello world"),
        ("/p3", ""),
        ("/p4", "abc"),
        ("/p5", ""),
    ];
    for (target, body) in expected {
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-echo-target"), Some(target));
        assert_eq!(r.body_text(), body, "response to {target}");
    }
}

#[test]
fn hop_by_hop_request_headers_are_removed_and_forwarded_headers_added() {
    let backend = Backend::echo();
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let mut c = RawClient::connect(proxy.addr());
    c.send(
        b"GET /h HTTP/1.1\r\nHost: example.test\r\nConnection: close, X-Secret\r\n\
          Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-Checksum\r\n\
          Proxy-Connection: keep-alive\r\nUpgrade: h2c\r\nX-Secret: hunter2\r\n\
          X-Normal: kept\r\n\r\n",
    );
    assert_eq!(c.read_response().unwrap().status, 200);
    let req = &backend.requests()[0];
    for name in [
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "proxy-connection",
        "upgrade",
        "x-secret",
    ] {
        // The proxy may add its own `Connection` to the backend, but never the client's.
        if name == "connection" {
            let v = req.header(name).unwrap_or("").to_ascii_lowercase();
            assert!(
                !v.contains("x-secret"),
                "client Connection forwarded: {v:?}"
            );
            continue;
        }
        assert!(
            req.header(name).is_none(),
            "{name} forwarded:\n{}",
            req.raw_head
        );
    }
    assert_eq!(req.header("x-normal"), Some("kept"));
    assert_eq!(req.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(req.header("x-forwarded-proto"), Some("http"));
    assert_eq!(req.header("x-forwarded-host"), Some("example.test"));
    assert_eq!(
        req.header("host"),
        Some("example.test"),
        "Host must be passed through"
    );
}

#[test]
fn x_forwarded_for_appends_client_address_to_existing_value() {
    let backend = Backend::echo();
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let r = curl(&["-H", "X-Forwarded-For: 203.0.113.7", &proxy.url("/xff")]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    let req = &backend.requests()[0];
    assert_eq!(
        req.header_all("x-forwarded-for"),
        ["203.0.113.7, 127.0.0.1"]
    );
}

/// RFC 9110 §7.6.3: a forwarded request carries the proxy's Via entry, appended to the
/// client's; the response comes back without one.
#[test]
fn requests_carry_via_appended_to_the_clients() {
    let backend = Backend::echo();
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let mut c = RawClient::connect(proxy.addr());
    c.send(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(
        r.header("via"),
        None,
        "Via added to a response:\n{}",
        r.raw_head
    );
    c.send(
        b"GET /b HTTP/1.1\r\nHost: t\r\nVia: 1.0 fred, 1.1 cdn (edge, v2)\r\nVia: 1.1 lb\r\n\r\n",
    );
    assert_eq!(c.read_response().unwrap().status, 200);
    c.send(b"GET /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 200);
    let seen = backend.requests();
    let vias: Vec<Vec<&str>> = seen.iter().map(|req| req.header_all("via")).collect();
    assert_eq!(
        vias,
        [
            vec!["1.1 ringproxy"],
            vec!["1.0 fred, 1.1 cdn (edge, v2), 1.1 lb, 1.1 ringproxy"],
            vec!["1.0 ringproxy"],
        ]
    );
}

#[test]
fn via_name_is_configurable() {
    let backend = Backend::echo();
    let extra = "[forwarded]\nvia = \"edge-7:8080\"\n";
    let proxy = Proxy::start_with_config(&config(&[backend.addr()], extra), &[]);
    assert_eq!(get(proxy.addr(), "/").status, 200);
    assert_eq!(backend.requests()[0].header_all("via"), ["1.1 edge-7:8080"]);
}

/// The backend below switches to h2c whenever it is offered, as an HTTP/2 server with
/// cleartext upgrades does; through the proxy it is never offered.
fn h2c_or_websocket_backend() -> Backend {
    Backend::start(|req| {
        let upgrade = req.header("upgrade").unwrap_or("").to_ascii_lowercase();
        if upgrade.split(',').any(|p| p.trim() == "h2c") {
            return vec![
                Step::Write(
                    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
                        .to_vec(),
                ),
                Step::Stall,
            ];
        }
        if upgrade == "websocket" {
            return vec![
                Step::Write(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                        .to_vec(),
                ),
                Step::WebSocketEcho,
            ];
        }
        echo_reply(req)
    })
}

/// RFC 9113 §3.1 deprecates the h2c upgrade: it is dropped (with HTTP2-Settings) and the
/// request is served as plain HTTP/1.1, so no HTTP/2 can pass the proxy in a tunnel.
#[test]
fn h2c_upgrade_is_dropped_and_the_request_served_as_http_1_1() {
    let backend = h2c_or_websocket_backend();
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let mut c = RawClient::connect(proxy.addr());
    c.send(
        b"GET /h2 HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
          HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
    );
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", r.raw_head);
    assert_eq!(r.header("x-echo-target"), Some("/h2"));
    let req = &backend.requests()[0];
    for name in ["upgrade", "http2-settings", "connection"] {
        assert_eq!(
            req.header(name),
            None,
            "{name} forwarded:\n{}",
            req.raw_head
        );
    }
    c.assert_serves_next_request();
}

/// Of `Upgrade: h2c, websocket`, only WebSocket is offered to the backend, and it works.
#[test]
fn upgrade_listing_h2c_and_websocket_offers_websocket_only() {
    let backend = h2c_or_websocket_backend();
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let mut c = RawClient::connect(proxy.addr());
    c.send(
        b"GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: h2c, websocket\r\nConnection: Upgrade, HTTP2-Settings\r\n\
          HTTP2-Settings: AAMAAABk\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 101, "{}", r.raw_head);
    assert_eq!(r.header("upgrade"), Some("websocket"));
    let req = &backend.requests()[0];
    assert_eq!(req.header_all("upgrade"), ["websocket"]);
    assert_eq!(req.header("http2-settings"), None, "{}", req.raw_head);
    let key = [0x12, 0x34, 0x56, 0x78];
    c.send(&ws_frame(0x1, b"ping", Some(key)));
    assert_eq!(ws_read_frame(c.reader()).unwrap(), (0x1, b"ping".to_vec()));
    c.send(&ws_frame(0x8, &[0x03, 0xe8], Some(key)));
    assert_eq!(ws_read_frame(c.reader()).unwrap(), (0x8, vec![0x03, 0xe8]));
    c.wait_closed(IO_TIMEOUT).unwrap();
}

#[test]
fn hop_by_hop_response_headers_are_removed() {
    let backend = Backend::start(|_| {
        vec![Step::Write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: X-Drop-Me\r\n\
              Keep-Alive: timeout=5\r\nX-Drop-Me: 1\r\nProxy-Connection: keep-alive\r\n\
              Trailer: X-Checksum\r\nTE: trailers\r\nUpgrade: foo\r\nX-Kept: yes\r\n\r\nok"
                .to_vec(),
        )]
    });
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let mut c = RawClient::connect(proxy.addr());
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_text(), "ok");
    assert_eq!(r.header("x-kept"), Some("yes"));
    for name in [
        "keep-alive",
        "x-drop-me",
        "proxy-connection",
        "trailer",
        "te",
        "upgrade",
    ] {
        assert!(r.header(name).is_none(), "{name} relayed:\n{}", r.raw_head);
    }
    let conn = r.header("connection").unwrap_or("").to_ascii_lowercase();
    assert!(
        !conn.contains("x-drop-me"),
        "backend Connection relayed: {conn:?}"
    );
    // The connection stays usable.
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response().unwrap().body_text(), "ok");
}

#[test]
fn early_hints_103_is_relayed_before_the_final_response() {
    let backend = Backend::start(|_| {
        vec![
            Step::Write(
                b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n".to_vec(),
            ),
            Step::Sleep(Duration::from_millis(20)),
            Step::Write(ok_response(b"final")),
        ]
    });
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let mut c = RawClient::connect(proxy.addr());
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let hints = c.read_response().unwrap();
    assert_eq!(hints.status, 103);
    assert_eq!(hints.header("link"), Some("</style.css>; rel=preload"));
    let fin = c.read_response().unwrap();
    assert_eq!(fin.status, 200);
    assert_eq!(fin.body_text(), "final");
}

#[test]
fn head_response_has_no_body_but_keeps_content_length() {
    let backend = Backend::start(|req| {
        if req.method == "HEAD" {
            vec![Step::Write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n".to_vec(),
            )]
        } else {
            echo_reply(req)
        }
    });
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let mut c = RawClient::connect(proxy.addr());
    c.send(b"HEAD /x HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_head_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1234"));
    c.send(b"POST /after HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nabcde");
    let r = c.read_response().unwrap();
    assert_eq!(
        r.header("x-echo-target"),
        Some("/after"),
        "HEAD response carried a body?"
    );
    assert_eq!(r.body_text(), "abcde");
}

fn bodiless_status_keeps_connection_usable(status_line: &str) {
    let head = format!("HTTP/1.1 {status_line}\r\nETag: \"v1\"\r\n\r\n");
    let backend = Backend::start(move |req| {
        if req.target == "/bodiless" {
            vec![Step::Write(head.clone().into_bytes())]
        } else {
            echo_reply(req)
        }
    });
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let mut c = RawClient::connect(proxy.addr());
    c.send(b"GET /bodiless HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.status.to_string(), status_line[..3]);
    assert!(
        r.header("transfer-encoding").is_none(),
        "bodiless response got framing:\n{}",
        r.raw_head
    );
    c.send(b"POST /after HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyz");
    let r = c.read_response().unwrap();
    assert_eq!(r.header("x-echo-target"), Some("/after"));
    assert_eq!(r.body_text(), "xyz");
}

#[test]
fn no_content_204_has_no_body_and_next_request_works() {
    bodiless_status_keeps_connection_usable("204 No Content");
}

#[test]
fn not_modified_304_has_no_body_and_next_request_works() {
    bodiless_status_keeps_connection_usable("304 Not Modified");
}

#[test]
fn websocket_upgrade_relays_frames_both_ways_and_close() {
    let backend = Backend::start(|req| {
        let upgrade = req.header("upgrade").unwrap_or("").to_ascii_lowercase();
        let connection = req.header("connection").unwrap_or("").to_ascii_lowercase();
        if upgrade != "websocket" || !connection.contains("upgrade") {
            return vec![Step::Write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".to_vec(),
            )];
        }
        let mut out =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
                .to_vec();
        out.extend_from_slice(&ws_frame(0x1, b"hello from server", None));
        vec![Step::Write(out), Step::WebSocketEcho]
    });
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let mut c = RawClient::connect(proxy.addr());
    c.send(
        b"GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 101, "{}", r.raw_head);
    assert_eq!(
        r.header("upgrade").map(str::to_ascii_lowercase).as_deref(),
        Some("websocket")
    );
    assert_eq!(
        ws_read_frame(c.reader()).unwrap(),
        (0x1, b"hello from server".to_vec())
    );

    let key = [0x12, 0x34, 0x56, 0x78];
    for msg in [&b"ping one"[..], &[b'x'; 300][..]] {
        c.send(&ws_frame(0x1, msg, Some(key)));
        assert_eq!(ws_read_frame(c.reader()).unwrap(), (0x1, msg.to_vec()));
    }
    c.send(&ws_frame(0x8, &[0x03, 0xe8], Some(key)));
    assert_eq!(ws_read_frame(c.reader()).unwrap(), (0x8, vec![0x03, 0xe8]));
    c.wait_closed(IO_TIMEOUT).unwrap();
}

#[test]
fn round_robin_spreads_requests_over_all_upstreams() {
    let a = Backend::echo();
    let b = Backend::echo();
    let proxy = Proxy::for_backends(&[a.addr(), b.addr()]);
    for i in 0..4 {
        let r = get(proxy.addr(), &format!("/rr{i}"));
        assert_eq!(r.status, 200);
    }
    assert_eq!(
        a.requests().len(),
        2,
        "a got {:?}, b got {:?}",
        a.targets(),
        b.targets()
    );
    assert_eq!(b.requests().len(), 2);
}

#[test]
fn weighted_backends_get_requests_in_proportion() {
    let a = Backend::echo();
    let b = Backend::echo();
    let toml = format!(
        "[runtime]\nworkers = 1\npin = false\n[[listener]]\naddress = \"127.0.0.1:0\"\nupstream = \"app\"\n\
         [upstream.app]\nbackends = [\"{}\", {{ address = \"{}\", weight = 2 }}]\n",
        a.addr(),
        b.addr()
    );
    let proxy = Proxy::start_with_config(&toml, &[]);
    for i in 0..6 {
        assert_eq!(get(proxy.addr(), &format!("/w{i}")).status, 200);
    }
    assert_eq!((a.requests().len(), b.requests().len()), (2, 4));
}

/// A server pushing to a silent client keeps the tunnel alive: idleness counts bytes in
/// either direction. (The pushing backend treats a half-close from the proxy as the end, as
/// WebSocket servers do.)
#[test]
fn websocket_push_to_a_silent_client_outlives_body_idle() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        read_head_bytes(&mut conn);
        let mut byte = [0u8; 1];
        conn.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            .unwrap();
        conn.set_nonblocking(true).unwrap();
        for i in 0..8u8 {
            std::thread::sleep(Duration::from_millis(100));
            if matches!(conn.read(&mut byte), Ok(0)) {
                return; // the proxy half-closed: the session is over
            }
            let _ = conn.write_all(&ws_frame(0x1, &[b'0' + i], None));
        }
    });
    let toml = config(&[addr], "[timeouts]\nbody_idle = \"300ms\"\n");
    let proxy = Proxy::start_with_config(&toml, &[]);
    let mut c = RawClient::connect(proxy.addr());
    c.send(b"GET /feed HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 101);
    for i in 0..8u8 {
        let frame = ws_read_frame(c.reader()).unwrap_or_else(|e| panic!("frame {i}: {e}"));
        assert_eq!(frame, (0x1, vec![b'0' + i]));
    }
}

/// A response without Content-Length or chunking ends when the backend closes: the client
/// gets all of it, told by `Connection: close` that the end of the connection is the end.
#[test]
fn close_delimited_response_reaches_the_client_whole() {
    let body = pattern(100_000);
    let reply = [
        &b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n"[..],
        &body,
    ]
    .concat();
    let backend = Backend::start(move |_| vec![Step::Write(reply.clone()), Step::Close]);
    let proxy = Proxy::for_backends(&[backend.addr()]);
    let mut c = RawClient::connect(proxy.addr());
    c.send(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    let all = c.read_to_end().unwrap();
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    let head = String::from_utf8_lossy(&all[..split]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(
        !head.contains("content-length") && !head.contains("transfer-encoding"),
        "{head}"
    );
    assert_same_body(&all[split..], &body, "close-delimited body");
}

#[test]
fn forwarded_headers_can_be_turned_off() {
    let backend = Backend::echo();
    let extra = "[forwarded]\nx_forwarded_for = false\nx_forwarded_proto = false\n\
                 x_forwarded_host = false\nvia = false\n";
    let proxy = Proxy::start_with_config(&config(&[backend.addr()], extra), &[]);
    let mut c = RawClient::connect(proxy.addr());
    c.send(
        b"GET / HTTP/1.1\r\nHost: site.example\r\nX-Forwarded-For: 203.0.113.7\r\nVia: 1.1 cdn\r\n\r\n",
    );
    assert_eq!(c.read_response().unwrap().status, 200);
    let seen = &backend.requests()[0];
    assert_eq!(
        seen.header_all("x-forwarded-for"),
        ["203.0.113.7"],
        "passed through untouched"
    );
    assert_eq!(seen.header("x-forwarded-proto"), None);
    assert_eq!(seen.header("x-forwarded-host"), None);
    assert_eq!(
        seen.header_all("via"),
        ["1.1 cdn"],
        "passed through untouched"
    );
}
