//! `[upstream.NAME]` groups: backends, balancing, retries, active and passive health checks.

use std::ops::RangeInclusive;
use std::time::Duration;

use toml::de::DeValue;

use super::address::{backend_address, parse_backend_address};
use super::reader::{Reader, Table, Value, boolean, duration, integer_in, string, wrong_type};
use super::{
    BackendConfig, Balance, HashKey, HealthCheck, HealthCheckKind, P2cMetric, PassiveHealth,
    RetryPolicy, UpstreamConfig,
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
];
const BACKEND_KEYS: &[&str] = &["address", "weight", "max_conns", "backup"];
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
const PASSIVE_KEYS: &[&str] = &["max_fails", "on_5xx", "cooldown", "max_cooldown"];

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
        if let Err(message) = check_group_name(&name_text) {
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

fn check_group_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if name.is_empty() || name.len() > MAX_GROUP_NAME_LEN || !name.chars().all(allowed) {
        return Err(format!(
            "invalid upstream group name {name:?} (use letters, digits, '_' and '-', \
             at most {MAX_GROUP_NAME_LEN} characters)"
        ));
    }
    Ok(())
}

fn read_group(r: &mut Reader<'_>, name: String, t: &Table<'_, '_>) -> UpstreamConfig {
    r.deny_unknown_keys(t, GROUP_KEYS);
    let default_retry = RetryPolicy::default();
    UpstreamConfig {
        name,
        balance: read_balance(r, t),
        backends: read_backends(r, t),
        slow_start: r.field(t, "slow_start", duration),
        retry: RetryPolicy {
            retries: r
                .field(t, "retries", integer_in(0..=MAX_RETRIES))
                .unwrap_or(default_retry.retries),
            timeout: r
                .field(t, "retry_timeout", duration)
                .unwrap_or(default_retry.timeout),
        },
        health: r
            .section(t, "health", HEALTH_KEYS)
            .map(|health| read_health(r, &health)),
        passive: r
            .section(t, "passive", PASSIVE_KEYS)
            .map(|passive| read_passive(r, &passive))
            .unwrap_or_default(),
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
fn token<'a>(name: &'a str, what: &str) -> Result<&'a str, String> {
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

fn read_backends(r: &mut Reader<'_>, t: &Table<'_, '_>) -> Vec<BackendConfig> {
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
        let Some(backend) = read_backend(r, item, item_path.clone()) else {
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
/// backup = BOOL }`.
fn read_backend(r: &mut Reader<'_>, item: &Value<'_>, path: String) -> Option<BackendConfig> {
    if let DeValue::Table(_) = item.get_ref() {
        let table = r.as_table(item, path)?;
        r.deny_unknown_keys(&table, BACKEND_KEYS);
        let address = r.required(&table, "address", backend_address);
        let weight = r.field(&table, "weight", integer_in(1..=MAX_WEIGHT));
        let max_conns = r.field(&table, "max_conns", integer_in(1..=u32::MAX));
        let backup = r.field(&table, "backup", boolean);
        return Some(BackendConfig {
            address: address?,
            weight: weight.unwrap_or(DEFAULT_WEIGHT),
            max_conns,
            // An invalid `backup` reads as primary: it can hide the "no primary" error, never
            // raise a false one.
            backup: backup.unwrap_or(false),
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
    }
}
