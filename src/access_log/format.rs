//! The two line formats. Both carry the same facts; `combined` starts as nginx's (and
//! Apache's) `combined` so that tools reading that format read ours, and adds the proxy's
//! fields after it as `key=value`.
//!
//! ```text
//! 127.0.0.1 - - [07/Dec/2026:05:31:00 +0000] "GET /a HTTP/1.1" 200 190 "-" "curl/8.5.0" request_id=5f0c1e2d3b4a69788a9b0c1d2e3f4051 bytes_received=78 request_time=0.000412 upstream_connect_time=0.000000 upstream_header_time=0.000231 upstream_addr=10.0.0.5:9000 listener=0.0.0.0:8080 upstream=app route=-
//! ```
//!
//! ```text
//! {"time":"2026-12-07T05:31:00.123Z","client":"127.0.0.1","method":"GET","target":"/a","protocol":"HTTP/1.1","status":200,"bytes_sent":190,"referer":null,"user_agent":"curl/8.5.0","request_id":"5f0c1e2d3b4a69788a9b0c1d2e3f4051","bytes_received":78,"request_time":0.000412,"upstream_connect_time":0.000000,"upstream_header_time":0.000231,"upstream_addr":"10.0.0.5:9000","listener":"0.0.0.0:8080","upstream":"app","route":null}
//! ```
//!
//! The size after the status is every byte written to the client for the request, its head
//! included (HAProxy's `%B`; nginx's `combined` counts the body only). A request whose client
//! went away before it was answered has status 499, as nginx logs it. Times are seconds with
//! microseconds; `-` (`null`) where the request had no such step.

use std::time::{Duration, Instant, SystemTime};

use super::record::{Piece, Record};
use crate::config::AccessLogFormat;
use crate::http::Version;
use crate::log_text::{
    CivilTime, write_json_string, write_log_escaped, write_padded, write_seconds, write_u64,
};
use crate::upstream::BackendId;
use crate::worker::{Generation, ListenerRouting};

/// The status logged for a request its client left before it was answered.
const CLIENT_CLOSED: u16 = 499;

/// What the session knows about a request besides its record.
pub struct LineContext<'a> {
    /// The client's IP address as text.
    pub client: &'a str,
    pub generation: &'a Generation,
    /// The listener's position in `generation`'s config.
    pub listener: usize,
    /// The upstream group (`ListenerRouting::NOT_PROXIED`: none).
    pub group: u32,
    /// The route of the listener's table that proxied the request, when it has a table and
    /// a group.
    pub route: u16,
}

/// The names a line gives the request's places: the generation's, formatted once when it
/// was made (the metrics' labels).
struct Names<'a> {
    listener: Option<&'a str>,
    upstream: Option<&'a str>,
    /// `TABLE[INDEX]`.
    route: Option<&'a str>,
    backend: Option<&'a str>,
}

impl<'a> Names<'a> {
    fn of(context: &LineContext<'a>, backend: Option<BackendId>) -> Self {
        let labels = context.generation.requests.labels();
        let proxied = context.group != ListenerRouting::NOT_PROXIED;
        let group = proxied.then_some(context.group as usize);
        Self {
            listener: labels.listeners.get(context.listener).map(String::as_str),
            upstream: group.and_then(|g| labels.groups.get(g)).map(String::as_str),
            route: group.and_then(|_| labels.route(context.listener, context.route.into())),
            backend: backend.and_then(|id| labels.backend_address(id.0)),
        }
    }
}

/// The time fields of the second the last line was written in, formatted once per second.
pub struct TimeCache {
    second: Option<u64>,
    common_log: Vec<u8>,
    iso8601: Vec<u8>,
}

impl Default for TimeCache {
    fn default() -> Self {
        Self {
            second: None,
            common_log: Vec::with_capacity(32),
            iso8601: Vec::with_capacity(32),
        }
    }
}

impl TimeCache {
    fn update(&mut self, time: &CivilTime) {
        if self.second == Some(time.unix_seconds) {
            return;
        }
        self.second = Some(time.unix_seconds);
        self.common_log.clear();
        time.write_common_log(&mut self.common_log);
        self.iso8601.clear();
        time.write_iso8601_seconds(&mut self.iso8601);
    }
}

/// Appends the line of `record` (ending in a newline) to `out`: the request began at `wall`
/// and ended at `ended`.
pub fn write_line(
    out: &mut Vec<u8>,
    format: AccessLogFormat,
    record: &Record,
    context: &LineContext<'_>,
    (wall, ended): (SystemTime, Instant),
    clock: &mut TimeCache,
) {
    let time = CivilTime::of(wall);
    clock.update(&time);
    let names = Names::of(context, record.backend);
    let facts = Facts {
        record,
        names: &names,
        client: context.client,
        request_time: ended.saturating_duration_since(record.started),
    };
    match format {
        AccessLogFormat::Combined => facts.combined(out, clock),
        AccessLogFormat::Json => facts.json(out, clock, time.micros),
    }
}

struct Facts<'a> {
    record: &'a Record,
    names: &'a Names<'a>,
    client: &'a str,
    request_time: Duration,
}

