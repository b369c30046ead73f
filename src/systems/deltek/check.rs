//! `mlc connection check` for a Vantagepoint connection: a token, a cheap call, one row, and
//! every failure explained in words an administrator can act on.

use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};

use super::DeltekSettings;
use crate::error::Error;
use crate::http::Endpoint;
use crate::systems::settings::CheckReport;

/// Checks the connection through `ep`, adding what it verified to `report` (or the problem).
pub(crate) async fn check(d: &DeltekSettings, ep: &Endpoint, report: &mut CheckReport) {
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
            match super::page::parse_page(&resp.body) {
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

/// Deltek failures in words an administrator can act on.
fn explain_deltek(e: &Error, d: &DeltekSettings) -> String {
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
