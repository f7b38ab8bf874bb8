//! HTTP/1.1 parsing, framing and head rewriting: pure code, no I/O.
//!
//! Parsing is zero-copy over the caller's buffer (header slices borrow it) and writes heads
//! into a caller-owned, reused `Vec<u8>`, so the per-request path does not allocate.
//! Semantics follow RFC 9112 (message syntax and framing) and RFC 9110 where a proxy must
//! decide (Host, Expect, hop-by-hop fields).

use std::mem::MaybeUninit;

pub mod body;
mod chunked;
mod error;
mod fields;
mod request;
pub mod request_id;
mod response;
mod rewrite;
mod status;

pub use chunked::{ChunkedDecoder, Decoded, MAX_CHUNK_LINE, MAX_TRAILER_BYTES};
pub use error::{ChunkedError, ParseError};
use fields::FieldName;
pub use request::{RequestHead, parse_request};
pub use response::{ResponseHead, parse_response};

pub use rewrite::{
    ForwardContext, LocalAnswer, ResponseContext, RouteForward, write_edited_response_head,
    write_error_response, write_fixed_response, write_not_found_response, write_redirect_response,
    write_request_head, write_response_head, write_routed_request_head,
};
pub use status::reason_phrase;

/// Protocol version of a parsed message. Only HTTP/1.0 and HTTP/1.1 exist on the wire here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// How the end of a message body is found (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body follows the head.
    None,
    /// Exactly this many body bytes follow (`Content-Length`, may be 0).
    Length(u64),
    /// A chunked body follows.
    Chunked,
    /// The body runs until the peer closes the connection (responses only).
    CloseDelimited,
}

/// Size bounds applied while parsing a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Longest request line, excluding its line terminator; longer gets 414.
    pub max_request_line: usize,
    /// Largest head (request line, fields and the empty line); larger gets 431.
    pub max_header_bytes: usize,
    /// Most header fields; more gets 431. Values above [`MAX_HEADERS`] act as `MAX_HEADERS`.
    pub max_headers: usize,
}

/// Hard cap on header fields per head: the size of the header storage array.
pub const MAX_HEADERS: usize = 128;

/// Storage a parse fills: views of the header fields, and what each field's name means.
/// Lives on the caller's stack for the length of one head's use.
pub struct HeadStorage<'b> {
    headers: [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS],
    names: [FieldName; MAX_HEADERS],
    /// The header views of a request with a later HTTP/1 minor version, which httparse
    /// refuses (see `request::parse_later_minor_fields`); untouched otherwise. A second array
    /// because `headers` stays borrowed by the refused parse (the borrow checker cannot see
    /// that the borrow ended); uninitialised, it costs stack space only, where a `Vec` cost
    /// 44 instructions per response for its drop (callgrind, perf/callgrind.sh).
    later_minor_headers: [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS],
}

/// Fresh storage; the header views are left uninitialised until parsed into.
pub const fn header_storage<'b>() -> HeadStorage<'b> {
    HeadStorage {
        headers: [const { MaybeUninit::uninit() }; MAX_HEADERS],
        names: [FieldName::Other; MAX_HEADERS],
        later_minor_headers: [const { MaybeUninit::uninit() }; MAX_HEADERS],
    }
}
