//! OData query options of the Business Central fake: `$select`, `$filter` on
//! `lastModifiedDateTime` (`gt ge lt le eq`, `and`, `or`, parentheses), `$orderby`, `$top`,
//! `$skip` and the `$skiptoken` of server-driven paging, and the scan that answers them from
//! row metadata.

use super::entities::Entity;
use super::set::Set;
use super::store::{EPOCH_MS, Row, Store, first_at_or_after, initial_modified};

/// A rejected request: status, BC error code, message (the CorrelationId is added later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Reject {
    pub fn bad(message: impl Into<String>) -> Reject {
        Reject {
            status: 400,
            code: "BadRequest",
            message: message.into(),
        }
    }
}

/// Sorted, disjoint half-open ranges of modified times (ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Times(pub Vec<(i64, i64)>);

impl Times {
    pub fn all() -> Times {
        Times(vec![(i64::MIN, i64::MAX)])
    }

    pub fn contains(&self, t: i64) -> bool {
        self.0.iter().any(|(lo, hi)| *lo <= t && t < *hi)
    }

    fn and(&self, o: &Times) -> Times {
        let mut out = Vec::new();
        for (a, b) in &self.0 {
            for (c, d) in &o.0 {
                let (lo, hi) = ((*a).max(*c), (*b).min(*d));
                if lo < hi {
                    out.push((lo, hi));
                }
            }
        }
        Times(normalize(out))
    }

    fn or(&self, o: &Times) -> Times {
        let mut v = self.0.clone();
        v.extend_from_slice(&o.0);
        Times(normalize(v))
    }
}

fn normalize(mut v: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    v.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::new();
    for (lo, hi) in v {
        match out.last_mut() {
            Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// Parses a `$filter` into the modified-time ranges it keeps.
pub fn parse_filter(ent: &Entity, text: &str) -> Result<Times, Reject> {
    let tokens = tokenize(text);
    let mut p = Parser { ent, tokens, at: 0 };
    let t = p.or()?;
    if p.at != p.tokens.len() {
        return Err(syntax(text));
    }
    Ok(t)
}

fn syntax(text: &str) -> Reject {
    Reject::bad(format!(
        "Syntax error at position {} in '{text}'.",
        text.len()
    ))
}

/// Tokens of a filter: parentheses, words, and `'…'` literals (kept quoted, `''` inside).
pub(super) fn tokenize(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                cur.push('\'');
                while let Some(c) = chars.next() {
                    cur.push(c);
                    if c == '\'' {
                        if chars.peek() == Some(&'\'') {
                            chars.next();
                            cur.push('\'');
                        } else {
                            break;
                        }
                    }
                }
            }
            '(' | ')' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                out.push(c.to_string());
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

struct Parser<'a> {
    ent: &'a Entity,
    tokens: Vec<String>,
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.at).map(String::as_str)
    }

    fn next(&mut self) -> Option<String> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn or(&mut self) -> Result<Times, Reject> {
        let mut t = self.and()?;
        while self.peek() == Some("or") {
            self.at += 1;
            t = t.or(&self.and()?);
        }
        Ok(t)
    }

    fn and(&mut self) -> Result<Times, Reject> {
        let mut t = self.factor()?;
        while self.peek() == Some("and") {
            self.at += 1;
            t = t.and(&self.factor()?);
        }
        Ok(t)
    }

    fn factor(&mut self) -> Result<Times, Reject> {
        let whole = self.tokens.join(" ");
        if self.peek() == Some("(") {
            self.at += 1;
            let t = self.or()?;
            if self.next().as_deref() != Some(")") {
                return Err(syntax(&whole));
            }
            return Ok(t);
        }
        let field = self.next().ok_or_else(|| syntax(&whole))?;
        let op = self.next().ok_or_else(|| syntax(&whole))?;
        let lit = self.next().ok_or_else(|| syntax(&whole))?;
        if self.ent.field(&field).is_none() {
            return Err(unknown_property(self.ent, &field));
        }
        if field != "lastModifiedDateTime" {
            return Err(Reject {
                status: 501,
                code: "BadRequest_NotSupported",
                message: format!(
                    "The sandbox filters on lastModifiedDateTime only, not on '{field}'."
                ),
            });
        }
        let us = chrono::DateTime::parse_from_rfc3339(&lit)
            .map_err(|_| {
                Reject::bad(format!(
                    "The DateTimeOffset text '{lit}' should be in format 'yyyy-mm-ddThh:mm:ss('.'s+)?(zzzzzz)?' and each field value is within valid range."
                ))
            })?
            .timestamp_micros();
        let floor = us.div_euclid(1000);
        let ceil = floor + i64::from(us.rem_euclid(1000) != 0);
        let r = match op.as_str() {
            "ge" => (ceil, i64::MAX),
            "gt" => (floor + 1, i64::MAX),
            "le" => (i64::MIN, floor + 1),
            "lt" => (i64::MIN, ceil),
            "eq" if us.rem_euclid(1000) == 0 => (floor, floor + 1),
            "eq" => (0, 0),
            _ => return Err(syntax(&whole)),
        };
        Ok(Times(if r.0 < r.1 { vec![r] } else { vec![] }))
    }
}

