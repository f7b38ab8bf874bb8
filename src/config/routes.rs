//! `[routes.NAME]` route tables: each an ordered `[[routes.NAME.route]]` list of conditions
//! and an action (read in `route_action.rs`). Besides each key's own checks, a table is
//! checked as a whole: a route that can never match, because an earlier route takes every
//! request it would, is an error (see `crate::route::conditions::covers`), and so is a table
//! no listener uses.

use std::net::Ipv6Addr;
use std::ops::Range;

use toml::de::DeValue;

use super::reader::{Reader, Table, Value, string, wrong_type};
use super::route_action::read_action;
use super::upstream::{check_name, token};
use super::{
    HeaderCondition, HostPattern, PathPattern, RouteConfig, RouteMatch, RouteTableConfig,
    UpstreamConfig,
};
use crate::route::conditions::covers;
use crate::route::normalize::normalize_path;

const TABLE_KEYS: &[&str] = &["route"];
const MATCH_KEYS: &[&str] = &["host", "path", "path_prefix", "methods", "header"];
pub(super) const ACTION_KEYS: &[&str] = &["upstream", "redirect", "respond"];
pub(super) const PROXY_KEYS: &[&str] = &[
    "strip_prefix",
    "replace_prefix",
    "set_request_headers",
    "remove_request_headers",
    "set_response_headers",
    "remove_response_headers",
];
/// Per-route features to come, each a sub-table of the route: named now so that a
/// configuration written for a later version says what it needs instead of "unknown key".
const PLANNED_KEYS: &[&str] = &["cache", "limits", "auth", "filter"];
const HEADER_CONDITION_KEYS: &[&str] = &["name", "value"];

/// A path in a route is sent in no request line, but matched against every request: long
/// enough for any real route.
pub(super) const MAX_PATH_LEN: usize = 1024;
const MAX_HOST_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;
pub(super) const MAX_FIELD_VALUE_LEN: usize = 4096;

/// A table read, with where it is written (for errors about the table as a whole).
pub(crate) struct ReadTable {
    pub(crate) config: RouteTableConfig,
    span: Range<usize>,
}

/// Every `[routes.NAME]` table, in name order; a table with errors is still returned, so a
/// listener naming it gets no second, misleading "unknown table" error.
pub(crate) fn read_route_tables(
    r: &mut Reader<'_>,
    root: &Table<'_, '_>,
    upstreams: &[UpstreamConfig],
) -> Vec<ReadTable> {
    let Some(value) = root.get("routes") else {
        return Vec::new();
    };
    let Some(tables) = r.as_table(value, "routes".to_owned()) else {
        return Vec::new();
    };
    let mut read = Vec::new();
    for (name, value) in tables.entries() {
        let name_text = name.get_ref().to_string();
        let path = tables.key_path(&name_text);
        if let Err(message) = check_name(&name_text, "route table") {
            r.error(name.span(), path.clone(), message);
        }
        let routes = match r.as_table(value, path) {
            Some(table) => read_table(r, &table, upstreams),
            None => Vec::new(),
        };
        read.push(ReadTable {
            config: RouteTableConfig {
                name: name_text,
                routes,
            },
            span: name.span(),
        });
    }
    read
}

