//! Backend health shared by every worker: whether active checks see a backend up, whether
//! passive checks (failures of real requests) have ejected it, and how far into its slow
//! start it is.
//!
//! One `HealthTable` exists per process, shared through `Arc` by the workers and the active
//! checker (`active`). Workers read it on every pick and report every request's outcome, so
//! each backend's state is a handful of atomics on its own cache line: the request path does
//! loads, and writes only when something changes (a failure, a probe, a transition).
//! Times are milliseconds since the table's creation, so they fit in an `AtomicU64`.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::{BackendConfig, Config, PassiveHealth, UpstreamConfig};

use super::BackendId;

mod active;
mod passive;

pub use active::spawn_checker;
pub use passive::Outcome;

/// Smallest share of its weight a backend gets during slow start. Zero would starve a backend
/// that has just come back (and make the ramp depend on rounding in the balancer); 10% is
/// enough traffic to warm caches and pools while keeping most load on the warm backends
/// (Envoy's slow start uses the same default floor).
pub const SLOW_START_FLOOR: f64 = 0.1;

/// `ejected_until` when the backend is not ejected.
const NOT_EJECTED: u64 = u64::MAX;
/// `probe_since` when no probe request is in flight.
const NO_PROBE: u64 = u64::MAX;
/// `up_since` for a backend that has been up since start: no slow start.
const UP_FROM_START: u64 = u64::MAX;
/// `stalled_at` for a backend never found stalled.
const NEVER_STALLED: u64 = u64::MAX;

/// A backend's health as the admin listener shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendHealth {
    Up,
    /// Down for active checks.
    Down,
    /// Passively ejected (its cooldown may have passed, waiting for a probe).
    Ejected,
}

impl BackendHealth {
    pub fn name(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Ejected => "ejected",
        }
    }
}

/// One backend, for metrics and status.
pub struct BackendReport<'a> {
    pub address: SocketAddr,
    pub upstream: &'a str,
    pub health: BackendHealth,
    /// Passive ejections (stalls included) since start.
    pub ejections: u64,
}

/// Health of every backend, indexed by `BackendId`.
///
/// One table per config generation: a reload builds the next one with `next`, which shares
/// the state of every backend that stays (same `BackendId`), so ejections, probes and slow
/// starts carry over, and a request of the old generation reports into the same state as one
/// of the new. Only what the config says of a backend (its group's passive rules, slow start)
/// is the generation's own.
pub struct HealthTable {
    /// Zero point of every stored time (the first generation's).
    epoch: Instant,
    /// A claimed probe that has not reported after this long is considered lost (its request
    /// was cancelled, or the balancer asked but picked another backend) and may be re-claimed.
    probe_lease_ms: u64,
    /// By `BackendId`: removed backends keep theirs (their last requests may still report).
    states: Box<[Arc<BackendState>]>,
    /// What logs and the passive rules need; read only on failures and transitions. `None`:
    /// the backend is not in this generation.
    backends: Box<[Option<BackendInfo>]>,
    /// The generation's backends in config order (group by group).
    ids: Box<[BackendId]>,
}

/// The per-backend atomics, alone on a cache line so that one backend's failures do not
/// invalidate the line holding its neighbours' state on every core.
#[repr(align(64))]
struct BackendState {
    /// Active checks: backends start up; only the checker thread writes this.
    active_up: AtomicBool,
    /// When the backend last came (back) up, for slow start; `UP_FROM_START` = no ramp.
    up_since: AtomicU64,
    /// Failed requests in a row (passive).
    failures: AtomicU32,
    /// End of the current ejection, or `NOT_EJECTED`.
    ejected_until: AtomicU64,
    /// Ejections in a row without a successful probe between them; doubles the cooldown.
    ejections: AtomicU32,
    /// Every ejection since start (for metrics; written only when one happens).
    ejected_total: AtomicU64,
    /// When the single probe request after a cooldown was let through, or `NO_PROBE`.
    probe_since: AtomicU64,
    /// When the backend was last found stalled (`passive.stall`), or `NEVER_STALLED`:
    /// requests sent to it before then and still waiting are moved elsewhere.
    stalled_at: AtomicU64,
}

struct BackendInfo {
    address: SocketAddr,
    upstream: String,
    passive: PassiveHealth,
    slow_start_ms: Option<u64>,
}

impl HealthTable {
    /// Every backend of `config`, numbered in config order, up, not ejected, not ramping.
    pub fn new(config: &Config) -> Self {
        let ids: Vec<BackendId> = (0..config.upstreams.iter().map(|u| u.backends.len()).sum())
            .map(BackendId)
            .collect();
        Self::with_ids(config, &ids, ids.len(), None, &[])
    }

