//! Writes to the Deltek fake: `POST /{hub}` creates (a JSON array of records in, the saved
//! records out as an array), `PUT`/`PATCH /{hub}/{key}` updates, as Vantagepoint's hubs take
//! them (shared/reference/deltek-pipedrive-looker.md §1.6, §1.8). No idempotency key, as the
//! real API. Every write is logged ([`WriteLog`]) so tests can count them; a fault can apply a
//! create and then drop its answer.
//!
//! Writable hubs: `firm`, `contact`, `project` (regular projects, and on 5.0+ tenants pursuits:
//! a project created with a `Stage`), and `opportunity` on pre-5.0 tenants. Assumptions, marked
//! where the reference is silent [ASSUMPTION]:
//! - the body may be one object or an array of objects; the answer is always an array, status
//!   200;
//! - a batch is validated whole: one bad record refuses the request (400, nothing saved);
//! - firm, contact and opportunity keys (`ClientID`, `ContactID`, `OpportunityID`) are assigned
//!   by the server (a key sent on create is ignored); a project's `WBS1` is the client's (the
//!   reference: only Key Conversion changes it), required, and unique across projects and
//!   pursuits;
//! - system-required fields: firm `Name`, contact `LastName`, opportunity and project `Name`;
//!   a `ClientID` must be an existing firm; tenant "screen designer" required fields
//!   ([`Written::required`]) apply unless `requiredFieldValidation=N`;
//! - fields must exist on the hub (the catalog's fields) or be custom (`Cust*`); an unknown
//!   field is a 400 `{message, detail}`;
//! - `PATCH` behaves as `PUT` (partial: fields not sent keep their values).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::{Map, Value};

use super::tables::{Kind, key_fields};

/// One write the fake received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WriteLog {
    /// `POST`, `PUT`, `PATCH`.
    pub method: String,
    pub hub: String,
    /// The table written (`project` or, for a 5.0+ pursuit sent to `project`, `opportunity`).
    pub table: String,
    /// The saved record's key (none when refused).
    pub key: Option<String>,
    pub status: u16,
    /// The `startWorkflow` query value as sent.
    pub start_workflow: Option<String>,
    /// Field names sent.
    pub fields: Vec<String>,
    /// The create was applied but its answer dropped (fault).
    pub dropped: bool,
}

/// What the API saved and how it is configured.
#[derive(Debug, Default)]
pub struct Written {
    /// Values saved through the API, per (table, ordinal): they override generated values.
    pub rows: HashMap<(Kind, u64), Map<String, Value>>,
    pub log: Vec<WriteLog>,
    /// The next N creates are applied and then their answers dropped (connection reset).
    pub drop_creates: u32,
    /// Tenant-required fields per hub (screen designer).
    pub required: BTreeMap<String, Vec<String>>,
    /// Client-assigned keys (project numbers) of rows saved through the API.
    pub client_keys: HashMap<(Kind, String), u64>,
    /// Custom-field values saved through the API: (table, field) → lowercased value → rows.
    /// Entries may be stale after an update; searches check each row's current value.
    pub custom: HashMap<(Kind, String), HashMap<String, Vec<u64>>>,
}

impl Written {
    /// Saves `fields` on row `o` of `k`, indexing its custom fields.
    pub fn save(&mut self, k: Kind, o: u64, fields: Map<String, Value>) {
        for (f, v) in fields.iter().filter(|(f, _)| f.starts_with("Cust")) {
            if let Some(v) = v.as_str() {
                self.custom
                    .entry((k, f.clone()))
                    .or_default()
                    .entry(v.to_lowercase())
                    .or_default()
                    .push(o);
            }
        }
        self.rows.entry((k, o)).or_default().extend(fields);
    }

    /// Whether row `o` of `k` carries a client-assigned number (a project created with WBS1).
    pub fn client_keys_of(&self, k: Kind, o: u64) -> bool {
        self.rows
            .get(&(k, o))
            .is_some_and(|r| r.contains_key("WBS1"))
    }
}

/// A 5.0+ pursuit's project fields and the opportunity fields they are stored as (the same
/// rename streams/deltek/opportunity.toml reads them back with).
pub const PURSUIT_RENAME: [(&str, &str); 3] = [
    ("WBS1", "OpportunityID"),
    ("Fee", "Revenue"),
    ("StartDate", "EstStartDate"),
];

