//! Request heads: syntax via httparse, then the RFC 9112 / 9110 rules a proxy must enforce
//! (limits, target form, Host, framing, Expect, connection options).

use std::mem::MaybeUninit;

use httparse::{Header, Status};

use super::error::ParseError;
use super::fields::{FieldName, FieldScan, TransferEncoding, is_valid_authority, offset_in};
use super::{BodyFraming, HeadLimits, HeadStorage, MAX_HEADERS, Version};

/// A parsed request head; every slice borrows the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead<'h, 'b> {
    pub method: &'b str,
    /// The request target exactly as received.
    pub target: &'b str,
    /// What to forward: origin-form `path?query` (an absolute-form target reduced to its
    /// path, `/` when it has none), or `*` for `OPTIONS *`.
    pub path: &'b str,
    pub version: Version,
    /// Effective authority: from an absolute-form target if present, else the Host field;
    /// empty for an HTTP/1.0 request without Host. Validated, so ASCII.
    pub host: &'b [u8],
    pub headers: &'h [Header<'b>],
    /// What each of `headers` is to the proxy, in the same order.
    pub(crate) names: &'h [FieldName],
    /// The head as received, which `headers` point into.
    pub bytes: &'b [u8],
    /// `None`, `Length(n)` (kept even for n == 0, so `Content-Length: 0` is forwarded) or
    /// `Chunked`; never `CloseDelimited`.
    pub body: BodyFraming,
    /// HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request (ignored on HTTP/1.0, RFC 9110 10.1.1).
    pub expect_continue: bool,
    /// The Upgrade value when Connection lists `upgrade` (HTTP/1.1 only) and the value offers
    /// a protocol the proxy tunnels; [`RequestHead::upgrade_protocols`] are those.
    pub upgrade: Option<&'b str>,
    pub is_head: bool,
    /// GET, HEAD, OPTIONS, TRACE, PUT or DELETE: safe to retry on another backend.
    pub idempotent: bool,
}

impl<'b> RequestHead<'_, 'b> {
    /// Length of the head: the body or the next request starts at `buf[head_len()]`.
    pub fn head_len(&self) -> usize {
        self.bytes.len()
    }

    /// The protocols of `upgrade` the backend is offered, in the client's order.
    pub fn upgrade_protocols(&self) -> impl Iterator<Item = &'b str> + use<'b> {
        tunnelled_protocols(self.upgrade.unwrap_or_default())
    }
}

/// The protocols of an Upgrade value that the proxy tunnels: all but HTTP/2's. `h2c` is
/// deprecated (RFC 9113 3.1), and a backend switching to it would take requests the proxy
/// never sees past its routing; `h2` was never allowed in Upgrade (RFC 7540 3.2).
fn tunnelled_protocols(upgrade: &str) -> impl Iterator<Item = &str> {
    upgrade
        .split(',')
        .map(|protocol| protocol.trim_matches([' ', '\t']))
        .filter(|protocol| !protocol.is_empty() && !is_http2(protocol))
}

/// `h2c` or `h2`, with or without a `/version` (protocol names as case-insensitive as the
/// most lenient backend may read them).
fn is_http2(protocol: &str) -> bool {
    let name = protocol.split('/').next().unwrap_or_default();
    name.eq_ignore_ascii_case("h2c") || name.eq_ignore_ascii_case("h2")
}

