//! A test CA and certificates it signs (rcgen), as PEM files in a temporary directory: for
//! TLS listeners (`tests/tls.rs`) and TLS backends (`tests/backend_tls.rs`).

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use super::TempDir;

/// A test CA and the leaf certificates it signed, as PEM files.
pub struct Pki {
    pub dir: TempDir,
    pub ca: PathBuf,
    pub ca_key: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Pki {
        Pki::named("ringproxy test CA")
    }

    /// A CA with the common name `cn`: CAs of different names are told apart by the issuer
    /// name a certificate gives.
    pub fn named(cn: &str) -> Pki {
        let dir = TempDir::new();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let ca = dir.write("ca.pem", cert.pem().as_bytes());
        let ca_key = dir.write("ca.key", key.serialize_pem().as_bytes());
        Pki {
            dir,
            ca,
            ca_key,
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `names` with common name `cn`, valid from `from` to `to` days from now;
    /// returns (cert, key) paths. The file names are the common name.
    pub fn leaf_valid(&self, cn: &str, names: &[&str], from: i64, to: i64) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(from);
        params.not_after = now + time::Duration::days(to);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (
            self.dir.write(&format!("{cn}.pem"), cert.pem().as_bytes()),
            self.dir
                .write(&format!("{cn}.key"), key.serialize_pem().as_bytes()),
        )
    }

    pub fn leaf(&self, cn: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        self.leaf_valid(cn, names, -1, 90)
    }

    pub fn ca(&self) -> &str {
        self.ca.to_str().unwrap()
    }
}

pub fn path(p: &std::path::Path) -> String {
    p.to_str().unwrap().to_owned()
}
