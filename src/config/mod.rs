//! Validated configuration: what every other module reads.
//!
//! The types here are the *checked* form. `file` turns a TOML document into them (with
//! errors that name file, line and key); `main.rs` builds the same types from CLI flags.
//! Durations are `std::time::Duration`, addresses are resolved `SocketAddr`s, so nothing
//! downstream re-validates.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod access_log;
mod address;
mod admin;
mod cpus;
mod duration;
pub mod file;
mod origin;
mod reader;
mod route_action;
mod routes;
#[cfg(test)]
mod test_support;
mod tls;
mod upstream;

pub use address::{listeners_clash, parse_backend_address, parse_listen_address};
pub use admin::{Cidr, parse_admin_address, parse_admin_token};
pub use cpus::{format_cpu_list, parse_cpu_list};
pub use duration::parse_duration;
pub use file::{ConfigError, ConfigErrors, MAX_WORKERS, load_file, parse_str};
pub use origin::Origin;

/// The whole process configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub runtime: RuntimeConfig,
    pub listeners: Vec<ListenerConfig>,
    /// Upstream groups, referenced by name from listeners and routes.
    pub upstreams: Vec<UpstreamConfig>,
    /// Named route tables (`[routes.NAME]`), referenced by name from listeners; several
    /// listeners may share one.
    pub routes: Vec<RouteTableConfig>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub pool: PoolConfig,
    pub forwarded: ForwardedHeaders,
    /// The admin listener (`[admin]`, `--admin`); `None`: off.
    pub admin: Option<AdminConfig>,
    /// The access log (`[access_log]`); `None`: off.
    pub access_log: Option<AccessLogConfig>,
    /// The process's own log on stderr (`[log]`, `--log-level`, `--log-format`).
    pub log: LogConfig,
    /// Where each setting was written, for errors found after loading.
    pub origin: Origin,
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
    /// How often a worker refreshes its view of the other workers' per-backend load
    /// (least_conn, p2c on in-flight, max_conns).
    pub reconcile_interval: Duration,
    /// Where the running process writes its pid (`ringproxy reload` reads it).
    pub pid_file: Option<PathBuf>,
    /// Count and time requests for `/metrics` and `/status`.
    pub metrics: bool,
}

/// One `[[listener]]`: it sends every request to one upstream group, or through a route
/// table.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub address: SocketAddr,
    /// Name of the upstream group requests on this listener go to; empty when `routes` is
    /// set.
    pub upstream: String,
    /// Name of the route table (`routes = "NAME"`) requests on this listener go through.
    /// `None`: everything goes to `upstream`, as one catch-all route would send it.
    pub routes: Option<String>,
    /// `[listener.tls]`: TLS is terminated on this listener; `None` = plain HTTP.
    pub tls: Option<TlsConfig>,
}

/// `[listener.tls]`: the certificates a listener serves and how it speaks TLS. The files are
/// read and checked by `crate::tls::load`, which places its errors with `Config::origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// At least one, in configuration order (the `cert`/`key` pair first).
    pub certificates: Vec<CertificateFiles>,
    pub min_version: TlsVersion,
    /// `strict_sni = true`: a client whose SNI name no certificate has, or that sends none,
    /// gets a handshake failure instead of the default certificate.
    pub strict_sni: bool,
    /// `prefer_client_ciphers = true`: the client's order of cipher suites decides, not the
    /// server's (AES-128-GCM first).
    pub prefer_client_ciphers: bool,
    /// `key_exchange = [...]`: the groups offered for the key exchange; `None` = the
    /// provider's default set.
    pub key_exchange: Option<Vec<KeyExchange>>,
    /// `Strict-Transport-Security` added to relayed responses; `None` = not added.
    pub hsts: Option<Hsts>,
}

