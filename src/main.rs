//! Command line: turn flags (and an optional config file) into a `Config` and run it; print
//! shell completions and the manual page generated from the same definitions.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, CommandFactory, Parser, Subcommand};
use clap_complete::Shell;
use roff::{Roff, bold, italic, roman};

use ringproxy::config::{self, Config, ConfigErrors, TlsConfig};
use ringproxy::generation;
use ringproxy::log::{self, Format, Level};
use ringproxy::log_error;
use ringproxy::pidfile;
use ringproxy::plural::count;
use ringproxy::server::{self, Placement};
use ringproxy::tls;
use ringproxy::top::{Failure, TopOptions};
use ringproxy::upgrade::{self, Relaunch};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `0.1.0 (abc1234)`: the commit comes from build.rs (`-dirty` when the tree had changes,
/// `unknown` outside a git checkout).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("RINGPROXY_GIT_COMMIT"),
    ")"
);

/// What each exit status means, for `--help` and the manual page alike.
const EXIT_STATUS: [(u8, &str); 3] = [
    (
        0,
        "stopped after a drain (SIGTERM, SIGINT, or a binary upgrade's new process took over), or --check found no error",
    ),
    (
        1,
        "a runtime failure: an address in use, io_uring unavailable, a worker that died; for top, an admin listener it cannot read",
    ),
    (
        2,
        "an invalid command line or configuration, from flags, a file or --check alike",
    ),
];

/// Thread-per-core io_uring HTTP/1.1 reverse proxy and load balancer.
///
/// Runs the proxy when given --config FILE, or --listen and --upstream; the subcommands
/// print what installing it needs, or watch a running proxy (top).
#[derive(Parser, Debug)]
#[command(
    name = "ringproxy",
    version = VERSION,
    about,
    long_about,
    args_conflicts_with_subcommands = true,
    after_long_help = exit_status_help()
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Tell the running ringproxy to reload its configuration (SIGHUP), after checking it:
    /// an invalid file is reported here and the running one is not signalled.
    Reload(InstanceArgs),
    /// Replace the running ringproxy with the binary now at its path (SIGUSR2), after
    /// checking the configuration; waits until the new process serves.
    Upgrade(InstanceArgs),
    /// Print the completion script for SHELL to stdout.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the manual page (roff) to stdout; packaging installs it as ringproxy.1.
    #[command(hide = true)]
    Manpage,
    /// Show each worker's load and each backend's in-flight requests, refreshed every
    /// second (q quits).
    Top(TopArgs),
}

/// `ringproxy top`: the live per-core view, read from a running proxy's admin listener.
#[derive(Args, Debug)]
struct TopArgs {
    /// The proxy's admin listener, e.g. 127.0.0.1:9901 (a bare port: on 127.0.0.1).
    #[arg(long, value_name = "ADDR", value_parser = config::parse_admin_address)]
    admin: SocketAddr,
    /// The admin listener's bearer token ([admin] token).
    #[arg(long, value_name = "TOKEN", value_parser = config::parse_admin_token)]
    token: Option<String>,
    /// Print one frame as plain text and exit.
    #[arg(long)]
    once: bool,
}

/// `ringproxy reload` and `ringproxy upgrade`: which instance, and its configuration.
#[derive(Args, Debug)]
struct InstanceArgs {
    /// The configuration file the running instance was started with; checked first.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The running instance's pid file (default: runtime.pid_file of --config).
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
}

/// Running the proxy: the flags of `ringproxy` without a subcommand.
#[derive(Args, Debug, Clone, Default)]
struct RunArgs {
    /// Configuration file (TOML). See README.md for the format.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["listen", "upstream", "tls_cert"])]
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
    /// Serve HTTPS on every --listen address with this certificate chain (PEM); needs
    /// --tls-key.
    #[arg(long, value_name = "FILE", requires_all = ["tls_key", "listen"])]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert: RSA, ECDSA or Ed25519.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
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
    /// Serve /metrics and /status here, e.g. 127.0.0.1:9901 (a bare port: on 127.0.0.1).
    #[arg(long, value_name = "ADDR", value_parser = config::parse_admin_address)]
    admin: Option<SocketAddr>,
    /// Write the pid here once ready (what `ringproxy reload` and `ringproxy upgrade`
    /// signal); overrides runtime.pid_file.
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// What the log on stderr says: error, warn, info (default) or debug; overrides
    /// [log] level.
    #[arg(long, value_name = "LEVEL", value_parser = Level::parse)]
    log_level: Option<Level>,
    /// How the log on stderr is written: text (default) or json, one object per line;
    /// overrides [log] format.
    #[arg(long, value_name = "FORMAT", value_parser = Format::parse)]
    log_format: Option<Format>,
}

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Completions { shell }) => print_completions(shell),
        Some(Command::Manpage) => print_manpage(),
        Some(Command::Reload(args)) => signal_reload(&args),
        Some(Command::Upgrade(args)) => request_upgrade(&args),
        Some(Command::Top(args)) => top(args),
        None => run(&cli.run),
    }
}

