//! TLS termination end to end: certificates made here (a CA and leaves for two names and a
//! wildcard), real clients (curl, Python's `ssl`, `openssl s_client`), and raw sockets for
//! what misbehaving clients send.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;

use common::pki::{Pki, path};
use common::prom::{parse_exposition, value};
use common::{
    Backend, IO_TIMEOUT, Proxy, RawClient, Step, TempDir, admin_addr, admin_get, config, curl,
    run_to_exit, ws_frame, ws_read_frame,
};

/// A listener on an ephemeral port terminating TLS with `tls` (the lines of
/// `[listener.tls]` and what follows it), in front of `backend`.
fn tls_config(backend: SocketAddr, tls: &str, extra: &str) -> String {
    format!(
        "[runtime]\nworkers = 1\npin = false\n\n[[listener]]\naddress = \"127.0.0.1:0\"\n\
         upstream = \"app\"\n[listener.tls]\n{tls}\n\n[upstream.app]\nbackends = [\"{backend}\"]\n\n{extra}\n"
    )
}

/// A proxy serving `leaf-a` (for `a.test`) in front of an echo backend; `tls` adds lines to
/// `[listener.tls]`, `extra` adds tables.
struct Site {
    pki: Pki,
    backend: Backend,
    proxy: Proxy,
}

fn site(tls: &str, extra: &str) -> Site {
    let pki = Pki::new();
    let a = pki.leaf("leaf-a", &["a.test"]);
    let backend = Backend::echo();
    let tls = format!("{}{tls}", cert_key(&a));
    let proxy = Proxy::start_with_config(&tls_config(backend.addr(), &tls, extra), &[]);
    Site {
        pki,
        backend,
        proxy,
    }
}

fn cert_key(cert: &(PathBuf, PathBuf)) -> String {
    format!(
        "cert = \"{}\"\nkey = \"{}\"\n",
        path(&cert.0),
        path(&cert.1)
    )
}

fn listed(cert: &(PathBuf, PathBuf), default: bool) -> String {
    format!(
        "[[listener.tls.certificates]]\n{}default = {default}\n",
        cert_key(cert)
    )
}

/// `curl -v` to `https://NAME:PORT/` with `NAME` resolved to the proxy, verifying against
/// the test CA; returns the result and the subject curl saw.
fn curl_name(proxy: &Proxy, pki: &Pki, name: &str) -> (common::Curl, String) {
    let port = proxy.addr().port();
    let resolve = format!("{name}:{port}:127.0.0.1");
    let url = format!("https://{name}:{port}/");
    let result = curl(&["-v", "--cacert", pki.ca(), "--resolve", &resolve, &url]);
    let subject = result
        .stderr
        .lines()
        .find_map(|l| l.trim_start_matches('*').trim().strip_prefix("subject: "))
        .unwrap_or("")
        .to_owned();
    (result, subject)
}

/// `openssl s_client` with ARGS against the proxy; its stdout and stderr together.
fn s_client(addr: SocketAddr, args: &[&str]) -> String {
    s_client_sending(addr, args, b"")
}