/// One certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// Relative paths in a file are resolved against the file's directory when loaded.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A DER OCSP response to staple (`ocsp = "FILE"`), refreshed by whoever fetches it and
    /// read again at each reload.
    pub ocsp: Option<PathBuf>,
    /// Marked `default = true`: served to clients that send no SNI name, or a name no
    /// certificate has. Without a mark, the first certificate is the default.
    pub default: bool,
    /// Dotted key path of the table that names the files (`listener[0].tls`,
    /// `listener[0].tls.certificates[1]`): errors found when reading them are placed there.
    pub setting: String,
}

/// Lowest TLS version a listener accepts (`min_version = "1.2" | "1.3"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// A key exchange group a TLS listener may use (`key_exchange = [...]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyExchange {
    /// The post-quantum hybrid of X25519 and ML-KEM-768 (TLS 1.3 only).
    X25519Mlkem768,
    X25519,
    P256,
    P384,
}

/// `Strict-Transport-Security: max-age=N[; includeSubDomains]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hsts {
    pub max_age: u64,
    pub include_subdomains: bool,
}

impl TlsConfig {
    /// A listener serving one certificate with every other setting at its default.
    pub fn single(cert: PathBuf, key: PathBuf, setting: String) -> Self {
        Self {
            certificates: vec![CertificateFiles {
                cert,
                key,
                ocsp: None,
                default: false,
                setting,
            }],
            min_version: TlsVersion::Tls12,
            strict_sni: false,
            prefer_client_ciphers: false,
            key_exchange: None,
            hsts: None,
        }
    }
}

impl ListenerConfig {
    /// A listener sending everything to the group `upstream`.
    pub fn to_upstream(address: SocketAddr, upstream: impl Into<String>) -> Self {
        Self {
            address,
            upstream: upstream.into(),
            routes: None,
            tls: None,
        }
    }
}

/// One `[routes.NAME]` table: an ordered list of routes, the first match wins.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteTableConfig {
    pub name: String,
    /// In the order written; at least one.
    pub routes: Vec<RouteConfig>,
}

/// One `[[routes.NAME.route]]`: which requests it takes, and what it does with them.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    pub conditions: RouteMatch,
    pub action: RouteAction,
}

/// What a request must have for a route to take it: every condition set must hold; an
/// unset condition holds for every request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RouteMatch {
    /// Any of these hosts (lower-cased); empty: any host, including none.
    pub hosts: Vec<HostPattern>,
    /// The normalised request path; `None`: any path (and `OPTIONS *`).
    pub path: Option<PathPattern>,
    /// Any of these methods (case-sensitive); empty: any method.
    pub methods: Vec<String>,
    pub header: Option<HeaderCondition>,
}

/// A `host` entry; ports are not part of it (a request's port is ignored).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// `example.com`, `10.0.0.1` or `[::1]`, lower-cased.
    Exact(String),
    /// `*.example.com`, stored as `example.com`: matches names with one or more labels
    /// before it (`a.example.com`, `a.b.example.com`), not `example.com` itself.
    Wildcard(String),
}

/// A `path` or `path_prefix`, in normal form (see `crate::route::normalize`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    /// `path = "/health"`: that path only.
    Exact(String),
    /// `path_prefix = "/api"`: `/api` and everything under `/api/`, not `/apix`. A prefix
    /// ending in `/` (`"/api/"`) matches the paths that start with it.
    Prefix(String),
}

/// `header = { name = "...", value = "..." }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderCondition {
    /// Lower-cased.
    pub name: String,
    /// `None`: present with any value; else one field line of that name has exactly this
    /// value (case-sensitive, without surrounding whitespace).
    pub value: Option<String>,
}

/// What a route does with a request it takes.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteAction {
    Proxy(ProxyAction),
    Redirect(RedirectAction),
    Respond(RespondAction),
}

/// `upstream = "NAME"` and how the request and response are changed on the way.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProxyAction {
    pub upstream: String,
    pub path_rewrite: Option<PathRewrite>,
    pub request_headers: HeaderEdits,
    pub response_headers: HeaderEdits,
}

