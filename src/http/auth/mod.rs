//! Auth providers behind one trait. Tokens are cached, refreshed ahead of expiry, and a refused
//! token (401) forces exactly one refresh (the caller decides when to give up). Secrets live in
//! `SecretString` and tokens in sensitive header values, so neither reaches logs or `Debug`.
//!
//! This module holds the trait, the token cache and request helpers every provider shares, and
//! Entra's client credentials (Dataverse and Business Central both use them); the providers of
//! one system live in its home (`systems::<system>::auth`).

pub mod entra;

use std::fmt;
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::http::retry::{RetryPolicy, Waits, retry_after};

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

/// How token requests are retried: three attempts in all, waiting as every other request does
/// (the server's `Retry-After`, else a jittered step of the backoff), and never longer in all
/// than `max_total`: a login that cannot succeed soon should say why, not hang.
const TOKEN_RETRY: RetryPolicy = RetryPolicy {
    max_retries: 2,
    base_delay: Duration::from_millis(300),
    max_delay: Duration::from_secs(5),
    max_total: Duration::from_secs(30),
};

/// What a token endpoint answered, once it is not worth asking again: a success or a refusal.
pub(crate) struct TokenAnswer {
    pub(crate) status: u16,
    pub(crate) body: bytes::Bytes,
}

/// Sends a token request (`build` makes it, once per attempt) under [`TOKEN_RETRY`]: transport
/// failures and the statuses every request retries ([`Error::transient_status`]) are tried
/// again; any other answer is returned for the provider to read.
/// When the attempts run out, the error is the last failure as `unreachable` (transport) or
/// `transient` (status and body) describe it.
pub(crate) async fn token_request(
    build: impl Fn() -> reqwest::RequestBuilder,
    unreachable: impl Fn(&reqwest::Error) -> Error,
    transient: impl Fn(u16, &[u8]) -> Error,
) -> Result<TokenAnswer> {
    let mut waits = Waits::new(&TOKEN_RETRY);
    loop {
        let (err, retry_after) = match build().send().await {
            Err(e) => (unreachable(&e), None),
            Ok(resp) => {
                let status = resp.status().as_u16();
                let wait = retry_after(resp.headers());
                let body = resp.bytes().await.unwrap_or_default();
                if !Error::transient_status(status) {
                    return Ok(TokenAnswer { status, body });
                }
                (transient(status, &body), wait)
            }
        };
        match waits.next(retry_after) {
            Ok(wait) => tokio::time::sleep(wait).await,
            Err(_) => return Err(err),
        }
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

#[cfg(test)]
mod token_tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    use super::*;

    /// A token endpoint answering `answers` in turn (then the last one again); counts calls.
    async fn endpoint(answers: Vec<(u16, &'static str)>) -> (String, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        let seen = calls.clone();
        let app = Router::new().route(
            "/token",
            post(move || {
                let n = seen.fetch_add(1, Ordering::SeqCst) as usize;
                let (status, body) = answers[n.min(answers.len() - 1)];
                async move {
                    let mut headers = HeaderMap::new();
                    headers.insert("retry-after", "0".parse().unwrap());
                    (StatusCode::from_u16(status).unwrap(), headers, body)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/token"), calls)
    }

    /// One token request to `url`; failures read `HTTP <status>` (or the transport error).
    async fn ask(http: &reqwest::Client, url: &str) -> Result<TokenAnswer> {
        let err = |message: String| Error::Auth {
            system: "test".into(),
            message,
        };
        token_request(
            || http.post(url),
            |e| err(e.to_string()),
            |s, _| err(format!("HTTP {s}")),
        )
        .await
    }

    #[tokio::test]
    async fn token_requests_retry_throttling_and_return_refusals() {
        let http = reqwest::Client::new();
        // Throttled, then a server error, then a token: three calls, the token returned.
        let (url, calls) = endpoint(vec![(429, ""), (503, ""), (200, "tok")]).await;
        let answer = ask(&http, &url).await.unwrap();
        assert_eq!((answer.status, &answer.body[..]), (200, &b"tok"[..]));
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        // A refusal is the provider's to explain: returned at once, not retried.
        let (url, calls) = endpoint(vec![(401, "bad secret")]).await;
        let answer = ask(&http, &url).await.unwrap();
        assert_eq!(answer.status, 401);
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // Failing every time: three attempts, then the last failure as described.
        let (url, calls) = endpoint(vec![(500, "")]).await;
        let err = ask(&http, &url).await.err().unwrap();
        assert!(err.to_string().contains("HTTP 500"), "{err}");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
