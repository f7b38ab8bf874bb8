//! Zero-downtime binary upgrade: SIGUSR2 and `ringproxy upgrade` start the binary at the
//! proxy's path again, hand it every listening socket, and the old process drains and exits.
//! The end-to-end test of issue 17 (reloads, backend changes, a listener added and two
//! upgrades under 50 busy keep-alive clients and a WebSocket) is here too.

mod common;

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(20);
/// `ringproxy upgrade` waits up to 45 s for a new process that fails; ours start in one.
const UPGRADE_WAIT: Duration = Duration::from_secs(60);

/// A proxy started with a config file and a pid file, followed through its upgrades. Every
/// process after the first inherits the first one's stderr: `first`'s lines are all of
/// theirs. The processes an upgrade starts become this test process's children when their
/// parent exits (`become_subreaper`), so that their exit status can be checked.
struct Upgradable {
    first: Proxy,
    config: PathBuf,
    pid_file: PathBuf,
    /// Every process the proxy has been, in order; the last one serves.
    pids: Vec<u32>,
    _dir: TempDir,
}

impl Upgradable {
    fn start(toml: &str) -> Upgradable {
        Upgradable::start_under(&bin(), &[], toml)
    }

    /// Starts `program` (run by `wrapper`, if any) with a config file of `toml`.
    fn start_under(program: &str, wrapper: &[&str], toml: &str) -> Upgradable {
        become_subreaper();
        let dir = TempDir::new();
        let config = dir.write("ringproxy.toml", toml.as_bytes());
        let pid_file = dir.path().join("ringproxy.pid");
        let args = [
            "--config",
            config.to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
        ];
        let first = Proxy::try_start_binary_under(program, wrapper, &args)
            .unwrap_or_else(|e| panic!("proxy did not start: {e}"));
        let pids = vec![first.pid()];
        Upgradable {
            first,
            config,
            pid_file,
            pids,
            _dir: dir,
        }
    }

    fn pid(&self) -> u32 {
        *self.pids.last().unwrap()
    }

    fn lines(&self) -> Vec<String> {
        self.first.stderr_lines()
    }

    /// Where the log is now: `wait_for_line` looks at lines after it.
    fn mark(&self) -> usize {
        self.lines().len()
    }

