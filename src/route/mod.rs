//! Routing: which route of a listener's table takes a request, and what the route does.
//!
//! Pure code, no I/O. The configuration (`[routes.NAME]`, `crate::config::RouteTableConfig`)
//! is compiled once per configuration into a [`RouteTable`]: immutable, shared by every
//! listener naming it and by every worker (behind an `Arc`), and replaced whole, never
//! edited, when a new configuration is loaded. [`RouteTable::find`] takes the borrowed parts
//! of a parsed request head and a caller-owned [`Scratch`], and allocates nothing.
//!
//! - Conditions ([`conditions`]): host (exact or `*.suffix`, any depth, port ignored,
//!   case-insensitive), path (exact or segment prefix, on the normalised path), methods, one
//!   header's presence or value. Every condition set must hold.
//! - Precedence: the first route in config order whose conditions hold. No match: 404.
//! - Normalisation ([`normalize`]): unreserved percent-encodings decoded, dot segments
//!   removed, empty segments collapsed; `%2F` stays data; a path above the root or with a
//!   broken `%` is refused (400).
//! - Actions ([`action`]): proxy (optionally rewriting the path prefix and editing headers),
//!   redirect, or a fixed response.

pub mod action;
pub mod conditions;
mod host;
pub mod normalize;
mod table;

use std::sync::Arc;

use crate::config::Config;

pub use host::MAX_HOST_LEN;
pub use normalize::PathError;
pub use table::{Route, RouteRequest, RouteTable, Scratch};

/// Each listener's compiled table, in listener order: a listener naming a route table gets
/// that table, shared with every other listener naming it (compiled once); a listener with
/// only `upstream = "NAME"` gets its own catch-all table.
pub fn listener_tables(config: &Config) -> Vec<Arc<RouteTable>> {
    let named: Vec<Arc<RouteTable>> = config
        .routes
        .iter()
        .map(|table| Arc::new(RouteTable::compile(table)))
        .collect();
    config
        .listeners
        .iter()
        .map(|listener| {
            let shared = listener
                .routes
                .as_deref()
                .and_then(|name| named.iter().find(|t| t.name() == Some(name)));
            match shared {
                Some(table) => table.clone(),
                None => Arc::new(RouteTable::catch_all(&listener.upstream)),
            }
        })
        .collect()
}
