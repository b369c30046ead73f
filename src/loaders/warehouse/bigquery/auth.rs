//! BigQuery access tokens for the configured credentials mode, behind gcp-bigquery-client's
//! `Authenticator` trait so its client and our raw requests (uploads, jobs) share one source.
//!
//! The crate's own authenticator constructors are private, so the flows are built here from
//! the yup-oauth2 it re-exports (same versions, same rustls/ring stack). Tokens are cached by
//! yup-oauth2 (or here, for the metadata server) and never logged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::BoxFuture;
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::yup_oauth2;
use tokio::sync::Mutex;

use crate::config::{BigQueryConfig, BigQueryCredentials};
use crate::error::{Error, Result};

/// The OAuth scope of every BigQuery call (loads, queries, DDL).
const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";
/// Where GKE workload identity, Cloud Run and GCE serve the attached account's token.
const METADATA_TOKEN_URL: &str =
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token";

type TokenFn = Arc<dyn Fn() -> BoxFuture<'static, Result<String, BQError>> + Send + Sync>;

/// One token source; cheap to clone.
#[derive(Clone)]
pub struct TokenSource {
    fetch: TokenFn,
}

#[async_trait]
impl Authenticator for TokenSource {
    async fn access_token(&self) -> Result<String, BQError> {
        (self.fetch)().await
    }
}

impl TokenSource {
    /// The token source for `cfg.credentials`.
    ///
    /// Fails when the key file is missing or unreadable, or no application-default credentials
    /// can be found; the message says which setting or variable to fix (never the key itself).
    pub async fn from_config(cfg: &BigQueryConfig, http: reqwest::Client) -> Result<Self> {
        let auth_err = |message: String| Error::Auth {
            system: "bigquery".into(),
            message,
        };
        match cfg.credentials {
            BigQueryCredentials::None => Ok(Self::none()),
            BigQueryCredentials::ServiceAccountKey => {
                let path = match &cfg.key_file {
                    Some(p) => p.clone(),
                    None => std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS")
                        .map(Into::into)
                        .ok_or_else(|| {
                            Error::config(
                                "warehouse.bigquery.credentials = \"service_account_key\" needs warehouse.bigquery.key_file (or GOOGLE_APPLICATION_CREDENTIALS) pointing at the JSON key",
                            )
                        })?,
                };
                let key = yup_oauth2::read_service_account_key(&path)
                    .await
                    .map_err(|e| {
                        auth_err(format!(
                            "cannot read the service-account key {}: {e}",
                            path.display()
                        ))
                    })?;
                let auth = yup_oauth2::ServiceAccountAuthenticator::builder(key)
                    .build()
                    .await
                    .map_err(|e| {
                        auth_err(format!("service-account key {}: {e}", path.display()))
                    })?;
                Ok(Self::from_fn(move || {
                    let auth = auth.clone();
                    async move { token_of(auth.token(&[SCOPE]).await?) }
                }))
            }
            BigQueryCredentials::ApplicationDefault => {
                // gcloud's `application_default_credentials.json` holds user credentials, which
                // yup-oauth2's ADC flow does not read: try them first, as Google's libraries do.
                if let Some(secret) = authorized_user_secret().await {
                    let auth = yup_oauth2::AuthorizedUserAuthenticator::builder(secret)
                        .build()
                        .await
                        .map_err(|e| auth_err(format!("gcloud user credentials: {e}")))?;
                    return Ok(Self::from_fn(move || {
                        let auth = auth.clone();
                        async move { token_of(auth.token(&[SCOPE]).await?) }
                    }));
                }
                let opts = yup_oauth2::ApplicationDefaultCredentialsFlowOpts::default();
                match yup_oauth2::ApplicationDefaultCredentialsAuthenticator::builder(opts).await {
                    yup_oauth2::authenticator::ApplicationDefaultCredentialsTypes::ServiceAccount(b) => {
                        let auth = b.build().await.map_err(|e| {
                            auth_err(format!("GOOGLE_APPLICATION_CREDENTIALS: {e}"))
                        })?;
                        Ok(Self::from_fn(move || {
                            let auth = auth.clone();
                            async move { token_of(auth.token(&[SCOPE]).await?) }
                        }))
                    }
                    yup_oauth2::authenticator::ApplicationDefaultCredentialsTypes::InstanceMetadata(b) => {
                        let auth = b.build().await.map_err(|e| {
                            auth_err(format!("no application-default credentials (set GOOGLE_APPLICATION_CREDENTIALS, run `gcloud auth application-default login`, or run on GCP): {e}"))
                        })?;
                        Ok(Self::from_fn(move || {
                            let auth = auth.clone();
                            async move { token_of(auth.token(&[SCOPE]).await?) }
                        }))
                    }
                }
            }
            BigQueryCredentials::WorkloadIdentity => Ok(Self::metadata_server(http)),
        }
    }

    /// No token: for emulators, which accept any request.
    pub fn none() -> Self {
        Self::from_fn(|| async { Ok("unused".to_string()) })
    }

    fn from_fn<F, Fut>(f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<String, BQError>> + Send + 'static,
    {
        Self {
            fetch: Arc::new(move || Box::pin(f())),
        }
    }

    /// The metadata server's token, cached until a minute before it expires.
    fn metadata_server(http: reqwest::Client) -> Self {
        let cache: Arc<Mutex<Option<(String, Instant)>>> = Arc::new(Mutex::new(None));
        Self::from_fn(move || {
            let http = http.clone();
            let cache = cache.clone();
            async move {
                let mut slot = cache.lock().await;
                if let Some((token, until)) = slot.as_ref()
                    && Instant::now() < *until
                {
                    return Ok(token.clone());
                }
                #[derive(serde::Deserialize)]
                struct MetadataToken {
                    access_token: String,
                    expires_in: u64,
                }
                let got: MetadataToken = http
                    .get(METADATA_TOKEN_URL)
                    .header("Metadata-Flavor", "Google")
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                let until =
                    Instant::now() + Duration::from_secs(got.expires_in.saturating_sub(60).max(1));
                *slot = Some((got.access_token.clone(), until));
                Ok(got.access_token)
            }
        })
    }
}

fn token_of(t: yup_oauth2::AccessToken) -> Result<String, BQError> {
    t.token().map(str::to_string).ok_or(BQError::NoToken)
}

/// gcloud's user credentials (`type = "authorized_user"`), from GOOGLE_APPLICATION_CREDENTIALS
/// or `~/.config/gcloud/application_default_credentials.json`.
async fn authorized_user_secret() -> Option<yup_oauth2::authorized_user::AuthorizedUserSecret> {
    let path: std::path::PathBuf = match std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS") {
        Some(p) => p.into(),
        None => std::path::PathBuf::from(std::env::var_os("HOME")?)
            .join(".config/gcloud/application_default_credentials.json"),
    };
    let text = tokio::fs::read_to_string(&path).await.ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    if v.get("type").and_then(|t| t.as_str()) != Some("authorized_user") {
        return None;
    }
    serde_json::from_value(v).ok()
}
