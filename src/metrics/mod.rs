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
    /// Backend connections closed (a gauge of the worker's running total, set by the timer
    /// sweep from `upstream::stream::closed_on_this_thread`).
    BackendClosed,
    /// Sum of `Latency::Request` samples, in microseconds.
    RequestMicros,
    /// Sum of `Latency::UpstreamConnect` samples, in microseconds.
    UpstreamConnectMicros,
}

impl Counter {
    /// Every counter, each at its own index: the regions after them start at `COUNT`.
    const ALL: [Counter; 11] = [
        Counter::Accepted,
        Counter::OpenConnections,
        Counter::IdleConnections,
        Counter::BackendOpened,
        Counter::BackendReused,
        Counter::Retries,
        Counter::UpstreamFirstByteMicros,
        Counter::AccessLogDropped,
        Counter::BackendClosed,
        Counter::RequestMicros,
        Counter::UpstreamConnectMicros,
    ];
    const COUNT: usize = Self::ALL.len();
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
#[derive(Debug, Clone, Default)]
pub struct Labels {
    /// Each listener's bound address, in config order.
    pub listeners: Vec<String>,
    /// Each upstream group's name, in config order.
    pub groups: Vec<String>,
    /// By listener: where its route table's routes start in `routes`; `None` for a listener
    /// without a table.
    pub route_base: Vec<Option<usize>>,
    /// The routes of every named table, each table once: `TABLE[INDEX]`.
    pub routes: Vec<String>,
    /// By backend number: the (group, address) the generation gives it, if any.
    pub backends: Vec<Option<(String, String)>>,
}

impl Labels {
    /// The name of route `route` of listener `listener`'s table (`TABLE[INDEX]`), if the
    /// listener has a named table.
    pub fn route(&self, listener: usize, route: usize) -> Option<&str> {
        let base = (*self.route_base.get(listener)?)?;
        self.routes.get(base + route).map(String::as_str)
    }

    /// Backend `backend`'s address, as `ip:port`.
    pub fn backend_address(&self, backend: usize) -> Option<&str> {
        let (_, address) = self.backends.get(backend)?.as_ref()?;
        Some(address)
    }
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

/// One worker's handle on the metrics: what the request path calls. With metrics off
/// (`runtime.metrics = false`) every call returns at its first test, and `enabled` tells the
/// request path to skip what it measures only for them (its clock reads).
pub struct WorkerMetrics {
    shared: Arc<Metrics>,
    worker: usize,
    enabled: bool,
    recorder: RefCell<Recorder>,
}

impl WorkerMetrics {
    pub fn new(shared: Arc<Metrics>, worker: usize, enabled: bool) -> Self {
        Self {
            shared,
            worker,
            enabled,
            recorder: RefCell::default(),
        }
    }

    #[inline]
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn worker(&self) -> usize {
        self.worker
    }

    #[inline]
    fn add_n(&self, index: usize, n: u64) {
        if self.enabled {
            self.shared.counters.add(self.worker, index, n);
        }
    }

    #[inline]
    fn add(&self, index: usize) {
        self.add_n(index, 1);
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
        self.add_n(Counter::AccessLogDropped as usize, lines);
    }

    /// A latency sample: into the worker's histogram, and its sum's counter.
    #[inline]
    fn record(&self, latency: Latency, took: Duration) {
        if !self.enabled {
            return;
        }
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.add_n(latency.sum() as usize, micros);
        self.recorder.borrow_mut().record(latency, micros);
    }

    /// A backend's time to the first byte of its response head.
    #[inline]
    pub fn upstream_first_byte(&self, took: Duration) {
        self.record(Latency::UpstreamFirstByte, took);
    }

    /// A new backend connection's connect time.
    pub fn upstream_connect(&self, took: Duration) {
        self.record(Latency::UpstreamConnect, took);
    }

    /// A request's time from its head to its response's last byte.
    #[inline]
    pub fn request_time(&self, took: Duration) {
        self.record(Latency::Request, took);
    }