/// How the (normalised) path is changed before it is forwarded; the query is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRewrite {
    /// `strip_prefix = "/api"`: `/api/users` is forwarded as `/users`, `/api` as `/`.
    Strip(String),
    /// `replace_prefix = "/v2"` on a route with `path_prefix = "/api"`: `/api/users` is
    /// forwarded as `/v2/users`.
    Replace { prefix: String, with: String },
}

/// `set_*_headers` and `remove_*_headers`: removals first, then each set replaces every
/// field of its name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderEdits {
    /// Names as written (sent as written), each once, in name order.
    pub set: Vec<(String, String)>,
    /// Lower-cased.
    pub remove: Vec<String>,
}

/// `redirect = { status = 301, ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectAction {
    /// 301, 302, 307 or 308.
    pub status: u16,
    pub target: RedirectTarget,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirectTarget {
    /// `location = "https://example.com/"`: sent as is.
    Location(String),
    /// The request's own URL with some parts replaced; at least one is set.
    Parts {
        /// `"http"` or `"https"`; `None`: the listener's.
        scheme: Option<String>,
        /// `host[:port]`, lower-cased; `None`: the request's Host.
        host: Option<String>,
        /// Replaces the path and query; `None`: the request's kept, as received.
        path: Option<String>,
    },
}

/// `respond = { status = 200, headers = { ... }, body = "..." }`: answered by the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RespondAction {
    pub status: u16,
    /// Names as written, each once, in name order; `Content-Type: text/plain;
    /// charset=utf-8` added when there is a body and no Content-Type.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// One `[upstream.NAME]` group.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    pub name: String,
    pub balance: Balance,
    pub backends: Vec<BackendConfig>,
    /// Ramp a recovered backend's share of traffic up over this long (after an active check
    /// brings it up, or a passive probe succeeds).
    pub slow_start: Option<Duration>,
    pub retry: RetryPolicy,
    /// Active checks (`[upstream.NAME.health]`); `None` = no active checks.
    pub health: Option<HealthCheck>,
    /// Passive checks (`[upstream.NAME.passive]`).
    pub passive: PassiveHealth,
    /// `[upstream.NAME.tls]`: TLS to the backends; `None` = plain HTTP.
    pub tls: Option<UpstreamTlsConfig>,
}

/// `[upstream.NAME.tls]`: how the group's backends are reached over TLS. The files are read
/// and checked by `crate::tls::load`, which places its errors with `Config::origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTlsConfig {
    /// PEM CA certificates the backends' certificates must chain to; `None` = the system's
    /// trusted roots.
    pub ca: Option<PathBuf>,
    /// The name sent as SNI and checked against the certificate of each backend without its
    /// own `sni`; `None` = the backend's IP address (checked against the certificate's IP
    /// addresses; SNI cannot carry one, so none is sent).
    pub sni: Option<String>,
    /// A client certificate and key for backends that ask for one (mutual TLS).
    pub client_cert: Option<CertificateFiles>,
    /// `verify = false`: any certificate is accepted. Only ever set explicitly.
    pub verify: bool,
    /// Dotted key path of the section (`upstream.NAME.tls`): errors found when reading its
    /// files are placed on its keys.
    pub setting: String,
}

/// Load-balancing algorithm of a group (`balance = "..."`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    /// Rotation; honours weights (smooth weighted round robin, as nginx).
    RoundRobin,
    /// Same algorithm as `RoundRobin`; the name users of other proxies look for.
    Weighted,
    /// Fewest in-flight requests host-wide (per-core counts, reconciled), weight-scaled.
    LeastConn,
    /// Consistent hashing on a request key; minimal remapping when backends come and go.
    Hash(HashKey),
    /// Uniformly random (weighted).
    Random,
    /// Power of two random choices, comparing the given load metric.
    P2c(P2cMetric),
}

/// What `balance = "hash"` hashes (`hash_key = "client_ip" | "header:NAME" | "cookie:NAME"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    ClientIp,
    /// Header name, lower-cased.
    Header(String),
    Cookie(String),
}

