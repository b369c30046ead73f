//! Pipedrive webhooks: `POST/GET /v1/webhooks`, `DELETE /v1/webhooks/{id}` with the real
//! fields (`subscription_url`, `event_action`, `event_object`, `http_auth_user`,
//! `http_auth_password`, `version` "1.0" | "2.0"), at most 40 per user, and delivery after each
//! mutation round: one event per changed row (first 100 a round), v1 (`meta.object`,
//! `current`, `retry`) or v2 (`meta.entity`, `data`, `attempt`, a stable `meta.id`) shape,
//! `Authorization: Basic` when credentials were set. Delivery is at least once on the real
//! service; `pipedrive_webhook_duplicates(n)` makes the fake send every event n extra times,
//! and `pipedrive_webhook_signing(secret)` adds an `x-pipedrive-signature` hex HMAC-SHA256
//! of the body (Pipedrive documents no signature; relays that add one are modelled).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::super::App;
use super::API_TOKEN;
use super::kind::Kind;

#[derive(Debug, Clone)]
pub struct Hook {
    id: u64,
    name: String,
    subscription_url: String,
    event_action: String,
    event_object: String,
    user: Option<String>,
    password: Option<String>,
    version: String,
}

/// One changed row.
#[derive(Debug, Clone)]
pub struct Change {
    pub kind: Kind,
    pub id: i64,
    pub rev: u32,
    pub update_time: i64,
    pub deleted: bool,
    pub added: bool,
}

#[derive(Default)]
pub struct Hooks {
    list: Mutex<Vec<Hook>>,
    next: Mutex<u64>,
    duplicates: Mutex<u32>,
    signing: Mutex<Option<String>>,
    delivered: Mutex<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Deserialize)]
struct Create {
    subscription_url: String,
    event_action: String,
    event_object: String,
    /// Required by the v1 spec (`maxLength` 255).
    name: String,
    #[serde(default)]
    http_auth_user: Option<String>,
    #[serde(default)]
    http_auth_password: Option<String>,
    #[serde(default)]
    version: Option<String>,
}

fn envelope(status: StatusCode, v: serde_json::Value) -> Response {
    (status, Json(v)).into_response()
}

fn authorized(app: &App, headers: &HeaderMap) -> bool {
    if headers.get("x-api-token").and_then(|v| v.to_str().ok()) == Some(API_TOKEN) {
        return true;
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    bearer.is_some_and(|b| app.pipedrive.st().tokens.contains_key(b))
}

fn hook_json(h: &Hook) -> serde_json::Value {
    serde_json::json!({
        "id": h.id, "name": h.name, "company_id": 9, "owner_id": 3, "user_id": 3,
        "event_action": h.event_action, "event_object": h.event_object,
        "subscription_url": h.subscription_url, "version": h.version,
        "is_active": 1, "add_time": "2026-01-01T00:00:00.000Z",
        "http_auth_user": h.user, "http_auth_password": h.password.as_ref().map(|_| "***"),
        "type": "general",
    })
}

pub async fn list(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if !authorized(&app, &headers) {
        return envelope(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"success": false, "error": "unauthorized access", "errorCode": 401}),
        );
    }
    let hooks: Vec<_> = lock(&app.pipedrive.hooks.list)
        .iter()
        .map(hook_json)
        .collect();
    envelope(
        StatusCode::OK,
        serde_json::json!({"status": "ok", "success": true, "data": hooks}),
    )
}

pub async fn create(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let resp = create_hook(&app, &headers, &body);
    // Logged with the writes, body as sent, so tests can check it against the v1 spec.
    app.pipedrive
        .st()
        .writes
        .log
        .push(super::writes::PdWriteLog {
            method: "POST".into(),
            entity: "webhooks".into(),
            id: 0,
            status: resp.status().as_u16(),
            fields: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            dropped: false,
            error_in_2xx: false,
        });
    resp
}

fn create_hook(app: &App, headers: &HeaderMap, body: &[u8]) -> Response {
    if !authorized(app, headers) {
        return envelope(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"success": false, "error": "unauthorized access", "errorCode": 401}),
        );
    }
    let bad = |m: &str| {
        envelope(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"status": "error", "success": false, "errors": {"message": m}}),
        )
    };
    let Ok(c) = serde_json::from_slice::<Create>(body) else {
        return bad("subscription_url, event_action, event_object and name are required");
    };
    if c.name.trim().is_empty() || c.name.chars().count() > 255 {
        return bad("name must be 1 to 255 characters");
    }
    if !c.subscription_url.starts_with("http") {
        return bad("The subscription_url must be a valid URL");
    }
    let version = c.version.unwrap_or_else(|| "1.0".into());
    if version != "1.0" && version != "2.0" {
        return bad("version must be 1.0 or 2.0");
    }
    let hooks = &app.pipedrive.hooks;
    if lock(&hooks.list).len() >= 40 {
        return bad("A user can have at most 40 webhooks");
    }
    let id = {
        let mut n = lock(&hooks.next);
        *n += 1;
        *n
    };
    let h = Hook {
        id,
        name: c.name,
        subscription_url: c.subscription_url,
        event_action: c.event_action,
        event_object: c.event_object,
        user: c.http_auth_user,
        password: c.http_auth_password,
        version,
    };
    let json = hook_json(&h);
    lock(&hooks.list).push(h);
    envelope(
        StatusCode::CREATED,
        serde_json::json!({"status": "ok", "success": true, "data": json}),
    )
}

