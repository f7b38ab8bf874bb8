//! What a route's action writes: the target a proxied request is forwarded with, and the
//! Location of a redirect. Into caller-owned buffers, so nothing allocates per request.

use super::host::without_port;
use crate::config::{PathRewrite, ProxyAction, RedirectAction, RedirectTarget};

impl PathRewrite {
    /// `path` (normalised, matched by the route) with its prefix rewritten. A path without
    /// the prefix, which a validated route never matches, is written unchanged.
    pub fn write(&self, path: &[u8], out: &mut Vec<u8>) {
        let (prefix, with) = match self {
            Self::Strip(prefix) => (prefix.as_bytes(), &b""[..]),
            Self::Replace { prefix, with } => (prefix.as_bytes(), with.as_bytes()),
        };
        let Some(rest) = path.strip_prefix(prefix) else {
            out.extend_from_slice(path);
            return;
        };
        out.extend_from_slice(with);
        if with.is_empty() && rest.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(rest);
    }
}

impl ProxyAction {
    /// Appends the target to forward: the normalised path (`Scratch::normalized_path`)
    /// rewritten as the route says, then the query of `target` as received. Without a
    /// normalised path (`*`, an implicit table), `target` as received.
    pub fn write_target(&self, normalized: Option<&[u8]>, target: &str, out: &mut Vec<u8>) {
        let Some(path) = normalized else {
            out.extend_from_slice(target.as_bytes());
            return;
        };
        match &self.path_rewrite {
            Some(rewrite) => rewrite.write(path, out),
            None => out.extend_from_slice(path),
        }
        if let Some(query) = target.find('?') {
            out.extend_from_slice(&target.as_bytes()[query..]);
        }
    }
}

impl RedirectAction {
    /// Appends the Location value for a request to `scheme://authority` + `target` (as
    /// received). The request's host is used without its port (as nginx's `$host`): a
    /// redirect that needs one names it (`host = "example.com:8443"`). `false`, with
    /// nothing written, when the URL needs the request's host and it sent none (HTTP/1.0
    /// without Host): the proxy answers 400.
    pub fn write_location(
        &self,
        scheme: &str,
        authority: &[u8],
        target: &str,
        out: &mut Vec<u8>,
    ) -> bool {
        let (new_scheme, new_host, new_path) = match &self.target {
            RedirectTarget::Location(location) => {
                out.extend_from_slice(location.as_bytes());
                return true;
            }
            RedirectTarget::Parts { scheme, host, path } => (scheme, host, path),
        };
        let host = match new_host {
            Some(host) => host.as_bytes(),
            None => without_port(authority),
        };
        if host.is_empty() {
            return false;
        }
        out.extend_from_slice(new_scheme.as_deref().unwrap_or(scheme).as_bytes());
        out.extend_from_slice(b"://");
        out.extend_from_slice(host);
        let path = match new_path {
            Some(path) => path.as_str(),
            // `OPTIONS *` has no path to keep.
            None if !target.starts_with('/') => "/",
            None => target,
        };
        out.extend_from_slice(path.as_bytes());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(rewrite: &PathRewrite, path: &str) -> String {
        let mut out = Vec::new();
        rewrite.write(path.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strip_prefix_leaves_at_least_the_root() {
        let strip = PathRewrite::Strip("/api".to_owned());
        assert_eq!(rewritten(&strip, "/api/users"), "/users");
        assert_eq!(rewritten(&strip, "/api/"), "/");
        assert_eq!(rewritten(&strip, "/api"), "/");
        assert_eq!(rewritten(&strip, "/other"), "/other");
    }

    #[test]
    fn replace_prefix_swaps_the_matched_prefix() {
        let replace = PathRewrite::Replace {
            prefix: "/api".to_owned(),
            with: "/v2".to_owned(),
        };
        assert_eq!(rewritten(&replace, "/api/users"), "/v2/users");
        assert_eq!(rewritten(&replace, "/api"), "/v2");
        let to_root = PathRewrite::Replace {
            prefix: "/api/".to_owned(),
            with: "/".to_owned(),
        };
        assert_eq!(rewritten(&to_root, "/api/users"), "/users");
    }

    fn forwarded(action: &ProxyAction, normalized: Option<&str>, target: &str) -> String {
        let mut out = Vec::new();
        action.write_target(normalized.map(str::as_bytes), target, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_forwarded_target_is_the_normalised_path_and_the_query_as_received() {
        let mut action = ProxyAction {
            upstream: "app".to_owned(),
            ..ProxyAction::default()
        };
        assert_eq!(
            forwarded(&action, Some("/admin"), "/x/../admin?a=%2e%2e&b"),
            "/admin?a=%2e%2e&b"
        );
        assert_eq!(forwarded(&action, None, "/x/../a?q"), "/x/../a?q");
        assert_eq!(forwarded(&action, None, "*"), "*");
        action.path_rewrite = Some(PathRewrite::Strip("/api".to_owned()));
        assert_eq!(
            forwarded(&action, Some("/api/v1"), "/api//v1?x=1"),
            "/v1?x=1"
        );
        assert_eq!(forwarded(&action, Some("/api"), "/api?"), "/?");
    }

    fn location(target: RedirectTarget, authority: &str, request_target: &str) -> Option<String> {
        let redirect = RedirectAction {
            status: 308,
            target,
        };
        let mut out = Vec::new();
        let written =
            redirect.write_location("http", authority.as_bytes(), request_target, &mut out);
        written.then(|| String::from_utf8(out).unwrap())
    }

    fn parts(scheme: Option<&str>, host: Option<&str>, path: Option<&str>) -> RedirectTarget {
        RedirectTarget::Parts {
            scheme: scheme.map(str::to_owned),
            host: host.map(str::to_owned),
            path: path.map(str::to_owned),
        }
    }

    #[test]
    fn redirects_keep_what_they_do_not_replace() {
        assert_eq!(
            location(
                parts(Some("https"), None, None),
                "Example.com:8080",
                "/a?b=c"
            )
            .as_deref(),
            Some("https://Example.com/a?b=c")
        );
        assert_eq!(
            location(
                parts(None, Some("www.example.com"), None),
                "example.com",
                "/a"
            )
            .as_deref(),
            Some("http://www.example.com/a")
        );
        assert_eq!(
            location(
                parts(Some("https"), Some("example.com:8443"), Some("/new")),
                "x",
                "/old?q"
            )
            .as_deref(),
            Some("https://example.com:8443/new")
        );
        assert_eq!(
            location(parts(Some("https"), None, None), "[::1]:80", "*").as_deref(),
            Some("https://[::1]/")
        );
    }

    #[test]
    fn a_fixed_location_is_sent_as_written() {
        let fixed = RedirectTarget::Location("https://example.com/moved".to_owned());
        assert_eq!(
            location(fixed.clone(), "a", "/x").as_deref(),
            Some("https://example.com/moved")
        );
        assert_eq!(
            location(fixed, "", "/x").as_deref(),
            Some("https://example.com/moved")
        );
    }

    #[test]
    fn a_redirect_needing_the_missing_host_is_not_written() {
        assert_eq!(location(parts(Some("https"), None, None), "", "/a"), None);
        assert_eq!(
            location(parts(None, Some("b.com"), None), "", "/a").as_deref(),
            Some("http://b.com/a")
        );
    }
}
