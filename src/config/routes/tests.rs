use crate::config::test_support::{addr, assert_error, errors, parse};
use crate::config::{
    HeaderCondition, HeaderEdits, HostPattern, ListenerConfig, PathPattern, PathRewrite,
    ProxyAction, RedirectAction, RedirectTarget, RespondAction, RouteAction, RouteConfig,
    RouteMatch, RouteTableConfig,
};

/// A listener using the table `main` and the group `app` on lines 1..=5; `with_routes`
/// appends from line 6.
const ROUTES_BASE: &[&str] = &[
    "[[listener]]",
    "address = \"127.0.0.1:8080\"",
    "routes = \"main\"",
    "[upstream.app]",
    "backends = [\"127.0.0.1:9000\"]",
];

fn with_routes<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    ROUTES_BASE.iter().chain(extra).copied().collect()
}

/// One route of `main` (line 6) with `lines` (from line 7).
fn one_route<'a>(lines: &[&'a str]) -> Vec<&'a str> {
    with_routes(&[&["[[routes.main.route]]"][..], lines].concat())
}

const UPSTREAM: &str = "upstream = \"app\"";

/// For each `(line, key, message)`: route 0 of `main` written as `before`, `line`, `after`
/// has exactly one error, on `line`, at `routes.main.route[0].KEY`.
#[track_caller]
fn assert_each_route_error(before: &[&str], cases: &[(&str, &str, &str)], after: &[&str]) {
    for &(line, key, message) in cases {
        let lines = [before, &[line], after].concat();
        assert_error(
            &one_route(&lines),
            Some(7 + before.len()),
            &format!("routes.main.route[0].{key}"),
            message,
        );
    }
}

fn proxy(upstream: &str) -> RouteAction {
    RouteAction::Proxy(ProxyAction {
        upstream: upstream.to_owned(),
        ..ProxyAction::default()
    })
}

