//! The writer thread: takes the workers' batches of lines off a bounded queue and appends them
//! to the file; reopens the file when asked (SIGUSR1, after logrotate renamed it).
//!
//! A worker never waits for it: when the queue is full the worker drops the batch and counts
//! its lines (`Counter::AccessLogDropped`). The writer counts what it wrote and what a failed
//! write lost (`Metrics::access_log`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread;
use std::time::{Duration, Instant};

use crate::config::AccessLogConfig;
use crate::metrics::Metrics;
use crate::{log_info, log_warn};

/// Batches each worker may have queued for the writer (besides the one it fills): a burst of
/// this many buffers' worth is absorbed while the writer is busy.
const QUEUED_PER_WORKER: usize = 4;
/// How long the writer waits for a batch before it looks at the reopen flag again: the
/// longest a SIGUSR1 waits on an idle log.
const REOPEN_POLL: Duration = Duration::from_millis(100);
/// At most one line about failing writes per this interval.
const FAILURE_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Lines a worker hands over at once.
#[derive(Default)]
pub struct Batch {
    pub bytes: Vec<u8>,
    pub lines: u64,
}

/// The main thread's handle on the writer thread.
pub struct Writer {
    thread: thread::JoinHandle<()>,
    reopen: Arc<AtomicBool>,
}

/// Opens the log file and starts the writer thread; the workers get clones of the returned
/// queue. The thread ends once every clone is dropped and the queue is written.
pub fn start(
    config: &AccessLogConfig,
    workers: usize,
    metrics: Arc<Metrics>,
) -> Result<(Writer, SyncSender<Batch>), String> {
    let file = open(&config.path)
        .map_err(|e| format!("cannot open the access log {}: {e}", config.path.display()))?;
    let (queue, batches) = sync_channel(QUEUED_PER_WORKER * workers.max(1));
    let reopen = Arc::new(AtomicBool::new(false));
    let mut output = Output {
        path: config.path.clone(),
        file,
        metrics,
        failures: Failures::default(),
    };
    let asked = reopen.clone();
    let thread = thread::Builder::new()
        .name("ringproxy-log".into())
        .spawn(move || output.run(&batches, &asked))
        .map_err(|e| format!("cannot start the access log writer: {e}"))?;
    Ok((Writer { thread, reopen }, queue))
}

impl Writer {
    /// Reopens the file by its path before the next batch (SIGUSR1): lines written so far
    /// stay in the file logrotate renamed, the next ones go to the new file.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
    }

    /// Waits, at most `within`, for the writer to write what the workers queued before they
    /// ended. A writer stuck on its file (a full disk that blocks, a pipe nobody reads) is
    /// left behind: the process exits without it.
    pub fn finish(self, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.thread.is_finished() {
            if Instant::now() >= deadline {
                log_warn!(
                    "access log: the writer did not finish within {}s; lines still queued are lost",
                    within.as_secs()
                );
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.thread.join();
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

struct Output {
    path: PathBuf,
    file: File,
    metrics: Arc<Metrics>,
    failures: Failures,
}

impl Output {
    fn run(&mut self, batches: &Receiver<Batch>, reopen: &AtomicBool) {
        loop {
            match batches.recv_timeout(REOPEN_POLL) {
                Ok(batch) => self.write(&batch),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if reopen.swap(false, Ordering::AcqRel) {
                self.reopen();
            }
        }
        self.failures.report(&self.path, Instant::now(), true);
    }

    fn write(&mut self, batch: &Batch) {
        let counts = &self.metrics.access_log;
        match self.file.write_all(&batch.bytes) {
            Ok(()) => counts.written.fetch_add(batch.lines, Ordering::Relaxed),
            Err(error) => {
                self.failures.note(batch.lines, &error);
                self.failures.report(&self.path, Instant::now(), false);
                counts.failed.fetch_add(batch.lines, Ordering::Relaxed)
            }
        };
    }

    /// A file that cannot be opened leaves the old one in use (as nginx does): lines keep
    /// going to the renamed file rather than nowhere.
    fn reopen(&mut self) {
        match open(&self.path) {
            Ok(file) => {
                self.file = file;
                log_info!("access log reopened: {}", self.path.display());
            }
            Err(e) => log_warn!(
                "access log: cannot reopen {}: {e}; writing on to the file it had open",
                self.path.display()
            ),
        }
    }
}

/// Failed writes since the last report, said at most once per `FAILURE_REPORT_INTERVAL`.
#[derive(Default)]
struct Failures {
    lines: u64,
    last_error: Option<String>,
    reported_at: Option<Instant>,
}

impl Failures {
    fn note(&mut self, lines: u64, error: &std::io::Error) {
        self.lines += lines;
        self.last_error = Some(error.to_string());
    }

    fn report(&mut self, path: &Path, now: Instant, last: bool) {
        if self.lines == 0 {
            return;
        }
        let due = self
            .reported_at
            .is_none_or(|at| now.duration_since(at) >= FAILURE_REPORT_INTERVAL);
        if !due && !last {
            return;
        }
        log_warn!(
            "access log: cannot write to {}: {}; {} lost",
            path.display(),
            self.last_error.as_deref().unwrap_or("error"),
            crate::plural::count(self.lines, "line")
        );
        self.lines = 0;
        self.reported_at = Some(now);
    }
}
