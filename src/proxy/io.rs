//! Timed writes and body streaming between two peers, and the minimum rate a client must
//! keep while a body moves.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use monoio::buf::IoBuf;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use super::buffer::{BufferPool, ReadError, RecvBuf};
use crate::conns::{Cut, Deadline};
use crate::http::body::BodyProgress;
use crate::upstream::BackendStream;
use crate::upstream::stream::Dispatch;

/// Why a body stopped streaming before its end.
#[derive(Debug)]
pub enum BodyError {
    /// The sender closed the connection before the body's end.
    SourceClosed,
    SourceTimeout,
    SourceIo,
    BadChunk,
    SinkTimeout,
    SinkIo,
}

#[derive(Debug)]
pub enum WriteError {
    Timeout,
    Io,
}

/// Writes all of `buf` before `deadline`; the buffer comes back either way.
pub async fn write_all_within<W: AsyncWriteRent, B: IoBuf + 'static>(
    stream: &mut W,
    buf: B,
    deadline: Deadline<'_>,
) -> (Result<(), WriteError>, B) {
    let ((result, buf), timed_out) = deadline.run(Cut::Both, stream.write_all(buf)).await;
    match result {
        _ if timed_out => (Err(WriteError::Timeout), buf),
        Ok(_) => (Ok(()), buf),
        Err(_) => (Err(WriteError::Io), buf),
    }
}

/// Makes closing the socket `fd` reset the connection (`SO_LINGER` 0), dropping what its
/// send buffer still holds instead of sending it first.
pub fn reset_on_close(fd: RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `fd` is the caller's open socket; setsockopt reads `linger`, a valid value of
    // the size passed, and writes no memory. A failure leaves the default close (FIN).
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
}

/// Writes `out` to `stream`, keeping the vector for reuse.
pub async fn write_vec<W: AsyncWriteRent>(
    stream: &mut W,
    out: &mut Vec<u8>,
    deadline: Deadline<'_>,
) -> Result<(), WriteError> {
    let (result, buf) = write_all_within(stream, std::mem::take(out), deadline).await;
    *out = buf;
    result
}

/// `write_vec` to a backend. A plain one goes through `write_vec::<TcpStream>`, the instance
/// a plain listener's client writes use: a second instance that writes a `Vec` to a
/// `TcpStream` (through `BackendStream`'s plain arm) made LLVM stop inlining the socket write
/// into the first (+2.9% instructions per plain keep-alive GET, callgrind).
pub fn write_vec_to_backend<'a>(
    stream: &'a mut BackendStream,
    out: &'a mut Vec<u8>,
    deadline: Deadline<'a>,
) -> impl Future<Output = Result<(), WriteError>> + 'a {
    match stream {
        BackendStream::Plain(tcp) => Dispatch::Plain(write_vec(tcp, out, deadline)),
        BackendStream::Tls(tls) => {
            Dispatch::Tls(Box::pin(write_vec(&mut tls.stream, out, deadline)))
        }
    }
}

/// The minimum rate a client must keep while it sends a request body or reads a response
/// body (`limits.min_body_rate` after `timeouts.body_rate_grace`), so that a client moving a
/// byte now and then cannot hold a connection (and a backend) for ever: `body_idle` bounds
/// each wait only.
///
/// Only time spent waiting on the client counts, never time spent on the backend: a backend
/// that streams slowly (server-sent events) or reads an upload slowly does not make its
/// client too slow. The client starts with the grace as credit; each wait on it spends what
/// it took, each byte moved earns `1 / rate` seconds, and a wait may last no longer than the
/// credit left. So a body of N bytes may keep its client waiting `grace + N / rate` in all.
///
/// Bytes count as moved when the kernel takes or gives them: a client reading a response
/// is credited for what fills its socket buffers at once. That credit also covers the
/// kernel's wake-up granularity: a write blocked on a slow reader completes only once a good
/// part of the send buffer has drained, not byte by byte. Enforced through each wait's
/// deadline, so the per-worker sweep cuts a client that falls below (no timer of its own);
/// waits are timed by the sweep's clock too, so a short one counts as nothing or one tick,
/// which is right on average.
#[derive(Debug, Clone, Copy)]
pub struct RateFloor {
    bytes_per_second: u64,
    credit: Duration,
}

impl RateFloor {
    /// A body's floor, starting now; `None` when `bytes_per_second` is 0 (no floor).
    pub fn new(bytes_per_second: u64, grace: Duration) -> Option<Self> {
        (bytes_per_second > 0).then_some(Self {
            bytes_per_second,
            credit: grace,
        })
    }

