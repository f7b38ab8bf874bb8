//! Active checks: one thread for the whole process probes every backend of every group with a
//! `health` section, each on its own schedule.
//!
//! The thread runs a small monoio runtime with one task per backend, so a backend that makes
//! its check wait for the full timeout delays nobody else's, and a hundred backends cost a
//! hundred tasks rather than a hundred threads. It is not pinned: checks are rare and tiny,
//! and the OS can fit them between the workers.
//!
//! A backend of a group with `[upstream.NAME.tls]` is checked over TLS, with the group's
//! client config: a handshake the workers' connections would fail fails the check too.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::task::{Poll, Waker};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::Bytes;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;

use crate::config::{Config, HealthCheck, HealthCheckKind};
use crate::fdlimit::is_out_of_files;
use crate::log::Level;
use crate::plural::count;
use crate::tls::TlsUpstreams;
use crate::upstream::connect::handshake;

use super::{BackendId, HealthTable, flat_backends};

/// How often the checker looks at the stop flag: it ends within about this long.
const STOP_POLL: Duration = Duration::from_millis(50);
/// Most bytes of a check's response read while looking for the status line.
const RESPONSE_READ_LIMIT: usize = 4 * 1024;
/// io_uring entries of the checker's ring: a few operations per backend in flight at most.
const RING_ENTRIES: u32 = 256;

/// Starts the checker thread; `None` when no group has active checks. Fails when the thread
/// or its runtime cannot be created. `tls`: by group, how its backends are reached over TLS.
pub fn spawn_checker(
    config: Arc<Config>,
    tls: &TlsUpstreams,
    table: Arc<HealthTable>,
    stop: Arc<AtomicBool>,
) -> io::Result<Option<JoinHandle<()>>> {
    let targets = targets(&config, tls, table.ids());
    if targets.is_empty() {
        return Ok(None);
    }
    let (started, start_report) = mpsc::sync_channel(1);
    let handle = thread::Builder::new()
        .name("ringproxy-health".into())
        .spawn(move || run_checker(targets, table, stop, started))?;
    match start_report.recv() {
        Ok(Ok(())) => Ok(Some(handle)),
        Ok(Err(err)) => {
            let _ = handle.join();
            Err(err)
        }
        Err(_disconnected) => {
            let _ = handle.join();
            Err(io::Error::other(
                "health checker thread ended while starting",
            ))
        }
    }
}

/// One backend to check and how.
struct Target {
    backend: BackendId,
    address: SocketAddr,
    check: HealthCheck,
    /// The HTTP request, built once; empty for TCP checks.
    request: Bytes,
    /// For a backend reached over TLS: the group's client config and the backend's name.
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
}

fn targets(config: &Config, tls: &TlsUpstreams, ids: &[BackendId]) -> Vec<Target> {
    // By backend, in the order of `flat_backends`.
    let backend_tls = config
        .upstreams
        .iter()
        .enumerate()
        .flat_map(|(group, upstream)| {
            let group_tls = tls.get(group).and_then(Option::as_ref);
            (0..upstream.backends.len()).map(move |position| {
                let group_tls = group_tls?;
                let name = group_tls.backends.get(position)?.name.clone();
                Some((group_tls.config.clone(), name))
            })
        });
    flat_backends(config, ids)
        .zip(backend_tls)
        .filter_map(|((backend, upstream, backend_config), tls)| {
            let check = upstream.health.clone()?;
            let request = match &check.kind {
                HealthCheckKind::Tcp => Bytes::new(),
                HealthCheckKind::Http { path, host, .. } => {
                    http_request(path, host.as_deref(), backend_config.address)
                }
            };
            Some(Target {
                backend,
                address: backend_config.address,
                check,
                request,
                tls,
            })
        })
        .collect()
}

fn http_request(path: &str, host: Option<&str>, address: SocketAddr) -> Bytes {
    let host = host.map_or_else(|| address.to_string(), str::to_string);
    Bytes::from(format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: ringproxy-health\r\n\r\n"
    ))
}

fn run_checker(
    targets: Vec<Target>,
    table: Arc<HealthTable>,
    stop: Arc<AtomicBool>,
    started: SyncSender<io::Result<()>>,
) {
    let uring = RuntimeBuilder::<IoUringDriver>::new()
        .with_entries(RING_ENTRIES)
        .enable_timer()
        .build();
    match uring {
        Ok(mut rt) => {
            let _ = started.send(Ok(()));
            rt.block_on(check_all(targets, table, stop));
        }
        // The workers decide (and warn) whether epoll is acceptable for traffic; for a few
        // checks per second it always is.
        Err(_) => match RuntimeBuilder::<LegacyDriver>::new().enable_timer().build() {
            Ok(mut rt) => {
                let _ = started.send(Ok(()));
                rt.block_on(check_all(targets, table, stop));
            }
            Err(err) => {
                let _ = started.send(Err(err));
            }
        },
    }
}

