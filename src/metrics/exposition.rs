//! The Prometheus text exposition format (version 0.0.4): `# HELP` and `# TYPE` once per
//! family, then its samples; label values escaped; counters named `..._total`; histograms as
//! cumulative `_bucket{le=...}` series ending with `+Inf`, then `_sum` and `_count`.

use std::fmt::Write;

use hdrhistogram::Histogram;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Writes one exposition into a string.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn into_string(self) -> String {
        self.out
    }

    /// Starts a family. A counter's `name` must end in `_total` (its samples carry it).
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        debug_assert!(kind != Kind::Counter || name.ends_with("_total"));
        // Prometheus names the family without the counter suffix.
        let family = name.strip_suffix("_total").unwrap_or(name);
        let _ = writeln!(self.out, "# HELP {family} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {family} {}", kind.name());
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", format_value(value));
    }

    /// A histogram's samples (the family started with `Kind::Histogram`): the count at or
    /// below each bound of `bounds` (seconds; `histogram` holds microseconds), `+Inf`, the
    /// sum (`sum_seconds`, kept exactly elsewhere) and the count.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
        histogram: &Histogram<u64>,
        sum_seconds: f64,
    ) {
        let bucket = format!("{name}_bucket");
        for &bound in bounds {
            let micros = (bound * 1e6) as u64;
            let below = histogram.count_between(0, micros);
            self.out.push_str(&bucket);
            write_labels(&mut self.out, labels, Some(&format_value(bound)));
            let _ = writeln!(self.out, " {below}");
        }
        self.out.push_str(&bucket);
        write_labels(&mut self.out, labels, Some("+Inf"));
        let _ = writeln!(self.out, " {}", histogram.len());
        self.sample(&format!("{name}_sum"), labels, sum_seconds);
        self.sample(&format!("{name}_count"), labels, histogram.len() as f64);
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let le = le.map(|v| ("le", v));
    for (i, (key, value)) in labels.iter().copied().chain(le).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(key);
        out.push_str("=\"");
        escape_label_value(out, value);
        out.push('"');
    }
    out.push('}');
}

/// Label values escape backslash, double quote and line feed.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Help text escapes backslash and line feed.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

fn format_value(value: f64) -> String {
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if value.is_nan() {
        return "NaN".into();
    }
    if value.fract() == 0.0 && value.abs() < 1e15 {
        return format!("{}", value as i64);
    }
    format!("{value}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::latency::empty_histogram;

    #[test]
    fn counter_family_and_escaped_labels() {
        let mut e = Exposition::default();
        e.family("x_requests_total", Kind::Counter, "Requests.\nAll of them.");
        e.sample("x_requests_total", &[("a", "q\"b\\c\nd")], 3.0);
        assert_eq!(
            e.into_string(),
            "# HELP x_requests Requests.\\nAll of them.\n\
             # TYPE x_requests counter\n\
             x_requests_total{a=\"q\\\"b\\\\c\\nd\"} 3\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf() {
        let mut h = empty_histogram();
        h.record(500).unwrap(); // 0.5 ms
        h.record(20_000).unwrap(); // 20 ms
        h.record(5_000_000).unwrap(); // 5 s
        let mut e = Exposition::default();
        e.family("t_seconds", Kind::Histogram, "T.");
        e.histogram("t_seconds", &[("g", "a")], &[0.001, 0.1], &h, 5.0205);
        let text = e.into_string();
        assert!(
            text.contains("t_seconds_bucket{g=\"a\",le=\"0.001\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_bucket{g=\"a\",le=\"0.1\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_bucket{g=\"a\",le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("t_seconds_sum{g=\"a\"} 5.0205\n"), "{text}");
        assert!(text.contains("t_seconds_count{g=\"a\"} 3\n"), "{text}");
    }
}