/// What `balance = "p2c"` compares (`p2c_metric = "inflight" | "latency"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum P2cMetric {
    InFlight,
    /// EWMA of response-head latency ("least response time").
    Latency,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    pub address: SocketAddr,
    pub weight: u32,
    /// Most concurrent requests host-wide; `None` = unlimited.
    pub max_conns: Option<u32>,
    /// Used only when every primary backend of the group is down.
    pub backup: bool,
    /// Takes no new requests; its in-flight ones finish (set, then reload, to take a backend
    /// out for maintenance).
    pub drain: bool,
    /// Over TLS, the name this backend is sent as SNI and verified against, instead of the
    /// group's `tls.sni`.
    pub sni: Option<String>,
}

/// Retries on another backend (`[upstream.NAME]` keys `retries`, `retry_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Further attempts after the first, each on a different backend where possible.
    pub retries: u32,
    /// No new attempt starts once this long has passed since the first one began. `None`:
    /// long enough that an attempt ending in a connect or response timeout can still be
    /// retried (see `RetryPolicy::budget`).
    pub timeout: Option<Duration>,
}

impl RetryPolicy {
    /// How long after the first attempt began a retry may still start: the configured
    /// `retry_timeout`, or by default the longest a first attempt can take before its
    /// connect or response timeout fires (with a second for the request's write and the
    /// timer sweep), so that a timed-out request is never left without its retry.
    pub fn budget(&self, timeouts: &Timeouts) -> Duration {
        self.timeout.unwrap_or_else(|| {
            timeouts.backend_connect + timeouts.backend_response + Duration::from_secs(1)
        })
    }
}

/// Active health check of every backend in a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: HealthCheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes that bring a down backend up.
    pub rise: u32,
    /// Consecutive failures that take an up backend down.
    pub fall: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheckKind {
    /// A TCP connect that succeeds within the timeout.
    Tcp,
    /// `GET path` with `Host: host` answered with a status in `expect_status`.
    Http {
        path: String,
        host: Option<String>,
        expect_status: std::ops::RangeInclusive<u16>,
    },
}

/// Passive checks: ejecting a backend that fails real requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveHealth {
    /// Consecutive failed attempts that eject: no connection, a reset or close before or
    /// instead of a response head, a timeout, an invalid response head, and 5xx when
    /// `on_5xx`. 0 disables passive checks.
    pub max_fails: u32,
    pub on_5xx: bool,
    /// First ejection lasts this long; each further one in a row doubles it...
    pub cooldown: Duration,
    /// ...up to this.
    pub max_cooldown: Duration,
    /// When a backend that answers nothing while the group's other backends answer counts
    /// as stalled (see `StallDetection`).
    pub stall: StallDetection,
}

/// Stalled-backend detection (`passive.stall`): a backend that has left a request without a
/// response head for this long, and has answered nothing since that request was sent while
/// other backends of its group answered, is ejected at once, and the idempotent requests
/// waiting on it are moved to other backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StallDetection {
    Off,
    /// After `STALL_AUTO_FACTOR` times the backend's recent response time, and at least
    /// `STALL_AUTO_MIN`.
    Auto,
    After(Duration),
}

impl StallDetection {
    /// How long a request may wait for its response head on a backend whose recent response
    /// time is `typical` before the backend is suspected of stalling; `None` when off.
    pub fn budget(self, typical: Option<Duration>) -> Option<Duration> {
        match self {
            Self::Off => None,
            Self::After(budget) => Some(budget),
            Self::Auto => {
                let scaled = typical.map_or(Duration::ZERO, |t| t * STALL_AUTO_FACTOR);
                Some(scaled.max(STALL_AUTO_MIN))
            }
        }
    }
}

/// `stall = "auto"` waits this many times a backend's recent response time...
pub const STALL_AUTO_FACTOR: u32 = 8;
/// ...and never less than this: well above the response time of a healthy backend under
/// load, short enough that a hung one costs its waiting clients about a second.
pub const STALL_AUTO_MIN: Duration = Duration::from_secs(1);

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 1,
            timeout: None,
        }
    }
}

