//! Backends and how a worker reaches them: groups and balancing (`balance`), per-worker
//! keep-alive connections (`pool`), and connection setup (`connect`).
//!
//! Everything here is per worker: built once per worker from the shared, read-only config,
//! then mutated only by that worker's thread.

use std::net::SocketAddr;

use crate::config::Config;

pub mod balance;
pub mod connect;
pub mod load;
pub mod pool;

use balance::{AllAvailable, Balancer, PickContext};
use load::LoadView;

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
    balancer: Balancer,
}

/// A worker's view of all upstream groups.
pub struct Upstreams {
    backends: Vec<Backend>,
    groups: Vec<Group>,
    load: LoadView,
}

impl Upstreams {
    pub fn from_config(config: &Config) -> Self {
        let mut backends = Vec::new();
        let mut groups = Vec::with_capacity(config.upstreams.len());
        for upstream in &config.upstreams {
            let first = backends.len();
            backends.extend(upstream.backends.iter().map(|b| Backend {
                addr: b.address,
                weight: b.weight,
                host_header: b.address.to_string(),
            }));
            let members: Vec<_> = (first..).map(BackendId).zip(&upstream.backends).collect();
            let balancer = Balancer::new(&members, &upstream.balance, balance::random_seed());
            groups.push(Group {
                name: upstream.name.clone(),
                balancer,
            });
        }
        // Until workers share a LoadBoard, each sees only its own load.
        let load = LoadView::standalone(backends.len(), config.runtime.reconcile_interval);
        Self {
            backends,
            groups,
            load,
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

    /// Chooses a backend of `group` for the next request; `None` when none is usable.
    pub fn pick(&self, group: usize) -> Option<BackendId> {
        let ctx = PickContext {
            load: &self.load,
            key_hash: 0,
            availability: &AllAvailable,
            exclude: &[],
        };
        self.groups.get(group)?.balancer.pick(&ctx)
    }
}
