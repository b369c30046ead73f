//! Warehouses a stream run is loaded into. `local` (embedded, the default) keeps current-state
//! Parquet tables merged with polars; BigQuery comes through load jobs + MERGE.

pub mod bigquery;
pub mod local;

/// How `mlc query` prints a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// An aligned text table for people.
    #[default]
    Table,
    /// CSV with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
}

use object_store::path::Path as ObjPath;

use crate::config::{WarehouseConfig, WarehouseKind};
use crate::error::{Error, Result};
use crate::lake::{Lake, Manifest};
use crate::spec::Stream;
use bigquery::BigQueryWarehouse;
use local::{LocalWarehouse, MergeRequest, MergeStats};

/// The configured warehouse.
pub enum Warehouse {
    Local(LocalWarehouse),
    /// Boxed: a BigQuery client is much larger than the local warehouse handle.
    Bigquery(Box<BigQueryWarehouse>),
}

impl Warehouse {
    pub fn open(cfg: &WarehouseConfig) -> Result<Self> {
        match cfg.kind {
            WarehouseKind::Local => Ok(Warehouse::Local(LocalWarehouse::open(
                &cfg.path,
                cfg.delete_mode,
            )?)),
            WarehouseKind::Bigquery => {
                let bq = cfg.bigquery.clone().ok_or_else(|| {
                    Error::config(
                        "warehouse.kind = \"bigquery\" needs a [warehouse.bigquery] table with project = \"<gcp-project-id>\"",
                    )
                })?;
                Ok(Warehouse::Bigquery(Box::new(BigQueryWarehouse::new(
                    bq,
                    cfg.delete_mode,
                ))))
            }
        }
    }

    /// Merges the change set of one complete run (its manifest) into the stream's table.
    pub async fn merge(
        &self,
        stream: &Stream,
        lake: &Lake,
        manifest: &Manifest,
        parts: &[ObjPath],
    ) -> Result<MergeStats> {
        match self {
            Warehouse::Local(w) => {
                w.merge(MergeRequest {
                    dataset: &stream.dataset(),
                    table: &stream.id.entity,
                    store: lake.store(),
                    parts,
                    primary_key: &stream.catalog.primary_key,
                    schema: crate::schema::table_schema(&stream.catalog),
                    reconcile: manifest.reconciles_deletes(),
                    protected: &manifest.quarantined_keys,
                    keys_only: manifest.kind == crate::lake::RunKind::Keyset,
                    run_id: &manifest.run_id,
                    extracted_at_micros: chrono::Utc::now().timestamp_micros(),
                })
                .await
            }
            Warehouse::Bigquery(w) => w.merge(stream, lake, manifest, parts).await,
        }
    }

    /// Runs SQL over the warehouse tables and renders the result.
    pub fn query(&self, sql: &str, format: OutputFormat) -> Result<String> {
        match self {
            Warehouse::Local(w) => w.query(sql, format),
            Warehouse::Bigquery(w) => Err(Error::config(format!(
                "`mlc query` runs on the local warehouse; query BigQuery project {} with `bq query` or the console",
                w.config().project
            ))),
        }
    }

    /// The local warehouse, for commands that only it supports.
    pub fn local(&self) -> Option<&LocalWarehouse> {
        match self {
            Warehouse::Local(w) => Some(w),
            Warehouse::Bigquery(_) => None,
        }
    }

    /// The BigQuery warehouse, when configured.
    pub fn bigquery(&self) -> Option<&BigQueryWarehouse> {
        match self {
            Warehouse::Bigquery(w) => Some(w),
            Warehouse::Local(_) => None,
        }
    }
}
