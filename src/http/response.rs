//! Response heads from a backend and their framing (RFC 9112 6.3).

use httparse::{Header, Status};

use super::error::ParseError;
use super::fields::{FieldName, FieldScan, TransferEncoding};
use super::request::map_syntax_error;
use super::{BodyFraming, HeadStorage, Version};

/// A parsed response head; every slice borrows the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead<'h, 'b> {
    pub status: u16,
    /// Reason phrase as sent; `""` when absent (or not visible ASCII/obs-text, per httparse).
    pub reason: &'b str,
    pub version: Version,
    pub headers: &'h [Header<'b>],
    /// What each of `headers` is to the proxy, in the same order.
    pub(crate) names: &'h [FieldName],
    /// The head as received, which `headers` point into.
    pub bytes: &'b [u8],
    pub body: BodyFraming,
    /// The backend lets us reuse the connection after this response: false for
    /// `Connection: close`, HTTP/1.0 without keep-alive, close-delimited bodies and 101.
    pub keep_alive: bool,
    /// The Content-Length value, also when it frames nothing (HEAD, 304): the client is
    /// still told it, as it describes the representation.
    pub content_length: Option<u64>,
    /// First Upgrade value (meaningful on 101).
    pub upgrade: Option<&'b str>,
}

impl ResponseHead<'_, '_> {
    /// Length of the head: the body starts at `buf[head_len()]`.
    pub fn head_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Parses a backend's response head at the start of `buf`.
///
/// `Ok(None)` means incomplete and still under `max_head_bytes`. `request_was_head` tells
/// that the request was HEAD, so no body follows whatever the fields say. Obs-fold lines
/// and transfer codings other than `chunked` are rejected (the proxy cannot re-frame them).
pub fn parse_response<'h, 'b>(
    buf: &'b [u8],
    storage: &'h mut HeadStorage<'b>,
    max_head_bytes: usize,
    request_was_head: bool,
) -> Result<Option<ResponseHead<'h, 'b>>, ParseError> {
    let window = &buf[..buf.len().min(max_head_bytes)];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        window,
        &mut storage.headers,
    );
    match parsed {
        Ok(Status::Complete(head_len)) => {
            let bytes = &window[..head_len];
            build_head(response, &mut storage.names, bytes, request_was_head).map(Some)
        }
        Ok(Status::Partial) if window.len() >= max_head_bytes => Err(ParseError::HeadTooLarge),
        Ok(Status::Partial) => Ok(None),
        Err(error) => Err(map_syntax_error(error)),
    }
}

fn build_head<'h, 'b>(
    response: httparse::Response<'h, 'b>,
    names: &'h mut [FieldName],
    bytes: &'b [u8],
    request_was_head: bool,
) -> Result<ResponseHead<'h, 'b>, ParseError> {
    let (Some(minor), Some(status), Some(reason)) =
        (response.version, response.code, response.reason)
    else {
        return Err(ParseError::InvalidStatus);
    };
    if !(100..=599).contains(&status) {
        return Err(ParseError::InvalidStatus);
    }
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let headers: &'h [Header<'b>] = response.headers;
    let names = &mut names[..headers.len()];
    let fields = FieldScan::scan(headers, names)?;
    let chunked = check_transfer_encoding(&fields, version)?;
    let bodiless = request_was_head || status < 200 || status == 204 || status == 304;
    let body = match (bodiless, chunked, fields.content_length) {
        (true, _, _) => BodyFraming::None,
        (false, true, _) => BodyFraming::Chunked,
        (false, false, Some(length)) => BodyFraming::Length(length),
        (false, false, None) => BodyFraming::CloseDelimited,
    };
    let connection = fields.connection;
    let persistent = !connection.close && (version == Version::Http11 || connection.keep_alive);
    Ok(ResponseHead {
        status,
        reason,
        version,
        headers,
        names,
        bytes,
        body,
        keep_alive: persistent && body != BodyFraming::CloseDelimited && status != 101,
        content_length: fields.content_length,
        upgrade: fields
            .upgrade
            .and_then(|value| std::str::from_utf8(value).ok()),
    })
}

