//! One frame of `ringproxy top` as lines of text: a fixed header, then a body (workers, then
//! backends) that scrolls when the terminal is too short. Every line fits the width; text from
//! the proxy (group names, addresses) is shown as printable ASCII only, so a status answer
//! cannot move the cursor or change the terminal.

use super::snapshot::{Backend, ErrorRates, Snapshot, Worker};

/// The lines of one snapshot, fitted to a width.
pub struct Frame {
    pub header: Vec<String>,
    pub body: Vec<String>,
}

/// Narrowest load bar, brackets included.
const MIN_BAR: usize = 5;
/// Widest load bar: wider says nothing more.
const MAX_BAR: usize = 40;

impl Frame {
    pub fn new(snapshot: &Snapshot, admin: &str, width: usize) -> Self {
        let header = vec![summary(snapshot, admin), totals(snapshot), String::new()];
        let mut body = workers(&snapshot.workers, width);
        body.push(String::new());
        body.extend(backends(&snapshot.backends, width));
        Self {
            header: header.into_iter().map(|l| fit(l, width)).collect(),
            body: body.into_iter().map(|l| fit(l, width)).collect(),
        }
    }

    /// Every line, for a plain-text print.
    pub fn lines(&self) -> impl Iterator<Item = &String> {
        self.header.iter().chain(&self.body)
    }

    /// The `height` lines of a screen: the header, the body from `scroll` on, and `footer`
    /// on the last line. `scroll` is clamped so that the body's end is at most at the bottom.
    pub fn screen(
        &self,
        height: usize,
        scroll: &mut usize,
        footer: &str,
        width: usize,
    ) -> Vec<String> {
        let rows = self.body_rows(height);
        *scroll = (*scroll).min(self.body.len().saturating_sub(rows));
        let mut lines: Vec<String> = self
            .header
            .iter()
            .take(height.saturating_sub(1))
            .cloned()
            .collect();
        lines.extend(self.body.iter().skip(*scroll).take(rows).cloned());
        lines.resize(height.saturating_sub(1), String::new());
        let mut footer = footer.to_string();
        if self.body.len() > rows && rows > 0 {
            let last = (*scroll + rows).min(self.body.len());
            footer.push_str(&format!(
                "  rows {}-{last} of {}",
                *scroll + 1,
                self.body.len()
            ));
        }
        if height > 0 {
            lines.push(fit(footer, width));
        }
        lines
    }

    /// How many body lines a screen of `height` shows.
    pub fn body_rows(&self, height: usize) -> usize {
        height.saturating_sub(self.header.len() + 1)
    }
}

fn summary(s: &Snapshot, admin: &str) -> String {
    format!(
        "ringproxy top  {}  generation {}  up {}  {}  {}",
        printable(admin),
        s.generation,
        duration(s.uptime_seconds),
        crate::plural::count(s.workers.len(), "worker"),
        crate::plural::count(s.backends.len(), "backend"),
    )
}

fn totals(s: &Snapshot) -> String {
    let mut requests = 0.0;
    let mut errors = ErrorRates::default();
    let mut connections = 0;
    for w in &s.workers {
        requests += w.requests_per_second;
        errors.client_errors += w.responses_per_second.client_errors;
        errors.server_errors += w.responses_per_second.server_errors;
        connections += w.open_connections;
    }
    let latency = &s.upstream_first_byte;
    format!(
        "all {} req/s  4xx {}/s  5xx {}/s  {connections} conns  first byte p50 {} p99 {}",
        rate(requests),
        rate(errors.client_errors),
        rate(errors.server_errors),
        seconds(latency.p50),
        seconds(latency.p99),
    )
}

/// Widths of the workers table's number columns.
const WORKER_COLUMNS: usize = 3 + 1 + 4 + 1 + 8 + 1 + 1 + 6 + 1 + 1 + 7 + 1 + 7 + 1 + 7;

