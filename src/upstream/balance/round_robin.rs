//! Smooth weighted round robin (as nginx does it): every pick raises each eligible member's
//! current weight by its effective weight and takes the highest, which is then lowered by the
//! total. Picks interleave (a,b,a,c,a...) instead of coming in runs; equal weights give a plain
//! rotation in member order.

use std::cell::RefCell;

use super::Eligible;

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
    // Weights are at most 1000 (config), so the product is far from i64's range.
    ((weight * FIXED_POINT_ONE).round() as i64).max(1)
}

#[cfg(test)]
mod tests {
    use crate::config::Balance;
    use crate::upstream::balance::tests::{Group, Health};

    #[test]
    fn round_robin_cycles_through_members_in_order() {
        let group = Group::new(&[1, 1, 1], Balance::RoundRobin);
        let picks: Vec<_> = (0..6).map(|_| group.pick().unwrap().0).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weights_are_honoured_and_interleaved() {
        let group = Group::new(&[5, 1, 1], Balance::Weighted);
        let picks: Vec<_> = (0..7).map(|_| group.pick().unwrap().0).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn weights_1_2_3_get_exactly_their_shares() {
        let group = Group::new(&[1, 2, 3], Balance::RoundRobin);
        assert_eq!(group.counts(6000), [1000, 2000, 3000]);
    }

    #[test]
    fn an_unavailable_member_is_skipped_without_disturbing_the_rotation_of_the_rest() {
        let mut group = Group::new(&[1, 1, 1], Balance::RoundRobin);
        group.health = Health::down(&[1]);
        let picks: Vec<_> = (0..4).map(|_| group.pick().unwrap().0).collect();
        assert_eq!(picks, [0, 2, 0, 2]);
        group.health = Health::up();
        let counts = group.counts(300);
        assert!(counts.iter().all(|c| (99..=101).contains(c)), "{counts:?}");
    }
}
