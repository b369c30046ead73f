//! A connection's system-specific settings and what is done per connection: parse them from
//! mlc.toml, build a client, check it. One `match` per operation, each exhaustive over the
//! systems.

use secrecy::SecretString;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::business_central::{self, BusinessCentralSettings};
use super::dataverse::{self, DataverseSettings};
use super::deltek::{self, DeltekSettings};
use super::looker::{self, LookerSettings};
use super::pipedrive::{self, PipedriveSettings};
use super::system::System;
use crate::error::{Error, Result};
use crate::http::Endpoint;
use crate::vault::Vault;

/// A connection's system-specific settings (`[connections.<name>]` in mlc.toml).
#[derive(Debug, Clone)]
pub enum ConnectionSettings {
    Dataverse(DataverseSettings),
    BusinessCentral(BusinessCentralSettings),
    Deltek(DeltekSettings),
    Pipedrive(PipedriveSettings),
    Looker(LookerSettings),
}

impl ConnectionSettings {
    /// The system these settings are for.
    pub fn system(&self) -> System {
        match self {
            Self::Dataverse(_) => System::Dataverse,
            Self::BusinessCentral(_) => System::BusinessCentral,
            Self::Deltek(_) => System::Deltek,
            Self::Pipedrive(_) => System::Pipedrive,
            Self::Looker(_) => System::Looker,
        }
    }

    /// The URL that identifies the tenant, for listings.
    pub fn url(&self) -> String {
        match self {
            Self::Dataverse(d) => d.environment_url.clone(),
            Self::BusinessCentral(b) => b.api_base(),
            Self::Deltek(d) => d.base_url.clone(),
            Self::Pipedrive(p) => p.api_url.clone(),
            Self::Looker(l) => l.api_base(),
        }
    }

    /// Whether mlc.toml supplies the connection's secrets (as `${VAR}` references) rather than
    /// the vault.
    pub fn secrets_from_environment(&self) -> bool {
        match self {
            Self::Dataverse(d) => d.client_secret.is_some(),
            Self::BusinessCentral(b) => b.client_secret.is_some(),
            Self::Deltek(d) => d.password.is_some() && d.client_secret.is_some(),
            Self::Pipedrive(p) => p.api_token.is_some() || p.refresh_token.is_some(),
            Self::Looker(l) => l.client_secret.is_some(),
        }
    }

    /// The zone in which the system writes timestamps that carry none (Deltek).
    pub fn naive_time_zone(&self) -> Option<&str> {
        match self {
            Self::Deltek(d) => Some(&d.time_zone),
            // Queries run with `query_timezone` (UTC unless the stream says otherwise), and
            // Looker writes times in it without a zone.
            Self::Looker(_) => Some("UTC"),
            _ => None,
        }
    }
}

/// What building a connection's client needs besides its settings.
pub struct Wiring<'a> {
    pub system: System,
    /// The connection's name (logs, metrics, its vault entry).
    pub name: &'a str,
    /// mlc.toml's `requests_per_minute`; each system has its default.
    pub requests_per_minute: Option<u32>,
    /// mlc.toml's `max_concurrency`; each system has its default.
    pub max_concurrency: Option<usize>,
    /// Secrets mlc.toml does not give (and where a rotated refresh token is written back).
    pub vault: &'a Vault,
}

impl Wiring<'_> {
    /// The secret named `field`: mlc.toml's value (a `${VAR}`, already expanded) when given,
    /// else the vault's.
    ///
    /// Fails, saying how to store it, when neither has it.
    pub fn secret(&self, field: &str, from_config: Option<&SecretString>) -> Result<SecretString> {
        if let Some(v) = from_config {
            return Ok(v.clone());
        }
        self.vault
            .get(self.name)?
            .and_then(|mut s| s.remove(field))
            .ok_or_else(|| {
                Error::config(format!(
                    "connection `{}` has no {field}: store it with `mlc connection add {} --system {}` (encrypted), or set {field} = \"${{VAR}}\" in mlc.toml",
                    self.name, self.name, self.system
                ))
            })
    }
}

impl ConnectionSettings {
    /// A new client of the connection, with limits of its own.
    ///
    /// Fails when a secret is neither in mlc.toml nor in the vault, or the client cannot be
    /// built.
    pub fn endpoint(&self, w: &Wiring<'_>) -> Result<Endpoint> {
        match self {
            Self::Dataverse(s) => dataverse::connect::endpoint(s, w),
            Self::BusinessCentral(s) => business_central::connect::endpoint(s, w),
            Self::Deltek(s) => deltek::connect::endpoint(s, w),
            Self::Pipedrive(s) => pipedrive::connect::endpoint(s, w),
            Self::Looker(s) => looker::connect::endpoint(s, w),
        }
    }
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

impl ConnectionSettings {
    /// `mlc connection check`'s calls for this system through `ep`: what was verified goes to
    /// `report.steps`, a failure to `report.problem` in words an administrator can act on.
    pub async fn check(&self, ep: &Endpoint, report: &mut CheckReport) {
        match self {
            Self::Dataverse(s) => dataverse::check::check(s, ep, report).await,
            Self::BusinessCentral(s) => business_central::check::check(s, ep, report).await,
            Self::Deltek(s) => deltek::check::check(s, ep, report).await,
            Self::Pipedrive(s) => pipedrive::check::check(s, ep, report).await,
            Self::Looker(s) => looker::check::check(s, ep, report).await,
        }
    }
}

/// Reads `table` (a connection's keys, `system` and the keys every connection accepts
/// removed) as the settings of `system`.
///
/// Fails naming the key and the fix when a key is unknown, missing or invalid.
pub(crate) fn parse_settings(
    system: System,
    table: toml::Table,
    at: &KeyPath,
) -> Result<ConnectionSettings> {
    Ok(match system {
        System::Dataverse => ConnectionSettings::Dataverse(dataverse::parse(table, at)?),
        System::BusinessCentral => {
            ConnectionSettings::BusinessCentral(business_central::parse(table, at)?)
        }
        System::Deltek => ConnectionSettings::Deltek(deltek::parse(table, at)?),
        System::Pipedrive => ConnectionSettings::Pipedrive(pipedrive::parse(table, at)?),
        System::Looker => ConnectionSettings::Looker(looker::parse(table, at)?),
    })
}

/// Names the keys of one connection in errors (`connections.crm.tenant_id`).
pub(crate) struct KeyPath {
    connection: String,
}

impl KeyPath {
    pub(crate) fn new(connection: &str) -> Self {
        Self {
            connection: connection.to_string(),
        }
    }

    /// `connections.<name>`.
    pub(crate) fn connection(&self) -> String {
        format!("connections.{}", self.connection)
    }

    /// `connections.<name>.<key>`.
    pub(crate) fn key(&self, key: &str) -> String {
        format!("connections.{}.{key}", self.connection)
    }

    /// The table as settings of type `T`; an unknown, missing or mistyped key is an error
    /// naming the connection.
    pub(crate) fn typed<T: DeserializeOwned>(&self, table: toml::Table) -> Result<T> {
        table.try_into().map_err(|e: toml::de::Error| {
            Error::config(format!("{}: {}", self.connection(), e.to_string().trim()))
        })
    }

    /// Checks that `value` of `key` is a URL; the error gives `example`.
    pub(crate) fn url(&self, key: &str, value: &str, example: &str) -> Result<()> {
        url::Url::parse(value).map(|_| ()).map_err(|e| {
            Error::config(format!(
                "{} = \"{value}\" is not a URL ({e}); e.g. {example}",
                self.key(key)
            ))
        })
    }
}