/// Parses a request head at the start of `buf`.
///
/// `Ok(None)` means the head is incomplete and within limits: read more and call again with
/// the grown buffer. Bytes after the head (body, pipelined requests) are left alone. Only the
/// first `limits.max_header_bytes` bytes are ever examined. Leading empty lines are skipped
/// (RFC 9112 2.2) and count towards `head_len`. Bare LF line endings are accepted in the head
/// (RFC 9112 2.2 allows it; the head is re-written with CRLF before it is forwarded).
pub fn parse_request<'h, 'b>(
    buf: &'b [u8],
    storage: &'h mut HeadStorage<'b>,
    limits: &HeadLimits,
) -> Result<Option<RequestHead<'h, 'b>>, ParseError> {
    let window = &buf[..buf.len().min(limits.max_header_bytes)];
    let max_headers = limits.max_headers.min(storage.headers.len());
    let mut request = httparse::Request::new(&mut []);
    let parsed = request.parse_with_uninit_headers(window, &mut storage.headers[..max_headers]);
    let (line, headers, bytes) = match parsed {
        Ok(Status::Complete(head_len)) => {
            let (Some(method), Some(target), Some(minor)) =
                (request.method, request.path, request.version)
            else {
                return Err(ParseError::InvalidLineEnding);
            };
            let line = RequestLine {
                method,
                target,
                minor,
            };
            (line, &*request.headers, &window[..head_len])
        }
        Ok(Status::Partial) => return incomplete(window, limits),
        Err(httparse::Error::Version) => match classify_version(window, request.path) {
            VersionShape::Incomplete => return incomplete(window, limits),
            VersionShape::LaterMinor { line_end } => {
                let (Some(method), Some(target)) = (request.method, request.path) else {
                    return Err(ParseError::InvalidVersion);
                };
                let slots = &mut storage.later_minor_headers;
                let Some((headers, bytes)) =
                    parse_later_minor_fields(window, line_end, slots, max_headers, limits)?
                else {
                    return Ok(None);
                };
                // RFC 9110 2.5: handled as the highest minor version the proxy supports.
                let line = RequestLine {
                    method,
                    target,
                    minor: 1,
                };
                (line, headers, bytes)
            }
            VersionShape::Unsupported => return Err(ParseError::UnsupportedVersion),
            VersionShape::Invalid => return Err(ParseError::InvalidVersion),
        },
        Err(httparse::Error::Token) if request.method.is_none() => {
            return Err(ParseError::InvalidMethod);
        }
        Err(error) => return Err(map_syntax_error(error)),
    };
    build_head(line, headers, &mut storage.names, bytes, limits).map(Some)
}

/// The parts of a request line.
struct RequestLine<'b> {
    method: &'b str,
    target: &'b str,
    /// HTTP/1.minor, as the proxy treats it: 0 or 1.
    minor: u8,
}

/// A head's header fields and the whole head's bytes.
type ParsedFields<'h, 'b> = (&'h [Header<'b>], &'b [u8]);