fn read_table(
    r: &mut Reader<'_>,
    t: &Table<'_, '_>,
    upstreams: &[UpstreamConfig],
) -> Vec<RouteConfig> {
    r.deny_unknown_keys(t, TABLE_KEYS);
    let path = t.key_path("route");
    let Some(value) = t.get("route") else {
        let message = format!("a route table needs at least one route (add a [[{path}]] section)");
        r.error(t.span(), path, message);
        return Vec::new();
    };
    let DeValue::Array(items) = value.get_ref() else {
        let message = wrong_type(
            &format!("an array of tables (write [[{path}]])"),
            value.get_ref(),
        );
        r.error(value.span(), path, message);
        return Vec::new();
    };
    if items.is_empty() {
        r.error(
            value.span(),
            path.clone(),
            "a route table needs at least one route",
        );
    }
    // Each route read without error, with its key path and line: only those are compared.
    let mut valid: Vec<(RouteConfig, String, usize)> = Vec::new();
    let mut routes = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{index}]");
        let Some(route_table) = r.as_table(item, item_path.clone()) else {
            continue;
        };
        let errors_before = r.error_count();
        let Some(route) = read_route(r, &route_table, upstreams) else {
            continue;
        };
        if r.error_count() == errors_before {
            report_unreachable(r, &valid, &route, item, &item_path);
            let line = r.line_of(item.span().start);
            valid.push((route.clone(), item_path, line));
        }
        routes.push(route);
    }
    routes
}

/// An error at `route` when an earlier route takes every request it would.
fn report_unreachable(
    r: &mut Reader<'_>,
    earlier: &[(RouteConfig, String, usize)],
    route: &RouteConfig,
    item: &Value<'_>,
    item_path: &str,
) {
    let later = &route.conditions;
    let Some((first, first_path, line)) =
        earlier.iter().find(|(e, ..)| covers(&e.conditions, later))
    else {
        return;
    };
    let message = if covers(later, &first.conditions) {
        format!(
            "duplicate route: {first_path} (line {line}) has the same conditions and comes \
             first, so this one never matches"
        )
    } else {
        format!(
            "this route never matches: {first_path} (line {line}) comes first and takes \
             every request it would (move it after this one, or narrow it)"
        )
    };
    r.error(item.span(), item_path.to_owned(), message);
}

fn read_route(
    r: &mut Reader<'_>,
    t: &Table<'_, '_>,
    upstreams: &[UpstreamConfig],
) -> Option<RouteConfig> {
    for &key in PLANNED_KEYS {
        let message = format!(
            "per-route {key:?} is not supported yet (planned: a [{}.{key}] sub-table)",
            t.path()
        );
        r.error_at_set_key(t, &[key], message);
    }
    let known: Vec<&str> = [MATCH_KEYS, ACTION_KEYS, PROXY_KEYS, PLANNED_KEYS].concat();
    r.deny_unknown_keys(t, &known);
    let conditions = read_conditions(r, t);
    let action = read_action(r, t, upstreams, &conditions)?;
    Some(RouteConfig { conditions, action })
}

fn read_conditions(r: &mut Reader<'_>, t: &Table<'_, '_>) -> RouteMatch {
    let hosts = read_list(r, t, "host", host_pattern);
    let methods = read_list(r, t, "methods", method);
    let path = r.field(t, "path", |v| path_pattern(v).map(PathPattern::Exact));
    let prefix = r.field(t, "path_prefix", |v| {
        path_pattern(v).map(PathPattern::Prefix)
    });
    if path.is_some() && prefix.is_some() {
        let message = "set path (one path) or path_prefix (a path and everything under it), \
                       not both";
        r.error_at_set_key(t, &["path_prefix"], message);
    }
    let header = t
        .get("header")
        .and_then(|value| read_header_condition(r, value, t.key_path("header")));
    RouteMatch {
        hosts,
        path: path.or(prefix),
        methods,
        header,
    }
}

/// `key = "one"` or `key = ["one", "two"]`, each item converted and each listed once;
/// empty when absent (the condition holds for every request).
fn read_list<T: PartialEq>(
    r: &mut Reader<'_>,
    t: &Table<'_, '_>,
    key: &str,
    convert: fn(&DeValue<'_>) -> Result<T, String>,
) -> Vec<T> {
    let Some(value) = t.get(key) else {
        return Vec::new();
    };
    let path = t.key_path(key);
    let DeValue::Array(items) = value.get_ref() else {
        return r.convert(value, path, convert).into_iter().collect();
    };
    r.record_line(&path, &value.span());
    if items.is_empty() {
        let message = format!("{key} = [] matches nothing: omit {key} to match any");
        r.error(value.span(), path, message);
        return Vec::new();
    }
    let mut list: Vec<T> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{index}]");
        let Some(converted) = r.convert(item, item_path.clone(), convert) else {
            continue;
        };
        if list.contains(&converted) {
            r.error(item.span(), item_path, "listed twice");
            continue;
        }
        list.push(converted);
    }
    list
}

