//! Process lifecycle: plan the workers, bind the listeners (or take those of the process a
//! binary upgrade replaces), start the worker threads, report readiness; then, on the main
//! thread, turn SIGHUP into a reload (a new config generation, see `generation`), SIGUSR2
//! into a binary upgrade (see `upgrade`) and SIGTERM/SIGINT into a graceful drain.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;
use socket2::SockRef;

use crate::access_log::{self, AccessLogQueue};
use crate::admin::{self, AdminState};
use crate::config::{Config, ConfigError, format_cpu_list};
use crate::fdlimit::{self, WorkerShare};
use crate::generation::{
    Current, ListenerId, ListenerIds, SharedGeneration, check_limits, describe_changes,
};
use crate::listen::{BoundListener, adopt, bind_reuseport};
use crate::metrics::{Labels, Metrics};
use crate::pidfile::{self, PidFile};
use crate::plural::count;
use crate::route::RouteTable;
use crate::systemd;
use crate::tls::TlsSetup;
use crate::upgrade::{self, Handover, Inherited, Outcome, Predecessor, Relaunch, Role};
use crate::upstream::BackendId;
use crate::upstream::health::{HealthTable, spawn_checker};
use crate::upstream::ids::BackendIds;
use crate::upstream::load::LoadBoard;
use crate::worker::{Driver, Event, Install, Mailbox, WorkerPlan, run_worker};
use crate::{log_error, log_info, log_warn};

/// Where the workers run, checked against the cpus this process may use.
#[derive(Debug)]
pub struct Placement {
    /// Each worker's cpu (`None`: not pinned).
    pub cpus: Vec<Option<usize>>,
    available: Vec<usize>,
}

impl Placement {
    /// One worker per listed cpu, else `workers` (default: one per available cpu) spread
    /// over the available cpus in turn. A cpu this process may not use is an error of the
    /// configuration, placed where the setting was written.
    pub fn new(config: &Config, available: Vec<usize>) -> Result<Self, ConfigError> {
        let runtime = &config.runtime;
        let origin = &config.origin;
        if !runtime.cpus.is_empty() {
            if let Some(n) = runtime.workers.filter(|&n| n != runtime.cpus.len()) {
                return Err(origin.error(
                    "runtime.workers",
                    format!(
                        "{} but {} listed: give one cpu per worker",
                        count(n, "worker"),
                        count(runtime.cpus.len(), "cpu")
                    ),
                ));
            }
            if let Some(cpu) = runtime.cpus.iter().find(|c| !available.contains(c)) {
                return Err(origin.error(
                    "runtime.cpus",
                    format!(
                        "cpu {cpu} is not available to this process (available: {})",
                        format_cpu_list(&available)
                    ),
                ));
            }
            let cpus = runtime.cpus.iter().map(|&c| runtime.pin.then_some(c));
            return Ok(Self {
                cpus: cpus.collect(),
                available,
            });
        }
        let workers = runtime.workers.unwrap_or(available.len());
        if workers == 0 || available.is_empty() {
            return Err(origin.error("runtime.workers", "at least one worker is needed"));
        }
        let cpus = (0..workers)
            .map(|i| runtime.pin.then(|| available[i % available.len()]))
            .collect();
        Ok(Self { cpus, available })
    }

    /// More workers than cpus share cores, each costing the others latency: said once at
    /// start, naming the cpus that carry more than one.
    pub fn crowding(&self) -> Option<String> {
        let workers = self.cpus.len();
        if workers <= self.available.len() {
            return None;
        }
        let on = count(self.available.len(), "cpu");
        let mut shared: Vec<(usize, usize)> = Vec::new();
        for cpu in self.cpus.iter().flatten() {
            match shared.iter_mut().find(|(c, _)| c == cpu) {
                Some((_, n)) => *n += 1,
                None => shared.push((*cpu, 1)),
            }
        }
        let carried: Vec<String> = shared
            .iter()
            .filter(|&&(_, n)| n > 1)
            .map(|&(cpu, n)| format!("cpu {cpu} carries {}", count(n, "worker")))
            .collect();
        Some(if carried.is_empty() {
            format!("{} on {on}, unpinned", count(workers, "worker"))
        } else {
            format!(
                "{} on {on}: {}",
                count(workers, "worker"),
                carried.join(", ")
            )
        })
    }
}

/// The cpus this process may run on; `Err` only if the kernel will not say.
pub fn available_cpus() -> Result<Vec<usize>, String> {
    let cpus: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    if cpus.is_empty() {
        return Err("cannot determine the cpus this process may run on".into());
    }
    Ok(cpus)
}

/// Reads the config again for a reload: the same file (or flags) the process started
/// with, checked as at start; `Err` is the error list `--check` would print.
pub type Reloader = Box<dyn Fn() -> Result<(Config, TlsSetup), String>>;

