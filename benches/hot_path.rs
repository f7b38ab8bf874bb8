//! Microbenchmarks of the per-request CPU work, each in isolation, so a hot-path change can
//! be judged without the noise of a network benchmark: `cargo bench --bench hot_path`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ringproxy::config::{
    BackendConfig, Balance, ForwardedHeaders, HashKey, HostPattern, P2cMetric, PathPattern,
    ProxyAction, RouteAction, RouteConfig, RouteMatch, RouteTableConfig,
};
use ringproxy::http::{
    BodyFraming, ChunkedDecoder, ForwardContext, HeadLimits, ResponseContext, Version,
    header_storage, parse_request, parse_response, write_request_head, write_response_head,
};
use ringproxy::route::{RouteRequest, RouteTable, Scratch};
use ringproxy::upstream::BackendId;
use ringproxy::upstream::balance::{AllAvailable, Balancer, PickContext, key_hash};
use ringproxy::upstream::load::LoadView;

fn main() {
    divan::main();
}

/// What wrk sends, plus the headers a browser-ish client adds.
const REQUEST: &[u8] = b"GET /api/v1/items?page=2 HTTP/1.1\r\nHost: example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) bench\r\nAccept: text/html,application/json\r\n\
Accept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.9\r\n\
Cookie: session=0123456789abcdef; theme=dark\r\nConnection: keep-alive\r\n\r\n";

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sun, 22 Nov 2026 04:00:00 GMT\r\n\
Content-Type: application/json\r\nContent-Length: 1024\r\nConnection: keep-alive\r\n\
Cache-Control: max-age=60\r\nETag: \"abc123\"\r\n\r\n";

const LIMITS: HeadLimits = HeadLimits {
    max_request_line: 8192,
    max_header_bytes: 16384,
    max_headers: 100,
};

#[divan::bench]
fn parse_request_head() -> usize {
    let mut storage = header_storage();
    let head = parse_request(black_box(REQUEST), &mut storage, &LIMITS);
    head.ok().flatten().map_or(0, |h| h.head_len())
}

#[divan::bench]
fn parse_and_rewrite_request_head(bencher: divan::Bencher) {
    let mut out = Vec::with_capacity(2048);
    let forwarded = ForwardedHeaders::default();
    let forward = ForwardContext {
        client_addr: "127.0.0.1",
        proto: "http",
        forwarded: &forwarded,
        default_host: "127.0.0.1:9000",
        request_id: None,
    };
    bencher.bench_local(|| {
        let mut storage = header_storage();
        if let Ok(Some(head)) = parse_request(black_box(REQUEST), &mut storage, &LIMITS) {
            out.clear();
            write_request_head(&mut out, &head, &forward);
        }
        out.len()
    });
}

#[divan::bench]
fn parse_and_rewrite_response_head(bencher: divan::Bencher) {
    let mut out = Vec::with_capacity(2048);
    let context = ResponseContext {
        client_version: Version::Http11,
        keep_alive: true,
        framing: BodyFraming::Length(1024),
        upgrade: false,
    };
    bencher.bench_local(|| {
        let mut storage = header_storage();
        if let Ok(Some(head)) = parse_response(black_box(RESPONSE), &mut storage, 16384, false) {
            out.clear();
            write_response_head(&mut out, &head, &context);
        }
        out.len()
    });
}