    fn wait_for_line(&self, mark: usize, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let lines = self.lines();
            if let Some(line) = lines.iter().skip(mark).find(|l| wanted(l)) {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "line not logged; stderr:\n{}",
                lines.join("\n")
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn rewrite(&self, toml: &str) {
        std::fs::write(&self.config, toml).unwrap();
    }

    fn config_arg(&self) -> &str {
        self.config.to_str().unwrap()
    }

    fn pid_file_arg(&self) -> &str {
        self.pid_file.to_str().unwrap()
    }

    /// `ringproxy reload` with `toml`, then waits until every worker serves it.
    fn reload(&self, toml: &str) {
        let mark = self.mark();
        self.rewrite(toml);
        let out = run_to_exit(
            &[
                "reload",
                "--config",
                self.config_arg(),
                "--pid-file",
                self.pid_file_arg(),
            ],
            WAIT,
        );
        assert!(out.status.success(), "{out:?}");
        self.wait_for_line(mark, |l| l.ends_with("serving on every worker"));
    }

    /// `ringproxy upgrade`, expected to succeed: the new process's pid, once the old one
    /// has said it hands over.
    fn upgrade(&mut self) -> u32 {
        let mark = self.mark();
        let out = run_to_exit(
            &[
                "upgrade",
                "--config",
                self.config_arg(),
                "--pid-file",
                self.pid_file_arg(),
            ],
            UPGRADE_WAIT,
        );
        self.upgraded(mark, &out)
    }

    /// The new pid `ringproxy upgrade` reported in `out`, once the old process has said
    /// that it hands over to it.
    fn upgraded(&mut self, mark: usize, out: &std::process::Output) -> u32 {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}\n{}", self.lines().join("\n"));
        let new: u32 = stdout
            .strip_prefix("ringproxy: upgraded: pid ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("{stdout}"));
        assert!(
            stdout.contains(&format!("pid {} drains and exits", self.pid())),
            "{stdout}"
        );
        self.pids.push(new);
        let handing_over = format!("ringproxy: upgrade: pid {new} serves;");
        self.wait_for_line(mark, |l| l.starts_with(&handing_over));
        new
    }

    /// Stops the serving process, and checks that every process the proxy has been exited
    /// 0: none is left behind.
    fn stop(self) {
        kill_pid(self.pid(), libc::SIGTERM);
        self.check_all_exit_zero();
    }

    /// Waits until every process the proxy has been has exited, each with status 0.
    fn check_all_exit_zero(mut self) {
        let first = self.first.wait_exit(WAIT).expect("the first process exits");
        assert!(first.success(), "first process: {first:?}");
        for &pid in &self.pids[1..] {
            assert_eq!(reap(pid, WAIT), Ok(Some(0)), "pid {pid}");
        }
        self.pids.truncate(1);
    }
}

impl Drop for Upgradable {
    fn drop(&mut self) {
        // A failed test's processes; the first one is the `Proxy`'s to end.
        for &pid in &self.pids[1..] {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if name.trim() == "ringproxy" {
                kill_pid(pid, libc::SIGKILL);
                let _ = reap(pid, Duration::from_secs(5));
            }
        }
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The body a `body_backend` answers `target` with: the target, then a pattern whose
/// length depends on it (100 to 3,099 bytes).
fn expected_body(target: &str) -> Vec<u8> {
    let sum: usize = target.bytes().map(usize::from).sum();
    let mut body = target.as_bytes().to_vec();
    body.push(b'|');
    body.extend(pattern(100 + sum * 7 % 3000));
    body
}

fn body_backend() -> Backend {
    Backend::start(|req| vec![Step::Write(ok_response(&expected_body(&req.target)))])
}

/// What a client saw.
#[derive(Debug, Default)]
struct Tally {
    exchanges: usize,
    failures: Vec<String>,
}

impl Tally {
    #[track_caller]
    fn assert_clean(&self, who: &str) {
        assert!(
            self.failures.is_empty(),
            "{who}: {} of {} failed, first: {:?}",
            self.failures.len(),
            self.exchanges,
            &self.failures[..self.failures.len().min(5)]
        );
        assert!(self.exchanges > 0, "{who} made no request");
    }
}

/// Sends keep-alive GETs to `addr` until `stop`, `pause` apart, on a new connection after a
/// response with `Connection: close` (as HTTP client libraries do). Every request must get
/// a 200 with its whole body; a request that gets none, or a part, is a failure.
fn keep_alive_client(addr: SocketAddr, id: usize, stop: Arc<AtomicBool>, pause: Duration) -> Tally {
    let mut tally = Tally::default();
    let mut open: Option<RawClient> = None;
    while !stop.load(Ordering::Relaxed) {
        tally.exchanges += 1;
        let target = format!("/c{id}/{}", tally.exchanges);
        let mut client = match open.take() {
            Some(client) => client,
            None => match TcpStream::connect(addr) {
                Ok(stream) => RawClient::connect_stream(stream),
                Err(e) => {
                    tally.failures.push(format!("{target}: connect: {e}"));
                    continue;
                }
            },
        };
        match exchange(&mut client, &target) {
            Ok(true) => open = Some(client),
            Ok(false) => {}
            Err(e) => tally.failures.push(format!("{target}: {e}")),
        }
        thread::sleep(pause);
    }
    tally
}

/// One GET on `client`: whether the connection stays open.
fn exchange(client: &mut RawClient, target: &str) -> Result<bool, String> {
    let request = format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n");
    client
        .try_send(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let response = client
        .read_response()
        .map_err(|e| format!("response: {e}"))?;
    if response.status != 200 {
        return Err(format!("status {}", response.status));
    }
    let want = expected_body(target);
    if response.body != want {
        return Err(format!(
            "a body of {} bytes, not the {} expected (or not those bytes)",
            response.body.len(),
            want.len()
        ));
    }
    Ok(response
        .header("connection")
        .is_none_or(|v| !v.eq_ignore_ascii_case("close")))
}

fn spawn_clients(
    addr: SocketAddr,
    count: usize,
    stop: &Arc<AtomicBool>,
    pause: Duration,
) -> Vec<JoinHandle<Tally>> {
    (0..count)
        .map(|id| {
            let stop = stop.clone();
            thread::spawn(move || keep_alive_client(addr, id, stop, pause))
        })
        .collect()
}

/// Joins the clients, each of which must have seen no failure; the requests they made.
fn join_clients(clients: Vec<JoinHandle<Tally>>) -> usize {
    let mut requests = 0;
    for (id, client) in clients.into_iter().enumerate() {
        let tally = client.join().unwrap();
        tally.assert_clean(&format!("client {id}"));
        requests += tally.exchanges;
    }
    requests
}

/// The inodes of the sockets the proxy accepted from `clients` on `listener` (the proxy's
/// side of each connection), from /proc/net/tcp.
fn accepted_socket_inodes(listener: SocketAddr, clients: &[SocketAddr]) -> HashSet<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port = |field: &str| u16::from_str_radix(field.rsplit(':').next().unwrap_or(""), 16).ok();
    let client_ports: HashSet<u16> = clients.iter().map(SocketAddr::port).collect();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = port(fields.get(1)?)?;
            let remote = port(fields.get(2)?)?;
            let inode = fields.get(9)?.parse().ok()?;
            (local == listener.port() && client_ports.contains(&remote)).then_some(inode)
        })
        .collect()
}

/// The inodes of the sockets process `pid` holds.
fn socket_inodes_of(pid: u32) -> HashSet<u64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap();
    dir.flatten()
        .filter_map(|entry| {
            let target = std::fs::read_link(entry.path()).ok()?;
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// An executable script at `path` that appends its pid to `ran`, waits `delay`, then runs
/// `real` with its arguments in its place (same pid). Written beside `path` and renamed over
/// it, as a package manager replaces a binary.
fn replace_with_script(path: &Path, ran: &Path, delay: &str, real: &str) {
    let script = format!(
        "#!/bin/sh\necho $$ >> '{}'\nsleep {delay}\nexec '{real}' \"$@\"\n",
        ran.display()
    );
    let partial = path.with_extension("new");
    std::fs::write(&partial, script).unwrap();
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&partial, path).unwrap();
}

#[test]
fn an_upgrade_under_steady_traffic_loses_no_request_and_runs_the_binary_now_at_the_path() {
    let bin_dir = TempDir::new();
    let program = bin_dir.path().join("ringproxy");
    std::fs::copy(bin(), &program).unwrap();
    let backends = [body_backend(), body_backend()];
    let toml = format!(
        "[runtime]\nworkers = 2\npin = false\n\n[[listener]]\naddress = \"127.0.0.1:0\"\n\
         upstream = \"app\"\n\n[upstream.app]\nbackends = [\"{}\", \"{}\"]\n\n\
         [admin]\naddress = \"127.0.0.1:0\"\n",
        backends[0].addr(),
        backends[1].addr()
    );
    let mut proxy = Upgradable::start_under(program.to_str().unwrap(), &[], &toml);
    let addr = proxy.first.addr();
    let admin = admin_addr(&proxy.first);

    // Idle keep-alive connections of the old process: it closes them as it drains, and the
    // new process must not hold them open.
    let mut idle: Vec<RawClient> = (0..5)
        .map(|i| {
            let mut client = RawClient::connect(addr);
            assert_eq!(exchange(&mut client, &format!("/idle{i}")), Ok(true));
            client
        })
        .collect();
    let idle_addrs: Vec<SocketAddr> = idle
        .iter()
        .map(|c| c.stream().local_addr().unwrap())
        .collect();
    let accepted = accepted_socket_inodes(addr, &idle_addrs);
    assert_eq!(
        accepted.len(),
        idle.len(),
        "the proxy's side of each idle connection"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let clients = spawn_clients(addr, 8, &stop, Duration::from_millis(2));
    thread::sleep(Duration::from_millis(300));

    // The new version lands at the path the proxy was started from. It takes half a second
    // to start: a second SIGUSR2 meanwhile finds the upgrade under way.
    let ran = bin_dir.path().join("ran");
    replace_with_script(&program, &ran, "0.5", &bin());
    let mark = proxy.mark();
    let pid_file = proxy.pid_file_arg().to_string();
    let upgrade =
        thread::spawn(move || run_to_exit(&["upgrade", "--pid-file", &pid_file], UPGRADE_WAIT));
    proxy.wait_for_line(mark, |l| l.starts_with("ringproxy: upgrade: started pid "));
    proxy.first.signal("USR2");
    proxy.wait_for_line(mark, |l| {
        l.starts_with("ringproxy: upgrade refused: one is under way (new process pid ")
    });
    let new = proxy.upgraded(mark, &upgrade.join().unwrap());
    assert_eq!(
        std::fs::read_to_string(&ran).unwrap().trim(),
        new.to_string(),
        "the new process is the file now at the path"
    );
    assert!(
        !socket_inodes_of(new)
            .iter()
            .any(|inode| accepted.contains(inode)),
        "the new process holds the old one's client connections"
    );

    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    join_clients(clients);

    // The old process drained and exited 0; the new one serves on the same sockets, the
    // admin listener included, and said so on the same address (configured as port 0).
    let old = proxy.first.wait_exit(WAIT).expect("the old process exits");
    assert!(old.success(), "{old:?}");
    assert_eq!(get(addr, "/after").status, 200);
    assert_eq!(admin_get(admin, "/status", None).0, 200);
    let listening: Vec<String> = proxy
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("ringproxy: listening on "))
        .collect();
    assert_eq!(listening.len(), 2, "{listening:?}");
    assert!(
        listening.iter().all(|l| l.contains(&addr.to_string())),
        "{listening:?}"
    );
    for (i, client) in idle.iter_mut().enumerate() {
        client
            .wait_closed(WAIT)
            .unwrap_or_else(|e| panic!("idle connection {i}: {e}"));
    }
    proxy.stop();
}

#[test]
fn connections_queued_in_the_listen_backlog_at_the_handover_are_served() {
    let release = Arc::new(AtomicBool::new(false));
    let backend = holding_backend(&release);
    let mut proxy = Upgradable::start(&config(&[backend.addr()], ""));
    let addr = proxy.first.addr();
    // A request in flight keeps the old process draining after it stops accepting.
    let held_request = thread::spawn(move || get(addr, "/held"));
    backend.wait_for_requests(1);

    let mark = proxy.mark();
    proxy.first.signal("USR2");
    let line = proxy.wait_for_line(mark, |l| {
        l.contains(" serves; this process stops accepting")
    });
    let new: u32 = line
        .strip_prefix("ringproxy: upgrade: pid ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    proxy.pids.push(new);
    // The new process stands still; the old one cancels its accepts within a timer tick.
    kill_pid(new, libc::SIGSTOP);
    thread::sleep(Duration::from_millis(300));

    let mut queued: Vec<RawClient> = (0..20)
        .map(|i| {
            let mut client = RawClient::connect(addr);
            client.send(format!("GET /queued{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
            client
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    for (i, client) in queued.iter().enumerate() {
        let stream = client.stream();
        stream.set_nonblocking(true).unwrap();
        let waiting = stream.peek(&mut [0u8; 1]);
        stream.set_nonblocking(false).unwrap();
        assert!(
            matches!(&waiting, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "connection {i} was answered or closed before anyone could accept it: {waiting:?}"
        );
    }

    // The old process finishes its request and exits, closing its copies of the sockets:
    // the queued connections stay, in the new process's.
    release.store(true, Ordering::Relaxed);
    assert_eq!(held_request.join().unwrap().status, 200);
    let old = proxy.first.wait_exit(WAIT).expect("the old process exits");
    assert!(old.success(), "{old:?}");
    kill_pid(new, libc::SIGCONT);
    for (i, client) in queued.iter_mut().enumerate() {
        let response = client
            .read_response()
            .unwrap_or_else(|e| panic!("queued connection {i}: {e}"));
        assert_eq!(response.status, 200);
        assert_eq!(
            response.header("x-echo-target"),
            Some(format!("/queued{i}").as_str())
        );
    }
    proxy.stop();
}

#[test]
fn a_new_binary_that_cannot_start_leaves_the_old_one_serving_and_says_why() {
    let backend = Backend::echo();
    let good = config(&[backend.addr()], "");
    let mut proxy = Upgradable::start(&good);
    let addr = proxy.first.addr();
    let old = proxy.pid();
    let mut client = RawClient::connect(addr);
    client.assert_serves_next_request();

    let bad = good.replace("[upstream.app]", "[upstream.app]\nbalance = \"fastest\"");
    proxy.rewrite(&bad);
    // Checked first: nothing is signalled.
    let checked = run_to_exit(
        &[
            "upgrade",
            "--config",
            proxy.config_arg(),
            "--pid-file",
            proxy.pid_file_arg(),
        ],
        WAIT,
    );
    let said = String::from_utf8_lossy(&checked.stderr);
    assert_eq!(checked.status.code(), Some(2), "{said}");
    assert!(
        said.contains("ringproxy.toml:")
            && said.contains("upstream.app.balance")
            && said.contains("upgrade: not signalled, the running process serves on"),
        "{said}"
    );

    // Not checked (no --config): the new process refuses the file and exits 2.
    let mark = proxy.mark();
    let unchecked = run_to_exit(
        &["upgrade", "--pid-file", proxy.pid_file_arg()],
        UPGRADE_WAIT,
    );
    let said = String::from_utf8_lossy(&unchecked.stderr);
    assert_eq!(unchecked.status.code(), Some(1), "{said}");
    let failed = said
        .strip_prefix("ringproxy: upgrade: upgrade failed: the new process (pid ")
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        said.trim_end().ends_with(&format!(
            "exited with exit status: 2 before it was ready; pid {old} serves on"
        )),
        "{said}"
    );
    let logged = proxy.wait_for_line(mark, |l| l.starts_with("ringproxy: upgrade failed: "));
    assert!(logged.ends_with("this process serves on"), "{logged}");
    assert!(
        proxy.lines()[mark..]
            .iter()
            .any(|l| l.contains("upstream.app.balance")),
        "the new process's errors are in the log"
    );
    assert!(
        !Path::new(&format!("/proc/{failed}")).exists(),
        "the failed process {failed} is gone"
    );
    assert_eq!(
        std::fs::read_to_string(&proxy.pid_file).unwrap().trim(),
        old.to_string()
    );
    client.assert_serves_next_request();
    assert_eq!(get(addr, "/new").status, 200);

    // Fixed, the next upgrade goes through; the old keep-alive connection is told to close
    // (once the old process's worker has seen the handover, within a 50 ms tick).
    proxy.rewrite(&good);
    proxy.upgrade();
    thread::sleep(Duration::from_millis(200));
    client.send(b"GET /last HTTP/1.1\r\nHost: t\r\n\r\n");
    let last = client.read_response().unwrap();
    assert_eq!(
        (last.status, last.header("connection")),
        (200, Some("close"))
    );
    assert_eq!(get(addr, "/upgraded").status, 200);
    proxy.stop();
}

/// Fresh connections to `addr`, each answered: every socket of the listener is accepted on
/// (the kernel spreads connections over them by their addresses).
#[track_caller]
fn assert_every_socket_accepts(addr: SocketAddr, what: &str) {
    for i in 0..40 {
        let mut client = RawClient::connect(addr);
        client.set_read_timeout(Duration::from_secs(5));
        client.send(format!("GET /{what}/{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let response = client
            .read_response()
            .unwrap_or_else(|e| panic!("{what}: connection {i}: {e}"));
        assert_eq!(response.status, 200, "{what}: connection {i}");
    }
}

/// An echo backend that holds each `/held` request until `release` is set (at most `WAIT`).
fn holding_backend(release: &Arc<AtomicBool>) -> Backend {
    let release = release.clone();
    Backend::start(move |req| {
        if req.target == "/held" {
            let deadline = Instant::now() + WAIT;
            while !release.load(Ordering::Relaxed) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
        }
        echo_reply(req)
    })
}

#[test]
fn a_new_process_with_fewer_or_more_workers_accepts_on_every_socket() {
    let release = Arc::new(AtomicBool::new(false));
    let backend = holding_backend(&release);
    let with_workers =
        |n: usize| config(&[backend.addr()], "").replace("workers = 1", &format!("workers = {n}"));
    let mut proxy = Upgradable::start(&with_workers(2));
    let addr = proxy.first.addr();
    // The old process stays, draining a request, with its copies of both sockets open: a
    // socket the new process did not accept on would hold its connections unanswered.
    let held = thread::spawn(move || get(addr, "/held"));
    backend.wait_for_requests(1);
    proxy.rewrite(&with_workers(1));
    proxy.upgrade();
    thread::sleep(Duration::from_millis(200));
    assert_every_socket_accepts(addr, "fewer");
    release.store(true, Ordering::Relaxed);
    assert_eq!(held.join().unwrap().status, 200);
    let old = proxy.first.wait_exit(WAIT).expect("the old process exits");
    assert!(old.success(), "{old:?}");
    // Two sockets, three workers: the third binds a socket of its own on the address.
    let mark = proxy.mark();
    proxy.rewrite(&with_workers(3));
    proxy.upgrade();
    assert!(
        proxy.lines()[mark..]
            .iter()
            .any(|l| l == "ringproxy: ready (3 workers)"),
        "{:?}",
        &proxy.lines()[mark..]
    );
    assert_every_socket_accepts(addr, "more");
    proxy.stop();
}

#[test]
fn systemd_hears_ready_and_each_new_main_pid() {
    let name = format!("ringproxy-test-notify-{}", std::process::id());
    let address = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
    let systemd = UnixDatagram::bind_addr(&address).unwrap();
    systemd.set_read_timeout(Some(WAIT)).unwrap();
    let next = || {
        let mut buf = [0u8; 512];
        let n = systemd.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let backend = Backend::echo();
    let notify_socket = format!("NOTIFY_SOCKET=@{name}");
    let mut proxy = Upgradable::start_under(
        &bin(),
        &["env", &notify_socket],
        &config(&[backend.addr()], ""),
    );
    let first = proxy.pid();
    assert_eq!(
        next(),
        format!("READY=1\nMAINPID={first}\nSTATUS=ready (1 worker)\n")
    );
    let new = proxy.upgrade();
    assert_eq!(
        next(),
        format!("READY=1\nMAINPID={new}\nSTATUS=ready (1 worker)\n")
    );
    kill_pid(new, libc::SIGTERM);
    assert_eq!(
        next(),
        "STOPPING=1\n",
        "from the stopping process, not the one handing over"
    );
    proxy.check_all_exit_zero();
}

// ---------------------------------------------------------------------------------------------
// Issue 17's end-to-end test

/// The config of the end-to-end test: `listeners` through one route table (`/ws` to the
/// WebSocket backend, the rest to `app`), `app` over `app_backends` (TOML array items).
/// `edition` changes a response header, so that each reload has something to change.
fn e2e_toml(
    listeners: &[SocketAddr],
    app_backends: &str,
    ws: SocketAddr,
    edition: usize,
) -> String {
    let mut out = String::from(
        "[runtime]\nworkers = 2\npin = false\n\n[timeouts]\n# The WebSocket outlives the test in the first process.\ndrain = \"60s\"\n\n",
    );
    for address in listeners {
        out += &format!("[[listener]]\naddress = \"{address}\"\nroutes = \"main\"\n\n");
    }
    out += &format!(
        "[[routes.main.route]]\npath_prefix = \"/ws\"\nupstream = \"ws\"\n\n\
         [[routes.main.route]]\nupstream = \"app\"\n\
         set_response_headers = {{ \"X-Edition\" = \"{edition}\" }}\n\n\
         [upstream.app]\nbackends = [{app_backends}]\n\n\
         [upstream.ws]\nbackends = [\"{ws}\"]\n"
    );
    out
}

/// A WebSocket session through `addr`: a message every 20 ms, each echoed, until `stop`;
/// `echoes` counts the echoes.
fn websocket_session(addr: SocketAddr, stop: Arc<AtomicBool>, echoes: Arc<AtomicUsize>) -> Tally {
    let mut tally = Tally::default();
    let mut ws = RawClient::connect(addr);
    ws.send(
        b"GET /ws/chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    match ws.read_response() {
        Ok(r) if r.status == 101 => {}
        other => {
            tally.failures.push(format!("handshake: {other:?}"));
            return tally;
        }
    }
    while !stop.load(Ordering::Relaxed) {
        tally.exchanges += 1;
        let message = format!("message {}", tally.exchanges);
        let sent = ws.try_send(&ws_frame(0x1, message.as_bytes(), Some([7, 8, 9, 10])));
        match sent.and_then(|()| ws_read_frame(ws.reader())) {
            Ok((0x1, echo)) if echo == message.as_bytes() => {
                echoes.fetch_add(1, Ordering::Relaxed);
            }
            other => {
                tally.failures.push(format!("{message}: {other:?}"));
                return tally;
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = ws.try_send(&ws_frame(0x8, b"", Some([1, 2, 3, 4])));
    tally
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn e2e_reloads_backend_changes_a_new_listener_and_two_upgrades_under_load_fail_nothing() {
    let [a, b, c] = [body_backend(), body_backend(), body_backend()];
    let ws_backend = Backend::start(|_| {
        vec![
            Step::Write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                    .to_vec(),
            ),
            Step::WebSocketEcho,
        ]
    });
    let ws = ws_backend.addr();
    let (first, second) = (free_addr(), free_addr());
    let item = |backend: &Backend| format!("\"{}\"", backend.addr());
    let drained =
        |backend: &Backend| format!("{{ address = \"{}\", drain = true }}", backend.addr());
    let ab = format!("{}, {}", item(&a), item(&b));
    let abc = format!("{ab}, {}", item(&c));
    let a_drained_b_c = format!("{}, {}, {}", item(&a), drained(&b), item(&c));
    let ac = format!("{}, {}", item(&a), item(&c));

    let mut proxy = Upgradable::start(&e2e_toml(&[first], &ab, ws, 0));
    let stop = Arc::new(AtomicBool::new(false));
    let echoes = Arc::new(AtomicUsize::new(0));
    let session = {
        let (stop, echoes) = (stop.clone(), echoes.clone());
        thread::spawn(move || websocket_session(first, stop, echoes))
    };
    let clients = spawn_clients(first, 50, &stop, Duration::from_millis(10));
    wait_until("the WebSocket echoes", || {
        echoes.load(Ordering::Relaxed) > 0
    });

    let mut edition = 0;
    let mut reload = |proxy: &Upgradable, listeners: &[SocketAddr], backends: &str| {
        edition += 1;
        proxy.reload(&e2e_toml(listeners, backends, ws, edition));
    };
    for _ in 0..3 {
        reload(&proxy, &[first], &ab);
    }
    reload(&proxy, &[first], &abc);
    wait_until("the added backend takes requests", || {
        !c.requests().is_empty()
    });
    reload(&proxy, &[first], &a_drained_b_c);
    reload(&proxy, &[first], &ac);
    let b_requests = b.requests().len();

    let mark = proxy.mark();
    proxy.rewrite(&e2e_toml(&[first], "", ws, 99));
    kill_pid(proxy.pid(), libc::SIGHUP);
    proxy.wait_for_line(mark, |l| l.starts_with("ringproxy: reload rejected"));

    reload(&proxy, &[first, second], &ac);
    assert_eq!(get(second, "/second").status, 200);
    proxy.upgrade();
    reload(&proxy, &[first, second], &ac);
    reload(&proxy, &[first, second], &ac);
    proxy.upgrade();
    reload(&proxy, &[first, second], &ac);
    assert_eq!(edition, 10, "ten reloads");

    // After all that: the listener added serves, the first WebSocket session (still on the
    // first process, which drains) echoes, and a new one through the newest process does.
    assert_eq!(get(second, "/second/again").status, 200);
    let before = echoes.load(Ordering::Relaxed);
    wait_until("the WebSocket still echoes", || {
        echoes.load(Ordering::Relaxed) > before + 3
    });
    let (fresh_stop, fresh_echoes) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let fresh = {
        let (stop, echoes) = (fresh_stop.clone(), fresh_echoes.clone());
        thread::spawn(move || websocket_session(second, stop, echoes))
    };
    wait_until("a new WebSocket echoes", || {
        fresh_echoes.load(Ordering::Relaxed) >= 3
    });
    fresh_stop.store(true, Ordering::Relaxed);
    fresh
        .join()
        .unwrap()
        .assert_clean("the new WebSocket session");
    stop.store(true, Ordering::Relaxed);
    let requests = join_clients(clients);
    let session = session.join().unwrap();
    session.assert_clean("the WebSocket session");
    eprintln!(
        "50 clients: {requests} requests, none failed; WebSocket: {} messages echoed",
        session.exchanges
    );
    assert_eq!(
        b.requests().len(),
        b_requests,
        "the removed backend got requests"
    );
    proxy.stop();
}
