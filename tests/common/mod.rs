//! Shared harness for the end-to-end tests: the real `ringproxy` binary as a child process,
//! scripted HTTP/1.1 backends that record what reached them, a raw socket client and a curl
//! wrapper. Every blocking read has a timeout so a broken proxy fails a test instead of
//! hanging the suite.
#![allow(dead_code)]

pub mod pki;
pub mod prom;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// The binary under test; `RINGPROXY_BIN` points the suite at another build (e.g. a release
/// binary or the lead's checkout) without rebuilding.
pub fn bin() -> String {
    std::env::var("RINGPROXY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_ringproxy").to_string())
}
/// Upper bound for any single read in a test; generous because the machine is shared.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Raw bytes kept per backend connection: enough to inspect heads, bounded for 10 MiB bodies.
const RAW_LOG_CAP: usize = 64 * 1024;
const MAX_HEAD: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Temporary directories

pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("ringproxy-e2e-{}-{}", std::process::id(), n));
        std::fs::create_dir_all(&path).unwrap();
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let p = self.path.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy process

pub struct Proxy {
    child: Child,
    addrs: Vec<SocketAddr>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// Drains stderr until the child closes it.
    stderr_reader: Option<thread::JoinHandle<()>>,
    _dir: Option<TempDir>,
}

impl Proxy {
    /// Starts `ringproxy ARGS` and waits for its `ringproxy: ready` line; panics with the
    /// collected stderr if it exits or does not become ready.
    pub fn start(args: &[&str]) -> Proxy {
        Proxy::try_start(args).unwrap_or_else(|e| panic!("proxy did not start: {e}"))
    }

    /// Starts with no config file: one listener on an ephemeral port, round robin over
    /// `backends`, one unpinned worker.
    pub fn for_backends(backends: &[SocketAddr]) -> Proxy {
        let mut args: Vec<String> = vec!["--listen".into(), "127.0.0.1:0".into()];
        for b in backends {
            args.push("--upstream".into());
            args.push(b.to_string());
        }
        args.extend(["--workers", "1", "--no-pin"].map(String::from));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Proxy::start(&refs)
    }

    /// Writes `toml` to a temporary file and starts `ringproxy --config FILE EXTRA_ARGS`.
    pub fn start_with_config(toml: &str, extra_args: &[&str]) -> Proxy {
        let dir = TempDir::new();
        let path = dir.write("ringproxy.toml", toml.as_bytes());
        let mut args = vec!["--config", path.to_str().unwrap()];
        args.extend_from_slice(extra_args);
        let mut proxy = Proxy::start(&args);
        proxy._dir = Some(dir);
        proxy
    }

    pub fn try_start(args: &[&str]) -> Result<Proxy, String> {
        Proxy::try_start_under(&[], args)
    }

    /// Like `start`, with the binary run by `wrapper` (a program and its leading arguments).
    pub fn start_under(wrapper: &[&str], args: &[&str]) -> Proxy {
        Proxy::try_start_under(wrapper, args).unwrap_or_else(|e| panic!("proxy did not start: {e}"))
    }

    pub fn try_start_under(wrapper: &[&str], args: &[&str]) -> Result<Proxy, String> {
        Proxy::try_start_binary_under(&bin(), wrapper, args)
    }

