//! Active and passive health checks, seen from the outside: which backend gets the traffic.

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// A backend whose `/healthz` answers 200 or 503 as the returned switch says; every other
/// request gets the echo reply.
fn switchable_backend() -> (Backend, Arc<AtomicBool>) {
    let healthy = Arc::new(AtomicBool::new(true));
    let flag = healthy.clone();
    let backend = Backend::start(move |req| {
        if req.target == "/healthz" {
            let status = if flag.load(Ordering::SeqCst) {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            let reply = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
            return vec![Step::Write(reply.into_bytes())];
        }
        echo_reply(req)
    });
    (backend, healthy)
}

fn proxy_with_active_checks(backends: &[SocketAddr]) -> Proxy {
    // Generous timeouts with fall = 2: one scheduling stall on a loaded machine must not
    // take a healthy backend down.
    let health = "[upstream.app.health]\npath = \"/healthz\"\ninterval = \"300ms\"\n\
                  timeout = \"300ms\"\nrise = 1\nfall = 2\n";
    Proxy::start_with_config(&config(backends, health), &[])
}

fn wait_for_log(proxy: &Proxy, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !proxy.stderr_lines().iter().any(|l| l.contains(needle)) {
        assert!(
            Instant::now() < deadline,
            "no log line with {needle:?}: {:?}",
            proxy.stderr_lines()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

fn served_requests(backend: &Backend) -> usize {
    backend
        .targets()
        .iter()
        .filter(|t| t.as_str() != "/healthz")
        .count()
}

#[test]
fn active_check_takes_a_failing_backend_out_and_brings_it_back() {
    let (a, a_healthy) = switchable_backend();
    let (b, _) = switchable_backend();
    let proxy = proxy_with_active_checks(&[a.addr(), b.addr()]);

    a_healthy.store(false, Ordering::SeqCst);
    wait_for_log(&proxy, &format!("{} (upstream \"app\") is DOWN", a.addr()));
    let before = served_requests(&a);
    for i in 0..10 {
        assert_eq!(get(proxy.addr(), &format!("/down{i}")).status, 200);
    }
    assert_eq!(served_requests(&a), before, "a down backend got traffic");

    a_healthy.store(true, Ordering::SeqCst);
    wait_for_log(&proxy, &format!("{} (upstream \"app\") is UP", a.addr()));
    for i in 0..10 {
        assert_eq!(get(proxy.addr(), &format!("/up{i}")).status, 200);
    }
    assert!(
        served_requests(&a) > before,
        "a recovered backend got no traffic"
    );
}

#[test]
fn tcp_check_marks_a_closed_port_down() {
    let dead = closed_port_addr();
    let live = Backend::echo();
    let health = "[upstream.app.health]\ntype = \"tcp\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\nfall = 1\n";
    let proxy = Proxy::start_with_config(&config(&[dead, live.addr()], health), &[]);
    wait_for_log(&proxy, &format!("{dead} (upstream \"app\") is DOWN"));
}

#[test]
fn no_usable_backend_is_503_with_retry_after() {
    let (a, a_healthy) = switchable_backend();
    let proxy = proxy_with_active_checks(&[a.addr()]);
    a_healthy.store(false, Ordering::SeqCst);
    wait_for_log(&proxy, "is DOWN");
    let r = get(proxy.addr(), "/");
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some(), "503 without Retry-After");
}

/// With `on_5xx`, consecutive 500s eject a backend: after `max_fails` answers it gets no more
/// requests until its cooldown ends.
#[test]
fn passive_check_ejects_a_backend_answering_5xx() {
    let failing = Backend::start(|_| {
        vec![Step::Write(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n".to_vec(),
        )]
    });
    let good = Backend::echo();
    let extra =
        "retries = 0\n\n[upstream.app.passive]\nmax_fails = 2\non_5xx = true\ncooldown = \"30s\"\n";
    let proxy = Proxy::start_with_config(&config(&[failing.addr(), good.addr()], extra), &[]);
    let statuses: Vec<u16> = (0..20)
        .map(|i| get(proxy.addr(), &format!("/p{i}")).status)
        .collect();
    assert_eq!(failing.requests().len(), 2, "statuses {statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| s == 500).count(), 2);
    assert_eq!(good.requests().len(), 18);
    wait_for_log(&proxy, "ejected for 30s after 2 consecutive failures");
}

/// An ejected backend comes back through a single probe request once its cooldown passed.
#[test]
fn ejected_backend_returns_through_a_probe() {
    let fail = Arc::new(AtomicBool::new(true));
    let flag = fail.clone();
    let flaky = Backend::start(move |req| {
        if flag.load(Ordering::SeqCst) {
            vec![Step::Write(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n".to_vec(),
            )]
        } else {
            echo_reply(req)
        }
    });
    let good = Backend::echo();
    let extra =
        "retries = 0\n\n[upstream.app.passive]\nmax_fails = 1\non_5xx = true\ncooldown = \"1s\"\n";
    let proxy = Proxy::start_with_config(&config(&[flaky.addr(), good.addr()], extra), &[]);
    for i in 0..4 {
        get(proxy.addr(), &format!("/e{i}"));
    }
    assert_eq!(flaky.requests().len(), 1, "ejected after its first failure");
    fail.store(false, Ordering::SeqCst);
    thread::sleep(Duration::from_millis(1200));
    for i in 0..6 {
        assert_eq!(get(proxy.addr(), &format!("/r{i}")).status, 200);
    }
    wait_for_log(&proxy, "is back (passive probe succeeded)");
    assert!(
        flaky.requests().len() >= 3,
        "the backend is used again after its probe"
    );
}

/// A backend that comes back up starts with a small share of traffic (slow start), not half.
#[test]
fn recovered_backend_ramps_up_under_slow_start() {
    let (a, a_healthy) = switchable_backend();
    let (b, _) = switchable_backend();
    let extra = "slow_start = \"10s\"\n\n[upstream.app.health]\npath = \"/healthz\"\n\
                 interval = \"300ms\"\ntimeout = \"300ms\"\nrise = 1\nfall = 2\n";
    let proxy = Proxy::start_with_config(&config(&[a.addr(), b.addr()], extra), &[]);
    a_healthy.store(false, Ordering::SeqCst);
    wait_for_log(&proxy, &format!("{} (upstream \"app\") is DOWN", a.addr()));
    a_healthy.store(true, Ordering::SeqCst);
    wait_for_log(&proxy, &format!("{} (upstream \"app\") is UP", a.addr()));

    let (a_before, b_before) = (served_requests(&a), served_requests(&b));
    let mut c = RawClient::connect(proxy.addr());
    for i in 0..300 {
        c.send(format!("GET /s{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        assert_eq!(c.read_response().unwrap().status, 200);
    }
    let a_share = (served_requests(&a) - a_before) as f64 / 300.0;
    assert_eq!(
        served_requests(&a) - a_before + served_requests(&b) - b_before,
        300
    );
    assert!(
        a_share > 0.02 && a_share < 0.3,
        "recovering backend got {a_share:.2} of the traffic"
    );
}
