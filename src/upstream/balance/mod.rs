//! Choosing a backend within a group.
//!
//! # API
//!
//! ```text
//! Balancer::new(members: &[(BackendId, &BackendConfig)], balance: &Balance, seed: u64) -> Balancer
//! Balancer::pick(&self, ctx: &PickContext) -> Option<BackendId>
//! Balancer::members(&self) -> &[BackendId]
//! key_hash(key: &HashKey, client_ip: IpAddr, headers: &[httparse::Header]) -> u64
//! random_seed() -> u64
//! trait Availability { fn weight_factor(&self, backend: BackendId) -> Option<f64>; }
//! AllAvailable: Availability (every backend at full weight)
//! PickContext<'a> { load: &'a LoadView, key_hash: u64, availability: &'a dyn Availability,
//!                   exclude: &'a [BackendId] }
//!
//! // upstream::load (one board per process, one view per worker)
//! LoadBoard::new(workers: usize, backends: usize) -> Arc<LoadBoard>
//! LoadView::new(board: Arc<LoadBoard>, worker: usize, reconcile_interval: Duration)
//!     -> Result<LoadView, NoSuchWorker>
//! LoadView::standalone(backends: usize, reconcile_interval: Duration) -> LoadView
//! LoadView::{start(&self, BackendId), finish(&self, BackendId, Option<Duration>),
//!            inflight(&self, BackendId) -> u32, local_inflight(..) -> u32,
//!            ewma(&self, BackendId) -> Option<Duration>, reconcile(&self)}
//! ```
//!
//! The proxy calls `load.start(b)` when it sends a request to `b` and `load.finish(b, t)` when
//! that exchange ends (`t` = time to the response head, `None` on failure), and `reconcile()`
//! every `runtime.reconcile_interval`; a retry passes the backends already tried in `exclude`.
//!
//! Each worker builds its own `Balancer` per group (state in `Cell`/`RefCell`, never shared);
//! `seed` must differ between workers (`random_seed()` does) so that random choices and
//! tie-breaks do not move every worker in lockstep. A pick allocates nothing.
//!
//! # Rules every algorithm follows
//!
//! A member is *eligible* when `availability.weight_factor()` is `Some(f)` with `f > 0` and
//! its host-wide in-flight count (`load.inflight()`) is below its `max_conns`. Among eligible
//! members, the first non-empty tier of these is used:
//!
//! 1. primaries not in `exclude`;
//! 2. backups not in `exclude` (backups serve only when no primary can);
//! 3. primaries in `exclude` (a retry goes back to a tried backend only when nothing else can
//!    take it);
//! 4. backups in `exclude`.
//!
//! No eligible member: `None` (the proxy answers 503). A member's *effective weight* is its
//! configured weight times its factor, so a backend in slow start with factor 0.1 gets about a
//! tenth of its usual share.
//!
//! # Algorithms
//!
//! - `round_robin` / `weighted`: with equal weights a rotation (starting at a per-worker random
//!   member) in which a member in slow start takes its turn with probability `factor`; with
//!   differing weights smooth weighted round robin (nginx) over effective weights.
//! - `least_conn`: lowest `(inflight + 1) / effective weight`; the scan starts one member further
//!   on at each pick (from a per-worker random start), so ties spread instead of herding.
//! - `hash`: consistent hashing on a ring of 160 points per unit of weight, placed by hashing
//!   the backend's *address* (so adding or removing a backend in the config moves only the keys
//!   it gains or loses). An ineligible backend's keys walk on to the next eligible one on the
//!   ring; a backend in slow start keeps a key with probability `factor` (decided by the key, so
//!   the same keys stay put while the factor grows).
//! - `random`: weighted random over effective weights.
//! - `p2c`: two distinct weighted-random candidates, the less loaded wins: `(inflight + 1) /
//!   effective weight`, or for `latency` that times the response-time EWMA (when one candidate
//!   has never been measured, both are compared on in-flight alone).

use std::cell::{Cell, RefCell};
use std::hash::BuildHasher;

