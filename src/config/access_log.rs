//! `[access_log]` (one line per request, to a file), `[log]` (the process's own log on
//! stderr) and `forwarded.request_id` (the id that ties a request's access log line to what
//! its backend logged).

use toml::de::DeValue;

use super::reader::{Reader, Table, integer_in, string, wrong_type};
use super::upstream::token;
use super::{AccessLogConfig, AccessLogFormat, LogConfig};
use crate::log::{Format, Level};

pub(super) const ACCESS_LOG_KEYS: &[&str] = &["path", "format", "sample", "buffer_bytes"];
pub(super) const LOG_KEYS: &[&str] = &["level", "format"];

/// Smaller batches would mean a hand-over to the writer every few lines.
const MIN_BUFFER_BYTES: usize = 4 * 1024;
/// Each worker holds one buffer and queues a few for the writer: this bounds their memory.
const MAX_BUFFER_BYTES: usize = 16 * 1024 * 1024;

pub(super) fn read_access_log(r: &mut Reader<'_>, t: &Table<'_, '_>) -> Option<AccessLogConfig> {
    let dir = super::tls::config_dir(r.file());
    let path = r.required(t, "path", |v| super::tls::file_path(v, &dir));
    let default = AccessLogConfig::new(Default::default());
    let format = r
        .field(t, "format", access_log_format)
        .unwrap_or(default.format);
    let sample = r.field(t, "sample", sample).unwrap_or(default.sample);
    let buffer_bytes = r
        .field(
            t,
            "buffer_bytes",
            integer_in(MIN_BUFFER_BYTES..=MAX_BUFFER_BYTES),
        )
        .unwrap_or(default.buffer_bytes);
    Some(AccessLogConfig {
        format,
        sample,
        buffer_bytes,
        ..AccessLogConfig::new(path?)
    })
}

fn access_log_format(value: &DeValue<'_>) -> Result<AccessLogFormat, String> {
    match string(value)? {
        "combined" => Ok(AccessLogFormat::Combined),
        "json" => Ok(AccessLogFormat::Json),
        other => Err(format!(
            "unknown access log format {other:?} (expected \"combined\" or \"json\")"
        )),
    }
}

/// A share of requests in (0, 1]: `0.01`, or `1` for every request.
fn sample(value: &DeValue<'_>) -> Result<f64, String> {
    let share = match value {
        DeValue::Float(float) => float
            .as_str()
            .parse::<f64>()
            .map_err(|_| format!("{} is not a number", float.as_str()))?,
        DeValue::Integer(_) => integer_in(0..=1)(value)? as f64,
        other => return Err(wrong_type("a share of requests, e.g. 0.01", other)),
    };
    // One request in 2^32 is the finest share the sampler counts.
    if !(share > 0.0 && share <= 1.0) || share < 1.0 / f64::from(u32::MAX) {
        return Err(format!(
            "{share} is out of range (a share of requests above 0 and at most 1, e.g. 0.01 for one in 100)"
        ));
    }
    Ok(share)
}

pub(super) fn read_log(r: &mut Reader<'_>, t: &Table<'_, '_>) -> LogConfig {
    let default = LogConfig::default();
    LogConfig {
        level: r
            .field(t, "level", |v| Level::parse(string(v)?))
            .unwrap_or(default.level),
        format: r
            .field(t, "format", |v| Format::parse(string(v)?))
            .unwrap_or(default.format),
    }
}

/// Fields the proxy writes itself or that decide framing: a request id may not be one of them.
const NOT_A_REQUEST_ID: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "via",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

