//! Deltek end to end through `ml_connector::run` against the sandbox: full sync, incremental
//! runs carrying exactly the inserts and updates (ModDate cursor in the tenant's wall clock),
//! deletes reconciled by a full read, faults (429, 5xx, resets, expired tokens) leaving the
//! tables identical to the source, malformed rows quarantined, both opportunity models.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use ml_connector::run::{Context, RunRequest, RunSummary, run_many};
use ml_connector::sandbox::{Faults, Sandbox, SandboxOptions};
use ml_connector::streams::{self, ReadMode};

use crate::sandbox_deltek::deltek_config;

const SOURCE: &str = include_str!("../../streams/deltek/_source.toml");

struct Vp {
    _dir: tempfile::TempDir,
    sandbox: Sandbox,
    ctx: Context,
}

/// Overlays the Deltek source with a smaller page size, so small tables span many pages.
pub(crate) fn small_pages(dir: &Path, page_size: u32) {
    let d = dir.join("streams/deltek");
    std::fs::create_dir_all(&d).unwrap();
    let text = SOURCE.replace("page_size = 500\n", &format!("page_size = {page_size}\n"));
    assert!(text.contains(&format!("page_size = {page_size}\n")));
    std::fs::write(d.join("_source.toml"), text).unwrap();
}