use super::BackendId;
use super::load::LoadView;
use crate::config::{BackendConfig, Balance, P2cMetric};

mod hash;
mod least_conn;
mod p2c;
mod random;
mod round_robin;
#[cfg(test)]
mod tests;

pub use hash::key_hash;

use hash::Ring;
use random::Rng;
use round_robin::SmoothWeighted;

/// What a pick needs to know beyond the balancer's own state.
pub struct PickContext<'a> {
    pub load: &'a LoadView,
    /// For `hash`: the request's key, from `key_hash()`. Ignored by the other algorithms.
    pub key_hash: u64,
    pub availability: &'a dyn Availability,
    /// Backends already tried for this request (retries): avoided unless nothing else is left.
    pub exclude: &'a [BackendId],
}

/// Health and slow start, as the balancers see them.
pub trait Availability {
    /// None: send no traffic. Some(f), 0 < f <= 1: the share of its weight it may take now (slow
    /// start ramp).
    fn weight_factor(&self, backend: BackendId) -> Option<f64>;
}

/// Every backend up, at full weight.
pub struct AllAvailable;

impl Availability for AllAvailable {
    fn weight_factor(&self, _backend: BackendId) -> Option<f64> {
        Some(1.0)
    }
}

/// A different seed per call (per-process random keys, then a per-thread counter): use one per
/// worker so workers don't make the same random choices.
pub fn random_seed() -> u64 {
    std::hash::RandomState::new().hash_one(0x5eed_u64)
}

/// A group's balancing state, local to one worker.
pub struct Balancer {
    ids: Vec<BackendId>,
    members: Vec<Member>,
    algorithm: Algorithm,
    /// Per-pick eligibility of each member; kept to avoid allocating on every pick.
    candidates: RefCell<Vec<Candidate>>,
    rng: Rng,
}

/// What the config says about a member.
struct Member {
    weight: f64,
    max_conns: Option<u32>,
    backup: bool,
}

enum Algorithm {
    /// Round robin with equal weights.
    Rotation {
        next: Cell<usize>,
    },
    /// Round robin with weights that differ.
    SmoothWeighted(SmoothWeighted),
    LeastConn {
        next_start: Cell<usize>,
    },
    Hash(Ring),
    Random,
    P2c(P2cMetric),
}

/// A member's state for one pick.
#[derive(Debug, Clone, Copy, Default)]
struct Candidate {
    /// `INELIGIBLE` or the tier (see the module docs): 0 is best.
    tier: u8,
    /// Configured weight times the availability factor.
    weight: f64,
    /// The availability factor alone (0 < factor <= 1).
    factor: f64,
    inflight: u32,
}

const INELIGIBLE: u8 = u8::MAX;
const EXCLUDED_TIER: u8 = 2;
const BACKUP_TIER: u8 = 1;

/// The members a pick chooses among: those of the best non-empty tier.
struct Eligible<'c> {
    candidates: &'c [Candidate],
    tier: u8,
}

impl<'c> Eligible<'c> {
    fn get(&self, index: usize) -> Option<&'c Candidate> {
        self.candidates.get(index).filter(|c| c.tier == self.tier)
    }

    fn iter(&self) -> impl Iterator<Item = (usize, &'c Candidate)> + '_ {
        let tier = self.tier;
        self.candidates
            .iter()
            .enumerate()
            .filter(move |(_, c)| c.tier == tier)
    }
}

