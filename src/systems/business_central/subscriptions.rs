//! Business Central webhook subscriptions: created through `POST …/api/v2.0/subscriptions`
//! for each configured entity set of each configured company, renewed with
//! `PATCH …/subscriptions('{id}')` + `If-Match` once less than `serve.renew_before_hours` of
//! their 3-day life is left, and created again when BC no longer has them. BC deletes a
//! subscription whose notification got a non-retryable answer, without telling anyone, so
//! every upkeep pass reads each stored subscription back (`GET …/subscriptions('{id}')`) and
//! recreates the missing ones: waiting for the renewal to find the 404 would leave the
//! connection deaf for up to three days. BC calls the notification URL
//! with `?validationToken=` during both create and renew, so the receiver must be listening
//! first. What mlc created is kept in the state store (id, etag, expiry).

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::config::Connection;
use crate::error::{Error, Result};
use crate::http::Endpoint;
use crate::http::Idempotency;
use crate::lease::{LeaseGuard, subscriptions_unit};
use crate::state::StateStore;
use crate::systems::settings::ConnectionSettings;
use crate::systems::system::System;
use crate::vault::Vault;

use crate::serve::secrets;
use crate::state::StoredSubscription;

/// How long a worker keeps the upkeep of a connection's subscriptions without renewing: a
/// pass takes seconds; a crashed worker's upkeep passes to another after this.
const UPKEEP_LEASE: std::time::Duration = std::time::Duration::from_secs(300);

/// What one pass did, by resource.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SubscriptionReport {
    /// Another worker was keeping the subscriptions: this pass did nothing.
    pub left_to: Option<String>,
    pub created: Vec<String>,
    pub renewed: Vec<String>,
    /// BC no longer had it (read back or renewal answered 404): created again.
    pub recreated: Vec<String>,
    pub kept: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionBody {
    subscription_id: String,
    expiration_date_time: DateTime<Utc>,
    #[serde(rename = "@odata.etag", default)]
    etag: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Companies {
    value: Vec<Company>,
}

#[derive(Debug, Deserialize)]
struct Company {
    id: String,
    #[serde(default)]
    name: String,
}

/// The subscriptions of one Business Central connection.
pub struct BcSubscriptions {
    connection: String,
    companies: Vec<String>,
    resources: Vec<String>,
    endpoint: Endpoint,
    notification_url: String,
    client_state: SecretString,
    renew_before: Duration,
    state: Arc<StateStore>,
}

impl std::fmt::Debug for BcSubscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BcSubscriptions")
            .field("connection", &self.connection)
            .field("resources", &self.resources)
            .finish_non_exhaustive()
    }
}

impl BcSubscriptions {
    /// Prepares the manager of `conn`; generates and stores its `clientState` when missing.
    /// `endpoint`: the connection's client (in `mlc serve`, the process's shared runtime of
    /// the connection, so subscription upkeep counts against the same limits as the runs).
    pub fn new(
        conn: &Connection,
        vault: &Vault,
        endpoint: Endpoint,
        resources: Vec<String>,
        public_base: &str,
        renew_before_hours: f64,
        state: Arc<StateStore>,
    ) -> Result<Self> {
        let ConnectionSettings::BusinessCentral(b) = &conn.settings else {
            return Err(Error::config(format!(
                "connection `{}` is not a business_central connection",
                conn.name
            )));
        };
        let (client_state, _) = secrets::get_or_create(vault, &conn.name, "client_state")?;
        Ok(Self {
            connection: conn.name.clone(),
            companies: b.companies.clone(),
            resources,
            endpoint,
            notification_url: format!(
                "{public_base}/webhooks/{}/{}",
                System::BusinessCentral,
                conn.name
            ),
            client_state,
            renew_before: Duration::seconds((renew_before_hours * 3600.0) as i64),
            state,
        })
    }

    fn url(&self, rest: &str) -> String {
        format!(
            "{}/api/v2.0/{rest}",
            self.endpoint.base.trim_end_matches('/')
        )
    }

    /// `/api/v2.0/companies({id})/{set}` for every configured company and entity set.
    async fn wanted(&self) -> Result<Vec<String>> {
        let r = self
            .endpoint
            .http
            .get(&self.url("companies"), &Default::default(), "subscriptions")
            .await?;
        let list: Companies = serde_json::from_slice(&r.body)
            .map_err(|e| Error::decode_from("business_central.subscriptions", "companies", e))?;
        let mut out = Vec::new();
        for c in list.value {
            if !self.companies.is_empty()
                && !self.companies.iter().any(|w| *w == c.id || *w == c.name)
            {
                continue;
            }
            for set in &self.resources {
                out.push(format!("/api/v2.0/companies({})/{set}", c.id));
            }
        }
        Ok(out)
    }