    /// The credit left, in whole milliseconds (saturating at 49 days), to be carried over to
    /// where the body goes on.
    pub fn credit_ms(&self) -> u32 {
        u32::try_from(self.credit.as_millis()).unwrap_or(u32::MAX)
    }

    /// Accounts one wait on the client: it took `waited` and moved `bytes`.
    fn record(&mut self, waited: Duration, bytes: usize) {
        let earned_ns = (bytes as u64).saturating_mul(1_000_000_000) / self.bytes_per_second;
        self.credit = self
            .credit
            .saturating_sub(waited)
            .saturating_add(Duration::from_nanos(earned_ns));
    }
}

/// A socket and the bound on each wait on it: one end of a body or tunnel copy.
pub struct Timed<'a, S> {
    pub stream: &'a mut S,
    pub deadline: Deadline<'a>,
    /// On the client's end of a body: the minimum rate it must keep.
    pub floor: Option<&'a mut RateFloor>,
}

impl<'a, S> Timed<'a, S> {
    /// The bound on the next wait (`deadline`, or sooner when the floor's credit runs out
    /// first), and when the wait starts if a floor needs to know.
    fn begin_wait(&self) -> (Deadline<'a>, Option<Instant>) {
        match &self.floor {
            Some(floor) => (
                self.deadline.at_most(floor.credit),
                Some(self.deadline.now()),
            ),
            None => (self.deadline, None),
        }
    }

    /// A wait begun at `started` has moved `bytes`.
    fn end_wait(&mut self, started: Option<Instant>, bytes: usize) {
        if let (Some(floor), Some(started)) = (self.floor.as_deref_mut(), started) {
            let waited = self.deadline.now().saturating_duration_since(started);
            floor.record(waited, bytes);
        }
    }
}

/// Moves the rest of a body from `src` to `dst`: first what `buf` already holds, then fresh
/// reads. With `dechunk`, chunked framing is stripped (for a client that cannot read it).
/// Bytes after the body stay in `buf`. A body larger than `buf` streams through a large
/// buffer lent by `pool`. `delivered` counts the bytes written to `dst`, also when the body
/// breaks off.
pub async fn stream_body<R: AsyncReadRent, W: AsyncWriteRent>(
    mut src: Timed<'_, R>,
    mut dst: Timed<'_, W>,
    buf: &mut RecvBuf,
    progress: &mut BodyProgress,
    dechunk: bool,
    pool: &BufferPool,
    delivered: &mut u64,
) -> Result<(), BodyError> {
    let mut own_storage = None;
    while !progress.is_done() {
        if buf.is_empty() {
            let larger_than_buf = progress
                .remaining()
                .is_none_or(|n| n > buf.capacity() as u64);
            if own_storage.is_none() && larger_than_buf {
                own_storage = Some(buf.borrow_storage(pool));
            }
            if !read_body(&mut src, buf, progress).await? {
                break;
            }
        }
        let (consumed, payload) = progress
            .advance(buf.data_mut(), dechunk)
            .map_err(|_| BodyError::BadChunk)?;
        write_buffered(&mut dst, buf, payload).await?;
        *delivered += payload as u64;
        buf.consume(consumed);
    }
    if let Some(own) = own_storage {
        buf.return_storage(own, pool);
    }
    Ok(())
}

