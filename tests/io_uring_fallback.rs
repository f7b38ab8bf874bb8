//! Where io_uring is unavailable (a container's seccomp profile, `io_uring_disabled`),
//! ringproxy says so and exits, or runs on epoll with a warning when allowed to.
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;
use std::process::Command;

const NO_IO_URING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/no_io_uring.py");

#[test]
fn without_io_uring_it_exits_with_one_clear_line() {
    let out = Command::new("python3")
        .args([
            NO_IO_URING,
            &bin(),
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:9",
        ])
        .args(["--workers", "1", "--no-pin"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("io_uring is unavailable"), "{stderr}");
    assert!(stderr.contains("--allow-epoll"), "{stderr}");
}

#[test]
fn allow_epoll_falls_back_with_a_warning_and_serves() {
    let backend = Backend::echo();
    let upstream = backend.addr().to_string();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
        "--workers",
        "1",
        "--no-pin",
    ];
    let proxy = Proxy::start_under(
        &["python3", NO_IO_URING],
        &[&args[..], &["--allow-epoll"]].concat(),
    );
    let log = proxy.stderr_lines().join("\n");
    assert!(
        log.contains("WARNING") && log.contains("falling back to epoll"),
        "{log}"
    );
    assert!(log.contains("epoll driver (fallback)"), "{log}");
    assert_eq!(get(proxy.addr(), "/via-epoll").status, 200);
}
