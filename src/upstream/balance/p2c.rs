//! Power of two choices: two distinct members drawn at random (weighted), the less loaded one
//! wins. Almost as good as least connections at spreading load, but two workers with the same
//! stale view rarely pile onto the same member.

use super::least_conn::load;
use super::random::{Rng, weighted_choice};
use super::{BackendId, Eligible};
use crate::config::P2cMetric;
use crate::upstream::load::LoadView;

pub(super) fn pick(
    eligible: &Eligible,
    rng: &Rng,
    metric: P2cMetric,
    view: &LoadView,
    ids: &[BackendId],
) -> Option<usize> {
    let first = weighted_choice(eligible, rng, None)?;
    let Some(second) = weighted_choice(eligible, rng, Some(first)) else {
        return Some(first);
    };
    let (Some(a), Some(b)) = (eligible.get(first), eligible.get(second)) else {
        return Some(first);
    };
    let (mut cost_a, mut cost_b) = (load(a), load(b));
    if metric == P2cMetric::Latency {
        let latency = |index: usize| ids.get(index).and_then(|&id| view.ewma(id));
        // Unmeasured against measured: compare in-flight alone rather than guess a latency.
        if let (Some(la), Some(lb)) = (latency(first), latency(second)) {
            cost_a *= la.as_secs_f64();
            cost_b *= lb.as_secs_f64();
        }
    }
    Some(if cost_b < cost_a { second } else { first })
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::time::Duration;

    use crate::config::{Balance, P2cMetric};
    use crate::upstream::BackendId;
    use crate::upstream::balance::tests::{Group, assert_shares};

    #[test]
    fn of_two_members_the_less_loaded_one_wins() {
        let group = Group::new(&[1, 1], Balance::P2c(P2cMetric::InFlight));
        group.load.start(BackendId(0));
        for _ in 0..10 {
            assert_eq!(group.pick(), Some(BackendId(1)));
        }
    }

    #[test]
    fn with_requests_outstanding_weights_1_2_3_get_their_shares() {
        let group = Group::new(&[1, 2, 3], Balance::P2c(P2cMetric::InFlight));
        assert_shares(&group.counts_holding_load(6_000), &[1.0, 2.0, 3.0], 0.02);
    }

    #[test]
    fn without_load_picks_are_spread_over_every_member() {
        let group = Group::new(&[1, 1, 1, 1], Balance::P2c(P2cMetric::InFlight));
        assert_shares(&group.counts(10_000), &[1.0; 4], 0.02);
    }

    /// Sends `requests` with up to `concurrency` in flight; each finishes (oldest first) with
    /// its backend's latency. Returns the picks per backend.
    fn run_with_latencies(group: &Group, latencies: &[Duration], requests: usize) -> Vec<usize> {
        let concurrency = 8;
        let mut counts = vec![0; latencies.len()];
        let mut in_flight = VecDeque::new();
        for _ in 0..requests {
            if in_flight.len() == concurrency
                && let Some(done) = in_flight.pop_front()
            {
                group.load.finish(done, Some(latencies[done.0]));
            }
            let picked = group.pick().unwrap();
            group.load.start(picked);
            counts[picked.0] += 1;
            in_flight.push_back(picked);
        }
        counts
    }

    #[test]
    fn latency_metric_strongly_prefers_the_faster_backend() {
        let group = Group::new(&[1, 1], Balance::P2c(P2cMetric::Latency));
        let latencies = [Duration::from_millis(10), Duration::from_millis(100)];
        let counts = run_with_latencies(&group, &latencies, 10_000);
        assert!(counts[1] * 5 < counts[0], "{counts:?}");
        assert!(counts[1] > 0, "the slow one still gets probed: {counts:?}");
    }

    #[test]
    fn inflight_metric_ignores_latency() {
        let group = Group::new(&[1, 1], Balance::P2c(P2cMetric::InFlight));
        let latencies = [Duration::from_millis(10), Duration::from_millis(100)];
        let counts = run_with_latencies(&group, &latencies, 10_000);
        assert_shares(&counts, &[1.0, 1.0], 0.05);
    }

    #[test]
    fn an_unmeasured_backend_is_compared_on_inflight_alone() {
        let group = Group::new(&[1, 1], Balance::P2c(P2cMetric::Latency));
        group
            .load
            .finish(BackendId(0), Some(Duration::from_secs(5)));
        group.load.start(BackendId(1));
        for _ in 0..10 {
            assert_eq!(
                group.pick(),
                Some(BackendId(0)),
                "slow but idle beats busy unmeasured"
            );
        }
        group
            .load
            .finish(BackendId(1), Some(Duration::from_millis(1)));
        for _ in 0..10 {
            assert_eq!(
                group.pick(),
                Some(BackendId(1)),
                "once measured, latency counts"
            );
        }
    }
}
