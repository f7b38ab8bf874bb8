//! Route tables served end to end (`[routes.NAME]`, `routes = "NAME"` on a listener): which
//! backend a request reaches and with what target and fields, and what the client sees of
//! redirects, fixed responses and requests no route takes.

mod common;

use std::net::SocketAddr;

use common::*;

/// A backend that answers 200 with `NAME TARGET` as its body, and `Server: backend`,
/// `Cache-Control: public`, `X-Keep: 1`.
fn named(name: &'static str) -> Backend {
    Backend::start(move |req| {
        let body = format!("{name} {}", req.target);
        let head = format!(
            "HTTP/1.1 200 OK\r\nServer: backend\r\nCache-Control: public\r\nX-Keep: 1\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        vec![Step::Write([head.into_bytes(), body.into_bytes()].concat())]
    })
}

/// A proxy whose one listener goes through `[routes.main]` (the route sections in `routes`),
/// with one upstream group per `(name, backend)`.
fn routed(groups: &[(&str, &Backend)], routes: &str) -> Proxy {
    Proxy::start_with_config(&routed_config(groups, 1, routes), &[])
}

fn routed_config(groups: &[(&str, &Backend)], listeners: usize, routes: &str) -> String {
    let mut toml = String::from("[runtime]\nworkers = 1\npin = false\n\n");
    for _ in 0..listeners {
        toml += "[[listener]]\naddress = \"127.0.0.1:0\"\nroutes = \"main\"\n\n";
    }
    for (name, backend) in groups {
        toml += &format!("[upstream.{name}]\nbackends = [\"{}\"]\n\n", backend.addr());
    }
    toml + routes
}

/// One request on a new connection; `head_lines` are the request line and fields.
fn send(addr: SocketAddr, head_lines: &str) -> Response {
    let mut client = RawClient::connect(addr);
    client.send(format!("{head_lines}\r\n\r\n").as_bytes());
    client.read_response().expect("a response")
}

fn get(proxy: &Proxy, host: &str, target: &str) -> Response {
    send(
        proxy.addr(),
        &format!("GET {target} HTTP/1.1\r\nHost: {host}"),
    )
}

/// Which backend answered (`NAME TARGET`), or the status when the proxy answered itself.
fn reached(proxy: &Proxy, host: &str, target: &str) -> String {
    let response = get(proxy, host, target);
    match response.status {
        200 => response.body_text(),
        status => status.to_string(),
    }
}

#[test]
fn hosts_match_exactly_or_by_wildcard_ignoring_port_and_case() {
    let (a, b) = (named("a"), named("b"));
    let proxy = routed(
        &[("a", &a), ("b", &b)],
        "[[routes.main.route]]\nhost = \"api.example.com\"\nupstream = \"a\"\n\
         [[routes.main.route]]\nhost = \"*.example.com\"\nupstream = \"b\"\n",
    );
    assert_eq!(reached(&proxy, "api.example.com", "/x"), "a /x");
    assert_eq!(reached(&proxy, "API.Example.COM:8080", "/x"), "a /x");
    assert_eq!(reached(&proxy, "api.example.com.", "/x"), "a /x");
    assert_eq!(reached(&proxy, "www.example.com", "/x"), "b /x");
    assert_eq!(reached(&proxy, "a.b.Example.com:81", "/x"), "b /x");
    // The wildcard needs a label before the suffix; nothing else takes these: 404.
    assert_eq!(reached(&proxy, "example.com", "/x"), "404");
    assert_eq!(reached(&proxy, "example.org", "/x"), "404");
}

#[test]
fn paths_match_exactly_or_by_segment_prefix_and_ignore_the_query() {
    let (a, b) = (named("a"), named("b"));
    let proxy = routed(
        &[("a", &a), ("b", &b)],
        "[[routes.main.route]]\npath = \"/exact\"\nupstream = \"a\"\n\
         [[routes.main.route]]\npath_prefix = \"/api\"\nupstream = \"b\"\n",
    );
    assert_eq!(reached(&proxy, "h", "/exact"), "a /exact");
    assert_eq!(reached(&proxy, "h", "/exact?q=1"), "a /exact?q=1");
    assert_eq!(reached(&proxy, "h", "/exact/more"), "404");
    assert_eq!(reached(&proxy, "h", "/api"), "b /api");
    assert_eq!(reached(&proxy, "h", "/api/users?id=2"), "b /api/users?id=2");
    assert_eq!(reached(&proxy, "h", "/apix"), "404");
    assert_eq!(reached(&proxy, "h", "/"), "404");
}

#[test]
fn what_is_matched_is_the_normalised_path_and_that_is_what_is_forwarded() {
    let admin = named("admin");
    let proxy = routed(
        &[("admin", &admin)],
        "[[routes.main.route]]\npath = \"/admin\"\nupstream = \"admin\"\n",
    );
    // Dot segments, encoded dots, encoded unreserved characters, empty segments: all reach
    // `/admin`, and the backend is sent `/admin`, the query as received.
    for target in [
        "/api/../admin",
        "/api/%2e%2E/admin",
        "/./admin",
        "/%61dmin",
        "//admin",
        "/x//..//admin",
    ] {
        assert_eq!(reached(&proxy, "h", target), "admin /admin", "{target}");
    }
    assert_eq!(
        reached(&proxy, "h", "/x/../admin?next=/../a&q=%2e"),
        "admin /admin?next=/../a&q=%2e"
    );
    // An encoded slash is data, not a separator.
    assert_eq!(reached(&proxy, "h", "/admin%2Fx"), "404");
    assert_eq!(reached(&proxy, "h", "/x%2F..%2Fadmin"), "404");
    // Above the root, or a broken escape: 400, and the backend sees none of it.
    assert_eq!(reached(&proxy, "h", "/../admin"), "400");
    assert_eq!(reached(&proxy, "h", "/admin/%zz"), "400");
    assert_eq!(admin.requests().len(), 7);
}

#[test]
fn methods_and_header_conditions_select_routes_and_the_first_match_wins() {
    let (a, b, c) = (named("a"), named("b"), named("c"));
    let proxy = routed(
        &[("a", &a), ("b", &b), ("c", &c)],
        "[[routes.main.route]]\npath_prefix = \"/api\"\nmethods = [\"POST\", \"PUT\"]\n\
         upstream = \"a\"\n\
         [[routes.main.route]]\npath_prefix = \"/api/v1\"\nupstream = \"b\"\n\
         [[routes.main.route]]\nheader = { name = \"X-Canary\", value = \"1\" }\n\
         upstream = \"c\"\n",
    );
    let reach = |lines: &str| {
        let response = send(proxy.addr(), lines);
        match response.status {
            200 => response.body_text(),
            status => status.to_string(),
        }
    };
    // POST /api/v1 is taken by the first route, though the second is more specific.
    let post = "POST /api/v1/x HTTP/1.1\r\nHost: h\r\nContent-Length: 0";
    assert_eq!(reach(post), "a /api/v1/x");
    assert_eq!(reach("GET /api/v1/x HTTP/1.1\r\nHost: h"), "b /api/v1/x");
    assert_eq!(reach("GET /api/x HTTP/1.1\r\nHost: h"), "404");
    assert_eq!(reach("GET /x HTTP/1.1\r\nHost: h\r\nx-canary: 1"), "c /x");
    assert_eq!(reach("GET /x HTTP/1.1\r\nHost: h\r\nX-Canary: 2"), "404");
    // Methods are case-sensitive.
    assert_eq!(
        reach("post /api/x HTTP/1.1\r\nHost: h\r\nContent-Length: 0"),
        "404"
    );
}

#[test]
fn strip_and_replace_prefix_are_what_the_backend_sees() {
    let a = named("a");
    let proxy = routed(
        &[("a", &a)],
        "[[routes.main.route]]\npath_prefix = \"/api\"\nstrip_prefix = \"/api\"\nupstream = \"a\"\n\
         [[routes.main.route]]\npath_prefix = \"/old/\"\nreplace_prefix = \"/new/\"\n\
         upstream = \"a\"\n",
    );
    assert_eq!(reached(&proxy, "h", "/api/users?x=1"), "a /users?x=1");
    assert_eq!(reached(&proxy, "h", "/api"), "a /");
    assert_eq!(reached(&proxy, "h", "/api//v1/../users"), "a /users");
    assert_eq!(reached(&proxy, "h", "/old/page?p"), "a /new/page?p");
}

#[test]
fn request_header_edits_are_what_the_backend_sees() {
    let a = named("a");
    let proxy = routed(
        &[("a", &a)],
        "[[routes.main.route]]\nupstream = \"a\"\n\
         set_request_headers = { \"X-Route\" = \"api\", \"user-agent\" = \"edited\" }\n\
         remove_request_headers = [\"Cookie\", \"X-Debug\"]\n",
    );
    let response = send(
        proxy.addr(),
        "GET /p HTTP/1.1\r\nHost: app.example\r\nCookie: a=1\r\nUser-Agent: curl\r\n\
         X-Route: forged\r\nx-debug: 1\r\nAccept: */*\r\nX-Route: again\r\ncookie: b=2",
    );
    assert_eq!(response.status, 200);
    let request = &a.wait_for_requests(1)[0];
    assert_eq!(request.header_all("X-Route"), ["api"]);
    assert_eq!(request.header_all("User-Agent"), ["edited"]);
    assert_eq!(request.header_all("Cookie"), Vec::<&str>::new());
    assert_eq!(request.header("X-Debug"), None);
    assert_eq!(request.header("Accept"), Some("*/*"));
    assert_eq!(request.header("Host"), Some("app.example"));
}

#[test]
fn response_header_edits_are_what_the_client_sees() {
    let a = named("a");
    let proxy = routed(
        &[("a", &a)],
        "[[routes.main.route]]\nupstream = \"a\"\n\
         set_response_headers = { \"Cache-Control\" = \"no-store\", \"X-Served-By\" = \"edge\" }\n\
         remove_response_headers = [\"Server\"]\n",
    );
    let response = get(&proxy, "h", "/p");
    assert_eq!(response.status, 200);
    assert_eq!(response.body_text(), "a /p");
    let all = |name: &str| -> Vec<String> {
        response
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    };
    assert_eq!(all("Cache-Control"), ["no-store"]);
    assert_eq!(all("X-Served-By"), ["edge"]);
    assert_eq!(all("Server"), Vec::<String>::new());
    assert_eq!(all("X-Keep"), ["1"]);
}

#[test]
fn redirects_answer_with_their_status_and_location_and_keep_the_connection() {
    let a = named("a");
    let proxy = routed(
        &[("a", &a)],
        "[[routes.main.route]]\npath_prefix = \"/secure\"\n\
         redirect = { status = 308, scheme = \"https\" }\n\
         [[routes.main.route]]\npath = \"/moved\"\n\
         redirect = { status = 301, location = \"https://example.org/new\" }\n\
         [[routes.main.route]]\npath = \"/www\"\nredirect = { status = 302, host = \"www.example.com\" }\n\
         [[routes.main.route]]\npath = \"/elsewhere\"\nredirect = { status = 307, path = \"/there\" }\n",
    );
    let mut client = RawClient::connect(proxy.addr());
    let mut ask = |target: &str| {
        let request = format!("GET {target} HTTP/1.1\r\nHost: example.com:8080\r\n\r\n");
        client.send(request.as_bytes());
        let response = client.read_response().expect("a response");
        assert_eq!(
            response.header("Content-Length"),
            Some(response.body.len().to_string().as_str())
        );
        assert_eq!(response.header("Connection"), None, "kept alive");
        (
            response.status,
            response.header("Location").map(str::to_owned),
        )
    };
    // All on one connection: each answer keeps it open.
    assert_eq!(
        ask("/secure/a?b=c"),
        (308, Some("https://example.com/secure/a?b=c".to_owned()))
    );
    assert_eq!(
        ask("/moved"),
        (301, Some("https://example.org/new".to_owned()))
    );
    assert_eq!(
        ask("/www?q"),
        (302, Some("http://www.example.com/www?q".to_owned()))
    );
    assert_eq!(
        ask("/elsewhere?q"),
        (307, Some("http://example.com/there".to_owned()))
    );
    assert!(a.requests().is_empty());
    // A redirect that keeps the request's host needs one: HTTP/1.0 may send none.
    let response = send(proxy.addr(), "GET /secure HTTP/1.0");
    assert_eq!(response.status, 400);
}

#[test]
fn fixed_responses_answer_with_their_status_headers_and_body() {
    let a = named("a");
    let proxy = routed(
        &[("a", &a)],
        "[[routes.main.route]]\npath = \"/health\"\n\
         respond = { status = 200, headers = { \"X-Fixed\" = \"1\" }, body = \"ok\\n\" }\n\
         [[routes.main.route]]\npath = \"/gone\"\n\
         respond = { status = 410, headers = { \"Content-Type\" = \"application/json\" }, \
         body = \"{}\" }\n\
         [[routes.main.route]]\npath = \"/empty\"\nrespond = { status = 204 }\n",
    );
    let mut client = RawClient::connect(proxy.addr());
    client.send(b"GET /health HTTP/1.1\r\nHost: h\r\n\r\n");
    let health = client.read_response().unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(health.header("X-Fixed"), Some("1"));
    assert_eq!(
        health.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(health.body_text(), "ok\n");
    // HEAD: the same head, no body; the connection stays usable.
    client.send(b"HEAD /health HTTP/1.1\r\nHost: h\r\n\r\n");
    let head = client.read_head_response().unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Length"), Some("3"));
    client.send(b"GET /gone HTTP/1.1\r\nHost: h\r\n\r\n");
    let gone = client.read_response().unwrap();
    assert_eq!(gone.status, 410);
    assert_eq!(gone.header("Content-Type"), Some("application/json"));
    assert_eq!(gone.body_text(), "{}");
    client.send(b"GET /empty HTTP/1.1\r\nHost: h\r\n\r\n");
    let empty = client.read_response().unwrap();
    assert_eq!(empty.status, 204);
    assert_eq!(empty.header("Content-Length"), None);
    // HTTP/1.0 keep-alive is kept and said so.
    client.send(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let old = client.read_response().unwrap();
    assert_eq!(old.header("Connection"), Some("keep-alive"));
    assert_eq!(old.body_text(), "ok\n");
    assert!(a.requests().is_empty());
}

#[test]
fn a_request_no_route_takes_gets_the_proxys_own_404_on_a_kept_connection() {
    let a = named("a");
    let proxy = routed(
        &[("a", &a)],
        "[[routes.main.route]]\npath_prefix = \"/app\"\nupstream = \"a\"\n",
    );
    let mut client = RawClient::connect(proxy.addr());
    client.send(b"GET /nothing HTTP/1.1\r\nHost: h\r\n\r\n");
    let missing = client.read_response().unwrap();
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body_text(), "404 Not Found\n");
    assert!(!missing.raw_head.contains(&a.port().to_string()));
    client.send(b"HEAD /nothing HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(client.read_head_response().unwrap().status, 404);
    // Pipelined behind a 404, a routed request is still served.
    client.send(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\nGET /app/y HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(client.read_response().unwrap().status, 404);
    assert_eq!(client.read_response().unwrap().body_text(), "a /app/y");
    // A request with a body is answered, then the connection closes.
    client.send(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody");
    let posted = client.read_response().unwrap();
    assert_eq!(posted.status, 404);
    assert_eq!(posted.header("Connection"), Some("close"));
}

#[test]
fn listeners_share_a_table_and_a_plain_listener_forwards_as_received() {
    let (a, plain) = (named("a"), named("plain"));
    let mut toml = routed_config(
        &[("a", &a), ("plain", &plain)],
        2,
        "[[routes.main.route]]\npath_prefix = \"/\"\nupstream = \"a\"\n",
    );
    toml = toml.replacen(
        "[upstream.a]",
        "[[listener]]\naddress = \"127.0.0.1:0\"\nupstream = \"plain\"\n\n[upstream.a]",
        1,
    );
    let proxy = Proxy::start_with_config(&toml, &[]);
    let addrs = proxy.addrs().to_vec();
    assert_eq!(addrs.len(), 3);
    for addr in &addrs[..2] {
        let response = send(*addr, "GET /x/../y HTTP/1.1\r\nHost: h");
        assert_eq!(response.body_text(), "a /y");
    }
    // Without a route table, the target goes as received, and nothing is refused.
    let response = send(addrs[2], "GET /x/../y HTTP/1.1\r\nHost: h");
    assert_eq!(response.body_text(), "plain /x/../y");
    let lines = proxy.stderr_lines();
    let routed_lines = lines
        .iter()
        .filter(|l| l.contains("listening on") && l.ends_with("-> routes \"main\""))
        .count();
    assert_eq!(routed_lines, 2, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("listening on") && l.ends_with("-> upstream \"plain\"")),
        "{lines:?}"
    );
}
