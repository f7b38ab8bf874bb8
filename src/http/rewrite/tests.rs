use super::*;
use crate::config::ViaEntry;
use crate::http::{HeadLimits, header_storage, parse_request, parse_response};

const LIMITS: HeadLimits = HeadLimits {
    max_request_line: 8192,
    max_header_bytes: 16384,
    max_headers: 100,
};

/// Every X-Forwarded-* field; Via has tests of its own.
const ALL_FORWARDED: ForwardedHeaders = ForwardedHeaders {
    x_forwarded_for: true,
    x_forwarded_proto: true,
    x_forwarded_host: true,
    via: None,
    request_id: None,
};

const NO_FORWARDED: ForwardedHeaders = ForwardedHeaders {
    x_forwarded_for: false,
    x_forwarded_proto: false,
    x_forwarded_host: false,
    via: None,
    request_id: None,
};

fn context(forwarded: &ForwardedHeaders) -> ForwardContext<'_> {
    ForwardContext {
        client_addr: "192.0.2.7",
        proto: "https",
        forwarded,
        default_host: "backend.internal",
        request_id: None,
    }
}

fn forwarded_request(request: &str, ctx: &ForwardContext<'_>) -> String {
    let mut storage = header_storage();
    let head = parse_request(request.as_bytes(), &mut storage, &LIMITS)
        .unwrap()
        .expect("complete request");
    let mut out = b"kept|".to_vec();
    write_request_head(&mut out, &head, ctx);
    let out = String::from_utf8(out).unwrap();
    out.strip_prefix("kept|")
        .expect("appends to the buffer")
        .to_owned()
}

fn relayed_response(response: &str, request_was_head: bool, ctx: &ResponseContext) -> String {
    let mut storage = header_storage();
    let head = parse_response(response.as_bytes(), &mut storage, 8192, request_was_head)
        .unwrap()
        .expect("complete response");
    let mut out = Vec::new();
    write_response_head(&mut out, &head, ctx);
    String::from_utf8(out).unwrap()
}

#[test]
fn request_minimal() {
    assert_eq!(
        forwarded_request(
            "GET /a?b HTTP/1.1\r\nHost: example.com\r\n\r\n",
            &context(&NO_FORWARDED)
        ),
        "GET /a?b HTTP/1.1\r\nHost: example.com\r\n\r\n"
    );
}