/// How long the main thread waits for every worker to take a new generation before it says
/// which did not (a worker answers within a timer tick unless it is stuck).
const INSTALL_WAIT: Duration = Duration::from_secs(5);
/// How often the main thread wakes without an event, to notice an install that is late.
const CONTROL_POLL: Duration = Duration::from_millis(500);
/// How long the process waits at exit for the access log's writer to write its queue.
const ACCESS_LOG_FINISH_WAIT: Duration = Duration::from_secs(5);

/// How the process came to be, and how to start its successor.
pub struct Lineage {
    /// How to start this program again for a binary upgrade.
    pub relaunch: Relaunch,
    /// In a process a binary upgrade started: the process it replaces, and the listening
    /// sockets it passed.
    pub takeover: Option<(Predecessor, Inherited)>,
}

/// Runs the proxy until a shutdown signal has been handled, or a binary upgrade's new
/// process has taken over and this one has drained. `Err` is a start-up failure or a
/// worker that died, described for the user. `tls` holds, per listener, the certificates
/// `tls::load` read; `reload` reads the config again on SIGHUP.
pub fn run(
    config: Config,
    placement: Placement,
    tls: TlsSetup,
    reload: Reloader,
    lineage: Lineage,
) -> Result<(), String> {
    if let Some(warning) = placement.crowding() {
        log_warn!("warning: {warning}");
    }
    let cpus = placement.cpus;
    let workers = cpus.len();
    let fds = plan_open_files(&config, workers);
    // Kept until this process ends: its socket's close tells the predecessor that this one
    // has, if it has not said it is ready.
    let (predecessor, mut inherited) = match lineage.takeover {
        Some((predecessor, inherited)) => {
            log_info!(
                "upgrade: taking over {} from pid {}",
                inherited.describe(),
                predecessor.pid()
            );
            (Some(predecessor), inherited)
        }
        None => (None, Inherited::default()),
    };
    let admin_listener = match &config.admin {
        Some(settings) => {
            let listener = match inherited.take_admin(settings.address) {
                Some(listener) => listener,
                None => admin::bind(settings)?,
            };
            Some((listener, settings.clone()))
        }
        None => None,
    };
    // Our own handle on the admin socket: shutting it down wakes the admin thread's accept.
    let mut wake_handles = Vec::new();
    if let Some((listener, _)) = &admin_listener {
        wake_handles.push(
            listener
                .try_clone()
                .map_err(|e| format!("cannot clone the admin listener: {e}"))?,
        );
    }
    let (events_tx, events) = mpsc::channel();
    let signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let mut control = Control::new(workers, reload, lineage.relaunch, events_tx.clone());
    control.inherited = inherited;
    if let Some((listener, settings)) = &admin_listener {
        let copy = listener
            .try_clone()
            .map_err(|e| format!("cannot clone the admin listener: {e}"))?;
        control.admin = Some((settings.address, copy));
    }
    let (first, installs) = control
        .prepare(config, tls)
        .map_err(|rejected| rejected.reason)?;
    for address in std::mem::take(&mut control.inherited).left() {
        log_warn!(
            "upgrade: {address} is not in the configuration: closed once the old process exits"
        );
    }
    let mut installs = installs.into_iter();
    let access_log = first.config.access_log.as_ref();
    let (writer, log_queue) = access_log::start(access_log, workers, &control.metrics)?.unzip();
    control.access_log = writer;
    control.adopt(first.clone());
    let current = control.current.clone().ok_or("no config generation")?;
    let shutdown = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::with_capacity(workers);
    for (index, cpu) in cpus.iter().copied().enumerate() {
        let mailbox = Arc::new(Mailbox::default());
        control.mailboxes.push(mailbox.clone());
        let plan = WorkerPlan {
            index,
            cpu,
            install: installs
                .next()
                .ok_or("fewer listener sockets than workers")?,
            load: control.load.clone(),
            fds,
            metrics: control.metrics.clone(),
            shutdown: shutdown.clone(),
            mailbox,
            events: events_tx.clone(),
            access_log: log_queue.as_ref().map(AccessLogQueue::worker),
        };
        let thread = thread::Builder::new()
            .name(format!("ringproxy-w{index}"))
            .spawn(move || run_worker(plan))
            .map_err(|e| format!("cannot start worker thread: {e}"))?;
        threads.push(thread);
    }
    // The workers hold the queue now: the writer ends once they all have.
    drop(log_queue);

    let started = wait_for_start(&events, workers);
    if let Err(reason) = started {
        trigger_shutdown(&shutdown, &wake_handles);
        join_all(threads);
        return Err(reason);
    }
    let admin_thread = match admin_listener {
        Some((listener, settings)) => {
            let state = AdminState {
                current,
                admin: settings,
                metrics: control.metrics.clone(),
                load: control.load.clone(),
                cpus,
                started: std::time::Instant::now(),
            };
            let address = listener.local_addr().map_or(state.admin.address, |a| a);
            match admin::spawn(listener, state, shutdown.clone()) {
                Ok(thread) => {
                    log_info!("admin on {address} (/metrics, /status)");
                    Some(thread)
                }
                Err(e) => {
                    trigger_shutdown(&shutdown, &wake_handles);
                    join_all(threads);
                    return Err(format!("cannot start the admin thread: {e}"));
                }
            }
        }
        None => None,
    };
    if let Err(e) = control.start_checker(&first) {
        trigger_shutdown(&shutdown, &wake_handles);
        join_all(threads);
        return Err(format!("cannot start the health checker: {e}"));
    }
    for line in listening_lines(&first) {
        log_info!("{line}");
    }
    control.pid_file = match first.config.runtime.pid_file.as_deref().map(PidFile::write) {
        Some(Err(e)) => {
            trigger_shutdown(&shutdown, &wake_handles);
            join_all(threads);
            control.stop_checker();
            return Err(format!("cannot write the pid file: {e}"));
        }
        Some(Ok(file)) => Some(file),
        None => None,
    };
    // The workers and the control hold the generation from here: a reload can then retire it.
    drop(first);
    let ready = format!("ready ({})", count(workers, "worker"));
    log_info!("{ready}");
    systemd::notify_ready(&ready);
    if let Some(predecessor) = &predecessor
        && let Err(e) = predecessor.tell_ready()
    {
        log_warn!(
            "upgrade: cannot tell pid {} that this process is ready ({e}); both serve until it gives up on this one",
            predecessor.pid()
        );
    }

    thread::Builder::new()
        .name("ringproxy-signals".into())
        .spawn(move || forward_signals(signals, &events_tx))
        .map_err(|e| format!("cannot start signal thread: {e}"))?;

    let result = control.serve(&events, &shutdown, &wake_handles);
    join_all(threads);
    if let Some(writer) = control.access_log.take() {
        writer.finish(ACCESS_LOG_FINISH_WAIT);
    }
    control.stop_checker();
    join_all(admin_thread.into_iter().collect());
    drop(control.pid_file.take());
    // Only a drain ends without a fault: its last word, once nothing runs any more.
    if result.is_ok() {
        log_info!("stopped");
    }
    drop(predecessor);
    result
}

