//! The per-connection request loop, top to bottom: read a request head, pick a backend,
//! forward the request and its body, relay the response and its body; repeat while the
//! client keeps the connection alive.
//!
//! Parsing and head rewriting are pure (`crate::http`); this module owns the I/O, the
//! timeouts and the decisions about which connection survives an exchange.

pub mod buffer;
mod exchange;
mod facts;
mod io;
pub mod request_id;
mod tunnel;

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};

use crate::config::{HeaderEdits, RedirectAction, RespondAction, RouteAction};
use crate::conns::{ConnSlot, Deadline, Lane};
use crate::generation::ListenerId;
use crate::http::body::BodyProgress;
use crate::http::request_id::{GENERATED_ID_LEN, RequestIdLine};
use crate::http::{
    ForwardContext, LocalAnswer, ParseError, RequestHead, RouteForward, Version, header_storage,
    parse_request, write_error_response, write_fixed_response, write_not_found_response,
    write_redirect_response, write_request_head, write_routed_request_head,
};
use crate::metrics::Timeout;
use crate::route::{RouteRequest, RouteTable};
use crate::upstream::balance::key_hash;
use crate::worker::{DrainPhase, Generation, ListenerRouting, WorkerCtx};
pub(crate) use buffer::RECV_BUFFER;
use buffer::{CLIENT_RECV_BUFFER, ReadError, RecvBuf};
use facts::ClientBytes;
use io::RateFloor;
/// How much of a request body (after what came with its head) is read before a backend is
/// chosen (see `read_body_start`): a body with at most this much still to come is read
/// whole.
const GATHER_LIMIT: usize = 32 * 1024;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// After an error response, how long (and how much) we keep reading what the client still
/// sends, so that closing does not reset the connection before it reads our answer.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;
/// After closing at a request boundary (our FIN), how long we still read and discard: what can
/// come then is a request the client sent before our FIN reached it, so within a round trip;
/// closing with it unread, or before it arrives, would answer it with a reset.
pub(crate) const HALF_CLOSE_LINGER: Duration = Duration::from_millis(500);

/// `Session::route` while the current request is answered by the proxy itself.
const ANSWERED_HERE: u16 = u16::MAX;

/// What happens to the client connection after an exchange.
pub(crate) enum Next {
    KeepAlive,
    Close,
    /// Close after reading what the client still sends (it may not have finished its request).
    Linger,
    /// Close at a request boundary although the client may have sent another request: FIN
    /// first, then discard briefly what still comes (`HALF_CLOSE_LINGER`).
    HalfClose,
    /// The backend switched protocols: relay bytes both ways until either side closes.
    Tunnel(crate::upstream::BackendStream),
}

/// The request facts the rest of an exchange needs once the head's borrow of the buffer ends.
pub(crate) struct RequestInfo {
    pub version: Version,
    pub keep_alive: bool,
    pub is_head: bool,
    pub idempotent: bool,
    pub expect_continue: bool,
    pub upgrade: bool,
    /// The request's hash for `balance = "hash"` groups (0 otherwise).
    pub key_hash: u64,
    /// The rest of the body still to come from the client after what `out` already holds.
    pub body: BodyProgress,
    /// `out` holds the whole request (head and body), so it can be sent again.
    pub sent_whole: bool,
}

/// One client connection's reusable state.
pub(crate) struct Session {
    ctx: Rc<WorkerCtx>,
    /// The config generation the current request is served with: the worker's current one
    /// when the request started (see `move_to_current`).
    generation: Rc<Generation>,
    /// The client's address (its port is of no use to a backend).
    peer: IpAddr,
    /// The client's IP as text, for X-Forwarded-For: formatted once per connection.
    peer_addr: Box<str>,
    /// The current request's upstream group (u32: a config file cannot name 2^32 groups).
    group: u32,
    /// The route of the listener's table (the listener is the slot's) that took the current
    /// request; `ANSWERED_HERE`: none that proxies. u16 (`ListenerRouting::new` refuses
    /// larger tables), packed with `requests`, `group`, `client_fd` and `body_credit_ms`:
    /// the task stays in mimalloc's 1,792-byte size class.
    route: u16,
    slot: ConnSlot,
    client_fd: RawFd,
    /// Bytes from the client: request heads, bodies, pipelined requests. Small while the
    /// connection waits for a request; a large head or burst makes it grow for a while.
    recv: RecvBuf,
    /// Bytes from the current backend; storage only during an exchange.
    upstream_recv: RecvBuf,
    /// Heads we write, with the first body bytes appended so both go out in one write;
    /// storage only while a request is served.
    out: Vec<u8>,
    /// The rate floor's credit (`RateFloor`) left once `read_body_start` has read the start
    /// of the current request's body, in whole milliseconds: the rest of the body streams on
    /// with it.
    body_credit_ms: u32,
    /// Requests read so far (saturating: only whether one was served matters).
    requests: u16,
    /// The listener's position in `gen`'s config (`gen.listeners`, `gen.schemes`).
    listener: u16,
}