pub async fn remove(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    if !authorized(&app, &headers) {
        return envelope(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"success": false, "error": "unauthorized access", "errorCode": 401}),
        );
    }
    let mut list = lock(&app.pipedrive.hooks.list);
    let before = list.len();
    list.retain(|h| h.id != id);
    if list.len() == before {
        return envelope(
            StatusCode::NOT_FOUND,
            serde_json::json!({"status": "error", "success": false, "errors": {"message": "Webhook not found"}}),
        );
    }
    envelope(
        StatusCode::OK,
        serde_json::json!({"status": "ok", "success": true}),
    )
}

fn v1_time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

fn v2_time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn payload(h: &Hook, c: &Change, attempt: u32) -> serde_json::Value {
    let object = c.kind.singular();
    if h.version == "2.0" {
        let action = if c.deleted {
            "delete"
        } else if c.added {
            "create"
        } else {
            "change"
        };
        serde_json::json!({
            "meta": {
                "action": action, "entity": object, "entity_id": c.id.to_string(), "version": "2.0",
                "id": format!("{:08x}-{:04x}-4000-8000-{:012x}", c.kind.tag(), c.rev, c.id),
                "company_id": "9", "user_id": "3", "webhook_id": h.id.to_string(), "webhook_owner_id": "3",
                "attempt": attempt, "host": "sandbox.pipedrive.com", "timestamp": v2_time(c.update_time),
                "change_source": "api", "is_bulk_edit": false,
            },
            "data": if c.deleted { serde_json::Value::Null } else { serde_json::json!({"id": c.id, "update_time": v2_time(c.update_time)}) },
            "previous": {},
        })
    } else {
        let action = if c.deleted {
            "deleted"
        } else if c.added {
            "added"
        } else {
            "updated"
        };
        serde_json::json!({
            "v": 1, "event": format!("{action}.{object}"), "retry": attempt - 1,
            "meta": {
                "action": action, "object": object, "id": c.id, "company_id": 9, "user_id": 3,
                "host": "sandbox.pipedrive.com", "timestamp": c.update_time, "webhook_id": h.id.to_string(),
            },
            "current": if c.deleted { serde_json::Value::Null } else { serde_json::json!({"id": c.id, "update_time": v1_time(c.update_time)}) },
            "previous": if c.deleted { serde_json::json!({"id": c.id, "update_time": v1_time(c.update_time)}) } else { serde_json::json!({}) },
        })
    }
}

fn matches(h: &Hook, c: &Change) -> bool {
    let object_ok = h.event_object == "*" || h.event_object == c.kind.singular();
    let action = if c.deleted {
        ["deleted", "delete"]
    } else if c.added {
        ["added", "create"]
    } else {
        ["updated", "change"]
    };
    object_ok && (h.event_action == "*" || action.contains(&h.event_action.as_str()))
}

impl Hooks {
    pub fn set_duplicates(&self, n: u32) {
        *lock(&self.duplicates) = n;
    }

    pub fn set_signing(&self, secret: Option<String>) {
        *lock(&self.signing) = secret;
    }

    pub fn delivered(&self) -> u64 {
        *lock(&self.delivered)
    }

    /// Sends the events of one round (in the background, in order per hook).
    pub fn deliver(self: &Arc<Self>, changes: Vec<Change>) {
        let hooks = lock(&self.list).clone();
        if hooks.is_empty() || changes.is_empty() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let extra = *lock(&self.duplicates);
        let secret = lock(&self.signing).clone();
        let me = self.clone();
        handle.spawn(async move {
            let Ok(client) = crate::http::shared_client() else {
                return;
            };
            for h in &hooks {
                for c in changes.iter().filter(|c| matches(h, c)).take(100) {
                    for attempt in 1..=1 + extra {
                        let body = payload(h, c, attempt).to_string();
                        let mut rb = client
                            .post(&h.subscription_url)
                            .timeout(Duration::from_secs(10))
                            .header("content-type", "application/json");
                        if let Some(u) = &h.user {
                            let p = h.password.clone().unwrap_or_default();
                            rb = rb.header(
                                "authorization",
                                format!(
                                    "Basic {}",
                                    base64::engine::general_purpose::STANDARD
                                        .encode(format!("{u}:{p}"))
                                ),
                            );
                        }
                        if let Some(s) = &secret
                            && let Ok(mut mac) =
                                <Hmac<Sha256> as KeyInit>::new_from_slice(s.as_bytes())
                        {
                            mac.update(body.as_bytes());
                            rb = rb.header(
                                "x-pipedrive-signature",
                                hex::encode(mac.finalize().into_bytes()),
                            );
                        }
                        if rb.body(body).send().await.is_ok() {
                            *lock(&me.delivered) += 1;
                        }
                    }
                }
            }
        });
    }
}
