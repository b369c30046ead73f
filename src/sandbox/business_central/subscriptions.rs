//! Business Central webhook subscriptions (`api/v2.0/subscriptions`), as the service behaves:
//! create and renew first call `notificationUrl?validationToken=…` and require a 200 echoing
//! the token within 5 s (else 400); a subscription lives 3 days; renew is a PATCH with
//! `If-Match`; the key is a quoted string (`subscriptions('id')`); after each mutation round
//! subscribers of a changed entity set get a `{"value":[…]}` notification: one item per
//! changed record (`created` / `updated` / `deleted`, no record data), or one `collection`
//! item past 1000 changes. Delivery follows the reference (B7): an answer of 408, 429 or 5xx
//! is retried, any other non-success status deletes the subscriptions the notice was for.
//! Differences: notices are sent at once, not ~30 s later, and retried [`RETRIES`] times a
//! fraction of a second apart instead of over ~36 h. The reference does not say what BC does
//! when the notification URL does not answer at all (refused connection, timeout); this fake
//! treats that as retryable and keeps the subscription.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::http::Method;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::Reply;

/// Lifetime BC grants a subscription.
const LIFETIME_DAYS: i64 = 3;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Above this many changes in a round, BC sends one `collection` notice instead.
const COLLECTION_THRESHOLD: usize = 1000;

/// Deliveries after the first when the answer is retryable, and the wait before the first
/// retry (doubled each time): BC spreads its retries over ~36 h; a test waits ~1.5 s.
pub const RETRIES: u32 = 4;
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(100);

/// Whether BC retries a notification that got `status` (reference B7: 408, 429, 5xx).
pub fn retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// One attempt to deliver a notice, as the fake logs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub subscription_ids: Vec<String>,
    /// The status answered; `None` when the URL did not answer.
    pub status: Option<u16>,
    /// 0 for the first attempt.
    pub attempt: u32,
}

/// A record a mutation round changed.
#[derive(Debug, Clone)]
pub struct Changed {
    pub company_id: String,
    pub entity_set: &'static str,
    pub id: String,
    /// `created`, `updated` or `deleted`.
    pub change: &'static str,
    pub modified_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    pub notification_url: String,
    pub resource: String,
    pub client_state: String,
    pub expires: DateTime<Utc>,
    pub version: u64,
    pub modified: DateTime<Utc>,
}

impl Subscription {
    fn etag(&self) -> String {
        format!("W/\"JzQ0O{}{}Oyc=\"", self.id.len(), self.version)
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "@odata.etag": self.etag(),
            "subscriptionId": self.id,
            "notificationUrl": self.notification_url,
            "resource": self.resource,
            "userId": "00000000-0000-0000-0000-000000000001",
            "lastModifiedDateTime": self.modified.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "clientState": self.client_state,
            "expirationDateTime": self.expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "systemCreatedAt": self.modified.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        })
    }
}

