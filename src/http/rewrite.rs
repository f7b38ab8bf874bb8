//! Writing heads to the other side: forwarded requests, relayed responses and the proxy's
//! own error responses. Everything appends to a caller-owned buffer, so a reused `Vec`
//! makes the per-request path allocation-free once it has grown.

use std::ops::Range;

use httparse::Header;

use super::fields::{FieldName, list_elements, offset_in, trim_ows};
use super::request::RequestHead;
use super::request_id::{RequestIdLine, RequestIdValue};
use super::response::ResponseHead;
use super::status::reason_phrase;
use super::{BodyFraming, Version};
use crate::config::{ForwardedHeaders, HeaderEdits, ProxyAction, ViaEntry};

/// What the proxy knows about the client side when forwarding a request.
#[derive(Debug, Clone, Copy)]
pub struct ForwardContext<'a> {
    /// The client's IP address as text (formatted once per connection, not per request).
    pub client_addr: &'a str,
    /// Scheme the client used: `"http"` or `"https"`.
    pub proto: &'a str,
    pub forwarded: &'a ForwardedHeaders,
    /// Host sent to the backend when the client sent none (HTTP/1.0).
    pub default_host: &'a str,
    /// The request id field; `None`: none is written or dropped.
    pub request_id: Option<&'a RequestIdLine<'a>>,
}

/// What a proxy route changes in the request it forwards.
#[derive(Debug, Clone, Copy)]
pub struct RouteForward<'a> {
    pub action: &'a ProxyAction,
    /// The request's normalised path (`route::Scratch::normalized_path`): what the route
    /// matched, and so what is forwarded. `None`: the target as received.
    pub normalized_path: Option<&'a [u8]>,
}

/// How the proxy relays a response to its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseContext {
    pub client_version: Version,
    /// The proxy keeps the client connection open after this response.
    pub keep_alive: bool,
    /// Framing the client gets; may differ from the backend's (chunked re-sent
    /// close-delimited to an HTTP/1.0 client, say).
    pub framing: BodyFraming,
    /// A 101 whose connection becomes a tunnel.
    pub upgrade: bool,
}

/// Appends the head to send to the backend for `req`, always as HTTP/1.1.
///
/// Hop-by-hop fields (see [`FieldName::is_hop_by_hop`]) are dropped, as are Host and
/// Content-Length, which are written canonically first and after the end-to-end fields, and
/// any X-Forwarded-* or Via field the proxy sets itself. Client X-Forwarded-For values are
/// joined into one field with the client address appended, client Via values into one field
/// with the proxy's entry appended. An upgrade offers the backend only the protocols the
/// proxy tunnels ([`RequestHead::upgrade_protocols`]). A generated request id follows the
/// client's fields (unless a route sets that field itself), and client fields of its name
/// that could not be kept are dropped.
pub fn write_request_head(out: &mut Vec<u8>, req: &RequestHead<'_, '_>, ctx: &ForwardContext<'_>) {
    write_forwarded_head(out, req, ctx, None);
}

/// As [`write_request_head`], for a request a proxy route takes: the target is the route's
/// (the normalised path, its prefix rewritten, and the query as received), and the route's
/// request header edits apply: a removed or set name is dropped from the client's fields, and
/// each set field is written after them. One pass, nothing allocated.
pub fn write_routed_request_head(
    out: &mut Vec<u8>,
    req: &RequestHead<'_, '_>,
    ctx: &ForwardContext<'_>,
    route: &RouteForward<'_>,
) {
    write_forwarded_head(out, req, ctx, Some(route));
}

