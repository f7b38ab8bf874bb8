//! Reading one configured certificate: its PEM chain and private key, and the checks a
//! deploy wants before clients see them — the key matches the certificate, the certificate
//! is within its validity dates (a warning when it ends within `EXPIRY_WARNING`), and which
//! DNS names it serves.
//!
//! PEM comes apart with rustls-pki-types (certificates, and PKCS#8, PKCS#1 or SEC1 keys);
//! the key is loaded by the crypto provider (RSA, ECDSA P-256/P-384, Ed25519). The leaf's
//! subjectAltName and validity are read with x509-parser (rusticata's DER parser, as used by
//! rcgen and many TLS tools): rustls' verifier does not expose them, and these fields are
//! read once at load time, never per handshake.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate that ends within this long gets a warning at load.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 60 * 60);
/// Files larger than this are refused: a chain with its key is a few KiB, an OCSP response
/// about 2.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A certificate ready to serve, with what was found about it.
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// Its subjectAltName DNS names, wildcards included, as written.
    pub names: Vec<String>,
    pub warnings: Vec<Finding>,
}

/// Something wrong with a certificate's files, blamed on the `cert` or the `key` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: Which,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Cert,
    Key,
    Ocsp,
}

impl Finding {
    fn cert(message: String) -> Self {
        Self {
            file: Which::Cert,
            message,
        }
    }

    fn key(message: String) -> Self {
        Self {
            file: Which::Key,
            message,
        }
    }

    fn ocsp(message: String) -> Self {
        Self {
            file: Which::Ocsp,
            message,
        }
    }
}

/// Reads and checks the chain in `cert` and the key in `key` as of `now`, with the OCSP
/// response in `ocsp` to staple if one is configured. `Err` holds every problem found (each
/// file is read even when the other is bad).
pub fn load(
    cert: &Path,
    key: &Path,
    ocsp: Option<&Path>,
    provider: &CryptoProvider,
    now: SystemTime,
) -> Result<Loaded, Vec<Finding>> {
    let (mut certified, facts) = load_pair(cert, key, provider, now)?;
    let mut warnings: Vec<Finding> = facts.warnings.into_iter().map(Finding::cert).collect();
    if facts.names.is_empty() {
        warnings.push(Finding::cert(
            "the certificate has no DNS name in its subjectAltName: it is served only as the default"
                .into(),
        ));
    }
    match ocsp.map(read_ocsp).transpose() {
        Ok(staple) => certified.ocsp = staple.flatten(),
        Err(OcspProblem::Missing(message)) => warnings.push(Finding::ocsp(message)),
        Err(OcspProblem::Invalid(message)) => return Err(vec![Finding::ocsp(message)]),
    }
    Ok(Loaded {
        key: Arc::new(certified),
        names: facts.names,
        warnings,
    })
}

/// Reads and checks a client certificate (for backends that ask for one) and its key as
/// `load` does a server's: the key matches, the dates are valid. Its names are not looked at.
pub fn load_client(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
    now: SystemTime,
) -> Result<Loaded, Vec<Finding>> {
    let (certified, facts) = load_pair(cert, key, provider, now)?;
    Ok(Loaded {
        key: Arc::new(certified),
        names: Vec::new(),
        warnings: facts.warnings.into_iter().map(Finding::cert).collect(),
    })
}

/// The chain in `cert` with the key in `key`, and what the leaf says about itself.
fn load_pair(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
    now: SystemTime,
) -> Result<(CertifiedKey, Facts), Vec<Finding>> {
    let chain = read_chain(cert).map_err(Finding::cert);
    let signing_key = read_key(key)
        .and_then(|der| {
            provider
                .key_provider
                .load_private_key(der)
                .map_err(|e| format!("{}: unsupported private key: {e}", key.display()))
        })
        .map_err(Finding::key);
    let (chain, signing_key) = match (chain, signing_key) {
        (Ok(chain), Ok(signing_key)) => (chain, signing_key),
        (chain, signing_key) => {
            return Err([chain.err(), signing_key.err()]
                .into_iter()
                .flatten()
                .collect());
        }
    };
    let leaf = chain[0].clone();
    let certified = CertifiedKey::new(chain, signing_key);
    if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
        certified.keys_match()
    {
        return Err(vec![Finding::key(format!(
            "the private key in {} does not match the certificate in {}",
            key.display(),
            cert.display()
        ))]);
    }
    let facts = read_facts(&leaf, now).map_err(|message| vec![Finding::cert(message)])?;
    Ok((certified, facts))
}

/// Why an OCSP response is not stapled.
enum OcspProblem {
    /// Not there (yet): whoever fetches it has not run. Served without a staple.
    Missing(String),
    /// There, but not a successful OCSP response: a mistake to report.
    Invalid(String),
}