/// Serves one accepted client connection until it closes.
///
/// Not an `async fn`: one would keep its arguments in the task beside the session built from
/// them (176 bytes more per connection). The task is most of what an idle connection costs
/// (with its small receive buffer), so it is built here and the future holds it once.
/// `listener` is the listener's position in `generation`'s config.
pub fn serve_connection<S>(
    ctx: Rc<WorkerCtx>,
    generation: Rc<Generation>,
    client: S,
    client_fd: RawFd,
    peer: SocketAddr,
    listener: usize,
    slot: ConnSlot,
) -> impl Future<Output = ()>
where
    S: AsyncReadRent + AsyncWriteRent + Split,
{
    let mut session = Session {
        group: first_group(&generation, listener),
        ctx,
        generation,
        peer: peer.ip(),
        peer_addr: peer.ip().to_string().into_boxed_str(),
        route: 0,
        slot,
        client_fd,
        recv: RecvBuf::with_capacity(CLIENT_RECV_BUFFER),
        upstream_recv: RecvBuf::unallocated(),
        out: Vec::new(),
        body_credit_ms: 0,
        requests: 0,
        // `Generation::new` refuses more than u16::MAX listeners.
        listener: listener as u16,
    };
    let mut client = client;
    async move {
        let next = loop {
            let next = session.serve_request(&mut client).await;
            session.finish_request();
            match next {
                Next::KeepAlive => session.release_buffers(),
                next => break next,
            }
        };
        match next {
            Next::KeepAlive | Next::Close => session.close(client),
            // The paths a keep-alive request does not take are boxed (also connect, body
            // streaming, the retry and the error reply in `exchange`): inline, their state
            // made every connection's task 3,968 bytes and 128-byte aligned (the connect
            // timeout's timer entry) instead of 2,296 and 8, with six times the cache misses
            // per request at 256 connections (perf/RESULTS.md, 2026-12-03). Matching after
            // the loop keeps `Next` out of the task's state too: the task is 1,792 bytes, the
            // top of mimalloc's 1,792-byte size class (2,072 otherwise, in the 2,560 one).
            next => Box::pin(session.finish(client, next)).await,
        }
    }
}

/// A plain listener's group from the start: a request refused before it is routed (a parse
/// error) is counted under it, as before routing existed.
fn first_group(generation: &Generation, listener: usize) -> u32 {
    match generation.listeners.get(listener) {
        Some(ListenerRouting::Upstream { group }) => *group,
        Some(ListenerRouting::Routes { .. }) | None => ListenerRouting::NOT_PROXIED,
    }
}

impl Session {
    /// Serves the next request with the worker's current generation, after a reload: unless
    /// the reload removed the connection's listener, which then closes after the request
    /// (`listener_removed`), served by the generation it has.
    #[cold]
    fn move_to_current(&mut self) {
        let current = self.ctx.generation();
        let Some(listener) = current.position(self.slot.listener()) else {
            return;
        };
        self.listener = listener as u16;
        self.group = first_group(&current, listener);
        self.generation = current;
    }

    /// Whether a reload removed the listener the connection came in on: it closes at its next
    /// request boundary, as in a drain.
    fn listener_removed(&self) -> bool {
        listener_removed(&self.ctx, &self.generation, self.slot.listener())
    }

