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
use std::sync::Arc;
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
    /// Backend connections opened.
    BackendOpened,
    /// Requests sent over a pooled backend connection.
    BackendReused,
    /// Further attempts of a request on another backend.
    Retries,
    /// Sum of `Latency::UpstreamFirstByte` samples, in microseconds (the histogram's `_sum`).
    UpstreamFirstByteMicros,
}

impl Counter {
    const COUNT: usize = 6;
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

/// The statuses a request the proxy could not accept is answered with; anything else is
/// counted as `other`.
pub const PARSE_ERROR_STATUSES: [u16; 7] = [400, 413, 414, 417, 431, 501, 505];
const PARSE_ERROR_SLOTS: usize = PARSE_ERROR_STATUSES.len() + 1;
/// 1xx..5xx.
pub const STATUS_CLASSES: usize = 5;

const TIMEOUTS_AT: usize = Counter::COUNT;
const PARSE_ERRORS_AT: usize = TIMEOUTS_AT + Timeout::ALL.len();
const REQUESTS_AT: usize = PARSE_ERRORS_AT + PARSE_ERROR_SLOTS;

/// What the labels of the request counters range over, fixed at start.
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
    labels: Labels,
}

impl Metrics {
    pub fn new(workers: usize, labels: Labels) -> Arc<Self> {
        let requests = labels.listeners.len() * labels.groups.len() * STATUS_CLASSES;
        Arc::new(Self {
            counters: CounterBoard::new(workers, REQUESTS_AT + requests),
            latency: LatencyBoard::new(workers),
            labels,
        })
    }

    pub fn workers(&self) -> usize {
        self.counters.workers()
    }

    pub fn labels(&self) -> &Labels {
        &self.labels
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

    fn request_index(&self, listener: usize, group: usize, class: usize) -> usize {
        REQUESTS_AT + (listener * self.labels.groups.len() + group) * STATUS_CLASSES + class
    }

    /// Responses of `class` (0 for 1xx .. 4 for 5xx) on `listener` for `group`, by `worker`.
    pub fn requests(&self, worker: usize, listener: usize, group: usize, class: usize) -> u64 {
        self.counters
            .get(worker, self.request_index(listener, group, class))
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

    /// A request refused with `status` before it reached a backend.
    pub fn parse_error(&self, status: u16) {
        let slot = PARSE_ERROR_STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(PARSE_ERROR_STATUSES.len());
        self.add(PARSE_ERRORS_AT + slot);
    }

    /// A response with `status` to a request received on `listener` for `group`.
    #[inline]
    pub fn response(&self, listener: usize, group: usize, status: u16) {
        let groups = self.shared.labels.groups.len();
        if listener >= self.shared.labels.listeners.len() || group >= groups {
            return;
        }
        let class = usize::from(status / 100).clamp(1, STATUS_CLASSES) - 1;
        self.add(self.shared.request_index(listener, group, class));
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

    /// From the timer sweep: the open-connection gauge, and the histograms if a scrape waits.
    pub fn sweep(&self, open_connections: usize) {
        self.shared.counters.set(
            self.worker,
            Counter::OpenConnections as usize,
            open_connections as u64,
        );
        self.recorder
            .borrow_mut()
            .publish_if_wanted(&self.shared.latency, self.worker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Arc<Metrics> {
        Metrics::new(
            2,
            Labels {
                listeners: vec!["a".into(), "b".into()],
                groups: vec!["g".into(), "h".into(), "i".into()],
            },
        )
    }

    #[test]
    fn responses_count_by_listener_group_and_class() {
        let m = metrics();
        let w0 = WorkerMetrics::new(m.clone(), 0);
        let w1 = WorkerMetrics::new(m.clone(), 1);
        w0.response(1, 2, 200);
        w0.response(1, 2, 204);
        w1.response(1, 2, 503);
        w1.response(0, 0, 404);
        w1.response(2, 0, 200); // no such listener: ignored
        assert_eq!(m.requests(0, 1, 2, 1), 2);
        assert_eq!(m.requests(1, 1, 2, 4), 1);
        assert_eq!(m.requests(1, 0, 0, 3), 1);
        assert_eq!(m.requests(0, 0, 0, 1), 0);
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
