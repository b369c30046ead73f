//! Dataverse webhooks: service endpoints registered through the admin API (the real one is
//! registered with the Plugin Registration Tool) receive a RemoteExecutionContext POST after
//! each mutation round, with the `x-ms-dynamics-*` headers and the WebhookKey as `?code=`;
//! one extra attempt on 502/503/504, like the service. One context per changed table and round
//! (message Create, Update or Delete by what the round did most recently); the record id is a
//! stand-in: the receiver only learns which table changed, as mlc uses it.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;

use super::super::store::MutationSummary;
use super::Set;

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: String,
    pub key: Option<String>,
}

#[derive(Debug, Default)]
pub struct Endpoints {
    list: Mutex<Vec<Endpoint>>,
    delivered: Mutex<u64>,
}

fn context(set: Set, message: &str, version: u64) -> serde_json::Value {
    let id = format!(
        "{:08x}-0000-47a0-a1d3-{:012x}",
        set.logical().len() as u32,
        version
    );
    let ms = Utc::now().timestamp_millis();
    let target = if message == "Delete" {
        serde_json::json!({"__type": "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts", "Id": id, "LogicalName": set.logical(), "Name": null})
    } else {
        serde_json::json!({
            "__type": "Entity:http://schemas.microsoft.com/xrm/2011/Contracts",
            "LogicalName": set.logical(), "Id": id,
            "Attributes": [{"key": "modifiedon", "value": format!("/Date({ms})/")}],
            "EntityState": null, "FormattedValues": [], "KeyAttributes": [], "RelatedEntities": [], "RowVersion": version.to_string()
        })
    };
    serde_json::json!({
        "MessageName": message, "PrimaryEntityName": set.logical(), "PrimaryEntityId": id,
        "Stage": 40, "Mode": 1, "Depth": 1,
        "UserId": "9d3b2a11-0000-4f0a-b3c2-0a0000000003", "InitiatingUserId": "9d3b2a11-0000-4f0a-b3c2-0a0000000003",
        "BusinessUnitId": "9d3b2a11-0000-4f0a-b3c2-0a0000000001", "OrganizationId": "9d3b2a11-0000-4f0a-b3c2-0a0000000002",
        "OrganizationName": "sandbox", "CorrelationId": format!("c0ffee00-0000-4000-8000-{version:012x}"),
        "OperationId": format!("0be00000-0000-4000-8000-{version:012x}"), "OperationCreatedOn": format!("/Date({ms})/"),
        "RequestId": null, "IsExecutingOffline": false, "IsInTransaction": false, "IsOfflinePlayback": false,
        "IsolationMode": 1, "SecondaryEntityName": "none", "SharedVariables": [], "ParentContext": null,
        "OwningExtension": {"Id": "0be00000-0000-4000-8000-000000000001", "LogicalName": "sdkmessageprocessingstep", "Name": null, "KeyAttributes": [], "RowVersion": null},
        "InputParameters": [{"key": "Target", "value": target}],
        "OutputParameters": [], "PreEntityImages": [], "PostEntityImages": []
    })
}

impl Endpoints {
    pub fn register(&self, url: String, key: Option<String>) {
        self.list
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Endpoint { url, key });
    }

    pub fn delivered(&self) -> u64 {
        *self
            .delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Posts one context per changed table of the round (in the background).
    pub fn deliver(self: &std::sync::Arc<Self>, base_host: String, summary: &MutationSummary) {
        let endpoints = self
            .list
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if endpoints.is_empty() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut events = Vec::new();
        for (name, c) in &summary.entity_sets {
            let Some(set) = Set::from_name(name) else {
                continue;
            };
            let message = if c.updated > 0 {
                "Update"
            } else if c.inserted > 0 {
                "Create"
            } else if c.deleted > 0 {
                "Delete"
            } else {
                continue;
            };
            events.push((set, message, context(set, message, summary.version)));
        }
        let me = self.clone();
        handle.spawn(async move {
            let Ok(client) = crate::http::shared_client() else {
                return;
            };
            for ep in &endpoints {
                let url = match &ep.key {
                    Some(k) => format!(
                        "{}{}code={}",
                        ep.url,
                        if ep.url.contains('?') { '&' } else { '?' },
                        url::form_urlencoded::byte_serialize(k.as_bytes()).collect::<String>()
                    ),
                    None => ep.url.clone(),
                };
                for (set, message, body) in &events {
                    for _attempt in 0..2 {
                        let r = client
                            .post(&url)
                            .timeout(Duration::from_secs(60))
                            .header("x-ms-dynamics-organization", base_host.as_str())
                            .header("x-ms-dynamics-entity-name", set.logical())
                            .header("x-ms-dynamics-request-name", *message)
                            .header(
                                "x-ms-correlation-request-id",
                                "c0ffee00-0000-4000-8000-000000000000",
                            )
                            .json(body)
                            .send()
                            .await;
                        *me.delivered.lock().unwrap_or_else(PoisonError::into_inner) += 1;
                        match r.map(|r| r.status().as_u16()) {
                            Ok(502..=504) => continue,
                            _ => break,
                        }
                    }
                }
            }
        });
    }
}
