//! Deltek paging under the sandbox's disturbances: rows saved and deleted between pages, a
//! server-side page cap, a mass update larger than a page, composite keys. Each disturbance is
//! first shown to cost a page-numbered read rows (so the tests cannot pass by construction);
//! then syncs land every row, compared with the tenant's truth row by row, and a key-set pass
//! disturbed the same way deletes no live key.

use std::collections::{BTreeMap, BTreeSet};

use ml_connector::run::{Context, RunSummary};
use ml_connector::sandbox::{Sandbox, SandboxOptions};

use crate::deltek_sync::small_pages;
use crate::sandbox_deltek::{deltek_config, get, token};
use crate::tenants::World;

fn opts() -> SandboxOptions {
    SandboxOptions {
        scale: 200,
        retry_after_secs: 0,
        ..SandboxOptions::default()
    }
}

async fn sandbox() -> Sandbox {
    Sandbox::start(opts(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// A project syncing `streams` of the Deltek fake with `page_size`-row pages and a key-set
/// pass after every incremental run.
async fn world(page_size: u32, streams: &[&str]) -> World {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = sandbox().await;
    small_pages(dir.path(), page_size);
    let list: Vec<String> = streams.iter().map(|s| format!("\"deltek.{s}\"")).collect();
    let extra = format!("streams = [{}]\nreconcile_every_hours = 0", list.join(", "));
    let config = deltek_config(dir.path(), &sandbox, &extra);
    let ctx = Context::open(config).unwrap();
    World {
        _dir: dir,
        sandbox,
        ctx,
    }
}

/// Runs by entity.
async fn sync(w: &World) -> BTreeMap<String, RunSummary> {
    w.sync(false)
        .await
        .into_iter()
        .map(|(k, v)| (k.trim_start_matches("deltek.").to_string(), v))
        .collect()
}

/// Mismatches between the warehouse table of `entity` and the tenant (empty: equal).
async fn differences(w: &World, entity: &str) -> Vec<String> {
    let stream = w
        .ctx
        .defs
        .get(&format!("deltek.{entity}").parse().unwrap())
        .unwrap();
    w.compare(stream).await.0
}

/// Live keys of `entity` in the order a read by `ModDate` serves them.
fn by_mod_date(sb: &Sandbox, entity: &str) -> Vec<String> {
    let mut rows = sb.deltek_live_rows(entity).unwrap();
    rows.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    rows.into_iter().map(|(k, _)| k).collect()
}

/// Live keys of `entity` in key order (ledger periods and posting sequences as numbers).
fn by_key(sb: &Sandbox, entity: &str) -> Vec<String> {
    let mut keys: Vec<String> = sb
        .deltek_live_rows(entity)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    keys.sort_by_key(|k| {
        k.split('|')
            .map(|p| match p.parse::<i64>() {
                Ok(n) if p.len() < 8 => (n, String::new()),
                _ => (i64::MIN, p.to_lowercase()),
            })
            .collect::<Vec<_>>()
    });
    keys
}

/// The keys a page-numbered read (`page=1,2,…` until a short page, the way mlc read before)
/// of `query` gets.
async fn page_numbered_keys(sb: &Sandbox, query: &str, size: usize, key: &str) -> BTreeSet<String> {
    let tok = token(sb).await;
    let mut out = BTreeSet::new();
    for page in 1.. {
        let (status, v) = get(sb, &tok, &format!("{query}&pageSize={size}&page={page}")).await;
        assert_eq!(status, 200, "{v}");
        let rows = v.as_array().unwrap();
        out.extend(rows.iter().map(|r| r[key].as_str().unwrap().to_string()));
        if rows.len() < size {
            break;
        }
    }
    out
}

fn missing(live: &[String], read: &BTreeSet<String>) -> usize {
    live.iter().filter(|k| !read.contains(*k)).count()
}

/// Keys in the warehouse table of `entity`.
fn warehouse_keys(w: &World, entity: &str) -> BTreeSet<String> {
    let stream = w
        .ctx
        .defs
        .get(&format!("deltek.{entity}").parse().unwrap())
        .unwrap();
    let pk: Vec<&str> = stream
        .catalog
        .primary_key
        .iter()
        .map(String::as_str)
        .collect();
    w.ctx
        .warehouse
        .local()
        .unwrap()
        .keys(&stream.dataset(), entity, &pk)
        .unwrap()
        .into_iter()
        .map(|k| k.join("|"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_and_deletes_between_pages_lose_no_row() {
    // The disturbance: after page 1, two rows already read are saved (they move to the end)
    // and a row not read yet is saved too; after page 2, a row already read is deleted.
    let script = |sb: &Sandbox| {
        let order = by_mod_date(sb, "contact");
        assert!(order.len() > 60, "{}", order.len());
        let touch = [order[1].clone(), order[3].clone(), order[35].clone()];
        assert!(sb.deltek_after_pages("contact", 1, &touch, &[]));
        assert!(sb.deltek_after_pages("contact", 2, &[], &[order[12].clone()]));
        order[12].clone()
    };
    // A page-numbered read by ModDate misses the rows that slid across page boundaries.
    let twin = sandbox().await;
    script(&twin);
    let read = page_numbered_keys(
        &twin,
        "contact?fieldFilter=ContactID,ModDate&order=ModDate",
        10,
        "ContactID",
    )
    .await;
    assert_eq!(twin.deltek_pending_page_events(), 0);
    let lost = missing(&by_mod_date(&twin, "contact"), &read);
    assert!(
        lost >= 2,
        "the disturbance should cost a page-numbered read rows ({lost} lost)"
    );

    let w = world(10, &["contact"]).await;
    let deleted = script(&w.sandbox);
    let first = sync(&w).await;
    assert_eq!(w.sandbox.deltek_pending_page_events(), 0, "the script ran");
    assert_eq!(first["contact"].kind, "snapshot");
    // Every live row landed with its latest values; the row deleted after it was read is the
    // only extra one (the next reconciliation removes it).
    let bad = differences(&w, "contact").await;
    let expected_extra = format!("deltek.contact {deleted}: in the warehouse, not in the tenant");
    assert_eq!(bad, vec![expected_extra], "{bad:#?}");

    // The same on an incremental read: 30 rows saved one after the other (three pages by
    // ModDate); after the first page, two rows it held are saved again and one is deleted.
    let saved: Vec<String> = by_key(&w.sandbox, "contact")
        .into_iter()
        .step_by(4)
        .take(30)
        .collect();
    assert_eq!(w.sandbox.deltek_save("contact", &saved, false), 30);
    assert!(w.sandbox.deltek_after_pages(
        "contact",
        1,
        &[saved[1].clone(), saved[3].clone()],
        &[saved[5].clone()]
    ));
    let second = sync(&w).await;
    assert_eq!(w.sandbox.deltek_pending_page_events(), 0);
    assert_eq!(second["contact"].kind, "incremental");
    // Each saved row once, and the two saved again once more, with their new values.
    assert_eq!(
        second["contact"].rows_extracted, 32,
        "{:?}",
        second["contact"]
    );
    // The key-set pass after the read removed both rows deleted behind a read.
    assert_eq!(second["contact"].deleted, 2, "{:?}", second["contact"]);
    let bad = differences(&w, "contact").await;
    assert!(bad.is_empty(), "{bad:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_during_a_key_set_pass_never_removes_a_live_key() {
    // A page-numbered key read misses live keys when rows it already read are deleted: the
    // merge would then delete those live keys.
    let twin = sandbox().await;
    let natural = by_mod_date(&twin, "contact");
    twin.deltek_after_pages("contact", 1, &[], &[natural[0].clone(), natural[2].clone()]);
    let read = page_numbered_keys(&twin, "contact?fieldFilter=ContactID", 10, "ContactID").await;
    let live: Vec<String> = twin
        .deltek_live_rows("contact")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(
        missing(&live, &read) >= 2,
        "the disturbance should hide live keys"
    );

    // Contacts (one key field) and journal lines (Period, PostSeq, PKey: every line of the
    // sandbox's ledger shares a period, a tie larger than any page).
    let w = world(10, &["contact", "journal_entry"]).await;
    sync(&w).await;
    for e in ["contact", "journal_entry"] {
        assert!(differences(&w, e).await.is_empty(), "{e}");
    }
    // The next run reads no change (one request), then its key-set pass: after that pass's
    // first page, two keys it has read are deleted.
    let mut gone = BTreeMap::new();
    for e in ["contact", "journal_entry"] {
        let keys = by_key(&w.sandbox, e);
        let del = vec![keys[0].clone(), keys[2].clone()];
        assert!(w.sandbox.deltek_after_pages(e, 2, &[], &del));
        gone.insert(e, del);
    }
    let run = sync(&w).await;
    assert_eq!(w.sandbox.deltek_pending_page_events(), 0, "the script ran");
    for e in ["contact", "journal_entry"] {
        assert_eq!(run[e].rows_extracted, 0, "{e}");
        assert!(
            run[e].notes.iter().any(|n| n.contains("key-set")),
            "{e}: {:?}",
            run[e].notes
        );
        assert_eq!(run[e].deleted, 0, "{e}: a live key was deleted");
        let table = warehouse_keys(&w, e);
        let live = by_key(&w.sandbox, e);
        assert_eq!(missing(&live, &table), 0, "{e}: live keys missing");
        assert_eq!(table.len(), live.len() + 2, "{e}");
    }
    // The next pass reconciles the two deletes, and the tables equal the tenant.
    let run = sync(&w).await;
    for e in ["contact", "journal_entry"] {
        assert_eq!(run[e].deleted, 2, "{e}");
        let bad = differences(&w, e).await;
        assert!(bad.is_empty(), "{e}: {bad:#?}");
        let table = warehouse_keys(&w, e);
        assert!(gone[e].iter().all(|k| !table.contains(k)), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_page_cap_is_found_and_paged_by() {
    // The server serves 7 rows however many are asked: a read that stops at a short page
    // stops after the first one.
    let twin = sandbox().await;
    twin.deltek_page_cap(Some(7));
    let read = page_numbered_keys(&twin, "contact?fieldFilter=ContactID", 20, "ContactID").await;
    assert_eq!(read.len(), 7);

    let w = world(20, &["contact", "journal_entry", "project_phase"]).await;
    w.sandbox.deltek_page_cap(Some(7));
    let first = sync(&w).await;
    for (e, s) in &first {
        assert_eq!(
            s.rows_extracted,
            w.sandbox.deltek_counts()[e.as_str()],
            "{e}"
        );
        let bad = differences(&w, e).await;
        assert!(bad.is_empty(), "{e}: {bad:#?}");
    }
    w.sandbox.deltek_mutate();
    sync(&w).await;
    for e in first.keys() {
        let bad = differences(&w, e).await;
        assert!(bad.is_empty(), "after a mutation, {e}: {bad:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mass_update_larger_than_a_page_lands_whole_and_once() {
    let w = world(10, &["contact"]).await;
    sync(&w).await;
    // 35 contacts saved with one ModDate: a tie three and a half pages long.
    let keys: Vec<String> = by_key(&w.sandbox, "contact")
        .into_iter()
        .step_by(3)
        .take(35)
        .collect();
    assert_eq!(w.sandbox.deltek_save("contact", &keys, true), 35);
    let stamps: BTreeSet<String> = w
        .sandbox
        .deltek_live_rows("contact")
        .unwrap()
        .into_iter()
        .filter(|(k, _)| keys.contains(k))
        .map(|(_, m)| m)
        .collect();
    assert_eq!(stamps.len(), 1, "{stamps:?}");
    let run = sync(&w).await;
    assert_eq!(run["contact"].kind, "incremental");
    assert_eq!(
        run["contact"].rows_extracted, 35,
        "each saved row exactly once, nothing else"
    );
    let bad = differences(&w, "contact").await;
    assert!(bad.is_empty(), "{bad:#?}");
}
