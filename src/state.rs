//! The embedded state store (SQLite): per-stream cursors and delta tokens, run history with row
//! counts, and the checkpoints that let a long snapshot resume at its last written part.
//!
//! Ordering rule (DESIGN.md §6): a cursor advances only in [`StateStore::commit_run`], called
//! after the warehouse load succeeded. Everything a run learns before that is kept on the run
//! row (`pending_cursor`, `position`), so a crash at any point resumes without a gap.
//!
//! The sink stage (DESIGN.md §9) keeps its tables here too: the ledger (source id → target
//! key), its jobs, the audit of every write, and each flow's cursor over run manifests
//! ([`SINK_SCHEMA`]; created the same idempotent way as the stream tables).

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::lake::RunKind;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS stream_state (
    connection TEXT NOT NULL,
    stream TEXT NOT NULL,
    cursor TEXT,
    updated_at TEXT NOT NULL,
    last_run_id TEXT,
    PRIMARY KEY (connection, stream)
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    connection TEXT NOT NULL,
    stream TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    reconcile INTEGER NOT NULL,
    schema_hash TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    cursor_start TEXT,
    pending_cursor TEXT,
    position TEXT,
    next_part INTEGER NOT NULL DEFAULT 0,
    rows_extracted INTEGER NOT NULL DEFAULT 0,
    rows_deleted INTEGER NOT NULL DEFAULT 0,
    rows_quarantined INTEGER NOT NULL DEFAULT 0,
    json_bytes INTEGER NOT NULL DEFAULT 0,
    rows_upserted INTEGER NOT NULL DEFAULT 0,
    rows_removed INTEGER NOT NULL DEFAULT 0,
    table_rows INTEGER NOT NULL DEFAULT 0,
    owner_pid INTEGER,
    window TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_stream ON runs (connection, stream, started_at);
CREATE TABLE IF NOT EXISTS live_schema (
    connection TEXT NOT NULL,
    stream TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (connection, stream)
);
CREATE TABLE IF NOT EXISTS field_columns (
    connection TEXT NOT NULL,
    stream TEXT NOT NULL,
    field TEXT NOT NULL,
    column_name TEXT NOT NULL,
    PRIMARY KEY (connection, stream, field)
);
CREATE TABLE IF NOT EXISTS run_parts (
    run_id TEXT NOT NULL,
    part INTEGER NOT NULL,
    path TEXT NOT NULL,
    rows INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    quarantine_path TEXT,
    quarantined INTEGER NOT NULL,
    PRIMARY KEY (run_id, part)
);
"#;

/// Where a run is, in the order a run moves through it. Stored by its lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Pages are being read and parts written.
    Running,
    /// The manifest is written; the warehouse load may not have finished.
    Extracted,
    /// The warehouse holds the run; the cursor is not committed yet.
    Loaded,
    /// Done: the cursor (if any) is committed.
    Committed,
    /// Given up (state reset, or a catalog change made its parts unusable).
    Abandoned,
    /// The tenant does not have the stream's entity: nothing was read, nothing failed.
    Absent,
}

crate::names::stored_by_name!(RunStatus, "run status", {
    Running => "running",
    Extracted => "extracted",
    Loaded => "loaded",
    Committed => "committed",
    Abandoned => "abandoned",
    Absent => "absent",
});

/// `status IN (…)` of the runs not finished yet (running, extracted, loaded).
const UNFINISHED: &str = "status IN ('running','extracted','loaded')";

/// One run of one stream.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunRecord {
    pub run_id: String,
    pub connection: String,
    pub stream: String,
    pub kind: RunKind,
    pub status: RunStatus,
    pub reconcile: bool,
    pub schema_hash: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub cursor_start: Option<String>,
    pub pending_cursor: Option<String>,
    /// Where to resume reading (e.g. the next link after the last written part).
    pub position: Option<String>,
    pub next_part: u32,
    pub rows_extracted: u64,
    pub rows_deleted: u64,
    pub rows_quarantined: u64,
    pub json_bytes: u64,
    pub rows_upserted: u64,
    pub rows_removed: u64,
    pub table_rows: u64,
    pub owner_pid: Option<u32>,
    /// The fencing token of the lease this process runs it under (`lease::run_unit`); `None`
    /// for a run written without a lease (tools, tests).
    pub lease_token: Option<i64>,
    /// Backfill window, `since..until`.
    pub window: Option<String>,
    pub error: Option<String>,
    /// What the run found about the tenant and the data (JSON of `run::RunReport`).
    pub report: Option<String>,
}

/// A run as its writer holds it: its id and the lease token it runs under (`None`: written
/// without a lease, as tools and tests do).
#[derive(Debug, Clone, Copy)]
pub struct RunRef<'a> {
    pub run_id: &'a str,
    pub token: Option<i64>,
}

impl<'a> From<&'a str> for RunRef<'a> {
    fn from(run_id: &'a str) -> Self {
        Self {
            run_id,
            token: None,
        }
    }
}

impl<'a> From<&'a RunRecord> for RunRef<'a> {
    fn from(r: &'a RunRecord) -> Self {
        Self {
            run_id: &r.run_id,
            token: r.lease_token,
        }
    }
}

impl RunRecord {
    /// Where the run stands, as a person asks: an unfinished run is `running` while its
    /// process lives, `failed` when it stopped on an error (resumed by the next sync), and
    /// `interrupted` when its process died without one (a crash, a kill); finished runs keep
    /// their status (`committed`, `absent`, `abandoned`).
    pub fn standing(&self) -> &str {
        match self.status {
            RunStatus::Running | RunStatus::Extracted | RunStatus::Loaded => {
                if self.error.is_some() {
                    "failed"
                } else if self.owner_pid.is_some_and(pid_alive) {
                    "running"
                } else {
                    "interrupted"
                }
            }
            other => other.as_str(),
        }
    }

    /// A fresh run in `running` state.
    pub fn new(
        run_id: &str,
        connection: &str,
        stream: &str,
        kind: RunKind,
        reconcile: bool,
        schema_hash: &str,
        cursor_start: Option<String>,
    ) -> Self {
        Self {
            run_id: run_id.into(),
            connection: connection.into(),
            stream: stream.into(),
            kind,
            status: RunStatus::Running,
            reconcile,
            schema_hash: schema_hash.into(),
            started_at: chrono::Utc::now().to_rfc3339(),
            finished_at: None,
            cursor_start,
            pending_cursor: None,
            position: None,
            next_part: 0,
            rows_extracted: 0,
            rows_deleted: 0,
            rows_quarantined: 0,
            json_bytes: 0,
            rows_upserted: 0,
            rows_removed: 0,
            table_rows: 0,
            owner_pid: Some(std::process::id()),
            lease_token: None,
            window: None,
            error: None,
            report: None,
        }
    }
}

