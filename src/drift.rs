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
            s.id.dataset(),
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
