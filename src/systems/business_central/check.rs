//! `mlc connection check` for a Business Central connection: a token, a cheap call, one row, and
//! every failure explained in words an administrator can act on.

use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};

use super::BusinessCentralSettings;
use crate::error::Error;
use crate::http::Endpoint;
use crate::systems::settings::CheckReport;

/// Checks the connection through `ep`, adding what it verified to `report` (or the problem).
pub(crate) async fn check(b: &BusinessCentralSettings, ep: &Endpoint, report: &mut CheckReport) {
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    let url = format!("{}/api/v2.0/companies?$select=id,name", ep.base);
    match ep.http.get(&url, &headers, "check").await {
        Ok(resp) => {
            let names: Vec<String> = serde_json::from_slice::<serde_json::Value>(&resp.body)
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
                    !names.contains(w) && !String::from_utf8_lossy(&resp.body).contains(w.as_str())
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

/// Business Central failures in words an admin can act on.
fn explain_business_central(e: &Error, b: &BusinessCentralSettings) -> String {
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