    /// Gives what the request borrowed back to the worker's pools: between requests a
    /// connection holds only its small receive buffer (and what a pipelined burst left in it).
    #[inline(always)]
    fn release_buffers(&mut self) {
        let buffers = &self.ctx.buffers;
        buffers
            .exchange
            .reclaim(&mut self.out, &mut self.upstream_recv);
        self.recv.shrink_if_empty(CLIENT_RECV_BUFFER, &buffers.recv);
    }

    /// Ends the connection after a last request that needs more than closing.
    async fn finish<S>(mut self, mut client: S, next: Next)
    where
        S: AsyncReadRent + AsyncWriteRent + Split,
    {
        match next {
            Next::KeepAlive | Next::Close => {}
            Next::Linger => self.linger(&mut client, LINGER_TIME).await,
            Next::HalfClose => self.linger(&mut client, HALF_CLOSE_LINGER).await,
            Next::Tunnel(backend) => return self.tunnel(client, backend).await,
        }
        self.close(client);
    }

    fn close<S>(mut self, client: S) {
        self.release_buffers();
        // Unregister before the socket closes, so its fd number is never shut down once
        // reused.
        drop(self);
        drop(client);
    }

    async fn serve_request<S: AsyncReadRent + AsyncWriteRent>(&mut self, client: &mut S) -> Next {
        let mut request = match self.read_request(client).await {
            Ok(request) => request,
            Err(next) => return next,
        };
        self.requests = self.requests.saturating_add(1);
        if !request.body.is_done()
            && let Err(next) = self.read_body_start(client, &mut request).await
        {
            return next;
        }
        self.forward(client, request).await
    }

    /// Reads the start of the request body into `out`, before a backend is chosen: a body
    /// with at most `GATHER_LIMIT` still to come whole (the request then leaves in one write,
    /// and can be sent again if the first backend fails), a larger one that far. A client
    /// holds a backend connection only once it has shown that it sends; one too slow for the
    /// rate floor or `body_idle` gets 408 (nginx reads whole bodies before connecting).
    /// A client waiting for `100 Continue` gets it here, as nginx sends it.
    async fn read_body_start<S: AsyncReadRent + AsyncWriteRent>(
        &mut self,
        client: &mut S,
        request: &mut RequestInfo,
    ) -> Result<(), Next> {
        let timeouts = self.generation.config.timeouts;
        let idle = timeouts.body_idle;
        let mut floor = self.body_floor(timeouts.body_rate_grace);
        if request.expect_continue {
            let deadline = self.client_deadline(idle);
            let (written, _) = io::write_all_within(client, CONTINUE, deadline).await;
            if written.is_err() {
                return Err(Next::Close);
            }
        }
        let source = io::Timed {
            stream: client,
            deadline: self.slot.deadline(Lane::Main, self.client_fd, idle),
            floor: floor.as_mut(),
        };
        // The body passes through `recv` on its way to `out`: a larger one gets room to come
        // in few reads.
        let pool = &self.ctx.buffers.recv;
        let larger = request
            .body
            .remaining()
            .is_none_or(|n| n > self.recv.capacity() as u64);
        let own_storage = larger.then(|| self.recv.borrow_storage(pool));
        let gathered = io::gather_body(
            source,
            &mut self.recv,
            &mut request.body,
            false,
            &mut self.out,
            GATHER_LIMIT,
        )
        .await;
        if let Some(own) = own_storage {
            self.recv.return_storage(own, pool);
        }
        match gathered {
            Ok(taken) => self.received_from_client(taken as u64),
            Err(io::BodyError::SourceTimeout) => {
                self.ctx.metrics.timeout(Timeout::BodyIdle);
                return Err(self.reject(client, 408, false).await);
            }
            Err(io::BodyError::BadChunk) => return Err(self.reject(client, 400, true).await),
            Err(_) => return Err(Next::Close),
        }
        request.sent_whole = request.body.is_done();
        self.body_credit_ms = floor.map_or(0, |floor| floor.credit_ms());
        Ok(())
    }

