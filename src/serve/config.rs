//! The `[serve]` section of mlc.toml: where `mlc serve` listens, how many runs it allows at
//! once, which sink flows webhooks may drive, the schedules, and per-connection webhook
//! settings. Secrets (webhook keys, Basic-auth passwords, signing secrets, BC `clientState`)
//! are never here: they live in the encrypted vault under `webhook.<connection>`.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::Deserialize;

use crate::error::{Error, Result};

/// `[serve]`, validated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Address the webhook/health/metrics server binds (`--listen` overrides it).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Public base URL the SaaS systems call (`https://elt.example.com`); webhook URLs are
    /// `{public_url}/webhooks/{system}/{connection}`. Default: `http://{listen}`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Runs (one trigger = one connection's streams, then its flows) executing at once.
    #[serde(default = "default_max_runs")]
    pub max_concurrent_runs: usize,
    /// Largest webhook body accepted (413 above it).
    #[serde(default = "default_body")]
    pub max_body_bytes: usize,
    /// Sink flows a webhook-triggered run of one of their source streams is followed by
    /// (`flows` of a schedule are applied whether or not listed here).
    #[serde(default)]
    pub flows: Vec<String>,
    /// Business Central subscriptions are renewed when less than this is left of their
    /// 3-day life (default 36 h: renewal at half-life, so a day of downtime still renews).
    #[serde(default = "default_renew")]
    pub renew_before_hours: f64,
    #[serde(default)]
    pub schedules: Vec<ScheduleConfig>,
    /// Webhook settings per connection name.
    #[serde(default)]
    pub webhooks: BTreeMap<String, WebhookConfig>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            public_url: None,
            max_concurrent_runs: default_max_runs(),
            max_body_bytes: default_body(),
            flows: Vec::new(),
            renew_before_hours: default_renew(),
            schedules: Vec::new(),
            webhooks: BTreeMap::new(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8787".into()
}
fn default_max_runs() -> usize {
    2
}
fn default_body() -> usize {
    1024 * 1024
}
fn default_renew() -> f64 {
    36.0
}
fn default_tz() -> String {
    "UTC".into()
}

/// `[[serve.schedules]]`: a cron expression and what it runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Name in logs, metrics and the state store (default `schedule-<n>`); keep it stable:
    /// the last fire time is stored under it (missed-run policy).
    #[serde(default)]
    pub name: Option<String>,
    /// Cron: 5 fields (minute granularity) or 6 (leading seconds), `@hourly`-style aliases.
    pub cron: String,
    /// IANA zone the expression is read in (`Europe/Paris`); DST handled by croner.
    #[serde(default = "default_tz")]
    pub time_zone: String,
    /// Only this connection (default: every connection with a matching stream).
    #[serde(default)]
    pub connection: Option<String>,
    /// Stream patterns as `mlc sync` takes them (default: every stream of the connection).
    #[serde(default)]
    pub streams: Vec<String>,
    /// Sink flows applied after the runs (`mlc sink apply --yes`).
    #[serde(default)]
    pub flows: Vec<String>,
}

impl ScheduleConfig {
    pub fn name(&self, index: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("schedule-{index}"))
    }

    /// The parsed expression; fails with the key and the problem.
    pub fn parse_cron(&self, index: usize) -> Result<croner::Cron> {
        croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(&self.cron)
            .map_err(|e| {
                Error::config(format!(
                    "serve.schedules[{index}].cron = \"{}\": {e} (5 fields `min hour dom month dow`, or 6 with leading seconds)",
                    self.cron
                ))
            })
    }

    /// The parsed zone; fails with the key.
    pub fn parse_tz(&self, index: usize) -> Result<chrono_tz::Tz> {
        chrono_tz::Tz::from_str(&self.time_zone).map_err(|_| {
            Error::config(format!(
                "serve.schedules[{index}].time_zone = \"{}\": not an IANA time zone (e.g. \"Europe/Paris\", \"UTC\")",
                self.time_zone
            ))
        })
    }
}

