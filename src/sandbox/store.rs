//! The sandbox "database": per-row metadata only (never materialised rows) plus an append-only
//! change log per entity set, with the org-wide version counter behind `versionnumber`.
//!
//! Rows that were never touched are implicit: row `o` of a set starts at version
//! `base + o + 1`, revision 0, live. Only inserted, updated, deleted or poisoned rows get an
//! entry in a small hash map, so 10 M rows cost a few bytes of memory, not gigabytes. Paging
//! jumps straight to an ordinal; deltas binary-search the change log by version.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use serde::Serialize;

use super::entities::{ALL, Set};
use super::json;
use super::options::Tenant;
use super::rng::{SeqRng, mix};

/// 2024-01-01T00:00:00Z: `modifiedon` of a row is this plus its version in seconds (a logical
/// clock, so output is deterministic and `modifiedon` order is version order).
pub const EPOCH: i64 = 1_704_067_200;
/// Initial rows were created over the five years before [`EPOCH`], in key order.
const HISTORY_SECS: i64 = 5 * 365 * 86_400;

const DELETED: u8 = 1;
const POISONED: u8 = 2;
const KEY_BROKEN: u8 = 4;

/// Metadata of one row version, packed into 16 bytes (one entry per changed row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowState {
    pub version: u64,
    /// Version at which the row was inserted (saturating at `u32::MAX`); 0 for rows of the
    /// initial load.
    created_version: u32,
    /// Bumped (wrapping) by every update; content hashes include it.
    pub revision: u16,
    flags: u8,
}

impl RowState {
    pub fn deleted(&self) -> bool {
        self.flags & DELETED != 0
    }
    pub fn poisoned(&self) -> bool {
        self.flags & POISONED != 0
    }
    /// The row's primary key is served unreadable (an object where a GUID belongs).
    pub fn key_broken(&self) -> bool {
        self.flags & KEY_BROKEN != 0
    }
}

/// What a change-log entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Insert,
    Update,
    Delete,
}

/// One change: its version, and the row ordinal with the kind in the low two bits.
#[derive(Debug, Clone, Copy)]
struct LogEntry {
    version: u64,
    packed: u64,
}

impl LogEntry {
    fn new(version: u64, ordinal: u64, kind: ChangeKind) -> Self {
        let k = match kind {
            ChangeKind::Insert => 0,
            ChangeKind::Update => 1,
            ChangeKind::Delete => 2,
        };
        Self {
            version,
            packed: ordinal << 2 | k,
        }
    }

    fn ordinal(&self) -> u64 {
        self.packed >> 2
    }

    fn kind(&self) -> ChangeKind {
        match self.packed & 3 {
            0 => ChangeKind::Insert,
            1 => ChangeKind::Update,
            _ => ChangeKind::Delete,
        }
    }
}

/// A live row as the renderer needs it (copied out of the lock).
#[derive(Debug, Clone, Copy)]
pub struct RowRef {
    pub ordinal: u64,
    pub state: RowState,
    pub created_secs: i64,
}

impl RowRef {
    pub fn modified_secs(&self) -> i64 {
        EPOCH + self.state.version as i64
    }
}

/// One item of a delta page.
#[derive(Debug, Clone, Copy)]
pub enum DeltaItem {
    Row(RowRef),
    Deleted(u64),
}

/// Where a delta read continues: new/updated rows first, then deletions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaPhase {
    Upserts,
    Deletes,
}

/// Multiplicative hasher for ordinal keys (SipHash would dominate page scans).
#[derive(Default, Clone, Copy)]
struct OrdHasher(u64);

impl Hasher for OrdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Overrides = HashMap<u64, RowState, BuildHasherDefault<OrdHasher>>;

/// Rows and change log of one entity set.
#[derive(Debug)]
pub struct Table {
    set: Set,
    initial: u64,
    base_version: u64,
    next_ordinal: u64,
    overrides: Overrides,
    log: Vec<LogEntry>,
    live: u64,
    poison_cursor: u64,
}

