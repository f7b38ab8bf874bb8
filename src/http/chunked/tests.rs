use super::*;

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    data: Vec<u8>,
    consumed: usize,
    done: bool,
    error: Option<ChunkedError>,
}

/// Feeds `input` as it would arrive in pieces of `piece` bytes, decoding what is unconsumed.
fn feed(input: &[u8], piece: usize) -> Outcome {
    feed_at(input, (piece..input.len()).step_by(piece.max(1)))
}

/// Feeds `input` with arrival boundaries at `cuts` (ascending).
fn feed_at(input: &[u8], cuts: impl IntoIterator<Item = usize>) -> Outcome {
    let mut decoder = ChunkedDecoder::new();
    let mut outcome = Outcome {
        data: Vec::new(),
        consumed: 0,
        done: false,
        error: None,
    };
    for arrived in cuts.into_iter().chain([input.len()]) {
        while outcome.consumed < arrived {
            let available = &input[outcome.consumed..arrived];
            match decoder.decode(available) {
                Ok(decoded) => {
                    assert!(decoded.consumed > 0 || decoded.done, "no progress");
                    assert!(decoded.data.end <= decoded.consumed);
                    outcome.data.extend_from_slice(&available[decoded.data]);
                    outcome.consumed += decoded.consumed;
                    if decoded.done {
                        outcome.done = true;
                        return outcome;
                    }
                }
                Err(error) => {
                    // Framing bytes consumed before the error within a call are not
                    // reported, so only the error and the payload before it are comparable.
                    outcome.consumed = 0;
                    outcome.error = Some(error);
                    return outcome;
                }
            }
        }
    }
    outcome
}

/// Decodes `input` whole, then checks every two-piece split and byte-at-a-time agree.
fn decode_every_way(input: &[u8]) -> Outcome {
    let whole = feed(input, input.len().max(1));
    for cut in 0..=input.len() {
        assert_eq!(feed_at(input, [cut]), whole, "split at {cut}");
    }
    assert_eq!(feed(input, 1), whole, "byte at a time");
    whole
}

fn decoded(input: &[u8]) -> Vec<u8> {
    let outcome = decode_every_way(input);
    assert_eq!(outcome.error, None, "{}", input.escape_ascii());
    assert!(outcome.done, "{}", input.escape_ascii());
    assert_eq!(outcome.consumed, input.len());
    outcome.data
}

fn rejected(input: &[u8]) -> ChunkedError {
    let outcome = decode_every_way(input);
    assert!(!outcome.done, "{}", input.escape_ascii());
    outcome.error.expect("body must be rejected")
}

