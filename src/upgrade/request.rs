//! `ringproxy upgrade`: signal the running process, then wait until its pid file names the
//! new one.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::READY_TIMEOUT;
use crate::pidfile::{self, check_ringproxy, upgrade_failure_path};

/// How long `ringproxy upgrade` waits: the new process's time to be ready, then time for
/// the running one to stop a new process that was not, and to say so.
pub const REQUEST_WAIT: Duration = READY_TIMEOUT.saturating_add(Duration::from_secs(15));
/// How often it looks.
const POLL: Duration = Duration::from_millis(50);

/// Asks the ringproxy process that `pid_file` names to upgrade itself (SIGUSR2), and waits
/// up to `wait` until the pid file names a new ringproxy process: the new pid (written only
/// once that process serves). `Err` says why not: what the running process left in the
/// failure file next to the pid file, or what was seen.
pub fn request(pid_file: &Path, wait: Duration) -> Result<(u32, u32), String> {
    let old = pidfile::read(pid_file)?;
    let failure = upgrade_failure_path(pid_file);
    match std::fs::remove_file(&failure) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove {}: {e}", failure.display())),
    }
    pidfile::signal_ringproxy(old, libc::SIGUSR2)?;
    let deadline = Instant::now() + wait;
    loop {
        if let Ok(new) = pidfile::read(pid_file)
            && new != old
            && check_ringproxy(new).is_ok()
        {
            return Ok((old, new));
        }
        if let Ok(reason) = std::fs::read_to_string(&failure) {
            return Err(format!("{}; pid {old} serves on", reason.trim_end()));
        }
        if let Err(gone) = check_ringproxy(old) {
            return Err(format!("{gone}, and no new process took over"));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no new process took over within {wait:?}; pid {old} serves on (its log says why)"
            ));
        }
        thread::sleep(POLL);
    }
}
