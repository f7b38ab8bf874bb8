//! What each route condition means, stated plainly, and when one route's conditions take
//! every request another's take.
//!
//! The compiled table (`table.rs`) answers the same questions faster; its tests check it
//! against these definitions. `--check` uses [`covers`] to report routes that can never
//! match: it says "covers" only when it is certain, so a route it passes may still be
//! unreachable through a combination of earlier routes, but a route it reports always is.

use crate::config::{HeaderCondition, HostPattern, PathPattern, RouteMatch};

impl HostPattern {
    /// Whether a request whose host key (see `host::host_key`) is `host` matches.
    pub fn matches(&self, host: &[u8]) -> bool {
        match self {
            Self::Exact(name) => name.as_bytes() == host,
            Self::Wildcard(suffix) => {
                let suffix = suffix.as_bytes();
                let Some(before) = host
                    .strip_suffix(suffix)
                    .and_then(|rest| rest.strip_suffix(b"."))
                else {
                    return false;
                };
                !before.is_empty() && !before.ends_with(b".")
            }
        }
    }

    /// Whether every host `other` matches, this one matches too.
    fn covers(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Exact(a), Self::Exact(b)) => a == b,
            (Self::Exact(_), Self::Wildcard(_)) => false,
            (Self::Wildcard(_), Self::Exact(name)) => self.matches(name.as_bytes()),
            // `*.example.com` covers `*.example.com` and `*.a.example.com`.
            (Self::Wildcard(a), Self::Wildcard(b)) => {
                a == b || b.strip_suffix(a.as_str()).is_some_and(|r| r.ends_with('.'))
            }
        }
    }
}

impl PathPattern {
    /// Whether a request whose normalised path is `path` matches.
    pub fn matches(&self, path: &[u8]) -> bool {
        match self {
            Self::Exact(exact) => exact.as_bytes() == path,
            Self::Prefix(prefix) => prefix_matches(prefix.as_bytes(), path),
        }
    }

    /// Whether every path `other` matches, this one matches too.
    fn covers(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Exact(a), Self::Exact(b)) => a == b,
            (Self::Exact(_), Self::Prefix(_)) => false,
            // A prefix matching the other's prefix matches everything under it as well:
            // `/api` covers `/api/v1` and `/api/`, `/api/` covers `/api/v1`.
            (Self::Prefix(_), Self::Exact(path) | Self::Prefix(path)) => {
                self.matches(path.as_bytes())
            }
        }
    }
}

/// `/api` matches `/api` and `/api/...`; `/api/` matches `/api/...`.
fn prefix_matches(prefix: &[u8], path: &[u8]) -> bool {
    let Some(rest) = path.strip_prefix(prefix) else {
        return false;
    };
    prefix.ends_with(b"/") || rest.is_empty() || rest.starts_with(b"/")
}

impl HeaderCondition {
    /// Whether `headers` (as parsed; values without surrounding whitespace) satisfy this.
    pub fn matches(&self, headers: &[httparse::Header<'_>]) -> bool {
        headers.iter().any(|header| {
            header.name.eq_ignore_ascii_case(&self.name)
                && self
                    .value
                    .as_ref()
                    .is_none_or(|value| value.as_bytes() == header.value)
        })
    }

    fn covers(&self, other: &Self) -> bool {
        self.name == other.name && (self.value.is_none() || self.value == other.value)
    }
}

/// Whether every request `later` matches is matched by `earlier` too: with `earlier` first
/// in the table, `later` can never match.
pub fn covers(earlier: &RouteMatch, later: &RouteMatch) -> bool {
    // An empty list or an unset condition holds for every request, and is covered only by
    // another that holds for every request: `path_prefix = "/"` does not cover an unset
    // path, because `OPTIONS *` has no path.
    let hosts = earlier.hosts.is_empty()
        || (!later.hosts.is_empty()
            && later
                .hosts
                .iter()
                .all(|b| earlier.hosts.iter().any(|a| a.covers(b))));
    let methods = earlier.methods.is_empty()
        || (!later.methods.is_empty() && later.methods.iter().all(|m| earlier.methods.contains(m)));
    hosts
        && methods
        && optional_covers(&earlier.path, &later.path, PathPattern::covers)
        && optional_covers(&earlier.header, &later.header, HeaderCondition::covers)
}

fn optional_covers<T>(earlier: &Option<T>, later: &Option<T>, covers: fn(&T, &T) -> bool) -> bool {
    match (earlier, later) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => covers(a, b),
    }
}

