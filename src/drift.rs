//! Catalog drift (`mlc catalog diff`): fields the source sends that the catalog does not type.
//! They are kept in `_ml_extra` (nothing is lost); this module counts them per table so a
//! catalog can be extended (a stream file + catalog change, no Rust).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Result;
use crate::loaders::warehouse::{OutputFormat, Warehouse};
use crate::spec::Stream;

/// Rows scanned per table: enough to find the fields, bounded for large tables.
const SAMPLE_ROWS: usize = 100_000;

/// Untyped fields of one table.
#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    pub stream: String,
    /// Field → rows (in the sample) carrying it.
    pub untyped_fields: BTreeMap<String, u64>,
}

/// Scans `_ml_extra` of each stream's table. Tables not loaded yet are skipped.
pub fn diff(warehouse: &Warehouse, streams: &[&Stream]) -> Result<Vec<Drift>> {
    let mut out = Vec::new();
    for s in streams {
        let sql = format!(
            "SELECT _ml_extra FROM {}.{} WHERE _ml_extra IS NOT NULL LIMIT {SAMPLE_ROWS}",
            s.dataset(),
            s.id.entity
        );
        let Ok(json) = warehouse.query(&sql, OutputFormat::Json) else {
            continue;
        };
        let rows: Vec<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_str(&json).unwrap_or_default();
        let mut fields = BTreeMap::new();
        for row in rows {
            let Some(serde_json::Value::String(extra)) = row.get("_ml_extra") else {
                continue;
            };
            if let Ok(serde_json::Value::Object(m)) = serde_json::from_str(extra) {
                for k in m.keys() {
                    *fields.entry(k.clone()).or_insert(0) += 1;
                }
            }
        }
        out.push(Drift {
            stream: s.id.to_string(),
            untyped_fields: fields,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batches::RowDecoder;
    use crate::config::{WarehouseConfig, WarehouseKind};
    use crate::lake::{Lake, Manifest, PartWriter};
    use crate::loaders::warehouse::DeleteMode;
    use crate::spec::Definitions;

    // polars blocks in place inside a tokio runtime: it needs the multi-threaded flavour.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counts_untyped_fields_per_table() {
        let dir = tempfile::tempdir().unwrap();
        let defs = Definitions::builtin().unwrap();
        let stream = defs.get(&"dataverse.account".parse().unwrap()).unwrap();
        let a = r#"{"accountid":"a1","name":"x","new_tier":"gold"}"#;
        let b = r#"{"accountid":"a2","new_tier":"silver","new_score":3}"#;
        let body = format!("{a}{b}");
        let dec = RowDecoder::new(stream, "crm", "r1").unwrap();
        let page = dec
            .decode_page(body.as_bytes(), &[0..a.len(), a.len()..body.len()], 0)
            .unwrap();
        assert!(page.quarantined.is_empty(), "{:?}", page.quarantined);
        let mut w = PartWriter::new(dec.schema()).unwrap();
        w.write(&page.batch.unwrap(), 0).unwrap();
        let lake = Lake::open("memory://", dir.path()).unwrap();
        let part = Lake::part_path(&stream.id, "r1", 0);
        lake.put(&part, w.finish().unwrap()).await.unwrap();
        let wh = Warehouse::open(&WarehouseConfig {
            kind: WarehouseKind::Local,
            path: dir.path().join("wh"),
            delete_mode: DeleteMode::Hard,
            bigquery: None,
        })
        .unwrap();
        let manifest = Manifest {
            run_id: "r1".into(),
            stream: stream.id.to_string(),
            connection: "crm".into(),
            kind: "snapshot".into(),
            reconcile: true,
            schema_hash: String::new(),
            started_at: String::new(),
            finished_at: String::new(),
            rows: 2,
            deleted: 0,
            quarantined: 0,
            cursor_start: None,
            cursor_end: None,
            files: vec![],
            quarantine_files: vec![],
        };
        wh.merge(stream, &lake, &manifest, &[part]).await.unwrap();
        let d = diff(&wh, &[stream]).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].untyped_fields["new_tier"], 2);
        assert_eq!(d[0].untyped_fields["new_score"], 1);
    }
}
