//! TLS termination: listeners with `[listener.tls]` hold the certificates and do the
//! cryptography; backends get plain HTTP, or TLS again where their group has
//! `[upstream.NAME.tls]`.
//!
//! - `certs` reads and checks one certificate and its key (at `--check` and at start).
//! - `sni` picks the certificate for the name a client asks for.
//! - `stream` is the TLS connection the proxy reads requests from and writes responses to,
//!   and, on the client side, the one to a TLS backend.
//! - `accept` takes an accepted socket through the handshake to `proxy::serve_connection`.
//! - `upstream` builds each group's client config for TLS to its backends.
//!
//! What is shared and what is per worker: the certificates (`SniResolver`) and the session
//! ticket keys are built once and shared by every worker behind `Arc`s, read-only on the
//! handshake path. Each worker builds its own rustls `ServerConfig` from them
//! (`ListenerTls::server_config`), so each has its own session cache: rustls' cache is a
//! mutex-guarded map, and a per-worker one is never contended and its cache lines stay on
//! the worker's core (as is the `Arc<ServerConfig>` count each connection increments). A
//! client resuming by session ID on another worker misses that cache and does a full
//! handshake; resumption by ticket (TLS 1.3 always, TLS 1.2 when the client supports
//! tickets) works on every worker, since the ticket keys are shared. The ticketer is the
//! provider's: a new key every 6 hours, tickets accepted for 12; its key state sits
//! behind an `RwLock` rustls takes for reading per ticket made or opened — the one lock
//! shared across cores on the handshake path.
//!
//! The crypto provider is *aws-lc-rs*, measured against *ring* (perf/RESULTS.md,
//! 2026-12-07): per full handshake about the same for ECDSA P-256, 1.8x cheaper for
//! RSA-2048 (ring's RSA signature takes 2.3x aws-lc's), resumed handshakes 5–9% cheaper
//! (its X25519). It also has the post-quantum hybrid X25519MLKEM768: a client that offers it
//! first (browsers since 2024, rustls, OpenSSL 3.5) gets it, for ~34 µs more CPU per
//! handshake and ~1.1 KB more in the server's first flight; clients without it (OpenSSL 3.0,
//! so wrk) get X25519. aws-lc-sys builds its C with the C compiler alone on Linux x86_64
//! and aarch64.

mod accept;
mod certs;
mod sni;
mod stream;
mod upstream;

use std::sync::Arc;
use std::time::SystemTime;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ProducesTickets, ServerSessionMemoryCache};
use rustls::version::TLS13;

use crate::config::{Config, ConfigError, Hsts, KeyExchange, TlsConfig, TlsVersion};

pub use accept::serve_tls;
pub use certs::EXPIRY_WARNING;
pub use sni::SniResolver;
pub use stream::{First, TlsStream};
pub use upstream::{BackendTlsName, TlsUpstreams, UpstreamTls};

/// TLS 1.2 sessions each worker remembers for resumption by session ID (TLS 1.3 resumes by
/// ticket). A few hundred bytes each.
const SESSION_CACHE_PER_WORKER: usize = 4096;
static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&TLS13];
/// The only application protocol spoken.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The crypto provider: aws-lc-rs' defaults (TLS 1.3 and 1.2 AEAD suites; X25519MLKEM768,
/// X25519, P-256 and P-384 key exchange).
pub(crate) fn provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// The listeners' provider: the same suites, AES-128-GCM first, then AES-256-GCM, then
/// ChaCha20-Poly1305 (HAProxy's and Go's order). Listeners choose by this order unless
/// `prefer_client_ciphers`; clients (OpenSSL's default, so wrk and curl) list AES-256-GCM
/// first, whose SHA-384 aws-lc runs with its generic code on AMD CPUs (its AVX SHA-512 is
/// enabled on Intel only) while SHA-256 uses the SHA extensions, and AES-256 takes 14 rounds
/// to AES-128's 10: a resumed handshake and the record layer cost less (perf/RESULTS.md,
/// 2026-12-07).
fn listener_provider() -> CryptoProvider {
    let mut provider = provider();
    provider.cipher_suites.sort_by_key(bulk_cipher_rank);
    provider
}

