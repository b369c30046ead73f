//! `mlc connection check` for a Looker connection: a token, a cheap call, one row, and
//! every failure explained in words an administrator can act on.

use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};

use super::LookerSettings;
use crate::error::Error;
use crate::http::Endpoint;
use crate::systems::settings::CheckReport;

/// Checks the connection through `ep`, adding what it verified to `report` (or the problem).
pub(crate) async fn check(l: &LookerSettings, ep: &Endpoint, report: &mut CheckReport) {
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    let url = format!("{}/user?fields=id,display_name,email", ep.base);
    match ep.http.get(&url, &headers, "check").await {
        Ok(resp) => {
            let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
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
