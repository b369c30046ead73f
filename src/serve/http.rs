//! The one HTTP server of `mlc serve`: health, metrics and the webhook receivers.
//!
//! ```text
//! GET  /healthz                                  liveness ("ok")
//! GET  /metrics                                  Prometheus text exposition
//! POST /webhooks/dataverse/{connection}          RemoteExecutionContext, shared key
//! POST /webhooks/pipedrive/{connection}          v1 / v2 events, Basic auth (+ HMAC)
//! POST /webhooks/business_central/{connection}   notifications, clientState
//! GET|POST ...business_central/{c}?validationToken=…   subscription handshake
//! ```
//!
//! Receivers check, parse and queue; they never run anything, so they answer in milliseconds
//! (Dataverse waits 60 s, Business Central ~5 s for the handshake). Bodies above
//! `serve.max_body_bytes` get 413 before any parsing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::serve::config::WebhookConfig;
use crate::state::StateStore;
use crate::systems::system::System;
use crate::vault::{Secrets, Vault};

use super::clock::Clock;
use super::metrics::Metrics;
use super::queue::Queue;
use super::routes::Routes;
use super::secrets;
use super::{business_central, dataverse, pipedrive};

/// A failed check: the status to answer and the reason to count and log (never a secret).
pub type Refusal = (StatusCode, &'static str);

/// The vault could not be read when a check needed it.
pub const VAULT_UNREADABLE: Refusal = (StatusCode::SERVICE_UNAVAILABLE, "vault unreadable");

/// Webhook secrets by connection, read from the vault at start and read again (at most once
/// per 5 s per connection) when a request fails its check, so `mlc webhooks register` or
/// `mlc webhooks secret` take effect without a restart while a flood of forged requests costs
/// one vault read per 5 s.
pub struct SecretCache {
    vault: Option<Vault>,
    entries: Mutex<BTreeMap<String, (Secrets, Option<Instant>)>>,
}

impl SecretCache {
    pub fn new(vault: Option<Vault>, initial: BTreeMap<String, Secrets>) -> Self {
        Self {
            vault,
            entries: Mutex::new(initial.into_iter().map(|(k, v)| (k, (v, None))).collect()),
        }
    }

    fn get(&self, connection: &str) -> Secrets {
        let g = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        g.get(connection)
            .map(|(s, _)| s.clone())
            .unwrap_or_default()
    }

    /// Re-reads the connection's vault entry unless that happened in the last 5 s. Fails when
    /// the vault cannot be read: the cached secrets are kept, and the caller answers a
    /// retryable status (the sender's secret may well be the new one we cannot read).
    fn refresh(&self, connection: &str) -> Result<bool, Refusal> {
        let Some(vault) = &self.vault else {
            return Ok(false);
        };
        {
            let g = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            if g.get(connection)
                .and_then(|(_, at)| *at)
                .is_some_and(|at| at.elapsed() < Duration::from_secs(5))
            {
                return Ok(false);
            }
        }
        let fresh = match secrets::load(vault, connection) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, connection, "cannot read webhook secrets from the vault");
                return Err(VAULT_UNREADABLE);
            }
        };
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(connection.to_string(), (fresh, Some(Instant::now())));
        Ok(true)
    }

    /// `check` against the cached secrets; when it refuses, once more after a refresh. A vault
    /// that cannot be read then is our fault, not the sender's: 503, which every sender
    /// retries (Business Central deletes its subscription on most 4xx).
    pub fn verify<T>(
        &self,
        connection: &str,
        check: impl Fn(&Secrets) -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        match check(&self.get(connection)) {
            Ok(v) => Ok(v),
            Err(e) => match self.refresh(connection) {
                Ok(true) => check(&self.get(connection)).map_err(|_| e),
                Ok(false) => Err(e),
                Err(unreadable) => Err(unreadable),
            },
        }
    }
}

/// What every handler shares.
pub struct Receiver {
    pub routes: Routes,
    pub queue: Arc<Queue>,
    pub metrics: Arc<Metrics>,
    pub state: Arc<StateStore>,
    pub clock: Arc<dyn Clock>,
    /// Webhook secrets by connection.
    pub secrets: SecretCache,
    pub webhooks: BTreeMap<String, WebhookConfig>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Receiver")
    }
}