/// `listening on ADDR -> ...`, one line per listener of `generation`.
fn listening_lines(generation: &SharedGeneration) -> Vec<String> {
    let config = &generation.config;
    config
        .listeners
        .iter()
        .zip(&generation.addresses)
        .map(|(listener, addr)| {
            let scheme = if listener.tls.is_some() {
                " (https)"
            } else {
                ""
            };
            match &listener.routes {
                Some(table) => format!("listening on {addr}{scheme} -> routes \"{table}\""),
                None => format!(
                    "listening on {addr}{scheme} -> upstream \"{}\"",
                    listener.upstream
                ),
            }
        })
        .collect()
}

/// A config the running process cannot take, and why.
struct Rejected {
    reason: String,
}

impl From<String> for Rejected {
    fn from(reason: String) -> Self {
        Self { reason }
    }
}

/// A listener's sockets, as the main thread keeps them: a copy of each worker's (the same
/// sockets), dropped when a reload removes the listener, passed on by a binary upgrade.
struct Listening {
    address: SocketAddr,
    sockets: Vec<TcpListener>,
}

/// The active health checker of the current generation, and how to stop it.
struct Checker {
    thread: Option<thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

/// A reload the workers have been told of, and who has answered.
struct PendingInstall {
    generation: u64,
    answered: Vec<bool>,
    since: Instant,
}

/// A binary upgrade under way: its new process.
struct UpgradeUnderWay {
    pid: u32,
}

/// The main thread's state: what a reload starts from and what it replaces.
struct Control {
    workers: usize,
    reload: Reloader,
    relaunch: Relaunch,
    /// Where a binary upgrade's thread reports how it ended.
    events: mpsc::Sender<Event>,
    /// Sockets passed by the process this one replaces, until the first generation takes
    /// them.
    inherited: Inherited,
    /// The admin listener's configured address, and a copy of its socket to pass on.
    admin: Option<(SocketAddr, TcpListener)>,
    pid_file: Option<PidFile>,
    upgrade: Option<UpgradeUnderWay>,
    /// A stop signal came (a second one exits at once).
    stop_signalled: bool,
    /// The generation serving new requests (none before the first).
    generation: Option<Arc<SharedGeneration>>,
    /// What the admin thread reads (from the first generation on).
    current: Option<Arc<Current>>,
    backend_ids: BackendIds,
    /// Every generation made, while something still holds it.
    running: Vec<std::sync::Weak<SharedGeneration>>,
    listener_ids: ListenerIds,
    listening: HashMap<ListenerId, Listening>,
    load: Arc<LoadBoard>,
    metrics: Arc<Metrics>,
    mailboxes: Vec<Arc<Mailbox>>,
    checker: Option<Checker>,
    pending: Option<PendingInstall>,
    /// A SIGHUP came while the workers were still taking the last reload.
    reload_again: bool,
    /// The access log's writer, which SIGUSR1 makes reopen its file.
    access_log: Option<access_log::writer::Writer>,
}

impl Control {
    fn new(
        workers: usize,
        reload: Reloader,
        relaunch: Relaunch,
        events: mpsc::Sender<Event>,
    ) -> Self {
        Self {
            workers,
            reload,
            relaunch,
            events,
            inherited: Inherited::default(),
            admin: None,
            pid_file: None,
            upgrade: None,
            stop_signalled: false,
            generation: None,
            current: None,
            backend_ids: BackendIds::default(),
            running: Vec::new(),
            listener_ids: ListenerIds::default(),
            listening: HashMap::new(),
            load: LoadBoard::new(workers, 0),
            metrics: Metrics::new(workers),
            mailboxes: Vec::with_capacity(workers),
            checker: None,
            pending: None,
            reload_again: false,
            access_log: None,
        }
    }