impl Balancer {
    /// A balancer over a group's `members` (in config order) using `balance`.
    pub fn new(members: &[(BackendId, &BackendConfig)], balance: &Balance, seed: u64) -> Self {
        let ids = members.iter().map(|&(id, _)| id).collect();
        let specs: Vec<Member> = members
            .iter()
            .map(|(_, config)| Member {
                weight: f64::from(config.weight.max(1)),
                max_conns: config.max_conns,
                backup: config.backup,
            })
            .collect();
        let rng = Rng::new(seed);
        let algorithm = match balance {
            Balance::RoundRobin | Balance::Weighted => {
                if specs.windows(2).all(|w| w[0].weight == w[1].weight) {
                    Algorithm::Rotation {
                        next: Cell::new(rng.below(members.len())),
                    }
                } else {
                    Algorithm::SmoothWeighted(SmoothWeighted::new(members.len()))
                }
            }
            Balance::LeastConn => Algorithm::LeastConn {
                next_start: Cell::new(rng.below(members.len())),
            },
            Balance::Hash(_) => Algorithm::Hash(Ring::new(members)),
            Balance::Random => Algorithm::Random,
            Balance::P2c(metric) => Algorithm::P2c(*metric),
        };
        Self {
            ids,
            members: specs,
            algorithm,
            candidates: RefCell::new(vec![Candidate::default(); members.len()]),
            rng,
        }
    }

    pub fn members(&self) -> &[BackendId] {
        &self.ids
    }

    /// The backend for the next request (or retry); `None` when no member can take it.
    pub fn pick(&self, ctx: &PickContext) -> Option<BackendId> {
        if let Algorithm::Rotation { next } = &self.algorithm
            && let Some(index) = self.rotate_over_primaries(ctx, next)
        {
            return self.ids.get(index).copied();
        }
        // Only a re-entrant pick (an `Availability` that picks) could find this borrowed.
        let mut candidates = self.candidates.try_borrow_mut().ok()?;
        let tier = self.classify(ctx, &mut candidates)?;
        let eligible = Eligible {
            candidates: &candidates,
            tier,
        };
        let index = match &self.algorithm {
            Algorithm::Rotation { next } => round_robin::rotate(&eligible, next, &self.rng),
            Algorithm::SmoothWeighted(state) => state.pick(&eligible),
            Algorithm::LeastConn { next_start } => least_conn::pick(&eligible, next_start),
            Algorithm::Hash(ring) => ring.pick(&eligible, ctx.key_hash),
            Algorithm::Random => random::pick(&eligible, &self.rng),
            Algorithm::P2c(metric) => p2c::pick(&eligible, &self.rng, *metric, ctx.load, &self.ids),
        }?;
        self.ids.get(index).copied()
    }

    /// The common case of round robin, without looking at every member: the next member in
    /// rotation that is a primary, not excluded and eligible. `None`: the general path decides.
    fn rotate_over_primaries(&self, ctx: &PickContext, next: &Cell<usize>) -> Option<usize> {
        let members = self.members.len();
        let start = next.get();
        for offset in 0..members {
            let index = (start + offset) % members;
            let (Some(&id), Some(member)) = (self.ids.get(index), self.members.get(index)) else {
                continue;
            };
            let candidate = Self::candidate(ctx, id, member);
            if candidate.tier == 0 && round_robin::takes_turn(&candidate, &self.rng) {
                next.set(index + 1);
                return Some(index);
            }
        }
        None
    }

    /// Fills `candidates` for this pick; returns the best non-empty tier.
    fn classify(&self, ctx: &PickContext, candidates: &mut [Candidate]) -> Option<u8> {
        let mut best = INELIGIBLE;
        for ((candidate, member), &id) in candidates.iter_mut().zip(&self.members).zip(&self.ids) {
            *candidate = Self::candidate(ctx, id, member);
            best = best.min(candidate.tier);
        }
        (best != INELIGIBLE).then_some(best)
    }

    fn candidate(ctx: &PickContext, id: BackendId, member: &Member) -> Candidate {
        let inflight = ctx.load.inflight(id);
        let factor = ctx
            .availability
            .weight_factor(id)
            .filter(|f| *f > 0.0)
            .map_or(0.0, |f| f.min(1.0));
        let full = member.max_conns.is_some_and(|max| inflight >= max);
        let tier = if factor == 0.0 || full {
            INELIGIBLE
        } else {
            let excluded = if ctx.exclude.contains(&id) {
                EXCLUDED_TIER
            } else {
                0
            };
            excluded + if member.backup { BACKUP_TIER } else { 0 }
        };
        Candidate {
            tier,
            weight: member.weight * factor,
            factor,
            inflight,
        }
    }
}
