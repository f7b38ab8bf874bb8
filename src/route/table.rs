//! A route list compiled for matching: the first route in config order whose conditions
//! all hold, found without allocating and without trying every route.
//!
//! Routes are filed by host: exact hosts in one hash map, `*.SUFFIX` wildcards in another
//! (keyed by the suffix), and routes without a host in a third bucket. A route naming
//! several hosts is filed under each. Within a bucket, routes are filed by path in a trie of
//! path segments: a route without a path at the bucket's top, an exact path at its node, a
//! prefix at its node as "this node and below" (`/api`) or "strictly below" (`/api/`).
//!
//! A request looks up its exact host, the wildcard suffixes its host has (at most as many
//! labels as the longest wildcard suffix), and the any-host bucket; in each, it walks its
//! normalised path down the trie, one segment per step. Every list on the way holds route
//! indices in config order, so a list is scanned only until the first route whose method
//! and header conditions also hold, or until an index no smaller than the best found so far:
//! the smallest index across all of them wins. Precedence is config order, never
//! specificity: an earlier catch-all beats a later exact host.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::host::{MAX_HOST_LEN, host_key, wildcard_suffixes};
use super::normalize::{PathError, normalize_path, target_path};
use crate::config::{
    HeaderCondition, HostPattern, PathPattern, RouteAction, RouteConfig, RouteMatch,
    RouteTableConfig,
};

/// One route of a compiled table.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Position in its table, from 0: `routes.NAME.route[index]`.
    pub index: usize,
    pub conditions: RouteMatch,
    pub action: RouteAction,
}

/// What routing reads of a request; every field borrows the parsed head.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'r> {
    pub method: &'r str,
    /// The effective authority (`RequestHead::host`), port included; empty when none.
    pub host: &'r [u8],
    /// The target to forward (`RequestHead::path`): `path?query`, or `*`.
    pub target: &'r str,
    pub headers: &'r [httparse::Header<'r>],
}

impl<'r> RouteRequest<'r> {
    pub fn of(head: &crate::http::RequestHead<'r, 'r>) -> Self {
        Self {
            method: head.method,
            host: head.host,
            target: head.path,
            headers: head.headers,
        }
    }
}

/// Per-connection (or per-worker) buffers `find` writes into, so that it never allocates:
/// the normalised path, which is also what a route forwards, and the lower-cased host.
pub struct Scratch {
    path: Vec<u8>,
    /// Whether `path` holds the request's normalised path (not for `*`, nor for a table
    /// that does not normalise).
    has_path: bool,
    host: [u8; MAX_HOST_LEN],
}

impl Scratch {
    /// `max_path`: the longest path expected (`limits.max_request_line`); a longer one
    /// makes the buffer grow once.
    pub fn new(max_path: usize) -> Self {
        Self {
            path: Vec::with_capacity(max_path),
            has_path: false,
            host: [0; MAX_HOST_LEN],
        }
    }

    /// The normalised path of the last request `find` was given, without the query: what
    /// a proxied request is forwarded with (after the route's rewrite), with the query as
    /// received. `None`: forward the target as received.
    pub fn normalized_path(&self) -> Option<&[u8]> {
        self.has_path.then_some(&self.path[..])
    }
}

/// A compiled route table: immutable, `Send + Sync`, shared by every listener that names it
/// (behind an `Arc`, replaced whole when the configuration changes).
#[derive(Debug)]
pub struct RouteTable {
    /// `None` for a listener's implicit table (`upstream = "NAME"` without `routes`).
    name: Option<String>,
    routes: Box<[Route]>,
    /// Per route, the conditions checked on each candidate: methods and header.
    filters: Box<[Filter]>,
    exact_hosts: HashMap<Box<[u8]>, Bucket, BuildBytesHasher>,
    /// By suffix: `*.example.com` under `example.com`.
    wildcard_hosts: HashMap<Box<[u8]>, Bucket, BuildBytesHasher>,
    /// The most labels a wildcard suffix has: no longer suffix is looked up.
    wildcard_labels: usize,
    any_host: Bucket,
    /// Whether requests' paths are normalised (and refused when they cannot be). Implicit
    /// tables leave the target alone, as before routing existed.
    normalizes: bool,
}

impl RouteTable {
    pub fn compile(config: &RouteTableConfig) -> Self {
        Self::build(Some(config.name.clone()), &config.routes, true)
    }

    /// What a listener with `upstream = "NAME"` and no route table does: one route, no
    /// conditions, the request forwarded unchanged.
    pub fn catch_all(upstream: &str) -> Self {
        let route = RouteConfig {
            conditions: RouteMatch::default(),
            action: RouteAction::Proxy(crate::config::ProxyAction {
                upstream: upstream.to_owned(),
                ..Default::default()
            }),
        };
        Self::build(None, &[route], false)
    }

