//! The Debian package as an operator gets it: built by `scripts/package.sh` (once per test
//! run, shared by the tests here: a release build, the slowest step of the suite), listed
//! and unpacked with dpkg-deb, its binary run, its man page rendered, its systemd unit
//! verified and its sandbox applied to the packaged binary.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const SANDBOX: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/systemd_sandbox.py"
);
const UNIT: &str = "usr/lib/systemd/system/ringproxy.service";
const CONFIG: &str = "etc/ringproxy/ringproxy.toml";

/// Every file the package must install, as `dpkg-deb --contents` lists it.
const INSTALLED: &[&str] = &[
    "./usr/bin/ringproxy",
    "./usr/lib/systemd/system/ringproxy.service",
    "./etc/ringproxy/ringproxy.toml",
    "./usr/share/man/man1/ringproxy.1.gz",
    "./usr/share/bash-completion/completions/ringproxy",
    "./usr/share/zsh/vendor-completions/_ringproxy",
    "./usr/share/fish/vendor_completions.d/ringproxy.fish",
    "./usr/share/doc/ringproxy/copyright",
    "./usr/share/doc/ringproxy/README.md",
];

struct Package {
    deb: PathBuf,
    /// Where the package is unpacked (`dpkg-deb -x`).
    root: PathBuf,
}

impl Package {
    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    fn binary(&self) -> String {
        self.path("usr/bin/ringproxy").display().to_string()
    }

    /// Runs the packaged binary with `args` to its exit.
    fn run(&self, args: &[&str]) -> Output {
        command_output(Command::new(self.binary()).args(args))
    }
}

/// The package, built and unpacked by the first test that asks; a failed build fails every
/// test that needs it, without building again.
fn package() -> &'static Package {
    static PACKAGE: OnceLock<Result<Package, String>> = OnceLock::new();
    match PACKAGE.get_or_init(build_package) {
        Ok(package) => package,
        Err(error) => panic!("{error}"),
    }
}