#[test]
fn a_table_with_every_key_is_read() {
    let text = r#"
[[listener]]
address = "127.0.0.1:80"
routes = "main"

[[listener]]
address = "127.0.0.1:443"
routes = "main"

[upstream.app]
backends = ["127.0.0.1:9000"]

[upstream.api]
backends = ["127.0.0.1:9001"]

[[routes.main.route]]
path = "/health"
respond = { status = 200, body = "ok\n" }

[[routes.main.route]]
host = "HTTP.example.com"
redirect = { status = 308, scheme = "https" }

[[routes.main.route]]
host = ["api.example.com", "*.API.example.com", "[::1]", "10.0.0.1"]
path_prefix = "/v1/"
methods = ["GET", "HEAD"]
header = { name = "X-Canary", value = "1" }
upstream = "api"
replace_prefix = "/v2/"
set_request_headers = { "X-Route" = "canary", Host = "api.internal" }
remove_request_headers = ["Cookie"]
set_response_headers = { "Cache-Control" = "no-store" }
remove_response_headers = ["server", "X-Powered-By"]

[[routes.main.route]]
path_prefix = "/api"
header = { name = "x-debug" }
upstream = "api"
strip_prefix = "/api"

[[routes.main.route]]
path_prefix = "/old"
redirect = { status = 301, location = "https://example.com/new" }

[[routes.main.route]]
path_prefix = "/private"
respond = { status = 403, headers = { "Content-Type" = "text/html" }, body = "<h1>no</h1>" }

[[routes.main.route]]
upstream = "app"
"#;
    let config = parse(&[text]).unwrap();
    assert_eq!(
        config.listeners,
        [
            ListenerConfig {
                address: addr("127.0.0.1:80"),
                upstream: String::new(),
                routes: Some("main".into()),
                tls: None,
            },
            ListenerConfig {
                address: addr("127.0.0.1:443"),
                upstream: String::new(),
                routes: Some("main".into()),
                tls: None,
            },
        ]
    );
    let route = |conditions: RouteMatch, action: RouteAction| RouteConfig { conditions, action };
    let expected = RouteTableConfig {
        name: "main".into(),
        routes: vec![
            route(
                RouteMatch {
                    path: Some(PathPattern::Exact("/health".into())),
                    ..RouteMatch::default()
                },
                RouteAction::Respond(RespondAction {
                    status: 200,
                    headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
                    body: "ok\n".into(),
                }),
            ),
            route(
                RouteMatch {
                    hosts: vec![HostPattern::Exact("http.example.com".into())],
                    ..RouteMatch::default()
                },
                RouteAction::Redirect(RedirectAction {
                    status: 308,
                    target: RedirectTarget::Parts {
                        scheme: Some("https".into()),
                        host: None,
                        path: None,
                    },
                }),
            ),
            route(
                RouteMatch {
                    hosts: vec![
                        HostPattern::Exact("api.example.com".into()),
                        HostPattern::Wildcard("api.example.com".into()),
                        HostPattern::Exact("[::1]".into()),
                        HostPattern::Exact("10.0.0.1".into()),
                    ],
                    path: Some(PathPattern::Prefix("/v1/".into())),
                    methods: vec!["GET".into(), "HEAD".into()],
                    header: Some(HeaderCondition {
                        name: "x-canary".into(),
                        value: Some("1".into()),
                    }),
                },
                RouteAction::Proxy(ProxyAction {
                    upstream: "api".into(),
                    path_rewrite: Some(PathRewrite::Replace {
                        prefix: "/v1/".into(),
                        with: "/v2/".into(),
                    }),
                    request_headers: HeaderEdits {
                        // In name order, as TOML tables are read.
                        set: vec![
                            ("Host".into(), "api.internal".into()),
                            ("X-Route".into(), "canary".into()),
                        ],
                        remove: vec!["cookie".into()],
                    },
                    response_headers: HeaderEdits {
                        set: vec![("Cache-Control".into(), "no-store".into())],
                        remove: vec!["server".into(), "x-powered-by".into()],
                    },
                }),
            ),
            route(
                RouteMatch {
                    path: Some(PathPattern::Prefix("/api".into())),
                    header: Some(HeaderCondition {
                        name: "x-debug".into(),
                        value: None,
                    }),
                    ..RouteMatch::default()
                },
                RouteAction::Proxy(ProxyAction {
                    upstream: "api".into(),
                    path_rewrite: Some(PathRewrite::Strip("/api".into())),
                    ..ProxyAction::default()
                }),
            ),
            route(
                RouteMatch {
                    path: Some(PathPattern::Prefix("/old".into())),
                    ..RouteMatch::default()
                },
                RouteAction::Redirect(RedirectAction {
                    status: 301,
                    target: RedirectTarget::Location("https://example.com/new".into()),
                }),
            ),
            route(
                RouteMatch {
                    path: Some(PathPattern::Prefix("/private".into())),
                    ..RouteMatch::default()
                },
                RouteAction::Respond(RespondAction {
                    status: 403,
                    headers: vec![("Content-Type".into(), "text/html".into())],
                    body: "<h1>no</h1>".into(),
                }),
            ),
            route(RouteMatch::default(), proxy("app")),
        ],
    };
    assert_eq!(config.routes, [expected]);
}

#[test]
fn a_listener_without_routes_keeps_its_upstream() {
    let config = parse(&[
        "[[listener]]",
        "address = \"127.0.0.1:80\"",
        "[upstream.app]",
        "backends = [\"127.0.0.1:81\"]",
    ])
    .unwrap();
    assert_eq!(
        config.listeners,
        [ListenerConfig::to_upstream(addr("127.0.0.1:80"), "app")]
    );
    assert!(config.routes.is_empty());
}

#[test]
fn a_single_string_is_a_one_item_list() {
    let config = parse(&one_route(&[
        "host = \"a.com\"",
        "methods = \"POST\"",
        "upstream = \"app\"",
    ]))
    .unwrap();
    let conditions = &config.routes[0].routes[0].conditions;
    assert_eq!(conditions.hosts, [HostPattern::Exact("a.com".into())]);
    assert_eq!(conditions.methods, ["POST"]);
}

