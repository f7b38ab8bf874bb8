//! `[upstream.NAME]` groups: backends, balancing, retries, active and passive health checks.

use std::ops::RangeInclusive;
use std::time::Duration;

use toml::de::DeValue;

use super::address::{backend_address, parse_backend_address};
use super::reader::{Reader, Table, Value, boolean, duration, integer_in, string, wrong_type};
use super::tls::{read_upstream_tls, server_name};
use super::{
    BackendConfig, Balance, HashKey, HealthCheck, HealthCheckKind, P2cMetric, PassiveHealth,
    RetryPolicy, StallDetection, UpstreamConfig,
};

const GROUP_KEYS: &[&str] = &[
    "balance",
    "hash_key",
    "p2c_metric",
    "slow_start",
    "retries",
    "retry_timeout",
    "backends",
    "health",
    "passive",
    "tls",
];
const BACKEND_KEYS: &[&str] = &["address", "weight", "max_conns", "backup", "drain", "sni"];
const HEALTH_KEYS: &[&str] = &[
    "type",
    "path",
    "host",
    "expect_status",
    "interval",
    "timeout",
    "rise",
    "fall",
];
/// Keys of `[upstream.NAME.health]` that only an HTTP check reads.
const HTTP_CHECK_KEYS: &[&str] = &["path", "host", "expect_status"];
const PASSIVE_KEYS: &[&str] = &["max_fails", "on_5xx", "cooldown", "max_cooldown", "stall"];

/// Every algorithm `balance` names, each with the defaults of its refining key.
const ALGORITHMS: [Balance; 6] = [
    Balance::RoundRobin,
    Balance::Weighted,
    Balance::LeastConn,
    Balance::Hash(HashKey::ClientIp),
    Balance::Random,
    Balance::P2c(P2cMetric::InFlight),
];
/// Keys that refine one algorithm, with the `balance` they belong to.
const ALGORITHM_KEYS: &[(&str, &str)] = &[("hash_key", "hash"), ("p2c_metric", "p2c")];

const MAX_GROUP_NAME_LEN: usize = 64;
const DEFAULT_WEIGHT: u32 = 1;
const MAX_WEIGHT: u32 = 1000;
const MAX_RETRIES: u32 = 10;
const MAX_FAILS: u32 = 1000;

const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(2);
const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_RISE: u32 = 2;
const DEFAULT_FALL: u32 = 3;
const RISE_FALL: RangeInclusive<u32> = 1..=100;
const DEFAULT_CHECK_PATH: &str = "/";
const DEFAULT_EXPECT_STATUS: RangeInclusive<u16> = 200..=399;
const STATUS_CODES: RangeInclusive<u16> = 100..=599;
/// The path goes into every probe's request line; anything longer is a mistake.
const MAX_CHECK_PATH_LEN: usize = 1024;
/// The longest DNS name.
const MAX_CHECK_HOST_LEN: usize = 255;

/// Upstream groups in name order; a group with errors is still returned, so listeners
/// naming it get no second, misleading "unknown group" error.
pub(crate) fn read_upstreams(r: &mut Reader<'_>, root: &Table<'_, '_>) -> Vec<UpstreamConfig> {
    let Some(value) = root.get("upstream") else {
        r.error_without_line(
            "upstream",
            "no upstream group configured (add an [upstream.NAME] section with \
             backends = [\"ip:port\"])",
        );
        return Vec::new();
    };
    let Some(groups) = r.as_table(value, "upstream".to_owned()) else {
        return Vec::new();
    };
    let mut upstreams = Vec::new();
    for (name, value) in groups.entries() {
        let name_text = name.get_ref().to_string();
        let path = groups.key_path(&name_text);
        if let Err(message) = check_name(&name_text, "upstream group") {
            r.error(name.span(), path.clone(), message);
        }
        let group = match r.as_table(value, path) {
            Some(table) => read_group(r, name_text, &table),
            None => UpstreamConfig::new(name_text, Balance::RoundRobin, Vec::new()),
        };
        upstreams.push(group);
    }
    if upstreams.is_empty() {
        r.error(
            value.span(),
            "upstream",
            "at least one [upstream.NAME] group is required",
        );
    }
    upstreams
}

/// The group `value` (at `path`) names, if it is one of `upstreams`.
pub(super) fn group_named(
    r: &mut Reader<'_>,
    value: &Value<'_>,
    path: String,
    upstreams: &[UpstreamConfig],
) -> Option<String> {
    let name = r.convert(value, path.clone(), string)?;
    if upstreams.iter().any(|group| group.name == name) {
        return Some(name.to_owned());
    }
    // With no group at all, the missing upstream section is the one error to report.
    if !upstreams.is_empty() {
        let message = format!(
            "unknown upstream group {name:?} (defined: {})",
            group_names(upstreams)
        );
        r.error(value.span(), path, message);
    }
    None
}

