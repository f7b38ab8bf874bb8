//! Live reconfiguration: SIGHUP and `ringproxy reload` swap in a new config generation
//! without dropping what is in flight.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(10);

/// A proxy started from a config file the test rewrites.
struct Reloadable {
    proxy: Proxy,
    config: PathBuf,
    dir: TempDir,
    generation: u64,
}

impl Reloadable {
    fn start(toml: &str) -> Reloadable {
        let dir = TempDir::new();
        let config = dir.write("ringproxy.toml", toml.as_bytes());
        let proxy = Proxy::start(&["--config", config.to_str().unwrap()]);
        Reloadable {
            proxy,
            config,
            dir,
            generation: 1,
        }
    }

    fn rewrite(&self, toml: &str) {
        std::fs::write(&self.config, toml).unwrap();
    }

    /// Rewrites the config, sends SIGHUP and waits until every worker serves the new
    /// generation.
    fn reload(&mut self, toml: &str) {
        self.rewrite(toml);
        self.proxy.signal("HUP");
        self.generation += 1;
        let serving = format!(
            "ringproxy: generation {} serving on every worker",
            self.generation
        );
        self.wait_for_line(|l| l == serving);
    }

    /// Rewrites the config with an invalid one, sends SIGHUP and returns the rejection.
    fn reload_rejected(&mut self, toml: &str) -> String {
        self.rewrite(toml);
        let before = self.proxy.stderr_lines().len();
        self.proxy.signal("HUP");
        self.wait_for_line(|l| l.starts_with("ringproxy: reload rejected"));
        thread::sleep(Duration::from_millis(100));
        self.proxy.stderr_lines()[before..].join("\n")
    }

