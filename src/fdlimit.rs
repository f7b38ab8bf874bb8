//! The open-file limit: raised at start, split into a reserve and per-worker shares, and the
//! rate-limited report of what a worker did when it ran short.
//!
//! Every client connection holds a descriptor, and so does the backend connection it is
//! proxied over. Run out and `accept` fails with EMFILE while the kernel keeps completing
//! handshakes: the clients it would have returned wait in the listen backlog with nobody to
//! answer them. So at start ringproxy raises its soft RLIMIT_NOFILE to the hard limit (as
//! HAProxy does), sets aside a reserve for what is neither a client nor a backend connection,
//! and gives each worker an equal share of the rest, half for clients and half for the
//! backend connections they may each need. A worker at its share answers new clients with a
//! 503 at once instead of leaving them queued (see `worker::accept_loop`).

use std::fmt::Write as _;
use std::io;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::plural::count;

/// Descriptors that belong to the process, not to a worker or a listener: stdio, the signal
/// thread's socket pair, the health checker's ring, and slack for what libraries open.
const FIXED_RESERVE: u64 = 32;
/// Per worker: its io_uring, and refused clients' descriptors while their closes are queued
/// on the ring.
const WORKER_RESERVE: u64 = 8;
/// Per listener and worker: the worker's listening socket and the main thread's two handles
/// on it (used to wake the worker's accept at shutdown).
const LISTENER_RESERVE: u64 = 3;
/// Used instead of a hard limit that is "unlimited" (Linux caps RLIMIT_NOFILE at
/// `fs.nr_open`, 1048576 by default, so this is only a fallback when that cannot be read).
const NR_OPEN_DEFAULT: u64 = 1 << 20;
/// A worker reports what the limit made it do at most this often.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// The soft open-file limit the process runs with, and how it got there.
#[derive(Debug)]
pub struct OpenFileLimit {
    pub limit: u64,
    /// The soft limit before it was raised; `None` when it was already at the hard limit.
    pub raised_from: Option<u64>,
    /// Why it could not be raised to the hard limit (it stays at `limit`).
    pub raise_failed: Option<(u64, io::Error)>,
}

/// Raises the soft RLIMIT_NOFILE to the hard limit.
pub fn raise_open_file_limit() -> io::Result<OpenFileLimit> {
    let current = current_limit()?;
    let target = if current.rlim_max == libc::RLIM_INFINITY {
        nr_open()
    } else {
        current.rlim_max
    };
    let mut limit = OpenFileLimit {
        limit: current.rlim_cur,
        raised_from: None,
        raise_failed: None,
    };
    if current.rlim_cur >= target {
        return Ok(limit);
    }
    let raised = libc::rlimit {
        rlim_cur: target,
        rlim_max: current.rlim_max,
    };
    // SAFETY: setrlimit reads one `rlimit` from the local it is given (see above).
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        limit.raised_from = Some(current.rlim_cur);
        limit.limit = target;
    } else {
        limit.raise_failed = Some((target, io::Error::last_os_error()));
    }
    Ok(limit)
}

/// The soft open-file limit: every descriptor of the process is below it.
pub fn soft_limit() -> io::Result<u64> {
    current_limit().map(|limit| limit.rlim_cur)
}

fn current_limit() -> io::Result<libc::rlimit> {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the local it is given. std has no safe
    // wrapper for resource limits and no dependency of ours exposes one.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut current) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(current)
}

fn nr_open() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(NR_OPEN_DEFAULT)
}

/// One worker's part of the open-file limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerShare {
    /// Client connections the worker holds at most.
    pub clients: usize,
    /// Descriptors for its client and backend connections together (twice `clients`, or
    /// one more): what its idle pooled backend connections must also fit in.
    pub descriptors: usize,
}

impl WorkerShare {
    /// No limit worth counting (tests and tools that run a worker without a budget).
    pub const UNLIMITED: WorkerShare = WorkerShare {
        clients: usize::MAX / 2,
        descriptors: usize::MAX,
    };

    /// How many idle backend connections may stay open once the worker holds `clients`
    /// client connections: each of those may need a backend connection of its own.
    pub fn idle_room(&self, clients: usize) -> usize {
        self.descriptors.saturating_sub(clients.saturating_mul(2))
    }
}

/// How the open-file limit is divided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Descriptors for everything that is not a client or backend connection.
    pub reserve: u64,
    /// Client connections all workers together hold at most.
    pub clients: u64,
    pub per_worker: WorkerShare,
}

