//! Any bytes: parsing never panics, a parsed head lies inside the input and the limits, and
//! the head forwarded for it parses again (strictly) to the same request and framing, with
//! the proxy's entry last in its one Via field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringproxy::config::ForwardedHeaders;
use ringproxy::http::{
    ForwardContext, HeadLimits, MAX_HEADERS, header_storage, parse_request, write_request_head,
};

const LIMITS: HeadLimits = HeadLimits {
    max_request_line: 1024,
    max_header_bytes: 4096,
    max_headers: 32,
};

fuzz_target!(|data: &[u8]| {
    let mut storage = header_storage();
    let Ok(Some(head)) = parse_request(data, &mut storage, &LIMITS) else {
        return;
    };
    assert!(head.head_len() <= data.len());
    assert!(head.head_len() <= LIMITS.max_header_bytes);
    assert!(head.headers.len() <= LIMITS.max_headers);

    let forwarded = ForwardedHeaders::default();
    let ctx = ForwardContext {
        client_addr: "192.0.2.1",
        proto: "http",
        forwarded: &forwarded,
        default_host: "backend",
        request_id: None,
    };
    let mut out = Vec::new();
    write_request_head(&mut out, &head, &ctx);

    let generous = HeadLimits {
        max_request_line: usize::MAX,
        max_header_bytes: usize::MAX,
        max_headers: MAX_HEADERS,
    };
    let mut again_storage = header_storage();
    let again = parse_request(&out, &mut again_storage, &generous)
        .unwrap_or_else(|error| panic!("forwarded head rejected: {error:?}"))
        .expect("forwarded head is complete");
    assert_eq!(again.head_len(), out.len());
    assert_eq!(again.method, head.method);
    assert_eq!(again.path, head.path);
    assert_eq!(again.body, head.body);
    assert!(again.upgrade_protocols().eq(head.upgrade_protocols()));
    let mut vias = again
        .headers
        .iter()
        .filter(|field| field.name.eq_ignore_ascii_case("via"));
    let via = vias.next().expect("a Via field").value;
    assert!(vias.next().is_none(), "more than one Via field");
    assert!(via.ends_with(b" ringproxy"), "{}", via.escape_ascii());
    assert_eq!(
        again.host,
        if head.host.is_empty() {
            b"backend"
        } else {
            head.host
        }
    );
});
