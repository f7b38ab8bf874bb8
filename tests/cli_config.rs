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

/// Asserts the startup report: `workers` (e.g. "2 workers") ready and a listener on `addr` for `upstream`.
#[track_caller]
fn assert_ready_and_listening(lines: &[String], workers: &str, addr: SocketAddr, upstream: &str) {
    let ready = format!("ringproxy: ready ({workers})");
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
    assert_eq!(
        out.status.code(),
        Some(1),
        "ringproxy started on the taken address {addr} (SO_REUSEPORT across processes?), or \
         called a runtime failure a configuration error:\n{}",
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

const CPU_1023: &str = "[runtime]\ncpus = \"0,1023\"\n\n[[listener]]\naddress = \"127.0.0.1:0\"\n\n\
                        [upstream.app]\nbackends = [\"127.0.0.1:9000\"]\n";

/// `out` failed with exit status 2 and a line containing `wanted` (a file's errors start
/// with its whole path).
#[track_caller]
fn assert_config_error(out: &Output, wanted: &str) {
    assert_eq!(out.status.code(), Some(2), "{}", text(out));
    assert!(
        text(out).lines().any(|l| l.contains(wanted)),
        "no line containing {wanted:?} in:\n{}",
        text(out)
    );
}

#[test]
fn check_places_cpus_this_machine_does_not_have_at_their_line() {
    let out = check(CPU_1023);
    assert_config_error(
        &out,
        "/x.toml:2: runtime.cpus: cpu 1023 is not available to this process (available: ",
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
    assert_ready_and_listening(&lines, "1 worker", proxy.addr(), "default");
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
    assert_ready_and_listening(&lines, "2 workers", proxy.addr(), "default");
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
    assert_ready_and_listening(&lines, "2 workers", proxy.addr(), "app");
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

#[test]
fn start_refuses_cpus_this_machine_does_not_have_as_check_does() {
    let dir = TempDir::new();
    let path = dir.write("x.toml", CPU_1023.as_bytes());
    let out = run_to_exit(&["--config", path.to_str().unwrap()], EXIT_TIMEOUT);
    assert_config_error(
        &out,
        "/x.toml:2: runtime.cpus: cpu 1023 is not available to this process (available: ",
    );
    let out = run_to_exit(
        &["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9"]
            .into_iter()
            .chain(["--cpus", "1023"])
            .collect::<Vec<_>>(),
        EXIT_TIMEOUT,
    );
    assert_config_error(&out, "ringproxy: --cpus: cpu 1023 is not available");
}

#[test]
fn the_same_listen_address_twice_is_a_configuration_error_not_in_use() {
    let listen = closed_port_addr().to_string();
    let out = run_to_exit(
        &[
            "--listen",
            &listen,
            "--listen",
            &listen,
            "--upstream",
            "127.0.0.1:9",
        ],
        EXIT_TIMEOUT,
    );
    assert_config_error(
        &out,
        &format!("ringproxy: --listen {listen} is given twice"),
    );
    assert!(!text(&out).contains("in use"), "{}", text(&out));
}

#[test]
fn workers_flag_has_the_bounds_of_the_file() {
    for workers in ["0", "1025"] {
        let out = run_to_exit(
            &[
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                "127.0.0.1:9",
                "--workers",
                workers,
            ],
            EXIT_TIMEOUT,
        );
        assert_config_error(&out, "1..=1024");
    }
}

#[test]
fn the_same_upstream_twice_is_an_error_as_in_a_file() {
    let out = run_to_exit(
        &[
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:9",
            "--upstream",
            "127.0.0.1:9",
        ],
        EXIT_TIMEOUT,
    );
    assert_config_error(&out, "ringproxy: --upstream 127.0.0.1:9 is given twice");
}

#[test]
fn a_host_name_on_the_command_line_gets_the_hint_a_file_gets() {
    for (listen, upstream) in [
        ("127.0.0.1:0", "localhost:9000"),
        ("localhost:8080", "127.0.0.1:9"),
    ] {
        let out = run_to_exit(&["--listen", listen, "--upstream", upstream], EXIT_TIMEOUT);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            text(&out).contains("host names are not resolved"),
            "{}",
            text(&out)
        );
    }
}

#[test]
fn an_invalid_configuration_exits_2_from_flags_a_file_or_check() {
    let flags = run_to_exit(&["--listen", "127.0.0.1:0"], EXIT_TIMEOUT);
    assert_config_error(&flags, "ringproxy: give --config FILE");
    let dir = TempDir::new();
    let path = dir.write("x.toml", BAD_BACKEND.as_bytes());
    let path = path.to_str().unwrap();
    for args in [vec!["--config", path], vec!["--check", "--config", path]] {
        let out = run_to_exit(&args, EXIT_TIMEOUT);
        assert_config_error(&out, "/x.toml:10: upstream.app.backends[0]: ");
    }
}

#[test]
fn more_workers_than_cpus_warn_once_naming_the_cpu_that_carries_two() {
    let backend = Backend::echo();
    let upstream = backend.addr().to_string();
    let args = ["--listen", "127.0.0.1:0", "--upstream", &upstream];
    let proxy = Proxy::start_under(
        &["taskset", "-c", "0"],
        &[&args[..], &["--workers", "2"]].concat(),
    );
    let lines = proxy.stderr_lines();
    let warning = "ringproxy: warning: 2 workers on 1 cpu: cpu 0 carries 2 workers";
    let warnings: Vec<&String> = lines.iter().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings, [warning], "{lines:#?}");
    assert_eq!(get(proxy.addr(), "/").status, 200);
}

#[test]
fn counts_are_singular_for_one_and_plural_otherwise() {
    let out = check(&config(&["127.0.0.1:9000".parse().unwrap()], ""));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "config OK: 1 listener, 1 upstream group\n"
    );
    let out = check(
        "[[listener]]\naddress = \"127.0.0.1:0\"\nupstream = \"one\"\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\nupstream = \"two\"\n\
         [upstream.one]\nbackends = [\"127.0.0.1:9000\"]\n\
         [upstream.two]\nbackends = [\"127.0.0.1:9001\"]\n",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "config OK: 2 listeners, 2 upstream groups\n",
        "{}",
        text(&out)
    );
}

/// `git rev-parse --short HEAD` of this checkout, if it is one.
fn head_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let out = run_to_exit(&["--version"], EXIT_TIMEOUT);
    assert!(out.status.success(), "{}", text(&out));
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let prefix = concat!("ringproxy ", env!("CARGO_PKG_VERSION"));
    let wanted = match head_commit() {
        Some(commit) => vec![
            format!("{prefix} ({commit})"),
            format!("{prefix} ({commit}-dirty)"),
        ],
        None => vec![format!("{prefix} (unknown)")],
    };
    assert!(
        wanted.contains(&version),
        "{version:?} is none of {wanted:?}"
    );
}

