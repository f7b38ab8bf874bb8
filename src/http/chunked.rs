//! Incremental, resumable validation and decoding of chunked bodies (RFC 9112 7.1).
//!
//! The proxy usually forwards the consumed bytes unchanged, so this decoder is the only
//! thing standing between a client and a backend that might read the framing differently.
//! It is therefore strict: CRLF everywhere (bare LF and bare CR are errors), chunk sizes of
//! hex digits only, chunk extensions exactly as RFC 9112 7.1.1 writes them (whitespace only
//! where its `BWS` stands: around `;` and `=`, never inside the size nor before the CRLF),
//! bounded size lines and trailers.

use std::ops::Range;

use super::error::ChunkedError;
use super::fields::is_tchar;

/// Longest chunk-size line (size digits and extensions, without CRLF).
pub const MAX_CHUNK_LINE: usize = 4096;
/// Largest trailer section (all trailer field lines with their CRLFs, not the final CRLF).
pub const MAX_TRAILER_BYTES: usize = 8192;

/// Where the decoder stands between two calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the hex digits of a chunk size.
    Size,
    /// Whitespace after the size: only more of it or `;` may follow.
    SizeBws,
    /// In the chunk extensions after the size.
    Extension(Ext),
    /// Saw the CR ending a chunk-size line.
    SizeLf,
    /// Inside chunk data, `remaining` > 0 bytes to go.
    Data,
    /// Chunk data ended; CR expected.
    DataCr,
    DataLf,
    /// At the start of a trailer field line or of the final CRLF.
    TrailerLineStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    FinalLf,
    Done,
    /// An error was returned; every later call returns it again.
    Failed(ChunkedError),
}

/// Where the decoder stands inside chunk extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ext {
    /// After `;`: whitespace, then a name.
    NameStart,
    Name,
    /// Whitespace after a name: `=` or the next `;` follows.
    NameBws,
    /// After `=`: whitespace, then a token or a quoted string.
    ValueStart,
    Token,
    Quoted,
    /// After a backslash in a quoted string.
    QuotedPair,
    /// Right after a quoted string's closing quote.
    QuotedEnd,
    /// Whitespace after a value: only more of it or the next `;` may follow.
    ValueBws,
}

/// Decoder state for one chunked body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Chunk size being read (in `Size`), or data bytes left (in `Data`).
    size: u64,
    /// Bytes of the current chunk-size line so far.
    line_len: usize,
    trailer_len: usize,
}