impl Default for PassiveHealth {
    fn default() -> Self {
        Self {
            max_fails: 3,
            on_5xx: false,
            cooldown: Duration::from_secs(10),
            max_cooldown: Duration::from_secs(300),
            stall: StallDetection::Auto,
        }
    }
}

impl UpstreamConfig {
    /// A group with every optional setting at its default.
    pub fn new(name: String, balance: Balance, backends: Vec<BackendConfig>) -> Self {
        Self {
            name,
            balance,
            backends,
            slow_start: None,
            retry: RetryPolicy::default(),
            health: None,
            passive: PassiveHealth::default(),
            tls: None,
        }
    }
}

impl BackendConfig {
    pub fn new(address: SocketAddr, weight: u32) -> Self {
        Self {
            address,
            weight,
            max_conns: None,
            backup: false,
            drain: false,
            sni: None,
        }
    }
}

/// Every wait in the proxy has one of these bounds (`[timeouts]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To receive a complete request head: on a new connection counted from accept, on a
    /// kept-alive one from the head's first byte. Expiry: 408 (or a silent close if nothing
    /// was received).
    pub client_header: Duration,
    /// Idle keep-alive: waiting for the first byte of the next request.
    pub client_idle: Duration,
    pub backend_connect: Duration,
    /// From the request fully sent to the backend's response head.
    pub backend_response: Duration,
    /// Longest gap between two reads or writes while a body (or tunnel) streams.
    pub body_idle: Duration,
    /// Client waiting time a body may take before `Limits::min_body_rate` applies: the
    /// credit a client starts a body with (each byte earns `1 / min_body_rate` more).
    pub body_rate_grace: Duration,
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
    /// Bytes per second a client must keep up, on average over the time the proxy waits on
    /// it, while it sends a request body or reads a response body (after
    /// `Timeouts::body_rate_grace`); 0 = no floor. Too slow: 408 for a request body, the
    /// connection reset for a response body.
    pub min_body_rate: u64,
}

/// Backend keep-alive pool, per worker (`[pool]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    pub max_idle_per_backend: usize,
    pub idle_timeout: Duration,
}

/// The headers the proxy adds to the requests it forwards (`[forwarded]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedHeaders {
    /// Append the client address to X-Forwarded-For.
    pub x_forwarded_for: bool,
    /// Set X-Forwarded-Proto (replacing any the client sent).
    pub x_forwarded_proto: bool,
    /// Set X-Forwarded-Host to the request's Host (replacing any the client sent).
    pub x_forwarded_host: bool,
    /// The proxy's entry appended to Via (RFC 9110 7.6.3); `None` adds none.
    pub via: Option<ViaEntry>,
    /// The request id's header field name, as written (`X-Request-Id`): a client's valid id
    /// is kept, else one is generated; it goes to the backend and into the access log.
    /// `None`: no request id.
    pub request_id: Option<String>,
}

/// The request id header unless configured otherwise.
pub const DEFAULT_REQUEST_ID: &str = "X-Request-Id";

/// The proxy's name in Via unless configured otherwise.
pub const DEFAULT_VIA: &str = "ringproxy";

/// The proxy's entry in the Via of forwarded requests: its received-by (a pseudonym,
/// optionally with `:port`), and the field line for each version a request may come in
/// with, built once so that forwarding a request copies one slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViaEntry {
    received_by: String,
    http10_line: Box<[u8]>,
    http11_line: Box<[u8]>,
}

impl ViaEntry {
    /// The entry for `received_by`, which the caller has validated.
    pub fn new(received_by: &str) -> Self {
        let line = |version: &str| format!("Via: {version} {received_by}\r\n").into_bytes();
        Self {
            received_by: received_by.to_owned(),
            http10_line: line("1.0").into(),
            http11_line: line("1.1").into(),
        }
    }

    pub fn received_by(&self) -> &str {
        &self.received_by
    }

