//! The embedded state store (SQLite), one file per concern:
//! - `runs.rs`: per-stream cursors and delta tokens, run history with row counts, and the
//!   checkpoints that let a long snapshot resume at its last written part;
//! - `tenant.rs`: what each tenant's metadata said (live schema, field → column names);
//! - `sink.rs`: the sink stage's ledger, jobs, audit, cursors and learned rules.
//!
//! - `leases.rs`: leases on units of work and their fencing tokens (the guard is `lease.rs`).
//!
//! Serve mode's tables are in `serve/store.rs`; it shares this store's connection
//! ([`StateStore::with`]).
//!
//! Ordering rule (DESIGN.md §6): a cursor advances only in [`StateStore::commit_run`], called
//! after the warehouse load succeeded. Everything a run learns before that is kept on the run
//! row (`pending_cursor`, `position`), so a crash at any point resumes without a gap.
//!
//! The sink stage (DESIGN.md §9) keeps its tables here too ([`SINK_SCHEMA`]; created the same
//! idempotent way as the stream tables).

use std::path::Path;
use std::sync::Mutex;

use rusqlite::Connection;

use crate::error::{Error, Result};

mod leases;
mod runs;
mod sink;
mod tenant;

pub(crate) use leases::host_name;
pub use leases::*;
pub use runs::*;
pub use sink::*;

/// The SQLite-backed store.
pub struct StateStore {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateStore")
    }
}

/// SQLite integers are i64; counts are never negative.
pub(crate) fn count(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<u64> {
    Ok(r.get::<_, i64>(i)?.max(0) as u64)
}

/// Journaling, then the schema and the columns older stores lack, in one immediate transaction:
/// two processes opening a new store at once (a `sync` beside `serve`) would otherwise both see
/// a column missing and the second would fail adding it.
fn setup(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(runs::SCHEMA)?;
    tx.execute_batch(tenant::TENANT_SCHEMA)?;
    tx.execute_batch(sink::SINK_SCHEMA)?;
    tx.execute_batch(leases::LEASES_SCHEMA)?;
    // Ledgers written before `target_version` existed get the column (NULL: no echo known).
    let has_version: bool = tx
        .prepare("SELECT 1 FROM pragma_table_info('sink_ledger') WHERE name = 'target_version'")?
        .exists([])?;
    if !has_version {
        tx.execute_batch("ALTER TABLE sink_ledger ADD COLUMN target_version INTEGER;")?;
    }
    // Stores written before the tenant reconciliation get its columns.
    for (table, column, ty) in [
        ("runs", "report", "TEXT"),
        ("runs", "lease_token", "INTEGER"),
        ("stream_state", "columns_hash", "TEXT"),
    ] {
        let has: bool = tx
            .prepare(&format!(
                "SELECT 1 FROM pragma_table_info('{table}') WHERE name = '{column}'"
            ))?
            .exists([])?;
        if !has {
            tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty};"))?;
        }
    }
    tx.commit()
}

impl StateStore {
    /// Opens (creating) the store at `path`. WAL journaling: a committed transaction survives a
    /// killed process.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let mut conn = Connection::open(path).map_err(|e| Error::state_from(path.display(), e))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // Switching a new store to WAL needs it to itself, and SQLite reports a concurrent
        // opener as busy at once rather than waiting: try again for a while.
        let mut attempts = 0;
        loop {
            match setup(&mut conn) {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy && attempts < 200 =>
                {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                r => break r?,
            }
        }
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let mut guard = self
            .conn
            .lock()
            .map_err(|_| Error::state("state store lock poisoned"))?;
        f(&mut guard).map_err(Error::from)
    }
}

/// Whether a process id is alive on this machine (Linux `/proc`; elsewhere assumed alive, so a
/// foreign run is never stolen).
pub fn pid_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::RunKind;

    /// The audit's words are stored in two ways (by name in the state store, by serde in the
    /// `mlc.sink_audit` table and `--json`): both must be the same word.
    #[test]
    fn audit_actions_have_one_name_each_way() {
        for a in AuditAction::ALL {
            assert_eq!(a.as_str().parse::<AuditAction>().unwrap(), *a);
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }
    }

    #[test]
    fn processes_opening_a_new_store_at_once_all_succeed() {
        // Each opener creates the schema and adds missing columns; done unguarded, the slower
        // one found a column gone missing a moment ago and failed adding it.
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.db");
            let openers: Vec<_> = (0..4)
                .map(|_| {
                    let p = path.clone();
                    std::thread::spawn(move || StateStore::open(&p).map(|_| ()))
                })
                .collect();
            for o in openers {
                o.join().unwrap().unwrap();
            }
        }
    }

    #[test]
    fn run_and_job_statuses_travel_by_name() {
        for &st in RunStatus::ALL {
            assert_eq!(st.as_str().parse::<RunStatus>().unwrap(), st);
            assert_eq!(serde_json::to_string(&st).unwrap(), format!("\"{st}\""));
        }
        for &st in JobStatus::ALL {
            assert_eq!(st.as_str().parse::<JobStatus>().unwrap(), st);
            assert_eq!(serde_json::to_string(&st).unwrap(), format!("\"{st}\""));
        }
        let err = "done".parse::<RunStatus>().unwrap_err().to_string();
        assert!(err.contains("unknown run status `done`"), "{err}");
    }

    /// A run that stopped on an error reads `failed` whoever held it; one whose process died
    /// without a word reads `interrupted`; a live owner's run is `running`.
    #[test]
    fn a_stopped_run_reads_failed_never_running() {
        let mut r = RunRecord::new(
            "r1",
            "crm",
            "dataverse.account",
            RunKind::Incremental,
            false,
            "h",
            None,
        );
        assert_eq!(r.standing(true), "running");
        r.error = Some("HTTP 500".into());
        assert_eq!(r.standing(true), "failed");
        r.error = None;
        assert_eq!(r.standing(false), "interrupted");
        r.status = RunStatus::Committed;
        assert_eq!(r.standing(false), "committed");
        // Held means its lease is live, or, for a run written without one, its process.
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(&dir.path().join("s.db")).unwrap();
        r.status = RunStatus::Running;
        r.owner_pid = Some(std::process::id());
        assert!(s.run_held(&r).unwrap());
        let Take::Taken(lease) = s
            .lease_take(
                &run_unit("crm", "dataverse.account"),
                "h:1:a",
                std::time::Duration::from_secs(60),
                now_ms(),
            )
            .unwrap()
        else {
            panic!()
        };
        r.lease_token = Some(lease.token);
        assert!(s.run_held(&r).unwrap());
        s.lease_release(&lease).unwrap();
        assert!(!s.run_held(&r).unwrap());
    }
}
