//! Why a head or a chunked body was rejected, and what the client is told.

use std::fmt;

use super::status::reason_phrase;

/// A request or response head that cannot be accepted.
///
/// For requests, [`ParseError::status`] is the status the proxy answers with. For responses
/// every variant means the backend misbehaved; the proxy answers 502 whatever the variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Method is not a token.
    InvalidMethod,
    /// Request target has bad syntax: bytes httparse refuses, non-ASCII, a fragment,
    /// userinfo, `*` with a method other than OPTIONS, or a form that is not origin or absolute.
    InvalidTarget,
    /// Version is not `HTTP/DIGIT.DIGIT`.
    InvalidVersion,
    /// Well-formed version other than HTTP/1.0 and HTTP/1.1.
    UnsupportedVersion,
    /// Start line not ended by CRLF (or LF), or a bad empty line before it.
    InvalidLineEnding,
    /// Response status line is malformed or the code is outside 100..=599.
    InvalidStatus,
    /// Field name is empty or not a token; covers obs-fold lines and whitespace before the colon.
    InvalidHeaderName,
    /// Field value holds NUL, a bare CR or another control character.
    InvalidHeaderValue,
    /// Request line longer than the limit.
    RequestLineTooLong,
    /// Head longer than the limit.
    HeadTooLarge,
    /// More header fields than the limit.
    TooManyHeaders,
    /// Both Content-Length and Transfer-Encoding present.
    ContentLengthWithTransferEncoding,
    /// Content-Length values that differ.
    ConflictingContentLength,
    /// Content-Length that is not a decimal u64.
    InvalidContentLength,
    /// Transfer-Encoding that is empty or not a list of tokens.
    InvalidTransferEncoding,
    /// Transfer-Encoding where chunked is not the final coding.
    ChunkedNotFinal,
    /// Transfer-Encoding naming chunked more than once.
    DuplicateChunked,
    /// Transfer-Encoding with a coding other than chunked (RFC 9112 6.1: 501).
    UnsupportedTransferCoding,
    /// Transfer-Encoding in an HTTP/1.0 message (RFC 9112 6.1: framing is faulty).
    TransferEncodingInHttp10,
    /// HTTP/1.1 request without Host.
    MissingHost,
    /// More than one Host field line.
    DuplicateHost,
    /// Host (or the authority of an absolute-form target) is not host[:port].
    InvalidHost,
    /// Expect other than 100-continue.
    ExpectationFailed,
    /// CONNECT: the proxy does not tunnel.
    ConnectNotSupported,
}

