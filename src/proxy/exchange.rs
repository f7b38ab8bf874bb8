//! One request/response exchange with a backend: get a connection, send the request, relay
//! interim responses, relay the final response and its body, and decide who is reusable.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::buffer::ReadError;
use super::io::{
    BodyError, Timed, WriteError, gather_body, reset_on_close, stream_body, write_vec,
    write_vec_to_backend,
};
use super::{Next, RequestInfo, Session};
use crate::conns::Lane;
use crate::fdlimit::Shortage;
use crate::http::body::BodyProgress;
use crate::http::{
    BodyFraming, ResponseContext, Version, header_storage, parse_response,
    write_edited_response_head, write_error_response, write_response_head,
};
use crate::log_debug;
use crate::metrics::{Counter, Timeout};
use crate::upstream::connect::{ConnectError, connect};
use crate::upstream::health::Outcome;
use crate::upstream::{BackendId, BackendSet, BackendStream};

/// Response bodies with at most this much still to come after the head are read whole before
/// the head is written: the client gets head and body in one write (one segment, one wake-up)
/// instead of two, as nginx's `postpone_output` does, and a backend that fails during such a
/// body gets the client a clean 502/504 instead of a truncated response.
const RESPONSE_GATHER_LIMIT: u64 = super::RECV_BUFFER as u64;
/// After idle backend connections were closed to free descriptors, how long a connect waits
/// before trying again: their closes go through the ring, which runs them on the next turn.
const CLOSES_SETTLE: Duration = Duration::from_millis(1);

/// Why no usable response came from the backend.
#[derive(Debug)]
enum UpstreamError {
    /// Connect refused, reset, or closed without a response: 502.
    Unreachable,
    /// Connect or response head not within its timeout: 504.
    Timeout,
    /// The backend was found stalled while the request waited for its response head: 504.
    Stalled,
    /// The backend sent something that is not a valid HTTP/1.1 response: 502.
    Invalid,
    /// Every backend of the group is down, ejected or full: 503.
    NoBackend,
    /// No file descriptor left for a backend connection: 503. Says nothing about the backend.
    OutOfFiles,
}

impl UpstreamError {
    fn describe(&self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable or closed without a response",
            Self::Timeout => "timed out",
            Self::Stalled => "stalled",
            Self::Invalid => "sent an invalid response",
            Self::NoBackend => "no usable backend",
            Self::OutOfFiles => "no file descriptor left for a connection",
        }
    }

    fn status(&self) -> u16 {
        match self {
            Self::Unreachable | Self::Invalid => 502,
            Self::Timeout | Self::Stalled => 504,
            Self::NoBackend | Self::OutOfFiles => 503,
        }
    }

    /// How the failure counts for passive health checks (`None`: not reported by the request:
    /// no backend was tried, the sweep reported it, or it says nothing about the backend).
    fn outcome(&self) -> Option<Outcome> {
        match self {
            Self::Unreachable | Self::Invalid => Some(Outcome::Failed),
            Self::Timeout => Some(Outcome::Timeout),
            // Reported by the sweep that found it (`Upstreams::should_cut`).
            Self::Stalled => None,
            Self::NoBackend | Self::OutOfFiles => None,
        }
    }
}

/// A backend connection and whether it came from the pool (and so may be stale).
struct Upstream {
    stream: BackendStream,
    reused: bool,
}

/// How reading a response head ended.
enum HeadRead {
    Final(ResponseInfo),
    /// The connection closed or reset before a single response byte: maybe a stale one.
    NothingReceived,
    Failed(HeadFailure),
}

/// Why no final response head can be relayed.
enum HeadFailure {
    Upstream(UpstreamError),
    /// Relaying an interim response failed: the client is gone (not the backend's fault).
    ClientGone,
}

impl HeadRead {
    fn failed(error: UpstreamError) -> Self {
        Self::Failed(HeadFailure::Upstream(error))
    }

