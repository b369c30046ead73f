//! One conformance suite for every warehouse, in the pattern of object_store's
//! `integration.rs`: each `check_*` function is written once against a [`Harness`], and each
//! warehouse has one test that runs every check — the embedded local warehouse in plain
//! `cargo test`, BigQuery against the emulator (`.ci/emulators.sh`; skipped without it outside
//! CI, as in `bigquery.rs`).
//!
//! The product is driven as in production: an mlc.toml reading the in-process sandbox's
//! Dataverse tenant, `run_many` syncs of `dataverse.account` into the configured warehouse.
//! Every assertion compares the warehouse with the sandbox's own truth ([`Sandbox::truth`],
//! the rows as its API serves them), never with another reading of the warehouse.
//!
//! A warehouse that passes guarantees:
//! - **merge**: after a full sync and an incremental one over updated, inserted and deleted
//!   rows, the table holds exactly the tenant's live rows, each with its current values, each
//!   key once;
//! - **deletes**: rows deleted in the tenant leave the table (`delete_mode = "hard"`) or stay
//!   with their last values and `_ml_deleted = true` (`"soft"`), whether the delete arrives
//!   in a delta or is found by a full snapshot's reconciliation;
//! - **schema evolution**: a field the tenant adds between two runs becomes a column holding
//!   the tenant's value for every row, and no row is lost;
//! - **quarantine-safe reconcile**: a reconciling run never deletes a row because its record
//!   could not be read, whether its key was readable (the key is protected, other absent rows
//!   are deleted) or not (nothing is deleted), and the rows recover once the tenant serves them
//!   whole again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use arrow_array::RecordBatch;
use ml_connector::lake::{Lake, Manifest};
use ml_connector::loaders::warehouse::OutputFormat;
use ml_connector::loaders::warehouse::bigquery::BigQueryWarehouse;
use ml_connector::run::{Context, RunRequest, RunSummary, run_many};
use ml_connector::sandbox::{Sandbox, SandboxOptions, TruthRow};
use ml_connector::spec::Stream;
use ml_connector::spec::live::LiveEntity;
use serde_json::Value;
use tempfile::TempDir;

use crate::bigquery::{Emu, emulator, unique};
use crate::support::write_project;

/// The stream every check syncs, its Dataverse entity set and key.
const STREAM: &str = "dataverse.account";
const ENTITY: &str = "account";
const ENTITY_SET: &str = "accounts";
const KEY: &str = "accountid";
/// The connection `support::write_project` names the sandbox's Dataverse.
const CONN: &str = "crm";
/// Accounts in the sandbox: enough for every mutation round to insert, update and delete.
const SCALE: u64 = 30;
/// Columns compared with the tenant, row by row: text and integers, whose text is the same in
/// every warehouse and in the API's JSON.
const COMPARED: &[&str] = &[
    KEY,
    "versionnumber",
    "name",
    "accountnumber",
    "emailaddress1",
    "telephone1",
    "address1_city",
    "numberofemployees",
];
/// A custom field of the standard tenant's accounts (text, sometimes null).
const CUSTOM_FIELD: &str = "new_region";

/// A warehouse under test.
enum Backend {
    /// The embedded warehouse (Parquet tables merged with polars).
    Local,
    /// BigQuery on the emulator, the lake under its GCS root so `gs://` loads read it.
    BigQuery(Emu),
}

impl Backend {
    /// The mlc.toml sections that make this backend the project's warehouse.
    fn sections(&self, delete_mode: &str) -> String {
        match self {
            Backend::Local => format!("\n[warehouse]\ndelete_mode = \"{delete_mode}\"\n"),
            Backend::BigQuery(emu) => {
                let bucket = unique("mlc-conf-");
                let prefix = unique("c").to_lowercase() + "_raw_";
                format!(
                    r#"
[lake]
url = "file://{root}/{bucket}"

[warehouse]
kind = "bigquery"
delete_mode = "{delete_mode}"

[warehouse.bigquery]
project = "{project}"
base_url = "{url}"
credentials = "none"
dataset_prefix = "{prefix}"
lake_gcs_url = "gs://{bucket}"
"#,
                    root = emu.gcs_root,
                    project = emu.project,
                    url = emu.url,
                )
            }
        }
    }
}

