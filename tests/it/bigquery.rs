//! BigQuery loads against a real emulator (bqemulator, started by `.ci/emulators.sh`) and the
//! lake on S3 (moto): first load, incremental MERGE with updates and deletes, a catalog column
//! added, a retried load doing nothing, a failed load leaving state uncommitted, a full sync of
//! the sandbox with counts equal to the source, and an S3 lake round trip. What every warehouse
//! must do alike (merge, deletes in both modes, schema evolution, quarantine-safe reconcile) is
//! checked for BigQuery by `warehouse_conformance.rs`.
//!
//! Without the emulators these tests print why and pass, except under CI (`CI` set), where
//! missing emulators are a failure: `.ci/run` must have started them.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use ml_connector::config::{Config, Connection};
use ml_connector::loaders::warehouse::bigquery::BigQueryWarehouse;
use ml_connector::run::{Context, RunRequest, RunSummary, run_many};
use ml_connector::sandbox::{Sandbox, SandboxOptions};
use ml_connector::spec::Stream;
use object_store::ObjectStore;
use serde_json::Value;
use tempfile::TempDir;

/// The emulator endpoints `.ci/emulators.sh` exports.
#[derive(Clone)]
pub(crate) struct Emu {
    pub(crate) url: String,
    pub(crate) project: String,
    pub(crate) gcs_root: String,
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The variables, or `None` (test skipped) outside CI; under CI their absence fails the test.
pub(crate) fn env_or_skip(test: &str, vars: &[&str]) -> Option<Vec<String>> {
    let got: Vec<Option<String>> = vars
        .iter()
        .map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .collect();
    if got.iter().all(Option::is_some) {
        return Some(got.into_iter().flatten().collect());
    }
    let missing: Vec<&str> = vars
        .iter()
        .zip(&got)
        .filter(|(_, g)| g.is_none())
        .map(|(v, _)| *v)
        .collect();
    assert!(
        !in_ci(),
        "{test}: CI is set but {missing:?} are not: .ci/run starts the emulators with .ci/emulators.sh"
    );
    eprintln!(
        "SKIPPED {test}: {missing:?} unset (start the emulators: `source .ci/emulators.sh && emulators_start`)"
    );
    None
}

pub(crate) fn emulator(test: &str) -> Option<Emu> {
    let v = env_or_skip(
        test,
        &[
            "MLC_TEST_BIGQUERY_URL",
            "MLC_TEST_BIGQUERY_PROJECT",
            "MLC_TEST_GCS_ROOT",
        ],
    )?;
    Some(Emu {
        url: v[0].clone(),
        project: v[1].clone(),
        gcs_root: v[2].clone(),
    })
}

/// A name no other test (or earlier run against the same emulator) uses.
pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}{:08x}", rand::random::<u32>())
}

/// A project reading every sandbox system into the emulator, its lake under the emulator's GCS
/// root so `gs://` loads read the files the sync wrote.
struct BqProject {
    dir: TempDir,
    sandbox: Sandbox,
    emu: Emu,
    bucket: String,
    prefix: String,
}