    fn into_result(self) -> Result<ResponseInfo, HeadFailure> {
        match self {
            Self::Final(response) => Ok(response),
            Self::NothingReceived => Err(HeadFailure::Upstream(UpstreamError::Unreachable)),
            Self::Failed(failure) => Err(failure),
        }
    }
}

/// Why the request body stopped before its end.
enum BodyStop {
    /// Writing to the backend failed: it closed, perhaps after answering early.
    BackendClosed,
    /// The client has been answered (or is gone); the exchange ends here.
    Answered(Next),
}

/// The response facts needed after the head's borrow of the buffer ends.
struct ResponseInfo {
    status: u16,
    backend_keep_alive: bool,
    body: BodyProgress,
    /// The client gets the body de-chunked and close-delimited (it speaks HTTP/1.0).
    dechunk: bool,
    client_keep_alive: bool,
}

/// Where a request went and when it was sent whole (the precise clock: stalled-backend
/// detection compares it with the times of other requests' answers).
#[derive(Clone, Copy)]
struct Sent {
    backend: BackendId,
    at: Instant,
}

/// A failed attempt and whether the request may be tried again on another backend.
struct Failure {
    error: UpstreamError,
    retryable: bool,
}

impl Session {
    /// Sends the request to its backend and relays the response. A failure before any
    /// response byte (refused, reset, timed out) is retried on another backend while the
    /// group's retry policy allows and the request can safely be sent again.
    pub(super) async fn forward<S: AsyncReadRent + AsyncWriteRent>(
        &mut self,
        client: &mut S,
        mut request: RequestInfo,
    ) -> Next {
        let policy = self.generation.upstreams.group(self.group as usize).retry;
        let retry_budget = policy.budget(&self.generation.config.timeouts);
        let started = self.ctx.conns.now();
        let mut tried = BackendSet::new();
        let upstreams = &self.generation.upstreams;
        let Some(mut backend) = upstreams.pick(self.group as usize, request.key_hash, &[], started)
        else {
            return Box::pin(self.fail(client, &request, UpstreamError::NoBackend)).await;
        };
        loop {
            tried.add(backend);
            let failure = match self.attempt(client, &mut request, backend).await {
                Ok(next) => return next,
                Err(failure) => failure,
            };
            self.log_failed_attempt(backend, &failure.error);
            if let Some(outcome) = failure.error.outcome() {
                self.generation
                    .upstreams
                    .report(backend, outcome, self.ctx.conns.now());
            } else if matches!(failure.error, UpstreamError::OutOfFiles) {
                // Our shortage says nothing about the backend: a probe it held goes back.
                self.generation.upstreams.unreported(backend);
            }
            let may_retry = failure.retryable
                && tried.len() <= policy.retries as usize
                && self.ctx.conns.now().saturating_duration_since(started) < retry_budget;
            let next = if may_retry {
                let key_hash = request.key_hash;
                self.generation.upstreams.pick(
                    self.group as usize,
                    key_hash,
                    tried.as_slice(),
                    self.ctx.conns.now(),
                )
            } else {
                None
            };
            match next {
                Some(next) => {
                    self.ctx.metrics.count(Counter::Retries);
                    backend = next;
                }
                None => return Box::pin(self.fail(client, &request, failure.error)).await,
            }
        }
    }

    /// One try of the exchange on `backend`, counted in the worker's in-flight load (and,
    /// when the response head arrived, its response time) for the balancers.
    async fn attempt<S: AsyncReadRent + AsyncWriteRent>(
        &mut self,
        client: &mut S,
        request: &mut RequestInfo,
        backend: BackendId,
    ) -> Result<Next, Failure> {
        let ctx = self.ctx.clone();
        ctx.load().start(backend);
        self.log_attempt(backend);
        let mut response_time = None;
        let result = self
            .exchange(client, request, backend, &mut response_time)
            .await;
        ctx.load().finish(backend, response_time);
        result
    }

