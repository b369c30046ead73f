//! The `[connections.<name>]` keys of a Looker connection, and their checks.

use secrecy::SecretString;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::systems::settings::KeyPath;

/// A Looker instance (API 4.0) and an API key pair (client id and secret) of the Looker user
/// whose permissions the reverse streams run with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookerSettings {
    /// Instance URL, e.g. `https://acme.cloud.looker.com` (or the Admin > API "API Host URL").
    pub base_url: String,
    /// API port: 443 for instances on GCP, Azure and AWS created from 2020-07-07, 19999 for
    /// older AWS-hosted instances (the legacy API port). Default: the URL's own port.
    #[serde(default)]
    pub port: Option<u16>,
    /// Client id of the API key.
    pub client_id: String,
    /// Client secret of the API key; only as `${VAR}`, otherwise stored with
    /// `mlc connection add`.
    #[serde(default)]
    pub client_secret: Option<SecretString>,
    /// Longest wait for one query task (queued plus running), in seconds.
    #[serde(default = "default_looker_timeout")]
    pub query_timeout_seconds: f64,
    /// First wait between status polls of a query task, in milliseconds; it grows by half
    /// each poll up to `poll_max_interval_ms`.
    #[serde(default = "default_looker_poll")]
    pub poll_interval_ms: u64,
    /// Longest wait between two status polls, in milliseconds.
    #[serde(default = "default_looker_poll_max")]
    pub poll_max_interval_ms: u64,
    /// Most rows a `limit = -1` (unlimited) stream accepts. Looker cuts unlimited results
    /// silently (formats that are not streamed, users without the permission to download
    /// without a limit), so such a query is run with this many rows plus one as its limit, and a
    /// result that reaches it fails the run instead of replacing the table.
    #[serde(default = "default_looker_max_rows")]
    pub max_result_rows: u64,
}

fn default_looker_max_rows() -> u64 {
    1_000_000
}

fn default_looker_timeout() -> f64 {
    600.0
}

fn default_looker_poll() -> u64 {
    500
}

fn default_looker_poll_max() -> u64 {
    5000
}

impl LookerSettings {
    /// `{scheme}://{host}:{port}/api/4.0` (no trailing slash).
    pub fn api_base(&self) -> String {
        let mut base = self.base_url.trim_end_matches('/').to_string();
        if let Some(port) = self.port
            && let Ok(mut u) = url::Url::parse(&base)
            && u.set_port(Some(port)).is_ok()
        {
            base = u.as_str().trim_end_matches('/').to_string();
        }
        format!("{base}/api/4.0")
    }
}

/// Reads and checks a Looker connection's keys.
///
/// Fails naming the key when one is unknown, missing or not a URL, and when a wait is not
/// positive.
pub(crate) fn parse(table: toml::Table, at: &KeyPath) -> Result<LookerSettings> {
    let s: LookerSettings = at.typed(table)?;
    at.url("base_url", &s.base_url, "https://acme.cloud.looker.com")?;
    if s.query_timeout_seconds.is_nan() || s.query_timeout_seconds <= 0.0 || s.poll_interval_ms == 0
    {
        return Err(Error::config(format!(
            "{}: query_timeout_seconds and poll_interval_ms must be positive",
            at.connection()
        )));
    }
    Ok(s)
}