/// Divides `limit` descriptors: the reserve first (fixed, per worker, per listener socket,
/// and one per actively checked backend for its check's connection), then equal shares of
/// the rest per worker, of which half for clients, since each client in flight holds a
/// backend connection too. Idle keep-alive clients hold none, so this is the worst case:
/// the share can always be served.
pub fn budget(limit: u64, config: &Config, workers: usize) -> Budget {
    let workers = workers.max(1) as u64;
    let listeners = config.listeners.len() as u64;
    let checked_backends: u64 = config
        .upstreams
        .iter()
        .filter(|group| group.health.is_some())
        .map(|group| group.backends.len() as u64)
        .sum();
    let reserve = FIXED_RESERVE
        + workers * (WORKER_RESERVE + listeners * LISTENER_RESERVE)
        + checked_backends;
    let per_worker = limit.saturating_sub(reserve) / workers;
    let clients = (per_worker / 2).max(1);
    let as_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    Budget {
        reserve,
        clients: clients * workers,
        per_worker: WorkerShare {
            clients: as_usize(clients),
            descriptors: as_usize(per_worker.max(2 * clients)),
        },
    }
}

/// The start-up line, e.g. `open-file limit 1048576 (raised from 1024): up to 524263 client
/// connections (524263 per worker), as many backend connections, 45 other descriptors`.
pub fn describe(limit: &OpenFileLimit, budget: &Budget) -> String {
    let mut line = format!("open-file limit {}", limit.limit);
    if let Some(from) = limit.raised_from {
        let _ = write!(line, " (raised from {from})");
    }
    if let Some((target, err)) = &limit.raise_failed {
        let _ = write!(line, " (could not raise it to {target}: {err})");
    }
    let _ = write!(
        line,
        ": up to {} client connections ({} per worker), as many backend connections, {} other descriptors",
        budget.clients, budget.per_worker.clients, budget.reserve
    );
    line
}

