//! The sink flow `pipedrive_to_business_central` against the sandboxes: Pipedrive synced into the
//! lake, then organizations, persons and products written as Business Central customers,
//! contacts and items of "CRONUS USA, Inc." — each once, an organization that already exists
//! in BC by name linked instead of duplicated — and each won deal as one draft sales order on
//! its customer with a line per deal product. Re-reads and replays write nothing (that a
//! dropped create answer does not duplicate is checked for every target in
//! sink_conformance.rs), a rename in Pipedrive updates only that field under a
//! fresh `If-Match` (a BC user's own change survives), and a `post = true` overlay posts each
//! invoice once.

use std::collections::HashMap;

use ml_connector::config::Config;
use ml_connector::loaders::sink::plan::Action;
use ml_connector::loaders::sink::{Replay, Sink};
use ml_connector::loaders::warehouse::OutputFormat;
use ml_connector::run::{Context, RunRequest, run_many};
use ml_connector::sandbox::{BcWriteLog, Sandbox, SandboxOptions};
use ml_connector::state::JobStatus;
use ml_connector::vault::{Secrets, Vault};
use secrecy::SecretString;
use serde_json::{Value, json};
use tempfile::TempDir;

const FLOW: &str = "pipedrive_to_business_central";
/// The built-in flow file, the base of the project overlays below.
const BUILTIN: &str = include_str!("../../loaders/sink/pipedrive_to_business_central.toml");

/// Writes `text` as the project's overlay of the flow (`loaders/sink/<FLOW>.toml` in `dir`).
fn write_overlay(dir: &std::path::Path, text: &str) {
    let d = dir.join("loaders/sink");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(format!("{FLOW}.toml")), text).unwrap();
}
const COMPANY: &str = "CRONUS USA, Inc.";

struct Env {
    _dir: TempDir,
    sandbox: Sandbox,
    ctx: Context,
}

impl Env {
    /// Connections `pd` (the Pipedrive fake, API token) and `bc` (the Business Central fake);
    /// `setup` runs on the project folder before the context opens (flow overlays).
    async fn new(scale: u64, setup: impl FnOnce(&std::path::Path)) -> Env {
        Env::with_bc_streams(scale, "[]", setup).await
    }

    /// Like `new`, with the BC connection syncing `bc_streams` (a TOML array).
    async fn with_bc_streams(
        scale: u64,
        bc_streams: &str,
        setup: impl FnOnce(&std::path::Path),
    ) -> Env {
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
        setup(dir.path());
        let (pd, pd_secrets) = sandbox.pipedrive_connection();
        let (bc, bc_secrets) = sandbox.business_central_connection();
        let path = dir.path().join("mlc.toml");
        std::fs::write(
            &path,
            format!(
                "[connections.pd]\n{pd}requests_per_minute = 100000\nmax_concurrency = 4\n\n[connections.bc]\n{bc}requests_per_minute = 100000\nstreams = {bc_streams}\n"
            ),
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        for (name, secrets) in [("pd", pd_secrets), ("bc", bc_secrets)] {
            let mut s = Secrets::new();
            for (k, v) in secrets {
                s.insert(k, SecretString::from(v));
            }
            Vault::new(&config.vault).put(name, &s).unwrap();
        }
        let ctx = Context::open(config).unwrap();
        Env {
            _dir: dir,
            sandbox,
            ctx,
        }
    }

    async fn sync(&self) {
        self.sync_connection("pd").await;
    }

    async fn sync_connection(&self, name: &str) {
        self.sync_streams(name, &[]).await;
    }

    /// Syncs `streams` of connection `name` (all of its streams when empty).
    async fn sync_streams(&self, name: &str, streams: &[&str]) {
        let conn = self.ctx.config.connection(name).unwrap().clone();
        let patterns: Vec<String> = streams.iter().map(|s| s.to_string()).collect();
        let results = run_many(
            &self.ctx,
            &[&conn],
            &patterns,
            &RunRequest::Sync { full: false },
        )
        .await
        .unwrap();
        for (label, r) in results {
            r.unwrap_or_else(|e| panic!("{label}: {e}"));
        }
    }

    /// Rows of a warehouse query, column name → value as text (JSON output, so commas in
    /// names are safe).
    fn rows(&self, sql: &str) -> Vec<HashMap<String, String>> {
        let json = self.ctx.warehouse.query(sql, OutputFormat::Json).unwrap();
        let rows: Vec<serde_json::Map<String, Value>> = serde_json::from_str(&json).unwrap();
        rows.into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => (k, s),
                        other => (k, other.to_string()),
                    })
                    .collect()
            })
            .collect()
    }

    fn scalar(&self, sql: &str) -> usize {
        self.rows(&sql.replacen("COUNT(*)", "COUNT(*) AS n", 1))[0]["n"]
            .parse()
            .unwrap()
    }

    fn writes(&self) -> Vec<BcWriteLog> {
        self.sandbox.business_central_writes()
    }

    /// Successful creates the BC fake received into `set`.
    fn creates(&self, set: &str) -> usize {
        self.writes()
            .iter()
            .filter(|w| w.method == "POST" && w.set == set && w.status == 201)
            .count()
    }

    fn link(&self, mapping: &str, id: &str) -> Option<String> {
        self.link_of(FLOW, mapping, id)
    }

    fn link_of(&self, flow: &str, mapping: &str, id: &str) -> Option<String> {
        self.ctx
            .state
            .sink_link(flow, mapping, id)
            .unwrap()
            .map(|l| l.target_key)
    }
}

