//! The `[connections.<name>]` keys of a Pipedrive connection, and their checks.

use secrecy::SecretString;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::systems::settings::KeyPath;

/// A Pipedrive company account, by API token or OAuth.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipedriveSettings {
    /// Company domain (`https://acme.pipedrive.com`) or `https://api.pipedrive.com`. With OAuth
    /// the token response's `api_domain` takes precedence.
    #[serde(default = "default_pipedrive_api")]
    pub api_url: String,
    /// Personal API token (sent as `x-api-token`).
    #[serde(default)]
    pub api_token: Option<SecretString>,
    /// OAuth app: client id, secret and a refresh token from the install.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<SecretString>,
    #[serde(default)]
    pub refresh_token: Option<SecretString>,
    /// OAuth token endpoint.
    #[serde(default = "default_pipedrive_oauth")]
    pub oauth_url: String,
    /// Stop a run when fewer daily API tokens than this remain (leaves room for the users'
    /// own integrations).
    #[serde(default)]
    pub daily_token_reserve: u64,
}

fn default_pipedrive_api() -> String {
    "https://api.pipedrive.com".into()
}

fn default_pipedrive_oauth() -> String {
    "https://oauth.pipedrive.com/oauth/token".into()
}

/// Reads and checks a Pipedrive connection's keys.
///
/// Fails naming the key when one is unknown or not a URL, and when OAuth is half set up.
pub(crate) fn parse(table: toml::Table, at: &KeyPath) -> Result<PipedriveSettings> {
    let s: PipedriveSettings = at.typed(table)?;
    at.url("api_url", &s.api_url, "https://acme.pipedrive.com")?;
    at.url(
        "oauth_url",
        &s.oauth_url,
        "https://oauth.pipedrive.com/oauth/token",
    )?;
    // OAuth: client_id here; client_secret and the refresh token in mlc.toml (`${VAR}`) or in
    // the vault, where a rotated refresh token is written back.
    if s.refresh_token.is_some() && s.client_id.is_none() {
        return Err(Error::config(format!(
            "{}: OAuth needs client_id with refresh_token (and client_secret); for a personal token set only api_token",
            at.connection()
        )));
    }
    Ok(s)
}
