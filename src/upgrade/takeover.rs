//! The new process's side of an upgrade: receive the running process's listening sockets,
//! and tell it once this process is ready.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use super::{CHANNEL_VAR, Role, fds};

/// How long the new process waits for each message of the running one (which sends them
/// all at once, before anything else).
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest message: `MAX_PER_MESSAGE` lines of two IPv6 addresses and an index fit.
const MESSAGE_MAX: usize = 64 * 1024;

/// The process this one takes over from, and the socket to it.
pub struct Predecessor {
    pid: u32,
    channel: Socket,
}

impl Predecessor {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Tells the running process that this one serves: it then stops accepting, drains and
    /// exits. Keep `self` until this process exits otherwise: the socket's close is how
    /// the running process learns that this one has.
    pub fn tell_ready(&self) -> io::Result<()> {
        let ready = format!("ready {}\n", std::process::id());
        fds::send(self.channel.as_fd(), ready.as_bytes(), &[])
    }
}

/// One listener's sockets, as the running process passed them.
struct InheritedListener {
    configured: SocketAddr,
    bound: SocketAddr,
    /// By the running process's index.
    sockets: Vec<(usize, TcpListener)>,
}

/// The listening sockets passed by the running process, until they are taken.
#[derive(Default)]
pub struct Inherited {
    listeners: Vec<InheritedListener>,
    admin: Option<(SocketAddr, TcpListener)>,
}

impl Inherited {
    /// The sockets of the listener configured at `configured` (the first not taken yet,
    /// should there be several on port 0), and the address they listen on.
    pub fn take_listener(
        &mut self,
        configured: SocketAddr,
    ) -> Option<(SocketAddr, Vec<TcpListener>)> {
        let at = self
            .listeners
            .iter()
            .position(|l| l.configured == configured)?;
        let mut listener = self.listeners.remove(at);
        listener.sockets.sort_by_key(|&(index, _)| index);
        let sockets = listener.sockets.into_iter().map(|(_, s)| s).collect();
        Some((listener.bound, sockets))
    }

    /// The admin listener, if it was configured at `configured`.
    pub fn take_admin(&mut self, configured: SocketAddr) -> Option<TcpListener> {
        match self.admin.take() {
            Some((address, socket)) if address == configured => Some(socket),
            other => {
                self.admin = other;
                None
            }
        }
    }

    /// The addresses of the sockets not taken: listeners the new config does not have.
    pub fn left(&self) -> Vec<SocketAddr> {
        let listeners = self.listeners.iter().map(|l| l.bound);
        let admin = self.admin.iter().map(|(_, s)| s.local_addr().ok());
        listeners.chain(admin.flatten()).collect()
    }

    /// What was passed: `3 listening sockets (1 listener and the admin listener)`.
    pub fn describe(&self) -> String {
        let sockets: usize = self.listeners.iter().map(|l| l.sockets.len()).sum();
        let admin = self.admin.is_some();
        super::describe_sockets(sockets + usize::from(admin), self.listeners.len(), admin)
    }

    fn add(&mut self, role: Role, socket: TcpListener) -> Result<(), String> {
        match role {
            Role::Admin { configured, .. } if self.admin.is_none() => {
                self.admin = Some((configured, socket));
            }
            Role::Admin { .. } => return Err("two admin listeners passed".into()),
            Role::Listener {
                configured,
                bound,
                index,
            } => match self.listeners.iter_mut().find(|l| l.bound == bound) {
                Some(listener) => listener.sockets.push((index, socket)),
                None => self.listeners.push(InheritedListener {
                    configured,
                    bound,
                    sockets: vec![(index, socket)],
                }),
            },
        }
        Ok(())
    }
}

/// In a process started by an upgrade (`RINGPROXY_UPGRADE_FD` set): the running process
/// and the sockets it passed. `None` for a process started otherwise.
pub fn inherit() -> Result<Option<(Predecessor, Inherited)>, String> {
    let Some(value) = std::env::var_os(CHANNEL_VAR) else {
        return Ok(None);
    };
    let fd = value
        .to_str()
        .and_then(|v| v.parse::<RawFd>().ok())
        .filter(|&fd| fd > 2)
        .ok_or_else(|| format!("{CHANNEL_VAR}={value:?} is not a descriptor number"))?;
    let channel = adopt_channel(fd).map_err(|e| format!("{CHANNEL_VAR}={fd}: {e}"))?;
    let inherited = receive(&channel)?;
    let pid = std::os::unix::process::parent_id();
    Ok(Some((Predecessor { pid, channel }, inherited)))
}