    /// The table of a generation: `ids` numbers `config`'s backends in config order (see
    /// `BackendIds`), `slots` is how many ids exist. A backend new to the process (a new
    /// number, or one of `reborn`: a number a backend gone for good had) starts up, not
    /// ejected, not ramping; every other keeps its state from `previous`, the table of the
    /// generation before.
    pub fn with_ids(
        config: &Config,
        ids: &[BackendId],
        slots: usize,
        previous: Option<&Self>,
        reborn: &[BackendId],
    ) -> Self {
        let mut backends: Vec<Option<BackendInfo>> = (0..slots).map(|_| None).collect();
        for (id, upstream, backend) in flat_backends(config, ids) {
            if let Some(entry) = backends.get_mut(id.0) {
                *entry = Some(BackendInfo {
                    address: backend.address,
                    upstream: upstream.name.clone(),
                    passive: upstream.passive,
                    slow_start_ms: upstream.slow_start.map(millis),
                });
            }
        }
        let kept = previous.map_or(&[][..], |p| &p.states[..]);
        let states = (0..slots)
            .map(|i| match kept.get(i) {
                Some(state) if !reborn.contains(&BackendId(i)) => state.clone(),
                _ => Arc::default(),
            })
            .collect();
        let lease = config.timeouts.backend_connect + config.timeouts.backend_response;
        Self {
            epoch: previous.map_or_else(Instant::now, |p| p.epoch),
            probe_lease_ms: millis(lease),
            states,
            backends: backends.into_boxed_slice(),
            ids: ids.into(),
        }
    }

    /// The generation's backends, in config order: the `ids` it was built with.
    pub fn ids(&self) -> &[BackendId] {
        &self.ids
    }

    /// How many backend ids the table covers (removed backends included).
    pub fn backend_count(&self) -> usize {
        self.states.len()
    }

    /// Multiplier for `b`'s weight right now: `None` when it must not get requests (actively
    /// down, or passively ejected), 1.0 normally, less while it slowly starts.
    ///
    /// Once an ejection's cooldown has passed, a single caller at a time gets `Some` for the
    /// ejected backend: that caller holds the probe and must send it a request and `report`
    /// the outcome, or give the probe back with `release_probe` if it sends elsewhere.
    pub fn weight_factor(&self, b: BackendId, now: Instant) -> Option<f64> {
        let factor = self.peek_weight_factor(b, now)?;
        self.confirm(b, now).then_some(factor)
    }

    /// `weight_factor` without claiming a probe: an ejected backend whose cooldown has passed
    /// and whose probe is free reports 1.0. For balancers that weigh every member before
    /// choosing one; the chosen one is then `confirm`ed.
    pub fn peek_weight_factor(&self, b: BackendId, now: Instant) -> Option<f64> {
        let state = self.states.get(b.0)?;
        if !state.active_up.load(Ordering::Acquire) {
            return None;
        }
        let until = state.ejected_until.load(Ordering::Acquire);
        if until == NOT_EJECTED {
            return Some(self.slow_start_factor(b, state, now));
        }
        // The probe decides whether the backend comes back; it gets full weight so that
        // the balancer actually sends it (and it does not wait for its lease to expire).
        self.probe_free(state, until, self.millis_since_epoch(now))
            .then_some(1.0)
    }

    /// Takes `b` for a request chosen with `peek_weight_factor`: claims its probe when it is
    /// ejected. `false` when another request got the probe first: choose again without `b`.
    pub fn confirm(&self, b: BackendId, now: Instant) -> bool {
        let Some(state) = self.states.get(b.0) else {
            return false;
        };
        let until = state.ejected_until.load(Ordering::Acquire);
        until == NOT_EJECTED || self.claim_probe(state, until, self.millis_since_epoch(now))
    }

    /// Gives back a probe claimed by `weight_factor` or `confirm` whose request went elsewhere
    /// or ended without an outcome. Harmless for a backend that holds no probe.
    pub fn release_probe(&self, b: BackendId) {
        if let Some(state) = self.states.get(b.0) {
            state.probe_since.store(NO_PROBE, Ordering::Release);
        }
    }

    /// Whether `b` was found stalled after a request sent to it at `sent`: that request
    /// waits on a backend that is not answering.
    pub fn stalled_since(&self, b: BackendId, sent: Instant) -> bool {
        self.states.get(b.0).is_some_and(|state| {
            let stalled_at = state.stalled_at.load(Ordering::Acquire);
            stalled_at != NEVER_STALLED && stalled_at >= self.millis_since_epoch(sent)
        })
    }

