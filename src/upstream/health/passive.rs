//! Passive checks: backends failing real requests are ejected for a cooldown that doubles
//! with each ejection in a row; after it, one probe request at a time decides whether the
//! backend is back.
//!
//! Every transition is a compare-exchange on `ejected_until`, so when several workers report
//! at once exactly one of them makes (and logs) it. Outcomes that arrive while the backend is
//! ejected and no probe is out belong to requests sent before the ejection; they change
//! nothing.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::config::PassiveHealth;
use crate::log::Level;
use crate::plural::count;

use super::{BackendId, BackendInfo, BackendState, HealthTable, NO_PROBE, NOT_EJECTED, Short};

/// How a request to a backend ended, as far as its health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The backend answered (any status, unless `ServerError` applies).
    Success,
    /// No usable answer: connect refused, reset or closed before a response head, or an
    /// invalid response head.
    Failed,
    /// Connect, write or response-head timeout.
    Timeout,
    /// A 5xx response: a failure when the group's `passive.on_5xx`, otherwise a success (the
    /// backend is reachable and answering).
    ServerError,
    /// A request waited this long for a response head while the backend answered nothing
    /// and its group's other backends did (`passive.stall`): ejects at once.
    Stalled { waited: Duration },
}

/// A change of a backend's passive state, made by exactly one `record` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PassiveTransition {
    Ejected {
        cooldown: Duration,
        failures: u32,
    },
    Stalled {
        cooldown: Duration,
        waited: Duration,
    },
    ProbeFailed {
        cooldown: Duration,
    },
    Back,
}

impl HealthTable {
    /// Records the outcome of a request to `b`, ejecting or restoring it as the group's
    /// `passive` rules say. Transitions are logged to stderr, once.
    pub fn report(&self, b: BackendId, outcome: Outcome, now: Instant) {
        if let Some(transition) = self.record(b, outcome, now) {
            let level = match transition {
                PassiveTransition::Back => Level::Info,
                _ => Level::Warn,
            };
            crate::log_at!(level; "{} {transition}", self.label(b));
        }
    }

    /// `report` without the log line: the transition this call made, if any.
    pub(super) fn record(
        &self,
        b: BackendId,
        outcome: Outcome,
        now: Instant,
    ) -> Option<PassiveTransition> {
        let state = self.states.get(b.0)?;
        let info = self.backends.get(b.0)?.as_ref()?;
        if info.passive.max_fails == 0 {
            return None;
        }
        let failed = match outcome {
            Outcome::Success => false,
            Outcome::Failed | Outcome::Timeout | Outcome::Stalled { .. } => true,
            Outcome::ServerError => info.passive.on_5xx,
        };
        // The clock is read only off the common path (a success on a backend in service).
        let until = state.ejected_until.load(Ordering::Acquire);
        if let Outcome::Stalled { waited } = outcome {
            let now_ms = self.millis_since_epoch(now);
            state.stalled_at.store(now_ms, Ordering::Release);
            if until == NOT_EJECTED {
                let cooldown = eject(state, info, NOT_EJECTED, now_ms)?;
                state.failures.store(0, Ordering::Relaxed);
                return Some(PassiveTransition::Stalled { cooldown, waited });
            }
        }
        if until != NOT_EJECTED {
            return probe_outcome(state, info, until, failed, self.millis_since_epoch(now));
        }
        if failed {
            return count_failure(state, info, self.millis_since_epoch(now));
        }
        // Successes are the common case: only write when there is a count to clear, so the
        // line is not bounced between cores on every request.
        if state.failures.load(Ordering::Relaxed) != 0 {
            state.failures.store(0, Ordering::Relaxed);
        }
        None
    }
}

fn count_failure(
    state: &BackendState,
    info: &BackendInfo,
    now_ms: u64,
) -> Option<PassiveTransition> {
    let failures = state
        .failures
        .fetch_add(1, Ordering::AcqRel)
        .saturating_add(1);
    if failures < info.passive.max_fails {
        return None;
    }
    let cooldown = eject(state, info, NOT_EJECTED, now_ms)?;
    state.failures.store(0, Ordering::Relaxed);
    Some(PassiveTransition::Ejected { cooldown, failures })
}

/// Ejects (or ejects again) for the next cooldown, if the ejection state is still
/// `expected_until` — the exchange makes exactly one of several concurrent reports do it.
/// Returns the cooldown when this call did it.
fn eject(
    state: &BackendState,
    info: &BackendInfo,
    expected_until: u64,
    now_ms: u64,
) -> Option<Duration> {
    let ejections = state.ejections.load(Ordering::Acquire);
    let cooldown = cooldown_after(&info.passive, ejections);
    state
        .ejected_until
        .compare_exchange(
            expected_until,
            deadline(now_ms, cooldown),
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .ok()?;
    state
        .ejections
        .store(ejections.saturating_add(1), Ordering::Release);
    state.ejected_total.fetch_add(1, Ordering::Relaxed);
    state.probe_since.store(NO_PROBE, Ordering::Release);
    Some(cooldown)
}

/// An outcome while ejected: the probe's (if one is out and the cooldown has passed).
fn probe_outcome(
    state: &BackendState,
    info: &BackendInfo,
    until: u64,
    failed: bool,
    now_ms: u64,
) -> Option<PassiveTransition> {
    if now_ms < until || state.probe_since.load(Ordering::Acquire) == NO_PROBE {
        return None;
    }
    if failed {
        let cooldown = eject(state, info, until, now_ms)?;
        return Some(PassiveTransition::ProbeFailed { cooldown });
    }
    // Set before the backend becomes visible as not ejected, so nobody sees it back at full
    // weight; harmless if another report wins the exchange (it ends or renews the ejection).
    state.up_since.store(now_ms, Ordering::Release);
    state
        .ejected_until
        .compare_exchange(until, NOT_EJECTED, Ordering::AcqRel, Ordering::Relaxed)
        .ok()?;
    state.ejections.store(0, Ordering::Release);
    state.failures.store(0, Ordering::Relaxed);
    state.probe_since.store(NO_PROBE, Ordering::Release);
    Some(PassiveTransition::Back)
}

/// `cooldown × 2^ejections`, at most `max_cooldown`.
fn cooldown_after(passive: &PassiveHealth, ejections: u32) -> Duration {
    2u32.checked_pow(ejections)
        .and_then(|factor| passive.cooldown.checked_mul(factor))
        .map_or(passive.max_cooldown, |cooldown| {
            cooldown.min(passive.max_cooldown)
        })
}

/// `now_ms + cooldown`, never colliding with the `NOT_EJECTED` sentinel.
fn deadline(now_ms: u64, cooldown: Duration) -> u64 {
    now_ms
        .saturating_add(super::millis(cooldown))
        .min(NOT_EJECTED - 1)
}

impl fmt::Display for PassiveTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Ejected { cooldown, failures } => write!(
                f,
                "ejected for {} after {} (passive)",
                Short(cooldown),
                count(failures, "consecutive failure")
            ),
            Self::Stalled { cooldown, waited } => write!(
                f,
                "ejected for {}: stalled (no response for {}ms while the group's other \
                 backends answered; waiting idempotent requests move to them)",
                Short(cooldown),
                waited.as_millis()
            ),
            Self::ProbeFailed { cooldown } => write!(
                f,
                "ejected again for {} (passive probe failed)",
                Short(cooldown)
            ),
            Self::Back => f.write_str("is back (passive probe succeeded)"),
        }
    }
}