    /// Like `try_start_under`, for another ringproxy binary than the one under test (e.g.
    /// one extracted from the package).
    pub fn try_start_binary_under(
        program: &str,
        wrapper: &[&str],
        args: &[&str],
    ) -> Result<Proxy, String> {
        let (exe, leading): (&str, &[&str]) = match wrapper {
            [first, rest @ ..] => (first, rest),
            [] => (program, &[]),
        };
        let mut command = Command::new(exe);
        command.args(leading);
        if !wrapper.is_empty() {
            command.arg(program);
        }
        let mut child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {program}: {e}"))?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let log = Arc::clone(&stderr);
        // Keeps draining stderr for the whole life of the child so it never blocks on a pipe.
        let stderr_reader = thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                log.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut addrs = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = parse_listening_line(&line) {
                        addrs.push(addr);
                    }
                    if line.starts_with("ringproxy: ready") {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = wait_with_timeout(&mut child, Duration::from_secs(5))
                        .map_or("no exit status yet".to_owned(), |s| s.to_string());
                    let lines = stderr.lock().unwrap().join("\n");
                    return Err(format!("exited ({status}) before ready; stderr:\n{lines}"));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let lines = stderr.lock().unwrap().join("\n");
                    return Err(format!(
                        "not ready after {READY_TIMEOUT:?}; stderr:\n{lines}"
                    ));
                }
            }
        }
        if addrs.is_empty() {
            let _ = child.kill();
            let _ = child.wait();
            let lines = stderr.lock().unwrap().join("\n");
            return Err(format!(
                "ready but no `listening on` line; stderr:\n{lines}"
            ));
        }
        Ok(Proxy {
            child,
            addrs,
            stderr,
            stderr_reader: Some(stderr_reader),
            _dir: None,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends a signal by name (`TERM`, `INT`) with the `kill` command.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_with_timeout(&mut self.child, timeout)
    }

    /// Every stderr line, once the proxy has exited and closed stderr (call after
    /// `wait_exit` succeeded).
    pub fn stderr_after_exit(&mut self) -> Vec<String> {
        if let Some(reader) = self.stderr_reader.take() {
            reader.join().unwrap();
        }
        self.stderr_lines()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes this test process the parent of the processes orphaned below it (a binary
/// upgrade's new process, once the process that started it has exited), so that `reap` can
/// wait for them and read their exit status.
pub fn become_subreaper() {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes integers and sets a flag of this process.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(
        rc,
        0,
        "PR_SET_CHILD_SUBREAPER: {}",
        io::Error::last_os_error()
    );
}

/// Waits up to `timeout` for process `pid` to exit and reaps it: its exit code (`None`:
/// ended by a signal). `pid` is a child of this process, or becomes one when its parent
/// exits (`become_subreaper`). `Err` if it still runs, or someone else reaped it.
pub fn reap(pid: u32, timeout: Duration) -> Result<Option<i32>, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes one int, into `status`.
        let rc = unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
        if rc == pid as i32 {
            return Ok(libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)));
        }
        // ECHILD with the process still there: its parent has not exited yet.
        if rc < 0 && !Path::new(&format!("/proc/{pid}")).exists() {
            return Err(format!("pid {pid} is gone, reaped by another process"));
        }
        if Instant::now() >= deadline {
            return Err(format!("pid {pid} still runs after {timeout:?}"));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `signal` to process `pid`.
pub fn kill_pid(pid: u32, signal: i32) {
    // SAFETY: kill(2) takes integers.
    unsafe { libc::kill(pid as i32, signal) };
}

fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let rest = line.strip_prefix("ringproxy: listening on ")?;
    rest.split_whitespace().next()?.parse().ok()
}

pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `ringproxy ARGS` expecting it to exit by itself (CLI errors, `--check`); kills it and
/// panics if it is still running after `timeout`.
pub fn run_to_exit(args: &[&str], timeout: Duration) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let status = match wait_with_timeout(&mut child, timeout) {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
            panic!("ringproxy {args:?} still running after {timeout:?}; stderr:\n{stderr}");
        }
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// A minimal config: one unpinned worker, one listener on an ephemeral port, upstream `app`
/// over `backends`, followed by `extra` (more tables, e.g. `[timeouts]`).
pub fn config(backends: &[SocketAddr], extra: &str) -> String {
    config_with_runtime(backends, "", extra)
}

/// `config` with more `[runtime]` keys (`runtime_extra`, one `key = value` per line).
pub fn config_with_runtime(backends: &[SocketAddr], runtime_extra: &str, extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "[runtime]\nworkers = 1\npin = false\n{runtime_extra}\n[[listener]]\n\
         address = \"127.0.0.1:0\"\nupstream = \"app\"\n\n[upstream.app]\nbackends = [{}]\n\n\
         {extra}\n",
        list.join(", ")
    )
}

