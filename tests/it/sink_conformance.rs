//! One conformance suite for every sink target: the same checks, written once against the
//! `Target` trait and the `Sink` API, run against each system's sandbox (one test per target,
//! as object_store's `integration.rs` does for its stores). Every check reads its result from
//! the sandbox's own store (`Sandbox::truth`, its write log), never from the product's state.
//!
//! a. search → create → found again: a search by the record's match fields finds nothing,
//!    create returns a key, the same search finds exactly that key, and the sandbox holds
//!    exactly one such record. Pipedrive is update-only (its mappings update records another
//!    flow linked): there, an update of an existing record is in the sandbox, on one record.
//! b. a 2xx answer carrying an error (the sandbox's `<system>_error_in_2xx`) is a refusal with
//!    the body's message as its reason, and nothing is saved.
//! c. a lost answer (the write applied, its answer dropped) is ambiguous; the sink's own retry
//!    path (`apply`, then `replay` of the failed jobs) links the saved record instead of
//!    writing a second: the dropped write and its retry add exactly one record (Pipedrive: the
//!    repeated update leaves one record, with the new value).

use ml_connector::loaders::sink::target::{Target, WriteError};
use ml_connector::loaders::sink::{ApplyReport, JobOutcome, Replay, Sink};
use ml_connector::run::Context;
use ml_connector::sandbox::{ERROR_IN_2XX, Sandbox, SandboxOptions, TruthRow};
use serde_json::{Map, Value, json};
use tempfile::TempDir;

use crate::support::sync_streams;

/// A project with one connection per sandbox system (`crm`, `erp`, `vp`, `pd`, `bi`).
struct Env {
    _dir: TempDir,
    sandbox: Sandbox,
    ctx: Context,
}

impl Env {
    async fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::start(
            SandboxOptions {
                scale: 20,
                retry_after_secs: 0,
                ..SandboxOptions::default()
            },
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let config = ml_connector::demo::write_project(dir.path(), &sandbox, "", false).unwrap();
        let ctx = Context::open(config).unwrap();
        Env {
            _dir: dir,
            sandbox,
            ctx,
        }
    }
}

/// The write checks a–c make.
enum Write {
    /// A new record, found by the `matching` (field, value) pairs (the flow's match rule).
    Create {
        record: Map<String, Value>,
        matching: Vec<(String, String)>,
    },
    /// Field `field` of the existing record `key` set to `value`.
    Update {
        key: String,
        field: String,
        value: String,
    },
}

/// What the suite needs to know of one target.
trait Harness {
    /// The system and the table behind the hub, as `Sandbox::truth` names them.
    const SYSTEM: &'static str;
    const TABLE: &'static str;
    /// The built-in flow writing the hub, its mapping that does, and the hub.
    const FLOW: &'static str;
    const MAPPING: &'static str;
    const HUB: &'static str;
    /// The hub's key field, in the sandbox's records and in search answers.
    const KEY: &'static str;

    fn env(&self) -> &Env;

    /// The `n`-th write of the checks: records no source record matches.
    fn write(&self, n: u32) -> Write;

    /// Arms the sandbox's "2xx answer carrying an error" fault for the next `n` writes.
    fn error_in_2xx(&self, n: u32);

    /// Arms the sandbox's "applied, answer lost" fault for the next `n` writes.
    fn drop_answers(&self, n: u32);

    /// The key of the last write whose answer the sandbox dropped, from its write log.
    fn dropped_key(&self) -> Option<String>;

    /// Brings the flow's sources in (and whatever it needs), so its plan writes to the hub.
    async fn prepare_flow(&self);

    /// The fields identifying, in the sandbox's records, the record a job of the mapping
    /// writes, from the job's source record.
    fn identity(&self, source_id: &str, record: &Map<String, Value>) -> Vec<(String, String)>;
}

/// A value as text, for comparing a sandbox record's field with a search value.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The hub's records in the sandbox, as its API serves them.
fn truth<H: Harness>(h: &H) -> Vec<TruthRow> {
    h.env()
        .sandbox
        .truth(H::SYSTEM, H::TABLE)
        .unwrap_or_else(|| panic!("{}: no table {}", H::SYSTEM, H::TABLE))
}

