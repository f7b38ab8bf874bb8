//! The admin server's HTTP: one bounded request head read within a deadline, the access
//! rules, and answers that always close the connection.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::config::AdminConfig;

/// The largest request head read; a scrape sends a few hundred bytes.
pub const MAX_HEAD: usize = 8192;
/// The whole head must arrive within this, however slowly it trickles in.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_HEADERS: usize = 32;

/// A request the admin server understood.
#[derive(Debug, PartialEq, Eq)]
pub struct AdminRequest {
    pub method: String,
    /// Without the query.
    pub path: String,
    pub authorization: Option<String>,
}

/// Why no request could be read; the status to answer with, if any.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadFailure {
    /// Closed, timed out or failed before a whole head: nothing to answer.
    Gone,
    Reject(u16),
}

/// Reads one request head from `stream` within `HEAD_TIMEOUT`.
pub fn read_request(stream: &mut TcpStream) -> Result<AdminRequest, ReadFailure> {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(request) = parse(&head)? {
            return Ok(request);
        }
        if head.len() >= MAX_HEAD {
            return Err(ReadFailure::Reject(431));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadFailure::Gone);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|_| ReadFailure::Gone)?;
        let room = (MAX_HEAD - head.len()).min(chunk.len());
        match stream.read(&mut chunk[..room]) {
            Ok(0) | Err(_) => return Err(ReadFailure::Gone),
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
}

fn parse(head: &[u8]) -> Result<Option<AdminRequest>, ReadFailure> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ReadFailure::Reject(431)),
        Err(_) => return Err(ReadFailure::Reject(400)),
    }
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return Err(ReadFailure::Reject(400));
    };
    let path = target.split('?').next().unwrap_or_default();
    let authorization = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("authorization"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(str::to_string);
    Ok(Some(AdminRequest {
        method: method.to_string(),
        path: path.to_string(),
        authorization,
    }))
}

/// Whether the client may ask at all: 403 outside the allow list.
pub fn allowed(config: &AdminConfig, peer: IpAddr) -> bool {
    config.allow.is_empty() || config.allow.iter().any(|net| net.contains(peer))
}

/// Whether the request carries the configured token (always, without one).
pub fn authorized(config: &AdminConfig, authorization: Option<&str>) -> bool {
    let Some(token) = &config.token else {
        return true;
    };
    let Some(given) = authorization.and_then(bearer_token) else {
        return false;
    };
    same_bytes(token.as_bytes(), given.as_bytes())
}

fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compares in time that depends on the lengths only, not on where the bytes differ.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An answer; the connection closes after it.
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// Extra header lines, each ending in CRLF.
    pub headers: &'static str,
}

impl Answer {
    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{body}\n"),
            headers: "",
        }
    }

    pub fn write(&self, stream: &mut TcpStream, head_only: bool) {
        let head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{}Connection: close\r\n\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len(),
            self.headers,
        );
        let _ = stream.set_write_timeout(Some(HEAD_TIMEOUT));
        let _ = stream.write_all(head.as_bytes());
        if !head_only {
            let _ = stream.write_all(self.body.as_bytes());
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cidr;

    fn admin(token: Option<&str>, allow: &[&str]) -> AdminConfig {
        AdminConfig {
            address: "127.0.0.1:0".parse().unwrap(),
            token: token.map(str::to_string),
            allow: allow.iter().map(|a| Cidr::parse(a).unwrap()).collect(),
        }
    }

    #[test]
    fn parses_method_path_and_authorization() {
        let request =
            parse(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nauthorization: Bearer t\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/metrics");
        assert_eq!(request.authorization.as_deref(), Some("Bearer t"));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n").unwrap(), None);
        assert_eq!(
            parse(b"\x00\x01 nonsense\r\n\r\n"),
            Err(ReadFailure::Reject(400))
        );
    }

    #[test]
    fn token_and_allow_list() {
        let config = admin(Some("s3cret"), &["10.0.0.0/8"]);
        assert!(authorized(&config, Some("Bearer s3cret")));
        assert!(authorized(&config, Some("bearer  s3cret ")));
        assert!(!authorized(&config, Some("Bearer s3cre")));
        assert!(!authorized(&config, Some("Basic s3cret")));
        assert!(!authorized(&config, None));
        assert!(authorized(&admin(None, &[]), None));
        assert!(allowed(&config, "10.9.8.7".parse().unwrap()));
        assert!(!allowed(&config, "127.0.0.1".parse().unwrap()));
        assert!(allowed(&admin(None, &[]), "192.0.2.1".parse().unwrap()));
    }
}