/// One project: a fresh sandbox tenant, mlc.toml reading it into the backend, the context.
struct Harness {
    /// Holds the project folder for the harness's lifetime.
    _dir: TempDir,
    sandbox: Sandbox,
    ctx: Context,
}

impl Harness {
    async fn new(backend: &Backend, delete_mode: &str) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::start(
            SandboxOptions {
                scale: SCALE,
                retry_after_secs: 0,
                ..SandboxOptions::default()
            },
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let config = write_project(dir.path(), &sandbox, &backend.sections(delete_mode));
        let ctx = Context::open(config).unwrap();
        Harness {
            _dir: dir,
            sandbox,
            ctx,
        }
    }

    /// Syncs the stream (`full`: a full snapshot, which reconciles deletes); panics if it fails.
    async fn sync(&self, full: bool) -> RunSummary {
        let conn = self.ctx.config.connection(CONN).unwrap();
        let mut results = run_many(
            &self.ctx,
            &[conn],
            &[STREAM.to_string()],
            &RunRequest::Sync { full },
        )
        .await
        .unwrap();
        assert_eq!(results.len(), 1);
        let (label, r) = results.remove(0);
        r.unwrap_or_else(|e| panic!("{label} failed: {e}"))
    }

    /// The stream as the runs read it: the catalog plus the tenant's fields, from the live
    /// schema the runs cached.
    fn stream(&self) -> Stream {
        let base = self.ctx.defs.get(&STREAM.parse().unwrap()).unwrap();
        let live = self.ctx.state.live_schema(CONN, STREAM).unwrap();
        ml_connector::tenant::reconcile(&self.ctx.state, CONN, base, live.as_ref())
            .unwrap()
            .stream
    }

    /// Runs `SELECT <select> FROM <the table> AS t` on BigQuery; each row's values as text
    /// (NULL as ""), sorted. `None` when the warehouse is not BigQuery.
    async fn bq_select(&self, select: &str) -> Option<Vec<Vec<String>>> {
        let w: &BigQueryWarehouse = self.ctx.warehouse.bigquery()?;
        let stream = self.stream();
        let dataset = w
            .config()
            .dataset(&stream.id.system, stream.source.dataset.as_deref());
        let sql = format!(
            "SELECT {select} FROM `{}.{dataset}.{ENTITY}` AS t",
            w.config().project
        );
        let api = w.api().await.unwrap();
        let mut rows: Vec<Vec<String>> = api
            .query_rows(&sql)
            .await
            .unwrap()
            .iter()
            .map(|r| r.iter().map(text).collect())
            .collect();
        rows.sort();
        Some(rows)
    }

    /// `columns` of every row of the warehouse table (soft-deleted rows included) as text
    /// (NULL as ""), sorted.
    async fn table(&self, columns: &[&str]) -> Vec<Vec<String>> {
        if let Some(rows) = self.bq_select(&columns.join(", ")).await {
            return rows;
        }
        let local = self.ctx.warehouse.local().unwrap();
        local
            .keys(&self.stream().dataset(), ENTITY, columns)
            .unwrap()
    }

    /// The warehouse table's column names, as its queries see them.
    ///
    /// BigQuery: the keys of a row as JSON (every column, NULL ones included), not the table's
    /// metadata: the emulator (bqemulator 1.4.0) does not update `tables.get` after an
    /// `ALTER TABLE ADD COLUMN`, which the table's queries do see.
    async fn columns(&self) -> BTreeSet<String> {
        if let Some(rows) = self.bq_select("TO_JSON_STRING(t)").await {
            let row: serde_json::Map<String, Value> =
                serde_json::from_str(&rows.first().expect("the table has a row")[0]).unwrap();
            return row.keys().cloned().collect();
        }
        let sql = format!("SELECT * FROM {}.{ENTITY} LIMIT 0", self.stream().dataset());
        let csv = self.ctx.warehouse.query(&sql, OutputFormat::Csv).unwrap();
        let header = csv.lines().next().unwrap_or_default();
        header.split(',').map(str::to_string).collect()
    }

