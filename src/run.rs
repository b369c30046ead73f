//! One run of one stream, end to end (DESIGN.md §6):
//! read state → fetch pages → decode → Parquet parts (checkpointed) → `_manifest.json` →
//! warehouse merge → commit the cursor. Each step records its completion in the state store, so
//! a run interrupted anywhere (crash, `kill -9`, network loss) is resumed by the next `mlc sync`
//! of the same stream: from its last part while extracting, from its manifest once extracted.
//!
//! Pipeline: a fetch task runs ahead of decoding (bounded channel), pages are decoded on two
//! blocking threads in order, and Parquet encoding runs on a third, so fetch, decode and encode
//! overlap and memory is bounded by a few pages plus one part, never by the table.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use futures::StreamExt;
use object_store::path::Path as ObjPath;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::batches::{DecodedPage, Quarantined, RowDecoder};
use crate::config::{Config, Connection};
use crate::connect::Runtimes;
use crate::error::{Error, Result};
use crate::http::Endpoint;
use crate::lake::{Lake, Manifest, PartInfo, PartWriter, RunKind, sha256_hex};
use crate::lease::{LeaseGuard, run_unit};
use crate::loaders::warehouse::Warehouse;
use crate::schema::schema_hash;
use crate::spec::live::LiveEntity;
use crate::spec::{Definitions, Incremental, Reconcile, Stream};
use crate::state::{PartRecord, RunRecord, RunStatus, StateStore};
use crate::streams::{self, Page, ReadMode};
use crate::tenant::{self, Reconciled, SchemaReport};
use crate::vault::Vault;

/// Pages decoded at the same time.
const DECODE_PARALLELISM: usize = 2;
/// Pages fetched ahead of the decoder.
const PREFETCH_PAGES: usize = 2;

/// Everything a run needs, opened once per command.
pub struct Context {
    pub config: Config,
    pub defs: Definitions,
    pub state: Arc<StateStore>,
    pub lake: Lake,
    pub warehouse: Arc<Warehouse>,
    pub vault: Vault,
    /// The shared runtime (token, limits) of each connection.
    pub runtimes: Runtimes,
    /// Progress bars on a terminal (`None` when stderr is not a TTY: logs only).
    pub progress: Option<indicatif::MultiProgress>,
}

impl Context {
    pub fn open(config: Config) -> Result<Self> {
        let defs = Definitions::load(Some(&config.definitions_dir))?;
        let state = Arc::new(StateStore::for_location(&config.state_location())?);
        let lake = Lake::open(&config.lake_url, &config.dir)?;
        let warehouse = Arc::new(Warehouse::open(&config.warehouse)?);
        let vault = Vault::new(&config.vault);
        Ok(Self {
            config,
            defs,
            state,
            lake,
            warehouse,
            runtimes: Runtimes::new(vault.clone()),
            vault,
            progress: None,
        })
    }

    /// The streams `conn` runs, restricted to `patterns` when given.
    pub fn streams_for(&self, conn: &Connection, patterns: &[String]) -> Result<Vec<&Stream>> {
        let mine = self.defs.select(&conn.streams)?;
        if patterns.is_empty() {
            return Ok(mine);
        }
        let wanted = self.defs.select(patterns)?;
        Ok(mine
            .into_iter()
            .filter(|s| wanted.iter().any(|w| w.id == s.id))
            .collect())
    }
}

/// What the user asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum RunRequest {
    /// Continue from the committed state (`full` forces a snapshot with delete reconciliation).
    Sync { full: bool },
    /// Re-read a window of the cursor column without touching the committed state. No window =
    /// the whole table, which also reconciles deletes.
    Backfill {
        since: Option<String>,
        until: Option<String>,
    },
}

/// How a run ended, as its summary says (a failed run has no summary: it is an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Extracted and loaded.
    #[default]
    Ok,
    /// The tenant does not have the entity: nothing read, not a failure.
    Absent,
    /// Another worker is running the stream: left to it, not a failure.
    Held,
}

crate::names::stored_by_name!(RunOutcome, "run outcome", {
    Ok => "ok",
    Absent => "absent",
    Held => "held",
});

/// What a run did, for the summary table and `--json` output.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RunSummary {
    pub stream: String,
    pub connection: String,
    pub run_id: String,
    pub kind: RunKind,
    pub status: RunOutcome,
    pub rows_extracted: u64,
    pub upserted: u64,
    pub deleted: u64,
    pub quarantined: u64,
    pub table_rows: u64,
    pub json_bytes: u64,
    pub seconds: f64,
    /// How the tenant differs from the catalog (absent columns, new columns).
    pub schema: SchemaReport,
    /// Values that did not fit their column, per column: the rows landed with the column
    /// NULL and the value kept in `_ml_extra`.
    pub drift: BTreeMap<String, u64>,
    /// When deletes were last reconciled for a stream without a delete feed (a full snapshot
    /// or a key-set pass), if ever.
    pub last_keyset: Option<String>,
    /// Things the user should know (resumed, re-snapshot after an expired token, …).
    pub notes: Vec<String>,
}

/// What a run found, kept with it in the run history (`runs.report`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunReport {
    #[serde(default)]
    pub schema: SchemaReport,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub drift: BTreeMap<String, u64>,
}

impl RunReport {
    fn of(run: &RunRecord) -> Self {
        run.report
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
            .unwrap_or_default()
    }

