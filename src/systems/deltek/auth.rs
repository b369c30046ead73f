//! Deltek Vantagepoint OAuth2 password grant: `POST {base}/token` with the API user's name and
//! password, the database and the API authorization's client id/secret. The `bearer` token is
//! cached and renewed ahead of expiry with the refresh grant (a rotated refresh token is kept);
//! when the refresh is refused, or the service refuses a token (401), a fresh password login is
//! made. Failures become advice an administrator can act on.

use std::fmt;
use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::error::{Error, Result};
use crate::http::auth::{AuthProvider, Cached, TokenAnswer, TokenResponse, token_request};
use crate::http::redact::{body_excerpt, redact_url};

/// Renew this long before the token expires (Vantagepoint tokens last about 30 minutes).
const RENEW_MARGIN: Duration = Duration::from_secs(60);

/// What a Deltek login needs. Secrets stay in `SecretString`.
pub struct DeltekLogin {
    /// The tenant's API base, ending in `/api` (no trailing slash).
    pub base_url: String,
    pub database: String,
    pub username: String,
    pub password: SecretString,
    pub client_id: String,
    pub client_secret: SecretString,
    pub integrated: bool,
    pub culture: Option<String>,
}

/// The cached token and the refresh token that renews it.
struct State {
    cached: Option<Cached>,
    refresh_token: Option<SecretString>,
}

/// The password-grant provider of one Vantagepoint connection.
pub struct DeltekPasswordGrant {
    login: DeltekLogin,
    token_url: String,
    state: Mutex<State>,
}

impl fmt::Debug for DeltekPasswordGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeltekPasswordGrant")
            .field("token_url", &self.token_url)
            .field("database", &self.login.database)
            .field("username", &self.login.username)
            .field("client_id", &self.login.client_id)
            .field("password", &"***")
            .field("client_secret", &"***")
            .finish()
    }
}

/// The two error shapes Vantagepoint answers with: OAuth (`error`, `error_description`) on
/// `/token`, and `message`/`detail` elsewhere.
#[derive(Deserialize, Default)]
pub(crate) struct DeltekError {
    #[serde(default)]
    pub(crate) error: String,
    #[serde(default)]
    pub(crate) error_description: String,
    #[serde(default, alias = "Message")]
    pub(crate) message: String,
    #[serde(default, alias = "Detail")]
    pub(crate) detail: String,
}

impl DeltekError {
    pub(crate) fn parse(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }

    /// Every text of the error, lowercased, for matching.
    fn text(&self) -> String {
        format!(
            "{} {} {} {}",
            self.error, self.error_description, self.message, self.detail
        )
        .to_ascii_lowercase()
    }

    /// The most useful sentence of the error (or an excerpt of the body).
    pub(crate) fn summary(&self, body: &[u8]) -> String {
        let parts: Vec<&str> = [
            self.error.as_str(),
            self.error_description.as_str(),
            self.message.as_str(),
            self.detail.as_str(),
        ]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
        if parts.is_empty() {
            body_excerpt(body, 300)
        } else {
            parts.join(": ")
        }
    }
}

impl DeltekPasswordGrant {
    pub fn new(login: DeltekLogin) -> Self {
        let token_url = format!("{}/token", login.base_url.trim_end_matches('/'));
        Self {
            login,
            token_url,
            state: Mutex::new(State {
                cached: None,
                refresh_token: None,
            }),
        }
    }

    fn auth_err(&self, message: String) -> Error {
        Error::Auth {
            system: "deltek".into(),
            message,
        }
    }

    /// The password grant.
    async fn password_login(&self, http: &reqwest::Client) -> Result<(Cached, Option<String>)> {
        let l = &self.login;
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "password"),
            ("username", l.username.as_str()),
            ("password", l.password.expose_secret()),
            ("integrated", if l.integrated { "Y" } else { "N" }),
            ("database", l.database.as_str()),
            ("client_id", l.client_id.as_str()),
            ("client_secret", l.client_secret.expose_secret()),
        ];
        if let Some(c) = &l.culture {
            form.push(("culture", c.as_str()));
        }
        self.token_request(http, &form).await
    }

    /// The refresh grant (the database is sent too: some releases want it).
    async fn refresh_login(
        &self,
        http: &reqwest::Client,
        refresh: &SecretString,
    ) -> Result<(Cached, Option<String>)> {
        let l = &self.login;
        let form: Vec<(&str, &str)> = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.expose_secret()),
            ("client_id", l.client_id.as_str()),
            ("client_secret", l.client_secret.expose_secret()),
            ("database", l.database.as_str()),
        ];
        self.token_request(http, &form).await
    }

    /// Posts the form; transient failures (transport, 429, 5xx) are retried twice.
    async fn token_request(
        &self,
        http: &reqwest::Client,
        form: &[(&str, &str)],
    ) -> Result<(Cached, Option<String>)> {
        let TokenAnswer { status, body } = token_request(
            || http.post(&self.token_url).form(form),
            |e| {
                self.auth_err(format!(
                    "cannot reach the Vantagepoint token endpoint {}: {}. Check base_url (the tenant URL ending in /api).",
                    redact_url(&self.token_url),
                    crate::http::describe_reqwest_error(e)
                ))
            },
            |status, body| {
                self.auth_err(format!(
                    "the token endpoint answered HTTP {status}: {}",
                    DeltekError::parse(body).summary(body)
                ))
            },
        )
        .await?;
        if (200..300).contains(&status) {
            let tok: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
                self.auth_err(format!(
                    "the token endpoint answered {status} with an unreadable body ({e}); is base_url the API root (ending in /api)?"
                ))
            })?;
            let ttl = tok.expires_in.and_then(|e| e.seconds()).unwrap_or(1799);
            let mut header = HeaderValue::from_str(&format!("bearer {}", tok.access_token))
                .map_err(|_| {
                    self.auth_err(
                        "the access token contains characters not allowed in a header".into(),
                    )
                })?;
            header.set_sensitive(true);
            let ttl = Duration::from_secs(ttl);
            // Short tokens (tests) are renewed at four fifths of their life.
            let renew = if ttl > RENEW_MARGIN * 2 {
                ttl - RENEW_MARGIN
            } else {
                ttl * 4 / 5
            };
            return Ok((
                Cached {
                    header,
                    renew_at: Instant::now() + renew,
                },
                tok.refresh_token,
            ));
        }
        Err(self.auth_err(explain(status, &body, &self.login)))
    }
}

