//! The sink stage's tables: the ledger, its jobs, the audit, the flows' cursors over run
//! manifests, document lines and numbers, and the rules learned from a tenant's refusals.

use serde::Serialize;

use super::StateStore;
use super::db::{Db, Row, params};
use crate::error::Result;

/// The sink stage's tables. `sink_ledger`: which target record a source record became (the
/// idempotency map), and the target's own version of it right after our last write (so a flow
/// reading that target back knows that version for our echo, not someone's change). `sink_jobs`: one row per (flow, entity, source id, source version), keyed
/// by its hash, with the source record kept so `replay` needs no change set. `sink_audit`:
/// every write attempt, append-only, secrets never stored. `sink_cursor`: the last run of each
/// source stream a flow has consumed. (One apply or replay per flow at a time: `leases::sink_unit`.)
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
fn link_from_row(r: &Row, at: usize) -> Result<LedgerLink> {
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
    pub fence: Option<&'a super::leases::Lease>,
}

const AUDIT_COLUMNS: &str = "seq, at, flow, job_id, source_entity, source_id, source_version, target, action, method, request, status, target_key, ms, error";

fn audit_from_row(r: &Row) -> Result<AuditEntry> {
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
        ms: r.count(13)?,
        error: r.get(14)?,
    })
}

const JOB_COLUMNS: &str = "job_id, flow, source_entity, source_id, source_version, run_id, record, status, attempts, last_error, ambiguous, created_at, updated_at";

