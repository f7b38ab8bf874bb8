//! The admin listener: exact counts read back from `/metrics` with the real Prometheus
//! parser (Python's prometheus_client), `/status` against the traffic sent, the bearer token
//! and allow list, and malformed admin requests.

mod common;

use common::prom::{parse_exposition, value};
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn get(client: &mut RawClient, path: &str) -> u16 {
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    client.send(request.as_bytes());
    client.read_response().unwrap().status
}

/// Three listeners: `live` (one backend), `dead` (nothing listens, no retry) and `retry` (a
/// dead primary and a live backup: every request is retried once). Passive checks off, so
/// the dead backends stay in rotation.
fn three_groups(live: SocketAddr, dead: SocketAddr, admin_extra: &str) -> String {
    format!(
        "[runtime]\nworkers = 1\npin = false\n\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\nupstream = \"live\"\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\nupstream = \"dead\"\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\nupstream = \"retry\"\n\n\
         [upstream.live]\nbackends = [\"{live}\"]\n\
         [upstream.dead]\nretries = 0\nbackends = [\"{dead}\"]\n\
         [upstream.dead.passive]\nmax_fails = 0\n\
         [upstream.retry]\nretries = 1\nbackends = [\"{dead}\", {{ address = \"{live}\", backup = true }}]\n\
         [upstream.retry.passive]\nmax_fails = 0\n\n\
         [admin]\naddress = \"127.0.0.1:0\"\n{admin_extra}\n"
    )
}