    /// Builds the next generation from `config`: numbers its backends and listeners, binds
    /// the listeners it adds (or takes the sockets a binary upgrade passed for their
    /// addresses), carries health over. Returns it with one `Install` per worker.
    /// Nothing changes for the running generation until `adopt`, and a rejected config
    /// leaves no trace but backend numbers (kept for when those backends come).
    fn prepare(
        &mut self,
        mut config: Config,
        tls: TlsSetup,
    ) -> Result<(Arc<SharedGeneration>, Vec<Install>), Rejected> {
        let previous = self.generation.clone();
        if let Some(previous) = &previous {
            for warning in keep_fixed_settings(&mut config, &previous.config) {
                log_warn!("reload: {warning}");
            }
        }
        check_limits(&config).map_err(|e| e.to_string())?;
        let routes = crate::route::listener_tables(&config);
        let number = previous.as_ref().map_or(1, |p| p.number + 1);
        self.release_backend_ids();
        let numbered = self
            .backend_ids
            .assign(&config, number)
            .map_err(|e| e.to_string())?;
        let old_listeners = previous
            .as_ref()
            .map_or(Vec::new(), |p| p.listener_ids.clone());
        let listener_ids = self.listener_ids.assign(&config);
        let mut sockets: Vec<Vec<(ListenerId, TcpListener)>> =
            (0..self.workers).map(|_| Vec::new()).collect();
        let mut addresses = Vec::with_capacity(listener_ids.len());
        let mut bound = Vec::new();
        for (listener, &(id, new)) in config.listeners.iter().zip(&listener_ids) {
            if !new && let Some(listening) = self.listening.get(&id) {
                addresses.push(listening.address);
                continue;
            }
            match self.listen(listener.address) {
                Ok(sockets) => {
                    addresses.push(sockets.local_addr);
                    bound.push((id, sockets));
                }
                Err(e) => {
                    self.listener_ids.keep_only(&old_listeners);
                    return Err(e.to_string().into());
                }
            }
        }
        for (id, listener) in bound {
            let mut copies = Vec::with_capacity(listener.sockets.len());
            for (index, socket) in listener.sockets.into_iter().enumerate() {
                copies.push(
                    socket
                        .try_clone()
                        .map_err(|e| format!("cannot clone listener: {e}"))?,
                );
                sockets[index % self.workers].push((id, socket));
            }
            let listening = Listening {
                address: listener.local_addr,
                sockets: copies,
            };
            self.listening.insert(id, listening);
        }
        let ids: Vec<ListenerId> = listener_ids.iter().map(|&(id, _)| id).collect();
        self.load.grow(self.backend_ids.len());
        for &backend in &numbered.reborn {
            self.load.forget(backend);
        }
        let health = HealthTable::with_ids(
            &config,
            &numbered.ids,
            self.backend_ids.len(),
            previous.as_ref().map(|p| &*p.health),
            &numbered.reborn,
        );
        let labels = request_labels(&config, &addresses, &routes, &numbered.ids);
        let generation = Arc::new(SharedGeneration {
            number,
            config: Arc::new(config),
            routes,
            tls,
            listener_ids: ids,
            addresses,
            health: Arc::new(health),
            requests: self.metrics.request_counts(labels),
            reborn: numbered.reborn,
        });
        self.running.push(Arc::downgrade(&generation));
        let installs = sockets
            .into_iter()
            .map(|sockets| Install {
                generation: generation.clone(),
                sockets,
            })
            .collect();
        Ok((generation, installs))
    }

    /// Frees the numbers of removed backends nothing can use any more: no generation older
    /// than the one that removed them still runs (a worker, a request, a tunnel holds it),
    /// and no worker has a request in flight to them.
    fn release_backend_ids(&mut self) {
        self.running.retain(|g| g.strong_count() > 0);
        let oldest = self
            .running
            .iter()
            .filter_map(|g| g.upgrade().map(|g| g.number))
            .min()
            .unwrap_or(u64::MAX);
        let load = &self.load;
        self.backend_ids.release(oldest, |backend| {
            (0..load.workers()).any(|w| load.published(w, backend.0) > 0)
        });
    }

