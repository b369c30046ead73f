//! The Deltek Vantagepoint side of a sink: search a hub by field values, create (POST, arrays
//! in, arrays out) and update (PUT by key), every write with `startWorkflow=N` so our writes do
//! not fire the tenant's workflows (and their webhooks) back at us.
//!
//! Writes go through the one [`HttpClient`] as [`Idempotency::Unsafe`]: a POST is retried only
//! on 429/503 (the server provably did nothing). Any other failure without an answer is reported
//! as [`WriteError::Ambiguous`] and the caller searches before trying again (DESIGN.md §5, §9).

use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Map, Value};

use crate::error::Error;
use crate::http::{HttpClient, Idempotency};

/// A hub's key field (what the ledger stores as the target key).
pub fn key_field(hub: &str) -> &'static str {
    match hub {
        "firm" => "ClientID",
        "contact" => "ContactID",
        "employee" => "Employee",
        "opportunity" => "OpportunityID",
        _ => "WBS1",
    }
}

/// Why a write did not succeed, as the sink acts on it.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteError {
    /// The target answered and refused (400 validation, 403, 404): fails only this job; the
    /// reason is the body's `message: detail`.
    Refused { status: u16, reason: String },
    /// No usable answer (timeout, dropped connection, 5xx after the write may have applied):
    /// the next attempt must search before creating.
    Ambiguous { status: Option<u16>, reason: String },
}

impl WriteError {
    pub fn status(&self) -> Option<u16> {
        match self {
            WriteError::Refused { status, .. } => Some(*status),
            WriteError::Ambiguous { status, .. } => *status,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            WriteError::Refused { reason, .. } | WriteError::Ambiguous { reason, .. } => reason,
        }
    }
}

/// Vantagepoint's `{message, detail}` error body as one line (OAuth bodies and HTML fall back to
/// the raw excerpt).
fn reason_of(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(o)) => {
            let m = o.get("message").and_then(Value::as_str).unwrap_or_default();
            let d = o.get("detail").and_then(Value::as_str).unwrap_or_default();
            match (m.is_empty(), d.is_empty()) {
                (false, false) => format!("{m} {d}"),
                (false, true) => m.to_string(),
                _ => body.to_string(),
            }
        }
        _ => body.to_string(),
    }
}

fn classify(e: Error) -> WriteError {
    match e {
        Error::Http { status, body, .. } if (400..500).contains(&status) && status != 408 => {
            WriteError::Refused {
                status,
                reason: reason_of(&body),
            }
        }
        Error::Http { status, body, .. } => WriteError::Ambiguous {
            status: Some(status),
            reason: reason_of(&body),
        },
        other => WriteError::Ambiguous {
            status: None,
            reason: other.to_string(),
        },
    }
}

/// A Vantagepoint tenant as a sink target.
#[derive(Debug, Clone)]
pub struct DeltekTarget {
    http: HttpClient,
    /// `https://host/app/api` (no trailing slash).
    base: String,
}

impl DeltekTarget {
    pub fn new(http: HttpClient, base: &str) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    /// Records of `hub` whose fields equal every `(field, value)` (a `filterHash` with `=`).
    /// A failed search is an error for the job, never "not found": creating after a failed
    /// search could duplicate.
    pub async fn search(
        &self,
        hub: &str,
        equals: &[(String, String)],
    ) -> Result<Vec<Map<String, Value>>, WriteError> {
        let mut url =
            url::Url::parse(&format!("{}/{hub}", self.base)).map_err(|e| WriteError::Refused {
                status: 0,
                reason: format!("bad target URL: {e}"),
            })?;
        {
            let mut q = url.query_pairs_mut();
            for (i, (f, v)) in equals.iter().enumerate() {
                q.append_pair(&format!("filterHash[{i}][name]"), f);
                q.append_pair(&format!("filterHash[{i}][value]"), v);
                q.append_pair(&format!("filterHash[{i}][opp]"), "=");
                q.append_pair(&format!("filterHash[{i}][condition]"), "AND");
            }
            q.append_pair("pageSize", "10");
        }
        let resp = self
            .http
            .send(Method::GET, url.as_str(), hub, Idempotency::Safe, |rb| {
                rb.header(ACCEPT, "application/json")
            })
            .await
            .map_err(classify)?;
        serde_json::from_slice::<Vec<Map<String, Value>>>(&resp.body).map_err(|e| {
            WriteError::Refused {
                status: resp.status,
                reason: format!("search answer is not a JSON array of records: {e}"),
            }
        })
    }

    /// `POST /{hub}?startWorkflow=N` with `[record]`; returns the new key and the HTTP status.
    pub async fn create(
        &self,
        hub: &str,
        record: &Map<String, Value>,
    ) -> Result<(String, u16), WriteError> {
        let url = format!("{}/{hub}?startWorkflow=N", self.base);
        let body = serde_json::to_vec(&[record]).unwrap_or_default();
        self.write(Method::POST, &url, hub, body).await
    }

    /// `PUT /{hub}/{key}?startWorkflow=N` with the changed fields.
    pub async fn update(
        &self,
        hub: &str,
        key: &str,
        record: &Map<String, Value>,
    ) -> Result<(String, u16), WriteError> {
        let url = format!(
            "{}/{hub}/{}?startWorkflow=N",
            self.base,
            url::form_urlencoded::byte_serialize(key.as_bytes()).collect::<String>()
        );
        let body = serde_json::to_vec(record).unwrap_or_default();
        self.write(Method::PUT, &url, hub, body).await
    }

    async fn write(
        &self,
        method: Method,
        url: &str,
        hub: &str,
        body: Vec<u8>,
    ) -> Result<(String, u16), WriteError> {
        let body = bytes::Bytes::from(body);
        let resp = self
            .http
            .send(method, url, hub, Idempotency::Unsafe, |rb| {
                rb.header(CONTENT_TYPE, "application/json")
                    .header(ACCEPT, "application/json")
                    .body(body.clone())
            })
            .await
            .map_err(classify)?;
        // Arrays out: the saved record is the first element.
        let saved: Vec<Map<String, Value>> =
            serde_json::from_slice(&resp.body).map_err(|e| WriteError::Ambiguous {
                status: Some(resp.status),
                reason: format!("the answer is not a JSON array of records: {e}"),
            })?;
        let key = saved
            .first()
            .and_then(|r| r.get(key_field(hub)))
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| WriteError::Ambiguous {
                status: Some(resp.status),
                reason: format!("the saved record carries no {}", key_field(hub)),
            })?;
        Ok((key.to_string(), resp.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_become_one_line() {
        assert_eq!(
            reason_of(r#"{"message":"Validation failed.","detail":"Name is required."}"#),
            "Validation failed. Name is required."
        );
        assert_eq!(reason_of("<html>"), "<html>");
    }
}