/// Whether an error means this process (EMFILE) or the whole system (ENFILE) is out of file
/// descriptors: our own shortage, which says nothing about the peer.
pub fn is_out_of_files(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Something a worker did because descriptors were short.
#[derive(Debug)]
pub enum Shortage<'a> {
    /// A client was answered 503 and closed: the worker was at its share.
    Refused,
    /// `accept` failed (out of descriptors or memory); the client stays queued in the kernel.
    AcceptFailed(&'a io::Error),
    /// A backend connect failed for want of a descriptor; the client got a 503.
    ConnectFailed,
    /// Idle backend connections were closed to make room.
    IdleClosed(usize),
}

/// A worker's report of its shortages, one line at most every `REPORT_EVERY`, so that a
/// flood of clients does not become a flood of log lines. A refusal or failure after a quiet
/// interval is printed at once; what follows is counted and printed as one line when the
/// interval has passed. Idle backend connections closed to make room are normal near the
/// share: they are only counted into those lines.
#[derive(Debug)]
pub struct ShortageReport {
    worker: usize,
    share: usize,
    refused: u64,
    accept_failed: u64,
    accept_error: Option<String>,
    connect_failed: u64,
    idle_closed: u64,
    /// When the first event not yet printed happened.
    window_start: Option<Instant>,
    last_printed: Option<Instant>,
}

impl ShortageReport {
    pub fn new(worker: usize, share: WorkerShare) -> Self {
        Self {
            worker,
            share: share.clients,
            refused: 0,
            accept_failed: 0,
            accept_error: None,
            connect_failed: 0,
            idle_closed: 0,
            window_start: None,
            last_printed: None,
        }
    }

    /// Counts `shortage`; returns the line to print when one is due.
    pub fn note(&mut self, shortage: Shortage<'_>, now: Instant) -> Option<String> {
        match shortage {
            Shortage::Refused => self.refused += 1,
            Shortage::AcceptFailed(err) => {
                self.accept_failed += 1;
                if self.accept_error.is_none() {
                    self.accept_error = Some(err.to_string());
                }
            }
            Shortage::ConnectFailed => self.connect_failed += 1,
            Shortage::IdleClosed(0) => return None,
            Shortage::IdleClosed(n) => self.idle_closed += n as u64,
        }
        let window_start = *self.window_start.get_or_insert(now);
        let quiet = self
            .last_printed
            .is_none_or(|last| now.saturating_duration_since(last) >= REPORT_EVERY);
        if quiet && !matches!(shortage, Shortage::IdleClosed(_)) {
            self.last_printed = Some(now);
            return Some(self.take_line("further reports at most every 10s"));
        }
        self.due_since(window_start, now)
    }

    /// The line summing up what was counted since the last one, when one is due (for a
    /// timer to call, so that the end of a shortage gets reported too).
    pub fn due(&mut self, now: Instant) -> Option<String> {
        self.due_since(self.window_start?, now)
    }

    fn due_since(&mut self, window_start: Instant, now: Instant) -> Option<String> {
        let counted_for = now.saturating_duration_since(window_start);
        if counted_for < REPORT_EVERY {
            return None;
        }
        self.last_printed = Some(now);
        Some(self.take_line(&format!("over the last {}s", counted_for.as_secs())))
    }

    /// The line for what was counted, which is then cleared.
    fn take_line(&mut self, period: &str) -> String {
        let mut parts = Vec::new();
        if self.refused > 0 {
            parts.push(format!(
                "{} refused with 503 (the worker holds its share of {} client connections under \
                 the open-file limit)",
                count(self.refused, "client"),
                self.share
            ));
        }
        if self.accept_failed > 0 {
            parts.push(format!(
                "accept failed {} ({}), clients left waiting in the listen queue",
                count(self.accept_failed, "time"),
                self.accept_error.take().unwrap_or_default()
            ));
        }
        if self.connect_failed > 0 {
            parts.push(format!(
                "{} found no free file descriptor (503)",
                count(self.connect_failed, "backend connect")
            ));
        }
        if self.idle_closed > 0 {
            parts.push(format!(
                "{} closed to free file descriptors",
                count(self.idle_closed, "idle backend connection")
            ));
        }
        self.window_start = None;
        self.refused = 0;
        self.accept_failed = 0;
        self.connect_failed = 0;
        self.idle_closed = 0;
        format!("worker {}: {} ({period})", self.worker, parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli_config(listeners: usize) -> Config {
        let addr = "127.0.0.1:8080".parse().unwrap();
        let backend = "127.0.0.1:9000".parse().unwrap();
        Config::for_cli(vec![addr; listeners], vec![backend])
    }

    #[test]
    fn half_of_what_the_reserve_leaves_goes_to_clients() {
        let budget = budget(1024, &cli_config(1), 1);
        // 32 fixed + 1 worker × (8 + 1 listener × 3) = 43.
        assert_eq!(budget.reserve, 43);
        assert_eq!(budget.per_worker.clients, (1024 - 43) / 2);
        assert_eq!(budget.per_worker.descriptors, 1024 - 43);
        assert_eq!(budget.clients, 490);
    }

    #[test]
    fn workers_split_the_rest_equally_and_each_reserves_its_own() {
        let budget = budget(1024, &cli_config(2), 4);
        assert_eq!(budget.reserve, 32 + 4 * (8 + 2 * 3));
        let per_worker = (1024 - budget.reserve) / 4;
        assert_eq!(budget.per_worker.descriptors as u64, per_worker);
        assert_eq!(budget.per_worker.clients as u64, per_worker / 2);
        assert_eq!(budget.clients, 4 * (per_worker / 2));
    }

    #[test]
    fn actively_checked_backends_are_reserved_for() {
        let toml = "[[listener]]\naddress = \"127.0.0.1:8080\"\nupstream = \"a\"\n\
                    [upstream.a]\nbackends = [\"127.0.0.1:9000\", \"127.0.0.1:9001\"]\n\
                    [upstream.a.health]\n\
                    [upstream.b]\nbackends = [\"127.0.0.1:9002\"]\n";
        let config = crate::config::parse_str(toml, "test.toml").unwrap();
        let unchecked = cli_config(1);
        assert_eq!(
            budget(1024, &config, 1).reserve,
            budget(1024, &unchecked, 1).reserve + 2
        );
    }

    #[test]
    fn a_limit_below_the_reserve_still_admits_one_client_per_worker() {
        let budget = budget(20, &cli_config(1), 2);
        assert_eq!(budget.per_worker.clients, 1);
        assert_eq!(budget.per_worker.descriptors, 2);
    }

    #[test]
    fn idle_room_is_what_clients_and_their_backend_connections_leave() {
        let share = WorkerShare {
            clients: 100,
            descriptors: 201,
        };
        assert_eq!(share.idle_room(0), 201);
        assert_eq!(share.idle_room(90), 21);
        assert_eq!(share.idle_room(101), 0);
        assert_eq!(
            WorkerShare::UNLIMITED.idle_room(1 << 40),
            usize::MAX - (1 << 41)
        );
    }

    #[test]
    fn the_start_up_line_says_where_the_limit_came_from() {
        let budget = budget(4096, &cli_config(1), 1);
        let raised = OpenFileLimit {
            limit: 4096,
            raised_from: Some(512),
            raise_failed: None,
        };
        assert_eq!(
            describe(&raised, &budget),
            "open-file limit 4096 (raised from 512): up to 2026 client connections \
             (2026 per worker), as many backend connections, 43 other descriptors"
        );
        let stuck = OpenFileLimit {
            limit: 4096,
            raised_from: None,
            raise_failed: Some((8192, io::Error::from_raw_os_error(libc::EPERM))),
        };
        assert!(
            describe(&stuck, &budget).starts_with(
                "open-file limit 4096 (could not raise it to 8192: Operation not permitted"
            ),
            "{}",
            describe(&stuck, &budget)
        );
    }

    #[test]
    fn out_of_files_means_emfile_or_enfile_only() {
        assert!(is_out_of_files(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(is_out_of_files(&io::Error::from_raw_os_error(libc::ENFILE)));
        assert!(!is_out_of_files(&io::Error::from_raw_os_error(
            libc::ECONNREFUSED
        )));
        assert!(!is_out_of_files(&io::Error::other("no errno")));
    }

    #[test]
    fn the_first_shortage_is_printed_and_later_ones_are_summed_every_interval() {
        let share = WorkerShare {
            clients: 108,
            descriptors: 216,
        };
        let mut report = ShortageReport::new(0, share);
        let start = Instant::now();
        let first = report.note(Shortage::Refused, start).unwrap();
        assert_eq!(
            first,
            "worker 0: 1 client refused with 503 (the worker holds its share of \
             108 client connections under the open-file limit) (further reports at most every \
             10s)"
        );
        let mut printed = 0;
        for i in 0..1000 {
            let now = start + Duration::from_millis(i);
            printed += usize::from(report.note(Shortage::Refused, now).is_some());
        }
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        let later = start + Duration::from_secs(5);
        assert!(
            report
                .note(Shortage::AcceptFailed(&emfile), later)
                .is_none()
        );
        assert!(report.note(Shortage::IdleClosed(3), later).is_none());
        assert!(report.note(Shortage::ConnectFailed, later).is_none());
        assert_eq!(printed, 0);
        assert!(report.due(start + Duration::from_secs(9)).is_none());
        let summary = report.due(start + REPORT_EVERY).unwrap();
        assert!(summary.contains("1000 clients refused"), "{summary}");
        assert!(
            summary.contains("accept failed 1 time (Too many open files"),
            "{summary}"
        );
        assert!(summary.contains("1 backend connect found no"), "{summary}");
        assert!(
            summary.contains("3 idle backend connections closed"),
            "{summary}"
        );
        assert!(summary.ends_with("(over the last 10s)"), "{summary}");
        // Nothing new: nothing to say, however much later.
        assert!(report.due(start + 10 * REPORT_EVERY).is_none());
    }

    #[test]
    fn idle_connections_closed_are_only_summed_up() {
        let mut report = ShortageReport::new(1, WorkerShare::UNLIMITED);
        let start = Instant::now();
        assert!(report.note(Shortage::IdleClosed(0), start).is_none());
        assert!(report.due(start + REPORT_EVERY).is_none());
        assert!(report.note(Shortage::IdleClosed(3), start).is_none());
        assert!(
            report
                .note(Shortage::IdleClosed(2), start + Duration::from_secs(4))
                .is_none()
        );
        assert!(report.due(start + Duration::from_secs(9)).is_none());
        assert_eq!(
            report.due(start + Duration::from_secs(11)).unwrap(),
            "worker 1: 5 idle backend connections closed to free file descriptors \
             (over the last 11s)"
        );
        // A refusal right after that line waits for the interval; one after a quiet
        // interval is printed at once.
        let later = start + Duration::from_secs(12);
        assert!(report.note(Shortage::Refused, later).is_none());
        assert!(report.due(later + REPORT_EVERY).is_some());
        let quiet = later + 3 * REPORT_EVERY;
        assert!(report.note(Shortage::Refused, quiet).is_some());
    }
}
