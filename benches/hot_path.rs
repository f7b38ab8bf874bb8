//! Microbenchmarks of the per-request CPU work, each in isolation, so a hot-path change can
//! be judged without the noise of a network benchmark: `cargo bench --bench hot_path`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ringproxy::config::{BackendConfig, Balance, ForwardedHeaders, HashKey, P2cMetric};
use ringproxy::http::{
    BodyFraming, ChunkedDecoder, ForwardContext, HeadLimits, ResponseContext, Version,
    header_storage, parse_request, parse_response, write_request_head, write_response_head,
};
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
    let forward = ForwardContext {
        client_addr: "127.0.0.1",
        proto: "http",
        forwarded: ForwardedHeaders::default(),
        default_host: "127.0.0.1:9000",
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