pub(super) fn group_names(upstreams: &[UpstreamConfig]) -> String {
    let quoted: Vec<String> = upstreams
        .iter()
        .map(|group| format!("{:?}", group.name))
        .collect();
    quoted.join(", ")
}

/// The name of a group or a route table (`what`): letters, digits, '_' and '-'.
pub(super) fn check_name(name: &str, what: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if name.is_empty() || name.len() > MAX_GROUP_NAME_LEN || !name.chars().all(allowed) {
        return Err(format!(
            "invalid {what} name {name:?} (use letters, digits, '_' and '-', \
             at most {MAX_GROUP_NAME_LEN} characters)"
        ));
    }
    Ok(())
}

fn read_group(r: &mut Reader<'_>, name: String, t: &Table<'_, '_>) -> UpstreamConfig {
    r.deny_unknown_keys(t, GROUP_KEYS);
    let default_retry = RetryPolicy::default();
    let tls = read_upstream_tls(r, t);
    UpstreamConfig {
        name,
        balance: read_balance(r, t),
        backends: read_backends(r, t, t.get("tls").is_some()),
        slow_start: r.field(t, "slow_start", duration),
        retry: RetryPolicy {
            retries: r
                .field(t, "retries", integer_in(0..=MAX_RETRIES))
                .unwrap_or(default_retry.retries),
            timeout: r
                .field(t, "retry_timeout", duration)
                .or(default_retry.timeout),
        },
        health: r
            .section(t, "health", HEALTH_KEYS)
            .map(|health| read_health(r, &health)),
        passive: r
            .section(t, "passive", PASSIVE_KEYS)
            .map(|passive| read_passive(r, &passive))
            .unwrap_or_default(),
        tls,
    }
}

fn read_balance(r: &mut Reader<'_>, t: &Table<'_, '_>) -> Balance {
    let balance = r.field_or(t, "balance", Balance::RoundRobin, balance);
    let hash_key = r.field(t, "hash_key", hash_key);
    let metric = r.field(t, "p2c_metric", p2c_metric);
    // With an invalid balance, which refining keys belong is unknown: its error is enough.
    let Some(balance) = balance else {
        return Balance::RoundRobin;
    };
    let name = balance_name(&balance);
    for &(key, owner) in ALGORITHM_KEYS {
        if owner != name {
            let message = format!(
                "{key} only applies to balance = {owner:?} (this group's balance is {name:?})"
            );
            r.error_at_set_key(t, &[key], message);
        }
    }
    match balance {
        Balance::Hash(default) => Balance::Hash(hash_key.unwrap_or(default)),
        Balance::P2c(default) => Balance::P2c(metric.unwrap_or(default)),
        other => other,
    }
}

/// The name `balance = "..."` gives an algorithm.
fn balance_name(balance: &Balance) -> &'static str {
    match balance {
        Balance::RoundRobin => "round_robin",
        Balance::Weighted => "weighted",
        Balance::LeastConn => "least_conn",
        Balance::Hash(_) => "hash",
        Balance::Random => "random",
        Balance::P2c(_) => "p2c",
    }
}

fn balance(value: &DeValue<'_>) -> Result<Balance, String> {
    let name = string(value)?;
    if let Some(known) = ALGORITHMS.iter().find(|a| balance_name(a) == name) {
        return Ok(known.clone());
    }
    let supported: Vec<String> = ALGORITHMS
        .iter()
        .map(|a| format!("{:?}", balance_name(a)))
        .collect();
    Err(format!(
        "unknown balance {name:?} (supported: {})",
        supported.join(", ")
    ))
}

/// `"client_ip"`, `"header:NAME"` or `"cookie:NAME"`.
fn hash_key(value: &DeValue<'_>) -> Result<HashKey, String> {
    let text = string(value)?;
    if text == "client_ip" {
        return Ok(HashKey::ClientIp);
    }
    if let Some(name) = text.strip_prefix("header:") {
        // Header names are case-insensitive; the lower-cased form is what gets compared.
        return token(name, "header").map(|name| HashKey::Header(name.to_ascii_lowercase()));
    }
    if let Some(name) = text.strip_prefix("cookie:") {
        // Cookie names are case-sensitive (RFC 6265), so kept as written.
        return token(name, "cookie").map(|name| HashKey::Cookie(name.to_owned()));
    }
    Err(format!(
        "unknown hash_key {text:?} (expected \"client_ip\", \"header:NAME\" or \"cookie:NAME\")"
    ))
}

/// Header and cookie names are both RFC 9110 tokens.
pub(super) fn token<'a>(name: &'a str, what: &str) -> Result<&'a str, String> {
    if !name.is_empty() && name.bytes().all(is_tchar) {
        return Ok(name);
    }
    Err(format!(
        "invalid {what} name {name:?} (use letters, digits and !#$%&'*+-.^_`|~)"
    ))
}

fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn p2c_metric(value: &DeValue<'_>) -> Result<P2cMetric, String> {
    match string(value)? {
        "inflight" => Ok(P2cMetric::InFlight),
        "latency" => Ok(P2cMetric::Latency),
        other => Err(format!(
            "unknown p2c_metric {other:?} (supported: \"inflight\", \"latency\")"
        )),
    }
}

/// `tls`: the group has a `tls` section, so its backends may name their own `sni`.
fn read_backends(r: &mut Reader<'_>, t: &Table<'_, '_>, tls: bool) -> Vec<BackendConfig> {
    let path = t.key_path("backends");
    let Some(value) = t.get("backends") else {
        r.error(
            t.span(),
            path,
            "missing required key \"backends\" (at least one backend)",
        );
        return Vec::new();
    };
    let DeValue::Array(items) = value.get_ref() else {
        r.error(
            value.span(),
            path,
            wrong_type("an array of backends", value.get_ref()),
        );
        return Vec::new();
    };
    if items.is_empty() {
        r.error(
            value.span(),
            path.clone(),
            "at least one backend is required",
        );
    }
    let mut backends: Vec<BackendConfig> = Vec::new();
    // Whether every item was read: only then can "no primary" be told.
    let mut all_read = true;
    for (index, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{index}]");
        let Some(backend) = read_backend(r, item, item_path.clone(), tls) else {
            all_read = false;
            continue;
        };
        if backends.iter().any(|seen| seen.address == backend.address) {
            let message = format!(
                "backend {} is listed twice in this group (give it a weight instead)",
                backend.address
            );
            r.error(item.span(), item_path, message);
            all_read = false;
            continue;
        }
        backends.push(backend);
    }
    if all_read && !backends.is_empty() && backends.iter().all(|b| b.backup) {
        r.error(
            value.span(),
            path,
            "at least one primary backend is required (backup = true backends only take \
             traffic while every primary is down)",
        );
    }
    backends
}

/// A backend is `"ip:port"` or `{ address = "ip:port", weight = N, max_conns = N,
/// backup = BOOL, drain = BOOL, sni = "NAME" }`.
fn read_backend(
    r: &mut Reader<'_>,
    item: &Value<'_>,
    path: String,
    tls: bool,
) -> Option<BackendConfig> {
    if let DeValue::Table(_) = item.get_ref() {
        let table = r.as_table(item, path)?;
        r.deny_unknown_keys(&table, BACKEND_KEYS);
        let address = r.required(&table, "address", backend_address);
        let weight = r.field(&table, "weight", integer_in(1..=MAX_WEIGHT));
        let max_conns = r.field(&table, "max_conns", integer_in(1..=u32::MAX));
        let backup = r.field(&table, "backup", boolean);
        let drain = r.field(&table, "drain", boolean);
        let sni = r.field(&table, "sni", server_name).map(str::to_owned);
        if !tls {
            let message = "sni only applies to backends reached over TLS (add [upstream.NAME.tls])";
            r.error_at_set_key(&table, &["sni"], message);
        }
        return Some(BackendConfig {
            address: address?,
            weight: weight.unwrap_or(DEFAULT_WEIGHT),
            max_conns,
            // An invalid `backup` reads as primary: it can hide the "no primary" error, never
            // raise a false one.
            backup: backup.unwrap_or(false),
            drain: drain.unwrap_or(false),
            sni,
        });
    }
    let address = r.convert(item, path, |value| match value {
        DeValue::String(address) => parse_backend_address(address),
        other => Err(wrong_type(
            "a backend \"ip:port\" or { address = \"ip:port\", weight = N }",
            other,
        )),
    })?;
    Some(BackendConfig::new(address, DEFAULT_WEIGHT))
}

fn read_health(r: &mut Reader<'_>, t: &Table<'_, '_>) -> HealthCheck {
    let kind = match r.field_or(t, "type", CheckType::Http, check_type) {
        Some(CheckType::Tcp) => {
            for key in HTTP_CHECK_KEYS {
                let message = format!("{key} only applies to type = \"http\" checks");
                r.error_at_set_key(t, &[key], message);
            }
            HealthCheckKind::Tcp
        }
        // An invalid type is reported; the HTTP keys are still checked.
        Some(CheckType::Http) | None => read_http_check(r, t),
    };
    let interval = r.field_or(t, "interval", DEFAULT_CHECK_INTERVAL, duration);
    let timeout = r.field_or(t, "timeout", DEFAULT_CHECK_TIMEOUT, duration);
    if let (Some(interval), Some(timeout)) = (interval, timeout)
        && timeout > interval
    {
        let message = format!(
            "timeout ({timeout:?}) must be at most interval ({interval:?}): a check must \
             end before the next one starts"
        );
        r.error_at_set_key(t, &["timeout", "interval"], message);
    }
    HealthCheck {
        kind,
        interval: interval.unwrap_or(DEFAULT_CHECK_INTERVAL),
        timeout: timeout.unwrap_or(DEFAULT_CHECK_TIMEOUT),
        rise: r
            .field(t, "rise", integer_in(RISE_FALL))
            .unwrap_or(DEFAULT_RISE),
        fall: r
            .field(t, "fall", integer_in(RISE_FALL))
            .unwrap_or(DEFAULT_FALL),
    }
}

