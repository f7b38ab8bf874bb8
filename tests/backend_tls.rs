//! TLS to backends (`[upstream.NAME.tls]`) end to end: TLS backends made here (rustls servers
//! on threads, certificates from a test CA) that count their handshakes and record the SNI
//! name and client certificate each connection came with; the real binary in front of them.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::pki::{Pki, path};
use common::{IO_TIMEOUT, Proxy, RawClient, TempDir, run_to_exit};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// What a TLS backend saw: per completed handshake, the SNI name and whether a client
/// certificate came; failed handshakes with rustls' reason; requests served.
#[derive(Default)]
struct Seen {
    handshakes: Mutex<Vec<Handshake>>,
    failures: Mutex<Vec<String>>,
    requests: AtomicUsize,
}

#[derive(Clone, Debug)]
struct Handshake {
    sni: Option<String>,
    client_cert: bool,
}

/// An HTTP/1.1 keep-alive backend on TLS: answers `GET` with 200 and a body naming the
/// connection (`conn N`), and a WebSocket upgrade with 101, then echoes what comes.
struct TlsBackend {
    addr: SocketAddr,
    seen: Arc<Seen>,
    /// Closes the accept loop when the test ends.
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl TlsBackend {
    /// Serves the certificate `cert`; `client_ca`: require a client certificate it signed.
    fn start(cert: &(PathBuf, PathBuf), client_ca: Option<&Path>) -> TlsBackend {
        let chain = CertificateDer::pem_file_iter(&cert.0)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&cert.1).unwrap();
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for ca in CertificateDer::pem_file_iter(ca).unwrap() {
                    roots.add(ca.unwrap()).unwrap();
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = Arc::new(builder.with_single_cert(chain, key).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (accept_seen, accept_stop) = (seen.clone(), stop.clone());
        thread::spawn(move || {
            for (index, stream) in listener.incoming().enumerate() {
                if accept_stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (config, seen) = (config.clone(), accept_seen.clone());
                thread::spawn(move || serve(config, stream, index, &seen));
            }
        });
        TlsBackend { addr, seen, stop }
    }

    fn handshakes(&self) -> Vec<Handshake> {
        self.seen.handshakes.lock().unwrap().clone()
    }

    /// The failed handshakes once there are at least `n` (the backend's thread records a
    /// failure after the proxy has moved on); panics after `IO_TIMEOUT`.
    fn wait_for_failures(&self, n: usize) -> Vec<String> {
        let failures = || self.seen.failures.lock().unwrap().clone();
        poll_until(|| Some(failures()).filter(|f| f.len() >= n))
            .unwrap_or_else(|| panic!("{} of {n} failed handshakes", failures().len()))
    }

    fn requests(&self) -> usize {
        self.seen.requests.load(Ordering::SeqCst)
    }
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(config: Arc<ServerConfig>, tcp: TcpStream, index: usize, seen: &Seen) {
    let _ = tcp.set_read_timeout(Some(IO_TIMEOUT));
    let Ok(mut conn) = ServerConnection::new(config) else {
        return;
    };
    let mut tcp = tcp;
    while conn.is_handshaking() {
        if let Err(error) = conn.complete_io(&mut tcp) {
            seen.failures.lock().unwrap().push(error.to_string());
            return;
        }
    }
    seen.handshakes.lock().unwrap().push(Handshake {
        sni: conn.server_name().map(str::to_owned),
        client_cert: conn.peer_certificates().is_some(),
    });
    let mut stream = BufReader::new(StreamOwned::new(conn, tcp));
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            match stream.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => head.push(line.to_ascii_lowercase()),
            }
        }
        seen.requests.fetch_add(1, Ordering::SeqCst);
        let upgrade = head.iter().any(|l| l.starts_with("upgrade: websocket"));
        let user_agent = head
            .iter()
            .find_map(|l| l.strip_prefix("user-agent: "))
            .unwrap_or("")
            .trim()
            .to_owned();
        let writer = stream.get_mut();
        if upgrade {
            let _ = writer.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            );
            let _ = writer.flush();
            echo(&mut stream);
            return;
        }
        let body = format!("conn {index} {user_agent}");
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(response.as_bytes()).is_err() || writer.flush().is_err() {
            return;
        }
    }
}

/// Echoes what comes until the peer closes.
fn echo(stream: &mut BufReader<StreamOwned<ServerConnection, TcpStream>>) {
    let mut buf = [0u8; 4096];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let writer = stream.get_mut();
        if writer.write_all(&buf[..n]).is_err() || writer.flush().is_err() {
            return;
        }
    }
}