    /// From the timer sweep: the gauges, and the histograms if a scrape waits.
    pub fn sweep(&self, open_connections: usize, idle_connections: usize, backend_closed: u64) {
        if !self.enabled {
            return;
        }
        let gauges = [
            (Counter::OpenConnections, open_connections as u64),
            (Counter::IdleConnections, idle_connections as u64),
            (Counter::BackendClosed, backend_closed),
        ];
        for (counter, value) in gauges {
            self.shared
                .counters
                .set(self.worker, counter as usize, value);
        }
        self.recorder
            .borrow_mut()
            .publish_if_wanted(&self.shared.latency, self.worker);
    }
}

/// Responses by status class (1xx..5xx).
pub type ByClass = [u64; STATUS_CLASSES];

/// Every generation's counts summed by label (what a scrape renders).
#[derive(Debug, Clone, Default)]
pub struct RequestTotals {
    /// By (listener, group), per worker.
    pub by_listener: BTreeMap<(String, String), Vec<ByClass>>,
    /// By route (`TABLE[INDEX]`).
    pub by_route: BTreeMap<String, ByClass>,
    /// By (group, backend address).
    pub by_backend: BTreeMap<(String, String), ByClass>,
    /// By listener: bytes received from and sent to clients.
    pub bytes: BTreeMap<String, Bytes>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bytes {
    pub received: u64,
    pub sent: u64,
}

/// One config generation's request counters, per worker, indexed by the generation's own
/// listener, group, route and backend positions. Each worker's block holds four regions:
/// (listener, group, class), (route, class), (backend, class), (listener, direction).
pub struct RequestCounts {
    counters: CounterBoard,
    labels: Labels,
    routes_at: usize,
    backends_at: usize,
    bytes_at: usize,
}

impl RequestCounts {
    /// The names of the places counted, which the access log writes too.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    fn new(workers: usize, labels: Labels) -> Self {
        let routes_at = labels.listeners.len() * (labels.groups.len() + 1) * STATUS_CLASSES;
        let backends_at = routes_at + labels.routes.len() * STATUS_CLASSES;
        let bytes_at = backends_at + labels.backends.len() * STATUS_CLASSES;
        let per_worker = bytes_at + labels.listeners.len() * 2;
        Self {
            counters: CounterBoard::new(workers, per_worker),
            labels,
            routes_at,
            backends_at,
            bytes_at,
        }
    }

    /// `group` past the last one: the listener's requests that went to no group.
    fn listener_index(&self, listener: usize, group: usize, class: usize) -> usize {
        (listener * (self.labels.groups.len() + 1) + group) * STATUS_CLASSES + class
    }

    /// A response with `status`, from `worker`, to a request received on `listener` for
    /// `group` (positions in the generation's config; any other value: answered by the proxy
    /// before or instead of choosing a group, counted under the group `""`).
    #[inline]
    pub fn response(&self, worker: usize, listener: usize, group: usize, status: u16) {
        if listener >= self.labels.listeners.len() {
            return;
        }
        let group = group.min(self.labels.groups.len());
        let index = self.listener_index(listener, group, class_of(status));
        self.counters.add(worker, index, 1);
    }

    /// A response with `status` to a request that route `route` of `listener`'s table
    /// proxied.
    #[inline]
    pub fn route_response(&self, worker: usize, listener: usize, route: usize, status: u16) {
        let Some(Some(base)) = self.labels.route_base.get(listener) else {
            return;
        };
        let index = self.routes_at + (base + route) * STATUS_CLASSES + class_of(status);
        if index < self.backends_at {
            self.counters.add(worker, index, 1);
        }
    }

    /// A response head with `status` from the backend numbered `backend`.
    #[inline]
    pub fn backend_response(&self, worker: usize, backend: usize, status: u16) {
        if backend < self.labels.backends.len() {
            let index = self.backends_at + backend * STATUS_CLASSES + class_of(status);
            self.counters.add(worker, index, 1);
        }
    }

    /// Bytes received from a client of `listener`.
    #[inline]
    pub fn received(&self, worker: usize, listener: usize, bytes: u64) {
        if listener < self.labels.listeners.len() {
            self.counters
                .add(worker, self.bytes_at + listener * 2, bytes);
        }
    }

    /// Bytes sent to a client of `listener`.
    #[inline]
    pub fn sent(&self, worker: usize, listener: usize, bytes: u64) {
        if listener < self.labels.listeners.len() {
            self.counters
                .add(worker, self.bytes_at + listener * 2 + 1, bytes);
        }
    }

    /// Counter `at` summed over the workers.
    fn total(&self, at: usize, workers: usize) -> u64 {
        (0..workers).map(|w| self.counters.get(w, at)).sum()
    }

    fn sum_classes(&self, total: &mut ByClass, first: usize, workers: usize) {
        for (class, total) in total.iter_mut().enumerate() {
            *total += self.total(first + class, workers);
        }
    }

    /// Adds every count to `totals`, by label.
    fn add_to(&self, totals: &mut RequestTotals, workers: usize) {
        let no_group = self.labels.groups.len();
        for (l, listener) in self.labels.listeners.iter().enumerate() {
            let groups = self.labels.groups.iter().map(String::as_str).enumerate();
            for (g, group) in groups.chain([(no_group, "")]) {
                let counts: Vec<ByClass> = (0..workers)
                    .map(|w| {
                        std::array::from_fn(|c| self.counters.get(w, self.listener_index(l, g, c)))
                    })
                    .collect();
                let key = (listener.clone(), group.to_string());
                // The group-less series only once something was counted there.
                if g == no_group
                    && !totals.by_listener.contains_key(&key)
                    && counts.iter().flatten().all(|&n| n == 0)
                {
                    continue;
                }
                let entry = totals
                    .by_listener
                    .entry(key)
                    .or_insert_with(|| vec![[0; STATUS_CLASSES]; workers]);
                for (total, counted) in entry.iter_mut().zip(&counts) {
                    total.iter_mut().zip(counted).for_each(|(t, n)| *t += n);
                }
            }
            let bytes = totals.bytes.entry(listener.clone()).or_default();
            let at = self.bytes_at + l * 2;
            bytes.received += self.total(at, workers);
            bytes.sent += self.total(at + 1, workers);
        }
        for (r, route) in self.labels.routes.iter().enumerate() {
            let total = totals.by_route.entry(route.clone()).or_default();
            self.sum_classes(total, self.routes_at + r * STATUS_CLASSES, workers);
        }
        for (b, label) in self.labels.backends.iter().enumerate() {
            let Some(label) = label else { continue };
            let total = totals.by_backend.entry(label.clone()).or_default();
            self.sum_classes(total, self.backends_at + b * STATUS_CLASSES, workers);
        }
    }
}

/// 0 for 1xx .. 4 for 5xx (out of range statuses clamped).
#[inline]
fn class_of(status: u16) -> usize {
    usize::from(status / 100).clamp(1, STATUS_CLASSES) - 1
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
            ..Labels::default()
        }
    }

