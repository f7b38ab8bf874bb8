//! Field-value rules shared by requests, responses and rewriting: the fields that decide
//! framing and connection handling, read in one pass over the parsed headers.

use std::net::Ipv6Addr;

use httparse::Header;

use super::error::ParseError;

/// What the framing and connection fields of one head say.
#[derive(Debug, Default)]
pub(super) struct FieldScan<'b> {
    pub content_length: Option<u64>,
    pub transfer_encoding: TransferEncoding,
    pub connection: ConnectionOptions,
    pub host: Option<&'b [u8]>,
    pub host_lines: usize,
    pub expect_continue: bool,
    pub expect_other: bool,
    /// First Upgrade field value.
    pub upgrade: Option<&'b [u8]>,
}

/// What a field's name means to the proxy: decided once per field by [`FieldScan::scan`], so
/// the rewrite that follows compares no names.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum FieldName {
    /// Any other field: forwarded as it came.
    #[default]
    Other,
    ContentLength,
    TransferEncoding,
    Connection,
    Host,
    Expect,
    Upgrade,
    /// Keep-Alive, TE, Trailer, Proxy-Connection, Close, HTTP2-Settings: hop-by-hop and
    /// nothing more to the proxy.
    HopByHopOnly,
    Via,
    XForwardedFor,
    XForwardedProto,
    XForwardedHost,
    /// Named by a Connection option, so hop-by-hop in this message (RFC 9110 7.6.1).
    NamedByConnection,
}

impl FieldName {
    /// What `name`, a token as httparse hands it over, means to the proxy.
    fn of(name: &[u8]) -> Self {
        use FieldName::*;
        let is = |known: &str| token_eq_lowercase(name, known.as_bytes());
        // The length decides between at most two candidates.
        match name.len() {
            2 if is("te") => HopByHopOnly,
            3 if is("via") => Via,
            4 if is("host") => Host,
            // Reserved so that it can never be confused with the `close` option (RFC 9110
            // 18.4); whatever Connection says, it is not forwarded.
            5 if is("close") => HopByHopOnly,
            6 if is("expect") => Expect,
            7 if is("upgrade") => Upgrade,
            7 if is("trailer") => HopByHopOnly,
            10 if is("connection") => Connection,
            10 if is("keep-alive") => HopByHopOnly,
            14 if is("content-length") => ContentLength,
            // Connection-specific by definition (RFC 9113 3.1 deprecates the h2c upgrade it
            // belongs to), even when Connection does not name it.
            14 if is("http2-settings") => HopByHopOnly,
            15 if is("x-forwarded-for") => XForwardedFor,
            16 if is("proxy-connection") => HopByHopOnly,
            16 if is("x-forwarded-host") => XForwardedHost,
            17 if is("transfer-encoding") => TransferEncoding,
            17 if is("x-forwarded-proto") => XForwardedProto,
            _ => Other,
        }
    }

    /// Fields that apply to one connection only and are never forwarded: the fixed set
    /// (RFC 9110 7.6.1, plus Proxy-Connection and Expect, which the proxy answers itself)
    /// and every field a Connection option names.
    pub fn is_hop_by_hop(self) -> bool {
        use FieldName::*;
        matches!(
            self,
            TransferEncoding | Connection | Expect | Upgrade | HopByHopOnly | NamedByConnection
        )
    }
}

/// Whether `token` equals `lowercase` ignoring ASCII case, for a `token` of tchars and a
/// `lowercase` of lowercase letters and `-`: the field names the proxy knows. OR-ing 0x20
/// into a tchar folds a letter's two cases together and maps no other tchar onto a
/// lowercase letter or `-` (only CR would become `-`), so the result is exact, and eight
/// bytes are compared at a time.
fn token_eq_lowercase(token: &[u8], lowercase: &[u8]) -> bool {
    const FOLD: u64 = u64::from_ne_bytes([0x20; 8]);
    if token.len() != lowercase.len() {
        return false;
    }
    let Some(last) = token.len().checked_sub(8) else {
        return token.iter().zip(lowercase).all(|(&t, &l)| t | 0x20 == l);
    };
    let folded_word_eq =
        |at: usize| match (token[at..].first_chunk(), lowercase[at..].first_chunk()) {
            (Some(&t), Some(&l)) => u64::from_ne_bytes(t) | FOLD == u64::from_ne_bytes(l),
            _ => false,
        };
    // The last word may overlap the one before it.
    (0..last).step_by(8).all(folded_word_eq) && folded_word_eq(last)
}