    /// The sockets for a listener configured at `address`: those a binary upgrade passed for
    /// it, else new ones.
    fn listen(&mut self, address: SocketAddr) -> Result<BoundListener, crate::listen::ListenError> {
        match self.inherited.take_listener(address) {
            Some((bound, sockets)) => adopt(bound, sockets, self.workers),
            None => bind_reuseport(address, self.workers),
        }
    }

    /// Makes `generation` the current one for the main and admin threads, and forgets the
    /// listeners it no longer has (the workers close their copies when they install it).
    fn adopt(&mut self, generation: Arc<SharedGeneration>) {
        self.listener_ids.keep_only(&generation.listener_ids);
        self.listening
            .retain(|id, _| generation.listener_ids.contains(id));
        match &self.current {
            Some(current) => current.set(generation.clone()),
            None => self.current = Some(Arc::new(Current::new(generation.clone()))),
        }
        self.generation = Some(generation);
    }

    /// Re-reads the config (SIGHUP) and, if it is valid, hands the workers the new
    /// generation; an invalid one is rejected with its errors, and the running one stays.
    fn reload(&mut self) {
        if let Some(upgrade) = &self.upgrade {
            log_warn!(
                "reload refused: a binary upgrade is under way (new process pid {}), which reads the configuration itself; reload again once it is over",
                upgrade.pid
            );
            return;
        }
        if self.pending.is_some() {
            self.reload_again = true;
            return;
        }
        let Some(old) = self.generation.clone() else {
            return;
        };
        let next = old.number + 1;
        let prepared = (self.reload)()
            .map_err(Rejected::from)
            .and_then(|(config, tls)| self.prepare(config, tls));
        let (generation, installs) = match prepared {
            Ok(prepared) => prepared,
            Err(rejected) => {
                log_warn!(
                    "reload rejected; generation {} serves on:\n{}",
                    old.number,
                    rejected.reason
                );
                return;
            }
        };
        let log = generation.config.log;
        crate::log::configure(log.level, log.format);
        log_info!("reload: generation {next}");
        for line in describe_changes(&old.config, &generation.config) {
            log_info!("generation {next}: {line}");
        }
        self.adopt(generation.clone());
        self.restart_checker(&generation);
        for (mailbox, install) in self.mailboxes.iter().zip(installs) {
            mailbox.post(install);
        }
        self.pending = Some(PendingInstall {
            generation: next,
            answered: vec![false; self.workers],
            since: Instant::now(),
        });
    }

    /// A worker's answer to a posted generation.
    fn answered(&mut self, index: usize, generation: u64, refusal: Option<String>) {
        if let Some(reason) = refusal {
            log_warn!(
                worker: index;
                "worker {index} cannot take generation {generation} ({reason}); it serves on with the one before"
            );
        }
        let Some(pending) = self.pending.as_mut().filter(|p| p.generation == generation) else {
            return;
        };
        if let Some(answered) = pending.answered.get_mut(index) {
            *answered = true;
        }
        if pending.answered.iter().all(|&a| a) {
            log_info!("generation {generation} serving on every worker");
            self.finish_install();
        }
    }

    /// Says which workers have not taken the posted generation in time.
    fn check_install_time(&mut self) {
        let Some(pending) = &self.pending else {
            return;
        };
        if pending.since.elapsed() < INSTALL_WAIT {
            return;
        }
        let late: Vec<String> = pending
            .answered
            .iter()
            .enumerate()
            .filter(|&(_, &a)| !a)
            .map(|(i, _)| i.to_string())
            .collect();
        log_warn!(
            "generation {}: worker(s) {} have not taken it after {}s",
            pending.generation,
            late.join(", "),
            INSTALL_WAIT.as_secs()
        );
        self.finish_install();
    }

    fn finish_install(&mut self) {
        self.pending = None;
        if std::mem::take(&mut self.reload_again) {
            self.reload();
        }
    }

    fn start_checker(&mut self, generation: &SharedGeneration) -> std::io::Result<()> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = spawn_checker(
            generation.config.clone(),
            &generation.tls.upstreams,
            generation.health.clone(),
            stop.clone(),
        )?;
        self.checker = Some(Checker { thread, stop });
        Ok(())
    }

    fn stop_checker(&mut self) {
        if let Some(checker) = self.checker.take() {
            checker.stop.store(true, Ordering::Release);
            join_all(checker.thread.into_iter().collect());
        }
    }

    /// The checker follows the generation: the old one stops, the new one checks the new
    /// backends with the new settings, into the same health states.
    fn restart_checker(&mut self, generation: &SharedGeneration) {
        self.stop_checker();
        if let Err(e) = self.start_checker(generation) {
            log_error!("cannot restart the health checker: {e}; active checks are off");
        }
    }

