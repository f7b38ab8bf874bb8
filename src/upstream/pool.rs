//! Per-worker keep-alive pool of backend connections.
//!
//! Connections are reused most-recently-released first: the freshest one is the least likely
//! to have been closed by the backend's own idle timeout. One idle for longer than
//! `CHECK_AFTER` is first checked with a non-blocking peek (backends often close idle
//! connections after a few seconds, and a request sent on such a connection could only be
//! retried if it is idempotent). Hot connections skip the check: it costs a system call.
//!
//! A TLS connection is kept only while its backend's TLS identity (`tls::BackendTlsName`) is
//! the one it was made with: a reload that changes what the backend is verified with closes
//! the idle ones and refuses those coming back from a request.

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::{BackendId, BackendStream};

/// Idle longer than this, a connection is checked before reuse.
const CHECK_AFTER: Duration = Duration::from_millis(500);

struct IdleConn {
    stream: BackendStream,
    since: Instant,
}

/// Which connections to a backend the pool keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// None: the backend is gone or drained.
    Nothing,
    Plain,
    /// TLS connections made with this identity.
    Tls(u64),
}

impl Kept {
    #[inline]
    fn admits(self, stream: &BackendStream) -> bool {
        match self {
            Self::Plain => stream.tls_identity().is_none(),
            Self::Tls(identity) => stream.tls_identity() == Some(identity),
            Self::Nothing => false,
        }
    }
}

pub struct Pool {
    /// By `BackendId`.
    idle: Vec<VecDeque<IdleConn>>,
    /// By `BackendId`: which connections to the backend are kept (none for one removed or
    /// drained by a reload).
    keep: Vec<Kept>,
    max_idle_per_backend: usize,
    idle_timeout: Duration,
}

impl Pool {
    pub fn new(
        backends: usize,
        max_idle_per_backend: usize,
        idle_timeout: Duration,
        keep: impl Fn(BackendId) -> Kept,
    ) -> Self {
        let mut pool = Self {
            idle: Vec::new(),
            keep: Vec::new(),
            max_idle_per_backend,
            idle_timeout,
        };
        pool.reconfigure(backends, max_idle_per_backend, idle_timeout, keep);
        pool
    }

    /// Takes a new config generation's settings: room for `backends` ids, and connections
    /// kept only as `keep` says for each backend (those that take new requests, made with
    /// their current TLS settings). Other idle connections close now, and one coming back
    /// from a request still running closes too.
    pub fn reconfigure(
        &mut self,
        backends: usize,
        max_idle_per_backend: usize,
        idle_timeout: Duration,
        keep: impl Fn(BackendId) -> Kept,
    ) {
        self.idle
            .resize_with(backends.max(self.idle.len()), VecDeque::new);
        self.keep = (0..self.idle.len()).map(|b| keep(BackendId(b))).collect();
        for (queue, &kept) in self.idle.iter_mut().zip(&self.keep) {
            queue.retain(|idle| kept.admits(&idle.stream));
        }
        self.max_idle_per_backend = max_idle_per_backend;
        self.idle_timeout = idle_timeout;
        for queue in &mut self.idle {
            let excess = queue.len().saturating_sub(max_idle_per_backend);
            queue.drain(..excess);
        }
    }

    /// An idle connection to `backend` that has not outlived the idle timeout, nor (when
    /// idle for a while) been closed by the backend.
    pub fn take(&mut self, backend: BackendId, now: Instant) -> Option<BackendStream> {
        let queue = self.idle.get_mut(backend.0)?;
        while let Some(newest) = queue.pop_back() {
            let idle = now.duration_since(newest.since);
            if idle >= self.idle_timeout {
                // The newest is expired, so every older one is too.
                queue.clear();
                return None;
            }
            if idle < CHECK_AFTER || still_open(&newest.stream) {
                return Some(newest.stream);
            }
        }
        None
    }

    /// Keeps `stream` for reuse, closing the oldest idle one when the backend's slots are full.
    pub fn put(&mut self, backend: BackendId, stream: BackendStream, now: Instant) {
        let kept = self.keep.get(backend.0).copied().unwrap_or(Kept::Nothing);
        if self.max_idle_per_backend == 0 || !kept.admits(&stream) {
            return;
        }
        let Some(queue) = self.idle.get_mut(backend.0) else {
            return;
        };
        if queue.len() >= self.max_idle_per_backend {
            queue.pop_front();
        }
        queue.push_back(IdleConn { stream, since: now });
    }

    /// Idle connections kept, all backends together.
    pub fn idle_count(&self) -> usize {
        self.idle.iter().map(VecDeque::len).sum()
    }

    /// The most idle connections the pool can hold.
    pub fn capacity(&self) -> usize {
        self.max_idle_per_backend.saturating_mul(self.idle.len())
    }

