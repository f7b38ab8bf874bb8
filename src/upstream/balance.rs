//! Choosing a backend within a group.

use std::cell::Cell;

use super::BackendId;

/// A group's balancing state, local to one worker.
pub struct Balancer {
    members: Vec<BackendId>,
    algorithm: Algorithm,
}

enum Algorithm {
    RoundRobin { next: Cell<usize> },
}

impl Balancer {
    pub fn round_robin(members: Vec<BackendId>) -> Self {
        Self {
            members,
            algorithm: Algorithm::RoundRobin { next: Cell::new(0) },
        }
    }

    pub fn members(&self) -> &[BackendId] {
        &self.members
    }

    pub fn pick(&self) -> Option<BackendId> {
        if self.members.is_empty() {
            return None;
        }
        match &self.algorithm {
            Algorithm::RoundRobin { next } => {
                let i = next.get() % self.members.len();
                next.set(i + 1);
                Some(self.members[i])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_cycles_through_members_in_order() {
        let b = Balancer::round_robin(vec![BackendId(3), BackendId(5), BackendId(7)]);
        let picks: Vec<_> = (0..6).map(|_| b.pick().unwrap().0).collect();
        assert_eq!(picks, [3, 5, 7, 3, 5, 7]);
    }

    #[test]
    fn empty_group_picks_nothing() {
        assert_eq!(Balancer::round_robin(Vec::new()).pick(), None);
    }
}
