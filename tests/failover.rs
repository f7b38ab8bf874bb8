//! Retries on another backend: a request that found no usable response is tried elsewhere
//! when that is safe (nothing reached a backend, or the request is idempotent).

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

#[test]
fn refused_backend_costs_no_failed_request() {
    let good = Backend::echo();
    let proxy = Proxy::for_backends(&[closed_port_addr(), good.addr()]);
    for i in 0..20 {
        let r = get(proxy.addr(), &format!("/r{i}"));
        assert_eq!(r.status, 200, "request {i}");
    }
    assert_eq!(good.requests().len(), 20);
}

#[test]
fn post_is_retried_when_no_backend_got_it() {
    let good = Backend::echo();
    let proxy = Proxy::for_backends(&[closed_port_addr(), good.addr()]);
    for _ in 0..2 {
        let out = curl(&["--data-binary", "payload", &proxy.url("/submit")]);
        assert_eq!(out.status, 200);
        assert_eq!(out.body, b"payload");
    }
    assert_eq!(good.requests().len(), 2);
}

/// A backend that takes the request and closes without answering may have acted on it: a
/// POST is answered 502, a GET is retried on the other backend.
#[test]
fn only_idempotent_requests_are_retried_after_the_backend_took_them() {
    let dropper = Backend::start(|_| vec![Step::Close]);
    let good = Backend::echo();
    let proxy = Proxy::for_backends(&[dropper.addr(), good.addr()]);

    let mut c = RawClient::connect(proxy.addr());
    c.send(b"POST /pay HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    let first = c.read_response().unwrap();
    let mut c = RawClient::connect(proxy.addr());
    c.send(b"POST /pay HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    let second = c.read_response().unwrap();
    let statuses = [first.status, second.status];
    assert!(
        statuses.contains(&502),
        "one POST went to the dropping backend: {statuses:?}"
    );
    assert_eq!(
        good.requests().len(),
        1,
        "the dropped POST was not sent again"
    );

    for i in 0..4 {
        assert_eq!(get(proxy.addr(), &format!("/g{i}")).status, 200);
    }
    assert_eq!(good.requests().len(), 5);
}

/// Small bodies are read whole before a backend is chosen whatever their framing, also
/// after `100 Continue`: an idempotent request with one is sent again to the other backend
/// when the first takes it and closes.
#[test]
fn idempotent_requests_with_small_chunked_or_expected_bodies_are_retried() {
    let dropper = Backend::start(|_| vec![Step::Close]);
    let good = Backend::echo();
    let proxy = Proxy::for_backends(&[dropper.addr(), good.addr()]);
    let body = pattern(20 * 1024);
    for i in 0..4 {
        let mut c = RawClient::connect(proxy.addr());
        if i % 2 == 0 {
            c.send(
                format!("PUT /c{i} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .as_bytes(),
            );
            thread::sleep(Duration::from_millis(20));
            c.send(&chunked(&body, 4096));
        } else {
            let head = format!(
                "PUT /e{i} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
                body.len()
            );
            c.send(head.as_bytes());
            assert_eq!(c.read_response().unwrap().status, 100);
            c.send(&body);
        }
        let r = c.read_final_response().unwrap();
        assert_eq!(r.status, 200, "request {i}");
        assert_same_body(&r.body, &body, &format!("request {i} echoed"));
    }
    assert_eq!(good.requests().len(), 4);
}

#[test]
fn no_reachable_backend_is_502_after_trying_both() {
    let proxy = Proxy::for_backends(&[closed_port_addr(), closed_port_addr()]);
    let r = get(proxy.addr(), "/");
    assert_eq!(r.status, 502);
}

/// A backend that can be killed: its listener closes and every open connection is reset.
struct KillableBackend {
    addr: SocketAddr,
    alive: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
}

impl KillableBackend {
    fn start() -> KillableBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let alive = Arc::new(AtomicBool::new(true));
        let served = Arc::new(AtomicUsize::new(0));
        let (alive2, served2) = (alive.clone(), served.clone());
        thread::spawn(move || {
            while alive2.load(Ordering::SeqCst) {
                let Ok((stream, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(2));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                let (alive3, served3) = (alive2.clone(), served2.clone());
                thread::spawn(move || {
                    stream
                        .set_read_timeout(Some(Duration::from_millis(20)))
                        .unwrap();
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut writer = stream;
                    let mut line = String::new();
                    while alive3.load(Ordering::SeqCst) {
                        line.clear();
                        match reader.read_line(&mut line) {
                            Ok(0) => return,
                            Ok(_) if line == "\r\n" => {
                                served3.fetch_add(1, Ordering::SeqCst);
                                let _ = writer
                                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                            }
                            Ok(_) => {}
                            Err(_) => continue,
                        }
                    }
                    // Killed: reset instead of a clean close, as a crashed process would.
                    let _ = socket2::SockRef::from(&writer).set_linger(Some(Duration::ZERO));
                });
            }
        });
        KillableBackend {
            addr,
            alive,
            served,
        }
    }

    fn kill(&self) {
        self.alive.store(false, Ordering::SeqCst);
    }
}

/// A backend that dies in the middle of traffic (listener gone, pooled connections reset)
/// costs no failed GET: each is retried on the surviving backend.
#[test]
fn killed_backend_costs_no_failed_idempotent_request() {
    let victim = KillableBackend::start();
    let survivor = Backend::echo();
    let proxy = Proxy::start(&[
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &victim.addr.to_string(),
        "--upstream",
        &survivor.addr().to_string(),
        "--workers",
        "2",
        "--no-pin",
    ]);
    let addr = proxy.addr();
    let clients: Vec<_> = (0..4)
        .map(|c| {
            thread::spawn(move || {
                let mut conn = RawClient::connect(addr);
                (0..100)
                    .map(|i| {
                        thread::sleep(Duration::from_millis(1));
                        conn.send(format!("GET /k{c}-{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
                        conn.read_response().map(|r| r.status).unwrap_or(0)
                    })
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(60));
    victim.kill();
    let statuses: Vec<u16> = clients
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let failed = statuses.iter().filter(|&&s| s != 200).count();
    assert_eq!(failed, 0, "{failed} of {} requests failed", statuses.len());
    assert!(
        victim.served.load(Ordering::SeqCst) > 0,
        "the victim served before dying"
    );
}
