//! Microsoft Entra ID client-credentials grant, shared by Dataverse and Business Central (the
//! scope decides which service the token is for).

use std::fmt;
use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

use super::{
    AuthProvider, Cached, OAuthError, TokenAnswer, TokenCache, TokenResponse, renew_after,
    token_request,
};
use crate::error::{Error, Result};
use crate::http::redact::{body_excerpt, redact_url};

/// The Entra token authority of the public cloud (national clouds set their own).
pub fn default_authority() -> String {
    "https://login.microsoftonline.com".into()
}

/// Microsoft Entra ID client-credentials grant (Dataverse, Business Central).
pub struct EntraClientCredentials {
    system: String,
    token_url: String,
    tenant: String,
    client_id: String,
    secret: SecretString,
    scope: String,
    cache: TokenCache,
}

impl fmt::Debug for EntraClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraClientCredentials")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field("secret", &"***")
            .finish()
    }
}

impl EntraClientCredentials {
    /// `authority` is the Entra host (`https://login.microsoftonline.com`, a national cloud, or
    /// the sandbox); `scope` is `<resource>/.default`.
    pub fn new(
        system: &str,
        authority: &str,
        tenant: &str,
        client_id: &str,
        secret: SecretString,
        scope: String,
    ) -> Self {
        Self {
            system: system.to_string(),
            token_url: format!(
                "{}/{}/oauth2/v2.0/token",
                authority.trim_end_matches('/'),
                tenant
            ),
            tenant: tenant.to_string(),
            client_id: client_id.to_string(),
            secret,
            scope,
            cache: TokenCache::default(),
        }
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<Cached> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.secret.expose_secret()),
            ("scope", self.scope.as_str()),
        ];
        let TokenAnswer { status, body } = token_request(
            || http.post(&self.token_url).form(&form),
            |e| Error::Auth {
                system: self.system.clone(),
                message: format!(
                    "cannot reach the token authority {}: {}. Check authority_url (national clouds use their own login host).",
                    redact_url(&self.token_url),
                    crate::http::describe_reqwest_error(e)
                ),
            },
            |status, _| Error::Auth {
                system: self.system.clone(),
                message: format!("the token endpoint answered HTTP {status}"),
            },
        )
        .await?;
        if (200..300).contains(&status) {
            let tok: TokenResponse = serde_json::from_slice(&body).map_err(|e| Error::Auth {
                system: self.system.clone(),
                message: format!("the token endpoint answered 200 with an unreadable body: {e}"),
            })?;
            if tok
                .token_type
                .as_deref()
                .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
            {
                return Err(Error::Auth {
                    system: self.system.clone(),
                    message: "the token endpoint returned a non-Bearer token".into(),
                });
            }
            let ttl = tok.expires_in.and_then(|e| e.seconds()).unwrap_or(3599);
            let mut header = HeaderValue::from_str(&format!("Bearer {}", tok.access_token))
                .map_err(|_| Error::Auth {
                    system: self.system.clone(),
                    message: "the access token contains characters not allowed in a header".into(),
                })?;
            header.set_sensitive(true);
            return Ok(Cached {
                header,
                renew_at: Instant::now() + renew_after(Duration::from_secs(ttl)),
            });
        }
        let err: OAuthError = serde_json::from_slice(&body).unwrap_or_default();
        Err(Error::Auth {
            system: self.system.clone(),
            message: self.explain(status, &err, &body),
        })
    }

    /// Entra's error codes, in words a user can act on.
    fn explain(&self, status: u16, err: &OAuthError, body: &[u8]) -> String {
        let d = &err.error_description;
        let code = d.split(':').next().unwrap_or_default();
        let hint = match (err.error.as_str(), code) {
            (_, "AADSTS7000215") | (_, "AADSTS7000222") | ("invalid_client", _) => format!(
                "the client secret for client id {} is wrong or expired: create a new secret in the Entra app registration and store it with `mlc connection add`",
                self.client_id
            ),
            (_, "AADSTS700016") | ("unauthorized_client", _) => format!(
                "application (client id) {} was not found in tenant {}: check client_id and tenant_id, and that the app is registered in that tenant",
                self.client_id, self.tenant
            ),
            (_, "AADSTS90002") | (_, "AADSTS900023") => format!(
                "tenant `{}` was not found: check tenant_id (a GUID or a verified domain) and authority_url",
                self.tenant
            ),
            (_, "AADSTS70011") | ("invalid_scope", _) => format!(
                "the scope `{}` was refused: check the environment URL (the scope is built from it)",
                self.scope
            ),
            ("unsupported_grant_type", _) => {
                "the authority does not accept the client-credentials grant".to_string()
            }
            _ => String::new(),
        };
        let detail = if d.is_empty() {
            body_excerpt(body, 300)
        } else {
            d.lines().next().unwrap_or_default().to_string()
        };
        if hint.is_empty() {
            format!("token request refused (HTTP {status}): {detail}")
        } else {
            format!("{hint} (HTTP {status}: {detail})")
        }
    }
}

#[async_trait::async_trait]
impl AuthProvider for EntraClientCredentials {
    async fn authorization(
        &self,
        http: &reqwest::Client,
        refused: Option<&HeaderValue>,
    ) -> Result<(HeaderValue, bool)> {
        self.cache.header(refused, || self.fetch(http)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_before_expiry() {
        assert_eq!(
            renew_after(Duration::from_secs(3600)),
            Duration::from_secs(3300)
        );
        assert_eq!(renew_after(Duration::from_secs(10)), Duration::from_secs(8));
    }

    #[test]
    fn debug_hides_secret() {
        let a = EntraClientCredentials::new(
            "dataverse",
            "https://login.microsoftonline.com/",
            "t",
            "c",
            SecretString::from("hunter2"),
            "https://x/.default".into(),
        );
        let dbg = format!("{a:?}");
        assert!(!dbg.contains("hunter2"));
        assert!(dbg.contains("https://login.microsoftonline.com/t/oauth2/v2.0/token"));
    }

    #[test]
    fn explains_entra_errors() {
        let a = EntraClientCredentials::new(
            "dataverse",
            "https://login",
            "t",
            "c",
            SecretString::from("s"),
            "https://x/.default".into(),
        );
        let e = OAuthError {
            error: "invalid_client".into(),
            error_description: "AADSTS7000215: Invalid client secret provided.".into(),
        };
        assert!(a.explain(401, &e, b"").contains("client secret"));
        let e = OAuthError {
            error: "invalid_scope".into(),
            error_description: "AADSTS70011: bad".into(),
        };
        assert!(a.explain(400, &e, b"").contains("environment URL"));
    }
}
