//! The live per-core view: `/status` checked against the traffic sent.

mod common;

use common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

/// Two unpinned workers in front of `backend`, with an admin listener (`admin_toml`: more
/// `[admin]` keys).
fn proxy_with_admin(backend: SocketAddr, admin_toml: &str) -> Proxy {
    let toml = format!(
        "[runtime]\nworkers = 2\npin = false\n\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\nupstream = \"app\"\n\n\
         [upstream.app]\nbackends = [\"{backend}\"]\n\n\
         [admin]\naddress = \"127.0.0.1:0\"\n{admin_toml}\n"
    );
    Proxy::start_with_config(&toml, &[])
}

fn status(admin: SocketAddr) -> Value {
    let (code, body) = admin_get(admin, "/status", None);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// `field` of every worker added up.
fn sum_over_workers(status: &Value, field: impl Fn(&Value) -> f64) -> f64 {
    status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(field)
        .sum()
}

#[test]
fn status_reports_what_the_traffic_did_per_worker_and_per_backend() {
    let backend = app_backend();
    let proxy = proxy_with_admin(backend.addr(), "");
    let admin = admin_addr(&proxy);
    let before = status(admin);
    assert_eq!(before["generation"], 1, "{before:#}");
    assert_eq!(before["workers"].as_array().unwrap().len(), 2, "{before:#}");
    let unmeasured = &before["backends"][0];
    assert_eq!(unmeasured["ewma_seconds"], Value::Null, "{before:#}");
    assert_eq!(
        unmeasured["ewma_seconds_per_worker"],
        serde_json::json!([null, null])
    );
    let asked = Instant::now();

    // Eight 200s and two 404s, over six connections (the kernel spreads them over workers).
    for _ in 0..4 {
        let mut client = RawClient::connect(proxy.addr());
        for _ in 0..2 {
            client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(client.read_response().unwrap().status, 200);
        }
    }
    for _ in 0..2 {
        let mut client = RawClient::connect(proxy.addr());
        client.send(b"GET /missing HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(client.read_response().unwrap().status, 404);
    }
    // Rates cover at least a second since the previous call; the workers' timer sweeps and
    // load reconciles (every 50 ms) have long run by then.
    thread::sleep(Duration::from_millis(1200).saturating_sub(asked.elapsed()));
    let after = status(admin);
    let class = |class: &'static str| move |w: &Value| w["responses"][class].as_f64().unwrap();
    assert_eq!(sum_over_workers(&after, class("2xx")), 8.0, "{after:#}");
    assert_eq!(sum_over_workers(&after, class("4xx")), 2.0, "{after:#}");
    assert_eq!(
        sum_over_workers(&after, |w| w["requests"].as_f64().unwrap()),
        10.0
    );
    assert_eq!(
        sum_over_workers(&after, |w| w["upstream_first_byte"]["count"]
            .as_f64()
            .unwrap()),
        10.0
    );
    // Every request fell in the window: rate times window gives the counts back.
    let window = after["rate_window_seconds"].as_f64().unwrap();
    assert!(window >= 1.0, "{after:#}");
    let rate = |class: &'static str| {
        move |w: &Value| w["responses_per_second"][class].as_f64().unwrap() * window
    };
    assert!(
        (sum_over_workers(&after, rate("4xx")) - 2.0).abs() < 1e-6,
        "{after:#}"
    );
    assert!(
        (sum_over_workers(&after, rate("2xx")) - 8.0).abs() < 1e-6,
        "{after:#}"
    );
    let requests_rate = sum_over_workers(&after, |w| w["requests_per_second"].as_f64().unwrap());
    assert!((requests_rate * window - 10.0).abs() < 1e-6, "{after:#}");

    let backends = after["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 1, "{after:#}");
    let app = &backends[0];
    assert_eq!(app["upstream"], "app");
    assert_eq!(app["address"], backend.addr().to_string());
    assert_eq!(app["health"], "up");
    assert_eq!(app["inflight"], 0, "nothing in flight at rest: {after:#}");
    assert_eq!(app["inflight_per_worker"], serde_json::json!([0, 0]));
    let ewma = app["ewma_seconds"]
        .as_f64()
        .expect("an estimate after requests");
    assert!(ewma > 0.0 && ewma < 10.0, "{after:#}");
    let per_worker = app["ewma_seconds_per_worker"].as_array().unwrap();
    assert_eq!(per_worker.len(), 2);
    assert!(per_worker.iter().any(Value::is_f64), "{after:#}");
    assert!(per_worker.iter().flat_map(Value::as_f64).all(|s| s > 0.0));
    assert_eq!(after["generation"], 1);
}