#[test]
fn listeners_name_tables_that_exist_and_not_an_upstream_too() {
    assert_error(
        &[
            "[[listener]]",
            "address = \"127.0.0.1:80\"",
            "routes = \"mian\"",
            "[upstream.app]",
            "backends = [\"127.0.0.1:81\"]",
            "[[routes.main.route]]",
            "upstream = \"app\"",
            "[[listener]]",
            "address = \"127.0.0.1:81\"",
            "routes = \"main\"",
        ],
        Some(3),
        "listener[0].routes",
        "unknown route table \"mian\" (defined: \"main\")",
    );
    assert_error(
        &[
            "[[listener]]",
            "address = \"127.0.0.1:80\"",
            "routes = \"main\"",
            "[upstream.app]",
            "backends = [\"127.0.0.1:81\"]",
        ],
        Some(3),
        "listener[0].routes",
        "unknown route table \"main\" (none is defined: add a [routes.main] section)",
    );
    assert_error(
        &[
            &ROUTES_BASE[..2],
            &["upstream = \"app\"", "routes = \"main\""],
            &ROUTES_BASE[3..],
            &["[[routes.main.route]]", "upstream = \"app\""],
        ]
        .concat(),
        Some(3),
        "listener[0].upstream",
        "set upstream (every request to one group) or routes (a route table), not both",
    );
}

#[test]
fn a_table_no_listener_uses_is_an_error() {
    let lines = [
        "[[listener]]",
        "address = \"127.0.0.1:80\"",
        "upstream = \"app\"",
        "[upstream.app]",
        "backends = [\"127.0.0.1:81\"]",
        "[[routes.spare.route]]",
        "upstream = \"app\"",
    ];
    assert_error(
        &lines,
        Some(6),
        "routes.spare",
        "route table \"spare\" is not used by any listener (add routes = \"spare\" to a [[listener]])",
    );
    // A listener with another error still counts as using its table.
    let bad_listener = [
        "[[listener]]",
        "address = \"127.0.0.1\"",
        "routes = \"spare\"",
        "[upstream.app]",
        "backends = [\"127.0.0.1:81\"]",
        "[[routes.spare.route]]",
        "upstream = \"app\"",
    ];
    assert_error(
        &bad_listener,
        Some(2),
        "listener[0].address",
        "invalid socket address",
    );
}

#[test]
fn a_table_needs_routes_and_a_valid_name() {
    assert_error(
        &with_routes(&["[routes.main]"]),
        Some(6),
        "routes.main.route",
        "a route table needs at least one route (add a [[routes.main.route]] section)",
    );
    assert_error(
        &with_routes(&["[routes.main]", "route = []"]),
        Some(7),
        "routes.main.route",
        "a route table needs at least one route",
    );
    assert_error(
        &with_routes(&["[routes.main]", "route = 1"]),
        Some(7),
        "routes.main.route",
        "expected an array of tables (write [[routes.main.route]]), found an integer",
    );
    assert_error(
        &with_routes(&[
            "[routes.main]",
            "routes = []",
            "[[routes.main.route]]",
            "upstream = \"app\"",
        ]),
        Some(7),
        "routes.main.routes",
        "unknown key \"routes\" (expected one of: route)",
    );
    let lines = [
        "[[listener]]",
        "address = \"127.0.0.1:80\"",
        "routes = \"my routes\"",
        "[upstream.app]",
        "backends = [\"127.0.0.1:81\"]",
        "[[routes.\"my routes\".route]]",
        "upstream = \"app\"",
    ];
    assert_error(
        &lines,
        Some(6),
        "routes.my routes",
        "invalid route table name \"my routes\"",
    );
}

#[test]
fn a_route_needs_exactly_one_action() {
    assert_error(
        &one_route(&["path = \"/\""]),
        Some(6),
        "routes.main.route[0]",
        "a route needs an action: upstream = \"NAME\", redirect = { ... } or respond = { ... }",
    );
    assert_error(
        &one_route(&["upstream = \"app\"", "respond = { status = 200 }"]),
        Some(8),
        "routes.main.route[0].respond",
        "conflicting actions: upstream and respond",
    );
    assert_error(
        &one_route(&[
            "redirect = { status = 301, scheme = \"https\" }",
            "strip_prefix = \"/a\"",
        ]),
        Some(8),
        "routes.main.route[0].strip_prefix",
        "strip_prefix only applies to a route with upstream = \"NAME\"",
    );
    assert_error(
        &one_route(&[
            "respond = { status = 200 }",
            "set_response_headers = { A = \"b\" }",
        ]),
        Some(8),
        "routes.main.route[0].set_response_headers",
        "only applies to a route with upstream",
    );
}

#[test]
fn a_route_names_a_known_upstream() {
    assert_error(
        &one_route(&["upstream = \"api\""]),
        Some(7),
        "routes.main.route[0].upstream",
        "unknown upstream group \"api\" (defined: \"app\")",
    );
    assert_error(
        &one_route(&["upstream = 3"]),
        Some(7),
        "routes.main.route[0].upstream",
        "expected a string, found an integer",
    );
}