#[test]
fn exact_counts_read_back_from_metrics_with_the_prometheus_parser() {
    let live = app_backend();
    let dead = closed_port_addr();
    let proxy = Proxy::start_with_config(&three_groups(live.addr(), dead, ""), &[]);
    let [on_live, on_dead, on_retry] = [0, 1, 2].map(|i| proxy.addrs()[i]);

    let mut client = RawClient::connect(on_live);
    for _ in 0..5 {
        assert_eq!(get(&mut client, "/"), 200);
    }
    assert_eq!(get(&mut client, "/missing"), 404);
    let mut client = RawClient::connect(on_dead);
    for _ in 0..3 {
        assert_eq!(get(&mut client, "/"), 502);
    }
    let mut client = RawClient::connect(on_retry);
    for _ in 0..2 {
        assert_eq!(get(&mut client, "/"), 200);
    }
    // Two Host fields: 400, and the connection closes.
    let mut client = RawClient::connect(on_live);
    client.send(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    assert_eq!(client.read_response().unwrap().status, 400);

    let (status, text) = admin_get(admin_addr(&proxy), "/metrics", None);
    assert_eq!(status, 200, "{text}");
    let samples = parse_exposition(&text);
    assert!(
        !samples
            .iter()
            .any(|s| s.family.starts_with("ringproxy_tls_")),
        "TLS families without a TLS listener"
    );
    let requests = |listener: SocketAddr, group: &str, class: &str| {
        let listener = listener.to_string();
        let labels = [
            ("listener", listener.as_str()),
            ("upstream", group),
            ("class", class),
        ];
        value(&samples, "ringproxy_requests_total", &labels)
    };
    assert_eq!(requests(on_live, "live", "2xx"), 5.0);
    assert_eq!(requests(on_live, "live", "4xx"), 2.0);
    assert_eq!(requests(on_live, "live", "5xx"), 0.0);
    assert_eq!(requests(on_dead, "dead", "5xx"), 3.0);
    assert_eq!(requests(on_dead, "dead", "2xx"), 0.0);
    assert_eq!(requests(on_retry, "retry", "2xx"), 2.0);
    assert_eq!(value(&samples, "ringproxy_retries_total", &[]), 2.0);
    assert_eq!(
        value(
            &samples,
            "ringproxy_parse_errors_total",
            &[("status", "400")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "ringproxy_client_connections_accepted_total",
            &[("worker", "0")]
        ),
        4.0
    );
    // Every request that reached the live backend went over an opened or a reused connection.
    let opened = value(&samples, "ringproxy_backend_connections_opened_total", &[]);
    let reused = value(&samples, "ringproxy_backend_connections_reused_total", &[]);
    assert!(opened >= 2.0, "{opened}");
    assert_eq!(opened + reused, 8.0);
    for kind in [
        "client_header",
        "client_idle",
        "body_idle",
        "backend_connect",
        "backend_response",
    ] {
        assert_eq!(
            value(&samples, "ringproxy_timeouts_total", &[("kind", kind)]),
            0.0,
            "{kind}"
        );
    }
    // One time to first byte per response head from a backend; every one under 10 s.
    let first_byte = "ringproxy_upstream_first_byte_seconds";
    assert_eq!(value(&samples, &format!("{first_byte}_count"), &[]), 8.0);
    assert_eq!(
        value(&samples, &format!("{first_byte}_bucket"), &[("le", "+Inf")]),
        8.0
    );
    assert_eq!(
        value(&samples, &format!("{first_byte}_bucket"), &[("le", "10")]),
        8.0
    );
    assert!(
        samples
            .iter()
            .any(|s| s.family == first_byte && s.kind == "histogram")
    );
    let sum = value(&samples, &format!("{first_byte}_sum"), &[]);
    assert!(sum > 0.0 && sum < 80.0, "{sum}");
    // Health from the shared table: every backend up, never ejected.
    let dead_label = dead.to_string();
    let dead_backend = [("upstream", "dead"), ("backend", dead_label.as_str())];
    assert_eq!(value(&samples, "ringproxy_backend_up", &dead_backend), 1.0);
    assert_eq!(
        value(&samples, "ringproxy_backend_ejections_total", &dead_backend),
        0.0
    );
}

#[test]
fn status_reports_workers_and_backends_as_the_traffic_left_them() {
    let live = app_backend();
    let dead = closed_port_addr();
    let proxy = Proxy::start_with_config(&three_groups(live.addr(), dead, ""), &[]);
    let mut client = RawClient::connect(proxy.addrs()[0]);
    for _ in 0..4 {
        assert_eq!(get(&mut client, "/"), 200);
    }
    let mut client = RawClient::connect(proxy.addrs()[2]);
    assert_eq!(get(&mut client, "/"), 200);

    let (status, body) = admin_get(admin_addr(&proxy), "/status", None);
    assert_eq!(status, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let workers = status["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 1, "{status:#}");
    let worker = &workers[0];
    assert_eq!(worker["worker"], 0);
    assert_eq!(worker["requests"], 5);
    assert_eq!(worker["accepted_connections"], 2);
    assert_eq!(worker["open_connections"], 2, "{status:#}");
    assert_eq!(worker["upstream_first_byte"]["count"], 5);
    assert!(worker["upstream_first_byte"]["p99"].as_f64().unwrap() > 0.0);
    let backends = status["backends"].as_array().unwrap();
    let mut described: Vec<(String, String, String)> = backends
        .iter()
        .map(|b| {
            (
                b["upstream"].as_str().unwrap().to_string(),
                b["address"].as_str().unwrap().to_string(),
                b["health"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    described.sort();
    let (live, dead) = (live.addr().to_string(), dead.to_string());
    let up = |group: &str, addr: &str| (group.to_string(), addr.to_string(), "up".to_string());
    let mut expected = [
        up("dead", &dead),
        up("live", &live),
        up("retry", &dead),
        up("retry", &live),
    ];
    expected.sort();
    assert_eq!(described, expected);
    for backend in backends {
        assert_eq!(backend["inflight"], 0);
        assert_eq!(backend["inflight_per_worker"], serde_json::json!([0]));
    }
    assert_eq!(status["generation"], 1);
}

#[test]
fn token_and_allow_list_guard_the_admin_listener() {
    let live = app_backend();
    let dead = closed_port_addr();
    let config = three_groups(live.addr(), dead, "token = \"s3cret-token\"");
    let proxy = Proxy::start_with_config(&config, &[]);
    let admin = admin_addr(&proxy);
    assert_eq!(admin_get(admin, "/metrics", None).0, 401);
    assert_eq!(admin_get(admin, "/metrics", Some("wrong")).0, 401);
    assert_eq!(admin_get(admin, "/metrics", Some("s3cret-token")).0, 200);
    assert_eq!(admin_get(admin, "/status", Some("s3cret-token")).0, 200);

    let config = three_groups(live.addr(), dead, "allow = [\"10.0.0.0/8\", \"::1\"]");
    let proxy = Proxy::start_with_config(&config, &[]);
    assert_eq!(admin_get(admin_addr(&proxy), "/metrics", None).0, 403);
    let config = three_groups(live.addr(), dead, "allow = [\"127.0.0.0/8\"]");
    let proxy = Proxy::start_with_config(&config, &[]);
    assert_eq!(admin_get(admin_addr(&proxy), "/metrics", None).0, 200);
}

#[test]
fn malformed_admin_requests_get_answers_and_nothing_breaks() {
    let live = app_backend();
    let proxy = Proxy::start(&[
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &live.addr().to_string(),
        "--workers",
        "1",
        "--no-pin",
        "--admin",
        "127.0.0.1:0",
    ]);
    let admin = admin_addr(&proxy);
    assert_eq!(admin_raw(admin, b"\x00\x01\x02 garbage\r\n\r\n").0, 400);
    assert_eq!(
        admin_raw(admin, b"POST /metrics HTTP/1.1\r\nHost: a\r\n\r\n").0,
        405
    );
    assert_eq!(admin_get(admin, "/nope", None).0, 404);
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    let mut stream = TcpStream::connect(admin).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(huge.as_bytes());
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(
        answer.starts_with(b"HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    // A client that connects and says nothing holds the admin thread for at most 2 s.
    let _silent = TcpStream::connect(admin).unwrap();
    let started = Instant::now();
    assert_eq!(admin_get(admin, "/metrics", None).0, 200);
    assert!(started.elapsed() < Duration::from_secs(5));
    // A client that leaves halfway through its head.
    let mut half = TcpStream::connect(admin).unwrap();
    half.write_all(b"GET /met").unwrap();
    drop(half);
    assert_eq!(admin_get(admin, "/status?x=1", None).0, 200);
    // The proxy still serves.
    let mut client = RawClient::connect(proxy.addr());
    assert_eq!(get(&mut client, "/"), 200);
}

#[test]
fn admin_settings_are_checked_with_file_line_and_key() {
    let dir = TempDir::new();
    let backend = closed_port_addr();
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:8080\"\n[upstream.app]\nbackends = [\"{backend}\"]\n\
         [admin]\naddress = \"127.0.0.1:8080\"\ntoken = \"has space\"\nallow = [\"10.0.0.0/40\", 7]\nport = 1\n"
    );
    let path = dir.write("bad.toml", toml.as_bytes());
    let path = path.to_str().unwrap();
    let out = run_to_exit(&["--check", "--config", path], Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        format!("{path}:9: admin.port: unknown key"),
        format!("{path}:6: admin.address: 127.0.0.1:8080 is also a listener's address"),
        format!("{path}:7: admin.token: must be visible ASCII without spaces"),
        format!("{path}:8: admin.allow[0]: prefix length in \"10.0.0.0/40\" must be 0..=32"),
        format!("{path}:8: admin.allow[1]: expected a string"),
    ] {
        assert!(
            stderr.contains(&expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn the_admin_thread_stops_with_the_drain() {
    let live = app_backend();
    let mut proxy = Proxy::start(&[
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &live.addr().to_string(),
        "--workers",
        "2",
        "--no-pin",
        "--admin",
        "0",
    ]);
    let admin = admin_addr(&proxy);
    assert!(
        admin.ip().is_loopback(),
        "a bare port is on loopback: {admin}"
    );
    assert_eq!(admin_get(admin, "/metrics", None).0, 200);
    proxy.signal("TERM");
    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .expect("exits within 10 s");
    assert!(status.success(), "{status}");
    assert!(
        proxy
            .stderr_after_exit()
            .iter()
            .any(|l| l == "ringproxy: stopped"),
        "no stopped line"
    );
    assert!(
        TcpStream::connect(admin).is_err(),
        "admin listener still open"
    );
}

#[test]
fn idle_keep_alive_connections_are_a_gauge_of_their_own() {
    let live = app_backend();
    let proxy = Proxy::start_with_config(&three_groups(live.addr(), closed_port_addr(), ""), &[]);
    let on_live = proxy.addrs()[0];
    let mut idle: Vec<RawClient> = (0..3).map(|_| RawClient::connect(on_live)).collect();
    for client in &mut idle {
        assert_eq!(get(client, "/"), 200);
    }
    // One more connection, in the middle of sending a head: open, not idle.
    let mut busy = RawClient::connect(on_live);
    busy.send(b"GET / HTTP/1.1\r\n");
    let gauges = || {
        let (_, text) = admin_get(admin_addr(&proxy), "/metrics", None);
        let samples = parse_exposition(&text);
        let worker = [("worker", "0")];
        (
            value(&samples, "ringproxy_client_connections_open", &worker),
            value(&samples, "ringproxy_client_connections_idle", &worker),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while gauges() != (4.0, 3.0) {
        assert!(Instant::now() < deadline, "open, idle: {:?}", gauges());
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(idle);
    busy.send(b"Host: t\r\n\r\n");
    assert_eq!(busy.read_response().unwrap().status, 200);
    while gauges() != (1.0, 1.0) {
        assert!(Instant::now() < deadline, "open, idle: {:?}", gauges());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `request` on a connection of its own and reads the answer to the end (the request
/// asks to close): returns the status and every byte the proxy wrote.
fn exchange_once(addr: SocketAddr, request: &str) -> (u16, usize) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let status = std::str::from_utf8(&answer[9..12])
        .unwrap()
        .parse()
        .unwrap();
    (status, answer.len())
}

/// A route table in front of two groups: `main[0]` proxies /a to group `a` (two backends,
/// round robin), `main[1]` answers /healthz itself, `main[2]` proxies the rest to `b`.
/// Backend connections are not pooled, so each one closes after its response.
fn routed(a1: SocketAddr, a2: SocketAddr, b: SocketAddr, runtime_extra: &str) -> String {
    format!(
        "[runtime]\nworkers = 1\npin = false\n{runtime_extra}\n\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\nroutes = \"main\"\n\n\
         [[routes.main.route]]\npath_prefix = \"/a\"\nupstream = \"a\"\n\
         [[routes.main.route]]\npath = \"/healthz\"\nrespond = {{ status = 200, body = \"ok\" }}\n\
         [[routes.main.route]]\nupstream = \"b\"\n\n\
         [upstream.a]\nbackends = [\"{a1}\", \"{a2}\"]\n\
         [upstream.b]\nbackends = [\"{b}\"]\n\n\
         [pool]\nmax_idle_per_backend = 0\n\n\
         [admin]\naddress = \"127.0.0.1:0\"\n"
    )
}

#[test]
fn routes_backends_bytes_connections_and_times_are_counted_exactly() {
    let (a1, a2, b) = (app_backend(), app_backend(), app_backend());
    let proxy = Proxy::start_with_config(&routed(a1.addr(), a2.addr(), b.addr(), ""), &[]);
    let addr = proxy.addr();
    let (mut received, mut sent) = (0, 0);
    let mut send = |target: &str, expected: u16| {
        let request = format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let (status, bytes) = exchange_once(addr, &request);
        assert_eq!(status, expected, "{target}");
        received += request.len();
        sent += bytes;
    };
    for _ in 0..4 {
        send("/a/x", 200);
    }
    for _ in 0..3 {
        send("/healthz", 200);
    }
    send("/other", 200);
    send("/missing", 404);

    let admin = admin_addr(&proxy);
    // The closed count is published by the worker's timer sweep (50 ms).
    let deadline = Instant::now() + Duration::from_secs(5);
    let samples = loop {
        let samples = parse_exposition(&admin_get(admin, "/metrics", None).1);
        let closed = value(&samples, "ringproxy_backend_connections_closed_total", &[]);
        if closed == 6.0 || Instant::now() > deadline {
            break samples;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let route = |route: &str, class: &str| {
        let labels = [("route", route), ("class", class)];
        value(&samples, "ringproxy_route_requests_total", &labels)
    };
    assert_eq!(route("main[0]", "2xx"), 4.0);
    assert_eq!(route("main[2]", "2xx"), 1.0);
    assert_eq!(route("main[2]", "4xx"), 1.0);
    // The route that answers itself proxies nothing: counted by listener, not by route.
    assert_eq!(route("main[1]", "2xx"), 0.0);
    let listener = addr.to_string();
    let requests = |group: &str, class: &str| {
        let labels = [
            ("listener", listener.as_str()),
            ("upstream", group),
            ("class", class),
        ];
        value(&samples, "ringproxy_requests_total", &labels)
    };
    assert_eq!(requests("a", "2xx"), 4.0);
    assert_eq!(requests("b", "4xx"), 1.0);
    assert_eq!(requests("", "2xx"), 3.0, "answered by the proxy itself");
    let backend = |backend: &Backend, group: &str, class: &str| {
        let address = backend.addr().to_string();
        let labels = [
            ("upstream", group),
            ("backend", address.as_str()),
            ("class", class),
        ];
        value(&samples, "ringproxy_backend_responses_total", &labels)
    };
    assert_eq!(backend(&a1, "a", "2xx"), 2.0, "round robin");
    assert_eq!(backend(&a2, "a", "2xx"), 2.0, "round robin");
    assert_eq!(backend(&b, "b", "2xx"), 1.0);
    assert_eq!(backend(&b, "b", "4xx"), 1.0);
    let bytes = |name: &str| value(&samples, name, &[("listener", listener.as_str())]);
    assert_eq!(
        bytes("ringproxy_client_bytes_received_total"),
        received as f64
    );
    assert_eq!(bytes("ringproxy_client_bytes_sent_total"), sent as f64);
    // Six requests reached a backend, each over a connection of its own, closed after it.
    let opened = value(&samples, "ringproxy_backend_connections_opened_total", &[]);
    assert_eq!(opened, 6.0);
    assert_eq!(
        value(&samples, "ringproxy_backend_connections_closed_total", &[]),
        6.0
    );
    let count = |name: &str| value(&samples, &format!("{name}_count"), &[]);
    assert_eq!(count("ringproxy_upstream_connect_seconds"), 6.0);
    assert_eq!(count("ringproxy_request_duration_seconds"), 9.0);
    let within = |name: &str, le: &str| value(&samples, &format!("{name}_bucket"), &[("le", le)]);
    assert_eq!(within("ringproxy_request_duration_seconds", "10"), 9.0);
    let sum = value(&samples, "ringproxy_request_duration_seconds_sum", &[]);
    assert!(sum > 0.0 && sum < 90.0, "{sum}");

    let (status, body) = admin_get(admin, "/status", None);
    assert_eq!(status, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["request_duration"]["count"], 9, "{status:#}");
    assert_eq!(status["upstream_connect"]["count"], 6, "{status:#}");
    assert!(status["request_duration"]["p99_9"].as_f64().unwrap() > 0.0);
    assert_eq!(status["workers"][0]["request_duration"]["count"], 9);
}

#[test]
fn with_metrics_off_nothing_is_counted_and_requests_are_served() {
    let (a1, a2, b) = (app_backend(), app_backend(), app_backend());
    let toml = routed(a1.addr(), a2.addr(), b.addr(), "metrics = false");
    let proxy = Proxy::start_with_config(&toml, &[]);
    for target in ["/a/x", "/healthz", "/other"] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert_eq!(exchange_once(proxy.addr(), &request).0, 200);
    }
    let admin = admin_addr(&proxy);
    let (status, text) = admin_get(admin, "/metrics", None);
    assert_eq!(status, 200, "{text}");
    let samples = parse_exposition(&text);
    let counted: Vec<_> = samples
        .iter()
        .filter(|s| s.family.starts_with("ringproxy_") && s.value != 0.0)
        .filter(|s| !s.family.starts_with("ringproxy_backend_up"))
        .collect();
    assert!(counted.is_empty(), "counted with metrics off: {counted:?}");
    let (status, body) = admin_get(admin, "/status", None);
    assert_eq!(status, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["workers"][0]["requests"], 0, "{status:#}");
}

/// A WebSocket tunnel's bytes count as the client's, both ways: the upgrade request and
/// frames in, the 101 head and the echoed frames out.
#[test]
fn tunnel_bytes_are_counted_with_the_clients() {
    const SWITCH: &[u8] =
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    let backend = Backend::start(|_| vec![Step::Write(SWITCH.to_vec()), Step::WebSocketEcho]);
    let toml = config(&[backend.addr()], "[admin]\naddress = \"127.0.0.1:0\"\n");
    let proxy = Proxy::start_with_config(&toml, &[]);
    let mut stream = TcpStream::connect(proxy.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let upgrade = b"GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    stream.write_all(upgrade).unwrap();
    let mut received = upgrade.len();
    let frames = [
        ws_frame(1, &[b'x'; 300], Some([1, 2, 3, 4])),
        ws_frame(8, b"", Some([1, 2, 3, 4])),
    ];
    for frame in &frames {
        stream.write_all(frame).unwrap();
        received += frame.len();
    }
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 101"), "{answer:?}");
    assert!(answer.len() > 300, "the echo came back: {}", answer.len());

    let listener = proxy.addr().to_string();
    let admin = admin_addr(&proxy);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let samples = parse_exposition(&admin_get(admin, "/metrics", None).1);
        let bytes = |name: &str| value(&samples, name, &[("listener", listener.as_str())]);
        let counted = (
            bytes("ringproxy_client_bytes_received_total"),
            bytes("ringproxy_client_bytes_sent_total"),
        );
        if counted == (received as f64, answer.len() as f64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "counted {counted:?}, moved ({received}, {})",
            answer.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
