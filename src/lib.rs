//! ringproxy: a thread-per-core io_uring HTTP/1.1 reverse proxy and load balancer.
//!
//! Reading order follows a request: `worker` accepts on a per-core listener, `proxy` runs the
//! per-connection loop, `http` parses and frames (pure, no I/O), `upstream` picks a backend and
//! lends a pooled connection.

pub mod config;
pub mod http;