/// A written part, as recorded for the manifest.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PartRecord {
    pub part: u32,
    pub path: String,
    pub rows: u64,
    pub deleted: u64,
    pub bytes: u64,
    pub sha256: String,
    pub quarantine_path: Option<String>,
    pub quarantined: u64,
}

/// A stream's committed position.
#[derive(Debug, Clone, Serialize)]
pub struct StreamState {
    pub connection: String,
    pub stream: String,
    pub cursor: Option<String>,
    pub updated_at: String,
    pub last_run_id: Option<String>,
}

/// The SQLite-backed store.
pub struct StateStore {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateStore")
    }
}

const RUN_COLUMNS: &str = "run_id, connection, stream, kind, status, reconcile, schema_hash, started_at, finished_at, cursor_start, pending_cursor, position, next_part, rows_extracted, rows_deleted, rows_quarantined, json_bytes, rows_upserted, rows_removed, table_rows, owner_pid, window, error, report, lease_token";

/// SQLite integers are i64; counts are never negative.
fn count(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<u64> {
    Ok(r.get::<_, i64>(i)?.max(0) as u64)
}

fn run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        run_id: r.get(0)?,
        connection: r.get(1)?,
        stream: r.get(2)?,
        kind: r.get(3)?,
        status: r.get(4)?,
        reconcile: r.get(5)?,
        schema_hash: r.get(6)?,
        started_at: r.get(7)?,
        finished_at: r.get(8)?,
        cursor_start: r.get(9)?,
        pending_cursor: r.get(10)?,
        position: r.get(11)?,
        next_part: r.get(12)?,
        rows_extracted: count(r, 13)?,
        rows_deleted: count(r, 14)?,
        rows_quarantined: count(r, 15)?,
        json_bytes: count(r, 16)?,
        rows_upserted: count(r, 17)?,
        rows_removed: count(r, 18)?,
        table_rows: count(r, 19)?,
        owner_pid: r.get(20)?,
        window: r.get(21)?,
        error: r.get(22)?,
        report: r.get(23)?,
        lease_token: r.get(24)?,
    })
}

