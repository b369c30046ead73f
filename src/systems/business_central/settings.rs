//! The `[connections.<name>]` keys of a Business Central connection, and their checks.

use secrecy::SecretString;
use serde::Deserialize;

use crate::error::Result;
use crate::systems::settings::KeyPath;

/// A Business Central online environment and its Entra app registration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessCentralSettings {
    /// Entra tenant id or verified domain (also the tenant segment of the API URL).
    pub tenant_id: String,
    /// Environment name, e.g. `Production` or `Sandbox`.
    pub environment: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<SecretString>,
    /// Token authority host.
    #[serde(default = "crate::http::auth::entra::default_authority")]
    pub authority_url: String,
    /// API host (`https://api.businesscentral.dynamics.com`); the API base is
    /// `{api_url}/v2.0/{tenant_id}/{environment}`.
    #[serde(default = "default_bc_api")]
    pub api_url: String,
    /// OAuth scope; national clouds and on-prem use their own.
    #[serde(default = "default_bc_scope")]
    pub scope: String,
    /// Company ids or names to read; empty = every company. The company id is part of every
    /// key, so several companies share one table.
    #[serde(default)]
    pub companies: Vec<String>,
}

fn default_bc_api() -> String {
    "https://api.businesscentral.dynamics.com".into()
}

fn default_bc_scope() -> String {
    "https://api.businesscentral.dynamics.com/.default".into()
}

impl BusinessCentralSettings {
    /// `{api_url}/v2.0/{tenant}/{environment}` (no trailing slash); stream files add
    /// `/api/v2.0`.
    pub fn api_base(&self) -> String {
        format!(
            "{}/v2.0/{}/{}",
            self.api_url.trim_end_matches('/'),
            self.tenant_id,
            self.environment
        )
    }
}

/// Reads and checks a Business Central connection's keys.
///
/// Fails naming the key when one is unknown, missing or not a URL.
pub(crate) fn parse(table: toml::Table, at: &KeyPath) -> Result<BusinessCentralSettings> {
    let s: BusinessCentralSettings = at.typed(table)?;
    at.url(
        "api_url",
        &s.api_url,
        "https://api.businesscentral.dynamics.com",
    )?;
    at.url(
        "authority_url",
        &s.authority_url,
        "https://login.microsoftonline.com",
    )?;
    Ok(s)
}
