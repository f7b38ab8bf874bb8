//! Command line: turn flags (and an optional config file) into a `Config` and run it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use ringproxy::config::{self, Config};
use ringproxy::plural::count;
use ringproxy::server::{self, Placement};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Thread-per-core io_uring HTTP/1.1 reverse proxy and load balancer.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML). See README.md for the format.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["listen", "upstream"])]
    config: Option<PathBuf>,
    /// Validate the configuration file and exit.
    #[arg(long, requires = "config")]
    check: bool,
    /// Address to accept clients on (repeatable), e.g. 0.0.0.0:8080.
    #[arg(long, value_name = "ADDR", value_parser = config::parse_listen_address)]
    listen: Vec<SocketAddr>,
    /// Backend address (repeatable); requests are spread round robin.
    #[arg(long, value_name = "ADDR", value_parser = config::parse_backend_address)]
    upstream: Vec<SocketAddr>,
    /// Number of worker threads (default: one per listed or available cpu).
    #[arg(long, value_name = "N", value_parser = workers_in_range())]
    workers: Option<usize>,
    /// Cpus to run workers on, one worker per listed cpu, e.g. 0-3,6.
    #[arg(long, value_name = "LIST")]
    cpus: Option<String>,
    /// Do not pin workers to cpus.
    #[arg(long)]
    no_pin: bool,
    /// Run on epoll (with a warning) when io_uring is unavailable, instead of exiting.
    #[arg(long)]
    allow_epoll: bool,
}

fn main() -> ExitCode {
    run(&Cli::parse())
}

/// Starts the proxy (or only checks, with `--check`): exit 2 for anything wrong with the
/// configuration, the cpus it names included, 1 for what fails while running.
fn run(cli: &Cli) -> ExitCode {
    let config = match build_config(cli) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let available = match server::available_cpus() {
        Ok(available) => available,
        Err(message) => {
            eprintln!("ringproxy: {message}");
            return ExitCode::FAILURE;
        }
    };
    let placement = match Placement::new(&config, available) {
        Ok(placement) => placement,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        println!(
            "config OK: {}, {}",
            count(config.listeners.len(), "listener"),
            count(config.upstreams.len(), "upstream group")
        );
        return ExitCode::SUCCESS;
    }
    match server::run(config, placement) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ringproxy: {message}");
            ExitCode::FAILURE
        }
    }
}

fn build_config(cli: &Cli) -> Result<Config, String> {
    let mut config = match &cli.config {
        Some(path) => config::load_file(path).map_err(|errors| errors.to_string())?,
        None => config_from_flags(cli)?,
    };
    apply_runtime_flags(cli, &mut config)?;
    Ok(config)
}

fn config_from_flags(cli: &Cli) -> Result<Config, String> {
    if cli.listen.is_empty() || cli.upstream.is_empty() {
        return Err("ringproxy: give --config FILE, or at least one --listen ADDR and one --upstream ADDR (see --help)".into());
    }
    // The same rules as in a file: each listener address once (port 0 excepted), each
    // backend once.
    let errors: Vec<String> = [
        given_twice("--listen", &cli.listen, config::listeners_clash),
        given_twice("--upstream", &cli.upstream, |a, b| a == b),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    Ok(Config::for_cli(cli.listen.clone(), cli.upstream.clone()))
}

/// The error for the first of `addresses` that clashes with one given before it.
fn given_twice(
    flag: &str,
    addresses: &[SocketAddr],
    clash: fn(SocketAddr, SocketAddr) -> bool,
) -> Option<String> {
    let (_, address) = addresses
        .iter()
        .enumerate()
        .find(|&(i, &a)| addresses[..i].iter().any(|&b| clash(a, b)))?;
    Some(format!("ringproxy: {flag} {address} is given twice"))
}

/// Runtime flags override the file: pinning is tuned from the command line.
fn apply_runtime_flags(cli: &Cli, config: &mut Config) -> Result<(), String> {
    let runtime = &mut config.runtime;
    if let Some(list) = &cli.cpus {
        runtime.cpus =
            config::parse_cpu_list(list).map_err(|e| format!("ringproxy: --cpus {list}: {e}"))?;
        config.origin.set_by_flag("runtime.cpus", "--cpus");
        if cli.workers.is_none() {
            runtime.workers = None;
        }
    }
    if let Some(workers) = cli.workers {
        runtime.workers = Some(workers);
        config.origin.set_by_flag("runtime.workers", "--workers");
        if cli.cpus.is_none() {
            runtime.cpus.clear();
        }
    }
    if cli.no_pin {
        runtime.pin = false;
    }
    if cli.allow_epoll {
        runtime.allow_epoll = true;
    }
    Ok(())
}

/// The bounds a file's `runtime.workers` has, so that the flag cannot ask for more.
fn workers_in_range() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..=config::MAX_WORKERS as u64)
}
