//! Business Central end to end against the sandbox: full sync of both companies, incremental
//! runs on lastModifiedDateTime carrying exactly the changed rows, deletes found by a full
//! snapshot, faults, token expiry, the 6000-per-window limit, quarantine, company selection.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use ml_connector::config::{Config, Connection};
use ml_connector::run::{Context, RunRequest, RunSummary, run_many};
use ml_connector::sandbox::{Faults, Sandbox, SandboxOptions};
use ml_connector::vault::{Secrets, Vault};
use secrecy::SecretString;
use tempfile::TempDir;

const SOURCE: &str = include_str!("../../streams/business_central/_source.toml");

struct Bc {
    _dir: TempDir,
    sandbox: Sandbox,
    ctx: Context,
}

fn opts(scale: u64) -> SandboxOptions {
    SandboxOptions {
        scale,
        retry_after_secs: 0,
        ..SandboxOptions::default()
    }
}

impl Bc {
    /// A project with one connection `erp` to the sandbox; `extra` goes into its section,
    /// `page_size` overlays the source's.
    async fn new(opts: SandboxOptions, extra: &str, page_size: Option<u32>) -> Bc {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::start(opts, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        if let Some(n) = page_size {
            let d = dir.path().join("streams/business_central");
            std::fs::create_dir_all(&d).unwrap();
            let text = SOURCE.replace("page_size = 5000\n", &format!("page_size = {n}\n"));
            assert!(text.contains(&format!("page_size = {n}\n")));
            std::fs::write(d.join("_source.toml"), text).unwrap();
        }
        let config = write_config(dir.path(), &sandbox, extra);
        let ctx = Context::open(config).unwrap();
        Bc {
            _dir: dir,
            sandbox,
            ctx,
        }
    }

    fn conn(&self) -> Connection {
        self.ctx.config.connection("erp").unwrap().clone()
    }

    async fn sync(&self, full: bool) -> BTreeMap<String, RunSummary> {
        let conn = self.conn();
        let results = run_many(&self.ctx, &[&conn], &[], &RunRequest::Sync { full })
            .await
            .unwrap();
        let mut out = BTreeMap::new();
        let mut failures = Vec::new();
        for (label, r) in results {
            match r {
                Ok(s) => {
                    out.insert(s.stream.clone(), s);
                }
                Err(e) => failures.push(format!("{label}: {e}")),
            }
        }
        assert!(failures.is_empty(), "streams failed: {failures:#?}");
        out
    }

    fn entity_set(&self, stream: &str) -> String {
        self.ctx
            .defs
            .get(&stream.parse().unwrap())
            .unwrap()
            .spec
            .entity_set
            .clone()
            .unwrap()
    }

    /// (company_id, id) of every warehouse row of `stream`.
    fn table_keys(&self, stream: &str) -> Vec<Vec<String>> {
        let s = self.ctx.defs.get(&stream.parse().unwrap()).unwrap();
        self.ctx
            .warehouse
            .local()
            .unwrap()
            .keys(&s.id.dataset(), &s.id.entity, &["company_id", "id"])
            .unwrap()
    }

    /// Every table equals the sandbox's live rows, key by key; cursor tables also agree on
    /// how many rows were modified after `since_micros` (so updates landed).
    fn assert_matches_source(&self, companies: usize) {
        for stream in self.ctx.defs.select(&["business_central".into()]).unwrap() {
            let sid = stream.id.to_string();
            let set = self.entity_set(&sid);
            let live = self.sandbox.business_central_live_rows(&set).unwrap();
            let wanted: Vec<String> = self
                .sandbox
                .business_central_companies()
                .into_iter()
                .take(companies)
                .map(|c| c.0)
                .collect();
            let mut source: Vec<Vec<String>> = live
                .iter()
                .filter(|r| companies == 2 || wanted.contains(&r.company_id))
                .map(|r| vec![r.company_id.clone(), r.id.clone()])
                .collect();
            source.sort();
            let table = self.table_keys(&sid);
            assert_eq!(
                table.len(),
                source.len(),
                "{sid}: {} rows in the warehouse, {} in the sandbox",
                table.len(),
                source.len()
            );
            assert!(table == source, "{sid}: keys differ from the sandbox");
            if stream.cursor_column().is_some() {
                let newest = live.iter().filter_map(|r| r.modified_micros).max().unwrap();
                let stored = self.scalar(&format!(
                    "SELECT COUNT(*) FROM {}.{} WHERE last_modified_date_time IN (SELECT MAX(last_modified_date_time) FROM {}.{})",
                    stream.id.dataset(),
                    stream.id.entity,
                    stream.id.dataset(),
                    stream.id.entity
                ));
                let in_source = live
                    .iter()
                    .filter(|r| r.modified_micros == Some(newest))
                    .count();
                if companies == 2 {
                    assert_eq!(stored, in_source.to_string(), "{sid}: newest versions");
                }
            }
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

fn write_config(dir: &Path, sb: &Sandbox, extra: &str) -> Config {
    let (body, secrets) = sb.business_central_connection();
    let text = format!("[connections.erp]\n{body}requests_per_minute = 100000\n{extra}\n");
    let path = dir.join("mlc.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap();
    let mut s = Secrets::new();
    for (k, v) in secrets {
        s.insert(k, SecretString::from(v));
    }
    Vault::new(&config.vault).put("erp", &s).unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_then_incremental_carries_exactly_the_changes() {
    let p = Bc::new(opts(400), "", None).await;
    let counts = p.sandbox.business_central_counts();

    let full = p.sync(false).await;
    assert_eq!(full.len(), 14);
    for (stream, s) in &full {
        let set = p.entity_set(stream);
        assert_eq!(s.kind, "snapshot", "{stream}");
        assert_eq!(s.rows_extracted, counts[&set], "{stream}");
        assert_eq!(s.quarantined, 0, "{stream}");
        assert_eq!(s.table_rows, counts[&set], "{stream}");
    }
    p.assert_matches_source(2);
    // Every served field is typed except the sandbox tenant's extension fields.
    assert_eq!(
        p.scalar("SELECT COUNT(*) FROM raw_business_central.vendor WHERE _ml_extra IS NOT NULL"),
        "0"
    );
    // Both companies land in one table, told apart by company_id.
    assert_eq!(
        p.scalar("SELECT COUNT(DISTINCT company_id) FROM raw_business_central.customer"),
        "2"
    );

    // Each stream reads from its committed cursor (run::next_cursor: just after the newest
    // lastModifiedDateTime seen, or the lookback before the run when rows were that recent).
    let before: BTreeMap<String, i64> = full
        .keys()
        .map(|s| {
            let cursor = p
                .ctx
                .state
                .cursor("erp", s)
                .unwrap()
                .and_then(|c| chrono::DateTime::parse_from_rfc3339(&c).ok())
                .map_or(0, |t| t.timestamp_micros());
            (s.clone(), cursor)
        })
        .collect();
    let changes = p.sandbox.business_central_mutate();
    let incr = p.sync(false).await;
    for (stream, s) in &incr {
        let set = p.entity_set(stream);
        let live = p.sandbox.business_central_live_rows(&set).unwrap();
        let c = &changes[&set];
        assert!(
            c.inserted + c.updated + c.deleted > 0,
            "{set}: nothing changed"
        );
        if set.ends_with("Lines") {
            // No modified time: every run is a full snapshot that also drops deleted lines.
            assert_eq!(s.kind, "snapshot", "{stream}");
            assert_eq!(s.rows_extracted, live.len() as u64, "{stream}");
        } else {
            assert_eq!(s.kind, "incremental", "{stream}");
            let expected = live
                .iter()
                .filter(|r| r.modified_micros.unwrap() >= before[stream])
                .count() as u64;
            assert_eq!(s.rows_extracted, expected, "{stream}: rows in the window");
            assert!(
                s.rows_extracted >= c.inserted + c.updated - c.deleted.min(c.updated),
                "{stream}"
            );
            assert!(
                s.rows_extracted < live.len() as u64 / 2 || live.len() < 40,
                "{stream}: read too much"
            );
        }
    }
    // Deletes have no feed: a full snapshot (what the key-set pass does at lower cost) removes
    // them, and then every table equals the source.
    let again = p.sync(true).await;
    assert!(again.values().all(|s| s.kind == "snapshot"));
    p.assert_matches_source(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_faults_token_expiry_and_small_pages() {
    let faults: Faults = "429=0.08,5xx=0.08,reset=0.04,slow=0.02,expire=0.01"
        .parse()
        .unwrap();
    let p = Bc::new(
        SandboxOptions {
            faults,
            ..opts(200)
        },
        "",
        Some(25),
    )
    .await;
    p.sync(false).await;
    p.sandbox.business_central_mutate();
    p.sync(false).await;
    p.sync(true).await;
    p.assert_matches_source(2);
    let stats = p.sandbox.stats();
    for status in [401u16, 429] {
        assert!(
            stats.by_status.get(&status).copied().unwrap_or(0) > 0,
            "no {status} was injected: {:?}",
            stats.by_status
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expiring_mid_run_are_refreshed() {
    let p = Bc::new(
        SandboxOptions {
            token_ttl: Duration::from_secs(1),
            ..opts(200)
        },
        "",
        Some(25),
    )
    .await;
    p.sync(false).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    p.sandbox.business_central_mutate();
    p.sync(true).await;
    p.assert_matches_source(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_budget_answers_429_and_the_run_waits() {
    let p = Bc::new(
        SandboxOptions {
            budget: Some((15, Duration::from_secs(1))),
            retry_after_secs: 1,
            ..opts(100)
        },
        "",
        Some(50),
    )
    .await;
    p.sync(false).await;
    p.assert_matches_source(2);
    let stats = p.sandbox.stats();
    assert!(
        stats.by_status.get(&429).copied().unwrap_or(0) > 0,
        "{:?}",
        stats.by_status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn badly_typed_values_land_with_their_rows() {
    let p = Bc::new(opts(200), "", None).await;
    p.sandbox.business_central_poison("customers", 3).unwrap();
    p.sandbox
        .business_central_poison("salesOrderLines", 2)
        .unwrap();
    let runs = p.sync(false).await;
    let live = p.sandbox.business_central_counts();
    for (stream, set, poisoned) in [
        ("business_central.customer", "customers", 3),
        ("business_central.sales_order_line", "salesOrderLines", 2),
    ] {
        let r = &runs[stream];
        assert_eq!(r.quarantined, 0, "{stream}");
        assert_eq!(r.table_rows, live[set], "{stream}: every row landed");
        // Each poisoned row drifts in at least one column, counted by column.
        assert!(
            r.drift.values().sum::<u64>() >= poisoned,
            "{stream}: {:?}",
            r.drift
        );
    }
    // The next round repairs them (an update moves lastModifiedDateTime): nothing is lost.
    p.sandbox.business_central_mutate();
    p.sync(true).await;
    p.assert_matches_source(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_configured_companies_are_read() {
    let p = Bc::new(opts(200), "companies = [\"CRONUS USA, Inc.\"]", None).await;
    p.sync(false).await;
    p.assert_matches_source(1);
    assert_eq!(
        p.scalar("SELECT COUNT(DISTINCT company_id) FROM raw_business_central.item"),
        "1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_drafts_catalogs_with_extension_fields() {
    let p = Bc::new(opts(100), "", None).await;
    let conn = p.conn();
    let ep = ml_connector::connect::endpoint(&conn, &p.ctx.vault).unwrap();
    let drafts = ml_connector::systems::discover(&conn, &ep, &p.ctx.defs, &[])
        .await
        .unwrap()
        .into_iter()
        .filter_map(ml_connector::discover::Discovered::into_draft)
        .collect::<Vec<_>>();
    assert_eq!(drafts.len(), 14);
    let customer = drafts.iter().find(|d| d.entity == "customer").unwrap();
    assert!(customer.stream_toml.is_none());
    assert_eq!(customer.catalog.primary_key, ["company_id", "id"]);
    let builtin = p
        .ctx
        .defs
        .get(&"business_central.customer".parse().unwrap())
        .unwrap();
    // Every built-in column comes back under its own name, plus the tenant's extension fields.
    for c in &builtin.catalog.columns {
        assert!(
            customer.catalog.columns.iter().any(|d| d.name == c.name),
            "{} missing",
            c.name
        );
    }
    let extra: Vec<&str> = customer
        .catalog
        .columns
        .iter()
        .filter(|d| !builtin.catalog.columns.iter().any(|c| c.name == d.name))
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(extra, ["mlc_loyalty_tier", "mlc_credit_score"]);
    // The draft is a valid catalog file.
    let text = ml_connector::discover::catalog_toml(&customer.catalog);
    let back: ml_connector::spec::CatalogFile = toml::from_str(&text).unwrap();
    assert_eq!(back.columns.len(), customer.catalog.columns.len());
}

/// What the shared conformance test checks, with the company id a company-scoped reader
/// supplies (taken from the page's `@odata.context`, as the reader knows it from the URL).
#[test]
fn fixtures_decode_to_their_catalogs_with_the_company_context() {
    use arrow_array::Array;
    let defs = ml_connector::spec::Definitions::builtin().unwrap();
    let streams = defs.select(&["business_central".into()]).unwrap();
    assert_eq!(streams.len(), 14);
    for stream in streams {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/business_central")
            .join(&stream.id.entity)
            .join("page.json");
        let body = std::fs::read(&path).unwrap();
        let ranges = ml_connector::streams::records(stream, &body).unwrap();
        assert!(!ranges.is_empty(), "{}", stream.id);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let ctx_url = v["@odata.context"].as_str().unwrap();
        let company = ctx_url
            .split("companies(")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .unwrap();
        let first = v["value"][0].as_object().unwrap();
        for f in stream.select_fields() {
            assert!(first.contains_key(f), "{}: fixture lacks {f}", stream.id);
        }
        let mut context = ml_connector::batches::PageContext::new();
        context.insert("company_id".into(), company.to_string());
        let dec = ml_connector::batches::RowDecoder::new(stream, "fixture", "r0").unwrap();
        let page = dec.decode_page_with(&body, &ranges, 0, &context).unwrap();
        assert!(
            page.quarantined.is_empty(),
            "{}: {:?}",
            stream.id,
            page.quarantined
        );
        let batch = page.batch.unwrap();
        assert_eq!(batch.num_rows(), ranges.len());
        assert_eq!(
            batch.column_by_name("_ml_extra").unwrap().null_count(),
            batch.num_rows(),
            "{}: fields outside the catalog",
            stream.id
        );
        let company_col = batch.column_by_name("company_id").unwrap();
        assert_eq!(company_col.null_count(), 0, "{}", stream.id);
        let ids = batch.column_by_name("id").unwrap();
        let mut seen = std::collections::HashSet::new();
        for i in 0..batch.num_rows() {
            assert!(!ids.is_null(i));
            assert!(seen.insert(arrow_cast::display::array_value_to_string(ids, i).unwrap()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_check_explains_failures() {
    let p = Bc::new(opts(100), "", None).await;
    let ok = ml_connector::connect::check(&p.conn(), &p.ctx.vault).await;
    assert!(ok.ok, "{:?}", ok.problem);
    assert!(ok.steps[0].contains("CRONUS USA, Inc."), "{:?}", ok.steps);

    let p = Bc::new(opts(100), "companies = [\"Nope Ltd.\"]", None).await;
    let r = ml_connector::connect::check(&p.conn(), &p.ctx.vault).await;
    assert!(!r.ok);
    assert!(r.problem.unwrap().contains("Nope Ltd."));

    let dir = tempfile::tempdir().unwrap();
    let (body, secrets) = p.sandbox.business_central_connection();
    let body = body.replace("environment = \"Production\"", "environment = \"Staging\"");
    let path = dir.path().join("mlc.toml");
    std::fs::write(&path, format!("[connections.erp]\n{body}")).unwrap();
    let config = Config::load(&path).unwrap();
    let mut s = Secrets::new();
    for (k, v) in secrets {
        s.insert(k, SecretString::from(v));
    }
    let vault = Vault::new(&config.vault);
    vault.put("erp", &s).unwrap();
    let r = ml_connector::connect::check(config.connection("erp").unwrap(), &vault).await;
    assert!(!r.ok);
    assert!(
        r.problem.as_deref().unwrap().contains("Staging"),
        "{:?}",
        r.problem
    );

    let mut bad = Secrets::new();
    bad.insert(
        "client_secret".into(),
        SecretString::from("s3cr3t-QX9-not-it".to_string()),
    );
    vault.put("erp", &bad).unwrap();
    let r = ml_connector::connect::check(config.connection("erp").unwrap(), &vault).await;
    assert!(!r.ok);
    let problem = r.problem.unwrap();
    assert!(
        !problem.contains("s3cr3t-QX9"),
        "the secret leaked: {problem}"
    );
    assert!(
        problem.contains("7000215") || problem.to_lowercase().contains("secret"),
        "{problem}"
    );
}

/// The reader's paging positions span companies: reading up to any page, then resuming a new
/// reader from that page's position, reads every row exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_from_any_page_reads_every_row_once() {
    use ml_connector::streams::{ReadMode, open};
    let p = Bc::new(opts(200), "", Some(9)).await;
    let conn = p.conn();
    let ep = ml_connector::connect::endpoint(&conn, &p.ctx.vault).unwrap();
    let stream = p
        .ctx
        .defs
        .get(&"business_central.customer".parse().unwrap())
        .unwrap();
    let mode = ReadMode::Snapshot { track: false };
    let ids_of = |body: &[u8], rows: &[std::ops::Range<usize>], company: &str| -> Vec<String> {
        rows.iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_slice(&body[r.clone()]).unwrap();
                format!("{company}/{}", v["id"].as_str().unwrap())
            })
            .collect()
    };
    // One uninterrupted read, remembering every page's resume position.
    let mut all = Vec::new();
    let mut positions = Vec::new();
    let mut src = open(stream, &conn, &ep, &mode, None).unwrap();
    while let Some(page) = src.next_page().await.unwrap() {
        let company = page.context["company_id"].clone();
        all.extend(ids_of(&page.body, &page.rows, &company));
        positions.push((all.len(), page.resume.clone()));
    }
    let live: Vec<String> = p
        .sandbox
        .business_central_live_rows("customers")
        .unwrap()
        .into_iter()
        .map(|r| format!("{}/{}", r.company_id, r.id))
        .collect();
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(sorted, live);
    // Resume after every page: what was read plus what the resumed reader reads = everything.
    for (read, pos) in positions {
        let Some(pos) = pos else {
            assert_eq!(read, all.len(), "only the last page has no position");
            continue;
        };
        let mut rest = Vec::new();
        let mut src = open(stream, &conn, &ep, &mode, Some(pos)).unwrap();
        while let Some(page) = src.next_page().await.unwrap() {
            let company = page.context["company_id"].clone();
            rest.extend(ids_of(&page.body, &page.rows, &company));
        }
        assert_eq!(&all[read..], &rest[..], "resumed after {read} rows");
    }
}
