//! Config generations: what the proxy serves with, replaced whole by a reload.
//!
//! The control thread (`server`) reads and checks a config, then builds a `SharedGeneration`:
//! the config, its compiled route tables, its certificates, the backend health table and the
//! request counters, all read-only or atomics. Each worker turns it into its own
//! `worker::Generation` (balancers, TLS session caches) and serves every request that starts
//! afterwards with it; a request, a keep-alive connection's current request or a tunnel that
//! started earlier keeps the generation it started with (an `Rc`), so nothing in flight sees
//! its config change under it.
//!
//! What outlives generations is keyed so that it carries over: backends by group and address
//! (`BackendIds`: health, ejections, EWMA, in-flight counts), listeners by address
//! (`ListenerIds`: the listening sockets, and the connections accepted on them).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::{Config, ConfigError, UpstreamConfig};
use crate::metrics::RequestCounts;
use crate::route::RouteTable;
use crate::tls::TlsSetup;
use crate::upstream::BackendId;
use crate::upstream::health::HealthTable;

/// A listener's number for the life of the process: the same address keeps it across
/// reloads (its sockets, and the connections accepted on them, stay).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(pub u32);

/// Most routes one table may hold: a connection names its request's route in a `u16`, and
/// `u16::MAX` means "answered by the proxy".
pub const MAX_ROUTES: usize = u16::MAX as usize - 1;

/// One config generation, as every thread reads it.
pub struct SharedGeneration {
    /// 1 at start, one more per reload that took effect.
    pub number: u64,
    pub config: Arc<Config>,
    /// By listener, in config order: each listener's compiled route table.
    pub routes: Vec<Arc<RouteTable>>,
    /// What every worker shares for TLS: by listener the certificates and ticket keys, by
    /// upstream group the client config for its backends.
    pub tls: TlsSetup,
    /// By listener, in config order.
    pub listener_ids: Vec<ListenerId>,
    /// By listener, in config order: the address bound (the real port for port 0).
    pub addresses: Vec<SocketAddr>,
    /// Backend health, shared by every worker and the checker thread.
    pub health: Arc<HealthTable>,
    /// Responses of this generation's requests, by its listeners and groups.
    pub requests: Arc<RequestCounts>,
    /// Backend numbers that belonged to a backend gone for good and now name a new one:
    /// each worker forgets what it measured of them before installing the generation.
    pub reborn: Vec<BackendId>,
}

impl SharedGeneration {
    /// The position in the config of listener `id`, if this generation has it.
    pub fn position(&self, id: ListenerId) -> Option<usize> {
        self.listener_ids.iter().position(|&l| l == id)
    }
}

/// Checks the limits of a running process that the config's own checks do not know of,
/// placing the error where the setting was written (at --check, at start, at a reload).
pub fn check_limits(config: &Config) -> Result<(), ConfigError> {
    if config.listeners.len() > usize::from(u16::MAX) {
        let message = format!("{} listeners: at most {}", config.listeners.len(), u16::MAX);
        return Err(config.origin.error("listener", message));
    }
    match config.routes.iter().find(|t| t.routes.len() > MAX_ROUTES) {
        Some(table) => Err(config.origin.error(
            &format!("routes.{}", table.name),
            format!("{} routes, at most {MAX_ROUTES}", table.routes.len()),
        )),
        None => Ok(()),
    }
}

/// Stable listener numbers, by configured address. Two listeners on port 0 are different
/// listeners: the n-th one of an address is matched with the n-th one of the next config.
#[derive(Debug, Default)]
pub struct ListenerIds {
    known: HashMap<(SocketAddr, usize), ListenerId>,
    next: u32,
}

impl ListenerIds {
    /// Each of `config`'s listeners' number, in config order, and whether it is new.
    pub fn assign(&mut self, config: &Config) -> Vec<(ListenerId, bool)> {
        let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
        config
            .listeners
            .iter()
            .map(|listener| {
                let nth = seen.entry(listener.address).or_default();
                let key = (listener.address, *nth);
                *nth += 1;
                match self.known.get(&key) {
                    Some(&id) => (id, false),
                    None => {
                        let id = ListenerId(self.next);
                        self.next += 1;
                        self.known.insert(key, id);
                        (id, true)
                    }
                }
            })
            .collect()
    }

    /// Forgets listeners the current config no longer has: their address may come back as
    /// a new listener, with new sockets.
    pub fn keep_only(&mut self, ids: &[ListenerId]) {
        self.known.retain(|_, id| ids.contains(id));
    }
}

/// The generation other threads (admin) read: swapped by the control thread at each reload.
/// A lock, but never on a worker: workers get their generation through their mailbox.
pub struct Current(Mutex<Arc<SharedGeneration>>);

impl Current {
    pub fn new(generation: Arc<SharedGeneration>) -> Self {
        Self(Mutex::new(generation))
    }

    pub fn get(&self) -> Arc<SharedGeneration> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set(&self, generation: Arc<SharedGeneration>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = generation;
    }
}

