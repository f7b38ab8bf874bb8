//! Backend numbers that stay the same across config reloads.
//!
//! A backend is known by its group's name and its address: reloading a config that keeps
//! `127.0.0.1:9001` in group `api` keeps its `BackendId`, and with it its health, ejections,
//! latency estimate and in-flight counts (every per-backend table is indexed by it). A new
//! backend gets a free number. A removed one keeps its number while anything may still use
//! it (a generation that had it still runs, a request to it is in flight) and gets it back,
//! state and all, if it returns meanwhile; after that its number is free for the next new
//! backend, which starts with a clean state (`Numbered::reborn`). So the per-backend tables
//! are as large as the most backends configured at once (plus those still draining), not as
//! the history of every backend a reload ever named; at most `MAX_BACKENDS`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use super::BackendId;
use super::load::MAX_BACKENDS;
use crate::config::Config;

/// The numbering of the backends the process knows.
#[derive(Debug, Default)]
pub struct BackendIds {
    known: HashMap<(String, SocketAddr), BackendId>,
    /// Removed backends' numbers, with the generation that removed them.
    retiring: Vec<(BackendId, u64)>,
    /// Numbers nothing uses any more, for new backends.
    free: Vec<BackendId>,
    /// Numbers handed out so far: the size the per-backend tables need.
    slots: usize,
}

/// A config's backends numbered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Numbered {
    /// Every backend's number, in config order (group by group).
    pub ids: Vec<BackendId>,
    /// The numbers that belonged to a backend gone for good: their state must start afresh.
    pub reborn: Vec<BackendId>,
}

/// A config would need more than `MAX_BACKENDS` numbers at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyBackends {
    pub new: usize,
    pub known: usize,
}

impl std::fmt::Display for TooManyBackends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} new backends beside the {} known (removed ones still draining included) make \
             more than {MAX_BACKENDS}",
            self.new, self.known
        )
    }
}

impl BackendIds {
    /// How many numbers the per-backend tables must have room for.
    pub fn len(&self) -> usize {
        self.slots
    }

    pub fn is_empty(&self) -> bool {
        self.slots == 0
    }

    /// Numbers `config`'s backends for generation `generation`: the known keep theirs, the
    /// new take free numbers or new ones; the known ones `config` lacks start retiring.
    /// Nothing changes when the result is an error.
    pub fn assign(
        &mut self,
        config: &Config,
        generation: u64,
    ) -> Result<Numbered, TooManyBackends> {
        let keys: Vec<(String, SocketAddr)> = config
            .upstreams
            .iter()
            .flat_map(|u| u.backends.iter().map(|b| (u.name.clone(), b.address)))
            .collect();
        let new = keys.iter().filter(|k| !self.known.contains_key(*k)).count();
        let fresh = new.saturating_sub(self.free.len());
        if self.slots + fresh > MAX_BACKENDS {
            return Err(TooManyBackends {
                new,
                known: self.known.len(),
            });
        }
        let mut reborn = Vec::new();
        let ids = keys
            .iter()
            .map(|key| match self.known.get(key) {
                Some(&id) => id,
                None => {
                    let id = match self.free.pop() {
                        Some(id) => {
                            reborn.push(id);
                            id
                        }
                        None => {
                            self.slots += 1;
                            BackendId(self.slots - 1)
                        }
                    };
                    self.known.insert(key.clone(), id);
                    id
                }
            })
            .collect::<Vec<_>>();
        let configured: HashSet<BackendId> = ids.iter().copied().collect();
        self.retiring.retain(|(id, _)| !configured.contains(id));
        let retiring: HashSet<BackendId> = self.retiring.iter().map(|&(id, _)| id).collect();
        for &id in self.known.values() {
            if !configured.contains(&id) && !retiring.contains(&id) {
                self.retiring.push((id, generation));
            }
        }
        Ok(Numbered { ids, reborn })
    }