/// The sandbox's records of the hub whose fields equal every pair (case-insensitively, as the
/// targets compare text).
fn matching<H: Harness>(h: &H, pairs: &[(String, String)]) -> Vec<TruthRow> {
    truth(h)
        .into_iter()
        .filter(|r| {
            pairs.iter().all(|(f, v)| {
                r.get(f)
                    .is_some_and(|x| text(x).to_lowercase() == v.to_lowercase())
            })
        })
        .collect()
}

/// The sandbox's record `key` of the hub.
fn record<H: Harness>(h: &H, key: &str) -> TruthRow {
    let mut found: Vec<TruthRow> = truth(h)
        .into_iter()
        .filter(|r| r.get(H::KEY).map(text).as_deref() == Some(key))
        .collect();
    assert_eq!(found.len(), 1, "{}: record {key}", H::SYSTEM);
    found.remove(0)
}

fn change(field: &str, value: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(field.to_string(), Value::String(value.to_string()));
    m
}

/// Runs every check against one target, each to its end (a failed check does not hide the
/// next one's result), then fails with the checks that failed.
async fn conforms<H: Harness>(h: &H) {
    use futures::FutureExt;
    let sink = Sink::open(&h.env().ctx, H::FLOW).unwrap();
    let target = sink.target(None).unwrap();
    let mut failed = Vec::new();
    let mut check = |name: &'static str, r: std::thread::Result<()>| {
        // Whatever the check left armed is disarmed for the next.
        h.error_in_2xx(0);
        h.drop_answers(0);
        if r.is_err() {
            failed.push(name);
        }
    };
    let t = &*target;
    let a = std::panic::AssertUnwindSafe(search_write_find_again(h, t));
    check("a. search, create, find again", a.catch_unwind().await);
    let b = std::panic::AssertUnwindSafe(an_error_in_a_2xx_answer_is_a_refusal(h, t));
    check("b. an error in a 2xx answer", b.catch_unwind().await);
    let c = std::panic::AssertUnwindSafe(a_lost_answer_is_ambiguous_and_not_written_twice(
        h, &sink, t,
    ));
    check("c. a lost answer", c.catch_unwind().await);
    assert!(failed.is_empty(), "{}: failed {failed:?}", H::SYSTEM);
}

/// a. search → create → found again (update-only: update → the change is there, once).
async fn search_write_find_again<H: Harness>(h: &H, target: &dyn Target) {
    let sys = H::SYSTEM;
    let before = truth(h).len();
    match h.write(0) {
        Write::Create {
            record,
            matching: m,
        } => {
            let found = target.search(H::HUB, &m).await.unwrap();
            assert!(found.is_empty(), "{sys}: found before created: {found:?}");
            assert!(matching(h, &m).is_empty());
            let written = target.create(H::HUB, &record).await.unwrap();
            assert!(!written.key.is_empty(), "{sys}: {written:?}");
            let found = target.search(H::HUB, &m).await.unwrap();
            let keys: Vec<String> = found
                .iter()
                .filter_map(|r| r.get(H::KEY).map(text))
                .collect();
            assert_eq!(
                keys,
                std::slice::from_ref(&written.key),
                "{sys}: the same search"
            );
            let saved = matching(h, &m);
            assert_eq!(saved.len(), 1, "{sys}: one record in the sandbox");
            assert_eq!(saved[0].get(H::KEY).map(text), Some(written.key));
            assert_eq!(truth(h).len(), before + 1, "{sys}: one record more");
        }
        Write::Update { key, field, value } => {
            let pair = [(field.clone(), value.clone())];
            assert!(
                matching(h, &pair).is_empty(),
                "{sys}: {value} already there"
            );
            assert_ne!(record(h, &key).get(&field).map(text), Some(value.clone()));
            let written = target
                .update(H::HUB, &key, &change(&field, &value))
                .await
                .unwrap();
            assert_eq!(written.key, key, "{sys}: {written:?}");
            assert_eq!(record(h, &key).get(&field).map(text), Some(value.clone()));
            let saved = matching(h, &pair);
            assert_eq!(saved.len(), 1, "{sys}: one record carries it");
            assert_eq!(saved[0].get(H::KEY).map(text), Some(key));
            assert_eq!(truth(h).len(), before, "{sys}: no record more");
        }
    }
}

