//! The merge of one bucket (polars): the bucket's current file + the run's staged rows for that
//! bucket -> stable sort by `_ml_extracted_at` -> last row per key -> deletes -> a new file
//! swapped in atomically (temp name + `rename`).
//!
//! Rules, per key:
//! - the winner is the row with the newest `_ml_extracted_at` (a null time is older than any
//!   time); ties go to the later row (the run's rows come after the table's, later parts and
//!   rows after earlier ones);
//! - a winner that is a tombstone (a staged row with `_ml_deleted = true`) removes the key in
//!   hard mode; in soft mode the key keeps its last known values (the newest non-tombstone row,
//!   the table's row included) with the tombstone's `_ml_run_id` / `_ml_extracted_at` and
//!   `_ml_deleted = true`; a tombstone for a key never seen is dropped;
//! - with `reconcile`, a live table row whose key is absent from the run and not newer than the
//!   run is deleted the same way (stamped with the run id and run time in soft mode);
//!   Keys the run quarantined (`protected`) count as carried: a row is never deleted because
//!   its record could not be read;
//! - with `keys_only` (a projected pass: keys, and computed columns), that deletion and the
//!   `update` columns it carries are all the run does: keys the table has get those columns'
//!   new values, nothing else of theirs changes, and nothing is inserted.
//!
//! Re-merging the same staged rows gives the same file: the table's copy of a row ties with the
//! staged copy and the staged copy (identical) wins.
//!
//! The decisions are taken on a narrow frame (key, `_ml_extracted_at`, `_ml_deleted`, position)
//! and the wide rows are gathered once — or not at all when every row survives, as in a first
//! load — so a bucket merge holds about three copies of the bucket at most.

use std::fs;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::meta::{MetaColumn, bucket_file_name};
use super::stage::StagedSlice;
use crate::config::DeleteMode;
use crate::error::{Error, Result};
use crate::schema::{ML_DELETED, ML_EXTRACTED_AT, ML_RUN_ID};
use crate::spec::ColumnType;

const SRC: &str = "__mlc_src";
const SEQ: &str = "__mlc_seq";
const PRESENT: &str = "__mlc_present";
const ABSENT: &str = "__mlc_absent";
const VALUE_SEQ: &str = "__mlc_value_seq";

/// What every bucket of one merge shares.
pub(super) struct MergeCtx {
    pub schema: Schema,
    pub key: Vec<PlSmallStr>,
    pub mode: DeleteMode,
    pub reconcile: bool,
    /// Keys quarantined by the run (typed as the key columns): present for reconciliation.
    pub protected: Option<DataFrame>,
    /// Staged rows are a projected pass: they decide deletions and update only `update`.
    pub keys_only: bool,
    /// The columns a projected pass carries and updates on matched keys.
    pub update: Vec<PlSmallStr>,
    pub run_id: String,
    pub run_micros: i64,
}

/// One bucket to merge.
pub(super) struct BucketJob {
    pub bucket: u32,
    /// The bucket's current file, if any.
    pub old: Option<PathBuf>,
    /// Staged rows, in extraction order.
    pub staged: Vec<StagedSlice>,
}

/// What merging one bucket did.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct BucketOutcome {
    pub upserted: u64,
    pub deleted: u64,
    pub rows_after: u64,
}

fn pe(context: impl std::fmt::Display) -> impl FnOnce(PolarsError) -> Error {
    move |e| Error::warehouse_from(context, e)
}

/// The polars type of a stored column.
pub(super) fn polars_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::String | ColumnType::Json => DataType::String,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Decimal { precision, scale } => {
            DataType::Decimal(precision as usize, scale.max(0) as usize)
        }
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Date => DataType::Date,
        ColumnType::Timestamp => DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)),
    }
}

/// The polars schema of a column list.
pub(super) fn polars_schema(columns: &[MetaColumn]) -> Schema {
    Schema::from_iter(
        columns
            .iter()
            .map(|c| Field::new(c.name.as_str().into(), polars_type(c.ty))),
    )
}

