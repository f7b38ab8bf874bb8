//! Consistent hashing: a ring of points, each owned by a member; a key goes to the owner of the
//! first point at or after its hash. Points are placed by hashing the backend's address, never
//! its position in the config, so adding or removing a backend moves only the keys it gains or
//! loses, and marking one ineligible moves only its own keys (to the next eligible owner along
//! the ring).
//!
//! All hashes here are stable (the same in every worker, across restarts and platforms): FNV-1a
//! over the bytes, then the splitmix64 finalizer to spread FNV's weak high bits.

use std::net::{IpAddr, SocketAddr};

use httparse::Header;

use super::random::{mix64, unit_interval};
use super::{BackendId, Eligible};
use crate::config::{BackendConfig, HashKey};

/// Points per unit of weight (ketama's figure: shares within a few percent).
const POINTS_PER_WEIGHT: u32 = 160;
/// Ring size bound: beyond a total weight of 409 each unit of weight gets fewer points.
const MAX_POINTS: u32 = 1 << 16;

pub(super) struct Ring {
    /// (position, member index), sorted by position.
    points: Vec<(u64, usize)>,
    /// Per member: a stable hash of its address, to decide its slow-start keys.
    salts: Vec<u64>,
}

impl Ring {
    pub(super) fn new(members: &[(BackendId, &BackendConfig)]) -> Self {
        let total_weight: u32 = members.iter().map(|(_, c)| c.weight.max(1)).sum();
        let per_weight = (MAX_POINTS / total_weight.max(1)).clamp(1, POINTS_PER_WEIGHT);
        let mut points = Vec::new();
        for (index, (_, config)) in members.iter().enumerate() {
            let replicas = config.weight.max(1).saturating_mul(per_weight);
            points.extend((0..replicas).map(|replica| (point(config.address, replica), index)));
        }
        points.sort_unstable();
        let salts = members
            .iter()
            .map(|(_, c)| address_hash(c.address))
            .collect();
        Self { points, salts }
    }

    /// Walks the ring from `key` to the first eligible owner that keeps the key. A member in
    /// slow start (factor f < 1) keeps a given key with probability f, decided by the key and
    /// the member, so as f grows it keeps every key it kept before. If every eligible member
    /// passes on the key, the first eligible one met takes it.
    pub(super) fn pick(&self, eligible: &Eligible, key: u64) -> Option<usize> {
        let len = self.points.len();
        let start = self.points.partition_point(|&(position, _)| position < key);
        let mut first_eligible = None;
        for offset in 0..len {
            let Some(&(_, member)) = self.points.get((start + offset) % len) else {
                continue;
            };
            let Some(candidate) = eligible.get(member) else {
                continue;
            };
            if candidate.factor >= 1.0 || self.keeps(member, key, candidate.factor) {
                return Some(member);
            }
            first_eligible.get_or_insert(member);
        }
        first_eligible
    }

    fn keeps(&self, member: usize, key: u64, factor: f64) -> bool {
        let salt = self.salts.get(member).copied().unwrap_or(0);
        unit_interval(mix64(key ^ salt)) < factor
    }
}

/// The hash of a request's balancing key. A missing (or empty) header or cookie falls back to
/// the client address, so such clients still stick to one backend.
///
/// - `ClientIp`: the address (an IPv4-mapped IPv6 address hashes as its IPv4 form).
/// - `Header(name)`: the first field named `name` (case-insensitive), value trimmed.
/// - `Cookie(name)`: the first `name=value` pair (name case-sensitive) across all Cookie fields.
pub fn key_hash(key: &HashKey, client_ip: IpAddr, headers: &[Header]) -> u64 {
    let value = match key {
        HashKey::ClientIp => None,
        HashKey::Header(name) => header_value(headers, name),
        HashKey::Cookie(name) => cookie_value(headers, name),
    };
    match value {
        Some(value) => StableHasher::new().bytes(value).finish(),
        None => StableHasher::new().ip(client_ip).finish(),
    }
}

fn header_value<'h>(headers: &[Header<'h>], name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.trim_ascii())
        .filter(|value| !value.is_empty())
}

fn cookie_value<'h>(headers: &[Header<'h>], name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
        .flat_map(|h| h.value.split(|&b| b == b';'))
        .find_map(|pair| {
            let (pair_name, value) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
            (pair_name.trim_ascii() == name.as_bytes()).then(|| value[1..].trim_ascii())
        })
        .filter(|value| !value.is_empty())
}

fn point(address: SocketAddr, replica: u32) -> u64 {
    StableHasher::new()
        .address(address)
        .bytes(&replica.to_le_bytes())
        .finish()
}

fn address_hash(address: SocketAddr) -> u64 {
    StableHasher::new().address(address).finish()
}

struct StableHasher(u64);

