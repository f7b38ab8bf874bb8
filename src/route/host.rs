//! The host a request is routed on: its authority without the port, lower-cased, without a
//! trailing dot (`Example.COM.:8080` is `example.com`), and the suffixes wildcard routes
//! are looked up by.

/// Longer is not a DNS name (253) nor an IP literal, so no host route can match it.
pub const MAX_HOST_LEN: usize = 255;

/// The host of `authority` (validated by the parser: a reg-name or `[IPv6]`, an optional
/// port), lower-cased into `buf`. `None` when empty (HTTP/1.0 without Host) or too long:
/// only routes without a host condition can take such a request.
pub fn host_key<'b>(authority: &[u8], buf: &'b mut [u8; MAX_HOST_LEN]) -> Option<&'b [u8]> {
    let host = without_port(authority);
    let host = host.strip_suffix(b".").unwrap_or(host);
    if host.is_empty() || host.len() > MAX_HOST_LEN {
        return None;
    }
    let out = &mut buf[..host.len()];
    for (to, from) in out.iter_mut().zip(host) {
        *to = from.to_ascii_lowercase();
    }
    Some(out)
}

/// `authority` without its `:port`, as written (`[::1]:80` is `[::1]`).
pub fn without_port(authority: &[u8]) -> &[u8] {
    let end = match authority.first() {
        Some(b'[') => authority
            .iter()
            .position(|&b| b == b']')
            .map(|close| close + 1),
        _ => authority.iter().position(|&b| b == b':'),
    };
    &authority[..end.unwrap_or(authority.len())]
}

/// The suffixes of `host` a `*.SUFFIX` pattern may match, shortest first: each has one or
/// more non-empty labels before it, and at most `max_labels` labels itself
/// (`a.b.example.com` with 2: `com`, `example.com`).
pub fn wildcard_suffixes(host: &[u8], max_labels: usize) -> impl Iterator<Item = &[u8]> {
    let mut end = host.len();
    let mut labels = 0;
    std::iter::from_fn(move || {
        if labels == max_labels {
            return None;
        }
        let dot = host[..end].iter().rposition(|&b| b == b'.')?;
        // An empty label before the suffix (`.example.com`, `a..example.com`) is not one
        // a wildcard stands for.
        if dot == 0 || host[dot - 1] == b'.' {
            return None;
        }
        end = dot;
        labels += 1;
        Some(&host[dot + 1..])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(authority: &str) -> Option<String> {
        let mut buf = [0; MAX_HOST_LEN];
        host_key(authority.as_bytes(), &mut buf).map(|k| String::from_utf8(k.to_vec()).unwrap())
    }

    #[test]
    fn the_port_is_dropped_and_case_folded() {
        for (authority, expected) in [
            ("example.com", "example.com"),
            ("Example.COM", "example.com"),
            ("example.com:8080", "example.com"),
            ("EXAMPLE.com:", "example.com"),
            ("example.com.", "example.com"),
            ("example.com.:443", "example.com"),
            ("10.0.0.1:80", "10.0.0.1"),
            ("[::1]", "[::1]"),
            ("[::1]:8080", "[::1]"),
            ("[FE80::A]:1", "[fe80::a]"),
        ] {
            assert_eq!(key(authority).as_deref(), Some(expected), "{authority}");
        }
    }

    #[test]
    fn without_port_keeps_the_case() {
        assert_eq!(without_port(b"Example.com:80"), b"Example.com");
        assert_eq!(without_port(b"[::1]:80"), b"[::1]");
        assert_eq!(without_port(b"a"), b"a");
    }

    #[test]
    fn no_host_and_overlong_hosts_have_no_key() {
        assert_eq!(key(""), None);
        assert_eq!(key(":80"), None);
        assert_eq!(key(&"a".repeat(MAX_HOST_LEN + 1)), None);
        assert_eq!(key(&"a".repeat(MAX_HOST_LEN)).map(|k| k.len()), Some(255));
    }

    fn suffixes(host: &str, max: usize) -> Vec<&str> {
        wildcard_suffixes(host.as_bytes(), max)
            .map(|s| std::str::from_utf8(s).unwrap())
            .collect()
    }

    #[test]
    fn wildcard_suffixes_leave_at_least_one_label() {
        assert_eq!(
            suffixes("a.b.example.com", 10),
            ["com", "example.com", "b.example.com"]
        );
        assert_eq!(suffixes("a.b.example.com", 2), ["com", "example.com"]);
        assert_eq!(suffixes("example.com", 10), ["com"]);
        assert_eq!(suffixes("localhost", 10), Vec::<&str>::new());
        assert_eq!(suffixes("a.example.com", 0), Vec::<&str>::new());
    }

    #[test]
    fn empty_labels_stop_the_suffixes() {
        assert_eq!(suffixes(".example.com", 10), ["com"]);
        assert_eq!(suffixes("a..example.com", 10), ["com"]);
    }
}