/// `example.com`, `*.example.com`, `10.0.0.1` or `[::1]`; case-insensitive; no port.
fn host_pattern(value: &DeValue<'_>) -> Result<HostPattern, String> {
    let text = string(value)?;
    let host = text.to_ascii_lowercase();
    if host == "*" {
        return Err("\"*\" is any host: omit host to match any host".to_owned());
    }
    if let Some(suffix) = host.strip_prefix("*.") {
        check_host_name(suffix, text)?;
        return Ok(HostPattern::Wildcard(suffix.to_owned()));
    }
    if host.contains('*') {
        return Err(format!(
            "invalid host {text:?}: a wildcard may only be the whole first label, as in \
             \"*.example.com\""
        ));
    }
    if let Some(literal) = host.strip_prefix('[') {
        return match literal.strip_suffix(']') {
            Some(inner) if inner.parse::<Ipv6Addr>().is_ok() => Ok(HostPattern::Exact(host)),
            _ if literal.contains("]:") => Err(no_port(text)),
            _ => Err(format!(
                "invalid IPv6 literal {text:?} (write it as \"[::1]\")"
            )),
        };
    }
    if host.parse::<Ipv6Addr>().is_ok() {
        return Err(format!(
            "write the IPv6 address {text:?} in brackets: \"[{host}]\""
        ));
    }
    if host.contains(':') {
        return Err(no_port(text));
    }
    check_host_name(&host, text)?;
    Ok(HostPattern::Exact(host))
}

fn no_port(text: &str) -> String {
    format!("{text:?} has a port: a request's port is ignored when matching hosts, so omit it")
}