    fn body(&self, resource: &str) -> serde_json::Value {
        serde_json::json!({
            "notificationUrl": self.notification_url,
            "resource": resource,
            "clientState": self.client_state.expose_secret(),
        })
    }

    fn store(&self, resource: &str, body: &[u8]) -> Result<()> {
        let s: SubscriptionBody = serde_json::from_slice(body).map_err(|e| {
            Error::decode_from("business_central.subscriptions", "subscription answer", e)
        })?;
        self.state.serve_put_subscription(&StoredSubscription {
            connection: self.connection.clone(),
            resource: resource.to_string(),
            subscription_id: s.subscription_id,
            etag: s.etag,
            expires_at: s.expiration_date_time,
        })
    }

    async fn create(&self, resource: &str) -> Result<()> {
        let body = self.body(resource);
        let r = self
            .endpoint
            .http
            .send(
                Method::POST,
                &self.url("subscriptions"),
                "subscriptions",
                Idempotency::Unsafe,
                |rb| rb.json(&body),
            )
            .await?;
        self.store(resource, &r.body)
    }

    /// Whether BC still has the subscription; fails on anything but 200 or 404 (a transient
    /// failure must not make us create a duplicate).
    async fn exists(&self, s: &StoredSubscription) -> Result<bool> {
        let url = self.url(&format!("subscriptions('{}')", s.subscription_id));
        match self
            .endpoint
            .http
            .get(&url, &Default::default(), "subscriptions")
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates `resource` again in place of a subscription BC dropped; the new id replaces
    /// the old one in the store, so notices for the old id are refused from then on.
    async fn recreate(&self, resource: &str, why: &str) -> Result<()> {
        tracing::warn!(connection = %self.connection, resource = %resource, "subscription gone ({why}): creating it again");
        self.create(resource).await
    }

    /// Renews; `Ok(false)` when BC no longer knows the subscription (404).
    async fn renew(&self, s: &StoredSubscription) -> Result<bool> {
        let body = self.body(&s.resource);
        let etag = s.etag.clone().unwrap_or_else(|| "*".into());
        let url = self.url(&format!("subscriptions('{}')", s.subscription_id));
        match self
            .endpoint
            .http
            .send(
                Method::PATCH,
                &url,
                "subscriptions",
                Idempotency::Unsafe,
                |rb| rb.header("If-Match", etag.clone()).json(&body),
            )
            .await
        {
            Ok(r) => {
                self.store(&s.resource, &r.body)?;
                Ok(true)
            }
            Err(e) if e.status() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates missing subscriptions, recreates those BC dropped and renews those expiring
    /// within the renewal window; `now` comes from the serve clock. Fails on the first
    /// request BC does not answer as expected (the next pass starts over).
    ///
    /// One worker at a time keeps a connection's subscriptions (a lease): two `mlc serve`
    /// sharing a state store would otherwise both find one missing and both create it.
    pub async fn ensure(&self, now: DateTime<Utc>) -> Result<SubscriptionReport> {
        let _lease = match LeaseGuard::acquire(
            &self.state,
            &subscriptions_unit(&self.connection),
            UPKEEP_LEASE,
        ) {
            Ok(lease) => lease,
            Err(Error::Held { owner, .. }) => {
                return Ok(SubscriptionReport {
                    left_to: Some(owner),
                    ..SubscriptionReport::default()
                });
            }
            Err(e) => return Err(e),
        };
        let stored = self.state.serve_subscriptions(&self.connection)?;
        let mut report = SubscriptionReport::default();
        for resource in self.wanted().await? {
            match stored.iter().find(|s| s.resource == resource) {
                None => {
                    self.create(&resource).await?;
                    tracing::info!(connection = %self.connection, resource = %resource, "subscription created");
                    report.created.push(resource);
                }
                Some(s) => {
                    if !self.exists(s).await? {
                        self.recreate(&resource, "not found at Business Central")
                            .await?;
                        report.recreated.push(resource);
                    } else if s.expires_at - now > self.renew_before {
                        report.kept.push(resource);
                    } else if self.renew(s).await? {
                        tracing::info!(connection = %self.connection, resource = %resource, "subscription renewed");
                        report.renewed.push(resource);
                    } else {
                        self.recreate(&resource, "404 on renew").await?;
                        report.recreated.push(resource);
                    }
                }
            }
        }
        Ok(report)
    }
}