/// What one [`ChunkedDecoder::decode`] call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes of the input used (framing and payload); forward `input[..consumed]` as is.
    pub consumed: usize,
    /// Payload inside `input[..consumed]`; may be empty.
    pub data: Range<usize>,
    /// The last chunk, trailers and final CRLF are consumed; bytes after them are not ours.
    pub done: bool,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::Size,
            size: 0,
            line_len: 0,
            trailer_len: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes framing bytes and at most one run of payload from `input`.
    ///
    /// Call again with `input[consumed..]` (or with more bytes once all are consumed) until
    /// `done`. Works on any split of the body, down to one byte per call. After an error
    /// the decoder keeps returning that error.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, ChunkedError> {
        let mut pos = 0;
        while pos < input.len() {
            match self.state {
                State::Data => return Ok(self.take_data(input, pos)),
                State::Done => break,
                State::Failed(error) => return Err(error),
                _ => {}
            }
            if let Err(error) = self.step(input[pos]) {
                self.state = State::Failed(error);
                return Err(error);
            }
            pos += 1;
        }
        if let State::Failed(error) = self.state {
            return Err(error);
        }
        Ok(Decoded {
            consumed: pos,
            data: pos..pos,
            done: self.is_done(),
        })
    }

    fn take_data(&mut self, input: &[u8], start: usize) -> Decoded {
        let available = (input.len() - start) as u64;
        let take = self.size.min(available);
        self.size -= take;
        if self.size == 0 {
            self.state = State::DataCr;
        }
        // `take` <= `available`, which came from a usize.
        let end = start + take as usize;
        Decoded {
            consumed: end,
            data: start..end,
            done: false,
        }
    }

    /// Advances over one framing byte.
    fn step(&mut self, byte: u8) -> Result<(), ChunkedError> {
        self.state = match self.state {
            State::Size => self.size_byte(byte)?,
            State::SizeBws => match byte {
                b' ' | b'\t' => self.line_byte(State::SizeBws)?,
                b';' => self.line_byte(State::Extension(Ext::NameStart))?,
                _ => return Err(ChunkedError::InvalidSize),
            },
            State::Extension(at) => match extension_step(at, byte) {
                Some(State::SizeLf) => State::SizeLf,
                Some(next) => self.line_byte(next)?,
                None => return Err(ChunkedError::InvalidExtension),
            },
            State::SizeLf => self.end_size_line(byte)?,
            State::DataCr => expect(byte, b'\r', State::DataLf, ChunkedError::MissingDataCrlf)?,
            State::DataLf => {
                self.line_len = 0;
                expect(byte, b'\n', State::Size, ChunkedError::MissingDataCrlf)?
            }
            State::TrailerLineStart => match byte {
                b'\r' => State::FinalLf,
                b'\n' => return Err(ChunkedError::InvalidLineEnding),
                _ if is_tchar(byte) => self.trailer_byte(State::TrailerName)?,
                _ => return Err(ChunkedError::InvalidTrailer),
            },
            State::TrailerName => match byte {
                b':' => self.trailer_byte(State::TrailerValue)?,
                _ if is_tchar(byte) => self.trailer_byte(State::TrailerName)?,
                _ => return Err(ChunkedError::InvalidTrailer),
            },
            State::TrailerValue => match byte {
                b'\r' => self.trailer_byte(State::TrailerLf)?,
                _ if is_field_value_byte(byte) => self.trailer_byte(State::TrailerValue)?,
                _ => return Err(ChunkedError::InvalidTrailer),
            },
            State::TrailerLf => {
                let next = expect(
                    byte,
                    b'\n',
                    State::TrailerLineStart,
                    ChunkedError::InvalidLineEnding,
                )?;
                self.trailer_byte(next)?
            }
            State::FinalLf => expect(byte, b'\n', State::Done, ChunkedError::InvalidLineEnding)?,
            // `decode` never steps in these states.
            State::Data | State::Done | State::Failed(_) => self.state,
        };
        Ok(())
    }

    fn size_byte(&mut self, byte: u8) -> Result<State, ChunkedError> {
        let Some(digit) = hex_value(byte) else {
            if self.line_len == 0 {
                return Err(ChunkedError::InvalidSize);
            }
            return match byte {
                b';' => self.line_byte(State::Extension(Ext::NameStart)),
                b' ' | b'\t' => self.line_byte(State::SizeBws),
                b'\r' => Ok(State::SizeLf),
                b'\n' => Err(ChunkedError::InvalidLineEnding),
                _ => Err(ChunkedError::InvalidSize),
            };
        };
        self.size = self
            .size
            .checked_mul(16)
            .and_then(|size| size.checked_add(u64::from(digit)))
            .ok_or(ChunkedError::SizeOverflow)?;
        self.line_byte(State::Size)
    }

    fn end_size_line(&mut self, byte: u8) -> Result<State, ChunkedError> {
        if byte != b'\n' {
            return Err(ChunkedError::InvalidLineEnding);
        }
        Ok(if self.size == 0 {
            State::TrailerLineStart
        } else {
            State::Data
        })
    }

    /// Counts one more byte of the chunk-size line.
    fn line_byte(&mut self, next: State) -> Result<State, ChunkedError> {
        self.line_len += 1;
        if self.line_len > MAX_CHUNK_LINE {
            return Err(ChunkedError::SizeLineTooLong);
        }
        Ok(next)
    }

    /// Counts one more byte of the trailer section.
    fn trailer_byte(&mut self, next: State) -> Result<State, ChunkedError> {
        self.trailer_len += 1;
        if self.trailer_len > MAX_TRAILER_BYTES {
            return Err(ChunkedError::TrailersTooLarge);
        }
        Ok(next)
    }
}

/// The state after `byte` inside chunk extensions (RFC 9112 7.1.1):
///
/// ```text
/// chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
/// chunk-ext-name = token
/// chunk-ext-val  = token / quoted-string
/// ```
///
/// `SizeLf` when the line ends (CR) where the grammar allows it; `None` when `byte` breaks
/// the grammar.
fn extension_step(at: Ext, byte: u8) -> Option<State> {
    let bws = byte == b' ' || byte == b'\t';
    let next = match at {
        Ext::NameStart if bws => Ext::NameStart,
        Ext::NameStart | Ext::Name if is_tchar(byte) => Ext::Name,
        Ext::Name | Ext::NameBws if bws => Ext::NameBws,
        Ext::Name | Ext::NameBws if byte == b'=' => Ext::ValueStart,
        Ext::Name | Ext::NameBws if byte == b';' => Ext::NameStart,
        Ext::ValueStart if bws => Ext::ValueStart,
        Ext::ValueStart if byte == b'"' => Ext::Quoted,
        Ext::ValueStart | Ext::Token if is_tchar(byte) => Ext::Token,
        Ext::Quoted if byte == b'"' => Ext::QuotedEnd,
        Ext::Quoted if byte == b'\\' => Ext::QuotedPair,
        Ext::Quoted | Ext::QuotedPair if is_field_value_byte(byte) => Ext::Quoted,
        Ext::Token | Ext::QuotedEnd | Ext::ValueBws if bws => Ext::ValueBws,
        Ext::Token | Ext::QuotedEnd | Ext::ValueBws if byte == b';' => Ext::NameStart,
        Ext::Name | Ext::Token | Ext::QuotedEnd if byte == b'\r' => return Some(State::SizeLf),
        _ => return None,
    };
    Some(State::Extension(next))
}

fn expect(byte: u8, wanted: u8, next: State, error: ChunkedError) -> Result<State, ChunkedError> {
    if byte == wanted { Ok(next) } else { Err(error) }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// HTAB, SP, VCHAR and obs-text: what a field value (or chunk extension) may hold.
fn is_field_value_byte(byte: u8) -> bool {
    byte == b'\t' || (b' '..=b'~').contains(&byte) || byte >= 0x80
}

#[cfg(test)]
mod tests;
