//! Thread-per-core runtime: one pinned thread per core, each with its own monoio runtime on
//! the io_uring driver, its own SO_REUSEPORT listeners, its own backend pool.
//!
//! Workers take no locks on the request path. What crosses threads: per-backend atomics (the
//! health table and the per-core load board, see `upstream`), the start-up report
//! (`WorkerEvent`), and the shutdown flag, which the main thread raises and then makes visible
//! by shutting the workers' listening sockets (that wakes their accepts). A worker that stops
//! accepting drains its connections (`drain`) before its thread ends.

use std::cell::{Cell, RefCell};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};
use socket2::SockRef;

use crate::clock::coarse_now;
use crate::config::{Config, RouteAction};
use crate::conns::{ConnTable, TIMER_TICK};
use crate::fdlimit::{Shortage, ShortageReport, WorkerShare};
use crate::http::{HeadLimits, write_error_response};
use crate::metrics::{Counter, Metrics, WorkerMetrics};
use crate::proxy;
use crate::proxy::buffer::Buffers;
use crate::route::{RouteTable, Scratch};
use crate::tls::{self, TlsListeners};
use crate::upstream::Upstreams;
use crate::upstream::health::HealthTable;
use crate::upstream::load::{LoadBoard, LoadView};
use crate::upstream::pool::Pool;

/// How often a worker closes expired idle backend connections, trims its buffer pools and
/// lets the allocator return freed memory.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);
/// How often a draining worker checks whether its connections are done.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// How long a draining worker's idle keep-alive connections still wait for a request (at most
/// `timeouts.drain`). It is for busy clients, not idle ones: a client between two requests may
/// have sent the next one before it could know of the drain, and it arrives within the
/// client's turnaround plus one round trip; it is answered with `Connection: close`. 1 s
/// covers intercontinental and mobile round trips (up to a few hundred ms) and an
/// application's turnaround between requests; a client silent that long is idle, and no
/// grace removes the race with an idle client (it may send the instant our FIN leaves).
/// Tying it to the TCP RTT would shorten only drains that are already short, and would miss
/// the client's turnaround, which the kernel cannot measure.
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// After a drain's deadline has shut the remaining connections, how long their tasks get to
/// see that and end before the worker stops.
const DRAIN_ABORT_WAIT: Duration = Duration::from_millis(100);
/// Pause after a failed accept, doubling while the failures go on. Out of descriptors, an
/// accept fails at once whether a client waits or not: retrying without a pause would spin.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(320);
/// Bytes of a refused client's request read (and dropped) before the connection closes, so
/// that the close is a FIN behind the 503 rather than a reset.
const REFUSAL_DRAIN: usize = 4096;

/// Which I/O driver a worker ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    IoUring(RingSetup),
    Epoll,
}

/// What a worker thread tells the main thread.
#[derive(Debug)]
pub enum WorkerEvent {
    Started {
        index: usize,
        cpu: Option<usize>,
        driver: Driver,
    },
    /// The worker could not start (no io_uring and no fallback allowed, say).
    Failed { index: usize, reason: String },
    /// The worker's thread is finishing (normally after shutdown; otherwise a fault).
    Exited { index: usize },
}

/// Everything a worker thread is handed at spawn.
pub struct WorkerPlan {
    pub index: usize,
    pub cpu: Option<usize>,
    /// One socket per configured listener, in config order.
    pub listeners: Vec<TcpListener>,
    /// Each listener's compiled route table (`route::listener_tables`), in config order.
    pub routes: Vec<Arc<RouteTable>>,
    pub config: Arc<Config>,
    /// Per listener, in config order: the certificates and ticket keys every worker shares.
    pub tls: TlsListeners,
    /// Backend health, shared by all workers and the checker thread.
    pub health: Arc<HealthTable>,
    /// Per-core in-flight counts per backend, read by every worker.
    pub load: Arc<LoadBoard>,
    /// The worker's part of the open-file limit.
    pub fds: WorkerShare,
    /// Where the worker counts what it does (its own block).
    pub metrics: Arc<Metrics>,
    pub shutdown: Arc<AtomicBool>,
    pub events: Sender<WorkerEvent>,
}