/// The descriptor the running process left open for this one, checked to be a Unix
/// SOCK_SEQPACKET socket, and made close-on-exec (a later upgrade passes its own).
fn adopt_channel(fd: RawFd) -> io::Result<Socket> {
    // SAFETY: fcntl(F_GETFD) reads a descriptor's flags; it touches no memory of ours.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open, and the only owner of it in this process is what
    // takes it here: it came open from exec (nothing in this process opened it, and
    // nothing closes descriptors it does not own), and only this function takes it.
    let channel = Socket::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let kind = (channel.domain().ok(), channel.r#type().ok());
    if kind != (Some(Domain::UNIX), Some(Type::SEQPACKET)) {
        // Not ours: leave it to whoever opened it.
        std::mem::forget(channel);
        return Err(io::Error::other("not an upgrade socket"));
    }
    channel.set_cloexec(true)?;
    channel.set_read_timeout(Some(RECEIVE_TIMEOUT))?;
    Ok(channel)
}

/// Receives every socket the running process passes, each checked to be a listening TCP
/// socket on the address its line says.
fn receive(channel: &Socket) -> Result<Inherited, String> {
    let mut inherited = Inherited::default();
    let mut received = 0;
    let mut buf = vec![0u8; MESSAGE_MAX];
    loop {
        let (n, fds) = fds::recv(channel.as_fd(), &mut buf)
            .map_err(|e| format!("cannot receive the listening sockets: {e}"))?;
        if n == 0 {
            return Err("the running process closed the upgrade socket before it passed every listening socket".into());
        }
        let text = std::str::from_utf8(&buf[..n])
            .map_err(|_| "the upgrade socket carried a message that is not text".to_string())?;
        if let Some(count) = text.strip_prefix("end ") {
            if count.trim_end().parse() != Ok(received) {
                return Err(format!(
                    "{received} listening sockets received, but {text:?}"
                ));
            }
            return Ok(inherited);
        }
        let Some(lines) = text.strip_prefix("sockets\n") else {
            return Err(format!(
                "unexpected message on the upgrade socket: {text:?}"
            ));
        };
        let roles: Vec<Role> = lines.lines().map(Role::parse).collect::<Result<_, _>>()?;
        if roles.len() != fds.len() {
            return Err(format!(
                "{} sockets described, {} passed",
                roles.len(),
                fds.len()
            ));
        }
        for (role, fd) in roles.into_iter().zip(fds) {
            inherited.add(role, listening_on(fd, role.bound())?)?;
            received += 1;
        }
    }
}

/// `fd` as a TCP listener, if it is one listening on `address`.
fn listening_on(fd: OwnedFd, address: SocketAddr) -> Result<TcpListener, String> {
    let socket = Socket::from(fd);
    let bound = socket.local_addr().ok().and_then(|a| a.as_socket());
    let listening = socket.is_listener().unwrap_or(false);
    let stream = socket.r#type().ok() == Some(Type::STREAM);
    if !(listening && stream && bound == Some(address)) {
        return Err(format!(
            "the socket passed for {address} is not a TCP socket listening there"
        ));
    }
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::super::handover::Handover;
    use super::*;

    fn role(configured: &str, bound: SocketAddr, index: usize) -> Role {
        Role::Listener {
            configured: configured.parse().unwrap(),
            bound,
            index,
        }
    }

    /// Passes `handover` over a socket pair as the running process does, and receives it.
    fn pass_and_receive(handover: Handover) -> Result<Inherited, String> {
        let (ours, theirs) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None).unwrap();
        let sender = std::thread::spawn(move || {
            let far = std::time::Instant::now() + Duration::from_secs(10);
            let _ = super::super::handover::pass(&ours, &handover, far);
        });
        theirs.set_read_timeout(Some(RECEIVE_TIMEOUT)).unwrap();
        let inherited = receive(&theirs);
        sender.join().unwrap();
        inherited
    }

    #[test]
    fn listeners_are_taken_by_configured_address_with_their_sockets_in_order() {
        let a0 = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = a0.local_addr().unwrap();
        let b = TcpListener::bind("127.0.0.1:0").unwrap();
        let b_addr = b.local_addr().unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").unwrap();
        let admin_addr = admin.local_addr().unwrap();
        let mut handover = Handover::default();
        handover.push(role(&a.to_string(), a, 1), a0.try_clone().unwrap());
        handover.push(role(&a.to_string(), a, 0), a0);
        handover.push(role("127.0.0.1:0", b_addr, 0), b);
        handover.push(
            Role::Admin {
                configured: admin_addr,
                bound: admin_addr,
            },
            admin,
        );
        let mut inherited = pass_and_receive(handover).unwrap();
        assert_eq!(
            inherited.describe(),
            "4 listening sockets (2 listeners and the admin listener)"
        );
        let (bound, sockets) = inherited.take_listener(a).unwrap();
        assert_eq!((bound, sockets.len()), (a, 2));
        assert!(inherited.take_listener(a).is_none(), "taken once");
        let unused: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(inherited.take_admin(unused).is_none());
        assert_eq!(inherited.left(), [b_addr, admin_addr]);
        let port_zero = inherited.take_listener("127.0.0.1:0".parse().unwrap());
        assert_eq!(port_zero.map(|(bound, _)| bound), Some(b_addr));
        assert!(inherited.take_admin(admin_addr).is_some());
        assert!(inherited.left().is_empty());
    }

    #[test]
    fn a_socket_that_is_not_listening_where_its_line_says_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let elsewhere: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut handover = Handover::default();
        handover.push(role("127.0.0.1:1", elsewhere, 0), listener);
        let error = pass_and_receive(handover).err().unwrap();
        assert!(
            error.contains("not a TCP socket listening there"),
            "{error}"
        );
    }
}