/// Journaling, then the schema and the columns older stores lack, in one immediate transaction:
/// two processes opening a new store at once (a `sync` beside `serve`) would otherwise both see
/// a column missing and the second would fail adding it.
fn setup(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(SCHEMA)?;
    tx.execute_batch(SINK_SCHEMA)?;
    tx.execute_batch(crate::lease::LEASES_SCHEMA)?;
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

    /// The committed cursor of a stream.
    pub fn cursor(&self, connection: &str, stream: &str) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row(
                "SELECT cursor FROM stream_state WHERE connection = ?1 AND stream = ?2",
                params![connection, stream],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .map(Option::flatten)
        })
    }

    /// The unfinished run of a stream (running, extracted or loaded), if any.
    pub fn open_run(&self, connection: &str, stream: &str) -> Result<Option<RunRecord>> {
        self.with(|c| {
            c.query_row(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE connection = ?1 AND stream = ?2 AND {UNFINISHED} ORDER BY started_at DESC LIMIT 1"
                ),
                params![connection, stream],
                run_from_row,
            )
            .optional()
        })
    }

    pub fn run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?1"),
                params![run_id],
                run_from_row,
            )
            .optional()
        })
    }

    /// Records a new run.
    pub fn begin_run(&self, r: &RunRecord) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO runs (run_id, connection, stream, kind, status, reconcile, schema_hash, started_at, cursor_start, owner_pid, window, lease_token) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![r.run_id, r.connection, r.stream, r.kind, r.status, r.reconcile, r.schema_hash, r.started_at, r.cursor_start, r.owner_pid, r.window, r.lease_token],
            )
            .map(|_| ())
        })
    }

    /// Takes over an unfinished run for this process, under the lease token `token` (the
    /// caller holds the run's lease, so its previous owner is gone or fenced out).
    pub fn claim_run(&self, run_id: &str, token: Option<i64>) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET owner_pid = ?2, error = NULL, lease_token = ?3 WHERE run_id = ?1",
                params![run_id, std::process::id(), token],
            )
            .map(|_| ())
        })
    }

    /// Fails with [`Error::LeaseLost`] when `run` is held under a lease token that is no
    /// longer its unit's.
    pub fn check_lease<'a>(&self, run: impl Into<RunRef<'a>>) -> Result<()> {
        self.run_write(run.into(), |_| Ok(()))
    }

    /// Runs `write` on `run`'s rows in one transaction, unless `run` is held under a lease
    /// token that is no longer its unit's: a worker that lost its lease writes nothing.
    fn run_write<T>(
        &self,
        run: RunRef<'_>,
        write: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if let Some(mine) = run.token {
                let unit: Option<String> = tx
                    .query_row(
                        "SELECT connection, stream FROM runs WHERE run_id = ?1",
                        params![run.run_id],
                        |r| {
                            Ok(crate::lease::run_unit(
                                &r.get::<_, String>(0)?,
                                &r.get::<_, String>(1)?,
                            ))
                        },
                    )
                    .optional()?;
                if let Some(unit) = unit
                    && let Err(lost) = crate::lease::check_token(&tx, &unit, mine)?
                {
                    return Ok(Err(lost));
                }
            }
            let out = write(&tx)?;
            tx.commit()?;
            Ok(Ok(out))
        })?
    }

    /// Records a durable part and the position after it, atomically: the checkpoint.
    pub fn record_part<'a>(
        &self,
        run: impl Into<RunRef<'a>>,
        p: &PartRecord,
        position: Option<&str>,
        json_bytes: u64,
    ) -> Result<()> {
        let run = run.into();
        let run_id = run.run_id;
        self.run_write(run, |tx| {
            tx.execute(
                "INSERT OR REPLACE INTO run_parts (run_id, part, path, rows, deleted, bytes, sha256, quarantine_path, quarantined) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![run_id, p.part, p.path, p.rows as i64, p.deleted as i64, p.bytes as i64, p.sha256, p.quarantine_path, p.quarantined as i64],
            )?;
            tx.execute(
                "UPDATE runs SET next_part = ?2, position = ?3, rows_extracted = rows_extracted + ?4, rows_deleted = rows_deleted + ?5, rows_quarantined = rows_quarantined + ?6, json_bytes = json_bytes + ?7 WHERE run_id = ?1",
                params![run_id, p.part + 1, position, p.rows as i64, p.deleted as i64, p.quarantined as i64, json_bytes as i64],
            )?;
            Ok(())
        })
    }

    pub fn parts(&self, run_id: &str) -> Result<Vec<PartRecord>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT part, path, rows, deleted, bytes, sha256, quarantine_path, quarantined FROM run_parts WHERE run_id = ?1 ORDER BY part",
            )?;
            st.query_map(params![run_id], |r| {
                Ok(PartRecord {
                    part: r.get(0)?,
                    path: r.get(1)?,
                    rows: count(r, 2)?,
                    deleted: count(r, 3)?,
                    bytes: count(r, 4)?,
                    sha256: r.get(5)?,
                    quarantine_path: r.get(6)?,
                    quarantined: count(r, 7)?,
                })
            })?
            .collect()
        })
    }

    /// The largest cursor value seen so far (cursor streams), kept across resumes.
    pub fn set_pending_cursor<'a>(&self, run: impl Into<RunRef<'a>>, cursor: &str) -> Result<()> {
        let run = run.into();
        self.run_write(run, |tx| {
            tx.execute(
                "UPDATE runs SET pending_cursor = ?2 WHERE run_id = ?1",
                params![run.run_id, cursor],
            )
            .map(|_| ())
        })
    }

    /// Extraction finished and the manifest is written; `pending_cursor` waits for the load.
    pub fn mark_extracted<'a>(
        &self,
        run: impl Into<RunRef<'a>>,
        pending_cursor: Option<&str>,
    ) -> Result<()> {
        let run = run.into();
        self.run_write(run, |tx| {
            tx.execute(
                "UPDATE runs SET status = ?3, pending_cursor = ?2 WHERE run_id = ?1",
                params![run.run_id, pending_cursor, RunStatus::Extracted],
            )
            .map(|_| ())
        })
    }

    pub fn mark_loaded<'a>(
        &self,
        run: impl Into<RunRef<'a>>,
        upserted: u64,
        removed: u64,
        table_rows: u64,
    ) -> Result<()> {
        let run = run.into();
        self.run_write(run, |tx| {
            tx.execute(
                "UPDATE runs SET status = ?5, rows_upserted = ?2, rows_removed = ?3, table_rows = ?4 WHERE run_id = ?1",
                params![
                    run.run_id,
                    upserted as i64,
                    removed as i64,
                    table_rows as i64,
                    RunStatus::Loaded
                ],
            )
            .map(|_| ())
        })
    }

    /// The last step of a run: the stream's cursor becomes the run's pending cursor (unless
    /// `advance` is none, as for backfills) and the run is committed, in one transaction.
    /// `advance` carries the column set the position was read with (`tenant::columns_hash`).
    pub fn commit_run<'a>(&self, run: impl Into<RunRef<'a>>, advance: Option<&str>) -> Result<()> {
        let run = run.into();
        let run_id = run.run_id;
        self.run_write(run, |tx| {
            let (connection, stream, pending): (String, String, Option<String>) = tx.query_row(
                "SELECT connection, stream, pending_cursor FROM runs WHERE run_id = ?1",
                params![run_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let now = chrono::Utc::now().to_rfc3339();
            if let Some(columns) = advance {
                tx.execute(
                    "INSERT INTO stream_state (connection, stream, cursor, updated_at, last_run_id, columns_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (connection, stream) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at, last_run_id = excluded.last_run_id, columns_hash = excluded.columns_hash",
                    params![connection, stream, pending, now, run_id, columns],
                )?;
            }
            tx.execute(
                "UPDATE runs SET status = ?3, finished_at = ?2, owner_pid = NULL WHERE run_id = ?1",
                params![run_id, now, RunStatus::Committed],
            )?;
            Ok(())
        })
    }

    /// Notes why a run stopped; it stays resumable.
    pub fn note_error<'a>(&self, run: impl Into<RunRef<'a>>, error: &str) -> Result<()> {
        let run = run.into();
        self.run_write(run, |tx| {
            tx.execute(
                "UPDATE runs SET error = ?2, owner_pid = NULL WHERE run_id = ?1",
                params![run.run_id, error],
            )
            .map(|_| ())
        })
    }

    pub fn abandon_run(&self, run_id: &str, why: &str) -> Result<()> {
        self.close_run(run_id, RunStatus::Abandoned, why)
    }

    /// Ends a run in a final `status` other than committed, saying why.
    pub fn close_run(&self, run_id: &str, status: RunStatus, why: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET status = ?4, error = ?2, finished_at = ?3, owner_pid = NULL WHERE run_id = ?1",
                params![run_id, why, chrono::Utc::now().to_rfc3339(), status],
            )
            .map(|_| ())
        })
    }

    /// Forgets a stream's cursor and abandons its unfinished runs: the next run is a full
    /// snapshot.
    pub fn reset(&self, connection: &str, stream: &str) -> Result<bool> {
        self.with(|c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "DELETE FROM stream_state WHERE connection = ?1 AND stream = ?2",
                params![connection, stream],
            )?;
            let m = tx.execute(
                &format!("UPDATE runs SET status = ?3, error = 'state reset', owner_pid = NULL WHERE connection = ?1 AND stream = ?2 AND {UNFINISHED}"),
                params![connection, stream, RunStatus::Abandoned],
            )?;
            tx.commit()?;
            Ok(n + m > 0)
        })
    }

    pub fn stream_states(&self) -> Result<Vec<StreamState>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT connection, stream, cursor, updated_at, last_run_id FROM stream_state ORDER BY connection, stream",
            )?;
            st.query_map([], |r| {
                Ok(StreamState {
                    connection: r.get(0)?,
                    stream: r.get(1)?,
                    cursor: r.get(2)?,
                    updated_at: r.get(3)?,
                    last_run_id: r.get(4)?,
                })
            })?
            .collect()
        })
    }

    /// When the last committed run of `stream` on `connection` that reconciled deletes (a
    /// full snapshot or a key-set pass) started, if any.
    pub fn last_reconciled(&self, connection: &str, stream: &str) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row(
                "SELECT MAX(started_at) FROM runs WHERE connection = ?1 AND stream = ?2 AND status = ?3 AND reconcile = 1",
                params![connection, stream, RunStatus::Committed],
                |r| r.get(0),
            )
        })
    }

    /// Stores what a run found (JSON of `run::RunReport`).
    pub fn set_run_report(&self, run_id: &str, report: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET report = ?2 WHERE run_id = ?1",
                params![run_id, report],
            )
            .map(|_| ())
        })
    }

    /// The report (JSON of `run::RunReport`) of the newest run of `stream` on `connection`
    /// that has one, key-set passes aside.
    pub fn latest_report(&self, connection: &str, stream: &str) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row(
                "SELECT report FROM runs WHERE connection = ?1 AND stream = ?2 AND report IS NOT NULL AND kind != ?3 ORDER BY started_at DESC, run_id DESC LIMIT 1",
                params![connection, stream, RunKind::Keyset],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// The column set a stream's committed position was read with (see
    /// `tenant::columns_hash`); `None` before the first commit that recorded one.
    pub fn columns_hash(&self, connection: &str, stream: &str) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row(
                "SELECT columns_hash FROM stream_state WHERE connection = ?1 AND stream = ?2",
                params![connection, stream],
                |r| r.get(0),
            )
            .optional()
            .map(Option::flatten)
        })
    }

    /// The cached live schema of a stream's entity on a connection.
    pub fn live_schema(
        &self,
        connection: &str,
        stream: &str,
    ) -> Result<Option<crate::spec::live::LiveSchema>> {
        let body: Option<String> = self.with(|c| {
            c.query_row(
                "SELECT body FROM live_schema WHERE connection = ?1 AND stream = ?2",
                params![connection, stream],
                |r| r.get(0),
            )
            .optional()
        })?;
        // A cache entry of an older shape is simply read again from the tenant.
        Ok(body.and_then(|b| serde_json::from_str(&b).ok()))
    }

    pub fn put_live_schema(
        &self,
        connection: &str,
        stream: &str,
        schema: &crate::spec::live::LiveSchema,
    ) -> Result<()> {
        let body = serde_json::to_string(schema)
            .map_err(|e| Error::state_from(format!("live schema of {stream}"), e))?;
        self.with(|c| {
            c.execute(
                "INSERT INTO live_schema (connection, stream, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (connection, stream) DO UPDATE SET body = excluded.body",
                params![connection, stream, body],
            )
            .map(|_| ())
        })
    }

    /// Column names given to tenant fields of a stream (field identity → column), kept for
    /// good so a field keeps its column when it is renamed.
    pub fn field_columns(
        &self,
        connection: &str,
        stream: &str,
    ) -> Result<std::collections::BTreeMap<String, String>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT field, column_name FROM field_columns WHERE connection = ?1 AND stream = ?2",
            )?;
            st.query_map(params![connection, stream], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
    }

    pub fn put_field_column(
        &self,
        connection: &str,
        stream: &str,
        field: &str,
        column: &str,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO field_columns (connection, stream, field, column_name) VALUES (?1, ?2, ?3, ?4)",
                params![connection, stream, field, column],
            )
            .map(|_| ())
        })
    }

    /// Run history, newest first, optionally for one stream.
    pub fn runs(&self, stream: Option<&str>, limit: usize) -> Result<Vec<RunRecord>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE (?1 IS NULL OR stream = ?1) ORDER BY started_at DESC, run_id DESC LIMIT ?2"
            ))?;
            st.query_map(params![stream, limit as i64], run_from_row)?
                .collect()
        })
    }
}

