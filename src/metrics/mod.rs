//! What the proxy counts and measures, kept per worker without contention on the request
//! path, and merged when the admin listener is scraped.
//!
//! - `counters`: one block of atomics per worker, written only by its worker (a plain load
//!   and store per increment), read at scrape time.
//! - `latency`: hdrhistogram per worker, published into a shared slot by the worker's timer
//!   sweep when a scrape asks.
//! - `exposition`: the Prometheus text format.
//!
//! A worker holds a `WorkerMetrics` (its index into the shared `Metrics` and its own latency
//! recorder). Health state and ejections are not counted here: the scrape reads them from the
//! shared health table, so they cost the request path nothing.

pub mod counters;
pub mod exposition;
pub mod latency;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use counters::CounterBoard;
use latency::{Latency, LatencyBoard, Recorder};

/// Per-worker counters that are not per label: their index in the worker's block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Client connections accepted.
    Accepted,
    /// Client connections open (a gauge, set by the timer sweep).
    OpenConnections,
    /// Of those, the ones waiting for a next request (a gauge, set by the timer sweep).
    IdleConnections,
    /// Backend connections opened.
    BackendOpened,
    /// Requests sent over a pooled backend connection.
    BackendReused,
    /// Further attempts of a request on another backend.
    Retries,
    /// Sum of `Latency::UpstreamFirstByte` samples, in microseconds (the histogram's `_sum`).
    UpstreamFirstByteMicros,
    /// Access log lines dropped because the writer's queue was full.
    AccessLogDropped,
}

impl Counter {
    const COUNT: usize = 7;
}

/// Timeouts by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// A request head not complete within `client_header` (408).
    ClientHeader,
    /// A keep-alive connection silent for `client_idle`.
    ClientIdle,
    /// A request or response body stalled for `body_idle`.
    BodyIdle,
    BackendConnect,
    /// No response head within `backend_response`.
    BackendResponse,
}

impl Timeout {
    pub const ALL: [Timeout; 5] = [
        Timeout::ClientHeader,
        Timeout::ClientIdle,
        Timeout::BodyIdle,
        Timeout::BackendConnect,
        Timeout::BackendResponse,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Timeout::ClientHeader => "client_header",
            Timeout::ClientIdle => "client_idle",
            Timeout::BodyIdle => "body_idle",
            Timeout::BackendConnect => "backend_connect",
            Timeout::BackendResponse => "backend_response",
        }
    }
}

/// A TLS handshake that completed, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsHandshake {
    /// Certificate, signature and key exchange (a HelloRetryRequest included).
    Full,
    /// A session resumed from a ticket or the session cache: no certificate, no signature.
    Resumed,
}

impl TlsHandshake {
    pub const ALL: [TlsHandshake; 2] = [TlsHandshake::Full, TlsHandshake::Resumed];

    pub fn label(self) -> &'static str {
        match self {
            TlsHandshake::Full => "full",
            TlsHandshake::Resumed => "resumed",
        }
    }
}

/// Why a connection on a TLS listener ended before its handshake completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// Plain HTTP sent to the TLS port (answered with a clear-text 400).
    PlainHttp,
    /// Neither TLS nor HTTP, or a malformed or out-of-order handshake message or record.
    Protocol,
    /// No TLS version, cipher suite, key exchange group or ALPN protocol in common.
    Incompatible,
    /// No certificate for the client: none for the name it asked (`strict_sni`), or none that
    /// signs with a scheme it accepts.
    NoCertificate,
    /// The client ended the handshake with an alert: mostly, it rejected the certificate.
    ClientAlert,
    /// The client closed or reset the connection before the handshake ended.
    Closed,
    /// The handshake did not end within `timeouts.client_header`.
    Timeout,
    Other,
}

impl TlsFailure {
    pub const ALL: [TlsFailure; 8] = [
        TlsFailure::PlainHttp,
        TlsFailure::Protocol,
        TlsFailure::Incompatible,
        TlsFailure::NoCertificate,
        TlsFailure::ClientAlert,
        TlsFailure::Closed,
        TlsFailure::Timeout,
        TlsFailure::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            TlsFailure::PlainHttp => "plain_http",
            TlsFailure::Protocol => "protocol",
            TlsFailure::Incompatible => "incompatible",
            TlsFailure::NoCertificate => "no_certificate",
            TlsFailure::ClientAlert => "client_alert",
            TlsFailure::Closed => "closed",
            TlsFailure::Timeout => "timeout",
            TlsFailure::Other => "other",
        }
    }
}

