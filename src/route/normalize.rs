//! The request path routes are matched on: one spelling per resource, so that a route for
//! `/admin` cannot be reached or avoided under another name.
//!
//! From the path of the target (the query is not part of it, and is forwarded as received):
//! 1. Percent-encoded *unreserved* characters (RFC 3986 2.3: letters, digits, `-._~`) are
//!    decoded: `/%61dmin` is `/admin`, `%2e` is `.`. Every other encoding is kept, with its
//!    hex digits upper-cased (`%2f` becomes `%2F`): an encoded `/` stays data, never a
//!    separator, as RFC 3986 2.2 says.
//! 2. Dot segments are removed as RFC 3986 5.2.4 says, after decoding, so `/api/%2e%2e/admin`
//!    is `/admin`. A path that climbs above the root (`/../etc`) is refused: a client that
//!    resolves dot segments (every browser, curl) never sends one; nginx answers 400 too.
//! 3. Empty segments collapse: `//admin` is `/admin` (nginx's `merge_slashes`, on by
//!    default). Most backends' routers treat them so, and a proxy that did not would let
//!    `//admin` past a route that blocks `/admin`; as the path forwarded is the normalised
//!    one, what the backend sees is what was matched.
//!
//! A `%` not followed by two hex digits is refused: no backend agrees on what it means.
//! The result starts with `/`, and is never longer than the input.

/// Why a path cannot be normalised: the request is answered 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// A `%` not followed by two hex digits.
    InvalidPercentEncoding,
    /// More `..` segments than there are segments before them.
    AboveRoot,
}

impl PathError {
    pub fn message(self) -> &'static str {
        match self {
            Self::InvalidPercentEncoding => "a '%' not followed by two hex digits",
            Self::AboveRoot => "a '..' segment climbs above the root",
        }
    }
}

/// Writes the normal form of `path` (which starts with `/`, without the query) into `out`,
/// replacing what it held. `out` does not grow beyond `path.len()` bytes.
pub fn normalize_path(path: &[u8], out: &mut Vec<u8>) -> Result<(), PathError> {
    out.clear();
    if is_normal(path) {
        // Most paths: one copy instead of a push per byte.
        out.extend_from_slice(path);
        return Ok(());
    }
    out.push(b'/');
    let body = path.strip_prefix(b"/").unwrap_or(path);
    let mut segments = body.split(|&b| b == b'/').peekable();
    while let Some(segment) = segments.next() {
        let is_last = segments.peek().is_none();
        // Every segment starts right after a '/'.
        let start = out.len();
        decode_segment(segment, out)?;
        match &out[start..] {
            b"" => {}
            b"." => out.truncate(start),
            b".." => remove_last_segment(out, start)?,
            _ if !is_last => out.push(b'/'),
            _ => {}
        }
    }
    Ok(())
}

/// Whether `path` is its own normal form: it starts with `/`, has no `%`, and no segment
/// but the last is empty, and none is `.` or `..`.
fn is_normal(path: &[u8]) -> bool {
    let Some(body) = path.strip_prefix(b"/") else {
        return false;
    };
    if body.contains(&b'%') {
        return false;
    }
    let mut segments = body.split(|&b| b == b'/').peekable();
    while let Some(segment) = segments.next() {
        let empty_inside = segment.is_empty() && segments.peek().is_some();
        if empty_inside || segment == b"." || segment == b".." {
            return false;
        }
    }
    true
}

/// Drops the `..` written at `start` and the segment before it, keeping that segment's
/// leading `/`.
fn remove_last_segment(out: &mut Vec<u8>, start: usize) -> Result<(), PathError> {
    // `out[start - 1]` is the '/' before the `..`; the root is `out[0]`.
    if start == 1 {
        return Err(PathError::AboveRoot);
    }
    let previous_slash = out[..start - 1]
        .iter()
        .rposition(|&b| b == b'/')
        .unwrap_or(0);
    out.truncate(previous_slash + 1);
    Ok(())
}