/// A refused login in words an administrator can act on.
pub(crate) fn explain(status: u16, body: &[u8], l: &DeltekLogin) -> String {
    let err = DeltekError::parse(body);
    let t = err.text();
    let summary = err.summary(body);
    let hint = if t.contains("password grant")
        || t.contains("unsupported_grant_type")
        || t.contains("unauthorized_client")
    {
        format!(
            "the API authorization for client id {} does not allow the password grant: in Vantagepoint open Settings > Integrations > API Authorization, edit the authorization and tick \"Allow Password Grant Type\"",
            l.client_id
        )
    } else if t.contains("database") {
        format!(
            "database `{}` is not known to this Vantagepoint tenant: copy the Database Name shown on the API Authorization form",
            l.database
        )
    } else if t.contains("invalid_client") || t.contains("client") && t.contains("secret") {
        format!(
            "client id {} or its secret is wrong: copy the Client ID and Secret from Settings > Integrations > API Authorization (generating a new secret invalidates the old one) and store it with `mlc connection add`",
            l.client_id
        )
    } else if t.contains("invalid_grant")
        || t.contains("password")
        || t.contains("user")
        || status == 401
    {
        format!(
            "user `{}` could not log in: check username and password (and `integrated` for Windows/Entra users), that the user is active, and that \"force password reset\" is off for the API user",
            l.username
        )
    } else if status == 403 {
        format!(
            "user `{}` has no API access: give the user's role access to the hubs you sync (Settings > Security > Roles)",
            l.username
        )
    } else {
        String::new()
    };
    if hint.is_empty() {
        format!("token request refused (HTTP {status}): {summary}")
    } else {
        format!("{hint} (HTTP {status}: {summary})")
    }
}

#[async_trait::async_trait]
impl AuthProvider for DeltekPasswordGrant {
    async fn authorization(
        &self,
        http: &reqwest::Client,
        refused: Option<&HeaderValue>,
    ) -> Result<(HeaderValue, bool)> {
        let mut st = self.state.lock().await;
        if let Some(c) = st.cached.as_ref()
            && Instant::now() < c.renew_at
            && refused.is_none_or(|r| *r != c.header)
        {
            return Ok((c.header.clone(), false));
        }
        let refresh = refused.is_some();
        // Ahead of expiry the refresh grant is enough; after a refused token (401) the session
        // may be gone, so a fresh password login is made.
        let renewed = match (refresh, st.refresh_token.clone()) {
            (false, Some(rt)) => match self.refresh_login(http, &rt).await {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::info!(
                        system = "deltek",
                        "refresh grant refused, logging in again: {e}"
                    );
                    None
                }
            },
            _ => None,
        };
        let (cached, rotated) = match renewed {
            Some(r) => r,
            None => self.password_login(http).await?,
        };
        if let Some(rt) = rotated {
            st.refresh_token = Some(SecretString::from(rt));
        }
        let header = cached.header.clone();
        st.cached = Some(cached);
        Ok((header, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login() -> DeltekLogin {
        DeltekLogin {
            base_url: "https://acme.deltekfirst.com/acme/api/".into(),
            database: "ACME_PROD".into(),
            username: "api".into(),
            password: SecretString::from("pw-hunter2"),
            client_id: "cid".into(),
            client_secret: SecretString::from("cs-hunter2"),
            integrated: false,
            culture: None,
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let a = DeltekPasswordGrant::new(login());
        let d = format!("{a:?}");
        assert!(!d.contains("hunter2"));
        assert!(d.contains("https://acme.deltekfirst.com/acme/api/token"));
    }

    #[test]
    fn explains_the_real_failures() {
        let l = login();
        let e = explain(
            400,
            br#"{"error":"unauthorized_client","error_description":"Password grant type is not allowed for this client"}"#,
            &l,
        );
        assert!(e.contains("Allow Password Grant Type"), "{e}");
        let e = explain(
            400,
            br#"{"error":"invalid_request","error_description":"Invalid database"}"#,
            &l,
        );
        assert!(e.contains("ACME_PROD"), "{e}");
        let e = explain(
            400,
            br#"{"error":"invalid_grant","error_description":"The user name or password is incorrect."}"#,
            &l,
        );
        assert!(e.contains("user `api`"), "{e}");
        let e = explain(
            401,
            br#"{"error":"invalid_client","error_description":"Client authentication failed"}"#,
            &l,
        );
        assert!(e.contains("Client ID and Secret"), "{e}");
        let e = explain(403, br#"{"message":"Forbidden","detail":"no access"}"#, &l);
        assert!(e.contains("role"), "{e}");
    }
}
