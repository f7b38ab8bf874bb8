use super::*;
use crate::config::{ProxyAction, RouteAction};

/// `"*.a.com"` is a wildcard, any other host exact.
fn host(pattern: &str) -> HostPattern {
    match pattern.strip_prefix("*.") {
        Some(suffix) => HostPattern::Wildcard(suffix.to_owned()),
        None => HostPattern::Exact(pattern.to_owned()),
    }
}

/// `""`: no path condition; `"=/a"`: exactly `/a`; `"/a"`: the prefix `/a`.
fn path(pattern: &str) -> Option<PathPattern> {
    match pattern.strip_prefix('=') {
        _ if pattern.is_empty() => None,
        Some(exact) => Some(PathPattern::Exact(exact.to_owned())),
        None => Some(PathPattern::Prefix(pattern.to_owned())),
    }
}

fn conditions(hosts: &[&str], path_pattern: &str, methods: &[&str]) -> RouteMatch {
    RouteMatch {
        hosts: hosts.iter().map(|h| host(h)).collect(),
        path: path(path_pattern),
        methods: methods.iter().map(|m| (*m).to_owned()).collect(),
        header: None,
    }
}

fn table(routes: &[RouteMatch]) -> RouteTable {
    let routes = routes
        .iter()
        .map(|conditions| RouteConfig {
            conditions: conditions.clone(),
            action: RouteAction::Proxy(ProxyAction {
                upstream: "app".to_owned(),
                ..ProxyAction::default()
            }),
        })
        .collect();
    RouteTable::compile(&RouteTableConfig {
        name: "main".to_owned(),
        routes,
    })
}

struct Request<'a> {
    method: &'a str,
    host: &'a str,
    target: &'a str,
    headers: Vec<httparse::Header<'a>>,
}

fn get<'a>(host: &'a str, target: &'a str) -> Request<'a> {
    Request {
        method: "GET",
        host,
        target,
        headers: Vec::new(),
    }
}

impl<'a> Request<'a> {
    fn method(mut self, method: &'a str) -> Self {
        self.method = method;
        self
    }

    fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push(httparse::Header {
            name,
            value: value.as_bytes(),
        });
        self
    }

    fn view(&self) -> RouteRequest<'_> {
        RouteRequest {
            method: self.method,
            host: self.host.as_bytes(),
            target: self.target,
            headers: &self.headers,
        }
    }
}

/// The index of the route `table` picks for `request`, checked against trying every route.
#[track_caller]
fn found(table: &RouteTable, request: &Request<'_>) -> Option<usize> {
    let mut scratch = Scratch::new(64);
    let view = request.view();
    let found = table.find(&view, &mut scratch).expect("a valid path");
    let expected = table.find_by_scan(&view);
    assert_eq!(
        found.map(|r| r.index),
        expected.map(|r| r.index),
        "{} {} {}",
        request.method,
        request.host,
        request.target
    );
    found.map(|r| r.index)
}

#[test]
fn the_first_route_in_config_order_wins_over_a_more_specific_one() {
    let routes = table(&[
        conditions(&[], "/api", &[]),
        conditions(&["a.com"], "=/api/v1", &["GET"]),
        conditions(&["*.a.com"], "", &[]),
        conditions(&[], "", &[]),
    ]);
    assert_eq!(found(&routes, &get("a.com", "/api/v1")), Some(0));
    assert_eq!(found(&routes, &get("x.a.com", "/api")), Some(0));
    assert_eq!(found(&routes, &get("x.a.com", "/web")), Some(2));
    assert_eq!(found(&routes, &get("a.com", "/web")), Some(3));
    let reversed = table(&[
        conditions(&["*.a.com"], "", &[]),
        conditions(&["x.a.com"], "", &[]),
    ]);
    assert_eq!(found(&reversed, &get("x.a.com", "/")), Some(0));
}

#[test]
fn no_route_is_none() {
    let routes = table(&[conditions(&["a.com"], "/api", &[])]);
    assert_eq!(found(&routes, &get("b.com", "/api")), None);
    assert_eq!(found(&routes, &get("a.com", "/web")), None);
    assert_eq!(found(&routes, &get("", "/api")), None);
}

