//! A backend connection: plain TCP, or TLS for a group with `[upstream.NAME.tls]`.
//!
//! An enum rather than a type parameter of the exchange: the choice is made per group at run
//! time, and one pool, one exchange and one tunnel serve both. The plain arm comes first and
//! holds the `TcpStream` itself; the TLS arm is boxed, so the enum, the `Upstream` the
//! exchange holds and its futures stay as small as the plain socket's (a connection's task is
//! most of what an idle client costs: see `proxy::serve_connection`). Where a keep-alive
//! request writes and reads its backend, the exchange matches the arm itself, so a plain
//! backend runs the very code a plain client connection does (perf/RESULTS.md, 2026-12-07:
//! through this type's own reads and writes the plain path cost 1.2% to 2.9% more
//! instructions); bodies and tunnels go through the traits implemented here.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use monoio::BufResult;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::net::TcpStream;
use rustls::ClientConnection;

use crate::tls::TlsStream;

pub enum BackendStream {
    Plain(TcpStream),
    Tls(Box<TlsBackend>),
}

/// A TLS connection to a backend, with what it was verified with.
pub struct TlsBackend {
    pub stream: TlsStream<ClientConnection>,
    /// The backend's TLS identity when the connection was made (`tls::BackendTlsName`): the
    /// pool keeps it only while the backend's current one is the same.
    pub identity: u64,
    /// Where a TLS failure on the connection is told (an alert the backend sends after the
    /// handshake, such as a client certificate it requires and did not get).
    pub log: Rc<TlsFailureLog>,
}

thread_local! {
    /// Backend connections this thread has closed. A connection ends in many places (a
    /// response that closes it, an error on any path, the pool's eviction, a reload, a
    /// worker's exit); dropping it is the one step they share, so the count is kept here and
    /// the worker's timer sweep publishes it (`ringproxy_backend_connections_closed_total`).
    static CLOSED: Cell<u64> = const { Cell::new(0) };
}

/// Backend connections closed on this thread so far.
pub fn closed_on_this_thread() -> u64 {
    CLOSED.with(Cell::get)
}

impl Drop for BackendStream {
    fn drop(&mut self) {
        CLOSED.with(|closed| closed.set(closed.get() + 1));
    }
}

impl BackendStream {
    /// The TLS identity the connection was made with; `None` for plain TCP.
    #[inline]
    pub fn tls_identity(&self) -> Option<u64> {
        match self {
            Self::Plain(_) => None,
            Self::Tls(tls) => Some(tls.identity),
        }
    }
}

impl AsRawFd for BackendStream {
    /// The socket's: what the exchange's deadlines (`crate::conns`) shut.
    #[inline]
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Self::Plain(tcp) => tcp.as_raw_fd(),
            Self::Tls(tls) => tls.stream.as_raw_fd(),
        }
    }
}

impl AsyncReadRent for BackendStream {
    #[inline]
    fn read<T: IoBufMut>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        match self {
            Self::Plain(tcp) => Dispatch::Plain(tcp.read(buf)),
            Self::Tls(tls) => Dispatch::Tls(Box::pin(tls.read(buf))),
        }
    }

    #[inline]
    fn readv<T: IoVecBufMut>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        match self {
            Self::Plain(tcp) => Dispatch::Plain(tcp.readv(buf)),
            Self::Tls(tls) => Dispatch::Tls(Box::pin(tls.readv(buf))),
        }
    }
}

impl AsyncWriteRent for BackendStream {
    #[inline]
    fn write<T: IoBuf>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        match self {
            Self::Plain(tcp) => Dispatch::Plain(tcp.write(buf)),
            Self::Tls(tls) => Dispatch::Tls(Box::pin(tls.stream.write(buf))),
        }
    }

    #[inline]
    fn writev<T: IoVecBuf>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        match self {
            Self::Plain(tcp) => Dispatch::Plain(tcp.writev(buf)),
            Self::Tls(tls) => Dispatch::Tls(Box::pin(tls.stream.writev(buf))),
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(tcp) => tcp.flush().await,
            Self::Tls(tls) => Box::pin(tls.stream.flush()).await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(tcp) => tcp.shutdown().await,
            Self::Tls(tls) => Box::pin(tls.stream.shutdown()).await,
        }
    }
}

