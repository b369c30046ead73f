//! Serve mode's tables in the state store: webhook events already seen (at-least-once delivery
//! is deduplicated across restarts), each schedule's last fire time (the missed-run policy
//! needs it after downtime), the Business Central subscriptions mlc created, and the key-set
//! passes a `deleted` change notice asked for (a cursor read never sees a delete).

use super::StateStore;
use super::db::params;
use crate::error::Result;
use chrono::{DateTime, Utc};

pub(super) const SERVE_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS serve_webhook_events (
    connection TEXT NOT NULL,
    event_key TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (connection, event_key)
);
CREATE TABLE IF NOT EXISTS serve_schedules (
    name TEXT PRIMARY KEY,
    last_fired TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS serve_bc_subscriptions (
    connection TEXT NOT NULL,
    resource TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    etag TEXT,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (connection, resource)
);
CREATE TABLE IF NOT EXISTS serve_keyset_requests (
    connection TEXT NOT NULL,
    stream TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    PRIMARY KEY (connection, stream)
);
"#;

/// A Business Central subscription as mlc remembers it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSubscription {
    pub connection: String,
    /// `/api/v2.0/companies({id})/{entitySet}`.
    pub resource: String,
    pub subscription_id: String,
    pub etag: Option<String>,
    pub expires_at: DateTime<Utc>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn parse_ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Serve mode's view of the store.
impl StateStore {
    /// Records a webhook event key; `true` the first time it is seen (then the event is
    /// acted on), `false` for a redelivery.
    pub fn serve_first_delivery(
        &self,
        connection: &str,
        event_key: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.with(|c| {
            c.execute(
                "INSERT INTO serve_webhook_events (connection, event_key, received_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![connection, event_key, ts(now)],
            )
        })
        .map(|n| n == 1)
    }

    /// Forgets event keys older than `before` (redeliveries come within hours, not weeks).
    pub fn serve_prune_events(&self, before: DateTime<Utc>) -> Result<usize> {
        self.with(|c| {
            c.execute(
                "DELETE FROM serve_webhook_events WHERE received_at < ?1",
                params![ts(before)],
            )
            .map(|n| n as usize)
        })
    }

    pub fn serve_last_fired(&self, schedule: &str) -> Result<Option<DateTime<Utc>>> {
        self.with(|c| {
            c.query_opt(
                "SELECT last_fired FROM serve_schedules WHERE name = ?1",
                params![schedule],
                |r| r.get::<String>(0),
            )
        })
        .map(|o| o.map(|s| parse_ts(&s)))
    }

    pub fn serve_set_last_fired(&self, schedule: &str, at: DateTime<Utc>) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO serve_schedules (name, last_fired) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET last_fired = excluded.last_fired",
                params![schedule, ts(at)],
            )
        })
        .map(|_| ())
    }

    /// Records that `schedule` fires at `at`, unless another worker fired it after `known`
    /// (the last fire this worker knows of): then it returns that fire time, and this worker
    /// does not fire. The fire-time record is the schedule's lease: of several workers that
    /// find one occurrence due, one fires it.
    pub fn serve_claim_fire(
        &self,
        schedule: &str,
        known: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        self.write(|tx| {
            let stored: Option<String> = tx.query_opt(
                "SELECT last_fired FROM serve_schedules WHERE name = ?1",
                params![schedule],
                |r| r.get(0),
            )?;
            if let Some(elsewhere) = stored.map(|s| parse_ts(&s)).filter(|t| *t > known) {
                return Ok(Some(elsewhere));
            }
            tx.execute(
                "INSERT INTO serve_schedules (name, last_fired) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET last_fired = excluded.last_fired",
                params![schedule, ts(at)],
            )?;
            Ok(None)
        })
    }

    pub fn serve_subscriptions(&self, connection: &str) -> Result<Vec<StoredSubscription>> {
        self.with(|c| {
            c.query_map(
                "SELECT connection, resource, subscription_id, etag, expires_at FROM serve_bc_subscriptions WHERE connection = ?1 ORDER BY resource",
                params![connection],
                |r| {
                    Ok(StoredSubscription {
                        connection: r.get(0)?,
                        resource: r.get(1)?,
                        subscription_id: r.get(2)?,
                        etag: r.get(3)?,
                        expires_at: parse_ts(&r.get::<String>(4)?),
                    })
                },
            )
        })
    }

    pub fn serve_put_subscription(&self, s: &StoredSubscription) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO serve_bc_subscriptions (connection, resource, subscription_id, etag, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (connection, resource) DO UPDATE SET subscription_id = excluded.subscription_id, etag = excluded.etag, expires_at = excluded.expires_at",
                params![s.connection, s.resource, s.subscription_id, s.etag, ts(s.expires_at)],
            )
        })
        .map(|_| ())
    }
}

/// Key-set passes asked for by change notices. The request time is wall-clock time (not the
/// serve clock) because it is compared with the start time of the runs that answer it.
impl StateStore {
    /// Asks for a key-set pass of `stream` at its next incremental run: a source told us a row
    /// was deleted, and only a pass over every key finds it.
    pub fn serve_request_keyset(&self, connection: &str, stream: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO serve_keyset_requests (connection, stream, requested_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (connection, stream) DO UPDATE SET requested_at = excluded.requested_at",
                params![connection, stream, ts(Utc::now())],
            )
        })
        .map(|_| ())
    }

    /// Whether a key-set pass of `stream` was asked for after `reconciled_at` (the start of
    /// the last run that reconciled deletes; `None`: never). A request made while that run was
    /// already reading is still open: the run may have passed the deleted key.
    pub fn keyset_requested(
        &self,
        connection: &str,
        stream: &str,
        reconciled_at: Option<&str>,
    ) -> Result<bool> {
        let requested = self.with(|c| {
            c.query_opt(
                "SELECT requested_at FROM serve_keyset_requests WHERE connection = ?1 AND stream = ?2",
                params![connection, stream],
                |r| r.get::<String>(0),
            )
        })?;
        let Some(requested) = requested else {
            return Ok(false);
        };
        Ok(match reconciled_at {
            None => true,
            Some(at) => parse_ts(&requested) >= parse_ts(at),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let now = Utc::now();
        {
            let s = StateStore::open(&path).unwrap();
            assert!(s.serve_first_delivery("pd", "deal:1:t", now).unwrap());
            assert!(!s.serve_first_delivery("pd", "deal:1:t", now).unwrap());
        }
        let s = StateStore::open(&path).unwrap();
        assert!(!s.serve_first_delivery("pd", "deal:1:t", now).unwrap());
        assert!(s.serve_first_delivery("other", "deal:1:t", now).unwrap());
    }

    #[test]
    fn keyset_requests_stay_open_until_a_later_reconciliation() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(&dir.path().join("state.db")).unwrap();
        assert!(!s.keyset_requested("erp", "bc.customer", None).unwrap());
        let before = Utc::now() - chrono::Duration::seconds(5);
        s.serve_request_keyset("erp", "bc.customer").unwrap();
        assert!(s.keyset_requested("erp", "bc.customer", None).unwrap());
        // A reconciliation that started before the request does not answer it.
        assert!(
            s.keyset_requested("erp", "bc.customer", Some(&ts(before)))
                .unwrap()
        );
        let after = Utc::now() + chrono::Duration::seconds(5);
        assert!(
            !s.keyset_requested("erp", "bc.customer", Some(&after.to_rfc3339()))
                .unwrap()
        );
        assert!(!s.keyset_requested("erp", "bc.item", None).unwrap());
    }
}