// ---------------------------------------------------------------------------------------------
// HTTP message reading shared by the backends (requests) and the raw client (responses)

pub type Headers = Vec<(String, String)>;

pub fn find_header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Reads one head (start line + header lines up to the empty line). `Ok(None)` on a clean
/// EOF before any byte.
fn read_head<R: BufRead>(r: &mut R) -> io::Result<Option<(String, Headers, Vec<u8>)>> {
    let mut raw = Vec::new();
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = r.read_until(b'\n', &mut line)?;
        if n == 0 {
            if raw.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "eof inside head",
            ));
        }
        raw.extend_from_slice(&line);
        if raw.len() > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too large"));
        }
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        if text.is_empty() {
            break;
        }
        lines.push(text);
    }
    let mut it = lines.into_iter();
    let start = it.next().unwrap_or_default();
    let mut headers = Vec::new();
    for l in it {
        let Some((k, v)) = l.split_once(':') else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad header {l:?}"),
            ));
        };
        headers.push((k.to_string(), v.trim().to_string()));
    }
    Ok(Some((start, headers, raw)))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Decodes a chunked body strictly (hex size, optional extension, CRLF after data,
/// trailers up to the empty line).
pub fn read_chunked<R: BufRead>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "eof before chunk size",
            ));
        }
        let size_text = line.trim_end_matches(['\r', '\n']);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| invalid(format!("bad chunk size line {line:?}")))?;
        if size == 0 {
            loop {
                let mut trailer = String::new();
                if r.read_line(&mut trailer)? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "eof in trailers",
                    ));
                }
                if trailer.trim_end_matches(['\r', '\n']).is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(invalid("missing CRLF after chunk data".into()));
        }
    }
}

fn read_exact_vec<R: Read>(r: &mut R, len: usize) -> io::Result<Vec<u8>> {
    let mut v = vec![0u8; len];
    r.read_exact(&mut v)?;
    Ok(v)
}

fn content_length(headers: &Headers) -> io::Result<Option<usize>> {
    match find_header(headers, "content-length") {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| invalid(format!("bad content-length {v:?}"))),
    }
}

fn is_chunked(headers: &Headers) -> bool {
    find_header(headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
}

// ---------------------------------------------------------------------------------------------
// Scripted backends

#[derive(Clone, Debug)]
pub struct Request {
    /// Index of the backend connection (0-based, in accept order) that carried it.
    pub conn: usize,
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub raw_head: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// What a backend does after reading a request, in order. Without `Close`/`Stall`/
/// `WebSocketEcho` the connection stays open for the next request.
#[derive(Clone, Debug)]
pub enum Step {
    Write(Vec<u8>),
    Sleep(Duration),
    /// Close the connection (FIN).
    Close,
    /// Keep the connection open, reading and discarding until the peer closes.
    Stall,
    /// Echo WebSocket frames (unmasked) until a close frame, answer it and close.
    WebSocketEcho,
}

type Handler = dyn Fn(&Request) -> Vec<Step> + Send + Sync;

struct BackendState {
    connections: AtomicUsize,
    requests: Mutex<Vec<Request>>,
    raw: Mutex<Vec<Vec<u8>>>,
    handler: Box<Handler>,
}

pub struct Backend {
    addr: SocketAddr,
    state: Arc<BackendState>,
}

impl Backend {
    /// An HTTP/1.1 keep-alive server on 127.0.0.1:0 that answers each request with the
    /// steps `handler` returns.
    pub fn start(handler: impl Fn(&Request) -> Vec<Step> + Send + Sync + 'static) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(BackendState {
            connections: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
            raw: Mutex::new(Vec::new()),
            handler: Box::new(handler),
        });
        let st = Arc::clone(&state);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let conn = st.connections.fetch_add(1, Ordering::SeqCst);
                st.raw.lock().unwrap().push(Vec::new());
                let st = Arc::clone(&st);
                thread::spawn(move || serve_connection(st, stream, conn));
            }
        });
        Backend { addr, state }
    }

    /// Answers every request with 200 and the request body; reports the request in
    /// `X-Echo-Method`, `X-Echo-Target`, `X-Echo-Conn`.
    pub fn echo() -> Backend {
        Backend::start(echo_reply)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn targets(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.target).collect()
    }

    /// The first bytes (up to 64 KiB) received on each connection, in accept order.
    pub fn raw_received(&self) -> Vec<Vec<u8>> {
        self.state.raw.lock().unwrap().clone()
    }

    /// Waits until at least `n` complete requests arrived; panics after `IO_TIMEOUT`.
    pub fn wait_for_requests(&self, n: usize) -> Vec<Request> {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let reqs = self.requests();
            if reqs.len() >= n {
                return reqs;
            }
            assert!(
                Instant::now() < deadline,
                "backend got {} of {n} requests",
                reqs.len()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
}

pub fn echo_reply(req: &Request) -> Vec<Step> {
    let body = if req.method == "HEAD" {
        Vec::new()
    } else {
        req.body.clone()
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Echo-Method: {}\r\nX-Echo-Target: {}\r\n\
         X-Echo-Conn: {}\r\n\r\n",
        req.body.len(),
        req.method,
        req.target,
        req.conn
    );
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&body);
    vec![Step::Write(bytes)]
}