/// The whole match of a request, condition by condition: the definition the compiled table
/// must agree with. `host` is the host key, `path` the normalised path (`None`: `*`).
pub fn route_matches(
    conditions: &RouteMatch,
    method: &str,
    host: Option<&[u8]>,
    path: Option<&[u8]>,
    headers: &[httparse::Header<'_>],
) -> bool {
    let host_ok = conditions.hosts.is_empty()
        || host.is_some_and(|host| conditions.hosts.iter().any(|p| p.matches(host)));
    let path_ok = match &conditions.path {
        None => true,
        Some(pattern) => path.is_some_and(|path| pattern.matches(path)),
    };
    let method_ok = conditions.methods.is_empty() || conditions.methods.iter().any(|m| m == method);
    let header_ok = conditions
        .header
        .as_ref()
        .is_none_or(|h| h.matches(headers));
    host_ok && path_ok && method_ok && header_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(host: &str) -> HostPattern {
        HostPattern::Exact(host.to_owned())
    }

    fn wildcard(suffix: &str) -> HostPattern {
        HostPattern::Wildcard(suffix.to_owned())
    }

    fn prefix(path: &str) -> PathPattern {
        PathPattern::Prefix(path.to_owned())
    }

    fn path(path: &str) -> PathPattern {
        PathPattern::Exact(path.to_owned())
    }

    #[test]
    fn wildcards_match_one_label_or_more_but_not_the_bare_suffix() {
        let pattern = wildcard("example.com");
        for host in ["a.example.com", "a.b.example.com", "x-y.example.com"] {
            assert!(pattern.matches(host.as_bytes()), "{host}");
        }
        for host in [
            "example.com",
            "aexample.com",
            ".example.com",
            "a..example.com",
            "example.com.evil",
            "a.example.org",
        ] {
            assert!(!pattern.matches(host.as_bytes()), "{host}");
        }
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let api = prefix("/api");
        for p in ["/api", "/api/", "/api/v1", "/api/v1/x"] {
            assert!(api.matches(p.as_bytes()), "{p}");
        }
        for p in ["/apix", "/ap", "/", "/x/api", "/api%2Fx"] {
            assert!(!api.matches(p.as_bytes()), "{p}");
        }
        let api_slash = prefix("/api/");
        assert!(api_slash.matches(b"/api/"));
        assert!(api_slash.matches(b"/api/v1"));
        assert!(!api_slash.matches(b"/api"));
        let root = prefix("/");
        assert!(root.matches(b"/") && root.matches(b"/a/b"));
        assert!(path("/a").matches(b"/a") && !path("/a").matches(b"/a/"));
    }

    #[test]
    fn header_names_fold_case_and_values_do_not() {
        let headers = [
            httparse::Header {
                name: "X-Canary",
                value: b"1",
            },
            httparse::Header {
                name: "x-canary",
                value: b"two",
            },
        ];
        let condition = |name: &str, value: Option<&str>| HeaderCondition {
            name: name.to_owned(),
            value: value.map(str::to_owned),
        };
        assert!(condition("x-canary", None).matches(&headers));
        assert!(condition("x-canary", Some("1")).matches(&headers));
        assert!(condition("x-canary", Some("two")).matches(&headers));
        assert!(!condition("x-canary", Some("TWO")).matches(&headers));
        assert!(!condition("x-other", None).matches(&headers));
    }

    fn conditions(
        hosts: &[HostPattern],
        path: Option<PathPattern>,
        methods: &[&str],
    ) -> RouteMatch {
        RouteMatch {
            hosts: hosts.to_vec(),
            path,
            methods: methods.iter().map(|m| (*m).to_owned()).collect(),
            header: None,
        }
    }

    #[test]
    fn host_coverage() {
        let cases = [
            (vec![], vec![exact("a.com")], true),
            (vec![], vec![], true),
            (vec![exact("a.com")], vec![], false),
            (vec![exact("a.com")], vec![exact("a.com")], true),
            (vec![exact("a.com")], vec![exact("b.com")], false),
            (
                vec![exact("a.com"), exact("b.com")],
                vec![exact("b.com")],
                true,
            ),
            (
                vec![exact("a.com")],
                vec![exact("a.com"), exact("b.com")],
                false,
            ),
            (vec![wildcard("a.com")], vec![exact("x.a.com")], true),
            (vec![wildcard("a.com")], vec![exact("a.com")], false),
            (vec![wildcard("a.com")], vec![wildcard("a.com")], true),
            (vec![wildcard("a.com")], vec![wildcard("b.a.com")], true),
            (vec![wildcard("a.com")], vec![wildcard("ba.com")], false),
            (vec![wildcard("b.a.com")], vec![wildcard("a.com")], false),
            (vec![exact("x.a.com")], vec![wildcard("a.com")], false),
        ];
        for (earlier, later, expected) in cases {
            let a = conditions(&earlier, None, &[]);
            let b = conditions(&later, None, &[]);
            assert_eq!(covers(&a, &b), expected, "{earlier:?} over {later:?}");
        }
    }

    #[test]
    fn path_coverage() {
        let cases = [
            (None, Some(path("/a")), true),
            (Some(prefix("/")), None, false),
            (Some(prefix("/")), Some(prefix("/a")), true),
            (Some(prefix("/")), Some(path("/")), true),
            (Some(prefix("/api")), Some(prefix("/api")), true),
            (Some(prefix("/api")), Some(prefix("/api/")), true),
            (Some(prefix("/api")), Some(prefix("/api/v1")), true),
            (Some(prefix("/api")), Some(path("/api")), true),
            (Some(prefix("/api")), Some(prefix("/apix")), false),
            (Some(prefix("/api/")), Some(prefix("/api")), false),
            (Some(prefix("/api/")), Some(path("/api")), false),
            (Some(prefix("/api/")), Some(path("/api/")), true),
            (Some(prefix("/api/v1")), Some(prefix("/api")), false),
            (Some(path("/api")), Some(path("/api")), true),
            (Some(path("/api")), Some(prefix("/api")), false),
            (Some(path("/api")), Some(path("/api/")), false),
        ];
        for (earlier, later, expected) in cases {
            let a = conditions(&[], earlier.clone(), &[]);
            let b = conditions(&[], later.clone(), &[]);
            assert_eq!(covers(&a, &b), expected, "{earlier:?} over {later:?}");
        }
    }

    #[test]
    fn method_coverage() {
        let cases: [(&[&str], &[&str], bool); 6] = [
            (&[], &["GET"], true),
            (&["GET"], &[], false),
            (&["GET", "HEAD"], &["HEAD"], true),
            (&["GET", "HEAD"], &["HEAD", "GET"], true),
            (&["GET"], &["GET", "HEAD"], false),
            (&["GET"], &["POST"], false),
        ];
        for (earlier, later, expected) in cases {
            let a = conditions(&[], None, earlier);
            let b = conditions(&[], None, later);
            assert_eq!(covers(&a, &b), expected, "{earlier:?} over {later:?}");
        }
    }

    #[test]
    fn header_coverage() {
        let with_header = |name: &str, value: Option<&str>| RouteMatch {
            header: Some(HeaderCondition {
                name: name.to_owned(),
                value: value.map(str::to_owned),
            }),
            ..RouteMatch::default()
        };
        let none = RouteMatch::default();
        assert!(covers(&none, &with_header("x", Some("1"))));
        assert!(!covers(&with_header("x", None), &none));
        assert!(covers(
            &with_header("x", None),
            &with_header("x", Some("1"))
        ));
        assert!(!covers(
            &with_header("x", Some("1")),
            &with_header("x", None)
        ));
        assert!(covers(
            &with_header("x", Some("1")),
            &with_header("x", Some("1"))
        ));
        assert!(!covers(
            &with_header("x", Some("1")),
            &with_header("x", Some("2"))
        ));
        assert!(!covers(&with_header("x", None), &with_header("y", None)));
    }

    #[test]
    fn every_condition_must_be_covered() {
        let earlier = conditions(&[exact("a.com")], Some(prefix("/api")), &["GET"]);
        assert!(covers(
            &earlier,
            &conditions(&[exact("a.com")], Some(path("/api/x")), &["GET"])
        ));
        assert!(!covers(
            &earlier,
            &conditions(&[exact("a.com")], Some(path("/api/x")), &["POST"])
        ));
        assert!(!covers(
            &earlier,
            &conditions(&[exact("b.com")], Some(path("/api/x")), &["GET"])
        ));
        assert!(!covers(
            &earlier,
            &conditions(&[exact("a.com")], Some(path("/x")), &["GET"])
        ));
    }
}