impl ParseError {
    /// The status a client that sent such a request must get.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::RequestLineTooLong => 414,
            ParseError::HeadTooLarge | ParseError::TooManyHeaders => 431,
            ParseError::UnsupportedVersion => 505,
            ParseError::ExpectationFailed => 417,
            ParseError::ConnectNotSupported | ParseError::UnsupportedTransferCoding => 501,
            _ => 400,
        }
    }

    /// Reason phrase of [`ParseError::status`].
    pub fn reason(&self) -> &'static str {
        reason_phrase(self.status())
    }

    fn description(&self) -> &'static str {
        match self {
            ParseError::InvalidMethod => "invalid method",
            ParseError::InvalidTarget => "invalid request target",
            ParseError::InvalidVersion => "invalid HTTP version",
            ParseError::UnsupportedVersion => "unsupported HTTP version",
            ParseError::InvalidLineEnding => "invalid line ending",
            ParseError::InvalidStatus => "invalid status line",
            ParseError::InvalidHeaderName => "invalid header name",
            ParseError::InvalidHeaderValue => "invalid header value",
            ParseError::RequestLineTooLong => "request line too long",
            ParseError::HeadTooLarge => "head too large",
            ParseError::TooManyHeaders => "too many header fields",
            ParseError::ContentLengthWithTransferEncoding => {
                "both Content-Length and Transfer-Encoding"
            }
            ParseError::ConflictingContentLength => "conflicting Content-Length values",
            ParseError::InvalidContentLength => "invalid Content-Length",
            ParseError::InvalidTransferEncoding => "invalid Transfer-Encoding",
            ParseError::ChunkedNotFinal => "chunked is not the final transfer coding",
            ParseError::DuplicateChunked => "chunked applied more than once",
            ParseError::UnsupportedTransferCoding => "unsupported transfer coding",
            ParseError::TransferEncodingInHttp10 => "Transfer-Encoding in an HTTP/1.0 message",
            ParseError::MissingHost => "missing Host",
            ParseError::DuplicateHost => "more than one Host",
            ParseError::InvalidHost => "invalid Host",
            ParseError::ExpectationFailed => "unsupported expectation",
            ParseError::ConnectNotSupported => "CONNECT not supported",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for ParseError {}

/// A chunked body that violates RFC 9112 section 7.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedError {
    /// Chunk size missing or not pure hex digits (sign, whitespace, `0x` are refused).
    InvalidSize,
    /// Chunk size does not fit in u64.
    SizeOverflow,
    /// Chunk extension holds a control character.
    InvalidExtension,
    /// Chunk-size line (size and extensions) longer than [`super::MAX_CHUNK_LINE`].
    SizeLineTooLong,
    /// A line not ended by CRLF (bare LF and bare CR are refused).
    InvalidLineEnding,
    /// Chunk data not followed by CRLF.
    MissingDataCrlf,
    /// Trailer line that is not a valid field line.
    InvalidTrailer,
    /// Trailer section larger than [`super::MAX_TRAILER_BYTES`].
    TrailersTooLarge,
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChunkedError::InvalidSize => "invalid chunk size",
            ChunkedError::SizeOverflow => "chunk size overflows",
            ChunkedError::InvalidExtension => "invalid chunk extension",
            ChunkedError::SizeLineTooLong => "chunk size line too long",
            ChunkedError::InvalidLineEnding => "chunk line not ended by CRLF",
            ChunkedError::MissingDataCrlf => "chunk data not followed by CRLF",
            ChunkedError::InvalidTrailer => "invalid trailer field",
            ChunkedError::TrailersTooLarge => "trailer section too large",
        })
    }
}

impl std::error::Error for ChunkedError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_match_rfc() {
        assert_eq!(ParseError::RequestLineTooLong.status(), 414);
        assert_eq!(ParseError::HeadTooLarge.status(), 431);
        assert_eq!(ParseError::TooManyHeaders.status(), 431);
        assert_eq!(ParseError::UnsupportedVersion.status(), 505);
        assert_eq!(ParseError::ExpectationFailed.status(), 417);
        assert_eq!(ParseError::ConnectNotSupported.status(), 501);
        assert_eq!(ParseError::UnsupportedTransferCoding.status(), 501);
        for bad_request in [
            ParseError::InvalidMethod,
            ParseError::InvalidTarget,
            ParseError::InvalidVersion,
            ParseError::InvalidLineEnding,
            ParseError::InvalidStatus,
            ParseError::InvalidHeaderName,
            ParseError::InvalidHeaderValue,
            ParseError::ContentLengthWithTransferEncoding,
            ParseError::ConflictingContentLength,
            ParseError::InvalidContentLength,
            ParseError::InvalidTransferEncoding,
            ParseError::ChunkedNotFinal,
            ParseError::DuplicateChunked,
            ParseError::TransferEncodingInHttp10,
            ParseError::MissingHost,
            ParseError::DuplicateHost,
            ParseError::InvalidHost,
        ] {
            assert_eq!(bad_request.status(), 400, "{bad_request:?}");
            assert_eq!(bad_request.reason(), "Bad Request");
        }
    }

    #[test]
    fn reasons_follow_status() {
        assert_eq!(ParseError::RequestLineTooLong.reason(), "URI Too Long");
        assert_eq!(
            ParseError::HeadTooLarge.reason(),
            "Request Header Fields Too Large"
        );
        assert_eq!(
            ParseError::UnsupportedVersion.reason(),
            "HTTP Version Not Supported"
        );
        assert_eq!(ParseError::ExpectationFailed.reason(), "Expectation Failed");
        assert_eq!(ParseError::ConnectNotSupported.reason(), "Not Implemented");
    }

    #[test]
    fn display_is_human_readable() {
        assert_eq!(ParseError::MissingHost.to_string(), "missing Host");
        assert_eq!(
            ChunkedError::SizeOverflow.to_string(),
            "chunk size overflows"
        );
    }
}