/// Reads the DER OCSP response in `path` and checks that it is one, and successful (RFC 6960
/// §4.2.1: `OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED, responseBytes [0] ... }`).
/// Whether it covers this certificate and is still fresh is for its fetcher and the client
/// to judge: it is stapled as given.
fn read_ocsp(path: &Path) -> Result<Option<Vec<u8>>, OcspProblem> {
    use x509_parser::der_parser::ber::BerObjectContent;
    if !path.exists() {
        return Err(OcspProblem::Missing(format!(
            "{} does not exist (yet): served without an OCSP staple until it does and the \
             configuration is reloaded",
            path.display()
        )));
    }
    let bytes = read_limited(path).map_err(OcspProblem::Invalid)?;
    let invalid = |why: &str| {
        OcspProblem::Invalid(format!(
            "{}: not a successful DER OCSP response ({why})",
            path.display()
        ))
    };
    let (_, response) = x509_parser::der_parser::parse_der(&bytes)
        .map_err(|_| invalid("not DER: use `openssl ocsp -respout`, not PEM"))?;
    let status = match response
        .as_sequence()
        .map(|items| items.first().map(|i| &i.content))
    {
        Ok(Some(BerObjectContent::Enum(status))) => *status,
        _ => return Err(invalid("no responseStatus")),
    };
    if status != 0 {
        return Err(invalid(&format!("responseStatus {status}")));
    }
    Ok(Some(bytes))
}

/// The bytes of `path`, at most `MAX_FILE_BYTES` of them.
fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "{} is larger than {MAX_FILE_BYTES} bytes; is it the right file?",
            path.display()
        ));
    }
    Ok(bytes)
}

/// The PEM certificates in `path`, at least one: a chain (its own certificate first), or CA
/// certificates to trust.
pub(super) fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_limited(path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: invalid PEM: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{} holds no certificate (expected \"-----BEGIN CERTIFICATE-----\" blocks)",
            path.display()
        ));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read_limited(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => format!(
            "{} holds no private key (expected a PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" block)",
            path.display()
        ),
        e => format!("{}: invalid PEM: {e}", path.display()),
    })
}

/// What the leaf certificate says about itself.
struct Facts {
    names: Vec<String>,
    warnings: Vec<String>,
}

fn read_facts(leaf: &CertificateDer<'_>, now: SystemTime) -> Result<Facts, String> {
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| format!("cannot parse the certificate: {e}"))?;
    let mut warnings = Vec::new();
    let validity = cert.validity();
    let now_secs = unix_seconds(now);
    let not_before = validity.not_before.timestamp();
    let not_after = validity.not_after.timestamp();
    if now_secs < not_before {
        return Err(format!(
            "the certificate is not valid yet: its validity starts {}",
            validity.not_before
        ));
    }
    if now_secs > not_after {
        return Err(format!("the certificate expired on {}", validity.not_after));
    }
    let left = not_after - now_secs;
    if left < EXPIRY_WARNING.as_secs() as i64 {
        warnings.push(format!(
            "the certificate expires on {} (in {} days)",
            validity.not_after,
            (left + 43_200) / 86_400
        ));
    }
    let names = dns_names(&cert)?;
    Ok(Facts { names, warnings })
}

fn dns_names(cert: &X509Certificate<'_>) -> Result<Vec<String>, String> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("cannot read the certificate's subjectAltName: {e}"))?;
    let Some(san) = san else {
        return Ok(Vec::new());
    };
    let names = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
            _ => None,
        })
        .collect();
    Ok(names)
}

fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => since.as_secs() as i64,
        Err(before) => -(before.duration().as_secs() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ED25519, PKCS_RSA_SHA256,
    };

    struct Files {
        dir: std::path::PathBuf,
    }

    impl Files {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "ringproxy-certs-test-{}-{name}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self { dir }
        }

        fn write(&self, name: &str, contents: &str) -> std::path::PathBuf {
            let path = self.dir.join(name);
            std::fs::write(&path, contents).unwrap();
            path
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn days(n: i64) -> time::Duration {
        time::Duration::days(n)
    }

    /// A self-signed certificate for `names` valid from `from` to `to` days from now.
    fn cert(key: &KeyPair, names: &[&str], from: i64, to: i64) -> String {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + days(from);
        params.not_after = now + days(to);
        params.self_signed(key).unwrap().pem()
    }

    use crate::tls::provider;

    fn messages(result: Result<Loaded, Vec<Finding>>) -> Vec<(Which, String)> {
        match result {
            Ok(_) => panic!("expected findings"),
            Err(findings) => findings.into_iter().map(|f| (f.file, f.message)).collect(),
        }
    }

    #[test]
    fn rsa_ecdsa_and_ed25519_keys_load_with_their_names() {
        let files = Files::new("algs");
        // ring cannot make RSA keys: a fixed one, made with `openssl genpkey`.
        let rsa =
            KeyPair::from_pem_and_sign_algo(include_str!("testdata/rsa2048.key"), &PKCS_RSA_SHA256)
                .unwrap();
        let ecdsa = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let ed25519 = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        for key in [rsa, ecdsa, ed25519] {
            let cert = files.write("c.pem", &cert(&key, &["A.test", "*.b.test"], -1, 90));
            let key = files.write("k.pem", &key.serialize_pem());
            let loaded = load(&cert, &key, None, &provider(), SystemTime::now()).unwrap();
            assert_eq!(loaded.names, ["a.test", "*.b.test"]);
            assert!(loaded.warnings.is_empty());
        }
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let files = Files::new("mismatch");
        let cert = files.write(
            "c.pem",
            &cert(&KeyPair::generate().unwrap(), &["a.test"], -1, 90),
        );
        let key = files.write("k.pem", &KeyPair::generate().unwrap().serialize_pem());
        let found = messages(load(&cert, &key, None, &provider(), SystemTime::now()));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, Which::Key);
        assert!(
            found[0].1.contains("does not match the certificate"),
            "{found:?}"
        );
    }

    #[test]
    fn validity_dates_are_checked_and_near_expiry_warned() {
        let files = Files::new("dates");
        let key = KeyPair::generate().unwrap();
        let key_path = files.write("k.pem", &key.serialize_pem());
        let check = |from, to| {
            let cert = files.write("c.pem", &cert(&key, &["a.test"], from, to));
            load(&cert, &key_path, None, &provider(), SystemTime::now())
        };
        let expired = messages(check(-30, -1));
        assert!(
            expired[0].1.starts_with("the certificate expired on"),
            "{expired:?}"
        );
        let early = messages(check(2, 30));
        assert!(
            early[0].1.starts_with("the certificate is not valid yet"),
            "{early:?}"
        );
        let soon = check(-30, 5).unwrap();
        assert_eq!(soon.warnings.len(), 1);
        assert!(
            soon.warnings[0].message.contains("(in 5 days)"),
            "{:?}",
            soon.warnings
        );
    }

    #[test]
    fn unreadable_and_wrong_files_say_which_and_why() {
        let files = Files::new("bad");
        let key = KeyPair::generate().unwrap();
        let cert_path = files.write("c.pem", &cert(&key, &["a.test"], -1, 90));
        let missing = files.dir.join("missing.pem");
        let found = messages(load(
            &missing,
            &missing,
            None,
            &provider(),
            SystemTime::now(),
        ));
        assert_eq!(found.len(), 2, "both files reported: {found:?}");
        assert_eq!((found[0].0, found[1].0), (Which::Cert, Which::Key));
        assert!(found[0].1.starts_with("cannot open "), "{found:?}");

        let found = messages(load(
            &cert_path,
            &cert_path,
            None,
            &provider(),
            SystemTime::now(),
        ));
        assert!(found[0].1.contains("holds no private key"), "{found:?}");
        let key_path = files.write("k.pem", &key.serialize_pem());
        let found = messages(load(
            &key_path,
            &key_path,
            None,
            &provider(),
            SystemTime::now(),
        ));
        assert!(found[0].1.contains("holds no certificate"), "{found:?}");
    }

    #[test]
    fn an_ocsp_response_is_stapled_when_successful_and_waited_for_when_missing() {
        let files = Files::new("ocsp");
        let key = KeyPair::generate().unwrap();
        let cert = files.write("c.pem", &cert(&key, &["a.test"], -1, 90));
        let key = files.write("k.pem", &key.serialize_pem());
        let load_with = |ocsp: &Path| load(&cert, &key, Some(ocsp), &provider(), SystemTime::now());

        // The smallest successful OCSPResponse: SEQUENCE { ENUMERATED 0 }.
        let good = files.write("good.der", "\u{30}\u{3}\u{a}\u{1}\u{0}");
        let loaded = load_with(&good).unwrap();
        assert_eq!(loaded.key.ocsp.as_deref(), Some(&[0x30, 3, 0x0a, 1, 0][..]));

        let missing = files.dir.join("later.der");
        let loaded = load_with(&missing).unwrap();
        assert_eq!(loaded.key.ocsp, None);
        assert_eq!(loaded.warnings.len(), 1);
        assert_eq!(loaded.warnings[0].file, Which::Ocsp);
        assert!(loaded.warnings[0].message.contains("does not exist (yet)"));

        let unauthorized = files.write("401.der", "\u{30}\u{3}\u{a}\u{1}\u{6}");
        let found = messages(load_with(&unauthorized));
        assert_eq!(found[0].0, Which::Ocsp);
        assert!(found[0].1.contains("responseStatus 6"), "{found:?}");
        let pem = files.write("resp.pem", "-----BEGIN OCSP RESPONSE-----\n");
        let found = messages(load_with(&pem));
        assert!(found[0].1.contains("not DER"), "{found:?}");
    }
}
