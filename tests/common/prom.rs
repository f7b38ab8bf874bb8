//! `/metrics` read with the real Prometheus parser (Python's prometheus_client,
//! `tests/support/prom_parse.py`).

use std::io::Write;
use std::process::{Command, Stdio};

const PROM_PARSE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/prom_parse.py");

/// One sample as the Python parser read it.
#[derive(Debug)]
pub struct Sample {
    pub family: String,
    pub kind: String,
    pub name: String,
    pub labels: serde_json::Map<String, serde_json::Value>,
    pub value: f64,
}

pub fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut child = Command::new("python3")
        .arg(PROM_PARSE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client rejected the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            Sample {
                family: v[0].as_str().unwrap().into(),
                kind: v[1].as_str().unwrap().into(),
                name: v[2].as_str().unwrap().into(),
                labels: v[3].as_object().unwrap().clone(),
                value: v[4].as_f64().unwrap(),
            }
        })
        .collect()
}

/// The value of the sample `name` with exactly `labels`; 0 when absent.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).and_then(|x| x.as_str()) == Some(v))
        })
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?} appears twice");
    found.first().map_or(0.0, |s| s.value)
}