#[test]
fn request_drops_hop_by_hop_and_reframes() {
    let request = "POST /up HTTP/1.1\r\n\
        Accept: */*\r\n\
        Connection: keep-alive, X-Hop\r\n\
        Keep-Alive: timeout=5\r\n\
        host: example.com\r\n\
        X-Hop: secret\r\n\
        TE: trailers\r\n\
        Trailer: X-Sum\r\n\
        Proxy-Connection: keep-alive\r\n\
        Expect: 100-continue\r\n\
        Transfer-Encoding: chunked\r\n\
        Upgrade: h2c\r\n\
        X-Custom: 1\r\n\r\n";
    assert_eq!(
        forwarded_request(request, &context(&NO_FORWARDED)),
        "POST /up HTTP/1.1\r\n\
         Host: example.com\r\n\
         Accept: */*\r\n\
         X-Custom: 1\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
}

#[test]
fn request_content_length_is_canonical() {
    assert_eq!(
        forwarded_request(
            "PUT /x HTTP/1.1\r\nContent-Length: 5, 5\r\nHost: h\r\ncontent-length: 5\r\nX: y\r\n\r\n",
            &context(&NO_FORWARDED)
        ),
        "PUT /x HTTP/1.1\r\nHost: h\r\nX: y\r\nContent-Length: 5\r\n\r\n"
    );
    assert_eq!(
        forwarded_request(
            "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
            &context(&NO_FORWARDED)
        ),
        "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"
    );
}

#[test]
fn request_forwarded_headers() {
    let request = "GET / HTTP/1.1\r\n\
        Host: example.com\r\n\
        X-Forwarded-For: 203.0.113.1\r\n\
        X-Forwarded-Proto: gopher\r\n\
        X-Forwarded-Host: evil\r\n\
        x-forwarded-for: 198.51.100.2, 198.51.100.3\r\n\r\n";
    assert_eq!(
        forwarded_request(request, &context(&ALL_FORWARDED)),
        "GET / HTTP/1.1\r\n\
         Host: example.com\r\n\
         X-Forwarded-For: 203.0.113.1, 198.51.100.2, 198.51.100.3, 192.0.2.7\r\n\
         X-Forwarded-Proto: https\r\n\
         X-Forwarded-Host: example.com\r\n\r\n"
    );
    // Disabled: the client's fields pass through untouched.
    assert_eq!(
        forwarded_request(request, &context(&NO_FORWARDED)),
        "GET / HTTP/1.1\r\n\
         Host: example.com\r\n\
         X-Forwarded-For: 203.0.113.1\r\n\
         X-Forwarded-Proto: gopher\r\n\
         X-Forwarded-Host: evil\r\n\
         x-forwarded-for: 198.51.100.2, 198.51.100.3\r\n\r\n"
    );
    let ipv6 = ForwardContext {
        client_addr: "::1",
        ..context(&ForwardedHeaders {
            x_forwarded_for: true,
            ..NO_FORWARDED
        })
    };
    assert_eq!(
        forwarded_request("GET / HTTP/1.1\r\nHost: h\r\n\r\n", &ipv6),
        "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: ::1\r\n\r\n"
    );
}

#[test]
fn request_connection_named_forwarded_for_is_dropped() {
    assert_eq!(
        forwarded_request(
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: X-Forwarded-For\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n",
            &context(&ALL_FORWARDED)
        ),
        "GET / HTTP/1.1\r\nHost: h\r\n\
         X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: h\r\n\r\n"
    );
}

#[test]
fn request_http10_and_absolute_form() {
    assert_eq!(
        forwarded_request(
            "GET /old HTTP/1.0\r\nConnection: keep-alive\r\nUser-Agent: u\r\n\r\n",
            &context(&ForwardedHeaders {
                x_forwarded_host: true,
                ..NO_FORWARDED
            })
        ),
        "GET /old HTTP/1.1\r\nHost: backend.internal\r\nUser-Agent: u\r\n\
         X-Forwarded-Host: backend.internal\r\n\r\n"
    );
    assert_eq!(
        forwarded_request(
            "GET http://origin.example:8080/p?q HTTP/1.1\r\nHost: other\r\n\r\n",
            &context(&NO_FORWARDED)
        ),
        "GET /p?q HTTP/1.1\r\nHost: origin.example:8080\r\n\r\n"
    );
}

#[test]
fn request_upgrade() {
    assert_eq!(
        forwarded_request(
            "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n",
            &context(&NO_FORWARDED)
        ),
        "GET /ws HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Key: k\r\n\
         Connection: upgrade\r\nUpgrade: websocket\r\n\r\n"
    );
}

/// RFC 9113 3.1: h2c is not tunnelled. Its Upgrade, HTTP2-Settings and the Connection
/// options naming them are dropped and the request goes on as plain HTTP/1.1; other
/// protocols offered beside it stay on offer.
#[test]
fn request_h2c_upgrade_is_dropped() {
    assert_eq!(
        forwarded_request(
            "GET /x HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n\
             Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nAccept: */*\r\n\r\n",
            &context(&NO_FORWARDED)
        ),
        "GET /x HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n"
    );
    // HTTP2-Settings is connection-specific even when Connection does not say so.
    assert_eq!(
        forwarded_request(
            "GET /x HTTP/1.1\r\nHost: h\r\nhttp2-settings: AAMAAABk\r\n\r\n",
            &context(&NO_FORWARDED)
        ),
        "GET /x HTTP/1.1\r\nHost: h\r\n\r\n"
    );
    assert_eq!(
        forwarded_request(
            "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade, HTTP2-Settings\r\n\
             Upgrade: h2c, websocket ,H2C/1, h2\r\nHTTP2-Settings: AAMAAABk\r\n\r\n",
            &context(&NO_FORWARDED)
        ),
        "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
    );
}

fn via(received_by: &str) -> ForwardedHeaders {
    ForwardedHeaders {
        via: Some(ViaEntry::new(received_by)),
        ..NO_FORWARDED
    }
}

#[test]
fn request_via_is_added() {
    let ctx = via("ringproxy");
    assert_eq!(
        forwarded_request(
            "GET / HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n",
            &context(&ctx)
        ),
        "GET / HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nVia: 1.1 ringproxy\r\n\r\n"
    );
    // The received protocol is the client's: 1.0 for an HTTP/1.0 request.
    assert_eq!(
        forwarded_request("GET / HTTP/1.0\r\n\r\n", &context(&via("edge-1:8080"))),
        "GET / HTTP/1.1\r\nHost: backend.internal\r\nVia: 1.0 edge-1:8080\r\n\r\n"
    );
    // A later HTTP/1 minor version is received as 1.1, and forwarded as 1.1.
    assert_eq!(
        forwarded_request("GET / HTTP/1.2\r\nHost: h\r\n\r\n", &context(&ctx)),
        "GET / HTTP/1.1\r\nHost: h\r\nVia: 1.1 ringproxy\r\n\r\n"
    );
}

/// RFC 9110 7.6.3: the proxy appends its entry to the Via the request came with; several
/// Via lines are one list, in order.
#[test]
fn request_via_is_appended_to() {
    let request = "GET / HTTP/1.1\r\nHost: h\r\n\
        Via: 1.0 fred, 1.1 p.example.net (Proxy, v2)\r\nX: 1\r\nvia:\r\nVIA:  HTTP/1.1 edge \r\n\r\n";
    assert_eq!(
        forwarded_request(request, &context(&via("ringproxy"))),
        "GET / HTTP/1.1\r\nHost: h\r\nX: 1\r\n\
         Via: 1.0 fred, 1.1 p.example.net (Proxy, v2), HTTP/1.1 edge, 1.1 ringproxy\r\n\r\n"
    );
    // Off: the client's Via passes through untouched.
    assert_eq!(
        forwarded_request(request, &context(&NO_FORWARDED)),
        request.replace("VIA:  HTTP/1.1 edge \r\n", "VIA: HTTP/1.1 edge\r\n")
    );
    // A Via that Connection names is the client's hop only.
    assert_eq!(
        forwarded_request(
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: via\r\nVia: 1.1 inner\r\n\r\n",
            &context(&via("ringproxy"))
        ),
        "GET / HTTP/1.1\r\nHost: h\r\nVia: 1.1 ringproxy\r\n\r\n"
    );
}

/// Responses are relayed without a Via of the proxy's: a gateway (reverse proxy) MAY add
/// one to responses (RFC 9110 7.6.3), and nginx and HAProxy do not.
#[test]
fn response_gets_no_via() {
    assert_eq!(
        relayed_response(
            "HTTP/1.1 200 OK\r\nVia: 1.1 cdn\r\nContent-Length: 0\r\n\r\n",
            false,
            &KEEP_11
        ),
        "HTTP/1.1 200 OK\r\nVia: 1.1 cdn\r\nContent-Length: 0\r\n\r\n"
    );
}

const KEEP_11: ResponseContext = ResponseContext {
    client_version: Version::Http11,
    keep_alive: true,
    framing: BodyFraming::None,
    upgrade: false,
};

#[test]
fn response_length_and_hop_by_hop() {
    let ctx = ResponseContext {
        framing: BodyFraming::Length(5),
        ..KEEP_11
    };
    assert_eq!(
        relayed_response(
            "HTTP/1.1 200 OK\r\nServer: s\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\
             Keep-Alive: timeout=5\r\nContent-Length: 5\r\nETag: \"e\"\r\n\r\n",
            false,
            &ctx
        ),
        "HTTP/1.1 200 OK\r\nServer: s\r\nETag: \"e\"\r\nContent-Length: 5\r\n\r\n"
    );
}

#[test]
fn fields_copied_as_received_when_crlf_terminated_and_rewritten_otherwise() {
    let ctx = ResponseContext {
        framing: BodyFraming::Length(0),
        ..KEEP_11
    };
    // Runs of CRLF lines (spacing kept), around lines the proxy drops or must re-terminate:
    // bare LF, trailing whitespace, an empty value followed by whitespace.
    let response = "HTTP/1.1 200 OK\r\nA:1\r\nB:   two  words\r\nConnection: x\r\nX: gone\r\n\
        C: lf\nD: trailing \t\r\nE:\r\nF: \r\nG: g\r\nContent-Length: 0\r\nH: h\r\n\r\n";
    assert_eq!(
        relayed_response(response, false, &ctx),
        "HTTP/1.1 200 OK\r\nA:1\r\nB:   two  words\r\nC: lf\r\nD: trailing\r\nE:\r\n\
         F: \r\nG: g\r\nH: h\r\nContent-Length: 0\r\n\r\n"
    );
    // All bare LF: every line re-terminated.
    let lf_only = "HTTP/1.1 200 OK\nA: 1\nB: 2\nContent-Length: 0\n\n";
    assert_eq!(
        relayed_response(lf_only, false, &ctx),
        "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nContent-Length: 0\r\n\r\n"
    );
    let request = "GET / HTTP/1.1\nHost: h\nAccept: */*\r\nX-A:a\r\nX-B: b\nX-C: c\r\n\r\n";
    assert_eq!(
        forwarded_request(request, &context(&NO_FORWARDED)),
        "GET / HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nX-A:a\r\nX-B: b\r\nX-C: c\r\n\r\n"
    );
}

#[test]
fn response_rechunked_for_http10_client() {
    let ctx = ResponseContext {
        client_version: Version::Http10,
        keep_alive: false,
        framing: BodyFraming::CloseDelimited,
        upgrade: false,
    };
    assert_eq!(
        relayed_response(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\nContent-Type: a/b\r\n\r\n",
            false,
            &ctx
        ),
        "HTTP/1.1 200 OK\r\nContent-Type: a/b\r\nConnection: close\r\n\r\n"
    );
    let chunked = ResponseContext {
        framing: BodyFraming::Chunked,
        ..KEEP_11
    };
    assert_eq!(
        relayed_response(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
            &chunked
        ),
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
}

#[test]
fn response_connection_field() {
    let response = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n";
    let length = BodyFraming::Length(2);
    let expect = |ctx: ResponseContext, connection: &str| {
        assert_eq!(
            relayed_response(response, false, &ctx),
            format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n{connection}\r\n")
        );
    };
    expect(
        ResponseContext {
            framing: length,
            ..KEEP_11
        },
        "",
    );
    expect(
        ResponseContext {
            framing: length,
            keep_alive: false,
            ..KEEP_11
        },
        "Connection: close\r\n",
    );
    expect(
        ResponseContext {
            framing: length,
            client_version: Version::Http10,
            ..KEEP_11
        },
        "Connection: keep-alive\r\n",
    );
    expect(
        ResponseContext {
            framing: length,
            client_version: Version::Http10,
            keep_alive: false,
            upgrade: false,
        },
        "Connection: close\r\n",
    );
}

#[test]
fn response_head_and_304_keep_representation_length() {
    assert_eq!(
        relayed_response(
            "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
            true,
            &KEEP_11
        ),
        "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
    );
    assert_eq!(
        relayed_response(
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 9, 9\r\nETag: x\r\n\r\n",
            false,
            &KEEP_11
        ),
        "HTTP/1.1 304 Not Modified\r\nETag: x\r\nContent-Length: 9\r\n\r\n"
    );
    assert_eq!(
        relayed_response(
            "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
            false,
            &KEEP_11
        ),
        "HTTP/1.1 204 No Content\r\n\r\n"
    );
    assert_eq!(
        relayed_response(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            true,
            &KEEP_11
        ),
        "HTTP/1.1 200 OK\r\n\r\n"
    );
}

#[test]
fn response_interim() {
    assert_eq!(
        relayed_response("HTTP/1.1 100 Continue\r\n\r\n", false, &KEEP_11),
        "HTTP/1.1 100 Continue\r\n\r\n"
    );
    let closing = ResponseContext {
        keep_alive: false,
        ..KEEP_11
    };
    assert_eq!(
        relayed_response(
            "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nLink: </b.js>; rel=preload\r\n\r\n",
            false,
            &closing
        ),
        "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nLink: </b.js>; rel=preload\r\n\r\n"
    );
}

#[test]
fn response_switching_protocols() {
    let ctx = ResponseContext {
        upgrade: true,
        keep_alive: false,
        ..KEEP_11
    };
    assert_eq!(
        relayed_response(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Accept: a\r\n\r\n",
            false,
            &ctx
        ),
        "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: a\r\n\
         Connection: upgrade\r\nUpgrade: websocket\r\n\r\n"
    );
}

#[test]
fn response_reason_defaults_and_version() {
    let ctx = ResponseContext {
        framing: BodyFraming::Length(0),
        ..KEEP_11
    };
    assert_eq!(
        relayed_response("HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", false, &ctx),
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(
        relayed_response("HTTP/1.1 299\r\nContent-Length: 0\r\n\r\n", false, &ctx),
        "HTTP/1.1 299 \r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(
        relayed_response(
            "HTTP/1.1 200 Fine Thanks\r\nContent-Length: 0\r\n\r\n",
            false,
            &ctx
        ),
        "HTTP/1.1 200 Fine Thanks\r\nContent-Length: 0\r\n\r\n"
    );
}

#[test]
fn error_responses() {
    let mut out = Vec::new();
    write_error_response(&mut out, 502, true);
    assert_eq!(
        out,
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n\
          Connection: close\r\n\r\n502 Bad Gateway\n"
    );
    out.clear();
    write_error_response(&mut out, 404, false);
    assert_eq!(
        out,
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\n404 Not Found\n"
    );
    for status in [
        400, 404, 405, 408, 413, 414, 417, 421, 429, 431, 500, 501, 502, 503, 504, 505,
    ] {
        out.clear();
        write_error_response(&mut out, status, false);
        let text = String::from_utf8(out.clone()).unwrap();
        let reason = reason_phrase(status);
        assert!(!reason.is_empty(), "{status}");
        let body = format!("{status} {reason}\n");
        let retry_after = if status == 503 {
            "Retry-After: 2\r\n"
        } else {
            ""
        };
        assert_eq!(
            text,
            format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{retry_after}\r\n{body}",
                body.len()
            )
        );
        let mut storage = header_storage();
        let parsed = parse_response(&out, &mut storage, 8192, false)
            .unwrap()
            .unwrap();
        assert_eq!(parsed.body, BodyFraming::Length(body.len() as u64));
        assert_eq!(parsed.head_len() + body.len(), out.len());
    }
    out.clear();
    write_error_response(&mut out, 599, false);
    assert!(out.ends_with(b"Content-Length: 10\r\n\r\n599 Error\n"));
}

#[test]
fn decimal_formatting() {
    let mut out = Vec::new();
    for value in [0, 7, 10, 65535, u64::MAX] {
        out.clear();
        push_decimal(&mut out, value);
        assert_eq!(out, value.to_string().as_bytes());
    }
}

fn edits(set: &[(&str, &str)], remove: &[&str]) -> HeaderEdits {
    HeaderEdits {
        set: set
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        remove: remove.iter().map(|n| (*n).to_owned()).collect(),
    }
}

#[test]
fn routed_request_gets_the_routes_target_and_header_edits_in_one_pass() {
    let action = ProxyAction {
        upstream: "app".to_owned(),
        path_rewrite: Some(crate::config::PathRewrite::Strip("/api".to_owned())),
        request_headers: edits(&[("X-Route", "api")], &["cookie"]),
        response_headers: HeaderEdits::default(),
    };
    let route = RouteForward {
        action: &action,
        normalized_path: Some(b"/api/users"),
    };
    let request = "GET /api//users?q=1 HTTP/1.1\r\nHost: h\r\nCookie: a\r\nx-route: forged\r\n\
                   Accept: */*\r\n\r\n";
    let mut storage = header_storage();
    let head = parse_request(request.as_bytes(), &mut storage, &LIMITS)
        .unwrap()
        .unwrap();
    let mut out = Vec::new();
    write_routed_request_head(&mut out, &head, &context(&NO_FORWARDED), &route);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "GET /users?q=1 HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nX-Route: api\r\n\r\n"
    );
}

#[test]
fn a_route_that_sets_a_field_the_proxy_writes_replaces_it_instead_of_adding_a_second() {
    let action = ProxyAction {
        upstream: "app".to_owned(),
        path_rewrite: None,
        request_headers: edits(
            &[
                ("Host", "internal.example"),
                ("X-Forwarded-For", "10.9.9.9"),
                ("Via", "1.1 edge"),
            ],
            &[],
        ),
        response_headers: HeaderEdits::default(),
    };
    let route = RouteForward {
        action: &action,
        normalized_path: None,
    };
    let request = "GET / HTTP/1.1\r\nHost: public.example\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n";
    let mut storage = header_storage();
    let head = parse_request(request.as_bytes(), &mut storage, &LIMITS)
        .unwrap()
        .unwrap();
    let via = ForwardedHeaders {
        via: Some(ViaEntry::new("ringproxy")),
        ..ALL_FORWARDED
    };
    let mut out = Vec::new();
    write_routed_request_head(&mut out, &head, &context(&via), &route);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "GET / HTTP/1.1\r\nHost: internal.example\r\nX-Forwarded-For: 10.9.9.9\r\n\
         Via: 1.1 edge\r\nX-Forwarded-Proto: https\r\n\
         X-Forwarded-Host: public.example\r\n\r\n"
    );
}

