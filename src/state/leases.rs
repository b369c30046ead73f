//! Leases on units of work, as the state store keeps them (the guard a worker holds is in
//! `lease.rs`, which explains the model): who holds each unit until when, and its fencing
//! token, which only grows.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{OptionalExtension, params};

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
pub(super) fn check_token(
    tx: &rusqlite::Transaction<'_>,
    unit: &str,
    mine: i64,
) -> rusqlite::Result<Result<()>> {
    let now: Option<(i64, String)> = tx
        .query_row(
            "SELECT token, owner FROM leases WHERE unit = ?1",
            params![unit],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(match now {
        Some((token, owner)) if token != mine => Err(Error::LeaseLost {
            unit: unit.to_string(),
            owner,
            token,
            mine,
        }),
        _ => Ok(()),
    })
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
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let held: Option<(String, i64, i64)> = tx
                .query_row(
                    "SELECT owner, token, expires_at FROM leases WHERE unit = ?1",
                    params![unit],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
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
            tx.commit()?;
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
            let mut st = c.prepare(
                "SELECT unit, owner, expires_at FROM leases WHERE expires_at > ?1 ORDER BY unit",
            )?;
            st.query_map(params![now], |r| {
                let until: i64 = r.get(2)?;
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    Duration::from_millis((until - now).max(0) as u64),
                ))
            })?
            .collect()
        })
    }

    /// The current token of `unit`, if it was ever taken.
    pub fn lease_token(&self, unit: &str) -> Result<Option<i64>> {
        self.with(|c| {
            c.query_row(
                "SELECT token FROM leases WHERE unit = ?1",
                params![unit],
                |r| r.get(0),
            )
            .optional()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::RunKind;
    use crate::state::{PartRecord, RunRecord};

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
    fn one_owner_at_a_time_until_expiry_and_tokens_only_grow() {
        let (_d, s) = store();
        let Take::Taken(a) = s.lease_take("u", "host:1:a", TTL, 1_000).unwrap() else {
            panic!("free unit not taken")
        };
        assert_eq!(a.token, 1);
        // Held: another owner is told who and for how long.
        assert_eq!(
            s.lease_take("u", "host:2:b", TTL, 31_000).unwrap(),
            Take::Held {
                owner: "host:1:a".into(),
                expires_in: Duration::from_secs(30)
            }
        );
        // Renewed, then expired: the next owner gets a higher token, and the old one can no
        // longer renew.
        assert!(s.lease_renew(&a, TTL, 50_000).unwrap());
        let Take::Taken(b) = s.lease_take("u", "host:2:b", TTL, 110_001).unwrap() else {
            panic!("expired lease not taken over")
        };
        assert_eq!(b.token, 2);
        assert!(!s.lease_renew(&a, TTL, 110_002).unwrap());
        // Released: free at once, and the token still grows.
        s.lease_release(&b).unwrap();
        let Take::Taken(c) = s.lease_take("u", "host:1:a", TTL, 110_003).unwrap() else {
            panic!("released lease not free")
        };
        assert_eq!(c.token, 3);
        assert_eq!(s.lease_token("u").unwrap(), Some(3));
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

    fn part(n: u32) -> PartRecord {
        PartRecord {
            part: n,
            path: format!("p{n}"),
            rows: 10,
            deleted: 0,
            bytes: 100,
            sha256: "x".into(),
            quarantine_path: None,
            quarantined: 0,
        }
    }

    /// A worker paused past its lease's expiry: the run is taken over and resumed by another,
    /// and whatever the paused one then writes (a checkpoint, the commit) is refused.
    #[test]
    fn a_worker_that_lost_its_lease_writes_nothing() {
        let (_d, s) = store();
        let unit = run_unit("crm", "dataverse.account");
        let Take::Taken(a) = s.lease_take(&unit, "h:1:a", TTL, 0).unwrap() else {
            panic!()
        };
        let mut first = RunRecord::new(
            "r1",
            "crm",
            "dataverse.account",
            RunKind::Snapshot,
            true,
            "h",
            None,
        );
        first.lease_token = Some(a.token);
        s.begin_run(&first).unwrap();
        s.record_part(&first, &part(0), Some("after-0"), 1).unwrap();

        let Take::Taken(b) = s.lease_take(&unit, "h:2:b", TTL, 61_000).unwrap() else {
            panic!("an expired lease is taken over")
        };
        s.claim_run("r1", Some(b.token)).unwrap();
        for refused in [
            s.record_part(&first, &part(1), Some("a-after-1"), 1),
            s.mark_extracted(&first, None),
            s.commit_run(&first, Some("h")),
            s.abandon_run(&first, "delta token expired"),
            s.check_lease(&first),
        ] {
            assert!(
                matches!(
                    &refused,
                    Err(Error::LeaseLost {
                        token: 2,
                        mine: 1,
                        ..
                    })
                ),
                "{refused:?}"
            );
        }
        let open = s.open_run("crm", "dataverse.account").unwrap().unwrap();
        assert_eq!(
            (open.next_part, open.position.as_deref()),
            (1, Some("after-0"))
        );

        // The new owner carries the run on to its commit.
        let second = RunRecord {
            lease_token: Some(b.token),
            ..open
        };
        s.record_part(&second, &part(1), Some("after-1"), 1)
            .unwrap();
        s.mark_extracted(&second, None).unwrap();
        s.mark_loaded(&second, 20, 0, 20).unwrap();
        s.commit_run(&second, Some("h")).unwrap();
        assert!(s.open_run("crm", "dataverse.account").unwrap().is_none());
        assert_eq!(s.parts("r1").unwrap().len(), 2);
    }

    /// A sink job that finished after its worker's lease on the flow was taken over records
    /// nothing: neither its audit nor a link (the new owner's search finds what it wrote).
    #[test]
    fn a_sink_commit_under_a_lost_lease_records_nothing() {
        let (_d, s) = store();
        let unit = sink_unit("f");
        let Take::Taken(a) = s.lease_take(&unit, "h:1:a", TTL, 0).unwrap() else {
            panic!()
        };
        let Take::Taken(_b) = s.lease_take(&unit, "h:2:b", TTL, 61_000).unwrap() else {
            panic!()
        };
        let audit = crate::state::AuditEntry {
            flow: "f".into(),
            job_id: "j1".into(),
            ..Default::default()
        };
        let late = s.sink_commit(&crate::state::JobFinish {
            fence: Some(&a),
            audits: std::slice::from_ref(&audit),
            ..Default::default()
        });
        assert!(matches!(late, Err(Error::LeaseLost { .. })), "{late:?}");
        assert!(s.sink_audit_entries("f", None).unwrap().is_empty());
    }
}