/// `[serve.webhooks.<connection>]`. Which keys apply depends on the connection's system.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Dataverse: header carrying the shared key (service endpoint auth type HttpHeader).
    /// Default: the `code` query parameter (auth type WebhookKey).
    #[serde(default)]
    pub key_header: Option<String>,
    /// Dataverse: query parameter carrying the key (auth type HttpQueryString); default `code`.
    #[serde(default)]
    pub key_query: Option<String>,
    /// Pipedrive: Basic-auth user set on the webhooks (`http_auth_user`); default `mlc`.
    #[serde(default)]
    pub basic_user: Option<String>,
    /// Pipedrive: webhook payload version registered, `"1.0"` or `"2.0"` (default).
    #[serde(default)]
    pub version: Option<String>,
    /// Pipedrive: objects to register webhooks for (default deal, person, organization,
    /// product); Business Central: ignored.
    #[serde(default)]
    pub objects: Vec<String>,
    /// Pipedrive: header holding a hex HMAC-SHA256 of the raw body, checked when a
    /// `signing_secret` is stored (default `x-pipedrive-signature`).
    #[serde(default)]
    pub signature_header: Option<String>,
    /// Business Central: entity sets to subscribe to in every configured company
    /// (default: customers, items, salesInvoices, salesOrders, vendors).
    #[serde(default)]
    pub resources: Vec<String>,
}

impl WebhookConfig {
    pub fn pipedrive_objects(&self) -> Vec<String> {
        if self.objects.is_empty() {
            ["deal", "person", "organization", "product"]
                .map(String::from)
                .to_vec()
        } else {
            self.objects.clone()
        }
    }

    pub fn bc_resources(&self) -> Vec<String> {
        if self.resources.is_empty() {
            [
                "customers",
                "items",
                "salesInvoices",
                "salesOrders",
                "vendors",
            ]
            .map(String::from)
            .to_vec()
        } else {
            self.resources.clone()
        }
    }

    pub fn pipedrive_version(&self) -> &str {
        self.version.as_deref().unwrap_or("2.0")
    }

    pub fn basic_user(&self) -> &str {
        self.basic_user.as_deref().unwrap_or("mlc")
    }
}

impl ServeConfig {
    /// Checks what can be checked without the definitions: addresses, limits, cron
    /// expressions and zones.
    pub fn validate(&self) -> Result<()> {
        if self.max_concurrent_runs == 0 {
            return Err(Error::config(
                "serve.max_concurrent_runs must be at least 1",
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err(Error::config(
                "serve.max_body_bytes must be at least 1024 (Dataverse contexts are up to 256 KB)",
            ));
        }
        if !(self.renew_before_hours > 0.0 && self.renew_before_hours < 72.0) {
            return Err(Error::config(
                "serve.renew_before_hours must be between 0 and 72 (subscriptions live 3 days)",
            ));
        }
        if let Some(u) = &self.public_url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            return Err(Error::config(format!(
                "serve.public_url = \"{u}\": use the http(s) base URL the systems can reach"
            )));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, s) in self.schedules.iter().enumerate() {
            s.parse_cron(i)?;
            s.parse_tz(i)?;
            if !names.insert(s.name(i)) {
                return Err(Error::config(format!(
                    "serve.schedules[{i}]: name `{}` is used twice",
                    s.name(i)
                )));
            }
        }
        for (conn, w) in &self.webhooks {
            if let Some(v) = &w.version
                && v != "1.0"
                && v != "2.0"
            {
                return Err(Error::config(format!(
                    "serve.webhooks.{conn}.version = \"{v}\": use \"1.0\" or \"2.0\""
                )));
            }
        }
        Ok(())
    }

    /// Why `mlc serve` would sit idle with this configuration, if it would: no schedule and no
    /// webhook settings, so only webhooks registered by other means ever start a run.
    pub fn idle_warning(&self) -> Option<String> {
        (self.schedules.is_empty() && self.webhooks.is_empty()).then(|| {
            "mlc.toml has no [[serve.schedules]] and no [serve.webhooks.<connection>]: nothing runs until a webhook arrives (add a schedule, or `mlc webhooks register` and a [serve.webhooks.<connection>] section; README \"mlc serve\")".to_string()
        })
    }

    /// Base URL the systems call back.
    pub fn public_base(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_cron_and_zone() {
        let mut c = ServeConfig::default();
        c.schedules.push(ScheduleConfig {
            name: None,
            cron: "not a cron".into(),
            time_zone: "UTC".into(),
            connection: None,
            streams: vec![],
            flows: vec![],
        });
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("serve.schedules[0].cron"), "{e}");
        c.schedules[0].cron = "0 */15 * * * *".into();
        c.schedules[0].time_zone = "Mars/Olympus".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("time_zone"), "{e}");
        c.schedules[0].time_zone = "Europe/Paris".into();
        c.validate().unwrap();
    }

    #[test]
    fn nothing_to_serve_is_said() {
        let mut c = ServeConfig::default();
        let w = c.idle_warning().unwrap();
        assert!(
            w.contains("[[serve.schedules]]") && w.contains("webhooks register"),
            "{w}"
        );
        c.webhooks.insert("crm".into(), WebhookConfig::default());
        assert_eq!(c.idle_warning(), None);
    }
}