impl Table {
    fn new(set: Set, initial: u64, base_version: u64) -> Self {
        Self {
            set,
            initial,
            base_version,
            next_ordinal: initial,
            overrides: Overrides::default(),
            log: Vec::new(),
            live: initial,
            poison_cursor: 0,
        }
    }

    /// State of row `ordinal` (deleted rows included), `None` past the last ordinal.
    #[inline]
    pub fn state(&self, ordinal: u64) -> Option<RowState> {
        if ordinal >= self.next_ordinal {
            return None;
        }
        if !self.overrides.is_empty()
            && let Some(s) = self.overrides.get(&ordinal)
        {
            return Some(*s);
        }
        Some(self.initial_state(ordinal))
    }

    /// State of an untouched row of the initial load.
    #[inline]
    fn initial_state(&self, ordinal: u64) -> RowState {
        RowState {
            version: self.base_version + ordinal + 1,
            created_version: 0,
            revision: 0,
            flags: 0,
        }
    }

    #[inline]
    fn row_ref(&self, ordinal: u64, state: RowState) -> RowRef {
        let created_secs = if state.created_version == 0 {
            EPOCH - HISTORY_SECS
                + (ordinal as i128 * HISTORY_SECS as i128 / self.initial.max(1) as i128) as i64
        } else {
            EPOCH + state.created_version as i64
        };
        RowRef {
            ordinal,
            state,
            created_secs,
        }
    }

    /// The live row `ordinal`, if any.
    pub fn live_row(&self, ordinal: u64) -> Option<RowRef> {
        let s = self.state(ordinal)?;
        (!s.deleted()).then(|| self.row_ref(ordinal, s))
    }

    /// Live rows passing `keep`, in key order from ordinal `from`, at most `limit`; the flag
    /// says whether another matching row follows.
    pub fn scan(
        &self,
        from: u64,
        limit: usize,
        keep: impl Fn(&RowRef) -> bool,
    ) -> (Vec<RowRef>, bool) {
        let mut out = Vec::with_capacity(limit.min(5000));
        let mut o = from;
        while o < self.next_ordinal {
            if let Some(r) = self.live_row(o)
                && keep(&r)
            {
                if out.len() == limit {
                    return (out, true);
                }
                out.push(r);
            }
            o += 1;
        }
        (out, false)
    }

    /// Live rows passing `keep` in version (= `modifiedon`) order, after version `after`.
    pub fn scan_by_version(
        &self,
        after: u64,
        limit: usize,
        keep: impl Fn(&RowRef) -> bool,
    ) -> (Vec<RowRef>, bool) {
        let mut out = Vec::with_capacity(limit.min(5000));
        // Untouched initial rows come first: their versions precede every logged change.
        let mut o = after.saturating_sub(self.base_version);
        while o < self.initial {
            if !self.overrides.contains_key(&o) {
                let r = self.row_ref(o, self.initial_state(o));
                if keep(&r) {
                    if out.len() == limit {
                        return (out, true);
                    }
                    out.push(r);
                }
            }
            o += 1;
        }
        let start = self.log.partition_point(|e| e.version <= after);
        for e in &self.log[start..] {
            if e.kind() == ChangeKind::Delete {
                continue;
            }
            let Some(s) = self.state(e.ordinal()) else {
                continue;
            };
            if s.version != e.version || s.deleted() {
                continue;
            }
            let r = self.row_ref(e.ordinal(), s);
            if keep(&r) {
                if out.len() == limit {
                    return (out, true);
                }
                out.push(r);
            }
        }
        (out, false)
    }

    /// Index of the first change-log entry after version `since`.
    pub fn log_start(&self, since: u64) -> usize {
        self.log.partition_point(|e| e.version <= since)
    }

