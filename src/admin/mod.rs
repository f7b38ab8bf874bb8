//! The admin listener: `GET /metrics` (Prometheus text) and `GET /status` (JSON), on its own
//! thread with a small blocking server, so that its work never runs on a worker.
//!
//! Off unless configured (`[admin]`, `--admin`). One connection at a time, each answered and
//! closed: a scrape is a few requests per second, and a client that sends nothing (or
//! trickles) holds the thread at most `http::HEAD_TIMEOUT`. Clients outside `allow` get 403,
//! requests without the configured bearer token 401, other methods than GET and HEAD 405,
//! other paths 404; a malformed head 400, an oversized one 431.

mod http;
mod render;
mod status;

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::config::AdminConfig;
use crate::generation::{Current, SharedGeneration};
use crate::metrics::Metrics;
use crate::metrics::exposition::CONTENT_TYPE;
use crate::upstream::load::LoadBoard;
use http::{Answer, ReadFailure};
use status::RateWindow;

/// How long a scrape waits for the workers to publish their latency histograms (each does
/// within a timer sweep, 50 ms, unless it is overloaded: then the last publication serves).
const PUBLISH_WAIT: Duration = Duration::from_millis(250);
/// How long the admin thread waits in accept before it looks at the shutdown flag again:
/// after a binary upgrade the listener is shared with the new process, and shutting it to
/// wake the accept would end it there too.
const ACCEPT_TIMEOUT: Duration = Duration::from_millis(200);

/// What the admin thread reads: shared handles, never anything a worker locks.
pub struct AdminState {
    /// The config generation serving now (swapped by reloads).
    pub current: Arc<Current>,
    pub admin: AdminConfig,
    pub metrics: Arc<Metrics>,
    pub load: Arc<LoadBoard>,
    /// Each worker's cpu (`None`: not pinned).
    pub cpus: Vec<Option<usize>>,
    pub started: Instant,
}

impl AdminState {
    /// The config generation serving now.
    pub fn generation(&self) -> Arc<SharedGeneration> {
        self.current.get()
    }
}

/// Binds the admin listener (no `SO_REUSEPORT`: an address in use is an error).
pub fn bind(admin: &AdminConfig) -> Result<TcpListener, String> {
    TcpListener::bind(admin.address)
        .map_err(|e| format!("cannot listen for admin on {}: {e}", admin.address))
}

/// Serves on `listener` until `shutdown` is raised: seen at once if the listener is shut
/// down (which wakes the blocked accept), else within `ACCEPT_TIMEOUT`.
pub fn spawn(
    listener: TcpListener,
    state: AdminState,
    shutdown: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    // SO_RCVTIMEO bounds a blocking accept.
    socket2::SockRef::from(&listener).set_read_timeout(Some(ACCEPT_TIMEOUT))?;
    thread::Builder::new()
        .name("ringproxy-admin".into())
        .spawn(move || serve(&listener, &state, &shutdown))
}

fn serve(listener: &TcpListener, state: &AdminState, shutdown: &AtomicBool) {
    let mut window = RateWindow::new(state.metrics.workers());
    loop {
        match listener.accept() {
            Ok((stream, peer)) => answer(stream, peer.ip(), state, &mut window),
            Err(_) if shutdown.load(Ordering::Acquire) => return,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            // Out of descriptors, say: the client waits in the queue; do not spin.
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn answer(
    mut stream: TcpStream,
    peer: std::net::IpAddr,
    state: &AdminState,
    window: &mut RateWindow,
) {
    let admin = &state.admin;
    let request = match http::read_request(&mut stream) {
        Ok(request) => request,
        Err(ReadFailure::Gone) => return,
        Err(ReadFailure::Reject(status)) => {
            return Answer::text(status, "invalid request").write(&mut stream, false);
        }
    };
    let head_only = request.method == "HEAD";
    let answer = if !http::allowed(admin, peer) {
        Answer::text(403, "forbidden")
    } else if !http::authorized(admin, request.authorization.as_deref()) {
        Answer {
            headers: "WWW-Authenticate: Bearer realm=\"ringproxy\"\r\n",
            ..Answer::text(401, "a bearer token is required")
        }
    } else if !matches!(request.path.as_str(), "/metrics" | "/status") {
        Answer::text(404, "not found: try /metrics or /status")
    } else if !matches!(request.method.as_str(), "GET" | "HEAD") {
        Answer {
            headers: "Allow: GET, HEAD\r\n",
            ..Answer::text(405, "method not allowed")
        }
    } else {
        let latencies = state.metrics.latencies(PUBLISH_WAIT);
        if request.path == "/metrics" {
            Answer {
                status: 200,
                content_type: CONTENT_TYPE,
                body: render::metrics_text(state, &latencies),
                headers: "",
            }
        } else {
            let body = status::status_json(state, &latencies, window);
            Answer {
                status: 200,
                content_type: "application/json",
                body: format!("{body:#}\n"),
                headers: "",
            }
        }
    };
    answer.write(&mut stream, head_only);
}