fn job_from_row(r: &Row) -> Result<SinkJob> {
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
fn insert_audit(tx: &mut Db, now: &str, a: &AuditEntry) -> Result<()> {
    tx.execute(
        "INSERT INTO sink_audit (at, flow, job_id, source_entity, source_id, source_version, target, action, method, request, status, target_key, ms, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![now, a.flow, a.job_id, a.source_entity, a.source_id, a.source_version, a.target, a.action, a.method, a.request, a.status, a.target_key, a.ms, a.error],
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
            c.query_opt(
                &format!("SELECT {LINK_COLUMNS} FROM sink_ledger WHERE flow = ?1 AND source_entity = ?2 AND source_id = ?3"),
                params![flow, source_entity, source_id],
                |r| link_from_row(r, 0),
            )
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
            c.query_opt(
                &format!("SELECT source_id, {LINK_COLUMNS} FROM sink_ledger WHERE flow = ?1 AND source_entity = ?2 AND target_key = ?3 ORDER BY updated_at DESC LIMIT 1"),
                params![flow, source_entity, target_key],
                |r| Ok((r.get(0)?, link_from_row(r, 1)?)),
            )
        })
    }

    /// What one job attempt ended with, committed in one transaction: its audit entries, the
    /// ledger link of a successful write, and the job's new status (one fsync per job, and a
    /// crash never leaves a link without its audit).
    pub fn sink_commit(&self, f: &JobFinish<'_>) -> Result<()> {
        let now = chrono::Utc::now().to_rfc3339();
        self.write(|tx| {
            if let Some(lease) = f.fence {
                super::leases::check_token(tx, &lease.unit, lease.token)?;
            }
            for a in f.audits {
                insert_audit(tx, &now, a)?;
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
                    "UPDATE sink_ledger SET source_version = CASE WHEN source_version > ?4 THEN source_version ELSE ?4 END, updated_at = ?5 WHERE flow = ?1 AND source_entity = ?2 AND source_id = ?3",
                    params![e.flow, e.source_entity, e.source_id, e.version, now],
                )?;
            }
            if let Some(job_id) = f.job_id {
                tx.execute(
                    "UPDATE sink_jobs SET status = ?2, last_error = ?3, ambiguous = ?4, attempts = attempts + ?5, updated_at = ?6 WHERE job_id = ?1",
                    params![job_id, f.status, f.error, f.ambiguous, f.attempted, now],
                )?;
            }
            Ok(())
        })
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
            c.query_opt(
                "SELECT run_id FROM sink_deleted WHERE flow = ?1 AND mapping = ?2 AND source_id = ?3",
                params![flow, mapping, source_id],
                |r| r.get(0),
            )
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
            c.query_map(
                "SELECT hub, field, reason, learned_at FROM sink_rules WHERE connection = ?1 ORDER BY hub, field",
                params![connection],
                |r| {
                Ok(LearnedRule {
                    hub: r.get(0)?,
                    field: r.get(1)?,
                    reason: r.get(2)?,
                    learned_at: r.get(3)?,
                })
            },
            )
        })
    }

    /// Forgets the learned rules of `connection` (the tenant was changed); returns how many.
    pub fn sink_forget_rules(&self, connection: &str) -> Result<usize> {
        self.with(|c| {
            c.execute(
                "DELETE FROM sink_rules WHERE connection = ?1",
                params![connection],
            )
            .map(|n| n as usize)
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
        self.write(|tx| {
            tx.execute(
                "DELETE FROM sink_ledger WHERE flow = ?1 AND source_entity = ?2 AND source_id = ?3",
                params![flow, source_entity, source_id],
            )?;
            insert_audit(tx, &now, audit)?;
            tx.execute(
                "UPDATE sink_jobs SET status = ?2, last_error = NULL, ambiguous = 0, updated_at = ?3 WHERE job_id = ?1",
                params![job_id, JobStatus::Planned, now],
            )?;
            Ok(())
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
            c.query_opt(
                "SELECT record FROM sink_jobs WHERE flow = ?1 AND source_entity = ?2 AND source_id = ?3 ORDER BY source_version DESC, created_at DESC LIMIT 1",
                params![flow, mapping, source_id],
                |r| r.get(0),
            )
        })
    }

    /// The live lines of a parent record (as JSON text), in line id order.
    pub fn sink_lines(&self, flow: &str, mapping: &str, parent_id: &str) -> Result<Vec<String>> {
        self.with(|c| {
            c.query_map(
                "SELECT record FROM sink_lines WHERE flow = ?1 AND mapping = ?2 AND parent_id = ?3 AND deleted = 0 ORDER BY length(line_id), line_id",
                params![flow, mapping, parent_id],
                |r| r.get(0),
            )
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
            c.query_one(
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
            c.query_opt(
                "SELECT record FROM sink_jobs WHERE flow = ?1 AND source_entity = ?2 AND source_id = ?3 AND source_version IS NOT DISTINCT FROM ?4 AND status = ?5 ORDER BY created_at DESC LIMIT 1",
                params![flow, mapping, source_id, version, JobStatus::Applied],
                |r| r.get(0),
            )
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
        self.write(|tx| {
            let have: Option<String> = tx.query_opt(
                "SELECT number FROM sink_numbers WHERE flow = ?1 AND mapping = ?2 AND source_id = ?3",
                params![flow, mapping, source_id],
                |r| r.get(0),
            )?;
            if let Some(n) = have.filter(|_| !renumber) {
                return Ok(n);
            }
            let last: i64 = tx.query_one(
                "SELECT COALESCE(MAX(seq), 0) FROM sink_numbers WHERE flow = ?1 AND mapping = ?2 AND prefix = ?3",
                params![flow, mapping, prefix],
                |r| r.get(0),
            )?;
            let seq = last.max(0) as u64 + 1;
            let number = render(seq);
            tx.execute(
                "INSERT INTO sink_numbers (flow, mapping, source_id, prefix, seq, number) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (flow, mapping, source_id) DO UPDATE SET prefix = excluded.prefix, seq = excluded.seq, number = excluded.number",
                params![flow, mapping, source_id, prefix, seq, number],
            )?;
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
        self.write(|tx| {
            let mut new = std::collections::HashSet::new();
            let insert = format!(
                "INSERT INTO sink_jobs ({JOB_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) ON CONFLICT DO NOTHING"
            );
            for j in jobs {
                if tx.execute(&insert, params![j.job_id, j.flow, j.source_entity, j.source_id, j.source_version, j.run_id, j.record, j.status, j.attempts, j.last_error, j.ambiguous, j.created_at, j.updated_at])? > 0 {
                    new.insert(j.job_id);
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
                     ON CONFLICT (flow, mapping, source_id) DO UPDATE SET run_id = CASE WHEN sink_deleted.run_id > excluded.run_id THEN sink_deleted.run_id ELSE excluded.run_id END",
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
            Ok(new)
        })
    }

    /// Every link of a flow, ordered by source entity and id.
    pub fn sink_links(&self, flow: &str) -> Result<Vec<(String, String, LedgerLink)>> {
        self.with(|c| {
            c.query_map(
                &format!(
                "SELECT source_entity, source_id, {LINK_COLUMNS} FROM sink_ledger WHERE flow = ?1 ORDER BY source_entity, source_id"
            ),
                params![flow],
                |r| {
                Ok((r.get(0)?, r.get(1)?, link_from_row(r, 2)?))
            },
            )
        })
    }

    /// A job by id.
    pub fn sink_job(&self, job_id: &str) -> Result<Option<SinkJob>> {
        self.with(|c| {
            c.query_opt(
                &format!("SELECT {JOB_COLUMNS} FROM sink_jobs WHERE job_id = ?1"),
                params![job_id],
                job_from_row,
            )
        })
    }

    /// Jobs of a flow, optionally only those in `status`, oldest first.
    pub fn sink_jobs(&self, flow: &str, status: Option<JobStatus>) -> Result<Vec<SinkJob>> {
        self.with(|c| {
            let order = c.backend().insertion_order();
            c.query_map(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM sink_jobs WHERE flow = ?1 AND (CAST(?2 AS TEXT) IS NULL OR status = ?2) ORDER BY created_at, {order}"
                ),
                params![flow, status],
                job_from_row,
            )
        })
    }

    /// (source id, run id) of a mapping's jobs not applied yet (planned, failed, waiting,
    /// blocked): the records a later delete must stop.
    pub fn sink_open_jobs(&self, flow: &str, mapping: &str) -> Result<Vec<(String, String)>> {
        self.with(|c| {
            c.query_map(
                "SELECT source_id, run_id FROM sink_jobs WHERE flow = ?1 AND source_entity = ?2 AND status <> ?3",
                params![flow, mapping, JobStatus::Applied],
                |r| {
                Ok((r.get(0)?, r.get(1)?))
            },
            )
        })
    }

    /// The audit of a flow (or of one job), oldest first.
    pub fn sink_audit_entries(&self, flow: &str, job_id: Option<&str>) -> Result<Vec<AuditEntry>> {
        self.with(|c| {
            c.query_map(
                &format!(
                "SELECT {AUDIT_COLUMNS} FROM sink_audit WHERE flow = ?1 AND (CAST(?2 AS TEXT) IS NULL OR job_id = ?2) ORDER BY seq"
            ),
                params![flow, job_id],
                audit_from_row,
            )
        })
    }

    /// The last run of `stream` the flow has consumed.
    pub fn sink_cursor(&self, flow: &str, stream: &str) -> Result<Option<String>> {
        self.with(|c| {
            c.query_opt(
                "SELECT last_run_id FROM sink_cursor WHERE flow = ?1 AND stream = ?2",
                params![flow, stream],
                |r| r.get(0),
            )
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
            c.query_map(
                &format!("SELECT {AUDIT_COLUMNS} FROM sink_audit WHERE seq > ?1 ORDER BY seq"),
                params![seq],
                audit_from_row,
            )
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