/// Starts the proxy (or only checks, with `--check`): exit 2 for anything wrong with the
/// configuration, the cpus it names included, 1 for what fails while running.
fn run(cli: &RunArgs) -> ExitCode {
    // Before anything could replace the file at this path.
    let relaunch = Relaunch::record();
    let (config, tls) = match load_checked(cli) {
        Ok(loaded) => loaded,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    log::configure(config.log.level, config.log.format);
    let available = match server::available_cpus() {
        Ok(available) => available,
        Err(message) => {
            log_error!("{message}");
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
        let mut counts = vec![
            count(config.listeners.len(), "listener"),
            count(config.upstreams.len(), "upstream group"),
        ];
        if !config.routes.is_empty() {
            let routes: usize = config.routes.iter().map(|t| t.routes.len()).sum();
            counts.push(format!(
                "{} ({})",
                count(config.routes.len(), "route table"),
                count(routes, "route")
            ));
        }
        println!("config OK: {}", counts.join(", "));
        return ExitCode::SUCCESS;
    }
    let takeover = match upgrade::inherit() {
        Ok(takeover) => takeover,
        Err(message) => {
            eprintln!("ringproxy: upgrade: {message}");
            return ExitCode::FAILURE;
        }
    };
    let reload_cli = cli.clone();
    let reload: server::Reloader = Box::new(move || load_checked(&reload_cli));
    let lineage = server::Lineage { relaunch, takeover };
    match server::run(config, placement, tls, reload, lineage) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            log_error!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// Exit 2 when the view cannot run as asked (no terminal), 1 when the proxy cannot be read.
fn top(args: TopArgs) -> ExitCode {
    let options = TopOptions {
        admin: args.admin,
        token: args.token,
        once: args.once,
    };
    match ringproxy::top::run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("ringproxy top: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(message)) => {
            eprintln!("ringproxy top: {message}");
            ExitCode::FAILURE
        }
    }
}

/// mimalloc asks for transparent huge pages on its memory (MADV_HUGEPAGE). With them an
/// idle connection's few KiB count as resident wherever a 2 MiB page was touched, and what
/// a burst of connections freed stays resident: a purge splits the huge page, and khugepaged
/// merges what is left into huge pages again (10,000 idle connections: 3.7 KiB each instead
/// of 3.0, and RSS a minute after they closed 2.4 times the start instead of 1.3;
/// perf/2026-12-07-idle-memory-4875eb9.md). CPU per request at 50 connections did not
/// change measurably. `MIMALLOC_ALLOW_THP` in the environment keeps mimalloc's choice.
fn disable_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    // SAFETY: prctl(PR_SET_THP_DISABLE) takes integers and only sets a flag of this process.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

/// The configuration and its certificates, read and checked (at --check, at start and at each
/// reload alike); warnings are printed, errors returned as --check prints them.
fn load_checked(cli: &RunArgs) -> Result<(Config, tls::TlsSetup), String> {
    let config = build_config(cli)?;
    generation::check_limits(&config).map_err(|e| e.to_string())?;
    // Certificates are checked against the clock of the moment.
    let tls = tls::load(&config, SystemTime::now());
    for warning in &tls.warnings {
        eprintln!("{warning}");
    }
    if !tls.errors.is_empty() {
        return Err(ConfigErrors(tls.errors).to_string());
    }
    Ok((config, tls.setup))
}

/// `ringproxy reload`: checks the file, then signals the instance its pid file names. Exit 2
/// for an invalid file or command line, 1 when the instance cannot be signalled.
fn signal_reload(args: &InstanceArgs) -> ExitCode {
    let pid_file = match instance(args, "reload", "the running configuration stays") {
        Ok(pid_file) => pid_file,
        Err(code) => return code,
    };
    let signalled = pidfile::read(&pid_file)
        .and_then(|pid| pidfile::signal_ringproxy(pid, libc::SIGHUP).map(|()| pid));
    match signalled {
        Ok(pid) => {
            println!("ringproxy: reload signalled to pid {pid}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("ringproxy: reload: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `ringproxy upgrade`: checks the file, signals the instance its pid file names, and waits
/// until a new process serves. Exit 2 for an invalid file or command line, 1 when the
/// upgrade did not happen (the running process serves on).
fn request_upgrade(args: &InstanceArgs) -> ExitCode {
    let pid_file = match instance(args, "upgrade", "the running process serves on") {
        Ok(pid_file) => pid_file,
        Err(code) => return code,
    };
    match upgrade::request(&pid_file, upgrade::REQUEST_WAIT) {
        Ok((old, new)) => {
            println!("ringproxy: upgraded: pid {new} serves; pid {old} drains and exits");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("ringproxy: upgrade: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The pid file of the instance `args` names, once its configuration (if given) is found
/// valid; else the exit code, the problem printed (`verb` and `kept` say what was not done).
fn instance(args: &InstanceArgs, verb: &str, kept: &str) -> Result<PathBuf, ExitCode> {
    let mut pid_file = args.pid_file.clone();
    if let Some(path) = &args.config {
        // As `ringproxy --config PATH` would read it.
        let file_args = RunArgs {
            config: Some(path.clone()),
            ..RunArgs::default()
        };
        match load_checked(&file_args) {
            Ok((config, _)) => pid_file = pid_file.or(config.runtime.pid_file),
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!("ringproxy: {verb}: not signalled, {kept}");
                return Err(ExitCode::from(2));
            }
        }
    }
    pid_file.ok_or_else(|| {
        eprintln!(
            "ringproxy: {verb}: which instance? give --pid-file FILE, or --config FILE with runtime.pid_file set"
        );
        ExitCode::from(2)
    })
}

fn build_config(cli: &RunArgs) -> Result<Config, String> {
    let mut config = match &cli.config {
        Some(path) => config::load_file(path).map_err(|errors| errors.to_string())?,
        None => config_from_flags(cli)?,
    };
    apply_runtime_flags(cli, &mut config)?;
    Ok(config)
}

fn config_from_flags(cli: &RunArgs) -> Result<Config, String> {
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
    let mut config = Config::for_cli(cli.listen.clone(), cli.upstream.clone());
    if let (Some(cert), Some(key)) = (&cli.tls_cert, &cli.tls_key) {
        serve_tls_from_flags(&mut config, cert, key);
    }
    Ok(config)
}

/// `--tls-cert` and `--tls-key`: every listener serves HTTPS with that certificate; a problem
/// with the files is reported against the flags.
fn serve_tls_from_flags(config: &mut Config, cert: &std::path::Path, key: &std::path::Path) {
    for (index, listener) in config.listeners.iter_mut().enumerate() {
        let setting = format!("listener[{index}].tls");
        config
            .origin
            .set_by_flag(&format!("{setting}.cert"), "--tls-cert");
        config
            .origin
            .set_by_flag(&format!("{setting}.key"), "--tls-key");
        listener.tls = Some(TlsConfig::single(cert.into(), key.into(), setting));
    }
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
fn apply_runtime_flags(cli: &RunArgs, config: &mut Config) -> Result<(), String> {
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
    if let Some(path) = &cli.pid_file {
        runtime.pid_file = Some(path.clone());
    }
    if let Some(level) = cli.log_level {
        config.log.level = level;
    }
    if let Some(format) = cli.log_format {
        config.log.format = format;
    }
    // The address only: a token and allow list from the file still apply.
    if let Some(address) = cli.admin {
        match &mut config.admin {
            Some(admin) => admin.address = address,
            None => config.admin = Some(config::AdminConfig::at(address)),
        }
    }
    Ok(())
}

/// The bounds a file's `runtime.workers` has, so that the flag cannot ask for more.
fn workers_in_range() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..=config::MAX_WORKERS as u64)
}

fn exit_status_help() -> String {
    let lines: Vec<String> = EXIT_STATUS
        .iter()
        .map(|(code, meaning)| format!("  {code}  {meaning}"))
        .collect();
    format!("Exit status:\n{}", lines.join("\n"))
}

fn print_completions(shell: Shell) -> ExitCode {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "ringproxy", &mut script);
    write_stdout(&script)
}

fn print_manpage() -> ExitCode {
    match render_manpage() {
        Ok(page) => write_stdout(&page),
        Err(error) => {
            eprintln!("ringproxy: cannot render the manual page: {error}");
            ExitCode::FAILURE
        }
    }
}

/// clap_mangen's sections, then ours, then the version.
fn render_manpage() -> std::io::Result<Vec<u8>> {
    let cli = Cli::command();
    let man = clap_mangen::Man::new(cli.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    manpage_sections(&cli).to_writer(&mut page)?;
    man.render_version_section(&mut page)?;
    Ok(page)
}

/// What clap_mangen does not write: the subcommands as they are typed (it refers to a page
/// per subcommand, and ringproxy ships one page), the exit status, signals and files.
fn manpage_sections(cli: &clap::Command) -> Roff {
    let mut page = Roff::new();
    page.control("SH", ["SUBCOMMANDS"]);
    let shown = cli
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help");
    for sub in shown {
        let mut usage = vec![bold(format!("ringproxy {}", sub.get_name()))];
        let mut values = Vec::new();
        for arg in sub.get_positionals() {
            usage.extend([roman(" "), italic(arg.get_id().as_str().to_uppercase())]);
            values.extend(
                arg.get_possible_values()
                    .iter()
                    .map(|v| v.get_name().to_owned()),
            );
        }
        for arg in sub.get_opts() {
            usage.extend(option_usage(arg));
        }
        let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
        let about = if values.is_empty() {
            about
        } else {
            format!("{about} ({})", values.join(", "))
        };
        page.control("TP", []).text(usage).text([roman(about)]);
    }
    page.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in EXIT_STATUS {
        page.control("TP", [])
            .text([bold(code.to_string())])
            .text([roman(meaning)]);
    }
    page.control("SH", ["SIGNALS"])
        .text([roman(
            "SIGTERM or SIGINT stop accepting connections and let in-flight requests finish \
             (up to timeouts.drain), then ringproxy prints \"ringproxy: stopped\" and exits 0; \
             a second signal exits at once. SIGUSR1 reopens the access log file (after \
             logrotate renamed it).",
        )])
        .control("PP", [])
        .text([roman(
            "SIGHUP re-reads the configuration and, if it is valid, serves new requests with \
             it; requests and connections in flight are kept. An invalid file is logged \
             (\"reload rejected\") and the running configuration stays.",
        )])
        .control("PP", [])
        .text([
            roman(
                "SIGUSR2 upgrades the binary without closing a listening socket: ringproxy \
                 starts the program at the path it was started from (a file replaced there is \
                 the new version) with the same arguments, and passes it every listening \
                 socket over a Unix socket. Once the new process serves (its pid in the pid \
                 file), the old one stops accepting, drains as for SIGTERM and exits 0; \
                 connections waiting in a listen queue are served by the new one. A new \
                 process that exits, or is not ready within 30 seconds, is stopped and the old \
                 one serves on. A second SIGUSR2 during an upgrade is refused. ",
            ),
            bold("ringproxy upgrade"),
            roman(" does this and waits for the outcome."),
        ]);
    page.control("SH", ["FILES"])
        .control("TP", [])
        .text([roman("/etc/ringproxy/ringproxy.toml")])
        .text([
            roman("The configuration the packaged systemd unit starts with; check it with "),
            bold("ringproxy --check --config"),
            roman(" "),
            italic("FILE"),
            roman("."),
        ]);
    page.control("SH", ["SEE ALSO"]).text([roman(
        "/usr/share/doc/ringproxy/README.md: every setting, and how to run ringproxy as a \
         service.",
    )]);
    page
}

/// ` --admin ADDR`, or ` [--once]` for an optional one, in roff.
fn option_usage(arg: &clap::Arg) -> Vec<roff::Inline> {
    let Some(long) = arg.get_long() else {
        return Vec::new();
    };
    let optional = !arg.is_required_set();
    let mut usage = vec![roman(if optional { " [" } else { " " })];
    usage.push(bold(format!("--{long}")));
    if arg.get_action().takes_values() {
        for value in arg.get_value_names().unwrap_or_default() {
            usage.extend([roman(" "), italic(value.as_str())]);
        }
    }
    if optional {
        usage.push(roman("]"));
    }
    usage
}

/// Writes all of `bytes`; a closed stdout (`| head`) is a failure, not a panic.
fn write_stdout(bytes: &[u8]) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ringproxy: cannot write to stdout: {error}");
            ExitCode::FAILURE
        }
    }
}
