//! The Business Central side of a sink: OData v4 on API v2.0, one company per flow. Searches
//! are `$filter` equalities; creates are `POST` (201, the saved entity back); updates are
//! `PATCH` with the record's `If-Match` etag, read just before. A stale etag (409
//! `Request_EntityChanged`, or 412 from some front ends: someone changed the record between our
//! read and our write) is
//! read again and the PATCH retried once with the fresh etag: the sink sends only the fields
//! its source changed, so the other side's change survives and ours lands.

use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, IF_MATCH};
use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use super::flow::FlowFile;
use super::target::{FieldRule, HubSchema};
use super::target::{KeyStyle, Target, TargetProfile, WriteError, Written, version_of};
use crate::config::Connection;
use crate::error::Error;
use crate::http::Endpoint;
use crate::http::answer::odata_error;
use crate::http::{HttpClient, Idempotency};
use crate::systems::business_central::BusinessCentralSettings;

/// The entity sets the sink writes.
pub const HUBS: [&str; 5] = [
    "customers",
    "contacts",
    "items",
    "salesOrders",
    "salesInvoices",
];

/// A Business Central company as a sink target.
#[derive(Debug)]
pub struct BcTarget {
    http: HttpClient,
    /// `{api_url}/v2.0/{tenant}/{environment}/api/v2.0` (no trailing slash).
    api: String,
    /// The company's name or id, as configured.
    company: String,
    /// Its id, looked up on first use.
    company_id: OnceCell<String>,
    /// `{api_url}/v2.0/{tenant}/{environment}`, where `$metadata` is read.
    api_base: String,
    /// The environment's `$metadata`, read once (pre-flight).
    csdl: OnceCell<crate::systems::business_central::metadata::Csdl>,
    profile: TargetProfile,
}

/// A refusal's OData error body as `code: message`, else the body.
fn reason_of(body: &str) -> String {
    odata_error(body.as_bytes()).unwrap_or_else(|| body.to_string())
}

/// An OData string literal (`'` doubled).
fn literal(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

impl BcTarget {
    /// The target of sink flow `name`: the flow's company, else the connection's first.
    pub fn for_flow(
        name: &str,
        flow: &FlowFile,
        b: &BusinessCentralSettings,
        conn: &Connection,
        ep: Endpoint,
    ) -> crate::error::Result<Self> {
        let company = flow
            .company
            .clone()
            .or_else(|| b.companies.first().cloned())
            .ok_or_else(|| {
                Error::config(format!(
                    "sink flow `{name}` writes to Business Central: set `company = \"<name or id>\"` in the flow (or `companies` on connection `{}`)",
                    conn.name
                ))
            })?;
        Ok(Self::new(ep.http, &conn.name, &ep.base, &company))
    }

    /// `api_base` is the connection's `{api_url}/v2.0/{tenant}/{environment}`; `company` a
    /// company name or id.
    pub fn new(http: HttpClient, connection: &str, api_base: &str, company: &str) -> Self {
        let profile = TargetProfile {
            update_method: "PATCH",
            prefix: format!("/companies({company})"),
            key_style: KeyStyle::Parens,
            ..TargetProfile::new(connection, http.max_concurrency())
        };
        Self {
            http,
            api: format!("{}/api/v2.0", api_base.trim_end_matches('/')),
            company: company.to_string(),
            company_id: OnceCell::new(),
            api_base: api_base.trim_end_matches('/').to_string(),
            csdl: OnceCell::new(),
            profile,
        }
    }

    /// `…/companies({id})`, resolving a company name once.
    async fn company_url(&self) -> Result<String, WriteError> {
        let id = self
            .company_id
            .get_or_try_init(|| async {
                if uuid_like(&self.company) {
                    return Ok(self.company.clone());
                }
                let url = format!("{}/companies?$select=id,name", self.api);
                let resp = self
                    .http
                    .send(Method::GET, &url, "companies", Idempotency::Safe, |rb| {
                        rb.header(ACCEPT, "application/json")
                    })
                    .await
                    .map_err(|e| WriteError::classify(e, reason_of))?;
                let v: Value = serde_json::from_slice(&resp.body).unwrap_or_default();
                v["value"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["name"].as_str() == Some(self.company.as_str()))
                    .and_then(|c| c["id"].as_str().map(String::from))
                    .ok_or_else(|| WriteError::Refused {
                        status: 404,
                        reason: format!(
                            "no company named `{}` in this environment (set `company` in the flow to a name or id `GET companies` lists)",
                            self.company
                        ),
                    })
            })
            .await?;
        Ok(format!("{}/companies({id})", self.api))
    }

    async fn call(
        &self,
        method: Method,
        url: &str,
        hub: &str,
        if_match: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Vec<u8>), WriteError> {
        let safe = method == Method::GET;
        let body = body.map(bytes::Bytes::from);
        let resp = self
            .http
            .send(
                method,
                url,
                hub,
                if safe {
                    Idempotency::Safe
                } else {
                    Idempotency::Unsafe
                },
                |rb| {
                    let mut rb = rb.header(ACCEPT, "application/json");
                    if let Some(e) = if_match {
                        rb = rb.header(IF_MATCH, e);
                    }
                    match &body {
                        Some(b) => rb.header(CONTENT_TYPE, "application/json").body(b.clone()),
                        None => rb,
                    }
                },
            )
            .await
            .map_err(|e| WriteError::classify(e, reason_of))?;
        Ok((resp.status, resp.body.to_vec()))
    }

    /// The record's current etag.
    async fn etag(&self, hub: &str, key: &str) -> Result<String, WriteError> {
        let url = format!("{}/{hub}({key})", self.company_url().await?);
        let (status, body) = self.call(Method::GET, &url, hub, None, None).await?;
        serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["@odata.etag"].as_str().map(String::from))
            .ok_or_else(|| WriteError::Refused {
                status,
                reason: format!("{hub}({key}) came back without an @odata.etag"),
            })
    }
}

