//! TLS to backends (`[upstream.NAME.tls]`): each group's rustls `ClientConfig`, built once per
//! config generation from the files it names (so a reload reads CA files and the client
//! certificate again) and shared by every worker and the health checker behind an `Arc`.
//!
//! One config for all workers, unlike a listener's per-worker `ServerConfig`: its session
//! cache (resumption to backends) is a mutex-guarded map, but a worker touches it only for a
//! handshake, and backend connections are pooled, so handshakes are rare.
//!
//! Which name a backend's certificate must carry: the backend's own `sni`, else the group's
//! `sni`, else the backend's IP address (backends are configured by address; a certificate
//! made for an internal service often lists it). A DNS name is also sent as SNI; an IP
//! address is not (SNI cannot carry one, RFC 6066 §3).
//!
//! Each backend gets an *identity*: a hash of everything its connections were verified with
//! (the CA certificates or the system roots, the client certificate, `verify`, the name). A
//! reload that changes none of it keeps the worker's pooled connections to the backend; one
//! that changes any of it closes them (`upstream::pool`), so a replaced CA is not trusted a
//! moment longer on connections made before.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::SingleCertAndKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{ALPN_HTTP11, Loaded, certs};
use crate::config::{Config, UpstreamConfig, UpstreamTlsConfig};

/// What every worker shares for one upstream group's TLS.
pub struct UpstreamTls {
    pub config: Arc<ClientConfig>,
    /// By backend, in the group's configuration order.
    pub backends: Box<[BackendTlsName]>,
}

/// How one backend is verified.
#[derive(Debug, Clone)]
pub struct BackendTlsName {
    /// What its certificate must name (and, a DNS name, what is sent as SNI).
    pub name: ServerName<'static>,
    /// Everything its connections are verified with, hashed (see the module docs).
    pub identity: u64,
}

/// Per upstream group, in configuration order: its TLS setup, or `None` for plain HTTP.
pub type TlsUpstreams = Vec<Option<Arc<UpstreamTls>>>;

/// Reads the files of every group's `tls` section as of `now` into `loaded.setup.upstreams`;
/// errors and warnings are placed on the settings that name the files.
pub(super) fn load(
    config: &Config,
    provider: &Arc<CryptoProvider>,
    now: SystemTime,
    loaded: &mut Loaded,
) {
    let mut system_roots = None;
    for upstream in &config.upstreams {
        let tls = upstream.tls.as_ref().and_then(|tls| {
            let mut group = GroupLoad {
                config,
                tls,
                provider,
                loaded,
            };
            group.build(upstream, &mut system_roots, now)
        });
        loaded.setup.upstreams.push(tls.map(Arc::new));
    }
}

/// The system's roots, read once per load, and their hash.
type SystemRoots = Option<Result<(Arc<RootCertStore>, u64), String>>;

/// Reading one group's `tls` section.
struct GroupLoad<'a> {
    config: &'a Config,
    tls: &'a UpstreamTlsConfig,
    provider: &'a Arc<CryptoProvider>,
    loaded: &'a mut Loaded,
}