async fn check_all(targets: Vec<Target>, table: Arc<HealthTable>, stop: Arc<AtomicBool>) {
    let local_stop = Rc::new(LocalStop::default());
    let tasks: Vec<_> = targets
        .into_iter()
        .map(|target| monoio::spawn(watch(target, table.clone(), local_stop.clone())))
        .collect();
    while !stop.load(Ordering::Acquire) {
        monoio::time::sleep(STOP_POLL).await;
    }
    local_stop.raise();
    for task in tasks {
        task.await;
    }
}

/// Checks one backend every `interval` until stopped, applying rise/fall transitions.
async fn watch(target: Target, table: Arc<HealthTable>, stop: Rc<LocalStop>) {
    let mut streak = Streak::new(target.check.rise, target.check.fall);
    loop {
        let started = Instant::now();
        let Some(result) = stop.or_stop(check_once(&target)).await else {
            return;
        };
        // Out of file descriptors, the check could not even start: no verdict on the backend.
        let inconclusive =
            matches!(&result, Err(CheckFailure::Connect(err)) if is_out_of_files(err));
        if !inconclusive && let Some(change) = streak.record(result) {
            apply(&table, target.backend, change);
        }
        let next = started + target.check.interval;
        let wait = next.saturating_duration_since(Instant::now());
        if stop.or_stop(monoio::time::sleep(wait)).await.is_none() {
            return;
        }
    }
}

fn apply(table: &HealthTable, backend: BackendId, change: Change) {
    let up = matches!(change, Change::Up);
    if !table.set_active(backend, up, Instant::now()) {
        return;
    }
    let level = if up { Level::Info } else { Level::Warn };
    crate::log_at!(level; "{} is {change}", table.label(backend));
}

/// The stop flag as the checker's tasks see it: only `check_all` polls the process-wide flag,
/// then wakes every task at once (rather than every task polling it on a timer).
#[derive(Default)]
struct LocalStop {
    raised: Cell<bool>,
    /// One waker per waiting task (tasks re-poll often; duplicates are not stored).
    waiters: RefCell<Vec<Waker>>,
}

impl LocalStop {
    fn raise(&self) {
        self.raised.set(true);
        for waker in self.waiters.take() {
            waker.wake();
        }
    }

    /// Runs `work` unless the stop is raised first (then `None`, and `work` is dropped).
    async fn or_stop<F: Future>(&self, work: F) -> Option<F::Output> {
        monoio::select! {
            output = work => Some(output),
            () = self.raised() => None,
        }
    }

    fn raised(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.raised.get() {
                return Poll::Ready(());
            }
            let mut waiters = self.waiters.borrow_mut();
            if !waiters.iter().any(|waker| waker.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}

/// Why one check failed; shown as the reason of a DOWN transition.
#[derive(Debug)]
pub(super) enum CheckFailure {
    Connect(io::Error),
    /// The TLS handshake with a backend reached over TLS.
    Handshake(io::Error),
    /// The whole check (connect, request, status line) took longer than the check's timeout.
    Timeout(Duration),
    Write(io::Error),
    Read(io::Error),
    /// The backend closed the connection before a complete status line.
    Closed,
    /// No line end within `RESPONSE_READ_LIMIT` bytes.
    StatusLineTooLong,
    BadStatusLine,
    UnexpectedStatus(u16),
}

impl fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(err) => write!(f, "connect: {err}"),
            Self::Handshake(err) => write!(f, "TLS handshake: {err}"),
            Self::Timeout(after) => write!(f, "no answer within {}", super::Short(*after)),
            Self::Write(err) => write!(f, "sending the request: {err}"),
            Self::Read(err) => write!(f, "reading the response: {err}"),
            Self::Closed => f.write_str("connection closed before a status line"),
            Self::StatusLineTooLong => f.write_str("status line too long"),
            Self::BadStatusLine => f.write_str("malformed status line"),
            Self::UnexpectedStatus(status) => write!(f, "unexpected status {status}"),
        }
    }
}