/// The statuses a request the proxy could not accept is answered with; anything else is
/// counted as `other`.
pub const PARSE_ERROR_STATUSES: [u16; 7] = [400, 413, 414, 417, 431, 501, 505];
const PARSE_ERROR_SLOTS: usize = PARSE_ERROR_STATUSES.len() + 1;
/// 1xx..5xx.
pub const STATUS_CLASSES: usize = 5;

const TIMEOUTS_AT: usize = Counter::COUNT;
const PARSE_ERRORS_AT: usize = TIMEOUTS_AT + Timeout::ALL.len();
const TLS_HANDSHAKES_AT: usize = PARSE_ERRORS_AT + PARSE_ERROR_SLOTS;
const TLS_FAILURES_AT: usize = TLS_HANDSHAKES_AT + TlsHandshake::ALL.len();
const REQUESTS_AT: usize = TLS_FAILURES_AT + TlsFailure::ALL.len();

/// What the labels of one config generation's request counters range over.
#[derive(Debug, Clone)]
pub struct Labels {
    /// Each listener's bound address, in config order.
    pub listeners: Vec<String>,
    /// Each upstream group's name, in config order.
    pub groups: Vec<String>,
}

/// Every worker's metrics; shared (`Arc`) by the workers and the admin thread.
pub struct Metrics {
    counters: CounterBoard,
    latency: LatencyBoard,
    /// Every generation's request counts: read at scrape time, written when a generation
    /// starts; never touched by the request path.
    requests: Mutex<RequestHistory>,
    /// What the access log's writer thread did (its own counters, one writer).
    pub access_log: AccessLogCounts,
}

/// Access log lines by what became of them at the writer.
#[derive(Debug, Default)]
pub struct AccessLogCounts {
    /// Written to the file.
    pub written: AtomicU64,
    /// Lost to a failed write.
    pub failed: AtomicU64,
}

impl Metrics {
    pub fn new(workers: usize) -> Arc<Self> {
        Arc::new(Self {
            counters: CounterBoard::new(workers, REQUESTS_AT),
            latency: LatencyBoard::new(workers),
            requests: Mutex::new(RequestHistory::default()),
            access_log: AccessLogCounts::default(),
        })
    }

    pub fn workers(&self) -> usize {
        self.counters.workers()
    }

    /// The request counters of a new config generation. Those of generations no worker uses
    /// any more are folded into the retired totals here, so the history stays as small as the
    /// set of labels ever seen.
    pub fn request_counts(&self, labels: Labels) -> Arc<RequestCounts> {
        let counts = Arc::new(RequestCounts::new(self.workers(), labels));
        let mut history = self.history();
        history.retire_unused(self.workers());
        history.live.push(counts.clone());
        counts
    }

    /// Responses by (listener, group) label and worker, every generation's summed.
    pub fn request_totals(&self) -> RequestTotals {
        let history = self.history();
        let mut totals = history.retired.clone();
        for counts in &history.live {
            counts.add_to(&mut totals, self.workers());
        }
        totals
    }

    fn history(&self) -> std::sync::MutexGuard<'_, RequestHistory> {
        // A panic while holding it leaves counts that are still valid: keep using them.
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn counter(&self, worker: usize, counter: Counter) -> u64 {
        self.counters.get(worker, counter as usize)
    }

    pub fn counter_total(&self, counter: Counter) -> u64 {
        self.counters.total(counter as usize)
    }

    pub fn timeouts(&self, kind: Timeout) -> u64 {
        self.counters.total(TIMEOUTS_AT + kind as usize)
    }

    /// Parse errors answered with `PARSE_ERROR_STATUSES[slot]`; the slot after the last
    /// counts every other status.
    pub fn parse_errors(&self, slot: usize) -> u64 {
        self.counters.total(PARSE_ERRORS_AT + slot)
    }

    pub fn tls_handshakes(&self, kind: TlsHandshake) -> u64 {
        self.counters.total(TLS_HANDSHAKES_AT + kind as usize)
    }

    pub fn tls_failures(&self, reason: TlsFailure) -> u64 {
        self.counters.total(TLS_FAILURES_AT + reason as usize)
    }

    /// Fresh latency histograms of every worker (see `latency`).
    pub fn latencies(&self, within: Duration) -> Vec<latency::Published> {
        self.latency.collect(within)
    }
}

