//! A TLS connection over a monoio `TcpStream`, driving a rustls connection with
//! ownership-passing (io_uring) reads and writes: a `ServerConnection` for clients on a TLS
//! listener, a `ClientConnection` for backends with `[upstream.NAME.tls]`. One generic type
//! serves both sides (monomorphised, so the server side's code is what it was alone).
//!
//! Written here rather than taken from monoio-rustls 0.4 because of how a tunnel uses a
//! connection (`proxy::tunnel` splits it and reads and writes at once): monoio-rustls's read
//! writes pending alerts itself when rustls reports an error, through the same write buffer a
//! concurrent write may hold, and that panics ("buffer mut expected") — a client could end a
//! worker by sending a bad record while a response streams to it (and a backend, the same
//! through a tunnel to it). Here reading never writes:
//! what rustls queues while reading goes out with the next write, flush or shutdown. Owning
//! the first read also lets the acceptor look at the client's first bytes (`First`) before
//! rustls does, without a peek.
//!
//! Reads and writes carry no timeout of their own: callers bound them with the connection's
//! deadlines (`crate::conns`), which shut the socket, so the pending socket operation ends
//! and nothing is cancelled by dropping it.

use std::io::{self, BufRead};
use std::ops::DerefMut;
use std::os::fd::{AsRawFd, RawFd};

use monoio::BufResult;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, RawBuf};
use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::net::TcpStream;
use rustls::{ConnectionCommon, ServerConnection};

/// Ciphertext read per socket read while records come large: one full TLS record with its
/// header and the most an AEAD adds, so a record never needs two reads.
const INCOMING: usize = 16 * 1024 + 256 + 5;
/// Ciphertext read per socket read while records come small: a ClientHello (up to about
/// 1.8 KiB with a post-quantum key share) or a request head. An idle keep-alive connection
/// holds this, not `INCOMING`: 2,000 idle TLS connections cost 18.5 KiB each with a 16 KiB
/// buffer, 16.5 KiB with this one (perf/2026-12-07-tls-idle-memory.md; nginx: 14.3 KiB).
const INCOMING_SMALL: usize = 2048;
/// Ciphertext capacity kept between writes; a larger buffer (a big response's) is freed
/// once written, so that an idle connection does not hold it.
const OUTGOING_KEPT: usize = 4096;

/// What a client's first bytes say it is speaking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum First {
    /// A TLS handshake record (content type 22).
    Handshake,
    /// An ASCII capital letter: the start of an HTTP method, sent in clear to a TLS port.
    PlainHttp,
    /// Anything else: neither TLS nor HTTP.
    Other,
    /// The client closed without sending anything.
    Closed,
}

/// `C` is the rustls connection: `ServerConnection` (the default) or `ClientConnection`.
pub struct TlsStream<C = ServerConnection> {
    tcp: TcpStream,
    conn: C,
    /// Ciphertext read from the socket; `incoming[fed..]` is not yet given to rustls.
    incoming: Vec<u8>,
    fed: usize,
    /// Ciphertext on its way to the socket; empty between writes.
    outgoing: Vec<u8>,
    /// The last socket read filled `incoming`: more is coming, read `INCOMING` at a time.
    large_reads: bool,
}