/// Whether the response is chunked. Checked whatever the status, as a backend that frames
/// ambiguously is not trusted with the connection.
fn check_transfer_encoding(fields: &FieldScan<'_>, version: Version) -> Result<bool, ParseError> {
    match fields.transfer_encoding {
        TransferEncoding::Absent => Ok(false),
        _ if version == Version::Http10 => Err(ParseError::TransferEncodingInHttp10),
        _ if fields.content_length.is_some() => Err(ParseError::ContentLengthWithTransferEncoding),
        TransferEncoding::Unusable(error) => Err(error),
        TransferEncoding::Chunked => Ok(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::header_storage;

    const MAX: usize = 8192;

    fn with_parsed<R>(
        buf: &[u8],
        max: usize,
        request_was_head: bool,
        check: impl FnOnce(Result<Option<ResponseHead<'_, '_>>, ParseError>) -> R,
    ) -> R {
        let mut storage = header_storage();
        check(parse_response(buf, &mut storage, max, request_was_head))
    }

    fn complete<R>(buf: &[u8], check: impl FnOnce(ResponseHead<'_, '_>) -> R) -> R {
        with_parsed(buf, MAX, false, |result| {
            check(result.unwrap().expect("head must be complete"))
        })
    }

    fn error(buf: &[u8]) -> ParseError {
        with_parsed(buf, MAX, false, |result| {
            result.expect_err("must be rejected")
        })
    }

    /// (framing, keep_alive) of `status` with `fields`.
    fn framing(
        version: &str,
        status: u16,
        fields: &str,
        request_was_head: bool,
    ) -> Result<(BodyFraming, bool), ParseError> {
        let buf = format!("{version} {status} X\r\n{fields}\r\n");
        with_parsed(buf.as_bytes(), MAX, request_was_head, |result| {
            result.map(|head| {
                let head = head.expect("head must be complete");
                (head.body, head.keep_alive)
            })
        })
    }

    #[test]
    fn simple_ok() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: s\r\n\r\nhello";
        complete(buf, |head| {
            assert_eq!(head.status, 200);
            assert_eq!(head.reason, "OK");
            assert_eq!(head.version, Version::Http11);
            assert_eq!(head.headers.len(), 2);
            assert_eq!(head.head_len(), buf.len() - 5);
            assert_eq!(head.body, BodyFraming::Length(5));
            assert!(head.keep_alive);
            assert_eq!(head.content_length, Some(5));
        });
    }

    #[test]
    fn every_proper_prefix_needs_more_bytes() {
        let buf = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nX: y\r\n\r\n";
        for end in 0..buf.len() {
            let partial = with_parsed(&buf[..end], MAX, false, |r| r.map(|h| h.is_some()));
            assert_eq!(partial, Ok(false), "prefix {end}");
        }
        complete(buf, |head| assert_eq!(head.head_len(), buf.len()));
    }

    #[test]
    fn framing_rules() {
        use BodyFraming::*;
        let h11 = "HTTP/1.1";
        assert_eq!(
            framing(h11, 200, "Content-Length: 7\r\n", false),
            Ok((Length(7), true))
        );
        assert_eq!(
            framing(h11, 200, "Content-Length: 0\r\n", false),
            Ok((Length(0), true))
        );
        assert_eq!(
            framing(h11, 200, "Transfer-Encoding: chunked\r\n", false),
            Ok((Chunked, true))
        );
        assert_eq!(framing(h11, 200, "", false), Ok((CloseDelimited, false)));
        assert_eq!(
            framing(h11, 200, "Content-Length: 7\r\n", true),
            Ok((None, true))
        );
        assert_eq!(
            framing(h11, 200, "Transfer-Encoding: chunked\r\n", true),
            Ok((None, true))
        );
        assert_eq!(framing(h11, 200, "", true), Ok((None, true)));
        for status in [100, 103, 204, 304] {
            assert_eq!(
                framing(h11, status, "Content-Length: 7\r\n", false),
                Ok((None, true)),
                "{status}"
            );
        }
        assert_eq!(
            framing(
                h11,
                101,
                "Connection: upgrade\r\nUpgrade: websocket\r\n",
                false
            ),
            Ok((None, false))
        );
        assert_eq!(
            framing(
                h11,
                200,
                "Content-Length: 7\r\nConnection: close\r\n",
                false
            ),
            Ok((Length(7), false))
        );
        assert_eq!(
            framing("HTTP/1.0", 200, "Content-Length: 7\r\n", false),
            Ok((Length(7), false))
        );
        assert_eq!(
            framing(
                "HTTP/1.0",
                200,
                "Content-Length: 7\r\nConnection: keep-alive\r\n",
                false
            ),
            Ok((Length(7), true))
        );
    }

    #[test]
    fn framing_errors() {
        let h11 = "HTTP/1.1";
        // Rejected even where the status says there is no body to frame.
        for status in [200, 304] {
            assert_eq!(
                framing(
                    h11,
                    status,
                    "Content-Length: 7\r\nTransfer-Encoding: chunked\r\n",
                    false
                ),
                Err(ParseError::ContentLengthWithTransferEncoding),
                "{status}"
            );
        }
        assert_eq!(
            framing(
                h11,
                200,
                "Content-Length: 7\r\nContent-Length: 8\r\n",
                false
            ),
            Err(ParseError::ConflictingContentLength)
        );
        assert_eq!(
            framing(h11, 200, "Content-Length: 7, 7\r\n", false),
            Ok((BodyFraming::Length(7), true))
        );
        assert_eq!(
            framing(h11, 200, "Content-Length: x\r\n", false),
            Err(ParseError::InvalidContentLength)
        );
        assert_eq!(
            framing(h11, 200, "Transfer-Encoding: gzip\r\n", false),
            Err(ParseError::ChunkedNotFinal)
        );
        assert_eq!(
            framing(h11, 200, "Transfer-Encoding: gzip, chunked\r\n", false),
            Err(ParseError::UnsupportedTransferCoding)
        );
        assert_eq!(
            framing("HTTP/1.0", 200, "Transfer-Encoding: chunked\r\n", false),
            Err(ParseError::TransferEncodingInHttp10)
        );
    }

    #[test]
    fn status_line_errors() {
        assert_eq!(error(b"HTTP/1.1 20 OK\r\n\r\n"), ParseError::InvalidStatus);
        assert_eq!(
            error(b"HTTP/1.1 2000 OK\r\n\r\n"),
            ParseError::InvalidStatus
        );
        assert_eq!(
            error(b"HTTP/1.1 099 Low\r\n\r\n"),
            ParseError::InvalidStatus
        );
        assert_eq!(
            error(b"HTTP/1.1 600 High\r\n\r\n"),
            ParseError::InvalidStatus
        );
        assert_eq!(
            error(b"HTTP/2.0 200 OK\r\n\r\n"),
            ParseError::InvalidVersion
        );
        assert_eq!(
            error(b"http/1.1 200 OK\r\n\r\n"),
            ParseError::InvalidVersion
        );
        assert_eq!(
            error(b"HTTP/1.1 200 OK\rX\r\n\r\n"),
            ParseError::InvalidStatus
        );
    }

    #[test]
    fn header_errors() {
        assert_eq!(
            error(b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n"),
            ParseError::InvalidHeaderName
        );
        assert_eq!(
            error(b"HTTP/1.1 200 OK\r\nX : a\r\n\r\n"),
            ParseError::InvalidHeaderName
        );
        assert_eq!(
            error(b"HTTP/1.1 200 OK\r\nX: a\0\r\n\r\n"),
            ParseError::InvalidHeaderValue
        );
    }

    #[test]
    fn missing_reason_is_empty() {
        complete(b"HTTP/1.1 204\r\n\r\n", |head| {
            assert_eq!(head.status, 204);
            assert_eq!(head.reason, "");
        });
    }

    #[test]
    fn head_size_limit() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nX";
        let head_len = buf.len() - 1;
        let outcome =
            |input: &[u8], max| with_parsed(input, max, false, |r| r.map(|h| h.is_some()));
        assert_eq!(outcome(buf, head_len), Ok(true));
        assert_eq!(outcome(buf, head_len - 1), Err(ParseError::HeadTooLarge));
        assert_eq!(
            outcome(&buf[..head_len - 1], head_len - 1),
            Err(ParseError::HeadTooLarge)
        );
        assert_eq!(outcome(&buf[..head_len - 2], head_len - 1), Ok(false));
    }

    #[test]
    fn too_many_headers() {
        let mut buf = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=crate::http::MAX_HEADERS {
            buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        assert_eq!(error(&buf), ParseError::TooManyHeaders);
    }

    #[test]
    fn upgrade_value() {
        complete(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            |head| {
                assert_eq!(head.upgrade, Some("websocket"));
                assert_eq!(head.body, BodyFraming::None);
                assert!(!head.keep_alive);
            },
        );
    }
}
