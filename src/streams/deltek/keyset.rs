//! Keyset paging of Vantagepoint lists: every request asks for the first page of a query that
//! resumes after the last row handed out, instead of for page N of a fixed query.
//!
//! Why: page-number paging counts rows, and the rows move while a read runs. A row saved
//! mid-read leaves its place (an incremental read ordered by `ModDate` sends it to the end), a
//! deleted row leaves a gap, and every later row shifts one place towards the front: the row
//! that crosses the page boundary is never served. For an incremental read that is a lost
//! change; for a key-set reconciliation it is a live key missing from the read, which the merge
//! then deletes. A query that resumes after a value does not count rows, so nothing shifts.
//!
//! How, with only what the API documents (shared/reference/deltek-pipedrive-looker.md §1.5):
//! `order=Column` sorts by one column and `filterHash` entries are ANDed; a lexicographic
//! "after (ModDate, key)" would need an OR whose grouping nobody documents. So the read walks
//! its order columns one at a time (`ModDate` then the key fields, or the key fields alone for a
//! key-set pass):
//! - it orders by the current column and resumes with `>=` on the last value served, skipping
//!   the rows it already handed out at exactly that value (they come first again; a row is
//!   known by all its order values, so a row saved meanwhile is handed out again, as it must be);
//! - when a whole page shares one value (a mass update stamps many rows with one `ModDate`;
//!   every ledger line of a period shares `Period`), it fixes that value with equality filters and
//!   pages the tie by the next column, down to the unique key, then resumes strictly after the
//!   tied value (`>`).
//! - a short page ends a level (the API sends no total); the reader (mod.rs) first makes sure a
//!   short first page is not a server-side cap on the page size.
//!
//! The position (which values are fixed, where the current column resumes, the rows already
//! handed out at that value) is small and serialisable, so a run checkpoints it like a page
//! number and resumes where it stopped.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A column the read is ordered by.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderCol {
    /// The name the API knows (order, filterHash).
    pub name: String,
    /// A zone-less `datetime` (`ModDate`): compared as a `datetime` filter, fixed with a
    /// one-millisecond range rather than `=`.
    pub datetime: bool,
}

/// One order column's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Level {
    /// For a fixed column, the value fixed; for the current one, where it resumes (`None`: from
    /// the start). As served (string or number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    /// The current column resumes at `after` itself (rows equal to it are served again and
    /// skipped by `seen`) rather than strictly after it.
    #[serde(default)]
    pub inclusive: bool,
    /// Rows already handed out whose value here is `after` (their identities, see [`identity`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen: Vec<String>,
}

/// Where a read stands: one level per order column reached; all but the last are fixed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub levels: Vec<Level>,
    /// The page size the server was found to serve when it serves fewer rows than asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<u32>,
}

impl Default for Position {
    fn default() -> Self {
        Self {
            levels: vec![Level::default()],
            cap: None,
        }
    }
}

/// One condition of the next request (spelled as a `filterHash` entry by the reader).
#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    pub name: String,
    pub opp: &'static str,
    pub value: String,
    pub datetime: bool,
}

/// The value of a filter as the API takes it (strings bare, numbers as text); `None` for a
/// value no filter can carry (null, object, array, bool).
fn filter_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A zone-less `datetime` as served (`YYYY-MM-DDTHH:MM:SS.mmm`).
fn parse_wall(s: &str) -> Option<chrono::NaiveDateTime> {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok()
}

/// Whether `v` can be resumed after: a scalar, and for a `datetime` column a readable one (a
/// row whose ModDate is drift, e.g. `"not a date"`, cannot mark a position).
fn usable(v: &Value, col: &OrderCol) -> bool {
    match v {
        Value::String(s) if col.datetime => parse_wall(s).is_some(),
        Value::String(_) | Value::Number(_) => true,
        _ => false,
    }
}