    /// One page of changes in `(since, upto]`: current content of inserted/updated rows in
    /// version order, then deletions. Returns the items and where the next page continues.
    pub fn delta(
        &self,
        since: u64,
        upto: u64,
        mut phase: DeltaPhase,
        mut pos: usize,
        limit: usize,
    ) -> (Vec<DeltaItem>, Option<(DeltaPhase, usize)>) {
        let mut out = Vec::with_capacity(limit.min(5000));
        loop {
            while pos < self.log.len() && self.log[pos].version <= upto {
                let e = self.log[pos];
                let item = match self.state(e.ordinal()) {
                    Some(s) if s.version == e.version => match (phase, e.kind(), s.deleted()) {
                        (DeltaPhase::Upserts, ChangeKind::Insert | ChangeKind::Update, false) => {
                            Some(DeltaItem::Row(self.row_ref(e.ordinal(), s)))
                        }
                        (DeltaPhase::Deletes, ChangeKind::Delete, true) => {
                            Some(DeltaItem::Deleted(e.ordinal()))
                        }
                        _ => None,
                    },
                    _ => None,
                };
                if let Some(item) = item {
                    if out.len() == limit {
                        return (out, Some((phase, pos)));
                    }
                    out.push(item);
                }
                pos += 1;
            }
            match phase {
                DeltaPhase::Upserts => {
                    phase = DeltaPhase::Deletes;
                    pos = self.log_start(since);
                }
                DeltaPhase::Deletes => return (out, None),
            }
        }
    }

    /// Live rows.
    pub fn live(&self) -> u64 {
        self.live
    }

    /// Every ordinal that may hold a row (`0..end`).
    pub fn end(&self) -> u64 {
        self.next_ordinal
    }

    fn write(&mut self, ordinal: u64, state: RowState, kind: ChangeKind) {
        self.overrides.insert(ordinal, state);
        self.log.push(LogEntry::new(state.version, ordinal, kind));
    }

    /// Updates live row `o` at `version`: new revision, poison cleared.
    fn update(&mut self, o: u64, version: u64) {
        if let Some(old) = self.state(o) {
            let state = RowState {
                version,
                revision: old.revision.wrapping_add(1),
                flags: 0,
                ..old
            };
            self.write(o, state, ChangeKind::Update);
        }
    }

    /// Deletes live row `o` at `version`.
    fn delete(&mut self, o: u64, version: u64) {
        if let Some(old) = self.state(o) {
            let state = RowState {
                version,
                flags: DELETED,
                ..old
            };
            self.write(o, state, ChangeKind::Delete);
            self.live -= 1;
        }
    }

    /// Applies `apply` to up to `k` distinct live rows not changed since version `since`
    /// (random picks, deterministic given `rng`); returns how many it changed. Changed rows
    /// get a version above `since`, so no row is picked twice and no bookkeeping set is needed.
    fn change_random(
        &mut self,
        rng: &mut SeqRng,
        k: u64,
        since: u64,
        protect: u64,
        version: &mut u64,
        apply: fn(&mut Table, u64, u64),
    ) -> u64 {
        let ok = |t: &Table, o: u64| {
            o != protect
                && t.state(o)
                    .is_some_and(|s| !s.deleted() && s.version <= since)
        };
        let mut done = 0;
        let mut attempts = 0;
        while done < k && attempts < 20 * k + 20 {
            attempts += 1;
            let o = rng.below(self.next_ordinal);
            if ok(self, o) {
                *version += 1;
                apply(self, o, *version);
                done += 1;
            }
        }
        if done < k {
            // Sparse table: sweep from a random start instead of sampling blindly.
            let start = rng.below(self.next_ordinal);
            for i in 0..self.next_ordinal {
                if done >= k {
                    break;
                }
                let o = (start + i) % self.next_ordinal;
                if ok(self, o) {
                    *version += 1;
                    apply(self, o, *version);
                    done += 1;
                }
            }
        }
        done
    }
}

