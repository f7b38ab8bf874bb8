//! A per-connection receive buffer for ownership-passing (io_uring) reads.
//!
//! Bytes `buf[start..]` are received but not yet consumed. Parsers borrow `data()`; a
//! consumed prefix is skipped by moving `start`, and the buffer is compacted only when a read
//! needs room, so the common case (a whole message per read) never copies.

use std::cell::RefCell;

use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;

use crate::conns::{Cut, Deadline};

/// Why a read did not deliver bytes.
#[derive(Debug)]
pub enum ReadError {
    /// Nothing arrived within the allowed time (the socket was shut for reading).
    Timeout,
    /// The buffer is at its size limit and nothing of it was consumed.
    Full,
    Io,
}

pub struct RecvBuf {
    buf: Vec<u8>,
    start: usize,
}

impl RecvBuf {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
            start: 0,
        }
    }

    /// Received bytes not yet consumed.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..]
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }

    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Marks the first `n` unconsumed bytes as used.
    pub fn consume(&mut self, n: usize) {
        self.start += n.min(self.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Reads more bytes after the unconsumed ones, growing the buffer up to `limit` bytes if it
    /// is full. Returns the number of new bytes; 0 means the peer closed.
    pub async fn fill<S: AsyncReadRent>(
        &mut self,
        stream: &mut S,
        deadline: Deadline<'_>,
        limit: usize,
    ) -> Result<usize, ReadError> {
        self.make_room(limit)?;
        let buf = std::mem::take(&mut self.buf);
        let len = buf.len();
        let ((result, slice), timed_out) = deadline
            .run(Cut::Read, stream.read(buf.slice_mut(len..)))
            .await;
        self.buf = slice.into_inner();
        match result {
            _ if timed_out => Err(ReadError::Timeout),
            Ok(n) => Ok(n),
            Err(_) => Err(ReadError::Io),
        }
    }

    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Lends the (empty) buffer a large storage from `pool` for streaming a body; returns
    /// the storage it had, to be put back with `return_storage`.
    pub fn borrow_storage(&mut self, pool: &BufferPool) -> Vec<u8> {
        self.start = 0;
        std::mem::replace(&mut self.buf, pool.take())
    }

    /// Puts the original storage back, keeping any unconsumed bytes (a pipelined request),
    /// and returns the lent storage to `pool`.
    pub fn return_storage(&mut self, mut own: Vec<u8>, pool: &BufferPool) {
        own.clear();
        own.extend_from_slice(self.data());
        self.start = 0;
        pool.give(std::mem::replace(&mut self.buf, own));
    }

    /// Lends the storage to a write: returns it with the offset where `data()` starts; the
    /// write gives it back through `restore`.
    pub fn take_inner(&mut self) -> (Vec<u8>, usize) {
        (std::mem::take(&mut self.buf), self.start)
    }

    pub fn restore(&mut self, buf: Vec<u8>) {
        self.buf = buf;
    }

    fn make_room(&mut self, limit: usize) -> Result<(), ReadError> {
        if self.buf.len() < self.buf.capacity() {
            return Ok(());
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
            return Ok(());
        }
        if self.buf.capacity() >= limit {
            return Err(ReadError::Full);
        }
        let grow = (self.buf.capacity() * 2).max(4096).min(limit) - self.buf.len();
        self.buf.reserve_exact(grow);
        Ok(())
    }
}

/// Large buffers lent to connections while they stream a body: a big body then moves in few
/// large reads and writes, while idle keep-alive connections hold only their small buffers.
pub struct BufferPool {
    free: RefCell<Vec<Vec<u8>>>,
    size: usize,
    keep: usize,
}

impl BufferPool {
    /// Buffers of `size` bytes; at most `keep` idle ones are kept for reuse.
    pub fn new(size: usize, keep: usize) -> Self {
        Self {
            free: RefCell::new(Vec::new()),
            size,
            keep,
        }
    }

    fn take(&self) -> Vec<u8> {
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.size))
    }

    fn give(&self, mut buf: Vec<u8>) {
        let mut free = self.free.borrow_mut();
        if buf.capacity() >= self.size && free.len() < self.keep {
            buf.clear();
            free.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lent_storage_goes_back_with_leftover_bytes() {
        let pool = BufferPool::new(64 * 1024, 4);
        let mut b = RecvBuf::with_capacity(16);
        let own = b.borrow_storage(&pool);
        assert!(b.capacity() >= 64 * 1024);
        b.buf.extend_from_slice(b"bodyGET /next");
        b.consume(4);
        b.return_storage(own, &pool);
        assert_eq!(b.data(), b"GET /next");
        assert!(b.capacity() < 64 * 1024);
        assert_eq!(
            pool.free.borrow().len(),
            1,
            "the big buffer is back in the pool"
        );
    }

    #[test]
    fn consume_all_resets_to_front() {
        let mut b = RecvBuf::with_capacity(16);
        b.buf.extend_from_slice(b"abcdef");
        b.consume(2);
        assert_eq!(b.data(), b"cdef");
        b.consume(4);
        assert!(b.is_empty());
        assert_eq!(b.start, 0);
    }

    #[test]
    fn make_room_compacts_before_growing_and_stops_at_limit() {
        let mut b = RecvBuf::with_capacity(8);
        let cap = b.buf.capacity();
        b.buf.resize(cap, b'x');
        b.consume(3);
        b.make_room(cap).unwrap();
        assert_eq!(b.start, 0);
        assert_eq!(b.len(), cap - 3);
        b.buf.resize(b.buf.capacity(), b'y');
        let limit = b.buf.capacity();
        assert!(matches!(b.make_room(limit), Err(ReadError::Full)));
        b.make_room(limit + 4096).unwrap();
        assert!(b.buf.capacity() > limit);
    }
}
