//! The Business Central sandbox "database": per-row metadata only, never materialised rows.
//!
//! Row `o` of a set that was never touched is implicit: live, revision 0, modified at
//! [`initial_modified`] (strictly increasing in `o`, all before [`EPOCH_MS`]). Inserted,
//! updated, deleted or poisoned rows get a [`Meta`] entry, and live changed rows are also
//! indexed by (modified, ordinal), so `$filter`/`$orderby` on `lastModifiedDateTime` never scan
//! untouched rows: their modified times are a monotone function of the ordinal, so a time range
//! is an ordinal range.
//!
//! Lines (`salesOrderLines`, `salesInvoiceLines`) live in slots `document * LINE_SLOTS + k`:
//! a line exists while its document does and `k` is below the document's initial line count
//! (3–5), or it was inserted later, and it was not deleted.
//!
//! FlowFields (customer `balanceDue`, vendor `balance`, item `inventory`, account `netChange`)
//! move when documents post, without the record changing: [`Table::flow`] holds each row's
//! posted delta (hundredths) on top of its generated value, and updating it touches neither the
//! row's [`Meta`] nor its `lastModifiedDateTime` or etag.
//!
//! Writes through the API (writes.rs) use the same metadata: a write is an insert or an update
//! of a row's `Meta`, exactly what a mutation round does, plus the values sent ([`Store::writes`]),
//! stamped by [`Store::write_clock`].

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::set::{ALL, LINE_SLOTS, Set};
use crate::sandbox::rng::{SeqRng, mix, row_key};

/// 2025-01-01T00:00:00Z in ms: changed rows are modified after it, initial rows before it.
pub const EPOCH_MS: i64 = 1_735_689_600_000;
/// Initial rows were last modified over the five years before [`EPOCH_MS`].
const HISTORY_MS: i64 = 5 * 365 * 86_400_000;
/// Mutation round `r` happens at `EPOCH_MS + r * ROUND_MS` (a logical clock).
const ROUND_MS: i64 = 3_600_000;

/// The companies of the sandbox environment: (name, display name).
pub const COMPANIES: [(&str, &str); 2] = [
    ("CRONUS USA, Inc.", "CRONUS USA, Inc."),
    ("CRONUS Canada, Inc.", "CRONUS Canada, Inc."),
];

/// Metadata of a changed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub modified_ms: i64,
    pub revision: u32,
    pub deleted: bool,
    /// Inserted after the initial load (for lines: a slot beyond the initial count).
    pub inserted: bool,
    /// Serves badly typed values until the next update.
    pub poisoned: bool,
}

/// One entity set of one company.
#[derive(Debug, Default)]
pub struct Table {
    /// Rows (line sets: documents' slots are derived from the header table) of the initial load.
    pub initial: u64,
    /// Next ordinal for an insert.
    pub next: u64,
    pub changed: BTreeMap<u64, Meta>,
    /// Live changed rows by (modified, ordinal).
    pub by_modified: BTreeSet<(i64, u64)>,
    /// Posted deltas of the row's FlowField, in hundredths (see the module doc).
    pub flow: BTreeMap<u64, i64>,
}

/// A row as rendered: ordinal, revision, modified time, poisoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub ordinal: u64,
    pub revision: u32,
    pub modified_ms: i64,
    pub poisoned: bool,
}

/// Modified time of an untouched row `o` of a table of `initial` rows.
pub fn initial_modified(o: u64, initial: u64) -> i64 {
    let step = (HISTORY_MS / initial.max(1) as i64).max(1);
    EPOCH_MS - (initial as i64 - o as i64) * step
}

