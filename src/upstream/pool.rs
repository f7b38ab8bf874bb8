//! Per-worker keep-alive pool of backend connections.
//!
//! Connections are reused most-recently-released first: the freshest one is the least likely
//! to have been closed by the backend's own idle timeout. A connection that nevertheless turns
//! out dead is caught by the proxy's retry-once rule, not here.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use super::BackendId;

struct IdleConn {
    stream: TcpStream,
    since: Instant,
}

pub struct Pool {
    idle: Vec<VecDeque<IdleConn>>,
    max_idle_per_backend: usize,
    idle_timeout: Duration,
}

impl Pool {
    pub fn new(backends: usize, max_idle_per_backend: usize, idle_timeout: Duration) -> Self {
        Self {
            idle: (0..backends).map(|_| VecDeque::new()).collect(),
            max_idle_per_backend,
            idle_timeout,
        }
    }

    /// An idle connection to `backend` that has not outlived the idle timeout.
    pub fn take(&mut self, backend: BackendId, now: Instant) -> Option<TcpStream> {
        let queue = self.idle.get_mut(backend.0)?;
        let newest = queue.pop_back()?;
        if now.duration_since(newest.since) >= self.idle_timeout {
            // The newest is expired, so every older one is too.
            queue.clear();
            return None;
        }
        Some(newest.stream)
    }

    /// Keeps `stream` for reuse, closing the oldest idle one when the backend's slots are full.
    pub fn put(&mut self, backend: BackendId, stream: TcpStream, now: Instant) {
        if self.max_idle_per_backend == 0 {
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

    pub fn idle_count(&self, backend: BackendId) -> usize {
        self.idle.get(backend.0).map_or(0, VecDeque::len)
    }
}