    /// The warehouse's live rows (not flagged deleted): `columns` as text, sorted.
    async fn live_table(&self, columns: &[&str]) -> Vec<Vec<String>> {
        let flagged = self.flagged().await;
        let mut cols = vec![KEY];
        cols.extend(columns.iter().filter(|c| **c != KEY));
        self.table(&cols)
            .await
            .into_iter()
            .filter(|r| !flagged.contains(&r[0]))
            .map(|r| {
                columns
                    .iter()
                    .map(|c| r[cols.iter().position(|x| x == c).unwrap()].clone())
                    .collect()
            })
            .collect()
    }

    /// Keys of the rows flagged `_ml_deleted` (none when the table has no such column).
    async fn flagged(&self) -> BTreeSet<String> {
        if !self.columns().await.contains("_ml_deleted") {
            return BTreeSet::new();
        }
        self.table(&[KEY, "_ml_deleted"])
            .await
            .into_iter()
            .filter(|r| r[1] == "true")
            .map(|r| r[0].clone())
            .collect()
    }

    /// The tenant's live rows by key, straight from the sandbox.
    fn truth(&self) -> BTreeMap<String, TruthRow> {
        self.sandbox
            .truth("dataverse", ENTITY)
            .unwrap()
            .into_iter()
            .map(|r| (text(&r[KEY]), r))
            .collect()
    }

    /// Fails unless the warehouse's live rows are exactly `expected` (by key) on `columns`,
    /// each key once.
    async fn assert_rows(
        &self,
        expected: &BTreeMap<String, TruthRow>,
        columns: &[&str],
        when: &str,
    ) {
        let got = self.live_table(columns).await;
        let keys: BTreeSet<&String> = got.iter().map(|r| &r[0]).collect();
        assert_eq!(
            keys.len(),
            got.len(),
            "{when}: duplicate keys in the warehouse"
        );
        let want = project(expected.values(), columns);
        if got != want {
            let g: BTreeSet<&Vec<String>> = got.iter().collect();
            let w: BTreeSet<&Vec<String>> = want.iter().collect();
            panic!(
                "{when}: the warehouse differs from the tenant ({} rows vs {}).\nonly in the warehouse: {:#?}\nonly in the tenant: {:#?}",
                got.len(),
                want.len(),
                g.difference(&w).take(5).collect::<Vec<_>>(),
                w.difference(&g).take(5).collect::<Vec<_>>()
            );
        }
    }
}

/// A value as text, the way every warehouse's rows are read here (NULL as "").
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `columns` of each row as text, sorted (the shape [`Harness::table`] returns).
fn project<'a>(rows: impl Iterator<Item = &'a TruthRow>, columns: &[&str]) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = rows
        .map(|r| {
            columns
                .iter()
                .map(|c| text(r.get(*c).unwrap_or(&Value::Null)))
                .collect()
        })
        .collect();
    out.sort();
    out
}

/// Keys of `a` not in `b`.
fn missing(a: &BTreeMap<String, TruthRow>, b: &BTreeMap<String, TruthRow>) -> BTreeSet<String> {
    a.keys().filter(|k| !b.contains_key(*k)).cloned().collect()
}