impl<C, D> TlsStream<C>
where
    C: DerefMut<Target = ConnectionCommon<D>>,
{
    pub fn new(tcp: TcpStream, conn: C) -> Self {
        Self {
            tcp,
            conn,
            incoming: Vec::with_capacity(INCOMING_SMALL),
            fed: 0,
            outgoing: Vec::new(),
            large_reads: false,
        }
    }

    /// Reads the client's first bytes and says what they are; they stay buffered for the
    /// handshake.
    pub async fn read_first(&mut self) -> io::Result<First> {
        if !self.read_socket().await? {
            return Ok(First::Closed);
        }
        Ok(match self.incoming.first() {
            Some(0x16) => First::Handshake,
            Some(b'A'..=b'Z') => First::PlainHttp,
            _ => First::Other,
        })
    }

    /// Runs the handshake to its end. On a failure the alert rustls prepared is sent, so the
    /// peer learns why (an unknown protocol version, a certificate not trusted) before the
    /// connection closes.
    pub async fn handshake(&mut self) -> io::Result<()> {
        while self.conn.is_handshaking() {
            if self.conn.wants_write() {
                self.flush_tls().await?;
                continue;
            }
            match self.receive().await {
                Ok(true) => {}
                Ok(false) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the peer closed during the handshake",
                    ));
                }
                Err(error) => {
                    let _ = self.flush_tls().await;
                    return Err(error);
                }
            }
        }
        // What follows the handshake: TLS 1.3 session tickets.
        self.flush_tls().await
    }

    /// The socket, for a client that turned out not to speak TLS.
    pub fn into_tcp(self) -> TcpStream {
        self.tcp
    }

    /// Whether the handshake was full or resumed a session; `None` before it completed.
    pub fn handshake_kind(&self) -> Option<rustls::HandshakeKind> {
        self.conn.handshake_kind()
    }

    /// The protocol the client and we agreed on with ALPN, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]>
    where
        D: 'static,
    {
        self.conn.alpn_protocol()
    }

    /// Gives rustls more ciphertext (what is buffered, else one socket read) and processes
    /// it. `false`: the socket reached its end.
    async fn receive(&mut self) -> io::Result<bool> {
        if self.fed == self.incoming.len() && !self.read_socket().await? {
            // Tells rustls the stream ended; its reader then says whether that was clean.
            self.conn.read_tls(&mut io::empty())?;
            return Ok(false);
        }
        let fed = self.conn.read_tls(&mut &self.incoming[self.fed..])?;
        // Nothing taken from a non-empty buffer: the peer sent close_notify, and what
        // follows it is of no use.
        self.fed = if fed == 0 {
            self.incoming.len()
        } else {
            self.fed + fed
        };
        self.conn
            .process_new_packets()
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        Ok(true)
    }

    /// One socket read into the emptied incoming buffer; `false` at the end of the stream.
    /// The buffer is small until a read fills it, and large until a read does not.
    async fn read_socket(&mut self) -> io::Result<bool> {
        let mut buf = std::mem::take(&mut self.incoming);
        buf.clear();
        self.fed = 0;
        let wanted = if self.large_reads {
            INCOMING
        } else {
            INCOMING_SMALL
        };
        if buf.capacity() != wanted {
            buf = Vec::with_capacity(wanted);
        }
        let (result, buf) = self.tcp.read(buf).await;
        self.large_reads = buf.len() == buf.capacity();
        self.incoming = buf;
        Ok(result? > 0)
    }

    /// Sends everything rustls has queued.
    ///
    /// A loop of plain writes rather than `write_all`: `write_all` over a `Vec` is what the
    /// plain-HTTP path writes with, and a second caller of that instance made LLVM stop
    /// inlining it there (+2.6% instructions per plain request, perf/RESULTS.md 2026-12-07).
    async fn flush_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.outgoing)?;
        }
        write_ciphertext(&mut self.tcp, &mut self.outgoing).await
    }

    /// Copies plaintext rustls holds into `buf`; `None` when it holds none yet.
    fn take_plaintext<T: IoBufMut>(&mut self, buf: &mut T) -> Option<io::Result<usize>> {
        let mut reader = self.conn.reader();
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return None,
            Err(error) => return Some(Err(error)),
        };
        // Empty means the peer closed cleanly (close_notify).
        let n = chunk.len().min(buf.bytes_total());
        // SAFETY: `write_ptr` points at `bytes_total()` writable bytes that `buf` owns, and
        // `n` is at most that; `chunk` is rustls' memory, which cannot overlap a buffer
        // the caller owns. `set_init(n)` then covers exactly the bytes written.
        unsafe {
            std::ptr::copy_nonoverlapping(chunk.as_ptr(), buf.write_ptr(), n);
            buf.set_init(n);
        }
        reader.consume(n);
        Some(Ok(n))
    }

    async fn read_into<T: IoBufMut>(&mut self, buf: &mut T) -> io::Result<usize> {
        if buf.bytes_total() == 0 {
            return Ok(0);
        }
        loop {
            if let Some(result) = self.take_plaintext(buf) {
                return result;
            }
            if !self.receive().await? {
                // rustls's reader now answers: Ok(0) after close_notify, else an
                // unexpected-EOF error.
                return self.take_plaintext(buf).unwrap_or(Ok(0));
            }
        }
    }

    async fn write_from(&mut self, data: &[u8]) -> io::Result<usize> {
        use std::io::Write;
        // Queued by an earlier read (a key update, say): out first, and it frees room.
        self.flush_tls().await?;
        let n = self.conn.writer().write(data)?;
        self.flush_tls().await?;
        Ok(n)
    }
}

