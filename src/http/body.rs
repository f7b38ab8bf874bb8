//! How far a message body extends into the bytes at hand, whatever its framing.
//!
//! The proxy streams bodies: it never holds one whole. For each run of received bytes it asks
//! `BodyProgress` how many belong to the current message; the rest (a pipelined request, or
//! garbage after a response) stays for whoever reads next.

use super::BodyFraming;
use super::{ChunkedDecoder, ChunkedError};

#[derive(Debug)]
pub struct BodyProgress {
    state: State,
}

#[derive(Debug)]
enum State {
    Length { remaining: u64 },
    Chunked(ChunkedDecoder),
    UntilClose,
    Done,
}

impl BodyProgress {
    pub fn new(framing: BodyFraming) -> Self {
        let state = match framing {
            BodyFraming::None | BodyFraming::Length(0) => State::Done,
            BodyFraming::Length(n) => State::Length { remaining: n },
            BodyFraming::Chunked => State::Chunked(ChunkedDecoder::new()),
            BodyFraming::CloseDelimited => State::UntilClose,
        };
        Self { state }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Body bytes still to come, when the framing says (`None`: until a chunk or EOF says).
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length { remaining } => Some(remaining),
            State::Done => Some(0),
            State::Chunked(_) | State::UntilClose => None,
        }
    }

    /// Whether the body is still to come with a known length of at most `limit` bytes: small
    /// enough to be read whole before anything is written.
    pub fn pending_at_most(&self, limit: u64) -> bool {
        matches!(self.state, State::Length { remaining } if remaining <= limit)
    }

    /// How many leading bytes of `data` belong to this body: `(consumed, payload)`. Passing
    /// through, `data[..consumed]` is forwarded unchanged and `payload == consumed`. With
    /// `dechunk`, chunked framing is stripped: the payload bytes are moved to the front of
    /// `data` and `data[..payload]` is what to forward.
    pub fn advance(
        &mut self,
        data: &mut [u8],
        dechunk: bool,
    ) -> Result<(usize, usize), ChunkedError> {
        match &mut self.state {
            State::Done => Ok((0, 0)),
            State::UntilClose => Ok((data.len(), data.len())),
            State::Length { remaining } => {
                let taken = usize::try_from(*remaining).map_or(data.len(), |r| r.min(data.len()));
                *remaining -= taken as u64;
                if *remaining == 0 {
                    self.state = State::Done;
                }
                Ok((taken, taken))
            }
            State::Chunked(decoder) => {
                let (consumed, payload, done) = decode_chunks(decoder, data, dechunk)?;
                if done {
                    self.state = State::Done;
                }
                Ok((consumed, if dechunk { payload } else { consumed }))
            }
        }
    }

    /// The source closed. True when that ends the body properly (close-delimited framing).
    pub fn finish_at_eof(&mut self) -> bool {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                true
            }
            _ => false,
        }
    }
}

/// Runs the chunked decoder over `data`; with `dechunk`, packs the payload runs at the front.
/// Returns (bytes consumed, payload bytes, whether the body ended).
fn decode_chunks(
    decoder: &mut ChunkedDecoder,
    data: &mut [u8],
    dechunk: bool,
) -> Result<(usize, usize, bool), ChunkedError> {
    let (mut pos, mut payload) = (0, 0);
    while pos < data.len() {
        let step = decoder.decode(&data[pos..])?;
        if dechunk {
            let run = (pos + step.data.start)..(pos + step.data.end);
            data.copy_within(run.clone(), payload);
            payload += run.len();
        }
        pos += step.consumed;
        if step.done {
            return Ok((pos, payload, true));
        }
        if step.consumed == 0 {
            break;
        }
    }
    Ok((pos, payload, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_short_lengths_are_pending_at_most_a_limit() {
        assert!(BodyProgress::new(BodyFraming::Length(10)).pending_at_most(10));
        assert!(!BodyProgress::new(BodyFraming::Length(11)).pending_at_most(10));
        assert!(!BodyProgress::new(BodyFraming::Length(0)).pending_at_most(10));
        assert!(!BodyProgress::new(BodyFraming::None).pending_at_most(10));
        assert!(!BodyProgress::new(BodyFraming::Chunked).pending_at_most(10));
        assert!(!BodyProgress::new(BodyFraming::CloseDelimited).pending_at_most(10));
        let mut p = BodyProgress::new(BodyFraming::Length(20));
        p.advance(&mut [0; 12], false).unwrap();
        assert!(p.pending_at_most(8), "8 bytes still to come");
    }

    #[test]
    fn length_body_stops_at_its_end_leaving_pipelined_bytes() {
        let mut p = BodyProgress::new(BodyFraming::Length(5));
        assert_eq!(p.advance(&mut b"abc".to_vec(), false).unwrap(), (3, 3));
        assert!(!p.is_done());
        assert_eq!(p.advance(&mut b"deGET /".to_vec(), false).unwrap(), (2, 2));
        assert!(p.is_done());
        assert_eq!(p.advance(&mut b"more".to_vec(), false).unwrap(), (0, 0));
    }

    #[test]
    fn chunked_body_passes_framing_through_and_stops_after_last_chunk() {
        let mut p = BodyProgress::new(BodyFraming::Chunked);
        let mut wire = *b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        assert_eq!(p.advance(&mut wire, false).unwrap(), (13, 13));
        assert_eq!(&wire[..3], b"3\r\n", "pass-through leaves the bytes alone");
        assert!(p.is_done());
    }

    #[test]
    fn chunked_body_split_byte_by_byte_consumes_everything() {
        let mut p = BodyProgress::new(BodyFraming::Chunked);
        let mut wire = *b"4\r\nwiki\r\n5\r\npedia\r\n0\r\n\r\n";
        let mut total = 0;
        for byte in wire.chunks_mut(1) {
            total += p.advance(byte, false).unwrap().0;
        }
        assert_eq!(total, wire.len());
        assert!(p.is_done());
    }

    #[test]
    fn dechunking_moves_payload_to_the_front() {
        let mut p = BodyProgress::new(BodyFraming::Chunked);
        let mut wire = *b"4\r\nwiki\r\n5\r\npedia\r\n0\r\n\r\n";
        let (consumed, payload) = p.advance(&mut wire, true).unwrap();
        assert_eq!(consumed, wire.len());
        assert_eq!(&wire[..payload], b"wikipedia");
        assert!(p.is_done());
    }

    #[test]
    fn eof_ends_only_close_delimited_bodies() {
        assert!(BodyProgress::new(BodyFraming::CloseDelimited).finish_at_eof());
        assert!(!BodyProgress::new(BodyFraming::Length(3)).finish_at_eof());
        assert!(!BodyProgress::new(BodyFraming::Chunked).finish_at_eof());
        assert!(BodyProgress::new(BodyFraming::None).finish_at_eof());
    }

    #[test]
    fn bad_chunk_size_is_an_error() {
        let mut p = BodyProgress::new(BodyFraming::Chunked);
        assert!(p.advance(&mut b"zz\r\n".to_vec(), false).is_err());
    }
}
