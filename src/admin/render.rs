//! `GET /metrics`: every worker's counters summed (or per worker where the worker is the
//! point), the latency histograms merged, and backend health read from the shared table.

use std::sync::atomic::Ordering;

use hdrhistogram::Histogram;

use super::AdminState;
use crate::metrics::exposition::{Exposition, Kind};
use crate::metrics::latency::{Latency, Published, empty_histogram};
use crate::metrics::{
    ByClass, Counter, PARSE_ERROR_STATUSES, RequestTotals, STATUS_CLASSES, Timeout, TlsFailure,
    TlsHandshake,
};
use crate::upstream::BackendId;
use crate::upstream::health::BackendHealth;

/// Upper bounds of the latency histograms' buckets, in seconds. hdrhistogram places a value
/// within 1% of its own, so a sample within 1% of a bound may count on either side of it.
pub const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
pub(super) const CLASSES: [&str; STATUS_CLASSES] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

pub fn metrics_text(state: &AdminState, latencies: &[Published]) -> String {
    let mut e = Exposition::default();
    let counted = state.metrics.request_totals();
    requests(&mut e, &counted);
    routes(&mut e, &counted);
    backend_requests(&mut e, &counted);
    client_bytes(&mut e, &counted);
    per_worker_connections(&mut e, state);
    totals(&mut e, state);
    tls(&mut e, state);
    backends(&mut e, state);
    for latency in Latency::ALL {
        histogram(&mut e, state, latencies, latency);
    }
    access_log(&mut e, state);
    e.into_string()
}

fn requests(e: &mut Exposition, totals: &RequestTotals) {
    let name = "ringproxy_requests_total";
    e.family(
        name,
        Kind::Counter,
        "Requests answered, by listener, upstream group and status class.",
    );
    // Every (listener, group) pair of a generation is there, with traffic or without: the
    // pairs a listener can reach are few, and a series that exists from the start makes
    // rate() right from the first request.
    for ((listener, group), workers) in &totals.by_listener {
        let classes = workers.iter().fold([0; STATUS_CLASSES], |mut sum, w| {
            sum.iter_mut().zip(w).for_each(|(s, n)| *s += n);
            sum
        });
        by_class(
            e,
            name,
            &[("listener", listener), ("upstream", group)],
            &classes,
        );
    }
}

fn routes(e: &mut Exposition, totals: &RequestTotals) {
    let name = "ringproxy_route_requests_total";
    e.family(
        name,
        Kind::Counter,
        "Requests proxied by each route (TABLE[INDEX], 0-based in file order), by status class.",
    );
    for (route, classes) in &totals.by_route {
        by_class(e, name, &[("route", route)], classes);
    }
}

fn backend_requests(e: &mut Exposition, totals: &RequestTotals) {
    let name = "ringproxy_backend_responses_total";
    e.family(
        name,
        Kind::Counter,
        "Response heads received from each backend (every attempt that got one), by status class.",
    );
    for ((group, address), classes) in &totals.by_backend {
        by_class(
            e,
            name,
            &[("upstream", group), ("backend", address)],
            classes,
        );
    }
}

/// One sample per status class, after `labels`.
fn by_class(e: &mut Exposition, name: &str, labels: &[(&str, &str)], classes: &ByClass) {
    let mut all = labels.to_vec();
    all.push(("class", ""));
    for (class, count) in CLASSES.iter().zip(classes) {
        if let Some(last) = all.last_mut() {
            last.1 = class;
        }
        e.sample(name, &all, *count as f64);
    }
}

fn client_bytes(e: &mut Exposition, totals: &RequestTotals) {
    let families = [
        (
            "ringproxy_client_bytes_received_total",
            "Bytes read from clients (request heads and bodies, tunnels), by listener.",
            false,
        ),
        (
            "ringproxy_client_bytes_sent_total",
            "Bytes written to clients (response heads and bodies, tunnels), by listener.",
            true,
        ),
    ];
    for (name, help, sent) in families {
        e.family(name, Kind::Counter, help);
        for (listener, bytes) in &totals.bytes {
            let value = if sent { bytes.sent } else { bytes.received };
            e.sample(name, &[("listener", listener)], value as f64);
        }
    }
}

fn per_worker_connections(e: &mut Exposition, state: &AdminState) {
    let metrics = &state.metrics;
    let families = [
        (
            "ringproxy_client_connections_accepted_total",
            Kind::Counter,
            "Client connections accepted, per worker.",
            Counter::Accepted,
        ),
        (
            "ringproxy_client_connections_open",
            Kind::Gauge,
            "Client connections open, per worker (as of its last timer sweep).",
            Counter::OpenConnections,
        ),
        (
            "ringproxy_client_connections_idle",
            Kind::Gauge,
            "Client connections waiting for a next request, per worker (as of its last timer sweep).",
            Counter::IdleConnections,
        ),
    ];
    for (name, kind, help, counter) in families {
        e.family(name, kind, help);
        for w in 0..metrics.workers() {
            let worker = w.to_string();
            e.sample(
                name,
                &[("worker", &worker)],
                metrics.counter(w, counter) as f64,
            );
        }
    }
}