    fn wait_for_line(&self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(line) = self.proxy.stderr_lines().into_iter().find(|l| wanted(l)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "line not logged; stderr:\n{}",
                self.proxy.stderr_lines().join("\n")
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A free port on 127.0.0.1 (free a moment ago: the kernel does not hand it out again at once).
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// One worker (unless `workers` is given), `listeners` as `(address, upstream)`, and the
/// groups `groups` as `(name, backends TOML array items)`.
fn toml(workers: usize, listeners: &[(SocketAddr, &str)], groups: &[(&str, String)]) -> String {
    let mut out = format!("[runtime]\nworkers = {workers}\npin = false\n\n");
    for (address, upstream) in listeners {
        out += &format!("[[listener]]\naddress = \"{address}\"\nupstream = \"{upstream}\"\n\n");
    }
    for (name, backends) in groups {
        out += &format!("[upstream.{name}]\nbackends = [{backends}]\n\n");
    }
    out
}

fn list(backends: &[&Backend]) -> String {
    let items: Vec<String> = backends
        .iter()
        .map(|b| format!("\"{}\"", b.addr()))
        .collect();
    items.join(", ")
}

#[test]
fn an_added_backend_takes_requests_at_once_and_a_keep_alive_connection_moves_to_it() {
    let a = Backend::echo();
    let b = Backend::echo();
    let address = free_addr();
    let mut proxy = Reloadable::start(&toml(1, &[(address, "app")], &[("app", list(&[&a]))]));
    let mut client = RawClient::connect(address);
    client.send(b"GET /before HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.read_response().unwrap().status, 200);

    proxy.reload(&toml(1, &[(address, "app")], &[("app", list(&[&a, &b]))]));
    let changes = proxy.wait_for_line(|l| l.starts_with("ringproxy: generation 2: backends:"));
    assert!(
        changes.ends_with(&format!("backends: +app/{}", b.addr())),
        "{changes}"
    );
    for i in 0..4 {
        client.send(format!("GET /after{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        assert_eq!(client.read_response().unwrap().status, 200);
    }
    assert_eq!(b.requests().len(), 2, "b got {:?}", b.targets());
    assert_eq!(a.requests().len(), 3);
    assert_eq!(a.connections(), 1, "the pooled connection to a was kept");
}

#[test]
fn a_removed_backend_finishes_its_request_and_gets_no_more() {
    let slow = Backend::start(|req| {
        if req.target == "/slow" {
            vec![
                Step::Sleep(Duration::from_millis(800)),
                Step::Write(ok_response(b"slow")),
            ]
        } else {
            vec![Step::Write(ok_response(b"old"))]
        }
    });
    let fresh = Backend::start(|_| vec![Step::Write(ok_response(b"new"))]);
    let address = free_addr();
    let mut proxy = Reloadable::start(&toml(1, &[(address, "app")], &[("app", list(&[&slow]))]));
    let in_flight = thread::spawn(move || get(address, "/slow"));
    slow.wait_for_requests(1);
    proxy.reload(&toml(1, &[(address, "app")], &[("app", list(&[&fresh]))]));
    for _ in 0..3 {
        assert_eq!(get(address, "/next").body_text(), "new");
    }
    let finished = in_flight.join().unwrap();
    assert_eq!(
        (finished.status, finished.body_text().as_str()),
        (200, "slow")
    );
    assert_eq!(slow.requests().len(), 1);
}

#[test]
fn drain_true_takes_a_backend_out_of_rotation_and_back() {
    let a = Backend::start(|_| vec![Step::Write(ok_response(b"a"))]);
    let b = Backend::start(|_| vec![Step::Write(ok_response(b"b"))]);
    let address = free_addr();
    let both = list(&[&a, &b]);
    let mut proxy = Reloadable::start(&toml(1, &[(address, "app")], &[("app", both.clone())]));
    let drained = format!(
        "\"{}\", {{ address = \"{}\", drain = true }}",
        a.addr(),
        b.addr()
    );
    proxy.reload(&toml(1, &[(address, "app")], &[("app", drained)]));
    let changes = proxy.wait_for_line(|l| l.starts_with("ringproxy: generation 2: backends:"));
    assert!(
        changes.ends_with(&format!("draining app/{}", b.addr())),
        "{changes}"
    );
    let before = b.requests().len();
    let bodies: Vec<String> = (0..6).map(|_| get(address, "/").body_text()).collect();
    assert!(bodies.iter().all(|body| body == "a"), "{bodies:?}");
    assert_eq!(b.requests().len(), before);
    proxy.reload(&toml(1, &[(address, "app")], &[("app", both)]));
    let bodies: Vec<String> = (0..6).map(|_| get(address, "/").body_text()).collect();
    assert!(bodies.iter().any(|body| body == "b"), "{bodies:?}");
}

#[test]
fn an_invalid_config_is_rejected_with_its_errors_and_the_running_one_serves_on() {
    let a = Backend::echo();
    let address = free_addr();
    let good = toml(1, &[(address, "app")], &[("app", list(&[&a]))]);
    let mut proxy = Reloadable::start(&good);
    let mut client = RawClient::connect(address);
    let bad = good.replace("[upstream.app]", "[upstream.app]\nbalance = \"fastest\"");
    let said = proxy.reload_rejected(&bad);
    assert!(
        said.contains("reload rejected; generation 1 serves on")
            && said.contains("ringproxy.toml:")
            && said.contains("upstream.app.balance"),
        "{said}"
    );
    client.send(b"GET /still HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.read_response().unwrap().status, 200);
    assert_eq!(get(address, "/new").status, 200);
    // The next valid file is generation 2: the rejected one took no number.
    proxy.reload(&good);
}

#[test]
fn listeners_are_added_and_removed_and_a_removed_ones_connections_close_at_a_boundary() {
    let a = Backend::echo();
    let (first, second) = (free_addr(), free_addr());
    let groups = [("app", list(&[&a]))];
    let mut proxy = Reloadable::start(&toml(2, &[(first, "app")], &groups));
    let mut on_first = RawClient::connect(first);
    on_first.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(on_first.read_response().unwrap().status, 200);

    proxy.reload(&toml(2, &[(first, "app"), (second, "app")], &groups));
    assert_eq!(get(second, "/second").status, 200);
    let mut on_second = RawClient::connect(second);
    on_second.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(on_second.read_response().unwrap().status, 200);

    proxy.reload(&toml(2, &[(second, "app")], &groups));
    let changes = proxy.wait_for_line(|l| l.starts_with("ringproxy: generation 3: listeners:"));
    assert!(
        changes.ends_with(&format!("listeners: -{first}")),
        "{changes}"
    );
    // The idle connection on the removed listener is closed (FIN, no reset) ...
    on_first.wait_closed(WAIT).unwrap();
    // ... no new one is accepted there ...
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(first).is_ok() {
        assert!(Instant::now() < deadline, "{first} still accepts");
        thread::sleep(Duration::from_millis(20));
    }
    // ... and the kept listener's connections go on.
    on_second.send(b"GET /again HTTP/1.1\r\nHost: t\r\n\r\n");
    let again = on_second.read_response().unwrap();
    assert_eq!(again.status, 200);
    assert_eq!(again.header("connection"), None);
}

#[test]
fn a_websocket_tunnel_outlives_a_reload_that_removes_its_backend() {
    let ws = Backend::start(|_| {
        vec![
            Step::Write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                    .to_vec(),
            ),
            Step::WebSocketEcho,
        ]
    });
    let other = Backend::echo();
    let address = free_addr();
    let mut proxy = Reloadable::start(&toml(1, &[(address, "app")], &[("app", list(&[&ws]))]));
    let mut c = RawClient::connect(address);
    c.send(
        b"GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert_eq!(c.read_response().unwrap().status, 101);
    proxy.reload(&toml(1, &[(address, "app")], &[("app", list(&[&other]))]));
    let key = [1, 2, 3, 4];
    c.send(&ws_frame(0x1, b"still there", Some(key)));
    assert_eq!(
        ws_read_frame(c.reader()).unwrap(),
        (0x1, b"still there".to_vec())
    );
    assert_eq!(get(address, "/").status, 200);
    assert_eq!(other.requests().len(), 1);
}

#[test]
fn ringproxy_reload_checks_the_file_then_signals_the_pid_file() {
    let a = Backend::echo();
    let address = free_addr();
    let dir = TempDir::new();
    let pid_file = dir.path().join("ringproxy.pid");
    let good = toml(1, &[(address, "app")], &[("app", list(&[&a]))]).replace(
        "pin = false\n",
        &format!("pin = false\npid_file = \"{}\"\n", pid_file.display()),
    );
    let mut proxy = Reloadable::start(&good);
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(pid.trim(), proxy.proxy.pid().to_string());
    let config = proxy.config.to_str().unwrap().to_string();

    let reload = run_to_exit(&["reload", "--config", &config], WAIT);
    assert!(reload.status.success(), "{reload:?}");
    proxy.generation += 1;
    proxy.wait_for_line(|l| l == "ringproxy: generation 2 serving on every worker");

    proxy.rewrite(&good.replace("upstream = \"app\"", "upstream = \"missing\""));
    let refused = run_to_exit(&["reload", "--config", &config], WAIT);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("ringproxy.toml:") && stderr.contains("not signalled"),
        "{stderr}"
    );
    thread::sleep(Duration::from_millis(200));
    assert!(
        !proxy
            .proxy
            .stderr_lines()
            .iter()
            .any(|l| l.contains("generation 3")),
        "an invalid file must not be signalled"
    );

    let no_pid = run_to_exit(
        &[
            "reload",
            "--pid-file",
            &dir.write("other.pid", b"999999999\n").display().to_string(),
        ],
        WAIT,
    );
    assert_eq!(no_pid.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&no_pid.stderr).contains("no process"),
        "{no_pid:?}"
    );

    proxy.proxy.signal("TERM");
    assert!(proxy.proxy.wait_exit(WAIT).unwrap().success());
    assert!(!pid_file.exists(), "the pid file is removed at exit");
    drop(proxy.dir);
}

#[test]
fn status_shows_the_generation_and_a_kept_backends_ejection_survives_a_reload() {
    let dead = closed_port_addr();
    let live = Backend::echo();
    let address = free_addr();
    let groups = format!("\"{dead}\", \"{}\"", live.addr());
    let config = |extra: &str| {
        toml(1, &[(address, "app")], &[("app", groups.clone())])
            + "[upstream.app.passive]\nmax_fails = 1\ncooldown = \"1h\"\nmax_cooldown = \"1h\"\n\n"
            + "[admin]\naddress = \"127.0.0.1:0\"\n"
            + extra
    };
    let mut proxy = Reloadable::start(&config(""));
    // The dead backend fails one request (retried on the live one) and is ejected.
    for _ in 0..2 {
        assert_eq!(get(address, "/").status, 200);
    }
    let admin = admin_addr(&proxy.proxy);
    let status = |admin| {
        let (code, body) = admin_get(admin, "/status", None);
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let health_of = |status: &serde_json::Value, address: SocketAddr| {
        status["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["address"] == address.to_string())
            .map(|b| b["health"].as_str().unwrap().to_owned())
    };
    let before = status(admin);
    assert_eq!(before["generation"], 1);
    assert_eq!(health_of(&before, dead).as_deref(), Some("ejected"));

    proxy.reload(&config("# an edit\n"));
    let after = status(admin);
    assert_eq!(after["generation"], 2);
    assert_eq!(health_of(&after, dead).as_deref(), Some("ejected"));
    for _ in 0..4 {
        assert_eq!(get(address, "/").status, 200);
    }
    assert_eq!(
        live.requests().len(),
        6,
        "every request reached the live backend"
    );
}

#[test]
fn a_new_backend_that_reuses_a_removed_ones_number_starts_with_a_clean_state() {
    let dead = closed_port_addr();
    let live = Backend::echo();
    let fresh = Backend::echo();
    let address = free_addr();
    let passive =
        "[upstream.app.passive]\nmax_fails = 1\ncooldown = \"1h\"\nmax_cooldown = \"1h\"\n\n";
    let config = |backends: String| toml(1, &[(address, "app")], &[("app", backends)]) + passive;
    let mut proxy = Reloadable::start(&config(format!("\"{}\", \"{dead}\"", live.addr())));
    // The dead backend fails a request (retried on the live one) and is ejected for an hour.
    for _ in 0..2 {
        assert_eq!(get(address, "/").status, 200);
    }
    // Removed; then two more generations, so that nothing holds one that had it, and the
    // next new backend takes its number.
    let without = config(format!("\"{}\"", live.addr()));
    proxy.reload(&without);
    proxy.reload(&(without.clone() + "# again\n"));
    proxy.reload(&(without + "# and again\n"));
    proxy.reload(&config(format!(
        "\"{}\", \"{}\"",
        live.addr(),
        fresh.addr()
    )));
    for _ in 0..4 {
        assert_eq!(get(address, "/").status, 200);
    }
    assert_eq!(fresh.requests().len(), 2, "the new backend is not ejected");
}