async fn check_once(target: &Target) -> Result<(), CheckFailure> {
    let timeout = target.check.timeout;
    match monoio::time::timeout(timeout, attempt(target)).await {
        Err(_elapsed) => Err(CheckFailure::Timeout(timeout)),
        Ok(result) => result,
    }
}

async fn attempt(target: &Target) -> Result<(), CheckFailure> {
    let stream = TcpStream::connect_addr(target.address)
        .await
        .map_err(CheckFailure::Connect)?;
    let Some((config, name)) = &target.tls else {
        return check_over(stream, target).await;
    };
    let stream = handshake(stream, config.clone(), name.clone())
        .await
        .map_err(CheckFailure::Handshake)?;
    check_over(stream, target).await
}

/// The check on a connection made (and, over TLS, through its handshake).
async fn check_over<S>(stream: S, target: &Target) -> Result<(), CheckFailure>
where
    S: AsyncReadRent + AsyncWriteRent,
{
    match &target.check.kind {
        HealthCheckKind::Tcp => Ok(()),
        HealthCheckKind::Http { expect_status, .. } => {
            http_exchange(stream, target.request.clone(), expect_status).await
        }
    }
}

async fn http_exchange<S: AsyncReadRent + AsyncWriteRent>(
    mut stream: S,
    request: Bytes,
    expect_status: &RangeInclusive<u16>,
) -> Result<(), CheckFailure> {
    let (written, _) = stream.write_all(request).await;
    written.map_err(CheckFailure::Write)?;
    let mut buf = Vec::with_capacity(RESPONSE_READ_LIMIT);
    loop {
        let len = buf.len();
        if len >= RESPONSE_READ_LIMIT {
            return Err(CheckFailure::StatusLineTooLong);
        }
        let (read, slice) = stream.read(buf.slice_mut(len..)).await;
        buf = slice.into_inner();
        if read.map_err(CheckFailure::Read)? == 0 {
            return Err(CheckFailure::Closed);
        }
        if let Some(status) = status_code(&buf)? {
            if expect_status.contains(&status) {
                return Ok(());
            }
            return Err(CheckFailure::UnexpectedStatus(status));
        }
    }
}

/// The status code of a response starting `buf`, once its first line is complete:
/// `HTTP/1.x SSS[ reason]`. Headers are not looked at.
pub(super) fn status_code(buf: &[u8]) -> Result<Option<u16>, CheckFailure> {
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
    let rest = line
        .strip_prefix(b"HTTP/1.")
        .ok_or(CheckFailure::BadStatusLine)?;
    let [minor, b' ', d1, d2, d3, tail @ ..] = rest else {
        return Err(CheckFailure::BadStatusLine);
    };
    let digits = [*d1, *d2, *d3];
    if !minor.is_ascii_digit()
        || !digits.iter().all(u8::is_ascii_digit)
        || !(tail.is_empty() || tail[0] == b' ')
    {
        return Err(CheckFailure::BadStatusLine);
    }
    let status = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    Ok(Some(status))
}

/// A rise/fall transition of one backend.
#[derive(Debug)]
pub(super) enum Change {
    Up,
    Down { failures: u32, last: CheckFailure },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Up => f.write_str("UP (active)"),
            Self::Down { failures, last } => write!(
                f,
                "DOWN (active: {}: {last})",
                count(*failures, "consecutive failure")
            ),
        }
    }
}

/// Counts check results against the backend's current state: `rise` successes in a row bring
/// a down backend up, `fall` failures in a row take an up one down. Backends start up.
pub(super) struct Streak {
    up: bool,
    /// Results in a row that disagree with `up`.
    against: u32,
    rise: u32,
    fall: u32,
}

impl Streak {
    /// A `rise` or `fall` of 0 acts as 1: a single result is the least that can decide.
    pub(super) fn new(rise: u32, fall: u32) -> Self {
        Self {
            up: true,
            against: 0,
            rise: rise.max(1),
            fall: fall.max(1),
        }
    }

    pub(super) fn record(&mut self, result: Result<(), CheckFailure>) -> Option<Change> {
        let agrees = result.is_ok() == self.up;
        if agrees {
            self.against = 0;
            return None;
        }
        self.against += 1;
        let needed = if self.up { self.fall } else { self.rise };
        if self.against < needed {
            return None;
        }
        self.up = !self.up;
        self.against = 0;
        match result {
            Ok(()) => Some(Change::Up),
            Err(last) => Some(Change::Down {
                failures: needed,
                last,
            }),
        }
    }
}

#[cfg(test)]
mod tests;
