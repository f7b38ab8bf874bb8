//! `RouteTable::find` allocates nothing per request: counted by this test binary's
//! allocator, on the thread that routes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ringproxy::config::{
    HeaderCondition, HostPattern, PathPattern, ProxyAction, RouteAction, RouteConfig, RouteMatch,
    RouteTableConfig,
};
use ringproxy::route::{RouteRequest, RouteTable, Scratch};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is passed to `System` unchanged; the count is a const thread-local
// `Cell`, which needs no allocation and no lock.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

fn route(hosts: Vec<HostPattern>, path: Option<PathPattern>, methods: &[&str]) -> RouteConfig {
    RouteConfig {
        conditions: RouteMatch {
            hosts,
            path,
            methods: methods.iter().map(|m| (*m).to_owned()).collect(),
            header: Some(HeaderCondition {
                name: "x-canary".to_owned(),
                value: None,
            })
            .filter(|_| methods.is_empty()),
        },
        action: RouteAction::Proxy(ProxyAction {
            upstream: "app".to_owned(),
            ..ProxyAction::default()
        }),
    }
}

#[test]
fn finding_a_route_allocates_nothing() {
    let mut routes = Vec::new();
    for host in 0..20 {
        for prefix in ["/api", "/static/", "/a/b/c"] {
            routes.push(route(
                vec![HostPattern::Exact(format!("h{host}.example.com"))],
                Some(PathPattern::Prefix(prefix.to_owned())),
                &["GET"],
            ));
        }
    }
    routes.push(route(
        vec![HostPattern::Wildcard("example.com".to_owned())],
        Some(PathPattern::Exact("/x".to_owned())),
        &[],
    ));
    routes.push(route(Vec::new(), None, &["POST"]));
    let table = RouteTable::compile(&RouteTableConfig {
        name: "main".to_owned(),
        routes,
    });
    let mut scratch = Scratch::new(8192);
    let headers = [httparse::Header {
        name: "X-Canary",
        value: b"1",
    }];
    let requests = [
        ("GET", "H19.example.com:8080", "/a/b/c/d?x=1"),
        ("GET", "h3.example.com", "/%61pi/../static//x"),
        ("PUT", "q.r.example.com", "/x"),
        ("POST", "[::1]:80", "*"),
        ("GET", "nowhere.org", "/nothing/%2F/here"),
        ("GET", "", "/../above"),
        ("GET", &"a".repeat(300), "/a%zz"),
    ];
    let mut found = Vec::with_capacity(requests.len());
    let after_setup = allocations();
    for (method, host, target) in requests {
        let request = RouteRequest {
            method,
            host: host.as_bytes(),
            target,
            headers: &headers,
        };
        let result = table.find(&request, &mut scratch);
        found.push(result.map(|r| r.map(|r| r.index)));
    }
    assert_eq!(
        allocations() - after_setup,
        0,
        "find allocated; found {found:?}"
    );
    assert_eq!(found[0], Ok(Some(59)));
    assert_eq!(found[2], Ok(Some(60)));
    assert_eq!(found[4], Ok(None));
}