/// Reads one Parquet file written by this module.
pub(super) fn read_file(path: &Path) -> Result<DataFrame> {
    let f = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    ParquetReader::new(f)
        .finish()
        .map_err(pe(format!("reading {}", path.display())))
}

/// Reads a bucket's rows from a staging file (only the row groups holding them).
fn read_slice(s: &StagedSlice) -> Result<DataFrame> {
    let f = fs::File::open(&s.path).map_err(|e| Error::io(&s.path, e))?;
    ParquetReader::new(f)
        .with_slice(Some((s.offset, s.len)))
        .finish()
        .map_err(pe(format!("reading {}", s.path.display())))
}

/// Projects `df` onto `schema`: columns in schema order, missing ones as typed nulls, others
/// cast to the schema's type (strictly: a value that does not fit is an error, never a silent
/// null).
fn align(df: DataFrame, schema: &Schema) -> LazyFrame {
    let have = df.schema().clone();
    let exprs: Vec<Expr> = schema
        .iter()
        .map(|(name, dt)| match have.get(name) {
            Some(t) if t == dt => col(name.clone()),
            Some(_) => col(name.clone()).strict_cast(dt.clone()),
            None => lit(NULL).cast(dt.clone()).alias(name.clone()),
        })
        .collect();
    df.lazy().select(exprs)
}

fn key_exprs(ctx: &MergeCtx) -> Vec<Expr> {
    ctx.key.iter().map(|k| col(k.clone())).collect()
}

fn join_args(how: JoinType) -> JoinArgs {
    let mut a = JoinArgs::new(how);
    a.nulls_equal = true;
    a
}

fn is_true(name: &str) -> Expr {
    col(name).fill_null(lit(false))
}

/// Merges one bucket and swaps its file. Returns what changed.
///
/// Fails when a file cannot be read or written, or a stored value cannot be cast to the
/// table's (newer) column type.
pub(super) fn merge_bucket(dir: &Path, job: &BucketJob, ctx: &MergeCtx) -> Result<BucketOutcome> {
    let bucket_ctx = format!("merging bucket {} of {}", job.bucket, dir.display());

    let mut outcome = BucketOutcome::default();

    // The run's rows for this bucket, in extraction order; `_ml_deleted` null means live.
    // (All slices come from one run: same schema, so they are stacked first and aligned once.)
    let mut raw: Option<DataFrame> = None;
    for p in &job.staged {
        let df = read_slice(p)?;
        match raw.as_mut() {
            None => raw = Some(df),
            Some(acc) => {
                acc.vstack_mut(&df).map_err(pe(&bucket_ctx))?;
            }
        }
    }
    let staged: Option<DataFrame> = match raw {
        None => None,
        Some(df) => Some(
            align(df, &ctx.schema)
                .with_column(is_true(ML_DELETED).alias(ML_DELETED))
                .collect()
                .map_err(pe(&bucket_ctx))?,
        ),
    };

    // The table's rows (one per key), after reconciliation.
    let mut old: Option<DataFrame> = match &job.old {
        Some(p) => Some(
            align(read_file(p)?, &ctx.schema)
                .collect()
                .map_err(pe(&bucket_ctx))?,
        ),
        None => None,
    };
    if ctx.reconcile
        && let Some(table) = old.take()
    {
        let (kept, n) = reconcile(table, staged.as_ref(), ctx).map_err(pe(&bucket_ctx))?;
        outcome.deleted += n;
        old = Some(kept);
    }

    let out = match (old, staged) {
        (None, None) => DataFrame::empty_with_schema(&ctx.schema),
        (Some(table), None) => table,
        (Some(table), Some(_)) if ctx.keys_only && ctx.update.is_empty() => table,
        (Some(table), Some(run)) if ctx.keys_only => {
            let (t, n) = update_columns(table, &run, ctx).map_err(pe(&bucket_ctx))?;
            outcome.upserted += n;
            t
        }
        (None, Some(_)) if ctx.keys_only => DataFrame::empty_with_schema(&ctx.schema),
        (table, Some(run)) => {
            let r = resolve(table, run, ctx).map_err(pe(&bucket_ctx))?;
            outcome.upserted += r.upserted;
            outcome.deleted += r.deleted;
            r.rows
        }
    };
    outcome.rows_after = out.height() as u64;
    write_bucket(dir, job.bucket, out)?;
    Ok(outcome)
}

