//! `GET /status`: the live per-core view as JSON.

use std::time::Instant;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use super::AdminState;
use super::render::merged;
use crate::metrics::Counter;
use crate::metrics::latency::Published;
use crate::upstream::BackendId;

/// Requests per second are measured between two `/status` calls at least this far apart
/// (a terminal view asks every second); a call sooner gets the last rates again.
const RATE_WINDOW_MIN: std::time::Duration = std::time::Duration::from_secs(1);

/// The admin thread's memory between two calls, for requests per second.
pub struct RateWindow {
    at: Instant,
    requests: Vec<u64>,
    rates: Vec<f64>,
}

impl RateWindow {
    pub fn new(workers: usize) -> Self {
        Self {
            at: Instant::now(),
            requests: vec![0; workers],
            rates: vec![0.0; workers],
        }
    }

    fn update(&mut self, requests: &[u64]) -> &[f64] {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.at);
        if elapsed >= RATE_WINDOW_MIN {
            let seconds = elapsed.as_secs_f64();
            for ((rate, old), new) in self.rates.iter_mut().zip(&self.requests).zip(requests) {
                *rate = new.saturating_sub(*old) as f64 / seconds;
            }
            self.requests = requests.to_vec();
            self.at = now;
        }
        &self.rates
    }
}

pub fn status_json(state: &AdminState, latencies: &[Published], window: &mut RateWindow) -> Value {
    let metrics = &state.metrics;
    let totals = metrics.request_totals();
    let requests: Vec<u64> = (0..metrics.workers())
        .map(|w| {
            totals
                .values()
                .filter_map(|workers| workers.get(w))
                .flat_map(|classes| classes.iter())
                .sum()
        })
        .collect();
    let rates = window.update(&requests).to_vec();
    let workers: Vec<Value> = (0..metrics.workers())
        .map(|w| {
            let latency = latencies.get(w).and_then(|p| p.histograms.first());
            json!({
                "worker": w,
                "cpu": state.cpus.get(w).copied().flatten(),
                "open_connections": metrics.counter(w, Counter::OpenConnections),
                "accepted_connections": metrics.counter(w, Counter::Accepted),
                "requests": requests.get(w).copied().unwrap_or(0),
                "requests_per_second": rates.get(w).copied().unwrap_or(0.0),
                "upstream_first_byte": latency.map(quantiles),
            })
        })
        .collect();
    let generation = state.generation();
    let health = &generation.health;
    let backends: Vec<Value> = (0..health.backend_count())
        .filter_map(|b| {
            let report = health.report_state(BackendId(b))?;
            let inflight: Vec<u32> = (0..state.load.workers())
                .map(|w| state.load.published(w, b))
                .collect();
            Some(json!({
                "upstream": report.upstream,
                "address": report.address.to_string(),
                "health": report.health.name(),
                "ejections": report.ejections,
                "inflight_per_worker": inflight,
                "inflight": inflight.iter().map(|&n| u64::from(n)).sum::<u64>(),
            }))
        })
        .collect();
    json!({
        "generation": 0,
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
        "workers": workers,
        "backends": backends,
        "upstream_first_byte": quantiles(&merged(latencies, 0)),
    })
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
