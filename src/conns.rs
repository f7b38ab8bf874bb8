//! A worker's table of open client connections: which are idle (closable when the worker
//! drains), and the deadlines of their pending socket operations (the proxy's timers).
//!
//! Timers are coarse on purpose. Instead of arming a timer per read and write, an operation
//! writes its deadline into its connection's slot; one sweep per worker every `TIMER_TICK`
//! finds the expired ones and shuts their socket down, which ends the pending operation.
//! A side benefit: an operation is never cancelled by dropping it, so its buffer always comes
//! back.
//!
//! The sweep also keeps the worker's clock (`ConnTable::now`): the time it last ran. The
//! request path reads that instead of the system clock, many times per request, for deadlines
//! and ages that need no finer grain than the sweep's. A deadline is therefore set one tick
//! further out than asked (the clock may be a tick old), and fires between `within` and
//! `within + 2 × TIMER_TICK`.
//!
//! The same sweep looks after requests waiting for a response head (`Suspect`): the worker
//! asks whether each should be cut because its backend stalled (`Upstreams::should_cut`),
//! and a cut one ends as if its deadline had passed, marked so the exchange can tell.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::clock::coarse_now;
use crate::generation::ListenerId;

/// How often expired deadlines are looked for.
pub const TIMER_TICK: Duration = Duration::from_millis(50);

/// Independent timed operations one connection may have pending at once: a normal exchange
/// uses one; a tunnel copies both ways at the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Main,
    Second,
}

/// What to shut when a deadline passes: reads only (so an error response can still be
/// written), or both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    Read,
    Both,
}

pub struct ConnTable {
    slots: RefCell<Vec<Option<ConnEntry>>>,
    free: RefCell<Vec<usize>>,
    active: Cell<usize>,
    /// Connections waiting for a next request at the last sweep (counted by it, so that
    /// marking a connection idle costs no more than the flag).
    idle: Cell<usize>,
    /// When the last sweep ran.
    clock: Cell<Instant>,
}

impl Default for ConnTable {
    fn default() -> Self {
        Self {
            slots: RefCell::default(),
            free: RefCell::default(),
            active: Cell::default(),
            idle: Cell::default(),
            clock: Cell::new(coarse_now()),
        }
    }
}

struct ConnEntry {
    fd: RawFd,
    listener: ListenerId,
    idle: bool,
    /// A drain sent our FIN while the connection was idle (see `ConnTable::close_idle`).
    half_closed: bool,
    watches: [Option<Watch>; 2],
    suspect: Option<Suspect>,
    /// When the request being served had its head complete (precise clock), while metrics
    /// or the access log time it: kept here rather than in the connection's task.
    request_started: Option<Instant>,
}

/// A request waiting on the main lane for a backend's response head.
#[derive(Debug, Clone, Copy)]
pub struct Suspect {
    /// The backend's index (`upstream::BackendId`).
    pub backend: usize,
    /// When the request was sent.
    pub since: Instant,
    /// Whether the request may be sent again elsewhere (idempotent, and held whole).
    pub movable: bool,
    cut: bool,
}

#[derive(Clone, Copy)]
struct Watch {
    fd: RawFd,
    deadline: Instant,
    cut: Cut,
    fired: bool,
}

impl ConnTable {
    /// Registers a client connection whose socket is `fd`, accepted on listener `listener`.
    pub fn register(self: &Rc<Self>, fd: RawFd, listener: ListenerId) -> ConnSlot {
        let entry = Some(ConnEntry {
            fd,
            listener,
            idle: false,
            half_closed: false,
            watches: [None, None],
            suspect: None,
            request_started: None,
        });
        let mut slots = self.slots.borrow_mut();
        let index = match self.free.borrow_mut().pop() {
            Some(i) => {
                slots[i] = entry;
                i
            }
            None => {
                slots.push(entry);
                slots.len() - 1
            }
        };
        self.active.set(self.active.get() + 1);
        ConnSlot {
            table: self.clone(),
            // A worker's connections are far fewer than 2^32 (each takes a file descriptor).
            index: index as u32,
            listener,
        }
    }

    pub fn active(&self) -> usize {
        self.active.get()
    }

    /// The worker's clock: when the last sweep ran, at most about one `TIMER_TICK` ago while
    /// the worker keeps up. For deadlines, ages and cooldowns; not for measuring latency.
    pub fn now(&self) -> Instant {
        self.clock.get()
    }

