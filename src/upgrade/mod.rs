//! Zero-downtime binary upgrade: a new ringproxy process takes over the listening sockets of
//! the running one, so that no connection waiting in a listen queue is reset.
//!
//! The running process (on SIGUSR2, see `server`) starts its program again — the file at
//! the path it was started from, so a binary replaced on disk is the new version — with the
//! same arguments and one end of a Unix socket pair, named by `RINGPROXY_UPGRADE_FD`
//! (`handover`). Over it, it passes every listening socket (each worker's socket of each
//! listener, and the admin listener) with `SCM_RIGHTS` (`fds`), each described by a line
//! (`Role`). The new process takes those sockets instead of binding their addresses
//! (`takeover`), starts, and once ready (workers serving, pid file written) says so over
//! the socket. Only then does the running process stop accepting (its accepts are cancelled;
//! the sockets themselves stay open, now shared), drain and exit 0. Both accept on the same
//! sockets for a moment: the kernel gives each connection to one of them. A new process that
//! exits, or is not ready within `READY_TIMEOUT`, is stopped, and the running one serves on.
//!
//! The messages (SOCK_SEQPACKET: one send, one message):
//! - old to new: `sockets\n` and one `Role` line per attached descriptor, as many times as
//!   needed (at most `fds::MAX_PER_MESSAGE` each), then `end N\n` (N sockets in all);
//! - new to old: `ready PID\n`.
//!
//! `request` is the other side of `ringproxy upgrade`: it signals the process its pid file
//! names and waits until that file names a new one.

mod fds;
mod handover;
mod request;
mod takeover;

use std::net::SocketAddr;
use std::time::Duration;

pub use handover::{Handover, Outcome, Relaunch, start};
pub use request::{REQUEST_WAIT, request};
pub use takeover::{Inherited, Predecessor, inherit};

/// The environment variable that names, in the new process, its end of the socket pair.
pub const CHANNEL_VAR: &str = "RINGPROXY_UPGRADE_FD";

/// How long the new process has, from its start, to say that it is ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// `3 listening sockets (1 listener and the admin listener)`.
pub fn describe_sockets(sockets: usize, listeners: usize, admin: bool) -> String {
    use crate::plural::count;
    let admin = if admin { " and the admin listener" } else { "" };
    format!(
        "{} ({}{admin})",
        count(sockets, "listening socket"),
        count(listeners, "listener")
    )
}

/// What a passed socket is, as the line describing it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Socket `index` of the listener configured at `configured` (the address in the
    /// config, port 0 included), listening on `bound`.
    Listener {
        configured: SocketAddr,
        bound: SocketAddr,
        index: usize,
    },
    /// The admin listener.
    Admin {
        configured: SocketAddr,
        bound: SocketAddr,
    },
}

impl Role {
    /// The address the socket listens on.
    pub fn bound(&self) -> SocketAddr {
        match *self {
            Self::Listener { bound, .. } | Self::Admin { bound, .. } => bound,
        }
    }

    fn line(&self) -> String {
        match self {
            Self::Listener {
                configured,
                bound,
                index,
            } => format!("listener {configured} {bound} {index}"),
            Self::Admin { configured, bound } => format!("admin {configured} {bound}"),
        }
    }

    fn parse(line: &str) -> Result<Self, String> {
        let invalid = || format!("not a socket description: {line:?}");
        let words: Vec<&str> = line.split(' ').collect();
        let address = |i: usize| -> Result<SocketAddr, String> {
            words
                .get(i)
                .and_then(|w| w.parse().ok())
                .ok_or_else(invalid)
        };
        match words[..] {
            ["listener", _, _, index] => Ok(Self::Listener {
                configured: address(1)?,
                bound: address(2)?,
                index: index.parse().map_err(|_| invalid())?,
            }),
            ["admin", _, _] => Ok(Self::Admin {
                configured: address(1)?,
                bound: address(2)?,
            }),
            _ => Err(invalid()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_read_back_as_written() {
        let roles = [
            Role::Listener {
                configured: "127.0.0.1:0".parse().unwrap(),
                bound: "127.0.0.1:41234".parse().unwrap(),
                index: 3,
            },
            Role::Admin {
                configured: "[::1]:9901".parse().unwrap(),
                bound: "[::1]:9901".parse().unwrap(),
            },
        ];
        for role in roles {
            assert_eq!(Role::parse(&role.line()), Ok(role));
        }
        for bad in ["", "listener 1.2.3.4:5", "admin x y", "listener a b c d"] {
            assert!(Role::parse(bad).is_err(), "{bad:?}");
        }
    }
}
