//! The configuration file (`ringproxy.toml`): format reference and loader.
//!
//! Every key is optional unless marked *required*; an omitted key or section takes the
//! default shown. Unknown keys are errors (a typo must not be silently ignored), and the
//! loader reports every problem it finds at once, each as `file:line: key: message`.
//!
//! ```toml
//! [runtime]
//! workers = 4             # 1..=1024; default: one per `cpus` entry, or one per available core
//! cpus = "0-2,6"          # or an array [0, 1]; default: all available cores.
//!                         # CPU ids are below 1024, each listed once; with both
//!                         # `workers` and `cpus`, workers must equal the number of CPUs
//! pin = true              # pin each worker to its core; default true
//! allow_epoll = false     # fall back to epoll when io_uring is unavailable; default false
//! ring_entries = 1024     # io_uring entries per worker: a power of two in 256..=32768
//! reconcile_interval = "50ms"  # how often workers refresh each other's per-backend load
//!                         # (least_conn, p2c, max_conns); 1ms..=10s
//! pid_file = "/run/ringproxy/ringproxy.pid"  # written once ready, removed at exit;
//!                         # what `ringproxy reload` and `ringproxy upgrade` signal
//!                         # (relative: to this file's directory); default: none
//! metrics = true          # count and time requests for /metrics and /status; false
//!                         # counts nothing (the admin endpoints then show zeros)
//!
//! [[listener]]            # at least one; repeat the section for more listeners
//! address = "0.0.0.0:8080"  # required: ip:port or [ipv6]:port, unique among listeners
//! upstream = "app"        # name of an upstream group; may be omitted when exactly
//!                         # one group exists
//! # routes = "main"       # instead of upstream: the route table requests go through
//!                         # (see [routes.NAME] below)
//!
//! [listener.tls]          # HTTPS: terminate TLS on this listener; no section: plain HTTP
//! cert = "site.pem"       # PEM certificate chain, the server's certificate first
//! key = "site.key"        # PEM private key (RSA, ECDSA or Ed25519) matching it
//!                         # (cert and key: both, or neither when certificates lists some;
//!                         # paths relative to this file's directory)
//! ocsp = "site.ocsp.der"  # DER OCSP response to staple, refreshed out of band then
//!                         # reloaded; missing: a warning, served without; default: none
//! min_version = "1.2"     # lowest TLS version accepted: "1.2" (default) or "1.3"
//! strict_sni = false      # true: an unknown SNI name, or none, fails the handshake
//! prefer_client_ciphers = false  # true: the client's cipher suite order decides
//! key_exchange = ["X25519MLKEM768", "X25519", "P-256", "P-384"]  # groups offered
//!                         # instead of getting the default certificate
//! hsts = 31536000         # add Strict-Transport-Security: max-age=N to relayed
//!                         # responses; 0..=315360000 seconds; default: not added
//! hsts_include_subdomains = false  # ...; includeSubDomains (needs hsts)
//!
//! [[listener.tls.certificates]]  # more certificates, after cert/key; repeat the section
//! cert = "other.pem"      # required
//! key = "other.key"       # required
//! # ocsp = "other.ocsp.der"
//! default = false         # served to clients without SNI or with a name no certificate
//!                         # has; at most one; default: the first certificate
//! # A client's SNI name picks the certificate whose subjectAltName DNS names hold it:
//! # exactly, else a "*.example.com" entry for one more label; first configured wins.
//! # The files are read at --check and at start: an unreadable file, a key that does
//! # not match its certificate, an expired or not yet valid certificate are errors; one
//! # expiring within 14 days is a warning (FILE:LINE: KEY: warning: ...).
//!
//! [upstream.app]          # at least one group; the name (here "app") uses letters,
//!                         # digits, '_' and '-', at most 64 characters
//! balance = "round_robin" # round_robin: smooth weighted rotation (as nginx);
//!                         # weighted: the same; least_conn: fewest in-flight requests
//!                         # host-wide, weight-scaled; hash: consistent hashing on
//!                         # hash_key; random: weighted random; p2c: the better of two
//!                         # random picks by p2c_metric
//! hash_key = "client_ip"  # only with balance = "hash": "client_ip" (default),
//!                         # "header:NAME" or "cookie:NAME" (NAME an HTTP token; header
//!                         # names match case-insensitively, cookie names exactly)
//! p2c_metric = "inflight" # only with balance = "p2c": "inflight" (default) | "latency"
//! slow_start = "30s"      # ramp a recovered backend's share up over this long; default off
//! retries = 1             # 0..=10 further attempts, each on another backend
//! retry_timeout = "64s"   # no retry starts later than this after the first attempt;
//!                         # default backend_connect + backend_response + 1s, so that a
//!                         # request that timed out can still be retried
//! backends = [            # required, at least one, at least one of them primary
//!     "127.0.0.1:9000",                          # weight 1
//!     { address = "127.0.0.1:9001", weight = 2 }, # weight 1..=1000, default 1
//!     { address = "127.0.0.1:9002", max_conns = 100 },  # >= 1; default unlimited
//!     { address = "127.0.0.1:9003", backup = true },    # used only while every
//!                                                      # primary is down; default false
//!     { address = "127.0.0.1:9004", drain = true },     # no new requests, in-flight
//!                                                      # ones finish; default false
//!     { address = "127.0.0.1:9005", sni = "b.internal" }, # only with [upstream.app.tls]:
//!                                                      # this backend's name, instead of
//!                                                      # the group's tls.sni
//! ]
//! # Long lists may use one section per backend instead of `backends = [...]`:
//! # [[upstream.app.backends]]
//! # address = "127.0.0.1:9004"
//! # weight = 3
//!
//! [upstream.app.tls]      # TLS to the backends; no section: plain HTTP. An empty section
//!                         # verifies each backend's certificate against the system's
//!                         # roots and the backend's IP address
//! ca = "certs/internal-ca.pem" # PEM CA certificates to verify with instead of the
//!                         # system's roots (read again at each reload)
//! sni = "app.internal"    # the name sent as SNI and required in each backend's certificate
//!                         # (a backend's own sni comes first); an IP address is verified
//!                         # but not sent; default: the backend's IP address
//! cert = "certs/proxy-client.pem" # a client certificate (PEM chain) for backends that ask
//! key = "certs/proxy-client.key"  # for one (mutual TLS); both or neither
//! verify = true           # false accepts any certificate (a warning at every load); only
//!                         # for tests: anyone on the path can then read the traffic;
//!                         # not with ca
//! # Checked at --check and at start as listener certificates are; a handshake failure is a
//! # connect failure (logged, counted by passive checks, retried on another backend).
//!
//! [upstream.app.health]   # active checks, one per backend per process; no section: none
//! type = "http"           # "http" | "tcp" (a connect within the timeout)
//! path = "/"              # http only; starts with "/", visible ASCII, at most 1024 bytes
//! host = "app.internal"   # http only; Host header; default: the backend's ip:port
//! expect_status = "200-399" # http only; 200, "200" or "200-399", within 100..=599
//! interval = "2s"
//! timeout = "1s"          # at most interval
//! rise = 2                # consecutive successes that bring a down backend up; 1..=100
//! fall = 3                # consecutive failures that take an up backend down; 1..=100
//!
//! [upstream.app.passive]  # eject backends that fail real requests
//! max_fails = 3           # consecutive failures (connect errors, timeouts) that eject;
//!                         # 0..=1000, 0 disables passive checks
//! on_5xx = false          # count 5xx responses as failures too
//! cooldown = "10s"        # first ejection; each further one in a row doubles it...
//! max_cooldown = "5m"     # ...up to this; at least cooldown
//! stall = "auto"          # a backend that answers nothing for this long while the group's
//!                         # other backends answer is ejected at once, and its waiting
//!                         # idempotent requests move to them: "auto" (8x the backend's
//!                         # recent response time, at least 1s), a duration, or "off"
//!                         # (for long-polling services); needs max_fails > 0
//!
//! [routes.main]           # a route table; any number; the name as for upstream groups.
//!                         # Listeners name it (routes = "main"), several may share it;
//!                         # a table no listener names is an error
//! [[routes.main.route]]   # at least one, at most 65,534; the FIRST route, in file order, whose
//!                         # conditions all hold takes the request (not the most
//!                         # specific one); none: 404 from the proxy
//! # Conditions; an omitted one holds for every request:
//! host = "api.example.com" # or a list; "*.example.com" matches one or more labels
//!                         # before it (a.example.com, a.b.example.com) but not
//!                         # example.com; "10.0.0.1", "[::1]". Case-insensitive; no
//!                         # port (a request's port and trailing dot are ignored)
//! path_prefix = "/api"    # /api, /api/ and /api/..., not /apix; "/api/" only /api/...
//! # path = "/health"      # instead of path_prefix: exactly this path
//!                         # Paths are matched on the request's normalised path: %XX of
//!                         # letters, digits and -._~ decoded, other %XX kept (upper-case
//!                         # hex; %2F is data, not a separator), "." and ".." segments
//!                         # resolved, "//" collapsed; the query is not matched. A request
//!                         # path above the root or with a broken % gets 400. A path
//!                         # written here must be in that normal form
//! methods = ["GET", "HEAD"] # or one string; case-sensitive; GET does not imply HEAD
//! header = { name = "X-Canary", value = "1" }  # without value: present with any value;
//!                         # value: one field line of that name equals it exactly
//! # Exactly one action:
//! upstream = "app"        # proxy to this group, forwarding the normalised path and the
//!                         # query as received; optionally:
//! strip_prefix = "/api"   # /api/users is forwarded as /users, /api as /; a segment prefix
//!                         # of the route's path or path_prefix, without trailing "/"
//! # replace_prefix = "/v2" # instead: the route's path_prefix becomes this (/api/users to
//!                         # /v2/users); ends with "/" exactly when path_prefix does
//! set_request_headers = { "X-Route" = "api" }  # replaces every field of the name
//! remove_request_headers = ["Cookie"]          # removed before the sets apply
//! set_response_headers = { "Cache-Control" = "no-store" }
//! remove_response_headers = ["Server"]
//!                         # header names are tokens, each once; values visible ASCII,
//!                         # spaces and tabs, at most 4096 bytes; Connection, Content-Length,
//!                         # Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding and
//!                         # Upgrade are the proxy's own; a request keeps its Host
//! # redirect = { status = 308, scheme = "https" }  # 301, 302, 307 or 308 (required);
//!                         # location = "https://example.com/" (sent as written: an
//!                         # http(s) URL or a "/path"), or any of scheme ("http" |
//!                         # "https"), host ("name[:port]") and path (replaces the path
//!                         # and query) to change in the request's URL, whose host is
//!                         # used without its port and whose target is kept as received
//! # respond = { status = 200, headers = { "Content-Type" = "text/plain" }, body = "ok" }
//!                         # answered by the proxy: status 200..=599 (required); body at
//!                         # most 8192 bytes, none with 204 or 304; Content-Type defaults
//!                         # to text/plain; charset=utf-8 when there is a body
//! # Reserved for later per-route features, each a sub-table of the route: cache,
//! # limits, auth, filter (an error now, saying it is not supported yet).
//! # --check also reports a route that can never match: one whose every request an
//! # earlier route in the same table takes (a duplicate is named as such).
//!
//! [timeouts]              # durations: an integer and a unit (us, ms, s, m, h), > 0, <= 24h
//! client_header = "10s"   # from connection accept (or end of previous response)
//!                         # to a complete request head, once its first byte arrived
//! client_idle = "60s"     # idle keep-alive: waiting for the next request
//! backend_connect = "3s"
//! backend_response = "60s"  # from request sent to the backend's response head
//! body_idle = "60s"       # longest gap between two reads or writes of a body
//! body_rate_grace = "30s" # client waiting time a body may take before min_body_rate
//!                         # applies; each byte moved adds 1/min_body_rate seconds
//! drain = "30s"           # on SIGTERM/SIGINT, how long in-flight requests may take;
//!                         # idle keep-alive connections close after the first 1 s of it
//!
//! [limits]
//! max_request_line = 8192           # bytes, >= 64; a longer request line gets 414
//! max_header_bytes = 16384          # bytes, >= max_request_line, <= 1 MiB; larger gets 431
//! max_headers = 100                 # 1..=128; more header fields get 431
//! max_response_header_bytes = 16384 # bytes, 64..=1 MiB; a larger backend head gets 502
//! min_body_rate = 512               # bytes/s, 0..=1 GiB, 0 = off: a client sending a request
//!                                   # body (408) or reading a response body (closed) must
//!                                   # keep this average over the time spent waiting on it,
//!                                   # after body_rate_grace
//!
//! [pool]                  # idle backend connections kept per worker
//! max_idle_per_backend = 256  # 0..=65536; 0 closes every backend connection after use
//! idle_timeout = "60s"
//!
//! [forwarded]             # headers added to requests sent to backends
//! x_forwarded_for = true   # append the client address
//! x_forwarded_proto = true # set (replacing what the client sent)
//! x_forwarded_host = true  # set to the request's Host (replacing what the client sent)
//! via = "ringproxy"        # append "1.1 ringproxy" to Via (1.0 for HTTP/1.0 clients): a
//!                          # name (an HTTP token, optionally ":PORT", at most 255 bytes),
//!                          # true for "ringproxy", or false to add none
//! request_id = "X-Request-Id" # the request id: the client's kept when it sends one field
//!                          # of 1..=128 letters, digits and -_.:+/=@, else 32 hex digits
//!                          # generated (its fields dropped); forwarded and in the access
//!                          # log. A header name (an HTTP token the proxy does not set
//!                          # itself), true for "X-Request-Id", or false for none
//!
//! [admin]                 # the admin listener (GET /metrics, GET /status); no section
//!                         # and no --admin flag: off
//! address = "127.0.0.1:9901"  # required in the section: ip:port, or a bare port meaning
//!                         # 127.0.0.1:PORT (--admin ADDR sets or overrides it); not a
//!                         # listener's address
//! token = "s3cret"        # optional: every request needs Authorization: Bearer s3cret,
//!                         # else 401; 1..=256 bytes of visible ASCII
//! allow = ["127.0.0.1/32", "::1"]  # optional, not empty: client networks (ip/prefix or
//!                         # an ip); others get 403; default: any client
//!
//! [access_log]            # a line per request; no section: off. A reload keeps the
//!                         # running settings (they change at the next start)
//! path = "/var/log/ringproxy/access.log"  # required in the section; appended to, created
//!                         # (mode 0640) if missing, reopened on SIGUSR1 (relative: to this
//!                         # file's directory)
//! format = "combined"     # "combined": nginx's combined, then key=value fields; "json":
//!                         # one object per line
//! sample = 1.0            # the share of requests logged, above 0 and at most 1 (0.01: one
//!                         # in 100 of each worker's requests, evenly spread)
//! buffer_bytes = 65536    # each worker's buffer of lines, handed to the writer thread when
//!                         # full or every 50 ms; 4096..=16 MiB. When the writer falls
//!                         # behind, lines are dropped and counted, never waited for
//!
//! [log]                   # the process's own log on stderr; a reload applies it
//! level = "info"          # "error", "warn", "info" or "debug" (--log-level overrides)
//! format = "text"         # "text" ("ringproxy: ..." lines) or "json", one object per
//!                         # line with time, level, msg, and worker and peer where known
//!                         # (--log-format overrides)
//! ```
//!
//! Backend and listener addresses are IP literals: host names are not resolved when the
//! file is loaded. A listener on port 0 gets a port from the kernel (printed at start);
//! a backend needs a real port.