/// b. A 2xx answer whose body carries an error is a refusal with the body's message, and the
/// sandbox holds nothing new.
async fn an_error_in_a_2xx_answer_is_a_refusal<H: Harness>(h: &H, target: &dyn Target) {
    let sys = H::SYSTEM;
    let before = truth(h);
    h.error_in_2xx(1);
    let (result, pairs) = match h.write(1) {
        Write::Create {
            record,
            matching: m,
        } => (target.create(H::HUB, &record).await, m),
        Write::Update { key, field, value } => (
            target.update(H::HUB, &key, &change(&field, &value)).await,
            vec![(field, value)],
        ),
    };
    match result {
        Err(WriteError::Refused { status, reason }) => {
            assert!((200..300).contains(&status), "{sys}: status {status}");
            assert!(reason.contains(ERROR_IN_2XX), "{sys}: reason {reason}");
        }
        other => panic!("{sys}: a 2xx answer carrying an error came back as {other:?}"),
    }
    assert!(matching(h, &pairs).is_empty(), "{sys}: the write was saved");
    assert_eq!(truth(h), before, "{sys}: the sandbox changed");
}

/// c. A write applied whose answer was lost is ambiguous; the sink's retry path links what was
/// saved instead of writing it again.
async fn a_lost_answer_is_ambiguous_and_not_written_twice<H: Harness>(
    h: &H,
    sink: &Sink<'_>,
    target: &dyn Target,
) {
    let sys = H::SYSTEM;
    // The target alone: ambiguous, though applied.
    let before = truth(h).len();
    h.drop_answers(1);
    let creating = match h.write(2) {
        Write::Create {
            record,
            matching: m,
        } => {
            let r = target.create(H::HUB, &record).await;
            assert!(
                matches!(r, Err(WriteError::Ambiguous { .. })),
                "{sys}: a lost answer came back as {r:?}"
            );
            let saved = matching(h, &m);
            assert_eq!(saved.len(), 1, "{sys}: the create was applied");
            assert_eq!(saved[0].get(H::KEY).map(text), h.dropped_key());
            assert_eq!(truth(h).len(), before + 1);
            true
        }
        Write::Update { key, field, value } => {
            let body = change(&field, &value);
            let r = target.update(H::HUB, &key, &body).await;
            assert!(
                matches!(r, Err(WriteError::Ambiguous { .. })),
                "{sys}: a lost answer came back as {r:?}"
            );
            assert_eq!(h.dropped_key().as_deref(), Some(key.as_str()));
            assert_eq!(record(h, &key).get(&field).map(text), Some(value.clone()));
            // Sent again: the same one record, with the new value.
            let again = target.update(H::HUB, &key, &body).await.unwrap();
            assert_eq!(again.key, key);
            assert_eq!(matching(h, &[(field, value)]).len(), 1);
            assert_eq!(truth(h).len(), before);
            false
        }
    };

    // Through the sink: the job whose answer was lost fails as ambiguous, the run goes on, and
    // a replay of the failed jobs finds the saved record instead of writing a second.
    h.prepare_flow().await;
    let ctx = &h.env().ctx;
    let plan = sink.plan().await.unwrap();
    let before = truth(h).len();
    h.drop_answers(1);
    let report = sink.apply(&plan, target).await.unwrap();
    let failed: Vec<_> = report
        .jobs
        .iter()
        .filter(|j| j.outcome == JobOutcome::Failed)
        .collect();
    assert_eq!(failed.len(), 1, "{sys}: {:#?}", report.jobs);
    let lost = failed[0].clone();
    assert_eq!(lost.source_entity, H::MAPPING, "{sys}: {lost:?}");
    let job = ctx.state.sink_job(&lost.job_id).unwrap().unwrap();
    assert!(job.ambiguous, "{sys}: {job:?}");
    let dropped = h.dropped_key().expect("the sandbox dropped an answer");
    let source: Map<String, Value> = serde_json::from_str(&job.record).unwrap();
    let identity = h.identity(&lost.source_id, &source);
    assert_eq!(matching(h, &identity).len(), 1, "{sys}: {identity:?}");

    let retry = sink.replay(&Replay::Failed, target).await.unwrap();
    assert_eq!(retry.failed, 0, "{sys}: {:#?}", retry.jobs);
    let again = retry
        .jobs
        .iter()
        .find(|j| j.job_id == lost.job_id)
        .unwrap_or_else(|| panic!("{sys}: {:#?}", retry.jobs));
    let expected = if creating {
        JobOutcome::Linked
    } else {
        JobOutcome::Updated
    };
    assert_eq!(again.outcome, expected, "{sys}: {again:?}");
    assert_eq!(again.target_key.as_deref(), Some(dropped.as_str()));
    // No second record: the lost write and its retry add exactly one (an update none).
    let created = |r: &ApplyReport| {
        r.jobs
            .iter()
            .filter(|j| j.source_entity == H::MAPPING && j.outcome == JobOutcome::Created)
            .count()
    };
    assert_eq!(
        truth(h).len(),
        before + created(&report) + created(&retry) + usize::from(creating),
        "{sys}: records of {} after the retry",
        H::HUB
    );
    let saved = matching(h, &identity);
    assert_eq!(saved.len(), 1, "{sys}: {identity:?}");
    assert_eq!(saved[0].get(H::KEY).map(text), Some(dropped));
    // Nothing left to write.
    let last = sink.replay(&Replay::Failed, target).await.unwrap();
    assert_eq!(
        last.created + last.updated + last.linked + last.failed,
        0,
        "{sys}: {:#?}",
        last.jobs
    );
}

