//! What `ringproxy top` reads from `GET /status` (see `admin::status`). Fields it does not
//! show are not read; fields a proxy does not send default, except `workers` and `backends`,
//! without which the answer is not a ringproxy status.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Snapshot {
    #[serde(default)]
    pub generation: u64,
    #[serde(default)]
    pub uptime_seconds: f64,
    pub workers: Vec<Worker>,
    pub backends: Vec<Backend>,
    #[serde(default)]
    pub upstream_first_byte: Quantiles,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Worker {
    pub worker: usize,
    pub cpu: Option<usize>,
    pub open_connections: u64,
    pub requests_per_second: f64,
    pub responses_per_second: ErrorRates,
    pub upstream_first_byte: Option<Quantiles>,
}

/// Responses per second of the two error classes.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
pub struct ErrorRates {
    #[serde(rename = "4xx")]
    pub client_errors: f64,
    #[serde(rename = "5xx")]
    pub server_errors: f64,
}

/// Latency quantiles in seconds; `None` without samples.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
pub struct Quantiles {
    pub count: u64,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Backend {
    pub upstream: String,
    pub address: String,
    pub health: String,
    pub inflight: u64,
    pub inflight_per_worker: Vec<u64>,
    pub ewma_seconds: Option<f64>,
}