use std::fmt;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::access_log::{ACCESS_LOG_KEYS, LOG_KEYS, read_access_log, read_log, request_id};
use super::address::{listen_address, listeners_clash};
use super::admin::{ADMIN_KEYS, read_admin};
use super::cpus::{CPU_ID_LIMIT, CpuListBuilder, parse_cpu_list};
use super::reader::{Reader, Table, boolean, duration, integer_in, wrong_type};
use super::routes::{ReadTable, listener_routes, read_route_tables, report_unused_tables};
use super::tls::read_listener_tls;
use super::upstream::{group_named, group_names, read_upstreams, token};
use super::{
    Config, ForwardedHeaders, Limits, ListenerConfig, Origin, PoolConfig, RuntimeConfig, Timeouts,
    UpstreamConfig, ViaEntry,
};
use crate::plural::count;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; `None` when the problem is not at one place (unreadable file, missing section).
    pub line: Option<usize>,
    /// Dotted key path, e.g. `upstream.app.backends[1]`; empty for the file as a whole.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a configuration file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Larger files are refused rather than read: a config is a few KiB, and this bounds memory.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

const TOP_LEVEL_KEYS: &[&str] = &[
    "runtime",
    "listener",
    "upstream",
    "routes",
    "timeouts",
    "limits",
    "pool",
    "forwarded",
    "admin",
    "access_log",
    "log",
];
const RUNTIME_KEYS: &[&str] = &[
    "workers",
    "cpus",
    "pin",
    "allow_epoll",
    "ring_entries",
    "reconcile_interval",
    "pid_file",
    "metrics",
];
const LISTENER_KEYS: &[&str] = &["address", "upstream", "routes", "tls"];
const TIMEOUT_KEYS: &[&str] = &[
    "client_header",
    "client_idle",
    "backend_connect",
    "backend_response",
    "body_idle",
    "body_rate_grace",
    "drain",
];
const LIMIT_KEYS: &[&str] = &[
    "max_request_line",
    "max_header_bytes",
    "max_headers",
    "max_response_header_bytes",
    "min_body_rate",
];
const POOL_KEYS: &[&str] = &["max_idle_per_backend", "idle_timeout"];
const FORWARDED_KEYS: &[&str] = &[
    "x_forwarded_for",
    "x_forwarded_proto",
    "x_forwarded_host",
    "via",
    "request_id",
];