/// Keys given as text (values in key-column order) as a frame of the key columns, typed as
/// the table types them. A value that does not convert is NULL (it matches no row).
///
/// Fails when a key column is not in `schema`.
pub(super) fn protected_keys(
    schema: &Schema,
    key: &[String],
    keys: &[Vec<String>],
) -> Result<DataFrame> {
    let mut columns = Vec::with_capacity(key.len());
    for (i, k) in key.iter().enumerate() {
        let dt = schema
            .get(k.as_str())
            .ok_or_else(|| Error::warehouse(format!("key column `{k}` is not in the table")))?;
        let text: Vec<Option<&str>> = keys.iter().map(|v| v.get(i).map(String::as_str)).collect();
        let series = Series::new(k.as_str().into(), text)
            .cast(dt)
            .map_err(pe(format!("quarantined keys of `{k}`")))?;
        columns.push(series.into_column());
    }
    DataFrame::new(keys.len(), columns).map_err(pe("quarantined keys"))
}

/// A projected pass's new values of `ctx.update` on the keys the table has. Returns the table
/// and how many of its rows the pass carried.
fn update_columns(
    table: DataFrame,
    run: &DataFrame,
    ctx: &MergeCtx,
) -> PolarsResult<(DataFrame, u64)> {
    let keys = key_exprs(ctx);
    let fresh = |c: &PlSmallStr| format!("{c}__mlc_new");
    let mut carried: Vec<Expr> = keys.clone();
    carried.extend(ctx.update.iter().map(|c| col(c.clone()).alias(fresh(c))));
    carried.push(lit(true).alias(PRESENT));
    let new = run
        .clone()
        .lazy()
        .select(carried)
        .unique_stable_generic(Some(keys.clone()), UniqueKeepStrategy::Last);
    let mut args = join_args(JoinType::Left);
    args.maintain_order = MaintainOrderJoin::Left;
    let joined = table
        .lazy()
        .join(new, keys.clone(), keys, args)
        .with_columns(
            ctx.update
                .iter()
                .map(|c| {
                    when(col(PRESENT).is_not_null())
                        .then(col(fresh(c)))
                        .otherwise(col(c.clone()))
                        .alias(c.clone())
                })
                .collect::<Vec<_>>(),
        )
        .collect()?;
    let n = joined.column(PRESENT)?.is_not_null().sum().unwrap_or(0) as u64;
    let out = joined.select(ctx.schema.iter_names().cloned())?;
    Ok((out, n))
}

/// The key columns plus `names`, as expressions.
fn keys_and(ctx: &MergeCtx, names: &[&str]) -> Vec<Expr> {
    key_exprs(ctx)
        .into_iter()
        .chain(names.iter().map(|n| col(*n)))
        .collect()
}