fn totals(e: &mut Exposition, state: &AdminState) {
    let metrics = &state.metrics;
    let families = [
        (
            "ringproxy_backend_connections_opened_total",
            "Backend connections opened.",
            Counter::BackendOpened,
        ),
        (
            "ringproxy_backend_connections_reused_total",
            "Requests sent over a pooled backend connection.",
            Counter::BackendReused,
        ),
        (
            "ringproxy_backend_connections_closed_total",
            "Backend connections closed (as of each worker's last timer sweep).",
            Counter::BackendClosed,
        ),
        (
            "ringproxy_retries_total",
            "Further attempts of a request on another backend.",
            Counter::Retries,
        ),
    ];
    for (name, help, counter) in families {
        e.family(name, Kind::Counter, help);
        e.sample(name, &[], metrics.counter_total(counter) as f64);
    }
    counter_by_label(
        e,
        "ringproxy_timeouts_total",
        "Timeouts, by kind.",
        "kind",
        Timeout::ALL.map(|kind| (kind.label(), metrics.timeouts(kind))),
    );
    let name = "ringproxy_parse_errors_total";
    e.family(
        name,
        Kind::Counter,
        "Requests refused before reaching a backend, by the status they were answered with.",
    );
    let statuses = PARSE_ERROR_STATUSES.iter().map(|s| s.to_string());
    for (slot, status) in statuses.chain(["other".to_string()]).enumerate() {
        e.sample(
            name,
            &[("status", &status)],
            metrics.parse_errors(slot) as f64,
        );
    }
}

/// Handshakes on TLS listeners; nothing while there is none and never was.
fn tls(e: &mut Exposition, state: &AdminState) {
    let metrics = &state.metrics;
    let tls_now = state
        .generation()
        .config
        .listeners
        .iter()
        .any(|l| l.tls.is_some());
    let counted = TlsHandshake::ALL
        .iter()
        .any(|&k| metrics.tls_handshakes(k) > 0)
        || TlsFailure::ALL.iter().any(|&r| metrics.tls_failures(r) > 0);
    if !tls_now && !counted {
        return;
    }
    counter_by_label(
        e,
        "ringproxy_tls_handshakes_total",
        "TLS handshakes completed, by kind: full, or resumed from a ticket or the session cache.",
        "kind",
        TlsHandshake::ALL.map(|kind| (kind.label(), metrics.tls_handshakes(kind))),
    );
    counter_by_label(
        e,
        "ringproxy_tls_handshake_failures_total",
        "Connections on TLS listeners that closed before the handshake completed, by reason.",
        "reason",
        TlsFailure::ALL.map(|reason| (reason.label(), metrics.tls_failures(reason))),
    );
}

/// A counter family with one sample per value of its one label.
fn counter_by_label<'a>(
    e: &mut Exposition,
    name: &str,
    help: &str,
    label: &str,
    counts: impl IntoIterator<Item = (&'a str, u64)>,
) {
    e.family(name, Kind::Counter, help);
    for (value, count) in counts {
        e.sample(name, &[(label, value)], count as f64);
    }
}

fn access_log(e: &mut Exposition, state: &AdminState) {
    let metrics = &state.metrics;
    let counts = &metrics.access_log;
    let name = "ringproxy_access_log_lines_total";
    e.family(name, Kind::Counter, "Access log lines written to the file.");
    e.sample(name, &[], counts.written.load(Ordering::Relaxed) as f64);
    let write_failed = counts.failed.load(Ordering::Relaxed);
    counter_by_label(
        e,
        "ringproxy_access_log_dropped_total",
        "Access log lines lost: the writer fell behind and its queue was full, or a write failed.",
        "reason",
        [
            (
                "queue_full",
                metrics.counter_total(Counter::AccessLogDropped),
            ),
            ("write_failed", write_failed),
        ],
    );
}

fn backends(e: &mut Exposition, state: &AdminState) {
    let generation = state.generation();
    let health = &generation.health;
    let reports: Vec<_> = (0..health.backend_count())
        .filter_map(|b| health.report_state(BackendId(b)))
        .collect();
    let families: [(&str, Kind, &str); 3] = [
        (
            "ringproxy_backend_up",
            Kind::Gauge,
            "1 when the backend gets requests: up for active checks and not ejected.",
        ),
        (
            "ringproxy_backend_ejected",
            Kind::Gauge,
            "1 while the backend is passively ejected.",
        ),
        (
            "ringproxy_backend_ejections_total",
            Kind::Counter,
            "Passive ejections of the backend (stalls included).",
        ),
    ];
    for (index, (name, kind, help)) in families.into_iter().enumerate() {
        e.family(name, kind, help);
        for report in &reports {
            let address = report.address.to_string();
            let labels = [("upstream", report.upstream), ("backend", address.as_str())];
            let value = match index {
                0 => u64::from(report.health == BackendHealth::Up),
                1 => u64::from(report.health == BackendHealth::Ejected),
                _ => report.ejections,
            };
            e.sample(name, &labels, value as f64);
        }
    }
}

fn histogram(e: &mut Exposition, state: &AdminState, latencies: &[Published], latency: Latency) {
    let (name, help) = match latency {
        Latency::UpstreamFirstByte => (
            "ringproxy_upstream_first_byte_seconds",
            "From a request sent whole to its backend until the response head, per attempt.",
        ),
        Latency::UpstreamConnect => (
            "ringproxy_upstream_connect_seconds",
            "Connecting to a backend (TCP, and TLS to a TLS backend), per new connection.",
        ),
        Latency::Request => (
            "ringproxy_request_duration_seconds",
            "From a request head complete until the response's last byte written.",
        ),
    };
    e.family(name, Kind::Histogram, help);
    let merged = merged(latencies, latency);
    let sum = state.metrics.counter_total(latency.sum()) as f64 / 1e6;
    e.histogram(name, &[], &BUCKETS, &merged, sum);
}

/// Histogram `latency` of every worker, added together.
pub fn merged(latencies: &[Published], latency: Latency) -> Histogram<u64> {
    let mut all = empty_histogram();
    for published in latencies {
        if let Some(h) = published.histograms.get(latency.index()) {
            let _ = all.add(h);
        }
    }
    all
}