/// One entity-set record of the target company, found by `field eq value`.
async fn find_one(
    target: &dyn ml_connector::loaders::sink::target::Target,
    set: &str,
    field: &str,
    value: &str,
) -> serde_json::Map<String, Value> {
    let mut found = target
        .search(set, &[(field.to_string(), value.to_string())])
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{set} {field} = {value}: {found:?}");
    found.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masters_are_written_once_existing_customers_linked_and_won_deals_become_one_order_each() {
    let env = Env::new(60, |_| {}).await;
    env.sync().await;
    let orgs = env.scalar("SELECT COUNT(*) FROM raw_pipedrive.organization");
    let persons = env.scalar("SELECT COUNT(*) FROM raw_pipedrive.person");
    let products = env.scalar("SELECT COUNT(*) FROM raw_pipedrive.product");
    let won = env.scalar(
        "SELECT COUNT(*) FROM raw_pipedrive.deal WHERE status = 'won' AND org_id IS NOT NULL",
    );
    let won_orphans = env
        .scalar("SELECT COUNT(*) FROM raw_pipedrive.deal WHERE status = 'won' AND org_id IS NULL");
    assert!(orgs > 1 && persons > 0 && products > 0 && won > 0);

    // A BC user already keyed one of the organizations as a customer (another case, too).
    let planted_org =
        env.rows("SELECT id, name FROM raw_pipedrive.organization ORDER BY id LIMIT 1")[0].clone();
    let sink = Sink::open(&env.ctx, FLOW).unwrap();
    let target = sink.target(None).unwrap();
    let existing = env
        .sandbox
        .business_central_live_rows("customers")
        .unwrap()
        .into_iter()
        .next()
        .unwrap();
    env.sandbox
        .business_central_set_field(
            0,
            "customers",
            &existing.id,
            "displayName",
            json!(planted_org["name"].to_uppercase()),
        )
        .unwrap();

    let plan = sink.plan().await.unwrap();
    assert_eq!(plan.count(&Action::Wait), won_orphans, "{:#?}", plan.jobs);
    let report = sink.apply(&plan, &target).await.unwrap();
    assert_eq!(report.failed, 0, "{:#?}", report.jobs);
    assert_eq!(report.waiting, won_orphans);

    // Each master record once; the planted customer linked, not created.
    assert_eq!(
        env.link("organization", &planted_org["id"]).as_deref(),
        Some(existing.id.as_str())
    );
    let audit = env.ctx.state.sink_audit_entries(FLOW, None).unwrap();
    let matched = audit
        .iter()
        .filter(|a| a.action == "match" && a.source_entity == "organization")
        .count();
    assert!(matched >= 1);
    assert_eq!(env.creates("customers") + matched, orgs);
    assert_eq!(env.creates("contacts"), persons);
    assert_eq!(env.creates("items"), products);
    assert_eq!(env.creates("salesOrders"), won);
    let companies: std::collections::BTreeSet<String> =
        env.writes().iter().map(|w| w.company.clone()).collect();
    assert_eq!(companies.len(), 1, "every write goes to {COMPANY}");

    // Each won deal: one draft order on its organization's customer, the deal id as the
    // external document number, one line per deal product, on that product's item.
    // Deal id → (product id, quantity) of each line, and the order's expected net total.
    let mut lines_of: HashMap<String, Vec<(String, f64)>> = HashMap::new();
    let mut total_of: HashMap<String, f64> = HashMap::new();
    let mut amount_discounts = 0;
    for r in env.rows(
        "SELECT deal_id, product_id, quantity, item_price, discount, discount_type FROM raw_pipedrive.deal_product ORDER BY id",
    ) {
        let num = |k: &str| r[k].parse::<f64>().unwrap();
        lines_of
            .entry(r["deal_id"].clone())
            .or_default()
            .push((r["product_id"].clone(), num("quantity")));
        let gross = num("quantity") * num("item_price");
        *total_of.entry(r["deal_id"].clone()).or_default() += if r["discount_type"] == "amount" {
            amount_discounts += 1;
            gross - num("discount")
        } else {
            gross * (1.0 - num("discount") / 100.0)
        };
    }
    assert!(amount_discounts > 0, "some lines take an amount off");
    let orders: Vec<BcWriteLog> = env
        .writes()
        .into_iter()
        .filter(|w| w.method == "POST" && w.set == "salesOrders")
        .collect();
    let mut with_lines = 0;
    for deal in env.rows(
        "SELECT id, org_id FROM raw_pipedrive.deal WHERE status = 'won' AND org_id IS NOT NULL",
    ) {
        let order = find_one(
            &*target,
            "salesOrders",
            "externalDocumentNumber",
            &deal["id"],
        )
        .await;
        let customer = env.link("organization", &deal["org_id"]).unwrap();
        assert_eq!(order["customerId"].as_str(), Some(customer.as_str()));
        assert_eq!(
            env.link("won_deal", &deal["id"]).as_deref(),
            order["id"].as_str()
        );
        let sent = orders
            .iter()
            .find(|w| w.fields["externalDocumentNumber"] == deal["id"].as_str())
            .unwrap();
        let lines = sent.fields["salesOrderLines"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let expected = lines_of.get(&deal["id"]).cloned().unwrap_or_default();
        assert_eq!(lines.len(), expected.len(), "deal {}", deal["id"]);
        for (line, (product, qty)) in lines.iter().zip(&expected) {
            let item = env.link("product", product).unwrap();
            assert_eq!(line["itemId"].as_str(), Some(item.as_str()));
            assert_eq!(line["lineType"], "Item");
            assert_eq!(line["quantity"].as_f64(), Some(*qty));
        }
        with_lines += usize::from(!lines.is_empty());
        let total = total_of.get(&deal["id"]).copied().unwrap_or_default();
        let net = order["totalAmountExcludingTax"].as_f64().unwrap();
        assert!(
            (net - total).abs() < 0.01 * (lines.len() as f64 + 1.0),
            "deal {}: total {net}, expected {total}",
            deal["id"]
        );
    }
    assert!(with_lines > 0, "some won deals have products");

    // The same change sets re-read from the start: nothing to write.
    env.ctx.state.sink_reset_cursor(FLOW).unwrap();
    let reread = sink.plan().await.unwrap();
    assert_eq!(reread.writes(), 0);
    // Replaying every job three times creates nothing either.
    let posts = env.writes().iter().filter(|w| w.method == "POST").count();
    for _ in 0..3 {
        for j in env.ctx.state.sink_jobs(FLOW, None).unwrap() {
            let r = sink
                .replay(&Replay::Job(j.job_id.clone()), &target)
                .await
                .unwrap();
            assert_eq!(r.created + r.failed, 0, "{:?}", r.jobs);
        }
    }
    assert_eq!(
        env.writes().iter().filter(|w| w.method == "POST").count(),
        posts
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipedrive_rename_patches_one_field_under_a_fresh_etag_and_keeps_bc_edits() {
    let env = Env::new(20, |_| {}).await;
    env.sync().await;
    let sink = Sink::open(&env.ctx, FLOW).unwrap();
    let target = sink.target(None).unwrap();
    let report = sink
        .apply(&sink.plan().await.unwrap(), &target)
        .await
        .unwrap();
    assert_eq!(report.failed, 0, "{:#?}", report.jobs);

    let org =
        env.rows("SELECT id FROM raw_pipedrive.organization ORDER BY id LIMIT 1")[0]["id"].clone();
    let customer = env.link("organization", &org).unwrap();
    // A BC user edits the customer (a field the flow doesn't map): the row's etag changes.
    env.sandbox
        .business_central_set_field(
            0,
            "customers",
            &customer,
            "phoneNumber",
            json!("+1 555 0100"),
        )
        .unwrap();
    // Someone renames the organization in Pipedrive.
    let (body, secrets) = env.sandbox.pipedrive_connection();
    let token = secrets[0].1.clone();
    let api = body
        .lines()
        .find_map(|l| l.strip_prefix("api_url = "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    let resp = reqwest::Client::new()
        .patch(format!("{api}/api/v2/organizations/{org}"))
        .header("x-api-token", token)
        .json(&json!({"name": "Renamed Holdings"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    env.sync().await;

    let before = env.writes().len();
    let plan = sink.plan().await.unwrap();
    let updates: Vec<_> = plan
        .jobs
        .iter()
        .filter(|j| j.action == Action::Update)
        .collect();
    assert_eq!(updates.len(), 1, "{:#?}", plan.jobs);
    let report = sink.apply(&plan, &target).await.unwrap();
    assert_eq!(
        (report.updated, report.failed),
        (1, 0),
        "{:#?}",
        report.jobs
    );
    let patches: Vec<BcWriteLog> = env.writes()[before..].to_vec();
    assert_eq!(patches.len(), 1, "{patches:#?}");
    assert_eq!(patches[0].method, "PATCH");
    assert_eq!(patches[0].status, 200);
    assert_eq!(
        patches[0].fields,
        json!({"displayName": "Renamed Holdings"})
    );
    assert!(patches[0].if_match.is_some());
    let now = find_one(&*target, "customers", "id", &customer).await;
    assert_eq!(now["displayName"], "Renamed Holdings");
    assert_eq!(now["phoneNumber"], "+1 555 0100", "the BC edit survives");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoice_overlay_posts_each_won_deal_once() {
    let overlay = BUILTIN
        .replace(
            "target = \"salesOrders\"",
            "target = \"salesInvoices\"\npost = true",
        )
        .replace(
            "field = \"salesOrderLines\"",
            "field = \"salesInvoiceLines\"",
        );
    assert!(overlay.contains("post = true") && overlay.contains("salesInvoiceLines"));
    let env = Env::new(20, |dir| {
        write_overlay(dir, &overlay);
    })
    .await;
    env.sync().await;
    let won = env.scalar(
        "SELECT COUNT(*) FROM raw_pipedrive.deal WHERE status = 'won' AND org_id IS NOT NULL",
    );
    let sink = Sink::open(&env.ctx, FLOW).unwrap();
    let target = sink.target(None).unwrap();
    let report = sink
        .apply(&sink.plan().await.unwrap(), &target)
        .await
        .unwrap();
    assert_eq!(report.failed, 0, "{:#?}", report.jobs);
    let posted = |env: &Env| {
        env.writes()
            .iter()
            .filter(|w| w.set == "salesInvoices/Microsoft.NAV.post" && w.status == 204)
            .count()
    };
    assert_eq!(env.creates("salesInvoices"), won);
    assert_eq!(posted(&env), won);
    // Replays neither re-create nor re-post.
    for j in env.ctx.state.sink_jobs(FLOW, None).unwrap() {
        sink.replay(&Replay::Job(j.job_id.clone()), &target)
            .await
            .unwrap();
    }
    assert_eq!(env.creates("salesInvoices"), won);
    assert_eq!(posted(&env), won);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bc_master_changes_reach_pipedrive_once_and_are_not_echoed_back() {
    const BACK: &str = "business_central_to_pipedrive";
    let env = Env::with_bc_streams(
        20,
        r#"["business_central.customer", "business_central.item"]"#,
        |_| {},
    )
    .await;
    env.sync().await;
    let forward = Sink::open(&env.ctx, FLOW).unwrap();
    let bc = forward.target(None).unwrap();
    let r = forward
        .apply(&forward.plan().await.unwrap(), &bc)
        .await
        .unwrap();
    assert_eq!(r.failed, 0, "{:#?}", r.jobs);
    // Items carry the product's unit and its "SKU Family" custom field, found by name (a
    // column of its own: the tenant's custom fields land without `mlc discover`).
    let product =
        env.rows("SELECT id, sku_family FROM raw_pipedrive.product ORDER BY id LIMIT 1")[0].clone();
    let family = product["sku_family"].clone();
    let item = env.link("product", &product["id"]).unwrap();
    let saved = find_one(&*bc, "items", "id", &item).await;
    assert_eq!(saved["displayName2"].as_str(), Some(family.as_str()));
    assert_eq!(saved["baseUnitOfMeasureCode"], "pcs");

    // BC read back: what the forward flow wrote there is its own echo, nothing goes back.
    env.sync_connection("bc").await;
    let back = Sink::open(&env.ctx, BACK).unwrap();
    let pd = back.target(None).unwrap();
    let plan = back.plan().await.unwrap();
    assert_eq!(plan.writes(), 0, "{:#?}", plan.jobs);
    let echoes = plan
        .jobs
        .iter()
        .filter(|j| j.reason.contains("own write"))
        .count();
    let linked = env.ctx.state.sink_links(FLOW).unwrap();
    let mirrored = linked
        .iter()
        .filter(|(m, _, _)| m == "organization" || m == "product")
        .count();
    let reasons: std::collections::BTreeSet<&str> =
        plan.jobs.iter().map(|j| j.reason.as_str()).collect();
    assert_eq!(
        echoes, mirrored,
        "every linked customer and item is an echo: {reasons:#?}"
    );
    assert!(plan.jobs.iter().any(|j| j.reason.starts_with("not linked")));
    back.apply(&plan, &pd).await.unwrap();
    assert!(env.sandbox.pipedrive_writes().is_empty());

    // A BC user renames and moves the customer, and reprices the item.
    let org =
        env.rows("SELECT id FROM raw_pipedrive.organization ORDER BY id LIMIT 1")[0]["id"].clone();
    let customer = env.link("organization", &org).unwrap();
    env.sandbox
        .business_central_set_field(
            0,
            "customers",
            &customer,
            "displayName",
            json!("Lakeside Renamed Ltd"),
        )
        .unwrap();
    env.sandbox
        .business_central_set_field(0, "customers", &customer, "city", json!("Rotterdam"))
        .unwrap();
    env.sandbox
        .business_central_set_field(0, "items", &item, "unitPrice", json!(123.45))
        .unwrap();
    env.sync_connection("bc").await;
    let plan = back.plan().await.unwrap();
    assert_eq!(plan.count(&Action::Update), 2, "{:#?}", plan.jobs);
    let r = back.apply(&plan, &pd).await.unwrap();
    assert_eq!((r.updated, r.failed), (2, 0), "{:#?}", r.jobs);
    let writes = env.sandbox.pipedrive_writes();
    assert_eq!(writes.len(), 2, "{writes:#?}");
    let org_write = writes.iter().find(|w| w.entity == "organizations").unwrap();
    assert_eq!(org_write.id.to_string(), org);
    assert_eq!(org_write.status, 200);
    assert_eq!(org_write.fields["name"], "Lakeside Renamed Ltd");
    // Only what changed since the echo of the forward write: the name, and the address whole.
    let sent: Vec<&str> = org_write
        .fields
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(sent, ["address", "name"]);
    assert_eq!(org_write.fields["address"]["locality"], "Rotterdam");
    assert!(
        org_write.fields["address"].get("country").is_some(),
        "the address goes whole"
    );
    let product_write = writes.iter().find(|w| w.entity == "products").unwrap();
    assert_eq!(product_write.id.to_string(), product["id"]);
    assert_eq!(
        product_write.fields,
        json!({"prices": [{"price": 123.45, "currency": "USD"}]})
    );

    // Pipedrive read back: both records changed there, by us: nothing goes to BC again.
    let bc_writes = env.writes().len();
    env.sync().await;
    let again = forward.plan().await.unwrap();
    assert_eq!(again.writes(), 0, "{:#?}", again.jobs);
    forward.apply(&again, &bc).await.unwrap();
    assert_eq!(env.writes().len(), bc_writes, "not echoed back into BC");
    let name = env.rows(&format!(
        "SELECT name FROM raw_pipedrive.organization WHERE id = {org}"
    ))[0]["name"]
        .clone();
    assert_eq!(name, "Lakeside Renamed Ltd");
    // And BC read again: nothing new goes to Pipedrive either.
    env.sync_connection("bc").await;
    let quiet = back.plan().await.unwrap();
    assert_eq!(quiet.writes(), 0, "{:#?}", quiet.jobs);
    // The pair is in this flow's ledger too (BC customer → Pipedrive organization).
    let back_links = env.ctx.state.sink_links(BACK).unwrap();
    assert!(
        back_links
            .iter()
            .any(|(m, id, l)| m == "customer" && id.contains(&customer) && l.target_key == org),
        "{back_links:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_that_cannot_be_written_fails_or_waits_alone_and_goes_through_once_fixed() {
    let env = Env::new(30, |_| {}).await;
    // Products arrive later than the deals that sell them: every won deal with products waits.
    env.sync_streams(
        "pd",
        &[
            "pipedrive.organization",
            "pipedrive.person",
            "pipedrive.deal",
            "pipedrive.deal_product",
        ],
    )
    .await;
    // A BC user blocked the customer one organization already is (matched by name).
    let deal = env.rows(
        "SELECT d.id, d.org_id, o.name FROM raw_pipedrive.deal d JOIN raw_pipedrive.organization o ON d.org_id = o.id \
         WHERE d.status = 'won' ORDER BY d.id LIMIT 1",
    )[0]
    .clone();
    let on_blocked = env.scalar(&format!(
        "SELECT COUNT(*) FROM raw_pipedrive.deal WHERE status = 'won' AND org_id = {}",
        deal["org_id"]
    ));
    let existing = env.sandbox.business_central_live_rows("customers").unwrap()[0].clone();
    env.sandbox
        .business_central_set_field(
            0,
            "customers",
            &existing.id,
            "displayName",
            json!(deal["name"]),
        )
        .unwrap();
    env.sandbox
        .business_central_set_field(0, "customers", &existing.id, "blocked", json!("All"))
        .unwrap();
    let sink = Sink::open(&env.ctx, FLOW).unwrap();
    let target = sink.target(None).unwrap();
    let r = sink
        .apply(&sink.plan().await.unwrap(), &target)
        .await
        .unwrap();
    assert_eq!(r.failed, 0, "{:#?}", r.jobs);
    let waiting: Vec<_> = r
        .jobs
        .iter()
        .filter(|j| j.source_entity == "won_deal" && j.outcome != "noop")
        .collect();
    assert!(!waiting.is_empty());
    for j in &waiting {
        assert_eq!(j.outcome, "waiting", "{j:?}");
        assert!(
            j.detail.contains("product") || j.detail.contains("org_id"),
            "{}",
            j.detail
        );
    }
    assert_eq!(env.creates("salesOrders"), 0);

    // The products arrive: items are created, the waiting deals go through — but the blocked
    // customer's deals fail alone, with BC's reason.
    env.sync_streams("pd", &["pipedrive.product"]).await;
    let r = sink
        .apply(&sink.plan().await.unwrap(), &target)
        .await
        .unwrap();
    let failed: Vec<_> = r.jobs.iter().filter(|j| j.outcome == "failed").collect();
    assert_eq!(failed.len(), on_blocked, "{:#?}", r.jobs);
    for j in &failed {
        assert_eq!(j.source_entity, "won_deal");
        assert!(j.detail.contains("blocked with type All"), "{}", j.detail);
    }
    let audit = env
        .ctx
        .state
        .sink_audit_entries(FLOW, Some(&failed[0].job_id))
        .unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "failed" && a.status == Some(400)),
        "{audit:#?}"
    );
    let won = env.scalar(
        "SELECT COUNT(*) FROM raw_pipedrive.deal WHERE status = 'won' AND org_id IS NOT NULL",
    );
    assert_eq!(env.creates("salesOrders"), won - on_blocked);

    // Unblocked in BC: a replay of the failed jobs writes them, once.
    env.sandbox
        .business_central_set_field(0, "customers", &existing.id, "blocked", json!(" "))
        .unwrap();
    let retry = sink.replay(&Replay::Failed, &target).await.unwrap();
    assert_eq!(
        (retry.created, retry.failed),
        (on_blocked, 0),
        "{:#?}",
        retry.jobs
    );
    assert_eq!(env.creates("salesOrders"), won);
    let again = sink.replay(&Replay::Failed, &target).await.unwrap();
    assert_eq!(again.created + again.failed, 0);
    assert_eq!(env.creates("salesOrders"), won);
    let order = find_one(
        &*target,
        "salesOrders",
        "externalDocumentNumber",
        &deal["id"],
    )
    .await;
    assert_eq!(order["customerId"].as_str(), Some(existing.id.as_str()));
}

/// A won deal without products waits while its products may still come; once the deal
/// products have been read after it and there are none, the flow's `lines.when_none` decides:
/// the built-in flow skips it with the reason (never waiting forever), an overlay sends one
/// line with the deal's value on a configured item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn won_deals_without_products_follow_the_flows_policy() {
    for value_line in [false, true] {
        let env = Env::new(200, |dir| {
            if value_line {
                let overlay = BUILTIN.replacen(
                    "source_system",
                    "stale_after_hours = 0.0\nsource_system",
                    1,
                );
                let overlay = overlay.replace(
                    "action = \"skip\"",
                    "action = \"value_line\"\nfields = { value = \"unitPrice\", title = \"description\" }\ndefaults = { lineType = \"Item\", lineObjectNumber = \"SANDBOX-SERVICES\", quantity = 1 }",
                );
                assert!(overlay.contains("value_line"));
                write_overlay(dir, &overlay);
            }
        })
        .await;
        env.sync().await;
        let bare = env.rows(
            "SELECT d.id, d.value, d.title FROM raw_pipedrive.deal d \
             LEFT JOIN raw_pipedrive.deal_product p ON p.deal_id = d.id \
             WHERE d.status = 'won' AND d.org_id IS NOT NULL AND p.id IS NULL ORDER BY d.id",
        );
        assert!(
            !bare.is_empty(),
            "the sandbox has won deals without products"
        );
        let sink = Sink::open(&env.ctx, FLOW).unwrap();
        let target = sink.target(None).unwrap();
        if value_line {
            // The configured item exists in the tenant.
            let mut item = serde_json::Map::new();
            item.insert("number".into(), json!("SANDBOX-SERVICES"));
            item.insert("displayName".into(), json!("Services"));
            item.insert("type".into(), json!("Service"));
            target.create("items", &item).await.unwrap();
        }
        let first = sink
            .apply(&sink.plan().await.unwrap(), &target)
            .await
            .unwrap();
        // Waiting, as their products may still come: stale at once with the overlay's
        // `stale_after_hours = 0`, not within the built-in flow's 24 hours.
        assert!(first.waiting >= bare.len(), "{:#?}", first.jobs);
        let status = sink.status().unwrap();
        if value_line {
            assert!(status.stale >= bare.len(), "{}", status.stale);
        } else {
            assert_eq!(status.stale, 0);
        }
        // The deal products are read again after the deals' run: now it is known they have none.
        env.sync().await;
        let plan = sink.plan().await.unwrap();
        let report = sink.apply(&plan, &target).await.unwrap();
        assert_eq!(report.failed, 0, "{:#?}", report.jobs);
        let orders: Vec<BcWriteLog> = env
            .writes()
            .into_iter()
            .filter(|w| w.method == "POST" && w.set == "salesOrders" && w.status == 201)
            .collect();
        for deal in &bare {
            let sent: Vec<&BcWriteLog> = orders
                .iter()
                .filter(|w| w.fields["externalDocumentNumber"] == deal["id"].as_str())
                .collect();
            let jobs = env.ctx.state.sink_jobs(FLOW, None).unwrap();
            let job = jobs
                .iter()
                .rfind(|j| j.source_entity == "won_deal" && j.source_id == deal["id"])
                .unwrap();
            if value_line {
                assert_eq!(sent.len(), 1, "deal {}: one order", deal["id"]);
                let lines = sent[0].fields["salesOrderLines"].as_array().unwrap();
                assert_eq!(lines.len(), 1, "deal {}: {lines:?}", deal["id"]);
                assert_eq!(lines[0]["lineObjectNumber"], "SANDBOX-SERVICES");
                assert_eq!(lines[0]["quantity"], 1);
                assert_eq!(
                    lines[0]["unitPrice"].as_f64(),
                    deal["value"].parse::<f64>().ok(),
                    "deal {}",
                    deal["id"]
                );
                assert_eq!(lines[0]["description"], deal["title"].as_str());
                assert_eq!(job.status, "applied");
            } else {
                assert!(sent.is_empty(), "deal {}: no order", deal["id"]);
                assert_eq!(job.status, "applied", "{job:?}");
                let audit = env
                    .ctx
                    .state
                    .sink_audit_entries(FLOW, Some(&job.job_id))
                    .unwrap();
                assert!(
                    audit.iter().any(|a| a.action == "noop"
                        && a.error.as_deref().is_some_and(|e| e.contains("skipped"))),
                    "{audit:?}"
                );
            }
        }
        // Nothing waits for products any more.
        assert!(
            !env.ctx
                .state
                .sink_jobs(FLOW, Some(JobStatus::Waiting))
                .unwrap()
                .iter()
                .any(|j| bare.iter().any(|d| d["id"] == j.source_id)),
        );
    }
}

/// Business Central takes at most 100 characters for a customer's `displayName` (its
/// `$metadata` says `MaxLength="100"`): an organization with a longer name is blocked by the
/// pre-flight with the reason, and nothing is sent for it; once the mapping lists the field in
/// `truncate`, it is created with the name cut to 100 characters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_longer_than_the_tenant_takes_is_blocked_before_any_write() {
    let long = format!(
        "{} Holdings",
        "Consolidated International Engineering Partners ".repeat(3)
    );
    assert!(long.chars().count() > 100);
    for truncate in [false, true] {
        let env = Env::new(20, |dir| {
            if truncate {
                let overlay = BUILTIN.replacen(
                    "natural_key = [\"displayName\"]",
                    "natural_key = [\"displayName\"]\ntruncate = [\"displayName\"]",
                    1,
                );
                assert!(overlay.contains("truncate"));
                write_overlay(dir, &overlay);
            }
        })
        .await;
        // Someone keyed a long legal name into Pipedrive.
        let (_, secrets) = env.sandbox.pipedrive_connection();
        let token = secrets
            .into_iter()
            .find(|(k, _)| k == "api_token")
            .unwrap()
            .1;
        let r = reqwest::Client::new()
            .patch(format!(
                "{}/pipedrive/api/v2/organizations/2",
                env.sandbox.base_url()
            ))
            .header("x-api-token", token)
            .json(&json!({ "name": long }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        env.sync().await;

        let sink = Sink::open(&env.ctx, FLOW).unwrap();
        let target = sink.target(None).unwrap();
        let (plan, pre) = sink.plan_checked(&target).await.unwrap();
        assert!(pre.ok(), "{:?}", pre.problems);
        let job = plan
            .jobs
            .iter()
            .find(|j| j.source_entity == "organization" && j.source_id == "2")
            .unwrap();
        let report = sink.apply(&plan, &target).await.unwrap();
        assert!(
            env.writes().iter().all(|w| w.status < 400),
            "no request the tenant refuses: {:?}",
            env.writes()
                .iter()
                .filter(|w| w.status >= 400)
                .collect::<Vec<_>>()
        );
        if truncate {
            assert_eq!(job.action, Action::Create, "{}", job.reason);
            let id = env.link("organization", "2").unwrap();
            let sent = env
                .writes()
                .into_iter()
                .find(|w| {
                    w.method == "POST"
                        && w.set == "customers"
                        && w.id.as_deref() == Some(id.as_str())
                })
                .unwrap();
            let name = sent.fields["displayName"].as_str().unwrap().to_string();
            assert_eq!(name.chars().count(), 100);
            assert!(long.starts_with(&name));
        } else {
            assert_eq!(job.action, Action::Blocked);
            assert!(
                job.reason.contains("at most 100") && job.reason.contains("truncate"),
                "{}",
                job.reason
            );
            assert_eq!(report.blocked, 1, "{:#?}", report.jobs);
            assert!(env.link("organization", "2").is_none());
            let stored = env.ctx.state.sink_job(&job.job_id).unwrap().unwrap();
            assert_eq!(stored.status, "blocked");
            // Checked again by the next apply, and still nothing is sent.
            let again = sink
                .apply(&sink.plan().await.unwrap(), &target)
                .await
                .unwrap();
            assert_eq!(again.blocked, 1);
            assert!(env.writes().iter().all(|w| w.status < 400));
            // The organization is deleted in Pipedrive, which lists deleted organizations
            // nowhere: only the next key-set pass shows it gone. The blocked job is then
            // closed as deleted in the source, and never written.
            assert!(env.sandbox.pipedrive_delete("organization", 2));
            env.sync().await;
            let plan = sink.plan().await.unwrap();
            assert!(
                !plan
                    .jobs
                    .iter()
                    .any(|j| j.source_entity == "organization" && j.source_id == "2"),
                "no change set carries it"
            );
            let closed = sink.apply(&plan, &target).await.unwrap();
            assert_eq!(closed.blocked, 0, "{:#?}", closed.jobs);
            let stored = env.ctx.state.sink_job(&job.job_id).unwrap().unwrap();
            assert_eq!(stored.status, "applied", "{stored:?}");
            let audit = env
                .ctx
                .state
                .sink_audit_entries(FLOW, Some(&job.job_id))
                .unwrap();
            assert!(
                audit.iter().any(|a| a.action == "noop"
                    && a.error
                        .as_deref()
                        .is_some_and(|e| e.contains("deleted in the source"))),
                "{audit:?}"
            );
            assert!(env.link("organization", "2").is_none());
        }
    }
}
