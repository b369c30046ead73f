//! The state store, one file per concern:
//! - `runs.rs`: per-stream cursors and delta tokens, run history with row counts, and the
//!   checkpoints that let a long snapshot resume at its last written part;
//! - `tenant.rs`: what each tenant's metadata said (live schema, field → column names);
//! - `sink.rs`: the sink stage's ledger, jobs, audit, cursors and learned rules;
//! - `leases.rs`: leases on units of work and their fencing tokens (the guard is `lease.rs`);
//! - `serve.rs`: serve mode's webhook dedupe keys, schedule fire times, Business Central
//!   subscriptions and key-set requests;
//! - `db.rs`: the SQL both backends take and the [`db::Backend`] trait, implemented by
//!   `sqlite.rs` and `postgres.rs`; `migrate.rs`: the schema's versions, and the copy of a
//!   SQLite state into Postgres.
//!
//! SQLite (a file, one machine) is the default; `[state] url = "postgres://…"` shares one
//! store between workers (DESIGN.md §16). Both hold the same tables and answer the same
//! queries.
//!
//! Ordering rule (DESIGN.md §6): a cursor advances only in [`StateStore::commit_run`], called
//! after the warehouse load succeeded. Everything a run learns before that is kept on the run
//! row (`pending_cursor`, `position`), so a crash at any point resumes without a gap.

use std::path::Path;
use std::sync::Mutex;

use crate::error::{Error, Result};

pub(crate) mod db;
mod leases;
mod migrate;
mod postgres;
mod runs;
mod serve;
mod sink;
mod sqlite;
mod tenant;

use db::Db;
pub(crate) use leases::host_name;
pub use leases::*;
pub use runs::*;
pub use serve::*;
pub use sink::*;

/// Where the state is kept, as the configuration says.
#[derive(Debug, Clone)]
pub enum StateLocation {
    /// A SQLite file (`state.path`).
    File(std::path::PathBuf),
    /// A Postgres database (`state.url`; it may carry a password, so it is never shown).
    Postgres(secrecy::SecretString),
}

/// The state store: one connection to SQLite or Postgres.
pub struct StateStore {
    db: Mutex<Db>,
    /// Where it is, as it may be shown (a Postgres URL without its password).
    shown: String,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateStore({})", self.shown)
    }
}

impl StateStore {
    /// Opens the store the configuration names.
    pub fn for_location(at: &StateLocation) -> Result<Self> {
        match at {
            StateLocation::File(path) => Self::open(path),
            StateLocation::Postgres(url) => {
                use secrecy::ExposeSecret;
                Self::connect(url.expose_secret())
            }
        }
    }

    /// Opens (creating) the SQLite store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        Self::over(
            Db::new(sqlite::Sqlite::open(path)?),
            path.display().to_string(),
        )
    }

    /// Connects to the Postgres store at `url`.
    pub fn connect(url: &str) -> Result<Self> {
        let link = postgres::PgLink::connect(url)?;
        let shown = link.shown().to_string();
        Self::over(Db::new(link), shown)
    }

    /// The store on `db`, its schema brought up to this version first (several workers
    /// starting at once apply each version once).
    fn over(mut db: Db, shown: String) -> Result<Self> {
        migrate::upgrade(&mut db)?;
        Ok(Self {
            db: Mutex::new(db),
            shown,
        })
    }

    /// Where the store is, fit to show (a Postgres URL never carries its password here).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Db) -> Result<T>) -> Result<T> {
        let mut guard = self
            .db
            .lock()
            .map_err(|_| Error::state("state store lock poisoned"))?;
        f(&mut guard)
    }

    /// Runs `f` in one write transaction (see [`Db::transaction`]).
    pub(crate) fn write<T>(&self, f: impl FnOnce(&mut Db) -> Result<T>) -> Result<T> {
        self.with(|db| db.transaction(f))
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
