//! The demo a newcomer runs first, end to end: `scripts/demo.sh` with the real binary in front
//! of three real `scripts/demo_backend.py` processes, on free ports. Losing a backend must not
//! stop it; stopping it must leave no process behind. The backend is also tested on its own
//! (HEAD, chunked bodies, keep-alive latency, clients that hang up).

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts");
/// Generous: python start-up on a shared, busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const BACKENDS: [&str; 3] = ["backend-1", "backend-2", "backend-3"];

// ---------------------------------------------------------------------------------------------
// Helpers

/// The lines a child writes to its pipes, gathered by one thread per pipe.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn collect(&self, pipe: impl Read + Send + 'static) {
        let lines = Arc::clone(&self.0);
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        });
    }

    fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }

    fn find(&self, pred: impl Fn(&str) -> bool) -> Option<String> {
        self.0.lock().unwrap().iter().find(|l| pred(l)).cloned()
    }
}

/// `n` distinct ports that nothing listened on a moment ago: all bound at once (so distinct),
/// then released. Another process may take one meanwhile; starting again on new ones covers it.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&local(port), Duration::from_secs(1)).is_ok()
}

/// `kill(2)`: a negative `pid` names a process group; signal 0 only asks whether it exists.
fn signal(pid: i32, sig: i32) -> bool {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// Which backend answered `GET /` through the proxy (its body is `hello from NAME (GET /)`).
fn backend_behind(proxy: SocketAddr) -> Result<String, String> {
    let mut c = RawClient::connect(proxy);
    c.send(b"GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n");
    let r = c.read_response().map_err(|e| format!("no response: {e}"))?;
    let body = r.body_text();
    match (r.status, body.strip_prefix("hello from ")) {
        (200, Some(rest)) => Ok(rest.split(' ').next().unwrap_or_default().to_string()),
        _ => Err(format!("{} {body:?}", r.status)),
    }
}

/// Resets the connection (RST, not FIN), as a client that is killed or times out may.
fn reset(c: RawClient) {
    socket2::SockRef::from(c.stream())
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// The demo script

/// `scripts/demo.sh` in its own process group, as a terminal would run it; dropping it stops
/// the whole group, so a failed test leaves nothing running either.
struct Demo {
    script: Child,
    output: Lines,
    proxy_port: u16,
    backend_ports: Vec<u16>,
}

impl Demo {
    fn start() -> Demo {
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Demo::try_start() {
                Ok(demo) => return demo,
                Err(e) => failures.push(e),
            }
        }
        panic!("the demo did not start:\n{}", failures.join("\n---\n"));
    }

    /// Ready: the proxy said so and every backend accepts connections (the proxy would count
    /// requests to a backend still starting as failures, and eject it).
    fn try_start() -> Result<Demo, String> {
        let ports = free_ports(1 + BACKENDS.len());
        let backend_list: Vec<String> = ports[1..].iter().map(u16::to_string).collect();
        let mut script = Command::new("bash")
            .arg(format!("{SCRIPTS}/demo.sh"))
            // Extra arguments reach ringproxy; one worker makes round robin one rotation.
            .args(["--workers", "1", "--no-pin"])
            .env("RINGPROXY_BIN", env!("CARGO_BIN_EXE_ringproxy"))
            .env("DEMO_PORT", ports[0].to_string())
            .env("DEMO_BACKEND_PORTS", backend_list.join(" "))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Lines::default();
        output.collect(script.stdout.take().unwrap());
        output.collect(script.stderr.take().unwrap());
        let mut demo = Demo {
            script,
            output,
            proxy_port: ports[0],
            backend_ports: ports[1..].to_vec(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let ready = demo
                .output
                .find(|l| l.starts_with("ringproxy: ready"))
                .is_some()
                && demo.backend_ports.iter().all(|&p| accepts(p));
            // A port taken meanwhile shows as a child exiting (the proxy's takes the demo down).
            let gone = demo.output.find(|l| l.contains(") exited (")).is_some()
                || demo.script.try_wait().unwrap().is_some();
            if ready && !gone {
                return Ok(demo);
            }
            if gone || Instant::now() > deadline {
                return Err(format!(
                    "not ready (ports {ports:?}); output:\n{}",
                    demo.output.text()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn proxy(&self) -> SocketAddr {
        local(self.proxy_port)
    }

    fn group(&self) -> i32 {
        -(self.script.id() as i32)
    }

    /// The pid in the script's line that starts with `prefix` and goes on `pid N)` or `pid N;`.
    fn pid_after(&self, prefix: &str) -> i32 {
        let line = self
            .output
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?}; output:\n{}", self.output.text()));
        line[prefix.len()..]
            .trim_start_matches("pid ")
            .split([')', ';'])
            .next()
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("no pid in {line:?}"))
    }

    /// How the script names backend `i` (0-based): `backend-2 (127.0.0.1:PORT, `.
    fn backend_label(&self, i: usize) -> String {
        format!("{} (127.0.0.1:{}, ", BACKENDS[i], self.backend_ports[i])
    }

    fn backend_pid(&self, i: usize) -> i32 {
        self.pid_after(&format!("demo: {}", self.backend_label(i)))
    }

    fn proxy_pid(&self) -> i32 {
        self.pid_after(&format!("demo: proxy on http://{} (", self.proxy()))
    }

    fn wait_for_line(&self, pred: impl Fn(&str) -> bool, what: &str) -> String {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            if let Some(line) = self.output.find(&pred) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "the demo did not print {what}; output:\n{}",
                self.output.text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// After the script exited: none of its processes is left, not even as a zombie. Its
    /// ports are not probed: on a shared host another process may take a port once it is
    /// free; every process the demo starts is in its process group, which says it exactly.
    fn assert_nothing_left(&self, pids: &[i32]) {
        let output = self.output.text();
        for &pid in pids {
            assert!(
                !signal(pid, 0),
                "pid {pid} still runs after the demo stopped; output:\n{output}"
            );
        }
        assert!(
            !signal(self.group(), 0),
            "a process is left in the demo's process group; output:\n{output}"
        );
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if wait_with_timeout(&mut self.script, Duration::ZERO).is_none() {
            signal(self.group(), libc::SIGTERM);
            wait_with_timeout(&mut self.script, Duration::from_secs(5));
        }
        // Whatever the script did or failed to do, nothing of the group outlives the test.
        signal(self.group(), libc::SIGKILL);
        let _ = self.script.wait();
    }
}

#[test]
fn the_demo_keeps_serving_when_a_backend_dies_and_ctrl_c_stops_everything() {
    let mut demo = Demo::start();
    let proxy_pid = demo.proxy_pid();
    let mut pids: Vec<i32> = (0..BACKENDS.len()).map(|i| demo.backend_pid(i)).collect();
    pids.push(proxy_pid);

    let turns: Vec<String> = (0..6)
        .map(|_| backend_behind(demo.proxy()).unwrap())
        .collect();
    let mut one_round = turns[..3].to_vec();
    one_round.sort();
    assert_eq!(one_round, BACKENDS, "round robin: {turns:?}");
    assert_eq!(turns[..3], turns[3..], "round robin: {turns:?}");

    let victim = demo.backend_pid(1);
    assert!(signal(victim, libc::SIGKILL));
    let exited = format!("demo: {}pid {victim}) exited", demo.backend_label(1));
    let line = demo.wait_for_line(|l| l.starts_with(&exited), "backend-2's exit");
    assert!(
        line.ends_with("; the proxy keeps serving from the others"),
        "{line}"
    );

    // A GET that meets the dead backend (pooled connection or refused connect) is retried on
    // another one, until the dead one is ejected: no request fails.
    let after: Vec<String> = (0..12)
        .map(|i| {
            backend_behind(demo.proxy()).unwrap_or_else(|e| {
                panic!(
                    "request {i} after backend-2 died: {e}; output:\n{}",
                    demo.output.text()
                )
            })
        })
        .collect();
    assert!(
        after.iter().all(|b| b != "backend-2"),
        "served by the dead backend: {after:?}"
    );
    for survivor in ["backend-1", "backend-3"] {
        assert!(after.iter().any(|b| b == survivor), "{survivor}: {after:?}");
    }
    assert!(
        demo.script.try_wait().unwrap().is_none(),
        "the demo stopped; output:\n{}",
        demo.output.text()
    );
    assert!(signal(proxy_pid, 0), "the proxy is gone");

    // Ctrl-C: the terminal signals the whole foreground process group.
    assert!(signal(demo.group(), libc::SIGINT));
    let status = wait_with_timeout(&mut demo.script, Duration::from_secs(20));
    assert!(
        status.is_some(),
        "still running 20 s after Ctrl-C; output:\n{}",
        demo.output.text()
    );
    demo.assert_nothing_left(&pids);
}

#[test]
fn the_demo_stops_when_the_proxy_exits_and_says_how() {
    let mut demo = Demo::start();
    let proxy_pid = demo.proxy_pid();
    let mut pids: Vec<i32> = (0..BACKENDS.len()).map(|i| demo.backend_pid(i)).collect();
    pids.push(proxy_pid);

    assert!(signal(proxy_pid, libc::SIGKILL));
    let status = wait_with_timeout(&mut demo.script, IO_TIMEOUT);
    let output = demo.output.text();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(137),
        "the script's exit status is the proxy's; output:\n{output}"
    );
    let said = format!(
        "demo: the proxy (pid {proxy_pid}) exited (status 137, SIGKILL); stopping the backends"
    );
    assert!(
        output.lines().any(|l| l == said),
        "no {said:?} in:\n{output}"
    );
    demo.assert_nothing_left(&pids);
}

// ---------------------------------------------------------------------------------------------
// The demo backend alone

/// `demo_backend.py PORT solo` on a free port, its stderr kept; killed when dropped.
struct DemoBackend {
    child: Child,
    port: u16,
    stderr: Lines,
}

impl DemoBackend {
    fn start() -> DemoBackend {
        let mut failures = Vec::new();
        for _ in 0..3 {
            let port = free_ports(1)[0];
            let mut child = Command::new("python3")
                .arg(format!("{SCRIPTS}/demo_backend.py"))
                .arg(port.to_string())
                .arg("solo")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let stderr = Lines::default();
            stderr.collect(child.stderr.take().unwrap());
            let mut backend = DemoBackend {
                child,
                port,
                stderr,
            };
            let deadline = Instant::now() + START_TIMEOUT;
            // Exits at once when the port was taken meanwhile: then another port.
            while backend.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
                if accepts(port) {
                    return backend;
                }
                thread::sleep(Duration::from_millis(20));
            }
            failures.push(format!("port {port}: {}", backend.stderr.text()));
        }
        panic!("demo_backend.py did not start:\n{}", failures.join("\n"));
    }

    fn addr(&self) -> SocketAddr {
        local(self.port)
    }

    fn client(&self) -> RawClient {
        RawClient::connect(self.addr())
    }
}

impl Drop for DemoBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: demo\r\n\r\n").into_bytes()
}

#[test]
fn backend_answers_head_with_the_get_head_and_no_body() {
    let backend = DemoBackend::start();
    let mut c = backend.client();
    for path in ["/", "/echo"] {
        c.send(&get_request(path));
        let get = c.read_response().unwrap();
        c.send(format!("HEAD {path} HTTP/1.1\r\nHost: demo\r\n\r\n").as_bytes());
        let head = c
            .read_head_response()
            .unwrap_or_else(|e| panic!("HEAD {path}: {e}"));
        assert_eq!(head.status, 200, "HEAD {path}: {}", head.raw_head);
        let want = get.body.len().to_string();
        assert_eq!(
            head.header("content-length"),
            Some(want.as_str()),
            "HEAD {path}"
        );
    }
    // A body after a HEAD's head would be read here as the start of the next response.
    c.send(&get_request("/"));
    let next = c.read_response().expect("the response after a HEAD");
    assert_eq!(next.status, 200);
    assert_eq!(next.body_text(), "hello from solo (GET /)\n");
}

#[test]
fn backend_echoes_chunked_bodies_with_extensions_and_trailers() {
    let backend = DemoBackend::start();
    let mut c = backend.client();
    c.send(
        b"POST /echo HTTP/1.1\r\nHost: demo\r\nTransfer-Encoding: chunked\r\n\r\n\
          7;note=first\r\nhello, \r\n7\r\nchunked\r\n6\r\n world\r\n\
          0\r\nX-Checksum: none\r\nX-More: 1\r\n\r\n",
    );
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_text(), "hello, chunked world");

    // The trailers ended that message: the next one on the connection is read from its start.
    let big = pattern(1 << 20);
    let mut request =
        b"PUT /echo HTTP/1.1\r\nHost: demo\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    request.extend_from_slice(&chunked(&big, 4096));
    c.send(&request);
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_same_body(&r.body, &big, "1 MiB in 4 KiB chunks");
}

#[test]
fn backend_rejects_bodies_it_cannot_frame() {
    let backend = DemoBackend::start();
    let post = "POST /echo HTTP/1.1\r\nHost: demo\r\n";
    let cases = [
        (
            "a chunk size that is not hex",
            "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "chunk data longer than its size",
            "Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "a chunked body cut short",
            "Transfer-Encoding: chunked\r\n\r\n5\r\nhel",
        ),
        (
            "Content-Length with chunked",
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "a Content-Length that is not a number",
            "Content-Length: abc\r\n\r\n",
        ),
        ("a signed Content-Length", "Content-Length: +5\r\n\r\nhello"),
        (
            "two different Content-Lengths",
            "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ),
    ];
    for (what, rest) in cases {
        let mut c = backend.client();
        c.send(format!("{post}{rest}").as_bytes());
        // Nothing more comes: the body cut short ends there.
        c.stream().shutdown(Shutdown::Write).unwrap();
        let r = c
            .read_response()
            .unwrap_or_else(|e| panic!("{what}: no response: {e}"));
        assert_eq!(r.status, 400, "{what}: {}", r.body_text());
        c.wait_closed(IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    let stderr = backend.stderr.text();
    assert!(
        !stderr.contains("Traceback"),
        "the backend printed:\n{stderr}"
    );
}

#[test]
fn backend_answers_keep_alive_requests_promptly() {
    let backend = DemoBackend::start();
    // RawClient sets TCP_NODELAY, so only the backend's own writes can hold a response back.
    let mut c = backend.client();
    const REQUESTS: u32 = 20;
    let started = Instant::now();
    for i in 0..REQUESTS {
        if i % 2 == 0 {
            c.send(&get_request("/"));
        } else {
            c.send(b"POST /echo HTTP/1.1\r\nHost: demo\r\nContent-Length: 5\r\n\r\nhello");
        }
        assert_eq!(c.read_response().unwrap().status, 200, "request {i}");
    }
    let per_request = started.elapsed() / REQUESTS;
    // Head and body in two writes cost ~40 ms a request (Nagle waiting for the client's delayed
    // ACK); a prompt answer takes well under 1 ms. A behaviour bound, not a benchmark.
    assert!(
        per_request < Duration::from_millis(15),
        "{per_request:?} per request on a keep-alive connection"
    );
}

#[test]
fn backend_prints_no_traceback_when_a_client_hangs_up() {
    let backend = DemoBackend::start();
    let started = Instant::now();
    // Before the response: the handler is still sleeping in /slow when the client goes.
    let mut before = backend.client();
    before.send(&get_request("/slow"));
    // Within the request: half a head; half a body.
    let mut in_head = backend.client();
    in_head.send(b"GET / HTTP/1.1\r\nHost: de");
    let mut in_body = backend.client();
    in_body.send(b"POST /echo HTTP/1.1\r\nHost: demo\r\nContent-Length: 100\r\n\r\nonly part");
    // Mid-response: 4 MiB to echo, of which the client reads a little.
    let mut mid = backend.client();
    let body = pattern(4 << 20);
    mid.send(
        format!(
            "POST /echo HTTP/1.1\r\nHost: demo\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    mid.send(&body);
    let mut some = vec![0u8; 64 * 1024];
    mid.reader().read_exact(&mut some).unwrap();
    // Lets the backend read the /slow request before the connection goes.
    thread::sleep(Duration::from_millis(300));
    for c in [before, in_head, in_body, mid] {
        reset(c);
    }
    // The /slow handler writes to its reset connection a second after the request.
    thread::sleep(
        (started + Duration::from_millis(2500)).saturating_duration_since(Instant::now()),
    );

    let r = get(backend.addr(), "/");
    assert_eq!(r.status, 200, "the backend still serves");
    let stderr = backend.stderr.text();
    assert!(
        !stderr.contains("Traceback"),
        "the backend printed:\n{stderr}"
    );
}
