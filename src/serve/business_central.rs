//! Business Central webhook receiver: the `validationToken` handshake (echo the token as
//! `text/plain`, 200 — BC sends it on subscription create and renew, within ~5 s), then
//! notifications `{"value":[{subscriptionId, clientState, resource, changeType, …}]}` whose
//! every item must carry the connection's `clientState`. Notifications carry no record data:
//! each names an entity set, and the stream of that set runs incrementally (a `collection`
//! notice — more than 1000 changes — gets the same incremental pass, which reads them all).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::http::{Receiver, Refusal};
use super::secrets;
use crate::vault::Secrets;

const SYSTEM: &str = "business_central";

#[derive(Debug, Deserialize)]
struct Notifications {
    value: Vec<Notification>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Notification {
    #[serde(default)]
    subscription_id: String,
    client_state: String,
    resource: String,
    change_type: String,
}

/// The entity set a notification resource names:
/// `api/v2.0/companies(…)/customers(…)` or `/api/v2.0/companies(…)/customers?$filter=…` →
/// `customers`.
pub fn entity_set(resource: &str) -> Option<&str> {
    let path = resource.split('?').next()?.trim_end_matches('/');
    let last = path.rsplit('/').next()?;
    let set = last.split('(').next()?;
    (!set.is_empty() && !set.starts_with("companies")).then_some(set)
}

fn validation_token(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "validationToken")
        .map(|(_, v)| v.into_owned())
}

fn echo(token: String) -> Response {
    if token.len() > 4096 {
        return (StatusCode::BAD_REQUEST, "validationToken too long\n").into_response();
    }
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], token).into_response()
}

/// GET: only the handshake is answered.
pub async fn handshake_only(
    State(rx): State<Arc<Receiver>>,
    Path(connection): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    match validation_token(query.as_deref()) {
        Some(t) => echo(t),
        None => rx.reject(
            SYSTEM,
            &connection,
            StatusCode::BAD_REQUEST,
            "GET without validationToken",
        ),
    }
}

pub async fn receive(
    State(rx): State<Arc<Receiver>>,
    Path(connection): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    if let Some(t) = validation_token(query.as_deref()) {
        return echo(t);
    }
    let routes = match rx.routes_of(SYSTEM, &connection) {
        Ok(r) => r,
        Err(answer) => return *answer,
    };
    // BC stopped sending a BOM in v19; older servers may still.
    let raw = body
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(&body);
    let n: Notifications = match serde_json::from_slice(raw) {
        Ok(n) => n,
        Err(_) => {
            return rx.reject(
                SYSTEM,
                &connection,
                StatusCode::BAD_REQUEST,
                "malformed notification",
            );
        }
    };
    if n.value.is_empty() {
        return rx.reject(
            SYSTEM,
            &connection,
            StatusCode::BAD_REQUEST,
            "empty notification",
        );
    }
    // Every item checked before anything is queued: one forged item rejects the request.
    let check = |s: &Secrets| -> Result<(), Refusal> {
        let state = s.get("client_state").ok_or((
            StatusCode::UNAUTHORIZED,
            "no clientState stored: run `mlc webhooks register` for this connection",
        ))?;
        if n.value
            .iter()
            .all(|i| secrets::matches(i.client_state.as_bytes(), state))
        {
            Ok(())
        } else {
            Err((StatusCode::UNAUTHORIZED, "wrong clientState"))
        }
    };
    if let Err((status, reason)) = rx.secrets.verify(&connection, check) {
        return rx.reject(SYSTEM, &connection, status, reason);
    }
    rx.metrics.received(SYSTEM);
    let mut streams = BTreeSet::new();
    for i in &n.value {
        match entity_set(&i.resource).and_then(|s| routes.stream_for(s)) {
            Some(s) => {
                tracing::info!(connection = %connection, subscription = %i.subscription_id, change = %i.change_type, stream = s, "business central notification");
                streams.insert(s.to_string());
            }
            None => {
                tracing::info!(connection = %connection, resource = %i.resource, "notification for a resource no stream reads")
            }
        }
    }
    if streams.is_empty() {
        return (StatusCode::OK, "no stream\n").into_response();
    }
    let outcome = rx
        .queue
        .submit(rx.routes.webhook_trigger(SYSTEM, &connection, streams));
    (StatusCode::OK, format!("{outcome:?}\n").to_lowercase()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_set_of_resources() {
        assert_eq!(
            entity_set("api/v2.0/companies(4f1c)/customers(0a9d)"),
            Some("customers")
        );
        assert_eq!(
            entity_set(
                "/api/v2.0/companies(4f1c)/customers?$filter=lastModifiedDateTime%20gt%202024"
            ),
            Some("customers")
        );
        assert_eq!(entity_set("/api/v2.0/companies(4f1c)"), None);
    }
}
