//! The Deltek Vantagepoint side of a sink: search a hub by field values, create (POST, arrays
//! in, arrays out) and update (PUT by key), every write with `startWorkflow=N` so our writes do
//! not fire the tenant's workflows (and their webhooks) back at us.
//!
//! Writes go through the one [`HttpClient`] as [`Idempotency::Unsafe`]: a POST is retried only
//! on 429/503 (the server provably did nothing). Any other failure without an answer is reported
//! as [`WriteError::Ambiguous`] and the caller searches before trying again (DESIGN.md §5, §9).

use std::collections::BTreeMap;

use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Map, Value};

use super::flow::{FlowFile, Mode};
use crate::config::Connection;
use crate::error::{Error, Result};
use crate::http::{Endpoint, HttpClient, Idempotency};
use crate::spec::{Definitions, FixedFilter, StreamId};
use crate::systems::deltek::answer::reason_of;
use crate::systems::system::System;

use super::target::{FieldRule, HubSchema};
use super::target::{HubProfile, Target, TargetProfile, WriteError, Written};

/// The hubs the sink writes (each with a key, a search and a tested write path).
pub const HUBS: [&str; 5] = ["firm", "contact", "employee", "opportunity", "project"];

/// How one hub is spoken on this tenant. Taken from the Deltek stream definitions (the same
/// `variants` the extract reads with), so reading and writing a hub never disagree: on a 5.0+
/// tenant (`opportunity_model = "project_stage"`) an `opportunity` is a project carrying a
/// Stage, its `OpportunityID` is sent as `WBS1`, `Revenue` as `Fee`, `EstStartDate` as
/// `StartDate`.
#[derive(Debug, Clone)]
pub struct Hub {
    /// Path after `/api/`.
    path: String,
    /// Fixed query parameters and filters of a search (pursuits: `Stage != ""`).
    params: BTreeMap<String, String>,
    filters: Vec<FixedFilter>,
    /// Flow field (the hub's catalog `source` name) → payload field, where they differ.
    outgoing: BTreeMap<String, String>,
    /// The key field, as the flow names it.
    key: String,
}

impl Hub {
    fn payload_name<'a>(&'a self, f: &'a str) -> &'a str {
        self.outgoing.get(f).map_or(f, String::as_str)
    }

    /// A record as the payload spells it.
    fn outgoing(&self, record: &Map<String, Value>) -> Map<String, Value> {
        record
            .iter()
            .map(|(k, v)| (self.payload_name(k).to_string(), v.clone()))
            .collect()
    }

    /// A payload record with the flow's field names.
    fn incoming(&self, mut record: Map<String, Value>) -> Map<String, Value> {
        for (flow, payload) in &self.outgoing {
            if let Some(v) = record.remove(payload) {
                record.insert(flow.clone(), v);
            }
        }
        record
    }
}

/// A Vantagepoint tenant as a sink target.
#[derive(Debug, Clone)]
pub struct DeltekTarget {
    http: HttpClient,
    /// `https://host/app/api` (no trailing slash).
    base: String,
    hubs: BTreeMap<String, Hub>,
    profile: TargetProfile,
}

impl DeltekTarget {
    /// The target of sink flow `name`, for its hubs; projects need a number scheme on tenants
    /// where the client numbers them.
    pub fn for_flow(
        name: &str,
        flow: &FlowFile,
        conn: &Connection,
        ep: Endpoint,
        defs: &Definitions,
    ) -> Result<Self> {
        let mut hubs: Vec<&str> = flow.entities.iter().map(|e| e.target.as_str()).collect();
        hubs.dedup();
        let target = Self::new(ep.http, &ep.base, defs, conn, &hubs)?;
        if let Some(e) = flow.entities.iter().find(|e| {
            target.profile.client_keyed(&e.target) && e.number.is_none() && e.mode != Mode::Match
        }) {
            return Err(Error::config(format!(
                "sink flow `{name}`: on connection `{}`, {} records are projects, which take their number from the client: add `number = {{ field = \"{}\", format = \"{{yyyy}}-{{seq:04}}\" }}` to the `{}` mapping",
                conn.name,
                e.target,
                target.profile.key_field(&e.target),
                e.name()
            )));
        }
        Ok(target)
    }

