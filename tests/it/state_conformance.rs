//! One conformance suite for the state store, in the pattern of object_store's
//! `integration.rs`: each `check_*` is written once against an opener that gives handles on
//! one store (as several workers hold), and each backend has one test that runs every check.
//! SQLite and Postgres pass the same checks.
//!
//! What a backend guarantees:
//! - **cursors**: a stream's cursor moves only when its run commits; a run's checkpoints
//!   survive a crash and another handle sees them;
//! - **leases**: one holder at a time until expiry; tokens only grow, a release included;
//! - **fencing**: a holder whose lease was taken over writes nothing: no checkpoint, no commit,
//!   no sink audit or link;
//! - **sink ledger**: one link per source record, audit entries in order, append-only;
//! - **serve**: a webhook event is accepted once; a schedule occurrence fires once.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use ml_connector::Error;
use ml_connector::lake::RunKind;
use ml_connector::lease::{Take, run_unit, sink_unit};
use ml_connector::state::{
    AuditAction, AuditEntry, JobFinish, JobStatus, NewLink, PartRecord, RunRecord, RunStatus,
    StateStore,
};

const TTL: Duration = Duration::from_secs(60);
const STREAM: &str = "dataverse.account";

/// Handles on one store: every call opens another, as another worker would.
type Opener<'a> = &'a dyn Fn() -> StateStore;

fn part(n: u32) -> PartRecord {
    PartRecord {
        part: n,
        path: format!("raw/dataverse/account/run=r1/part-{n:05}.parquet"),
        rows: 100,
        deleted: 1,
        bytes: 1000,
        sha256: format!("sha{n}"),
        quarantine_path: None,
        quarantined: 2,
    }
}

fn taken(t: Take) -> ml_connector::lease::Lease {
    match t {
        Take::Taken(l) => l,
        Take::Held { owner, .. } => panic!("held by {owner}"),
    }
}

fn check_cursor_moves_only_on_commit(open: Opener<'_>) {
    let worker = open();
    let mut run = RunRecord::new("r1", "crm", STREAM, RunKind::Incremental, false, "h", None);
    run.lease_token = Some(
        taken(
            worker
                .lease_take(&run_unit("crm", STREAM), "w:1:a", TTL, 0)
                .unwrap(),
        )
        .token,
    );
    worker.begin_run(&run).unwrap();
    worker
        .record_part(&run, &part(0), Some("page-2"), 10)
        .unwrap();
    worker
        .set_pending_cursor(&run, "2026-01-01T00:00:00Z")
        .unwrap();
    // The worker dies here. Another handle sees the checkpoint, and no cursor.
    drop(worker);
    let other = open();
    assert_eq!(other.cursor("crm", STREAM).unwrap(), None);
    let open_run = other.open_run("crm", STREAM).unwrap().unwrap();
    assert_eq!(
        (open_run.next_part, open_run.position.as_deref()),
        (1, Some("page-2"))
    );
    assert_eq!(
        (
            open_run.rows_extracted,
            open_run.rows_deleted,
            open_run.rows_quarantined
        ),
        (100, 1, 2)
    );
    assert_eq!(other.parts("r1").unwrap(), vec![part(0)]);
    // Resumed and committed: the cursor is the run's pending one.
    other
        .record_part(&open_run, &part(1), Some("page-3"), 10)
        .unwrap();
    other
        .mark_extracted(&open_run, Some("2026-01-02T00:00:00Z"), "m/_manifest.json")
        .unwrap();
    other.mark_loaded(&open_run, 200, 2, 200).unwrap();
    assert_eq!(
        other.cursor("crm", STREAM).unwrap(),
        None,
        "not before the commit"
    );
    other.commit_run(&open_run, Some("columns")).unwrap();
    assert_eq!(
        open().cursor("crm", STREAM).unwrap().as_deref(),
        Some("2026-01-02T00:00:00Z")
    );
    assert!(open().open_run("crm", STREAM).unwrap().is_none());
    assert_eq!(open().parts("r1").unwrap().len(), 2);
    assert_eq!(
        open().runs(None, 10).unwrap()[0].status,
        RunStatus::Committed
    );
    // A reset forgets the cursor: the next run reads everything again.
    assert!(open().reset("crm", STREAM).unwrap());
    assert_eq!(open().cursor("crm", STREAM).unwrap(), None);
}

