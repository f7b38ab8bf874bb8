//! Any bytes in any split: decoding never panics, and decoding in pieces gives the same
//! payload, end and error as decoding in one go.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringproxy::http::{ChunkedDecoder, ChunkedError};

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    payload: Vec<u8>,
    /// Bytes of the body when it ended.
    end: Option<usize>,
    error: Option<ChunkedError>,
}

/// Decodes `input` as it arrives at the given boundaries.
fn decode(input: &[u8], boundaries: &[usize]) -> Outcome {
    let mut decoder = ChunkedDecoder::new();
    let mut outcome = Outcome {
        payload: Vec::new(),
        end: None,
        error: None,
    };
    let mut consumed = 0;
    for &arrived in boundaries.iter().chain([&input.len()]) {
        while consumed < arrived {
            let available = &input[consumed..arrived];
            match decoder.decode(available) {
                Ok(decoded) => {
                    assert!(decoded.consumed <= available.len());
                    assert!(decoded.data.start <= decoded.data.end);
                    assert!(decoded.data.end <= decoded.consumed);
                    assert!(decoded.consumed > 0 || decoded.done);
                    outcome.payload.extend_from_slice(&available[decoded.data]);
                    consumed += decoded.consumed;
                    if decoded.done {
                        outcome.end = Some(consumed);
                        return outcome;
                    }
                }
                Err(error) => {
                    outcome.error = Some(error);
                    return outcome;
                }
            }
        }
    }
    outcome
}

fuzz_target!(|data: &[u8]| {
    // First byte picks the piece sizes, the rest is the body.
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let whole = decode(body, &[]);
    let step = usize::from(seed % 16) + 1;
    let mut boundaries: Vec<usize> = (step..body.len()).step_by(step).collect();
    // Irregular pieces too: grow the step as we go.
    if seed & 0x80 != 0 {
        boundaries = (1..)
            .map(|i: usize| i * (i + 1) / 2 * step)
            .take_while(|&b| b < body.len())
            .collect();
    }
    assert_eq!(decode(body, &boundaries), whole);
});
