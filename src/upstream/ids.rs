//! Backend numbers that stay the same across config reloads.
//!
//! A backend is known by its group's name and its address: reloading a config that keeps
//! `127.0.0.1:9001` in group `api` keeps its `BackendId`, and with it its health, ejections,
//! latency estimate and in-flight counts (every per-backend table is indexed by it). A new
//! backend gets the next number; a removed one keeps its number (its last requests may still
//! be running) and gets it back if it returns. Numbers are never reused for another backend,
//! so a process numbers at most `MAX_BACKENDS` in its life; a binary upgrade starts afresh.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::BackendId;
use super::load::MAX_BACKENDS;
use crate::config::Config;

/// The numbering of every backend the process has known.
#[derive(Debug, Default)]
pub struct BackendIds {
    known: HashMap<(String, SocketAddr), BackendId>,
}

/// A config would make the process number more backends than `MAX_BACKENDS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyBackends {
    pub new: usize,
    pub known: usize,
}

impl std::fmt::Display for TooManyBackends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} new backends would make {} known to this process (removed ones included), \
             more than {MAX_BACKENDS}: restart or upgrade the binary to number them afresh",
            self.new,
            self.new + self.known
        )
    }
}

impl BackendIds {
    /// How many numbers are taken.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// The number of every backend of `config`, in config order (group by group), numbering
    /// the new ones. Nothing is numbered when the result is an error.
    pub fn assign(&mut self, config: &Config) -> Result<Vec<BackendId>, TooManyBackends> {
        let keys: Vec<(String, SocketAddr)> = config
            .upstreams
            .iter()
            .flat_map(|u| u.backends.iter().map(|b| (u.name.clone(), b.address)))
            .collect();
        let new = keys.iter().filter(|k| !self.known.contains_key(*k)).count();
        if self.known.len() + new > MAX_BACKENDS {
            return Err(TooManyBackends {
                new,
                known: self.known.len(),
            });
        }
        let ids = keys
            .into_iter()
            .map(|key| {
                let next = BackendId(self.known.len());
                *self.known.entry(key).or_insert(next)
            })
            .collect();
        Ok(ids)
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
        let first = ids.assign(&config(&[("a", &[1, 2]), ("b", &[1])])).unwrap();
        assert_eq!(numbers(first), [0, 1, 2]);
        // b:1 removed, a:3 added, the groups reordered.
        let second = ids
            .assign(&config(&[("c", &[9]), ("a", &[3, 2, 1])]))
            .unwrap();
        assert_eq!(numbers(second), [3, 4, 1, 0]);
        // b:1 comes back with its old number.
        let third = ids.assign(&config(&[("b", &[1])])).unwrap();
        assert_eq!(numbers(third), [2]);
        assert_eq!(ids.len(), 5);
    }

    #[test]
    fn too_many_numbers_is_an_error_that_numbers_nothing() {
        let mut ids = BackendIds::default();
        ids.assign(&config(&[("a", &[1])])).unwrap();
        let ports: Vec<u16> = (1..=u16::MAX).collect();
        let err = ids
            .assign(&config(&[("b", &ports), ("c", &[1])]))
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
    }
}
