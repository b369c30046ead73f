//! Building a client of a Looker connection: its auth and its default limits.

use std::sync::Arc;

use super::LookerSettings;
use crate::error::Result;
use crate::http::retry::RetryPolicy;
use crate::http::{Endpoint, HttpClient, Limits};
use crate::systems::settings::Wiring;

/// A new client of the connection, with limits of its own.
///
/// Fails when a secret is neither in mlc.toml nor in the vault.
pub(crate) fn endpoint(l: &LookerSettings, w: &Wiring<'_>) -> Result<Endpoint> {
    let secret = w.secret("client_secret", l.client_secret.as_ref())?;
    let base = l.api_base();
    let auth = crate::systems::looker::auth::LookerLogin::new(&base, &l.client_id, secret);
    // No published per-second limit, but every call counts against the edition's
    // monthly API quota and 429s are documented: 60 a minute, paced one at a time.
    let rpm = w.requests_per_minute.unwrap_or(60);
    let http = HttpClient::new(
        w.system.as_str(),
        w.name,
        Some(Arc::new(auth)),
        Limits {
            requests_per_minute: Some(rpm),
            max_concurrency: w.max_concurrency.unwrap_or(2),
        },
        RetryPolicy::default(),
    )?
    .with_rate(rpm, 1)?;
    Ok(Endpoint { http, base })
}
