//! The access log: a line per request (or per sampled request), off unless `[access_log]`
//! names a file.
//!
//! Nothing here blocks a worker or takes a lock on its request path:
//! - A request's facts go into a `Record` kept per connection slot (beside the worker's
//!   connection table, so the connection's task does not grow): its text when the head is
//!   parsed, numbers as the exchange goes (`record`), the line when it ends (`finish`).
//! - Lines are appended to the worker's buffer (`[access_log] buffer_bytes`). A full buffer,
//!   and every timer sweep (50 ms) one that holds lines, goes to the writer thread over a
//!   bounded queue with `try_send`: when the queue is full the batch is dropped and its lines
//!   counted (`ringproxy_access_log_dropped_total`), the worker never waits.
//! - The writer thread (`writer`) appends batches to the file and reopens it on SIGUSR1.
//!
//! With the access log off, the request path pays a test of `WorkerCtx::access_log` at each
//! of its hooks.

pub mod format;
mod record;
pub mod writer;

use std::cell::{Cell, RefCell, RefMut};
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime};

use crate::config::{AccessLogConfig, AccessLogFormat};
use crate::metrics::{Metrics, WorkerMetrics};
pub use format::LineContext;
use format::TimeCache;
pub use record::Record;
use writer::{Batch, Writer};

/// Room beyond `buffer_bytes` in a worker's buffer: the line that fills it fits without a
/// reallocation.
const LINE_SLACK: usize = 4096;
/// Records kept for reuse beyond the requests in flight.
const MAX_SPARE_RECORDS: usize = 256;

/// Opens the log and starts its writer thread when `config` asks for a log: the writer (for
/// SIGUSR1 and the exit) and the queue the workers' sides are made from. Drop the queue once
/// the workers have theirs: the writer ends when the last of them is gone.
pub fn start(
    config: Option<&AccessLogConfig>,
    workers: usize,
    metrics: &Arc<Metrics>,
) -> Result<Option<(Writer, AccessLogQueue)>, String> {
    let Some(config) = config else {
        return Ok(None);
    };
    let (writer, queue) = writer::start(config, workers, metrics.clone())?;
    let config = config.clone();
    Ok(Some((writer, AccessLogQueue { config, queue })))
}

/// What each worker's side of the log is made from.
pub struct AccessLogQueue {
    config: AccessLogConfig,
    queue: SyncSender<Batch>,
}

impl AccessLogQueue {
    pub fn worker(&self) -> AccessLog {
        AccessLog::new(&self.config, self.queue.clone())
    }
}

/// One worker's side of the access log.
pub struct AccessLog {
    format: AccessLogFormat,
    sampler: Sampler,
    /// By connection slot (`ConnSlot::index`): the record of the request it serves, if that
    /// request is logged.
    records: RefCell<Vec<Option<Box<Record>>>>,
    /// Boxed as in `records`, between which they move without a copy.
    #[allow(clippy::vec_box)]
    spare: RefCell<Vec<Box<Record>>>,
    /// Lines not yet handed to the writer.
    pending: RefCell<Batch>,
    buffer_bytes: usize,
    /// To the writer thread; taken when the worker stops, so that the writer sees every
    /// worker gone (the worker's tasks, which hold it too, may outlive its thread's work).
    queue: RefCell<Option<SyncSender<Batch>>>,
    clock: RefCell<TimeCache>,
    /// The wall clock and the precise one read together (every timer sweep): a line's time is
    /// its request's start on the precise clock, placed by this, with no clock read of its own.
    anchor: Cell<(SystemTime, Instant)>,
}

impl AccessLog {
    fn new(config: &AccessLogConfig, queue: SyncSender<Batch>) -> Self {
        Self {
            format: config.format,
            sampler: Sampler::new(config.sample),
            records: RefCell::default(),
            spare: RefCell::default(),
            pending: RefCell::new(Batch {
                bytes: Vec::with_capacity(config.buffer_bytes + LINE_SLACK),
                lines: 0,
            }),
            buffer_bytes: config.buffer_bytes,
            queue: RefCell::new(Some(queue)),
            clock: RefCell::default(),
            anchor: Cell::new((SystemTime::now(), Instant::now())),
        }
    }

