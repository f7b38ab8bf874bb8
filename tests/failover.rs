//! Retries on another backend: a request that found no usable response is tried elsewhere
//! when that is safe (nothing reached a backend, or the request is idempotent).

mod common;

use common::*;

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

#[test]
fn no_reachable_backend_is_502_after_trying_both() {
    let proxy = Proxy::for_backends(&[closed_port_addr(), closed_port_addr()]);
    let r = get(proxy.addr(), "/");
    assert_eq!(r.status, 502);
}
