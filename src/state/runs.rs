//! Stream runs: cursors, run history and the checkpoints a run resumes from.

use serde::Serialize;

use super::db::{Db, Row, params};
use super::{StateStore, pid_alive};
use crate::error::Result;
use crate::lake::RunKind;

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS stream_state (
    connection TEXT NOT NULL,
    stream TEXT NOT NULL,
    cursor TEXT,
    updated_at TEXT NOT NULL,
    last_run_id TEXT,
    columns_hash TEXT,
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
    "window" TEXT,
    error TEXT,
    report TEXT,
    lease_token INTEGER
);
CREATE INDEX IF NOT EXISTS runs_by_stream ON runs (connection, stream, started_at);
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
    /// The fencing token of the lease this process runs it under (`leases::run_unit`); `None`
    /// for a run written without a lease (tools, tests).
    pub lease_token: Option<i64>,
    /// Backfill window, `since..until`.
    pub window: Option<String>,
    pub error: Option<String>,
    /// What the run found about the tenant and the data (JSON of `run::RunReport`).
    pub report: Option<String>,
    /// The lake path of the run's manifest, once extracted (`None` before, and for runs
    /// extracted before the path was recorded: the unleased name).
    pub manifest: Option<String>,
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
    /// Where the run stands, as a person asks: an unfinished run is `running` while a worker
    /// holds it (`held`: [`StateStore::run_held`]), `failed` when it stopped on an error
    /// (resumed by the next sync), and `interrupted` when its worker died without one (a crash,
    /// a kill); finished runs keep their status (`committed`, `absent`, `abandoned`).
    pub fn standing(&self, held: bool) -> &'static str {
        match self.status {
            RunStatus::Running | RunStatus::Extracted | RunStatus::Loaded => {
                if self.error.is_some() {
                    "failed"
                } else if held {
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
            manifest: None,
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

const RUN_COLUMNS: &str = "run_id, connection, stream, kind, status, reconcile, schema_hash, started_at, finished_at, cursor_start, pending_cursor, position, next_part, rows_extracted, rows_deleted, rows_quarantined, json_bytes, rows_upserted, rows_removed, table_rows, owner_pid, \"window\", error, report, lease_token, manifest";

fn run_from_row(r: &Row) -> Result<RunRecord> {
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
        rows_extracted: r.count(13)?,
        rows_deleted: r.count(14)?,
        rows_quarantined: r.count(15)?,
        json_bytes: r.count(16)?,
        rows_upserted: r.count(17)?,
        rows_removed: r.count(18)?,
        table_rows: r.count(19)?,
        owner_pid: r.get(20)?,
        window: r.get(21)?,
        error: r.get(22)?,
        report: r.get(23)?,
        lease_token: r.get(24)?,
        manifest: r.get(25)?,
    })
}

impl StateStore {
    /// The committed cursor of a stream.
    pub fn cursor(&self, connection: &str, stream: &str) -> Result<Option<String>> {
        self.with(|c| {
            c.query_opt(
                "SELECT cursor FROM stream_state WHERE connection = ?1 AND stream = ?2",
                params![connection, stream],
                |r| r.get::<Option<String>>(0),
            )
            .map(Option::flatten)
        })
    }

    /// The unfinished run of a stream (running, extracted or loaded), if any.
    pub fn open_run(&self, connection: &str, stream: &str) -> Result<Option<RunRecord>> {
        self.with(|c| {
            c.query_opt(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE connection = ?1 AND stream = ?2 AND {UNFINISHED} ORDER BY started_at DESC LIMIT 1"
                ),
                params![connection, stream],
                run_from_row,
            )
        })
    }

    pub fn run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        self.with(|c| {
            c.query_opt(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?1"),
                params![run_id],
                run_from_row,
            )
        })
    }

    /// Records a new run.
    pub fn begin_run(&self, r: &RunRecord) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO runs (run_id, connection, stream, kind, status, reconcile, schema_hash, started_at, cursor_start, owner_pid, \"window\", lease_token) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
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

    /// Fails with [`Error::LeaseLost`](crate::Error::LeaseLost) when `run` is held under a
    /// lease token that is no longer its unit's.
    pub fn check_lease<'a>(&self, run: impl Into<RunRef<'a>>) -> Result<()> {
        self.run_write(run.into(), |_| Ok(()))
    }

    /// Runs `write` on `run`'s rows in one transaction, unless `run` is held under a lease
    /// token that is no longer its unit's: a worker that lost its lease writes nothing.
    fn run_write<T>(&self, run: RunRef<'_>, write: impl FnOnce(&mut Db) -> Result<T>) -> Result<T> {
        self.write(|tx| {
            if let Some(mine) = run.token {
                let unit = tx.query_opt(
                    "SELECT connection, stream FROM runs WHERE run_id = ?1",
                    params![run.run_id],
                    |r| {
                        Ok(super::leases::run_unit(
                            &r.get::<String>(0)?,
                            &r.get::<String>(1)?,
                        ))
                    },
                )?;
                if let Some(unit) = unit {
                    super::leases::check_token(tx, &unit, mine)?;
                }
            }
            write(tx)
        })
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
                "INSERT INTO run_parts (run_id, part, path, rows, deleted, bytes, sha256, quarantine_path, quarantined) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (run_id, part) DO UPDATE SET path = excluded.path, rows = excluded.rows, deleted = excluded.deleted, bytes = excluded.bytes, sha256 = excluded.sha256, quarantine_path = excluded.quarantine_path, quarantined = excluded.quarantined",
                params![run_id, p.part, p.path, p.rows, p.deleted, p.bytes, p.sha256, p.quarantine_path, p.quarantined],
            )?;
            tx.execute(
                "UPDATE runs SET next_part = ?2, position = ?3, rows_extracted = rows_extracted + ?4, rows_deleted = rows_deleted + ?5, rows_quarantined = rows_quarantined + ?6, json_bytes = json_bytes + ?7 WHERE run_id = ?1",
                params![run_id, p.part + 1, position, p.rows, p.deleted, p.quarantined, json_bytes],
            )?;
            Ok(())
        })
    }

    pub fn parts(&self, run_id: &str) -> Result<Vec<PartRecord>> {
        self.with(|c| {
            c.query_map(
                "SELECT part, path, rows, deleted, bytes, sha256, quarantine_path, quarantined FROM run_parts WHERE run_id = ?1 ORDER BY part",
                params![run_id],
                |r| {
                    Ok(PartRecord {
                        part: r.get(0)?,
                        path: r.get(1)?,
                        rows: r.count(2)?,
                        deleted: r.count(3)?,
                        bytes: r.count(4)?,
                        sha256: r.get(5)?,
                        quarantine_path: r.get(6)?,
                        quarantined: r.count(7)?,
                    })
                },
            )
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

    /// Extraction finished and the manifest is written at `manifest` (which becomes the
    /// run's); `pending_cursor` waits for the load.
    pub fn mark_extracted<'a>(
        &self,
        run: impl Into<RunRef<'a>>,
        pending_cursor: Option<&str>,
        manifest: &str,
    ) -> Result<()> {
        let run = run.into();
        self.run_write(run, |tx| {
            tx.execute(
                "UPDATE runs SET status = ?3, pending_cursor = ?2, manifest = ?4 WHERE run_id = ?1",
                params![run.run_id, pending_cursor, RunStatus::Extracted, manifest],
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
                params![run.run_id, upserted, removed, table_rows, RunStatus::Loaded],
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
            let (connection, stream, pending): (String, String, Option<String>) = tx.query_opt(
                "SELECT connection, stream, pending_cursor FROM runs WHERE run_id = ?1",
                params![run_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?
            .ok_or_else(|| crate::error::Error::state(format!("no run `{run_id}` to commit")))?;
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

    pub fn abandon_run<'a>(&self, run: impl Into<RunRef<'a>>, why: &str) -> Result<()> {
        self.close_run(run, RunStatus::Abandoned, why)
    }

    /// Ends a run in a final `status` other than committed, saying why.
    pub fn close_run<'a>(
        &self,
        run: impl Into<RunRef<'a>>,
        status: RunStatus,
        why: &str,
    ) -> Result<()> {
        let run = run.into();
        self.run_write(run, |tx| {
            tx.execute(
                "UPDATE runs SET status = ?4, error = ?2, finished_at = ?3, owner_pid = NULL WHERE run_id = ?1",
                params![run.run_id, why, chrono::Utc::now().to_rfc3339(), status],
            )
            .map(|_| ())
        })
    }

    /// Forgets a stream's cursor and abandons its unfinished runs: the next run is a full
    /// snapshot.
    pub fn reset(&self, connection: &str, stream: &str) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM stream_state WHERE connection = ?1 AND stream = ?2",
                params![connection, stream],
            )?;
            let m = tx.execute(
                &format!("UPDATE runs SET status = ?3, error = 'state reset', owner_pid = NULL WHERE connection = ?1 AND stream = ?2 AND {UNFINISHED}"),
                params![connection, stream, RunStatus::Abandoned],
            )?;
            Ok(n + m > 0)
        })
    }

    pub fn stream_states(&self) -> Result<Vec<StreamState>> {
        self.with(|c| {
            c.query_map(
                "SELECT connection, stream, cursor, updated_at, last_run_id FROM stream_state ORDER BY connection, stream",
                params![],
                |r| {
                    Ok(StreamState {
                        connection: r.get(0)?,
                        stream: r.get(1)?,
                        cursor: r.get(2)?,
                        updated_at: r.get(3)?,
                        last_run_id: r.get(4)?,
                    })
                },
            )
        })
    }

    /// When the last committed run of `stream` on `connection` that reconciled deletes (a
    /// full snapshot or a key-set pass) started, if any.
    pub fn last_reconciled(&self, connection: &str, stream: &str) -> Result<Option<String>> {
        self.with(|c| {
            c.query_one(
                "SELECT MAX(started_at) FROM runs WHERE connection = ?1 AND stream = ?2 AND status = ?3 AND reconcile = 1",
                params![connection, stream, RunStatus::Committed],
                |r| r.get(0),
            )
        })
    }

    /// Stores what a run found (JSON of `run::RunReport`).
    pub fn set_run_report<'a>(&self, run: impl Into<RunRef<'a>>, report: &str) -> Result<()> {
        let run = run.into();
        self.run_write(run, |tx| {
            tx.execute(
                "UPDATE runs SET report = ?2 WHERE run_id = ?1",
                params![run.run_id, report],
            )
            .map(|_| ())
        })
    }

    /// The report (JSON of `run::RunReport`) of the newest run of `stream` on `connection`
    /// that has one, key-set passes aside.
    pub fn latest_report(&self, connection: &str, stream: &str) -> Result<Option<String>> {
        self.with(|c| {
            c.query_opt(
                "SELECT report FROM runs WHERE connection = ?1 AND stream = ?2 AND report IS NOT NULL AND kind != ?3 ORDER BY started_at DESC, run_id DESC LIMIT 1",
                params![connection, stream, RunKind::Keyset],
                |r| r.get(0),
            )
        })
    }

    /// The column set a stream's committed position was read with (see
    /// `tenant::columns_hash`); `None` before the first commit that recorded one.
    pub fn columns_hash(&self, connection: &str, stream: &str) -> Result<Option<String>> {
        self.with(|c| {
            c.query_opt(
                "SELECT columns_hash FROM stream_state WHERE connection = ?1 AND stream = ?2",
                params![connection, stream],
                |r| r.get::<Option<String>>(0),
            )
            .map(Option::flatten)
        })
    }

    /// Whether a worker holds `r` now: the lease it runs under is live (a run written without
    /// a lease: its process is alive on this host).
    pub fn run_held(&self, r: &RunRecord) -> Result<bool> {
        let Some(token) = r.lease_token else {
            return Ok(r.owner_pid.is_some_and(pid_alive));
        };
        let unit = super::leases::run_unit(&r.connection, &r.stream);
        self.with(|c| {
            c.query_one(
                "SELECT EXISTS (SELECT 1 FROM leases WHERE unit = ?1 AND token = ?2 AND expires_at > ?3)",
                params![unit, token, super::leases::now_ms()],
                |row| row.get(0),
            )
        })
    }

    /// The runs of `stream` (on any connection) extracted with a recorded manifest, after run
    /// `after`, oldest first: what the lake must hold for them.
    pub fn extracted_runs_after(&self, stream: &str, after: Option<&str>) -> Result<Vec<String>> {
        self.with(|c| {
            c.query_map(
                "SELECT run_id FROM runs WHERE stream = ?1 AND manifest IS NOT NULL AND (CAST(?2 AS TEXT) IS NULL OR run_id > ?2) ORDER BY run_id",
                params![stream, after],
                |r| r.get(0),
            )
        })
    }

    /// Run history, newest first, optionally for one stream.
    pub fn runs(&self, stream: Option<&str>, limit: usize) -> Result<Vec<RunRecord>> {
        self.with(|c| {
            c.query_map(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE (CAST(?1 AS TEXT) IS NULL OR stream = ?1) ORDER BY started_at DESC, run_id DESC LIMIT ?2"
                ),
                params![stream, limit],
                run_from_row,
            )
        })
    }
}
