use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use super::passive::PassiveTransition;
use super::*;
use crate::config::{Balance, Config, UpstreamConfig};

const FIRST: BackendId = BackendId(0);
const OTHER: BackendId = BackendId(1);

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn passive(max_fails: u32) -> PassiveHealth {
    PassiveHealth {
        max_fails,
        on_5xx: true,
        cooldown: Duration::from_secs(10),
        max_cooldown: Duration::from_secs(35),
        stall: crate::config::StallDetection::Auto,
    }
}

/// One group "default" of two backends; the returned instant is not before the table's epoch.
fn table_with(passive: PassiveHealth, slow_start: Option<Duration>) -> (HealthTable, Instant) {
    let mut config = Config::for_cli(Vec::new(), vec![addr(9001), addr(9002)]);
    config.upstreams[0].passive = passive;
    config.upstreams[0].slow_start = slow_start;
    let table = HealthTable::new(&config);
    (table, Instant::now())
}

fn after(t0: Instant, millis: u64) -> Instant {
    t0 + Duration::from_millis(millis)
}

fn fail(table: &HealthTable, b: BackendId, times: u32, at: Instant) -> Vec<PassiveTransition> {
    (0..times)
        .filter_map(|_| table.record(b, Outcome::Failed, at))
        .collect()
}

/// Ejects `FIRST` at `t0` (3 failures, 10 s).
fn ejected(slow_start: Option<Duration>) -> (HealthTable, Instant) {
    let (table, t0) = table_with(passive(3), slow_start);
    assert_eq!(
        fail(&table, FIRST, 3, t0),
        vec![PassiveTransition::Ejected {
            cooldown: Duration::from_secs(10),
            failures: 3
        }]
    );
    (table, t0)
}

#[test]
fn backends_start_up_at_full_weight() {
    let (table, t0) = table_with(passive(3), Some(Duration::from_secs(30)));
    assert_eq!(table.backend_count(), 2);
    assert!(table.is_up(FIRST));
    // Slow start is for backends coming back, not for the whole fleet at start.
    assert_eq!(table.weight_factor(FIRST, t0), Some(1.0));
}

#[test]
fn max_fails_consecutive_failures_eject_only_that_backend() {
    let (table, t0) = table_with(passive(3), None);
    assert!(fail(&table, FIRST, 2, t0).is_empty());
    assert_eq!(table.weight_factor(FIRST, t0), Some(1.0));

    assert_eq!(
        table.record(FIRST, Outcome::Timeout, t0),
        Some(PassiveTransition::Ejected {
            cooldown: Duration::from_secs(10),
            failures: 3
        })
    );
    assert_eq!(table.weight_factor(FIRST, after(t0, 9_999)), None);
    assert!(!table.is_up(FIRST));
    assert_eq!(table.weight_factor(OTHER, t0), Some(1.0));
}

#[test]
fn a_success_resets_the_failure_count() {
    let (table, t0) = table_with(passive(3), None);
    fail(&table, FIRST, 2, t0);
    table.record(FIRST, Outcome::Success, t0);
    assert!(fail(&table, FIRST, 2, t0).is_empty());
    assert!(table.is_up(FIRST));
    assert_eq!(fail(&table, FIRST, 1, t0).len(), 1);
}

#[test]
fn peeking_claims_no_probe_and_only_one_confirm_wins() {
    let (table, t0) = ejected(None);
    assert_eq!(
        table.peek_weight_factor(FIRST, after(t0, 9_999)),
        None,
        "still cooling down"
    );
    let cooled = after(t0, 10_000);
    assert_eq!(table.peek_weight_factor(FIRST, cooled), Some(1.0));
    assert_eq!(
        table.peek_weight_factor(FIRST, cooled),
        Some(1.0),
        "peeking claims nothing"
    );
    assert!(table.confirm(FIRST, cooled));
    assert!(!table.confirm(FIRST, cooled), "the probe is taken");
    assert_eq!(table.peek_weight_factor(FIRST, cooled), None);
    assert!(
        table.confirm(OTHER, cooled),
        "a backend that is not ejected needs no probe"
    );
}

