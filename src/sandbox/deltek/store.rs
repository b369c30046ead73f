//! Row metadata of the Deltek fake: no stored rows, only what changed. A table has `initial`
//! rows (ordinals `0..initial`) whose `ModDate` grows with the ordinal, so the unchanged rows
//! matching `ModDate >= x` are one ordinal range; changed and inserted rows keep a revision and
//! their own `ModDate`; deleted ordinals are a set. A filtered page is then a range minus a few
//! exclusions followed by the few changed rows, found without scanning the table.

use std::collections::{BTreeMap, BTreeSet};

use super::super::rng::SeqRng;

/// First `ModDate` of generated rows: 2019-01-01T00:00:00Z, in ms.
pub const BASE_START_MS: i64 = 1_546_300_800_000;
/// Generated rows' `ModDate`s spread over seven years before this: 2026-01-01T00:00:00Z.
pub const MUTATION_START_MS: i64 = 1_767_225_600_000;

/// One table's changes.
#[derive(Debug, Clone)]
pub struct Table {
    pub initial: u64,
    /// Next ordinal handed to an insert.
    pub next: u64,
    /// Changed or inserted live rows: ordinal → (revision, ModDate ms UTC).
    pub changed: BTreeMap<u64, (u32, i64)>,
    pub deleted: BTreeSet<u64>,
    /// Rows serving badly typed values until the next mutation round.
    pub poisoned: BTreeSet<u64>,
}

/// What one mutation round did to one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Changes {
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
}

/// Rows selected by a request, in the order they are served: `range` minus `excl`, then `post`.
#[derive(Debug, Default)]
pub struct Selection {
    pub range: (u64, u64),
    /// Sorted ordinals inside `range` that are not served.
    pub excl: Vec<u64>,
    /// Changed rows, by (ModDate, ordinal).
    pub post: Vec<u64>,
}

impl Selection {
    #[cfg(test)]
    pub fn len(&self) -> u64 {
        (self.range.1 - self.range.0) - self.excl.len() as u64 + self.post.len() as u64
    }

    /// The ordinals at positions `skip..skip+take`.
    pub fn slice(&self, skip: u64, take: u64) -> Vec<u64> {
        let mut out = Vec::with_capacity(take.min(10_000) as usize);
        let in_range = (self.range.1 - self.range.0) - self.excl.len() as u64;
        let mut k = skip;
        if k < in_range {
            // The k-th ordinal of range minus excl.
            let mut r = self.range.0 + k;
            let mut ei = 0;
            while ei < self.excl.len() && self.excl[ei] <= r {
                r += 1;
                ei += 1;
            }
            while (out.len() as u64) < take && r < self.range.1 {
                if ei < self.excl.len() && self.excl[ei] == r {
                    ei += 1;
                } else {
                    out.push(r);
                    k += 1;
                }
                r += 1;
            }
        }
        let left = take - out.len() as u64;
        let start = k.saturating_sub(in_range) as usize;
        out.extend(self.post.iter().skip(start).take(left as usize));
        out
    }
}

impl Table {
    pub fn new(initial: u64) -> Self {
        Self {
            initial,
            next: initial,
            changed: BTreeMap::new(),
            deleted: BTreeSet::new(),
            poisoned: BTreeSet::new(),
        }
    }

    /// Spacing of generated rows' ModDates.
    fn step_ms(&self) -> i64 {
        ((MUTATION_START_MS - BASE_START_MS) / self.initial.max(1) as i64).max(1)
    }

    /// ModDate of an unchanged generated row.
    pub fn base_mod_ms(&self, ordinal: u64) -> i64 {
        BASE_START_MS + ordinal as i64 * self.step_ms()
    }

    /// (revision, ModDate ms) of a live row.
    pub fn meta(&self, ordinal: u64) -> (u32, i64) {
        self.changed
            .get(&ordinal)
            .copied()
            .unwrap_or((0, self.base_mod_ms(ordinal)))
    }

    pub fn is_live(&self, ordinal: u64) -> bool {
        !self.deleted.contains(&ordinal)
            && (ordinal < self.initial || self.changed.contains_key(&ordinal))
    }

    pub fn live_count(&self) -> u64 {
        self.initial - self.deleted.iter().filter(|o| **o < self.initial).count() as u64
            + self.changed.keys().filter(|o| **o >= self.initial).count() as u64
    }

