//! From a configured connection to a working client: secrets from the environment or the vault,
//! the auth provider, rate and concurrency limits; and `mlc connection check`, which gets a
//! token, reads one row and explains failures in plain words.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use serde::Serialize;

use crate::config::Connection;
use crate::error::{Error, Result};
use crate::http::Endpoint;
use crate::systems::{ConnectionSettings, Wiring};
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

/// Builds a new client of `conn`, with limits of its own: use [`Runtimes::endpoint`] wherever
/// more than one piece of work may use the connection.
pub fn endpoint(conn: &Connection, vault: &Vault) -> Result<Endpoint> {
    conn.settings.endpoint(&Wiring {
        system: conn.system(),
        name: &conn.name,
        requests_per_minute: conn.requests_per_minute,
        max_concurrency: conn.max_concurrency,
        vault,
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