#[test]
fn one_probe_at_a_time_after_the_cooldown() {
    let (table, t0) = ejected(None);
    let cooled = after(t0, 10_000);
    assert_eq!(table.weight_factor(FIRST, cooled), Some(1.0));
    assert_eq!(table.weight_factor(FIRST, cooled), None);
    assert_eq!(table.weight_factor(FIRST, after(t0, 20_000)), None);

    table.release_probe(FIRST);
    assert_eq!(table.weight_factor(FIRST, after(t0, 20_000)), Some(1.0));
}

#[test]
fn a_lost_probe_is_let_through_again_after_its_lease() {
    // Lease = backend_connect (3 s) + backend_response (60 s) by default.
    let (table, t0) = ejected(None);
    assert!(table.weight_factor(FIRST, after(t0, 10_000)).is_some());
    assert_eq!(table.weight_factor(FIRST, after(t0, 72_999)), None);
    assert!(table.weight_factor(FIRST, after(t0, 73_000)).is_some());
}

#[test]
fn a_successful_probe_brings_the_backend_back_and_resets_the_cooldown() {
    let (table, t0) = ejected(None);
    let probe_at = after(t0, 10_000);
    assert!(table.weight_factor(FIRST, probe_at).is_some());
    assert_eq!(
        table.record(FIRST, Outcome::Success, probe_at),
        Some(PassiveTransition::Back)
    );
    assert!(table.is_up(FIRST));
    assert_eq!(table.weight_factor(FIRST, probe_at), Some(1.0));

    let cooldowns: Vec<_> = fail(&table, FIRST, 3, probe_at);
    assert_eq!(
        cooldowns,
        vec![PassiveTransition::Ejected {
            cooldown: Duration::from_secs(10),
            failures: 3
        }]
    );
}

#[test]
fn failed_probes_double_the_cooldown_up_to_max_cooldown() {
    let (table, t0) = ejected(None);
    let mut at = 10_000;
    for expected in [20, 35, 35] {
        assert!(table.weight_factor(FIRST, after(t0, at)).is_some());
        assert_eq!(
            table.record(FIRST, Outcome::Failed, after(t0, at)),
            Some(PassiveTransition::ProbeFailed {
                cooldown: Duration::from_secs(expected)
            })
        );
        let until = at + expected * 1000;
        assert_eq!(table.weight_factor(FIRST, after(t0, until - 1)), None);
        at = until;
    }
    assert!(table.weight_factor(FIRST, after(t0, at)).is_some());
}

#[test]
fn outcomes_of_requests_sent_before_the_ejection_change_nothing() {
    let (table, t0) = ejected(None);
    let during = after(t0, 5_000);
    assert_eq!(table.record(FIRST, Outcome::Success, during), None);
    assert_eq!(table.record(FIRST, Outcome::Timeout, during), None);
    assert_eq!(table.weight_factor(FIRST, during), None);
    // Nor after the cooldown while no probe is out.
    assert_eq!(
        table.record(FIRST, Outcome::Success, after(t0, 11_000)),
        None
    );
    assert!(!table.is_up(FIRST));
    assert!(table.weight_factor(FIRST, after(t0, 11_000)).is_some());
}

#[test]
fn zero_max_fails_disables_passive_checks() {
    let (table, t0) = table_with(passive(0), None);
    assert!(fail(&table, FIRST, 100, t0).is_empty());
    assert!(table.is_up(FIRST));
    assert_eq!(table.weight_factor(FIRST, t0), Some(1.0));
}

