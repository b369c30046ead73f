//! `mlc connection check` for a Dataverse connection: a token, a cheap call, one row, and
//! every failure explained in words an administrator can act on.

use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};

use super::DataverseSettings;
use crate::error::Error;
use crate::http::Endpoint;
use crate::systems::settings::CheckReport;

/// Checks the connection through `ep`, adding what it verified to `report` (or the problem).
pub(crate) async fn check(d: &DataverseSettings, ep: &Endpoint, report: &mut CheckReport) {
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    let who = format!("{}/api/data/v9.2/WhoAmI", ep.base);
    match ep.http.get(&who, &headers, "check").await {
        Ok(_) => report
            .steps
            .push("token issued and WhoAmI answered (application user exists)".into()),
        Err(e) => {
            report.problem = Some(explain_dataverse(&e, &d.environment_url));
            return;
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