/// The entity a 2xx write answered with (one whose body is an OData `error` the connection's
/// response hook refused already); an unreadable body is ambiguous; none at all (`204`,
/// `Prefer: return=minimal`) is an empty entity.
fn saved_entity(status: u16, answer: &[u8]) -> Result<Map<String, Value>, WriteError> {
    if answer.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(answer) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(WriteError::Ambiguous {
            status: Some(status),
            reason: format!("the {status} answer is not an entity"),
        }),
    }
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

#[async_trait::async_trait]
impl Target for BcTarget {
    fn profile(&self) -> &TargetProfile {
        &self.profile
    }

    /// The entity set's properties and their `MaxLength`, from the environment's `$metadata`.
    async fn schema(&self, hub: &str) -> Result<Option<HubSchema>, WriteError> {
        let csdl = self
            .csdl
            .get_or_try_init(|| async {
                let ep = crate::http::Endpoint {
                    http: self.http.clone(),
                    base: self.api_base.clone(),
                };
                crate::systems::business_central::metadata::metadata(&ep)
                    .await
                    .map_err(|e| WriteError::classify(e, reason_of))
            })
            .await?;
        let Some(et) = csdl.sets.get(hub).and_then(|t| csdl.types.get(t)) else {
            return Err(WriteError::Refused {
                status: 404,
                reason: format!("this environment's API v2.0 has no entity set `{hub}`"),
            });
        };
        Ok(Some(HubSchema {
            fields: et
                .properties
                .iter()
                // `Nullable="false"` is no create rule: BC fills such fields itself (a
                // number from its series, blanks), so no field is taken as required.
                .map(|p| {
                    (
                        p.name.clone(),
                        FieldRule {
                            max_len: p.max_len,
                            required: false,
                        },
                    )
                })
                .collect(),
        }))
    }
    async fn search(
        &self,
        hub: &str,
        equals: &[(String, String)],
    ) -> Result<Vec<Map<String, Value>>, WriteError> {
        let filter = equals
            .iter()
            .map(|(f, v)| format!("{f} eq {}", literal(v)))
            .collect::<Vec<_>>()
            .join(" and ");
        let mut url =
            url::Url::parse(&format!("{}/{hub}", self.company_url().await?)).map_err(|e| {
                WriteError::Refused {
                    status: 0,
                    reason: format!("bad target URL: {e}"),
                }
            })?;
        url.query_pairs_mut()
            .append_pair("$filter", &filter)
            .append_pair("$top", "10");
        let (status, body) = self
            .call(Method::GET, url.as_str(), hub, None, None)
            .await?;
        let v: Value = serde_json::from_slice(&body).map_err(|e| WriteError::Refused {
            status,
            reason: format!("search answer is not OData JSON: {e}"),
        })?;
        Ok(v["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_object().cloned())
            .collect())
    }

    async fn create(&self, hub: &str, record: &Map<String, Value>) -> Result<Written, WriteError> {
        let url = format!("{}/{hub}", self.company_url().await?);
        let body = serde_json::to_vec(record).unwrap_or_default();
        let (status, answer) = self.call(Method::POST, &url, hub, None, Some(body)).await?;
        let saved = saved_entity(status, &answer)?;
        saved["id"]
            .as_str()
            .map(|id| Written {
                key: id.to_string(),
                status,
                version: version_of(saved.get("lastModifiedDateTime")),
            })
            .ok_or_else(|| WriteError::Ambiguous {
                status: Some(status),
                reason: "the created entity came back without an id".into(),
            })
    }

    async fn update(
        &self,
        hub: &str,
        key: &str,
        record: &Map<String, Value>,
    ) -> Result<Written, WriteError> {
        let url = format!("{}/{hub}({key})", self.company_url().await?);
        let body = serde_json::to_vec(record).unwrap_or_default();
        let mut tries = 0;
        loop {
            let etag = self.etag(hub, key).await?;
            match self
                .call(Method::PATCH, &url, hub, Some(&etag), Some(body.clone()))
                .await
            {
                Ok((status, answer)) => {
                    let saved = saved_entity(status, &answer)?;
                    return Ok(Written {
                        key: key.to_string(),
                        status,
                        version: version_of(saved.get("lastModifiedDateTime")),
                    });
                }
                Err(WriteError::Refused {
                    status: 409 | 412, ..
                }) if tries == 0 => tries += 1,
                Err(e) => return Err(e),
            }
        }
    }

    fn value(&self, v: &Value) -> Option<Value> {
        match v {
            Value::Null => None,
            Value::String(s) if s.is_empty() => None,
            other => Some(other.clone()),
        }
    }

    /// `POST …/salesInvoices({id})/Microsoft.NAV.post` (204 No Content).
    async fn post(&self, hub: &str, key: &str) -> Result<u16, WriteError> {
        let url = format!(
            "{}/{hub}({key})/Microsoft.NAV.post",
            self.company_url().await?
        );
        let (status, _) = self
            .call(Method::POST, &url, hub, None, Some(Vec::new()))
            .await?;
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_and_literals() {
        assert_eq!(
            reason_of(
                r#"{"error":{"code":"Request_EntityChanged","message":"Another user has already changed the record."}}"#
            ),
            "Request_EntityChanged: Another user has already changed the record."
        );
        assert_eq!(literal("O'Neil"), "'O''Neil'");
        assert!(uuid_like("8d3f9d3a-0000-4000-8000-000000000001"));
        assert!(!uuid_like("CRONUS USA, Inc."));
    }

    #[test]
    fn a_2xx_answer_is_the_saved_entity() {
        let saved = saved_entity(
            201,
            br#"{"id":"x","lastModifiedDateTime":"2025-01-01T00:30:00.001Z"}"#,
        )
        .unwrap();
        assert_eq!(
            version_of(saved.get("lastModifiedDateTime")),
            Some(1_735_691_400_001_000)
        );
        assert_eq!(saved_entity(204, b"").unwrap(), Map::new());
        assert!(matches!(
            saved_entity(200, b"<html>"),
            Err(WriteError::Ambiguous { .. })
        ));
    }
}