    /// `Via: 1.0 NAME\r\n`, for a request received as HTTP/1.0.
    pub fn http10_line(&self) -> &[u8] {
        &self.http10_line
    }

    /// `Via: 1.1 NAME\r\n`, for a request received as HTTP/1.1.
    pub fn http11_line(&self) -> &[u8] {
        &self.http11_line
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            workers: None,
            cpus: Vec::new(),
            pin: true,
            allow_epoll: false,
            ring_entries: 1024,
            reconcile_interval: Duration::from_millis(50),
            pid_file: None,
            metrics: true,
            // Off: on the 2026-12-03 machine batching cost 8% at 50 connections and
            // 45% with two workers on Connection: close (perf/RESULTS.md).
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
            body_rate_grace: Duration::from_secs(30),
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
            // Apache's mod_reqtimeout default (500 B/s) rounded up: a phone on a bad 2G link
            // still moves several KiB/s, a 1-byte-per-5-s trickle is cut after the grace.
            min_body_rate: 512,
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
            via: Some(ViaEntry::new(DEFAULT_VIA)),
            request_id: Some(DEFAULT_REQUEST_ID.to_owned()),
        }
    }
}

/// Name of the upstream group built from `--upstream` flags.
pub const CLI_GROUP: &str = "default";

impl Config {
    /// The configuration `ringproxy --listen A --upstream B ...` means: every listener proxies
    /// to one round-robin group of all upstreams; everything else takes its default.
    pub fn for_cli(listen: Vec<SocketAddr>, upstreams: Vec<SocketAddr>) -> Self {
        let listeners = listen
            .into_iter()
            .map(|address| ListenerConfig::to_upstream(address, CLI_GROUP))
            .collect();
        let backends = upstreams
            .into_iter()
            .map(|address| BackendConfig::new(address, 1))
            .collect();
        Self {
            runtime: RuntimeConfig::default(),
            listeners,
            upstreams: vec![UpstreamConfig::new(
                CLI_GROUP.to_string(),
                Balance::RoundRobin,
                backends,
            )],
            routes: Vec::new(),
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            pool: PoolConfig::default(),
            forwarded: ForwardedHeaders::default(),
            admin: None,
            access_log: None,
            log: LogConfig::default(),
            origin: Origin::default(),
        }
    }
}

/// `[admin]`: where the admin listener serves `/metrics` and `/status`, and who may ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub address: SocketAddr,
    /// When set, every request needs `Authorization: Bearer TOKEN` (else 401).
    pub token: Option<String>,
    /// When not empty, clients outside these networks get 403.
    pub allow: Vec<Cidr>,
}

impl AdminConfig {
    pub fn at(address: SocketAddr) -> Self {
        Self {
            address,
            token: None,
            allow: Vec::new(),
        }
    }
}

/// `[access_log]`: one line per request, written by a thread of its own (`access_log`).
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogConfig {
    /// The file lines are appended to; reopened on SIGUSR1 (after logrotate renamed it).
    pub path: PathBuf,
    pub format: AccessLogFormat,
    /// The share of requests logged, in (0, 1]: 0.01 logs one request in 100.
    pub sample: f64,
    /// Each worker's line buffer: lines go to the writer thread in batches of up to this
    /// many bytes (or every timer tick, 50 ms).
    pub buffer_bytes: usize,
}

/// The access log's line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// nginx's `combined` (Apache's), followed by the proxy's fields as `key=value`.
    Combined,
    /// One JSON object per line.
    Json,
}

impl AccessLogConfig {
    pub const DEFAULT_BUFFER_BYTES: usize = 64 * 1024;

    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            format: AccessLogFormat::Combined,
            sample: 1.0,
            buffer_bytes: Self::DEFAULT_BUFFER_BYTES,
        }
    }
}

/// `[log]`: what the process says on stderr, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    pub level: crate::log::Level,
    pub format: crate::log::Format,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: crate::log::Level::Info,
            format: crate::log::Format::Text,
        }
    }
}