/// A row's identity at a boundary: all its order values. A row saved mid-read has a new
/// `ModDate`, so it is a new identity and is handed out again.
pub fn identity(values: &[Value]) -> String {
    values
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("\u{1f}")
}

/// The keyset pager: the conditions of the next request and what a served page means.
#[derive(Debug, Clone)]
pub struct Pager {
    cols: Vec<OrderCol>,
    pub pos: Position,
    done: bool,
}

impl Pager {
    /// A pager over `cols` (at least one; the full tuple must be unique: it ends with the key)
    /// starting at `pos`. Fails when `pos` does not fit the columns (a position saved by another
    /// definition of the stream).
    pub fn new(cols: Vec<OrderCol>, pos: Position) -> Result<Self, String> {
        if cols.is_empty() {
            return Err("a keyset read needs at least one order column".into());
        }
        if pos.levels.is_empty() || pos.levels.len() > cols.len() {
            return Err(format!(
                "the saved position has {} levels for {} order columns",
                pos.levels.len(),
                cols.len()
            ));
        }
        if pos.levels[..pos.levels.len() - 1]
            .iter()
            .any(|l| l.after.as_ref().and_then(filter_text).is_none())
        {
            return Err("the saved position fixes a column without a value".into());
        }
        Ok(Self {
            cols,
            pos,
            done: false,
        })
    }

    /// Whether the read is complete.
    pub fn done(&self) -> bool {
        self.done
    }

    /// The column the next request is ordered by.
    pub fn order(&self) -> &str {
        &self.cols[self.pos.levels.len() - 1].name
    }