    /// Frees the numbers of removed backends that nothing can use any more: every
    /// generation still running is at least `oldest_running` (so none older than the one
    /// that removed them), and `in_flight` says no request to them is under way.
    pub fn release(&mut self, oldest_running: u64, in_flight: impl Fn(BackendId) -> bool) {
        let (done, still): (Vec<_>, Vec<_>) = self
            .retiring
            .iter()
            .partition(|&&(id, removed_in)| removed_in <= oldest_running && !in_flight(id));
        self.retiring = still;
        let done: HashSet<BackendId> = done.into_iter().map(|(id, _)| id).collect();
        self.known.retain(|_, id| !done.contains(id));
        let mut done: Vec<BackendId> = done.into_iter().collect();
        // Highest first: `assign` pops, so the lowest free number goes first.
        done.sort_by_key(|id| std::cmp::Reverse(id.0));
        self.free.extend(done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackendConfig, Balance, UpstreamConfig};

    fn config(groups: &[(&str, &[u16])]) -> Config {
        let mut config = Config::for_cli(Vec::new(), Vec::new());
        config.upstreams = groups
            .iter()
            .map(|(name, ports)| {
                let backends = ports
                    .iter()
                    .map(|&p| BackendConfig::new(SocketAddr::from(([127, 0, 0, 1], p)), 1))
                    .collect();
                UpstreamConfig::new(name.to_string(), Balance::RoundRobin, backends)
            })
            .collect();
        config
    }

    fn numbers(ids: Vec<BackendId>) -> Vec<usize> {
        ids.into_iter().map(|id| id.0).collect()
    }

    #[test]
    fn backends_keep_their_number_by_group_and_address() {
        let mut ids = BackendIds::default();
        let first = ids
            .assign(&config(&[("a", &[1, 2]), ("b", &[1])]), 1)
            .unwrap();
        assert_eq!(numbers(first.ids), [0, 1, 2]);
        // b:1 removed, a:3 added, the groups reordered.
        let second = ids
            .assign(&config(&[("c", &[9]), ("a", &[3, 2, 1])]), 2)
            .unwrap();
        assert_eq!(numbers(second.ids), [3, 4, 1, 0]);
        // b:1 comes back, while still retiring, with its old number (and state).
        let third = ids.assign(&config(&[("b", &[1])]), 3).unwrap();
        assert_eq!((numbers(third.ids), third.reborn), (vec![2], vec![]));
        assert_eq!(ids.len(), 5);
    }

    #[test]
    fn a_removed_backends_number_is_reused_once_nothing_can_use_it() {
        let mut ids = BackendIds::default();
        ids.assign(&config(&[("a", &[1, 2, 3])]), 1).unwrap();
        ids.assign(&config(&[("a", &[1])]), 2).unwrap();
        // Generation 1 still runs: a:2 and a:3 stay known.
        ids.release(1, |_| false);
        let third = ids.assign(&config(&[("a", &[1, 4])]), 3).unwrap();
        assert_eq!(third.reborn, []);
        assert_eq!(ids.len(), 4);
        // Generation 1 is gone, but a request to a:3 (number 2) is still in flight.
        ids.release(2, |id| id == BackendId(2));
        let fourth = ids.assign(&config(&[("a", &[1, 4, 5])]), 4).unwrap();
        assert_eq!(numbers(fourth.ids), [0, 3, 1]);
        assert_eq!(fourth.reborn, [BackendId(1)]);
        ids.release(4, |_| false);
        let fifth = ids.assign(&config(&[("a", &[1, 4, 5, 2])]), 5).unwrap();
        assert_eq!(numbers(fifth.ids), [0, 3, 1, 2]);
        assert_eq!(fifth.reborn, [BackendId(2)]);
        assert_eq!(
            ids.len(),
            4,
            "the tables never grew past the most backends at once"
        );
    }

    #[test]
    fn too_many_numbers_is_an_error_that_numbers_nothing() {
        let mut ids = BackendIds::default();
        ids.assign(&config(&[("a", &[1])]), 1).unwrap();
        let ports: Vec<u16> = (1..=u16::MAX).collect();
        let err = ids
            .assign(&config(&[("b", &ports), ("c", &[1])]), 2)
            .unwrap_err();
        assert_eq!(
            err,
            TooManyBackends {
                new: 65_536,
                known: 1
            }
        );
        assert_eq!(ids.len(), 1);
        assert!(err.to_string().contains("more than 65536"), "{err}");
        assert!(ids.retiring.is_empty(), "a refused config retires nothing");
    }
}
