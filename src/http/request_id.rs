//! Request ids (`X-Request-Id` by default, `forwarded.request_id`): which client ids are kept,
//! and the text of generated ones.
//!
//! A client's id is kept when the request has exactly one field of the name and its value is
//! 1..=`MAX_REQUEST_ID` bytes of letters, digits and `-_.:+/=@` (UUIDs, hex, base64 and the
//! usual trace ids): safe in any log format and bounded, so a client cannot make log lines
//! large or break their quoting with it. Otherwise the proxy generates one and the client's
//! fields of that name are not forwarded.

use httparse::Header;

/// The longest client id kept.
pub const MAX_REQUEST_ID: usize = 128;
/// Generated ids are 32 lowercase hex digits (as nginx's `$request_id`).
pub const GENERATED_ID_LEN: usize = 32;

/// What a request's own fields say about its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRequestId<'b> {
    /// No field of the name: one is generated.
    Absent,
    /// One field with a valid id: it is forwarded as it came, and logged.
    Valid(&'b [u8]),
    /// Fields of the name that cannot be kept (invalid, or more than one): they are not
    /// forwarded, and one is generated.
    Invalid,
}

/// Looks for the request id field `name` among `headers`.
pub fn find_request_id<'b>(headers: &[Header<'b>], name: &str) -> ClientRequestId<'b> {
    let mut found = ClientRequestId::Absent;
    for header in headers {
        // The length first: most fields differ in it, and that is one comparison.
        if header.name.len() != name.len() || !header.name.eq_ignore_ascii_case(name) {
            continue;
        }
        found = match found {
            ClientRequestId::Absent if is_valid_request_id(header.value) => {
                ClientRequestId::Valid(header.value)
            }
            _ => return ClientRequestId::Invalid,
        };
    }
    found
}

/// Whether a client's id can be kept (see the module's comment).
pub fn is_valid_request_id(value: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID).contains(&value.len())
        && value
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-_.:+/=@".contains(&b))
}

/// A request's id, and how the forwarded head carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestIdLine<'a> {
    /// The field name, as configured.
    pub name: &'a str,
    pub value: RequestIdValue<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestIdValue<'a> {
    /// The client's own valid id: forwarded as it came, where it came.
    Client(&'a [u8]),
    /// A new one, written after the client's fields; `replaces_client`: the client's fields
    /// of the name could not be kept and are dropped.
    Generated {
        id: GeneratedId<'a>,
        replaces_client: bool,
    },
}

/// A generated id: a worker's random prefix (16 hex digits) and its request counter. Its
/// text is made where it is written, so that resolving an id costs a counter increment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneratedId<'a> {
    pub prefix: &'a [u8; 16],
    pub counter: u64,
}

impl GeneratedId<'_> {
    /// The 32 hex digits.
    pub fn text(&self) -> [u8; GENERATED_ID_LEN] {
        let mut text = [0; GENERATED_ID_LEN];
        text[..16].copy_from_slice(self.prefix);
        text[16..].copy_from_slice(&hex_u64(self.counter));
        text
    }

    /// Appends `NAME: ID\r\n`.
    pub fn write_field(&self, out: &mut Vec<u8>, name: &str) {
        // The value and its punctuation in one copy: `: `, the 32 digits, CRLF (a
        // `reserve` and five appends cost a quarter more, callgrind).
        let mut value = [0; GENERATED_ID_LEN + 4];
        value[..2].copy_from_slice(b": ");
        value[2..2 + GENERATED_ID_LEN].copy_from_slice(&self.text());
        value[2 + GENERATED_ID_LEN..].copy_from_slice(b"\r\n");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&value);
    }
}

impl RequestIdLine<'_> {
    /// The id's text, into `generated` when it is a generated one.
    pub fn text<'t>(&'t self, generated: &'t mut [u8; GENERATED_ID_LEN]) -> &'t [u8] {
        match self.value {
            RequestIdValue::Client(text) => text,
            RequestIdValue::Generated { id, .. } => {
                *generated = id.text();
                generated
            }
        }
    }
}

/// `value` as 16 lowercase hex digits.
pub fn hex_u64(value: u64) -> [u8; 16] {
    let high = spread_nibbles((value >> 32) as u32);
    let low = spread_nibbles(value as u32);
    let mut text = [0; 16];
    text[..8].copy_from_slice(&nibbles_to_hex(high).to_be_bytes());
    text[8..].copy_from_slice(&nibbles_to_hex(low).to_be_bytes());
    text
}

/// Nibble `i` of `value` into byte `i` of the result, so that `to_be_bytes` lists them most
/// significant first.
fn spread_nibbles(value: u32) -> u64 {
    let mut x = u64::from(value);
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F
}

/// Eight nibbles (one per byte, each 0..=15) as eight lowercase hex digits.
fn nibbles_to_hex(nibbles: u64) -> u64 {
    // Digits above 9 get the distance from '9' + 1 to 'a' added.
    let letters = ((nibbles + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    nibbles + 0x3030_3030_3030_3030 + letters * (b'a' - b'9' - 1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'b>(name: &'static str, value: &'b [u8]) -> Header<'b> {
        Header { name, value }
    }

    #[test]
    fn generated_ids_are_the_prefix_and_the_counter_in_hex() {
        let id = GeneratedId {
            prefix: b"0123456789abcdef",
            counter: 0x2a,
        };
        assert_eq!(&id.text(), b"0123456789abcdef000000000000002a");
        let mut out = b"x".to_vec();
        id.write_field(&mut out, "X-Request-Id");
        assert_eq!(out, b"xX-Request-Id: 0123456789abcdef000000000000002a\r\n");
    }

    #[test]
    fn hex_matches_format() {
        for value in [
            0,
            1,
            0xabcdef,
            0x0123_4567_89ab_cdef,
            u64::MAX,
            0x8000_0000_0000_0001,
        ] {
            assert_eq!(
                std::str::from_utf8(&hex_u64(value)).unwrap(),
                format!("{value:016x}")
            );
        }
    }

    #[test]
    fn one_valid_field_is_kept_anything_else_replaced() {
        let id = b"3f2a9c1e-5b7d-4e2f-9a1b-c3d4e5f60718";
        let found = find_request_id(&[header("x-request-id", id)], "X-Request-Id");
        assert_eq!(found, ClientRequestId::Valid(id));
        let absent = find_request_id(&[header("X-Request", b"a")], "X-Request-Id");
        assert_eq!(absent, ClientRequestId::Absent);
        let two = [header("X-Request-Id", b"a"), header("X-REQUEST-ID", b"b")];
        assert_eq!(
            find_request_id(&two, "X-Request-Id"),
            ClientRequestId::Invalid
        );
        for bad in [&b""[..], b"a b", b"a\"b", b"a\\b", b"\xe9", &[b'a'; 129]] {
            let found = find_request_id(&[header("X-Request-Id", bad)], "X-Request-Id");
            assert_eq!(found, ClientRequestId::Invalid, "{bad:?}");
        }
        assert!(is_valid_request_id(&[b'Z'; 128]));
        assert!(is_valid_request_id(b"trace:AbC+/=@_.-9"));
    }
}
