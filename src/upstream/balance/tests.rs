//! Rules every algorithm follows (module docs), plus the test harness the per-algorithm tests
//! share: a group of backends `127.0.0.1:9000+i` whose `BackendId`s are their indexes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::config::HashKey;

pub(super) fn backend(index: usize, weight: u32) -> BackendConfig {
    let address = SocketAddr::from(([127, 0, 0, 1], 9000 + index as u16));
    BackendConfig::new(address, weight)
}

/// Per-backend availability; anything not listed is up at full weight.
#[derive(Default)]
pub(super) struct Health(HashMap<usize, Option<f64>>);

impl Health {
    pub(super) fn up() -> Self {
        Self::default()
    }

    pub(super) fn down(backends: &[usize]) -> Self {
        Self(backends.iter().map(|&b| (b, None)).collect())
    }

    pub(super) fn factor(backend: usize, factor: f64) -> Self {
        Self(HashMap::from([(backend, Some(factor))]))
    }
}

impl Availability for Health {
    fn weight_factor(&self, backend: BackendId) -> Option<f64> {
        self.0.get(&backend.0).copied().unwrap_or(Some(1.0))
    }
}

pub(super) struct Group {
    pub configs: Vec<BackendConfig>,
    pub balancer: Balancer,
    pub load: LoadView,
    pub health: Health,
    pub exclude: Vec<BackendId>,
    pub key: u64,
}

impl Group {
    pub(super) fn new(weights: &[u32], balance: Balance) -> Self {
        Self::with_seed(weights, balance, 1)
    }

    pub(super) fn with_seed(weights: &[u32], balance: Balance, seed: u64) -> Self {
        let configs = weights.iter().enumerate().map(|(i, &w)| backend(i, w));
        Self::from_configs(configs.collect(), balance, seed)
    }

    pub(super) fn from_configs(configs: Vec<BackendConfig>, balance: Balance, seed: u64) -> Self {
        let load = LoadView::standalone(configs.len(), Duration::from_millis(50));
        Self::build(configs, balance, seed, load)
    }

    pub(super) fn on_view(weights: &[u32], balance: Balance, load: LoadView) -> Self {
        let configs = weights.iter().enumerate().map(|(i, &w)| backend(i, w));
        Self::build(configs.collect(), balance, 1, load)
    }

    fn build(configs: Vec<BackendConfig>, balance: Balance, seed: u64, load: LoadView) -> Self {
        let members: Vec<_> = configs
            .iter()
            .enumerate()
            .map(|(i, c)| (BackendId(i), c))
            .collect();
        let balancer = Balancer::new(&members, &balance, seed);
        Self {
            configs,
            balancer,
            load,
            health: Health::up(),
            exclude: Vec::new(),
            key: 0,
        }
    }

    pub(super) fn pick(&self) -> Option<BackendId> {
        self.balancer.pick(&PickContext {
            load: &self.load,
            key_hash: self.key,
            availability: &self.health,
            exclude: &self.exclude,
        })
    }

    /// Picks per backend over `picks` picks, each finished before the next.
    pub(super) fn counts(&self, picks: usize) -> Vec<usize> {
        self.count(picks, false)
    }

    /// Picks per backend over `picks` picks that all stay in flight.
    pub(super) fn counts_holding_load(&self, picks: usize) -> Vec<usize> {
        self.count(picks, true)
    }

    fn count(&self, picks: usize, hold: bool) -> Vec<usize> {
        let mut counts = vec![0; self.configs.len()];
        for _ in 0..picks {
            let Some(picked) = self.pick() else { continue };
            counts[picked.0] += 1;
            if hold {
                self.load.start(picked);
            }
        }
        counts
    }
}

/// Each count's share of the total is within `tolerance` (absolute) of its expected share.
pub(super) fn assert_shares(counts: &[usize], expected: &[f64], tolerance: f64) {
    let total: usize = counts.iter().sum();
    let expected_total: f64 = expected.iter().sum();
    assert!(total > 0, "no picks");
    for (count, want) in counts.iter().zip(expected) {
        let share = *count as f64 / total as f64;
        let want = want / expected_total;
        assert!(
            (share - want).abs() <= tolerance,
            "shares {counts:?}, expected proportional to {expected:?}"
        );
    }
}

fn every_algorithm() -> [Balance; 7] {
    [
        Balance::RoundRobin,
        Balance::Weighted,
        Balance::LeastConn,
        Balance::Hash(HashKey::ClientIp),
        Balance::Random,
        Balance::P2c(P2cMetric::InFlight),
        Balance::P2c(P2cMetric::Latency),
    ]
}

/// Backends picked over 200 picks (with varying hash keys), each finished at once.
fn picked(group: &mut Group) -> Vec<usize> {
    let mut seen = vec![0; group.configs.len()];
    for key in 0..200 {
        group.key = random::mix64(key);
        if let Some(id) = group.pick() {
            seen[id.0] += 1;
        }
    }
    seen
}

fn with_backups(weights: &[u32], backups: &[usize], balance: Balance) -> Group {
    let configs = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| BackendConfig {
            backup: backups.contains(&i),
            ..backend(i, w)
        })
        .collect();
    Group::from_configs(configs, balance, 1)
}

