//! The sink's one read path: the change sets stream runs wrote to the lake (DESIGN.md §9),
//! newer than the flow's cursor, in run order. Never the source API: what the sink writes is
//! exactly what the lake holds, so a plan can be replayed from the same files.

use arrow_array::RecordBatch;
use object_store::path::Path;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::lake::{Lake, Manifest, read_parquet};
use crate::spec::StreamId;
use crate::state::{RunStatus, StateStore};

/// One source record of a change set.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRow {
    /// Primary key value (joined with `|` for composite keys).
    pub id: String,
    /// The row version, part of the job id: `versionnumber` for Dataverse, else the stream's
    /// modified-time cursor column in epoch microseconds (Pipedrive `update_time`).
    pub version: Option<i64>,
    /// The source marked it deleted (`_ml_deleted`): the sink never deletes in the target.
    pub deleted: bool,
    /// The record, columns by catalog name.
    pub record: Map<String, Value>,
}

/// The complete runs of a stream after `after` (exclusive), oldest first. A run without a
/// manifest is incomplete: reading stops before it, so a run still in progress is never skipped
/// and its changes are picked up once its manifest lands. A run the state store abandoned
/// before its manifest never completes (the run after it reads again what it would have
/// carried): it is passed over, not waited for. A run the state says was extracted whose
/// manifest is not in the lake is an error (the lake lost it), never a silent stop.
pub async fn runs_after(
    lake: &Lake,
    state: &StateStore,
    id: &StreamId,
    after: Option<&str>,
) -> Result<Vec<Manifest>> {
    let prefix = Path::from(id.lake_prefix());
    let listed = lake
        .store()
        .list_with_delimiter(Some(&prefix))
        .await
        .map_err(|e| Error::lake(&prefix, e))?;
    let mut runs: Vec<String> = listed
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename()?.strip_prefix("run=").map(String::from))
        .filter(|r| after.is_none_or(|a| r.as_str() > a))
        .collect();
    // Runs the state says were extracted are read even when the lake lists nothing of them
    // (then their missing manifest is an error below, not a run silently left out).
    runs.extend(state.extracted_runs_after(&id.to_string(), after)?);
    // Run ids start with their UTC start time, so their order is run order.
    runs.sort();
    runs.dedup();
    let mut out = Vec::new();
    for r in runs {
        // The run's own manifest, as the state recorded it (runs it does not know, such as the
        // sink's audit, were written without a lease).
        let known = state.run(&r)?;
        let recorded = known.as_ref().and_then(|k| k.manifest.as_deref());
        let path = Lake::recorded_manifest(id, &r, recorded);
        match lake.read_manifest_at(&path).await? {
            Some(m) => out.push(m),
            None if recorded.is_some() => {
                return Err(Error::lake(
                    &path,
                    format!(
                        "run {r} was extracted (the state store records this manifest) but the manifest is not in the lake"
                    ),
                ));
            }
            None if known
                .as_ref()
                .is_some_and(|k| matches!(k.status, RunStatus::Abandoned | RunStatus::Absent)) =>
            {
                tracing::info!(stream = %id, run_id = %r, "run was abandoned before its manifest: the sink passes over it");
                continue;
            }
            None => {
                tracing::info!(stream = %id, run_id = %r, "run has no manifest yet: the sink stops before it");
                break;
            }
        }
    }
    Ok(out)
}

/// What one run holds for the sink.
#[derive(Debug, Default)]
pub struct RunRead {
    /// The changed rows, in part order.
    pub rows: Vec<ChangeRow>,
    /// When the run lists every live key ([`Manifest::reconciles_deletes`]): the ids of the
    /// live rows it carries. Empty otherwise.
    pub listed: Vec<String>,
}

/// The changed rows of one run. `key` names the primary-key columns; `version` the row-version
/// column when the catalog has one; `columns` (when given) the other columns to keep: the rest
/// are dropped from each batch before it becomes records. A key-set pass lists every live key
/// (keys only) to find deletes: only its tombstones are changes, its keys are `listed`.
pub async fn read_run(
    lake: &Lake,
    m: &Manifest,
    key: &[String],
    version: Option<&str>,
    columns: Option<&std::collections::BTreeSet<String>>,
) -> Result<RunRead> {
    let listing = m.reconciles_deletes();
    let mut out = RunRead::default();
    for part in &m.files {
        let path = Path::from(part.path.as_str());
        let bytes = lake.get(&path).await?;
        for batch in read_parquet(bytes)? {
            let batch = match columns {
                None => batch,
                Some(cols) => {
                    let schema = batch.schema();
                    let wanted: Vec<usize> = schema
                        .fields()
                        .iter()
                        .enumerate()
                        .filter(|(_, f)| {
                            let n = f.name();
                            cols.contains(n)
                                || key.contains(n)
                                || version == Some(n.as_str())
                                || n == "_ml_deleted"
                        })
                        .map(|(i, _)| i)
                        .collect();
                    batch.project(&wanted).map_err(|e| Error::lake(&path, e))?
                }
            };
            for record in batch_to_json(&batch).map_err(|e| Error::lake(&path, e))? {
                let id = key
                    .iter()
                    .map(|k| match record.get(k) {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Null) | None => String::new(),
                        Some(v) => v.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join("|");
                let version = version.and_then(|v| record.get(v)).and_then(version_of);
                let deleted = record.get("_ml_deleted") == Some(&Value::Bool(true));
                if listing && !deleted {
                    out.listed.push(id.clone());
                }
                if m.kind == crate::lake::RunKind::Keyset && !deleted {
                    continue;
                }
                out.rows.push(ChangeRow {
                    id,
                    version,
                    deleted,
                    record,
                });
            }
        }
    }
    Ok(out)
}

/// A version value as an integer: a number, or a timestamp as epoch microseconds.
fn version_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok().or_else(|| {
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| t.timestamp_micros())
                .ok()
                .or_else(|| {
                    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                        .ok()
                        .map(|t| t.and_utc().timestamp_micros())
                })
        }),
        _ => None,
    }
}

/// A batch as JSON objects (nulls left out), via arrow-json's writer.
fn batch_to_json(batch: &RecordBatch) -> std::result::Result<Vec<Map<String, Value>>, String> {
    let mut w = arrow_json::ArrayWriter::new(Vec::new());
    w.write(batch).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())?;
    let bytes = w.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}
