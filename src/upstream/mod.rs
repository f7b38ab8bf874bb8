//! Backends and how a worker reaches them: groups and balancing (`balance`), per-worker
//! keep-alive connections (`pool`), and connection setup (`connect`).
//!
//! Everything here is per worker: built once per worker from the shared, read-only config,
//! then mutated only by that worker's thread.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::config::{Config, RetryPolicy};

pub mod balance;
pub mod connect;
pub mod health;
pub mod pool;

use balance::Balancer;
use health::{HealthTable, Outcome};

/// Index of a backend in the worker's flat backend table (shared by all groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendId(pub usize);

#[derive(Debug, Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    pub weight: u32,
    /// `ip:port`, sent as Host when a client (HTTP/1.0) sent none.
    pub host_header: String,
}

/// A named set of backends and the algorithm choosing among them.
pub struct Group {
    pub name: String,
    pub retry: RetryPolicy,
    balancer: Balancer,
}

/// A worker's view of all upstream groups.
pub struct Upstreams {
    backends: Vec<Backend>,
    groups: Vec<Group>,
    health: Arc<HealthTable>,
}

impl Upstreams {
    pub fn from_config(config: &Config, health: Arc<HealthTable>) -> Self {
        let mut backends = Vec::new();
        let mut groups = Vec::with_capacity(config.upstreams.len());
        for upstream in &config.upstreams {
            let first = backends.len();
            backends.extend(upstream.backends.iter().map(|b| Backend {
                addr: b.address,
                weight: b.weight,
                host_header: b.address.to_string(),
            }));
            let members = (first..backends.len())
                .map(|i| (BackendId(i), backends[i].weight))
                .collect();
            // Only round robin is parsed from config so far; the others arrive with the
            // balancing work (issue 4).
            let balancer = Balancer::round_robin(members);
            groups.push(Group {
                name: upstream.name.clone(),
                retry: upstream.retry,
                balancer,
            });
        }
        Self {
            backends,
            groups,
            health,
        }
    }

    pub fn group_index(&self, name: &str) -> Option<usize> {
        self.groups.iter().position(|g| g.name == name)
    }

    pub fn group(&self, index: usize) -> &Group {
        &self.groups[index]
    }

    pub fn backend(&self, id: BackendId) -> &Backend {
        &self.backends[id.0]
    }

    pub fn backend_count(&self) -> usize {
        self.backends.len()
    }

    /// Chooses a backend of `group` for the next request, avoiding `exclude` (backends this
    /// request already tried) and backends that are down or ejected; `None` when none is
    /// usable. The chosen backend may be a passive-health probe: its outcome must be reported.
    pub fn pick(&self, group: usize, exclude: &[BackendId]) -> Option<BackendId> {
        let balancer = &self.groups.get(group)?.balancer;
        let now = Instant::now();
        (0..balancer.members().len().max(1))
            .filter_map(|_| balancer.pick())
            .find(|&id| !exclude.contains(&id) && self.health.weight_factor(id, now).is_some())
    }

    /// Tells passive health checks how a request to `backend` went.
    pub fn report(&self, backend: BackendId, outcome: Outcome) {
        self.health.report(backend, outcome, Instant::now());
    }
}
