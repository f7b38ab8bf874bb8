//! Per-operation cost of what a server does in a TLS 1.3 handshake, for rustls' ring and
//! aws-lc-rs providers: the certificate signature (ECDSA P-256, RSA-PSS 2048) and the
//! server side of the key exchange (X25519, X25519MLKEM768: a fresh key pair and the
//! shared secret from the client's share). The best of 7 batches of 400 operations.
//!
//!     openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out /tmp/ec.pem
//!     openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out /tmp/rsa.pem
//!     cargo build --release --manifest-path perf/tls-primitives/Cargo.toml
//!     taskset -c 1 perf/tls-primitives/target/release/tls-primitives /tmp/ec.pem /tmp/rsa.pem
use std::hint::black_box;
use std::time::Instant;

use rustls::SignatureScheme;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;

fn per_op(mut f: impl FnMut()) -> f64 {
    for _ in 0..50 {
        f();
    }
    let mut best = f64::MAX;
    for _ in 0..7 {
        let n = 400;
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    best
}

fn sign(provider: &CryptoProvider, pem: &str, scheme: SignatureScheme) -> f64 {
    let der = PrivateKeyDer::from_pem_file(pem).unwrap();
    let key = provider.key_provider.load_private_key(der).unwrap();
    let signer = key.choose_scheme(&[scheme]).unwrap();
    let msg = [7u8; 130];
    per_op(|| {
        black_box(signer.sign(&msg).unwrap());
    })
}

fn kx(provider: &CryptoProvider, name: rustls::NamedGroup) -> Option<f64> {
    let group = provider.kx_groups.iter().find(|g| g.name() == name)?;
    let client = group.start().unwrap();
    let share = client.pub_key().to_vec();
    Some(per_op(|| {
        black_box(group.start_and_complete(&share).unwrap());
    }))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, ec, rsa] = args.as_slice() else {
        eprintln!("usage: tls-primitives EC_KEY.pem RSA_KEY.pem (PKCS#8)");
        std::process::exit(2);
    };
    #[allow(deprecated)] // ring's provider: deprecated for lacking post-quantum key exchange
    let providers = [
        ("ring", rustls::crypto::ring::default_provider()),
        ("aws-lc-rs", rustls::crypto::aws_lc_rs::default_provider()),
    ];
    println!(
        "| provider | ECDSA P-256 sign | RSA-PSS-2048 sign | X25519 (server side) | X25519MLKEM768 (server side) |"
    );
    println!("|---|---|---|---|---|");
    for (name, p) in &providers {
        let ecdsa = sign(p, ec, SignatureScheme::ECDSA_NISTP256_SHA256);
        let rsa = sign(p, rsa, SignatureScheme::RSA_PSS_SHA256);
        let x = kx(p, rustls::NamedGroup::X25519).unwrap();
        let pq = kx(p, rustls::NamedGroup::X25519MLKEM768)
            .map_or("not offered".to_string(), |v| format!("{v:.1} µs"));
        println!("| {name} | {ecdsa:.1} µs | {rsa:.1} µs | {x:.1} µs | {pq} |");
    }
}