/// Changes made to one entity set by one [`Org::mutate`] round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SetChanges {
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
}

/// What one mutation round did, per entity set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MutationSummary {
    /// 1 for the first round.
    pub round: u64,
    /// The org version after the round.
    pub version: u64,
    pub entity_sets: BTreeMap<String, SetChanges>,
}

/// The whole organisation: all tables and the org-wide version counter.
#[derive(Debug)]
pub struct Org {
    seed: u64,
    /// One table per set; a set the tenant does not have keeps an empty, never-changing table.
    tables: Vec<Table>,
    /// Which sets the tenant has (by `Set::index`).
    present: [bool; 9],
    /// Highest version issued so far.
    version: u64,
    /// Delta tokens below this version are expired.
    min_token_version: u64,
    /// The HTTP status an expired delta token is refused with: the message is documented,
    /// the status is not (400 is what is commonly seen).
    expired_status: u16,
    round: u64,
}

impl Org {
    /// The initial load of a standard org: `scale` accounts and the derived sizes of the
    /// other sets.
    #[cfg(test)]
    pub fn new(scale: u64, seed: u64) -> Self {
        Self::for_tenant(scale, seed, Tenant::Standard)
    }

    /// The initial load of `tenant`'s org: the sets it has, sized from `scale`.
    pub fn for_tenant(scale: u64, seed: u64, tenant: Tenant) -> Self {
        let mut base = 0u64;
        let mut tables = Vec::with_capacity(ALL.len());
        let present = ALL.map(|s| s.in_tenant(tenant));
        for set in ALL {
            let n = Self::initial_rows(set, scale, tenant);
            tables.push(Table::new(set, n, base));
            base += n;
        }
        Self {
            seed,
            tables,
            present,
            version: base,
            min_token_version: 0,
            expired_status: 400,
            round: 0,
        }
    }

    /// Rows `set` starts with in `tenant` (none when the tenant lacks the table).
    pub fn initial_rows(set: Set, scale: u64, tenant: Tenant) -> u64 {
        if set.in_tenant(tenant) {
            set.initial_rows(scale)
        } else {
            0
        }
    }

    pub fn table(&self, set: Set) -> &Table {
        &self.tables[set.index()]
    }

    /// Whether the tenant has `set`.
    #[cfg(test)]
    pub fn has(&self, set: Set) -> bool {
        self.present[set.index()]
    }

    /// The current org version (the version the next change will exceed).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Whether a delta token minted at `version` may still be used.
    pub fn token_valid(&self, version: u64) -> bool {
        version >= self.min_token_version && version <= self.version
    }

    /// Every delta token issued so far becomes expired. The version ticks once so tokens
    /// minted afterwards are distinguishable from the expired ones.
    pub fn expire_delta_tokens(&mut self) {
        self.version += 1;
        self.min_token_version = self.version;
    }

    /// The status an expired delta token is refused with from now on.
    pub fn set_expired_status(&mut self, status: u16) {
        self.expired_status = status;
    }

    pub fn expired_status(&self) -> u16 {
        self.expired_status
    }

