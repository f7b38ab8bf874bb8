//! Weighted random choice, and the tiny per-worker PRNG behind it (splitmix64: a few lines,
//! statistically fine for spreading load, not for anything secret).

use std::cell::Cell;

use super::Eligible;

pub(super) struct Rng {
    state: Cell<u64>,
}

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Self {
            state: Cell::new(seed),
        }
    }

    pub(super) fn next_u64(&self) -> u64 {
        let state = self.state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.state.set(state);
        mix64(state)
    }

    /// Uniform in [0, 1).
    pub(super) fn unit(&self) -> f64 {
        unit_interval(self.next_u64())
    }

    /// Uniform in [0, n); 0 when n is 0.
    pub(super) fn below(&self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// splitmix64's finalizer: every input bit flips each output bit with probability ~1/2.
pub(super) fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The top 53 bits of `x` as a float in [0, 1).
pub(super) fn unit_interval(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

pub(super) fn pick(eligible: &Eligible, rng: &Rng) -> Option<usize> {
    weighted_choice(eligible, rng, None)
}

/// An eligible member other than `skip`, with probability proportional to effective weight.
pub(super) fn weighted_choice(
    eligible: &Eligible,
    rng: &Rng,
    skip: Option<usize>,
) -> Option<usize> {
    let others = || eligible.iter().filter(move |&(i, _)| Some(i) != skip);
    let total: f64 = others().map(|(_, c)| c.weight).sum();
    let mut target = rng.unit() * total;
    let mut last = None;
    for (index, candidate) in others() {
        if target < candidate.weight {
            return Some(index);
        }
        target -= candidate.weight;
        last = Some(index);
    }
    // Rounding can leave `target` a hair above the last weight.
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Balance;
    use crate::upstream::balance::tests::{Group, assert_shares};

    #[test]
    fn weights_1_2_3_get_their_shares() {
        let group = Group::new(&[1, 2, 3], Balance::Random);
        assert_shares(&group.counts(10_000), &[1.0, 2.0, 3.0], 0.02);
    }

    #[test]
    fn workers_seeded_differently_make_different_choices() {
        let sequence = |seed| {
            let group = Group::with_seed(&[1, 1, 1, 1], Balance::Random, seed);
            (0..16).map(|_| group.pick().unwrap().0).collect::<Vec<_>>()
        };
        assert_eq!(sequence(1), sequence(1));
        assert_ne!(sequence(1), sequence(2));
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let rng = Rng::new(7);
        let mut seen = [0usize; 5];
        for _ in 0..1000 {
            seen[rng.below(5)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 150), "{seen:?}");
        assert_eq!(rng.below(0), 0);
    }
}
