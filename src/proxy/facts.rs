//! What a request did, told as it happens: counted in the metrics (the worker's
//! `WorkerMetrics` and the generation's `RequestCounts`) and kept for its access log line
//! (`crate::access_log`). One hook per fact, so that the two never disagree. With metrics
//! and the access log both off, a hook is a test or two; none keeps anything across an
//! await.

use std::cell::RefMut;
use std::time::{Duration, Instant};

use super::Session;
use crate::access_log::{LineContext, Record};
use crate::log_debug;
use crate::metrics::RequestCounts;
use crate::upstream::BackendId;
use crate::worker::{Generation, ListenerRouting, WorkerCtx};

/// Where a tunnel counts the bytes it moves to and from the client, without the session.
#[derive(Clone, Copy)]
pub(super) struct ClientBytes<'a> {
    /// `None` with metrics off.
    counts: Option<&'a RequestCounts>,
    worker: usize,
    listener: usize,
}

impl<'a> ClientBytes<'a> {
    /// For a connection of `listener` (its position in `generation`).
    pub fn of(ctx: &WorkerCtx, generation: &'a Generation, listener: usize) -> Self {
        Self {
            counts: ctx.metrics.enabled().then_some(&*generation.requests),
            worker: ctx.index,
            listener,
        }
    }

    #[inline]
    pub fn received(&self, bytes: u64) {
        if let Some(counts) = self.counts {
            counts.received(self.worker, self.listener, bytes);
        }
    }

    #[inline]
    pub fn sent(&self, bytes: u64) {
        if let Some(counts) = self.counts {
            counts.sent(self.worker, self.listener, bytes);
        }
    }
}

impl Session {
    /// The current request's access log record, if the log is on and samples the request.
    #[inline]
    pub(super) fn log_record(&self) -> Option<RefMut<'_, Record>> {
        self.ctx.access_log.as_ref()?.record(self.slot.index())
    }

    /// Where the connection's client bytes are counted.
    #[inline]
    pub(super) fn client_bytes(&self) -> ClientBytes<'_> {
        ClientBytes::of(&self.ctx, &self.generation, self.listener as usize)
    }

    /// The client is answered with `status`: counted by listener and group, by route when a
    /// route proxied the request, and logged.
    #[inline]
    pub(crate) fn answered(&self, status: u16) {
        if self.ctx.metrics.enabled() {
            let (worker, listener) = (self.ctx.index, self.listener as usize);
            let requests = &self.generation.requests;
            requests.response(worker, listener, self.group as usize, status);
            if self.group != ListenerRouting::NOT_PROXIED {
                requests.route_response(worker, listener, self.route as usize, status);
            }
        }
        if let Some(mut record) = self.log_record() {
            record.status = status;
        }
    }

    /// `backend` answered with a response head with `status`, which the client gets.
    #[inline]
    pub(super) fn answered_by(&self, backend: BackendId, status: u16) {
        if self.ctx.metrics.enabled() {
            self.generation
                .requests
                .backend_response(self.ctx.index, backend.0, status);
        }
        self.answered(status);
    }

    /// Bytes written to the client.
    #[inline]
    pub(super) fn sent_to_client(&self, bytes: u64) {
        self.client_bytes().sent(bytes);
        if let Some(mut record) = self.log_record() {
            record.bytes_sent += bytes;
        }
    }

    /// Body bytes read from the client (the head is counted when the request begins).
    #[inline]
    pub(super) fn received_from_client(&self, bytes: u64) {
        self.client_bytes().received(bytes);
        if let Some(mut record) = self.log_record() {
            record.bytes_received += bytes;
        }
    }

    /// An attempt on `backend` starts: the line tells of the last one.
    #[inline]
    pub(super) fn log_attempt(&self, backend: BackendId) {
        if let Some(mut record) = self.log_record() {
            record.backend = Some(backend);
            record.connect = None;
            record.first_byte = None;
        }
    }

    /// The attempt's connection is a pooled one.
    #[inline]
    pub(super) fn reused_connection(&self) {
        if let Some(mut record) = self.log_record() {
            record.connect = Some(Duration::ZERO);
        }
    }

    /// The attempt's new connection took `took` to connect.
    pub(super) fn connected(&self, took: Duration) {
        self.ctx.metrics.upstream_connect(took);
        if let Some(mut record) = self.log_record() {
            record.connect = Some(took);
        }
    }

    /// The attempt's wait from the request sent whole to the response head.
    #[inline]
    pub(super) fn first_byte(&self, took: Duration) {
        self.ctx.metrics.upstream_first_byte(took);
        if let Some(mut record) = self.log_record() {
            record.first_byte = Some(took);
        }
    }

    /// A request refused with `status` before it could go anywhere: said at debug level,
    /// and a request whose head could not be parsed (400, 408, 431...) gets a record without
    /// method or target (one whose head was parsed has its record already).
    #[cold]
    pub(super) fn log_refused(&self, status: u16, head_parsed: bool) {
        let worker = self.ctx.index;
        log_debug!(
            worker: worker, peer: self.peer;
            "worker {worker}: request from {} refused with {status}",
            self.peer
        );
        if head_parsed {
            return;
        }
        let received = self.recv.len() as u64;
        self.client_bytes().received(received);
        if let Some(log) = &self.ctx.access_log
            && let Some(mut record) = log.begin(self.slot.index())
        {
            record.begin_unparsed(received, Instant::now());
        }
    }

    /// The request ended (or the connection did, without one): its time is measured, and its
    /// line goes into the worker's buffer.
    #[inline]
    pub(super) fn finish_request(&self) {
        let ended = self.slot.take_request_start().map(|started| {
            let ended = Instant::now();
            self.ctx
                .metrics
                .request_time(ended.saturating_duration_since(started));
            ended
        });
        let Some(log) = &self.ctx.access_log else {
            return;
        };
        let context = LineContext {
            client: &self.peer_addr,
            generation: &self.generation,
            listener: self.listener as usize,
            group: self.group,
            route: self.route,
        };
        log.finish(self.slot.index(), &context, &self.ctx.metrics, ended);
    }
}
