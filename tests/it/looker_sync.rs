//! The Looker reverse stream end to end against the sandbox: a query and a saved Look landed as
//! `ref_looker` reference tables with Looker's types, reruns replacing them (rows that left the
//! result leave the table), the query-task lifecycle (slow tasks, 202/204, error, expired,
//! stalled past the timeout), re-login ahead of expiry and on 401, pacing under the request
//! limit and backing off on 429, a result over 5000 rows landed whole, a result over the
//! stream's limit refused, unlimited results bounded (Looker cuts `-1` silently; a result that
//! reaches the bound fails the run and the table keeps its rows), and `mlc discover` drafting a
//! catalog from the field metadata.

use std::path::Path;
use std::time::Duration;

use ml_connector::config::Config;
use ml_connector::run::{Context, RunRequest, run_many};
use ml_connector::sandbox::{Sandbox, SandboxOptions};
use ml_connector::vault::{Secrets, Vault};
use secrecy::SecretString;

use crate::support::Project;

fn opts(scale: u64) -> SandboxOptions {
    SandboxOptions {
        scale,
        retry_after_secs: 0,
        ..SandboxOptions::default()
    }
}

/// A project whose connection `crm` is the sandbox's Looker instance, with `settings` added to
/// the connection and `setup` run on the folder first (stream overlays).
async fn project(opts: SandboxOptions, settings: &str, setup: impl FnOnce(&Path)) -> Project {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::start(opts, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    setup(dir.path());
    let (body, secrets) = sandbox.looker_connection();
    // `settings` replaces the sandbox's own values of the same keys.
    let key = |l: &str| l.split('=').next().unwrap_or_default().trim().to_string();
    let overridden: Vec<String> = settings.lines().map(key).collect();
    let body: String = body
        .lines()
        .filter(|l| !overridden.contains(&key(l)))
        .map(|l| format!("{l}\n"))
        .collect();
    let path = dir.path().join("mlc.toml");
    std::fs::write(&path, format!("[connections.crm]\n{body}{settings}\n")).unwrap();
    let config = Config::load(&path).unwrap();
    let mut s = Secrets::new();
    for (k, v) in secrets {
        s.insert(k, SecretString::from(v));
    }
    Vault::new(&config.vault).put("crm", &s).unwrap();
    let ctx = Context::open(config).unwrap();
    Project { dir, sandbox, ctx }
}

const FAST: &str = "requests_per_minute = 100000\nquery_timeout_seconds = 20\n";

/// Runs `streams` and returns each outcome, errors as text.
async fn run(p: &Project, streams: &[&str]) -> Vec<Result<ml_connector::run::RunSummary, String>> {
    let conn = p.conn();
    let patterns: Vec<String> = streams.iter().map(|s| s.to_string()).collect();
    run_many(
        &p.ctx,
        &[&conn],
        &patterns,
        &RunRequest::Sync { full: false },
    )
    .await
    .unwrap()
    .into_iter()
    .map(|(_, r)| r.map_err(|e| e.to_string()))
    .collect()
}

async fn run_one(p: &Project, stream: &str) -> Result<ml_connector::run::RunSummary, String> {
    run(p, &[stream]).await.remove(0)
}

/// Rows the sandbox's Looker returns now for the stream `looker.<entity>`: its query or its
/// Look, with the stream's limit (the sandbox knows no stream definitions).
fn result_rows(p: &Project, entity: &str) -> u64 {
    let s = p
        .ctx
        .defs
        .get(&format!("looker.{entity}").parse().unwrap())
        .unwrap();
    match (&s.spec.query, &s.spec.look_id) {
        (Some(q), _) => p.sandbox.looker_query_rows(q, s.spec.limit),
        (None, Some(look)) => p.sandbox.looker_look_rows(look, s.spec.limit),
        _ => None,
    }
    .unwrap()
}

fn rows(p: &Project, table: &str) -> u64 {
    p.ctx
        .warehouse
        .local()
        .unwrap()
        .row_count("ref_looker", table)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_and_look_land_as_typed_reference_tables_replaced_by_every_run() {
    let p = project(opts(400), FAST, |_| {}).await;
    let first = p.sync_incremental().await;
    assert_eq!(first.len(), 2, "{:?}", first.keys().collect::<Vec<_>>());
    for e in ["budget_summary", "pipeline_by_stage"] {
        let s = &first[&format!("looker.{e}")];
        assert_eq!(s.kind, "snapshot");
        assert_eq!(s.quarantined, 0, "{e}");
        assert_eq!(
            s.table_rows,
            result_rows(&p, e),
            "{e}: the table is the whole result"
        );
    }
    assert_eq!(rows(&p, "budget_summary"), 8 * 24);
    assert_eq!(rows(&p, "pipeline_by_stage"), 6, "one row per stage");
    // Looker's types: dates are dates, counts integers, sums numbers; nothing untyped.
    assert_eq!(
        p.scalar("SELECT MIN(EXTRACT(YEAR FROM period_date)) FROM ref_looker.budget_summary"),
        "2024"
    );
    assert_eq!(
        p.scalar("SELECT SUM(line_count) FROM ref_looker.budget_summary"),
        (8 * 24 * 3).to_string()
    );
    let planned: f64 = p
        .scalar("SELECT SUM(planned_amount) FROM ref_looker.budget_summary")
        .parse()
        .unwrap();
    assert!(planned > 0.0);
    assert_eq!(
        p.scalar("SELECT COUNT(*) FROM ref_looker.budget_summary WHERE _ml_extra IS NOT NULL"),
        "0"
    );
    let deals: u64 = p
        .scalar("SELECT SUM(deal_count) FROM ref_looker.pipeline_by_stage")
        .parse()
        .unwrap();
    assert_eq!(
        deals, 100,
        "every deal of the Look's explore (scale 400 / 4)"
    );

    // The sources change: amounts move and deals leave the pipeline. The next run replaces the
    // tables: deal counts drop with the source and the table still equals the result.
    let actual_before =
        p.scalar("SELECT ROUND(SUM(actual_amount), 2) FROM ref_looker.budget_summary");
    p.sandbox.looker_mutate();
    let second = p.sync_incremental().await;
    assert_eq!(
        p.scalar("SELECT SUM(deal_count) FROM ref_looker.pipeline_by_stage"),
        "97"
    );
    assert_ne!(
        p.scalar("SELECT ROUND(SUM(actual_amount), 2) FROM ref_looker.budget_summary"),
        actual_before
    );
    for e in ["budget_summary", "pipeline_by_stage"] {
        assert_eq!(
            second[&format!("looker.{e}")].table_rows,
            result_rows(&p, e)
        );
    }
    // A rerun of an unchanged source changes nothing.
    let before = p.scalar("SELECT ROUND(SUM(actual_amount), 2) FROM ref_looker.budget_summary");
    let third = p.sync_incremental().await;
    assert_eq!(third["looker.budget_summary"].table_rows, 8 * 24);
    assert_eq!(
        p.scalar("SELECT ROUND(SUM(actual_amount), 2) FROM ref_looker.budget_summary"),
        before
    );
}

/// A ledger stream (one row per journal line) as a project overlay, with no catalog file yet.
fn ledger_stream(dir: &Path, name: &str, limit: i64) {
    let d = dir.join("streams/looker");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join(format!("{name}.toml")),
        format!(
            "description = \"Journal lines\"\nincremental = \"full\"\nlimit = {limit}\npage_size = 1000\n\n[query]\nmodel = \"finance\"\nview = \"ledger\"\nfields = [\"ledger.entry_id\", \"ledger.posted_at\", \"ledger.account\", \"ledger.amount\"]\nsorts = [\"ledger.entry_id\"]\n"
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_over_5000_rows_lands_whole_with_a_discovered_catalog() {
    let p = project(opts(2000), FAST, |dir| {
        ledger_stream(dir, "ledger_detail", -1);
        ledger_stream(dir, "ledger_capped", 5000);
    })
    .await;
    let total = p.sandbox.looker_ledger_rows();
    assert!(total > 5000, "the sandbox ledger has {total} rows");

    // `mlc discover` drafts the catalog from the json_bi metadata.
    let conn = p.conn();
    let ep = ml_connector::connect::endpoint(&conn, &p.ctx.vault).unwrap();
    let drafts =
        ml_connector::systems::discover(&conn, &ep, &p.ctx.defs, &["ledger_detail".into()])
            .await
            .unwrap()
            .into_iter()
            .filter_map(ml_connector::discover::Discovered::into_draft)
            .collect::<Vec<_>>();
    assert_eq!(drafts.len(), 1);
    let cat = &drafts[0].catalog;
    assert_eq!(cat.primary_key, vec!["result_row"]);
    let ty = |n: &str| {
        cat.columns
            .iter()
            .find(|c| c.name == n)
            .map(|c| c.ty.to_string())
            .unwrap_or_default()
    };
    assert_eq!(ty("entry_id"), "float64");
    assert_eq!(ty("posted_at"), "timestamp");
    assert_eq!(ty("account"), "string");
    assert_eq!(ty("amount"), "float64");
    let cdir = p.dir.path().join("catalog/looker");
    std::fs::create_dir_all(&cdir).unwrap();
    std::fs::write(
        cdir.join("ledger_detail.toml"),
        ml_connector::discover::catalog_toml(cat),
    )
    .unwrap();
    // Reopen so the drafted catalog is used.
    let ctx = Context::open(p.ctx.config.clone()).unwrap();
    let p = Project {
        dir: p.dir,
        sandbox: p.sandbox,
        ctx,
    };

    let s = run_one(&p, "looker.ledger_detail").await.unwrap();
    assert_eq!(s.rows_extracted, total);
    assert_eq!(s.table_rows, total);
    assert_eq!(s.quarantined, 0);
    assert_eq!(
        p.scalar("SELECT COUNT(DISTINCT entry_id) FROM ref_looker.ledger_detail"),
        total.to_string()
    );
    assert_eq!(
        p.scalar("SELECT MAX(result_row) FROM ref_looker.ledger_detail"),
        total.to_string()
    );
    assert_eq!(
        p.scalar("SELECT MIN(EXTRACT(YEAR FROM posted_at)) FROM ref_looker.ledger_detail"),
        "2024"
    );

    // A positive limit under the result's size fails loudly instead of landing a cut table.
    let e = run_one(&p, "looker.ledger_capped").await.unwrap_err();
    assert!(e.contains("more than limit = 5000"), "{e}");
    assert!(
        p.ctx
            .warehouse
            .local()
            .unwrap()
            .row_count("ref_looker", "ledger_capped")
            .is_err(),
        "nothing landed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_lifecycle_slow_error_expired_and_stalled() {
    let p = project(
        opts(200),
        "requests_per_minute = 100000\nquery_timeout_seconds = 3\n",
        |_| {},
    )
    .await;
    // Slow tasks: 3 polls added, 4 running, then results "not ready" twice with the older
    // releases' 204.
    p.sandbox.looker_set_task_progress(3, 4, 2, 204);
    let before = p.sandbox.looker_stats();
    let s = run_one(&p, "looker.budget_summary").await.unwrap();
    assert_eq!(s.table_rows, 8 * 24);
    let after = p.sandbox.looker_stats();
    assert_eq!(after.tasks_created - before.tasks_created, 1);
    assert_eq!(
        after.status_polls - before.status_polls,
        8,
        "added ×3, running ×4, complete"
    );
    assert_eq!(after.results_not_ready - before.results_not_ready, 2);
    // And with 202 (the current docs).
    p.sandbox.looker_set_task_progress(1, 1, 1, 202);
    run_one(&p, "looker.budget_summary").await.unwrap();

    // A task that errors: the database's message, and the table keeps its last good result.
    p.sandbox.looker_fail_next_tasks(1);
    let e = run_one(&p, "looker.budget_summary").await.unwrap_err();
    assert!(
        e.contains("status `error`") && e.contains("division by zero"),
        "{e}"
    );
    assert_eq!(rows(&p, "budget_summary"), 8 * 24);

    // An expired task is started again once...
    p.sandbox.looker_expire_next_tasks(1);
    let before = p.sandbox.looker_stats();
    run_one(&p, "looker.budget_summary").await.unwrap();
    assert_eq!(
        p.sandbox.looker_stats().tasks_created - before.tasks_created,
        2
    );
    // ...and twice in a row is an error.
    p.sandbox.looker_expire_next_tasks(2);
    let e = run_one(&p, "looker.budget_summary").await.unwrap_err();
    assert!(e.contains("expired"), "{e}");

    // A task that never finishes fails at the connection's query_timeout_seconds.
    p.sandbox.looker_stall_tasks(true);
    let e = run_one(&p, "looker.budget_summary").await.unwrap_err();
    assert!(e.contains("was not done after 3 s"), "{e}");
    assert_eq!(
        p.sandbox.looker_stats().killed,
        1,
        "the abandoned task was killed"
    );
    p.sandbox.looker_stall_tasks(false);
    run_one(&p, "looker.budget_summary").await.unwrap();
    assert_eq!(rows(&p, "budget_summary"), 8 * 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_in_again_before_the_token_expires_and_once_on_401() {
    // Tokens live 2 s (renewed after 1.6 s); the task takes 40 polls 50 ms apart, so the run
    // outlives its first token.
    let p = project(
        SandboxOptions {
            token_ttl: Duration::from_secs(2),
            ..opts(200)
        },
        "requests_per_minute = 100000\npoll_interval_ms = 50\npoll_max_interval_ms = 50\n",
        |_| {},
    )
    .await;
    p.sandbox.looker_set_task_progress(20, 20, 0, 202);
    run_one(&p, "looker.budget_summary").await.unwrap();
    let st = p.sandbox.looker_stats();
    assert!(st.logins >= 2, "logged in again ahead of expiry: {st:?}");
    assert_eq!(st.unauthorized, 0, "no call was made with an expired token");

    // A token revoked mid-run (after the query, the task and one poll): one 401, one more
    // login, and the run goes on.
    p.sandbox.looker_set_task_progress(1, 1, 0, 202);
    p.sandbox.looker_revoke_tokens_after(3);
    let s = run_one(&p, "looker.budget_summary").await.unwrap();
    assert_eq!(s.table_rows, 8 * 24);
    let after = p.sandbox.looker_stats();
    assert_eq!(after.unauthorized, 1);
    // The second run shares the process's token (one runtime per connection), so it logs in
    // only after the 401, plus once more if the token came due for renewal meanwhile.
    assert!(
        (st.logins + 1..=st.logins + 2).contains(&after.logins),
        "a login after the 401: {} then {}",
        st.logins,
        after.logins
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pacing_stays_under_the_request_limit_and_429_backs_off() {
    // The instance allows 10 calls per 2 s. Paced at 240 a minute (4 a second, no burst) a run
    // of ~18 calls never meets the limit.
    let p = project(opts(200), "requests_per_minute = 240\n", |_| {}).await;
    p.sandbox
        .looker_set_rate_limit(Some((10, Duration::from_secs(2))));
    p.sandbox.looker_set_task_progress(6, 6, 1, 202);
    run_one(&p, "looker.budget_summary").await.unwrap();
    let st = p.sandbox.looker_stats();
    assert!(
        st.api_calls > 10,
        "more calls than one window allows: {st:?}"
    );
    assert_eq!(st.throttled, 0, "paced under the limit: {st:?}");

    // Unpaced against a tighter limit, 429s come back with Retry-After and the run still
    // completes after waiting.
    let q = project(opts(200), FAST, |_| {}).await;
    q.sandbox
        .looker_set_rate_limit(Some((4, Duration::from_secs(1))));
    q.sandbox.looker_set_task_progress(3, 3, 1, 202);
    let s = run_one(&q, "looker.budget_summary").await.unwrap();
    assert_eq!(s.table_rows, 8 * 24);
    assert!(q.sandbox.looker_stats().throttled > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_do_not_change_the_result() {
    let faults: ml_connector::sandbox::Faults = "429=0.1,5xx=0.1,expire=0.1".parse().unwrap();
    let p = project(
        SandboxOptions {
            faults,
            ..opts(400)
        },
        FAST,
        |_| {},
    )
    .await;
    let out = p.sync_incremental().await;
    for e in ["budget_summary", "pipeline_by_stage"] {
        assert_eq!(
            out[&format!("looker.{e}")].table_rows,
            result_rows(&p, e),
            "{e}"
        );
    }
    let st = p.sandbox.looker_stats();
    assert!(st.throttled + st.unauthorized > 0, "faults fired: {st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_check_explains_a_wrong_api_key_without_showing_it() {
    let p = project(opts(100), FAST, |_| {}).await;
    let conn = p.conn();
    let ok = ml_connector::connect::check(&conn, &p.ctx.vault).await;
    assert!(ok.ok, "{ok:?}");
    let mut s = Secrets::new();
    s.insert(
        "client_secret".into(),
        SecretString::from("wrong-looker-secret".to_string()),
    );
    p.ctx.vault.put("crm", &s).unwrap();
    let bad = ml_connector::connect::check(&conn, &p.ctx.vault).await;
    let problem = bad.problem.unwrap_or_default();
    assert!(!bad.ok);
    assert!(problem.contains("API Keys"), "{problem}");
    assert!(!problem.contains("wrong-looker-secret"), "{problem}");
}

/// Looker cuts unlimited results without a word (formats that are not streamed, users without
/// the permission to download without a limit). A `limit = -1` stream therefore never asks for
/// `-1`: it runs with an explicit bound, lands every row whatever Looker does to `-1`, and a
/// result that reaches the bound fails the run, clearly, with the previous table untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlimited_results_are_bounded_and_a_cut_result_never_replaces_a_table() {
    let p = project(opts(400), FAST, |dir| ledger_stream(dir, "journal", -1)).await;
    let total = p.sandbox.looker_ledger_rows();
    assert!(total > 1000, "{total}");
    p.sandbox.looker_cut_unlimited(Some(500));
    let s = run_one(&p, "looker.journal").await.unwrap();
    assert_eq!(s.rows_extracted, total, "every row, not Looker's cut");
    assert_eq!(rows(&p, "journal"), total);
    let st = p.sandbox.looker_stats();
    assert_eq!(
        st.unlimited_tasks, 0,
        "the reader asked for an explicit bound"
    );
    let table = |p: &Project| {
        p.ctx
            .warehouse
            .query(
                "SELECT result_row, _ml_extra, _ml_run_id FROM ref_looker.journal ORDER BY result_row",
                ml_connector::loaders::warehouse::OutputFormat::Csv,
            )
            .unwrap()
    };
    let before = table(&p);

    // The bound lowered under the result's size: the run fails and says why; the table is
    // the previous run's, row for row.
    let path = p.dir.path().join("mlc.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace(
            "[connections.crm]\n",
            "[connections.crm]\nmax_result_rows = 1000\n",
        ),
    )
    .unwrap();
    let ctx = Context::open(Config::load(&path).unwrap()).unwrap();
    let p = Project {
        dir: p.dir,
        sandbox: p.sandbox,
        ctx,
    };
    p.sandbox.looker_mutate();
    let e = run_one(&p, "looker.journal").await.unwrap_err();
    assert!(e.contains("more than max_result_rows = 1000 rows"), "{e}");
    assert!(e.contains("previous table is kept"), "{e}");
    assert_eq!(rows(&p, "journal"), total);
    assert!(table(&p) == before, "the table changed");
    assert_eq!(p.sandbox.looker_stats().unlimited_tasks, 0);
}
