//! Any bytes: parsing never panics, a parsed head lies inside the input, the head relayed for
//! it has at most two fields more than it, and it parses again to the same status and
//! representation length (unless those added fields take it past the parser's field cap).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringproxy::http::{
    BodyFraming, MAX_HEADERS, ParseError, ResponseContext, Version, header_storage, parse_response,
    write_response_head,
};

/// Fields the relay writes itself: framing (Content-Length or Transfer-Encoding) and
/// Connection, or Connection and Upgrade on a 101. The backend's own Content-Length and
/// hop-by-hop fields are dropped.
const RELAY_ADDS_AT_MOST: usize = 2;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    let request_was_head = flags & 1 != 0;
    let mut storage = header_storage();
    let Ok(Some(head)) = parse_response(input, &mut storage, 4096, request_was_head) else {
        return;
    };
    assert!(head.head_len() <= input.len() && head.head_len() <= 4096);

    let ctx = ResponseContext {
        client_version: if flags & 2 != 0 {
            Version::Http10
        } else {
            Version::Http11
        },
        keep_alive: head.keep_alive,
        framing: head.body,
        upgrade: head.status == 101,
    };
    let mut out = Vec::new();
    write_response_head(&mut out, &head, &ctx);
    // Every line of the relayed head ends in LF: the status line, the fields, the empty line.
    let relayed_fields = out.iter().filter(|&&b| b == b'\n').count() - 2;
    assert!(relayed_fields <= head.headers.len() + RELAY_ADDS_AT_MOST);

    let mut again_storage = header_storage();
    let reparsed = parse_response(&out, &mut again_storage, usize::MAX, request_was_head);
    if relayed_fields > MAX_HEADERS {
        // A head received at the cap can go over it once the relay adds its fields, as a
        // forwarded request can (a fixed cap and added fields cannot both hold); nothing
        // but the field count may make the proxy's parser refuse it.
        assert_eq!(reparsed.err(), Some(ParseError::TooManyHeaders));
        return;
    }
    let again = reparsed
        .unwrap_or_else(|error| panic!("relayed head rejected: {error:?}"))
        .expect("relayed head is complete");
    assert_eq!(again.head_len(), out.len());
    assert_eq!(again.status, head.status);
    if head.body != BodyFraming::None {
        assert_eq!(again.body, head.body);
    }
});