    /// Reads and parses the next request head, rewrites it for the backend into `out`, and
    /// appends the body bytes that came with it. `Err` carries what follows a request that
    /// goes to no backend: how to end the connection, or `KeepAlive` after the proxy's own
    /// answer (a redirect, a fixed response, a 404).
    async fn read_request<S: AsyncReadRent + AsyncWriteRent>(
        &mut self,
        client: &mut S,
    ) -> Result<RequestInfo, Next> {
        let timeouts = self.generation.config.timeouts;
        // A new connection has `client_header` from accept for its whole first head; a kept-
        // alive one waits up to `client_idle` for the next request to start, then has
        // `client_header` from its first byte.
        let mut head_deadline =
            (self.requests == 0).then(|| self.ctx.conns.now() + timeouts.client_header);
        loop {
            if !self.ctx.is_current(&self.generation) {
                self.move_to_current();
            }
            match self.parse_request_head() {
                // Answered by the proxy itself: sent here, on a path boxed as a connection's
                // other cold paths are (see `serve_connection`).
                Ok(Some(request)) if self.route == ANSWERED_HERE => {
                    self.requests = self.requests.saturating_add(1);
                    return Err(Box::pin(self.send_answer(client, &request)).await);
                }
                Ok(Some(request)) => return Ok(request),
                Ok(None) => {}
                Err(reject) => {
                    self.ctx.metrics.parse_error(reject.status);
                    self.log_refused(reject.status, reject.head_parsed);
                    return Err(self.reject(client, reject.status, true).await);
                }
            }
            let waiting_for_first_byte = self.recv.is_empty();
            if waiting_for_first_byte
                && (self.ctx.drain_phase() == DrainPhase::Closing || self.listener_removed())
            {
                return Err(Next::HalfClose);
            }
            let within = match head_deadline {
                Some(deadline) => deadline.saturating_duration_since(self.ctx.conns.now()),
                None if waiting_for_first_byte => timeouts.client_idle,
                None => {
                    head_deadline = Some(self.ctx.conns.now() + timeouts.client_header);
                    timeouts.client_header
                }
            };
            self.slot.set_idle(waiting_for_first_byte);
            let deadline = self.slot.deadline(Lane::Main, self.client_fd, within);
            let limit = self.generation.head_limits.max_header_bytes;
            self.recv.grow_if_full(&self.ctx.buffers.recv);
            let read = self.recv.fill(client, deadline, limit).await;
            let half_closed = self.slot.set_busy();
            match read {
                Ok(0) => return Err(Next::Close),
                // The request crossed the FIN of a drain: the client sees EOF, not an answer.
                Ok(_) if half_closed => return Err(Next::HalfClose),
                Ok(_) => {}
                Err(ReadError::Timeout) if waiting_for_first_byte && self.requests > 0 => {
                    self.ctx.metrics.timeout(Timeout::ClientIdle);
                    return Err(Next::Close);
                }
                Err(ReadError::Timeout) => {
                    self.ctx.metrics.timeout(Timeout::ClientHeader);
                    if waiting_for_first_byte {
                        return Err(Next::Close);
                    }
                    self.log_refused(408, false);
                    return Err(self.reject(client, 408, false).await);
                }
                Err(ReadError::Full) => {
                    self.ctx.metrics.parse_error(431);
                    self.log_refused(431, false);
                    return Err(self.reject(client, 431, true).await);
                }
                Err(ReadError::Io) => return Err(Next::Close),
            }
        }
    }

    /// Parses a complete head from `recv` if there is one, routes it, and prepares the
    /// backend request or, for a route that answers itself (or none), the answer.
    fn parse_request_head(&mut self) -> Result<Option<RequestInfo>, Reject> {
        let mut storage = header_storage();
        let (recv, mut writer) = self.split_for_head();
        let Some(head) = parse_request(recv.data(), &mut storage, &writer.generation.head_limits)
            .map_err(Reject::from)?
        else {
            return Ok(None);
        };
        let head_len = head.head_len();
        let next_request_sent = recv.len() > head_len;
        let request_id = writer.request_id(&head);
        writer.begin_request(&head, request_id.as_ref());
        let routed = writer.route(&head, next_request_sent, request_id.as_ref())?;
        let mut request = RequestInfo {
            version: head.version,
            keep_alive: head.keep_alive,
            is_head: head.is_head,
            idempotent: head.idempotent,
            expect_continue: head.expect_continue,
            upgrade: head.upgrade.is_some(),
            key_hash: 0,
            body: BodyProgress::new(head.body),
            sent_whole: false,
        };
        self.recv.consume(head_len);
        match routed {
            Routed::Forwarded { key_hash } => request.key_hash = key_hash,
            Routed::Answered { status } => {
                self.answered(status);
                // Its body, if any, is not read (the connection closes after the answer).
                request.expect_continue = false;
                request.upgrade = false;
                return Ok(Some(request));
            }
        }
        let (prefix, _) = request
            .body
            .advance(self.recv.data_mut(), false)
            .map_err(|_| Reject::after_head(400))?;
        self.out.extend_from_slice(&self.recv.data()[..prefix]);
        self.recv.consume(prefix);
        if prefix > 0 {
            self.received_from_client(prefix as u64);
        }
        request.sent_whole = request.body.is_done();
        Ok(Some(request))
    }

