//! Leases on units of work, as the state store keeps them (the guard a worker holds is in
//! `lease.rs`, which explains the model): who holds each unit until when, and its fencing
//! token, which only grows.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::db::{Db, params};
use super::{StateStore, pid_alive};
use crate::error::{Error, Result};

/// The leases table (created with the state store's schema).
pub(super) const LEASES_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS leases (
    unit TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    token INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
"#;

/// The unit a stream run leases.
pub fn run_unit(connection: &str, stream: &str) -> String {
    format!("run:{connection}/{stream}")
}

/// The unit a sink flow's apply, replay, link or unlink leases.
pub fn sink_unit(flow: &str) -> String {
    format!("sink:{flow}")
}

/// The unit of the upkeep of a connection's webhook subscriptions (Business Central).
pub fn subscriptions_unit(connection: &str) -> String {
    format!("subscriptions:{connection}")
}

/// Inside a state transaction: `Err(LeaseLost)` when `unit`'s token is no longer `mine`
/// (another worker took it over); a unit never leased passes.
pub(super) fn check_token(tx: &mut Db, unit: &str, mine: i64) -> Result<()> {
    let now: Option<(i64, String)> = tx.query_opt(
        "SELECT token, owner FROM leases WHERE unit = ?1",
        params![unit],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    match now {
        Some((token, owner)) if token != mine => Err(Error::LeaseLost {
            unit: unit.to_string(),
            owner,
            token,
            mine,
        }),
        _ => Ok(()),
    }
}

/// This host's name, as lease owners carry it (`host:pid:nonce`).
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && !h.contains(':'))
        .unwrap_or_else(|| "localhost".into())
}

/// Whether `owner` ran on this host and its process is gone: its leases need not wait for
/// their expiry.
fn owner_gone(owner: &str) -> bool {
    let mut parts = owner.split(':');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
        return false;
    };
    host == host_name() && pid.parse::<u32>().is_ok_and(|pid| !pid_alive(pid))
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A lease taken: the unit, its owner and the fencing token of this take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub unit: String,
    pub owner: String,
    pub token: i64,
}

/// What [`StateStore::lease_take`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Take {
    Taken(Lease),
    /// Another owner holds the unit until its lease expires.
    Held {
        owner: String,
        expires_in: Duration,
    },
}

impl StateStore {
    /// Takes `unit` for `owner` until `now + ttl`: when nobody holds it, its lease expired, its
    /// owner's process is gone, or `owner` holds it already. Each take gets the next token.
    pub fn lease_take(&self, unit: &str, owner: &str, ttl: Duration, now: i64) -> Result<Take> {
        let expires = now + ttl.as_millis() as i64;
        self.write(|tx| {
            let held: Option<(String, i64, i64)> = tx.query_opt(
                "SELECT owner, token, expires_at FROM leases WHERE unit = ?1",
                params![unit],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let token = match held {
                Some((holder, _, until))
                    if holder != owner && until > now && !owner_gone(&holder) =>
                {
                    return Ok(Take::Held {
                        owner: holder,
                        expires_in: Duration::from_millis((until - now) as u64),
                    });
                }
                Some((_, token, _)) => token + 1,
                None => 1,
            };
            tx.execute(
                "INSERT INTO leases (unit, owner, token, expires_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (unit) DO UPDATE SET owner = excluded.owner, token = excluded.token, expires_at = excluded.expires_at",
                params![unit, owner, token, expires],
            )?;
            Ok(Take::Taken(Lease {
                unit: unit.to_string(),
                owner: owner.to_string(),
                token,
            }))
        })
    }

    /// Extends `lease` to `now + ttl`; false when it is no longer this owner's (taken over).
    pub fn lease_renew(&self, lease: &Lease, ttl: Duration, now: i64) -> Result<bool> {
        self.with(|c| {
            c.execute(
                "UPDATE leases SET expires_at = ?4 WHERE unit = ?1 AND owner = ?2 AND token = ?3",
                params![
                    lease.unit,
                    lease.owner,
                    lease.token,
                    now + ttl.as_millis() as i64
                ],
            )
            .map(|n| n == 1)
        })
    }

    /// Ends `lease` (if it is still this owner's): the row stays, expired, so that the next
    /// take gets a higher token.
    pub fn lease_release(&self, lease: &Lease) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE leases SET expires_at = 0 WHERE unit = ?1 AND owner = ?2 AND token = ?3",
                params![lease.unit, lease.owner, lease.token],
            )
            .map(|_| ())
        })
    }

    /// The leases held at `now`: unit, owner and time left, by unit.
    pub fn lease_holders(&self, now: i64) -> Result<Vec<(String, String, Duration)>> {
        self.with(|c| {
            c.query_map(
                "SELECT unit, owner, expires_at FROM leases WHERE expires_at > ?1 ORDER BY unit",
                params![now],
                |r| {
                    let until: i64 = r.get(2)?;
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        Duration::from_millis((until - now).max(0) as u64),
                    ))
                },
            )
        })
    }

    /// The current token of `unit`, if it was ever taken.
    pub fn lease_token(&self, unit: &str) -> Result<Option<i64>> {
        self.with(|c| {
            c.query_opt(
                "SELECT token FROM leases WHERE unit = ?1",
                params![unit],
                |r| r.get(0),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, StateStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(&dir.path().join("state.db")).unwrap();
        (dir, s)
    }

    const TTL: Duration = Duration::from_secs(60);

    /// This process as an owner on this host.
    fn me() -> String {
        format!("{}:{}:t", host_name(), std::process::id())
    }

    #[test]
    fn a_lease_of_a_dead_process_on_this_host_is_free_at_once() {
        let (_d, s) = store();
        let dead = format!("{}:{}:x", host_name(), u32::MAX - 7);
        let elsewhere = format!("other-host:{}:x", u32::MAX - 7);
        assert!(matches!(
            s.lease_take("u", &dead, TTL, 0).unwrap(),
            Take::Taken(_)
        ));
        assert!(matches!(
            s.lease_take("u", &me(), TTL, 1).unwrap(),
            Take::Taken(Lease { token: 2, .. })
        ));
        assert!(matches!(
            s.lease_take("v", &elsewhere, TTL, 0).unwrap(),
            Take::Taken(_)
        ));
        // Another host's process cannot be checked: its lease holds until it expires.
        assert!(matches!(
            s.lease_take("v", &me(), TTL, 1).unwrap(),
            Take::Held { .. }
        ));
    }
}
