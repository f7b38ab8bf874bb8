//! Backends and how a worker reaches them: groups and balancing (`balance`), per-worker
//! keep-alive connections (`pool`), connection setup (`connect`) and the connections
//! themselves, plain or TLS (`stream`).
//!
//! `Upstreams` is per worker and per config generation: built by each worker from the shared,
//! read-only config, then mutated only by that worker's thread. Two things are shared between workers, as atomics:
//! backend health (`health`) and the per-core in-flight counts (`load`).

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;

use crate::config::{BackendConfig, Balance, Config, HashKey, RetryPolicy, StallDetection};
use crate::conns::Suspect;
use crate::tls::TlsUpstreams;

pub mod balance;
pub mod connect;
pub mod health;
pub mod ids;
pub mod load;
pub mod pool;
pub mod stream;

use balance::{Availability, Balancer, PickContext};
use health::{HealthTable, Outcome};
use load::LoadView;
pub use stream::BackendStream;
use stream::TlsFailureLog;

/// Index of a backend in the worker's flat backend table (shared by all groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendId(pub usize);

#[derive(Debug, Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    pub weight: u32,
    /// How it is reached over TLS; `None`: plain TCP.
    pub tls: Option<BackendTls>,
}

/// What a worker needs to open TLS connections to one backend.
#[derive(Debug, Clone)]
pub struct BackendTls {
    /// The group's, shared by every worker.
    pub config: Arc<ClientConfig>,
    /// What the backend's certificate must name (and, a DNS name, what is sent as SNI).
    pub name: ServerName<'static>,
    /// What its connections are verified with, hashed (`tls::BackendTlsName`).
    pub identity: u64,
    /// The worker's log of TLS failures with this backend.
    pub log: Rc<TlsFailureLog>,
}

/// A named set of backends and the algorithm choosing among them.
pub struct Group {
    pub name: String,
    pub retry: RetryPolicy,
    /// What requests are hashed on, for `balance = "hash"`.
    pub hash_key: Option<HashKey>,
    /// Over the members that take new requests (not those set to `drain`).
    balancer: Balancer,
    /// Every backend of the group, drained ones included.
    members: Box<[BackendId]>,
    stall: StallDetection,
}

/// A worker's view of all upstream groups in one config generation.
pub struct Upstreams {
    /// By `BackendId`; `None`: not in this generation.
    backends: Box<[Option<Backend>]>,
    groups: Vec<Group>,
    health: Arc<HealthTable>,
    load: Rc<LoadView>,
}

impl Upstreams {
    /// The worker's view of `config`'s groups, with the backend numbers `health` was built
    /// with: `health` is shared by all workers, `load` is this worker's view of the shared
    /// per-core load board (one for all of the worker's generations); `tls`, by group, how
    /// their backends are reached over TLS.
    pub fn from_config(
        config: &Config,
        tls: &TlsUpstreams,
        health: Arc<HealthTable>,
        load: Rc<LoadView>,
    ) -> Self {
        let mut backends: Vec<Option<Backend>> = vec![None; health.backend_count()];
        let mut ids = health.ids().iter().copied();
        let mut groups = Vec::with_capacity(config.upstreams.len());
        for (index, upstream) in config.upstreams.iter().enumerate() {
            let members: Vec<(BackendId, &BackendConfig)> =
                ids.by_ref().zip(&upstream.backends).collect();
            let group_tls = tls.get(index).and_then(Option::as_ref);
            for (position, &(id, backend)) in members.iter().enumerate() {
                let tls = group_tls.and_then(|group| {
                    let verified = group.backends.get(position)?;
                    Some(BackendTls {
                        config: group.config.clone(),
                        name: verified.name.clone(),
                        identity: verified.identity,
                        log: Rc::new(TlsFailureLog::new(format!(
                            "backend {} (upstream \"{}\")",
                            backend.address, upstream.name
                        ))),
                    })
                });
                if let Some(entry) = backends.get_mut(id.0) {
                    *entry = Some(Backend {
                        addr: backend.address,
                        weight: backend.weight,
                        tls,
                    });
                }
            }
            let serving: Vec<_> = members.iter().filter(|(_, b)| !b.drain).copied().collect();
            let balancer = Balancer::new(&serving, &upstream.balance, balance::random_seed());
            let hash_key = match &upstream.balance {
                Balance::Hash(key) => Some(key.clone()),
                _ => None,
            };
            // Stall detection ejects, so it needs passive checks on.
            let stall = match upstream.passive.max_fails {
                0 => StallDetection::Off,
                _ => upstream.passive.stall,
            };
            groups.push(Group {
                name: upstream.name.clone(),
                retry: upstream.retry,
                hash_key,
                balancer,
                members: members.iter().map(|&(id, _)| id).collect(),
                stall,
            });
        }
        Self {
            backends: backends.into_boxed_slice(),
            groups,
            health,
            load,
        }
    }

    pub fn group_index(&self, name: &str) -> Option<usize> {
        self.groups.iter().position(|g| g.name == name)
    }

    pub fn group(&self, index: usize) -> &Group {
        &self.groups[index]
    }

    /// `None` for a backend not in this generation.
    pub fn backend(&self, id: BackendId) -> Option<&Backend> {
        self.backends.get(id.0)?.as_ref()
    }

    /// How many backend ids exist (this generation's and removed ones).
    pub fn backend_count(&self) -> usize {
        self.backends.len()
    }

    /// Whether `id` is in this generation and takes new requests (not removed, not drained).
    pub fn serves(&self, id: BackendId) -> bool {
        self.groups
            .iter()
            .any(|g| g.balancer.members().contains(&id))
    }