/// The most workers a configuration may ask for, in the file or with `--workers`.
pub const MAX_WORKERS: usize = 1024;
const RING_ENTRIES: std::ops::RangeInclusive<u32> = 256..=32768;
const MAX_HEAD_BYTES: usize = 1024 * 1024;
const MIN_HEAD_BYTES: usize = 64;
const MAX_HEADERS: usize = 128;
/// A floor above any link a client could be on would cut every client: 1 GiB/s.
const MAX_MIN_BODY_RATE: u64 = 1 << 30;
const MAX_IDLE_PER_BACKEND: usize = 65536;
/// Longest `forwarded.via` name: a host name's length, and a bound on what every forwarded
/// request carries.
const MAX_VIA_NAME: usize = 255;
/// Longer, and the workers' views of each other's load drift too far apart to balance on.
const MAX_RECONCILE_INTERVAL: Duration = Duration::from_secs(10);

/// Reads and validates the configuration file at `path`.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let file_name = path.display().to_string();
    match read_bounded(path) {
        Ok(text) => parse_str(&text, &file_name),
        Err(message) => Err(ConfigErrors(vec![ConfigError {
            file: file_name,
            line: None,
            key: String::new(),
            message,
        }])),
    }
}

fn read_bounded(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|error| format!("cannot open: {error}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("cannot read: {error}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "file is larger than {MAX_FILE_BYTES} bytes; is it a config file?"
        ));
    }
    String::from_utf8(bytes).map_err(|error| {
        format!(
            "file is not valid UTF-8 (at byte {})",
            error.utf8_error().valid_up_to()
        )
    })
}

/// Parses and validates configuration text; `file_name` only labels the errors.
pub fn parse_str(text: &str, file_name: &str) -> Result<Config, ConfigErrors> {
    let mut reader = Reader::new(text, file_name);
    let document = match DeTable::parse(text) {
        Ok(document) => document,
        Err(error) => {
            let span = error.span().unwrap_or(0..0);
            reader.error(span, "", format!("invalid TOML: {}", error.message()));
            return Err(reader.into_errors());
        }
    };
    let mut config = read_config(&mut reader, &Table::root(&document));
    config.origin = reader.origin();
    reader.finish(config)
}

fn read_config(r: &mut Reader<'_>, root: &Table<'_, '_>) -> Config {
    r.deny_unknown_keys(root, TOP_LEVEL_KEYS);
    let upstreams = read_upstreams(r, root);
    let tables = read_route_tables(r, root, &upstreams);
    let runtime = r
        .section(root, "runtime", RUNTIME_KEYS)
        .map(|t| read_runtime(r, &t));
    let timeouts = r
        .section(root, "timeouts", TIMEOUT_KEYS)
        .map(|t| read_timeouts(r, &t));
    let limits = r
        .section(root, "limits", LIMIT_KEYS)
        .map(|t| read_limits(r, &t));
    let pool = r.section(root, "pool", POOL_KEYS).map(|t| read_pool(r, &t));
    let forwarded = r
        .section(root, "forwarded", FORWARDED_KEYS)
        .map(|t| read_forwarded(r, &t));
    let mut named_tables = Vec::new();
    let listeners = read_listeners(r, root, &upstreams, &tables, &mut named_tables);
    report_unused_tables(r, &tables, &named_tables);
    let admin = r
        .section(root, "admin", ADMIN_KEYS)
        .and_then(|t| read_admin(r, &t, &listeners));
    let access_log = r
        .section(root, "access_log", ACCESS_LOG_KEYS)
        .and_then(|t| read_access_log(r, &t));
    let log = r.section(root, "log", LOG_KEYS).map(|t| read_log(r, &t));
    Config {
        runtime: runtime.unwrap_or_default(),
        listeners,
        upstreams,
        routes: tables.into_iter().map(|t| t.config).collect(),
        timeouts: timeouts.unwrap_or_default(),
        limits: limits.unwrap_or_default(),
        pool: pool.unwrap_or_default(),
        forwarded: forwarded.unwrap_or_default(),
        admin,
        access_log,
        log: log.unwrap_or_default(),
        origin: Origin::default(),
    }
}

fn read_runtime(r: &mut Reader<'_>, t: &Table<'_, '_>) -> RuntimeConfig {
    let default = RuntimeConfig::default();
    let workers = r.field(t, "workers", integer_in(1..=MAX_WORKERS));
    let cpus = read_cpus(r, t);
    if let (Some(workers), Some(value), Some(cpus)) = (workers, t.get("workers"), &cpus)
        && !cpus.is_empty()
        && workers != cpus.len()
    {
        let message = format!(
            "workers = {workers} but cpus lists {}; one worker runs per listed CPU, \
             so make them agree or omit workers",
            count(cpus.len(), "CPU")
        );
        r.error(value.span(), t.key_path("workers"), message);
    }
    RuntimeConfig {
        workers,
        cpus: cpus.unwrap_or_default(),
        pin: r.field(t, "pin", boolean).unwrap_or(default.pin),
        metrics: r.field(t, "metrics", boolean).unwrap_or(default.metrics),
        allow_epoll: r
            .field(t, "allow_epoll", boolean)
            .unwrap_or(default.allow_epoll),
        reconcile_interval: r
            .field(
                t,
                "reconcile_interval",
                duration_at_most(MAX_RECONCILE_INTERVAL),
            )
            .unwrap_or(default.reconcile_interval),
        ring_entries: r
            .field(t, "ring_entries", ring_entries)
            .unwrap_or(default.ring_entries),
        pid_file: {
            let dir = super::tls::config_dir(r.file());
            r.field(t, "pid_file", |v| super::tls::file_path(v, &dir))
        },
    }
}

/// `cpus` as a list string (`"0-3,6"`) or an array of ids, each array item checked on its
/// own. Empty when absent; `None` when invalid (the errors are recorded).
fn read_cpus(r: &mut Reader<'_>, t: &Table<'_, '_>) -> Option<Vec<usize>> {
    let Some(value) = t.get("cpus") else {
        return Some(Vec::new());
    };
    let path = t.key_path("cpus");
    r.record_line(&path, &value.span());
    let DeValue::Array(items) = value.get_ref() else {
        return r.convert(value, path, |value| match value {
            DeValue::String(list) => parse_cpu_list(list),
            other => Err(wrong_type(
                "a CPU list like \"0-3,6\" or an array of CPU ids",
                other,
            )),
        });
    };
    if items.is_empty() {
        let message = "CPU list is empty (omit cpus to use all available cores)";
        r.error(value.span(), path, message);
        return None;
    }
    let mut cpus = CpuListBuilder::new();
    let mut valid = true;
    for (index, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{index}]");
        let pushed = r
            .convert(item, item_path.clone(), integer_in(0..=CPU_ID_LIMIT - 1))
            .map(|id| cpus.push(id));
        match pushed {
            Some(Ok(())) => {}
            Some(Err(message)) => {
                r.error(item.span(), item_path, message);
                valid = false;
            }
            None => valid = false,
        }
    }
    if valid { cpus.finish().ok() } else { None }
}

