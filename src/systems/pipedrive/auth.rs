//! Pipedrive auth: a personal API token sent as `x-api-token` (never `?api_token=`, which puts
//! the secret in URLs and logs), or an OAuth app install renewed with the refresh grant (HTTP
//! Basic client credentials, form body). The token response's `api_domain` is the install's API
//! host; a rotated refresh token is written back to the vault when one is attached (and always
//! kept in memory) before the new access token is used, so the next process does not start from
//! a revoked token; when that write fails the request fails.

use std::fmt;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::header::{HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Result};
use crate::http::auth::{
    AuthProvider, Cached, OAuthError, TokenAnswer, TokenCache, TokenResponse, renew_after,
    token_request,
};
use crate::http::redact::body_excerpt;
use crate::vault::Vault;

/// The header of a personal API token.
pub const API_TOKEN_HEADER: &str = "x-api-token";

/// A personal API token. A refused token cannot be renewed: the second 401 says so.
pub struct PipedriveApiToken {
    token: SecretString,
}

impl fmt::Debug for PipedriveApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipedriveApiToken")
            .field("token", &"***")
            .finish()
    }
}

impl PipedriveApiToken {
    pub fn new(token: SecretString) -> Self {
        Self { token }
    }
}

#[async_trait::async_trait]
impl AuthProvider for PipedriveApiToken {
    /// The token as configured: never renewed (a refused API token is final).
    async fn authorization(
        &self,
        _http: &reqwest::Client,
        _refused: Option<&HeaderValue>,
    ) -> Result<(HeaderValue, bool)> {
        let mut v = HeaderValue::from_str(self.token.expose_secret()).map_err(|_| Error::Auth {
            system: "pipedrive".into(),
            message: "the API token contains characters a header cannot carry".into(),
        })?;
        v.set_sensitive(true);
        Ok((v, false))
    }

    fn header_name(&self) -> HeaderName {
        HeaderName::from_static(API_TOKEN_HEADER)
    }
}

/// Where a rotated refresh token is stored.
#[derive(Debug, Clone)]
pub struct RefreshStore {
    pub vault: Vault,
    pub connection: String,
}

/// An OAuth install: access tokens from the refresh grant, cached until shortly before expiry.
pub struct PipedriveOAuth {
    token_url: String,
    client_id: String,
    client_secret: SecretString,
    refresh_token: StdMutex<SecretString>,
    api_domain: StdMutex<Option<String>>,
    store: Option<RefreshStore>,
    /// A rotated refresh token is only in memory: its store failed and must be retried.
    unsaved: AtomicBool,
    cache: TokenCache,
}

impl fmt::Debug for PipedriveOAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipedriveOAuth")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("secret", &"***")
            .finish()
    }
}

impl PipedriveOAuth {
    pub fn new(
        token_url: &str,
        client_id: &str,
        client_secret: SecretString,
        refresh_token: SecretString,
        store: Option<RefreshStore>,
    ) -> Self {
        Self {
            token_url: token_url.to_string(),
            client_id: client_id.to_string(),
            client_secret,
            refresh_token: StdMutex::new(refresh_token),
            api_domain: StdMutex::new(None),
            store,
            unsaved: AtomicBool::new(false),
            cache: TokenCache::default(),
        }
    }

