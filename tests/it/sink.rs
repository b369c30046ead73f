//! The sink stage against the sandboxes: Dataverse accounts and contacts synced into the lake,
//! then `dynamics_to_deltek` applied to the Deltek fake — each firm and contact created once,
//! a re-read plans zero writes, a dropped create answer does not duplicate on retry, and a
//! validation error fails only its job, with the reason in the audit.

use std::collections::BTreeSet;

use ml_connector::loaders::sink::plan::Action;
use ml_connector::loaders::sink::{Replay, Sink};
use ml_connector::run::{Context, RunRequest, run_many};
use ml_connector::sandbox::{Sandbox, SandboxOptions};
use ml_connector::vault::{Secrets, Vault};
use secrecy::SecretString;
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
        let (vp, secrets) = sandbox.deltek_connection();
        let extra = format!(
            "streams = [\"dataverse.account\", \"dataverse.contact\"]\n\n[connections.vp]\n{vp}requests_per_minute = 100000\nstreams = []\n"
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

    /// Successful creates the Deltek fake received for `hub`.
    fn creates(&self, hub: &str) -> usize {
        self.sandbox
            .deltek_writes()
            .iter()
            .filter(|w| w.method == "POST" && w.hub == hub && w.status == 200)
            .count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_creates_each_firm_and_contact_once_and_replans_nothing() {
    let env = Env::new(60).await;
    env.sync().await;
    let accounts = env.scalar("SELECT COUNT(*) FROM raw_dataverse.account");
    let contacts = env.scalar("SELECT COUNT(*) FROM raw_dataverse.contact");
    let attached = env.scalar(
        "SELECT COUNT(*) FROM raw_dataverse.contact WHERE parentcustomerid_type = 'account'",
    );
    assert!(accounts > 0 && contacts > 0 && attached > 0);

    let sink = Sink::open(&env.ctx, FLOW).unwrap();
    let plan = sink.plan().await.unwrap();
    assert_eq!(plan.count(&Action::Create) as u64, accounts + contacts);
    assert_eq!(plan.writes(), plan.jobs.len());
    // Dependencies first: every firm job precedes every contact job.
    let first_contact = plan
        .jobs
        .iter()
        .position(|j| j.source_entity == "contact")
        .unwrap();
    assert!(
        plan.jobs[first_contact..]
            .iter()
            .all(|j| j.source_entity == "contact")
    );

    let target = sink.target(None).unwrap();
    let report = sink.apply(&plan, &target).await.unwrap();
    assert_eq!(report.failed, 0, "{:#?}", report.jobs);
    assert_eq!(report.waiting, 0);
    // A Dataverse account whose name matches an existing Deltek firm is linked, not created.
    assert_eq!((report.created + report.linked) as u64, accounts + contacts);
    assert_eq!(env.creates("firm") + env.creates("contact"), report.created);
    let writes = env.sandbox.deltek_writes();
    assert!(
        writes
            .iter()
            .all(|w| w.start_workflow.as_deref() == Some("N")),
        "every write carries startWorkflow=N"
    );
    // No owner override is configured: every write uses the default employee and says so.
    let audit = env.ctx.state.sink_audit_entries(FLOW, None).unwrap();
    assert!(audit.iter().filter(|a| a.action == "create").all(|a| {
        a.request
            .as_deref()
            .unwrap_or_default()
            .ends_with("owner=default")
            && a.request.as_deref().unwrap_or_default().contains("Owner")
    }));
    // Contacts attached to an account carry their firm.
    let with_firm = writes
        .iter()
        .filter(|w| w.hub == "contact" && w.fields.iter().any(|f| f == "ClientID"))
        .count() as u64;
    assert_eq!(with_firm, attached);
    // One distinct target record per source record.
    let links = env.ctx.state.sink_links(FLOW).unwrap();
    assert_eq!(links.len() as u64, accounts + contacts);
    let keys: BTreeSet<_> = links.iter().map(|(_, _, l)| l.target_key.clone()).collect();
    assert_eq!(keys.len(), links.len());

    // The same change sets, again: nothing (the cursor moved) ...
    let again = sink.plan().await.unwrap();
    assert_eq!(again.jobs.len(), 0);
    // ... and re-read from the start: all no-ops (the ledger knows every version).
    env.ctx.state.sink_reset_cursor(FLOW).unwrap();
    let reread = sink.plan().await.unwrap();
    assert_eq!(reread.jobs.len() as u64, accounts + contacts);
    assert_eq!(reread.writes(), 0);
    let r = sink.apply(&reread, &target).await.unwrap();
    assert_eq!(r.created + r.updated + r.linked + r.failed, 0);

    // Replaying every job three times creates nothing new.
    let posts = env.creates("firm") + env.creates("contact");
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
    assert_eq!(env.creates("firm") + env.creates("contact"), posts);

    // Source changes: inserts are created, updates update, deletes are audited no-ops.
    let first_jobs = env.ctx.state.sink_jobs(FLOW, None).unwrap();
    let changes = env.sandbox.mutate();
    env.sync().await;
    let plan = sink.plan().await.unwrap();
    let inserted =
        changes.entity_sets["accounts"].inserted + changes.entity_sets["contacts"].inserted;
    let deleted = changes.entity_sets["accounts"].deleted + changes.entity_sets["contacts"].deleted;
    assert_eq!(plan.count(&Action::Create) as u64, inserted);
    assert!(plan.count(&Action::Update) > 0);
    let report = sink.apply(&plan, &target).await.unwrap();
    assert_eq!(report.failed, 0, "{:#?}", report.jobs);
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
    assert_eq!((report.created + report.linked) as u64, inserted);
    let noops = env
        .ctx
        .state
        .sink_audit_entries(FLOW, None)
        .unwrap()
        .into_iter()
        .filter(|a| a.action == "noop")
        .count() as u64;
    assert_eq!(noops, deleted, "deleted rows are audited as no-ops");
    // A stale job replayed after a newer version was written changes nothing.
    let writes_before = env.sandbox.deltek_writes().len();
    let mut superseded = 0;
    for j in &first_jobs {
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
    let audited = env
        .ctx
        .state
        .sink_audit_entries(FLOW, None)
        .unwrap()
        .into_iter()
        .filter(|a| a.action == "create")
        .count();
    assert_eq!(env.creates("firm") + env.creates("contact"), audited);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_create_answer_does_not_duplicate_on_retry() {
    let env = Env::new(30).await;
    env.sync().await;
    let sink = Sink::open(&env.ctx, FLOW).unwrap();
    let target = sink.target(None).unwrap();
    let plan = sink.plan().await.unwrap();
    let first = plan.jobs[0].clone();
    assert_eq!(first.source_entity, "account");

    env.sandbox.deltek_drop_create_responses(1);
    let report = sink.apply(&plan, &target).await.unwrap();
    // The first firm was saved, but we never saw its key: that job fails as ambiguous (and,
    // if it had contacts, they wait for it); the run went on.
    assert_eq!(report.failed, 1, "{:#?}", report.jobs);
    let job = env.ctx.state.sink_job(&first.job_id).unwrap().unwrap();
    assert_eq!(job.status, "failed");
    assert!(job.ambiguous);
    let writes = env.sandbox.deltek_writes();
    assert!(writes[0].dropped);
    let firms_after_first = env.creates("firm");

    let retry = sink.replay(&Replay::Failed, &target).await.unwrap();
    assert_eq!(retry.failed, 0, "{:#?}", retry.jobs);
    assert_eq!(
        retry.created, report.waiting,
        "only the waiting contacts are created"
    );
    assert_eq!(env.creates("firm"), firms_after_first, "no second firm");
    let j = retry
        .jobs
        .iter()
        .find(|j| j.job_id == first.job_id)
        .unwrap();
    assert_eq!(j.outcome, "linked");
    assert_eq!(j.target_key.as_deref(), writes[0].key.as_deref());
    let audit: Vec<String> = env
        .ctx
        .state
        .sink_audit_entries(FLOW, Some(&first.job_id))
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert_eq!(audit, ["failed", "link"]);
    // Nothing left to do.
    assert_eq!(
        sink.replay(&Replay::Failed, &target)
            .await
            .unwrap()
            .jobs
            .len(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validation_error_fails_only_that_job_with_its_reason_audited() {
    let env = Env::new(40).await;
    env.sync().await;
    // The tenant made CellPhone required on contacts; some Dataverse contacts have no mobile.
    env.sandbox
        .deltek_required_fields("contact", &["CellPhone"]);
    let missing =
        env.scalar("SELECT COUNT(*) FROM raw_dataverse.contact WHERE mobilephone IS NULL");
    let total = env.scalar("SELECT COUNT(*) FROM raw_dataverse.contact")
        + env.scalar("SELECT COUNT(*) FROM raw_dataverse.account");
    assert!(missing > 0);

    let sink = Sink::open(&env.ctx, FLOW).unwrap();
    let target = sink.target(None).unwrap();
    let plan = sink.plan().await.unwrap();
    let report = sink.apply(&plan, &target).await.unwrap();
    assert_eq!(report.failed as u64, missing, "{:#?}", report.jobs);
    assert_eq!(
        (report.created + report.linked + report.failed) as u64,
        total
    );
    let failed = env.ctx.state.sink_jobs(FLOW, Some("failed")).unwrap();
    assert_eq!(failed.len() as u64, missing);
    for j in &failed {
        assert!(!j.ambiguous);
        assert!(
            j.last_error
                .as_deref()
                .unwrap_or_default()
                .contains("CellPhone is required."),
            "{:?}",
            j.last_error
        );
        let audit = env
            .ctx
            .state
            .sink_audit_entries(FLOW, Some(&j.job_id))
            .unwrap();
        let last = audit.last().unwrap();
        assert_eq!(last.action, "failed");
        assert_eq!(last.status, Some(400));
        assert!(
            last.error
                .as_deref()
                .unwrap_or_default()
                .contains("CellPhone")
        );
        assert!(
            last.request
                .as_deref()
                .unwrap_or_default()
                .starts_with("POST /contact")
        );
    }
    let status = sink.status().unwrap();
    assert_eq!(status.jobs_by_status["failed"] as u64, missing);
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
    assert!(out.contains("create  account"), "{out}");
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