impl Vp {
    async fn new(opts: SandboxOptions, page_size: u32, extra: &str) -> Vp {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::start(opts, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        small_pages(dir.path(), page_size);
        let config = deltek_config(dir.path(), &sandbox, extra);
        let ctx = Context::open(config).unwrap();
        Vp {
            _dir: dir,
            sandbox,
            ctx,
        }
    }

    async fn sync(&self, full: bool) -> BTreeMap<String, RunSummary> {
        let conn = self.ctx.config.connection("vp").unwrap().clone();
        let results = run_many(&self.ctx, &[&conn], &[], &RunRequest::Sync { full })
            .await
            .unwrap();
        let mut out = BTreeMap::new();
        let mut failures = Vec::new();
        for (label, r) in results {
            match r {
                Ok(s) => {
                    out.insert(s.stream.trim_start_matches("deltek.").to_string(), s);
                }
                Err(e) => failures.push(format!("{label}: {e}")),
            }
        }
        assert!(failures.is_empty(), "streams failed: {failures:#?}");
        out
    }

    /// Every Deltek table holds exactly the sandbox's live keys.
    fn assert_matches_source(&self) {
        let local = self.ctx.warehouse.local().unwrap();
        for stream in self.ctx.defs.select(&["deltek".into()]).unwrap() {
            let pk: Vec<&str> = stream
                .catalog
                .primary_key
                .iter()
                .map(String::as_str)
                .collect();
            let mut table: Vec<String> = local
                .keys(&stream.id.dataset(), &stream.id.entity, &pk)
                .unwrap()
                .into_iter()
                .map(|k| k.join("|"))
                .collect();
            table.sort();
            let source: Vec<String> = self
                .sandbox
                .deltek_live_rows(&stream.id.entity)
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            assert_eq!(
                table.len(),
                source.len(),
                "{}: {} rows in the warehouse, {} in the sandbox",
                stream.id,
                table.len(),
                source.len()
            );
            assert!(
                table == source,
                "{}: keys differ from the sandbox",
                stream.id
            );
        }
    }

    /// Every live sandbox key is in the warehouse (deletes wait for a key-set or full read).
    fn assert_matches_source_ignoring_deletes(&self) {
        let local = self.ctx.warehouse.local().unwrap();
        for stream in self.ctx.defs.select(&["deltek".into()]).unwrap() {
            let pk: Vec<&str> = stream
                .catalog
                .primary_key
                .iter()
                .map(String::as_str)
                .collect();
            let table: std::collections::HashSet<String> = local
                .keys(&stream.id.dataset(), &stream.id.entity, &pk)
                .unwrap()
                .into_iter()
                .map(|k| k.join("|"))
                .collect();
            let missing = self
                .sandbox
                .deltek_live_rows(&stream.id.entity)
                .unwrap()
                .into_iter()
                .filter(|(k, _)| !table.contains(k))
                .count();
            assert_eq!(
                missing, 0,
                "{}: live rows missing from the warehouse",
                stream.id
            );
        }
    }

    fn scalar(&self, sql: &str) -> String {
        let csv = self
            .ctx
            .warehouse
            .query(sql, ml_connector::loaders::warehouse::OutputFormat::Csv)
            .unwrap();
        csv.lines().nth(1).unwrap_or_default().trim().to_string()
    }
}

fn opts(scale: u64) -> SandboxOptions {
    SandboxOptions {
        scale,
        retry_after_secs: 0,
        ..SandboxOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_then_incremental_carries_exactly_the_changes() {
    // 500 tasks and contacts: more than ten 40-row pages, so their deletes wait for a full read.
    let p = Vp::new(opts(500), 40, "").await;
    let counts = p.sandbox.deltek_counts();
    let full = p.sync(false).await;
    assert_eq!(full.len(), 12);
    for (entity, s) in &full {
        assert_eq!(s.kind, "snapshot", "{entity}");
        assert_eq!(s.rows_extracted, counts[entity], "{entity}");
        assert_eq!(s.quarantined, 0, "{entity}");
    }
    p.assert_matches_source();
    // The catalogs type every field the sandbox serves.
    for table in ["project", "firm", "opportunity", "ap_voucher"] {
        assert_eq!(
            p.scalar(&format!(
                "SELECT COUNT(*) FROM raw_deltek.{table} WHERE _ml_extra IS NOT NULL"
            )),
            "0",
            "{table}"
        );
    }
    // Zone-less ModDates were read in the tenant zone (New York, daylight saving included).
    let (key, wall) = p.sandbox.deltek_live_rows("firm").unwrap().pop().unwrap();
    let stored = p.scalar(&format!(
        "SELECT mod_date FROM raw_deltek.firm WHERE client_id = '{key}'"
    ));
    let tz: arrow_array::timezone::Tz = "America/New_York".parse().unwrap();
    let naive = chrono::NaiveDateTime::parse_from_str(&wall, "%Y-%m-%dT%H:%M:%S%.3f").unwrap();
    let utc = chrono::TimeZone::from_local_datetime(&tz, &naive)
        .earliest()
        .unwrap()
        .naive_utc();
    assert!(
        stored.starts_with(&utc.format("%Y-%m-%dT%H:%M:%S").to_string())
            || stored.starts_with(&utc.format("%Y-%m-%d %H:%M:%S").to_string()),
        "{wall} in New York is not {stored}"
    );

    let wall = |w: &str| chrono::NaiveDateTime::parse_from_str(w, "%Y-%m-%dT%H:%M:%S%.3f").unwrap();
    let mut pending: BTreeMap<String, u64> = BTreeMap::new();
    for round in 0..2 {
        // Each stream reads from its committed cursor (run::next_cursor: just after the newest
        // ModDate seen, or the lookback before the run when rows were that recent), compared
        // in the tenant's wall clock to the millisecond.
        let since: BTreeMap<String, chrono::NaiveDateTime> = full
            .keys()
            .map(|e| {
                let cursor = p
                    .ctx
                    .state
                    .cursor("vp", &format!("deltek.{e}"))
                    .unwrap()
                    .unwrap();
                let tz: arrow_array::timezone::Tz = "America/New_York".parse().unwrap();
                let w = ml_connector::streams::deltek::to_wall_clock(&cursor, &tz).unwrap();
                (e.clone(), wall(&w))
            })
            .collect();
        let changes = p.sandbox.deltek_mutate();
        let incr = p.sync(false).await;
        // No delete feed: a table whose key-set pass costs at most 10 pages (40 rows each
        // here) is reconciled by every incremental run; larger ones wait for their cadence.
        for (entity, s) in &incr {
            let rows = p.sandbox.deltek_counts()[entity.as_str()];
            if rows <= 400 {
                assert_eq!(
                    s.deleted, changes[entity].deleted,
                    "round {round}, {entity}"
                );
                assert!(s.last_keyset.is_some(), "{entity}: {:?}", s);
            } else {
                assert_eq!(s.deleted, 0, "round {round}, {entity}");
                *pending.entry(entity.clone()).or_insert(0) += changes[entity].deleted;
            }
        }
        for (entity, s) in &incr {
            let c = changes[entity];
            let expected = p
                .sandbox
                .deltek_live_rows(entity)
                .unwrap()
                .iter()
                .filter(|(_, m)| wall(m) >= since[entity])
                .count() as u64;
            assert_eq!(s.kind, "incremental", "{entity}");
            assert!(expected >= c.inserted + c.updated, "{entity}");
            assert!(
                expected <= c.inserted + c.updated + 2 * c.updated.max(c.inserted) + 1,
                "round {round}, {entity}: the lookback re-reads only the last window"
            );
            assert_eq!(
                s.rows_extracted, expected,
                "round {round}, {entity}: an incremental run carries the inserts and updates (plus the lookback window) and nothing else"
            );
        }
        p.assert_matches_source_ignoring_deletes();
    }
    // A full read reconciles the larger tables' deletes.
    assert!(pending.values().sum::<u64>() > 0, "{pending:?}");
    let full = p.sync(true).await;
    for (entity, n) in &pending {
        assert_eq!(full[entity].deleted, *n, "{entity}");
    }
    p.assert_matches_source();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_do_not_change_the_result() {
    let p = Vp::new(
        SandboxOptions {
            token_ttl: Duration::from_secs(3),
            ..opts(200)
        },
        37,
        "",
    )
    .await;
    let faults: Faults = "429=0.08,5xx=0.07,reset=0.05,expire=0.05,slow=0.02"
        .parse()
        .unwrap();
    p.sandbox.set_faults(faults);
    p.sync(false).await;
    p.sandbox.deltek_mutate();
    p.sync(false).await;
    p.sync(true).await;
    p.sandbox.set_faults(Faults::default());
    p.assert_matches_source();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn badly_typed_values_land_with_their_rows() {
    let p = Vp::new(
        opts(100),
        500,
        "streams = [\"deltek.contact\", \"deltek.firm\"]",
    )
    .await;
    assert!(p.sandbox.deltek_poison("contact", 3));
    let out = p.sync(false).await;
    assert_eq!(out.len(), 2);
    assert_eq!(out["contact"].quarantined, 0);
    assert_eq!(
        out["contact"].rows_extracted,
        p.sandbox.deltek_counts()["contact"]
    );
    // The poisoned modified times are NULL and kept raw in _ml_extra.
    assert_eq!(
        out["contact"].drift.get("mod_date"),
        Some(&3),
        "{:?}",
        out["contact"].drift
    );
    assert_eq!(
        p.scalar("SELECT COUNT(*) FROM raw_deltek.contact WHERE mod_date IS NULL AND _ml_extra LIKE '%not a date%'"),
        "3"
    );
    assert_eq!(out["firm"].quarantined, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opportunity_hub_model_reads_the_hub() {
    let p = Vp::new(
        opts(100),
        50,
        "opportunity_model = \"hub\"\nstreams = [\"deltek.opportunity\"]",
    )
    .await;
    // A 5.0+ tenant has no Opportunities hub: the hub model fails there, plainly.
    let conn = p.ctx.config.connection("vp").unwrap().clone();
    let results = run_many(&p.ctx, &[&conn], &[], &RunRequest::Sync { full: false })
        .await
        .unwrap();
    let err = results[0].1.as_ref().unwrap_err().to_string();
    assert!(err.contains("404"), "{err}");
    p.sandbox.deltek_opportunity_hub(true);
    let out = p.sync(false).await;
    assert_eq!(
        out["opportunity"].rows_extracted,
        p.sandbox.deltek_counts()["opportunity"]
    );
    let before = p.sandbox.stats();
    assert!(before.total > 0);
}

/// Reads every page of `entity` in `mode` straight from the reader.
async fn read_all(p: &Vp, entity: &str, mode: ReadMode) -> Vec<serde_json::Value> {
    read_from(p, entity, mode, None).await
}

/// Like `read_all`, resuming at a saved position.
async fn read_from(
    p: &Vp,
    entity: &str,
    mode: ReadMode,
    resume: Option<String>,
) -> Vec<serde_json::Value> {
    let conn = p.ctx.config.connection("vp").unwrap().clone();
    let ep = ml_connector::connect::endpoint(&conn, &p.ctx.vault).unwrap();
    let stream = p
        .ctx
        .defs
        .get(&format!("deltek.{entity}").parse().unwrap())
        .unwrap();
    // A key-set pass reads the run's projected stream (keys; no computed columns here).
    let stream = if mode == ReadMode::Keys {
        ml_connector::run::projected(stream)
    } else {
        stream.clone()
    };
    let mut src = streams::open(&stream, &conn, &ep, &mode, resume).unwrap();
    let mut out = Vec::new();
    while let Some(page) = src.next_page().await.unwrap() {
        for r in &page.rows {
            out.push(serde_json::from_slice(&page.body[r.clone()]).unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_window_reads() {
    let p = Vp::new(opts(200), 30, "").await;
    p.sandbox.deltek_mutate();
    // Keys: every live row, key fields only.
    let keys = read_all(&p, "project_phase", ReadMode::Keys).await;
    assert_eq!(
        keys.len() as u64,
        p.sandbox.deltek_counts()["project_phase"]
    );
    assert!(keys.iter().all(|k| k.as_object().unwrap().len() == 2));
    // Keys of the 5.0+ opportunity variant come renamed to the catalog's names.
    let opp = read_all(&p, "opportunity", ReadMode::Keys).await;
    assert!(opp[0]["OpportunityID"].is_string(), "{}", opp[0]);
    // Resuming at the position saved after page 2 reads on from the third page.
    let all = read_all(&p, "contact", ReadMode::Snapshot { track: false }).await;
    // Rows handed out by the first two pages (a keyset page after the first serves its
    // boundary row again and skips it, so it hands out one row fewer than it holds).
    let (handed, after_two) = {
        let conn = p.ctx.config.connection("vp").unwrap().clone();
        let ep = ml_connector::connect::endpoint(&conn, &p.ctx.vault).unwrap();
        let stream = p.ctx.defs.get(&"deltek.contact".parse().unwrap()).unwrap();
        let mode = ReadMode::Snapshot { track: false };
        let mut src = streams::open(stream, &conn, &ep, &mode, None).unwrap();
        let first = src.next_page().await.unwrap().unwrap();
        let second = src.next_page().await.unwrap().unwrap();
        (first.rows.len() + second.rows.len(), second.resume.unwrap())
    };
    assert!(handed > 30, "{handed}");
    let rest = read_from(
        &p,
        "contact",
        ReadMode::Snapshot { track: false },
        Some(after_two),
    )
    .await;
    assert_eq!(rest.len(), all.len() - handed);
    assert_eq!(rest[0], all[handed]);
    // A page number saved by an older mlc cannot say which rows were read: the read restarts.
    let restarted = read_from(
        &p,
        "contact",
        ReadMode::Snapshot { track: false },
        Some("3".into()),
    )
    .await;
    assert_eq!(restarted, all);
    // A window on ModDate (UTC bounds, tenant wall-clock filter): only the mutation round.
    let changes = p.sandbox.deltek_mutate();
    let w = read_all(
        &p,
        "firm",
        ReadMode::Window {
            since: Some("2026-01-01T01:30:00Z".into()),
            until: None,
        },
    )
    .await;
    let c = changes["firm"];
    assert_eq!(w.len() as u64, c.inserted + c.updated);
}

/// The Deltek fixtures decode to their catalogs the way the conformance test checks every
/// system (records found by `streams::records`, nothing quarantined or untyped, keys unique).
#[test]
fn fixtures_decode_to_their_catalogs() {
    use arrow_array::Array;
    let defs = ml_connector::spec::Definitions::builtin().unwrap();
    let list = defs.select(&["deltek".into()]).unwrap();
    assert_eq!(list.len(), 12);
    for stream in list {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/deltek")
            .join(&stream.id.entity)
            .join("page.json");
        let body = std::fs::read(&path).unwrap();
        let ranges = streams::records(stream, &body).unwrap();
        assert!(!ranges.is_empty(), "{}", stream.id);
        let first: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&body[ranges[0].clone()]).unwrap();
        for c in &stream.catalog.columns {
            assert!(
                first.contains_key(c.source_name()),
                "{}: fixture lacks `{}`",
                stream.id,
                c.source_name()
            );
        }
        let dec = ml_connector::batches::RowDecoder::new(stream, "fixture", "r0").unwrap();
        let page = dec.decode_page(&body, &ranges, 0).unwrap();
        assert!(
            page.quarantined.is_empty(),
            "{}: {:?}",
            stream.id,
            page.quarantined
        );
        let batch = page.batch.unwrap();
        assert_eq!(
            batch.column_by_name("_ml_extra").unwrap().null_count(),
            batch.num_rows(),
            "{}: fields outside the catalog",
            stream.id
        );
        let mut seen = std::collections::HashSet::new();
        for i in 0..batch.num_rows() {
            let key: Vec<String> = stream
                .catalog
                .primary_key
                .iter()
                .map(|k| {
                    let col = batch.column_by_name(k).unwrap();
                    assert!(!col.is_null(i), "{}: null key", stream.id);
                    arrow_cast::display::array_value_to_string(col, i).unwrap()
                })
                .collect();
            assert!(seen.insert(key), "{}: duplicate key", stream.id);
        }
    }
}
