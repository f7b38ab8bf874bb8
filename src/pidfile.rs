//! The pid file: written once the proxy is ready, removed when it stops, read by
//! `ringproxy reload` to find the process to signal.

use std::io;
use std::path::{Path, PathBuf};

/// A pid file this process wrote; removed on drop if it still names this process (a binary
/// upgrade's new process may have written its own pid there since).
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes this process's pid to `path` (a file replaced whole: a reader never sees half).
    pub fn write(path: &Path) -> io::Result<Self> {
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        std::fs::write(&partial, format!("{}\n", std::process::id()))?;
        std::fs::rename(&partial, path)?;
        Ok(Self { path: path.into() })
    }
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
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map_err(|_| format!("no process {pid}: is ringproxy running?"))?;
    let name = comm.trim();
    if name != "ringproxy" {
        return Err(format!(
            "process {pid} is {name:?}, not ringproxy: a stale pid file?"
        ));
    }
    let pid = i32::try_from(pid).map_err(|_| format!("no process {pid}"))?;
    // SAFETY: kill(2) takes integers and touches no memory of ours.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(format!(
            "cannot signal process {pid}: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(())
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