/// A duration no longer than `max`.
fn duration_at_most(max: Duration) -> impl Fn(&DeValue<'_>) -> Result<Duration, String> {
    move |value| {
        let d = duration(value)?;
        if d > max {
            return Err(format!("{d:?} is too long (at most {max:?})"));
        }
        Ok(d)
    }
}

fn ring_entries(value: &DeValue<'_>) -> Result<u32, String> {
    let entries = integer_in(RING_ENTRIES)(value)?;
    if !entries.is_power_of_two() {
        return Err(format!(
            "{entries} is not a power of two (e.g. 512, 1024, 2048)"
        ));
    }
    Ok(entries)
}

/// The listeners; `named_tables` gets every route table a listener names, valid or not.
fn read_listeners(
    r: &mut Reader<'_>,
    root: &Table<'_, '_>,
    upstreams: &[UpstreamConfig],
    tables: &[ReadTable],
    named_tables: &mut Vec<String>,
) -> Vec<ListenerConfig> {
    let Some(value) = root.get("listener") else {
        r.error_without_line(
            "listener",
            "no listener configured (add a [[listener]] section with address = \"ip:port\")",
        );
        return Vec::new();
    };
    let DeValue::Array(items) = value.get_ref() else {
        let message = wrong_type("an array of tables (write [[listener]])", value.get_ref());
        r.error(value.span(), "listener", message);
        return Vec::new();
    };
    if items.is_empty() {
        r.error(
            value.span(),
            "listener",
            "at least one listener is required",
        );
    }
    let mut listeners = Vec::new();
    // Where each address was first seen, so a duplicate names the listener it clashes with.
    let mut seen: Vec<(SocketAddr, String, usize)> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let Some(table) = r.as_table(item, format!("listener[{index}]")) else {
            continue;
        };
        r.deny_unknown_keys(&table, LISTENER_KEYS);
        let address = r.required(&table, "address", listen_address);
        if let (Some(address), Some(value)) = (address, table.get("address")) {
            let line = r.line_of(value.span().start);
            let clash = seen.iter().find(|(a, ..)| listeners_clash(*a, address));
            if let Some((_, other, other_line)) = clash {
                let message =
                    format!("address {address} is already used by {other} (line {other_line})");
                r.error(value.span(), table.key_path("address"), message);
            } else {
                seen.push((address, table.path().to_owned(), line));
            }
        }
        let tls = read_listener_tls(r, &table);
        if let Some(routes) = table.get("routes") {
            if let DeValue::String(name) = routes.get_ref() {
                named_tables.push(name.to_string());
            }
            if table.get("upstream").is_some() {
                let message = "set upstream (every request to one group) or routes (a route \
                               table), not both: a route table names its upstreams itself";
                r.error_at_set_key(&table, &["upstream"], message);
            }
            let routes = listener_routes(r, routes, table.key_path("routes"), tables);
            if let (Some(address), Some(routes)) = (address, routes) {
                listeners.push(ListenerConfig {
                    address,
                    upstream: String::new(),
                    routes: Some(routes),
                    tls,
                });
            }
            continue;
        }
        let upstream = listener_upstream(r, &table, upstreams);
        if let (Some(address), Some(upstream)) = (address, upstream) {
            listeners.push(ListenerConfig {
                tls,
                ..ListenerConfig::to_upstream(address, upstream)
            });
        }
    }
    listeners
}

/// The group a listener sends to: the one it names, or the only one defined.
fn listener_upstream(
    r: &mut Reader<'_>,
    t: &Table<'_, '_>,
    upstreams: &[UpstreamConfig],
) -> Option<String> {
    let path = t.key_path("upstream");
    let Some(value) = t.get("upstream") else {
        return match upstreams {
            [only] => Some(only.name.clone()),
            [] => None, // reported once, as the missing upstream section
            _ => {
                let message = format!(
                    "missing key \"upstream\": it may only be omitted when exactly one \
                     upstream group is defined (defined: {})",
                    group_names(upstreams)
                );
                r.error(t.span(), path, message);
                None
            }
        };
    };
    group_named(r, value, path, upstreams)
}

fn read_timeouts(r: &mut Reader<'_>, t: &Table<'_, '_>) -> Timeouts {
    let default = Timeouts::default();
    let mut read = |key: &str, default: Duration| r.field(t, key, duration).unwrap_or(default);
    Timeouts {
        client_header: read("client_header", default.client_header),
        client_idle: read("client_idle", default.client_idle),
        backend_connect: read("backend_connect", default.backend_connect),
        backend_response: read("backend_response", default.backend_response),
        body_idle: read("body_idle", default.body_idle),
        body_rate_grace: read("body_rate_grace", default.body_rate_grace),
        drain: read("drain", default.drain),
    }
}

fn read_limits(r: &mut Reader<'_>, t: &Table<'_, '_>) -> Limits {
    let default = Limits::default();
    let head_bytes = integer_in(MIN_HEAD_BYTES..=MAX_HEAD_BYTES);
    let request_line = r.field_or(t, "max_request_line", default.max_request_line, &head_bytes);
    let header_bytes = r.field_or(t, "max_header_bytes", default.max_header_bytes, &head_bytes);
    if let (Some(request_line), Some(header_bytes)) = (request_line, header_bytes)
        && header_bytes < request_line
    {
        let message = format!(
            "max_header_bytes ({header_bytes}) must be at least max_request_line \
             ({request_line}): the request line is part of the head"
        );
        r.error_at_set_key(t, &["max_header_bytes", "max_request_line"], message);
    }
    Limits {
        max_request_line: request_line.unwrap_or(default.max_request_line),
        max_header_bytes: header_bytes.unwrap_or(default.max_header_bytes),
        max_headers: r
            .field(t, "max_headers", integer_in(1..=MAX_HEADERS))
            .unwrap_or(default.max_headers),
        max_response_header_bytes: r
            .field(t, "max_response_header_bytes", &head_bytes)
            .unwrap_or(default.max_response_header_bytes),
        min_body_rate: r
            .field(t, "min_body_rate", integer_in(0..=MAX_MIN_BODY_RATE))
            .unwrap_or(default.min_body_rate),
    }
}

fn read_pool(r: &mut Reader<'_>, t: &Table<'_, '_>) -> PoolConfig {
    let default = PoolConfig::default();
    PoolConfig {
        max_idle_per_backend: r
            .field(
                t,
                "max_idle_per_backend",
                integer_in(0..=MAX_IDLE_PER_BACKEND),
            )
            .unwrap_or(default.max_idle_per_backend),
        idle_timeout: r
            .field(t, "idle_timeout", duration)
            .unwrap_or(default.idle_timeout),
    }
}

fn read_forwarded(r: &mut Reader<'_>, t: &Table<'_, '_>) -> ForwardedHeaders {
    let default = ForwardedHeaders::default();
    let mut read = |key: &str, default: bool| r.field(t, key, boolean).unwrap_or(default);
    ForwardedHeaders {
        x_forwarded_for: read("x_forwarded_for", default.x_forwarded_for),
        x_forwarded_proto: read("x_forwarded_proto", default.x_forwarded_proto),
        x_forwarded_host: read("x_forwarded_host", default.x_forwarded_host),
        via: r.field(t, "via", via_entry).unwrap_or(default.via),
        request_id: r
            .field(t, "request_id", request_id)
            .unwrap_or(default.request_id),
    }
}

