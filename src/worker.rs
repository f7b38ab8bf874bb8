//! Thread-per-core runtime: one pinned thread per core, each with its own monoio runtime on
//! the io_uring driver, its own SO_REUSEPORT listeners, its own backend pool.
//!
//! Workers take no locks on the request path. What crosses threads: per-backend atomics (the
//! health table and the per-core load board, see `upstream`), what a worker reports to the
//! main thread (`Event`), the shutdown flag, and the worker's `Mailbox`, through which a
//! reload hands it a new config generation (see `generation`). The worker looks at both from
//! its timer sweep, so it learns of either within `TIMER_TICK`: a reload installs the new
//! generation between two tasks, and a shutdown cancels the accepts and drains the worker's
//! connections (`drain`) before its thread ends.

use std::cell::{Cell, RefCell};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use monoio::io::Canceller;
use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};
use socket2::SockRef;

use crate::access_log::AccessLog;
use crate::clock::coarse_now;
use crate::config::{Config, RouteAction};
use crate::conns::{ConnTable, TIMER_TICK};
use crate::fdlimit::{Shortage, ShortageReport, WorkerShare};
use crate::generation::{ListenerId, SharedGeneration};
use crate::http::{HeadLimits, write_error_response};
use crate::log_warn;
use crate::metrics::{Counter, Metrics, RequestCounts, WorkerMetrics};
use crate::proxy;
use crate::proxy::buffer::Buffers;
use crate::proxy::request_id::RequestIds;
use crate::route::{RouteTable, Scratch};
use crate::tls;
use crate::upstream::Upstreams;
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
/// How long a stopping worker waits for room in the access log's queue for its last lines.
const ACCESS_LOG_EXIT_WAIT: Duration = Duration::from_secs(1);

/// Which I/O driver a worker ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    IoUring(RingSetup),
    Epoll,
}

/// What the main thread hears: from the workers, and the signals the signal thread passes on.
#[derive(Debug)]
pub enum Event {
    Started {
        index: usize,
        cpu: Option<usize>,
        driver: Driver,
    },
    /// The worker could not start (no io_uring and no fallback allowed, say).
    Failed { index: usize, reason: String },
    /// The worker serves new requests with config generation `generation`.
    Installed { index: usize, generation: u64 },
    /// The worker could not take generation `generation` and serves on with its last one.
    Refused {
        index: usize,
        generation: u64,
        reason: String,
    },
    /// The worker's thread is finishing (normally after shutdown; otherwise a fault).
    Exited { index: usize },
    /// A signal the process received.
    Signal(i32),
    /// How a binary upgrade ended (from the thread that follows it).
    Upgrade(crate::upgrade::Outcome),
}

/// A new config generation for one worker, and the sockets of the listeners it adds (one
/// or more per listener: after a binary upgrade from a process with more workers, some
/// workers accept on several).
pub struct Install {
    pub generation: Arc<SharedGeneration>,
    pub sockets: Vec<(ListenerId, TcpListener)>,
}

/// How the main thread hands a worker a new generation. The worker looks at it from its
/// timer sweep (one atomic load per tick); the main thread waits for each worker's answer
/// before the next reload, so it never holds more than one.
#[derive(Default)]
pub struct Mailbox {
    pending: AtomicBool,
    installs: Mutex<Vec<Install>>,
}

impl Mailbox {
    pub fn post(&self, install: Install) {
        self.lock().push(install);
        self.pending.store(true, Ordering::Release);
    }

