//! The embedded local warehouse: current-state Parquet tables under `<root>/<dataset>/<table>/`,
//! merged by primary key from each run's change set, and queried with polars SQL.
//!
//! # Layout
//! ```text
//! <root>/raw_dataverse/account/_table.json      descriptor: bucket count, hash, key, column types
//! <root>/raw_dataverse/account/b-00000.parquet  bucket 0 (always present, maybe empty)
//! <root>/raw_dataverse/account/b-00013.parquet  bucket 13 (present when it holds rows)
//! <root>/_staging/raw_dataverse/account/...     a running merge's staging (spill) files
//! <root>/_locks/raw_dataverse.account.lock      held while a merge runs (one merge per table)
//! ```
//! Only bucket files end in `.parquet` inside a table directory, so DuckDB / dbt-duckdb read a
//! table with `read_parquet('<root>/raw_dataverse/account/*.parquet')`; every bucket file of a
//! table has the same schema once a merge completes (zstd, statistics on, all columns nullable).
//!
//! # Why buckets
//! A merge must cost what the change costs, not what the table costs. Each table is
//! hash-partitioned by primary key (FNV-1a 64 of the key's canonical text, see `hash.rs`; part
//! of the on-disk format) into a power-of-two number of buckets chosen when the table is created
//! from the first change set's size — enough that no bucket exceeds [`DEFAULT_BUCKET_BYTES`]
//! (uncompressed, from the parts' footers) or [`DEFAULT_BUCKET_ROWS`] rows, 1..=1024 — and
//! never changed. A merge
//! 1. streams the run's Parquet parts (arrow-rs, strings as views) and splits the rows by
//!    bucket into staging files, holding at most a fixed budget
//!    ([`DEFAULT_STAGING_BUDGET`]) of decoded rows in memory;
//! 2. merges every touched bucket (every bucket for a full-snapshot `reconcile`, or after a
//!    schema change) with polars — old file + staged rows, newest `_ml_extracted_at` wins, ties
//!    to the later row, deletes applied — two buckets at a time;
//! 3. swaps each bucket file atomically (temp name + `rename`).
//!
//! Peak memory is therefore the staging budget, then two buckets' worth of merge work: neither
//! depends on the table's size nor on the change set's. A small change still rewrites every
//! bucket it touches: with hash partitioning, 1 000 changed keys touch up to 1 000 buckets.
//!
//! # Crash safety and idempotency
//! The descriptor is written before any bucket; each bucket swap is atomic, so a crash leaves
//! every bucket readable (some with the run applied, some without). Re-running the same run
//! re-applies it: buckets that already have it get identical rows back (the run's copy of a row
//! ties with the table's and wins), the others get it for the first time. Leftover temp and
//! staging files are removed by the next merge and never match the readers' glob.
//!
//! # Schema evolution
//! The newest schema wins (column order and types); a column the catalog no longer lists is
//! kept, null for new rows. A merge that changes the column list rewrites every bucket (bounded
//! memory, two buckets at a time) so all files keep one schema; until it completes, readers fill
//! missing columns with nulls. The primary key cannot change (the merge refuses; delete the
//! table directory and re-sync to re-key).
//!
//! # Counting
//! `upserted` counts keys whose winning row is one of the run's non-delete rows; `deleted`
//! counts live rows removed (hard) or flagged (soft) by the run's tombstones or by
//! reconciliation — a re-applied run therefore reports no deletes for rows it already deleted.
//! In soft mode a key inserted and deleted within the same run is kept, flagged, and counted in
//! neither.

mod bucket;
mod hash;
mod meta;
mod query;
mod stage;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use arrow_schema::SchemaRef;
use object_store::ObjectStore;
use polars::prelude::*;
use tokio::runtime::Handle;

use self::bucket::{BucketJob, BucketOutcome, MergeCtx, merge_bucket, polars_schema, write_bucket};
use self::meta::{META_FILE, TableMeta, bucket_file_name, bucket_files};
use super::OutputFormat;
use crate::config::DeleteMode;
use crate::error::{Error, Result};