/// The sink stage's tables. `sink_ledger`: which target record a source record became (the
/// idempotency map), and the target's own version of it right after our last write (so a flow
/// reading that target back knows that version for our echo, not someone's change). `sink_jobs`: one row per (flow, entity, source id, source version), keyed
/// by its hash, with the source record kept so `replay` needs no change set. `sink_audit`:
/// every write attempt, append-only, secrets never stored. `sink_cursor`: the last run of each
/// source stream a flow has consumed. (One apply or replay per flow at a time: `lease::sink_unit`.)
pub const SINK_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS sink_ledger (
    flow TEXT NOT NULL,
    source_entity TEXT NOT NULL,
    source_id TEXT NOT NULL,
    target_entity TEXT NOT NULL,
    target_key TEXT NOT NULL,
    source_version INTEGER,
    updated_at TEXT NOT NULL,
    target_version INTEGER,
    PRIMARY KEY (flow, source_entity, source_id)
);
CREATE INDEX IF NOT EXISTS sink_ledger_by_target ON sink_ledger (flow, source_entity, target_key);
CREATE TABLE IF NOT EXISTS sink_jobs (
    job_id TEXT PRIMARY KEY,
    flow TEXT NOT NULL,
    source_entity TEXT NOT NULL,
    source_id TEXT NOT NULL,
    source_version INTEGER,
    run_id TEXT NOT NULL,
    record TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    ambiguous INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sink_jobs_by_status ON sink_jobs (flow, status);
CREATE INDEX IF NOT EXISTS sink_jobs_by_source ON sink_jobs (flow, source_entity, source_id);
CREATE TABLE IF NOT EXISTS sink_audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    flow TEXT NOT NULL,
    job_id TEXT NOT NULL,
    source_entity TEXT NOT NULL,
    source_id TEXT NOT NULL,
    source_version INTEGER,
    target TEXT NOT NULL,
    action TEXT NOT NULL,
    method TEXT,
    request TEXT,
    status INTEGER,
    target_key TEXT,
    ms INTEGER NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS sink_audit_by_job ON sink_audit (job_id);
CREATE TABLE IF NOT EXISTS sink_cursor (
    flow TEXT NOT NULL,
    stream TEXT NOT NULL,
    last_run_id TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (flow, stream)
);
CREATE TABLE IF NOT EXISTS sink_lines (
    flow TEXT NOT NULL,
    mapping TEXT NOT NULL,
    line_id TEXT NOT NULL,
    parent_id TEXT NOT NULL,
    record TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    PRIMARY KEY (flow, mapping, line_id)
);
CREATE INDEX IF NOT EXISTS sink_lines_by_parent ON sink_lines (flow, mapping, parent_id);
CREATE TABLE IF NOT EXISTS sink_numbers (
    flow TEXT NOT NULL,
    mapping TEXT NOT NULL,
    source_id TEXT NOT NULL,
    prefix TEXT NOT NULL,
    seq INTEGER NOT NULL,
    number TEXT NOT NULL,
    PRIMARY KEY (flow, mapping, source_id)
);
CREATE TABLE IF NOT EXISTS sink_deleted (
    flow TEXT NOT NULL,
    mapping TEXT NOT NULL,
    source_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (flow, mapping, source_id)
);
CREATE TABLE IF NOT EXISTS sink_rules (
    connection TEXT NOT NULL,
    hub TEXT NOT NULL,
    field TEXT NOT NULL,
    reason TEXT NOT NULL,
    learned_at TEXT NOT NULL,
    PRIMARY KEY (connection, hub, field)
);
"#;

/// A rule of a target tenant its metadata does not show (a field Vantagepoint's screen
/// designer made required), learned from a refusal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LearnedRule {
    pub hub: String,
    /// The field the tenant requires.
    pub field: String,
    /// The refusal it was learned from.
    pub reason: String,
    pub learned_at: String,
}