impl Facts<'_> {
    fn status(&self) -> u16 {
        match self.record.status {
            0 => CLIENT_CLOSED,
            status => status,
        }
    }

    fn protocol(&self) -> &'static [u8] {
        match self.record.version {
            Version::Http10 => b"HTTP/1.0",
            Version::Http11 => b"HTTP/1.1",
        }
    }

    /// The request's own fields, for `json` (`combined` has them in its fixed positions).
    fn request_fields(&self, fields: &mut Fields<'_>) {
        let record = self.record;
        fields.text("client", self.client.as_bytes());
        fields.text("method", record.piece(Piece::Method));
        fields.text("target", record.piece(Piece::Target));
        fields.text("protocol", self.protocol());
        fields.number("status", self.status().into());
        fields.number("bytes_sent", record.bytes_sent);
        fields.text("referer", record.piece(Piece::Referer));
        fields.text("user_agent", record.piece(Piece::UserAgent));
    }

    /// What the proxy adds to `combined` (as `key=value`, in this order); `json` has them too.
    fn proxy_fields(&self, fields: &mut Fields<'_>) {
        let (record, names) = (self.record, self.names);
        fields.text("request_id", record.piece(Piece::RequestId));
        fields.number("bytes_received", record.bytes_received);
        fields.seconds("request_time", Some(self.request_time));
        fields.seconds("upstream_connect_time", record.connect);
        fields.seconds("upstream_header_time", record.first_byte);
        // Addresses and routes (table names are letters, digits, `_` and `-`) need no
        // escaping.
        fields.quoted("upstream_addr", names.backend, push_str);
        fields.quoted("listener", names.listener, push_str);
        let upstream = names.upstream.unwrap_or_default();
        fields.text("upstream", upstream.as_bytes());
        fields.quoted("route", names.route, push_str);
    }

    fn combined(&self, out: &mut Vec<u8>, clock: &TimeCache) {
        let record = self.record;
        out.extend_from_slice(self.client.as_bytes());
        out.extend_from_slice(b" - - [");
        out.extend_from_slice(&clock.common_log);
        out.extend_from_slice(b"] \"");
        write_log_escaped(out, record.piece(Piece::Method));
        out.push(b' ');
        write_log_escaped(out, record.piece(Piece::Target));
        out.push(b' ');
        out.extend_from_slice(self.protocol());
        out.extend_from_slice(b"\" ");
        write_u64(out, self.status().into());
        out.push(b' ');
        write_u64(out, record.bytes_sent);
        out.extend_from_slice(b" \"");
        write_log_escaped(out, record.piece(Piece::Referer));
        out.extend_from_slice(b"\" \"");
        write_log_escaped(out, record.piece(Piece::UserAgent));
        out.push(b'"');
        self.proxy_fields(&mut Fields { out, json: false });
        out.push(b'\n');
    }

    fn json(&self, out: &mut Vec<u8>, clock: &TimeCache, micros: u32) {
        out.extend_from_slice(b"{\"time\":\"");
        out.extend_from_slice(&clock.iso8601);
        out.push(b'.');
        write_padded(out, (micros / 1000).into(), 3);
        out.push(b'Z');
        out.push(b'"');
        let mut fields = Fields { out, json: true };
        self.request_fields(&mut fields);
        self.proxy_fields(&mut fields);
        out.extend_from_slice(b"}\n");
    }
}

/// Writes `key` and value pairs: ` key=value` after the combined format's fixed fields, or
/// `,"key":value` in a JSON object. `Facts` says which fields there are and in what order,
/// in straight-line calls (no table of values built per line). Inlined, so that each key is a
/// copy of a known length: called, `key` alone cost 700 instructions per JSON line.
struct Fields<'o> {
    out: &'o mut Vec<u8>,
    json: bool,
}

impl Fields<'_> {
    #[inline(always)]
    fn key(&mut self, key: &str) {
        // Each branch copies pieces of known lengths (chosen slices of different lengths
        // would be copied by a call each).
        if self.json {
            self.out.extend_from_slice(b",\"");
            self.out.extend_from_slice(key.as_bytes());
            self.out.extend_from_slice(b"\":");
        } else {
            self.out.push(b' ');
            self.out.extend_from_slice(key.as_bytes());
            self.out.push(b'=');
        }
    }

    /// What a field without a value reads.
    #[inline(always)]
    fn none(&mut self) {
        if self.json {
            self.out.extend_from_slice(b"null");
        } else {
            self.out.push(b'-');
        }
    }

    /// Request text, escaped; `-` (`null`) when empty.
    #[inline(always)]
    fn text(&mut self, key: &str, value: &[u8]) {
        self.key(key);
        if self.json {
            write_json_optional(self.out, value);
        } else {
            write_log_escaped(self.out, value);
        }
    }

    #[inline(always)]
    fn number(&mut self, key: &str, value: u64) {
        self.key(key);
        write_u64(self.out, value);
    }

    /// Seconds with microseconds (a JSON number).
    #[inline(always)]
    fn seconds(&mut self, key: &str, value: Option<Duration>) {
        self.key(key);
        match value {
            Some(duration) => write_duration(self.out, duration),
            None => self.none(),
        }
    }

    /// A value `write` writes with nothing to escape, quoted in JSON.
    #[inline(always)]
    fn quoted<T>(&mut self, key: &str, value: Option<T>, write: impl FnOnce(&mut Vec<u8>, T)) {
        self.key(key);
        let Some(value) = value else {
            return self.none();
        };
        if self.json {
            self.out.push(b'"');
        }
        write(self.out, value);
        if self.json {
            self.out.push(b'"');
        }
    }
}

fn push_str(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
}

fn write_duration(out: &mut Vec<u8>, duration: Duration) {
    write_seconds(out, u64::try_from(duration.as_micros()).unwrap_or(u64::MAX));
}

/// A JSON string, or `null` for an empty value (a header the request did not have, or the
/// method of a request whose head could not be parsed).
fn write_json_optional(out: &mut Vec<u8>, value: &[u8]) {
    if value.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        write_json_string(out, value);
    }
}
