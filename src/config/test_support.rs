//! Helpers for the config loader's tests: errors are asserted by file, line and key.

use std::net::SocketAddr;
use std::time::Duration;

use super::{
    BackendConfig, Config, ConfigError, ConfigErrors, ForwardedHeaders, HealthCheck,
    HealthCheckKind, Limits, ListenerConfig, Origin, PoolConfig, RuntimeConfig, Timeouts,
    UpstreamConfig, parse_str,
};

/// A valid listener and upstream group on lines 1..=5; `with_base` appends from line 6.
pub(crate) const BASE: &[&str] = &[
    "[[listener]]",
    "address = \"127.0.0.1:8080\"",
    "upstream = \"app\"",
    "[upstream.app]",
    "backends = [\"127.0.0.1:9000\"]",
];

pub(crate) fn with_base<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    BASE.iter().chain(extra).copied().collect()
}

pub(crate) fn parse(lines: &[&str]) -> Result<Config, ConfigErrors> {
    parse_str(&lines.join("\n"), "test.toml")
}

pub(crate) fn errors(lines: &[&str]) -> Vec<ConfigError> {
    match parse(lines) {
        Ok(config) => panic!("expected errors, parsed {config:?}"),
        Err(errors) => errors.0,
    }
}

/// Asserts exactly one error, at `line` and `key`, whose message contains `text`.
#[track_caller]
pub(crate) fn assert_error(lines: &[&str], line: Option<usize>, key: &str, text: &str) {
    let errors = errors(lines);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let error = &errors[0];
    assert_eq!((error.line, error.key.as_str()), (line, key), "{error}");
    assert!(error.message.contains(text), "{error}");
    assert_eq!(error.file, "test.toml");
}

pub(crate) fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

pub(crate) fn backend(address: &str, weight: u32) -> BackendConfig {
    BackendConfig::new(addr(address), weight)
}

/// `listeners` and `upstreams` with every other setting at its default.
pub(crate) fn defaults_with(
    listeners: Vec<ListenerConfig>,
    upstreams: Vec<UpstreamConfig>,
) -> Config {
    Config {
        runtime: RuntimeConfig::default(),
        listeners,
        upstreams,
        routes: Vec::new(),
        timeouts: Timeouts::default(),
        limits: Limits::default(),
        pool: PoolConfig::default(),
        forwarded: ForwardedHeaders::default(),
        admin: None,
        access_log: None,
        log: Default::default(),
        origin: Origin::default(),
    }
}

/// What an empty `[upstream.NAME.health]` section means.
pub(crate) fn default_http_check() -> HealthCheck {
    HealthCheck {
        kind: HealthCheckKind::Http {
            path: "/".to_owned(),
            host: None,
            expect_status: 200..=399,
        },
        interval: Duration::from_secs(2),
        timeout: Duration::from_secs(1),
        rise: 2,
        fall: 3,
    }
}