impl BqProject {
    async fn new(emu: Emu, scale: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::start(
            SandboxOptions {
                scale,
                retry_after_secs: 0,
                ..SandboxOptions::default()
            },
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        // Writes the connections and stores their secrets; the lake and warehouse are set below.
        ml_connector::demo::write_project(dir.path(), &sandbox, "", true).unwrap();
        let p = BqProject {
            dir,
            sandbox,
            bucket: unique("mlc-lake-"),
            prefix: unique("t").to_lowercase() + "_raw_",
            emu,
        };
        p.configure(&format!("gs://{}", p.bucket), "hard");
        p
    }

    /// Rewrites mlc.toml: file lake under the GCS root, BigQuery warehouse.
    fn configure(&self, lake_gcs_url: &str, delete_mode: &str) {
        let path = self.dir.path().join("mlc.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let conns = &text[text.find("\n[connections.").unwrap()..];
        let text = format!(
            r#"[lake]
url = "file://{root}/{bucket}"

[state]
path = ".mlc/state.db"

[warehouse]
kind = "bigquery"
delete_mode = "{delete_mode}"

[warehouse.bigquery]
project = "{project}"
base_url = "{url}"
credentials = "none"
dataset_prefix = "{prefix}"
lake_gcs_url = "{lake_gcs_url}"
# Looker's reference tables land in their own dataset; this test's copy is kept apart too.
datasets = {{ looker = "{prefix}ref_looker" }}
{conns}"#,
            root = self.emu.gcs_root,
            bucket = self.bucket,
            project = self.emu.project,
            url = self.emu.url,
            prefix = self.prefix,
        );
        std::fs::write(&path, text).unwrap();
    }

    fn context(&self) -> Context {
        Context::open(Config::load(&self.dir.path().join("mlc.toml")).unwrap()).unwrap()
    }

    fn table_ref(&self, system: &str, entity: &str) -> String {
        let dataset = match system {
            "looker" => format!("{}ref_looker", self.prefix),
            _ => format!("{}{system}", self.prefix),
        };
        format!("`{}.{dataset}.{entity}`", self.emu.project)
    }
}

fn bq(ctx: &Context) -> &BigQueryWarehouse {
    ctx.warehouse.bigquery().expect("a BigQuery warehouse")
}

/// Runs `patterns` of every connection (all streams when empty); returns successes and
/// failures by stream.
async fn sync(
    ctx: &Context,
    patterns: &[String],
) -> (BTreeMap<String, RunSummary>, BTreeMap<String, String>) {
    let conns: Vec<&Connection> = ctx.config.connections.values().collect();
    let results = run_many(ctx, &conns, patterns, &RunRequest::Sync { full: false })
        .await
        .unwrap();
    let mut ok = BTreeMap::new();
    let mut failed = BTreeMap::new();
    for (label, r) in results {
        match r {
            Ok(s) => {
                ok.insert(s.stream.clone(), s);
            }
            Err(e) => {
                failed.insert(label, e.to_string());
            }
        }
    }
    (ok, failed)
}

async fn sync_ok(ctx: &Context, patterns: &[String]) -> BTreeMap<String, RunSummary> {
    let (ok, failed) = sync(ctx, patterns).await;
    assert!(failed.is_empty(), "streams failed: {failed:#?}");
    ok
}

async fn rows(ctx: &Context, sql: &str) -> Vec<Vec<Value>> {
    let w = bq(ctx);
    w.api().await.unwrap().query_rows(sql).await.unwrap()
}

async fn count(ctx: &Context, table_ref: &str) -> u64 {
    let w = bq(ctx);
    w.count_rows(w.api().await.unwrap(), table_ref)
        .await
        .unwrap()
}

/// Every stream the sandbox can count has as many rows in BigQuery as in the sandbox.
async fn assert_counts_match(p: &BqProject, ctx: &Context) -> usize {
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for conn in ctx.config.connections.values() {
        for stream in ctx.streams_for(conn, &[]).unwrap() {
            let Some(source) = p.sandbox.live_count(&stream.id.system, &stream.id.entity) else {
                continue;
            };
            let got = count(ctx, &p.table_ref(&stream.id.system, &stream.id.entity)).await;
            if got != source {
                mismatches.push(format!("{}: BigQuery {got}, sandbox {source}", stream.id));
            }
            checked += 1;
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    checked
}

/// Dataverse accounts in BigQuery equal the sandbox's, key by key and version by version.
async fn assert_accounts_match(p: &BqProject, ctx: &Context) {
    let mut source: Vec<(String, i64)> = p.sandbox.live_rows("accounts").unwrap();
    source.sort();
    let got: Vec<(String, i64)> = rows(
        ctx,
        &format!(
            "SELECT accountid, versionnumber FROM {} ORDER BY accountid",
            p.table_ref("dataverse", "account")
        ),
    )
    .await
    .into_iter()
    .map(|r| {
        (
            r[0].as_str().unwrap().to_string(),
            r[1].as_str().unwrap().parse().unwrap(),
        )
    })
    .collect();
    let mut got = got;
    got.sort();
    assert_eq!(got.len(), source.len());
    assert!(got == source, "accounts differ from the sandbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the BigQuery emulator (.ci/emulators.sh); slow"]
async fn bigquery_full_sync_then_incremental_matches_the_sandbox() {
    let Some(emu) = emulator("bigquery_full_sync_then_incremental_matches_the_sandbox") else {
        return;
    };
    let p = BqProject::new(emu, 40).await;
    let ctx = p.context();

    // First load: every stream of every system.
    let full = sync_ok(&ctx, &[]).await;
    assert!(full.len() >= 40, "{} streams", full.len());
    let checked = assert_counts_match(&p, &ctx).await;
    assert!(checked >= 20, "only {checked} streams compared");
    assert_accounts_match(&p, &ctx).await;
    // Types came through: decimals, timestamps and dates are BigQuery types, not text.
    let typed = rows(
        &ctx,
        &format!(
            "SELECT COUNT(*) FROM {} WHERE revenue IS NOT NULL AND revenue >= 0 AND createdon <= CURRENT_TIMESTAMP()",
            p.table_ref("dataverse", "account")
        ),
    )
    .await;
    assert_ne!(typed[0][0], "0");

    // Incremental: the sandbox updates and deletes rows; one MERGE per stream applies them.
    let changes = p.sandbox.mutate();
    let incr = sync_ok(&ctx, &[]).await;
    let acc = &incr["dataverse.account"];
    assert_eq!(acc.kind, "incremental");
    let c = &changes.entity_sets["accounts"];
    assert!(c.updated > 0 && c.deleted > 0, "{c:?}");
    assert_eq!(acc.deleted, c.deleted);
    assert_counts_match(&p, &ctx).await;
    assert_accounts_match(&p, &ctx).await;
    // The run's staging table is gone.
    let staging = format!("_mlc_stage_account_{}", acc.run_id.replace('-', "_"));
    let api = bq(&ctx).api().await.unwrap();
    let dataset = format!("{}dataverse", p.prefix);
    assert!(api.get_table(&dataset, &staging).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the BigQuery emulator (.ci/emulators.sh)"]
async fn bigquery_catalog_column_is_added_and_retried_loads_do_nothing() {
    let Some(emu) = emulator("bigquery_catalog_column_is_added_and_retried_loads_do_nothing")
    else {
        return;
    };
    let p = BqProject::new(emu, 30).await;
    let only = vec!["dataverse.account".to_string()];
    let ctx = p.context();
    sync_ok(&ctx, &only).await;
    let table = p.table_ref("dataverse", "account");
    let before = count(&ctx, &table).await;

    // A retried load of the committed run: its MERGE job exists, so nothing runs again.
    let stream: Stream = ctx
        .defs
        .get(&"dataverse.account".parse().unwrap())
        .unwrap()
        .clone();
    let runs = ctx.state.runs(Some("dataverse.account"), 1).unwrap();
    let manifest = ctx
        .lake
        .read_manifest_at(&ml_connector::lake::Lake::recorded_manifest(
            &stream.id,
            &runs[0].run_id,
            runs[0].manifest.as_deref(),
        ))
        .await
        .unwrap()
        .unwrap();
    let parts: Vec<object_store::path::Path> = manifest
        .files
        .iter()
        .map(|f| object_store::path::Path::from(f.path.as_str()))
        .collect();
    bq(&ctx)
        .merge(&stream, &ctx.lake, &manifest, &parts)
        .await
        .unwrap();
    assert_eq!(count(&ctx, &table).await, before);

    // The same job id twice: the second call finds the job and does not run it (the load
    // appends, so running it twice would double the rows).
    let api = bq(&ctx).api().await.unwrap();
    let dataset = format!("{}dataverse", p.prefix);
    let copy = unique("copy_");
    let target = api.get_table(&dataset, "account").await.unwrap().unwrap();
    api.create_table(
        &dataset,
        serde_json::json!({
            "tableReference": {"projectId": p.emu.project, "datasetId": dataset, "tableId": copy},
            "schema": target["schema"],
        }),
    )
    .await
    .unwrap();
    let uri = format!("gs://{}/{}", p.bucket, parts[0]);
    let load = serde_json::json!({"load": {
        "sourceUris": [uri],
        "sourceFormat": "PARQUET",
        "destinationTable": {"projectId": p.emu.project, "datasetId": dataset, "tableId": copy},
        "writeDisposition": "WRITE_APPEND",
        "schema": target["schema"],
    }});
    let job_id = unique("mlc_test_load_");
    // (`started` may be false here too: when the insert's answer is lost in transit, the next
    // try finds the job the server did start, and takes its result instead of inserting again.)
    let first = api.run_job(&job_id, load.clone(), None).await.unwrap();
    assert_eq!(first.job_id, job_id);
    let copy_ref = format!("`{}.{dataset}.{copy}`", p.emu.project);
    let once = count(&ctx, &copy_ref).await;
    assert_eq!(once, manifest.files[0].rows);
    let again = api.run_job(&job_id, load, None).await.unwrap();
    assert!(!again.started, "a retried job id must not run again");
    assert_eq!(again.job_id, job_id);
    assert_eq!(count(&ctx, &copy_ref).await, once);

    // Upload loads (the lake is not on GCS): one multipart request, or a resumable session.
    let file = ctx.lake.get(&parts[0]).await.unwrap();
    let mut upload = serde_json::json!({"load": {
        "sourceFormat": "PARQUET",
        "destinationTable": {"projectId": p.emu.project, "datasetId": dataset, "tableId": copy},
        "writeDisposition": "WRITE_APPEND",
        "schema": target["schema"],
    }});
    let multipart = api
        .run_job(&unique("mlc_test_upload_"), upload.clone(), Some(&file))
        .await
        .unwrap();
    assert!(multipart.started);
    assert_eq!(count(&ctx, &copy_ref).await, 2 * once);
    upload["load"]["writeDisposition"] = "WRITE_TRUNCATE".into();
    let resumable = api
        .clone()
        .with_multipart_max(0)
        .run_job(&unique("mlc_test_resumable_"), upload, Some(&file))
        .await
        .unwrap();
    assert!(resumable.started);
    assert_eq!(count(&ctx, &copy_ref).await, once);

    // A column added to the catalog: the next run adds it to the table.
    let catalog = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("catalog/dataverse/account.toml"),
    )
    .unwrap();
    let overlay = p.dir.path().join("catalog/dataverse");
    std::fs::create_dir_all(&overlay).unwrap();
    let end = catalog.rfind(']').unwrap();
    std::fs::write(
        overlay.join("account.toml"),
        format!(
            "{}  {{ name = \"mlc_test_note\", type = \"string\", description = \"Added by a test.\" }},\n{}",
            &catalog[..end],
            &catalog[end..]
        ),
    )
    .unwrap();
    let ctx = p.context();
    assert!(
        ctx.defs
            .get(&"dataverse.account".parse().unwrap())
            .unwrap()
            .catalog
            .columns
            .iter()
            .any(|c| c.name == "mlc_test_note"),
        "the overlay catalog is in use"
    );
    p.sandbox.mutate();
    sync_ok(&ctx, &only).await;
    let r = rows(
        &ctx,
        &format!("SELECT COUNT(*), COUNT(mlc_test_note) FROM {table}"),
    )
    .await;
    assert_eq!(r[0][1], "0", "the new column exists and is null");
    assert_eq!(
        r[0][0].as_str().unwrap().parse::<u64>().unwrap(),
        p.sandbox.live_count("dataverse", "account").unwrap()
    );
    assert_accounts_match(&p, &ctx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the BigQuery emulator (.ci/emulators.sh)"]
async fn bigquery_failed_load_leaves_the_state_uncommitted() {
    let Some(emu) = emulator("bigquery_failed_load_leaves_the_state_uncommitted") else {
        return;
    };
    let p = BqProject::new(emu, 20).await;
    let only = vec!["dataverse.account".to_string()];
    // BigQuery looks for the lake in a bucket that does not hold it: the load job fails.
    p.configure(&format!("gs://{}", unique("mlc-missing-")), "hard");
    let ctx = p.context();
    let (ok, failed) = sync(&ctx, &only).await;
    assert!(ok.is_empty(), "{ok:?}");
    assert_eq!(failed.len(), 1, "{failed:?}");
    let open = ctx
        .state
        .open_run("crm", "dataverse.account")
        .unwrap()
        .unwrap();
    assert_eq!(open.status, "extracted", "extracted, not loaded: {open:?}");
    assert_eq!(ctx.state.cursor("crm", "dataverse.account").unwrap(), None);

    // Fixed: the same run resumes from the lake and commits.
    p.configure(&format!("gs://{}", p.bucket), "hard");
    let ctx = p.context();
    let out = sync_ok(&ctx, &only).await;
    assert_eq!(out["dataverse.account"].run_id, open.run_id);
    assert!(
        ctx.state
            .cursor("crm", "dataverse.account")
            .unwrap()
            .is_some()
    );
    assert_accounts_match(&p, &ctx).await;
}

/// `mlc sync` as a subprocess with the lake on S3 (moto) and BigQuery loading by upload
/// (the lake is not on GCS): the parts and manifests land in the bucket, the tables match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the BigQuery and S3 emulators (.ci/emulators.sh)"]
async fn s3_lake_round_trip_with_uploaded_bigquery_loads() {
    let test = "s3_lake_round_trip_with_uploaded_bigquery_loads";
    let Some(emu) = emulator(test) else {
        return;
    };
    let Some(s3) = env_or_skip(test, &["MLC_TEST_S3_URL"]) else {
        return;
    };
    let s3 = s3[0].clone();
    let bucket = unique("mlc-s3-lake-");
    // moto creates a bucket on an unsigned PUT.
    let resp = reqwest::Client::new()
        .put(format!("{s3}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());

    let p = BqProject::new(emu, 20).await;
    let path = p.dir.path().join("mlc.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("[lake]").unwrap();
    let end = text.find("[state]").unwrap();
    let mut text = format!(
        "{}[lake]\nurl = \"s3://{bucket}/lake\"\n\n{}",
        &text[..start],
        &text[end..]
    );
    text = text.replace(&format!("lake_gcs_url = \"gs://{}\"\n", p.bucket), "");
    std::fs::write(&path, &text).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_mlc"))
        .args(["sync", "--connection", "crm"])
        .current_dir(p.dir.path())
        .env_remove("MLC_CONFIG")
        .env_remove("MLC_MASTER_KEY")
        .env("AWS_ENDPOINT", &s3)
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mlc sync failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The lake is in the bucket.
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&s3)
        .with_allow_http(true)
        .with_bucket_name(&bucket)
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_region("us-east-1")
        .with_virtual_hosted_style_request(false)
        .build()
        .unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    use futures::TryStreamExt;
    let listed: Vec<String> = store
        .list(Some(&object_store::path::Path::from(
            "lake/raw/dataverse/account",
        )))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    assert!(listed.iter().any(|l| l.ends_with(".parquet")), "{listed:?}");
    assert!(
        listed
            .iter()
            .any(|l| l.contains("/_manifest") && l.ends_with(".json")),
        "{listed:?}"
    );
    // BigQuery received the uploaded parts.
    let ctx = p.context();
    for stream in ["account", "contact", "opportunity"] {
        assert_eq!(
            count(&ctx, &p.table_ref("dataverse", stream)).await,
            p.sandbox.live_count("dataverse", stream).unwrap(),
            "{stream}"
        );
    }
    assert_accounts_match(&p, &ctx).await;
}