#[test]
fn server_errors_count_only_with_on_5xx() {
    let (table, t0) = table_with(
        PassiveHealth {
            on_5xx: false,
            ..passive(3)
        },
        None,
    );
    fail(&table, FIRST, 2, t0);
    // The backend answered, so without on_5xx a 5xx is a sign of life.
    table.record(FIRST, Outcome::ServerError, t0);
    assert!(fail(&table, FIRST, 2, t0).is_empty());
    assert!(table.is_up(FIRST));

    let (table, t0) = table_with(passive(3), None);
    let transitions: Vec<_> = (0..3)
        .filter_map(|_| table.record(FIRST, Outcome::ServerError, t0))
        .collect();
    assert_eq!(transitions.len(), 1);
    assert!(!table.is_up(FIRST));
}

#[test]
fn slow_start_ramps_a_backend_back_from_the_floor() {
    let (table, t0) = ejected(Some(Duration::from_secs(10)));
    let back = after(t0, 10_000);
    assert!(table.weight_factor(FIRST, back).is_some());
    assert_eq!(
        table.record(FIRST, Outcome::Success, back),
        Some(PassiveTransition::Back)
    );
    assert_eq!(table.weight_factor(FIRST, back), Some(SLOW_START_FLOOR));
    assert_eq!(table.weight_factor(FIRST, after(t0, 15_000)), Some(0.5));
    assert_eq!(table.weight_factor(FIRST, after(t0, 19_000)), Some(0.9));
    assert_eq!(table.weight_factor(FIRST, after(t0, 20_000)), Some(1.0));
    assert_eq!(table.weight_factor(OTHER, back), Some(1.0));
}

#[test]
fn an_actively_down_backend_gets_nothing_and_ramps_when_up_again() {
    let (table, t0) = table_with(passive(3), Some(Duration::from_secs(10)));
    assert!(table.set_active(FIRST, false, t0));
    assert!(!table.set_active(FIRST, false, t0));
    assert_eq!(table.weight_factor(FIRST, t0), None);
    assert!(!table.is_up(FIRST));

    let up = after(t0, 1_000);
    assert!(table.set_active(FIRST, true, up));
    assert!(table.is_up(FIRST));
    assert_eq!(table.weight_factor(FIRST, after(t0, 3_000)), Some(0.2));
}