fn build_package() -> Result<Package, String> {
    let started = Instant::now();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/package.sh");
    let built = command_output(Command::new("bash").arg(&script));
    if !built.status.success() {
        return Err(format!("scripts/package.sh failed:\n{}", text(&built)));
    }
    eprintln!("scripts/package.sh took {:?}", started.elapsed());
    let stdout = String::from_utf8_lossy(&built.stdout);
    let deb = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    if deb.extension().is_none_or(|e| e != "deb") || !deb.is_file() {
        return Err(format!(
            "no .deb named last by package.sh:\n{}",
            text(&built)
        ));
    }
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("package-root");
    let _ = std::fs::remove_dir_all(&root);
    let unpacked = command_output(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    if !unpacked.status.success() {
        return Err(format!("dpkg-deb -x failed:\n{}", text(&unpacked)));
    }
    Ok(Package { deb, root })
}

fn command_output(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[track_caller]
fn stdout_of(out: &Output) -> String {
    assert!(out.status.success(), "{}", text(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_package_installs_every_file_keeps_the_config_and_stops_the_service_on_removal() {
    let package = package();
    let listing = stdout_of(&command_output(
        Command::new("dpkg-deb").arg("--contents").arg(&package.deb),
    ));
    let paths: Vec<&str> = listing
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .collect();
    for wanted in INSTALLED {
        assert!(paths.contains(wanted), "{wanted} missing from:\n{listing}");
    }
    let conffiles = stdout_of(&command_output(
        Command::new("dpkg-deb")
            .args(["--info"])
            .arg(&package.deb)
            .arg("conffiles"),
    ));
    assert_eq!(conffiles.trim(), "/etc/ringproxy/ringproxy.toml");
    // Removing the package stops the service before its binary goes.
    let prerm = stdout_of(&command_output(
        Command::new("dpkg-deb")
            .arg("--info")
            .arg(&package.deb)
            .arg("prerm"),
    ));
    assert!(
        prerm.contains("deb-systemd-invoke stop ringproxy.service"),
        "{prerm}"
    );
    let license = std::fs::read_to_string(package.path("usr/share/doc/ringproxy/copyright"))
        .unwrap_or_default();
    assert!(license.contains("Apache"), "{license}");
}

#[test]
fn the_packaged_binary_names_its_commit_and_accepts_the_installed_config() {
    let package = package();
    let version = stdout_of(&package.run(&["--version"]));
    let commit = command_output(Command::new("git").args([
        "-C",
        env!("CARGO_MANIFEST_DIR"),
        "rev-parse",
        "--short",
        "HEAD",
    ]));
    let commit = stdout_of(&commit);
    let wanted = format!("ringproxy {} ({}", env!("CARGO_PKG_VERSION"), commit.trim());
    assert!(
        version.starts_with(&wanted),
        "{version:?} is not {wanted}..."
    );

    let config = package.path(CONFIG).display().to_string();
    let check = package.run(&["--check", "--config", &config]);
    assert_eq!(
        stdout_of(&check),
        "config OK: 1 listener, 1 upstream group\n"
    );
    let installed = std::fs::read_to_string(package.path(CONFIG)).unwrap_or_default();
    assert!(
        installed.contains("address = \"127.0.0.1:8080\""),
        "the installed config should listen on loopback until edited:\n{installed}"
    );
}

#[test]
fn the_packaged_completions_are_what_the_binary_prints() {
    let package = package();
    for (shell, file) in [
        ("bash", "usr/share/bash-completion/completions/ringproxy"),
        ("zsh", "usr/share/zsh/vendor-completions/_ringproxy"),
        ("fish", "usr/share/fish/vendor_completions.d/ringproxy.fish"),
    ] {
        let printed = stdout_of(&package.run(&["completions", shell]));
        assert!(printed.contains("listen"), "{shell}:\n{printed}");
        let packaged = std::fs::read_to_string(package.path(file)).unwrap_or_default();
        assert_eq!(packaged, printed, "{file}");
    }
}

#[test]
fn the_man_page_renders_with_every_flag() {
    let package = package();
    let page = package.path("usr/share/man/man1/ringproxy.1.gz");
    let roff = stdout_of(&command_output(Command::new("zcat").arg(&page)));
    assert!(roff.contains(".TH ringproxy 1"), "{roff}");
    assert!(roff.contains("\\-\\-listen"), "{roff}");
    // man-db renders it as `man ringproxy` would; groff's warnings (-ww) go to stderr.
    let rendered = command_output(
        Command::new("man")
            .args(["--warnings=w", "-l"])
            .arg(&page)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100"),
    );
    let shown = stdout_of(&rendered);
    let stderr = String::from_utf8_lossy(&rendered.stderr);
    assert!(stderr.trim().is_empty(), "man warned:\n{stderr}");
    for wanted in [
        "--listen",
        "--upstream",
        "--config",
        "EXIT STATUS",
        "completions",
    ] {
        assert!(shown.contains(wanted), "{wanted:?} not in:\n{shown}");
    }
}

#[test]
fn the_systemd_unit_verifies() {
    let package = package();
    // systemd-analyze verify needs ExecStart's binary to exist: point it at the unpacked one.
    let unit = std::fs::read_to_string(package.path(UNIT)).unwrap_or_default();
    assert!(
        unit.contains("ExecStart=/usr/bin/ringproxy --config /etc/ringproxy/ringproxy.toml"),
        "{unit}"
    );
    let dir = TempDir::new();
    let local = unit.replace("/usr/bin/ringproxy", &package.binary());
    let path = dir.write("ringproxy.service", local.as_bytes());
    let out = command_output(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path),
    );
    // Lines about the unit are its errors (an unknown key or a bad value is only a warning
    // to systemd-analyze); anything else is this machine not running systemd.
    let report = text(&out);
    let about_unit: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("ringproxy.service"))
        .collect();
    assert!(
        out.status.success() && about_unit.is_empty(),
        "systemd-analyze verify:\n{report}"
    );
}

/// Starts the packaged binary under the unit's seccomp settings plus `extra` (unit lines,
/// e.g. `SystemCallFilter=~@aio`), in front of `backend`: one worker, pinned to the first
/// cpu it may use.
fn start_sandboxed(package: &Package, extra: &[&str], backend: &Backend) -> Result<Proxy, String> {
    let unit = package.path(UNIT).display().to_string();
    let mut wrapper = vec!["python3", SANDBOX, &unit];
    wrapper.extend_from_slice(extra);
    wrapper.push("--");
    let upstream = backend.addr().to_string();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
        "--cpus",
        "0",
    ];
    Proxy::try_start_binary_under(&package.binary(), &wrapper, &args)
}

#[test]
fn the_units_system_call_filter_lets_io_uring_start_and_serve() {
    let package = package();
    let backend = Backend::echo();
    let proxy = start_sandboxed(package, &[], &backend)
        .unwrap_or_else(|e| panic!("under the unit's sandbox: {e}"));
    let lines = proxy.stderr_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ringproxy: worker 0 on cpu ") && l.contains("io_uring driver")),
        "{lines:#?}"
    );
    assert_eq!(get(proxy.addr(), "/sandboxed").status, 200);
}

/// The sandbox is real: the filters the unit must not have stop ringproxy as the unit's
/// comments say.
#[test]
fn without_aio_io_uring_is_refused_and_without_resources_pinning_is() {
    let package = package();
    let backend = Backend::echo();
    for (extra, wanted) in [
        ("SystemCallFilter=~@aio", "io_uring is unavailable"),
        (
            "SystemCallFilter=~@resources",
            "cannot pin worker 0 to cpu ",
        ),
    ] {
        match start_sandboxed(package, &[extra], &backend) {
            Ok(proxy) => panic!("{extra}: started: {:#?}", proxy.stderr_lines()),
            Err(error) => assert!(
                error.contains("exit status: 1") && error.contains(wanted),
                "{extra}: {error}"
            ),
        }
    }
}

/// The unit's seccomp settings allow a binary upgrade: the socket pair, passing descriptors,
/// close_range and exec; the new process runs under the same filter (it is inherited).
#[test]
fn under_the_units_sandbox_a_binary_upgrade_hands_over() {
    become_subreaper();
    let package = package();
    let backend = Backend::echo();
    let mut proxy = start_sandboxed(package, &[], &backend)
        .unwrap_or_else(|e| panic!("under the unit's sandbox: {e}"));
    proxy.signal("USR2");
    let deadline = Instant::now() + Duration::from_secs(20);
    let new: u32 = loop {
        let lines = proxy.stderr_lines();
        let handed_over = lines.iter().find_map(|l| {
            l.strip_prefix("ringproxy: upgrade: pid ")?
                .strip_suffix(" serves; this process stops accepting, drains and exits")?
                .parse()
                .ok()
        });
        if let Some(pid) = handed_over {
            break pid;
        }
        assert!(Instant::now() < deadline, "no handover: {lines:#?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let old = proxy.wait_exit(Duration::from_secs(20));
    assert!(old.is_some_and(|s| s.success()), "the old process: {old:?}");
    assert_eq!(get(proxy.addr(), "/upgraded").status, 200);
    kill_pid(new, libc::SIGTERM);
    assert_eq!(reap(new, Duration::from_secs(20)), Ok(Some(0)));
}
