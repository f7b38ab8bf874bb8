//! `ringproxy top`: the live per-core view in a terminal. Asks the admin listener for
//! `/status` every second and draws each worker's load (requests/s and open connections as
//! bars, error rates, latency) and each backend's health, in-flight requests per worker and
//! host-wide, and latency estimate. Plain ANSI in raw mode: no terminal library, so that it
//! runs over SSH in any terminal of 80x24 or more; a shorter one scrolls.
//!
//! Fetching runs on its own thread and keys on another, both feeding one channel, so a slow
//! admin listener never delays `q`.

mod fetch;
mod frame;
mod snapshot;
mod terminal;

use std::io::{IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::thread;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use fetch::{FetchError, fetch_status};
use frame::Frame;
use snapshot::Snapshot;
use terminal::{Key, Terminal};

/// How often the view asks for `/status` (the admin listener measures rates over at least
/// one second).
const REFRESH: Duration = Duration::from_secs(1);
/// How often the loop looks at the terminal size and the stop signals between events.
const TICK: Duration = Duration::from_millis(100);
/// Width of `--once` when stdout is not a terminal.
const PLAIN_WIDTH: usize = 80;

pub struct TopOptions {
    pub admin: SocketAddr,
    pub token: Option<String>,
    /// Print one frame as plain text and exit.
    pub once: bool,
}

/// Why `top` stopped without success; the message is one line.
#[derive(Debug)]
pub enum Failure {
    /// The command line or the environment does not allow the view (exit status 2).
    Usage(String),
    /// The admin listener could not be read, or the terminal failed (exit status 1).
    Runtime(String),
}

pub fn run(options: &TopOptions) -> Result<(), Failure> {
    let on_terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if !options.once && !on_terminal {
        return Err(Failure::Usage(
            "the live view needs a terminal on stdin and stdout; --once prints one frame as plain text".into(),
        ));
    }
    let first = fetch_status(options.admin, options.token.as_deref())
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    if options.once {
        return print_once(&first, options.admin);
    }
    live(options, first)
}

fn print_once(snapshot: &Snapshot, admin: SocketAddr) -> Result<(), Failure> {
    let width = if std::io::stdout().is_terminal() {
        terminal::size().0
    } else {
        PLAIN_WIDTH
    };
    let frame = Frame::new(snapshot, &admin.to_string(), width);
    let mut text = String::new();
    for line in frame.lines() {
        text.push_str(line);
        text.push('\n');
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::Runtime(format!("cannot write to stdout: {e}")))
}

enum Event {
    Keys(Vec<u8>),
    Status(Result<Snapshot, FetchError>),
    /// stdin closed: nobody can press `q` any more.
    InputClosed,
}

/// What the screen shows between two events.
struct Live {
    admin: String,
    snapshot: Snapshot,
    fetched: Instant,
    error: Option<String>,
    /// The first body line shown.
    scroll: usize,
    /// How many body lines the last screen showed: what a page scrolls.
    page: usize,
}

impl Live {
    fn screen(&mut self, (width, height): (usize, usize)) -> Vec<String> {
        let frame = Frame::new(&self.snapshot, &self.admin, width);
        let footer = match &self.error {
            None => "q quit  j/k, arrows, space/b scroll".to_string(),
            Some(error) => format!(
                "{error} (showing {}s old data)",
                self.fetched.elapsed().as_secs()
            ),
        };
        self.page = frame.body_rows(height).max(1);
        frame.screen(height, &mut self.scroll, &footer, width)
    }

    fn update(&mut self, fetched: Result<Snapshot, FetchError>) {
        match fetched {
            Ok(snapshot) => {
                self.snapshot = snapshot;
                self.fetched = Instant::now();
                self.error = None;
            }
            // Shown in the footer; the next fetch may succeed (a proxy restarting, say).
            Err(error) => self.error = Some(error.to_string()),
        }
    }

    /// Moves `scroll`; the next `screen` clamps it to the last page.
    fn scroll(&mut self, key: Key) {
        let (line, page) = (1, self.page);
        self.scroll = match key {
            Key::Up => self.scroll.saturating_sub(line),
            Key::Down => self.scroll.saturating_add(line),
            Key::PageUp => self.scroll.saturating_sub(page),
            Key::PageDown => self.scroll.saturating_add(page),
            Key::Top => 0,
            Key::Bottom => usize::MAX,
            Key::Quit => self.scroll,
        };
    }
}

fn live(options: &TopOptions, first: Snapshot) -> Result<(), Failure> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| Failure::Runtime(format!("cannot install signal handlers: {e}")))?;
    }
    let (events, received) = mpsc::sync_channel(16);
    spawn("ringproxy-top-keys", {
        let events = events.clone();
        move || read_keys(&events)
    })?;
    spawn("ringproxy-top-fetch", {
        let (admin, token) = (options.admin, options.token.clone());
        move || fetch_every_second(admin, token.as_deref(), &events)
    })?;
    let terminal = Terminal::enter()
        .map_err(|e| Failure::Runtime(format!("cannot put the terminal in raw mode: {e}")))?;
    let mut view = Live {
        admin: options.admin.to_string(),
        snapshot: first,
        fetched: Instant::now(),
        error: None,
        scroll: 0,
        page: 1,
    };
    let mut drawn_size = None;
    let mut changed = true;
    while !stop.load(Ordering::Acquire) {
        let size = terminal::size();
        if changed || drawn_size != Some(size) {
            terminal
                .draw(&view.screen(size))
                .map_err(|e| Failure::Runtime(format!("cannot draw: {e}")))?;
            drawn_size = Some(size);
        }
        changed = match received.recv_timeout(TICK) {
            Ok(Event::Keys(bytes)) => {
                let keys = terminal::keys(&bytes);
                if keys.contains(&Key::Quit) {
                    break;
                }
                keys.into_iter().for_each(|key| view.scroll(key));
                true
            }
            Ok(Event::Status(result)) => {
                view.update(result);
                true
            }
            Ok(Event::InputClosed) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => false,
        };
    }
    // Dropping `terminal` restores it.
    Ok(())
}

fn spawn(name: &str, work: impl FnOnce() + Send + 'static) -> Result<(), Failure> {
    thread::Builder::new()
        .name(name.into())
        .spawn(work)
        .map(drop)
        .map_err(|e| Failure::Runtime(format!("cannot start a thread: {e}")))
}

/// Forwards what the terminal sends until stdin closes or the view has ended.
fn read_keys(events: &SyncSender<Event>) {
    let mut stdin = std::io::stdin().lock();
    let mut buffer = [0u8; 64];
    loop {
        let event = match stdin.read(&mut buffer) {
            Ok(0) => Event::InputClosed,
            Ok(n) => Event::Keys(buffer[..n].to_vec()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => Event::InputClosed,
        };
        let closed = matches!(event, Event::InputClosed);
        if events.send(event).is_err() || closed {
            return;
        }
    }
}

/// Fetches `/status` once per `REFRESH` (the first is already shown) until the view ends.
fn fetch_every_second(admin: SocketAddr, token: Option<&str>, events: &SyncSender<Event>) {
    let mut next = Instant::now() + REFRESH;
    loop {
        thread::sleep(next.saturating_duration_since(Instant::now()));
        next = Instant::now().max(next) + REFRESH;
        if events
            .send(Event::Status(fetch_status(admin, token)))
            .is_err()
        {
            return;
        }
    }
}
