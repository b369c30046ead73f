//! From a configured connection to a working client: secrets from the environment or the vault,
//! the auth provider, rate and concurrency limits; and `mlc connection check`, which gets a
//! token, reads one row and explains failures in plain words.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use secrecy::SecretString;
use serde::Serialize;

use crate::config::Connection;
use crate::error::{Error, Result};
use crate::http::auth::EntraClientCredentials;
use crate::http::auth::deltek::{DeltekLogin, DeltekPasswordGrant};
use crate::http::retry::RetryPolicy;
use crate::http::{Endpoint, HttpClient, Limits};
use crate::systems::ConnectionSettings;
use crate::vault::Vault;

/// The one runtime of each connection in this process (DESIGN.md §5).
///
/// A tenant's limits apply to the connection (the application user, the token), not to one
/// stream: Dataverse allows 6 000 requests per 5 minutes per user, Business Central processes
/// 5 requests at once. So every stream run, discovery, the sink's targets and `mlc serve`
/// share the endpoint built the first time a connection is used: one token per connection,
/// and the configured `requests_per_minute` and `max_concurrency` hold for the connection
/// whatever `sync.concurrency` is.
#[derive(Debug, Clone)]
pub struct Runtimes {
    vault: Vault,
    built: Arc<Mutex<HashMap<String, Endpoint>>>,
}

impl Runtimes {
    pub fn new(vault: Vault) -> Self {
        Self {
            vault,
            built: Arc::default(),
        }
    }

    /// The endpoint of `conn`, built on first use (secrets read then) and shared afterwards.
    pub fn endpoint(&self, conn: &Connection) -> Result<Endpoint> {
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ep) = built.get(&conn.name) {
            return Ok(ep.clone());
        }
        let ep = endpoint(conn, &self.vault)?;
        built.insert(conn.name.clone(), ep.clone());
        Ok(ep)
    }
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

/// Builds a new client of `conn`, with limits of its own: use [`Runtimes::endpoint`] wherever
/// more than one piece of work may use the connection.
pub fn endpoint(conn: &Connection, vault: &Vault) -> Result<Endpoint> {
    match &conn.settings {
        ConnectionSettings::Dataverse(d) => {
            let secret = secret(conn, vault, "client_secret", d.client_secret.as_ref())?;
            let auth = EntraClientCredentials::new(
                conn.system().as_str(),
                &d.authority_url,
                &d.tenant_id,
                &d.client_id,
                secret,
                d.scope(),
            );
            let http = HttpClient::new(
                conn.system().as_str(),
                &conn.name,
                Some(Arc::new(auth)),
                Limits {
                    // Service protection allows 6000 requests per 5 minutes per user; the
                    // limiter's burst (a tenth of a minute) comes on top of the rate, so 1100
                    // a minute stays under it: 110 + 5 × 1100 = 5610.
                    requests_per_minute: Some(conn.requests_per_minute.unwrap_or(1100)),
                    max_concurrency: conn.max_concurrency.unwrap_or(8),
                },
                RetryPolicy::default(),
            )?
            .with_hook(Arc::new(crate::streams::odata::DeltaExpiredIsFinal));
            Ok(Endpoint {
                http,
                base: d.api_base().to_string(),
            })
        }
        ConnectionSettings::BusinessCentral(b) => {
            let secret = secret(conn, vault, "client_secret", b.client_secret.as_ref())?;
            let auth = EntraClientCredentials::new(
                conn.system().as_str(),
                &b.authority_url,
                &b.tenant_id,
                &b.client_id,
                secret,
                b.scope.clone(),
            );
            let http = HttpClient::new(
                conn.system().as_str(),
                &conn.name,
                Some(Arc::new(auth)),
                Limits {
                    // 6000 requests per 5-minute sliding window per user; 5 processed at once
                    // (more queue, and a long queue ends in 503).
                    requests_per_minute: Some(conn.requests_per_minute.unwrap_or(1000)),
                    max_concurrency: conn.max_concurrency.unwrap_or(5),
                },
                RetryPolicy::default(),
            )?;
            Ok(Endpoint {
                http,
                base: b.api_base(),
            })
        }
        ConnectionSettings::Deltek(d) => {
            let password = secret(conn, vault, "password", d.password.as_ref())?;
            let client_secret = secret(conn, vault, "client_secret", d.client_secret.as_ref())?;
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
                conn.system().as_str(),
                &conn.name,
                Some(Arc::new(auth)),
                Limits {
                    // No published limit; tenants sit behind proxies that answer 429, and
                    // on-prem servers are small: stay conservative unless configured.
                    requests_per_minute: Some(conn.requests_per_minute.unwrap_or(120)),
                    max_concurrency: conn.max_concurrency.unwrap_or(2),
                },
                RetryPolicy::default(),
            )?;
            Ok(Endpoint { http, base })
        }
        ConnectionSettings::Pipedrive(p) => pipedrive_endpoint(conn, vault, p),
        ConnectionSettings::Looker(l) => {
            let secret = secret(conn, vault, "client_secret", l.client_secret.as_ref())?;
            let base = l.api_base();
            let auth = crate::http::auth::looker::LookerLogin::new(&base, &l.client_id, secret);
            // No published per-second limit, but every call counts against the edition's
            // monthly API quota and 429s are documented: 60 a minute, paced one at a time.
            let rpm = conn.requests_per_minute.unwrap_or(60);
            let http = HttpClient::new(
                conn.system().as_str(),
                &conn.name,
                Some(Arc::new(auth)),
                Limits {
                    requests_per_minute: Some(rpm),
                    max_concurrency: conn.max_concurrency.unwrap_or(2),
                },
                RetryPolicy::default(),
            )?
            .with_rate(rpm, 1)?;
            Ok(Endpoint { http, base })
        }
    }
}