    /// `Ok` once the client has been answered (or the client connection failed); `Err` when
    /// the backend gave no usable response.
    async fn exchange<S: AsyncReadRent + AsyncWriteRent>(
        &mut self,
        client: &mut S,
        request: &mut RequestInfo,
        backend: BackendId,
        response_time: &mut Option<Duration>,
    ) -> Result<Next, Failure> {
        self.upstream_recv.consume(self.upstream_recv.len());
        let mut upstream = self.send_request(backend, true, request.idempotent).await?;
        if !request.body.is_done() {
            match Box::pin(self.send_request_body(client, &mut upstream, request)).await {
                // The backend stopped reading the body: it may have answered early (413,
                // 401...), so its response is read like any other.
                Ok(()) | Err(BodyStop::BackendClosed) => {}
                Err(BodyStop::Answered(next)) => {
                    self.generation.upstreams.unreported(backend);
                    return Ok(next);
                }
            }
        }
        let sent = Instant::now();
        let mut response = match self
            .read_response(client, &mut upstream, request, Sent { backend, at: sent })
            .await
        {
            Ok(response) => response,
            Err(HeadFailure::ClientGone) => {
                self.generation.upstreams.unreported(backend);
                return Ok(Next::Close);
            }
            Err(HeadFailure::Upstream(error)) => {
                // The backend may have acted on the request: only idempotent requests that
                // can be sent again whole are retried, and never after an invalid answer.
                let retryable = request.idempotent
                    && request.sent_whole
                    && !matches!(error, UpstreamError::Invalid);
                return Err(Failure { error, retryable });
            }
        };
        let answered = Instant::now();
        {
            // Scoped: not carried across the awaits below in the connection's task.
            let first_byte = answered.saturating_duration_since(sent);
            *response_time = Some(first_byte);
            self.first_byte(first_byte);
        }
        self.ctx.load().answered(backend, sent, answered);
        if let Err(error) = self
            .gather_small_response_body(&mut upstream, &mut response)
            .await
        {
            // The response head has replaced the request in `out`, so it cannot be sent again.
            return Err(Failure {
                error,
                retryable: false,
            });
        }
        let outcome = if response.status >= 500 {
            Outcome::ServerError
        } else {
            Outcome::Success
        };
        self.generation
            .upstreams
            .report(backend, outcome, self.ctx.conns.now());
        self.answered_by(backend, response.status);
        Ok(self
            .relay_response(client, upstream, request, response, backend)
            .await)
    }

    /// Gets a connection and writes `out` (head + first body bytes) to it. A pooled
    /// connection that fails the write is replaced once by a fresh one: nothing was sent, so
    /// any request may be retried.
    async fn send_request(
        &mut self,
        backend: BackendId,
        use_pool: bool,
        idempotent: bool,
    ) -> Result<Upstream, Failure> {
        let within = self.generation.config.timeouts.body_idle;
        // Once a write started, part of the request may have reached the backend: only an
        // idempotent request may then go elsewhere.
        let written = |error| Failure {
            error,
            retryable: idempotent,
        };
        let pooled = if use_pool {
            self.ctx
                .pool
                .borrow_mut()
                .take(backend, self.ctx.conns.now())
        } else {
            None
        };
        if let Some(mut stream) = pooled {
            let deadline = self.slot.deadline(Lane::Main, stream.as_raw_fd(), within);
            // The arm matched here, not through `BackendStream`'s own write: a keep-alive
            // request then writes with the very code a plain client connection does (see
            // `io::write_vec_to_backend`), without a future around it.
            let sent = match &mut stream {
                BackendStream::Plain(tcp) => write_vec(tcp, &mut self.out, deadline).await,
                BackendStream::Tls(tls) => {
                    Box::pin(write_vec(&mut tls.stream, &mut self.out, deadline)).await
                }
            };
            match sent {
                Ok(()) => {
                    self.ctx.metrics.count(Counter::BackendReused);
                    self.reused_connection();
                    return Ok(Upstream {
                        stream,
                        reused: true,
                    });
                }
                Err(WriteError::Timeout) => return Err(written(UpstreamError::Timeout)),
                // A pooled connection the backend already closed: try a fresh one.
                Err(WriteError::Io) => {}
            }
        }
        // Boxed, as a connection's other cold paths are (see `serve_connection`).
        let mut stream = Box::pin(self.connect(backend))
            .await
            .map_err(|error| Failure {
                // Another backend would need a descriptor just the same.
                retryable: !matches!(error, UpstreamError::OutOfFiles),
                error,
            })?;
        let deadline = self.slot.deadline(Lane::Main, stream.as_raw_fd(), within);
        match write_vec_to_backend(&mut stream, &mut self.out, deadline).await {
            Ok(()) => Ok(Upstream {
                stream,
                reused: false,
            }),
            Err(WriteError::Timeout) => Err(written(UpstreamError::Timeout)),
            Err(WriteError::Io) => Err(written(UpstreamError::Unreachable)),
        }
    }

