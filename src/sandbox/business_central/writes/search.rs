//! Equality `$filter`s of the Business Central fake: splitting a filter into `field eq
//! literal` conjuncts and time ranges, and answering the equalities from indexes (API-written
//! values as saved, generated values of untouched rows built lazily) plus a check of each
//! changed row — never a scan of the table.

use super::*;

/// Splits a `$filter` into the `field eq literal` conjuncts on properties other than
/// `lastModifiedDateTime` (field index, normalised literal) and the rest (for the time parser).
/// A filter with a top-level `or` is left whole.
pub fn split_filter(ent: &Entity, text: &str) -> Result<(String, Vec<(usize, String)>), Reject> {
    let tokens = tokenize(text);
    let mut depth = 0i32;
    let mut conj: Vec<Vec<String>> = vec![Vec::new()];
    for t in tokens {
        match t.as_str() {
            "(" => depth += 1,
            ")" => depth -= 1,
            _ => {}
        }
        if depth == 0 && t.eq_ignore_ascii_case("or") {
            return Ok((text.to_string(), Vec::new()));
        }
        if depth == 0 && t == "and" {
            conj.push(Vec::new());
            continue;
        }
        if let Some(last) = conj.last_mut() {
            last.push(t);
        }
    }
    let mut rest = Vec::new();
    let mut eqs = Vec::new();
    for mut c in conj {
        // `(a eq 'x')` is `a eq 'x'`.
        if c.len() == 5 && c[0] == "(" && c[4] == ")" {
            c = c[1..4].to_vec();
        }
        if c.len() == 3 && c[1] == "eq" && c[0] != "lastModifiedDateTime" {
            let i = ent
                .field(&c[0])
                .ok_or_else(|| unknown_property(ent, &c[0]))?;
            eqs.push((i, literal(&c[2])?));
        } else {
            rest.push(c.join(" "));
        }
    }
    Ok((rest.join(" and "), eqs))
}

/// An OData literal in normal form: `'O''Brien'` → `o'brien`, `10.50` → `10.5`, bare GUIDs and
/// dates as text.
pub(super) fn literal(t: &str) -> Result<String, Reject> {
    if let Some(inner) = t.strip_prefix('\'') {
        let inner = inner
            .strip_suffix('\'')
            .ok_or_else(|| Reject::bad(format!("Unterminated string literal at '{t}'.")))?;
        return Ok(norm(&Value::String(inner.replace("''", "'"))));
    }
    if let Ok(f) = t.parse::<f64>() {
        return Ok(format!("{f}"));
    }
    Ok(t.to_lowercase())
}

/// The rendered value of field `i` of a row (saved values first).
pub(super) fn field_value(
    store: &Store,
    ent: &Entity,
    company: usize,
    row: Row,
    i: usize,
) -> Value {
    let mut out = Vec::new();
    render::write_row(
        &mut out,
        ent,
        &RowCtx::new(store, company, ent.set, row),
        &[i],
    );
    serde_json::from_slice::<Value>(&out)
        .ok()
        .and_then(|mut v| v.get_mut(&ent.fields[i].name).map(Value::take))
        .unwrap_or(Value::Null)
}