/// Writes all of `outgoing` to the socket, then frees a large buffer (a big response's) so that
/// an idle connection does not hold it. One function for both sides, not part of the generic
/// `flush_tls`: each instance of a `Vec` write to a `TcpStream` is one more caller of the write
/// the plain path inlines (see `flush_tls`).
async fn write_ciphertext(tcp: &mut TcpStream, outgoing: &mut Vec<u8>) -> io::Result<()> {
    while !outgoing.is_empty() {
        let (result, mut buf) = tcp.write(std::mem::take(outgoing)).await;
        match result? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            // Partial writes are rare (a full socket buffer): the rest moves to the front.
            written => {
                buf.drain(..written);
                *outgoing = buf;
            }
        }
    }
    if outgoing.capacity() > OUTGOING_KEPT {
        *outgoing = Vec::new();
    }
    Ok(())
}

impl<C> AsRawFd for TlsStream<C> {
    /// The socket's: what the connection's deadlines (`crate::conns`) shut.
    fn as_raw_fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }
}

impl<C, D> AsyncReadRent for TlsStream<C>
where
    C: DerefMut<Target = ConnectionCommon<D>>,
{
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        let result = self.read_into(&mut buf).await;
        (result, buf)
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // SAFETY: the iovecs `buf` describes stay valid while `buf` is held, which it is
        // until this call returns; the read fills only the first one.
        let result = match unsafe { RawBuf::new_from_iovec_mut(&mut buf) } {
            Some(mut first) => self.read_into(&mut first).await,
            None => Ok(0),
        };
        if let Ok(n) = result {
            // SAFETY: `n` bytes were written at the start of the first iovec.
            unsafe { buf.set_init(n) };
        }
        (result, buf)
    }
}

impl<C, D> AsyncWriteRent for TlsStream<C>
where
    C: DerefMut<Target = ConnectionCommon<D>>,
{
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: `read_ptr` points at `bytes_init()` initialised bytes owned by `buf`, which
        // is held (and not written) until this call returns.
        let data = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let result = self.write_from(data).await;
        (result, buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: as in `write`, for the first iovec, which `buf` owns and keeps valid.
        let result = match unsafe { RawBuf::new_from_iovec(&buf) } {
            Some(first) => {
                let data =
                    unsafe { std::slice::from_raw_parts(first.read_ptr(), first.bytes_init()) };
                self.write_from(data).await
            }
            None => Ok(0),
        };
        (result, buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.flush_tls().await
    }

    /// Sends close_notify, then the TCP FIN.
    async fn shutdown(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        self.flush_tls().await?;
        self.tcp.shutdown().await
    }
}

// SAFETY: the halves of a split stream are used by tasks of one thread, as for a split
// `TcpStream` (monoio's own halves share the stream through an `UnsafeCell` the same way).
// Each call touches the rustls connection only between its awaits, so two calls never
// interleave inside a rustls method, and the two directions use separate buffers
// (`incoming` for reads, `outgoing` for writes): a read never writes.
unsafe impl<C> Split for TlsStream<C> {}
