//! Looker API 4.0 login: `POST {api}/login` with the API key's `client_id` and `client_secret`
//! in a form body (not the query string, which ends up in proxy logs), sent back as
//! `Authorization: token <access_token>`. Looker issues no refresh token, so the provider logs
//! in again ahead of the token's expiry (one hour) and once when a call answers 401.

use std::fmt;
use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::http::auth::{
    AuthProvider, Cached, TokenAnswer, TokenCache, TokenResponse, renew_after, token_request,
};
use crate::http::redact::{body_excerpt, redact_url};

/// The login of one Looker connection.
pub struct LookerLogin {
    login_url: String,
    client_id: String,
    secret: SecretString,
    cache: TokenCache,
}

impl fmt::Debug for LookerLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LookerLogin")
            .field("login_url", &self.login_url)
            .field("client_id", &self.client_id)
            .field("secret", &"***")
            .finish()
    }
}

/// Looker's error body (`{"message": ..., "documentation_url": ...}`).
#[derive(Deserialize, Default)]
struct LookerError {
    #[serde(default)]
    message: String,
}

impl LookerLogin {
    /// `api_base` is `{host}:{port}/api/4.0` without a trailing slash.
    pub fn new(api_base: &str, client_id: &str, secret: SecretString) -> Self {
        Self {
            login_url: format!("{}/login", api_base.trim_end_matches('/')),
            client_id: client_id.to_string(),
            secret,
            cache: TokenCache::default(),
        }
    }

    fn err(message: String) -> Error {
        Error::Auth {
            system: "looker".into(),
            message,
        }
    }

    /// One login; transport failures, 429 and 5xx are tried three times in all.
    async fn login(&self, http: &reqwest::Client) -> Result<Cached> {
        let form = [
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.secret.expose_secret()),
        ];
        let TokenAnswer { status, body } = token_request(
            || http.post(&self.login_url).form(&form),
            |e| {
                Self::err(format!(
                    "cannot reach the Looker API at {}: {}. Check base_url and port (443, or 19999 for older AWS-hosted instances).",
                    redact_url(&self.login_url),
                    crate::http::describe_reqwest_error(e)
                ))
            },
            |status, body| {
                Self::err(format!(
                    "the login endpoint answered HTTP {status}: {}",
                    error_message(body)
                ))
            },
        )
        .await?;
        if (200..300).contains(&status) {
            let tok: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
                Self::err(format!(
                    "{} answered {status} with a body that is not an access token ({e}); is base_url the Looker instance (API 4.0)?",
                    redact_url(&self.login_url)
                ))
            })?;
            let ttl = tok.expires_in.and_then(|e| e.seconds()).unwrap_or(3600);
            let mut header = HeaderValue::from_str(&format!("token {}", tok.access_token))
                .map_err(|_| {
                    Self::err("the access token contains characters not allowed in a header".into())
                })?;
            header.set_sensitive(true);
            return Ok(Cached {
                header,
                renew_at: Instant::now() + renew_after(Duration::from_secs(ttl)),
            });
        }
        Err(Self::err(explain(
            status,
            &error_message(&body),
            &self.client_id,
        )))
    }
}

/// The message of a Looker error body, or the start of the body.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<LookerError>(body)
        .map(|e| e.message)
        .ok()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| body_excerpt(body, 200))
}

/// A refused login in words an administrator can act on. Looker answers a wrong API key with
/// 404 "Not found", the same as a wrong address, so a 404 names both causes.
fn explain(status: u16, message: &str, client_id: &str) -> String {
    let key = format!(
        "copy client id {client_id} and its secret again from Admin > Users > Edit > API Keys (a key belongs to a user; a deleted or disabled user's keys stop working)"
    );
    match status {
        404 => format!(
            "Looker refused the login (HTTP 404: {message}): either the API key is wrong ({key}), or base_url and port do not reach the API 4.0 (443, or 19999 on older AWS-hosted instances)"
        ),
        400..=403 => format!("Looker refused the login (HTTP {status}: {message}): {key}"),
        _ => format!("login refused (HTTP {status}): {message}"),
    }
}

#[async_trait::async_trait]
impl AuthProvider for LookerLogin {
    async fn authorization(
        &self,
        http: &reqwest::Client,
        refused: Option<&HeaderValue>,
    ) -> Result<(HeaderValue, bool)> {
        self.cache.header(refused, || self.login(http)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret() {
        let l = LookerLogin::new(
            "https://acme.looker.com:19999/api/4.0/",
            "id",
            SecretString::from("hunter2"),
        );
        let d = format!("{l:?}");
        assert!(!d.contains("hunter2"));
        assert!(d.contains("https://acme.looker.com:19999/api/4.0/login"));
    }

    #[test]
    fn explains_refusals() {
        assert!(explain(403, "Invalid client credentials", "abc").contains("API Keys"));
        let e = explain(404, "Not found", "abc");
        assert!(
            e.contains("base_url and port") && e.contains("client id abc"),
            "{e}"
        );
    }
}