/// Full sync, then an incremental one after a round of inserts, updates and deletes: the
/// table equals the tenant, the changed rows with their new values, no key twice.
async fn check_merge(b: &Backend) {
    let h = Harness::new(b, "hard").await;
    let first = h.sync(false).await;
    assert_eq!(first.kind, "snapshot");
    h.assert_rows(&h.truth(), COMPARED, "after the full sync")
        .await;

    let before = h.truth();
    let round = h.sandbox.mutate().entity_sets[ENTITY_SET];
    assert!(
        round.inserted > 0 && round.updated > 0 && round.deleted > 0,
        "{round:?}"
    );
    let after = h.truth();
    // Rows whose compared values changed (not only their version): the merge must carry them.
    let changed: Vec<&String> = after
        .iter()
        .filter(|(k, r)| {
            before.get(*k).is_some_and(|old| {
                COMPARED
                    .iter()
                    .filter(|c| !matches!(**c, KEY | "versionnumber"))
                    .any(|c| old.get(*c) != r.get(*c))
            })
        })
        .map(|(k, _)| k)
        .collect();
    assert!(!changed.is_empty(), "the round changed no compared value");

    let out = h.sync(false).await;
    assert_eq!(out.kind, "incremental", "{:?}", out.notes);
    assert_eq!(out.table_rows, after.len() as u64);
    h.assert_rows(&after, COMPARED, "after the incremental sync")
        .await;
}

/// Deletes in both modes, arriving in a delta and found by a full snapshot's reconciliation:
/// hard mode removes the rows; soft mode keeps them, flagged, with their last values.
async fn check_deletes(b: &Backend) {
    for mode in ["hard", "soft"] {
        let h = Harness::new(b, mode).await;
        h.sync(false).await;
        let mut gone: BTreeMap<String, TruthRow> = BTreeMap::new();
        for full in [false, true] {
            let before = h.truth();
            let round = h.sandbox.mutate().entity_sets[ENTITY_SET];
            let after = h.truth();
            let deleted = missing(&before, &after);
            assert_eq!(deleted.len() as u64, round.deleted);
            assert!(!deleted.is_empty(), "{mode}: the round deleted nothing");
            let how = if full { "a full snapshot" } else { "a delta" };
            let out = h.sync(full).await;
            assert_eq!(out.deleted, round.deleted, "{mode}, {how}: {:?}", out.notes);
            gone.extend(before.into_iter().filter(|(k, _)| deleted.contains(k)));

            let when = format!("{mode} deletes through {how}");
            h.assert_rows(&after, COMPARED, &when).await;
            let flagged = h.flagged().await;
            let all: BTreeSet<String> = h
                .table(&[KEY])
                .await
                .into_iter()
                .map(|r| r[0].clone())
                .collect();
            if mode == "hard" {
                assert!(flagged.is_empty(), "{when}: {flagged:?}");
                assert!(
                    gone.keys().all(|k| !all.contains(k)),
                    "{when}: a deleted row stays"
                );
            } else {
                let want: BTreeSet<String> = gone.keys().cloned().collect();
                assert_eq!(flagged, want, "{when}: flagged rows");
                // A flagged row keeps the values it had when it was deleted.
                let kept: Vec<Vec<String>> = h
                    .table(COMPARED)
                    .await
                    .into_iter()
                    .filter(|r| flagged.contains(&r[0]))
                    .collect();
                assert_eq!(
                    kept,
                    project(gone.values(), COMPARED),
                    "{when}: last values"
                );
            }
        }
    }
}

