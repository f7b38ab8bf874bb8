//! Timed writes and body streaming between two peers.

use std::time::Duration;

use monoio::buf::IoBuf;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use super::buffer::{BufferPool, ReadError, RecvBuf};
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

/// Writes all of `buf` within `within`. On success the buffer comes back for reuse; on a
/// timeout it is lost with the cancelled write.
pub async fn write_all_within<W: AsyncWriteRent, B: IoBuf + 'static>(
    stream: &mut W,
    buf: B,
    within: Duration,
) -> (Result<(), WriteError>, Option<B>) {
    match monoio::time::timeout(within, stream.write_all(buf)).await {
        Err(_elapsed) => (Err(WriteError::Timeout), None),
        Ok((Ok(_), buf)) => (Ok(()), Some(buf)),
        Ok((Err(_), buf)) => (Err(WriteError::Io), Some(buf)),
    }
}

/// Writes `out` to `stream`, keeping the vector for reuse when the write finished in time.
pub async fn write_vec<W: AsyncWriteRent>(
    stream: &mut W,
    out: &mut Vec<u8>,
    within: Duration,
) -> Result<(), WriteError> {
    let (result, buf) = write_all_within(stream, std::mem::take(out), within).await;
    if let Some(buf) = buf {
        *out = buf;
    }
    result
}

/// Moves the rest of a body from `src` to `dst`: first what `buf` already holds, then fresh
/// reads. Each read and each write may take at most `idle`. With `dechunk`, chunked framing is
/// stripped (for a client that cannot read it). Bytes after the body stay in `buf`. A body
/// larger than `buf` streams through a large buffer lent by `pool`.
pub async fn stream_body<R: AsyncReadRent, W: AsyncWriteRent>(
    src: &mut R,
    buf: &mut RecvBuf,
    dst: &mut W,
    progress: &mut BodyProgress,
    dechunk: bool,
    idle: Duration,
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
            match buf.fill(src, idle, usize::MAX).await {
                Ok(0) if progress.finish_at_eof() => break,
                Ok(0) => return Err(BodyError::SourceClosed),
                Ok(_) => {}
                Err(ReadError::Timeout) => return Err(BodyError::SourceTimeout),
                Err(ReadError::Full | ReadError::Io) => return Err(BodyError::SourceIo),
            }
        }
        let (consumed, payload) = progress
            .advance(buf.data_mut(), dechunk)
            .map_err(|_| BodyError::BadChunk)?;
        write_buffered(dst, buf, payload, idle).await?;
        buf.consume(consumed);
    }
    if let Some(own) = own_storage {
        buf.return_storage(own, pool);
    }
    Ok(())
}

/// Writes the first `len` unconsumed bytes of `buf` without copying them.
async fn write_buffered<W: AsyncWriteRent>(
    dst: &mut W,
    buf: &mut RecvBuf,
    len: usize,
    idle: Duration,
) -> Result<(), BodyError> {
    if len == 0 {
        return Ok(());
    }
    let (vec, start) = buf.take_inner();
    let (result, vec) = write_all_within(dst, vec.slice(start..start + len), idle).await;
    if let Some(slice) = vec {
        buf.restore(slice.into_inner());
    }
    match result {
        Ok(()) => Ok(()),
        Err(WriteError::Timeout) => Err(BodyError::SinkTimeout),
        Err(WriteError::Io) => Err(BodyError::SinkIo),
    }
}

/// Copies everything from `src` to `dst` until `src` closes, then half-closes `dst`. Used for
/// upgraded (tunnelled) connections; `idle` bounds each wait.
pub async fn copy_until_eof<R: AsyncReadRent, W: AsyncWriteRent>(
    src: &mut R,
    dst: &mut W,
    mut buf: RecvBuf,
    idle: Duration,
) {
    loop {
        if !buf.is_empty() {
            let len = buf.len();
            if write_buffered(dst, &mut buf, len, idle).await.is_err() {
                return;
            }
            buf.consume(len);
        }
        match buf.fill(src, idle, usize::MAX).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let _ = dst.shutdown().await;
}