    /// What the admin listener reports of `b`: read at scrape time, nothing on the request
    /// path.
    pub fn report_state(&self, b: BackendId) -> Option<BackendReport<'_>> {
        let state = self.states.get(b.0)?;
        let info = self.backends.get(b.0)?.as_ref()?;
        let health = if !state.active_up.load(Ordering::Acquire) {
            BackendHealth::Down
        } else if state.ejected_until.load(Ordering::Acquire) != NOT_EJECTED {
            BackendHealth::Ejected
        } else {
            BackendHealth::Up
        };
        Some(BackendReport {
            address: info.address,
            upstream: &info.upstream,
            health,
            ejections: state.ejected_total.load(Ordering::Relaxed),
        })
    }

    /// Up for active checks and not passively ejected.
    pub fn is_up(&self, b: BackendId) -> bool {
        self.states.get(b.0).is_some_and(|state| {
            state.active_up.load(Ordering::Acquire)
                && state.ejected_until.load(Ordering::Acquire) == NOT_EJECTED
        })
    }

    /// Sets the active-check state (checker thread only). Coming up starts the slow start.
    /// Returns whether the state changed.
    fn set_active(&self, b: BackendId, up: bool, now: Instant) -> bool {
        let Some(state) = self.states.get(b.0) else {
            return false;
        };
        if up {
            state
                .up_since
                .store(self.millis_since_epoch(now), Ordering::Release);
        }
        state.active_up.swap(up, Ordering::AcqRel) != up
    }

    /// True when this caller is the one probe let through after `until` (a passed cooldown).
    /// Whether the cooldown has passed and no live probe is out.
    fn probe_free(&self, state: &BackendState, until: u64, now_ms: u64) -> bool {
        now_ms >= until && self.no_live_probe(state.probe_since.load(Ordering::Acquire), now_ms)
    }

    /// A probe claimed at `claimed` is absent, or has outlived its lease.
    fn no_live_probe(&self, claimed: u64, now_ms: u64) -> bool {
        claimed == NO_PROBE || now_ms.saturating_sub(claimed) >= self.probe_lease_ms
    }

    fn claim_probe(&self, state: &BackendState, until: u64, now_ms: u64) -> bool {
        let claimed = state.probe_since.load(Ordering::Acquire);
        if now_ms < until || !self.no_live_probe(claimed, now_ms) {
            return false;
        }
        if state
            .probe_since
            .compare_exchange(claimed, now_ms, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        // A failed probe may have renewed the ejection between our two loads: then this
        // claim is for an ejection that no longer exists.
        if state.ejected_until.load(Ordering::Acquire) != until {
            let _ = state.probe_since.compare_exchange(
                now_ms,
                NO_PROBE,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
            return false;
        }
        true
    }

    fn slow_start_factor(&self, b: BackendId, state: &BackendState, now: Instant) -> f64 {
        let Some(ramp_ms) = self
            .backends
            .get(b.0)
            .and_then(|info| info.as_ref()?.slow_start_ms)
        else {
            return 1.0;
        };
        let since = state.up_since.load(Ordering::Acquire);
        if since == UP_FROM_START {
            return 1.0;
        }
        let elapsed = self.millis_since_epoch(now).saturating_sub(since);
        if elapsed >= ramp_ms {
            return 1.0;
        }
        (elapsed as f64 / ramp_ms as f64).max(SLOW_START_FLOOR)
    }

    fn millis_since_epoch(&self, now: Instant) -> u64 {
        millis(now.saturating_duration_since(self.epoch))
    }

    /// `backend ADDR (upstream "NAME")`, for log lines.
    fn label(&self, b: BackendId) -> BackendLabel<'_> {
        BackendLabel(self.backends.get(b.0).and_then(Option::as_ref))
    }
}

impl Default for BackendState {
    fn default() -> Self {
        Self {
            active_up: AtomicBool::new(true),
            up_since: AtomicU64::new(UP_FROM_START),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(NOT_EJECTED),
            ejections: AtomicU32::new(0),
            ejected_total: AtomicU64::new(0),
            probe_since: AtomicU64::new(NO_PROBE),
            stalled_at: AtomicU64::new(NEVER_STALLED),
        }
    }
}

struct BackendLabel<'a>(Option<&'a BackendInfo>);

impl fmt::Display for BackendLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(info) => write!(
                f,
                "backend {} (upstream \"{}\")",
                info.address, info.upstream
            ),
            None => f.write_str("unknown backend"),
        }
    }
}

/// Every backend of `config` with its group, in config order, numbered by `ids` (one per
/// backend, in the same order).
fn flat_backends<'c>(
    config: &'c Config,
    ids: &'c [BackendId],
) -> impl Iterator<Item = (BackendId, &'c UpstreamConfig, &'c BackendConfig)> {
    config
        .upstreams
        .iter()
        .flat_map(|upstream| upstream.backends.iter().map(move |b| (upstream, b)))
        .zip(ids)
        .map(|((upstream, backend), &id)| (id, upstream, backend))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX - 1)
}

/// `10s`, `1500ms`: how log lines show cooldowns.
struct Short(Duration);

impl fmt::Display for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.subsec_nanos() == 0 {
            write!(f, "{}s", self.0.as_secs())
        } else {
            write!(f, "{}ms", self.0.as_millis())
        }
    }
}

#[cfg(test)]
mod tests;