/// What Transfer-Encoding says. Only `chunked` alone is usable: the proxy re-frames bodies
/// and can neither decode nor pass on any other coding.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum TransferEncoding {
    #[default]
    Absent,
    Chunked,
    /// Present but not usable; why, for when no other framing error takes precedence.
    Unusable(ParseError),
}

/// The Connection options that change what the proxy does.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ConnectionOptions {
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
    /// An option other than those three: it names a field to drop.
    pub names_fields: bool,
}

impl<'b> FieldScan<'b> {
    /// Reads every field that affects framing or connection handling, and writes what each
    /// field's name means to `names` (as long as `headers`).
    pub fn scan(headers: &[Header<'b>], names: &mut [FieldName]) -> Result<Self, ParseError> {
        let mut scan = FieldScan::default();
        let mut codings = CodingList::default();
        for (header, slot) in headers.iter().zip(names.iter_mut()) {
            let name = FieldName::of(header.name.as_bytes());
            *slot = name;
            let value = header.value;
            match name {
                FieldName::ContentLength => scan.merge_content_length(value)?,
                FieldName::TransferEncoding => codings.push_field(value),
                FieldName::Connection => scan.connection.merge(value),
                FieldName::Host => {
                    scan.host_lines += 1;
                    scan.host.get_or_insert(value);
                }
                FieldName::Expect => scan.merge_expect(value),
                FieldName::Upgrade => {
                    scan.upgrade.get_or_insert(value);
                }
                _ => {}
            }
        }
        scan.transfer_encoding = codings.finish();
        if scan.connection.names_fields {
            mark_named_by_connection(headers, names);
        }
        Ok(scan)
    }

    fn merge_content_length(&mut self, value: &[u8]) -> Result<(), ParseError> {
        // RFC 9112 6.3: a list of identical values is the same as one value.
        let mut elements = 0;
        for element in value.split(|&b| b == b',').map(trim_ows) {
            let length = parse_decimal(element).ok_or(ParseError::InvalidContentLength)?;
            match self.content_length {
                Some(seen) if seen != length => return Err(ParseError::ConflictingContentLength),
                _ => self.content_length = Some(length),
            }
            elements += 1;
        }
        if elements == 0 {
            return Err(ParseError::InvalidContentLength);
        }
        Ok(())
    }

    fn merge_expect(&mut self, value: &[u8]) {
        for expectation in list_elements(value) {
            if expectation.eq_ignore_ascii_case(b"100-continue") {
                self.expect_continue = true;
            } else {
                self.expect_other = true;
            }
        }
    }
}

impl ConnectionOptions {
    fn merge(&mut self, value: &[u8]) {
        for option in list_elements(value) {
            if option.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if option.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if option.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            } else {
                self.names_fields = true;
            }
        }
    }
}

/// Transfer codings seen so far across all Transfer-Encoding lines, in order.
#[derive(Default)]
struct CodingList {
    present: bool,
    codings: usize,
    chunked_seen: bool,
    other_seen: bool,
    error: Option<ParseError>,
}

impl CodingList {
    fn push_field(&mut self, value: &[u8]) {
        self.present = true;
        if self.error.is_none() {
            self.error = self.push_codings(value).err();
        }
    }

    fn push_codings(&mut self, value: &[u8]) -> Result<(), ParseError> {
        for coding in list_elements(value) {
            let (name, has_params) = match coding.iter().position(|&b| b == b';') {
                Some(semicolon) => (trim_ows(&coding[..semicolon]), true),
                None => (coding, false),
            };
            if !is_token(name) {
                return Err(ParseError::InvalidTransferEncoding);
            }
            let is_chunked = name.eq_ignore_ascii_case(b"chunked");
            if self.chunked_seen {
                return Err(if is_chunked {
                    ParseError::DuplicateChunked
                } else {
                    ParseError::ChunkedNotFinal
                });
            }
            if is_chunked && has_params {
                // chunked defines no parameters (RFC 9112 7.1).
                return Err(ParseError::InvalidTransferEncoding);
            }
            self.chunked_seen |= is_chunked;
            self.other_seen |= !is_chunked;
            self.codings += 1;
        }
        Ok(())
    }

