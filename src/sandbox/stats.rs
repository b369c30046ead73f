//! Request counters (total, per status, per kind of path), kept by a middleware so tests and
//! benchmarks can assert how many calls a run made (e.g. "a no-change run costs one request").

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;

use super::App;

/// Counts of the requests the sandbox answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RequestStats {
    pub total: u64,
    /// Per HTTP status code.
    pub by_status: BTreeMap<u16, u64>,
    /// Per kind of path: `token`, `admin`, `metadata` (any system's schema endpoints), `data`
    /// (the Dataverse Web API), or the other system's name (`business_central`, `deltek`,
    /// `pipedrive`, `looker`) for its API.
    pub by_kind: BTreeMap<String, u64>,
}

impl RequestStats {
    /// Requests of one kind (see [`RequestStats::by_kind`]).
    pub fn kind(&self, kind: &str) -> u64 {
        self.by_kind.get(kind).copied().unwrap_or(0)
    }

    /// Requests answered with `status`.
    pub fn status(&self, status: u16) -> u64 {
        self.by_status.get(&status).copied().unwrap_or(0)
    }
}

fn kind_of(path: &str) -> &'static str {
    if path.starts_with("/entra/") || path.ends_with("/token") || path.contains("/oauth/") {
        "token"
    } else if path.starts_with("/_sandbox/") {
        "admin"
    } else if path.contains("/EntityDefinitions")
        || path.ends_with("/$metadata")
        || path.contains("/api/metadata/")
        || path.ends_with("Fields")
    {
        "metadata"
    } else if path.starts_with("/dataverse/") {
        "data"
    } else if path.starts_with("/bc/") {
        "business_central"
    } else if path.starts_with("/deltek/") {
        "deltek"
    } else if path.starts_with("/pipedrive/") {
        "pipedrive"
    } else if path.starts_with("/looker/") {
        "looker"
    } else {
        "other"
    }
}

/// Middleware: counts every answered request by status and kind.
pub async fn record(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let kind = kind_of(req.uri().path());
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let mut s = app.stats.lock().unwrap_or_else(PoisonError::into_inner);
    s.total += 1;
    *s.by_status.entry(status).or_default() += 1;
    *s.by_kind.entry(kind.to_string()).or_default() += 1;
    resp
}
