//! Dataverse webhook receiver: a service endpoint (contract Webhook) POSTs the
//! RemoteExecutionContext of each registered step. Dataverse does not sign payloads, so the
//! shared key is the only proof: `?code=` for auth type WebhookKey, or the configured header
//! (HttpHeader) or query parameter (HttpQueryString), compared in constant time.
//!
//! `mlc webhooks register` prints the steps to register the service endpoint, with the key.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::error::Result;
use crate::serve::receiver::{Receiver, Refusal, Registration};
use crate::serve::secrets;
use crate::systems::system::System;
use crate::vault::Secrets;

const SYSTEM: System = System::Dataverse;

/// The parts of a RemoteExecutionContext mlc needs.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecutionContext {
    pub message_name: String,
    pub primary_entity_name: String,
    pub primary_entity_id: String,
    #[serde(default)]
    pub output_parameters: Vec<KeyValue>,
}

#[derive(Debug, Deserialize)]
pub struct KeyValue {
    pub key: String,
    #[serde(default)]
    pub value: serde_json::Value,
}

/// Tables an event means: its own, and for QualifyLead the records it created.
pub fn entities(ctx: &ExecutionContext) -> Option<BTreeSet<String>> {
    let own = ctx.primary_entity_name.to_ascii_lowercase();
    let mut out = BTreeSet::new();
    match ctx.message_name.as_str() {
        "Create" | "Update" | "Delete" | "Assign" | "SetState" | "SetStateDynamicEntity" => {
            out.insert(own);
        }
        // Win/Lose close an opportunity (PrimaryEntityName = opportunity).
        "Win" | "Lose" => {
            out.insert(own);
        }
        "QualifyLead" => {
            out.insert(own);
            let created: Vec<String> = ctx
                .output_parameters
                .iter()
                .filter(|kv| kv.key == "CreatedEntities")
                .flat_map(|kv| kv.value.as_array().cloned().unwrap_or_default())
                .filter_map(|r| {
                    r.get("LogicalName")
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                })
                .collect();
            if created.is_empty() {
                // The created records are not in the context when it was trimmed (> 256 KB).
                out.extend(["account", "contact", "opportunity"].map(String::from));
            } else {
                out.extend(created);
            }
        }
        _ => return None,
    }
    Some(out)
}

fn query_param(raw: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub async fn receive(
    State(rx): State<Arc<Receiver>>,
    Path(connection): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let routes = match rx.routes_of(SYSTEM, &connection) {
        Ok(r) => r,
        Err(answer) => return *answer,
    };
    let cfg = rx.webhook(&connection);
    let presented = match &cfg.key_header {
        Some(h) => headers.get(h.as_str()).map(|v| v.as_bytes().to_vec()),
        None => query_param(query.as_deref(), cfg.key_query.as_deref().unwrap_or("code"))
            .map(String::into_bytes),
    };
    let check = |s: &Secrets| -> Result<(), Refusal> {
        let key = s.get("key").ok_or((
            StatusCode::UNAUTHORIZED,
            "no webhook key stored: run `mlc webhooks register` for this connection",
        ))?;
        let p = presented
            .as_ref()
            .ok_or((StatusCode::UNAUTHORIZED, "missing key"))?;
        if secrets::matches(p, key) {
            Ok(())
        } else {
            Err((StatusCode::UNAUTHORIZED, "wrong key"))
        }
    };
    if let Err((status, reason)) = rx.secrets.verify(&connection, check) {
        return rx.reject(SYSTEM, &connection, status, reason);
    }
    let ctx: ExecutionContext = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(_) => {
            return rx.reject(
                SYSTEM,
                &connection,
                StatusCode::BAD_REQUEST,
                "malformed RemoteExecutionContext",
            );
        }
    };
    rx.metrics.received(SYSTEM);
    let Some(names) = entities(&ctx) else {
        tracing::info!(connection = %connection, sdk_message = %ctx.message_name, "dataverse message not acted on");
        return (StatusCode::OK, "ignored\n").into_response();
    };
    let streams: BTreeSet<String> = names
        .iter()
        .filter_map(|n| routes.stream_for(n).map(str::to_string))
        .collect();
    tracing::info!(connection = %connection, sdk_message = %ctx.message_name, entity = %ctx.primary_entity_name, id = %ctx.primary_entity_id, streams = ?streams, "dataverse event");
    rx.trigger(SYSTEM, &connection, streams)
}

/// `mlc webhooks register` for a Dataverse connection: the webhook key, generated once and kept
/// in the vault, and the steps to register the service endpoint (Dataverse has no API mlc may
/// call for that with read-only app users; admins use the Plugin Registration Tool).
pub(crate) async fn register(reg: &Registration<'_>) -> Result<String> {
    let Registration {
        vault,
        conn,
        url,
        webhook: w,
        ..
    } = reg;
    let (key, fresh) = secrets::get_or_create(vault, &conn.name, "key")?;
    let (how, value_line) = match (&w.key_header, &w.key_query) {
        (Some(h), _) => (
            "HttpHeader".to_string(),
            format!("   Key: {h}   Value: {}", key.expose_secret()),
        ),
        (None, Some(q)) if q != "code" => (
            "HttpQueryString".to_string(),
            format!("   Key: {q}   Value: {}", key.expose_secret()),
        ),
        _ => (
            "WebhookKey".to_string(),
            format!("   Value: {}", key.expose_secret()),
        ),
    };
    Ok(format!(
        "Dataverse cannot be told about webhooks by mlc; register the service endpoint once ({}):\n\
         1. Open the Plugin Registration Tool (pac tool prt), connect to {}.\n\
         2. Register > Register New Web Hook.\n\
         3. Name: mlc-{}   Endpoint URL: {url}\n\
         4. Authentication: {how}\n{value_line}\n\
         5. Save. Then, for each table mlc should hear about, right-click the web hook > Register New Step:\n\
         \x20  Message: Create / Update / Delete (and Win for opportunity, QualifyLead for lead),\n\
         \x20  Primary Entity: the table (account, contact, opportunity, lead, ...),\n\
         \x20  Event Pipeline Stage: PostOperation, Execution Mode: Asynchronous.\n\
         The key is stored encrypted in the vault (entry webhook.{}); it is shown here only so you can paste it.\n",
        if fresh {
            "a new key was generated"
        } else {
            "the stored key is reused"
        },
        conn.url(),
        conn.name,
        conn.name,
    ))
}