/// Pipedrive: an API token (`x-api-token`) when one is configured or stored, else the OAuth
/// refresh grant (whose `api_domain` the reader prefers over `api_url`).
fn pipedrive_endpoint(
    conn: &Connection,
    vault: &Vault,
    p: &crate::systems::pipedrive::PipedriveSettings,
) -> Result<Endpoint> {
    use crate::http::auth::AuthProvider;
    use crate::http::auth::pipedrive::{
        PipedriveApiToken, PipedriveLimits, PipedriveOAuth, RefreshStore,
    };
    let stored = if p.api_token.is_none() && p.refresh_token.is_none() {
        vault.get(&conn.name)?.unwrap_or_default()
    } else {
        Default::default()
    };
    let auth: Arc<dyn AuthProvider> = if let Some(t) = p.api_token.clone().or_else(|| {
        (p.refresh_token.is_none())
            .then(|| stored.get("api_token").cloned())
            .flatten()
    }) {
        Arc::new(PipedriveApiToken::new(t))
    } else {
        let client_id = p.client_id.clone().ok_or_else(|| {
            Error::Config(format!(
                "connection `{}`: set api_token, or client_id with client_secret and refresh_token (OAuth)",
                conn.name
            ))
        })?;
        let secret_v = secret(conn, vault, "client_secret", p.client_secret.as_ref())?;
        let (refresh, store) = match &p.refresh_token {
            Some(r) => (r.clone(), None),
            None => (
                secret(conn, vault, "refresh_token", None)?,
                Some(RefreshStore {
                    vault: vault.clone(),
                    connection: conn.name.clone(),
                }),
            ),
        };
        Arc::new(PipedriveOAuth::new(
            &p.oauth_url,
            &client_id,
            secret_v,
            refresh,
            store,
        ))
    };
    let http = HttpClient::new(
        conn.system().as_str(),
        &conn.name,
        Some(auth),
        Limits {
            // Burst limit is 20–120 requests per 2 s per token by plan; the response headers
            // pace the rest. 600/min stays under the smallest plan's 2-second window.
            requests_per_minute: Some(conn.requests_per_minute.unwrap_or(600)),
            max_concurrency: conn.max_concurrency.unwrap_or(4),
        },
        RetryPolicy::default(),
    )?
    .with_hook(Arc::new(PipedriveLimits::new(p.daily_token_reserve)));
    Ok(Endpoint {
        http,
        base: p.api_url.trim_end_matches('/').to_string(),
    })
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
        ConnectionSettings::BusinessCentral(b) => {
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
            let url = format!("{}/api/v2.0/companies?$select=id,name", ep.base);
            match ep.http.get(&url, &headers, "check").await {
                Ok(resp) => {
                    let names: Vec<String> =
                        serde_json::from_slice::<serde_json::Value>(&resp.body)
                            .ok()
                            .and_then(|v| {
                                v.get("value")?.as_array().map(|a| {
                                    a.iter()
                                        .filter_map(|c| c.get("name")?.as_str().map(String::from))
                                        .collect()
                                })
                            })
                            .unwrap_or_default();
                    report.steps.push(format!(
                        "token issued and companies listed: {}",
                        names.join(", ")
                    ));
                    let missing: Vec<&String> = b
                        .companies
                        .iter()
                        .filter(|w| {
                            !names.contains(w)
                                && !String::from_utf8_lossy(&resp.body).contains(w.as_str())
                        })
                        .collect();
                    if missing.is_empty() {
                        report.ok = true;
                    } else {
                        report.problem = Some(format!(
                            "configured companies not found in environment {}: {}",
                            b.environment,
                            missing
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                }
                Err(e) => report.problem = Some(explain_business_central(&e, b)),
            }
        }
        ConnectionSettings::Deltek(d) => {
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
            let url = format!(
                "{}/employee?page=1&pageSize=1&fieldFilter=Employee",
                ep.base
            );
            match ep.http.get(&url, &headers, "check").await {
                Ok(resp) => {
                    report.steps.push(format!(
                        "token issued for user {} on database {}",
                        d.username, d.database
                    ));
                    match crate::streams::deltek::parse_page(&resp.body) {
                        Ok(_) => {
                            report.steps.push("read one employee row".into());
                            report.ok = true;
                        }
                        Err(e) => {
                            report.problem = Some(format!(
                                "{url} did not answer with a JSON array ({e}): is base_url the API root, ending in /api?"
                            ))
                        }
                    }
                }
                Err(e) => report.problem = Some(explain_deltek(&e, d)),
            }
        }
        ConnectionSettings::Looker(l) => {
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
            let url = format!("{}/user?fields=id,display_name,email", ep.base);
            match ep.http.get(&url, &headers, "check").await {
                Ok(resp) => {
                    let v: serde_json::Value =
                        serde_json::from_slice(&resp.body).unwrap_or_default();
                    report.steps.push(format!(
                        "logged in to {} as {} ({})",
                        l.api_base(),
                        v["display_name"].as_str().unwrap_or("?"),
                        v["email"].as_str().unwrap_or("?"),
                    ));
                    report.ok = true;
                }
                Err(e @ Error::Transport { .. }) => {
                    report.problem = Some(format!(
                        "cannot reach {}: check base_url and port (443, or 19999 for older AWS-hosted instances) ({e})",
                        l.api_base()
                    ))
                }
                Err(e) => report.problem = Some(e.to_string()),
            }
        }
        ConnectionSettings::Pipedrive(p) => {
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
            let base = match ep.http.auth_api_base().await {
                Ok(b) => b.unwrap_or_else(|| ep.base.clone()),
                Err(e) => {
                    report.problem = Some(e.to_string());
                    return report;
                }
            };
            let url = format!("{base}/api/v1/users/me");
            match ep.http.get(&url, &headers, "check").await {
                Ok(resp) => {
                    let v: serde_json::Value =
                        serde_json::from_slice(&resp.body).unwrap_or_default();
                    let d = &v["data"];
                    report.steps.push(format!(
                        "authenticated as {} ({}) in company {} ({})",
                        d["name"].as_str().unwrap_or("?"),
                        d["email"].as_str().unwrap_or("?"),
                        d["company_name"].as_str().unwrap_or("?"),
                        d["company_domain"].as_str().unwrap_or("?"),
                    ));
                    report.ok = true;
                }
                Err(e) => report.problem = Some(explain_pipedrive(&e, &base, p)),
            }
        }
    }
    report
}

/// Deltek failures in words an administrator can act on.
fn explain_deltek(e: &Error, d: &crate::systems::deltek::DeltekSettings) -> String {
    match e {
        Error::Auth { .. } => e.to_string(),
        Error::Http { status: 403, .. } => format!(
            "user `{}` may not read employees: give the API user's role access to the Employees, Firms, Contacts and Projects hubs (Settings > Security > Roles) ({e})",
            d.username
        ),
        Error::Http { status: 404, .. } => format!(
            "no Vantagepoint API at {}: base_url is the tenant URL ending in /api, e.g. https://acme.deltekfirst.com/acme/api ({e})",
            d.base_url
        ),
        Error::Transport { .. } => format!(
            "cannot reach {}: check base_url and the network ({e})",
            d.base_url
        ),
        _ => e.to_string(),
    }
}

/// Pipedrive failures in words.
fn explain_pipedrive(
    e: &Error,
    base: &str,
    p: &crate::systems::pipedrive::PipedriveSettings,
) -> String {
    match e {
        Error::Auth { .. } if p.api_token.is_some() || p.client_id.is_none() => format!(
            "Pipedrive refused the API token: copy it again from Personal preferences > API (a regenerated token invalidates the old one; each token belongs to one company) ({e})"
        ),
        Error::Auth { .. } => e.to_string(),
        Error::Http { status: 404, .. } => format!(
            "no Pipedrive API at {base}: use https://<company>.pipedrive.com or https://api.pipedrive.com as api_url ({e})"
        ),
        Error::Http { status, body, .. } if !body.trim_start().starts_with('{') => format!(
            "{base} answered HTTP {status} with something that is not the Pipedrive API (wrong domain, or a Cloudflare block): check api_url ({e})"
        ),
        Error::Transport { .. } => {
            format!("cannot reach {base}: check api_url (the company domain) and the network ({e})")
        }
        _ => e.to_string(),
    }
}

/// Business Central failures in words an admin can act on.
fn explain_business_central(
    e: &Error,
    b: &crate::systems::business_central::BusinessCentralSettings,
) -> String {
    match e {
        Error::Auth { .. } => e.to_string(),
        Error::Http {
            status: 401 | 403,
            body,
            ..
        } if body.contains("Authentication_") || body.contains("Authorization_") => format!(
            "the app is not enabled in Business Central: open the page \"Microsoft Entra applications\" in environment {}, add client id {} with State = Enabled and assign permission sets (API.ReadWrite.All needs admin consent in Entra) ({e})",
            b.environment, b.client_id
        ),
        Error::Http { status: 404, .. } => format!(
            "no Business Central environment `{}` for tenant `{}`: check environment and tenant_id ({e})",
            b.environment, b.tenant_id
        ),
        Error::Transport { .. } => format!(
            "cannot reach {}: check api_url and the network ({e})",
            b.api_url
        ),
        _ => e.to_string(),
    }
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