    /// A new connection to `backend`. Out of descriptors, the worker's idle backend
    /// connections make way and the connect is tried once more.
    async fn connect(&self, backend: BackendId) -> Result<BackendStream, UpstreamError> {
        let Some(backend) = self.generation.upstreams.backend(backend) else {
            return Err(UpstreamError::Unreachable);
        };
        let within = self.generation.config.timeouts.backend_connect;
        // Two clock reads on a cold path, when metrics or the access log want them.
        let started = self.ctx.times_requests().then(Instant::now);
        let mut result = connect(backend, within).await;
        if matches!(result, Err(ConnectError::OutOfFiles)) && self.ctx.close_idle_backends() > 0 {
            monoio::time::sleep(CLOSES_SETTLE).await;
            result = connect(backend, within).await;
        }
        match result {
            Ok(stream) => {
                self.ctx.metrics.count(Counter::BackendOpened);
                if let Some(started) = started {
                    self.connected(started.elapsed());
                }
                Ok(stream)
            }
            Err(ConnectError::Timeout) => {
                self.ctx.metrics.timeout(Timeout::BackendConnect);
                Err(UpstreamError::Timeout)
            }
            Err(ConnectError::OutOfFiles) => {
                self.ctx.report(Shortage::ConnectFailed);
                Err(UpstreamError::OutOfFiles)
            }
            // A failed handshake too: logged, counted against the backend, retried elsewhere.
            Err(ConnectError::Failed(_) | ConnectError::Handshake(_)) => {
                Err(UpstreamError::Unreachable)
            }
        }
    }

    /// Streams the rest of the request body from the client to the backend (its start, and
    /// `100 Continue`, went before: see `read_body_start`), the client held to its body's
    /// rate floor.
    async fn send_request_body<S: AsyncReadRent + AsyncWriteRent>(
        &mut self,
        client: &mut S,
        upstream: &mut Upstream,
        request: &mut RequestInfo,
    ) -> Result<(), BodyStop> {
        let idle = self.generation.config.timeouts.body_idle;
        let mut floor = self.body_floor(Duration::from_millis(self.body_credit_ms.into()));
        let backend_fd = upstream.stream.as_raw_fd();
        let mut received = 0;
        let result = stream_body(
            Timed {
                stream: client,
                deadline: self.slot.deadline(Lane::Main, self.client_fd, idle),
                floor: floor.as_mut(),
            },
            Timed {
                stream: &mut upstream.stream,
                deadline: self.slot.deadline(Lane::Main, backend_fd, idle),
                floor: None,
            },
            &mut self.recv,
            &mut request.body,
            false,
            &self.ctx.buffers.stream,
            &mut received,
        )
        .await;
        // A request body is forwarded as it came: what was delivered is what was read.
        self.received_from_client(received);
        let next = match result {
            Ok(()) => return Ok(()),
            Err(BodyError::SinkIo) => return Err(BodyStop::BackendClosed),
            Err(BodyError::BadChunk) => self.reject(client, 400, true).await,
            // Too slow for `body_idle` or for the rate floor: the same answer.
            Err(BodyError::SourceTimeout) => self.reject(client, 408, false).await,
            Err(BodyError::SourceClosed | BodyError::SourceIo) => Next::Close,
            Err(BodyError::SinkTimeout) => self.reject(client, 504, true).await,
        };
        Err(BodyStop::Answered(next))
    }

