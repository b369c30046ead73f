//! Business Central webhook receiver: the `validationToken` handshake (echo the token as
//! `text/plain`, 200 — BC sends it on subscription create and renew, within ~5 s), then
//! notifications `{"value":[{subscriptionId, clientState, resource, changeType, …}]}` whose
//! every item must carry the connection's `clientState` and name a subscription mlc holds.
//! Notifications carry no record data: each names an entity set, and the stream of that set
//! runs incrementally (a `collection` notice — more than 1000 changes — gets the same
//! incremental pass, which reads them all). A `deleted` or `collection` notice also asks for a
//! key-set pass of the stream: a cursor read never sees a deleted row.
//!
//! The status answered matters more than usual: BC retries only 408, 429 and 5xx, and deletes
//! the subscription on any other non-success status. So our own troubles (vault unreadable, a
//! connection configured for webhooks but not loaded, the state store failing) answer 503, and
//! 4xx is kept for requests that are forged or malformed — including a notification for a
//! subscription we do not hold, whose deletion at BC is then welcome.
//!
//! `mlc webhooks register` creates (or renews) the subscriptions (`subscriptions.rs`).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::subscriptions::BcSubscriptions;
use crate::connect::endpoint;
use crate::error::{Error, Result};
use crate::serve::receiver::{Receiver, Refusal, Registration};
use crate::serve::secrets;
use crate::systems::system::System;
use crate::vault::Secrets;

const SYSTEM: System = System::BusinessCentral;

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

/// What a request body holds once checked: the subscriptions it names and, per stream, whether
/// a key-set pass is wanted.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub subscription_ids: BTreeSet<String>,
    pub client_states: Vec<String>,
    /// (entity set, whether the notice may hide a delete), resources without one left out.
    pub changes: Vec<(String, bool)>,
}

/// Why a body is refused (all 400: the sender's fault).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    Malformed,
    Empty,
}

impl BodyError {
    fn reason(self) -> &'static str {
        match self {
            BodyError::Malformed => "malformed notification",
            BodyError::Empty => "empty notification",
        }
    }
}

/// Decodes a notification body (a UTF-8 BOM tolerated: BC stopped sending one in v19, older
/// servers may still). Never panics; any body that is not a non-empty `value` list of
/// notification objects is an error.
pub fn parse_notifications(body: &[u8]) -> Result<Parsed, BodyError> {
    let raw = body
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(body);
    let n: Notifications = serde_json::from_slice(raw).map_err(|_| BodyError::Malformed)?;
    if n.value.is_empty() {
        return Err(BodyError::Empty);
    }
    let mut out = Parsed::default();
    for i in n.value {
        if let Some(set) = entity_set(&i.resource) {
            out.changes
                .push((set.to_string(), hides_delete(&i.change_type)));
        }
        out.subscription_ids.insert(i.subscription_id);
        out.client_states.push(i.client_state);
    }
    Ok(out)
}