fn check_leases(open: Opener<'_>) {
    let (a, b) = (open(), open());
    let unit = run_unit("crm", STREAM);
    let first = taken(a.lease_take(&unit, "w:1:a", TTL, 1_000).unwrap());
    // Another owner is told who holds it and for how long.
    assert_eq!(
        b.lease_take(&unit, "w:2:b", TTL, 31_000).unwrap(),
        Take::Held {
            owner: "w:1:a".into(),
            expires_in: Duration::from_secs(30)
        }
    );
    assert!(a.lease_renew(&first, TTL, 50_000).unwrap());
    assert!(matches!(
        b.lease_take(&unit, "w:2:b", TTL, 100_000).unwrap(),
        Take::Held { .. }
    ));
    let second = taken(b.lease_take(&unit, "w:2:b", TTL, 110_001).unwrap());
    assert!(second.token > first.token);
    assert!(!a.lease_renew(&first, TTL, 110_002).unwrap(), "taken over");
    b.lease_release(&second).unwrap();
    let third = taken(a.lease_take(&unit, "w:1:a", TTL, 110_003).unwrap());
    assert!(
        third.token > second.token,
        "a release never lowers the token"
    );
    assert_eq!(b.lease_token(&unit).unwrap(), Some(third.token));
}

fn check_fencing(open: Opener<'_>) {
    let (paused, new_owner) = (open(), open());
    let unit = run_unit("crm", STREAM);
    let old = taken(paused.lease_take(&unit, "w:1:a", TTL, 0).unwrap());
    let mut run = RunRecord::new("r1", "crm", STREAM, RunKind::Snapshot, true, "h", None);
    run.lease_token = Some(old.token);
    paused.begin_run(&run).unwrap();
    paused.record_part(&run, &part(0), Some("p1"), 1).unwrap();
    let new = taken(new_owner.lease_take(&unit, "w:2:b", TTL, 61_000).unwrap());
    new_owner.claim_run("r1", Some(new.token)).unwrap();
    for refused in [
        paused.record_part(&run, &part(1), Some("p2"), 1),
        paused.set_pending_cursor(&run, "2026-01-01T00:00:00Z"),
        paused.mark_extracted(&run, None, "m/_manifest-w1.json"),
        paused.mark_loaded(&run, 1, 0, 1),
        paused.commit_run(&run, Some("columns")),
        paused.note_error(&run, "late"),
        paused.abandon_run(&run, "delta token expired"),
        paused.set_run_report(&run, "{}"),
        paused.check_lease(&run),
    ] {
        assert!(
            matches!(
                refused,
                Err(Error::LeaseLost { token, mine, .. }) if token == new.token && mine == old.token
            ),
            "{refused:?}"
        );
    }
    let resumed = new_owner.open_run("crm", STREAM).unwrap().unwrap();
    assert_eq!(
        (resumed.next_part, resumed.position.as_deref()),
        (1, Some("p1")),
        "nothing of the paused worker's landed"
    );
    assert_eq!(new_owner.cursor("crm", STREAM).unwrap(), None);
    // The new owner carries the run on to its commit.
    let resumed = RunRecord {
        lease_token: Some(new.token),
        ..resumed
    };
    new_owner
        .record_part(&resumed, &part(1), Some("p2"), 1)
        .unwrap();
    new_owner
        .mark_extracted(&resumed, None, "m/_manifest-w2.json")
        .unwrap();
    assert_eq!(
        new_owner.run("r1").unwrap().unwrap().manifest.as_deref(),
        Some("m/_manifest-w2.json"),
        "the run's manifest is the new owner's"
    );
    new_owner.mark_loaded(&resumed, 200, 0, 200).unwrap();
    new_owner.commit_run(&resumed, Some("columns")).unwrap();
    assert!(new_owner.open_run("crm", STREAM).unwrap().is_none());
    assert_eq!(new_owner.parts("r1").unwrap().len(), 2);

    // The same for a sink flow's job commit.
    let flow = sink_unit("f");
    let old = taken(paused.lease_take(&flow, "w:1:a", TTL, 0).unwrap());
    taken(new_owner.lease_take(&flow, "w:2:b", TTL, 61_000).unwrap());
    let audit = AuditEntry {
        flow: "f".into(),
        job_id: "j1".into(),
        action: AuditAction::Create,
        ..AuditEntry::default()
    };
    let late = paused.sink_commit(&JobFinish {
        fence: Some(&old),
        audits: std::slice::from_ref(&audit),
        link: Some(NewLink {
            flow: "f",
            source_entity: "account",
            source_id: "a1",
            target_entity: "firm",
            target_key: "F1",
            source_version: Some(1),
            target_version: None,
        }),
        ..JobFinish::default()
    });
    assert!(matches!(late, Err(Error::LeaseLost { .. })), "{late:?}");
    assert!(new_owner.sink_audit_entries("f", None).unwrap().is_empty());
    assert!(new_owner.sink_link("f", "account", "a1").unwrap().is_none());
}

