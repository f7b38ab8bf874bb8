//! The access log: every field of a line in both formats, sampling, request ids kept,
//! generated and forwarded, a rotation under load that loses no line, and lines dropped (and
//! counted) when the writer cannot keep up.

mod common;

use common::*;
use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long lines may take to reach the file: a timer sweep (50 ms) and the writer, on a
/// busy machine.
const LOG_WAIT: Duration = Duration::from_secs(10);

/// A one-worker config over `backends` with the access log at `path`, `extra` more keys in
/// `[access_log]`, and an admin listener.
fn log_config(backends: &[SocketAddr], path: &Path, extra: &str) -> String {
    config(
        backends,
        &format!(
            "[access_log]\npath = \"{}\"\n{extra}\n\n[admin]\naddress = \"127.0.0.1:0\"\n",
            path.display()
        ),
    )
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits until the files hold `n` lines in all, and a little longer to see that no more
/// come; returns them.
fn wait_for_lines(paths: &[&Path], n: usize) -> Vec<String> {
    let deadline = Instant::now() + LOG_WAIT;
    loop {
        let lines: Vec<String> = paths.iter().flat_map(|p| lines_of(p)).collect();
        if lines.len() >= n || Instant::now() >= deadline {
            thread::sleep(Duration::from_millis(200));
            let lines: Vec<String> = paths.iter().flat_map(|p| lines_of(p)).collect();
            assert_eq!(lines.len(), n, "lines in {paths:?}:\n{}", lines.join("\n"));
            return lines;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `request` on `client` and reads the answer; returns it and how many bytes of it
/// came over the wire.
fn exchange(client: &mut RawClient, request: &str) -> (Response, usize) {
    client.send(request.as_bytes());
    let response = client.read_response().unwrap();
    let wire = response.raw_head.len() + response.body.len();
    (response, wire)
}

/// A combined line, cut at its fixed positions.
#[derive(Debug)]
struct Combined {
    client: String,
    time: String,
    request: String,
    status: u16,
    bytes: usize,
    referer: String,
    user_agent: String,
    fields: HashMap<String, String>,
}

fn not_combined<T>(line: &str) -> T {
    panic!("not a combined line: {line}")
}

fn parse_combined(line: &str) -> Combined {
    let fail = || not_combined(line);
    let (client, rest) = line.split_once(" - - [").unwrap_or_else(fail);
    let (time, rest) = rest.split_once("] \"").unwrap_or_else(fail);
    // Quotes inside quoted fields are escaped (\x22), so a quote ends the field.
    let (request, rest) = rest.split_once("\" ").unwrap_or_else(fail);
    let (status, rest) = rest.split_once(' ').unwrap_or_else(fail);
    let (bytes, rest) = rest.split_once(" \"").unwrap_or_else(fail);
    let (referer, rest) = rest.split_once("\" \"").unwrap_or_else(fail);
    let (user_agent, rest) = rest.split_once("\" ").unwrap_or_else(fail);
    let fields = rest
        .split(' ')
        .map(|field| {
            let (key, value) = field.split_once('=').unwrap_or_else(fail);
            (key.to_owned(), value.to_owned())
        })
        .collect();
    Combined {
        client: client.to_owned(),
        time: time.to_owned(),
        request: request.to_owned(),
        status: status.parse().unwrap_or_else(|_| not_combined(line)),
        bytes: bytes.parse().unwrap_or_else(|_| not_combined(line)),
        referer: referer.to_owned(),
        user_agent: user_agent.to_owned(),
        fields,
    }
}

/// Seconds since the epoch of a Common Log Format time, `07/Dec/2026:05:31:00 +0000`.
fn common_log_time(text: &str) -> u64 {
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    assert!(text.ends_with(" +0000"), "{text}");
    let parts: Vec<&str> = text[..text.len() - 6].split(['/', ':']).collect();
    let [day, month, year, hour, minute, second] = parts[..] else {
        panic!("{text}")
    };
    let month = months.iter().position(|m| *m == month).unwrap() as u64 + 1;
    let num = |s: &str| s.parse::<u64>().unwrap();
    // Days from 1970-01-01 (Howard Hinnant's days_from_civil).
    let (y, m) = if month <= 2 {
        (num(year) - 1, month + 9)
    } else {
        (num(year), month - 3)
    };
    let era = y / 400;
    let day_of_year = (153 * m + 2) / 5 + num(day) - 1;
    let day_of_era =
        (y - era * 400) * 365 + (y - era * 400) / 4 - (y - era * 400) / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    days * 86_400 + num(hour) * 3600 + num(minute) * 60 + num(second)
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn seconds(text: &str) -> f64 {
    let value: f64 = text
        .parse()
        .unwrap_or_else(|_| panic!("not seconds: {text}"));
    let (_, decimals) = text.split_once('.').unwrap();
    assert_eq!(decimals.len(), 6, "microseconds: {text}");
    value
}

/// The fields the proxy adds to `combined`, in order; `json` has them too.
const PROXY_FIELDS: [&str; 9] = [
    "request_id",
    "bytes_received",
    "request_time",
    "upstream_connect_time",
    "upstream_header_time",
    "upstream_addr",
    "listener",
    "upstream",
    "route",
];

fn is_generated_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[test]
fn combined_lines_carry_every_field() {
    let backend = Backend::start(|_| vec![Step::Write(ok_response(b"hello"))]);
    let dir = TempDir::new();
    let path = dir.path().join("access.log");
    let proxy = Proxy::start_with_config(&log_config(&[backend.addr()], &path, ""), &[]);
    let mut client = RawClient::connect(proxy.addr());
    let first = "GET /path?q=1 HTTP/1.1\r\nHost: t\r\nUser-Agent: ua/1 \"quoted\" \\x\r\n\
                 Referer: http://ref/\r\n\r\n";
    let (response, first_wire) = exchange(&mut client, first);
    assert_eq!(response.status, 200);
    let second = "HEAD /two HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    client.send(second.as_bytes());
    let response = client.read_head_response().unwrap();
    let second_wire = response.raw_head.len();

    let lines = wait_for_lines(&[&path], 2);
    let seen = backend.requests();
    let (one, two) = (parse_combined(&lines[0]), parse_combined(&lines[1]));
    assert_eq!(one.client, "127.0.0.1");
    let logged_at = common_log_time(&one.time);
    assert!(now_seconds().abs_diff(logged_at) < 60, "{}", one.time);
    assert_eq!(one.request, "GET /path?q=1 HTTP/1.1");
    assert_eq!((one.status, one.bytes), (200, first_wire));
    assert_eq!(one.referer, "http://ref/");
    assert_eq!(one.user_agent, r#"ua/1 \x22quoted\x22 \x5Cx"#);
    let fields = &one.fields;
    let keys: Vec<&str> = PROXY_FIELDS
        .into_iter()
        .filter(|k| !fields.contains_key(*k))
        .collect();
    assert!(keys.is_empty(), "missing {keys:?} in {}", lines[0]);
    assert_eq!(fields.len(), PROXY_FIELDS.len(), "{}", lines[0]);
    // The id the backend got is the one logged.
    assert_eq!(
        seen[0].header("x-request-id"),
        Some(fields["request_id"].as_str())
    );
    assert!(is_generated_id(&fields["request_id"]), "{}", lines[0]);
    assert_eq!(fields["bytes_received"], first.len().to_string());
    let total = seconds(&fields["request_time"]);
    let connect = seconds(&fields["upstream_connect_time"]);
    let header = seconds(&fields["upstream_header_time"]);
    assert!(connect > 0.0 && header > 0.0 && total >= header && total < 10.0);
    assert_eq!(fields["upstream_addr"], backend.addr().to_string());
    assert_eq!(fields["listener"], proxy.addr().to_string());
    assert_eq!(fields["upstream"], "app");
    assert_eq!(fields["route"], "-");

    // HTTP/1.0 HEAD on the pooled connection: no body, no connect, no User-Agent.
    assert_eq!(two.request, "HEAD /two HTTP/1.0");
    assert_eq!((two.status, two.bytes), (200, second_wire));
    assert_eq!((two.referer.as_str(), two.user_agent.as_str()), ("-", "-"));
    assert_eq!(two.fields["upstream_connect_time"], "0.000000");
    assert_eq!(two.fields["bytes_received"], second.len().to_string());
    let ids = [&one.fields["request_id"], &two.fields["request_id"]];
    assert_ne!(ids[0], ids[1]);
    assert_eq!(ids[0][..16], ids[1][..16], "one worker, one prefix");
}

fn json_lines(paths: &[&Path], n: usize) -> Vec<serde_json::Map<String, serde_json::Value>> {
    wait_for_lines(paths, n)
        .iter()
        .map(|line| match serde_json::from_str(line) {
            Ok(serde_json::Value::Object(object)) => object,
            _ => panic!("not a JSON object: {line}"),
        })
        .collect()
}

#[test]
fn json_lines_carry_every_field_for_proxied_answered_and_refused_requests() {
    let backend = Backend::echo();
    let dir = TempDir::new();
    let path = dir.path().join("access.json");
    let toml = format!(
        "[runtime]\nworkers = 1\npin = false\n\n[[listener]]\naddress = \"127.0.0.1:0\"\n\
         routes = \"main\"\n\n[upstream.app]\nbackends = [\"{}\"]\n\n\
         [[routes.main.route]]\npath_prefix = \"/api\"\nupstream = \"app\"\n\n\
         [access_log]\npath = \"{}\"\nformat = \"json\"\n",
        backend.addr(),
        path.display()
    );
    let proxy = Proxy::start_with_config(&toml, &[]);
    let mut client = RawClient::connect(proxy.addr());
    let body = "0123456789";
    let proxied = format!(
        "POST /api/x HTTP/1.1\r\nHost: t\r\nUser-Agent: caf\u{e9}\r\nX-Request-Id: abc-1\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (response, proxied_wire) = exchange(&mut client, &proxied);
    assert_eq!(response.status, 200);
    let (response, missing_wire) =
        exchange(&mut client, "GET /elsewhere HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(response.status, 404);
    let mut refused = RawClient::connect(proxy.addr());
    let (response, refused_wire) = exchange(&mut refused, "GET / HTTP/1.1\r\nHost: a b\r\n\r\n");
    assert_eq!(response.status, 400);

    let lines = json_lines(&[&path], 3);
    let mut keys = vec![
        "time",
        "client",
        "method",
        "target",
        "protocol",
        "status",
        "bytes_sent",
        "referer",
        "user_agent",
    ];
    keys.extend(PROXY_FIELDS);
    for line in &lines {
        let mut found: Vec<&str> = line.keys().map(String::as_str).collect();
        found.sort_unstable();
        let mut expected = keys.to_vec();
        expected.sort_unstable();
        assert_eq!(found, expected);
        let time = line["time"].as_str().unwrap();
        assert!(
            time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
            "{time}"
        );
        assert_eq!(line["client"], "127.0.0.1");
        assert_eq!(line["listener"], proxy.addr().to_string());
        assert!(line["request_time"].as_f64().unwrap() >= 0.0);
    }
    let proxied_line = &lines[0];
    assert_eq!(proxied_line["method"], "POST");
    assert_eq!(proxied_line["target"], "/api/x");
    assert_eq!(proxied_line["protocol"], "HTTP/1.1");
    assert_eq!(proxied_line["status"], 200);
    assert_eq!(proxied_line["bytes_sent"], proxied_wire);
    assert_eq!(proxied_line["bytes_received"], proxied.len());
    assert_eq!(proxied_line["referer"], serde_json::Value::Null);
    assert_eq!(proxied_line["user_agent"], "caf\u{e9}");
    assert_eq!(proxied_line["request_id"], "abc-1");
    assert!(proxied_line["upstream_connect_time"].as_f64().unwrap() > 0.0);
    assert!(proxied_line["upstream_header_time"].as_f64().unwrap() > 0.0);
    assert_eq!(proxied_line["upstream_addr"], backend.addr().to_string());
    assert_eq!(proxied_line["upstream"], "app");
    assert_eq!(proxied_line["route"], "main[0]");

    // Answered by the proxy (no route): no upstream step at all.
    let missing = &lines[1];
    assert_eq!(
        (missing["status"].as_u64(), missing["bytes_sent"].as_u64()),
        (Some(404), Some(missing_wire as u64))
    );
    for key in [
        "upstream_connect_time",
        "upstream_header_time",
        "upstream_addr",
        "upstream",
        "route",
    ] {
        assert_eq!(missing[key], serde_json::Value::Null, "{key}");
    }
    assert!(is_generated_id(missing["request_id"].as_str().unwrap()));

    // Refused before its head could be parsed: no method or target.
    let refused_line = &lines[2];
    assert_eq!(refused_line["status"], 400);
    assert_eq!(refused_line["bytes_sent"], refused_wire);
    assert_eq!(refused_line["method"], serde_json::Value::Null);
    assert_eq!(refused_line["target"], serde_json::Value::Null);
}

#[test]
fn sampling_logs_the_configured_share_of_requests() {
    let backend = Backend::echo();
    let dir = TempDir::new();
    let path = dir.path().join("sampled.log");
    let proxy =
        Proxy::start_with_config(&log_config(&[backend.addr()], &path, "sample = 0.25"), &[]);
    let mut client = RawClient::connect(proxy.addr());
    for i in 0..40 {
        let (response, _) = exchange(
            &mut client,
            &format!("GET /{i} HTTP/1.1\r\nHost: t\r\n\r\n"),
        );
        assert_eq!(response.status, 200);
    }
    // One in four, evenly: the 4th, 8th, ... request of the worker.
    let lines = wait_for_lines(&[&path], 10);
    for (n, line) in lines.iter().enumerate() {
        let expected = format!("\"GET /{} HTTP/1.1\"", 4 * n + 3);
        assert!(line.contains(&expected), "{line} (want {expected})");
    }
}

#[test]
fn request_ids_are_kept_when_valid_generated_otherwise_and_forwarded() {
    let backend = Backend::echo();
    let dir = TempDir::new();
    let path = dir.path().join("ids.log");
    let proxy = Proxy::start_with_config(&log_config(&[backend.addr()], &path, ""), &[]);
    let mut client = RawClient::connect(proxy.addr());
    let requests = [
        "GET /kept HTTP/1.1\r\nHost: t\r\nX-Request-Id: 3f2a9c1e-5b7d-4e2f-9a1b-c3d4e5f60718\r\n\r\n",
        "GET /absent HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /invalid HTTP/1.1\r\nHost: t\r\nx-request-id: a \"b\"\r\n\r\n",
        "GET /long HTTP/1.1\r\nHost: t\r\nX-Request-Id: {long}\r\n\r\n",
        "GET /two HTTP/1.1\r\nHost: t\r\nX-Request-Id: a\r\nX-Request-Id: b\r\n\r\n",
    ];
    for request in requests {
        let request = request.replace("{long}", &"x".repeat(129));
        assert_eq!(exchange(&mut client, &request).0.status, 200);
    }
    let seen = backend.wait_for_requests(requests.len());
    let lines = wait_for_lines(&[&path], requests.len());
    let logged: Vec<String> = lines
        .iter()
        .map(|line| parse_combined(line).fields["request_id"].clone())
        .collect();
    for (request, logged) in seen.iter().zip(&logged) {
        let ids = request.header_all("x-request-id");
        assert_eq!(
            ids,
            [logged.as_str()],
            "{}: one id, the one logged",
            request.target
        );
    }
    assert_eq!(logged[0], "3f2a9c1e-5b7d-4e2f-9a1b-c3d4e5f60718");
    for generated in &logged[1..] {
        assert!(is_generated_id(generated), "{generated}");
    }

    // Another name; and no id at all.
    let (seen, line) = one_logged_request(
        "[forwarded]\nrequest_id = \"X-Trace-Id\"",
        "GET / HTTP/1.1\r\nHost: t\r\nX-Request-Id: theirs\r\n\r\n",
    );
    assert_eq!(
        seen.header("x-request-id"),
        Some("theirs"),
        "not ours: untouched"
    );
    let trace = seen.header("x-trace-id").unwrap();
    assert!(is_generated_id(trace));
    assert_eq!(line.fields["request_id"], trace);
    let (seen, line) = one_logged_request(
        "[forwarded]\nrequest_id = false",
        "GET / HTTP/1.1\r\nHost: t\r\nX-Request-Id: a b\r\n\r\n",
    );
    assert_eq!(
        seen.header_all("x-request-id"),
        ["a b"],
        "passed on as any field"
    );
    assert_eq!(line.fields["request_id"], "-");
}

/// Sends `request` through a proxy configured with `extra`; returns what its backend got and
/// the request's line.
fn one_logged_request(extra: &str, request: &str) -> (Request, Combined) {
    let backend = Backend::echo();
    let dir = TempDir::new();
    let path = dir.path().join("access.log");
    let toml = log_config(&[backend.addr()], &path, "") + "\n" + extra + "\n";
    let proxy = Proxy::start_with_config(&toml, &[]);
    let mut client = RawClient::connect(proxy.addr());
    assert_eq!(exchange(&mut client, request).0.status, 200);
    let seen = backend.wait_for_requests(1).remove(0);
    (seen, parse_combined(&wait_for_lines(&[&path], 1)[0]))
}

/// The admin listener's value of `name` (no labels, or exactly `labels` as written).
fn metric(proxy: &Proxy, sample: &str) -> u64 {
    let (status, body) = admin_get(admin_addr(proxy), "/metrics", None);
    assert_eq!(status, 200);
    body.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in:\n{body}"))
}

#[test]
fn a_log_rotated_under_load_loses_no_line() {
    const CLIENTS: usize = 4;
    const PER_CLIENT: usize = 750;
    let backend = Backend::echo();
    let dir = TempDir::new();
    let path = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let toml = log_config(&[backend.addr()], &path, "").replace("workers = 1", "workers = 2");
    let mut proxy = Proxy::start_with_config(&toml, &[]);
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (addr, done) = (proxy.addr(), done.clone());
            thread::spawn(move || {
                let mut client = RawClient::connect(addr);
                for i in 0..PER_CLIENT {
                    let request = format!("GET /{c}/{i} HTTP/1.1\r\nHost: t\r\n\r\n");
                    assert_eq!(exchange(&mut client, &request).0.status, 200);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // What logrotate does (without copytruncate), a third of the way through the load.
    let deadline = Instant::now() + LOG_WAIT;
    while done.load(Ordering::Relaxed) < CLIENTS * PER_CLIENT / 3 {
        assert!(Instant::now() < deadline, "load too slow");
        thread::sleep(Duration::from_millis(1));
    }
    std::fs::rename(&path, &rotated).unwrap();
    proxy.signal("USR1");
    let at_rotation = done.load(Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    assert!(
        at_rotation < CLIENTS * PER_CLIENT,
        "the rotation came after the load"
    );

    let lines = wait_for_lines(&[&rotated, &path], CLIENTS * PER_CLIENT);
    let (before, after) = (lines_of(&rotated).len(), lines_of(&path).len());
    assert!(
        before > 0 && after > 0,
        "{before} lines before, {after} after"
    );
    let mut requests: Vec<String> = lines.iter().map(|l| parse_combined(l).request).collect();
    requests.sort_unstable();
    requests.dedup();
    assert_eq!(requests.len(), CLIENTS * PER_CLIENT, "every request once");
    assert_eq!(
        metric(&proxy, "ringproxy_access_log_lines_total"),
        (CLIENTS * PER_CLIENT) as u64
    );
    assert_eq!(
        metric(
            &proxy,
            "ringproxy_access_log_dropped_total{reason=\"queue_full\"}"
        ),
        0
    );
    // The writer finishes with the workers: nothing is left queued at exit.
    proxy.signal("TERM");
    let status = proxy.wait_exit(Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let stderr = proxy.stderr_after_exit();
    assert!(
        stderr
            .iter()
            .any(|l| l.starts_with("ringproxy: access log reopened: ")),
        "{stderr:?}"
    );
    assert!(
        !stderr.iter().any(|l| l.contains("did not finish")),
        "{stderr:?}"
    );
    assert_eq!(
        stderr.last().map(String::as_str),
        Some("ringproxy: stopped")
    );
}

/// A FIFO's read end, opened before the proxy opens the write end (which would otherwise
/// wait for a reader); nothing is read from it until `drain`.
struct Fifo {
    path: PathBuf,
    reader: std::fs::File,
}

impl Fifo {
    fn new(path: PathBuf) -> Self {
        let name = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path and writes no memory of ours.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        Self { path, reader }
    }

    /// Reads everything until the writer closes its end, in a thread.
    fn drain(self) -> thread::JoinHandle<Vec<u8>> {
        let mut reader = self.reader;
        thread::spawn(move || {
            let mut all = Vec::new();
            let mut buf = [0u8; 65536];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => return all,
                    Ok(n) => all.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) => panic!("reading the FIFO: {e}"),
                }
            }
        })
    }
}

#[test]
fn lines_the_writer_cannot_take_are_dropped_and_counted_never_waited_for() {
    const REQUESTS: usize = 3000;
    let backend = Backend::echo();
    let dir = TempDir::new();
    let fifo = Fifo::new(dir.path().join("access.fifo"));
    let toml = log_config(&[backend.addr()], &fifo.path, "buffer_bytes = 4096");
    let proxy = Proxy::start_with_config(&toml, &[]);
    // Nobody reads: the pipe fills (64 KiB), the writer blocks in write, its queue fills,
    // and the worker must go on serving.
    let started = Instant::now();
    let mut client = RawClient::connect(proxy.addr());
    for i in 0..REQUESTS {
        let (response, _) = exchange(
            &mut client,
            &format!("GET /{i} HTTP/1.1\r\nHost: t\r\n\r\n"),
        );
        assert_eq!(response.status, 200);
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    // The last partial buffer goes at the next timer sweep: queued or dropped.
    thread::sleep(Duration::from_millis(300));
    let dropped = metric(
        &proxy,
        "ringproxy_access_log_dropped_total{reason=\"queue_full\"}",
    );
    assert!(dropped > 0, "nothing dropped");

    let reader = fifo.drain();
    let deadline = Instant::now() + LOG_WAIT;
    let written = loop {
        let written = metric(&proxy, "ringproxy_access_log_lines_total");
        if written + dropped == REQUESTS as u64 {
            break written;
        }
        assert!(
            Instant::now() < deadline,
            "{written} written + {dropped} dropped"
        );
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        metric(
            &proxy,
            "ringproxy_access_log_dropped_total{reason=\"write_failed\"}"
        ),
        0
    );
    proxy.signal("TERM");
    let read = reader.join().unwrap();
    let lines = String::from_utf8(read).unwrap();
    assert_eq!(lines.lines().count() as u64, written);
    assert!(
        lines.lines().all(|l| l.contains("\"GET /")),
        "whole lines only"
    );
}