/// Deltek Vantagepoint firms, written by `dynamics_to_deltek` from Dataverse accounts, found
/// by their external id.
struct Deltek(Env);

impl Harness for Deltek {
    const SYSTEM: &'static str = "deltek";
    const TABLE: &'static str = "firm";
    const FLOW: &'static str = "dynamics_to_deltek";
    const MAPPING: &'static str = "account";
    const HUB: &'static str = "firm";
    const KEY: &'static str = "ClientID";

    fn env(&self) -> &Env {
        &self.0
    }

    fn write(&self, n: u32) -> Write {
        let id = format!("c0f0c0f0-0000-4000-8000-{n:012}");
        let mut record = Map::new();
        record.insert("Name".into(), json!(format!("Conformance Firm {n}")));
        record.insert("CustDynamicsId".into(), json!(id));
        Write::Create {
            record,
            matching: vec![("CustDynamicsId".into(), id)],
        }
    }

    fn error_in_2xx(&self, n: u32) {
        self.0.sandbox.deltek_error_in_2xx(n);
    }

    fn drop_answers(&self, n: u32) {
        self.0.sandbox.deltek_drop_create_responses(n);
    }

    fn dropped_key(&self) -> Option<String> {
        self.0
            .sandbox
            .deltek_writes()
            .into_iter()
            .rfind(|w| w.dropped)
            .and_then(|w| w.key)
    }

    async fn prepare_flow(&self) {
        sync_streams(
            &self.0.ctx,
            "crm",
            &[
                "dataverse.systemuser",
                "dataverse.account",
                "dataverse.contact",
                "dataverse.opportunity",
            ],
        )
        .await;
    }

    fn identity(&self, source_id: &str, _: &Map<String, Value>) -> Vec<(String, String)> {
        vec![("CustDynamicsId".into(), source_id.to_string())]
    }
}

/// Business Central customers of "CRONUS USA, Inc.", written by
/// `pipedrive_to_business_central` from Pipedrive organizations, found by name.
struct BusinessCentral(Env);

impl Harness for BusinessCentral {
    const SYSTEM: &'static str = "business_central";
    const TABLE: &'static str = "customer";
    const FLOW: &'static str = "pipedrive_to_business_central";
    const MAPPING: &'static str = "organization";
    const HUB: &'static str = "customers";
    const KEY: &'static str = "id";

    fn env(&self) -> &Env {
        &self.0
    }