    /// The conditions of the next request: the fixed columns by equality (a `datetime` by a
    /// one-millisecond range, so finer stored precision still matches), the current column
    /// from where it resumes.
    pub fn conditions(&self) -> Vec<Cond> {
        let current = self.pos.levels.len() - 1;
        let mut out = Vec::new();
        for (i, (level, col)) in self.pos.levels.iter().zip(&self.cols).enumerate() {
            let Some(text) = level.after.as_ref().and_then(filter_text) else {
                continue;
            };
            let cond = |opp: &'static str, value: String| Cond {
                name: col.name.clone(),
                opp,
                value,
                datetime: col.datetime,
            };
            if i < current {
                match (col.datetime, parse_wall(&text)) {
                    (true, Some(t)) => {
                        let next = (t + chrono::Duration::milliseconds(1))
                            .format("%Y-%m-%dT%H:%M:%S%.3f")
                            .to_string();
                        out.push(cond(">=", text));
                        out.push(cond("<", next));
                    }
                    _ => out.push(cond("=", text)),
                }
            } else {
                out.push(cond(if level.inclusive { ">=" } else { ">" }, text));
            }
        }
        out
    }

    /// Takes a served page of `n` rows, `full` when it held as many rows as the server serves
    /// a page; `values(i)` parses row `i`'s order values (called only for the rows that need
    /// it). Returns the indexes of the rows to hand out, and moves the position past the page.
    ///
    /// Fails when the page gives no position to resume from (no usable value in a full page)
    /// or would not move the position (the server does not honour `order`): either would read
    /// forever.
    pub fn advance(
        &mut self,
        n: usize,
        full: bool,
        values: &mut dyn FnMut(usize) -> Result<Vec<Value>, String>,
    ) -> Result<Vec<usize>, String> {
        let cur = self.pos.levels.len() - 1;
        let mut cache: Vec<Option<Vec<Value>>> = vec![None; n];
        let mut get = |i: usize| -> Result<Vec<Value>, String> {
            if let Some(v) = &cache[i] {
                return Ok(v.clone());
            }
            let v = values(i)?;
            if v.len() != self.cols.len() {
                return Err(format!("row {i} has {} order values", v.len()));
            }
            cache[i] = Some(v.clone());
            Ok(v)
        };

        // Skip rows already handed out: those at the current column's inclusive bound (they
        // come first) and, inside a tie, those handed out before the tie was entered (anywhere).
        let seen: HashSet<&str> = self
            .pos
            .levels
            .iter()
            .flat_map(|l| l.seen.iter().map(String::as_str))
            .collect();
        let fixed_seen = self.pos.levels[..cur].iter().any(|l| !l.seen.is_empty());
        let level = &self.pos.levels[cur];
        let mut at_bound = level.inclusive && !level.seen.is_empty();
        let mut keep = Vec::with_capacity(n);
        let mut kept_ids = Vec::new();
        for i in 0..n {
            if fixed_seen || at_bound {
                let v = get(i)?;
                if at_bound && Some(&v[cur]) != level.after.as_ref() {
                    at_bound = false;
                }
                let id = identity(&v);
                if (fixed_seen || at_bound) && seen.contains(id.as_str()) {
                    continue;
                }
                kept_ids.push((i, id));
            }
            keep.push(i);
        }
        drop(seen);

        let before = self.pos.clone();
        if !full {
            // This column is exhausted under the fixed values: resume strictly after the
            // innermost fixed value, or finish.
            self.pos.levels.pop();
            match self.pos.levels.last_mut() {
                Some(l) => {
                    l.inclusive = false;
                    l.seen.clear();
                }
                None => self.done = true,
            }
            return Ok(keep);
        }
        let col = &self.cols[cur];
        let mut last = n - 1;
        let m = loop {
            let v = get(last)?;
            if usable(&v[cur], col) {
                break v[cur].clone();
            }
            if last == 0 {
                return Err(format!(
                    "no row of a full page carries a usable `{}` to resume after",
                    col.name
                ));
            }
            last -= 1;
        };
        // Identities of the rows from the first one holding `m` to the end of the page.
        let mut tail_from = last;
        while tail_from > 0 && get(tail_from - 1)?[cur] == m {
            tail_from -= 1;
        }
        let ids_from = |get: &mut dyn FnMut(usize) -> Result<Vec<Value>, String>,
                        from: usize|
         -> Result<Vec<String>, String> {
            (from..n).map(|i| get(i).map(|v| identity(&v))).collect()
        };
        let last_col = cur + 1 == self.cols.len();
        if last_col && last == n - 1 {
            // Unique under the fixed values: resume strictly after it.
            self.pos.levels[cur] = Level {
                after: Some(m),
                inclusive: false,
                seen: Vec::new(),
            };
        } else if tail_from == 0 && !last_col {
            // A whole page shares one value: page that tie by the next column. Rows handed out
            // at this value so far (earlier pages' tail and this page) are skipped inside it.
            let level = &self.pos.levels[cur];
            let mut seen: Vec<String> = if level.after.as_ref() == Some(&m) {
                level.seen.clone()
            } else {
                Vec::new()
            };
            for i in &keep {
                match kept_ids.iter().find(|(k, _)| k == i) {
                    Some((_, id)) => seen.push(id.clone()),
                    None => seen.push(identity(&get(*i)?)),
                }
            }
            self.pos.levels[cur] = Level {
                after: Some(m),
                inclusive: true,
                seen,
            };
            self.pos.levels.push(Level::default());
        } else {
            let mut seen = ids_from(&mut get, tail_from)?;
            let level = &self.pos.levels[cur];
            if level.after.as_ref() == Some(&m) && level.inclusive {
                seen.extend(level.seen.iter().cloned());
            }
            self.pos.levels[cur] = Level {
                after: Some(m),
                inclusive: true,
                seen,
            };
        }
        if self.pos == before {
            return Err(format!(
                "the server served the same full page again for `{}`: it does not seem to honour `order`",
                col.name
            ));
        }
        Ok(keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cols(names: &[&str]) -> Vec<OrderCol> {
        names
            .iter()
            .map(|n| OrderCol {
                name: n.to_string(),
                datetime: *n == "ModDate",
            })
            .collect()
    }

    /// Serves `rows` (each a tuple of order values) the way an ordered, filtered, first-page
    /// query would, for the pager's conditions: a model of the API for the unit tests.
    fn serve(rows: &[Vec<Value>], names: &[&str], p: &Pager, size: usize) -> Vec<Vec<Value>> {
        let conds = p.conditions();
        let col = names.iter().position(|n| *n == p.order()).unwrap();
        let cmp = |a: &Value, b: &str| -> std::cmp::Ordering {
            match a {
                Value::Number(n) => n.as_i64().unwrap().cmp(&b.parse::<i64>().unwrap()),
                Value::String(s) => s.as_str().cmp(b),
                _ => panic!(),
            }
        };
        let mut out: Vec<Vec<Value>> = rows
            .iter()
            .filter(|r| {
                conds.iter().all(|c| {
                    let i = names.iter().position(|n| *n == c.name).unwrap();
                    let o = cmp(&r[i], &c.value);
                    match c.opp {
                        "=" => o.is_eq(),
                        ">=" => o.is_ge(),
                        ">" => o.is_gt(),
                        "<" => o.is_lt(),
                        _ => panic!(),
                    }
                })
            })
            .cloned()
            .collect();
        // Stable sort on the one order column: ties keep the table's order.
        out.sort_by(|a, b| match (&a[col], &b[col]) {
            (Value::Number(x), Value::Number(y)) => x.as_i64().cmp(&y.as_i64()),
            (x, y) => x.as_str().cmp(&y.as_str()),
        });
        out.truncate(size);
        out
    }

    fn read_all(rows: &[Vec<Value>], names: &[&str], size: usize) -> (Vec<Vec<Value>>, usize) {
        let mut p = Pager::new(cols(names), Position::default()).unwrap();
        let mut got = Vec::new();
        let mut requests = 0;
        while !p.done() {
            requests += 1;
            assert!(requests < 1000, "no progress");
            let page = serve(rows, names, &p, size);
            let n = page.len();
            let keep = p
                .advance(n, n == size, &mut |i| Ok(page[i].clone()))
                .unwrap();
            got.extend(keep.into_iter().map(|i| page[i].clone()));
            // The position survives a checkpoint.
            let text = serde_json::to_string(&p.pos).unwrap();
            assert_eq!(serde_json::from_str::<Position>(&text).unwrap(), p.pos);
        }
        (got, requests)
    }

    fn sorted(mut v: Vec<Vec<Value>>) -> Vec<String> {
        let mut s: Vec<String> = v.drain(..).map(|r| identity(&r)).collect();
        s.sort();
        s
    }

    #[test]
    fn reads_every_row_once_across_ties_of_any_size() {
        // ModDate, key: a tie of 7 rows (larger than a 3-row page), one of 2, unique ones.
        let mut rows = Vec::new();
        for k in 0..20 {
            let t = match k {
                0..=6 => "2024-05-01T00:00:00.000".to_string(),
                7..=8 => "2024-05-01T00:00:00.003".to_string(),
                _ => format!("2024-05-02T00:00:{k:02}.000"),
            };
            // Keys out of ModDate order, so the tie order differs from key order.
            rows.push(vec![json!(t), json!(format!("K{:02}", (k * 7) % 20))]);
        }
        for size in [1, 2, 3, 4, 7, 8, 50] {
            let (got, _) = read_all(&rows, &["ModDate", "Key"], size);
            assert_eq!(
                got.len(),
                rows.len(),
                "page size {size}: duplicates or gaps"
            );
            assert_eq!(sorted(got), sorted(rows.clone()), "page size {size}");
        }
    }

    #[test]
    fn composite_keys_page_by_each_part() {
        // Ledger lines: (Period, PostSeq, PKey), many lines per period and per posting.
        let mut rows = Vec::new();
        for p in 0..3 {
            for s in 0..4 {
                for k in 0..5 {
                    rows.push(vec![
                        json!(202401 + p),
                        json!(s + 1),
                        json!(format!("{:04}", p * 100 + s * 10 + k)),
                    ]);
                }
            }
        }
        rows.reverse();
        let (got, requests) = read_all(&rows, &["Period", "PostSeq", "PKey"], 4);
        assert_eq!(got.len(), rows.len());
        assert_eq!(sorted(got), sorted(rows.clone()));
        assert!(requests < 60, "{requests} requests for 60 rows");
    }

    #[test]
    fn conditions_fix_ties_and_resume_after_values() {
        let mut p = Pager::new(cols(&["ModDate", "Key"]), Position::default()).unwrap();
        assert!(p.conditions().is_empty());
        assert_eq!(p.order(), "ModDate");
        let page = [
            vec![json!("2024-05-01T00:00:00.000"), json!("B")],
            vec![json!("2024-05-01T00:00:00.000"), json!("A")],
        ];
        // A full page of one ModDate: the tie is paged by key.
        let keep = p.advance(2, true, &mut |i| Ok(page[i].clone())).unwrap();
        assert_eq!(keep, vec![0, 1]);
        assert_eq!(p.order(), "Key");
        let c = p.conditions();
        assert_eq!(
            (c[0].opp, c[0].value.as_str()),
            (">=", "2024-05-01T00:00:00.000")
        );
        assert_eq!(
            (c[1].opp, c[1].value.as_str()),
            ("<", "2024-05-01T00:00:00.001")
        );
        // The tie re-served in key order: both already handed out; a short page ends it.
        let tie = [page[1].clone(), page[0].clone()];
        let keep = p.advance(2, false, &mut |i| Ok(tie[i].clone())).unwrap();
        assert!(keep.is_empty());
        assert_eq!(p.order(), "ModDate");
        assert_eq!(p.conditions()[0].opp, ">");
        // A short page at the top level ends the read.
        p.advance(0, false, &mut |_| unreachable!()).unwrap();
        assert!(p.done());
    }

    #[test]
    fn a_row_saved_mid_read_is_handed_out_again() {
        let mut p = Pager::new(cols(&["ModDate", "Key"]), Position::default()).unwrap();
        let page1 = [
            vec![json!("2024-05-01T00:00:00.000"), json!("A")],
            vec![json!("2024-05-01T00:00:01.000"), json!("B")],
        ];
        p.advance(2, true, &mut |i| Ok(page1[i].clone())).unwrap();
        // B saved meanwhile: it comes back with a new ModDate and is not skipped.
        let page2 = [vec![json!("2024-05-03T00:00:00.000"), json!("B")]];
        let keep = p.advance(1, false, &mut |i| Ok(page2[i].clone())).unwrap();
        assert_eq!(keep, vec![0]);
        assert!(p.done());
    }

    #[test]
    fn a_page_that_does_not_move_fails_and_bad_positions_are_refused() {
        let mut p = Pager::new(cols(&["Key"]), Position::default()).unwrap();
        let page = [vec![json!("A")], vec![json!("B")]];
        p.advance(2, true, &mut |i| Ok(page[i].clone())).unwrap();
        // The same rows again (order ignored, filter ignored): refused rather than looping.
        let e = p.advance(2, true, &mut |i| Ok(page[i].clone()));
        assert!(e.is_err(), "{e:?}");
        let unusable = [vec![json!(null)]];
        let mut p = Pager::new(cols(&["Key"]), Position::default()).unwrap();
        assert!(
            p.advance(1, true, &mut |i| Ok(unusable[i].clone()))
                .is_err()
        );
        let two = Position {
            levels: vec![Level::default(), Level::default()],
            cap: None,
        };
        assert!(Pager::new(cols(&["Key"]), two.clone()).is_err());
        assert!(Pager::new(cols(&["ModDate", "Key"]), two).is_err());
    }
}