    fn store(&self, ctx: &Context, run: &RunRecord) -> Result<()> {
        let json = serde_json::to_string(self)
            .map_err(|e| Error::state_from(format!("run report of {}", run.run_id), e))?;
        ctx.state.set_run_report(run, &json)
    }
}

/// How often one stream run may learn, from the tenant's own errors, that a field it requested
/// does not exist before the run gives up (each refused field is requested no more).
const MAX_REFUSED_FIELDS: usize = 20;

/// A key-set pass costing at most this many pages runs with every incremental run: tables of a
/// few thousand rows (customers, items, firms, persons) lose deleted rows within one run for a
/// handful of requests. Larger tables are reconciled every `reconcile_every_hours`.
pub const KEYSET_EVERY_RUN_PAGES: u64 = 10;

/// Runs (or resumes) one stream of one connection as its tenant has it (see `tenant`); then,
/// for streams whose source has no delete feed (`reconcile = "keyset"`) or that have computed
/// columns, a projected pass over every key when one is due.
///
/// An entity the tenant does not have is reported `absent`, not failed. A field the tenant
/// refuses (its metadata was stale or unreadable) is remembered and the run retried without
/// it.
pub async fn run_stream(
    ctx: &Context,
    conn: &Connection,
    stream: &Stream,
    req: &RunRequest,
) -> Result<RunSummary> {
    // Held until the run ends: no other worker runs this stream meanwhile. A stream another
    // worker runs is left to it (several workers may be given the same list of streams).
    let lease = match LeaseGuard::acquire(
        &ctx.state,
        &run_unit(&conn.name, &stream.id.to_string()),
        ctx.config.state_lease,
    ) {
        Ok(lease) => lease,
        Err(held @ Error::Held { .. }) => {
            tracing::info!(stream = %stream.id, connection = %conn.name, "{held}");
            return Ok(RunSummary {
                stream: stream.id.to_string(),
                connection: conn.name.clone(),
                status: RunOutcome::Held,
                notes: vec![held.to_string()],
                ..RunSummary::default()
            });
        }
        Err(e) => return Err(e),
    };
    let token = Some(lease.lease().token);
    let ep = ctx.runtimes.endpoint(conn)?;
    let mut live = tenant::live(&ctx.state, conn, &ep, stream, false).await?;
    let mut refused = 0;
    loop {
        let rec = tenant::reconcile(&ctx.state, &conn.name, stream, Some(&live))?;
        if let Some(reason) = &rec.report.entity_absent {
            return absent(ctx, conn, stream, reason, token);
        }
        match run_reconciled(ctx, conn, &rec, &ep, req, token).await {
            // Where the tenant publishes no metadata for the entity, its refusal to list it at
            // all (403: a module not licensed, a ledger the API user's role cannot see) is
            // absence. A 404 stays a failure: a wrong path or setting is likelier than a
            // missing module, and it must not pass silently.
            Err(e @ Error::Http { status: 403, .. })
                if matches!(
                    live.entity,
                    LiveEntity::Unlisted | LiveEntity::Unknown { .. }
                ) && nothing_read(ctx, conn, stream)? =>
            {
                let reason = format!(
                    "the tenant refuses to list it ({e}): the module is not licensed or the API user's role cannot read it"
                );
                return absent(ctx, conn, stream, &reason, token);
            }
            Err(e) if refused < MAX_REFUSED_FIELDS => {
                let Some(field) = tenant::refused_field(&e) else {
                    return Err(e);
                };
                tracing::warn!(stream = %stream.id, field = %field, "the tenant has no field `{field}`: reading the stream without it");
                tenant::remember_refused(&ctx.state, &conn.name, stream, &mut live, &field)?;
                // Its position was read with the refused field: start over without it.
                if let Some(open) = ctx.state.open_run(&conn.name, &stream.id.to_string())? {
                    ctx.state.abandon_run(
                        open.run_id.as_str(),
                        &format!("the tenant has no field `{field}`"),
                    )?;
                }
                refused += 1;
            }
            other => return other,
        }
    }
}

/// Whether `stream` has never landed a row on `conn` and its unfinished run (if any) has read
/// nothing: a refusal then means the entity is not there, not that a read broke midway.
fn nothing_read(ctx: &Context, conn: &Connection, stream: &Stream) -> Result<bool> {
    let sid = stream.id.to_string();
    if ctx.state.cursor(&conn.name, &sid)?.is_some() {
        return Ok(false);
    }
    Ok(ctx
        .state
        .open_run(&conn.name, &sid)?
        .is_none_or(|r| r.rows_extracted == 0 && r.next_part == 0))
}

/// The summary (and run history entry) of a stream whose entity the tenant does not have. An
/// unfinished run of the stream is closed as absent too.
fn absent(
    ctx: &Context,
    conn: &Connection,
    stream: &Stream,
    reason: &str,
    token: Option<i64>,
) -> Result<RunSummary> {
    if let Some(open) = ctx.state.open_run(&conn.name, &stream.id.to_string())? {
        ctx.state
            .close_run(open.run_id.as_str(), RunStatus::Absent, reason)?;
    }
    let mut run = RunRecord::new(
        &new_run_id(),
        &conn.name,
        &stream.id.to_string(),
        RunKind::Absent,
        false,
        &schema_hash(&stream.catalog),
        None,
    );
    run.lease_token = token;
    ctx.state.begin_run(&run)?;
    let report = RunReport {
        schema: SchemaReport {
            entity_absent: Some(reason.to_string()),
            ..SchemaReport::default()
        },
        drift: BTreeMap::new(),
    };
    report.store(ctx, &run)?;
    ctx.state.close_run(&run, RunStatus::Absent, reason)?;
    tracing::warn!(stream = %stream.id, connection = %conn.name, "absent in tenant: {reason}");
    Ok(RunSummary {
        stream: stream.id.to_string(),
        connection: conn.name.clone(),
        run_id: run.run_id,
        kind: RunKind::Absent,
        status: RunOutcome::Absent,
        schema: report.schema,
        notes: vec![format!("absent in tenant: {reason}")],
        ..RunSummary::default()
    })
}