fn decode_segment(segment: &[u8], out: &mut Vec<u8>) -> Result<(), PathError> {
    let mut rest = segment;
    while let Some((&first, tail)) = rest.split_first() {
        if first != b'%' {
            out.push(first);
            rest = tail;
            continue;
        }
        let (Some(high), Some(low)) = (tail.first().and_then(hex), tail.get(1).and_then(hex))
        else {
            return Err(PathError::InvalidPercentEncoding);
        };
        let decoded = high << 4 | low;
        if is_unreserved(decoded) {
            out.push(decoded);
        } else {
            out.extend_from_slice(&[
                b'%',
                HEX_UPPER[usize::from(high)],
                HEX_UPPER[usize::from(low)],
            ]);
        }
        rest = &tail[2..];
    }
    Ok(())
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn hex(digit: &u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 2.3.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// The path of a request target: up to the query; `None` for `*` (`OPTIONS *`), which has
/// no path to match.
pub fn target_path(target: &[u8]) -> Option<&[u8]> {
    if target.first() != Some(&b'/') {
        return None;
    }
    let end = target
        .iter()
        .position(|&b| b == b'?')
        .unwrap_or(target.len());
    Some(&target[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(path: &str) -> Result<String, PathError> {
        let mut out = Vec::new();
        normalize_path(path.as_bytes(), &mut out)?;
        assert!(out.len() <= path.len().max(1), "{path} grew to {out:?}");
        Ok(String::from_utf8(out).unwrap())
    }

    #[track_caller]
    fn assert_normal(cases: &[(&str, &str)]) {
        for &(path, expected) in cases {
            assert_eq!(normalized(path).as_deref(), Ok(expected), "{path}");
        }
    }

    #[test]
    fn normal_paths_are_unchanged() {
        assert_normal(&[
            ("/", "/"),
            ("/a", "/a"),
            ("/a/", "/a/"),
            ("/a/b.html", "/a/b.html"),
            ("/.well-known/x", "/.well-known/x"),
            ("/a..b/...", "/a..b/..."),
            ("/~user/a_b-c", "/~user/a_b-c"),
            ("/a;b=c,d", "/a;b=c,d"),
        ]);
    }

    #[test]
    fn unreserved_characters_are_decoded_in_either_case() {
        assert_normal(&[
            ("/%61dmin", "/admin"),
            ("/%41%5a%30%39", "/AZ09"),
            ("/%2D%2e%5F%7E", "/-._~"),
            ("/%7euser", "/~user"),
        ]);
    }

    #[test]
    fn reserved_and_other_encodings_stay_encoded_with_upper_case_hex() {
        assert_normal(&[
            ("/a%2fb", "/a%2Fb"),
            ("/a%2Fb", "/a%2Fb"),
            ("/%20", "/%20"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/%00", "/%00"),
            ("/%25", "/%25"),
            ("/%252e", "/%252e"),
            ("/a%3fb", "/a%3Fb"),
        ]);
    }

    #[test]
    fn an_encoded_slash_is_never_a_separator() {
        // `..%2F` is one segment, not `..` then `/`.
        assert_normal(&[
            ("/a/..%2Fb", "/a/..%2Fb"),
            ("/a/%2e%2e%2fadmin", "/a/..%2Fadmin"),
            ("/%2F%2F", "/%2F%2F"),
        ]);
    }

    #[test]
    fn dot_segments_are_removed() {
        assert_normal(&[
            ("/.", "/"),
            ("/./", "/"),
            ("/a/.", "/a/"),
            ("/a/./b", "/a/b"),
            ("/a/..", "/"),
            ("/a/../", "/"),
            ("/a/b/..", "/a/"),
            ("/a/b/../c", "/a/c"),
            ("/a/b/../../c", "/c"),
            ("/api/../admin", "/admin"),
            ("/a/./../b/./c/.", "/b/c/"),
        ]);
    }

    #[test]
    fn encoded_dots_are_dot_segments() {
        assert_normal(&[
            ("/api/%2e%2e/admin", "/admin"),
            ("/api/%2E%2e/admin", "/admin"),
            ("/api/.%2E/admin", "/admin"),
            ("/a/%2e/b", "/a/b"),
        ]);
    }

    #[test]
    fn empty_segments_collapse() {
        assert_normal(&[
            ("//", "/"),
            ("//admin", "/admin"),
            ("/a//b", "/a/b"),
            ("/a///", "/a/"),
            ("/a/.//b", "/a/b"),
            ("/a//../b", "/b"),
        ]);
    }

    #[test]
    fn climbing_above_the_root_is_refused() {
        for path in [
            "/..",
            "/../",
            "/../etc/passwd",
            "/a/../..",
            "/a/../../b",
            "/%2e%2e/admin",
            "//../a",
        ] {
            assert_eq!(normalized(path), Err(PathError::AboveRoot), "{path}");
        }
    }

    #[test]
    fn invalid_percent_encodings_are_refused() {
        for path in ["/%", "/%4", "/a%g0", "/%zz/b", "/a%", "/%%41", "/%2"] {
            assert_eq!(
                normalized(path),
                Err(PathError::InvalidPercentEncoding),
                "{path}"
            );
        }
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for path in ["/%2e%2e%2f", "/a/b/../%7e/./c//", "/%61%2F%2f", "/x/%2E/"] {
            let once = normalized(&format!("/p{path}")).unwrap();
            assert_eq!(normalized(&once).unwrap(), once);
        }
    }

    #[test]
    fn the_copy_of_a_normal_path_agrees_with_the_full_walk() {
        let paths = [
            "/",
            "/a",
            "/a/",
            "//",
            "/a//",
            "/.",
            "/..",
            "/a/.",
            "/a/..",
            "/.a",
            "/a.",
            "/...",
            "/a/./b",
            "/a%41",
            "/a/b/c/",
            "/a/b/../c",
            "/x/..y/z",
        ];
        for path in paths {
            let fast = is_normal(path.as_bytes());
            let full = normalized(path);
            // A path the copy takes must be one the walk leaves unchanged.
            if fast {
                assert_eq!(full.as_deref(), Ok(path), "{path}");
            }
        }
        assert!(is_normal(b"/a/b.html") && is_normal(b"/a/") && is_normal(b"/"));
        assert!(!is_normal(b"/a//b") && !is_normal(b"/a/./b") && !is_normal(b"/%61"));
    }

    #[test]
    fn the_buffer_is_reused() {
        let mut out = Vec::with_capacity(64);
        let pointer = out.as_ptr();
        for path in ["/a/b/c", "/%61", "/x/../y//z"] {
            normalize_path(path.as_bytes(), &mut out).unwrap();
        }
        assert_eq!(out, b"/y/z");
        assert_eq!(out.as_ptr(), pointer);
    }

    #[test]
    fn the_target_path_stops_at_the_query() {
        assert_eq!(target_path(b"/a/b?x=/../c"), Some(&b"/a/b"[..]));
        assert_eq!(target_path(b"/?"), Some(&b"/"[..]));
        assert_eq!(target_path(b"/a"), Some(&b"/a"[..]));
        assert_eq!(target_path(b"*"), None);
    }
}
