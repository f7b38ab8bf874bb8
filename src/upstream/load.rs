//! Per-backend load as the balancers see it: in-flight requests host-wide and response-time
//! EWMA, without sharing anything mutable on the request path.
//!
//! Every worker keeps its own exact in-flight count per backend (`LoadView`) and publishes it
//! to its block of a shared `LoadBoard` with a Relaxed store: one writer per cache line, no
//! read-modify-write shared between cores. Other workers read those blocks only in
//! `LoadView::reconcile()`, which the worker calls every `runtime.reconcile_interval`
//! (default 50 ms).
//!
//! Staleness bound: `LoadView::inflight()` is the other workers' total as of this worker's last
//! `reconcile()` (so at most one reconcile interval old, plus however late the worker's timer
//! fires) plus this worker's own exact count, which is always current. A host-wide limit such as
//! `max_conns` can therefore be overshot by what the other workers start within one interval.
//!
//! Each worker also publishes, per backend, when that backend last answered one of its requests
//! and the latest send time of a request it answered (millisecond times, Relaxed stores into
//! the worker's own lines). Nothing on the request path reads them: stalled-backend detection
//! does, from the worker's timer sweep, to tell a backend that answers nothing from one that is
//! only slow on one request, or from a group that is slow as a whole.
//!
//! Latency EWMA ("peak EWMA"): a sample above the estimate replaces it at once, so a backend that
//! turns slow is avoided immediately; a sample below it pulls it down by `EWMA_ALPHA` per sample
//! (≈ the last 8 samples dominate). A backend that gets no samples (because the balancers avoid
//! it) decays towards zero with a half-life of `IDLE_HALF_LIFE`, so it is probed again after a
//! while instead of being shunned forever. A never-measured backend has no estimate (`None`);
//! the p2c balancer then compares in-flight counts only, so it looks neither infinitely good nor
//! infinitely bad.
//!
//! Growth: backends keep their `BackendId` across config reloads (see `BackendIds`), so a
//! request started before a reload finishes on the same counters as the requests after it.
//! Both the board and each view hold their backends in chunks of `CHUNK`, allocated when a
//! reload first needs them and never moved: growing takes no lock and no `&mut`, and the
//! request path reads through one more pointer. A removed backend's entries stay while its
//! last requests may run; then its number, and its entries (`forget`), go to the next new
//! backend, so the board follows the backend set rather than its history.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::clock::coarse_now;

use super::BackendId;

/// Weight of a sample that lowers the estimate.
const EWMA_ALPHA: f64 = 0.125;
/// How long an unsampled backend's estimate takes to halve.
const IDLE_HALF_LIFE: Duration = Duration::from_secs(10);
/// Marks a backend whose latency was never measured.
const UNMEASURED: f64 = -1.0;

/// Counts per cache line (128 bytes: two 64-byte lines, against adjacent-line prefetch).
const COUNTS_PER_LINE: usize = 32;
/// Backends per chunk: one line of counts per worker.
const CHUNK: usize = COUNTS_PER_LINE;
/// Most backends a process numbers in its life (`BackendIds`), removed ones included.
pub const MAX_BACKENDS: usize = 65_536;

/// One worker's counts never share a 128-byte block with another worker's.
#[repr(align(128))]
struct Line([AtomicU32; COUNTS_PER_LINE]);

impl Line {
    fn new() -> Self {
        Self(std::array::from_fn(|_| AtomicU32::new(0)))
    }
}

/// Times per cache-line pair, as for the counts.
const TIMES_PER_LINE: usize = 16;
const TIME_LINES_PER_CHUNK: usize = CHUNK / TIMES_PER_LINE;

#[repr(align(128))]
struct TimeLine([AtomicU64; TIMES_PER_LINE]);

impl TimeLine {
    fn filled(value: u64) -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(value)))
    }
}

/// An answer time meaning "never answered".
const NEVER: u64 = 0;

/// Entries for up to `MAX_BACKENDS` backends in chunks of `CHUNK`, allocated on demand and
/// never moved.
struct Chunks<T> {
    chunks: Box<[OnceLock<Box<T>>]>,
}