/// `forwarded.via`: the proxy's received-by in Via, `pseudonym [":" port]` (RFC 9110 7.6.3,
/// a pseudonym being a token), `true` for the default name, or `false` for no Via.
fn via_entry(value: &DeValue<'_>) -> Result<Option<ViaEntry>, String> {
    let name = match value {
        DeValue::Boolean(false) => return Ok(None),
        DeValue::Boolean(true) => return Ok(ForwardedHeaders::default().via),
        DeValue::String(name) => name,
        other => {
            return Err(wrong_type(
                "a name (\"ringproxy\", \"edge-1:8080\") or false",
                other,
            ));
        }
    };
    if name.len() > MAX_VIA_NAME {
        return Err(format!("longer than {MAX_VIA_NAME} bytes"));
    }
    if name.is_empty() {
        return Err("empty; write false to send no Via".to_owned());
    }
    let (pseudonym, port) = match name.split_once(':') {
        Some((pseudonym, port)) => (pseudonym, Some(port)),
        None => (name.as_ref(), None),
    };
    token(pseudonym, "via")?;
    let valid_port = |port: &str| {
        (1..=5).contains(&port.len())
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok()
    };
    if let Some(port) = port
        && !valid_port(port)
    {
        return Err(format!(
            "invalid port {port:?} in via {name:?} (a name, optionally followed by :PORT)"
        ));
    }
    Ok(Some(ViaEntry::new(name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{
        BASE, addr, assert_error, backend, default_http_check, defaults_with, errors, parse,
        with_base,
    };
    use crate::config::{AccessLogConfig, Balance, LogConfig};

    #[test]
    fn full_file_sets_every_value() {
        let text = r#"
[runtime]
workers = 4
cpus = "0-2,6"
pin = false
allow_epoll = true
ring_entries = 4096
reconcile_interval = "7ms"

[[listener]]
address = "0.0.0.0:8080"
upstream = "app"

[[listener]]
address = "[::1]:8443"
upstream = "static"

[upstream.app]
balance = "round_robin"
backends = ["127.0.0.1:9000", { address = "127.0.0.1:9001", weight = 2 }]

[upstream.static]
backends = [{ address = "[fd00::5]:80" }]

[timeouts]
client_header = "5s"
client_idle = "2m"
backend_connect = "250ms"
backend_response = "1h"
body_idle = "30s"
body_rate_grace = "45s"
drain = "10s"

[limits]
max_request_line = 4096
max_header_bytes = 65536
max_headers = 64
max_response_header_bytes = 32768
min_body_rate = 2048

[pool]
max_idle_per_backend = 0
idle_timeout = "90s"

[forwarded]
x_forwarded_for = false
x_forwarded_proto = true
x_forwarded_host = false
via = "edge-1:8080"
request_id = "X-Trace"

[access_log]
path = "/var/log/ringproxy/access.log"
sample = 0.5

[log]
level = "warn"
"#;
        let expected = Config {
            runtime: RuntimeConfig {
                workers: Some(4),
                cpus: vec![0, 1, 2, 6],
                pin: false,
                allow_epoll: true,
                ring_entries: 4096,
                reconcile_interval: Duration::from_millis(7),
                pid_file: None,
                metrics: true,
            },
            listeners: vec![
                ListenerConfig::to_upstream(addr("0.0.0.0:8080"), "app"),
                ListenerConfig::to_upstream(addr("[::1]:8443"), "static"),
            ],
            upstreams: vec![
                UpstreamConfig::new(
                    "app".into(),
                    Balance::RoundRobin,
                    vec![backend("127.0.0.1:9000", 1), backend("127.0.0.1:9001", 2)],
                ),
                UpstreamConfig::new(
                    "static".into(),
                    Balance::RoundRobin,
                    vec![backend("[fd00::5]:80", 1)],
                ),
            ],
            routes: Vec::new(),
            timeouts: Timeouts {
                client_header: Duration::from_secs(5),
                client_idle: Duration::from_secs(120),
                backend_connect: Duration::from_millis(250),
                backend_response: Duration::from_secs(3600),
                body_idle: Duration::from_secs(30),
                body_rate_grace: Duration::from_secs(45),
                drain: Duration::from_secs(10),
            },
            limits: Limits {
                max_request_line: 4096,
                max_header_bytes: 65536,
                max_headers: 64,
                max_response_header_bytes: 32768,
                min_body_rate: 2048,
            },
            pool: PoolConfig {
                max_idle_per_backend: 0,
                idle_timeout: Duration::from_secs(90),
            },
            forwarded: ForwardedHeaders {
                x_forwarded_for: false,
                x_forwarded_proto: true,
                x_forwarded_host: false,
                via: Some(ViaEntry::new("edge-1:8080")),
                request_id: Some("X-Trace".to_owned()),
            },
            admin: None,
            access_log: Some(AccessLogConfig {
                sample: 0.5,
                ..AccessLogConfig::new("/var/log/ringproxy/access.log".into())
            }),
            log: LogConfig {
                level: crate::log::Level::Warn,
                ..LogConfig::default()
            },
            origin: Origin::default(),
        };
        assert_eq!(parse_str(text, "full.toml"), Ok(expected));
    }

    #[test]
    fn omitted_sections_and_keys_take_defaults() {
        let expected = defaults_with(
            vec![ListenerConfig::to_upstream(addr("127.0.0.1:8080"), "app")],
            vec![UpstreamConfig::new(
                "app".into(),
                Balance::RoundRobin,
                vec![backend("127.0.0.1:9000", 1)],
            )],
        );
        assert_eq!(parse(BASE), Ok(expected.clone()));
        // Empty sections are the same as absent ones.
        let empty_sections = with_base(&[
            "[runtime]",
            "[timeouts]",
            "[limits]",
            "[pool]",
            "[forwarded]",
        ]);
        assert_eq!(parse(&empty_sections), Ok(expected));
    }

    #[test]
    fn partial_sections_keep_other_defaults() {
        let config = parse(&with_base(&[
            "[timeouts]",
            "drain = \"5s\"",
            "[runtime]",
            "cpus = [3, 1]",
        ]))
        .unwrap();
        assert_eq!(
            config.timeouts,
            Timeouts {
                drain: Duration::from_secs(5),
                ..Timeouts::default()
            }
        );
        assert_eq!(
            config.runtime,
            RuntimeConfig {
                cpus: vec![3, 1],
                ..RuntimeConfig::default()
            }
        );
    }

    #[test]
    fn example_file_is_valid_and_documents_the_defaults() {
        let text = include_str!("../../ringproxy.example.toml");
        let expected = defaults_with(
            vec![ListenerConfig::to_upstream(addr("127.0.0.1:8080"), "app")],
            vec![UpstreamConfig::new(
                "app".into(),
                Balance::RoundRobin,
                vec![backend("127.0.0.1:9000", 1), backend("127.0.0.1:9001", 2)],
            )],
        );
        assert_eq!(
            parse_str(text, "ringproxy.example.toml"),
            Ok(expected.clone())
        );

        // The health section is commented out; uncommented, it must parse to the defaults.
        let uncommented = example_with_uncommented("# [upstream.app.health]");
        let mut with_health = expected;
        with_health.upstreams[0].health = Some(default_http_check());
        assert_eq!(parse(&uncommented), Ok(with_health));
    }

    /// The example file with the commented-out section `header` (and the comment lines after
    /// it) uncommented.
    fn example_with_uncommented(header: &str) -> Vec<&'static str> {
        let text = include_str!("../../ringproxy.example.toml");
        let mut inside = false;
        text.lines()
            .map(|line| {
                inside = (inside && line.starts_with("# ")) || line == header;
                if inside { &line[2..] } else { line }
            })
            .collect()
    }

    #[test]
    fn example_upstream_tls_is_valid_when_uncommented() {
        let uncommented = example_with_uncommented("# [upstream.app.tls]");
        let config = parse(&uncommented).unwrap();
        let tls = config.upstreams[0].tls.as_ref().expect("the tls section");
        assert_eq!(tls.sni.as_deref(), Some("app.internal"));
        assert!(
            tls.ca
                .as_ref()
                .is_some_and(|ca| ca.ends_with("certs/internal-ca.pem"))
        );
        let client = tls.client_cert.as_ref().expect("a client certificate");
        assert!(client.key.ends_with("certs/proxy-client.key"));
        assert!(tls.verify);
    }

    #[test]
    fn example_routes_are_valid_when_uncommented() {
        let text = include_str!("../../ringproxy.example.toml");
        let mut in_routes = false;
        let uncommented: Vec<&str> = text
            .lines()
            .map(|line| {
                in_routes = (in_routes && line.starts_with("# ")) || line == "# [routes.main]";
                match line {
                    "upstream = \"app\"           # may be omitted when exactly one upstream group exists" => "",
                    _ if line.starts_with("# routes = \"main\"") => &line[2..],
                    _ if in_routes => &line[2..],
                    _ => line,
                }
            })
            .collect();
        let config = parse(&uncommented).unwrap();
        assert_eq!(config.listeners[0].routes.as_deref(), Some("main"));
        assert_eq!(config.routes[0].routes.len(), 5);
    }

    #[test]
    fn load_file_reads_the_example() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ringproxy.example.toml");
        let config = load_file(&path).unwrap();
        assert_eq!(config.listeners.len(), 1);
    }

    #[test]
    fn unreadable_file_is_one_error_without_line() {
        let path = Path::new("/nonexistent/ringproxy.toml");
        let errors = load_file(path).unwrap_err();
        assert_eq!(errors.0.len(), 1);
        let error = &errors.0[0];
        assert_eq!(
            (error.file.as_str(), error.line, error.key.as_str()),
            ("/nonexistent/ringproxy.toml", None, "")
        );
        assert!(error.message.starts_with("cannot open: "), "{error}");
        assert!(
            errors
                .to_string()
                .starts_with("/nonexistent/ringproxy.toml: cannot open: ")
        );
    }

    fn temp_file(name: &str, contents: &[u8]) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "ringproxy-config-test-{}-{name}",
            std::process::id()
        ));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn oversized_and_non_utf8_files_are_refused() {
        let big = temp_file("big.toml", &vec![b'#'; MAX_FILE_BYTES as usize + 1]);
        let result = load_file(&big);
        std::fs::remove_file(&big).unwrap();
        assert!(
            result.unwrap_err().0[0]
                .message
                .contains("larger than 1048576 bytes")
        );

        let binary = temp_file("binary.toml", b"# ok\n\xff\xfe");
        let result = load_file(&binary);
        std::fs::remove_file(&binary).unwrap();
        assert!(
            result.unwrap_err().0[0]
                .message
                .contains("not valid UTF-8 (at byte 5)")
        );
    }

    #[test]
    fn syntax_error_has_its_line() {
        assert_error(
            &with_base(&["[runtime]", "workers = "]),
            Some(7),
            "",
            "invalid TOML: ",
        );
        assert_error(
            &with_base(&["[runtime]", "workers = 1", "workers = 2"]),
            Some(8),
            "",
            "invalid TOML: duplicate key",
        );
    }

    #[test]
    fn unknown_top_level_key_is_rejected() {
        assert_error(
            &with_base(&["[lmits]", "max_headers = 10"]),
            Some(6),
            "lmits",
            "unknown key \"lmits\" (expected one of: runtime, listener, upstream, routes, timeouts, limits, pool, forwarded, admin, access_log, log)",
        );
    }

    #[test]
    fn unknown_nested_keys_are_rejected() {
        assert_error(
            &with_base(&["[runtime]", "pin = true", "wrokers = 2"]),
            Some(8),
            "runtime.wrokers",
            "unknown key \"wrokers\" (expected one of: workers, cpus, pin, allow_epoll, ring_entries, reconcile_interval, pid_file, metrics)",
        );
        assert_error(
            &[
                "[[listener]]",
                "address = \"127.0.0.1:80\"",
                "tsl = true",
                "[upstream.app]",
                "backends = [\"127.0.0.1:81\"]",
            ],
            Some(3),
            "listener[0].tsl",
            "unknown key \"tsl\" (expected one of: address, upstream, routes, tls)",
        );
        assert_error(
            &with_base(&[
                "[upstream.web]",
                "backends = [\"127.0.0.1:81\"]",
                "healthcheck = 1",
            ]),
            Some(8),
            "upstream.web.healthcheck",
            "(expected one of: balance, hash_key, p2c_metric, slow_start, retries, retry_timeout, backends, health, passive, tls)",
        );
        assert_error(
            &with_base(&[
                "[upstream.web]",
                "backends = [",
                "  { address = \"127.0.0.1:81\", wieght = 2 },",
                "]",
            ]),
            Some(8),
            "upstream.web.backends[0].wieght",
            "(expected one of: address, weight, max_conns, backup, drain, sni)",
        );
        assert_error(
            &with_base(&["[timeouts]", "client.header = \"1s\""]),
            Some(7),
            "timeouts.client",
            "unknown key \"client\"",
        );
    }

    #[test]
    fn via_is_a_name_or_false() {
        let via = |value: &str| {
            parse(&with_base(&["[forwarded]", &format!("via = {value}")]))
                .unwrap()
                .forwarded
                .via
                .map(|entry| entry.received_by().to_owned())
        };
        let default = parse(BASE).unwrap().forwarded.via;
        assert_eq!(default, Some(ViaEntry::new("ringproxy")));
        assert_eq!(via("false"), None);
        assert_eq!(via("true").as_deref(), Some("ringproxy"));
        assert_eq!(via("\"edge-1\"").as_deref(), Some("edge-1"));
        assert_eq!(
            via("\"lb.example.com:443\"").as_deref(),
            Some("lb.example.com:443")
        );
        let invalid = [
            ("\"\"", "empty; write false to send no Via"),
            ("\"ring proxy\"", "invalid via name \"ring proxy\""),
            ("\"1.1 ringproxy\"", "invalid via name"),
            ("\"[::1]:80\"", "invalid via name"),
            ("\":80\"", "invalid via name \"\""),
            ("\"edge:\"", "invalid port \"\""),
            ("\"edge:65536\"", "invalid port \"65536\""),
            ("\"edge:+80\"", "invalid port"),
            ("\"edge:80:80\"", "invalid port"),
            (
                "1",
                "expected a name (\"ringproxy\", \"edge-1:8080\") or false, found an integer",
            ),
        ];
        for (value, message) in invalid {
            assert_error(
                &with_base(&["[forwarded]", &format!("via = {value}")]),
                Some(7),
                "forwarded.via",
                message,
            );
        }
        let long = format!("via = \"{}\"", "a".repeat(256));
        assert_error(
            &with_base(&["[forwarded]", &long]),
            Some(7),
            "forwarded.via",
            "longer than 255 bytes",
        );
        assert_eq!(
            via(&format!("\"{}\"", "a".repeat(255))).map(|v| v.len()),
            Some(255)
        );
    }

    #[test]
    fn wrong_types_are_rejected() {
        assert_error(
            &with_base(&["[runtime]", "workers = \"2\""]),
            Some(7),
            "runtime.workers",
            "expected an integer, found a string",
        );
        assert_error(
            &with_base(&["[forwarded]", "x_forwarded_for = 1"]),
            Some(7),
            "forwarded.x_forwarded_for",
            "expected a boolean (true or false), found an integer",
        );
        assert_error(
            &with_base(&["[timeouts]", "drain = 30"]),
            Some(7),
            "timeouts.drain",
            "expected a duration with a unit, e.g. \"10s\", found an integer",
        );
        assert_error(
            &[&["runtime = 5"][..], BASE].concat(),
            Some(1),
            "runtime",
            "expected a table, found an integer",
        );
        assert_error(
            &[
                "[listener]",
                "address = \"127.0.0.1:80\"",
                "[upstream.app]",
                "backends = [\"127.0.0.1:81\"]",
            ],
            Some(1),
            "listener",
            "expected an array of tables (write [[listener]]), found a table",
        );
        assert_error(
            &with_base(&["[upstream.web]", "backends = \"127.0.0.1:81\""]),
            Some(7),
            "upstream.web.backends",
            "expected an array of backends, found a string",
        );
        assert_error(
            &with_base(&["[upstream.web]", "backends = [81]"]),
            Some(7),
            "upstream.web.backends[0]",
            "expected a backend \"ip:port\" or { address = \"ip:port\", weight = N }, found an integer",
        );
        assert_error(
            &with_base(&["[runtime]", "cpus = 3"]),
            Some(7),
            "runtime.cpus",
            "expected a CPU list like \"0-3,6\" or an array of CPU ids, found an integer",
        );
    }

    #[test]
    fn every_error_is_reported_in_file_order() {
        let lines = with_base(&[
            "[timeouts]",          // 6
            "drain = \"0s\"",      // 7
            "[runtime]",           // 8
            "workers = 0",         // 9
            "ring_entries = 1000", // 10
            "[pool]",              // 11
            "idle = 3",            // 12
        ]);
        let found: Vec<(Option<usize>, String)> = errors(&lines)
            .into_iter()
            .map(|e| (e.line, e.key))
            .collect();
        assert_eq!(
            found,
            [
                (Some(7), "timeouts.drain".to_owned()),
                (Some(9), "runtime.workers".to_owned()),
                (Some(10), "runtime.ring_entries".to_owned()),
                (Some(12), "pool.idle".to_owned()),
            ]
        );
    }

    #[test]
    fn display_names_file_line_and_key() {
        let lines = with_base(&[
            "[upstream.web]",
            "backends = [\"127.0.0.1:81\", \"10.0.0.5\"]",
            "[runtime]",
            "pin = 2",
        ]);
        assert_eq!(
            parse(&lines).unwrap_err().to_string(),
            "test.toml:7: upstream.web.backends[1]: invalid socket address \"10.0.0.5\" (expected ip:port)\n\
             test.toml:9: runtime.pin: expected a boolean (true or false), found an integer"
        );
    }

    #[test]
    fn listeners_are_required() {
        assert_error(
            &["[upstream.app]", "backends = [\"127.0.0.1:81\"]"],
            None,
            "listener",
            "no listener configured",
        );
        assert_error(
            &[
                "listener = []",
                "[upstream.app]",
                "backends = [\"127.0.0.1:81\"]",
            ],
            Some(1),
            "listener",
            "at least one listener is required",
        );
        assert_error(
            &[
                "[[listener]]",
                "upstream = \"app\"",
                "[upstream.app]",
                "backends = [\"127.0.0.1:81\"]",
            ],
            Some(1),
            "listener[0].address",
            "missing required key \"address\"",
        );
    }

    #[test]
    fn duplicate_listener_address_names_the_first() {
        assert_error(
            &with_base(&["[[listener]]", "address = \"127.0.0.1:8080\""]),
            Some(7),
            "listener[1].address",
            "address 127.0.0.1:8080 is already used by listener[0] (line 2)",
        );
    }

    #[test]
    fn listener_upstream_must_exist() {
        assert_error(
            &with_base(&[
                "[upstream.web]",
                "backends = [\"127.0.0.1:81\"]",
                "[[listener]]",
                "address = \"127.0.0.1:8081\"",
                "upstream = \"ap\"",
            ]),
            Some(10),
            "listener[1].upstream",
            "unknown upstream group \"ap\" (defined: \"app\", \"web\")",
        );
    }

    #[test]
    fn listener_upstream_may_be_omitted_only_with_one_group() {
        let one_group = [
            "[[listener]]",
            "address = \"127.0.0.1:80\"",
            "[upstream.app]",
            "backends = [\"127.0.0.1:81\"]",
        ];
        assert_eq!(parse(&one_group).unwrap().listeners[0].upstream, "app");
        let second_group = ["[upstream.web]", "backends = [\"127.0.0.1:82\"]"];
        assert_error(
            &[&one_group[..], &second_group[..]].concat(),
            Some(1),
            "listener[0].upstream",
            "missing key \"upstream\": it may only be omitted when exactly one upstream group is defined (defined: \"app\", \"web\")",
        );
    }

    #[test]
    fn upstream_groups_are_required() {
        assert_error(
            &["[[listener]]", "address = \"127.0.0.1:80\""],
            None,
            "upstream",
            "no upstream group configured",
        );
        // The listener naming a group gets no second error: the cause is the missing section.
        assert_error(
            &[
                "[[listener]]",
                "address = \"127.0.0.1:80\"",
                "upstream = \"app\"",
            ],
            None,
            "upstream",
            "no upstream group configured",
        );
        assert_error(
            &["[[listener]]", "address = \"127.0.0.1:80\"", "[upstream]"],
            Some(3),
            "upstream",
            "at least one [upstream.NAME] group is required",
        );
    }

    #[test]
    fn groups_need_backends() {
        assert_error(
            &with_base(&["[upstream.web]", "balance = \"round_robin\""]),
            Some(6),
            "upstream.web.backends",
            "missing required key \"backends\"",
        );
        assert_error(
            &with_base(&["[upstream.web]", "backends = []"]),
            Some(7),
            "upstream.web.backends",
            "at least one backend is required",
        );
    }

    #[test]
    fn backend_addresses_must_be_ip_and_port() {
        let cases = [
            (
                "\"10.0.0.5\"",
                "upstream.web.backends[0]",
                "invalid socket address \"10.0.0.5\" (expected ip:port)",
            ),
            (
                "\"backend.local:80\"",
                "upstream.web.backends[0]",
                "invalid socket address \"backend.local:80\" (expected ip:port; host names are not resolved at load time)",
            ),
            (
                "\"localhost\"",
                "upstream.web.backends[0]",
                "host names are not resolved at load time",
            ),
            (
                "\"::1\"",
                "upstream.web.backends[0]",
                "invalid socket address \"::1\" (expected ip:port; write IPv6 as [address]:port)",
            ),
            (
                "\"10.0.0.5:0\"",
                "upstream.web.backends[0]",
                "port 0 in \"10.0.0.5:0\" is not allowed",
            ),
            (
                "\"10.0.0.5:65536\"",
                "upstream.web.backends[0]",
                "invalid socket address",
            ),
            (
                "{ address = \"10.0.0.5\" }",
                "upstream.web.backends[0].address",
                "(expected ip:port)",
            ),
            (
                "{ weight = 2 }",
                "upstream.web.backends[0].address",
                "missing required key \"address\"",
            ),
        ];
        for (backend, key, message) in cases {
            let backends = format!("backends = [{backend}]");
            let lines = with_base(&["[upstream.web]", &backends]);
            assert_error(&lines, Some(7), key, message);
        }
        assert_error(
            &[
                "[[listener]]",
                "address = \"127.0.0.1\"",
                "[upstream.app]",
                "backends = [\"127.0.0.1:81\"]",
            ],
            Some(2),
            "listener[0].address",
            "invalid socket address \"127.0.0.1\" (expected ip:port)",
        );
    }

    #[test]
    fn backend_weight_is_1_to_1000() {
        let config = parse(&with_base(&[
            "[upstream.web]",
            "backends = [{ address = \"127.0.0.1:81\", weight = 1000 }]",
        ]))
        .unwrap();
        assert_eq!(
            config.upstreams[1].backends,
            [backend("127.0.0.1:81", 1000)]
        );
        for weight in ["0", "1001", "-1"] {
            let backends =
                format!("backends = [{{ address = \"127.0.0.1:81\", weight = {weight} }}]");
            assert_error(
                &with_base(&["[upstream.web]", &backends]),
                Some(7),
                "upstream.web.backends[0].weight",
                &format!("{weight} is out of range (must be between 1 and 1000)"),
            );
        }
    }

    #[test]
    fn backends_may_be_sections() {
        let lines = [
            "[[listener]]",
            "address = \"127.0.0.1:80\"",
            "[[upstream.app.backends]]",
            "address = \"127.0.0.1:81\"",
            "[[upstream.app.backends]]",
            "address = \"127.0.0.1:82\"",
            "weight = 3",
        ];
        let config = parse(&lines).unwrap();
        let expected = [backend("127.0.0.1:81", 1), backend("127.0.0.1:82", 3)];
        assert_eq!(config.upstreams[0].backends, expected);
        let typo = [&lines[..], &["wieght = 3"]].concat();
        assert_error(
            &typo,
            Some(8),
            "upstream.app.backends[1].wieght",
            "unknown key",
        );
    }

    #[test]
    fn empty_file_names_both_missing_sections() {
        let found: Vec<(Option<usize>, String)> =
            errors(&[""]).into_iter().map(|e| (e.line, e.key)).collect();
        assert_eq!(
            found,
            [(None, "upstream".to_owned()), (None, "listener".to_owned())]
        );
    }

    #[test]
    fn duplicate_backend_in_a_group_is_rejected() {
        assert_error(
            &with_base(&[
                "[upstream.web]",
                "backends = [",
                "  \"127.0.0.1:81\",",
                "  { address = \"127.0.0.1:81\", weight = 3 },",
                "]",
            ]),
            Some(9),
            "upstream.web.backends[1]",
            "backend 127.0.0.1:81 is listed twice in this group (give it a weight instead)",
        );
    }

    #[test]
    fn balance_must_be_known() {
        assert_error(
            &with_base(&["balance = \"fastest\""]),
            Some(6),
            "upstream.app.balance",
            "unknown balance \"fastest\" (supported: \"round_robin\", \"weighted\", \"least_conn\", \"hash\", \"random\", \"p2c\")",
        );
    }

    #[test]
    fn group_names_are_restricted() {
        assert_error(
            &with_base(&["[upstream.\"my app\"]", "backends = [\"127.0.0.1:81\"]"]),
            Some(6),
            "upstream.my app",
            "invalid upstream group name \"my app\"",
        );
    }

    #[test]
    fn workers_are_1_to_1024() {
        for workers in ["0", "1025", "-3", "99999999999999999999"] {
            let line = format!("workers = {workers}");
            assert_error(
                &with_base(&["[runtime]", &line]),
                Some(7),
                "runtime.workers",
                &format!("{workers} is out of range (must be between 1 and 1024)"),
            );
        }
        let config = parse(&with_base(&["[runtime]", "workers = 1024"])).unwrap();
        assert_eq!(config.runtime.workers, Some(1024));
    }

    #[test]
    fn workers_must_match_cpus() {
        assert_error(
            &with_base(&["[runtime]", "workers = 2", "cpus = \"0-3\""]),
            Some(7),
            "runtime.workers",
            "workers = 2 but cpus lists 4 CPUs",
        );
        assert_error(
            &with_base(&["[runtime]", "workers = 2", "cpus = [5]"]),
            Some(7),
            "runtime.workers",
            "workers = 2 but cpus lists 1 CPU;",
        );
        let config = parse(&with_base(&[
            "[runtime]",
            "workers = 4",
            "cpus = [0, 1, 2, 3]",
        ]))
        .unwrap();
        assert_eq!(
            (config.runtime.workers, config.runtime.cpus),
            (Some(4), vec![0, 1, 2, 3])
        );
    }

    #[test]
    fn origin_places_later_errors_on_the_line_of_the_key_or_item() {
        let config = parse(&with_base(&[
            "[runtime]",
            "workers = 2",
            "cpus = [",
            "  0,",
            "  7,",
            "]",
        ]))
        .unwrap();
        let at = |key: &str| config.origin.error(key, "x").to_string();
        assert_eq!(at("runtime.cpus"), "test.toml:8: runtime.cpus: x");
        assert_eq!(at("runtime.cpus[1]"), "test.toml:10: runtime.cpus[1]: x");
        assert_eq!(at("runtime.workers"), "test.toml:7: runtime.workers: x");
        assert_eq!(
            at("listener[0].address"),
            "test.toml:2: listener[0].address: x"
        );
    }

    #[test]
    fn cpus_are_validated() {
        assert_error(
            &with_base(&["[runtime]", "cpus = \"3-1\""]),
            Some(7),
            "runtime.cpus",
            "CPU range \"3-1\" is reversed",
        );
        assert_error(
            &with_base(&["[runtime]", "cpus = [", "  0,", "  1,", "  0,", "]"]),
            Some(10),
            "runtime.cpus[2]",
            "CPU 0 is listed twice",
        );
        assert_error(
            &with_base(&["[runtime]", "cpus = [1024]"]),
            Some(7),
            "runtime.cpus[0]",
            "1024 is out of range (must be between 0 and 1023)",
        );
        assert_error(
            &with_base(&["[runtime]", "cpus = []"]),
            Some(7),
            "runtime.cpus",
            "CPU list is empty",
        );
        assert_error(
            &with_base(&["[runtime]", "cpus = \"\""]),
            Some(7),
            "runtime.cpus",
            "CPU list is empty",
        );
        // The bad id is the one error: no follow-on "workers does not match" complaint.
        assert_error(
            &with_base(&["[runtime]", "workers = 3", "cpus = [0, 1, 5000]"]),
            Some(8),
            "runtime.cpus[2]",
            "5000 is out of range",
        );
    }

    #[test]
    fn reconcile_interval_is_1ms_to_10s() {
        for (interval, message) in [
            ("\"11s\"", "11s is too long (at most 10s)"),
            ("\"10001ms\"", "10.001s is too long (at most 10s)"),
            ("\"0ms\"", "must be greater than zero"),
            ("50", "expected a duration with a unit"),
        ] {
            let line = format!("reconcile_interval = {interval}");
            assert_error(
                &with_base(&["[runtime]", &line]),
                Some(7),
                "runtime.reconcile_interval",
                message,
            );
        }
        for (interval, expected) in [("1ms", 1), ("10s", 10_000)] {
            let line = format!("reconcile_interval = \"{interval}\"");
            let config = parse(&with_base(&["[runtime]", &line])).unwrap();
            assert_eq!(
                config.runtime.reconcile_interval,
                Duration::from_millis(expected)
            );
        }
    }

    #[test]
    fn ring_entries_are_a_power_of_two_in_range() {
        for (entries, message) in [
            ("128", "128 is out of range (must be between 256 and 32768)"),
            (
                "65536",
                "65536 is out of range (must be between 256 and 32768)",
            ),
            ("1000", "1000 is not a power of two"),
        ] {
            let line = format!("ring_entries = {entries}");
            assert_error(
                &with_base(&["[runtime]", &line]),
                Some(7),
                "runtime.ring_entries",
                message,
            );
        }
        for entries in [256, 32768] {
            let line = format!("ring_entries = {entries}");
            assert_eq!(
                parse(&with_base(&["[runtime]", &line]))
                    .unwrap()
                    .runtime
                    .ring_entries,
                entries
            );
        }
    }

    #[test]
    fn removed_keys_say_they_were_removed() {
        for key in ["wake_batch", "wake_batch_wait"] {
            let line = format!("{key} = 1");
            let path = format!("runtime.{key}");
            assert_error(
                &with_base(&["[runtime]", &line]),
                Some(7),
                &path,
                "was removed with wake-up batching (see CHANGELOG.md): delete this line",
            );
        }
    }

    #[test]
    fn durations_need_a_unit_and_must_be_positive() {
        for key in TIMEOUT_KEYS {
            let zero = format!("{key} = \"0s\"");
            let path = format!("timeouts.{key}");
            assert_error(
                &with_base(&["[timeouts]", &zero]),
                Some(7),
                &path,
                "must be greater than zero",
            );
        }
        assert_error(
            &with_base(&["[timeouts]", "client_idle = \"60\""]),
            Some(7),
            "timeouts.client_idle",
            "expected an integer followed by a unit (us, ms, s, m or h)",
        );
        assert_error(
            &with_base(&["[pool]", "idle_timeout = \"0ms\""]),
            Some(7),
            "pool.idle_timeout",
            "must be greater than zero",
        );
    }

    #[test]
    fn limits_are_range_checked() {
        let cases = [
            (
                "max_request_line = 63",
                "max_request_line",
                "63 is out of range (must be between 64 and 1048576)",
            ),
            (
                "max_header_bytes = 1048577",
                "max_header_bytes",
                "must be between 64 and 1048576",
            ),
            (
                "max_headers = 0",
                "max_headers",
                "0 is out of range (must be between 1 and 128)",
            ),
            (
                "max_headers = 129",
                "max_headers",
                "must be between 1 and 128",
            ),
            (
                "max_response_header_bytes = 10",
                "max_response_header_bytes",
                "must be between 64 and 1048576",
            ),
            (
                "min_body_rate = 1073741825",
                "min_body_rate",
                "1073741825 is out of range (must be between 0 and 1073741824)",
            ),
            (
                "min_body_rate = -1",
                "min_body_rate",
                "must be between 0 and 1073741824",
            ),
            (
                "min_body_rate = \"1KiB/s\"",
                "min_body_rate",
                "expected an integer, found a string",
            ),
        ];
        for (line, key, message) in cases {
            assert_error(
                &with_base(&["[limits]", line]),
                Some(7),
                &format!("limits.{key}"),
                message,
            );
        }
    }

    #[test]
    fn a_min_body_rate_of_zero_turns_the_floor_off() {
        let config = parse(&with_base(&["[limits]", "min_body_rate = 0"])).unwrap();
        assert_eq!(config.limits.min_body_rate, 0);
        let config = parse(&with_base(&["[limits]", "min_body_rate = 1073741824"])).unwrap();
        assert_eq!(config.limits.min_body_rate, 1 << 30);
    }

    #[test]
    fn header_bytes_must_hold_the_request_line() {
        assert_error(
            &with_base(&[
                "[limits]",
                "max_request_line = 4096",
                "max_header_bytes = 2048",
            ]),
            Some(8),
            "limits.max_header_bytes",
            "max_header_bytes (2048) must be at least max_request_line (4096)",
        );
        // Against the default max_header_bytes (16384), the explicit key is the one blamed.
        assert_error(
            &with_base(&["[limits]", "max_request_line = 20000"]),
            Some(7),
            "limits.max_request_line",
            "max_header_bytes (16384) must be at least max_request_line (20000)",
        );
        // An invalid value gives its own error only.
        assert_error(
            &with_base(&[
                "[limits]",
                "max_request_line = 20000",
                "max_header_bytes = \"big\"",
            ]),
            Some(8),
            "limits.max_header_bytes",
            "expected an integer",
        );
    }

    #[test]
    fn pool_size_is_bounded() {
        assert_error(
            &with_base(&["[pool]", "max_idle_per_backend = 65537"]),
            Some(7),
            "pool.max_idle_per_backend",
            "must be between 0 and 65536",
        );
    }
}
