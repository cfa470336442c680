//! Every HTTP request the simulator answered, so tests and benchmarks can count API traffic.

use std::collections::BTreeMap;
use std::time::Duration;

/// One answered request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method, upper case (`GET`, `POST`, ...).
    pub method: String,
    /// The path as requested, without the query string (e.g. `/compute/v2.1/servers/3f..`).
    pub path: String,
    /// The route template that matched (e.g. `/compute/v2.1/servers/{id}`), or the raw path when
    /// no route matched. Counting by template groups requests on different ids together.
    pub route: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The status code returned (including injected faults).
    pub status: u16,
    /// The client's `User-Agent`, which tells who sent it (the driver names its stage there:
    /// `executor/0.1.0 (prepare)`).
    pub user_agent: Option<String>,
    /// The request's body when it was JSON, so tests can assert on what a client actually
    /// sent. Never kept for Keystone: its bodies carry passwords and secrets.
    pub body: Option<serde_json::Value>,
    /// The catalog endpoint the request came in on (`RegionTwo internal`), when the
    /// simulator runs one listener per endpoint ([`crate::SimOptions::two_regions`]).
    pub endpoint: Option<String>,
    /// Time since the simulator started.
    pub at: Duration,
}

/// A snapshot of the request log.
#[derive(Debug, Clone, Default)]
pub struct RequestLog {
    /// Requests in the order they were answered.
    pub records: Vec<RequestRecord>,
}

impl RequestLog {
    /// Number of requests per `(method, route template)`.
    pub fn counts(&self) -> BTreeMap<(String, String), usize> {
        let mut out = BTreeMap::new();
        for r in &self.records {
            *out.entry((r.method.clone(), r.route.clone())).or_insert(0) += 1;
        }
        out
    }

    /// Number of requests with this method whose route template equals `route`.
    pub fn count(&self, method: &str, route: &str) -> usize {
        self.records
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.route == route)
            .count()
    }

    /// Number of requests with this method whose path contains `fragment`.
    pub fn count_path_containing(&self, method: &str, fragment: &str) -> usize {
        self.records
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path.contains(fragment))
            .count()
    }

    /// The JSON bodies of the requests with this method whose route template equals `route`,
    /// in the order they were answered.
    pub fn bodies(&self, method: &str, route: &str) -> Vec<serde_json::Value> {
        self.records
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.route == route)
            .filter_map(|r| r.body.clone())
            .collect()
    }

    /// Total number of requests.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no request was answered yet.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}