impl StableHasher {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        Self(Self::FNV_OFFSET)
    }

    fn bytes(mut self, bytes: &[u8]) -> Self {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(Self::FNV_PRIME);
        }
        self
    }

    fn ip(self, ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => self.bytes(&v4.octets()),
            IpAddr::V6(v6) => self.bytes(&v6.octets()),
        }
    }

    fn address(self, address: SocketAddr) -> Self {
        self.ip(address.ip()).bytes(&address.port().to_be_bytes())
    }

    fn finish(&self) -> u64 {
        mix64(self.0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::config::Balance;
    use crate::upstream::balance::tests::{Group, Health, assert_shares, backend};

    const KEYS: u64 = 10_000;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    fn header<'a>(name: &'a str, value: &'a str) -> Header<'a> {
        Header {
            name,
            value: value.as_bytes(),
        }
    }

    fn by_client_ip() -> Balance {
        Balance::Hash(HashKey::ClientIp)
    }

    /// Which backend address each of `KEYS` keys goes to.
    fn placement(group: &mut Group) -> Vec<Option<SocketAddr>> {
        (0..KEYS)
            .map(|key| {
                group.key = mix64(key);
                group.pick().map(|id| group.configs[id.0].address)
            })
            .collect()
    }

    fn keys_per_backend(group: &mut Group) -> Vec<usize> {
        let mut counts = vec![0; group.configs.len()];
        for address in placement(group).into_iter().flatten() {
            if let Some(i) = group.configs.iter().position(|c| c.address == address) {
                counts[i] += 1;
            }
        }
        counts
    }

    #[test]
    fn the_same_key_always_goes_to_the_same_backend() {
        let mut group = Group::new(&[1, 1, 1, 1, 1], by_client_ip());
        group.key = key_hash(&HashKey::ClientIp, ip(7), &[]);
        let first = group.pick();
        assert!((0..100).all(|_| group.pick() == first));
        let other_worker = Group::with_seed(&[1, 1, 1, 1, 1], by_client_ip(), 99);
        let mut other_worker = other_worker;
        other_worker.key = group.key;
        assert_eq!(other_worker.pick(), first);
    }

    #[test]
    fn weights_1_2_3_get_their_shares_of_keys() {
        let mut group = Group::new(&[1, 2, 3], by_client_ip());
        assert_shares(&keys_per_backend(&mut group), &[1.0, 2.0, 3.0], 0.03);
    }

    #[test]
    fn equal_weights_share_keys_evenly() {
        let mut group = Group::new(&[1; 5], by_client_ip());
        assert_shares(&keys_per_backend(&mut group), &[1.0; 5], 0.03);
    }

    #[test]
    fn removing_a_backend_from_the_config_moves_only_its_keys() {
        let mut all = Group::new(&[1; 5], by_client_ip());
        let before = placement(&mut all);
        let removed = all.configs[2].address;
        let remaining: Vec<_> = (0..5).filter(|&i| i != 2).map(|i| backend(i, 1)).collect();
        let after = placement(&mut Group::from_configs(remaining, by_client_ip(), 1));
        let moved: Vec<_> = (0..before.len())
            .filter(|&k| before[k] != after[k])
            .collect();
        assert!(moved.iter().all(|&k| before[k] == Some(removed)));
        assert_eq!(
            moved.len(),
            before.iter().filter(|&&a| a == Some(removed)).count()
        );
        assert!(
            (moved.len() as f64) < 1.5 / 5.0 * KEYS as f64,
            "{}",
            moved.len()
        );
    }

    #[test]
    fn adding_a_backend_to_the_config_moves_keys_only_to_it() {
        let mut four =
            Group::from_configs((0..4).map(|i| backend(i, 1)).collect(), by_client_ip(), 1);
        let before = placement(&mut four);
        let mut five = Group::new(&[1; 5], by_client_ip());
        let after = placement(&mut five);
        let added = five.configs[4].address;
        let moved = (0..before.len()).filter(|&k| before[k] != after[k]);
        assert!(moved.clone().all(|k| after[k] == Some(added)));
        assert!((moved.count() as f64) < 1.5 / 5.0 * KEYS as f64);
    }

    #[test]
    fn an_unavailable_backend_loses_only_its_keys_and_gets_them_back() {
        let mut group = Group::new(&[1; 5], by_client_ip());
        let before = placement(&mut group);
        let down = group.configs[3].address;
        group.health = Health::down(&[3]);
        let during = placement(&mut group);
        for (was, is) in before.iter().zip(&during) {
            if *was == Some(down) {
                assert!(is.is_some() && *is != Some(down));
            } else {
                assert_eq!(was, is);
            }
        }
        group.health = Health::up();
        assert_eq!(placement(&mut group), before);
    }

    #[test]
    fn keys_of_an_unavailable_backend_spread_over_the_others() {
        let mut group = Group::new(&[1; 5], by_client_ip());
        let before = placement(&mut group);
        group.health = Health::down(&[0]);
        let during = placement(&mut group);
        let mut heirs: HashMap<SocketAddr, usize> = HashMap::new();
        for (was, is) in before.iter().zip(&during) {
            if *was == Some(group.configs[0].address) {
                *heirs.entry(is.unwrap()).or_default() += 1;
            }
        }
        assert_eq!(heirs.len(), 4, "{heirs:?}");
    }

    #[test]
    fn an_excluded_backend_is_walked_past_unless_it_is_the_only_one() {
        let mut group = Group::new(&[1, 1, 1], by_client_ip());
        group.key = 12345;
        let first = group.pick().unwrap();
        group.exclude = vec![first];
        let retry = group.pick().unwrap();
        assert_ne!(retry, first);
        group.exclude.push(retry);
        let third = group.pick().unwrap();
        assert!(third != first && third != retry);
        group.exclude.push(third);
        assert!(group.pick().is_some(), "all tried: one of them again");
    }

    #[test]
    fn slow_start_keeps_a_growing_share_of_its_keys_and_never_flaps() {
        let mut group = Group::new(&[1; 5], by_client_ip());
        let home = group.configs[1].address;
        let own = |group: &mut Group| -> Vec<bool> {
            placement(group).iter().map(|a| *a == Some(home)).collect()
        };
        let full = own(&mut group);
        let full_count = full.iter().filter(|&&o| o).count();
        let mut previous = vec![false; full.len()];
        for factor in [0.1, 0.5, 0.9] {
            group.health = Health::factor(1, factor);
            let kept = own(&mut group);
            let count = kept.iter().filter(|&&o| o).count();
            let expected = factor * full_count as f64;
            assert!(
                (count as f64 - expected).abs() < 0.15 * expected + 20.0,
                "{factor}: {count}"
            );
            assert!(
                kept.iter().zip(&full).all(|(k, f)| !k || *f),
                "only its own keys"
            );
            assert!(
                previous.iter().zip(&kept).all(|(p, k)| !p || *k),
                "kept keys stay"
            );
            previous = kept;
        }
    }

    #[test]
    fn header_key_uses_the_first_field_of_that_name_in_any_case() {
        let key = HashKey::Header("x-user".to_string());
        let headers = [
            header("Host", "a"),
            header("X-User", " alice "),
            header("x-user", "bob"),
        ];
        let hash = key_hash(&key, ip(1), &headers);
        assert_eq!(hash, key_hash(&key, ip(2), &[header("x-USER", "alice")]));
        assert_ne!(hash, key_hash(&key, ip(1), &[header("x-user", "bob")]));
    }

    #[test]
    fn cookie_key_finds_the_pair_across_cookie_fields() {
        let key = HashKey::Cookie("session".to_string());
        let split = [
            header("Cookie", "theme=dark"),
            header("cookie", "a=1; session=abc ; b=2"),
        ];
        let hash = key_hash(&key, ip(1), &split);
        assert_eq!(
            hash,
            key_hash(&key, ip(2), &[header("Cookie", "session=abc")])
        );
        assert_ne!(
            hash,
            key_hash(&key, ip(1), &[header("Cookie", "session=abd")])
        );
        assert_ne!(
            key_hash(&key, ip(1), &[header("Cookie", "Session=x")]),
            key_hash(&key, ip(2), &[header("Cookie", "Session=x")]),
            "cookie names are case-sensitive: no match, so the client address decides"
        );
        assert_eq!(
            key_hash(
                &key,
                ip(1),
                &[header("Cookie", "xsession=abc; sessionx=abc")]
            ),
            key_hash(&HashKey::ClientIp, ip(1), &[])
        );
    }

    #[test]
    fn a_missing_or_empty_key_falls_back_to_the_client_address() {
        let by_ip = key_hash(&HashKey::ClientIp, ip(9), &[]);
        let header_key = HashKey::Header("x-user".to_string());
        let cookie_key = HashKey::Cookie("sid".to_string());
        assert_eq!(key_hash(&header_key, ip(9), &[header("Host", "a")]), by_ip);
        assert_eq!(
            key_hash(&header_key, ip(9), &[header("X-User", "  ")]),
            by_ip
        );
        assert_eq!(
            key_hash(&cookie_key, ip(9), &[header("Cookie", "sid=; x")]),
            by_ip
        );
        assert_eq!(
            key_hash(&cookie_key, ip(9), &[header("Cookie", "garbage;;=")]),
            by_ip
        );
    }

    #[test]
    fn an_ipv4_mapped_client_address_hashes_as_ipv4() {
        let v4 = Ipv4Addr::new(192, 0, 2, 1);
        let mapped = IpAddr::V6(v4.to_ipv6_mapped());
        let key = HashKey::ClientIp;
        assert_eq!(
            key_hash(&key, mapped, &[]),
            key_hash(&key, IpAddr::V4(v4), &[])
        );
        assert_ne!(
            key_hash(&key, IpAddr::V6(Ipv6Addr::LOCALHOST), &[]),
            key_hash(&key, IpAddr::V4(Ipv4Addr::LOCALHOST), &[])
        );
    }

    #[test]
    fn hashes_are_stable_across_builds_and_restarts() {
        // Changing these moves every sticky client to another backend on upgrade.
        assert_eq!(
            key_hash(&HashKey::ClientIp, ip(1), &[]),
            16692434313525488564
        );
        assert_eq!(point(backend(0, 1).address, 0), 16228086959157180456);
    }
}