#[test]
fn unknown_and_planned_route_keys_are_errors() {
    assert_error(
        &one_route(&["upstream = \"app\"", "hots = \"a.com\""]),
        Some(8),
        "routes.main.route[0].hots",
        "unknown key \"hots\" (expected one of: host, path, path_prefix, methods, header, upstream, redirect, respond, strip_prefix,",
    );
    assert_error(
        &one_route(&["upstream = \"app\"", "cache = { ttl = \"10s\" }"]),
        Some(8),
        "routes.main.route[0].cache",
        "per-route \"cache\" is not supported yet (planned: a [routes.main.route[0].cache] sub-table)",
    );
}

#[test]
fn hosts_are_names_or_addresses_without_port() {
    let cases = [
        (
            "\"a.com:8080\"",
            "has a port: a request's port is ignored when matching hosts",
        ),
        ("\"[::1]:8080\"", "has a port"),
        (
            "\"::1\"",
            "write the IPv6 address \"::1\" in brackets: \"[::1]\"",
        ),
        ("\"[::g]\"", "invalid IPv6 literal \"[::g]\""),
        ("\"*\"", "\"*\" is any host: omit host to match any host"),
        (
            "\"a.*.com\"",
            "a wildcard may only be the whole first label",
        ),
        ("\"*a.com\"", "a wildcard may only be the whole first label"),
        ("\"a.com.\"", "without its trailing dot"),
        ("\"a..com\"", "invalid host \"a..com\""),
        ("\"a b.com\"", "invalid host"),
        ("\"\"", "invalid host"),
        ("[]", "host = [] matches nothing: omit host to match any"),
        ("1", "expected a string, found an integer"),
    ];
    for (value, message) in cases {
        let line = format!("host = {value}");
        assert_error(
            &one_route(&[&line, "upstream = \"app\""]),
            Some(7),
            "routes.main.route[0].host",
            message,
        );
    }
    let long_label = format!("host = \"{}.com\"", "a".repeat(64));
    assert_error(
        &one_route(&[&long_label, "upstream = \"app\""]),
        Some(7),
        "routes.main.route[0].host",
        "invalid host",
    );
}

#[test]
fn list_items_are_checked_one_by_one_and_listed_once() {
    assert_error(
        &one_route(&[
            "host = [",
            "  \"a.com\",",
            "  \"A.com\",",
            "]",
            "upstream = \"app\"",
        ]),
        Some(9),
        "routes.main.route[0].host[1]",
        "listed twice",
    );
    assert_error(
        &one_route(&["methods = [\"GET\", 7]", "upstream = \"app\""]),
        Some(7),
        "routes.main.route[0].methods[1]",
        "expected a string, found an integer",
    );
}

#[test]
fn paths_must_be_in_normal_form() {
    let cases = [
        (
            "path = \"api\"",
            "path",
            "path \"api\" must start with \"/\"",
        ),
        (
            "path = \"/a/../b\"",
            "path",
            "is not in normal form, and requests are matched on their normalised path, so it could never match: write \"/b\"",
        ),
        (
            "path_prefix = \"/%7Euser\"",
            "path_prefix",
            "write \"/~user\"",
        ),
        (
            "path_prefix = \"/a%2fb\"",
            "path_prefix",
            "write \"/a%2Fb\"",
        ),
        ("path_prefix = \"//a\"", "path_prefix", "write \"/a\""),
        (
            "path = \"/..\"",
            "path",
            "invalid path \"/..\": a '..' segment climbs above the root",
        ),
        (
            "path = \"/%zz\"",
            "path",
            "a '%' not followed by two hex digits",
        ),
        (
            "path = \"/a?b=1\"",
            "path",
            "has a query: routes match the path only",
        ),
        ("path = \"/a b\"", "path", "may only hold visible ASCII"),
        ("path = \"/a#b\"", "path", "may only hold visible ASCII"),
    ];
    assert_each_route_error(&[], &cases, &[UPSTREAM]);
    assert_error(
        &one_route(&[
            "path = \"/a\"",
            "path_prefix = \"/b\"",
            "upstream = \"app\"",
        ]),
        Some(8),
        "routes.main.route[0].path_prefix",
        "set path (one path) or path_prefix (a path and everything under it), not both",
    );
    let long = format!("path = \"/{}\"", "a".repeat(1024));
    assert_error(
        &one_route(&[&long, "upstream = \"app\""]),
        Some(7),
        "routes.main.route[0].path",
        "path is too long (1025 bytes, at most 1024)",
    );
}

