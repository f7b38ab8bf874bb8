//! What a request's access log line says, gathered while the request is served: the request's
//! own text is copied when its head is parsed (the receive buffer moves on), the rest is
//! numbers filled in by the exchange and read when the line is written.

use std::time::{Duration, Instant};

use crate::http::{RequestHead, Version};
use crate::upstream::BackendId;

/// A record's text stays at most this large between requests; a larger one (a head with a
/// long target) is shrunk back when it returns to the spares.
const KEPT_TEXT_CAPACITY: usize = 4096;

/// The pieces of request text a line quotes, in the order `Record::text` holds them.
#[derive(Debug, Clone, Copy)]
pub(super) enum Piece {
    Method,
    Target,
    Referer,
    UserAgent,
    RequestId,
}

const PIECES: usize = 5;

#[derive(Debug)]
pub struct Record {
    /// When the request head was complete: the line's time, and where `request_time` starts.
    pub(super) started: Instant,
    /// The pieces, one after the other; `ends` says where each ends.
    text: Vec<u8>,
    ends: [u32; PIECES],
    pub(super) version: Version,
    /// The status the client was answered with; 0: none (the client went away first).
    pub status: u16,
    /// Head and body bytes read from the client for the request.
    pub bytes_received: u64,
    /// Bytes written to the client for the request: heads (interim ones too) and body.
    pub bytes_sent: u64,
    /// The backend of the last attempt.
    pub backend: Option<BackendId>,
    /// The last attempt's connect (zero on a pooled connection).
    pub connect: Option<Duration>,
    /// The last attempt's wait from the request sent to the response head.
    pub first_byte: Option<Duration>,
}

impl Default for Record {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            text: Vec::new(),
            ends: [0; PIECES],
            version: Version::Http11,
            status: 0,
            bytes_received: 0,
            bytes_sent: 0,
            backend: None,
            connect: None,
            first_byte: None,
        }
    }
}

impl Record {
    /// Starts the record of the request `head`, whose id is `request_id`.
    pub fn begin(&mut self, head: &RequestHead<'_, '_>, request_id: &[u8], started: Instant) {
        self.reset(head.version, head.head_len() as u64, started);
        let (mut referer, mut user_agent): (&[u8], &[u8]) = (b"", b"");
        for header in head.headers {
            let name = header.name.as_bytes();
            if name.eq_ignore_ascii_case(b"referer") {
                referer = header.value;
            } else if name.eq_ignore_ascii_case(b"user-agent") {
                user_agent = header.value;
            }
        }
        self.text.clear();
        let pieces = [
            head.method.as_bytes(),
            head.target.as_bytes(),
            referer,
            user_agent,
            request_id,
        ];
        for (end, piece) in self.ends.iter_mut().zip(pieces) {
            self.text.extend_from_slice(piece);
            // A head is at most 1 MiB (`limits.max_header_bytes`).
            *end = self.text.len() as u32;
        }
    }

    /// Starts the record of a request refused before its head could be parsed, after
    /// `received` bytes of it: it has no text.
    pub fn begin_unparsed(&mut self, received: u64, started: Instant) {
        self.reset(Version::Http11, received, started);
        self.text.clear();
        self.ends = [0; PIECES];
    }

    fn reset(&mut self, version: Version, received: u64, started: Instant) {
        self.started = started;
        self.version = version;
        self.status = 0;
        self.bytes_received = received;
        self.bytes_sent = 0;
        self.backend = None;
        self.connect = None;
        self.first_byte = None;
    }

    pub(super) fn piece(&self, piece: Piece) -> &[u8] {
        let index = piece as usize;
        let start = index.checked_sub(1).map_or(0, |i| self.ends[i]) as usize;
        self.text
            .get(start..self.ends[index] as usize)
            .unwrap_or_default()
    }

    /// Gives back what a request with a large head made the record hold.
    pub(super) fn trim(&mut self) {
        if self.text.capacity() > KEPT_TEXT_CAPACITY {
            self.text = Vec::with_capacity(KEPT_TEXT_CAPACITY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{HeadLimits, header_storage, parse_request};

    #[test]
    fn pieces_are_copied_from_the_head() {
        let request = b"POST /a?b=1 HTTP/1.0\r\nUser-Agent: curl/8\r\nHost: h\r\n\
                        REFERER: http://r/\r\nContent-Length: 0\r\n\r\n";
        let limits = HeadLimits {
            max_request_line: 8192,
            max_header_bytes: 16384,
            max_headers: 100,
        };
        let mut storage = header_storage();
        let head = parse_request(request, &mut storage, &limits)
            .unwrap()
            .unwrap();
        let mut record = Record::default();
        record.begin(&head, b"id-1", Instant::now());
        assert_eq!(record.piece(Piece::Method), b"POST");
        assert_eq!(record.piece(Piece::Target), b"/a?b=1");
        assert_eq!(record.piece(Piece::Referer), b"http://r/");
        assert_eq!(record.piece(Piece::UserAgent), b"curl/8");
        assert_eq!(record.piece(Piece::RequestId), b"id-1");
        assert_eq!(record.version, Version::Http10);
        assert_eq!(record.bytes_received, request.len() as u64);
    }
}
