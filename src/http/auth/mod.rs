//! Auth providers behind one trait. Tokens are cached, refreshed ahead of expiry, and a refused
//! token (401) forces exactly one refresh (the caller decides when to give up). Secrets live in
//! `SecretString` and tokens in sensitive header values, so neither reaches logs or `Debug`.

pub mod deltek;
pub mod entra;
pub mod looker;
pub mod pipedrive;

use std::fmt;
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use serde::Deserialize;

use crate::error::Result;

pub use entra::EntraClientCredentials;

/// Something that can produce the `Authorization` header of a request.
#[async_trait::async_trait]
pub trait AuthProvider: Send + Sync + fmt::Debug {
    /// The header value to send, and whether it was issued by this call. `refused`: the header
    /// the server just refused (401); a new token is fetched only when that is still the one
    /// held (the connection's other requests share the token: one of them may have renewed
    /// it already). Fails with [`Error::Auth`] explaining what to fix.
    async fn authorization(
        &self,
        http: &reqwest::Client,
        refused: Option<&HeaderValue>,
    ) -> Result<(HeaderValue, bool)>;

    /// The header that carries the credential (`Authorization` unless the system uses its own,
    /// e.g. Pipedrive's `x-api-token`).
    fn header_name(&self) -> HeaderName {
        AUTHORIZATION
    }

    /// An API base URL the token response named (Pipedrive OAuth `api_domain`), known after the
    /// first token; `None` = use the configured one.
    fn api_base(&self) -> Option<String> {
        None
    }
}

/// A cached token and the instant after which it is renewed.
pub(crate) struct Cached {
    pub(crate) header: HeaderValue,
    pub(crate) renew_at: Instant,
}

/// The token of a provider that renews by fetching a new one: the cached header until its
/// renewal time, else (or when a refused token forces it) a fresh one. Callers wait on one
/// lock, so concurrent requests share one renewal instead of each logging in.
#[derive(Default)]
pub(crate) struct TokenCache(tokio::sync::Mutex<Option<Cached>>);

impl TokenCache {
    pub(crate) async fn header<F, Fut>(
        &self,
        refused: Option<&HeaderValue>,
        renew: F,
    ) -> Result<(HeaderValue, bool)>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Cached>>,
    {
        let mut cache = self.0.lock().await;
        if let Some(c) = cache.as_ref()
            && Instant::now() < c.renew_at
            && refused.is_none_or(|r| *r != c.header)
        {
            return Ok((c.header.clone(), false));
        }
        let fresh = renew().await?;
        let header = fresh.header.clone();
        *cache = Some(fresh);
        Ok((header, true))
    }
}

#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    pub(crate) access_token: String,
    #[serde(default)]
    pub(crate) token_type: Option<String>,
    /// The v2 endpoint sends a number; older endpoints sent a string.
    #[serde(default)]
    pub(crate) expires_in: Option<NumOrString>,
    /// OAuth refresh token (Deltek, Pipedrive); store the new one whenever it rotates.
    #[serde(default)]
    pub(crate) refresh_token: Option<String>,
    /// Pipedrive: the API host of the install.
    #[serde(default)]
    pub(crate) api_domain: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum NumOrString {
    Num(u64),
    Str(String),
}

impl NumOrString {
    pub(crate) fn seconds(&self) -> Option<u64> {
        match self {
            NumOrString::Num(n) => Some(*n),
            NumOrString::Str(s) => s.parse().ok(),
        }
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct OAuthError {
    #[serde(default)]
    pub(crate) error: String,
    #[serde(default)]
    pub(crate) error_description: String,
}

/// Renew when less than a fifth of the lifetime (at most 5 minutes) is left, so a token never
/// expires mid-request and short-lived sandbox tokens still get used.
pub(crate) fn renew_after(ttl: Duration) -> Duration {
    let margin = (ttl / 5).min(Duration::from_secs(300));
    ttl.saturating_sub(margin)
}