fn check_sink_ledger(open: Opener<'_>) {
    let s = open();
    let link = |key: &'static str, version: i64| NewLink {
        flow: "f",
        source_entity: "account",
        source_id: "a1",
        target_entity: "firm",
        target_key: key,
        source_version: Some(version),
        target_version: None,
    };
    for (i, (key, version, action)) in [
        ("F1", 1, AuditAction::Create),
        ("F1", 2, AuditAction::Update),
        ("F2", 3, AuditAction::Link),
    ]
    .into_iter()
    .enumerate()
    {
        let audit = AuditEntry {
            flow: "f".into(),
            job_id: format!("j{i}"),
            action,
            target_key: Some(key.into()),
            ..AuditEntry::default()
        };
        s.sink_commit(&JobFinish {
            status: JobStatus::Applied,
            link: Some(link(key, version)),
            audits: std::slice::from_ref(&audit),
            ..JobFinish::default()
        })
        .unwrap();
    }
    let l = open().sink_link("f", "account", "a1").unwrap().unwrap();
    assert_eq!((l.target_key.as_str(), l.source_version), ("F2", Some(3)));
    assert_eq!(
        open().sink_links("f").unwrap().len(),
        1,
        "one link per record"
    );
    let audit = open().sink_audit_entries("f", None).unwrap();
    let actions: Vec<AuditAction> = audit.iter().map(|a| a.action).collect();
    assert_eq!(
        actions,
        [AuditAction::Create, AuditAction::Update, AuditAction::Link]
    );
    assert!(audit.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(open().sink_audit_since(audit[0].seq).unwrap().len(), 2);
}

fn check_serve_once(open: Opener<'_>) {
    let (a, b) = (open(), open());
    let now = Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap();
    assert!(a.serve_first_delivery("pd", "deal:1:t1", now).unwrap());
    assert!(!b.serve_first_delivery("pd", "deal:1:t1", now).unwrap());
    // Of two workers that find one occurrence due, one fires it.
    let known = now;
    let at = now + chrono::Duration::minutes(15);
    assert_eq!(a.serve_claim_fire("s", known, at).unwrap(), None);
    assert_eq!(b.serve_claim_fire("s", known, at).unwrap(), Some(at));
}

/// Every check, each on a fresh store from `new_store`, which returns an opener of handles on
/// that store.
fn conformance(new_store: impl Fn() -> Box<dyn Fn() -> StateStore>) {
    type Check = fn(Opener<'_>);
    for check in [
        check_cursor_moves_only_on_commit as Check,
        check_leases,
        check_fencing,
        check_sink_ledger,
        check_serve_once,
    ] {
        let open = new_store();
        check(&*open);
    }
}

#[test]
fn state_conformance_sqlite() {
    let dirs = std::cell::RefCell::new(Vec::new());
    conformance(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        dirs.borrow_mut().push(dir);
        Box::new(move || StateStore::open(&path).unwrap())
    });
}

