//! The running process's side of an upgrade: start the new process, pass it the listening
//! sockets, wait (bounded) until it is ready.

use std::ffi::{OsStr, OsString};
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use super::{CHANNEL_VAR, Role, fds};
use crate::pidfile::send_signal;

/// How long a new process that closed its end of the socket may take to be gone.
const EXIT_WAIT: Duration = Duration::from_secs(5);
/// How often a wait for a process to exit looks.
const EXIT_POLL: Duration = Duration::from_millis(20);

/// How to start this program again, recorded when it started: the path it was run from
/// and its arguments. The path as it was typed (made absolute), not `/proc/self/exe`: a
/// package manager that replaces the file leaves `/proc/self/exe` naming the deleted one,
/// and a deploy that switches a symlink leaves it naming the old target; the path names the
/// new version in both cases.
#[derive(Debug, Clone)]
pub struct Relaunch {
    program: Result<PathBuf, String>,
    args: Vec<OsString>,
}

impl Relaunch {
    pub fn record() -> Self {
        let mut args = std::env::args_os();
        let typed = args.next().and_then(|argv0| {
            let path = std::env::var_os("PATH").unwrap_or_default();
            typed_path(&argv0, &path, std::env::current_dir().ok()?)
        });
        let program = match typed {
            Some(program) => Ok(program),
            None => std::env::current_exe().map_err(|e| e.to_string()),
        };
        Self {
            program,
            args: args.collect(),
        }
    }

    fn command(&self) -> Result<(Command, String), String> {
        let program = self
            .program
            .as_ref()
            .map_err(|e| format!("the path of this program is unknown ({e})"))?;
        let mut command = Command::new(program);
        command.args(&self.args);
        Ok((command, program.display().to_string()))
    }
}

/// The executable file `argv0` named when this process started, as an absolute path:
/// relative to `cwd` if it holds a `/`, else found in `path` as a shell would. `None` if it
/// names no executable file (it is only a convention).
fn typed_path(argv0: &OsStr, path: &OsStr, cwd: PathBuf) -> Option<PathBuf> {
    let executable = |candidate: &Path| {
        candidate
            .metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let named = Path::new(argv0);
    if named.as_os_str().as_bytes().contains(&b'/') {
        let absolute = cwd.join(named);
        return executable(&absolute).then_some(absolute);
    }
    std::env::split_paths(path)
        .map(|dir| cwd.join(dir).join(named))
        .find(|candidate| executable(candidate))
}

/// The listening sockets a running process passes on, each with what it is.
#[derive(Default)]
pub struct Handover {
    sockets: Vec<(Role, TcpListener)>,
}

impl Handover {
    pub fn push(&mut self, role: Role, socket: TcpListener) {
        self.sockets.push((role, socket));
    }

    /// What it holds: `3 listening sockets (1 listener and the admin listener)`.
    pub fn describe(&self) -> String {
        let listeners = self
            .sockets
            .iter()
            .filter(|(role, _)| matches!(role, Role::Listener { index: 0, .. }))
            .count();
        let admin = self
            .sockets
            .iter()
            .any(|(role, _)| matches!(role, Role::Admin { .. }));
        super::describe_sockets(self.sockets.len(), listeners, admin)
    }
}

/// How an upgrade ended, as the running process learns it.
#[derive(Debug)]
pub enum Outcome {
    /// Process `pid` serves on the sockets: the running one is to drain and exit.
    Ready { pid: u32 },
    /// The new process `pid` is gone (stopped if it had to be); the running one serves on.
    Failed { pid: u32, reason: String },
}

/// Starts the new process with `handover`'s sockets and returns its pid. A thread of its
/// own passes the sockets and waits until the new process is ready, it exits, or `ready`
/// has passed; a process that has to be stopped gets SIGTERM, and `stop_wait` to drain
/// before SIGKILL. Then `report` is called (on that thread) with the outcome.
pub fn start(
    relaunch: &Relaunch,
    handover: Handover,
    ready: Duration,
    stop_wait: Duration,
    report: impl FnOnce(Outcome) + Send + 'static,
) -> Result<u32, String> {
    let (mut command, program) = relaunch.command()?;
    let (ours, theirs) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None)
        .map_err(|e| format!("cannot make the upgrade socket: {e}"))?;
    command.env(CHANNEL_VAR, theirs.as_raw_fd().to_string());
    inherit_only(&mut command, theirs.as_raw_fd())
        .map_err(|e| format!("cannot read the open-file limit: {e}"))?;
    let (spawned_tx, spawned) = mpsc::sync_channel(1);
    let follow = move || {
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                let _ = spawned_tx.send(Err(format!("cannot start {program}: {e}")));
                return;
            }
        };
        drop(theirs);
        let _ = spawned_tx.send(Ok(child.id()));
        report(follow(child, &ours, handover, ready, stop_wait));
    };
    thread::Builder::new()
        .name("ringproxy-upgrade".into())
        .spawn(follow)
        .map_err(|e| format!("cannot start the upgrade thread: {e}"))?;
    spawned
        .recv()
        .map_err(|_| "the upgrade thread ended early".to_string())?
}

