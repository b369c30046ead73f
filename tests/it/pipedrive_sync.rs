//! Pipedrive end to end against the sandbox: full sync then incrementals carrying exactly the
//! changes (deleted deals as tombstones, other deletes on the next full read, archived deals
//! read from /api/v2/deals/archived as rows with `is_archived`), custom fields
//! renamed into `_ml_extra`, OAuth refresh and rotation, burst pacing, the daily budget stop,
//! the Cloudflare 403 stop, faults and quarantine.

use std::collections::BTreeSet;

use ml_connector::config::Config;
use ml_connector::run::{Context, RunRequest, run_many};
use ml_connector::sandbox::{Faults, Sandbox, SandboxOptions};
use ml_connector::vault::{Secrets, Vault};
use secrecy::{ExposeSecret, SecretString};

use crate::support::Project;

const SOURCE: &str = include_str!("../../streams/pipedrive/_source.toml");

fn opts(scale: u64) -> SandboxOptions {
    SandboxOptions {
        scale,
        retry_after_secs: 0,
        ..SandboxOptions::default()
    }
}

/// A project whose connection `crm` is the sandbox's Pipedrive account (API token, or OAuth),
/// with small pages so tables span many cursors.
async fn project(opts: SandboxOptions, oauth: bool, page_size: u32) -> Project {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::start(opts, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let d = dir.path().join("streams/pipedrive");
    std::fs::create_dir_all(&d).unwrap();
    let text = SOURCE.replace("page_size = 500\n", &format!("page_size = {page_size}\n"));
    std::fs::write(d.join("_source.toml"), text).unwrap();
    let (body, secrets) = if oauth {
        sandbox.pipedrive_oauth_connection()
    } else {
        sandbox.pipedrive_connection()
    };
    let path = dir.path().join("mlc.toml");
    std::fs::write(
        &path,
        format!("[connections.crm]\n{body}requests_per_minute = 100000\nmax_concurrency = 4\n"),
    )
    .unwrap();
    let config = Config::load(&path).unwrap();
    let mut s = Secrets::new();
    for (k, v) in secrets {
        s.insert(k, SecretString::from(v));
    }
    Vault::new(&config.vault).put("crm", &s).unwrap();
    let ctx = Context::open(config).unwrap();
    Project { dir, sandbox, ctx }
}

fn ids(p: &Project, entity: &str) -> BTreeSet<i64> {
    let local = p.ctx.warehouse.local().unwrap();
    local
        .keys("raw_pipedrive", entity, &["id"])
        .unwrap()
        .into_iter()
        .map(|r| r[0].parse().unwrap())
        .collect()
}

fn live(p: &Project, entity: &str) -> BTreeSet<i64> {
    p.sandbox
        .pipedrive_live_rows(entity)
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

fn assert_same(p: &Project, entity: &str) {
    let (w, s) = (ids(p, entity), live(p, entity));
    assert_eq!(w.len(), s.len(), "{entity}: warehouse vs sandbox row count");
    assert!(w == s, "{entity}: ids differ from the sandbox");
}

/// Archived deals (listed only at /api/v2/deals/archived) are rows of the deal table: the
/// warehouse holds each with `is_archived` and `archive_time` as the tenant serves them.
fn assert_archived_deals_landed(p: &Project) {
    let truth: Vec<(i64, String)> = p
        .sandbox
        .truth("pipedrive", "deal")
        .unwrap()
        .into_iter()
        .filter(|d| d["is_archived"] == true)
        .map(|d| {
            (
                d["id"].as_i64().unwrap(),
                d["archive_time"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(!truth.is_empty(), "the sandbox has archived deals");
    let landed = p.scalar(
        "SELECT COUNT(*) FROM raw_pipedrive.deal WHERE is_archived AND archive_time IS NOT NULL",
    );
    assert_eq!(
        landed,
        truth.len().to_string(),
        "archived deals in the warehouse"
    );
    let (id, at) = &truth[truth.len() - 1];
    let got = p.scalar(&format!(
        "SELECT strftime(archive_time, '%Y-%m-%dT%H:%M:%SZ') FROM raw_pipedrive.deal WHERE id = {id}"
    ));
    assert_eq!(&got, at, "deal {id}");
}

/// Syncs and returns each stream's outcome (errors as text).
async fn try_sync(
    p: &Project,
    full: bool,
) -> Vec<(String, Result<ml_connector::run::RunSummary, String>)> {
    let conn = p.conn();
    run_many(&p.ctx, &[&conn], &[], &RunRequest::Sync { full })
        .await
        .unwrap()
        .into_iter()
        .map(|(l, r)| (l, r.map_err(|e| e.to_string())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_then_incremental_carries_exactly_the_changes() {
    let p = project(opts(400), false, 37).await;
    let full = p.sync_incremental().await;
    assert_eq!(full.len(), 8, "{:?}", full.keys().collect::<Vec<_>>());
    for (stream, s) in &full {
        assert_eq!(s.kind, "snapshot", "{stream}");
        assert_eq!(s.quarantined, 0, "{stream}");
    }
    for e in ["deal", "person", "organization", "product", "deal_product"] {
        assert_same(&p, e);
    }
    assert_archived_deals_landed(&p);
    assert_eq!(full["pipedrive.user"].table_rows, 5);
    assert_eq!(full["pipedrive.stage"].table_rows, 10);
    assert_eq!(full["pipedrive.pipeline"].table_rows, 2);
    // Custom fields land as columns of their own under readable names, options as their
    // labels, without `mlc discover`; nothing of them is left in _ml_extra.
    let labels = p.scalar(
        "SELECT COUNT(*) FROM raw_pipedrive.deal WHERE contract_type IN ('Annual', 'Monthly', 'Multi-year')",
    );
    assert_ne!(labels, "0");
    assert_eq!(
        p.scalar("SELECT COUNT(*) FROM raw_pipedrive.deal WHERE _ml_extra LIKE '%custom_fields%'"),
        "0"
    );
    let new: Vec<&str> = full["pipedrive.deal"]
        .schema
        .new_columns
        .iter()
        .map(|(c, _)| c.as_str())
        .collect();
    assert!(
        new.contains(&"contract_type") && new.contains(&"setup_fee_currency"),
        "{new:?}"
    );

    p.sandbox.pipedrive_mutate();
    let inc = p.sync_incremental().await;
    let deal = &inc["pipedrive.deal"];
    assert_eq!(deal.kind, "incremental");
    // Only changed deals (and the lookback's neighbours) are read, not the table.
    assert!(
        deal.rows_extracted < 40,
        "read {} deals",
        deal.rows_extracted
    );
    assert!(deal.deleted >= 1, "deleted deals arrive as tombstones");
    assert_same(&p, "deal");
    // Deals archived by the mutation arrive as updates of their rows.
    assert_archived_deals_landed(&p);
    assert_same(&p, "product");
    // Persons and organizations have no delete feed: inserts and updates are in, deletes wait
    // for the next full read (key-set reconciliation).
    for e in ["person", "organization"] {
        assert!(ids(&p, e).is_superset(&live(&p, e)), "{e}");
    }
    assert!(live(&p, "deal_product").is_subset(&ids(&p, "deal_product")));
    p.sync(RunRequest::Sync { full: true }).await;
    for e in ["deal", "person", "organization", "product", "deal_product"] {
        assert_same(&p, e);
    }
    // The key-set pass sees archived keys too: archiving is never a delete.
    assert_archived_deals_landed(&p);
    // A quiet incremental reads next to nothing.
    let quiet = p.sync_incremental().await;
    assert!(quiet["pipedrive.deal"].rows_extracted < 10);
    assert_same(&p, "deal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_refreshes_expired_tokens_and_stores_the_rotated_refresh_token() {
    let o = SandboxOptions {
        token_ttl: std::time::Duration::from_secs(3600),
        ..opts(200)
    };
    let p = project(o, true, 50).await;
    let before = Vault::new(&p.ctx.config.vault).get("crm").unwrap().unwrap()["refresh_token"]
        .expose_secret()
        .to_string();
    p.sync_incremental().await;
    assert_same(&p, "deal");
    p.sandbox.pipedrive_expire_tokens();
    p.sandbox.pipedrive_mutate();
    p.sync_incremental().await;
    assert_same(&p, "deal");
    let after = Vault::new(&p.ctx.config.vault).get("crm").unwrap().unwrap()["refresh_token"]
        .expose_secret()
        .to_string();
    assert_ne!(before, after, "the rotated refresh token is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_do_not_change_the_result() {
    let faults: Faults = "429=0.05,5xx=0.05,reset=0.05,expire=0.05".parse().unwrap();
    let p = project(
        SandboxOptions {
            faults,
            ..opts(300)
        },
        true,
        40,
    )
    .await;
    p.sync_incremental().await;
    p.sandbox.pipedrive_mutate();
    p.sync(RunRequest::Sync { full: true }).await;
    for e in ["deal", "person", "organization", "product", "deal_product"] {
        assert_same(&p, e);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_limit_is_paced_by_the_rate_limit_headers() {
    let p = project(opts(200), false, 25).await;
    p.sandbox.pipedrive_set_burst_limit(4);
    let out = p.sync_incremental().await;
    assert_eq!(out.len(), 8);
    assert_same(&p, "deal");
    assert_same(&p, "deal_product");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_daily_budget_stops_cleanly_and_the_next_sync_resumes() {
    let p = project(opts(300), false, 20).await;
    p.sandbox.pipedrive_set_daily_tokens(60);
    let out = try_sync(&p, false).await;
    let stopped: Vec<&String> = out.iter().filter_map(|(_, r)| r.as_ref().err()).collect();
    assert!(!stopped.is_empty());
    assert!(
        stopped.iter().all(|e| e.contains("daily API token budget")),
        "{stopped:?}"
    );
    // The same process stays stopped (its runtime knows the budget is spent) ...
    p.sandbox.pipedrive_set_daily_tokens(100_000_000);
    let again = try_sync(&p, false).await;
    assert!(
        again.iter().all(|(_, r)| r
            .as_ref()
            .is_err_and(|e| e.contains("daily API token budget"))),
        "{again:?}"
    );
    // ... and the next `mlc sync` (a new process) resumes.
    let p = Project {
        ctx: ml_connector::run::Context::open(p.ctx.config.clone()).unwrap(),
        ..p
    };
    p.sync_incremental().await;
    for e in ["deal", "person", "organization", "product", "deal_product"] {
        assert_same(&p, e);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudflare_html_403_is_a_hard_stop() {
    let p = project(opts(100), false, 50).await;
    p.sandbox.pipedrive_set_html_403(true);
    let out = try_sync(&p, false).await;
    assert!(
        out.iter()
            .all(|(_, r)| r.as_ref().is_err_and(|e| e.contains("Cloudflare")))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn badly_typed_values_never_cost_a_row() {
    let p = project(opts(200), false, 30).await;
    let bad = p.sandbox.pipedrive_poison("deal", 3);
    let out = p.sync_incremental().await;
    let deal = &out["pipedrive.deal"];
    assert_eq!(deal.quarantined, 0);
    assert_eq!(deal.drift.get("update_time"), Some(&3), "{:?}", deal.drift);
    let w = ids(&p, "deal");
    assert_eq!(w.len(), live(&p, "deal").len());
    assert!(bad.iter().all(|id| w.contains(id)));
    assert_eq!(
        p.scalar("SELECT COUNT(*) FROM raw_pipedrive.deal WHERE update_time IS NULL AND _ml_extra LIKE '%\"update_time\":\"not a time\"%'"),
        "3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_drafts_custom_field_columns() {
    let p = project(opts(100), false, 50).await;
    let conn = p.conn();
    let ep = ml_connector::connect::endpoint(&conn, &p.ctx.vault).unwrap();
    let drafts = ml_connector::systems::discover(&conn, &ep, &p.ctx.defs, &["deal".into()])
        .await
        .unwrap()
        .into_iter()
        .filter_map(ml_connector::discover::Discovered::into_draft)
        .collect::<Vec<_>>();
    assert_eq!(drafts.len(), 1);
    let cols: Vec<(String, String)> = drafts[0]
        .catalog
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.ty.to_string()))
        .collect();
    for (name, ty) in [
        ("contract_type", "string"),
        ("regions", "json"),
        ("setup_fee", "decimal(19,4)"),
        ("setup_fee_currency", "string"),
        ("po_number", "string"),
    ] {
        assert!(
            cols.contains(&(name.to_string(), ty.to_string())),
            "{name} {ty} in {cols:?}"
        );
    }
    let text = ml_connector::discover::catalog_toml(&drafts[0].catalog);
    assert!(text.contains("tenant field"));
}

/// Each Pipedrive fixture (a real-shaped v2/v1 page) splits into records with the stream's
/// reader and decodes to its catalog: nothing quarantined, keys unique and non-null, and only
/// the nested custom fields (renamed by the reader in a live run) left untyped.
#[test]
fn fixtures_decode_to_their_catalogs() {
    use arrow_array::Array;
    let defs = ml_connector::spec::Definitions::builtin().unwrap();
    let mut checked = 0;
    for stream in defs.select(&["pipedrive".into()]).unwrap() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/pipedrive")
            .join(&stream.id.entity)
            .join("page.json");
        let body = std::fs::read(&path).unwrap();
        let rows = ml_connector::streams::records(stream, &body).unwrap();
        assert!(!rows.is_empty(), "{}", stream.id);
        let dec = ml_connector::batches::RowDecoder::new(stream, "fixture", "r0").unwrap();
        let page = dec.decode_page(&body, &rows, 0).unwrap();
        assert!(
            page.quarantined.is_empty(),
            "{}: {:?}",
            stream.id,
            page.quarantined
        );
        let batch = page.batch.unwrap();
        assert_eq!(batch.num_rows(), rows.len());
        let ids = batch.column_by_name("id").unwrap();
        assert_eq!(ids.null_count(), 0, "{}", stream.id);
        let mut seen = std::collections::HashSet::new();
        for i in 0..batch.num_rows() {
            assert!(seen.insert(arrow_cast::display::array_value_to_string(ids, i).unwrap()));
        }
        let extra = batch.column_by_name("_ml_extra").unwrap();
        for (i, r) in rows.iter().enumerate() {
            let rec: serde_json::Value = serde_json::from_slice(&body[r.clone()]).unwrap();
            if rec.get("custom_fields").is_none() {
                assert!(
                    extra.is_null(i),
                    "{}: fields outside the catalog",
                    stream.id
                );
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_check_explains_a_bad_token() {
    let p = project(opts(50), false, 50).await;
    let conn = p.conn();
    let ok = ml_connector::connect::check(&conn, &p.ctx.vault).await;
    assert!(ok.ok, "{:?}", ok.problem);
    assert!(ok.steps[0].contains("Sandbox Co"));
    let mut s = Secrets::new();
    s.insert("api_token".into(), SecretString::from("wrong".to_string()));
    p.ctx.vault.put("crm", &s).unwrap();
    let bad = ml_connector::connect::check(&conn, &p.ctx.vault).await;
    assert!(!bad.ok);
    assert!(bad.problem.unwrap().contains("API token"));
}

/// The refresh grant rotates the refresh token; when the new one cannot be stored the request
/// fails with a clear error (the old token is already revoked), and the token is kept in memory
/// so a later refresh stores it once the vault accepts writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_refresh_token_that_cannot_be_stored_fails_the_request() {
    use ml_connector::http::auth::AuthProvider;
    use ml_connector::systems::pipedrive::auth::{PipedriveOAuth, RefreshStore};
    use ml_connector::vault::VaultConfig;

    let sb = Sandbox::start(opts(20), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (body, secrets) = sb.pipedrive_oauth_connection();
    let field = |name: &str| {
        secrets
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let refresh = field("refresh_token");
    let client_id = body
        .lines()
        .find_map(|l| l.strip_prefix("client_id = "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::new(&VaultConfig {
        path: dir.path().join("vault.json"),
        key_file: dir.path().join("master.key"),
    });
    let mut s = Secrets::new();
    s.insert("refresh_token".into(), SecretString::from(refresh.clone()));
    vault.put("crm", &s).unwrap();
    // The key goes missing: the vault refuses writes (it would seal with a new key).
    let key = std::fs::read(dir.path().join("master.key")).unwrap();
    std::fs::remove_file(dir.path().join("master.key")).unwrap();

    let auth = PipedriveOAuth::new(
        &format!("{}/pipedrive-oauth/oauth/token", sb.base_url()),
        &client_id,
        SecretString::from(field("client_secret")),
        SecretString::from(refresh.clone()),
        Some(RefreshStore {
            vault: vault.clone(),
            connection: "crm".into(),
        }),
    );
    let http = reqwest::Client::new();
    let err = auth
        .authorization(&http, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("could not be stored") && err.contains("`crm`") && err.contains("master.key"),
        "{err}"
    );
    let in_memory = auth.current_refresh_token().expose_secret().to_string();
    assert_ne!(in_memory, refresh, "the rotated token is kept in memory");

    // The key is back: the next refresh stores the (again rotated) token before using it.
    std::fs::write(dir.path().join("master.key"), key).unwrap();
    auth.authorization(&http, None).await.unwrap();
    let stored = vault.get("crm").unwrap().unwrap()["refresh_token"]
        .expose_secret()
        .to_string();
    assert_eq!(stored, auth.current_refresh_token().expose_secret());
    assert_ne!(stored, in_memory);
}