/// Deletes the table's live rows whose key the (full-snapshot) run does not carry and that are
/// not newer than the run. Returns the kept rows and how many were deleted. Only the key and
/// metadata columns are joined; the wide rows are filtered once.
fn reconcile(
    table: DataFrame,
    staged: Option<&DataFrame>,
    ctx: &MergeCtx,
) -> PolarsResult<(DataFrame, u64)> {
    let keys = key_exprs(ctx);
    let carried = match (staged, &ctx.protected) {
        (Some(s), Some(p)) => Some(concat(
            [s.clone().lazy().select(keys.clone()), p.clone().lazy()],
            UnionArgs::default(),
        )?),
        (Some(s), None) => Some(s.clone().lazy().select(keys.clone())),
        (None, Some(p)) => Some(p.clone().lazy()),
        (None, None) => None,
    };
    let present = match carried {
        Some(k) => k
            .unique_generic(None, UniqueKeepStrategy::Any)
            .with_column(lit(true).alias(PRESENT)),
        None => {
            let mut fields: Vec<Field> = ctx
                .key
                .iter()
                .filter_map(|k| ctx.schema.get_field(k.as_str()))
                .collect();
            fields.push(Field::new(PRESENT.into(), DataType::Boolean));
            DataFrame::empty_with_schema(&Schema::from_iter(fields)).lazy()
        }
    };
    let run_ts = lit(ctx.run_micros).strict_cast(DataType::Datetime(
        TimeUnit::Microseconds,
        Some(TimeZone::UTC),
    ));
    let mut args = join_args(JoinType::Left);
    args.maintain_order = MaintainOrderJoin::Left;
    let absent = table
        .clone()
        .lazy()
        .select(keys_and(ctx, &[ML_DELETED, ML_EXTRACTED_AT]))
        .join(present, keys.clone(), keys, args)
        .select([col(PRESENT)
            .is_null()
            .and(is_true(ML_DELETED).not())
            .and(
                col(ML_EXTRACTED_AT)
                    .is_null()
                    .or(col(ML_EXTRACTED_AT).lt_eq(run_ts.clone())),
            )
            .alias(ABSENT)])
        .collect()?;
    let absent = absent.column(ABSENT)?.bool()?.clone();
    let n = absent.sum().unwrap_or(0) as u64;
    if n == 0 {
        return Ok((table, 0));
    }
    let kept = match ctx.mode {
        DeleteMode::Hard => table.filter(&!&absent)?,
        DeleteMode::Soft => table
            .lazy()
            .with_column(lit(Series::from(absent)).alias(ABSENT))
            .with_columns([
                when(col(ABSENT))
                    .then(lit(true))
                    .otherwise(col(ML_DELETED))
                    .alias(ML_DELETED),
                when(col(ABSENT))
                    .then(lit(ctx.run_id.clone()))
                    .otherwise(col(ML_RUN_ID))
                    .alias(ML_RUN_ID),
                when(col(ABSENT))
                    .then(run_ts)
                    .otherwise(col(ML_EXTRACTED_AT))
                    .alias(ML_EXTRACTED_AT),
            ])
            .select(
                ctx.schema
                    .iter_names()
                    .map(|n| col(n.clone()))
                    .collect::<Vec<_>>(),
            )
            .collect()?,
    };
    Ok((kept, n))
}

/// The outcome of [`resolve`].
struct Resolved {
    rows: DataFrame,
    upserted: u64,
    deleted: u64,
}

fn idx_of(df: &DataFrame, name: &str) -> PolarsResult<IdxCa> {
    let idx = df.column(name)?.idx()?.clone();
    Ok(idx.sort(false))
}