/// An echo backend (`Backend::echo`) that answers `/missing` with 404.
pub fn app_backend() -> Backend {
    Backend::start(|req| {
        if req.target == "/missing" {
            vec![Step::Write(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
            )]
        } else {
            echo_reply(req)
        }
    })
}

/// A complete `200 OK` response with Content-Length.
pub fn ok_response(body: &[u8]) -> Vec<u8> {
    let mut v = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    v.extend_from_slice(body);
    v
}

/// A complete chunked `200 OK` response, `chunk` bytes per chunk.
pub fn chunked_response(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut v = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    v.extend_from_slice(&chunked(body, chunk));
    v
}

/// `data` in chunked framing including the terminating zero chunk.
pub fn chunked(data: &[u8], chunk: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len() + data.len() / chunk.max(1) * 8 + 8);
    for piece in data.chunks(chunk.max(1)) {
        v.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        v.extend_from_slice(piece);
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(b"0\r\n\r\n");
    v
}

/// Reader that keeps a bounded copy of what came over the connection.
struct RecordingStream {
    stream: TcpStream,
    state: Arc<BackendState>,
    conn: usize,
}

impl Read for RecordingStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        let mut raw = self.state.raw.lock().unwrap();
        let log = &mut raw[self.conn];
        let room = RAW_LOG_CAP.saturating_sub(log.len()).min(n);
        log.extend_from_slice(&buf[..room]);
        Ok(n)
    }
}

