//! Writes to the Deltek fake: `POST /{hub}` creates (a JSON array of records in, the saved
//! records out as an array), `PUT`/`PATCH /{hub}/{key}` updates, as Vantagepoint's hubs take
//! them (shared/reference/deltek-pipedrive-looker.md §1.6, §1.8). No idempotency key, as the
//! real API. Every write is logged ([`WriteLog`]) so tests can count them; a fault can apply a
//! create and then drop its answer, another answer a write 200 with an error object
//! (`{"Message": …}`, not the array of saved records) and save nothing.
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
//! - system-required fields are the schema's (schema.rs: firm `Name`, contact `LastName`,
//!   opportunity and project `Name`); a `ClientID` must be an existing firm; tenant "screen
//!   designer" required fields ([`Written::required`]) apply unless
//!   `requiredFieldValidation=N`;
//! - fields must exist on the tenant's hub, custom `Cust*` fields included (schema.rs: a
//!   tenant without `CustDynamicsId` refuses it); an unknown field is a 400
//!   `{message, detail}`; names match case-insensitively and are saved as the hub spells them;
//! - a Numeric or Currency field takes a number or a numeric string (saved as a number; `""`
//!   clears it), anything else is a 400; a Checkbox takes `"Y"`/`"N"` or a boolean (saved as
//!   `"Y"`/`"N"`);
//! - `PATCH` behaves as `PUT` (partial: fields not sent keep their values).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::{Map, Value};

use super::kind::Kind;
use super::schema::Ty;
use super::tables::Col;

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
    /// Answered 200 with an error object instead of the saved records, nothing saved (fault).
    pub error_in_2xx: bool,
}

/// What the API saved and how it is configured.
#[derive(Debug, Default)]
pub struct Written {
    /// Values saved through the API, per (table, ordinal): they override generated values.
    pub rows: HashMap<(Kind, u64), Map<String, Value>>,
    pub log: Vec<WriteLog>,
    /// The next N creates are applied and then their answers dropped (connection reset).
    pub drop_creates: u32,
    /// The next N writes (creates and updates) are answered 200 with `{"Message": …}`, the
    /// error object Vantagepoint's Web API sends, and nothing is saved.
    pub error_in_2xx: u32,
    /// Tenant-required fields per hub (screen designer).
    pub required: BTreeMap<String, Vec<String>>,
    /// Client-assigned keys (project numbers) of rows saved through the API.
    pub client_keys: HashMap<(Kind, String), u64>,
    /// Text values saved through the API: (table, field) → lowercased value → rows, for the
    /// searches on fields only API-saved rows fill. Entries may be stale after an update;
    /// searches check each row's current value.
    pub values: HashMap<(Kind, String), HashMap<String, Vec<u64>>>,
}

