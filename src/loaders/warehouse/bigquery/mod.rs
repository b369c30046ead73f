//! The BigQuery warehouse: each run's Parquet parts → a load job into a staging table → one
//! `MERGE` into the final table on the primary key → the staging table dropped. The caller
//! commits the stream's state only after [`BigQueryWarehouse::merge`] returns.
//!
//! Layout: one dataset per system (`raw_deltek`, ..., see `BigQueryConfig::dataset`), one table
//! per stream entity, created from the catalog (partitioned by day of the catalog's
//! `partition_by` or `_ml_extracted_at`, clustered by `cluster_by` or the primary key); new
//! catalog columns are added with `ALTER TABLE ADD COLUMN`, REQUIRED columns relaxed.
//!
//! Idempotency: every job of a run has a deterministic id ([`load::job_id`]). Before
//! starting a step the loader looks its job up; a step that already succeeded is not run
//! again (a retried run after a crash between MERGE and the state commit applies nothing
//! twice), a 409 on insert means someone else started it (wait for it), and a failed job is
//! retried under a derived id. The load job's id also carries the staging table's creation
//! time, so a staging table that expired and was re-created is loaded again.

mod api;
mod auth;
mod load;
mod merge;
mod schema;

pub use api::{Api, JobOutcome};
pub use auth::TokenSource;

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path as ObjPath;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
#[allow(deprecated)]
use parquet::arrow::async_reader::ParquetObjectReader;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::local::MergeStats;
use crate::config::BigQueryConfig;
use crate::config::DeleteMode;
use crate::error::{Error, Result};
use crate::lake::{Lake, Manifest};
use crate::spec::Stream;
use load::Source;
use merge::{MergeColumn, MergePlan};
use schema::{BqField, ident};

/// How long an abandoned staging table lives before BigQuery drops it.
const STAGING_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// BigQuery clusters by at most four columns.
const MAX_CLUSTER_COLUMNS: usize = 4;

/// The configured BigQuery project; the REST client is built on first use (credentials may
/// need a network round trip).
pub struct BigQueryWarehouse {
    cfg: BigQueryConfig,
    delete_mode: DeleteMode,
    api: OnceCell<Api>,
}

impl BigQueryWarehouse {
    pub fn new(cfg: BigQueryConfig, delete_mode: DeleteMode) -> Self {
        Self {
            cfg,
            delete_mode,
            api: OnceCell::new(),
        }
    }

    pub fn config(&self) -> &BigQueryConfig {
        &self.cfg
    }

    /// The REST client, built once from the configured credentials.
    ///
    /// Fails when credentials cannot be loaded (see [`TokenSource::from_config`]).
    pub async fn api(&self) -> Result<&Api> {
        self.api
            .get_or_try_init(|| async {
                let http = crate::http::shared_client()?;
                let auth = TokenSource::from_config(&self.cfg, http.clone()).await?;
                Ok::<_, Error>(Api::new(
                    http,
                    &self.cfg.base_url,
                    &self.cfg.project,
                    &self.cfg.location,
                    auth,
                ))
            })
            .await
    }

    /// `` `project.dataset.table` ``.
    fn table_ref(&self, dataset: &str, table: &str) -> String {
        ident(&format!("{}.{dataset}.{table}", self.cfg.project))
    }

    /// The `gs://` URL of the lake's root as BigQuery reads it, if it can.
    fn lake_gcs_root(&self, lake: &Lake) -> Option<String> {
        if lake.url().starts_with("gs://") {
            return Some(lake.url().trim_end_matches('/').to_string());
        }
        self.cfg.lake_gcs_url.clone()
    }