/// `provider` offering only the key exchange groups `groups`, in that order.
fn with_key_exchange(provider: &CryptoProvider, groups: &[KeyExchange]) -> CryptoProvider {
    use rustls::crypto::aws_lc_rs::kx_group;
    let group = |g: &KeyExchange| -> &'static dyn rustls::crypto::SupportedKxGroup {
        match g {
            KeyExchange::X25519Mlkem768 => kx_group::X25519MLKEM768,
            KeyExchange::X25519 => kx_group::X25519,
            KeyExchange::P256 => kx_group::SECP256R1,
            KeyExchange::P384 => kx_group::SECP384R1,
        }
    };
    CryptoProvider {
        kx_groups: groups.iter().map(group).collect(),
        ..provider.clone()
    }
}

/// A suite's place in the listeners' order; suites of one cipher keep their order.
fn bulk_cipher_rank(suite: &rustls::SupportedCipherSuite) -> u8 {
    let name = suite.suite().as_str().unwrap_or_default();
    if name.contains("AES_128_GCM") {
        0
    } else if name.contains("AES_256_GCM") {
        1
    } else {
        2
    }
}

/// What every worker shares for one TLS listener.
pub struct ListenerTls {
    resolver: Arc<SniResolver>,
    versions: &'static [&'static rustls::SupportedProtocolVersion],
    provider: Arc<CryptoProvider>,
    /// Whether the client's order of cipher suites decides rather than the listener's.
    prefer_client_ciphers: bool,
    ticketer: Arc<dyn ProducesTickets>,
    /// Header lines added to relayed responses (HSTS); empty for none.
    response_fields: Box<[u8]>,
}

impl ListenerTls {
    /// A `ServerConfig` for one worker: its own session cache, the shared certificates and
    /// ticket keys.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, rustls::Error> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(self.versions)?
            .with_no_client_auth()
            .with_cert_resolver(self.resolver.clone());
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        config.ignore_client_order = !self.prefer_client_ciphers;
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_PER_WORKER);
        config.ticketer = self.ticketer.clone();
        Ok(Arc::new(config))
    }

    /// Header lines (each ending in CRLF) to add to every relayed response.
    pub fn response_fields(&self) -> &[u8] {
        &self.response_fields
    }
}

/// Per configured listener, in order: its TLS setup, or `None` for plain HTTP.
pub type TlsListeners = Vec<Option<Arc<ListenerTls>>>;

/// Everything TLS in one configuration: what its listeners serve, how its groups reach their
/// backends.
#[derive(Default)]
pub struct TlsSetup {
    pub listeners: TlsListeners,
    pub upstreams: TlsUpstreams,
}

/// What reading every certificate and CA file found.
pub struct Loaded {
    pub setup: TlsSetup,
    /// `FILE:LINE: KEY: warning: ...`: reported, but the configuration is usable.
    pub warnings: Vec<ConfigError>,
    pub errors: Vec<ConfigError>,
}

/// Reads and checks the certificates of every TLS listener and the files of every group's
/// TLS to its backends as of `now`; errors and warnings are placed on the settings that name
/// the files.
pub fn load(config: &Config, now: SystemTime) -> Loaded {
    let mut loaded = Loaded {
        setup: TlsSetup::default(),
        warnings: Vec::new(),
        errors: Vec::new(),
    };
    load_listeners(config, &Arc::new(listener_provider()), now, &mut loaded);
    upstream::load(config, &Arc::new(provider()), now, &mut loaded);
    // Listeners that share files (every --listen with --tls-cert) would repeat each finding.
    let mut seen = std::collections::HashSet::new();
    loaded.errors.retain(|e| seen.insert(e.to_string()));
    loaded.warnings.retain(|e| seen.insert(e.to_string()));
    loaded
}

