//! `GET /status`: the live per-core view as JSON.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

use super::AdminState;
use super::render::{CLASSES, merged};
use crate::metrics::latency::{Latency, Published};
use crate::metrics::{Counter, Metrics, STATUS_CLASSES};
use crate::upstream::BackendId;

/// Rates are measured between two `/status` calls at least this far apart (a terminal view
/// asks every second); a call sooner gets the last rates again.
const RATE_WINDOW_MIN: Duration = Duration::from_secs(1);

/// One worker's responses by status class (1xx..5xx).
type ByClass<T> = [T; STATUS_CLASSES];

/// The admin thread's memory between two calls, for the rates.
pub struct RateWindow {
    at: Instant,
    counts: Vec<ByClass<u64>>,
    rates: Vec<ByClass<f64>>,
    /// How long the window behind `rates` was.
    window: Duration,
}

impl RateWindow {
    pub fn new(workers: usize) -> Self {
        Self {
            at: Instant::now(),
            counts: vec![[0; STATUS_CLASSES]; workers],
            rates: vec![[0.0; STATUS_CLASSES]; workers],
            window: Duration::ZERO,
        }
    }

    fn update(&mut self, counts: &[ByClass<u64>]) {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.at);
        if elapsed < RATE_WINDOW_MIN {
            return;
        }
        let seconds = elapsed.as_secs_f64();
        for ((rates, old), new) in self.rates.iter_mut().zip(&self.counts).zip(counts) {
            for ((rate, old), new) in rates.iter_mut().zip(old).zip(new) {
                *rate = new.saturating_sub(*old) as f64 / seconds;
            }
        }
        self.counts = counts.to_vec();
        self.at = now;
        self.window = elapsed;
    }
}

/// Each worker's responses by class, summed over listeners, upstream groups and config
/// generations.
fn responses_by_class(metrics: &Metrics) -> Vec<ByClass<u64>> {
    let totals = metrics.request_totals();
    (0..metrics.workers())
        .map(|w| {
            std::array::from_fn(|class| {
                totals
                    .by_listener
                    .values()
                    .filter_map(|workers| workers.get(w))
                    .map(|classes| classes[class])
                    .sum()
            })
        })
        .collect()
}

/// `{"1xx": .., .., "5xx": ..}`.
fn by_class<T: Copy + Into<Value>>(values: &ByClass<T>) -> Value {
    let map: Map<String, Value> = CLASSES
        .iter()
        .zip(values)
        .map(|(class, &v)| (class.to_string(), v.into()))
        .collect();
    Value::Object(map)
}

pub fn status_json(state: &AdminState, latencies: &[Published], window: &mut RateWindow) -> Value {
    let counts = responses_by_class(&state.metrics);
    window.update(&counts);
    json!({
        "generation": state.generation().number,
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
        "rate_window_seconds": window.window.as_secs_f64(),
        "workers": workers(state, latencies, &counts, &window.rates),
        "backends": backends(state),
        "upstream_first_byte": quantiles(&merged(latencies, Latency::UpstreamFirstByte)),
        "upstream_connect": quantiles(&merged(latencies, Latency::UpstreamConnect)),
        "request_duration": quantiles(&merged(latencies, Latency::Request)),
    })
}

fn workers(
    state: &AdminState,
    latencies: &[Published],
    counts: &[ByClass<u64>],
    rates: &[ByClass<f64>],
) -> Vec<Value> {
    let metrics = &state.metrics;
    let none = [0; STATUS_CLASSES];
    let no_rates = [0.0; STATUS_CLASSES];
    (0..metrics.workers())
        .map(|w| {
            let latency = |l: Latency| latencies.get(w).and_then(|p| p.histograms.get(l.index()));
            let counts = counts.get(w).unwrap_or(&none);
            let rates = rates.get(w).unwrap_or(&no_rates);
            json!({
                "worker": w,
                "cpu": state.cpus.get(w).copied().flatten(),
                "open_connections": metrics.counter(w, Counter::OpenConnections),
                "idle_connections": metrics.counter(w, Counter::IdleConnections),
                "accepted_connections": metrics.counter(w, Counter::Accepted),
                "requests": counts.iter().sum::<u64>(),
                "responses": by_class(counts),
                "requests_per_second": rates.iter().sum::<f64>(),
                "responses_per_second": by_class(rates),
                "upstream_first_byte": latency(Latency::UpstreamFirstByte).map(quantiles),
                "request_duration": latency(Latency::Request).map(quantiles),
            })
        })
        .collect()
}

fn backends(state: &AdminState) -> Vec<Value> {
    let load = &state.load;
    let generation = state.generation();
    let health = &generation.health;
    (0..health.backend_count())
        .filter_map(|b| {
            let report = health.report_state(BackendId(b))?;
            let inflight: Vec<u32> = (0..load.workers()).map(|w| load.published(w, b)).collect();
            let ewma: Vec<Option<f64>> = (0..load.workers())
                .map(|w| load.published_ewma(w, b).map(|d| d.as_secs_f64()))
                .collect();
            let measured: Vec<f64> = ewma.iter().flatten().copied().collect();
            let mean = (!measured.is_empty())
                .then(|| measured.iter().sum::<f64>() / measured.len() as f64);
            Some(json!({
                "upstream": report.upstream,
                "address": report.address.to_string(),
                "health": report.health.name(),
                "ejections": report.ejections,
                "inflight_per_worker": inflight,
                "inflight": inflight.iter().map(|&n| u64::from(n)).sum::<u64>(),
                "ewma_seconds_per_worker": ewma,
                "ewma_seconds": mean,
            }))
        })
        .collect()
}

/// Count and quantiles in seconds (`null` without samples).
fn quantiles(h: &Histogram<u64>) -> Value {
    let at = |q: f64| (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1e6);
    json!({
        "count": h.len(),
        "p50": at(0.5),
        "p90": at(0.9),
        "p99": at(0.99),
        "p99_9": at(0.999),
    })
}