#[test]
fn edited_response_drops_removed_and_replaced_fields_but_not_on_interim_responses() {
    let ctx = ResponseContext {
        client_version: Version::Http11,
        keep_alive: true,
        framing: BodyFraming::Length(0),
        upgrade: false,
    };
    let edits = edits(&[("Cache-Control", "no-store")], &["server"]);
    let relay = |response: &str| {
        let mut storage = header_storage();
        let head = parse_response(response.as_bytes(), &mut storage, 8192, false)
            .unwrap()
            .unwrap();
        let ctx = ResponseContext {
            framing: head.body,
            ..ctx
        };
        let mut out = Vec::new();
        write_edited_response_head(&mut out, &head, &ctx, &edits);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(
        relay(
            "HTTP/1.1 200 OK\r\nServer: x\r\ncache-control: public\r\nX-A: 1\r\n\
             Content-Length: 0\r\n\r\n"
        ),
        "HTTP/1.1 200 OK\r\nX-A: 1\r\nCache-Control: no-store\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(
        relay("HTTP/1.1 103 Early Hints\r\nServer: x\r\n\r\n"),
        "HTTP/1.1 103 Early Hints\r\nServer: x\r\n\r\n"
    );
}

#[test]
fn local_answers_say_their_length_and_omit_the_body_for_head() {
    let answer = LocalAnswer {
        keep_alive: true,
        client_version: Version::Http11,
        is_head: false,
    };
    let mut out = Vec::new();
    write_fixed_response(&mut out, 200, &[("X-A".into(), "1".into())], b"ok", &answer);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nok"
    );
    let head_close = LocalAnswer {
        keep_alive: false,
        is_head: true,
        ..answer
    };
    let mut out = Vec::new();
    write_not_found_response(&mut out, &head_close);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\
         Connection: close\r\n\r\n"
    );
    let mut out = b"kept|".to_vec();
    assert!(!write_redirect_response(&mut out, 308, &answer, |out| {
        out.extend_from_slice(b"partial");
        false
    }));
    assert_eq!(out, b"kept|");
    let http10 = LocalAnswer {
        client_version: Version::Http10,
        ..answer
    };
    assert!(write_redirect_response(&mut out, 301, &http10, |out| {
        out.extend_from_slice(b"https://a/");
        true
    }));
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "kept|HTTP/1.1 301 Moved Permanently\r\nLocation: https://a/\r\n\
         Content-Type: text/plain\r\nContent-Length: 22\r\nConnection: keep-alive\r\n\r\n\
         301 Moved Permanently\n"
    );
}