    /// `recv`, and what a head borrowing it is routed and written with.
    fn split_for_head(&mut self) -> (&RecvBuf, HeadWriter<'_>) {
        let writer = HeadWriter {
            ctx: &self.ctx,
            generation: &self.generation,
            listener_id: self.slot.listener(),
            slot: &self.slot,
            peer: &self.peer,
            peer_addr: &self.peer_addr,
            listener: self.listener as usize,
            group: &mut self.group,
            route: &mut self.route,
            out: &mut self.out,
            upstream_recv: &mut self.upstream_recv,
        };
        (&self.recv, writer)
    }

    /// Sends the answer `HeadWriter::answer` wrote.
    async fn send_answer<S: AsyncWriteRent>(
        &mut self,
        client: &mut S,
        request: &RequestInfo,
    ) -> Next {
        // The same decision `HeadWriter::answer` wrote into the head: nothing came in since.
        let keep_alive = self.keeps_alive(request);
        self.add_listener_fields_to_answer();
        if self.write_out(client).await.is_err() {
            return Next::Close;
        }
        if keep_alive {
            Next::KeepAlive
        } else {
            exchange::close_after_answer(request)
        }
    }

    /// Whether the connection stays open after answering `request` now.
    pub(crate) fn keeps_alive(&self, request: &RequestInfo) -> bool {
        request.keep_alive && request.body.is_done() && self.may_keep_alive()
    }

    /// Adds the listener's own fields (HSTS) to the response head just written to `out`.
    /// A backend's own field of the same name comes first, and the first one counts.
    pub(crate) fn add_listener_fields(&mut self) {
        let fields = &self.generation.schemes[self.listener as usize].response_fields;
        if fields.is_empty() {
            return;
        }
        // The head ends with its blank line: the fields go before it.
        self.out.truncate(self.out.len().saturating_sub(2));
        self.out.extend_from_slice(fields);
        self.out.extend_from_slice(b"\r\n");
    }

    /// `add_listener_fields` for the proxy's own answer in `out`, whose body may follow its
    /// head: an HTTPS listener's HSTS goes on every response it sends (RFC 6797 §8.1).
    fn add_listener_fields_to_answer(&mut self) {
        let fields = &self.generation.schemes[self.listener as usize].response_fields;
        if fields.is_empty() {
            return;
        }
        let Some(blank_line) = self.out.windows(4).position(|w| w == b"\r\n\r\n") else {
            return;
        };
        let at = blank_line + 2;
        self.out.splice(at..at, fields.iter().copied());
    }

    /// Whether the connection may stay open after the response being prepared. While the
    /// worker drains, only to answer a next request the client has already sent (pipelined)
    /// before the grace ends: `Connection: close` tells the client in time, where closing an
    /// idle connection later would race its next request.
    pub(crate) fn may_keep_alive(&self) -> bool {
        keep_alive_allowed(
            &self.ctx,
            &self.generation,
            self.slot.listener(),
            !self.recv.is_empty(),
        )
    }

    /// Answers with an error status. `request_unread` says the client may still be sending
    /// the request, so the connection lingers before closing.
    async fn reject<S: AsyncWriteRent>(
        &mut self,
        client: &mut S,
        status: u16,
        request_unread: bool,
    ) -> Next {
        self.answered(status);
        let exchange_buffers = &self.ctx.buffers.exchange;
        exchange_buffers.prepare(&mut self.out, &mut self.upstream_recv);
        write_error_response(&mut self.out, status, true);
        self.add_listener_fields_to_answer();
        if self.write_out(client).await.is_err() {
            return Next::Close;
        }
        if request_unread {
            Next::Linger
        } else {
            Next::Close
        }
    }
}