/// Where a sink job is. Stored by its lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Decided, not written yet.
    #[default]
    Planned,
    /// Written (or linked, or a no-op) and recorded in the ledger.
    Applied,
    /// The target refused it, or the answer was lost; `replay` retries it (searching first).
    Failed,
    /// A dependency (e.g. the contact's firm) is missing; retried with it.
    Waiting,
    /// The target's metadata shows it would be refused (a field the tenant lacks, a value
    /// longer than it takes): nothing was sent; checked again by every apply.
    Blocked,
}

crate::names::stored_by_name!(JobStatus, "job status", {
    Planned => "planned",
    Applied => "applied",
    Failed => "failed",
    Waiting => "waiting",
    Blocked => "blocked",
});

/// A ledger link: what a source record became in the target.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LedgerLink {
    pub target_entity: String,
    pub target_key: String,
    pub source_version: Option<i64>,
    pub updated_at: String,
    /// The target's own version of the record (its modified time, in µs) right after our last
    /// write, when the target reports one.
    pub target_version: Option<i64>,
}

const LINK_COLUMNS: &str = "target_entity, target_key, source_version, updated_at, target_version";

/// A [`LedgerLink`] from `LINK_COLUMNS` starting at column `at`.
fn link_from_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<LedgerLink> {
    Ok(LedgerLink {
        target_entity: r.get(at)?,
        target_key: r.get(at + 1)?,
        source_version: r.get(at + 2)?,
        updated_at: r.get(at + 3)?,
        target_version: r.get(at + 4)?,
    })
}

/// One sink job.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SinkJob {
    pub job_id: String,
    pub flow: String,
    pub source_entity: String,
    pub source_id: String,
    pub source_version: Option<i64>,
    pub run_id: String,
    /// The source record as JSON text (what `replay` maps again).
    pub record: String,
    pub status: JobStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// The last attempt may have written without us seeing the answer: search before creating.
    pub ambiguous: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// What an audit entry records. Stored by name: the names are the audit's vocabulary in the
/// state store, the `mlc.sink_audit` table and `mlc sink audit`, so they never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A record created on the target.
    Create,
    /// A linked record updated.
    Update,
    /// A record found on the target (by search, or by hand: `mlc sink link`) and linked.
    Link,
    /// A link removed by hand (`mlc sink unlink`).
    Unlink,
    /// A `match` mapping's record found and linked without writing.
    Match,
    /// A `match` (or `update`) mapping's record found nothing to link: records it owns use
    /// the default.
    Unmatched,
    /// A created document posted (Business Central `Microsoft.NAV.post`).
    Post,
    /// Nothing to write: the target already has it, or the flow skips it.
    #[default]
    Noop,
    /// Waits for a record it refers to.
    Waiting,
    /// Blocked before any request (a rule of the tenant, a pre-flight check).
    Blocked,
    /// The write failed (refused, or ambiguous).
    Failed,
}

crate::names::stored_by_name!(AuditAction, "audit action", {
    Create => "create",
    Update => "update",
    Link => "link",
    Unlink => "unlink",
    Match => "match",
    Unmatched => "unmatched",
    Post => "post",
    Noop => "noop",
    Waiting => "waiting",
    Blocked => "blocked",
    Failed => "failed",
});

impl AuditAction {
    /// Whether the entry says the job did not go through (`mlc sink audit` shows where the
    /// job stands now).
    pub fn held_up(self) -> bool {
        matches!(self, Self::Failed | Self::Blocked | Self::Waiting)
    }
}

/// One audited write (or decided no-op).
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: String,
    pub flow: String,
    pub job_id: String,
    pub source_entity: String,
    pub source_id: String,
    pub source_version: Option<i64>,
    /// Target hub, e.g. `deltek.firm`.
    pub target: String,
    pub action: AuditAction,
    pub method: Option<String>,
    /// Redacted request summary: method, path and the field names sent (never values of
    /// secrets; never tokens).
    pub request: Option<String>,
    pub status: Option<u16>,
    pub target_key: Option<String>,
    pub ms: u64,
    pub error: Option<String>,
}

/// The newest version of a document line read from the source (a deal product).
#[derive(Debug, Clone, PartialEq)]
pub struct SinkLine {
    /// The mapping whose documents carry the line.
    pub mapping: String,
    pub line_id: String,
    pub parent_id: String,
    /// The line's source record as JSON text.
    pub record: String,
    pub deleted: bool,
}

/// A ledger link to record.
#[derive(Debug, Clone)]
pub struct NewLink<'a> {
    pub flow: &'a str,
    pub source_entity: &'a str,
    pub source_id: &'a str,
    pub target_entity: &'a str,
    pub target_key: &'a str,
    pub source_version: Option<i64>,
    /// The target's version after this write (none: not a write, or not reported).
    pub target_version: Option<i64>,
}

/// Another flow's link whose source record our write just changed (a mirror flow writing back
/// into that flow's source): its `source_version` moves up to the version our write produced,
/// so that flow sees the change as already held and does not echo it back.
#[derive(Debug, Clone)]
pub struct EchoLink<'a> {
    pub flow: &'a str,
    pub source_entity: &'a str,
    pub source_id: &'a str,
    pub version: i64,
}

/// The end of one job attempt (see [`StateStore::sink_commit`]).
#[derive(Debug, Clone, Default)]
pub struct JobFinish<'a> {
    /// The job to move (none: only audit).
    pub job_id: Option<&'a str>,
    pub status: JobStatus,
    pub error: Option<&'a str>,
    pub ambiguous: bool,
    /// Counts as an attempt (a wait does not).
    pub attempted: bool,
    pub link: Option<NewLink<'a>>,
    pub echo: Option<EchoLink<'a>>,
    pub audits: &'a [AuditEntry],
    /// The flow's lease the job ran under: when another worker took it over meanwhile,
    /// nothing is recorded (the new owner's search finds what this write did).
    pub fence: Option<&'a crate::lease::Lease>,
}

