//! Command line, `--check`, startup lines and startup errors.

mod common;

use common::*;
use std::net::{SocketAddr, TcpListener};
use std::process::Output;
use std::time::Duration;

const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn check(toml: &str) -> Output {
    let dir = TempDir::new();
    let path = dir.write("x.toml", toml.as_bytes());
    run_to_exit(
        &["--check", "--config", path.to_str().unwrap()],
        EXIT_TIMEOUT,
    )
}

#[track_caller]
fn assert_error_line(out: &Output, line: usize, key: &str) {
    let all = text(out);
    let wanted = format!("x.toml:{line}: {key}: ");
    assert!(
        all.lines().any(|l| l.contains(&wanted)),
        "no line containing {wanted:?} in:\n{all}"
    );
}

/// Starts ringproxy in front of `backend` from the command line: `--listen` on a free port,
/// `--upstream` the backend, then `flags`.
fn start_from_flags(backend: &Backend, flags: &[&str]) -> Proxy {
    let upstream = backend.addr().to_string();
    let mut args = vec!["--listen", "127.0.0.1:0", "--upstream", &upstream];
    args.extend_from_slice(flags);
    Proxy::start(&args)
}

#[track_caller]
fn assert_has_line_starting(lines: &[String], prefix: &str) {
    assert!(
        lines.iter().any(|l| l.starts_with(prefix)),
        "{prefix:?} missing: {lines:#?}"
    );
}

/// Asserts the startup report: `workers` workers ready and a listener on `addr` for `upstream`.
#[track_caller]
fn assert_ready_and_listening(lines: &[String], workers: usize, addr: SocketAddr, upstream: &str) {
    let ready = format!("ringproxy: ready ({workers} workers)");
    assert!(lines.contains(&ready), "{ready:?} missing: {lines:#?}");
    let listening = format!("ringproxy: listening on {addr} -> upstream \"{upstream}\"");
    assert!(
        lines.contains(&listening),
        "{listening:?} missing: {lines:#?}"
    );
}

/// Starts ringproxy listening on `addr`, which something else already holds, and asserts
/// that it refuses to start and says why.
#[track_caller]
fn assert_listen_refused(addr: &str) {
    let out = run_to_exit(
        &[
            "--listen",
            addr,
            "--upstream",
            "127.0.0.1:9",
            "--workers",
            "1",
            "--no-pin",
        ],
        EXIT_TIMEOUT,
    );
    assert!(
        !out.status.success(),
        "ringproxy started on the taken address {addr} (SO_REUSEPORT across processes?):\n{}",
        text(&out)
    );
    assert!(text(&out).contains("already in use"), "{}", text(&out));
}

#[test]
fn listen_address_used_by_another_socket_fails_with_already_in_use() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    assert_listen_refused(&taken.local_addr().unwrap().to_string());
}

#[test]
fn listen_address_used_by_another_ringproxy_fails_with_already_in_use() {
    let backend = Backend::echo();
    let first = Proxy::for_backends(&[backend.addr()]);
    assert_listen_refused(&first.addr().to_string());
    assert_eq!(get(first.addr(), "/").status, 200, "first proxy disturbed");
}

#[test]
fn check_accepts_a_good_config() {
    let out = check(
        "[runtime]\nworkers = 1\npin = false\n\n[[listener]]\naddress = \"127.0.0.1:0\"\nupstream = \"app\"\n\n\
         [upstream.app]\nbackends = [\"127.0.0.1:9000\", { address = \"127.0.0.1:9001\", weight = 2 }]\n\n\
         [timeouts]\nclient_header = \"10s\"\nclient_idle = \"60s\"\nbackend_connect = \"3s\"\n\
         backend_response = \"60s\"\nbody_idle = \"250ms\"\ndrain = \"30s\"\n\n\
         [limits]\nmax_request_line = 8192\nmax_header_bytes = 16384\nmax_headers = 100\n\n\
         [pool]\nmax_idle_per_backend = 256\nidle_timeout = \"60s\"\n\n\
         [forwarded]\nx_forwarded_for = true\nx_forwarded_proto = true\nx_forwarded_host = true\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("config OK"), "{}", text(&out));
}

#[test]
fn check_rejects_cpus_this_machine_does_not_have() {
    let out = check(
        "[runtime]\ncpus = \"0,1023\"\n\n[[listener]]\naddress = \"127.0.0.1:0\"\n\n\
         [upstream.app]\nbackends = [\"127.0.0.1:9000\"]\n",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("cpu 1023 is not available"),
        "{}",
        text(&out)
    );
}

const BAD_BACKEND: &str = "[runtime]\nworkers = 1\npin = false\n\n[[listener]]\naddress = \"127.0.0.1:0\"\n\
                           upstream = \"app\"\n\n[upstream.app]\nbackends = [\"not-an-address\"]\n";

#[test]
fn check_reports_file_line_and_key_of_a_bad_backend_address() {
    let out = check(BAD_BACKEND);
    assert!(!out.status.success());
    assert_error_line(&out, 10, "upstream.app.backends[0]");
}

#[test]
fn check_reports_file_line_and_key_of_a_bad_duration() {
    let toml = config(
        &["127.0.0.1:9000".parse().unwrap()],
        "[timeouts]\nbody_idle = \"1s\"\nclient_idle = \"soon\"\n",
    );
    let line = toml
        .lines()
        .position(|l| l.starts_with("client_idle"))
        .unwrap()
        + 1;
    let out = check(&toml);
    assert!(!out.status.success());
    assert_error_line(&out, line, "timeouts.client_idle");
}

#[test]
fn check_reports_every_error_on_its_own_line() {
    let toml = format!("{BAD_BACKEND}\n[timeouts]\ndrain = \"forever\"\n");
    let out = check(&toml);
    assert!(!out.status.success());
    assert_error_line(&out, 10, "upstream.app.backends[0]");
    assert_error_line(&out, 13, "timeouts.drain");
}

#[test]
fn check_reports_line_of_a_toml_syntax_error() {
    let out = check("[runtime]\nworkers = 1\npin = \n");
    assert!(!out.status.success());
    assert!(text(&out).contains("x.toml:3:"), "{}", text(&out));
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let out = run_to_exit(&["--config", "/nonexistent/ringproxy.toml"], EXIT_TIMEOUT);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("/nonexistent/ringproxy.toml"),
        "{}",
        text(&out)
    );
}