    fn auth_err(message: String) -> Error {
        Error::Auth {
            system: "pipedrive".into(),
            message,
        }
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<Cached> {
        let refresh = self
            .refresh_token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        self.fetch_with(http, refresh).await
    }

    /// The refresh token in the vault, if one is attached and holds one.
    fn stored_refresh_token(&self) -> Option<SecretString> {
        let store = self.store.as_ref()?;
        store
            .vault
            .get(&store.connection)
            .ok()
            .flatten()?
            .remove("refresh_token")
    }

    async fn fetch_with(&self, http: &reqwest::Client, refresh: SecretString) -> Result<Cached> {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.client_id,
            self.client_secret.expose_secret()
        ));
        let mut auth = HeaderValue::from_str(&format!("Basic {basic}"))
            .map_err(|_| Self::auth_err("client id or secret cannot be sent in a header".into()))?;
        auth.set_sensitive(true);
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.expose_secret()),
        ];
        let TokenAnswer { status, body } = token_request(
            || {
                http.post(&self.token_url)
                    .header(reqwest::header::AUTHORIZATION, auth.clone())
                    .form(&form)
            },
            |e| {
                Self::auth_err(format!(
                    "cannot reach the OAuth token endpoint {}: {}",
                    self.token_url,
                    crate::http::describe_reqwest_error(e)
                ))
            },
            |status, _| Self::auth_err(format!("the OAuth token endpoint answered HTTP {status}")),
        )
        .await?;
        if !(200..300).contains(&status) {
            let e: OAuthError = serde_json::from_slice(&body).unwrap_or_default();
            // Another stream or process may have rotated the token: take the stored one.
            if e.error == "invalid_grant"
                && let Some(stored) = self.stored_refresh_token()
                && stored.expose_secret() != refresh.expose_secret()
            {
                *self
                    .refresh_token
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = stored.clone();
                return Box::pin(self.fetch_with(http, stored)).await;
            }
            let hint = match (status, e.error.as_str()) {
                (401, _) | (_, "invalid_client") => {
                    "client_id or client_secret is wrong (the app's OAuth credentials in Developer Hub)"
                }
                (_, "invalid_grant") => {
                    "the refresh token was revoked or expired (app uninstalled, or unused for about 60 days): install the app again and store the new refresh token"
                }
                _ => "check client_id, client_secret and refresh_token",
            };
            return Err(Self::auth_err(format!(
                "token refresh refused (HTTP {status} {} {}): {hint}",
                e.error,
                if e.error_description.is_empty() {
                    body_excerpt(&body, 200)
                } else {
                    e.error_description.clone()
                }
            )));
        }
        let t: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            Self::auth_err(format!("the token response is not the expected JSON: {e}"))
        })?;
        if let Some(d) = &t.api_domain {
            *self
                .api_domain
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(d.trim_end_matches('/').to_string());
        }
        // Stored before the new access token is handed out: Pipedrive has already revoked
        // the refresh token we sent, so a token that is only in memory dies with this
        // process. A failed store fails the request rather than carrying on.
        if let Some(new) = t.refresh_token.as_deref()
            && (new != refresh.expose_secret() || self.unsaved.load(Ordering::Acquire))
        {
            self.rotate(new)?;
        }
        let ttl = Duration::from_secs(t.expires_in.and_then(|e| e.seconds()).unwrap_or(3599));
        let mut header = HeaderValue::from_str(&format!("Bearer {}", t.access_token))
            .map_err(|_| Self::auth_err("the access token is not a valid header".into()))?;
        header.set_sensitive(true);
        Ok(Cached {
            header,
            renew_at: Instant::now() + renew_after(ttl),
        })
    }

    /// Keeps a rotated refresh token: in memory always, and in the vault when one is attached
    /// (under the vault lock, so a concurrent change to other fields or connections is kept).
    /// A failed store is an error naming the connection; the token stays in memory and
    /// `unsaved` makes the next refresh store it again even if Pipedrive returns it unchanged.
    fn rotate(&self, new: &str) -> Result<()> {
        *self
            .refresh_token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            SecretString::from(new.to_string());
        let Some(store) = &self.store else {
            return Ok(());
        };
        let saved = store.vault.update(&store.connection, |s| {
            s.insert("refresh_token".into(), SecretString::from(new.to_string()));
            Ok(())
        });
        match saved {
            Ok(()) => {
                self.unsaved.store(false, Ordering::Release);
                tracing::info!(connection = %store.connection, "stored the rotated Pipedrive refresh token");
                Ok(())
            }
            Err(e) => {
                self.unsaved.store(true, Ordering::Release);
                Err(Self::auth_err(format!(
                    "Pipedrive rotated the refresh token of connection `{}` (the previous one no longer works) but the new one could not be stored in the vault: {e}. Nothing was sent with the new access token; fix the vault so the next token refresh can store it, otherwise the app must be installed again once this process ends",
                    store.connection
                )))
            }
        }
    }

    /// The current refresh token (tests, and callers that persist it themselves).
    pub fn current_refresh_token(&self) -> SecretString {
        self.refresh_token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[async_trait::async_trait]
impl AuthProvider for PipedriveOAuth {
    async fn authorization(
        &self,
        http: &reqwest::Client,
        refused: Option<&HeaderValue>,
    ) -> Result<(HeaderValue, bool)> {
        self.cache.header(refused, || self.fetch(http)).await
    }

    fn api_base(&self) -> Option<String> {
        self.api_domain
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Pipedrive's rate limits as a response hook: paces on `x-ratelimit-remaining: 0` until
/// `x-ratelimit-reset`, gives a 429 without `Retry-After` the window's reset as its wait, stops
/// cleanly when the company's daily token budget is spent (or down to `daily_token_reserve`),
/// and stops hard on Cloudflare's HTML 403 (what clients that keep calling after 429s get).
pub struct PipedriveLimits {
    reserve: u64,
    state: StdMutex<LimitState>,
}

#[derive(Default)]
struct LimitState {
    pause_until: Option<Instant>,
    /// Why requests stop, and since when.
    stop: Option<(String, Instant)>,
}

/// How long a spent daily budget stops the connection before one request is let through to
/// see whether it was reset (midnight in the company's time zone, which the API does not
/// tell). The connection's runtime outlives a run in `mlc serve`: a stop that never expired
/// would end its Pipedrive syncs until a restart.
const BUDGET_STOP_HOLDS: Duration = Duration::from_secs(15 * 60);

impl PipedriveLimits {
    pub fn new(daily_token_reserve: u64) -> Self {
        Self {
            reserve: daily_token_reserve,
            state: StdMutex::new(LimitState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LimitState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn header_u64(headers: &reqwest::header::HeaderMap, name: &str) -> Option<u64> {
    headers
        .get(name)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v.ceil() as u64)
}

impl crate::http::ResponseHook for PipedriveLimits {
    fn before(&self) -> crate::http::Verdict {
        use crate::http::Verdict;
        let mut st = self.state();
        match &st.stop {
            Some((m, since)) if since.elapsed() < BUDGET_STOP_HOLDS => {
                return Verdict::Stop(m.clone());
            }
            Some(_) => st.stop = None,
            None => {}
        }
        match st.pause_until {
            Some(t) if t > Instant::now() => Verdict::Wait(t - Instant::now()),
            Some(_) => {
                st.pause_until = None;
                Verdict::Proceed
            }
            None => Verdict::Proceed,
        }
    }

    fn inspect(
        &self,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> crate::http::Verdict {
        use crate::http::Verdict;
        let html = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("html"))
            || body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<');
        if status == 403 && html {
            return Verdict::Stop(
                "Pipedrive answered 403 with an HTML page (Cloudflare block after repeated 429s): stopped; wait before the next sync and lower requests_per_minute or max_concurrency for this connection".into(),
            );
        }
        let daily = header_u64(headers, "x-daily-ratelimit-token-remaining");
        let says_daily = status == 429 && {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).to_lowercase();
            text.contains("daily") || text.contains("token budget")
        };
        let spent = daily.is_some_and(|d| d == 0 || (self.reserve > 0 && d <= self.reserve));
        if spent || says_daily {
            let msg = match daily {
                Some(d) if d > 0 => format!(
                    "Pipedrive daily API token budget down to {d} (daily_token_reserve = {}): stopped cleanly; the checkpoint is kept and the next `mlc sync` resumes after the budget resets (midnight, company time zone)",
                    self.reserve
                ),
                _ => "Pipedrive daily API token budget is spent: stopped cleanly; the checkpoint is kept and the next `mlc sync` resumes after the budget resets (midnight, company time zone)".to_string(),
            };
            self.state().stop = Some((msg.clone(), Instant::now()));
            if status == 429 {
                return Verdict::Stop(msg);
            }
            // A good response is still used; the next request stops.
            return Verdict::Proceed;
        }
        let reset = header_u64(headers, "x-ratelimit-reset").map(Duration::from_secs);
        if header_u64(headers, "x-ratelimit-remaining") == Some(0)
            && let Some(r) = reset
        {
            let until = Instant::now() + r;
            let mut st = self.state();
            if st.pause_until.is_none_or(|p| p < until) {
                st.pause_until = Some(until);
            }
        }
        if status == 429
            && let Some(r) = reset
        {
            return Verdict::Wait(r.max(Duration::from_millis(100)));
        }
        crate::http::answer::refuse_2xx(status, body, super::answer::error_of)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{ResponseHook, Verdict};
    use reqwest::header::{HeaderMap, HeaderValue};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn paces_on_an_empty_burst_window() {
        let l = PipedriveLimits::new(0);
        let h = headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "2")]);
        assert_eq!(l.inspect(200, &h, b"{}"), Verdict::Proceed);
        assert!(matches!(l.before(), Verdict::Wait(d) if d <= Duration::from_secs(2)));
    }

    #[test]
    fn a_429_waits_for_the_window_reset() {
        let l = PipedriveLimits::new(0);
        let h = headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1")]);
        assert_eq!(
            l.inspect(
                429,
                &h,
                br#"{"success":false,"error":"Request over limit"}"#
            ),
            Verdict::Wait(Duration::from_secs(1))
        );
        // Without headers the client's backoff decides.
        let l = PipedriveLimits::new(0);
        assert_eq!(l.inspect(429, &HeaderMap::new(), b""), Verdict::Proceed);
    }

    #[test]
    fn a_spent_daily_budget_stops_and_stays_stopped() {
        let l = PipedriveLimits::new(0);
        let h = headers(&[("x-daily-ratelimit-token-remaining", "0")]);
        assert!(matches!(l.inspect(429, &h, b"{}"), Verdict::Stop(m) if m.contains("budget")));
        assert!(matches!(l.before(), Verdict::Stop(_)));
        // The reserve: a good page is kept, the next request stops.
        let l = PipedriveLimits::new(500);
        let h = headers(&[("x-daily-ratelimit-token-remaining", "400")]);
        assert_eq!(l.inspect(200, &h, b"{}"), Verdict::Proceed);
        assert!(matches!(l.before(), Verdict::Stop(m) if m.contains("daily_token_reserve")));
        let l = PipedriveLimits::new(0);
        assert!(matches!(
            l.inspect(
                429,
                &HeaderMap::new(),
                br#"{"error":"Daily token budget exceeded"}"#
            ),
            Verdict::Stop(_)
        ));
    }

    #[test]
    fn cloudflare_html_403_is_a_hard_stop_but_json_403_is_not() {
        let l = PipedriveLimits::new(0);
        let h = headers(&[("content-type", "text/html; charset=UTF-8")]);
        assert!(
            matches!(l.inspect(403, &h, b"<!DOCTYPE html>"), Verdict::Stop(m) if m.contains("Cloudflare"))
        );
        let l = PipedriveLimits::new(0);
        assert_eq!(
            l.inspect(
                403,
                &HeaderMap::new(),
                br#"{"success":false,"error":"forbidden"}"#
            ),
            Verdict::Proceed
        );
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let t = PipedriveApiToken::new(SecretString::from("tok-123".to_string()));
        assert!(!format!("{t:?}").contains("tok-123"));
        let o = PipedriveOAuth::new(
            "http://x/oauth/token",
            "cid",
            SecretString::from("sec-456".to_string()),
            SecretString::from("ref-789".to_string()),
            None,
        );
        let d = format!("{o:?}");
        assert!(!d.contains("sec-456") && !d.contains("ref-789"));
    }
}
