//! The pid file: written once the proxy is ready, removed when it stops, read by
//! `ringproxy reload` and `ringproxy upgrade` to find the process to signal.

use std::io;
use std::path::{Path, PathBuf};

/// A pid file this process wrote; removed on drop if it still names this process (a binary
/// upgrade's new process may have written its own pid there since).
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes this process's pid to `path`.
    pub fn write(path: &Path) -> io::Result<Self> {
        write_own_pid(path)?;
        Ok(Self { path: path.into() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes this process's pid again if the file names another (a new process of a binary
    /// upgrade that failed after it wrote its own).
    pub fn reclaim(&self) -> io::Result<()> {
        if read(&self.path).ok() == Some(std::process::id()) {
            return Ok(());
        }
        write_own_pid(&self.path)
    }
}

/// Writes this process's pid to `path`, replacing the file whole (a reader never sees half;
/// the two processes of an upgrade never write the same partial file).
fn write_own_pid(path: &Path) -> io::Result<()> {
    let pid = std::process::id();
    let mut partial = path.as_os_str().to_owned();
    partial.push(format!(".{pid}.partial"));
    std::fs::write(&partial, format!("{pid}\n"))?;
    std::fs::rename(&partial, path)
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if read(&self.path).ok() == Some(std::process::id()) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The pid a pid file names.
pub fn read(path: &Path) -> Result<u32, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read pid file {}: {e}", path.display()))?;
    text.trim()
        .parse::<u32>()
        .ok()
        .filter(|&pid| pid > 0 && i32::try_from(pid).is_ok())
        .ok_or_else(|| {
            format!(
                "pid file {} holds no pid: {:?}",
                path.display(),
                text.trim()
            )
        })
}

/// Sends `signal` to the ringproxy process `pid`, after checking that it is one (a stale pid
/// file may name another program by now).
pub fn signal_ringproxy(pid: u32, signal: i32) -> Result<(), String> {
    check_ringproxy(pid)?;
    send_signal(pid, signal).map_err(|e| format!("cannot signal process {pid}: {e}"))
}

/// Whether `pid` is a running ringproxy process (not one that has exited and awaits its
/// parent, and not another program that got the number since).
pub fn check_ringproxy(pid: u32) -> Result<(), String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|_| format!("no process {pid}: is ringproxy running?"))?;
    // `PID (COMM) STATE ...`: the name may hold spaces and parentheses, the state follows
    // the last `)`.
    let (name, state) = stat
        .split_once('(')
        .and_then(|(_, rest)| rest.rsplit_once(')'))
        .map(|(name, rest)| (name, rest.trim_start().chars().next()))
        .ok_or_else(|| format!("cannot read /proc/{pid}/stat"))?;
    if name != "ringproxy" {
        return Err(format!(
            "process {pid} is {name:?}, not ringproxy: a stale pid file?"
        ));
    }
    if matches!(state, Some('Z' | 'X')) {
        return Err(format!("no process {pid}: it has exited"));
    }
    Ok(())
}

/// Sends `signal` to process `pid`.
pub fn send_signal(pid: u32, signal: i32) -> io::Result<()> {
    let pid = i32::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::NotFound))?;
    // SAFETY: kill(2) takes integers and touches no memory of ours.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Where the running process leaves the reason a binary upgrade failed, next to its pid
/// file, for `ringproxy upgrade` to report.
pub fn upgrade_failure_path(pid_file: &Path) -> PathBuf {
    let mut path = pid_file.as_os_str().to_owned();
    path.push(".upgrade-failed");
    path.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_read_and_removed_only_while_it_is_ours() {
        let dir = std::env::temp_dir().join(format!("ringproxy-pid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ringproxy.pid");
        let file = PidFile::write(&path).unwrap();
        assert_eq!(read(&path), Ok(std::process::id()));
        drop(file);
        assert!(!path.exists());
        let file = PidFile::write(&path).unwrap();
        std::fs::write(&path, "1\n").unwrap();
        drop(file);
        assert_eq!(read(&path), Ok(1), "another process's pid stays");
        std::fs::write(&path, "nonsense").unwrap();
        assert!(read(&path).unwrap_err().contains("holds no pid"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