/// The header fields of a request whose line httparse refused only for its version, an
/// HTTP/1.x with x > 1; `line_end` is where the request line's terminator starts. The
/// fields go to `slots` (`HeadStorage::later_minor_headers`), with the same syntax rules as
/// any request's. Returns the fields and the whole head's bytes.
fn parse_later_minor_fields<'h, 'b>(
    window: &'b [u8],
    line_end: usize,
    slots: &'h mut [MaybeUninit<Header<'b>>],
    max_headers: usize,
    limits: &HeadLimits,
) -> Result<Option<ParsedFields<'h, 'b>>, ParseError> {
    let fields_start = match &window[line_end..] {
        [b'\r', b'\n', ..] => line_end + 2,
        [b'\n', ..] => line_end + 1,
        [b'\r'] => return incomplete(window, limits),
        _ => return Err(ParseError::InvalidLineEnding),
    };
    const EMPTY: [Header<'_>; MAX_HEADERS] = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let slots = slots[..max_headers].write_copy_of_slice(&EMPTY[..max_headers]);
    match httparse::parse_headers(&window[fields_start..], slots) {
        Ok(Status::Complete((fields_len, headers))) => {
            Ok(Some((headers, &window[..fields_start + fields_len])))
        }
        Ok(Status::Partial) => incomplete(window, limits),
        Err(error) => Err(map_syntax_error(error)),
    }
}

/// Maps httparse's syntax errors; shared with response parsing.
pub(super) fn map_syntax_error(error: httparse::Error) -> ParseError {
    match error {
        httparse::Error::HeaderName => ParseError::InvalidHeaderName,
        httparse::Error::HeaderValue => ParseError::InvalidHeaderValue,
        httparse::Error::NewLine => ParseError::InvalidLineEnding,
        httparse::Error::Status => ParseError::InvalidStatus,
        httparse::Error::Token => ParseError::InvalidTarget,
        httparse::Error::TooManyHeaders => ParseError::TooManyHeaders,
        httparse::Error::Version => ParseError::InvalidVersion,
    }
}

/// The head is not complete yet: an error if it can no longer fit the limits.
fn incomplete<T>(window: &[u8], limits: &HeadLimits) -> Result<Option<T>, ParseError> {
    if request_line_too_long(window, limits.max_request_line) {
        return Err(ParseError::RequestLineTooLong);
    }
    if window.len() >= limits.max_header_bytes {
        return Err(ParseError::HeadTooLarge);
    }
    Ok(None)
}

/// Whether the (possibly unfinished) first line is already longer than `max` bytes.
fn request_line_too_long(window: &[u8], max: usize) -> bool {
    let line = skip_empty_lines(window);
    let line = match line.iter().position(|&b| b == b'\n') {
        Some(lf) => &line[..lf],
        None => line,
    };
    // A trailing CR may yet turn out to be part of the terminator.
    let content = line.strip_suffix(b"\r").unwrap_or(line);
    content.len() > max
}

fn skip_empty_lines(mut bytes: &[u8]) -> &[u8] {
    loop {
        bytes = match bytes {
            [b'\r', b'\n', rest @ ..] | [b'\n', rest @ ..] => rest,
            _ => return bytes,
        };
    }
}

enum VersionShape {
    Incomplete,
    /// HTTP/1.x with x > 1, its line ending at `line_end` (CR or LF).
    LaterMinor {
        line_end: usize,
    },
    Unsupported,
    Invalid,
}

/// Tells a version HTTP does not have yet (505), or a later HTTP/1 minor (handled as 1.1),
/// from one that is not a version (400), and waits when the bytes so far could still be
/// either.
fn classify_version(window: &[u8], target: Option<&str>) -> VersionShape {
    let Some(target) = target else {
        return VersionShape::Invalid;
    };
    let Some(target_start) = offset_in(window, target.as_bytes()) else {
        return VersionShape::Invalid;
    };
    let version_start = target_start + target.len() + 1;
    let rest = window.get(version_start..).unwrap_or_default();
    let line_end = rest.iter().position(|&b| b == b'\r' || b == b'\n');
    let version = &rest[..line_end.unwrap_or(rest.len())];
    const SHAPE: &[u8; 8] = b"HTTP/#.#";
    let fits_shape = version.len() <= SHAPE.len()
        && version
            .iter()
            .zip(SHAPE)
            .all(|(&b, &expected)| match expected {
                b'#' => b.is_ascii_digit(),
                _ => b == expected,
            });
    match (fits_shape, line_end) {
        (false, _) => VersionShape::Invalid,
        (true, None) => VersionShape::Incomplete,
        // httparse took 1.0 and 1.1; a later 1.x is the only other HTTP/1.
        (true, Some(end)) if version.starts_with(b"HTTP/1.") && version.len() == SHAPE.len() => {
            VersionShape::LaterMinor {
                line_end: version_start + end,
            }
        }
        (true, Some(_)) if version.len() == SHAPE.len() => VersionShape::Unsupported,
        (true, Some(_)) => VersionShape::Invalid,
    }
}

fn build_head<'h, 'b>(
    line: RequestLine<'b>,
    headers: &'h [Header<'b>],
    names: &'h mut [FieldName],
    bytes: &'b [u8],
    limits: &HeadLimits,
) -> Result<RequestHead<'h, 'b>, ParseError> {
    let RequestLine {
        method,
        target,
        minor,
    } = line;
    // httparse allows exactly one SP between the parts, so the line length is known.
    let line_len = method.len() + 1 + target.len() + 1 + b"HTTP/1.1".len();
    if line_len > limits.max_request_line {
        return Err(ParseError::RequestLineTooLong);
    }
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    if method == "CONNECT" {
        return Err(ParseError::ConnectNotSupported);
    }
    let (path, target_authority) = split_target(method, target)?;
    let names = &mut names[..headers.len()];
    let fields = FieldScan::scan(headers, names)?;
    let host = effective_host(&fields, target_authority, version)?;
    let body = request_framing(&fields, version)?;
    if fields.expect_other {
        return Err(ParseError::ExpectationFailed);
    }
    let http11 = version == Version::Http11;
    let keep_alive = !fields.connection.close && (http11 || fields.connection.keep_alive);
    let upgrade = match fields.upgrade {
        Some(value) if http11 && fields.connection.upgrade => std::str::from_utf8(value)
            .ok()
            .filter(|value| tunnelled_protocols(value).next().is_some()),
        _ => None,
    };
    Ok(RequestHead {
        method,
        target,
        path,
        version,
        host,
        headers,
        names,
        bytes,
        body,
        keep_alive,
        expect_continue: http11 && fields.expect_continue,
        upgrade,
        is_head: method == "HEAD",
        idempotent: matches!(
            method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        ),
    })
}