    fn build(name: Option<String>, routes: &[RouteConfig], normalizes: bool) -> Self {
        let mut table = Self {
            name,
            routes: Box::default(),
            filters: routes.iter().map(|r| Filter::new(&r.conditions)).collect(),
            exact_hosts: HashMap::default(),
            wildcard_hosts: HashMap::default(),
            wildcard_labels: 0,
            any_host: Bucket::default(),
            normalizes,
        };
        for (index, route) in routes.iter().enumerate() {
            table.file(index, &route.conditions);
        }
        table.routes = routes
            .iter()
            .enumerate()
            .map(|(index, route)| Route {
                index,
                conditions: route.conditions.clone(),
                action: route.action.clone(),
            })
            .collect();
        for bucket in table.buckets_mut() {
            bucket.sort_children();
        }
        table
    }

    fn file(&mut self, index: usize, conditions: &RouteMatch) {
        let id = route_id(index);
        let path = conditions.path.as_ref();
        if conditions.hosts.is_empty() {
            self.any_host.insert(id, path);
        }
        for host in &conditions.hosts {
            let (map, key) = match host {
                HostPattern::Exact(name) => (&mut self.exact_hosts, name),
                HostPattern::Wildcard(suffix) => {
                    let labels = suffix.split('.').count();
                    self.wildcard_labels = self.wildcard_labels.max(labels);
                    (&mut self.wildcard_hosts, suffix)
                }
            };
            let key: Box<[u8]> = key.as_bytes().into();
            map.entry(key).or_default().insert(id, path);
        }
    }

    fn buckets_mut(&mut self) -> impl Iterator<Item = &mut Bucket> {
        self.exact_hosts
            .values_mut()
            .chain(self.wildcard_hosts.values_mut())
            .chain(std::iter::once(&mut self.any_host))
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The first route, in config order, that takes `request`; `Ok(None)`: none does (the
    /// proxy answers 404). `Err`: the path cannot be normalised (the proxy answers 400).
    pub fn find<'t>(
        &'t self,
        request: &RouteRequest<'_>,
        scratch: &mut Scratch,
    ) -> Result<Option<&'t Route>, PathError> {
        scratch.has_path = false;
        let raw_path = target_path(request.target.as_bytes());
        if let (Some(raw), true) = (raw_path, self.normalizes) {
            normalize_path(raw, &mut scratch.path)?;
            scratch.has_path = true;
        }
        // An implicit table has no path condition: it reads no path.
        let path = scratch.has_path.then_some(&scratch.path[..]);
        let host = host_key(request.host, &mut scratch.host);
        let search = Search {
            filters: &self.filters,
            method: request.method.as_bytes(),
            headers: request.headers,
            path,
        };
        let mut best = NO_ROUTE;
        if let Some(host) = host {
            if let Some(bucket) = self.exact_hosts.get(host) {
                search.bucket(bucket, &mut best);
            }
            for suffix in wildcard_suffixes(host, self.wildcard_labels) {
                if let Some(bucket) = self.wildcard_hosts.get(suffix) {
                    search.bucket(bucket, &mut best);
                }
            }
        }
        search.bucket(&self.any_host, &mut best);
        Ok(self.routes.get(best as usize))
    }

    /// The same answer as `find`, by trying every route in order: the definition `find`
    /// must agree with.
    #[cfg(test)]
    pub(crate) fn find_by_scan(&self, request: &RouteRequest<'_>) -> Option<&Route> {
        let mut path = Vec::new();
        let raw = target_path(request.target.as_bytes());
        let path = match raw {
            Some(raw) => normalize_path(raw, &mut path).ok().map(|()| &path[..]),
            None => None,
        };
        let mut buf = [0; MAX_HOST_LEN];
        let host = host_key(request.host, &mut buf);
        self.routes.iter().find(|route| {
            super::conditions::route_matches(
                &route.conditions,
                request.method,
                host,
                path,
                request.headers,
            )
        })
    }
}

const NO_ROUTE: u32 = u32::MAX;

/// Route indices are `u32` in the lists (a table is far smaller than that).
fn route_id(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(NO_ROUTE - 1)
}

/// A route's conditions that the host and path lookup do not decide.
#[derive(Debug)]
struct Filter {
    methods: Box<[Box<[u8]>]>,
    header: Option<HeaderCondition>,
}

impl Filter {
    fn new(conditions: &RouteMatch) -> Self {
        Self {
            methods: conditions
                .methods
                .iter()
                .map(|m| m.as_bytes().into())
                .collect(),
            header: conditions.header.clone(),
        }
    }