    /// A request on connection `slot` starts (its head is parsed, or refused): returns its
    /// record to fill in if the sampler picks the request. Whatever the slot held before goes
    /// (a request that ended without `finish`).
    pub fn begin(&self, slot: usize) -> Option<RefMut<'_, Record>> {
        let mut records = self.records.borrow_mut();
        if records.len() <= slot {
            records.resize_with(slot + 1, || None);
        }
        if let Some(stale) = records[slot].take() {
            self.keep_spare(stale);
        }
        if !self.sampler.pick() {
            return None;
        }
        records[slot] = Some(self.spare.borrow_mut().pop().unwrap_or_default());
        RefMut::filter_map(records, |records| records[slot].as_deref_mut()).ok()
    }

    /// The record of the request on `slot`, if it is logged. Not to be held across an await.
    #[inline]
    pub fn record(&self, slot: usize) -> Option<RefMut<'_, Record>> {
        RefMut::filter_map(self.records.borrow_mut(), |records| {
            records.get_mut(slot)?.as_deref_mut()
        })
        .ok()
    }

    /// The request on `slot` ended: its line is written into the buffer, which goes to the
    /// writer once full.
    /// `ended`: when, if the caller read the clock already.
    pub fn finish(
        &self,
        slot: usize,
        context: &LineContext<'_>,
        metrics: &WorkerMetrics,
        ended: Option<Instant>,
    ) {
        let Some(record) = self
            .records
            .borrow_mut()
            .get_mut(slot)
            .and_then(Option::take)
        else {
            return;
        };
        let mut pending = self.pending.borrow_mut();
        let times = (
            self.wall_time(record.started),
            ended.unwrap_or_else(Instant::now),
        );
        format::write_line(
            &mut pending.bytes,
            self.format,
            &record,
            context,
            times,
            &mut self.clock.borrow_mut(),
        );
        pending.lines += 1;
        if pending.bytes.len() >= self.buffer_bytes {
            self.hand_over(&mut pending, metrics);
        }
        drop(pending);
        self.keep_spare(record);
    }

    /// Hands the buffered lines to the writer (from the worker's timer sweep).
    pub fn flush(&self, metrics: &WorkerMetrics) {
        self.anchor.set((SystemTime::now(), Instant::now()));
        let mut pending = self.pending.borrow_mut();
        if pending.lines > 0 {
            self.hand_over(&mut pending, metrics);
        }
    }

    /// Hands the last lines over as the worker stops, waiting for room in the queue at most
    /// `within` (the thread has nothing else left to do), and lets go of the queue.
    pub fn flush_before_exit(&self, metrics: &WorkerMetrics, within: Duration) {
        let Some(queue) = self.queue.borrow_mut().take() else {
            return;
        };
        let mut pending = self.pending.borrow_mut();
        let deadline = Instant::now() + within;
        while pending.lines > 0 {
            let batch = std::mem::take(&mut *pending);
            match queue.try_send(batch) {
                Ok(()) => return,
                Err(TrySendError::Full(batch)) if Instant::now() < deadline => {
                    *pending = batch;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(TrySendError::Full(batch) | TrySendError::Disconnected(batch)) => {
                    metrics.access_log_dropped(batch.lines);
                    return;
                }
            }
        }
    }

    /// Sends `pending` to the writer, or drops its lines (counted) when the queue is full: the
    /// buffer is then reused as it is, so a writer that fell behind costs no allocation.
    fn hand_over(&self, pending: &mut Batch, metrics: &WorkerMetrics) {
        let batch = std::mem::take(pending);
        let sent = match self.queue.borrow().as_ref() {
            Some(queue) => queue.try_send(batch),
            None => Err(TrySendError::Disconnected(batch)),
        };
        match sent {
            Ok(()) => pending.bytes = Vec::with_capacity(self.buffer_bytes + LINE_SLACK),
            Err(TrySendError::Full(mut batch) | TrySendError::Disconnected(mut batch)) => {
                metrics.access_log_dropped(batch.lines);
                batch.bytes.clear();
                batch.lines = 0;
                *pending = batch;
            }
        }
    }

    /// The wall-clock time of `at`, from the last anchor (the clocks drift apart by far less
    /// than a line's precision between two sweeps).
    fn wall_time(&self, at: Instant) -> SystemTime {
        let (wall, instant) = self.anchor.get();
        match at.checked_duration_since(instant) {
            Some(after) => wall + after,
            None => wall.checked_sub(instant.duration_since(at)).unwrap_or(wall),
        }
    }

    fn keep_spare(&self, mut record: Box<Record>) {
        let mut spare = self.spare.borrow_mut();
        if spare.len() < MAX_SPARE_RECORDS {
            record.trim();
            spare.push(record);
        }
    }
}

/// Picks the share `[access_log] sample` of requests, evenly: each request adds the share to
/// a credit (in 1/2^32ths, rounded up), and a request that brings it to a whole one is
/// logged. So a worker logs one in N of its requests for a share of 1/N, and every request
/// for 1.
struct Sampler {
    step: u64,
    credit: std::cell::Cell<u64>,
}

const WHOLE: u64 = 1 << 32;

impl Sampler {
    fn new(share: f64) -> Self {
        let step = (share.clamp(0.0, 1.0) * WHOLE as f64).ceil() as u64;
        Self {
            step: step.clamp(1, WHOLE),
            credit: std::cell::Cell::new(0),
        }
    }

    fn pick(&self) -> bool {
        let credit = self.credit.get() + self.step;
        let picked = credit >= WHOLE;
        self.credit
            .set(if picked { credit - WHOLE } else { credit });
        picked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picks(share: f64, requests: usize) -> usize {
        let sampler = Sampler::new(share);
        (0..requests).filter(|_| sampler.pick()).count()
    }

    #[test]
    fn the_sampler_picks_the_share_exactly_and_evenly() {
        assert_eq!(picks(1.0, 1000), 1000);
        assert_eq!(picks(0.25, 1000), 250);
        assert_eq!(picks(0.01, 1000), 10);
        assert_eq!(picks(1.0 / 3.0, 999), 333);
        let sampler = Sampler::new(0.25);
        let picked: Vec<bool> = (0..8).map(|_| sampler.pick()).collect();
        assert_eq!(
            picked,
            [false, false, false, true, false, false, false, true]
        );
    }
}