    /// Reads the final response head, relaying interim (1xx) responses to the client. A pooled
    /// connection that closes before any response byte is retried once on a fresh connection
    /// when the request is idempotent and was sent whole in one write (so `out` still holds it).
    async fn read_response<S: AsyncWriteRent>(
        &mut self,
        client: &mut S,
        upstream: &mut Upstream,
        request: &mut RequestInfo,
        sent: Sent,
    ) -> Result<ResponseInfo, HeadFailure> {
        let first = self
            .read_response_head(client, upstream, request, sent)
            .await;
        let HeadRead::NothingReceived = first else {
            return first.into_result();
        };
        if !(upstream.reused && request.idempotent && request.sent_whole) {
            return Err(HeadFailure::Upstream(UpstreamError::Unreachable));
        }
        let backend = sent.backend;
        *upstream = Box::pin(self.send_request(backend, false, request.idempotent))
            .await
            .map_err(|failure| HeadFailure::Upstream(failure.error))?;
        let sent = Sent {
            backend,
            at: Instant::now(),
        };
        self.read_response_head(client, upstream, request, sent)
            .await
            .into_result()
    }

    async fn read_response_head<S: AsyncWriteRent>(
        &mut self,
        client: &mut S,
        upstream: &mut Upstream,
        request: &mut RequestInfo,
        sent: Sent,
    ) -> HeadRead {
        let deadline = self.ctx.conns.now() + self.generation.config.timeouts.backend_response;
        let limit = self.generation.config.limits.max_response_header_bytes;
        let mut received_any = false;
        loop {
            match self.parse_response_head(request) {
                Ok(Some(Parsed::Final(response))) => return HeadRead::Final(response),
                Ok(Some(Parsed::Interim)) => {
                    // The interim head replaced the request in `out`: it cannot be resent.
                    request.sent_whole = false;
                    // HTTP/1.0 clients cannot take interim responses (RFC 9110 15.2).
                    if request.version != Version::Http10 && self.write_out(client).await.is_err() {
                        return HeadRead::Failed(HeadFailure::ClientGone);
                    }
                    continue;
                }
                Ok(None) => {}
                Err(err) => return HeadRead::Failed(HeadFailure::Upstream(err)),
            }
            let within = deadline.saturating_duration_since(self.ctx.conns.now());
            let fd = upstream.stream.as_raw_fd();
            let read_deadline = self.slot.deadline(Lane::Main, fd, within);
            // Until its first byte, the backend may turn out to be stalled (`conns::Suspect`).
            if !received_any {
                let movable = request.idempotent && request.sent_whole;
                self.slot.suspect(sent.backend.0, sent.at, movable);
            }
            // As in `send_request`: a plain backend is read with the client's own code.
            let recv = &mut self.upstream_recv;
            let read = match &mut upstream.stream {
                BackendStream::Plain(tcp) => recv.fill(tcp, read_deadline, limit).await,
                BackendStream::Tls(tls) => {
                    Box::pin(recv.fill(&mut **tls, read_deadline, limit)).await
                }
            };
            let stalled = self.slot.clear_suspect();
            match read {
                Ok(0) | Err(ReadError::Io) if !received_any => return HeadRead::NothingReceived,
                Ok(0) | Err(ReadError::Io) => return HeadRead::failed(UpstreamError::Unreachable),
                Ok(_) => received_any = true,
                Err(ReadError::Timeout) if stalled => {
                    return HeadRead::failed(UpstreamError::Stalled);
                }
                Err(ReadError::Timeout) => {
                    self.ctx.metrics.timeout(Timeout::BackendResponse);
                    return HeadRead::failed(UpstreamError::Timeout);
                }
                Err(ReadError::Full) => return HeadRead::failed(UpstreamError::Invalid),
            }
        }
    }

