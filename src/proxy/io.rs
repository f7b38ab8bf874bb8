//! Timed writes and body streaming between two peers.

use monoio::buf::IoBuf;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use super::buffer::{BufferPool, ReadError, RecvBuf};
use crate::conns::{Cut, Deadline};
use crate::http::body::BodyProgress;

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

/// A socket and the bound on each wait on it: one end of a body or tunnel copy.
pub struct Timed<'a, S> {
    pub stream: &'a mut S,
    pub deadline: Deadline<'a>,
}

/// Moves the rest of a body from `src` to `dst`: first what `buf` already holds, then fresh
/// reads. With `dechunk`, chunked framing is stripped (for a client that cannot read it).
/// Bytes after the body stay in `buf`. A body larger than `buf` streams through a large
/// buffer lent by `pool`.
pub async fn stream_body<R: AsyncReadRent, W: AsyncWriteRent>(
    mut src: Timed<'_, R>,
    dst: Timed<'_, W>,
    buf: &mut RecvBuf,
    progress: &mut BodyProgress,
    dechunk: bool,
    pool: &BufferPool,
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
        write_buffered(dst.stream, buf, payload, dst.deadline).await?;
        buf.consume(consumed);
    }
    if let Some(own) = own_storage {
        buf.return_storage(own, pool);
    }
    Ok(())
}

/// Appends a body to `out` (first what `buf` already holds, then fresh reads from `src`)
/// until it ends or `limit` of its bytes were taken, so that a head and a small body, or the
/// start of a large one, leave in one write. Bytes beyond `limit` stay in `buf`.
pub async fn gather_body<R: AsyncReadRent>(
    mut src: Timed<'_, R>,
    buf: &mut RecvBuf,
    progress: &mut BodyProgress,
    dechunk: bool,
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), BodyError> {
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
    Ok(())
}

/// Reads more of a body into `buf`. `Ok(false)`: the source closed, and that ends the body
/// (close-delimited framing).
async fn read_body<R: AsyncReadRent>(
    src: &mut Timed<'_, R>,
    buf: &mut RecvBuf,
    progress: &mut BodyProgress,
) -> Result<bool, BodyError> {
    match buf.fill(src.stream, src.deadline, usize::MAX).await {
        Ok(0) if progress.finish_at_eof() => Ok(false),
        Ok(0) => Err(BodyError::SourceClosed),
        Ok(_) => Ok(true),
        Err(ReadError::Timeout) => Err(BodyError::SourceTimeout),
        Err(ReadError::Full | ReadError::Io) => Err(BodyError::SourceIo),
    }
}

/// Writes the first `len` unconsumed bytes of `buf` without copying them.
async fn write_buffered<W: AsyncWriteRent>(
    dst: &mut W,
    buf: &mut RecvBuf,
    len: usize,
    deadline: Deadline<'_>,
) -> Result<(), BodyError> {
    if len == 0 {
        return Ok(());
    }
    let (vec, start) = buf.take_inner();
    let (result, slice) = write_all_within(dst, vec.slice(start..start + len), deadline).await;
    buf.restore(slice.into_inner());
    match result {
        Ok(()) => Ok(()),
        Err(WriteError::Timeout) => Err(BodyError::SinkTimeout),
        Err(WriteError::Io) => Err(BodyError::SinkIo),
    }
}

/// Copies everything from `src` to `dst` until `src` closes, then half-closes `dst`. Used for
/// upgraded (tunnelled) connections; `progress` runs after each delivered run of bytes.
pub async fn copy_until_eof<R: AsyncReadRent, W: AsyncWriteRent>(
    src: Timed<'_, R>,
    dst: Timed<'_, W>,
    mut buf: RecvBuf,
    progress: impl Fn(),
) {
    loop {
        if !buf.is_empty() {
            let len = buf.len();
            if write_buffered(dst.stream, &mut buf, len, dst.deadline)
                .await
                .is_err()
            {
                return;
            }
            buf.consume(len);
            progress();
        }
        match buf.fill(src.stream, src.deadline, usize::MAX).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let _ = dst.stream.shutdown().await;
}
