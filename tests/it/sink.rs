//! The sink stage against the sandboxes: Dataverse users, accounts, contacts and
//! opportunities synced into the lake, then `dynamics_to_deltek` applied to the Deltek fake —
//! each firm, contact and pursuit created once, owners matched to employees by email (or the
//! flagged default), customers on contacts resolved to the contact's firm, a Won opportunity
//! seeding exactly one project, a re-read planning zero writes, a dropped create answer not
//! duplicating on retry, and a validation error failing only its job, with the reason audited.

use std::collections::BTreeSet;
use std::sync::Arc;

use ml_connector::lake::{Manifest, PartInfo, PartWriter, sha256_hex};
use ml_connector::loaders::sink::plan::Action;
use ml_connector::loaders::sink::{JobResult, Replay, Sink};
use ml_connector::run::{Context, RunRequest, run_many};
use ml_connector::sandbox::{Sandbox, SandboxOptions};
use ml_connector::spec::StreamId;
use ml_connector::state::{AuditAction, JobStatus};
use ml_connector::vault::{Secrets, Vault};
use secrecy::SecretString;
use serde_json::{Map, Value};
use tempfile::TempDir;

use crate::support::write_project;

const FLOW: &str = "dynamics_to_deltek";

struct Env {
    _dir: TempDir,
    sandbox: Sandbox,
    ctx: Context,
}

impl Env {
    async fn new(scale: u64) -> Env {
        Env::with_model(scale, None).await
    }

    /// `model`: the Deltek connection's `opportunity_model` (the sandbox tenant follows it).
    async fn with_model(scale: u64, model: Option<&str>) -> Env {
        Env::with_tenant(scale, model, ml_connector::sandbox::Tenant::Standard).await
    }

    /// Like `with_model`, against sandbox tenant `tenant`.
    async fn with_tenant(
        scale: u64,
        model: Option<&str>,
        tenant: ml_connector::sandbox::Tenant,
    ) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::start(
            SandboxOptions {
                scale,
                retry_after_secs: 0,
                tenant,
                ..SandboxOptions::default()
            },
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        if model == Some("hub") {
            sandbox.deltek_opportunity_hub(true);
        }
        let (vp, secrets) = sandbox.deltek_connection();
        let model = model.map_or(String::new(), |m| format!("opportunity_model = \"{m}\"\n"));
        let extra = format!(
            "streams = [\"dataverse.systemuser\", \"dataverse.account\", \"dataverse.contact\", \"dataverse.opportunity\"]\n\n[connections.vp]\n{vp}{model}requests_per_minute = 100000\nstreams = []\n"
        );
        let config = write_project(dir.path(), &sandbox, &extra);
        let mut s = Secrets::new();
        for (k, v) in secrets {
            s.insert(k, SecretString::from(v));
        }
        Vault::new(&config.vault).put("vp", &s).unwrap();
        let ctx = Context::open(config).unwrap();
        Env {
            _dir: dir,
            sandbox,
            ctx,
        }
    }

    async fn sync(&self) {
        let conn = self.ctx.config.connection("crm").unwrap().clone();
        let results = run_many(&self.ctx, &[&conn], &[], &RunRequest::Sync { full: false })
            .await
            .unwrap();
        for (label, r) in results {
            r.unwrap_or_else(|e| panic!("{label}: {e}"));
        }
    }

    fn scalar(&self, sql: &str) -> u64 {
        let csv = self
            .ctx
            .warehouse
            .query(sql, ml_connector::loaders::warehouse::OutputFormat::Csv)
            .unwrap();
        csv.lines()
            .nth(1)
            .unwrap_or_default()
            .trim()
            .parse()
            .unwrap()
    }

    /// Successful creates the Deltek fake received into `table` (firm, contact, opportunity,
    /// project).
    fn creates(&self, table: &str) -> usize {
        self.sandbox
            .deltek_writes()
            .iter()
            .filter(|w| w.method == "POST" && w.table == table && w.status == 200)
            .count()
    }

    fn all_creates(&self) -> usize {
        ["firm", "contact", "opportunity", "project"]
            .iter()
            .map(|t| self.creates(t))
            .sum()
    }

    fn link(&self, mapping: &str, id: &str) -> Option<String> {
        self.ctx
            .state
            .sink_link(FLOW, mapping, id)
            .unwrap()
            .map(|l| l.target_key)
    }

    /// Writes one run of `dataverse.<entity>` holding `records` to the lake, as a stream run
    /// would (Parquet part + manifest), for changes the sandbox can't be told to make.
    async fn write_run(&self, entity: &str, run_id: &str, records: &[Map<String, Value>]) {
        let id: StreamId = format!("dataverse.{entity}").parse().unwrap();
        let stream = self.ctx.defs.get(&id).unwrap();
        let schema = ml_connector::schema::table_schema(&stream.catalog);
        let json: Vec<u8> = records
            .iter()
            .flat_map(|r| {
                let mut line = serde_json::to_vec(r).unwrap();
                line.push(b'\n');
                line
            })
            .collect();
        let mut reader = arrow_json::ReaderBuilder::new(Arc::clone(&schema))
            .build(std::io::Cursor::new(json))
            .unwrap();
        let batch = reader.next().unwrap().unwrap();
        let mut w = PartWriter::new(schema).unwrap();
        w.write(&batch, 0).unwrap();
        let bytes = w.finish().unwrap();
        let path = ml_connector::lake::Lake::part_path(&id, run_id, 0, None);
        self.ctx.lake.put(&path, bytes.clone()).await.unwrap();
        self.ctx
            .lake
            .write_manifest(
                &Manifest {
                    run_id: run_id.into(),
                    stream: id.to_string(),
                    connection: "crm".into(),
                    kind: ml_connector::lake::RunKind::Incremental,
                    reconcile: false,
                    schema_hash: "test".into(),
                    started_at: "s".into(),
                    finished_at: "f".into(),
                    rows: records.len() as u64,
                    deleted: 0,
                    quarantined: 0,
                    cursor_start: None,
                    cursor_end: None,
                    files: vec![PartInfo {
                        path: path.to_string(),
                        rows: records.len() as u64,
                        deleted: 0,
                        bytes: bytes.len() as u64,
                        sha256: sha256_hex(&bytes),
                    }],
                    quarantine_files: vec![],
                    ..Default::default()
                },
                None,
            )
            .await
            .unwrap();
    }
}