/// Splits the target into what to forward and, for absolute-form, its authority.
fn split_target<'b>(
    method: &str,
    target: &'b str,
) -> Result<(&'b str, Option<&'b str>), ParseError> {
    if !target.bytes().all(|b| b.is_ascii() && b != b'#') {
        return Err(ParseError::InvalidTarget);
    }
    if target.starts_with('/') {
        return Ok((target, None));
    }
    if target == "*" {
        return match method {
            "OPTIONS" => Ok((target, None)),
            _ => Err(ParseError::InvalidTarget),
        };
    }
    let Some((scheme, rest)) = target.split_once("://") else {
        return Err(ParseError::InvalidTarget);
    };
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return Err(ParseError::InvalidTarget);
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    if authority.contains('@') {
        // Userinfo is deprecated and a phishing vector (RFC 9110 4.2.4).
        return Err(ParseError::InvalidTarget);
    }
    if !is_valid_authority(authority.as_bytes()) {
        return Err(ParseError::InvalidHost);
    }
    match path.as_bytes().first() {
        None => Ok(("/", Some(authority))),
        Some(b'/') => Ok((path, Some(authority))),
        // `http://host?query` would need a `/` inserted; zero-copy cannot, and no real
        // client sends it.
        Some(_) => Err(ParseError::InvalidTarget),
    }
}

/// RFC 9112 3.2 / 3.2.2: Host is required once on HTTP/1.1 and always validated; an
/// absolute-form authority wins over it.
fn effective_host<'b>(
    fields: &FieldScan<'b>,
    target_authority: Option<&'b str>,
    version: Version,
) -> Result<&'b [u8], ParseError> {
    if fields.host_lines > 1 {
        return Err(ParseError::DuplicateHost);
    }
    let header_host = match fields.host {
        Some(value) if is_valid_authority(value) => Some(value),
        Some(_) => return Err(ParseError::InvalidHost),
        None if version == Version::Http11 => return Err(ParseError::MissingHost),
        None => None,
    };
    let target_host = target_authority.map(str::as_bytes);
    Ok(target_host.or(header_host).unwrap_or_default())
}

/// RFC 9112 6.1 / 6.3 for requests.
fn request_framing(fields: &FieldScan<'_>, version: Version) -> Result<BodyFraming, ParseError> {
    if fields.transfer_encoding != TransferEncoding::Absent {
        if version == Version::Http10 {
            return Err(ParseError::TransferEncodingInHttp10);
        }
        if fields.content_length.is_some() {
            return Err(ParseError::ContentLengthWithTransferEncoding);
        }
        if let TransferEncoding::Unusable(error) = fields.transfer_encoding {
            return Err(error);
        }
        return Ok(BodyFraming::Chunked);
    }
    Ok(match fields.content_length {
        Some(length) => BodyFraming::Length(length),
        None => BodyFraming::None,
    })
}

#[cfg(test)]
mod tests;