/// Sends `Exited` however the worker thread ends, panics included.
struct ExitReport {
    index: usize,
    events: Sender<WorkerEvent>,
}

impl Drop for ExitReport {
    fn drop(&mut self) {
        let _ = self.events.send(WorkerEvent::Exited { index: self.index });
    }
}

/// Body of a worker thread.
pub fn run_worker(plan: WorkerPlan) {
    let _exit = ExitReport {
        index: plan.index,
        events: plan.events.clone(),
    };
    if let Some(cpu) = plan.cpu
        && !core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
    {
        return report_failure(
            &plan,
            format!("cannot pin worker {} to cpu {cpu}", plan.index),
        );
    }
    match build_uring_runtime(plan.config.runtime.ring_entries) {
        Ok((mut rt, setup)) => rt.block_on(serve(plan, Driver::IoUring(setup))),
        Err(err) if plan.config.runtime.allow_epoll => {
            eprintln!(
                "ringproxy: WARNING: worker {}: io_uring unavailable ({err}); falling back to epoll (--allow-epoll), expect lower throughput",
                plan.index
            );
            match RuntimeBuilder::<LegacyDriver>::new().enable_timer().build() {
                Ok(mut rt) => rt.block_on(serve(plan, Driver::Epoll)),
                Err(err) => report_failure(&plan, format!("cannot build epoll runtime: {err}")),
            }
        }
        Err(err) => report_failure(
            &plan,
            format!(
                "io_uring is unavailable ({err}): check /proc/sys/kernel/io_uring_disabled and seccomp; pass --allow-epoll to run on epoll instead"
            ),
        ),
    }
}

type UringRuntime = monoio::Runtime<monoio::time::TimeDriver<IoUringDriver>>;

/// Builds the worker's io_uring runtime with the cheapest completion mode the kernel offers.
/// Each worker is the only thread touching its ring, so completions can wait until the worker
/// asks for them (DEFER_TASKRUN) instead of interrupting it (the default) — the default's
/// task-work IPIs showed up as the top kernel cost in the first profile.
fn build_uring_runtime(entries: u32) -> std::io::Result<(UringRuntime, RingSetup)> {
    let mut last_err = None;
    for setup in RingSetup::PREFERENCE {
        let builder = RuntimeBuilder::<IoUringDriver>::new()
            .with_entries(entries)
            .uring_builder(setup.builder())
            .enable_timer();
        match builder.build() {
            Ok(rt) => return Ok((rt, setup)),
            Err(err) => last_err = Some(err),
        }
    }
    Err(last_err.unwrap_or_else(|| std::io::Error::other("no io_uring setup tried")))
}

/// io_uring completion modes, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingSetup {
    /// SINGLE_ISSUER | DEFER_TASKRUN (Linux 6.1+).
    DeferTaskrun,
    /// COOP_TASKRUN | TASKRUN_FLAG (Linux 5.19+).
    CoopTaskrun,
    Plain,
}

impl RingSetup {
    const PREFERENCE: [RingSetup; 3] = [Self::DeferTaskrun, Self::CoopTaskrun, Self::Plain];

    fn builder(self) -> io_uring::Builder {
        let mut builder = io_uring::IoUring::builder();
        match self {
            Self::DeferTaskrun => {
                builder.setup_single_issuer().setup_defer_taskrun();
            }
            Self::CoopTaskrun => {
                builder.setup_coop_taskrun().setup_taskrun_flag();
            }
            Self::Plain => {}
        }
        builder
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::DeferTaskrun => "defer_taskrun",
            Self::CoopTaskrun => "coop_taskrun",
            Self::Plain => "plain",
        }
    }
}

fn report_failure(plan: &WorkerPlan, reason: String) {
    let _ = plan.events.send(WorkerEvent::Failed {
        index: plan.index,
        reason,
    });
}