    /// Every live ordinal, ascending.
    pub fn live(&self) -> Vec<u64> {
        let mut v: Vec<u64> = (0..self.initial)
            .filter(|o| !self.deleted.contains(o))
            .collect();
        v.extend(self.changed.keys().filter(|o| **o >= self.initial));
        v
    }

    /// The live rows with `ge <= ModDate < lt` (ms UTC).
    pub fn select(&self, ge: Option<i64>, lt: Option<i64>) -> Selection {
        let step = self.step_ms();
        let first_at = |t: i64| -> u64 {
            if t <= BASE_START_MS {
                0
            } else {
                (((t - BASE_START_MS) + step - 1) / step).min(self.initial as i64) as u64
            }
        };
        let a = ge.map_or(0, first_at);
        let b = lt.map_or(self.initial, first_at).max(a);
        let excl: Vec<u64> = self
            .deleted
            .range(a..b)
            .chain(self.changed.range(a..b).map(|(o, _)| o))
            .copied()
            .collect::<BTreeSet<u64>>()
            .into_iter()
            .collect();
        let mut post: Vec<(i64, u64)> = self
            .changed
            .iter()
            .filter(|(o, (_, m))| {
                !self.deleted.contains(o) && ge.is_none_or(|g| *m >= g) && lt.is_none_or(|l| *m < l)
            })
            .map(|(o, (_, m))| (*m, *o))
            .collect();
        post.sort_unstable();
        Selection {
            range: (a, b),
            excl,
            post: post.into_iter().map(|(_, o)| o).collect(),
        }
    }

    /// One round: inserts, updates (ModDate moves to `at_ms` + i) and deletes of live rows.
    pub fn mutate(&mut self, rng: &mut SeqRng, at_ms: i64) -> Changes {
        let live = self.live_count().max(1);
        let (ins, upd, del) = ((live / 100).max(1), (live / 50).max(1), (live / 200).max(1));
        let mut clock = at_ms;
        let mut tick = || {
            clock += 1;
            clock
        };
        let mut c = Changes::default();
        // Poisoned rows are always repaired by the next round.
        let poisoned = std::mem::take(&mut self.poisoned);
        let mut touched = BTreeSet::new();
        let repair: Vec<u64> = poisoned.into_iter().filter(|o| self.is_live(*o)).collect();
        for o in repair {
            let rev = self.meta(o).0 + 1;
            self.changed.insert(o, (rev, tick()));
            touched.insert(o);
            c.updated += 1;
        }
        let target = c.updated + upd;
        let mut tries = 0;
        while c.updated < target && tries < upd * 20 {
            tries += 1;
            let o = rng.below(self.next);
            if !self.is_live(o) || touched.contains(&o) {
                continue;
            }
            let rev = self.meta(o).0 + 1;
            self.changed.insert(o, (rev, tick()));
            touched.insert(o);
            c.updated += 1;
        }
        let mut tries = 0;
        while c.deleted < del && tries < del * 20 {
            tries += 1;
            let o = rng.below(self.next);
            if !self.is_live(o) || touched.contains(&o) {
                continue;
            }
            self.changed.remove(&o);
            self.deleted.insert(o);
            touched.insert(o);
            c.deleted += 1;
        }
        for _ in 0..ins {
            let o = self.next;
            self.next += 1;
            self.changed.insert(o, (1, tick()));
            c.inserted += 1;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_skips_changed_and_deleted_and_appends_changes() {
        let mut t = Table::new(100);
        let mut rng = SeqRng::new(1);
        let c = t.mutate(&mut rng, MUTATION_START_MS);
        assert_eq!((c.inserted, c.updated, c.deleted), (1, 2, 1));
        let all = t.select(None, None);
        assert_eq!(all.len(), t.live_count());
        let mut served = all.slice(0, 7);
        for skip in (7..all.len()).step_by(7) {
            served.extend(all.slice(skip, 7));
        }
        let mut sorted = served.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, t.live());
        // Only the changes are newer than the mutation start.
        let since = t.select(Some(MUTATION_START_MS), None);
        assert_eq!(since.len(), 3);
        // A window in the generated range is a plain range.
        let w = t.select(Some(t.base_mod_ms(10)), Some(t.base_mod_ms(20)));
        assert!(w.len() <= 10 && w.len() >= 7);
    }
}
