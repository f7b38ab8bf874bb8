//! Least connections: the member with the fewest in-flight requests host-wide per unit of
//! effective weight, counting the request about to be sent (`(inflight + 1) / weight`, so an
//! idle heavy backend beats an idle light one).

use std::cell::Cell;

use super::{Candidate, Eligible};

/// The scan starts one member further on each pick: among equally loaded members the first
/// in scan order wins, so ties rotate, and workers (seeded with different starts) don't all
/// choose the same member between two reconciles.
pub(super) fn pick(eligible: &Eligible, next_start: &Cell<usize>) -> Option<usize> {
    let members = eligible.candidates.len();
    if members == 0 {
        return None;
    }
    let start = next_start.get() % members;
    next_start.set(start + 1);
    let mut best: Option<(usize, f64)> = None;
    for offset in 0..members {
        let index = (start + offset) % members;
        let Some(candidate) = eligible.get(index) else {
            continue;
        };
        let load = load(candidate);
        if best.is_none_or(|(_, lightest)| load < lightest) {
            best = Some((index, load));
        }
    }
    best.map(|(index, _)| index)
}

/// In-flight requests per unit of effective weight, counting the one about to be sent.
pub(super) fn load(candidate: &Candidate) -> f64 {
    (f64::from(candidate.inflight) + 1.0) / candidate.weight
}

#[cfg(test)]
mod tests {
    use crate::config::Balance;
    use crate::upstream::BackendId;
    use crate::upstream::balance::tests::{Group, assert_shares};
    use crate::upstream::load::{LoadBoard, LoadView};
    use std::time::Duration;

    #[test]
    fn the_least_loaded_member_is_picked() {
        let group = Group::new(&[1, 1, 1], Balance::LeastConn);
        group.load.start(BackendId(0));
        group.load.start(BackendId(0));
        group.load.start(BackendId(2));
        assert_eq!(group.pick(), Some(BackendId(1)));
        group.load.start(BackendId(1));
        group.load.start(BackendId(1));
        assert_eq!(group.pick(), Some(BackendId(2)));
    }

    #[test]
    fn load_is_compared_per_unit_of_weight() {
        let group = Group::new(&[1, 3], Balance::LeastConn);
        for _ in 0..2 {
            group.load.start(BackendId(1));
        }
        // (2 + 1) / 3 = 1 against (0 + 1) / 1 = 1: a tie either way; one more tips it.
        group.load.start(BackendId(1));
        assert_eq!(group.pick(), Some(BackendId(0)));
        group.load.start(BackendId(0));
        assert_eq!(group.pick(), Some(BackendId(1)));
    }

    #[test]
    fn with_requests_outstanding_weights_1_2_3_get_their_shares() {
        let group = Group::new(&[1, 2, 3], Balance::LeastConn);
        assert_shares(&group.counts_holding_load(6_000), &[1.0, 2.0, 3.0], 0.01);
    }

    #[test]
    fn ties_rotate_instead_of_repeating_one_member() {
        let group = Group::new(&[1, 1, 1], Balance::LeastConn);
        let mut picks: Vec<_> = (0..3).map(|_| group.pick().unwrap().0).collect();
        picks.sort_unstable();
        assert_eq!(picks, [0, 1, 2]);
    }

    #[test]
    fn idle_workers_do_not_all_start_on_the_same_member() {
        let firsts: Vec<_> = (0..8)
            .map(|seed| {
                let group = Group::with_seed(&[1, 1, 1, 1], Balance::LeastConn, seed);
                group.pick().unwrap()
            })
            .collect();
        assert!(firsts.iter().any(|&b| b != firsts[0]), "{firsts:?}");
    }

    #[test]
    fn a_burst_published_by_another_worker_is_avoided_after_reconcile() {
        let board = LoadBoard::new(2, 2);
        let interval = Duration::from_millis(50);
        let other = LoadView::new(board.clone(), 0, interval).unwrap();
        let group = Group::on_view(&[1, 1], Balance::LeastConn, {
            LoadView::new(board, 1, interval).unwrap()
        });
        group.load.start(BackendId(1));
        for _ in 0..20 {
            other.start(BackendId(0));
        }
        assert_eq!(group.pick(), Some(BackendId(0)), "not yet seen");
        group.load.reconcile();
        let counts = group.counts_holding_load(10);
        assert_eq!(counts, [0, 10], "backend 0 carries 20 elsewhere");
    }
}