async fn serve(mut plan: WorkerPlan, driver: Driver) {
    let ctx = match WorkerCtx::new(&plan) {
        Ok(ctx) => Rc::new(ctx),
        Err(reason) => return report_failure(&plan, reason),
    };
    let listeners = std::mem::take(&mut plan.listeners);
    let mut accept_loops = Vec::with_capacity(listeners.len());
    for (index, listener) in listeners.into_iter().enumerate() {
        let listener = match monoio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => return report_failure(&plan, format!("cannot register listener: {e}")),
        };
        let tls = ctx.schemes.get(index).and_then(|scheme| scheme.tls.clone());
        accept_loops.push(monoio::spawn(accept_loop(
            ctx.clone(),
            listener,
            index,
            tls,
        )));
    }
    monoio::spawn(housekeeping(ctx.clone()));
    monoio::spawn(sweep_deadlines(ctx.clone()));
    monoio::spawn(reconcile_load(ctx.clone()));
    let started = WorkerEvent::Started {
        index: plan.index,
        cpu: plan.cpu,
        driver,
    };
    let _ = plan.events.send(started);
    for accept in accept_loops {
        accept.await;
    }
    drain(&ctx).await;
}

/// Accepts clients while the worker has room for them (see `fdlimit`); at its share, a new
/// client gets a 503 at once rather than a wait in the listen queue with nobody to answer.
/// `tls`: the worker's TLS config for the listener, if it terminates TLS.
async fn accept_loop(
    ctx: Rc<WorkerCtx>,
    listener: monoio::net::TcpListener,
    index: usize,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                ctx.metrics.count(Counter::Accepted);
                if !ctx.admit_client() {
                    ctx.refuse(&stream, tls.is_some());
                    continue;
                }
                let fd = stream.as_raw_fd();
                let slot = ctx.conns.register(fd, index);
                match tls.clone() {
                    None => {
                        let conn =
                            proxy::serve_connection(ctx.clone(), stream, fd, peer, index, slot);
                        monoio::spawn(conn);
                    }
                    Some(tls) => {
                        let conn = tls::serve_tls(ctx.clone(), stream, fd, peer, index, slot, tls);
                        monoio::spawn(conn);
                    }
                }
            }
            Err(_) if ctx.global_shutdown.load(Ordering::Acquire) => break,
            // The client gave up before we took it: nothing is short.
            Err(err) if err.raw_os_error() == Some(libc::ECONNABORTED) => {}
            Err(err) => {
                // Out of descriptors (taken by something other than the worker's clients) or
                // memory: the clients wait in the listen queue until an accept succeeds. Idle
                // backend connections make way; the pause grows so that a lasting shortage
                // costs no CPU.
                ctx.close_idle_backends();
                ctx.report(Shortage::AcceptFailed(&err));
                monoio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
}

async fn housekeeping(ctx: Rc<WorkerCtx>) {
    while ctx.drain_phase() == DrainPhase::Serving {
        monoio::time::sleep(HOUSEKEEPING_INTERVAL).await;
        let now = ctx.conns.now();
        ctx.pool.borrow_mut().evict_expired(now);
        // Shortages that ended since the last report are reported too.
        if let Some(line) = ctx.shortages.borrow_mut().due(now) {
            eprintln!("{line}");
        }
        ctx.buffers.trim();
        return_freed_memory();
    }
}