#[test]
#[ignore = "needs PostgreSQL (.ci/postgres.sh)"]
fn state_conformance_postgres() {
    let Some(server) = crate::support::postgres_server("state_conformance_postgres") else {
        return;
    };
    conformance(|| {
        let url = crate::support::postgres_database(&server);
        Box::new(move || StateStore::connect(&url).unwrap())
    });
}

/// The store reaches Postgres over TLS and checks the server's certificate: with the CA of
/// `sslrootcert` the connection is encrypted; without it a server whose certificate no known CA
/// signed is refused (`sslmode=require`); `sslmode=disable` connects in the clear.
#[test]
#[ignore = "needs PostgreSQL (.ci/postgres.sh)"]
fn the_postgres_state_is_reached_over_verified_tls() {
    let test = "the_postgres_state_is_reached_over_verified_tls";
    let Some(server) = crate::support::postgres_server(test) else {
        return;
    };
    let Some(_ca) = crate::bigquery::env_or_skip(test, &["MLC_TEST_POSTGRES_CA"]) else {
        return;
    };
    let url = crate::support::postgres_database(&server);
    assert!(url.contains("sslrootcert="), "{url}");
    let store = StateStore::connect(&url).unwrap();
    store.lease_take("u", "w", TTL, 0).unwrap();
    let db = url.split_once('?').unwrap().0.rsplit_once('/').unwrap().1;
    let ssl = crate::support::postgres_query(
        &url,
        &format!(
            "SELECT string_agg(s.ssl::text, ',') FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.datname = '{db}' AND a.pid <> pg_backend_pid()"
        ),
    );
    assert_eq!(ssl, ["true"], "the store's one connection is encrypted");

    let base = url.split_once('?').unwrap().0;
    let err = StateStore::connect(&format!("{base}?sslmode=require"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(
        err.contains("add sslrootcert="),
        "it says what to do: {err}"
    );
    StateStore::connect(&format!("{base}?sslmode=disable")).unwrap();
}

/// A Postgres connection the server ends (a restart, a failover, an idle timeout) is opened
/// again: a transaction or a read carries on at once; a write on its own says it failed (it
/// may have been done) and the next call carries on.
#[test]
#[ignore = "needs PostgreSQL (.ci/postgres.sh)"]
fn a_dropped_postgres_connection_is_opened_again() {
    let Some(server) =
        crate::support::postgres_server("a_dropped_postgres_connection_is_opened_again")
    else {
        return;
    };
    let url = crate::support::postgres_database(&server);
    let db = url
        .split_once('?')
        .unwrap()
        .0
        .rsplit_once('/')
        .unwrap()
        .1
        .to_string();
    let store = StateStore::connect(&url).unwrap();
    let end_connections = || {
        crate::support::postgres_query(
            &url,
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()"
            ),
        )
    };
    taken(store.lease_take("a", "w:1:a", TTL, 0).unwrap());
    assert_eq!(end_connections(), ["1"]);
    // A transaction (a lease take) begins on a new connection.
    taken(store.lease_take("b", "w:1:a", TTL, 0).unwrap());
    // So does a read of its own.
    assert_eq!(end_connections(), ["1"]);
    assert_eq!(store.lease_token("b").unwrap(), Some(1));
    // A write on its own may have been done when the connection went: its error is told, and
    // the next call carries on.
    assert_eq!(end_connections(), ["1"]);
    let lease = ml_connector::lease::Lease {
        unit: "b".into(),
        owner: "w:1:a".into(),
        token: 1,
    };
    let err = store.lease_renew(&lease, TTL, 1).unwrap_err().to_string();
    assert!(err.contains("terminating connection"), "{err}");
    assert!(store.lease_renew(&lease, TTL, 2).unwrap());
}
