//! What every webhook receiver shares (the receivers are in `systems/<system>/webhook.rs`,
//! the server in `http.rs`): the routes and queue they feed, the secret cache they check
//! against, how a request is refused, and what registering webhooks needs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::config::Connection;
use crate::serve::config::WebhookConfig;
use crate::state::StateStore;
use crate::systems::system::System;
use crate::vault::{Secrets, Vault};

use super::clock::Clock;
use super::metrics::Metrics;
use super::queue::Queue;
use super::routes::Routes;
use super::secrets;

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

    /// Queues a run of `streams` for a webhook of `connection`; the answer says what the queue
    /// did (`queued`, `merged`), or that the event maps to no stream.
    pub fn trigger(&self, system: System, connection: &str, streams: BTreeSet<String>) -> Response {
        if streams.is_empty() {
            return (StatusCode::OK, "no stream\n").into_response();
        }
        let outcome = self
            .queue
            .submit(self.routes.webhook_trigger(system, connection, streams));
        (StatusCode::OK, format!("{}\n", outcome.label())).into_response()
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
        (status, format!("{reason}\n")).into_response()
    }
}

/// What registering a connection's webhooks needs (`mlc webhooks register`).
pub struct Registration<'a> {
    pub conn: &'a Connection,
    pub vault: &'a Vault,
    pub state: Arc<StateStore>,
    /// `serve.public_url` (or the local address): where the systems call back.
    pub public: String,
    /// The connection's webhook URL under it.
    pub url: String,
    pub webhook: WebhookConfig,
    /// `serve.renew_before_hours`.
    pub renew_before_hours: f64,
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
