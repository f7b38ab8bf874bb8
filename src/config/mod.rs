//! Validated configuration: what every other module reads.
//!
//! The types here are the *checked* form. `file` turns a TOML document into them (with
//! errors that name file, line and key); `main.rs` builds the same types from CLI flags.
//! Durations are `std::time::Duration`, addresses are resolved `SocketAddr`s, so nothing
//! downstream re-validates.

use std::net::SocketAddr;
use std::time::Duration;

pub mod file;

pub use file::{ConfigError, ConfigErrors, load_file, parse_str};

/// The whole process configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub runtime: RuntimeConfig,
    pub listeners: Vec<ListenerConfig>,
    /// Upstream groups, referenced by name from listeners (and, later, routes).
    pub upstreams: Vec<UpstreamConfig>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub pool: PoolConfig,
    pub forwarded: ForwardedHeaders,
}

/// Thread-per-core runtime settings (`[runtime]`).
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConfig {
    /// Number of workers; `None` = one per listed CPU, or one per available core.
    pub workers: Option<usize>,
    /// Explicit CPU ids to pin to (one worker per listed core). Empty = all available.
    pub cpus: Vec<usize>,
    /// Pin each worker to its core.
    pub pin: bool,
    /// Fall back to the epoll driver (with a warning) when io_uring is unavailable.
    pub allow_epoll: bool,
    /// io_uring submission queue entries per worker.
    pub ring_entries: u32,
}

/// One `[[listener]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub address: SocketAddr,
    /// Name of the upstream group requests on this listener go to.
    pub upstream: String,
}

/// One `[upstream.NAME]` group.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    pub name: String,
    pub balance: Balance,
    pub backends: Vec<BackendConfig>,
}

/// Load-balancing algorithm of a group. More arrive with the balancing issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    pub address: SocketAddr,
    pub weight: u32,
}

/// Every wait in the proxy has one of these bounds (`[timeouts]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From connection accept (or end of previous response) to a complete request head,
    /// once the first byte of the head arrived.
    pub client_header: Duration,
    /// Idle keep-alive: waiting for the first byte of the next request.
    pub client_idle: Duration,
    pub backend_connect: Duration,
    /// From the request fully sent to the backend's response head.
    pub backend_response: Duration,
    /// Longest gap between two reads or writes while a body (or tunnel) streams.
    pub body_idle: Duration,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    pub drain: Duration,
}

/// Size limits (`[limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line; a longer one gets 414.
    pub max_request_line: usize,
    /// Largest request head (line + headers); a larger one gets 431.
    pub max_header_bytes: usize,
    /// Most header fields in one request head; more gets 431.
    pub max_headers: usize,
    /// Largest response head accepted from a backend; larger gives 502.
    pub max_response_header_bytes: usize,
}

/// Backend keep-alive pool, per worker (`[pool]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    pub max_idle_per_backend: usize,
    pub idle_timeout: Duration,
}

/// Which X-Forwarded-* headers the proxy adds (`[forwarded]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardedHeaders {
    /// Append the client address to X-Forwarded-For.
    pub x_forwarded_for: bool,
    /// Set X-Forwarded-Proto (replacing any the client sent).
    pub x_forwarded_proto: bool,
    /// Set X-Forwarded-Host to the request's Host (replacing any the client sent).
    pub x_forwarded_host: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            workers: None,
            cpus: Vec::new(),
            pin: true,
            allow_epoll: false,
            ring_entries: 1024,
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            client_header: Duration::from_secs(10),
            client_idle: Duration::from_secs(60),
            backend_connect: Duration::from_secs(3),
            backend_response: Duration::from_secs(60),
            body_idle: Duration::from_secs(60),
            drain: Duration::from_secs(30),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_line: 8 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_response_header_bytes: 16 * 1024,
        }
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_idle_per_backend: 256,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl Default for ForwardedHeaders {
    fn default() -> Self {
        Self {
            x_forwarded_for: true,
            x_forwarded_proto: true,
            x_forwarded_host: true,
        }
    }
}
