//! `[listener.tls]`: which certificates a listener serves and how it speaks TLS;
//! `[upstream.NAME.tls]`: how a group's backends are reached over TLS.
//!
//! Only the settings are read here; the files they name are read and checked (key matches
//! certificate, validity dates, CA certificates parse) by `crate::tls::load`, at `--check`
//! and at start alike, with errors placed on these keys' lines through `Config::origin`.

use std::path::{Path, PathBuf};

use toml::de::DeValue;

use super::reader::{Reader, Table, boolean, integer_in, string, wrong_type};
use super::{CertificateFiles, Hsts, KeyExchange, TlsConfig, TlsVersion, UpstreamTlsConfig};

const TLS_KEYS: &[&str] = &[
    "cert",
    "key",
    "certificates",
    "ocsp",
    "min_version",
    "strict_sni",
    "prefer_client_ciphers",
    "key_exchange",
    "hsts",
    "hsts_include_subdomains",
];
const CERTIFICATE_KEYS: &[&str] = &["cert", "key", "ocsp", "default"];
const UPSTREAM_TLS_KEYS: &[&str] = &["ca", "sni", "cert", "key", "verify"];
/// Ten years: well past the two years HSTS preload lists ask for; more is a typo.
const MAX_HSTS_AGE: u64 = 10 * 365 * 24 * 60 * 60;

/// Reads the `tls` table of a listener, if it has one. `None` also when it is invalid (the
/// errors are recorded).
pub(crate) fn read_listener_tls(r: &mut Reader<'_>, listener: &Table<'_, '_>) -> Option<TlsConfig> {
    let table = r.section(listener, "tls", TLS_KEYS)?;
    let mut certificates = Vec::new();
    if let Some(pair) = read_cert_and_key(r, &table, false) {
        certificates.push(pair);
    }
    read_certificate_list(r, &table, &mut certificates);
    if certificates.is_empty() && table.get("cert").is_none() && table.get("key").is_none() {
        let message = "no certificate: give cert and key, or [[listener.tls.certificates]]";
        r.error(table.span(), table.path().to_owned(), message);
        return None;
    }
    let defaults: Vec<&str> = certificates
        .iter()
        .filter(|c| c.default)
        .map(|c| c.setting.as_str())
        .collect();
    if let [_, second, ..] = defaults[..] {
        let path = format!("{second}.default");
        let message = format!(
            "only one certificate may be the default (also {})",
            defaults[0]
        );
        r.error(table.span(), path, message);
    }
    let hsts = r.field(&table, "hsts", integer_in(0..=MAX_HSTS_AGE));
    let include_subdomains = r.field(&table, "hsts_include_subdomains", boolean);
    if include_subdomains.is_some() && hsts.is_none() && table.get("hsts").is_none() {
        r.error_at_set_key(
            &table,
            &["hsts_include_subdomains"],
            "hsts_include_subdomains needs hsts (the max-age in seconds)",
        );
    }
    let min_version = r
        .field(&table, "min_version", tls_version)
        .unwrap_or(TlsVersion::Tls12);
    let strict_sni = r.field(&table, "strict_sni", boolean).unwrap_or(false);
    let prefer_client_ciphers = r
        .field(&table, "prefer_client_ciphers", boolean)
        .unwrap_or(false);
    let key_exchange = r.field(&table, "key_exchange", key_exchanges);
    Some(TlsConfig {
        certificates,
        min_version,
        strict_sni,
        prefer_client_ciphers,
        key_exchange,
        hsts: hsts.map(|max_age| Hsts {
            max_age,
            include_subdomains: include_subdomains.unwrap_or(false),
        }),
    })
}

/// Reads the `tls` table of an upstream group, if it has one. `None` also when it is invalid
/// (the errors are recorded).
pub(crate) fn read_upstream_tls(
    r: &mut Reader<'_>,
    group: &Table<'_, '_>,
) -> Option<UpstreamTlsConfig> {
    let table = r.section(group, "tls", UPSTREAM_TLS_KEYS)?;
    let errors = r.error_count();
    let dir = config_dir(r.file());
    let ca = r.field(&table, "ca", |v| file_path(v, &dir));
    let sni = r.field(&table, "sni", server_name);
    let verify = r.field(&table, "verify", boolean).unwrap_or(true);
    if !verify {
        let message = "ca has no use with verify = false (no certificate is checked)";
        r.error_at_set_key(&table, &["ca"], message);
    }
    // A client certificate: `cert` and `key` together, checked as a listener's are.
    let client_cert = read_cert_and_key(r, &table, false);
    (r.error_count() == errors).then(|| UpstreamTlsConfig {
        ca,
        sni: sni.map(str::to_owned),
        client_cert,
        verify,
        setting: table.path().to_owned(),
    })
}