#[inline(always)]
fn write_forwarded_head(
    out: &mut Vec<u8>,
    req: &RequestHead<'_, '_>,
    ctx: &ForwardContext<'_>,
    route: Option<&RouteForward<'_>>,
) {
    let host = if req.host.is_empty() {
        ctx.default_host.as_bytes()
    } else {
        req.host
    };
    let edits = route.map(|route| &route.action.request_headers);
    // A field the proxy writes itself that the route sets: the route's value, once.
    let route_sets = |name: &str| edits.and_then(|e| e.set_value(name));
    out.extend_from_slice(req.method.as_bytes());
    out.push(b' ');
    match route {
        Some(route) => route
            .action
            .write_target(route.normalized_path, req.path, out),
        None => out.extend_from_slice(req.path.as_bytes()),
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let host_line = route_sets("host").map_or(host, str::as_bytes);
    write_field(out, b"Host", host_line);

    let forwarded = ctx.forwarded;
    let forwarded_as_is = |header: &Header<'_>, name: FieldName| match name {
        FieldName::Host | FieldName::ContentLength => false,
        FieldName::XForwardedFor => !forwarded.x_forwarded_for,
        FieldName::XForwardedProto => !forwarded.x_forwarded_proto,
        FieldName::XForwardedHost => !forwarded.x_forwarded_host,
        FieldName::Via => forwarded.via.is_none(),
        name => !name.is_hop_by_hop() && edits.is_none_or(|e| !e.replaces(header.name)),
    };
    match ctx.request_id {
        // The rare request whose own ids are replaced: a pass of its own, so that the usual
        // one keeps its small, inlined test.
        Some(RequestIdLine {
            name: id,
            value:
                RequestIdValue::Generated {
                    replaces_client: true,
                    ..
                },
        }) => write_fields(out, req.bytes, req.headers, req.names, |header, name| {
            let client_id = name == FieldName::Other && header.name.eq_ignore_ascii_case(id);
            !client_id && forwarded_as_is(header, name)
        }),
        _ => write_fields(out, req.bytes, req.headers, req.names, forwarded_as_is),
    }
    if let Some(edits) = edits {
        write_set_fields(out, edits);
    }
    if let Some(RequestIdLine {
        name,
        value: RequestIdValue::Generated { id, .. },
    }) = ctx.request_id
        && edits.is_none_or(|e| !e.replaces(name))
    {
        id.write_field(out, name);
    }

    write_framing(out, req.body);
    if req.upgrade.is_some() {
        write_upgrade(out, req);
    }
    if forwarded.x_forwarded_for && route_sets("x-forwarded-for").is_none() {
        write_forwarded_for(out, req, ctx.client_addr);
    }
    if forwarded.x_forwarded_proto && route_sets("x-forwarded-proto").is_none() {
        write_field(out, b"X-Forwarded-Proto", ctx.proto.as_bytes());
    }
    if forwarded.x_forwarded_host && route_sets("x-forwarded-host").is_none() {
        write_field(out, b"X-Forwarded-Host", host);
    }
    if let Some(via) = &forwarded.via
        && route_sets("via").is_none()
    {
        write_via(out, req, via);
    }
    out.extend_from_slice(b"\r\n");
}

