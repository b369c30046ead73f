//! Building a client of a Pipedrive connection: its auth and its default limits.

use std::sync::Arc;

use super::PipedriveSettings;
use crate::error::{Error, Result};
use crate::http::retry::RetryPolicy;
use crate::http::{Endpoint, HttpClient, Limits};
use crate::systems::settings::Wiring;

/// A new client of the connection, with limits of its own: an API token (`x-api-token`) when
/// one is configured or stored, else the OAuth refresh grant (whose `api_domain` the reader
/// prefers over `api_url`).
///
/// Fails when a secret is neither in mlc.toml nor in the vault.
pub(crate) fn endpoint(p: &PipedriveSettings, w: &Wiring<'_>) -> Result<Endpoint> {
    use crate::http::auth::AuthProvider;
    use crate::systems::pipedrive::auth::{
        PipedriveApiToken, PipedriveLimits, PipedriveOAuth, RefreshStore,
    };
    let stored = if p.api_token.is_none() && p.refresh_token.is_none() {
        w.vault.get(w.name)?.unwrap_or_default()
    } else {
        Default::default()
    };
    let auth: Arc<dyn AuthProvider> = if let Some(t) = p.api_token.clone().or_else(|| {
        (p.refresh_token.is_none())
            .then(|| stored.get("api_token").cloned())
            .flatten()
    }) {
        Arc::new(PipedriveApiToken::new(t))
    } else {
        let client_id = p.client_id.clone().ok_or_else(|| {
            Error::config(format!(
                "connection `{}`: set api_token, or client_id with client_secret and refresh_token (OAuth)",
                w.name
            ))
        })?;
        let secret_v = w.secret("client_secret", p.client_secret.as_ref())?;
        let (refresh, store) = match &p.refresh_token {
            Some(r) => (r.clone(), None),
            None => (
                w.secret("refresh_token", None)?,
                Some(RefreshStore {
                    vault: w.vault.clone(),
                    connection: w.name.to_string(),
                }),
            ),
        };
        Arc::new(PipedriveOAuth::new(
            &p.oauth_url,
            &client_id,
            secret_v,
            refresh,
            store,
        ))
    };
    let http = HttpClient::new(
        w.system.as_str(),
        w.name,
        Some(auth),
        Limits {
            // Burst limit is 20–120 requests per 2 s per token by plan; the response headers
            // pace the rest. 600/min stays under the smallest plan's 2-second window.
            requests_per_minute: Some(w.requests_per_minute.unwrap_or(600)),
            max_concurrency: w.max_concurrency.unwrap_or(4),
        },
        RetryPolicy::default(),
    )?
    .with_hook(Arc::new(PipedriveLimits::new(p.daily_token_reserve)));
    Ok(Endpoint {
        http,
        base: p.api_url.trim_end_matches('/').to_string(),
    })
}