    fn take(&self) -> Vec<Install> {
        if !self.pending.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Install>> {
        // Installs are plain data: one a panic left behind is still whole.
        self.installs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Everything a worker thread is handed at spawn.
pub struct WorkerPlan {
    pub index: usize,
    pub cpu: Option<usize>,
    /// The first generation, and the worker's own sockets of each listener.
    pub install: Install,
    /// Per-core in-flight counts per backend, read by every worker.
    pub load: Arc<LoadBoard>,
    /// The worker's part of the open-file limit.
    pub fds: WorkerShare,
    /// Where the worker counts what it does (its own block).
    pub metrics: Arc<Metrics>,
    pub shutdown: Arc<AtomicBool>,
    pub mailbox: Arc<Mailbox>,
    pub events: Sender<Event>,
    /// The worker's side of the access log, when there is one.
    pub access_log: Option<AccessLog>,
}

/// Sends `Exited` however the worker thread ends, panics included.
struct ExitReport {
    index: usize,
    events: Sender<Event>,
}

impl Drop for ExitReport {
    fn drop(&mut self) {
        let _ = self.events.send(Event::Exited { index: self.index });
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
    let runtime = plan.install.generation.config.runtime.clone();
    match build_uring_runtime(runtime.ring_entries) {
        Ok((mut rt, setup)) => rt.block_on(serve(plan, Driver::IoUring(setup))),
        Err(err) if runtime.allow_epoll => {
            log_warn!(
                worker: plan.index;
                "WARNING: worker {}: io_uring unavailable ({err}); falling back to epoll (--allow-epoll), expect lower throughput",
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
    let _ = plan.events.send(Event::Failed {
        index: plan.index,
        reason,
    });
}

async fn serve(mut plan: WorkerPlan, driver: Driver) {
    let sockets = std::mem::take(&mut plan.install.sockets);
    let access_log = plan.access_log.take();
    let ctx = match WorkerCtx::new(&plan, access_log) {
        Ok(ctx) => Rc::new(ctx),
        Err(reason) => return report_failure(&plan, reason),
    };
    if let Err(reason) = ctx.start_accepting(sockets) {
        return report_failure(&plan, reason);
    }
    monoio::spawn(housekeeping(ctx.clone()));
    monoio::spawn(sweep_deadlines(ctx.clone()));
    monoio::spawn(reconcile_load(ctx.clone()));
    let started = Event::Started {
        index: plan.index,
        cpu: plan.cpu,
        driver,
    };
    let _ = plan.events.send(started);
    // The worker's generations live in `ctx` from here: the first one must not outlive
    // them (the main thread frees removed backends' numbers once no generation holds them).
    drop(plan);
    while !ctx.global_shutdown.load(Ordering::Acquire) {
        monoio::time::sleep(TIMER_TICK).await;
    }
    ctx.stop_accepting(|_| true);
    while !ctx.accepting.borrow().is_empty() {
        monoio::time::sleep(DRAIN_POLL).await;
    }
    drain(&ctx).await;
    if let Some(log) = &ctx.access_log {
        log.flush_before_exit(&ctx.metrics, ACCESS_LOG_EXIT_WAIT);
    }
}

/// An accept loop on one socket of a listener, as the worker sees it from outside.
struct AcceptLoop {
    listener: ListenerId,
    /// Cancels the accept waiting in the ring; `None` once stopped.
    canceller: Option<Canceller>,
    stopped: Rc<Cell<bool>>,
}

/// Accepts clients while the worker has room for them (see `fdlimit`); at its share, a new
/// client gets a 503 at once rather than a wait in the listen queue with nobody to answer.
/// Each client is served with the worker's generation of the moment it is accepted (plain
/// HTTP or TLS as that generation says). Ends once `stopped`: cancelling the accept in the
/// ring loses no client, since an accept that completed first is still returned, and served.
async fn accept_loop(
    ctx: Rc<WorkerCtx>,
    listener: monoio::net::TcpListener,
    id: ListenerId,
    handle: monoio::io::CancelHandle,
    stopped: Rc<Cell<bool>>,
) {
    let mut backoff = ACCEPT_BACKOFF_MIN;
    while !stopped.get() {
        match listener.cancelable_accept(handle.clone()).await {
            Ok((stream, peer)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                ctx.serve_client(stream, peer, id);
            }
            Err(_) if stopped.get() => break,
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
    // Only this loop: the worker may accept on other sockets of the same listener.
    ctx.accepting
        .borrow_mut()
        .retain(|l| !Rc::ptr_eq(&l.stopped, &stopped));
}

async fn housekeeping(ctx: Rc<WorkerCtx>) {
    while ctx.drain_phase() == DrainPhase::Serving {
        monoio::time::sleep(HOUSEKEEPING_INTERVAL).await;
        let now = ctx.conns.now();
        ctx.pool.borrow_mut().evict_expired(now);
        // Shortages that ended since the last report are reported too.
        if let Some(line) = ctx.shortages.borrow_mut().due(now) {
            log_warn!(worker: ctx.index; "{line}");
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

/// Ends socket operations whose deadline passed (see `conns`), and installs a generation a
/// reload posted. Runs until the worker stops.
async fn sweep_deadlines(ctx: Rc<WorkerCtx>) {
    loop {
        monoio::time::sleep(TIMER_TICK).await;
        let now = coarse_now();
        let generation = ctx.generation();
        ctx.conns
            .sweep(now, |suspect| generation.upstreams.should_cut(suspect, now));
        ctx.metrics.sweep(
            ctx.conns.active(),
            ctx.conns.idle(),
            crate::upstream::stream::closed_on_this_thread(),
        );
        if let Some(log) = &ctx.access_log {
            log.flush(&ctx.metrics);
        }
        for install in ctx.mailbox.take() {
            ctx.install(install);
        }
    }
}

/// Refreshes this worker's view of the other workers' per-backend load. Between two runs
/// that view is at most `reconcile_interval` old: the staleness bound of least_conn, p2c
/// and max_conns.
async fn reconcile_load(ctx: Rc<WorkerCtx>) {
    loop {
        // `runtime` does not change with a reload: the first generation's is the one.
        monoio::time::sleep(ctx.runtime.reconcile_interval).await;
        ctx.load.reconcile();
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
    let limit = ctx.generation().config.timeouts.drain;
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

    /// The listener's routing, with upstream names resolved to group indices once. The
    /// table's size was checked with the config (`generation::check_limits`).
    fn new(table: Arc<RouteTable>, upstreams: &Upstreams) -> Result<Self, String> {
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
    fn for_listeners(generation: &SharedGeneration) -> Result<Box<[Scheme]>, String> {
        let listeners = &generation.config.listeners;
        let mut schemes = Vec::with_capacity(listeners.len());
        for (index, config) in listeners.iter().enumerate() {
            let shared = generation.tls.listeners.get(index).and_then(Option::as_ref);
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

/// What a worker serves with from one config generation: built by the worker from the
/// `SharedGeneration` a reload posted (its own balancers and TLS session caches), used by every
/// request that starts while it is current, and kept (`Rc`) by requests still running when
/// the next one comes.
pub struct Generation {
    pub number: u64,
    pub config: Arc<Config>,
    pub head_limits: HeadLimits,
    pub upstreams: Upstreams,
    /// By listener, in config order.
    pub listeners: Box<[ListenerRouting]>,
    /// By listener, in config order: plain HTTP or TLS.
    pub schemes: Box<[Scheme]>,
    /// Where the generation's responses are counted.
    pub requests: Arc<RequestCounts>,
    shared: Arc<SharedGeneration>,
}

impl Generation {
    fn new(shared: &Arc<SharedGeneration>, load: &Rc<LoadView>) -> Result<Self, String> {
        let config = shared.config.clone();
        let upstreams = Upstreams::from_config(
            &config,
            &shared.tls.upstreams,
            shared.health.clone(),
            load.clone(),
        );
        let listeners = shared
            .routes
            .iter()
            .map(|table| ListenerRouting::new(table.clone(), &upstreams))
            .collect::<Result<_, _>>()?;
        let limits = &config.limits;
        Ok(Self {
            number: shared.number,
            head_limits: HeadLimits {
                max_request_line: limits.max_request_line,
                max_header_bytes: limits.max_header_bytes,
                max_headers: limits.max_headers,
            },
            upstreams,
            listeners,
            schemes: Scheme::for_listeners(shared)?,
            requests: shared.requests.clone(),
            shared: shared.clone(),
            config,
        })
    }

    /// The position in this generation's config of listener `id`, if it still has it.
    pub fn position(&self, id: ListenerId) -> Option<usize> {
        self.shared.position(id)
    }
}

/// Per-worker state every connection of the worker sees.
pub struct WorkerCtx {
    pub index: usize,
    /// The generation new requests are served with (`generation()`).
    current: RefCell<Rc<Generation>>,
    /// `current`'s number, read by every request to see whether it should move on to it.
    current_number: Cell<u64>,
    /// The generation before `current`, if there was one.
    previous: RefCell<Option<Rc<Generation>>>,
    /// Settings a reload does not change (`runtime`): the first generation's.
    runtime: crate::config::RuntimeConfig,
    /// The worker's view of backend load, for every generation.
    load: Rc<LoadView>,
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
    /// The worker's side of the access log; `None`: off.
    pub access_log: Option<AccessLog>,
    /// Request ids generated for requests without one.
    pub request_ids: RequestIds,
    /// The worker's part of the open-file limit, and what it did when that ran short.
    fds: WorkerShare,
    shortages: RefCell<ShortageReport>,
    /// The answer to a client the worker has no room for.
    refusal: Vec<u8>,
    global_shutdown: Arc<AtomicBool>,
    drain_phase: Cell<DrainPhase>,
    /// The listeners the worker accepts on.
    accepting: RefCell<Vec<AcceptLoop>>,
    mailbox: Arc<Mailbox>,
    events: Sender<Event>,
}

impl WorkerCtx {
    fn new(plan: &WorkerPlan, access_log: Option<AccessLog>) -> Result<Self, String> {
        let shared = &plan.install.generation;
        let config = &shared.config;
        let load = LoadView::new(
            plan.load.clone(),
            plan.index,
            config.runtime.reconcile_interval,
        )
        .map_err(|e| e.to_string())?;
        let load = Rc::new(load);
        let generation = Generation::new(shared, &load)?;
        let upstreams = &generation.upstreams;
        let pool = Pool::new(
            upstreams.backend_count(),
            config.pool.max_idle_per_backend,
            config.pool.idle_timeout,
            |backend| upstreams.pooled(backend),
        );
        let mut refusal = Vec::new();
        write_error_response(&mut refusal, 503, true);
        Ok(Self {
            index: plan.index,
            route_scratch: RefCell::new(Scratch::new(config.limits.max_request_line)),
            runtime: config.runtime.clone(),
            current_number: Cell::new(generation.number),
            previous: RefCell::new(None),
            current: RefCell::new(Rc::new(generation)),
            load,
            pool: RefCell::new(pool),
            buffers: Buffers::new(),
            conns: Rc::new(ConnTable::default()),
            metrics: WorkerMetrics::new(plan.metrics.clone(), plan.index, config.runtime.metrics),
            access_log,
            request_ids: RequestIds::new(),
            fds: plan.fds,
            shortages: RefCell::new(ShortageReport::new(plan.index, plan.fds)),
            refusal,
            global_shutdown: plan.shutdown.clone(),
            drain_phase: Cell::new(DrainPhase::Serving),
            accepting: RefCell::new(Vec::new()),
            mailbox: plan.mailbox.clone(),
            events: plan.events.clone(),
        })
    }

    /// The generation new requests are served with.
    #[inline]
    pub fn generation(&self) -> Rc<Generation> {
        self.current.borrow().clone()
    }

    /// Whether `generation` is the current one (a request checks before it is routed).
    #[inline]
    pub fn is_current(&self, generation: &Generation) -> bool {
        generation.number == self.current_number.get()
    }

    /// The worker's view of backend load (one for all its generations).
    #[inline]
    pub fn load(&self) -> &LoadView {
        &self.load
    }

    /// Whether something times requests (metrics or the access log): the clock is read for
    /// them only then.
    #[inline]
    pub fn times_requests(&self) -> bool {
        self.metrics.enabled() || self.access_log.is_some()
    }

    /// Takes a generation a reload posted: new requests use it from now on; listeners it
    /// drops stop accepting (their idle connections close, the others at their next request
    /// boundary), listeners it adds start. Told to the main thread either way.
    fn install(self: &Rc<Self>, install: Install) {
        let number = install.generation.number;
        let event = match self.try_install(install) {
            Ok(()) => Event::Installed {
                index: self.index,
                generation: number,
            },
            Err(reason) => Event::Refused {
                index: self.index,
                generation: number,
                reason,
            },
        };
        let _ = self.events.send(event);
    }

    fn try_install(self: &Rc<Self>, install: Install) -> Result<(), String> {
        self.load.grow();
        for &backend in &install.generation.reborn {
            self.load.forget(backend);
        }
        let generation = Generation::new(&install.generation, &self.load)?;
        let config = &generation.config;
        let upstreams = &generation.upstreams;
        self.pool.borrow_mut().reconfigure(
            upstreams.backend_count(),
            config.pool.max_idle_per_backend,
            config.pool.idle_timeout,
            |backend| upstreams.pooled(backend),
        );
        let shared = install.generation;
        self.stop_accepting(|id| shared.position(id).is_none());
        self.conns
            .close_idle_where(proxy::HALF_CLOSE_LINGER, |id| shared.position(id).is_none());
        self.current_number.set(generation.number);
        let previous = self.current.replace(Rc::new(generation));
        *self.previous.borrow_mut() = Some(previous);
        self.start_accepting(install.sockets)
    }

    /// Starts an accept loop on each of `sockets`.
    fn start_accepting(
        self: &Rc<Self>,
        sockets: Vec<(ListenerId, TcpListener)>,
    ) -> Result<(), String> {
        for (id, socket) in sockets {
            let listener = monoio::net::TcpListener::from_std(socket)
                .map_err(|e| format!("cannot register listener: {e}"))?;
            let canceller = Canceller::new();
            let stopped = Rc::new(Cell::new(false));
            let handle = canceller.handle();
            self.accepting.borrow_mut().push(AcceptLoop {
                listener: id,
                canceller: Some(canceller),
                stopped: stopped.clone(),
            });
            monoio::spawn(accept_loop(self.clone(), listener, id, handle, stopped));
        }
        Ok(())
    }

    /// Stops the accept loops of the listeners `which` names. Each ends on its own once its
    /// accept comes back (at once: it is cancelled), closing the worker's socket.
    fn stop_accepting(&self, which: impl Fn(ListenerId) -> bool) {
        for accept in self.accepting.borrow_mut().iter_mut() {
            if !which(accept.listener) {
                continue;
            }
            accept.stopped.set(true);
            if let Some(canceller) = accept.canceller.take() {
                canceller.cancel();
            }
        }
    }

    /// Serves a client accepted on listener `id` with the current generation.
    fn serve_client(
        self: &Rc<Self>,
        stream: monoio::net::TcpStream,
        peer: std::net::SocketAddr,
        id: ListenerId,
    ) {
        self.metrics.count(Counter::Accepted);
        // A client accepted in the turn its listener was removed is served by the
        // generation before, which had it.
        let found = [Some(self.generation()), self.previous.borrow().clone()]
            .into_iter()
            .flatten()
            .find_map(|g| Some((g.position(id)?, g)));
        let Some((position, generation)) = found else {
            return self.refuse(&stream, false);
        };
        let tls = generation.schemes[position].tls.clone();
        if !self.admit_client() {
            return self.refuse(&stream, tls.is_some());
        }
        let fd = stream.as_raw_fd();
        let slot = self.conns.register(fd, id);
        match tls {
            None => {
                let conn = proxy::serve_connection(
                    self.clone(),
                    generation,
                    stream,
                    fd,
                    peer,
                    position,
                    slot,
                );
                monoio::spawn(conn);
            }
            Some(tls) => {
                let conn = tls::serve_tls(
                    self.clone(),
                    generation,
                    stream,
                    fd,
                    peer,
                    position,
                    slot,
                    tls,
                );
                monoio::spawn(conn);
            }
        }
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
            log_warn!(worker: self.index; "{line}");
        }
    }
}