#[test]
fn methods_are_tokens_in_their_case() {
    for (value, message) in [
        ("\"get\"", "methods are case-sensitive: write \"GET\""),
        ("\"G T\"", "invalid method name \"G T\""),
        ("[\"GET\", \"GET\"]", "listed twice"),
        ("[]", "methods = [] matches nothing"),
    ] {
        let line = format!("methods = {value}");
        let errors = errors(&one_route(&[&line, "upstream = \"app\""]));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].key.starts_with("routes.main.route[0].methods"),
            "{}",
            errors[0]
        );
        assert!(errors[0].message.contains(message), "{}", errors[0]);
        assert_eq!(errors[0].line, Some(7));
    }
    // A custom method in its own case is fine.
    assert!(parse(&one_route(&["methods = \"PURGE\"", "upstream = \"app\""])).is_ok());
}

#[test]
fn header_conditions_are_checked() {
    let cases = [
        (
            "header = { value = \"1\" }",
            "header.name",
            "missing required key \"name\"",
        ),
        (
            "header = { name = \"X Y\" }",
            "header.name",
            "invalid header name \"X Y\"",
        ),
        (
            "header = { name = \"X\", value = \" 1\" }",
            "header.value",
            "has whitespace around it",
        ),
        (
            "header = { name = \"X\", value = \"a\\nb\" }",
            "header.value",
            "may only hold visible ASCII, spaces and tabs",
        ),
        (
            "header = { name = \"X\", valeu = \"1\" }",
            "header.valeu",
            "unknown key",
        ),
        (
            "header = \"X\"",
            "header",
            "expected a table, found a string",
        ),
    ];
    assert_each_route_error(&[], &cases, &[UPSTREAM]);
}

#[test]
fn path_rewrites_fit_the_route_path() {
    let cases = [
        (
            &["strip_prefix = \"/api\""][..],
            "strip_prefix",
            "strip_prefix needs the route to match paths under it (set path_prefix)",
        ),
        (
            &["path_prefix = \"/api\"", "strip_prefix = \"/web\""],
            "strip_prefix",
            "strip_prefix \"/web\" is not a prefix of every path this route matches (\"/api\")",
        ),
        (
            &["path_prefix = \"/apix\"", "strip_prefix = \"/api\""],
            "strip_prefix",
            "is not a prefix of every path",
        ),
        (
            &["path_prefix = \"/api/\"", "strip_prefix = \"/api/\""],
            "strip_prefix",
            "write strip_prefix without the trailing \"/\"",
        ),
        (
            &["path_prefix = \"/api\"", "strip_prefix = \"/a/../api\""],
            "strip_prefix",
            "is not a path in normal form",
        ),
        (
            &["path = \"/api\"", "replace_prefix = \"/v2\""],
            "replace_prefix",
            "replace_prefix replaces the route's path_prefix: set path_prefix",
        ),
        (
            &["path_prefix = \"/api\"", "replace_prefix = \"/v2/\""],
            "replace_prefix",
            "replace_prefix must end with \"/\" exactly when path_prefix (\"/api\") does",
        ),
        (
            &["path_prefix = \"/api/\"", "replace_prefix = \"/v2\""],
            "replace_prefix",
            "exactly when path_prefix",
        ),
        (
            &["path_prefix = \"/api\"", "replace_prefix = \"v2\""],
            "replace_prefix",
            "must start with \"/\"",
        ),
    ];
    for (lines, key, message) in cases {
        let lines = [lines, &["upstream = \"app\""]].concat();
        let errors = errors(&one_route(&lines));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let error = &errors[0];
        assert_eq!(error.key, format!("routes.main.route[0].{key}"), "{error}");
        assert!(error.message.contains(message), "{error}");
        assert_eq!(
            error.line,
            Some(6 + lines.iter().position(|l| l.starts_with(key)).unwrap() + 1)
        );
    }
    assert_error(
        &one_route(&[
            "path_prefix = \"/api\"",
            "strip_prefix = \"/api\"",
            "replace_prefix = \"/v2\"",
            "upstream = \"app\"",
        ]),
        Some(9),
        "routes.main.route[0].replace_prefix",
        "set strip_prefix or replace_prefix, not both",
    );
    // Stripping part of an exact path or of a longer prefix is fine.
    for lines in [
        ["path = \"/api/health\"", "strip_prefix = \"/api\""],
        ["path_prefix = \"/api/v1/\"", "strip_prefix = \"/api\""],
    ] {
        let lines = [&lines[..], &["upstream = \"app\""]].concat();
        assert!(parse(&one_route(&lines)).is_ok(), "{lines:?}");
    }
}