/// [`run_stream`] once the stream is reconciled with its tenant.
async fn run_reconciled(
    ctx: &Context,
    conn: &Connection,
    rec: &Reconciled,
    ep: &Endpoint,
    req: &RunRequest,
    token: Option<i64>,
) -> Result<RunSummary> {
    let stream = &rec.stream;
    let mut notes = Vec::new();
    let run = prepare_run(ctx, conn, rec, req, token, &mut notes)?;
    let mut report = RunReport::of(&run);
    report.schema = rec.report.clone();
    report.store(ctx, &run)?;
    let mut summary = drive(ctx, conn, stream, ep, run, notes).await?;
    // A snapshot reconciles by itself; backfills never touch deletes.
    if summary.kind == RunKind::Incremental
        && projected_pass_due(ctx, conn, stream, summary.table_rows)?
    {
        let reconcile = stream.spec.reconcile == Some(Reconcile::Keyset)
            || keyset_requested(ctx, conn, stream)?;
        tracing::info!(stream = %stream.id, reconcile, "projected pass: reading every key (and computed column)");
        let projected = projected(stream);
        let run = new_run(
            ctx,
            conn,
            &projected,
            RunKind::Keyset,
            reconcile,
            None,
            None,
            token,
        )?;
        let ks = drive(ctx, conn, stream, ep, run, Vec::new()).await?;
        summary.deleted += ks.deleted;
        summary.table_rows = ks.table_rows;
        summary.seconds += ks.seconds;
        let computed: Vec<&str> = projected
            .catalog
            .columns
            .iter()
            .filter(|c| c.computed)
            .map(|c| c.name.as_str())
            .collect();
        summary.notes.push(match (reconcile, computed.is_empty()) {
            (true, true) => format!(
                "key-set reconciliation ({} keys read, {} deleted)",
                ks.rows_extracted, ks.deleted
            ),
            (true, false) => format!(
                "key-set reconciliation and computed columns re-read ({}; {} keys read, {} deleted)",
                computed.join(", "),
                ks.rows_extracted,
                ks.deleted
            ),
            (false, _) => format!(
                "computed columns re-read ({}; {} rows)",
                computed.join(", "),
                ks.rows_extracted
            ),
        });
    }
    summary.schema = rec.report.clone();
    summary.notes.extend(rec.report.run_lines());
    if !summary.drift.is_empty() {
        summary.notes.push(format!(
            "type drift kept in _ml_extra: {}",
            summary
                .drift
                .iter()
                .map(|(c, n)| format!("{c} ({n})"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if stream.spec.reconcile == Some(Reconcile::Keyset) {
        summary.last_keyset = ctx
            .state
            .last_reconciled(&conn.name, &stream.id.to_string())?;
    }
    Ok(summary)
}

/// The stream a projected pass reads: the key columns, the columns the reader supplies and
/// the computed columns. Everything else the source sends with them is dropped.
pub fn projected(stream: &Stream) -> Stream {
    let mut s = stream.clone();
    let keys = &stream.catalog.primary_key;
    s.catalog.columns.retain(|c| {
        keys.contains(&c.name) || c.context_name().is_some() || (c.computed && !c.absent)
    });
    s
}

/// Whether `stream` needs a projected pass after an incremental run: it has computed columns
/// (re-read every run), or it has no delete feed and a key-set pass is due — every run while
/// the table is small enough that the pass costs at most [`KEYSET_EVERY_RUN_PAGES`] pages,
/// otherwise when nothing reconciled it within the connection's `reconcile_every_hours` —
/// or a change notice asked for one ([`keyset_requested`]).
fn projected_pass_due(
    ctx: &Context,
    conn: &Connection,
    stream: &Stream,
    table_rows: u64,
) -> Result<bool> {
    if stream.spec.incremental == Incremental::Full {
        return Ok(false);
    }
    if stream.has_computed() || keyset_requested(ctx, conn, stream)? {
        return Ok(true);
    }
    if stream.spec.reconcile != Some(Reconcile::Keyset) {
        return Ok(false);
    }
    if table_rows <= KEYSET_EVERY_RUN_PAGES * u64::from(stream.page_size().max(1)) {
        return Ok(true);
    }
    let last = ctx
        .state
        .last_reconciled(&conn.name, &stream.id.to_string())?;
    let Some(last) = last.and_then(|l| chrono::DateTime::parse_from_rfc3339(&l).ok()) else {
        return Ok(true);
    };
    let age_hours =
        (chrono::Utc::now() - last.with_timezone(&chrono::Utc)).num_seconds() as f64 / 3600.0;
    Ok(age_hours >= conn.reconcile_every_hours())
}

/// Whether a change notice (a Business Central `deleted`, see `systems::business_central::webhook`) asked
/// for a key-set pass that no reconciling run has answered yet: deletes are invisible to a
/// cursor read, so the pass runs whatever the table size or `reconcile_every_hours`.
fn keyset_requested(ctx: &Context, conn: &Connection, stream: &Stream) -> Result<bool> {
    let sid = stream.id.to_string();
    let last = ctx.state.last_reconciled(&conn.name, &sid)?;
    ctx.state
        .keyset_requested(&conn.name, &sid, last.as_deref())
}

/// Takes one run from wherever it stands (running, extracted, loaded) to committed.
async fn drive(
    ctx: &Context,
    conn: &Connection,
    stream: &Stream,
    ep: &Endpoint,
    mut run: RunRecord,
    mut notes: Vec<String>,
) -> Result<RunSummary> {
    let started = Instant::now();
    let ep = ep.clone();
    // A projected pass reads (and loads) only keys and computed columns.
    let projected_stream;
    let stream = if run.kind == RunKind::Keyset {
        projected_stream = projected(stream);
        &projected_stream
    } else {
        stream
    };
    let span = tracing::info_span!("run", stream = %stream.id, connection = %conn.name, run_id = %run.run_id);
    use tracing::Instrument;
    async move {
    if run.status == RunStatus::Running {
        match extract(ctx, conn, stream, &ep, &run).await {
            Ok(()) => {}
            Err(Error::DeltaExpired { message, .. }) => {
                tracing::warn!(
                    stream = %stream.id,
                    "DELTA TOKEN EXPIRED ({message}): re-reading the whole table; rows missing from the new snapshot will be marked deleted"
                );
                notes.push("delta token expired: re-snapshot with delete reconciliation".into());
                ctx.state.abandon_run(&run, "delta token expired")?;
                run = new_run(
                    ctx,
                    conn,
                    stream,
                    RunKind::Snapshot,
                    true,
                    None,
                    None,
                    run.lease_token,
                )?;
                extract(ctx, conn, stream, &ep, &run).await?;
            }
            Err(e @ Error::Http { status: 400..=499, .. }) if run.position.is_some() && e.status() != Some(429) => {
                tracing::warn!(
                    stream = %stream.id,
                    "the saved paging position was refused ({e}); restarting the read from the beginning"
                );
                notes.push("saved paging position expired: read restarted".into());
                ctx.state.abandon_run(&run, "paging position refused")?;
                let (kind, reconcile, cursor_start, window) = (
                    run.kind,
                    run.reconcile,
                    run.cursor_start.clone(),
                    run.window.clone(),
                );
                run = new_run(
                    ctx,
                    conn,
                    stream,
                    kind,
                    reconcile,
                    cursor_start,
                    window,
                    run.lease_token,
                )?;
                extract(ctx, conn, stream, &ep, &run).await?;
            }
            Err(e) => {
                ctx.state.note_error(&run, &e.to_string())?;
                return Err(e);
            }
        }
        run = reload(ctx, &run.run_id)?;
    }

    if run.status == RunStatus::Extracted {
        match load(ctx, stream, &run).await {
            Ok(note) => notes.extend(note),
            Err(e) => {
                ctx.state.note_error(&run, &e.to_string())?;
                return Err(e);
            }
        }
        run = reload(ctx, &run.run_id)?;
    }
    if run.status == RunStatus::Loaded {
        // Backfills and key-set passes never move the stream's cursor.
        ctx.state
            .commit_run(
                &run,
                (!matches!(run.kind, RunKind::Backfill | RunKind::Keyset))
                    .then(|| tenant::columns_hash(stream))
                    .as_deref(),
            )?;
        run = reload(ctx, &run.run_id)?;
    }
    Ok(RunSummary {
        stream: stream.id.to_string(),
        connection: conn.name.clone(),
        run_id: run.run_id.clone(),
        kind: run.kind,
        status: RunOutcome::Ok,
        drift: RunReport::of(&run).drift,
        rows_extracted: run.rows_extracted,
        upserted: run.rows_upserted,
        deleted: run.rows_removed,
        quarantined: run.rows_quarantined,
        table_rows: run.table_rows,
        json_bytes: run.json_bytes,
        seconds: started.elapsed().as_secs_f64(),
        notes,
        ..RunSummary::default()
    })
    }
    .instrument(span)
    .await
}

fn reload(ctx: &Context, run_id: &str) -> Result<RunRecord> {
    ctx.state
        .run(run_id)?
        .ok_or_else(|| Error::state(format!("run {run_id} vanished from the state store")))
}

/// A new run id: sortable UTC time plus randomness.
pub fn new_run_id() -> String {
    format!(
        "{}-{:06x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%3fZ"),
        rand::random::<u32>() & 0xff_ffff
    )
}

// A run's stream and connection, kind, start and window, and the lease it runs under.
#[allow(clippy::too_many_arguments)]
fn new_run(
    ctx: &Context,
    conn: &Connection,
    stream: &Stream,
    kind: RunKind,
    reconcile: bool,
    cursor_start: Option<String>,
    window: Option<String>,
    token: Option<i64>,
) -> Result<RunRecord> {
    let mut r = RunRecord::new(
        &new_run_id(),
        &conn.name,
        &stream.id.to_string(),
        kind,
        reconcile,
        &schema_hash(&stream.catalog),
        cursor_start,
    );
    r.window = window;
    r.lease_token = token;
    ctx.state.begin_run(&r)?;
    Ok(r)
}

/// Finds the run to continue, or starts the one the request calls for. A stream whose column
/// set changed since its position was committed (a column new in the tenant or the catalog, or
/// one the tenant dropped) is read whole again, so existing rows get the new columns' values.
fn prepare_run(
    ctx: &Context,
    conn: &Connection,
    rec: &Reconciled,
    req: &RunRequest,
    token: Option<i64>,
    notes: &mut Vec<String>,
) -> Result<RunRecord> {
    let stream = &rec.stream;
    let sid = stream.id.to_string();
    let window = match req {
        RunRequest::Backfill { since, until } => Some(format!(
            "{}..{}",
            since.as_deref().unwrap_or(""),
            until.as_deref().unwrap_or("")
        )),
        RunRequest::Sync { .. } => None,
    };
    // The caller holds the stream's lease: an unfinished run belongs to a worker that is gone
    // or fenced out, and is continued here.
    if let Some(mut open) = ctx.state.open_run(&conn.name, &sid)? {
        let resume = if open.schema_hash != schema_hash(&stream.catalog) {
            tracing::warn!(stream = %sid, run_id = %open.run_id, "the catalog changed since this run started; starting over");
            ctx.state
                .abandon_run(open.run_id.as_str(), "catalog changed")?;
            false
        } else if open.kind == RunKind::Backfill {
            // Backfills never move state: dropping an unfinished one loses nothing.
            let same = matches!(req, RunRequest::Backfill { .. }) && open.window == window;
            if !same {
                ctx.state.abandon_run(open.run_id.as_str(), "superseded")?;
            }
            same
        } else {
            match req {
                RunRequest::Sync { full: false } => true,
                // A full snapshot reconciles everything: an unfinished sync run adds nothing.
                RunRequest::Sync { full: true } => {
                    ctx.state
                        .abandon_run(open.run_id.as_str(), "superseded by a full sync")?;
                    false
                }
                RunRequest::Backfill { .. } => {
                    return Err(Error::Stopped(format!(
                        "{sid} has an unfinished {} run {}; run `mlc sync {sid}` to finish it first",
                        open.kind, open.run_id
                    )));
                }
            }
        };
        if resume {
            ctx.state.claim_run(&open.run_id, token)?;
            open.lease_token = token;
            notes.push(format!("resumed run {} ({})", open.run_id, open.status));
            tracing::info!(stream = %sid, run_id = %open.run_id, status = %open.status, "resuming an unfinished run");
            return Ok(open);
        }
    }
    let cursor = ctx.state.cursor(&conn.name, &sid)?;
    let columns_changed = cursor.is_some()
        && match ctx.state.columns_hash(&conn.name, &sid)? {
            Some(h) => h != tenant::columns_hash(stream),
            // Positions committed before column sets were recorded: re-read only when the
            // tenant adds columns (their values are not in the table yet).
            None => !rec.report.new_columns.is_empty(),
        };
    let (kind, reconcile) = match req {
        RunRequest::Backfill { since, until } => {
            (RunKind::Backfill, since.is_none() && until.is_none())
        }
        RunRequest::Sync { full } => match (stream.spec.incremental, &cursor, full) {
            (Incremental::Full, _, _) | (_, None, _) | (_, _, true) => (RunKind::Snapshot, true),
            _ if columns_changed => {
                tracing::warn!(stream = %sid, "the stream's column set changed since its last run: re-reading the whole table");
                notes.push(
                    "column set changed since the last run: the whole table was read again".into(),
                );
                (RunKind::Snapshot, true)
            }
            _ => (RunKind::Incremental, false),
        },
    };
    new_run(ctx, conn, stream, kind, reconcile, cursor, window, token)
}

/// What the run reads.
fn read_mode(stream: &Stream, run: &RunRecord) -> ReadMode {
    match run.kind {
        RunKind::Backfill => {
            let (since, until) = run
                .window
                .as_deref()
                .and_then(|w| w.split_once(".."))
                .map(|(s, u)| {
                    (
                        (!s.is_empty()).then(|| s.to_string()),
                        (!u.is_empty()).then(|| u.to_string()),
                    )
                })
                .unwrap_or((None, None));
            if since.is_none() && until.is_none() {
                ReadMode::Snapshot { track: false }
            } else {
                ReadMode::Window { since, until }
            }
        }
        RunKind::Incremental => ReadMode::Incremental {
            cursor: run.cursor_start.clone().unwrap_or_default(),
        },
        RunKind::Keyset => ReadMode::Keys,
        RunKind::Snapshot | RunKind::Absent => ReadMode::Snapshot {
            track: stream.spec.incremental == Incremental::Delta,
        },
    }
}

/// A decoded page with its resume position and end cursor.
type Decoded = (DecodedPage, Option<String>, Option<String>);

/// A part being filled.
struct OpenPart {
    writer: PartWriter,
    quarantined: Vec<Quarantined>,
    /// Values that did not fit their column, per column.
    drift: BTreeMap<String, u64>,
    json_bytes: u64,
    /// Resume position after the last page in the part.
    position: Option<String>,
    pages: usize,
}

/// Fetch → decode → parts → manifest. On return the run is `extracted`.
async fn extract(
    ctx: &Context,
    conn: &Connection,
    stream: &Stream,
    ep: &Endpoint,
    run: &RunRecord,
) -> Result<()> {
    let mode = read_mode(stream, run);
    let bar = ctx.progress.as_ref().map(|m| {
        let pb = m.add(indicatif::ProgressBar::new_spinner());
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {prefix:28} {human_pos:>10} rows  {msg}  {elapsed}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        pb.set_prefix(stream.id.to_string());
        pb.set_position(run.rows_extracted);
        pb.enable_steady_tick(std::time::Duration::from_millis(200));
        pb
    });
    let mut seen_bytes = run.json_bytes;
    let mut source = streams::open(stream, conn, ep, &mode, run.position.clone())?;
    let mut decoder = RowDecoder::new(stream, &conn.name, &run.run_id)?;
    if let Some(tz) = conn.naive_time_zone() {
        decoder = decoder.with_naive_time_zone(tz)?;
    }
    if run.kind == RunKind::Keyset {
        decoder = decoder.without_extra();
    }
    let decoder = Arc::new(decoder);
    let schema = decoder.schema();
    let part_target = ctx.config.sync.part_size_bytes;
    let cursor_col = (stream.spec.incremental == Incremental::Cursor)
        .then(|| stream.cursor_column().map(|c| c.name.clone()))
        .flatten();
    let mut cursor_max: Option<i64> = run
        .pending_cursor
        .as_deref()
        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
        .map(|t| t.timestamp_micros());

    // Fetch ahead of decoding.
    let (page_tx, page_rx) = mpsc::channel::<Result<Page>>(PREFETCH_PAGES);
    let fetcher = AbortOnDrop(tokio::spawn(async move {
        loop {
            let next = source.next_page().await;
            let stop = !matches!(next, Ok(Some(_)));
            let item = match next {
                Ok(Some(p)) => Ok(p),
                Ok(None) => break,
                Err(e) => Err(e),
            };
            if page_tx.send(item).await.is_err() || stop {
                break;
            }
        }
    }));
    // Decode in order, several pages at once, in a task of its own so decoding never waits
    // for the Parquet writer below.
    let (decoded_tx, mut decoded) = mpsc::channel::<Result<Decoded>>(DECODE_PARALLELISM);
    let stream_name = stream.id.to_string();
    let decoding = AbortOnDrop(tokio::spawn(async move {
        let pages =
            futures::stream::unfold(
                page_rx,
                |mut rx| async move { rx.recv().await.map(|p| (p, rx)) },
            );
        let mut out = Box::pin(
            pages
                .map(|page| {
                    let decoder = decoder.clone();
                    let stream_name = stream_name.clone();
                    async move {
                        let page = page?;
                        tokio::task::spawn_blocking(move || {
                            let out = decoder.decode_page_with(
                                &page.body,
                                &page.rows,
                                page.received_at_micros,
                                &page.context,
                            );
                            out.map(|d| (d, page.resume, page.end_cursor))
                        })
                        .await
                        .map_err(|e| Error::decode_from(stream_name, "decoder thread failed", e))?
                    }
                })
                .buffered(DECODE_PARALLELISM),
        );
        while let Some(item) = out.next().await {
            let stop = item.is_err();
            if decoded_tx.send(item).await.is_err() || stop {
                break;
            }
        }
    }));

    let mut part_no = run.next_part;
    let mut open: Option<OpenPart> = None;
    let mut end_cursor: Option<String> = None;
    let result: Result<()> = async {
        while let Some(item) = decoded.recv().await {
            let (page, resume, page_end) = item?;
            if page_end.is_some() {
                end_cursor = page_end;
            }
            let mut part = match open.take() {
                Some(p) => p,
                None => OpenPart {
                    writer: PartWriter::new(schema.clone())?,
                    quarantined: Vec::new(),
                    drift: BTreeMap::new(),
                    json_bytes: 0,
                    position: None,
                    pages: 0,
                },
            };
            part.json_bytes += page.json_bytes as u64;
            if let Some(pb) = &bar {
                seen_bytes += page.json_bytes as u64;
                pb.inc(page.batch.as_ref().map_or(0, |b| b.num_rows() as u64));
                pb.set_message(format!("{:.1} MB", seen_bytes as f64 / 1e6));
            }
            part.quarantined.extend(page.quarantined);
            for (c, n) in page.drift {
                *part.drift.entry(c).or_default() += n;
            }
            part.position = resume;
            part.pages += 1;
            if let Some(batch) = page.batch {
                if let Some(col) = &cursor_col
                    && let Some(arr) = batch.column_by_name(col)
                    && let Some(ts) = arr.as_primitive_opt::<TimestampMicrosecondType>()
                {
                    for v in ts.iter().flatten() {
                        cursor_max = Some(cursor_max.map_or(v, |m| m.max(v)));
                    }
                }
                let deleted = page.deleted as u64;
                part = tokio::task::spawn_blocking(move || {
                    part.writer.write(&batch, deleted).map(|_| part)
                })
                .await
                .map_err(|e| Error::lake("parquet", e))??;
            }
            if part.writer.buffered_bytes() >= part_target {
                flush_part(ctx, stream, run, part_no, part, cursor_max).await?;
                part_no += 1;
            } else {
                open = Some(part);
            }
        }
        if let Some(part) = open.take()
            && (part.writer.rows() > 0 || !part.quarantined.is_empty() || part_no == run.next_part)
        {
            flush_part(ctx, stream, run, part_no, part, cursor_max).await?;
        }
        Ok(())
    }
    .await;
    drop(decoded);
    drop(decoding);
    drop(fetcher);
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    result?;

    // Everything is durable: write the manifest, then hand over to the load.
    let parts = ctx.state.parts(&run.run_id)?;
    let run_now = reload(ctx, &run.run_id)?;
    let pending = match stream.spec.incremental {
        Incremental::Delta if run.kind != RunKind::Backfill => {
            let end = end_cursor.or_else(|| run_now.pending_cursor.clone());
            if end.is_none() && run.kind == RunKind::Snapshot {
                return Err(Error::decode(
                    stream.id.to_string(),
                    "the change-tracking read ended without an @odata.deltaLink: is change tracking enabled on this table?",
                ));
            }
            end
        }
        Incremental::Cursor if run.kind == RunKind::Keyset => None,
        Incremental::Cursor => {
            next_cursor(stream, &run.started_at, cursor_max).or(run.cursor_start.clone())
        }
        _ => None,
    };
    let manifest = Manifest {
        run_id: run.run_id.clone(),
        stream: stream.id.to_string(),
        connection: conn.name.clone(),
        kind: run.kind,
        reconcile: run.reconcile,
        schema_hash: run.schema_hash.clone(),
        started_at: run.started_at.clone(),
        finished_at: chrono::Utc::now().to_rfc3339(),
        rows: parts.iter().map(|p| p.rows).sum(),
        deleted: parts.iter().map(|p| p.deleted).sum(),
        quarantined: parts.iter().map(|p| p.quarantined).sum(),
        cursor_start: run.cursor_start.clone(),
        cursor_end: pending.clone(),
        files: parts
            .iter()
            .filter(|p| p.rows > 0)
            .map(|p| PartInfo {
                path: p.path.clone(),
                rows: p.rows,
                deleted: p.deleted,
                bytes: p.bytes,
                sha256: p.sha256.clone(),
            })
            .collect(),
        quarantine_files: parts
            .iter()
            .filter_map(|p| p.quarantine_path.clone())
            .collect(),
        ..Manifest::default()
    };
    let mut manifest = manifest;
    if manifest.quarantined > 0 {
        // Keys quarantined by this run are present, whatever a reconciling merge does.
        let (keys, unkeyed) = ctx
            .lake
            .quarantined_keys(&manifest.quarantine_files)
            .await?;
        manifest.quarantined_keys = keys;
        manifest.quarantined_unkeyed = unkeyed;
    }
    // A worker that lost its lease stops before the manifest, which the new owner writes; one
    // that loses it while writing writes under its own token's name, and only the owner's
    // manifest is recorded as the run's.
    ctx.state.check_lease(run)?;
    let written = ctx.lake.write_manifest(&manifest, run.lease_token).await?;
    ctx.state
        .mark_extracted(run, pending.as_deref(), written.as_ref())?;
    tracing::info!(stream = %stream.id, rows = manifest.rows, deleted = manifest.deleted, quarantined = manifest.quarantined, parts = manifest.files.len(), peak_rss_mib = peak_rss_mib().unwrap_or(0.0), "extracted");
    Ok(())
}

/// The position the next run of a cursor stream reads from (inclusively), given the newest
/// cursor value this run saw.
///
/// The lookback exists for rows stamped before a read but committed after it (long
/// transactions, replicas): they carry stamps close to the time of the read. So the next read
/// starts at `run start − lookback` when this run saw rows that recent, and just after the
/// newest value seen (`max + 1 µs`) when the table has been quiet for longer: a quiet table
/// re-reads nothing, an active one re-reads the lookback window.
fn next_cursor(stream: &Stream, started_at: &str, max_seen: Option<i64>) -> Option<String> {
    let max = max_seen?;
    let started = chrono::DateTime::parse_from_rfc3339(started_at)
        .map(|t| t.timestamp_micros())
        .unwrap_or(max);
    let safe = started - stream.lookback_seconds() as i64 * 1_000_000;
    let next = if max < safe { max + 1 } else { safe };
    chrono::DateTime::from_timestamp_micros(next)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

/// Encodes and uploads a part (and its quarantine), then checkpoints.
async fn flush_part(
    ctx: &Context,
    stream: &Stream,
    run: &RunRecord,
    part_no: u32,
    part: OpenPart,
    cursor_max: Option<i64>,
) -> Result<()> {
    let rows = part.writer.rows();
    let deleted = part.writer.deleted();
    let (bytes, sha) = tokio::task::spawn_blocking(move || {
        let bytes = part.writer.finish()?;
        let sha = sha256_hex(&bytes);
        Ok::<_, Error>((bytes, sha))
    })
    .await
    .map_err(|e| Error::lake("parquet", e))??;
    let path = Lake::part_path(&stream.id, &run.run_id, part_no, run.lease_token);
    let size = bytes.len() as u64;
    if rows > 0 {
        ctx.lake.put(&path, bytes).await?;
    }
    let quarantine_path = if part.quarantined.is_empty() {
        None
    } else {
        for q in &part.quarantined {
            tracing::warn!(stream = %stream.id, key = q.key.as_deref().unwrap_or("?"), "quarantined a record: {}", q.reason);
        }
        Some(
            ctx.lake
                .put_quarantine(
                    &stream.id,
                    &run.run_id,
                    (part_no, run.lease_token),
                    &part.quarantined,
                )
                .await?
                .to_string(),
        )
    };
    if let Some(m) = cursor_max.and_then(chrono::DateTime::from_timestamp_micros) {
        ctx.state.set_pending_cursor(run, &m.to_rfc3339())?;
    }
    ctx.state.record_part(
        run,
        &PartRecord {
            part: part_no,
            path: path.to_string(),
            rows,
            deleted,
            bytes: if rows > 0 { size } else { 0 },
            sha256: if rows > 0 { sha } else { String::new() },
            quarantine_path,
            quarantined: part.quarantined.len() as u64,
        },
        part.position.as_deref(),
        part.json_bytes,
    )?;
    if !part.drift.is_empty() {
        let mut report = RunReport::of(&reload(ctx, &run.run_id)?);
        for (c, n) in &part.drift {
            *report.drift.entry(c.clone()).or_default() += n;
        }
        report.store(ctx, run)?;
    }
    tracing::debug!(stream = %stream.id, part = part_no, rows, pages = part.pages, "part written");
    Ok(())
}

/// Peak resident memory of this process so far, in MiB (Linux; `None` elsewhere). Logged at
/// stage boundaries so memory regressions show up in ordinary logs.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Merges an extracted run into the warehouse. Returns a note when a reconciling run deleted
/// nothing because it quarantined records whose keys it could not read.
async fn load(ctx: &Context, stream: &Stream, run: &RunRecord) -> Result<Option<String>> {
    let manifest = ctx
        .lake
        .read_manifest_at(&Lake::recorded_manifest(
            &stream.id,
            &run.run_id,
            run.manifest.as_deref(),
        ))
        .await?
        .ok_or_else(|| Error::state(format!(
            "run {} is marked extracted but its manifest is missing from the lake ({}); run `mlc state reset {}`",
            run.run_id, ctx.lake.url(), stream.id
        )))?;
    let parts: Vec<ObjPath> = manifest
        .files
        .iter()
        .map(|f| ObjPath::from(f.path.as_str()))
        .collect();
    let stats = ctx
        .warehouse
        .merge(stream, &ctx.lake, &manifest, &parts)
        .await?;
    ctx.state
        .mark_loaded(run, stats.upserted, stats.deleted, stats.table_rows)?;
    tracing::info!(stream = %stream.id, upserted = stats.upserted, deleted = stats.deleted, table_rows = stats.table_rows, peak_rss_mib = peak_rss_mib().unwrap_or(0.0), "loaded");
    let note = (manifest.reconcile && !manifest.reconciles_deletes()).then(|| {
        let why = format!(
            "deletes not reconciled this run: {} quarantined records ({} without a readable key); see quarantine/{}/run={}",
            manifest.quarantined, manifest.quarantined_unkeyed, stream.id, run.run_id
        );
        tracing::warn!(stream = %stream.id, "{why}");
        why
    });
    Ok(note)
}

/// Runs every selected stream of every selected connection, `config.sync.concurrency` at a
/// time. One stream failing does not stop the others.
pub async fn run_many(
    ctx: &Context,
    connections: &[&Connection],
    patterns: &[String],
    req: &RunRequest,
) -> Result<Vec<(String, Result<RunSummary>)>> {
    run_many_reporting(ctx, connections, patterns, req, &|_, _| {}).await
}

/// [`run_many`], calling `done` as each run ends (in the order they end): the command line
/// prints a line per stream there when no progress bar shows it.
pub async fn run_many_reporting(
    ctx: &Context,
    connections: &[&Connection],
    patterns: &[String],
    req: &RunRequest,
    done: &(dyn Fn(&str, &Result<RunSummary>) + Sync),
) -> Result<Vec<(String, Result<RunSummary>)>> {
    let mut jobs = Vec::new();
    for conn in connections {
        for s in ctx.streams_for(conn, patterns)? {
            jobs.push((*conn, s));
        }
    }
    if jobs.is_empty() {
        return Err(Error::config(
            "nothing to run: no configured connection has a stream matching the selection",
        ));
    }
    // Boxed so the futures' type is named: a `map` closure here trips rustc's higher-ranked
    // `Send` inference when the runs happen inside a spawned task (`mlc serve`).
    let runs: Vec<LabelledRun<'_>> = jobs
        .into_iter()
        .map(|(conn, s)| -> LabelledRun<'_> {
            Box::pin(async move {
                let label = format!("{}/{}", conn.name, s.id);
                (label, run_stream(ctx, conn, s, req).await)
            })
        })
        .collect();
    let results = futures::stream::iter(runs)
        .buffer_unordered(ctx.config.sync.concurrency.max(1))
        .inspect(|(label, r)| done(label, r))
        .collect::<Vec<_>>()
        .await;
    Ok(results)
}

/// One stream's run, labelled `connection/stream`.
type LabelledRun<'a> = futures::future::BoxFuture<'a, (String, Result<RunSummary>)>;

/// A spawned task that is aborted when its handle is dropped: the fetch and decode tasks of a
/// run live exactly as long as the run, so a run whose future is dropped (a cancelled sync, a
/// shutdown) stops requesting pages instead of draining the source in the background.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_cursor_rereads_only_a_recent_window() {
        let defs = Definitions::builtin().unwrap();
        let mut stream = defs
            .get(&"dataverse.account".parse().unwrap())
            .unwrap()
            .clone();
        stream.spec.lookback_seconds = Some(300);
        let start = "2025-06-01T12:00:00+00:00";
        let start_us = chrono::DateTime::parse_from_rfc3339(start)
            .unwrap()
            .timestamp_micros();
        // A quiet table: just after the newest row, so an unchanged source yields nothing.
        let old = start_us - 3_600_000_000;
        assert_eq!(
            next_cursor(&stream, start, Some(old)).unwrap(),
            "2025-06-01T11:00:00.000001Z"
        );
        // Rows as recent as the lookback: the window is read again next time.
        assert_eq!(
            next_cursor(&stream, start, Some(start_us - 1_000_000)).unwrap(),
            "2025-06-01T11:55:00.000000Z"
        );
        assert_eq!(next_cursor(&stream, start, None), None);
    }
}
