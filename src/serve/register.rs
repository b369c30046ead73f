//! `mlc webhooks register <connection|system>`: creates the Pipedrive webhooks
//! (`POST /v1/webhooks`, Basic auth credentials generated and kept in the vault) and the
//! Business Central subscriptions (through the API; `mlc serve` must be reachable at
//! `serve.public_url` because BC calls it during creation), and prints the exact steps to
//! register the Dataverse service endpoint (Dataverse has no API mlc may call for that with
//! read-only app users, and admins usually register it with the Plugin Registration Tool).

use std::sync::Arc;

use reqwest::Method;
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::config::{Config, Connection};
use crate::connect::endpoint;
use crate::error::{Error, Result};
use crate::http::Idempotency;
use crate::state::StateStore;
use crate::systems::system::System;
use crate::vault::Vault;

use super::secrets;
use super::subscriptions::BcSubscriptions;

/// The webhook URL of a connection.
pub fn webhook_url(public_base: &str, conn: &Connection) -> String {
    format!("{public_base}/webhooks/{}/{}", conn.system(), conn.name)
}

#[derive(Debug, Deserialize)]
struct PdList {
    #[serde(default)]
    data: Option<Vec<PdHook>>,
}

#[derive(Debug, Deserialize)]
struct PdHook {
    #[serde(default)]
    id: serde_json::Value,
    #[serde(default)]
    subscription_url: String,
    #[serde(default)]
    event_object: String,
}

/// Registers the webhooks of `conn`; returns what to print.
pub async fn register(
    config: &Config,
    vault: &Vault,
    state: Arc<StateStore>,
    conn: &Connection,
) -> Result<String> {
    let public = config.serve.public_base();
    let url = webhook_url(&public, conn);
    let w = config
        .serve
        .webhooks
        .get(&conn.name)
        .cloned()
        .unwrap_or_default();
    match conn.system() {
        System::Dataverse => {
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
        System::Pipedrive => {
            let (password, _) = secrets::get_or_create(vault, &conn.name, "password")?;
            let ep = endpoint(conn, vault)?;
            let base = ep.base.trim_end_matches('/').to_string();
            let list = ep
                .http
                .get(
                    &format!("{base}/api/v1/webhooks"),
                    &Default::default(),
                    "webhooks",
                )
                .await?;
            let existing: PdList =
                serde_json::from_slice(&list.body).unwrap_or(PdList { data: None });
            let existing = existing.data.unwrap_or_default();
            let mut out = String::new();
            for object in w.pipedrive_objects() {
                if let Some(h) = existing
                    .iter()
                    .find(|h| h.subscription_url == url && h.event_object == object)
                {
                    out.push_str(&format!(
                        "pipedrive webhook {} for {object} already exists\n",
                        h.id
                    ));
                    continue;
                }
                let body = serde_json::json!({
                    // Required by the v1 API; shown in Pipedrive's webhook settings.
                    "name": format!("mlc {} {object}", conn.name),
                    "subscription_url": url,
                    "event_action": "*",
                    "event_object": object,
                    "http_auth_user": w.basic_user(),
                    "http_auth_password": password.expose_secret(),
                    "version": w.pipedrive_version(),
                });
                let r = ep
                    .http
                    .send(
                        Method::POST,
                        &format!("{base}/api/v1/webhooks"),
                        "webhooks",
                        Idempotency::Unsafe,
                        |rb| rb.json(&body),
                    )
                    .await?;
                let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
                out.push_str(&format!(
                    "pipedrive webhook {} created: *.{object} -> {url} (Basic auth user `{}`, password in the vault)\n",
                    v.pointer("/data/id").cloned().unwrap_or_default(),
                    w.basic_user()
                ));
            }
            Ok(out)
        }
        System::BusinessCentral => {
            let mgr = BcSubscriptions::new(
                conn,
                vault,
                endpoint(conn, vault)?,
                w.bc_resources(),
                &public,
                config.serve.renew_before_hours,
                state,
            )?;
            let r = mgr.ensure(chrono::Utc::now()).await.map_err(|e| {
                Error::Config(format!(
                    "{e}\nBusiness Central calls {url}?validationToken=… while creating a subscription: `mlc serve` must be running and reachable there (serve.public_url)"
                ))
            })?;
            let mut out = String::new();
            for (what, list) in [
                ("created", &r.created),
                ("renewed", &r.renewed),
                ("recreated", &r.recreated),
                ("kept", &r.kept),
            ] {
                for res in list {
                    out.push_str(&format!(
                        "business central subscription {what}: {res} -> {url}\n"
                    ));
                }
            }
            out.push_str("`mlc serve` renews them before their 3-day expiry and recreates them if Business Central drops them.\n");
            Ok(out)
        }
        other @ (System::Deltek | System::Looker) => Err(Error::Config(format!(
            "{other} has no webhooks mlc can register (Deltek webhooks are workflow actions; Looker is read on schedule)"
        ))),
    }
}