/// `deleted` names a deleted row; `collection` stands for more than 1000 changes, deletes
/// possibly among them. Either way only a pass over every key finds them.
fn hides_delete(change_type: &str) -> bool {
    change_type.eq_ignore_ascii_case("deleted") || change_type.eq_ignore_ascii_case("collection")
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
    // Configured for webhooks yet without routes: our setup, not the sender, is wrong.
    if rx.routes.connection(&connection).is_none() && rx.webhooks.contains_key(&connection) {
        return rx.reject(
            SYSTEM,
            &connection,
            StatusCode::SERVICE_UNAVAILABLE,
            "connection configured but not loaded",
        );
    }
    let routes = match rx.routes_of(SYSTEM, &connection) {
        Ok(r) => r,
        Err(answer) => return *answer,
    };
    let n = match parse_notifications(&body) {
        Ok(n) => n,
        Err(e) => return rx.reject(SYSTEM, &connection, StatusCode::BAD_REQUEST, e.reason()),
    };
    let held = match rx.state.serve_subscriptions(&connection) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(connection = %connection, error = %e, "state store: cannot read the subscriptions");
            return rx.reject(
                SYSTEM,
                &connection,
                StatusCode::SERVICE_UNAVAILABLE,
                "state store unavailable",
            );
        }
    };
    // Every item checked before anything is queued: one forged item rejects the request.
    let check = |s: &Secrets| -> Result<(), Refusal> {
        let Some(state) = s.get("client_state") else {
            // Subscriptions made with a clientState the vault lost: keep them alive while
            // someone looks; with none held, nobody legitimate can be calling.
            return Err(if held.is_empty() {
                (
                    StatusCode::UNAUTHORIZED,
                    "no clientState stored: run `mlc webhooks register` for this connection",
                )
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "clientState missing from the vault",
                )
            });
        };
        if n.client_states
            .iter()
            .all(|c| secrets::matches(c.as_bytes(), state))
        {
            Ok(())
        } else {
            Err((StatusCode::UNAUTHORIZED, "wrong clientState"))
        }
    };
    if let Err((status, reason)) = rx.secrets.verify(&connection, check) {
        return rx.reject(SYSTEM, &connection, status, reason);
    }
    // A valid clientState is not enough: it is one secret per connection, and a notice for a
    // subscription we never made (or replaced) must not run anything. The 4xx also makes BC
    // delete such a stray subscription.
    if !n
        .subscription_ids
        .iter()
        .all(|id| held.iter().any(|h| h.subscription_id == *id))
    {
        return rx.reject(
            SYSTEM,
            &connection,
            StatusCode::FORBIDDEN,
            "unknown subscriptionId",
        );
    }
    rx.metrics.received(SYSTEM);
    let mut streams = BTreeSet::new();
    let mut keyset = BTreeSet::new();
    for (set, deletes) in &n.changes {
        match routes.stream_for(set) {
            Some(s) => {
                streams.insert(s.to_string());
                if *deletes {
                    keyset.insert(s.to_string());
                }
            }
            None => {
                tracing::info!(connection = %connection, entity_set = %set, "notification for an entity set no stream reads")
            }
        }
    }
    tracing::info!(connection = %connection, subscriptions = ?n.subscription_ids, streams = ?streams, keyset = ?keyset, "business central notification");
    for s in &keyset {
        if let Err(e) = rx.state.serve_request_keyset(&connection, s) {
            tracing::error!(connection = %connection, stream = %s, error = %e, "state store: cannot record the key-set request");
            return rx.reject(
                SYSTEM,
                &connection,
                StatusCode::SERVICE_UNAVAILABLE,
                "state store unavailable",
            );
        }
    }
    rx.trigger(SYSTEM, &connection, streams)
}

/// `mlc webhooks register` for a Business Central connection: its subscriptions, created through
/// the API (`mlc serve` must be reachable at `serve.public_url`, which BC calls during creation).
pub(crate) async fn register(reg: &Registration<'_>) -> Result<String> {
    let Registration {
        vault,
        conn,
        url,
        webhook: w,
        ..
    } = reg;
    let mgr = BcSubscriptions::new(
        conn,
        vault,
        endpoint(conn, vault)?,
        w.bc_resources(),
        &reg.public,
        reg.renew_before_hours,
        reg.state.clone(),
    )?;
    let r = mgr.ensure(chrono::Utc::now()).await.map_err(|e| {
        Error::config(format!(
            "{e}\nBusiness Central calls {url}?validationToken=… while creating a subscription: `mlc serve` must be running and reachable there (serve.public_url)"
        ))
    })?;
    if let Some(owner) = &r.left_to {
        return Ok(format!(
            "business central subscriptions of `{}` are being kept by another mlc worker ({owner}) right now: run this again in a few minutes\n",
            conn.name
        ));
    }
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

    #[test]
    fn notices_that_may_hide_a_delete_ask_for_a_keyset_pass() {
        let body = br#"{"value":[
            {"subscriptionId":"a","clientState":"s","resource":"api/v2.0/companies(1)/customers(2)","changeType":"deleted"},
            {"subscriptionId":"a","clientState":"s","resource":"api/v2.0/companies(1)/items(2)","changeType":"updated"},
            {"subscriptionId":"b","clientState":"s","resource":"/api/v2.0/companies(1)/vendors?$filter=x","changeType":"collection"},
            {"subscriptionId":"b","clientState":"s","resource":"/api/v2.0/companies(1)","changeType":"updated"}]}"#;
        let p = parse_notifications(body).unwrap();
        assert_eq!(
            p.changes,
            vec![
                ("customers".to_string(), true),
                ("items".to_string(), false),
                ("vendors".to_string(), true)
            ]
        );
        assert_eq!(p.subscription_ids.len(), 2);
        assert_eq!(p.client_states.len(), 4);
        let bom = [b"\xEF\xBB\xBF".as_slice(), body.as_slice()].concat();
        assert_eq!(parse_notifications(&bom).unwrap(), p);
        assert_eq!(
            parse_notifications(b"{\"value\":[]}"),
            Err(BodyError::Empty)
        );
        assert_eq!(parse_notifications(b"\xEF\xBB"), Err(BodyError::Malformed));
    }
}