#[test]
fn decodes_chunks() {
    assert_eq!(
        decoded(b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"),
        b"Wikipedia"
    );
    assert_eq!(decoded(b"0\r\n\r\n"), b"");
    assert_eq!(
        decoded(b"A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n").len(),
        20
    );
    assert_eq!(decoded(b"0001\r\nx\r\n000\r\n\r\n"), b"x");
}

#[test]
fn stops_at_the_end_of_the_body() {
    let input = b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    let body_len = input.len() - b"GET / HTTP/1.1\r\n".len();
    let outcome = decode_every_way(input);
    assert!(outcome.done);
    assert_eq!(outcome.consumed, body_len);
    assert_eq!(outcome.data, b"abc");
    let mut decoder = ChunkedDecoder::new();
    let first = decoder.decode(input).unwrap();
    assert_eq!(first.data, 3..6);
    let rest = decoder.decode(&input[first.consumed..]).unwrap();
    assert!(rest.done && decoder.is_done());
    assert_eq!(first.consumed + rest.consumed, body_len);
    let after = decoder.decode(b"more").unwrap();
    assert_eq!(
        after,
        Decoded {
            consumed: 0,
            data: 0..0,
            done: true
        }
    );
}

#[test]
fn incomplete_body_is_not_done() {
    let input = b"4\r\nWiki\r\n0\r\n\r\n";
    for end in 0..input.len() {
        let outcome = decode_every_way(&input[..end]);
        assert_eq!(outcome.error, None);
        assert!(!outcome.done, "prefix {end}");
        assert_eq!(outcome.consumed, end);
    }
}

#[test]
fn chunk_extensions() {
    assert_eq!(
        decoded(b"4;name=value;q=\"a b\"\r\nWiki\r\n0;last\r\n\r\n"),
        b"Wiki"
    );
    assert_eq!(
        decoded(b"4;q=\"a\\\"b;c\\\\\";t=!#$%&'*+-.^_`|~09az\r\nWiki\r\n0\r\n\r\n"),
        b"Wiki"
    );
    for bad in [
        &b"4;a\x01\r\nWiki\r\n0\r\n\r\n"[..],
        b"4;a\nWiki\r\n0\r\n\r\n",
        b"4;a\0\r\n",
        b"4;\r\n",
        b"4;;a\r\n",
        b"4;=v\r\n",
        b"4;a=\r\n",
        b"4;a==v\r\n",
        b"4;a b\r\n",
        b"4;a=b c\r\n",
        b"4;a=b\"c\"\r\n",
        b"4;a=\"b\"c\r\n",
        b"4;a=\"b\r\n",
        b"4;a=\"b\nc\"\r\n",
        b"4;a=\"b\\\r\n\"\r\n",
        b"4;a=\"\x7f\"\r\n",
        b"4;a(b)\r\n",
    ] {
        assert_eq!(
            rejected(bad),
            ChunkedError::InvalidExtension,
            "{}",
            bad.escape_ascii()
        );
    }
}

/// RFC 9112 7.1.1 (RFC 7230 erratum 4667): `BWS` before `;`, after it and around `=`.
#[test]
fn chunk_extensions_with_whitespace() {
    for line in [
        &b"4 ;a"[..],
        b"4\t;a",
        b"4 \t ;a",
        b"4; a",
        b"4;\ta",
        b"4;a =b",
        b"4;a= b",
        b"4;a \t=\t \"b c\"",
        b"4;a=b ;c",
        b"4;a=\"b\" ;c = d",
        b"4 ; a = b ; c",
    ] {
        let body = [line, b"\r\nWiki\r\n0 ; ieof\r\n\r\n"].concat();
        assert_eq!(decoded(&body), b"Wiki", "{}", line.escape_ascii());
    }
    // Whitespace nowhere else: not before the size, inside it, or before the CRLF.
    for (bad, error) in [
        (&b" 4\r\n"[..], ChunkedError::InvalidSize),
        (b"4 4\r\n", ChunkedError::InvalidSize),
        (b"4 \r\n", ChunkedError::InvalidSize),
        (b"4\t\r\n", ChunkedError::InvalidSize),
        (b"4 \n", ChunkedError::InvalidSize),
        (b"4 a\r\n", ChunkedError::InvalidSize),
        (b"4;a \r\n", ChunkedError::InvalidExtension),
        (b"4;a=b \r\n", ChunkedError::InvalidExtension),
        (b"4;a=\"b\" \r\n", ChunkedError::InvalidExtension),
        (b"4; \r\n", ChunkedError::InvalidExtension),
        (b"4;a= \r\n", ChunkedError::InvalidExtension),
        (b"4 ;a\n", ChunkedError::InvalidExtension),
        (b"4 ;a \n", ChunkedError::InvalidExtension),
    ] {
        assert_eq!(rejected(bad), error, "{}", bad.escape_ascii());
    }
}

/// Whitespace counts towards the size line's limit like any other byte of it.
#[test]
fn whitespace_counts_towards_the_size_line_limit() {
    let line = |spaces: usize| {
        let mut input = b"1".to_vec();
        input.resize(1 + spaces, b' ');
        input.extend_from_slice(b";x\r\nA\r\n0\r\n\r\n");
        input
    };
    let fits = MAX_CHUNK_LINE - b"1;x".len();
    assert_eq!(feed(&line(fits), 7).data, b"A");
    assert_eq!(
        feed(&line(fits + 1), 7).error,
        Some(ChunkedError::SizeLineTooLong)
    );
    assert_eq!(
        feed(&line(MAX_CHUNK_LINE), 1).error,
        Some(ChunkedError::SizeLineTooLong)
    );
}

#[test]
fn size_line_limit() {
    let line = |len: usize| {
        let mut input = b"1;".to_vec();
        input.resize(len, b'x');
        input.extend_from_slice(b"\r\nA\r\n0\r\n\r\n");
        input
    };
    assert_eq!(feed(&line(MAX_CHUNK_LINE), 7).error, None);
    assert_eq!(feed(&line(MAX_CHUNK_LINE), 7).data, b"A");
    assert_eq!(
        feed(&line(MAX_CHUNK_LINE + 1), 7).error,
        Some(ChunkedError::SizeLineTooLong)
    );
    let mut zeros = vec![b'0'; MAX_CHUNK_LINE + 1];
    zeros.extend_from_slice(b"\r\n\r\n");
    assert_eq!(feed(&zeros, 1).error, Some(ChunkedError::SizeLineTooLong));
}

#[test]
fn invalid_sizes() {
    for input in [
        &b"\r\n"[..],
        b" 4\r\n",
        b"4 \r\n",
        b"+4\r\n",
        b"-4\r\n",
        b"0x4\r\n",
        b"g\r\n",
        b";a\r\n",
        b"4\t\r\n",
    ] {
        assert_eq!(
            rejected(input),
            ChunkedError::InvalidSize,
            "{}",
            input.escape_ascii()
        );
    }
}

#[test]
fn size_overflow() {
    let outcome = decode_every_way(b"ffffffffffffffff\r\n");
    assert_eq!((outcome.error, outcome.done), (None, false));
    assert_eq!(
        rejected(b"10000000000000000\r\n"),
        ChunkedError::SizeOverflow
    );
    assert_eq!(
        rejected(b"00000000000000000ffffffffffffffff0\r\n"),
        ChunkedError::SizeOverflow
    );
}

#[test]
fn line_endings_must_be_crlf() {
    assert_eq!(
        rejected(b"4\nWiki\r\n0\r\n\r\n"),
        ChunkedError::InvalidLineEnding
    );
    assert_eq!(
        rejected(b"4\rWiki\r\n0\r\n\r\n"),
        ChunkedError::InvalidLineEnding
    );
    assert_eq!(
        rejected(b"4\r\nWiki\n0\r\n\r\n"),
        ChunkedError::MissingDataCrlf
    );
    assert_eq!(
        rejected(b"4\r\nWiki\rX0\r\n\r\n"),
        ChunkedError::MissingDataCrlf
    );
    assert_eq!(
        rejected(b"4\r\nWikiX\r\n0\r\n\r\n"),
        ChunkedError::MissingDataCrlf
    );
    assert_eq!(rejected(b"4;a\r\r\n"), ChunkedError::InvalidLineEnding);
    assert_eq!(rejected(b"0\r\n\n"), ChunkedError::InvalidLineEnding);
    assert_eq!(rejected(b"0\r\n\rX"), ChunkedError::InvalidLineEnding);
    assert_eq!(rejected(b"0\r\nX: y\rZ"), ChunkedError::InvalidLineEnding);
    assert_eq!(rejected(b"0\r\nX: y\n\r\n"), ChunkedError::InvalidTrailer);
}

#[test]
fn trailers() {
    assert_eq!(
        decoded(b"1\r\nA\r\n0\r\nX-Sum: abc\r\nX-Two:\t2 \r\n\r\n"),
        b"A"
    );
    assert_eq!(decoded(b"0\r\nEmpty:\r\n\r\n"), b"");
    for bad in [
        &b"0\r\n folded\r\n\r\n"[..],
        b"0\r\nX : v\r\n\r\n",
        b"0\r\n: v\r\n\r\n",
        b"0\r\nNoColon\r\n\r\n",
        b"0\r\nX: a\0b\r\n\r\n",
        b"0\r\nX: a\x7f\r\n\r\n",
    ] {
        assert_eq!(
            rejected(bad),
            ChunkedError::InvalidTrailer,
            "{}",
            bad.escape_ascii()
        );
    }
}

#[test]
fn trailer_size_limit() {
    let trailers = |section_len: usize| {
        let mut input = b"0\r\nX: ".to_vec();
        input.resize(3 + section_len - 2, b'v');
        input.extend_from_slice(b"\r\n\r\n");
        input
    };
    let fits = feed(&trailers(MAX_TRAILER_BYTES), 100);
    assert_eq!((fits.error, fits.done), (None, true));
    assert_eq!(
        feed(&trailers(MAX_TRAILER_BYTES + 1), 100).error,
        Some(ChunkedError::TrailersTooLarge)
    );
}

#[test]
fn errors_are_sticky() {
    let mut decoder = ChunkedDecoder::new();
    assert_eq!(decoder.decode(b"z"), Err(ChunkedError::InvalidSize));
    assert_eq!(decoder.decode(b"0\r\n\r\n"), Err(ChunkedError::InvalidSize));
    assert_eq!(decoder.decode(b""), Err(ChunkedError::InvalidSize));
    assert!(!decoder.is_done());
}

#[test]
fn large_chunk_streams_in_runs() {
    let mut decoder = ChunkedDecoder::new();
    let head = decoder.decode(b"100000\r\n").unwrap();
    assert_eq!((head.consumed, head.data.len()), (8, 0));
    let payload = vec![7u8; 0x10_0000];
    let mut sent = 0;
    for piece in payload.chunks(65536) {
        let run = decoder.decode(piece).unwrap();
        assert_eq!(
            (run.consumed, run.data.clone()),
            (piece.len(), 0..piece.len())
        );
        sent += run.consumed;
    }
    assert_eq!(sent, payload.len());
    let tail = decoder.decode(b"\r\n0\r\n\r\n").unwrap();
    assert!(tail.done && tail.data.is_empty());
}
