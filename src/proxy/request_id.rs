//! Each worker's request ids: a client's valid `X-Request-Id` (see `http::request_id`), or a
//! new one: the worker's random 64-bit prefix and its request counter, 32 hex digits.
//! Generating one is a counter increment; its text is made where it is written (the
//! forwarded head, a sampled access log line): no allocation, no shared state.

use std::cell::Cell;

use httparse::Header;

use crate::http::request_id::{
    ClientRequestId, GeneratedId, RequestIdLine, RequestIdValue, find_request_id, hex_u64,
};

pub struct RequestIds {
    /// Random per worker and start, so that ids do not repeat across workers and restarts.
    prefix: [u8; 16],
    next: Cell<u64>,
}

impl RequestIds {
    pub fn new() -> Self {
        Self {
            prefix: hex_u64(random_u64()),
            next: Cell::new(0),
        }
    }

    /// The id of a request with `headers`, its field named `name`: the client's, else a new one.
    pub fn resolve<'a>(&'a self, headers: &[Header<'a>], name: &'a str) -> RequestIdLine<'a> {
        let found = find_request_id(headers, name);
        let value = match found {
            ClientRequestId::Valid(text) => RequestIdValue::Client(text),
            ClientRequestId::Absent | ClientRequestId::Invalid => {
                let counter = self.next.get();
                self.next.set(counter.wrapping_add(1));
                RequestIdValue::Generated {
                    id: GeneratedId {
                        prefix: &self.prefix,
                        counter,
                    },
                    replaces_client: found == ClientRequestId::Invalid,
                }
            }
        };
        RequestIdLine { name, value }
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

/// 64 random bits from the kernel; if it will not give them (no getrandom), the clock's
/// nanoseconds and the thread's stack address, which still differ between workers and starts.
fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into the valid, exclusively
    // borrowed buffer and reads no memory.
    let filled = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if filled == bytes.len() as isize {
        return u64::from_ne_bytes(bytes);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (&raw const bytes as usize as u64).rotate_left(32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request_id::GENERATED_ID_LEN;

    fn text(line: &RequestIdLine<'_>) -> Vec<u8> {
        line.text(&mut [0; GENERATED_ID_LEN]).to_vec()
    }

    #[test]
    fn generated_ids_share_the_worker_prefix_and_count_up() {
        let ids = RequestIds::new();
        let headers = [Header {
            name: "Host",
            value: b"h",
        }];
        let first = text(&ids.resolve(&headers, "X-Request-Id"));
        let next = ids.resolve(&headers, "X-Request-Id");
        let second = text(&next);
        assert_eq!(&first[16..], b"0000000000000000");
        assert_eq!(&second[16..], b"0000000000000001");
        assert_eq!(first[..16], second[..16]);
        assert!(first.iter().all(u8::is_ascii_hexdigit));
        let RequestIdValue::Generated {
            replaces_client, ..
        } = next.value
        else {
            panic!("{next:?}")
        };
        assert!(!replaces_client);
        assert_ne!(
            RequestIds::new().prefix,
            ids.prefix,
            "a fresh random prefix"
        );
    }

    #[test]
    fn a_valid_client_id_is_kept_and_an_invalid_one_replaced() {
        let ids = RequestIds::new();
        let valid = [Header {
            name: "x-request-id",
            value: b"abc-123",
        }];
        let kept = ids.resolve(&valid, "X-Request-Id");
        assert_eq!(kept.value, RequestIdValue::Client(b"abc-123"));
        let invalid = [Header {
            name: "X-Request-Id",
            value: b"a b",
        }];
        let replaced = ids.resolve(&invalid, "X-Request-Id");
        assert!(matches!(
            replaced.value,
            RequestIdValue::Generated {
                replaces_client: true,
                ..
            }
        ));
        assert_eq!(text(&replaced).len(), GENERATED_ID_LEN);
    }
}