#[test]
fn completions_print_a_script_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef ringproxy"),
        ("fish", "complete -c ringproxy"),
    ] {
        let out = run_to_exit(&["completions", shell], EXIT_TIMEOUT);
        assert!(out.status.success(), "{shell}: {}", text(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains(marker),
            "{shell}: no {marker:?} in\n{script}"
        );
        assert!(script.contains("listen"), "{shell}: --listen not completed");
    }
    let out = run_to_exit(&["completions", "tcsh"], EXIT_TIMEOUT);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn subcommands_do_not_mix_with_the_proxy_flags() {
    let out = run_to_exit(
        &["--listen", "127.0.0.1:0", "completions", "bash"],
        EXIT_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
}

#[test]
fn manpage_is_roff_with_every_flag_and_the_exit_status() {
    let out = run_to_exit(&["manpage"], EXIT_TIMEOUT);
    assert!(out.status.success(), "{}", text(&out));
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH ringproxy 1"), "{page}");
    for flag in [
        "config", "check", "listen", "upstream", "workers", "cpus", "no\\-pin",
    ] {
        let roff = format!("\\fB\\-\\-{flag}\\fR");
        assert!(page.contains(&roff), "no {roff} in\n{page}");
    }
    assert!(page.contains(".SH \"EXIT STATUS\""), "{page}");
    assert!(
        page.contains("completions"),
        "the subcommand is missing:\n{page}"
    );
}

/// Two listeners sharing the route table `main`, lines 1..=8, and its routes from line 9.
fn routes_config(routes: &str) -> String {
    format!(
        "[runtime]\nworkers = 1\npin = false\n[[listener]]\naddress = \"127.0.0.1:0\"\n\
         routes = \"main\"\n[[listener]]\naddress = \"127.0.0.1:0\"\nroutes = \"main\"\n\
         [upstream.app]\nbackends = [\"127.0.0.1:9000\"]\n{routes}"
    )
}

const ROUTES: &str = "[[routes.main.route]]\npath = \"/healthz\"\n\
                      respond = { status = 200, body = \"ok\" }\n\
                      [[routes.main.route]]\nhost = \"*.example.com\"\n\
                      redirect = { status = 308, scheme = \"https\" }\n\
                      [[routes.main.route]]\nupstream = \"app\"\n";

#[test]
fn check_accepts_route_tables_and_counts_them() {
    let out = check(&routes_config(ROUTES));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "config OK: 2 listeners, 1 upstream group, 1 route table (3 routes)\n",
        "{}",
        text(&out)
    );
}

#[test]
fn check_reports_a_route_that_can_never_match_at_its_line() {
    // Lines 12.. : route[0] /api (12-14), route[1] /api/v1 (15-17), route[2] (18-20).
    let routes = "[[routes.main.route]]\npath_prefix = \"/api\"\nupstream = \"app\"\n\
                  [[routes.main.route]]\npath_prefix = \"/api/v1\"\nupstream = \"app\"\n\
                  [[routes.main.route]]\npath = \"/x\"\nupstream = \"apps\"\n";
    let out = check(&routes_config(routes));
    assert_config_error(
        &out,
        "/x.toml:15: routes.main.route[1]: this route never matches: \
         routes.main.route[0] (line 12) comes first",
    );
    assert_error_line(&out, 20, "routes.main.route[2].upstream");
}
