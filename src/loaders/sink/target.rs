//! What the sink needs from a target system: search a hub by field values, create, update, and
//! the hub's key. One implementation per system (`deltek.rs`, `business_central.rs`, `pipedrive.rs`); the ledger logic (link → search →
//! create, audit, retries) is written once against this trait.

use std::collections::BTreeMap;

use async_trait::async_trait;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::Error;

/// What the target's metadata says about one field of a hub.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FieldRule {
    /// Longest text the field takes, in characters.
    pub max_len: Option<u32>,
    /// A new record must have a value for it.
    pub required: bool,
}

/// The fields of one hub as the target tenant has them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HubSchema {
    pub fields: BTreeMap<String, FieldRule>,
}

/// Why a write did not succeed, as the sink acts on it.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteError {
    /// The target answered and refused (400 validation, 403, 404): fails only this job; the
    /// reason is the body's message.
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

    /// An HTTP-layer error as a write outcome: a 4xx answer (but 408) is a refusal with the
    /// body's message (`reason_of`), and so is a 2xx the system's response hook read as
    /// failed; anything else may have been applied.
    pub fn classify(e: Error, reason_of: fn(&str) -> String) -> WriteError {
        match e {
            Error::FailedAnswer { status, reason, .. } => WriteError::Refused { status, reason },
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
}

/// A write the target accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub key: String,
    pub status: u16,
    /// The record's own version after the write (its modified time, µs since the epoch, as the
    /// target's stream reads it), when the answer carries one: a flow reading this target
    /// back recognises that version as our echo.
    pub version: Option<i64>,
}

/// A modified-time field of an answer (`lastModifiedDateTime`, `update_time`) as a version:
/// µs since the epoch, the way a stream run computes it from the same field.
pub fn version_of(v: Option<&Value>) -> Option<i64> {
    let text = v?.as_str()?;
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_micros())
}

/// A sink target. Hubs and field names are the target's own (as the flow file writes them).
#[async_trait]
pub trait Target: Send + Sync {
    /// Records of `hub` whose fields equal every `(field, value)`. A failed search is an error
    /// for the job, never "not found": creating after a failed search could duplicate.
    async fn search(
        &self,
        hub: &str,
        equals: &[(String, String)],
    ) -> Result<Vec<Map<String, Value>>, WriteError>;

    /// Creates one record.
    async fn create(&self, hub: &str, record: &Map<String, Value>) -> Result<Written, WriteError>;

    /// Updates the fields of `record` on the record `key`.
    async fn update(
        &self,
        hub: &str,
        key: &str,
        record: &Map<String, Value>,
    ) -> Result<Written, WriteError>;

    /// The hub's key field, as the flow names it.
    fn key_field(&self, hub: &str) -> &str;

    /// The mlc.toml connection written to (rules learned about a tenant are kept under it).
    fn connection(&self) -> &str;

    /// Whether the client assigns the hub's key on create (the mapping's `number` scheme).
    fn client_keyed(&self, hub: &str) -> bool;

    /// A source value as the target takes it (`None`: leave the field out).
    fn value(&self, v: &Value) -> Option<Value>;

    /// The request line the audit records for a call (no values, no secrets).
    fn request_line(&self, method: &str, hub: &str, key: Option<&str>) -> String;

    /// How many jobs of one mapping may be in flight at once.
    fn parallelism(&self) -> usize {
        1
    }

    /// The HTTP method of an update, for the audit.
    fn update_method(&self) -> &'static str {
        "PUT"
    }

    /// Posts a created document (Business Central `Microsoft.NAV.post`); returns the status.
    async fn post(&self, hub: &str, _key: &str) -> Result<u16, WriteError> {
        Err(WriteError::Refused {
            status: 0,
            reason: format!("{hub} documents can't be posted on this target"),
        })
    }

    /// The hub's fields as the tenant has them, from its metadata, for the pre-flight
    /// (`preflight.rs`). `None`: the target publishes nothing the sink reads.
    async fn schema(&self, _hub: &str) -> Result<Option<HubSchema>, WriteError> {
        Ok(None)
    }
}

/// A boxed target is a target (so `&Box<dyn Target>` passes where `&dyn Target` is taken).
#[async_trait]
impl<T: Target + ?Sized> Target for Box<T> {
    async fn search(
        &self,
        hub: &str,
        equals: &[(String, String)],
    ) -> Result<Vec<Map<String, Value>>, WriteError> {
        (**self).search(hub, equals).await
    }

    async fn create(&self, hub: &str, record: &Map<String, Value>) -> Result<Written, WriteError> {
        (**self).create(hub, record).await
    }

    async fn update(
        &self,
        hub: &str,
        key: &str,
        record: &Map<String, Value>,
    ) -> Result<Written, WriteError> {
        (**self).update(hub, key, record).await
    }

    fn key_field(&self, hub: &str) -> &str {
        (**self).key_field(hub)
    }

    fn connection(&self) -> &str {
        (**self).connection()
    }

    fn client_keyed(&self, hub: &str) -> bool {
        (**self).client_keyed(hub)
    }

    fn value(&self, v: &Value) -> Option<Value> {
        (**self).value(v)
    }

    fn request_line(&self, method: &str, hub: &str, key: Option<&str>) -> String {
        (**self).request_line(method, hub, key)
    }

    fn parallelism(&self) -> usize {
        (**self).parallelism()
    }

    fn update_method(&self) -> &'static str {
        (**self).update_method()
    }

    async fn post(&self, hub: &str, key: &str) -> Result<u16, WriteError> {
        (**self).post(hub, key).await
    }

    async fn schema(&self, hub: &str) -> Result<Option<HubSchema>, WriteError> {
        (**self).schema(hub).await
    }
}