#[test]
fn header_edits_leave_framing_alone() {
    let cases = [
        (
            "set_request_headers = { \"Content-Length\" = \"1\" }",
            "set_request_headers.Content-Length",
            "Content-Length is written by the proxy",
        ),
        (
            "set_response_headers = { Connection = \"close\" }",
            "set_response_headers.Connection",
            "written by the proxy",
        ),
        (
            "remove_response_headers = [\"Transfer-Encoding\"]",
            "remove_response_headers[0]",
            "written by the proxy",
        ),
        (
            "remove_request_headers = [\"Host\"]",
            "remove_request_headers[0]",
            "a request needs its Host: set it instead of removing it",
        ),
        (
            "set_request_headers = { \"X A\" = \"1\" }",
            "set_request_headers.X A",
            "invalid header name \"X A\"",
        ),
        (
            "set_request_headers = { X = \"a\\r\\nb\" }",
            "set_request_headers.X",
            "may only hold visible ASCII",
        ),
        (
            "set_request_headers = { X = \"a\", x = \"b\" }",
            "set_request_headers.x",
            "set twice (header names are case-insensitive)",
        ),
        (
            "remove_request_headers = [\"A\", \"a\"]",
            "remove_request_headers[1]",
            "listed twice",
        ),
        (
            "remove_request_headers = \"A\"",
            "remove_request_headers",
            "expected an array of header names, found a string",
        ),
    ];
    assert_each_route_error(&[UPSTREAM], &cases, &[]);
    assert_error(
        &one_route(&[
            "upstream = \"app\"",
            "set_request_headers = { \"X-A\" = \"1\" }",
            "remove_request_headers = [\"x-a\"]",
        ]),
        Some(9),
        "routes.main.route[0].remove_request_headers[0]",
        "\"x-a\" is also in set_request_headers, which replaces it already",
    );
}

#[test]
fn redirects_are_checked() {
    let cases = [
        (
            "redirect = { status = 303, scheme = \"https\" }",
            "redirect.status",
            "a redirect's status is 301, 302, 307 or 308, not 303",
        ),
        (
            "redirect = { status = 1000, scheme = \"https\" }",
            "redirect.status",
            "out of range",
        ),
        (
            "redirect = { scheme = \"https\" }",
            "redirect.status",
            "missing required key \"status\"",
        ),
        (
            "redirect = { status = 301 }",
            "redirect",
            "a redirect needs a target: location = \"URL\", or one or more of scheme, host and path",
        ),
        (
            "redirect = { status = 301, location = \"https://a/\", path = \"/b\" }",
            "redirect.path",
            "location is the whole target: it cannot be combined with scheme, host or path",
        ),
        (
            "redirect = { status = 301, location = \"example.com\" }",
            "redirect.location",
            "invalid location \"example.com\"",
        ),
        (
            "redirect = { status = 301, location = \"//example.com\" }",
            "redirect.location",
            "invalid location",
        ),
        (
            "redirect = { status = 301, location = \"https://\" }",
            "redirect.location",
            "invalid location",
        ),
        (
            "redirect = { status = 301, location = \"/a b\" }",
            "redirect.location",
            "visible ASCII",
        ),
        (
            "redirect = { status = 301, scheme = \"ftp\" }",
            "redirect.scheme",
            "unknown scheme \"ftp\"",
        ),
        (
            "redirect = { status = 301, host = \"a.com:0\" }",
            "redirect.host",
            "invalid port in \"a.com:0\"",
        ),
        (
            "redirect = { status = 301, host = \"a.com:x\" }",
            "redirect.host",
            "invalid port",
        ),
        (
            "redirect = { status = 301, host = \"[::1]x\" }",
            "redirect.host",
            "invalid port",
        ),
        (
            "redirect = { status = 301, host = \"[::z]\" }",
            "redirect.host",
            "invalid IPv6 literal",
        ),
        (
            "redirect = { status = 301, host = \"a/b\" }",
            "redirect.host",
            "invalid host",
        ),
        (
            "redirect = { status = 301, path = \"b\" }",
            "redirect.path",
            "must start with \"/\"",
        ),
        (
            "redirect = { status = 301, path = \"//b\" }",
            "redirect.path",
            "which a browser reads as a host",
        ),
        (
            "redirect = { status = 301, code = 1, path = \"/\" }",
            "redirect.code",
            "unknown key",
        ),
    ];
    assert_each_route_error(&[], &cases, &[]);
    let config = parse(&one_route(&[
        "redirect = { status = 302, host = \"WWW.example.com:8443\", path = \"/new?x=1\" }",
    ]))
    .unwrap();
    assert_eq!(
        config.routes[0].routes[0].action,
        RouteAction::Redirect(RedirectAction {
            status: 302,
            target: RedirectTarget::Parts {
                scheme: None,
                host: Some("www.example.com:8443".into()),
                path: Some("/new?x=1".into()),
            },
        })
    );
    assert!(
        parse(&one_route(&[
            "redirect = { status = 307, host = \"[::1]:8443\" }"
        ]))
        .is_ok()
    );
    assert!(
        parse(&one_route(&[
            "redirect = { status = 308, location = \"/elsewhere\" }"
        ]))
        .is_ok()
    );
}