    /// Loads one complete run into the stream's table (see the module docs). Safe to call
    /// again for the same run after any failure.
    ///
    /// Fails on credentials, HTTP and job errors (with BigQuery's reason), or when a part
    /// cannot be read from the lake; nothing is committed then.
    pub async fn merge(
        &self,
        stream: &Stream,
        lake: &Lake,
        manifest: &Manifest,
        parts: &[ObjPath],
    ) -> Result<MergeStats> {
        let api = self.api().await?;
        let system = &stream.id.system;
        let entity = &stream.id.entity;
        let run = &manifest.run_id;
        let dataset = self.cfg.dataset(system, stream.source.dataset.as_deref());
        let target = self.table_ref(&dataset, entity);
        let staging = load::staging_table(entity, run);
        let merge_job = load::job_id(system, entity, run, "merge");
        let keys_only = manifest.kind == crate::lake::RunKind::Keyset;

        // A run whose MERGE already succeeded is done: do not load it again.
        let finished = match api.get_job(&merge_job).await? {
            Some(job)
                if job.pointer("/status/state").and_then(Value::as_str) == Some("DONE")
                    && job.pointer("/status/errorResult").is_none() =>
            {
                Some(job)
            }
            _ => None,
        };
        // (upserted, deleted) of this call's MERGE; an earlier attempt's MERGE counts nothing.
        let merged: Option<(u64, u64)> = match finished {
            Some(_) => None,
            None => {
                api.ensure_dataset(&dataset).await?;
                let target_fields = self.ensure_table(api, stream, &dataset, run).await?;
                let staging_fields = self.staging_fields(lake, stream, parts).await?;
                let created = self
                    .ensure_staging(api, &dataset, &staging, &staging_fields)
                    .await?;
                self.load(
                    api,
                    lake,
                    stream,
                    run,
                    &dataset,
                    &staging,
                    &staging_fields,
                    parts,
                    &created,
                )
                .await?;
                let columns = staging_fields
                    .iter()
                    .filter_map(|s| {
                        let t = target_fields.iter().find(|t| t.name == s.name)?;
                        Some(MergeColumn {
                            name: s.name.clone(),
                            parse_json: t.ty == "JSON" && s.ty == "STRING",
                        })
                    })
                    .collect();
                let key_types = stream
                    .catalog
                    .primary_key
                    .iter()
                    .map(|k| {
                        target_fields
                            .iter()
                            .find(|t| &t.name == k)
                            .map_or_else(|| "STRING".to_string(), |t| t.ty.clone())
                    })
                    .collect();
                let plan = MergePlan {
                    target: target.clone(),
                    staging: self.table_ref(&dataset, &staging),
                    key: &stream.catalog.primary_key,
                    columns,
                    delete_mode: self.delete_mode,
                    reconcile: manifest.reconciles_deletes(),
                    protected: &manifest.quarantined_keys,
                    key_types,
                    keys_only,
                    run_id: run,
                    run_micros: run_micros(manifest),
                };
                match plan.sql() {
                    Some(sql) => {
                        let counted = api.query_rows(&plan.stats_sql()).await?;
                        let cell = |i: usize| {
                            counted
                                .first()
                                .and_then(|r| r.get(i))
                                .and_then(Value::as_str)
                                .and_then(|v| v.parse::<u64>().ok())
                                .unwrap_or(0)
                        };
                        let counts = (cell(0), cell(1));
                        api.run_job(&merge_job, load::query_configuration(&sql), None)
                            .await?;
                        Some(counts)
                    }
                    None => None,
                }
            }
        };
        api.delete_table(&dataset, &staging).await?;

        let mut stats = MergeStats {
            rows_in: manifest.rows,
            ..MergeStats::default()
        };
        if let Some((upserted, deleted)) = merged {
            stats.upserted = upserted;
            stats.deleted = deleted;
        }
        stats.table_rows = self.count_rows(api, &target).await?;
        tracing::info!(stream = %stream.id, table = %target, upserted = stats.upserted, deleted = stats.deleted, table_rows = stats.table_rows, "merged into BigQuery");
        Ok(stats)
    }