#[test]
fn cpus_flag_pins_worker_to_that_cpu() {
    let backend = Backend::echo();
    let proxy = start_from_flags(&backend, &["--cpus", "0"]);
    let lines = proxy.stderr_lines();
    assert_has_line_starting(&lines, "ringproxy: worker 0 on cpu 0");
    assert_ready_and_listening(&lines, 1, proxy.addr(), "default");
    assert_eq!(get(proxy.addr(), "/").status, 200);
}

#[test]
fn two_unpinned_workers_print_a_line_each_and_serve() {
    let backend = Backend::echo();
    let proxy = start_from_flags(&backend, &["--workers", "2", "--no-pin"]);
    let lines = proxy.stderr_lines();
    for w in 0..2 {
        assert_has_line_starting(&lines, &format!("ringproxy: worker {w} unpinned"));
    }
    assert_ready_and_listening(&lines, 2, proxy.addr(), "default");
    for i in 0..6 {
        assert_eq!(get(proxy.addr(), &format!("/{i}")).status, 200);
    }
}

#[test]
fn runtime_flags_override_the_config_file() {
    let backend = Backend::echo();
    let proxy = Proxy::start_with_config(
        &config(&[backend.addr()], ""),
        &["--workers", "2", "--no-pin"],
    );
    let lines = proxy.stderr_lines();
    assert_ready_and_listening(&lines, 2, proxy.addr(), "app");
}

#[test]
fn listen_and_upstream_conflict_with_config() {
    let dir = TempDir::new();
    let path = dir.write(
        "x.toml",
        config(&["127.0.0.1:9000".parse().unwrap()], "").as_bytes(),
    );
    let out = run_to_exit(
        &[
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        EXIT_TIMEOUT,
    );
    assert!(
        !out.status.success(),
        "--listen with --config accepted: {}",
        text(&out)
    );
    let out = run_to_exit(
        &[
            "--config",
            path.to_str().unwrap(),
            "--upstream",
            "127.0.0.1:1",
        ],
        EXIT_TIMEOUT,
    );
    assert!(
        !out.status.success(),
        "--upstream with --config accepted: {}",
        text(&out)
    );
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let out = run_to_exit(&["--frobnicate"], EXIT_TIMEOUT);
    assert!(!out.status.success());
    assert!(
        text(&out).to_ascii_lowercase().contains("usage"),
        "{}",
        text(&out)
    );
}

#[test]
fn two_listeners_from_config_both_serve() {
    let a = Backend::echo();
    let b = Backend::echo();
    let toml = format!(
        "[runtime]\nworkers = 1\npin = false\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\nupstream = \"one\"\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\nupstream = \"two\"\n\
         [upstream.one]\nbackends = [\"{}\"]\n[upstream.two]\nbackends = [\"{}\"]\n",
        a.addr(),
        b.addr()
    );
    let proxy = Proxy::start_with_config(&toml, &[]);
    assert_eq!(proxy.addrs().len(), 2, "{:#?}", proxy.stderr_lines());
    assert_eq!(get(proxy.addrs()[0], "/to-one").status, 200);
    assert_eq!(get(proxy.addrs()[1], "/to-two").status, 200);
    assert_eq!(a.targets(), ["/to-one"]);
    assert_eq!(b.targets(), ["/to-two"]);
}
