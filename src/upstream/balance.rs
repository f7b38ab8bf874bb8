//! Choosing a backend within a group.

use std::cell::{Cell, RefCell};

use super::BackendId;

/// A group's balancing state, local to one worker.
pub struct Balancer {
    members: Vec<BackendId>,
    algorithm: Algorithm,
}

enum Algorithm {
    /// Equal weights: a plain rotation.
    RoundRobin { next: Cell<usize> },
    /// Smooth weighted round robin (as nginx does it): every pick raises each member's
    /// current weight by its weight and takes the highest, which is then lowered by the total.
    /// Picks interleave (a,b,a,c,a...) instead of coming in runs.
    Weighted {
        weights: Vec<i64>,
        total: i64,
        current: RefCell<Vec<i64>>,
    },
}

impl Balancer {
    /// Round robin over `(member, weight)`, honouring weights when they differ.
    pub fn round_robin(members: Vec<(BackendId, u32)>) -> Self {
        let weights: Vec<i64> = members.iter().map(|&(_, w)| i64::from(w.max(1))).collect();
        let members = members.into_iter().map(|(id, _)| id).collect();
        let algorithm = if weights.windows(2).all(|w| w[0] == w[1]) {
            Algorithm::RoundRobin { next: Cell::new(0) }
        } else {
            let total = weights.iter().sum();
            let current = RefCell::new(vec![0; weights.len()]);
            Algorithm::Weighted {
                weights,
                total,
                current,
            }
        };
        Self { members, algorithm }
    }

    pub fn members(&self) -> &[BackendId] {
        &self.members
    }

    pub fn pick(&self) -> Option<BackendId> {
        if self.members.is_empty() {
            return None;
        }
        let index = match &self.algorithm {
            Algorithm::RoundRobin { next } => {
                let i = next.get() % self.members.len();
                next.set(i + 1);
                i
            }
            Algorithm::Weighted {
                weights,
                total,
                current,
            } => {
                let mut current = current.borrow_mut();
                let mut best = (0, i64::MIN);
                for (i, (c, w)) in current.iter_mut().zip(weights).enumerate() {
                    *c += w;
                    if *c > best.1 {
                        best = (i, *c);
                    }
                }
                current[best.0] -= total;
                best.0
            }
        };
        Some(self.members[index])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(weights: &[u32]) -> Vec<(BackendId, u32)> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| (BackendId(i), w))
            .collect()
    }

    #[test]
    fn round_robin_cycles_through_members_in_order() {
        let b = Balancer::round_robin(ids(&[1, 1, 1]));
        let picks: Vec<_> = (0..6).map(|_| b.pick().unwrap().0).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weights_are_honoured_and_interleaved() {
        let b = Balancer::round_robin(ids(&[5, 1, 1]));
        let picks: Vec<_> = (0..7).map(|_| b.pick().unwrap().0).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn empty_group_picks_nothing() {
        assert_eq!(Balancer::round_robin(Vec::new()).pick(), None);
    }
}
