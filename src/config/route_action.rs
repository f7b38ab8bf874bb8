//! What a route does: `upstream = "NAME"` (with path and header rewriting), `redirect =
//! { ... }` or `respond = { ... }`; exactly one of them.

use std::net::Ipv6Addr;

use toml::de::DeValue;

use super::reader::{Reader, Table, Value, integer_in, string, wrong_type};
use super::routes::{
    ACTION_KEYS, PROXY_KEYS, check_host_name, check_path_syntax, field_name, field_value,
};
use super::upstream::group_named;
use super::{
    HeaderEdits, PathPattern, PathRewrite, ProxyAction, RedirectAction, RedirectTarget,
    RespondAction, RouteAction, RouteMatch, UpstreamConfig,
};
use crate::route::normalize::normalize_path;

const REDIRECT_KEYS: &[&str] = &["status", "location", "scheme", "host", "path"];
/// The parts of the request's URL a redirect may replace.
const REDIRECT_PARTS: &[&str] = &["scheme", "host", "path"];
const RESPOND_KEYS: &[&str] = &["status", "headers", "body"];
const REDIRECT_STATUSES: &[u16] = &[301, 302, 307, 308];
const RESPOND_STATUSES: std::ops::RangeInclusive<u16> = 200..=599;
/// A fixed response lives in every worker's copy of the table and goes out in one write
/// with its head: an answer to a probe or a short page, not content to serve.
pub const MAX_RESPOND_BODY: usize = 8192;
const MAX_LOCATION_LEN: usize = 2048;
const DEFAULT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";
/// Fields the proxy writes itself from the message's framing and connection handling: a
/// route setting or removing them would break both.
const MANAGED_FIELDS: &[&str] = &[
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub(super) fn read_action(
    r: &mut Reader<'_>,
    t: &Table<'_, '_>,
    upstreams: &[UpstreamConfig],
    conditions: &RouteMatch,
) -> Option<RouteAction> {
    let set: Vec<&str> = ACTION_KEYS
        .iter()
        .copied()
        .filter(|&key| t.get(key).is_some())
        .collect();
    let action = match set.as_slice() {
        [] => {
            let message = "a route needs an action: upstream = \"NAME\", redirect = { ... } \
                           or respond = { ... }";
            r.error(t.span(), t.path().to_owned(), message);
            return None;
        }
        [one] => *one,
        [first, second, ..] => {
            let message = format!(
                "conflicting actions: {first} and {second} (a route does one thing: \
                 proxy to an upstream, redirect, or respond)"
            );
            r.error_at_set_key(t, &[second], message);
            return None;
        }
    };
    if action != "upstream" {
        for &key in PROXY_KEYS {
            let message = format!("{key} only applies to a route with upstream = \"NAME\"");
            r.error_at_set_key(t, &[key], message);
        }
    }
    let value = t.get(action)?;
    let path = t.key_path(action);
    match action {
        "upstream" => read_proxy(r, t, upstreams, conditions).map(RouteAction::Proxy),
        "redirect" => read_redirect(r, value, path).map(RouteAction::Redirect),
        _ => read_respond(r, value, path).map(RouteAction::Respond),
    }
}

fn read_proxy(
    r: &mut Reader<'_>,
    t: &Table<'_, '_>,
    upstreams: &[UpstreamConfig],
    conditions: &RouteMatch,
) -> Option<ProxyAction> {
    let upstream = t
        .get("upstream")
        .and_then(|value| group_named(r, value, t.key_path("upstream"), upstreams));
    let strip = r.field(t, "strip_prefix", |v| strip_prefix(v, &conditions.path));
    let replace = r.field(t, "replace_prefix", |v| replace_prefix(v, &conditions.path));
    if strip.is_some() && replace.is_some() {
        let message = "set strip_prefix or replace_prefix, not both";
        r.error_at_set_key(t, &["replace_prefix"], message);
    }
    let request_headers = read_header_edits(
        r,
        t,
        ["set_request_headers", "remove_request_headers"],
        true,
    );
    let response_headers = read_header_edits(
        r,
        t,
        ["set_response_headers", "remove_response_headers"],
        false,
    );
    Some(ProxyAction {
        upstream: upstream?,
        path_rewrite: strip.or(replace),
        request_headers,
        response_headers,
    })
}

/// `strip_prefix = "/api"`: whole segments, which every path the route matches starts with.
fn strip_prefix(
    value: &DeValue<'_>,
    route_path: &Option<PathPattern>,
) -> Result<PathRewrite, String> {
    let prefix = normal_path(value)?;
    if prefix.ends_with('/') {
        return Err(format!(
            "write strip_prefix without the trailing \"/\" (the forwarded path keeps its \
             leading \"/\"): {:?}",
            prefix.trim_end_matches('/')
        ));
    }
    let route_text = match route_path {
        Some(PathPattern::Exact(text) | PathPattern::Prefix(text)) => text,
        None => {
            return Err(
                "strip_prefix needs the route to match paths under it (set path_prefix)".to_owned(),
            );
        }
    };
    if !PathPattern::Prefix(prefix.clone()).matches(route_text.as_bytes()) {
        return Err(format!(
            "strip_prefix {prefix:?} is not a prefix of every path this route matches \
             ({route_text:?})"
        ));
    }
    Ok(PathRewrite::Strip(prefix))
}

/// `replace_prefix = "/v2"`: replaces the route's `path_prefix`.
fn replace_prefix(
    value: &DeValue<'_>,
    route_path: &Option<PathPattern>,
) -> Result<PathRewrite, String> {
    let with = normal_path(value)?;
    let Some(PathPattern::Prefix(prefix)) = route_path else {
        return Err("replace_prefix replaces the route's path_prefix: set path_prefix".to_owned());
    };
    if prefix.ends_with('/') != with.ends_with('/') {
        return Err(format!(
            "replace_prefix must end with \"/\" exactly when path_prefix ({prefix:?}) does, \
             or the paths forwarded would lose or gain a \"/\" (\"/api/\" to \"/v2/\", \
             \"/api\" to \"/v2\"; to remove the prefix, use strip_prefix)"
        ));
    }
    Ok(PathRewrite::Replace {
        prefix: prefix.clone(),
        with,
    })
}

/// A path written in normal form: what a rewrite produces is then normal too.
fn normal_path(value: &DeValue<'_>) -> Result<String, String> {
    let text = string(value)?;
    check_path_syntax(text)?;
    let mut normal = Vec::with_capacity(text.len());
    let normalized = normalize_path(text.as_bytes(), &mut normal);
    if normalized.is_err() || normal != text.as_bytes() || text.contains('?') {
        return Err(format!(
            "{text:?} is not a path in normal form (no query, no dot or empty segments, \
             unreserved characters not percent-encoded)"
        ));
    }
    Ok(text.to_owned())
}

/// `set_*_headers = { "Name" = "value" }`, `remove_*_headers = ["Name"]`.
fn read_header_edits(
    r: &mut Reader<'_>,
    t: &Table<'_, '_>,
    [set_key, remove_key]: [&str; 2],
    request: bool,
) -> HeaderEdits {
    let mut edits = HeaderEdits {
        set: read_header_table(r, t, set_key, request),
        remove: Vec::new(),
    };
    let Some(value) = t.get(remove_key) else {
        return edits;
    };
    let path = t.key_path(remove_key);
    let DeValue::Array(items) = value.get_ref() else {
        let message = wrong_type("an array of header names", value.get_ref());
        r.error(value.span(), path, message);
        return edits;
    };
    for (index, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{index}]");
        let Some(name) = r.convert(item, item_path.clone(), field_name) else {
            continue;
        };
        let lower = name.to_ascii_lowercase();
        let problem = managed_field(&name, request, true).err().or_else(|| {
            if edits.remove.contains(&lower) {
                Some("listed twice".to_owned())
            } else if edits
                .set
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(&lower))
            {
                Some(format!(
                    "{name:?} is also in {set_key}, which replaces it already"
                ))
            } else {
                None
            }
        });
        match problem {
            Some(message) => r.error(item.span(), item_path, message),
            None => edits.remove.push(lower),
        }
    }
    edits
}

