//! `mlc serve` against the sandboxes: schedules driven by a manual clock (on time, no overlap,
//! one catch-up after downtime), Business Central subscriptions (handshake, renewal before
//! expiry, recreation after BC dropped one, notifications), forged and malformed webhooks
//! rejected with nothing queued, a redelivered event run once, and a Dataverse webhook driving
//! a stream run and a `dynamics_to_deltek` sink write end to end.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use chrono::{TimeZone, Utc};
use ml_connector::run::{Context, KEYSET_EVERY_RUN_PAGES, RunRequest, run_many};
use ml_connector::sandbox::{Sandbox, SandboxOptions};
use ml_connector::serve::clock::{Clock, ManualClock};
use ml_connector::serve::queue::{Executor, Trigger};
use ml_connector::serve::{ServeOptions, Server, secrets};
use ml_connector::state::StoredSubscription;
use ml_connector::systems::business_central::subscriptions::BcSubscriptions;
use ml_connector::vault::{Secrets, Vault};
use secrecy::SecretString;
use tempfile::TempDir;
use tokio::sync::Semaphore;

use crate::support::write_project;

/// Counts triggers; each run waits for a permit when gated (to hold a run "in flight").
#[derive(Default)]
struct Recorder {
    started: AtomicU64,
    finished: AtomicU64,
    triggers: std::sync::Mutex<Vec<Trigger>>,
    gate: Option<Semaphore>,
}

impl Recorder {
    fn gated() -> Arc<Self> {
        Arc::new(Self {
            gate: Some(Semaphore::new(0)),
            ..Default::default()
        })
    }
    fn started(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }
    fn finished(&self) -> u64 {
        self.finished.load(Ordering::SeqCst)
    }
    fn release(&self) {
        if let Some(g) = &self.gate {
            g.add_permits(1);
        }
    }
    fn streams(&self) -> BTreeSet<String> {
        self.triggers
            .lock()
            .unwrap()
            .iter()
            .flat_map(|t| t.streams.iter().cloned())
            .collect()
    }
}

