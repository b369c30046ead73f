//! Building a client of a Business Central connection: its auth and its default limits.

use std::sync::Arc;

use super::BusinessCentralSettings;
use crate::error::Result;
use crate::http::answer::ODataErrorIsRefused;
use crate::http::auth::EntraClientCredentials;
use crate::http::retry::RetryPolicy;
use crate::http::{Endpoint, HttpClient, Limits};
use crate::systems::settings::Wiring;

/// A new client of the connection, with limits of its own.
///
/// Fails when a secret is neither in mlc.toml nor in the vault.
pub(crate) fn endpoint(b: &BusinessCentralSettings, w: &Wiring<'_>) -> Result<Endpoint> {
    let secret = w.secret("client_secret", b.client_secret.as_ref())?;
    let auth = EntraClientCredentials::new(
        w.system.as_str(),
        &b.authority_url,
        &b.tenant_id,
        &b.client_id,
        secret,
        b.scope.clone(),
    );
    let http = HttpClient::new(
        w.system.as_str(),
        w.name,
        Some(Arc::new(auth)),
        Limits {
            // 6000 requests per 5-minute sliding window per user; 5 processed at once
            // (more queue, and a long queue ends in 503).
            requests_per_minute: Some(w.requests_per_minute.unwrap_or(1000)),
            max_concurrency: w.max_concurrency.unwrap_or(5),
        },
        RetryPolicy::default(),
    )?
    .with_hook(Arc::new(ODataErrorIsRefused));
    Ok(Endpoint {
        http,
        base: b.api_base(),
    })
}