// SAFETY: both arms may be split (`TcpStream` is `Split`, and so is `TlsStream`, whose read and
// write use separate buffers and never interleave inside a rustls call); the enum adds only
// the dispatch, and its arm never changes after the connection is made.
unsafe impl Split for BackendStream {}

/// The future of a read or write on a `BackendStream`: the socket's own, inline, or the TLS
/// stream's, boxed. Not an `async fn` matching on the arm: its state machine, wrapped around
/// the socket's future, cost every plain request about 70 instructions more (callgrind), and
/// the TLS arm unboxed made a connection's task outgrow its allocation size class (1,832
/// bytes instead of 1,744; the class ends at 1,792).
pub enum Dispatch<P, T> {
    Plain(P),
    Tls(Pin<Box<T>>),
}

impl<P: Future, T: Future<Output = P::Output>> Future for Dispatch<P, T> {
    type Output = P::Output;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<P::Output> {
        // SAFETY: the arm is never changed and nothing moves out of it while the enum is
        // pinned (the enum has no `Drop`, and no `&mut P` is handed out but pinned below).
        match unsafe { self.get_unchecked_mut() } {
            // SAFETY: `plain` lives in the pinned enum and is never moved (see above).
            Self::Plain(plain) => unsafe { Pin::new_unchecked(plain) }.poll(cx),
            Self::Tls(tls) => tls.as_mut().poll(cx),
        }
    }
}

/// Reads tell of TLS failures (see `TlsBackend::log`).
impl AsyncReadRent for TlsBackend {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        let read = self.stream.read(buf).await;
        self.told(read)
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        let read = self.stream.readv(buf).await;
        self.told(read)
    }
}

impl TlsBackend {
    /// `read`'s result, after telling of a TLS failure in it.
    #[cold]
    fn told<T>(&self, result: BufResult<usize, T>) -> BufResult<usize, T> {
        if let Err(error) = &result.0
            && error.kind() == io::ErrorKind::InvalidData
        {
            // rustls' own errors: an alert from the backend, a record that does not decrypt.
            self.log.failed("TLS", error);
        }
        result
    }
}

/// At most one line per backend and worker in this long tells of TLS failures; the lines it
/// holds back are counted in the next.
const QUIET: Duration = Duration::from_secs(10);

/// Tells of TLS failures with one backend, from one worker: every failure would be a line per
/// request while a backend's certificate is wrong.
#[derive(Debug)]
pub struct TlsFailureLog {
    /// `backend ADDR (upstream "NAME")`, as the health checks name backends.
    label: Box<str>,
    quiet_until: Cell<Option<Instant>>,
    held_back: Cell<u64>,
}

impl TlsFailureLog {
    pub fn new(label: String) -> Self {
        Self {
            label: label.into_boxed_str(),
            quiet_until: Cell::new(None),
            held_back: Cell::new(0),
        }
    }

    /// Logs `what: error`, unless a line went out within `QUIET`.
    #[cold]
    pub fn failed(&self, what: &str, error: &dyn fmt::Display) {
        let now = Instant::now();
        if self.quiet_until.get().is_some_and(|until| now < until) {
            self.held_back.set(self.held_back.get() + 1);
            return;
        }
        self.quiet_until.set(Some(now + QUIET));
        let held_back = self.held_back.replace(0);
        let more = match held_back {
            0 => String::new(),
            n => format!(" (and {n} more since the last such line)"),
        };
        crate::log_warn!("{}: {what}: {error}{more}", self.label);
    }
}
