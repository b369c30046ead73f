//! From a configured connection to a working client: secrets from the environment or the vault,
//! the auth provider, rate and concurrency limits; and `mlc connection check`, which gets a
//! token, reads one row and explains failures in plain words.

use std::sync::Arc;

use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use secrecy::SecretString;
use serde::Serialize;

use crate::config::{Connection, ConnectionSettings};
use crate::error::{Error, Result};
use crate::http::auth::EntraClientCredentials;
use crate::http::retry::RetryPolicy;
use crate::http::{HttpClient, Limits};
use crate::vault::Vault;

/// A connection ready to be read: its HTTP client and API base URL (no trailing slash).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub http: HttpClient,
    pub base: String,
}

/// The secret named `field` of `conn`: from mlc.toml (`${VAR}`, already expanded) or the vault.
fn secret(
    conn: &Connection,
    vault: &Vault,
    field: &str,
    from_config: Option<&SecretString>,
) -> Result<SecretString> {
    if let Some(v) = from_config {
        return Ok(v.clone());
    }
    let stored = vault.get(&conn.name)?;
    stored
        .and_then(|mut s| s.remove(field))
        .ok_or_else(|| {
            Error::Config(format!(
                "connection `{}` has no {field}: store it with `mlc connection add {} --system {}` (encrypted), or set {field} = \"${{VAR}}\" in mlc.toml",
                conn.name,
                conn.name,
                conn.system()
            ))
        })
}

/// Builds the client of `conn`.
pub fn endpoint(conn: &Connection, vault: &Vault) -> Result<Endpoint> {
    match &conn.settings {
        ConnectionSettings::Dataverse(d) => {
            let secret = secret(conn, vault, "client_secret", d.client_secret.as_ref())?;
            let auth = EntraClientCredentials::new(
                "dataverse",
                &d.authority_url,
                &d.tenant_id,
                &d.client_id,
                secret,
                d.scope(),
            );
            let http = HttpClient::new(
                "dataverse",
                &conn.name,
                Some(Arc::new(auth)),
                Limits {
                    // Service protection allows 6000 requests per 5 minutes per user.
                    requests_per_minute: Some(conn.requests_per_minute.unwrap_or(1200)),
                    max_concurrency: conn.max_concurrency.unwrap_or(8),
                },
                RetryPolicy::default(),
            )?;
            Ok(Endpoint {
                http,
                base: d.api_base().to_string(),
            })
        }
    }
}

/// The outcome of `mlc connection check`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub connection: String,
    pub system: String,
    pub ok: bool,
    /// What was verified, step by step.
    pub steps: Vec<String>,
    /// What to fix, when not ok.
    pub problem: Option<String>,
}

/// Gets a token, calls a cheap endpoint and reads one row; every failure becomes advice.
pub async fn check(conn: &Connection, vault: &Vault) -> CheckReport {
    let mut report = CheckReport {
        connection: conn.name.clone(),
        system: conn.system().to_string(),
        ok: false,
        steps: Vec::new(),
        problem: None,
    };
    let ep = match endpoint(conn, vault) {
        Ok(ep) => ep,
        Err(e) => {
            report.problem = Some(e.to_string());
            return report;
        }
    };
    match &conn.settings {
        ConnectionSettings::Dataverse(d) => {
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
            let who = format!("{}/api/data/v9.2/WhoAmI", ep.base);
            match ep.http.get(&who, &headers, "check").await {
                Ok(_) => report
                    .steps
                    .push("token issued and WhoAmI answered (application user exists)".into()),
                Err(e) => {
                    report.problem = Some(explain_dataverse(&e, &d.environment_url));
                    return report;
                }
            }
            let one = format!(
                "{}/api/data/v9.2/accounts?$select=accountid&$top=1",
                ep.base
            );
            match ep.http.get(&one, &headers, "check").await {
                Ok(_) => {
                    report.steps.push("read one account row".into());
                    report.ok = true;
                }
                Err(e) => report.problem = Some(explain_dataverse(&e, &d.environment_url)),
            }
        }
    }
    report
}

/// Dataverse failures in words a tenant admin can act on.
fn explain_dataverse(e: &Error, env_url: &str) -> String {
    match e {
        Error::Auth { .. } => e.to_string(),
        Error::Http {
            status: 403, body, ..
        } if body.contains("0x80072560") || body.contains("not a member of the organization") => {
            format!(
                "the app registration is not an application user of {env_url}: in the Power Platform admin center open the environment > Settings > Users + permissions > Application users, add the app and assign a security role"
            )
        }
        Error::Http { status: 403, .. } => format!(
            "the application user of {env_url} lacks privileges: assign it a security role with read access to the tables you sync ({e})"
        ),
        Error::Http { status: 404, .. } => format!(
            "no Dataverse Web API at {env_url}: check environment_url (https://<org>.crm<N>.dynamics.com) ({e})"
        ),
        Error::Transport { .. } => {
            format!("cannot reach {env_url}: check environment_url and the network ({e})")
        }
        _ => e.to_string(),
    }
}