/// BC's answer to an unknown property in `$select` or `$filter`.
pub fn unknown_property(ent: &Entity, name: &str) -> Reject {
    Reject::bad(format!(
        "Could not find a property named '{name}' on type 'Microsoft.NAV.{}'.",
        ent.set.type_name()
    ))
}

/// `$select` → field indices (every field when absent).
pub fn select(ent: &Entity, param: Option<&str>) -> Result<Vec<usize>, Reject> {
    let Some(list) = param.filter(|s| !s.trim().is_empty()) else {
        return Ok((0..ent.fields.len()).collect());
    };
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim) {
        let i = ent.field(name).ok_or_else(|| unknown_property(ent, name))?;
        if !out.contains(&i) {
            out.push(i);
        }
    }
    Ok(out)
}

/// Row order of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Primary key order (the default).
    Key,
    /// `lastModifiedDateTime asc`, ties by key.
    Modified,
}

pub fn order(ent: &Entity, text: Option<&str>) -> Result<Order, Reject> {
    let Some(t) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(Order::Key);
    };
    let mut parts = t.split_whitespace();
    let field = parts.next().unwrap_or_default();
    let dir = parts.next().unwrap_or("asc");
    if ent.field(field).is_none() {
        return Err(unknown_property(ent, field));
    }
    match (field, dir) {
        ("id", "asc") => Ok(Order::Key),
        ("lastModifiedDateTime", "asc") => Ok(Order::Modified),
        _ => Err(Reject {
            status: 501,
            code: "BadRequest_NotSupported",
            message: format!(
                "The sandbox orders by id or lastModifiedDateTime ascending, not '{t}'."
            ),
        }),
    }
}

/// Where a page starts: after this (modified, ordinal) in the read's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct After {
    pub modified_ms: i64,
    pub ordinal: u64,
}

