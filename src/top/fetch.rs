//! `GET /status` over one plain blocking HTTP/1.1 connection, every step bounded in time
//! and size: the admin listener answers one request per connection and closes it.

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::snapshot::Snapshot;

/// Connecting, and the whole exchange after it. The admin thread answers within its 250 ms
/// wait for the workers' histograms unless it is busy with another client.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);
/// A status of 1024 workers and hundreds of backends fits easily.
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// Why there is no snapshot; each displays as one line for the user.
#[derive(Debug)]
pub enum FetchError {
    Unreachable(SocketAddr, std::io::Error),
    /// The connection failed after it was made.
    Broken(SocketAddr, std::io::Error),
    TimedOut(SocketAddr),
    TooLarge(SocketAddr),
    NotHttp(SocketAddr),
    CutShort(SocketAddr),
    /// 401: no token given, or a wrong one.
    Unauthorized {
        admin: SocketAddr,
        token_given: bool,
    },
    Forbidden(SocketAddr),
    Status(SocketAddr, String),
    NotStatus(SocketAddr, serde_json::Error),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable(admin, e) => write!(
                f,
                "cannot reach the admin listener at {admin}: {e} (is ringproxy running with [admin] or --admin?)"
            ),
            Self::Broken(admin, e) => {
                write!(
                    f,
                    "the connection to the admin listener at {admin} failed: {e}"
                )
            }
            Self::TimedOut(admin) => write!(
                f,
                "the admin listener at {admin} did not answer in time ({} s to connect, {} s to answer)",
                CONNECT_TIMEOUT.as_secs(),
                ANSWER_TIMEOUT.as_secs()
            ),
            Self::TooLarge(admin) => write!(
                f,
                "the answer of {admin} is larger than {} MiB",
                MAX_ANSWER_BYTES >> 20
            ),
            Self::NotHttp(admin) => write!(f, "{admin} did not answer in HTTP/1.1"),
            Self::CutShort(admin) => write!(f, "the answer of {admin} ended before its body did"),
            Self::Unauthorized {
                admin,
                token_given: false,
            } => write!(
                f,
                "the admin listener at {admin} requires a token (401): give --token"
            ),
            Self::Unauthorized {
                admin,
                token_given: true,
            } => write!(f, "the admin listener at {admin} refused the token (401)"),
            Self::Forbidden(admin) => write!(
                f,
                "the admin listener at {admin} refused this client (403): its address is not in [admin] allow"
            ),
            Self::Status(admin, line) => write!(f, "{admin} answered /status with {line}"),
            Self::NotStatus(admin, e) => write!(
                f,
                "{admin} did not answer with ringproxy's /status JSON ({e}): is it a ringproxy admin listener?"
            ),
        }
    }
}

/// Fetches and parses `/status` from the admin listener at `admin`.
pub fn fetch_status(admin: SocketAddr, token: Option<&str>) -> Result<Snapshot, FetchError> {
    let answer = exchange(admin, &request(admin, token))?;
    let head = parse_head(&answer).ok_or(FetchError::NotHttp(admin))?;
    let body = &answer[head.body_at..];
    let body = match head.length {
        Some(n) => body.get(..n).ok_or(FetchError::CutShort(admin))?,
        None => body,
    };
    let status = head.status;
    match status.code {
        200 => serde_json::from_slice(body).map_err(|e| FetchError::NotStatus(admin, e)),
        401 => Err(FetchError::Unauthorized {
            admin,
            token_given: token.is_some(),
        }),
        403 => Err(FetchError::Forbidden(admin)),
        _ => Err(FetchError::Status(admin, status.line)),
    }
}

fn request(admin: SocketAddr, token: Option<&str>) -> String {
    let authorization = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!(
        "GET /status HTTP/1.1\r\nHost: {admin}\r\nUser-Agent: ringproxy-top\r\n\
         Accept: application/json\r\n{authorization}Connection: close\r\n\r\n"
    )
}

/// Sends `request` and reads the answer until it is whole (its `Content-Length`) or the
/// server closes, within `ANSWER_TIMEOUT`.
fn exchange(admin: SocketAddr, request: &str) -> Result<Vec<u8>, FetchError> {
    let mut stream = TcpStream::connect_timeout(&admin, CONNECT_TIMEOUT)
        .map_err(|e| io_failure(admin, e, false))?;
    let failure = |e| io_failure(admin, e, true);
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    stream
        .set_write_timeout(Some(ANSWER_TIMEOUT))
        .and_then(|()| stream.write_all(request.as_bytes()))
        .map_err(failure)?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(FetchError::TimedOut(admin));
        }
        stream.set_read_timeout(Some(left)).map_err(failure)?;
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(answer),
            Ok(n) => {
                if answer.len() + n > MAX_ANSWER_BYTES {
                    return Err(FetchError::TooLarge(admin));
                }
                answer.extend_from_slice(&chunk[..n]);
                let whole = parse_head(&answer)
                    .and_then(|head| Some(head.body_at + head.length?))
                    .is_some_and(|end| answer.len() >= end);
                if whole {
                    return Ok(answer);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(failure(e)),
        }
    }
}

fn io_failure(admin: SocketAddr, e: std::io::Error, connected: bool) -> FetchError {
    match e.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => FetchError::TimedOut(admin),
        _ if connected => FetchError::Broken(admin, e),
        _ => FetchError::Unreachable(admin, e),
    }
}

struct StatusLine {
    code: u16,
    /// `404 Not Found`, for messages.
    line: String,
}

struct Head {
    status: StatusLine,
    length: Option<usize>,
    /// Where the body starts in the answer.
    body_at: usize,
}

/// The head at the start of `answer`; `None` until it is complete, or if it is not HTTP/1.x.
fn parse_head(answer: &[u8]) -> Option<Head> {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&answer[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let rest = lines.next()?.strip_prefix("HTTP/1.")?.get(2..)?;
    let code: u16 = rest.get(..3)?.parse().ok()?;
    let length = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    let line = rest
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(60)
        .collect();
    Some(Head {
        status: StatusLine { code, line },
        length,
        body_at: end + 4,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_read_with_their_length() {
        let head = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!(
            (head.status.code, head.status.line.as_str()),
            (200, "200 OK")
        );
        assert_eq!((head.length, head.body_at), (Some(2), 38));
        let head = parse_head(b"HTTP/1.0 404 Not Found\r\n\r\nnope").unwrap();
        assert_eq!((head.status.code, head.length), (404, None));
        for not_yet_or_not_http in [
            &b"SSH-2.0-OpenSSH_9.6\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",
            b"HTTP/1.1 2x0 OK\r\n\r\n",
            b"HTTP/2 200\r\n\r\n",
        ] {
            assert!(
                parse_head(not_yet_or_not_http).is_none(),
                "{not_yet_or_not_http:?}"
            );
        }
    }

    #[test]
    fn a_status_line_with_control_characters_is_cleaned_for_the_message() {
        let head = parse_head(b"HTTP/1.1 500 \x1b[2Jboom\r\n\r\n").unwrap();
        assert_eq!(head.status.line, "500 [2Jboom");
    }
}
