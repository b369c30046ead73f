//! Tests of the local warehouse: merges, deletes, crash recovery, schema evolution and SQL,
//! plus an ignored 1 M-row measurement (`cargo test --lib -- --ignored merge_1m --nocapture`).

use std::collections::BTreeSet;
use std::fs;
use std::path::Path as FsPath;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array, RecordBatch,
    StringArray, TimestampMicrosecondArray, new_null_array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ArrowWriter;

use super::meta::{TableMeta, bucket_files};
use super::*;
use crate::schema::table_schema;
use crate::spec::Definitions;

const DAY: i64 = 86_400_000_000;
const T0: i64 = 1_714_521_600_000_000; // 2024-05-01T00:00:00Z

fn account_schema() -> SchemaRef {
    let defs = Definitions::builtin().unwrap();
    let s = defs.get(&"dataverse.account".parse().unwrap()).unwrap();
    table_schema(&s.catalog)
}

fn contact_schema() -> SchemaRef {
    let defs = Definitions::builtin().unwrap();
    let s = defs.get(&"dataverse.contact".parse().unwrap()).unwrap();
    table_schema(&s.catalog)
}

/// One source row: values by column name (strings parsed per the column's type), the rest null.
#[derive(Clone)]
struct Row {
    values: Vec<(&'static str, String)>,
}

fn account(id: &str, name: &str, revenue: &str, ts: i64, run: &str) -> Row {
    Row {
        values: vec![
            ("accountid", id.into()),
            ("name", name.into()),
            ("revenue", revenue.into()),
            ("lastusedincampaign", "19844".into()), // 2024-05-01
            ("numberofemployees", "12".into()),
            ("_ml_run_id", run.into()),
            ("_ml_extracted_at", ts.to_string()),
            ("_ml_deleted", "false".into()),
        ],
    }
}

fn tombstone(id: &str, ts: i64, run: &str) -> Row {
    Row {
        values: vec![
            ("accountid", id.into()),
            ("_ml_run_id", run.into()),
            ("_ml_extracted_at", ts.to_string()),
            ("_ml_deleted", "true".into()),
        ],
    }
}

fn decimal_unscaled(text: &str, scale: i8) -> i128 {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let mut frac = frac.to_string();
    while frac.len() < scale as usize {
        frac.push('0');
    }
    format!("{int}{frac}").parse().unwrap()
}

fn batch(schema: &SchemaRef, rows: &[Row]) -> RecordBatch {
    let cols: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| {
            let vals: Vec<Option<&str>> = rows
                .iter()
                .map(|r| {
                    r.values
                        .iter()
                        .find(|(n, _)| *n == f.name())
                        .map(|(_, v)| v.as_str())
                })
                .collect();
            if vals.iter().all(Option::is_none) {
                return new_null_array(f.data_type(), rows.len());
            }
            let a: ArrayRef = match f.data_type() {
                DataType::Utf8 => Arc::new(StringArray::from(vals)),
                DataType::Int64 => Arc::new(Int64Array::from(
                    vals.iter()
                        .map(|v| v.map(|s| s.parse().unwrap()))
                        .collect::<Vec<_>>(),
                )),
                DataType::Float64 => Arc::new(Float64Array::from(
                    vals.iter()
                        .map(|v| v.map(|s| s.parse().unwrap()))
                        .collect::<Vec<_>>(),
                )),
                DataType::Boolean => Arc::new(BooleanArray::from(
                    vals.iter()
                        .map(|v| v.map(|s| s == "true"))
                        .collect::<Vec<_>>(),
                )),
                DataType::Date32 => Arc::new(Date32Array::from(
                    vals.iter()
                        .map(|v| v.map(|s| s.parse().unwrap()))
                        .collect::<Vec<_>>(),
                )),
                DataType::Decimal128(p, s) => Arc::new(
                    Decimal128Array::from(
                        vals.iter()
                            .map(|v| v.map(|x| decimal_unscaled(x, *s)))
                            .collect::<Vec<_>>(),
                    )
                    .with_precision_and_scale(*p, *s)
                    .unwrap(),
                ),
                DataType::Timestamp(_, _) => Arc::new(
                    TimestampMicrosecondArray::from(
                        vals.iter()
                            .map(|v| v.map(|s| s.parse().unwrap()))
                            .collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
                other => panic!("test helper: unsupported type {other}"),
            };
            a
        })
        .collect();
    RecordBatch::try_new(schema.clone(), cols).unwrap()
}

async fn put_part(
    store: &Arc<dyn ObjectStore>,
    path: &str,
    schema: &SchemaRef,
    rows: &[Row],
) -> Path {
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema.clone(), None).unwrap();
    w.write(&batch(schema, rows)).unwrap();
    w.close().unwrap();
    let p = Path::from(path);
    store.put(&p, buf.into()).await.unwrap();
    p
}

struct Fixture {
    _dir: tempfile::TempDir,
    wh: LocalWarehouse,
    store: Arc<dyn ObjectStore>,
}

fn fixture(mode: DeleteMode, bucket_rows: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let wh = LocalWarehouse::open(&dir.path().join("warehouse"), mode)
        .unwrap()
        .with_bucket_rows(bucket_rows);
    Fixture {
        _dir: dir,
        wh,
        store: Arc::new(InMemory::new()),
    }
}

impl Fixture {
    /// Writes `parts` for `run` and merges them into raw_dataverse.<table>.
    async fn run_parts(
        &self,
        table: &str,
        schema: &SchemaRef,
        pk: &[&str],
        run: &str,
        parts: &[Vec<Row>],
        reconcile: bool,
    ) -> MergeStats {
        let mut paths = Vec::new();
        for (i, rows) in parts.iter().enumerate() {
            let p = format!("raw/dataverse/{table}/run={run}/part-{i:05}.parquet");
            paths.push(put_part(&self.store, &p, schema, rows).await);
        }
        self.merge_paths(table, schema, pk, run, &paths, reconcile)
            .await
    }

