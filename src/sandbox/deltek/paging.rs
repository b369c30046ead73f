//! Ordered and disturbed paging of the Deltek fake.
//!
//! - `order=<key field>`: rows sorted by the table's key (numbers numerically, text without
//!   regard to case, as SQL Server's default collation compares), with `=`, `>`, `>=`, `<`, `<=`
//!   `filterHash` entries on the key fields (the reference lists `=`, `>=`, `<` from working
//!   scripts and `gt`/`ge`/`lt`/`le` from a Go client; the fake accepts both spellings). The key
//!   fields before the ordered one must be fixed by `=`: that is the only shape a keyset reader
//!   needs, and the fake says so (400) rather than serve another order silently.
//! - A server-side page cap: the service publishes no maximum page size [UNCERTAIN], so a tenant
//!   (or a proxy) may serve fewer rows than `pageSize` asks; the fake can, without saying so.
//! - Scripted saves and deletes between pages: after the n-th list response of a table, given
//!   rows are saved (their `ModDate` moves to now, past every other row) or deleted, the way
//!   users of the tenant do while a long read runs. And mass updates that stamp many rows with
//!   one `ModDate` (ties larger than a page).
//!
//! The sorted key order of a table is built once and kept until a row is inserted (deleted rows
//! stay in it and are skipped), so a key-ordered page costs a binary search and a short scan.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::kind::Kind;
use super::{Data, Deltek, KeyPart};

/// A table's rows in key order: (key parts, ordinal), every ordinal below `next` at build time.
type Sorted = Arc<Vec<(Vec<KeyPart>, u64)>>;

/// Saves and deletes to apply after a number of list responses of a table.
#[derive(Debug, Clone)]
struct Event {
    kind: Kind,
    /// List responses of the table still to serve before the event fires.
    after: u64,
    touch: Vec<String>,
    delete: Vec<String>,
}

/// Paging controls and the key-order cache.
#[derive(Default)]
pub(super) struct Paging {
    /// Most rows a page serves (0: as many as asked).
    cap: AtomicU64,
    events: Mutex<Vec<Event>>,
    /// Kind → (what the table looked like at build time, sorted rows).
    sorted: Mutex<HashMap<Kind, (Built, Sorted)>>,
}

/// (next ordinal, client keys) of a table when its key order was built: a change of either
/// rebuilds it.
type Built = (u64, usize);

