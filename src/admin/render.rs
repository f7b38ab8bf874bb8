//! `GET /metrics`: every worker's counters summed (or per worker where the worker is the
//! point), the latency histograms merged, and backend health read from the shared table.

use std::sync::atomic::Ordering;

use hdrhistogram::Histogram;

use super::AdminState;
use crate::metrics::exposition::{Exposition, Kind};
use crate::metrics::latency::{Published, empty_histogram};
use crate::metrics::{
    Counter, PARSE_ERROR_STATUSES, STATUS_CLASSES, Timeout, TlsFailure, TlsHandshake,
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
    requests(&mut e, state);
    per_worker_connections(&mut e, state);
    totals(&mut e, state);
    tls(&mut e, state);
    backends(&mut e, state);
    first_byte(&mut e, state, latencies);
    access_log(&mut e, state);
    e.into_string()
}

fn requests(e: &mut Exposition, state: &AdminState) {
    let name = "ringproxy_requests_total";
    e.family(
        name,
        Kind::Counter,
        "Requests answered, by listener, upstream group and status class.",
    );
    let mut totals = state.metrics.request_totals();
    // A listener's own group always, other pairs once they have traffic.
    let generation = state.generation();
    for (listener, address) in generation
        .config
        .listeners
        .iter()
        .zip(&generation.addresses)
    {
        totals
            .entry((address.to_string(), listener.upstream.clone()))
            .or_default();
    }
    for ((listener, group), workers) in &totals {
        for (c, class) in CLASSES.iter().enumerate() {
            let count: u64 = workers.iter().map(|classes| classes[c]).sum();
            let labels = [
                ("listener", listener.as_str()),
                ("upstream", group.as_str()),
                ("class", class),
            ];
            e.sample(name, &labels, count as f64);
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

fn first_byte(e: &mut Exposition, state: &AdminState, latencies: &[Published]) {
    let name = "ringproxy_upstream_first_byte_seconds";
    e.family(
        name,
        Kind::Histogram,
        "From a request sent whole to its backend until the response head, per attempt.",
    );
    let merged = merged(latencies, 0);
    let sum = state
        .metrics
        .counter_total(Counter::UpstreamFirstByteMicros) as f64
        / 1e6;
    e.histogram(name, &[], &BUCKETS, &merged, sum);
}

/// Histogram `index` of every worker, added together.
pub fn merged(latencies: &[Published], index: usize) -> Histogram<u64> {
    let mut all = empty_histogram();
    for published in latencies {
        if let Some(h) = published.histograms.get(index) {
            let _ = all.add(h);
        }
    }
    all
}