/// Most rows per bucket when a table is created (see [`LocalWarehouse::with_bucket_rows`]).
pub const DEFAULT_BUCKET_ROWS: u64 = 100_000;
/// Most uncompressed bytes per bucket when a table is created: a bucket merge holds a few
/// copies of one bucket in memory, and two run at once.
pub const DEFAULT_BUCKET_BYTES: u64 = 16 << 20;
/// Most buckets a table can have.
const MAX_BUCKETS: u32 = 1024;
/// Decoded rows a merge holds in memory before spilling them to staging files.
pub const DEFAULT_STAGING_BUDGET: usize = 64 << 20;
/// Buckets merged at the same time.
const MERGE_THREADS: usize = 2;
/// Directory of staging files, under the root.
const STAGING_DIR: &str = "_staging";
/// Directory of per-table merge locks, under the root.
const LOCKS_DIR: &str = "_locks";

/// The embedded warehouse rooted at a directory (e.g. `.mlc/warehouse`).
#[derive(Debug, Clone)]
pub struct LocalWarehouse {
    root: PathBuf,
    delete_mode: DeleteMode,
    bucket_rows: u64,
    staging_budget: usize,
}

/// One run's change set to merge into a table.
pub struct MergeRequest<'a> {
    /// Dataset, e.g. `raw_dataverse`.
    pub dataset: &'a str,
    /// Table, e.g. `account`.
    pub table: &'a str,
    /// The lake holding the parts.
    pub store: Arc<dyn ObjectStore>,
    /// This run's Parquet parts, in extraction order.
    pub parts: &'a [object_store::path::Path],
    /// Key columns (the catalog's `primary_key`).
    pub primary_key: &'a [String],
    /// `schema::table_schema(catalog)` at the time of the run.
    pub schema: SchemaRef,
    /// The run is a full snapshot: live keys in the table but absent from it are deleted.
    pub reconcile: bool,
    /// Keys (values in key-column order, as text) the run quarantined: present, never
    /// deleted by reconciliation.
    pub protected: &'a [Vec<String>],
    /// The run is a projected pass (keys, and computed columns): it deletes absent keys when
    /// it reconciles, updates the columns it carries on keys the table has, and inserts
    /// nothing.
    pub keys_only: bool,
    /// The run's id, stamped on rows deleted by reconciliation.
    pub run_id: &'a str,
    /// The run's time (µs since the epoch, UTC), stamped on rows deleted by reconciliation;
    /// rows newer than this are never deleted by reconciliation.
    pub extracted_at_micros: i64,
}

/// What a merge did (see the module docs for the exact counting rules).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MergeStats {
    /// Rows in the change set.
    pub rows_in: u64,
    /// Keys inserted or updated.
    pub upserted: u64,
    /// Live keys deleted (hard) or flagged deleted (soft).
    pub deleted: u64,
    /// Rows in the table after the merge (soft-deleted rows included).
    pub table_rows: u64,
}

/// A merge request that can move to a blocking thread.
struct OwnedRequest {
    dataset: String,
    table: String,
    store: Arc<dyn ObjectStore>,
    parts: Vec<object_store::path::Path>,
    primary_key: Vec<String>,
    schema: SchemaRef,
    reconcile: bool,
    protected: Vec<Vec<String>>,
    keys_only: bool,
    run_id: String,
    run_micros: i64,
}

/// Dataset and table names become directory names: keep them to `[A-Za-z0-9_]`, not starting
/// with `_` (reserved for the warehouse's own directories).
fn check_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::warehouse(format!(
            "`{name}` is not a valid {kind} name (letters, digits and `_`, not starting with `_`)"
        )))
    }
}

fn remove_dir_if_exists(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// Removes the temp files an interrupted merge may have left in a table directory.
fn remove_temp_files(dir: &Path) -> Result<()> {
    let rd = fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| n.ends_with(".tmp")) {
            let p = entry.path();
            fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
    }
    Ok(())
}

/// Makes renames in `dir` durable (best effort where directories cannot be opened).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Rows of a Parquet file, from its footer.
fn file_rows(path: &Path) -> Result<u64> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let f = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = SerializedFileReader::new(f)
        .map_err(|e| Error::warehouse_from(format!("reading {}", path.display()), e))?;
    Ok(u64::try_from(reader.metadata().file_metadata().num_rows()).unwrap_or(0))
}

