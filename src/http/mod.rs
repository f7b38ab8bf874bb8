//! HTTP/1.1 parsing, framing and head rewriting: pure code, no I/O.