/// A config with one worker, a listener, and the group `app` over `backends` with `tls` (the
/// lines of `[upstream.app.tls]`); `group` adds lines to `[upstream.app]`, `extra` tables.
fn config(backends: &[String], group: &str, tls: &str, extra: &str) -> String {
    format!(
        "[runtime]\nworkers = 1\npin = false\n\n[[listener]]\naddress = \"127.0.0.1:0\"\n\
         upstream = \"app\"\n\n[upstream.app]\nbackends = [{}]\n{group}\n\
         [upstream.app.tls]\n{tls}\n\n{extra}\n",
        backends.join(", ")
    )
}

fn quoted(addr: SocketAddr) -> String {
    format!("\"{addr}\"")
}

fn ca_line(pki: &Pki) -> String {
    format!("ca = \"{}\"", pki.ca())
}

/// A proxy in front of `backend` alone, trusting `pki`'s CA.
fn proxy_trusting(pki: &Pki, backend: &TlsBackend) -> Proxy {
    Proxy::start_with_config(&config(&[quoted(backend.addr)], "", &ca_line(pki), ""), &[])
}

/// `GET /` over a new connection: (status, body).
fn get(proxy: &Proxy) -> (u16, String) {
    let mut client = RawClient::connect(proxy.addr());
    client.send(b"GET / HTTP/1.1\r\nHost: app\r\n\r\n");
    let response = client.read_response().expect("a response");
    (response.status, response.body_text())
}

/// Waits until a stderr line contains `text`; panics with the log after `IO_TIMEOUT`.
fn wait_for_line(proxy: &Proxy, text: &str) -> String {
    let found = poll_until(|| proxy.stderr_lines().into_iter().find(|l| l.contains(text)));
    found.unwrap_or_else(|| {
        let lines = proxy.stderr_lines().join("\n");
        panic!("no line with {text:?}; stderr:\n{lines}")
    })
}