impl LocalWarehouse {
    /// Opens (creating it if needed) the warehouse at `root`.
    ///
    /// Fails when the directory cannot be created or resolved.
    pub fn open(root: &Path, delete_mode: DeleteMode) -> Result<Self> {
        fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
        let root = fs::canonicalize(root).map_err(|e| Error::io(root, e))?;
        Ok(Self {
            root,
            delete_mode,
            bucket_rows: DEFAULT_BUCKET_ROWS,
            staging_budget: DEFAULT_STAGING_BUDGET,
        })
    }

    /// Most rows per bucket for tables created from now on (default [`DEFAULT_BUCKET_ROWS`];
    /// buckets are also capped at [`DEFAULT_BUCKET_BYTES`]); existing tables keep their bucket
    /// count. Smaller buckets lower the memory of a merge and raise the number of files.
    pub fn with_bucket_rows(mut self, rows: u64) -> Self {
        self.bucket_rows = rows.max(1);
        self
    }

    /// Bytes of decoded rows a merge holds before spilling to staging files (default
    /// [`DEFAULT_STAGING_BUDGET`]).
    pub fn with_staging_budget(mut self, bytes: usize) -> Self {
        self.staging_budget = bytes.max(1);
        self
    }

    /// The warehouse directory (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of a table: read it with the glob `<dir>/*.parquet`.
    pub fn table_dir(&self, dataset: &str, table: &str) -> PathBuf {
        self.root.join(dataset).join(table)
    }

    /// The bucket count for a table created from a change set of this size: enough buckets
    /// that none holds more than the row or byte target, as a power of two in 1..=1024.
    fn bucket_count(&self, size: stage::PartsSize) -> u32 {
        let want = size
            .rows
            .div_ceil(self.bucket_rows)
            .max(size.bytes.div_ceil(DEFAULT_BUCKET_BYTES))
            .max(1);
        want.next_power_of_two().min(u64::from(MAX_BUCKETS)) as u32
    }

    /// Merges one run's change set into `dataset.table`, creating the table on first load.
    /// The work runs on blocking threads; only one merge per table runs at a time (a lock file,
    /// so this holds across processes too).
    ///
    /// Fails when a name is invalid, a part cannot be read from the lake, the schema lacks the
    /// key or `_ml_` columns or has an unsupported type, the primary key differs from the
    /// table's, or a file cannot be written. The table stays readable after any failure and
    /// the same merge can be retried.
    pub async fn merge(&self, req: MergeRequest<'_>) -> Result<MergeStats> {
        check_name("dataset", req.dataset)?;
        check_name("table", req.table)?;
        let owned = OwnedRequest {
            dataset: req.dataset.to_string(),
            table: req.table.to_string(),
            store: req.store.clone(),
            parts: req.parts.to_vec(),
            primary_key: req.primary_key.to_vec(),
            schema: req.schema.clone(),
            reconcile: req.reconcile,
            protected: req.protected.to_vec(),
            keys_only: req.keys_only,
            run_id: req.run_id.to_string(),
            run_micros: req.extracted_at_micros,
        };
        let this = self.clone();
        let handle = Handle::current();
        tokio::task::spawn_blocking(move || this.merge_blocking(handle, owned))
            .await
            .map_err(|e| Error::warehouse_from("merge task failed", e))?
    }

    fn merge_blocking(&self, handle: Handle, req: OwnedRequest) -> Result<MergeStats> {
        let started = Instant::now();
        let name = format!("{}.{}", req.dataset, req.table);
        let dir = self.table_dir(&req.dataset, &req.table);
        let staging = self
            .root
            .join(STAGING_DIR)
            .join(&req.dataset)
            .join(&req.table);

        // One merge per table at a time, across processes.
        let locks = self.root.join(LOCKS_DIR);
        fs::create_dir_all(&locks).map_err(|e| Error::io(&locks, e))?;
        let lock_path = locks.join(format!("{name}.lock"));
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        lock.lock().map_err(|e| Error::io(&lock_path, e))?;

        // Leftovers of an interrupted merge go first; this merge's staging goes whatever the
        // outcome (a failed merge leaves the table readable and can simply be retried).
        remove_dir_if_exists(&staging)?;
        let result = self.merge_locked(handle, &req, &name, &dir, &staging, started);
        let _ = remove_dir_if_exists(&staging);
        release_memory();
        drop(lock);
        result
    }