/// Lets the allocator give what was freed back to the OS. mimalloc does that `purge_delay`
/// (1 s) after a free, but only when this thread next calls into it, and it keeps emptied
/// pages cached for reuse: 5 s after 10,000 idle connections closed, RSS was still 377 MB
/// against 10 MB at start. A forced collection once a tick returns emptied pages and purges
/// at once (after the same burst: 5.5 MB against 4.2 at start; collecting without force, or
/// only on ticks that served no request, left 9.5 MB).
fn return_freed_memory() {
    // SAFETY: mi_collect takes no pointers; it works on this thread's own heap and on the
    // allocator's shared bookkeeping, which it synchronises itself. It is harmless when
    // mimalloc is not the global allocator (the unit tests): its heap is then empty.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// Ends socket operations whose deadline passed (see `conns`). Runs until the worker stops.
async fn sweep_deadlines(ctx: Rc<WorkerCtx>) {
    loop {
        monoio::time::sleep(TIMER_TICK).await;
        let now = coarse_now();
        ctx.conns
            .sweep(now, |suspect| ctx.upstreams.should_cut(suspect, now));
        ctx.metrics.sweep(ctx.conns.active());
    }
}

/// Refreshes this worker's view of the other workers' per-backend load. Between two runs
/// that view is at most `reconcile_interval` old: the staleness bound of least_conn, p2c
/// and max_conns.
async fn reconcile_load(ctx: Rc<WorkerCtx>) {
    loop {
        monoio::time::sleep(ctx.config.runtime.reconcile_interval).await;
        ctx.upstreams.load().reconcile();
    }
}

/// Drains the worker's client connections without losing a request, once it has stopped
/// accepting (for a shutdown now; the same steps serve a reload, so nothing here assumes the
/// process then exits):
/// 1. Grace (`DRAIN_GRACE`): a response carries `Connection: close` and its connection
///    closes after it, unless the client has already sent its next request (pipelined); an
///    idle keep-alive connection still waits for the request its client may already have
///    sent, and answers it.
/// 2. Closing: idle connections are half-closed (`ConnTable::close_idle`), and a connection
///    reaching a request boundary closes there, FIN first; in-flight requests run on.
/// 3. At `timeouts.drain`, connections still open are shut.
async fn drain(ctx: &WorkerCtx) {
    let started = coarse_now();
    let limit = ctx.config.timeouts.drain;
    ctx.drain_phase.set(DrainPhase::Grace);
    wait_for_connections(ctx, started + DRAIN_GRACE.min(limit)).await;
    ctx.drain_phase.set(DrainPhase::Closing);
    ctx.conns.close_idle(proxy::HALF_CLOSE_LINGER);
    if wait_for_connections(ctx, started + limit).await {
        return;
    }
    ctx.conns.abort_all();
    wait_for_connections(ctx, coarse_now() + DRAIN_ABORT_WAIT).await;
}

/// Waits until the worker has no client connection left (true) or `deadline` passed (false).
async fn wait_for_connections(ctx: &WorkerCtx, deadline: Instant) -> bool {
    loop {
        if ctx.conns.active() == 0 {
            return true;
        }
        if coarse_now() >= deadline {
            return false;
        }
        monoio::time::sleep(DRAIN_POLL).await;
    }
}

/// How far a worker is into a drain (see `drain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainPhase {
    /// Not draining: connections are kept alive.
    Serving,
    /// No more keep-alive, but idle connections still wait for a request already sent.
    Grace,
    /// Connections close at their next request boundary.
    Closing,
}

/// Where a listener's requests go.
pub enum ListenerRouting {
    /// `upstream = "NAME"`: everything to this group, the target as received (what its
    /// implicit catch-all route table says, without consulting it per request).
    Upstream { group: u32 },
    /// `routes = "NAME"`: through this table, shared with the other listeners naming it.
    Routes {
        table: Arc<RouteTable>,
        /// By route index: the upstream group of a proxy route (`NOT_PROXIED` otherwise).
        groups: Box<[u32]>,
    },
}

impl ListenerRouting {
    /// In `ListenerRouting::Routes::groups`, a route that answers itself.
    pub const NOT_PROXIED: u32 = u32::MAX;

