//! Listening sockets: one SO_REUSEPORT socket per worker per listener address (or those a
//! binary upgrade passed on, see `adopt`).
//!
//! SO_REUSEPORT lets every worker own its accept queue, but it also lets an unrelated process
//! that set the same option silently take a share of our connections. So before binding the
//! shared sockets we bind the address once *without* SO_REUSEPORT: if anything listens there,
//! that probe fails with EADDRINUSE and we refuse to start.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Accept queue length per socket; the kernel caps it at net.core.somaxconn.
const BACKLOG: i32 = 4096;

#[derive(Debug)]
pub enum ListenError {
    /// Another socket (another process, or another ringproxy) already listens on the address.
    InUse(SocketAddr),
    Bind(SocketAddr, io::Error),
}

impl std::fmt::Display for ListenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InUse(addr) => write!(
                f,
                "address {addr} already in use by another process (SO_REUSEPORT would split traffic with it)"
            ),
            Self::Bind(addr, err) => write!(f, "cannot listen on {addr}: {err}"),
        }
    }
}

impl std::error::Error for ListenError {}

/// The sockets for one configured listener address: at least one per worker, `sockets[i]`
/// accepted on by worker `i % workers`.
pub struct BoundListener {
    /// The address actually bound (the real port when port 0 was asked for).
    pub local_addr: SocketAddr,
    pub sockets: Vec<TcpListener>,
}

/// Binds `addr` once per worker with SO_REUSEPORT, after checking nobody else listens there.
pub fn bind_reuseport(addr: SocketAddr, workers: usize) -> Result<BoundListener, ListenError> {
    if addr.port() != 0 {
        ensure_unused(addr)?;
    }
    let first = bind_one(addr).map_err(|e| ListenError::Bind(addr, e))?;
    // With port 0 the kernel picks a port for the first socket; the rest must join that one.
    let local_addr = first.local_addr().map_err(|e| ListenError::Bind(addr, e))?;
    adopt(local_addr, vec![first], workers)
}

/// Listening sockets on `local_addr` that this process got rather than bound (from the
/// process a binary upgrade replaces: the same sockets, their queued connections
/// included), joined by new SO_REUSEPORT ones until every worker has one. No in-use probe:
/// the address is in use, by these sockets.
pub fn adopt(
    local_addr: SocketAddr,
    mut sockets: Vec<TcpListener>,
    workers: usize,
) -> Result<BoundListener, ListenError> {
    while sockets.len() < workers {
        sockets.push(bind_one(local_addr).map_err(|e| ListenError::Bind(local_addr, e))?);
    }
    Ok(BoundListener {
        local_addr,
        sockets,
    })
}

fn ensure_unused(addr: SocketAddr) -> Result<(), ListenError> {
    let probe = new_socket(addr).map_err(|e| ListenError::Bind(addr, e))?;
    probe
        .set_reuse_address(true)
        .map_err(|e| ListenError::Bind(addr, e))?;
    match probe.bind(&addr.into()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(ListenError::InUse(addr)),
        Err(e) => Err(ListenError::Bind(addr, e)),
    }
}

fn new_socket(addr: SocketAddr) -> io::Result<Socket> {
    Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = new_socket(addr)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Accepted sockets inherit TCP_NODELAY: no setsockopt per connection.
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_bind_of_same_address_is_refused() {
        let first = bind_reuseport("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        assert_eq!(first.sockets.len(), 2);
        let err = bind_reuseport(first.local_addr, 1).err().unwrap();
        assert!(matches!(err, ListenError::InUse(a) if a == first.local_addr));
    }

    #[test]
    fn accepted_connections_inherit_nodelay() {
        let bound = bind_reuseport("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let _client = std::net::TcpStream::connect(bound.local_addr).unwrap();
        bound.sockets[0].set_nonblocking(false).unwrap();
        let (accepted, _) = bound.sockets[0].accept().unwrap();
        assert!(accepted.nodelay().unwrap());
    }

    #[test]
    fn adopted_sockets_are_joined_by_new_ones_on_the_same_address() {
        let first = bind_reuseport("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let adopted = adopt(first.local_addr, first.sockets, 3).unwrap();
        assert_eq!(adopted.sockets.len(), 3);
        for socket in &adopted.sockets {
            assert_eq!(socket.local_addr().unwrap(), first.local_addr);
        }
    }

    #[test]
    fn plain_listener_blocks_us_too() {
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = other.local_addr().unwrap();
        assert!(matches!(
            bind_reuseport(addr, 1),
            Err(ListenError::InUse(_))
        ));
    }
}
