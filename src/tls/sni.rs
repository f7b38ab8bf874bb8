//! Choosing a listener's certificate from the name the client asks for (SNI).
//!
//! Names come from the certificates' own subjectAltName DNS entries. A name matches
//! exactly, else one wildcard entry `*.example.com` matches one more label, as browsers
//! match (`a.example.com`, not `example.com` nor `a.b.example.com`). Names compare without
//! regard to ASCII case or a trailing dot. When two certificates list the same name, the
//! first configured wins. A client that sends no name, or a name no certificate has, gets
//! the default certificate.
//!
//! The resolver is built once and shared by every worker behind an `Arc`: lookups only read.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

#[derive(Debug, Default)]
pub struct SniResolver {
    exact: HashMap<Box<str>, Arc<CertifiedKey>>,
    /// `*.example.com`, keyed by `example.com`.
    wildcard: HashMap<Box<str>, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    /// Adds a certificate under its DNS names (lower-cased, as they appear in the
    /// certificate); names already taken stay with the earlier certificate.
    pub fn add(&mut self, names: &[String], key: &Arc<CertifiedKey>) {
        for name in names {
            let name = normalise(name);
            let (map, name) = match name.strip_prefix("*.") {
                Some(parent) => (&mut self.wildcard, parent),
                None => (&mut self.exact, name.as_ref()),
            };
            map.entry(name.into()).or_insert_with(|| key.clone());
        }
    }

    /// Serves `key` when no name matches.
    pub fn set_default(&mut self, key: Arc<CertifiedKey>) {
        self.default = Some(key);
    }

    /// The certificate for a client that asked for `server_name` (`None`: no SNI).
    pub fn find(&self, server_name: Option<&str>) -> Option<&Arc<CertifiedKey>> {
        let matched = server_name.and_then(|name| {
            let name = normalise(name);
            self.exact.get(name.as_ref()).or_else(|| {
                let (first, parent) = name.split_once('.')?;
                if first.is_empty() {
                    return None;
                }
                self.wildcard.get(parent)
            })
        });
        matched.or(self.default.as_ref())
    }
}

/// Lower case without a trailing dot; borrowed when already so (the common case: rustls
/// hands over the SNI name lower-cased).
fn normalise(name: &str) -> std::borrow::Cow<'_, str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        name.to_ascii_lowercase().into()
    } else {
        name.into()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.find(client_hello.server_name()).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in certificate, told apart by its (fake) DER bytes.
    fn key(tag: u8) -> Arc<CertifiedKey> {
        let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&test_key())
            .expect("test key loads");
        Arc::new(CertifiedKey::new(vec![vec![tag].into()], signing))
    }

    fn test_key() -> rustls::pki_types::PrivateKeyDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into())
    }

    fn served(resolver: &SniResolver, name: Option<&str>) -> Option<u8> {
        resolver.find(name).map(|k| k.cert[0].as_ref()[0])
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn exact_names_then_one_label_wildcards_then_the_default() {
        let mut resolver = SniResolver::default();
        resolver.add(&names(&["a.example.com", "example.com"]), &key(1));
        resolver.add(&names(&["*.example.com", "b.example.com"]), &key(2));
        resolver.add(&names(&["a.example.com", "c.test"]), &key(3));
        assert_eq!(served(&resolver, Some("a.example.com")), Some(1));
        assert_eq!(served(&resolver, Some("example.com")), Some(1));
        assert_eq!(served(&resolver, Some("b.example.com")), Some(2));
        assert_eq!(served(&resolver, Some("zz.example.com")), Some(2));
        assert_eq!(served(&resolver, Some("c.test")), Some(3));
        assert_eq!(served(&resolver, Some("x.y.example.com")), None);
        assert_eq!(served(&resolver, Some(".example.com")), None);
        assert_eq!(served(&resolver, None), None, "no default set");

        resolver.set_default(key(9));
        assert_eq!(served(&resolver, Some("x.y.example.com")), Some(9));
        assert_eq!(served(&resolver, Some("unknown.test")), Some(9));
        assert_eq!(served(&resolver, None), Some(9));
    }

    #[test]
    fn names_match_regardless_of_case_and_a_trailing_dot() {
        let mut resolver = SniResolver::default();
        resolver.add(&names(&["Www.Example.com", "*.Api.Example.com"]), &key(1));
        assert_eq!(served(&resolver, Some("www.example.com")), Some(1));
        assert_eq!(served(&resolver, Some("WWW.EXAMPLE.COM.")), Some(1));
        assert_eq!(served(&resolver, Some("v1.api.example.com")), Some(1));
    }
}
