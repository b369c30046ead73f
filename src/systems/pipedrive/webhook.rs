//! Pipedrive webhook receiver: HTTP Basic credentials as set on the webhook
//! (`http_auth_user` / `http_auth_password`), and — when a `signing_secret` is stored — an
//! HMAC-SHA256 of the raw body (hex, header `serve.webhooks.<c>.signature_header`, default
//! `x-pipedrive-signature`) verified before the body is parsed. Pipedrive's public docs
//! describe Basic auth only; the signature check is for proxies or relays that add one.
//!
//! Delivery is at least once: each event is keyed (v2 `meta.id`; else object, id and update
//! time) and a key seen before (kept in the state store, so across restarts) queues nothing.
//!
//! `mlc webhooks register` creates one webhook per object, with generated Basic credentials.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::Method;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

use crate::connect::endpoint;
use crate::error::Result;
use crate::http::Idempotency;
use crate::serve::queue::{Origin, Submitted};
use crate::serve::receiver::{Receiver, Refusal, Registration};
use crate::serve::secrets;
use crate::systems::system::System;
use crate::vault::Secrets;

const SYSTEM: System = System::Pipedrive;

/// What an event says, whatever its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `deal`, `person`, `organization`, `product`, …
    pub object: String,
    pub id: String,
    /// Dedupe key.
    pub key: String,
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses a v1 (`meta.object`, `current`) or v2 (`meta.entity`, `data`) payload.
pub fn parse(body: &[u8]) -> Option<Event> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let meta = v.get("meta")?.as_object()?;
    let v2 =
        meta.get("version").and_then(Value::as_str) == Some("2.0") || meta.contains_key("entity");
    if v2 {
        let object = text(meta.get("entity"))?;
        let data = v.get("data").filter(|d| d.is_object());
        let id = text(meta.get("entity_id")).or_else(|| text(data.and_then(|d| d.get("id"))))?;
        let key = match text(meta.get("id")) {
            Some(event_id) => format!("v2:{event_id}"),
            None => format!(
                "{object}:{id}:{}",
                text(data.and_then(|d| d.get("update_time")))
                    .or_else(|| text(meta.get("timestamp")))?
            ),
        };
        Some(Event { object, id, key })
    } else {
        let object = text(meta.get("object"))?;
        let current = v.get("current").filter(|d| d.is_object());
        let id = text(meta.get("id")).or_else(|| text(current.and_then(|d| d.get("id"))))?;
        let action = text(meta.get("action")).unwrap_or_default();
        let when = text(current.and_then(|d| d.get("update_time")))
            .or_else(|| text(meta.get("timestamp")))?;
        Some(Event {
            key: format!("{object}:{id}:{action}:{when}"),
            object,
            id,
        })
    }
}

/// `Authorization: Basic …` → (user, password).
fn basic(headers: &HeaderMap) -> Option<(Vec<u8>, Vec<u8>)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let i = raw.iter().position(|b| *b == b':')?;
    Some((raw[..i].to_vec(), raw[i + 1..].to_vec()))
}