#[test]
fn hosts_match_without_case_port_or_trailing_dot() {
    let routes = table(&[
        conditions(&["example.com"], "", &[]),
        conditions(&["[::1]", "10.0.0.1"], "", &[]),
    ]);
    for authority in [
        "example.com",
        "EXAMPLE.com:8080",
        "example.com.",
        "Example.Com.:1",
    ] {
        assert_eq!(found(&routes, &get(authority, "/")), Some(0), "{authority}");
    }
    for authority in ["[::1]", "[::1]:8080", "10.0.0.1:80"] {
        assert_eq!(found(&routes, &get(authority, "/")), Some(1), "{authority}");
    }
    for authority in ["www.example.com", "example.co", "[::2]:8080", ""] {
        assert_eq!(found(&routes, &get(authority, "/")), None, "{authority}");
    }
}

#[test]
fn wildcards_match_any_depth_but_not_the_bare_domain() {
    let routes = table(&[conditions(&["*.example.com"], "", &[])]);
    for authority in ["a.example.com", "a.b.example.com:80", "A.B.C.Example.COM"] {
        assert_eq!(found(&routes, &get(authority, "/")), Some(0), "{authority}");
    }
    for authority in [
        "example.com",
        "aexample.com",
        "example.com.evil.org",
        ".example.com",
    ] {
        assert_eq!(found(&routes, &get(authority, "/")), None, "{authority}");
    }
}

#[test]
fn nested_wildcards_both_apply_in_config_order() {
    let routes = table(&[
        conditions(&["*.b.example.com"], "/x", &[]),
        conditions(&["*.example.com"], "", &[]),
        conditions(&["*.b.example.com"], "", &[]),
    ]);
    assert_eq!(found(&routes, &get("a.b.example.com", "/x")), Some(0));
    assert_eq!(found(&routes, &get("a.b.example.com", "/y")), Some(1));
    assert_eq!(found(&routes, &get("b.example.com", "/x")), Some(1));
}

#[test]
fn paths_match_on_the_normalised_path() {
    let routes = table(&[
        conditions(&[], "/admin", &[]),
        conditions(&[], "=/", &[]),
        conditions(&[], "/", &[]),
    ]);
    for target in [
        "/admin",
        "/admin/",
        "/admin/x?y",
        "/api/../admin",
        "/%61dmin",
        "/api/%2e%2e/admin/users",
        "//admin",
        "/./admin",
    ] {
        assert_eq!(found(&routes, &get("a", target)), Some(0), "{target}");
    }
    for target in [
        "/adminx",
        "/Admin",
        "/admin%2Fx",
        "/x/admin",
        "/api/..%2Fadmin",
    ] {
        assert_eq!(found(&routes, &get("a", target)), Some(2), "{target}");
    }
    for target in ["/", "/?admin", "/x/..", "//", "/."] {
        assert_eq!(found(&routes, &get("a", target)), Some(1), "{target}");
    }
}

#[test]
fn prefix_with_and_without_trailing_slash() {
    let routes = table(&[
        conditions(&[], "/api/", &[]),
        conditions(&[], "=/api", &[]),
        conditions(&[], "/a", &[]),
    ]);
    assert_eq!(found(&routes, &get("h", "/api/")), Some(0));
    assert_eq!(found(&routes, &get("h", "/api/x/y")), Some(0));
    assert_eq!(found(&routes, &get("h", "/api")), Some(1));
    assert_eq!(found(&routes, &get("h", "/a/pi")), Some(2));
    assert_eq!(found(&routes, &get("h", "/ap")), None);
}

#[test]
fn exact_paths_tell_a_trailing_slash_apart() {
    let routes = table(&[conditions(&[], "=/a/", &[]), conditions(&[], "=/a", &[])]);
    assert_eq!(found(&routes, &get("h", "/a/")), Some(0));
    assert_eq!(found(&routes, &get("h", "/a")), Some(1));
    assert_eq!(found(&routes, &get("h", "/a/b")), None);
}