    fn metrics() -> Arc<Metrics> {
        Metrics::new(2)
    }

    fn total(m: &Metrics, listener: &str, group: &str, worker: usize, class: usize) -> u64 {
        let key = (listener.to_string(), group.to_string());
        m.request_totals()
            .by_listener
            .get(&key)
            .map_or(0, |w| w[worker][class])
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
        let w0 = WorkerMetrics::new(m.clone(), 0, true);
        let w1 = WorkerMetrics::new(m.clone(), 1, true);
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
    fn every_counter_has_its_own_index_before_the_regions() {
        for (index, counter) in Counter::ALL.iter().enumerate() {
            assert_eq!(*counter as usize, index, "{counter:?}");
        }
        let m = metrics();
        let w = WorkerMetrics::new(m.clone(), 0, true);
        w.access_log_dropped(3);
        w.count(Counter::UpstreamConnectMicros);
        assert_eq!(m.timeouts(Timeout::ClientHeader), 0);
        assert_eq!(m.counter_total(Counter::AccessLogDropped), 3);
    }

    #[test]
    fn routes_backends_and_bytes_count_by_label_and_unknown_positions_are_ignored() {
        let m = metrics();
        let labels = Labels {
            listeners: vec!["l0".into(), "l1".into()],
            groups: vec!["g".into()],
            // Both listeners share table t (two routes).
            route_base: vec![Some(0), Some(0)],
            routes: vec!["t[0]".into(), "t[1]".into()],
            backends: vec![None, Some(("g".into(), "b1".into()))],
        };
        let counts = m.request_counts(labels);
        counts.route_response(0, 0, 1, 200);
        counts.route_response(1, 1, 1, 503);
        counts.route_response(0, 0, 2, 200); // no route 2
        counts.backend_response(0, 1, 404);
        counts.backend_response(0, 2, 200); // no backend 2
        counts.received(1, 1, 100);
        counts.sent(1, 1, 40);
        counts.sent(0, 5, 40); // no listener 5
        counts.response(0, 0, u32::MAX as usize, 404);
        let totals = m.request_totals();
        assert_eq!(totals.by_route["t[1]"], [0, 1, 0, 0, 1]);
        assert_eq!(totals.by_route["t[0]"], [0; 5]);
        let b1 = ("g".to_string(), "b1".to_string());
        assert_eq!(totals.by_backend[&b1], [0, 0, 0, 1, 0]);
        assert_eq!(totals.by_backend.len(), 1);
        let l1 = Bytes {
            received: 100,
            sent: 40,
        };
        assert_eq!(totals.bytes["l1"], l1);
        assert_eq!(totals.bytes["l0"], Bytes::default());
        let no_group = ("l0".to_string(), String::new());
        assert_eq!(totals.by_listener[&no_group][0], [0, 0, 0, 1, 0]);
        let untouched = ("l1".to_string(), String::new());
        assert!(!totals.by_listener.contains_key(&untouched));
    }

    #[test]
    fn metrics_off_count_nothing() {
        let m = metrics();
        let w = WorkerMetrics::new(m.clone(), 0, false);
        w.count(Counter::Accepted);
        w.timeout(Timeout::BodyIdle);
        w.request_time(Duration::from_millis(1));
        w.sweep(3, 1, 2);
        assert_eq!(m.counter_total(Counter::Accepted), 0);
        assert_eq!(m.timeouts(Timeout::BodyIdle), 0);
        assert_eq!(m.counter_total(Counter::OpenConnections), 0);
        assert_eq!(m.counter_total(Counter::RequestMicros), 0);
    }

    #[test]
    fn parse_errors_by_status_and_other() {
        let m = metrics();
        let w = WorkerMetrics::new(m.clone(), 0, true);
        w.parse_error(431);
        w.parse_error(431);
        w.parse_error(499);
        assert_eq!(m.parse_errors(4), 2);
        assert_eq!(m.parse_errors(PARSE_ERROR_STATUSES.len()), 1);
    }
}