#[test]
fn fixed_responses_are_checked() {
    let too_big = format!(
        "respond = {{ status = 200, body = \"{}\" }}",
        "x".repeat(8193)
    );
    let cases = [
        (
            "respond = { body = \"ok\" }",
            "respond.status",
            "missing required key \"status\"",
        ),
        (
            "respond = { status = 101 }",
            "respond.status",
            "101 is out of range (must be between 200 and 599)",
        ),
        (
            "respond = { status = 600 }",
            "respond.status",
            "out of range",
        ),
        (
            "respond = { status = 204, body = \"x\" }",
            "respond.body",
            "a 204 response has no body",
        ),
        (
            "respond = { status = 304, body = \"x\" }",
            "respond.body",
            "a 304 response has no body",
        ),
        (
            too_big.as_str(),
            "respond.body",
            "body is 8193 bytes, more than the 8192 a fixed response may hold",
        ),
        (
            "respond = { status = 200, headers = { \"Content-Length\" = \"2\" } }",
            "respond.headers.Content-Length",
            "written by the proxy",
        ),
        (
            "respond = { status = 200, headers = { A = 1 } }",
            "respond.headers.A",
            "expected a string, found an integer",
        ),
        (
            "respond = { status = 200, headers = [\"A\"] }",
            "respond.headers",
            "expected a table, found an array",
        ),
        (
            "respond = { status = 200, text = \"ok\" }",
            "respond.text",
            "unknown key \"text\" (expected one of: status, headers, body)",
        ),
        (
            "respond = 200",
            "respond",
            "expected a table, found an integer",
        ),
    ];
    assert_each_route_error(&[], &cases, &[]);
    let at_limit = format!(
        "respond = {{ status = 503, body = \"{}\" }}",
        "x".repeat(8192)
    );
    assert!(parse(&one_route(&[&at_limit])).is_ok());
    let empty = parse(&one_route(&["respond = { status = 204 }"])).unwrap();
    assert_eq!(
        empty.routes[0].routes[0].action,
        RouteAction::Respond(RespondAction {
            status: 204,
            headers: Vec::new(),
            body: String::new(),
        })
    );
}

/// Routes from line 6, one per line as `[[routes.main.route]]` with inline keys: each
/// route takes two lines (header, keys).
fn table(routes: &[&str]) -> Vec<String> {
    let mut lines: Vec<String> = ROUTES_BASE.iter().map(|l| (*l).to_owned()).collect();
    for route in routes {
        lines.push("[[routes.main.route]]".to_owned());
        lines.push(format!("{route}\nupstream = \"app\""));
    }
    lines
}

fn table_errors(routes: &[&str]) -> Vec<(Option<usize>, String, String)> {
    let lines = table(routes);
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    match parse(&lines) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .0
            .into_iter()
            .map(|e| (e.line, e.key, e.message))
            .collect(),
    }
}

