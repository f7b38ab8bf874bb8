//! The live per-core view: `/status` checked against the traffic sent, and `ringproxy top`
//! run in an 80x24 tmux pane, its screen captured, quit with `q` and with Ctrl-C, the
//! terminal checked to be as it was; its one-line errors for an admin listener it cannot read.

mod common;

use common::*;
use serde_json::Value;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// A tmux server of its own (`-L`), killed with everything in it when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Runs `script` with sh in a detached 80x24 session named `top`.
    fn start(script: &std::path::Path) -> Tmux {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmux = Tmux {
            socket: format!("ringproxy-top-{}-{n}", std::process::id()),
        };
        let command = format!("sh {}", script.display());
        tmux.run(&[
            "new-session",
            "-d",
            "-x",
            "80",
            "-y",
            "24",
            "-s",
            "top",
            &command,
        ]);
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let out: Output = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .env("TERM", "xterm")
            .output()
            .expect("tmux runs (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }

    /// A pane flag: `alternate_on`, `cursor_flag`.
    fn flag(&self, name: &str) -> String {
        let format = format!("#{{{name}}}");
        self.run(&["display-message", "-p", "-t", "top", &format])
            .trim()
            .to_string()
    }

    /// The screen once `ready` holds for it; panics with the last screen after 15 s.
    fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} on the screen:\n{screen}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// The contents of `path` once it exists and ends with a newline; panics after 15 s.
fn wait_for_file(path: &std::path::Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn top_draws_workers_and_backends_in_80x24_and_restores_the_terminal_on_q_and_ctrl_c() {
    let backend = app_backend();
    let proxy = proxy_with_admin(backend.addr(), "");
    let admin = admin_addr(&proxy);
    let mut client = RawClient::connect(proxy.addr());
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.read_response().unwrap().status, 200);
    // Its worker publishes the latency estimate at its next load reconcile (50 ms).
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(admin)["backends"][0]["ewma_seconds"].is_null() {
        assert!(Instant::now() < deadline, "no EWMA: {:#}", status(admin));
        thread::sleep(Duration::from_millis(50));
    }

    // Two runs, the first quit with q, the second with Ctrl-C; the terminal settings
    // (stty -g) before and after each, and each exit status, go to files.
    let dir = TempDir::new();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let top = format!("'{}' top --admin {admin}", bin());
    let script = format!(
        "stty -g > '{before}'\n\
         {top}\necho $? > '{exit1}'\nstty -g > '{after1}'\n\
         {top}\necho $? > '{exit2}'\nstty -g > '{after2}'\n\
         exec sleep 600\n",
        before = path("before"),
        exit1 = path("exit1"),
        after1 = path("after1"),
        exit2 = path("exit2"),
        after2 = path("after2"),
    );
    let tmux = Tmux::start(&dir.write("top.sh", script.as_bytes()));

    let backend_line = backend.addr().to_string();
    let screen = tmux.wait_for("backend table", |s| s.contains(&backend_line));
    let lines: Vec<&str> = screen.lines().collect();
    assert!(lines.len() <= 24, "{screen}");
    assert!(lines.iter().all(|l| l.chars().count() <= 80), "{screen}");
    assert!(
        lines[0].starts_with(&format!("ringproxy top  {admin}  generation 1  up ")),
        "{screen}"
    );
    assert!(lines[0].ends_with("2 workers  1 backend"), "{screen}");
    for worker in ["  0 ", "  1 "] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(worker) && l.contains('[')),
            "no row for worker {worker:?}:\n{screen}"
        );
    }
    let row = lines.iter().find(|l| l.starts_with(&backend_line)).unwrap();
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(columns[1..4], ["app", "up", "0"], "{screen}");
    assert!(columns[4].ends_with('s'), "an EWMA latency: {screen}");
    assert_eq!(tmux.flag("alternate_on"), "1", "{screen}");
    // Refreshed every second: the uptime moves on.
    let first = lines[0].to_string();
    tmux.wait_for("refresh", |s| s.lines().next() != Some(&first));

    tmux.run(&["send-keys", "-t", "top", "q"]);
    assert_eq!(wait_for_file(&dir.path().join("exit1")), "0\n");
    let before = wait_for_file(&dir.path().join("before"));
    assert_eq!(
        wait_for_file(&dir.path().join("after1")),
        before,
        "stty after q"
    );

    tmux.wait_for("second view", |s| s.contains(&backend_line));
    tmux.run(&["send-keys", "-t", "top", "C-c"]);
    assert_eq!(wait_for_file(&dir.path().join("exit2")), "0\n");
    assert_eq!(
        wait_for_file(&dir.path().join("after2")),
        before,
        "stty after Ctrl-C"
    );
    assert_eq!(tmux.flag("alternate_on"), "0", "back on the main screen");
    assert_eq!(tmux.flag("cursor_flag"), "1", "cursor shown again");
    let screen = tmux.screen();
    assert!(!screen.contains("ringproxy top"), "{screen}");
}

/// `ringproxy top ARGS` run to its exit.
fn top(args: &[&str]) -> Output {
    let mut all = vec!["top"];
    all.extend_from_slice(args);
    run_to_exit(&all, Duration::from_secs(20))
}

/// Asserts a failure with exit status 1 and exactly one line on stderr, containing `says`.
fn assert_fails_saying(out: &Output, says: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("ringproxy top: ") && stderr.contains(says),
        "{says:?} not in {stderr}"
    );
    assert!(out.stdout.is_empty());
}

/// A TCP server that answers every connection with `answer` and closes it.
fn answering(answer: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            // The request first: closing with it unread would reset the connection.
            let _ = read_head_bytes(&mut stream);
            let _ = stream.write_all(answer);
        }
    });
    addr
}

#[test]
fn top_says_in_one_line_why_it_cannot_read_the_admin_listener() {
    let unreachable = closed_port_addr().to_string();
    assert_fails_saying(
        &top(&["--admin", &unreachable, "--once"]),
        &format!("cannot reach the admin listener at {unreachable}"),
    );

    let backend = app_backend();
    let proxy = proxy_with_admin(backend.addr(), "token = \"s3cret\"");
    let admin = admin_addr(&proxy).to_string();
    assert_fails_saying(
        &top(&["--admin", &admin, "--once"]),
        "requires a token (401): give --token",
    );
    assert_fails_saying(
        &top(&["--admin", &admin, "--token", "wrong", "--once"]),
        "refused the token (401)",
    );
    let out = top(&["--admin", &admin, "--token", "s3cret", "--once"]);
    let frame = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        frame.starts_with(&format!("ringproxy top  {admin}  generation 1")),
        "{frame}"
    );
    assert!(frame.contains(&backend.addr().to_string()), "{frame}");

    let proxy = proxy_with_admin(backend.addr(), "allow = [\"10.0.0.0/8\"]");
    assert_fails_saying(
        &top(&["--admin", &admin_addr(&proxy).to_string(), "--once"]),
        "refused this client (403)",
    );

    // A web server that is not ringproxy, and something that does not speak HTTP.
    let html = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n<html>");
    assert_fails_saying(
        &top(&["--admin", &html.to_string(), "--once"]),
        "did not answer with ringproxy's /status JSON",
    );
    let ssh = answering(b"SSH-2.0-OpenSSH_9.6\r\n");
    assert_fails_saying(
        &top(&["--admin", &ssh.to_string(), "--once"]),
        "did not answer in HTTP/1.1",
    );

    // Without a terminal the live view cannot run: a usage error.
    let out = top(&["--admin", &admin]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--once prints one frame"));
}