fn read_request<R: BufRead>(r: &mut R, conn: usize) -> io::Result<Option<Request>> {
    let Some((start, headers, raw)) = read_head(r)? else {
        return Ok(None);
    };
    let mut parts = start.splitn(3, ' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let version = parts.next().unwrap_or_default().to_string();
    let body = if is_chunked(&headers) {
        read_chunked(r)?
    } else if let Some(len) = content_length(&headers)? {
        read_exact_vec(r, len)?
    } else {
        Vec::new()
    };
    let raw_head = String::from_utf8_lossy(&raw).into_owned();
    Ok(Some(Request {
        conn,
        method,
        target,
        version,
        headers,
        body,
        raw_head,
    }))
}

fn serve_connection(state: Arc<BackendState>, stream: TcpStream, conn: usize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::with_capacity(
        64 * 1024,
        RecordingStream {
            stream,
            state: Arc::clone(&state),
            conn,
        },
    );
    loop {
        let req = match read_request(&mut reader, conn) {
            Ok(Some(req)) => req,
            Ok(None) | Err(_) => return,
        };
        state.requests.lock().unwrap().push(req.clone());
        for step in (state.handler)(&req) {
            match step {
                Step::Write(bytes) => {
                    if writer.write_all(&bytes).is_err() {
                        return;
                    }
                }
                Step::Sleep(d) => thread::sleep(d),
                Step::Close => {
                    let _ = writer.shutdown(Shutdown::Both);
                    return;
                }
                Step::Stall => {
                    let mut sink = [0u8; 4096];
                    while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
                    return;
                }
                Step::WebSocketEcho => {
                    websocket_echo(&mut reader, &mut writer);
                    return;
                }
            }
        }
    }
}

fn websocket_echo<R: Read>(reader: &mut R, writer: &mut TcpStream) {
    while let Ok((opcode, payload)) = ws_read_frame(reader) {
        if writer.write_all(&ws_frame(opcode, &payload, None)).is_err() || opcode == 0x8 {
            break;
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
}

// ---------------------------------------------------------------------------------------------
// WebSocket framing (RFC 6455), just enough for single-frame messages

pub fn ws_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut v = vec![0x80 | opcode];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => v.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            v.push(mask_bit | 126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            v.push(mask_bit | 127);
            v.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            v.extend_from_slice(&key);
            v.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => v.extend_from_slice(payload),
    }
    v
}

/// Reads one frame; returns (opcode, unmasked payload).
pub fn ws_read_frame<R: Read>(r: &mut R) -> io::Result<(u8, Vec<u8>)> {
    let mut hdr = [0u8; 2];
    r.read_exact(&mut hdr)?;
    let opcode = hdr[0] & 0x0f;
    let masked = hdr[1] & 0x80 != 0;
    let len = match hdr[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut key = [0u8; 4];
    if masked {
        r.read_exact(&mut key)?;
    }
    let mut payload = read_exact_vec(r, len)?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Ok((opcode, payload))
}

// ---------------------------------------------------------------------------------------------
// Raw socket client

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub version: String,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub raw_head: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub struct RawClient {
    reader: BufReader<TcpStream>,
}

impl RawClient {
    /// The connection is still an HTTP/1.1 keep-alive one: a next GET (to an echo backend)
    /// is forwarded and answered on it.
    #[track_caller]
    pub fn assert_serves_next_request(&mut self) {
        self.send(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(
            self.read_response().unwrap().header("x-echo-target"),
            Some("/next")
        );
    }

    pub fn connect(addr: SocketAddr) -> RawClient {
        RawClient::connect_stream(TcpStream::connect(addr).unwrap())
    }

    pub fn connect_stream(stream: TcpStream) -> RawClient {
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        RawClient {
            reader: BufReader::with_capacity(64 * 1024, stream),
        }
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    pub fn set_read_timeout(&self, d: Duration) {
        self.stream().set_read_timeout(Some(d)).unwrap();
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).unwrap();
    }

    /// Like `send`, but reports failure (the proxy may already have closed).
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    /// Reads one response; the body is framed by status, Transfer-Encoding, Content-Length
    /// or connection close.
    pub fn read_response(&mut self) -> io::Result<Response> {
        self.read_response_inner(false)
    }

    /// Reads the response to a HEAD request (never a body).
    pub fn read_head_response(&mut self) -> io::Result<Response> {
        self.read_response_inner(true)
    }

    fn read_response_inner(&mut self, to_head: bool) -> io::Result<Response> {
        let Some((start, headers, raw)) = read_head(&mut self.reader)? else {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before a response",
            ));
        };
        let mut parts = start.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_string();
        let status: u16 = parts
            .next()
            .unwrap_or_default()
            .parse()
            .map_err(|_| invalid(format!("bad status line {start:?}")))?;
        let bodiless = to_head || status < 200 || status == 204 || status == 304;
        let body = if bodiless {
            Vec::new()
        } else if is_chunked(&headers) {
            read_chunked(&mut self.reader)?
        } else if let Some(len) = content_length(&headers)? {
            read_exact_vec(&mut self.reader, len)?
        } else {
            let mut v = Vec::new();
            self.reader.read_to_end(&mut v)?;
            v
        };
        let raw_head = String::from_utf8_lossy(&raw).into_owned();
        Ok(Response {
            status,
            version,
            headers,
            body,
            raw_head,
        })
    }

    /// Reads a final (non-1xx) response, skipping interim ones.
    pub fn read_final_response(&mut self) -> io::Result<Response> {
        loop {
            let r = self.read_response()?;
            if r.status >= 200 {
                return Ok(r);
            }
        }
    }

    /// Everything until EOF (or a reset/timeout, which is returned as an error).
    pub fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        self.reader.read_to_end(&mut v)?;
        Ok(v)
    }

    /// Waits up to `timeout` for the proxy to close the connection (EOF or reset). Any
    /// bytes received meanwhile are returned in the error.
    pub fn wait_closed(&mut self, timeout: Duration) -> Result<(), String> {
        self.set_read_timeout(timeout);
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => {
                    return if got.is_empty() {
                        Ok(())
                    } else {
                        Err(format!(
                            "unexpected bytes before close: {:?}",
                            String::from_utf8_lossy(&got)
                        ))
                    };
                }
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(()),
                Err(e) => return Err(format!("not closed within {timeout:?}: {e}")),
            }
        }
    }

    /// Direct access for protocol tests (WebSocket frames after a 101).
    pub fn reader(&mut self) -> &mut BufReader<TcpStream> {
        &mut self.reader
    }
}