/// A DNS name (or an IPv4 address, which has the same shape): labels of letters, digits,
/// '-' and '_'.
pub(super) fn check_host_name(host: &str, text: &str) -> Result<(), String> {
    if host.ends_with('.') {
        return Err(format!(
            "write {text:?} without its trailing dot (a request's trailing dot is ignored)"
        ));
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if host.is_empty() || host.len() > MAX_HOST_LEN || !host.split('.').all(label_ok) {
        return Err(format!(
            "invalid host {text:?} (a host name of letters, digits, '-' and '_' in labels \
             of at most {MAX_LABEL_LEN}, at most {MAX_HOST_LEN} characters; an IPv4 \
             address; or an IPv6 address in brackets)"
        ));
    }
    Ok(())
}

/// A path pattern must be in the normal form requests are matched in (else it could never
/// match one).
fn path_pattern(value: &DeValue<'_>) -> Result<String, String> {
    let text = string(value)?;
    check_path_syntax(text)?;
    if text.contains('?') {
        return Err(format!(
            "{text:?} has a query: routes match the path only (the query is forwarded as received)"
        ));
    }
    let mut normal = Vec::with_capacity(text.len());
    if let Err(error) = normalize_path(text.as_bytes(), &mut normal) {
        return Err(format!("invalid path {text:?}: {}", error.message()));
    }
    if normal != text.as_bytes() {
        let normal = String::from_utf8_lossy(&normal);
        return Err(format!(
            "{text:?} is not in normal form, and requests are matched on their normalised \
             path, so it could never match: write {normal:?}"
        ));
    }
    Ok(text.to_owned())
}

/// Starts with "/", visible ASCII, bounded.
pub(super) fn check_path_syntax(text: &str) -> Result<(), String> {
    if !text.starts_with('/') {
        return Err(format!("path {text:?} must start with \"/\""));
    }
    if text.len() > MAX_PATH_LEN {
        return Err(format!(
            "path is too long ({} bytes, at most {MAX_PATH_LEN})",
            text.len()
        ));
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) || text.contains('#') {
        return Err(format!(
            "path {text:?} may only hold visible ASCII, without spaces or '#' \
             (percent-encode anything else)"
        ));
    }
    Ok(())
}

/// Methods are case-sensitive tokens; a lower-case standard method is a mistake, as no
/// client sends one.
fn method(value: &DeValue<'_>) -> Result<String, String> {
    const STANDARD: &[&str] = &[
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    let text = string(value)?;
    token(text, "method")?;
    let upper = text.to_ascii_uppercase();
    if upper != text && STANDARD.contains(&upper.as_str()) {
        return Err(format!(
            "methods are case-sensitive: write {upper:?} (clients send it upper-case)"
        ));
    }
    Ok(text.to_owned())
}

/// `header = { name = "X-Canary" }` (present) or `{ name = "X-Canary", value = "1" }`.
fn read_header_condition(
    r: &mut Reader<'_>,
    value: &Value<'_>,
    path: String,
) -> Option<HeaderCondition> {
    let t = r.as_table(value, path)?;
    r.deny_unknown_keys(&t, HEADER_CONDITION_KEYS);
    let name = r.required(&t, "name", field_name);
    let value = r.field(&t, "value", field_value);
    Some(HeaderCondition {
        name: name?.to_ascii_lowercase(),
        value,
    })
}

pub(super) fn field_name(value: &DeValue<'_>) -> Result<String, String> {
    token(string(value)?, "header").map(str::to_owned)
}

/// Visible ASCII, spaces and tabs, without surrounding whitespace (the parser strips it
/// from what clients and backends send, so a value with it could never be equal).
pub(super) fn field_value(value: &DeValue<'_>) -> Result<String, String> {
    let text = string(value)?;
    let allowed = |b: u8| b.is_ascii_graphic() || b == b' ' || b == b'\t';
    if !text.bytes().all(allowed) {
        return Err(format!(
            "header value {text:?} may only hold visible ASCII, spaces and tabs"
        ));
    }
    if text.trim_matches([' ', '\t']) != text {
        return Err(format!(
            "header value {text:?} has whitespace around it, which HTTP strips"
        ));
    }
    if text.len() > MAX_FIELD_VALUE_LEN {
        return Err(format!(
            "header value is too long ({} bytes, at most {MAX_FIELD_VALUE_LEN})",
            text.len()
        ));
    }
    Ok(text.to_owned())
}

/// The table a listener's `routes = "NAME"` names, if it exists.
pub(crate) fn listener_routes(
    r: &mut Reader<'_>,
    value: &Value<'_>,
    path: String,
    tables: &[ReadTable],
) -> Option<String> {
    let name = r.convert(value, path.clone(), string)?;
    if tables.iter().any(|t| t.config.name == name) {
        return Some(name.to_owned());
    }
    let defined: Vec<String> = tables
        .iter()
        .map(|t| format!("{:?}", t.config.name))
        .collect();
    let message = if defined.is_empty() {
        format!("unknown route table {name:?} (none is defined: add a [routes.{name}] section)")
    } else {
        format!(
            "unknown route table {name:?} (defined: {})",
            defined.join(", ")
        )
    };
    r.error(value.span(), path, message);
    None
}

/// A table no listener names is an error: it does nothing, which is never what was meant.
/// `named`: every table name a listener gave, valid listener or not.
pub(crate) fn report_unused_tables(r: &mut Reader<'_>, tables: &[ReadTable], named: &[String]) {
    for table in tables {
        let name = &table.config.name;
        if !named.contains(name) {
            let message = format!(
                "route table {name:?} is not used by any listener (add routes = {name:?} \
                 to a [[listener]])"
            );
            r.error(table.span.clone(), format!("routes.{name}"), message);
        }
    }
}

#[cfg(test)]
mod tests;