/// The current `@odata.etag` of a row.
pub(super) fn etag_of(store: &Store, ent: &Entity, company: usize, row: Row) -> String {
    let mut out = Vec::new();
    render::write_row(
        &mut out,
        ent,
        &RowCtx::new(store, company, ent.set, row),
        &[],
    );
    serde_json::from_slice::<Value>(&out)
        .ok()
        .and_then(|v| {
            v.get("@odata.etag")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// The generated value index of untouched rows of (company, set, field `i`).
pub(super) fn generated_index(
    store: &Store,
    ent: &Entity,
    company: usize,
    i: usize,
) -> Option<Arc<ValueIndex>> {
    let key = (company, ent.set, ent.fields[i].name.clone());
    let mut cache = store
        .writes
        .generated
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(hit) = cache.get(&key) {
        return hit.clone();
    }
    let untouched: Vec<Row> = match ent.set.header() {
        Some(h) => {
            let docs = store.table(company, h).initial;
            if docs * 4 > INDEX_LIMIT {
                cache.insert(key, None);
                return None;
            }
            let mut v = Vec::new();
            for d in 0..docs {
                for k in 0..initial_lines(store.seed, h.code(company), d) {
                    v.push(Row {
                        ordinal: d * LINE_SLOTS + k,
                        revision: 0,
                        modified_ms: 0,
                        poisoned: false,
                    });
                }
            }
            v
        }
        None => {
            let n = store.table(company, ent.set).initial;
            if n > INDEX_LIMIT {
                cache.insert(key, None);
                return None;
            }
            (0..n)
                .map(|o| Row {
                    ordinal: o,
                    revision: 0,
                    modified_ms: initial_modified(o, n),
                    poisoned: false,
                })
                .collect()
        }
    };
    let mut idx: ValueIndex = HashMap::new();
    for r in untouched {
        let mut out = Vec::new();
        render::generated_value(&mut out, ent, &RowCtx::new(store, company, ent.set, r), i);
        let v = serde_json::from_slice::<Value>(&out).unwrap_or(Value::Null);
        idx.entry(norm(&v)).or_default().push(r.ordinal);
    }
    let idx = Arc::new(idx);
    cache.insert(key, Some(idx.clone()));
    Some(idx)
}

/// Live rows of `set` matching every equality and `times`, in `order`, after `after`, at most
/// `limit` — without scanning untouched rows.
#[allow(clippy::too_many_arguments)]
pub fn search(
    store: &Store,
    ent: &Entity,
    company: usize,
    eqs: &[(usize, String)],
    times: &Times,
    order: Order,
    after: Option<After>,
    limit: usize,
) -> Vec<Row> {
    let Some((first, want)) = eqs.first() else {
        return Vec::new();
    };
    let set = ent.set;
    let name = &ent.fields[*first].name;
    let mut cand: BTreeSet<u64> = BTreeSet::new();
    let doc_lines = set.header().filter(|_| name == "documentId");
    if let Some(h) = doc_lines {
        // A document's lines are its slots.
        if let Some((code, d)) = json::parse_guid(want)
            && code == h.code(company)
        {
            cand.extend(d * LINE_SLOTS..(d + 1) * LINE_SLOTS);
        }
    } else {
        let line_table = store.table(company, set);
        if let Some(w) = store.writes.written.get(&(company, set, name.clone()))
            && let Some(rows) = w.get(want)
        {
            cand.extend(rows);
        }
        if let Some(idx) = generated_index(store, ent, company, *first)
            && let Some(rows) = idx.get(want)
        {
            cand.extend(rows.iter().filter(|o| !line_table.changed.contains_key(o)));
        }
        // Rows whose FlowField moved since the index was built: check one by one.
        if ent.fields[*first].computed {
            cand.extend(line_table.flow.keys());
        }
        // Changed rows without a saved value for the field: check one by one.
        for (o, m) in &line_table.changed {
            let saved = store
                .writes
                .row(company, set, *o)
                .is_some_and(|s| s.contains_key(name));
            if !m.deleted && !saved {
                cand.insert(*o);
            }
        }
        // Implicit lines of documents inserted after the initial load.
        if let Some(h) = set.header() {
            for (d, m) in &store.table(company, h).changed {
                if m.inserted && !m.deleted {
                    for k in 0..initial_lines(store.seed, h.code(company), *d) {
                        let o = d * LINE_SLOTS + k;
                        if !line_table.changed.contains_key(&o) {
                            cand.insert(o);
                        }
                    }
                }
            }
        }
    }
    let mut rows: Vec<Row> = cand
        .into_iter()
        .filter_map(|o| store.live(company, set, o))
        .filter(|r| !set.has_modified() || times.contains(r.modified_ms))
        .filter(|r| {
            eqs.iter()
                .all(|(i, v)| norm(&field_value(store, ent, company, *r, *i)) == *v)
        })
        .collect();
    match order {
        Order::Key => {
            if let Some(a) = after {
                rows.retain(|r| r.ordinal > a.ordinal);
            }
        }
        Order::Modified => {
            rows.sort_by_key(|r| (r.modified_ms, r.ordinal));
            if let Some(a) = after {
                rows.retain(|r| (r.modified_ms, r.ordinal) > (a.modified_ms, a.ordinal));
            }
        }
    }
    rows.truncate(limit);
    rows
}