/// Appends a body to `out` (first what `buf` already holds, then fresh reads from `src`)
/// until it ends or `limit` of its bytes were taken, so that a head and a small body, or the
/// start of a large one, leave in one write. Bytes beyond `limit` stay in `buf`. Returns how
/// many bytes of the body it took from the source.
pub async fn gather_body<R: AsyncReadRent>(
    mut src: Timed<'_, R>,
    buf: &mut RecvBuf,
    progress: &mut BodyProgress,
    dechunk: bool,
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<usize, BodyError> {
    let mut taken = 0;
    while !progress.is_done() && taken < limit {
        if buf.is_empty() && !read_body(&mut src, buf, progress).await? {
            break;
        }
        let available = buf.len().min(limit - taken);
        let (consumed, payload) = progress
            .advance(&mut buf.data_mut()[..available], dechunk)
            .map_err(|_| BodyError::BadChunk)?;
        out.extend_from_slice(&buf.data()[..payload]);
        buf.consume(consumed);
        taken += consumed;
    }
    Ok(taken)
}

/// Reads more of a body into `buf`. `Ok(false)`: the source closed, and that ends the body
/// (close-delimited framing).
async fn read_body<R: AsyncReadRent>(
    src: &mut Timed<'_, R>,
    buf: &mut RecvBuf,
    progress: &mut BodyProgress,
) -> Result<bool, BodyError> {
    let (deadline, started) = src.begin_wait();
    let read = buf.fill(src.stream, deadline, usize::MAX).await;
    if let Ok(n) = read {
        src.end_wait(started, n);
    }
    match read {
        Ok(0) if progress.finish_at_eof() => Ok(false),
        Ok(0) => Err(BodyError::SourceClosed),
        Ok(_) => Ok(true),
        Err(ReadError::Timeout) => Err(BodyError::SourceTimeout),
        Err(ReadError::Full | ReadError::Io) => Err(BodyError::SourceIo),
    }
}

/// Writes the first `len` unconsumed bytes of `buf` without copying them. Write by write,
/// each its own wait: a client reading slowly is credited for what each write moved.
async fn write_buffered<W: AsyncWriteRent>(
    dst: &mut Timed<'_, W>,
    buf: &mut RecvBuf,
    len: usize,
) -> Result<(), BodyError> {
    let (vec, start) = buf.take_inner();
    // Each write takes a slice of this slice: writing `Slice<Vec<u8>>` directly would share
    // that instance of `write` with `write_vec`, which then stopped being inlined there (380
    // more instructions per keep-alive GET, callgrind).
    let mut pending = vec.slice(start..start + len);
    let mut written = 0;
    let result = loop {
        if written == len {
            break Ok(());
        }
        let (deadline, started) = dst.begin_wait();
        let ((result, slice), timed_out) = deadline
            .run(Cut::Both, dst.stream.write(pending.slice(written..)))
            .await;
        pending = slice.into_inner();
        match result {
            _ if timed_out => break Err(BodyError::SinkTimeout),
            Ok(0) => break Err(BodyError::SinkIo),
            Ok(n) => {
                dst.end_wait(started, n);
                written += n;
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break Err(BodyError::SinkIo),
        }
    };
    buf.restore(pending.into_inner());
    result
}

/// Copies everything from `src` to `dst` until `src` closes, then half-closes `dst`. Used for
/// upgraded (tunnelled) connections; `progress` runs after each delivered run of bytes.
pub async fn copy_until_eof<R: AsyncReadRent, W: AsyncWriteRent>(
    src: Timed<'_, R>,
    mut dst: Timed<'_, W>,
    mut buf: RecvBuf,
    progress: impl Fn(usize),
) {
    loop {
        if !buf.is_empty() {
            let len = buf.len();
            if write_buffered(&mut dst, &mut buf, len).await.is_err() {
                return;
            }
            buf.consume(len);
            progress(len);
        }
        match buf.fill(src.stream, src.deadline, usize::MAX).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let _ = dst.stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_rate_of_zero_keeps_no_floor() {
        assert!(RateFloor::new(0, SECOND).is_none());
    }

    #[test]
    fn waits_spend_the_grace_and_bytes_earn_one_rate_th_of_a_second_each() {
        let mut floor = RateFloor::new(1000, SECOND).unwrap();
        floor.record(Duration::from_millis(400), 0);
        assert_eq!(floor.credit, Duration::from_millis(600));
        floor.record(Duration::from_millis(100), 250);
        assert_eq!(floor.credit, Duration::from_millis(750));
        floor.record(Duration::from_secs(5), 1);
        assert_eq!(
            floor.credit,
            Duration::from_millis(1),
            "spent to zero, then the byte"
        );
    }

    #[test]
    fn a_1_byte_per_5_s_trickle_runs_out_of_credit_after_the_grace() {
        // The defaults: 512 B/s after 30 s.
        let mut floor = RateFloor::new(512, Duration::from_secs(30)).unwrap();
        let mut waited = Duration::ZERO;
        while floor.credit >= Duration::from_secs(5) {
            floor.record(Duration::from_secs(5), 1);
            waited += Duration::from_secs(5);
        }
        let cut_after = waited + floor.credit;
        assert!(
            cut_after > Duration::from_secs(30) && cut_after < Duration::from_secs(31),
            "{cut_after:?}"
        );
    }

    #[test]
    fn huge_byte_counts_saturate_instead_of_overflowing() {
        let mut floor = RateFloor::new(1, SECOND).unwrap();
        floor.record(Duration::ZERO, usize::MAX);
        assert!(floor.credit > Duration::from_secs(1 << 30));
    }
}