    /// SIGUSR2: starts this program again, passing it every listening socket (see
    /// `upgrade`). One upgrade at a time, and none while stopping.
    fn start_upgrade(&mut self, shutdown: &AtomicBool) {
        if shutdown.load(Ordering::Acquire) {
            log_warn!("upgrade refused: this process is stopping");
            return;
        }
        if let Some(upgrade) = &self.upgrade {
            log_warn!(
                "upgrade refused: one is under way (new process pid {})",
                upgrade.pid
            );
            return;
        }
        if let Some(pid_file) = &self.pid_file {
            let _ = std::fs::remove_file(pidfile::upgrade_failure_path(pid_file.path()));
        }
        let handover = match self.handover() {
            Ok(handover) => handover,
            Err(reason) => return self.upgrade_failed(&reason),
        };
        let passed = handover.describe();
        let events = self.events.clone();
        let report = move |outcome| {
            let _ = events.send(Event::Upgrade(outcome));
        };
        // A new process that must be stopped gets as long to drain as this one would.
        let drain = self
            .generation
            .as_ref()
            .map_or(Duration::ZERO, |g| g.config.timeouts.drain);
        let stop_wait = drain + Duration::from_secs(1);
        match upgrade::start(
            &self.relaunch,
            handover,
            upgrade::READY_TIMEOUT,
            stop_wait,
            report,
        ) {
            Ok(pid) => {
                log_info!("upgrade: started pid {pid} with {passed}");
                self.upgrade = Some(UpgradeUnderWay { pid });
            }
            Err(reason) => self.upgrade_failed(&reason),
        }
    }

    /// Copies of every listening socket, each described.
    fn handover(&self) -> Result<Handover, String> {
        let generation = self.generation.as_ref().ok_or("no config generation")?;
        let copy = |socket: &TcpListener| {
            socket
                .try_clone()
                .map_err(|e| format!("cannot copy a listening socket: {e}"))
        };
        let mut handover = Handover::default();
        let listeners = generation.config.listeners.iter();
        for (listener, id) in listeners.zip(&generation.listener_ids) {
            let Some(listening) = self.listening.get(id) else {
                continue;
            };
            for (index, socket) in listening.sockets.iter().enumerate() {
                let role = Role::Listener {
                    configured: listener.address,
                    bound: listening.address,
                    index,
                };
                handover.push(role, copy(socket)?);
            }
        }
        if let Some((configured, socket)) = &self.admin {
            let bound = socket
                .local_addr()
                .map_err(|e| format!("cannot read the admin listener's address: {e}"))?;
            let role = Role::Admin {
                configured: *configured,
                bound,
            };
            handover.push(role, copy(socket)?);
        }
        Ok(handover)
    }

    /// How the upgrade under way ended: the new process serves (this one stops accepting,
    /// drains and exits), or it is gone (this one serves on).
    fn upgrade_ended(&mut self, outcome: Outcome, shutdown: &AtomicBool) {
        self.upgrade = None;
        match outcome {
            Outcome::Ready { pid } if shutdown.load(Ordering::Acquire) => {
                log_warn!("upgrade: pid {pid} is ready, but both were told to stop");
            }
            Outcome::Ready { pid } => {
                log_info!(
                    "upgrade: pid {pid} serves; this process stops accepting, drains and exits"
                );
                // No wake handles: the admin listener is shared with the new process now,
                // and shutting it would end it there too. The admin thread sees the flag
                // within its accept timeout.
                trigger_shutdown(shutdown, &[]);
            }
            Outcome::Failed { reason, .. } => self.upgrade_failed(&reason),
        }
    }

    /// Says why an upgrade failed, in the log and next to the pid file (for `ringproxy
    /// upgrade`); this process serves on, and is the service's main process again.
    fn upgrade_failed(&self, reason: &str) {
        log_error!("upgrade failed: {reason}; this process serves on");
        systemd::notify_main_pid();
        let Some(pid_file) = &self.pid_file else {
            return;
        };
        if let Err(e) = pid_file.reclaim() {
            log_error!("cannot write the pid file again: {e}");
        }
        let failure = pidfile::upgrade_failure_path(pid_file.path());
        if let Err(e) = std::fs::write(&failure, format!("upgrade failed: {reason}\n")) {
            log_error!("cannot write {}: {e}", failure.display());
        }
    }

    /// SIGTERM or SIGINT: drain and exit (a new process still starting is stopped too); a
    /// second one exits at once.
    fn stop(&mut self, signal: i32, shutdown: &AtomicBool, wake_handles: &[TcpListener]) {
        if self.stop_signalled {
            log_warn!("second signal {signal}: exiting without draining");
            std::process::exit(1);
        }
        self.stop_signalled = true;
        if let Some(upgrade) = &self.upgrade {
            let _ = pidfile::send_signal(upgrade.pid, SIGTERM);
        }
        if shutdown.load(Ordering::Acquire) {
            log_warn!("signal {signal}: already draining; a second one exits at once");
            return;
        }
        log_info!("signal {signal}: draining in-flight requests");
        systemd::notify_stopping();
        trigger_shutdown(shutdown, wake_handles);
    }