    fn finish(self) -> TransferEncoding {
        let error = match self {
            CodingList { present: false, .. } => return TransferEncoding::Absent,
            CodingList {
                error: Some(error), ..
            } => error,
            CodingList { codings: 0, .. } => ParseError::InvalidTransferEncoding,
            CodingList {
                chunked_seen: false,
                ..
            } => ParseError::ChunkedNotFinal,
            CodingList {
                other_seen: true, ..
            } => ParseError::UnsupportedTransferCoding,
            _ => return TransferEncoding::Chunked,
        };
        TransferEncoding::Unusable(error)
    }
}

/// Non-empty, OWS-trimmed elements of a comma-separated field value (RFC 9110 5.6.1).
pub(super) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|element| !element.is_empty())
}

pub(super) fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// Position of `part` inside `whole`; `None` when it is not a sub-slice of it.
pub(super) fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let offset = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (offset + part.len() <= whole.len()).then_some(offset)
}

/// `1*DIGIT` as u64; `None` on anything else or overflow.
pub(super) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

pub(super) fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| is_tchar(b))
}

pub(super) fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// `tchar` (RFC 9110 5.6.2).
static TCHAR: [bool; 256] = alphanumeric_and(b"!#$%&'*+-.^_`|~");
/// What a reg-name may hold besides `%XX`: unreserved and sub-delims (RFC 3986 3.2.2).
static REG_NAME_CHAR: [bool; 256] = alphanumeric_and(b"-._~!$&'()*+,;=");

