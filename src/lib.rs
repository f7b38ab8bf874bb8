//! ringproxy: a thread-per-core io_uring HTTP/1.1 reverse proxy and load balancer.
//!
//! Reading order follows a request: `server` starts one `worker` per core; each accepts on
//! its own listener (`listen`) and runs `proxy::serve_connection` per client; `proxy` parses
//! with `http` (pure, no I/O), finds the request's route with `route` (pure: tables compiled
//! at load) and reaches backends through `upstream` (balancing, health, pools). Everything a
//! config decides comes in a `generation`, which a reload replaces while requests run.
//! Workers count into `metrics` (per-worker blocks, no contention); the `admin` thread
//! serves them. On a TLS listener, `tls` does the handshake first and hands `proxy` the
//! decrypted stream; to a group with TLS to its backends, `upstream` connects through the
//! same TLS stream, client side. `top` is the `ringproxy top` client of the admin listener.
//! `upgrade` hands the listening sockets to a new binary (SIGUSR2), which tells systemd
//! (`systemd`) that it took over.
//! `access_log` writes a line per request through a writer thread; `log` is the process's
//! own log on stderr.

pub mod access_log;
pub mod admin;
pub mod clock;
pub mod config;
pub mod conns;
pub mod fdlimit;
pub mod generation;
pub mod http;
pub mod listen;
pub mod log;
pub mod log_text;
pub mod metrics;
pub mod pidfile;
pub mod plural;
pub mod proxy;
pub mod route;
pub mod server;
pub mod systemd;
pub mod tls;
pub mod top;
pub mod upgrade;
pub mod upstream;
pub mod worker;
