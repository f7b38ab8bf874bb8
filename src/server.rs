//! Process lifecycle: plan the workers, bind the listeners, start the worker threads, report
//! readiness, and turn SIGTERM/SIGINT into a graceful drain.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use socket2::SockRef;

use crate::config::Config;
use crate::listen::bind_reuseport;
use crate::upstream::health::{HealthTable, spawn_checker};
use crate::upstream::load::LoadBoard;
use crate::worker::{Driver, WorkerEvent, WorkerPlan, run_worker};

/// Which core each worker runs on (`None`: not pinned).
pub fn plan_cpus(config: &Config, available: &[usize]) -> Result<Vec<Option<usize>>, String> {
    let runtime = &config.runtime;
    if !runtime.cpus.is_empty() {
        if let Some(n) = runtime.workers.filter(|&n| n != runtime.cpus.len()) {
            return Err(format!(
                "{n} workers but {} cpus listed: give one cpu per worker",
                runtime.cpus.len()
            ));
        }
        if let Some(cpu) = runtime.cpus.iter().find(|c| !available.contains(c)) {
            return Err(format!(
                "cpu {cpu} is not available to this process (available: {available:?})"
            ));
        }
        let pinned = runtime.cpus.iter().map(|&c| runtime.pin.then_some(c));
        return Ok(pinned.collect());
    }
    if available.is_empty() {
        return Err("cannot determine the available cpus".into());
    }
    let workers = runtime.workers.unwrap_or(available.len());
    if workers == 0 {
        return Err("at least one worker is needed".into());
    }
    Ok((0..workers)
        .map(|i| runtime.pin.then_some(available[i % available.len()]))
        .collect())
}

/// The cpus this process may run on.
pub fn available_cpus() -> Vec<usize> {
    core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect()
}

/// Runs the proxy until a shutdown signal has been handled. `Err` is a start-up failure or
/// a worker that died, described for the user.
pub fn run(config: Config) -> Result<(), String> {
    let cpus = plan_cpus(&config, &available_cpus())?;
    let workers = cpus.len();
    let mut bound = Vec::with_capacity(config.listeners.len());
    for listener in &config.listeners {
        bound.push(bind_reuseport(listener.address, workers).map_err(|e| e.to_string())?);
    }
    // Our own handles on every listening socket: shutting one down wakes its worker's accept.
    let mut wake_handles = Vec::new();
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
    let (events_tx, events) = mpsc::channel();
    let mut per_worker: Vec<Vec<TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    for listener in &mut bound {
        for (i, socket) in listener.per_worker.drain(..).enumerate() {
            per_worker[i].push(socket);
        }
    }
    let mut threads = Vec::with_capacity(workers);
    for (index, (listeners, cpu)) in per_worker.into_iter().zip(cpus).enumerate() {
        let plan = WorkerPlan {
            index,
            cpu,
            listeners,
            config: config.clone(),
            health: health.clone(),
            load: load.clone(),
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
        eprintln!(
            "ringproxy: listening on {addr} -> upstream \"{}\"",
            listener.upstream
        );
    }
    eprintln!("ringproxy: ready ({workers} workers)");

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
    result
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

    #[test]
    fn explicit_cpus_give_one_pinned_worker_each() {
        let runtime = RuntimeConfig {
            cpus: vec![1, 0],
            ..RuntimeConfig::default()
        };
        assert_eq!(
            plan_cpus(&config_with(runtime), &[0, 1]).unwrap(),
            [Some(1), Some(0)]
        );
    }

    #[test]
    fn unavailable_cpu_is_refused() {
        let runtime = RuntimeConfig {
            cpus: vec![5],
            ..RuntimeConfig::default()
        };
        let err = plan_cpus(&config_with(runtime), &[0, 1]).unwrap_err();
        assert!(err.contains("cpu 5"), "{err}");
    }

    #[test]
    fn more_workers_than_cores_wrap_around_and_no_pin_leaves_them_free() {
        let runtime = RuntimeConfig {
            workers: Some(3),
            ..RuntimeConfig::default()
        };
        assert_eq!(
            plan_cpus(&config_with(runtime), &[0, 1]).unwrap(),
            [Some(0), Some(1), Some(0)]
        );
        let runtime = RuntimeConfig {
            workers: Some(2),
            pin: false,
            ..RuntimeConfig::default()
        };
        assert_eq!(
            plan_cpus(&config_with(runtime), &[0, 1]).unwrap(),
            [None, None]
        );
    }

    #[test]
    fn worker_count_must_match_cpu_list() {
        let runtime = RuntimeConfig {
            workers: Some(3),
            cpus: vec![0, 1],
            ..RuntimeConfig::default()
        };
        assert!(plan_cpus(&config_with(runtime), &[0, 1]).is_err());
    }
}
