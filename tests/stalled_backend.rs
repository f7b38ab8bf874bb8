//! A backend that accepts and reads requests but never answers, among healthy ones: found
//! stalled from the requests themselves, ejected, and its waiting requests moved.

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Two workers (so that requests waiting on another worker are moved too), round robin over
/// `backends`, every other setting at its default (`passive.stall = "auto"`).
fn two_worker_config(backends: &[SocketAddr], extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "[runtime]\nworkers = 2\npin = false\n\n[[listener]]\naddress = \"127.0.0.1:0\"\n\n\
         [upstream.app]\nbackends = [{}]\n{extra}\n",
        list.join(", ")
    )
}

/// One finished request: when it started (since the load began), how long it took, and its
/// status (0 when the connection failed).
struct Sample {
    started: Duration,
    took: Duration,
    status: u16,
}

/// `clients` keep-alive clients sending GETs back to back for `run`.
fn load(proxy: SocketAddr, clients: usize, run: Duration) -> Vec<Sample> {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let begin = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let samples = samples.clone();
            thread::spawn(move || {
                let mut client = RawClient::connect(proxy);
                client.set_read_timeout(Duration::from_secs(30));
                let mut n = 0;
                while begin.elapsed() < run {
                    let started = begin.elapsed();
                    client.send(format!("GET /c{i}/{n} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
                    let status = client.read_response().map_or(0, |r| r.status);
                    let took = begin.elapsed() - started;
                    samples.lock().unwrap().push(Sample {
                        started,
                        took,
                        status,
                    });
                    if status == 0 {
                        client = RawClient::connect(proxy);
                        client.set_read_timeout(Duration::from_secs(30));
                    }
                    n += 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    Arc::try_unwrap(samples).ok().unwrap().into_inner().unwrap()
}

/// A backend that answers for `answers_for`, then accepts and reads but never answers.
fn hanging_backend(answers_for: Duration) -> Backend {
    let started = Instant::now();
    Backend::start(move |req| {
        if started.elapsed() < answers_for {
            return echo_reply(req);
        }
        vec![Step::Stall]
    })
}

/// Round robin over two healthy backends and `hung`, 20 keep-alive clients for 4 s, the
/// hang starting `hang_at` into the load: no GET fails, the hung backend is ejected once,
/// and from 2 s after the hang on no request waits on it.
fn assert_routed_around(hung: Backend, hang_at: Duration) {
    let healthy = [Backend::echo(), Backend::echo()];
    let backends = [healthy[0].addr(), hung.addr(), healthy[1].addr()];
    let proxy = Proxy::start_with_config(&two_worker_config(&backends, ""), &[]);

    let samples = load(proxy.addr(), 20, Duration::from_secs(4));

    let failed: Vec<_> = samples.iter().filter(|s| s.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} GETs failed",
        failed.len(),
        samples.len()
    );
    assert!(hung.connections() > 0, "the hung backend got requests");
    // After the verdict (about 1 s) nothing waits on the hung backend any more: a request
    // that did would take at least the 1 s stall budget.
    let late_slow: Vec<_> = samples
        .iter()
        .filter(|s| s.started >= hang_at + Duration::from_secs(2))
        .filter(|s| s.took >= Duration::from_millis(900))
        .map(|s| (s.started, s.took))
        .collect();
    assert!(
        late_slow.is_empty(),
        "slow requests 2 s after the hang: {late_slow:?}"
    );
    let stalled_lines = proxy
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains(&hung.addr().to_string()) && l.contains("stalled"))
        .count();
    assert_eq!(
        stalled_lines,
        1,
        "one ejection line: {:#?}",
        proxy.stderr_lines()
    );
}

#[test]
fn a_backend_hung_from_the_start_is_routed_around_within_two_seconds() {
    assert_routed_around(hanging_backend(Duration::ZERO), Duration::ZERO);
}

/// The requests stuck on the backend were sent just after its last answers: they must not
/// count as answered.
#[test]
fn a_backend_that_hangs_under_load_is_routed_around_within_two_seconds() {
    let hang_at = Duration::from_millis(500);
    assert_routed_around(hanging_backend(hang_at), hang_at);
}

#[test]
fn a_slow_request_on_a_backend_that_answers_others_is_not_moved() {
    let slow_path = |req: &Request| {
        if req.target == "/report" {
            let mut steps = vec![Step::Sleep(Duration::from_millis(2500))];
            steps.extend(echo_reply(req));
            return steps;
        }
        echo_reply(req)
    };
    let backends = [Backend::start(slow_path), Backend::start(slow_path)];
    let addrs = [backends[0].addr(), backends[1].addr()];
    let proxy = Proxy::start_with_config(&two_worker_config(&addrs, ""), &[]);
    let addr = proxy.addr();
    let report = thread::spawn(move || {
        let started = Instant::now();
        let response = get(addr, "/report");
        (response.status, started.elapsed())
    });
    let others = load(addr, 4, Duration::from_secs(3));
    let (status, took) = report.join().unwrap();

    assert_eq!(status, 200);
    assert!(took >= Duration::from_millis(2400), "answered in {took:?}");
    let reports: usize = backends
        .iter()
        .map(|b| b.targets().iter().filter(|t| *t == "/report").count())
        .sum();
    assert_eq!(reports, 1, "the slow request was sent once, not moved");
    assert!(others.iter().all(|s| s.status == 200));
    let lines = proxy.stderr_lines();
    assert!(
        !lines.iter().any(|l| l.contains("stalled")),
        "no backend found stalled: {lines:#?}"
    );
}

#[test]
fn posts_waiting_on_a_hung_backend_stay_but_the_backend_is_ejected() {
    let healthy = Backend::echo();
    let hung = hanging_backend(Duration::ZERO);
    let toml = two_worker_config(
        &[hung.addr(), healthy.addr()],
        "[timeouts]\nbackend_response = \"3s\"\n",
    );
    let proxy = Proxy::start_with_config(&toml, &[]);
    let addr = proxy.addr();
    // Round robin sends about half of them to the hung backend.
    let posts: Vec<_> = (0..6)
        .map(|i| {
            thread::spawn(move || {
                let mut c = RawClient::connect(addr);
                c.set_read_timeout(Duration::from_secs(10));
                let started = Instant::now();
                c.send(
                    format!("POST /order{i} HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi")
                        .as_bytes(),
                );
                (c.read_response().map(|r| r.status).ok(), started.elapsed())
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(100));
    let gets = load(addr, 4, Duration::from_millis(2000));
    let posts: Vec<_> = posts.into_iter().map(|p| p.join().unwrap()).collect();

    let waited_out: Vec<_> = posts.iter().filter(|(s, _)| *s == Some(504)).collect();
    assert!(
        !waited_out.is_empty(),
        "no POST reached the hung backend: {posts:?}"
    );
    assert!(
        waited_out
            .iter()
            .all(|(_, took)| *took >= Duration::from_millis(2900)),
        "a POST on the hung backend waits out backend_response: {posts:?}"
    );
    assert!(
        posts.iter().all(|(s, _)| matches!(s, Some(200 | 504))),
        "{posts:?}"
    );
    let mut targets = hung.targets();
    targets.extend(healthy.targets());
    for i in 0..6 {
        let sent = targets
            .iter()
            .filter(|t| **t == format!("/order{i}"))
            .count();
        assert_eq!(
            sent, 1,
            "POST /order{i} sent {sent} times: a POST never moves"
        );
    }
    assert!(gets.iter().all(|s| s.status == 200));
    let lines = proxy.stderr_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&hung.addr().to_string()) && l.contains("stalled")),
        "the hung backend was ejected: {lines:#?}"
    );
}