    /// Rows in a table (soft-deleted rows included).
    pub async fn count_rows(&self, api: &Api, table_ref: &str) -> Result<u64> {
        let rows = api
            .query_rows(&format!("SELECT COUNT(*) FROM {table_ref}"))
            .await?;
        Ok(rows
            .first()
            .and_then(|r| r.first())
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0))
    }

    /// Creates the final table from the catalog, or evolves it towards the catalog. Returns
    /// the catalog's fields (the columns the table has afterwards).
    async fn ensure_table(
        &self,
        api: &Api,
        stream: &Stream,
        dataset: &str,
        run: &str,
    ) -> Result<Vec<BqField>> {
        let catalog = &stream.catalog;
        let fields = schema::table_fields(catalog);
        let table = &stream.id.entity;
        match api.get_table(dataset, table).await? {
            None => {
                let partition = catalog
                    .partition_by
                    .clone()
                    .unwrap_or_else(|| crate::schema::ML_EXTRACTED_AT.to_string());
                let clusterable = |name: &str| {
                    fields.iter().any(|f| {
                        f.name == name
                            && !f.repeated
                            && !matches!(f.ty.as_str(), "FLOAT64" | "JSON" | "BYTES")
                    })
                };
                let cluster_source = if catalog.cluster_by.is_empty() {
                    &catalog.primary_key
                } else {
                    &catalog.cluster_by
                };
                let cluster: Vec<&String> = cluster_source
                    .iter()
                    .filter(|c| clusterable(c))
                    .take(MAX_CLUSTER_COLUMNS)
                    .collect();
                let mut body = json!({
                    "tableReference": {"projectId": api.project, "datasetId": dataset, "tableId": table},
                    "schema": {"fields": fields.iter().map(BqField::to_json).collect::<Vec<_>>()},
                    "timePartitioning": {"type": "DAY", "field": partition},
                });
                if let Some(d) = &catalog.description {
                    body["description"] = json!(d);
                }
                if !cluster.is_empty() {
                    body["clustering"] = json!({ "fields": cluster });
                }
                api.create_table(dataset, body).await?;
            }
            Some(existing) => {
                let (ddl, conflicts) = schema::evolve(
                    &self.table_ref(dataset, table),
                    existing.pointer("/schema/fields").unwrap_or(&Value::Null),
                    &fields,
                );
                for c in conflicts {
                    tracing::warn!(stream = %stream.id, "BigQuery column type differs from the catalog: {c}");
                }
                for (i, stmt) in ddl.iter().enumerate() {
                    let id = load::job_id(&stream.id.system, table, run, &format!("ddl{i}"));
                    api.run_job(&id, load::query_configuration(stmt), None)
                        .await?;
                }
            }
        }
        Ok(fields)
    }

    /// The staging table's columns: the first part's schema as written (so an older run loads
    /// with the columns it has), or the catalog's when the run wrote no part.
    // parquet 59 deprecates ParquetObjectReader in favour of a hand-written AsyncFileReader;
    // it is still the simplest correct way to read one footer from the lake.
    #[allow(deprecated)]
    async fn staging_fields(
        &self,
        lake: &Lake,
        stream: &Stream,
        parts: &[ObjPath],
    ) -> Result<Vec<BqField>> {
        let arrow = match parts.first() {
            Some(part) => {
                let store: Arc<dyn ObjectStore> = lake.store();
                let reader = ParquetObjectReader::new(store, part.clone());
                let builder = ParquetRecordBatchStreamBuilder::new(reader)
                    .await
                    .map_err(|e| Error::lake(part, e))?;
                builder.schema().clone()
            }
            None => crate::schema::table_schema(&stream.catalog),
        };
        schema::staging_fields(&arrow).map_err(|e| Error::warehouse(format!("{}: {e}", stream.id)))
    }

    /// Creates the run's staging table unless it exists; returns its creation time (part of
    /// the load job's id).
    async fn ensure_staging(
        &self,
        api: &Api,
        dataset: &str,
        staging: &str,
        fields: &[BqField],
    ) -> Result<String> {
        if api.get_table(dataset, staging).await?.is_none() {
            let body = json!({
                "tableReference": {"projectId": api.project, "datasetId": dataset, "tableId": staging},
                "schema": {"fields": fields.iter().map(BqField::to_json).collect::<Vec<_>>()},
                "expirationTime": (chrono::Utc::now().timestamp_millis() + STAGING_TTL_MS).to_string(),
            });
            api.create_table(dataset, body).await?;
        }
        let table = api.get_table(dataset, staging).await?.ok_or_else(|| {
            Error::warehouse(format!("staging table {dataset}.{staging} vanished"))
        })?;
        Ok(table
            .get("creationTime")
            .and_then(Value::as_str)
            .unwrap_or("0")
            .to_string())
    }

    /// Loads the parts into the staging table: one job from `gs://` URIs when BigQuery can
    /// read the lake, else one upload job per part (the first truncates).
    #[allow(clippy::too_many_arguments)]
    async fn load(
        &self,
        api: &Api,
        lake: &Lake,
        stream: &Stream,
        run: &str,
        dataset: &str,
        staging: &str,
        fields: &[BqField],
        parts: &[ObjPath],
        staging_created: &str,
    ) -> Result<()> {
        if parts.is_empty() {
            return Ok(());
        }
        let (system, entity) = (&stream.id.system, &stream.id.entity);
        let step = format!("load_{staging_created}");
        match self.lake_gcs_root(lake) {
            Some(root) => {
                let uris: Vec<String> = parts.iter().map(|p| format!("{root}/{p}")).collect();
                let config = load::load_configuration(
                    &api.project,
                    dataset,
                    staging,
                    fields,
                    Source::Uris(&uris),
                    true,
                );
                api.run_job(&load::job_id(system, entity, run, &step), config, None)
                    .await?;
            }
            None => {
                for (i, part) in parts.iter().enumerate() {
                    let id = load::job_id(system, entity, run, &format!("{step}_p{i}"));
                    if let Some(job) = api.get_job(&id).await?
                        && job.pointer("/status/errorResult").is_none()
                        && job.pointer("/status/state").and_then(Value::as_str) == Some("DONE")
                    {
                        continue; // loaded by an earlier attempt: skip reading the file
                    }
                    let bytes = lake.get(part).await?;
                    let config = load::load_configuration(
                        &api.project,
                        dataset,
                        staging,
                        fields,
                        Source::Upload,
                        i == 0,
                    );
                    api.run_job(&id, config, Some(&bytes)).await?;
                }
            }
        }
        Ok(())
    }
}

/// The run's time for reconciliation: when its extraction started (rows changed after that
/// may be missing from the snapshot and must survive), in µs UTC.
fn run_micros(m: &Manifest) -> i64 {
    chrono::DateTime::parse_from_rfc3339(&m.started_at)
        .map(|t| t.timestamp_micros())
        .unwrap_or_else(|_| chrono::Utc::now().timestamp_micros())
}