/// Fields a route may not touch: the proxy's framing and connection fields, and removing
/// Host from a request (HTTP/1.1 requires it).
fn managed_field(name: &str, request: bool, removing: bool) -> Result<(), String> {
    super::upstream::token(name, "header")?;
    let lower = name.to_ascii_lowercase();
    if MANAGED_FIELDS.contains(&lower.as_str()) {
        return Err(format!(
            "{name} is written by the proxy from the message's framing and connection, \
             so a route cannot change it"
        ));
    }
    if request && removing && lower == "host" {
        return Err("a request needs its Host: set it instead of removing it".to_owned());
    }
    Ok(())
}

fn read_redirect(r: &mut Reader<'_>, value: &Value<'_>, path: String) -> Option<RedirectAction> {
    let t = r.as_table(value, path)?;
    r.deny_unknown_keys(&t, REDIRECT_KEYS);
    let status = r.required(&t, "status", redirect_status);
    let location = r.field(&t, "location", location);
    let scheme = r.field(&t, "scheme", scheme);
    let host = r.field(&t, "host", redirect_host);
    let new_path = r.field(&t, "path", redirect_path);
    let parts_set = REDIRECT_PARTS.iter().any(|&key| t.get(key).is_some());
    if t.get("location").is_some() && parts_set {
        let message = "location is the whole target: it cannot be combined with scheme, host \
                       or path";
        r.error_at_set_key(&t, REDIRECT_PARTS, message);
        return None;
    }
    if t.get("location").is_none() && !parts_set {
        let message = "a redirect needs a target: location = \"URL\", or one or more of \
                       scheme, host and path to replace in the request's URL";
        r.error(t.span(), t.path().to_owned(), message);
        return None;
    }
    let target = match location {
        Some(location) => RedirectTarget::Location(location),
        None => RedirectTarget::Parts {
            scheme,
            host,
            path: new_path,
        },
    };
    Some(RedirectAction {
        status: status?,
        target,
    })
}

