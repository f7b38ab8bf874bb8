//! Receive buffers for ownership-passing (io_uring) reads, and the worker's pools of storage.
//!
//! Bytes `buf[start..]` are received but not yet consumed. Parsers borrow `data()`; a
//! consumed prefix is skipped by moving `start`, and the buffer is compacted only when a read
//! needs room, so the common case (a whole message per read) never copies.
//!
//! Memory follows activity: a pending read owns its buffer until it completes, so an idle
//! keep-alive connection waits for its next request in a small buffer (`CLIENT_RECV_BUFFER`,
//! as nginx's `client_header_buffer_size`). What an exchange needs beyond that — the head we
//! write, the backend's receive buffer, room for a large head or a pipelined burst, a large
//! body's buffer — is lent by the worker's `Buffers` and given back when the request is
//! done; the pools keep what is in use and shrink when it is not.

use std::cell::{Cell, RefCell};

use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;

use crate::conns::{Cut, Deadline};

/// An idle client connection's receive buffer: request heads up to this size, and the
/// pipelined requests that fit with them, need nothing else.
pub const CLIENT_RECV_BUFFER: usize = 1024;
/// Backend responses, and client heads or bursts that outgrow `CLIENT_RECV_BUFFER`.
pub const RECV_BUFFER: usize = 16 * 1024;
/// Big bodies stream through buffers of this size.
pub const STREAM_BUFFER: usize = 64 * 1024;
/// The heads (and gathered small bodies) we write start at this size and may grow up to
/// `OUT_BUFFER_MAX` and still be kept: a head and a 32 KiB gathered body fit.
const OUT_BUFFER: usize = 2 * 1024;
const OUT_BUFFER_MAX: usize = 64 * 1024;
/// At most this many idle buffers (or pairs) per pool: at most 24 MiB of exchange and
/// receive buffers and 8 MiB of stream buffers per worker, until `trim` frees them.
const KEPT: usize = 256;
const STREAM_BUFFERS_KEPT: usize = 128;

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

    /// A buffer without storage: it takes some from a pool with `reset` before use.
    pub const fn unallocated() -> Self {
        Self {
            buf: Vec::new(),
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

    /// Lends the buffer a large storage from `pool` (for a body), moving the unconsumed
    /// bytes into it; returns the storage it had, to be put back with `return_storage`.
    pub fn borrow_storage(&mut self, pool: &BufferPool) -> Vec<u8> {
        self.replace_storage(pool.take())
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

    /// Gives up the storage, dropping any bytes in it; the buffer then has none.
    pub fn take_storage(&mut self) -> Vec<u8> {
        self.start = 0;
        std::mem::take(&mut self.buf)
    }

    /// Makes `storage` (empty) the buffer's, dropping what it had.
    pub fn set_storage(&mut self, storage: Vec<u8>) {
        self.start = 0;
        self.buf = storage;
    }

    /// Before a read: a buffer smaller than `pool`'s that the last read filled (a head or a
    /// pipelined burst that does not fit) moves its bytes into a storage from `pool`.
    pub fn grow_if_full(&mut self, pool: &BufferPool) {
        if self.buf.len() == self.buf.capacity() {
            self.enlarge(pool);
        }
    }

    /// Moves the bytes into a storage from `pool` unless the buffer is at least that large
    /// already (for a tunnel, which streams through it).
    pub fn enlarge(&mut self, pool: &BufferPool) {
        if self.buf.capacity() < pool.size {
            drop(self.replace_storage(pool.take()));
        }
    }

    /// Once drained, a buffer larger than `small` goes back to a storage of `small` bytes and
    /// gives the large one to `pool`: the connection may now wait long for its next bytes.
    pub fn shrink_if_empty(&mut self, small: usize, pool: &BufferPool) {
        if self.buf.capacity() > small && self.is_empty() {
            pool.give(self.replace_storage(Vec::with_capacity(small)));
        }
    }

    /// Moves the unconsumed bytes into `storage` (empty), which becomes the buffer's;
    /// returns the storage it had.
    fn replace_storage(&mut self, mut storage: Vec<u8>) -> Vec<u8> {
        storage.extend_from_slice(self.data());
        self.start = 0;
        std::mem::replace(&mut self.buf, storage)
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

/// Idle items kept for reuse, taken and given back in LIFO order, so the ones at the bottom
/// are those no connection needed lately: `trim` frees half of them each time it runs.
struct FreeList<T> {
    free: RefCell<Vec<T>>,
    /// The fewest items `free` held since the last `trim`: that many were not needed.
    unused: Cell<usize>,
    keep: usize,
}

impl<T> FreeList<T> {
    fn new(keep: usize) -> Self {
        Self {
            free: RefCell::new(Vec::new()),
            unused: Cell::new(0),
            keep,
        }
    }

    #[inline(always)]
    fn pop(&self) -> Option<T> {
        let mut free = self.free.borrow_mut();
        let item = free.pop();
        self.unused.set(self.unused.get().min(free.len()));
        item
    }

    /// Keeps `item` unless `keep` are kept already (then it is dropped).
    #[inline(always)]
    fn push(&self, item: T) {
        let mut free = self.free.borrow_mut();
        if free.len() < self.keep {
            free.push(item);
        }
    }

    /// Frees half (rounded up) of the items that stayed unused since the last call, so a
    /// list left alone after a burst empties within a few calls, while one in steady use
    /// keeps about what it lends at its busiest.
    fn trim(&self) {
        let mut free = self.free.borrow_mut();
        let unused = self.unused.get().min(free.len());
        free.drain(..unused.div_ceil(2));
        self.unused.set(free.len());
    }

    fn len(&self) -> usize {
        self.free.borrow().len()
    }
}

/// Buffers of one size lent to connections for as long as they need them.
pub struct BufferPool {
    free: FreeList<Vec<u8>>,
    size: usize,
}

impl BufferPool {
    /// Buffers of `size` bytes; at most `keep` idle ones are kept.
    pub fn new(size: usize, keep: usize) -> Self {
        Self {
            free: FreeList::new(keep),
            size,
        }
    }

    /// An empty buffer of `size` bytes.
    pub fn take(&self) -> Vec<u8> {
        self.free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.size))
    }

    /// Keeps `buf` for reuse if it is of the pool's size (not grown) and the pool is not
    /// full; frees it otherwise.
    pub fn give(&self, mut buf: Vec<u8>) {
        if buf.capacity() == self.size {
            buf.clear();
            self.free.push(buf);
        }
    }

    /// Idle buffers kept.
    pub fn idle(&self) -> usize {
        self.free.len()
    }
}

/// What one exchange writes and receives from its backend: the head we write (with small
/// bodies gathered after it) and the backend's receive buffer. Lent as a pair, so a request
/// costs one take and one give.
struct ExchangeBuffers {
    out: Vec<u8>,
    upstream: Vec<u8>,
}

/// The pairs of buffers exchanges borrow (see `ExchangeBuffers`).
pub struct ExchangePool {
    free: FreeList<ExchangeBuffers>,
}

impl ExchangePool {
    pub fn new(keep: usize) -> Self {
        Self {
            free: FreeList::new(keep),
        }
    }

    /// Empties `out` for a head to write, first lending it and `upstream` their storage if
    /// the request has none yet.
    // Always inlined, as `reclaim`: once per request, and a call's register saving and
    // restoring cost as much as the work (callgrind).
    #[inline(always)]
    pub fn prepare(&self, out: &mut Vec<u8>, upstream: &mut RecvBuf) {
        if out.capacity() != 0 {
            out.clear();
            return;
        }
        let buffers = self.free.pop().unwrap_or_else(|| ExchangeBuffers {
            out: Vec::with_capacity(OUT_BUFFER),
            upstream: Vec::with_capacity(RECV_BUFFER),
        });
        *out = buffers.out;
        upstream.set_storage(buffers.upstream);
    }

    /// Takes back what `prepare` lent (any bytes left in it are dropped). The pair is kept
    /// for reuse unless a buffer grew past what is worth keeping (an `out` beyond
    /// `OUT_BUFFER_MAX`, a receive buffer grown for a large response head).
    #[inline(always)]
    pub fn reclaim(&self, out: &mut Vec<u8>, upstream: &mut RecvBuf) {
        if out.capacity() == 0 {
            return;
        }
        let mut buffers = ExchangeBuffers {
            out: std::mem::take(out),
            upstream: upstream.take_storage(),
        };
        if buffers.out.capacity() <= OUT_BUFFER_MAX && buffers.upstream.capacity() == RECV_BUFFER {
            buffers.out.clear();
            buffers.upstream.clear();
            self.free.push(buffers);
        }
    }

    /// Idle pairs kept.
    pub fn idle(&self) -> usize {
        self.free.len()
    }
}

/// A worker's pools (see the module docs).
pub struct Buffers {
    /// Each request's head we write and backend receive buffer.
    pub exchange: ExchangePool,
    /// Room for client heads and bursts that outgrow their connection's small buffer, and
    /// for the small bodies gathered through it; tunnels and lingering reads.
    pub recv: BufferPool,
    /// Large bodies stream through these.
    pub stream: BufferPool,
}

impl Buffers {
    pub fn new() -> Self {
        Self {
            exchange: ExchangePool::new(KEPT),
            recv: BufferPool::new(RECV_BUFFER, KEPT),
            stream: BufferPool::new(STREAM_BUFFER, STREAM_BUFFERS_KEPT),
        }
    }

    /// Frees what went unused since the last call (see `FreeList::trim`).
    pub fn trim(&self) {
        self.exchange.free.trim();
        self.recv.free.trim();
        self.stream.free.trim();
    }
}

impl Default for Buffers {
    fn default() -> Self {
        Self::new()
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
        assert_eq!(pool.idle(), 1, "the big buffer is back in the pool");
    }

    #[test]
    fn lent_storage_takes_the_unconsumed_bytes_along() {
        let pool = BufferPool::new(64 * 1024, 4);
        let mut b = RecvBuf::with_capacity(16);
        b.buf.extend_from_slice(b"headbody");
        b.consume(4);
        let own = b.borrow_storage(&pool);
        assert_eq!(b.data(), b"body");
        assert_eq!(b.capacity(), 64 * 1024);
        b.consume(4);
        b.return_storage(own, &pool);
        assert!(b.is_empty());
        assert_eq!(b.capacity(), 16);
    }

    /// A read filled the small buffer with part of a head: the next read goes into a pooled
    /// large buffer, and once the request is done the connection is small again.
    #[test]
    fn a_head_larger_than_the_small_buffer_grows_and_shrinks_back() {
        let pool = BufferPool::new(RECV_BUFFER, 4);
        let mut b = RecvBuf::with_capacity(CLIENT_RECV_BUFFER);
        b.buf.resize(CLIENT_RECV_BUFFER - 1, b'h');
        b.grow_if_full(&pool);
        assert_eq!(b.capacity(), CLIENT_RECV_BUFFER, "room left: no growth");
        b.buf.push(b'!');
        b.grow_if_full(&pool);
        assert_eq!(b.capacity(), RECV_BUFFER);
        assert_eq!(b.len(), CLIENT_RECV_BUFFER);
        assert_eq!(b.data().last(), Some(&b'!'), "the bytes moved along");
        b.consume(b.len());
        b.shrink_if_empty(CLIENT_RECV_BUFFER, &pool);
        assert_eq!(b.capacity(), CLIENT_RECV_BUFFER);
        assert_eq!(pool.idle(), 1, "the large buffer is back in the pool");
    }

    /// A pipelined burst that fills the small buffer moves (only its unconsumed part) into a
    /// large buffer, which stays until every request of the burst has been consumed.
    #[test]
    fn a_pipelined_burst_keeps_the_large_buffer_until_drained() {
        let pool = BufferPool::new(RECV_BUFFER, 4);
        let mut b = RecvBuf::with_capacity(CLIENT_RECV_BUFFER);
        b.buf.resize(CLIENT_RECV_BUFFER, b'r');
        b.consume(600);
        b.grow_if_full(&pool);
        assert_eq!(b.capacity(), RECV_BUFFER);
        assert_eq!(b.len(), CLIENT_RECV_BUFFER - 600);
        b.buf.extend_from_slice(&[b's'; 2000]);
        b.consume(1000);
        b.shrink_if_empty(CLIENT_RECV_BUFFER, &pool);
        assert_eq!(
            b.capacity(),
            RECV_BUFFER,
            "requests still pending: stays large"
        );
        b.consume(b.len());
        b.shrink_if_empty(CLIENT_RECV_BUFFER, &pool);
        assert_eq!(b.capacity(), CLIENT_RECV_BUFFER);
    }

    #[test]
    fn a_pool_frees_half_of_what_went_unused_at_each_trim() {
        let pool = BufferPool::new(1024, 16);
        let burst: Vec<_> = (0..8).map(|_| pool.take()).collect();
        burst.into_iter().for_each(|b| pool.give(b));
        assert_eq!(pool.idle(), 8);
        pool.free.trim();
        assert_eq!(pool.idle(), 8, "all 8 were in use since the last trim");
        // Two requests at a time go on: the 6 never taken are the unused ones.
        for _ in 0..3 {
            let (a, b) = (pool.take(), pool.take());
            pool.give(a);
            pool.give(b);
        }
        pool.free.trim();
        assert_eq!(pool.idle(), 5, "half of the 6 unused freed");
        let idle: Vec<usize> = std::iter::from_fn(|| {
            pool.free.trim();
            Some(pool.idle())
        })
        .take(4)
        .collect();
        assert_eq!(idle, [2, 1, 0, 0], "left alone, the pool empties");
    }

    #[test]
    fn a_pool_keeps_at_most_keep_buffers_of_its_size() {
        let pool = BufferPool::new(1024, 2);
        let taken: Vec<_> = (0..3).map(|_| pool.take()).collect();
        taken.into_iter().for_each(|b| pool.give(b));
        assert_eq!(pool.idle(), 2);
        let mut grown = pool.take();
        grown.reserve_exact(4096);
        pool.give(grown);
        pool.give(Vec::with_capacity(16));
        assert_eq!(pool.idle(), 1, "grown and foreign buffers are freed");
    }

    #[test]
    fn exchange_buffers_are_lent_per_request_and_reused() {
        let pool = ExchangePool::new(4);
        let mut out = Vec::new();
        let mut upstream = RecvBuf::unallocated();
        pool.prepare(&mut out, &mut upstream);
        assert_eq!(
            (out.capacity(), upstream.capacity()),
            (OUT_BUFFER, RECV_BUFFER)
        );
        out.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let out_ptr = out.as_ptr();
        pool.prepare(&mut out, &mut upstream);
        assert!(
            out.is_empty(),
            "a second head in the same request reuses `out`"
        );
        upstream.buf.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        pool.reclaim(&mut out, &mut upstream);
        assert_eq!(
            (out.capacity(), upstream.capacity()),
            (0, 0),
            "idle: nothing held"
        );
        assert_eq!(pool.idle(), 1);
        pool.prepare(&mut out, &mut upstream);
        assert_eq!(out.as_ptr(), out_ptr, "the same pair comes back");
        assert!(out.is_empty() && upstream.is_empty());
        upstream.buf.reserve(RECV_BUFFER + 1);
        pool.reclaim(&mut out, &mut upstream);
        assert_eq!(
            pool.idle(),
            0,
            "a pair with a grown receive buffer is freed"
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
