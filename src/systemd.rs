//! systemd's readiness protocol (`Type=notify`, sd_notify(3)): one datagram to the Unix
//! socket `$NOTIFY_SOCKET` names, with `KEY=VALUE` lines. ringproxy says `READY=1` once it
//! serves, and `MAINPID=` with its own pid, so that after a binary upgrade systemd follows
//! the new process (the unit needs `NotifyAccess=all` to take that from a process that is
//! not the main one yet).

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` to systemd; `Ok(false)` when not run by systemd with a notify socket.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    // `@name`: a socket in the abstract namespace.
    let address = match path.as_bytes().strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(&path)?,
    };
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(state.as_bytes(), &address)?;
    Ok(true)
}

/// This process serves: `READY=1`, and that it is the service's main process.
pub fn notify_ready(status: &str) {
    let pid = std::process::id();
    tell(&format!("READY=1\nMAINPID={pid}\nSTATUS={status}\n"));
}

/// This process is the service's main process again (a binary upgrade failed after the new
/// process said it was).
pub fn notify_main_pid() {
    tell(&format!("MAINPID={}\n", std::process::id()));
}

/// This process is stopping (not after a binary upgrade: the service goes on).
pub fn notify_stopping() {
    tell("STOPPING=1\n");
}

fn tell(state: &str) {
    if let Err(e) = notify(state) {
        crate::log_warn!("cannot notify systemd ($NOTIFY_SOCKET): {e}");
    }
}
