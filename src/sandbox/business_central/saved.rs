//! What the Business Central fake keeps of the writes it received: the values saved through the
//! API per row (which override the generated ones when rendering), their search indexes, and
//! the write log. The store holds one; writes.rs fills it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{Map, Value};

use super::set::Set;

/// One write the fake received.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BcWriteLog {
    /// `POST`, `PATCH`, `DELETE`.
    pub method: String,
    /// Entity set (`customers`), or `salesInvoices/Microsoft.NAV.post` for the action.
    pub set: String,
    /// Company id (GUID).
    pub company: String,
    /// The row written (none when refused before one was known).
    pub id: Option<String>,
    pub status: u16,
    /// The JSON body as sent (`null` for none).
    pub fields: Value,
    /// The `If-Match` header as sent.
    pub if_match: Option<String>,
    /// The create was applied but its answer dropped (connection reset mid-body).
    pub dropped: bool,
    /// Answered with a success status and an OData error body, nothing saved (fault).
    pub error_in_2xx: bool,
}

pub(super) type FieldKey = (usize, Set, String);
pub(super) type ValueIndex = HashMap<String, Vec<u64>>;

/// Values saved through the API, their indexes, the write log.
#[derive(Debug, Default)]
pub struct Saved {
    pub(super) rows: HashMap<(usize, Set, u64), Map<String, Value>>,
    /// (company, set, field) → normalised value → rows whose saved value it was (may be stale
    /// after an update: searches re-check each row).
    pub(super) written: HashMap<FieldKey, HashMap<String, BTreeSet<u64>>>,
    /// Generated values of untouched rows, built on first search; `None`: table too big.
    pub(super) generated: Mutex<HashMap<FieldKey, Option<Arc<ValueIndex>>>>,
    pub log: Vec<BcWriteLog>,
    /// The next N creates are applied and their answers dropped.
    pub drop_creates: u32,
    /// The next N creates and updates are answered 201/200 with an OData `error` body, and
    /// nothing is saved.
    pub error_in_2xx: u32,
}

impl Saved {
    /// The saved values of a row (cheap when nothing was ever written).
    pub fn row(&self, company: usize, set: Set, o: u64) -> Option<&Map<String, Value>> {
        if self.rows.is_empty() {
            return None;
        }
        self.rows.get(&(company, set, o))
    }

    /// Merges `fields` into row `o`'s saved values and indexes them.
    pub(super) fn save(&mut self, company: usize, set: Set, o: u64, fields: Map<String, Value>) {
        for (f, v) in &fields {
            self.written
                .entry((company, set, f.clone()))
                .or_default()
                .entry(norm(v))
                .or_default()
                .insert(o);
        }
        self.rows
            .entry((company, set, o))
            .or_default()
            .extend(fields);
    }
}

/// `""`-style normal form of a value for equality (strings case-insensitive, numbers by value).
pub(super) fn norm(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_lowercase(),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), |f| format!("{f}")),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        v => v.to_string(),
    }
}