impl<T> Chunks<T> {
    fn new() -> Self {
        let chunks = MAX_BACKENDS / CHUNK;
        Self {
            chunks: (0..chunks).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The chunk holding `backend`, and its place in it.
    #[inline]
    fn get(&self, backend: usize) -> Option<(&T, usize)> {
        let chunk = self.chunks.get(backend / CHUNK)?.get()?;
        Some((chunk, backend % CHUNK))
    }

    /// Makes room for backends `0..backends` (at most `MAX_BACKENDS`).
    fn grow(&self, backends: usize, make: impl Fn() -> T) {
        let needed = backends.div_ceil(CHUNK).min(self.chunks.len());
        for chunk in &self.chunks[..needed] {
            chunk.get_or_init(|| Box::new(make()));
        }
    }
}

/// The board's lines for one chunk of backends: each worker's own.
struct BoardChunk {
    counts: Box<[Line]>,
    /// When the backend last answered, in milliseconds since `epoch` plus one (`NEVER` is 0).
    answered_at: Box<[TimeLine]>,
    /// The latest send time, on the same clock, of a request the backend answered.
    answered_sent: Box<[TimeLine]>,
    /// The latency EWMA in seconds (`f64::to_bits`, `UNMEASURED` until measured) as of the
    /// worker's last `reconcile()`, for `/status`.
    ewma_seconds: Box<[TimeLine]>,
}

impl BoardChunk {
    fn new(workers: usize) -> Self {
        let time_lines = |fill| {
            (0..workers * TIME_LINES_PER_CHUNK)
                .map(|_| TimeLine::filled(fill))
                .collect()
        };
        Self {
            counts: (0..workers).map(|_| Line::new()).collect(),
            answered_at: time_lines(NEVER),
            answered_sent: time_lines(NEVER),
            ewma_seconds: time_lines(UNMEASURED.to_bits()),
        }
    }
}

/// Every worker's published in-flight count per backend, and when each backend last answered
/// each worker; shared (`Arc`) by all workers.
pub struct LoadBoard {
    chunks: Chunks<BoardChunk>,
    /// Backends with room on the board (`grow`).
    backends: AtomicUsize,
    epoch: Instant,
    workers: usize,
}

/// A worker index at or beyond the board's worker count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoSuchWorker {
    pub worker: usize,
    pub workers: usize,
}

impl std::fmt::Display for NoSuchWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "worker {} does not exist (the load board has {})",
            self.worker, self.workers
        )
    }
}

impl std::error::Error for NoSuchWorker {}

/// Which of a chunk's time lines.
#[derive(Clone, Copy)]
enum Times {
    AnsweredAt,
    AnsweredSent,
    EwmaSeconds,
}

impl LoadBoard {
    /// A board for `workers` workers with room for backends `0..backends`.
    pub fn new(workers: usize, backends: usize) -> Arc<Self> {
        let board = Self {
            chunks: Chunks::new(),
            backends: AtomicUsize::new(0),
            epoch: coarse_now(),
            workers,
        };
        board.grow(backends);
        Arc::new(board)
    }