/// One `GET target` on a fresh connection with `Connection: close`.
pub fn get(addr: SocketAddr, target: &str) -> Response {
    let mut c = RawClient::connect(addr);
    c.send(
        format!("GET {target} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    c.read_response().unwrap()
}

// ---------------------------------------------------------------------------------------------
// curl

pub struct Curl {
    pub exit_code: i32,
    pub status: u16,
    /// Every header block curl saw (interim responses included), as dumped by `-D`.
    pub header_dump: String,
    pub body: Vec<u8>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Curl {
    /// A header of the final response.
    pub fn header(&self, name: &str) -> Option<String> {
        let last = self
            .header_dump
            .split("\r\n\r\n")
            .filter(|b| !b.trim().is_empty())
            .last()?;
        last.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Runs `curl -sS --http1.1 ARGS` with a hard time limit; body and headers are captured.
pub fn curl(args: &[&str]) -> Curl {
    let dir = TempDir::new();
    let body_path = dir.path().join("body");
    let head_path = dir.path().join("head");
    let started = Instant::now();
    let out = Command::new("curl")
        .args(["-sS", "--http1.1", "--max-time", "30", "-w", "%{http_code}"])
        .arg("-o")
        .arg(&body_path)
        .arg("-D")
        .arg(&head_path)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    Curl {
        exit_code: out.status.code().unwrap_or(-1),
        status: String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        header_dump: std::fs::read_to_string(&head_path).unwrap_or_default(),
        body: std::fs::read(&body_path).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed,
    }
}

// ---------------------------------------------------------------------------------------------
// Data

/// Deterministic non-repeating-looking bytes, so reordering or loss shows up in comparisons.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ len as u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Asserts equality of two bodies without dumping megabytes on failure.
#[track_caller]
pub fn assert_same_body(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let first_diff = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "{what}: body differs: got {} bytes, want {} bytes, first difference at {first_diff}",
        got.len(),
        want.len()
    );
}

/// For hand-written backends: reads one request head, up to its empty line, byte by byte
/// (so nothing after the head is consumed).
pub fn read_head_bytes(conn: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    head
}

/// A port on which nothing listens (bound then released).
pub fn closed_port_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

// ---------------------------------------------------------------------------------------------
// The admin listener

/// The admin address from the proxy's `ringproxy: admin on ADDR` line.
pub fn admin_addr(proxy: &Proxy) -> SocketAddr {
    proxy
        .stderr_lines()
        .iter()
        .find_map(|l| l.strip_prefix("ringproxy: admin on "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no admin line: {:?}", proxy.stderr_lines()))
}

/// Sends `request` to the admin listener; returns the status and the body.
pub fn admin_raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

pub fn admin_get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\n{auth}\r\n");
    admin_raw(addr, request.as_bytes())
}
