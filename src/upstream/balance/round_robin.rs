//! Round robin. Equal weights: a rotation (O(1) per pick while members are up). Differing
//! weights: smooth weighted round robin (as nginx does it): every pick raises each eligible
//! member's current weight by its effective weight and takes the highest, which is then lowered
//! by the total. Picks interleave (a,b,a,c,a...) instead of coming in runs.

use std::cell::{Cell, RefCell};

use super::random::Rng;
use super::{Candidate, Eligible};

/// Whether a member takes its turn in the rotation: always at full weight, with probability
/// `factor` in slow start (so it gets that fraction of its peers' picks).
pub(super) fn takes_turn(candidate: &Candidate, rng: &Rng) -> bool {
    candidate.factor >= 1.0 || rng.unit() < candidate.factor
}

/// The rotation among `eligible` (the general path, when some tier other than the primaries
/// serves): the next eligible member that takes its turn, else the next eligible one.
pub(super) fn rotate(eligible: &Eligible, next: &Cell<usize>, rng: &Rng) -> Option<usize> {
    let members = eligible.candidates.len();
    let start = next.get();
    let mut first = None;
    for offset in 0..members {
        let index = (start + offset) % members;
        let Some(candidate) = eligible.get(index) else {
            continue;
        };
        if takes_turn(candidate, rng) {
            first = Some(index);
            break;
        }
        first.get_or_insert(index);
    }
    let index = first?;
    next.set(index + 1);
    Some(index)
}

/// Effective weights are fractional (slow start); in fixed point they stay exact for whole
/// weights, so the sequence never drifts.
const FIXED_POINT_ONE: f64 = 1024.0;

pub(super) struct SmoothWeighted {
    current: RefCell<Vec<i64>>,
}

impl SmoothWeighted {
    pub(super) fn new(members: usize) -> Self {
        Self {
            current: RefCell::new(vec![0; members]),
        }
    }

    pub(super) fn pick(&self, eligible: &Eligible) -> Option<usize> {
        let mut current = self.current.try_borrow_mut().ok()?;
        let mut total = 0i64;
        let mut best: Option<(usize, i64)> = None;
        for (index, candidate) in eligible.iter() {
            let weight = fixed_point(candidate.weight);
            let Some(slot) = current.get_mut(index) else {
                continue;
            };
            *slot = slot.saturating_add(weight);
            total = total.saturating_add(weight);
            if best.is_none_or(|(_, top)| *slot > top) {
                best = Some((index, *slot));
            }
        }
        let (index, _) = best?;
        if let Some(slot) = current.get_mut(index) {
            *slot = slot.saturating_sub(total);
        }
        Some(index)
    }
}

fn fixed_point(weight: f64) -> i64 {
    // Rounds (weights are positive) without a libm call; weights are at most 1000 (config), so
    // the product is far from i64's range.
    ((weight * FIXED_POINT_ONE + 0.5) as i64).max(1)
}

#[cfg(test)]
mod tests {
    use crate::config::Balance;
    use crate::upstream::balance::tests::{Group, Health};

    fn picks(group: &Group, count: usize) -> Vec<usize> {
        (0..count).map(|_| group.pick().unwrap().0).collect()
    }

    #[test]
    fn equal_weights_rotate_through_members_in_order() {
        let group = Group::new(&[1, 1, 1], Balance::RoundRobin);
        let picks = picks(&group, 7);
        assert!(
            picks.windows(2).all(|w| w[1] == (w[0] + 1) % 3),
            "{picks:?}"
        );
    }

    #[test]
    fn workers_start_their_rotations_at_different_members() {
        let firsts: Vec<_> = (0..8)
            .map(|seed| Group::with_seed(&[1, 1, 1, 1], Balance::RoundRobin, seed).pick())
            .collect();
        assert!(firsts.iter().any(|&b| b != firsts[0]), "{firsts:?}");
    }

    #[test]
    fn weights_are_honoured_and_interleaved() {
        let group = Group::new(&[5, 1, 1], Balance::Weighted);
        assert_eq!(picks(&group, 7), [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn weights_1_2_3_get_exactly_their_shares() {
        let group = Group::new(&[1, 2, 3], Balance::RoundRobin);
        assert_eq!(group.counts(6000), [1000, 2000, 3000]);
    }

    #[test]
    fn an_unavailable_member_is_skipped_and_the_rest_keep_their_order() {
        let mut group = Group::new(&[1, 1, 1], Balance::RoundRobin);
        group.health = Health::down(&[1]);
        let picks = picks(&group, 8);
        assert!(picks.windows(2).all(|w| w[0] != w[1]), "{picks:?}");
        assert!(!picks.contains(&1));
        group.health = Health::up();
        assert_eq!(group.counts(300), [100, 100, 100]);
    }

    #[test]
    fn a_weighted_member_back_from_down_gets_its_share_again() {
        let mut group = Group::new(&[2, 2, 3], Balance::Weighted);
        group.health = Health::down(&[1]);
        assert_eq!(group.counts(500), [200, 0, 300]);
        group.health = Health::up();
        let counts = group.counts(700);
        let close = [200, 200, 300]
            .iter()
            .zip(&counts)
            .all(|(e, c)| c.abs_diff(*e) <= 2);
        assert!(close, "{counts:?}");
    }

    #[test]
    fn when_only_backups_serve_they_rotate_too() {
        let mut group = Group::new(&[1, 1, 1, 1], Balance::RoundRobin);
        group.configs.iter_mut().for_each(|c| c.backup = true);
        let mut group = Group::from_configs(group.configs, Balance::RoundRobin, 1);
        group.health = Health::down(&[0]);
        let picks = picks(&group, 6);
        assert!(picks.windows(2).all(|w| w[0] != w[1]), "{picks:?}");
        assert_eq!(group.counts(300), [0, 100, 100, 100]);
    }
}