#[async_trait]
impl Executor for Recorder {
    async fn execute(&self, t: Trigger) {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.triggers.lock().unwrap().push(t);
        if let Some(g) = &self.gate {
            g.acquire().await.unwrap().forget();
        }
        self.finished.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `f` every 10 ms for at most `secs`.
async fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

struct Env {
    _dir: TempDir,
    sandbox: Sandbox,
    ctx: Arc<Context>,
}

/// A project with crm (Dataverse), pd (Pipedrive), erp (Business Central) and vp (Deltek)
/// wired to one sandbox, `serve` appended as the `[serve]` part of mlc.toml.
/// The erp connection's streams in most tests.
const ERP_STREAMS: &str = "streams = [\"business_central.customer\", \"business_central.item\"]\n";

async fn env(scale: u64, crm_streams: &str, serve: &str) -> Env {
    env_with(scale, crm_streams, serve, ERP_STREAMS, |_| {}).await
}

/// [`env`] with `erp` (settings and `streams`) ending the erp connection and `setup` run on
/// the project folder before the context opens (stream overlays).
async fn env_with(
    scale: u64,
    crm_streams: &str,
    serve: &str,
    erp: &str,
    setup: impl FnOnce(&std::path::Path),
) -> Env {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
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
    let (pd, pd_secrets) = sandbox.pipedrive_connection();
    let (erp_conn, erp_secrets) = sandbox.business_central_connection();
    let (vp, vp_secrets) = sandbox.deltek_connection();
    let extra = format!(
        "streams = {crm_streams}\n\n[connections.pd]\n{pd}requests_per_minute = 100000\nstreams = [\"pipedrive.deal\", \"pipedrive.person\"]\n\n[connections.erp]\n{erp_conn}requests_per_minute = 100000\n{erp}\n[connections.vp]\n{vp}requests_per_minute = 100000\nstreams = []\n\n{serve}\n"
    );
    let config = write_project(dir.path(), &sandbox, &extra);
    let vault = Vault::new(&config.vault);
    for (name, list) in [("pd", pd_secrets), ("erp", erp_secrets), ("vp", vp_secrets)] {
        let mut s = Secrets::new();
        for (k, v) in list {
            s.insert(k, SecretString::from(v));
        }
        vault.put(name, &s).unwrap();
    }
    let ctx = Arc::new(Context::open(config).unwrap());
    Env {
        _dir: dir,
        sandbox,
        ctx,
    }
}

fn put_secret(ctx: &Context, conn: &str, field: &str, value: &str) {
    secrets::put(
        &ctx.vault,
        conn,
        field,
        SecretString::from(value.to_string()),
    )
    .unwrap();
}

async fn start(ctx: &Arc<Context>, clock: ManualClock, ex: Arc<dyn Executor>) -> Server {
    Server::start(
        ctx.clone(),
        ServeOptions {
            listen: Some("127.0.0.1:0".into()),
            clock: Arc::new(clock),
            tick: Duration::from_millis(10),
            subscription_check: None,
            executor: Some(ex),
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_fire_on_time_never_overlap_and_catch_up_once() {
    let e = env(
        20,
        "[\"dataverse.account\"]",
        "[serve]\n[[serve.schedules]]\nname = \"quarterly\"\ncron = \"0 */15 * * * *\"\ntime_zone = \"Europe/Paris\"\nconnection = \"crm\"\nstreams = [\"dataverse.account\"]\n",
    )
    .await;
    let t0 = Utc.with_ymd_and_hms(2026, 3, 2, 10, 1, 0).unwrap();
    let clock = ManualClock::new(t0);
    let rec = Recorder::gated();
    let server = start(&e.ctx, clock.clone(), rec.clone()).await;

    // Not before its time.
    clock.set(Utc.with_ymd_and_hms(2026, 3, 2, 10, 14, 59).unwrap());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rec.started(), 0);
    // On time.
    clock.set(Utc.with_ymd_and_hms(2026, 3, 2, 10, 15, 0).unwrap());
    assert!(eventually(5, || rec.started() == 1).await);
    assert_eq!(
        rec.streams(),
        BTreeSet::from(["dataverse.account".to_string()])
    );
    // The run is still in flight at the next occurrence: skipped, not stacked.
    clock.set(Utc.with_ymd_and_hms(2026, 3, 2, 10, 30, 0).unwrap());
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(rec.started(), 1);
    assert_eq!(server.queue.submitted(), 1);
    rec.release();
    assert!(eventually(5, || rec.finished() == 1).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rec.started(), 1, "a skipped occurrence is not run later");
    // Next occurrence runs again.
    clock.set(Utc.with_ymd_and_hms(2026, 3, 2, 10, 45, 0).unwrap());
    assert!(eventually(5, || rec.started() == 2).await);
    rec.release();
    assert!(eventually(5, || rec.finished() == 2).await);
    server.shutdown().await;

    // Down for three hours (12 occurrences missed): one catch-up run at start, then on time.
    let back = Utc.with_ymd_and_hms(2026, 3, 2, 13, 50, 0).unwrap();
    let clock = ManualClock::new(back);
    let rec = Recorder::gated();
    let server = start(&e.ctx, clock.clone(), rec.clone()).await;
    assert!(eventually(5, || rec.started() == 1).await);
    rec.release();
    assert!(eventually(5, || rec.finished() == 1).await);
    clock.set(Utc.with_ymd_and_hms(2026, 3, 2, 13, 59, 0).unwrap());
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        rec.started(),
        1,
        "missed occurrences run once, not once each"
    );
    clock.set(Utc.with_ymd_and_hms(2026, 3, 2, 14, 0, 0).unwrap());
    assert!(eventually(5, || rec.started() == 2).await);
    rec.release();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bc_subscriptions_handshake_renew_recreate_and_notify() {
    let e = env(
        20,
        "[\"dataverse.account\"]",
        "[serve]\n[serve.webhooks.erp]\nresources = [\"customers\"]\n",
    )
    .await;
    let clock = ManualClock::new(Utc::now());
    let rec = Arc::new(Recorder::default());
    // The clientState exists before the receiver loads its secrets.
    let (client_state, _) = secrets::get_or_create(&e.ctx.vault, "erp", "client_state").unwrap();
    let server = start(&e.ctx, clock.clone(), rec.clone()).await;
    let http = reqwest::Client::new();
    let hook = format!("{}/webhooks/business_central/erp", server.public_base);

    // The handshake: the token echoed as text/plain, GET or POST.
    for req in [
        http.get(format!("{hook}?validationToken=abc%2B123")),
        http.post(format!("{hook}?validationToken=abc%2B123")),
    ] {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        assert_eq!(r.text().await.unwrap(), "abc+123");
    }

    let conn = e.ctx.config.connection("erp").unwrap();
    let mgr = BcSubscriptions::new(
        conn,
        &e.ctx.vault,
        e.ctx.runtimes.endpoint(conn).unwrap(),
        vec!["customers".into()],
        &server.public_base,
        36.0,
        e.ctx.state.clone(),
    )
    .unwrap();
    let companies = e.sandbox.business_central_companies().len();
    let r = mgr.ensure(clock.now()).await.unwrap();
    assert_eq!(r.created.len(), companies);
    let subs = e.sandbox.business_central_subscriptions();
    assert_eq!(subs.len(), companies);
    assert_eq!(e.sandbox.business_central_handshakes(), companies as u64);
    let first_expiry = subs[0].2;
    assert!(first_expiry <= Utc::now() + chrono::Duration::days(3));

    // While another worker keeps them (a second `mlc serve` on the same state store), this
    // one leaves them alone.
    let other = e
        .ctx
        .state
        .lease_take(
            &ml_connector::lease::subscriptions_unit("erp"),
            "other-host:1:x",
            Duration::from_secs(60),
            ml_connector::lease::now_ms(),
        )
        .unwrap();
    let ml_connector::lease::Take::Taken(other) = other else {
        panic!("the upkeep lease is free between passes")
    };
    let r = mgr.ensure(clock.now()).await.unwrap();
    assert_eq!(r.left_to.as_deref(), Some("other-host:1:x"), "{r:?}");
    assert_eq!(e.sandbox.business_central_handshakes(), companies as u64);
    e.ctx.state.lease_release(&other).unwrap();

    // A day later: nothing to do.
    clock.advance(chrono::Duration::days(1));
    let r = mgr.ensure(clock.now()).await.unwrap();
    assert_eq!(r.kept.len(), companies);
    assert_eq!(e.sandbox.business_central_handshakes(), companies as u64);
    // 2.5 days in (under 36 h left): renewed, same ids, handshake again.
    clock.advance(chrono::Duration::hours(36));
    let r = mgr.ensure(clock.now()).await.unwrap();
    assert_eq!(r.renewed.len(), companies, "{r:?}");
    assert_eq!(
        e.sandbox.business_central_handshakes(),
        2 * companies as u64
    );
    let ids: BTreeSet<String> = subs.iter().map(|s| s.0.clone()).collect();
    let now_ids: BTreeSet<String> = e
        .sandbox
        .business_central_subscriptions()
        .iter()
        .map(|s| s.0.clone())
        .collect();
    assert_eq!(ids, now_ids);

    // BC drops one (failed deliveries): the next renewal gets 404 and creates it again.
    let dropped = subs[0].0.clone();
    assert!(e.sandbox.business_central_drop_subscription(&dropped));
    clock.advance(chrono::Duration::hours(60));
    let r = mgr.ensure(clock.now()).await.unwrap();
    assert_eq!(r.recreated.len(), 1, "{r:?}");
    assert_eq!(r.renewed.len(), companies - 1);
    let live = e.sandbox.business_central_subscriptions();
    assert_eq!(live.len(), companies);
    assert!(live.iter().all(|s| s.0 != dropped));

    // A data change: BC notifies (no record data); the customer stream is queued.
    e.sandbox.business_central_mutate();
    assert!(eventually(8, || rec.started() >= 1).await);
    assert!(server.settle(Duration::from_secs(5)).await);
    assert_eq!(
        rec.streams(),
        BTreeSet::from(["business_central.customer".to_string()])
    );
    // A notification with the wrong clientState queues nothing.
    let before = server.queue.submitted();
    let forged = serde_json::json!({"value": [{"subscriptionId": "x", "clientState": format!("{}x", secrecy::ExposeSecret::expose_secret(&client_state)), "resource": "api/v2.0/companies(1)/customers(2)", "changeType": "updated", "lastModifiedDateTime": "2026-01-01T00:00:00Z", "expirationDateTime": "2026-01-04T00:00:00Z"}]});
    let r = http.post(&hook).json(&forged).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(server.queue.submitted(), before);
    server.shutdown().await;
}

/// Records `id` as a subscription mlc created for erp (as `BcSubscriptions` does).
fn hold_subscription(ctx: &Context, id: &str) {
    ctx.state
        .serve_put_subscription(&StoredSubscription {
            connection: "erp".into(),
            resource: format!("/api/v2.0/companies(1)/{id}"),
            subscription_id: id.into(),
            etag: None,
            expires_at: Utc::now() + chrono::Duration::days(3),
        })
        .unwrap();
}

/// A Business Central notification of one change.
fn bc_notice(
    subscription: &str,
    client_state: &str,
    resource: &str,
    change: &str,
) -> serde_json::Value {
    serde_json::json!({"value": [{"subscriptionId": subscription, "clientState": client_state, "resource": resource, "changeType": change, "lastModifiedDateTime": "2026-01-01T00:00:00Z", "expirationDateTime": "2026-01-04T00:00:00Z"}]})
}

/// The subscription manager of erp for entity set `set`, notifying `server`.
fn bc_manager(e: &Env, server: &Server, set: &str) -> BcSubscriptions {
    let conn = e.ctx.config.connection("erp").unwrap();
    BcSubscriptions::new(
        conn,
        &e.ctx.vault,
        e.ctx.runtimes.endpoint(conn).unwrap(),
        vec![set.into()],
        &server.public_base,
        36.0,
        e.ctx.state.clone(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bc_notices_for_foreign_subscriptions_are_refused_and_our_faults_are_retried() {
    let e = env(
        20,
        "[\"dataverse.account\"]",
        "[serve]\n[serve.webhooks.erp]\nresources = [\"customers\"]\n",
    )
    .await;
    let clock = ManualClock::new(Utc::now());
    let rec = Arc::new(Recorder::default());
    let (client_state, _) = secrets::get_or_create(&e.ctx.vault, "erp", "client_state").unwrap();
    let client_state = secrecy::ExposeSecret::expose_secret(&client_state).to_string();
    let server = start(&e.ctx, clock.clone(), rec.clone()).await;
    let http = reqwest::Client::new();
    let hook = format!("{}/webhooks/business_central/erp", server.public_base);
    let mgr = bc_manager(&e, &server, "customers");
    let companies = e.sandbox.business_central_companies().len();
    assert_eq!(
        mgr.ensure(clock.now()).await.unwrap().created.len(),
        companies
    );
    let held = e.ctx.state.serve_subscriptions("erp").unwrap();
    let resource = "api/v2.0/companies(1)/customers(2)".to_string();

    // The right clientState with a subscription we never made: refused, nothing queued.
    for forged in [
        bc_notice("5b5c-not-ours", &client_state, &resource, "updated"),
        serde_json::json!({"value": [
            bc_notice(&held[0].subscription_id, &client_state, &resource, "updated")["value"][0],
            bc_notice("5b5c-not-ours", &client_state, &resource, "deleted")["value"][0]]}),
    ] {
        let r = http.post(&hook).json(&forged).send().await.unwrap();
        assert_eq!(r.status(), 403, "{forged}");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.queue.submitted(), 0);
    assert_eq!(rec.started(), 0);
    assert!(
        !e.ctx
            .state
            .keyset_requested("erp", "business_central.customer", None)
            .unwrap()
    );

    // Our state store fails while BC delivers: 503, BC retries and keeps the subscription,
    // and the retry after the repair gets through.
    let db = rusqlite::Connection::open(&e.ctx.config.state_path).unwrap();
    db.execute_batch("ALTER TABLE serve_bc_subscriptions RENAME TO serve_bc_subscriptions_away")
        .unwrap();
    e.sandbox.business_central_mutate();
    let failed_twice = || {
        e.sandbox
            .business_central_deliveries()
            .iter()
            .filter(|d| d.status == Some(503))
            .count()
            >= 2
    };
    assert!(
        eventually(10, failed_twice).await,
        "{:?}",
        e.sandbox.business_central_deliveries()
    );
    assert_eq!(e.sandbox.business_central_subscriptions().len(), companies);
    db.execute_batch("ALTER TABLE serve_bc_subscriptions_away RENAME TO serve_bc_subscriptions")
        .unwrap();
    assert!(
        eventually(10, || rec.started() >= 1).await,
        "{:?}",
        e.sandbox.business_central_deliveries()
    );
    // The sandbox records a delivery's status once our answer reaches it, which can be
    // after the run it queued has started.
    let retried_through = || {
        e.sandbox
            .business_central_deliveries()
            .iter()
            .any(|d| d.status == Some(200) && d.attempt > 0)
    };
    assert!(
        eventually(10, retried_through).await,
        "{:?}",
        e.sandbox.business_central_deliveries()
    );
    assert_eq!(e.sandbox.business_central_subscriptions().len(), companies);
    assert!(server.settle(Duration::from_secs(5)).await);

    // A subscription we no longer hold answers 4xx, and BC (the fake) deletes it.
    let gone = held[0].clone();
    db.execute(
        "DELETE FROM serve_bc_subscriptions WHERE subscription_id = ?1",
        [&gone.subscription_id],
    )
    .unwrap();
    let before = e.sandbox.business_central_deliveries().len();
    let mut rounds = 0;
    while e
        .sandbox
        .business_central_subscriptions()
        .iter()
        .any(|s| s.0 == gone.subscription_id)
        && rounds < 20
    {
        e.sandbox.business_central_mutate();
        tokio::time::sleep(Duration::from_millis(200)).await;
        rounds += 1;
    }
    assert!(
        e.sandbox.business_central_deliveries()[before..]
            .iter()
            .any(|d| d.status == Some(403) && d.subscription_ids.contains(&gone.subscription_id))
    );
    assert!(
        e.sandbox
            .business_central_subscriptions()
            .iter()
            .all(|s| s.0 != gone.subscription_id)
    );

    // (BC batches items of several subscriptions in one notice and drops them all.) The next
    // upkeep pass makes what we lost again.
    assert!(server.settle(Duration::from_secs(5)).await);
    mgr.ensure(clock.now()).await.unwrap();
    assert_eq!(e.sandbox.business_central_subscriptions().len(), companies);

    // Dropped at BC without us knowing: the next upkeep pass (no renewal due) reads it back,
    // finds it missing and creates it again under a new id.
    let other = e.ctx.state.serve_subscriptions("erp").unwrap()[0].clone();
    assert!(
        e.sandbox
            .business_central_drop_subscription(&other.subscription_id)
    );
    let r = mgr.ensure(clock.now()).await.unwrap();
    assert_eq!(r.recreated.len(), 1, "{r:?}");
    assert_eq!(r.kept.len(), companies - 1, "{r:?}");
    let live = e.sandbox.business_central_subscriptions();
    assert_eq!(live.len(), companies);
    let stored = e.ctx.state.serve_subscriptions("erp").unwrap();
    for s in &stored {
        assert!(
            live.iter().any(|l| l.0 == s.subscription_id),
            "{s:?} not live"
        );
    }
    assert!(
        stored
            .iter()
            .all(|s| s.subscription_id != other.subscription_id)
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bc_deleted_notice_runs_a_keyset_pass_that_removes_the_row() {
    const PAGE: u32 = 1;
    let e = env_with(
        100,
        "[\"dataverse.account\"]",
        "[serve]\n[serve.webhooks.erp]\nresources = [\"salesOrders\"]\n",
        "reconcile_every_hours = 1000\nstreams = [\"business_central.sales_order\"]\n",
        |dir| {
            let d = dir.join("streams/business_central");
            std::fs::create_dir_all(&d).unwrap();
            let text = include_str!("../../streams/business_central/_source.toml")
                .replace("page_size = 5000\n", &format!("page_size = {PAGE}\n"));
            assert!(text.contains(&format!("page_size = {PAGE}\n")));
            std::fs::write(d.join("_source.toml"), text).unwrap();
        },
    )
    .await;
    let conn = e.ctx.config.connection("erp").unwrap();
    let sid = "business_central.sales_order".to_string();
    let stream = e.ctx.defs.get(&sid.parse().unwrap()).unwrap().clone();
    let keys = || {
        e.ctx
            .warehouse
            .local()
            .unwrap()
            .keys(
                &stream.id.dataset(),
                &stream.id.entity,
                &["company_id", "id"],
            )
            .unwrap()
    };
    // A first snapshot; the table is too large for a key-set pass with every run.
    let first = run_many(
        &e.ctx,
        &[conn],
        std::slice::from_ref(&sid),
        &RunRequest::Sync { full: false },
    )
    .await
    .unwrap();
    let first = first[0].1.as_ref().unwrap();
    assert_eq!(first.kind, "snapshot");
    assert!(
        first.table_rows > KEYSET_EVERY_RUN_PAGES * u64::from(PAGE),
        "{first:?}"
    );
    let (client_state, _) = secrets::get_or_create(&e.ctx.vault, "erp", "client_state").unwrap();
    let client_state = secrecy::ExposeSecret::expose_secret(&client_state).to_string();
    let server = Server::start(
        e.ctx.clone(),
        ServeOptions {
            listen: Some("127.0.0.1:0".into()),
            clock: Arc::new(ManualClock::new(Utc::now())),
            tick: Duration::from_millis(10),
            subscription_check: None,
            executor: None,
        },
    )
    .await
    .unwrap();
    let mgr = bc_manager(&e, &server, "salesOrders");
    mgr.ensure(Utc::now()).await.unwrap();

    // Another BC user deletes an order (API writes send no notice in the fake).
    let row = e.sandbox.business_central_live_rows("salesOrders").unwrap()[0].clone();
    let ep = ml_connector::connect::endpoint(conn, &e.ctx.vault).unwrap();
    let r = ep
        .http
        .send(
            reqwest::Method::DELETE,
            &format!(
                "{}/api/v2.0/companies({})/salesOrders({})",
                ep.base, row.company_id, row.id
            ),
            "test",
            ml_connector::http::Idempotency::Unsafe,
            |rb| rb.header("If-Match", "*"),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    let key = vec![row.company_id.clone(), row.id.clone()];
    assert!(keys().contains(&key));
    let sub = e
        .ctx
        .state
        .serve_subscriptions("erp")
        .unwrap()
        .into_iter()
        .find(|s| s.resource.contains(&row.company_id))
        .unwrap();
    let hook = format!("{}/webhooks/business_central/erp", server.public_base);
    let resource = format!(
        "api/v2.0/companies({})/salesOrders({})",
        row.company_id, row.id
    );
    let http = reqwest::Client::new();
    let runs = |kind: &str| {
        e.ctx
            .state
            .runs(Some(&sid), 100)
            .unwrap()
            .iter()
            .filter(|r| r.kind == kind && r.status == "committed")
            .count()
    };
    // An `updated` notice: an incremental read, which cannot see the delete.
    let r = http
        .post(&hook)
        .json(&bc_notice(
            &sub.subscription_id,
            &client_state,
            &resource,
            "updated",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(eventually(30, || runs("incremental") == 1).await);
    assert!(server.settle(Duration::from_secs(30)).await);
    assert_eq!(runs("keyset"), 0);
    assert!(keys().contains(&key), "a cursor read removed a deleted row");
    // The `deleted` notice asks for a key-set pass: the row leaves the warehouse.
    let r = http
        .post(&hook)
        .json(&bc_notice(
            &sub.subscription_id,
            &client_state,
            &resource,
            "deleted",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(eventually(60, || runs("keyset") == 1).await);
    assert!(server.settle(Duration::from_secs(30)).await);
    assert!(
        !keys().contains(&key),
        "the deleted row is still in the warehouse"
    );
    assert_eq!(keys().len() as u64, first.table_rows - 1);
    // Answered: the next run reads incrementally only.
    assert!(
        !e.ctx
            .state
            .keyset_requested(
                "erp",
                &sid,
                e.ctx.state.last_reconciled("erp", &sid).unwrap().as_deref()
            )
            .unwrap()
    );
    server.shutdown().await;
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_malformed_webhooks_are_rejected_and_a_redelivered_event_runs_once() {
    let e = env(
        20,
        "[\"dataverse.account\", \"dataverse.contact\"]",
        "[serve]\nmax_body_bytes = 4096\n[serve.webhooks.pd]\nbasic_user = \"mlc\"\n",
    )
    .await;
    put_secret(&e.ctx, "crm", "key", "dv-key-1");
    put_secret(&e.ctx, "pd", "password", "pd-pass");
    put_secret(&e.ctx, "pd", "signing_secret", "pd-signing");
    put_secret(&e.ctx, "erp", "client_state", "bc-state");
    hold_subscription(&e.ctx, "s");
    let rec = Arc::new(Recorder::default());
    let server = start(&e.ctx, ManualClock::new(Utc::now()), rec.clone()).await;
    let http = reqwest::Client::new();
    let base = &server.public_base;
    let dv = format!("{base}/webhooks/dataverse/crm");
    let pd = format!("{base}/webhooks/pipedrive/pd");
    let bc = format!("{base}/webhooks/business_central/erp");
    let context = serde_json::json!({
        "MessageName": "Update", "PrimaryEntityName": "account",
        "PrimaryEntityId": "3e2f9b7c-0000-47a0-a1d3-0a0000000004", "InputParameters": [], "OutputParameters": []
    })
    .to_string();
    let event = br#"{"meta":{"action":"change","entity":"deal","entity_id":"42","version":"2.0","id":"b7c1-0001","attempt":1},"data":{"id":42,"update_time":"2026-01-01T00:00:00Z"},"previous":{}}"#.to_vec();
    let sig = ml_connector::systems::pipedrive::webhook::sign("pd-signing", &event);
    let huge = vec![b' '; 8192];

    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        ("dataverse: no key", http.post(&dv).body(context.clone()), 401),
        (
            "dataverse: wrong key",
            http.post(format!("{dv}?code=dv-key-2")).body(context.clone()),
            401,
        ),
        (
            "dataverse: key prefix",
            http.post(format!("{dv}?code=dv-key")).body(context.clone()),
            401,
        ),
        (
            "dataverse: malformed body",
            http.post(format!("{dv}?code=dv-key-1")).body("{\"MessageName\": 3"),
            400,
        ),
        (
            "dataverse: oversized body",
            http.post(format!("{dv}?code=dv-key-1")).body(huge.clone()),
            413,
        ),
        ("pipedrive: missing auth", http.post(&pd).header("x-pipedrive-signature", &sig).body(event.clone()), 401),
        (
            "pipedrive: wrong password",
            http.post(&pd)
                .header("authorization", basic("mlc", "nope"))
                .header("x-pipedrive-signature", &sig)
                .body(event.clone()),
            401,
        ),
        (
            "pipedrive: wrong user",
            http.post(&pd)
                .header("authorization", basic("admin", "pd-pass"))
                .header("x-pipedrive-signature", &sig)
                .body(event.clone()),
            401,
        ),
        (
            "pipedrive: bad signature",
            http.post(&pd)
                .header("authorization", basic("mlc", "pd-pass"))
                .header("x-pipedrive-signature", ml_connector::systems::pipedrive::webhook::sign("other", &event))
                .body(event.clone()),
            401,
        ),
        (
            "pipedrive: body changed after signing",
            http.post(&pd)
                .header("authorization", basic("mlc", "pd-pass"))
                .header("x-pipedrive-signature", &sig)
                .body([event.clone(), b" ".to_vec()].concat()),
            401,
        ),
        (
            "pipedrive: malformed body",
            http.post(&pd)
                .header("authorization", basic("mlc", "pd-pass"))
                .header("x-pipedrive-signature", ml_connector::systems::pipedrive::webhook::sign("pd-signing", b"{\"meta\":{}}"))
                .body("{\"meta\":{}}"),
            400,
        ),
        (
            "pipedrive: oversized body",
            http.post(&pd).header("authorization", basic("mlc", "pd-pass")).body(huge.clone()),
            413,
        ),
        (
            "business central: wrong clientState",
            http.post(&bc).json(&serde_json::json!({"value": [{"subscriptionId": "s", "clientState": "bc-statf", "resource": "api/v2.0/companies(1)/customers(2)", "changeType": "updated"}]})),
            401,
        ),
        (
            "business central: one forged item among good ones",
            http.post(&bc).json(&serde_json::json!({"value": [
                {"subscriptionId": "s", "clientState": "bc-state", "resource": "api/v2.0/companies(1)/customers(2)", "changeType": "updated"},
                {"subscriptionId": "s", "clientState": "nope", "resource": "api/v2.0/companies(1)/items(2)", "changeType": "updated"}]})),
            401,
        ),
        ("business central: malformed body", http.post(&bc).body("{\"value\": {}}"), 400),
        ("business central: no items", http.post(&bc).body("{\"value\": []}"), 400),
        ("business central: GET without token", http.get(&bc), 400),
        ("unknown connection", http.post(format!("{base}/webhooks/dataverse/nope?code=dv-key-1")).body(context.clone()), 404),
        ("wrong system for the connection", http.post(format!("{base}/webhooks/dataverse/pd?code=dv-key-1")).body(context.clone()), 404),
    ];
    for (what, req, status) in cases {
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{what}");
        let text = r.text().await.unwrap_or_default();
        for secret in ["dv-key-1", "pd-pass", "pd-signing", "bc-state"] {
            assert!(!text.contains(secret), "{what}: answer leaks a secret");
        }
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        server.queue.submitted(),
        0,
        "a rejected request queued work"
    );
    assert_eq!(rec.started(), 0);

    // A valid Pipedrive event delivered three times (at least once): one trigger, one run.
    for attempt in 0..3 {
        let r = http
            .post(&pd)
            .header("authorization", basic("mlc", "pd-pass"))
            .header("x-pipedrive-signature", &sig)
            .body(event.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "delivery {attempt}");
        // Redeliveries arrive after the first was handled (as Pipedrive retries do).
        assert!(server.settle(Duration::from_secs(5)).await);
    }
    assert_eq!(server.queue.submitted(), 1);
    assert_eq!(rec.started(), 1);
    assert_eq!(
        rec.streams(),
        BTreeSet::from(["pipedrive.deal".to_string()])
    );
    // Valid Dataverse and Business Central events are accepted.
    let r = http
        .post(format!("{dv}?code=dv-key-1"))
        .body(context.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(&bc)
        .json(&serde_json::json!({"value": [{"subscriptionId": "s", "clientState": "bc-state", "resource": "/api/v2.0/companies(1)/items?$filter=lastModifiedDateTime%20gt%202026-01-01T00:00:00Z", "changeType": "collection"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(server.settle(Duration::from_secs(5)).await);
    assert_eq!(
        rec.streams(),
        BTreeSet::from([
            "pipedrive.deal".to_string(),
            "dataverse.account".to_string(),
            "business_central.item".to_string()
        ])
    );

    // Health and metrics.
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let m = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("mlc_webhooks_rejected_total{system=\"pipedrive\",reason=\"bad signature\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("mlc_webhooks_received_total{system=\"pipedrive\"} 3"),
        "{m}"
    );
    for system in ["dataverse", "pipedrive"] {
        assert!(
            m.contains(&format!(
                "mlc_webhooks_rejected_total{{system=\"{system}\",reason=\"body too large\"}} 1"
            )),
            "{m}"
        );
    }
    assert!(
        m.contains("mlc_triggers_total{origin=\"webhook\",outcome=\"duplicate\"} 2"),
        "{m}"
    );
    server.shutdown().await;

    // The dedupe is durable: after a restart the same event still queues nothing.
    let rec2 = Arc::new(Recorder::default());
    let server = start(&e.ctx, ManualClock::new(Utc::now()), rec2.clone()).await;
    let r = http
        .post(format!("{}/webhooks/pipedrive/pd", server.public_base))
        .header("authorization", basic("mlc", "pd-pass"))
        .header("x-pipedrive-signature", &sig)
        .body(event.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(server.queue.submitted(), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipedrive_webhooks_registered_and_delivered_at_least_once_are_deduplicated() {
    let e = env(
        20,
        "[\"dataverse.account\"]",
        "[serve]\n[serve.webhooks.pd]\nobjects = [\"deal\"]\n",
    )
    .await;
    let rec = Arc::new(Recorder::default());
    // Register before start so the server loads the generated password.
    let mut cfg = e.ctx.config.clone();
    // The webhook URL needs the server's port: bind first, then register with its base.
    let server = start(&e.ctx, ManualClock::new(Utc::now()), rec.clone()).await;
    cfg.serve.public_url = Some(server.public_base.clone());
    server.shutdown().await;
    let out = ml_connector::serve::register::register(
        &cfg,
        &e.ctx.vault,
        e.ctx.state.clone(),
        cfg.connection("pd").unwrap(),
    )
    .await
    .unwrap();
    assert!(out.contains("created: *.deal"), "{out}");
    // Registering again finds the webhook instead of adding a second one.
    let again = ml_connector::serve::register::register(
        &cfg,
        &e.ctx.vault,
        e.ctx.state.clone(),
        cfg.connection("pd").unwrap(),
    )
    .await
    .unwrap();
    assert!(again.contains("already exists"), "{again}");

    // Same port as registered.
    let port = server_port(&cfg);
    let server = Server::start(
        e.ctx.clone(),
        ServeOptions {
            listen: Some(format!("127.0.0.1:{port}")),
            clock: Arc::new(ManualClock::new(Utc::now())),
            tick: Duration::from_millis(10),
            subscription_check: None,
            executor: Some(rec.clone()),
        },
    )
    .await
    .unwrap();
    e.sandbox.pipedrive_webhook_duplicates(2);
    e.sandbox.pipedrive_mutate();
    // Every deal event arrives three times; each distinct event is acted on once.
    let mut last = u64::MAX;
    let mut stable = 0;
    for _ in 0..400 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let d = e.sandbox.pipedrive_webhooks_delivered();
        if d > 0 && d == last {
            stable += 1;
            if stable == 10 {
                break;
            }
        } else {
            stable = 0;
        }
        last = d;
    }
    let delivered = e.sandbox.pipedrive_webhooks_delivered();
    assert!(delivered > 0 && delivered % 3 == 0, "{delivered}");
    let m = server.metrics.render(None, Utc::now());
    assert!(
        m.contains(&format!(
            "mlc_webhooks_received_total{{system=\"pipedrive\"}} {delivered}"
        )),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "mlc_triggers_total{{origin=\"webhook\",outcome=\"duplicate\"}} {}",
            delivered / 3 * 2
        )),
        "{m}"
    );
    assert!(server.settle(Duration::from_secs(5)).await);
    assert!(rec.started() >= 1);
    assert_eq!(
        rec.streams(),
        BTreeSet::from(["pipedrive.deal".to_string()])
    );
    server.shutdown().await;
}

fn server_port(cfg: &ml_connector::config::Config) -> u16 {
    cfg.serve
        .public_url
        .as_deref()
        .and_then(|u| u.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataverse_webhook_drives_a_stream_run_and_a_deltek_sink_write() {
    let e = env(
        40,
        "[\"dataverse.account\", \"dataverse.contact\"]",
        "[serve]\nflows = [\"dynamics_to_deltek\"]\n",
    )
    .await;
    put_secret(&e.ctx, "crm", "key", "dv-webhook-key");
    let server = Server::start(
        e.ctx.clone(),
        ServeOptions {
            listen: Some("127.0.0.1:0".into()),
            tick: Duration::from_millis(50),
            subscription_check: None,
            ..ServeOptions::default()
        },
    )
    .await
    .unwrap();
    e.sandbox.dataverse_register_webhook(
        &format!("{}/webhooks/dataverse/crm", server.public_base),
        Some("dv-webhook-key"),
    );
    assert!(e.sandbox.deltek_writes().is_empty());
    // A change in Dynamics: the service endpoint posts, the receiver queues account and
    // contact, the run lands them, and the enabled flow writes firms and contacts to Deltek.
    e.sandbox.mutate();
    assert!(
        eventually(25, || !e.sandbox.deltek_writes().is_empty()).await,
        "no sink write"
    );
    assert!(server.settle(Duration::from_secs(20)).await);
    let runs = e.ctx.state.runs(Some("dataverse.account"), 10).unwrap();
    assert!(runs.iter().any(|r| r.status == "committed"), "{runs:?}");
    let writes = e.sandbox.deltek_writes().len();
    // Another change: another webhook, another incremental run and more writes.
    e.sandbox.mutate();
    assert!(eventually(25, || e.sandbox.deltek_writes().len() > writes).await);
    assert!(server.settle(Duration::from_secs(20)).await);
    let m = server.metrics.render(Some(&e.ctx.state), Utc::now());
    assert!(
        m.contains("mlc_runs_total{connection=\"crm\",stream=\"dataverse.account\",status=\"ok\"}"),
        "{m}"
    );
    assert!(
        m.contains("mlc_sink_jobs_total{flow=\"dynamics_to_deltek\",status=\"created\"}"),
        "{m}"
    );
    assert!(
        m.contains("mlc_stream_lag_seconds{connection=\"crm\",stream=\"dataverse.account\"}"),
        "{m}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlc_serve_answers_health_logs_json_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader, Read};
    let e = env(
        20,
        "[\"dataverse.account\"]",
        "[serve]\n[[serve.schedules]]\ncron = \"@hourly\"\nconnection = \"crm\"\n",
    )
    .await;
    let config = e.ctx.config.dir.join("mlc.toml");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mlc"))
        .arg("--config")
        .arg(&config)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut l = String::new();
        BufReader::new(stdout).read_line(&mut l).unwrap();
        l
    })
    .await
    .unwrap();
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    let r = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok\n");
    // SAFETY: signals the child this test spawned.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = tokio::task::spawn_blocking(move || {
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (child.wait().unwrap(), err)
    });
    let (status, err) = tokio::time::timeout(Duration::from_secs(10), status)
        .await
        .expect("mlc serve did not stop on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}\n{err}");
    // stderr is not a terminal: JSON lines.
    let first = err
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("{err}"));
    let v: serde_json::Value = serde_json::from_str(first).unwrap();
    assert!(
        v.get("level").is_some() && v.get("fields").is_some(),
        "{first}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_bc_subscriptions_require_the_echo_and_if_match() {
    use ml_connector::http::Idempotency;
    use reqwest::Method;
    let e = env(20, "[\"dataverse.account\"]", "[serve]\n").await;
    let rec = Arc::new(Recorder::default());
    let server = start(&e.ctx, ManualClock::new(Utc::now()), rec).await;
    let conn = e.ctx.config.connection("erp").unwrap();
    let ep = ml_connector::connect::endpoint(conn, &e.ctx.vault).unwrap();
    let subs = format!("{}/api/v2.0/subscriptions", ep.base);
    let (company, _) = e.sandbox.business_central_companies()[0].clone();
    let body = |url: &str| {
        serde_json::json!({
            "notificationUrl": url,
            "resource": format!("/api/v2.0/companies({company})/customers"),
            "clientState": "state-1",
        })
    };
    let send =
        |method: Method, url: String, body: Option<serde_json::Value>, if_match: Option<String>| {
            let http = ep.http.clone();
            async move {
                http.send(method, &url, "test", Idempotency::Unsafe, |rb| {
                    let rb = match &if_match {
                        Some(t) => rb.header("If-Match", t.clone()),
                        None => rb,
                    };
                    match &body {
                        Some(b) => rb.json(b),
                        None => rb,
                    }
                })
                .await
            }
        };
    // An endpoint that does not echo the validation token: no subscription.
    let not_echoing = format!("{}/_sandbox/health", e.sandbox.base_url());
    let err = send(Method::POST, subs.clone(), Some(body(&not_echoing)), None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(e.sandbox.business_central_subscriptions().is_empty());
    // The receiver echoes: 201 with the subscription, expiring within 3 days.
    let hook = format!("{}/webhooks/business_central/erp", server.public_base);
    let r = send(Method::POST, subs.clone(), Some(body(&hook)), None)
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let id = v["subscriptionId"].as_str().unwrap().to_string();
    let etag = v["@odata.etag"].as_str().unwrap().to_string();
    let expires =
        chrono::DateTime::parse_from_rfc3339(v["expirationDateTime"].as_str().unwrap()).unwrap();
    assert!(expires <= Utc::now() + chrono::Duration::days(3));
    let one = format!("{subs}('{id}')");
    // Renewal needs If-Match, and the current etag.
    let err = send(Method::PATCH, one.clone(), Some(body(&hook)), None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    let err = send(
        Method::PATCH,
        one.clone(),
        Some(body(&hook)),
        Some("W/\"stale\"".into()),
    )
    .await
    .unwrap_err();
    assert_eq!(err.status(), Some(409));
    let r = send(
        Method::PATCH,
        one.clone(),
        Some(body(&hook)),
        Some(etag.clone()),
    )
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_ne!(v["@odata.etag"].as_str().unwrap(), etag);
    assert_eq!(e.sandbox.business_central_handshakes(), 2);
    // Delete, then it is gone.
    let r = send(Method::DELETE, one.clone(), None, Some("*".into()))
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    let err = send(Method::GET, one.clone(), None, None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));

    // Notifications, as a capturing endpoint sees them: one item per changed customer of the
    // subscribed company, no record data, the subscription's clientState.
    let captured = Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let sink = captured.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |q: axum::extract::RawQuery, body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                if let Some(t) =
                    q.0.as_deref()
                        .and_then(|q| q.strip_prefix("validationToken="))
                {
                    return t.to_string();
                }
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                String::new()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let capture = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let r = send(Method::POST, subs.clone(), Some(body(&capture)), None)
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    e.sandbox.business_central_mutate();
    assert!(eventually(5, || !captured.lock().unwrap().is_empty()).await);
    let items = captured.lock().unwrap()[0]["value"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!items.is_empty());
    let prefix = format!("api/v2.0/companies({company})/customers(");
    let mut kinds = BTreeSet::new();
    for i in &items {
        assert_eq!(i["clientState"], "state-1");
        assert!(i["resource"].as_str().unwrap().starts_with(&prefix), "{i}");
        kinds.insert(i["changeType"].as_str().unwrap().to_string());
        assert!(
            i.get("displayName").is_none(),
            "notifications carry no record data"
        );
    }
    let allowed: BTreeSet<String> = ["created", "updated", "deleted"].map(String::from).into();
    assert!(kinds.is_subset(&allowed), "{kinds:?}");
    assert!(kinds.contains("updated"), "{kinds:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipedrive_v1_webhooks_reach_the_receiver() {
    let e = env(
        20,
        "[\"dataverse.account\"]",
        "[serve]\n[serve.webhooks.pd]\nversion = \"1.0\"\nobjects = [\"person\"]\n",
    )
    .await;
    let rec = Arc::new(Recorder::default());
    // Registered while the server runs: the generated password is picked up from the vault
    // on the first delivery, without a restart.
    let server = start(&e.ctx, ManualClock::new(Utc::now()), rec.clone()).await;
    let mut cfg = e.ctx.config.clone();
    cfg.serve.public_url = Some(server.public_base.clone());
    let out = ml_connector::serve::register::register(
        &cfg,
        &e.ctx.vault,
        e.ctx.state.clone(),
        cfg.connection("pd").unwrap(),
    )
    .await
    .unwrap();
    assert!(out.contains("*.person"), "{out}");
    e.sandbox.pipedrive_mutate();
    assert!(eventually(8, || rec.started() >= 1).await);
    assert!(server.settle(Duration::from_secs(5)).await);
    assert_eq!(
        rec.streams(),
        BTreeSet::from(["pipedrive.person".to_string()])
    );
    let m = server.metrics.render(None, Utc::now());
    assert!(
        !m.contains("mlc_webhooks_rejected_total{system=\"pipedrive\""),
        "{m}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_run_in_flight_finish() {
    let e = env(20, "[\"dataverse.account\"]", "[serve]\n").await;
    put_secret(&e.ctx, "crm", "key", "k");
    let rec = Recorder::gated();
    let server = start(&e.ctx, ManualClock::new(Utc::now()), rec.clone()).await;
    let ctx = serde_json::json!({"MessageName": "Create", "PrimaryEntityName": "account", "PrimaryEntityId": "3e2f9b7c-0000-47a0-a1d3-0a0000000004"});
    let r = reqwest::Client::new()
        .post(format!(
            "{}/webhooks/dataverse/crm?code=k",
            server.public_base
        ))
        .json(&ctx)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(eventually(5, || rec.started() == 1).await);
    let stopping = tokio::spawn(server.shutdown());
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!stopping.is_finished(), "shutdown did not wait for the run");
    rec.release();
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.finished(), 1);
}