    /// A target writing `hubs` through `conn` (whose `opportunity_model` picks the variants).
    pub fn new(
        http: HttpClient,
        base: &str,
        defs: &Definitions,
        conn: &Connection,
        hubs: &[&str],
    ) -> Result<Self> {
        let variant = crate::streams::deltek::variant_name(conn);
        let mut out = BTreeMap::new();
        for h in hubs {
            let stream = defs.get(&StreamId::of(System::Deltek, h)).map_err(|_| {
                Error::config(format!(
                    "the sink writes Deltek `{h}`, and no stream deltek.{h} describes that hub"
                ))
            })?;
            let spec = &stream.spec;
            let v = variant.and_then(|v| spec.variants.get(v));
            let rename = v.map(|v| v.rename.clone()).unwrap_or_default();
            let key = match stream.key_fields().as_slice() {
                [k] => k.to_string(),
                _ => {
                    return Err(Error::config(format!(
                        "deltek.{h} has a composite key: the sink writes single-key hubs only"
                    )));
                }
            };
            out.insert(
                h.to_string(),
                Hub {
                    path: v
                        .and_then(|v| v.path.clone())
                        .or_else(|| spec.path.clone())
                        .unwrap_or_else(|| h.to_string()),
                    params: v
                        .and_then(|v| v.params.clone())
                        .unwrap_or_else(|| spec.params.clone()),
                    filters: v
                        .and_then(|v| v.filters.clone())
                        .unwrap_or_else(|| spec.filters.clone()),
                    outgoing: rename.into_iter().map(|(p, f)| (f, p)).collect(),
                    key,
                },
            );
        }
        // Projects (and 5.0+ pursuits, which are projects) take the WBS1 they are given;
        // firms, contacts and pre-5.0 opportunities get a server-assigned key.
        let profile = TargetProfile {
            suffix: "?startWorkflow=N",
            hubs: out
                .iter()
                .map(|(name, h)| {
                    let hub = HubProfile {
                        key_field: h.key.clone(),
                        path: h.path.clone(),
                        client_keyed: h.path == "project",
                    };
                    (name.clone(), hub)
                })
                .collect(),
            ..TargetProfile::new(&conn.name, http.max_concurrency())
        };
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            hubs: out,
            profile,
        })
    }

    fn hub(&self, hub: &str) -> std::result::Result<&Hub, WriteError> {
        self.hubs.get(hub).ok_or_else(|| WriteError::Refused {
            status: 0,
            reason: format!("hub `{hub}` is not set up for this flow"),
        })
    }

    async fn write(
        &self,
        method: Method,
        url: &str,
        h: &Hub,
        body: Vec<u8>,
    ) -> std::result::Result<Written, WriteError> {
        let body = bytes::Bytes::from(body);
        let resp = self
            .http
            .send(method, url, &h.path, Idempotency::Unsafe, |rb| {
                rb.header(CONTENT_TYPE, "application/json")
                    .header(ACCEPT, "application/json")
                    .body(body.clone())
            })
            .await
            .map_err(|e| WriteError::classify(e, reason_of))?;
        // Arrays out: the saved record is the first element.
        let saved: Vec<Map<String, Value>> =
            serde_json::from_slice(&resp.body).map_err(|e| WriteError::Ambiguous {
                status: Some(resp.status),
                reason: format!("the answer is not a JSON array of records: {e}"),
            })?;
        let key = saved
            .first()
            .and_then(|r| r.get(h.payload_name(&h.key)))
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| WriteError::Ambiguous {
                status: Some(resp.status),
                reason: format!("the saved record carries no {}", h.payload_name(&h.key)),
            })?;
        // Vantagepoint answers carry no modified time we could match a read against.
        Ok(Written {
            key: key.to_string(),
            status: resp.status,
            version: None,
        })
    }
}