/// One worker's handle on the metrics: what the request path calls.
pub struct WorkerMetrics {
    shared: Arc<Metrics>,
    worker: usize,
    recorder: RefCell<Recorder>,
}

impl WorkerMetrics {
    pub fn new(shared: Arc<Metrics>, worker: usize) -> Self {
        Self {
            shared,
            worker,
            recorder: RefCell::default(),
        }
    }

    #[inline]
    fn add(&self, index: usize) {
        self.shared.counters.add(self.worker, index, 1);
    }

    #[inline]
    pub fn count(&self, counter: Counter) {
        self.add(counter as usize);
    }

    pub fn timeout(&self, kind: Timeout) {
        self.add(TIMEOUTS_AT + kind as usize);
    }

    /// A TLS handshake completed (once per connection, before its first request).
    pub fn tls_handshake(&self, kind: TlsHandshake) {
        self.add(TLS_HANDSHAKES_AT + kind as usize);
    }

    /// A connection on a TLS listener closed before its handshake completed.
    pub fn tls_failure(&self, reason: TlsFailure) {
        self.add(TLS_FAILURES_AT + reason as usize);
    }

    /// A request refused with `status` before it reached a backend.
    pub fn parse_error(&self, status: u16) {
        let slot = PARSE_ERROR_STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(PARSE_ERROR_STATUSES.len());
        self.add(PARSE_ERRORS_AT + slot);
    }

    /// Access log lines dropped: the writer's queue was full.
    pub fn access_log_dropped(&self, lines: u64) {
        self.shared
            .counters
            .add(self.worker, Counter::AccessLogDropped as usize, lines);
    }

    /// A backend's time to the first byte of its response head.
    #[inline]
    pub fn upstream_first_byte(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.shared.counters.add(
            self.worker,
            Counter::UpstreamFirstByteMicros as usize,
            micros,
        );
        self.recorder
            .borrow_mut()
            .record(Latency::UpstreamFirstByte, took);
    }

    /// From the timer sweep: the connection gauges, and the histograms if a scrape waits.
    pub fn sweep(&self, open_connections: usize, idle_connections: usize) {
        let counters = &self.shared.counters;
        counters.set(
            self.worker,
            Counter::OpenConnections as usize,
            open_connections as u64,
        );
        counters.set(
            self.worker,
            Counter::IdleConnections as usize,
            idle_connections as u64,
        );
        self.recorder
            .borrow_mut()
            .publish_if_wanted(&self.shared.latency, self.worker);
    }
}

/// Per (listener, group) label pair, per worker, responses by status class (1xx..5xx).
pub type RequestTotals = BTreeMap<(String, String), Vec<[u64; STATUS_CLASSES]>>;

/// One config generation's responses by listener, upstream group and status class, per
/// worker. Indexed by the generation's own listener and group positions.
pub struct RequestCounts {
    counters: CounterBoard,
    labels: Labels,
}

impl RequestCounts {
    fn new(workers: usize, labels: Labels) -> Self {
        let per_worker = labels.listeners.len() * labels.groups.len() * STATUS_CLASSES;
        Self {
            counters: CounterBoard::new(workers, per_worker),
            labels,
        }
    }

    fn index(&self, listener: usize, group: usize, class: usize) -> usize {
        (listener * self.labels.groups.len() + group) * STATUS_CLASSES + class
    }

    /// A response with `status`, from `worker`, to a request received on `listener` for
    /// `group` (positions in the generation's config).
    #[inline]
    pub fn response(&self, worker: usize, listener: usize, group: usize, status: u16) {
        if listener >= self.labels.listeners.len() || group >= self.labels.groups.len() {
            return;
        }
        let class = usize::from(status / 100).clamp(1, STATUS_CLASSES) - 1;
        self.counters
            .add(worker, self.index(listener, group, class), 1);
    }

    /// Adds every count to `totals`, by label.
    fn add_to(&self, totals: &mut RequestTotals, workers: usize) {
        for (l, listener) in self.labels.listeners.iter().enumerate() {
            for (g, group) in self.labels.groups.iter().enumerate() {
                let key = (listener.clone(), group.clone());
                let entry = totals
                    .entry(key)
                    .or_insert_with(|| vec![[0; STATUS_CLASSES]; workers]);
                for (worker, classes) in entry.iter_mut().enumerate() {
                    for (class, total) in classes.iter_mut().enumerate() {
                        *total += self.counters.get(worker, self.index(l, g, class));
                    }
                }
            }
        }
    }
}

