//! Building a client of a Dataverse connection: its auth and its default limits.

use std::sync::Arc;

use super::DataverseSettings;
use super::change_tracking::DeltaExpiredIsFinal;
use crate::error::Result;
use crate::http::auth::EntraClientCredentials;
use crate::http::retry::RetryPolicy;
use crate::http::{Endpoint, HttpClient, Limits};
use crate::systems::settings::Wiring;

/// A new client of the connection, with limits of its own.
///
/// Fails when a secret is neither in mlc.toml nor in the vault.
pub(crate) fn endpoint(d: &DataverseSettings, w: &Wiring<'_>) -> Result<Endpoint> {
    let secret = w.secret("client_secret", d.client_secret.as_ref())?;
    let auth = EntraClientCredentials::new(
        w.system.as_str(),
        &d.authority_url,
        &d.tenant_id,
        &d.client_id,
        secret,
        d.scope(),
    );
    let http = HttpClient::new(
        w.system.as_str(),
        w.name,
        Some(Arc::new(auth)),
        Limits {
            // Service protection allows 6000 requests per 5 minutes per user; the
            // limiter's burst (a tenth of a minute) comes on top of the rate, so 1100
            // a minute stays under it: 110 + 5 × 1100 = 5610.
            requests_per_minute: Some(w.requests_per_minute.unwrap_or(1100)),
            max_concurrency: w.max_concurrency.unwrap_or(8),
        },
        RetryPolicy::default(),
    )?
    .with_hook(Arc::new(DeltaExpiredIsFinal));
    Ok(Endpoint {
        http,
        base: d.api_base().to_string(),
    })
}