/// The writable table behind a hub path: `project` holds projects and (5.0+, with a Stage)
/// pursuits; `opportunity` answers only on pre-5.0 tenants.
pub fn writable(hub: &str, hub_tenant: bool, record: &Map<String, Value>) -> Option<Kind> {
    let staged = record
        .get("Stage")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.trim().is_empty());
    match hub {
        "firm" => Some(Kind::Firm),
        "contact" => Some(Kind::Contact),
        "opportunity" if hub_tenant => Some(Kind::Opportunity),
        "project" if staged && !hub_tenant => Some(Kind::Opportunity),
        "project" => Some(Kind::Project),
        _ => None,
    }
}

/// System-required fields [ASSUMPTION].
fn system_required(k: Kind) -> &'static [&'static str] {
    match k {
        Kind::Firm | Kind::Opportunity | Kind::Project => &["Name"],
        Kind::Contact => &["LastName"],
        _ => &[],
    }
}

/// Checks one record: known fields, required fields. `creating`: required fields must be
/// present (an update may send a subset, but must not blank them).
pub fn validate(
    k: Kind,
    hub: &str,
    known: &[String],
    tenant_required: &[String],
    record: &Map<String, Value>,
    creating: bool,
) -> Result<(), String> {
    for f in record.keys() {
        let ok = f.starts_with("Cust")
            || f.starts_with('_')
            || known.iter().any(|k| k.eq_ignore_ascii_case(f));
        if !ok {
            return Err(format!("Field '{f}' does not exist on {hub}."));
        }
    }
    let blank = |f: &str| match record.get(f) {
        None => creating,
        Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        Some(_) => false,
    };
    for f in system_required(k)
        .iter()
        .map(|s| s.to_string())
        .chain(tenant_required.iter().cloned())
    {
        if key_fields(k).contains(&f.as_str()) {
            continue;
        }
        if blank(&f) {
            return Err(format!("{f} is required."));
        }
    }
    Ok(())
}

/// The fields a request may save: everything but a server-assigned key and the server-kept
/// dates (a client-assigned key, `client_key`, is kept: it is the record's number).
pub fn saved_fields(k: Kind, record: &Map<String, Value>, client_key: bool) -> Map<String, Value> {
    record
        .iter()
        .filter(|(f, _)| {
            (client_key || !key_fields(k).contains(&f.as_str()))
                && !matches!(
                    f.as_str(),
                    "ModDate" | "CreateDate" | "ModUser" | "CreateUser"
                )
                && !f.starts_with('_')
        })
        .map(|(f, v)| (f.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: serde_json::Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn validation_names_the_field() {
        let known = vec!["Name".to_string(), "WebSite".to_string()];
        assert!(
            validate(
                Kind::Firm,
                "firm",
                &known,
                &[],
                &rec(serde_json::json!({"Name": "A"})),
                true
            )
            .is_ok()
        );
        assert_eq!(
            validate(
                Kind::Firm,
                "firm",
                &known,
                &[],
                &rec(serde_json::json!({"WebSite": "x"})),
                true
            ),
            Err("Name is required.".into())
        );
        // An update may leave Name out, not blank it.
        assert!(
            validate(
                Kind::Firm,
                "firm",
                &known,
                &[],
                &rec(serde_json::json!({"WebSite": "x"})),
                false
            )
            .is_ok()
        );
        assert_eq!(
            validate(
                Kind::Firm,
                "firm",
                &known,
                &[],
                &rec(serde_json::json!({"Name": "A", "Nope": 1})),
                true
            ),
            Err("Field 'Nope' does not exist on firm.".into())
        );
        assert!(
            validate(
                Kind::Firm,
                "firm",
                &known,
                &[],
                &rec(serde_json::json!({"Name": "A", "CustX": 1})),
                true
            )
            .is_ok()
        );
        assert_eq!(
            validate(
                Kind::Firm,
                "firm",
                &known,
                &["WebSite".into()],
                &rec(serde_json::json!({"Name": "A"})),
                true
            ),
            Err("WebSite is required.".into())
        );
    }
}