/// Picks the winning row per key and applies tombstones.
///
/// The decision is made on a narrow frame (key, `_ml_extracted_at`, `_ml_deleted`, row
/// position); the wide rows are then gathered once by position — or not at all when every row
/// survives (a first load without duplicates).
fn resolve(table: Option<DataFrame>, run: DataFrame, ctx: &MergeCtx) -> PolarsResult<Resolved> {
    let keys = key_exprs(ctx);
    let n_table = table.as_ref().map_or(0, DataFrame::height);
    let all = match table {
        Some(t) => {
            let mut t = t;
            t.vstack_mut(&run)?;
            t
        }
        None => run,
    };
    let narrow = all
        .clone()
        .lazy()
        .select(keys_and(ctx, &[ML_EXTRACTED_AT, ML_DELETED]))
        .with_row_index(SEQ, None)
        .with_column(col(SEQ).gt_eq(lit(n_table as IdxSize)).alias(SRC))
        .with_column(col(SRC).and(is_true(ML_DELETED)).alias(ABSENT))
        .sort(
            [ML_EXTRACTED_AT, SEQ],
            SortMultipleOptions::default()
                .with_nulls_last(false)
                .with_maintain_order(true),
        )
        .collect()?;
    // Per key, the newest row; ties go to the later position.
    let winners = narrow
        .clone()
        .lazy()
        .unique_stable_generic(Some(keys.clone()), UniqueKeepStrategy::Last)
        .collect()?;
    let count = |df: &DataFrame, pred: Expr| -> PolarsResult<u64> {
        Ok(df.clone().lazy().filter(pred).collect()?.height() as u64)
    };
    let upserted = count(&winners, col(SRC).and(col(ABSENT).not()))?;
    let tombs = winners.clone().lazy().filter(col(ABSENT)).collect()?;
    let deleted = if tombs.height() > 0 && n_table > 0 {
        let live_in_table = narrow
            .clone()
            .lazy()
            .filter(col(SRC).not().and(is_true(ML_DELETED).not()))
            .select(keys.clone());
        tombs
            .clone()
            .lazy()
            .select(keys.clone())
            .join(
                live_in_table,
                keys.clone(),
                keys.clone(),
                join_args(JoinType::Inner),
            )
            .collect()?
            .height() as u64
    } else {
        0
    };

    let keep = match ctx.mode {
        // Tombstones and rows already flagged deleted go.
        DeleteMode::Hard => winners.lazy().filter(is_true(ML_DELETED).not()).collect()?,
        DeleteMode::Soft => winners.lazy().filter(col(ABSENT).not()).collect()?,
    };
    let mut rows = if keep.height() == all.height() {
        all.clone()
    } else {
        all.take(&idx_of(&keep, SEQ)?)?
    };
    if ctx.mode == DeleteMode::Soft && tombs.height() > 0 {
        // Last known values: the newest row that is not a tombstone (table rows always carry
        // values, even when already flagged); a tombstone for a key never seen is dropped.
        let values = narrow
            .lazy()
            .filter(col(ABSENT).not())
            .unique_stable_generic(Some(keys.clone()), UniqueKeepStrategy::Last)
            .select(keys_and(ctx, &[SEQ]))
            .rename([SEQ], [VALUE_SEQ], true);
        let pairs = tombs
            .lazy()
            .select(keys_and(ctx, &[SEQ]))
            .join(values, keys.clone(), keys, join_args(JoinType::Inner))
            .collect()?;
        if pairs.height() > 0 {
            let tomb_idx = pairs.column(SEQ)?.idx()?.clone();
            let value_idx = pairs.column(VALUE_SEQ)?.idx()?.clone();
            let stamps = all.select([ML_RUN_ID, ML_EXTRACTED_AT])?.take(&tomb_idx)?;
            let mut flagged = all.take(&value_idx)?;
            flagged.with_column(stamps.column(ML_RUN_ID)?.clone())?;
            flagged.with_column(stamps.column(ML_EXTRACTED_AT)?.clone())?;
            flagged.with_column(Column::new(ML_DELETED.into(), vec![true; pairs.height()]))?;
            rows.vstack_mut(&flagged)?;
        }
    }
    Ok(Resolved {
        rows,
        upserted,
        deleted,
    })
}

/// Replaces a bucket's file: written under a temp name (which the `*.parquet` glob does not
/// match), fsynced, then renamed over the old file. An empty bucket other than bucket 0 has no
/// file; bucket 0 always has one, so a table always has at least one (possibly empty) file.
///
/// Fails on any file-system or encoding error; the old file is then untouched.
pub(super) fn write_bucket(dir: &Path, bucket: u32, mut df: DataFrame) -> Result<()> {
    let path = dir.join(bucket_file_name(bucket));
    if df.height() == 0 && bucket != 0 {
        return match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path, e)),
        };
    }
    let tmp = dir.join(format!("{}.tmp", bucket_file_name(bucket)));
    let file = fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    // zstd at level 1: the merge re-encodes whole buckets, so encoding speed counts more than
    // the few percent of size a higher level saves.
    let written = ParquetWriter::new(&file)
        .with_compression(ParquetCompression::Zstd(Some(
            polars::polars_utils::compression::ZstdLevel::try_new(1).map_err(pe("zstd level"))?,
        )))
        .with_statistics(StatisticsOptions::default())
        .finish(&mut df);
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(Error::warehouse_from(
            format!("writing {}", tmp.display()),
            e,
        ));
    }
    file.sync_all().map_err(|e| Error::io(&tmp, e))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
}