/// The failed jobs of a report (what a failing assertion should show).
fn failures(report: &ml_connector::loaders::sink::ApplyReport) -> Vec<&JobResult> {
    report
        .jobs
        .iter()
        .filter(|j| j.outcome == "failed")
        .collect()
}

/// Opportunities whose customer leads to an account: directly, or through a contact whose
/// parent is an account.
const RESOLVABLE_OPPS: &str = "FROM raw_dataverse.opportunity o LEFT JOIN raw_dataverse.contact c ON o.customerid = c.contactid WHERE (o.customerid_type = 'account' OR (o.customerid_type = 'contact' AND c.parentcustomerid_type = 'account'))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_creates_each_record_once_resolves_owners_and_customers_and_replans_nothing() {
    let env = Env::new(60).await;
    env.sync().await;
    let users = env.scalar("SELECT COUNT(*) FROM raw_dataverse.systemuser");
    let accounts = env.scalar("SELECT COUNT(*) FROM raw_dataverse.account");
    let contacts = env.scalar("SELECT COUNT(*) FROM raw_dataverse.contact");
    let attached = env.scalar(
        "SELECT COUNT(*) FROM raw_dataverse.contact WHERE parentcustomerid_type = 'account'",
    );
    let opps = env.scalar("SELECT COUNT(*) FROM raw_dataverse.opportunity");
    let resolvable = env.scalar(&format!("SELECT COUNT(*) {RESOLVABLE_OPPS}"));
    let won = env.scalar(&format!(
        "SELECT COUNT(*) {RESOLVABLE_OPPS} AND o.statecode = 1"
    ));
    let won_all = env.scalar("SELECT COUNT(*) FROM raw_dataverse.opportunity WHERE statecode = 1");
    // Unresolvable opportunities wait, for the pursuit and (when Won) for the project.
    let waits = (opps - resolvable) + (won_all - won);
    let on_contacts = env.scalar(&format!(
        "SELECT COUNT(*) {RESOLVABLE_OPPS} AND o.customerid_type = 'contact'"
    ));
    assert!(accounts > 0 && contacts > 0 && attached > 0);
    assert!(resolvable < opps, "some customers can't be resolved");
    assert!(won > 0 && on_contacts > 0);

    let sink = Sink::open(&env.ctx, FLOW).unwrap();
    let plan = sink.plan().await.unwrap();
    assert_eq!(plan.count(&Action::Match) as u64, users);
    assert_eq!(
        plan.count(&Action::Create) as u64,
        accounts + contacts + resolvable + won
    );
    assert_eq!(plan.count(&Action::Wait) as u64, waits);
    // Dependencies first: users, then firms, contacts, pursuits, projects.
    let order: Vec<&str> = plan.jobs.iter().map(|j| j.source_entity.as_str()).collect();
    let mut seen = order.clone();
    seen.dedup();
    assert_eq!(
        seen,
        [
            "systemuser",
            "account",
            "contact",
            "opportunity",
            "won_project"
        ]
    );

    let target = sink.target(None).unwrap();
    let report = sink.apply(&plan, &target).await.unwrap();
    assert_eq!(report.failed, 0, "{:#?}", failures(&report));
    assert_eq!(report.waiting as u64, waits);
    for j in report.jobs.iter().filter(|j| j.outcome == "waiting") {
        assert!(j.detail.contains("customerid"), "{}", j.detail);
    }
    // A Dataverse account whose name matches an existing Deltek firm is linked, not created.
    let written = accounts + contacts + resolvable + won;
    let linked_users = report
        .jobs
        .iter()
        .filter(|j| j.source_entity == "systemuser" && j.outcome == "linked")
        .count() as u64;
    assert!(
        linked_users > 0 && linked_users < users,
        "some users match no employee"
    );
    assert_eq!(
        (report.created + report.linked) as u64,
        written + linked_users
    );
    assert_eq!(env.all_creates(), report.created);
    assert_eq!(env.creates("project") as u64, won);
    let writes = env.sandbox.deltek_writes();
    assert!(
        writes
            .iter()
            .all(|w| w.start_workflow.as_deref() == Some("N")),
        "every write carries startWorkflow=N"
    );
    assert!(
        writes
            .iter()
            .all(|w| w.method != "POST" || w.hub != "employee")
    );
    // Owners: a matched user's records carry its employee; the others use the default and say
    // so in the audit.
    let audit = env.ctx.state.sink_audit_entries(FLOW, None).unwrap();
    let (mut defaulted, mut matched) = (0, 0);
    for a in audit
        .iter()
        .filter(|a| a.action == "create" && a.source_entity == "account")
    {
        let job = env.ctx.state.sink_job(&a.job_id).unwrap().unwrap();
        let rec: Map<String, Value> = serde_json::from_str(&job.record).unwrap();
        let owner = rec["ownerid"].as_str().unwrap();
        let flagged = a.request.as_deref().unwrap().ends_with("owner=default");
        let employee = env.link("systemuser", owner);
        assert_eq!(flagged, employee.is_none(), "{a:?}");
        let firm = target
            .search("firm", &[("CustDynamicsId".into(), job.source_id.clone())])
            .await
            .unwrap();
        let expected = employee.clone().unwrap_or_else(|| "00001".into());
        assert_eq!(firm[0]["Owner"].as_str(), Some(expected.as_str()));
        if flagged {
            defaulted += 1;
        } else {
            matched += 1;
        }
    }
    assert!(defaulted > 0 && matched > 0, "{defaulted} {matched}");
    // The audit is in the warehouse too, entry for entry.
    assert_eq!(report.audit_landed, audit.len());
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM mlc_sink.audit WHERE action = 'create'"),
        audit.iter().filter(|a| a.action == "create").count() as u64
    );
    // Contacts attached to an account carry their firm.
    let with_firm = writes
        .iter()
        .filter(|w| w.table == "contact" && w.fields.iter().any(|f| f == "ClientID"))
        .count() as u64;
    assert_eq!(with_firm, attached);
    // An opportunity on a contact is the contact's firm's pursuit; a Won one's project too.
    let mut checked = 0;
    for j in plan.jobs.iter().filter(|j| {
        j.source_entity == "opportunity"
            && j.action == Action::Create
            && j.row.record["customerid_type"] == "contact"
    }) {
        let contact = j.row.record["customerid"].as_str().unwrap();
        let crec: Map<String, Value> = serde_json::from_str(
            &env.ctx
                .state
                .sink_record(FLOW, "contact", contact)
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        let firm = env
            .link("account", crec["parentcustomerid"].as_str().unwrap())
            .unwrap();
        let found = target
            .search(
                "opportunity",
                &[("CustDynamicsId".into(), j.source_id.clone())],
            )
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0]["ClientID"].as_str(), Some(firm.as_str()));
        checked += 1;
    }
    assert_eq!(checked, on_contacts);
    // One distinct target record per source record and mapping.
    let links = env.ctx.state.sink_links(FLOW).unwrap();
    assert_eq!(links.len() as u64, written + linked_users);
    let keys: BTreeSet<_> = links
        .iter()
        .filter(|(m, _, _)| m != "systemuser")
        .map(|(_, _, l)| l.target_key.clone())
        .collect();
    assert_eq!(keys.len() as u64, written);

    // The same change sets, again: nothing (the cursor moved) ...
    let again = sink.plan().await.unwrap();
    assert_eq!(again.jobs.len(), 0);
    // ... and re-read from the start: no writes (the ledger knows every version).
    env.ctx.state.sink_reset_cursor(FLOW).unwrap();
    let reread = sink.plan().await.unwrap();
    assert_eq!(reread.writes(), 0);
    let r = sink.apply(&reread, &target).await.unwrap();
    assert_eq!(r.created + r.updated + r.failed, 0, "{:#?}", r.jobs);

    // Replaying every job three times creates nothing new.
    let posts = env.all_creates();
    for _ in 0..3 {
        for j in env.ctx.state.sink_jobs(FLOW, None).unwrap() {
            let r = sink
                .replay(&Replay::Job(j.job_id.clone()), &target)
                .await
                .unwrap();
            assert_eq!(r.created, 0);
            assert_eq!(r.failed, 0);
        }
    }
    assert_eq!(env.all_creates(), posts);

    // Source changes: inserts are created, updates update, deletes are audited no-ops.
    let first_jobs = env.ctx.state.sink_jobs(FLOW, None).unwrap();
    let noops_before = env
        .ctx
        .state
        .sink_audit_entries(FLOW, None)
        .unwrap()
        .iter()
        .filter(|a| {
            a.action == "noop"
                && a.error
                    .as_deref()
                    .unwrap_or_default()
                    .starts_with("deleted")
        })
        .count() as u64;
    // Dataverse alone changes: the target's own changes are the case below, made on purpose.
    let changes = env.sandbox.dataverse_mutate();
    env.sync().await;
    let plan = sink.plan().await.unwrap();
    let inserted =
        changes.entity_sets["accounts"].inserted + changes.entity_sets["contacts"].inserted;
    let deleted = ["accounts", "contacts", "opportunities", "systemusers"]
        .iter()
        .map(|s| changes.entity_sets[*s].deleted)
        .sum::<u64>();
    assert_eq!(
        plan.jobs
            .iter()
            .filter(|j| j.action == Action::Create
                && matches!(j.source_entity.as_str(), "account" | "contact"))
            .count() as u64,
        inserted
    );
    assert!(plan.count(&Action::Update) > 0);
    // Someone deleted in Vantagepoint the contact one of the updates goes to: that job fails,
    // saying how to have it created again, and the rest go through.
    let orphan = plan
        .jobs
        .iter()
        .find(|j| j.action == Action::Update && j.source_entity == "contact")
        .expect("an updated contact");
    let gone = orphan.target_key.clone().unwrap();
    assert_eq!(
        env.sandbox
            .deltek_delete("contact", std::slice::from_ref(&gone)),
        1
    );
    let report = sink.apply(&plan, &target).await.unwrap();
    let failed = failures(&report);
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0].job_id, orphan.job_id);
    assert!(
        failed[0].detail.contains(&gone) && failed[0].detail.contains("mlc sink unlink"),
        "{}",
        failed[0].detail
    );
    sink.unlink(&orphan.job_id).unwrap();
    let r = sink
        .replay(&Replay::Job(orphan.job_id.clone()), &target)
        .await
        .unwrap();
    assert_eq!(r.created, 1, "{:#?}", r.jobs);
    let recreated = env.link("contact", &orphan.source_id).unwrap();
    assert_ne!(recreated, gone);
    // An updated account's firm carries the new values, found by its external id.
    let updated = plan
        .jobs
        .iter()
        .find(|j| j.action == Action::Update && j.source_entity == "account")
        .unwrap();
    let name = updated.row.record["name"].as_str().unwrap().to_string();
    let found = target
        .search(
            "firm",
            &[("CustDynamicsId".to_string(), updated.source_id.clone())],
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["Name"].as_str(), Some(name.as_str()));
    assert_eq!(found[0]["ClientID"].as_str(), updated.target_key.as_deref());
    let deleted_noops = env
        .ctx
        .state
        .sink_audit_entries(FLOW, None)
        .unwrap()
        .into_iter()
        .filter(|a| {
            a.action == "noop"
                && a.error
                    .as_deref()
                    .unwrap_or_default()
                    .starts_with("deleted")
        })
        .count() as u64;
    // A deleted opportunity is a no-op for both of its mappings.
    let deleted_opps = changes.entity_sets["opportunities"].deleted;
    assert_eq!(
        deleted_noops - noops_before,
        deleted + deleted_opps,
        "deleted rows are audited as no-ops"
    );
    // A stale job replayed after a newer version was written changes nothing.
    let writes_before = env.sandbox.deltek_writes().len();
    let mut superseded = 0;
    for j in first_jobs
        .iter()
        .filter(|j| j.source_entity == "account" || j.source_entity == "contact")
    {
        let link = env
            .ctx
            .state
            .sink_link(FLOW, &j.source_entity, &j.source_id)
            .unwrap()
            .unwrap();
        if link.source_version > j.source_version {
            let r = sink
                .replay(&Replay::Job(j.job_id.clone()), &target)
                .await
                .unwrap();
            assert_eq!(r.noop, 1, "{:?}", r.jobs);
            superseded += 1;
        }
    }
    assert!(superseded > 0);
    assert_eq!(env.sandbox.deltek_writes().len(), writes_before);
    // Every create the target saw is one audited create: nothing was written twice.
    let entries = env.ctx.state.sink_audit_entries(FLOW, None).unwrap();
    let audited = entries.iter().filter(|a| a.action == "create").count();
    assert_eq!(env.all_creates(), audited);
    // One-job replays leave landing to the next landing, which takes every entry not landed
    // yet; landing again and again keeps one warehouse row per audit entry.
    ml_connector::loaders::sink::audit::land(&env.ctx)
        .await
        .unwrap();
    assert_eq!(
        ml_connector::loaders::sink::audit::land(&env.ctx)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM mlc_sink.audit"),
        entries.len() as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_won_opportunity_seeds_exactly_one_project_even_when_it_flips() {
    let env = Env::new(40).await;
    env.sync().await;
    let sink = Sink::open(&env.ctx, FLOW).unwrap();
    let target = sink.target(None).unwrap();
    let plan = sink.plan().await.unwrap();
    let report = sink.apply(&plan, &target).await.unwrap();
    assert_eq!(report.failed, 0, "{:#?}", failures(&report));
    let seeded = plan
        .jobs
        .iter()
        .find(|j| j.source_entity == "won_project" && j.action == Action::Create)
        .expect("a Won opportunity with a known client");
    let project = env.link("won_project", &seeded.source_id).unwrap();
    let projects = env.creates("project");
    // The project: the opportunity's client, its owner as principal and manager, a number from
    // the scheme.
    let found = target
        .search("project", &[("WBS1".into(), project.clone())])
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    let year = chrono::Utc::now().format("%Y").to_string();
    assert!(project.starts_with(&format!("{year}-")), "{project}");
    let pursuit = env.link("opportunity", &seeded.source_id).unwrap();
    let opp = target
        .search("opportunity", &[("OpportunityID".into(), pursuit.clone())])
        .await
        .unwrap();
    assert_eq!(found[0]["ClientID"], opp[0]["ClientID"]);
    assert_eq!(found[0]["Principal"], found[0]["ProjMgr"]);
    assert_eq!(found[0]["Principal"], opp[0]["Principal"]);
    // 5.0+ tenant: the pursuit is a project with a stage and its own number.
    assert!(pursuit.starts_with(&format!("P{year}-")), "{pursuit}");
    assert_eq!(opp[0]["Stage"].as_str(), Some("01"));

    // Won → Open → Won, as later change sets: the pursuit is updated each time, the project
    // is never created again.
    let mut rec = seeded.row.record.clone();
    let v = rec["versionnumber"].as_i64().unwrap();
    for (i, state) in [0, 1].into_iter().enumerate() {
        rec.insert("statecode".into(), Value::from(state));
        rec.insert("versionnumber".into(), Value::from(v + 1 + i as i64));
        rec.insert("name".into(), Value::from(format!("Pursuit, revision {i}")));
        env.write_run(
            "opportunity",
            &format!("29990101T00000000{i}Z-flip"),
            &[rec.clone()],
        )
        .await;
        let p = sink.plan().await.unwrap();
        let seed_job = p
            .jobs
            .iter()
            .find(|j| j.source_entity == "won_project")
            .unwrap();
        assert_eq!(seed_job.action, Action::Noop, "{}", seed_job.reason);
        let r = sink.apply(&p, &target).await.unwrap();
        assert_eq!(r.created, 0, "{:#?}", r.jobs);
        assert_eq!(r.updated, 1, "the pursuit follows the opportunity");
        // Only what changed is sent (and the keys that place the record).
        let put = env
            .sandbox
            .deltek_writes()
            .into_iter()
            .rev()
            .find(|w| w.method == "PUT")
            .unwrap();
        assert!(put.fields.contains(&"Name".to_string()), "{put:?}");
        assert!(!put.fields.contains(&"Revenue".to_string()), "{put:?}");
    }
    assert_eq!(env.creates("project"), projects);
    // Replaying every seeding job creates nothing either.
    for j in env
        .ctx
        .state
        .sink_jobs(FLOW, None)
        .unwrap()
        .iter()
        .filter(|j| j.source_entity == "won_project")
    {
        let r = sink
            .replay(&Replay::Job(j.job_id.clone()), &target)
            .await
            .unwrap();
        assert_eq!(r.created + r.failed, 0);
    }
    assert_eq!(env.creates("project"), projects);
    assert_eq!(env.link("won_project", &seeded.source_id), Some(project));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_5_tenant_gets_pursuits_in_its_opportunities_hub() {
    let env = Env::with_model(30, Some("hub")).await;
    env.sync().await;
    let sink = Sink::open(&env.ctx, FLOW).unwrap();
    let target = sink.target(None).unwrap();
    let plan = sink.plan().await.unwrap();
    let report = sink.apply(&plan, &target).await.unwrap();
    assert_eq!(report.failed, 0, "{:#?}", failures(&report));
    let pursuits = plan
        .jobs
        .iter()
        .filter(|j| j.source_entity == "opportunity" && j.action == Action::Create)
        .count();
    assert!(pursuits > 0);
    let posts: Vec<_> = env
        .sandbox
        .deltek_writes()
        .into_iter()
        .filter(|w| w.method == "POST" && w.hub == "opportunity")
        .collect();
    assert_eq!(posts.len(), pursuits);
    // The hub assigns its keys; the client sends none.
    assert!(
        posts
            .iter()
            .all(|w| !w.fields.iter().any(|f| f == "OpportunityID"))
    );
    assert!(
        posts
            .iter()
            .all(|w| w.key.as_deref().is_some_and(|k| k.starts_with("PUR-")))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_create_answer_does_not_duplicate_on_retry() {
    let env = Env::new(30).await;
    env.sync().await;
    let sink = Sink::open(&env.ctx, FLOW).unwrap();
    let target = sink.target(None).unwrap();
    let plan = sink.plan().await.unwrap();

    env.sandbox.deltek_drop_create_responses(1);
    let report = sink.apply(&plan, &target).await.unwrap();
    // The first firm created was saved, but we never saw its key: that job fails as ambiguous
    // (and, if it had contacts, they wait for it); the run went on.
    assert_eq!(report.failed, 1, "{:#?}", report.jobs);
    let first = report
        .jobs
        .iter()
        .find(|j| j.outcome == "failed")
        .unwrap()
        .clone();
    assert_eq!(first.source_entity, "account");
    let job = env.ctx.state.sink_job(&first.job_id).unwrap().unwrap();
    assert_eq!(job.status, "failed");
    assert!(job.ambiguous);
    let writes = env.sandbox.deltek_writes();
    let dropped = writes.iter().find(|w| w.dropped).unwrap().clone();
    assert_eq!(dropped.table, "firm");
    let firms_after_first = env.creates("firm");

    let retry = sink.replay(&Replay::Failed, &target).await.unwrap();
    assert_eq!(retry.failed, 0, "{:#?}", retry.jobs);
    // The jobs that waited for it are written now; those whose customer leads nowhere wait on.
    assert_eq!(retry.created + retry.waiting, report.waiting);
    assert!(
        retry
            .jobs
            .iter()
            .filter(|j| j.outcome == "waiting")
            .all(|j| j.detail.contains("customerid")),
        "{:#?}",
        retry.jobs
    );
    assert_eq!(env.creates("firm"), firms_after_first, "no second firm");
    let j = retry
        .jobs
        .iter()
        .find(|j| j.job_id == first.job_id)
        .unwrap();
    assert_eq!(j.outcome, "linked");
    assert_eq!(j.target_key.as_deref(), dropped.key.as_deref());
    let audit: Vec<AuditAction> = env
        .ctx
        .state
        .sink_audit_entries(FLOW, Some(&first.job_id))
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert_eq!(audit, ["failed", "link"]);
    // Nothing left to write.
    let last = sink.replay(&Replay::Failed, &target).await.unwrap();
    assert_eq!(last.created + last.updated + last.linked + last.failed, 0);
}

/// The tenant made `CellPhone` required on contacts in its screen designer, which its metadata
/// does not show. The first contact without a mobile is refused ("CellPhone is required."):
/// that job fails with the reason audited, and the rule is learned for the connection, so the
/// other contacts without a mobile are blocked without a request, `sink check` names the rule,
/// and the contacts with a mobile go through. Once the tenant drops the rule and the learned
/// rule is forgotten, the next apply and a replay write the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_rule_learned_from_one_refusal_blocks_the_rest_of_the_mapping() {
    let env = Env::new(40).await;
    env.sync().await;
    env.sandbox
        .deltek_required_fields("contact", &["CellPhone"]);
    let missing =
        env.scalar("SELECT COUNT(*) FROM raw_dataverse.contact WHERE mobilephone IS NULL");
    let contacts = env.scalar("SELECT COUNT(*) FROM raw_dataverse.contact");
    assert!(missing > 1);

    let sink = Sink::open(&env.ctx, FLOW).unwrap();
    let target = sink.target(None).unwrap();
    let report = sink
        .apply(&sink.plan().await.unwrap(), &target)
        .await
        .unwrap();
    let refused = |env: &Env| {
        env.sandbox
            .deltek_writes()
            .iter()
            .filter(|w| w.status == 400 && w.table == "contact")
            .count()
    };
    // Jobs in flight when the first answer came may have been refused too, never more.
    let parallel = target.profile().parallelism;
    assert!(
        refused(&env) >= 1 && refused(&env) <= parallel,
        "{}",
        refused(&env)
    );
    assert_eq!(report.failed, refused(&env), "{:#?}", report.jobs);
    assert_eq!((report.failed + report.blocked) as u64, missing);
    assert_eq!(env.creates("contact") as u64, contacts - missing);
    for j in env
        .ctx
        .state
        .sink_jobs(FLOW, Some(JobStatus::Failed))
        .unwrap()
    {
        assert!(!j.ambiguous);
        assert!(
            j.last_error
                .unwrap_or_default()
                .contains("CellPhone is required.")
        );
        let audit = env
            .ctx
            .state
            .sink_audit_entries(FLOW, Some(&j.job_id))
            .unwrap();
        let last = audit.last().unwrap();
        assert_eq!((last.action.as_str(), last.status), ("failed", Some(400)));
        assert!(
            last.request
                .as_deref()
                .unwrap_or_default()
                .starts_with("POST /contact")
        );
    }
    for j in env
        .ctx
        .state
        .sink_jobs(FLOW, Some(JobStatus::Blocked))
        .unwrap()
    {
        assert!(
            j.last_error
                .unwrap_or_default()
                .contains("requires `CellPhone`"),
            "blocked with the learned rule"
        );
    }
    // Remembered for the connection: the pre-flight names it, with the refusal.
    let rules = env.ctx.state.sink_rules("vp").unwrap();
    assert_eq!(
        (rules.len(), rules[0].hub.as_str(), rules[0].field.as_str()),
        (1, "contact", "CellPhone")
    );
    let pre = sink.preflight(&target).await.unwrap();
    assert!(
        pre.learned
            .iter()
            .any(|r| r.field == "CellPhone" && r.reason.contains("CellPhone is required.")),
        "{:?}",
        pre.learned
    );
    // A second apply sends nothing for them.
    let before = refused(&env);
    let again = sink
        .apply(&sink.plan().await.unwrap(), &target)
        .await
        .unwrap();
    assert_eq!(again.blocked as u64, missing - report.failed as u64);
    assert_eq!(refused(&env), before);

    // The tenant drops the rule; forgotten, the blocked jobs go through, and a replay writes
    // the failed ones.
    env.sandbox.deltek_required_fields("contact", &[]);
    assert_eq!(env.ctx.state.sink_forget_rules("vp").unwrap(), 1);
    sink.apply(&sink.plan().await.unwrap(), &target)
        .await
        .unwrap();
    sink.replay(&Replay::Failed, &target).await.unwrap();
    assert_eq!(env.creates("contact") as u64, contacts);
    for status in [JobStatus::Failed, JobStatus::Blocked] {
        assert!(
            env.ctx
                .state
                .sink_jobs(FLOW, Some(status))
                .unwrap()
                .is_empty()
        );
    }
}

/// Runs `mlc` in the project folder off the async workers (the sandbox keeps serving).
async fn mlc(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::cli::mlc(&dir, &a)
    })
    .await
    .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_cli_plans_dry_runs_applies_and_reports() {
    let env = Env::new(20).await;
    env.sync().await;
    let dir = env._dir.path();
    let (ok, out) = mlc(dir, &["sink", "plan", FLOW]).await;
    assert!(ok, "{out}");
    // The summary first, then one line per mapping × action × cause with example ids.
    assert!(out.lines().next().unwrap().contains(" jobs — "), "{out}");
    assert!(
        out.lines().any(|l| l.trim_start().starts_with("account")
            && l.contains("-> deltek.firm")
            && l.contains(" create ")
            && l.contains("(e.g. ")),
        "{out}"
    );
    let (ok, all) = mlc(dir, &["sink", "plan", FLOW, "--details"]).await;
    assert!(ok, "{all}");
    let jobs: usize = all
        .lines()
        .next()
        .and_then(|l| l.split(": ").nth(1)?.split(' ').next()?.parse().ok())
        .unwrap();
    assert!(all.lines().count() > jobs, "every job on its own line");
    assert!(
        out.lines().count() < 30 && out.lines().count() < jobs,
        "{} lines for {jobs} jobs:\n{out}",
        out.lines().count()
    );
    // Apply without --yes is a dry run.
    let (ok, out) = mlc(dir, &["sink", "apply", FLOW]).await;
    assert!(ok, "{out}");
    assert!(out.contains("dry run"), "{out}");
    assert!(env.sandbox.deltek_writes().is_empty());
    let (ok, out) = mlc(dir, &["sink", "apply", FLOW, "--yes"]).await;
    assert!(ok, "{out}");
    assert!(out.contains(" 0 failed"), "{out}");
    assert!(!env.sandbox.deltek_writes().is_empty());
    let (ok, out) = mlc(dir, &["sink", "plan", FLOW]).await;
    assert!(ok, "{out}");
    assert!(out.contains("0 creates, 0 updates"), "{out}");
    let (ok, out) = mlc(dir, &["sink", "status"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("cursor dataverse.account: 2"), "{out}");
    let (ok, out) = mlc(dir, &["sink", "audit", FLOW]).await;
    assert!(ok, "{out}");
    assert!(out.contains("create"), "{out}");
    let (ok, out) = mlc(dir, &["sink", "replay", FLOW, "--yes"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("0 created"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_cut_short_is_finished_by_the_next_without_duplicates() {
    let env = Env::new(40).await;
    env.sync().await;
    let sink = Sink::open(&env.ctx, FLOW).unwrap();
    let target = sink.target(None).unwrap();
    let plan = sink.plan().await.unwrap();
    let writes = plan.writes();
    // The process dies mid-apply, after some creates (its future is dropped, a request
    // possibly in flight).
    let apply = sink.apply(&plan, &target);
    let cut = async {
        while env.all_creates() < 20 {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    };
    tokio::select! {
        r = apply => panic!("the apply finished before it was cut: {:?}", r.map(|r| r.created)),
        () = cut => {}
    }
    let done = env.all_creates();
    assert!(done > 0 && done < writes, "{done} of {writes}");
    let left = env
        .ctx
        .state
        .sink_jobs(FLOW, Some(JobStatus::Planned))
        .unwrap();
    assert!(!left.is_empty());
    // The cursors moved with the recorded jobs: the next plan is empty, and the next apply
    // finishes what was left, searching before every create.
    let next = sink.plan().await.unwrap();
    assert_eq!(next.jobs.len(), 0);
    let report = sink.apply(&next, &target).await.unwrap();
    assert_eq!(report.failed, 0, "{:#?}", failures(&report));
    assert!(
        env.ctx
            .state
            .sink_jobs(FLOW, Some(JobStatus::Planned))
            .unwrap()
            .is_empty()
    );
    // Every record written exactly once: one create per link, no gap, no duplicate.
    let links = env.ctx.state.sink_links(FLOW).unwrap();
    let written: BTreeSet<_> = links
        .iter()
        .filter(|(m, _, _)| m != "systemuser")
        .map(|(_, _, l)| l.target_key.clone())
        .collect();
    let keys: BTreeSet<_> = env
        .sandbox
        .deltek_writes()
        .into_iter()
        .filter(|w| w.method == "POST" && w.status == 200)
        .filter_map(|w| w.key)
        .collect();
    assert_eq!(keys.len(), env.all_creates(), "no record created twice");
    assert!(keys.is_subset(&written), "every created record is linked");
    assert_eq!(written.len(), writes);
    let waiting = env
        .ctx
        .state
        .sink_jobs(FLOW, Some(JobStatus::Waiting))
        .unwrap()
        .len();
    assert_eq!(waiting, plan.count(&Action::Wait));
}

/// Two Vantagepoint firms carry the name of one Dataverse account: the sink refuses to guess,
/// a person picks one with `sink link`, and the next apply writes the account's fields to it
/// (no third firm); `sink unlink` takes the link back. Every step is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_match_is_resolved_by_sink_link() {
    use ml_connector::loaders::sink::target::Target;
    let env = Env::new(20).await;
    env.sync().await;
    let name = env
        .ctx
        .warehouse
        .query(
            "SELECT name FROM raw_dataverse.account WHERE name IS NOT NULL ORDER BY accountid LIMIT 1",
            ml_connector::loaders::warehouse::OutputFormat::Csv,
        )
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .trim_matches('"')
        .to_string();
    let sink = Sink::open(&env.ctx, FLOW).unwrap();
    let target = sink.target(None).unwrap();
    // Two firms of that name exist in the tenant already (not written by the sink).
    let mut keys = Vec::new();
    for _ in 0..2 {
        let mut firm = Map::new();
        firm.insert("Name".into(), Value::String(name.clone()));
        keys.push(target.create("firm", &firm).await.unwrap().key);
    }

    let report = sink
        .apply(&sink.plan().await.unwrap(), &target)
        .await
        .unwrap();
    let firms_before = env.creates("firm");
    let failed = report
        .jobs
        .iter()
        .find(|j| j.source_entity == "account" && j.outcome == "failed")
        .unwrap_or_else(|| panic!("{:#?}", report.jobs))
        .clone();
    assert!(
        failed.detail.contains("2 firm records match [Name]")
            && failed.detail.contains("never guesses"),
        "{}",
        failed.detail
    );

    // A key the tenant does not have is refused; the chosen one is linked.
    let e = sink.link(&failed.job_id, "NO-SUCH-FIRM", &target).await;
    assert!(
        e.unwrap_err().to_string().contains("no record with"),
        "a missing target record is not linked"
    );
    let linked = sink.link(&failed.job_id, &keys[1], &target).await.unwrap();
    assert_eq!(linked.outcome, "linked");
    let link = env
        .ctx
        .state
        .sink_link(FLOW, "account", &failed.source_id)
        .unwrap()
        .unwrap();
    assert_eq!(link.target_key, keys[1]);
    let again = sink.link(&failed.job_id, &keys[0], &target).await;
    assert!(again.unwrap_err().to_string().contains("sink unlink"));

    // The next apply writes the account's fields to the chosen firm, and creates none.
    let next = sink
        .apply(&sink.plan().await.unwrap(), &target)
        .await
        .unwrap();
    let j = next
        .jobs
        .iter()
        .find(|j| j.job_id == failed.job_id)
        .unwrap_or_else(|| panic!("{:#?}", next.jobs));
    assert_eq!(j.outcome, "updated", "{j:?}");
    assert_eq!(j.target_key.as_deref(), Some(keys[1].as_str()));
    assert_eq!(env.creates("firm"), firms_before, "no third firm");
    assert!(env.sandbox.deltek_writes().iter().any(|w| w.method == "PUT"
        && w.table == "firm"
        && w.key.as_deref() == Some(keys[1].as_str())));

    // The audit's failed entry names the search that answered and where the job stands now.
    let (ok, out) = mlc(
        env._dir.path(),
        &["sink", "audit", FLOW, "--job", &failed.job_id],
    )
    .await;
    assert!(ok, "{out}");
    let line = out.lines().find(|l| l.contains(" failed ")).unwrap();
    assert!(
        line.contains("GET HTTP 200") && line.contains("[job now applied]"),
        "{line}"
    );

    // Unlinked: the ledger forgets it, the firm stays, and the audit tells the story.
    let un = sink.unlink(&failed.job_id).unwrap();
    assert_eq!(un.target_key.as_deref(), Some(keys[1].as_str()));
    assert!(
        env.ctx
            .state
            .sink_link(FLOW, "account", &failed.source_id)
            .unwrap()
            .is_none()
    );
    let audit: Vec<AuditAction> = env
        .ctx
        .state
        .sink_audit_entries(FLOW, Some(&failed.job_id))
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert_eq!(audit, ["failed", "link", "update", "unlink"]);
}

/// A Vantagepoint tenant set up differently from the flow: its firms keep the external id in
/// `CustCRMId` (it has no `CustDynamicsId`) and it has no `Probability`. The pre-flight says so
/// before any write and every firm is blocked, nothing sent; the tenant's settings in mlc.toml
/// (`[connections.vp.sink.dynamics_to_deltek.<mapping>]`) make the same built-in flow write to
/// it, each firm carrying the account id in the tenant's own field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_set_up_differently_is_written_with_its_settings_from_mlc_toml() {
    let env = Env::with_tenant(20, None, ml_connector::sandbox::Tenant::Lean).await;
    env.sync().await;
    let accounts = env.scalar("SELECT COUNT(*) FROM raw_dataverse.account");
    {
        let sink = Sink::open(&env.ctx, FLOW).unwrap();
        let target = sink.target(None).unwrap();
        let pre = sink.preflight(&target).await.unwrap();
        let says = |mapping: &str, what: &str| {
            pre.problems
                .iter()
                .any(|p| p.mapping == mapping && p.problem.contains(what))
        };
        assert!(
            says(
                "account",
                "external-id field `CustDynamicsId` does not exist"
            ),
            "{:#?}",
            pre.problems
        );
        assert!(says("opportunity", "`Probability` is not a field"));
        let report = sink
            .apply(&sink.plan().await.unwrap(), &target)
            .await
            .unwrap();
        let blocked = report
            .jobs
            .iter()
            .filter(|j| j.source_entity == "account" && j.outcome == "blocked")
            .count() as u64;
        assert_eq!(blocked, accounts);
        assert!(
            !env.sandbox
                .deltek_writes()
                .iter()
                .any(|w| w.table == "firm"),
            "nothing sent for a blocked mapping"
        );
    }
    // The tenant's settings, next to its connection.
    let path = env._dir.path().join("mlc.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(
        "\n[connections.vp.sink.dynamics_to_deltek.account]\nexternal_id_field = \"CustCRMId\"\n\n[connections.vp.sink.dynamics_to_deltek.opportunity]\nomit = [\"Probability\"]\n",
    );
    std::fs::write(&path, text).unwrap();
    let ctx = Context::open(ml_connector::config::Config::load(&path).unwrap()).unwrap();
    let sink = Sink::open(&ctx, FLOW).unwrap();
    let target = sink.target(None).unwrap();
    let pre = sink.preflight(&target).await.unwrap();
    assert!(
        !pre.problems
            .iter()
            .any(|p| p.mapping == "account" || p.mapping == "opportunity"),
        "{:#?}",
        pre.problems
    );
    sink.apply(&sink.plan().await.unwrap(), &target)
        .await
        .unwrap();
    let firms: Vec<_> = env
        .sandbox
        .deltek_writes()
        .into_iter()
        .filter(|w| w.method == "POST" && w.table == "firm" && w.status == 200)
        .collect();
    assert_eq!(firms.len() as u64, accounts);
    assert!(
        firms
            .iter()
            .all(|w| w.fields.iter().any(|f| f == "CustCRMId")
                && !w.fields.iter().any(|f| f == "CustDynamicsId"))
    );
    let truth = env.sandbox.truth("deltek", "firm").unwrap();
    let carrying = truth
        .iter()
        .filter(|r| {
            r.get("CustCRMId")
                .and_then(|v| v.as_str())
                .is_some_and(|v| !v.is_empty())
        })
        .count() as u64;
    assert_eq!(carrying, accounts);
    assert!(
        !env.sandbox
            .deltek_writes()
            .iter()
            .any(|w| w.table == "opportunity" && w.fields.iter().any(|f| f == "Probability"))
    );
}

/// Records the CRM deleted while their jobs waited (firms blocked by a tenant rule, contacts
/// waiting for those firms) are never written once the deletion has been read: when the rule
/// is lifted, the other firms and contacts are created, the deleted ones are no-ops with the
/// reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_deleted_in_the_source_while_its_job_waited_is_never_written() {
    let env = Env::new(30).await;
    env.sync().await;
    let ids = |env: &Env, table: &str, key: &str| -> BTreeSet<String> {
        let csv = env
            .ctx
            .warehouse
            .query(
                &format!("SELECT {key} FROM raw_dataverse.{table}"),
                ml_connector::loaders::warehouse::OutputFormat::Csv,
            )
            .unwrap();
        csv.lines()
            .skip(1)
            .map(|l| l.trim_matches('"').to_string())
            .collect()
    };
    let sink = Sink::open(&env.ctx, FLOW).unwrap();
    let target = sink.target(None).unwrap();
    // The tenant requires its industry field on firms, which the flow does not map: no firm,
    // and contacts wait for theirs.
    env.sandbox
        .deltek_required_fields("firm", &["CustIndustry"]);
    sink.apply(&sink.plan().await.unwrap(), &target)
        .await
        .unwrap();
    assert_eq!(env.creates("firm"), 0);
    let (accounts, contacts) = (
        ids(&env, "account", "accountid"),
        ids(&env, "contact", "contactid"),
    );

    // Meanwhile the CRM deletes some of them; the next sync reads the deletions.
    env.sandbox.dataverse_mutate();
    env.sync().await;
    let gone_accounts: Vec<String> = accounts
        .difference(&ids(&env, "account", "accountid"))
        .cloned()
        .collect();
    let gone_contacts: Vec<String> = contacts
        .difference(&ids(&env, "contact", "contactid"))
        .cloned()
        .collect();
    assert!(!gone_accounts.is_empty() && !gone_contacts.is_empty());

    // The rule is lifted: everything still in the CRM is written, nothing deleted is.
    env.sandbox.deltek_required_fields("firm", &[]);
    env.ctx.state.sink_forget_rules("vp").unwrap();
    sink.apply(&sink.plan().await.unwrap(), &target)
        .await
        .unwrap();
    sink.replay(&Replay::Failed, &target).await.unwrap();
    assert!(env.creates("firm") > 0);
    for (mapping, gone) in [("account", &gone_accounts), ("contact", &gone_contacts)] {
        for id in gone {
            assert!(
                env.ctx
                    .state
                    .sink_link(FLOW, mapping, id)
                    .unwrap()
                    .is_none(),
                "{mapping} {id} was deleted in the source, and written"
            );
        }
    }
    let noted = env
        .ctx
        .state
        .sink_audit_entries(FLOW, None)
        .unwrap()
        .into_iter()
        .filter(|a| {
            a.action == "noop"
                && a.error
                    .as_deref()
                    .is_some_and(|e| e.contains("deleted in the source"))
        })
        .count();
    assert!(noted >= gone_accounts.len(), "{noted}");
}

/// While another worker holds the flow's lease, an apply here is refused before any write and
/// says who holds it; once the lease is released, the same apply goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_is_refused_while_another_worker_holds_the_flow() {
    let env = Env::new(10).await;
    env.sync().await;
    let sink = Sink::open(&env.ctx, FLOW).unwrap();
    let target = sink.target(None).unwrap();
    let plan = sink.plan().await.unwrap();
    let ml_connector::lease::Take::Taken(other) = env
        .ctx
        .state
        .lease_take(
            &ml_connector::lease::sink_unit(FLOW),
            "other-host:1:x",
            std::time::Duration::from_secs(60),
            ml_connector::lease::now_ms(),
        )
        .unwrap()
    else {
        panic!("the flow's lease is free")
    };
    let refused = sink.apply(&plan, &target).await;
    assert!(
        matches!(&refused, Err(ml_connector::Error::Held { owner, .. }) if owner == "other-host:1:x"),
        "{refused:?}"
    );
    assert!(env.sandbox.deltek_writes().is_empty(), "nothing written");
    env.ctx.state.lease_release(&other).unwrap();
    let report = sink.apply(&plan, &target).await.unwrap();
    assert!(report.created > 0, "{report:?}");
}