fn workers(workers: &[Worker], width: usize) -> Vec<String> {
    let bars = width.saturating_sub(WORKER_COLUMNS);
    let request_bar = (bars / 2).clamp(MIN_BAR, MAX_BAR);
    let connection_bar = (bars - bars / 2).clamp(MIN_BAR, MAX_BAR);
    let busiest = workers
        .iter()
        .map(|w| w.requests_per_second)
        .fold(0.0, f64::max);
    let fullest = workers
        .iter()
        .map(|w| w.open_connections)
        .max()
        .unwrap_or(0) as f64;
    let mut lines = vec![format!(
        "{:>3} {:>4} {:>8} {:<request_bar$.request_bar$} {:>6} {:<connection_bar$.connection_bar$} {:>7} {:>7} {:>7}",
        "W", "CPU", "REQ/S", "REQUESTS", "CONNS", "CONNECTIONS", "4XX/S", "5XX/S", "P99"
    )];
    lines.extend(workers.iter().map(|w| {
        let cpu = w.cpu.map_or("-".to_string(), |c| c.to_string());
        let p99 = w.upstream_first_byte.and_then(|q| q.p99);
        format!(
            "{:>3} {cpu:>4} {:>8} {} {:>6} {} {:>7} {:>7} {:>7}",
            w.worker,
            rate(w.requests_per_second),
            bar(w.requests_per_second, busiest, request_bar),
            w.open_connections,
            bar(w.open_connections as f64, fullest, connection_bar),
            rate(w.responses_per_second.client_errors),
            rate(w.responses_per_second.server_errors),
            seconds(p99),
        )
    }));
    lines
}

fn backends(backends: &[Backend], width: usize) -> Vec<String> {
    let widest = |f: fn(&Backend) -> &str| backends.iter().map(|b| f(b).len()).max().unwrap_or(0);
    // The per-worker counts take what is left; an IPv6 address may take half the line.
    let address = widest(|b| &b.address).clamp(7, (width / 2).max(7));
    let group = widest(|b| &b.upstream).clamp(5, 16);
    let mut lines = vec![format!(
        "{:<address$} {:<group$} {:<7} {:>5} {:>7}  IN FLIGHT PER WORKER",
        "BACKEND", "GROUP", "HEALTH", "INFL", "EWMA"
    )];
    lines.extend(backends.iter().map(|b| {
        let per_worker: Vec<String> = b.inflight_per_worker.iter().map(u64::to_string).collect();
        format!(
            "{:<address$} {:<group$} {:<7} {:>5} {:>7}  {}",
            clip(&printable(&b.address), address),
            clip(&printable(&b.upstream), group),
            clip(&printable(&b.health), 7),
            b.inflight,
            seconds(b.ewma_seconds),
            per_worker.join(" "),
        )
    }));
    lines
}

/// `[||||    ]`, `width` wide: `value` against `max`; anything above zero shows.
fn bar(value: f64, max: f64, width: usize) -> String {
    let inner = width.saturating_sub(2);
    let filled = if max > 0.0 && value > 0.0 {
        ((value / max * inner as f64).round() as usize).clamp(1, inner)
    } else {
        0
    };
    format!("[{}{}]", "|".repeat(filled), " ".repeat(inner - filled))
}

fn rate(per_second: f64) -> String {
    match per_second {
        r if !r.is_finite() || r <= 0.0 => "0".to_string(),
        r if r < 100.0 => format!("{r:.1}"),
        r if r < 10_000_000.0 => format!("{r:.0}"),
        r => format!("{:.1}M", r / 1e6),
    }
}

/// A latency: `850us`, `1.2ms`, `35ms`, `1.25s`; `-` without a value.
fn seconds(value: Option<f64>) -> String {
    match value {
        Some(s) if s.is_finite() && s >= 0.0 => {
            if s < 0.001 {
                format!("{:.0}us", s * 1e6)
            } else if s < 0.01 {
                format!("{:.1}ms", s * 1e3)
            } else if s < 1.0 {
                format!("{:.0}ms", s * 1e3)
            } else {
                format!("{s:.2}s")
            }
        }
        _ => "-".to_string(),
    }
}

/// An uptime: `45s`, `12m03s`, `3h05m`, `2d04h`.
fn duration(seconds: f64) -> String {
    let s = if seconds.is_finite() && seconds > 0.0 {
        seconds as u64
    } else {
        0
    };
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Printable ASCII only: anything else (escape sequences above all) becomes `?`.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// At most `width` characters; a cut is marked with `~` at its end.
fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut clipped: String = text.chars().take(width.saturating_sub(1)).collect();
    clipped.push('~');
    clipped
}