    /// One deterministic round of inserts, updates and deletes (~2% of live rows each, at
    /// least one each) on every set. Poisoned rows are always among the updates, so a round
    /// heals them.
    pub fn mutate(&mut self) -> MutationSummary {
        self.round += 1;
        let mut summary = MutationSummary {
            round: self.round,
            ..Default::default()
        };
        for set in ALL.into_iter().filter(|s| self.present[s.index()]) {
            let mut rng = SeqRng::new(self.seed ^ mix(self.round) ^ mix(0x5E7 + set.code() as u64));
            let since = self.version;
            let mut version = since;
            let t = &mut self.tables[set.index()];
            let k = (t.live * 2 / 100).max(1);
            let mut changes = SetChanges::default();
            // The application user (system user 0) is never deleted: WhoAmI points at it.
            let protect = if set == Set::SystemUsers { 0 } else { u64::MAX };

            let mut poisoned: Vec<u64> = t
                .overrides
                .iter()
                .filter(|(_, s)| (s.poisoned() || s.key_broken()) && !s.deleted())
                .map(|(o, _)| *o)
                .collect();
            poisoned.sort_unstable();
            for o in poisoned {
                version += 1;
                t.update(o, version);
                changes.updated += 1;
            }
            changes.updated +=
                t.change_random(&mut rng, k, since, u64::MAX, &mut version, Table::update);
            for _ in 0..k {
                version += 1;
                let ordinal = t.next_ordinal;
                t.next_ordinal += 1;
                t.live += 1;
                let state = RowState {
                    version,
                    created_version: u32::try_from(version).unwrap_or(u32::MAX),
                    revision: 0,
                    flags: 0,
                };
                t.write(ordinal, state, ChangeKind::Insert);
                changes.inserted += 1;
            }
            changes.deleted =
                t.change_random(&mut rng, k, since, protect, &mut version, Table::delete);
            self.version = version;
            summary.entity_sets.insert(set.name().to_string(), changes);
        }
        summary.version = self.version;
        summary
    }

    /// The next `count` live, not yet poisoned rows of `set` (in key order, continuing where
    /// the previous call stopped) start serving badly typed values. Each counts as an update
    /// (new version), so deltas carry it. Returns how many rows were poisoned.
    pub fn poison(&mut self, set: Set, count: usize) -> usize {
        self.mark(set, count, POISONED).len()
    }

    /// The next `count` live rows of `set` (as [`Org::poison`] picks them) start serving their
    /// primary key unreadable, until the next mutation round repairs them. Returns their
    /// ordinals.
    pub fn break_keys(&mut self, set: Set, count: usize) -> Vec<u64> {
        self.mark(set, count, KEY_BROKEN)
    }

    fn mark(&mut self, set: Set, count: usize, flag: u8) -> Vec<u64> {
        let mut version = self.version;
        let t = &mut self.tables[set.index()];
        let mut done = 0;
        let mut marked = Vec::new();
        let mut o = t.poison_cursor;
        let mut scanned = 0;
        while done < count && scanned < t.next_ordinal {
            if o >= t.next_ordinal {
                o = 0;
            }
            if let Some(s) = t.state(o)
                && !s.deleted()
                && !s.poisoned()
                && !s.key_broken()
            {
                version += 1;
                let state = RowState {
                    version,
                    flags: s.flags | flag,
                    ..s
                };
                t.write(o, state, ChangeKind::Update);
                marked.push(o);
                done += 1;
            }
            o += 1;
            scanned += 1;
        }
        t.poison_cursor = o;
        self.version = version;
        marked
    }

    /// (GUID, versionnumber) of every live row of `set`, in key order.
    pub fn live_rows(&self, set: Set) -> Vec<(String, i64)> {
        let t = self.table(set);
        let mut out = Vec::with_capacity(t.live as usize);
        for o in 0..t.next_ordinal {
            if let Some(r) = t.live_row(o) {
                out.push((json::guid_string(set.code(), o), r.state.version as i64));
            }
        }
        out
    }

    /// Live rows per entity set the tenant has.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.tables
            .iter()
            .filter(|t| self.present[t.set.index()])
            .map(|t| (t.set.name().to_string(), t.live))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_rows_are_implicit_and_versions_global() {
        let org = Org::new(100, 1);
        let a = org.table(Set::Accounts);
        assert_eq!(a.live(), 100);
        assert_eq!(a.state(0).unwrap().version, 1);
        assert_eq!(org.table(Set::Contacts).state(0).unwrap().version, 101);
        assert!(a.state(100).is_none());
        let (rows, more) = a.scan(10, 5, |_| true);
        assert_eq!(
            rows.iter().map(|r| r.ordinal).collect::<Vec<_>>(),
            [10, 11, 12, 13, 14]
        );
        assert!(more);
        let (rows, more) = a.scan(95, 5, |_| true);
        assert_eq!(rows.len(), 5);
        assert!(!more);
    }