    async fn merge_paths(
        &self,
        table: &str,
        schema: &SchemaRef,
        pk: &[&str],
        run: &str,
        paths: &[Path],
        reconcile: bool,
    ) -> MergeStats {
        self.merge_with(table, schema, pk, run, paths, reconcile, &[], false)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn merge_with(
        &self,
        table: &str,
        schema: &SchemaRef,
        pk: &[&str],
        run: &str,
        paths: &[Path],
        reconcile: bool,
        protected: &[Vec<String>],
        keys_only: bool,
    ) -> MergeStats {
        let pk: Vec<String> = pk.iter().map(|s| s.to_string()).collect();
        self.wh
            .merge(MergeRequest {
                dataset: "raw_dataverse",
                table,
                store: self.store.clone(),
                parts: paths,
                primary_key: &pk,
                schema: schema.clone(),
                reconcile,
                protected,
                keys_only,
                run_id: run,
                extracted_at_micros: T0 + 30 * DAY,
            })
            .await
            .unwrap()
    }

    async fn accounts(&self, run: &str, parts: &[Vec<Row>], reconcile: bool) -> MergeStats {
        self.run_parts(
            "account",
            &account_schema(),
            &["accountid"],
            run,
            parts,
            reconcile,
        )
        .await
    }

    fn rows(&self, cols: &[&str]) -> Vec<Vec<String>> {
        self.wh.keys("raw_dataverse", "account", cols).unwrap()
    }

    fn ids(&self) -> Vec<String> {
        self.rows(&["accountid"])
            .into_iter()
            .map(|mut r| r.remove(0))
            .collect()
    }

    fn table_dir(&self) -> std::path::PathBuf {
        self.wh.table_dir("raw_dataverse", "account")
    }
}

fn sv(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn first_load() -> Vec<Row> {
    (1..=5)
        .map(|i| {
            account(
                &format!("a{i}"),
                &format!("Name {i}"),
                &format!("{i}00.5"),
                T0,
                "r1",
            )
        })
        .collect()
}

fn second_run() -> Vec<Row> {
    vec![
        account("a1", "Renamed 1", "111.1111", T0 + DAY, "r2"),
        account("a6", "Name 6", "600", T0 + DAY, "r2"),
        tombstone("a2", T0 + DAY, "r2"),
        tombstone("zz", T0 + DAY, "r2"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_load_then_changes_hard_delete() {
    let f = fixture(DeleteMode::Hard, 2);
    let s = f.accounts("r1", &[first_load()], false).await;
    assert_eq!(
        (s.rows_in, s.upserted, s.deleted, s.table_rows),
        (5, 5, 0, 5)
    );
    let meta = TableMeta::load(&f.table_dir()).unwrap().unwrap();
    assert_eq!(
        meta.buckets, 4,
        "5 rows at 2 per bucket -> 3 -> next power of two"
    );
    assert_eq!(f.ids(), sv(&["a1", "a2", "a3", "a4", "a5"]));

    let s = f.accounts("r2", &[second_run()], false).await;
    assert_eq!(
        (s.rows_in, s.upserted, s.deleted, s.table_rows),
        (4, 2, 1, 5)
    );
    assert_eq!(
        f.rows(&["accountid", "name", "revenue", "_ml_run_id", "_ml_deleted"]),
        vec![
            sv(&["a1", "Renamed 1", "111.1111", "r2", "false"]),
            sv(&["a3", "Name 3", "300.5000", "r1", "false"]),
            sv(&["a4", "Name 4", "400.5000", "r1", "false"]),
            sv(&["a5", "Name 5", "500.5000", "r1", "false"]),
            sv(&["a6", "Name 6", "600.0000", "r2", "false"]),
        ]
    );
    assert_eq!(f.wh.row_count("raw_dataverse", "account").unwrap(), 5);
    assert_eq!(f.wh.tables().unwrap(), sv(&["raw_dataverse.account"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_delete_keeps_last_known_values() {
    let f = fixture(DeleteMode::Soft, 2);
    f.accounts("r1", &[first_load()], false).await;
    let s = f.accounts("r2", &[second_run()], false).await;
    // a2 flagged (not removed), unknown zz not invented.
    assert_eq!(
        (s.rows_in, s.upserted, s.deleted, s.table_rows),
        (4, 2, 1, 6)
    );
    let rows = f.rows(&[
        "accountid",
        "name",
        "revenue",
        "_ml_run_id",
        "_ml_deleted",
        "_ml_extracted_at",
    ]);
    assert_eq!(
        rows[1],
        sv(&[
            "a2",
            "Name 2",
            "200.5000",
            "r2",
            "true",
            "2024-05-02T00:00:00Z"
        ])
    );
    assert!(!rows.iter().any(|r| r[0] == "zz"));

    // A second tombstone keeps the values; an update resurrects the key.
    let s = f
        .accounts("r3", &[vec![tombstone("a2", T0 + 2 * DAY, "r3")]], false)
        .await;
    assert_eq!((s.upserted, s.deleted, s.table_rows), (0, 0, 6));
    let s = f
        .accounts(
            "r4",
            &[vec![account("a2", "Back", "1", T0 + 3 * DAY, "r4")]],
            false,
        )
        .await;
    assert_eq!((s.upserted, s.deleted), (1, 0));
    let rows = f.rows(&["accountid", "name", "_ml_deleted"]);
    assert_eq!(rows[1], sv(&["a2", "Back", "false"]));

    // Inserted and deleted within one run: kept as deleted with the inserted values.
    let s = f
        .accounts(
            "r5",
            &[vec![
                account("n1", "Short-lived", "5", T0 + 4 * DAY, "r5"),
                tombstone("n1", T0 + 4 * DAY, "r5"),
            ]],
            false,
        )
        .await;
    assert_eq!((s.upserted, s.deleted, s.table_rows), (0, 0, 7));
    let rows = f.rows(&["accountid", "name", "_ml_deleted"]);
    assert!(rows.contains(&sv(&["n1", "Short-lived", "true"])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_keys_in_one_run_last_and_newest_win() {
    let f = fixture(DeleteMode::Hard, 1);
    let s = f
        .accounts(
            "r1",
            &[
                vec![
                    account("a1", "first", "1", T0, "r1"),
                    account("a1", "second", "2", T0, "r1"),
                    account("b1", "newest", "1", T0 + DAY, "r1"),
                ],
                vec![
                    account("a1", "third (later part)", "3", T0, "r1"),
                    // Later in the run but older: the newest extraction time wins.
                    account("b1", "stale", "2", T0, "r1"),
                ],
            ],
            false,
        )
        .await;
    assert_eq!((s.rows_in, s.upserted, s.table_rows), (5, 2, 2));
    assert_eq!(
        f.rows(&["accountid", "name"]),
        vec![sv(&["a1", "third (later part)"]), sv(&["b1", "newest"])]
    );
}

fn many(n: usize, run: &str, ts: i64) -> Vec<Row> {
    (0..n)
        .map(|i| account(&format!("k{i:03}"), &format!("n{i}"), "1", ts, run))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_deletes_missing_keys_in_every_bucket() {
    let f = fixture(DeleteMode::Hard, 5);
    let s = f.accounts("r1", &[many(40, "r1", T0)], false).await;
    assert_eq!(s.table_rows, 40);
    let meta = TableMeta::load(&f.table_dir()).unwrap().unwrap();
    assert_eq!(meta.buckets, 8);
    assert_eq!(bucket_files(&f.table_dir()).unwrap().len(), 8);

    // A newer row outside the snapshot (written after the run started) must survive.
    f.accounts(
        "late",
        &[vec![account("late1", "late", "1", T0 + 60 * DAY, "late")]],
        false,
    )
    .await;

    // A snapshot holding only k000..k004: the other keys vanish from every bucket.
    let snapshot: Vec<Row> = many(5, "r2", T0 + DAY);
    let s = f.accounts("r2", &[snapshot], true).await;
    assert_eq!(
        (s.rows_in, s.upserted, s.deleted, s.table_rows),
        (5, 5, 35, 6)
    );
    assert_eq!(
        f.ids(),
        sv(&["k000", "k001", "k002", "k003", "k004", "late1"])
    );
    // Buckets left empty lost their file, except bucket 0 which always exists.
    for (b, p) in bucket_files(&f.table_dir()).unwrap() {
        assert!(b == 0 || file_rows(&p).unwrap() > 0);
    }

    // Soft mode: the missing keys are flagged and stamped with the run.
    let f = fixture(DeleteMode::Soft, 5);
    f.accounts("r1", &[many(40, "r1", T0)], false).await;
    let s = f.accounts("r2", &[many(5, "r2", T0 + DAY)], true).await;
    assert_eq!((s.deleted, s.table_rows), (35, 40));
    let rows = f.rows(&[
        "accountid",
        "name",
        "_ml_deleted",
        "_ml_run_id",
        "_ml_extracted_at",
    ]);
    assert_eq!(
        rows[39],
        sv(&["k039", "n39", "true", "r2", "2024-05-31T00:00:00Z"])
    );
    // Re-applying the snapshot deletes nothing more.
    let s = f.accounts("r2", &[many(5, "r2", T0 + DAY)], true).await;
    assert_eq!((s.deleted, s.table_rows), (0, 40));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_never_deletes_a_quarantined_key() {
    for mode in [DeleteMode::Hard, DeleteMode::Soft] {
        let f = fixture(mode, 5);
        f.accounts("r1", &[many(40, "r1", T0)], false).await;
        // A snapshot that read k000..k004 and quarantined the records of k010 and k020 (their
        // keys readable): those two stay, with their previous values; the rest is deleted.
        let snapshot = many(5, "r2", T0 + DAY);
        let p = put_part(
            &f.store,
            "raw/dataverse/account/run=r2/part-00000.parquet",
            &account_schema(),
            &snapshot,
        )
        .await;
        let protected = vec![vec!["k010".to_string()], vec!["k020".to_string()]];
        let s = f
            .merge_with(
                "account",
                &account_schema(),
                &["accountid"],
                "r2",
                &[p],
                true,
                &protected,
                false,
            )
            .await;
        assert_eq!(s.deleted, 33, "{mode:?}");
        let live: Vec<Vec<String>> = f
            .rows(&["accountid", "name", "_ml_deleted", "_ml_run_id"])
            .into_iter()
            .filter(|r| r[2] != "true")
            .collect();
        let ids: Vec<&str> = live.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(
            ids,
            ["k000", "k001", "k002", "k003", "k004", "k010", "k020"],
            "{mode:?}"
        );
        assert_eq!(live[5], sv(&["k010", "n10", "false", "r1"]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projected_pass_updates_only_the_columns_it_carries() {
    let f = fixture(DeleteMode::Hard, 5);
    f.accounts("r1", &[many(20, "r1", T0)], false).await;
    // Keys and one computed column (revenue) of k000..k014: k015.. are gone from the source,
    // and `zz` is new there (a projected pass inserts nothing).
    let schema = Arc::new(arrow_schema::Schema::new(
        account_schema()
            .fields()
            .iter()
            .filter(|f| {
                ["accountid", "revenue"].contains(&f.name().as_str())
                    || f.name().starts_with("_ml_")
            })
            .map(|f| f.as_ref().clone())
            .collect::<Vec<_>>(),
    ));
    let mut rows: Vec<Row> = (0..15)
        .map(|i| Row {
            values: vec![
                ("accountid", format!("k{i:03}")),
                ("revenue", format!("{i}00.5")),
                ("_ml_run_id", "ks".into()),
                ("_ml_extracted_at", (T0 + DAY).to_string()),
            ],
        })
        .collect();
    rows.push(Row {
        values: vec![("accountid", "zz".into()), ("revenue", "9".into())],
    });
    let p = put_part(
        &f.store,
        "raw/dataverse/account/run=ks/part-00000.parquet",
        &schema,
        &rows,
    )
    .await;
    let s = f
        .merge_with(
            "account",
            &schema,
            &["accountid"],
            "ks",
            &[p],
            true,
            &[],
            true,
        )
        .await;
    assert_eq!((s.upserted, s.deleted, s.table_rows), (15, 5, 15));
    let rows = f.rows(&["accountid", "name", "revenue", "_ml_run_id"]);
    assert_eq!(rows[3], sv(&["k003", "n3", "300.5000", "r1"]));
    assert!(!rows.iter().any(|r| r[0] == "zz"));
}

fn all_columns() -> Vec<String> {
    account_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_merging_a_run_is_idempotent() {
    for mode in [DeleteMode::Hard, DeleteMode::Soft] {
        let f = fixture(mode, 2);
        f.accounts("r1", &[first_load()], false).await;
        f.accounts("r2", &[second_run()], false).await;
        let cols = all_columns();
        let cols: Vec<&str> = cols.iter().map(String::as_str).collect();
        let once = f.rows(&cols);
        let count = f.wh.row_count("raw_dataverse", "account").unwrap();
        let s = f.accounts("r2", &[second_run()], false).await;
        assert_eq!(f.rows(&cols), once, "{mode:?}");
        assert_eq!(s.table_rows, count);
        assert_eq!(s.deleted, 0, "already deleted");
    }
}

fn copy_dir(from: &FsPath, to: &FsPath) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_merge_leftovers_and_partial_swaps_recover() {
    let f = fixture(DeleteMode::Hard, 2);
    f.accounts("r1", &[first_load()], false).await;
    let dir = f.table_dir();
    let before = f._dir.path().join("before");
    copy_dir(&dir, &before);

    // The complete result of run 2, for reference.
    let paths: Vec<Path> = {
        let p = put_part(
            &f.store,
            "raw/dataverse/account/run=r2/part-00000.parquet",
            &account_schema(),
            &second_run(),
        )
        .await;
        vec![p]
    };
    f.merge_paths(
        "account",
        &account_schema(),
        &["accountid"],
        "r2",
        &paths,
        false,
    )
    .await;
    let cols = all_columns();
    let cols: Vec<&str> = cols.iter().map(String::as_str).collect();
    let expected = f.rows(&cols);
    let after = f._dir.path().join("after");
    copy_dir(&dir, &after);

    // Crash state: only one bucket swapped, plus temp and staging leftovers (garbage).
    fs::remove_dir_all(&dir).unwrap();
    copy_dir(&before, &dir);
    let swapped = bucket_files(&after).unwrap().into_iter().find(|(b, _)| {
        let old = before.join(meta::bucket_file_name(*b));
        !old.exists()
            || fs::read(&old).unwrap() != fs::read(after.join(meta::bucket_file_name(*b))).unwrap()
    });
    let (b, p) = swapped.expect("run 2 changed some bucket");
    fs::copy(&p, dir.join(meta::bucket_file_name(b))).unwrap();
    fs::write(dir.join("b-00001.parquet.tmp"), b"half a file").unwrap();
    fs::write(dir.join("_table.json.tmp"), b"{ half").unwrap();
    let staging = f.wh.root().join("_staging/raw_dataverse/account");
    fs::create_dir_all(&staging).unwrap();
    fs::write(staging.join("b00000-000000.parquet"), b"garbage").unwrap();

    // Readers are not disturbed by the leftovers.
    assert!(f.wh.row_count("raw_dataverse", "account").unwrap() >= 4);
    let out =
        f.wh.query(
            "SELECT count(*) AS n FROM raw_dataverse.account",
            OutputFormat::Csv,
        )
        .unwrap();
    assert!(out.starts_with("n\n"), "{out}");

    // Re-running the run converges on the complete result and cleans up.
    f.merge_paths(
        "account",
        &account_schema(),
        &["accountid"],
        "r2",
        &paths,
        false,
    )
    .await;
    assert_eq!(f.rows(&cols), expected);
    assert!(!dir.join("b-00001.parquet.tmp").exists());
    assert!(!dir.join("_table.json.tmp").exists());
    assert!(!staging.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_evolution_adds_columns_and_keeps_dropped_ones() {
    let f = fixture(DeleteMode::Hard, 2);
    let full = account_schema();
    // The "old catalog": without `description`.
    let old: SchemaRef = Arc::new(Schema::new(
        full.fields()
            .iter()
            .filter(|fl| fl.name() != "description")
            .map(|fl| fl.as_ref().clone())
            .collect::<Vec<Field>>(),
    ));
    f.run_parts(
        "account",
        &old,
        &["accountid"],
        "r1",
        &[first_load()],
        false,
    )
    .await;
    let mut r = account("a9", "New", "9", T0 + DAY, "r2");
    r.values.push(("description", "has a description".into()));
    let s = f
        .run_parts("account", &full, &["accountid"], "r2", &[vec![r]], false)
        .await;
    assert_eq!(s.table_rows, 6);
    assert_eq!(
        f.rows(&["accountid", "description"]),
        vec![
            sv(&["a1", ""]),
            sv(&["a2", ""]),
            sv(&["a3", ""]),
            sv(&["a4", ""]),
            sv(&["a5", ""]),
            sv(&["a9", "has a description"]),
        ]
    );
    let meta = TableMeta::load(&f.table_dir()).unwrap().unwrap();
    assert!(!meta.rewrite_pending);
    // Every bucket file was rewritten with the new column (uniform files for DuckDB globs).
    for (_, p) in bucket_files(&f.table_dir()).unwrap() {
        let df = bucket::read_file(&p).unwrap();
        assert!(df.schema().contains("description"), "{}", p.display());
    }

    // The catalog drops the column again: it stays, null for new rows.
    f.run_parts(
        "account",
        &old,
        &["accountid"],
        "r3",
        &[vec![account("a10", "x", "1", T0 + 2 * DAY, "r3")]],
        false,
    )
    .await;
    let rows = f.rows(&["accountid", "description"]);
    assert!(rows.contains(&sv(&["a9", "has a description"])));
    assert!(rows.contains(&sv(&["a10", ""])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_primary_key() {
    let f = fixture(DeleteMode::Hard, 2);
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("company", DataType::Utf8, true),
        Field::new("number", DataType::Int64, true),
        Field::new("amount", DataType::Decimal128(19, 4), true),
        Field::new("_ml_run_id", DataType::Utf8, true),
        Field::new("_ml_extracted_at", crate::schema::timestamp_type(), true),
        Field::new("_ml_deleted", DataType::Boolean, true),
        Field::new("_ml_connection", DataType::Utf8, true),
        Field::new("_ml_extra", DataType::Utf8, true),
    ]));
    let line = |c: &str, n: i64, amount: &str, ts: i64, del: bool| Row {
        values: vec![
            ("company", c.into()),
            ("number", n.to_string()),
            ("amount", amount.into()),
            ("_ml_run_id", "r".into()),
            ("_ml_extracted_at", ts.to_string()),
            ("_ml_deleted", del.to_string()),
        ],
    };
    let pk = ["company", "number"];
    f.run_parts(
        "sales_line",
        &schema,
        &pk,
        "r1",
        &[vec![
            line("CRONUS", 1, "10", T0, false),
            line("CRONUS", 2, "20", T0, false),
            line("OTHER", 1, "30", T0, false),
        ]],
        false,
    )
    .await;
    let s = f
        .run_parts(
            "sales_line",
            &schema,
            &pk,
            "r2",
            &[vec![
                line("CRONUS", 1, "11", T0 + DAY, false),
                line("OTHER", 1, "", T0 + DAY, true),
            ]],
            false,
        )
        .await;
    assert_eq!((s.upserted, s.deleted, s.table_rows), (1, 1, 2));
    assert_eq!(
        f.wh.keys(
            "raw_dataverse",
            "sales_line",
            &["company", "number", "amount"]
        )
        .unwrap(),
        vec![
            sv(&["CRONUS", "1", "11.0000"]),
            sv(&["CRONUS", "2", "20.0000"])
        ]
    );
    // A changed key is refused, not silently re-bucketed.
    let pk2: Vec<String> = sv(&["company"]);
    let err =
        f.wh.merge(MergeRequest {
            dataset: "raw_dataverse",
            table: "sales_line",
            store: f.store.clone(),
            parts: &[],
            primary_key: &pk2,
            schema: schema.clone(),
            reconcile: false,
            protected: &[],
            keys_only: false,
            run_id: "r3",
            extracted_at_micros: T0,
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("primary key changed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_formats_joins_and_errors() {
    let f = fixture(DeleteMode::Hard, 2);
    f.accounts("r1", &[first_load()], false).await;
    let contact = |id: &str, name: &str, parent: &str| Row {
        values: vec![
            ("contactid", id.into()),
            ("fullname", name.into()),
            ("parentcustomerid", parent.into()),
            ("_ml_run_id", "c1".into()),
            ("_ml_extracted_at", T0.to_string()),
        ],
    };
    f.run_parts(
        "contact",
        &contact_schema(),
        &["contactid"],
        "c1",
        &[vec![
            contact("c1", "Ada", "a1"),
            contact("c2", "Bob", "a1"),
            contact("c3", "Cy", "a3"),
        ]],
        false,
    )
    .await;
    assert_eq!(
        f.wh.tables().unwrap(),
        sv(&["raw_dataverse.account", "raw_dataverse.contact"])
    );

    let sql = "SELECT accountid, name, revenue, lastusedincampaign, _ml_extracted_at \
               FROM raw_dataverse.account WHERE accountid IN ('a1', 'a2') ORDER BY accountid";
    let table = f.wh.query(sql, OutputFormat::Table).unwrap();
    assert!(table.contains("decimal(19,4)"), "{table}");
    assert!(table.contains("100.5000"), "{table}");
    assert!(table.contains("2024-05-01"), "{table}");
    assert!(table.contains("(2 rows)"), "{table}");
    let csv = f.wh.query(sql, OutputFormat::Csv).unwrap();
    assert_eq!(
        csv,
        "accountid,name,revenue,lastusedincampaign,_ml_extracted_at\n\
         a1,Name 1,100.5000,2024-05-01,2024-05-01T00:00:00Z\n\
         a2,Name 2,200.5000,2024-05-01,2024-05-01T00:00:00Z\n"
    );
    let json = f.wh.query(sql, OutputFormat::Json).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["accountid"], "a1");
    assert_eq!(v[0]["revenue"], "100.5000", "decimals are JSON strings");
    assert_eq!(v[1]["lastusedincampaign"], "2024-05-01");

    // Every column of a wide table is shown.
    let wide =
        f.wh.query(
            "SELECT * FROM raw_dataverse.account LIMIT 1",
            OutputFormat::Table,
        )
        .unwrap();
    assert!(
        wide.contains("versionnumber") && wide.contains("_ml_extra"),
        "{wide}"
    );

    // A join between two tables, qualified names included.
    let joined =
        f.wh.query(
            "SELECT a.name, count(*) AS contacts FROM raw_dataverse.account a \
             JOIN raw_dataverse.contact c ON c.parentcustomerid = a.accountid \
             GROUP BY a.name ORDER BY a.name",
            OutputFormat::Csv,
        )
        .unwrap();
    assert_eq!(joined, "name,contacts\nName 1,2\nName 3,1\n");
    let qualified =
        f.wh.query(
            "SELECT raw_dataverse.contact.fullname FROM raw_dataverse.contact \
             WHERE raw_dataverse.contact.contactid = 'c2'",
            OutputFormat::Csv,
        )
        .unwrap();
    assert_eq!(qualified, "fullname\nBob\n");
    // Unaliased expressions are named by their text and counts typed as integers; a column
    // keeps its name.
    let counted =
        f.wh.query(
            "SELECT parentcustomerid, COUNT(*), COUNT(DISTINCT fullname) FROM raw_dataverse.contact \
             GROUP BY parentcustomerid ORDER BY parentcustomerid",
            OutputFormat::Csv,
        )
        .unwrap();
    assert_eq!(
        counted,
        "parentcustomerid,COUNT(*),COUNT(DISTINCT fullname)\na1,2,2\na3,1,1\n"
    );
    let typed =
        f.wh.query(
            "SELECT COUNT(*) FROM raw_dataverse.contact",
            OutputFormat::Table,
        )
        .unwrap();
    assert!(typed.contains("int64") && !typed.contains("u32"), "{typed}");
    // The table listing: each table's columns and rows, as a query sees them.
    for (table, columns, rows) in f.wh.describe().unwrap() {
        let header =
            f.wh.query(&format!("SELECT * FROM {table} LIMIT 1"), OutputFormat::Csv)
                .unwrap();
        assert_eq!(columns, header.lines().next().unwrap().split(',').count());
        let n =
            f.wh.query(&format!("SELECT COUNT(*) FROM {table}"), OutputFormat::Csv)
                .unwrap();
        assert_eq!(rows.to_string(), n.lines().nth(1).unwrap());
    }

    // Errors name the known tables.
    let err =
        f.wh.query(
            "SELECT * FROM raw_dataverse.opportunity",
            OutputFormat::Table,
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("raw_dataverse.opportunity")
            && err.contains("raw_dataverse.account, raw_dataverse.contact"),
        "{err}"
    );
    let err =
        f.wh.query("SELECT * FROM account", OutputFormat::Table)
            .unwrap_err()
            .to_string();
    assert!(err.contains("Known tables: raw_dataverse.account"), "{err}");
    let err =
        f.wh.query(
            "SELECT nope FROM raw_dataverse.account",
            OutputFormat::Table,
        )
        .unwrap_err();
    assert!(matches!(err, Error::Warehouse { .. }));
    assert!(f.wh.query("SELEC", OutputFormat::Table).is_err());
    assert!(f.wh.row_count("raw_dataverse", "nope").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_table_is_queryable() {
    let f = fixture(DeleteMode::Hard, 2);
    let s = f.accounts("r1", &[vec![]], false).await;
    assert_eq!((s.rows_in, s.table_rows), (0, 0));
    assert!(
        f.table_dir().join("b-00000.parquet").exists(),
        "readable by a glob"
    );
    assert_eq!(f.wh.row_count("raw_dataverse", "account").unwrap(), 0);
    let csv =
        f.wh.query(
            "SELECT accountid, revenue FROM raw_dataverse.account",
            OutputFormat::Csv,
        )
        .unwrap();
    assert_eq!(csv, "accountid,revenue\n");
    assert_eq!(
        f.wh.query("SELECT * FROM raw_dataverse.account", OutputFormat::Json)
            .unwrap(),
        "[]\n"
    );
    // Also with no bucket file at all (only the descriptor).
    fs::remove_file(f.table_dir().join("b-00000.parquet")).unwrap();
    let table =
        f.wh.query(
            "SELECT accountid FROM raw_dataverse.account",
            OutputFormat::Table,
        )
        .unwrap();
    assert!(table.contains("(0 rows)"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decimals_dates_and_timestamps_keep_their_types() {
    let f = fixture(DeleteMode::Hard, 2);
    f.accounts(
        "r1",
        &[vec![account("a1", "Exact", "1234.5678", T0 + 1, "r1")]],
        false,
    )
    .await;
    assert_eq!(
        f.rows(&["revenue", "lastusedincampaign", "_ml_extracted_at"]),
        vec![sv(&[
            "1234.5678",
            "2024-05-01",
            "2024-05-01T00:00:00.000001Z"
        ])]
    );
    let json =
        f.wh.query(
            "SELECT revenue, revenue * 2 AS twice FROM raw_dataverse.account",
            OutputFormat::Json,
        )
        .unwrap();
    assert!(json.contains(r#""revenue":"1234.5678""#), "{json}");
    // The files carry the catalog's types (what DuckDB and BigQuery will see).
    for (_, p) in bucket_files(&f.table_dir()).unwrap() {
        let file = fs::File::open(&p).unwrap();
        let r =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let schema = r.schema().clone();
        assert_eq!(
            schema.field_with_name("revenue").unwrap().data_type(),
            &DataType::Decimal128(19, 4)
        );
        assert_eq!(
            schema
                .field_with_name("lastusedincampaign")
                .unwrap()
                .data_type(),
            &DataType::Date32
        );
        assert!(matches!(
            schema.field_with_name("_ml_extracted_at").unwrap().data_type(),
            DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some(tz)) if tz.as_ref() == "UTC"
        ));
        assert_eq!(
            schema
                .field_with_name("numberofemployees")
                .unwrap()
                .data_type(),
            &DataType::Int64
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_staging_budget_spills_and_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    let wh = LocalWarehouse::open(dir.path(), DeleteMode::Hard)
        .unwrap()
        .with_bucket_rows(1)
        .with_staging_budget(1);
    let f = Fixture {
        _dir: dir,
        wh,
        store: Arc::new(InMemory::new()),
    };
    // 90 rows at 1 row per bucket: 128 buckets, so each spill writes 8 files of 16 buckets.
    // Three parts, every batch spilled on its own; the same keys rewritten in each part.
    let parts: Vec<Vec<Row>> = (0..3)
        .map(|p| {
            (0..30)
                .map(|i| account(&format!("k{i:02}"), &format!("part {p}"), "1", T0, "r1"))
                .collect()
        })
        .collect();
    let s = f.accounts("r1", &parts, false).await;
    assert_eq!((s.rows_in, s.upserted, s.table_rows), (90, 30, 30));
    assert_eq!(
        TableMeta::load(&f.table_dir()).unwrap().unwrap().buckets,
        128
    );
    let names: BTreeSet<String> = f
        .rows(&["name"])
        .into_iter()
        .map(|mut r| r.remove(0))
        .collect();
    assert_eq!(names, BTreeSet::from(["part 2".to_string()]));
}