    /// `within` from now by the worker's clock, safe against the clock being a tick old.
    fn deadline_in(&self, within: Duration) -> Instant {
        self.clock.get() + within + TIMER_TICK
    }

    /// Half-closes every idle connection (our FIN: the client's next read sees EOF) and
    /// leaves the read it waits in at most `linger` more, for the client to close too. The read
    /// is not ended at once (shutting the socket for reading would): a request the client sent
    /// before our FIN reached it lands there and is discarded, and no reset is sent for it,
    /// which a close with unread data, or data arriving after a close, would do.
    pub fn close_idle(&self, linger: Duration) {
        self.close_idle_where(linger, |_| true);
    }

    /// `close_idle` for the connections of the listeners `which` names.
    pub fn close_idle_where(&self, linger: Duration, which: impl Fn(ListenerId) -> bool) {
        let deadline = self.deadline_in(linger);
        let mut slots = self.slots.borrow_mut();
        for entry in slots.iter_mut().flatten() {
            if !entry.idle || entry.half_closed || !which(entry.listener) {
                continue;
            }
            entry.half_closed = true;
            shutdown(entry.fd, libc::SHUT_WR);
            let idle_read = entry.watches[Lane::Main as usize].as_mut();
            if let Some(watch) = idle_read.filter(|w| !w.fired) {
                watch.deadline = watch.deadline.min(deadline);
            }
        }
    }

    /// Shuts every connection's socket, and every socket its pending operations wait on, both
    /// ways: each of them ends at once. For a drain's deadline.
    pub fn abort_all(&self) {
        for entry in self.slots.borrow().iter().flatten() {
            shutdown(entry.fd, libc::SHUT_RDWR);
            for watch in entry.watches.iter().flatten() {
                shutdown(watch.fd, libc::SHUT_RDWR);
            }
        }
    }

    /// Shuts the sockets of operations whose deadline has passed, and of waits for a response
    /// head that `should_cut` says to give up.
    pub fn sweep(&self, now: Instant, mut should_cut: impl FnMut(&Suspect) -> bool) {
        self.clock.set(now);
        let mut slots = self.slots.borrow_mut();
        let mut idle = 0;
        for entry in slots.iter_mut().flatten() {
            idle += usize::from(entry.idle);
            if let Some(suspect) = entry.suspect.as_mut().filter(|s| !s.cut)
                && should_cut(suspect)
            {
                suspect.cut = true;
                if let Some(watch) = &mut entry.watches[Lane::Main as usize] {
                    watch.deadline = now;
                }
            }
            for watch in entry.watches.iter_mut().flatten() {
                if !watch.fired && watch.deadline <= now {
                    watch.fired = true;
                    shutdown(watch.fd, watch.cut.how());
                }
            }
        }
        self.idle.set(idle);
    }

    /// Connections waiting for a next request, as of the last sweep.
    pub fn idle(&self) -> usize {
        self.idle.get()
    }

    fn with_entry(&self, index: usize, f: impl FnOnce(&mut ConnEntry)) {
        if let Some(Some(entry)) = self.slots.borrow_mut().get_mut(index) {
            f(entry);
        }
    }

    fn release(&self, index: usize) {
        if let Some(slot) = self.slots.borrow_mut().get_mut(index) {
            *slot = None;
            self.free.borrow_mut().push(index);
            self.active.set(self.active.get() - 1);
        }
    }
}

impl Cut {
    fn how(self) -> libc::c_int {
        match self {
            Cut::Read => libc::SHUT_RD,
            Cut::Both => libc::SHUT_RDWR,
        }
    }
}

fn shutdown(fd: RawFd, how: libc::c_int) {
    // SAFETY: every fd in the table belongs to a socket that is open while it is listed:
    // a connection leaves the table before its socket closes, and a watch is removed before
    // the operation on its socket returns. shutdown(2) changes socket state, never memory.
    unsafe { libc::shutdown(fd, how) };
}

/// A connection's entry in the table; dropping it removes the entry. Drop it before the
/// connection's socket, so a reused fd number is never shut by mistake.
pub struct ConnSlot {
    table: Rc<ConnTable>,
    /// u32s: with the listener's number the slot stays 16 bytes, and it lives in every
    /// connection's task (see `proxy::serve_connection`).
    index: u32,
    listener: ListenerId,
}

impl ConnSlot {
    fn at(&self) -> usize {
        self.index as usize
    }