/// A field the tenant adds between two runs: the next run adds its column, with the tenant's
/// value for every row, and loses no row.
///
/// The sandbox's tenants have a fixed schema, so the field's arrival is what mlc sees of it:
/// the first metadata read is cached without the field (as if read before the tenant added
/// it), and the next read (the cache's expiry, forced as `tenants.rs` does) lists it.
async fn check_schema_evolution(b: &Backend) {
    let h = Harness::new(b, "hard").await;
    let conn = h.ctx.config.connection(CONN).unwrap();
    let ep = ml_connector::connect::endpoint(conn, &h.ctx.vault).unwrap();
    let base = h.ctx.defs.get(&STREAM.parse().unwrap()).unwrap();
    let mut live = ml_connector::tenant::live(&h.ctx.state, conn, &ep, base, true)
        .await
        .unwrap();
    let LiveEntity::Present { fields, .. } = &mut live.entity else {
        panic!("no live schema: {:?}", live.entity);
    };
    let n = fields.len();
    fields.retain(|f| f.source != CUSTOM_FIELD);
    assert_eq!(fields.len(), n - 1, "the tenant has `{CUSTOM_FIELD}`");
    h.ctx.state.put_live_schema(CONN, STREAM, &live).unwrap();

    let first = h.sync(false).await;
    assert!(
        !first
            .schema
            .new_columns
            .iter()
            .any(|(_, f)| f == CUSTOM_FIELD),
        "{:?}",
        first.schema
    );
    let columns_before = h.columns().await;
    let truth = h.truth();
    h.assert_rows(&truth, COMPARED, "before the field").await;

    // The tenant's metadata, read again, lists the field.
    ml_connector::tenant::live(&h.ctx.state, conn, &ep, base, true)
        .await
        .unwrap();
    let out = h.sync(false).await;
    let (column, _) = out
        .schema
        .new_columns
        .iter()
        .find(|(_, f)| f == CUSTOM_FIELD)
        .unwrap_or_else(|| panic!("no column for `{CUSTOM_FIELD}`: {:?}", out.schema))
        .clone();
    let columns_after = h.columns().await;
    assert!(
        !columns_before.contains(&column) && columns_after.contains(&column),
        "`{column}`: before {columns_before:?}, after {columns_after:?}"
    );
    assert!(
        columns_before.is_subset(&columns_after),
        "a column was dropped"
    );

    // Every row is still there, unchanged, and carries the tenant's value of the new field.
    let mut with_field: Vec<&str> = COMPARED.to_vec();
    with_field.push(&column);
    let truth: BTreeMap<String, TruthRow> = truth
        .into_iter()
        .map(|(k, mut r)| {
            let v = r.get(CUSTOM_FIELD).cloned().unwrap_or(Value::Null);
            r.insert(column.clone(), v);
            (k, r)
        })
        .collect();
    assert!(
        truth.values().any(|r| !r[&column].is_null()),
        "the tenant has no value of `{CUSTOM_FIELD}`: the check would prove nothing"
    );
    h.assert_rows(&truth, &with_field, "after the field appeared")
        .await;
}

/// A reconciling run never deletes a row because its record could not be read.
async fn check_quarantine(b: &Backend) {
    let h = Harness::new(b, "hard").await;
    let first = h.sync(false).await;
    assert_eq!(first.kind, "snapshot");
    h.assert_rows(&h.truth(), COMPARED, "after the full sync")
        .await;
    unreadable_keys_stop_deletes(&h).await;
    // A full snapshot of the tenant as it is now: the change set the next part edits.
    let snapshot = h.sync(true).await;
    assert_eq!(snapshot.kind, "snapshot");
    assert_eq!(snapshot.deleted, 0, "{:?}", snapshot.notes);
    quarantined_key_is_protected(&h, &snapshot.run_id, &h.truth()).await;
}

