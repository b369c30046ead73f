//! `mlc catalog diff`: how each tenant differs from the catalog, and what that cost. Per stream
//! and connection: what the latest run found about the tenant (an absent entity, catalog
//! columns the tenant lacks, columns added for the tenant's own fields), values whose type
//! drifted (landed NULL, kept in `_ml_extra` under their column's name), and fields the
//! catalog does not type at all (kept in `_ml_extra`; add them to the catalog to type them).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::Config;
use crate::error::Result;
use crate::loaders::warehouse::{OutputFormat, Warehouse};
use crate::run::RunReport;
use crate::spec::Stream;
use crate::state::StateStore;
use crate::tenant::SchemaReport;

/// Rows scanned per table: enough to find the fields, bounded for large tables.
const SAMPLE_ROWS: usize = 100_000;

/// How one table differs from its catalog.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Drift {
    pub stream: String,
    /// What the latest run of each connection found about its tenant.
    pub tenants: BTreeMap<String, SchemaReport>,
    /// Values of the latest run of each connection that did not fit their column, per column.
    pub type_drift: BTreeMap<String, BTreeMap<String, u64>>,
    /// Rows of the table holding a drifted value of a column in `_ml_extra`.
    pub drifted_rows: BTreeMap<String, u64>,
    /// Fields the catalog does not type → rows (in the sample) carrying them.
    pub untyped_fields: BTreeMap<String, u64>,
}

impl Drift {
    /// Whether the table is exactly what its catalog says.
    pub fn is_clean(&self) -> bool {
        self.tenants.values().all(|r| r.lines().is_empty())
            && self.type_drift.values().all(BTreeMap::is_empty)
            && self.drifted_rows.is_empty()
            && self.untyped_fields.is_empty()
    }

    /// One line per finding.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (conn, r) in &self.tenants {
            out.extend(r.lines().into_iter().map(|l| format!("{conn}: {l}")));
        }
        for (conn, d) in &self.type_drift {
            for (col, n) in d {
                out.push(format!(
                    "{conn}: {n} values of `{col}` did not fit its type in the latest run (NULL, kept in _ml_extra)"
                ));
            }
        }
        for (col, n) in &self.drifted_rows {
            out.push(format!(
                "{n} rows hold a value of `{col}` that did not fit its type (in _ml_extra.{col})"
            ));
        }
        for (field, n) in &self.untyped_fields {
            out.push(format!(
                "`{field}` is not in the catalog ({n} rows carry it in _ml_extra)"
            ));
        }
        out
    }
}

/// The differences of each stream. Tables not loaded yet have only their tenant findings.
pub fn diff(
    config: &Config,
    state: &StateStore,
    warehouse: &Warehouse,
    streams: &[&Stream],
) -> Result<Vec<Drift>> {
    let mut out = Vec::new();
    for s in streams {
        let sid = s.id.to_string();
        let mut d = Drift {
            stream: sid.clone(),
            ..Drift::default()
        };
        // The table's columns: the catalog's and those the tenants added.
        let mut columns: std::collections::BTreeSet<String> =
            s.catalog.columns.iter().map(|c| c.name.clone()).collect();
        for conn in config.connections.values() {
            let Some(report) = state.latest_report(&conn.name, &sid)? else {
                continue;
            };
            let r: RunReport = serde_json::from_str(&report).unwrap_or_default();
            columns.extend(r.schema.new_columns.iter().map(|(c, _)| c.clone()));
            d.tenants.insert(conn.name.clone(), r.schema);
            if !r.drift.is_empty() {
                d.type_drift.insert(conn.name.clone(), r.drift);
            }
        }
        let sql = format!(
            "SELECT _ml_extra FROM {}.{} WHERE _ml_extra IS NOT NULL LIMIT {SAMPLE_ROWS}",
            s.dataset(),
            s.id.entity
        );
        if let Ok(json) = warehouse.query(&sql, OutputFormat::Json) {
            let rows: Vec<serde_json::Map<String, serde_json::Value>> =
                serde_json::from_str(&json).unwrap_or_default();
            for row in rows {
                let Some(serde_json::Value::String(extra)) = row.get("_ml_extra") else {
                    continue;
                };
                let Ok(serde_json::Value::Object(m)) = serde_json::from_str(extra) else {
                    continue;
                };
                for k in m.keys() {
                    // A key named like a column is a value that did not fit it.
                    let bucket = if columns.contains(k) {
                        &mut d.drifted_rows
                    } else {
                        &mut d.untyped_fields
                    };
                    *bucket.entry(k.clone()).or_insert(0) += 1;
                }
            }
        }
        out.push(d);
    }
    Ok(out)
}