    /// Parses a response head from `upstream_recv`. An interim response is rewritten into
    /// `out` for relaying; a final one is rewritten into `out` with the first body bytes.
    fn parse_response_head(
        &mut self,
        request: &RequestInfo,
    ) -> Result<Option<Parsed>, UpstreamError> {
        let mut storage = header_storage();
        let limit = self.generation.config.limits.max_response_header_bytes;
        let Some(head) = parse_response(
            self.upstream_recv.data(),
            &mut storage,
            limit,
            request.is_head,
        )
        .map_err(|_| UpstreamError::Invalid)?
        else {
            return Ok(None);
        };
        let interim = (100..200).contains(&head.status) && head.status != 101;
        if head.status == 101 && !request.upgrade {
            return Err(UpstreamError::Invalid);
        }
        let dechunk = request.version == Version::Http10 && head.body == BodyFraming::Chunked;
        let client_framing = if dechunk {
            BodyFraming::CloseDelimited
        } else {
            head.body
        };
        let client_keep_alive = !interim
            && request.keep_alive
            && request.body.is_done()
            && client_framing != BodyFraming::CloseDelimited
            && self.may_keep_alive();
        let context = ResponseContext {
            client_version: request.version,
            keep_alive: client_keep_alive || interim,
            framing: client_framing,
            upgrade: head.status == 101,
        };
        self.out.clear();
        match super::response_edits(&self.generation, self.listener as usize, self.route) {
            Some(edits) => write_edited_response_head(&mut self.out, &head, &context, edits),
            None => write_response_head(&mut self.out, &head, &context),
        }
        let status = head.status;
        let backend_keep_alive = head.keep_alive;
        let framing = head.body;
        let head_len = head.head_len();
        self.upstream_recv.consume(head_len);
        if interim {
            return Ok(Some(Parsed::Interim));
        }
        self.add_listener_fields();
        let mut body = BodyProgress::new(framing);
        let (consumed, payload) = body
            .advance(self.upstream_recv.data_mut(), dechunk)
            .map_err(|_| UpstreamError::Invalid)?;
        self.out
            .extend_from_slice(&self.upstream_recv.data()[..payload]);
        self.upstream_recv.consume(consumed);
        let response = ResponseInfo {
            status,
            backend_keep_alive,
            body,
            dechunk,
            client_keep_alive,
        };
        Ok(Some(Parsed::Final(response)))
    }

    /// Appends the rest of a small Content-Length response body to `out` (see
    /// `RESPONSE_GATHER_LIMIT`); larger or open-ended bodies are left to stream.
    async fn gather_small_response_body(
        &mut self,
        upstream: &mut Upstream,
        response: &mut ResponseInfo,
    ) -> Result<(), UpstreamError> {
        if !response.body.pending_at_most(RESPONSE_GATHER_LIMIT) {
            return Ok(());
        }
        let idle = self.generation.config.timeouts.body_idle;
        let source = Timed {
            deadline: self
                .slot
                .deadline(Lane::Main, upstream.stream.as_raw_fd(), idle),
            stream: &mut upstream.stream,
            floor: None,
        };
        let gathered = gather_body(
            source,
            &mut self.upstream_recv,
            &mut response.body,
            response.dechunk,
            &mut self.out,
            usize::MAX,
        )
        .await;
        match gathered {
            Ok(_) => Ok(()),
            Err(BodyError::SourceTimeout) => Err(UpstreamError::Timeout),
            Err(_) => Err(UpstreamError::Unreachable),
        }
    }

    /// Writes the response head (with its first body bytes) and streams the rest of the body.
    async fn relay_response<S: AsyncReadRent + AsyncWriteRent>(
        &mut self,
        client: &mut S,
        mut upstream: Upstream,
        request: &RequestInfo,
        mut response: ResponseInfo,
        backend: BackendId,
    ) -> Next {
        if self.write_out(client).await.is_err() {
            return Next::Close;
        }
        if response.status == 101 {
            return Next::Tunnel(upstream.stream);
        }
        // Small bodies came with the head; a longer one streams, on a path boxed as a
        // connection's other cold paths are (see `serve_connection`). Any failure after the
        // head went out leaves the client with a response it must not take as complete:
        // closing the connection is the only honest signal left.
        if !response.body.is_done()
            && Box::pin(self.stream_response_body(client, &mut upstream, &mut response))
                .await
                .is_err()
        {
            return Next::Close;
        }
        let backend_reusable =
            response.backend_keep_alive && request.body.is_done() && self.upstream_recv.is_empty();
        if backend_reusable {
            self.ctx
                .pool
                .borrow_mut()
                .put(backend, upstream.stream, self.ctx.conns.now());
        }
        if response.client_keep_alive {
            Next::KeepAlive
        } else {
            close_after_answer(request)
        }
    }