/// `Connection: upgrade` and the protocols the backend is offered.
fn write_upgrade(out: &mut Vec<u8>, req: &RequestHead<'_, '_>) {
    out.extend_from_slice(b"Connection: upgrade\r\nUpgrade: ");
    let mut protocols = req.upgrade_protocols();
    if let Some(first) = protocols.next() {
        out.extend_from_slice(first.as_bytes());
    }
    for protocol in protocols {
        out.extend_from_slice(b", ");
        out.extend_from_slice(protocol.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// `X-Forwarded-For: <client values joined>, <client ip>`.
fn write_forwarded_for(out: &mut Vec<u8>, req: &RequestHead<'_, '_>, client_addr: &str) {
    out.extend_from_slice(b"X-Forwarded-For: ");
    let client_values = values_of(req, FieldName::XForwardedFor).flat_map(list_elements);
    write_elements_before_own(out, client_values);
    out.extend_from_slice(client_addr.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `Via: <client values joined>, 1.1 <received-by>` (RFC 9110 7.6.3): the proxy appends
/// its entry, naming the version the request came in with. Client values are kept whole
/// (a Via comment may hold commas).
fn write_via(out: &mut Vec<u8>, req: &RequestHead<'_, '_>, via: &ViaEntry) {
    let line = match req.version {
        Version::Http10 => via.http10_line(),
        Version::Http11 => via.http11_line(),
    };
    // The usual request has no Via: one copy of the prepared line.
    if !req.names.contains(&FieldName::Via) {
        out.extend_from_slice(line);
        return;
    }
    const NAME: &[u8] = b"Via: ";
    out.extend_from_slice(NAME);
    let client_values = values_of(req, FieldName::Via)
        .map(trim_ows)
        .filter(|value| !value.is_empty());
    write_elements_before_own(out, client_values);
    out.extend_from_slice(&line[NAME.len()..]);
}

/// The values of `req`'s fields that mean `name` to the proxy, in order.
fn values_of<'b>(req: &RequestHead<'_, 'b>, name: FieldName) -> impl Iterator<Item = &'b [u8]> {
    req.headers
        .iter()
        .zip(req.names)
        .filter(move |(_, meaning)| **meaning == name)
        .map(|(header, _)| header.value)
}

/// Writes each of `elements` followed by `, `, for a list the proxy appends its own to.
fn write_elements_before_own<'e>(out: &mut Vec<u8>, elements: impl Iterator<Item = &'e [u8]>) {
    for element in elements {
        out.extend_from_slice(element);
        out.extend_from_slice(b", ");
    }
}

/// Appends the head to send to the client for `resp`, always as HTTP/1.1; also for interim
/// 1xx responses (a 103's Link fields are kept).
pub fn write_response_head(out: &mut Vec<u8>, resp: &ResponseHead<'_, '_>, ctx: &ResponseContext) {
    write_relayed_head(out, resp, ctx, None);
}

/// As [`write_response_head`], with a proxy route's response header edits applied to a
/// final response (an interim one is relayed as it came).
pub fn write_edited_response_head(
    out: &mut Vec<u8>,
    resp: &ResponseHead<'_, '_>,
    ctx: &ResponseContext,
    edits: &HeaderEdits,
) {
    let edits = (resp.status >= 200).then_some(edits);
    write_relayed_head(out, resp, ctx, edits);
}

#[inline(always)]
fn write_relayed_head(
    out: &mut Vec<u8>,
    resp: &ResponseHead<'_, '_>,
    ctx: &ResponseContext,
    edits: Option<&HeaderEdits>,
) {
    let reason = if resp.reason.is_empty() {
        reason_phrase(resp.status)
    } else {
        resp.reason
    };
    write_status_line(out, resp.status, reason);

    write_fields(out, resp.bytes, resp.headers, resp.names, |header, name| {
        name != FieldName::ContentLength
            && !name.is_hop_by_hop()
            && edits.is_none_or(|e| !e.replaces(header.name))
    });
    if let Some(edits) = edits {
        write_set_fields(out, edits);
    }

    let interim = resp.status < 200;
    match (ctx.framing, resp.content_length) {
        // HEAD and 304: the length describes the representation, not a body that follows;
        // 1xx and 204 must not carry one (RFC 9110 8.6).
        (BodyFraming::None, Some(length)) if !interim && resp.status != 204 => {
            write_content_length(out, length);
        }
        (framing, _) => write_framing(out, framing),
    }
    if ctx.upgrade {
        out.extend_from_slice(b"Connection: upgrade\r\n");
        if let Some(protocol) = resp.upgrade {
            write_field(out, b"Upgrade", protocol.as_bytes());
        }
    } else if interim {
        // Connection handling belongs to the final response.
    } else if !ctx.keep_alive || ctx.framing == BodyFraming::CloseDelimited {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if ctx.client_version == Version::Http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a complete short plain-text response for `status`, e.g. for a 502:
/// `HTTP/1.1 502 Bad Gateway` ... `502 Bad Gateway\n`. It names nothing of the backend.
pub fn write_error_response(out: &mut Vec<u8>, status: u16, close: bool) {
    let reason = match reason_phrase(status) {
        "" => "Error",
        known => known,
    };
    write_status_line(out, status, reason);
    out.extend_from_slice(b"Content-Type: text/plain\r\n");
    write_content_length(out, status_text_len(status, reason) as u64);
    if status == 503 {
        // The proxy answers 503 when no backend of the group is usable (health checks run
        // every few seconds) or when it is out of file descriptors for the moment: trying
        // again in a few seconds makes sense either way.
        out.extend_from_slice(b"Retry-After: 2\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    push_status_text(out, status, reason);
}

/// How the proxy answers a request it answers itself (a route's redirect or fixed response,
/// or a 404 when no route takes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAnswer {
    /// The connection stays open after the answer.
    pub keep_alive: bool,
    pub client_version: Version,
    /// The request was HEAD: the head says the body's length, no body follows.
    pub is_head: bool,
}

impl LocalAnswer {
    fn write_connection(&self, out: &mut Vec<u8>) {
        if !self.keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if self.client_version == Version::Http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
    }
}

/// Appends a route's fixed response: its status, its fields as configured, and its body.
pub fn write_fixed_response(
    out: &mut Vec<u8>,
    status: u16,
    fields: &[(String, String)],
    body: &[u8],
    answer: &LocalAnswer,
) {
    write_status_line(out, status, reason_phrase(status));
    for (name, value) in fields {
        write_field(out, name.as_bytes(), value.as_bytes());
    }
    // 204 and 304 have no body, and a 304's length would describe the resource.
    if status != 204 && status != 304 {
        write_content_length(out, body.len() as u64);
    }
    answer.write_connection(out);
    out.extend_from_slice(b"\r\n");
    if !answer.is_head {
        out.extend_from_slice(body);
    }
}

/// Appends a redirect with the Location `write_location` appends, and a one-line body.
/// `false`, with nothing appended, when `write_location` wrote nothing and said so.
pub fn write_redirect_response(
    out: &mut Vec<u8>,
    status: u16,
    answer: &LocalAnswer,
    write_location: impl FnOnce(&mut Vec<u8>) -> bool,
) -> bool {
    let start = out.len();
    let reason = reason_phrase(status);
    write_status_line(out, status, reason);
    out.extend_from_slice(b"Location: ");
    if !write_location(out) {
        out.truncate(start);
        return false;
    }
    out.extend_from_slice(b"\r\n");
    write_status_text_body(out, status, reason, answer);
    true
}

/// Appends the proxy's own 404, for a request no route takes.
pub fn write_not_found_response(out: &mut Vec<u8>, answer: &LocalAnswer) {
    let reason = reason_phrase(404);
    write_status_line(out, 404, reason);
    write_status_text_body(out, 404, reason, answer);
}

/// The rest of a head whose body is `STATUS REASON\n`, and that body.
fn write_status_text_body(out: &mut Vec<u8>, status: u16, reason: &str, answer: &LocalAnswer) {
    out.extend_from_slice(b"Content-Type: text/plain\r\n");
    write_content_length(out, status_text_len(status, reason) as u64);
    answer.write_connection(out);
    out.extend_from_slice(b"\r\n");
    if !answer.is_head {
        push_status_text(out, status, reason);
    }
}

/// The status digits, a space, the reason and a newline.
fn push_status_text(out: &mut Vec<u8>, status: u16, reason: &str) {
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.push(b'\n');
}

fn status_text_len(status: u16, reason: &str) -> usize {
    let status_digits = status.checked_ilog10().unwrap_or(0) as usize + 1;
    status_digits + 1 + reason.len() + 1
}

fn write_status_line(out: &mut Vec<u8>, status: u16, reason: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn write_framing(out: &mut Vec<u8>, framing: BodyFraming) {
    match framing {
        BodyFraming::Length(length) => write_content_length(out, length),
        BodyFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        BodyFraming::None | BodyFraming::CloseDelimited => {}
    }
}

fn write_content_length(out: &mut Vec<u8>, length: u64) {
    out.extend_from_slice(b"Content-Length: ");
    push_decimal(out, length);
    out.extend_from_slice(b"\r\n");
}

/// Appends the fields whose name `keep` accepts, in their order. A run of adjacent kept fields
/// whose lines end in CRLF is copied from the received `head` in one piece (a typical
/// response is two or three such runs); any other line is written anew, with CRLF.
#[inline(always)]
fn write_fields(
    out: &mut Vec<u8>,
    head: &[u8],
    headers: &[Header<'_>],
    names: &[FieldName],
    keep: impl Fn(&Header<'_>, FieldName) -> bool,
) {
    let mut run = 0..0;
    for (header, &name) in headers.iter().zip(names) {
        if !keep(header, name) {
            continue;
        }
        match crlf_line(head, header) {
            Some(line) if line.start == run.end => run.end = line.end,
            Some(line) => {
                out.extend_from_slice(&head[run]);
                run = line;
            }
            None => {
                out.extend_from_slice(&head[run]);
                run = 0..0;
                write_field(out, header.name.as_bytes(), header.value);
            }
        }
    }
    out.extend_from_slice(&head[run]);
}

/// Where `header`'s line lies in `head`, when it ends in CRLF right after the value.
fn crlf_line(head: &[u8], header: &Header<'_>) -> Option<Range<usize>> {
    let start = offset_in(head, header.name.as_bytes())?;
    let value_end = offset_in(head, header.value)? + header.value.len();
    let end = value_end + 2;
    (head.get(value_end..end)? == b"\r\n").then_some(start..end)
}

/// The route's set fields, but Host: that one took the place of the request's own.
fn write_set_fields(out: &mut Vec<u8>, edits: &HeaderEdits) {
    for (name, value) in &edits.set {
        if !name.eq_ignore_ascii_case("host") {
            write_field(out, name.as_bytes(), value.as_bytes());
        }
    }
}

impl HeaderEdits {
    /// The value this route sets for field `name` (lower case), if it sets it.
    fn set_value(&self, name: &str) -> Option<&str> {
        if self.set.is_empty() {
            return None;
        }
        let (_, value) = self
            .set
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))?;
        Some(value)
    }

    /// Whether a received field named `name` is dropped: removed, or replaced by a set one.
    fn replaces(&self, name: &str) -> bool {
        self.remove.iter().any(|r| r.eq_ignore_ascii_case(name))
            || self.set.iter().any(|(s, _)| s.eq_ignore_ascii_case(name))
    }
}

fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests;