fn redirect_status(value: &DeValue<'_>) -> Result<u16, String> {
    let status = integer_in(100..=999)(value)?;
    if !REDIRECT_STATUSES.contains(&status) {
        return Err(format!(
            "a redirect's status is 301, 302, 307 or 308, not {status} (307 and 308 keep the \
             method and body; 301 and 308 are permanent, and browsers cache them)"
        ));
    }
    Ok(status)
}

/// An absolute `http(s)://` URL, or a path on the same host.
fn location(value: &DeValue<'_>) -> Result<String, String> {
    let text = string(value)?;
    if text.len() > MAX_LOCATION_LEN || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "location must be visible ASCII without spaces (percent-encode the rest), at \
             most {MAX_LOCATION_LEN} bytes"
        ));
    }
    let after_scheme = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    let valid = match after_scheme {
        Some(rest) => !rest.is_empty() && !rest.starts_with('/'),
        None => text.starts_with('/') && !text.starts_with("//"),
    };
    if !valid {
        return Err(format!(
            "invalid location {text:?} (an http:// or https:// URL with a host, or a path \
             starting with a single \"/\")"
        ));
    }
    Ok(text.to_owned())
}

fn scheme(value: &DeValue<'_>) -> Result<String, String> {
    match string(value)? {
        scheme @ ("http" | "https") => Ok(scheme.to_owned()),
        other => Err(format!(
            "unknown scheme {other:?} (supported: \"http\", \"https\")"
        )),
    }
}

/// `host` or `host:port`, lower-cased.
fn redirect_host(value: &DeValue<'_>) -> Result<String, String> {
    let text = string(value)?;
    let lower = text.to_ascii_lowercase();
    let (host, port) = match lower.strip_prefix('[') {
        Some(rest) => {
            let Some((inner, after)) = rest.split_once(']') else {
                return Err(format!("invalid IPv6 literal in {text:?}"));
            };
            if inner.parse::<Ipv6Addr>().is_err() {
                return Err(format!("invalid IPv6 literal in {text:?}"));
            }
            let port = match after {
                "" => None,
                // Not `:port`: reported as an invalid port.
                _ => Some(after.strip_prefix(':').unwrap_or_default()),
            };
            (None, port)
        }
        None => match lower.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(lower.as_str()), None),
        },
    };
    if let Some(host) = host {
        check_host_name(host, text)?;
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|p| p > 0);
        if !valid {
            return Err(format!("invalid port in {text:?} (1..=65535)"));
        }
    }
    Ok(lower)
}

/// Replaces the request's path and query: a path, optionally with a query.
fn redirect_path(value: &DeValue<'_>) -> Result<String, String> {
    let text = string(value)?;
    check_path_syntax(text)?;
    if text.starts_with("//") {
        return Err(format!(
            "path {text:?} starts with \"//\", which a browser reads as a host"
        ));
    }
    Ok(text.to_owned())
}

fn read_respond(r: &mut Reader<'_>, value: &Value<'_>, path: String) -> Option<RespondAction> {
    let t = r.as_table(value, path)?;
    r.deny_unknown_keys(&t, RESPOND_KEYS);
    let status = r.required(&t, "status", integer_in(RESPOND_STATUSES));
    let body = r.field(&t, "body", respond_body).unwrap_or_default();
    let mut headers = read_header_table(r, &t, "headers", false);
    if let Some(status @ (204 | 304)) = status
        && !body.is_empty()
    {
        let message = format!("a {status} response has no body: remove body or change status");
        r.error_at_set_key(&t, &["body"], message);
    }
    let has_content_type = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
    if !body.is_empty() && !has_content_type {
        headers.push(("Content-Type".to_owned(), DEFAULT_CONTENT_TYPE.to_owned()));
    }
    Some(RespondAction {
        status: status?,
        headers,
        body,
    })
}

fn respond_body(value: &DeValue<'_>) -> Result<String, String> {
    let body = string(value)?;
    if body.len() > MAX_RESPOND_BODY {
        return Err(format!(
            "body is {} bytes, more than the {MAX_RESPOND_BODY} a fixed response may hold \
             (serve larger content from a backend)",
            body.len()
        ));
    }
    Ok(body.to_owned())
}

/// `key = { "Name" = "value", ... }`: each name once, none the proxy manages.
fn read_header_table(
    r: &mut Reader<'_>,
    t: &Table<'_, '_>,
    key: &str,
    request: bool,
) -> Vec<(String, String)> {
    let Some(value) = t.get(key) else {
        return Vec::new();
    };
    let Some(table) = r.as_table(value, t.key_path(key)) else {
        return Vec::new();
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for (name, value) in table.entries() {
        let name = name.get_ref();
        let path = table.key_path(name);
        let duplicate = headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        let checked = managed_field(name, request, false).and_then(|()| match duplicate {
            true => Err("set twice (header names are case-insensitive)".to_owned()),
            false => Ok(()),
        });
        if let Err(message) = checked {
            r.error(value.span(), path, message);
            continue;
        }
        if let Some(value) = r.convert(value, path, field_value) {
            headers.push((name.to_string(), value));
        }
    }
    headers
}