#[test]
fn concurrent_reports_make_one_transition() {
    let (table, t0) = table_with(passive(3), None);
    let table = Arc::new(table);
    let workers = 8;
    let start = Arc::new(Barrier::new(workers));
    let ejections: usize = (0..workers)
        .map(|_| {
            let (table, start) = (table.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                fail(&table, FIRST, 10, t0).len()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|worker| worker.join().unwrap())
        .sum();
    assert_eq!(ejections, 1);

    let cooled = after(t0, 10_000);
    let probes: usize = (0..workers)
        .map(|_| {
            let (table, start) = (table.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                usize::from(table.weight_factor(FIRST, cooled).is_some())
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|worker| worker.join().unwrap())
        .sum();
    assert_eq!(probes, 1);
}

#[test]
fn backend_ids_follow_config_order_across_groups() {
    let mut config = Config::for_cli(Vec::new(), vec![addr(9001), addr(9002)]);
    config.upstreams[0].passive = passive(1);
    let mut second = UpstreamConfig::new(
        "b".into(),
        Balance::RoundRobin,
        vec![crate::config::BackendConfig::new(addr(9003), 1)],
    );
    second.passive = passive(0);
    config.upstreams.push(second);
    let table = HealthTable::new(&config);
    let now = Instant::now();

    assert_eq!(table.backend_count(), 3);
    assert!(fail(&table, BackendId(2), 5, now).is_empty());
    assert_eq!(fail(&table, BackendId(1), 1, now).len(), 1);
    assert_eq!(
        table.label(BackendId(2)).to_string(),
        "backend 127.0.0.1:9003 (upstream \"b\")"
    );
}

#[test]
fn unknown_backends_are_unavailable() {
    let (table, t0) = table_with(passive(3), None);
    let unknown = BackendId(7);
    assert_eq!(table.weight_factor(unknown, t0), None);
    assert!(!table.is_up(unknown));
    assert_eq!(table.record(unknown, Outcome::Timeout, t0), None);
    table.release_probe(unknown);
}

#[test]
fn transitions_read_as_log_lines() {
    let (table, _) = table_with(passive(3), None);
    let ejected = PassiveTransition::Ejected {
        cooldown: Duration::from_secs(10),
        failures: 3,
    };
    assert_eq!(
        format!("{} {ejected}", table.label(FIRST)),
        "backend 127.0.0.1:9001 (upstream \"default\") ejected for 10s after 3 consecutive failures (passive)"
    );
    let again = PassiveTransition::ProbeFailed {
        cooldown: Duration::from_millis(1500),
    };
    assert_eq!(
        again.to_string(),
        "ejected again for 1500ms (passive probe failed)"
    );
    assert_eq!(
        PassiveTransition::Back.to_string(),
        "is back (passive probe succeeded)"
    );
}

#[test]
fn a_stall_ejects_at_once_and_marks_requests_sent_before_it() {
    let (table, t0) = table_with(passive(3), None);
    let sent = after(t0, 100);
    let waited = Duration::from_millis(1200);
    let found = after(t0, 1300);
    let stalled = Outcome::Stalled { waited };
    assert_eq!(
        table.record(FIRST, stalled, found),
        Some(PassiveTransition::Stalled {
            cooldown: Duration::from_secs(10),
            waited
        }),
        "one stall is enough, unlike max_fails failures"
    );
    assert!(!table.is_up(FIRST));
    assert!(table.stalled_since(FIRST, sent), "sent before the verdict");
    assert!(
        !table.stalled_since(FIRST, after(t0, 1400)),
        "sent after it"
    );
    assert!(!table.stalled_since(OTHER, sent));
    assert_eq!(
        table.record(FIRST, stalled, after(t0, 1350)),
        None,
        "a second worker's verdict changes nothing"
    );
}

#[test]
fn a_stalled_probe_ejects_again() {
    let (table, t0) = table_with(passive(3), None);
    let stalled = Outcome::Stalled {
        waited: Duration::from_secs(1),
    };
    table.record(FIRST, stalled, t0);
    let probe_at = after(t0, 10_000);
    assert!(
        table.confirm(FIRST, probe_at),
        "the probe after the cooldown"
    );
    assert_eq!(
        table.record(FIRST, stalled, after(t0, 11_100)),
        Some(PassiveTransition::ProbeFailed {
            cooldown: Duration::from_secs(20)
        })
    );
    assert!(table.stalled_since(FIRST, probe_at));
}

#[test]
fn stalls_change_nothing_without_passive_checks() {
    let (table, t0) = table_with(passive(0), None);
    let stalled = Outcome::Stalled {
        waited: Duration::from_secs(1),
    };
    assert_eq!(table.record(FIRST, stalled, after(t0, 1000)), None);
    assert!(table.is_up(FIRST));
    assert!(!table.stalled_since(FIRST, t0));
}

#[test]
fn the_next_generation_keeps_a_backends_ejection_unless_its_number_is_reborn() {
    let (table, t0) = ejected(None);
    let config = Config::for_cli(Vec::new(), vec![addr(9001), addr(9002)]);
    let ids = [FIRST, OTHER];
    let kept = HealthTable::with_ids(&config, &ids, 2, Some(&table), &[]);
    assert!(!kept.is_up(FIRST), "still ejected");
    assert!(kept.is_up(OTHER));
    let reborn = HealthTable::with_ids(&config, &ids, 2, Some(&table), &[FIRST]);
    assert!(
        reborn.is_up(FIRST),
        "a new backend under the old number starts afresh"
    );
    assert_eq!(reborn.peek_weight_factor(FIRST, after(t0, 1)), Some(1.0));
}