/// Hex HMAC-SHA256 of `body` under `secret` (what a signer sends).
pub fn sign(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length: this never fails in practice.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn signature_ok(secret: &str, body: &[u8], presented: &str) -> bool {
    let presented = presented.trim();
    let presented = presented.strip_prefix("sha256=").unwrap_or(presented);
    let Ok(sig) = hex::decode(presented) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

pub async fn receive(
    State(rx): State<Arc<Receiver>>,
    Path(connection): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let routes = match rx.routes_of(SYSTEM, &connection) {
        Ok(r) => r,
        Err(answer) => return *answer,
    };
    let cfg = rx.webhook(&connection);
    let creds = basic(&headers);
    let signature = headers
        .get(
            cfg.signature_header
                .as_deref()
                .unwrap_or("x-pipedrive-signature"),
        )
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let expected_user = secrecy::SecretString::from(cfg.basic_user().to_string());
    let check = |s: &Secrets| -> Result<(), Refusal> {
        let password = s.get("password").ok_or((
            StatusCode::UNAUTHORIZED,
            "no webhook password stored: run `mlc webhooks register` for this connection",
        ))?;
        let (user, pass) = creds
            .as_ref()
            .ok_or((StatusCode::UNAUTHORIZED, "missing basic auth"))?;
        // Both compared, always, so timing does not tell which one was wrong.
        let user_ok = secrets::matches(user, &expected_user);
        let pass_ok = secrets::matches(pass, password);
        if !(user_ok & pass_ok) {
            return Err((StatusCode::UNAUTHORIZED, "wrong basic auth"));
        }
        if let Some(secret) = s.get("signing_secret") {
            let ok = signature
                .as_deref()
                .is_some_and(|sig| signature_ok(secret.expose_secret(), &body, sig));
            if !ok {
                return Err((StatusCode::UNAUTHORIZED, "bad signature"));
            }
        }
        Ok(())
    };
    if let Err((status, reason)) = rx.secrets.verify(&connection, check) {
        let mut answer = rx.reject(SYSTEM, &connection, status, reason);
        // Basic auth: a 401 names the scheme (RFC 9110 §11.6.1).
        if status == StatusCode::UNAUTHORIZED {
            answer.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"mlc\""),
            );
        }
        return answer;
    }
    let Some(event) = parse(&body) else {
        return rx.reject(
            SYSTEM,
            &connection,
            StatusCode::BAD_REQUEST,
            "malformed event",
        );
    };
    rx.metrics.received(SYSTEM);
    match rx
        .state
        .serve_first_delivery(&connection, &event.key, rx.clock.now())
    {
        Ok(true) => {}
        Ok(false) => {
            rx.metrics.trigger(
                Origin::Webhook(SYSTEM).label(),
                Submitted::Duplicate.label(),
            );
            tracing::debug!(connection = %connection, object = %event.object, id = %event.id, "redelivered event ignored");
            return (StatusCode::OK, "duplicate\n").into_response();
        }
        Err(e) => {
            // Pipedrive retries non-2xx answers: the event is not lost.
            tracing::error!(error = %e, "cannot record the webhook event");
            return (StatusCode::SERVICE_UNAVAILABLE, "state store unavailable\n").into_response();
        }
    }
    let Some(stream) = routes.stream_for(&event.object) else {
        return (StatusCode::OK, "no stream\n").into_response();
    };
    tracing::info!(connection = %connection, object = %event.object, id = %event.id, stream, "pipedrive event");
    rx.trigger(SYSTEM, &connection, BTreeSet::from([stream.to_string()]))
}

/// `mlc webhooks register` for a Pipedrive connection: one webhook per object
/// (`POST /v1/webhooks`) with Basic auth credentials generated and kept in the vault; existing
/// ones are kept.
pub(crate) async fn register(reg: &Registration<'_>) -> Result<String> {
    let Registration {
        vault,
        conn,
        url,
        webhook: w,
        ..
    } = reg;
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
    let existing: PdList = serde_json::from_slice(&list.body).unwrap_or(PdList { data: None });
    let existing = existing.data.unwrap_or_default();
    let mut out = String::new();
    for object in w.pipedrive_objects() {
        if let Some(h) = existing
            .iter()
            .find(|h| h.subscription_url == *url && h.event_object == object)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_and_v2() {
        let v1 = br#"{"v":1,"event":"updated.deal","retry":0,"meta":{"action":"updated","object":"deal","id":42,"timestamp":1714640100},"current":{"id":42,"update_time":"2024-05-02 09:15:00"},"previous":{}}"#;
        let e = parse(v1).unwrap();
        assert_eq!((e.object.as_str(), e.id.as_str()), ("deal", "42"));
        assert_eq!(e.key, "deal:42:updated:2024-05-02 09:15:00");
        let v2 = br#"{"meta":{"action":"change","entity":"deal","entity_id":"42","version":"2.0","id":"b7c1"},"data":{"id":42},"previous":{}}"#;
        let e = parse(v2).unwrap();
        assert_eq!(e.key, "v2:b7c1");
        assert!(parse(b"{}").is_none());
        assert!(parse(b"not json").is_none());
    }

    #[test]
    fn signature_checks_the_raw_body() {
        let sig = sign("s3", b"{\"a\":1}");
        assert!(signature_ok("s3", b"{\"a\":1}", &sig));
        assert!(signature_ok("s3", b"{\"a\":1}", &format!("sha256={sig}")));
        assert!(!signature_ok("s3", b"{\"a\": 1}", &sig));
        assert!(!signature_ok("other", b"{\"a\":1}", &sig));
        assert!(!signature_ok("s3", b"{\"a\":1}", "zz"));
    }
}