    /// Makes room for backends `0..backends` (called before workers are told of them).
    pub fn grow(&self, backends: usize) {
        let backends = backends.min(MAX_BACKENDS);
        self.chunks.grow(backends, || BoardChunk::new(self.workers));
        self.backends.fetch_max(backends, Ordering::AcqRel);
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    pub fn backends(&self) -> usize {
        self.backends.load(Ordering::Acquire)
    }

    #[inline]
    fn count(&self, worker: usize, backend: usize) -> Option<&AtomicU32> {
        let (chunk, at) = self.chunks.get(backend)?;
        Some(&chunk.counts.get(worker)?.0[at])
    }

    /// Forgets when `backend` last answered: its number goes to a new backend (see
    /// `BackendIds`), and nothing can be in flight to it.
    pub fn forget(&self, backend: BackendId) {
        for worker in 0..self.workers {
            for which in [Times::AnsweredAt, Times::AnsweredSent] {
                if let Some(time) = self.time(which, worker, backend.0) {
                    time.store(NEVER, Ordering::Relaxed);
                }
            }
        }
    }

    /// `worker`'s in-flight count for `backend` as it last published it (for `/status`).
    pub fn published(&self, worker: usize, backend: usize) -> u32 {
        self.count(worker, backend)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn time(&self, which: Times, worker: usize, backend: usize) -> Option<&AtomicU64> {
        let (chunk, at) = self.chunks.get(backend)?;
        let lines = match which {
            Times::AnsweredAt => &chunk.answered_at,
            Times::AnsweredSent => &chunk.answered_sent,
            Times::EwmaSeconds => &chunk.ewma_seconds,
        };
        let line = lines.get(worker * TIME_LINES_PER_CHUNK + at / TIMES_PER_LINE)?;
        Some(&line.0[at % TIMES_PER_LINE])
    }

    /// `worker`'s latency estimate for `backend` as of its last `reconcile()` (for `/status`);
    /// `None` until that worker has measured it.
    pub fn published_ewma(&self, worker: usize, backend: usize) -> Option<Duration> {
        let bits = self
            .time(Times::EwmaSeconds, worker, backend)?
            .load(Ordering::Relaxed);
        Duration::try_from_secs_f64(f64::from_bits(bits)).ok()
    }

    fn publish_ewma(&self, worker: usize, backend: usize, seconds: f64) {
        if let Some(slot) = self.time(Times::EwmaSeconds, worker, backend) {
            slot.store(seconds.to_bits(), Ordering::Relaxed);
        }
    }

    /// The latest of every worker's `which` time for `backend`.
    fn latest(&self, which: Times, backend: BackendId) -> u64 {
        (0..self.workers)
            .filter_map(|w| self.time(which, w, backend.0))
            .map(|t| t.load(Ordering::Relaxed))
            .max()
            .unwrap_or(NEVER)
    }

    /// `at` on the board's clock: milliseconds since its epoch, plus one.
    fn stamp(&self, at: Instant) -> u64 {
        let millis = at.saturating_duration_since(self.epoch).as_millis();
        u64::try_from(millis).unwrap_or(u64::MAX - 1) + 1
    }

    /// Whether any worker got an answer from `backend` after `since`.
    pub fn answered_after(&self, backend: BackendId, since: Instant) -> bool {
        self.latest(Times::AnsweredAt, backend) > self.stamp(since)
    }

    /// Whether `backend` answered some worker a request sent at or after `since`: it made a
    /// whole round trip while a request sent at `since` waited.
    pub fn answered_one_sent_since(&self, backend: BackendId, since: Instant) -> bool {
        self.latest(Times::AnsweredSent, backend) >= self.stamp(since)
    }

    /// Sum of every worker's published count for `backend` except `worker`'s own.
    fn others_total(&self, worker: usize, backend: usize) -> u32 {
        (0..self.workers)
            .filter(|&w| w != worker)
            .filter_map(|w| self.count(w, backend))
            .fold(0u32, |sum, c| sum.saturating_add(c.load(Ordering::Relaxed)))
    }
}

/// One backend as one worker sees it.
struct BackendLoad {
    /// This worker's exact in-flight count.
    local: Cell<u32>,
    /// The other workers' total at the last `reconcile()`.
    others: Cell<u32>,
    /// Response-time EWMA in seconds, or `UNMEASURED`.
    ewma: Cell<f64>,
    sampled_since_reconcile: Cell<bool>,
}

impl BackendLoad {
    fn new() -> Self {
        Self {
            local: Cell::new(0),
            others: Cell::new(0),
            ewma: Cell::new(UNMEASURED),
            sampled_since_reconcile: Cell::new(false),
        }
    }
}

/// One worker's view of backend load; not shared (interior mutability via `Cell`, so the
/// worker's tasks can all use it through `&`). One view serves every config generation of
/// the worker.
pub struct LoadView {
    board: Arc<LoadBoard>,
    worker: usize,
    backends: Chunks<[BackendLoad; CHUNK]>,
    /// Backends the view has room for.
    len: Cell<usize>,
    /// Factor applied per `reconcile()` to the EWMA of a backend with no new sample.
    idle_decay: f64,
}

impl LoadView {
    /// Worker `worker`'s view of `board`; `reconcile_interval` is how often the worker will
    /// call `reconcile()` (it sets the idle decay of the latency estimates).
    pub fn new(
        board: Arc<LoadBoard>,
        worker: usize,
        reconcile_interval: Duration,
    ) -> Result<Self, NoSuchWorker> {
        if worker >= board.workers {
            return Err(NoSuchWorker {
                worker,
                workers: board.workers,
            });
        }
        Ok(Self::for_worker(board, worker, reconcile_interval))
    }

    /// A view on a private one-worker board: for a single worker, tests and tools.
    pub fn standalone(backends: usize, reconcile_interval: Duration) -> Self {
        Self::for_worker(LoadBoard::new(1, backends), 0, reconcile_interval)
    }

    fn for_worker(board: Arc<LoadBoard>, worker: usize, reconcile_interval: Duration) -> Self {
        let halvings = reconcile_interval.as_secs_f64() / IDLE_HALF_LIFE.as_secs_f64();
        let view = Self {
            board,
            worker,
            backends: Chunks::new(),
            len: Cell::new(0),
            idle_decay: 0.5f64.powf(halvings),
        };
        view.grow();
        view
    }

    /// Makes room for every backend the board has room for (after a reload added some).
    pub fn grow(&self) {
        let backends = self.board.backends();
        self.backends
            .grow(backends, || std::array::from_fn(|_| BackendLoad::new()));
        self.len.set(self.len.get().max(backends));
    }

    #[inline]
    fn get(&self, backend: BackendId) -> Option<&BackendLoad> {
        let (chunk, at) = self.backends.get(backend.0)?;
        Some(&chunk[at])
    }

    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Forgets `backend`'s latency estimate: its number goes to a new backend.
    pub fn forget(&self, backend: BackendId) {
        if let Some(load) = self.get(backend) {
            load.others.set(0);
            load.ewma.set(UNMEASURED);
            load.sampled_since_reconcile.set(false);
        }
    }

    /// A request to `backend` starts.
    pub fn start(&self, backend: BackendId) {
        self.set_local(backend, |n| n.saturating_add(1));
    }

    /// A request to `backend` ends; `response_time` (request sent to response head received)
    /// feeds the latency EWMA when the backend answered.
    pub fn finish(&self, backend: BackendId, response_time: Option<Duration>) {
        self.set_local(backend, |n| n.saturating_sub(1));
        if let Some(sample) = response_time {
            self.record_latency(backend, sample);
        }
    }

    /// `backend` sent, at `at`, the response head of a request sent at `sent`: published for
    /// stalled-backend detection.
    pub fn answered(&self, backend: BackendId, sent: Instant, at: Instant) {
        let board = &self.board;
        if let Some(time) = board.time(Times::AnsweredAt, self.worker, backend.0) {
            time.store(board.stamp(at), Ordering::Relaxed);
        }
        // Responses to one worker can come out of order (two connections): keep the latest.
        if let Some(time) = board.time(Times::AnsweredSent, self.worker, backend.0) {
            let sent = board.stamp(sent);
            if sent > time.load(Ordering::Relaxed) {
                time.store(sent, Ordering::Relaxed);
            }
        }
    }

    /// The board every worker publishes to.
    pub fn board(&self) -> &LoadBoard {
        &self.board
    }

    fn set_local(&self, backend: BackendId, update: impl FnOnce(u32) -> u32) {
        let (Some(load), Some(published)) =
            (self.get(backend), self.board.count(self.worker, backend.0))
        else {
            return;
        };
        let count = update(load.local.get());
        load.local.set(count);
        published.store(count, Ordering::Relaxed);
    }

    fn record_latency(&self, backend: BackendId, sample: Duration) {
        let Some(load) = self.get(backend) else {
            return;
        };
        let sample = sample.as_secs_f64();
        let estimate = load.ewma.get();
        let next = if estimate == UNMEASURED || sample >= estimate {
            sample
        } else {
            estimate + EWMA_ALPHA * (sample - estimate)
        };
        load.ewma.set(next);
        load.sampled_since_reconcile.set(true);
    }

    /// Requests in flight to `backend` host-wide: the other workers' total as of the last
    /// `reconcile()` plus this worker's exact count.
    pub fn inflight(&self, backend: BackendId) -> u32 {
        self.get(backend)
            .map_or(0, |load| load.local.get().saturating_add(load.others.get()))
    }

    /// This worker's own in-flight requests to `backend`.
    pub fn local_inflight(&self, backend: BackendId) -> u32 {
        self.get(backend).map_or(0, |load| load.local.get())
    }

    /// Response-time estimate of `backend`; `None` until its first response.
    pub fn ewma(&self, backend: BackendId) -> Option<Duration> {
        let seconds = self.get(backend)?.ewma.get();
        if seconds == UNMEASURED {
            return None;
        }
        Duration::try_from_secs_f64(seconds).ok()
    }

    /// Takes a fresh snapshot of the other workers' counts, ages the latency estimates of
    /// backends that got no sample since the last call and publishes the estimates. Call
    /// every `reconcile_interval`.
    pub fn reconcile(&self) {
        for backend in 0..self.len.get() {
            let Some(load) = self.get(BackendId(backend)) else {
                continue;
            };
            load.others
                .set(self.board.others_total(self.worker, backend));
            let ewma = load.ewma.get();
            if !load.sampled_since_reconcile.replace(false) && ewma != UNMEASURED {
                load.ewma.set(ewma * self.idle_decay);
            }
            self.board
                .publish_ewma(self.worker, backend, load.ewma.get());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(50);

    fn two_workers(backends: usize) -> (LoadView, LoadView) {
        let board = LoadBoard::new(2, backends);
        (
            LoadView::new(board.clone(), 0, INTERVAL).unwrap(),
            LoadView::new(board, 1, INTERVAL).unwrap(),
        )
    }

    #[test]
    fn answers_are_seen_by_every_worker_at_once() {
        // 20 backends: the second worker's times start a line pair of their own.
        let (a, b) = two_workers(20);
        let sent = Instant::now();
        let later = sent + Duration::from_millis(5);
        let much_later = later + Duration::from_millis(5);
        assert!(!b.board().answered_after(BackendId(17), sent), "never");
        a.answered(BackendId(17), sent, later);
        assert!(b.board().answered_after(BackendId(17), sent));
        assert!(
            !b.board().answered_after(BackendId(17), later),
            "not after itself"
        );
        assert!(b.board().answered_one_sent_since(BackendId(17), sent));
        assert!(!b.board().answered_one_sent_since(BackendId(17), later));
        assert!(
            !b.board().answered_after(BackendId(16), sent),
            "its neighbour"
        );
        b.answered(BackendId(16), later, much_later);
        b.answered(BackendId(16), sent, much_later);
        assert!(a.board().answered_after(BackendId(16), later));
        assert!(
            a.board().answered_one_sent_since(BackendId(16), later),
            "an older request answered later does not hide a newer one"
        );
    }

    #[test]
    fn a_burst_on_one_worker_is_seen_by_another_only_after_it_reconciles() {
        let (a, b) = two_workers(3);
        for _ in 0..10 {
            a.start(BackendId(1));
        }
        assert_eq!(a.inflight(BackendId(1)), 10);
        assert_eq!(b.inflight(BackendId(1)), 0);
        b.reconcile();
        assert_eq!(b.inflight(BackendId(1)), 10);
        b.start(BackendId(1));
        assert_eq!(b.inflight(BackendId(1)), 11, "own changes count at once");
        for _ in 0..10 {
            a.finish(BackendId(1), None);
        }
        assert_eq!(
            b.inflight(BackendId(1)),
            11,
            "stale until the next reconcile"
        );
        b.reconcile();
        assert_eq!(b.inflight(BackendId(1)), 1);
    }

    #[test]
    fn counts_of_different_backends_are_independent() {
        let (a, b) = two_workers(40);
        a.start(BackendId(0));
        a.start(BackendId(33));
        a.start(BackendId(33));
        b.start(BackendId(32));
        a.reconcile();
        b.reconcile();
        let counts = |v: &LoadView| [0, 1, 32, 33, 39].map(|i| v.inflight(BackendId(i)));
        assert_eq!(counts(&a), [1, 0, 1, 2, 0]);
        assert_eq!(counts(&b), [1, 0, 1, 2, 0]);
        assert_eq!(a.local_inflight(BackendId(32)), 0);
        assert_eq!(b.local_inflight(BackendId(32)), 1);
    }

    #[test]
    fn finish_never_underflows() {
        let (a, b) = two_workers(2);
        a.finish(BackendId(0), None);
        a.finish(BackendId(0), None);
        assert_eq!(a.inflight(BackendId(0)), 0);
        b.reconcile();
        assert_eq!(b.inflight(BackendId(0)), 0);
        a.start(BackendId(0));
        assert_eq!(a.inflight(BackendId(0)), 1);
    }

    #[test]
    fn unknown_backends_and_workers_are_ignored_without_panicking() {
        let board = LoadBoard::new(2, 2);
        assert_eq!(
            LoadView::new(board.clone(), 2, INTERVAL).err(),
            Some(NoSuchWorker {
                worker: 2,
                workers: 2
            })
        );
        let view = LoadView::new(board, 0, INTERVAL).unwrap();
        view.start(BackendId(70));
        view.finish(BackendId(70), Some(Duration::from_millis(1)));
        view.reconcile();
        assert_eq!(view.inflight(BackendId(70)), 0);
        assert_eq!(view.ewma(BackendId(70)), None);
    }

    #[test]
    fn growing_keeps_every_count_in_place_and_stops_at_the_maximum() {
        let board = LoadBoard::new(2, 3);
        let view = LoadView::new(board.clone(), 0, INTERVAL).unwrap();
        view.start(BackendId(1));
        let counted = board.count(0, 1).unwrap() as *const AtomicU32;
        view.start(BackendId(40));
        assert_eq!(view.inflight(BackendId(40)), 0, "no room yet");
        board.grow(100);
        view.grow();
        view.start(BackendId(40));
        view.finish(BackendId(1), Some(Duration::from_millis(3)));
        assert_eq!(view.inflight(BackendId(1)), 0);
        assert_eq!(view.inflight(BackendId(40)), 1);
        assert_eq!(board.published(0, 40), 1);
        assert!(std::ptr::eq(counted, board.count(0, 1).unwrap()));
        board.grow(MAX_BACKENDS + 5);
        assert_eq!(board.backends(), MAX_BACKENDS);
        view.grow();
        view.start(BackendId(MAX_BACKENDS - 1));
        view.start(BackendId(MAX_BACKENDS));
        assert_eq!(view.inflight(BackendId(MAX_BACKENDS - 1)), 1);
        assert_eq!(view.inflight(BackendId(MAX_BACKENDS)), 0);
    }

    #[test]
    fn workers_blocks_do_not_share_a_cache_line() {
        let board = LoadBoard::new(2, 1);
        let first = board.count(0, 0).unwrap() as *const AtomicU32 as usize;
        let second = board.count(1, 0).unwrap() as *const AtomicU32 as usize;
        assert_eq!(first % 128, 0);
        assert!(second - first >= 128);
    }

    #[test]
    fn latency_is_unknown_until_measured_then_jumps_up_and_decays_down() {
        let view = LoadView::standalone(1, INTERVAL);
        let b = BackendId(0);
        assert_eq!(view.ewma(b), None);
        view.finish(b, None);
        assert_eq!(view.ewma(b), None, "no response, no sample");
        let millis = |view: &LoadView| view.ewma(b).unwrap().as_secs_f64() * 1000.0;
        view.finish(b, Some(Duration::from_millis(10)));
        assert!((millis(&view) - 10.0).abs() < 1e-6);
        view.finish(b, Some(Duration::from_millis(100)));
        assert!((millis(&view) - 100.0).abs() < 1e-6, "peaks count at once");
        view.finish(b, Some(Duration::from_millis(20)));
        assert!(
            (millis(&view) - 90.0).abs() < 1e-6,
            "lower samples blend in by 1/8"
        );
        for _ in 0..100 {
            view.finish(b, Some(Duration::from_millis(20)));
        }
        assert!((millis(&view) - 20.0).abs() < 0.1, "{}", millis(&view));
    }

    #[test]
    fn estimates_are_published_by_reconcile_for_each_worker() {
        let (a, b) = two_workers(20);
        let board = a.board();
        a.finish(BackendId(17), Some(Duration::from_millis(30)));
        assert_eq!(board.published_ewma(0, 17), None, "not before a reconcile");
        a.reconcile();
        b.reconcile();
        let published = board.published_ewma(0, 17).unwrap().as_secs_f64();
        assert!((published - 0.030).abs() < 0.0005, "{published}");
        assert_eq!(board.published_ewma(1, 17), None, "b never measured it");
        assert_eq!(board.published_ewma(0, 16), None, "its neighbour");
        assert_eq!(board.published_ewma(2, 17), None, "no such worker");
        assert_eq!(board.published_ewma(0, 70), None, "no such backend");
    }

    #[test]
    fn an_unsampled_estimate_halves_in_ten_seconds_of_reconciles() {
        let view = LoadView::standalone(2, INTERVAL);
        view.finish(BackendId(0), Some(Duration::from_millis(100)));
        view.finish(BackendId(1), Some(Duration::from_millis(100)));
        for _ in 0..200 {
            view.finish(BackendId(1), Some(Duration::from_millis(100)));
            view.reconcile();
        }
        let idle = view.ewma(BackendId(0)).unwrap().as_secs_f64();
        assert!((idle - 0.050).abs() < 0.0005, "{idle}");
        let busy = view.ewma(BackendId(1)).unwrap().as_secs_f64();
        assert!(
            (busy - 0.100).abs() < 1e-9,
            "sampled estimates do not decay: {busy}"
        );
    }
}