/// What `poll` returns once it returns something, polled every 10 ms; `None` after
/// `IO_TIMEOUT`.
fn poll_until<T>(mut poll: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        if let Some(found) = poll() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn requests_reach_a_tls_backend_over_one_reused_connection() {
    let pki = Pki::new();
    // No `sni`: the backend's IP is what its certificate must name, and no SNI is sent.
    let backend = TlsBackend::start(&pki.leaf("backend", &["127.0.0.1"]), None);
    let proxy = proxy_trusting(&pki, &backend);
    for _ in 0..5 {
        let (status, body) = get(&proxy);
        assert_eq!((status, body.as_str()), (200, "conn 0 "));
    }
    let mut client = RawClient::connect(proxy.addr());
    for _ in 0..3 {
        client.send(b"GET / HTTP/1.1\r\nHost: app\r\n\r\n");
        let response = client.read_response().unwrap();
        assert_eq!(
            (response.status, response.body_text()),
            (200, "conn 0 ".into())
        );
    }
    assert_eq!(backend.requests(), 8);
    let handshakes = backend.handshakes();
    assert_eq!(handshakes.len(), 1, "one TLS connection for every request");
    assert_eq!(handshakes[0].sni, None, "an IP address is not sent as SNI");
    assert!(!handshakes[0].client_cert);
}

#[test]
fn sni_is_the_backends_own_else_the_groups() {
    let pki = Pki::new();
    let grouped = TlsBackend::start(&pki.leaf("app", &["app.internal"]), None);
    let own = TlsBackend::start(&pki.leaf("own", &["own.internal"]), None);
    let backends = [
        quoted(grouped.addr),
        format!("{{ address = \"{}\", sni = \"own.internal\" }}", own.addr),
    ];
    let tls = format!("{}\nsni = \"app.internal\"", ca_line(&pki));
    let proxy = Proxy::start_with_config(&config(&backends, "", &tls, ""), &[]);
    for _ in 0..4 {
        assert_eq!(get(&proxy).0, 200);
    }
    let names = |b: &TlsBackend| -> Vec<Option<String>> {
        b.handshakes().into_iter().map(|h| h.sni).collect()
    };
    assert_eq!(names(&grouped), [Some("app.internal".to_owned())]);
    assert_eq!(names(&own), [Some("own.internal".to_owned())]);
}

#[test]
fn an_untrusted_backend_is_a_502_and_a_log_line_naming_it_and_why() {
    let pki = Pki::new();
    let other = Pki::named("another CA");
    let backend = TlsBackend::start(&other.leaf("backend", &["127.0.0.1"]), None);
    let proxy = proxy_trusting(&pki, &backend);
    assert_eq!(get(&proxy).0, 502);
    let line = wait_for_line(&proxy, "TLS handshake failed");
    let expected = format!(
        "ringproxy: backend {} (upstream \"app\"): TLS handshake failed: invalid peer certificate: UnknownIssuer",
        backend.addr
    );
    assert_eq!(line, expected);
    assert!(backend.handshakes().is_empty());
    // The backend learnt why too: rustls sent it the alert.
    let failures = backend.wait_for_failures(1);
    assert!(
        failures.iter().any(|f| f.contains("UnknownCA")),
        "{failures:?}"
    );
}

#[test]
fn a_failed_handshake_is_retried_on_another_backend_and_counts_against_the_first() {
    let pki = Pki::new();
    let other = Pki::named("another CA");
    let untrusted = TlsBackend::start(&other.leaf("untrusted", &["127.0.0.1"]), None);
    let trusted = TlsBackend::start(&pki.leaf("trusted", &["127.0.0.1"]), None);
    let passive = "[upstream.app.passive]\nmax_fails = 1\ncooldown = \"1m\"";
    let proxy = Proxy::start_with_config(
        &config(
            &[quoted(untrusted.addr), quoted(trusted.addr)],
            "retries = 1",
            &ca_line(&pki),
            passive,
        ),
        &[],
    );
    for _ in 0..6 {
        assert_eq!(get(&proxy).0, 200);
    }
    wait_for_line(
        &proxy,
        &format!("backend {} (upstream \"app\") ejected", untrusted.addr),
    );
    assert_eq!(trusted.requests(), 6);
    assert_eq!(untrusted.requests(), 0);
    // Ejected after its first failure: later requests do not try it.
    assert_eq!(untrusted.wait_for_failures(1).len(), 1);
}

#[test]
fn a_client_certificate_is_sent_when_configured_and_its_lack_is_told() {
    let pki = Pki::new();
    let backend = TlsBackend::start(&pki.leaf("backend", &["127.0.0.1"]), Some(&pki.ca));
    let client = pki.leaf("ringproxy-client", &[]);
    let with_cert = format!(
        "{}\ncert = \"{}\"\nkey = \"{}\"",
        ca_line(&pki),
        path(&client.0),
        path(&client.1)
    );
    let proxy = Proxy::start_with_config(&config(&[quoted(backend.addr)], "", &with_cert, ""), &[]);
    assert_eq!(get(&proxy).0, 200);
    assert!(backend.handshakes()[0].client_cert);
    drop(proxy);

    let proxy = proxy_trusting(&pki, &backend);
    assert_eq!(get(&proxy).0, 502);
    // TLS 1.3: the client's side of the handshake is done before the backend refuses it, so
    // the refusal is the backend's alert, read with the response.
    let line = wait_for_line(&proxy, "CertificateRequired");
    let expected = format!(
        "ringproxy: backend {} (upstream \"app\"): TLS: received fatal alert: CertificateRequired",
        backend.addr
    );
    assert_eq!(line, expected);
}

#[test]
fn verify_false_accepts_a_self_signed_backend_and_says_so_loudly() {
    let dir = TempDir::new();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["self.signed".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let files = (
        dir.write("self.pem", cert.pem().as_bytes()),
        dir.write("self.key", key.serialize_pem().as_bytes()),
    );
    let backend = TlsBackend::start(&files, None);
    let proxy = Proxy::start_with_config(
        &config(&[quoted(backend.addr)], "", "verify = false", ""),
        &[],
    );
    assert_eq!(get(&proxy).0, 200);
    let warning = wait_for_line(&proxy, "upstream.app.tls.verify");
    assert!(
        warning.ends_with(
            "upstream.app.tls.verify: warning: certificate verification is off: any \
             certificate is accepted, so anyone on the path to these backends can read and \
             change the traffic"
        ),
        "{warning}"
    );
}

#[test]
fn the_system_roots_are_used_without_a_ca() {
    let pki = Pki::new();
    let backend = TlsBackend::start(&pki.leaf("backend", &["127.0.0.1"]), None);
    let toml = config(&[quoted(backend.addr)], "", "", "");
    let dir = TempDir::new();
    let file = dir.write("ringproxy.toml", toml.as_bytes());
    // The test CA as the system's only root (as the OpenSSL tools read SSL_CERT_FILE).
    let env = format!("SSL_CERT_FILE={}", pki.ca());
    let proxy = Proxy::start_under(&["env", &env], &["--config", &path(&file)]);
    assert_eq!(get(&proxy).0, 200);
    drop(proxy);
    let other = Pki::named("another CA");
    let env = format!("SSL_CERT_FILE={}", other.ca());
    let proxy = Proxy::start_under(&["env", &env], &["--config", &path(&file)]);
    assert_eq!(
        get(&proxy).0,
        502,
        "a root that did not sign it does not do"
    );
}

#[test]
fn a_websocket_tunnel_runs_over_a_tls_backend() {
    let pki = Pki::new();
    let backend = TlsBackend::start(&pki.leaf("backend", &["127.0.0.1"]), None);
    let proxy = proxy_trusting(&pki, &backend);
    let mut client = RawClient::connect(proxy.addr());
    client.send(
        b"GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    let response = client.read_head_response().unwrap();
    assert_eq!(response.status, 101);
    for message in [&b"first"[..], &[7u8; 40_000][..]] {
        client.send(message);
        let mut echoed = vec![0u8; message.len()];
        client.reader().read_exact(&mut echoed).unwrap();
        assert!(echoed == message, "echoed back through the tunnel");
    }
    client.stream().shutdown(Shutdown::Write).unwrap();
    client.wait_closed(IO_TIMEOUT).unwrap();
}

#[test]
fn active_checks_run_over_tls_and_fail_on_an_untrusted_certificate() {
    let pki = Pki::new();
    let other = Pki::named("another CA");
    let trusted = TlsBackend::start(&pki.leaf("trusted", &["127.0.0.1"]), None);
    let untrusted = TlsBackend::start(&other.leaf("untrusted", &["127.0.0.1"]), None);
    let health = "[upstream.app.health]\ninterval = \"100ms\"\ntimeout = \"100ms\"\nfall = 1";
    let proxy = Proxy::start_with_config(
        &config(
            &[quoted(trusted.addr), quoted(untrusted.addr)],
            "",
            &ca_line(&pki),
            health,
        ),
        &[],
    );
    let down = wait_for_line(
        &proxy,
        &format!("backend {} (upstream \"app\") is DOWN", untrusted.addr),
    );
    assert!(
        down.contains("TLS handshake: invalid peer certificate: UnknownIssuer"),
        "{down}"
    );
    let checked = poll_until(|| (trusted.requests() >= 2).then_some(()));
    assert!(checked.is_some(), "no checks reached the trusted backend");
    assert!(
        trusted.handshakes().len() >= 2,
        "each check its own connection"
    );
    let lines = proxy.stderr_lines();
    assert!(
        !lines
            .iter()
            .any(|l| l.contains(&format!("{} (upstream \"app\") is DOWN", trusted.addr))),
        "{lines:?}"
    );
}

#[test]
fn a_reload_reads_the_ca_file_again_and_drops_connections_verified_with_the_old_one() {
    let pki = Pki::new();
    let backend = TlsBackend::start(&pki.leaf("backend", &["127.0.0.1"]), None);
    let dir = TempDir::new();
    let ca = dir.write("ca.pem", &std::fs::read(&pki.ca).unwrap());
    let tls = format!("ca = \"{}\"", path(&ca));
    let proxy = Proxy::start_with_config(&config(&[quoted(backend.addr)], "", &tls, ""), &[]);
    assert_eq!(get(&proxy).0, 200);
    // The backend's CA is no longer trusted: the pooled connection must not serve on.
    let other = Pki::named("another CA");
    std::fs::write(&ca, std::fs::read(&other.ca).unwrap()).unwrap();
    proxy.signal("HUP");
    wait_for_line(&proxy, "generation 2 serving on every worker");
    assert_eq!(get(&proxy).0, 502);
    assert_eq!(backend.requests(), 1);
}

#[test]
fn check_reports_unreadable_tls_files_where_they_are_named() {
    let pki = Pki::new();
    let dir = TempDir::new();
    let missing = dir.path().join("missing.pem");
    let not_pem = dir.write("not.pem", b"hello\n");
    let tls = format!(
        "ca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"",
        path(&missing),
        path(&not_pem),
        path(&missing)
    );
    let text = config(&["\"127.0.0.1:9\"".into()], "", &tls, "");
    let file = dir.write("bad.toml", text.as_bytes());
    let file = path(&file);
    let out = run_to_exit(&["--check", "--config", &file], IO_TIMEOUT);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line_of = |key: &str| {
        let prefix = format!("{key} = ");
        text.lines().position(|l| l.starts_with(&prefix)).unwrap() + 1
    };
    for (key, message) in [
        ("ca", format!("cannot open {}: ", path(&missing))),
        ("cert", format!("{} holds no certificate", path(&not_pem))),
        ("key", format!("cannot open {}: ", path(&missing))),
    ] {
        let expected = format!("{file}:{}: upstream.app.tls.{key}: {message}", line_of(key));
        assert!(
            stderr.lines().any(|l| l.starts_with(&expected)),
            "no {expected:?} in:\n{stderr}"
        );
    }
    // And the settings themselves.
    let bad = config(
        &["{ address = \"127.0.0.1:9\", sni = \"bad name!\" }".into()],
        "",
        &format!("verify = false\n{}", ca_line(&pki)),
        "",
    );
    let file = dir.write("settings.toml", bad.as_bytes());
    let out = run_to_exit(&["--check", "--config", &path(&file)], IO_TIMEOUT);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("upstream.app.backends[0].sni: invalid server name \"bad name!\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("upstream.app.tls.ca: ca has no use with verify = false"),
        "{stderr}"
    );
}