/// First ordinal in `0..initial` whose initial modified time is `>= t`.
pub fn first_at_or_after(t: i64, initial: u64) -> u64 {
    let (mut lo, mut hi) = (0u64, initial);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if initial_modified(mid, initial) < t {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Lines a document starts with (3–5).
pub fn initial_lines(seed: u64, header_code: u32, doc: u64) -> u64 {
    3 + mix(row_key(seed, header_code, doc) ^ 0x11AE) % 3
}

/// Whether rows of `set` carry a FlowField (schema.rs `COMPUTED`).
pub fn flow_set(set: Set) -> bool {
    super::schema::COMPUTED.iter().any(|(s, _)| *s == set)
}

/// Counts of one mutation round, per entity set name (summed over companies).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Changes {
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    /// Rows whose FlowField (`balanceDue`, `balance`, `inventory`, `netChange`) moved while
    /// the row itself, its `lastModifiedDateTime` and its etag stayed as they were.
    pub recomputed: u64,
}

/// Every company's tables.
#[derive(Debug)]
pub struct Store {
    pub seed: u64,
    /// `[company][set index]`.
    pub tables: Vec<Vec<Table>>,
    round: i64,
    rng: SeqRng,
    /// Values saved through the API (writes.rs), their indexes and the write log.
    pub writes: super::saved::Saved,
    /// Writes since the start: API writes are stamped in the second half of the current round's
    /// hour, so they sort after this round's mutations and before the next round's.
    write_tick: i64,
}

impl Store {
    pub fn new(scale: u64, seed: u64) -> Store {
        let tables = COMPANIES
            .iter()
            .map(|_| {
                ALL.iter()
                    .map(|s| {
                        let n = s.initial_rows(scale);
                        Table {
                            initial: n,
                            next: n,
                            ..Table::default()
                        }
                    })
                    .collect()
            })
            .collect();
        Store {
            seed,
            tables,
            round: 0,
            rng: SeqRng::new(seed ^ 0xBC_BC),
            writes: Default::default(),
            write_tick: 0,
        }
    }

    pub fn table(&self, company: usize, set: Set) -> &Table {
        &self.tables[company][set.index()]
    }

    /// The row at ordinal `o` when it is live.
    pub fn live(&self, company: usize, set: Set, o: u64) -> Option<Row> {
        if let Some(h) = set.header() {
            let doc = o / LINE_SLOTS;
            self.live(company, h, doc)?;
            let t = self.table(company, set);
            let meta = t.changed.get(&o);
            let initial = o % LINE_SLOTS < initial_lines(self.seed, h.code(company), doc);
            return match meta {
                Some(m) if m.deleted => None,
                Some(m) => Some(Row {
                    ordinal: o,
                    revision: m.revision,
                    modified_ms: m.modified_ms,
                    poisoned: m.poisoned,
                }),
                None if initial => Some(Row {
                    ordinal: o,
                    revision: 0,
                    modified_ms: 0,
                    poisoned: false,
                }),
                None => None,
            };
        }
        let t = self.table(company, set);
        match t.changed.get(&o) {
            Some(m) if m.deleted => None,
            Some(m) => Some(Row {
                ordinal: o,
                revision: m.revision,
                modified_ms: m.modified_ms,
                poisoned: m.poisoned,
            }),
            None if o < t.initial => Some(Row {
                ordinal: o,
                revision: 0,
                modified_ms: initial_modified(o, t.initial),
                poisoned: false,
            }),
            None => None,
        }
    }

    /// Upper bound (exclusive) of the ordinals of `set`.
    pub fn ordinal_end(&self, company: usize, set: Set) -> u64 {
        match set.header() {
            Some(h) => self.table(company, h).next * LINE_SLOTS,
            None => self.table(company, set).next,
        }
    }

    /// Every live row of a set in ordinal order.
    pub fn live_rows(&self, company: usize, set: Set) -> Vec<Row> {
        (0..self.ordinal_end(company, set))
            .filter_map(|o| self.live(company, set, o))
            .collect()
    }

    pub fn count(&self, company: usize, set: Set) -> u64 {
        if set.header().is_some() {
            return self.live_rows(company, set).len() as u64;
        }
        let t = self.table(company, set);
        let dead = t.changed.values().filter(|m| m.deleted).count() as u64;
        t.next - dead
    }

    /// The posted delta (hundredths) of row `o`'s FlowField.
    pub fn flow(&self, company: usize, set: Set, o: u64) -> i64 {
        let f = &self.tables[company][set.index()].flow;
        if f.is_empty() {
            return 0;
        }
        f.get(&o).copied().unwrap_or(0)
    }

    /// Posts `delta` (hundredths) to row `o`'s FlowField: the row is not modified.
    pub fn post_flow(&mut self, company: usize, set: Set, o: u64, delta: i64) {
        *self.tables[company][set.index()].flow.entry(o).or_default() += delta;
    }

    /// The modified time (ms) of the next API write.
    pub fn write_clock(&mut self) -> i64 {
        self.write_tick += 1;
        EPOCH_MS + self.round * ROUND_MS + ROUND_MS / 2 + self.write_tick
    }

    pub(super) fn put(&mut self, company: usize, set: Set, o: u64, meta: Meta) {
        let t = &mut self.tables[company][set.index()];
        if let Some(old) = t.changed.insert(o, meta) {
            t.by_modified.remove(&(old.modified_ms, o));
        } else if o < t.initial && set.has_modified() {
            t.by_modified.remove(&(initial_modified(o, t.initial), o));
        }
        if !meta.deleted && set.has_modified() {
            t.by_modified.insert((meta.modified_ms, o));
        }
    }

    /// Picks a live row of `set` at random (a few tries), for updates and deletes.
    fn pick_live(&mut self, company: usize, set: Set) -> Option<Row> {
        let end = self.ordinal_end(company, set);
        for _ in 0..16 {
            let o = self.rng.below(end.max(1));
            if let Some(r) = self.live(company, set, o) {
                return Some(r);
            }
        }
        None
    }

    /// One round of inserts, updates and deletes in every company and set. Posted G/L entries
    /// are only ever inserted; dimensions, payment terms and currencies only updated.
    pub fn mutate(&mut self) -> BTreeMap<String, Changes> {
        self.round += 1;
        let mut clock = EPOCH_MS + self.round * ROUND_MS;
        let mut out: BTreeMap<String, Changes> = BTreeMap::new();
        for company in 0..COMPANIES.len() {
            for set in ALL {
                // Lines: estimated from their documents (4 a document on average), so a
                // round never scans every line slot.
                let live = match set.header() {
                    Some(h) => self.count(company, h) * 4,
                    None => self.count(company, set),
                };
                let base = (live / 50).max(1);
                let (ins, upd, del) = match set {
                    Set::GeneralLedgerEntries => (base * 2, 0, 0),
                    Set::Dimensions | Set::PaymentTerms | Set::Currencies => (0, 1, 0),
                    Set::DimensionValues | Set::Accounts => (1, 1, 0),
                    _ => (base, base, (base / 2).max(1)),
                };
                let c = out.entry(set.name().to_string()).or_default();
                for _ in 0..ins {
                    clock += 7;
                    let o = match set.header() {
                        Some(h) => {
                            let Some(doc) = self.pick_live(company, h) else {
                                continue;
                            };
                            let first = doc.ordinal * LINE_SLOTS;
                            let Some(o) = (first..first + LINE_SLOTS).find(|o| {
                                self.live(company, set, *o).is_none()
                                    && !self.table(company, set).changed.contains_key(o)
                            }) else {
                                continue;
                            };
                            o
                        }
                        None => {
                            let t = &mut self.tables[company][set.index()];
                            t.next += 1;
                            t.next - 1
                        }
                    };
                    self.put(
                        company,
                        set,
                        o,
                        Meta {
                            modified_ms: clock,
                            revision: 0,
                            deleted: false,
                            inserted: true,
                            poisoned: false,
                        },
                    );
                    c.inserted += 1;
                }
                for _ in 0..upd {
                    clock += 7;
                    let Some(r) = self.pick_live(company, set) else {
                        continue;
                    };
                    let inserted = self
                        .table(company, set)
                        .changed
                        .get(&r.ordinal)
                        .is_some_and(|m| m.inserted);
                    self.put(
                        company,
                        set,
                        r.ordinal,
                        Meta {
                            modified_ms: clock,
                            revision: r.revision + 1,
                            deleted: false,
                            inserted,
                            poisoned: false,
                        },
                    );
                    c.updated += 1;
                }
                for _ in 0..del {
                    clock += 7;
                    let Some(r) = self.pick_live(company, set) else {
                        continue;
                    };
                    self.put(
                        company,
                        set,
                        r.ordinal,
                        Meta {
                            modified_ms: clock,
                            revision: r.revision,
                            deleted: true,
                            inserted: false,
                            poisoned: false,
                        },
                    );
                    c.deleted += 1;
                }
            }
            // Documents posted by other users: FlowFields of some rows move, the rows do not.
            for set in ALL.into_iter().filter(|s| flow_set(*s)) {
                let n = (self.count(company, set) / 50).max(1);
                let c = out.entry(set.name().to_string()).or_default();
                for _ in 0..n {
                    let Some(r) = self.pick_live(company, set) else {
                        continue;
                    };
                    let h = self.rng.next_u64();
                    let delta = match set {
                        // Whole units of stock in or out.
                        Set::Items => (h % 61) as i64 * 100 - 2000,
                        _ => (h % 1_500_000) as i64 - 500_000,
                    };
                    // Never zero: every recomputed row shows a new value.
                    let delta = if delta == 0 { 100 } else { delta };
                    self.post_flow(company, set, r.ordinal, delta);
                    c.recomputed += 1;
                }
            }
            // Poisoned rows are always repaired by the next round.
            for set in ALL {
                let poisoned: Vec<(u64, Meta)> = self.tables[company][set.index()]
                    .changed
                    .iter()
                    .filter(|(_, m)| m.poisoned && !m.deleted)
                    .map(|(o, m)| (*o, *m))
                    .collect();
                for (o, m) in poisoned {
                    clock += 7;
                    self.put(
                        company,
                        set,
                        o,
                        Meta {
                            modified_ms: clock,
                            revision: m.revision + 1,
                            poisoned: false,
                            ..m
                        },
                    );
                }
            }
        }
        out
    }

    /// The first `count` live rows of `set` in company 0 serve bad values until the next round.
    pub fn poison(&mut self, set: Set, count: usize) {
        let rows: Vec<Row> = (0..self.ordinal_end(0, set))
            .filter_map(|o| self.live(0, set, o))
            .take(count)
            .collect();
        for r in rows {
            let old = self.table(0, set).changed.get(&r.ordinal).copied();
            self.put(
                0,
                set,
                r.ordinal,
                Meta {
                    modified_ms: r.modified_ms,
                    revision: r.revision,
                    deleted: false,
                    inserted: old.is_some_and(|m| m.inserted),
                    poisoned: true,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_times_are_monotone_and_searchable() {
        let n = 1000;
        for o in 1..n {
            assert!(initial_modified(o, n) > initial_modified(o - 1, n));
        }
        assert!(initial_modified(n - 1, n) < EPOCH_MS);
        let t = initial_modified(400, n);
        assert_eq!(first_at_or_after(t, n), 400);
        assert_eq!(first_at_or_after(t + 1, n), 401);
        assert_eq!(first_at_or_after(EPOCH_MS, n), n);
    }

    #[test]
    fn mutations_change_counts_and_lines_follow_documents() {
        let mut s = Store::new(2000, 7);
        let before = s.count(0, Set::Customers);
        let lines = s.count(0, Set::SalesOrderLines);
        assert!(lines >= 3 * s.count(0, Set::SalesOrders));
        let ch = s.mutate();
        let c = &ch["customers"];
        assert_eq!(
            s.count(0, Set::Customers) + s.count(1, Set::Customers),
            2 * before + c.inserted - c.deleted
        );
        assert!(ch["generalLedgerEntries"].deleted == 0);
        // Lines of a deleted order are gone.
        let dead: Vec<u64> = s
            .table(0, Set::SalesOrders)
            .changed
            .iter()
            .filter(|(_, m)| m.deleted)
            .map(|(o, _)| *o)
            .collect();
        for d in dead {
            assert!(s.live(0, Set::SalesOrderLines, d * LINE_SLOTS).is_none());
        }
    }
}