/// See `Session::may_keep_alive`. A connection whose listener a reload removed closes as in
/// a drain's grace.
fn keep_alive_allowed(
    ctx: &WorkerCtx,
    generation: &Generation,
    listener: ListenerId,
    next_request_sent: bool,
) -> bool {
    let phase = match ctx.drain_phase() {
        DrainPhase::Serving if listener_removed(ctx, generation, listener) => DrainPhase::Grace,
        phase => phase,
    };
    match phase {
        DrainPhase::Serving => true,
        DrainPhase::Grace => next_request_sent,
        DrainPhase::Closing => false,
    }
}

/// See `Session::listener_removed`. Only a connection on an old generation can be on a removed
/// listener (the others moved on), so the check costs a comparison until a reload.
fn listener_removed(ctx: &WorkerCtx, generation: &Generation, listener: ListenerId) -> bool {
    !ctx.is_current(generation) && ctx.generation().position(listener).is_none()
}

/// A session's parts a request head is routed and written with, while the head borrows the
/// receive buffer.
struct HeadWriter<'s> {
    ctx: &'s WorkerCtx,
    generation: &'s Generation,
    listener_id: ListenerId,
    /// The connection's slot: the request's start time, its access log record.
    slot: &'s ConnSlot,
    peer: &'s IpAddr,
    peer_addr: &'s str,
    listener: usize,
    group: &'s mut u32,
    route: &'s mut u16,
    out: &'s mut Vec<u8>,
    upstream_recv: &'s mut RecvBuf,
}

impl<'s> HeadWriter<'s> {
    /// Routes `head` through its listener's table and writes what follows into `out`: the
    /// head to forward or the proxy's own answer.
    #[inline(always)]
    fn route(
        &mut self,
        head: &RequestHead<'_, '_>,
        next_request_sent: bool,
        request_id: Option<&RequestIdLine<'_>>,
    ) -> Result<Routed, Reject> {
        match &self.generation.listeners[self.listener] {
            // `group` and `route` (0) were set when the connection started.
            ListenerRouting::Upstream { group } => {
                Ok(self.forward(head, *group as usize, None, request_id))
            }
            ListenerRouting::Routes { table, groups } => {
                self.route_through(table, groups, head, next_request_sent, request_id)
            }
        }
    }

    /// The request's id (`forwarded.request_id`): the client's, or a new one when the client
    /// sent none that can be kept; `None` when ids are off.
    #[inline(always)]
    fn request_id<'a>(&self, head: &RequestHead<'_, 'a>) -> Option<RequestIdLine<'a>>
    where
        's: 'a,
    {
        let name = self.generation.config.forwarded.request_id.as_deref()?;
        Some(self.ctx.request_ids.resolve(head.headers, name))
    }

    /// The request's head is complete: its bytes are counted, its clock starts (when metrics
    /// or the access log time it), and its access log record begins if the log samples it.
    #[inline(always)]
    fn begin_request(&self, head: &RequestHead<'_, '_>, request_id: Option<&RequestIdLine<'_>>) {
        if !self.ctx.times_requests() {
            return;
        }
        let started = Instant::now();
        self.slot.start_request(started);
        ClientBytes::of(self.ctx, self.generation, self.listener).received(head.head_len() as u64);
        if let Some(log) = &self.ctx.access_log
            && let Some(mut record) = log.begin(self.slot.index())
        {
            let mut generated = [0; GENERATED_ID_LEN];
            let text = request_id.map_or(&[][..], |id| id.text(&mut generated));
            record.begin(head, text, started);
        }
    }