    /// Which of the worker's idle connections to `id` may be kept: none when it is not
    /// served, else those made as it is reached now (plain, or TLS with its identity).
    pub fn pooled(&self, id: BackendId) -> pool::Kept {
        if !self.serves(id) {
            return pool::Kept::Nothing;
        }
        match self.backend(id).and_then(|b| b.tls.as_ref()) {
            Some(tls) => pool::Kept::Tls(tls.identity),
            None => pool::Kept::Plain,
        }
    }

    /// Chooses a backend of `group` for the next request (`key_hash` for hashing groups),
    /// avoiding `exclude` (backends this request already tried) where possible and backends
    /// that are down, ejected or full; `None` when none is usable. The chosen backend may be
    /// a passive-health probe: its outcome must be reported. `now` is the worker's clock
    /// (cooldowns and slow starts need no finer grain).
    pub fn pick(
        &self,
        group: usize,
        key_hash: u64,
        exclude: &[BackendId],
        now: Instant,
    ) -> Option<BackendId> {
        let balancer = &self.groups.get(group)?.balancer;
        let health = HealthAt {
            table: &self.health,
            now,
        };
        let ctx = PickContext {
            load: &self.load,
            key_hash,
            availability: &health,
            exclude,
        };
        let chosen = balancer.pick(&ctx)?;
        if self.health.confirm(chosen, health.now) {
            return Some(chosen);
        }
        // Another request took the probe of this ejected backend: choose among the rest.
        let mut without = BackendSet::from(exclude);
        without.add(chosen);
        let ctx = PickContext {
            exclude: without.as_slice(),
            ..ctx
        };
        balancer
            .pick(&ctx)
            .filter(|&b| b != chosen && self.health.confirm(b, health.now))
    }

    /// Tells passive health checks how a request to `backend` went, at `now` by the worker's
    /// clock.
    pub fn report(&self, backend: BackendId, outcome: Outcome, now: Instant) {
        self.health.report(backend, outcome, now);
    }

    /// The exchange with `backend` ended for a reason that says nothing about its health (the
    /// client went away or sent a broken body): a passive-health probe it held goes back, so
    /// the next request can probe instead of waiting for the probe's lease to expire.
    pub fn unreported(&self, backend: BackendId) {
        self.health.release_probe(backend);
    }

    /// This worker's in-flight counts and response times per backend.
    pub fn load(&self) -> &LoadView {
        &self.load
    }

    /// Whether the request `suspect` describes, still waiting for its response head, should
    /// be cut so that it can move to another backend. Called by the worker's timer sweep.
    ///
    /// A backend is found stalled when the request has waited its group's stall budget, the
    /// backend has answered no worker since the request was sent, and another backend of the
    /// group has answered a request sent after it: that tells a hung backend from a slow
    /// request (the backend answers others) and from a slow group (nobody makes a round trip
    /// faster than the wait). It is then ejected (and logged) at once, and every movable
    /// request sent to it before that moment is cut, on every worker.
    pub fn should_cut(&self, suspect: &Suspect, now: Instant) -> bool {
        let backend = BackendId(suspect.backend);
        if self.health.stalled_since(backend, suspect.since) {
            return suspect.movable;
        }
        let Some(group) = self.group_of(backend) else {
            return false;
        };
        let typical = self.load.ewma(backend);
        let Some(budget) = group.stall.budget(typical) else {
            return false;
        };
        let waited = now.saturating_duration_since(suspect.since);
        if waited < budget || !self.is_stalled(group, backend, suspect.since) {
            return false;
        }
        self.health
            .report(backend, Outcome::Stalled { waited }, now);
        suspect.movable
    }

    fn is_stalled(&self, group: &Group, backend: BackendId, since: Instant) -> bool {
        let board = self.load.board();
        let others_answer = group
            .members
            .iter()
            .copied()
            .any(|other| other != backend && board.answered_one_sent_since(other, since));
        others_answer && !board.answered_after(backend, since)
    }

    fn group_of(&self, backend: BackendId) -> Option<&Group> {
        self.groups.iter().find(|g| g.members.contains(&backend))
    }
}

/// Health as the balancers see it at one instant. Weighing a member claims no probe; the
/// chosen one is confirmed afterwards.
struct HealthAt<'a> {
    table: &'a HealthTable,
    now: Instant,
}

impl Availability for HealthAt<'_> {
    fn weight_factor(&self, backend: BackendId) -> Option<f64> {
        self.table.peek_weight_factor(backend, self.now)
    }
}

/// Most backends one request deals with: the first attempt, up to 10 retries, and a probe
/// lost to another request.
pub const MAX_TRIED: usize = 12;

/// A small set of backends without allocation (those a request already tried).
#[derive(Debug, Clone)]
pub struct BackendSet {
    ids: [BackendId; MAX_TRIED],
    len: usize,
}

impl BackendSet {
    pub fn new() -> Self {
        Self {
            ids: [BackendId(usize::MAX); MAX_TRIED],
            len: 0,
        }
    }

    /// Adds `id`; beyond `MAX_TRIED` entries the oldest stay and `id` is not kept.
    pub fn add(&mut self, id: BackendId) {
        if self.len < MAX_TRIED {
            self.ids[self.len] = id;
            self.len += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[BackendId] {
        &self.ids[..self.len]
    }
}

impl Default for BackendSet {
    fn default() -> Self {
        Self::new()
    }
}

impl From<&[BackendId]> for BackendSet {
    fn from(ids: &[BackendId]) -> Self {
        let mut set = Self::new();
        ids.iter().for_each(|&id| set.add(id));
        set
    }
}