/// The new process must inherit only its end of the socket pair: the running process's
/// client connections are not close-on-exec (io_uring's accept sets no flags), and a copy
/// of one in the new process would keep it open after the running process closed it, so
/// that its client never saw the close.
fn inherit_only(command: &mut Command, keep: RawFd) -> io::Result<()> {
    let limit = crate::fdlimit::soft_limit()?;
    let below = RawFd::try_from(limit).unwrap_or(RawFd::MAX);
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed: it makes system calls on descriptor numbers and
    // nothing else (no allocation, no lock).
    unsafe { command.pre_exec(move || close_on_exec_all_but(keep, below)) };
    Ok(())
}

/// Marks every descriptor from 3 up, but `keep`, close-on-exec, and `keep` not.
fn close_on_exec_all_but(keep: RawFd, below: RawFd) -> io::Result<()> {
    // SAFETY: close_range(2) and fcntl(2) take integers and touch no memory of ours.
    unsafe {
        let all = libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        if all != 0 {
            // Before Linux 5.11 (or a filter that refuses close_range): one by one.
            for fd in 3..below {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        if libc::fcntl(keep, libc::F_SETFD, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Why the new process did not become ready.
pub(super) enum Hitch {
    /// Its end of the socket closed: it has exited.
    Gone,
    /// Not ready in time (or not reading the sockets in time).
    Late,
    Socket(io::Error),
}

impl From<io::Error> for Hitch {
    fn from(error: io::Error) -> Self {
        if matches!(
            error.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            return Self::Late;
        }
        match error.raw_os_error() {
            Some(libc::EPIPE | libc::ECONNRESET) => Self::Gone,
            _ => Self::Socket(error),
        }
    }
}

fn follow(
    mut child: Child,
    channel: &Socket,
    handover: Handover,
    ready: Duration,
    stop_wait: Duration,
) -> Outcome {
    let pid = child.id();
    let deadline = Instant::now() + ready;
    let result = pass(channel, &handover, deadline).and_then(|()| wait_ready(channel, deadline));
    drop(handover);
    let reason = match result {
        Ok(ready_pid) => return Outcome::Ready { pid: ready_pid },
        Err(Hitch::Gone) => {
            let status = wait_exit(&mut child, EXIT_WAIT).unwrap_or_else(|| kill(&mut child));
            format!("the new process (pid {pid}) exited with {status} before it was ready")
        }
        Err(Hitch::Late) => {
            let status = stop(&mut child, stop_wait);
            format!(
                "the new process (pid {pid}) did not report ready within {ready:?}; stopped ({status})"
            )
        }
        Err(Hitch::Socket(e)) => {
            let status = stop(&mut child, stop_wait);
            format!(
                "the upgrade socket failed ({e}); the new process (pid {pid}) was stopped ({status})"
            )
        }
    };
    Outcome::Failed { pid, reason }
}

/// Sends the sockets, `fds::MAX_PER_MESSAGE` at a time, then the count.
pub(super) fn pass(channel: &Socket, handover: &Handover, deadline: Instant) -> Result<(), Hitch> {
    for batch in handover.sockets.chunks(fds::MAX_PER_MESSAGE) {
        let mut text = String::from("sockets\n");
        for (role, _) in batch {
            text += &role.line();
            text.push('\n');
        }
        let attached: Vec<BorrowedFd<'_>> = batch.iter().map(|(_, s)| s.as_fd()).collect();
        channel.set_write_timeout(Some(left(deadline)?))?;
        fds::send(channel.as_fd(), text.as_bytes(), &attached)?;
    }
    channel.set_write_timeout(Some(left(deadline)?))?;
    let end = format!("end {}\n", handover.sockets.len());
    fds::send(channel.as_fd(), end.as_bytes(), &[])?;
    Ok(())
}

/// Waits for `ready PID`; returns PID.
fn wait_ready(channel: &Socket, deadline: Instant) -> Result<u32, Hitch> {
    let mut buf = [0u8; 64];
    channel.set_read_timeout(Some(left(deadline)?))?;
    let (n, _) = fds::recv(channel.as_fd(), &mut buf)?;
    if n == 0 {
        return Err(Hitch::Gone);
    }
    let text = String::from_utf8_lossy(&buf[..n]);
    text.trim_end()
        .strip_prefix("ready ")
        .and_then(|pid| pid.parse().ok())
        .ok_or_else(|| Hitch::Socket(io::Error::other(format!("unexpected message {text:?}"))))
}

/// The time left until `deadline` (a socket timeout of zero would mean none).
fn left(deadline: Instant) -> Result<Duration, Hitch> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Hitch::Late);
    }
    Ok(left)
}

/// SIGTERM (a ringproxy drains), then SIGKILL after `wait`; how it ended.
fn stop(child: &mut Child, wait: Duration) -> String {
    if send_signal(child.id(), libc::SIGTERM).is_ok()
        && let Some(status) = wait_exit(child, wait)
    {
        return status;
    }
    kill(child)
}

fn kill(child: &mut Child) -> String {
    let _ = child.kill();
    match child.wait() {
        Ok(status) => status.to_string(),
        Err(e) => format!("not reaped: {e}"),
    }
}

/// Waits up to `wait` for `child` to exit; how it ended.
fn wait_exit(child: &mut Child, wait: Duration) -> Option<String> {
    let deadline = Instant::now() + wait;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status.to_string()),
            Ok(None) if Instant::now() < deadline => thread::sleep(EXIT_POLL),
            Ok(None) | Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str) -> Relaunch {
        Relaunch {
            program: Ok("/bin/sh".into()),
            args: vec!["-c".into(), script.into()],
        }
    }

    fn run(relaunch: &Relaunch, ready: Duration) -> (u32, Outcome) {
        let (tx, rx) = mpsc::channel();
        let mut handover = Handover::default();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let bound = listener.local_addr().unwrap();
        handover.push(
            Role::Listener {
                configured: bound,
                bound,
                index: 0,
            },
            listener,
        );
        let report = move |outcome| tx.send(outcome).unwrap();
        let pid = start(relaunch, handover, ready, Duration::from_secs(2), report).unwrap();
        (pid, rx.recv_timeout(Duration::from_secs(20)).unwrap())
    }

    #[test]
    fn a_new_process_that_exits_is_reported_with_its_status() {
        let (pid, outcome) = run(&shell("exit 3"), Duration::from_secs(10));
        match outcome {
            Outcome::Failed {
                pid: failed,
                reason,
            } => {
                assert_eq!(failed, pid);
                assert!(
                    reason.ends_with("exited with exit status: 3 before it was ready"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_new_process_not_ready_in_time_is_stopped() {
        let (pid, outcome) = run(&shell("exec sleep 30"), Duration::from_millis(300));
        match outcome {
            Outcome::Failed { reason, .. } => assert!(
                reason.contains("did not report ready within 300ms; stopped (signal: 15"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} is still there"
        );
    }

    #[test]
    fn the_new_process_gets_only_its_socket_and_the_variable_naming_it() {
        // A descriptor of ours that is not close-on-exec, like an accepted client's.
        let stray = TcpListener::bind("127.0.0.1:0").unwrap();
        let stray_fd = stray.as_raw_fd();
        // SAFETY: fcntl on a descriptor we own.
        unsafe { libc::fcntl(stray_fd, libc::F_SETFD, 0) };
        let script = format!(
            "test -e /proc/self/fd/\"${CHANNEL_VAR}\" || exit 4; \
             test -e /proc/self/fd/{stray_fd} && exit 5; exit 6"
        );
        let (_, outcome) = run(&shell(&script), Duration::from_secs(10));
        match outcome {
            Outcome::Failed { reason, .. } => {
                assert!(reason.contains("exit status: 6"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_program_is_the_path_as_typed_made_absolute() {
        let dir = std::env::temp_dir().join(format!("ringproxy-relaunch-{}", std::process::id()));
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let program = bin.join("ringproxy");
        std::fs::write(&program, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A symlink switched by a deploy: the link's path, not its target, is kept.
        let link = dir.join("current");
        std::os::unix::fs::symlink(&program, &link).unwrap();
        let typed =
            |argv0: &str, path: &str| typed_path(OsStr::new(argv0), OsStr::new(path), dir.clone());
        assert_eq!(typed("bin/ringproxy", ""), Some(program.clone()));
        assert_eq!(typed(link.to_str().unwrap(), ""), Some(link.clone()));
        assert_eq!(
            typed("ringproxy", "/nonexistent:bin"),
            Some(program.clone())
        );
        assert_eq!(typed("ringproxy", "/nonexistent"), None);
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(typed("bin/ringproxy", ""), None, "not executable");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_program_that_cannot_start_is_an_error_at_once() {
        let relaunch = Relaunch {
            program: Ok("/nonexistent/ringproxy".into()),
            args: Vec::new(),
        };
        let started = start(
            &relaunch,
            Handover::default(),
            Duration::from_secs(1),
            Duration::from_secs(1),
            |_| {},
        );
        let error = started.unwrap_err();
        assert!(
            error.starts_with("cannot start /nonexistent/ringproxy:"),
            "{error}"
        );
    }
}
