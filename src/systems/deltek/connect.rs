//! Building a client of a Vantagepoint connection: its auth and its default limits.

use std::sync::Arc;

use super::DeltekSettings;
use crate::error::Result;
use crate::http::retry::RetryPolicy;
use crate::http::{Endpoint, HttpClient, Limits};
use crate::systems::deltek::answer::ErrorObjectIsRefused;
use crate::systems::deltek::auth::{DeltekLogin, DeltekPasswordGrant};
use crate::systems::settings::Wiring;

/// A new client of the connection, with limits of its own.
///
/// Fails when a secret is neither in mlc.toml nor in the vault.
pub(crate) fn endpoint(d: &DeltekSettings, w: &Wiring<'_>) -> Result<Endpoint> {
    let password = w.secret("password", d.password.as_ref())?;
    let client_secret = w.secret("client_secret", d.client_secret.as_ref())?;
    let base = d.base_url.trim_end_matches('/').to_string();
    let auth = DeltekPasswordGrant::new(DeltekLogin {
        base_url: base.clone(),
        database: d.database.clone(),
        username: d.username.clone(),
        password,
        client_id: d.client_id.clone(),
        client_secret,
        integrated: d.integrated,
        culture: d.culture.clone(),
    });
    let http = HttpClient::new(
        w.system.as_str(),
        w.name,
        Some(Arc::new(auth)),
        Limits {
            // No published limit; tenants sit behind proxies that answer 429, and
            // on-prem servers are small: stay conservative unless configured.
            requests_per_minute: Some(w.requests_per_minute.unwrap_or(120)),
            max_concurrency: w.max_concurrency.unwrap_or(2),
        },
        RetryPolicy::default(),
    )?
    .with_hook(Arc::new(ErrorObjectIsRefused));
    Ok(Endpoint { http, base })
}
