//! Latency histograms (hdrhistogram) per worker, and how the admin thread gets a copy.
//!
//! A histogram is many counters updated together, not an atomic value, so the admin thread
//! never reads the one a worker records into. Instead each worker records into its own
//! (`Recorder`, worker-local), and publishes on demand: the admin thread raises the worker's
//! `wanted` flag, the worker's timer sweep (every 50 ms) sees it, adds what it recorded since
//! its last publication into the worker's shared slot under that slot's mutex, and clears its
//! own. The mutex is taken only by that publication and by a scrape, never on the request
//! path, and a scrape waits at most one sweep (plus however late the timer fires) for fresh
//! data, or uses the last publication if a worker does not answer in time. Publishing only
//! when asked costs nothing while nobody scrapes; publishing a delta means the copy under the
//! lock is only a merge of a few KiB.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Values are microseconds, from 1 µs to an hour, at 2 significant digits (1% error).
const LOWEST: u64 = 1;
const HIGHEST: u64 = 3_600_000_000;
const SIGNIFICANT_DIGITS: u8 = 2;

pub fn empty_histogram() -> Histogram<u64> {
    // Constant bounds, which hdrhistogram accepts (`histogram_bounds_are_accepted`).
    Histogram::new_with_bounds(LOWEST, HIGHEST, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// The latencies measured, one histogram each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latency {
    /// Request sent whole to the backend until its response head (per attempt).
    UpstreamFirstByte,
    /// A new backend connection's connect (TCP, and the TLS handshake to a TLS backend).
    UpstreamConnect,
    /// Request head complete until the response's last byte written to the client.
    Request,
}

impl Latency {
    pub const ALL: [Latency; 3] = [
        Latency::UpstreamFirstByte,
        Latency::UpstreamConnect,
        Latency::Request,
    ];
    const COUNT: usize = Self::ALL.len();

    pub fn index(self) -> usize {
        self as usize
    }

    /// The counter that sums this latency's samples, in microseconds.
    pub fn sum(self) -> super::Counter {
        use super::Counter;
        match self {
            Latency::UpstreamFirstByte => Counter::UpstreamFirstByteMicros,
            Latency::UpstreamConnect => Counter::UpstreamConnectMicros,
            Latency::Request => Counter::RequestMicros,
        }
    }
}

/// One worker's histograms, as published.
pub struct Published {
    pub histograms: [Histogram<u64>; Latency::COUNT],
}

struct Slot {
    wanted: AtomicBool,
    /// Bumped by each publication, so a scrape can tell it has a fresh one.
    generation: AtomicU64,
    published: Mutex<Published>,
}

/// Every worker's published histograms.
pub struct LatencyBoard {
    slots: Box<[Slot]>,
}

impl LatencyBoard {
    pub fn new(workers: usize) -> Self {
        let slots = (0..workers)
            .map(|_| Slot {
                wanted: AtomicBool::new(false),
                generation: AtomicU64::new(0),
                published: Mutex::new(Published {
                    histograms: std::array::from_fn(|_| empty_histogram()),
                }),
            })
            .collect();
        Self { slots }
    }

    /// Asks every worker to publish and waits until all have, or `within` passed; then
    /// returns the histograms of all workers merged, and each worker's.
    pub fn collect(&self, within: Duration) -> Vec<Published> {
        // Generations first: a publication between the two steps then counts as fresh.
        let before: Vec<u64> = self
            .slots
            .iter()
            .map(|s| s.generation.load(Ordering::Acquire))
            .collect();
        for slot in &self.slots {
            slot.wanted.store(true, Ordering::Release);
        }
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            let fresh = self
                .slots
                .iter()
                .zip(&before)
                .all(|(s, g)| s.generation.load(Ordering::Acquire) != *g);
            if fresh {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.slots
            .iter()
            .map(|slot| {
                let published = slot.published.lock().unwrap_or_else(|e| e.into_inner());
                Published {
                    histograms: published.histograms.clone(),
                }
            })
            .collect()
    }
}

/// What a worker records into; only its own thread touches it.
pub struct Recorder {
    histograms: [Histogram<u64>; Latency::COUNT],
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            histograms: std::array::from_fn(|_| empty_histogram()),
        }
    }
}

impl Recorder {
    #[inline]
    pub fn record(&mut self, latency: Latency, micros: u64) {
        if let Some(h) = self.histograms.get_mut(latency.index()) {
            h.saturating_record(micros.max(LOWEST));
        }
    }

    /// Publishes into `worker`'s slot if a scrape asked for it (from the timer sweep).
    pub fn publish_if_wanted(&mut self, board: &LatencyBoard, worker: usize) {
        let Some(slot) = board.slots.get(worker) else {
            return;
        };
        if !slot.wanted.swap(false, Ordering::AcqRel) {
            return;
        }
        {
            let mut published = slot.published.lock().unwrap_or_else(|e| e.into_inner());
            for (shared, own) in published.histograms.iter_mut().zip(&mut self.histograms) {
                // Same bounds on both sides: adding cannot fail.
                let _ = shared.add(&*own);
                own.reset();
            }
        }
        slot.generation.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_bounds_are_accepted() {
        assert!(Histogram::<u64>::new_with_bounds(LOWEST, HIGHEST, SIGNIFICANT_DIGITS).is_ok());
    }

    #[test]
    fn a_scrape_sees_what_was_recorded_once_the_worker_publishes() {
        let board = LatencyBoard::new(1);
        let mut recorder = Recorder::default();
        recorder.record(Latency::UpstreamFirstByte, 3_000);
        // Not asked: nothing moves.
        recorder.publish_if_wanted(&board, 0);
        let stale = board.collect(Duration::ZERO);
        assert_eq!(stale[0].histograms[0].len(), 0);
        // That scrape's request is still pending: withdraw it, so the next is seen alone.
        board.slots[0].wanted.store(false, Ordering::Release);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !board.slots[0].wanted.load(Ordering::Acquire) {
                    std::thread::yield_now();
                }
                recorder.publish_if_wanted(&board, 0);
            });
            let fresh = board.collect(Duration::from_secs(5));
            assert_eq!(fresh[0].histograms[0].len(), 1);
        });
    }
}