    fn passes(&self, method: &[u8], headers: &[httparse::Header<'_>]) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| **m == *method))
            && self.header.as_ref().is_none_or(|h| h.matches(headers))
    }
}

/// The routes filed under one host (or under none), by path.
#[derive(Debug, Default)]
struct Bucket {
    /// Routes without a path condition: they take `*` too.
    any_path: Vec<u32>,
    /// `nodes[0]` is the root: the path before its first segment.
    nodes: Vec<Node>,
}

#[derive(Debug, Default)]
struct Node {
    /// By segment, sorted for binary search.
    children: Vec<(Box<[u8]>, u32)>,
    /// `path` equal to this node's path.
    exact: Vec<u32>,
    /// `path_prefix` equal to this node's path (`/api`): this node and everything below.
    prefix: Vec<u32>,
    /// `path_prefix` equal to this node's path and a `/` (`/api/`): everything below.
    below: Vec<u32>,
}

impl Bucket {
    fn insert(&mut self, id: u32, path: Option<&PathPattern>) {
        let Some(pattern) = path else {
            self.any_path.push(id);
            return;
        };
        let (text, exact) = match pattern {
            PathPattern::Exact(text) => (text, true),
            PathPattern::Prefix(text) => (text, false),
        };
        // `/api/` as a prefix is "below /api"; as an exact path it is the node `/api` + "".
        let slash_prefix = !exact && text.ends_with('/');
        let text = if slash_prefix {
            &text[..text.len() - 1]
        } else {
            text.as_str()
        };
        let node = self.node_for(text);
        let list = match (exact, slash_prefix) {
            (true, _) => &mut self.nodes[node].exact,
            (false, true) => &mut self.nodes[node].below,
            (false, false) => &mut self.nodes[node].prefix,
        };
        list.push(id);
    }

    /// The node of `path` (`""` is the root), created with its ancestors as needed.
    fn node_for(&mut self, path: &str) -> usize {
        if self.nodes.is_empty() {
            self.nodes.push(Node::default());
        }
        let mut node = 0;
        let Some(body) = path.strip_prefix('/') else {
            return node;
        };
        for segment in body.split('/') {
            let existing = self.nodes[node]
                .children
                .iter()
                .find(|(s, _)| **s == *segment.as_bytes());
            node = match existing {
                Some(&(_, child)) => child as usize,
                None => {
                    let child = self.nodes.len();
                    self.nodes.push(Node::default());
                    self.nodes[node]
                        .children
                        .push((segment.as_bytes().into(), child as u32));
                    child
                }
            };
        }
        node
    }

    fn sort_children(&mut self) {
        for node in &mut self.nodes {
            node.children.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
    }
}

/// One request's walk through the buckets it may match in.
struct Search<'s> {
    filters: &'s [Filter],
    method: &'s [u8],
    headers: &'s [httparse::Header<'s>],
    path: Option<&'s [u8]>,
}

impl Search<'_> {
    fn bucket(&self, bucket: &Bucket, best: &mut u32) {
        self.scan(&bucket.any_path, best);
        let (Some(path), Some(root)) = (self.path, bucket.nodes.first()) else {
            return;
        };
        let mut node = root;
        let mut segments = path[1..].split(|&b| b == b'/');
        loop {
            let Some(segment) = segments.next() else {
                // Every segment consumed: this node is the path itself.
                self.scan(&node.prefix, best);
                self.scan(&node.exact, best);
                return;
            };
            // At least one segment follows this node: its prefix routes of both kinds hold.
            self.scan(&node.prefix, best);
            self.scan(&node.below, best);
            let child = node
                .children
                .binary_search_by(|(s, _)| (**s).cmp(segment))
                .ok();
            let Some(child) = child else {
                return;
            };
            node = &bucket.nodes[node.children[child].1 as usize];
        }
    }

    /// The first route of `list` (ascending) that is better than `best` and whose method
    /// and header conditions hold becomes the best.
    fn scan(&self, list: &[u32], best: &mut u32) {
        for &id in list {
            if id >= *best {
                return;
            }
            if self.filters[id as usize].passes(self.method, self.headers) {
                *best = id;
                return;
            }
        }
    }
}

/// A fast hash for the host maps: their keys are fixed when the table is compiled, so a
/// client choosing the host it looks up can make one lookup no slower than the worst key
/// already is; it cannot grow a chain. Fx-style multiply-rotate per word, then the
/// splitmix64 finaliser so that the low bits the table indexes by depend on every byte.
#[derive(Default, Clone, Copy)]
struct BytesHasher(u64);

type BuildBytesHasher = BuildHasherDefault<BytesHasher>;

impl BytesHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for BytesHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            let mut word = [0; 8];
            word[..tail.len()].copy_from_slice(tail);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests;
