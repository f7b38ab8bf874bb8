//! Process lifecycle: plan the workers, bind the listeners, start the worker threads, report
//! readiness, and turn SIGTERM/SIGINT into a graceful drain.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use socket2::SockRef;

use crate::admin::{self, AdminState};
use crate::config::{Config, ConfigError, format_cpu_list};
use crate::fdlimit::{self, WorkerShare};
use crate::listen::bind_reuseport;
use crate::metrics::{Labels, Metrics};
use crate::plural::count;
use crate::tls::TlsListeners;
use crate::upstream::health::{HealthTable, spawn_checker};
use crate::upstream::load::LoadBoard;
use crate::worker::{Driver, WorkerEvent, WorkerPlan, run_worker};

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

/// Runs the proxy until a shutdown signal has been handled. `Err` is a start-up failure or
/// a worker that died, described for the user.
/// `tls` holds, per listener, the certificates `tls::load` read.
pub fn run(config: Config, placement: Placement, tls: TlsListeners) -> Result<(), String> {
    if let Some(warning) = placement.crowding() {
        eprintln!("ringproxy: warning: {warning}");
    }
    let cpus = placement.cpus;
    let workers = cpus.len();
    let fds = plan_open_files(&config, workers);
    let mut bound = Vec::with_capacity(config.listeners.len());
    for listener in &config.listeners {
        bound.push(bind_reuseport(listener.address, workers).map_err(|e| e.to_string())?);
    }
    let admin_listener = match &config.admin {
        Some(settings) => Some((admin::bind(settings)?, settings.clone())),
        None => None,
    };
    // Our own handles on every listening socket: shutting one down wakes its worker's accept
    // (or the admin thread's).
    let mut wake_handles = Vec::new();
    if let Some((listener, _)) = &admin_listener {
        wake_handles.push(
            listener
                .try_clone()
                .map_err(|e| format!("cannot clone the admin listener: {e}"))?,
        );
    }
    for socket in bound.iter().flat_map(|b| &b.per_worker) {
        wake_handles.push(
            socket
                .try_clone()
                .map_err(|e| format!("cannot clone listener: {e}"))?,
        );
    }
    let signals = Signals::new([SIGTERM, SIGINT])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let config = Arc::new(config);
    let shutdown = Arc::new(AtomicBool::new(false));
    let health = Arc::new(HealthTable::new(&config));
    let load = LoadBoard::new(workers, health.backend_count());
    let labels = Labels {
        listeners: bound.iter().map(|b| b.local_addr.to_string()).collect(),
        groups: config.upstreams.iter().map(|u| u.name.clone()).collect(),
    };
    let metrics = Metrics::new(workers, labels);
    let (events_tx, events) = mpsc::channel();
    let mut per_worker: Vec<Vec<TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    for listener in &mut bound {
        for (i, socket) in listener.per_worker.drain(..).enumerate() {
            per_worker[i].push(socket);
        }
    }
    // Compiled once, shared by every worker.
    let routes = crate::route::listener_tables(&config);
    let mut threads = Vec::with_capacity(workers);
    for (index, (listeners, cpu)) in per_worker.into_iter().zip(cpus.iter().copied()).enumerate() {
        let plan = WorkerPlan {
            index,
            cpu,
            listeners,
            routes: routes.clone(),
            config: config.clone(),
            tls: tls.clone(),
            health: health.clone(),
            load: load.clone(),
            fds,
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
            events: events_tx.clone(),
        };
        let thread = thread::Builder::new()
            .name(format!("ringproxy-w{index}"))
            .spawn(move || run_worker(plan))
            .map_err(|e| format!("cannot start worker thread: {e}"))?;
        threads.push(thread);
    }
    drop(events_tx);

    let started = wait_for_start(&events, workers);
    if let Err(reason) = started {
        trigger_shutdown(&shutdown, &wake_handles);
        join_all(threads);
        return Err(reason);
    }
    let admin_thread = match admin_listener {
        Some((listener, settings)) => {
            let state = AdminState {
                config: config.clone(),
                admin: settings,
                metrics,
                health: health.clone(),
                load: load.clone(),
                cpus,
                started: std::time::Instant::now(),
                config_generation: Arc::new(AtomicU64::new(admin::FIRST_CONFIG_GENERATION)),
            };
            let address = listener.local_addr().map_or(state.admin.address, |a| a);
            match admin::spawn(listener, state, shutdown.clone()) {
                Ok(thread) => {
                    eprintln!("ringproxy: admin on {address} (/metrics, /status)");
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
    // The checker stops with the same flag that stops the workers.
    let checker = match spawn_checker(config.clone(), health, shutdown.clone()) {
        Ok(checker) => checker,
        Err(e) => {
            trigger_shutdown(&shutdown, &wake_handles);
            join_all(threads);
            return Err(format!("cannot start the health checker: {e}"));
        }
    };
    for (listener, addr) in config
        .listeners
        .iter()
        .zip(bound.iter().map(|b| b.local_addr))
    {
        let scheme = if listener.tls.is_some() {
            " (https)"
        } else {
            ""
        };
        match &listener.routes {
            Some(table) => {
                eprintln!("ringproxy: listening on {addr}{scheme} -> routes \"{table}\"")
            }
            None => eprintln!(
                "ringproxy: listening on {addr}{scheme} -> upstream \"{}\"",
                listener.upstream
            ),
        }
    }
    eprintln!("ringproxy: ready ({})", count(workers, "worker"));

    let signal_shutdown = shutdown.clone();
    let signal_handles: Vec<TcpListener> = wake_handles
        .iter()
        .filter_map(|h| h.try_clone().ok())
        .collect();
    thread::Builder::new()
        .name("ringproxy-signals".into())
        .spawn(move || watch_signals(signals, &signal_shutdown, &signal_handles))
        .map_err(|e| format!("cannot start signal thread: {e}"))?;

    let result = wait_for_exit(&events, workers, &shutdown, &wake_handles);
    join_all(threads);
    join_all(checker.into_iter().collect());
    join_all(admin_thread.into_iter().collect());
    // Only a drain ends without a fault: its last word, once nothing runs any more.
    if result.is_ok() {
        eprintln!("ringproxy: stopped");
    }
    result
}

/// Raises the open-file limit to the hard limit and divides it among the workers (see
/// `fdlimit`), saying so in one line.
fn plan_open_files(config: &Config, workers: usize) -> WorkerShare {
    match fdlimit::raise_open_file_limit() {
        Ok(limit) => {
            let budget = fdlimit::budget(limit.limit, config, workers);
            eprintln!("ringproxy: {}", fdlimit::describe(&limit, &budget));
            budget.per_worker
        }
        Err(err) => {
            eprintln!(
                "ringproxy: cannot read the open-file limit ({err}); clients are not counted against it"
            );
            WorkerShare::UNLIMITED
        }
    }
}

fn wait_for_start(events: &mpsc::Receiver<WorkerEvent>, workers: usize) -> Result<(), String> {
    let mut lines: Vec<Option<String>> = vec![None; workers];
    let mut started = 0;
    while started < workers {
        match events.recv() {
            Ok(WorkerEvent::Started { index, cpu, driver }) => {
                let place = cpu.map_or("unpinned".to_string(), |c| format!("on cpu {c}"));
                let driver = match driver {
                    Driver::IoUring(setup) => format!("io_uring driver ({})", setup.name()),
                    Driver::Epoll => "epoll driver (fallback)".to_string(),
                };
                lines[index] = Some(format!("ringproxy: worker {index} {place}, {driver}"));
                started += 1;
            }
            Ok(WorkerEvent::Failed { index, reason }) => {
                return Err(format!("worker {index}: {reason}"));
            }
            Ok(WorkerEvent::Exited { index }) => {
                return Err(format!("worker {index} stopped during start-up"));
            }
            Err(_) => return Err("workers stopped during start-up".into()),
        }
    }
    for line in lines.into_iter().flatten() {
        eprintln!("{line}");
    }
    Ok(())
}

/// Waits until every worker thread has finished. A worker that stops before a shutdown was
/// asked for is a fault: the others are drained and the process reports failure.
fn wait_for_exit(
    events: &mpsc::Receiver<WorkerEvent>,
    workers: usize,
    shutdown: &AtomicBool,
    wake_handles: &[TcpListener],
) -> Result<(), String> {
    let mut exited = 0;
    let mut fault = None;
    while exited < workers {
        match events.recv() {
            Ok(WorkerEvent::Exited { index }) => {
                exited += 1;
                if !shutdown.load(Ordering::Acquire) && fault.is_none() {
                    fault = Some(format!(
                        "worker {index} stopped unexpectedly; shutting down"
                    ));
                    eprintln!("ringproxy: {}", fault.as_deref().unwrap_or_default());
                    trigger_shutdown(shutdown, wake_handles);
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    fault.map_or(Ok(()), Err)
}

fn watch_signals(mut signals: Signals, shutdown: &AtomicBool, wake_handles: &[TcpListener]) {
    let mut received = 0;
    for signal in signals.forever() {
        received += 1;
        if received > 1 {
            eprintln!("ringproxy: second signal {signal}: exiting without draining");
            std::process::exit(1);
        }
        eprintln!("ringproxy: signal {signal}: draining in-flight requests");
        trigger_shutdown(shutdown, wake_handles);
    }
}

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
