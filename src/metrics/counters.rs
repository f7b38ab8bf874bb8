//! Per-worker counters: one block of `AtomicU64` per worker, written by that worker alone and
//! read by the admin thread when it is scraped.
//!
//! As `upstream/load.rs` does for in-flight counts: each worker's block starts on its own
//! 128-byte boundary (two cache lines, against adjacent-line prefetch), so no two workers
//! ever write the same line. A single writer needs no read-modify-write: `add` is a Relaxed
//! load and store (two plain `mov`s on x86-64), never a locked `fetch_add`. A reader sees each
//! counter whole (an atomic load), and every counter only grows; the counters of one scrape
//! are not one instant's, which Prometheus does not ask for.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters per 128-byte block.
const PER_LINE: usize = 16;

#[repr(align(128))]
struct Line([AtomicU64; PER_LINE]);

impl Line {
    fn new() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// `workers` blocks of `per_worker` counters each.
pub struct CounterBoard {
    lines: Box<[Line]>,
    lines_per_worker: usize,
    per_worker: usize,
    workers: usize,
}

impl CounterBoard {
    pub fn new(workers: usize, per_worker: usize) -> Self {
        let lines_per_worker = per_worker.div_ceil(PER_LINE).max(1);
        let lines = (0..workers * lines_per_worker)
            .map(|_| Line::new())
            .collect();
        Self {
            lines,
            lines_per_worker,
            per_worker,
            workers,
        }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    fn slot(&self, worker: usize, index: usize) -> Option<&AtomicU64> {
        if worker >= self.workers || index >= self.per_worker {
            return None;
        }
        let line = worker * self.lines_per_worker + index / PER_LINE;
        Some(&self.lines.get(line)?.0[index % PER_LINE])
    }

    /// Adds `n` to `worker`'s counter `index`. Only `worker`'s own thread may call this: the
    /// load and store are not one atomic step.
    #[inline]
    pub fn add(&self, worker: usize, index: usize, n: u64) {
        if let Some(slot) = self.slot(worker, index) {
            slot.store(
                slot.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            );
        }
    }

    /// Sets a gauge (only `worker`'s own thread).
    pub fn set(&self, worker: usize, index: usize, value: u64) {
        if let Some(slot) = self.slot(worker, index) {
            slot.store(value, Ordering::Relaxed);
        }
    }

    pub fn get(&self, worker: usize, index: usize) -> u64 {
        self.slot(worker, index)
            .map_or(0, |slot| slot.load(Ordering::Relaxed))
    }

    /// The sum over every worker.
    pub fn total(&self, index: usize) -> u64 {
        (0..self.workers).map(|w| self.get(w, index)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_count_apart_and_sum_together() {
        let board = CounterBoard::new(3, 20);
        board.add(0, 19, 2);
        board.add(2, 19, 5);
        board.add(1, 0, 1);
        assert_eq!(board.get(0, 19), 2);
        assert_eq!(board.total(19), 7);
        assert_eq!(board.total(0), 1);
        // Out of range: ignored, never a panic.
        board.add(3, 0, 1);
        board.add(0, 20, 1);
        assert_eq!(board.get(9, 99), 0);
    }

    #[test]
    fn blocks_of_different_workers_never_share_a_line() {
        let board = CounterBoard::new(2, 3);
        let a = board.slot(0, 2).unwrap() as *const _ as usize;
        let b = board.slot(1, 0).unwrap() as *const _ as usize;
        assert!(b - a >= 128 - 16);
        assert_eq!(b % 128, 0);
    }
}
