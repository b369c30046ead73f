//! The `[connections.<name>]` keys of a Dataverse connection, and their checks.

use secrecy::SecretString;
use serde::Deserialize;

use crate::error::Result;
use crate::systems::settings::KeyPath;

/// A Dataverse (Dynamics 365 Sales) environment and its Entra app registration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataverseSettings {
    /// `https://<org>.crm.dynamics.com`; the OAuth scope is built from it.
    pub environment_url: String,
    /// Web API host when it differs from the environment URL
    /// (`https://<org>.api.crm.dynamics.com`).
    #[serde(default)]
    pub api_url: Option<String>,
    /// Entra tenant id or verified domain.
    pub tenant_id: String,
    /// Application (client) id of the app registration.
    pub client_id: String,
    /// Token authority host; national clouds use their own.
    #[serde(default = "crate::http::auth::entra::default_authority")]
    pub authority_url: String,
    /// `${VAR}` reference only; otherwise stored with `mlc connection add`. Held as a secret
    /// so `Debug` output of the configuration never shows it.
    #[serde(default)]
    pub client_secret: Option<SecretString>,
}

impl DataverseSettings {
    /// Base of the Web API (no trailing slash).
    pub fn api_base(&self) -> &str {
        self.api_url
            .as_deref()
            .unwrap_or(&self.environment_url)
            .trim_end_matches('/')
    }

    /// `<environment URL>/.default`: Dataverse has no global resource, the scope is per org.
    pub fn scope(&self) -> String {
        format!("{}/.default", self.environment_url.trim_end_matches('/'))
    }
}

/// Reads and checks a Dataverse connection's keys.
///
/// Fails naming the key when one is unknown, missing or not a URL.
pub(crate) fn parse(table: toml::Table, at: &KeyPath) -> Result<DataverseSettings> {
    let s: DataverseSettings = at.typed(table)?;
    at.url(
        "environment_url",
        &s.environment_url,
        "https://contoso.crm.dynamics.com",
    )?;
    at.url(
        "authority_url",
        &s.authority_url,
        "https://login.microsoftonline.com",
    )?;
    Ok(s)
}
