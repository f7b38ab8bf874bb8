//! The process's own log on stderr: lifecycle events and errors, one line each, with a level
//! (`--log-level`, `[log] level`) and a format (`--log-format`, `[log] format`).
//!
//! - `text` (the default): `ringproxy: MESSAGE`, the message as it always read; a line whose
//!   message has several lines (a rejected reload's errors) keeps them.
//! - `json`: one object per line, for log shippers and journald users:
//!   `{"time":"2026-12-07T05:31:00.123Z","level":"info","msg":"ready (1 worker)"}`, with
//!   `"worker":N` and `"peer":"IP"` (the client) where the event has them.
//!
//! Our own module rather than `log` + a subscriber crate: what is needed is a level check (one
//! relaxed atomic load) and two line formats, and nothing here runs on the request path unless
//! `debug` is asked for. The line is formatted whole and written with one `write_all` on the
//! locked stderr, as `eprintln!` does, so lines from several threads never interleave.
//!
//! Use the macros: `log_info!("ready ({n} workers)")`,
//! `log_warn!(worker: 3; "cannot take generation {g}")`,
//! `log_debug!(worker: 0, peer: addr; "request refused with {status}")`.

use std::fmt;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::SystemTime;

use crate::log_text::{CivilTime, write_json_string};

/// How much is logged: a level and everything more severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

impl Level {
    pub const NAMES: [&'static str; 4] = ["error", "warn", "info", "debug"];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "error" => Ok(Self::Error),
            "warn" => Ok(Self::Warn),
            "info" => Ok(Self::Info),
            "debug" => Ok(Self::Debug),
            other => Err(format!(
                "unknown log level {other:?} (expected error, warn, info or debug)"
            )),
        }
    }
}

/// How a line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text = 0,
    Json = 1,
}

impl Format {
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format {other:?} (expected text or json)"
            )),
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static FORMAT: AtomicU8 = AtomicU8::new(Format::Text as u8);

/// Sets the level and format for every thread (at start, and at a reload).
pub fn configure(level: Level, format: Format) {
    LEVEL.store(level as u8, Ordering::Relaxed);
    FORMAT.store(format as u8, Ordering::Relaxed);
}

/// Whether a line at `level` is written: check before building an expensive message.
#[inline]
pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

fn format() -> Format {
    if FORMAT.load(Ordering::Relaxed) == Format::Json as u8 {
        Format::Json
    } else {
        Format::Text
    }
}

/// Where an event happened, when it belongs to a worker or a client.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context {
    pub worker: Option<usize>,
    /// The client's address.
    pub peer: Option<IpAddr>,
}

/// Writes one line at `level` (the macros check `enabled` first).
pub fn write(level: Level, context: Context, message: fmt::Arguments<'_>) {
    let line = match format() {
        Format::Text => format!("ringproxy: {message}\n").into_bytes(),
        Format::Json => json_line(level, context, message, SystemTime::now()),
    };
    // Nothing better to do when stderr is gone.
    let _ = std::io::stderr().lock().write_all(&line);
}

fn json_line(
    level: Level,
    context: Context,
    message: fmt::Arguments<'_>,
    now: SystemTime,
) -> Vec<u8> {
    let mut line = Vec::with_capacity(128);
    line.extend_from_slice(b"{\"time\":\"");
    CivilTime::of(now).write_iso8601_millis(&mut line);
    let _ = write!(line, "\",\"level\":\"{}\",\"msg\":", level.name());
    write_json_string(&mut line, message.to_string().as_bytes());
    if let Some(worker) = context.worker {
        let _ = write!(line, ",\"worker\":{worker}");
    }
    if let Some(peer) = context.peer {
        let _ = write!(line, ",\"peer\":\"{peer}\"");
    }
    line.extend_from_slice(b"}\n");
    line
}

/// `log_at!(LEVEL; "format", args...)`, or with the event's place:
/// `log_at!(LEVEL, worker: W; ...)`, `log_at!(LEVEL, worker: W, peer: P; ...)`.
#[macro_export]
macro_rules! log_at {
    ($level:expr, worker: $worker:expr, peer: $peer:expr; $($arg:tt)+) => {
        if $crate::log::enabled($level) {
            let context = $crate::log::Context { worker: Some($worker), peer: Some($peer) };
            $crate::log::write($level, context, format_args!($($arg)+));
        }
    };
    ($level:expr, worker: $worker:expr; $($arg:tt)+) => {
        if $crate::log::enabled($level) {
            let context = $crate::log::Context { worker: Some($worker), peer: None };
            $crate::log::write($level, context, format_args!($($arg)+));
        }
    };
    ($level:expr; $($arg:tt)+) => {
        if $crate::log::enabled($level) {
            $crate::log::write($level, $crate::log::Context::default(), format_args!($($arg)+));
        }
    };
    ($level:expr, $($arg:tt)+) => {
        $crate::log_at!($level; $($arg)+)
    };
}

/// A failure: something stopped working (a worker died, a start-up step failed).
#[macro_export]
macro_rules! log_error {
    ($($arg:tt)+) => { $crate::log_at!($crate::log::Level::Error, $($arg)+) };
}

/// Something an operator should look at: a backend down, a rejected reload, a shortage.
#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)+) => { $crate::log_at!($crate::log::Level::Warn, $($arg)+) };
}

/// Lifecycle: listening, ready, reloads, drains, backends coming back.
#[macro_export]
macro_rules! log_info {
    ($($arg:tt)+) => { $crate::log_at!($crate::log::Level::Info, $($arg)+) };
}

/// Per-request detail (requests refused, backends failing a request), for chasing a problem.
#[macro_export]
macro_rules! log_debug {
    ($($arg:tt)+) => { $crate::log_at!($crate::log::Level::Debug, $($arg)+) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn levels_parse_and_order_by_severity() {
        for name in Level::NAMES {
            assert_eq!(Level::parse(name).unwrap().name(), name);
        }
        assert!(Level::Error < Level::Warn && Level::Info < Level::Debug);
        assert!(Level::parse("trace").is_err());
        assert!(Format::parse("JSON").is_err());
    }

    #[test]
    fn json_lines_carry_time_level_message_and_context() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_621_460_123);
        let context = Context {
            worker: Some(1),
            peer: Some("::1".parse().unwrap()),
        };
        let line = json_line(
            Level::Warn,
            context,
            format_args!("reload rejected:\n\"x\" {}", 2),
            at,
        );
        let line = String::from_utf8(line).unwrap();
        assert_eq!(
            line,
            "{\"time\":\"2026-12-07T05:31:00.123Z\",\"level\":\"warn\",\
             \"msg\":\"reload rejected:\\n\\\"x\\\" 2\",\"worker\":1,\"peer\":\"::1\"}\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["worker"], 1);
    }
}