    fn write(&self, n: u32) -> Write {
        let name = format!("Conformance Customer {n}");
        let mut record = Map::new();
        record.insert("displayName".into(), json!(name));
        Write::Create {
            record,
            matching: vec![("displayName".into(), name)],
        }
    }

    fn error_in_2xx(&self, n: u32) {
        self.0.sandbox.business_central_error_in_2xx(n);
    }

    fn drop_answers(&self, n: u32) {
        self.0.sandbox.business_central_drop_create_responses(n);
    }

    fn dropped_key(&self) -> Option<String> {
        self.0
            .sandbox
            .business_central_writes()
            .into_iter()
            .rfind(|w| w.dropped)
            .and_then(|w| w.id)
    }

    async fn prepare_flow(&self) {
        sync_streams(&self.0.ctx, "pd", &[]).await;
    }

    fn identity(&self, _: &str, record: &Map<String, Value>) -> Vec<(String, String)> {
        vec![("displayName".into(), text(&record["name"]))]
    }
}

/// Pipedrive organizations, updated by `business_central_to_pipedrive` from the Business
/// Central customers `pipedrive_to_business_central` made of them (update-only).
struct Pipedrive(Env);

const RENAMED: &str = "Conformance Renamed Holdings";

impl Harness for Pipedrive {
    const SYSTEM: &'static str = "pipedrive";
    const TABLE: &'static str = "organization";
    const FLOW: &'static str = "business_central_to_pipedrive";
    const MAPPING: &'static str = "customer";
    const HUB: &'static str = "organizations";
    const KEY: &'static str = "id";

    fn env(&self) -> &Env {
        &self.0
    }

    /// Organizations from the end of the list (the flow's case renames the first one's
    /// customer).
    fn write(&self, n: u32) -> Write {
        let rows = truth(self);
        let row = &rows[rows.len() - 1 - n as usize];
        Write::Update {
            key: text(&row["id"]),
            field: "name".into(),
            value: format!("Conformance Organization {n}"),
        }
    }

    fn error_in_2xx(&self, n: u32) {
        self.0.sandbox.pipedrive_error_in_2xx(n);
    }

    fn drop_answers(&self, n: u32) {
        self.0.sandbox.pipedrive_drop_update_responses(n);
    }

    fn dropped_key(&self) -> Option<String> {
        self.0
            .sandbox
            .pipedrive_writes()
            .into_iter()
            .rfind(|w| w.dropped)
            .map(|w| w.id.to_string())
    }

    /// Pipedrive synced and written to Business Central, then a BC user renames the customer
    /// made of the first organization: the flow's plan updates that organization.
    async fn prepare_flow(&self) {
        const FORWARD: &str = "pipedrive_to_business_central";
        let (ctx, sb) = (&self.0.ctx, &self.0.sandbox);
        let bc = ["business_central.customer", "business_central.item"];
        sync_streams(ctx, "pd", &[]).await;
        let forward = Sink::open(ctx, FORWARD).unwrap();
        let target = forward.target(None).unwrap();
        let r = forward
            .apply(&forward.plan().await.unwrap(), &target)
            .await
            .unwrap();
        assert_eq!(r.failed, 0, "{:#?}", r.jobs);
        sync_streams(ctx, "erp", &bc).await;
        let first = text(&truth(self)[0]["id"]);
        let customer = ctx
            .state
            .sink_link(FORWARD, "organization", &first)
            .unwrap()
            .expect("the first organization is a customer")
            .target_key;
        sb.business_central_set_field(0, "customers", &customer, "displayName", json!(RENAMED))
            .unwrap();
        sync_streams(ctx, "erp", &bc).await;
    }

    fn identity(&self, _: &str, record: &Map<String, Value>) -> Vec<(String, String)> {
        assert_eq!(record["display_name"], RENAMED, "{record:?}");
        vec![("name".into(), RENAMED.into())]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltek_vantagepoint_conforms() {
    conforms(&Deltek(Env::new().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_central_conforms() {
    conforms(&BusinessCentral(Env::new().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipedrive_conforms() {
    conforms(&Pipedrive(Env::new().await)).await;
}