    /// Closes up to `count` idle connections, each backend's least recently used first, to
    /// give their descriptors to clients; returns how many it closed.
    pub fn close_idle(&mut self, count: usize) -> usize {
        let mut closed = 0;
        for queue in &mut self.idle {
            let n = queue.len().min(count - closed);
            queue.drain(..n);
            closed += n;
        }
        closed
    }

    /// Closes connections idle for longer than the timeout.
    pub fn evict_expired(&mut self, now: Instant) {
        for queue in &mut self.idle {
            while queue
                .front()
                .is_some_and(|c| now.duration_since(c.since) >= self.idle_timeout)
            {
                queue.pop_front();
            }
        }
    }
}

/// Whether an idle backend connection can still carry a request: nothing to read yet. A
/// closed connection reads EOF; one with unexpected bytes (a backend talking out of turn)
/// is unusable too. Over TLS any record counts as such (a close_notify, a late session
/// ticket): such a connection is closed, never wrongly kept.
fn still_open(stream: &BackendStream) -> bool {
    let mut byte = 0u8;
    // SAFETY: a one-byte recv into a local byte, on a socket `stream` owns; MSG_DONTWAIT
    // makes it return at once and MSG_PEEK leaves the socket's data alone.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&raw mut byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
}

#[cfg(test)]
mod tests {
    use super::*;
    use monoio::net::TcpStream;

    /// Runs `test` on a runtime, with the address of a listening socket to connect to.
    fn run<F: Future<Output = ()>>(test: impl FnOnce(std::net::SocketAddr) -> F) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap();
        rt.block_on(test(addr));
    }

    async fn plain(addr: std::net::SocketAddr) -> BackendStream {
        BackendStream::Plain(TcpStream::connect_addr(addr).await.unwrap())
    }

    #[test]
    fn close_idle_takes_each_backends_least_recently_used_first_up_to_the_count() {
        run(|addr| async move {
            let mut pool = Pool::new(2, 8, Duration::from_secs(60), |_| Kept::Plain);
            let now = Instant::now();
            let mut newest = None;
            for backend in [0, 0, 0, 1, 1] {
                let stream = TcpStream::connect_addr(addr).await.unwrap();
                newest = stream.local_addr().ok();
                let stream = BackendStream::Plain(stream);
                pool.put(BackendId(backend), stream, now);
            }
            assert_eq!((pool.idle_count(), pool.capacity()), (5, 16));
            assert_eq!(pool.close_idle(4), 4);
            assert_eq!(pool.idle_count(), 1);
            assert!(pool.take(BackendId(0), now).is_none());
            let Some(BackendStream::Plain(kept)) = &pool.take(BackendId(1), now) else {
                panic!("backend 1's connection is kept");
            };
            assert_eq!(kept.local_addr().ok(), newest);
            assert_eq!(pool.close_idle(usize::MAX), 0);
        });
    }

    #[test]
    fn a_reload_closes_and_refuses_connections_of_backends_no_longer_served() {
        run(|addr| async move {
            let mut pool = Pool::new(2, 8, Duration::from_secs(60), |_| Kept::Plain);
            let now = Instant::now();
            for backend in [0, 1, 1] {
                pool.put(BackendId(backend), plain(addr).await, now);
            }
            let served = |b| match b {
                BackendId(0) => Kept::Nothing,
                _ => Kept::Plain,
            };
            pool.reconfigure(3, 1, Duration::from_secs(60), served);
            assert_eq!(
                pool.idle_count(),
                1,
                "backend 0 closed, backend 1 down to 1"
            );
            assert_eq!(pool.capacity(), 3);
            for backend in [0, 2] {
                pool.put(BackendId(backend), plain(addr).await, now);
            }
            assert!(pool.take(BackendId(0), now).is_none(), "not kept");
            assert!(pool.take(BackendId(2), now).is_some(), "a new backend's is");
        });
    }

    #[test]
    fn a_backend_moved_to_tls_keeps_none_of_its_plain_connections() {
        run(|addr| async move {
            let mut pool = Pool::new(2, 8, Duration::from_secs(60), |_| Kept::Plain);
            let now = Instant::now();
            for backend in [0, 1] {
                pool.put(BackendId(backend), plain(addr).await, now);
            }
            let tls_for_0 = |b| match b {
                BackendId(0) => Kept::Tls(7),
                _ => Kept::Plain,
            };
            pool.reconfigure(2, 8, Duration::from_secs(60), tls_for_0);
            assert_eq!(pool.idle_count(), 1, "backend 0's plain connection closed");
            pool.put(BackendId(0), plain(addr).await, now);
            assert!(
                pool.take(BackendId(0), now).is_none(),
                "nor is one taken back"
            );
            assert!(pool.take(BackendId(1), now).is_some());
        });
    }
}