impl GroupLoad<'_> {
    /// `None` when one of its files is unusable (the errors are recorded).
    fn build(
        &mut self,
        upstream: &UpstreamConfig,
        system_roots: &mut SystemRoots,
        now: SystemTime,
    ) -> Option<UpstreamTls> {
        let mut fingerprint = DefaultHasher::new();
        self.tls.verify.hash(&mut fingerprint);
        let verifier = self.verifier(system_roots, &mut fingerprint);
        let client_cert = self.client_cert(now, &mut fingerprint);
        let (verifier, client_cert) = (verifier?, client_cert?);
        let builder = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| self.error(&self.tls.setting, format!("cannot set up TLS: {e}")))
            .ok()?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match client_cert {
            Some(key) => builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(key))),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        let fingerprint = fingerprint.finish();
        let backends = upstream
            .backends
            .iter()
            .map(|backend| {
                let name = match backend.sni.as_ref().or(self.tls.sni.as_ref()) {
                    // Checked when the configuration was read.
                    Some(sni) => ServerName::try_from(sni.as_str()).ok()?.to_owned(),
                    None => ServerName::IpAddress(backend.address.ip().into()),
                };
                let mut identity = DefaultHasher::new();
                (fingerprint, name.to_str()).hash(&mut identity);
                Some(BackendTlsName {
                    name,
                    identity: identity.finish(),
                })
            })
            .collect::<Option<_>>()?;
        Some(UpstreamTls {
            config: Arc::new(config),
            backends,
        })
    }

    /// What checks the backends' certificates: the CA file's certificates, the system's roots,
    /// or (`verify = false`, with a warning) nothing.
    fn verifier(
        &mut self,
        system_roots: &mut SystemRoots,
        fingerprint: &mut DefaultHasher,
    ) -> Option<Arc<dyn ServerCertVerifier>> {
        if !self.tls.verify {
            let message = "warning: certificate verification is off: any certificate is \
                           accepted, so anyone on the path to these backends can read and \
                           change the traffic";
            self.warn(&format!("{}.verify", self.tls.setting), message.into());
            return Some(Arc::new(AcceptAnyCertificate(self.provider.clone())));
        }
        let roots = match &self.tls.ca {
            Some(ca) => {
                let setting = format!("{}.ca", self.tls.setting);
                let roots = certs::read_chain(ca)
                    .and_then(|certificates| trust(&certificates, &format!("{}", ca.display())));
                roots
                    .map_err(|message| self.error(&setting, message))
                    .ok()?
            }
            None => system_roots
                .get_or_insert_with(load_system_roots)
                .clone()
                .map_err(|message| self.error(&self.tls.setting, message))
                .ok()?,
        };
        roots.1.hash(fingerprint);
        let verifier = WebPkiServerVerifier::builder_with_provider(roots.0, self.provider.clone())
            .build()
            .map_err(|e| self.error(&self.tls.setting, format!("cannot verify with it: {e}")))
            .ok()?;
        Some(verifier)
    }

    /// The client certificate, if one is configured; `None` when it is unusable.
    fn client_cert(
        &mut self,
        now: SystemTime,
        fingerprint: &mut DefaultHasher,
    ) -> Option<Option<Arc<rustls::sign::CertifiedKey>>> {
        let Some(files) = &self.tls.client_cert else {
            return Some(None);
        };
        let place = |finding: &certs::Finding| match finding.file {
            certs::Which::Key => format!("{}.key", files.setting),
            certs::Which::Cert | certs::Which::Ocsp => format!("{}.cert", files.setting),
        };
        match certs::load_client(&files.cert, &files.key, self.provider, now) {
            Ok(loaded) => {
                for warning in &loaded.warnings {
                    self.warn(&place(warning), format!("warning: {}", warning.message));
                }
                loaded.key.cert.hash(fingerprint);
                Some(Some(loaded.key))
            }
            Err(findings) => {
                for finding in &findings {
                    self.error(&place(finding), finding.message.clone());
                }
                None
            }
        }
    }

    fn error(&mut self, setting: &str, message: String) {
        let error = self.config.origin.error(setting, message);
        self.loaded.errors.push(error);
    }

    fn warn(&mut self, setting: &str, message: String) {
        let warning = self.config.origin.error(setting, message);
        self.loaded.warnings.push(warning);
    }
}

/// A root store of `certificates` (read from `source`) and their hash.
fn trust(
    certificates: &[CertificateDer<'static>],
    source: &str,
) -> Result<(Arc<RootCertStore>, u64), String> {
    let mut roots = RootCertStore::empty();
    let mut hash = DefaultHasher::new();
    for (index, certificate) in certificates.iter().enumerate() {
        roots.add(certificate.clone()).map_err(|e| {
            format!(
                "{source}: certificate {} cannot be trusted as a CA: {e}",
                index + 1
            )
        })?;
        certificate.hash(&mut hash);
    }
    Ok((Arc::new(roots), hash.finish()))
}

/// The system's trusted roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` when set, else the
/// distribution's bundle). Certificates among them that rustls cannot use are skipped, as
/// the OpenSSL tools skip them.
fn load_system_roots() -> Result<(Arc<RootCertStore>, u64), String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let mut hash = DefaultHasher::new();
    for certificate in found.certs {
        certificate.hash(&mut hash);
        // A root rustls cannot parse would never verify anything: skipping it is harmless.
        let _ = roots.add(certificate);
    }
    if roots.is_empty() {
        let why = found
            .errors
            .first()
            .map_or_else(String::new, |e| format!(" ({e})"));
        return Err(format!(
            "no trusted root certificates found on this system{why}: install the \
             ca-certificates package, or give the CA to trust with ca = \"FILE\""
        ));
    }
    Ok((Arc::new(roots), hash.finish()))
}

/// `verify = false`: accepts any certificate the backend sends. The handshake's signatures are
/// still checked, so the backend must hold the key of the certificate it sent; nothing says
/// whose certificate that is.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