#[test]
fn a_route_behind_one_that_takes_all_its_requests_is_reported() {
    // Route n's header is on line 6 + 3n (header, keys, upstream).
    let found = table_errors(&[
        "path_prefix = \"/api\"",
        "path_prefix = \"/api/v1\"",
        "path = \"/api\"",
        "path_prefix = \"/web\"",
    ]);
    assert_eq!(
        found,
        [
            (
                Some(9),
                "routes.main.route[1]".to_owned(),
                "this route never matches: routes.main.route[0] (line 6) comes first and \
                 takes every request it would (move it after this one, or narrow it)"
                    .to_owned()
            ),
            (
                Some(12),
                "routes.main.route[2]".to_owned(),
                "this route never matches: routes.main.route[0] (line 6) comes first and \
                 takes every request it would (move it after this one, or narrow it)"
                    .to_owned()
            ),
        ]
    );
}

#[test]
fn a_duplicate_route_is_reported_as_such() {
    let found = table_errors(&[
        "host = [\"b.com\", \"a.com\"]\nmethods = [\"GET\", \"HEAD\"]",
        "host = [\"a.com\", \"B.com\"]\nmethods = [\"HEAD\", \"GET\"]",
    ]);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].0, Some(10));
    assert_eq!(found[0].1, "routes.main.route[1]");
    assert!(
        found[0]
            .2
            .starts_with("duplicate route: routes.main.route[0] (line 6) has the same conditions"),
        "{found:?}"
    );
}

#[test]
fn only_certain_shadowing_is_reported() {
    // Each pair: the later route takes some request the earlier one does not.
    let reachable = [
        ["path_prefix = \"/api/\"", "path = \"/api\""],
        ["path_prefix = \"/api\"", "path_prefix = \"/apix\""],
        ["path_prefix = \"/\"", "methods = \"OPTIONS\""],
        ["host = \"*.a.com\"", "host = \"a.com\""],
        ["host = \"x.a.com\"", "host = \"*.a.com\""],
        ["host = \"a.com\"", "host = [\"a.com\", \"b.com\"]"],
        ["methods = \"GET\"", "methods = [\"GET\", \"POST\"]"],
        [
            "header = { name = \"x\", value = \"1\" }",
            "header = { name = \"x\" }",
        ],
        ["header = { name = \"x\" }", "header = { name = \"y\" }"],
        [
            "host = \"a.com\"\npath_prefix = \"/a\"",
            "host = \"b.com\"\npath_prefix = \"/a/b\"",
        ],
    ];
    for [earlier, later] in reachable {
        assert_eq!(table_errors(&[earlier, later]), [], "{earlier} / {later}");
    }
    let shadowed = [
        ["host = \"*.a.com\"", "host = \"x.a.com\""],
        ["host = \"*.a.com\"", "host = \"*.x.a.com\""],
        ["path_prefix = \"/\"", "path = \"/x\""],
        [
            "methods = [\"GET\", \"POST\"]",
            "methods = \"GET\"\npath = \"/x\"",
        ],
        [
            "header = { name = \"X\" }",
            "header = { name = \"x\", value = \"1\" }",
        ],
        [
            "",
            "host = \"a.com\"\npath = \"/\"\nmethods = \"GET\"\nheader = { name = \"x\" }",
        ],
    ];
    for [earlier, later] in shadowed {
        let found = table_errors(&[earlier, later]);
        assert_eq!(found.len(), 1, "{earlier} / {later}: {found:#?}");
        assert_eq!(found[0].1, "routes.main.route[1]");
    }
}

#[test]
fn routes_with_errors_are_not_compared() {
    // Route 1 has a bad method; its other conditions are not read as "any".
    let found = table_errors(&["path = \"/a\"", "path = \"/a\"\nmethods = \"get\""]);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].1, "routes.main.route[1].methods");
}

#[test]
fn routes_from_another_table_do_not_shadow() {
    let lines = [
        "[[listener]]",
        "address = \"127.0.0.1:80\"",
        "routes = \"a\"",
        "[[listener]]",
        "address = \"127.0.0.1:81\"",
        "routes = \"b\"",
        "[upstream.app]",
        "backends = [\"127.0.0.1:9000\"]",
        "[[routes.a.route]]",
        "upstream = \"app\"",
        "[[routes.b.route]]",
        "upstream = \"app\"",
    ];
    let config = parse(&lines).unwrap();
    assert_eq!(config.routes.len(), 2);
}