    /// Streams the rest of a response body to the client, which is held to a rate floor for
    /// reading it. `Err`: the body broke off, and the client connection must close.
    async fn stream_response_body<S: AsyncWriteRent>(
        &mut self,
        client: &mut S,
        upstream: &mut Upstream,
        response: &mut ResponseInfo,
    ) -> Result<(), BodyError> {
        let timeouts = self.generation.config.timeouts;
        let idle = timeouts.body_idle;
        let mut floor = self.body_floor(timeouts.body_rate_grace);
        let backend_fd = upstream.stream.as_raw_fd();
        let mut sent = 0;
        let streamed = stream_body(
            Timed {
                stream: &mut upstream.stream,
                deadline: self.slot.deadline(Lane::Main, backend_fd, idle),
                floor: None,
            },
            Timed {
                stream: client,
                deadline: self.slot.deadline(Lane::Main, self.client_fd, idle),
                floor: floor.as_mut(),
            },
            &mut self.upstream_recv,
            &mut response.body,
            response.dechunk,
            &self.ctx.buffers.stream,
            &mut sent,
        )
        .await;
        self.sent_to_client(sent);
        // Too slow a reader (the rate floor, or `body_idle`): what its socket buffer still
        // holds is dropped with a reset instead of trickling out at its pace ahead of the
        // FIN (on loopback 2.8 MB stayed queued, `ss -tm`: a client reading 25 KB/s would
        // have seen the close after two minutes, and the kernel held the memory as long).
        if let Err(BodyError::SinkTimeout) = streamed {
            reset_on_close(self.client_fd);
        }
        streamed
    }

    /// Says at debug level that an attempt on `backend` failed.
    #[cold]
    fn log_failed_attempt(&self, backend: BackendId, error: &UpstreamError) {
        let worker = self.ctx.index;
        let address = self.generation.upstreams.backend(backend).map(|b| b.addr);
        log_debug!(
            worker: worker, peer: self.peer;
            "worker {worker}: request from {}: backend {} of upstream {}: {} ({})",
            self.peer,
            address.map_or("?".to_string(), |a| a.to_string()),
            self.generation.upstreams.group(self.group as usize).name,
            error.describe(),
            error.status()
        );
    }

    /// Answers the client for a backend that gave no usable response.
    async fn fail<S: AsyncWriteRent>(
        &mut self,
        client: &mut S,
        request: &RequestInfo,
        err: UpstreamError,
    ) -> Next {
        let keep_alive = self.keeps_alive(request);
        self.answered(err.status());
        self.out.clear();
        write_error_response(&mut self.out, err.status(), !keep_alive);
        if self.write_out(client).await.is_err() {
            return Next::Close;
        }
        if keep_alive {
            Next::KeepAlive
        } else {
            close_after_answer(request)
        }
    }
}

/// How to close after a response that said `Connection: close`.
pub(super) fn close_after_answer(request: &RequestInfo) -> Next {
    if !request.body.is_done() {
        // An early answer while the client still sends its body: read and discard the rest
        // for a while so closing does not reset the answer away.
        Next::Linger
    } else if request.keep_alive {
        // The client expected to go on (a drain, or a close-delimited body, ended it): it may
        // already have sent its next request, whose arrival at a closed socket would reset.
        Next::HalfClose
    } else {
        Next::Close
    }
}

enum Parsed {
    Interim,
    Final(ResponseInfo),
}