    /// The listener's routing, with upstream names resolved to group indices once.
    fn new(table: Arc<RouteTable>, upstreams: &Upstreams) -> Result<Self, String> {
        // A connection names the route that took its request in a u16 (the task's size).
        if table.routes().len() >= usize::from(u16::MAX) {
            return Err(format!(
                "route table {:?}: {} routes, at most {}",
                table.name().unwrap_or_default(),
                table.routes().len(),
                u16::MAX - 1
            ));
        }
        let mut groups = Vec::with_capacity(table.routes().len());
        for route in table.routes() {
            let group = match &route.action {
                RouteAction::Proxy(proxy) => {
                    let Some(group) = upstreams.group_index(&proxy.upstream) else {
                        return Err(format!(
                            "route refers to unknown upstream group {:?}",
                            proxy.upstream
                        ));
                    };
                    group as u32
                }
                RouteAction::Redirect(_) | RouteAction::Respond(_) => Self::NOT_PROXIED,
            };
            groups.push(group);
        }
        if table.name().is_none() {
            // A listener's implicit table: one route, no conditions, no normalisation.
            if let [group] = groups[..] {
                return Ok(Self::Upstream { group });
            }
        }
        Ok(Self::Routes {
            table,
            groups: groups.into_boxed_slice(),
        })
    }
}

/// How a listener's clients connect: plain HTTP, or TLS with the worker's own config.
pub struct Scheme {
    /// The worker's own TLS config for the listener (see `tls`); `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Header lines (each with its CRLF) added to every response relayed on it: HSTS.
    pub response_fields: Box<[u8]>,
}

impl Scheme {
    /// The scheme of the URL its clients used: for X-Forwarded-Proto and redirects.
    pub fn name(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Each listener's scheme, with this worker's own TLS configs (and session caches).
    fn for_listeners(plan: &WorkerPlan) -> Result<Box<[Scheme]>, String> {
        let mut schemes = Vec::with_capacity(plan.config.listeners.len());
        for (index, config) in plan.config.listeners.iter().enumerate() {
            let shared = plan.tls.get(index).and_then(Option::as_ref);
            let tls = shared
                .map(|tls| tls.server_config())
                .transpose()
                .map_err(|e| format!("cannot set up TLS for {}: {e}", config.address))?;
            let response_fields = shared.map(|t| t.response_fields().into());
            schemes.push(Scheme {
                tls,
                response_fields: response_fields.unwrap_or_default(),
            });
        }
        Ok(schemes.into_boxed_slice())
    }
}

/// Per-worker state every connection of the worker sees.
pub struct WorkerCtx {
    pub index: usize,
    pub config: Arc<Config>,
    pub head_limits: HeadLimits,
    pub upstreams: Upstreams,
    /// By listener, in config order.
    pub listeners: Box<[ListenerRouting]>,
    /// By listener, in config order: plain HTTP or TLS.
    pub schemes: Box<[Scheme]>,
    /// What route matching writes (the normalised path, the lower-cased host): one per
    /// worker, not per connection, which would cost every idle connection
    /// `max_request_line` bytes. Borrowed only while a request head is parsed and written,
    /// never across an await.
    pub route_scratch: RefCell<Scratch>,
    pub pool: RefCell<Pool>,
    /// Storage lent to connections while they serve a request.
    pub buffers: Buffers,
    /// Open client connections: idle marks and socket deadlines.
    pub conns: Rc<ConnTable>,
    /// The worker's counters and latency recorder.
    pub metrics: WorkerMetrics,
    /// The worker's part of the open-file limit, and what it did when that ran short.
    fds: WorkerShare,
    shortages: RefCell<ShortageReport>,
    /// The answer to a client the worker has no room for.
    refusal: Vec<u8>,
    global_shutdown: Arc<AtomicBool>,
    drain_phase: Cell<DrainPhase>,
}

impl WorkerCtx {
    fn new(plan: &WorkerPlan) -> Result<Self, String> {
        let config = plan.config.clone();
        let load = LoadView::new(
            plan.load.clone(),
            plan.index,
            config.runtime.reconcile_interval,
        )
        .map_err(|e| e.to_string())?;
        let upstreams = Upstreams::from_config(&config, plan.health.clone(), load);
        if plan.routes.len() > usize::from(u16::MAX) {
            return Err(format!(
                "{} listeners: at most {}",
                plan.routes.len(),
                u16::MAX
            ));
        }
        let listeners = plan
            .routes
            .iter()
            .map(|table| ListenerRouting::new(table.clone(), &upstreams))
            .collect::<Result<_, _>>()?;
        let schemes = Scheme::for_listeners(plan)?;
        let pool = Pool::new(
            upstreams.backend_count(),
            config.pool.max_idle_per_backend,
            config.pool.idle_timeout,
        );
        let mut refusal = Vec::new();
        write_error_response(&mut refusal, 503, true);
        let limits = &config.limits;
        let head_limits = HeadLimits {
            max_request_line: limits.max_request_line,
            max_header_bytes: limits.max_header_bytes,
            max_headers: limits.max_headers,
        };
        Ok(Self {
            index: plan.index,
            head_limits,
            upstreams,
            listeners,
            schemes,
            route_scratch: RefCell::new(Scratch::new(limits.max_request_line)),
            pool: RefCell::new(pool),
            buffers: Buffers::new(),
            conns: Rc::new(ConnTable::default()),
            metrics: WorkerMetrics::new(plan.metrics.clone(), plan.index),
            fds: plan.fds,
            shortages: RefCell::new(ShortageReport::new(plan.index, plan.fds)),
            refusal,
            global_shutdown: plan.shutdown.clone(),
            drain_phase: Cell::new(DrainPhase::Serving),
            config,
        })
    }

