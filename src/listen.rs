//! Listening sockets: one SO_REUSEPORT socket per worker per listener address.
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

/// The sockets for one configured listener address: `per_worker[i]` belongs to worker `i`.
pub struct BoundListener {
    /// The address actually bound (the real port when port 0 was asked for).
    pub local_addr: SocketAddr,
    pub per_worker: Vec<TcpListener>,
}

/// Binds `addr` once per worker with SO_REUSEPORT, after checking nobody else listens there.
pub fn bind_reuseport(addr: SocketAddr, workers: usize) -> Result<BoundListener, ListenError> {
    if addr.port() != 0 {
        ensure_unused(addr)?;
    }
    let first = bind_one(addr).map_err(|e| ListenError::Bind(addr, e))?;
    // With port 0 the kernel picks a port for the first socket; the rest must join that one.
    let local_addr = first.local_addr().map_err(|e| ListenError::Bind(addr, e))?;
    let mut per_worker = Vec::with_capacity(workers);
    per_worker.push(first);
    for _ in 1..workers {
        per_worker.push(bind_one(local_addr).map_err(|e| ListenError::Bind(local_addr, e))?);
    }
    Ok(BoundListener {
        local_addr,
        per_worker,
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
        assert_eq!(first.per_worker.len(), 2);
        let err = bind_reuseport(first.local_addr, 1).err().unwrap();
        assert!(matches!(err, ListenError::InUse(a) if a == first.local_addr));
    }

    #[test]
    fn accepted_connections_inherit_nodelay() {
        let bound = bind_reuseport("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let _client = std::net::TcpStream::connect(bound.local_addr).unwrap();
        bound.per_worker[0].set_nonblocking(false).unwrap();
        let (accepted, _) = bound.per_worker[0].accept().unwrap();
        assert!(accepted.nodelay().unwrap());
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