const AUDIT_COLUMNS: &str = "seq, at, flow, job_id, source_entity, source_id, source_version, target, action, method, request, status, target_key, ms, error";

fn audit_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        seq: r.get(0)?,
        at: r.get(1)?,
        flow: r.get(2)?,
        job_id: r.get(3)?,
        source_entity: r.get(4)?,
        source_id: r.get(5)?,
        source_version: r.get(6)?,
        target: r.get(7)?,
        action: r.get(8)?,
        method: r.get(9)?,
        request: r.get(10)?,
        status: r.get(11)?,
        target_key: r.get(12)?,
        ms: count(r, 13)?,
        error: r.get(14)?,
    })
}

const JOB_COLUMNS: &str = "job_id, flow, source_entity, source_id, source_version, run_id, record, status, attempts, last_error, ambiguous, created_at, updated_at";

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SinkJob> {
    Ok(SinkJob {
        job_id: r.get(0)?,
        flow: r.get(1)?,
        source_entity: r.get(2)?,
        source_id: r.get(3)?,
        source_version: r.get(4)?,
        run_id: r.get(5)?,
        record: r.get(6)?,
        status: r.get(7)?,
        attempts: r.get(8)?,
        last_error: r.get(9)?,
        ambiguous: r.get(10)?,
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
    })
}

/// Appends one audit entry, stamped `now`, inside a sink transaction.
fn insert_audit(tx: &rusqlite::Transaction<'_>, now: &str, a: &AuditEntry) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO sink_audit (at, flow, job_id, source_entity, source_id, source_version, target, action, method, request, status, target_key, ms, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![now, a.flow, a.job_id, a.source_entity, a.source_id, a.source_version, a.target, a.action, a.method, a.request, a.status, a.target_key, a.ms as i64, a.error],
    )
    .map(|_| ())
}