#[test]
fn a_generated_request_id_follows_the_client_fields_and_replaces_unusable_ones() {
    use crate::http::request_id::{GeneratedId, RequestIdLine, RequestIdValue};
    let line = |replaces_client| RequestIdLine {
        name: "X-Request-Id",
        value: RequestIdValue::Generated {
            id: GeneratedId {
                prefix: b"0123456789abcdef",
                counter: 7,
            },
            replaces_client,
        },
    };
    let (added, replacing) = (line(false), line(true));
    let with = |id| ForwardContext {
        request_id: Some(id),
        ..context(&NO_FORWARDED)
    };
    assert_eq!(
        forwarded_request(
            "GET / HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n",
            &with(&added)
        ),
        "GET / HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\
         X-Request-Id: 0123456789abcdef0000000000000007\r\n\r\n"
    );
    assert_eq!(
        forwarded_request(
            "GET / HTTP/1.1\r\nx-request-id: a b\r\nHost: h\r\nX-Request-Ids: 1\r\n\r\n",
            &with(&replacing)
        ),
        "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Ids: 1\r\n\
         X-Request-Id: 0123456789abcdef0000000000000007\r\n\r\n"
    );
    // A client's valid id goes as it came, where it came.
    let kept = RequestIdLine {
        name: "X-Request-Id",
        value: RequestIdValue::Client(b"abc"),
    };
    assert_eq!(
        forwarded_request(
            "GET / HTTP/1.1\r\nX-Request-Id: abc\r\nHost: h\r\n\r\n",
            &with(&kept)
        ),
        "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: abc\r\n\r\n"
    );
}