/// A reconciling merge whose change set lacks three live rows, the first of them quarantined
/// with a readable key: it deletes the other two only. The sandbox serves no record mlc
/// quarantines with its key readable (it salvages badly typed values), so the run is the
/// full snapshot `run_id` (every live row of `truth`) with that outcome written into it, merged
/// as the run's load step merges it.
async fn quarantined_key_is_protected(
    h: &Harness,
    run_id: &str,
    truth: &BTreeMap<String, TruthRow>,
) {
    let stream = h.stream();
    let recorded = h.ctx.state.run(run_id).unwrap().unwrap().manifest;
    let manifest = h
        .ctx
        .lake
        .read_manifest_at(&ml_connector::lake::Lake::recorded_manifest(
            &stream.id,
            run_id,
            recorded.as_deref(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(
        manifest.reconciles_deletes(),
        "the first sync is a reconciling snapshot"
    );
    let part = object_store::path::Path::from(manifest.files[0].path.as_str());
    let mut batches = read_batches(&h.ctx.lake, &part).await;
    let ids = batches[0]
        .column_by_name(KEY)
        .unwrap()
        .as_any()
        .downcast_ref::<arrow_array::StringArray>()
        .unwrap()
        .clone();
    let absent: Vec<String> = (0..3).map(|i| ids.value(i).to_string()).collect();
    batches[0] = batches[0].slice(3, batches[0].num_rows() - 3);

    let mut m: Manifest = manifest.clone();
    m.run_id = format!("{}-q", manifest.run_id);
    // A run started now: every row of the table is older, so absence alone decides.
    m.started_at = chrono::Utc::now().to_rfc3339();
    m.finished_at = m.started_at.clone();
    m.quarantined = 1;
    m.quarantined_keys = vec![vec![absent[0].clone()]];
    m.quarantined_unkeyed = 0;
    let new_part = Lake::part_path(&stream.id, &m.run_id, 0, None);
    h.ctx
        .lake
        .put(&new_part, write_batches(&batches).into())
        .await
        .unwrap();
    m.files[0].path = new_part.to_string();
    m.files[0].rows -= 3;
    assert!(m.reconciles_deletes());
    let parts: Vec<object_store::path::Path> = m
        .files
        .iter()
        .map(|f| object_store::path::Path::from(f.path.as_str()))
        .collect();
    let stats = h
        .ctx
        .warehouse
        .merge(&stream, &h.ctx.lake, &m, &parts)
        .await
        .unwrap();
    assert_eq!(stats.deleted, 2);
    let mut expected = truth.clone();
    expected.remove(&absent[1]);
    expected.remove(&absent[2]);
    h.assert_rows(
        &expected,
        COMPARED,
        "after a reconcile with a quarantined key",
    )
    .await;
}

/// Records whose key the tenant serves unreadable: a full snapshot quarantines them and
/// deletes nothing (any row could be one of them), the rows keep their last values, and once
/// the tenant serves them whole again the table equals the tenant.
async fn unreadable_keys_stop_deletes(h: &Harness) {
    let before = h.truth();
    let broken = h.sandbox.break_keys(ENTITY_SET, 2).unwrap();
    let out = h.sync(true).await;
    assert_eq!(out.kind, "snapshot");
    assert_eq!((out.quarantined, out.deleted), (2, 0), "{:?}", out.notes);
    // The tenant's rows, the broken ones as they were before their keys broke.
    let mut expected: BTreeMap<String, TruthRow> = h
        .truth()
        .into_iter()
        .filter(|(k, _)| before.contains_key(k) && !broken.contains(k))
        .collect();
    for k in &broken {
        expected.insert(k.clone(), before[k].clone());
    }
    assert_eq!(expected.len(), before.len());
    h.assert_rows(&expected, COMPARED, "after a snapshot with unreadable keys")
        .await;

    h.sandbox.mutate();
    h.sync(false).await;
    h.assert_rows(&h.truth(), COMPARED, "once the keys are readable again")
        .await;
}

async fn read_batches(lake: &Lake, part: &object_store::path::Path) -> Vec<RecordBatch> {
    let bytes = lake.get(part).await.unwrap();
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn write_batches(batches: &[RecordBatch]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batches[0].schema(), None).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
    buf
}

/// Runs every check against `backend`, printing how long each took.
async fn conformance(backend: Backend) {
    timed("merge", check_merge(&backend)).await;
    timed("deletes", check_deletes(&backend)).await;
    timed("schema evolution", check_schema_evolution(&backend)).await;
    timed("quarantine", check_quarantine(&backend)).await;
}

async fn timed(check: &str, run: impl Future<Output = ()>) {
    let start = Instant::now();
    run.await;
    eprintln!("{check}: {:.1?}", start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warehouse_conformance_local() {
    conformance(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the BigQuery emulator (.ci/emulators.sh)"]
async fn warehouse_conformance_bigquery() {
    let Some(emu) = emulator("warehouse_conformance_bigquery") else {
        return;
    };
    conformance(Backend::BigQuery(emu)).await;
}