/// The sink stage's view of the store.
impl StateStore {
    /// The ledger link of a source record, if it has one.
    pub fn sink_link(
        &self,
        flow: &str,
        source_entity: &str,
        source_id: &str,
    ) -> Result<Option<LedgerLink>> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {LINK_COLUMNS} FROM sink_ledger WHERE flow = ?1 AND source_entity = ?2 AND source_id = ?3"),
                params![flow, source_entity, source_id],
                |r| link_from_row(r, 0),
            )
            .optional()
        })
    }

    /// The link of a mapping that points at target record `target_key`, with its source id:
    /// how a flow reading that target finds the source record it mirrors.
    pub fn sink_link_to(
        &self,
        flow: &str,
        source_entity: &str,
        target_key: &str,
    ) -> Result<Option<(String, LedgerLink)>> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT source_id, {LINK_COLUMNS} FROM sink_ledger WHERE flow = ?1 AND source_entity = ?2 AND target_key = ?3 ORDER BY updated_at DESC LIMIT 1"),
                params![flow, source_entity, target_key],
                |r| Ok((r.get(0)?, link_from_row(r, 1)?)),
            )
            .optional()
        })
    }

    /// What one job attempt ended with, committed in one transaction: its audit entries, the
    /// ledger link of a successful write, and the job's new status (one fsync per job, and a
    /// crash never leaves a link without its audit).
    pub fn sink_commit(&self, f: &JobFinish<'_>) -> Result<()> {
        let now = chrono::Utc::now().to_rfc3339();
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if let Some(lease) = f.fence
                && let Err(lost) = crate::lease::check_token(&tx, &lease.unit, lease.token)?
            {
                return Ok(Err(lost));
            }
            for a in f.audits {
                insert_audit(&tx, &now, a)?;
            }
            if let Some(l) = &f.link {
                // A link without a write keeps the target version of the last write to the same
                // record.
                tx.execute(
                    "INSERT INTO sink_ledger (flow, source_entity, source_id, target_entity, target_key, source_version, updated_at, target_version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (flow, source_entity, source_id) DO UPDATE SET target_entity = excluded.target_entity, target_key = excluded.target_key, source_version = excluded.source_version, updated_at = excluded.updated_at,
                       target_version = CASE WHEN sink_ledger.target_key = excluded.target_key THEN COALESCE(excluded.target_version, sink_ledger.target_version) ELSE excluded.target_version END",
                    params![l.flow, l.source_entity, l.source_id, l.target_entity, l.target_key, l.source_version, now, l.target_version],
                )?;
            }
            if let Some(e) = &f.echo {
                tx.execute(
                    "UPDATE sink_ledger SET source_version = MAX(COALESCE(source_version, ?4), ?4), updated_at = ?5 WHERE flow = ?1 AND source_entity = ?2 AND source_id = ?3",
                    params![e.flow, e.source_entity, e.source_id, e.version, now],
                )?;
            }
            if let Some(job_id) = f.job_id {
                tx.execute(
                    "UPDATE sink_jobs SET status = ?2, last_error = ?3, ambiguous = ?4, attempts = attempts + ?5, updated_at = ?6 WHERE job_id = ?1",
                    params![job_id, f.status, f.error, f.ambiguous, f.attempted as i64, now],
                )?;
            }
            tx.commit()?;
            Ok(Ok(()))
        })?
    }

    /// The run whose change set carried the deletion of a source record, if one did: a job
    /// read from an earlier run must not write it (run ids sort by start time).
    pub fn sink_deleted_in(
        &self,
        flow: &str,
        mapping: &str,
        source_id: &str,
    ) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row(
                "SELECT run_id FROM sink_deleted WHERE flow = ?1 AND mapping = ?2 AND source_id = ?3",
                params![flow, mapping, source_id],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// Remembers that target connection `connection` requires `field` on `hub`.
    pub fn sink_learn_rule(
        &self,
        connection: &str,
        hub: &str,
        field: &str,
        reason: &str,
    ) -> Result<()> {
        let now = chrono::Utc::now().to_rfc3339();
        self.with(|c| {
            c.execute(
                "INSERT INTO sink_rules (connection, hub, field, reason, learned_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (connection, hub, field) DO UPDATE SET reason = excluded.reason, learned_at = excluded.learned_at",
                params![connection, hub, field, reason, now],
            )
            .map(|_| ())
        })
    }

    /// The rules learned for target connection `connection`.
    pub fn sink_rules(&self, connection: &str) -> Result<Vec<LearnedRule>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT hub, field, reason, learned_at FROM sink_rules WHERE connection = ?1 ORDER BY hub, field",
            )?;
            let rows = st.query_map(params![connection], |r| {
                Ok(LearnedRule {
                    hub: r.get(0)?,
                    field: r.get(1)?,
                    reason: r.get(2)?,
                    learned_at: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Forgets the learned rules of `connection` (the tenant was changed); returns how many.
    pub fn sink_forget_rules(&self, connection: &str) -> Result<usize> {
        self.with(|c| {
            c.execute(
                "DELETE FROM sink_rules WHERE connection = ?1",
                params![connection],
            )
        })
    }

    /// Removes the ledger link of a source record, audited, and sets its job to run again
    /// (`mlc sink unlink`), in one transaction.
    pub fn sink_unlink(
        &self,
        flow: &str,
        source_entity: &str,
        source_id: &str,
        job_id: &str,
        audit: &AuditEntry,
    ) -> Result<()> {
        let now = chrono::Utc::now().to_rfc3339();
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "DELETE FROM sink_ledger WHERE flow = ?1 AND source_entity = ?2 AND source_id = ?3",
                params![flow, source_entity, source_id],
            )?;
            insert_audit(&tx, &now, audit)?;
            tx.execute(
                "UPDATE sink_jobs SET status = ?2, last_error = NULL, ambiguous = 0, updated_at = ?3 WHERE job_id = ?1",
                params![job_id, JobStatus::Planned, now],
            )?;
            tx.commit()
        })
    }

    /// The newest source record the flow holds for a mapping's source id (from its jobs): how
    /// a lookup through another record (an opportunity's contact → its account) is resolved
    /// without reading the source again.
    pub fn sink_record(
        &self,
        flow: &str,
        mapping: &str,
        source_id: &str,
    ) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row(
                "SELECT record FROM sink_jobs WHERE flow = ?1 AND source_entity = ?2 AND source_id = ?3 ORDER BY source_version DESC, created_at DESC LIMIT 1",
                params![flow, mapping, source_id],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// The live lines of a parent record (as JSON text), in line id order.
    pub fn sink_lines(&self, flow: &str, mapping: &str, parent_id: &str) -> Result<Vec<String>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT record FROM sink_lines WHERE flow = ?1 AND mapping = ?2 AND parent_id = ?3 AND deleted = 0 ORDER BY length(line_id), line_id",
            )?;
            st.query_map(params![flow, mapping, parent_id], |r| r.get(0))?
                .collect()
        })
    }

    /// Whether the audit holds a successful `action` for a source record (a document posted).
    pub fn sink_done(
        &self,
        flow: &str,
        mapping: &str,
        source_id: &str,
        action: AuditAction,
    ) -> Result<bool> {
        self.with(|c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM sink_audit WHERE flow = ?1 AND source_entity = ?2 AND source_id = ?3 AND action = ?4 AND error IS NULL)",
                params![flow, mapping, source_id, action],
                |r| r.get(0),
            )
        })
    }

    /// The source record a mapping wrote at `version` (what the target was last sent).
    pub fn sink_record_at(
        &self,
        flow: &str,
        mapping: &str,
        source_id: &str,
        version: Option<i64>,
    ) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row(
                "SELECT record FROM sink_jobs WHERE flow = ?1 AND source_entity = ?2 AND source_id = ?3 AND source_version IS ?4 AND status = ?5 ORDER BY created_at DESC LIMIT 1",
                params![flow, mapping, source_id, version, JobStatus::Applied],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// The number allocated to a source record (allocating the next of `prefix` when it has
    /// none, or when `renumber`: the one it had is taken in the target).
    pub fn sink_number(
        &self,
        flow: &str,
        mapping: &str,
        source_id: &str,
        prefix: &str,
        renumber: bool,
        render: impl Fn(u64) -> String,
    ) -> Result<String> {
        self.with(|c| {
            let tx = c.transaction()?;
            let have: Option<String> = tx
                .query_row(
                    "SELECT number FROM sink_numbers WHERE flow = ?1 AND mapping = ?2 AND source_id = ?3",
                    params![flow, mapping, source_id],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(n) = have.filter(|_| !renumber) {
                return Ok(n);
            }
            let last: i64 = tx.query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM sink_numbers WHERE flow = ?1 AND mapping = ?2 AND prefix = ?3",
                params![flow, mapping, prefix],
                |r| r.get(0),
            )?;
            let seq = last.max(0) as u64 + 1;
            let number = render(seq);
            tx.execute(
                "INSERT INTO sink_numbers (flow, mapping, source_id, prefix, seq, number) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (flow, mapping, source_id) DO UPDATE SET prefix = excluded.prefix, seq = excluded.seq, number = excluded.number",
                params![flow, mapping, source_id, prefix, seq as i64, number],
            )?;
            tx.commit()?;
            Ok(number)
        })
    }

    /// Records planned jobs (keeping existing ones: a re-read record keeps its job) and moves
    /// the flow's cursors past the runs they came from, in one transaction: once committed,
    /// the jobs are the flow's to finish (apply picks up `planned` jobs a crash left).
    /// Returns the ids of the jobs that were new.
    pub fn sink_add_jobs(
        &self,
        jobs: impl IntoIterator<Item = SinkJob>,
        lines: &[SinkLine],
        flow: &str,
        cursors: &[(String, String)],
        deleted: &[(&str, &str, &str)],
    ) -> Result<std::collections::HashSet<String>> {
        let now = chrono::Utc::now().to_rfc3339();
        self.with(|c| {
            let tx = c.transaction()?;
            let mut new = std::collections::HashSet::new();
            {
                let mut st = tx.prepare(&format!(
                    "INSERT OR IGNORE INTO sink_jobs ({JOB_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
                ))?;
                for j in jobs {
                    if st.execute(params![j.job_id, j.flow, j.source_entity, j.source_id, j.source_version, j.run_id, j.record, j.status, j.attempts, j.last_error, j.ambiguous, j.created_at, j.updated_at])? > 0 {
                        new.insert(j.job_id);
                    }
                }
            }
            for l in lines {
                tx.execute(
                    "INSERT INTO sink_lines (flow, mapping, line_id, parent_id, record, deleted) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (flow, mapping, line_id) DO UPDATE SET parent_id = excluded.parent_id, record = excluded.record, deleted = excluded.deleted",
                    params![flow, l.mapping, l.line_id, l.parent_id, l.record, l.deleted],
                )?;
            }
            for (mapping, source_id, run_id) in deleted {
                tx.execute(
                    "INSERT INTO sink_deleted (flow, mapping, source_id, run_id) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (flow, mapping, source_id) DO UPDATE SET run_id = MAX(sink_deleted.run_id, excluded.run_id)",
                    params![flow, mapping, source_id, run_id],
                )?;
            }
            for (stream, run_id) in cursors {
                tx.execute(
                    "INSERT INTO sink_cursor (flow, stream, last_run_id, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (flow, stream) DO UPDATE SET last_run_id = excluded.last_run_id, updated_at = excluded.updated_at",
                    params![flow, stream, run_id, now],
                )?;
            }
            tx.commit()?;
            Ok(new)
        })
    }

    /// Every link of a flow, ordered by source entity and id.
    pub fn sink_links(&self, flow: &str) -> Result<Vec<(String, String, LedgerLink)>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT source_entity, source_id, {LINK_COLUMNS} FROM sink_ledger WHERE flow = ?1 ORDER BY source_entity, source_id"
            ))?;
            st.query_map(params![flow], |r| {
                Ok((r.get(0)?, r.get(1)?, link_from_row(r, 2)?))
            })?
            .collect()
        })
    }

    /// A job by id.
    pub fn sink_job(&self, job_id: &str) -> Result<Option<SinkJob>> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {JOB_COLUMNS} FROM sink_jobs WHERE job_id = ?1"),
                params![job_id],
                job_from_row,
            )
            .optional()
        })
    }

    /// Jobs of a flow, optionally only those in `status`, oldest first.
    pub fn sink_jobs(&self, flow: &str, status: Option<JobStatus>) -> Result<Vec<SinkJob>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM sink_jobs WHERE flow = ?1 AND (?2 IS NULL OR status = ?2) ORDER BY created_at, rowid"
            ))?;
            st.query_map(params![flow, status], job_from_row)?.collect()
        })
    }

    /// (source id, run id) of a mapping's jobs not applied yet (planned, failed, waiting,
    /// blocked): the records a later delete must stop.
    pub fn sink_open_jobs(&self, flow: &str, mapping: &str) -> Result<Vec<(String, String)>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT source_id, run_id FROM sink_jobs WHERE flow = ?1 AND source_entity = ?2 AND status <> ?3",
            )?;
            st.query_map(params![flow, mapping, JobStatus::Applied], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect()
        })
    }

    /// The audit of a flow (or of one job), oldest first.
    pub fn sink_audit_entries(&self, flow: &str, job_id: Option<&str>) -> Result<Vec<AuditEntry>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {AUDIT_COLUMNS} FROM sink_audit WHERE flow = ?1 AND (?2 IS NULL OR job_id = ?2) ORDER BY seq"
            ))?;
            st.query_map(params![flow, job_id], audit_from_row)?.collect()
        })
    }

    /// The last run of `stream` the flow has consumed.
    pub fn sink_cursor(&self, flow: &str, stream: &str) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row(
                "SELECT last_run_id FROM sink_cursor WHERE flow = ?1 AND stream = ?2",
                params![flow, stream],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// Moves a flow's cursor over `stream` to `run_id`.
    pub fn sink_set_cursor(&self, flow: &str, stream: &str, run_id: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO sink_cursor (flow, stream, last_run_id, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (flow, stream) DO UPDATE SET last_run_id = excluded.last_run_id, updated_at = excluded.updated_at",
                params![flow, stream, run_id, chrono::Utc::now().to_rfc3339()],
            )
            .map(|_| ())
        })
    }

    /// Audit entries of every flow after `seq`, oldest first (what the warehouse has not got).
    pub fn sink_audit_since(&self, seq: i64) -> Result<Vec<AuditEntry>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {AUDIT_COLUMNS} FROM sink_audit WHERE seq > ?1 ORDER BY seq"
            ))?;
            st.query_map(params![seq], audit_from_row)?.collect()
        })
    }

    /// Forgets a flow's cursors: the next plan re-reads every change set (the ledger keeps
    /// it from writing anything twice).
    pub fn sink_reset_cursor(&self, flow: &str) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM sink_cursor WHERE flow = ?1", params![flow])
                .map(|_| ())
        })
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
        r.owner_pid = Some(std::process::id());
        assert_eq!(r.standing(), "running");
        r.error = Some("HTTP 500".into());
        assert_eq!(r.standing(), "failed");
        r.error = None;
        r.owner_pid = None;
        assert_eq!(r.standing(), "interrupted");
        r.status = RunStatus::Committed;
        assert_eq!(r.standing(), "committed");
    }

    #[test]
    fn cursor_moves_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(&dir.path().join("s.db")).unwrap();
        let r = RunRecord::new(
            "r1",
            "crm",
            "dataverse.account",
            RunKind::Snapshot,
            true,
            "h",
            None,
        );
        s.begin_run(&r).unwrap();
        s.record_part(
            "r1",
            &PartRecord {
                part: 0,
                path: "p0".into(),
                rows: 10,
                deleted: 1,
                bytes: 100,
                sha256: "x".into(),
                quarantine_path: None,
                quarantined: 2,
            },
            Some("next-link"),
            1000,
        )
        .unwrap();
        let open = s.open_run("crm", "dataverse.account").unwrap().unwrap();
        assert_eq!(open.position.as_deref(), Some("next-link"));
        assert_eq!(
            (open.next_part, open.rows_extracted, open.rows_quarantined),
            (1, 10, 2)
        );
        s.mark_extracted("r1", Some("delta-1")).unwrap();
        assert_eq!(s.cursor("crm", "dataverse.account").unwrap(), None);
        s.mark_loaded("r1", 9, 1, 9).unwrap();
        s.commit_run("r1", Some("h")).unwrap();
        assert_eq!(
            s.cursor("crm", "dataverse.account").unwrap().as_deref(),
            Some("delta-1")
        );
        assert!(s.open_run("crm", "dataverse.account").unwrap().is_none());
        assert_eq!(s.parts("r1").unwrap().len(), 1);
        assert_eq!(s.runs(None, 10).unwrap()[0].status, RunStatus::Committed);

        assert!(s.reset("crm", "dataverse.account").unwrap());
        assert_eq!(s.cursor("crm", "dataverse.account").unwrap(), None);
    }

    #[test]
    fn state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        {
            let s = StateStore::open(&p).unwrap();
            s.begin_run(&RunRecord::new(
                "r1",
                "c",
                "x.y",
                RunKind::Incremental,
                false,
                "h",
                None,
            ))
            .unwrap();
        }
        let s = StateStore::open(&p).unwrap();
        assert!(s.open_run("c", "x.y").unwrap().is_some());
        assert!(pid_alive(std::process::id()));
    }
}