    /// `route` for a listener with a route table.
    #[inline(never)]
    fn route_through(
        &mut self,
        table: &RouteTable,
        groups: &[u32],
        head: &RequestHead<'_, '_>,
        next_request_sent: bool,
        request_id: Option<&RequestIdLine<'_>>,
    ) -> Result<Routed, Reject> {
        // Until a proxy route takes it, the request counts under no group (metrics).
        *self.group = ListenerRouting::NOT_PROXIED;
        let ctx = self.ctx;
        // Held until the request is written: it holds the normalised path forwarded.
        let mut scratch = ctx.route_scratch.borrow_mut();
        let found = table
            .find(&RouteRequest::of(head), &mut scratch)
            .map_err(|_| Reject::after_head(400))?;
        let local = match found.map(|route| (route, &route.action)) {
            Some((route, RouteAction::Proxy(action))) => {
                *self.route = route.index as u16;
                let forward = RouteForward {
                    action,
                    normalized_path: scratch.normalized_path(),
                };
                *self.group = groups[route.index];
                let group = *self.group as usize;
                return Ok(self.forward(head, group, Some(&forward), request_id));
            }
            Some((_, RouteAction::Redirect(redirect))) => Local::Redirect(redirect),
            Some((_, RouteAction::Respond(respond))) => Local::Respond(respond),
            None => Local::NotFound,
        };
        *self.route = ANSWERED_HERE;
        let status = local.status();
        self.answer(head, local, next_request_sent)?;
        Ok(Routed::Answered { status })
    }

    /// Writes the head to send to the backend.
    #[inline(always)]
    fn forward(
        &mut self,
        head: &RequestHead<'_, '_>,
        group: usize,
        route: Option<&RouteForward<'_>>,
        request_id: Option<&RequestIdLine<'_>>,
    ) -> Routed {
        let (ctx, generation) = (self.ctx, self.generation);
        let group = generation.upstreams.group(group);
        let key_hash = group
            .hash_key
            .as_ref()
            .map_or(0, |key| key_hash(key, *self.peer, head.headers));
        let forward = ForwardContext {
            client_addr: self.peer_addr,
            proto: generation.schemes[self.listener].name(),
            forwarded: &generation.config.forwarded,
            // An HTTP/1.0 request may come without Host; like nginx, name the upstream.
            default_host: &group.name,
            request_id,
        };
        ctx.buffers.exchange.prepare(self.out, self.upstream_recv);
        match route {
            Some(route) => write_routed_request_head(self.out, head, &forward, route),
            None => write_request_head(self.out, head, &forward),
        }
        Routed::Forwarded { key_hash }
    }

    /// Writes the proxy's own answer (sent by `Session::send_answer`). A request with a body
    /// is answered, then the connection closes (after reading what still comes): its body
    /// is not read just to keep the connection.
    fn answer(
        &mut self,
        head: &RequestHead<'_, '_>,
        local: Local<'_>,
        next_request_sent: bool,
    ) -> Result<(), Reject> {
        let body = BodyProgress::new(head.body);
        let answer = LocalAnswer {
            keep_alive: head.keep_alive
                && body.is_done()
                && keep_alive_allowed(
                    self.ctx,
                    self.generation,
                    self.listener_id,
                    next_request_sent,
                ),
            client_version: head.version,
            is_head: head.is_head,
        };
        self.ctx
            .buffers
            .exchange
            .prepare(self.out, self.upstream_recv);
        let out = &mut *self.out;
        match local {
            Local::NotFound => write_not_found_response(out, &answer),
            Local::Respond(respond) => write_fixed_response(
                out,
                respond.status,
                &respond.headers,
                respond.body.as_bytes(),
                &answer,
            ),
            Local::Redirect(redirect) => {
                let scheme = self.generation.schemes[self.listener].name();
                let written = write_redirect_response(out, redirect.status, &answer, |out| {
                    redirect.write_location(scheme, head.host, head.path, out)
                });
                // The Location needs the request's host, and an HTTP/1.0 request sent none.
                if !written {
                    return Err(Reject::after_head(400));
                }
            }
        }
        Ok(())
    }
}

/// What `HeadWriter::route` wrote into `out`.
enum Routed {
    /// The head to send to the backend; the request's hash for `balance = "hash"`.
    Forwarded { key_hash: u64 },
    /// The proxy's own answer, with this status.
    Answered { status: u16 },
}

/// What the proxy answers itself, for a request no proxy route takes.
enum Local<'t> {
    NotFound,
    Redirect(&'t RedirectAction),
    Respond(&'t RespondAction),
}

impl Local<'_> {
    fn status(&self) -> u16 {
        match self {
            Local::NotFound => 404,
            Local::Redirect(redirect) => redirect.status,
            Local::Respond(respond) => respond.status,
        }
    }
}

