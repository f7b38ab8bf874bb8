//! Command line: turn flags (and an optional config file) into a `Config` and run it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use ringproxy::config::{self, Config};

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
    #[arg(long, value_name = "ADDR")]
    listen: Vec<SocketAddr>,
    /// Backend address (repeatable); requests are spread round robin.
    #[arg(long, value_name = "ADDR")]
    upstream: Vec<SocketAddr>,
    /// Number of worker threads (default: one per listed or available cpu).
    #[arg(long, value_name = "N")]
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
    let cli = Cli::parse();
    let config = match build_config(&cli) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        // The cpus to pin to are checked against this machine too, as start-up would.
        let available = ringproxy::server::available_cpus();
        if let Err(message) = ringproxy::server::plan_cpus(&config, &available) {
            eprintln!("ringproxy: runtime: {message}");
            return ExitCode::from(2);
        }
        println!(
            "config OK: {} listeners, {} upstream groups",
            config.listeners.len(),
            config.upstreams.len()
        );
        return ExitCode::SUCCESS;
    }
    match ringproxy::server::run(config) {
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
    Ok(Config::for_cli(cli.listen.clone(), cli.upstream.clone()))
}

/// Runtime flags override the file: pinning is tuned from the command line.
fn apply_runtime_flags(cli: &Cli, config: &mut Config) -> Result<(), String> {
    let runtime = &mut config.runtime;
    if let Some(list) = &cli.cpus {
        runtime.cpus =
            config::parse_cpu_list(list).map_err(|e| format!("ringproxy: --cpus {list}: {e}"))?;
        if cli.workers.is_none() {
            runtime.workers = None;
        }
    }
    if let Some(workers) = cli.workers {
        if workers == 0 {
            return Err("ringproxy: --workers must be at least 1".into());
        }
        runtime.workers = Some(workers);
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
