use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, AtomicUsize};

use super::*;
use crate::config::{HealthCheck, HealthCheckKind};

const INTERVAL: Duration = Duration::from_millis(20);

/// A backend answering every check with `status` (changeable), counting the answers by status.
struct FakeBackend {
    address: SocketAddr,
    status: Arc<AtomicU16>,
    ok_answers: Arc<AtomicUsize>,
    error_answers: Arc<AtomicUsize>,
    last_request: Arc<Mutex<String>>,
}

impl FakeBackend {
    /// The serving thread lives until the test process ends (it blocks in accept).
    fn start(status: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let backend = Self {
            address: listener.local_addr().unwrap(),
            status: Arc::new(AtomicU16::new(status)),
            ok_answers: Arc::default(),
            error_answers: Arc::default(),
            last_request: Arc::default(),
        };
        let (status, ok, error, last) = (
            backend.status.clone(),
            backend.ok_answers.clone(),
            backend.error_answers.clone(),
            backend.last_request.clone(),
        );
        thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let request = read_head(&mut stream);
                *last.lock().unwrap() = request;
                let status = status.load(Ordering::SeqCst);
                // Counted before answering, so a checker reacting to the answer sees the count.
                let counter = if status < 400 { &ok } else { &error };
                counter.fetch_add(1, Ordering::SeqCst);
                let response = format!("HTTP/1.1 {status} Whatever\r\nContent-Length: 0\r\n\r\n");
                let _ = stream.write_all(response.as_bytes());
            }
        });
        backend
    }

    fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }
}

