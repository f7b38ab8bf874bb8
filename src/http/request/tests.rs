use super::*;
use crate::http::{MAX_HEADERS, header_storage};

const LIMITS: HeadLimits = HeadLimits {
    max_request_line: 8192,
    max_header_bytes: 16384,
    max_headers: 100,
};

/// Parses with default limits and hands the result to `check`.
fn with_parsed<R>(
    buf: &[u8],
    check: impl FnOnce(Result<Option<RequestHead<'_, '_>>, ParseError>) -> R,
) -> R {
    with_limits(buf, &LIMITS, check)
}

fn with_limits<R>(
    buf: &[u8],
    limits: &HeadLimits,
    check: impl FnOnce(Result<Option<RequestHead<'_, '_>>, ParseError>) -> R,
) -> R {
    let mut storage = header_storage();
    check(parse_request(buf, &mut storage, limits))
}

fn error(buf: &[u8]) -> ParseError {
    with_parsed(buf, |result| result.expect_err("request must be rejected"))
}

/// `Ok(true)` complete, `Ok(false)` needs more bytes.
fn outcome(buf: &[u8], limits: &HeadLimits) -> Result<bool, ParseError> {
    with_limits(buf, limits, |result| result.map(|head| head.is_some()))
}

fn complete<R>(buf: &[u8], check: impl FnOnce(RequestHead<'_, '_>) -> R) -> R {
    with_parsed(buf, |result| {
        check(result.unwrap().expect("head must be complete"))
    })
}

#[test]
fn simple_get() {
    let buf = b"GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
    complete(buf, |head| {
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, "/index.html?q=1");
        assert_eq!(head.path, "/index.html?q=1");
        assert_eq!(head.version, Version::Http11);
        assert_eq!(head.host, b"example.com");
        assert_eq!(head.headers.len(), 2);
        assert_eq!(head.headers[1].name, "Accept");
        assert_eq!(head.headers[1].value, b"*/*");
        assert_eq!(head.head_len(), buf.len());
        assert_eq!(head.body, BodyFraming::None);
        assert!(head.keep_alive);
        assert!(!head.expect_continue);
        assert_eq!(head.upgrade, None);
        assert!(!head.is_head);
        assert!(head.idempotent);
    });
}

#[test]
fn every_proper_prefix_needs_more_bytes() {
    let buf = b"\r\nPOST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nX: y\r\n\r\n";
    for end in 0..buf.len() {
        assert_eq!(outcome(&buf[..end], &LIMITS), Ok(false), "prefix {end}");
    }
    complete(buf, |head| assert_eq!(head.head_len(), buf.len()));
}

#[test]
fn bare_lf_heads_split_anywhere() {
    let buf = b"GET / HTTP/1.1\nHost: h\n\n";
    for end in 0..buf.len() {
        assert_eq!(outcome(&buf[..end], &LIMITS), Ok(false), "prefix {end}");
    }
    complete(buf, |head| assert_eq!(head.head_len(), buf.len()));
}

#[test]
fn body_and_pipelined_requests_are_left_alone() {
    let buf = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: h\r\n\r\nGET /c";
    let first_len = complete(buf, |head| {
        assert_eq!(head.body, BodyFraming::Length(5));
        assert_eq!(&buf[head.head_len()..head.head_len() + 5], b"hello");
        head.head_len()
    });
    let second = &buf[first_len + 5..];
    let second_len = complete(second, |head| {
        assert_eq!(head.path, "/b");
        head.head_len()
    });
    assert_eq!(outcome(&second[second_len..], &LIMITS), Ok(false));
}

#[test]
fn leading_empty_lines_are_skipped() {
    let buf = b"\r\n\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    complete(buf, |head| {
        assert_eq!(head.method, "GET");
        assert_eq!(head.head_len(), buf.len());
    });
    assert_eq!(
        error(b"\rGET / HTTP/1.1\r\n\r\n"),
        ParseError::InvalidLineEnding
    );
}