    /// The slot's number among the worker's connections (another connection's once this one
    /// closes): for per-connection state kept beside the table, as the access log's records.
    #[inline]
    pub fn index(&self) -> usize {
        self.at()
    }

    /// The listener the connection came in on.
    #[inline]
    pub fn listener(&self) -> ListenerId {
        self.listener
    }

    /// Marks the connection as waiting for a next request (closable by a drain) or busy.
    pub fn set_idle(&self, idle: bool) {
        self.table.with_entry(self.at(), |e| e.idle = idle);
    }

    /// The current request's head is complete at `at`.
    #[inline]
    pub fn start_request(&self, at: Instant) {
        self.table
            .with_entry(self.at(), |e| e.request_started = Some(at));
    }

    /// When the request that ends now started, if `start_request` said.
    #[inline]
    pub fn take_request_start(&self) -> Option<Instant> {
        let mut started = None;
        self.table
            .with_entry(self.at(), |e| started = e.request_started.take());
        started
    }

    /// Marks the connection's main-lane operations, until `clear_suspect`, as a wait for a
    /// response head from `backend`, sent at `since` (see `ConnTable::sweep`).
    pub fn suspect(&self, backend: usize, since: Instant, movable: bool) {
        let suspect = Suspect {
            backend,
            since,
            movable,
            cut: false,
        };
        self.table
            .with_entry(self.at(), |e| e.suspect = Some(suspect));
    }

    /// Ends the wait `suspect` marked; whether the sweep cut it.
    pub fn clear_suspect(&self) -> bool {
        let mut cut = false;
        self.table.with_entry(self.at(), |e| {
            cut = e.suspect.take().is_some_and(|s| s.cut);
        });
        cut
    }

    /// Marks the connection busy after a wait; true when a drain half-closed it meanwhile
    /// (`ConnTable::close_idle`): what the client sent can no longer be answered, so it must
    /// not reach a backend.
    pub fn set_busy(&self) -> bool {
        let mut half_closed = false;
        self.table.with_entry(self.at(), |e| {
            e.idle = false;
            half_closed = e.half_closed;
        });
        half_closed
    }

    /// Moves the deadline of the operation pending on `lane` (if any, and not yet expired) to
    /// `within` from now: activity elsewhere on the connection keeps it alive.
    pub fn extend(&self, lane: Lane, within: Duration) {
        let deadline = self.table.deadline_in(within);
        self.table.with_entry(self.at(), |e| {
            if let Some(watch) = e.watches[lane as usize].as_mut().filter(|w| !w.fired) {
                watch.deadline = deadline;
            }
        });
    }

    /// A deadline `within` from now for an operation on socket `fd`.
    pub fn deadline(&self, lane: Lane, fd: RawFd, within: Duration) -> Deadline<'_> {
        Deadline {
            slot: self,
            lane,
            fd,
            within,
        }
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.table.release(self.at());
    }
}

/// A bound on one socket operation (see the module docs).
#[derive(Clone, Copy)]
pub struct Deadline<'a> {
    slot: &'a ConnSlot,
    lane: Lane,
    fd: RawFd,
    within: Duration,
}

impl<'a> Deadline<'a> {
    /// The worker's clock (`ConnTable::now`).
    pub fn now(&self) -> Instant {
        self.slot.table.now()
    }

    /// The same bound, or `within` from now when that comes sooner.
    pub fn at_most(self, within: Duration) -> Self {
        Self {
            within: self.within.min(within),
            ..self
        }
    }

    /// Runs `op`; if it is still pending when the deadline passes, the socket is shut (`cut`)
    /// so that it ends. The future gives the operation's output and whether the deadline
    /// cut it.
    pub fn run<F: Future>(self, cut: Cut, op: F) -> Watched<'a, F> {
        Watched {
            op,
            deadline: self,
            cut,
            armed: false,
        }
    }

    fn arm(&self, cut: Cut) {
        let watch = Watch {
            fd: self.fd,
            deadline: self.slot.table.deadline_in(self.within),
            cut,
            fired: false,
        };
        let lane = self.lane as usize;
        self.slot
            .table
            .with_entry(self.slot.at(), |e| e.watches[lane] = Some(watch));
    }

    /// Ends the watch; whether it fired.
    fn disarm(&self) -> bool {
        let lane = self.lane as usize;
        let mut fired = false;
        self.slot.table.with_entry(self.slot.at(), |e| {
            fired = e.watches[lane].take().is_some_and(|w| w.fired);
        });
        fired
    }
}