/// A byte class as a table: one load per byte instead of a search through `extra`.
const fn alphanumeric_and(extra: &[u8]) -> [bool; 256] {
    let mut class = [false; 256];
    let mut b = 0;
    while b < 256 {
        class[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        class[extra[i] as usize] = true;
        i += 1;
    }
    class
}

/// `host [ ":" port ]` per RFC 9110 7.2 / RFC 3986 3.2.2: reg-name, IPv4 or `[IPv6]`;
/// port up to 5 digits and at most 65535 (may be empty, as RFC 3986 allows).
pub(super) fn is_valid_authority(authority: &[u8]) -> bool {
    let (host_ok, port) = match authority {
        [b'[', rest @ ..] => match rest.iter().position(|&b| b == b']') {
            Some(close) => (is_ipv6(&rest[..close]), &rest[close + 1..]),
            None => return false,
        },
        _ => {
            let colon = authority.iter().position(|&b| b == b':');
            let host_end = colon.unwrap_or(authority.len());
            (is_reg_name(&authority[..host_end]), &authority[host_end..])
        }
    };
    host_ok && is_valid_port_suffix(port)
}

fn is_ipv6(literal: &[u8]) -> bool {
    std::str::from_utf8(literal).is_ok_and(|text| text.parse::<Ipv6Addr>().is_ok())
}

/// Non-empty reg-name; IPv4 addresses are a subset of it.
fn is_reg_name(host: &[u8]) -> bool {
    if host.is_empty() {
        return false;
    }
    let mut rest = host;
    while let [first, tail @ ..] = rest {
        rest = match first {
            b'%' => match tail {
                [hi, lo, after @ ..] if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() => after,
                _ => return false,
            },
            &b if REG_NAME_CHAR[usize::from(b)] => tail,
            _ => return false,
        };
    }
    true
}

/// Empty, or `:` followed by at most 5 digits whose value fits a port.
fn is_valid_port_suffix(suffix: &[u8]) -> bool {
    match suffix {
        [] => true,
        [b':', port @ ..] => {
            port.is_empty() || (port.len() <= 5 && parse_decimal(port).is_some_and(|p| p <= 65535))
        }
        _ => false,
    }
}

/// Marks the fields a Connection option names (other than close, keep-alive and upgrade,
/// whose fields are hop-by-hop anyway). Fields the proxy reads or writes itself (framing,
/// Host) keep their meaning: they are never forwarded as they came.
fn mark_named_by_connection(headers: &[Header<'_>], names: &mut [FieldName]) {
    for index in 0..headers.len().min(names.len()) {
        let droppable = matches!(
            names[index],
            FieldName::Other
                | FieldName::Via
                | FieldName::XForwardedFor
                | FieldName::XForwardedProto
                | FieldName::XForwardedHost
        );
        // Marking never changes a Connection field, so the options stay the same throughout.
        if droppable && connection_names(headers, names, headers[index].name) {
            names[index] = FieldName::NamedByConnection;
        }
    }
}

fn connection_names(headers: &[Header<'_>], names: &[FieldName], field: &str) -> bool {
    headers
        .iter()
        .zip(names)
        .filter(|(_, name)| **name == FieldName::Connection)
        .flat_map(|(header, _)| list_elements(header.value))
        .any(|option| option.eq_ignore_ascii_case(field.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(name: &'a str, value: &'a str) -> Header<'a> {
        Header {
            name,
            value: value.as_bytes(),
        }
    }

    /// Scans `fields`; also returns what each name was taken for.
    fn scan_fields<'a>(
        fields: &[(&'a str, &'a str)],
    ) -> Result<(FieldScan<'a>, Vec<FieldName>), ParseError> {
        let headers: Vec<_> = fields.iter().map(|&(n, v)| header(n, v)).collect();
        let mut names = vec![FieldName::Other; headers.len()];
        let scan = FieldScan::scan(&headers, &mut names)?;
        Ok((scan, names))
    }

    fn names(fields: &[(&str, &str)]) -> Vec<FieldName> {
        scan_fields(fields).expect("valid fields").1
    }

    fn scan(fields: &[(&str, &str)]) -> Result<bool, ParseError> {
        match scan_fields(fields)?.0.transfer_encoding {
            TransferEncoding::Absent => Ok(false),
            TransferEncoding::Chunked => Ok(true),
            TransferEncoding::Unusable(error) => Err(error),
        }
    }

    #[test]
    fn transfer_encoding_lists() {
        assert_eq!(scan(&[("Transfer-Encoding", "chunked")]), Ok(true));
        assert_eq!(scan(&[("transfer-encoding", "CHUNKED")]), Ok(true));
        assert_eq!(scan(&[("Transfer-Encoding", " , chunked ,")]), Ok(true));
        assert_eq!(scan(&[]), Ok(false));
        assert_eq!(
            scan(&[("Transfer-Encoding", "")]),
            Err(ParseError::InvalidTransferEncoding)
        );
        assert_eq!(
            scan(&[("Transfer-Encoding", "chunked, chunked")]),
            Err(ParseError::DuplicateChunked)
        );
        assert_eq!(
            scan(&[
                ("Transfer-Encoding", "chunked"),
                ("Transfer-Encoding", "chunked")
            ]),
            Err(ParseError::DuplicateChunked)
        );
        assert_eq!(
            scan(&[("Transfer-Encoding", "chunked, gzip")]),
            Err(ParseError::ChunkedNotFinal)
        );
        assert_eq!(
            scan(&[("Transfer-Encoding", "gzip")]),
            Err(ParseError::ChunkedNotFinal)
        );
        assert_eq!(
            scan(&[("Transfer-Encoding", "gzip, chunked")]),
            Err(ParseError::UnsupportedTransferCoding)
        );
        assert_eq!(
            scan(&[("Transfer-Encoding", "chunked;x=1")]),
            Err(ParseError::InvalidTransferEncoding)
        );
        assert_eq!(
            scan(&[("Transfer-Encoding", "chu nked")]),
            Err(ParseError::InvalidTransferEncoding)
        );
        assert_eq!(
            scan(&[("Transfer-Encoding", "\"chunked\"")]),
            Err(ParseError::InvalidTransferEncoding)
        );
    }

    #[test]
    fn content_length_values() {
        let length =
            |fields: &[(&str, &str)]| scan_fields(fields).map(|(scan, _)| scan.content_length);
        assert_eq!(length(&[("Content-Length", "0")]), Ok(Some(0)));
        assert_eq!(length(&[("Content-Length", "5, 5")]), Ok(Some(5)));
        assert_eq!(
            length(&[("Content-Length", "5"), ("content-length", "5")]),
            Ok(Some(5))
        );
        assert_eq!(
            length(&[("Content-Length", "18446744073709551615")]),
            Ok(Some(u64::MAX))
        );
        assert_eq!(
            length(&[("Content-Length", "18446744073709551616")]),
            Err(ParseError::InvalidContentLength)
        );
        for bad in ["", "+5", "-1", "5a", "0x5", "5 5", "5,", ",5", "5,,5", " "] {
            assert_eq!(
                length(&[("Content-Length", bad)]),
                Err(ParseError::InvalidContentLength),
                "{bad:?}"
            );
        }
        assert_eq!(
            length(&[("Content-Length", "5, 6")]),
            Err(ParseError::ConflictingContentLength)
        );
        assert_eq!(
            length(&[("Content-Length", "5"), ("Content-Length", "6")]),
            Err(ParseError::ConflictingContentLength)
        );
    }

    #[test]
    fn byte_class_tables_hold_exactly_their_characters() {
        for b in 0..=255u8 {
            let tchar = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(is_tchar(b), tchar, "tchar {b}");
            let reg_name = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b);
            assert_eq!(REG_NAME_CHAR[usize::from(b)], reg_name, "reg-name {b}");
        }
    }

    #[test]
    fn authority_syntax() {
        for good in [
            "example.com",
            "example.com:8080",
            "example.com:",
            "127.0.0.1:65535",
            "[::1]",
            "[2001:db8::1]:443",
            "a-b_c~d.%41!$&'()*+,;=",
            "localhost:0",
        ] {
            assert!(is_valid_authority(good.as_bytes()), "{good}");
        }
        for bad in [
            "",
            ":80",
            "example.com:65536",
            "example.com:123456",
            "example.com:8a",
            "example.com:80:80",
            "exa mple.com",
            "user@example.com",
            "[::1",
            "[::1]x",
            "[not-ipv6]",
            "[fe80::1%25eth0]",
            "%4",
            "%zz",
            "example.com/",
            "ex\u{e9}.com",
        ] {
            assert!(!is_valid_authority(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn every_known_name_in_any_case() {
        use FieldName::*;
        let known = [
            ("Content-Length", ContentLength),
            ("Transfer-Encoding", TransferEncoding),
            ("Connection", Connection),
            ("Host", Host),
            ("Expect", Expect),
            ("Upgrade", Upgrade),
            ("Keep-Alive", HopByHopOnly),
            ("TE", HopByHopOnly),
            ("Trailer", HopByHopOnly),
            ("Proxy-Connection", HopByHopOnly),
            ("Close", HopByHopOnly),
            ("HTTP2-Settings", HopByHopOnly),
            ("Via", Via),
            ("X-Forwarded-For", XForwardedFor),
            ("X-Forwarded-Proto", XForwardedProto),
            ("X-Forwarded-Host", XForwardedHost),
        ];
        for (name, meaning) in known {
            for spelled in [name.to_owned(), name.to_lowercase(), name.to_uppercase()] {
                assert_eq!(names(&[(&spelled, "1")]), [meaning], "{spelled}");
            }
            // Same length, one letter off: nothing the proxy knows.
            let mut near = name.to_owned().into_bytes();
            near[0] = if near[0] == b'Q' { b'Z' } else { b'Q' };
            let near = String::from_utf8(near).unwrap();
            assert_eq!(names(&[(&near, "1")]), [Other], "{near}");
        }
        for other in ["Accept", "Content-Type", "Trailers", "Hosts", "X-Forwarded"] {
            assert_eq!(names(&[(other, "1")]), [Other], "{other}");
        }
    }

    #[test]
    fn known_names_match_exactly_their_case_variants() {
        let known = [
            "te",
            "via",
            "host",
            "close",
            "expect",
            "upgrade",
            "trailer",
            "connection",
            "keep-alive",
            "content-length",
            "http2-settings",
            "x-forwarded-for",
            "proxy-connection",
            "x-forwarded-host",
            "transfer-encoding",
            "x-forwarded-proto",
        ];
        let tchars: Vec<u8> = (0..=255u8).filter(|&b| is_tchar(b)).collect();
        for name in known {
            let name = name.as_bytes();
            // Every token one byte away from the name, and the name itself in both cases.
            for at in 0..name.len() {
                for &b in &tchars {
                    let mut candidate = name.to_vec();
                    candidate[at] = b;
                    assert_eq!(
                        token_eq_lowercase(&candidate, name),
                        candidate.eq_ignore_ascii_case(name),
                        "{:?} against {:?}",
                        String::from_utf8_lossy(&candidate),
                        String::from_utf8_lossy(name)
                    );
                }
            }
            assert!(token_eq_lowercase(&name.to_ascii_uppercase(), name));
            assert!(!token_eq_lowercase(&name[1..], name));
            assert!(!token_eq_lowercase(&[name, b"x"].concat(), name));
        }
    }

    #[test]
    fn hop_by_hop_names() {
        use FieldName::*;
        let hop_by_hop = [
            TransferEncoding,
            Connection,
            Expect,
            Upgrade,
            HopByHopOnly,
            NamedByConnection,
        ];
        for name in hop_by_hop {
            assert!(name.is_hop_by_hop(), "{name:?}");
        }
        for name in [
            Other,
            ContentLength,
            Host,
            Via,
            XForwardedFor,
            XForwardedProto,
            XForwardedHost,
        ] {
            assert!(!name.is_hop_by_hop(), "{name:?}");
        }
    }

    #[test]
    fn connection_options_name_fields() {
        use FieldName::*;
        let fields = [
            ("X-Secret", "1"),
            ("Connection", "close, x-secret"),
            ("connection", " foo "),
            ("FOO", "2"),
            ("X-Secret2", "3"),
            ("Accept", "4"),
            ("X-Forwarded-For", "10.0.0.1"),
        ];
        assert_eq!(
            names(&fields),
            [
                NamedByConnection,
                Connection,
                Connection,
                NamedByConnection,
                Other,
                Other,
                XForwardedFor
            ]
        );
        let named_forwarded = [
            ("Connection", "X-Forwarded-For"),
            ("X-Forwarded-For", "10.0.0.1"),
        ];
        assert_eq!(names(&named_forwarded), [Connection, NamedByConnection]);
        let named_via = [("Connection", "via"), ("Via", "1.1 inner")];
        assert_eq!(names(&named_via), [Connection, NamedByConnection]);
        // Framing fields and Host keep their meaning: the proxy rewrites them anyway.
        let named_framing = [
            ("Connection", "content-length, host, keep-alive"),
            ("Content-Length", "5"),
            ("Host", "h"),
            ("Keep-Alive", "timeout=5"),
        ];
        assert_eq!(
            names(&named_framing),
            [Connection, ContentLength, Host, HopByHopOnly]
        );
        // Only close, keep-alive and upgrade: their fields are hop-by-hop by name already.
        let plain = [
            ("Connection", "close, Keep-Alive, upgrade"),
            ("close", "1"),
            ("X-Other", "2"),
        ];
        assert_eq!(names(&plain), [Connection, HopByHopOnly, Other]);
    }

    #[test]
    fn many_connection_options_still_found() {
        let options = "a1, a2, a3, a4, a5, a6, a7, a8, a9, a10";
        let mut fields = vec![("Connection", options), ("Connection", "last")];
        fields.extend(["a10", "LAST", "a11"].map(|name| (name, "v")));
        assert_eq!(
            &names(&fields)[2..],
            [
                FieldName::NamedByConnection,
                FieldName::NamedByConnection,
                FieldName::Other
            ]
        );
    }

    #[test]
    fn list_elements_trim_and_skip_empty() {
        let elements: Vec<_> = list_elements(b" a ,\tb,, ,c").collect();
        assert_eq!(elements, [&b"a"[..], b"b", b"c"]);
    }
}
