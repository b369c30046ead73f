//! `mlc connection check` for a Pipedrive connection: a token, a cheap call, one row, and
//! every failure explained in words an administrator can act on.

use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};

use super::PipedriveSettings;
use crate::error::Error;
use crate::http::Endpoint;
use crate::systems::settings::CheckReport;

/// Checks the connection through `ep`, adding what it verified to `report` (or the problem).
pub(crate) async fn check(p: &PipedriveSettings, ep: &Endpoint, report: &mut CheckReport) {
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    let base = match ep.http.auth_api_base().await {
        Ok(b) => b.unwrap_or_else(|| ep.base.clone()),
        Err(e) => {
            report.problem = Some(e.to_string());
            return;
        }
    };
    let url = format!("{base}/api/v1/users/me");
    match ep.http.get(&url, &headers, "check").await {
        Ok(resp) => {
            let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
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

/// Pipedrive failures in words.
fn explain_pipedrive(e: &Error, base: &str, p: &PipedriveSettings) -> String {
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