#[derive(Clone, Copy)]
enum CheckType {
    Http,
    Tcp,
}

fn check_type(value: &DeValue<'_>) -> Result<CheckType, String> {
    match string(value)? {
        "http" => Ok(CheckType::Http),
        "tcp" => Ok(CheckType::Tcp),
        other => Err(format!(
            "unknown check type {other:?} (supported: \"http\", \"tcp\")"
        )),
    }
}

fn read_http_check(r: &mut Reader<'_>, t: &Table<'_, '_>) -> HealthCheckKind {
    HealthCheckKind::Http {
        path: r
            .field(t, "path", check_path)
            .unwrap_or_else(|| DEFAULT_CHECK_PATH.to_owned()),
        host: r.field(t, "host", check_host),
        expect_status: r
            .field(t, "expect_status", expect_status)
            .unwrap_or(DEFAULT_EXPECT_STATUS),
    }
}

/// The path is sent verbatim in a request line, so it must not be able to break one.
fn check_path(value: &DeValue<'_>) -> Result<String, String> {
    let path = string(value)?;
    if !path.starts_with('/') {
        return Err(format!("check path {path:?} must start with \"/\""));
    }
    if path.len() > MAX_CHECK_PATH_LEN {
        return Err(format!(
            "check path is too long ({} bytes, at most {MAX_CHECK_PATH_LEN})",
            path.len()
        ));
    }
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "check path {path:?} may only hold visible ASCII, without spaces \
             (percent-encode anything else)"
        ));
    }
    Ok(path.to_owned())
}

/// A host name or IP literal, optionally with a port: sent verbatim as the Host header.
fn check_host(value: &DeValue<'_>) -> Result<String, String> {
    let host = string(value)?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._:[]".contains(c);
    if host.is_empty() || host.len() > MAX_CHECK_HOST_LEN || !host.chars().all(allowed) {
        return Err(format!(
            "invalid check host {host:?} (a host name or IP, optionally with :port, \
             at most {MAX_CHECK_HOST_LEN} characters)"
        ));
    }
    Ok(host.to_owned())
}

/// `200`, `"200"` or `"200-399"`.
fn expect_status(value: &DeValue<'_>) -> Result<RangeInclusive<u16>, String> {
    match value {
        DeValue::Integer(_) => integer_in(STATUS_CODES)(value).map(|code| code..=code),
        DeValue::String(text) => parse_status_range(text),
        other => Err(wrong_type(
            "a status like \"200\" or a range like \"200-399\"",
            other,
        )),
    }
}

fn parse_status_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    let code = |digits: &str| {
        let all_digits = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        all_digits.then(|| digits.parse::<u16>().ok()).flatten()
    };
    let (low, high) = text.split_once('-').unwrap_or((text, text));
    let (Some(low), Some(high)) = (code(low), code(high)) else {
        return Err(format!(
            "invalid status range {text:?} (expected a status like \"200\" or a range \
             like \"200-399\")"
        ));
    };
    if let Some(outside) = [low, high].into_iter().find(|c| !STATUS_CODES.contains(c)) {
        return Err(format!(
            "status {outside} is out of range (must be between {} and {})",
            STATUS_CODES.start(),
            STATUS_CODES.end()
        ));
    }
    if low > high {
        return Err(format!("status range {text:?} is reversed"));
    }
    Ok(low..=high)
}

fn read_passive(r: &mut Reader<'_>, t: &Table<'_, '_>) -> PassiveHealth {
    let default = PassiveHealth::default();
    let cooldown = r.field_or(t, "cooldown", default.cooldown, duration);
    let max_cooldown = r.field_or(t, "max_cooldown", default.max_cooldown, duration);
    if let (Some(cooldown), Some(max_cooldown)) = (cooldown, max_cooldown)
        && max_cooldown < cooldown
    {
        let message =
            format!("max_cooldown ({max_cooldown:?}) must be at least cooldown ({cooldown:?})");
        r.error_at_set_key(t, &["max_cooldown", "cooldown"], message);
    }
    PassiveHealth {
        max_fails: r
            .field(t, "max_fails", integer_in(0..=MAX_FAILS))
            .unwrap_or(default.max_fails),
        on_5xx: r.field(t, "on_5xx", boolean).unwrap_or(default.on_5xx),
        cooldown: cooldown.unwrap_or(default.cooldown),
        max_cooldown: max_cooldown.unwrap_or(default.max_cooldown),
        stall: r.field(t, "stall", stall).unwrap_or(default.stall),
    }
}