/// The future of `Deadline::run`. Written out rather than an `async fn` taking `op` by
/// value, which keeps the operation twice (the argument, and the copy it awaits): that
/// doubled the state of every read and write in a connection's task (perf/RESULTS.md,
/// 2026-12-03).
pub struct Watched<'a, F> {
    op: F,
    deadline: Deadline<'a>,
    cut: Cut,
    armed: bool,
}

impl<F: Future> Future for Watched<'_, F> {
    type Output = (F::Output, bool);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `op` is pinned structurally and nothing else is: it is only ever reached
        // through `Pin::new_unchecked` below, never moved out (`Drop` touches only
        // `deadline`), and `Watched` is `Unpin` only when `F` is (the auto trait). The
        // other fields are plain data.
        let this = unsafe { self.get_unchecked_mut() };
        if !this.armed {
            this.deadline.arm(this.cut);
            this.armed = true;
        }
        // SAFETY: see above; `this.op` stays where it is until `Watched` is dropped.
        let op = unsafe { Pin::new_unchecked(&mut this.op) };
        let output = std::task::ready!(op.poll(cx));
        this.armed = false;
        Poll::Ready((output, this.deadline.disarm()))
    }
}

impl<F> Drop for Watched<'_, F> {
    /// An operation given up before it finished takes its watch with it: left behind, the
    /// watch would shut the socket when its deadline passed, whatever it was doing then.
    fn drop(&mut self) {
        if self.armed {
            self.deadline.disarm();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (client, listener.accept().unwrap().0)
    }

    #[test]
    fn sweep_shuts_only_expired_watched_sockets_for_reading() {
        let table = Rc::new(ConnTable::default());
        let (mut near, near_peer) = pair();
        let (mut far, _far_peer) = pair();
        let near_slot = table.register(near_peer.as_raw_fd(), ListenerId(0));
        let far_slot = table.register(far.as_raw_fd(), ListenerId(0));
        let now = Instant::now();
        let watch = |fd| Watch {
            fd,
            deadline: now,
            cut: Cut::Read,
            fired: false,
        };
        table.with_entry(near_slot.at(), |e| {
            e.watches[0] = Some(watch(near_peer.as_raw_fd()))
        });
        let later = Watch {
            deadline: now + Duration::from_secs(60),
            ..watch(far.as_raw_fd())
        };
        table.with_entry(far_slot.at(), |e| e.watches[0] = Some(later));
        table.sweep(now, |_| false);
        let mut buf = [0u8; 1];
        assert_eq!(
            (&near_peer).read(&mut buf).unwrap(),
            0,
            "expired socket reads EOF"
        );
        near.write_all(b"x").unwrap();
        far.set_nonblocking(true).unwrap();
        assert!(far.read(&mut buf).is_err(), "unexpired socket still waits");
    }

    #[test]
    fn a_suspect_the_sweep_cuts_ends_its_wait_marked_as_cut() {
        let table = Rc::new(ConnTable::default());
        let (_client, server) = pair();
        let fd = server.as_raw_fd();
        let slot = table.register(fd, ListenerId(0));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let since = table.now();
        slot.suspect(7, since, true);
        let mut wait = Box::pin(
            slot.deadline(Lane::Main, fd, Duration::from_secs(60))
                .run(Cut::Read, std::future::pending::<()>()),
        );
        assert!(wait.as_mut().poll(&mut cx).is_pending());

        let mut asked = Vec::new();
        table.sweep(since, |s| {
            asked.push((s.backend, s.movable));
            false
        });
        assert!(!slot.clear_suspect(), "not cut while the sweep says wait");
        slot.suspect(7, since, true);
        table.sweep(since, |_| true);
        table.sweep(since, |_| panic!("a cut suspect is not asked again"));
        assert_eq!(asked, [(7, true)]);
        let mut buf = [0u8; 1];
        assert_eq!((&server).read(&mut buf).unwrap(), 0, "its socket was shut");
        drop(wait);
        assert!(slot.clear_suspect(), "the exchange learns it was cut");
        assert!(!slot.clear_suspect(), "once");
    }

    #[test]
    fn the_worker_clock_is_the_last_sweep_and_deadlines_allow_for_its_age() {
        let table = Rc::new(ConnTable::default());
        let later = table.now() + Duration::from_secs(5);
        table.sweep(later, |_| false);
        assert_eq!(table.now(), later);
        assert_eq!(
            table.deadline_in(Duration::from_secs(1)),
            later + Duration::from_secs(1) + TIMER_TICK
        );
    }

    #[test]
    fn a_watch_ends_with_its_operation_finished_or_dropped() {
        let table = Rc::new(ConnTable::default());
        let (_client, server) = pair();
        let fd = server.as_raw_fd();
        let slot = table.register(fd, ListenerId(0));
        let watching = |lane: usize| {
            let mut armed = false;
            table.with_entry(slot.at(), |e| armed = e.watches[lane].is_some());
            armed
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let within = Duration::from_secs(60);

        let mut pending = Box::pin(
            slot.deadline(Lane::Main, fd, within)
                .run(Cut::Both, std::future::pending::<()>()),
        );
        assert!(pending.as_mut().poll(&mut cx).is_pending());
        assert!(
            watching(Lane::Main as usize),
            "armed while the operation waits"
        );
        drop(pending);
        assert!(
            !watching(Lane::Main as usize),
            "disarmed when the operation is given up"
        );

        let mut ready = Box::pin(
            slot.deadline(Lane::Second, fd, within)
                .run(Cut::Both, std::future::ready(7)),
        );
        assert_eq!(ready.as_mut().poll(&mut cx), Poll::Ready((7, false)));
        assert!(
            !watching(Lane::Second as usize),
            "disarmed when the operation finishes"
        );
    }

    /// A pending read's watch on `fd`, a minute from expiring.
    fn far_read_watch(fd: RawFd) -> Watch {
        Watch {
            fd,
            deadline: crate::clock::coarse_now() + Duration::from_secs(60),
            cut: Cut::Read,
            fired: false,
        }
    }

    #[test]
    fn a_drain_half_closes_only_idle_connections_and_shortens_their_wait() {
        let table = Rc::new(ConnTable::default());
        let (mut idle_client, idle_server) = pair();
        let (mut busy_client, busy_server) = pair();
        let idle = table.register(idle_server.as_raw_fd(), ListenerId(0));
        let busy = table.register(busy_server.as_raw_fd(), ListenerId(0));
        let far = far_read_watch(idle_server.as_raw_fd());
        table.with_entry(idle.at(), |e| e.watches[0] = Some(far));
        idle.set_idle(true);
        busy.set_idle(false);

        let linger = Duration::from_millis(500);
        table.close_idle(linger);
        let mut idle_deadline = None;
        table.with_entry(idle.at(), |e| {
            idle_deadline = e.watches[0].map(|w| w.deadline)
        });
        let latest = table.now() + linger + TIMER_TICK;
        assert!(
            idle_deadline.is_some_and(|d| d <= latest),
            "idle wait not shortened"
        );

        let mut buf = [0u8; 16];
        assert_eq!(
            idle_client.read(&mut buf).unwrap(),
            0,
            "the client sees our FIN"
        );
        // A request that crosses our FIN still arrives whole: no reset, read side open.
        idle_client.write_all(b"GET /").unwrap();
        assert_eq!((&idle_server).read(&mut buf).unwrap(), 5);
        assert!(
            idle.set_busy(),
            "the idle connection reports its half-close"
        );

        assert!(!busy.set_busy(), "a busy connection is left alone");
        busy_client.set_nonblocking(true).unwrap();
        assert!(
            busy_client.read(&mut buf).is_err(),
            "busy connection still open"
        );
    }

    #[test]
    fn abort_all_ends_connections_and_the_sockets_they_wait_on() {
        let table = Rc::new(ConnTable::default());
        let (mut client, server) = pair();
        let (mut backend, backend_side) = pair();
        let slot = table.register(server.as_raw_fd(), ListenerId(0));
        let watch = far_read_watch(backend_side.as_raw_fd());
        table.with_entry(slot.at(), |e| e.watches[1] = Some(watch));
        table.abort_all();
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).unwrap(), 0);
        assert_eq!(backend.read(&mut buf).unwrap(), 0);
        assert_eq!((&backend_side).read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn released_slots_are_reused() {
        let table = Rc::new(ConnTable::default());
        let (_client, server) = pair();
        let slot = table.register(server.as_raw_fd(), ListenerId(0));
        assert_eq!(table.active(), 1);
        let index = slot.at();
        drop(slot);
        assert_eq!(table.active(), 0);
        assert_eq!(
            table.register(server.as_raw_fd(), ListenerId(0)).at(),
            index
        );
    }
}