/// `forwarded.request_id`: a header field name, `true` for the default, `false` for none.
pub(super) fn request_id(value: &DeValue<'_>) -> Result<Option<String>, String> {
    let name = match value {
        DeValue::Boolean(false) => return Ok(None),
        DeValue::Boolean(true) => return Ok(Some(super::DEFAULT_REQUEST_ID.to_owned())),
        DeValue::String(name) => name,
        other => {
            return Err(wrong_type(
                "a header name (\"X-Request-Id\") or false",
                other,
            ));
        }
    };
    token(name, "header")?;
    if NOT_A_REQUEST_ID.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "{name} is a field the proxy sets or reads itself; choose another name"
        ));
    }
    Ok(Some(name.to_string()))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::config::test_support::{assert_error, parse, with_base};
    use crate::config::{AccessLogConfig, AccessLogFormat, LogConfig};
    use crate::log::{Format, Level};

    #[test]
    fn access_log_is_off_by_default_and_takes_every_key() {
        let config = parse(&with_base(&[])).unwrap();
        assert_eq!(config.access_log, None);
        assert_eq!(config.log, LogConfig::default());
        let config = parse(&with_base(&[
            "[access_log]",
            "path = \"logs/access.log\"",
            "format = \"json\"",
            "sample = 0.25",
            "buffer_bytes = 8192",
            "[log]",
            "level = \"debug\"",
            "format = \"json\"",
        ]))
        .unwrap();
        // Relative to the file's directory, which has none here.
        let expected = AccessLogConfig {
            format: AccessLogFormat::Json,
            sample: 0.25,
            buffer_bytes: 8192,
            ..AccessLogConfig::new(PathBuf::from("logs/access.log"))
        };
        assert_eq!(config.access_log, Some(expected));
        assert_eq!(
            config.log,
            LogConfig {
                level: Level::Debug,
                format: Format::Json
            }
        );
        let every_request = parse(&with_base(&["[access_log]", "path = \"a\"", "sample = 1"]));
        assert_eq!(every_request.unwrap().access_log.unwrap().sample, 1.0);
    }

    #[test]
    fn access_log_errors_name_the_key() {
        assert_error(
            &with_base(&["[access_log]", "format = \"json\""]),
            Some(6),
            "access_log.path",
            "missing required key",
        );
        for (value, text) in [
            ("0", "out of range"),
            ("0.0", "out of range"),
            ("1.5", "out of range"),
            ("-0.1", "out of range"),
            ("\"1/100\"", "a share of requests"),
        ] {
            let sample = format!("sample = {value}");
            let lines = with_base(&["[access_log]", "path = \"a\"", &sample]);
            assert_error(&lines, Some(8), "access_log.sample", text);
        }
        let lines = with_base(&["[access_log]", "path = \"a\"", "format = \"common\""]);
        assert_error(
            &lines,
            Some(8),
            "access_log.format",
            "\"combined\" or \"json\"",
        );
        let lines = with_base(&["[access_log]", "path = \"a\"", "buffer_bytes = 100"]);
        assert_error(&lines, Some(8), "access_log.buffer_bytes", "out of range");
        let lines = with_base(&["[access_log]", "path = \"a\"", "flush = \"1s\""]);
        assert_error(&lines, Some(8), "access_log.flush", "unknown key");
        let lines = with_base(&["[log]", "level = \"trace\""]);
        assert_error(&lines, Some(7), "log.level", "error, warn, info or debug");
    }

    #[test]
    fn request_id_header_is_a_token_the_proxy_does_not_own() {
        let config = parse(&with_base(&[])).unwrap();
        assert_eq!(config.forwarded.request_id.as_deref(), Some("X-Request-Id"));
        let named = parse(&with_base(&[
            "[forwarded]",
            "request_id = \"X-Correlation-Id\"",
        ]));
        assert_eq!(
            named.unwrap().forwarded.request_id.as_deref(),
            Some("X-Correlation-Id")
        );
        let off = parse(&with_base(&["[forwarded]", "request_id = false"]));
        assert_eq!(off.unwrap().forwarded.request_id, None);
        let bad = with_base(&["[forwarded]", "request_id = \"Request Id\""]);
        assert_error(&bad, Some(7), "forwarded.request_id", "invalid header name");
        let own = with_base(&["[forwarded]", "request_id = \"X-Forwarded-For\""]);
        assert_error(
            &own,
            Some(7),
            "forwarded.request_id",
            "sets or reads itself",
        );
    }
}