#[test]
fn an_empty_group_picks_nothing() {
    for balance in every_algorithm() {
        assert_eq!(Group::new(&[], balance).pick(), None);
    }
}

#[test]
fn unavailable_backends_get_nothing_and_none_left_means_no_pick() {
    for balance in every_algorithm() {
        let mut group = Group::new(&[1, 1, 1], balance.clone());
        group.health = Health::down(&[0, 2]);
        assert_eq!(picked(&mut group), [0, 200, 0], "{balance:?}");
        group.health = Health::down(&[0, 1, 2]);
        assert_eq!(group.pick(), None, "{balance:?}");
    }
}

#[test]
fn a_zero_or_nonsense_factor_counts_as_unavailable() {
    for factor in [0.0, -1.0, f64::NAN] {
        let mut group = Group::new(&[1, 1], Balance::RoundRobin);
        group.health = Health::factor(0, factor);
        assert_eq!(picked(&mut group), [0, 200], "{factor}");
    }
}

#[test]
fn excluded_backends_are_avoided_while_another_is_available() {
    for balance in every_algorithm() {
        let mut group = Group::new(&[1, 1, 1], balance.clone());
        group.exclude = vec![BackendId(0), BackendId(1)];
        assert_eq!(picked(&mut group), [0, 0, 200], "{balance:?}");
        group.health = Health::down(&[2]);
        let fallback = picked(&mut group);
        assert_eq!(fallback[2], 0, "{balance:?}");
        assert_eq!(
            fallback[0] + fallback[1],
            200,
            "{balance:?}: retried on a tried one"
        );
    }
}

#[test]
fn backends_at_max_conns_are_skipped_until_one_finishes() {
    for balance in every_algorithm() {
        let mut configs = vec![backend(0, 1), backend(1, 1)];
        configs[0].max_conns = Some(2);
        let mut group = Group::from_configs(configs, balance.clone(), 1);
        group.load.start(BackendId(0));
        group.load.start(BackendId(0));
        assert_eq!(picked(&mut group), [0, 200], "{balance:?}");
        group.health = Health::down(&[1]);
        assert_eq!(
            group.pick(),
            None,
            "{balance:?}: full is full, even for retries"
        );
        group.load.finish(BackendId(0), None);
        assert_eq!(group.pick(), Some(BackendId(0)), "{balance:?}");
    }
}

#[test]
fn backups_serve_only_when_no_primary_can() {
    for balance in every_algorithm() {
        let mut group = with_backups(&[1, 1, 1, 1], &[2, 3], balance.clone());
        let normal = picked(&mut group);
        assert_eq!(normal[2] + normal[3], 0, "{balance:?}: {normal:?}");
        group.health = Health::down(&[0]);
        assert_eq!(picked(&mut group), [0, 200, 0, 0], "{balance:?}");
        group.health = Health::down(&[0, 1]);
        let failover = picked(&mut group);
        assert_eq!(failover[2] + failover[3], 200, "{balance:?}");
        group.health = Health::down(&[0, 1, 2, 3]);
        assert_eq!(group.pick(), None, "{balance:?}");
    }
}

#[test]
fn a_full_primary_does_not_bring_in_backups_while_another_primary_is_free() {
    let mut configs = vec![backend(0, 1), backend(1, 1), backend(2, 1)];
    configs[0].max_conns = Some(1);
    configs[2].backup = true;
    let mut group = Group::from_configs(configs, Balance::LeastConn, 1);
    group.load.start(BackendId(0));
    assert_eq!(picked(&mut group), [0, 200, 0]);
}

#[test]
fn a_retry_prefers_an_untried_backup_over_a_tried_primary() {
    for balance in every_algorithm() {
        let mut group = with_backups(&[1, 1], &[1], balance.clone());
        group.exclude = vec![BackendId(0)];
        assert_eq!(picked(&mut group), [0, 200], "{balance:?}");
    }
}

#[test]
fn slow_start_factor_scales_the_share_of_weighted_algorithms() {
    let cases = [
        (Balance::RoundRobin, false),
        (Balance::Random, false),
        (Balance::LeastConn, true),
        (Balance::P2c(P2cMetric::InFlight), true),
    ];
    for (balance, hold) in cases {
        let mut group = Group::new(&[1, 1, 1], balance.clone());
        group.health = Health::factor(0, 0.1);
        let counts = if hold {
            group.counts_holding_load(10_000)
        } else {
            group.counts(10_000)
        };
        assert_shares(&counts, &[0.1, 1.0, 1.0], 0.02);
        let peer = (counts[1] + counts[2]) as f64 / 2.0;
        let ratio = counts[0] as f64 / peer;
        assert!((ratio - 0.1).abs() < 0.02, "{balance:?}: {counts:?}");
    }
}

#[test]
fn a_factor_above_one_counts_as_one() {
    let mut group = Group::new(&[1, 1], Balance::RoundRobin);
    group.health = Health::factor(0, 5.0);
    assert_eq!(group.counts(100), [50, 50]);
}

#[test]
fn members_lists_the_group_in_config_order() {
    let group = Group::new(&[1, 2, 3], Balance::Random);
    assert_eq!(
        group.balancer.members(),
        [BackendId(0), BackendId(1), BackendId(2)]
    );
}

#[test]
fn random_seeds_differ_between_calls() {
    assert_ne!(random_seed(), random_seed());
}