fn read_head(stream: &mut std::net::TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut head = Vec::new();
    let mut chunk = [0u8; 512];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// An address nobody listens on.
fn refusing_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A listener that never accepts: the kernel completes connects, nobody ever answers.
fn silent_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

fn http_check(timeout: Duration, rise: u32, fall: u32) -> HealthCheck {
    HealthCheck {
        kind: HealthCheckKind::Http {
            path: "/healthz".into(),
            host: Some("app.internal".into()),
            expect_status: 200..=299,
        },
        interval: INTERVAL,
        timeout,
        rise,
        fall,
    }
}

struct Checker {
    table: Arc<HealthTable>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checker {
    fn start(backends: Vec<SocketAddr>, check: HealthCheck, slow_start: Option<Duration>) -> Self {
        let mut config = Config::for_cli(Vec::new(), backends);
        config.upstreams[0].health = Some(check);
        config.upstreams[0].slow_start = slow_start;
        let table = Arc::new(HealthTable::new(&config));
        let stop = Arc::new(AtomicBool::new(false));
        let thread =
            spawn_checker(Arc::new(config), &Vec::new(), table.clone(), stop.clone()).unwrap();
        assert!(thread.is_some());
        Self {
            table,
            stop,
            thread,
        }
    }

    fn is_up(&self, index: usize) -> bool {
        self.table.is_up(BackendId(index))
    }

    /// Polls until `index` is `up` (true) or down; panics after `limit`.
    fn wait_for(&self, index: usize, up: bool, limit: Duration) -> Duration {
        let started = Instant::now();
        while self.is_up(index) != up {
            assert!(
                started.elapsed() < limit,
                "backend {index} not {} within {limit:?}",
                if up { "up" } else { "down" }
            );
            thread::sleep(Duration::from_millis(2));
        }
        started.elapsed()
    }

    /// Raises the stop flag and returns how long the thread took to end.
    fn stop(mut self) -> Duration {
        let asked = Instant::now();
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        asked.elapsed()
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

#[test]
fn http_checks_take_failing_backends_down_concurrently_and_stop_promptly() {
    let silent = silent_listener();
    let healthy = FakeBackend::start(200);
    let failing = FakeBackend::start(503);
    let timeout = Duration::from_millis(600);
    let checker = Checker::start(
        vec![
            silent.local_addr().unwrap(),
            healthy.address,
            failing.address,
            refusing_address(),
        ],
        http_check(timeout, 2, 2),
        None,
    );

    // Checked one after the other, the refused backend's second check would wait behind the
    // silent backend's first timeout.
    let refused_down = checker.wait_for(3, false, Duration::from_secs(2));
    assert!(
        refused_down < Duration::from_millis(450),
        "{refused_down:?}"
    );
    checker.wait_for(2, false, Duration::from_secs(2));
    let silent_down = checker.wait_for(0, false, Duration::from_secs(3));
    assert!(silent_down >= timeout, "{silent_down:?}");
    assert!(checker.is_up(1));
    assert_eq!(
        *healthy.last_request.lock().unwrap(),
        "GET /healthz HTTP/1.1\r\nHost: app.internal\r\nConnection: close\r\nUser-Agent: ringproxy-health\r\n\r\n"
    );

    // The silent backend's next check is in its timeout now; stopping must not wait for it.
    let stopped_in = checker.stop();
    assert!(stopped_in < Duration::from_millis(300), "{stopped_in:?}");
}

#[test]
fn fall_failures_take_a_backend_down_and_rise_successes_bring_it_back_slowly() {
    let backend = FakeBackend::start(200);
    let checker = Checker::start(
        vec![backend.address],
        HealthCheck {
            kind: HealthCheckKind::Http {
                path: "/".into(),
                host: None,
                expect_status: 200..=204,
            },
            ..http_check(Duration::from_millis(500), 2, 3)
        },
        Some(Duration::from_secs(60)),
    );
    let limit = Duration::from_secs(1);
    while backend.ok_answers.load(Ordering::SeqCst) == 0 {
        thread::sleep(Duration::from_millis(2));
    }
    assert!(checker.is_up(0));

    backend.set_status(503);
    checker.wait_for(0, false, limit);
    assert!(backend.error_answers.load(Ordering::SeqCst) >= 3);
    assert!(
        backend
            .last_request
            .lock()
            .unwrap()
            .contains(&format!("Host: {}\r\n", backend.address))
    );

    let ok_before = backend.ok_answers.load(Ordering::SeqCst);
    backend.set_status(204);
    checker.wait_for(0, true, limit);
    assert!(backend.ok_answers.load(Ordering::SeqCst) - ok_before >= 2);
    // Back from down: slow start begins, so it gets a reduced share for now.
    let factor = checker.table.weight_factor(BackendId(0), Instant::now());
    assert!(factor.is_some_and(|f| f < 0.5), "{factor:?}");
}

#[test]
fn tcp_checks_only_need_the_connect_to_succeed() {
    let silent = silent_listener();
    let check = HealthCheck {
        kind: HealthCheckKind::Tcp,
        ..http_check(Duration::from_millis(200), 1, 1)
    };
    let checker = Checker::start(
        vec![silent.local_addr().unwrap(), refusing_address()],
        check,
        None,
    );
    checker.wait_for(1, false, Duration::from_secs(1));
    // A few more rounds: a listener that never answers passes a TCP check.
    thread::sleep(INTERVAL * 3);
    assert!(checker.is_up(0));
}

#[test]
fn no_checker_without_health_sections() {
    let config = Config::for_cli(Vec::new(), vec![refusing_address()]);
    let table = Arc::new(HealthTable::new(&config));
    let spawned = spawn_checker(
        Arc::new(config),
        &Vec::new(),
        table,
        Arc::new(AtomicBool::new(false)),
    );
    assert!(spawned.unwrap().is_none());
}

#[test]
fn status_lines_are_read_without_the_headers() {
    assert_eq!(status_code(b"HTTP/1.1 200 OK\r\nHost").unwrap(), Some(200));
    assert_eq!(status_code(b"HTTP/1.0 503\r\n").unwrap(), Some(503));
    assert_eq!(status_code(b"HTTP/1.1 404 Not Found\n").unwrap(), Some(404));
    assert_eq!(status_code(b"HTTP/1.1 200 O").unwrap(), None);
    for bad in [
        &b"HTTP/2 200 OK\r\n"[..],
        b"HTTP/1.1 20x OK\r\n",
        b"HTTP/1.1 2000 OK\r\n",
        b"HTTP/1.1 20\r\n",
        b"SSH-2.0-OpenSSH\r\n",
    ] {
        assert!(
            matches!(status_code(bad), Err(CheckFailure::BadStatusLine)),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

fn failure() -> Result<(), CheckFailure> {
    Err(CheckFailure::UnexpectedStatus(503))
}

#[test]
fn streak_needs_fall_failures_and_rise_successes_in_a_row() {
    let mut streak = Streak::new(2, 3);
    assert!(streak.record(failure()).is_none());
    assert!(streak.record(failure()).is_none());
    assert!(streak.record(Ok(())).is_none());
    assert!(streak.record(failure()).is_none());
    assert!(streak.record(failure()).is_none());
    let down = streak.record(failure()).unwrap();
    assert_eq!(
        down.to_string(),
        "DOWN (active: 3 consecutive failures: unexpected status 503)"
    );

    assert!(streak.record(Ok(())).is_none());
    assert!(streak.record(failure()).is_none());
    assert!(streak.record(Ok(())).is_none());
    assert_eq!(streak.record(Ok(())).unwrap().to_string(), "UP (active)");
}