/// Request counts of the generations still in use, and the sums of those that ended.
#[derive(Default)]
struct RequestHistory {
    live: Vec<Arc<RequestCounts>>,
    retired: RequestTotals,
}

impl RequestHistory {
    /// Folds the counts no worker holds any more (only this history does) into `retired`.
    fn retire_unused(&mut self, workers: usize) {
        let (unused, live) = std::mem::take(&mut self.live)
            .into_iter()
            .partition(|counts| Arc::strong_count(counts) == 1);
        self.live = live;
        let unused: Vec<Arc<RequestCounts>> = unused;
        for counts in unused {
            counts.add_to(&mut self.retired, workers);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(listeners: &[&str], groups: &[&str]) -> Labels {
        Labels {
            listeners: listeners.iter().map(|l| l.to_string()).collect(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn metrics() -> Arc<Metrics> {
        Metrics::new(2)
    }

    fn total(m: &Metrics, listener: &str, group: &str, worker: usize, class: usize) -> u64 {
        let key = (listener.to_string(), group.to_string());
        m.request_totals().get(&key).map_or(0, |w| w[worker][class])
    }

    #[test]
    fn responses_count_by_listener_group_and_class() {
        let m = metrics();
        let counts = m.request_counts(labels(&["a", "b"], &["g", "h", "i"]));
        counts.response(0, 1, 2, 200);
        counts.response(0, 1, 2, 204);
        counts.response(1, 1, 2, 503);
        counts.response(1, 0, 0, 404);
        counts.response(1, 2, 0, 200); // no such listener: ignored
        assert_eq!(total(&m, "b", "i", 0, 1), 2);
        assert_eq!(total(&m, "b", "i", 1, 4), 1);
        assert_eq!(total(&m, "a", "g", 1, 3), 1);
        assert_eq!(total(&m, "a", "g", 0, 1), 0);
    }

    #[test]
    fn generations_add_up_by_label_and_survive_their_end() {
        let m = metrics();
        let first = m.request_counts(labels(&["a"], &["g", "h"]));
        first.response(0, 0, 1, 200);
        // The next generation drops group g and moves h to another position.
        let second = m.request_counts(labels(&["a", "b"], &["h"]));
        second.response(0, 0, 0, 200);
        second.response(1, 1, 0, 500);
        assert_eq!(total(&m, "a", "h", 0, 1), 2);
        drop(first);
        let _third = m.request_counts(labels(&["a"], &["h"]));
        assert_eq!(m.history().live.len(), 2, "the unused first one was folded");
        assert_eq!(total(&m, "a", "h", 0, 1), 2);
        assert_eq!(total(&m, "b", "h", 1, 4), 1);
    }

    #[test]
    fn tls_outcomes_count_apart_from_each_other_and_the_other_counters() {
        let m = metrics();
        let w0 = WorkerMetrics::new(m.clone(), 0);
        let w1 = WorkerMetrics::new(m.clone(), 1);
        w0.tls_handshake(TlsHandshake::Full);
        w1.tls_handshake(TlsHandshake::Full);
        w1.tls_handshake(TlsHandshake::Resumed);
        w0.tls_failure(TlsFailure::Other);
        w0.tls_failure(TlsFailure::PlainHttp);
        w1.timeout(Timeout::BackendResponse);
        assert_eq!(m.tls_handshakes(TlsHandshake::Full), 2);
        assert_eq!(m.tls_handshakes(TlsHandshake::Resumed), 1);
        assert_eq!(m.tls_failures(TlsFailure::Other), 1);
        assert_eq!(m.tls_failures(TlsFailure::PlainHttp), 1);
        assert_eq!(m.tls_failures(TlsFailure::Timeout), 0);
        assert_eq!(m.timeouts(Timeout::BackendResponse), 1);
        assert_eq!(m.parse_errors(PARSE_ERROR_STATUSES.len()), 0);
    }

    #[test]
    fn parse_errors_by_status_and_other() {
        let m = metrics();
        let w = WorkerMetrics::new(m.clone(), 0);
        w.parse_error(431);
        w.parse_error(431);
        w.parse_error(499);
        assert_eq!(m.parse_errors(4), 2);
        assert_eq!(m.parse_errors(PARSE_ERROR_STATUSES.len()), 1);
    }
}