/// Up to `limit` live rows of `set` in `company` matching `times`, after `after`, in `order`.
pub fn scan(
    store: &Store,
    company: usize,
    set: Set,
    times: &Times,
    order: Order,
    after: Option<After>,
    limit: usize,
) -> Vec<Row> {
    let mut out = Vec::with_capacity(limit.min(4096));
    if set.header().is_some() {
        let start = after.map_or(0, |a| a.ordinal + 1);
        let end = store.ordinal_end(company, set);
        let mut o = start;
        while o < end && out.len() < limit {
            if let Some(r) = store.live(company, set, o) {
                out.push(r);
            }
            o += 1;
        }
        return out;
    }
    let t = store.table(company, set);
    let changed_live = |o: u64| {
        t.changed
            .get(&o)
            .filter(|m| !m.deleted && times.contains(m.modified_ms))
            .and_then(|_| store.live(company, set, o))
    };
    // Untouched rows matching `times`, from ordinal `from`, in ordinal order.
    let untouched = |from: u64, out: &mut Vec<Row>, until_ordinal: u64, limit: usize| {
        for (lo, hi) in &times.0 {
            if out.len() >= limit {
                return;
            }
            let a = if *lo == i64::MIN {
                0
            } else {
                first_at_or_after(*lo, t.initial)
            };
            let b = if *hi == i64::MAX {
                t.initial
            } else {
                first_at_or_after(*hi, t.initial)
            };
            let mut o = a.max(from);
            while o < b.min(until_ordinal) && out.len() < limit {
                if !t.changed.contains_key(&o) {
                    out.push(Row {
                        ordinal: o,
                        revision: 0,
                        modified_ms: initial_modified(o, t.initial),
                        poisoned: false,
                    });
                }
                o += 1;
            }
        }
    };
    match order {
        Order::Key => {
            let start = after.map_or(0, |a| a.ordinal + 1);
            // Merge untouched rows (< initial) with changed rows, both in ordinal order.
            let mut o = start;
            let mut changed = t.changed.range(start..).map(|(k, _)| *k).peekable();
            while out.len() < limit && (o < t.initial || changed.peek().is_some()) {
                let next_changed = changed.peek().copied().unwrap_or(u64::MAX);
                if o < t.initial && o < next_changed {
                    // Untouched run [o, min(next_changed, initial)).
                    let until = next_changed.min(t.initial);
                    untouched(o, &mut out, until, limit);
                    o = until;
                } else {
                    if let Some(r) = changed_live(next_changed) {
                        out.push(r);
                    }
                    changed.next();
                    o = next_changed + 1;
                }
            }
        }
        Order::Modified => {
            // Every changed row was modified after every untouched one.
            let (phase_untouched, start) = match after {
                None => (true, 0),
                Some(a) if a.modified_ms < EPOCH_MS && !t.changed.contains_key(&a.ordinal) => {
                    (true, a.ordinal + 1)
                }
                Some(_) => (false, 0),
            };
            if phase_untouched {
                untouched(start, &mut out, t.initial, limit);
            }
            let from = match after {
                Some(a) if !phase_untouched => (a.modified_ms, a.ordinal.saturating_add(1)),
                _ => (i64::MIN, 0),
            };
            for (m, o) in t.by_modified.range(from..) {
                if out.len() >= limit {
                    break;
                }
                if times.contains(*m)
                    && let Some(r) = store.live(company, set, *o)
                {
                    out.push(r);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::business_central::entities::Entity;

    #[test]
    fn filters_become_time_ranges() {
        let e = Entity::load(Set::Customers, crate::sandbox::Tenant::Standard).unwrap();
        let t = parse_filter(&e, "lastModifiedDateTime ge 2025-01-01T00:00:00Z").unwrap();
        assert_eq!(t.0, vec![(EPOCH_MS, i64::MAX)]);
        let t = parse_filter(
            &e,
            "(lastModifiedDateTime gt 2025-01-01T00:00:00Z and lastModifiedDateTime lt 2025-01-02T00:00:00.5Z) or lastModifiedDateTime le 2020-01-01T00:00:00Z",
        )
        .unwrap();
        assert_eq!(t.0.len(), 2);
        assert!(t.contains(EPOCH_MS + 1) && !t.contains(EPOCH_MS));
        assert!(parse_filter(&e, "nosuch ge 2025-01-01T00:00:00Z").is_err());
        assert!(parse_filter(&e, "lastModifiedDateTime ge yesterday").is_err());
    }

    #[test]
    fn scans_page_without_gaps_in_both_orders() {
        let mut s = Store::new(2000, 3);
        s.mutate();
        s.mutate();
        for order in [Order::Key, Order::Modified] {
            let mut seen = Vec::new();
            let mut after = None;
            loop {
                let page = scan(&s, 0, Set::Customers, &Times::all(), order, after, 37);
                let Some(last) = page.last() else { break };
                after = Some(After {
                    modified_ms: last.modified_ms,
                    ordinal: last.ordinal,
                });
                seen.extend(page.iter().map(|r| r.ordinal));
            }
            let mut sorted = seen.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), seen.len(), "{order:?}: duplicates");
            assert_eq!(seen.len() as u64, s.count(0, Set::Customers), "{order:?}");
        }
        let recent = Times(vec![(EPOCH_MS, i64::MAX)]);
        let changed = scan(&s, 0, Set::Customers, &recent, Order::Key, None, 100_000);
        assert!(changed.iter().all(|r| r.modified_ms >= EPOCH_MS));
        assert!(!changed.is_empty());
    }
}