impl Receiver {
    /// The webhook settings of a connection (defaults when it has no section).
    pub fn webhook(&self, connection: &str) -> WebhookConfig {
        self.webhooks.get(connection).cloned().unwrap_or_default()
    }

    /// The routes of `connection` when it is a `system` connection; else the 404 answer.
    pub fn routes_of(
        &self,
        system: System,
        connection: &str,
    ) -> Result<&super::routes::ConnectionRoutes, Box<Response>> {
        self.routes
            .connection(connection)
            .filter(|r| r.system == system)
            .ok_or_else(|| {
                Box::new(self.reject(
                    system,
                    connection,
                    StatusCode::NOT_FOUND,
                    &format!("no such {system} connection"),
                ))
            })
    }

    /// A rejection: counted, logged without any secret, answered with `status`.
    pub fn reject(
        &self,
        system: System,
        connection: &str,
        status: StatusCode,
        reason: &str,
    ) -> Response {
        self.metrics.rejected(system, reason);
        tracing::warn!(
            system = system.as_str(),
            connection,
            reason,
            status = status.as_u16(),
            "webhook rejected"
        );
        let mut r = (status, format!("{reason}\n")).into_response();
        if status == StatusCode::UNAUTHORIZED && system == System::Pipedrive {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"mlc\""),
            );
        }
        r
    }
}

/// The route of a system's webhooks: `/webhooks/<system>/{connection}`.
fn webhook_route(system: System) -> String {
    format!("/webhooks/{system}/{{connection}}")
}

/// The router; `max_body` bytes per request.
pub fn router(rx: Arc<Receiver>, max_body: usize) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route(&webhook_route(System::Dataverse), post(dataverse::receive))
        .route(&webhook_route(System::Pipedrive), post(pipedrive::receive))
        .route(
            &webhook_route(System::BusinessCentral),
            post(business_central::receive).get(business_central::handshake_only),
        )
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            rx.clone(),
            count_oversized,
        ))
        .with_state(rx)
}

/// The body limit answers 413 before any handler runs; count those rejections too.
async fn count_oversized(
    axum::extract::State(rx): axum::extract::State<Arc<Receiver>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let system = req
        .uri()
        .path()
        .strip_prefix("/webhooks/")
        .and_then(|p| p.split('/').next())
        .and_then(|s| s.parse::<System>().ok());
    let r = next.run(req).await;
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE
        && let Some(system) = system
    {
        rx.metrics.rejected(system, "body too large");
        tracing::warn!(system = %system, "webhook rejected: body over serve.max_body_bytes");
    }
    r
}

async fn metrics(axum::extract::State(rx): axum::extract::State<Arc<Receiver>>) -> Response {
    let rx2 = rx.clone();
    let text =
        tokio::task::spawn_blocking(move || rx2.metrics.render(Some(&rx2.state), rx2.clock.now()))
            .await
            .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    #[test]
    fn an_unreadable_vault_is_a_retryable_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::vault::VaultConfig {
            path: dir.path().join("vault.json"),
            key_file: dir.path().join("vault.key"),
        };
        std::fs::write(&cfg.path, b"\x00 not a vault").unwrap();
        let mut initial = BTreeMap::new();
        let mut s = Secrets::new();
        s.insert("key".into(), SecretString::from("old".to_string()));
        initial.insert("crm".to_string(), s);
        let cache = SecretCache::new(Some(Vault::new(&cfg)), initial);
        let check = |s: &Secrets| match s.get("key") {
            Some(k) if secrets::matches(b"new", k) => Ok(()),
            _ => Err((StatusCode::UNAUTHORIZED, "wrong key")),
        };
        assert_eq!(cache.verify("crm", check), Err(VAULT_UNREADABLE));
        // Without a vault to ask, the refusal stays the sender's.
        let cache = SecretCache::new(None, BTreeMap::new());
        assert_eq!(
            cache.verify("crm", check),
            Err((StatusCode::UNAUTHORIZED, "wrong key"))
        );
    }
}
