//! The Pipedrive side of a sink: master data flowing back (`business_central_to_pipedrive`).
//! Only updates of records another flow linked: `PATCH /api/v2/{organizations|persons|
//! products}/{id}` (v2 renamed v1's `PUT`), answered `{"success": true, "data": {…}}` with the
//! whole record and its new `update_time`. Pipedrive has no `If-Match`; the sink sends only the
//! fields its source changed, so a concurrent edit of another field survives.
//!
//! Nothing financial is ever written here: only the entity sets in [`HUBS`] are accepted.

use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use super::target::{FieldRule, HubSchema};
use super::target::{Target, WriteError, Written, version_of};
use crate::http::{HttpClient, Idempotency};
use crate::systems::pipedrive::answer::reason_of;

/// The entity sets the sink may update.
pub const HUBS: [&str; 3] = ["organizations", "persons", "products"];

/// A Pipedrive company account as a sink target.
#[derive(Debug)]
pub struct PipedriveTarget {
    http: HttpClient,
    /// The connection's `api_url`, used when the token response names no API domain.
    configured: String,
    /// The API base: OAuth's `api_domain`, else `api_url` (looked up on first use).
    base: OnceCell<String>,
    connection: String,
}

fn update_only(what: &str) -> WriteError {
    WriteError::Refused {
        status: 0,
        reason: format!(
            "the Pipedrive target does not {what}: its mappings update records another flow linked (mode = \"update\")"
        ),
    }
}

/// A 2xx answer to a write (one saying `success: false` the connection's response hook
/// refused already): its record's `update_time` is the new version.
fn written(key: &str, status: u16, body: &[u8]) -> Result<Written, WriteError> {
    let answer: Value = serde_json::from_slice(body).map_err(|e| WriteError::Ambiguous {
        status: Some(status),
        reason: format!("the answer is not Pipedrive JSON: {e}"),
    })?;
    Ok(Written {
        key: key.to_string(),
        status,
        version: version_of(answer.pointer("/data/update_time")),
    })
}

impl PipedriveTarget {
    pub fn new(http: HttpClient, connection: &str, api_url: &str) -> Self {
        Self {
            http,
            configured: api_url.trim_end_matches('/').to_string(),
            base: OnceCell::new(),
            connection: connection.to_string(),
        }
    }

    async fn base(&self) -> Result<&str, WriteError> {
        self.base
            .get_or_try_init(|| async {
                let learned = self
                    .http
                    .auth_api_base()
                    .await
                    .map_err(|e| WriteError::classify(e, reason_of))?;
                Ok(learned
                    .map(|b| b.trim_end_matches('/').to_string())
                    .unwrap_or_else(|| self.configured.clone()))
            })
            .await
            .map(String::as_str)
    }
}

#[async_trait::async_trait]
impl Target for PipedriveTarget {
    /// The hub's fields from its field definitions (`organizationFields`, …): what exists.
    /// Pipedrive publishes no lengths or required flags a write could break on.
    async fn schema(&self, hub: &str) -> Result<Option<HubSchema>, WriteError> {
        let Some(path) = crate::streams::pipedrive::fields_path_of(&format!("/api/v2/{hub}"))
        else {
            return Ok(None);
        };
        let base = self.base().await?.to_string();
        let defs = crate::streams::pipedrive::load_definitions(&self.http, &base, &path, hub)
            .await
            .map_err(|e| WriteError::classify(e, reason_of))?;
        Ok(Some(HubSchema {
            fields: defs
                .into_iter()
                .map(|d| (d.key, FieldRule::default()))
                .collect(),
        }))
    }

    fn connection(&self) -> &str {
        &self.connection
    }

    async fn search(
        &self,
        _hub: &str,
        _equals: &[(String, String)],
    ) -> Result<Vec<Map<String, Value>>, WriteError> {
        Err(update_only("search"))
    }

    async fn create(
        &self,
        _hub: &str,
        _record: &Map<String, Value>,
    ) -> Result<Written, WriteError> {
        Err(update_only("create"))
    }

    async fn update(
        &self,
        hub: &str,
        key: &str,
        record: &Map<String, Value>,
    ) -> Result<Written, WriteError> {
        if !HUBS.contains(&hub) {
            return Err(WriteError::Refused {
                status: 0,
                reason: format!(
                    "{hub} is not written to Pipedrive (only {})",
                    HUBS.join(", ")
                ),
            });
        }
        let url = format!("{}/api/v2/{hub}/{key}", self.base().await?);
        let body = bytes::Bytes::from(serde_json::to_vec(record).unwrap_or_default());
        let resp = self
            .http
            .send(Method::PATCH, &url, hub, Idempotency::Unsafe, |rb| {
                rb.header(ACCEPT, "application/json")
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await
            .map_err(|e| WriteError::classify(e, reason_of))?;
        written(key, resp.status, &resp.body)
    }

    fn key_field(&self, _hub: &str) -> &str {
        "id"
    }

    fn client_keyed(&self, _hub: &str) -> bool {
        false
    }

    fn value(&self, v: &Value) -> Option<Value> {
        match v {
            Value::Null => None,
            other => Some(other.clone()),
        }
    }

    fn request_line(&self, method: &str, hub: &str, key: Option<&str>) -> String {
        match key {
            Some(k) => format!("{method} /api/v2/{hub}/{k}"),
            None => format!("{method} /api/v2/{hub}"),
        }
    }

    fn parallelism(&self) -> usize {
        self.http.max_concurrency()
    }

    fn update_method(&self) -> &'static str {
        "PATCH"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_2xx_answer_gives_the_new_version() {
        let ok = written(
            "7",
            200,
            br#"{"success":true,"data":{"id":7,"update_time":"2024-01-01T00:02:00Z"}}"#,
        )
        .unwrap();
        assert_eq!(ok.version, Some(1_704_067_320_000_000));
        assert!(matches!(
            written("7", 200, b"<html>"),
            Err(WriteError::Ambiguous { .. })
        ));
    }
}