/// `s_client` that sends `input` once connected and reads until the proxy closes: it has
/// then seen what the server sends after the handshake (TLS 1.3 session tickets).
fn s_client_sending(addr: SocketAddr, args: &[&str], input: &[u8]) -> String {
    let mut child = Command::new("timeout")
        .args(["20", "openssl", "s_client", "-connect", &addr.to_string()])
        .args(args)
        .args(if input.is_empty() {
            &[][..]
        } else {
            &["-ign_eof"][..]
        })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn sni_picks_each_certificate_and_clients_verify_it() {
    let pki = Pki::new();
    let a = pki.leaf("leaf-a", &["a.test"]);
    let b = pki.leaf("leaf-b", &["b.test"]);
    let w = pki.leaf("leaf-w", &["*.w.test"]);
    let backend = Backend::echo();
    let tls = format!("{}{}{}", cert_key(&a), listed(&b, false), listed(&w, false));
    let proxy = Proxy::start_with_config(&tls_config(backend.addr(), &tls, ""), &[]);

    for (name, subject) in [
        ("a.test", "CN=leaf-a"),
        ("b.test", "CN=leaf-b"),
        ("api.w.test", "CN=leaf-w"),
        ("B.TEST", "CN=leaf-b"),
    ] {
        let (result, seen) = curl_name(&proxy, &pki, name);
        assert_eq!(result.status, 200, "{name}: {}", result.stderr);
        assert_eq!(seen, subject, "{name}");
    }
    // One label only, as browsers match: the default answers, and curl refuses it.
    let (result, seen) = curl_name(&proxy, &pki, "x.api.w.test");
    assert_ne!(result.exit_code, 0, "{}", result.stderr);
    assert!(result.stderr.contains("SSL"), "{}", result.stderr);
    assert_eq!(seen, "CN=leaf-a", "the default (first) certificate");

    // Without SNI and with an unknown name: the first certificate.
    let no_sni = s_client(proxy.addr(), &["-noservername"]);
    assert!(no_sni.contains("subject=CN = leaf-a"), "{no_sni}");
    let unknown = s_client(proxy.addr(), &["-servername", "unknown.test"]);
    assert!(unknown.contains("subject=CN = leaf-a"), "{unknown}");
}

#[test]
fn a_certificate_marked_default_serves_clients_without_a_known_name() {
    let pki = Pki::new();
    let a = pki.leaf("leaf-a", &["a.test"]);
    let b = pki.leaf("leaf-b", &["b.test"]);
    let backend = Backend::echo();
    let tls = format!("{}{}", listed(&a, false), listed(&b, true));
    let proxy = Proxy::start_with_config(&tls_config(backend.addr(), &tls, ""), &[]);
    let no_sni = s_client(proxy.addr(), &["-noservername"]);
    assert!(no_sni.contains("subject=CN = leaf-b"), "{no_sni}");
    let named = s_client(proxy.addr(), &["-servername", "a.test"]);
    assert!(named.contains("subject=CN = leaf-a"), "{named}");
}

/// Python's `ssl` at one TLS version, offering ALPN h2 and http/1.1: prints the version,
/// the protocol chosen and the status line.
const PYTHON_CLIENT: &str = r#"
import socket, ssl, sys
port, ca, version = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
v = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[version]
ctx.minimum_version = v
ctx.maximum_version = v
ctx.set_alpn_protocols(["h2", "http/1.1"])
with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="a.test") as tls:
        agreed = (tls.version(), tls.selected_alpn_protocol())
        tls.sendall(b"GET /py HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = tls.recv(65536)
            if not chunk:
                break
            data += chunk
        print(*agreed, data.split(b"\r\n")[0].decode())
"#;

#[test]
fn python_speaks_tls_1_2_and_1_3_with_alpn_http_1_1() {
    let Site { pki, proxy, .. } = site("", "");
    let port = proxy.addr().port().to_string();
    for (version, expected) in [("1.2", "TLSv1.2"), ("1.3", "TLSv1.3")] {
        let out = Command::new("python3")
            .args(["-c", PYTHON_CLIENT, &port, pki.ca(), version])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout.trim(),
            format!("{expected} http/1.1 HTTP/1.1 200 OK"),
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn min_version_1_3_refuses_tls_1_2() {
    let Site { proxy, .. } = site("min_version = \"1.3\"\n", "");
    let old = s_client(proxy.addr(), &["-tls1_2", "-servername", "a.test"]);
    assert!(old.contains("alert protocol version"), "{old}");
    let new = s_client(proxy.addr(), &["-tls1_3", "-servername", "a.test"]);
    assert!(
        new.contains("Protocol: TLSv1.3") || new.contains("TLSv1.3"),
        "{new}"
    );
    assert!(new.contains("subject=CN = leaf-a"), "{new}");

    // The default minimum, 1.2, lets it in.
    let Site { proxy, .. } = site("", "");
    let old = s_client(proxy.addr(), &["-tls1_2", "-servername", "a.test"]);
    assert!(old.contains("Protocol  : TLSv1.2"), "{old}");
}

/// The cipher suite `s_client` reports for a handshake with ARGS.
fn negotiated_cipher(proxy: &Proxy, args: &[&str]) -> String {
    let out = s_client(proxy.addr(), &[&["-servername", "a.test"], args].concat());
    let Some(line) = out.lines().find(|l| l.contains(", Cipher is ")) else {
        panic!("no cipher in: {out}");
    };
    line.rsplit(' ').next().unwrap_or_default().to_owned()
}

#[test]
fn the_listener_picks_aes_128_gcm_first_unless_the_client_order_is_preferred() {
    // OpenSSL's own order: AES-256-GCM first.
    let tls13 = [
        "-tls1_3",
        "-ciphersuites",
        "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256",
    ];
    let tls12 = [
        "-tls1_2",
        "-cipher",
        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256",
    ];
    let chacha_only = ["-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"];

    let Site { proxy, .. } = site("", "");
    assert_eq!(negotiated_cipher(&proxy, &tls13), "TLS_AES_128_GCM_SHA256");
    assert!(negotiated_cipher(&proxy, &tls12).contains("AES128-GCM"));
    // Offered only ChaCha20, a client gets it.
    assert_eq!(
        negotiated_cipher(&proxy, &chacha_only),
        "TLS_CHACHA20_POLY1305_SHA256"
    );

    let Site { proxy, .. } = site("prefer_client_ciphers = true\n", "");
    assert_eq!(negotiated_cipher(&proxy, &tls13), "TLS_AES_256_GCM_SHA384");
    assert!(negotiated_cipher(&proxy, &tls12).contains("AES256-GCM"));
}

#[test]
fn key_exchange_limits_the_groups_a_client_can_use() {
    let Site { proxy, .. } = site("key_exchange = [\"P-256\"]\n", "");
    let p256 = s_client(
        proxy.addr(),
        &["-servername", "a.test", "-groups", "X25519:P-256"],
    );
    assert!(p256.contains("Server Temp Key: ECDH, prime256v1"), "{p256}");
    let x25519 = s_client(
        proxy.addr(),
        &["-servername", "a.test", "-groups", "X25519"],
    );
    assert!(x25519.contains("alert handshake failure"), "{x25519}");
    assert!(!x25519.contains("Server Temp Key"), "{x25519}");

    // By default X25519 is there.
    let Site { proxy, .. } = site("", "");
    let x25519 = s_client(
        proxy.addr(),
        &["-servername", "a.test", "-groups", "X25519"],
    );
    assert!(x25519.contains("Server Temp Key: X25519"), "{x25519}");
}

#[test]
fn sessions_resume_with_tickets() {
    let Site { pki, proxy, .. } = site("", "");
    let session = pki.dir.path().join("session");
    let session = path(&session);
    let request = b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";
    for version in ["-tls1_2", "-tls1_3"] {
        let first = s_client_sending(
            proxy.addr(),
            &[version, "-servername", "a.test", "-sess_out", &session],
            request,
        );
        assert!(first.contains("New, TLSv1"), "{first}");
        let again = s_client(
            proxy.addr(),
            &[version, "-servername", "a.test", "-sess_in", &session],
        );
        assert!(again.contains("Reused, TLSv1"), "{version}: {again}");
    }
}

#[test]
fn requests_reach_the_backend_marked_https_and_responses_carry_hsts() {
    let hsts = "hsts = 600\nhsts_include_subdomains = true\n";
    let Site {
        pki,
        backend,
        proxy,
    } = site(hsts, "");
    let (result, _) = curl_name(&proxy, &pki, "a.test");
    assert_eq!(result.status, 200, "{}", result.stderr);
    assert_eq!(
        result.header("strict-transport-security").as_deref(),
        Some("max-age=600; includeSubDomains")
    );
    let requests = backend.wait_for_requests(1);
    assert_eq!(requests[0].header("x-forwarded-proto"), Some("https"));
    // The proxy's own answers carry it too (here a 400 for two Host fields).
    let mut tls = BufReader::new(rustls_client(&proxy, &pki));
    tls.get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n")
        .unwrap();
    let head = read_head(&mut tls);
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(
        head.contains("\r\nStrict-Transport-Security: max-age=600; includeSubDomains\r\n"),
        "{head}"
    );

    // A plain listener says http and adds no HSTS.
    let plain = Proxy::start_with_config(&config(&[backend.addr()], ""), &[]);
    let result = curl(&[&plain.url("/")]);
    assert_eq!(result.status, 200);
    assert_eq!(result.header("strict-transport-security"), None);
    let requests = backend.wait_for_requests(2);
    assert_eq!(requests[1].header("x-forwarded-proto"), Some("http"));
}

#[test]
fn plain_http_to_the_tls_port_gets_a_clear_400_then_close() {
    let Site { backend, proxy, .. } = site("", "");
    let mut client = RawClient::connect(proxy.addr());
    client.send(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n");
    let response = client.read_response().unwrap();
    assert_eq!(response.status, 400);
    assert_eq!(response.header("connection"), Some("close"));
    client.wait_closed(Duration::from_secs(5)).unwrap();
    assert_eq!(backend.requests().len(), 0);
}

#[test]
fn garbage_and_bad_handshakes_are_closed_at_once() {
    let Site { pki, proxy, .. } = site("", "[timeouts]\nclient_header = \"30s\"\n");
    // Neither TLS nor HTTP; a handshake record holding nonsense.
    for bytes in [
        &b"\x00\x01\x02 not tls\r\n"[..],
        b"\x16\x03\x01\x00\x05hello",
    ] {
        let started = Instant::now();
        let mut client = RawClient::connect(proxy.addr());
        client.send(bytes);
        // A bad handshake gets rustls' alert before the close; nothing else.
        client.set_read_timeout(Duration::from_secs(5));
        let rest = client.read_to_end().unwrap_or_default();
        assert!(rest.is_empty() || rest[0] == 0x15, "{bytes:?}: {rest:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{bytes:?} took {:?}",
            started.elapsed()
        );
    }
    // The proxy still serves.
    let (result, _) = curl_name(&proxy, &pki, "a.test");
    assert_eq!(result.status, 200, "{}", result.stderr);
}

#[test]
fn a_stalled_handshake_is_closed_by_client_header() {
    let Site { proxy, .. } = site("", "[timeouts]\nclient_header = \"1s\"\n");
    // Silent from the start; the first bytes of a ClientHello and no more.
    for bytes in [&b""[..], b"\x16\x03\x01\x02"] {
        let started = Instant::now();
        let mut client = RawClient::connect(proxy.addr());
        if !bytes.is_empty() {
            client.send(bytes);
        }
        client.wait_closed(Duration::from_secs(8)).unwrap();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(5),
            "{bytes:?}: closed after {took:?}"
        );
    }
}

#[test]
fn cli_quick_mode_serves_https_on_every_listen_address() {
    let pki = Pki::new();
    let a = pki.leaf("leaf-a", &["a.test"]);
    let backend = Backend::echo();
    let upstream = backend.addr().to_string();
    let (cert, key) = (path(&a.0), path(&a.1));
    let proxy = Proxy::start(&[
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "[::1]:0",
        "--upstream",
        &upstream,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--workers",
        "1",
        "--no-pin",
    ]);
    assert_eq!(proxy.addrs().len(), 2);
    let (result, seen) = curl_name(&proxy, &pki, "a.test");
    assert_eq!(result.status, 200, "{}", result.stderr);
    assert_eq!(seen, "CN=leaf-a");
    let v6 = format!("https://[::1]:{}/", proxy.addrs()[1].port());
    let result = curl(&["-k", &v6]);
    assert_eq!(result.status, 200, "{}", result.stderr);

    let missing = pki.dir.path().join("missing.pem");
    let out = run_to_exit(
        &[
            "--listen",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.2:0",
            "--upstream",
            &upstream,
            "--tls-cert",
            &path(&missing),
            "--tls-key",
            &key,
            "--check",
        ],
        Duration::from_secs(10),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let expected = format!("ringproxy: --tls-cert: cannot open {}: ", path(&missing));
    assert!(
        stderr.lines().filter(|l| l.starts_with(&expected)).count() == 1,
        "once, however many listeners: {stderr}"
    );
}

#[test]
fn check_names_file_line_and_key_of_each_bad_certificate() {
    let pki = Pki::new();
    let good = pki.leaf("good", &["a.test"]);
    let other = pki.leaf("other", &["b.test"]);
    let expired = pki.leaf_valid("expired", &["a.test"], -60, -1);
    let early = pki.leaf_valid("early", &["a.test"], 3, 60);
    let soon = pki.leaf_valid("soon", &["a.test"], -60, 5);
    let missing = pki.dir.path().join("missing.pem");
    let backend = "127.0.0.1:9";
    let listener = |n: usize, tls: &str| {
        format!(
            "[[listener]]\naddress = \"127.0.0.1:{}\"\n[listener.tls]\n{tls}",
            40000 + n
        )
    };
    // Lines: each listener is 3 lines, then its cert and key lines.
    let text = [
        listener(
            0,
            &format!(
                "cert = \"{}\"\nkey = \"{}\"\n",
                path(&good.0),
                path(&other.1)
            ),
        ),
        listener(1, &cert_key(&expired)),
        listener(2, &cert_key(&early)),
        listener(
            3,
            &format!(
                "cert = \"{}\"\nkey = \"{}\"\n",
                path(&missing),
                path(&good.1)
            ),
        ),
        listener(4, &cert_key(&soon)),
        format!("[upstream.app]\nbackends = [\"{backend}\"]\n"),
    ]
    .concat();
    let file = pki.dir.write("bad.toml", text.as_bytes());
    let file = path(&file);
    let out = run_to_exit(&["--check", "--config", &file], Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let expect = [
        (5, "listener[0].tls.key", "does not match the certificate"),
        (9, "listener[1].tls.cert", "the certificate expired on"),
        (
            14,
            "listener[2].tls.cert",
            "the certificate is not valid yet",
        ),
        (19, "listener[3].tls.cert", "cannot open "),
        (
            24,
            "listener[4].tls.cert",
            "warning: the certificate expires on",
        ),
    ];
    for (line, key, text) in expect {
        let prefix = format!("{file}:{line}: {key}: ");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&prefix) && l.contains(text)),
            "no {prefix}...{text} in:\n{stderr}"
        );
    }

    // A warning alone: the configuration is usable.
    let text = [
        listener(0, &cert_key(&soon)),
        format!("[upstream.app]\nbackends = [\"{backend}\"]\n"),
    ]
    .concat();
    let file = pki.dir.write("soon.toml", text.as_bytes());
    let out = run_to_exit(
        &["--check", "--config", &path(&file)],
        Duration::from_secs(10),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: the certificate expires on"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("config OK"));
}

/// A rustls client connection to the proxy for `a.test`, trusting the test CA.
fn rustls_client(
    proxy: &Proxy,
    pki: &Pki,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    rustls_client_with(proxy, pki, rustls::crypto::aws_lc_rs::default_provider())
}

/// `rustls_client` with the client's own choice of algorithms.
fn rustls_client_with(
    proxy: &Proxy,
    pki: &Pki,
    provider: rustls::crypto::CryptoProvider,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let ca = rustls::pki_types::CertificateDer::from_pem_file(&pki.ca).unwrap();
    roots.add(ca).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = "a.test".try_into().unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(proxy.addr()).unwrap();
    tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// Reads a response head, up to its blank line.
fn read_head<R: BufRead>(reader: &mut R) -> String {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "closed in the head: {head}"
        );
        head.push_str(&line);
        if line == "\r\n" {
            return head;
        }
    }
}

#[test]
fn websocket_over_tls_relays_both_ways_and_a_bad_record_ends_only_its_connection() {
    let pki = Pki::new();
    let a = pki.leaf("leaf-a", &["a.test"]);
    let backend = Backend::start(|_| {
        let mut out = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
            .to_vec();
        out.extend_from_slice(&ws_frame(0x1, b"hello from server", None));
        vec![Step::Write(out), Step::WebSocketEcho]
    });
    let proxy = Proxy::start_with_config(&tls_config(backend.addr(), &cert_key(&a), ""), &[]);
    let upgrade = || {
        let mut tls = BufReader::new(rustls_client(&proxy, &pki));
        tls.get_mut()
            .write_all(
                b"GET /chat HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            )
            .unwrap();
        let head = read_head(&mut tls);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert_eq!(
            ws_read_frame(&mut tls).unwrap(),
            (0x1, b"hello from server".to_vec())
        );
        tls
    };
    let mut tls = upgrade();
    let key = [0x12, 0x34, 0x56, 0x78];
    for msg in [&b"ping one"[..], &[b'x'; 40_000][..]] {
        tls.get_mut()
            .write_all(&ws_frame(0x1, msg, Some(key)))
            .unwrap();
        assert_eq!(ws_read_frame(&mut tls).unwrap(), (0x1, msg.to_vec()));
    }

    // A corrupt record under the tunnel: that connection ends, the worker serves on.
    let tcp = &mut tls.get_mut().sock;
    let mut record = b"\x17\x03\x03\x00\x20".to_vec();
    record.extend_from_slice(&[b'!'; 0x20]);
    tcp.write_all(&record).unwrap();
    let mut rest = Vec::new();
    let closed = std::io::Read::read_to_end(tcp, &mut rest);
    if let Err(error) = closed {
        let kind = error.kind();
        let waited = matches!(
            kind,
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        );
        assert!(!waited, "the connection was not closed: {error}");
    }
    let mut again = upgrade();
    again
        .get_mut()
        .write_all(&ws_frame(0x1, b"still here", Some(key)))
        .unwrap();
    assert_eq!(
        ws_read_frame(&mut again).unwrap(),
        (0x1, b"still here".to_vec())
    );
}

#[test]
fn a_redirect_that_keeps_the_scheme_says_https_on_a_tls_listener() {
    let pki = Pki::new();
    let a = pki.leaf("leaf-a", &["a.test"]);
    let backend = Backend::echo();
    let toml = format!(
        "[runtime]\nworkers = 1\npin = false\n\n[[listener]]\naddress = \"127.0.0.1:0\"\n\
         routes = \"main\"\n[listener.tls]\n{}\n\
         [[routes.main.route]]\npath = \"/old\"\nredirect = {{ status = 307, path = \"/new\" }}\n\
         [[routes.main.route]]\nupstream = \"app\"\n\n\
         [upstream.app]\nbackends = [\"{}\"]\n",
        cert_key(&a),
        backend.addr()
    );
    let proxy = Proxy::start_with_config(&toml, &[]);
    let port = proxy.addr().port();
    let resolve = format!("a.test:{port}:127.0.0.1");
    let url = format!("https://a.test:{port}/old");
    let result = curl(&["--cacert", pki.ca(), "--resolve", &resolve, &url]);
    assert_eq!(result.status, 307, "{}", result.stderr);
    assert_eq!(
        result.header("location").as_deref(),
        Some("https://a.test/new")
    );
}

/// One GET for `a.test` over `conn`, its whole response read; the response head.
fn tls_exchange<S: std::io::Read + Write>(conn: &mut BufReader<S>) -> std::io::Result<String> {
    conn.get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")?;
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        if conn.read_line(&mut head)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .and_then(|n| n.trim().parse::<usize>().ok())
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    std::io::Read::read_exact(conn, &mut body)?;
    Ok(head)
}

/// Waits until the proxy has logged a line `wanted` accepts.
fn wait_for_line(proxy: &Proxy, wanted: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + IO_TIMEOUT;
    while !proxy.stderr_lines().iter().any(|l| wanted(l)) {
        assert!(
            Instant::now() < deadline,
            "not logged; stderr:\n{}",
            proxy.stderr_lines().join("\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn certificates_reload_on_sighup_and_a_bad_one_keeps_the_old() {
    let pki = Pki::new();
    let first = pki.leaf("leaf-a", &["a.test"]);
    let renewed = pki.leaf("leaf-a-renewed", &["a.test"]);
    let read = |p: &PathBuf| std::fs::read(p).unwrap();
    let live = (
        pki.dir.write("live.pem", &read(&first.0)),
        pki.dir.write("live.key", &read(&first.1)),
    );
    let backend = Backend::echo();
    let proxy = Proxy::start_with_config(&tls_config(backend.addr(), &cert_key(&live), ""), &[]);
    let mut kept = BufReader::new(rustls_client(&proxy, &pki));
    let mut exchange = || tls_exchange(&mut kept).unwrap();
    assert!(exchange().starts_with("HTTP/1.1 200"));

    std::fs::write(&live.0, read(&renewed.0)).unwrap();
    std::fs::write(&live.1, read(&renewed.1)).unwrap();
    proxy.signal("HUP");
    wait_for_line(&proxy, |l| {
        l == "ringproxy: generation 2 serving on every worker"
    });
    let (result, seen) = curl_name(&proxy, &pki, "a.test");
    assert_eq!((result.status, seen.as_str()), (200, "CN=leaf-a-renewed"));
    // The connection made before goes on with its session.
    assert!(exchange().starts_with("HTTP/1.1 200"));

    std::fs::write(&live.1, b"-----BEGIN PRIVATE KEY-----\nnot a key\n").unwrap();
    proxy.signal("HUP");
    wait_for_line(&proxy, |l| {
        l.starts_with("ringproxy: reload rejected; generation 2")
    });
    let said = proxy.stderr_lines().join("\n");
    assert!(said.contains("live.key"), "{said}");
    let (result, seen) = curl_name(&proxy, &pki, "a.test");
    assert_eq!((result.status, seen.as_str()), (200, "CN=leaf-a-renewed"));
}

#[test]
fn strict_sni_refuses_unknown_names_and_clients_without_one() {
    let site = site("strict_sni = true\n", "");
    let (result, seen) = curl_name(&site.proxy, &site.pki, "a.test");
    assert_eq!((result.status, seen.as_str()), (200, "CN=leaf-a"));
    for args in [&["-servername", "unknown.test"][..], &["-noservername"][..]] {
        let refused = s_client(site.proxy.addr(), args);
        assert!(refused.contains("alert"), "{args:?}: {refused}");
        assert!(
            !refused.contains("subject="),
            "{args:?}: no certificate served: {refused}"
        );
    }
    assert_eq!(site.backend.requests().len(), 1);
}

/// Runs `openssl ARGS` in `dir`, which must succeed.
fn openssl(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_ocsp_response_is_stapled_and_a_missing_one_is_a_warning() {
    let pki = Pki::new();
    let leaf = pki.leaf("leaf-a", &["a.test"]);
    let dir = pki.dir.path();
    // A real response from openssl's own responder, for this certificate: good.
    let serial = openssl(dir, &["x509", "-in", &path(&leaf.0), "-noout", "-serial"]);
    let serial = serial.trim().trim_start_matches("serial=");
    pki.dir.write(
        "index.txt",
        format!("V\t391231235959Z\t\t{serial}\tunknown\t/CN=leaf-a\n").as_bytes(),
    );
    openssl(
        dir,
        &[
            "ocsp",
            "-issuer",
            pki.ca(),
            "-cert",
            &path(&leaf.0),
            "-no_nonce",
            "-reqout",
            "req.der",
        ],
    );
    openssl(
        dir,
        &[
            "ocsp",
            "-index",
            "index.txt",
            "-rsigner",
            pki.ca(),
            "-rkey",
            &path(&pki.ca_key),
            "-CA",
            pki.ca(),
            "-reqin",
            "req.der",
            "-respout",
            "resp.der",
            "-ndays",
            "7",
        ],
    );
    let backend = Backend::echo();
    let stapled = format!(
        "{}ocsp = \"{}\"\n",
        cert_key(&leaf),
        path(&dir.join("resp.der"))
    );
    let proxy = Proxy::start_with_config(&tls_config(backend.addr(), &stapled, ""), &[]);
    let status = s_client(proxy.addr(), &["-servername", "a.test", "-status"]);
    assert!(
        status.contains("OCSP Response Status: successful"),
        "{status}"
    );
    assert!(status.contains("Cert Status: good"), "{status}");

    let later = format!(
        "{}ocsp = \"{}\"\n",
        cert_key(&leaf),
        path(&dir.join("later.der"))
    );
    let config = TempDir::new();
    let file = config.write(
        "ringproxy.toml",
        tls_config(backend.addr(), &later, "").as_bytes(),
    );
    let check = run_to_exit(&["--check", "--config", &path(&file)], IO_TIMEOUT);
    let said = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{said}");
    assert!(
        said.contains("listener[0].tls.ocsp: warning:") && said.contains("does not exist (yet)"),
        "{said}"
    );
    let proxy = Proxy::start_with_config(&tls_config(backend.addr(), &later, ""), &[]);
    let status = s_client(proxy.addr(), &["-servername", "a.test", "-status"]);
    assert!(
        status.contains("OCSP response: no response sent"),
        "{status}"
    );
}

#[test]
fn a_client_offering_only_post_quantum_key_exchange_gets_x25519mlkem768() {
    let Site { pki, proxy, .. } = site("", "");
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519MLKEM768];
    let mut tls = rustls_client_with(&proxy, &pki, provider);
    tls.write_all(b"GET /pq HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let head = read_head(&mut BufReader::new(&mut tls));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let group = tls.conn.negotiated_key_exchange_group().map(|g| g.name());
    assert_eq!(group, Some(rustls::NamedGroup::X25519MLKEM768));
}

/// `ringproxy_tls_handshakes_total` by kind, then `ringproxy_tls_handshake_failures_total`
/// by reason, as the Prometheus parser reads them from the proxy's `/metrics`.
fn tls_counts(proxy: &Proxy) -> Vec<(String, f64)> {
    let (status, text) = admin_get(admin_addr(proxy), "/metrics", None);
    assert_eq!(status, 200, "{text}");
    let samples = parse_exposition(&text);
    let kinds = ["full", "resumed"].map(|kind| {
        let count = value(
            &samples,
            "ringproxy_tls_handshakes_total",
            &[("kind", kind)],
        );
        (kind.to_string(), count)
    });
    let reasons = TLS_FAILURE_REASONS.map(|reason| {
        let name = "ringproxy_tls_handshake_failures_total";
        (
            reason.to_string(),
            value(&samples, name, &[("reason", reason)]),
        )
    });
    kinds.into_iter().chain(reasons).collect()
}

const TLS_FAILURE_REASONS: [&str; 8] = [
    "plain_http",
    "protocol",
    "incompatible",
    "no_certificate",
    "client_alert",
    "closed",
    "timeout",
    "other",
];

/// Sends `bytes` (nothing if empty) on a new connection, then reads what the proxy answers
/// until it closes, or closes at once.
fn send_raw(proxy: &Proxy, bytes: &[u8], wait_for_close: bool) {
    let mut client = RawClient::connect(proxy.addr());
    if !bytes.is_empty() {
        client.send(bytes);
    }
    if wait_for_close {
        client.set_read_timeout(Duration::from_secs(8));
        assert!(client.read_to_end().is_ok(), "not closed: {bytes:?}");
    }
}

#[test]
fn metrics_count_full_and_resumed_handshakes_and_each_failure_once() {
    let extra = "[timeouts]\nclient_header = \"2s\"\n\n[admin]\naddress = \"127.0.0.1:0\"\n";
    let Site { pki, proxy, .. } = site("", extra);
    // Full handshakes: three curls, and the first connection of each s_client pair.
    for _ in 0..3 {
        let (result, _) = curl_name(&proxy, &pki, "a.test");
        assert_eq!(result.status, 200, "{}", result.stderr);
    }
    let session = path(&pki.dir.path().join("session"));
    let request = b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";
    for version in ["-tls1_2", "-tls1_3"] {
        let args = [version, "-servername", "a.test", "-sess_out", &session];
        let first = s_client_sending(proxy.addr(), &args, request);
        assert!(first.contains("New, TLSv1"), "{first}");
        let args = [version, "-servername", "a.test", "-sess_in", &session];
        let again = s_client(proxy.addr(), &args);
        assert!(again.contains("Reused, TLSv1"), "{version}: {again}");
    }
    // One failure of each reason but `other`; `protocol` and `closed` twice.
    send_raw(&proxy, b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", true);
    send_raw(&proxy, b"\x00\x01\x02 not tls\r\n", true);
    send_raw(&proxy, b"\x16\x03\x01\x00\x05hello", true);
    let h2_only = s_client(proxy.addr(), &["-alpn", "h2", "-servername", "a.test"]);
    assert!(h2_only.contains("no application protocol"), "{h2_only}");
    // The certificate is ECDSA; a client that takes only RSA-PSS signatures.
    let rsa_only = ["-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256"];
    let rsa_only = s_client(proxy.addr(), &rsa_only);
    assert!(rsa_only.contains("handshake failure"), "{rsa_only}");
    // curl without the test CA rejects the certificate and says so with an alert.
    let port = proxy.addr().port();
    let resolve = format!("a.test:{port}:127.0.0.1");
    let untrusted = curl(&["--resolve", &resolve, &format!("https://a.test:{port}/")]);
    assert_eq!(untrusted.exit_code, 60, "{}", untrusted.stderr);
    send_raw(&proxy, b"", false);
    send_raw(&proxy, b"\x16\x03\x01\x02", false);
    send_raw(&proxy, b"", true); // silent until client_header (2 s) cuts it

    let expected: Vec<(String, f64)> = [
        ("full", 5.0),
        ("resumed", 2.0),
        ("plain_http", 1.0),
        ("protocol", 2.0),
        ("incompatible", 1.0),
        ("no_certificate", 1.0),
        ("client_alert", 1.0),
        ("closed", 2.0),
        ("timeout", 1.0),
        ("other", 0.0),
    ]
    .map(|(label, count)| (label.to_string(), count))
    .into();
    assert_tls_counts(&proxy, expected);

    // With strict_sni, a name no certificate has gets none.
    let strict = site(
        "strict_sni = true\n",
        "[admin]\naddress = \"127.0.0.1:0\"\n",
    );
    let unknown = s_client(strict.proxy.addr(), &["-servername", "unknown.test"]);
    assert!(unknown.contains("alert"), "{unknown}");
    let only_no_certificate = ["full", "resumed"]
        .into_iter()
        .chain(TLS_FAILURE_REASONS)
        .map(|label| (label.to_string(), f64::from(label == "no_certificate")))
        .collect();
    assert_tls_counts(&strict.proxy, only_no_certificate);
}

/// The proxy counts a handshake when it reads the client's last flight, which may come after
/// the client has moved on: waits up to 5 s for the counts to settle at `expected`.
fn assert_tls_counts(proxy: &Proxy, expected: Vec<(String, f64)>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut counts = tls_counts(proxy);
    while counts != expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        counts = tls_counts(proxy);
    }
    assert_eq!(counts, expected);
}

#[test]
fn certificates_reload_under_load_without_a_failed_request() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let pki = Pki::new();
    let certs = [
        pki.leaf("leaf-a", &["a.test"]),
        pki.leaf("leaf-b", &["a.test"]),
    ];
    let read = |p: &PathBuf| std::fs::read(p).unwrap();
    let live = (
        pki.dir.write("live.pem", &read(&certs[0].0)),
        pki.dir.write("live.key", &read(&certs[0].1)),
    );
    let backend = Backend::echo();
    let proxy = Proxy::start_with_config(&tls_config(backend.addr(), &cert_key(&live), ""), &[]);
    let stop = AtomicBool::new(false);
    // Six keep-alive clients, and two that open a connection (a handshake) per request.
    let (served, failures) = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..8)
            .map(|i| {
                let (proxy, pki, stop) = (&proxy, &pki, &stop);
                scope.spawn(move || {
                    let (mut served, mut failures) = (0, Vec::new());
                    let mut conn = BufReader::new(rustls_client(proxy, pki));
                    while !stop.load(Ordering::Relaxed) {
                        if i >= 6 {
                            conn = BufReader::new(rustls_client(proxy, pki));
                        }
                        match tls_exchange(&mut conn) {
                            Ok(head) if head.starts_with("HTTP/1.1 200") => served += 1,
                            Ok(head) => failures.push(head),
                            Err(e) => failures.push(e.to_string()),
                        }
                    }
                    (served, failures)
                })
            })
            .collect();
        for generation in 2..=7 {
            let cert = &certs[generation % 2];
            std::fs::write(&live.0, read(&cert.0)).unwrap();
            std::fs::write(&live.1, read(&cert.1)).unwrap();
            proxy.signal("HUP");
            let serving = format!("ringproxy: generation {generation} serving on every worker");
            wait_for_line(&proxy, |l| l == serving);
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::Relaxed);
        let results: Vec<(usize, Vec<String>)> =
            clients.into_iter().map(|c| c.join().unwrap()).collect();
        let served: Vec<usize> = results.iter().map(|r| r.0).collect();
        let failures: Vec<String> = results.into_iter().flat_map(|r| r.1).collect();
        (served, failures)
    });
    assert!(failures.is_empty(), "{failures:?}");
    assert!(served.iter().all(|&n| n > 0), "{served:?}");
    let (result, seen) = curl_name(&proxy, &pki, "a.test");
    assert_eq!(
        (result.status, seen.as_str()),
        (200, "CN=leaf-b"),
        "generation 7 serves b"
    );
}