    /// The merge proper, under the table's lock.
    fn merge_locked(
        &self,
        handle: Handle,
        req: &OwnedRequest,
        name: &str,
        dir: &Path,
        staging: &Path,
        started: Instant,
    ) -> Result<MergeStats> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        remove_temp_files(dir)?;

        // The table's descriptor (created, or evolved to the run's schema).
        let run_columns = meta::columns_of(&req.schema)?;
        meta::check_required(&run_columns, &req.primary_key)
            .map_err(|e| Error::warehouse(format!("{name}: {}", strip_prefix(&e))))?;
        let mut table = match TableMeta::load(dir)? {
            Some(mut m) => {
                if m.primary_key != req.primary_key {
                    return Err(Error::warehouse(format!(
                        "{name}: the primary key changed from ({}) to ({}); the table cannot be re-keyed in place: delete {} and re-sync the stream",
                        m.primary_key.join(", "),
                        req.primary_key.join(", "),
                        dir.display()
                    )));
                }
                let union = meta::union_columns(&m.columns, &run_columns);
                if union != m.columns {
                    tracing::info!(table = %name, "schema changed: rewriting every bucket");
                    m.columns = union;
                    m.rewrite_pending = true;
                    m.store(dir)?;
                }
                m
            }
            None => {
                let size = stage::parts_size(&handle, &req.store, &req.parts)?;
                let m = TableMeta {
                    format_version: meta::FORMAT_VERSION,
                    hash: hash::HASH_NAME.to_string(),
                    buckets: self.bucket_count(size),
                    primary_key: req.primary_key.clone(),
                    columns: run_columns.clone(),
                    rewrite_pending: false,
                };
                tracing::info!(
                    table = %name,
                    buckets = m.buckets,
                    rows = size.rows,
                    bytes = size.bytes,
                    "creating table"
                );
                m.store(dir)?;
                m
            }
        };

        // 1. Split the change set by bucket.
        let key_idx: Vec<usize> = req
            .primary_key
            .iter()
            .filter_map(|k| run_columns.iter().position(|c| &c.name == k))
            .collect();
        let split_started = std::time::Instant::now();
        let staged = stage::stage(stage::StageInput {
            handle,
            store: req.store.clone(),
            parts: &req.parts,
            schema: stage::view_schema(&meta::columns_schema(&run_columns)),
            key: key_idx,
            deleted: run_columns
                .iter()
                .position(|c| c.name == crate::schema::ML_DELETED)
                .unwrap_or(0),
            buckets: table.buckets,
            dir: staging.to_path_buf(),
            budget: self.staging_budget,
        })?;
        tracing::debug!(table = %name, ms = split_started.elapsed().as_millis() as u64, "change set split by bucket");

        release_memory();
        // 2. Merge the buckets that need it.
        let existing: HashMap<u32, PathBuf> = bucket_files(dir)?
            .into_iter()
            .filter(|(b, _)| *b < table.buckets)
            .collect();
        let visit_all = req.reconcile || table.rewrite_pending;
        let jobs: Vec<BucketJob> = (0..table.buckets)
            .filter(|b| {
                let has_staged = staged.rows[*b as usize] > 0;
                has_staged || (visit_all && existing.contains_key(b))
            })
            .map(|b| BucketJob {
                bucket: b,
                old: existing.get(&b).cloned(),
                staged: staged.files[b as usize].clone(),
            })
            .collect();
        let schema = polars_schema(&table.columns);
        let protected = if req.reconcile && !req.protected.is_empty() {
            Some(bucket::protected_keys(
                &schema,
                &req.primary_key,
                &req.protected,
            )?)
        } else {
            None
        };
        // What a projected pass carries besides keys and `_ml_` columns.
        let update: Vec<PlSmallStr> = if req.keys_only {
            run_columns
                .iter()
                .filter(|c| !req.primary_key.contains(&c.name) && !c.name.starts_with("_ml_"))
                .map(|c| c.name.as_str().into())
                .collect()
        } else {
            Vec::new()
        };
        let ctx = MergeCtx {
            schema,
            key: req.primary_key.iter().map(|k| k.as_str().into()).collect(),
            mode: self.delete_mode,
            reconcile: req.reconcile,
            protected,
            update,
            keys_only: req.keys_only,
            run_id: req.run_id.clone(),
            run_micros: req.run_micros,
        };
        let outcomes = run_jobs(dir, &jobs, &ctx)?;
        if !dir.join(bucket_file_name(0)).exists() {
            write_bucket(dir, 0, DataFrame::empty_with_schema(&ctx.schema))?;
        }
        if table.rewrite_pending {
            table.rewrite_pending = false;
            table.store(dir)?;
        }
        sync_dir(dir);