/// A line cut to `width` characters, without trailing spaces.
fn fit(mut line: String, width: usize) -> String {
    if let Some((at, _)) = line.char_indices().nth(width) {
        line.truncate(at);
    }
    line.truncate(line.trim_end().len());
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::snapshot::Quantiles;

    fn snapshot() -> Snapshot {
        let worker = |worker, rps, conns, errors: f64| Worker {
            worker,
            cpu: Some(worker),
            open_connections: conns,
            requests_per_second: rps,
            responses_per_second: ErrorRates {
                client_errors: 0.0,
                server_errors: errors,
            },
            upstream_first_byte: Some(Quantiles {
                count: 10,
                p50: Some(0.0012),
                p99: Some(0.0081),
            }),
        };
        let backend = |upstream: &str, address: &str, inflight: Vec<u64>| Backend {
            upstream: upstream.into(),
            address: address.into(),
            health: "up".into(),
            inflight: inflight.iter().sum(),
            inflight_per_worker: inflight,
            ewma_seconds: Some(0.0013),
        };
        Snapshot {
            generation: 1,
            uptime_seconds: 3725.0,
            workers: vec![worker(0, 600.0, 20, 0.0), worker(1, 150.0, 5, 2.5)],
            backends: vec![
                backend("app", "127.0.0.1:8081", vec![1, 2]),
                backend("app", "[2001:db8::1]:8082", vec![0, 0]),
            ],
            upstream_first_byte: Quantiles::default(),
        }
    }

    #[test]
    fn an_80_column_frame_shows_every_worker_and_backend_within_the_width() {
        let frame = Frame::new(&snapshot(), "127.0.0.1:9901", 80);
        let text: Vec<&String> = frame.lines().collect();
        assert!(text.iter().all(|l| l.len() <= 80), "{text:#?}");
        assert!(
            text[0].starts_with(
                "ringproxy top  127.0.0.1:9901  generation 1  up 1h02m  2 workers  2 backends"
            ),
            "{}",
            text[0]
        );
        assert!(
            text[1].starts_with("all 750 req/s  4xx 0/s  5xx 2.5/s  25 conns"),
            "{}",
            text[1]
        );
        let worker0 = text
            .iter()
            .find(|l| l.starts_with("  0    0      600 ["))
            .unwrap();
        let worker1 = text
            .iter()
            .find(|l| l.starts_with("  1    1      150 ["))
            .unwrap();
        let bars = |l: &str| l.matches('|').count();
        assert!(
            bars(worker0) > 3 * bars(worker1) / 2,
            "{worker0}\n{worker1}"
        );
        assert!(
            worker1.contains("2.5") && worker1.ends_with("8.1ms"),
            "{worker1}"
        );
        assert!(text.iter().any(|l| l.starts_with("127.0.0.1:8081")
            && l.contains(" up ")
            && l.contains("1.3ms")
            && l.ends_with("1 2")));
        assert!(text.iter().any(|l| l.starts_with("[2001:db8::1]:8082")));
    }

    #[test]
    fn a_short_screen_scrolls_the_body_and_says_which_rows_it_shows() {
        let mut s = snapshot();
        s.workers = (0..40)
            .map(|w| Worker {
                worker: w,
                ..Worker::default()
            })
            .collect();
        let frame = Frame::new(&s, "x", 80);
        let mut scroll = 0;
        let screen = frame.screen(24, &mut scroll, "q quits", 80);
        assert_eq!(screen.len(), 24);
        assert_eq!(screen[3], frame.body[0]);
        assert_eq!(
            screen[23],
            format!("q quits  rows 1-20 of {}", frame.body.len())
        );
        let mut scroll = 1000;
        let screen = frame.screen(24, &mut scroll, "q", 80);
        assert_eq!(scroll, frame.body.len() - 20, "clamped to the end");
        assert_eq!(screen[22], *frame.body.last().unwrap());
    }

    #[test]
    fn text_from_the_proxy_cannot_reach_the_terminal_as_control_characters() {
        let mut s = snapshot();
        s.backends[0].upstream = "evil\x1b[2J\u{7}".into();
        s.backends[0].health = "\x1b]0;title\x07".into();
        let frame = Frame::new(&s, "a\rb", 200);
        for line in frame.lines() {
            assert!(line.bytes().all(|b| (0x20..0x7f).contains(&b)), "{line:?}");
        }
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(seconds(Some(0.000_85)), "850us");
        assert_eq!(seconds(Some(0.0012)), "1.2ms");
        assert_eq!(seconds(Some(0.035)), "35ms");
        assert_eq!(seconds(Some(1.25)), "1.25s");
        assert_eq!(seconds(None), "-");
        assert_eq!(seconds(Some(f64::NAN)), "-");
        assert_eq!(rate(0.0), "0");
        assert_eq!(rate(12.34), "12.3");
        assert_eq!(rate(123_456.7), "123457");
        assert_eq!(rate(12_345_678.0), "12.3M");
        assert_eq!(duration(45.0), "45s");
        assert_eq!(duration(723.0), "12m03s");
        assert_eq!(duration(190_000.0), "2d04h");
        assert_eq!(bar(0.0, 0.0, 7), "[     ]");
        assert_eq!(bar(1.0, 1000.0, 7), "[|    ]");
        assert_eq!(bar(4.0, 10.0, 7), "[||   ]");
        assert_eq!(bar(10.0, 10.0, 7), "[|||||]");
        assert_eq!(clip("127.0.0.1:8081", 8), "127.0.0~");
    }
}