/// One key-field condition: (key part index, operator, value).
pub(super) type KeyCond = (usize, &'static str, KeyPart);

impl Paging {
    /// The rows a page serves when `asked` are asked.
    pub fn page_size(&self, asked: u64) -> u64 {
        match self.cap.load(Ordering::Relaxed) {
            0 => asked,
            c => asked.min(c),
        }
    }

    pub fn set_cap(&self, cap: Option<u64>) {
        self.cap.store(cap.unwrap_or(0), Ordering::Relaxed);
    }

    fn events(&self) -> std::sync::MutexGuard<'_, Vec<Event>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Arms an event: after `pages` more list responses of `kind`, save `touch` and delete
    /// `delete` (keys as `deltek_live_rows` spells them).
    pub fn after_pages(&self, kind: Kind, pages: u64, touch: Vec<String>, delete: Vec<String>) {
        self.events().push(Event {
            kind,
            after: pages.max(1),
            touch,
            delete,
        });
    }

    /// Events armed and not fired yet.
    pub fn pending(&self) -> usize {
        self.events().len()
    }

    /// A list response of `kind` was built: fires the events now due (with the data lock
    /// free: the caller has released it).
    pub fn served(&self, dk: &Deltek, kind: Kind) {
        let due: Vec<Event> = {
            let mut events = self.events();
            for e in events.iter_mut().filter(|e| e.kind == kind) {
                e.after -= 1;
            }
            let (due, rest) = events.drain(..).partition(|e| e.after == 0);
            *events = rest;
            due
        };
        for e in due {
            let mut d = dk.data();
            save(dk, &mut d, e.kind, &e.touch, false);
            delete(dk, &mut d, e.kind, &e.delete);
        }
    }

    /// The table's rows in key order (see [`Sorted`]).
    fn sorted(&self, dk: &Deltek, d: &Data, kind: Kind) -> Sorted {
        let t = &d.tables[kind as usize];
        let clients = d
            .written
            .client_keys
            .keys()
            .filter(|(k, _)| *k == kind)
            .count();
        let stamp = (t.next, clients);
        let mut cache = self.sorted.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((s, rows)) = cache.get(&kind)
            && *s == stamp
        {
            return Arc::clone(rows);
        }
        let mut rows: Vec<(Vec<KeyPart>, u64)> = (0..t.next)
            .map(|o| (key_parts(dk, d, kind, o), o))
            .collect();
        rows.sort_unstable();
        let rows = Arc::new(rows);
        cache.insert(kind, (stamp, Arc::clone(&rows)));
        rows
    }
}

/// Saves `keys` of `kind` (a new revision each), in that order; `alike`: all with one
/// `ModDate` (a mass update), otherwise one millisecond apart. Stamps follow the table's newest
/// `ModDate` on the fake's mutation clock (store.rs), so they are past every row's and a later
/// mutation round is past them.
pub(super) fn save(dk: &Deltek, d: &mut Data, kind: Kind, keys: &[String], alike: bool) -> usize {
    let found: Vec<u64> = keys
        .iter()
        .filter_map(|k| super::find_ordinal(dk, d, kind, k))
        .collect();
    let t = &mut d.tables[kind as usize];
    let newest = t.changed.values().map(|(_, m)| *m).max().unwrap_or(0);
    let mut stamp = newest.max(super::store::MUTATION_START_MS) + 1;
    for o in &found {
        let rev = t.meta(*o).0 + 1;
        t.changed.insert(*o, (rev, stamp));
        if !alike {
            stamp += 1;
        }
    }
    found.len()
}

/// Deletes the live rows keyed `keys` of `kind`; returns how many were found.
pub(super) fn delete(dk: &Deltek, d: &mut Data, kind: Kind, keys: &[String]) -> usize {
    let found: Vec<u64> = keys
        .iter()
        .filter_map(|k| super::find_ordinal(dk, d, kind, k))
        .collect();
    let t = &mut d.tables[kind as usize];
    for o in &found {
        t.changed.remove(o);
        t.deleted.insert(*o);
    }
    found.len()
}

/// Whether the ledger tables' key part `i` is a number (Period, PostSeq).
fn numeric(kind: Kind, i: usize) -> bool {
    matches!(kind, Kind::Ap | Kind::Ar | Kind::Je) && i < 2
}

/// One key part as the fake orders and compares it.
pub(super) fn key_part(kind: Kind, i: usize, s: &str) -> KeyPart {
    match s.trim().parse::<i64>() {
        Ok(n) if numeric(kind, i) => KeyPart::Num(n),
        _ => KeyPart::Text(s.to_lowercase()),
    }
}

/// The key parts of row `o` (a client-assigned number where the API saved one).
fn key_parts(dk: &Deltek, d: &Data, kind: Kind, o: u64) -> Vec<KeyPart> {
    super::key_str(dk, d, kind, o)
        .split('|')
        .enumerate()
        .map(|(i, s)| key_part(kind, i, s))
        .collect()
}

fn holds(have: &KeyPart, op: &str, want: &KeyPart) -> bool {
    let o = have.cmp(want);
    match op {
        "=" => o.is_eq(),
        ">" => o.is_gt(),
        ">=" => o.is_ge(),
        "<" => o.is_lt(),
        "<=" => o.is_le(),
        _ => false,
    }
}

/// Live rows of `kind` ordered by key part `by`, under `conds` and `accept` (the other
/// filters), positions `skip..skip + take`. Fails when a key part before `by` is not fixed by
/// `=` (the fake serves no other key order).
pub(super) fn key_ordered(
    dk: &Deltek,
    d: &Data,
    kind: Kind,
    by: usize,
    conds: &[KeyCond],
    accept: &mut dyn FnMut(u64) -> bool,
    (skip, take): (u64, u64),
) -> Result<Vec<u64>, String> {
    let mut prefix = Vec::with_capacity(by + 1);
    for i in 0..by {
        match conds.iter().find(|(p, op, _)| *p == i && *op == "=") {
            Some((_, _, v)) => prefix.push(v.clone()),
            None => {
                return Err(format!(
                    "ordering by key field {} needs `=` on the key fields before it",
                    by + 1
                ));
            }
        }
    }
    let lower = conds
        .iter()
        .filter(|(p, op, _)| *p == by && matches!(*op, ">" | ">=" | "="))
        .map(|(_, _, v)| v)
        .max();
    let fixed = prefix.len();
    if let Some(l) = lower {
        prefix.push(l.clone());
    }
    let sorted = dk.paging.sorted(dk, d, kind);
    let start = sorted.partition_point(|(k, _)| k[..prefix.len()] < prefix[..]);
    let t = &d.tables[kind as usize];
    let mut out = Vec::new();
    let mut skipped = 0;
    for (k, o) in &sorted[start..] {
        if k[..fixed] != prefix[..fixed] {
            break;
        }
        let upper_fails = conds
            .iter()
            .any(|(p, op, v)| *p == by && matches!(*op, "<" | "<=" | "=") && !holds(&k[*p], op, v));
        if upper_fails {
            break;
        }
        if !conds.iter().all(|(p, op, v)| holds(&k[*p], op, v)) || !t.is_live(*o) || !accept(*o) {
            continue;
        }
        if skipped < skip {
            skipped += 1;
            continue;
        }
        out.push(*o);
        if out.len() as u64 >= take {
            break;
        }
    }
    Ok(out)
}