#[test]
fn options_star_matches_only_routes_without_a_path() {
    let routes = table(&[
        conditions(&[], "/", &[]),
        conditions(&["a.com"], "", &["OPTIONS"]),
    ]);
    let star = get("a.com", "*").method("OPTIONS");
    assert_eq!(found(&routes, &star), Some(1));
    let mut scratch = Scratch::new(8);
    routes.find(&star.view(), &mut scratch).unwrap();
    assert_eq!(scratch.normalized_path(), None);
}

#[test]
fn methods_are_case_sensitive_and_fall_through() {
    let routes = table(&[
        conditions(&[], "/", &["GET", "HEAD"]),
        conditions(&[], "/", &["POST"]),
    ]);
    assert_eq!(found(&routes, &get("h", "/")), Some(0));
    assert_eq!(found(&routes, &get("h", "/").method("HEAD")), Some(0));
    assert_eq!(found(&routes, &get("h", "/").method("POST")), Some(1));
    assert_eq!(found(&routes, &get("h", "/").method("post")), None);
    assert_eq!(found(&routes, &get("h", "/").method("DELETE")), None);
}

#[test]
fn header_conditions_check_presence_or_exact_value() {
    let with_header = |name: &str, value: Option<&str>| RouteMatch {
        header: Some(HeaderCondition {
            name: name.to_owned(),
            value: value.map(str::to_owned),
        }),
        ..RouteMatch::default()
    };
    let routes = table(&[
        with_header("x-canary", Some("1")),
        with_header("x-canary", None),
        RouteMatch::default(),
    ]);
    assert_eq!(
        found(&routes, &get("h", "/").header("X-Canary", "1")),
        Some(0)
    );
    assert_eq!(
        found(&routes, &get("h", "/").header("x-canary", "2")),
        Some(1)
    );
    assert_eq!(
        found(
            &routes,
            &get("h", "/")
                .header("X-CANARY", "2")
                .header("X-Canary", "1")
        ),
        Some(0)
    );
    assert_eq!(
        found(&routes, &get("h", "/").header("X-Other", "1")),
        Some(2)
    );
}

#[test]
fn unusable_paths_are_refused() {
    let routes = table(&[conditions(&[], "", &[])]);
    let mut scratch = Scratch::new(64);
    for (target, error) in [
        ("/../etc/passwd", PathError::AboveRoot),
        ("/a/%2e%2e/%2E%2E/b", PathError::AboveRoot),
        ("/a%zz", PathError::InvalidPercentEncoding),
        ("/a%2", PathError::InvalidPercentEncoding),
    ] {
        let request = get("h", target);
        assert_eq!(
            routes.find(&request.view(), &mut scratch),
            Err(error),
            "{target}"
        );
    }
    // The query is not part of the path.
    assert!(
        routes
            .find(&get("h", "/a?%zz=/../..").view(), &mut scratch)
            .is_ok()
    );
}

#[test]
fn the_scratch_path_is_what_a_route_forwards() {
    let routes = table(&[conditions(&[], "/api", &[])]);
    let mut scratch = Scratch::new(64);
    let request = get("h", "/x/../api//v1/%7Eme?q=/../");
    let route = routes.find(&request.view(), &mut scratch).unwrap().unwrap();
    assert_eq!(scratch.normalized_path(), Some(&b"/api/v1/~me"[..]));
    let RouteAction::Proxy(proxy) = &route.action else {
        panic!("a proxy route");
    };
    let mut out = Vec::new();
    proxy.write_target(scratch.normalized_path(), request.target, &mut out);
    assert_eq!(out, b"/api/v1/~me?q=/../");
}

#[test]
fn a_catch_all_table_takes_everything_and_leaves_the_target_alone() {
    let routes = RouteTable::catch_all("app");
    let mut scratch = Scratch::new(64);
    for target in ["/", "/../x", "/%zz", "*"] {
        let request = get("", target).method("PATCH");
        let route = routes.find(&request.view(), &mut scratch).unwrap();
        assert_eq!(route.map(|r| r.index), Some(0), "{target}");
        assert_eq!(scratch.normalized_path(), None);
    }
    assert_eq!(routes.name(), None);
    let RouteAction::Proxy(proxy) = &routes.routes()[0].action else {
        panic!("a proxy route");
    };
    assert_eq!(proxy.upstream, "app");
}

