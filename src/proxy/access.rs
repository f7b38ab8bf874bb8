//! A session's hooks into the access log (`crate::access_log`). Each tests whether the
//! current request has a record, which with the log off is one test of
//! `WorkerCtx::access_log`; none keeps anything across an await.

use std::cell::RefMut;
use std::time::Duration;

use super::Session;
use crate::access_log::{LineContext, Record};
use crate::log_debug;
use crate::upstream::BackendId;

impl Session {
    /// The current request's access log record, if the log is on and samples the request.
    #[inline]
    pub(super) fn log_record(&self) -> Option<RefMut<'_, Record>> {
        self.ctx.access_log.as_ref()?.record(self.slot.index())
    }

    /// The status the client is answered with.
    #[inline]
    pub(super) fn log_status(&self, status: u16) {
        if let Some(mut record) = self.log_record() {
            record.status = status;
        }
    }

    /// Bytes written to the client.
    #[inline]
    pub(super) fn log_sent(&self, bytes: u64) {
        if let Some(mut record) = self.log_record() {
            record.bytes_sent += bytes;
        }
    }

    /// Body bytes read from the client (the head counts when the record begins).
    #[inline]
    pub(super) fn log_received(&self, bytes: u64) {
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

    /// The attempt's connection: how long its connect took (zero for a pooled one).
    #[inline]
    pub(super) fn log_connect(&self, took: Duration) {
        if let Some(mut record) = self.log_record() {
            record.connect = Some(took);
        }
    }

    /// The attempt's wait for the response head.
    #[inline]
    pub(super) fn log_first_byte(&self, took: Duration) {
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
        let Some(log) = self.ctx.access_log.as_ref().filter(|_| !head_parsed) else {
            return;
        };
        if let Some(mut record) = log.begin(self.slot.index()) {
            record.begin_unparsed(self.recv.len() as u64);
        }
    }

    /// The request ended: its line goes into the worker's buffer.
    #[inline]
    pub(super) fn log_finish(&self) {
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
        log.finish(self.slot.index(), &context, &self.ctx.metrics);
    }
}