    pub fn drain_phase(&self) -> DrainPhase {
        self.drain_phase.get()
    }

    /// Whether the worker has room for one more client. Near its share, idle backend
    /// connections make way first: every client may need a backend connection of its own.
    fn admit_client(&self) -> bool {
        let clients = self.conns.active() + 1;
        if clients > self.fds.clients {
            return false;
        }
        let room = self.fds.idle_room(clients);
        let mut pool = self.pool.borrow_mut();
        // Counting the idle connections walks every backend's queue: only when they could
        // be too many.
        if pool.capacity() <= room {
            return true;
        }
        let excess = pool.idle_count().saturating_sub(room);
        let closed = pool.close_idle(excess);
        drop(pool);
        self.report(Shortage::IdleClosed(closed));
        true
    }

    /// Closes every idle backend connection (descriptors ran out); returns how many. Their
    /// closes go through the ring, so the descriptors are free after the worker's next turn.
    pub(crate) fn close_idle_backends(&self) -> usize {
        let closed = self.pool.borrow_mut().close_idle(usize::MAX);
        self.report(Shortage::IdleClosed(closed));
        closed
    }

    /// Answers a client the worker has no room for with a 503 and closes the connection, at
    /// once (the caller drops `client`): waiting for room could take as long as the
    /// connections holding it stay open.
    /// A TLS client would read a clear-text answer as garbage: it gets the close alone.
    fn refuse(&self, client: &monoio::net::TcpStream, tls: bool) {
        if tls {
            self.report(Shortage::Refused);
            return;
        }
        // SAFETY: `client` owns the descriptor and outlives this borrow of it.
        let fd = unsafe { BorrowedFd::borrow_raw(client.as_raw_fd()) };
        let socket = SockRef::from(&fd);
        // Non-blocking calls, not ring operations: a refusal must cost no task and no wait.
        // The request bytes already there are read first, so that the close is not a reset.
        let mut request = [std::mem::MaybeUninit::<u8>::uninit(); REFUSAL_DRAIN];
        let _ = socket.recv_with_flags(&mut request, libc::MSG_DONTWAIT);
        let _ = socket.send_with_flags(&self.refusal, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
        self.report(Shortage::Refused);
    }

    /// Logs what the open-file limit made the worker do, at most once per interval.
    pub(crate) fn report(&self, shortage: Shortage<'_>) {
        if let Some(line) = self.shortages.borrow_mut().note(shortage, self.conns.now()) {
            eprintln!("{line}");
        }
    }
}
