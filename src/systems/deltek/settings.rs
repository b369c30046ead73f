//! The `[connections.<name>]` keys of a Vantagepoint connection, and their checks.

use secrecy::SecretString;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::systems::settings::KeyPath;

/// A Deltek Vantagepoint database and its API authorization (password grant).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltekSettings {
    /// The full tenant URL up to and including `/api`, e.g.
    /// `https://acme.deltekfirst.com/acme/api` (on-prem: `https://vp.example.com/vantagepoint/api`).
    pub base_url: String,
    /// Database name as shown on the API Authorization form.
    pub database: String,
    pub username: String,
    #[serde(default)]
    pub password: Option<SecretString>,
    /// Client id of the API authorization ("Consumer Key").
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<SecretString>,
    /// Windows / Entra integrated authentication (`integrated=Y`).
    #[serde(default)]
    pub integrated: bool,
    /// Zone of the tenant's zone-less timestamps (IANA name). Required: Vantagepoint's
    /// timestamps carry no zone and its API does not say which one the server writes them in,
    /// so a guessed UTC would shift every `ModDate` cursor by the server's offset.
    pub time_zone: String,
    /// How opportunities are modelled: `hub` (before 5.0: the Opportunities hub) or
    /// `project_stage` (5.0+: projects with a pursuit stage).
    #[serde(default)]
    pub opportunity_model: OpportunityModel,
    /// `culture` sent at login (e.g. `en-US`).
    #[serde(default)]
    pub culture: Option<String>,
}

/// Where a Vantagepoint tenant keeps its opportunities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OpportunityModel {
    /// The Opportunities hub of releases before 5.0.
    Hub,
    /// 5.0+: regular projects carrying a pursuit `Stage`.
    #[default]
    ProjectStage,
}

/// Reads and checks a Vantagepoint connection's keys.
///
/// Fails naming the key when one is unknown, missing or not a URL, and when `time_zone` is
/// missing or not an IANA zone (the tenant's timestamps carry none).
pub(crate) fn parse(table: toml::Table, at: &KeyPath) -> Result<DeltekSettings> {
    if !table.contains_key("time_zone") {
        return Err(Error::config(format!(
            "{} is not set: Vantagepoint timestamps carry no time zone, so mlc must be told the server's: set the IANA zone the Vantagepoint server writes its times in (a hosted tenant's region or an on-premises server's clock; e.g. time_zone = \"America/New_York\", or \"UTC\" if it runs in UTC)",
            at.key("time_zone")
        )));
    }
    let s: DeltekSettings = at.typed(table)?;
    at.url(
        "base_url",
        &s.base_url,
        "https://acme.deltekfirst.com/acme/api",
    )?;
    if s.time_zone.parse::<arrow_array::timezone::Tz>().is_err() {
        return Err(Error::config(format!(
            "{} = \"{}\" is not an IANA time zone; e.g. \"America/New_York\"",
            at.key("time_zone"),
            s.time_zone
        )));
    }
    Ok(s)
}