#[derive(Debug, Default)]
pub struct Subscriptions {
    subs: Mutex<BTreeMap<String, Subscription>>,
    next: Mutex<u64>,
    handshakes: Mutex<u64>,
    deliveries: Mutex<Vec<Delivery>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    notification_url: String,
    resource: String,
    #[serde(default)]
    client_state: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Subscriptions {
    fn purge_expired(&self) {
        let now = Utc::now();
        lock(&self.subs).retain(|_, s| s.expires > now);
    }

    /// Live subscriptions.
    pub fn list(&self) -> Vec<Subscription> {
        self.purge_expired();
        lock(&self.subs).values().cloned().collect()
    }

    /// Handshakes answered correctly so far (create + renew).
    pub fn handshakes(&self) -> u64 {
        *lock(&self.handshakes)
    }

    /// Every notification delivery attempt so far, in order of completion.
    pub fn deliveries(&self) -> Vec<Delivery> {
        lock(&self.deliveries).clone()
    }

    /// Deletes a subscription as BC does after a failed delivery; false if unknown.
    pub fn drop_one(&self, id: &str) -> bool {
        lock(&self.subs).remove(id).is_some()
    }

    async fn handshake(&self, url: &str) -> Result<(), String> {
        let mut token = [0u8; 16];
        rand::fill(&mut token);
        let token = hex::encode(token);
        let sep = if url.contains('?') { '&' } else { '?' };
        let client = crate::http::shared_client().map_err(|e| e.to_string())?;
        let r = client
            .post(format!("{url}{sep}validationToken={token}"))
            .timeout(HANDSHAKE_TIMEOUT)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "the notification URL did not answer: {}",
                    crate::http::describe_reqwest_error(&e)
                )
            })?;
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        if status != 200 || body.trim() != token {
            return Err(format!(
                "the notification URL answered {status} without echoing the validation token"
            ));
        }
        *lock(&self.handshakes) += 1;
        Ok(())
    }

    /// `rest` is `subscriptions` or `subscriptions('id')`.
    pub async fn handle(
        &self,
        rest: &str,
        method: &Method,
        headers: &axum::http::HeaderMap,
        body: &[u8],
    ) -> Reply {
        self.purge_expired();
        let id = rest
            .strip_prefix("subscriptions")
            .unwrap_or_default()
            .trim_start_matches('(')
            .trim_end_matches(')')
            .trim_matches('\'')
            .to_string();
        if id.is_empty() {
            return match *method {
                Method::GET => {
                    let list: Vec<_> = self.list().iter().map(Subscription::json).collect();
                    Reply::json(
                        serde_json::json!({ "value": list })
                            .to_string()
                            .into_bytes(),
                    )
                }
                Method::POST => self.create(body).await,
                _ => Reply::error(405, "BadRequest_MethodNotAllowed", "Method not allowed."),
            };
        }
        let Some(existing) = lock(&self.subs).get(&id).cloned() else {
            return Reply::error(
                404,
                "BadRequest_NotFound",
                &format!("The subscription '{id}' does not exist."),
            );
        };
        match *method {
            Method::GET => Reply::json(existing.json().to_string().into_bytes()),
            Method::PATCH | Method::DELETE => {
                let Some(tag) = headers.get("if-match").and_then(|v| v.to_str().ok()) else {
                    return Reply::error(
                        400,
                        "BadRequest_InvalidToken",
                        "Could not validate the client concurrency token required by the service. Please provide a valid token in the client request.",
                    );
                };
                if tag != "*" && tag != existing.etag() {
                    return Reply::error(
                        409,
                        "Request_EntityChanged",
                        "Another user has already changed the record.",
                    );
                }
                if *method == Method::DELETE {
                    lock(&self.subs).remove(&id);
                    return Reply {
                        status: 204,
                        content_type: "application/json",
                        headers: Vec::new(),
                        body: Vec::new(),
                    };
                }
                if let Err(m) = self.handshake(&existing.notification_url).await {
                    return Reply::error(400, "BadRequest", &m);
                }
                let mut subs = lock(&self.subs);
                let Some(s) = subs.get_mut(&id) else {
                    return Reply::error(
                        404,
                        "BadRequest_NotFound",
                        "The subscription does not exist.",
                    );
                };
                let now = Utc::now();
                s.expires = now + chrono::Duration::days(LIFETIME_DAYS);
                s.modified = now;
                s.version += 1;
                Reply::json(s.json().to_string().into_bytes())
            }
            _ => Reply::error(405, "BadRequest_MethodNotAllowed", "Method not allowed."),
        }
    }

    async fn create(&self, body: &[u8]) -> Reply {
        let Ok(b) = serde_json::from_slice::<Body>(body) else {
            return Reply::error(
                400,
                "BadRequest",
                "The request body must be a subscription with notificationUrl and resource.",
            );
        };
        if !(b.notification_url.starts_with("http://")
            || b.notification_url.starts_with("https://"))
        {
            return Reply::error(
                400,
                "BadRequest",
                "notificationUrl must be an absolute URL.",
            );
        }
        if b.client_state.len() > 2048 {
            return Reply::error(
                400,
                "Application_StringExceededLength",
                "clientState is too long.",
            );
        }
        if lock(&self.subs).len() >= 200 {
            return Reply::error(
                400,
                "BadRequest",
                "The maximum number of subscriptions (200) is reached.",
            );
        }
        if let Err(m) = self.handshake(&b.notification_url).await {
            return Reply::error(400, "BadRequest", &m);
        }
        let n = {
            let mut g = lock(&self.next);
            *g += 1;
            *g
        };
        let now = Utc::now();
        let s = Subscription {
            id: format!("{:032x}", 0x5B5C_0000_0000_u64 + n),
            notification_url: b.notification_url,
            resource: b.resource,
            client_state: b.client_state,
            expires: now + chrono::Duration::days(LIFETIME_DAYS),
            version: 1,
            modified: now,
        };
        let json = s.json();
        lock(&self.subs).insert(s.id.clone(), s);
        let mut r = Reply::json(json.to_string().into_bytes());
        r.status = 201;
        r
    }

    /// After a mutation round: to each subscriber, one notice per changed record of its
    /// company and entity set (`created`, `updated`, `deleted`), or a single `collection`
    /// notice with a `lastModifiedDateTime` filter when more than 1000 changed, batched per
    /// notification URL as BC does.
    pub fn notify(self: &std::sync::Arc<Self>, records: Vec<Changed>) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let iso = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        let mut by_url: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
        for s in self.list() {
            let mine: Vec<&Changed> = records
                .iter()
                .filter(|r| {
                    s.resource.trim_start_matches('/')
                        == format!("api/v2.0/companies({})/{}", r.company_id, r.entity_set)
                })
                .collect();
            let Some(first) = mine.iter().map(|r| r.modified_ms).min() else {
                continue;
            };
            let item = |resource: String, change: &str, ms: i64| {
                serde_json::json!({
                    "subscriptionId": s.id,
                    "clientState": s.client_state,
                    "expirationDateTime": s.expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "resource": resource,
                    "changeType": change,
                    "lastModifiedDateTime": iso(ms),
                })
            };
            let base = s.resource.trim_start_matches('/').to_string();
            let out = by_url.entry(s.notification_url.clone()).or_default();
            if mine.len() > COLLECTION_THRESHOLD {
                let last = mine.iter().map(|r| r.modified_ms).max().unwrap_or(first);
                out.push(item(
                    format!(
                        "/{base}?$filter=lastModifiedDateTime%20gt%20{}",
                        iso(first - 1)
                    ),
                    "collection",
                    last,
                ));
            } else {
                for r in mine {
                    out.push(item(format!("{base}({})", r.id), r.change, r.modified_ms));
                }
            }
        }
        for (url, items) in by_url {
            let me = self.clone();
            handle.spawn(async move {
                let Ok(client) = crate::http::shared_client() else {
                    return;
                };
                let ids: Vec<String> = items
                    .iter()
                    .filter_map(|i| {
                        i.get("subscriptionId")
                            .and_then(|v| v.as_str())
                            .map(String::from)
                    })
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let body = serde_json::json!({ "value": items });
                let mut wait = FIRST_RETRY_WAIT;
                for attempt in 0..=RETRIES {
                    let status = client
                        .post(&url)
                        .timeout(Duration::from_secs(10))
                        .json(&body)
                        .send()
                        .await
                        .ok()
                        .map(|r| r.status().as_u16());
                    lock(&me.deliveries).push(Delivery {
                        subscription_ids: ids.clone(),
                        status,
                        attempt,
                    });
                    match status {
                        Some(s) if (200..300).contains(&s) => return,
                        Some(s) if !retryable(s) => {
                            for id in &ids {
                                me.drop_one(id);
                            }
                            return;
                        }
                        // Retryable, or no answer at all: try again later.
                        _ => {}
                    }
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            });
        }
    }
}