#[test]
fn invalid_method() {
    assert_eq!(
        error(b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n"),
        ParseError::InvalidMethod
    );
    assert_eq!(
        error(b" GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
        ParseError::InvalidMethod
    );
}

#[test]
fn invalid_targets() {
    for line in [
        &b"GET  / HTTP/1.1"[..],
        b"GET /\x7f HTTP/1.1",
        b"GET /caf\xc3\xa9 HTTP/1.1",
        b"GET /a#frag HTTP/1.1",
        b"GET * HTTP/1.1",
        b"GET index.html HTTP/1.1",
        b"GET example.com:80 HTTP/1.1",
        b"GET ftp://example.com/ HTTP/1.1",
        b"GET http:/example.com/ HTTP/1.1",
        b"GET http://user@example.com/ HTTP/1.1",
        b"GET http://example.com?q HTTP/1.1",
    ] {
        let mut buf = line.to_vec();
        buf.extend_from_slice(b"\r\nHost: h\r\n\r\n");
        assert_eq!(
            error(&buf),
            ParseError::InvalidTarget,
            "{}",
            line.escape_ascii()
        );
    }
}

#[test]
fn absolute_form_authority_wins_over_host() {
    let buf = b"GET HTTP://Origin.example:8080/p?q HTTP/1.1\r\nHost: other\r\n\r\n";
    complete(buf, |head| {
        assert_eq!(head.target, "HTTP://Origin.example:8080/p?q");
        assert_eq!(head.path, "/p?q");
        assert_eq!(head.host, b"Origin.example:8080");
    });
    complete(
        b"GET https://a.example HTTP/1.1\r\nHost: a.example\r\n\r\n",
        |head| {
            assert_eq!(head.path, "/");
            assert_eq!(head.host, b"a.example");
        },
    );
    assert_eq!(
        error(b"GET http://a.example/ HTTP/1.1\r\n\r\n"),
        ParseError::MissingHost
    );
    assert_eq!(
        error(b"GET http://bad%zz/ HTTP/1.1\r\nHost: h\r\n\r\n"),
        ParseError::InvalidHost
    );
    assert_eq!(
        error(b"GET http://a.example:99999/ HTTP/1.1\r\nHost: h\r\n\r\n"),
        ParseError::InvalidHost
    );
    assert_eq!(
        error(b"GET http:///p HTTP/1.1\r\nHost: h\r\n\r\n"),
        ParseError::InvalidHost
    );
}

#[test]
fn options_asterisk() {
    complete(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", |head| {
        assert_eq!(head.path, "*");
        assert!(head.idempotent);
    });
}

#[test]
fn versions() {
    complete(b"GET / HTTP/1.0\r\n\r\n", |head| {
        assert_eq!(head.version, Version::Http10);
        assert_eq!(head.host, b"");
        assert!(!head.keep_alive);
    });
    for version in ["HTTP/2.0", "HTTP/0.9", "HTTP/3.1", "HTTP/9.9"] {
        let buf = format!("GET / {version}\r\nHost: h\r\n\r\n");
        assert_eq!(
            error(buf.as_bytes()),
            ParseError::UnsupportedVersion,
            "{version}"
        );
        assert_eq!(error(buf.as_bytes()).status(), 505);
    }
    for version in [
        "HTTP/1.x",
        "http/1.1",
        "HTTP/11",
        "HTTP/1.10",
        "HTTP/2",
        "HTTPS/1.1",
        "HTTP/1.1 ",
    ] {
        let buf = format!("GET / {version}\r\nHost: h\r\n\r\n");
        assert_eq!(error(buf.as_bytes()).status(), 400, "{version}");
    }
    assert_eq!(error(b"GET / HTTP/1.x\r\n\r\n"), ParseError::InvalidVersion);
    assert_eq!(
        error(b"GET / HTTP/1.1 \r\n\r\n"),
        ParseError::InvalidLineEnding
    );
}

/// RFC 9110 2.5: a higher minor version than the proxy supports is handled as the highest
/// it supports, HTTP/1.1.
#[test]
fn later_http1_minor_versions_are_handled_as_1_1() {
    for version in ["HTTP/1.2", "HTTP/1.9"] {
        // After an empty line, which is skipped as before any request.
        let buf = format!(
            "\r\nPOST /up?x {version}\r\nHost: example.com\r\nContent-Length: 3\r\nX-A: b\r\n\r\nabc"
        );
        complete(buf.as_bytes(), |head| {
            assert_eq!(head.method, "POST");
            assert_eq!(head.path, "/up?x");
            assert_eq!(head.version, Version::Http11, "{version}");
            assert_eq!(head.host, b"example.com");
            assert_eq!(head.headers.len(), 3);
            assert_eq!(head.headers[2].name, "X-A");
            assert_eq!(head.body, BodyFraming::Length(3));
            assert_eq!(head.head_len(), buf.len() - 3);
            assert!(head.keep_alive);
        });
    }
    // Bare LF line endings, as for 1.1; HTTP/1.1 rules (Host required, Expect honoured).
    complete(
        b"GET / HTTP/1.2\nHost: h\nExpect: 100-continue\n\n",
        |head| {
            assert_eq!(head.headers.len(), 2);
            assert!(head.expect_continue);
        },
    );
    assert_eq!(
        error(b"GET / HTTP/1.2\r\nAccept: */*\r\n\r\n"),
        ParseError::MissingHost
    );
    // The fields' syntax and limits are those of any request.
    assert_eq!(
        error(b"GET / HTTP/1.2\r\nHost: h\r\nX : v\r\n\r\n"),
        ParseError::InvalidHeaderName
    );
    assert_eq!(
        error(b"GET / HTTP/1.2\r\nHost: h\r\nX: a\0b\r\n\r\n"),
        ParseError::InvalidHeaderValue
    );
    assert_eq!(
        error(b"GET / HTTP/1.2\rHost: h\r\n\r\n"),
        ParseError::InvalidLineEnding
    );
    assert_eq!(
        error(b"GET / HTTP/1.2x\r\nHost: h\r\n\r\n"),
        ParseError::InvalidVersion
    );
    let two_fields = HeadLimits {
        max_headers: 2,
        ..LIMITS
    };
    let three = b"GET / HTTP/1.2\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
    assert_eq!(outcome(three, &two_fields), Err(ParseError::TooManyHeaders));
    assert_eq!(outcome(&three[..three.len() - 8], &two_fields), Ok(false));
    let short_line = HeadLimits {
        max_request_line: 20,
        ..LIMITS
    };
    assert_eq!(
        outcome(b"GET /0123456 HTTP/1.2\r\nHost: h\r\n\r\n", &short_line),
        Err(ParseError::RequestLineTooLong)
    );
    let small_head = HeadLimits {
        max_header_bytes: 40,
        max_request_line: 40,
        ..LIMITS
    };
    assert_eq!(
        outcome(
            b"GET / HTTP/1.2\r\nHost: h\r\nX-Long: 0123456789abcdef\r\n",
            &small_head
        ),
        Err(ParseError::HeadTooLarge)
    );
}

#[test]
fn later_http1_minor_versions_wait_for_the_whole_head() {
    let buf = b"GET / HTTP/1.2\r\nHost: h\r\n\r\n";
    for end in 0..buf.len() {
        assert_eq!(outcome(&buf[..end], &LIMITS), Ok(false), "prefix {end}");
    }
    assert_eq!(outcome(buf, &LIMITS), Ok(true));
}

#[test]
fn unknown_versions_wait_until_the_line_ends() {
    let buf = b"GET / HTTP/2.0\r\nHost: h\r\n\r\n";
    let line_end = b"GET / HTTP/2.0".len();
    for end in 0..=line_end {
        assert_eq!(outcome(&buf[..end], &LIMITS), Ok(false), "prefix {end}");
    }
    assert_eq!(
        outcome(&buf[..line_end + 1], &LIMITS),
        Err(ParseError::UnsupportedVersion)
    );
    assert_eq!(outcome(b"GET / HTTP/2.", &LIMITS), Ok(false));
    assert_eq!(
        outcome(b"GET / HTTP/2.00", &LIMITS),
        Err(ParseError::InvalidVersion)
    );
    assert_eq!(
        outcome(b"GET / HTTX", &LIMITS),
        Err(ParseError::InvalidVersion)
    );
}

#[test]
fn header_syntax_errors() {
    let cases: [(&[u8], ParseError); 8] = [
        (b"Host: h\r\n folded\r\n", ParseError::InvalidHeaderName),
        (b"Host : h\r\n", ParseError::InvalidHeaderName),
        (b": v\r\nHost: h\r\n", ParseError::InvalidHeaderName),
        (b"Ho(st: h\r\n", ParseError::InvalidHeaderName),
        (b"Host: h\r\nX: a\0b\r\n", ParseError::InvalidHeaderValue),
        (b"Host: h\r\nX: a\rb\r\n", ParseError::InvalidHeaderValue),
        (b"Host: h\r\nX: a\x01b\r\n", ParseError::InvalidHeaderValue),
        (b"Host: h\r\nX: a\x7fb\r\n", ParseError::InvalidHeaderValue),
    ];
    for (fields, expected) in cases {
        let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
        buf.extend_from_slice(fields);
        buf.extend_from_slice(b"\r\n");
        assert_eq!(error(&buf), expected, "{}", fields.escape_ascii());
    }
    assert_eq!(
        error(b"GET / HTTP/1.1\r\n\tHost: h\r\n\r\n"),
        ParseError::InvalidHeaderName
    );
}

#[test]
fn request_line_limit() {
    let limits = HeadLimits {
        max_request_line: 20,
        ..LIMITS
    };
    // "GET /" + padding + " HTTP/1.1" is exactly 20 bytes.
    let at_limit = b"GET /123456 HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_eq!(outcome(at_limit, &limits), Ok(true));
    let over = b"GET /1234567 HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_eq!(outcome(over, &limits), Err(ParseError::RequestLineTooLong));
    // Unfinished lines: 20 bytes may still end, 21 cannot; a CR at 21 may be the terminator.
    assert_eq!(outcome(b"GET /123456 HTTP/1.1", &limits), Ok(false));
    assert_eq!(outcome(b"GET /123456 HTTP/1.1\r", &limits), Ok(false));
    assert_eq!(
        outcome(b"GET /1234567 HTTP/1.1", &limits),
        Err(ParseError::RequestLineTooLong)
    );
    assert_eq!(
        outcome(b"GET /1234567890123456789", &limits),
        Err(ParseError::RequestLineTooLong)
    );
    assert_eq!(
        outcome(b"\r\n\r\nGET /123456 HTTP/1.1", &limits),
        Ok(false),
        "leading empty lines are not part of the request line"
    );
    assert_eq!(ParseError::RequestLineTooLong.status(), 414);
}

#[test]
fn head_size_limit() {
    let buf = b"GET / HTTP/1.1\r\nHost: h\r\nX: 0123456789\r\n\r\n";
    let exact = HeadLimits {
        max_header_bytes: buf.len(),
        ..LIMITS
    };
    assert_eq!(outcome(buf, &exact), Ok(true));
    let one_short = HeadLimits {
        max_header_bytes: buf.len() - 1,
        ..LIMITS
    };
    assert_eq!(outcome(buf, &one_short), Err(ParseError::HeadTooLarge));
    // Incomplete: at the limit it can no longer complete in time; below it, it still may.
    assert_eq!(
        outcome(&buf[..buf.len() - 1], &one_short),
        Err(ParseError::HeadTooLarge)
    );
    assert_eq!(outcome(&buf[..buf.len() - 2], &one_short), Ok(false));
    // Bytes after a head that fits do not count against it.
    let mut pipelined = buf.to_vec();
    pipelined.extend_from_slice(b"GET / HTTP/1.1\r\n");
    assert_eq!(outcome(&pipelined, &exact), Ok(true));
}

#[test]
fn header_count_limit() {
    let limits = HeadLimits {
        max_headers: 3,
        ..LIMITS
    };
    let three = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
    assert_eq!(outcome(three, &limits), Ok(true));
    let four = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert_eq!(outcome(four, &limits), Err(ParseError::TooManyHeaders));
    let capped = HeadLimits {
        max_headers: usize::MAX,
        ..LIMITS
    };
    let mut many = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    for i in 1..MAX_HEADERS {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(outcome(&many, &capped), Ok(true));
    let mut too_many = many[..many.len() - 2].to_vec();
    too_many.extend_from_slice(b"X-last: v\r\n\r\n");
    assert_eq!(outcome(&too_many, &capped), Err(ParseError::TooManyHeaders));
}

#[test]
fn framing() {
    let framing = |fields: &str| {
        let buf = format!("POST / HTTP/1.1\r\nHost: h\r\n{fields}\r\n");
        with_parsed(buf.as_bytes(), |result| {
            result.map(|head| head.map(|head| head.body))
        })
    };
    assert_eq!(framing(""), Ok(Some(BodyFraming::None)));
    assert_eq!(
        framing("Content-Length: 0\r\n"),
        Ok(Some(BodyFraming::Length(0)))
    );
    assert_eq!(
        framing("Content-Length: 42\r\n"),
        Ok(Some(BodyFraming::Length(42)))
    );
    assert_eq!(
        framing("Content-Length: 5, 5\r\nContent-Length: 5\r\n"),
        Ok(Some(BodyFraming::Length(5)))
    );
    assert_eq!(
        framing("Transfer-Encoding: chunked\r\n"),
        Ok(Some(BodyFraming::Chunked))
    );
    assert_eq!(
        framing("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
        Err(ParseError::ContentLengthWithTransferEncoding)
    );
    assert_eq!(
        framing("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"),
        Err(ParseError::ContentLengthWithTransferEncoding)
    );
    assert_eq!(
        framing("Content-Length: 5\r\nContent-Length: 6\r\n"),
        Err(ParseError::ConflictingContentLength)
    );
    assert_eq!(
        framing("Content-Length: -1\r\n"),
        Err(ParseError::InvalidContentLength)
    );
    assert_eq!(
        framing("Transfer-Encoding: gzip\r\n"),
        Err(ParseError::ChunkedNotFinal)
    );
    assert_eq!(
        framing("Transfer-Encoding: chunked, chunked\r\n"),
        Err(ParseError::DuplicateChunked)
    );
    assert_eq!(
        framing("Transfer-Encoding: gzip, chunked\r\n"),
        Err(ParseError::UnsupportedTransferCoding)
    );
    assert_eq!(ParseError::UnsupportedTransferCoding.status(), 501);
    assert_eq!(
        framing("Transfer-Encoding: ,\r\n"),
        Err(ParseError::InvalidTransferEncoding)
    );
    assert_eq!(
        error(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ParseError::TransferEncodingInHttp10
    );
    assert_eq!(
        error(b"POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\nContent-Length: 1\r\n\r\n"),
        ParseError::TransferEncodingInHttp10
    );
}

#[test]
fn host_rules() {
    assert_eq!(error(b"GET / HTTP/1.1\r\n\r\n"), ParseError::MissingHost);
    assert_eq!(
        error(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
        ParseError::DuplicateHost
    );
    assert_eq!(
        error(b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"),
        ParseError::DuplicateHost
    );
    for bad in ["", "a b", "a:b", "a/b", "[::1", "a:70000", "a@b", "a,b c"] {
        let buf = format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n");
        assert_eq!(error(buf.as_bytes()), ParseError::InvalidHost, "{bad:?}");
    }
    assert_eq!(
        error(b"GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n"),
        ParseError::InvalidHost
    );
    complete(b"GET / HTTP/1.1\r\nhost:   [::1]:8080  \r\n\r\n", |head| {
        assert_eq!(head.host, b"[::1]:8080");
    });
    complete(b"GET / HTTP/1.0\r\nHost: a.example\r\n\r\n", |head| {
        assert_eq!(head.host, b"a.example");
    });
}

#[test]
fn keep_alive_rules() {
    let keep_alive = |version: &str, fields: &str| {
        let buf = format!("GET / {version}\r\nHost: h\r\n{fields}\r\n");
        complete(buf.as_bytes(), |head| head.keep_alive)
    };
    assert!(keep_alive("HTTP/1.1", ""));
    assert!(!keep_alive("HTTP/1.1", "Connection: close\r\n"));
    assert!(!keep_alive(
        "HTTP/1.1",
        "Connection: keep-alive\r\nconnection: CLOSE\r\n"
    ));
    assert!(!keep_alive("HTTP/1.1", "Connection: foo, Close\r\n"));
    assert!(keep_alive("HTTP/1.1", "Connection: closed\r\n"));
    assert!(!keep_alive("HTTP/1.0", ""));
    assert!(keep_alive("HTTP/1.0", "Connection: Keep-Alive\r\n"));
    assert!(keep_alive(
        "HTTP/1.0",
        "Connection: x\r\nConnection: te, keep-alive\r\n"
    ));
    assert!(!keep_alive("HTTP/1.0", "Connection: keep-alive, close\r\n"));
}

#[test]
fn expect_rules() {
    let expect = |version: &str, fields: &str| {
        let buf = format!("PUT / {version}\r\nHost: h\r\nContent-Length: 1\r\n{fields}\r\n");
        with_parsed(buf.as_bytes(), |result| {
            result.map(|head| head.map(|head| head.expect_continue))
        })
    };
    assert_eq!(expect("HTTP/1.1", ""), Ok(Some(false)));
    assert_eq!(
        expect("HTTP/1.1", "Expect: 100-continue\r\n"),
        Ok(Some(true))
    );
    assert_eq!(
        expect("HTTP/1.1", "Expect: 100-Continue\r\n"),
        Ok(Some(true))
    );
    assert_eq!(
        expect("HTTP/1.0", "Expect: 100-continue\r\n"),
        Ok(Some(false))
    );
    assert_eq!(
        expect("HTTP/1.1", "Expect: 200-ok\r\n"),
        Err(ParseError::ExpectationFailed)
    );
    assert_eq!(
        expect("HTTP/1.1", "Expect: 100-continue, foo\r\n"),
        Err(ParseError::ExpectationFailed)
    );
    assert_eq!(ParseError::ExpectationFailed.status(), 417);
}

#[test]
fn upgrade_needs_connection_option_and_http11() {
    let upgrade = |version: &str, fields: &str| {
        let buf = format!("GET /ws {version}\r\nHost: h\r\n{fields}\r\n");
        complete(buf.as_bytes(), |head| head.upgrade.map(str::to_owned))
    };
    assert_eq!(
        upgrade("HTTP/1.1", "Connection: Upgrade\r\nUpgrade: websocket\r\n"),
        Some("websocket".to_owned())
    );
    assert_eq!(upgrade("HTTP/1.1", "Upgrade: websocket\r\n"), None);
    assert_eq!(upgrade("HTTP/1.1", "Connection: upgrade\r\n"), None);
    assert_eq!(
        upgrade("HTTP/1.0", "Connection: upgrade\r\nUpgrade: websocket\r\n"),
        None
    );
}

/// RFC 9113 3.1: HTTP/2 is never tunnelled; an upgrade that offers nothing else is none.
#[test]
fn upgrade_to_http2_is_not_offered() {
    let offered = |upgrade: &str| {
        let buf = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: {upgrade}\r\n\r\n"
        );
        complete(buf.as_bytes(), |head| {
            let protocols: Vec<String> = head.upgrade_protocols().map(str::to_owned).collect();
            assert_eq!(head.upgrade.is_some(), !protocols.is_empty(), "{upgrade}");
            protocols
        })
    };
    for http2_only in ["h2c", "H2C", "h2", "h2c, h2", " h2c , ", "h2c/1.0"] {
        assert_eq!(offered(http2_only), Vec::<String>::new(), "{http2_only}");
    }
    assert_eq!(offered("h2c, websocket"), ["websocket"]);
    assert_eq!(offered("websocket,\th2c"), ["websocket"]);
    assert_eq!(offered("foo/2, h2c, bar"), ["foo/2", "bar"]);
    assert_eq!(offered("h2cx, xh2c"), ["h2cx", "xh2c"]);
}

#[test]
fn connect_is_not_implemented() {
    assert_eq!(
        error(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
        ParseError::ConnectNotSupported
    );
    assert_eq!(ParseError::ConnectNotSupported.status(), 501);
}

#[test]
fn method_properties() {
    for (method, idempotent) in [
        ("GET", true),
        ("HEAD", true),
        ("OPTIONS", true),
        ("TRACE", true),
        ("PUT", true),
        ("DELETE", true),
        ("POST", false),
        ("PATCH", false),
        ("get", false),
    ] {
        let buf = format!("{method} / HTTP/1.1\r\nHost: h\r\n\r\n");
        complete(buf.as_bytes(), |head| {
            assert_eq!(head.idempotent, idempotent, "{method}");
            assert_eq!(head.is_head, method == "HEAD", "{method}");
        });
    }
}