#[async_trait::async_trait]
impl Target for DeltekTarget {
    /// The hub's fields from `GET metadata/{hub}` (`Required`, `MaxLength`), named as the
    /// flow names them. A tenant that serves no metadata for the hub (404) is not checked.
    async fn schema(&self, hub: &str) -> Result<Option<HubSchema>, WriteError> {
        let h = self.hub(hub)?;
        let url = format!("{}/metadata/{}", self.base, h.path);
        let resp = match self
            .http
            .send(Method::GET, &url, &h.path, Idempotency::Safe, |rb| {
                rb.header(ACCEPT, "application/json")
            })
            .await
        {
            Ok(r) => r,
            Err(crate::error::Error::Http { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(WriteError::classify(e, reason_of)),
        };
        let fields = crate::systems::deltek::metadata::parse_metadata(&resp.body).map_err(|e| {
            WriteError::Refused {
                status: resp.status,
                reason: format!("metadata/{}: {e}", h.path),
            }
        })?;
        let flow_name = |payload: &str| {
            h.outgoing
                .iter()
                .find(|(_, p)| p.as_str() == payload)
                .map_or_else(|| payload.to_string(), |(f, _)| f.clone())
        };
        Ok(Some(HubSchema {
            fields: fields
                .into_iter()
                .map(|f| {
                    (
                        flow_name(&f.name),
                        FieldRule {
                            max_len: f.max_len,
                            required: f.required,
                        },
                    )
                })
                .collect(),
        }))
    }

    fn profile(&self) -> &TargetProfile {
        &self.profile
    }

    /// Records of `hub` whose fields equal every `(field, value)` (a `filterHash` with `=`).
    /// A failed search is an error for the job, never "not found": creating after a failed
    /// search could duplicate.
    async fn search(
        &self,
        hub: &str,
        equals: &[(String, String)],
    ) -> std::result::Result<Vec<Map<String, Value>>, WriteError> {
        let h = self.hub(hub)?;
        let mut url = url::Url::parse(&format!("{}/{}", self.base, h.path)).map_err(|e| {
            WriteError::Refused {
                status: 0,
                reason: format!("bad target URL: {e}"),
            }
        })?;
        let mut filters = h.filters.clone();
        filters.extend(equals.iter().map(|(f, v)| FixedFilter {
            name: h.payload_name(f).to_string(),
            value: v.clone(),
            opp: "=".into(),
            ty: None,
            tablename: None,
        }));
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in &h.params {
                q.append_pair(k, v);
            }
            for (k, v) in crate::streams::deltek::filter_hash(&filters) {
                q.append_pair(&k, &v);
            }
            q.append_pair("pageSize", "10");
        }
        let resp = self
            .http
            .send(Method::GET, url.as_str(), hub, Idempotency::Safe, |rb| {
                rb.header(ACCEPT, "application/json")
            })
            .await
            .map_err(|e| WriteError::classify(e, reason_of))?;
        let found = serde_json::from_slice::<Vec<Map<String, Value>>>(&resp.body).map_err(|e| {
            WriteError::Refused {
                status: resp.status,
                reason: format!("search answer is not a JSON array of records: {e}"),
            }
        })?;
        Ok(found.into_iter().map(|r| h.incoming(r)).collect())
    }

    /// `POST /{path}?startWorkflow=N` with `[record]`; returns the new key and the HTTP status.
    async fn create(
        &self,
        hub: &str,
        record: &Map<String, Value>,
    ) -> std::result::Result<Written, WriteError> {
        let h = self.hub(hub)?;
        let url = format!("{}/{}?startWorkflow=N", self.base, h.path);
        let body = serde_json::to_vec(&[h.outgoing(record)]).unwrap_or_default();
        self.write(Method::POST, &url, h, body).await
    }

    /// `PUT /{path}/{key}?startWorkflow=N` with the changed fields.
    async fn update(
        &self,
        hub: &str,
        key: &str,
        record: &Map<String, Value>,
    ) -> std::result::Result<Written, WriteError> {
        let h = self.hub(hub)?;
        let url = format!(
            "{}/{}/{}?startWorkflow=N",
            self.base,
            h.path,
            url::form_urlencoded::byte_serialize(key.as_bytes()).collect::<String>()
        );
        let body = serde_json::to_vec(&h.outgoing(record)).unwrap_or_default();
        self.write(Method::PUT, &url, h, body).await
    }

    fn value(&self, v: &Value) -> Option<Value> {
        text(v).map(Value::String)
    }
}

/// A source value as the text Vantagepoint fields take: its fields are strings, Y/N for
/// booleans, and dates as zone-less `YYYY-MM-DDTHH:MM:SS.mmm` (a date-only value is midnight).
pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) if is_date(s) => Some(format!("{s}T00:00:00.000")),
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(if *b { "Y" } else { "N" }.into()),
        other => Some(other.to_string()),
    }
}

fn is_date(s: &str) -> bool {
    s.len() == 10 && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_become_one_line() {}

    #[test]
    fn values_become_vantagepoint_text() {
        assert_eq!(
            text(&Value::from("2026-05-01")).as_deref(),
            Some("2026-05-01T00:00:00.000")
        );
        assert_eq!(text(&Value::from("Acme")).as_deref(), Some("Acme"));
        assert_eq!(text(&Value::from(true)).as_deref(), Some("Y"));
        assert_eq!(text(&Value::from(12.5)).as_deref(), Some("12.5"));
        assert_eq!(text(&Value::from("")), None);
    }
}