/// The listeners' part of `load`.
fn load_listeners(
    config: &Config,
    provider: &Arc<CryptoProvider>,
    now: SystemTime,
    loaded: &mut Loaded,
) {
    let listeners = &mut loaded.setup.listeners;
    if config.listeners.iter().all(|l| l.tls.is_none()) {
        listeners.resize(config.listeners.len(), None);
        return;
    }
    // One set of ticket keys for the whole process: a ticket works on every worker and
    // every listener.
    let ticketer = match rustls::crypto::aws_lc_rs::Ticketer::new() {
        Ok(ticketer) => ticketer,
        Err(error) => {
            let message = format!("cannot make session ticket keys: {error}");
            loaded.errors.push(config.origin.error("listener", message));
            return;
        }
    };
    for listener in &config.listeners {
        let tls = listener.tls.as_ref().and_then(|tls| {
            let resolver = load_resolver(config, tls, provider, now, loaded)?;
            Some(Arc::new(ListenerTls {
                resolver: Arc::new(resolver),
                versions: match tls.min_version {
                    TlsVersion::Tls12 => rustls::ALL_VERSIONS,
                    TlsVersion::Tls13 => TLS13_ONLY,
                },
                provider: match &tls.key_exchange {
                    Some(groups) => Arc::new(with_key_exchange(provider, groups)),
                    None => provider.clone(),
                },
                prefer_client_ciphers: tls.prefer_client_ciphers,
                ticketer: ticketer.clone(),
                response_fields: tls.hsts.map(hsts_field).unwrap_or_default().into(),
            }))
        });
        loaded.setup.listeners.push(tls);
    }
}

/// The resolver over a listener's certificates; `None` when one of them is unusable (the
/// errors are recorded).
fn load_resolver(
    config: &Config,
    tls: &TlsConfig,
    provider: &CryptoProvider,
    now: SystemTime,
    loaded: &mut Loaded,
) -> Option<SniResolver> {
    let mut resolver = SniResolver::default();
    let mut first = None;
    let mut marked = None;
    let mut usable = true;
    for files in &tls.certificates {
        let place = |finding: &certs::Finding, prefix: &str| {
            let key = match finding.file {
                certs::Which::Cert => format!("{}.cert", files.setting),
                certs::Which::Key => format!("{}.key", files.setting),
                certs::Which::Ocsp => format!("{}.ocsp", files.setting),
            };
            config
                .origin
                .error(&key, format!("{prefix}{}", finding.message))
        };
        match certs::load(
            &files.cert,
            &files.key,
            files.ocsp.as_deref(),
            provider,
            now,
        ) {
            Ok(cert) => {
                let warnings = cert.warnings.iter().map(|w| place(w, "warning: "));
                loaded.warnings.extend(warnings);
                resolver.add(&cert.names, &cert.key);
                first.get_or_insert_with(|| cert.key.clone());
                if files.default {
                    marked = Some(cert.key);
                }
            }
            Err(findings) => {
                usable = false;
                loaded
                    .errors
                    .extend(findings.iter().map(|finding| place(finding, "")));
            }
        }
    }
    let default = marked.or(first)?;
    // Strict: a client asking for no name, or one no certificate has, gets no certificate
    // (a handshake failure) rather than one for another site.
    if !tls.strict_sni {
        resolver.set_default(default);
    }
    usable.then_some(resolver)
}

/// `Strict-Transport-Security: max-age=N[; includeSubDomains]` and its CRLF.
fn hsts_field(hsts: Hsts) -> Vec<u8> {
    let subdomains = if hsts.include_subdomains {
        "; includeSubDomains"
    } else {
        ""
    };
    format!(
        "Strict-Transport-Security: max-age={}{subdomains}\r\n",
        hsts.max_age
    )
    .into_bytes()
}