/// A proxy route's response header edits for the current request of `listener`, if it has
/// any (`route` as in `Session`).
pub(crate) fn response_edits(
    generation: &Generation,
    listener: usize,
    route: u16,
) -> Option<&HeaderEdits> {
    let ListenerRouting::Routes { table, .. } = &generation.listeners[listener] else {
        return None;
    };
    match &table.routes().get(route as usize)?.action {
        RouteAction::Proxy(action) => {
            let edits = &action.response_headers;
            (!edits.set.is_empty() || !edits.remove.is_empty()).then_some(edits)
        }
        _ => None,
    }
}

/// A request that is answered by the proxy itself with an error status.
struct Reject {
    status: u16,
    /// Its head was parsed (its access log record has begun).
    head_parsed: bool,
}

impl Reject {
    fn after_head(status: u16) -> Self {
        Self {
            status,
            head_parsed: true,
        }
    }
}

impl From<ParseError> for Reject {
    fn from(err: ParseError) -> Self {
        Self {
            status: err.status(),
            head_parsed: false,
        }
    }
}

impl Session {
    /// The minimum rate the client must keep while a body moves, starting with `credit`;
    /// `None` when `limits.min_body_rate` is 0.
    fn body_floor(&self, credit: Duration) -> Option<RateFloor> {
        RateFloor::new(self.generation.config.limits.min_body_rate, credit)
    }

    /// Deadline for one wait on the client socket: at most `within`.
    fn client_deadline(&self, within: Duration) -> Deadline<'_> {
        self.slot.deadline(Lane::Main, self.client_fd, within)
    }

    /// Writes `out` to the client within the body idle timeout.
    async fn write_out<S: AsyncWriteRent>(&mut self, client: &mut S) -> Result<(), io::WriteError> {
        // Counted for the access log before the write: after it, `self` would be kept in the
        // write's state, and in every connection's task (8 bytes, past mimalloc's 1,792-byte
        // class). A write that fails ends the connection, its bytes counted as sent.
        self.sent_to_client(self.out.len() as u64);
        let deadline = self.slot.deadline(
            Lane::Main,
            self.client_fd,
            self.generation.config.timeouts.body_idle,
        );
        io::write_vec(client, &mut self.out, deadline).await
    }

    /// Half-closes, then reads and discards what the client still sends for up to `within`,
    /// so that closing does not send a reset, which could destroy the response we wrote.
    async fn linger<S: AsyncReadRent + AsyncWriteRent>(
        &mut self,
        client: &mut S,
        within: Duration,
    ) {
        let _ = client.shutdown().await;
        let deadline = self.ctx.conns.now() + within;
        let mut discarded = 0;
        self.recv.enlarge(&self.ctx.buffers.recv);
        while discarded < LINGER_BYTES {
            self.recv.consume(self.recv.len());
            let left = deadline.saturating_duration_since(self.ctx.conns.now());
            let deadline = self.slot.deadline(Lane::Main, self.client_fd, left);
            match self.recv.fill(client, deadline, RECV_BUFFER).await {
                Ok(0) | Err(_) => return,
                Ok(n) => discarded += n,
            }
        }
    }

    /// Relays bytes both ways after a `101 Switching Protocols`.
    async fn tunnel<S>(mut self, client: S, backend: crate::upstream::BackendStream)
    where
        S: AsyncReadRent + AsyncWriteRent + Split,
    {
        // Each direction streams through its receive buffer.
        self.recv.enlarge(&self.ctx.buffers.recv);
        let idle = self.generation.config.timeouts.body_idle;
        let backend_fd = backend.as_raw_fd();
        let lanes = tunnel::Lanes {
            client_to_backend: (
                self.slot.deadline(Lane::Main, self.client_fd, idle),
                self.slot.deadline(Lane::Main, backend_fd, idle),
            ),
            backend_to_client: (
                self.slot.deadline(Lane::Second, backend_fd, idle),
                self.slot.deadline(Lane::Second, self.client_fd, idle),
            ),
            slot: &self.slot,
            idle,
            // Field by field: the buffers move into the tunnel beside it.
            client_bytes: ClientBytes::of(&self.ctx, &self.generation, self.listener as usize),
        };
        tunnel::run(client, backend, self.recv, self.upstream_recv, lanes).await;
    }
}