#[test]
fn a_route_naming_several_hosts_is_found_under_each() {
    let routes = table(&[
        conditions(&["a.com", "*.b.com", "c.com"], "/x", &[]),
        conditions(&[], "", &[]),
    ]);
    for authority in ["a.com", "q.b.com", "c.com"] {
        assert_eq!(
            found(&routes, &get(authority, "/x")),
            Some(0),
            "{authority}"
        );
    }
    assert_eq!(found(&routes, &get("d.com", "/x")), Some(1));
}

/// xorshift64*: reproducible choices without a dependency.
struct Choices(u64);

impl Choices {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }

    fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }
}

/// Random tables and requests from small pools that overlap in every way the conditions
/// can: `find` must pick what trying every route in order picks.
#[test]
fn the_compiled_table_agrees_with_trying_every_route() {
    let host_patterns = [
        "a.com",
        "b.com",
        "*.a.com",
        "*.x.a.com",
        "[::1]",
        "10.0.0.1",
    ];
    let path_patterns = [
        "", "", "=/", "/", "/api", "/api/", "=/api", "=/api/", "/api/v1", "=/api/v1", "/static",
        "/a%2Fb",
    ];
    let method_sets: [&[&str]; 4] = [&[], &["GET"], &["POST"], &["GET", "HEAD"]];
    let hosts = [
        "a.com",
        "A.COM:80",
        "b.com",
        "x.a.com",
        "y.x.a.com",
        "a.com.",
        "c.com",
        "[::1]:8080",
        "10.0.0.1",
        "",
    ];
    let targets = [
        "/",
        "/api",
        "/api/",
        "/api/v1",
        "/api/v1/x",
        "/apix",
        "/static/a",
        "/API",
        "/%61pi/v1",
        "/x/../api",
        "//api//v1",
        "*",
        "/a%2fb",
        "/a/b",
        "/api?x",
    ];
    let methods = ["GET", "POST", "HEAD", "PUT"];
    let header_values = ["", "1", "2"];
    let mut choose = Choices(0x9e37_79b9_7f4a_7c15);
    for _ in 0..400 {
        let count = 1 + choose.below(12);
        let routes: Vec<RouteMatch> = (0..count)
            .map(|_| {
                let host_count = choose.below(3);
                let route_hosts: Vec<&str> = (0..host_count)
                    .map(|_| choose.pick(&host_patterns))
                    .collect();
                let mut route_hosts = route_hosts;
                route_hosts.dedup();
                let mut conditions = conditions(
                    &route_hosts,
                    choose.pick(&path_patterns),
                    choose.pick(&method_sets),
                );
                conditions.header = match choose.below(4) {
                    0 => Some(HeaderCondition {
                        name: "x-h".to_owned(),
                        value: None,
                    }),
                    1 => Some(HeaderCondition {
                        name: "x-h".to_owned(),
                        value: Some("1".to_owned()),
                    }),
                    _ => None,
                };
                conditions
            })
            .collect();
        let compiled = table(&routes);
        for _ in 0..100 {
            let mut request =
                get(choose.pick(&hosts), choose.pick(&targets)).method(choose.pick(&methods));
            let value = choose.pick(&header_values);
            if !value.is_empty() {
                request = request.header("X-H", value);
            }
            found(&compiled, &request);
        }
    }
}

#[test]
fn the_host_hash_depends_on_every_byte() {
    use std::hash::Hash;
    let hash = |bytes: &[u8]| {
        let mut hasher = BytesHasher::default();
        bytes.hash(&mut hasher);
        hasher.finish()
    };
    let base = hash(b"host-00.example.com");
    assert_ne!(base, hash(b"host-01.example.com"));
    assert_ne!(base, hash(b"host-00.example.con"));
    assert_ne!(hash(b"a"), hash(b"a\0"));
    // The low bits, which pick the hash table slot, differ too.
    let low = |bytes: &[u8]| hash(bytes) & 0xff;
    let slots: std::collections::HashSet<u64> = (0..100)
        .map(|i| low(format!("host-{i:02}.example.com").as_bytes()))
        .collect();
    assert!(slots.len() > 60, "{} distinct slots of 100", slots.len());
}
