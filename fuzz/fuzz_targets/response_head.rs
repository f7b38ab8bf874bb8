//! Any bytes: parsing never panics, a parsed head lies inside the input, and the head relayed
//! for it parses again to the same status and representation length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringproxy::http::{
    BodyFraming, ResponseContext, Version, header_storage, parse_response, write_response_head,
};

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
    let mut again_storage = header_storage();
    let again = parse_response(&out, &mut again_storage, usize::MAX, request_was_head)
        .unwrap_or_else(|error| panic!("relayed head rejected: {error:?}"))
        .expect("relayed head is complete");
    assert_eq!(again.head_len(), out.len());
    assert_eq!(again.status, head.status);
    if head.body != BodyFraming::None {
        assert_eq!(again.body, head.body);
    }
});