    #[test]
    fn mutate_is_deterministic_and_logged() {
        let mut a = Org::new(1000, 7);
        let mut b = Org::new(1000, 7);
        let v0 = a.version();
        let sa = a.mutate();
        let sb = b.mutate();
        assert_eq!(sa, sb);
        let acc = sa.entity_sets["accounts"];
        assert_eq!(
            acc,
            SetChanges {
                inserted: 20,
                updated: 20,
                deleted: 20
            }
        );
        assert_eq!(a.counts()["accounts"], 1000);
        assert_eq!(a.live_rows(Set::Accounts), b.live_rows(Set::Accounts));
        let t = a.table(Set::Accounts);
        let (items, next) = t.delta(
            v0,
            a.version(),
            DeltaPhase::Upserts,
            t.log_start(v0),
            10_000,
        );
        assert!(next.is_none());
        let rows = items
            .iter()
            .filter(|i| matches!(i, DeltaItem::Row(_)))
            .count();
        let dels = items
            .iter()
            .filter(|i| matches!(i, DeltaItem::Deleted(_)))
            .count();
        assert_eq!((rows, dels), (40, 20));
        // Deletions come after every upsert.
        let first_del = items
            .iter()
            .position(|i| matches!(i, DeltaItem::Deleted(_)))
            .unwrap();
        assert!(
            items[first_del..]
                .iter()
                .all(|i| matches!(i, DeltaItem::Deleted(_)))
        );
        // Paged delta gives the same items.
        let mut paged = Vec::new();
        let mut cur = Some((DeltaPhase::Upserts, t.log_start(v0)));
        while let Some((ph, pos)) = cur {
            let (it, next) = t.delta(v0, a.version(), ph, pos, 7);
            paged.extend(it);
            cur = next;
        }
        assert_eq!(paged.len(), items.len());
    }

    #[test]
    fn poison_heals_on_mutate_and_tokens_expire() {
        let mut org = Org::new(50, 3);
        assert_eq!(org.poison(Set::Accounts, 3), 3);
        let t = org.table(Set::Accounts);
        assert!(t.state(0).unwrap().poisoned());
        assert!(t.state(2).unwrap().poisoned());
        assert!(!t.state(3).unwrap().poisoned());
        org.mutate();
        assert!(!org.table(Set::Accounts).state(0).unwrap().poisoned());
        let v = org.version();
        assert!(org.token_valid(v));
        org.expire_delta_tokens();
        assert!(!org.token_valid(v));
        assert!(org.token_valid(org.version()));
    }

    #[test]
    fn a_lean_org_has_no_sales_tables_and_never_changes_them() {
        let mut org = Org::for_tenant(100, 3, Tenant::Lean);
        assert!(!org.has(Set::Leads) && org.has(Set::Accounts));
        assert_eq!(org.table(Set::Leads).live(), 0);
        assert!(!org.counts().contains_key("leads"));
        assert_eq!(org.counts()["accounts"], 100);
        let summary = org.mutate();
        assert!(!summary.entity_sets.contains_key("quotes"));
        assert_eq!(org.table(Set::Quotes).end(), 0);
        assert_eq!(org.poison(Set::Invoices, 3), 0);
    }

    #[test]
    fn version_order_scan() {
        let mut org = Org::new(20, 3);
        org.mutate();
        let t = org.table(Set::Accounts);
        let (rows, _) = t.scan_by_version(0, 1000, |_| true);
        assert_eq!(rows.len() as u64, t.live());
        assert!(
            rows.windows(2)
                .all(|w| w[0].state.version < w[1].state.version)
        );
        let mid = rows[5].state.version;
        let (after, _) = t.scan_by_version(mid, 1000, |_| true);
        assert_eq!(after.len(), rows.len() - 6);
    }
}