        let mut stats = MergeStats {
            rows_in: staged.rows_in,
            ..Default::default()
        };
        for o in &outcomes {
            stats.upserted += o.upserted;
            stats.deleted += o.deleted;
        }
        stats.table_rows = table_rows(dir)?;
        tracing::info!(
            table = %name,
            rows_in = stats.rows_in,
            upserted = stats.upserted,
            deleted = stats.deleted,
            table_rows = stats.table_rows,
            buckets_merged = jobs.len(),
            ms = started.elapsed().as_millis() as u64,
            "merged into the local warehouse"
        );
        Ok(stats)
    }

    /// Every table, as `dataset.table`, sorted.
    ///
    /// Fails when the warehouse directory cannot be listed.
    pub fn tables(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let rd = fs::read_dir(&self.root).map_err(|e| Error::io(&self.root, e))?;
        for ds in rd {
            let ds = ds.map_err(|e| Error::io(&self.root, e))?;
            let Some(ds_name) = ds.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if check_name("dataset", &ds_name).is_err() || !ds.path().is_dir() {
                continue;
            }
            let inner = fs::read_dir(ds.path()).map_err(|e| Error::io(ds.path(), e))?;
            for t in inner {
                let t = t.map_err(|e| Error::io(ds.path(), e))?;
                let Some(t_name) = t.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if check_name("table", &t_name).is_ok() && t.path().join(META_FILE).is_file() {
                    out.push(format!("{ds_name}.{t_name}"));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The descriptor of an existing table.
    fn table_meta(&self, dataset: &str, table: &str) -> Result<TableMeta> {
        check_name("dataset", dataset)?;
        check_name("table", table)?;
        match TableMeta::load(&self.table_dir(dataset, table))? {
            Some(m) => Ok(m),
            None => {
                let known: BTreeSet<String> = self.tables()?.into_iter().collect();
                Err(Error::warehouse(format!(
                    "unknown table `{dataset}.{table}`. Known tables: {}",
                    query::known_list(&known)
                )))
            }
        }
    }

    /// Every table with its number of columns and rows (`mlc query --tables`).
    pub fn describe(&self) -> Result<Vec<(String, usize, u64)>> {
        let mut out = Vec::new();
        for t in self.tables()? {
            if let Some((ds, tb)) = t.split_once('.') {
                let columns = self.table_meta(ds, tb)?.columns.len();
                out.push((t.clone(), columns, self.row_count(ds, tb)?));
            }
        }
        Ok(out)
    }

    /// Rows in a table (soft-deleted rows included), from the files' footers.
    ///
    /// Fails when the table does not exist or a file cannot be read.
    pub fn row_count(&self, dataset: &str, table: &str) -> Result<u64> {
        self.table_meta(dataset, table)?;
        table_rows(&self.table_dir(dataset, table))
    }

    /// A lazy scan of a table with its descriptor's schema.
    fn scan(&self, dataset: &str, table: &str) -> Result<LazyFrame> {
        let meta = self.table_meta(dataset, table)?;
        let schema = polars_schema(&meta.columns);
        let files = bucket_files(&self.table_dir(dataset, table))?;
        if files.is_empty() {
            return Ok(DataFrame::empty_with_schema(&schema).lazy());
        }
        let mut paths = Vec::with_capacity(files.len());
        for (_, p) in &files {
            let s = p.to_str().ok_or_else(|| {
                Error::warehouse(format!("{}: path is not valid UTF-8", p.display()))
            })?;
            paths.push(PlRefPath::new(s));
        }
        let args = ScanArgsParquet {
            schema: Some(Arc::new(schema)),
            allow_missing_columns: true,
            glob: false,
            cache: false,
            ..Default::default()
        };
        LazyFrame::scan_parquet_files(paths.into_iter().collect(), args)
            .map_err(|e| Error::warehouse_from(format!("cannot scan {dataset}.{table}"), e))
    }

    /// Runs one SQL query over every table (addressed `dataset.table`) and renders the result.
    /// The text table shows every column and up to 50 rows; CSV and JSON hold every row (see
    /// the `query` module docs for value formats: decimals are exact, JSON decimals are
    /// strings, dates ISO, timestamps RFC 3339 UTC).
    ///
    /// Fails when the SQL does not parse, is not a query, names an unknown table or column, or
    /// polars cannot run it; the message lists the known tables.
    pub fn query(&self, sql: &str, format: OutputFormat) -> Result<String> {
        let tables = self.tables()?;
        let known: BTreeSet<String> = tables.iter().cloned().collect();
        let rewritten = query::rewrite(sql, &known)?;
        let mut ctx = polars::sql::SQLContext::new();
        for t in &tables {
            if let Some((ds, tb)) = t.split_once('.') {
                ctx.register(t, self.scan(ds, tb)?);
            }
        }
        let fail = |e: PolarsError| {
            Error::warehouse(format!(
                "query failed: {e}. Known tables: {}",
                query::known_list(&known)
            ))
        };
        let df = ctx
            .execute(&rewritten)
            .map_err(fail)?
            .collect()
            .map_err(fail)?;
        query::render(&df, format)
    }

    /// Every row's values of `columns`, rendered as text (null -> `""`; formats as in
    /// [`LocalWarehouse::query`]), sorted — for comparing the warehouse with a source row by row.
    /// Soft-deleted rows are included (select `_ml_deleted` to tell them apart).
    ///
    /// Fails when the table or a column does not exist, or a file cannot be read.
    pub fn keys(&self, dataset: &str, table: &str, columns: &[&str]) -> Result<Vec<Vec<String>>> {
        let meta = self.table_meta(dataset, table)?;
        for c in columns {
            if meta.column(c).is_none() {
                let have: Vec<&str> = meta.columns.iter().map(|c| c.name.as_str()).collect();
                return Err(Error::warehouse(format!(
                    "{dataset}.{table} has no column `{c}` (columns: {})",
                    have.join(", ")
                )));
            }
        }
        let df = self
            .scan(dataset, table)?
            .select(columns.iter().map(|c| col(*c)).collect::<Vec<_>>())
            .collect()
            .map_err(|e| Error::warehouse_from(format!("reading {dataset}.{table}"), e))?;
        let mut rows = Vec::with_capacity(df.height());
        let cols = df.columns();
        for r in 0..df.height() {
            let mut row = Vec::with_capacity(cols.len());
            for c in cols {
                let v = c
                    .get(r)
                    .map_err(|e| Error::warehouse_from(format!("reading {dataset}.{table}"), e))?;
                row.push(query::value_text(&v).unwrap_or_default());
            }
            rows.push(row);
        }
        rows.sort();
        Ok(rows)
    }
}

/// Hands freed memory back to the OS between the phases of a merge. glibc keeps freed memory
/// in per-thread arenas; after a phase that ran on several threads that is often hundreds of
/// MiB the next phase (or the next stream) cannot reuse, and it counts in the process's RSS.
fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim only walks the allocator's own arenas; it is thread-safe
        // and has no preconditions.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// A warehouse error's message without the `warehouse:` prefix, to re-wrap with context.
fn strip_prefix(e: &Error) -> String {
    match e {
        Error::Warehouse { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Rows in every bucket file of a table directory.
fn table_rows(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for (_, p) in bucket_files(dir)? {
        total += file_rows(&p)?;
    }
    Ok(total)
}

/// Merges the buckets, [`MERGE_THREADS`] at a time; stops at the first failure.
fn run_jobs(dir: &Path, jobs: &[BucketJob], ctx: &MergeCtx) -> Result<Vec<BucketOutcome>> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let threads = MERGE_THREADS.min(jobs.len()).max(1);
    let results: Vec<Result<Vec<BucketOutcome>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        if failed.load(Ordering::Relaxed) {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(job) = jobs.get(i) else { break };
                        match merge_bucket(dir, job, ctx) {
                            Ok(o) => {
                                done.push(o);
                                release_memory();
                            }
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    Ok(done)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::warehouse("a bucket merge thread panicked")))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(jobs.len());
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}