impl Written {
    /// Saves `fields` on row `o` of `k`, indexing their text values.
    pub fn save(&mut self, k: Kind, o: u64, fields: Map<String, Value>) {
        for (f, v) in &fields {
            if let Some(v) = v.as_str() {
                self.values
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

/// A value as the field stores it: numbers for numeric types, `"Y"`/`"N"` for checkboxes;
/// `Err` for a value the type refuses.
fn stored(ty: Ty, v: &Value) -> Result<Value, ()> {
    match (ty, v) {
        (Ty::Numeric(_) | Ty::Currency(_), Value::String(s)) if s.trim().is_empty() => {
            Ok(Value::Null)
        }
        (Ty::Numeric(_) | Ty::Currency(_), Value::String(s)) => {
            let s = s.trim();
            match s.parse::<i64>() {
                Ok(i) => Ok(Value::from(i)),
                Err(_) => s
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or(()),
            }
        }
        (Ty::Numeric(_) | Ty::Currency(_), Value::Number(_) | Value::Null) => Ok(v.clone()),
        (Ty::Numeric(_) | Ty::Currency(_), _) => Err(()),
        (Ty::Checkbox, Value::Bool(b)) => Ok(Value::from(if *b { "Y" } else { "N" })),
        _ => Ok(v.clone()),
    }
}

/// Checks one record against the hub's fields `cols` (`keys`: the hub's key fields): every
/// field exists and takes its value, required fields are there. `creating`: required fields
/// must be present (an update may send a subset, but must not blank them).
pub fn validate(
    hub: &str,
    cols: &[Col],
    keys: &[&str],
    tenant_required: &[String],
    record: &Map<String, Value>,
    creating: bool,
) -> Result<(), String> {
    for (f, v) in record {
        if f.starts_with('_') {
            continue;
        }
        let Some(col) = cols.iter().find(|c| c.out.eq_ignore_ascii_case(f)) else {
            return Err(format!("Field '{f}' does not exist on {hub}."));
        };
        if stored(col.src.ty, v).is_err() {
            return Err(format!("'{v}' is not a valid value for {}.", col.out));
        }
        // Text longer than the field (its metadata's MaxLength). The wording of the server's
        // message is an [ASSUMPTION]; that it refuses is what the column size implies. Only
        // free text is checked: this fake's record ids and references are dashed GUIDs, longer
        // than the 32 characters Vantagepoint's undashed ones take.
        if let Value::String(s) = v
            && matches!(col.src.ty, Ty::String | Ty::Memo | Ty::Phone)
            && col.src.max_len > 0
            && s.chars().count() > usize::from(col.src.max_len)
        {
            return Err(format!(
                "{} cannot be longer than {} characters.",
                col.out, col.src.max_len
            ));
        }
    }
    let blank = |f: &str| match record.iter().find(|(k, _)| k.eq_ignore_ascii_case(f)) {
        None => creating,
        Some((_, Value::Null)) => true,
        Some((_, Value::String(s))) => s.trim().is_empty(),
        Some(_) => false,
    };
    for f in cols
        .iter()
        .filter(|c| c.src.required)
        .map(|c| c.out.to_string())
        .chain(tenant_required.iter().cloned())
    {
        if keys.iter().any(|k| k.eq_ignore_ascii_case(&f)) {
            continue;
        }
        if blank(&f) {
            return Err(format!("{f} is required."));
        }
    }
    Ok(())
}

/// The fields a request may save, named as the hub spells them and stored as their types
/// store them: everything but a server-assigned key and the server-kept audit fields (a
/// client-assigned key, `client_key`, is kept: it is the record's number). Run after
/// [`validate`].
pub fn saved_fields(
    record: &Map<String, Value>,
    client_key: bool,
    cols: &[Col],
    keys: &[&str],
) -> Map<String, Value> {
    record
        .iter()
        .filter_map(|(f, v)| {
            let col = cols.iter().find(|c| c.out.eq_ignore_ascii_case(f))?;
            let keep = (client_key || !keys.contains(&col.out))
                && !matches!(col.out, "ModDate" | "CreateDate" | "ModUser" | "CreateUser");
            keep.then(|| {
                (
                    col.out.to_string(),
                    stored(col.src.ty, v).unwrap_or(Value::Null),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tables;
    use super::*;
    use crate::sandbox::Tenant;

    fn rec(v: serde_json::Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn firm(tenant: Tenant) -> Vec<Col> {
        tables::table(Kind::Firm, tenant)
            .into_iter()
            .map(|f| Col::new(f.name, f))
            .collect()
    }

    #[test]
    fn validation_names_the_field() {
        let cols = firm(Tenant::Standard);
        let keys = ["ClientID"];
        let check = |r: serde_json::Value, required: &[String], creating: bool| {
            validate("firm", &cols, &keys, required, &rec(r), creating)
        };
        assert!(check(serde_json::json!({"Name": "A"}), &[], true).is_ok());
        assert_eq!(
            check(serde_json::json!({"WebSite": "x"}), &[], true),
            Err("Name is required.".into())
        );
        // An update may leave Name out, not blank it.
        assert!(check(serde_json::json!({"WebSite": "x"}), &[], false).is_ok());
        assert_eq!(
            check(serde_json::json!({"Name": "A", "Nope": 1}), &[], true),
            Err("Field 'Nope' does not exist on firm.".into())
        );
        // Custom fields are the tenant's: any other `Cust*` name is unknown.
        assert!(
            check(
                serde_json::json!({"Name": "A", "CustDynamicsId": "x"}),
                &[],
                true
            )
            .is_ok()
        );
        assert_eq!(
            check(serde_json::json!({"Name": "A", "CustX": 1}), &[], true),
            Err("Field 'CustX' does not exist on firm.".into())
        );
        assert_eq!(
            check(serde_json::json!({"Name": "A"}), &["WebSite".into()], true),
            Err("WebSite is required.".into())
        );
        assert!(
            check(
                serde_json::json!({"Name": "A", "Employees": "x"}),
                &[],
                true
            )
            .is_err()
        );
        let lean = firm(Tenant::Lean);
        assert!(
            validate(
                "firm",
                &lean,
                &keys,
                &[],
                &rec(serde_json::json!({"Name": "A", "CustIndustry": "Water"})),
                true
            )
            .is_err()
        );
    }

    #[test]
    fn saved_values_take_the_hub_spelling_and_types() {
        let cols = firm(Tenant::Standard);
        let saved = saved_fields(
            &rec(serde_json::json!({
                "name": "A", "Employees": "12", "AnnualRevenue": "1234.50",
                "Competitor": true, "ClientID": "x", "ModDate": "2020-01-01T00:00:00.000"
            })),
            false,
            &cols,
            &["ClientID"],
        );
        assert_eq!(
            Value::Object(saved),
            serde_json::json!({"Name": "A", "Employees": 12, "AnnualRevenue": 1234.5, "Competitor": "Y"})
        );
    }
}
