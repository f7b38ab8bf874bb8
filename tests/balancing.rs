//! Load balancing seen from the backends: who gets how many requests under each algorithm.

mod common;

use common::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

/// A group "app" over `backends` (entries are TOML backend values), with `group_keys` in the
/// group table and `workers` workers.
fn proxy_for(workers: usize, backends: &[String], group_keys: &str) -> Proxy {
    let toml = format!(
        "[runtime]\nworkers = {workers}\npin = false\nreconcile_interval = \"10ms\"\n\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\nupstream = \"app\"\n\n\
         [upstream.app]\nbackends = [{}]\n{group_keys}\n",
        backends.join(", ")
    );
    Proxy::start_with_config(&toml, &[])
}

fn plain(b: &Backend) -> String {
    format!("\"{}\"", b.addr())
}

fn weighted(b: &Backend, weight: u32) -> String {
    format!("{{ address = \"{}\", weight = {weight} }}", b.addr())
}

/// Sends `n` GETs over one keep-alive connection, each with `headers`.
fn send_many(proxy: &Proxy, n: usize, headers: &str) {
    let mut c = RawClient::connect(proxy.addr());
    for i in 0..n {
        c.send(format!("GET /n{i} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes());
        assert_eq!(c.read_response().unwrap().status, 200);
    }
}

#[track_caller]
fn assert_share(got: usize, total: usize, expected: f64, tolerance: f64) {
    let share = got as f64 / total as f64;
    assert!(
        (share - expected).abs() <= tolerance,
        "share {share:.3} ({got}/{total}), expected {expected:.3} ± {tolerance}"
    );
}

#[test]
fn weighted_and_random_follow_the_weights() {
    for balance in ["round_robin", "weighted", "random"] {
        let (a, b, c) = (Backend::echo(), Backend::echo(), Backend::echo());
        let backends = [weighted(&a, 1), weighted(&b, 2), weighted(&c, 3)];
        let proxy = proxy_for(1, &backends, &format!("balance = \"{balance}\""));
        send_many(&proxy, 1200, "");
        let counts = [a.requests().len(), b.requests().len(), c.requests().len()];
        assert_eq!(counts.iter().sum::<usize>(), 1200, "{balance}");
        for (count, weight) in counts.iter().zip([1.0, 2.0, 3.0]) {
            assert_share(*count, 1200, weight / 6.0, 0.04);
        }
    }
}

/// Without load, least_conn and p2c fall back to their tie-breaks, which spread requests over
/// equal backends instead of herding them onto one.
#[test]
fn least_conn_and_p2c_spread_ties() {
    for balance in ["least_conn", "p2c"] {
        let backends: Vec<Backend> = (0..3).map(|_| Backend::echo()).collect();
        let entries: Vec<String> = backends.iter().map(plain).collect();
        let proxy = proxy_for(1, &entries, &format!("balance = \"{balance}\""));
        send_many(&proxy, 900, "");
        for b in &backends {
            assert_share(b.requests().len(), 900, 1.0 / 3.0, 0.07);
        }
    }
}

/// Keys (`X-User`) stay on their backend; removing one backend from the config moves only its
/// own keys, about 1/N of them.
#[test]
fn consistent_hashing_moves_only_the_removed_backends_keys() {
    let backends: Vec<Backend> = (0..4).map(|_| Backend::echo()).collect();
    let keys: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    let owner_map = |list: &[&Backend]| -> HashMap<String, SocketAddr> {
        let entries: Vec<String> = list.iter().map(|b| plain(b)).collect();
        let proxy = proxy_for(
            2,
            &entries,
            "balance = \"hash\"\nhash_key = \"header:X-User\"",
        );
        let mut owners = HashMap::new();
        for key in &keys {
            let before: Vec<usize> = list.iter().map(|b| b.requests().len()).collect();
            send_many(&proxy, 1, &format!("X-User: {key}\r\n"));
            let owner = list
                .iter()
                .zip(before)
                .find(|(b, n)| b.requests().len() > *n)
                .map(|(b, _)| b.addr())
                .expect("some backend got the request");
            owners.insert(key.clone(), owner);
        }
        owners
    };
    let all: Vec<&Backend> = backends.iter().collect();
    let first = owner_map(&all);
    let again = owner_map(&all);
    assert_eq!(first, again, "the same key goes to the same backend");

    let removed = backends[1].addr();
    let remaining: Vec<&Backend> = backends.iter().filter(|b| b.addr() != removed).collect();
    let after = owner_map(&remaining);
    let moved = keys.iter().filter(|k| first[*k] != after[*k]).count();
    let owned_by_removed = keys.iter().filter(|k| first[*k] == removed).count();
    assert_eq!(
        moved, owned_by_removed,
        "only the removed backend's keys moved"
    );
    assert_share(moved, keys.len(), 0.25, 0.12);
}

/// A backend that holds each request for `delay` and counts how many it holds at once.
fn slow_backend(delay: Duration) -> (Backend, Arc<AtomicUsize>) {
    let active = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (a, p) = (active.clone(), peak.clone());
    let backend = Backend::start(move |req| {
        let now = a.fetch_add(1, Ordering::SeqCst) + 1;
        p.fetch_max(now, Ordering::SeqCst);
        thread::sleep(delay);
        a.fetch_sub(1, Ordering::SeqCst);
        echo_reply(req)
    });
    (backend, peak)
}

/// 16 clients, each sending `per_client` requests one after another, in parallel.
fn parallel_load(proxy: &Proxy, clients: usize, per_client: usize) {
    let addr = proxy.addr();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            thread::spawn(move || {
                let mut conn = RawClient::connect(addr);
                for i in 0..per_client {
                    conn.send(format!("GET /c{c}-{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
                    assert_eq!(conn.read_response().unwrap().status, 200);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// With two workers and one slow backend, the load-aware algorithms send it far fewer
/// requests than round robin does.
#[test]
fn least_conn_and_p2c_avoid_a_slow_backend() {
    let mut slow_shares = HashMap::new();
    for balance in ["round_robin", "least_conn", "p2c"] {
        let (slow, _) = slow_backend(Duration::from_millis(150));
        let fast = Backend::echo();
        let proxy = proxy_for(
            2,
            &[plain(&slow), plain(&fast)],
            &format!("balance = \"{balance}\""),
        );
        parallel_load(&proxy, 16, 12);
        let total = slow.requests().len() + fast.requests().len();
        assert_eq!(total, 16 * 12);
        slow_shares.insert(balance, slow.requests().len() as f64 / total as f64);
    }
    assert!(slow_shares["round_robin"] > 0.4, "{slow_shares:?}");
    assert!(slow_shares["least_conn"] < 0.2, "{slow_shares:?}");
    assert!(slow_shares["p2c"] < 0.25, "{slow_shares:?}");
}

/// `max_conns` is host-wide: with two workers, requests arriving one by one (further apart than
/// the reconcile interval) never hold more than `max_conns` on the limited backend.
#[test]
fn max_conns_is_enforced_across_workers() {
    let (limited, peak) = slow_backend(Duration::from_millis(2000));
    let (other, _) = slow_backend(Duration::from_millis(2000));
    let backends = [
        format!("{{ address = \"{}\", max_conns = 2 }}", limited.addr()),
        plain(&other),
    ];
    let proxy = proxy_for(2, &backends, "balance = \"least_conn\"");
    let addr = proxy.addr();
    let clients: Vec<_> = (0..8)
        .map(|i| {
            thread::sleep(Duration::from_millis(150));
            thread::spawn(move || get(addr, &format!("/m{i}")).status)
        })
        .collect();
    let statuses: Vec<u16> = clients.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert_eq!(
        peak.load(Ordering::SeqCst),
        2,
        "the limited backend held more than max_conns"
    );
    // Without the limit least_conn would have given it half of the 8 at once.
    assert_eq!(limited.requests().len() + other.requests().len(), 8);
}

#[test]
fn backup_serves_only_when_every_primary_is_down() {
    let primary = Backend::echo();
    let backup = Backend::echo();
    let backends = [
        plain(&primary),
        format!("{{ address = \"{}\", backup = true }}", backup.addr()),
    ];
    let proxy = proxy_for(1, &backends, "");
    send_many(&proxy, 10, "");
    assert_eq!((primary.requests().len(), backup.requests().len()), (10, 0));

    let dead = closed_port_addr();
    let backends = [
        format!("\"{dead}\""),
        format!("{{ address = \"{}\", backup = true }}", backup.addr()),
    ];
    let proxy = proxy_for(
        1,
        &backends,
        "[upstream.app.passive]\nmax_fails = 1\ncooldown = \"30s\"",
    );
    send_many(&proxy, 10, "");
    assert_eq!(
        backup.requests().len(),
        10,
        "the backup took over (first request by retry)"
    );
}