/// `"auto"`, `"off"` or a duration.
fn stall(value: &DeValue<'_>) -> Result<StallDetection, String> {
    match value {
        DeValue::String(text) if text.as_ref() == "auto" => Ok(StallDetection::Auto),
        DeValue::String(text) if text.as_ref() == "off" => Ok(StallDetection::Off),
        DeValue::String(_) => duration(value)
            .map(StallDetection::After)
            .map_err(|e| format!("{e} (or \"auto\", \"off\")")),
        other => Err(wrong_type("\"auto\", \"off\" or a duration", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{
        addr, assert_error, backend, default_http_check, defaults_with, errors, parse, with_base,
    };
    use crate::config::{ConfigError, ListenerConfig};

    #[test]
    fn every_group_key_is_parsed() {
        let text = r#"
[[listener]]
address = "127.0.0.1:8080"
upstream = "app"

[upstream.app]
balance = "least_conn"
slow_start = "30s"
retries = 0
retry_timeout = "2500ms"
backends = [
  "127.0.0.1:9000",
  { address = "127.0.0.1:9001", weight = 2, max_conns = 100 },
  { address = "127.0.0.1:9002", backup = true },
  { address = "127.0.0.1:9003", backup = false, max_conns = 4294967295 },
]

[upstream.app.health]
type = "http"
path = "/healthz?full=1"
host = "app.internal:8080"
expect_status = "204"
interval = "5s"
timeout = "5s"
rise = 1
fall = 100

[upstream.app.passive]
max_fails = 0
on_5xx = true
cooldown = "1s"
max_cooldown = "1s"
stall = "1500ms"

[upstream.by_header]
balance = "hash"
hash_key = "header:X-Session-Id"
backends = ["127.0.0.1:9100"]
[upstream.by_header.health]
type = "tcp"
interval = "500ms"
timeout = "100ms"

[upstream.by_cookie]
balance = "hash"
hash_key = "cookie:SessionID"
backends = ["127.0.0.1:9200"]
[upstream.by_cookie.health]
expect_status = 200

[upstream.by_ip]
balance = "hash"
hash_key = "client_ip"
backends = ["127.0.0.1:9300"]
[upstream.by_ip.health]
expect_status = "200-299"

[upstream.fast]
balance = "p2c"
p2c_metric = "latency"
backends = ["127.0.0.1:9400"]

[upstream.light]
balance = "p2c"
p2c_metric = "inflight"
backends = ["127.0.0.1:9500"]

[upstream.rand]
balance = "random"
backends = ["127.0.0.1:9600"]

[upstream.weighted]
balance = "weighted"
backends = ["127.0.0.1:9700"]
"#;
        let group = |name: &str, balance: Balance, address: &str| {
            UpstreamConfig::new(name.into(), balance, vec![backend(address, 1)])
        };
        let with_health = |mut group: UpstreamConfig, health: HealthCheck| {
            group.health = Some(health);
            group
        };
        let http_check = |expect_status: RangeInclusive<u16>| HealthCheck {
            kind: HealthCheckKind::Http {
                path: "/".into(),
                host: None,
                expect_status,
            },
            ..default_http_check()
        };
        let app = UpstreamConfig {
            name: "app".into(),
            balance: Balance::LeastConn,
            backends: vec![
                backend("127.0.0.1:9000", 1),
                BackendConfig {
                    max_conns: Some(100),
                    ..backend("127.0.0.1:9001", 2)
                },
                BackendConfig {
                    backup: true,
                    ..backend("127.0.0.1:9002", 1)
                },
                BackendConfig {
                    max_conns: Some(u32::MAX),
                    ..backend("127.0.0.1:9003", 1)
                },
            ],
            slow_start: Some(Duration::from_secs(30)),
            retry: RetryPolicy {
                retries: 0,
                timeout: Some(Duration::from_millis(2500)),
            },
            health: Some(HealthCheck {
                kind: HealthCheckKind::Http {
                    path: "/healthz?full=1".into(),
                    host: Some("app.internal:8080".into()),
                    expect_status: 204..=204,
                },
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(5),
                rise: 1,
                fall: 100,
            }),
            passive: PassiveHealth {
                max_fails: 0,
                on_5xx: true,
                cooldown: Duration::from_secs(1),
                max_cooldown: Duration::from_secs(1),
                stall: StallDetection::After(Duration::from_millis(1500)),
            },
            tls: None,
        };
        let by_header = with_health(
            group(
                "by_header",
                Balance::Hash(HashKey::Header("x-session-id".into())),
                "127.0.0.1:9100",
            ),
            HealthCheck {
                kind: HealthCheckKind::Tcp,
                interval: Duration::from_millis(500),
                timeout: Duration::from_millis(100),
                ..default_http_check()
            },
        );
        let by_cookie = with_health(
            group(
                "by_cookie",
                Balance::Hash(HashKey::Cookie("SessionID".into())),
                "127.0.0.1:9200",
            ),
            http_check(200..=200),
        );
        let by_ip = with_health(
            group("by_ip", Balance::Hash(HashKey::ClientIp), "127.0.0.1:9300"),
            http_check(200..=299),
        );
        // Groups come in name order.
        let expected = defaults_with(
            vec![ListenerConfig::to_upstream(addr("127.0.0.1:8080"), "app")],
            vec![
                app,
                by_cookie,
                by_header,
                by_ip,
                group("fast", Balance::P2c(P2cMetric::Latency), "127.0.0.1:9400"),
                group("light", Balance::P2c(P2cMetric::InFlight), "127.0.0.1:9500"),
                group("rand", Balance::Random, "127.0.0.1:9600"),
                group("weighted", Balance::Weighted, "127.0.0.1:9700"),
            ],
        );
        assert_eq!(parse(&[text]), Ok(expected));
    }

    /// The `app` group of the base file with `lines` appended.
    fn app_group(lines: &[&str]) -> UpstreamConfig {
        parse(&with_base(lines)).unwrap().upstreams.remove(0)
    }

    #[test]
    fn omitted_keys_take_defaults() {
        let plain = app_group(&[]);
        assert_eq!(plain.balance, Balance::RoundRobin);
        assert_eq!(plain.slow_start, None);
        assert_eq!(plain.retry, RetryPolicy::default());
        assert_eq!((plain.retry.retries, plain.retry.timeout), (1, None));
        assert_eq!(plain.health, None);
        assert_eq!(plain.passive, PassiveHealth::default());
        assert_eq!(plain.backends, [backend("127.0.0.1:9000", 1)]);
        assert_eq!(
            (plain.backends[0].max_conns, plain.backends[0].backup),
            (None, false)
        );

        let sections = app_group(&["[upstream.app.health]", "[upstream.app.passive]"]);
        assert_eq!(sections.health, Some(default_http_check()));
        assert_eq!(sections.passive, PassiveHealth::default());

        let tcp = app_group(&["[upstream.app.health]", "type = \"tcp\""]);
        assert_eq!(
            tcp.health,
            Some(HealthCheck {
                kind: HealthCheckKind::Tcp,
                ..default_http_check()
            })
        );
        let hash = app_group(&["balance = \"hash\""]).balance;
        assert_eq!(hash, Balance::Hash(HashKey::ClientIp));
        let p2c = app_group(&["balance = \"p2c\""]).balance;
        assert_eq!(p2c, Balance::P2c(P2cMetric::InFlight));
    }

    #[test]
    fn refining_keys_need_their_algorithm() {
        assert_error(
            &with_base(&["hash_key = \"client_ip\""]),
            Some(6),
            "upstream.app.hash_key",
            "hash_key only applies to balance = \"hash\" (this group's balance is \"round_robin\")",
        );
        assert_error(
            &with_base(&["balance = \"p2c\"", "hash_key = \"cookie:s\""]),
            Some(7),
            "upstream.app.hash_key",
            "hash_key only applies to balance = \"hash\" (this group's balance is \"p2c\")",
        );
        assert_error(
            &with_base(&["balance = \"hash\"", "p2c_metric = \"latency\""]),
            Some(7),
            "upstream.app.p2c_metric",
            "p2c_metric only applies to balance = \"p2c\" (this group's balance is \"hash\")",
        );
        // An unknown balance is the one error: whether the key belongs cannot be told.
        assert_error(
            &with_base(&["balance = \"fastest\"", "p2c_metric = \"latency\""]),
            Some(6),
            "upstream.app.balance",
            "unknown balance \"fastest\"",
        );
    }

    #[test]
    fn hash_keys_are_validated() {
        let cases = [
            (
                "\"ip\"",
                "unknown hash_key \"ip\" (expected \"client_ip\", \"header:NAME\" or \"cookie:NAME\")",
            ),
            ("\"Header:x\"", "unknown hash_key \"Header:x\""),
            (
                "\"header:\"",
                "invalid header name \"\" (use letters, digits and !#$%&'*+-.^_`|~)",
            ),
            ("\"header:X Session\"", "invalid header name \"X Session\""),
            ("\"header:x:y\"", "invalid header name \"x:y\""),
            ("\"cookie:a=b\"", "invalid cookie name \"a=b\""),
            ("\"cookie:caf\u{e9}\"", "invalid cookie name \"caf\u{e9}\""),
            ("1", "expected a string, found an integer"),
        ];
        for (value, message) in cases {
            let line = format!("hash_key = {value}");
            assert_error(
                &with_base(&["balance = \"hash\"", &line]),
                Some(7),
                "upstream.app.hash_key",
                message,
            );
        }
        assert_error(
            &with_base(&["balance = \"p2c\"", "p2c_metric = \"ewma\""]),
            Some(7),
            "upstream.app.p2c_metric",
            "unknown p2c_metric \"ewma\" (supported: \"inflight\", \"latency\")",
        );
    }

    #[test]
    fn retries_and_slow_start_are_range_checked() {
        assert_error(
            &with_base(&["retries = 11"]),
            Some(6),
            "upstream.app.retries",
            "11 is out of range (must be between 0 and 10)",
        );
        assert_error(
            &with_base(&["retries = -1"]),
            Some(6),
            "upstream.app.retries",
            "must be between 0 and 10",
        );
        assert_error(
            &with_base(&["retry_timeout = \"0s\""]),
            Some(6),
            "upstream.app.retry_timeout",
            "must be greater than zero",
        );
        assert_error(
            &with_base(&["slow_start = 30"]),
            Some(6),
            "upstream.app.slow_start",
            "expected a duration with a unit",
        );
        assert_eq!(app_group(&["retries = 10"]).retry.retries, 10);
    }

    #[test]
    fn backend_max_conns_and_backup_are_validated() {
        let cases = [
            (
                "{ address = \"127.0.0.1:81\", max_conns = 0 }",
                "upstream.web.backends[0].max_conns",
                "0 is out of range (must be between 1 and 4294967295)",
            ),
            (
                "{ address = \"127.0.0.1:81\", max_conns = 4294967296 }",
                "upstream.web.backends[0].max_conns",
                "out of range",
            ),
            (
                "{ address = \"127.0.0.1:81\", backup = \"yes\" }",
                "upstream.web.backends[0].backup",
                "expected a boolean (true or false), found a string",
            ),
        ];
        for (backend, key, message) in cases {
            let backends = format!("backends = [{backend}]");
            assert_error(
                &with_base(&["[upstream.web]", &backends]),
                Some(7),
                key,
                message,
            );
        }
    }

    #[test]
    fn a_group_needs_a_primary_backend() {
        assert_error(
            &with_base(&[
                "[upstream.web]",
                "backends = [",
                "  { address = \"127.0.0.1:81\", backup = true },",
                "  { address = \"127.0.0.1:82\", backup = true },",
                "]",
            ]),
            Some(7),
            "upstream.web.backends",
            "at least one primary backend is required",
        );
        assert_error(
            &[
                "[[listener]]",
                "address = \"127.0.0.1:80\"",
                "[[upstream.app.backends]]",
                "address = \"127.0.0.1:81\"",
                "backup = true",
            ],
            Some(3),
            "upstream.app.backends",
            "at least one primary backend is required",
        );
        // A backend that failed to parse may be the primary: only its own error is reported.
        assert_error(
            &with_base(&[
                "[upstream.web]",
                "backends = [\"10.0.0.1\", { address = \"127.0.0.1:82\", backup = true }]",
            ]),
            Some(7),
            "upstream.web.backends[0]",
            "invalid socket address",
        );
    }

    #[test]
    fn http_only_keys_are_refused_for_tcp_checks() {
        let lines = with_base(&[
            "[upstream.app.health]", // 6
            "type = \"tcp\"",        // 7
            "path = \"/\"",          // 8
            "host = \"a\"",          // 9
            "expect_status = 200",   // 10
        ]);
        let found: Vec<(Option<usize>, String, String)> = errors(&lines)
            .into_iter()
            .map(
                |ConfigError {
                     line, key, message, ..
                 }| (line, key, message),
            )
            .collect();
        let expected = |line: usize, key: &str| {
            (
                Some(line),
                format!("upstream.app.health.{key}"),
                format!("{key} only applies to type = \"http\" checks"),
            )
        };
        assert_eq!(
            found,
            [
                expected(8, "path"),
                expected(9, "host"),
                expected(10, "expect_status"),
            ]
        );
    }

    #[test]
    fn health_values_are_validated() {
        let cases = [
            (
                "type = \"udp\"",
                "type",
                "unknown check type \"udp\" (supported: \"http\", \"tcp\")",
            ),
            (
                "path = \"healthz\"",
                "path",
                "check path \"healthz\" must start with \"/\"",
            ),
            (
                "path = \"/a b\"",
                "path",
                "may only hold visible ASCII, without spaces",
            ),
            (
                "path = \"/a\\r\\nX: y\"",
                "path",
                "may only hold visible ASCII",
            ),
            ("host = \"\"", "host", "invalid check host \"\""),
            ("host = \"a b\"", "host", "invalid check host \"a b\""),
            ("host = \"a\\r\\nX: y\"", "host", "invalid check host"),
            (
                "expect_status = 600",
                "expect_status",
                "600 is out of range (must be between 100 and 599)",
            ),
            (
                "expect_status = \"99\"",
                "expect_status",
                "status 99 is out of range (must be between 100 and 599)",
            ),
            (
                "expect_status = \"200-600\"",
                "expect_status",
                "status 600 is out of range",
            ),
            (
                "expect_status = \"399-200\"",
                "expect_status",
                "status range \"399-200\" is reversed",
            ),
            (
                "expect_status = \"2xx\"",
                "expect_status",
                "invalid status range \"2xx\"",
            ),
            (
                "expect_status = \"200-\"",
                "expect_status",
                "invalid status range \"200-\"",
            ),
            (
                "expect_status = \"+200\"",
                "expect_status",
                "invalid status range \"+200\"",
            ),
            (
                "expect_status = [200]",
                "expect_status",
                "expected a status like \"200\" or a range like \"200-399\", found an array",
            ),
            ("interval = \"0s\"", "interval", "must be greater than zero"),
            (
                "rise = 0",
                "rise",
                "0 is out of range (must be between 1 and 100)",
            ),
            (
                "fall = 101",
                "fall",
                "101 is out of range (must be between 1 and 100)",
            ),
            (
                "retries = 1",
                "retries",
                "unknown key \"retries\" (expected one of: type, path, host, expect_status, interval, timeout, rise, fall)",
            ),
        ];
        for (line, key, message) in cases {
            assert_error(
                &with_base(&["[upstream.app.health]", line]),
                Some(7),
                &format!("upstream.app.health.{key}"),
                message,
            );
        }
        assert_error(
            &with_base(&["health = true"]),
            Some(6),
            "upstream.app.health",
            "expected a table, found a boolean",
        );
    }

    #[test]
    fn check_timeout_must_fit_in_the_interval() {
        assert_error(
            &with_base(&[
                "[upstream.app.health]",
                "interval = \"1s\"",
                "timeout = \"1001ms\"",
            ]),
            Some(8),
            "upstream.app.health.timeout",
            "timeout (1.001s) must be at most interval (1s)",
        );
        // Against a default, the key the file sets is the one blamed.
        assert_error(
            &with_base(&["[upstream.app.health]", "timeout = \"3s\""]),
            Some(7),
            "upstream.app.health.timeout",
            "timeout (3s) must be at most interval (2s)",
        );
        assert_error(
            &with_base(&["[upstream.app.health]", "interval = \"500ms\""]),
            Some(7),
            "upstream.app.health.interval",
            "timeout (1s) must be at most interval (500ms)",
        );
        // An invalid interval gives its own error only.
        assert_error(
            &with_base(&[
                "[upstream.app.health]",
                "interval = \"1\"",
                "timeout = \"5s\"",
            ]),
            Some(7),
            "upstream.app.health.interval",
            "expected an integer followed by a unit",
        );
    }

    #[test]
    fn passive_values_are_validated() {
        let cases = [
            (
                "max_fails = 1001",
                "max_fails",
                "1001 is out of range (must be between 0 and 1000)",
            ),
            (
                "on_5xx = 1",
                "on_5xx",
                "expected a boolean (true or false), found an integer",
            ),
            ("cooldown = \"0s\"", "cooldown", "must be greater than zero"),
            ("max_cooldown = \"25h\"", "max_cooldown", "too long"),
            (
                "cooldown = \"10m\"",
                "cooldown",
                "max_cooldown (300s) must be at least cooldown (600s)",
            ),
            (
                "max_cooldown = \"9s\"",
                "max_cooldown",
                "max_cooldown (9s) must be at least cooldown (10s)",
            ),
            (
                "fall = 3",
                "fall",
                "unknown key \"fall\" (expected one of: max_fails, on_5xx, cooldown, max_cooldown, stall)",
            ),
            ("stall = \"soon\"", "stall", "(or \"auto\", \"off\")"),
            (
                "stall = 5",
                "stall",
                "expected \"auto\", \"off\" or a duration, found an integer",
            ),
        ];
        for (line, key, message) in cases {
            assert_error(
                &with_base(&["[upstream.app.passive]", line]),
                Some(7),
                &format!("upstream.app.passive.{key}"),
                message,
            );
        }
        assert_error(
            &with_base(&[
                "[upstream.app.passive]",
                "cooldown = \"1m\"",
                "max_cooldown = \"30s\"",
            ]),
            Some(8),
            "upstream.app.passive.max_cooldown",
            "max_cooldown (30s) must be at least cooldown (60s)",
        );
    }
}