/// What a reload changed, one line per kind of thing (listeners, route tables, upstream
/// groups, backends); nothing for a kind that did not change.
pub fn describe_changes(old: &Config, new: &Config) -> Vec<String> {
    let listeners =
        |c: &Config| -> Vec<String> { c.listeners.iter().map(|l| l.address.to_string()).collect() };
    let changed_listeners = changed_names(
        &listeners(old),
        &listeners(new),
        |a| old.listeners.iter().find(|l| l.address.to_string() == a),
        |a| new.listeners.iter().find(|l| l.address.to_string() == a),
    );
    let tables = |c: &Config| -> Vec<String> { c.routes.iter().map(|t| t.name.clone()).collect() };
    let changed_tables = changed_names(
        &tables(old),
        &tables(new),
        |n| old.routes.iter().find(|t| t.name == n),
        |n| new.routes.iter().find(|t| t.name == n),
    );
    let groups =
        |c: &Config| -> Vec<String> { c.upstreams.iter().map(|u| u.name.clone()).collect() };
    // A group whose backends alone changed is told of on the backends line.
    let settings = |c: &Config, name: &str| {
        c.upstreams
            .iter()
            .find(|u| u.name == name)
            .map(|u| UpstreamConfig {
                backends: Vec::new(),
                ..u.clone()
            })
    };
    let changed_groups = changed_names(
        &groups(old),
        &groups(new),
        |n| settings(old, n),
        |n| settings(new, n),
    );
    let backends = |c: &Config, draining: bool| -> Vec<String> {
        c.upstreams
            .iter()
            .flat_map(|u| {
                u.backends
                    .iter()
                    .filter(move |b| b.drain == draining)
                    .map(move |b| format!("{}/{}", u.name, b.address))
            })
            .collect()
    };
    let serving = |c: &Config| backends(c, false);
    let draining = |c: &Config| backends(c, true);
    let mut backend_changes = Vec::new();
    let (all_old, all_new) = (
        [serving(old), draining(old)].concat(),
        [serving(new), draining(new)].concat(),
    );
    backend_changes.extend(added(&all_old, &all_new).map(|b| format!("+{b}")));
    backend_changes.extend(added(&all_new, &all_old).map(|b| format!("-{b}")));
    backend_changes.extend(
        added(&draining(old), &draining(new))
            .filter(|b| all_old.contains(b))
            .map(|b| format!("draining {b}")),
    );
    backend_changes.extend(
        added(&serving(old), &serving(new))
            .filter(|b| all_old.contains(b))
            .map(|b| format!("serving {b}")),
    );
    [
        ("listeners", changed_listeners),
        ("route tables", changed_tables),
        ("upstream groups", changed_groups),
        ("backends", backend_changes),
    ]
    .into_iter()
    .filter(|(_, changes)| !changes.is_empty())
    .map(|(kind, changes)| format!("{kind}: {}", changes.join(", ")))
    .collect()
}

/// `+name`, `-name` and `~name` (same name, other settings) between two lists of names.
fn changed_names<T: PartialEq>(
    old: &[String],
    new: &[String],
    old_of: impl Fn(&str) -> Option<T>,
    new_of: impl Fn(&str) -> Option<T>,
) -> Vec<String> {
    let mut changes: Vec<String> = added(old, new).map(|n| format!("+{n}")).collect();
    changes.extend(added(new, old).map(|n| format!("-{n}")));
    changes.extend(
        new.iter()
            .filter(|n| old.contains(n) && old_of(n) != new_of(n))
            .map(|n| format!("~{n}")),
    );
    changes
}

/// The names in `new` that `old` does not have.
fn added<'a>(old: &'a [String], new: &'a [String]) -> impl Iterator<Item = &'a String> {
    new.iter().filter(|n| !old.contains(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(addresses: &[&str]) -> Config {
        let addresses = addresses.iter().map(|a| a.parse().unwrap()).collect();
        Config::for_cli(addresses, vec!["127.0.0.1:9".parse().unwrap()])
    }

    #[test]
    fn listeners_keep_their_number_by_address_and_port_zero_ones_by_order() {
        let mut ids = ListenerIds::default();
        let first = ids.assign(&config(&["127.0.0.1:80", "127.0.0.1:0", "127.0.0.1:0"]));
        assert_eq!(
            first,
            [
                (ListenerId(0), true),
                (ListenerId(1), true),
                (ListenerId(2), true)
            ]
        );
        let second = ids.assign(&config(&["127.0.0.1:0", "127.0.0.1:81", "127.0.0.1:80"]));
        assert_eq!(
            second,
            [
                (ListenerId(1), false),
                (ListenerId(3), true),
                (ListenerId(0), false)
            ]
        );
        ids.keep_only(&[ListenerId(1), ListenerId(3)]);
        let third = ids.assign(&config(&["127.0.0.1:80"]));
        assert_eq!(
            third,
            [(ListenerId(4), true)],
            "a removed address is new again"
        );
    }
}