/// A name to send as SNI and verify a backend's certificate against: a DNS name, or an IP
/// address (verified, but not sent: SNI cannot carry one).
pub(crate) fn server_name<'t>(value: &'t DeValue<'_>) -> Result<&'t str, String> {
    let text = string(value)?;
    match rustls::pki_types::ServerName::try_from(text) {
        Ok(_) => Ok(text),
        Err(_) => Err(format!(
            "invalid server name {text:?} (a DNS name such as \"api.internal\", or an IP address)"
        )),
    }
}

/// `cert` and `key` of `table`, both or neither; `in_list` allows `default`.
fn read_cert_and_key(
    r: &mut Reader<'_>,
    table: &Table<'_, '_>,
    in_list: bool,
) -> Option<CertificateFiles> {
    if !in_list && table.get("cert").is_none() && table.get("key").is_none() {
        return None;
    }
    let dir = config_dir(r.file());
    let cert = r.required(table, "cert", |v| file_path(v, &dir));
    let key = r.required(table, "key", |v| file_path(v, &dir));
    let ocsp = r.field(table, "ocsp", |v| file_path(v, &dir));
    let default = in_list && r.field(table, "default", boolean).unwrap_or(false);
    Some(CertificateFiles {
        cert: cert?,
        key: key?,
        ocsp,
        default,
        setting: table.path().to_owned(),
    })
}

fn read_certificate_list(
    r: &mut Reader<'_>,
    table: &Table<'_, '_>,
    certificates: &mut Vec<CertificateFiles>,
) {
    let Some(value) = table.get("certificates") else {
        return;
    };
    let path = table.key_path("certificates");
    let DeValue::Array(items) = value.get_ref() else {
        let message = wrong_type(
            "an array of tables (write [[listener.tls.certificates]])",
            value.get_ref(),
        );
        r.error(value.span(), path, message);
        return;
    };
    for (index, item) in items.iter().enumerate() {
        let Some(entry) = r.as_table(item, format!("{path}[{index}]")) else {
            continue;
        };
        r.deny_unknown_keys(&entry, CERTIFICATE_KEYS);
        certificates.extend(read_cert_and_key(r, &entry, true));
    }
}

