//! Lands the sink audit in the warehouse as `mlc_sink.audit`, so analysts (and Looker) see what
//! moved from the CRM to the ERP next to the data itself. The audit entries newer than the last
//! landed one become one lake run (Parquet part + manifest, like a stream run) merged on `seq`:
//! landing twice never duplicates, and a crash before the merge lands the same entries again.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as ObjPath;
use serde_json::json;

use crate::error::{Error, Result};
use crate::lake::{Lake, Manifest, PartInfo, PartWriter, sha256_hex};
use crate::run::Context;
use crate::spec::{CatalogFile, SourceFile, Stream, StreamFile, StreamId};

/// The warehouse dataset and table of the audit.
pub const DATASET: &str = "mlc_sink";
pub const TABLE: &str = "audit";

/// The state key remembering the last landed audit sequence number.
const LANDED: &str = "_audit_landed";

/// The audit as a stream the warehouse merges like any other: never read from an API (its
/// rows come from the state store), so its source settings are placeholders.
fn audit_stream() -> Result<Stream> {
    let bad = |e: toml::de::Error| Error::Definition {
        path: "src/loaders/sink/audit_catalog.toml".into(),
        message: e.to_string(),
    };
    let catalog: CatalogFile = toml::from_str(include_str!("audit_catalog.toml")).map_err(bad)?;
    let source: SourceFile = toml::from_str(&format!(
        "reader = \"deltek\"\npagination = \"page_number\"\npage_size = 1\ndataset = \"{DATASET}\"\n"
    ))
    .map_err(bad)?;
    let spec: StreamFile = toml::from_str("incremental = \"cursor\"\n").map_err(bad)?;
    Ok(Stream {
        id: StreamId::new("mlc", TABLE),
        source,
        spec,
        catalog,
        live: None,
    })
}

/// Lands every audit entry not landed yet (all flows); returns how many.
pub async fn land(ctx: &Context) -> Result<usize> {
    let last: i64 = ctx
        .state
        .sink_cursor(LANDED, LANDED)?
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let entries = ctx.state.sink_audit_since(last)?;
    let Some(newest) = entries.last().map(|e| e.seq) else {
        return Ok(0);
    };
    let stream = audit_stream()?;
    let schema = crate::schema::table_schema(&stream.catalog);
    let mut lines = Vec::new();
    for a in &entries {
        let row = json!({
            "seq": a.seq, "at": a.at, "flow": a.flow, "job_id": a.job_id,
            "mapping": a.source_entity, "source_id": a.source_id,
            "source_version": a.source_version, "target": a.target, "action": a.action,
            "method": a.method, "request": a.request, "status": a.status,
            "target_key": a.target_key, "ms": a.ms, "error": a.error,
            crate::schema::ML_DELETED: false,
        });
        serde_json::to_writer(&mut lines, &row).map_err(|e| Error::state_from("audit row", e))?;
        lines.push(b'\n');
    }
    let reader = arrow_json::ReaderBuilder::new(Arc::clone(&schema))
        .build(std::io::Cursor::new(lines))
        .map_err(|e| Error::state_from("audit rows", e))?;
    let mut w = PartWriter::new(schema)?;
    for batch in reader {
        let batch = batch.map_err(|e| Error::state_from("audit rows", e))?;
        w.write(&batch, 0)?;
    }
    let bytes: Bytes = w.finish()?;
    let now = chrono::Utc::now();
    let run_id = format!("{}-audit{newest}", now.format("%Y%m%dT%H%M%S%3fZ"));
    let path = Lake::part_path(&stream.id, &run_id, 0, None);
    ctx.lake.put(&path, bytes.clone()).await?;
    let manifest = Manifest {
        run_id: run_id.clone(),
        stream: stream.id.to_string(),
        connection: "mlc".into(),
        kind: crate::lake::RunKind::Incremental,
        reconcile: false,
        schema_hash: crate::schema::schema_hash(&stream.catalog),
        started_at: now.to_rfc3339(),
        finished_at: now.to_rfc3339(),
        rows: entries.len() as u64,
        deleted: 0,
        quarantined: 0,
        cursor_start: Some(last.to_string()),
        cursor_end: Some(newest.to_string()),
        files: vec![PartInfo {
            path: path.to_string(),
            rows: entries.len() as u64,
            deleted: 0,
            bytes: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        }],
        quarantine_files: vec![],
        ..Default::default()
    };
    ctx.lake.write_manifest(&manifest, None).await?;
    ctx.warehouse
        .merge(
            &stream,
            &ctx.lake,
            &manifest,
            &[ObjPath::from(path.to_string())],
        )
        .await?;
    ctx.state
        .sink_set_cursor(LANDED, LANDED, &newest.to_string())?;
    tracing::info!(
        entries = entries.len(),
        newest,
        "sink audit landed in {DATASET}.{TABLE}"
    );
    Ok(entries.len())
}