    /// The main thread's loop: reloads on SIGHUP, upgrades on SIGUSR2, drains on
    /// SIGTERM/SIGINT or once an upgrade's new process serves, and waits until every worker
    /// thread has finished. A worker that stops before a shutdown was asked for
    /// is a fault: the others are drained and the process reports failure.
    fn serve(
        &mut self,
        events: &mpsc::Receiver<Event>,
        shutdown: &AtomicBool,
        wake_handles: &[TcpListener],
    ) -> Result<(), String> {
        let mut exited = 0;
        let mut fault = None;
        while exited < self.workers {
            let event = match events.recv_timeout(CONTROL_POLL) {
                Ok(event) => event,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.check_install_time();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            match event {
                Event::Exited { index } => {
                    exited += 1;
                    if !shutdown.load(Ordering::Acquire) && fault.is_none() {
                        let reason = format!("worker {index} stopped unexpectedly; shutting down");
                        log_error!(worker: index; "{reason}");
                        fault = Some(reason);
                        trigger_shutdown(shutdown, wake_handles);
                    }
                }
                Event::Installed { index, generation } => self.answered(index, generation, None),
                Event::Refused {
                    index,
                    generation,
                    reason,
                } => self.answered(index, generation, Some(reason)),
                Event::Signal(SIGHUP) if !shutdown.load(Ordering::Acquire) => self.reload(),
                Event::Signal(SIGHUP) => {}
                Event::Signal(SIGUSR1) => self.access_log.iter().for_each(|log| log.reopen()),
                Event::Signal(SIGUSR2) => self.start_upgrade(shutdown),
                Event::Upgrade(outcome) => self.upgrade_ended(outcome, shutdown),
                Event::Signal(signal) => self.stop(signal, shutdown, wake_handles),
                Event::Started { .. } | Event::Failed { .. } => {}
            }
        }
        fault.map_or(Ok(()), Err)
    }
}

/// The labels of a generation's request counters (`metrics::RequestCounts`), which its
/// access log lines use too: its listeners' addresses, groups, named tables' routes
/// (`TABLE[INDEX]`) and backends by number.
fn request_labels(
    config: &Config,
    addresses: &[SocketAddr],
    tables: &[Arc<RouteTable>],
    ids: &[BackendId],
) -> Labels {
    let mut routes = Vec::new();
    let mut counted: Vec<(&Arc<RouteTable>, usize)> = Vec::new();
    let route_base = tables
        .iter()
        .map(|table| {
            let name = table.name()?;
            if let Some(&(_, base)) = counted.iter().find(|(t, _)| Arc::ptr_eq(t, table)) {
                return Some(base);
            }
            let base = routes.len();
            routes.extend((0..table.routes().len()).map(|index| format!("{name}[{index}]")));
            counted.push((table, base));
            Some(base)
        })
        .collect();
    let mut backends = Vec::new();
    let named = config
        .upstreams
        .iter()
        .flat_map(|group| group.backends.iter().map(move |b| (&group.name, b.address)));
    for (&id, (group, address)) in ids.iter().zip(named) {
        if backends.len() <= id.0 {
            backends.resize(id.0 + 1, None);
        }
        backends[id.0] = Some((group.clone(), address.to_string()));
    }
    Labels {
        listeners: addresses.iter().map(ToString::to_string).collect(),
        groups: config.upstreams.iter().map(|u| u.name.clone()).collect(),
        route_base,
        routes,
        backends,
    }
}

/// Settings a reload cannot change in a running process (the workers and their rings, the
/// admin listener): the running ones stay, and each change is said.
fn keep_fixed_settings(config: &mut Config, running: &Config) -> Vec<String> {
    let mut kept = Vec::new();
    if config.runtime != running.runtime {
        kept.push("[runtime] changes take effect at the next start or binary upgrade".to_string());
        config.runtime = running.runtime.clone();
    }
    if config.admin != running.admin {
        kept.push("[admin] changes take effect at the next start or binary upgrade".to_string());
        config.admin = running.admin.clone();
    }
    if config.access_log != running.access_log {
        kept.push(
            "[access_log] changes take effect at the next start or binary upgrade".to_string(),
        );
        config.access_log = running.access_log.clone();
    }
    kept
}

/// Raises the open-file limit to the hard limit and divides it among the workers (see
/// `fdlimit`), saying so in one line.
fn plan_open_files(config: &Config, workers: usize) -> WorkerShare {
    match fdlimit::raise_open_file_limit() {
        Ok(limit) => {
            let budget = fdlimit::budget(limit.limit, config, workers);
            log_info!("{}", fdlimit::describe(&limit, &budget));
            budget.per_worker
        }
        Err(err) => {
            log_warn!(
                "cannot read the open-file limit ({err}); clients are not counted against it"
            );
            WorkerShare::UNLIMITED
        }
    }
}

fn wait_for_start(events: &mpsc::Receiver<Event>, workers: usize) -> Result<(), String> {
    let mut lines: Vec<Option<String>> = vec![None; workers];
    let mut started = 0;
    while started < workers {
        match events.recv() {
            Ok(Event::Started { index, cpu, driver }) => {
                let place = cpu.map_or("unpinned".to_string(), |c| format!("on cpu {c}"));
                let driver = match driver {
                    Driver::IoUring(setup) => format!("io_uring driver ({})", setup.name()),
                    Driver::Epoll => "epoll driver (fallback)".to_string(),
                };
                lines[index] = Some(format!("worker {index} {place}, {driver}"));
                started += 1;
            }
            Ok(Event::Failed { index, reason }) => {
                return Err(format!("worker {index}: {reason}"));
            }
            Ok(Event::Exited { index }) => {
                return Err(format!("worker {index} stopped during start-up"));
            }
            Ok(_) => {}
            Err(_) => return Err("workers stopped during start-up".into()),
        }
    }
    for (index, line) in lines.into_iter().enumerate() {
        if let Some(line) = line {
            log_info!(worker: index; "{line}");
        }
    }
    Ok(())
}

/// Passes every signal on to the main thread's loop.
fn forward_signals(mut signals: Signals, events: &mpsc::Sender<Event>) {
    for signal in signals.forever() {
        if events.send(Event::Signal(signal)).is_err() {
            return;
        }
    }
}

/// Raises the shutdown flag, which the workers see within a timer tick (they then cancel
/// their accepts and drain), and wakes the admin thread's accept.
fn trigger_shutdown(shutdown: &AtomicBool, wake_handles: &[TcpListener]) {
    shutdown.store(true, Ordering::Release);
    for handle in wake_handles {
        let _ = SockRef::from(handle).shutdown(std::net::Shutdown::Read);
    }
}

fn join_all(threads: Vec<thread::JoinHandle<()>>) {
    for thread in threads {
        let _ = thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RuntimeConfig;

    fn config_with(runtime: RuntimeConfig) -> Config {
        let mut config = crate::config::Config::for_cli(Vec::new(), Vec::new());
        config.runtime = runtime;
        config
    }

    fn place(runtime: RuntimeConfig, available: &[usize]) -> Result<Placement, String> {
        Placement::new(&config_with(runtime), available.to_vec()).map_err(|e| e.to_string())
    }

    #[test]
    fn explicit_cpus_give_one_pinned_worker_each() {
        let runtime = RuntimeConfig {
            cpus: vec![1, 0],
            ..RuntimeConfig::default()
        };
        let placement = place(runtime, &[0, 1]).unwrap();
        assert_eq!(placement.cpus, [Some(1), Some(0)]);
        assert_eq!(placement.crowding(), None);
    }

    #[test]
    fn unavailable_cpu_is_refused_naming_the_available_ones() {
        let runtime = RuntimeConfig {
            cpus: vec![5],
            ..RuntimeConfig::default()
        };
        assert_eq!(
            place(runtime, &[0, 1, 2]).unwrap_err(),
            "ringproxy: runtime.cpus: cpu 5 is not available to this process (available: 0-2)"
        );
    }

    #[test]
    fn more_workers_than_cores_wrap_around_and_say_which_cpus_carry_two() {
        let runtime = RuntimeConfig {
            workers: Some(5),
            ..RuntimeConfig::default()
        };
        let placement = place(runtime, &[0, 1]).unwrap();
        assert_eq!(
            placement.cpus,
            [Some(0), Some(1), Some(0), Some(1), Some(0)]
        );
        assert_eq!(
            placement.crowding().as_deref(),
            Some("5 workers on 2 cpus: cpu 0 carries 3 workers, cpu 1 carries 2 workers")
        );
    }

    #[test]
    fn no_pin_leaves_workers_free_and_still_warns_of_too_many() {
        let runtime = |workers| RuntimeConfig {
            workers: Some(workers),
            pin: false,
            ..RuntimeConfig::default()
        };
        let placement = place(runtime(2), &[0, 1]).unwrap();
        assert_eq!(placement.cpus, [None, None]);
        assert_eq!(placement.crowding(), None);
        assert_eq!(
            place(runtime(3), &[0, 1]).unwrap().crowding().as_deref(),
            Some("3 workers on 2 cpus, unpinned")
        );
    }

    #[test]
    fn worker_count_must_match_cpu_list() {
        let runtime = RuntimeConfig {
            workers: Some(3),
            cpus: vec![0],
            ..RuntimeConfig::default()
        };
        assert_eq!(
            place(runtime, &[0, 1]).unwrap_err(),
            "ringproxy: runtime.workers: 3 workers but 1 cpu listed: give one cpu per worker"
        );
    }
}
