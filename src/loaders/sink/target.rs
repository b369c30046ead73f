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

/// How a request line names one record: `/{hub}/{key}`, or OData's `/{hub}({key})`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStyle {
    Segment,
    Parens,
}

/// A hub whose records are keyed or addressed differently from the target's default.
#[derive(Debug, Clone, PartialEq)]
pub struct HubProfile {
    /// The key field, as the flow names it.
    pub key_field: String,
    /// The hub's path in request lines.
    pub path: String,
    /// Whether the client assigns the key on create (the mapping's `number` scheme).
    pub client_keyed: bool,
}

/// A target's static facts, the same for every call: whom it writes for, how its records are
/// keyed, how its calls are audited and how many may be in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetProfile {
    /// The mlc.toml connection written to (rules learned about a tenant are kept under it).
    pub connection: String,
    /// How many jobs of one mapping may be in flight at once.
    pub parallelism: usize,
    /// The HTTP method of an update, for the audit.
    pub update_method: &'static str,
    /// What comes before a hub's path in a request line (`/companies(…)`, `/api/v2`).
    pub prefix: String,
    pub key_style: KeyStyle,
    /// What comes after the path in a request line (`?startWorkflow=N`).
    pub suffix: &'static str,
    /// Hubs with a key, path or keying of their own; any other hub is keyed by a
    /// server-assigned `id` and addressed by its name.
    pub hubs: BTreeMap<String, HubProfile>,
}

impl TargetProfile {
    /// A target writing for `connection` whose hubs are keyed by a server-assigned `id` and
    /// updated with `PUT /{hub}/{key}`.
    pub fn new(connection: &str, parallelism: usize) -> Self {
        Self {
            connection: connection.to_string(),
            parallelism,
            update_method: "PUT",
            prefix: String::new(),
            key_style: KeyStyle::Segment,
            suffix: "",
            hubs: BTreeMap::new(),
        }
    }

    /// The hub's key field, as the flow names it.
    pub fn key_field(&self, hub: &str) -> &str {
        self.hubs.get(hub).map_or("id", |h| h.key_field.as_str())
    }

    /// Whether the client assigns the hub's key on create.
    pub fn client_keyed(&self, hub: &str) -> bool {
        self.hubs.get(hub).is_some_and(|h| h.client_keyed)
    }

    /// The request line the audit records for a call (no values, no secrets).
    pub fn request_line(&self, method: &str, hub: &str, key: Option<&str>) -> String {
        let path = self.hubs.get(hub).map_or(hub, |h| h.path.as_str());
        let record = match (key, self.key_style) {
            (None, _) => String::new(),
            (Some(k), KeyStyle::Segment) => format!("/{k}"),
            (Some(k), KeyStyle::Parens) => format!("({k})"),
        };
        format!("{method} {}/{path}{record}{}", self.prefix, self.suffix)
    }
}

/// What the sink writes on a target system (`systems::sink_support`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkSupport {
    /// The hubs it writes: each has a key, a search and a tested write path.
    pub hubs: &'static [&'static str],
    /// Its mappings only update records another flow linked (`mode = "update"`).
    pub update_only: bool,
}

impl SinkSupport {
    pub fn new(hubs: &'static [&'static str]) -> Self {
        Self {
            hubs,
            update_only: false,
        }
    }
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

    /// The target's static facts.
    fn profile(&self) -> &TargetProfile;

    /// A source value as the target takes it (`None`: leave the field out).
    fn value(&self, v: &Value) -> Option<Value>;

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

    fn profile(&self) -> &TargetProfile {
        (**self).profile()
    }

    fn value(&self, v: &Value) -> Option<Value> {
        (**self).value(v)
    }

    async fn post(&self, hub: &str, key: &str) -> Result<u16, WriteError> {
        (**self).post(hub, key).await
    }

    async fn schema(&self, hub: &str) -> Result<Option<HubSchema>, WriteError> {
        (**self).schema(hub).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_follow_the_profile() {
        let odata = TargetProfile {
            prefix: "/companies(CRONUS)".into(),
            key_style: KeyStyle::Parens,
            ..TargetProfile::new("bc", 5)
        };
        assert_eq!(
            odata.request_line("PATCH", "customers", Some("k1")),
            "PATCH /companies(CRONUS)/customers(k1)"
        );
        let mut hubs = BTreeMap::new();
        hubs.insert(
            "opportunity".to_string(),
            HubProfile {
                key_field: "OpportunityID".into(),
                path: "project".into(),
                client_keyed: true,
            },
        );
        let vp = TargetProfile {
            suffix: "?startWorkflow=N",
            hubs,
            ..TargetProfile::new("vp", 2)
        };
        assert_eq!(
            vp.request_line("PUT", "opportunity", Some("P1")),
            "PUT /project/P1?startWorkflow=N"
        );
        assert_eq!(
            vp.request_line("POST", "firm", None),
            "POST /firm?startWorkflow=N"
        );
        assert_eq!(vp.key_field("opportunity"), "OpportunityID");
        assert!(vp.client_keyed("opportunity") && !vp.client_keyed("firm"));
        assert_eq!(vp.key_field("firm"), "id");
    }
}