/// The directory relative paths in the file named `file` start from.
pub(crate) fn config_dir(file: &str) -> PathBuf {
    Path::new(file)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A path in the config, relative to the file's directory.
pub(crate) fn file_path(value: &DeValue<'_>, dir: &Path) -> Result<PathBuf, String> {
    let text = string(value)?;
    if text.is_empty() {
        return Err("empty path".into());
    }
    Ok(dir.join(text))
}

fn tls_version(value: &DeValue<'_>) -> Result<TlsVersion, String> {
    match string(value)? {
        "1.2" => Ok(TlsVersion::Tls12),
        "1.3" => Ok(TlsVersion::Tls13),
        other => Err(format!(
            "unknown TLS version {other:?} (expected \"1.2\" or \"1.3\")"
        )),
    }
}

/// `key_exchange = ["X25519", "P-256"]`: at least one group, each known once.
fn key_exchanges(value: &DeValue<'_>) -> Result<Vec<KeyExchange>, String> {
    let DeValue::Array(items) = value else {
        return Err(wrong_type(
            "an array of key exchange groups like [\"X25519\", \"P-256\"]",
            value,
        ));
    };
    if items.is_empty() {
        return Err(
            "empty: no client could complete a handshake (omit the key for the default groups)"
                .into(),
        );
    }
    let mut groups = Vec::with_capacity(items.len());
    for item in items {
        let name = string(item.get_ref())?;
        let group = key_exchange(name)?;
        if groups.contains(&group) {
            return Err(format!("{name:?} is listed twice"));
        }
        groups.push(group);
    }
    Ok(groups)
}

/// One group by its IANA / OpenSSL name, without regard to case.
fn key_exchange(name: &str) -> Result<KeyExchange, String> {
    match name.to_ascii_lowercase().as_str() {
        "x25519mlkem768" => Ok(KeyExchange::X25519Mlkem768),
        "x25519" => Ok(KeyExchange::X25519),
        "p-256" | "secp256r1" | "prime256v1" => Ok(KeyExchange::P256),
        "p-384" | "secp384r1" => Ok(KeyExchange::P384),
        _ => Err(format!(
            "unknown key exchange group {name:?} (expected \"X25519MLKEM768\", \"X25519\", \"P-256\" or \"P-384\")"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{assert_error, parse};

    fn listener_with(tls: &[&str]) -> Vec<String> {
        let mut lines: Vec<String> = ["[[listener]]", "address = \"127.0.0.1:8443\""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        lines.extend(tls.iter().map(|s| s.to_string()));
        lines.extend([
            "[upstream.app]".into(),
            "backends = [\"127.0.0.1:9000\"]".into(),
        ]);
        lines
    }

    fn parse_tls(tls: &[&str]) -> Result<TlsConfig, String> {
        let lines = listener_with(tls);
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        parse(&refs)
            .map(|mut config| config.listeners.remove(0).tls.expect("tls section"))
            .map_err(|e| e.to_string())
    }

    fn check_error(tls: &[&str], line: usize, key: &str, text: &str) {
        let lines = listener_with(tls);
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_error(&refs, Some(line), key, text);
    }

    #[test]
    fn cert_and_key_with_defaults() {
        let tls = parse_tls(&["[listener.tls]", "cert = \"a.pem\"", "key = \"/k/a.key\""]);
        assert_eq!(
            tls,
            Ok(TlsConfig::single(
                "a.pem".into(),
                "/k/a.key".into(),
                "listener[0].tls".into()
            ))
        );
    }

    #[test]
    fn relative_paths_start_at_the_config_files_directory() {
        let text = listener_with(&["[listener.tls]", "cert = \"a.pem\"", "key = \"/k/a.key\""]);
        let config = crate::config::parse_str(&text.join("\n"), "/etc/rp/x.toml").unwrap();
        let tls = config.listeners[0].tls.as_ref().unwrap();
        assert_eq!(tls.certificates[0].cert, Path::new("/etc/rp/a.pem"));
        assert_eq!(tls.certificates[0].key, Path::new("/k/a.key"));
    }

    #[test]
    fn a_list_of_certificates_follows_the_pair_and_may_name_a_default() {
        let tls = parse_tls(&[
            "[listener.tls]",
            "cert = \"a.pem\"",
            "key = \"a.key\"",
            "min_version = \"1.3\"",
            "hsts = 31536000",
            "hsts_include_subdomains = true",
            "[[listener.tls.certificates]]",
            "cert = \"b.pem\"",
            "key = \"b.key\"",
            "default = true",
        ])
        .unwrap();
        let names: Vec<(&str, bool, &str)> = tls
            .certificates
            .iter()
            .map(|c| (c.cert.to_str().unwrap(), c.default, c.setting.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("a.pem", false, "listener[0].tls"),
                ("b.pem", true, "listener[0].tls.certificates[0]")
            ]
        );
        assert_eq!(tls.min_version, TlsVersion::Tls13);
        assert_eq!(
            tls.hsts,
            Some(Hsts {
                max_age: 31536000,
                include_subdomains: true
            })
        );
    }

    #[test]
    fn settings_are_validated_where_written() {
        check_error(
            &["[listener.tls]", "cert = \"a.pem\""],
            3,
            "listener[0].tls.key",
            "missing required key \"key\"",
        );
        check_error(
            &["[listener.tls]", "min_version = \"1.2\""],
            3,
            "listener[0].tls",
            "no certificate",
        );
        check_error(
            &[
                "[listener.tls]",
                "cert = \"a\"",
                "key = \"b\"",
                "min_version = \"1.1\"",
            ],
            6,
            "listener[0].tls.min_version",
            "unknown TLS version \"1.1\"",
        );
        check_error(
            &["[listener.tls]", "cert = \"a\"", "key = \"b\"", "hsts = -1"],
            6,
            "listener[0].tls.hsts",
            "out of range",
        );
        check_error(
            &[
                "[listener.tls]",
                "cert = \"a\"",
                "key = \"b\"",
                "ciphers = 1",
            ],
            6,
            "listener[0].tls.ciphers",
            "unknown key \"ciphers\"",
        );
        check_error(
            &[
                "[listener.tls]",
                "[[listener.tls.certificates]]",
                "cert = \"a\"",
                "key = \"b\"",
                "default = true",
                "[[listener.tls.certificates]]",
                "cert = \"c\"",
                "key = \"d\"",
                "default = true",
            ],
            3,
            "listener[0].tls.certificates[1].default",
            "only one certificate may be the default",
        );
        check_error(
            &[
                "[listener.tls]",
                "cert = \"a\"",
                "key = \"b\"",
                "hsts_include_subdomains = true",
            ],
            6,
            "listener[0].tls.hsts_include_subdomains",
            "needs hsts",
        );
    }

    #[test]
    fn key_exchange_names_groups_in_any_case_and_refuses_unknown_empty_and_repeated_ones() {
        let tls = parse_tls(&[
            "[listener.tls]",
            "cert = \"a.pem\"",
            "key = \"a.key\"",
            "key_exchange = [\"x25519\", \"secp256r1\", \"P-384\", \"X25519MLKEM768\"]",
        ])
        .unwrap();
        assert_eq!(
            tls.key_exchange,
            Some(vec![
                KeyExchange::X25519,
                KeyExchange::P256,
                KeyExchange::P384,
                KeyExchange::X25519Mlkem768
            ])
        );
        let with = |list: &str| {
            [
                "[listener.tls]".to_owned(),
                "cert = \"a.pem\"".to_owned(),
                "key = \"a.key\"".to_owned(),
                format!("key_exchange = {list}"),
            ]
        };
        let cases = [
            ("[\"X448\"]", "unknown key exchange group \"X448\""),
            ("[]", "empty: no client could complete a handshake"),
            ("[\"X25519\", \"x25519\"]", "listed twice"),
            ("\"X25519\"", "an array of key exchange groups"),
        ];
        for (list, text) in cases {
            let lines = with(list);
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            check_error(&refs, 6, "listener[0].tls.key_exchange", text);
        }
    }

    fn group_with(group: &[&str], backends: &str) -> Vec<String> {
        let mut lines: Vec<String> = [
            "[[listener]]",
            "address = \"127.0.0.1:8080\"",
            "[upstream.app]",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        lines.push(format!("backends = {backends}"));
        lines.extend(group.iter().map(|s| s.to_string()));
        lines
    }

    #[test]
    fn upstream_tls_reads_every_key_with_verification_on_by_default() {
        let lines = group_with(
            &[
                "[upstream.app.tls]",
                "ca = \"ca.pem\"",
                "sni = \"app.internal\"",
                "cert = \"client.pem\"",
                "key = \"client.key\"",
            ],
            "[\"127.0.0.1:9000\", { address = \"127.0.0.1:9001\", sni = \"10.0.0.1\" }]",
        );
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let config = parse(&refs).unwrap();
        let group = &config.upstreams[0];
        assert_eq!(
            group.tls,
            Some(UpstreamTlsConfig {
                ca: Some("ca.pem".into()),
                sni: Some("app.internal".into()),
                client_cert: Some(CertificateFiles {
                    cert: "client.pem".into(),
                    key: "client.key".into(),
                    ocsp: None,
                    default: false,
                    setting: "upstream.app.tls".into(),
                }),
                verify: true,
                setting: "upstream.app.tls".into(),
            })
        );
        let names: Vec<Option<&str>> = group.backends.iter().map(|b| b.sni.as_deref()).collect();
        assert_eq!(names, [None, Some("10.0.0.1")]);
    }

    #[test]
    fn upstream_tls_settings_are_validated_where_written() {
        let one = "[\"127.0.0.1:9000\"]";
        let check = |group: &[&str], backends: &str, line, key, text| {
            let lines = group_with(group, backends);
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            assert_error(&refs, Some(line), key, text);
        };
        check(
            &["[upstream.app.tls]", "sni = \"bad name\""],
            one,
            6,
            "upstream.app.tls.sni",
            "invalid server name \"bad name\"",
        );
        check(
            &["[upstream.app.tls]", "verify = false", "ca = \"ca.pem\""],
            one,
            7,
            "upstream.app.tls.ca",
            "ca has no use with verify = false",
        );
        check(
            &["[upstream.app.tls]", "cert = \"client.pem\""],
            one,
            5,
            "upstream.app.tls.key",
            "missing required key \"key\"",
        );
        check(
            &["[upstream.app.tls]", "ciphers = \"all\""],
            one,
            6,
            "upstream.app.tls.ciphers",
            "unknown key \"ciphers\"",
        );
        check(
            &[],
            "[{ address = \"127.0.0.1:9000\", sni = \"a.internal\" }]",
            4,
            "upstream.app.backends[0].sni",
            "sni only applies to backends reached over TLS",
        );
    }
}