/// A 64 KiB body in 4 KiB chunks, decoded in 16 KiB reads as the proxy sees it.
#[divan::bench]
fn chunked_decode_64k(bencher: divan::Bencher) {
    let mut wire = Vec::new();
    for _ in 0..16 {
        wire.extend_from_slice(b"1000\r\n");
        wire.extend_from_slice(&[b'x'; 4096]);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    bencher
        .counter(divan::counter::BytesCount::new(wire.len()))
        .bench_local(|| {
            let mut decoder = ChunkedDecoder::new();
            let mut payload = 0;
            for read in black_box(&wire).chunks(16 * 1024) {
                let mut pos = 0;
                while pos < read.len() {
                    let Ok(step) = decoder.decode(&read[pos..]) else {
                        return 0;
                    };
                    payload += step.data.len();
                    pos += step.consumed;
                    if step.done {
                        return payload;
                    }
                }
            }
            payload
        });
}

/// Backends a typical group has, for the per-algorithm pick costs.
const GROUP_SIZE: usize = 8;

fn backends(count: usize, weight: impl Fn(usize) -> u32) -> Vec<BackendConfig> {
    (0..count)
        .map(|i| {
            let address = SocketAddr::from(([10, 0, 0, 1], 8000 + i as u16));
            BackendConfig::new(address, weight(i))
        })
        .collect()
}

/// A worker's balancer for `configs`, and a load view with a few requests in flight on every
/// backend (so least_conn and p2c compare real numbers).
fn balancer(configs: &[BackendConfig], balance: Balance) -> (Balancer, LoadView) {
    let members: Vec<_> = (0..).map(BackendId).zip(configs).collect();
    let load = LoadView::standalone(configs.len(), Duration::from_millis(50));
    for (i, &(id, _)) in members.iter().enumerate() {
        for _ in 0..i % 3 {
            load.start(id);
        }
        load.finish(id, Some(Duration::from_micros(500 + 100 * i as u64)));
    }
    (Balancer::new(&members, &balance, 1), load)
}

fn bench_pick(bencher: divan::Bencher, configs: &[BackendConfig], balance: Balance) {
    let (balancer, load) = balancer(configs, balance);
    let ctx = PickContext {
        load: &load,
        key_hash: 0,
        availability: &AllAvailable,
        exclude: &[],
    };
    bencher.bench_local(|| balancer.pick(black_box(&ctx)));
}

#[divan::bench(args = [1, 8, 64])]
fn balancer_pick_round_robin(bencher: divan::Bencher, count: usize) {
    bench_pick(bencher, &backends(count, |_| 1), Balance::RoundRobin);
}

#[divan::bench(args = [2, 8, 64])]
fn balancer_pick_weighted(bencher: divan::Bencher, count: usize) {
    let configs = backends(count, |i| 1 + i as u32 % 5);
    bench_pick(bencher, &configs, Balance::Weighted);
}

#[divan::bench]
fn balancer_pick_least_conn(bencher: divan::Bencher) {
    bench_pick(bencher, &backends(GROUP_SIZE, |_| 1), Balance::LeastConn);
}

#[divan::bench]
fn balancer_pick_random(bencher: divan::Bencher) {
    let configs = backends(GROUP_SIZE, |i| 1 + i as u32 % 3);
    bench_pick(bencher, &configs, Balance::Random);
}

#[divan::bench(args = [P2cMetric::InFlight, P2cMetric::Latency])]
fn balancer_pick_p2c(bencher: divan::Bencher, metric: P2cMetric) {
    bench_pick(bencher, &backends(GROUP_SIZE, |_| 1), Balance::P2c(metric));
}

/// `hash_key = "cookie:session"`: finding and hashing the key, then the ring lookup.
#[divan::bench]
fn balancer_pick_hash_cookie(bencher: divan::Bencher) {
    let key = HashKey::Cookie("session".to_string());
    let (balancer, load) = balancer(&backends(GROUP_SIZE, |_| 1), Balance::Hash(key.clone()));
    let mut storage = header_storage();
    let Ok(Some(head)) = parse_request(REQUEST, &mut storage, &LIMITS) else {
        return;
    };
    let client_ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    bencher.bench_local(|| {
        let ctx = PickContext {
            load: &load,
            key_hash: key_hash(&key, client_ip, black_box(head.headers)),
            availability: &AllAvailable,
            exclude: &[],
        };
        balancer.pick(&ctx)
    });
}

/// The path prefixes each host of the routing benchmark has.
const SITE_PATHS: [&str; 9] = [
    "/api/v1",
    "/api/v2",
    "/static/",
    "/images",
    "/login",
    "/logout",
    "/account/settings",
    "/search",
    "/health",
];

fn proxy_route(hosts: Vec<HostPattern>, path: Option<PathPattern>) -> RouteConfig {
    RouteConfig {
        conditions: RouteMatch {
            hosts,
            path,
            ..RouteMatch::default()
        },
        action: RouteAction::Proxy(ProxyAction {
            upstream: "app".to_string(),
            ..ProxyAction::default()
        }),
    }
}

/// 1,000 routes: 100 hosts with 9 path prefixes each, 10 wildcard domains with the same 9,
/// 9 routes for any host, and (`catch_all`) a last route for everything.
fn thousand_routes(catch_all: bool) -> RouteTable {
    let mut routes = Vec::new();
    let hosts = (0..100).map(|i| HostPattern::Exact(format!("host-{i:02}.example.com")));
    let wildcards = (0..10).map(|i| HostPattern::Wildcard(format!("tenant-{i}.example.net")));
    for host in hosts.chain(wildcards) {
        for path in SITE_PATHS {
            let path = Some(PathPattern::Prefix(path.to_string()));
            routes.push(proxy_route(vec![host.clone()], path));
        }
    }
    for path in SITE_PATHS {
        let path = Some(PathPattern::Prefix(format!("/shared{path}")));
        routes.push(proxy_route(Vec::new(), path));
    }
    if catch_all {
        routes.push(proxy_route(Vec::new(), None));
    }
    RouteTable::compile(&RouteTableConfig {
        name: "bench".to_string(),
        routes,
    })
}

fn bench_find(
    bencher: divan::Bencher,
    table: &RouteTable,
    request: &[u8],
    expected: Option<usize>,
) {
    let mut storage = header_storage();
    let Ok(Some(head)) = parse_request(request, &mut storage, &LIMITS) else {
        return;
    };
    let request = RouteRequest::of(&head);
    let mut scratch = Scratch::new(LIMITS.max_request_line);
    let found = table.find(&request, &mut scratch).ok().flatten();
    assert_eq!(found.map(|r| r.index), expected);
    bencher.bench_local(|| {
        let found = table.find(black_box(&request), &mut scratch);
        found.ok().flatten().map(|route| route.index)
    });
}

/// A request for the last path of the last host: route 899 of 1,000.
#[divan::bench]
fn route_find_1000_late_hit(bencher: divan::Bencher) {
    let request = b"GET /search/results/page/2?q=rust HTTP/1.1\r\nHost: host-99.example.com\r\n\
User-Agent: bench\r\nAccept: */*\r\n\r\n";
    bench_find(bencher, &thousand_routes(true), request, Some(99 * 9 + 7));
}

/// A tenant of a wildcard domain, two labels deep: route 989 of 1,000.
#[divan::bench]
fn route_find_1000_wildcard_hit(bencher: divan::Bencher) {
    let request = b"GET /health HTTP/1.1\r\nHost: a.b.tenant-9.example.net\r\n\r\n";
    bench_find(bencher, &thousand_routes(true), request, Some(989));
}

/// Only the last route, for everything, takes it: route 999 of 1,000.
#[divan::bench]
fn route_find_1000_catch_all(bencher: divan::Bencher) {
    bench_find(bencher, &thousand_routes(true), REQUEST, Some(999));
}

/// No route of 999 takes it: an unknown host and path (404).
#[divan::bench]
fn route_find_1000_miss(bencher: divan::Bencher) {
    let request =
        b"GET /api/v1/items/../users/%7Eme?page=2 HTTP/1.1\r\nHost: www.unknown.org\r\n\r\n";
    bench_find(bencher, &thousand_routes(false), request, None);
}
